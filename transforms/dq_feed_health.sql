-- Health of every feed for the business date: completeness, conservation, expectations, gate.
WITH health AS (
    SELECT * FROM core.feed_health WHERE business_date = getvariable('as_of_date')
),

final AS (
    SELECT
        business_date,
        feed,
        file,
        expected_rows,
        received_rows,
        loaded_rows,
        quarantined_rows,
        CASE WHEN received_rows > 0 THEN quarantined_rows / received_rows END AS quarantined_share,
        conservation_ok,
        expectations_run,
        expectations_failed,
        validation_engine,
        rows_validated,
        sampled,
        gate,
        freshness,
        delivered_at,
        deadline,
        reason,
        schema_note
    FROM health
)

SELECT * FROM final ORDER BY feed
