-- Cost and income by cost center (books and support functions) plus the FIRM, month to date and
-- year to date as known on the business date: sums of the daily ledger (cost_income_daily), whose
-- rows for the year are few, so the work does not grow with the trade volume. Sums are exact
-- (DECIMAL), so a rebuild gives the same figures whatever the order of the rows.
-- DOMAIN §12: a book's revenue adds its trading P&L (market P&L + carry of pnl_daily over the
-- period), and each support function's expense is allocated to the books by its ALLOCATION_KEY
-- (TRADES: the book's share of the period's non-cancelled trades; REVENUE: its share of the
-- books' positive revenue); the support functions keep their rows, marked as allocated away, and
-- FIRM's expense is the sum of what was charged (unchanged).
WITH periods AS (
    SELECT 'MTD' AS period, date_trunc('month', getvariable('as_of_date'))::DATE AS period_start
    UNION ALL
    SELECT 'YTD', date_trunc('year', getvariable('as_of_date'))::DATE
),

ledger AS (
    SELECT value_date, cost_center, category, amount_usd, records
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
        coalesce(CAST(sum(CAST(l.amount_usd AS DECIMAL(38, 12))) FILTER (WHERE l.category = 'CLIENT_ACTIVITY') AS DOUBLE), 0) AS client_activity_usd,
        -- non-cancelled trades of the period (the revenue ledger's count), the TRADES allocation key
        coalesce(sum(l.records) FILTER (WHERE l.category = 'COMMISSION'), 0) AS trades
    FROM periods p
    CROSS JOIN cost_centers c
    LEFT JOIN ledger l ON l.cost_center = c.cost_center AND l.value_date >= p.period_start
    GROUP BY ALL
),

trading AS (
    -- market P&L and carry of the books (pnl_daily) over the dates of the period
    SELECT p.period, d.book AS cost_center, CAST(sum(CAST(d.market_pnl_usd + d.carry_usd AS DECIMAL(38, 6))) AS DOUBLE) AS trading_pnl_usd
    FROM periods p
    JOIN main.pnl_daily d
      ON d.as_of_date >= p.period_start AND d.as_of_date <= getvariable('as_of_date')
    GROUP BY ALL
),

with_trading AS (
    SELECT
        b.*,
        coalesce(t.trading_pnl_usd, 0) AS trading_pnl_usd,
        b.staff_usd + b.technology_usd + b.market_data_usd + b.premises_usd + b.marketing_usd
            + b.other_expense_usd + b.client_activity_usd AS direct_expense_usd,
        b.cost_center IN (SELECT book FROM core.books) AS is_book,
        b.cost_center IN ('OPERATIONS', 'TECHNOLOGY', 'COMPLIANCE', 'SALES') AS is_support
    FROM by_center b
    LEFT JOIN trading t USING (period, cost_center)
),

allocation_bases AS (
    -- each book's share of a period's trades and of its positive revenue
    SELECT
        period,
        cost_center AS book,
        trades / nullif(sum(trades) OVER (PARTITION BY period), 0) AS trades_share,
        greatest(commission_usd + fee_revenue_usd + trading_pnl_usd, 0)
            / nullif(sum(greatest(commission_usd + fee_revenue_usd + trading_pnl_usd, 0)) OVER (PARTITION BY period), 0) AS revenue_share
    FROM with_trading
    WHERE is_book
),

support_expense AS (
    SELECT period, cost_center AS support_function, direct_expense_usd, core.param_text('ALLOCATION_KEY', cost_center) AS allocation_key
    FROM with_trading
    WHERE is_support
),

allocations AS (
    SELECT
        a.period,
        a.book,
        CAST(sum(CAST(s.direct_expense_usd * CASE s.allocation_key WHEN 'REVENUE' THEN a.revenue_share ELSE a.trades_share END
                      AS DECIMAL(38, 12))) AS DOUBLE) AS allocated_expense_usd
    FROM allocation_bases a
    JOIN support_expense s USING (period)
    GROUP BY ALL
),

allocated_away AS (
    -- a support function whose key has a base to spread over
    SELECT
        s.period,
        s.support_function,
        coalesce(sum(CASE s.allocation_key WHEN 'REVENUE' THEN a.revenue_share ELSE a.trades_share END), 0) > 0 AS allocated
    FROM support_expense s
    LEFT JOIN allocation_bases a USING (period)
    GROUP BY ALL
),

with_firm AS (
    SELECT
        w.*,
        CASE WHEN w.is_book THEN coalesce(a.allocated_expense_usd, 0) ELSE 0 END AS allocated_expense_usd,
        coalesce(x.allocated, FALSE) AS allocated_away
    FROM with_trading w
    LEFT JOIN allocations a ON a.period = w.period AND a.book = w.cost_center
    LEFT JOIN allocated_away x ON x.period = w.period AND x.support_function = w.cost_center
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
           CAST(sum(CAST(client_activity_usd AS DECIMAL(38, 12))) AS DOUBLE),
           sum(trades),
           CAST(sum(CAST(trading_pnl_usd AS DECIMAL(38, 6))) AS DOUBLE),
           CAST(sum(CAST(direct_expense_usd AS DECIMAL(38, 12))) AS DOUBLE),
           FALSE,
           FALSE,
           0,
           FALSE
    FROM with_trading
    GROUP BY period, period_start
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        period,
        period_start,
        cost_center,
        commission_usd + fee_revenue_usd + trading_pnl_usd AS revenue_usd,
        commission_usd,
        fee_revenue_usd,
        trading_pnl_usd,
        direct_expense_usd + allocated_expense_usd AS expense_usd,
        direct_expense_usd,
        allocated_expense_usd,
        allocated_away,
        staff_usd,
        technology_usd,
        market_data_usd,
        premises_usd,
        marketing_usd,
        other_expense_usd,
        client_activity_usd,
        CASE WHEN commission_usd + fee_revenue_usd + trading_pnl_usd > 0
             THEN (direct_expense_usd + allocated_expense_usd) / (commission_usd + fee_revenue_usd + trading_pnl_usd)
        END AS cost_to_income
    FROM with_firm
)

SELECT * FROM final ORDER BY period, cost_center = 'FIRM', cost_center
