#!/usr/bin/env bash
# Leases on the distributed leases table (after 20-distribute.sh): every
# function from the coordinator and from a worker, as superuser and as an
# ordinary role; one holder cluster-wide; fencing tokens strictly
# increasing across nodes; a waiting acquire woken by a release on another
# node within the poll bound (IDEM_CITUS_POLL_MS = 100 ms, src/citus.h).
. "$IDEM_ROOT/test/lib/common.sh"
. "$IDEM_ROOT/test/lib/citus.sh"
W=$IDEM_CITUS_WORK
T=citus/lease

calls() {
	local p=$1
	cat <<EOF
SELECT token AS tok, fencing_token AS f1 FROM idempotency.lease_acquire('$p', '1 minute', 'me') WHERE status = 'acquired' \\gset
SELECT CASE WHEN status = 'renewed' THEN 'ok renew' ELSE 'FAIL renew' END FROM idempotency.lease_renew('$p', :'tok', '2 minutes');
SELECT CASE WHEN idempotency.lease_assert('$p', :'tok') = :f1 THEN 'ok assert' ELSE 'FAIL assert' END;
SELECT CASE WHEN holder = 'me' AND token = :'tok' THEN 'ok status' ELSE 'FAIL status' END FROM idempotency.lease_status('$p');
SELECT CASE WHEN status = 'precondition_failed' THEN 'ok if_match' ELSE 'FAIL if_match ' || status END FROM idempotency.lease_acquire('$p', if_match => gen_random_uuid());
SELECT token AS tok2, fencing_token AS f2 FROM idempotency.lease_acquire('$p', if_match => :'tok') WHERE status = 'acquired' \\gset
SELECT CASE WHEN :f2 > :f1 THEN 'ok hand-over, fencing up' ELSE 'FAIL hand-over' END;
SELECT CASE WHEN idempotency.lease_release('$p', :'tok') = 'precondition_failed' THEN 'ok stale release refused' ELSE 'FAIL stale release' END;
SELECT CASE WHEN idempotency.lease_release('$p', :'tok2') = 'released' THEN 'ok release' ELSE 'FAIL release' END;
SELECT CASE WHEN count(*) = 0 THEN 'ok free' ELSE 'FAIL free' END FROM idempotency.lease_status('$p');
EOF
}

for n in 0 1; do
	for role in postgres idem_app; do
		idem_citus_all_ok "every lease function from node $n as $role" \
			"$(calls "lease-n$n-$role" | idem_citus_psql "$n" -U "$role" -tA 2>&1 | grep -v '^$')"
	done
done

# Every shard of leases keeps the table's fillfactor (the shards are
# created from the distributed table's definition): each node lists its
# shards of leases, as many in all as pg_dist_shard has.
for n in 0 1 2; do
	idem_citus_psql "$n" -tA -c "SET citus.override_table_visibility TO off" -c "
SELECT c.relname || ' ' || coalesce(c.reloptions::text, '{}')
  FROM pg_class c
 WHERE c.relnamespace = 'idempotency'::regnamespace AND c.relkind = 'r'
   AND c.relname ~ '^leases_[0-9]+$'"
done >"$W/lease-shards"
nshards=$(idem_citus_psql 0 -tA -c "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'idempotency.leases'::regclass")
if [ "$nshards" -gt 0 ] && [ "$(grep -c ' {fillfactor=80}$' "$W/lease-shards")" = "$nshards" ] &&
	[ "$(wc -l <"$W/lease-shards")" = "$nshards" ]; then
	idem_pass "$T: every shard of leases has fillfactor 80 ($nshards shards)"
else
	echo "      pg_dist_shard: $nshards shards; on the nodes:"
	sed 's/^/      /' "$W/lease-shards"
	idem_fail "$T: every shard of leases has fillfactor 80"
fi

idem_citus_all_ok "one holder cluster-wide; a lease taken through a worker is seen and refused through the others" "$(
	idem_citus_psql 1 -U idem_app -tA -c "SELECT CASE WHEN status = 'acquired' THEN 'ok acquired on node 1' ELSE 'FAIL' END FROM idempotency.lease_acquire('one', '1 minute', 'w1')"
	idem_citus_psql 0 -tA -c "SELECT CASE WHEN status = 'conflict' AND holder = 'w1' THEN 'ok conflict on node 0' ELSE 'FAIL' END FROM idempotency.lease_acquire('one')"
	idem_citus_psql 2 -U idem_app -tA -c "SELECT CASE WHEN status = 'conflict' AND holder = 'w1' THEN 'ok conflict on node 2' ELSE 'FAIL' END FROM idempotency.lease_acquire('one')"
)"

: >"$W/fencing"
for i in $(seq 1 9); do
	idem_citus_psql $((i % 3)) -tA -c "SELECT fencing_token FROM idempotency.lease_acquire('fence', '1 millisecond')" >>"$W/fencing"
	sleep 0.01
done
if [ "$(wc -l <"$W/fencing")" = 9 ] && sort -n -c -u "$W/fencing" 2>/dev/null; then
	idem_pass "$T: fencing tokens strictly increasing across nodes (9 acquires on 3 nodes)"
else
	sed 's/^/      /' "$W/fencing"
	idem_fail "$T: fencing tokens strictly increasing across nodes"
fi

# A waiter on node 2 and a release through node 1: the waiter acquires
# within the poll bound of the release (plus scheduling slack).
tok=$(idem_citus_psql 1 -tA -c "SELECT token FROM idempotency.lease_acquire('wake', '1 minute', 'holder')")
idem_citus_psql 2 -U idem_app -tA -c "SELECT status || ' ' || extract(epoch FROM clock_timestamp()) FROM idempotency.lease_acquire('wake', '1 minute', 'waiter', wait => '20 seconds')" >"$W/waiter.out" 2>&1 &
pw=$!
sleep 1.5
released=$(idem_citus_psql 1 -tA -c "SELECT extract(epoch FROM clock_timestamp()) FROM (SELECT idempotency.lease_release('wake', '$tok')) r")
wait $pw
read -r status acquired <"$W/waiter.out"
gap_ms=
[ -n "$acquired" ] && gap_ms=$(awk -v a="$acquired" -v b="$released" 'BEGIN { printf "%d", (a - b) * 1000 }')
if [ "$status" = acquired ] && [ "${gap_ms:-99999}" -lt 400 ]; then
	idem_pass "$T: a wait on node 2 is ended by a release on node 1 ($gap_ms ms after it; bound 100 ms poll)"
else
	echo "      waiter: $(cat "$W/waiter.out"); released at $released"
	idem_fail "$T: a wait on node 2 is ended by a release on node 1"
fi

# The same for a claim waiting on another node's complete().
tok=$(idem_citus_psql 1 -U idem_app -tA -c "SELECT token FROM idempotency.claim('wake-claim', lease => '1 minute')")
idem_citus_psql 2 -U idem_app -tA -c "SELECT status || ' ' || extract(epoch FROM clock_timestamp()) FROM idempotency.claim('wake-claim', wait => '20 seconds')" >"$W/cwaiter.out" 2>&1 &
pw=$!
sleep 1.5
done_at=$(idem_citus_psql 1 -U idem_app -tA -c "SELECT extract(epoch FROM clock_timestamp()) FROM (SELECT idempotency.complete('wake-claim', '{\"ok\": 1}', token => '$tok')) r")
wait $pw
read -r status acquired <"$W/cwaiter.out"
gap_ms=
[ -n "$acquired" ] && gap_ms=$(awk -v a="$acquired" -v b="$done_at" 'BEGIN { printf "%d", (a - b) * 1000 }')
if [ "$status" = completed ] && [ "${gap_ms:-99999}" -lt 400 ]; then
	idem_pass "$T: a claim waiting on node 2 sees a complete() on node 1 ($gap_ms ms after it; bound 100 ms poll)"
else
	echo "      waiter: $(cat "$W/cwaiter.out"); completed at $done_at"
	idem_fail "$T: a claim waiting on node 2 sees a complete() on node 1"
fi
