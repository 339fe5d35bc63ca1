--
-- Rows written without the executor where nothing else can happen:
-- claim(), mark_processed() and complete()/fail() of a claim of the same
-- transaction on processed_events; lease_acquire() of a known key,
-- lease_renew() and lease_release() on leases.  Whatever the table's owner
-- changed, the rows and errors must be those the statements give: each
-- case below would show a different row, or no error, if the change were
-- made regardless.
--
\set VERBOSITY terse
DELETE FROM idempotency.processed_events;
DELETE FROM idempotency.leases;

-- Has this session prepared the claim's INSERT, mark_processed's INSERT,
-- the finish's UPDATE?  (A saved SPI plan's memory context is named by its
-- statement.)
CREATE TEMP VIEW direct_statements AS
SELECT bool_or(ident LIKE 'INSERT INTO idempotency.processed_events AS p%') AS claim_insert,
       bool_or(ident LIKE 'INSERT INTO idempotency.processed_events (owner%') AS mark_insert,
       bool_or(ident LIKE 'UPDATE ONLY idempotency.processed_events AS p SET status = $5, result = $6, error = $7, updated_at = $8, locked_until = NULL, expires_at = $10%') AS finish_update
  FROM pg_backend_memory_contexts;

-- Claim + complete and claim + fail in one transaction: written directly,
-- neither statement was ever prepared.
BEGIN;
SELECT status, result, attempts, fencing_token > 0 AS fenced
  FROM idempotency.claim('d-1', '{"n": 1}', scope => 'direct');
SELECT idempotency.complete('d-1', '{"ok": true}', scope => 'direct');
SELECT status FROM idempotency.claim('d-2', scope => 'direct');
SELECT idempotency.fail('d-2', '"declined"', retryable => false, scope => 'direct');
COMMIT;
SELECT * FROM direct_statements;
SELECT key, status, result, error, attempts, locked_until IS NULL AS unlocked,
       fingerprint IS NOT NULL AS fingerprinted, token IS NOT NULL AS tokened,
       expires_at > now() + interval '23 hours' AS kept, created_at = updated_at AS untouched
  FROM idempotency.processed_events WHERE scope = 'direct' ORDER BY key;
-- replays
SELECT status, result, error FROM idempotency.claim('d-1', '{"n": 1}', scope => 'direct');
SELECT status, result, error FROM idempotency.claim('d-2', scope => 'direct');
SELECT status FROM idempotency.claim('d-1', '{"n": 2}', scope => 'direct');
-- a fencing token per claim, increasing
BEGIN;
SELECT (SELECT fencing_token FROM idempotency.claim('d-3', scope => 'direct'))
     < (SELECT fencing_token FROM idempotency.claim('d-4', scope => 'direct')) AS increasing;
ROLLBACK;

-- mark_processed of a new key: written directly too; a duplicate's
-- conflict as well (then the statements that tell a duplicate from an
-- expired record run).
SELECT idempotency.mark_processed('m-1', scope => 'direct');
SELECT * FROM direct_statements;
SELECT idempotency.mark_processed('m-1', scope => 'direct');
SELECT key, status, attempts, fingerprint, result, error, token, fencing_token, locked_until,
       created_at = updated_at AS untouched, expires_at > now() + interval '6 days' AS kept
  FROM idempotency.processed_events WHERE scope = 'direct' AND key = 'm-1';

-- Complete after the lease ran out: the record's expiry moves, an indexed
-- column, so the new row version needs entries in every index.
BEGIN;
SELECT status FROM idempotency.claim('d-5', scope => 'direct', lease => '1 millisecond', ttl => '1 hour');
SELECT pg_sleep(0.01);
SELECT n_tup_upd - n_tup_hot_upd AS before_complete FROM pg_stat_xact_user_tables
 WHERE relid = 'idempotency.processed_events'::regclass \gset
SELECT idempotency.complete('d-5', '5', scope => 'direct');
SELECT n_tup_upd - n_tup_hot_upd - :before_complete AS updates_not_hot
  FROM pg_stat_xact_user_tables WHERE relid = 'idempotency.processed_events'::regclass;
COMMIT;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT expires_at AS d5_expires FROM idempotency.processed_events
 WHERE scope = 'direct' AND key = 'd-5' \gset
EXPLAIN (COSTS OFF) SELECT key, status FROM idempotency.processed_events
 WHERE key = 'd-5' AND scope = 'direct' AND owner = current_user;
SELECT key, status, result FROM idempotency.processed_events
 WHERE key = 'd-5' AND scope = 'direct' AND owner = current_user;
PREPARE by_expiry(timestamptz) AS SELECT key, expires_at > now() + interval '59 minutes' AS moved
  FROM idempotency.processed_events WHERE expires_at = $1;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE by_expiry(:'d5_expires');
EXECUTE by_expiry(:'d5_expires');
DEALLOCATE by_expiry;
RESET plan_cache_mode;
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT * FROM direct_statements;

-- What the table's owner may change, and the statements then do.
-- NOT NULL on a column the claim leaves NULL: the INSERT's error.
BEGIN;
DELETE FROM idempotency.processed_events;
ALTER TABLE idempotency.processed_events ALTER COLUMN result SET NOT NULL;
SELECT status FROM idempotency.claim('d-6', scope => 'direct');
ROLLBACK;
SELECT * FROM direct_statements;

-- A default for a column the claim leaves out: the INSERT takes it.
BEGIN;
ALTER TABLE idempotency.processed_events ALTER COLUMN result SET DEFAULT '"preset"';
SELECT status, result FROM idempotency.claim('d-7', scope => 'direct');
SELECT result FROM idempotency.processed_events WHERE scope = 'direct' AND key = 'd-7';
ROLLBACK;

-- A default for a column mark_processed leaves out: its INSERT takes it.
BEGIN;
ALTER TABLE idempotency.processed_events
    ALTER COLUMN token SET DEFAULT '00000000-0000-0000-0000-000000000007';
SELECT idempotency.mark_processed('m-2', scope => 'direct');
SELECT token FROM idempotency.processed_events WHERE scope = 'direct' AND key = 'm-2';
ROLLBACK;

-- A column of the owner's, with a default: the INSERT gives it.
BEGIN;
ALTER TABLE idempotency.processed_events ADD COLUMN note text DEFAULT 'noted';
SELECT status FROM idempotency.claim('d-8', scope => 'direct');
SELECT idempotency.complete('d-8', '8', scope => 'direct');
SELECT status, result, note FROM idempotency.processed_events
 WHERE scope = 'direct' AND key = 'd-8';
ROLLBACK;

-- A stored generated column: the UPDATE computes it again.
BEGIN;
ALTER TABLE idempotency.processed_events
    ADD COLUMN last_result jsonb GENERATED ALWAYS AS (result) STORED;
SELECT status FROM idempotency.claim('d-9', scope => 'direct');
SELECT idempotency.complete('d-9', '9', scope => 'direct');
SELECT status, last_result FROM idempotency.processed_events
 WHERE scope = 'direct' AND key = 'd-9';
ROLLBACK;

-- A type modifier (on a column without a default): the statements round
-- to it.
BEGIN;
ALTER TABLE idempotency.processed_events ALTER COLUMN locked_until TYPE timestamptz(0);
SELECT status FROM idempotency.claim('d-10', scope => 'direct');
SELECT locked_until = date_trunc('second', locked_until) AS lease_rounded
  FROM idempotency.processed_events WHERE scope = 'direct' AND key = 'd-10';
ROLLBACK;
BEGIN;
ALTER TABLE idempotency.processed_events ALTER COLUMN expires_at TYPE timestamptz(0);
SELECT status FROM idempotency.claim('d-10', scope => 'direct');
SELECT idempotency.complete('d-10', '10', scope => 'direct');
SELECT expires_at = date_trunc('second', expires_at) AS expiry_rounded
  FROM idempotency.processed_events WHERE scope = 'direct' AND key = 'd-10';
ROLLBACK;

-- An identity column: the INSERT's error for the value it gives.
BEGIN;
ALTER TABLE idempotency.processed_events ALTER COLUMN attempts DROP DEFAULT,
    ALTER COLUMN attempts ADD GENERATED ALWAYS AS IDENTITY;
SELECT status FROM idempotency.claim('d-11', scope => 'direct');
ROLLBACK;

-- A publication of the table's updates without a replica identity: the
-- UPDATE's error.
BEGIN;
SET LOCAL client_min_messages = error;
CREATE PUBLICATION direct_pub FOR TABLE idempotency.processed_events;
ALTER TABLE idempotency.processed_events REPLICA IDENTITY NOTHING;
SELECT status FROM idempotency.claim('d-12', scope => 'direct');
SELECT idempotency.complete('d-12', '12', scope => 'direct');
ROLLBACK;

-- An owner that is not a superuser: row security forced on it, with a
-- policy that calls nothing, and its own privileges taken away.
CREATE ROLE regress_direct_owner;
BEGIN;
ALTER TABLE idempotency.processed_events OWNER TO regress_direct_owner;
ALTER SEQUENCE idempotency.processed_events_fencing_seq OWNER TO regress_direct_owner;
ALTER TABLE idempotency.processed_events FORCE ROW LEVEL SECURITY;
CREATE POLICY direct_all ON idempotency.processed_events USING (true) WITH CHECK (true);
CREATE POLICY direct_no_insert ON idempotency.processed_events AS RESTRICTIVE
    FOR INSERT WITH CHECK (false);
SELECT status FROM idempotency.claim('d-13', scope => 'direct');
ROLLBACK;
BEGIN;
ALTER TABLE idempotency.processed_events OWNER TO regress_direct_owner;
ALTER SEQUENCE idempotency.processed_events_fencing_seq OWNER TO regress_direct_owner;
ALTER TABLE idempotency.processed_events FORCE ROW LEVEL SECURITY;
CREATE POLICY direct_all ON idempotency.processed_events USING (true) WITH CHECK (true);
CREATE POLICY direct_no_update ON idempotency.processed_events AS RESTRICTIVE
    FOR UPDATE USING (true) WITH CHECK (false);
SELECT status FROM idempotency.claim('d-14', scope => 'direct');
SELECT idempotency.complete('d-14', '14', scope => 'direct');
ROLLBACK;
BEGIN;
ALTER TABLE idempotency.processed_events OWNER TO regress_direct_owner;
ALTER SEQUENCE idempotency.processed_events_fencing_seq OWNER TO regress_direct_owner;
REVOKE INSERT ON idempotency.processed_events FROM regress_direct_owner;
SELECT status FROM idempotency.claim('d-15', scope => 'direct');
ROLLBACK;
BEGIN;
ALTER TABLE idempotency.processed_events OWNER TO regress_direct_owner;
ALTER SEQUENCE idempotency.processed_events_fencing_seq OWNER TO regress_direct_owner;
REVOKE UPDATE ON idempotency.processed_events FROM regress_direct_owner;
SELECT status FROM idempotency.claim('d-16', scope => 'direct');
SELECT idempotency.complete('d-16', '16', scope => 'direct');
ROLLBACK;
DROP ROLE regress_direct_owner;

-- The owner's changes are gone with their transactions; the cases above
-- ran both statements.
BEGIN;
SELECT status FROM idempotency.claim('d-17', scope => 'direct');
SELECT idempotency.complete('d-17', '17', scope => 'direct');
COMMIT;
SELECT key, status, result FROM idempotency.processed_events
 WHERE scope = 'direct' AND key = 'd-17';
SELECT * FROM direct_statements;

DELETE FROM idempotency.processed_events;

-- Leases.  Has this session prepared the acquire's, renew's or release's
-- UPDATE?
CREATE TEMP VIEW lease_statements AS
SELECT bool_or(ident LIKE 'UPDATE ONLY idempotency.leases SET token = $2%') AS take,
       bool_or(ident LIKE 'UPDATE ONLY idempotency.leases SET expires_at = $3%') AS renew,
       bool_or(ident LIKE 'UPDATE ONLY idempotency.leases SET token = NULL%') AS release
  FROM pg_backend_memory_contexts;

-- A key seen before: acquired, renewed, released and acquired again
-- directly (a new key's first acquire inserts through its statement).
SELECT status, fencing_token FROM idempotency.lease_acquire('l-1', holder => 'a');
SELECT idempotency.lease_release('l-1');
SELECT status, fencing_token, holder FROM idempotency.lease_acquire('l-1', ttl => '1 minute', holder => 'b');
SELECT status FROM idempotency.lease_acquire('l-1', holder => 'c');
SELECT status, expires_at > now() + interval '50 minutes' AS renewed
  FROM idempotency.lease_renew('l-1', (SELECT token FROM idempotency.leases WHERE key = 'l-1'), '1 hour');
SELECT status FROM idempotency.lease_renew('l-1', gen_random_uuid(), '1 hour');
SELECT idempotency.lease_release('l-1', gen_random_uuid());
SELECT status, fencing_token, holder
  FROM idempotency.lease_acquire('l-1', holder => 'd',
           if_match => (SELECT token FROM idempotency.leases WHERE key = 'l-1'));
SELECT idempotency.lease_release('l-1', (SELECT token FROM idempotency.leases WHERE key = 'l-1'));
SELECT idempotency.lease_release('l-1');
SELECT key, token IS NULL AS free, fencing_token, holder, acquired_at, expires_at
  FROM idempotency.leases;
SELECT * FROM lease_statements;

-- The owner's changes: a NOT NULL constraint the acquire would break.
BEGIN;
UPDATE idempotency.leases SET holder = 'kept';
ALTER TABLE idempotency.leases ALTER COLUMN holder SET NOT NULL;
SELECT status FROM idempotency.lease_acquire('l-1');
ROLLBACK;

-- The last fencing token: the statement's overflow error.
BEGIN;
UPDATE idempotency.leases SET fencing_token = 9223372036854775807;
SELECT status FROM idempotency.lease_acquire('l-1');
ROLLBACK;

-- A stored generated column, a type modifier.
BEGIN;
ALTER TABLE idempotency.leases
    ADD COLUMN last_fencing int8 GENERATED ALWAYS AS (fencing_token) STORED;
SELECT status, fencing_token FROM idempotency.lease_acquire('l-1');
SELECT fencing_token, last_fencing FROM idempotency.leases WHERE key = 'l-1';
ROLLBACK;
BEGIN;
ALTER TABLE idempotency.leases ALTER COLUMN acquired_at TYPE timestamptz(0);
SELECT status FROM idempotency.lease_acquire('l-1');
SELECT acquired_at = date_trunc('second', acquired_at) AS rounded FROM idempotency.leases WHERE key = 'l-1';
ROLLBACK;

-- A publication of the table's updates without a replica identity.
BEGIN;
SET LOCAL client_min_messages = error;
CREATE PUBLICATION direct_pub FOR TABLE idempotency.leases;
ALTER TABLE idempotency.leases REPLICA IDENTITY NOTHING;
SELECT status FROM idempotency.lease_acquire('l-1');
ROLLBACK;
SELECT * FROM lease_statements;

DELETE FROM idempotency.leases;

-- A claim finished in its own transaction updates its row through the
-- row's address; the page is pruned first, as an UPDATE that finds the row
-- through an index prunes it: the versions every snapshot sees as dead
-- leave the page, and the table does not keep one per update until VACUUM
-- (without the pruning, about half of its row versions would be dead ones).
-- Autovacuum, which would remove them too, is kept off the table meanwhile.
DELETE FROM idempotency.processed_events;
ALTER TABLE idempotency.processed_events SET (autovacuum_enabled = false);
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        PERFORM idempotency.claim('prune-' || i, scope => 'prune');
        PERFORM idempotency.complete('prune-' || i, '{"ok": true}', scope => 'prune');
        COMMIT;
    END LOOP;
END $$;
-- The pages holding the rows against those the rows would fill: 1.0 to
-- 1.25 when pruned, about 2 when not.
SELECT count(*) AS completed,
       count(DISTINCT (ctid::text::point)[0]) /
           ceil(sum(pg_column_size(p.*) + 4) / (current_setting('block_size')::int - 24))
           BETWEEN 1.0 AND 1.25 AS pruned
  FROM idempotency.processed_events p WHERE scope = 'prune' AND status = 'completed';
ALTER TABLE idempotency.processed_events RESET (autovacuum_enabled);
DELETE FROM idempotency.processed_events;
