-- The liquidity profile (DOMAIN §11.4): per portfolio (each book, and FIRM = all books) and
-- liquidation bucket, the gross market value and its share of the portfolio's gross MV; and the
-- share beyond 5 days (buckets 5-20 and >20), which the LIQUIDITY_DAYS_SHARE limits measure.
-- Every bucket is listed for every portfolio (0 when empty). Sums are exact decimals.
WITH holdings AS (
    SELECT book, bucket, abs(market_value_usd) AS gross
    FROM main.risk_liquidity
    WHERE as_of_date = getvariable('as_of_date') AND market_value_usd IS NOT NULL
),

buckets AS (
    SELECT * FROM (VALUES ('<=1', 1), ('1-5', 2), ('5-20', 3), ('>20', 4), ('UNKNOWN', 5)) b (bucket, bucket_order)
),

portfolios AS (
    SELECT DISTINCT book AS portfolio FROM holdings
    UNION ALL
    SELECT 'FIRM'
),

by_bucket AS (
    SELECT
        CASE WHEN grouping(book) = 1 THEN 'FIRM' ELSE book END AS portfolio,
        bucket,
        count(*) AS n_holdings,
        sum(CAST(gross AS DECIMAL(38, 6))) AS gross_exact
    FROM holdings
    GROUP BY GROUPING SETS ((book, bucket), (bucket))
),

grid AS (
    SELECT
        p.portfolio,
        b.bucket,
        b.bucket_order,
        coalesce(x.n_holdings, 0) AS n_holdings,
        coalesce(x.gross_exact, 0) AS gross_exact
    FROM portfolios p
    CROSS JOIN buckets b
    LEFT JOIN by_bucket x ON x.portfolio = p.portfolio AND x.bucket = b.bucket
),

totals AS (
    SELECT
        portfolio,
        sum(gross_exact) AS total_exact,
        sum(gross_exact) FILTER (WHERE bucket IN ('5-20', '>20')) AS beyond_5_exact
    FROM grid
    GROUP BY portfolio
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        g.portfolio,
        g.bucket,
        g.bucket_order,
        g.n_holdings,
        CAST(g.gross_exact AS DOUBLE) AS gross_usd,
        CAST(g.gross_exact / nullif(t.total_exact, 0) AS DOUBLE) AS share,
        CAST(t.beyond_5_exact / nullif(t.total_exact, 0) AS DOUBLE) AS share_beyond_5_days
    FROM grid g
    JOIN totals t USING (portfolio)
)

SELECT * FROM final ORDER BY portfolio, bucket_order
