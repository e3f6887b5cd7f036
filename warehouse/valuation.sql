-- Valuation inputs as known on a date, written once (as fx.sql is for rates): the instrument
-- reference in force, and the closes and rates of two dates that a day-over-day revaluation
-- (pnl_daily, risk_backtest_pnl) compares, so that both mean the same by "yesterday's price".
--
-- The FIRM business date with prices just before a day (within a month before it), as known on
-- it: the previous business date a day-over-day revaluation starts from (NULL: none).
CREATE OR REPLACE MACRO core.previous_priced_date(on_day) AS (
    SELECT max(price_date)
    FROM core.prices
    WHERE price_date < on_day
      AND price_date >= on_day - 31
      AND business_date <= on_day
      AND core.is_business_day('FIRM', price_date)
);

-- The instruments' reference data in force on a day: the latest delivery on or before it.
CREATE OR REPLACE MACRO core.instruments_on(on_day) AS TABLE
    SELECT *
    FROM core.instruments
    WHERE business_date = (SELECT max(business_date) FROM core.instruments WHERE business_date <= on_day);

-- Each instrument's close on two dates, as known on the later one: the last close on or before
-- each (carried forward over days without one; the latest delivery of a price date wins), from
-- price date `since` on. close_previous is NULL when there is none by the earlier date.
CREATE OR REPLACE MACRO core.closes_of_two_dates(previous_day, on_day, since) AS TABLE
    SELECT
        instrument_id,
        arg_max(close_price, price_date) FILTER (WHERE price_date <= previous_day) AS close_previous,
        arg_max(close_price, price_date) AS close_today
    FROM (
        SELECT instrument_id, price_date, arg_max(close_price, business_date) AS close_price
        FROM core.prices
        WHERE price_date <= on_day AND price_date >= since AND business_date <= on_day
        GROUP BY instrument_id, price_date
    )
    GROUP BY instrument_id;

-- Likewise each currency's rate on the two dates (core.fx_rates_on), as known on the later one.
CREATE OR REPLACE MACRO core.fx_rates_of_two_dates(previous_day, on_day, since) AS TABLE
    SELECT t.currency, p.usd_per_unit AS rate_previous, t.usd_per_unit AS rate_today
    FROM core.fx_rates_on(on_day, on_day, since) AS t
    LEFT JOIN core.fx_rates_on(previous_day, on_day, since) AS p USING (currency);
