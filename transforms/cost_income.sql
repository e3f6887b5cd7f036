-- Cost and income by cost center (books and support functions) plus the FIRM, month to date and
-- year to date as known on the business date: sums of the daily ledger (cost_income_daily), whose
-- rows for the year are few, so the work does not grow with the trade volume. Sums are exact
-- (DECIMAL), so a rebuild gives the same figures whatever the order of the rows.
WITH periods AS (
    SELECT 'MTD' AS period, date_trunc('month', getvariable('as_of_date'))::DATE AS period_start
    UNION ALL
    SELECT 'YTD', date_trunc('year', getvariable('as_of_date'))::DATE
),

ledger AS (
    SELECT value_date, cost_center, category, amount_usd
    FROM main.cost_income_daily
    WHERE business_date <= getvariable('as_of_date')
      AND business_date >= date_trunc('year', getvariable('as_of_date'))  -- value_date <= business_date
      AND value_date >= date_trunc('year', getvariable('as_of_date'))
),

cost_centers AS (
    -- every book of the latest delivery, the support functions, and anything else that was charged
    SELECT book AS cost_center FROM core.books
    WHERE business_date = (SELECT max(business_date) FROM core.books WHERE business_date <= getvariable('as_of_date'))
    UNION
    SELECT unnest(['OPERATIONS', 'TECHNOLOGY', 'COMPLIANCE', 'SALES'])
    UNION
    SELECT DISTINCT cost_center FROM ledger
),

by_center AS (
    SELECT
        p.period,
        p.period_start,
        c.cost_center,
        coalesce(CAST(sum(CAST(l.amount_usd AS DECIMAL(38, 12))) FILTER (WHERE l.category = 'COMMISSION') AS DOUBLE), 0) AS commission_usd,
        coalesce(CAST(sum(CAST(l.amount_usd AS DECIMAL(38, 12))) FILTER (WHERE l.category = 'REVENUE_FEES') AS DOUBLE), 0) AS fee_revenue_usd,
        coalesce(CAST(sum(CAST(l.amount_usd AS DECIMAL(38, 12))) FILTER (WHERE l.category = 'STAFF') AS DOUBLE), 0) AS staff_usd,
        coalesce(CAST(sum(CAST(l.amount_usd AS DECIMAL(38, 12))) FILTER (WHERE l.category = 'TECHNOLOGY') AS DOUBLE), 0) AS technology_usd,
        coalesce(CAST(sum(CAST(l.amount_usd AS DECIMAL(38, 12))) FILTER (WHERE l.category = 'MARKET_DATA') AS DOUBLE), 0) AS market_data_usd,
        coalesce(CAST(sum(CAST(l.amount_usd AS DECIMAL(38, 12))) FILTER (WHERE l.category = 'PREMISES') AS DOUBLE), 0) AS premises_usd,
        coalesce(CAST(sum(CAST(l.amount_usd AS DECIMAL(38, 12))) FILTER (WHERE l.category = 'MARKETING') AS DOUBLE), 0) AS marketing_usd,
        coalesce(CAST(sum(CAST(l.amount_usd AS DECIMAL(38, 12))) FILTER (WHERE l.category = 'OTHER_EXPENSE') AS DOUBLE), 0) AS other_expense_usd,
        coalesce(CAST(sum(CAST(l.amount_usd AS DECIMAL(38, 12))) FILTER (WHERE l.category = 'CLIENT_ACTIVITY') AS DOUBLE), 0) AS client_activity_usd
    FROM periods p
    CROSS JOIN cost_centers c
    LEFT JOIN ledger l ON l.cost_center = c.cost_center AND l.value_date >= p.period_start
    GROUP BY ALL
),

with_firm AS (
    SELECT * FROM by_center
    UNION ALL
    SELECT period, period_start, 'FIRM',
           CAST(sum(CAST(commission_usd AS DECIMAL(38, 12))) AS DOUBLE),
           CAST(sum(CAST(fee_revenue_usd AS DECIMAL(38, 12))) AS DOUBLE),
           CAST(sum(CAST(staff_usd AS DECIMAL(38, 12))) AS DOUBLE),
           CAST(sum(CAST(technology_usd AS DECIMAL(38, 12))) AS DOUBLE),
           CAST(sum(CAST(market_data_usd AS DECIMAL(38, 12))) AS DOUBLE),
           CAST(sum(CAST(premises_usd AS DECIMAL(38, 12))) AS DOUBLE),
           CAST(sum(CAST(marketing_usd AS DECIMAL(38, 12))) AS DOUBLE),
           CAST(sum(CAST(other_expense_usd AS DECIMAL(38, 12))) AS DOUBLE),
           CAST(sum(CAST(client_activity_usd AS DECIMAL(38, 12))) AS DOUBLE)
    FROM by_center
    GROUP BY period, period_start
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        period,
        period_start,
        cost_center,
        commission_usd + fee_revenue_usd AS revenue_usd,
        commission_usd,
        fee_revenue_usd,
        staff_usd + technology_usd + market_data_usd + premises_usd + marketing_usd
            + other_expense_usd + client_activity_usd AS expense_usd,
        staff_usd,
        technology_usd,
        market_data_usd,
        premises_usd,
        marketing_usd,
        other_expense_usd,
        client_activity_usd,
        CASE WHEN commission_usd + fee_revenue_usd <> 0
             THEN (staff_usd + technology_usd + market_data_usd + premises_usd + marketing_usd
                   + other_expense_usd + client_activity_usd) / (commission_usd + fee_revenue_usd)
        END AS cost_to_income
    FROM with_firm
)

SELECT * FROM final ORDER BY period, cost_center = 'FIRM', cost_center
