#!/usr/bin/env bash
# Upsert functions on every kind of table a Citus cluster has -- a plain
# table on the coordinator, a Citus local table, a reference table and
# distributed tables (hash, partitioned, without a shard key) -- from the
# coordinator and from a worker, as superuser and as an ordinary role; a
# table whose rows were in it before it was distributed (the coordinator's
# shell table keeps them on disk: they must never be returned); every column
# type, default, generated and domain column, a dropped column; what is
# refused; and concurrent calls from two nodes on a few hot keys
# (get_or_create, update_or_create, batches in opposite key orders).
. "$IDEM_ROOT/test/lib/common.sh"
. "$IDEM_ROOT/test/lib/citus.sh"
W=$IDEM_CITUS_WORK
T=citus/upsert

idem_citus_psql 0 >"$W/setup.out" 2>&1 <<'EOF' || { cat "$W/setup.out"; idem_fail "$T: setup"; exit 1; }
CREATE SCHEMA up;
CREATE TABLE up.t_plain (id bigint PRIMARY KEY, v text, n int DEFAULT 7);
CREATE TABLE up.t_local (id bigint PRIMARY KEY, v text, n int DEFAULT 7);
SELECT citus_add_local_table_to_metadata('up.t_local');
CREATE TABLE up.t_ref (id bigint PRIMARY KEY, v text, n int DEFAULT 7);
SELECT create_reference_table('up.t_ref');
CREATE TABLE up.t_dist (id bigint PRIMARY KEY, v text, n int DEFAULT 7);
SELECT create_distributed_table('up.t_dist', 'id');
CREATE TABLE up.t_part (id bigint PRIMARY KEY, v text, n int DEFAULT 7) PARTITION BY RANGE (id);
CREATE TABLE up.t_part_low PARTITION OF up.t_part FOR VALUES FROM (MINVALUE) TO (5100);
CREATE TABLE up.t_part_high PARTITION OF up.t_part FOR VALUES FROM (5100) TO (MAXVALUE);
SELECT create_distributed_table('up.t_part', 'id');
CREATE TABLE up.t_single (id bigint PRIMARY KEY, v text, n int DEFAULT 7);
SELECT create_distributed_table('up.t_single', NULL);

-- rows written before distributing stay in the coordinator's shell table
CREATE TABLE up.shell (id bigint PRIMARY KEY, v text);
INSERT INTO up.shell SELECT g, 'before' FROM generate_series(1, 4) g;
SELECT create_distributed_table('up.shell', 'id');
UPDATE up.shell SET v = 'after' WHERE id IN (1, 3);
DELETE FROM up.shell WHERE id IN (2, 4);

CREATE TYPE up.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN up.posint AS int CHECK (VALUE > 0);
CREATE TABLE up.types (
	id bigint NOT NULL,
	k text NOT NULL,
	gone int,
	d up.posint,
	g int GENERATED ALWAYS AS (d * 2) STORED,
	ts timestamptz NOT NULL DEFAULT '2020-01-02 03:04:05+00',
	s bigserial,
	arr int[],
	j jsonb,
	num numeric(10, 2),
	m up.mood DEFAULT 'ok',
	b bytea,
	big text,
	PRIMARY KEY (id, k));
ALTER TABLE up.types DROP COLUMN gone;
SELECT create_distributed_table('up.types', 'id');

CREATE TABLE up.rls (id bigint PRIMARY KEY, owner text);
SELECT create_distributed_table('up.rls', 'id');
ALTER TABLE up.rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY mine ON up.rls USING (owner = current_user) WITH CHECK (true);

CREATE TABLE up.hot (id bigint PRIMARY KEY, node int, client int);
SELECT create_distributed_table('up.hot', 'id');

GRANT USAGE ON SCHEMA up TO idem_app;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA up TO idem_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA up TO idem_app;
EOF
idem_pass "$T: setup"

# The four functions on one table from one node as one role, keys base+1..9.
# (up.t_part is a distributed partitioned table: the keys used from the
# coordinator land in one partition, those from the worker in the other;
# up.t_single a distributed table without a shard key, one shard.)
calls() {
	local tbl=$1 b=$2
	cat <<EOF
SELECT CASE WHEN created AND (item).v = 'a' AND (item).n = 7 THEN 'ok' ELSE 'FAIL' END
       || ' get_or_create new: ' || row((item).id, (item).v, (item).n)::text || ' ' || created
  FROM idempotency.get_or_create(NULL::$tbl, jsonb_build_object('id', $b + 1, 'v', 'a'));
SELECT CASE WHEN NOT created AND (item).v = 'a' THEN 'ok' ELSE 'FAIL' END
       || ' get_or_create existing: ' || row((item).id, (item).v, (item).n)::text || ' ' || created
  FROM idempotency.get_or_create(NULL::$tbl, jsonb_build_object('id', $b + 1, 'v', 'b'));
SELECT CASE WHEN u.v = 'a' AND u.id = $b + 1 THEN 'ok' ELSE 'FAIL' END || ' idempotent_upsert existing: ' || row(u.id, u.v, u.n)::text
  FROM idempotency.idempotent_upsert(NULL::$tbl, jsonb_build_object('id', $b + 1, 'v', 'z')) u;
SELECT CASE WHEN u.v = 'u' AND u.n = 7 THEN 'ok' ELSE 'FAIL' END || ' idempotent_upsert new: ' || row(u.id, u.v, u.n)::text
  FROM idempotency.idempotent_upsert(NULL::$tbl, jsonb_build_object('id', $b + 2, 'v', 'u')) u;
SELECT CASE WHEN NOT created AND (item).v = 'c' AND (item).n = 7 THEN 'ok' ELSE 'FAIL' END
       || ' update_or_create update: ' || row((item).id, (item).v, (item).n)::text || ' ' || created
  FROM idempotency.update_or_create(NULL::$tbl, jsonb_build_object('id', $b + 1, 'v', 'c'));
SELECT CASE WHEN NOT created AND (item).v = 'c' THEN 'ok' ELSE 'FAIL' END
       || ' update_or_create unchanged: ' || row((item).id, (item).v, (item).n)::text || ' ' || created
  FROM idempotency.update_or_create(NULL::$tbl, jsonb_build_object('id', $b + 1, 'v', 'c'));
SELECT CASE WHEN created AND (item).v = 'n' AND (item).n = 9 THEN 'ok' ELSE 'FAIL' END
       || ' update_or_create new: ' || row((item).id, (item).v, (item).n)::text || ' ' || created
  FROM idempotency.update_or_create(NULL::$tbl, jsonb_build_object('id', $b + 3, 'v', 'n', 'n', 9));
SELECT CASE WHEN s = format('%s:m,%s:c,%s:-,%s:m', $b + 4, $b + 1, $b + 5, $b + 4) THEN 'ok' ELSE 'FAIL' END
       || ' idempotent_upsert_many: ' || s
  FROM (SELECT string_agg(format('%s:%s', m.id, coalesce(m.v, '-')), ',' ORDER BY m.ord) AS s
          FROM idempotency.idempotent_upsert_many(NULL::$tbl,
               jsonb_build_array(jsonb_build_object('id', $b + 4, 'v', 'm'), jsonb_build_object('id', $b + 1),
                                 jsonb_build_object('id', $b + 5), jsonb_build_object('id', $b + 4, 'v', 'other')))
               WITH ORDINALITY AS m(id, v, n, ord)) x;
SELECT CASE WHEN s = format('%s:k,%s:c,%s:k', $b + 6, $b + 1, $b + 6) THEN 'ok' ELSE 'FAIL' END
       || ' idempotent_upsert_columns: ' || s
  FROM (SELECT string_agg(format('%s:%s', m.id, coalesce(m.v, '-')), ',' ORDER BY m.ord) AS s
          FROM idempotency.idempotent_upsert_columns(NULL::$tbl, '{id,v}', NULL,
               ARRAY[$b + 6, $b + 1, $b + 6]::bigint[], ARRAY['k', 'x', 'y'])
               WITH ORDINALITY AS m(id, v, n, ord)) x;
SELECT CASE WHEN s = format('%s:c,%s:u,%s:n,%s:m,%s:-,%s:k', $b + 1, $b + 2, $b + 3, $b + 4, $b + 5, $b + 6) THEN 'ok' ELSE 'FAIL' END
       || ' table contents: ' || s
  FROM (SELECT string_agg(format('%s:%s', id, coalesce(v, '-')), ',' ORDER BY id) AS s
          FROM $tbl WHERE id BETWEEN $b + 1 AND $b + 9) x;
EOF
}

k=0
for tbl in up.t_plain up.t_local up.t_ref up.t_dist up.t_part up.t_single; do
	k=$((k + 1))
	for node in 0 1; do
		# a plain table is the coordinator's own: there is none on a worker
		[ "$tbl" = up.t_plain ] && [ "$node" != 0 ] && continue
		for role in postgres idem_app; do
			[ "$role" = postgres ] && b=$((k * 1000 + node * 100)) || b=$((k * 1000 + node * 100 + 50))
			out=$(calls "$tbl" "$b" | PGUSER=$role idem_citus_psql "$node" -tA 2>&1)
			idem_citus_all_ok "$tbl from node $node as $role" "$out"
		done
	done
done

# The shell table still holds ids 1-4 as "before"; through Citus 1 and 3 are
# "after" and 2 and 4 are gone.
for node in 0 1; do
	out=$(idem_citus_psql "$node" -tA 2>&1 <<EOF
SELECT CASE WHEN NOT created AND (item).v = 'after' THEN 'ok' ELSE 'FAIL' END
       || ' updated row: ' || row((item).id, (item).v)::text || ' ' || created
  FROM idempotency.get_or_create(NULL::up.shell, '{"id": 1, "v": "x"}');
SELECT CASE WHEN (item).v = 'after' THEN 'ok' ELSE 'FAIL' END || ' updated row (update_or_create, no change): ' || row((item).id, (item).v)::text
  FROM idempotency.update_or_create(NULL::up.shell, '{"id": 3, "v": "after"}');
SELECT CASE WHEN u.v = 'after' THEN 'ok' ELSE 'FAIL' END || ' updated row (idempotent_upsert): ' || row(u.id, u.v)::text
  FROM idempotency.idempotent_upsert(NULL::up.shell, '{"id": 3}') u;
SELECT CASE WHEN created AND (item).v = 'new$node' THEN 'ok' ELSE 'FAIL' END
       || ' deleted row: ' || row((item).id, (item).v)::text || ' ' || created
  FROM idempotency.get_or_create(NULL::up.shell, jsonb_build_object('id', 2 + 2 * $node, 'v', 'new$node'));
SELECT CASE WHEN string_agg(coalesce(m.v, '-'), ',' ORDER BY m.ord) = 'after,new$node,after' THEN 'ok' ELSE 'FAIL' END
       || ' idempotent_upsert_many: ' || string_agg(coalesce(m.v, '-'), ',' ORDER BY m.ord)
  FROM idempotency.idempotent_upsert_many(NULL::up.shell,
       jsonb_build_array(jsonb_build_object('id', 1), jsonb_build_object('id', 2 + 2 * $node), jsonb_build_object('id', 3)))
       WITH ORDINALITY AS m(id, v, ord);
EOF
)
	idem_citus_all_ok "rows left in the shell table are never returned (node $node)" "$out"
done

# The same when this backend used the table (direct probe, cached) before
# distributing it: the cache entry must follow the table.
out=$(idem_citus_psql 0 -tA 2>&1 <<'EOF'
CREATE TABLE up.shell2 (id bigint PRIMARY KEY, v text);
INSERT INTO up.shell2 VALUES (1, 'before'), (2, 'before');
SELECT CASE WHEN NOT created AND (item).v = 'before' THEN 'ok' ELSE 'FAIL' END || ' plain table: ' || (item).v
  FROM idempotency.get_or_create(NULL::up.shell2, '{"id": 1}');
SELECT CASE WHEN count(*) = 2 THEN 'ok' ELSE 'FAIL' END || ' plain table, batch' FROM idempotency.idempotent_upsert_many(NULL::up.shell2, '[{"id": 1}, {"id": 2}]');
SELECT create_distributed_table('up.shell2', 'id') IS NULL AS distributed \gset
UPDATE up.shell2 SET v = 'after' WHERE id = 1;
DELETE FROM up.shell2 WHERE id = 2;
SELECT CASE WHEN NOT created AND (item).v = 'after' THEN 'ok' ELSE 'FAIL' END || ' distributed since: ' || (item).v
  FROM idempotency.get_or_create(NULL::up.shell2, '{"id": 1}');
SELECT CASE WHEN string_agg(coalesce(m.v, '-'), ',' ORDER BY m.ord) = 'after,-' THEN 'ok' ELSE 'FAIL' END
       || ' distributed since, batch: ' || string_agg(coalesce(m.v, '-'), ',' ORDER BY m.ord)
  FROM idempotency.idempotent_upsert_many(NULL::up.shell2, '[{"id": 1}, {"id": 2}]') WITH ORDINALITY AS m(id, v, ord);
EOF
)
idem_citus_all_ok "a table used before it was distributed: the cached plan follows it" "$out"

# Every column type, defaults, a generated and a domain column, a dropped
# column, a TOASTed value: the row returned is the row stored.
for node in 0 1 2; do
	for role in postgres idem_app; do
		id=$((node * 10 + 1)); [ "$role" = postgres ] || id=$((id + 1))
		# (the stored row is read by a statement of its own: a query with
		# both the call and the table would be pushed down to a shard)
		out=$(PGUSER=$role idem_citus_psql "$node" -tA 2>&1 <<EOF
SELECT to_jsonb(item) AS got, created AS c, (item).g = 10 AND (item).ts = '2020-01-02 03:04:05+00' AND (item).m = 'ok'
       AND (item).s IS NOT NULL AND (item).arr = '{1,NULL,3}' AND (item).num = 1.50 AND (item).b = '\x00ff'
       AND length((item).big) = 100000 AND (item).j = '{"a": [1, {"b": null}]}' AS fields
  FROM idempotency.get_or_create(NULL::up.types, jsonb_build_object('id', $id, 'k', 'x', 'd', 5, 'arr', '[1, null, 3]'::jsonb,
       'j', '{"a": [1, {"b": null}]}'::jsonb, 'num', 1.5, 'b', '\\x00ff', 'big', repeat(md5('x'), 3125))) \gset
SELECT CASE WHEN :'c'::boolean AND :'fields'::boolean AND to_jsonb(t) = :'got' THEN 'ok' ELSE 'FAIL' END
       || ' get_or_create new: ' || left(:'got', 200) || ' stored ' || left(to_jsonb(t)::text, 200)
  FROM up.types t WHERE id = $id AND k = 'x';
SELECT to_jsonb(item) AS got, created AS c FROM idempotency.get_or_create(NULL::up.types, jsonb_build_object('id', $id, 'k', 'x')) \gset
SELECT CASE WHEN NOT :'c'::boolean AND to_jsonb(t) = :'got' THEN 'ok' ELSE 'FAIL' END || ' get_or_create existing: ' || left(:'got', 200)
  FROM up.types t WHERE id = $id AND k = 'x';
SELECT to_jsonb(item) AS got, created AS c, (item).d = 7 AND (item).g = 14 AND (item).m = 'happy' AS fields
  FROM idempotency.update_or_create(NULL::up.types, jsonb_build_object('id', $id, 'k', 'x', 'd', 7, 'm', 'happy')) \gset
SELECT CASE WHEN NOT :'c'::boolean AND :'fields'::boolean AND to_jsonb(t) = :'got' THEN 'ok' ELSE 'FAIL' END || ' update_or_create: ' || left(:'got', 200)
  FROM up.types t WHERE id = $id AND k = 'x';
SELECT jsonb_agg(to_jsonb(r) ORDER BY r.k) AS got
  FROM idempotency.idempotent_upsert_many(NULL::up.types,
       jsonb_build_array(jsonb_build_object('id', $id, 'k', 'y', 'd', 1), jsonb_build_object('id', $id, 'k', 'x'))) r \gset
SELECT CASE WHEN jsonb_agg(to_jsonb(t) ORDER BY t.k) = :'got' THEN 'ok' ELSE 'FAIL' END || ' idempotent_upsert_many: ' || left(:'got', 200)
  FROM up.types t WHERE id = $id;
EOF
)
		idem_citus_all_ok "row built from the columns, every type (node $node as $role)" "$out"
	done
done

# Refused up front, with the SQLSTATE and a hint.
expect_error() {
	local name=$1 node=$2 role=$3 state=$4 sql=$5 out
	out=$(PGUSER=$role PGOPTIONS="-c client_min_messages=warning" "$PGBINDIR/psql" -X -q \
		-h 127.0.0.1 -p "$(eval echo \$IDEM_CITUS_PORT$node)" -d postgres -U "$role" \
		-v VERBOSITY=verbose -c '\set VERBOSITY verbose' -c "$sql" 2>&1)
	if grep -q "ERROR:  $state:" <<<"$out" && grep -q '^HINT:' <<<"$out"; then
		idem_pass "$T: refused: $name"
	else
		printf '%s\n' "$out" | sed 's/^/      /'
		idem_fail "$T: refused: $name"
	fi
}
expect_error "call inside a query Citus pushes down to the shards" 0 postgres 0A000 \
	"SELECT (idempotency.get_or_create(NULL::up.t_dist, jsonb_build_object('id', d.id + 100000))).created FROM up.t_dist d"
expect_error "row level security for the caller on a distributed table" 0 idem_app 0A000 \
	"SELECT * FROM idempotency.get_or_create(NULL::up.rls, '{\"id\": 1, \"owner\": \"idem_app\"}')"
expect_error "row level security for the caller, batch, from a worker" 1 idem_app 0A000 \
	"SELECT * FROM idempotency.idempotent_upsert_many(NULL::up.rls, '[{\"id\": 1, \"owner\": \"idem_app\"}]')"
# A distributed table without a shard key (one shard, in a colocation
# group) is a distributed table, not a Citus local table (Citus tells them
# apart by the colocation group): the refusal names it so.
idem_citus_psql 0 -q -c "CREATE TABLE up.rls1 (id bigint PRIMARY KEY, owner text DEFAULT current_user)" \
	-c "SELECT create_distributed_table('up.rls1', NULL)" -c "ALTER TABLE up.rls1 ENABLE ROW LEVEL SECURITY" \
	-c "CREATE POLICY mine ON up.rls1 USING (owner = current_user) WITH CHECK (true)" \
	-c "GRANT SELECT, INSERT, UPDATE ON up.rls1 TO idem_app" >/dev/null
out=$(idem_citus_psql 0 -U idem_app -tA -c "SELECT * FROM idempotency.get_or_create(NULL::up.rls1, '{\"id\": 1}')" 2>&1)
grep -q 'DETAIL:  Row level security applies to role "idem_app" on this distributed table\.' <<<"$out" \
	&& idem_pass "$T: a single-shard distributed table is named a distributed table" \
	|| { echo "      $out"; idem_fail "$T: a single-shard distributed table is named a distributed table"; }
out=$(idem_citus_psql 0 -tA -c "SELECT (item).owner, created FROM idempotency.get_or_create(NULL::up.rls, '{\"id\": 1, \"owner\": \"x\"}')" 2>&1)
[ "$out" = "x|t" ] && idem_pass "$T: a role that bypasses row level security may call it" \
	|| { echo "      $out"; idem_fail "$T: a role that bypasses row level security may call it"; }

# Concurrency from two nodes: 4 clients on the coordinator and 4 on a worker
# call get_or_create on the same 20 fresh keys of a distributed table, in
# rounds (each round starts on new keys, so every key is raced for).  Every
# call logs (key, created, the row's node and client) into a plain table of
# the node it ran on.  Per key: one row, exactly one call says created, and
# every call returned that row (the creator's node and client).
for node in 0 1; do
	idem_citus_psql "$node" -c 'CREATE TABLE public.hot_log (k bigint, created bool, node int, client int)' \
		|| { idem_fail "$T: concurrency setup"; exit 1; }
done
cat >"$W/hot.sql" <<'EOF'
\set k random(1, 20) + :base
INSERT INTO public.hot_log SELECT :k, created, (item).node, (item).client
  FROM idempotency.get_or_create(NULL::up.hot, jsonb_build_object('id', :k, 'node', :node, 'client', :client_id));
EOF
rounds=${IDEM_QUICK:+3}
rounds=${rounds:-6}
pgbench_ok=1
for r in $(seq 1 "$rounds"); do
	idem_citus_pgbench_pair "$W/hot-$r" "$W/hot.sql" "$W/hot.sql" -c 4 -j 2 -t 20 -D base=$((r * 100)) \
		|| pgbench_ok=0
done
[ $pgbench_ok = 1 ] && idem_pass "$T: concurrent get_or_create from two nodes: no error ($rounds rounds, 8 clients, 20 keys)" \
	|| idem_fail "$T: concurrent get_or_create from two nodes: no error"
{
	idem_citus_psql 0 -tA -F' ' -c 'SELECT k, created, node, client FROM public.hot_log'
	idem_citus_psql 1 -tA -F' ' -c 'SELECT k, created, node, client FROM public.hot_log'
} | sed 's/^/log /' >"$W/hot.log"
idem_citus_psql 0 -tA -F' ' -c 'SELECT id, node, client FROM up.hot' | sed 's/^/row /' >>"$W/hot.log"
out=$(awk '
	$1 == "row" { rows[$2]++; who[$2] = $3 " " $4; next }
	{ calls++; keys[$2] = 1; if ($3 == "t") created[$2]++; if (!($2 in seen)) seen[$2] = $4 " " $5;
	  else if (seen[$2] != $4 " " $5) bad = bad " key " $2 ": two different rows returned;" }
	END {
		for (k in keys) {
			n++
			if (rows[k] != 1) bad = bad " key " k ": " rows[k] + 0 " rows;"
			if (created[k] != 1) bad = bad " key " k ": created " created[k] + 0 " times;"
			if (who[k] != seen[k]) bad = bad " key " k ": returned " seen[k] ", stored " who[k] ";"
		}
		for (k in rows) if (!(k in keys)) bad = bad " key " k ": row without a call;"
		if (calls != '"$((rounds * 8 * 20))"') bad = bad " " calls " calls logged;"
		print (bad == "" ? "ok " n " keys, " calls " calls" : "FAIL" bad)
	}' "$W/hot.log")
idem_citus_all_ok "concurrent get_or_create from two nodes: one row and one creation per key, every call returned it ($out)" "$out"

# update_or_create racing from two nodes on 5 keys with two values: the
# UPDATE often finds the row already changed by the other node (its
# re-check as the table owner runs through Citus too).  No error, one row
# per key, holding one of the values.
cat >"$W/uoc.sql" <<'EOF'
\set k random(1, 5) + :base
\set v random(1, 2)
SELECT * FROM idempotency.update_or_create(NULL::up.hot, jsonb_build_object('id', :k, 'node', :v, 'client', 0));
EOF
uoc_ok=1
for r in 1 2; do
	idem_citus_pgbench_pair "$W/uoc-$r" "$W/uoc.sql" "$W/uoc.sql" -c 4 -j 2 -t 30 -D base=$((50000 + r * 100)) \
		|| uoc_ok=0
done
n=$(idem_citus_psql 0 -tA -c "SELECT count(*) FILTER (WHERE node IN (1, 2)) || ' ' || count(*) FROM up.hot WHERE id BETWEEN 50000 AND 60000")
[ $uoc_ok = 1 ] && [ "$n" = "10 10" ] \
	&& idem_pass "$T: concurrent update_or_create from two nodes: no error, one row per key" \
	|| { echo "      rows with a written value, rows: $n (want 10 10)"; idem_fail "$T: concurrent update_or_create from two nodes: no error, one row per key"; }

# Batches with overlapping keys in opposite orders from two nodes: inserted
# in key order, they wait for each other instead of deadlocking.
cat >"$W/batch-up.sql" <<'EOF'
\set base random(1, 1000000) * 0 + :round
BEGIN;
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::up.hot,
  (SELECT jsonb_agg(jsonb_build_object('id', 100000 + :base * 100 + g, 'node', :node, 'client', :client_id) ORDER BY g) FROM generate_series(1, 20) g));
SELECT pg_sleep(0.01);
COMMIT;
EOF
sed 's/ORDER BY g)/ORDER BY g DESC)/' "$W/batch-up.sql" >"$W/batch-down.sql"
batch_ok=1
for r in 1 2 3; do
	idem_citus_pgbench_pair "$W/batch-$r" "$W/batch-up.sql" "$W/batch-down.sql" -c 2 -j 1 -t 1 -D round="$r" \
		|| batch_ok=0
done
n=$(idem_citus_psql 0 -tA -c 'SELECT count(*) FROM up.hot WHERE id > 100000')
[ $batch_ok = 1 ] && [ "$n" = 60 ] \
	&& idem_pass "$T: batches in opposite key orders from two nodes: no deadlock, one row per key" \
	|| { echo "      rows: $n (want 60)"; idem_fail "$T: batches in opposite key orders from two nodes: no deadlock, one row per key"; }
