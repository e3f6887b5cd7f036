-- RECON_BREAK (DOMAIN §9.1): a trade of the recon window that is FO_ONLY, BO_ONLY, VERSION_BREAK,
-- QTY_BREAK or AMOUNT_BREAK on the date. Key: trade_id (settlement_id for BO_ONLY, the front
-- does not know the trade); value: the notional in USD. Counted on the settlement currency's
-- calendar (a break is a settlement matter, §7.1). A break that leaves the 20-day window stays
-- on the worklist (bo_worklist carries it) until the data clears it or a person closes it.
WITH breaks AS (
    SELECT *
    FROM main.ops_trade_recon_between(getvariable('as_of_date'), getvariable('as_of_date'))
    WHERE status IN ('FO_ONLY', 'BO_ONLY', 'VERSION_BREAK', 'QTY_BREAK', 'AMOUNT_BREAK')
),

instruments AS (
    SELECT instrument_id, asset_class
    FROM core.instruments_on(getvariable('as_of_date'))
),

final AS (
    SELECT
        CASE WHEN b.status = 'BO_ONLY' THEN b.settlement_id ELSE b.trade_id END AS natural_key,
        b.trade_id,
        b.settlement_id,
        b.instrument_id,
        b.book,
        b.custodian,
        coalesce(b.back_currency, b.front_currency) AS currency,
        i.asset_class,
        abs(b.notional_usd) AS value_usd,
        coalesce(b.back_currency, b.front_currency) AS calendar_id,
        b.status || ' ' || CASE WHEN b.status = 'BO_ONLY' THEN 'settlement ' || b.settlement_id || ' (trade '
            || b.trade_id || ' unknown to the front)' ELSE 'trade ' || b.trade_id END
        || ', book ' || coalesce(b.book, '?') || ', custodian ' || coalesce(b.custodian, '?')
        || CASE b.status
            WHEN 'FO_ONLY' THEN ': booked ' || b.trade_date || ', no settlement instruction'
            WHEN 'VERSION_BREAK' THEN ': back office booked version ' || b.back_version || ', front is at '
                || b.front_version
            WHEN 'QTY_BREAK' THEN ': quantity front ' || b.front_quantity || ' vs back ' || b.back_quantity
            WHEN 'AMOUNT_BREAK' THEN ': amount differs by ' || round(b.amount_diff, 2) || ' ' || coalesce(b.back_currency, '')
            ELSE ''
        END AS description,
        b.first_seen_date AS condition_since
    FROM breaks b
    LEFT JOIN instruments i ON i.instrument_id = b.instrument_id
)

SELECT * FROM final
