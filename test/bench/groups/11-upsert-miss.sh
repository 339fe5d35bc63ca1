# Miss path: every call inserts a new key.  idempotent_upsert against a
# plain INSERT ... RETURNING * (the floor: no duplicate handling at all) and
# the same idioms as the hit path.  Both regimes: one client (latency) and
# CPU saturation (a client per CPU); the saturation target is 0.95.
bench_title "upsert miss path: new key every call"
bench_setup <"$IDEM_ROOT/test/bench/upsert-setup.sql"
bench_variant ours 1 <<'PGB'
\set k random(1, 4000000000000000)
SELECT * FROM idempotency.idempotent_upsert(NULL::upsert_bench, jsonb_build_object('email', 'm' || :k));
PGB
bench_variant insert 1 <<'PGB'
\set k random(1, 4000000000000000)
INSERT INTO upsert_bench (email) VALUES ('m' || :k) RETURNING *;
PGB
bench_variant do_update 1 <<'PGB'
\set k random(1, 4000000000000000)
INSERT INTO upsert_bench (email) VALUES ('m' || :k)
    ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING *;
PGB
bench_variant cte_union 1 <<'PGB'
\set k random(1, 4000000000000000)
WITH ins AS (INSERT INTO upsert_bench (email) VALUES ('m' || :k) ON CONFLICT (email) DO NOTHING RETURNING *)
SELECT * FROM ins UNION ALL SELECT * FROM upsert_bench WHERE email = 'm' || :k;
PGB
bench_variant plpgsql 1 <<'PGB'
\set k random(1, 4000000000000000)
SELECT * FROM upsert_bench_plpgsql('m' || :k);
PGB
bench_regimes latency saturation
bench_ratio ours insert 0.90 0.95
bench_ratio ours do_update
bench_ratio ours cte_union
bench_ratio ours plpgsql
bench_run
