-- Historical-simulation P&L vectors (DOMAIN §4.1 risk_var, §11.3 stressed VaR): what each book,
-- and the firm, would have made or lost on each scenario date had it held today's BOOK positions.
-- Two scenario sets, one simulation: VAR, the N business dates up to and including as_of_date;
-- SVAR, the N business dates from SVAR_WINDOW_START (control parameter; unset: the start of the
-- price history). N = getvariable('var_scenarios'). risk_var takes its quantiles and expected
-- shortfalls from here.
--
-- The scenario calendar is the FIRM business dates on which the price history has closes (any instrument).
-- VAR: the N latest up to and including as_of_date, plus the one before the first (the base of its
-- return). SVAR: the last calendar date before SVAR_WINDOW_START (or, when there is none, the
-- first date from it) as the base, then the N dates after it, up to as_of_date. An instrument
-- without a close on a calendar date keeps its last close (carried forward, likewise fx rates), so its return
-- that day is 0 and the move shows on the next close. A (price_date, instrument) re-delivered later wins, as in
-- risk_exposure; deliveries after as_of_date are ignored, so a rebuilt date gives what the daily run gave.
-- Work is bounded: two windows of N + 1 business dates of prices (plus 30 days of slack) for the
-- instruments held, however long the history.
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

svar_start AS (
    -- SVAR_WINDOW_START, else the first price date of the history
    SELECT coalesce(
        CAST(core.param_text('SVAR_WINDOW_START', 'ALL') AS DATE),
        (SELECT min(price_date) FROM core.prices WHERE business_date <= getvariable('as_of_date'))
    ) AS start_date
),

windows AS (
    -- the price dates each set may need: N + 1 business dates span about (N + 1) × 7 / 5
    -- calendar days; 30 more cover holidays and gaps (and, for SVAR, the base before the start)
    SELECT
        'VAR' AS scenario_set,
        getvariable('as_of_date') - CAST((getvariable('var_scenarios') + 1) * 7 // 5 + 30 AS INTEGER) AS first_day,
        getvariable('as_of_date') AS last_day
    UNION ALL
    SELECT
        'SVAR',
        start_date - 30,
        least(getvariable('as_of_date'),
              start_date + CAST((getvariable('var_scenarios') + 1) * 7 // 5 + 30 AS INTEGER))
    FROM svar_start
    WHERE start_date <= getvariable('as_of_date')
),

lookback AS (
    SELECT min(first_day) AS start_date FROM windows
),

price_dates AS (
    SELECT DISTINCT w.scenario_set, p.price_date
    FROM core.prices p
    JOIN windows w ON p.price_date BETWEEN w.first_day AND w.last_day
    WHERE p.price_date <= getvariable('as_of_date')
      AND p.business_date <= getvariable('as_of_date')
      AND core.is_business_day('FIRM', p.price_date)
),

calendar AS (
    -- per set, the base date (ordinal 0) then its N scenario dates (ordinals 1 .. N)
    SELECT scenario_set, calendar_date, ordinal
    FROM (
        SELECT
            scenario_set,
            price_date AS calendar_date,
            getvariable('var_scenarios') + 1 - row_number() OVER (ORDER BY price_date DESC) AS ordinal
        FROM price_dates
        WHERE scenario_set = 'VAR'
        UNION ALL
        SELECT scenario_set, price_date, row_number() OVER (ORDER BY price_date) - 1
        FROM price_dates
        WHERE scenario_set = 'SVAR'
          AND price_date >= coalesce(
              (SELECT max(d.price_date) FROM price_dates d
               WHERE d.scenario_set = 'SVAR' AND d.price_date < (SELECT start_date FROM svar_start)),
              (SELECT start_date FROM svar_start))
    )
    WHERE ordinal BETWEEN 0 AND getvariable('var_scenarios')
),

closes AS (
    -- one close per instrument and date: the latest delivery wins
    SELECT p.instrument_id, p.price_date, arg_max(p.close_price, p.business_date) AS close_price
    FROM core.prices p
    WHERE p.price_date <= getvariable('as_of_date')
      AND p.business_date <= getvariable('as_of_date')
      AND p.instrument_id IN (SELECT instrument_id FROM held_instruments)
      AND EXISTS (SELECT 1 FROM windows w WHERE p.price_date BETWEEN w.first_day AND w.last_day)
    GROUP BY p.instrument_id, p.price_date
),

calendar_rates AS (
    -- the last rate on or before each calendar date, per currency held (carried forward)
    SELECT c.calendar_date, h.currency, r.usd_per_unit
    FROM (SELECT DISTINCT calendar_date FROM calendar) c
    CROSS JOIN (SELECT DISTINCT currency FROM held_instruments) h
    LEFT JOIN core.fx_rates_known(getvariable('as_of_date'), (SELECT start_date FROM lookback)) r
        ON r.currency = h.currency AND c.calendar_date >= r.rate_date AND c.calendar_date < r.valid_until
),

instrument_days AS (
    SELECT h.instrument_id, h.currency, c.scenario_set, c.calendar_date, c.ordinal
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
    SELECT m.instrument_id, m.currency, m.scenario_set, m.calendar_date, m.ordinal, p.close_price
    FROM missing_closes m
    ASOF LEFT JOIN (
        SELECT * FROM closes WHERE instrument_id IN (SELECT instrument_id FROM missing_closes)
    ) p
        ON p.instrument_id = m.instrument_id AND m.calendar_date >= p.price_date
),

unit_values AS (
    -- USD value of one unit: carried-forward close × carried-forward rate
    SELECT d.instrument_id, d.scenario_set, d.calendar_date, d.ordinal, d.close_price * r.usd_per_unit AS unit_value_usd
    FROM priced_days d
    LEFT JOIN calendar_rates r USING (calendar_date, currency)
),

scenario_returns AS (
    -- r_s = value_s / value_(s-1) − 1, s−1 the calendar date before s (the ordinal before);
    -- unknown (no close yet) counts as no move. A set's oldest calendar date is only a base.
    SELECT
        s.instrument_id,
        s.scenario_set,
        s.calendar_date AS scenario_date,
        b.calendar_date AS previous_date,
        coalesce(s.unit_value_usd / nullif(b.unit_value_usd, 0) - 1, 0) AS usd_return
    FROM unit_values s
    JOIN unit_values b
        ON b.instrument_id = s.instrument_id AND b.scenario_set = s.scenario_set AND b.ordinal = s.ordinal - 1
),

scenario_pnl AS (
    -- pnl_s = Σ MV × r_s per book and over all books (FIRM). Terms are summed as exact decimals
    -- (to a millionth of a dollar): a double sum depends on the order the threads add in, and a
    -- rerun must give the same bits.
    SELECT
        CASE WHEN grouping(h.book) = 1 THEN 'FIRM' ELSE h.book END AS portfolio,
        r.scenario_set,
        r.scenario_date,
        r.previous_date,
        CAST(sum(CAST(h.market_value_usd * r.usd_return AS DECIMAL(38, 6))) AS DOUBLE) AS pnl_usd
    FROM holdings h
    JOIN scenario_returns r USING (instrument_id)
    GROUP BY GROUPING SETS (
        (h.book, r.scenario_set, r.scenario_date, r.previous_date), (r.scenario_set, r.scenario_date, r.previous_date)
    )
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        portfolio,
        scenario_set,
        scenario_date,
        previous_date,
        pnl_usd,
        row_number() OVER (PARTITION BY portfolio, scenario_set ORDER BY pnl_usd, scenario_date) AS pnl_rank
    FROM scenario_pnl
)

SELECT * FROM final ORDER BY portfolio, scenario_set, scenario_date
