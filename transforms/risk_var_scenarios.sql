-- Historical-simulation P&L vectors (DOMAIN §4.1 risk_var): what each book, and the firm, would
-- have made or lost on each of the last N business dates had it held today's BOOK positions.
-- N = getvariable('var_scenarios'). risk_var takes its quantiles and expected shortfalls from here.
--
-- The scenario calendar is the FIRM business dates on which the price history has closes (any instrument):
-- the N latest up to and including as_of_date, plus the one before the first (the base of its
-- return). An instrument without a close on a calendar date keeps its last close (carried
-- forward, likewise fx rates), so its return that day is 0 and the move shows on the next close.
-- A (price_date, instrument) re-delivered later wins, as in risk_exposure; deliveries after
-- as_of_date are ignored, so a rebuilt date gives what the daily run gave.
-- Work is bounded: N + 1 business dates of prices (plus 30 days of slack) for the instruments held.
WITH holdings AS (
    -- today's BOOK holdings that have a market value (a holding without a price or rate has none)
    SELECT holder_id AS book, instrument_id, currency, market_value_usd
    FROM main.risk_exposure
    WHERE as_of_date = getvariable('as_of_date')
      AND holder_type = 'BOOK'
      AND market_value_usd IS NOT NULL
),

held_instruments AS (
    SELECT DISTINCT instrument_id, currency FROM holdings
),

lookback AS (
    -- N + 1 business dates span about (N + 1) × 7 / 5 calendar days; 30 more cover holidays and gaps
    SELECT getvariable('as_of_date') - CAST((getvariable('var_scenarios') + 1) * 7 // 5 + 30 AS INTEGER) AS start_date
),

calendar AS (
    -- days_back = 1 is as_of_date's own date (when it has prices), N + 1 the base of the first scenario
    SELECT price_date AS calendar_date, row_number() OVER (ORDER BY price_date DESC) AS days_back
    FROM (
        SELECT DISTINCT price_date
        FROM core.prices
        WHERE price_date <= getvariable('as_of_date')
          AND price_date >= (SELECT start_date FROM lookback)
          AND business_date <= getvariable('as_of_date')
          AND core.is_business_day('FIRM', price_date)
    )
    QUALIFY days_back <= getvariable('var_scenarios') + 1
),

closes AS (
    -- one close per instrument and date: the latest delivery of it wins
    SELECT instrument_id, price_date, arg_max(close_price, business_date) AS close_price
    FROM core.prices
    WHERE price_date <= getvariable('as_of_date')
      AND price_date >= (SELECT start_date FROM lookback)
      AND business_date <= getvariable('as_of_date')
      AND instrument_id IN (SELECT instrument_id FROM held_instruments)
    GROUP BY instrument_id, price_date
),

rates AS (
    SELECT currency, rate_date, arg_max(usd_per_unit, business_date) AS usd_per_unit
    FROM core.fx_rates
    WHERE rate_date <= getvariable('as_of_date')
      AND rate_date >= (SELECT start_date FROM lookback)
      AND business_date <= getvariable('as_of_date')
      AND currency IN (SELECT currency FROM held_instruments)
    GROUP BY currency, rate_date
),

calendar_rates AS (
    -- the last rate on or before each calendar date, per currency held (carried forward)
    SELECT c.calendar_date, h.currency, r.usd_per_unit
    FROM calendar c
    CROSS JOIN (SELECT DISTINCT currency FROM held_instruments) h
    ASOF LEFT JOIN rates r
        ON r.currency = h.currency AND c.calendar_date >= r.rate_date
),

instrument_days AS (
    SELECT h.instrument_id, h.currency, c.calendar_date, c.days_back
    FROM held_instruments h
    CROSS JOIN calendar c
),

closes_on_the_day AS (
    SELECT d.*, p.close_price
    FROM instrument_days d
    LEFT JOIN closes p ON p.instrument_id = d.instrument_id AND p.price_date = d.calendar_date
),

missing_closes AS (
    SELECT * EXCLUDE (close_price) FROM closes_on_the_day WHERE close_price IS NULL
),

priced_days AS (
    -- a missing close is the last one before it (carried forward); the as-of join only runs on
    -- the (usually few) days without a close of their own, against those instruments' closes
    SELECT * FROM closes_on_the_day WHERE close_price IS NOT NULL
    UNION ALL
    SELECT m.instrument_id, m.currency, m.calendar_date, m.days_back, p.close_price
    FROM missing_closes m
    ASOF LEFT JOIN (
        SELECT * FROM closes WHERE instrument_id IN (SELECT instrument_id FROM missing_closes)
    ) p
        ON p.instrument_id = m.instrument_id AND m.calendar_date >= p.price_date
),

unit_values AS (
    -- USD value of one unit: carried-forward close × carried-forward rate
    SELECT d.instrument_id, d.calendar_date, d.days_back, d.close_price * r.usd_per_unit AS unit_value_usd
    FROM priced_days d
    LEFT JOIN calendar_rates r USING (calendar_date, currency)
),

scenario_returns AS (
    -- r_s = value_s / value_(s-1) − 1, s−1 the calendar date before s (one more day back);
    -- unknown (no close yet) counts as no move. The oldest calendar date is only a base.
    SELECT
        s.instrument_id,
        s.calendar_date AS scenario_date,
        b.calendar_date AS previous_date,
        coalesce(s.unit_value_usd / nullif(b.unit_value_usd, 0) - 1, 0) AS usd_return
    FROM unit_values s
    JOIN unit_values b ON b.instrument_id = s.instrument_id AND b.days_back = s.days_back + 1
),

scenario_pnl AS (
    -- pnl_s = Σ MV × r_s per book and over all books (FIRM). Terms are summed as exact decimals
    -- (to a millionth of a dollar): a double sum depends on the order the threads add in, and a
    -- rerun must give the same bits.
    SELECT
        CASE WHEN grouping(h.book) = 1 THEN 'FIRM' ELSE h.book END AS portfolio,
        r.scenario_date,
        r.previous_date,
        CAST(sum(CAST(h.market_value_usd * r.usd_return AS DECIMAL(38, 6))) AS DOUBLE) AS pnl_usd
    FROM holdings h
    JOIN scenario_returns r USING (instrument_id)
    GROUP BY GROUPING SETS ((h.book, r.scenario_date, r.previous_date), (r.scenario_date, r.previous_date))
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        portfolio,
        scenario_date,
        previous_date,
        pnl_usd,
        row_number() OVER (PARTITION BY portfolio ORDER BY pnl_usd, scenario_date) AS pnl_rank
    FROM scenario_pnl
)

SELECT * FROM final ORDER BY portfolio, scenario_date
