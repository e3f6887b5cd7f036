-- The FX rates in force on each business date: each currency's latest rate delivered up to it.
--
-- "Latest" is the highest rate_date, then the latest delivery of it (a correction re-delivers a
-- rate_date), among the rates of the 60 business dates up to the date: the lookback the recon
-- reads its trades in. The recon's view values every date's trades at these rates.
WITH bounds AS (
    SELECT as_of_date, lookback_start FROM core.recon_window(getvariable('as_of_date'))
),

final AS (
    SELECT
        b.as_of_date,
        r.currency,
        arg_max(r.usd_per_unit, (r.rate_date, r.business_date)) AS usd_per_unit,
        max(r.rate_date) AS rate_date
    FROM core.fx_rates r, bounds b
    WHERE r.rate_date BETWEEN b.lookback_start AND b.as_of_date AND r.business_date <= b.as_of_date
    GROUP BY b.as_of_date, r.currency
)

SELECT * FROM final ORDER BY currency
