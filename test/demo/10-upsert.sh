#!/usr/bin/env bash
# Insert-or-get: 50 sessions sign up the same new email at the same moment.
# Hand-written SELECT-then-INSERT would give some of them 23505 errors; the
# WITH ... ON CONFLICT DO NOTHING ... UNION ALL SELECT idiom would give some
# of them no row.  idempotency.get_or_create gives every one of them the
# same account, tells exactly one that it created it, and leaves one row.
set -euo pipefail
. "$IDEM_ROOT/test/lib/common.sh"
psql() { "$PGBINDIR/psql" -X -v ON_ERROR_STOP=1 "$@"; }

echo "-- A table of accounts, unique on email:"
psql -e -q <<'SQL'
CREATE TABLE accounts (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    plan       text NOT NULL DEFAULT 'free',
    created_at timestamptz NOT NULL DEFAULT now()
);
SQL

echo "-- 50 concurrent sessions, each calling:"
echo "--   SELECT (item).id, created FROM idempotency.get_or_create(NULL::accounts, '{\"email\": \"ada@example.com\"}');"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for i in $(seq 1 50); do
	psql -At -c "SELECT (item).id || ' ' || created
	               FROM idempotency.get_or_create(NULL::accounts, '{\"email\": \"ada@example.com\"}')" \
		>"$dir/$i.out" 2>&1 &
done
wait
cat "$dir"/*.out | sort | uniq -c | awk '{ printf "--   %2d sessions got: id %s, created %s\n", $1, $2, $3 }'

psql -e <<'SQL'
\echo '-- One row, whatever the 50 sessions did:'
SELECT count(*) AS rows, min(id) AS id, min(email) AS email FROM accounts;

\echo '-- The existing row comes back unchanged: no write, no transaction id.'
BEGIN;
SELECT id, email, plan FROM idempotency.idempotent_upsert(NULL::accounts, '{"email": "ada@example.com", "plan": "pro"}');
SELECT txid_current_if_assigned() AS xid_assigned;
COMMIT;

\echo '-- update_or_create sets the given columns (and writes nothing if they match).'
SELECT (item).plan, created FROM idempotency.update_or_create(NULL::accounts, '{"email": "ada@example.com", "plan": "pro"}');

\echo '-- A batch, in input order; a repeated key returns the same row.'
SELECT id, email FROM idempotency.idempotent_upsert_many(NULL::accounts,
    '[{"email": "bob@example.com"}, {"email": "ada@example.com"}, {"email": "bob@example.com"}]');
SQL
