#!/usr/bin/env bash
# Server logs: no failed assertion, crash or leaked resource in the log of
# the suite cluster nor in those of the TAP tests' clusters.  Runs last.  It
# matters most against an assert-enabled server (make test-matrix): a leaked
# buffer pin, relcache or snapshot reference, or lock is reported only as a
# WARNING at commit, which a client that does not look at warnings never sees.
. "$IDEM_ROOT/test/lib/common.sh"

# A backend killed on purpose (kill -9 in the TAP tests) is not a finding;
# an abort (failed assertion) or a segmentation fault is.
pattern='TRAP:|PANIC:|terminated by signal (6|11)|WARNING: +.*(leak|not closed|still referenced|non-empty SPI stack|you don.t own a lock)'
# The TAP clusters' logs: <test>/tmp_check/log/ (15) or log/ (18) there.
logs=("$PGHOST/server.log")
while IFS= read -r log; do
	logs+=("$log")
done < <(find "$IDEM_WORK" -path '*/suite-tap/*' -path '*/log/*' -name '*.log' 2>/dev/null | sort)

found=$IDEM_SUITE_WORK/found
for log in "${logs[@]}"; do
	[ -f "$log" ] || continue
	grep -EH "$pattern" "$log" || true
done >"$found"
if [ -s "$found" ]; then
	idem_fail "server-log"
	echo "assertion failures, crashes or leaks in the server logs:"
	head -n 50 "$found"
	exit 1
fi
idem_pass "server-log"
