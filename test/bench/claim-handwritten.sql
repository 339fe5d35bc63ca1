-- The table of the hand-written claim + complete (claim-handwritten.pgb),
-- the shape of idempotency.processed_events' columns that the pair uses.
DROP TABLE IF EXISTS bench_keys;
CREATE TABLE bench_keys (scope text NOT NULL, key text NOT NULL,
    status text NOT NULL, fingerprint bytea, result jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL, PRIMARY KEY (scope, key));
CREATE INDEX ON bench_keys (expires_at);
