-- Every quarantined record of the business date, with its rule. Records of feeds that carry
-- personal data are shown without their raw text (it stays in the lake's restricted quarantine).
WITH quarantined AS (
    SELECT * FROM core.quarantine WHERE business_date = getvariable('as_of_date')
),

final AS (
    SELECT
        business_date,
        feed,
        file,
        line,
        rule,
        CASE WHEN feed = 'clients' THEN '<redacted: personal data>' ELSE detail END AS detail,
        CASE WHEN feed = 'clients' THEN '<redacted: personal data; see lake/quarantine>' ELSE raw_record END AS raw_record,
        run_id
    FROM quarantined
)

SELECT * FROM final ORDER BY feed, line
