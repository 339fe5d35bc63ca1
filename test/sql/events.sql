-- processed_events: every status and error of mark_processed, claim,
-- complete, fail, forget and purge.

-- Error details name fencing tokens: start the sequence afresh so that the
-- expected output does not depend on the tests that ran before.
SELECT setval('idempotency.processed_events_fencing_seq', 1, false);

-- A compact view of claim()'s answer without its random parts.
CREATE FUNCTION pg_temp.c(k text, p jsonb DEFAULT NULL, s text DEFAULT '',
                          lease interval DEFAULT '5 minutes',
                          ttl interval DEFAULT '24 hours',
                          rc boolean DEFAULT false)
RETURNS TABLE (status text, result jsonb, error jsonb, has_token boolean,
               attempts int)
LANGUAGE sql AS $$
    SELECT status, result, error, token IS NOT NULL, attempts
      FROM idempotency.claim(k, p, s, lease, ttl, '0', rc)
$$;

-- mark_processed: true the first time, false for a duplicate
SELECT idempotency.mark_processed('evt-1') AS first,
       idempotency.mark_processed('evt-1') AS duplicate,
       idempotency.mark_processed('evt-1', 'other-scope') AS other_scope;
-- a rolled-back first attempt leaves the key free
BEGIN;
SELECT idempotency.mark_processed('evt-2');
ROLLBACK;
SELECT idempotency.mark_processed('evt-2') AS after_rollback;
-- an expired record counts as absent and is replaced
SELECT idempotency.mark_processed('evt-3', '', '1 millisecond');
SELECT pg_sleep(0.05);
SELECT idempotency.mark_processed('evt-3') AS after_expiry,
       idempotency.mark_processed('evt-3') AS then_duplicate;
SELECT status, expires_at > now() + interval '6 days' AS new_ttl
  FROM idempotency.processed_events WHERE key = 'evt-3';

-- claim / complete / replay
SELECT * FROM pg_temp.c('order-1', '{"amount": 10, "currency": "EUR"}');
SELECT * FROM pg_temp.c('order-1', '{"amount": 10, "currency": "EUR"}');  -- in_progress
SELECT idempotency.complete('order-1', '{"charge": "ch_1"}',
       token => (SELECT token FROM idempotency.processed_events WHERE key = 'order-1'));
-- the payload's canonical form is fingerprinted: key order and spacing do not matter
SELECT * FROM pg_temp.c('order-1', '{"currency":"EUR",  "amount":10}');   -- completed
SELECT * FROM pg_temp.c('order-1');                                       -- no payload: no check
SELECT * FROM pg_temp.c('order-1', '{"amount": 11, "currency": "EUR"}');  -- mismatch
SELECT status, result, token IS NULL AS no_token, fencing_token IS NOT NULL AS has_fencing,
       expires_at > now() + interval '23 hours' AS ttl_from_completion
  FROM idempotency.claim('order-1');

-- complete twice, of a key never claimed, with the wrong token
SELECT idempotency.complete('order-1', '{}',
       token => (SELECT token FROM idempotency.processed_events WHERE key = 'order-1'));
SELECT idempotency.complete('never-claimed', '{}', token => gen_random_uuid());
SELECT idempotency.complete('never-claimed');
SELECT * FROM pg_temp.c('order-2');
SELECT idempotency.complete('order-2', '{}', token => gen_random_uuid());
-- without a token only a claim of the same transaction can be finished
SELECT idempotency.complete('order-2', '{}');
SELECT status FROM idempotency.processed_events WHERE key = 'order-2';

-- in one transaction: claim, work, complete (no token needed)
BEGIN;
SELECT * FROM pg_temp.c('order-3');
SELECT idempotency.complete('order-3', '{"ok": true}');
SELECT idempotency.complete('order-3', '{"ok": true}');                   -- twice
ROLLBACK;
BEGIN;
SELECT * FROM pg_temp.c('order-3');
SELECT idempotency.complete('order-3', '{"ok": true}');
COMMIT;
SELECT * FROM pg_temp.c('order-3');

-- fail: retryable frees the key (attempts start again), non-retryable is replayed
SELECT * FROM pg_temp.c('pay-1');
SELECT idempotency.fail('pay-1', '{"code": "timeout"}', true,
       token => (SELECT token FROM idempotency.processed_events WHERE key = 'pay-1'));
SELECT count(*) FROM idempotency.processed_events WHERE key = 'pay-1';
BEGIN;
SELECT * FROM pg_temp.c('pay-1');
SELECT idempotency.fail('pay-1', '{"code": "card_declined"}', retryable => false);
COMMIT;
SELECT * FROM pg_temp.c('pay-1');
SELECT idempotency.fail('pay-1', '{}', false,
       token => (SELECT token FROM idempotency.processed_events WHERE key = 'pay-1'));
SELECT idempotency.complete('pay-1', '{}',
       token => (SELECT token FROM idempotency.processed_events WHERE key = 'pay-1'));

-- lease takeover: attempts + 1, new token, higher fencing token; the stale
-- token is refused and never overwrites
CREATE TEMP TABLE first_claim AS
    SELECT * FROM idempotency.claim('job-1', lease => '10 milliseconds');
SELECT pg_sleep(0.05);
CREATE TEMP TABLE second_claim AS SELECT * FROM idempotency.claim('job-1');
SELECT s.status, s.attempts, s.token <> f.token AS new_token,
       s.fencing_token > f.fencing_token AS higher_fencing
  FROM first_claim f, second_claim s;
SELECT idempotency.complete('job-1', '{"by": "stale"}', token => (SELECT token FROM first_claim));
SELECT idempotency.fail('job-1', '{"by": "stale"}', false, token => (SELECT token FROM first_claim));
SELECT idempotency.fail('job-1', '{"by": "stale"}', true, token => (SELECT token FROM first_claim));
SELECT idempotency.complete('job-1', '{"by": "second"}', token => (SELECT token FROM second_claim));
SELECT idempotency.complete('job-1', '{"by": "stale"}', token => (SELECT token FROM first_claim));
SELECT status, result FROM idempotency.claim('job-1');
-- a lease that ran out with nobody taking over can still be completed
CREATE TEMP TABLE third_claim AS
    SELECT * FROM idempotency.claim('job-2', lease => '10 milliseconds');
SELECT pg_sleep(0.05);
SELECT idempotency.complete('job-2', '"late but first"', token => (SELECT token FROM third_claim));
SELECT status, result FROM idempotency.claim('job-2');
DROP TABLE first_claim, second_claim, third_claim;

-- require_complete: a claim left open refuses the commit
BEGIN;
SELECT * FROM pg_temp.c('rc-1', rc => true);
COMMIT;
SELECT count(*) AS rolled_back FROM idempotency.processed_events WHERE key = 'rc-1';
BEGIN;
SELECT * FROM pg_temp.c('rc-1', rc => true);
SELECT idempotency.fail('rc-1', '{"e": 1}', false);
COMMIT;
SELECT status, error FROM idempotency.processed_events WHERE key = 'rc-1';
-- a claim rolled back to a savepoint is no longer required
BEGIN;
SAVEPOINT s;
SELECT * FROM pg_temp.c('rc-2', rc => true);
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT count(*) FROM idempotency.processed_events WHERE key = 'rc-2';
-- a complete rolled back to a savepoint no longer counts
BEGIN;
SELECT * FROM pg_temp.c('rc-3', rc => true);
SAVEPOINT s;
SELECT idempotency.complete('rc-3', '1');
ROLLBACK TO SAVEPOINT s;
COMMIT;
-- a claim and complete in a released savepoint count for the transaction
BEGIN;
SAVEPOINT s;
SELECT * FROM pg_temp.c('rc-3', rc => true);
SAVEPOINT t;
SELECT idempotency.complete('rc-3', '2');
RELEASE SAVEPOINT t;
RELEASE SAVEPOINT s;
COMMIT;
SELECT status, result FROM idempotency.processed_events WHERE key = 'rc-3';
-- forget also ends the requirement
BEGIN;
SELECT * FROM pg_temp.c('rc-4', rc => true);
SELECT idempotency.forget('rc-4');
COMMIT;

-- complete of a claim made in the same transaction: the stored expiry is
-- the claim's lease end + ttl within the lease, completion time + ttl after
-- it; a token of that claim works, another token is stale
BEGIN;
CREATE TEMP TABLE tx_claim AS
    SELECT * FROM idempotency.claim('tx-1', lease => '1 hour', ttl => '1 day');
SELECT idempotency.complete('tx-1', '"a"', token => (SELECT token FROM tx_claim));
SELECT p.status, p.result, p.expires_at = c.expires_at + interval '1 day' AS lease_end_plus_ttl
    FROM idempotency.processed_events p, tx_claim c WHERE p.key = 'tx-1';
DROP TABLE tx_claim;
COMMIT;
BEGIN;
SELECT status FROM idempotency.claim('tx-2', lease => '1 millisecond', ttl => '1 day');
SELECT pg_sleep(0.01);
SELECT idempotency.complete('tx-2', '"b"');
SELECT status, result, expires_at - updated_at AS ttl_from_completion
    FROM idempotency.processed_events WHERE key = 'tx-2';
COMMIT;
BEGIN;
SELECT status FROM idempotency.claim('tx-3');
SELECT idempotency.complete('tx-3', '"c"', token => gen_random_uuid());
ROLLBACK;
-- the row changed in the same transaction since the claim (here by its
-- owner, by hand), or a complete rolled back to a savepoint: complete
-- still finds it
BEGIN;
SELECT status FROM idempotency.claim('tx-4');
UPDATE idempotency.processed_events SET attempts = attempts WHERE key = 'tx-4';
SELECT idempotency.complete('tx-4', '"d"');
SELECT status, result FROM idempotency.processed_events WHERE key = 'tx-4';
COMMIT;
BEGIN;
SELECT status FROM idempotency.claim('tx-5');
SAVEPOINT s;
SELECT idempotency.complete('tx-5', '"first"');
ROLLBACK TO SAVEPOINT s;
SELECT idempotency.fail('tx-5', '"second"', false);
SELECT status, result, error FROM idempotency.processed_events WHERE key = 'tx-5';
COMMIT;

-- forget
SELECT idempotency.forget('order-3') AS forgotten, idempotency.forget('order-3') AS again;
SELECT * FROM pg_temp.c('order-3');

-- ttl: after expiry a key is new again; purge deletes expired rows only
SELECT * FROM pg_temp.c('short-1', lease => '1 millisecond', ttl => '1 millisecond');
SELECT idempotency.complete('short-1', '"old"',
       token => (SELECT token FROM idempotency.processed_events WHERE key = 'short-1'));
SELECT idempotency.mark_processed('short-2', '', '1 millisecond');
SELECT idempotency.mark_processed('short-3', '', '1 millisecond');
SELECT pg_sleep(0.05);
SELECT * FROM pg_temp.c('short-1');                                       -- new again
SELECT count(*) AS expired_rows FROM idempotency.processed_events WHERE expires_at <= clock_timestamp();
SELECT idempotency.purge(1) AS purged;
SELECT count(*) AS expired_rows FROM idempotency.processed_events WHERE expires_at <= clock_timestamp();
SELECT idempotency.purge() AS purged_again;
SELECT idempotency.purge(0);
SELECT idempotency.purge(NULL);

-- bad input: clear errors, never a crash
SELECT idempotency.mark_processed(NULL);
SELECT idempotency.mark_processed('');
SELECT idempotency.mark_processed('k', NULL);
SELECT idempotency.mark_processed('k', '', NULL);
SELECT idempotency.mark_processed('k', '', '-1 day');
SELECT idempotency.mark_processed('k', '', '0');
SELECT idempotency.mark_processed(repeat('x', 10 * 1024 * 1024));
SELECT idempotency.mark_processed('k', repeat('s', 10 * 1024 * 1024));
SELECT idempotency.mark_processed(repeat('x', 1024)) AS longest_key_ok;
SELECT * FROM idempotency.claim(repeat('x', 1025));
SELECT * FROM idempotency.claim(NULL);
SELECT * FROM idempotency.claim('');
SELECT * FROM idempotency.claim('k', scope => NULL);
SELECT * FROM idempotency.claim('k', scope => repeat('s', 10 * 1024 * 1024));
SELECT * FROM idempotency.claim('k', '[1, 2]');
SELECT * FROM idempotency.claim('k', '"text"');
SELECT * FROM idempotency.claim('k', 'null');
SELECT * FROM idempotency.claim('k', lease => NULL);
SELECT * FROM idempotency.claim('k', lease => '-5 minutes');
SELECT * FROM idempotency.claim('k', lease => '0');
SELECT * FROM idempotency.claim('k', ttl => NULL);
SELECT * FROM idempotency.claim('k', ttl => '-1 hour');
SELECT * FROM idempotency.claim('k', wait => NULL);
SELECT * FROM idempotency.claim('k', wait => '-1 second');
SELECT * FROM idempotency.claim('k', require_complete => NULL);
SELECT * FROM idempotency.claim('k', wait => '100000000 years');
SELECT * FROM idempotency.claim('k', ttl => '2147483647 months');
SELECT idempotency.mark_processed('k', '', '-178000000 years');
SELECT idempotency.complete(NULL);
SELECT idempotency.complete('k', scope => NULL);
SELECT idempotency.fail('k', retryable => NULL);
SELECT idempotency.fail('', '{}');
SELECT idempotency.forget(NULL);
SELECT idempotency.forget(repeat('x', 10 * 1024 * 1024));
-- A claim cannot wait under REPEATABLE READ or SERIALIZABLE: the
-- snapshot would never show the other claim end (0A000); without a wait
-- it runs.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM idempotency.claim('k', wait => '1 second');
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT * FROM idempotency.claim('k', wait => '1 second');
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT status FROM idempotency.claim('k', wait => '0');
ROLLBACK;
SELECT count(*) AS nothing_stored_by_bad_calls FROM idempotency.processed_events WHERE key IN ('k', '');

-- A status the functions never write (no CHECK constraint; the owner
-- inserted it by hand) is refused, on the claim's lookup and on
-- complete's, and forget still deletes the row.
INSERT INTO idempotency.processed_events (scope, key, status, expires_at)
    VALUES ('bad', 'bad-status', 'done', now() + interval '1 day');
SELECT status FROM idempotency.claim('bad-status', scope => 'bad');
SELECT idempotency.complete('bad-status', '1', 'bad', gen_random_uuid());
SELECT idempotency.forget('bad-status', 'bad');

-- Reading one's own record the way users write it is a search of the
-- primary key on all three columns: owner compares in the collation of
-- CURRENT_USER (a name, "C"); in the database's it would be a filter.
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT status, result FROM idempotency.processed_events
 WHERE owner = current_user AND scope = 's' AND key = 'k';
RESET enable_seqscan;
SELECT collation_name FROM information_schema.columns
 WHERE table_schema = 'idempotency' AND table_name = 'processed_events'
   AND column_name = 'owner';
-- The key leads the primary key: a search compares one column per entry
-- (most records share owner and scope), and a statement that finds rows by
-- key alone (purge's DELETE on Citus) searches the index.
SELECT pg_catalog.pg_get_indexdef('idempotency.processed_events_pkey'::regclass);

-- clean up
SELECT count(*) > 0 AS had_rows FROM idempotency.processed_events;
DELETE FROM idempotency.processed_events;

-- A second claim of a key this transaction claimed answers in_progress at
-- once, whatever its wait: nobody else can end the first claim.
BEGIN;
SELECT status FROM idempotency.claim('own-wait', lease => '1 hour');
SELECT clock_timestamp() AS own_t0 \gset
SELECT status FROM idempotency.claim('own-wait', wait => '5 seconds');
SELECT clock_timestamp() - :'own_t0'::timestamptz < interval '2 seconds' AS answered_at_once;
ROLLBACK;
