#!/usr/bin/env bash
# Citus: a 3-node cluster (coordinator + 2 workers, metadata synced) built
# from ../shared/citus/citus-13.2.2.tar.xz (cached, see test/lib/citus.sh),
# and the test files test/citus/NN-name.sh run against it in file-name
# order.  One "skipped: ..." line and nothing else when the source is
# absent or the server is a major Citus 13.2.2 does not support.
. "$IDEM_ROOT/test/lib/common.sh"
. "$IDEM_ROOT/test/lib/citus.sh"

if ! idem_citus_source; then
	echo "skipped: no Citus source ($(realpath -m "$IDEM_CITUS_TARBALL"))"
	exit 0
fi
if ! idem_citus_supported; then
	echo "skipped: Citus 13.2.2 does not support PostgreSQL $(idem_pg_major) (it supports 15, 16 and 17)"
	exit 0
fi

t0=$SECONDS
idem_citus_install
idem_log "citus: installed ($((SECONDS - t0)) s, build cached in $IDEM_CITUS_BUILD)"

dir=$IDEM_SUITE_WORK/cluster
cleanup() {
	local rc=$?
	idem_citus_stop "$dir"
	if [ $rc -ne 0 ]; then
		for n in 0 1 2; do
			[ -f "$dir/node$n/server.log" ] || continue
			echo "---- node $n server log (last lines)"
			tail -n 20 "$dir/node$n/server.log"
		done
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
idem_citus_start "$dir"
idem_log "citus: cluster up in $((SECONDS - t0)) s (ports $IDEM_CITUS_PORT0 $IDEM_CITUS_PORT1 $IDEM_CITUS_PORT2)"

rc=0
for file in "$IDEM_ROOT"/test/citus/*.sh; do
	[ -f "$file" ] || continue
	name=$(basename "$file" .sh)
	before=$(wc -l <"$IDEM_RESULTS")
	t0=$SECONDS
	mkdir -p "$IDEM_SUITE_WORK/$name"
	IDEM_CITUS_WORK=$IDEM_SUITE_WORK/$name bash "$file"
	frc=$?
	if [ $frc -ne 0 ]; then
		rc=1
		if ! tail -n +"$((before + 1))" "$IDEM_RESULTS" | grep -q '^not ok'; then
			idem_fail "citus/$name (exited with status $frc)"
		fi
	fi
	idem_log "citus/$name: $(($(wc -l <"$IDEM_RESULTS") - before)) tests, $((SECONDS - t0)) s"
done
exit $rc
