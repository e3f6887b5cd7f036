-- Market value in USD of every holding reported by the custodians, as of the business date.
-- A holder's position in an instrument is summed over custodians. Prices and fx are the latest
-- close on or before the date (price_date says which), reference data the latest delivery.
WITH positions AS (
    SELECT holder_type, holder_id, instrument_id, CAST(sum(CAST(quantity AS DECIMAL(38, 12))) AS DOUBLE) AS quantity
    FROM core.positions
    WHERE business_date = getvariable('as_of_date')
    GROUP BY ALL
),

instruments AS (
    SELECT instrument_id, asset_class, sector, issuer_id, issuer_country, currency
    FROM core.instruments
    WHERE business_date = (
        SELECT max(business_date) FROM core.instruments WHERE business_date <= getvariable('as_of_date')
    )
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
    SELECT currency, arg_max(usd_per_unit, (rate_date, business_date)) AS usd_per_unit
    FROM core.fx_rates
    WHERE rate_date <= getvariable('as_of_date') AND business_date <= getvariable('as_of_date')
    GROUP BY currency
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        p.holder_type,
        -- a client is published under its pseudonym (client_key), never its id
        CASE WHEN p.holder_type = 'CLIENT' THEN client_key(p.holder_id) ELSE p.holder_id END AS holder_id,
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
