-- LIMIT_CHANGE_REVIEW (DOMAIN §9.1, §10.3): a breach that went away because the limit was raised,
-- not because the risk fell (limit_changes cured_by_limit_change). Key: limit_id; value: the
-- exposure still above the old limit. limit_changes carries the limit's scope and exposure.
WITH cured AS (
    SELECT
        limit_id,
        scope_type,
        scope_id,
        metric,
        exposure,
        old_limit_value,
        new_limit_value
    FROM main.limit_changes
    WHERE as_of_date = getvariable('as_of_date') AND cured_by_limit_change
),

final AS (
    SELECT
        limit_id AS natural_key,
        limit_id,
        CASE WHEN scope_type = 'BOOK' THEN scope_id END AS book,
        CASE WHEN scope_type = 'ASSET_CLASS' THEN scope_id END AS asset_class,
        abs(exposure) AS value_usd,
        'FIRM' AS calendar_id,
        'Limit ' || limit_id || ' (' || metric || ' of ' || scope_type || ' ' || scope_id || ') raised from '
        || printf('%.2f', old_limit_value) || ' to ' || printf('%.2f', new_limit_value)
        || ' while in breach: review the change' AS description,
        CAST(NULL AS DATE) AS condition_since
    FROM cured
)

SELECT * FROM final
