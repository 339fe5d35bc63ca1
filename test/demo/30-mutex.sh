#!/usr/bin/env bash
# Keyed mutexes: one checkout per order at a time, across connections.
set -euo pipefail
psql() { "$PGBINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "-- Session A starts a checkout of order 42 and holds its mutex for 2 s:"
echo "--   BEGIN; SELECT idempotency.mutex_lock('checkout:order:42'); ... COMMIT;"
psql -c "BEGIN" -c "SELECT idempotency.mutex_lock('checkout:order:42') AS a_locked" \
	-c "SELECT pg_sleep(2)" -c "COMMIT" >/dev/null &
a=$!
sleep 0.5

echo "-- Who holds it (session B looks):"
psql -e -c "SELECT mode, granted, scope FROM idempotency.mutex_holders('checkout:order:42')"

echo "-- Session B: a second click on 'pay' does not wait long -- false, and its transaction goes on:"
psql -e -c "SELECT idempotency.mutex_lock('checkout:order:42', timeout => '200 ms') AS b_locked"

echo "-- Another order is not delayed at all (parallel across keys):"
psql -e -c "SELECT idempotency.mutex_try_lock('checkout:order:43') AS other_order"

echo "-- Session B waits its turn (arrival order) and runs once A commits:"
psql -e -c "SELECT idempotency.mutex_lock('checkout:order:42', timeout => '10 s') AS b_locked_after_a, clock_timestamp()"
wait $a

echo "-- Behind a transaction-pooling proxy (PgBouncer pool_mode = transaction) a session"
echo "-- mutex would stay with the server connection; an administrator turns them off"
echo "-- for the application's role:"
psql -e -c "CREATE ROLE demo_pooled_app LOGIN" -c "GRANT USAGE ON SCHEMA idempotency TO demo_pooled_app" \
	-c "ALTER ROLE demo_pooled_app SET idempotency.session_locks = off"
echo "-- The ERROR below is expected (SQLSTATE 55000): that role's session mutex is refused:"
psql -U demo_pooled_app -e -v ON_ERROR_STOP=0 -c "SELECT idempotency.mutex_session_lock('report')" || true
echo "-- Its transaction mutexes work as before:"
psql -U demo_pooled_app -e -c "BEGIN" -c "SELECT idempotency.mutex_lock('report') AS locked" -c "COMMIT"
psql -c "REVOKE USAGE ON SCHEMA idempotency FROM demo_pooled_app" -c "DROP ROLE demo_pooled_app"
