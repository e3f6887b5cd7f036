-- What each client brought in and cost this month, as known on the business date: commission
-- revenue of its trades dated in the month (int_client_revenue_mtd), the cost of the sales and marketing
-- touches it received (client_activity), the difference, and its rank within its segment.
WITH month_start AS (
    SELECT date_trunc('month', getvariable('as_of_date'))::DATE AS d
),

revenue AS (
    SELECT client_key, revenue_usd, trades
    FROM main.int_client_revenue_mtd
    WHERE as_of_date = getvariable('as_of_date')
),

touches AS (
    SELECT client_id, CAST(sum(CAST(cost_usd AS DECIMAL(38, 12))) AS DOUBLE) AS activity_cost_usd
    FROM core.client_activity
    WHERE business_date BETWEEN (SELECT d FROM month_start) AND getvariable('as_of_date')
      AND activity_date >= (SELECT d FROM month_start)
    GROUP BY client_id
),

activity_cost AS (
    SELECT client_key(client_id) AS client_key, activity_cost_usd FROM touches
),

segments AS (
    SELECT client_key, segment, relationship_manager_id
    FROM main.client_dim
    WHERE as_of_date = getvariable('as_of_date') AND is_current
),

clients AS (
    SELECT
        client_key,
        coalesce(r.revenue_usd, 0) AS revenue_usd,
        coalesce(a.activity_cost_usd, 0) AS activity_cost_usd,
        CAST(coalesce(r.trades, 0) AS BIGINT) AS trades
    FROM revenue r
    FULL JOIN activity_cost a USING (client_key)
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        (SELECT d FROM month_start) AS month,
        c.client_key,
        s.segment,
        s.relationship_manager_id,
        c.revenue_usd,
        c.activity_cost_usd,
        c.revenue_usd - c.activity_cost_usd AS contribution_usd,
        c.trades,
        rank() OVER (PARTITION BY s.segment ORDER BY c.revenue_usd - c.activity_cost_usd DESC) AS rank_in_segment
    FROM clients c
    LEFT JOIN segments s USING (client_key)
)

SELECT * FROM final ORDER BY segment, rank_in_segment, client_key
