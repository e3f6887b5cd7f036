-- Settlement efficiency of the instructions due in the 20 business dates up to the business date,
-- as known on that date: a late settlement or a fail that is repaired changes the figures of its
-- intended date on later dates, so every as-of date republishes the whole window.
-- The window counts FIRM business dates; what is due when, and how old a fail is, count the
-- settlement currency's business days (DOMAIN §7.1): an instruction meant for a holiday of its
-- currency is due on the currency's next business day (a holiday is not a due date).
WITH bounds AS (
    -- the window of intended dates, and a lookback of 40 more business dates for instructions
    -- created long before they are due
    SELECT * FROM core.recon_window(getvariable('as_of_date'))
),

due_in_window AS (
    -- the settlements with a row due in the window: the latest row of any other is not due in it
    -- (ranking only these keeps the work to the window's, not the lookback's, settlements)
    SELECT DISTINCT s.settlement_id
    FROM core.settlements s, bounds b
    WHERE s.business_date BETWEEN b.lookback_start AND b.as_of_date
      AND s.intended_settle_date BETWEEN b.window_start AND b.as_of_date
),

settlements_now AS (
    -- each settlement's latest delivered row
    SELECT s.*
    FROM core.settlements s, bounds b
    WHERE s.business_date BETWEEN b.lookback_start AND b.as_of_date
      AND s.settlement_id IN (SELECT settlement_id FROM due_in_window)
    QUALIFY row_number() OVER (PARTITION BY s.settlement_id ORDER BY s.business_date DESC) = 1
),

due AS (
    -- live instructions due in the window (a cancelled one was replaced by a re-booking, or is void)
    SELECT
        s.*,
        s.status = 'SETTLED' AND s.actual_settle_date <= s.due_date AS on_time,
        core.business_days_between(s.currency, s.due_date, b.as_of_date) AS days_past_due
    FROM (SELECT *, coalesce(core.add_business_days(currency, intended_settle_date - 1, 1), intended_settle_date) AS due_date
          FROM settlements_now) s, bounds b
    WHERE s.status <> 'CANCELLED'
      AND s.intended_settle_date BETWEEN b.window_start AND b.as_of_date
),

fx AS (
    -- the rates in force on the date (the latest of the lookback's), as the recon values trades
    SELECT currency, usd_per_unit
    FROM main.fx_daily
    WHERE as_of_date = getvariable('as_of_date')
),

by_date_custodian_currency AS (
    SELECT
        intended_settle_date,
        custodian,
        currency,
        count(*) AS due,
        count(*) FILTER (WHERE on_time) AS settled_on_time,
        count(*) FILTER (WHERE status = 'SETTLED' AND NOT on_time) AS settled_late,
        count(*) FILTER (WHERE status = 'FAILED') AS failed,
        count(*) FILTER (WHERE status = 'PARTIAL') AS partial,
        count(*) FILTER (WHERE status = 'PENDING') AS pending,
        CAST(sum(CAST(settlement_amount AS DECIMAL(38, 12))) AS DOUBLE) AS due_amount,
        coalesce(CAST(sum(CAST(settlement_amount AS DECIMAL(38, 12))) FILTER (WHERE on_time) AS DOUBLE), 0) AS settled_on_time_amount,
        avg(days_past_due) FILTER (WHERE status = 'FAILED') AS avg_fail_age_bd
    FROM due
    GROUP BY ALL
),

final AS (
    SELECT
        b.as_of_date,
        e.intended_settle_date,
        e.custodian,
        e.currency,
        e.due,
        e.settled_on_time,
        e.settled_late,
        e.failed,
        e.partial,
        e.pending,
        e.settled_on_time / e.due AS efficiency_count,
        e.due_amount,
        e.settled_on_time_amount,
        e.settled_on_time_amount / e.due_amount AS efficiency_value,
        e.due_amount * fx.usd_per_unit AS due_amount_usd,
        e.settled_on_time_amount * fx.usd_per_unit AS settled_on_time_amount_usd,
        e.avg_fail_age_bd
    FROM by_date_custodian_currency e
    CROSS JOIN bounds b
    LEFT JOIN fx ON fx.currency = e.currency
)

SELECT * FROM final ORDER BY intended_settle_date, custodian, currency
