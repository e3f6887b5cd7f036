-- Independent price verification (DOMAIN §8.3): every instrument the books hold on the date,
-- its front-office close (the one the holdings are valued at) against the independent price of
-- the date's ipv_prices delivery, with the asset class's IPV_TOLERANCE_PCT; the valuation
-- adjustment product control would book on a breach; and how many business dates in a row the
-- close has not moved (STALE from STALE_PRICE_DAYS).
WITH held AS (
    -- BOOK holdings valued as everywhere else (int_holdings_valued: last close and rate on or before D)
    SELECT
        instrument_id,
        any_value(asset_class) AS asset_class,
        any_value(currency) AS currency,
        any_value(price) AS fo_price,
        any_value(price_date) AS fo_price_date,
        any_value(fx) AS fx,
        CAST(sum(CAST(quantity AS DECIMAL(38, 12))) AS DOUBLE) AS net_quantity,
        CAST(sum(CAST(abs(market_value_usd) AS DECIMAL(38, 6))) AS DOUBLE) AS gross_mv_usd
    FROM main.int_holdings_valued
    WHERE as_of_date = getvariable('as_of_date') AND holder_type = 'BOOK'
    GROUP BY instrument_id
),

independent AS (
    -- the date's delivery; its latest price date per instrument
    SELECT instrument_id, arg_max(price, price_date) AS ipv_price, arg_max(source, price_date) AS source,
           max(price_date) AS ipv_price_date
    FROM core.ipv_prices
    WHERE business_date = getvariable('as_of_date') AND price_date <= getvariable('as_of_date')
    GROUP BY instrument_id
),

business_days AS (
    -- the FIRM business dates of the last 60 up to D (stale_days counts at most 59)
    SELECT day, bd
    FROM core.calendar_days
    WHERE calendar_id = 'FIRM' AND is_business
      AND day <= getvariable('as_of_date')
      AND day >= core.add_business_days('FIRM', getvariable('as_of_date'), -59)
),

closes AS (
    SELECT instrument_id, price_date, arg_max(close_price, business_date) AS close_price
    FROM core.prices
    WHERE business_date <= getvariable('as_of_date')
      AND price_date <= getvariable('as_of_date')
      AND price_date >= (SELECT min(day) FROM business_days)
      AND instrument_id IN (SELECT instrument_id FROM held)
    GROUP BY instrument_id, price_date
),

close_by_day AS (
    -- each business date's close (the last on or before it), and whether it is the one before's
    SELECT
        instrument_id,
        bd,
        close_price = lag(close_price) OVER (PARTITION BY instrument_id ORDER BY bd) AS unchanged
    FROM (
        SELECT
            h.instrument_id,
            b.bd,
            last_value(c.close_price IGNORE NULLS) OVER (PARTITION BY h.instrument_id ORDER BY b.bd) AS close_price
        FROM held h
        CROSS JOIN business_days b
        LEFT JOIN closes c ON c.instrument_id = h.instrument_id AND c.price_date = b.day
    )
),

staleness AS (
    -- business dates in a row, ending at D, whose close was the one of the business date before
    SELECT
        instrument_id,
        core.bd_number('FIRM', getvariable('as_of_date'))
            - coalesce(max(bd) FILTER (WHERE unchanged IS DISTINCT FROM TRUE), min(bd)) AS stale_days
    FROM close_by_day
    GROUP BY instrument_id
),

checked AS (
    SELECT
        h.*,
        i.ipv_price,
        i.source,
        i.ipv_price_date,
        h.fo_price / i.ipv_price - 1 AS diff_pct,
        core.param('IPV_TOLERANCE_PCT', h.asset_class) AS tolerance,
        s.stale_days
    FROM held h
    LEFT JOIN independent i USING (instrument_id)
    LEFT JOIN staleness s USING (instrument_id)
),

adjustments AS (
    -- Σ q × (ipv_price − fo_price) × fx over the BOOK holdings (net of longs and shorts)
    SELECT instrument_id, net_quantity * (ipv_price - fo_price) * fx AS adjustment_if_breach
    FROM checked
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        c.instrument_id,
        c.asset_class,
        c.currency,
        c.fo_price,
        c.fo_price_date,
        c.ipv_price,
        c.source,
        c.ipv_price_date,
        c.diff_pct,
        c.tolerance,
        CASE
            WHEN c.diff_pct IS NULL THEN 'NO_IPV_PRICE'
            WHEN abs(c.diff_pct) > c.tolerance THEN 'BREACH'
            ELSE 'WITHIN'
        END AS status,
        c.stale_days,
        c.stale_days >= core.param('STALE_PRICE_DAYS', 'ALL') AS stale,
        c.net_quantity,
        c.fx,
        c.gross_mv_usd,
        CASE WHEN abs(c.diff_pct) > c.tolerance THEN a.adjustment_if_breach ELSE 0 END AS adjustment_usd
    FROM checked c
    JOIN adjustments a USING (instrument_id)
)

SELECT * FROM final ORDER BY instrument_id
