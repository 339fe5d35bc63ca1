#!/usr/bin/env bash
# Setup shared by the Citus test files: the idempotency extension (created
# on the coordinator; Citus creates it on the workers too) and an ordinary
# login role "idem_app" (propagated to every node).  Each later file works
# in a schema of its own and grants idem_app what it needs there.
. "$IDEM_ROOT/test/lib/common.sh"
. "$IDEM_ROOT/test/lib/citus.sh"

if idem_citus_psql 0 -c 'CREATE EXTENSION idempotency' \
	&& idem_citus_psql 0 -c 'CREATE ROLE idem_app LOGIN'; then
	idem_pass "citus/setup: extension and role created on the coordinator"
else
	idem_fail "citus/setup: extension and role created on the coordinator"
	exit 1
fi
for n in 1 2; do
	got=$(idem_citus_psql "$n" -tA -c "SELECT extversion FROM pg_extension WHERE extname = 'idempotency'" \
		-c "SELECT count(*) FROM pg_roles WHERE rolname = 'idem_app'")
	want=$(idem_citus_psql 0 -tA -c "SELECT extversion FROM pg_extension WHERE extname = 'idempotency'"; echo 1)
	if [ "$got" = "$want" ]; then
		idem_pass "citus/setup: extension and role present on worker $n"
	else
		echo "worker $n: got '$got', want '$want'"
		idem_fail "citus/setup: extension and role present on worker $n"
	fi
done
