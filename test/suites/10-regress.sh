#!/usr/bin/env bash
# pg_regress: one file per feature, test/sql/*.sql against expected/*.out.
. "$IDEM_ROOT/test/lib/common.sh"
. "$IDEM_ROOT/test/lib/pgregress.sh"
cd "$IDEM_ROOT"
rm -rf results regression.diffs regression.out
out=$IDEM_SUITE_WORK/pg_regress.out
make -s PG_CONFIG="$PG_CONFIG" installcheck ISOLATION= >"$out" 2>&1
rc=$?
idem_record_pg_regress regress "$out"
if [ $rc -ne 0 ]; then
	cat "$out"
	[ -f regression.diffs ] && { echo "---- regression.diffs"; cat regression.diffs; }
fi
exit $rc
