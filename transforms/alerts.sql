-- What a person must see on the business date (DOMAIN §9.3), one row per condition: single events
-- one by one (a feed whose gate failed, a feed that came late, a limit newly in BREACH, a
-- worklist item that became P1 today, a missed target, saying whether it is new, a limit changed
-- by the day's limits delivery, a superseded sign-off), and the rest of the worklist summarised by
-- item type, team and priority. No alert lists the breaks one by one:
-- the worklist does. alert_key names the condition; with business_date it is the key of the
-- sent-ledger (midoffice/alerts.py), so a rerun never sends the same alert twice.
WITH previous_date AS (
    SELECT core.previous_business_day('FIRM', getvariable('as_of_date')) AS d
),


failed_gates AS (
    SELECT
        'FEED_GATE_FAILED' AS alert_type,
        'CRITICAL' AS severity,
        feed AS subject_id,
        'Feed ' || feed || ' failed its gate: ' || coalesce(reason, 'no reason recorded') AS message,
        quarantined_share AS measured_value,
        getvariable('quarantine_threshold') AS threshold,
        true AS is_new
    FROM main.dq_feed_health
    WHERE business_date = getvariable('as_of_date') AND gate = 'FAIL'
),

late_feeds AS (
    -- a file that came after its deadline: the date built, but on data a person must know was late
    SELECT
        'FEED_LATE',
        'WARNING',
        feed,
        'Feed ' || feed || ' arrived late: delivered ' || coalesce(CAST(delivered_at AS VARCHAR), '?')
            || ', due ' || coalesce(CAST(deadline AS VARCHAR), '?'),
        NULL::DOUBLE,
        NULL::DOUBLE,
        true
    FROM main.dq_feed_health
    WHERE business_date = getvariable('as_of_date') AND freshness = 'LATE' AND gate = 'PASS'
),

limit_breaches AS (
    -- a limit newly in BREACH (a breach that goes on is on the worklist, LIMIT_BREACH items)
    SELECT
        'LIMIT_BREACH',
        'CRITICAL',
        limit_id,
        'Limit ' || limit_id || ' (' || scope_type || ' ' || scope_id || ', ' || metric || ') in BREACH: utilisation '
            || printf('%.1f', 100 * utilisation) || ' %, new today',
        utilisation,
        1.0,
        true
    FROM main.risk_limit_utilisation
    WHERE as_of_date = getvariable('as_of_date') AND status = 'BREACH' AND consecutive_breach_days = 1
),

new_p1_items AS (
    -- worklist items that are P1 today and were not yesterday (new, or escalated: by value or
    -- overdue), but for the types alerted as events of their own above
    SELECT
        'WORKLIST_P1',
        'CRITICAL',
        w.item_id AS subject_id,
        'P1 ' || w.item_type || ' for ' || w.owner_team || ', due ' || strftime(w.due_date, '%Y-%m-%d')
            || CASE WHEN w.overdue THEN ' (OVERDUE)' ELSE '' END || ', '
            || coalesce(printf('%,.0f', w.value_usd) || ' USD', 'no amount') || ': '
            || w.description,
        w.value_usd,
        NULL::DOUBLE,
        true
    FROM main.bo_worklist w
    LEFT JOIN main.bo_worklist y
        ON y.item_id = w.item_id AND y.as_of_date = (SELECT d FROM previous_date) AND y.priority = 'P1'
    WHERE w.as_of_date = getvariable('as_of_date') AND w.priority = 'P1' AND y.item_id IS NULL
      AND w.item_type NOT IN ('LIMIT_BREACH', 'FEED_FAILURE')
),

worklist_summary AS (
    -- the rest of the open worklist, one line per item type, team and priority
    SELECT
        'WORKLIST_SUMMARY',
        'INFO',
        w.item_type || '/' || w.owner_team || '/' || w.priority,
        count(*) || ' open ' || w.item_type || ' item(s) for ' || w.owner_team || ' at ' || w.priority || ': '
            || count(*) FILTER (WHERE w.opened_date = getvariable('as_of_date')) || ' new today, '
            || count(*) FILTER (WHERE w.overdue) || ' overdue, ' || printf('%,.0f', coalesce(sum(CAST(w.value_usd AS DECIMAL(38, 6))), 0)) || ' USD',
        CAST(count(*) AS DOUBLE),
        NULL::DOUBLE,
        count(*) FILTER (WHERE w.opened_date = getvariable('as_of_date')) > 0
    FROM main.bo_worklist w
    WHERE w.as_of_date = getvariable('as_of_date')
      AND w.item_id NOT IN (SELECT subject_id FROM new_p1_items)
    GROUP BY w.item_type, w.owner_team, w.priority
),

target_history AS (
    -- each target's dates met or not, over the 60 FIRM business dates before the date: when its
    -- current run of misses began
    SELECT target_id, business_date, met
    FROM main.kpi_targets
    WHERE business_date < getvariable('as_of_date')
      AND business_date >= core.add_business_days('FIRM', getvariable('as_of_date'), -60)
),

missed_since AS (
    SELECT
        t.target_id,
        (SELECT min(h.business_date) FROM target_history h
         WHERE h.target_id = t.target_id AND h.met = false
           AND NOT EXISTS (SELECT 1 FROM target_history k WHERE k.target_id = t.target_id
                           AND k.business_date > h.business_date AND k.met IS DISTINCT FROM false)) AS since
    FROM main.kpi_targets t
    WHERE t.business_date = getvariable('as_of_date') AND t.met = false
),

missed_targets AS (
    -- every missed target, saying whether it is new today or since when it is missed
    SELECT
        'TARGET_MISSED',
        'WARNING',
        t.target_id,
        'Target ' || t.target_id || ' (' || t.metric || ' ' || t.scope_id || ') missed: actual '
            || printf('%.4g', t.actual) || ', target ' || printf('%.4g', t.target_value)
            || CASE WHEN m.since IS NULL THEN ', new today'
                ELSE ', missed since ' || strftime(m.since, '%Y-%m-%d') END,
        t.actual,
        t.target_value,
        m.since IS NULL
    FROM main.kpi_targets t
    LEFT JOIN missed_since m ON m.target_id = t.target_id
    WHERE t.business_date = getvariable('as_of_date') AND t.met = false
),

limit_changes AS (
    -- a limit set, moved or withdrawn by the limits delivery of the date (DOMAIN §10.3); a breach
    -- that went away because the limit was raised says so
    SELECT
        'LIMIT_CHANGE',
        'WARNING',
        limit_id,
        'Limit ' || limit_id || ' (' || scope_type || ' ' || scope_id || ', ' || metric || ') ' || change_type
            || CASE change_type
                WHEN 'CHANGED' THEN ': ' || printf('%.2f', old_limit_value) || ' -> ' || printf('%.2f', new_limit_value)
                    || ' (' || printf('%+.1f', 100 * change_pct) || ' %)'
                WHEN 'NEW' THEN ': ' || printf('%.2f', new_limit_value)
                ELSE ''
            END
            || CASE WHEN cured_by_limit_change THEN '; the breach went away because the limit moved, not the risk'
                ELSE '' END,
        change_pct,
        old_limit_value,
        true
    FROM main.limit_changes
    WHERE as_of_date = getvariable('as_of_date')
),

superseded_signoffs AS (
    -- the date's pack was signed on the version now published for it, and this build replaces
    -- that version (a restatement, DOMAIN §10.2): the sign-off is superseded
    SELECT
        'SIGNOFF_SUPERSEDED',
        'CRITICAL',
        CAST(s.effective_date AS VARCHAR),
        'The pack of ' || s.effective_date || ' signed by ' || s."by" || ' on version ' || s.version
            || ' is restated: the sign-off is superseded and must be made again',
        CAST(s.version AS DOUBLE),
        NULL,
        true
    FROM core.signoffs AS s
    INNER JOIN core.published_versions AS p ON s.effective_date = p.business_date AND s.version = p.version
    WHERE s.effective_date = getvariable('as_of_date') AND s.action = 'SIGN'
),

raised AS (
    SELECT * FROM failed_gates
    UNION ALL SELECT * FROM late_feeds
    UNION ALL SELECT * FROM limit_breaches
    UNION ALL SELECT * FROM new_p1_items
    UNION ALL SELECT * FROM worklist_summary
    UNION ALL SELECT * FROM missed_targets
    UNION ALL SELECT * FROM limit_changes
    UNION ALL SELECT * FROM superseded_signoffs
),

final AS (
    SELECT
        getvariable('as_of_date') AS business_date,
        alert_type || ':' || subject_id AS alert_key,
        alert_type,
        severity,
        subject_id,
        message,
        measured_value,
        threshold,
        is_new
    FROM raised
)

SELECT * FROM final ORDER BY severity, alert_type, subject_id
