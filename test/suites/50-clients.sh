#!/usr/bin/env bash
# Client tests through real drivers (node-postgres): test/clients/*.test.mjs,
# run with node's built-in test runner.  Dependencies come from
# test/clients/package-lock.json.
. "$IDEM_ROOT/test/lib/common.sh"
shopt -s nullglob
tests=("$IDEM_ROOT"/test/clients/*.test.mjs)
[ ${#tests[@]} -gt 0 ] || exit 0

dir=$IDEM_SUITE_WORK/clients
idem_node_scratch "$dir" clients "$IDEM_ROOT"/test/clients/*.mjs || exit 1

export PGDATABASE=idempotency_clients
idem_psql -d postgres -c "DROP DATABASE IF EXISTS $PGDATABASE" -c "CREATE DATABASE $PGDATABASE"
idem_psql -c "CREATE EXTENSION idempotency"

rc=0
for t in "${tests[@]}"; do
	name=$(basename "$t" .test.mjs)
	log=$IDEM_SUITE_WORK/$name.out
	if (cd "$dir" && node --test --test-reporter=spec "$name.test.mjs") >"$log" 2>&1; then
		idem_pass "clients/$name"
		grep -E '^# (measured|result)' "$log" | sed 's/^/        /' || true
	else
		rc=1
		idem_fail "clients/$name"
		cat "$log"
	fi
done
exit $rc
