# mutex_try_lock against pg_try_advisory_xact_lock(bigint), each in its own
# (implicit) transaction, one client, uncontended.  Target >= 0.90x.
bench_title "mutex_try_lock vs pg_try_advisory_xact_lock(bigint)"
bench_variant mutex 1 <<'PGB'
\set k random(1, 1000000000)
SELECT idempotency.mutex_try_lock(:k);
PGB
bench_variant advisory 1 <<'PGB'
\set k random(1, 1000000000)
SELECT pg_try_advisory_xact_lock(:k);
PGB
bench_ratio mutex advisory 0.90
bench_run
