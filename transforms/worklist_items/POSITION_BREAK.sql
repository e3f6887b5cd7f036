-- POSITION_BREAK (DOMAIN §9.1, §8.4): a client position whose custody quantity differs from
-- what settled into it (position_recon BREAK). Key: client, instrument, custodian; value:
-- |difference| × the instrument's latest close × its currency's rate. Waits for position_recon
-- (product control); counted on the instrument currency's calendar, a custody matter.
WITH breaks AS (
    SELECT *
    FROM main.position_recon
    WHERE as_of_date = getvariable('as_of_date') AND status = 'BREAK'
),

instruments AS (
    SELECT instrument_id, asset_class, currency
    FROM core.instruments_on(getvariable('as_of_date'))
),

closes AS (
    SELECT instrument_id, close_price
    FROM core.prices
    WHERE business_date <= getvariable('as_of_date') AND price_date <= getvariable('as_of_date')
    QUALIFY row_number() OVER (PARTITION BY instrument_id ORDER BY price_date DESC, business_date DESC) = 1
),

fx AS (
    SELECT currency, usd_per_unit FROM main.fx_daily WHERE as_of_date = getvariable('as_of_date')
),

final AS (
    SELECT
        b.client_key || '|' || b.instrument_id || '|' || b.custodian AS natural_key,
        b.client_key,
        b.instrument_id,
        b.custodian,
        i.currency,
        i.asset_class,
        abs(b.difference) * p.close_price * fx.usd_per_unit AS value_usd,
        coalesce(i.currency, 'FIRM') AS calendar_id,
        'Position of client ' || b.client_key || ' in ' || b.instrument_id || ' at ' || b.custodian
        || ': custody holds ' || b.actual_quantity || ', settlements say ' || b.expected_quantity AS description,
        CAST(NULL AS DATE) AS condition_since
    FROM breaks b
    LEFT JOIN instruments i ON i.instrument_id = b.instrument_id
    LEFT JOIN closes p ON p.instrument_id = b.instrument_id
    LEFT JOIN fx ON fx.currency = i.currency
)

SELECT * FROM final
