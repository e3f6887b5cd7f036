-- Limit utilisation (DOMAIN §4.1): the date's measurement of every limit (risk_limit_status)
-- plus how many business dates in a row the limit has been in BREACH up to and including this
-- date. The run is recomputed from risk_limit_status's own history (dates up to as_of_date
-- only), never carried from this table's previous row, so a rebuilt or backfilled date gives the
-- same answer as the daily run. The business dates counted are the dates the limits were
-- measured (a date whose feeds failed their gate is neither a breach nor a break of the run);
-- a date on which the limit did not exist ends the run. A CLIENT limit's row names the client's
-- segment and relationship manager beside its client_key (DOMAIN §12), from the client file as of
-- the date.
WITH today AS (
    SELECT *
    FROM main.risk_limit_status
    WHERE as_of_date = getvariable('as_of_date')
),

measured_dates AS (
    SELECT DISTINCT as_of_date
    FROM main.risk_limit_status
    WHERE as_of_date <= getvariable('as_of_date')
),

last_clear AS (
    -- per limit in breach today: the last measured date on which it was not in breach
    SELECT t.limit_id, max(d.as_of_date) AS last_clear_date
    FROM today t
    CROSS JOIN measured_dates d
    LEFT JOIN main.risk_limit_status s
        ON s.as_of_date = d.as_of_date AND s.limit_id = t.limit_id
    WHERE t.status = 'BREACH' AND s.status IS DISTINCT FROM 'BREACH'
    GROUP BY t.limit_id
),

breach_runs AS (
    SELECT
        t.limit_id,
        count(*) AS consecutive_breach_days,
        min(d.as_of_date) AS breach_since
    FROM today t
    LEFT JOIN last_clear c USING (limit_id)
    JOIN measured_dates d ON d.as_of_date > coalesce(c.last_clear_date, DATE '0001-01-01')
    WHERE t.status = 'BREACH'
    GROUP BY t.limit_id
),

client_profiles AS (
    SELECT client_key(client_id) AS client_key, segment, relationship_manager_id
    FROM core.clients
    WHERE business_date = (SELECT max(business_date) FROM core.clients WHERE business_date <= getvariable('as_of_date'))
),

final AS (
    SELECT
        t.as_of_date,
        t.limit_id,
        t.scope_type,
        t.scope_id,
        c.segment,
        c.relationship_manager_id,
        t.metric,
        t.exposure,
        t.limit_value,
        t.warning_pct,
        t.utilisation,
        t.headroom,
        t.status,
        coalesce(r.consecutive_breach_days, 0) AS consecutive_breach_days,
        r.breach_since,
        t.limits_delivery_date
    FROM today t
    LEFT JOIN breach_runs r USING (limit_id)
    LEFT JOIN client_profiles c ON t.scope_type = 'CLIENT' AND c.client_key = t.scope_id
)

SELECT * FROM final ORDER BY limit_id
