# Hit path: the key exists (100k rows, random key).  idempotent_upsert
# against a plain SELECT by key (what it costs over the bare lookup), the
# "ON CONFLICT DO UPDATE SET x = EXCLUDED.x RETURNING *" trick (a new row
# version every call), the "WITH ins AS (... DO NOTHING RETURNING *) ...
# UNION ALL SELECT" idiom and the PL/pgSQL exception loop.  WAL bytes and
# xids per call must be 0 for ours.
#
# The benchmark cluster runs with synchronous_commit = off, which measures
# CPU cost alone: there the DO UPDATE trick's write is nearly free and no
# read-only call can be 1.5x faster than it (ours is bounded by the plain
# SELECT).  What the trick costs an application is its commit: a WAL flush
# per call at the server's default, synchronous_commit = on.  The *_sync
# variants measure that, ours against the trick, in the same rounds.
#
# Both regimes: one client (latency) and CPU saturation (a client per CPU);
# the saturation target against the plain SELECT is 0.95.
bench_title "upsert hit path: key exists"
bench_setup <"$IDEM_ROOT/test/bench/upsert-setup.sql"
bench_setup <<'SQL'
INSERT INTO upsert_bench (email) SELECT 'u' || g FROM generate_series(1, 100000) g;
VACUUM ANALYZE upsert_bench;
SQL
bench_variant ours 1 <<'PGB'
\set k random(1, 100000)
SELECT * FROM idempotency.idempotent_upsert(NULL::upsert_bench, jsonb_build_object('email', 'u' || :k));
PGB
bench_variant select 1 <<'PGB'
\set k random(1, 100000)
SELECT * FROM upsert_bench WHERE email = 'u' || :k;
PGB
bench_variant do_update 1 <<'PGB'
\set k random(1, 100000)
INSERT INTO upsert_bench (email) VALUES ('u' || :k)
    ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING *;
PGB
bench_variant cte_union 1 <<'PGB'
\set k random(1, 100000)
WITH ins AS (INSERT INTO upsert_bench (email) VALUES ('u' || :k) ON CONFLICT (email) DO NOTHING RETURNING *)
SELECT * FROM ins UNION ALL SELECT * FROM upsert_bench WHERE email = 'u' || :k;
PGB
bench_variant plpgsql 1 <<'PGB'
\set k random(1, 100000)
SELECT * FROM upsert_bench_plpgsql('u' || :k);
PGB
# the same scripts as ours and do_update
bench_variant ours_sync 1 --guc=synchronous_commit=on <"$BENCH_GROUP_DIR/ours.pgb"
bench_variant do_update_sync 1 --guc=synchronous_commit=on <"$BENCH_GROUP_DIR/do_update.pgb"
bench_regimes latency saturation
bench_ratio ours select 0.90 0.95
bench_ratio ours do_update 1.5
bench_ratio ours_sync do_update_sync 1.5
bench_ratio ours cte_union
bench_ratio ours plpgsql
bench_run
