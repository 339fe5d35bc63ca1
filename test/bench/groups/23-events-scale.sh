# Claim cost with a large processed_events table against one of 10 thousand
# rows: claim + complete of new keys, each variant in its own database.
# The large size is 2 million rows (10 million takes several minutes to load
# and ~2 GB on these machines); the smoke run uses 20 thousand.
large=2000000
[ "${BENCH_SMOKE:-0}" = 1 ] && large=20000
bench_title "events: claim cost with $large rows vs 10 thousand"
bench_setup <<SQL
DROP DATABASE IF EXISTS idempotency_bench_small;
DROP DATABASE IF EXISTS idempotency_bench_large;
CREATE DATABASE idempotency_bench_small;
CREATE DATABASE idempotency_bench_large;
\c idempotency_bench_small
CREATE EXTENSION idempotency;
INSERT INTO idempotency.processed_events (scope, key, status, result, expires_at)
    SELECT '', 'old-' || i, 'completed', '{"ok": true}', now() + interval '1 day'
      FROM generate_series(1, 10000) i;
VACUUM ANALYZE idempotency.processed_events;
\c idempotency_bench_large
CREATE EXTENSION idempotency;
INSERT INTO idempotency.processed_events (scope, key, status, result, expires_at)
    SELECT '', 'old-' || i, 'completed', '{"ok": true}', now() + interval '1 day'
      FROM generate_series(1, $large) i;
VACUUM ANALYZE idempotency.processed_events;
SQL
script='\set k random(1, 9000000000000000000)
BEGIN;
SELECT status FROM idempotency.claim('"'new-'"' || :k);
SELECT idempotency.complete('"'new-'"' || :k, '"'1'"');
COMMIT;'
bench_variant large 1 idempotency_bench_large <<<"$script"
bench_variant small 1 idempotency_bench_small <<<"$script"
bench_ratio large small 0.77
bench_run
idem_psql -d postgres -c "DROP DATABASE idempotency_bench_small" -c "DROP DATABASE idempotency_bench_large" >/dev/null
