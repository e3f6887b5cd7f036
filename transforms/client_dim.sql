-- Type-2 history of the client file as known on the business date: one row per client and
-- version of its tracked attributes. The versions are the change log (client_changes) up to the
-- date plus the date's own snapshot, collapsed so that a row equal to the client's previous one
-- is not a new version (a late or re-delivered snapshot repeats a change; it must not create a
-- phantom version). Work is the change log (one row per client and change), not clients × dates.
WITH snapshot AS (
    -- the date's file: tracked attributes (self-healing if the log missed a change) and the
    -- non-tracked ones kept as of the date (type 1)
    SELECT
        client_key(client_id) AS client_key,
        segment, country, kyc_status, risk_profile, relationship_manager_id, status,
        client_type,
        onboarding_date,
        CASE
            WHEN client_type <> 'INDIVIDUAL' THEN client_type
            WHEN age < 30 THEN '<30'
            WHEN age < 45 THEN '30-44'
            WHEN age < 60 THEN '45-59'
            ELSE '60+'
        END AS age_band
    FROM (
        -- age in completed years on the date (a birthday not yet reached this year does not count)
        SELECT *,
               year(getvariable('as_of_date')) - year(birth_or_incorporation_date)
               - CASE WHEN strftime(getvariable('as_of_date'), '%m%d') < strftime(birth_or_incorporation_date, '%m%d')
                      THEN 1 ELSE 0 END AS age
        FROM core.clients
        WHERE business_date = getvariable('as_of_date')
    )
),

observations AS (
    SELECT DISTINCT client_key, business_date AS seen_on,
           segment, country, kyc_status, risk_profile, relationship_manager_id, status
    FROM (
        SELECT client_key, business_date, segment, country, kyc_status, risk_profile, relationship_manager_id, status
        FROM main.client_changes
        WHERE business_date <= getvariable('as_of_date')
        UNION ALL
        SELECT client_key, getvariable('as_of_date'), segment, country, kyc_status, risk_profile,
               relationship_manager_id, status
        FROM snapshot
    )
),

compared AS (
    SELECT
        *,
        (
            (segment, country, kyc_status, risk_profile, relationship_manager_id, status)
            IS DISTINCT FROM lag((segment, country, kyc_status, risk_profile, relationship_manager_id, status))
                OVER (PARTITION BY client_key ORDER BY seen_on)
        ) AS starts_version
    FROM observations
),

versions AS (
    SELECT
        client_key,
        row_number() OVER (PARTITION BY client_key ORDER BY seen_on) AS version,
        seen_on AS valid_from,
        lead(seen_on) OVER (PARTITION BY client_key ORDER BY seen_on) AS valid_to,
        segment, country, kyc_status, risk_profile, relationship_manager_id, status
    FROM compared
    WHERE starts_version
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        v.client_key,
        v.version,
        v.valid_from,
        v.valid_to,
        v.valid_to IS NULL AS is_current,
        v.segment,
        v.country,
        v.kyc_status,
        v.risk_profile,
        v.relationship_manager_id,
        v.status,
        s.client_type,
        s.age_band,
        s.onboarding_date
    FROM versions v
    LEFT JOIN snapshot s USING (client_key)
)

SELECT * FROM final ORDER BY client_key, valid_from
