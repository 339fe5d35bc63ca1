# Citus: get_or_create against what an application does without the
# extension, INSERT ... ON CONFLICT DO NOTHING then SELECT, both through
# Citus on a distributed table, on a 3-node cluster (coordinator + 2
# workers on this machine, built and started by test/lib/citus.sh; its own
# servers, not the benchmark's).  Clients connect to two nodes at once: half
# to the coordinator, half to a worker (metadata is synced, so a worker
# routes the statements itself).  "hot": 20 existing keys, every call a hit
# (target 1.5x); "new": a new key every call (reported, no target).  WAL and
# xid columns are the benchmark cluster's, not Citus's: ignore them here.
# "claim": claim + complete on the distributed processed_events against
# INSERT ... ON CONFLICT DO NOTHING + UPDATE on a colocated table (reported).
# Skipped in the smoke run (the cluster takes seconds to start; the Citus
# suite, test/run citus, runs the same calls).
bench_title "Citus: get_or_create vs INSERT ON CONFLICT DO NOTHING + SELECT, distributed table, clients on coordinator + worker"
. "$IDEM_ROOT/test/lib/citus.sh"
if ! idem_citus_source; then
	echo "skipped: no Citus source ($(realpath -m "$IDEM_CITUS_TARBALL"))"
	return 0
fi
if ! idem_citus_supported; then
	echo "skipped: Citus 13.2.2 does not support PostgreSQL $(idem_pg_major)"
	return 0
fi
if [ "${BENCH_SMOKE:-0}" = 1 ]; then
	echo "skipped in the smoke run: a 3-node Citus cluster takes seconds to start (test/run citus covers these calls)"
	return 0
fi
if ! (idem_citus_install); then
	echo "skipped: Citus could not be built or installed (see the messages above)"
	return 0
fi

citus_dir=$BENCH_GROUP_DIR/cluster
citus_bench_stop() { idem_citus_stop "$citus_dir"; rm -rf "$citus_dir"; }
trap citus_bench_stop EXIT
idem_citus_start "$citus_dir"
idem_citus_psql 0 >/dev/null <<'SQL'
CREATE EXTENSION idempotency;
CREATE TABLE citus_bench (
    id         bigint PRIMARY KEY,
    email      text NOT NULL,
    plan       text NOT NULL DEFAULT 'free',
    created_at timestamptz NOT NULL DEFAULT now()
);
SELECT create_distributed_table('citus_bench', 'id');
INSERT INTO citus_bench (id, email) SELECT g, 'u' || g FROM generate_series(1, 20) g;
SELECT idempotency.citus_distribute();
CREATE TABLE citus_keys (scope text NOT NULL, key text NOT NULL,
    status text NOT NULL, fingerprint bytea, result jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL, PRIMARY KEY (scope, key));
SELECT create_distributed_table('citus_keys', 'key', colocate_with => 'idempotency.processed_events');
SQL

# citus_variant NAME CLIENTS <<script: pgbench on the coordinator (half the
# clients, rounded up) and on worker 1 (the rest) at once; the two summary
# lines are the sums.
citus_variant() {
	local name=$1 clients=$2
	cat >"$BENCH_GROUP_DIR/$name.citus.pgb"
	bench_command "$name" "$clients" <<SH
set -u
c0=\$(( (BENCH_CLIENTS + 1) / 2 )); c1=\$(( BENCH_CLIENTS / 2 ))
"$PGBINDIR/pgbench" -n --random-seed=rand -M prepared -h 127.0.0.1 -p $IDEM_CITUS_PORT0 -U postgres -c \$c0 -j 1 -T \$BENCH_SECONDS \\
	-f "$BENCH_GROUP_DIR/$name.citus.pgb" postgres >"$BENCH_GROUP_DIR/$name.node0.log" 2>&1 & p0=\$!
p1=
if [ \$c1 -gt 0 ]; then
	"$PGBINDIR/pgbench" -n --random-seed=rand -M prepared -h 127.0.0.1 -p $IDEM_CITUS_PORT1 -U postgres -c \$c1 -j 1 -T \$BENCH_SECONDS \\
		-f "$BENCH_GROUP_DIR/$name.citus.pgb" postgres >"$BENCH_GROUP_DIR/$name.node1.log" 2>&1 & p1=\$!
fi
rc=0
wait \$p0 || rc=1
[ -z "\$p1" ] || wait \$p1 || rc=1
cat "$BENCH_GROUP_DIR/$name".node*.log | awk '
	/^number of failed transactions: [1-9]/ { print; bad = 1 }
	/^number of transactions actually processed:/ { tx += \$6 }
	/^tps = .*without initial connection time/ { tps += \$3 }
	END { printf "number of transactions actually processed: %d\\ntps = %f (without initial connection time)\\n", tx, tps; exit bad }' || rc=1
[ \$rc = 0 ] || cat "$BENCH_GROUP_DIR/$name".node*.log >&2
exit \$rc
SH
}

citus_variant ours_hot 8 <<'PGB'
\set k random(1, 20)
SELECT * FROM idempotency.get_or_create(NULL::citus_bench, jsonb_build_object('id', :k::bigint, 'email', 'u' || :k::bigint));
PGB
citus_variant plain_hot 8 <<'PGB'
\set k random(1, 20)
INSERT INTO citus_bench (id, email) VALUES (:k, 'u' || :k) ON CONFLICT (id) DO NOTHING;
SELECT * FROM citus_bench WHERE id = :k;
PGB
citus_variant ours_new 8 <<'PGB'
\set k random(1000, 4000000000000000)
SELECT * FROM idempotency.get_or_create(NULL::citus_bench, jsonb_build_object('id', :k::bigint, 'email', 'u' || :k::bigint));
PGB
citus_variant plain_new 8 <<'PGB'
\set k random(1000, 4000000000000000)
INSERT INTO citus_bench (id, email) VALUES (:k, 'u' || :k) ON CONFLICT (id) DO NOTHING;
SELECT * FROM citus_bench WHERE id = :k;
PGB
# claim + complete in one transaction on the distributed processed_events
# (after citus_distribute()) against the hand-written pattern on a table of
# the same shape distributed the same way: INSERT ... ON CONFLICT DO
# NOTHING, then UPDATE.  A new key every transaction.  A claim that does not
# answer 'claimed' for its new key fails the run with what it answered
# instead, and how many rows the key has.  Each pgbench seeds itself from
# the system's random source: with the default seed (the clock in
# microseconds) the two processes sometimes drew the same keys.
citus_variant ours_claim 8 <<'PGB'
\set k random(1, 9000000000000000000)
BEGIN;
SELECT status AS st, coalesce(result::text, '-') AS res, coalesce(attempts::text, '-') AS att
  FROM idempotency.claim('req-' || :k, '{"amount": 10}', 'bench') \gset
SELECT CASE WHEN :st = 'claimed' THEN idempotency.complete('req-' || :k, '{"ok": true}', 'bench')::text
       ELSE ('claim answered ' || :st || ', result ' || :res || ', attempts ' || :att || ', for new key req-' || :k
             || ' (rows of the key: ' || (SELECT count(*) FROM idempotency.processed_events WHERE key = 'req-' || :k) || ')')::int::text END;
COMMIT;
PGB
citus_variant plain_claim 8 <<'PGB'
\set k random(1, 9000000000000000000)
BEGIN;
INSERT INTO citus_keys (scope, key, status, fingerprint, expires_at)
    VALUES ('bench', 'req-' || :k, 'in_progress',
            sha256(convert_to('{"amount": 10}'::jsonb::text, 'UTF8')),
            clock_timestamp() + interval '1 day')
    ON CONFLICT DO NOTHING RETURNING status;
UPDATE citus_keys SET status = 'completed', result = '{"ok": true}'
    WHERE scope = 'bench' AND key = 'req-' || :k;
COMMIT;
PGB
bench_ratio ours_claim plain_claim
bench_ratio ours_hot plain_hot 1.5
bench_ratio ours_new plain_new
bench_run
