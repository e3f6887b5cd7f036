-- Client demographics, churn, wealth and activity by segment × country × age band, month to date
-- as known on the business date. Clients are grouped by their attributes on the date (a client
-- that changed segment counts in its new segment for every figure, churn included). Each
-- segment's total and the firm's are rows too ('ALL'); a row of fewer than MIN_CELL_CLIENTS
-- clients is suppressed (DOMAIN §10.4).
WITH month_start AS (
    SELECT date_trunc('month', getvariable('as_of_date'))::DATE AS d
),

history AS (
    SELECT * FROM main.client_dim WHERE as_of_date = getvariable('as_of_date')
),

clients AS (
    -- a client missing from today's file (its record quarantined) keeps its last version, but
    -- attributes read from today's file are unknown for it: say so rather than leave a null key
    SELECT client_key, coalesce(segment, 'UNKNOWN') AS segment, coalesce(country, 'UNKNOWN') AS country,
           coalesce(age_band, 'UNKNOWN') AS age_band, status, onboarding_date
    FROM history
    WHERE is_current
),

status_at_month_start AS (
    -- the version in force just before the month; if the warehouse's history starts inside the
    -- month, the first version known of a client onboarded before the month
    SELECT
        client_key,
        coalesce(
            arg_max(status, valid_from) FILTER (WHERE valid_from < (SELECT d FROM month_start)),
            CASE WHEN min(onboarding_date) < (SELECT d FROM month_start) THEN arg_min(status, valid_from) END
        ) AS status
    FROM history
    GROUP BY client_key
),

revenue AS (
    SELECT client_key, revenue_usd
    FROM main.int_client_revenue_mtd
    WHERE as_of_date = getvariable('as_of_date')
),

touched AS (
    SELECT client_id, count(*) AS touches, count(*) FILTER (WHERE outcome = 'DEAL') AS deals
    FROM core.client_activity
    WHERE business_date BETWEEN (SELECT d FROM month_start) AND getvariable('as_of_date')
      AND activity_date >= (SELECT d FROM month_start)
    GROUP BY client_id
),

touches AS (
    SELECT client_key(client_id) AS client_key, touches, deals FROM touched
),

portfolios AS (
    SELECT client_key, aum_usd, hhi
    FROM main.client_portfolio
    WHERE as_of_date = getvariable('as_of_date')
),

per_client AS (
    SELECT
        c.segment, c.country, c.age_band,
        c.status = 'ACTIVE' AS is_active,
        coalesce(m.status = 'ACTIVE', false) AS was_active,
        c.onboarding_date >= (SELECT d FROM month_start) AS is_new,
        (c.status = 'CLOSED' AND m.status IS DISTINCT FROM 'CLOSED') AS churned,
        p.aum_usd, p.hhi, r.revenue_usd, t.touches, t.deals
    FROM clients c
    LEFT JOIN status_at_month_start m USING (client_key)
    LEFT JOIN portfolios p USING (client_key)
    LEFT JOIN revenue r USING (client_key)
    LEFT JOIN touches t USING (client_key)
),

grouped AS (
    -- each cell, each segment's total and the firm's total ('ALL'), all from the clients
    -- themselves: totals are computed before any cell is suppressed
    SELECT
        CASE WHEN grouping(segment) = 1 THEN 'ALL' ELSE segment END AS segment,
        CASE WHEN grouping(country) = 1 THEN 'ALL' ELSE country END AS country,
        CASE WHEN grouping(age_band) = 1 THEN 'ALL' ELSE age_band END AS age_band,
        count(*) AS clients,
        count(*) FILTER (WHERE is_active) AS clients_active,
        count(*) FILTER (WHERE was_active) AS clients_active_at_month_start,
        count(*) FILTER (WHERE is_new) AS clients_new,
        count(*) FILTER (WHERE churned) AS clients_churned,
        coalesce(CAST(sum(CAST(aum_usd AS DECIMAL(38, 12))) AS DOUBLE), 0) AS aum_usd,
        coalesce(CAST(sum(CAST(revenue_usd AS DECIMAL(38, 12))) AS DOUBLE), 0) AS revenue_usd,
        median(hhi) AS median_client_hhi,
        CAST(coalesce(sum(touches), 0) AS BIGINT) AS touches,
        CAST(coalesce(sum(deals), 0) AS BIGINT) AS deals
    FROM per_client
    GROUP BY GROUPING SETS ((segment, country, age_band), (segment), ())
),

small_cells AS (
    -- DOMAIN §10.4: a row describing fewer than MIN_CELL_CLIENTS distinct clients shows no
    -- figure (one client per row is one client's wealth and activity, pseudonym or not)
    SELECT
        *,
        clients < core.param('MIN_CELL_CLIENTS', 'ALL') AS suppressed
    FROM grouped
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        (SELECT d FROM month_start) AS month,
        segment,
        country,
        age_band,
        suppressed,
        CASE WHEN NOT suppressed THEN clients END AS clients,
        CASE WHEN NOT suppressed THEN clients_active END AS clients_active,
        CASE WHEN NOT suppressed THEN clients_active_at_month_start END AS clients_active_at_month_start,
        CASE WHEN NOT suppressed THEN clients_new END AS clients_new,
        CASE WHEN NOT suppressed THEN clients_churned END AS clients_churned,
        CASE WHEN NOT suppressed THEN clients_churned / nullif(clients_active_at_month_start, 0) END AS churn_rate,
        CASE WHEN NOT suppressed THEN aum_usd END AS aum_usd,
        CASE WHEN NOT suppressed THEN revenue_usd END AS revenue_usd,
        CASE WHEN NOT suppressed THEN revenue_usd / nullif(clients_active, 0) END AS revenue_per_client,
        CASE WHEN NOT suppressed THEN median_client_hhi END AS median_client_hhi,
        CASE WHEN NOT suppressed THEN touches END AS touches,
        CASE WHEN NOT suppressed THEN deals END AS deals
    FROM small_cells
)

SELECT * FROM final ORDER BY segment, country, age_band
