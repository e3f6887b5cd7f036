-- IPV_BREAK (DOMAIN §9.1, §8.3): an instrument whose front-office price is outside tolerance of
-- the independent price (ipv_results BREACH) or has not moved for STALE_PRICE_DAYS business
-- dates. Key: instrument_id; value: |adjustment| for a breach, the gross MV held when stale.
-- Waits for ipv_results (product control).
WITH breaks AS (
    SELECT *
    FROM main.ipv_results
    WHERE as_of_date = getvariable('as_of_date')
      AND (status = 'BREACH' OR stale_days >= core.param('STALE_PRICE_DAYS', 'ALL'))
),

instruments AS (
    SELECT instrument_id, asset_class
    FROM core.instruments_on(getvariable('as_of_date'))
),

final AS (
    SELECT
        b.instrument_id AS natural_key,
        b.instrument_id,
        i.asset_class,
        CASE WHEN b.status = 'BREACH' THEN abs(b.adjustment_usd) ELSE abs(b.gross_mv_usd) END AS value_usd,
        'FIRM' AS calendar_id,
        'Price of ' || b.instrument_id || CASE WHEN b.status = 'BREACH'
            THEN ': front ' || b.fo_price || ' vs independent ' || b.ipv_price || ' (' || coalesce(b.source, '?')
                || '), adjustment ' || round(b.adjustment_usd, 0) || ' USD'
            ELSE ': unchanged for ' || b.stale_days || ' business dates (stale)' END AS description,
        CAST(NULL AS DATE) AS condition_since
    FROM breaks b
    LEFT JOIN instruments i ON i.instrument_id = b.instrument_id
)

SELECT * FROM final
