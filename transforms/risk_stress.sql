-- Stress tests (DOMAIN §11.2): the P&L of today's BOOK holdings, per book and for the firm, under
-- each scenario of the latest stress_scenarios delivery.
--
-- HISTORICAL: each holding's MV × its USD value change over the scenario window, V_end / V_start − 1,
-- V = last close on or before the day × last rate on or before it (prices and rates as known on
-- as_of_date; a close older than 31 days before the day is unknown, and the holding then counts as
-- no move, counted in n_unvalued). SHOCK, a linear approximation: MV × PRICE_PCT of the asset
-- class, plus for holdings not quoted in USD MV × FX_PCT of the currency, and for bonds with
-- coupon terms the yield shift instead of the price shock: −dv01_usd × YIELD_BP (duration only,
-- no convexity). A shock's scope is the asset class (PRICE_PCT), the currency (FX_PCT, YIELD_BP:
-- the bond's) or ALL; the specific scope wins over ALL. Sums are exact decimals.
WITH holdings AS (
    SELECT book, instrument_id, asset_class, currency, market_value_usd, dv01_usd
    FROM main.risk_sensitivities
    WHERE as_of_date = getvariable('as_of_date') AND market_value_usd IS NOT NULL
),

scenarios AS (
    SELECT scenario_id, name, kind, start_date, end_date, shock_type, shock_scope, shock_value
    FROM core.stress_scenarios
    WHERE business_date = (
        SELECT max(business_date) FROM core.stress_scenarios WHERE business_date <= getvariable('as_of_date')
    )
),

historical AS (
    SELECT DISTINCT scenario_id, name, start_date, end_date FROM scenarios WHERE kind = 'HISTORICAL'
),

window_days AS (
    SELECT start_date AS day FROM historical
    UNION
    SELECT end_date FROM historical
),

bounds AS (
    SELECT min(day) - 31 AS first_day, max(day) AS last_day FROM window_days
),

closes AS (
    -- the closes of held instruments around the windows, the latest delivery of each winning
    SELECT instrument_id, price_date, arg_max(close_price, business_date) AS close_price
    FROM core.prices
    WHERE business_date <= getvariable('as_of_date')
      AND price_date BETWEEN (SELECT first_day FROM bounds) AND (SELECT last_day FROM bounds)
      AND instrument_id IN (SELECT instrument_id FROM holdings)
    GROUP BY instrument_id, price_date
),

held_days AS (
    SELECT h.instrument_id, h.currency, w.day
    FROM (SELECT DISTINCT instrument_id, currency FROM holdings) h
    CROSS JOIN window_days w
),

unit_values AS (
    -- USD value of one unit on each window day: last close and last rate on or before it
    SELECT d.instrument_id, d.day, c.close_price * r.usd_per_unit AS unit_value_usd
    FROM held_days d
    ASOF LEFT JOIN closes c ON c.instrument_id = d.instrument_id AND d.day >= c.price_date
    LEFT JOIN core.fx_rates_known(getvariable('as_of_date'), (SELECT first_day FROM bounds)) r
        ON r.currency = d.currency AND d.day >= r.rate_date AND d.day < r.valid_until
),

historical_pnl AS (
    SELECT
        h.book,
        s.scenario_id,
        h.market_value_usd * (e.unit_value_usd / nullif(b.unit_value_usd, 0) - 1) AS pnl,
        CAST(NULL AS DOUBLE) AS price_pnl,
        CAST(NULL AS DOUBLE) AS fx_pnl,
        CAST(NULL AS DOUBLE) AS rates_pnl
    FROM holdings h
    CROSS JOIN historical s
    LEFT JOIN unit_values b ON b.instrument_id = h.instrument_id AND b.day = s.start_date
    LEFT JOIN unit_values e ON e.instrument_id = h.instrument_id AND e.day = s.end_date
),

shock_scenarios AS (
    SELECT DISTINCT scenario_id FROM scenarios WHERE kind = 'SHOCK'
),

shocks AS (
    SELECT scenario_id, shock_type, shock_scope, max(shock_value) AS shock_value
    FROM scenarios
    WHERE kind = 'SHOCK'
    GROUP BY scenario_id, shock_type, shock_scope
),

holding_shocks AS (
    -- each holding's shocks in each SHOCK scenario: the specific scope, else ALL, else none
    SELECT
        h.*,
        s.scenario_id,
        coalesce(price_own.shock_value, price_all.shock_value, 0) AS price_pct,
        CASE WHEN h.currency <> 'USD' THEN coalesce(fx_own.shock_value, fx_all.shock_value, 0) ELSE 0 END AS fx_pct,
        coalesce(yield_own.shock_value, yield_all.shock_value, 0) AS yield_bp
    FROM holdings h
    CROSS JOIN shock_scenarios s
    LEFT JOIN shocks price_own ON price_own.scenario_id = s.scenario_id
        AND price_own.shock_type = 'PRICE_PCT' AND price_own.shock_scope = h.asset_class
    LEFT JOIN shocks price_all ON price_all.scenario_id = s.scenario_id
        AND price_all.shock_type = 'PRICE_PCT' AND price_all.shock_scope = 'ALL'
    LEFT JOIN shocks fx_own ON fx_own.scenario_id = s.scenario_id
        AND fx_own.shock_type = 'FX_PCT' AND fx_own.shock_scope = h.currency
    LEFT JOIN shocks fx_all ON fx_all.scenario_id = s.scenario_id
        AND fx_all.shock_type = 'FX_PCT' AND fx_all.shock_scope = 'ALL'
    LEFT JOIN shocks yield_own ON yield_own.scenario_id = s.scenario_id
        AND yield_own.shock_type = 'YIELD_BP' AND yield_own.shock_scope = h.currency
    LEFT JOIN shocks yield_all ON yield_all.scenario_id = s.scenario_id
        AND yield_all.shock_type = 'YIELD_BP' AND yield_all.shock_scope = 'ALL'
),

shock_pnl AS (
    SELECT
        book,
        scenario_id,
        CASE WHEN asset_class = 'BOND' AND dv01_usd IS NOT NULL THEN 0 ELSE market_value_usd * price_pct END
            AS price_pnl,
        market_value_usd * fx_pct AS fx_pnl,
        CASE WHEN asset_class = 'BOND' AND dv01_usd IS NOT NULL THEN -dv01_usd * yield_bp ELSE 0 END AS rates_pnl
    FROM holding_shocks
),

holding_pnl AS (
    SELECT book, scenario_id, pnl, price_pnl, fx_pnl, rates_pnl FROM historical_pnl
    UNION ALL
    SELECT book, scenario_id, price_pnl + fx_pnl + rates_pnl, price_pnl, fx_pnl, rates_pnl FROM shock_pnl
),

portfolio_pnl AS (
    SELECT
        CASE WHEN grouping(book) = 1 THEN 'FIRM' ELSE book END AS portfolio,
        scenario_id,
        count(*) AS n_holdings,
        count(*) FILTER (WHERE pnl IS NULL) AS n_unvalued,
        CAST(coalesce(sum(CAST(pnl AS DECIMAL(38, 6))), 0) AS DOUBLE) AS pnl_usd,
        CAST(sum(CAST(price_pnl AS DECIMAL(38, 6))) AS DOUBLE) AS price_pnl_usd,
        CAST(sum(CAST(fx_pnl AS DECIMAL(38, 6))) AS DOUBLE) AS fx_pnl_usd,
        CAST(sum(CAST(rates_pnl AS DECIMAL(38, 6))) AS DOUBLE) AS rates_pnl_usd
    FROM holding_pnl
    GROUP BY GROUPING SETS ((book, scenario_id), (scenario_id))
),

scenario_names AS (
    SELECT scenario_id, any_value(name) AS name, any_value(kind) AS kind,
           any_value(start_date) AS start_date, any_value(end_date) AS end_date
    FROM scenarios
    GROUP BY scenario_id
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        p.portfolio,
        p.scenario_id,
        n.name,
        n.kind,
        n.start_date,
        n.end_date,
        p.n_holdings,
        p.n_unvalued,
        p.pnl_usd,
        p.price_pnl_usd,
        p.fx_pnl_usd,
        p.rates_pnl_usd,
        row_number() OVER (PARTITION BY p.portfolio ORDER BY p.pnl_usd, p.scenario_id) AS loss_rank
    FROM portfolio_pnl p
    JOIN scenario_names n USING (scenario_id)
)

SELECT * FROM final ORDER BY portfolio, scenario_id
