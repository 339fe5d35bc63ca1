#!/usr/bin/env bash
# DROP EXTENSION / CREATE EXTENSION on the cluster, with the tables
# distributed and holding rows: the shards and metadata go, nothing of the
# extension is left on any node, CREATE EXTENSION (forwarded by Citus to
# the workers) works again, twice; and citus_distribute(colocate_with)
# puts processed_events and leases in the application table's colocation
# group.  Runs last: it re-creates the extension.
. "$IDEM_ROOT/test/lib/common.sh"
. "$IDEM_ROOT/test/lib/citus.sh"
W=$IDEM_CITUS_WORK
T=citus/extension-cycle

leftovers() {
	local n
	for n in 0 1 2; do
		idem_citus_psql "$n" -tA -c "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'idempotency'),
			(SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'idempotency'),
			(SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text LIKE 'idempotency.%'),
			(SELECT count(*) FROM pg_extension WHERE extname = 'idempotency')"
	done | tr '\n' ' '
}

idem_citus_psql 0 >/dev/null <<'EOF'
CREATE SCHEMA co;
CREATE TABLE co.orders (idem_key text PRIMARY KEY, total int);
SELECT create_distributed_table('co.orders', 'idem_key');
EOF

for round in 1 2; do
	idem_citus_psql 0 -c "SELECT idempotency.mark_processed('cyc-' || g) FROM generate_series(1, 30) g" \
		-c "SELECT idempotency.lease_acquire('cyc')" >/dev/null
	if idem_citus_psql 0 -c 'DROP EXTENSION idempotency' >"$W/drop-$round.out" 2>&1; then
		idem_citus_same "round $round: DROP EXTENSION leaves nothing on any node (schema, relations, shards, metadata)" \
			"0|0|0|0 0|0|0|0 0|0|0|0 " "$(leftovers)"
	else
		sed 's/^/      /' "$W/drop-$round.out"
		idem_fail "$T: round $round: DROP EXTENSION"
	fi
	if idem_citus_psql 0 -c 'CREATE EXTENSION idempotency' >"$W/create-$round.out" 2>&1; then
		idem_pass "$T: round $round: CREATE EXTENSION again (no false 'schema already exists')"
	else
		sed 's/^/      /' "$W/create-$round.out"
		idem_fail "$T: round $round: CREATE EXTENSION again"
	fi
	if [ $round = 1 ]; then
		arg="'co.orders'"
	else
		arg=""
	fi
	idem_citus_same "round $round: citus_distribute($arg)" "distributed" \
		"$(idem_citus_psql 0 -tA -c "SELECT idempotency.citus_distribute($arg)" 2>&1)"
done

# Round 2 distributed without colocate_with; do it once more with it.
idem_citus_psql 0 -c 'DROP EXTENSION idempotency' -c 'CREATE EXTENSION idempotency' \
	-c "SELECT idempotency.citus_distribute('co.orders')" >/dev/null
idem_citus_same "colocate_with: processed_events and leases share co.orders's colocation group" "t|t" \
	"$(idem_citus_psql 0 -tA -c "SELECT
		(SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'idempotency.processed_events'::regclass)
		  = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'co.orders'::regclass),
		(SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'idempotency.leases'::regclass)
		  = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'co.orders'::regclass)")"

# With colocation, a mark and the business row of the same key are on the
# same node: one transaction through a worker commits them on one shard group.
idem_citus_same "colocated: the mark and the order row of one key are on the same node" "t" \
	"$(idem_citus_psql 1 -tA -c "BEGIN" -c "SELECT idempotency.mark_processed('order-77')" \
		-c "INSERT INTO co.orders VALUES ('order-77', 5)" -c "COMMIT" -c "SELECT
		(SELECT groupid FROM pg_dist_placement WHERE shardid = get_shard_id_for_distribution_column('idempotency.processed_events', 'order-77'))
		= (SELECT groupid FROM pg_dist_placement WHERE shardid = get_shard_id_for_distribution_column('co.orders', 'order-77'))
		AND NOT idempotency.mark_processed('order-77')
		AND (SELECT total FROM co.orders WHERE idem_key = 'order-77') = 5" | tail -n 1)"

# A trusted install by the database owner (not a superuser): the superuser
# distributes, the owner drops and creates the extension again.
idem_citus_psql 0 >/dev/null <<'SQL'
CREATE ROLE idem_dbo LOGIN;
ALTER DATABASE postgres OWNER TO idem_dbo;
DROP EXTENSION idempotency;
SQL
ok=1
idem_citus_psql 0 -U idem_dbo -c 'CREATE EXTENSION idempotency' >"$W/dbo.out" 2>&1 || ok=0
idem_citus_psql 0 -c 'SELECT idempotency.citus_distribute()' >>"$W/dbo.out" 2>&1 || ok=0
idem_citus_psql 0 -U idem_dbo -c "SELECT idempotency.mark_processed('dbo-1')" \
	-c "SELECT idempotency.lease_acquire('dbo')" -c 'DROP EXTENSION idempotency' >>"$W/dbo.out" 2>&1 || ok=0
left=$(leftovers)
idem_citus_psql 0 -U idem_dbo -c 'CREATE EXTENSION idempotency' >>"$W/dbo.out" 2>&1 || ok=0
if [ $ok = 1 ] && [ "$left" = "0|0|0|0 0|0|0|0 0|0|0|0 " ]; then
	idem_pass "$T: trusted install by the database owner: drop and create again after the superuser distributed"
else
	echo "      leftovers: $left"
	sed 's/^/      /' "$W/dbo.out"
	idem_fail "$T: trusted install by the database owner: drop and create again after the superuser distributed"
fi
idem_citus_psql 0 -c 'ALTER DATABASE postgres OWNER TO postgres' >/dev/null
