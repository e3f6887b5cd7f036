-- Core control tables of the working warehouse (build.duckdb). Feed tables (core.<feed>) are
-- created from contracts/feeds.yaml by midoffice.warehouse; these hold the pipeline's own facts.
CREATE SCHEMA IF NOT EXISTS core;

CREATE TABLE IF NOT EXISTS core.feed_health (
    business_date        DATE NOT NULL,
    feed                 VARCHAR NOT NULL,
    file                 VARCHAR,
    expected_rows        BIGINT,
    received_rows        BIGINT,
    loaded_rows          BIGINT,
    quarantined_rows     BIGINT,
    conservation_ok      BOOLEAN,
    expectations_run     BIGINT,
    expectations_failed  BIGINT,
    validation_engine    VARCHAR,
    rows_validated       BIGINT,
    sampled              BOOLEAN,
    gate                 VARCHAR,
    reason               VARCHAR,
    delivered_at         VARCHAR,
    deadline             VARCHAR,
    freshness            VARCHAR,
    schema_note          VARCHAR,
    run_id               VARCHAR,
    PRIMARY KEY (business_date, feed)
);

CREATE TABLE IF NOT EXISTS core.quarantine (
    business_date  DATE NOT NULL,
    feed           VARCHAR NOT NULL,
    file           VARCHAR,
    line           BIGINT,
    rule           VARCHAR NOT NULL,
    detail         VARCHAR,
    raw_record     VARCHAR,
    run_id         VARCHAR
);

CREATE TABLE IF NOT EXISTS core.pipeline_runs (
    run_id         VARCHAR NOT NULL,
    business_date  DATE NOT NULL,
    stage          VARCHAR NOT NULL,
    status         VARCHAR NOT NULL,
    started_at     TIMESTAMP,
    finished_at    TIMESTAMP,
    rows_in        BIGINT,
    rows_out       BIGINT,
    message        VARCHAR
);

CREATE TABLE IF NOT EXISTS core.build_log (
    business_date  DATE NOT NULL,
    mart           VARCHAR NOT NULL,
    status         VARCHAR NOT NULL,   -- BUILT | SKIPPED
    reason         VARCHAR,
    rows           BIGINT,
    run_id         VARCHAR
);

-- Dates whose partitions changed since the last publication: the next publication replaces only
-- these dates' rows in the lake, so its cost follows the new data, not the history. Cleared
-- after the lake committed the version (a publish killed before that redoes them).
CREATE TABLE IF NOT EXISTS core.unpublished_dates (
    business_date  DATE PRIMARY KEY
);

-- Every replacement of a core feed partition, numbered in the order it happened, and for a mart
-- that carries its previous date's rows forward (ops_trade_recon) the last load number its
-- build of each date saw. A date's rows may be carried only if no partition of a date up to it
-- was loaded after they were built (midoffice.warehouse.carry_from_date).
CREATE TABLE IF NOT EXISTS core.partition_loads (
    feed           VARCHAR NOT NULL,
    business_date  DATE NOT NULL,
    load_seq       BIGINT NOT NULL,
    PRIMARY KEY (feed, business_date)
);

CREATE TABLE IF NOT EXISTS core.mart_builds (
    mart           VARCHAR NOT NULL,
    business_date  DATE NOT NULL,
    after_load_seq BIGINT NOT NULL,
    PRIMARY KEY (mart, business_date)
);

-- People's sign-offs (midoffice.people.store, kind signoffs) effective up to the date being built,
-- and the version that last published each business date (the lake): read by the build as
-- inputs (alerts: a restatement after sign-off), replaced at the start of every build.
CREATE TABLE IF NOT EXISTS core.signoffs (
    signoff_id      BIGINT,
    effective_date  DATE,
    action          VARCHAR,
    "by"            VARCHAR,
    "at"            TIMESTAMP,
    version         BIGINT,
    comment         VARCHAR
);

CREATE TABLE IF NOT EXISTS core.published_versions (
    business_date  DATE,
    version        BIGINT
);
