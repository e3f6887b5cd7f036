-- The worklist's items on the business date with everything bo_worklist shows, closed ones
-- included while the data still shows them (so that a person's close holds until the data
-- clears the condition). Carried from the previous business date's rows: the open run's
-- opened_date, and the breaks that outlived the recon window.
WITH params AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        core.previous_business_day('FIRM', getvariable('as_of_date')) AS previous_date,
        core.param('P1_VALUE_USD', 'ALL') AS p1_value_usd,
        core.param('P2_VALUE_USD', 'ALL') AS p2_value_usd,
        core.param('FOUR_EYES_USD', 'ALL') AS four_eyes_usd
),

conditions AS (
    SELECT *, item_type || ':' || natural_key AS item_id
    FROM main.worklist_conditions
    WHERE as_of_date = getvariable('as_of_date') AND NOT source_skipped
),

skipped_types AS (
    -- types whose source was not built for the date: their items are carried as they were
    SELECT item_type FROM main.worklist_conditions
    WHERE as_of_date = getvariable('as_of_date') AND source_skipped
),

previous AS (
    SELECT w.*
    FROM main.worklist_state w, params p
    WHERE w.as_of_date = p.previous_date
),

recon_today AS (
    -- the trades the recon evaluates on the date: a break absent from it left the window
    SELECT trade_id, settlement_id
    FROM main.ops_trade_recon_between(getvariable('as_of_date'), getvariable('as_of_date'))
),

settled_today AS (
    -- what clears a break that left the window: its settlement delivered SETTLED on the date
    SELECT settlement_id, trade_id
    FROM core.settlements
    WHERE business_date = getvariable('as_of_date') AND status = 'SETTLED'
),

carried AS (
    -- yesterday's items the data no longer evaluates: a type whose source was skipped, and a
    -- recon break whose trade left the 20-day window (DOMAIN §9.1: it stays until the data
    -- clears it or a person closes it); a closed one leaves
    SELECT pr.*
    FROM previous pr
    WHERE pr.item_id NOT IN (SELECT item_id FROM conditions)
      AND pr.state <> 'CLOSED'
      AND (
          pr.item_type IN (SELECT item_type FROM skipped_types)
          OR (pr.item_type = 'RECON_BREAK'
              AND NOT EXISTS (SELECT 1 FROM recon_today r
                              WHERE r.trade_id = pr.trade_id OR r.settlement_id = pr.settlement_id)
              AND NOT EXISTS (SELECT 1 FROM settled_today s
                              WHERE s.trade_id = pr.trade_id OR s.settlement_id = pr.settlement_id))
      )
),

items AS (
    SELECT
        c.item_id, c.item_type, c.natural_key, c.trade_id, c.settlement_id, c.limit_id, c.client_key,
        c.instrument_id, c.feed, c.book, c.custodian, c.currency, c.asset_class, c.segment,
        c.relationship_manager_id, c.fail_reason, c.description, c.value_usd, c.calendar_id,
        true AS in_data,
        coalesce(pr.opened_date, least(coalesce(c.condition_since, getvariable('as_of_date')), getvariable('as_of_date')))
            AS opened_date
    FROM conditions c
    LEFT JOIN previous pr ON pr.item_id = c.item_id
    UNION ALL
    SELECT
        item_id, item_type, natural_key, trade_id, settlement_id, limit_id, client_key,
        instrument_id, feed, book, custodian, currency, asset_class, segment,
        relationship_manager_id, fail_reason,
        CASE WHEN item_type = 'RECON_BREAK' AND NOT contains(description, 'left the recon window')
            THEN description || ' (left the recon window: stays until the data clears it or a person closes it)'
            ELSE description END AS description,
        value_usd, calendar_id,
        in_data AND item_type IN (SELECT item_type FROM skipped_types) AS in_data,
        opened_date
    FROM carried
),

actions AS (
    -- people's actions of each item's current open run (DOMAIN §9.2)
    SELECT a.*
    FROM core.case_actions a
    JOIN items i ON i.item_id = a.item_id AND a.effective_date >= i.opened_date
    WHERE a.effective_date <= getvariable('as_of_date')
),

last_resolve AS (
    SELECT item_id, action_id, "by", reason
    FROM actions
    WHERE action = 'RESOLVE'
    QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY action_id DESC) = 1
),

approved AS (
    -- an approve counts by a different person than the resolver, after the resolve
    SELECT DISTINCT a.item_id
    FROM actions a
    JOIN last_resolve r ON r.item_id = a.item_id AND a.action_id > r.action_id AND a."by" <> r."by"
    WHERE a.action = 'APPROVE'
),

last_assign AS (
    SELECT item_id, assignee
    FROM actions
    WHERE action = 'ASSIGN'
    QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY action_id DESC) = 1
),

action_summary AS (
    SELECT
        item_id,
        count(*) AS actions,
        count(*) FILTER (WHERE action = 'ACK') > 0 AS acknowledged,
        arg_max(action || ' by ' || "by" || ' on ' || effective_date || coalesce(': ' || "text", ''), action_id)
            AS last_action,
        max(effective_date) AS last_action_date
    FROM actions
    GROUP BY item_id
),

routes AS (
    -- the latest routing rules delivered up to the date (DOMAIN §7.3)
    SELECT *
    FROM core.teams
    WHERE business_date = (SELECT max(business_date) FROM core.teams WHERE business_date <= getvariable('as_of_date'))
),

owners AS (
    -- the first matching rule by priority_order
    SELECT i.item_id, r.team_id, r.name
    FROM items i
    JOIN routes r
      ON (r.item_type = '*' OR r.item_type = i.item_type)
     AND (r.scope_type = '*'
          OR (r.scope_type = 'BOOK' AND r.scope_id = i.book)
          OR (r.scope_type = 'CUSTODIAN' AND r.scope_id = i.custodian)
          OR (r.scope_type = 'CURRENCY' AND r.scope_id = i.currency)
          OR (r.scope_type = 'ASSET_CLASS' AND r.scope_id = i.asset_class))
    QUALIFY row_number() OVER (PARTITION BY i.item_id ORDER BY r.priority_order) = 1
),

deadlines AS (
    SELECT
        i.*,
        -- a calendar the build does not know (a currency without rates) counts FIRM's days
        CASE WHEN core.bd_number(i.calendar_id, i.opened_date) IS NULL THEN 'FIRM' ELSE i.calendar_id END AS count_on,
        core.param('SLA_BUSINESS_DAYS', i.item_type) AS sla_days
    FROM items i
),

measured AS (
    SELECT
        d.*,
        core.add_business_days(d.count_on, d.opened_date, CAST(d.sla_days AS INTEGER)) AS due_date,
        CAST(core.business_days_between(d.count_on, d.opened_date, getvariable('as_of_date')) AS INTEGER) AS age_bd
    FROM deadlines d
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        m.item_id,
        m.item_type,
        m.natural_key,
        m.trade_id,
        m.settlement_id,
        m.limit_id,
        m.client_key,
        m.instrument_id,
        m.feed,
        m.book,
        m.custodian,
        m.currency,
        m.asset_class,
        m.segment,
        m.relationship_manager_id,
        m.fail_reason,
        m.description,
        CAST(m.value_usd AS DOUBLE) AS value_usd,
        m.calendar_id,
        m.in_data,
        m.opened_date,
        m.age_bd,
        m.due_date,
        getvariable('as_of_date') > m.due_date AS overdue,
        CASE
            WHEN getvariable('as_of_date') > m.due_date OR m.value_usd >= p.p1_value_usd THEN 'P1'
            WHEN m.value_usd >= p.p2_value_usd THEN 'P2'
            ELSE 'P3'
        END AS priority,
        coalesce(o.team_id, 'UNROUTED') AS owner_team,
        o.name AS owner_team_name,
        CASE
            -- closed: resolved (and approved by another person above FOUR_EYES_USD), and either
            -- the data no longer shows it or the resolution does not expect it to (written off,
            -- duplicate); a fix at source the data still shows stays open
            WHEN r.item_id IS NOT NULL AND (coalesce(m.value_usd, 0) < p.four_eyes_usd OR ap.item_id IS NOT NULL)
                AND (NOT m.in_data OR r.reason IN ('WRITTEN_OFF', 'DUPLICATE')) THEN 'CLOSED'
            WHEN r.item_id IS NOT NULL AND (coalesce(m.value_usd, 0) < p.four_eyes_usd OR ap.item_id IS NOT NULL)
                THEN 'RESOLVED_IN_DATA'
            WHEN r.item_id IS NOT NULL THEN 'AWAITING_APPROVAL'
            WHEN la.item_id IS NOT NULL THEN 'ASSIGNED'
            WHEN s.acknowledged THEN 'ACKNOWLEDGED'
            ELSE 'OPEN'
        END AS state,
        la.assignee AS assigned_to,
        r."by" AS resolved_by,
        r.reason AS resolution,
        s.last_action,
        s.last_action_date,
        coalesce(s.actions, 0) AS actions
    FROM measured m
    CROSS JOIN params p
    LEFT JOIN owners o ON o.item_id = m.item_id
    LEFT JOIN last_resolve r ON r.item_id = m.item_id
    LEFT JOIN approved ap ON ap.item_id = m.item_id
    LEFT JOIN last_assign la ON la.item_id = m.item_id
    LEFT JOIN action_summary s ON s.item_id = m.item_id
)

SELECT * FROM final
