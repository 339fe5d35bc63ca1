# test/lib/pgregress.sh -- record pg_regress / pg_isolation_regress results.
# Sourced by the regress and isolation suites.

# idem_record_pg_regress PREFIX OUTPUT_FILE
# Reads pg_regress output (PostgreSQL 15's "test x ... ok" lines and the
# TAP-style "ok 1 - x" lines of 16+) and records one result per test.
idem_record_pg_regress() {
	local prefix=$1 out=$2 line
	while IFS= read -r line; do
		idem_pass "$prefix/$line"
	done < <(sed -nE \
		-e 's/^(test | +)?([A-Za-z0-9_.-]+) +\.\.\. ok.*/\2/p' \
		-e 's/^ok +[0-9]+ +[-+] +([A-Za-z0-9_.-]+) .*/\1/p' "$out")
	while IFS= read -r line; do
		idem_fail "$prefix/$line"
	done < <(sed -nE \
		-e 's/^(test | +)?([A-Za-z0-9_.-]+) +\.\.\. FAILED.*/\2/p' \
		-e 's/^not ok +[0-9]+ +[-+] +([A-Za-z0-9_.-]+) .*/\1/p' "$out")
}
