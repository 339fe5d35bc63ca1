#!/usr/bin/env bash
# PgBouncer in transaction mode in front of the suite cluster: which features
# work through a transaction-pooling proxy, what session mutexes do there,
# what idempotency.session_locks = off changes, and what `wait` costs.
#
# PgBouncer listens on 127.0.0.1 only (a free port), pool_mode = transaction,
# default_pool_size = 4, and 10-12 concurrent clients; auth_type = trust with
# an auth_file.  It runs as the cluster's OS user (it refuses to run as root)
# and is stopped on exit.  Clients use the simple query protocol (pgbench -M
# simple, psql): PgBouncer before 1.21 does not track prepared statements.
. "$IDEM_ROOT/test/lib/common.sh"
set -u

db=idempotency_pooler
dir=$IDEM_SUITE_WORK/pgbouncer
pgbench=$PGBINDIR/pgbench
clients=10
pool=4
rc=0

pgbouncer_bin=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null || true)
if [ -z "$pgbouncer_bin" ]; then
	if idem_is_root; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null 2>&1 \
			|| { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null; }
		pgbouncer_bin=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null || true)
	fi
	[ -n "$pgbouncer_bin" ] || { idem_fail "pooler (pgbouncer is not installed: apt-get install pgbouncer)"; exit 1; }
fi

fail() { idem_fail "$1"; rc=1; }
check() {	# check NAME CONDITION-EXIT-STATUS DETAIL
	if [ "$2" = 0 ]; then idem_pass "$1"; else fail "$1"; fi
	[ -n "${3:-}" ] && echo "        # $3"
	return 0
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Direct connections (the cluster's socket) and connections through PgBouncer.
direct() { idem_psql -d $db "$@"; }
bouncer() {	# bouncer [-U ROLE] [-d DB] ARGS: psql through PgBouncer
	PGHOST=127.0.0.1 PGPORT=$port PGOPTIONS='' "$PGBINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d $db "$@"
}
bouncer_pgbench() {	# pgbench through PgBouncer
	PGHOST=127.0.0.1 PGPORT=$port PGOPTIONS='' "$pgbench" "$@"
}

idem_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" || exit 1
direct <<'SQL' || exit 1
CREATE EXTENSION idempotency;
CREATE TABLE balance (id int PRIMARY KEY, amount bigint NOT NULL);
CREATE TABLE claim_log (client int, status text, result jsonb);
CREATE TABLE lease_log (fencing bigint, client int, start_at timestamptz, stop_at timestamptz);
CREATE TABLE lease_bad (client int, what text);
DROP ROLE IF EXISTS idem_pooled_app;
CREATE ROLE idem_pooled_app LOGIN;
GRANT USAGE ON SCHEMA idempotency TO idem_pooled_app;
-- What an administrator does for a role that connects through a
-- transaction-pooling proxy.
ALTER ROLE idem_pooled_app SET idempotency.session_locks = off;
SQL

# ---------------------------------------------------------------- PgBouncer
mkdir -p "$dir"
idem_is_root && chown "$(idem_server_user)" "$dir"

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
		|| echo $((20000 + RANDOM % 20000))
}

write_ini() {	# write_ini RESET_ALWAYS
	idem_as_server_user tee "$dir/pgbouncer.ini" >/dev/null <<EOF
[databases]
$db = host=$PGHOST port=$PGPORT dbname=$db
; one server connection, so that the next client surely gets the same one
hazard = host=$PGHOST port=$PGPORT dbname=$db pool_size=1
; session pooling, for comparison
session = host=$PGHOST port=$PGPORT dbname=$db pool_size=1 pool_mode=session

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = $pool
reserve_pool_size = 0
max_client_conn = 200
server_reset_query = DISCARD ALL
server_reset_query_always = $1
ignore_startup_parameters = extra_float_digits, options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
}

stop_pgbouncer() {
	local pid
	[ -f "$dir/pgbouncer.pid" ] || return 0
	pid=$(cat "$dir/pgbouncer.pid" 2>/dev/null) || return 0
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$dir/pgbouncer.pid"
}
cleanup() {
	stop_pgbouncer
	idem_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS idem_pooled_app" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

printf '"postgres" ""\n"idem_pooled_app" ""\n' | idem_as_server_user tee "$dir/userlist.txt" >/dev/null
started=0
for _ in 1 2 3 4 5; do
	port=$(free_port)
	write_ini 0
	if idem_as_server_user "$pgbouncer_bin" -d -q "$dir/pgbouncer.ini" 2>>"$dir/start.err"; then
		for _ in $(seq 50); do
			bouncer -c 'SELECT 1' >/dev/null 2>&1 && { started=1; break; }
			sleep 0.1
		done
	fi
	[ $started = 1 ] && break
	stop_pgbouncer
done
if [ $started = 0 ]; then
	fail "pooler/pgbouncer-start"
	cat "$dir/start.err" "$dir/pgbouncer.log" 2>/dev/null | tail -n 20
	exit 1
fi
version=$("$pgbouncer_bin" --version | head -1)
idem_pass "pooler/pgbouncer-start"
echo "        # $version, 127.0.0.1:$port, pool_mode = transaction, default_pool_size = $pool"

admin() { bouncer -d pgbouncer -U postgres "$@"; }

# ------------------------------------------- transaction mutexes: no lost update
# The read-then-write of the stress test (plain SELECT, then UPDATE of the
# value read) by 12 clients sharing 4 server connections.
per_client=25
wl=12
cp "$IDEM_ROOT/test/stress/mutex-lost-update.pgb" "$dir/with.sql"
grep -v mutex_lock "$dir/with.sql" >"$dir/without.sql"
lost_update_run() {
	direct -c "TRUNCATE balance" -c "INSERT INTO balance VALUES (1, 0)" || return 1
	bouncer_pgbench -n -M simple -c $wl -j 2 -t $per_client \
		-f "$dir/$1.sql" $db >"$dir/$1.out" 2>&1 || { cat "$dir/$1.out"; return 1; }
	direct -At -c "SELECT amount FROM balance WHERE id = 1"
}
with=$(lost_update_run with) || with=error
without=$(lost_update_run without) || without=error
[ "$with" = $((wl * per_client)) ]
check pooler/mutex-lock-no-lost-update $? \
	"$wl clients x $per_client read-then-write through $pool server connections: with mutex_lock $with / $((wl * per_client)), without $without / $((wl * per_client))"

# ------------------------------------------ claim with an in-transaction wait
# 10 clients claim the same key at once, wait up to 20 s; the one that gets
# it works for 0.5 s, completes and commits.  Exactly one 'claimed', the
# other nine 'completed' with the stored result.
claim_client() {
	bouncer -v c="$1" <<'SQL'
BEGIN;
SELECT status AS st FROM idempotency.claim('order-1', wait => '20 s') \gset
SELECT :'st' = 'claimed' AS mine \gset
\if :mine
SELECT pg_sleep(0.5);
SELECT idempotency.complete('order-1', '{"charge": "ch_1"}');
\endif
COMMIT;
INSERT INTO claim_log
SELECT :c, :'st', CASE WHEN :'st' = 'completed'
                       THEN (SELECT result FROM idempotency.claim('order-1')) END;
SQL
}
for i in $(seq $clients); do claim_client "$i" >"$dir/claim-$i.out" 2>&1 & done
wait
read -r claimed completed good < <(direct -At -F ' ' -c "
	SELECT count(*) FILTER (WHERE status = 'claimed'),
	       count(*) FILTER (WHERE status = 'completed'),
	       count(*) FILTER (WHERE status = 'completed' AND result = '{\"charge\": \"ch_1\"}')
	  FROM claim_log")
[ "$claimed" = 1 ] && [ "$completed" = $((clients - 1)) ] && [ "$good" = "$completed" ]
ok=$?
check pooler/claim-wait-one-claimed $ok \
	"$clients concurrent claims of one key through $pool server connections: $claimed claimed, $completed completed ($good with the stored result)"
[ $ok = 0 ] || cat "$dir"/claim-*.out

# ---------------------------------------------------- leases: one holder at a time
# 10 clients fight for one lease for 4 s.  Every winner logs when it started
# and stopped holding, then releases with its token.  Run twice: every
# client waits up to 1 s (wait => '1 s'), then none waits (wait => '0').
# pgbench -M extended: unnamed statements, which every PgBouncer passes.
cat >"$dir/lease.sql" <<'SQL'
SELECT status = 'acquired' AS won, token AS tok, fencing_token AS f
  FROM idempotency.lease_acquire('pooled-lease', ttl => '30 s', holder => 'c' || :client_id::int,
                                 wait => :wait::interval) \gset
\if :won
INSERT INTO lease_log VALUES (:f::bigint, :client_id::int, clock_timestamp(), NULL);
\sleep 2 ms
UPDATE lease_log SET stop_at = clock_timestamp() WHERE fencing = :f::bigint;
SELECT idempotency.lease_release('pooled-lease', :tok::uuid) AS rel \gset
INSERT INTO lease_bad SELECT :client_id::int, :rel::text WHERE :rel::text <> 'released';
\endif
SQL
lease_run() {	# lease_run WAIT -> "acquired tries"
	direct -c "TRUNCATE lease_log, lease_bad" >/dev/null
	bouncer_pgbench -n -M extended -c $clients -j 2 -T 4 \
		-D wait="$1" -f "$dir/lease.sql" $db >"$dir/lease-$1.out" 2>&1 || { cat "$dir/lease-$1.out" >&2; return 1; }
	read -r acquired distinct bad overlap disorder < <(direct -At -F ' ' <<'SQL'
SELECT (SELECT count(*) FROM lease_log),
       (SELECT count(DISTINCT fencing) FROM lease_log),
       (SELECT count(*) FROM lease_bad),
       (SELECT count(*) FROM (SELECT start_at, lag(stop_at) OVER (ORDER BY start_at) AS prev_stop
                                FROM lease_log) x WHERE start_at < prev_stop),
       (SELECT count(*) FROM (SELECT fencing, lag(fencing) OVER (ORDER BY start_at) AS prev
                                FROM lease_log) x WHERE fencing <= prev);
SQL
)
	local tries
	tries=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$dir/lease-$1.out")
	[ "$acquired" -gt 0 ] && [ "$distinct" = "$acquired" ] && [ "$bad" = 0 ] \
		&& [ "$overlap" = 0 ] && [ "$disorder" = 0 ]
	check "pooler/lease-one-holder-wait-$1" $? \
		"wait => '$1', $clients clients, 4 s: $acquired leases held one after another out of $tries tries ($overlap overlaps, $bad bad releases); fencing tokens: $distinct distinct, $disorder out of order"
}
lease_run 1s
lease_run 0

# ------------------------------------- session mutexes stay with the server connection
# Database "hazard" has one server connection.  Client A takes a session
# mutex and disconnects; in transaction mode PgBouncer runs no reset query,
# so the mutex stays held by the idle server connection, and client B, who
# gets that connection, "acquires" A's mutex (re-entrant, same backend).
bouncer -d hazard -c "SELECT idempotency.mutex_session_lock('report')" >/dev/null
held_by=$(direct -At -c "
	SELECT h.scope || ' ' || a.state
	  FROM idempotency.mutex_holders('report') h JOIN pg_stat_activity a USING (pid)
	 WHERE h.granted")
direct_try=$(direct -At -c "BEGIN" -c "SELECT idempotency.mutex_try_lock('report')" -c "ROLLBACK")
b_try=$(bouncer -d hazard -At -c "SELECT idempotency.mutex_session_try_lock('report')")
[ "$held_by" = "session idle" ] && [ "$direct_try" = f ] && [ "$b_try" = t ]
check pooler/session-mutex-stays-held $? \
	"after client A disconnected: holder = '$held_by' server connection; another direct client's try: $direct_try; client B through the pooler: $b_try (it got A's mutex)"
bouncer -d hazard -c "SELECT idempotency.mutex_session_unlock_all()" >/dev/null

# Session mode, for comparison: the client keeps its server connection
# until it disconnects, then PgBouncer runs server_reset_query (DISCARD ALL),
# which releases its session mutexes.
s_out=$(bouncer -d session -At -c "SELECT idempotency.mutex_session_lock('report')" \
	-c "SELECT idempotency.mutex_session_unlock('report') AND idempotency.mutex_session_lock('report')" \
	-c "SELECT scope FROM idempotency.mutex_holders('report')" | tr '\n' ' ')
for _ in $(seq 30); do
	held=$(direct -At -c "SELECT count(*) FROM idempotency.mutex_holders('report')")
	[ "$held" = 0 ] && break
	sleep 0.1
done
[ "$s_out" = "t t session " ] && [ "$held" = 0 ]
check pooler/session-mode $? \
	"pool_mode = session: lock, unlock, lock again in one client session: $s_out; held after the client disconnected: $held"

# server_reset_query_always = 1: DISCARD ALL after every transaction releases
# session mutexes (they then last one transaction, nothing is stranded).
write_ini 1
admin -c RELOAD >/dev/null
bouncer -d hazard -c "SELECT idempotency.mutex_session_lock('report')" >/dev/null
for _ in $(seq 30); do	# PgBouncer sends DISCARD ALL after the transaction
	held=$(direct -At -c "SELECT count(*) FROM idempotency.mutex_holders('report')")
	[ "$held" = 0 ] && break
	sleep 0.1
done
[ "$held" = 0 ]
check pooler/server-reset-query-always $? \
	"server_reset_query_always = 1 (DISCARD ALL after each transaction): session mutexes held after the transaction: $held"
write_ini 0
admin -c RELOAD >/dev/null

# ------------------------------------- idempotency.session_locks = off for a role
out=$(bouncer -U idem_pooled_app 2>&1 <<'SQL'
\set ON_ERROR_STOP 0
\set VERBOSITY sqlstate
SELECT idempotency.mutex_session_lock('report');
\echo state=:LAST_ERROR_SQLSTATE
SET idempotency.session_locks = on;
\echo state=:LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT idempotency.mutex_session_try_lock('report');
BEGIN;
SELECT 'tx=' || idempotency.mutex_lock('report');
COMMIT;
SQL
)
# A startup option asking for it back does not get through the pooler.
opt=$(PGHOST=127.0.0.1 PGPORT=$port PGOPTIONS='-c idempotency.session_locks=on' \
	"$PGBINDIR/psql" -X -At -U idem_pooled_app -d $db -v ON_ERROR_STOP=0 -v VERBOSITY=sqlstate \
	-c "SELECT idempotency.mutex_session_lock('report')" 2>&1)
echo "$out" | grep -qx 'state=55000' && echo "$out" | grep -qx 'state=42501' \
	&& echo "$out" | grep -q 'HINT:  Use idempotency.mutex_lock()' && echo "$out" | grep -q 'tx=true' \
	&& echo "$opt" | grep -q 'ERROR:  55000'
check pooler/session-locks-off-per-role $? \
	"ALTER ROLE idem_pooled_app SET idempotency.session_locks = off: mutex_session_lock through the pooler -> $(echo "$out" | grep -m1 '^state=' | cut -d= -f2), SET ... = on -> $(echo "$out" | grep '^state=' | sed -n 2p | cut -d= -f2), with PGOPTIONS='-c idempotency.session_locks=on' -> $(echo "$opt" | tr '\n' ' '), mutex_lock in a transaction works"
[ $rc = 0 ] || echo "$out"

# ------------------------------------------------------------ what `wait` costs
# A worker holds claim 'slow' for 3 s in an open transaction (directly, not
# through the pooler).  10 clients claim it through the pooler, then a
# client runs an unrelated SELECT 1.  With wait => '10 s' each waiting claim
# holds one of the 4 server connections until the worker commits, so the
# unrelated query queues in PgBouncer; with wait => '0' the claims answer
# 'in_progress' at once and the pool stays free.
wait_cost() {	# wait_cost WAIT -> "claims_ms select1_ms cl_waiting statuses"
	local w=$1 t0 t1 t2 i
	direct -c "DELETE FROM idempotency.processed_events WHERE key = 'slow'" >/dev/null
	direct -c "BEGIN" -c "SELECT status FROM idempotency.claim('slow')" -c "SELECT pg_sleep(3)" \
		-c "SELECT idempotency.complete('slow', '{\"ok\": true}')" -c "COMMIT" >/dev/null &
	local holder=$!
	# until the holder has claimed the key and sleeps
	for _ in $(seq 100); do
		[ "$(direct -At -c "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3)'")" = 1 ] && break
		sleep 0.1
	done
	t0=$(now_ms)
	for i in $(seq $clients); do
		bouncer -At -c "SELECT status FROM idempotency.claim('slow', wait => '$w')" >"$dir/wait-$i.out" 2>&1 &
	done
	# until clients queue in PgBouncer, or all claims are done
	local waiting
	for _ in $(seq 30); do
		# SHOW POOLS: database, user, cl_active, cl_waiting, ...
		waiting=$(admin -At -F '|' -c "SHOW POOLS" | awk -F'|' -v db=$db '$1 == db && $2 == "postgres" { print $4 }' | head -1)
		[ "${waiting:-0}" -gt 0 ] && break
		[ -z "$(jobs -pr | grep -vx "$holder")" ] && break
		sleep 0.1
	done
	t1=$(now_ms)
	bouncer -At -c "SELECT 1" >/dev/null
	t2=$(now_ms)
	local pids
	pids=$(jobs -p | grep -vx "$holder" || true)
	# shellcheck disable=SC2086
	wait $pids 2>/dev/null
	local t3
	t3=$(now_ms)
	wait "$holder"
	echo "$((t3 - t0)) $((t2 - t1)) ${waiting:-?} $(cat "$dir"/wait-*.out | sort | uniq -c | awk '{printf "%s%s x%s", (NR > 1 ? "," : ""), $2, $1}')"
}
read -r w_claims w_select w_queued w_status < <(wait_cost '10 s')
read -r n_claims n_select n_queued n_status < <(wait_cost '0')
echo "        # wait => '10 s': $clients claims done after $w_claims ms ($w_status), unrelated SELECT 1 took $w_select ms, $w_queued clients queued in PgBouncer"
echo "        # wait => '0':    $clients claims done after $n_claims ms ($n_status), unrelated SELECT 1 took $n_select ms, $n_queued clients queued in PgBouncer"
[ "$w_status" = "completed x$clients" ] && [ "$w_select" -ge 1000 ] && [ "$n_select" -lt "$w_select" ] \
	&& [ "$n_status" = "in_progress x$clients" ]
check pooler/wait-holds-server-connection $? \
	"a waiting claim holds a server connection: with $clients waiters on $pool connections an unrelated query waited $w_select ms (vs $n_select ms without wait)"

# ------------------------------------------------------------ prepared statements
# Not a property of the extension, recorded for the README: protocol-level
# prepared statements through this PgBouncer in transaction mode, two
# clients sharing database "hazard"'s one server connection.
echo 'SELECT idempotency.version();' >"$dir/prepared.sql"
PGHOST=127.0.0.1 PGPORT=$port PGOPTIONS='' timeout 30 "$pgbench" -n -M prepared -c 2 -j 1 -t 5 \
	-f "$dir/prepared.sql" hazard >"$dir/prepared.out" 2>&1
echo "        # pgbench -M prepared, 2 clients through one server connection: $(grep -c 'prepared statement' "$dir/prepared.out") \"prepared statement\" errors ($(grep -m1 -o 'prepared statement "[^"]*" [a-z ]*' "$dir/prepared.out" || echo none))"

exit $rc
