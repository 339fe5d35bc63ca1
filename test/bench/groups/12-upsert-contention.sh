# Contention: 32 clients on ONE existing key.  Ours and the plain SELECT
# only read; the DO UPDATE trick writes a new version of the same row on
# every call, so its callers queue on the row lock.  Saturation regime: the
# 32 clients (pgbench -j <CPUs>); latency regime: the same statements from
# one client (the one key stays hot, nothing waits).  Ours and the SELECT
# cost within a few per cent of each other, and with 32 clients on few
# CPUs a run's throughput moves by a tenth from run to run (the scheduler,
# pgbench's own threads): 9 rounds, not 5.
bench_min_rounds 9
bench_title "upsert contention: 32 clients, one key"
bench_setup <"$IDEM_ROOT/test/bench/upsert-setup.sql"
bench_setup <<'SQL'
INSERT INTO upsert_bench (email) VALUES ('hot@example.com');
SQL
bench_variant ours 32 <<'PGB'
SELECT * FROM idempotency.idempotent_upsert(NULL::upsert_bench, '{"email": "hot@example.com"}');
PGB
bench_variant select 32 <<'PGB'
SELECT * FROM upsert_bench WHERE email = 'hot@example.com';
PGB
bench_variant do_update 32 <<'PGB'
INSERT INTO upsert_bench (email) VALUES ('hot@example.com')
    ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING *;
PGB
bench_variant plpgsql 32 <<'PGB'
SELECT * FROM upsert_bench_plpgsql('hot@example.com');
PGB
bench_regimes latency saturation
bench_ratio ours select 0.90
bench_ratio ours do_update 1.5
bench_ratio ours plpgsql
bench_run
