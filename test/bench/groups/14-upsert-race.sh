# Correctness under a race: 8 clients, and the key changes every 2 ms, so
# several callers try to create each key at the same moment.  Every call
# that gets no row back is recorded; the figure is how many calls of each
# idiom returned nothing (ours must be 0; the WITH ... UNION ALL idiom loses
# rows because its SELECT uses the snapshot taken before the other inserter
# committed).  tps here is only for orientation.
bench_title "upsert race: calls that returned no row"
bench_setup <"$IDEM_ROOT/test/bench/upsert-setup.sql"
bench_variant ours 8 <<'PGB'
SELECT (extract(epoch FROM clock_timestamp()) * 500)::bigint AS k \gset
INSERT INTO upsert_bench_misses SELECT 'ours'
 WHERE (SELECT (idempotency.idempotent_upsert(NULL::upsert_bench, jsonb_build_object('email', 'ro' || :k))).id) IS NULL;
PGB
bench_variant cte_union 8 <<'PGB'
SELECT (extract(epoch FROM clock_timestamp()) * 500)::bigint AS k \gset
WITH ins AS (INSERT INTO upsert_bench (email) VALUES ('rc' || :k) ON CONFLICT (email) DO NOTHING RETURNING *),
     r AS (SELECT * FROM ins UNION ALL SELECT * FROM upsert_bench WHERE email = 'rc' || :k)
INSERT INTO upsert_bench_misses SELECT 'cte_union' WHERE NOT EXISTS (SELECT FROM r);
PGB
bench_variant do_update 8 <<'PGB'
SELECT (extract(epoch FROM clock_timestamp()) * 500)::bigint AS k \gset
WITH r AS (INSERT INTO upsert_bench (email) VALUES ('rd' || :k)
           ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING *)
INSERT INTO upsert_bench_misses SELECT 'do_update' WHERE NOT EXISTS (SELECT FROM r);
PGB
bench_variant plpgsql 8 <<'PGB'
SELECT (extract(epoch FROM clock_timestamp()) * 500)::bigint AS k \gset
INSERT INTO upsert_bench_misses SELECT 'plpgsql'
 WHERE (SELECT (upsert_bench_plpgsql('rp' || :k)).id) IS NULL;
PGB
bench_run
for v in ours cte_union do_update plpgsql; do
	target=
	[ "$v" = ours ] && target=0
	bench_report "calls that returned no row: $v" \
		"$(idem_psql -Atc "SELECT count(*) FROM upsert_bench_misses WHERE idiom = '$v'")" $target
done
