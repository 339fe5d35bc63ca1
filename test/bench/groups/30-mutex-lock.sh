# mutex_lock + COMMIT against the built-in it is made of,
# pg_advisory_xact_lock(bigint) + COMMIT: one client, a fresh key each time
# (uncontended).  The difference is hashing the text key and the argument
# checks.  Target >= 0.90x.
bench_title "mutex_lock + COMMIT vs pg_advisory_xact_lock(bigint) + COMMIT"
bench_variant mutex 1 <<'PGB'
\set k random(1, 1000000000)
BEGIN;
SELECT idempotency.mutex_lock(:k);
COMMIT;
PGB
bench_variant advisory 1 <<'PGB'
\set k random(1, 1000000000)
BEGIN;
SELECT pg_advisory_xact_lock(:k);
COMMIT;
PGB
bench_ratio mutex advisory 0.90
bench_run
