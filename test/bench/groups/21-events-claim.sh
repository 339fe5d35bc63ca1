# claim + complete in one transaction against the hand-written pattern:
# INSERT ... ON CONFLICT DO NOTHING RETURNING (the claim), then UPDATE with
# the result, on a table of the same shape.  New keys every transaction.
# Both regimes: one client (latency) and CPU saturation (a client per CPU,
# target 0.95 there).
bench_title "events: claim+complete in one transaction vs hand-written claim + UPDATE"
bench_setup <"$IDEM_ROOT/test/bench/claim-handwritten.sql"
bench_setup <<'SQL'
DELETE FROM idempotency.processed_events WHERE scope = 'bench-claim';
SQL
# (test/bench/claim-complete.pgb and claim-handwritten.pgb are shared with
# the redis group)
bench_variant ours 1 -D scope=bench-claim <"$IDEM_ROOT/test/bench/claim-complete.pgb"
bench_variant handwritten 1 -D scope=bench-claim <"$IDEM_ROOT/test/bench/claim-handwritten.pgb"
bench_regimes latency saturation
bench_ratio ours handwritten 0.90 0.95
bench_run
