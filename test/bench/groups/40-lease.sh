# Leases: acquire + release (two autocommit statements, as a worker does
# around a job) against the statements a ShedLock-style library runs with
# the database clock: INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE
# lock_until <= now() to take the lock, UPDATE ... SET lock_until = now()
# to release it.  1000 keys, no contention: the fixed cost per lease.  Both
# regimes: one client (latency) and a client per CPU (saturation: the CPU
# per lease).
# Ours also generates the token, keeps the fencing counter and checks the
# token on release (ShedLock trusts locked_by, a host name).  The leases
# table has fillfactor 80; shedlock_ff80 is the ShedLock table given the
# same, to tell what the table's storage gives from what the calls cost.
bench_title "lease acquire + release vs ShedLock's INSERT ON CONFLICT / UPDATE"
bench_setup <"$IDEM_ROOT/test/bench/shedlock-setup.sql"
bench_setup <<'SQL'
DELETE FROM idempotency.leases WHERE key LIKE 'bench-%';
SQL
bench_variant ours 1 <<'PGB'
\set k random(1, 1000)
SELECT token AS tok FROM idempotency.lease_acquire('bench-' || :k::int, ttl => '30 s', holder => 'bench-host') \gset
SELECT idempotency.lease_release('bench-' || :k::int, :tok::uuid);
PGB
# ShedLock's two statements on table $1
shedlock_script() {
	cat <<PGB
\\set k random(1, 1000)
INSERT INTO $1 (name, lock_until, locked_at, locked_by)
VALUES ('bench-' || :k::int, now() + interval '30 s', now(), 'bench-host')
ON CONFLICT (name) DO UPDATE SET lock_until = now() + interval '30 s', locked_at = now(), locked_by = 'bench-host'
WHERE $1.lock_until <= now();
UPDATE $1 SET lock_until = now() WHERE name = 'bench-' || :k::int AND locked_by = 'bench-host';
PGB
}
bench_variant shedlock 1 < <(shedlock_script bench_shedlock)
bench_variant shedlock_ff80 1 < <(shedlock_script bench_shedlock_ff80)
bench_regimes latency saturation
bench_ratio ours shedlock 0.90
bench_ratio ours shedlock_ff80
bench_run

# Wake-up latency: a waiter blocked in lease_acquire(wait => ...) against the
# release committed by another session.  Measured from just before the
# releasing psql starts to the waiter's own clock_timestamp() after it got
# the lease, so it includes one psql start-up; median of 5.
lease_wake_once() {
	local tok t0 t1
	tok=$(idem_psql -At -c "SELECT token FROM idempotency.lease_acquire('bench-wake', ttl => '1 minute')")
	idem_psql -At -c "SELECT status, extract(epoch FROM clock_timestamp()) FROM idempotency.lease_acquire('bench-wake', wait => '30 s')" \
		>"$BENCH_GROUP_DIR/wake.out" &
	local pid=$!
	sleep 0.3
	t0=$(idem_psql -At -c "SELECT extract(epoch FROM clock_timestamp())")
	idem_psql -At -c "SELECT idempotency.lease_release('bench-wake', '$tok')" >/dev/null
	wait "$pid"
	t1=$(cut -d'|' -f2 "$BENCH_GROUP_DIR/wake.out")
	idem_psql -At -c "SELECT idempotency.lease_release('bench-wake')" >/dev/null
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'
}
wake_ms=$(for _ in 1 2 3 4 5; do lease_wake_once; done | bench_median)
bench_report "release -> waiter wake-up (ms, median of 5)" "$wake_ms" "<= 50"
