# mark_processed() against the INSERT ... ON CONFLICT DO NOTHING a careful
# user writes by hand on a table of the same shape (key, ttl column with an
# index for cleanup).  Mostly new keys: the common inbox case.
bench_title "events: mark_processed vs hand-written INSERT ON CONFLICT DO NOTHING"
bench_setup <"$IDEM_ROOT/test/bench/inbox-setup.sql"
bench_setup <<'SQL'
DELETE FROM idempotency.processed_events WHERE scope = 'bench-mark';
SQL
bench_variant ours 1 <<'PGB'
\set k random(1, 9000000000000000000)
SELECT idempotency.mark_processed('evt-' || :k, 'bench-mark');
PGB
bench_variant handwritten 1 <<'PGB'
\set k random(1, 9000000000000000000)
INSERT INTO bench_inbox (scope, key, expires_at)
    VALUES ('bench-mark', 'evt-' || :k, clock_timestamp() + interval '7 days')
    ON CONFLICT DO NOTHING;
PGB
bench_ratio ours handwritten 0.90
bench_run
