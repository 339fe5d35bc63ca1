#!/usr/bin/env bash
# idempotency.stats with the library in shared_preload_libraries, on a
# cluster of its own (the suite cluster does not preload it): cluster-wide
# counters, 8 clients racing on 40 keys counted exactly, a mutex timeout
# counted with its wait time and accurate percentiles, an ERROR counted,
# idempotency.track = off, privileges, and the postgres_exporter query of
# README.md run as it stands there.
. "$IDEM_ROOT/test/lib/common.sh"

dir=$IDEM_SUITE_WORK/cluster
idem_cluster_start "$dir" <<'EOF_CONF' || exit 1
shared_preload_libraries = 'idempotency'
EOF_CONF
bg=()
cleanup() {
	local p
	for p in "${bg[@]}"; do kill "$p" 2>/dev/null; done
	idem_cluster_stop "$dir"
}
trap cleanup EXIT

rc=0
sql() { idem_psql -Atc "$1"; }
# check NAME EXPECTED ACTUAL
check() {
	if [ "$2" = "$3" ]; then
		idem_pass "stats/$1"
	else
		idem_fail "stats/$1"
		printf '        expected: %s\n        actual:   %s\n' "$2" "$3"
		rc=1
	fi
}

sql "CREATE EXTENSION idempotency" >/dev/null
check scope-cluster cluster "$(sql "SELECT idempotency.stats_scope()")"

# Counted in one session, seen by another (cluster-wide).
sql "SELECT idempotency.stats_reset()" >/dev/null
sql "SELECT idempotency.mark_processed('stats-suite-' || g) FROM generate_series(1, 5) g" >/dev/null
sql "SELECT idempotency.mark_processed('stats-suite-1')" >/dev/null
check cluster-wide "duplicate|1 new|5" \
	"$(sql "SELECT outcome, calls FROM idempotency.stats WHERE operation = 'mark_processed' ORDER BY 1" | tr '\n' ' ' | sed 's/ $//')"

# 8 clients race on 40 keys with get_or_create: every call is counted once,
# inserted = rows in the table, existing + conflict + inserted = calls.
clients=8 per_client=150
sql "CREATE TABLE stats_race (id bigserial PRIMARY KEY, k text UNIQUE, n int)" >/dev/null
cat >"$IDEM_SUITE_WORK/race.pgb" <<'PGB'
\set k random(1, 40)
SELECT created FROM idempotency.get_or_create(NULL::stats_race, jsonb_build_object('k', 'key-' || :k, 'n', :k));
PGB
sql "SELECT idempotency.stats_reset()" >/dev/null
if ! "$PGBINDIR/pgbench" -n -c $clients -j 2 -t $per_client -f "$IDEM_SUITE_WORK/race.pgb" \
	>"$IDEM_SUITE_WORK/race.log" 2>&1; then
	cat "$IDEM_SUITE_WORK/race.log"
	rc=1
fi
calls=$((clients * per_client))
check race-calls "$calls" "$(sql "SELECT coalesce(sum(calls), 0) FROM idempotency.stats WHERE operation = 'get_or_create'")"
check race-inserted-rows "$(sql "SELECT count(*) FROM stats_race")" \
	"$(sql "SELECT coalesce(sum(calls), 0) FROM idempotency.stats WHERE operation = 'get_or_create' AND outcome = 'inserted'")"
check race-outcomes "$calls" \
	"$(sql "SELECT coalesce(sum(calls), 0) FROM idempotency.stats WHERE operation = 'get_or_create' AND outcome IN ('existing', 'conflict', 'inserted')")"
check race-no-other-rows "" "$(sql "SELECT operation || '/' || outcome FROM idempotency.stats WHERE operation <> 'get_or_create' OR outcome NOT IN ('existing', 'conflict', 'inserted')")"
echo "        # race: $(sql "SELECT string_agg(outcome || ' ' || calls, ', ' ORDER BY outcome) FROM idempotency.stats")"

# A hot mutex: timeouts of 100, 200 and 400 ms are timed_out with their wait
# time, the percentiles are within 10 % of the true times, and a wait that
# lock_timeout ends is an error with its wait time.
idem_psql -c "BEGIN" -c "SELECT idempotency.mutex_lock('stats-hot')" -c "SELECT pg_sleep(30)" -c "COMMIT" \
	>/dev/null 2>&1 &
bg+=($!)
for _ in $(seq 1 100); do
	[ "$(sql "SELECT count(*) FROM idempotency.mutex_holders('stats-hot')")" = 1 ] && break
	sleep 0.1
done
sql "SELECT idempotency.stats_reset()" >/dev/null
check timeouts "f f f" "$(sql "SELECT idempotency.mutex_lock('stats-hot', t::interval) FROM unnest(ARRAY['100 ms', '200 ms', '400 ms']) t" | tr '\n' ' ' | sed 's/ $//')"
check timed-out-row "3|3|t|t|t|t" "$(sql "
  SELECT calls, wait_calls, wait_ms BETWEEN 695 AND 1500, p50_ms BETWEEN 180 AND 230,
         max_ms BETWEEN 395 AND 800, p50_ms <= p95_ms AND p95_ms <= p99_ms AND p99_ms <= max_ms
    FROM idempotency.stats WHERE operation = 'mutex_lock' AND outcome = 'timed_out'")"
idem_psql -c "SET lock_timeout = '100ms'" -c "SELECT idempotency.mutex_lock('stats-hot')" >/dev/null 2>&1
check lock-timeout-error "1|1|t" "$(sql "
  SELECT calls, wait_calls, wait_ms >= 95
    FROM idempotency.stats WHERE operation = 'mutex_lock' AND outcome = 'error'")"
check try-busy "1|0" "$(sql "SELECT idempotency.mutex_try_lock('stats-hot')" >/dev/null;
	sql "SELECT calls, wait_calls FROM idempotency.stats WHERE operation = 'mutex_try_lock' AND outcome = 'not_acquired'")"
kill "${bg[0]}" 2>/dev/null
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()" >/dev/null

# idempotency.track = off: nothing counted, from pgbench as from psql.
sql "SELECT idempotency.stats_reset()" >/dev/null
PGOPTIONS="-c idempotency.track=off" "$PGBINDIR/pgbench" -n -c 2 -j 2 -t 50 \
	-f "$IDEM_SUITE_WORK/race.pgb" >"$IDEM_SUITE_WORK/off.log" 2>&1 || { cat "$IDEM_SUITE_WORK/off.log"; rc=1; }
check track-off 0 "$(sql "SELECT count(*) FROM idempotency.stats")"

# Privileges: everyone reads the view; stats_reset is for superusers.
sql "CREATE ROLE stats_reader LOGIN" >/dev/null
sql "SELECT idempotency.mutex_try_lock('stats-priv')" >/dev/null
check reader-reads t "$(idem_psql -U stats_reader -Atc "SELECT count(*) > 0 FROM idempotency.stats")"
check reader-reset-denied 42501 \
	"$(idem_psql -U stats_reader -At -v VERBOSITY=sqlstate -c "\\set VERBOSITY sqlstate" -c "SELECT idempotency.stats_reset()" 2>&1 | sed -n 's/^.*ERROR: *//p')"
# It may switch counting off for its own session (a setting of its own).
check reader-track-off "off" \
	"$(idem_psql -U stats_reader -At -c "SET idempotency.track = off" -c "SHOW idempotency.track" 2>&1 | tail -n 1)"

# The postgres_exporter block of README.md: its query runs and returns
# every column its metrics name, and nothing else.
yaml=$IDEM_SUITE_WORK/exporter.yaml
awk '/^#+ Monitoring/ { m = 1 } m && /^```yaml/ { y = 1; next } y && /^```/ { exit } y' \
	"$IDEM_ROOT/README.md" >"$yaml"
query=$(awk '/^  query: \|/ { q = 1; next } q && /^  [^ ]/ { q = 0 } q { sub(/^    /, ""); print }' "$yaml")
metrics=$(sed -nE 's/^    - ([a-z_0-9]+):$/\1/p' "$yaml" | sort | tr '\n' ' ')
if [ -z "$query" ] || [ -z "$metrics" ]; then
	idem_fail "stats/readme-exporter-block"
	echo "        no query or no metrics found in the yaml block of README.md's Monitoring section"
	rc=1
else
	idem_pass "stats/readme-exporter-block"
	out=$(idem_psql -A -F '|' -P footer=off -c "$query" 2>&1)
	columns=$(printf '%s\n' "$out" | head -n 1 | tr '|' '\n' | sort | tr '\n' ' ')
	check readme-exporter-columns "$metrics" "$columns"
	check readme-exporter-rows t "$([ "$(printf '%s\n' "$out" | wc -l)" -ge 2 ] && echo t || echo f)"
	check readme-exporter-scope cluster "$(printf '%s\n' "$out" | sed -n 2p | cut -d'|' -f1)"
fi

exit $rc
