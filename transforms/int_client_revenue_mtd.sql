-- Each client's commission revenue this month, as known on the business date: the CLIENT side of
-- the revenue_daily ledger over the month's business dates, for trades dated in the month. The
-- one definition of a client's month-to-date revenue (client_profitability, client_stats).
WITH month_start AS (
    SELECT date_trunc('month', getvariable('as_of_date'))::DATE AS d
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        member AS client_key,
        CAST(sum(CAST(revenue_change_usd AS DECIMAL(38, 12))) AS DOUBLE) AS revenue_usd,
        CAST(sum(trades_change) AS BIGINT) AS trades
    FROM main.revenue_daily
    WHERE dimension = 'CLIENT'
      AND business_date BETWEEN (SELECT d FROM month_start) AND getvariable('as_of_date')
      AND trade_date >= (SELECT d FROM month_start)
    GROUP BY member
)

SELECT * FROM final ORDER BY client_key
