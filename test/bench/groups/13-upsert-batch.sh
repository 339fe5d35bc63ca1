# Batches of 1000: idempotent_upsert_many when all keys are new, against a
# plain multi-row INSERT ... RETURNING * (target 0.8x), and when all keys
# exist, against SELECT ... WHERE key = ANY($1) (target 0.8x); the same
# with the batch as idempotent_upsert_columns takes it (cols_*: the text[]
# the baselines get, no JSON).  Each variant
# gets its 1000 keys as ONE parameter, the way a client sends them: the text
# of a JSON array for ours, of a text[] for the baselines, which the server
# parses (jsonb_in, array_in) when the statement binds it.  pgbench cannot
# make such a parameter, so a first statement of the same transaction
# builds the text, with string_agg in every variant (until 2026-11-25 ours
# built it with jsonb_agg(jsonb_build_object(...)), which cost the server
# four times what the baseline's array_agg did and measured the generator
# rather than the call).  Every variant returns the 1000 rows to the client
# (a count(*) would let the baseline use an index-only scan that never
# reads the rows).  Both regimes: one client (latency) and CPU saturation
# (a client per CPU, target 0.9 there).
bench_title "upsert batch of 1000: all new / all existing"
bench_setup <"$IDEM_ROOT/test/bench/upsert-setup.sql"
bench_setup <<'SQL'
INSERT INTO upsert_bench (email) SELECT 'b' || g FROM generate_series(1, 100000) g;
VACUUM ANALYZE upsert_bench;
SQL
bench_variant ours_new 1 <<'PGB'
\set p random(1, 4000000000000000)
SELECT '[' || string_agg('{"email": "n' || :p || '-' || g || '"}', ',') || ']' AS batch FROM generate_series(1, 1000) g \gset
SELECT * FROM idempotency.idempotent_upsert_many(NULL::upsert_bench, :batch::jsonb);
PGB
bench_variant insert_new 1 <<'PGB'
\set p random(1, 4000000000000000)
SELECT '{' || string_agg('n' || :p || '-' || g, ',') || '}' AS batch FROM generate_series(1, 1000) g \gset
INSERT INTO upsert_bench (email) SELECT unnest(:batch::text[]) RETURNING *;
PGB
bench_variant ours_existing 1 <<'PGB'
\set s random(0, 99000)
SELECT '[' || string_agg('{"email": "b' || (:s + g) || '"}', ',') || ']' AS batch FROM generate_series(1, 1000) g \gset
SELECT * FROM idempotency.idempotent_upsert_many(NULL::upsert_bench, :batch::jsonb);
PGB
bench_variant any_existing 1 <<'PGB'
\set s random(0, 99000)
SELECT '{' || string_agg('b' || (:s + g), ',') || '}' AS batch FROM generate_series(1, 1000) g \gset
SELECT * FROM upsert_bench WHERE email = ANY (:batch::text[]);
PGB
bench_variant cols_new 1 <<'PGB'
\set p random(1, 4000000000000000)
SELECT '{' || string_agg('n' || :p || '-' || g, ',') || '}' AS batch FROM generate_series(1, 1000) g \gset
SELECT * FROM idempotency.idempotent_upsert_columns(NULL::upsert_bench, '{email}', NULL, :batch::text[]);
PGB
bench_variant cols_existing 1 <<'PGB'
\set s random(0, 99000)
SELECT '{' || string_agg('b' || (:s + g), ',') || '}' AS batch FROM generate_series(1, 1000) g \gset
SELECT * FROM idempotency.idempotent_upsert_columns(NULL::upsert_bench, '{email}', NULL, :batch::text[]);
PGB
bench_regimes latency saturation
bench_ratio ours_new insert_new 0.8 0.9
bench_ratio ours_existing any_existing 0.8 0.9
bench_ratio cols_new insert_new 0.8 0.9
bench_ratio cols_existing any_existing 0.8 0.9
bench_run
