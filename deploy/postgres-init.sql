-- Run once by the postgres service at its first start (docker-entrypoint-initdb.d): the databases
-- of midoffice's distributed deployment besides Airflow's own. midoffice_lake holds the DuckLake
-- catalog (MIDOFFICE_LAKE_CATALOG); midoffice_actions holds people's actions, schema `people`
-- (MIDOFFICE_ACTIONS_URL). Both owned by the service's user (POSTGRES_USER).
CREATE DATABASE midoffice_lake;
CREATE DATABASE midoffice_actions;
