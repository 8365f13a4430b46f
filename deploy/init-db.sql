-- OwlClaw Tasks: creates the `owlclaw` role and the `owlclaw` database it owns.
--
-- The engine creates and migrates its own tables when it starts (`owlclaw serve`, or
-- `owlclaw migrate`); this file only makes the role and the empty database. It is a psql script
-- (it uses psql meta-commands, psql 15 or newer) and reads the role's password from the
-- OWLCLAW_DB_PASSWORD environment variable, so that no password is written in this file:
--
--   * docker-compose.yml mounts it into /docker-entrypoint-initdb.d/ of the `postgres` service,
--     whose entrypoint runs it once, as the superuser, when the data volume is first created
--     (with OWLCLAW_DB_PASSWORD from .env). Later changes of the password in .env are not
--     applied by it: run this file again (below) or ALTER ROLE by hand.
--   * On a PostgreSQL of your own, run it as a superuser (or a role with CREATEROLE and
--     CREATEDB):
--
--       OWLCLAW_DB_PASSWORD='...' psql -v ON_ERROR_STOP=1 -h HOST -U postgres -d postgres \
--           -f deploy/init-db.sql
--
-- Running it again is safe: an existing role gets the password again, an existing database is
-- left as it is.

\set ON_ERROR_STOP on

\getenv owlclaw_password OWLCLAW_DB_PASSWORD
\if :{?owlclaw_password}
\else
    \set owlclaw_password ''
\endif
SELECT length(:'owlclaw_password') = 0 AS owlclaw_password_missing \gset
\if :owlclaw_password_missing
    DO $$ BEGIN RAISE EXCEPTION 'init-db.sql: OWLCLAW_DB_PASSWORD is not set or empty: set it (in .env for docker compose) and run this file again'; END $$;
\endif

-- The role the engines log in as: no superuser, no CREATEDB, no CREATEROLE.
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'owlclaw') AS owlclaw_role_missing \gset
\if :owlclaw_role_missing
    CREATE ROLE owlclaw LOGIN PASSWORD :'owlclaw_password';
\else
    ALTER ROLE owlclaw LOGIN PASSWORD :'owlclaw_password';
\endif

-- Its database. As the owner, `owlclaw` may create the engine's tables in the `public` schema
-- (PostgreSQL 15 and later grant CREATE on `public` to the database owner only).
SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = 'owlclaw') AS owlclaw_database_missing \gset
\if :owlclaw_database_missing
    CREATE DATABASE owlclaw OWNER owlclaw ENCODING 'UTF8' TEMPLATE template0;
\endif
-- Other roles of the cluster may not connect to it (its owner and superusers still can).
REVOKE ALL ON DATABASE owlclaw FROM PUBLIC;

\unset owlclaw_password
