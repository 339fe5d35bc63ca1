#!/usr/bin/env bash
# idempotency.citus_distribute(): refused without Citus, on a worker, for
# an ordinary role and while the tables carry something their owner added
# (it would run as the superuser calling it); rows written before it (processed events, a claim,
# a lease, by two roles) are moved into the shards and seen from every node;
# a second call says so and changes nothing; the tables end up hash-
# distributed by key, leases colocated with processed_events.
. "$IDEM_ROOT/test/lib/common.sh"
. "$IDEM_ROOT/test/lib/citus.sh"
W=$IDEM_CITUS_WORK
T=citus/distribute

# expect NAME WANT CMD...: CMD's output (stdout+stderr) contains WANT.
expect() {
	local name=$1 want=$2 out
	shift 2
	out=$("$@" 2>&1)
	if grep -qF -- "$want" <<<"$out"; then
		idem_pass "$T: $name"
	else
		printf '      want: %s\n      got:  %s\n' "$want" "$out"
		idem_fail "$T: $name"
	fi
}

# Without Citus: a database where the citus extension is not created.
idem_citus_psql 0 -c 'CREATE DATABASE nocitus' >/dev/null
idem_citus_psql 0 -d nocitus -c 'CREATE EXTENSION idempotency' >/dev/null
expect "refused where Citus is not installed (0A000)" "0A000" \
	idem_citus_psql 0 -d nocitus -v VERBOSITY=verbose -c 'SELECT idempotency.citus_distribute()'
idem_citus_psql 0 -c 'DROP DATABASE nocitus' >/dev/null

expect "refused on a worker (55000)" "must be called on the Citus coordinator" \
	idem_citus_psql 1 -c 'SELECT idempotency.citus_distribute()'
expect "refused for an ordinary role (EXECUTE revoked)" "permission denied" \
	idem_citus_psql 0 -U idem_app -c 'SELECT idempotency.citus_distribute()'
idem_citus_psql 0 -c 'GRANT EXECUTE ON FUNCTION idempotency.citus_distribute(regclass) TO idem_app' >/dev/null
expect "refused for a non-superuser even with EXECUTE (42501, saying why)" "only superusers may create objects in that schema" \
	idem_citus_psql 0 -U idem_app -v VERBOSITY=verbose -c 'SELECT idempotency.citus_distribute()'
idem_citus_psql 0 -c 'REVOKE EXECUTE ON FUNCTION idempotency.citus_distribute(regclass) FROM idem_app' >/dev/null

# Rows before distributing, by the superuser and by idem_app.
idem_citus_psql 0 >/dev/null <<'EOF'
SELECT idempotency.mark_processed('pre-mark-' || g) FROM generate_series(1, 20) g;
SELECT status FROM idempotency.claim('pre-claim', '{"a": 1}');
SELECT idempotency.complete('pre-claim', '{"r": 1}', token => (SELECT token FROM idempotency.processed_events WHERE key = 'pre-claim'));
SELECT status FROM idempotency.lease_acquire('pre-lease', '1 hour', 'pre');
EOF
idem_citus_psql 0 -U idem_app -c "SELECT idempotency.mark_processed('pre-app')" >/dev/null

expect "wrong colocation table (not distributed) refused" "is not a hash-distributed table" \
	idem_citus_psql 0 -c "CREATE TABLE public.plain_t (k text)" -c "SELECT idempotency.citus_distribute('public.plain_t')"
expect "wrong colocation table (bigint key) refused" "is not distributed by a text column" \
	idem_citus_psql 0 -c "CREATE TABLE public.int_t (k bigint)" -c "SELECT create_distributed_table('public.int_t', 'k')" \
	-c "SELECT idempotency.citus_distribute('public.int_t')"

# The tables belong to the role that installed the extension, and
# citus_distribute() runs as a superuser: what that role attached to them
# (a column default, a CHECK constraint, an index expression, here planted
# by the test) would run with superuser rights.  Refused, naming each;
# nothing runs and nothing is distributed.
idem_citus_psql 0 -q >/dev/null <<'EOF'
CREATE FUNCTION public.planted() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN RAISE WARNING 'planted code ran as %', current_user; RETURN 1; END $$;
CREATE FUNCTION public.planted_check(text) RETURNS boolean IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN RAISE WARNING 'planted check ran as %', current_user; RETURN true; END $$;
SET client_min_messages = error;
ALTER TABLE idempotency.mutex_slots ADD COLUMN planted int DEFAULT public.planted();
ALTER TABLE idempotency.processed_events ADD CONSTRAINT planted CHECK (public.planted_check(key));
CREATE INDEX planted_idx ON idempotency.leases ((public.planted_check(key)));
-- only pg_catalog functions, one of which runs the query it is given
ALTER TABLE idempotency.leases ALTER COLUMN holder
    SET DEFAULT pg_catalog.query_to_xml('SELECT public.planted()', true, false, '')::text;
EOF
# refused NAME FOUND OUT: OUT (citus_distribute()'s output) is the refusal
# listing FOUND, no planted code ran, and nothing was distributed.
refused() {
	if grep -qF 'were changed since the extension created them' <<<"$3" \
		&& grep -qF "Found: $2." <<<"$3" && ! grep -q 'planted .* ran as' <<<"$3" \
		&& [ "$(idem_citus_psql 0 -tA -c "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text LIKE 'idempotency.%'")" = 0 ]; then
		idem_pass "$T: $1"
	else
		printf '      %s\n' "$3"
		idem_fail "$T: $1"
	fi
}
refused "tables changed by their owner refused (a column, a default, a CHECK, an index expression), nothing run or distributed" \
	'column holder of idempotency.leases; column planted of idempotency.mutex_slots; constraint planted on idempotency.processed_events; index idempotency.planted_idx' \
	"$(idem_citus_psql 0 -tA -c 'SELECT idempotency.citus_distribute()' 2>&1)"
idem_citus_psql 0 -q >/dev/null <<'EOF'
ALTER TABLE idempotency.mutex_slots DROP COLUMN planted;
ALTER TABLE idempotency.processed_events DROP CONSTRAINT planted;
DROP INDEX idempotency.planted_idx;
ALTER TABLE idempotency.leases ALTER COLUMN holder DROP DEFAULT;
DROP FUNCTION public.planted(), public.planted_check(text);
CREATE FUNCTION public.planted_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE WARNING 'planted trigger ran as %', current_user; RETURN NEW; END $$;
EOF
# The same with a trigger created in a transaction still open when
# citus_distribute() starts and committed while it runs: the function locks
# the tables before it looks at them, so it waits for that commit, sees the
# trigger, and refuses.
idem_citus_psql 0 -q >/dev/null 2>&1 <<'EOF' &
BEGIN;
CREATE TRIGGER planted_trg BEFORE INSERT ON idempotency.mutex_slots
    FOR EACH ROW EXECUTE FUNCTION public.planted_trg();
SELECT pg_sleep(2);
COMMIT;
EOF
trg_pid=$!
sleep 0.5
out=$(idem_citus_psql 0 -tA -c 'SELECT idempotency.citus_distribute()' 2>&1)
wait "$trg_pid"
refused "a trigger committed while the call waits for the tables is seen and refused" \
	'trigger planted_trg on idempotency.mutex_slots' "$out"
idem_citus_psql 0 -q >/dev/null <<'EOF'
DROP TRIGGER planted_trg ON idempotency.mutex_slots;
DROP FUNCTION public.planted_trg();
EOF

idem_citus_same "first call distributes" "distributed" \
	"$(idem_citus_psql 0 -tA -c 'SELECT idempotency.citus_distribute()' 2>&1)"
idem_citus_same "second call changes nothing and says so" "already distributed" \
	"$(idem_citus_psql 0 -tA -c 'SELECT idempotency.citus_distribute()' 2>&1)"
idem_citus_same "tables hash-distributed by key, leases colocated with processed_events" \
	"idempotency.leases|h|key|t
idempotency.mutex_slots|h|slot|f
idempotency.processed_events|h|key|t" \
	"$(idem_citus_psql 0 -tA -c "SELECT logicalrelid::regclass, partmethod, column_to_column_name(logicalrelid, partkey),
		colocationid = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'idempotency.processed_events'::regclass)
		FROM pg_dist_partition WHERE logicalrelid::regclass::text LIKE 'idempotency.%' ORDER BY logicalrelid::regclass::text")"
idem_citus_same "the coordinator's shell tables are empty (rows moved into the shards)" "0|0" \
	"$(idem_citus_psql 0 -tA -c "SELECT pg_relation_size('idempotency.processed_events'), pg_relation_size('idempotency.leases')")"

for n in 0 1 2; do
	idem_citus_same "existing rows seen from node $n" "22|1|1" \
		"$(idem_citus_psql "$n" -tA -c "SELECT (SELECT count(*) FROM idempotency.processed_events),
			(SELECT count(*) FROM idempotency.leases), (SELECT count(*) FROM idempotency.mutex_slots WHERE slot = 0)")"
	idem_citus_same "an existing record replays from node $n" "completed|{\"r\": 1}" \
		"$(idem_citus_psql "$n" -tA -c "SELECT status, result FROM idempotency.claim('pre-claim', '{\"a\": 1}')")"
	idem_citus_same "an existing mark is a duplicate from node $n (superuser and idem_app)" "f|f" \
		"$(idem_citus_psql "$n" -tA -c "SELECT idempotency.mark_processed('pre-mark-7')")|$(idem_citus_psql "$n" -U idem_app -tA -c "SELECT idempotency.mark_processed('pre-app')")"
	idem_citus_same "an existing lease is held, seen from node $n" "conflict|pre" \
		"$(idem_citus_psql "$n" -tA -c "SELECT status, holder FROM idempotency.lease_acquire('pre-lease')")"
done
