#!/usr/bin/env bash
# Fuzz: random sequences of the extension's calls with hostile arguments and
# wrappers (test/fuzz/fuzz.mjs), from several concurrent sessions, after a
# phase of known reproducers.  Fails on a crash, FATAL/PANIC/TRAP, leaked
# locks, a transaction left open by a call, internal errors, suspicious
# WARNINGs.
#   IDEM_FUZZ_SEED=N      replay a seed (the seed is always printed; in CI,
#                         CI=true, the default is taken from the commit, so
#                         that a CI failure replays from its commit alone)
#   IDEM_FUZZ_SECONDS=N   budget of the random phase (default 60, max 120;
#                         IDEM_QUICK=1: 20)
#   IDEM_FUZZ_SESSIONS=N  concurrent sessions (default 4)
#   IDEM_FUZZ_AVOID_KNOWN=1  keep the known defects' patterns out of the random
#                         phase, to look for others (see test/fuzz/fuzz.mjs)
# Statement logs per session: $IDEM_SUITE_WORK/fuzz-logs/session-N.sql
# (IDEM_KEEP=1 keeps them).
. "$IDEM_ROOT/test/lib/common.sh"

dir=$IDEM_SUITE_WORK/node
idem_node_scratch "$dir" fuzz "$IDEM_ROOT"/test/fuzz/*.mjs || exit 1

secs=${IDEM_FUZZ_SECONDS:-}
[ -n "$secs" ] || { [ "${IDEM_QUICK:-0}" = 1 ] && secs=20 || secs=60; }
[ "$secs" -gt 120 ] 2>/dev/null && secs=120
export IDEM_FUZZ_SECONDS=$secs
if [ -z "${IDEM_FUZZ_SEED:-}" ] && [ "${CI:-}" = true ]; then
	commit=$(git -C "$IDEM_ROOT" rev-parse HEAD 2>/dev/null || true)
	[ -n "$commit" ] && export IDEM_FUZZ_SEED=$((16#${commit:0:7}))
fi
export IDEM_FUZZ_LOGDIR=$IDEM_SUITE_WORK/fuzz-logs
export IDEM_FUZZ_SERVER_LOG=$PGHOST/server.log
out=$IDEM_SUITE_WORK/fuzz.out

# The driver bounds every client operation; this is the last resort.
timeout -k 10 $((secs + 300)) node "$dir/fuzz.mjs" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}

while IFS= read -r line; do
	case $line in
		"RESULT ok "*) idem_pass "${line#RESULT ok }" ;;
		"RESULT not-ok "*) rest=${line#RESULT not-ok }; idem_fail "${rest%% :: *}" ;;
	esac
done <"$out"
[ $rc -eq 124 ] || [ $rc -eq 137 ] && idem_fail "fuzz/driver (killed after $((secs + 300)) s)"

# Leave a usable cluster to the suites that follow, even after a crash.
for _ in $(seq 1 120); do
	"$PGBINDIR/pg_isready" -q -d postgres && idem_psql -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break
	sleep 0.5
done
idem_psql -d postgres -c "DROP DATABASE IF EXISTS idempotency_fuzz WITH (FORCE)" -c "DROP ROLE IF EXISTS idem_fuzz_app" >/dev/null 2>&1 || true
[ $rc -eq 0 ]
