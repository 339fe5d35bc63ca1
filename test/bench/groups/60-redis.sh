# The Redis idempotency guard against a durable claim: what an application
# does with Redis around a request, SET key NX EX ttl (claim) then SET key
# result (complete), against idempotency.claim + complete in one
# transaction with synchronous_commit = on (the server default: the claim
# survives a crash once the call returns).  Redis runs with the AOF
# (appendonly yes, no RDB snapshots), in two servers: appendfsync always
# (each write is on disk before the reply, Redis's equivalent of
# synchronous_commit = on) and appendfsync everysec (up to a second of
# writes lost in a crash, compared with claim + complete at
# synchronous_commit = off).  1 and 32 clients, new keys every call.  The
# Redis client is test/bench/redis-guard.mjs (Node.js, no npm package), one
# process per pgbench thread.  Both servers write to the scratch directory,
# on the same disk as the cluster.  The smoke run measures only the
# 32-client pair "always" vs synchronous_commit = on.
#
# Two references, at synchronous_commit = on too, say where the ceiling
# is: the same claim + complete sent in two pipelines (BEGIN + claim, then
# complete + COMMIT: two round trips, as many as the Redis guard's, for a
# client whose driver pipelines), and the hand-written pair of the
# events-claim group (test/bench/claim-handwritten.pgb: INSERT ... ON
# CONFLICT DO NOTHING + UPDATE in one transaction, four round trips like
# ours): what any transaction of this shape reaches on the machine.
bench_title "redis guard (SET NX EX + SET) vs durable claim + complete, 1 and 32 clients"
redis_server=$(command -v redis-server || true)
[ -n "$redis_server" ] || [ ! -x /usr/bin/redis-server ] || redis_server=/usr/bin/redis-server
if [ -z "$redis_server" ] || ! command -v redis-cli >/dev/null; then
	echo "skipped: redis-server is not installed (apt-get install redis-server)"
	return 0
fi
if ! command -v node >/dev/null; then
	echo "skipped: node is not installed (apt-get install nodejs)"
	return 0
fi

redis_dir=${IDEM_WORK:-$BENCH_GROUP_DIR}/redis
redis_pids=()
redis_stop() {
	local pid
	for pid in "${redis_pids[@]}"; do
		kill "$pid" 2>/dev/null || continue
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$redis_dir"
}
trap redis_stop EXIT

# redis_start NAME FSYNC: a server on a free port of 127.0.0.1, in
# REDIS_PORT; returns non-zero if none started.
redis_start() {
	local name=$1 fsync=$2 port pid i
	mkdir -p "$redis_dir/$name"
	for port in $(seq 6390 6490); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue   # taken
		"$redis_server" --bind 127.0.0.1 --port "$port" --dir "$redis_dir/$name" \
			--save '' --appendonly yes --appendfsync "$fsync" --auto-aof-rewrite-percentage 0 \
			--daemonize no --logfile "$redis_dir/$name/redis.log" </dev/null >/dev/null 2>&1 &
		pid=$!
		redis_pids+=("$pid")
		for ((i = 0; i < 100; i++)); do
			redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && { REDIS_PORT=$port; return 0; }
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	done
	return 1
}
if ! redis_start always always; then
	echo "skipped: redis-server did not start (see $redis_dir/always/redis.log)"
	return 0
fi
port_always=$REDIS_PORT
if ! redis_start everysec everysec; then
	echo "skipped: redis-server did not start (see $redis_dir/everysec/redis.log)"
	return 0
fi
port_everysec=$REDIS_PORT
echo "$("$redis_server" --version | cut -d' ' -f1-3): appendfsync always on port $port_always, everysec on port $port_everysec"

bench_setup <"$IDEM_ROOT/test/bench/claim-handwritten.sql"
bench_setup <<'SQL'
DELETE FROM idempotency.processed_events WHERE scope = 'bench-redis';
SQL
cat >"$BENCH_GROUP_DIR/claim-pipelined.pgb" <<'PGB'
\set k random(1, 9000000000000000000)
\startpipeline
BEGIN;
SELECT status FROM idempotency.claim('req-' || :k, '{"amount": 10}', :scope);
\endpipeline
\startpipeline
SELECT idempotency.complete('req-' || :k, '{"ok": true}', :scope);
COMMIT;
\endpipeline
PGB
# The Redis client as a variant: BENCH_JOBS node processes share the
# clients; their calls/s add up.
cat >"$BENCH_GROUP_DIR/redis-run.sh" <<'SH'
# redis-run.sh PORT: redis-guard.mjs with BENCH_CLIENTS in BENCH_JOBS processes.
port=$1 dir=$(dirname "$0") pids=() rc=0
per=$(( (BENCH_CLIENTS + BENCH_JOBS - 1) / BENCH_JOBS ))
for ((j = 0, left = BENCH_CLIENTS; left > 0; j++, left -= per)); do
	node "$IDEM_ROOT/test/bench/redis-guard.mjs" "$port" $((left < per ? left : per)) "$BENCH_SECONDS" \
		>"$dir/redis-run.$port.$j" &
	pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
cat "$dir/redis-run.$port".* | awk '
	/^number of transactions/ { tx += $NF }
	/^tps = / { tps += $3 }
	END { print "number of transactions actually processed: " tx
	      printf "tps = %f (without initial connection time)\n", tps }'
rm -f "$dir/redis-run.$port".*
exit $rc
SH
redis_variant() {
	bench_command "$1" "$3" <<<"bash '$BENCH_GROUP_DIR/redis-run.sh' $2"
}
if [ "${BENCH_SMOKE:-0}" = 1 ]; then
	redis_variant redis_always_32 "$port_always" 32
	bench_variant claim_sync_32 32 --guc=synchronous_commit=on -D scope=bench-redis <"$IDEM_ROOT/test/bench/claim-complete.pgb"
	bench_ratio claim_sync_32 redis_always_32
else
	for n in 1 32; do
		redis_variant redis_always_$n "$port_always" $n
		redis_variant redis_everysec_$n "$port_everysec" $n
		bench_variant claim_sync_$n $n --guc=synchronous_commit=on -D scope=bench-redis <"$IDEM_ROOT/test/bench/claim-complete.pgb"
		bench_variant claim_async_$n $n --guc=synchronous_commit=off -D scope=bench-redis <"$IDEM_ROOT/test/bench/claim-complete.pgb"
		bench_variant claim_piped_sync_$n $n --guc=synchronous_commit=on -D scope=bench-redis <"$BENCH_GROUP_DIR/claim-pipelined.pgb"
		bench_variant handwritten_sync_$n $n --guc=synchronous_commit=on -D scope=bench-redis <"$IDEM_ROOT/test/bench/claim-handwritten.pgb"
	done
	bench_ratio claim_sync_32 redis_always_32
	bench_ratio claim_sync_1 redis_always_1
	bench_ratio claim_async_32 redis_everysec_32
	bench_ratio claim_async_1 redis_everysec_1
	bench_ratio claim_piped_sync_32 redis_always_32
	bench_ratio handwritten_sync_32 redis_always_32
	bench_ratio claim_sync_32 handwritten_sync_32
	bench_ratio claim_piped_sync_1 redis_always_1
	bench_ratio handwritten_sync_1 redis_always_1
fi
bench_run
idem_psql -c "DELETE FROM idempotency.processed_events WHERE scope = 'bench-redis'" -c "DROP TABLE bench_keys" >/dev/null
