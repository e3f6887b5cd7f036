-- Every limit of the limits feed measured on the business date (DOMAIN §4.1
-- risk_limit_utilisation, without the breach run, which risk_limit_utilisation adds from the
-- history of this table). The limits are the latest delivery on or before the date.
--   GROSS_EXPOSURE Σ|MV|, NET_EXPOSURE Σ MV: the firm's BOOK holdings in the scope (FIRM: all
--     books; BOOK: that book; ISSUER, COUNTRY, ASSET_CLASS: the holdings with that attribute),
--     except CLIENT: that client's own CLIENT holdings.
--   VAR_99: risk_var.var_99 of the book or of FIRM.
--   CONCENTRATION_SHARE: the member's share in risk_concentration (BOOK, ISSUER, COUNTRY,
--     ASSET_CLASS; CLIENT: the client's share of all client holdings).
--   DV01 (FIRM, BOOK): Σ dv01_usd of risk_sensitivities; FX_NOP (FIRM): the net open position of
--     fx_net_open_position; STRESS_LOSS (FIRM, BOOK): the worst scenario's loss in risk_stress,
--     max(0, −min pnl_usd), null when the stress test was not built for the date;
--     LIQUIDITY_DAYS_SHARE (FIRM, BOOK): share_beyond_5_days of risk_liquidity_profile (DOMAIN §11).
-- utilisation = measured / limit_value, where measured is |net| for NET_EXPOSURE and DV01 (a short
-- book uses its limit as much as a long one) and the exposure itself otherwise.
WITH limits AS (
    SELECT
        limit_id,
        scope_type,
        scope_id,
        -- client limits are published under the client's pseudonym, never its id
        CASE WHEN scope_type = 'CLIENT' THEN client_key(scope_id) ELSE scope_id END AS scope_member,
        metric,
        limit_value,
        coalesce(warning_pct, 0.8) AS warning_pct,
        business_date AS limits_delivery_date
    FROM core.limits
    WHERE business_date = (
        SELECT max(business_date) FROM core.limits WHERE business_date <= getvariable('as_of_date')
    )
),

firm_exposure AS (
    -- every book together: exact decimal sums, as in risk_concentration
    SELECT
        'FIRM' AS scope_type,
        'ALL' AS scope_member,
        CAST(sum(CAST(abs(market_value_usd) AS DECIMAL(38, 6))) AS DOUBLE) AS gross_usd,
        CAST(sum(CAST(market_value_usd AS DECIMAL(38, 6))) AS DOUBLE) AS net_usd,
        CAST(NULL AS DOUBLE) AS share
    FROM main.risk_exposure
    WHERE as_of_date = getvariable('as_of_date') AND holder_type = 'BOOK'
),

member_exposure AS (
    SELECT
        CASE dimension
            WHEN 'book' THEN 'BOOK'
            WHEN 'issuer' THEN 'ISSUER'
            WHEN 'country' THEN 'COUNTRY'
            WHEN 'asset_class' THEN 'ASSET_CLASS'
            WHEN 'client' THEN 'CLIENT'
        END AS scope_type,
        member AS scope_member,
        gross_usd,
        net_usd,
        share
    FROM main.risk_concentration
    WHERE as_of_date = getvariable('as_of_date') AND dimension <> 'sector'
),

scope_exposure AS (
    SELECT * FROM firm_exposure
    UNION ALL
    SELECT * FROM member_exposure
),

scope_var AS (
    SELECT
        CASE WHEN portfolio = 'FIRM' THEN 'FIRM' ELSE 'BOOK' END AS scope_type,
        CASE WHEN portfolio = 'FIRM' THEN 'ALL' ELSE portfolio END AS scope_member,
        var_99
    FROM main.risk_var
    WHERE as_of_date = getvariable('as_of_date')
),

scope_sensitivity AS (
    -- the §11 measures per portfolio: FIRM (scope member ALL) and each book
    SELECT
        CASE WHEN grouping(book) = 1 THEN 'FIRM' ELSE 'BOOK' END AS scope_type,
        CASE WHEN grouping(book) = 1 THEN 'ALL' ELSE book END AS scope_member,
        'DV01' AS metric,
        CAST(coalesce(sum(CAST(dv01_usd AS DECIMAL(38, 6))), 0) AS DOUBLE) AS exposure
    FROM main.risk_sensitivities
    WHERE as_of_date = getvariable('as_of_date')
    GROUP BY GROUPING SETS ((book), ())
    UNION ALL
    SELECT 'FIRM', 'ALL', 'FX_NOP', coalesce(max(net_open_position_usd), 0)
    FROM main.fx_net_open_position
    WHERE as_of_date = getvariable('as_of_date')
    UNION ALL
    SELECT
        CASE WHEN portfolio = 'FIRM' THEN 'FIRM' ELSE 'BOOK' END,
        CASE WHEN portfolio = 'FIRM' THEN 'ALL' ELSE portfolio END,
        'STRESS_LOSS',
        greatest(0, -min(pnl_usd))
    FROM main.risk_stress
    WHERE as_of_date = getvariable('as_of_date')
    GROUP BY portfolio
    UNION ALL
    SELECT
        CASE WHEN portfolio = 'FIRM' THEN 'FIRM' ELSE 'BOOK' END,
        CASE WHEN portfolio = 'FIRM' THEN 'ALL' ELSE portfolio END,
        'LIQUIDITY_DAYS_SHARE',
        coalesce(any_value(share_beyond_5_days), 0)
    FROM main.risk_liquidity_profile
    WHERE as_of_date = getvariable('as_of_date')
    GROUP BY portfolio
),

stress_built AS (
    SELECT count(*) > 0 AS built FROM main.risk_stress WHERE as_of_date = getvariable('as_of_date')
),

measured AS (
    -- a scope member with no holdings has no exposure, no VaR and no share: 0. A metric that
    -- does not apply to the scope (VAR_99 of an issuer, CONCENTRATION_SHARE of the firm) is null.
    SELECT
        l.*,
        CASE
            WHEN l.metric = 'GROSS_EXPOSURE'
                 AND l.scope_type IN ('FIRM', 'BOOK', 'ISSUER', 'COUNTRY', 'ASSET_CLASS', 'CLIENT')
                THEN coalesce(e.gross_usd, 0)
            WHEN l.metric = 'NET_EXPOSURE'
                 AND l.scope_type IN ('FIRM', 'BOOK', 'ISSUER', 'COUNTRY', 'ASSET_CLASS', 'CLIENT')
                THEN coalesce(e.net_usd, 0)
            WHEN l.metric = 'VAR_99' AND l.scope_type IN ('FIRM', 'BOOK')
                THEN coalesce(v.var_99, 0)
            WHEN l.metric = 'CONCENTRATION_SHARE'
                 AND l.scope_type IN ('BOOK', 'ISSUER', 'COUNTRY', 'ASSET_CLASS', 'CLIENT')
                THEN coalesce(e.share, 0)
            WHEN l.metric IN ('DV01', 'LIQUIDITY_DAYS_SHARE') AND l.scope_type IN ('FIRM', 'BOOK')
                THEN coalesce(s.exposure, 0)
            WHEN l.metric = 'FX_NOP' AND l.scope_type = 'FIRM'
                THEN coalesce(s.exposure, 0)
            WHEN l.metric = 'STRESS_LOSS' AND l.scope_type IN ('FIRM', 'BOOK') AND (SELECT built FROM stress_built)
                THEN coalesce(s.exposure, 0)
        END AS exposure
    FROM limits l
    LEFT JOIN scope_exposure e ON e.scope_type = l.scope_type AND e.scope_member = l.scope_member
    LEFT JOIN scope_var v ON v.scope_type = l.scope_type AND v.scope_member = l.scope_member
    LEFT JOIN scope_sensitivity s
        ON s.scope_type = l.scope_type AND s.scope_member = l.scope_member AND s.metric = l.metric
),

utilised AS (
    SELECT
        *,
        CASE WHEN metric IN ('NET_EXPOSURE', 'DV01') THEN abs(exposure) ELSE exposure END / limit_value AS utilisation
    FROM measured
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        limit_id,
        scope_type,
        scope_member AS scope_id,
        metric,
        exposure,
        limit_value,
        warning_pct,
        utilisation,
        limit_value - CASE WHEN metric IN ('NET_EXPOSURE', 'DV01') THEN abs(exposure) ELSE exposure END AS headroom,
        CASE
            WHEN utilisation IS NULL THEN 'NOT_APPLICABLE'
            WHEN utilisation > 1 THEN 'BREACH'
            WHEN utilisation >= warning_pct THEN 'WARNING'
            ELSE 'OK'
        END AS status,
        limits_delivery_date
    FROM utilised
)

SELECT * FROM final ORDER BY limit_id
