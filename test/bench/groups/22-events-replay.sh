# Replay of a completed key (claim() answering 'completed' + result) against
# a plain SELECT of the result by key, as a user writes it (owner is in the
# "C" collation of CURRENT_USER, so this is a search of the primary key).
bench_title "events: replay of a completed key vs plain SELECT by key"
bench_setup <<'SQL'
DELETE FROM idempotency.processed_events WHERE scope = 'bench-replay';
INSERT INTO idempotency.processed_events (scope, key, status, result, expires_at)
    SELECT 'bench-replay', 'req-' || i, 'completed', '{"ok": true}', now() + interval '1 day'
      FROM generate_series(1, 10000) i;
ANALYZE idempotency.processed_events;
SQL
bench_variant ours 1 <<'PGB'
\set k random(1, 10000)
SELECT status, result FROM idempotency.claim('req-' || :k, scope => 'bench-replay');
PGB
bench_variant plain_select 1 <<'PGB'
\set k random(1, 10000)
SELECT status, result FROM idempotency.processed_events
 WHERE owner = current_user AND scope = 'bench-replay' AND key = 'req-' || :k;
PGB
bench_ratio ours plain_select 0.85
bench_run
