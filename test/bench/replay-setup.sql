-- 10,000 completed records of scope bench-replay, keys req-1 .. req-10000
-- (events-replay group and test/bench/instructions).
DELETE FROM idempotency.processed_events WHERE scope = 'bench-replay';
INSERT INTO idempotency.processed_events (scope, key, status, result, expires_at)
    SELECT 'bench-replay', 'req-' || i, 'completed', '{"ok": true}', now() + interval '1 day'
      FROM generate_series(1, 10000) i;
ANALYZE idempotency.processed_events;
