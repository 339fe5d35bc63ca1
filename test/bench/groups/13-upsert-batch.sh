# Batches of 1000: idempotent_upsert_many when all keys are new, against a
# plain multi-row INSERT ... RETURNING * (target 0.8x), and when all keys
# exist, against SELECT ... WHERE key = ANY($1) (target 0.8x).  Every
# variant builds its 1000 keys from generate_series the same way.
bench_title "upsert batch of 1000: all new / all existing"
bench_setup <"$IDEM_ROOT/test/bench/upsert-setup.sql"
bench_setup <<'SQL'
INSERT INTO upsert_bench (email) SELECT 'b' || g FROM generate_series(1, 100000) g;
VACUUM ANALYZE upsert_bench;
SQL
bench_variant ours_new 1 <<'PGB'
\set p random(1, 4000000000000000)
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::upsert_bench,
    (SELECT jsonb_agg(jsonb_build_object('email', 'n' || :p || '-' || g)) FROM generate_series(1, 1000) g));
PGB
bench_variant insert_new 1 <<'PGB'
\set p random(1, 4000000000000000)
WITH i AS (INSERT INTO upsert_bench (email)
    SELECT 'n' || :p || '-' || g FROM generate_series(1, 1000) g RETURNING *)
SELECT count(*) FROM i;
PGB
bench_variant ours_existing 1 <<'PGB'
\set s random(0, 99000)
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::upsert_bench,
    (SELECT jsonb_agg(jsonb_build_object('email', 'b' || (:s + g))) FROM generate_series(1, 1000) g));
PGB
bench_variant any_existing 1 <<'PGB'
\set s random(0, 99000)
SELECT count(*) FROM upsert_bench
 WHERE email = ANY (ARRAY(SELECT 'b' || (:s + g) FROM generate_series(1, 1000) g));
PGB
bench_ratio ours_new insert_new 0.8
bench_ratio ours_existing any_existing 0.8
bench_run
