-- Create / drop / re-create of the extension, version(), and the check that
-- the loaded library and the installed SQL objects are of the same version.

-- pg_regress created the extension already (--load-extension).
SELECT extname, extversion = (SELECT default_version FROM pg_available_extensions
                              WHERE name = 'idempotency') AS is_default,
       extrelocatable, extnamespace::regnamespace
  FROM pg_extension WHERE extname = 'idempotency';
SELECT idempotency.version() = extversion AS version_matches
  FROM pg_extension WHERE extname = 'idempotency';

-- Creating it twice is an error; IF NOT EXISTS is a notice.
CREATE EXTENSION idempotency;
CREATE EXTENSION IF NOT EXISTS idempotency;

-- The schema is fixed.
DROP EXTENSION idempotency;
SELECT count(*) AS leftover_schema FROM pg_namespace WHERE nspname = 'idempotency';
CREATE SCHEMA elsewhere;
CREATE EXTENSION idempotency SCHEMA elsewhere;
DROP SCHEMA elsewhere;

-- Re-create, and everything works again in the same session.
CREATE EXTENSION idempotency;
SELECT idempotency.version() = extversion AS version_matches
  FROM pg_extension WHERE extname = 'idempotency';

-- A dropped extension leaves no callable function behind.
DROP EXTENSION idempotency;
SELECT idempotency.version();
CREATE EXTENSION idempotency;

-- Every object belongs to the extension (so DROP EXTENSION removes it all).
SELECT count(*) AS objects_outside_extension
  FROM pg_proc p
 WHERE p.pronamespace = 'idempotency'::regnamespace
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                      AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e');

-- Every C function is SECURITY INVOKER.
SELECT count(*) AS security_definer_functions
  FROM pg_proc WHERE pronamespace = 'idempotency'::regnamespace AND prosecdef;

-- Library and SQL objects of different versions: every call fails with a
-- hint naming the fix.  Simulate an older and a newer set of SQL objects
-- (ALTER FUNCTION makes the backend re-check, as an upgrade script would).
\set VERBOSITY default
BEGIN;
UPDATE pg_extension SET extversion = '0.0.1' WHERE extname = 'idempotency';
ALTER FUNCTION idempotency.version() COST 2;
SELECT idempotency.version();
ROLLBACK;
BEGIN;
UPDATE pg_extension SET extversion = '99.0.0' WHERE extname = 'idempotency';
ALTER FUNCTION idempotency.version() COST 2;
SELECT idempotency.version();
ROLLBACK;
\set VERBOSITY terse
-- After the rollback the versions match again.
SELECT idempotency.version() = extversion AS version_matches
  FROM pg_extension WHERE extname = 'idempotency';
