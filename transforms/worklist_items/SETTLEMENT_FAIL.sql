-- SETTLEMENT_FAIL (DOMAIN §9.1): a settlement whose latest delivered row (over the recon's
-- 60-business-date lookback) is FAILED. Key: settlement_id; value: the settlement amount in USD
-- at the date's rates; the fail reason the custodian gave (e.g. SSI_MISSING) is in the
-- description. Counted on the settlement currency's calendar (§7.1).
WITH bounds AS (
    SELECT * FROM core.recon_window(getvariable('as_of_date'))
),

settlements_now AS (
    SELECT s.*
    FROM core.settlements s, bounds b
    WHERE s.business_date BETWEEN b.lookback_start AND b.as_of_date
    QUALIFY row_number() OVER (PARTITION BY s.settlement_id ORDER BY s.business_date DESC) = 1
),

failed AS (
    SELECT * FROM settlements_now WHERE status = 'FAILED'
),

trades AS (
    -- the book and instrument of the failed settlements' trades (their latest version known)
    SELECT t.trade_id, t.book, t.instrument_id
    FROM core.trades t, bounds b
    WHERE t.business_date BETWEEN b.lookback_start AND b.as_of_date
      AND t.trade_id IN (SELECT trade_id FROM failed)
    QUALIFY row_number() OVER (PARTITION BY t.trade_id ORDER BY t.version DESC, t.business_date DESC) = 1
),

instruments AS (
    SELECT instrument_id, asset_class
    FROM core.instruments_on(getvariable('as_of_date'))
),

final AS (
    SELECT
        f.settlement_id AS natural_key,
        f.trade_id,
        f.settlement_id,
        t.instrument_id,
        t.book,
        f.custodian,
        f.currency,
        i.asset_class,
        abs(f.settlement_amount * fx.usd_per_unit) AS value_usd,
        f.currency AS calendar_id,
        'FAILED settlement ' || f.settlement_id || ' of trade ' || f.trade_id || ' at ' || f.custodian
        || ', ' || f.settlement_amount || ' ' || f.currency || ' due ' || f.intended_settle_date
        || ': ' || coalesce(f.fail_reason, 'no reason given') AS description,
        f.business_date AS condition_since,
        f.fail_reason
    FROM failed f
    LEFT JOIN trades t ON t.trade_id = f.trade_id
    LEFT JOIN instruments i ON i.instrument_id = t.instrument_id
    LEFT JOIN main.fx_daily fx ON fx.as_of_date = getvariable('as_of_date') AND fx.currency = f.currency
)

SELECT * FROM final
