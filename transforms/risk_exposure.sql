-- Market value in USD of every holding reported by the custodians, as of the business date:
-- the valuation of int_holdings_valued (latest close and rate on or before the date), with
-- client holders published under their pseudonym.
WITH final AS (
    SELECT
        as_of_date,
        holder_type,
        -- a client is published under its pseudonym (client_key), never its id
        CASE WHEN holder_type = 'CLIENT' THEN client_key(holder_id) ELSE holder_id END AS holder_id,
        instrument_id,
        quantity,
        price,
        price_date,
        currency,
        fx,
        market_value_usd,
        asset_class,
        sector,
        issuer_id,
        issuer_country
    FROM main.int_holdings_valued
    WHERE as_of_date = getvariable('as_of_date')
)

SELECT * FROM final ORDER BY holder_type, holder_id, instrument_id
