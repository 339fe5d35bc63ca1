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
DROP EXTENSION idempotency;
RESET ROLE;

-- Schema squatting: DROP EXTENSION leaves the schema behind (PostgreSQL
-- does not make an auto-created schema a member of the extension).  A role
-- that prepares the schema cannot get the extension installed into it.
DROP SCHEMA idempotency;
SET ROLE regress_idem_dbowner;
CREATE SCHEMA idempotency;
CREATE FUNCTION idempotency.version(x int) RETURNS text LANGUAGE sql AS 'SELECT ''planted''';
RESET ROLE;
-- (no CONTEXT: newer servers add the install script's text to it)
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE EXTENSION idempotency;                  -- schema owned by another role
ALTER SCHEMA idempotency OWNER TO CURRENT_USER;
CREATE EXTENSION idempotency;                  -- schema not empty
\set SHOW_CONTEXT errors
\set VERBOSITY terse
DROP SCHEMA idempotency CASCADE;

-- Restore the state the following tests expect.
CREATE EXTENSION idempotency;
DO $$ BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM regress_idem_dbowner', current_database()); END $$;
DROP ROLE regress_idem_app;
DROP ROLE regress_idem_dbowner;
