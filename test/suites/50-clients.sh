#!/usr/bin/env bash
# Client tests through real drivers (node-postgres): test/clients/*.test.mjs,
# run with node's built-in test runner.  Dependencies come from
# test/clients/package-lock.json.
. "$IDEM_ROOT/test/lib/common.sh"
shopt -s nullglob
tests=("$IDEM_ROOT"/test/clients/*.test.mjs)
[ ${#tests[@]} -gt 0 ] || exit 0

# Install into a scratch copy so the checkout stays clean.
dir=$IDEM_SUITE_WORK/clients
mkdir -p "$dir"
cp "$IDEM_ROOT"/test/clients/package.json "$IDEM_ROOT"/test/clients/package-lock.json "$dir"/
cp "$IDEM_ROOT"/test/clients/*.mjs "$dir"/
if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >"$dir/npm.log" 2>&1); then
	cat "$dir/npm.log"
	idem_fail "clients/npm-ci"
	exit 1
fi

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
