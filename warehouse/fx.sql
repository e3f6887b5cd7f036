-- USD conversion, written once (DOMAIN §2 fx_rates): every model that converts an amount to USD
-- reads its rates through these macros, so "the rate of a day" means the same everywhere.
--
-- The rates known on a business date: one per currency and rate date, its latest delivery up to
-- known_on (a correction re-delivers a rate date; a later delivery is not yet known), from rate
-- date `since` on (NULL: the whole history; a bound keeps a model's work to the dates it needs).
-- A rate is in force from its rate_date until the day before the currency's next rate date
-- (valid_until; 9999-12-31 for the latest): the rate of a day is the latest on or before it.
CREATE OR REPLACE MACRO core.fx_rates_known(known_on, since) AS TABLE
    SELECT
        currency,
        rate_date,
        usd_per_unit,
        coalesce(lead(rate_date) OVER (PARTITION BY currency ORDER BY rate_date), DATE '9999-12-31') AS valid_until
    FROM (
        SELECT currency, rate_date, arg_max(usd_per_unit, business_date) AS usd_per_unit
        FROM core.fx_rates
        WHERE business_date <= known_on AND rate_date >= coalesce(since, DATE '0001-01-01')
        GROUP BY currency, rate_date
    );

-- Each currency's rate of one day, as known on known_on: the latest on or before on_day from
-- `since` on (a currency with none in that range has no row). rate_date says which rate it is.
CREATE OR REPLACE MACRO core.fx_rates_on(on_day, known_on, since) AS TABLE
    SELECT currency, usd_per_unit, rate_date
    FROM core.fx_rates_known(known_on, since)
    WHERE rate_date <= on_day AND on_day < valid_until;
