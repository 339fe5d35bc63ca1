#!/usr/bin/env bash
# Stress: many clients on one key.  Each test/stress/*.sh is one scenario,
# run against the suite cluster; it exits non-zero (and says why) on failure.
. "$IDEM_ROOT/test/lib/common.sh"
shopt -s nullglob
rc=0
for s in "$IDEM_ROOT"/test/stress/*.sh; do
	name=$(basename "$s" .sh)
	log=$IDEM_SUITE_WORK/$name.out
	if bash "$s" >"$log" 2>&1; then
		idem_pass "stress/$name"
		grep '^#' "$log" | sed 's/^/        /' || true
	else
		rc=1
		idem_fail "stress/$name"
		cat "$log"
	fi
done
exit $rc
