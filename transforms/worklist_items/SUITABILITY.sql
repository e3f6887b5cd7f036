-- SUITABILITY (DOMAIN §9.1, issue 25 item 3): a client whose portfolio breaches its risk
-- profile (client_portfolio risk_profile_breach). Key: client_key; value: the client's AUM.
-- Named by client_key, segment and relationship manager, never by personal data.
WITH breaches AS (
    SELECT *
    FROM main.client_portfolio
    WHERE as_of_date = getvariable('as_of_date') AND risk_profile_breach
),

final AS (
    SELECT
        b.client_key AS natural_key,
        b.client_key,
        b.segment,
        b.relationship_manager_id,
        abs(b.aum_usd) AS value_usd,
        'FIRM' AS calendar_id,
        b.segment || ' client ' || b.client_key || ' of RM ' || coalesce(b.relationship_manager_id, '?') || ', profile '
        || b.risk_profile || ': concentration (HHI) ' || round(b.hhi, 3) || ' above the profile''s ' || round(b.hhi_max, 3)
        || ', largest holding ' || round(b.top_holding_share * 100, 1) || ' % of ' || round(b.aum_usd, 0) || ' USD'
        AS description,
        CAST(NULL AS DATE) AS condition_since
    FROM breaches b
)

SELECT * FROM final
