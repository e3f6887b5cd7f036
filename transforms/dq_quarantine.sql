-- Every quarantined record of the business date, with its rule. Records of feeds that carry
-- personal data or client ids are shown without their raw text (it stays in the lake's
-- restricted quarantine), and without a detail that could name a client.
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
        CASE
            WHEN feed = 'clients' THEN '<redacted: personal data>'
            WHEN feed IN ('trades', 'positions', 'client_activity')
                 AND (rule LIKE 'client_id:%' OR rule LIKE 'holder_id:%' OR rule IN ('holder_known', 'duplicate_key'))
                THEN '<redacted: may identify a client>'
            ELSE detail
        END AS detail,
        CASE
            WHEN feed IN ('clients', 'trades', 'positions', 'client_activity')
                THEN '<redacted: identifies a client; see lake/quarantine>'
            ELSE raw_record
        END AS raw_record,
        run_id
    FROM quarantined
)

SELECT * FROM final ORDER BY feed, line
