#!/usr/bin/env bash
# Every kind of call in one session, on the coordinator and on a worker,
# as the superuser and as an ordinary role: upserts on a distributed table,
# processed events, mutexes, leases, purge and the statistics.  An
# application's pooled connection does all of these.  Citus keeps five
# relcache callbacks of its own and PostgreSQL allows a backend ten, so an
# extension registering one per cache ran out and ended the session with a
# FATAL error the first time it used both upserts and processed events.
. "$IDEM_ROOT/test/lib/common.sh"
. "$IDEM_ROOT/test/lib/citus.sh"
W=$IDEM_CITUS_WORK
T=citus/one-session

idem_citus_psql 0 >"$W/setup.out" 2>&1 <<'EOF' || { cat "$W/setup.out"; idem_fail "$T: setup"; exit 1; }
CREATE SCHEMA os;
CREATE TABLE os.items (id bigint PRIMARY KEY, v text, n int DEFAULT 7);
SELECT create_distributed_table('os.items', 'id');
CREATE TABLE os.ref (id bigint PRIMARY KEY, v text);
SELECT create_reference_table('os.ref');
CREATE ROLE idem_os LOGIN;
GRANT USAGE ON SCHEMA os TO idem_os;
GRANT SELECT, INSERT, UPDATE ON os.items, os.ref TO idem_os;
EOF

# one psql session; a FATAL ends it before the last line
session() {
	local node=$1 role=$2 tag=$3
	PGUSER=$role idem_citus_psql "$node" -v ON_ERROR_STOP=1 -tA <<EOF 2>&1 | tail -n 1
SET client_min_messages = warning;
SELECT (idempotency.idempotent_upsert(NULL::os.items, '{"id": 1$node, "v": "a"}')).v;
SELECT (idempotency.get_or_create(NULL::os.ref, '{"id": 2$node, "v": "b"}')).created IS NOT NULL;
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::os.items,
	'[{"id": 3$node, "v": "c"}, {"id": 4$node, "v": "d"}]');
SELECT (idempotency.update_or_create(NULL::os.items, '{"id": 1$node, "v": "e"}')).created;
SELECT idempotency.mark_processed('os-$tag');
BEGIN;
SELECT status FROM idempotency.claim('os-claim-$tag');
SELECT idempotency.complete('os-claim-$tag', '{"ok": true}');
COMMIT;
BEGIN;
SELECT idempotency.mutex_lock('os-$tag');
SELECT idempotency.mutex_try_lock('os-$tag-2');
COMMIT;
SELECT status FROM idempotency.lease_acquire('os-$tag');
SELECT idempotency.lease_release('os-$tag');
SELECT idempotency.purge() >= 0;
SELECT count(*) >= 0 FROM idempotency.stats;
SELECT 'one session: done';
EOF
}

for node in 0 1; do
	for role in postgres idem_os; do
		idem_citus_same "node $node, $role: upserts, events, mutexes, leases, purge and stats in one session" \
			"one session: done" "$(session $node $role n$node-$role)"
	done
done
if grep -h 'relcache_callback' "$IDEM_CITUS_WORK"/../cluster/node*/server.log 2>/dev/null | head -n 3 | grep -q .; then
	idem_fail "$T: a server log reports running out of relcache callback slots"
else
	idem_pass "$T: no server log reports running out of relcache callback slots"
fi
