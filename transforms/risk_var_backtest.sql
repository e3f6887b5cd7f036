-- VaR backtest (DOMAIN §4.1): the day's hypothetical P&L against the previous business date's
-- var_99 (risk_backtest_pnl), and the exceptions over the last 250 business dates on which the
-- backtest was evaluated, with the Basel traffic light on 250 observations: GREEN 0–4,
-- YELLOW 5–9, RED 10 or more. Counted from risk_backtest_pnl's history up to the date (not from
-- this table's previous row), so a rebuilt or backfilled date gives the daily run's answer.
WITH today AS (
    SELECT *
    FROM main.risk_backtest_pnl
    WHERE as_of_date = getvariable('as_of_date')
),

window_dates AS (
    SELECT as_of_date
    FROM (SELECT DISTINCT as_of_date FROM main.risk_backtest_pnl WHERE as_of_date <= getvariable('as_of_date'))
    ORDER BY as_of_date DESC
    LIMIT 250
),

window_counts AS (
    SELECT
        b.portfolio,
        count(b.exception) AS observations,
        count(*) FILTER (WHERE b.exception) AS exceptions_250
    FROM main.risk_backtest_pnl b
    JOIN window_dates w USING (as_of_date)
    WHERE b.portfolio IN (SELECT portfolio FROM today)
    GROUP BY b.portfolio
),

final AS (
    SELECT
        t.as_of_date AS business_date,
        t.portfolio,
        t.previous_date,
        t.hypothetical_pnl_usd,
        t.var_99_previous AS var_99,
        t.exception,
        c.observations,
        c.exceptions_250,
        CASE
            -- DOMAIN §12: no traffic light before 250 observations (GREEN on 7 said nothing)
            WHEN c.observations < 250 THEN 'INSUFFICIENT_HISTORY'
            WHEN c.exceptions_250 >= 10 THEN 'RED'
            WHEN c.exceptions_250 >= 5 THEN 'YELLOW'
            ELSE 'GREEN'
        END AS zone
    FROM today t
    JOIN window_counts c USING (portfolio)
)

SELECT * FROM final ORDER BY portfolio
