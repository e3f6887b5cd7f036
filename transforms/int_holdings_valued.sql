-- Every holding the custodians report, valued on the business date: the one place the as-of
-- valuation is written (risk_exposure publishes it, client_portfolio sums it per client).
-- A holder's position in an instrument is summed over custodians. Prices and fx are the latest
-- close and rate on or before the date (price_date says which close), reference data the latest
-- delivery. Client holders keep their client_id here: this model is not published.
WITH positions AS (
    SELECT holder_type, holder_id, instrument_id, CAST(sum(CAST(quantity AS DECIMAL(38, 12))) AS DOUBLE) AS quantity
    FROM core.positions
    WHERE business_date = getvariable('as_of_date')
    GROUP BY ALL
),

instruments AS (
    SELECT instrument_id, asset_class, sector, issuer_id, issuer_country, currency
    FROM core.instruments_on(getvariable('as_of_date'))
),

closes AS (
    SELECT instrument_id,
           arg_max(close_price, (price_date, business_date)) AS price,
           max(price_date) AS price_date
    FROM core.prices
    WHERE price_date <= getvariable('as_of_date') AND business_date <= getvariable('as_of_date')
    GROUP BY instrument_id
),

fx AS (
    -- no lookback bound, unlike fx_daily: a holding is valued at its currency's latest rate however old
    SELECT currency, usd_per_unit
    FROM core.fx_rates_on(getvariable('as_of_date'), getvariable('as_of_date'), NULL)
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        p.holder_type,
        p.holder_id,
        p.instrument_id,
        p.quantity,
        c.price,
        c.price_date,
        i.currency,
        fx.usd_per_unit AS fx,
        p.quantity * c.price * fx.usd_per_unit AS market_value_usd,
        i.asset_class,
        i.sector,
        i.issuer_id,
        i.issuer_country
    FROM positions p
    LEFT JOIN instruments i USING (instrument_id)
    LEFT JOIN closes c USING (instrument_id)
    LEFT JOIN fx ON fx.currency = i.currency
)

SELECT * FROM final ORDER BY holder_type, holder_id, instrument_id
