-- processed_events: records belong to their owning role.
SELECT setval('idempotency.processed_events_fencing_seq', 100, false);
CREATE ROLE regress_ev_alice;
CREATE ROLE regress_ev_bob;
CREATE ROLE regress_ev_admin IN ROLE regress_ev_alice;   -- a member of alice

SET ROLE regress_ev_alice;
CREATE TEMP TABLE alice_claim AS
    SELECT * FROM idempotency.claim('shared-key', '{"who": "alice"}');
SELECT status, attempts FROM alice_claim;
SELECT idempotency.mark_processed('alice-event');
GRANT SELECT ON alice_claim TO regress_ev_bob;

-- bob uses the same key: no collision, no mismatch, nothing to learn
SET ROLE regress_ev_bob;
SELECT status FROM idempotency.claim('shared-key', '{"who": "bob"}');
SELECT idempotency.mark_processed('alice-event') AS bob_first_time;
-- bob cannot read alice's records ...
SELECT owner, key, status FROM idempotency.processed_events ORDER BY owner::text, key;
-- ... nor complete, fail or forget them, even with her token
SELECT idempotency.complete('shared-key', '"bob"', token => (SELECT token FROM alice_claim));
SELECT idempotency.fail('shared-key', '"bob"', false, token => (SELECT token FROM alice_claim));
SELECT idempotency.forget('alice-event') AS forgot, idempotency.forget('alice-event') AS again;
-- ... nor change them with plain SQL, nor plant rows in her name
UPDATE idempotency.processed_events SET result = '"bob"' WHERE owner = 'regress_ev_alice';
DELETE FROM idempotency.processed_events WHERE owner = 'regress_ev_alice';
INSERT INTO idempotency.processed_events (owner, scope, key, status, expires_at)
    VALUES ('regress_ev_alice', '', 'planted', 'completed', now() + '1 day');
-- purge only reaches the caller's own expired rows
SELECT idempotency.purge();

-- a member of alice may read her records
SET ROLE regress_ev_admin;
SELECT owner, key, status FROM idempotency.processed_events ORDER BY owner::text, key;
-- ... but not rewrite them (a forged result would be replayed to alice)
UPDATE idempotency.processed_events SET result = '"forged"' WHERE owner = 'regress_ev_alice';
-- nor lock the table against other roles' claims, nor draw fencing tokens
BEGIN;
LOCK TABLE idempotency.processed_events IN ACCESS EXCLUSIVE MODE;
ROLLBACK;
BEGIN;
LOCK TABLE idempotency.processed_events IN ROW EXCLUSIVE MODE;
ROLLBACK;
SELECT nextval('idempotency.processed_events_fencing_seq');

-- alice's records are intact, and she completes with her token
SET ROLE regress_ev_alice;
SELECT idempotency.complete('shared-key', '"alice"', token => (SELECT token FROM alice_claim));
SELECT owner, key, status, result FROM idempotency.processed_events ORDER BY owner::text, key;

RESET ROLE;
SELECT owner, key, status FROM idempotency.processed_events ORDER BY owner::text, key;
DELETE FROM idempotency.processed_events;
DROP TABLE alice_claim;

-- The functions run as the table's owner, which each backend keeps in a
-- cache: a new owner takes effect at once.  A trigger shows the role the
-- statements run as.
CREATE ROLE regress_ev_own1;
CREATE ROLE regress_ev_own2;
CREATE FUNCTION regress_ev_who() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN
        RAISE NOTICE 'inserting as %', CASE WHEN current_user LIKE 'regress_ev_own%'
            THEN current_user::text ELSE 'the installer' END;
        RETURN NEW;
    END $$;
CREATE TRIGGER regress_ev_who BEFORE INSERT ON idempotency.processed_events
    FOR EACH ROW EXECUTE FUNCTION regress_ev_who();
SELECT idempotency.mark_processed('owner-change-0');
ALTER TABLE idempotency.processed_events OWNER TO regress_ev_own1;
ALTER SEQUENCE idempotency.processed_events_fencing_seq OWNER TO regress_ev_own1;
SELECT idempotency.mark_processed('owner-change-1');
ALTER TABLE idempotency.processed_events OWNER TO regress_ev_own2;
ALTER SEQUENCE idempotency.processed_events_fencing_seq OWNER TO regress_ev_own2;
SELECT status FROM idempotency.claim('owner-change-2');
SELECT key, status FROM idempotency.processed_events WHERE key LIKE 'owner-change-%' ORDER BY key;
ALTER TABLE idempotency.processed_events OWNER TO CURRENT_USER;
ALTER SEQUENCE idempotency.processed_events_fencing_seq OWNER TO CURRENT_USER;
DROP TRIGGER regress_ev_who ON idempotency.processed_events;
DROP FUNCTION regress_ev_who();
DELETE FROM idempotency.processed_events;
DROP ROLE regress_ev_own1, regress_ev_own2;
DROP ROLE regress_ev_admin, regress_ev_alice, regress_ev_bob;
