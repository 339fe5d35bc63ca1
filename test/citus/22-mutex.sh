#!/usr/bin/env bash
# Mutexes across the cluster (after 20-distribute.sh): a mutex held through
# one node excludes sessions on every other node (try_lock, a timeout, a
# wait that ends at the holder's commit), as superuser and ordinary role;
# mutex_holders() from any node; session mutexes refused; a lost-update
# workload through two nodes loses nothing under the mutex when the counter
# is on the node owning the mutex's slot, and does lose updates without the
# mutex; a deadlock across two workers is found by Citus's distributed
# deadlock detection; a wait is counted in the statistics of the waiter's
# node, also when the mutex's slot is on another node.
. "$IDEM_ROOT/test/lib/common.sh"
. "$IDEM_ROOT/test/lib/citus.sh"
W=$IDEM_CITUS_WORK
T=citus/mutex

# Hold key $2 through node $1 as role $3 for $4 seconds (background).
hold() {
	idem_citus_psql "$1" -U "$3" -c "BEGIN" -c "SELECT idempotency.mutex_lock('$2')" \
		-c "SELECT pg_sleep($4)" -c "COMMIT" >/dev/null 2>&1 &
	sleep 0.5
}

for role in postgres idem_app; do
	for pair in "1 2" "0 1" "2 0"; do
		set -- $pair
		hold "$1" "mx-$role" "$role" 2.5
		got=$(idem_citus_psql "$2" -U "$role" -tA \
			-c "SELECT idempotency.mutex_try_lock('mx-$role')" \
			-c "SELECT count(*) FROM idempotency.mutex_holders('mx-$role') WHERE granted AND mode = 'exclusive'" \
			-c "SELECT idempotency.mutex_lock('mx-$role', '300 milliseconds')" \
			-c "SELECT idempotency.mutex_try_lock('mx-other-$role')" | tr '\n' ' ')
		idem_citus_same "held through node $1 as $role: try_lock false, holder listed, timeout false on node $2; other keys free" \
			"f 1 f t " "$got"
		idem_citus_psql "$2" -qtA -c "SELECT idempotency.stats_reset()" >/dev/null
		t0=$(date +%s.%N)
		got=$(idem_citus_psql "$2" -U "$role" -tA -c "BEGIN" -c "SELECT idempotency.mutex_lock('mx-$role', '10 seconds')" -c "COMMIT")
		waited=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.9f", a - b }')
		if [ "$got" = t ] && awk -v w="$waited" 'BEGIN { exit !(w > 1.2) }'; then
			idem_pass "$T: a waiter on node $2 gets the mutex when the holder on node $1 commits ($role, waited ${waited%??????} s)"
		else
			echo "      got '$got' after $waited s"
			idem_fail "$T: a waiter on node $2 gets the mutex when the holder on node $1 commits ($role)"
		fi
		# the wait is counted on the waiter's node, wherever the slot is
		idem_citus_same "node $2 counts that call as acquired after a wait of over a second ($role)" "1|1|t" \
			"$(idem_citus_psql "$2" -tA -c "SELECT calls, wait_calls, wait_ms > 1000 FROM idempotency.stats
				WHERE operation = 'mutex_lock' AND outcome = 'acquired'")"
		wait
	done
done

got=$(idem_citus_psql 1 -U idem_app -v VERBOSITY=verbose -c "SELECT idempotency.mutex_session_lock('s')" 2>&1)
if grep -q '0A000' <<<"$got" && grep -q 'HINT' <<<"$got"; then
	idem_pass "$T: session mutexes refused (0A000, with a hint)"
else
	echo "      $got"
	idem_fail "$T: session mutexes refused (0A000, with a hint)"
fi

# Two keys whose slots are on different workers: lock one through node 0
# and see which worker's lock table has it.
lockspace=$((0x4900))
declare -A on
for i in $(seq 1 40); do
	k=dl-$i
	w=$(idem_citus_psql 0 -tA -c "BEGIN" -c "SELECT idempotency.mutex_lock('$k')" \
		-c "SELECT string_agg(nodeport::text, ',') FROM run_command_on_workers(\$\$SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = $lockspace AND granted\$\$) WHERE result::int > 0" \
		-c "COMMIT" | sed -n 2p)
	[ -n "$w" ] && [ -z "${on[$w]:-}" ] && on[$w]=$k
	[ ${#on[@]} -ge 2 ] && break
done
# Lost updates: read, pause, write a counter, from 6 clients on the
# coordinator and 6 on a worker.  A mutex orders the critical sections, but
# Citus commits the nodes of a distributed transaction one by one: the
# node owning the mutex's slot may release it a moment before the node
# holding the counter has committed the write.  So: (1) a counter on the
# node owning the slot loses nothing, (2) the same without the mutex loses
# updates (the test can fail), (3) a counter on another node is reported.
idem_citus_psql 0 >/dev/null <<'EOF'
CREATE SCHEMA mx;
CREATE TABLE mx.counter (id int PRIMARY KEY, n int NOT NULL);
SELECT create_distributed_table('mx.counter', 'id', shard_count => 4);
INSERT INTO mx.counter SELECT g, 0 FROM generate_series(1, 40) g;
EOF
# A counter row on each worker.
declare -A row
for id in $(seq 1 40); do
	p=$(idem_citus_psql 0 -tA -c "SELECT nodeport FROM citus_shards WHERE table_name = 'mx.counter'::regclass AND shardid = get_shard_id_for_distribution_column('mx.counter', $id)")
	[ -z "${row[$p]:-}" ] && row[$p]=$id
	[ ${#row[@]} -ge 2 ] && break
done
same_port=$IDEM_CITUS_PORT1 other_port=$IDEM_CITUS_PORT2
key=${on[$same_port]:-}
for mode in with without other; do
	id=${row[$same_port]} lock="SELECT idempotency.mutex_lock('$key');"
	[ $mode = without ] && lock=""
	[ $mode = other ] && id=${row[$other_port]}
	cat >"$W/counter-$mode.sql" <<EOF
BEGIN;
$lock
SELECT n FROM mx.counter WHERE id = $id \\gset
SELECT pg_sleep(0.002);
UPDATE mx.counter SET n = :n + 1 WHERE id = $id;
COMMIT;
EOF
	idem_citus_psql 0 -c "UPDATE mx.counter SET n = 0" >/dev/null
	pids=()
	for n in 0 1; do
		port=IDEM_CITUS_PORT$n
		"$PGBINDIR/pgbench" -n -h 127.0.0.1 -p "${!port}" -U postgres -c 6 -j 2 -t 25 \
			-f "$W/counter-$mode.sql" postgres >"$W/pgbench-$mode-$n.out" 2>&1 &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || true; done
	n=$(idem_citus_psql 0 -tA -c "SELECT n FROM mx.counter WHERE id = $id")
	failed=$(cat "$W"/pgbench-$mode-*.out | grep -c 'number of failed transactions: 0 ')
	if [ $mode = with ]; then
		idem_citus_same "lost-update workload through two nodes under the mutex (counter on the slot's node): 300 of 300 increments kept" \
			"300 2" "$n $failed"
	elif [ $mode = without ]; then
		if [ "$failed" = 2 ] && [ "$n" -lt 300 ]; then
			idem_pass "$T: the same workload without the mutex loses updates ($n of 300 kept): the test can fail"
		else
			echo "      counter $n, clean pgbench runs $failed"
			idem_fail "$T: the same workload without the mutex loses updates"
		fi
	else
		idem_log "citus/mutex: counter on another node than the mutex slot: $n of 300 increments kept (not asserted: see the README)"
	fi
done

keys=("${on[@]}")
if [ ${#keys[@]} -lt 2 ]; then
	idem_fail "$T: found two keys whose slots are on different workers"
else
	a=${keys[0]} b=${keys[1]}
	idem_citus_psql 1 -c "BEGIN" -c "SELECT idempotency.mutex_lock('$a')" -c "SELECT pg_sleep(1)" \
		-c "SELECT idempotency.mutex_lock('$b')" -c "COMMIT" >"$W/dl-1.out" 2>&1 &
	p1=$!
	idem_citus_psql 2 -c "BEGIN" -c "SELECT idempotency.mutex_lock('$b')" -c "SELECT pg_sleep(1)" \
		-c "SELECT idempotency.mutex_lock('$a')" -c "COMMIT" >"$W/dl-2.out" 2>&1 &
	p2=$!
	t0=$SECONDS
	wait $p1; r1=$?
	wait $p2; r2=$?
	dead=$(cat "$W"/dl-*.out | grep -ci 'deadlock')
	# Citus cancels a transaction of the cycle (sometimes both: each
	# worker's detector may act); what matters is that nobody hangs.
	if [ $((r1 + r2)) -ne 0 ] && [ "$dead" -ge 1 ] && [ $((SECONDS - t0)) -lt 30 ]; then
		idem_pass "$T: a deadlock across two workers ('$a' and '$b') is detected and broken ($((SECONDS - t0)) s, exit statuses $r1 $r2)"
	else
		cat "$W"/dl-*.out | sed 's/^/      /'
		idem_fail "$T: a deadlock across two workers is detected (exit $r1 $r2)"
	fi
fi
