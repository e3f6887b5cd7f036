-- Historical-simulation value-at-risk and expected shortfall per book and for the firm, from the
-- scenario P&L vectors of risk_var_scenarios (DOMAIN §4.1), and beside them the stressed VaR and
-- ES (§11.3): the same statistics over the SVAR scenario set (N dates from SVAR_WINDOW_START).
--
-- The tail convention of the Open Source Risk Engine, in this one place: sort the N scenario
-- P&Ls ascending; for a lower-tail probability q = 1 − c, k = ceil(q × N); the quantile is the
-- k-th smallest P&L (1-based) and the expected shortfall the mean of the k smallest. VaR and ES
-- are reported as positive losses (the negated quantile / mean). q is an exact decimal literal
-- (0.01, not 1 − 0.99 in floating point), so q × N is exact: ceil(0.05 × 100) is 5, never 6.
-- tests/test_risk.py runs this file unchanged on the ORE example's published P&L vector.
WITH scenario_pnl AS (
    SELECT portfolio, scenario_set, scenario_date, pnl_usd
    FROM main.risk_var_scenarios
    WHERE as_of_date = getvariable('as_of_date')
),

pnl_vectors AS (
    -- ties in P&L are broken by date so the order, and hence the worst date, is reproducible
    SELECT
        portfolio,
        scenario_set,
        count(*) AS n_scenarios,
        min(scenario_date) AS first_scenario_date,
        max(scenario_date) AS last_scenario_date,
        list(pnl_usd ORDER BY pnl_usd, scenario_date) AS sorted_pnl,
        list(scenario_date ORDER BY pnl_usd, scenario_date) AS dates_by_pnl
    FROM scenario_pnl
    GROUP BY portfolio, scenario_set
),

tail_sizes AS (
    -- k = ceil(q × N), at least 1
    SELECT
        *,
        greatest(1, CAST(ceil(0.05 * n_scenarios) AS BIGINT)) AS k_95,
        greatest(1, CAST(ceil(0.025 * n_scenarios) AS BIGINT)) AS k_975,
        greatest(1, CAST(ceil(0.01 * n_scenarios) AS BIGINT)) AS k_99
    FROM pnl_vectors
),

tail_statistics AS (
    SELECT
        portfolio,
        scenario_set,
        n_scenarios,
        first_scenario_date,
        last_scenario_date,
        -sorted_pnl[k_95] AS var_95,
        -sorted_pnl[k_99] AS var_99,
        -list_avg(sorted_pnl[1:k_95]) AS es_95,
        -list_avg(sorted_pnl[1:k_975]) AS es_975,
        -list_avg(sorted_pnl[1:k_99]) AS es_99,
        dates_by_pnl[1] AS worst_scenario_date,
        sorted_pnl[1] AS worst_scenario_pnl_usd
    FROM tail_sizes
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        v.portfolio,
        v.n_scenarios,
        v.first_scenario_date,
        v.last_scenario_date,
        v.var_95,
        v.var_99,
        v.es_95,
        v.es_975,
        v.es_99,
        v.worst_scenario_date,
        v.worst_scenario_pnl_usd,
        s.var_99 AS svar_99,
        s.es_975 AS ses_975,
        s.n_scenarios AS svar_n_scenarios,
        s.first_scenario_date AS svar_first_scenario_date,
        s.last_scenario_date AS svar_last_scenario_date,
        s.worst_scenario_date AS svar_worst_scenario_date
    FROM tail_statistics v
    LEFT JOIN tail_statistics s ON s.portfolio = v.portfolio AND s.scenario_set = 'SVAR'
    WHERE v.scenario_set = 'VAR'
)

SELECT * FROM final ORDER BY portfolio
