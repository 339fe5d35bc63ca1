#!/usr/bin/env bash
# Benchmark smoke: every benchmark group runs for one short round, so the
# benchmark cannot rot.  Ratios printed here are meaningless and targets
# are not judged ("(smoke: not judged)"); run "make bench" for real figures.
. "$IDEM_ROOT/test/lib/common.sh"
"$IDEM_ROOT/test/bench/run" --smoke --out "$IDEM_SUITE_WORK"
