#!/usr/bin/env bash
# Many clients on few keys, for a few seconds: claim+complete in one
# transaction (work done only when 'claimed', waiting for holders) and
# mark_processed.  Every key's side effect must have happened exactly once,
# and every claimed key must be 'completed'.
set -euo pipefail
. "$IDEM_ROOT/test/lib/common.sh"
secs=${IDEM_STRESS_SECONDS:-5}
work=$(mktemp -d)
db=idempotency_stress_events
trap 'rm -rf "$work"; idem_psql -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT

idem_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
export PGDATABASE=$db
idem_psql -c "CREATE EXTENSION idempotency" -c "CREATE TABLE events_stress_effects (kind text, key text)"

cat >"$work/claim.sql" <<'SQL'
\set k random(1, 20)
BEGIN;
SELECT (status = 'claimed')::int AS won FROM idempotency.claim('key-' || :k, jsonb_build_object('k', :k), 'stress-claim', wait => '30 s', require_complete => true) \gset
\if :won
INSERT INTO events_stress_effects VALUES ('claim', 'key-' || :k);
SELECT idempotency.complete('key-' || :k, jsonb_build_object('done', :k), 'stress-claim');
\endif
COMMIT;
SQL
cat >"$work/mark.sql" <<'SQL'
\set k random(1, 2000)
BEGIN;
SELECT idempotency.mark_processed('evt-' || :k, 'stress-mark')::int AS first \gset
\if :first
INSERT INTO events_stress_effects VALUES ('mark', 'evt-' || :k);
\endif
COMMIT;
SQL

"$PGBINDIR/pgbench" -n -c 16 -j 2 -T "$secs" -f "$work/claim.sql@3" -f "$work/mark.sql@1" >"$work/pgbench.out" 2>&1 \
	|| { cat "$work/pgbench.out"; idem_die "pgbench failed"; }
grep -E "^(number of transactions actually processed|number of failed|tps)" "$work/pgbench.out" | sed 's/^/# /'

bad=$(idem_psql -At -c "
	SELECT count(*) FROM (SELECT kind, key FROM events_stress_effects GROUP BY 1, 2 HAVING count(*) > 1) d")
[ "$bad" = 0 ] || idem_die "$bad keys were processed more than once"
missing=$(idem_psql -At -c "
	SELECT count(*) FROM idempotency.processed_events p
	 WHERE p.scope LIKE 'stress-%'
	   AND (p.status <> 'completed'
	        OR NOT EXISTS (SELECT FROM events_stress_effects e WHERE e.key = p.key))")
[ "$missing" = 0 ] || idem_die "$missing records are not completed or have no side effect"
counts=$(idem_psql -At -c "
	SELECT count(*) FILTER (WHERE kind = 'claim') || ' claimed keys, ' ||
	       count(*) FILTER (WHERE kind = 'mark') || ' marked events, each processed once'
	  FROM events_stress_effects")
echo "# $counts"
