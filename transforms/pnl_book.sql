-- Book P&L against the desk's own (DOMAIN §8.2): pnl_daily summed per book, the commission of
-- the book's trades with trade date D (revenue_daily: current non-cancelled versions as known on
-- D) and the REVENUE_FEES GL entries posted on D (cost_income_daily), against the desk's flash
-- P&L (desk_pnl). A break is an unexplained part beyond max(PNL_TOLERANCE_USD,
-- PNL_TOLERANCE_PCT × |reported|); a desk that sent nothing has no break but a missing report.
-- FIRM is the sum of the book rows (its break is the books', not its own).
WITH books AS (
    SELECT book FROM core.books
    WHERE business_date = (SELECT max(business_date) FROM core.books WHERE business_date <= getvariable('as_of_date'))
    UNION
    SELECT DISTINCT book FROM main.pnl_daily WHERE as_of_date = getvariable('as_of_date')
),

market AS (
    SELECT
        book,
        CAST(sum(CAST(price_effect_usd AS DECIMAL(38, 6))) AS DOUBLE) AS price_effect_usd,
        CAST(sum(CAST(fx_effect_usd AS DECIMAL(38, 6))) AS DOUBLE) AS fx_effect_usd,
        CAST(sum(CAST(carry_usd AS DECIMAL(38, 6))) AS DOUBLE) AS carry_usd,
        CAST(sum(CAST(market_pnl_usd AS DECIMAL(38, 6))) AS DOUBLE) AS market_pnl_usd
    FROM main.pnl_daily
    WHERE as_of_date = getvariable('as_of_date')
    GROUP BY book
),

contributors AS (
    -- the five instruments with the largest |market_pnl_usd| (ties by instrument id)
    SELECT
        book,
        string_agg(instrument_id || ' ' || printf('%.0f', market_pnl_usd), '; ' ORDER BY abs(market_pnl_usd) DESC, instrument_id) AS top_contributors
    FROM (
        SELECT
            book, instrument_id, market_pnl_usd,
            row_number() OVER (PARTITION BY book ORDER BY abs(market_pnl_usd) DESC, instrument_id) AS rank_in_book
        FROM main.pnl_daily
        WHERE as_of_date = getvariable('as_of_date') AND market_pnl_usd <> 0
    )
    WHERE rank_in_book <= 5
    GROUP BY book
),

period_market AS (
    -- market P&L and carry of the year up to D, and of the month
    SELECT
        book,
        CAST(sum(CAST(market_pnl_usd + carry_usd AS DECIMAL(38, 6))) FILTER (
            WHERE as_of_date >= date_trunc('month', getvariable('as_of_date'))
        ) AS DOUBLE) AS trading_mtd_usd,
        CAST(sum(CAST(market_pnl_usd + carry_usd AS DECIMAL(38, 6))) AS DOUBLE) AS trading_ytd_usd
    FROM main.pnl_daily
    WHERE as_of_date <= getvariable('as_of_date') AND as_of_date >= date_trunc('year', getvariable('as_of_date'))
    GROUP BY book
),

commissions AS (
    -- commission of the book's trades by trade date, as known on D (the revenue ledger)
    SELECT
        member AS book,
        CAST(sum(CAST(revenue_change_usd AS DECIMAL(38, 12))) FILTER (WHERE trade_date = getvariable('as_of_date')) AS DOUBLE) AS commission_usd,
        CAST(sum(CAST(revenue_change_usd AS DECIMAL(38, 12))) FILTER (
            WHERE trade_date >= date_trunc('month', getvariable('as_of_date'))
        ) AS DOUBLE) AS commission_mtd_usd,
        CAST(sum(CAST(revenue_change_usd AS DECIMAL(38, 12))) AS DOUBLE) AS commission_ytd_usd
    FROM main.revenue_daily
    WHERE dimension = 'BOOK'
      AND business_date <= getvariable('as_of_date')
      AND business_date >= date_trunc('year', getvariable('as_of_date'))  -- trade_date <= business_date
      AND trade_date >= date_trunc('year', getvariable('as_of_date'))
      AND trade_date <= getvariable('as_of_date')
    GROUP BY member
),

fees AS (
    -- REVENUE_FEES GL entries of the book by posting date, as known on D
    SELECT
        cost_center AS book,
        CAST(sum(CAST(amount_usd AS DECIMAL(38, 12))) FILTER (WHERE value_date = getvariable('as_of_date')) AS DOUBLE) AS fees_usd,
        CAST(sum(CAST(amount_usd AS DECIMAL(38, 12))) FILTER (
            WHERE value_date >= date_trunc('month', getvariable('as_of_date'))
        ) AS DOUBLE) AS fees_mtd_usd,
        CAST(sum(CAST(amount_usd AS DECIMAL(38, 12))) AS DOUBLE) AS fees_ytd_usd
    FROM main.cost_income_daily
    WHERE category = 'REVENUE_FEES'
      AND business_date <= getvariable('as_of_date')
      AND business_date >= date_trunc('year', getvariable('as_of_date'))
      AND value_date >= date_trunc('year', getvariable('as_of_date'))
      AND value_date <= getvariable('as_of_date')
    GROUP BY cost_center
),

reported AS (
    SELECT book, reported_pnl_usd
    FROM core.desk_pnl
    WHERE business_date = getvariable('as_of_date') AND pnl_date = getvariable('as_of_date')
),

tolerances AS (
    SELECT
        core.param('PNL_TOLERANCE_USD', 'ALL') AS tolerance_usd,
        core.param('PNL_TOLERANCE_PCT', 'ALL') AS tolerance_pct
),

by_book AS (
    SELECT
        b.book,
        coalesce(m.price_effect_usd, 0) AS price_effect_usd,
        coalesce(m.fx_effect_usd, 0) AS fx_effect_usd,
        coalesce(m.carry_usd, 0) AS carry_usd,
        coalesce(m.market_pnl_usd, 0) AS market_pnl_usd,
        coalesce(c.commission_usd, 0) AS commission_usd,
        coalesce(f.fees_usd, 0) AS fees_usd,
        r.reported_pnl_usd,
        coalesce(pm.trading_mtd_usd, 0) + coalesce(c.commission_mtd_usd, 0) + coalesce(f.fees_mtd_usd, 0) AS total_pnl_mtd_usd,
        coalesce(pm.trading_ytd_usd, 0) + coalesce(c.commission_ytd_usd, 0) + coalesce(f.fees_ytd_usd, 0) AS total_pnl_ytd_usd,
        t.top_contributors
    FROM books b
    LEFT JOIN market m USING (book)
    LEFT JOIN commissions c USING (book)
    LEFT JOIN fees f USING (book)
    LEFT JOIN period_market pm USING (book)
    LEFT JOIN reported r USING (book)
    LEFT JOIN contributors t USING (book)
),

with_firm AS (
    -- FIRM sums exact decimals, so its bits do not depend on the order the threads add the books
    SELECT *, FALSE AS is_firm FROM by_book
    UNION ALL
    SELECT
        'FIRM',
        CAST(sum(CAST(price_effect_usd AS DECIMAL(38, 12))) AS DOUBLE),
        CAST(sum(CAST(fx_effect_usd AS DECIMAL(38, 12))) AS DOUBLE),
        CAST(sum(CAST(carry_usd AS DECIMAL(38, 12))) AS DOUBLE),
        CAST(sum(CAST(market_pnl_usd AS DECIMAL(38, 12))) AS DOUBLE),
        CAST(sum(CAST(commission_usd AS DECIMAL(38, 12))) AS DOUBLE),
        CAST(sum(CAST(fees_usd AS DECIMAL(38, 12))) AS DOUBLE),
        CAST(sum(CAST(reported_pnl_usd AS DECIMAL(38, 12))) AS DOUBLE),
        CAST(sum(CAST(total_pnl_mtd_usd AS DECIMAL(38, 12))) AS DOUBLE),
        CAST(sum(CAST(total_pnl_ytd_usd AS DECIMAL(38, 12))) AS DOUBLE),
        NULL,
        TRUE
    FROM by_book
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        w.book,
        w.price_effect_usd,
        w.fx_effect_usd,
        w.carry_usd,
        w.market_pnl_usd,
        w.commission_usd,
        w.fees_usd,
        w.market_pnl_usd + w.carry_usd + w.commission_usd + w.fees_usd AS total_pnl_usd,
        w.reported_pnl_usd,
        w.reported_pnl_usd - (w.market_pnl_usd + w.carry_usd + w.commission_usd + w.fees_usd) AS unexplained_usd,
        CASE WHEN w.reported_pnl_usd IS NOT NULL
             THEN greatest(t.tolerance_usd, t.tolerance_pct * abs(w.reported_pnl_usd))
        END AS tolerance_usd,
        CASE WHEN NOT w.is_firm AND w.reported_pnl_usd IS NOT NULL
             THEN abs(w.reported_pnl_usd - (w.market_pnl_usd + w.carry_usd + w.commission_usd + w.fees_usd))
                 > greatest(t.tolerance_usd, t.tolerance_pct * abs(w.reported_pnl_usd))
        END AS pnl_break,
        CASE WHEN w.is_firm
             THEN (SELECT count(*) FROM by_book WHERE reported_pnl_usd IS NULL) > 0
             ELSE w.reported_pnl_usd IS NULL
        END AS report_missing,
        w.total_pnl_mtd_usd,
        w.total_pnl_ytd_usd,
        w.top_contributors
    FROM with_firm w
    CROSS JOIN tolerances t
)

SELECT * FROM final ORDER BY book = 'FIRM', book
