-- The FX rates in force on each business date: each currency's latest rate delivered up to it.
--
-- "Latest" is the rate of the date (warehouse/fx.sql) among the rates of the 60 business dates up
-- to it: the lookback the recon reads its trades in. The recon's view values every date's trades
-- at these rates.
WITH bounds AS (
    SELECT as_of_date, lookback_start FROM core.recon_window(getvariable('as_of_date'))
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        r.currency,
        r.usd_per_unit,
        r.rate_date
    FROM core.fx_rates_on(
        getvariable('as_of_date'), getvariable('as_of_date'), (SELECT lookback_start FROM bounds)
    ) r
)

SELECT * FROM final ORDER BY currency
