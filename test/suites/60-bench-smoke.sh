#!/usr/bin/env bash
# Benchmark smoke: every benchmark group runs for one short round, and
# every pair of the instruction counts (test/bench/instructions) for a few
# calls, so the benchmarks cannot rot.  Ratios printed here are
# meaningless and targets are not judged ("(smoke: not judged)"); run
# "make bench" and "make bench-instructions" for real figures.
. "$IDEM_ROOT/test/lib/common.sh"
rc=0
"$IDEM_ROOT/test/bench/run" --smoke --out "$IDEM_SUITE_WORK" || rc=1
if "$IDEM_ROOT/test/bench/instructions" --smoke --out "$IDEM_SUITE_WORK/instructions"; then
	idem_pass bench-smoke/instructions
else
	idem_fail bench-smoke/instructions
	rc=1
fi
exit $rc
