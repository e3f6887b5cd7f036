-- Campaign results by month of the touch, as known on the business date. A month's row is
-- rebuilt from its first business date until 30 days after its end, so the revenue of the 30
-- days after a deal late in the month is counted; the work is those months' touches and the
-- converted clients' revenue ledger, never the whole history. A deal brings new revenue only
-- from a client without a live trade in the CAMPAIGN_LOOKBACK_DAYS before it (DOMAIN §12): a
-- sales touch recorded as the deal of an already active client did not win that client.
WITH open_months AS (
    SELECT date_trunc('month', getvariable('as_of_date') - INTERVAL 30 DAY)::DATE AS first_month,
           CAST(core.param('CAMPAIGN_LOOKBACK_DAYS', 'ALL') AS INTEGER) AS lookback_days
),

touches AS (
    SELECT client_id, campaign_id, activity_date, cost_usd, outcome,
           date_trunc('month', activity_date)::DATE AS month
    FROM core.client_activity
    WHERE business_date BETWEEN (SELECT first_month FROM open_months) AND getvariable('as_of_date')
      AND activity_date >= (SELECT first_month FROM open_months)
      AND campaign_id IS NOT NULL
),

conversions AS (
    -- a converted client's revenue window: from its first deal in the campaign-month to 30 days
    -- after its last one (several deals do not count the same trades twice)
    SELECT campaign_id, month, client_key(client_id) AS client_key,
           min(activity_date) AS window_start, max(activity_date) + 30 AS window_end
    FROM touches
    WHERE outcome = 'DEAL'
    GROUP BY campaign_id, month, client_id
),

already_active AS (
    -- converted clients with a live (non-cancelled, as known on the date) trade dated in the
    -- look-back days before their first deal of the campaign-month
    SELECT c.campaign_id, c.month, c.client_key
    FROM conversions c
    JOIN main.revenue_daily r
      ON r.dimension = 'CLIENT' AND r.member = c.client_key
     AND r.trade_date >= c.window_start - (SELECT lookback_days FROM open_months)
     AND r.trade_date < c.window_start
    WHERE r.business_date BETWEEN (SELECT first_month - lookback_days FROM open_months) AND getvariable('as_of_date')
    GROUP BY c.campaign_id, c.month, c.client_key
    HAVING sum(r.trades_change) > 0
),

converted_revenue AS (
    SELECT
        c.campaign_id, c.month,
        CAST(sum(CAST(r.revenue_change_usd AS DECIMAL(38, 12))) FILTER (WHERE a.client_key IS NULL) AS DOUBLE)
            AS revenue_usd,
        CAST(sum(CAST(r.revenue_change_usd AS DECIMAL(38, 12))) FILTER (WHERE a.client_key IS NOT NULL) AS DOUBLE)
            AS revenue_existing_usd
    FROM conversions c
    JOIN main.revenue_daily r
      ON r.dimension = 'CLIENT' AND r.member = c.client_key
     AND r.trade_date BETWEEN c.window_start AND c.window_end
    LEFT JOIN already_active a
      ON a.campaign_id = c.campaign_id AND a.month = c.month AND a.client_key = c.client_key
    WHERE r.business_date BETWEEN (SELECT first_month FROM open_months) AND getvariable('as_of_date')
    GROUP BY c.campaign_id, c.month
),

activity AS (
    SELECT
        campaign_id, month,
        count(*) AS touches,
        CAST(sum(CAST(cost_usd AS DECIMAL(38, 12))) AS DOUBLE) AS cost_usd,
        count(*) FILTER (WHERE outcome = 'LEAD') AS leads,
        count(*) FILTER (WHERE outcome = 'DEAL') AS deals,
        count(DISTINCT client_id) FILTER (WHERE outcome = 'DEAL') AS converted_clients
    FROM touches
    GROUP BY campaign_id, month
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        a.campaign_id,
        a.month,
        a.touches,
        a.cost_usd,
        a.leads,
        a.deals,
        a.converted_clients,
        a.deals / a.touches AS conversion_rate,
        coalesce(r.revenue_usd, 0) AS revenue_usd,
        coalesce(r.revenue_existing_usd, 0) AS revenue_existing_usd,
        a.cost_usd / nullif(a.deals, 0) AS cost_per_deal
    FROM activity a
    LEFT JOIN converted_revenue r USING (campaign_id, month)
)

SELECT * FROM final ORDER BY campaign_id, month
