-- What changed on the worklist on the business date (DOMAIN §9.1): the data's changes against
-- the previous business date's items, and each person's action effective since it (a FIRM
-- holiday's with the next business date's).
WITH today AS (
    SELECT * FROM main.worklist_state WHERE as_of_date = getvariable('as_of_date')
),

previous AS (
    SELECT *
    FROM main.worklist_state
    WHERE as_of_date = core.previous_business_day('FIRM', getvariable('as_of_date'))
),

data_changes AS (
    -- NEW: open today, not tracked yesterday
    SELECT t.item_id, 'NEW' AS change, t.priority, CAST(NULL AS VARCHAR) AS previous_priority
    FROM today t
    WHERE t.state <> 'CLOSED' AND t.item_id NOT IN (SELECT item_id FROM previous)
    UNION ALL
    -- CLEARED: open yesterday, gone today (the data no longer shows it)
    SELECT p.item_id, 'CLEARED', CAST(NULL AS VARCHAR), p.priority
    FROM previous p
    WHERE p.state <> 'CLOSED' AND p.item_id NOT IN (SELECT item_id FROM today)
    UNION ALL
    -- CLOSED: open yesterday, closed by a person today
    SELECT t.item_id, 'CLOSED', t.priority, p.priority AS previous_priority
    FROM today t
    JOIN previous p ON p.item_id = t.item_id
    WHERE t.state = 'CLOSED' AND p.state <> 'CLOSED'
    UNION ALL
    -- ESCALATED: its priority rose (P3 -> P2 -> P1)
    SELECT t.item_id, 'ESCALATED', t.priority, p.priority AS previous_priority
    FROM today t
    JOIN previous p ON p.item_id = t.item_id
    WHERE t.state <> 'CLOSED' AND p.state <> 'CLOSED' AND t.priority < p.priority
    UNION ALL
    -- OVERDUE: passed its due date that day
    SELECT t.item_id, 'OVERDUE', t.priority, p.priority AS previous_priority
    FROM today t
    LEFT JOIN previous p ON p.item_id = t.item_id
    WHERE t.state <> 'CLOSED' AND t.overdue AND NOT coalesce(p.overdue, false)
),

described AS (
    SELECT
        c.item_id,
        c.change,
        CAST(0 AS BIGINT) AS change_seq,
        coalesce(t.item_type, p.item_type) AS item_type,
        coalesce(t.owner_team, p.owner_team) AS owner_team,
        c.priority,
        c.previous_priority,
        coalesce(t.value_usd, p.value_usd) AS value_usd,
        coalesce(t.due_date, p.due_date) AS due_date,
        CAST(NULL AS VARCHAR) AS action_by,
        CAST(NULL AS VARCHAR) AS action_text,
        coalesce(t.description, p.description) AS description
    FROM data_changes c
    LEFT JOIN today t ON t.item_id = c.item_id
    LEFT JOIN previous p ON p.item_id = c.item_id
),

actions AS (
    -- each person's action effective on the date, on an item tracked on it or the day before
    SELECT
        a.item_id,
        a.action AS change,
        a.action_id AS change_seq,
        coalesce(t.item_type, p.item_type, split_part(a.item_id, ':', 1)) AS item_type,
        coalesce(t.owner_team, p.owner_team) AS owner_team,
        t.priority,
        p.priority AS previous_priority,
        coalesce(t.value_usd, p.value_usd) AS value_usd,
        coalesce(t.due_date, p.due_date) AS due_date,
        a."by" AS action_by,
        nullif(concat_ws(': ', coalesce(a.reason, a.assignee), a."text"), '') AS action_text,
        coalesce(t.description, p.description) AS description
    FROM core.case_actions a
    LEFT JOIN today t ON t.item_id = a.item_id
    LEFT JOIN previous p ON p.item_id = a.item_id
    WHERE a.effective_date > core.previous_business_day('FIRM', getvariable('as_of_date'))
      AND a.effective_date <= getvariable('as_of_date')
),

final AS (
    SELECT getvariable('as_of_date') AS as_of_date, * FROM described
    UNION ALL
    SELECT getvariable('as_of_date') AS as_of_date, * FROM actions
)

SELECT * FROM final
