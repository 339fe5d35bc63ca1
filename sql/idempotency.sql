-- idempotency: the install script.  The versioned file
-- sql/idempotency--<version>.sql is generated from this one by the Makefile.
--
-- Hardening (PostgreSQL docs, "Security Considerations for Extensions"):
-- no CREATE OR REPLACE / IF NOT EXISTS, every object schema-qualified,
-- operators written OPERATOR(pg_catalog.=), C entry points SECURITY INVOKER.

\echo Use "CREATE EXTENSION idempotency" to load this file. \quit

-- The schema is created here, by the script, so that it is a member of the
-- extension (the control file names pg_catalog as the extension's schema,
-- as plpgsql and pg_cron do): DROP EXTENSION drops it, pg_dump recreates it
-- with CREATE EXTENSION alone, and it is owned by the role running this
-- script -- a superuser: the bootstrap superuser when a database owner
-- installs the trusted extension.  No less privileged role can rename it,
-- drop it or create objects in it, so nothing can be planted under the
-- names that callers (superusers and pg_cron included) reach through
-- idempotency.*.  A pre-existing schema of that name makes CREATE SCHEMA,
-- and so the installation, fail: nobody can prepare it in advance.
DO $guard$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_namespace n
                WHERE n.nspname OPERATOR(pg_catalog.=) 'idempotency') THEN
        RAISE EXCEPTION 'schema "idempotency" already exists'
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'The extension creates its schema itself, so that no other role can own or prepare it.',
                  HINT = 'Drop or rename schema "idempotency" before creating the extension.';
    END IF;
END
$guard$;
CREATE SCHEMA idempotency;

-- Everyone may look objects up in the schema; nobody but its owner may
-- create objects in it (not even through ALTER DEFAULT PRIVILEGES ... TO
-- PUBLIC of the role running this script).
REVOKE ALL ON SCHEMA idempotency FROM PUBLIC;
GRANT USAGE ON SCHEMA idempotency TO PUBLIC;

---------------------------------------------------------------------------
-- 0. General
---------------------------------------------------------------------------

CREATE FUNCTION idempotency.version()
    RETURNS pg_catalog.text
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

-- The planner support function of the three one-row functions and the two
-- batches: a one-row call whose vals is jsonb_build_object('column', value,
-- ...) passes the values as they are (see "Insert-or-get and upsert" in the
-- README); a batch's row count is estimated from its constant argument.
-- Takes and returns "internal": not callable from SQL.
CREATE FUNCTION idempotency.upsert_support(pg_catalog.internal)
    RETURNS pg_catalog.internal
    AS 'MODULE_PATHNAME', 'idempotency_upsert_support'
    LANGUAGE C STRICT;

CREATE FUNCTION idempotency.idempotent_upsert(tbl pg_catalog.anyelement, vals pg_catalog.jsonb,
                                              key_cols pg_catalog.text[] DEFAULT NULL)
    RETURNS pg_catalog.anyelement
    AS 'MODULE_PATHNAME', 'idempotency_idempotent_upsert'
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    SUPPORT idempotency.upsert_support;

COMMENT ON FUNCTION idempotency.idempotent_upsert(pg_catalog.anyelement, pg_catalog.jsonb, pg_catalog.text[]) IS
    'insert the row unless a row with its key exists; return the row with this key (never raises 23505 for the key)';

CREATE FUNCTION idempotency.get_or_create(tbl pg_catalog.anyelement, vals pg_catalog.jsonb,
                                          key_cols pg_catalog.text[] DEFAULT NULL,
                                          OUT item pg_catalog.anyelement, OUT created pg_catalog.bool)
    RETURNS pg_catalog.record
    AS 'MODULE_PATHNAME', 'idempotency_get_or_create'
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    SUPPORT idempotency.upsert_support;

COMMENT ON FUNCTION idempotency.get_or_create(pg_catalog.anyelement, pg_catalog.jsonb, pg_catalog.text[]) IS
    'idempotent_upsert with a flag: created is true when this call inserted the row';

CREATE FUNCTION idempotency.update_or_create(tbl pg_catalog.anyelement, vals pg_catalog.jsonb,
                                             key_cols pg_catalog.text[] DEFAULT NULL,
                                             OUT item pg_catalog.anyelement, OUT created pg_catalog.bool)
    RETURNS pg_catalog.record
    AS 'MODULE_PATHNAME', 'idempotency_update_or_create'
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    SUPPORT idempotency.upsert_support;

COMMENT ON FUNCTION idempotency.update_or_create(pg_catalog.anyelement, pg_catalog.jsonb, pg_catalog.text[]) IS
    'set the given non-key columns of the row with this key (writing nothing when they are equal already), or insert it';

CREATE FUNCTION idempotency.idempotent_upsert_many(tbl pg_catalog.anyelement, vals pg_catalog.jsonb,
                                                   key_cols pg_catalog.text[] DEFAULT NULL)
    RETURNS SETOF pg_catalog.anyelement
    AS 'MODULE_PATHNAME', 'idempotency_idempotent_upsert_many'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100
    SUPPORT idempotency.upsert_support;

COMMENT ON FUNCTION idempotency.idempotent_upsert_many(pg_catalog.anyelement, pg_catalog.jsonb, pg_catalog.text[]) IS
    'idempotent_upsert for a JSON array of rows, as set operations; one result row per element, in input order';

-- The same batch as arrays, one per column named in cols (the arrays'
-- elements at one position make a row), each of its column's type.
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
-- 2. Processed events and idempotency keys
---------------------------------------------------------------------------

-- One row per (owner, scope, key).  The owner is part of the key, so roles
-- sharing a database cannot collide with, or probe for, each other's keys.
-- It is the role's name, not its OID: on a Citus cluster a role has a
-- different OID on every node, but the same name.  Renaming a role leaves
-- its records under the old name (see the README).  It compares in the "C"
-- collation, as role names (type name) do: owner = CURRENT_USER is then
-- a search of the primary key (in the database's collation it would not
-- be, CURRENT_USER being a name, whose collation is "C").
-- status: 'in_progress' (claimed; locked_until is the end of the lease),
-- 'completed' (result), 'failed' (error, not retryable).  expires_at: when
-- the row may be purged and the key becomes new again; for an in_progress
-- row it is locked_until + ttl, so that complete() can recover the ttl.
-- status has no CHECK constraint (evaluating it would cost every claim and
-- complete): the functions write only those three values, nobody else may
-- write the table (see below), and the functions refuse to read a row with
-- any other status (XX001, src/events.c).
-- The primary key's columns are in the order (key, scope, owner): a search
-- compares the columns in order, and the key is nearly always what tells
-- two records apart (most records share their owner and scope), so each
-- comparison of the search usually stops at the first column instead of
-- comparing owner and scope first.  On a Citus cluster the distribution
-- column (key) also leads the index, so a statement that finds rows by
-- key alone (purge's DELETE there) searches it.
CREATE TABLE idempotency.processed_events (
    owner          pg_catalog.text COLLATE pg_catalog."C" NOT NULL DEFAULT CURRENT_USER,
    scope          pg_catalog.text NOT NULL,
    key            pg_catalog.text NOT NULL,
    status         pg_catalog.text NOT NULL,
    fingerprint    pg_catalog.bytea,
    result         pg_catalog.jsonb,
    error          pg_catalog.jsonb,
    token          pg_catalog.uuid,
    fencing_token  pg_catalog.int8,
    attempts       pg_catalog.int4 NOT NULL DEFAULT 1,
    created_at     pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at     pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    locked_until   pg_catalog.timestamptz,
    expires_at     pg_catalog.timestamptz NOT NULL,
    CONSTRAINT processed_events_pkey PRIMARY KEY (key, scope, owner)
);

-- purge() finds expired rows through this index.
CREATE INDEX processed_events_expires_at_idx
    ON idempotency.processed_events (expires_at);

-- Fencing tokens: strictly increasing across all claims (hence per key).
CREATE SEQUENCE idempotency.processed_events_fencing_seq;

SELECT pg_catalog.pg_extension_config_dump('idempotency.processed_events', '');
SELECT pg_catalog.pg_extension_config_dump('idempotency.processed_events_fencing_seq', '');

COMMENT ON TABLE idempotency.processed_events IS
    'idempotency keys and processed events, one row per (owning role, scope, key); changed only through the idempotency functions';

-- Nobody but the table's owner may change the rows directly: the functions
-- run their statements as the owner (src/plans.c) and act only on the
-- caller's own records (owner = current_user), so a role can neither
-- rewrite another role's stored result nor roll a fencing counter back,
-- nor lock the table against other roles' claims.  Reading is allowed,
-- through row level security, for the rows of roles the reader is a member
-- of (itself included); owner names a role, which to_regrole() finds by
-- name (NULL, so hidden, for a dropped role) without a subquery, which
-- Citus refuses in policies.  The table's owner (the extension's
-- installer; see below) bypasses the policy: pg_dump run by it keeps every
-- row.
ALTER TABLE idempotency.processed_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY processed_events_read ON idempotency.processed_events
    FOR SELECT
    USING (pg_catalog.pg_has_role(
        pg_catalog.to_regrole(pg_catalog.quote_ident(owner))::pg_catalog.oid, 'MEMBER'));

REVOKE ALL ON TABLE idempotency.processed_events FROM PUBLIC;
GRANT SELECT ON TABLE idempotency.processed_events TO PUBLIC;
REVOKE ALL ON SEQUENCE idempotency.processed_events_fencing_seq FROM PUBLIC;

CREATE FUNCTION idempotency.mark_processed(key pg_catalog.text,
        scope pg_catalog.text DEFAULT '',
        ttl pg_catalog.interval DEFAULT '7 days')
    RETURNS pg_catalog.bool
    AS 'MODULE_PATHNAME', 'idempotency_mark_processed'
    LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE SECURITY INVOKER;

COMMENT ON FUNCTION idempotency.mark_processed(pg_catalog.text, pg_catalog.text, pg_catalog.interval) IS
    'record that an event was processed: true the first time (do the work), false for a duplicate; transactional';

-- The rows of claim() and the lease functions are composite types, not
-- RETURNS TABLE: for a function with OUT parameters PostgreSQL builds the
-- row type from pg_proc's argument arrays at every execution of a
-- statement calling it (about 10,000 instructions, an eighth of a replay
-- of a completed key); a composite type's comes from the type cache.
CREATE TYPE idempotency.claim_result AS (status pg_catalog.text, result pg_catalog.jsonb,
    error pg_catalog.jsonb, token pg_catalog.uuid, fencing_token pg_catalog.int8,
    attempts pg_catalog.int4, expires_at pg_catalog.timestamptz);

COMMENT ON TYPE idempotency.claim_result IS
    'the row idempotency.claim() returns';

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

CREATE FUNCTION idempotency.complete(key pg_catalog.text,
        result pg_catalog.jsonb DEFAULT NULL,
        scope pg_catalog.text DEFAULT '',
        token pg_catalog.uuid DEFAULT NULL)
    RETURNS pg_catalog.void
    AS 'MODULE_PATHNAME', 'idempotency_complete'
    LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE SECURITY INVOKER;

COMMENT ON FUNCTION idempotency.complete(pg_catalog.text, pg_catalog.jsonb, pg_catalog.text, pg_catalog.uuid) IS
    'store the result of a claimed key (token: the claim''s token; NULL only for a claim made in the same transaction)';

CREATE FUNCTION idempotency.fail(key pg_catalog.text,
        error pg_catalog.jsonb DEFAULT NULL,
        retryable pg_catalog.bool DEFAULT true,
        scope pg_catalog.text DEFAULT '',
        token pg_catalog.uuid DEFAULT NULL)
    RETURNS pg_catalog.void
    AS 'MODULE_PATHNAME', 'idempotency_fail'
    LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE SECURITY INVOKER;

COMMENT ON FUNCTION idempotency.fail(pg_catalog.text, pg_catalog.jsonb, pg_catalog.bool, pg_catalog.text, pg_catalog.uuid) IS
    'end a claim with an error: retryable frees the key, otherwise the error is stored and replayed';

CREATE FUNCTION idempotency.forget(key pg_catalog.text,
        scope pg_catalog.text DEFAULT '')
    RETURNS pg_catalog.bool
    AS 'MODULE_PATHNAME', 'idempotency_forget'
    LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE SECURITY INVOKER;

COMMENT ON FUNCTION idempotency.forget(pg_catalog.text, pg_catalog.text) IS
    'delete the caller''s record of a key, whatever its state; true when there was one';

-- Deletes expired rows in batches of batch_size, skipping rows that a
-- concurrent claim has locked: every expired row when the caller is a
-- superuser or has the privileges of the table's owner (e.g. run from
-- pg_cron), otherwise the expired rows of roles the caller is a member of.
CREATE FUNCTION idempotency.purge(batch_size pg_catalog.int4 DEFAULT 10000)
    RETURNS pg_catalog.int8
    AS 'MODULE_PATHNAME', 'idempotency_purge'
    LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE SECURITY INVOKER;

COMMENT ON FUNCTION idempotency.purge(pg_catalog.int4) IS
    'delete expired processed_events rows (every row for a superuser or the table owner, otherwise the caller''s roles'' rows) in batches, skipping rows locked by claims; returns the number deleted';


---------------------------------------------------------------------------
-- 3. Keyed mutexes
---------------------------------------------------------------------------

-- Advisory locks in the extension's own lock-tag namespace (src/mutex.c).
-- The C functions check their arguments themselves (NULL key -> 22004), so
-- none is STRICT: a NULL timeout means "as lock_timeout says".

CREATE FUNCTION idempotency.mutex_lock(key pg_catalog.text, timeout pg_catalog.interval DEFAULT NULL,
                                       shared pg_catalog.bool DEFAULT false)
    RETURNS pg_catalog.bool
    AS 'MODULE_PATHNAME', 'idempotency_mutex_lock'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_lock(pg_catalog.text, pg_catalog.interval, pg_catalog.bool) IS
    'lock the mutex named key until the end of the transaction; false only when timeout ran out';

CREATE FUNCTION idempotency.mutex_try_lock(key pg_catalog.text, shared pg_catalog.bool DEFAULT false)
    RETURNS pg_catalog.bool
    AS 'MODULE_PATHNAME', 'idempotency_mutex_try_lock'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_try_lock(pg_catalog.text, pg_catalog.bool) IS
    'lock the mutex named key until the end of the transaction if it is free now';

CREATE FUNCTION idempotency.mutex_session_lock(key pg_catalog.text, timeout pg_catalog.interval DEFAULT NULL,
                                               shared pg_catalog.bool DEFAULT false)
    RETURNS pg_catalog.bool
    AS 'MODULE_PATHNAME', 'idempotency_mutex_session_lock'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_session_lock(pg_catalog.text, pg_catalog.interval, pg_catalog.bool) IS
    'lock the mutex named key until unlocked or the session ends (unsafe behind transaction poolers)';

CREATE FUNCTION idempotency.mutex_session_try_lock(key pg_catalog.text, shared pg_catalog.bool DEFAULT false)
    RETURNS pg_catalog.bool
    AS 'MODULE_PATHNAME', 'idempotency_mutex_session_try_lock'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_session_try_lock(pg_catalog.text, pg_catalog.bool) IS
    'lock the mutex named key for the session if it is free now';

CREATE FUNCTION idempotency.mutex_session_unlock(key pg_catalog.text, shared pg_catalog.bool DEFAULT false)
    RETURNS pg_catalog.bool
    AS 'MODULE_PATHNAME', 'idempotency_mutex_session_unlock'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_session_unlock(pg_catalog.text, pg_catalog.bool) IS
    'release one count of a session mutex; false if none was held';

CREATE FUNCTION idempotency.mutex_session_unlock_all()
    RETURNS pg_catalog.void
    AS 'MODULE_PATHNAME', 'idempotency_mutex_session_unlock_all'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.mutex_session_unlock_all() IS
    'release every session mutex of this session (not other advisory locks)';

CREATE FUNCTION idempotency.mutex_holders(key pg_catalog.text)
    RETURNS TABLE (pid pg_catalog.int4, mode pg_catalog.text, granted pg_catalog.bool, scope pg_catalog.text,
                   waiting_since pg_catalog.timestamptz)
    AS 'MODULE_PATHNAME', 'idempotency_mutex_holders'
    LANGUAGE C VOLATILE PARALLEL SAFE ROWS 4;

COMMENT ON FUNCTION idempotency.mutex_holders(pg_catalog.text) IS
    'who holds and who waits for the mutex named key (from the lock manager, like pg_locks)';


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
-- 4. Durable leases
---------------------------------------------------------------------------

-- A lease is a row: it outlives the transaction, the connection and the
-- server.  Rows are kept after release (token NULL) because they carry the
-- key's fencing counter; see src/lease.c.
-- No CHECK constraints (evaluating them would cost every acquire and
-- release): the functions only write held rows with both timestamps and
-- fencing tokens from 1 up, nobody else may write the table, and the
-- functions refuse a row its owner wrote by hand that breaks either rule
-- (XX001, src/lease.c).
CREATE TABLE idempotency.leases (
    key           pg_catalog.text PRIMARY KEY,
    token         pg_catalog.uuid,
    fencing_token pg_catalog.int8 NOT NULL,
    holder        pg_catalog.text,
    acquired_at   pg_catalog.timestamptz,
    expires_at    pg_catalog.timestamptz
) WITH (fillfactor = 80);

-- Every acquire and every release updates its key's row, and rows are
-- never deleted.  A page is pruned of its dead versions (every line
-- pointer read) whenever its free space is below what the fillfactor
-- reserves, a tenth at least: filled with rows up to that mark, at almost
-- every update.  Grown with fillfactor 80, its pages keep room for many
-- new versions, and a pruning comes once per many updates (measured in
-- the README, "Leases: room on the page").

COMMENT ON TABLE idempotency.leases IS
    'durable leases (one row per key ever leased; token NULL or expires_at in the past = free)';

SELECT pg_catalog.pg_extension_config_dump('idempotency.leases', '');

-- Nobody but the table's owner may read or change the rows directly: the
-- functions run their statements as the owner and change a lease only by
-- compare-and-swap, so the fencing counter of a key can never go back and
-- a lease changes only through them (lease_release without a token, like
-- a DELETE without If-Match, releases whoever holds it).  Leases
-- are shared between the services of an application, like advisory locks:
-- any role that may EXECUTE the lease functions may use any key (revoke
-- EXECUTE from PUBLIC and grant it to chosen roles to restrict that).
REVOKE ALL ON TABLE idempotency.leases FROM PUBLIC;

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

CREATE FUNCTION idempotency.lease_release(key pg_catalog.text, token pg_catalog.uuid DEFAULT NULL)
    RETURNS pg_catalog.text
    AS 'MODULE_PATHNAME', 'idempotency_lease_release'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.lease_release(pg_catalog.text, pg_catalog.uuid) IS
    'end the lease: released (204) / not_found (404) / precondition_failed (412, token given and not current)';

CREATE FUNCTION idempotency.lease_status(key pg_catalog.text)
    RETURNS SETOF idempotency.lease_status_result
    AS 'MODULE_PATHNAME', 'idempotency_lease_status'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION idempotency.lease_status(pg_catalog.text) IS
    'the live lease on key (200), or no row when it is free (404)';

CREATE FUNCTION idempotency.lease_assert(key pg_catalog.text, token pg_catalog.uuid)
    RETURNS pg_catalog.int8
    AS 'MODULE_PATHNAME', 'idempotency_lease_assert'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idempotency.lease_assert(pg_catalog.text, pg_catalog.uuid) IS
    'fencing token of your live lease, locked until commit; 55P03 when the lease is not yours';


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
-- Ownership of the tables
---------------------------------------------------------------------------

-- The tables belong to the role that installed the extension, so that its
-- pg_dump keeps their rows and the fencing counter, and its pg_restore can
-- load them, without superuser rights or --no-owner.  That role (a database
-- owner, for a trusted install) may change them at will, as it may drop the
-- extension; but whatever it attaches to them (triggers, policies) runs
-- with its own rights only, because the functions run as the table owner
-- in a security-restricted operation.  The schema and the functions stay
-- owned by the superuser running this script.
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
    RETURNS SETOF pg_catalog.record
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
    RETURNS pg_catalog.void
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
-- No privileges from ALTER DEFAULT PRIVILEGES
---------------------------------------------------------------------------

-- The default privileges of the role running this script (a superuser:
-- the bootstrap superuser when a database owner installs the trusted
-- extension) reach every object it creates: after ALTER DEFAULT PRIVILEGES
-- FOR ROLE postgres GRANT ALL ON TABLES TO app, app could write the
-- tables, and with SEQUENCES, FUNCTIONS or SCHEMAS also set the fencing
-- sequence back, reset the statistics, distribute the tables or create
-- objects in the schema -- all of which this script keeps to the objects'
-- owners.  So, last, once every object exists and the tables have their
-- owner, every privilege granted to a role other than the object's owner
-- and PUBLIC (whose privileges the statements above set) is revoked: on
-- the schema, on each relation in it and its columns (REVOKE ALL ON TABLE
-- takes the column privileges too), on each function and on each type in
-- it (the row types of claim() and the lease functions).  CASCADE
-- takes grants made with a grant option.  Run by a superuser, REVOKE acts
-- as the object's owner; in this script it also records what is left as
-- the object's initial privileges (pg_init_privs).  The statements name
-- the objects with quote_ident and pg_get_function_identity_arguments:
-- regclass and regprocedure output depends on the search_path.
DO $defaults$
DECLARE
    nsp CONSTANT pg_catalog.oid := 'idempotency'::pg_catalog.regnamespace;
    stmt pg_catalog.text;
BEGIN
    FOR stmt IN
        SELECT s.stmt
          FROM (SELECT pg_catalog.format('REVOKE ALL ON SCHEMA %I FROM %I CASCADE',
                                         n.nspname, pg_catalog.pg_get_userbyid(a.grantee)) AS stmt
                  FROM pg_catalog.pg_namespace n, LATERAL pg_catalog.aclexplode(n.nspacl) a
                 WHERE n.oid OPERATOR(pg_catalog.=) nsp
                   AND a.grantee OPERATOR(pg_catalog.<>) n.nspowner
                   AND a.grantee OPERATOR(pg_catalog.<>) 0
                UNION
                SELECT pg_catalog.format('REVOKE ALL ON %s %I.%I FROM %I CASCADE',
                                         CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                                         n.nspname, c.relname, pg_catalog.pg_get_userbyid(g.grantee))
                  FROM pg_catalog.pg_class c
                  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                  CROSS JOIN LATERAL (
                      SELECT a.grantee FROM pg_catalog.aclexplode(c.relacl) a
                      UNION
                      SELECT a.grantee
                        FROM pg_catalog.pg_attribute att, LATERAL pg_catalog.aclexplode(att.attacl) a
                       WHERE att.attrelid OPERATOR(pg_catalog.=) c.oid) g
                 WHERE c.relnamespace OPERATOR(pg_catalog.=) nsp
                   AND g.grantee OPERATOR(pg_catalog.<>) c.relowner
                   AND g.grantee OPERATOR(pg_catalog.<>) 0
                UNION
                SELECT pg_catalog.format('REVOKE ALL ON ROUTINE %I.%I(%s) FROM %I CASCADE',
                                         n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid),
                                         pg_catalog.pg_get_userbyid(a.grantee))
                  FROM pg_catalog.pg_proc p
                  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace,
                       LATERAL pg_catalog.aclexplode(p.proacl) a
                 WHERE p.pronamespace OPERATOR(pg_catalog.=) nsp
                   AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
                   AND a.grantee OPERATOR(pg_catalog.<>) 0
                UNION
                SELECT pg_catalog.format('REVOKE ALL ON TYPE %I.%I FROM %I CASCADE',
                                         n.nspname, t.typname, pg_catalog.pg_get_userbyid(a.grantee))
                  FROM pg_catalog.pg_type t
                  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace,
                       LATERAL pg_catalog.aclexplode(t.typacl) a
                 WHERE t.typnamespace OPERATOR(pg_catalog.=) nsp
                   AND a.grantee OPERATOR(pg_catalog.<>) t.typowner
                   AND a.grantee OPERATOR(pg_catalog.<>) 0) s
         ORDER BY s.stmt COLLATE pg_catalog."C"
    LOOP
        EXECUTE stmt;
    END LOOP;
END
$defaults$;
