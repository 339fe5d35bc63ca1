-- idempotency 0.1.0 -> 0.2.0.  Every row of processed_events and leases,
-- and the fencing sequence, are kept as they are.

\echo Use "ALTER EXTENSION idempotency UPDATE TO '0.2.0'" to load this file. \quit

---------------------------------------------------------------------------
-- The schema becomes a member of the extension, owned by a superuser.
---------------------------------------------------------------------------

-- 0.1.0 named the schema in the control file, so PostgreSQL created it
-- before the script, owned by the installing role (the database owner, for
-- a trusted install), and not as a member of the extension: that role could
-- rename it and plant look-alike functions for other roles to call.  0.2.0
-- creates the schema in its install script, with pg_catalog as the
-- extension's schema.  Make an existing installation look the same: point
-- the extension at pg_catalog (an extension cannot be a member of the
-- schema that it lives in), replace its dependency on the schema by
-- membership, and hand the schema to the superuser running this script.
--
-- Until this block takes it, the schema belongs to the installing role,
-- which could have renamed it and created another schema of that name
-- full of look-alike tables and casts, for this script (run by a
-- superuser) to use, or left functions of its own in it, for other roles
-- to call once the schema is trusted.  So: the schema named idempotency
-- must be the extension's; it is then taken, whatever privileges that role
-- granted on it are dropped (the same privileges as a fresh install's
-- follow), and every object in it must belong to the extension (or be part
-- of one that does: a row type, an index).
DO $schema$
DECLARE
    ext pg_catalog.oid;
    nsp pg_catalog.oid;
    named pg_catalog.oid := pg_catalog.to_regnamespace('idempotency');
    strangers pg_catalog.text;
    grantee pg_catalog.oid;
BEGIN
    SELECT e.oid, e.extnamespace INTO ext, nsp
      FROM pg_catalog.pg_extension e
     WHERE e.extname OPERATOR(pg_catalog.=) 'idempotency';
    IF nsp OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
       AND named IS NOT NULL
       AND EXISTS (SELECT FROM pg_catalog.pg_depend d
                    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
                      AND d.objid OPERATOR(pg_catalog.=) named
                      AND d.refobjid OPERATOR(pg_catalog.=) ext
                      AND d.deptype OPERATOR(pg_catalog.=) 'e') THEN
        nsp := named;
    END IF;
    IF named IS NULL OR named OPERATOR(pg_catalog.<>) nsp THEN
        RAISE EXCEPTION 'schema "idempotency" is not the schema of extension "idempotency"'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = pg_catalog.format('The extension''s objects are in schema %s.',
                                             nsp::pg_catalog.regnamespace),
                  HINT = 'Give the extension''s schema its name idempotency back (renaming any other schema of that name) and update again.';
    END IF;

    -- Take the schema first: from here on the role that owned it can no
    -- longer rename it or create anything in it.  Its grants go (REVOKE,
    -- which also forgets them in pg_shdepend; CASCADE takes the grants
    -- made with a grant option), leaving a fresh install's USAGE for
    -- PUBLIC, before ADD SCHEMA below records the privileges at that
    -- moment as the schema's initial privileges (pg_init_privs), which must
    -- name the superuser.
    EXECUTE 'ALTER SCHEMA idempotency OWNER TO CURRENT_USER';
    FOR grantee IN
        SELECT DISTINCT a.grantee
          FROM pg_catalog.pg_namespace n, LATERAL pg_catalog.aclexplode(n.nspacl) a
         WHERE n.oid OPERATOR(pg_catalog.=) nsp
           AND a.grantor OPERATOR(pg_catalog.=) n.nspowner
           AND a.grantee OPERATOR(pg_catalog.<>) n.nspowner
    LOOP
        EXECUTE 'REVOKE ALL ON SCHEMA idempotency FROM '
                OPERATOR(pg_catalog.||) CASE WHEN grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                            ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(grantee)) END
                OPERATOR(pg_catalog.||) ' CASCADE';
    END LOOP;
    EXECUTE 'GRANT USAGE ON SCHEMA idempotency TO PUBLIC';

    -- Then what is in it: nothing but the extension's objects, and objects
    -- that are part of one (a table's row type and its array type, an
    -- index, a sequence owned by a column).  An object created by a
    -- transaction still open now is not seen (PostgreSQL takes no lock on
    -- a schema to create in it); the README says to update when the
    -- installing role has no transaction open, and how to check after.
    WITH RECURSIVE owned(classid, objid) AS (
        -- the extension's members, and what is part of one (internal or
        -- automatic dependencies), at any depth
        SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.refobjid OPERATOR(pg_catalog.=) ext
           AND d.deptype OPERATOR(pg_catalog.=) 'e'
        UNION
        SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
          JOIN owned w ON d.refclassid OPERATOR(pg_catalog.=) w.classid
                      AND d.refobjid OPERATOR(pg_catalog.=) w.objid
         WHERE d.deptype OPERATOR(pg_catalog.=) ANY (ARRAY['i', 'a']::pg_catalog."char"[]))
    SELECT pg_catalog.string_agg(i.type OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) i.identity,
                                 ', ' ORDER BY i.type, i.identity)
      INTO strangers
      FROM (SELECT 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, c.oid AS objid
              FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid
              FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid
              FROM pg_catalog.pg_type t WHERE t.typnamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, o.oid
              FROM pg_catalog.pg_operator o WHERE o.oprnamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_opclass'::pg_catalog.regclass, oc.oid
              FROM pg_catalog.pg_opclass oc WHERE oc.opcnamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_opfamily'::pg_catalog.regclass, f.oid
              FROM pg_catalog.pg_opfamily f WHERE f.opfnamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_collation'::pg_catalog.regclass, co.oid
              FROM pg_catalog.pg_collation co WHERE co.collnamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_conversion'::pg_catalog.regclass, cv.oid
              FROM pg_catalog.pg_conversion cv WHERE cv.connamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass, x.oid
              FROM pg_catalog.pg_statistic_ext x WHERE x.stxnamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_ts_config'::pg_catalog.regclass, tc.oid
              FROM pg_catalog.pg_ts_config tc WHERE tc.cfgnamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_ts_dict'::pg_catalog.regclass, td.oid
              FROM pg_catalog.pg_ts_dict td WHERE td.dictnamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_ts_parser'::pg_catalog.regclass, tp.oid
              FROM pg_catalog.pg_ts_parser tp WHERE tp.prsnamespace OPERATOR(pg_catalog.=) nsp
            UNION ALL SELECT 'pg_catalog.pg_ts_template'::pg_catalog.regclass, tt.oid
              FROM pg_catalog.pg_ts_template tt WHERE tt.tmplnamespace OPERATOR(pg_catalog.=) nsp) o,
           LATERAL pg_catalog.pg_identify_object(o.classid, o.objid, 0) i
     WHERE NOT EXISTS (SELECT FROM owned w
                        WHERE w.classid OPERATOR(pg_catalog.=) o.classid
                          AND w.objid OPERATOR(pg_catalog.=) o.objid);
    IF strangers IS NOT NULL THEN
        RAISE EXCEPTION 'schema "idempotency" holds objects that do not belong to extension "idempotency"'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Not the extension''s: ' OPERATOR(pg_catalog.||) strangers OPERATOR(pg_catalog.||) '.',
                  HINT = 'The update makes the schema trusted by every role: move these objects to another schema (ALTER ... SET SCHEMA) or drop them, and update again.';
    END IF;

    -- (unless it was pointed at pg_catalog already)
    IF nsp OPERATOR(pg_catalog.=) (SELECT e.extnamespace FROM pg_catalog.pg_extension e
                                    WHERE e.oid OPERATOR(pg_catalog.=) ext) THEN
        UPDATE pg_catalog.pg_extension
           SET extnamespace = 'pg_catalog'::pg_catalog.regnamespace
         WHERE oid OPERATOR(pg_catalog.=) ext;
        DELETE FROM pg_catalog.pg_depend d
         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) ext
           AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
           AND d.refobjid OPERATOR(pg_catalog.=) nsp;
    END IF;

    EXECUTE 'ALTER EXTENSION idempotency ADD SCHEMA idempotency';
    named := pg_catalog.to_regnamespace('idempotency');
    IF named IS NULL OR named OPERATOR(pg_catalog.<>) nsp THEN
        RAISE EXCEPTION 'schema "idempotency" was renamed during the update'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Update again.';
    END IF;
END
$schema$;

---------------------------------------------------------------------------
-- Upsert: the entry points under their 0.2.0 C names (the library keeps the
-- 0.1.0 names for databases not updated yet).
---------------------------------------------------------------------------

-- The planner support function of the three one-row functions and the two
-- batches: a one-row call whose vals is jsonb_build_object('column', value,
-- ...) passes the values as they are (see "Insert-or-get and upsert" in the
-- README); a batch's row count is estimated from its constant argument.
-- Takes and returns "internal": not callable from SQL.
CREATE FUNCTION idempotency.upsert_support(pg_catalog.internal)
    RETURNS pg_catalog.internal
    AS 'MODULE_PATHNAME', 'idempotency_upsert_support'
    LANGUAGE C STRICT;

CREATE OR REPLACE FUNCTION idempotency.idempotent_upsert(tbl pg_catalog.anyelement, vals pg_catalog.jsonb,
                                                         key_cols pg_catalog.text[] DEFAULT NULL)
    RETURNS pg_catalog.anyelement
    AS 'MODULE_PATHNAME', 'idempotency_idempotent_upsert'
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    SUPPORT idempotency.upsert_support;

CREATE OR REPLACE FUNCTION idempotency.get_or_create(tbl pg_catalog.anyelement, vals pg_catalog.jsonb,
                                                     key_cols pg_catalog.text[] DEFAULT NULL,
                                                     OUT item pg_catalog.anyelement, OUT created pg_catalog.bool)
    RETURNS pg_catalog.record
    AS 'MODULE_PATHNAME', 'idempotency_get_or_create'
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    SUPPORT idempotency.upsert_support;

CREATE OR REPLACE FUNCTION idempotency.update_or_create(tbl pg_catalog.anyelement, vals pg_catalog.jsonb,
                                                        key_cols pg_catalog.text[] DEFAULT NULL,
                                                        OUT item pg_catalog.anyelement, OUT created pg_catalog.bool)
    RETURNS pg_catalog.record
    AS 'MODULE_PATHNAME', 'idempotency_update_or_create'
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    SUPPORT idempotency.upsert_support;

CREATE OR REPLACE FUNCTION idempotency.idempotent_upsert_many(tbl pg_catalog.anyelement, vals pg_catalog.jsonb,
                                                              key_cols pg_catalog.text[] DEFAULT NULL)
    RETURNS SETOF pg_catalog.anyelement
    AS 'MODULE_PATHNAME', 'idempotency_idempotent_upsert_many'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100
    SUPPORT idempotency.upsert_support;

CREATE FUNCTION idempotency.idempotent_upsert_columns(tbl pg_catalog.anyelement, cols pg_catalog.text[],
                                                      key_cols pg_catalog.text[],
                                                      VARIADIC vals "any")
    RETURNS SETOF pg_catalog.anyelement
    AS 'MODULE_PATHNAME', 'idempotency_idempotent_upsert_columns'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100
    SUPPORT idempotency.upsert_support;

COMMENT ON FUNCTION idempotency.idempotent_upsert_columns(pg_catalog.anyelement, pg_catalog.text[], pg_catalog.text[], "any") IS
    'idempotent_upsert_many for a batch given as one array per column; one result row per array position, in order';

---------------------------------------------------------------------------
-- processed_events: read-only for everyone but its owner.
---------------------------------------------------------------------------

COMMENT ON TABLE idempotency.processed_events IS
    'idempotency keys and processed events, one row per (owning role, scope, key); changed only through the idempotency functions';

-- No CHECK on status: the functions write and validate it (src/events.c).
ALTER TABLE idempotency.processed_events
    DROP CONSTRAINT processed_events_status_check;

DROP POLICY processed_events_owner ON idempotency.processed_events;

-- The owner becomes the role's name: on a Citus cluster a role has a
-- different OID on every node, but the same name.  The name as the role
-- has it (what CURRENT_USER returns), not regrole's text output, which
-- double-quotes names such as "Billing-App".  A record of a role that no
-- longer exists gets pg_get_userbyid()'s "unknown (OID=n)", which only a
-- role created later under that very name would match (records belong to
-- role names; the README says so).  In the "C"
-- collation, as role names compare: owner = CURRENT_USER searches the key.
-- The same rewrite rebuilds the primary key with the key first (see
-- idempotency.sql): one ALTER TABLE, so the table is rewritten once and
-- the index built once, after the rewrite.
ALTER TABLE idempotency.processed_events ALTER COLUMN owner DROP DEFAULT;
ALTER TABLE idempotency.processed_events
    DROP CONSTRAINT processed_events_pkey,
    ALTER COLUMN owner TYPE pg_catalog.text COLLATE pg_catalog."C"
    USING pg_catalog.pg_get_userbyid(owner::pg_catalog.oid)::pg_catalog.text,
    ADD CONSTRAINT processed_events_pkey PRIMARY KEY (key, scope, owner);
ALTER TABLE idempotency.processed_events ALTER COLUMN owner SET DEFAULT CURRENT_USER;

CREATE POLICY processed_events_read ON idempotency.processed_events
    FOR SELECT
    USING (pg_catalog.pg_has_role(
        pg_catalog.to_regrole(pg_catalog.quote_ident(owner))::pg_catalog.oid, 'MEMBER'));

REVOKE ALL ON TABLE idempotency.processed_events FROM PUBLIC;
GRANT SELECT ON TABLE idempotency.processed_events TO PUBLIC;
REVOKE ALL ON SEQUENCE idempotency.processed_events_fencing_seq FROM PUBLIC;

-- purge() moves into the library, which runs it as the table's owner.
CREATE OR REPLACE FUNCTION idempotency.purge(batch_size pg_catalog.int4 DEFAULT 10000)
    RETURNS pg_catalog.int8
    AS 'MODULE_PATHNAME', 'idempotency_purge'
    LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE SECURITY INVOKER;

COMMENT ON FUNCTION idempotency.purge(pg_catalog.int4) IS
    'delete expired processed_events rows (every row for a superuser or the table owner, otherwise the caller''s roles'' rows) in batches, skipping rows locked by claims; returns the number deleted';

---------------------------------------------------------------------------
-- leases: no direct access for anyone but its owner.
---------------------------------------------------------------------------

REVOKE ALL ON TABLE idempotency.leases FROM PUBLIC;

-- No CHECK constraints on leases: the functions write and validate the
-- rows (src/lease.c).  Every acquire and release updates its key's row:
-- fillfactor 80 keeps room on each page for the new versions (on the
-- pages filled from now on; see sql/idempotency.sql).
ALTER TABLE idempotency.leases
    DROP CONSTRAINT leases_held_has_expiry,
    DROP CONSTRAINT leases_fencing_positive,
    SET (fillfactor = 80);

---------------------------------------------------------------------------
-- processed_events, its sequence and leases: no grants to named roles.
---------------------------------------------------------------------------

-- 0.1.0's functions ran their statements with the caller's privileges, and
-- its README had DBAs grant privileges on these three objects to
-- application roles.  0.2.0's functions run their statements as the
-- table's owner and need none of them, and they have become dangerous: a
-- role that may write the tables or use the sequence directly can move
-- fencing tokens back, change other roles' records or lock the tables
-- against every claim.  A fresh install grants them to nobody but the
-- owner (and SELECT on processed_events to PUBLIC, which the statements
-- above set), so every privilege on them of any other role goes, on the
-- object and on its columns (REVOKE ALL ON TABLE takes the column
-- privileges too; CASCADE the grants made with a grant option), and a
-- WARNING names the role, the object and the privileges, so that a DBA
-- can grant read access again where it was wanted (a WARNING, not a
-- NOTICE: PostgreSQL runs extension scripts with client_min_messages at
-- WARNING or above, so a NOTICE would reach nobody).  Run by a superuser,
-- REVOKE acts as the owner.  This comes before the tables are handed to
-- the installer, so that the re-recording of their initial privileges
-- after that (see there) records what is left.  Names are built with
-- quote_ident: regclass output depends on the search_path.
DO $grants$
DECLARE
    r record;
    kind pg_catalog.text;
    role pg_catalog.text;
BEGIN
    FOR r IN
        SELECT c.relname, c.relkind, g.grantee,
               pg_catalog.string_agg(DISTINCT g.privilege, ', ' ORDER BY g.privilege) AS privileges,
               pg_catalog.bool_or(g.grantor OPERATOR(pg_catalog.=) c.relowner) AS from_owner
          FROM pg_catalog.pg_class c
          CROSS JOIN LATERAL (
              SELECT a.grantee, a.grantor, a.privilege_type AS privilege
                FROM pg_catalog.aclexplode(c.relacl) a
              UNION ALL
              SELECT a.grantee, a.grantor, a.privilege_type OPERATOR(pg_catalog.||) ' ('
                                OPERATOR(pg_catalog.||) pg_catalog.quote_ident(att.attname)
                                OPERATOR(pg_catalog.||) ')'
                FROM pg_catalog.pg_attribute att, LATERAL pg_catalog.aclexplode(att.attacl) a
               WHERE att.attrelid OPERATOR(pg_catalog.=) c.oid) g
         WHERE c.relnamespace OPERATOR(pg_catalog.=) 'idempotency'::pg_catalog.regnamespace
           AND c.relname OPERATOR(pg_catalog.=) ANY (ARRAY['processed_events', 'processed_events_fencing_seq',
                                                             'leases']::pg_catalog.name[])
           AND g.grantee OPERATOR(pg_catalog.<>) c.relowner
           AND g.grantee OPERATOR(pg_catalog.<>) 0
         GROUP BY c.relname, c.relkind, g.grantee
         ORDER BY c.relname, pg_catalog.pg_get_userbyid(g.grantee) COLLATE pg_catalog."C"
    LOOP
        kind := CASE WHEN r.relkind OPERATOR(pg_catalog.=) 'S' THEN 'sequence' ELSE 'table' END;
        role := pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r.grantee));
        -- What another role passed on through a grant option goes with
        -- that role's grant (CASCADE); revoking it as the owner would find
        -- nothing to revoke.
        IF r.from_owner THEN
            EXECUTE pg_catalog.format('REVOKE ALL ON %s idempotency.%I FROM %s CASCADE',
                                      pg_catalog.upper(kind), r.relname, role);
        END IF;
        -- (the installer is not told: it becomes the tables' owner below)
        CONTINUE WHEN r.grantee OPERATOR(pg_catalog.=) (SELECT e.extowner FROM pg_catalog.pg_extension e
                                                         WHERE e.extname OPERATOR(pg_catalog.=) 'idempotency');
        RAISE WARNING 'revoked % on % idempotency.% from role %',
                     r.privileges, kind, pg_catalog.quote_ident(r.relname), role
            USING DETAIL = 'The functions of extension "idempotency" now run their statements as the owner of its tables and need no privilege on them; '
                           'a role that may write the tables or use the fencing sequence directly could move fencing tokens back, '
                           'change other roles'' records or lock the tables against every claim.',
                  HINT = CASE WHEN r.relname OPERATOR(pg_catalog.=) 'processed_events'
                              THEN 'Every role can still read its own records: SELECT on the table is granted to PUBLIC, limited by row level security.'
                              ELSE pg_catalog.format('Read access can be granted again: GRANT SELECT ON %s idempotency.%I TO %s;',
                                                     pg_catalog.upper(kind), r.relname, role)
                         END;
    END LOOP;
END
$grants$;

---------------------------------------------------------------------------
-- Mutexes on a Citus cluster.
---------------------------------------------------------------------------

-- On a Citus cluster (after citus_distribute()) a mutex is locked on the
-- node that owns the key's slot: mutex_lock() sends a router query on
-- idempotency.mutex_slots, and these two run there (src/mutex.c).  They
-- give nobody more than mutex_lock() and mutex_holders() do.
CREATE TABLE idempotency.mutex_slots (
    slot pg_catalog.int4 PRIMARY KEY
);

COMMENT ON TABLE idempotency.mutex_slots IS
    'one row per mutex slot; empty until citus_distribute() fills and distributes it, so that each mutex is locked on the node owning its slot';

REVOKE ALL ON TABLE idempotency.mutex_slots FROM PUBLIC;

CREATE FUNCTION idempotency.mutex_lock_here(slot pg_catalog.int4, hash pg_catalog.int8,
                                            shared pg_catalog.bool, timeout_ms pg_catalog.int8)
    RETURNS pg_catalog.bool
    AS 'MODULE_PATHNAME', 'idempotency_mutex_lock_here'
    LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_lock_here(pg_catalog.int4, pg_catalog.int8, pg_catalog.bool, pg_catalog.int8) IS
    'internal: the lock a distributed mutex_lock() takes on the node owning the slot';

CREATE FUNCTION idempotency.mutex_holders_here(slot pg_catalog.int4, hash pg_catalog.int8)
    RETURNS TABLE (pid pg_catalog.int4, mode pg_catalog.text, granted pg_catalog.bool, scope pg_catalog.text,
                   waiting_since pg_catalog.timestamptz)
    AS 'MODULE_PATHNAME', 'idempotency_mutex_holders_here'
    LANGUAGE C STRICT VOLATILE PARALLEL SAFE ROWS 4;

COMMENT ON FUNCTION idempotency.mutex_holders_here(pg_catalog.int4, pg_catalog.int8) IS
    'internal: mutex_holders() on the node owning the slot';


---------------------------------------------------------------------------
-- 4b. Scaling out with Citus
---------------------------------------------------------------------------

-- Superusers only (EXECUTE revoked from PUBLIC; the body checks too).
-- One-way: distributes processed_events and leases by key (hash), and
-- mutex_slots by slot, so that every node of the cluster sees the same
-- records, leases and mutexes.  See the README, "Scaling out with Citus".
CREATE FUNCTION idempotency.citus_distribute(colocate_with pg_catalog.regclass DEFAULT NULL)
    RETURNS pg_catalog.text
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    is_coord pg_catalog.bool;
    done pg_catalog.int4;
    dist_type pg_catalog.oid;
    tabs pg_catalog.oid[];
    problems pg_catalog.text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e
                    WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE EXCEPTION 'Citus is not installed in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Run CREATE EXTENSION citus and add the worker nodes first; without Citus there is nothing to distribute.';
    END IF;
    EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO is_coord;
    IF NOT is_coord THEN
        RAISE EXCEPTION 'idempotency.citus_distribute() must be called on the Citus coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Connect to the coordinator node and call it there; the workers then see the distributed tables through the metadata.';
    END IF;
    -- Citus creates the shards in schema idempotency on every node, and
    -- only superusers may create objects there (see the top of this file).
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
        RAISE EXCEPTION 'permission denied to distribute the tables of extension "idempotency"'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Citus creates the shards in schema "idempotency" on every node, and only superusers may create objects in that schema.',
                  HINT = 'Call idempotency.citus_distribute() as a superuser.';
    END IF;
    IF colocate_with IS NOT NULL THEN
        EXECUTE 'SELECT a.atttypid FROM pg_catalog.pg_dist_partition p'
                ' JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) p.logicalrelid'
                '  AND a.attname OPERATOR(pg_catalog.=) pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)'
                ' WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1 AND p.partmethod OPERATOR(pg_catalog.=) ''h'''
            INTO dist_type USING colocate_with;
        IF dist_type IS NULL THEN
            RAISE EXCEPTION 'table % is not a hash-distributed table', colocate_with
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass a table distributed with create_distributed_table() on a text column, or omit colocate_with.';
        END IF;
        IF dist_type OPERATOR(pg_catalog.<>) 'pg_catalog.text'::pg_catalog.regtype THEN
            RAISE EXCEPTION 'table % is not distributed by a text column', colocate_with
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = pg_catalog.format('processed_events and leases are distributed by their key (text); %s is distributed by a column of type %s.', colocate_with, dist_type::pg_catalog.regtype),
                      HINT = 'Colocate with a table distributed by a text column whose values are the idempotency keys or lease keys, or omit colocate_with.';
        END IF;
    END IF;

    EXECUTE 'SELECT pg_catalog.count(*)::pg_catalog.int4 FROM pg_catalog.pg_dist_partition'
            ' WHERE logicalrelid OPERATOR(pg_catalog.=) ANY (ARRAY[''idempotency.processed_events'','
            ' ''idempotency.leases'', ''idempotency.mutex_slots'']::pg_catalog.regclass[])'
        INTO done;
    IF done OPERATOR(pg_catalog.=) 3 THEN
        RAISE NOTICE 'the tables of extension "idempotency" are distributed already';
        RETURN 'already distributed';
    END IF;

    -- The tables belong to the role that installed the extension, which
    -- may have attached things to them: what happens next as a superuser
    -- (Citus copies the rows into the shards, this function fills
    -- mutex_slots) would run them with superuser rights.  So only tables
    -- as the extension made them are distributed: the columns it created,
    -- with their types and defaults (the list below follows the CREATE
    -- TABLE statements of this file), and no trigger, rule, constraint
    -- other than the primary key and NOT NULL, index expression or
    -- predicate, or inheritance.  The tables still to distribute are
    -- locked first, against a change committed between this look and
    -- their use, and the look needs a snapshot taken after the lock.
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
        RAISE EXCEPTION 'idempotency.citus_distribute() must run at isolation level READ COMMITTED'
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Call it outside a transaction block, or in a READ COMMITTED transaction.';
    END IF;
    SELECT pg_catalog.array_agg(t.oid) INTO tabs
      FROM pg_catalog.unnest(ARRAY['idempotency.processed_events'::pg_catalog.regclass,
                                   'idempotency.leases'::pg_catalog.regclass,
                                   'idempotency.mutex_slots'::pg_catalog.regclass]::pg_catalog.oid[]) AS t(oid)
     WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                        WHERE p.logicalrelid OPERATOR(pg_catalog.=) t.oid);
    EXECUTE (SELECT 'LOCK TABLE ' OPERATOR(pg_catalog.||)
                    pg_catalog.string_agg(t.oid::pg_catalog.regclass::pg_catalog.text, ', ')
                    OPERATOR(pg_catalog.||) ' IN SHARE ROW EXCLUSIVE MODE'
               FROM pg_catalog.unnest(tabs) AS t(oid));
    SELECT pg_catalog.string_agg(p.what, '; ' ORDER BY p.what) INTO problems
      FROM (SELECT pg_catalog.format('trigger %I on %s', t.tgname, t.tgrelid::pg_catalog.regclass)
              FROM pg_catalog.pg_trigger t
             WHERE t.tgrelid OPERATOR(pg_catalog.=) ANY (tabs) AND NOT t.tgisinternal
            UNION ALL
            SELECT pg_catalog.format('rule %I on %s', r.rulename, r.ev_class::pg_catalog.regclass)
              FROM pg_catalog.pg_rewrite r WHERE r.ev_class OPERATOR(pg_catalog.=) ANY (tabs)
            UNION ALL
            SELECT pg_catalog.format('constraint %I on %s', c.conname, c.conrelid::pg_catalog.regclass)
              FROM pg_catalog.pg_constraint c
             WHERE c.conrelid OPERATOR(pg_catalog.=) ANY (tabs)
               AND c.contype OPERATOR(pg_catalog.<>) ALL (ARRAY['p', 'n']::pg_catalog."char"[])
            UNION ALL
            SELECT pg_catalog.format('index %s', i.indexrelid::pg_catalog.regclass)
              FROM pg_catalog.pg_index i
             WHERE i.indrelid OPERATOR(pg_catalog.=) ANY (tabs)
               AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)
            UNION ALL
            SELECT pg_catalog.format('column %I of %s', a.attname, a.attrelid::pg_catalog.regclass)
              FROM pg_catalog.pg_attribute a
              LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid OPERATOR(pg_catalog.=) a.attrelid
                                                AND ad.adnum OPERATOR(pg_catalog.=) a.attnum
             WHERE a.attrelid OPERATOR(pg_catalog.=) ANY (tabs) AND a.attnum OPERATOR(pg_catalog.>) 0
               AND NOT a.attisdropped
               AND NOT EXISTS (
                   SELECT FROM (VALUES
                       ('idempotency.processed_events', 'owner', 'pg_catalog.text', 'CURRENT_USER'),
                       ('idempotency.processed_events', 'scope', 'pg_catalog.text', NULL),
                       ('idempotency.processed_events', 'key', 'pg_catalog.text', NULL),
                       ('idempotency.processed_events', 'status', 'pg_catalog.text', NULL),
                       ('idempotency.processed_events', 'fingerprint', 'pg_catalog.bytea', NULL),
                       ('idempotency.processed_events', 'result', 'pg_catalog.jsonb', NULL),
                       ('idempotency.processed_events', 'error', 'pg_catalog.jsonb', NULL),
                       ('idempotency.processed_events', 'token', 'pg_catalog.uuid', NULL),
                       ('idempotency.processed_events', 'fencing_token', 'pg_catalog.int8', NULL),
                       ('idempotency.processed_events', 'attempts', 'pg_catalog.int4', '1'),
                       ('idempotency.processed_events', 'created_at', 'pg_catalog.timestamptz', 'clock_timestamp()'),
                       ('idempotency.processed_events', 'updated_at', 'pg_catalog.timestamptz', 'clock_timestamp()'),
                       ('idempotency.processed_events', 'locked_until', 'pg_catalog.timestamptz', NULL),
                       ('idempotency.processed_events', 'expires_at', 'pg_catalog.timestamptz', NULL),
                       ('idempotency.leases', 'key', 'pg_catalog.text', NULL),
                       ('idempotency.leases', 'token', 'pg_catalog.uuid', NULL),
                       ('idempotency.leases', 'fencing_token', 'pg_catalog.int8', NULL),
                       ('idempotency.leases', 'holder', 'pg_catalog.text', NULL),
                       ('idempotency.leases', 'acquired_at', 'pg_catalog.timestamptz', NULL),
                       ('idempotency.leases', 'expires_at', 'pg_catalog.timestamptz', NULL),
                       ('idempotency.mutex_slots', 'slot', 'pg_catalog.int4', NULL))
                       AS e(tab, col, typ, def)
                    WHERE e.tab::pg_catalog.regclass OPERATOR(pg_catalog.=) a.attrelid
                      AND e.col OPERATOR(pg_catalog.=) a.attname
                      AND e.typ::pg_catalog.regtype OPERATOR(pg_catalog.=) a.atttypid
                      AND a.attgenerated OPERATOR(pg_catalog.=) ''
                      AND ((e.def IS NULL AND ad.oid IS NULL)
                           OR e.def OPERATOR(pg_catalog.=) pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)))
            UNION ALL
            SELECT pg_catalog.format('inheritance between %s and %s', h.inhrelid::pg_catalog.regclass,
                                     h.inhparent::pg_catalog.regclass)
              FROM pg_catalog.pg_inherits h
             WHERE h.inhrelid OPERATOR(pg_catalog.=) ANY (tabs)
                OR h.inhparent OPERATOR(pg_catalog.=) ANY (tabs)) p(what);
    IF problems IS NOT NULL THEN
        RAISE EXCEPTION 'the tables of extension "idempotency" were changed since the extension created them'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = pg_catalog.format('Found: %s.  This function runs as a superuser, and the tables belong to role %s.',
                                             problems, (SELECT c.relowner::pg_catalog.regrole FROM pg_catalog.pg_class c
                                                         WHERE c.oid OPERATOR(pg_catalog.=) tabs[1])),
                  HINT = 'Remove what was added to the tables, then call idempotency.citus_distribute() again.';
    END IF;

    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                    WHERE logicalrelid OPERATOR(pg_catalog.=) 'idempotency.processed_events'::pg_catalog.regclass) THEN
        PERFORM pg_catalog.create_distributed_table('idempotency.processed_events', 'key',
                    colocate_with => COALESCE(colocate_with::pg_catalog.text, 'default'));
        PERFORM pg_catalog.truncate_local_data_after_distributing_table('idempotency.processed_events');
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                    WHERE logicalrelid OPERATOR(pg_catalog.=) 'idempotency.leases'::pg_catalog.regclass) THEN
        PERFORM pg_catalog.create_distributed_table('idempotency.leases', 'key',
                    colocate_with => 'idempotency.processed_events');
        PERFORM pg_catalog.truncate_local_data_after_distributing_table('idempotency.leases');
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                    WHERE logicalrelid OPERATOR(pg_catalog.=) 'idempotency.mutex_slots'::pg_catalog.regclass) THEN
        DELETE FROM idempotency.mutex_slots;
        INSERT INTO idempotency.mutex_slots (slot)
            SELECT pg_catalog.generate_series(0, 255);  -- IDEM_CITUS_MUTEX_SLOTS (src/citus.h)
        PERFORM pg_catalog.create_distributed_table('idempotency.mutex_slots', 'slot');
        PERFORM pg_catalog.truncate_local_data_after_distributing_table('idempotency.mutex_slots');
    END IF;
    RETURN 'distributed';
END
$fn$;

COMMENT ON FUNCTION idempotency.citus_distribute(pg_catalog.regclass) IS
    'one-way: distribute processed_events and leases by key (optionally colocated with a table distributed by a text column) and the mutex slots, on a Citus coordinator';

REVOKE EXECUTE ON FUNCTION idempotency.citus_distribute(pg_catalog.regclass) FROM PUBLIC;


---------------------------------------------------------------------------
-- Ownership of the tables: the role that installed the extension.
---------------------------------------------------------------------------

DO $owner$
DECLARE
    installer pg_catalog.name;
BEGIN
    SELECT r.rolname INTO installer
      FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) e.extowner
     WHERE e.extname OPERATOR(pg_catalog.=) 'idempotency';
    IF installer OPERATOR(pg_catalog.<>) CURRENT_USER THEN
        EXECUTE pg_catalog.format('ALTER TABLE idempotency.processed_events OWNER TO %I', installer);
        EXECUTE pg_catalog.format('ALTER SEQUENCE idempotency.processed_events_fencing_seq OWNER TO %I', installer);
        EXECUTE pg_catalog.format('ALTER TABLE idempotency.leases OWNER TO %I', installer);
        EXECUTE pg_catalog.format('ALTER TABLE idempotency.mutex_slots OWNER TO %I', installer);
    END IF;
END
$owner$;

-- Before PostgreSQL 17, ALTER ... OWNER leaves the initial privileges of an
-- extension's objects (pg_init_privs, recorded by the GRANT and REVOKE
-- statements above) naming the role that ran them.  pg_dump dumps the
-- difference between those and the tables' privileges: the installer's
-- dump would carry GRANTs to the installer and REVOKEs from the superuser,
-- and a restore by a superuser would leave the installer with every
-- privilege on tables it no longer owns.  Granting once more records the
-- privileges as they are now, with the installer as owner.
REVOKE ALL ON TABLE idempotency.processed_events FROM PUBLIC;
GRANT SELECT ON TABLE idempotency.processed_events TO PUBLIC;
REVOKE ALL ON SEQUENCE idempotency.processed_events_fencing_seq FROM PUBLIC;
REVOKE ALL ON TABLE idempotency.leases FROM PUBLIC;
REVOKE ALL ON TABLE idempotency.mutex_slots FROM PUBLIC;


---------------------------------------------------------------------------
-- 5. Observability: idempotency.stats (src/stats.c)
---------------------------------------------------------------------------

-- Counters per (operation, outcome), cluster-wide when the library is in
-- shared_preload_libraries, else per session.  They hold no keys or values:
-- everyone may read them; only superusers may reset them.
CREATE FUNCTION idempotency.stats_read(
        OUT operation pg_catalog.text, OUT outcome pg_catalog.text,
        OUT calls pg_catalog.int8, OUT total_ms pg_catalog.float8,
        OUT mean_ms pg_catalog.float8, OUT p50_ms pg_catalog.float8,
        OUT p95_ms pg_catalog.float8, OUT p99_ms pg_catalog.float8,
        OUT max_ms pg_catalog.float8, OUT wait_calls pg_catalog.int8,
        OUT wait_ms pg_catalog.float8)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'idempotency_stats_read'
    LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idempotency.stats_read() IS
    'the rows of the idempotency.stats view';

CREATE VIEW idempotency.stats AS
    SELECT s.operation, s.outcome, s.calls, s.total_ms, s.mean_ms,
           s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms, s.wait_calls, s.wait_ms
      FROM idempotency.stats_read() s;

COMMENT ON VIEW idempotency.stats IS
    'calls, latency percentiles and wait time per operation and outcome of the idempotency functions';

REVOKE ALL ON idempotency.stats FROM PUBLIC;
GRANT SELECT ON idempotency.stats TO PUBLIC;

CREATE FUNCTION idempotency.stats_reset()
    RETURNS void
    AS 'MODULE_PATHNAME', 'idempotency_stats_reset'
    LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idempotency.stats_reset() IS
    'zero the counters of idempotency.stats (superuser only unless granted)';

REVOKE EXECUTE ON FUNCTION idempotency.stats_reset() FROM PUBLIC;

CREATE FUNCTION idempotency.stats_scope()
    RETURNS pg_catalog.text
    AS 'MODULE_PATHNAME', 'idempotency_stats_scope'
    LANGUAGE C STRICT STABLE PARALLEL SAFE;

COMMENT ON FUNCTION idempotency.stats_scope() IS
    'what idempotency.stats counts: cluster (library in shared_preload_libraries) or session';


---------------------------------------------------------------------------
-- 6. claim() and the lease functions return composite types
---------------------------------------------------------------------------

-- 0.1.0 declared claim(), lease_acquire(), lease_renew() and lease_status()
-- RETURNS TABLE, for which PostgreSQL builds the row type from pg_proc at
-- every execution of a statement calling them; 0.2.0 returns composite
-- types with the same columns (see idempotency.sql).  A function's return
-- type cannot be changed in place, so the four are dropped and created
-- again: a view or a function of the database's that depends on one of
-- them stops the update with PostgreSQL's own error (drop it, update,
-- create it again).  What the database's administrators did to 0.1.0's
-- functions carries over: their owner, and their privileges entry for
-- entry (what a role granted through its grant option becomes the
-- owner's grant).  Privileges set by this script are recorded as the
-- functions' initial privileges (pg_init_privs), the extension's own,
-- which pg_dump leaves out of a dump; 0.1.0's functions had none
-- recorded, and the records go again.
CREATE TYPE idempotency.claim_result AS (status pg_catalog.text, result pg_catalog.jsonb,
    error pg_catalog.jsonb, token pg_catalog.uuid, fencing_token pg_catalog.int8,
    attempts pg_catalog.int4, expires_at pg_catalog.timestamptz);

COMMENT ON TYPE idempotency.claim_result IS
    'the row idempotency.claim() returns';

CREATE TYPE idempotency.lease_acquire_result AS (status pg_catalog.text, token pg_catalog.uuid,
    fencing_token pg_catalog.int8, holder pg_catalog.text, acquired_at pg_catalog.timestamptz,
    expires_at pg_catalog.timestamptz);

COMMENT ON TYPE idempotency.lease_acquire_result IS
    'the row idempotency.lease_acquire() returns';

CREATE TYPE idempotency.lease_renew_result AS (status pg_catalog.text,
    expires_at pg_catalog.timestamptz);

COMMENT ON TYPE idempotency.lease_renew_result IS
    'the row idempotency.lease_renew() returns';

CREATE TYPE idempotency.lease_status_result AS (token pg_catalog.uuid, fencing_token pg_catalog.int8,
    holder pg_catalog.text, acquired_at pg_catalog.timestamptz, expires_at pg_catalog.timestamptz);

COMMENT ON TYPE idempotency.lease_status_result IS
    'the row idempotency.lease_status() returns';

CREATE TABLE idempotency.update_replaced_functions AS
SELECT p.proname, p.proowner, p.proacl
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace OPERATOR(pg_catalog.=) 'idempotency'::pg_catalog.regnamespace
   AND p.proname OPERATOR(pg_catalog.=) ANY (ARRAY['claim', 'lease_acquire', 'lease_renew',
                                                    'lease_status']::pg_catalog.name[]);

DROP FUNCTION idempotency.claim(pg_catalog.text, pg_catalog.jsonb, pg_catalog.text, pg_catalog.interval,
                                pg_catalog.interval, pg_catalog.interval, pg_catalog.bool);
DROP FUNCTION idempotency.lease_acquire(pg_catalog.text, pg_catalog.interval, pg_catalog.text,
                                        pg_catalog.uuid, pg_catalog.interval);
DROP FUNCTION idempotency.lease_renew(pg_catalog.text, pg_catalog.uuid, pg_catalog.interval);
DROP FUNCTION idempotency.lease_status(pg_catalog.text);

CREATE FUNCTION idempotency.claim(key pg_catalog.text,
        payload pg_catalog.jsonb DEFAULT NULL,
        scope pg_catalog.text DEFAULT '',
        lease pg_catalog.interval DEFAULT '5 minutes',
        ttl pg_catalog.interval DEFAULT '24 hours',
        wait pg_catalog.interval DEFAULT '0',
        require_complete pg_catalog.bool DEFAULT false)
    RETURNS SETOF idempotency.claim_result
    AS 'MODULE_PATHNAME', 'idempotency_claim'
    LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE SECURITY INVOKER
    ROWS 1;

COMMENT ON FUNCTION idempotency.claim(pg_catalog.text, pg_catalog.jsonb, pg_catalog.text, pg_catalog.interval, pg_catalog.interval, pg_catalog.interval, pg_catalog.bool) IS
    'claim an idempotency key: claimed / completed / failed / in_progress / mismatch';

CREATE FUNCTION idempotency.lease_acquire(
        key pg_catalog.text,
        ttl pg_catalog.interval DEFAULT '30 seconds',
        holder pg_catalog.text DEFAULT NULL,
        if_match pg_catalog.uuid DEFAULT NULL,
        wait pg_catalog.interval DEFAULT '0')
    RETURNS SETOF idempotency.lease_acquire_result
    AS 'MODULE_PATHNAME', 'idempotency_lease_acquire'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION idempotency.lease_acquire(pg_catalog.text, pg_catalog.interval, pg_catalog.text, pg_catalog.uuid, pg_catalog.interval) IS
    'take the lease on key: acquired (201) / conflict (409, row = holder''s lease) / precondition_failed (412)';

CREATE FUNCTION idempotency.lease_renew(key pg_catalog.text, token pg_catalog.uuid, ttl pg_catalog.interval DEFAULT '30 seconds')
    RETURNS SETOF idempotency.lease_renew_result
    AS 'MODULE_PATHNAME', 'idempotency_lease_renew'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION idempotency.lease_renew(pg_catalog.text, pg_catalog.uuid, pg_catalog.interval) IS
    'extend your live lease to now + ttl: renewed, or lost once it has expired or changed hands';

CREATE FUNCTION idempotency.lease_status(key pg_catalog.text)
    RETURNS SETOF idempotency.lease_status_result
    AS 'MODULE_PATHNAME', 'idempotency_lease_status'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION idempotency.lease_status(pg_catalog.text) IS
    'the live lease on key (200), or no row when it is free (404)';

DO $replaced$
DECLARE
    f record;
    g record;
BEGIN
    FOR f IN
        SELECT p.oid, p.proowner AS newowner, r.proowner, r.proacl,
               pg_catalog.format('idempotency.%I(%s)', p.proname,
                                 pg_catalog.pg_get_function_identity_arguments(p.oid)) AS fn
          FROM idempotency.update_replaced_functions r
          JOIN pg_catalog.pg_proc p ON p.proname OPERATOR(pg_catalog.=) r.proname
         WHERE p.pronamespace OPERATOR(pg_catalog.=) 'idempotency'::pg_catalog.regnamespace
         ORDER BY p.proname COLLATE pg_catalog."C"
    LOOP
        IF f.newowner OPERATOR(pg_catalog.<>) f.proowner THEN
            EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO %I', f.fn,
                                      pg_catalog.pg_get_userbyid(f.proowner));
        END IF;
        -- what the default privileges of this script's role granted, as in
        -- a fresh install
        FOR g IN
            SELECT DISTINCT a.grantee
              FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
             WHERE p.oid OPERATOR(pg_catalog.=) f.oid
               AND a.grantee OPERATOR(pg_catalog.<>) f.proowner
               AND a.grantee OPERATOR(pg_catalog.<>) 0
        LOOP
            EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM %I CASCADE', f.fn,
                                      pg_catalog.pg_get_userbyid(g.grantee));
        END LOOP;
        -- then 0.1.0's privileges (none recorded: the defaults, PUBLIC's
        -- EXECUTE included)
        IF f.proacl IS NOT NULL THEN
            IF NOT EXISTS (SELECT FROM pg_catalog.aclexplode(f.proacl) a
                            WHERE a.grantee OPERATOR(pg_catalog.=) 0) THEN
                EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.fn);
            END IF;
            IF NOT EXISTS (SELECT FROM pg_catalog.aclexplode(f.proacl) a
                            WHERE a.grantee OPERATOR(pg_catalog.=) f.proowner) THEN
                EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM %I', f.fn,
                                          pg_catalog.pg_get_userbyid(f.proowner));
            END IF;
            FOR g IN
                SELECT a.grantee, pg_catalog.bool_or(a.is_grantable) AS grantable
                  FROM pg_catalog.aclexplode(f.proacl) WITH ORDINALITY AS a
                 WHERE a.grantee OPERATOR(pg_catalog.<>) f.proowner
                   AND a.grantee OPERATOR(pg_catalog.<>) 0
                 GROUP BY a.grantee
                 ORDER BY pg_catalog.min(a.ordinality)
            LOOP
                EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I%s', f.fn,
                                          pg_catalog.pg_get_userbyid(g.grantee),
                                          CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
        END IF;
        DELETE FROM pg_catalog.pg_init_privs i
         WHERE i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND i.objoid OPERATOR(pg_catalog.=) f.oid;
    END LOOP;
END
$replaced$;

DROP TABLE idempotency.update_replaced_functions;


---------------------------------------------------------------------------
-- No privileges from ALTER DEFAULT PRIVILEGES on the new objects
---------------------------------------------------------------------------

-- The default privileges of the role running this script (a superuser:
-- the bootstrap superuser for an update by the database owner) reach the
-- objects it creates, as in a fresh install (see the end of
-- idempotency.sql): every privilege granted on them to a role other than
-- the object's owner and PUBLIC is revoked, on the relations and their
-- columns, on the functions and on the types.  Only on what this script
-- creates: grants on 0.1.0's functions were made by the database's
-- administrators and stay (those of the four functions created again
-- were carried over above), and the tables and the sequence were dealt
-- with above.  Names are
-- built with quote_ident and pg_get_function_identity_arguments: regclass
-- and regprocedure output depends on the search_path.
DO $defaults$
DECLARE
    nsp CONSTANT pg_catalog.oid := 'idempotency'::pg_catalog.regnamespace;
    stmt pg_catalog.text;
BEGIN
    FOR stmt IN
        SELECT s.stmt
          FROM (SELECT pg_catalog.format('REVOKE ALL ON TABLE idempotency.%I FROM %I CASCADE',
                                         c.relname, pg_catalog.pg_get_userbyid(g.grantee)) AS stmt
                  FROM pg_catalog.pg_class c
                  CROSS JOIN LATERAL (
                      SELECT a.grantee FROM pg_catalog.aclexplode(c.relacl) a
                      UNION
                      SELECT a.grantee
                        FROM pg_catalog.pg_attribute att, LATERAL pg_catalog.aclexplode(att.attacl) a
                       WHERE att.attrelid OPERATOR(pg_catalog.=) c.oid) g
                 WHERE c.relnamespace OPERATOR(pg_catalog.=) nsp
                   AND c.relname OPERATOR(pg_catalog.=) ANY (ARRAY['mutex_slots', 'stats']::pg_catalog.name[])
                   AND g.grantee OPERATOR(pg_catalog.<>) c.relowner
                   AND g.grantee OPERATOR(pg_catalog.<>) 0
                UNION
                SELECT pg_catalog.format('REVOKE ALL ON ROUTINE idempotency.%I(%s) FROM %I CASCADE',
                                         p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid),
                                         pg_catalog.pg_get_userbyid(a.grantee))
                  FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
                 WHERE p.pronamespace OPERATOR(pg_catalog.=) nsp
                   AND p.proname OPERATOR(pg_catalog.=) ANY (ARRAY['mutex_lock_here', 'mutex_holders_here',
                                                                    'citus_distribute', 'stats_read', 'stats_reset',
                                                                    'stats_scope', 'upsert_support',
                                                                    'idempotent_upsert_columns']::pg_catalog.name[])
                   AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
                   AND a.grantee OPERATOR(pg_catalog.<>) 0
                UNION
                SELECT pg_catalog.format('REVOKE ALL ON TYPE idempotency.%I FROM %I CASCADE',
                                         t.typname, pg_catalog.pg_get_userbyid(a.grantee))
                  FROM pg_catalog.pg_type t, LATERAL pg_catalog.aclexplode(t.typacl) a
                 WHERE t.typnamespace OPERATOR(pg_catalog.=) nsp
                   AND t.typname OPERATOR(pg_catalog.=) ANY (ARRAY['claim_result', 'lease_acquire_result',
                                                                    'lease_renew_result',
                                                                    'lease_status_result']::pg_catalog.name[])
                   AND a.grantee OPERATOR(pg_catalog.<>) t.typowner
                   AND a.grantee OPERATOR(pg_catalog.<>) 0) s
         ORDER BY s.stmt COLLATE pg_catalog."C"
    LOOP
        EXECUTE stmt;
    END LOOP;
END
$defaults$;
