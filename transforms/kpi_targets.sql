-- Every target of the targets feed (latest delivery on or before the date) against its actual on
-- the business date. met is null when the actual is unknown (its mart was not built for the date).
-- A target may be a glide path (DOMAIN §7.3, §12): the actual is compared with the milestone in
-- force (the latest effective_date on or before the date; an empty one is in force from the start),
-- and the row also shows the final target, the next milestone and the progress along the path.
WITH delivered AS (
    SELECT target_id, metric, scope_id, target_value, effective_date,
           -- an empty effective_date sorts first: it is in force from the start
           coalesce(effective_date, DATE '0001-01-01') AS in_force_from
    FROM core.targets
    WHERE business_date = (SELECT max(business_date) FROM core.targets WHERE business_date <= getvariable('as_of_date'))
),

paths AS (
    SELECT target_id,
           arg_min(target_value, in_force_from) AS baseline_value,
           arg_max(target_value, in_force_from) AS final_target_value
    FROM delivered
    GROUP BY target_id
),

next_milestones AS (
    SELECT target_id,
           arg_min(target_value, effective_date) AS next_milestone_value,
           min(effective_date) AS next_milestone_date
    FROM delivered
    WHERE effective_date > getvariable('as_of_date')
    GROUP BY target_id
),

targets AS (
    -- the milestone in force (a target whose first milestone is still to come is not in force yet)
    SELECT d.target_id, d.metric, d.scope_id, d.target_value, d.effective_date,
           p.baseline_value, p.final_target_value, n.next_milestone_value, n.next_milestone_date
    FROM delivered d
    JOIN paths p USING (target_id)
    LEFT JOIN next_milestones n USING (target_id)
    WHERE d.in_force_from <= getvariable('as_of_date')
    QUALIFY row_number() OVER (PARTITION BY d.target_id ORDER BY d.in_force_from DESC) = 1
),

kpi AS (
    SELECT * FROM main.kpi_daily WHERE business_date = getvariable('as_of_date')
),

active_clients AS (
    SELECT segment
    FROM core.clients
    WHERE business_date = (SELECT max(business_date) FROM core.clients WHERE business_date <= getvariable('as_of_date'))
      AND status = 'ACTIVE'
),

segment_shares AS (
    SELECT segment AS scope_id, count(*) / (SELECT count(*) FROM active_clients) AS share
    FROM active_clients
    GROUP BY segment
),

client_hhi AS (
    -- the typical (median) concentration of the portfolios of each risk profile
    SELECT risk_profile AS scope_id, median(hhi) AS median_hhi
    FROM main.client_portfolio
    WHERE as_of_date = getvariable('as_of_date')
    GROUP BY risk_profile
),

cost_to_income AS (
    SELECT CASE cost_center WHEN 'FIRM' THEN 'ALL' ELSE cost_center END AS scope_id, cost_to_income
    FROM main.cost_income
    WHERE as_of_date = getvariable('as_of_date') AND period = 'MTD'
),

book_match_rates AS (
    SELECT book AS scope_id, max(match_rate) AS match_rate
    FROM main.ops_recon_summary
    WHERE as_of_date = getvariable('as_of_date')
    GROUP BY book
),

actuals AS (
    SELECT
        t.*,
        CASE t.metric
            WHEN 'CLIENT_HHI_MAX' THEN h.median_hhi
            -- a segment without active clients has a share of 0 once the client file is known
            WHEN 'SEGMENT_SHARE_MIN' THEN CASE WHEN (SELECT count(*) FROM active_clients) > 0 THEN coalesce(s.share, 0) END
            WHEN 'SEGMENT_SHARE_MAX' THEN CASE WHEN (SELECT count(*) FROM active_clients) > 0 THEN coalesce(s.share, 0) END
            WHEN 'COST_TO_INCOME_MAX' THEN c.cost_to_income
            WHEN 'SETTLEMENT_EFFICIENCY_MIN' THEN CASE WHEN t.scope_id = 'ALL' THEN k.settlement_efficiency END
            WHEN 'RECON_MATCH_RATE_MIN' THEN CASE WHEN t.scope_id = 'ALL' THEN k.recon_match_rate ELSE b.match_rate END
            WHEN 'ACTIVE_CLIENTS_MIN' THEN CASE WHEN t.scope_id = 'ALL' THEN k.active_clients END
        END AS actual,
        CASE t.metric
            WHEN 'CLIENT_HHI_MAX' THEN 'client_portfolio: median hhi of the risk profile''s clients'
            WHEN 'SEGMENT_SHARE_MIN' THEN 'share of the active clients in the segment'
            WHEN 'SEGMENT_SHARE_MAX' THEN 'share of the active clients in the segment'
            WHEN 'COST_TO_INCOME_MAX' THEN 'cost_income: cost_to_income month to date'
            WHEN 'SETTLEMENT_EFFICIENCY_MIN' THEN 'kpi_daily: settlement_efficiency'
            WHEN 'RECON_MATCH_RATE_MIN' THEN 'kpi_daily: recon_match_rate (ops_recon_summary for a book)'
            WHEN 'ACTIVE_CLIENTS_MIN' THEN 'kpi_daily: active_clients'
        END AS actual_measure
    FROM targets t
    LEFT JOIN kpi k ON true
    LEFT JOIN client_hhi h ON t.metric = 'CLIENT_HHI_MAX' AND h.scope_id = t.scope_id
    LEFT JOIN segment_shares s ON t.metric LIKE 'SEGMENT_SHARE_%' AND s.scope_id = t.scope_id
    LEFT JOIN cost_to_income c ON t.metric = 'COST_TO_INCOME_MAX' AND c.scope_id = t.scope_id
    LEFT JOIN book_match_rates b ON t.metric = 'RECON_MATCH_RATE_MIN' AND b.scope_id = t.scope_id
),

final AS (
    SELECT
        getvariable('as_of_date') AS business_date,
        target_id,
        metric,
        scope_id,
        actual,
        target_value,
        effective_date,
        CASE WHEN metric LIKE '%_MAX' THEN 'MAX' ELSE 'MIN' END AS direction,
        CASE
            WHEN actual IS NULL THEN NULL
            WHEN metric LIKE '%_MAX' THEN actual <= target_value
            ELSE actual >= target_value
        END AS met,
        actual - target_value AS gap,
        final_target_value,
        next_milestone_value,
        next_milestone_date,
        -- the share of the way from the first milestone's value to the final target (1 = there)
        CASE WHEN final_target_value <> baseline_value
            THEN (actual - baseline_value) / (final_target_value - baseline_value)
        END AS progress,
        actual_measure
    FROM actuals
)

SELECT * FROM final ORDER BY target_id
