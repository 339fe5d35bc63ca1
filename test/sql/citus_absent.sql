-- Without Citus: citus_distribute() refuses, the mutex slot functions act
-- on this server, and records carry their owner's role name.
\set VERBOSITY default
SET client_min_messages = warning;

-- Not installed here: 0A000 with a hint.
\set SHOW_CONTEXT never
SELECT idempotency.citus_distribute();
\echo :LAST_ERROR_SQLSTATE
\set SHOW_CONTEXT errors

-- Only superusers and the tables' owner may call it at all.
SELECT has_function_privilege('public', 'idempotency.citus_distribute(regclass)', 'EXECUTE') AS public_may_distribute;

-- mutex_slots stays empty (and unreadable by others) without Citus.
SELECT count(*) AS slots FROM idempotency.mutex_slots;
SELECT has_table_privilege('public', 'idempotency.mutex_slots', 'SELECT') AS public_reads_slots;

-- What mutex_lock() runs on a slot's node: the same lock as mutex_lock().
BEGIN;
SELECT idempotency.mutex_lock_here(0, 42, false, 0) AS got;
SELECT count(*) AS mine FROM idempotency.mutex_holders_here(0, 42)
 WHERE pid = pg_backend_pid() AND granted AND mode = 'exclusive' AND scope = 'transaction';
SELECT idempotency.mutex_lock_here(0, 42, true, 0) AS shared_too;
COMMIT;
SELECT count(*) AS after_commit FROM idempotency.mutex_holders_here(0, 42);
SELECT idempotency.mutex_lock_here(0, NULL, false, 0) IS NULL AS strict;

-- Session mutexes still work on a single server.
SELECT idempotency.mutex_session_lock('single') AS session_lock;
SELECT idempotency.mutex_session_unlock('single') AS session_unlock;

-- The owner column is the role's name.
SELECT idempotency.mark_processed('ca-1', 'citus_absent') AS first;
SELECT owner = current_user AS is_me, pg_typeof(owner) AS type
  FROM idempotency.processed_events WHERE scope = 'citus_absent';
SELECT idempotency.forget('ca-1', 'citus_absent') AS forgotten;

-- Fencing tokens on one server still come from the sequence (a
-- distributed table's are at least the clock in microseconds).
SELECT fencing_token BETWEEN 1 AND 1000000000 AS from_sequence FROM idempotency.claim('ca-2', NULL, 'citus_absent');
SELECT idempotency.forget('ca-2', 'citus_absent') AS forgotten;

-- The read policy finds the role by its name, quoted as needed, and hides
-- (without an error) the records of a role that no longer exists.
CREATE ROLE "Regress Mixed";
CREATE ROLE regress_ca_gone;
SET ROLE "Regress Mixed";
SELECT idempotency.mark_processed('ca-mixed', 'citus_absent') AS mixed_marked;
SELECT count(*) AS mixed_sees_own FROM idempotency.processed_events WHERE scope = 'citus_absent';
RESET ROLE;
SET ROLE regress_ca_gone;
SELECT idempotency.mark_processed('ca-gone', 'citus_absent') AS gone_marked;
RESET ROLE;
DROP ROLE regress_ca_gone;
SET ROLE "Regress Mixed";
SELECT owner FROM idempotency.processed_events WHERE scope = 'citus_absent';
RESET ROLE;
SELECT owner FROM idempotency.processed_events WHERE scope = 'citus_absent' ORDER BY owner;
DELETE FROM idempotency.processed_events WHERE scope = 'citus_absent';
DROP ROLE "Regress Mixed";
