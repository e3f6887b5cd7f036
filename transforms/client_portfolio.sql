-- Each client's portfolio on the business date: size, breadth and concentration of the holdings
-- the custodians report, against the concentration its risk profile allows (CLIENT_HHI_MAX).
-- Concentration is by issuer risk, so a fund is not one name: it is a diversified portfolio of
-- its own, at most as concentrated as the UCITS 5/10/40 rule allows (no issuer above 10 %,
-- those above 5 % at most 40 % together: four at 10 % and twelve at 5 %, an HHI of 0.07). A fund
-- holding of share s adds s² × 0.07 to the client's HHI (its look-through at that bound), a
-- single name s².
-- Market values as in risk_exposure (int_holdings_valued): quantity summed over custodians ×
-- latest close × fx.
WITH valued AS (
    SELECT holder_id AS client_id, instrument_id, asset_class, market_value_usd
    FROM main.int_holdings_valued
    WHERE as_of_date = getvariable('as_of_date') AND holder_type = 'CLIENT'
),

gross AS (
    -- weights on gross value (|MV|), as in risk_concentration; exact sums, so a rebuild gives
    -- the same figures whatever the order of the rows
    SELECT client_id, CAST(sum(CAST(abs(market_value_usd) AS DECIMAL(38, 12))) AS DOUBLE) AS gross_usd
    FROM valued
    GROUP BY client_id
),

shares AS (
    SELECT v.*, abs(v.market_value_usd) / nullif(g.gross_usd, 0) AS share
    FROM valued v
    JOIN gross g USING (client_id)
),

portfolios AS (
    SELECT
        client_id,
        CAST(sum(CAST(market_value_usd AS DECIMAL(38, 12))) AS DOUBLE) AS aum_usd,
        count(*) AS n_positions,
        count(DISTINCT asset_class) AS n_asset_classes,
        CAST(sum(CAST(share * share * CASE WHEN asset_class = 'FUND' THEN 0.07 ELSE 1 END AS DECIMAL(38, 18)))
            AS DOUBLE) AS hhi,
        max(share) AS top_holding_share
    FROM shares
    GROUP BY client_id
),

profiles AS (
    SELECT client_id, segment, relationship_manager_id, risk_profile
    FROM core.clients
    WHERE business_date = (
        SELECT max(business_date) FROM core.clients WHERE business_date <= getvariable('as_of_date')
    )
),

hhi_targets AS (
    -- the milestone in force on the date (latest effective_date on or before it; empty = from the start)
    SELECT scope_id AS risk_profile, target_value AS hhi_max
    FROM core.targets
    WHERE metric = 'CLIENT_HHI_MAX' AND business_date = (
        SELECT max(business_date) FROM core.targets WHERE business_date <= getvariable('as_of_date')
    ) AND coalesce(effective_date, DATE '0001-01-01') <= getvariable('as_of_date')
    QUALIFY row_number() OVER (PARTITION BY scope_id ORDER BY coalesce(effective_date, DATE '0001-01-01') DESC) = 1
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        client_key(p.client_id) AS client_key,
        c.segment,
        c.relationship_manager_id,
        c.risk_profile,
        p.aum_usd,
        p.n_positions,
        p.n_asset_classes,
        p.hhi,
        1 / nullif(p.hhi, 0) AS effective_n,
        p.top_holding_share,
        t.hhi_max,
        p.hhi > t.hhi_max AS risk_profile_breach
    FROM portfolios p
    LEFT JOIN profiles c USING (client_id)
    LEFT JOIN hhi_targets t USING (risk_profile)
)

SELECT * FROM final ORDER BY client_key
