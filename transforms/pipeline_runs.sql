-- One row per pipeline run and stage for the business date (ingest and validation per feed,
-- build, publish, report), as recorded by the stages themselves.
WITH runs AS (
    SELECT * FROM core.pipeline_runs WHERE business_date = getvariable('as_of_date')
),

final AS (
    SELECT
        run_id,
        business_date,
        stage,
        status,
        started_at,
        finished_at,
        date_diff('millisecond', started_at, finished_at) / 1000.0 AS seconds,
        rows_in,
        rows_out,
        message
    FROM runs
)

SELECT * FROM final ORDER BY started_at, stage
