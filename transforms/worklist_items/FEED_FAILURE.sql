-- FEED_FAILURE (DOMAIN §9.1): a feed whose gate failed on the date (a missing file fails its
-- gate too) or that came after its deadline. Key: the feed; value 0 (its cost is what it holds
-- up, not an amount).
WITH failing AS (
    SELECT *
    FROM main.dq_feed_health
    WHERE business_date = getvariable('as_of_date') AND (gate <> 'PASS' OR freshness = 'LATE')
),

final AS (
    SELECT
        feed AS natural_key,
        feed,
        0.0 AS value_usd,
        'FIRM' AS calendar_id,
        'Feed ' || feed || CASE WHEN gate <> 'PASS' THEN ' failed its gate: ' || coalesce(reason, 'no reason recorded')
            ELSE ' delivered late (deadline ' || coalesce(CAST(deadline AS VARCHAR), '?') || ' UTC)' END
        || coalesce(' (file ' || file || ')', '') AS description,
        CAST(NULL AS DATE) AS condition_since
    FROM failing
)

SELECT * FROM final
