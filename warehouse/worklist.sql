-- The back office's worklist (DOMAIN §9): what the build reads besides the marts.
--
-- People's actions on worklist items, as the build of the date sees them: the records of the
-- people store (midoffice/people/store.py, kind case_actions) effective on or before the date,
-- copied in by every build (warehouse.refresh_case_actions), never written by a model. The store
-- is the record; this table is rebuilt from it, so a rebuild of a date applies the same actions.
CREATE TABLE IF NOT EXISTS core.case_actions (
    action_id       BIGINT,
    item_id         VARCHAR,
    action          VARCHAR,
    "by"            VARCHAR,
    "at"            TIMESTAMP,
    effective_date  DATE,
    "text"          VARCHAR,
    assignee        VARCHAR,
    reason          VARCHAR
);

-- worklist_state reads its own rows of the previous business date (yml carries_previous_date):
-- the table exists before its first build. The build checks its columns are the model's.
CREATE TABLE IF NOT EXISTS main.worklist_state (
    as_of_date               DATE,
    item_id                  VARCHAR,
    item_type                VARCHAR,
    natural_key              VARCHAR,
    trade_id                 VARCHAR,
    settlement_id            VARCHAR,
    limit_id                 VARCHAR,
    client_key               VARCHAR,
    instrument_id            VARCHAR,
    feed                     VARCHAR,
    book                     VARCHAR,
    custodian                VARCHAR,
    currency                 VARCHAR,
    asset_class              VARCHAR,
    segment                  VARCHAR,
    relationship_manager_id  VARCHAR,
    fail_reason              VARCHAR,
    description              VARCHAR,
    value_usd                DOUBLE,
    calendar_id              VARCHAR,
    in_data                  BOOLEAN,
    opened_date              DATE,
    age_bd                   INTEGER,
    due_date                 DATE,
    overdue                  BOOLEAN,
    priority                 VARCHAR,
    owner_team               VARCHAR,
    owner_team_name          VARCHAR,
    state                    VARCHAR,
    assigned_to              VARCHAR,
    resolved_by              VARCHAR,
    resolution               VARCHAR,
    last_action              VARCHAR,
    last_action_date         DATE,
    actions                  BIGINT,
    run_id                   VARCHAR,
    loaded_at                TIMESTAMP
);
