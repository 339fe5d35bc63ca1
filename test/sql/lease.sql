-- Durable leases: every status, every error, and the
-- HTTP lock service it stands for walked through call by call.
\set VERBOSITY terse

-- Errors with their SQLSTATE, random tokens and timestamps masked.
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    msg text;
    det text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    msg := SQLSTATE || ': ' || msg || CASE WHEN det <> '' THEN ' / ' || det ELSE '' END;
    msg := regexp_replace(msg, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<token>', 'g');
    RETURN regexp_replace(msg, '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d', '<time>', 'g');
END $$;

---------------------------------------------------------------------------
-- The HTTP mutex service, call by call.
---------------------------------------------------------------------------

-- POST /api/report -> 201 Created, with an id (the ETag) and a timestamp.
SELECT status, fencing_token, holder,
       acquired_at <= clock_timestamp() AS acquired_in_past,
       expires_at - acquired_at AS ttl
  FROM idempotency.lease_acquire('report', holder => 'worker-1') \gset a1_
SELECT :'a1_status' AS status, :a1_fencing_token AS fencing_token, :'a1_holder' AS holder,
       :'a1_acquired_in_past' AS acquired_in_past, :'a1_ttl' AS ttl;
SELECT token AS t1 FROM idempotency.lease_status('report') \gset

-- POST again -> 409 Conflict; the row describes the holder's lease.
SELECT status, token = :'t1' AS holders_token, fencing_token, holder
  FROM idempotency.lease_acquire('report', holder => 'worker-2');

-- GET -> 200 OK with the same id.
SELECT token = :'t1' AS same_token, fencing_token, holder,
       expires_at - acquired_at AS ttl
  FROM idempotency.lease_status('report');

-- DELETE with a stale If-Match -> 412 Precondition Failed, lease untouched.
SELECT idempotency.lease_release('report', '00000000-0000-4000-8000-000000000000');
SELECT count(*) AS still_held FROM idempotency.lease_status('report');

-- POST with a stale If-Match -> 412; the row describes the current lease.
SELECT status, token = :'t1' AS current_token, fencing_token, holder
  FROM idempotency.lease_acquire('report', if_match => '00000000-0000-4000-8000-000000000000');

-- POST with If-Match = current ETag -> 201: hand-over without a gap.
SELECT status, token <> :'t1' AS new_token, fencing_token, holder
  FROM idempotency.lease_acquire('report', holder => 'worker-2', if_match => :'t1');
SELECT token AS t2 FROM idempotency.lease_status('report') \gset

-- The old ETag is now stale.
SELECT status, token = :'t2' AS current_token, fencing_token
  FROM idempotency.lease_acquire('report', if_match => :'t1');

-- DELETE with the right If-Match -> 204 No Content.
SELECT idempotency.lease_release('report', :'t2');
-- GET -> 404 Not Found (no row).
SELECT count(*) AS rows FROM idempotency.lease_status('report');
-- DELETE -> 404 Not Found, with or without If-Match.
SELECT idempotency.lease_release('report');
SELECT idempotency.lease_release('report', :'t2');

-- POST with If-Match when there is no current lease -> 201.
SELECT status, fencing_token
  FROM idempotency.lease_acquire('report', if_match => :'t2');
-- DELETE without If-Match releases whatever is there -> 204.
SELECT idempotency.lease_release('report');
SELECT count(*) AS rows FROM idempotency.lease_status('report');

---------------------------------------------------------------------------
-- Fencing tokens: strictly increasing per key, across release and expiry;
-- independent across keys.
---------------------------------------------------------------------------
SELECT status, fencing_token FROM idempotency.lease_acquire('report');
SELECT idempotency.lease_release('report');
SELECT status, fencing_token FROM idempotency.lease_acquire('report', ttl => '10 ms');
SELECT pg_sleep(0.05);
-- Expired leases are free: status shows nothing, release finds nothing,
-- and the next acquire gets a higher fencing token.
SELECT count(*) AS rows FROM idempotency.lease_status('report');
SELECT idempotency.lease_release('report');
SELECT status, fencing_token FROM idempotency.lease_acquire('report', holder => 'after-expiry');
SELECT status, fencing_token FROM idempotency.lease_acquire('other-key');
-- The row stays after release: it carries the counter.
SELECT idempotency.lease_release('report');
SELECT key, token IS NULL AS free, fencing_token, holder, expires_at IS NULL AS no_expiry
  FROM idempotency.leases ORDER BY key;

---------------------------------------------------------------------------
-- Renew.
---------------------------------------------------------------------------
SELECT token AS t3 FROM idempotency.lease_acquire('renew-me', ttl => '1 minute') \gset
SELECT status, expires_at > clock_timestamp() + interval '50 minutes' AS extended
  FROM idempotency.lease_renew('renew-me', :'t3', '1 hour');
SELECT expires_at - clock_timestamp() > interval '50 minutes' AS status_shows_it
  FROM idempotency.lease_status('renew-me');
-- A shorter ttl is allowed (the expiry moves earlier).
SELECT status FROM idempotency.lease_renew('renew-me', :'t3', '10 ms');
SELECT pg_sleep(0.05);
-- Strict: an expired lease is lost, although nobody has taken it yet.
SELECT status, expires_at FROM idempotency.lease_renew('renew-me', :'t3');
-- Someone else's token, or an unknown key: lost.
SELECT token AS t4 FROM idempotency.lease_acquire('renew-me') \gset
SELECT status, expires_at FROM idempotency.lease_renew('renew-me', :'t3');
SELECT status, expires_at FROM idempotency.lease_renew('no-such-lease', :'t3');
SELECT status FROM idempotency.lease_renew('renew-me', :'t4');

---------------------------------------------------------------------------
-- Assert: the fencing token when held, 55P03 otherwise.
---------------------------------------------------------------------------
SELECT fencing_token AS f4 FROM idempotency.lease_status('renew-me') \gset
SELECT idempotency.lease_assert('renew-me', :'t4') = :f4 AS assert_returns_fencing_token;
SELECT pg_temp.try(format('SELECT idempotency.lease_assert(%L, %L)', 'renew-me', :'t3'));
SELECT pg_temp.try(format('SELECT idempotency.lease_assert(%L, %L)', 'nobody-holds-this', :'t3'));
SELECT status FROM idempotency.lease_renew('renew-me', :'t4', '10 ms');
SELECT pg_sleep(0.05);
SELECT pg_temp.try(format('SELECT idempotency.lease_assert(%L, %L)', 'renew-me', :'t4'));
SELECT idempotency.lease_release('renew-me', :'t4');
-- lease_assert locks the row: it shows in the transaction's row locks.
SELECT token AS t5 FROM idempotency.lease_acquire('assert-lock') \gset
BEGIN;
SELECT idempotency.lease_assert('assert-lock', :'t5') > 0 AS held;
SELECT xmax = pg_current_xact_id()::xid AS row_locked_by_us
  FROM idempotency.leases WHERE key = 'assert-lock';
COMMIT;
SELECT idempotency.lease_release('assert-lock', :'t5');

---------------------------------------------------------------------------
-- Wait.
---------------------------------------------------------------------------
SELECT token AS t6 FROM idempotency.lease_acquire('busy', ttl => '1 hour') \gset
-- The wait runs out: conflict, after at least the wait.
SELECT clock_timestamp() AS before \gset
SELECT status, token = :'t6' AS holders_token
  FROM idempotency.lease_acquire('busy', wait => '200 ms');
SELECT clock_timestamp() - :'before'::timestamptz >= interval '200 ms' AS waited;
-- A lease that expires during the wait is taken at its expiry.
SELECT idempotency.lease_release('busy', :'t6');
SELECT status FROM idempotency.lease_acquire('busy', ttl => '1 s');
SELECT clock_timestamp() AS before \gset
SELECT status, fencing_token FROM idempotency.lease_acquire('busy', wait => '1 minute');
SELECT clock_timestamp() - :'before'::timestamptz BETWEEN interval '300 ms' AND interval '30 s' AS woke_at_expiry;
SELECT idempotency.lease_release('busy');
-- A free lease is acquired at once, wait or not.
SELECT status FROM idempotency.lease_acquire('busy', wait => '1 minute');
SELECT idempotency.lease_release('busy');

---------------------------------------------------------------------------
-- Bad input.
---------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT idempotency.lease_acquire(NULL)$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire(repeat('k', 1025))$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire(repeat('k', 1024), '1 ms')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('k', NULL)$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('k', '0')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('k', '-5 seconds')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('k', '1 day -25 hours')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('k', '300000 years')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('k', '2147483647 months')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('k', holder => repeat('h', 1025))$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('k', wait => NULL)$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('k', wait => '-1 s')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('k', if_match => 'not-a-uuid')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_renew(NULL, gen_random_uuid())$$);
SELECT pg_temp.try($$SELECT idempotency.lease_renew('k', NULL)$$);
SELECT pg_temp.try($$SELECT idempotency.lease_renew('k', gen_random_uuid(), '0')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_renew('k', 'zzz')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_release(NULL)$$);
SELECT pg_temp.try($$SELECT idempotency.lease_release('')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_release('k', '123')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_status(NULL)$$);
SELECT pg_temp.try($$SELECT idempotency.lease_status('')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_assert('k', NULL)$$);
SELECT pg_temp.try($$SELECT idempotency.lease_assert(NULL, gen_random_uuid())$$);
-- None of the failed calls left a row behind (the 1024-byte key did).
SELECT count(*) FROM idempotency.leases WHERE key = 'k';
SELECT count(*) FROM idempotency.leases WHERE length(key) = 1024;

-- Waiting needs READ COMMITTED: a transaction snapshot never sees the
-- release.  Not waiting works at any isolation level.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('k', wait => '1 s')$$);
SELECT status FROM idempotency.lease_acquire('rr-key');
SELECT idempotency.lease_release('rr-key');
COMMIT;

---------------------------------------------------------------------------
-- Privileges: PUBLIC may use leases through the functions (they are
-- SECURITY INVOKER), but may not delete rows; revoking works as for any
-- table.
---------------------------------------------------------------------------
CREATE ROLE regress_lease_app;
SET ROLE regress_lease_app;
SELECT status, fencing_token > 0 AS fenced FROM idempotency.lease_acquire('app-lease');
SELECT idempotency.lease_release('app-lease');
SELECT pg_temp.try($$DELETE FROM idempotency.leases$$);
SELECT pg_temp.try($$TRUNCATE idempotency.leases$$);
-- Nor read, change or lock the table directly: a forged fencing counter
-- would let a later lease_acquire() hand out a token already issued, and a
-- lock would stall every other role's leases.
SELECT pg_temp.try($$SELECT token FROM idempotency.leases$$);
SELECT pg_temp.try($$UPDATE idempotency.leases SET fencing_token = 1$$);
SELECT pg_temp.try($$UPDATE idempotency.leases SET token = NULL$$);
SELECT pg_temp.try($$INSERT INTO idempotency.leases (key, fencing_token) VALUES ('x', 1)$$);
SELECT pg_temp.try($$LOCK TABLE idempotency.leases IN ACCESS EXCLUSIVE MODE$$);
SELECT pg_temp.try($$LOCK TABLE idempotency.leases IN ROW EXCLUSIVE MODE$$);
RESET ROLE;
-- Who may use leases is decided by EXECUTE on the functions.
REVOKE EXECUTE ON FUNCTION idempotency.lease_acquire(text, interval, text, uuid, interval) FROM PUBLIC;
SET ROLE regress_lease_app;
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('app-lease')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION idempotency.lease_acquire(text, interval, text, uuid, interval) TO PUBLIC;
-- The fencing counter survived the attempts.
SELECT fencing_token FROM idempotency.leases WHERE key = 'app-lease';
DROP ROLE regress_lease_app;

-- The table is dumped with its rows (the fencing counters).
SELECT 'idempotency.leases'::regclass = ANY (extconfig) AS dumped
  FROM pg_extension WHERE extname = 'idempotency';

---------------------------------------------------------------------------
-- The table has no CHECK constraints: the functions validate the rows they
-- read.  A row its owner (here the superuser running the test) broke by
-- hand is refused with XX001 by every function that reads it, and nothing
-- is decided or returned from it.
---------------------------------------------------------------------------
SELECT conname FROM pg_constraint
 WHERE conrelid = 'idempotency.leases'::regclass AND contype = 'c';
SELECT status FROM idempotency.lease_acquire('bad-lease', holder => 'w') \gset bad_
-- Held, but without an expiry.
UPDATE idempotency.leases SET expires_at = NULL WHERE key = 'bad-lease';
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('bad-lease')$$);
-- (lease_status() shows only leases whose expiry is in the future: none.)
SELECT pg_temp.try($$SELECT idempotency.lease_status('bad-lease')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_release('bad-lease', gen_random_uuid())$$);
SELECT pg_temp.try($$SELECT idempotency.lease_assert('bad-lease', gen_random_uuid())$$);
-- Held, but without an acquisition time: lease_status() returns it.
UPDATE idempotency.leases SET expires_at = clock_timestamp() + interval '1 hour',
       acquired_at = NULL WHERE key = 'bad-lease';
SELECT pg_temp.try($$SELECT idempotency.lease_status('bad-lease')$$);
-- A fencing token that is not positive, on a free row: the next acquire
-- would hand out -4.
UPDATE idempotency.leases SET token = NULL, holder = NULL, acquired_at = NULL,
       expires_at = NULL, fencing_token = -5 WHERE key = 'bad-lease';
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('bad-lease')$$);
SELECT token IS NULL AS still_free, fencing_token FROM idempotency.leases WHERE key = 'bad-lease';
-- ... and on a held row, as lease_assert() and lease_status() would return it.
UPDATE idempotency.leases SET fencing_token = 10 WHERE key = 'bad-lease';
SELECT token AS bad_token FROM idempotency.lease_acquire('bad-lease') \gset
UPDATE idempotency.leases SET fencing_token = 0 WHERE key = 'bad-lease';
SELECT pg_temp.try(format($$SELECT idempotency.lease_assert('bad-lease', %L)$$, :'bad_token'));
SELECT pg_temp.try($$SELECT idempotency.lease_status('bad-lease')$$);
-- Corrected by hand, the key works again.
UPDATE idempotency.leases SET fencing_token = 11 WHERE key = 'bad-lease';
SELECT idempotency.lease_release('bad-lease', :'bad_token');
SELECT status, fencing_token FROM idempotency.lease_acquire('bad-lease');

-- Every acquire and release updates its key's row: the table stops taking
-- new rows into a page while a fifth of it is free, room for new versions.
SELECT reloptions FROM pg_class WHERE oid = 'idempotency.leases'::regclass;

TRUNCATE idempotency.leases;
