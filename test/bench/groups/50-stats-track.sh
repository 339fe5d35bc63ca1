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

# The same comparison measured inside one backend, immune to the load of
# other processes: blocks of calls timed with clock_timestamp(), track on
# and off alternating, the fastest block of each (the one least disturbed)
# compared.  Reported as calls per second on / off.
n=10000 blocks=30
[ "$BENCH_SMOKE" = 1 ] && n=1000 blocks=2
cpu=$(idem_psql -At <<SQL
CREATE FUNCTION pg_temp.track_block(n int, track bool) RETURNS float8
LANGUAGE plpgsql AS \$\$
DECLARE
    t0 timestamptz;
BEGIN
    PERFORM set_config('idempotency.track', track::text, true);
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP
        PERFORM idempotency.idempotent_upsert(NULL::upsert_bench,
                    jsonb_build_object('email', 'u' || (i % 100000 + 1)));
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END \$\$;
CREATE TEMP TABLE track_blocks (track bool, us float8);
SELECT pg_temp.track_block(1000, true);
$(for ((b = 0; b < blocks; b++)); do
	echo "INSERT INTO track_blocks SELECT true, pg_temp.track_block($n, true);"
	echo "INSERT INTO track_blocks SELECT false, pg_temp.track_block($n, false);"
done)
SELECT round((min(us) FILTER (WHERE NOT track) / min(us) FILTER (WHERE track))::numeric, 3)
       || ' (' || round(min(us) FILTER (WHERE track)::numeric, 2) || ' vs '
       || round(min(us) FILTER (WHERE NOT track)::numeric, 2) || ' us/call)'
  FROM track_blocks;
SQL
)
bench_report "in-backend, track on / off (fastest of $blocks blocks of $n calls)" "$(echo "$cpu" | tail -n 1)" ">= 0.97"
