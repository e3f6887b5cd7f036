-- First-order sensitivities of every BOOK holding (DOMAIN §11.1): equity-like delta, bond yield,
-- modified duration and DV01, and FX delta.
--
-- Bond analytics, written once here in SQL (docs/DESIGN.md says why not a Python UDF): a bullet
-- bond of 100 face pays coupon_rate × 100 / coupon_frequency on coupon dates that run backward
-- from maturity_date, unadjusted (maturity − k × 12 / frequency months); the period around the
-- as_of_date (the settlement date) is [previous_coupon, next_coupon). Day count Actual/Actual
-- (ISMA): a fraction of a period is days / days in the period, a period is 1 / frequency years;
-- a first period that starts at issue_date after its regular start is short (its coupon and accrual
-- count from issue_date). Discounting at yield y compounded at the frequency: a flow w + k periods
-- away is worth amount × (1 + y / frequency)^-(w + k), w = the fraction of the current period
-- left. The yield solves dirty price (clean + accrued) = Σ flows, by Newton's method from the
-- coupon rate (the price is convex and decreasing in y, so the iteration converges monotonically
-- after its first step). tests/test_risk_sensitivities.py holds it to QuantLib to 1e-8. The sums
-- over a bond's flows are exact decimals (18 places), so the result has the same bits however the
-- threads add them up.
WITH RECURSIVE holdings AS (
    SELECT holder_id AS book, instrument_id, asset_class, currency, quantity, price, fx, market_value_usd
    FROM main.risk_exposure
    WHERE as_of_date = getvariable('as_of_date') AND holder_type = 'BOOK'
),

bond_terms AS (
    -- the latest instruments delivery; a bond without coupon terms gets no bond analytics
    SELECT
        instrument_id,
        CAST(coupon_rate AS DOUBLE) AS coupon_rate,
        CAST(coupon_frequency AS INTEGER) AS frequency,
        issue_date,
        maturity_date
    FROM core.instruments_on(getvariable('as_of_date'))
    WHERE asset_class = 'BOND'
      AND coupon_rate IS NOT NULL
      AND coupon_frequency IN (1, 2, 4)
      AND maturity_date > getvariable('as_of_date')
),

priced_bonds AS (
    -- one clean price per bond (every book holds it at the same close)
    SELECT t.*, p.clean_price
    FROM bond_terms t
    JOIN (
        SELECT instrument_id, any_value(price) AS clean_price
        FROM holdings
        WHERE price IS NOT NULL
        GROUP BY instrument_id
    ) p USING (instrument_id)
),

coupon_dates AS (
    -- maturity, then back one period at a time until one falls on or before the settlement date
    SELECT
        b.instrument_id,
        CAST(b.maturity_date - to_months(CAST(k.k * 12 // b.frequency AS INTEGER)) AS DATE) AS coupon_date
    FROM priced_bonds b
    CROSS JOIN LATERAL (
        SELECT unnest(generate_series(0, date_diff('month', getvariable('as_of_date'), b.maturity_date)
            * b.frequency // 12 + 2)) AS k
    ) k
),

coupon_periods AS (
    SELECT
        instrument_id,
        min(coupon_date) FILTER (WHERE coupon_date > getvariable('as_of_date')) AS next_coupon_date,
        max(coupon_date) FILTER (WHERE coupon_date <= getvariable('as_of_date')) AS previous_coupon_date,
        count(*) FILTER (WHERE coupon_date > getvariable('as_of_date')) AS remaining_coupons
    FROM coupon_dates
    GROUP BY instrument_id
),

bond_periods AS (
    SELECT
        b.*,
        p.next_coupon_date,
        p.previous_coupon_date,
        p.remaining_coupons,
        b.coupon_rate * 100.0 / b.frequency AS regular_coupon,
        CAST(p.next_coupon_date - p.previous_coupon_date AS DOUBLE) AS period_days,
        -- accrual starts at the issue date inside a short first period
        greatest(p.previous_coupon_date, coalesce(b.issue_date, p.previous_coupon_date)) AS accrual_start_date
    FROM priced_bonds b
    JOIN coupon_periods p USING (instrument_id)
),

bonds AS (
    SELECT
        *,
        regular_coupon * (getvariable('as_of_date') - accrual_start_date) / period_days AS accrued,
        clean_price + regular_coupon * (getvariable('as_of_date') - accrual_start_date) / period_days
            AS dirty_price,
        (next_coupon_date - getvariable('as_of_date')) / period_days AS first_flow_periods,
        regular_coupon * (next_coupon_date - accrual_start_date) / period_days AS first_coupon
    FROM bond_periods
),

bond_flows AS (
    -- the remaining coupons and the redemption, each with its distance in periods
    SELECT
        b.instrument_id,
        b.first_flow_periods + k.k AS periods,
        CASE WHEN k.k = 0 THEN b.first_coupon ELSE b.regular_coupon END
        + CASE WHEN k.k = b.remaining_coupons - 1 THEN 100.0 ELSE 0.0 END AS amount
    FROM bonds b
    CROSS JOIN LATERAL (SELECT unnest(generate_series(0, b.remaining_coupons - 1)) AS k) k
),

newton (instrument_id, iteration, ytm, step) AS (
    SELECT instrument_id, 0, coupon_rate, CAST(1 AS DOUBLE) FROM bonds
    UNION ALL
    -- y ← y − (PV(y) − dirty) / PV'(y); stops when the step is below 1e-15
    SELECT
        n.instrument_id,
        n.iteration + 1,
        n.ytm - (CAST(sum(CAST(f.amount * pow(1 + n.ytm / b.frequency, -f.periods) AS DECIMAL(38, 18))) AS DOUBLE) - any_value(b.dirty_price))
        / CAST(sum(CAST(-f.periods / b.frequency * f.amount * pow(1 + n.ytm / b.frequency, -f.periods - 1) AS DECIMAL(38, 18))) AS DOUBLE),
        (CAST(sum(CAST(f.amount * pow(1 + n.ytm / b.frequency, -f.periods) AS DECIMAL(38, 18))) AS DOUBLE) - any_value(b.dirty_price))
        / CAST(sum(CAST(-f.periods / b.frequency * f.amount * pow(1 + n.ytm / b.frequency, -f.periods - 1) AS DECIMAL(38, 18))) AS DOUBLE)
    FROM newton n
    JOIN bonds b USING (instrument_id)
    JOIN bond_flows f USING (instrument_id)
    WHERE abs(n.step) > 1e-15 AND n.iteration < 100
    GROUP BY n.instrument_id, n.iteration, n.ytm, b.frequency
),

yields AS (
    SELECT instrument_id, arg_max(ytm, iteration) AS ytm
    FROM newton
    GROUP BY instrument_id
),

bond_analytics AS (
    -- modified duration = −PV'(y) / PV(y); DV01 per unit (100 face) = (PV(y − 1bp) − PV(y + 1bp)) / 2
    SELECT
        b.instrument_id,
        any_value(b.accrued) AS accrued,
        any_value(b.dirty_price) AS dirty_price,
        y.ytm,
        CAST(sum(CAST(f.periods / b.frequency * f.amount * pow(1 + y.ytm / b.frequency, -f.periods - 1) AS DECIMAL(38, 18))) AS DOUBLE)
        / CAST(sum(CAST(f.amount * pow(1 + y.ytm / b.frequency, -f.periods) AS DECIMAL(38, 18))) AS DOUBLE) AS modified_duration,
        (CAST(sum(CAST(f.amount * pow(1 + (y.ytm - 0.0001) / b.frequency, -f.periods) AS DECIMAL(38, 18))) AS DOUBLE)
            - CAST(sum(CAST(f.amount * pow(1 + (y.ytm + 0.0001) / b.frequency, -f.periods) AS DECIMAL(38, 18))) AS DOUBLE)) / 2 AS dv01_per_unit
    FROM bonds b
    JOIN yields y USING (instrument_id)
    JOIN bond_flows f USING (instrument_id)
    GROUP BY b.instrument_id, y.ytm
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        h.book,
        h.instrument_id,
        h.asset_class,
        h.currency,
        h.quantity,
        h.price,
        h.fx,
        h.market_value_usd,
        CASE WHEN h.asset_class IN ('EQUITY', 'FUND', 'COMMODITY') THEN 0.01 * h.market_value_usd END
            AS delta_1pct_usd,
        a.accrued AS accrued_interest,
        a.dirty_price,
        a.ytm,
        a.modified_duration,
        a.dv01_per_unit * h.quantity * h.fx AS dv01_usd,
        CASE WHEN h.currency <> 'USD' THEN 0.01 * h.market_value_usd END AS fx_delta_1pct_usd
    FROM holdings h
    LEFT JOIN bond_analytics a ON a.instrument_id = h.instrument_id AND h.asset_class = 'BOND'
)

SELECT * FROM final ORDER BY book, instrument_id
