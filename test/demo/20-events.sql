-- Processed events and idempotency keys: the webhook that is delivered twice,
-- the payment whose worker dies, and what an HTTP handler answers.

-- Inbox dedup: true the first time, false for the duplicate delivery.
SELECT idempotency.mark_processed('evt_1001', 'stripe') AS first_delivery,
       idempotency.mark_processed('evt_1001', 'stripe') AS second_delivery;

-- Claim / complete in one transaction; the replay gets the stored result.
BEGIN;
SELECT status FROM idempotency.claim('order-77', '{"sku": "A1", "qty": 2}', require_complete => true);
SELECT idempotency.complete('order-77', '{"order_id": 501, "http_status": 201}');
COMMIT;
-- The same request again (keys in another order): a replay of the stored result (HTTP 200/201, Idempotent-Replayed):
SELECT status, result FROM idempotency.claim('order-77', '{"qty": 2, "sku": "A1"}');
-- The same key with a different payload: mismatch (HTTP 422):
SELECT status FROM idempotency.claim('order-77', '{"sku": "A1", "qty": 3}');

-- Forgetting complete() is refused at COMMIT (and the claim is undone).
BEGIN;
SELECT status FROM idempotency.claim('order-78', require_complete => true);
-- The COMMIT below fails ON PURPOSE (ERROR, SQLSTATE 2D000): the claim asked
-- for require_complete and the transaction neither completed nor failed it.
\set ON_ERROR_STOP 0
COMMIT;
\set ON_ERROR_STOP 1
SELECT count(*) AS order_78_records FROM idempotency.processed_events WHERE key = 'order-78';

-- A payment worker claims with a short lease, then "dies".
CREATE TEMP TABLE worker1 AS
    SELECT token, fencing_token FROM idempotency.claim('pay-9', lease => '200 milliseconds');
-- Another worker claims it meanwhile: in_progress (HTTP 409):
SELECT status FROM idempotency.claim('pay-9');
SELECT pg_sleep(0.3);
-- The lease ran out: the next claim takes over with a higher fencing token.
CREATE TEMP TABLE worker2 AS
    SELECT status, attempts, token, fencing_token FROM idempotency.claim('pay-9');
SELECT status, attempts, fencing_token > (SELECT fencing_token FROM worker1) AS higher_fencing FROM worker2;
-- The first worker comes back: its complete is refused, nothing is overwritten.
-- The ERROR below is expected (SQLSTATE 55P03): worker 1's token is stale.
\set ON_ERROR_STOP 0
SELECT idempotency.complete('pay-9', '{"charge": "ch_stale"}', token => (SELECT token FROM worker1));
\set ON_ERROR_STOP 1
SELECT idempotency.complete('pay-9', '{"charge": "ch_2"}', token => (SELECT token FROM worker2));
SELECT status, result, attempts FROM idempotency.claim('pay-9');

-- Housekeeping: purge expired records (schedule it with pg_cron).
SELECT idempotency.purge() AS purged;
SELECT key, status, result FROM idempotency.processed_events ORDER BY key;
