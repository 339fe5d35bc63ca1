# claim + complete in one transaction against the hand-written pattern:
# INSERT ... ON CONFLICT DO NOTHING RETURNING (the claim), then UPDATE with
# the result, on a table of the same shape.  New keys every transaction.
# Both regimes: one client (latency) and CPU saturation (a client per CPU,
# target 0.95 there).
bench_title "events: claim+complete in one transaction vs hand-written claim + UPDATE"
bench_setup <<'SQL'
DROP TABLE IF EXISTS bench_keys;
CREATE TABLE bench_keys (scope text NOT NULL, key text NOT NULL,
    status text NOT NULL, fingerprint bytea, result jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL, PRIMARY KEY (scope, key));
CREATE INDEX ON bench_keys (expires_at);
DELETE FROM idempotency.processed_events WHERE scope = 'bench-claim';
SQL
# (test/bench/claim-complete.pgb is shared with the redis group)
bench_variant ours 1 -D scope=bench-claim <"$IDEM_ROOT/test/bench/claim-complete.pgb"
bench_variant handwritten 1 <<'PGB'
\set k random(1, 9000000000000000000)
BEGIN;
INSERT INTO bench_keys (scope, key, status, fingerprint, expires_at)
    VALUES ('bench-claim', 'req-' || :k, 'in_progress',
            sha256(convert_to('{"amount": 10}'::jsonb::text, 'UTF8')),
            clock_timestamp() + interval '1 day')
    ON CONFLICT DO NOTHING RETURNING status;
UPDATE bench_keys SET status = 'completed', result = '{"ok": true}'
    WHERE scope = 'bench-claim' AND key = 'req-' || :k;
COMMIT;
PGB
bench_regimes latency saturation
bench_ratio ours handwritten 0.90 0.95
bench_run
