-- The firm's FX net open position (DOMAIN §11.1): per currency other than USD, the BOOK holdings
-- quoted in it, long and short, and their net; and per date the net open position by the
-- shorthand method: the larger of the sum of the net long currencies and the absolute sum of the
-- net short ones (repeated on every row of the date). Sums are exact decimals (a rerun gives the
-- same bits).
WITH holdings AS (
    SELECT currency, market_value_usd
    FROM main.risk_exposure
    WHERE as_of_date = getvariable('as_of_date')
      AND holder_type = 'BOOK'
      AND currency <> 'USD'
      AND market_value_usd IS NOT NULL
),

by_currency AS (
    SELECT
        currency,
        count(*) AS n_holdings,
        CAST(coalesce(sum(CAST(market_value_usd AS DECIMAL(38, 6))) FILTER (WHERE market_value_usd > 0), 0) AS DOUBLE)
            AS long_usd,
        CAST(coalesce(sum(CAST(market_value_usd AS DECIMAL(38, 6))) FILTER (WHERE market_value_usd < 0), 0) AS DOUBLE)
            AS short_usd,
        sum(CAST(market_value_usd AS DECIMAL(38, 6))) AS net_exact
    FROM holdings
    GROUP BY currency
),

totals AS (
    SELECT
        CAST(coalesce(sum(net_exact) FILTER (WHERE net_exact > 0), 0) AS DOUBLE) AS total_net_long_usd,
        CAST(coalesce(sum(net_exact) FILTER (WHERE net_exact < 0), 0) AS DOUBLE) AS total_net_short_usd
    FROM by_currency
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        c.currency,
        c.n_holdings,
        c.long_usd,
        c.short_usd,
        CAST(c.net_exact AS DOUBLE) AS net_usd,
        CASE WHEN c.net_exact > 0 THEN 'LONG' WHEN c.net_exact < 0 THEN 'SHORT' ELSE 'FLAT' END AS position,
        t.total_net_long_usd,
        t.total_net_short_usd,
        greatest(t.total_net_long_usd, abs(t.total_net_short_usd)) AS net_open_position_usd
    FROM by_currency c
    CROSS JOIN totals t
)

SELECT * FROM final ORDER BY currency
