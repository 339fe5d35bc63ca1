-- The table of the hand-written mark_processed (events-mark group and
-- test/bench/instructions): an inbox keyed by (scope, key), with a ttl
-- column indexed for cleanup.
DROP TABLE IF EXISTS bench_inbox;
CREATE TABLE bench_inbox (scope text NOT NULL, key text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL, PRIMARY KEY (scope, key));
CREATE INDEX ON bench_inbox (expires_at);
