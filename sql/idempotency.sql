-- idempotency: the install script.  The versioned file
-- sql/idempotency--<version>.sql is generated from this one by the Makefile.
--
-- Hardening (PostgreSQL docs, "Security Considerations for Extensions"):
-- no CREATE OR REPLACE / IF NOT EXISTS, every object schema-qualified,
-- operators written OPERATOR(pg_catalog.=), C entry points SECURITY INVOKER.

\echo Use "CREATE EXTENSION idempotency" to load this file. \quit

-- The schema is created by CREATE EXTENSION (schema = idempotency in the
-- control file) unless it exists already; PostgreSQL does not make it a
-- member of the extension, so DROP EXTENSION leaves it behind.  Refuse a
-- schema that someone else prepared: objects planted in it beforehand could
-- shadow ours, and its owner could add more later.
DO $guard$
DECLARE
    nsp pg_catalog.oid := 'idempotency'::pg_catalog.regnamespace;
    owner pg_catalog.oid;
    extowner pg_catalog.oid;
BEGIN
    SELECT n.nspowner INTO owner FROM pg_catalog.pg_namespace n
     WHERE n.oid OPERATOR(pg_catalog.=) nsp;
    SELECT e.extowner INTO extowner FROM pg_catalog.pg_extension e
     WHERE e.extname OPERATOR(pg_catalog.=) 'idempotency';
    IF owner OPERATOR(pg_catalog.<>) extowner
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r
                 WHERE r.oid OPERATOR(pg_catalog.=) owner) THEN
        RAISE EXCEPTION 'schema "idempotency" is owned by role "%", which neither installs the extension nor is a superuser',
            owner::pg_catalog.regrole
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop the schema, or have its owner or a superuser create the extension.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_depend d
                WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
                  AND d.refobjid OPERATOR(pg_catalog.=) nsp
                  AND d.classid OPERATOR(pg_catalog.<>) 'pg_catalog.pg_extension'::pg_catalog.regclass) THEN
        RAISE EXCEPTION 'schema "idempotency" already contains objects'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Move or drop the objects in schema "idempotency" before creating the extension.';
    END IF;
END
$guard$;

-- Everyone may look objects up in the schema; nobody but its owner may
-- create objects in it.
GRANT USAGE ON SCHEMA idempotency TO PUBLIC;

---------------------------------------------------------------------------
-- 0. General
---------------------------------------------------------------------------

CREATE FUNCTION idempotency.version()
    RETURNS text
    AS 'MODULE_PATHNAME', 'idempotency_version'
    LANGUAGE C STRICT STABLE PARALLEL SAFE;

COMMENT ON FUNCTION idempotency.version() IS
    'version of the loaded idempotency library (errors if it differs from the installed SQL objects)';

---------------------------------------------------------------------------
-- 1. Atomic insert-or-get and upsert
---------------------------------------------------------------------------

-- The table is named by its row type (NULL::public.accounts); vals is a jsonb
-- object column -> value.  Not STRICT: the first argument is normally NULL.
-- SECURITY INVOKER: the caller's privileges, column privileges and RLS apply.

CREATE FUNCTION idempotency.idempotent_upsert(tbl anyelement, vals jsonb,
                                              key_cols text[] DEFAULT NULL)
    RETURNS anyelement
    AS 'MODULE_PATHNAME', 'idem_upsert'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.idempotent_upsert(anyelement, jsonb, text[]) IS
    'insert the row unless a row with its key exists; return the row with this key (never raises 23505 for the key)';

CREATE FUNCTION idempotency.get_or_create(tbl anyelement, vals jsonb,
                                          key_cols text[] DEFAULT NULL,
                                          OUT item anyelement, OUT created boolean)
    RETURNS record
    AS 'MODULE_PATHNAME', 'idem_get_or_create'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.get_or_create(anyelement, jsonb, text[]) IS
    'idempotent_upsert with a flag: created is true when this call inserted the row';

CREATE FUNCTION idempotency.update_or_create(tbl anyelement, vals jsonb,
                                             key_cols text[] DEFAULT NULL,
                                             OUT item anyelement, OUT created boolean)
    RETURNS record
    AS 'MODULE_PATHNAME', 'idem_update_or_create'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.update_or_create(anyelement, jsonb, text[]) IS
    'set the given non-key columns of the row with this key (writing nothing when they are equal already), or insert it';

CREATE FUNCTION idempotency.idempotent_upsert_many(tbl anyelement, vals jsonb,
                                                   key_cols text[] DEFAULT NULL)
    RETURNS SETOF anyelement
    AS 'MODULE_PATHNAME', 'idem_upsert_many'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;

COMMENT ON FUNCTION idempotency.idempotent_upsert_many(anyelement, jsonb, text[]) IS
    'idempotent_upsert for a JSON array of rows, as set operations; one result row per element, in input order';


---------------------------------------------------------------------------
-- 2. Processed events and idempotency keys
---------------------------------------------------------------------------


---------------------------------------------------------------------------
-- 3. Keyed mutexes
---------------------------------------------------------------------------


---------------------------------------------------------------------------
-- 4. Durable leases
---------------------------------------------------------------------------

