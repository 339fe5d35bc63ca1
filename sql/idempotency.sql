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


---------------------------------------------------------------------------
-- 2. Processed events and idempotency keys
---------------------------------------------------------------------------


---------------------------------------------------------------------------
-- 3. Keyed mutexes
---------------------------------------------------------------------------

-- Advisory locks in the extension's own lock-tag namespace (src/mutex.c).
-- The C functions check their arguments themselves (NULL key -> 22004), so
-- none is STRICT: a NULL timeout means "as lock_timeout says".

CREATE FUNCTION idempotency.mutex_lock(key text, timeout interval DEFAULT NULL,
                                       shared boolean DEFAULT false)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'idempotency_mutex_lock'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_lock(text, interval, boolean) IS
    'lock the mutex named key until the end of the transaction; false only when timeout ran out';

CREATE FUNCTION idempotency.mutex_try_lock(key text, shared boolean DEFAULT false)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'idempotency_mutex_try_lock'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_try_lock(text, boolean) IS
    'lock the mutex named key until the end of the transaction if it is free now';

CREATE FUNCTION idempotency.mutex_session_lock(key text, timeout interval DEFAULT NULL,
                                               shared boolean DEFAULT false)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'idempotency_mutex_session_lock'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_session_lock(text, interval, boolean) IS
    'lock the mutex named key until unlocked or the session ends (unsafe behind transaction poolers)';

CREATE FUNCTION idempotency.mutex_session_try_lock(key text, shared boolean DEFAULT false)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'idempotency_mutex_session_try_lock'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_session_try_lock(text, boolean) IS
    'lock the mutex named key for the session if it is free now';

CREATE FUNCTION idempotency.mutex_session_unlock(key text, shared boolean DEFAULT false)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'idempotency_mutex_session_unlock'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_session_unlock(text, boolean) IS
    'release one count of a session mutex; false if none was held';

CREATE FUNCTION idempotency.mutex_session_unlock_all()
    RETURNS void
    AS 'MODULE_PATHNAME', 'idempotency_mutex_session_unlock_all'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_session_unlock_all() IS
    'release every session mutex of this session (not other advisory locks)';

CREATE FUNCTION idempotency.mutex_holders(key text)
    RETURNS TABLE (pid integer, mode text, granted boolean, scope text,
                   waiting_since timestamptz)
    AS 'MODULE_PATHNAME', 'idempotency_mutex_holders'
    LANGUAGE C VOLATILE PARALLEL SAFE ROWS 4;

COMMENT ON FUNCTION idempotency.mutex_holders(text) IS
    'who holds and who waits for the mutex named key (from the lock manager, like pg_locks)';


---------------------------------------------------------------------------
-- 4. Durable leases
---------------------------------------------------------------------------

