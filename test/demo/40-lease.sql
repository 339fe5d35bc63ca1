-- Durable leases: a lock that outlives the transaction and the connection,
-- with an ETag-like token and a fencing token.  An HTTP lock service, as
-- SQL:  POST = lease_acquire, DELETE = lease_release, GET = lease_status.

-- POST /api/nightly-report  -> 201 (acquired)
SELECT status, token, fencing_token, holder, expires_at - acquired_at AS ttl
  FROM idempotency.lease_acquire('nightly-report', ttl => '5 minutes', holder => 'worker-a') \gset a_
\echo status=:a_status token=:a_token fencing_token=:a_fencing_token

-- POST again from another worker -> 409 (conflict): the row is the holder's lease.
SELECT status, token, fencing_token, holder
  FROM idempotency.lease_acquire('nightly-report', holder => 'worker-b');

-- GET -> 200 (one row) ...
SELECT holder, fencing_token, expires_at > now() AS live
  FROM idempotency.lease_status('nightly-report');

-- Heartbeat: extend it while the job runs.
SELECT status FROM idempotency.lease_renew('nightly-report', :'a_token', '10 minutes');

-- Fencing against another store: every write carries the fencing token,
-- and the store refuses tokens older than the newest it has seen.
CREATE TABLE report_output (id int PRIMARY KEY, body text, fencing_token bigint NOT NULL);
INSERT INTO report_output VALUES (1, 'draft', 0);

-- worker-a writes with its token (inside the database: lease_assert checks
-- the lease and locks it until COMMIT, so no takeover can slip in between).
BEGIN;
UPDATE report_output SET body = 'written by worker-a',
       fencing_token = idempotency.lease_assert('nightly-report', :'a_token')
 WHERE id = 1 AND fencing_token < idempotency.lease_assert('nightly-report', :'a_token');
COMMIT;

-- worker-a stalls (GC pause, network partition); its lease is handed over
-- with If-Match to worker-b, which gets fencing token 2.
SELECT status, token, fencing_token, holder
  FROM idempotency.lease_acquire('nightly-report', holder => 'worker-b', if_match => :'a_token') \gset b_
\echo status=:b_status fencing_token=:b_fencing_token

-- worker-b writes with fencing token 2.
UPDATE report_output SET body = 'written by worker-b', fencing_token = :b_fencing_token
 WHERE id = 1 AND fencing_token < :b_fencing_token;

-- worker-a wakes up and tries to write again: lease_assert refuses (55P03)...
-- The ERROR below is expected: worker-a's lease was handed over.
\set ON_ERROR_STOP 0
SELECT idempotency.lease_assert('nightly-report', :'a_token');
\set ON_ERROR_STOP 1
-- ... and a store outside the database would reject its token 1 < 2:
UPDATE report_output SET body = 'stale write by worker-a', fencing_token = :a_fencing_token
 WHERE id = 1 AND fencing_token < :a_fencing_token;
SELECT * FROM report_output;

-- DELETE with a stale ETag -> 412; with the current one -> 204; again -> 404.
SELECT idempotency.lease_release('nightly-report', :'a_token');
SELECT idempotency.lease_release('nightly-report', :'b_token');
SELECT idempotency.lease_release('nightly-report');

-- Expiry: a holder that dies simply stops renewing.  Waiting acquires sleep
-- until the lease is released or expires (no polling).
SELECT status, fencing_token FROM idempotency.lease_acquire('nightly-report', ttl => '1 second', holder => 'dies');
SELECT status, fencing_token, holder
  FROM idempotency.lease_acquire('nightly-report', holder => 'worker-c', wait => '10 seconds');
SELECT idempotency.lease_release('nightly-report');

-- The table: one row per key, kept after release for the fencing counter.
SELECT key, token IS NULL AS free, fencing_token FROM idempotency.leases;
DROP TABLE report_output;
