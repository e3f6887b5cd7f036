-- The FX rates in force on each business date: each currency's latest rate delivered up to it.
--
-- "Latest" is the highest rate_date, then the latest delivery of it (a correction re-delivers a
-- rate_date), among the rates of the 60 business dates up to the date: the lookback the recon
-- reads its trades in. The recon's view values every date's trades at these rates.
WITH as_of AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        core.bd_number('FIRM', getvariable('as_of_date')) AS as_of_bd
),

bounds AS (
    SELECT
        as_of_date,
        core.add_business_days('FIRM', as_of_date, -59) AS lookback_start
    FROM as_of
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
