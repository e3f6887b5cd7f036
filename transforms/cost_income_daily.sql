-- The daily cost-and-income ledger: every amount delivered on the business date, in USD, by the
-- date it belongs to (trade date, GL posting date, activity date), cost center and category.
-- cost_income sums it over a month or a year, so its work stays small whatever the history.
WITH commissions AS (
    SELECT trade_date AS value_date, member AS cost_center, 'COMMISSION' AS category,
           revenue_change_usd AS amount_usd, trades_change AS records
    FROM main.revenue_daily
    WHERE business_date = getvariable('as_of_date') AND dimension = 'BOOK'
),

gl_delivered AS (
    SELECT posting_date, cost_center, category, amount, currency
    FROM core.gl_entries
    WHERE business_date = getvariable('as_of_date')
),

rates AS (
    -- the fx of each (currency, posting date) needed, as known on the business date
    SELECT n.currency, n.posting_date, fx.usd_per_unit
    FROM (SELECT DISTINCT currency, posting_date FROM gl_delivered) n
    JOIN core.fx_rates_known(getvariable('as_of_date'), NULL) fx
      ON fx.currency = n.currency AND n.posting_date >= fx.rate_date AND n.posting_date < fx.valid_until
),

gl_usd AS (
    -- converted with the fx of the posting date
    SELECT g.posting_date AS value_date, g.cost_center, g.category, g.amount * r.usd_per_unit AS amount_usd
    FROM gl_delivered g
    LEFT JOIN rates r USING (currency, posting_date)
),

gl AS (
    SELECT value_date, cost_center, category, CAST(sum(CAST(amount_usd AS DECIMAL(38, 12))) AS DOUBLE) AS amount_usd, count(*) AS records
    FROM gl_usd
    GROUP BY ALL
),

client_activity AS (
    -- sales and marketing touches are a cost of the SALES function
    SELECT activity_date AS value_date, 'SALES' AS cost_center, 'CLIENT_ACTIVITY' AS category,
           CAST(sum(CAST(cost_usd AS DECIMAL(38, 12))) AS DOUBLE) AS amount_usd, count(*) AS records
    FROM core.client_activity
    WHERE business_date = getvariable('as_of_date')
    GROUP BY ALL
),

ledger AS (
    SELECT * FROM commissions
    UNION ALL SELECT * FROM gl
    UNION ALL SELECT * FROM client_activity
),

final AS (
    SELECT
        getvariable('as_of_date') AS business_date,
        value_date,
        cost_center,
        category,
        CASE WHEN category IN ('COMMISSION', 'REVENUE_FEES') THEN 'REVENUE' ELSE 'EXPENSE' END AS kind,
        CAST(sum(CAST(amount_usd AS DECIMAL(38, 12))) AS DOUBLE) AS amount_usd,
        CAST(sum(records) AS BIGINT) AS records
    FROM ledger
    GROUP BY ALL
)

SELECT * FROM final ORDER BY value_date, cost_center, category
