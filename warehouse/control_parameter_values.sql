-- core.control_parameter_values for the business date being built (getvariable('as_of_date')):
-- the rows of the latest control_parameters delivery up to the date, and every default of
-- contracts/control_parameters.yaml beside them (core.param picks, see warehouse/parameters.sql).
DELETE FROM core.control_parameter_values;

INSERT INTO core.control_parameter_values
WITH latest AS (
    SELECT max(business_date) AS delivered
    FROM core.control_parameters
    WHERE business_date <= getvariable('as_of_date')
),

delivered AS (
    SELECT c.parameter, c.scope_id, c.value, c.text_value, 'FEED' AS source
    FROM core.control_parameters c, latest l
    WHERE c.business_date = l.delivered
),

defaults AS (
    SELECT d.parameter, d.scope_id, d.value, d.text_value, 'DEFAULT' AS source
    FROM core.control_parameter_defaults d
)

SELECT parameter, scope_id, value, text_value, source FROM delivered
UNION ALL
SELECT parameter, scope_id, value, text_value, source FROM defaults
ORDER BY parameter, scope_id, source;
