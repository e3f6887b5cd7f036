-- Limit changes (DOMAIN §10.3): the limits delivery of the business date against the delivery
-- before it, one row per limit that is NEW, CHANGED (limit_value, warning_pct, scope or metric
-- differ) or REMOVED. No delivery on the date, or no delivery before it (the first one sets the
-- limits, it does not change them): no rows. cured_by_limit_change: the
-- limit was in BREACH on the previous business date p (FIRM calendar), is not in BREACH on the
-- date, its limit_value rose today, and its exposure today (|net| for NET_EXPOSURE, as
-- utilisation measures it) is still above the old limit_value: the breach went away because the
-- limit moved, not the risk.
WITH today_limits AS (
    SELECT
        limit_id,
        scope_type,
        CASE WHEN scope_type = 'CLIENT' THEN client_key(scope_id) ELSE scope_id END AS scope_id,
        metric,
        limit_value,
        warning_pct
    FROM core.limits
    WHERE business_date = getvariable('as_of_date')
),

previous_delivery AS (
    SELECT max(business_date) AS delivery_date
    FROM core.limits
    WHERE business_date < getvariable('as_of_date')
),

previous_limits AS (
    SELECT
        l.limit_id,
        l.scope_type,
        CASE WHEN l.scope_type = 'CLIENT' THEN client_key(l.scope_id) ELSE l.scope_id END AS scope_id,
        l.metric,
        l.limit_value,
        l.warning_pct,
        l.business_date AS delivery_date
    FROM core.limits AS l
    INNER JOIN previous_delivery AS p ON l.business_date = p.delivery_date
    -- only when today has a delivery to compare with
    WHERE exists (SELECT 1 FROM today_limits)
),

compared AS (
    SELECT
        coalesce(t.limit_id, p.limit_id) AS limit_id,
        CASE
            WHEN p.limit_id IS NULL THEN 'NEW'
            WHEN t.limit_id IS NULL THEN 'REMOVED'
            WHEN (t.limit_value IS DISTINCT FROM p.limit_value)
                 OR (t.warning_pct IS DISTINCT FROM p.warning_pct)
                 OR (t.scope_type IS DISTINCT FROM p.scope_type)
                 OR (t.scope_id IS DISTINCT FROM p.scope_id)
                 OR (t.metric IS DISTINCT FROM p.metric) THEN 'CHANGED'
        END AS change_type,
        coalesce(t.scope_type, p.scope_type) AS scope_type,
        coalesce(t.scope_id, p.scope_id) AS scope_id,
        coalesce(t.metric, p.metric) AS metric,
        p.limit_value AS old_limit_value,
        t.limit_value AS new_limit_value,
        p.warning_pct AS old_warning_pct,
        t.warning_pct AS new_warning_pct,
        (t.limit_value - p.limit_value) / p.limit_value AS change_pct,
        (SELECT delivery_date FROM previous_delivery) AS previous_delivery_date
    FROM today_limits AS t
    FULL JOIN previous_limits AS p ON t.limit_id = p.limit_id
    -- the first delivery has nothing to be compared with
    WHERE (SELECT delivery_date FROM previous_delivery) IS NOT NULL
),

status_today AS (
    SELECT
        limit_id,
        status,
        exposure,
        CASE WHEN metric = 'NET_EXPOSURE' THEN abs(exposure) ELSE exposure END AS utilised
    FROM main.risk_limit_status
    WHERE as_of_date = getvariable('as_of_date')
),

status_before AS (
    SELECT
        limit_id,
        status
    FROM main.risk_limit_status
    WHERE as_of_date = core.previous_business_day('FIRM', getvariable('as_of_date'))
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        c.limit_id,
        c.change_type,
        c.scope_type,
        c.scope_id,
        c.metric,
        c.old_limit_value,
        c.new_limit_value,
        c.old_warning_pct,
        c.new_warning_pct,
        c.change_pct,
        c.previous_delivery_date,
        s.exposure,
        b.status AS status_before,
        s.status,
        coalesce(
            c.change_type = 'CHANGED'
            AND b.status = 'BREACH'
            AND s.status IS DISTINCT FROM 'BREACH'
            AND c.new_limit_value > c.old_limit_value
            AND s.utilised > c.old_limit_value,
            false
        ) AS cured_by_limit_change
    FROM compared AS c
    LEFT JOIN status_today AS s ON c.limit_id = s.limit_id
    LEFT JOIN status_before AS b ON c.limit_id = b.limit_id
    WHERE c.change_type IS NOT NULL
)

SELECT * FROM final ORDER BY limit_id
