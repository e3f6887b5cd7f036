-- core.calendar_days for the business date being built (getvariable('as_of_date')): the
-- holidays of the latest calendars delivery up to the date, every day from 1970-01-05 to
-- 2099-12-31, FIRM always present (weekdays only until a calendars feed is delivered).
-- ~47,000 days a calendar, a tenth of a second in all: midoffice.warehouse.refresh_calendar_days
-- runs it only when core.calendar_days_inputs changed.
DELETE FROM core.calendar_days;

INSERT INTO core.calendar_days
WITH inputs AS (
    SELECT calendar_id, holiday_date FROM core.calendar_days_inputs
),

calendar_ids AS (
    SELECT DISTINCT calendar_id FROM inputs
),

holidays AS (
    SELECT calendar_id, holiday_date FROM inputs WHERE holiday_date IS NOT NULL
),

days AS (
    SELECT CAST(range AS DATE) AS day FROM range(DATE '1970-01-05', DATE '2100-01-01', INTERVAL 1 DAY)
),

flags AS (
    SELECT i.calendar_id, d.day, isodow(d.day) <= 5 AND h.holiday_date IS NULL AS is_business
    FROM calendar_ids i
    CROSS JOIN days d
    LEFT JOIN holidays h ON h.calendar_id = i.calendar_id AND h.holiday_date = d.day
)

SELECT
    calendar_id,
    day,
    is_business,
    CAST(sum(CAST(is_business AS INTEGER)) OVER (PARTITION BY calendar_id ORDER BY day) - 1 AS INTEGER) AS bd
FROM flags
ORDER BY day, calendar_id;  -- by day: a read of a few dates (the recon's view) skips the rest
