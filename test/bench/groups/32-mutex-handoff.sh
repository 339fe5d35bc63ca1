# Hand-off rate on one contended key: every client takes the same mutex,
# so the transactions per second are the number of times per second the
# lock manager hands the mutex from one backend to the next.  8 and 32
# clients, against the same with pg_advisory_xact_lock(bigint).  No target
# is stated by the issue beyond "compare"; we print the ratios.
bench_title "hand-off on one contended key: mutex_lock vs pg_advisory_xact_lock, 8 and 32 clients"
for n in 8 32; do
	bench_variant mutex_c$n $n <<'PGB'
BEGIN;
SELECT idempotency.mutex_lock('the one key');
COMMIT;
PGB
	bench_variant advisory_c$n $n <<'PGB'
BEGIN;
SELECT pg_advisory_xact_lock(42);
COMMIT;
PGB
	bench_ratio mutex_c$n advisory_c$n
done
bench_run
