-- idempotency.stats in one session: every outcome a single session can
-- produce, counted exactly; errors, nesting, idempotency.track = off,
-- percentile order, privileges.  The regression cluster does not preload
-- the library, so the counters are this session's own.  Races, waits and
-- the cluster-wide counters are in test/specs/stats-*.spec and
-- test/suites/70-stats.sh.

SELECT idempotency.stats_scope();

-- A compact view of the counters without the timings.
CREATE TEMP VIEW regress_stats AS
  SELECT operation, outcome, calls, wait_calls
    FROM idempotency.stats ORDER BY operation, outcome;

-- Leftovers of other tests in processed_events: purge them first.
SELECT idempotency.purge() >= 0 AS purged_before;
SELECT idempotency.stats_reset();
SELECT * FROM regress_stats;

-- Upserts: inserted, existing, updated.
CREATE TABLE stats_t (id serial PRIMARY KEY, k text UNIQUE, v int);
SELECT created FROM idempotency.get_or_create(NULL::stats_t, '{"k": "a", "v": 1}');
SELECT created FROM idempotency.get_or_create(NULL::stats_t, '{"k": "a", "v": 1}');
SELECT k, v FROM idempotency.idempotent_upsert(NULL::stats_t, '{"k": "b", "v": 1}');
SELECT k, v FROM idempotency.idempotent_upsert(NULL::stats_t, '{"k": "b", "v": 1}');
SELECT (item).v, created FROM idempotency.update_or_create(NULL::stats_t, '{"k": "a", "v": 2}');
SELECT (item).v, created FROM idempotency.update_or_create(NULL::stats_t, '{"k": "a", "v": 2}');
SELECT (item).v, created FROM idempotency.update_or_create(NULL::stats_t, '{"k": "c", "v": 2}');
-- A batch counts per element: 2 existing, 2 inserted.
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::stats_t,
  '[{"k": "a"}, {"k": "b"}, {"k": "d"}, {"k": "e"}]');
SELECT * FROM regress_stats;
-- A key repeated within one batch: each element counts (as inserted).
SELECT idempotency.stats_reset();
SELECT count(DISTINCT id) FROM idempotency.idempotent_upsert_many(NULL::stats_t,
  '[{"k": "x"}, {"k": "x"}, {"k": "a"}]');
SELECT * FROM regress_stats;

-- A conflict, with nested calls: a BEFORE INSERT trigger inserts the key
-- first through get_or_create (counted as inserted), so the outer call's
-- INSERT finds it and returns it (counted as conflict).
CREATE FUNCTION stats_t_race() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF pg_trigger_depth() = 1 AND NEW.k LIKE 'race%' THEN
    PERFORM idempotency.get_or_create(NULL::stats_t, jsonb_build_object('k', NEW.k, 'v', 42));
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER stats_t_race BEFORE INSERT ON stats_t
  FOR EACH ROW EXECUTE FUNCTION stats_t_race();
SELECT idempotency.stats_reset();
SELECT (item).v, created FROM idempotency.get_or_create(NULL::stats_t, '{"k": "race-1", "v": 1}');
SELECT * FROM regress_stats;
DROP TRIGGER stats_t_race ON stats_t;

-- Errors: a call that ends by an ERROR counts as 'error', also when a
-- PL/pgSQL exception block catches it (only the failed call is counted,
-- not the call around it).
SELECT idempotency.stats_reset();
SELECT idempotency.get_or_create(NULL::stats_t, '{"nope": 1}');
DO $$
BEGIN
  PERFORM idempotency.get_or_create(NULL::stats_t, '{"nope": 1}');
EXCEPTION WHEN undefined_column THEN
  RAISE NOTICE 'caught %', SQLSTATE;
END $$;
CREATE FUNCTION stats_t_fail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    PERFORM idempotency.mark_processed(NULL);
  EXCEPTION WHEN null_value_not_allowed THEN
    NULL;
  END;
  RETURN NEW;
END $$;
CREATE TRIGGER stats_t_fail BEFORE INSERT ON stats_t
  FOR EACH ROW EXECUTE FUNCTION stats_t_fail();
SELECT created FROM idempotency.get_or_create(NULL::stats_t, '{"k": "f"}');
DROP TRIGGER stats_t_fail ON stats_t;
BEGIN;
SELECT created FROM idempotency.get_or_create(NULL::stats_t, '{"k": "g"}');
ROLLBACK;
SELECT * FROM regress_stats;

-- Processed events and idempotency keys.
SELECT idempotency.stats_reset();
SELECT idempotency.mark_processed('stats-ev-1');
SELECT idempotency.mark_processed('stats-ev-1');
BEGIN;
SELECT status FROM idempotency.claim('stats-k1', '{"a": 1}');
SELECT idempotency.complete('stats-k1', '{"done": true}');
COMMIT;
SELECT status FROM idempotency.claim('stats-k1', '{"a": 1}');
SELECT status FROM idempotency.claim('stats-k1', '{"a": 2}');
BEGIN;
SELECT status FROM idempotency.claim('stats-k2');
SELECT idempotency.fail('stats-k2', '{"e": 1}', retryable => false);
COMMIT;
SELECT status FROM idempotency.claim('stats-k2');
-- A committed claim is in progress until its lease runs out, then taken over.
SELECT status FROM idempotency.claim('stats-k3', lease => '50 milliseconds');
SELECT status FROM idempotency.claim('stats-k3');
SELECT pg_sleep(0.1);
SELECT status, attempts FROM idempotency.claim('stats-k3');
-- purge: calls = rows deleted.
SELECT idempotency.mark_processed('stats-old-' || g, ttl => '1 millisecond')
  FROM generate_series(1, 3) g;
SELECT pg_sleep(0.01);
SELECT idempotency.purge();
-- A purge refused for its argument or in a read-only transaction: 'error'.
SELECT idempotency.purge(0);
BEGIN READ ONLY;
SELECT idempotency.purge();
ROLLBACK;
SELECT * FROM regress_stats;

-- Mutexes (single session: never busy).
SELECT idempotency.stats_reset();
BEGIN;
SELECT idempotency.mutex_lock('stats-m');
SELECT idempotency.mutex_lock('stats-m', '1 second');
SELECT idempotency.mutex_try_lock('stats-m');
COMMIT;
SELECT idempotency.mutex_session_lock('stats-m');
SELECT idempotency.mutex_session_try_lock('stats-m');
SELECT idempotency.mutex_session_unlock_all();
SELECT * FROM regress_stats;

-- Leases: every status.
SELECT idempotency.stats_reset();
SELECT token AS t1 FROM idempotency.lease_acquire('stats-l') \gset
SELECT status FROM idempotency.lease_acquire('stats-l');
SELECT status FROM idempotency.lease_acquire('stats-l', if_match => '00000000-0000-4000-8000-000000000000');
SELECT status FROM idempotency.lease_renew('stats-l', :'t1');
SELECT status FROM idempotency.lease_renew('stats-l', '00000000-0000-4000-8000-000000000000');
SELECT idempotency.lease_assert('stats-l', :'t1') > 0 AS asserted;
\set VERBOSITY terse
SELECT idempotency.lease_assert('stats-l', '00000000-0000-4000-8000-000000000000');
\set VERBOSITY default
SELECT idempotency.lease_release('stats-l', '00000000-0000-4000-8000-000000000000');
SELECT idempotency.lease_release('stats-l', :'t1');
SELECT idempotency.lease_release('stats-l');
SELECT * FROM regress_stats;

-- Timings: present, consistent and ordered.
SELECT count(*) > 0 AS has_rows,
       bool_and(total_ms > 0 AND max_ms > 0) AS timed,
       bool_and(abs(mean_ms - total_ms / calls) < 1e-9) AS mean_ok,
       bool_and(p50_ms <= p95_ms AND p95_ms <= p99_ms AND p99_ms <= max_ms) AS ordered,
       bool_and(wait_calls = 0 AND wait_ms = 0) AS no_waits
  FROM idempotency.stats;

-- idempotency.track = off: nothing is counted.
SELECT idempotency.stats_reset();
SET idempotency.track = off;
SELECT created FROM idempotency.get_or_create(NULL::stats_t, '{"k": "a"}');
SELECT idempotency.mutex_try_lock('stats-m');
SELECT idempotency.get_or_create(NULL::stats_t, '{"nope": 1}');
RESET idempotency.track;
SELECT * FROM regress_stats;
-- A trigger function that turns it off for itself: the calls it makes are
-- not counted, the call that fired it is.
CREATE FUNCTION stats_untracked() RETURNS trigger LANGUAGE plpgsql
  SET idempotency.track = off AS $$
BEGIN
  PERFORM idempotency.mutex_try_lock('stats-m');
  PERFORM idempotency.get_or_create(NULL::stats_t, '{"nope": 1}');
  RETURN NEW;
EXCEPTION WHEN undefined_column THEN
  RETURN NEW;
END $$;
CREATE TRIGGER stats_untracked BEFORE INSERT ON stats_t
  FOR EACH ROW EXECUTE FUNCTION stats_untracked();
SELECT created FROM idempotency.get_or_create(NULL::stats_t, '{"k": "u"}');
DROP TRIGGER stats_untracked ON stats_t;
SELECT * FROM regress_stats;

-- Everybody may read the view; only superusers may reset it.
CREATE ROLE regress_stats_reader;
SET ROLE regress_stats_reader;
SELECT count(*) > 0 AS readable FROM idempotency.stats;
SELECT idempotency.stats_scope();
\set VERBOSITY sqlstate
SELECT idempotency.stats_reset();
\set VERBOSITY default
RESET ROLE;
DROP ROLE regress_stats_reader;

DROP FUNCTION stats_untracked();
DROP FUNCTION stats_t_fail();
DROP FUNCTION stats_t_race();
DROP TABLE stats_t;
DROP VIEW regress_stats;
