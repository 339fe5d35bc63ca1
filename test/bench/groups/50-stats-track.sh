# The cost of counting calls for idempotency.stats: the upsert hit path
# (the cheapest call that does real work, so the one where counting weighs
# most) with idempotency.track on and off, in the same rounds, one client
# and two clients (both CPUs, the counters shared between them when the
# library is preloaded, as in a dedicated benchmark cluster).  Target:
# on >= 0.97x off.
bench_title "idempotency.track on vs off: upsert hit path ($(idem_psql -Atc 'SELECT idempotency.stats_scope()') counters)"
bench_setup <"$IDEM_ROOT/test/bench/upsert-setup.sql"
bench_setup <<'SQL'
INSERT INTO upsert_bench (email) SELECT 'u' || g FROM generate_series(1, 100000) g;
VACUUM ANALYZE upsert_bench;
SQL
bench_variant track_on 1 --guc=idempotency.track=on <<'PGB'
\set k random(1, 100000)
SELECT * FROM idempotency.idempotent_upsert(NULL::upsert_bench, jsonb_build_object('email', 'u' || :k));
PGB
bench_variant track_off 1 --guc=idempotency.track=off <"$BENCH_GROUP_DIR/track_on.pgb"
bench_variant track_on_2 2 --guc=idempotency.track=on <"$BENCH_GROUP_DIR/track_on.pgb"
bench_variant track_off_2 2 --guc=idempotency.track=off <"$BENCH_GROUP_DIR/track_on.pgb"
bench_ratio track_on track_off 0.97
bench_ratio track_on_2 track_off_2 0.97
bench_run

# The same comparison in CPU time, which the load of other processes does
# not inflate: blocks of calls inside one backend, timed by the CPU time the
# kernel accounts to that backend (/proc/self/schedstat, nanoseconds), track
# on and off alternating; the medians per call are compared, reported as
# calls per CPU-second on / off.
n=2000 blocks=40
[ "$BENCH_SMOKE" = 1 ] && n=500 blocks=2
cpu=$(idem_psql -At <<SQL
CREATE FUNCTION pg_temp.cpu_ns() RETURNS bigint LANGUAGE sql
    AS \$\$ SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint \$\$;
CREATE FUNCTION pg_temp.track_block(n int, track bool) RETURNS float8
LANGUAGE plpgsql AS \$\$
DECLARE
    t0 bigint;
BEGIN
    PERFORM set_config('idempotency.track', track::text, true);
    t0 := pg_temp.cpu_ns();
    FOR i IN 1..n LOOP
        PERFORM idempotency.idempotent_upsert(NULL::upsert_bench,
                    jsonb_build_object('email', 'u' || (i % 100000 + 1)));
    END LOOP;
    RETURN (pg_temp.cpu_ns() - t0) / 1000.0 / n;
END \$\$;
CREATE TEMP TABLE track_blocks (track bool, us float8);
SELECT pg_temp.track_block(1000, true);
$(for ((b = 0; b < blocks; b++)); do
	echo "INSERT INTO track_blocks SELECT true, pg_temp.track_block($n, true);"
	echo "INSERT INTO track_blocks SELECT false, pg_temp.track_block($n, false);"
done)
WITH m AS (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY us) FILTER (WHERE track) AS on_us,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY us) FILTER (WHERE NOT track) AS off_us
      FROM track_blocks)
SELECT round((off_us / on_us)::numeric, 3) || ' (' || round(on_us::numeric, 2) || ' vs '
       || round(off_us::numeric, 2) || ' us of CPU per call)'
  FROM m;
SQL
)
bench_report "CPU time, track on / off (median of $blocks blocks of $n calls)" "$(echo "$cpu" | tail -n 1)" ">= 0.97"
