-- One page of KPIs for the business date, read from the marts built for it. A KPI whose source
-- mart has no rows for the date is null (never a misleading zero).
WITH firm_exposure AS (
    SELECT
        CAST(sum(CAST(abs(market_value_usd) AS DECIMAL(38, 12))) AS DOUBLE) AS firm_gross_exposure_usd,
        CAST(sum(CAST(market_value_usd AS DECIMAL(38, 12))) AS DOUBLE) AS firm_net_exposure_usd
    FROM main.risk_exposure
    WHERE as_of_date = getvariable('as_of_date') AND holder_type = 'BOOK'
),

firm_var AS (
    SELECT max(var_99) AS firm_var_99_usd
    FROM main.risk_var
    WHERE as_of_date = getvariable('as_of_date') AND portfolio = 'FIRM'
),

limits AS (
    SELECT
        CASE WHEN count(*) > 0 THEN count(*) FILTER (WHERE status = 'WARNING') END AS limits_warning,
        CASE WHEN count(*) > 0 THEN count(*) FILTER (WHERE status = 'BREACH') END AS limits_breach
    FROM main.risk_limit_utilisation
    WHERE as_of_date = getvariable('as_of_date')
),

recon AS (
    SELECT
        CASE WHEN count(*) > 0 THEN count(*) END AS recon_trades,
        CASE WHEN count(*) > 0 THEN count(*) FILTER (WHERE status = 'MATCHED') END AS recon_matched,
        -- DOMAIN §12: a trade awaiting the back office is not the desk's failure, nor its match
        count(*) FILTER (WHERE status = 'MATCHED') / nullif(count(*) FILTER (WHERE status <> 'AWAITING_BO'), 0)
            AS recon_match_rate,
        CASE WHEN count(*) > 0 THEN count(*) FILTER (WHERE status NOT IN ('MATCHED', 'AWAITING_BO')) END AS open_breaks,
        CASE WHEN count(*) > 0 THEN count(*) FILTER (WHERE age_bd > 5) END AS breaks_over_5bd
    FROM main.ops_trade_recon_between(getvariable('as_of_date'), getvariable('as_of_date'))
),

settlement AS (
    SELECT
        CAST(sum(due) AS BIGINT) AS settlements_due,
        sum(settled_on_time) / sum(due) AS settlement_efficiency,
        CAST(sum(CAST(settled_on_time_amount_usd AS DECIMAL(38, 12))) / sum(CAST(due_amount_usd AS DECIMAL(38, 12))) AS DOUBLE) AS settlement_efficiency_value
    FROM main.ops_settlement_efficiency
    WHERE as_of_date = getvariable('as_of_date')
),

clients AS (
    -- the latest client file delivered on or before the date
    SELECT count(*) FILTER (WHERE status = 'ACTIVE') AS active_clients
    FROM core.clients
    WHERE business_date = (SELECT max(business_date) FROM core.clients WHERE business_date <= getvariable('as_of_date'))
),

month_to_date AS (
    SELECT max(revenue_usd) AS revenue_mtd_usd, max(cost_to_income) AS cost_to_income_mtd
    FROM main.cost_income
    WHERE as_of_date = getvariable('as_of_date') AND period = 'MTD' AND cost_center = 'FIRM'
),

feeds AS (
    SELECT
        count(*) AS feeds_total,
        count(*) FILTER (WHERE gate = 'PASS') AS feeds_passed,
        CAST(sum(quarantined_rows) AS BIGINT) AS quarantined_rows
    FROM main.dq_feed_health
    WHERE business_date = getvariable('as_of_date')
),

backtest AS (
    SELECT
        max(zone) AS var_backtest_zone,
        max(exceptions_250) AS var_backtest_exceptions,
        max(observations) AS var_backtest_observations
    FROM main.risk_var_backtest
    WHERE business_date = getvariable('as_of_date') AND portfolio = 'FIRM'
),

ipv AS (
    -- independent price verification (DOMAIN §8.3): share of gross BOOK MV with an IPV price
    SELECT
        CAST(sum(CAST(gross_mv_usd AS DECIMAL(38, 6))) FILTER (WHERE ipv_price IS NOT NULL)
             / nullif(sum(CAST(gross_mv_usd AS DECIMAL(38, 6))), 0) AS DOUBLE) AS ipv_coverage,
        CASE WHEN count(*) > 0 THEN count(*) FILTER (WHERE status = 'BREACH') END AS ipv_breaches,
        CASE WHEN count(*) > 0 THEN count(*) FILTER (WHERE stale) END AS stale_prices,
        CASE WHEN count(*) > 0 THEN CAST(sum(CAST(adjustment_usd AS DECIMAL(38, 6))) AS DOUBLE) END AS ipv_adjustment_usd
    FROM main.ipv_results
    WHERE as_of_date = getvariable('as_of_date')
),

pnl AS (
    -- the firm's P&L of the day and the desks whose own report breaks from it (DOMAIN §8.2)
    SELECT
        max(total_pnl_usd) FILTER (WHERE book = 'FIRM') AS firm_pnl_usd,
        max(total_pnl_mtd_usd) FILTER (WHERE book = 'FIRM') AS firm_pnl_mtd_usd,
        CASE WHEN count(*) > 0 THEN count(*) FILTER (WHERE pnl_break) END AS pnl_breaks,
        CASE WHEN count(*) > 0 THEN count(*) FILTER (WHERE report_missing AND book <> 'FIRM') END AS pnl_reports_missing
    FROM main.pnl_book
    WHERE as_of_date = getvariable('as_of_date')
),

positions AS (
    SELECT CASE WHEN count(*) > 0 THEN count(*) FILTER (WHERE status = 'BREAK') END AS position_breaks
    FROM main.position_recon
    WHERE as_of_date = getvariable('as_of_date')
),

final AS (
    SELECT
        getvariable('as_of_date') AS business_date,
        firm_gross_exposure_usd,
        firm_net_exposure_usd,
        firm_var_99_usd,
        limits_warning,
        limits_breach,
        recon_trades,
        recon_matched,
        recon_match_rate,
        open_breaks,
        breaks_over_5bd,
        settlements_due,
        settlement_efficiency,
        settlement_efficiency_value,
        active_clients,
        revenue_mtd_usd,
        cost_to_income_mtd,
        feeds_passed,
        feeds_total,
        quarantined_rows,
        var_backtest_zone,
        var_backtest_exceptions,
        ipv_coverage,
        ipv_breaches,
        stale_prices,
        ipv_adjustment_usd,
        firm_pnl_usd,
        firm_pnl_mtd_usd,
        pnl_breaks,
        pnl_reports_missing,
        position_breaks,
        var_backtest_observations
    FROM firm_exposure, firm_var, limits, recon, settlement, clients, month_to_date, feeds, backtest, ipv, pnl, positions
)

SELECT * FROM final ORDER BY business_date
