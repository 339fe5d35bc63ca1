# purge() throughput on a backlog of expired rows, and claim throughput
# while a purge runs (purge uses SKIP LOCKED, claims of other keys never
# wait for it).
rows=500000
[ "${BENCH_SMOKE:-0}" = 1 ] && rows=20000
bench_title "events: purge throughput ($rows expired rows) and claims during purge"
load() {
	idem_psql >/dev/null <<SQL
DELETE FROM idempotency.processed_events WHERE scope = 'bench-purge';
INSERT INTO idempotency.processed_events (scope, key, status, result, expires_at)
    SELECT 'bench-purge', 'old-' || i, 'completed', '{"ok": true}', now() - interval '1 day'
      FROM generate_series(1, $rows) i;
VACUUM ANALYZE idempotency.processed_events;
SQL
}
load
t0=$(date +%s.%N)
n=$(idem_psql -Atc "SELECT idempotency.purge()")
t1=$(date +%s.%N)
bench_report "purge: rows deleted" "$n"
bench_report "purge: rows/s" "$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')" ">= 100000"

# claims alone, then claims with a purge of the same backlog running
cat >"$BENCH_GROUP_DIR/claims.pgb" <<'PGB'
\set k random(1, 9000000000000000000)
BEGIN;
SELECT status FROM idempotency.claim('new-' || :k, scope => 'bench-purge-claims');
SELECT idempotency.complete('new-' || :k, '1', 'bench-purge-claims');
COMMIT;
PGB
claims_tps() {
	"$PGBINDIR/pgbench" -n -M prepared -c 2 -j 2 -T "$BENCH_SECONDS" -f "$BENCH_GROUP_DIR/claims.pgb" 2>&1 \
		| sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p'
}
alone=$(claims_tps)
load
idem_psql -Atc "SELECT idempotency.purge(1000)" >"$BENCH_GROUP_DIR/purge.out" &
purge_pid=$!
during=$(claims_tps)
wait "$purge_pid"
bench_report "claim+complete tps, no purge" "$alone"
bench_report "claim+complete tps, purge running" "$during"
idem_psql -c "DELETE FROM idempotency.processed_events WHERE scope LIKE 'bench-%'" >/dev/null
