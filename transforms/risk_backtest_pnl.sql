-- One day of the VaR backtest (DOMAIN §4.1 risk_var_backtest, without the 250-day count that
-- risk_var_backtest adds from the history of this table): the hypothetical P&L of the portfolio
-- held at the previous business date, revalued at today's prices and fx, against that date's
-- var_99. Hypothetical P&L = Σ MV_prev × r_today, the very return risk_var_scenarios uses for the
-- scenario dated today (USD value of one unit, last close and rate carried forward), so the
-- backtest compares like with like. The previous business date is the FIRM business date with prices just
-- before as_of_date; when the warehouse has no BOOK holdings for it, there is no row.
WITH previous_business_date AS (
    SELECT core.previous_priced_date(getvariable('as_of_date')) AS previous_date
),

held_previously AS (
    SELECT e.holder_id AS book, e.instrument_id, e.currency, e.market_value_usd
    FROM main.risk_exposure e
    WHERE e.as_of_date = (SELECT previous_date FROM previous_business_date)
      AND e.holder_type = 'BOOK'
      AND e.market_value_usd IS NOT NULL
),

closes AS (
    -- the last close and rate on or before each of the two dates, from a month before the first
    SELECT *
    FROM core.closes_of_two_dates(
        (SELECT previous_date FROM previous_business_date), getvariable('as_of_date'),
        (SELECT previous_date FROM previous_business_date) - 31
    )
),

rates AS (
    SELECT *
    FROM core.fx_rates_of_two_dates(
        (SELECT previous_date FROM previous_business_date), getvariable('as_of_date'),
        (SELECT previous_date FROM previous_business_date) - 31
    )
),

returns AS (
    -- unknown values count as no move, as in risk_var_scenarios
    SELECT
        h.book,
        h.instrument_id,
        h.market_value_usd,
        coalesce((c.close_today * r.rate_today) / nullif(c.close_previous * r.rate_previous, 0) - 1, 0) AS usd_return
    FROM held_previously h
    LEFT JOIN closes c USING (instrument_id)
    LEFT JOIN rates r USING (currency)
),

hypothetical_pnl AS (
    -- exact decimal sums, for reproducible bits
    SELECT
        CASE WHEN grouping(book) = 1 THEN 'FIRM' ELSE book END AS portfolio,
        CAST(sum(CAST(market_value_usd * usd_return AS DECIMAL(38, 6))) AS DOUBLE) AS hypothetical_pnl_usd
    FROM returns
    GROUP BY GROUPING SETS ((book), ())
    HAVING count(*) > 0
),

previous_var AS (
    SELECT portfolio, var_99
    FROM main.risk_var
    WHERE as_of_date = (SELECT previous_date FROM previous_business_date)
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        p.portfolio,
        (SELECT previous_date FROM previous_business_date) AS previous_date,
        p.hypothetical_pnl_usd,
        v.var_99 AS var_99_previous,
        -p.hypothetical_pnl_usd > v.var_99 AS exception
    FROM hypothetical_pnl p
    LEFT JOIN previous_var v USING (portfolio)
)

SELECT * FROM final ORDER BY portfolio
