#!/usr/bin/env bash
# Processed events on the distributed processed_events (after
# 20-distribute.sh): every function from the coordinator and from a worker,
# as superuser and as an ordinary role (owners are matched by role name,
# the same on every node; role OIDs differ); one record per key cluster-
# wide; a takeover and complete() (whose statements Citus would refuse with
# volatile or stable functions); purge of expired rows by an ordinary role
# (its own rows only) and by the superuser; fencing tokens strictly
# increasing per key across nodes; many clients on two nodes claiming the
# same keys: one claim per key, no error.
. "$IDEM_ROOT/test/lib/common.sh"
. "$IDEM_ROOT/test/lib/citus.sh"
W=$IDEM_CITUS_WORK
T=citus/events

# The functions, for keys prefixed p, from the node and role psql runs as.
calls() {
	local p=$1
	cat <<EOF
\\set ON_ERROR_STOP 0
SELECT CASE WHEN idempotency.mark_processed('$p-m') AND NOT idempotency.mark_processed('$p-m') THEN 'ok mark' ELSE 'FAIL mark' END;
SELECT token AS tok, fencing_token AS f1 FROM idempotency.claim('$p-c', '{"a": 1}', lease => '200 milliseconds') WHERE status = 'claimed' \\gset
SELECT CASE WHEN status = 'in_progress' THEN 'ok in_progress' ELSE 'FAIL in_progress ' || status END FROM idempotency.claim('$p-c', '{"a": 1}');
SELECT CASE WHEN status = 'mismatch' THEN 'ok mismatch' ELSE 'FAIL mismatch ' || status END FROM idempotency.claim('$p-c', '{"a": 2}');
SELECT pg_sleep(0.25);
SELECT token AS tok2, fencing_token AS f2 FROM idempotency.claim('$p-c', '{"a": 1}') WHERE status = 'claimed' AND attempts = 2 \\gset
SELECT CASE WHEN :f2 > :f1 THEN 'ok takeover, fencing up' ELSE 'FAIL takeover' END;
SELECT idempotency.complete('$p-c', '{"r": 1}', token => :'tok');
SELECT idempotency.complete('$p-c', '{"r": 2}', token => :'tok2');
SELECT CASE WHEN status = 'completed' AND result = '{"r": 2}' THEN 'ok complete + replay' ELSE 'FAIL replay ' || status END FROM idempotency.claim('$p-c', '{"a": 1}');
SELECT token AS tok3 FROM idempotency.claim('$p-f') \\gset
SELECT idempotency.fail('$p-f', '{"e": 1}', false, token => :'tok3');
SELECT CASE WHEN status = 'failed' AND error = '{"e": 1}' THEN 'ok fail stored' ELSE 'FAIL fail ' || status END FROM idempotency.claim('$p-f');
SELECT token AS tok4 FROM idempotency.claim('$p-r') \\gset
SELECT idempotency.fail('$p-r', NULL, true, token => :'tok4');
SELECT CASE WHEN status = 'claimed' THEN 'ok retryable fail frees the key' ELSE 'FAIL retryable ' || status END FROM idempotency.claim('$p-r');
BEGIN;
SELECT status FROM idempotency.claim('$p-x', require_complete => true) \\gset
SELECT idempotency.complete('$p-x', '{"in": "tx"}');
COMMIT;
SELECT CASE WHEN status = 'completed' THEN 'ok complete without token in the claiming transaction' ELSE 'FAIL tx ' || status END FROM idempotency.claim('$p-x');
BEGIN;
SELECT token AS tok5 FROM idempotency.claim('$p-y', lease => '1 minute', ttl => '1 hour') \\gset
SELECT idempotency.complete('$p-y', '{"in": "tx", "token": true}', token => :'tok5');
COMMIT;
SELECT CASE WHEN status = 'completed' AND result = '{"in": "tx", "token": true}' AND expires_at > now() + interval '59 minutes'
	THEN 'ok complete with the token in the claiming transaction keeps the ttl' ELSE 'FAIL tx token ' || status END FROM idempotency.claim('$p-y');
SELECT CASE WHEN idempotency.forget('$p-m') AND NOT idempotency.forget('$p-m') AND idempotency.mark_processed('$p-m') THEN 'ok forget' ELSE 'FAIL forget' END;
SELECT CASE WHEN idempotency.mark_processed('$p-old', ttl => '1 millisecond') THEN 'ok' END;
SELECT status FROM idempotency.claim('$p-wait', lease => '1 hour') \\gset
SELECT CASE WHEN status = 'in_progress' THEN 'ok claim wait ends in_progress' ELSE 'FAIL wait ' || status END FROM idempotency.claim('$p-wait', wait => '150 milliseconds');
EOF
}

for n in 0 1; do
	for role in postgres idem_app; do
		# The complete() with the first claim's token after the takeover
		# must fail (55P03): that error is an "ok".
		out=$(calls "n$n-$role" | idem_citus_psql "$n" -U "$role" -tA -v ON_ERROR_STOP=0 2>&1 | grep -v '^$' \
			| sed -e 's/^ERROR:  token is stale.*/ok stale token refused/' -e '/^DETAIL:  The key.s current claim/d' -e '/^HINT:  Discard/d')
		idem_citus_all_ok "every events function from node $n as $role" "$out"
	done
done

# Owners by name: the same key for two roles is two records, each seen by
# its owner from any node, and the rows carry the name.
idem_citus_all_ok "owner stored by role name; each role sees its own records from every node" "$(
	for n in 0 1 2; do
		idem_citus_psql "$n" -U idem_app -tA -c "SELECT CASE WHEN NOT idempotency.mark_processed('n0-idem_app-m') THEN 'ok dup idem_app node $n' ELSE 'FAIL node $n' END"
		idem_citus_psql "$n" -tA -c "SELECT CASE WHEN NOT idempotency.mark_processed('n0-postgres-m') THEN 'ok dup postgres node $n' ELSE 'FAIL node $n' END"
	done
	idem_citus_psql 2 -tA -c "SELECT 'ok ' || string_agg(owner || ':' || pg_typeof(owner), ',' ORDER BY owner) FROM idempotency.processed_events WHERE key = 'n1-postgres-c'" 2>&1 \
		| sed 's/^ok postgres:text$/ok stored as the role name/'
)"

# purge: idem_app's expired rows only, then the superuser's, from a worker.
sleep 0.1
idem_citus_all_ok "purge by an ordinary role (its own expired rows) and by the superuser, from a worker" "$(
	idem_citus_psql 2 -U idem_app -tA -c "SELECT CASE WHEN idempotency.purge(1) = 2 THEN 'ok idem_app purged its 2' ELSE 'FAIL idem_app' END"
	idem_citus_psql 2 -tA -c "SELECT CASE WHEN (SELECT count(*) FROM idempotency.processed_events WHERE key LIKE '%-old') = 2 THEN 'ok postgres rows left' ELSE 'FAIL left' END"
	idem_citus_psql 1 -tA -c "SELECT CASE WHEN idempotency.purge(1) = 2 THEN 'ok superuser purged the rest' ELSE 'FAIL superuser' END"
	idem_citus_psql 0 -tA -c "SELECT CASE WHEN count(*) = 0 THEN 'ok none left' ELSE 'FAIL left' END FROM idempotency.processed_events WHERE expires_at <= now()"
)"

# Fencing tokens of one key, taken over alternately on the three nodes.
: >"$W/fencing"
for i in $(seq 1 12); do
	n=$((i % 3))
	idem_citus_psql "$n" -tA -c "SELECT fencing_token FROM idempotency.claim('fence-key', lease => '1 millisecond')" >>"$W/fencing"
	sleep 0.01
done
if [ "$(wc -l <"$W/fencing")" = 12 ] && sort -n -c -u "$W/fencing" 2>/dev/null; then
	idem_pass "$T: fencing tokens strictly increasing per key across nodes (12 takeovers on 3 nodes)"
else
	sed 's/^/      /' "$W/fencing"
	idem_fail "$T: fencing tokens strictly increasing per key across nodes (12 takeovers on 3 nodes)"
fi
# ... and after a purge and re-insert of the key.
idem_citus_psql 1 -tA -c "SELECT idempotency.forget('fence-key')" >/dev/null
idem_citus_psql 2 -tA -c "SELECT fencing_token FROM idempotency.claim('fence-key')" >>"$W/fencing"
if sort -n -c -u "$W/fencing" 2>/dev/null; then
	idem_pass "$T: fencing token still higher after the record is deleted and claimed anew"
else
	tail -n 3 "$W/fencing" | sed 's/^/      /'
	idem_fail "$T: fencing token still higher after the record is deleted and claimed anew"
fi

# The claim's compare-and-swap runs as the table's owner, under the
# caller's search_path: it must name its operators with their schema.  A
# caller whose search_path puts its own "=" on bigint ahead of pg_catalog
# takes over a claim (a new fencing token, and a mark_processed record's
# NULL one) on every node: the planted operator is never called.
for n in 0 1 2; do
	idem_citus_psql "$n" -q -v ON_ERROR_STOP=1 >/dev/null <<'EOF'
SET citus.enable_ddl_propagation = off;
CREATE SCHEMA idem_spy;
GRANT USAGE ON SCHEMA idem_spy TO PUBLIC;
CREATE FUNCTION idem_spy.eq(bigint, bigint) RETURNS boolean IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
	RAISE WARNING 'planted operator called by %', current_user;
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR idem_spy.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = idem_spy.eq);
EOF
done
idem_citus_all_ok "a takeover does not run an operator from the caller's search_path" "$(
	for n in 0 1 2; do
		idem_citus_psql "$n" -U idem_app -tA -v ON_ERROR_STOP=0 2>&1 <<EOF | grep -v '^$'
SET search_path = idem_spy, pg_catalog;
SELECT fencing_token AS f1 FROM idempotency.claim('spy-$n', lease => '1 millisecond') \gset
SELECT CASE WHEN idempotency.mark_processed('spy-m-$n', ttl => '1 millisecond') THEN 'ok marked' END;
SELECT pg_sleep(0.01) IS NOT NULL AS slept \gset
SELECT CASE WHEN status = 'claimed' AND attempts = 2 AND fencing_token > :f1
	THEN 'ok takeover on node $n' ELSE 'FAIL takeover ' || status END FROM idempotency.claim('spy-$n');
SELECT CASE WHEN status = 'claimed' AND fencing_token IS NOT NULL
	THEN 'ok expired record reclaimed on node $n' ELSE 'FAIL reclaim ' || status END FROM idempotency.claim('spy-m-$n');
EOF
	done
)"

# Prepared statements (pgbench -M prepared), a new key every transaction,
# 1500 per client, 8 clients on two nodes: every claim claims and its
# complete finds it.
# (the benchmark's script: test/bench/claim-complete.pgb)
if idem_citus_pgbench_pair "$W/claim-new" "$IDEM_ROOT/test/bench/claim-complete.pgb" \
	"$IDEM_ROOT/test/bench/claim-complete.pgb" -M prepared -c 4 -j 2 -t 1500 -D scope=prepared; then
	idem_pass "$T: claim + complete of 12,000 new keys, prepared, 8 clients on two nodes: no error"
else
	idem_fail "$T: claim + complete of 12,000 new keys, prepared, 8 clients on two nodes: no error"
fi

# Many clients on two nodes claim the same 20 keys: each key is claimed
# exactly once, and nobody gets an error.
cat >"$W/claim.sql" <<'EOF'
\set k random(1, 20)
BEGIN;
SELECT (status = 'claimed')::int AS won FROM idempotency.claim('hot-' || :k, NULL, 'race', wait => '5 seconds') \gset
\if :won
SELECT idempotency.complete('hot-' || :k, jsonb_build_object('by', pg_backend_pid()), 'race');
\endif
COMMIT;
EOF
pids=()
for n in 0 1; do
	port=IDEM_CITUS_PORT$n
	"$PGBINDIR/pgbench" -n --random-seed=rand -h 127.0.0.1 -p "${!port}" -U idem_app -c 4 -j 2 -t 40 \
		-f "$W/claim.sql" postgres >"$W/pgbench-$n.out" 2>&1 &
	pids+=($!)
done
ok=1
for i in 0 1; do
	if ! wait "${pids[$i]}" || ! grep -q 'number of failed transactions: 0' "$W/pgbench-$i.out" \
		|| grep -qi 'error' "$W/pgbench-$i.out"; then
		ok=0
		grep -v '^$' "$W/pgbench-$i.out" | head -n 15 | sed 's/^/      /'
	fi
done
claimed=$(idem_citus_psql 2 -tA -c "SELECT count(*), count(DISTINCT key), max(attempts), count(*) FILTER (WHERE status = 'completed') FROM idempotency.processed_events WHERE scope = 'race'")
if [ $ok = 1 ] && [ "$claimed" = "20|20|1|20" ]; then
	idem_pass "$T: 8 clients on two nodes claiming 20 keys: one claim per key, no error"
else
	echo "      records (count|keys|max attempts|completed): $claimed"
	idem_fail "$T: 8 clients on two nodes claiming 20 keys: one claim per key, no error"
fi

# A claim that waits on a distributed table looks at the key every 100 ms:
# nothing of a look outlives it (each used to leave SPI's result, at least
# 8 kB, until the call ended: gigabytes over a wait of a day).  The waiter's
# memory contexts are logged during the wait and its SPI results counted.
idem_citus_psql 0 -U idem_app -qtA -c "SELECT status FROM idempotency.claim('memwait', lease => '1 minute')" >/dev/null
PGAPPNAME=idem-memwait idem_citus_psql 1 -U idem_app -qtA \
	-c "SELECT status FROM idempotency.claim('memwait', wait => '4 seconds')" >"$W/memwait.out" 2>&1 &
memwait=$!
sleep 3
wpid=$(idem_citus_psql 1 -qtA -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'idem-memwait' AND state = 'active'")
idem_citus_psql 1 -qtA -c "SELECT pg_log_backend_memory_contexts($wpid)" >/dev/null
wait "$memwait"
sleep 0.5
tuptables=$(grep -c "\[$wpid\] .*SPI TupTable" "$IDEM_CITUS_DIR/node1/server.log" || true)
dumped=$(grep -c "\[$wpid\] .*logging memory contexts" "$IDEM_CITUS_DIR/node1/server.log" || true)
if [ -n "$wpid" ] && [ "$dumped" = 1 ] && [ "$tuptables" -le 2 ] && [ "$(cat "$W/memwait.out")" = in_progress ]; then
	idem_pass "$T: a claim waiting 3 s on a distributed key holds $tuptables SPI results (it looked about 30 times)"
else
	echo "      waiter pid '$wpid', memory dumps $dumped, SPI results $tuptables, answer '$(cat "$W/memwait.out")'"
	idem_fail "$T: a claim waiting on a distributed key does not keep the result of every look"
fi
idem_citus_psql 0 -U idem_app -qtA -c "SELECT idempotency.forget('memwait')" >/dev/null
