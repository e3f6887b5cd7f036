-- LIMIT_BREACH (DOMAIN §9.1): a limit in BREACH on the date (risk_limit_status). Key: limit_id;
-- value: how far the measured exposure is over the limit (|exposure| for NET_EXPOSURE, as the
-- utilisation measures it; none for a CONCENTRATION_SHARE limit, whose excess is a share). A
-- BOOK or ASSET_CLASS limit routes by its scope; a CLIENT limit names the client by client_key.
WITH breached AS (
    SELECT *
    FROM main.risk_limit_status
    WHERE as_of_date = getvariable('as_of_date') AND status = 'BREACH'
),

final AS (
    SELECT
        limit_id AS natural_key,
        limit_id,
        CASE WHEN scope_type = 'BOOK' THEN scope_id END AS book,
        CASE WHEN scope_type = 'ASSET_CLASS' THEN scope_id END AS asset_class,
        CASE WHEN scope_type = 'CLIENT' THEN scope_id END AS client_key,
        -- a share limit's excess is no amount: no value (its priority comes from its deadline);
        -- a breach is at or above 100 %, so the excess is never negative
        CASE WHEN metric NOT IN ('CONCENTRATION_SHARE', 'LIQUIDITY_DAYS_SHARE') AND isfinite(utilisation)
            THEN greatest(CAST(abs(utilisation) * limit_value - limit_value AS DOUBLE), 0) END
            AS value_usd,
        'FIRM' AS calendar_id,
        'Limit ' || limit_id || ' ' || metric || ' of ' || scope_type || ' ' || scope_id || ' in BREACH: '
        || round(utilisation * 100, 1) || ' % of ' || limit_value AS description,
        CAST(NULL AS DATE) AS condition_since
    FROM breached
)

SELECT * FROM final
