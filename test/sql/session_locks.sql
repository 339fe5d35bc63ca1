-- idempotency.session_locks: off refuses new session mutexes (55000, with a
-- hint to use the transaction-scoped functions); unlocking still works, so
-- nothing can be stranded.  Only a superuser (or a role granted SET on the
-- parameter) may change it, so a role it is turned off for with ALTER ROLE
-- cannot turn it back on.

\set VERBOSITY default
SELECT idempotency.version() IS NOT NULL AS loaded;
SHOW idempotency.session_locks;

-- On (the default): session mutexes work.
SELECT idempotency.mutex_session_lock('held-before') AS locked;

-- Off: lock and try_lock are refused, with the SQLSTATE, detail and hint.
SET idempotency.session_locks = off;
SELECT idempotency.mutex_session_lock('k');
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.mutex_session_try_lock('k', shared => true);
\echo :LAST_ERROR_SQLSTATE
-- ... before the arguments are looked at.
SELECT idempotency.mutex_session_lock(NULL);
\echo :LAST_ERROR_SQLSTATE
-- Transaction mutexes are not affected.
BEGIN;
SELECT idempotency.mutex_lock('k') AS locked, idempotency.mutex_try_lock('k2') AS try_locked;
COMMIT;
-- A session mutex taken while it was on can still be released.
SELECT scope FROM idempotency.mutex_holders('held-before');
SELECT idempotency.mutex_session_unlock('held-before') AS unlocked;
SELECT idempotency.mutex_session_unlock('held-before') AS unlocked_again;
SELECT idempotency.mutex_session_unlock_all();
RESET idempotency.session_locks;
SELECT idempotency.mutex_session_try_lock('k') AS locked_again;
SELECT idempotency.mutex_session_unlock_all();
SELECT count(*) AS held FROM idempotency.mutex_holders('k');

-- Not a boolean: refused by the parameter's type.
SET idempotency.session_locks = 'sometimes';

-- Per role, as an administrator sets it for a pooled application role.
CREATE ROLE regress_pooled_app LOGIN;
CREATE ROLE regress_direct_app LOGIN;
GRANT USAGE ON SCHEMA idempotency TO regress_pooled_app, regress_direct_app;
ALTER ROLE regress_pooled_app SET idempotency.session_locks = off;
\c - regress_pooled_app
SELECT idempotency.mutex_session_lock('k');
\echo :LAST_ERROR_SQLSTATE
SHOW idempotency.session_locks;
-- The application cannot turn it back on, neither for the session nor for
-- a transaction, nor for its role.
SET idempotency.session_locks = on;
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SET LOCAL idempotency.session_locks = on;
ROLLBACK;
ALTER ROLE regress_pooled_app SET idempotency.session_locks = on;
SHOW idempotency.session_locks;
BEGIN;
SELECT idempotency.mutex_lock('k') AS transaction_mutex_still_works;
COMMIT;
-- Unlocking is allowed (nothing is held).
SELECT idempotency.mutex_session_unlock('k') AS unlocked;
SELECT idempotency.mutex_session_unlock_all();
-- Nor by setting it before the library is loaded (in a new session, or
-- through PGOPTIONS): the value is dropped with a warning when it loads.
\c - regress_pooled_app
SET idempotency.session_locks = on;
SELECT idempotency.mutex_session_lock('k');
SHOW idempotency.session_locks;

-- Another role keeps the default.
\c - regress_direct_app
SELECT idempotency.version() IS NOT NULL AS loaded;
SHOW idempotency.session_locks;
SELECT idempotency.mutex_session_lock('k') AS locked;
SELECT idempotency.mutex_session_unlock('k') AS unlocked;
-- It cannot turn it off for itself either: the administrator decides.
SET idempotency.session_locks = off;

-- A non-superuser administrator can be allowed to set it (GRANT SET ON
-- PARAMETER).
\c - postgres
GRANT SET ON PARAMETER idempotency.session_locks TO regress_direct_app;
ALTER ROLE regress_direct_app CREATEROLE;
-- (from 16 on, CREATEROLE alone no longer lets it alter other roles)
GRANT regress_pooled_app TO regress_direct_app WITH ADMIN OPTION;
ALTER ROLE regress_pooled_app RESET idempotency.session_locks;
\c - regress_direct_app
SET idempotency.session_locks = off;
SELECT idempotency.mutex_session_try_lock('k');
\echo :LAST_ERROR_SQLSTATE
-- ... and, with CREATEROLE and ADMIN on the role, to set it for another role.
ALTER ROLE regress_pooled_app SET idempotency.session_locks = off;
\c - regress_pooled_app
SELECT idempotency.mutex_session_try_lock('k');
\echo :LAST_ERROR_SQLSTATE

-- The limit: a startup option (PGOPTIONS) given before the library is
-- loaded replaces the role's value; when the library loads it is refused
-- with a warning and the parameter falls back to its default, on.  Loading
-- the library at server start (shared_preload_libraries) closes this: such
-- a connection is then refused.  PgBouncer passes no startup options.
\c "dbname=contrib_regression user=regress_pooled_app options=-cidempotency.session_locks=on"
SELECT idempotency.mutex_session_try_lock('k') AS locked;
SELECT idempotency.mutex_session_unlock_all();

\c "dbname=contrib_regression user=postgres options="
REVOKE SET ON PARAMETER idempotency.session_locks FROM regress_direct_app;
ALTER ROLE regress_pooled_app RESET idempotency.session_locks;
REVOKE USAGE ON SCHEMA idempotency FROM regress_pooled_app, regress_direct_app;
DROP ROLE regress_pooled_app, regress_direct_app;
