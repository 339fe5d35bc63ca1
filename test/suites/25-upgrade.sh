#!/usr/bin/env bash
# Upgrades from every earlier release.  Each release's install script is
# frozen in test/fixtures/ (idempotency--X.Y.Z.sql).  The suite checks:
#   - an update path (sql/idempotency--A--B.sql chain) leads from every
#     earlier release to default_version;
#   - for 0.1.0, installed by a superuser and by a non-superuser database
#     owner (trusted install): the new library serves every 0.1.0 function;
#     ALTER EXTENSION UPDATE keeps every row and the fencing counters, and
#     tokens issued afterwards are larger; the upgraded database equals a
#     fresh install (pg_dump --schema-only --binary-upgrade, and catalog
#     queries: members, functions, policies, privileges, owners,
#     pg_init_privs, the extension's schema);
#   - default privileges of the superuser running the scripts reach no
#     object of the extension (fresh install, and the objects the update
#     creates), and the update revokes what 0.1.0's users granted named
#     roles on the tables and the sequence (with a WARNING each), keeping
#     their grants on 0.1.0's functions;
#   - a view on processed_events.owner stops the update from 0.1.0 with
#     PostgreSQL's own error, and the update goes through once it is
#     dropped (README, Upgrading).
. "$IDEM_ROOT/test/lib/common.sh"

work=$IDEM_SUITE_WORK
extdir=$("$PG_CONFIG" --sharedir)/extension
fixtures=$IDEM_ROOT/test/fixtures
rc=0

sql() { local db=$1; shift; idem_psql -d "$db" -Atc "$1" "${@:2}"; }
as() { local role=$1 db=$2; shift 2; idem_psql -U "$role" -d "$db" -Atc "$1"; }
check() {
	if [ "$2" = "$3" ]; then
		idem_pass "upgrade/$1"
	else
		idem_fail "upgrade/$1"
		printf '        expected: %s\n        actual:   %s\n' "$2" "$3"
		rc=1
	fi
}
# same NAME FILE_A FILE_B: the files are equal (else print the diff).
same() {
	local d=$work/${1//\//-}.diff
	if diff -u "$2" "$3" >"$d"; then
		idem_pass "upgrade/$1"
	else
		idem_fail "upgrade/$1"
		head -n 80 "$d" | sed 's/^/        /'
		rc=1
	fi
}

default_version=$(sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" \
	"$IDEM_ROOT/idempotency.control")

# The frozen install scripts go into the server's extension directory for
# the run.  Releases before 0.2.0 named their schema in the control file
# (schema = idempotency); a secondary control file per version restores
# that for their CREATE EXTENSION.  Whatever was there before is put back.
installed=()
backup=$work/extdir-backup
mkdir -p "$backup"
install_ext_file() { # SRC NAME
	if [ -e "$extdir/$2" ]; then cp -p "$extdir/$2" "$backup/$2"; fi
	installed+=("$2")
	cp "$1" "$extdir/$2"
	chmod 644 "$extdir/$2"
}
restore_ext_files() {
	local f
	for f in "${installed[@]}"; do
		if [ -e "$backup/$f" ]; then cp -p "$backup/$f" "$extdir/$f"; else rm -f "$extdir/$f"; fi
	done
}
trap restore_ext_files EXIT

old_versions=()
for f in "$fixtures"/idempotency--*.sql; do
	v=$(basename "$f" .sql)
	v=${v#idempotency--}
	case $v in *--*) continue ;; esac
	old_versions+=("$v")
	install_ext_file "$f" "idempotency--$v.sql"
	if [ "$v" = 0.1.0 ]; then
		printf "# idempotency %s: its control file (test only)\nschema = idempotency\n" "$v" \
			>"$work/idempotency--$v.control"
		install_ext_file "$work/idempotency--$v.control" "idempotency--$v.control"
	fi
done

# ---------------------------------------------------------------------------
# Update paths: from every earlier release to default_version.
# ---------------------------------------------------------------------------

# Every update script changes a function: a session's library checks the
# SQL objects' version again only after a change of pg_proc (an update of
# pg_extension alone invalidates nothing), so a script that changed none
# would leave sessions serving SQL objects newer than their library.
for f in "$IDEM_ROOT"/sql/idempotency--*--*.sql; do
	check "changes-a-function-$(basename "$f" .sql)" yes \
		"$(grep -qE '^(CREATE( OR REPLACE)?|ALTER|DROP) FUNCTION idempotency\.' "$f" && echo yes || echo "no CREATE/ALTER/DROP FUNCTION in $f")"
done

# Every release named in CHANGELOG.md other than the one being prepared
# has a frozen install script.
for v in $(sed -nE 's/^## \[([0-9]+\.[0-9]+\.[0-9]+)\].*/\1/p' "$IDEM_ROOT/CHANGELOG.md"); do
	[ "$v" = "$default_version" ] && continue
	check "fixture-$v" present "$([ -f "$fixtures/idempotency--$v.sql" ] && echo present || echo "missing test/fixtures/idempotency--$v.sql")"
done

check default-version-available t \
	"$(sql postgres "SELECT count(*) = 1 FROM pg_available_extension_versions WHERE name = 'idempotency' AND version = '$default_version'")"
# Every version with an install script (the fixtures, and whatever else the
# extension directory holds) reaches default_version.
versions=$(printf '%s\n' "${old_versions[@]}" \
	"$(sql postgres "SELECT string_agg(version, E'\n') FROM pg_available_extension_versions WHERE name = 'idempotency'")" \
	| sort -u | grep -v "^$default_version\$" | grep . || true)
for v in $versions; do
	check "path-$v-to-$default_version" "has a path" "$(sql postgres "
		SELECT CASE WHEN path IS NULL THEN 'no update path' ELSE 'has a path' END
		  FROM pg_extension_update_paths('idempotency')
		 WHERE source = '$v' AND target = '$default_version'
		UNION ALL SELECT 'no update path'
		 WHERE NOT EXISTS (SELECT FROM pg_extension_update_paths('idempotency')
		                    WHERE source = '$v' AND target = '$default_version')")"
done

# ---------------------------------------------------------------------------
# 0.1.0 -> default_version, with data, for both kinds of installer.
# ---------------------------------------------------------------------------

fixture=$fixtures/idempotency--0.1.0.sql
[ -f "$fixture" ] || { idem_fail "upgrade/fixture-0.1.0"; exit 1; }

sql postgres "CREATE ROLE upg_owner LOGIN; CREATE ROLE upg_app LOGIN; CREATE ROLE \"Upg-Mixed\" LOGIN" >/dev/null
# The role that runs the extension's scripts: the one installing or
# updating when it is a superuser, else the bootstrap superuser.  Both
# scenarios below run them as this one.
script_role=$(sql postgres "SELECT rolname FROM pg_roles WHERE oid = 10")
# Default privileges of that role, which reach whatever the scripts create
# unless they take them back.
default_privileges="
	ALTER DEFAULT PRIVILEGES FOR ROLE \"$script_role\" GRANT ALL ON TABLES TO upg_app;
	ALTER DEFAULT PRIVILEGES FOR ROLE \"$script_role\" GRANT ALL ON SEQUENCES TO upg_app;
	ALTER DEFAULT PRIVILEGES FOR ROLE \"$script_role\" GRANT ALL ON FUNCTIONS TO upg_app;
	ALTER DEFAULT PRIVILEGES FOR ROLE \"$script_role\" GRANT ALL ON TYPES TO upg_app;
	ALTER DEFAULT PRIVILEGES FOR ROLE \"$script_role\" GRANT ALL ON SCHEMAS TO upg_app;
	ALTER DEFAULT PRIVILEGES FOR ROLE \"$script_role\" GRANT ALL ON TABLES TO PUBLIC;
	ALTER DEFAULT PRIVILEGES FOR ROLE \"$script_role\" GRANT ALL ON SEQUENCES TO PUBLIC;
	ALTER DEFAULT PRIVILEGES FOR ROLE \"$script_role\" GRANT ALL ON SCHEMAS TO PUBLIC"
# What any role (PUBLIC) may do beyond a fresh install's grants: nothing.
public_extra() { # DB
	sql "$1" "SELECT has_schema_privilege('upg_app', 'idempotency', 'CREATE')
	    OR has_table_privilege('upg_app', 'idempotency.processed_events', 'INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES')
	    OR has_table_privilege('upg_app', 'idempotency.leases', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES')
	    OR has_table_privilege('upg_app', 'idempotency.mutex_slots', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES')
	    OR has_table_privilege('upg_app', 'idempotency.stats', 'INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES')
	    OR has_sequence_privilege('upg_app', 'idempotency.processed_events_fencing_seq', 'USAGE, SELECT, UPDATE')"
}

# Every function of 0.1.0, called against 0.1.0's SQL objects by the new
# library.  The suite checks below that each function of the fixture is
# called here.
calls_0_1_0() {
	cat <<'SQL'
\set ON_ERROR_STOP 1
SELECT idempotency.version() IS NOT NULL AS version;
CREATE TEMP TABLE upg_acct (id bigserial PRIMARY KEY, k text UNIQUE, n int);
SELECT (idempotency.idempotent_upsert(NULL::upg_acct, '{"k": "a", "n": 1}')).k AS idempotent_upsert;
SELECT created AS get_or_create FROM idempotency.get_or_create(NULL::upg_acct, '{"k": "b", "n": 2}');
SELECT created AS update_or_create FROM idempotency.update_or_create(NULL::upg_acct, '{"k": "b", "n": 3}');
SELECT count(*) AS idempotent_upsert_many FROM idempotency.idempotent_upsert_many(NULL::upg_acct, '[{"k": "c", "n": 4}, {"k": "a", "n": 1}]');
SELECT idempotency.mark_processed('upg-call-mark', 'calls') AS mark_processed;
SELECT status AS claim FROM idempotency.claim('upg-call-claim', '{"x": 1}', 'calls');
SELECT idempotency.complete('upg-call-claim', '{"ok": true}', 'calls', (SELECT token FROM idempotency.processed_events WHERE key = 'upg-call-claim' AND owner::text = current_user)) AS complete;
SELECT status AS claim2 FROM idempotency.claim('upg-call-fail', NULL, 'calls');
SELECT idempotency.fail('upg-call-fail', '{"e": 1}', false, 'calls', (SELECT token FROM idempotency.processed_events WHERE key = 'upg-call-fail' AND owner::text = current_user)) AS fail;
SELECT idempotency.mark_processed('upg-call-forget', 'calls') AS mark_processed2;
SELECT idempotency.forget('upg-call-forget', 'calls') AS forget;
SELECT idempotency.purge() >= 0 AS purge;
BEGIN;
SELECT idempotency.mutex_lock('upg-m') AS mutex_lock;
SELECT idempotency.mutex_try_lock('upg-m2') AS mutex_try_lock;
SELECT count(*) AS mutex_holders FROM idempotency.mutex_holders('upg-m');
COMMIT;
SELECT idempotency.mutex_session_lock('upg-s') AS mutex_session_lock;
SELECT idempotency.mutex_session_try_lock('upg-s2') AS mutex_session_try_lock;
SELECT idempotency.mutex_session_unlock('upg-s') AS mutex_session_unlock;
SELECT idempotency.mutex_session_unlock_all() AS mutex_session_unlock_all;
SELECT status AS lease_acquire FROM idempotency.lease_acquire('upg-call-lease', '1 minute', 'calls');
SELECT status AS lease_renew FROM idempotency.lease_renew('upg-call-lease', (SELECT token FROM idempotency.lease_status('upg-call-lease')));
SELECT idempotency.lease_assert('upg-call-lease', (SELECT token FROM idempotency.lease_status('upg-call-lease'))) > 0 AS lease_assert;
SELECT count(*) AS lease_status FROM idempotency.lease_status('upg-call-lease');
SELECT idempotency.lease_release('upg-call-lease') AS lease_release;
SQL
}
expected_calls="version|t
idempotent_upsert|a
get_or_create|t
update_or_create|f
idempotent_upsert_many|2
mark_processed|t
claim|claimed
complete|
claim2|claimed
fail|
mark_processed2|t
forget|t
purge|t
mutex_lock|t
mutex_try_lock|t
mutex_holders|1
mutex_session_lock|t
mutex_session_try_lock|t
mutex_session_unlock|t
mutex_session_unlock_all|
lease_acquire|acquired
lease_renew|renewed
lease_assert|t
lease_status|1
lease_release|released"

# Every function created by the fixture is called above.
missing=""
for f in $(sed -nE 's/^CREATE FUNCTION idempotency\.([a-z_]+)\(.*/\1/p' "$fixture" | sort -u); do
	calls_0_1_0 | grep -q "idempotency\.$f(" || missing="$missing $f"
done
check calls-cover-0.1.0-functions "" "${missing# }"

# write_rows ROLE DB TAG: test/fixtures/rows.sql as ROLE.
write_rows() {
	local out
	if ! out=$(PGOPTIONS="-c idem.tag=$3" idem_psql -U "$1" -d "$2" -f "$IDEM_ROOT/test/fixtures/rows.sql" 2>&1); then
		idem_fail "upgrade/write-rows-$3"
		echo "$out"
		rc=1
	fi
}

# step NAME ROLE DB SQL: run SQL as ROLE; on an error, NAME fails.
step() {
	local out
	out=$(as "$2" "$3" "$4" 2>&1) && return 0
	idem_fail "upgrade/$1"
	echo "$out"
	rc=1
	return 1
}

dump_rows() { # DB FILE
	sql "$1" "
	SELECT 'events', to_jsonb(p) FROM idempotency.processed_events p WHERE scope <> 'quoted-owner' ORDER BY owner::text, scope, key;
	SELECT 'leases', to_jsonb(l) FROM idempotency.leases l ORDER BY key;
	SELECT 'seq', last_value, is_called FROM idempotency.processed_events_fencing_seq;" >"$2"
}

# Grants to upg_app on the extension's members and the columns of its
# tables, and to "Upg-Mixed" on its tables and their columns: one line
# each, none expected.
foreign_grants() { # DB
	sql "$1" "
	WITH members AS (
	    SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
	     WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'idempotency' AND d.deptype = 'e'),
	grants(what, acl) AS (
	    SELECT pg_describe_object(m.classid, m.objid, 0), n.nspacl
	      FROM members m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
	    UNION ALL
	    SELECT pg_describe_object(m.classid, m.objid, 0), c.relacl
	      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	    UNION ALL
	    SELECT pg_describe_object(m.classid, m.objid, a.attnum), a.attacl
	      FROM members m JOIN pg_attribute a ON m.classid = 'pg_class'::regclass AND a.attrelid = m.objid
	    UNION ALL
	    SELECT pg_describe_object(m.classid, m.objid, 0), p.proacl
	      FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
	    UNION ALL
	    SELECT pg_describe_object(m.classid, m.objid, 0), t.typacl
	      FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid)
	SELECT string_agg(x.privilege_type || ' on ' || g.what || ' to ' || x.grantee::regrole::text, E'\\n'
	                  ORDER BY g.what, x.grantee::regrole::text, x.privilege_type)
	  FROM grants g, aclexplode(g.acl) x
	 WHERE x.grantee = 'upg_app'::regrole
	    OR (x.grantee = '\"Upg-Mixed\"'::regrole AND g.what NOT LIKE 'function %')"
}

# A NULL ACL stands for the default privileges (acldefault): shown as
# those, and initial privileges equal to them as none.  A fresh install
# under default privileges of the script's role ends with explicit ACLs on
# the functions, equal to the defaults, where 0.1.0's functions, created
# before those defaults, have none (see the install script's last block).
catalog_query() {
	cat <<'SQL'
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'idempotency'),
members AS (
    SELECT d.classid, d.objid, d.objsubid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT 'extension', extnamespace::regnamespace::text, extowner::regrole::text, extversion,
       extrelocatable::text, extconfig::regclass[]::text, extcondition::text
  FROM pg_extension WHERE extname = 'idempotency'
UNION ALL
SELECT 'depends-on', pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid), d.deptype::text, NULL, NULL, NULL, NULL
  FROM pg_depend d, ext WHERE d.classid = 'pg_extension'::regclass AND d.objid = ext.oid
UNION ALL
SELECT 'member', pg_describe_object(classid, objid, objsubid), NULL, NULL, NULL, NULL, NULL FROM members
UNION ALL
SELECT 'schema', n.nspname, n.nspowner::regrole::text, coalesce(n.nspacl, acldefault('n', n.nspowner))::text,
       r.rolsuper::text, NULL, NULL
  FROM members m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
  JOIN pg_roles r ON r.oid = n.nspowner
UNION ALL
SELECT 'relation', c.oid::regclass::text, c.relkind::text, c.relowner::regrole::text,
       CASE WHEN c.relkind = 'i' THEN c.relacl
            ELSE coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))
       END::text,
       c.relrowsecurity::text || c.relforcerowsecurity::text, obj_description(c.oid, 'pg_class')
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'function', p.oid::regprocedure::text, p.proowner::regrole::text,
       coalesce(p.proacl, acldefault('f', p.proowner))::text,
       pg_get_functiondef(p.oid), p.proconfig::text, obj_description(p.oid, 'pg_proc')
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT 'type', t.oid::regtype::text, t.typowner::regrole::text,
       coalesce(t.typacl, acldefault('T', t.typowner))::text,
       (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0),
       NULL, obj_description(t.oid, 'pg_type')
  FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'policy', schemaname || '.' || tablename || '.' || policyname, permissive, roles::text, cmd,
       qual, with_check
  FROM pg_policies WHERE schemaname = 'idempotency'
UNION ALL
SELECT 'init-privs', pg_describe_object(i.classoid, i.objoid, i.objsubid), i.privtype::text, i.initprivs::text,
       NULL, NULL, NULL
  FROM pg_init_privs i
 WHERE ((i.classoid, i.objoid) IN (SELECT classid, objid FROM members)
        OR (i.classoid = 'pg_class'::regclass AND i.objoid IN
            (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)))
   AND i.initprivs IS DISTINCT FROM (
       SELECT acldefault('f', p.proowner) FROM pg_proc p
        WHERE i.classoid = 'pg_proc'::regclass AND p.oid = i.objoid
       UNION ALL
       SELECT acldefault('n', n.nspowner) FROM pg_namespace n
        WHERE i.classoid = 'pg_namespace'::regclass AND n.oid = i.objoid
       UNION ALL
       SELECT acldefault('T', t.typowner) FROM pg_type t
        WHERE i.classoid = 'pg_type'::regclass AND t.oid = i.objoid
       UNION ALL
       SELECT acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner) FROM pg_class c
        WHERE i.classoid = 'pg_class'::regclass AND c.oid = i.objoid AND i.objsubid = 0)
ORDER BY 1, 2, 3, 4;
SQL
}

# pg_dump --schema-only --binary-upgrade lists the extension's members with
# their privileges and initial privileges; drop what differs only by OIDs,
# transaction ids, the database's name, the dump's random \\restrict key
# and the fencing sequence's position (the rows are compared above), and
# the ACL entries that change nothing: initial privileges equal to the
# defaults, as a fresh install under default privileges records them for
# every function (see catalog_query).
schema_dump() { # DB FILE
	"$PGBINDIR/pg_dump" -U postgres --schema-only --binary-upgrade -d "$1" >"$2.raw" || return 1
	perl -0777 -pe 's/--\n-- Name: [^\n]*; Type: ACL;[^\n]*\n--\n\nSELECT pg_catalog\.binary_upgrade_set_record_init_privs\(true\);\nSELECT pg_catalog\.binary_upgrade_set_record_init_privs\(false\);\n\n\n//g' "$2.raw" \
	| sed -E \
		-e '/binary_upgrade_set_next_/d' \
		-e '/^-- (Name|TOC entry|Dependencies):/d' \
		-e '/^-- (Dumped from|Dumped by)/d' \
		-e '/relfrozenxid|relminmxid|datfrozenxid|datminmxid/d' \
		-e '/^\\(restrict|unrestrict) /d' \
		-e "/pg_catalog\.setval\('idempotency\.processed_events_fencing_seq'/d" \
		-e "s/'[0-9]+'::pg_catalog\.oid/'OID'/g" \
		-e "s/^WHERE oid = '[0-9]+';/WHERE oid = 'OID';/" \
		-e "s/'\{[0-9,]+\}'::pg_catalog\.oid\[\]/'{OIDS}'::pg_catalog.oid[]/g" \
		-e "/binary_upgrade_[a-z_]*\(.*[0-9]{4,}/s/[0-9]{4,}/OID/g" \
		-e "s/\b$1\b/DBNAME/g" \
		| cat -s >"$2"
}

# scenario NAME INSTALLER: 0.1.0 installed by INSTALLER, data, calls,
# update (by INSTALLER), compare with a fresh install by INSTALLER.
scenario() {
	local name=$1 installer=$2 old new
	old=upg_${name}_old
	new=upg_${name}_new
	sql postgres "CREATE DATABASE $old OWNER $installer" >/dev/null
	sql postgres "CREATE DATABASE $new OWNER $installer" >/dev/null

	step "$name/create-0.1.0" "$installer" "$old" "CREATE EXTENSION idempotency VERSION '0.1.0'" || return
	check "$name/installed-0.1.0" "0.1.0|idempotency|$installer" \
		"$(sql "$old" "SELECT extversion, extnamespace::regnamespace, extowner::regrole FROM pg_extension WHERE extname = 'idempotency'")"

	write_rows "$installer" "$old" "$name-i"
	write_rows upg_app "$old" "$name-a"
	sql "$old" "SELECT nextval('idempotency.processed_events_fencing_seq') FROM generate_series(1, 3)" >/dev/null
	check "$name/rows-written" "16|6|t|t" "$(sql "$old" "
		SELECT (SELECT count(*) FROM idempotency.processed_events),
		       (SELECT count(*) FROM idempotency.leases),
		       (SELECT min(fencing_token) FROM idempotency.leases WHERE key LIKE '%-lease-_') > 1,
		       (SELECT last_value FROM idempotency.processed_events_fencing_seq) > 10")"

	# The new library against the 0.1.0 objects, as the installer and as
	# another role.
	local r
	for r in "$installer" upg_app; do
		if out=$(calls_0_1_0 | idem_psql -U "$r" -d "$old" -At -F '|' -x 2>&1 | grep -v '^$' | sed 's/^\([a-z_0-9]*\)|/\1|/'); then
			check "$name/0.1.0-calls-as-$r" "$expected_calls" \
				"$(printf '%s\n' "$out" | grep -v '^CREATE TABLE\|^BEGIN\|^COMMIT')"
		else
			idem_fail "upgrade/$name/0.1.0-calls-as-$r"
			echo "$out" | tail -n 5
			rc=1
		fi
		sql "$old" "DELETE FROM idempotency.processed_events WHERE scope = 'calls'; DELETE FROM idempotency.leases WHERE key = 'upg-call-lease'" >/dev/null
	done

	# Who the statements run as, while 0.1.0's schema belongs to the
	# installing role: that role could rename the schema and put tables of
	# its own under the name between the library's lookup of the owner and
	# the statement, so unless it is a superuser the statements run as the
	# caller (0.1.0 granted callers what they need); after the update, as
	# the tables' owner.
	sql "$old" "CREATE TABLE public.upg_who (who text);
		GRANT INSERT ON public.upg_who TO PUBLIC;
		CREATE FUNCTION public.upg_who() RETURNS trigger LANGUAGE plpgsql
		  AS \$\$BEGIN INSERT INTO public.upg_who VALUES (current_user); RETURN NEW; END\$\$;
		CREATE TRIGGER upg_who BEFORE INSERT ON idempotency.processed_events
		  FOR EACH ROW EXECUTE FUNCTION public.upg_who()" >/dev/null
	as upg_app "$old" "SELECT idempotency.mark_processed('$name-who', 'who')" >/dev/null
	local runs_as=upg_app
	[ "$installer" = postgres ] && runs_as=$(sql "$old" "SELECT tableowner FROM pg_tables WHERE schemaname = 'idempotency' AND tablename = 'processed_events'")
	check "$name/0.1.0-statements-run-as" "$runs_as" "$(sql "$old" "SELECT string_agg(who, ',') FROM public.upg_who")"
	sql "$old" "DROP TRIGGER upg_who ON idempotency.processed_events; DROP FUNCTION public.upg_who();
		DROP TABLE public.upg_who; DELETE FROM idempotency.processed_events WHERE scope = 'who'" >/dev/null

	local before_max
	before_max=$(sql "$old" "SELECT greatest((SELECT max(fencing_token) FROM idempotency.processed_events),
		(SELECT last_value FROM idempotency.processed_events_fencing_seq))")
	local lease_before
	lease_before=$(sql "$old" "SELECT fencing_token FROM idempotency.leases WHERE key = '$name-i-lease-1'")
	dump_rows "$old" "$work/$name-rows-before"
	# A role whose name regrole's output double-quotes keeps its records.
	check "$name/quoted-owner-before" t "$(as Upg-Mixed "$old" "
		SELECT idempotency.mark_processed('$name-quoted', 'quoted-owner')")"

	# The installing role owns 0.1.0's schema.  The update, run by a
	# superuser, refuses another schema of that name and objects in the
	# schema that are not the extension's, and drops the role's grants on
	# it (the catalog comparison below sees the schema's privileges).
	as "$installer" "$old" "ALTER SCHEMA idempotency RENAME TO idem_moved; CREATE SCHEMA idempotency" >/dev/null
	check "$name/update-refuses-another-schema" 1 "$(as "$installer" "$old" "ALTER EXTENSION idempotency UPDATE" 2>&1 \
		| grep -c '^ERROR:  schema "idempotency" is not the schema of extension "idempotency"')"
	as "$installer" "$old" "DROP SCHEMA idempotency; ALTER SCHEMA idem_moved RENAME TO idempotency" >/dev/null
	as "$installer" "$old" "CREATE FUNCTION idempotency.lease_acquire(key text, wait text) RETURNS text
		LANGUAGE sql AS 'SELECT ''planted''::text'; GRANT CREATE ON SCHEMA idempotency TO upg_app" >/dev/null
	check "$name/update-refuses-foreign-objects" 1 "$(as "$installer" "$old" "ALTER EXTENSION idempotency UPDATE" 2>&1 \
		| grep -c '^DETAIL:  Not the extension.s: function idempotency.lease_acquire(pg_catalog.text,pg_catalog.text)\.$')"
	as "$installer" "$old" "DROP FUNCTION idempotency.lease_acquire(text, text)" >/dev/null

	# 0.1.0 told DBAs to grant the table privileges its functions needed to
	# application roles; 0.2.0's functions need none, and the update takes
	# them back, with a grant option's grants and column grants.  A grant
	# on one of 0.1.0's functions stays.
	sql "$old" "GRANT INSERT, UPDATE ON idempotency.leases TO upg_app;
		GRANT USAGE, UPDATE ON SEQUENCE idempotency.processed_events_fencing_seq TO upg_app;
		GRANT INSERT, DELETE ON idempotency.processed_events TO upg_app WITH GRANT OPTION;
		GRANT UPDATE (status) ON idempotency.processed_events TO upg_app;
		GRANT EXECUTE ON FUNCTION idempotency.purge(integer) TO \"Upg-Mixed\"" >/dev/null
	as upg_app "$old" "GRANT DELETE ON idempotency.processed_events TO \"Upg-Mixed\"" >/dev/null
	# The update creates claim() and three lease functions again (their
	# return types change): the privileges administrators set on them
	# carry over, PUBLIC's revoke included, and stay out of the initial
	# privileges, so that a dump carries them.
	sql "$old" "GRANT EXECUTE ON FUNCTION idempotency.claim(text, jsonb, text, interval, interval, interval, boolean)
		    TO \"Upg-Mixed\";
		REVOKE EXECUTE ON FUNCTION idempotency.lease_renew(text, uuid, interval) FROM PUBLIC;
		GRANT EXECUTE ON FUNCTION idempotency.lease_renew(text, uuid, interval) TO \"Upg-Mixed\" WITH GRANT OPTION" >/dev/null
	as Upg-Mixed "$old" "GRANT EXECUTE ON FUNCTION idempotency.lease_renew(text, uuid, interval) TO upg_owner" >/dev/null
	# Default privileges set after 0.1.0 was installed reach only what the
	# update creates.
	sql "$old" "$default_privileges" >/dev/null

	local update_out
	if ! update_out=$(as "$installer" "$old" "ALTER EXTENSION idempotency UPDATE" 2>&1); then
		idem_fail "upgrade/$name/update"
		echo "$update_out"
		rc=1
		return
	fi
	check "$name/update-warns-revoked-grants" 'WARNING:  revoked DELETE on table idempotency.processed_events from role "Upg-Mixed"
WARNING:  revoked DELETE, INSERT, UPDATE (status) on table idempotency.processed_events from role upg_app
WARNING:  revoked INSERT, UPDATE on table idempotency.leases from role upg_app
WARNING:  revoked UPDATE, USAGE on sequence idempotency.processed_events_fencing_seq from role upg_app' \
		"$(printf '%s\n' "$update_out" | grep '^WARNING:  revoked ' | LC_ALL=C sort)"
	# and no other warning (PostgreSQL's "no privileges could be revoked"
	# for a grant that goes with its grantor's)
	check "$name/update-no-other-warnings" "" \
		"$(printf '%s\n' "$update_out" | grep '^WARNING:' | grep -v '^WARNING:  revoked ')"
	check "$name/update-no-foreign-grants" "" "$(foreign_grants "$old")"
	check "$name/update-function-grants-kept" 'EXECUTE|"Upg-Mixed"' "$(sql "$old" "
		SELECT a.privilege_type, a.grantee::regrole FROM pg_proc p, aclexplode(p.proacl) a
		 WHERE p.oid = 'idempotency.purge(integer)'::regprocedure AND a.grantee = '\"Upg-Mixed\"'::regrole")"
	local fowner
	fowner=$(sql "$old" "SELECT proowner::regrole FROM pg_proc WHERE oid = 'idempotency.purge(integer)'::regprocedure")
	check "$name/update-replaced-function-grants-kept" "claim: -=X/$fowner $fowner=X/$fowner \"Upg-Mixed\"=X/$fowner
lease_acquire: -=X/$fowner $fowner=X/$fowner
lease_renew: $fowner=X/$fowner \"Upg-Mixed\"=X*/$fowner upg_owner=X/$fowner
lease_status: -=X/$fowner $fowner=X/$fowner" "$(sql "$old" "
		SELECT p.proname || ': ' || (SELECT string_agg(a.grantee::regrole::text || '=X'
		                                               || CASE WHEN a.is_grantable THEN '*' ELSE '' END
		                                               || '/' || a.grantor::regrole::text, ' ' ORDER BY n)
		                               FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner)))
		                                    WITH ORDINALITY a(grantor, grantee, privilege_type, is_grantable, n))
		  FROM pg_proc p WHERE p.pronamespace = 'idempotency'::regnamespace
		   AND p.proname IN ('claim', 'lease_acquire', 'lease_renew', 'lease_status') ORDER BY 1")"
	check "$name/update-replaced-functions-no-initial-privileges" 0 "$(sql "$old" "
		SELECT count(*) FROM pg_init_privs i JOIN pg_proc p ON i.classoid = 'pg_proc'::regclass AND p.oid = i.objoid
		 WHERE p.pronamespace = 'idempotency'::regnamespace
		   AND p.proname IN ('claim', 'lease_acquire', 'lease_renew', 'lease_status')")"
	check "$name/update-replaced-function-grants-dumped" 3 "$("$PGBINDIR/pg_dump" -U postgres --schema-only -d "$old" \
		| grep -c -E '^(GRANT ALL ON FUNCTION idempotency\.claim\(.*\) TO "Upg-Mixed";|REVOKE ALL ON FUNCTION idempotency\.lease_renew\(.*\) FROM PUBLIC;|GRANT ALL ON FUNCTION idempotency\.lease_renew\(.*\) TO "Upg-Mixed" WITH GRANT OPTION;)$')"
	check "$name/update-no-create-on-schema" f \
		"$(sql "$old" "SELECT has_schema_privilege('upg_app', 'idempotency', 'CREATE')")"
	check "$name/update-nothing-more-for-public" f "$(public_extra "$old")"
	local su
	su=$(sql "$old" "SELECT current_user")
	check "$name/schema-grants-dropped" "{$su=UC/$su,=U/$su}" \
		"$(sql "$old" "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'idempotency'")"
	check "$name/schema-grants-forgotten" 0 "$(sql "$old" "
		SELECT count(*) FROM pg_shdepend s
		 WHERE s.classid = 'pg_namespace'::regclass AND s.objid = 'idempotency'::regnamespace
		   AND s.refobjid = 'upg_app'::regrole")"
	check "$name/updated" "$default_version" \
		"$(sql "$old" "SELECT extversion FROM pg_extension WHERE extname = 'idempotency'")"
	dump_rows "$old" "$work/$name-rows-after"
	same "$name/rows-kept" "$work/$name-rows-before" "$work/$name-rows-after"

	check "$name/quoted-owner-after-update" "f|t|Upg-Mixed" "$(as Upg-Mixed "$old" "
		SELECT idempotency.mark_processed('$name-quoted', 'quoted-owner'),
		       idempotency.forget('$name-quoted', 'quoted-owner'),
		       (SELECT pg_catalog.string_agg(owner::text, ',') FROM idempotency.processed_events
		         WHERE scope = 'quoted-owner' AND key = '$name-quoted')")"
	check "$name/claim-fencing-after-update" t "$(as "$installer" "$old" "
		SELECT fencing_token > $before_max FROM idempotency.claim('$name-after-update', NULL, 'orders')")"
	check "$name/lease-fencing-after-update" "acquired|t" "$(as upg_app "$old" "
		SELECT status, fencing_token > $lease_before FROM idempotency.lease_acquire('$name-i-lease-1')")"
	check "$name/version-after-update" "$default_version" "$(as upg_app "$old" "SELECT idempotency.version()")"
	check "$name/stats-after-update" t "$(as upg_app "$old" "SELECT count(*) >= 0 FROM idempotency.stats")"

	# The same catalog as a fresh install by the same role, under the same
	# default privileges, which reach none of its objects.
	sql "$new" "$default_privileges" >/dev/null
	step "$name/fresh-install" "$installer" "$new" "CREATE EXTENSION idempotency" || return
	check "$name/fresh-install-default-privileges" "" "$(foreign_grants "$new")"
	check "$name/fresh-install-no-create-on-schema" f \
		"$(sql "$new" "SELECT has_schema_privilege('upg_app', 'idempotency', 'CREATE')")"
	check "$name/fresh-install-nothing-more-for-public" f "$(public_extra "$new")"
	# (the grant kept on a 0.1.0 function is the DBA's, not the extension's)
	sql "$old" "REVOKE EXECUTE ON FUNCTION idempotency.purge(integer) FROM \"Upg-Mixed\";
		REVOKE EXECUTE ON FUNCTION idempotency.claim(text, jsonb, text, interval, interval, interval, boolean)
		    FROM \"Upg-Mixed\";
		REVOKE ALL ON FUNCTION idempotency.lease_renew(text, uuid, interval) FROM \"Upg-Mixed\", upg_owner, $fowner CASCADE;
		GRANT EXECUTE ON FUNCTION idempotency.lease_renew(text, uuid, interval) TO PUBLIC, $fowner" >/dev/null
	sql "$old" "DELETE FROM idempotency.processed_events; DELETE FROM idempotency.leases" >/dev/null
	catalog_query | idem_psql -d "$old" -At -F ' | ' >"$work/$name-catalog-upgraded"
	catalog_query | idem_psql -d "$new" -At -F ' | ' >"$work/$name-catalog-fresh"
	same "$name/catalog-equals-fresh-install" "$work/$name-catalog-fresh" "$work/$name-catalog-upgraded"
	if schema_dump "$old" "$work/$name-dump-upgraded" && schema_dump "$new" "$work/$name-dump-fresh"; then
		same "$name/binary-upgrade-dump-equals-fresh-install" "$work/$name-dump-fresh" "$work/$name-dump-upgraded"
	else
		idem_fail "upgrade/$name/binary-upgrade-dump"
		rc=1
	fi
	check "$name/schema-owner-superuser" "t|$installer" "$(sql "$old" "
		SELECT r.rolsuper, (SELECT c.relowner::regrole FROM pg_class c WHERE c.oid = 'idempotency.leases'::regclass)
		  FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = 'idempotency'")"
}

scenario superuser postgres
scenario trusted upg_owner

# ---------------------------------------------------------------------------
# A view on processed_events.owner, which every role could read in 0.1.0:
# the update cannot change the column's type under it (README, Upgrading).
# ---------------------------------------------------------------------------

sql postgres "CREATE DATABASE upg_view" >/dev/null
if step view/create-0.1.0 postgres upg_view "CREATE EXTENSION idempotency VERSION '0.1.0';
		CREATE SCHEMA upg_app_views AUTHORIZATION upg_app"; then
	view="CREATE VIEW upg_app_views.mine AS SELECT owner, scope, key FROM idempotency.processed_events"
	step view/create-view upg_app upg_view "$view"
	check view/update-refused "ERROR:  cannot alter type of a column used by a view or rule|0.1.0" \
		"$(as postgres upg_view "ALTER EXTENSION idempotency UPDATE" 2>&1 | grep '^ERROR:')|$(sql upg_view "
		SELECT extversion FROM pg_extension WHERE extname = 'idempotency'")"
	step view/drop-view upg_app upg_view "DROP VIEW upg_app_views.mine"
	# and a view on one of the functions the update creates again
	step view/create-function-view upg_app upg_view \
		"CREATE VIEW upg_app_views.lease AS SELECT * FROM idempotency.lease_status('upg-view')"
	check view/update-refused-function-view "ERROR:  cannot drop function lease_status(text) because other objects depend on it|0.1.0" \
		"$(as postgres upg_view "ALTER EXTENSION idempotency UPDATE" 2>&1 | grep '^ERROR:')|$(sql upg_view "
		SELECT extversion FROM pg_extension WHERE extname = 'idempotency'")"
	step view/drop-function-view upg_app upg_view "DROP VIEW upg_app_views.lease"
	step view/update postgres upg_view "ALTER EXTENSION idempotency UPDATE"
	step view/create-view-again upg_app upg_view "$view"
	check view/owner-is-text "$default_version|text" "$(sql upg_view "
		SELECT (SELECT extversion FROM pg_extension WHERE extname = 'idempotency'), a.atttypid::regtype
		  FROM pg_attribute a WHERE a.attrelid = 'upg_app_views.mine'::regclass AND a.attname = 'owner'")"
fi

for db in upg_superuser_old upg_superuser_new upg_trusted_old upg_trusted_new upg_view; do
	sql postgres "DROP DATABASE IF EXISTS $db" >/dev/null
done
sql postgres "DROP ROLE upg_owner; DROP ROLE upg_app; DROP ROLE \"Upg-Mixed\"" >/dev/null 2>&1
exit $rc
