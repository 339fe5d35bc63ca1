-- Keyed mutexes: arguments, scopes, re-entrancy, modes,
-- unlock of a lock not held, the private lock-tag namespace, running out of
-- lock table space.  Races between sessions are in test/specs/mutex-*.spec.

-- Our locks as pg_locks shows them: namespace 0x4900 = 18688 (mutexes),
-- 0x4905 = 18693 (session markers, see src/mutex.c).
CREATE VIEW regress_mutex_locks AS
  SELECT objsubid, mode, granted, count(*) AS n
    FROM pg_locks
   WHERE locktype = 'advisory' AND pid = pg_backend_pid()
     AND objsubid IN (18688, 18693)
   GROUP BY 1, 2, 3;

-- Bad arguments: clear errors, nothing locked.
SELECT idempotency.mutex_lock(NULL);
SELECT idempotency.mutex_lock('');
SELECT idempotency.mutex_lock('a', '-1 second');
SELECT idempotency.mutex_lock('a', '1 day -1 month');
SELECT idempotency.mutex_lock('a', NULL, NULL);
SELECT idempotency.mutex_try_lock(NULL);
SELECT idempotency.mutex_session_lock('', '1s');
SELECT idempotency.mutex_session_try_lock('a', NULL);
SELECT idempotency.mutex_session_unlock(NULL);
SELECT idempotency.mutex_holders(NULL);
SELECT * FROM regress_mutex_locks;

-- Transaction scope: held until COMMIT / ROLLBACK, counted, both modes.
BEGIN;
SELECT idempotency.mutex_lock('a') AS locked;
SELECT idempotency.mutex_lock('a', '0') AS again_try;
SELECT idempotency.mutex_lock('a', '10 seconds') AS again_timeout;
SELECT idempotency.mutex_try_lock('a') AS again;
SELECT idempotency.mutex_try_lock('a', shared => true) AS shared_too;
SELECT pid = pg_backend_pid() AS me, mode, granted, scope, waiting_since
  FROM idempotency.mutex_holders('a') ORDER BY mode;
SELECT count(*) AS other_key FROM idempotency.mutex_holders('b');
-- A transaction lock is not a session lock: nothing to unlock.
SELECT idempotency.mutex_session_unlock('a') AS unlocked;
SELECT * FROM regress_mutex_locks ORDER BY 1, 2;
COMMIT;
SELECT * FROM regress_mutex_locks;
BEGIN;
SELECT idempotency.mutex_lock('a', shared => true) AS locked;
ROLLBACK;
SELECT count(*) AS after_rollback FROM idempotency.mutex_holders('a');

-- Session scope: survives COMMIT, re-entrant and counted like
-- pg_advisory_lock, released one count per unlock.
BEGIN;
SELECT idempotency.mutex_session_lock('s') AS l1;
COMMIT;
SELECT idempotency.mutex_session_try_lock('s') AS l2;
SELECT idempotency.mutex_session_lock('s', '1 minute') AS l3;
SELECT pid = pg_backend_pid() AS me, mode, granted, scope, waiting_since
  FROM idempotency.mutex_holders('s');
SELECT * FROM regress_mutex_locks ORDER BY 1, 2;
SELECT idempotency.mutex_session_unlock('s') AS u1;
SELECT idempotency.mutex_session_unlock('s') AS u2;
SELECT count(*) AS still_held FROM idempotency.mutex_holders('s');
SELECT idempotency.mutex_session_unlock('s') AS u3;
-- Not held (any more): false, and no WARNING (pg_advisory_unlock warns).
SELECT idempotency.mutex_session_unlock('s') AS u4;
SELECT idempotency.mutex_session_unlock('never locked') AS not_held;
SELECT * FROM regress_mutex_locks;

-- Shared and exclusive are separate counts; unlocking the wrong mode is false.
SELECT idempotency.mutex_session_lock('m', shared => true) AS shared_lock;
SELECT idempotency.mutex_session_unlock('m') AS wrong_mode;
SELECT mode, scope FROM idempotency.mutex_holders('m');
SELECT idempotency.mutex_session_unlock('m', shared => true) AS right_mode;
-- Both scopes on one key in one backend.
BEGIN;
SELECT idempotency.mutex_session_lock('both'), idempotency.mutex_lock('both');
SELECT mode, scope FROM idempotency.mutex_holders('both');
COMMIT;
SELECT mode, scope FROM idempotency.mutex_holders('both');
SELECT idempotency.mutex_session_unlock('both') AS unlocked;
SELECT * FROM regress_mutex_locks;

-- mutex_session_unlock_all releases every count of every session mutex, and
-- nothing else: the application's own advisory locks stay.
SELECT idempotency.mutex_session_lock('x'), idempotency.mutex_session_lock('x'),
       idempotency.mutex_session_lock('y', shared => true),
       pg_advisory_lock(42);
SELECT idempotency.mutex_session_unlock_all();
SELECT * FROM regress_mutex_locks;
SELECT objid, objsubid FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT pg_advisory_unlock(42);
-- ... and so do pg_advisory_unlock_all() and DISCARD ALL (documented).
SELECT idempotency.mutex_session_lock('x');
SELECT pg_advisory_unlock_all();
SELECT * FROM regress_mutex_locks;
SELECT idempotency.mutex_session_lock('x');
DISCARD ALL;
SELECT * FROM regress_mutex_locks;
SELECT idempotency.mutex_session_unlock('x') AS after_discard;

-- Our own namespace: pg_advisory_lock of the same 64-bit value, and of its
-- two halves, is a different lock (objsubid 1 and 2 vs 18688).  That the
-- three do not conflict between sessions is in mutex-collision.spec.
BEGIN;
SELECT idempotency.mutex_lock('k');
SELECT pg_advisory_xact_lock((classid::bigint << 32) | objid::bigint),
       pg_advisory_xact_lock(classid::int4, objid::int4)
  FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 18688;
SELECT count(DISTINCT (classid, objid)) AS same_numbers,
       array_agg(objsubid ORDER BY objsubid) AS namespaces
  FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT count(*) AS mutex_holders FROM idempotency.mutex_holders('k');
COMMIT;

-- Long keys are fine (only their hash is stored).
SELECT idempotency.mutex_try_lock(repeat('long key ', 100000)) AS long_key;

-- Running out of lock table space: 53200 from the lock manager (with its
-- hint about max_locks_per_transaction) and our context; no lock leaks.
DO $$
DECLARE st text; msg text; hint text; ctx text;
BEGIN
  PERFORM count(*) FROM generate_series(1, 1000000) g
    WHERE idempotency.mutex_lock('oom ' || g);
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                          hint = PG_EXCEPTION_HINT, ctx = PG_EXCEPTION_CONTEXT;
  -- (newer servers quote the setting's name in the hint)
  RAISE NOTICE '% % / % / %', st, msg, replace(hint, '"', ''),
    substring(ctx from 'while acquiring idempotency mutex "oom');
END $$;
SELECT * FROM regress_mutex_locks;
-- Session locks taken before the error stay (as with pg_advisory_lock), but
-- every mutex has its marker, and unlock_all releases them all.
DO $$
DECLARE st text; msg text;
BEGIN
  PERFORM count(*) FROM generate_series(1, 1000000) g
    WHERE idempotency.mutex_session_lock('oom ' || g);
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
  RAISE NOTICE '% %', st, msg;
END $$;
SELECT count(*) FILTER (WHERE objsubid = 18688) > 1000 AS many_held,
       count(*) FILTER (WHERE objsubid = 18688)
         = count(*) FILTER (WHERE objsubid = 18693) AS all_marked
  FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT idempotency.mutex_session_unlock_all();
SELECT * FROM regress_mutex_locks;
-- The lock table is usable again.
SELECT idempotency.mutex_try_lock('after oom');

-- Refused inside a parallel operation (25000): force one by marking the
-- function parallel safe, in a transaction that is rolled back.
BEGIN;
ALTER FUNCTION idempotency.mutex_try_lock(text, boolean) PARALLEL SAFE;
-- (force_parallel_mode is called debug_parallel_query from PostgreSQL 16 on)
DO $$ BEGIN
  PERFORM set_config('debug_parallel_query', 'on', true);
EXCEPTION WHEN undefined_object THEN
  PERFORM set_config('force_parallel_mode', 'on', true);
END $$;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SELECT idempotency.mutex_try_lock('in-parallel');
ROLLBACK;
SELECT * FROM regress_mutex_locks;

DROP VIEW regress_mutex_locks;
