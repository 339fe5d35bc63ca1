#!/usr/bin/env bash
# 32 pgbench clients call get_or_create on 10 hot keys for 10 s (the keys
# are new at the start, so the first calls race to insert), then the same
# with a deleter in the mix: 1 call in 10 deletes the key, so the row is
# gone and re-created over and over while others are between their SELECT
# and their INSERT.
#
# Pass: pgbench reports no failed or aborted transaction (a call that
# returned no row divides by zero, so it would fail too), and at the end
# there is exactly one row per key (first run) / at most one (second run).
set -euo pipefail
. "$IDEM_ROOT/test/lib/common.sh"

db=upsert_stress
secs=${IDEM_STRESS_SECONDS:-10}
[ "${IDEM_QUICK:-0}" = 1 ] && secs=3
idem_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap 'idem_psql -d postgres -c "DROP DATABASE IF EXISTS '$db'" || true' EXIT
idem_psql -d $db <<'SQL'
CREATE EXTENSION idempotency;
CREATE TABLE acct (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL,
                   created_at timestamptz DEFAULT now());
SQL

dir=$(mktemp -d "${IDEM_WORK:-/tmp}/upsert-stress.XXXXXX")
cat >"$dir/call.sql" <<'SQL'
\set k random(1, 10)
SELECT 1 / (CASE WHEN (item).id IS NULL OR (item).email <> 'hot' || :k THEN 0 ELSE 1 END)
  FROM idempotency.get_or_create(NULL::acct, jsonb_build_object('email', 'hot' || :k));
SQL
cat >"$dir/delete.sql" <<'SQL'
\set k random(1, 10)
DELETE FROM acct WHERE email = 'hot' || :k;
SQL

run() {
	local label=$1; shift
	local out=$dir/$label.out
	if ! "$PGBINDIR/pgbench" -n -c 32 -j 2 -T "$secs" "$@" $db >"$out" 2>&1; then
		cat "$out"; idem_die "$label: pgbench failed"
	fi
	local tx failed
	tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
	[ -n "$tx" ] && [ "$tx" -gt 0 ] || { cat "$out"; idem_die "$label: no transactions"; }
	[ "${failed:-0}" = 0 ] || { cat "$out"; idem_die "$label: $failed failed transactions"; }
	if grep -qiE 'error|aborted' "$out"; then cat "$out"; idem_die "$label: errors reported"; fi
	echo "# $label: $tx calls in ${secs}s by 32 clients, 0 errors"
}

run hot-keys -f "$dir/call.sql"
rows=$(idem_psql -d $db -At -c "SELECT count(*) || ' ' || count(DISTINCT email) || ' ' || max(n) FROM (SELECT email, count(*) OVER (PARTITION BY email) n FROM acct) s")
[ "$rows" = "10 10 1" ] || idem_die "hot-keys: expected 10 rows, one per key; got (rows keys max-per-key) $rows"
echo "# hot-keys: 10 rows, one per key"

run hot-keys-with-deletes -f "$dir/call.sql@9" -f "$dir/delete.sql@1"
dups=$(idem_psql -d $db -At -c "SELECT count(*) FROM (SELECT email FROM acct GROUP BY email HAVING count(*) > 1) d")
[ "$dups" = 0 ] || idem_die "hot-keys-with-deletes: $dups keys with more than one row"
echo "# hot-keys-with-deletes: at most one row per key"
