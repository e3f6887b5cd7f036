-- The business calendars of the build (DOMAIN §2, §7.1): one row per calendar and day, from
-- the latest `calendars` delivery up to the business date being built (rebuilt by each build:
-- warehouse/calendar_days.sql), and the macros every model counts business days with. The
-- Python twin is midoffice/calendar.py; tests/test_calendar.py holds them to the same answers.
--
-- bd is a business-day ordinal: the business days of the calendar from 1970-01-05 (a Monday,
-- ordinal 0) up to and including the day. A day that is not a business day has the ordinal of
-- the business day before it, so counts and offsets from it start there. With no holidays it
-- is 5 * (days since 1970-01-05 // 7) + least(days % 7, 4), the weekday numbering it replaces.
-- A currency with rates but no calendar of its own counts FIRM's business days; an id that is
-- neither gets NULL.
CREATE TABLE IF NOT EXISTS core.calendar_days (
    calendar_id  VARCHAR NOT NULL,
    day          DATE NOT NULL,
    is_business  BOOLEAN NOT NULL,
    bd           INTEGER NOT NULL
);

-- What core.calendar_days is made of, for the date being built (getvariable('as_of_date')):
-- each calendar id with the holidays of the latest calendars delivery up to the date (holiday_date
-- NULL: an id without holidays). FIRM always; every delivered calendar; every currency the firm
-- has rates for (a currency without a calendar of its own counts FIRM's holidays). A build
-- remakes core.calendar_days only when these rows (their fingerprint, with the script's) change.
CREATE OR REPLACE VIEW core.calendar_days_inputs AS
WITH latest AS (
    SELECT max(business_date) AS delivered FROM core.calendars WHERE business_date <= getvariable('as_of_date')
),

delivered AS (
    SELECT DISTINCT c.calendar_id, c.holiday_date
    FROM core.calendars c, latest l
    WHERE c.business_date = l.delivered
),

calendar_ids AS (
    SELECT calendar_id FROM delivered
    UNION
    SELECT 'FIRM'
    UNION
    SELECT currency FROM core.fx_rates WHERE business_date <= getvariable('as_of_date')
)

SELECT i.calendar_id, d.holiday_date
FROM calendar_ids i
LEFT JOIN delivered d
  ON d.calendar_id = CASE WHEN i.calendar_id IN (SELECT calendar_id FROM delivered) THEN i.calendar_id ELSE 'FIRM' END;

-- the fingerprint of the inputs core.calendar_days was last made from (one row)
CREATE TABLE IF NOT EXISTS core.calendar_days_source (fingerprint VARCHAR NOT NULL);

-- the business-day ordinal of a day (see above)
CREATE OR REPLACE MACRO core.bd_number(cal_id, on_day) AS
    (SELECT c.bd FROM core.calendar_days c WHERE c.calendar_id = cal_id AND c.day = on_day);

CREATE OR REPLACE MACRO core.is_business_day(cal_id, on_day) AS
    (SELECT c.is_business FROM core.calendar_days c WHERE c.calendar_id = cal_id AND c.day = on_day);

-- n business days after the day (before it when n < 0), counted from the day or the business
-- day before it. One lookup joined to itself: a lookup nested in another's argument costs 10x.
CREATE OR REPLACE MACRO core.add_business_days(cal_id, on_day, n) AS
    (SELECT b.day
     FROM core.calendar_days a
     JOIN core.calendar_days b ON b.calendar_id = a.calendar_id AND b.bd = a.bd + n AND b.is_business
     WHERE a.calendar_id = cal_id AND a.day = on_day);

-- the last business day strictly before the day, and the first strictly after it
CREATE OR REPLACE MACRO core.previous_business_day(cal_id, on_day) AS
    core.add_business_days(cal_id, on_day - 1, 0);

CREATE OR REPLACE MACRO core.next_business_day(cal_id, on_day) AS
    core.add_business_days(cal_id, on_day, 1);

-- how many business days are in (first_day, last_day]; negative when last_day < first_day
CREATE OR REPLACE MACRO core.business_days_between(cal_id, first_day, last_day) AS
    core.bd_number(cal_id, last_day) - core.bd_number(cal_id, first_day);

-- The window the control marts read for a business date (DOMAIN §4.4): the 20 FIRM business
-- dates up to it, and a lookback of 40 more where a front booking or a settlement instruction of
-- a trade in the window can be. One row: as_of_date, as_of_bd, window_start, lookback_start.
CREATE OR REPLACE MACRO core.recon_window(on_day) AS TABLE
    SELECT
        on_day AS as_of_date,
        core.bd_number('FIRM', on_day) AS as_of_bd,
        core.add_business_days('FIRM', on_day, -19) AS window_start,
        core.add_business_days('FIRM', on_day, -59) AS lookback_start;
