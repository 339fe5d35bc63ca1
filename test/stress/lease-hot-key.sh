#!/usr/bin/env bash
# Many clients fight for one lease for a few seconds: half of them try
# without waiting, half wait up to a second.  Every winner logs its fencing
# token and releases with its token.  Checks: every release succeeded (no
# one released a lease it did not hold), fencing tokens were handed out
# exactly once each, without gaps, and in the order the leases were held.
set -euo pipefail
. "$IDEM_ROOT/test/lib/common.sh"
clients=${LEASE_STRESS_CLIENTS:-16}
seconds=${LEASE_STRESS_SECONDS:-8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

idem_psql -d postgres -c 'DROP DATABASE IF EXISTS idempotency_lease_stress' \
	-c 'CREATE DATABASE idempotency_lease_stress'
export PGDATABASE=idempotency_lease_stress
idem_psql <<'SQL'
CREATE EXTENSION idempotency;
CREATE TABLE lease_stress_log (fencing bigint, client int, at timestamptz);
CREATE TABLE lease_stress_bad (client int, what text);
SQL

cat >"$work/lease.pgb" <<'PGB'
\set w random(0, 1)
SELECT status = 'acquired' AS won, token AS tok, fencing_token AS f
  FROM idempotency.lease_acquire('stress-hot', ttl => '30 s', holder => 'c' || :client_id::int,
                                 wait => CASE WHEN :w::int = 1 THEN interval '1 s' ELSE interval '0' END) \gset
\if :won
INSERT INTO lease_stress_log VALUES (:f::bigint, :client_id::int, clock_timestamp());
SELECT idempotency.lease_release('stress-hot', :tok::uuid) AS rel \gset
INSERT INTO lease_stress_bad SELECT :client_id::int, :rel::text WHERE :rel::text <> 'released';
\endif
PGB
"$PGBINDIR/pgbench" -n -M prepared -c "$clients" -j 2 -T "$seconds" -f "$work/lease.pgb" >"$work/pgbench.out" 2>&1 \
	|| { cat "$work/pgbench.out"; echo "pgbench failed"; exit 1; }

read -r acquired distinct maxf bad disorder < <(idem_psql -At -F ' ' <<'SQL'
SELECT (SELECT count(*) FROM lease_stress_log),
       (SELECT count(DISTINCT fencing) FROM lease_stress_log),
       (SELECT coalesce(max(fencing), 0) FROM lease_stress_log),
       (SELECT count(*) FROM lease_stress_bad),
       (SELECT count(*) FROM (SELECT fencing, lag(fencing) OVER (ORDER BY at) AS prev
                                FROM lease_stress_log) x WHERE fencing <= prev);
SQL
)
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.out" | head -1)
echo "# lease hot key: $clients clients, ${seconds}s: $acquired leases acquired and released, $tps tx/s"
idem_psql -d postgres -c 'DROP DATABASE idempotency_lease_stress'
[ "$acquired" -gt 0 ] || { echo "no lease was ever acquired"; exit 1; }
[ "$bad" -eq 0 ] || { echo "$bad releases did not return 'released'"; exit 1; }
[ "$distinct" -eq "$acquired" ] || { echo "fencing tokens repeated: $acquired acquires, $distinct distinct tokens"; exit 1; }
[ "$maxf" -eq "$acquired" ] || { echo "fencing tokens have gaps: $acquired acquires, highest token $maxf"; exit 1; }
[ "$disorder" -eq 0 ] || { echo "$disorder fencing tokens lower than their predecessor's"; exit 1; }
echo "ok"
