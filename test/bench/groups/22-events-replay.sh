# Replay of a completed key (claim() answering 'completed' + result) against
# a plain SELECT of the result by key, as a user writes it (owner is in the
# "C" collation of CURRENT_USER, so this is a search of the primary key).
bench_title "events: replay of a completed key vs plain SELECT by key"
bench_setup <"$IDEM_ROOT/test/bench/replay-setup.sql"
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
