#!/usr/bin/env bash
# TAP (PostgreSQL::Test::Cluster): crashes, restarts, kill -9, dump/restore.
# Each test/t/*.pl makes its own clusters.  initdb refuses root, so as root
# the tests run as the server user, from a copy it can read and write.
. "$IDEM_ROOT/test/lib/common.sh"
shopt -s nullglob
tests=("$IDEM_ROOT"/test/t/*.pl)
[ ${#tests[@]} -gt 0 ] || exit 0

dir=$IDEM_SUITE_WORK/tap
mkdir -p "$dir"
cp -r "$IDEM_ROOT/test" "$dir/test"
idem_is_root && chown -R "$(idem_server_user)" "$dir"

rc=0
for t in "${tests[@]}"; do
	name=$(basename "$t" .pl)
	log=$dir/$name.out
	if idem_as_server_user env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE \
		HOME="$dir" TESTDIR="$dir/$name" PATH="$PATH" \
		PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" \
		IDEM_ROOT="$dir" PGBINDIR="$PGBINDIR" IDEM_QUICK="${IDEM_QUICK:-0}" \
		bash -c 'mkdir -p "$TESTDIR" && cd "$IDEM_ROOT" && exec prove -I "$1" -I test/t "$2"' \
		_ "$PGXS_DIR/src/test/perl" "test/t/$name.pl" >"$log" 2>&1
	then
		idem_pass "tap/$name"
	else
		rc=1
		idem_fail "tap/$name"
		cat "$log"
		for f in "$dir/$name"/tmp_check/log/regress_log_*; do
			[ -f "$f" ] && { echo "---- $f (last 80 lines)"; tail -n 80 "$f"; }
		done
	fi
done
exit $rc
