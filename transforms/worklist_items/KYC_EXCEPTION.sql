-- KYC_EXCEPTION (DOMAIN §9.1, issue 25 item 3): a trade booked for a client whose KYC is not
-- APPROVED, or who is CLOSED, in the client file known on the date. Key: trade_id; value: the
-- notional in USD. The trade is flagged from the date it is booked while it is in the recon
-- window (its 20 business dates) and the client's file still says so: approving the client's KYC
-- clears it, as does cancelling the trade. The client is named by client_key, segment and
-- relationship manager, never by personal data.
WITH bounds AS (
    SELECT * FROM core.recon_window(getvariable('as_of_date'))
),

clients AS (
    SELECT client_id, segment, relationship_manager_id, kyc_status, status
    FROM core.clients
    WHERE business_date = (SELECT max(business_date) FROM core.clients WHERE business_date <= getvariable('as_of_date'))
),

trades_now AS (
    -- each trade of the window's latest version known on the date
    SELECT t.*
    FROM core.trades t, bounds b
    WHERE t.business_date BETWEEN b.lookback_start AND b.as_of_date
      AND t.trade_date BETWEEN b.window_start AND b.as_of_date
    QUALIFY row_number() OVER (PARTITION BY t.trade_id ORDER BY t.version DESC, t.business_date DESC) = 1
),

booked AS (
    -- when the trade was first delivered: the date the exception arose
    SELECT t.trade_id, min(t.business_date) AS booked_on
    FROM core.trades t, bounds b
    WHERE t.business_date BETWEEN b.lookback_start AND b.as_of_date
      AND t.trade_id IN (SELECT trade_id FROM trades_now WHERE event_type <> 'CANCEL')
    GROUP BY t.trade_id
),

instruments AS (
    SELECT instrument_id, asset_class
    FROM core.instruments_on(getvariable('as_of_date'))
),

final AS (
    SELECT
        t.trade_id AS natural_key,
        t.trade_id,
        client_key(t.client_id) AS client_key,
        t.instrument_id,
        t.book,
        t.currency,
        i.asset_class,
        c.segment,
        c.relationship_manager_id,
        abs(t.quantity * t.price * fx.usd_per_unit) AS value_usd,
        'FIRM' AS calendar_id,
        'Trade ' || t.trade_id || ' (' || t.book || ', ' || t.side || ' ' || t.quantity || ' ' || t.instrument_id
        || ') booked ' || bk.booked_on || ' for a ' || c.segment || ' client of RM ' || c.relationship_manager_id
        || CASE WHEN c.status = 'CLOSED' THEN ' whose account is CLOSED' ELSE ' whose KYC is ' || c.kyc_status END
        AS description,
        bk.booked_on AS condition_since
    FROM trades_now t
    JOIN clients c ON c.client_id = t.client_id
    JOIN booked bk ON bk.trade_id = t.trade_id
    LEFT JOIN instruments i ON i.instrument_id = t.instrument_id
    LEFT JOIN main.fx_daily fx ON fx.as_of_date = getvariable('as_of_date') AND fx.currency = t.currency
    WHERE t.event_type <> 'CANCEL' AND (c.kyc_status <> 'APPROVED' OR c.status = 'CLOSED')
)

SELECT * FROM final
