-- The control parameters of a build (DOMAIN §7.2). core.control_parameter_defaults holds the
-- defaults of contracts/control_parameters.yaml (loaded by every build); core.control_parameter_values
-- is what the build uses: the latest control_parameters delivery up to the business date over
-- those defaults (rebuilt by each build: warehouse/control_parameter_values.sql).
CREATE TABLE IF NOT EXISTS core.control_parameter_defaults (
    parameter   VARCHAR NOT NULL,
    scope_id    VARCHAR NOT NULL,
    value       DOUBLE,
    text_value  VARCHAR
);

CREATE TABLE IF NOT EXISTS core.control_parameter_values (
    parameter   VARCHAR NOT NULL,
    scope_id    VARCHAR NOT NULL,
    value       DOUBLE,
    text_value  VARCHAR,
    source      VARCHAR NOT NULL  -- FEED (delivered) or DEFAULT
);

-- A parameter's value for a scope: the scope's own row, else the ALL row (the delivered ALL row
-- wins over a default for the scope: setting ALL means every scope without its own row).
CREATE OR REPLACE MACRO core.param(p, scope) AS (
    SELECT v.value
    FROM core.control_parameter_values v
    WHERE v.parameter = p AND v.scope_id IN (scope, 'ALL')
    ORDER BY v.source = 'FEED' AND v.scope_id = scope DESC, v.source = 'FEED' DESC, v.scope_id = scope DESC
    LIMIT 1
);

CREATE OR REPLACE MACRO core.param_text(p, scope) AS (
    SELECT v.text_value
    FROM core.control_parameter_values v
    WHERE v.parameter = p AND v.scope_id IN (scope, 'ALL')
    ORDER BY v.source = 'FEED' AND v.scope_id = scope DESC, v.source = 'FEED' DESC, v.scope_id = scope DESC
    LIMIT 1
);
