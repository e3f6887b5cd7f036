-- The conditions that raise an alert on the business date, one row per condition: a feed whose
-- gate failed, a feed that came late, a limit in BREACH, a reconciliation break older than 5 business dates, a missed
-- target. alert_key names the condition; with business_date it is the key of the sent-ledger
-- (midoffice/alerts.py), so a rerun never sends the same alert twice.
WITH failed_gates AS (
    SELECT
        'FEED_GATE_FAILED' AS alert_type,
        'CRITICAL' AS severity,
        feed AS subject_id,
        'Feed ' || feed || ' failed its gate: ' || coalesce(reason, 'no reason recorded') AS message,
        quarantined_share AS measured_value,
        getvariable('quarantine_threshold') AS threshold
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
        NULL::DOUBLE
    FROM main.dq_feed_health
    WHERE business_date = getvariable('as_of_date') AND freshness = 'LATE' AND gate = 'PASS'
),

limit_breaches AS (
    SELECT
        'LIMIT_BREACH',
        'CRITICAL',
        limit_id,
        'Limit ' || limit_id || ' (' || scope_type || ' ' || scope_id || ', ' || metric || ') in BREACH: utilisation '
            || printf('%.1f', 100 * utilisation) || ' %, ' || consecutive_breach_days || ' business date(s) in a row',
        utilisation,
        1.0
    FROM main.risk_limit_utilisation
    WHERE as_of_date = getvariable('as_of_date') AND status = 'BREACH'
),

old_breaks AS (
    SELECT
        'BREAK_OVER_5BD',
        'WARNING',
        trade_id,
        status || ' on trade ' || trade_id || coalesce(' (book ' || book || ')', '') || ' open since '
            || strftime(first_seen_date, '%Y-%m-%d') || ': ' || age_bd || ' business dates'
            || coalesce(', ' || printf('%.2f', notional_usd) || ' USD', ''),
        age_bd,
        5
    FROM main.ops_trade_recon_between(getvariable('as_of_date'), getvariable('as_of_date'))
    WHERE age_bd > 5
),

missed_targets AS (
    SELECT
        'TARGET_MISSED',
        'WARNING',
        target_id,
        'Target ' || target_id || ' (' || metric || ' ' || scope_id || ') missed: actual '
            || printf('%.4g', actual) || ', target ' || printf('%.4g', target_value),
        actual,
        target_value
    FROM main.kpi_targets
    WHERE business_date = getvariable('as_of_date') AND met = false
),

raised AS (
    SELECT * FROM failed_gates
    UNION ALL SELECT * FROM late_feeds
    UNION ALL SELECT * FROM limit_breaches
    UNION ALL SELECT * FROM old_breaks
    UNION ALL SELECT * FROM missed_targets
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
        threshold
    FROM raised
)

SELECT * FROM final ORDER BY severity, alert_type, subject_id
