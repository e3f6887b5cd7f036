-- The client file's change log: one row per client whose tracked attributes in the snapshot of
-- the business date differ from the latest earlier snapshot in the warehouse (or who is new).
-- Work is two snapshots, whatever the length of the history. client_dim collapses this log
-- into versions, so a change seen twice (a late or re-delivered snapshot) is one version.
WITH snapshot AS (
    SELECT client_id, segment, country, kyc_status, risk_profile, relationship_manager_id, status
    FROM core.clients
    WHERE business_date = getvariable('as_of_date')
),

previous_snapshot AS (
    SELECT client_id, segment, country, kyc_status, risk_profile, relationship_manager_id, status
    FROM core.clients
    WHERE business_date = (
        SELECT max(business_date) FROM core.clients WHERE business_date < getvariable('as_of_date')
    )
),

compared AS (
    SELECT
        s.*,
        p.client_id IS NULL AS is_new,
        list_filter([
            CASE WHEN s.segment IS DISTINCT FROM p.segment THEN 'segment' END,
            CASE WHEN s.country IS DISTINCT FROM p.country THEN 'country' END,
            CASE WHEN s.kyc_status IS DISTINCT FROM p.kyc_status THEN 'kyc_status' END,
            CASE WHEN s.risk_profile IS DISTINCT FROM p.risk_profile THEN 'risk_profile' END,
            CASE WHEN s.relationship_manager_id IS DISTINCT FROM p.relationship_manager_id THEN 'relationship_manager_id' END,
            CASE WHEN s.status IS DISTINCT FROM p.status THEN 'status' END
        ], lambda a: a IS NOT NULL) AS changed
    FROM snapshot s
    LEFT JOIN previous_snapshot p USING (client_id)
),

final AS (
    SELECT
        getvariable('as_of_date') AS business_date,
        client_key(client_id) AS client_key,
        CASE WHEN is_new THEN 'NEW' ELSE 'CHANGED' END AS change,
        CASE WHEN is_new THEN NULL ELSE array_to_string(changed, ',') END AS changed_attributes,
        segment,
        country,
        kyc_status,
        risk_profile,
        relationship_manager_id,
        status
    FROM compared
    WHERE is_new OR len(changed) > 0
)

SELECT * FROM final ORDER BY client_key
