-- Liquidity (DOMAIN §11.4): how many days each BOOK holding takes to liquidate trading at most
-- LIQUIDITY_PARTICIPATION (control parameter) of the instrument's average daily volume:
-- days_to_liquidate = |quantity| / (participation × adv_quantity), and its bucket (≤1, 1–5, 5–20,
-- >20 days; UNKNOWN without a volume). risk_liquidity_profile sums the buckets per portfolio.
WITH holdings AS (
    SELECT holder_id AS book, instrument_id, asset_class, quantity, market_value_usd
    FROM main.risk_exposure
    WHERE as_of_date = getvariable('as_of_date') AND holder_type = 'BOOK'
),

volumes AS (
    SELECT instrument_id, CAST(adv_quantity AS DOUBLE) AS adv_quantity
    FROM core.instruments_on(getvariable('as_of_date'))
),

participation AS (
    SELECT core.param('LIQUIDITY_PARTICIPATION', 'ALL') AS participation
),

days AS (
    SELECT
        h.*,
        v.adv_quantity,
        p.participation,
        abs(h.quantity) / nullif(p.participation * v.adv_quantity, 0) AS days_to_liquidate
    FROM holdings h
    LEFT JOIN volumes v USING (instrument_id)
    CROSS JOIN participation p
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        book,
        instrument_id,
        asset_class,
        quantity,
        adv_quantity,
        participation,
        days_to_liquidate,
        CASE
            WHEN days_to_liquidate IS NULL THEN 'UNKNOWN'
            WHEN days_to_liquidate <= 1 THEN '<=1'
            WHEN days_to_liquidate <= 5 THEN '1-5'
            WHEN days_to_liquidate <= 20 THEN '5-20'
            ELSE '>20'
        END AS bucket,
        market_value_usd
    FROM days
)

SELECT * FROM final ORDER BY book, instrument_id
