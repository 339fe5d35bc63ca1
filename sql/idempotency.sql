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


---------------------------------------------------------------------------
-- 4. Durable leases
---------------------------------------------------------------------------

-- A lease is a row: it outlives the transaction, the connection and the
-- server.  Rows are kept after release (token NULL) because they carry the
-- key's fencing counter; see src/lease.c.
CREATE TABLE idempotency.leases (
    key           text PRIMARY KEY,
    token         uuid,
    fencing_token bigint NOT NULL,
    holder        text,
    acquired_at   timestamptz,
    expires_at    timestamptz,
    CONSTRAINT leases_held_has_expiry
        CHECK ((token IS NULL) OR (expires_at IS NOT NULL AND acquired_at IS NOT NULL)),
    CONSTRAINT leases_fencing_positive
        CHECK (fencing_token OPERATOR(pg_catalog.>) 0)
);

COMMENT ON TABLE idempotency.leases IS
    'durable leases (one row per key ever leased; token NULL or expires_at in the past = free)';

SELECT pg_catalog.pg_extension_config_dump('idempotency.leases', '');

-- The functions are SECURITY INVOKER: callers need these privileges.  Leases
-- are shared between the services of an application, like advisory locks,
-- so PUBLIC may read, take and release them; nobody but the owner may DELETE
-- or TRUNCATE (deleting a row restarts the key's fencing tokens).  Revoke
-- from PUBLIC and grant to chosen roles to restrict who may use leases.
REVOKE ALL ON TABLE idempotency.leases FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON TABLE idempotency.leases TO PUBLIC;

CREATE FUNCTION idempotency.lease_acquire(
        key text,
        ttl interval DEFAULT '30 seconds',
        holder text DEFAULT NULL,
        if_match uuid DEFAULT NULL,
        wait interval DEFAULT '0')
    RETURNS TABLE (status text, token uuid, fencing_token bigint, holder text,
                   acquired_at timestamptz, expires_at timestamptz)
    AS 'MODULE_PATHNAME', 'idempotency_lease_acquire'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION idempotency.lease_acquire(text, interval, text, uuid, interval) IS
    'take the lease on key: acquired (201) / conflict (409, row = holder''s lease) / precondition_failed (412)';

CREATE FUNCTION idempotency.lease_renew(key text, token uuid, ttl interval DEFAULT '30 seconds')
    RETURNS TABLE (status text, expires_at timestamptz)
    AS 'MODULE_PATHNAME', 'idempotency_lease_renew'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION idempotency.lease_renew(text, uuid, interval) IS
    'extend your live lease to now + ttl: renewed, or lost once it has expired or changed hands';

CREATE FUNCTION idempotency.lease_release(key text, token uuid DEFAULT NULL)
    RETURNS text
    AS 'MODULE_PATHNAME', 'idempotency_lease_release'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.lease_release(text, uuid) IS
    'end the lease: released (204) / not_found (404) / precondition_failed (412, token given and not current)';

CREATE FUNCTION idempotency.lease_status(key text)
    RETURNS TABLE (token uuid, fencing_token bigint, holder text,
                   acquired_at timestamptz, expires_at timestamptz)
    AS 'MODULE_PATHNAME', 'idempotency_lease_status'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION idempotency.lease_status(text) IS
    'the live lease on key (200), or no row when it is free (404)';

CREATE FUNCTION idempotency.lease_assert(key text, token uuid)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'idempotency_lease_assert'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.lease_assert(text, uuid) IS
    'fencing token of your live lease, locked until commit; 55P03 when the lease is not yours';
