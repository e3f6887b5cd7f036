-- Daily P&L and its explain (DOMAIN §8.1), per book and instrument: the BOOK holdings of the
-- previous business date p revalued at today's closes and fx, split into the price and the fx
-- effect, the coupon a bond accrued (carry), and what moved in or out (position change, not
-- P&L), so that sod_mv_usd + market_pnl_usd + position_change_usd = eod_mv_usd on every row.
-- Conventions are risk_backtest_pnl's, so that Σ market_pnl_usd over books = the FIRM
-- hypothetical P&L of risk_var_backtest: p is the FIRM business date with prices just before
-- the date; closes and rates are the last on or before each of the two dates, as known today;
-- quantities are custody quantities summed over custodians (0 when not held).
WITH previous_business_date AS (
    SELECT core.previous_priced_date(getvariable('as_of_date')) AS previous_date
),

quantities AS (
    -- BOOK custody of the two dates (the previous one's only when the warehouse has it)
    SELECT
        holder_id AS book,
        instrument_id,
        CAST(sum(CAST(quantity AS DECIMAL(38, 12))) FILTER (WHERE business_date < getvariable('as_of_date')) AS DOUBLE) AS quantity_previous,
        CAST(sum(CAST(quantity AS DECIMAL(38, 12))) FILTER (WHERE business_date = getvariable('as_of_date')) AS DOUBLE) AS quantity_today
    FROM core.positions
    WHERE holder_type = 'BOOK'
      AND (business_date = getvariable('as_of_date') OR business_date = (SELECT previous_date FROM previous_business_date))
    GROUP BY ALL
),

instruments AS (
    SELECT instrument_id, asset_class, currency, coupon_rate
    FROM core.instruments_on(getvariable('as_of_date'))
),

closes AS (
    -- the last close on or before each of the two dates, a month back
    SELECT *
    FROM core.closes_of_two_dates(
        (SELECT previous_date FROM previous_business_date), getvariable('as_of_date'),
        coalesce((SELECT previous_date FROM previous_business_date), getvariable('as_of_date')) - 31
    )
),

rates AS (
    SELECT *
    FROM core.fx_rates_of_two_dates(
        (SELECT previous_date FROM previous_business_date), getvariable('as_of_date'),
        coalesce((SELECT previous_date FROM previous_business_date), getvariable('as_of_date')) - 31
    )
),

valued AS (
    SELECT
        q.book,
        q.instrument_id,
        i.asset_class,
        i.currency,
        coalesce(q.quantity_previous, 0) AS quantity_previous,
        coalesce(q.quantity_today, 0) AS quantity_today,
        c.close_previous,
        c.close_today,
        r.rate_previous,
        r.rate_today,
        -- a bond's coupon accrued on the 100 face of each unit, for the calendar days since p
        CASE WHEN i.asset_class = 'BOND' AND i.coupon_rate IS NOT NULL
             THEN 100 * i.coupon_rate * (getvariable('as_of_date') - (SELECT previous_date FROM previous_business_date)) / 365
             ELSE 0
        END AS coupon_per_unit
    FROM quantities q
    LEFT JOIN instruments i USING (instrument_id)
    LEFT JOIN closes c USING (instrument_id)
    LEFT JOIN rates r USING (currency)
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        book,
        instrument_id,
        (SELECT previous_date FROM previous_business_date) AS previous_date,
        asset_class,
        currency,
        quantity_previous,
        quantity_today,
        close_previous,
        close_today,
        rate_previous,
        rate_today,
        CASE WHEN quantity_previous = 0 THEN 0 ELSE quantity_previous * close_previous * rate_previous END AS sod_mv_usd,
        CASE WHEN quantity_previous = 0 THEN 0 ELSE quantity_previous * (close_today - close_previous) * rate_previous END AS price_effect_usd,
        CASE WHEN quantity_previous = 0 THEN 0 ELSE quantity_previous * close_today * (rate_today - rate_previous) END AS fx_effect_usd,
        CASE WHEN quantity_previous = 0 THEN 0
             ELSE quantity_previous * (close_today * rate_today - close_previous * rate_previous)
        END AS market_pnl_usd,
        CASE WHEN quantity_previous = 0 THEN 0 ELSE coalesce(quantity_previous * coupon_per_unit * rate_today, 0) END AS carry_usd,
        (quantity_today - quantity_previous) * close_today * rate_today AS position_change_usd,
        quantity_today * close_today * rate_today AS eod_mv_usd
    FROM valued
)

SELECT * FROM final ORDER BY book, instrument_id
