#!/usr/bin/env bash
# isolationtester: every race, test/specs/*.spec against expected/*.out.
. "$IDEM_ROOT/test/lib/common.sh"
. "$IDEM_ROOT/test/lib/pgregress.sh"
cd "$IDEM_ROOT"
rm -rf output_iso
out=$IDEM_SUITE_WORK/pg_isolation_regress.out
make -s PG_CONFIG="$PG_CONFIG" installcheck REGRESS= >"$out" 2>&1
rc=$?
idem_record_pg_regress isolation "$out"
if [ $rc -ne 0 ]; then
	cat "$out"
	[ -f output_iso/regression.diffs ] && { echo "---- output_iso/regression.diffs"; cat output_iso/regression.diffs; }
fi
exit $rc
