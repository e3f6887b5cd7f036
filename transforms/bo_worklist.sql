-- The open items of the date: worklist_state without the ones a person closed.
WITH tracked AS (
    SELECT * EXCLUDE (run_id, loaded_at)
    FROM main.worklist_state
    WHERE as_of_date = getvariable('as_of_date')
),

final AS (
    SELECT * FROM tracked WHERE state <> 'CLOSED'
)

SELECT * FROM final
