-- A non-superuser role uses what it was granted and nothing else.

CREATE ROLE regress_idem_app LOGIN;
CREATE ROLE regress_idem_dbowner LOGIN;

-- The application role can call the functions ...
SET ROLE regress_idem_app;
SELECT idempotency.version() IS NOT NULL AS app_can_call;
-- ... but cannot plant, replace or remove objects in the extension's schema
-- (a function planted there could shadow ours for other roles).
CREATE FUNCTION idempotency.version(x int) RETURNS text LANGUAGE sql AS 'SELECT ''evil''';
CREATE TABLE idempotency.planted (x int);
ALTER FUNCTION idempotency.version() COST 1;
DROP FUNCTION idempotency.version();
DROP EXTENSION idempotency;
ALTER EXTENSION idempotency UPDATE;
RESET ROLE;

-- EXECUTE can be revoked like on any function.
REVOKE EXECUTE ON FUNCTION idempotency.version() FROM PUBLIC;
SET ROLE regress_idem_app;
SELECT idempotency.version();
RESET ROLE;
GRANT EXECUTE ON FUNCTION idempotency.version() TO regress_idem_app;
SET ROLE regress_idem_app;
SELECT idempotency.version() IS NOT NULL AS app_can_call_after_grant;
RESET ROLE;

-- The extension is trusted: a role with CREATE on the database (a database
-- owner, typically) installs it without being superuser, and then owns it.
DROP EXTENSION idempotency;
SET ROLE regress_idem_app;
CREATE EXTENSION idempotency;                  -- no CREATE on the database
RESET ROLE;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO regress_idem_dbowner', current_database()); END $$;
SET ROLE regress_idem_dbowner;
CREATE EXTENSION idempotency;
SELECT extowner::regrole FROM pg_extension WHERE extname = 'idempotency';
SELECT idempotency.version() IS NOT NULL AS owner_can_call;
-- Objects are owned by the bootstrap superuser, not by the installing role,
-- so the installing role cannot redefine them either.
ALTER FUNCTION idempotency.version() COST 1;
-- Nor take the schema over: rename it and plant a look-alike for the
-- superusers and pg_cron jobs that call idempotency.* (the schema is a
-- member of the extension, owned by the bootstrap superuser).
SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'idempotency';
ALTER SCHEMA idempotency RENAME TO idempotency_moved;
ALTER SCHEMA idempotency OWNER TO regress_idem_dbowner;
CREATE FUNCTION idempotency.purge(batch_size int DEFAULT 0) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint';
ALTER EXTENSION idempotency DROP SCHEMA idempotency;
DROP SCHEMA idempotency CASCADE;
-- The installer owns the tables (its pg_dump keeps their rows), so it may
-- attach a trigger to them; but the functions run their statements as the
-- table owner in a security-restricted operation: a superuser's call runs
-- the trigger with the installer's rights, never its own.
SELECT c.relname, c.relowner::regrole FROM pg_class c
 WHERE c.relnamespace = 'idempotency'::regnamespace AND c.relkind IN ('r', 'S')
 ORDER BY 1;
CREATE SCHEMA regress_trap;
CREATE TABLE regress_trap.seen (current_role_name name, is_superuser bool, tried text);
CREATE FUNCTION regress_trap.spy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO regress_trap.seen
        SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), NULL;
    BEGIN
        EXECUTE 'ALTER ROLE regress_idem_dbowner SUPERUSER';
        INSERT INTO regress_trap.seen VALUES (current_user, NULL, 'escalated');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO regress_trap.seen VALUES (current_user, NULL, SQLSTATE);
    END;
    RETURN NULL;
END $$;
CREATE TRIGGER spy AFTER INSERT OR UPDATE OR DELETE ON idempotency.processed_events
    FOR EACH ROW EXECUTE FUNCTION regress_trap.spy();
CREATE TRIGGER spy AFTER INSERT OR UPDATE OR DELETE ON idempotency.leases
    FOR EACH ROW EXECUTE FUNCTION regress_trap.spy();
RESET ROLE;
SELECT idempotency.mark_processed('trap', ttl => '1 microsecond');
SELECT pg_sleep(0.01);
SELECT idempotency.purge();
SELECT status FROM idempotency.lease_acquire('trap');
SELECT * FROM regress_trap.seen ORDER BY 1, 2, 3;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_idem_dbowner';
SET ROLE regress_idem_dbowner;
DROP SCHEMA regress_trap CASCADE;
DROP EXTENSION idempotency;
RESET ROLE;
-- DROP EXTENSION drops the schema with it.
SELECT count(*) AS leftover_schema FROM pg_namespace WHERE nspname = 'idempotency';

-- Schema squatting: a role that prepares a schema named idempotency cannot
-- get the extension installed into it, whoever owns it, empty or not.
SET ROLE regress_idem_dbowner;
CREATE SCHEMA idempotency;
CREATE FUNCTION idempotency.version(x int) RETURNS text LANGUAGE sql AS 'SELECT ''planted''';
RESET ROLE;
-- (no CONTEXT: newer servers add the install script's text to it)
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE EXTENSION idempotency;                  -- schema owned by another role
DROP FUNCTION idempotency.version(int);
ALTER SCHEMA idempotency OWNER TO CURRENT_USER;
CREATE EXTENSION idempotency;                  -- even empty and a superuser's
\set SHOW_CONTEXT errors
\set VERBOSITY terse
DROP SCHEMA idempotency CASCADE;

-- Restore the state the following tests expect.
CREATE EXTENSION idempotency;
DO $$ BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM regress_idem_dbowner', current_database()); END $$;
DROP ROLE regress_idem_app;
DROP ROLE regress_idem_dbowner;
