#!/usr/bin/env bash
# Stress, the checkout / inventory case: 32 clients each do a
# read-then-write on one balance row (plain SELECT, then UPDATE of the value
# read, no row locks, READ COMMITTED) inside a transaction.
#   with mutex_lock('account:1') first: no lost update, the final balance is
#     exactly clients x transactions;
#   without it: the same workload loses updates -- which shows that the
#     workload really races, so that the first run could fail.
set -u
clients=32
per_client=${IDEM_MUTEX_STRESS_TX:-40}
expected=$((clients * per_client))
pgbench=${PGBINDIR:+$PGBINDIR/}pgbench
db=idempotency_mutex_stress
work=$(mktemp -d)
trap 'rm -rf "$work"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1' EXIT

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" || exit 1
psql -X -q -v ON_ERROR_STOP=1 -d $db <<'SQL' || exit 1
CREATE EXTENSION idempotency;
CREATE TABLE balance (id int PRIMARY KEY, amount bigint NOT NULL);
SQL

# The workload is mutex-lost-update.pgb (the pooler suite runs it too).  Its
# 1 ms pause between read and write widens the race window, as an
# application doing work between the two statements would.
cp "$IDEM_ROOT/test/stress/mutex-lost-update.pgb" "$work/with.sql"
grep -v mutex_lock "$work/with.sql" >"$work/without.sql"

run() {
	psql -X -q -v ON_ERROR_STOP=1 -d $db \
		-c "TRUNCATE balance" -c "INSERT INTO balance VALUES (1, 0)" || exit 1
	"$pgbench" -n -c $clients -j 4 -t "$per_client" -f "$work/$1.sql" $db \
		>"$work/$1.out" 2>&1 || { cat "$work/$1.out"; echo "pgbench failed ($1)"; exit 1; }
	psql -X -A -t -d $db -c "SELECT amount FROM balance WHERE id = 1"
}

with=$(run with) || exit 1
without=$(run without) || exit 1
echo "# $clients clients x $per_client read-then-write: with mutex_lock $with / $expected, without $without / $expected ($((expected - without)) lost updates)"

rc=0
if [ "$with" != "$expected" ]; then
	echo "FAIL: with mutex_lock the balance is $with, expected $expected (lost updates)"
	rc=1
fi
if [ "$without" -ge "$expected" ]; then
	echo "FAIL: without the mutex no update was lost ($without): the workload does not race, so the check above proves nothing"
	rc=1
fi
exit $rc
