-- Defects found by a hostile review, one block each.  Every block failed
-- (crash, wrong answer or wrong state) before its fix.

SET client_min_messages = warning;

---------------------------------------------------------------------------
-- An error inside the internal subtransaction of a waiting lease_acquire()
-- is rolled back before it reaches the caller: the session stays usable,
-- and a PL/pgSQL block that catches it undoes its own earlier writes.
---------------------------------------------------------------------------
CREATE FUNCTION public.lease_boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.key = 'boom' THEN
        RAISE EXCEPTION 'boom' USING ERRCODE = 'lock_not_available';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER lease_boom BEFORE INSERT ON idempotency.leases
    FOR EACH ROW EXECUTE FUNCTION public.lease_boom();
SELECT * FROM idempotency.lease_acquire('boom', wait => '1 s');
SELECT 1 AS session_usable;
ROLLBACK;
CREATE TABLE sub_writes (x int);
DO $$
BEGIN
    BEGIN
        INSERT INTO sub_writes VALUES (1);
        PERFORM idempotency.lease_acquire('boom', wait => '1 s');
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'caught once';
    END;
    BEGIN
        INSERT INTO sub_writes VALUES (2);
        PERFORM idempotency.lease_acquire('boom', wait => '1 s');
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'caught twice';
    END;
END $$;
SELECT count(*) AS writes_undone FROM sub_writes;
\c
SELECT 1 AS reconnected;
SET client_min_messages = warning;
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
DROP TRIGGER lease_boom ON idempotency.leases;
DROP FUNCTION public.lease_boom();
DROP TABLE sub_writes;
TRUNCATE idempotency.leases;

---------------------------------------------------------------------------
-- The upsert cache: an entry in use is never freed, whatever a trigger
-- does meanwhile: fill the cache past its limit, or invalidate the entry
-- (GRANT, ANALYZE) and use the same table again.
---------------------------------------------------------------------------
SET client_min_messages = notice;
CREATE TABLE wide (id int PRIMARY KEY, c1 int, c2 int, c3 int, c4 int, c5 int,
                   c6 int, c7 int, c8 int, c9 int, c10 int, c11 int);
CREATE TABLE outer_t (k text PRIMARY KEY, v text);
CREATE FUNCTION outer_t_fill() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    i int;
    vals jsonb;
BEGIN
    IF NEW.k LIKE 'fill%' THEN
        -- 1100 distinct column sets: more than the cache holds
        FOR i IN 1 .. 1100 LOOP
            SELECT jsonb_object_agg('c' || b, b) || jsonb_build_object('id', i)
              INTO vals
              FROM generate_series(1, 11) b WHERE (i >> (b - 1)) & 1 = 1;
            PERFORM idempotency.idempotent_upsert(NULL::wide, vals);
        END LOOP;
    ELSIF NEW.k = 'inval' THEN
        GRANT SELECT ON outer_t TO PUBLIC;
        ANALYZE outer_t;
        PERFORM idempotency.get_or_create(NULL::outer_t, '{"k": "existing"}');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER outer_t_fill BEFORE INSERT ON outer_t
    FOR EACH ROW EXECUTE FUNCTION outer_t_fill();
INSERT INTO outer_t VALUES ('existing', 'e');
SELECT (item).k, (item).v, created
  FROM idempotency.get_or_create(NULL::outer_t, '{"k": "fill", "v": "f"}');
SELECT count(*) AS wide_rows FROM wide;
SELECT (item).k, (item).v, created
  FROM idempotency.get_or_create(NULL::outer_t, '{"k": "inval", "v": "i"}');
SELECT k, v FROM idempotency.idempotent_upsert_many(NULL::outer_t,
    '[{"k": "existing"}, {"k": "inval"}, {"k": "new"}]');
-- The same from a batch, whose elements go through several entries.
TRUNCATE wide;
SELECT k, v FROM idempotency.idempotent_upsert_many(NULL::outer_t,
    '[{"k": "fill2"}, {"k": "fill", "v": "x"}, {"k": "fill2", "v": "y"}]');
SELECT count(*) AS wide_rows FROM wide;
-- ... and from a batch of columns
TRUNCATE wide;
SELECT k, v FROM idempotency.idempotent_upsert_columns(NULL::outer_t, '{k,v}', NULL,
    ARRAY['fill3', 'fill', 'fill3'], ARRAY['p', 'q', 'r']);
SELECT count(*) AS wide_rows FROM wide;
-- An error inside the nested calls releases their entries, and the outer
-- call, caught by an exception block, leaves the cache usable.
DO $$
BEGIN
    PERFORM idempotency.get_or_create(NULL::outer_t, '{"k": "fill3", "v": 1}');
    PERFORM idempotency.get_or_create(NULL::wide, '{"id": null}');
EXCEPTION WHEN null_value_not_allowed THEN
    RAISE NOTICE 'caught %', SQLERRM;
END $$;
SELECT (item).k, created FROM idempotency.get_or_create(NULL::outer_t, '{"k": "existing"}');
SET client_min_messages = warning;
DROP TABLE outer_t, wide;
DROP FUNCTION outer_t_fill();

---------------------------------------------------------------------------
-- update_or_create against a BEFORE UPDATE trigger that skips the update:
-- the row exists and is returned as it is, like a plain UPDATE that the
-- trigger skips (it used to retry 100 times and raise 55000).
---------------------------------------------------------------------------
CREATE TABLE frozen (k text PRIMARY KEY, v text);
CREATE FUNCTION frozen_skip() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END $$;
CREATE TRIGGER frozen_skip BEFORE UPDATE ON frozen
    FOR EACH ROW EXECUTE FUNCTION frozen_skip();
SELECT (item).k, (item).v, created
  FROM idempotency.update_or_create(NULL::frozen, '{"k": "a", "v": "1"}');
SELECT (item).k, (item).v, created
  FROM idempotency.update_or_create(NULL::frozen, '{"k": "a", "v": "2"}');
SELECT * FROM frozen;
DROP TABLE frozen;
DROP FUNCTION frozen_skip();

---------------------------------------------------------------------------
-- An inheritance parent whose BEFORE INSERT trigger redirects the row to a
-- child and returns NULL: the call created the row, and says so.
---------------------------------------------------------------------------
CREATE TABLE events_parent (id int PRIMARY KEY, what text);
CREATE TABLE events_child () INHERITS (events_parent);
CREATE UNIQUE INDEX ON events_child (id);
CREATE FUNCTION events_redirect() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_child VALUES (NEW.*);
    RETURN NULL;
END $$;
CREATE TRIGGER events_redirect BEFORE INSERT ON events_parent
    FOR EACH ROW EXECUTE FUNCTION events_redirect();
SELECT (item).id, (item).what, created
  FROM idempotency.get_or_create(NULL::events_parent, '{"id": 1, "what": "x"}');
SELECT (item).id, (item).what, created
  FROM idempotency.get_or_create(NULL::events_parent, '{"id": 1, "what": "y"}');
SELECT tableoid::regclass, * FROM events_parent;
DROP TABLE events_parent CASCADE;
DROP FUNCTION events_redirect();

---------------------------------------------------------------------------
-- A BEFORE INSERT trigger that rewrites the key: an error, never a row with
-- another key than the one asked for.
---------------------------------------------------------------------------
CREATE TABLE rekeyed (k text PRIMARY KEY, v text);
CREATE FUNCTION rekey() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.k := NEW.k || '-rekeyed';
    RETURN NEW;
END $$;
CREATE TRIGGER rekey BEFORE INSERT ON rekeyed FOR EACH ROW EXECUTE FUNCTION rekey();
SELECT pg_temp.try($$SELECT idempotency.get_or_create(NULL::rekeyed, '{"k": "u3"}')$$);
SELECT pg_temp.try($$SELECT idempotency.idempotent_upsert_many(NULL::rekeyed, '[{"k": "u4"}]')$$);
SELECT pg_temp.try($$SELECT idempotency.idempotent_upsert_columns(NULL::rekeyed, '{k}', NULL, ARRAY['u5'])$$);
SELECT count(*) AS rows_left FROM rekeyed;
DROP TABLE rekeyed;
DROP FUNCTION rekey();

-- A first argument that is no table's row type: 42809 from every function.
SELECT pg_temp.try($$SELECT idempotency.idempotent_upsert_many('x'::text, '[{"k": 1}]')$$);
SELECT pg_temp.try($$SELECT idempotency.idempotent_upsert_columns('x'::text, '{k}', NULL, ARRAY[1])$$);
SELECT pg_temp.try($$SELECT idempotency.get_or_create('x'::text, '{"k": 1}')$$);

---------------------------------------------------------------------------
-- A hit takes no stronger table lock than the SELECT it stands for.
---------------------------------------------------------------------------
CREATE TABLE readers (k text PRIMARY KEY);
INSERT INTO readers VALUES ('a');
CREATE ROLE regress_reader;
GRANT SELECT ON readers TO regress_reader;
SET ROLE regress_reader;
BEGIN;
SELECT (item).k, created FROM idempotency.get_or_create(NULL::readers, '{"k": "a"}');
SELECT mode FROM pg_locks
 WHERE locktype = 'relation' AND relation = 'readers'::regclass AND pid = pg_backend_pid();
COMMIT;
-- a miss needs INSERT, as a plain INSERT would
SELECT pg_temp.try($$SELECT idempotency.get_or_create(NULL::readers, '{"k": "b"}')$$);
RESET ROLE;
DROP TABLE readers;
DROP ROLE regress_reader;

---------------------------------------------------------------------------
-- One limit for every interval argument: '1000 years' is accepted,
-- '1000 years 1 day' refused, everywhere.
---------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT idempotency.mark_processed('iv', ttl => '1000 years')$$);
SELECT pg_temp.try($$SELECT idempotency.mark_processed('iv2', ttl => '1000 years 1 day')$$);
SELECT pg_temp.try($$SELECT idempotency.claim('iv3', ttl => '1000 years 1 day')$$);
SELECT pg_temp.try($$SELECT idempotency.claim('iv3', lease => '1000 years 1 day')$$);
SELECT pg_temp.try($$SELECT idempotency.claim('iv3', wait => '1000 years 1 day')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('iv', ttl => '1000 years')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('iv2', ttl => '1000 years 1 day')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('iv2', wait => '1000 years 1 day')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_renew('iv', gen_random_uuid(), ttl => '1000 years 1 day')$$);
SELECT pg_temp.try($$SELECT idempotency.mutex_lock('iv', timeout => '1000 years')$$);
SELECT pg_temp.try($$SELECT idempotency.mutex_lock('iv', timeout => '1000 years 1 day')$$);
SELECT pg_temp.try($$SELECT idempotency.mutex_session_lock('iv', timeout => '-1000 years -1 day')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('iv3', ttl => '106751991 days', wait => '1 s')$$);
SELECT 1 AS session_usable;
DELETE FROM idempotency.processed_events;
TRUNCATE idempotency.leases;

---------------------------------------------------------------------------
-- The statements the functions run as the table owner do so with
-- search_path = pg_catalog, pg_temp: a trigger the owner attached, written
-- with unqualified names, does not run the caller's look-alike function
-- with the owner's rights (the caller chose search_path = its own schema
-- first).  Every function that writes a table of the extension is tried.
---------------------------------------------------------------------------
CREATE ROLE regress_idem_hijack LOGIN;
CREATE SCHEMA regress_hijack AUTHORIZATION regress_idem_hijack;
CREATE FUNCTION public.owner_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- unqualified on purpose: resolved through search_path at run time
    PERFORM lower('audit');
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER owner_audit BEFORE INSERT OR UPDATE OR DELETE ON idempotency.processed_events
    FOR EACH ROW EXECUTE FUNCTION public.owner_audit();
CREATE TRIGGER owner_audit BEFORE INSERT OR UPDATE OR DELETE ON idempotency.leases
    FOR EACH ROW EXECUTE FUNCTION public.owner_audit();
SET ROLE regress_idem_hijack;
CREATE FUNCTION regress_hijack.lower(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'hijacked: ran as %', current_user;
END $$;
SET search_path = regress_hijack, pg_catalog;
SELECT idempotency.mark_processed('hijack-1') AS mark_processed;
BEGIN;
SELECT status FROM idempotency.claim('hijack-2');
SELECT idempotency.complete('hijack-2', '{}') AS complete;
SELECT status FROM idempotency.claim('hijack-4');
SELECT idempotency.fail('hijack-4', '{}', retryable => false) AS fail;
SELECT status FROM idempotency.claim('hijack-5');
SELECT idempotency.fail('hijack-5', '{}', retryable => true) AS fail_retryable;
COMMIT;
SELECT status FROM idempotency.claim('hijack-6', lease => '1 millisecond');
SELECT pg_sleep(0.01);
SELECT status, attempts FROM idempotency.claim('hijack-6');
SELECT idempotency.forget('hijack-1') AS forget;
SELECT idempotency.mark_processed('hijack-7', ttl => '1 millisecond') AS mark_short;
SELECT pg_sleep(0.01);
SELECT idempotency.purge() >= 1 AS purged;
SELECT status FROM idempotency.lease_acquire('hijack-3', wait => '1 second');
SELECT status FROM idempotency.lease_renew('hijack-3', (SELECT token FROM idempotency.lease_status('hijack-3')));
SELECT idempotency.lease_release('hijack-3') AS lease_release;
SELECT current_setting('search_path') AS search_path_after;
RESET search_path;
RESET ROLE;
DROP TRIGGER owner_audit ON idempotency.processed_events;
DROP TRIGGER owner_audit ON idempotency.leases;
DROP FUNCTION public.owner_audit();
DELETE FROM idempotency.processed_events;
TRUNCATE idempotency.leases;
DROP SCHEMA regress_hijack CASCADE;

---------------------------------------------------------------------------
-- The same for every other kind of code the owner can attach to the
-- tables, each attached in turn with a function written with unqualified
-- names: a column default (also one calling a built-in function that runs
-- a query), a CHECK constraint, a domain's check, an index
-- expression, a partial index's predicate, a rule, a row security policy
-- (read by lease_status() as well as written), and an inheritance child
-- with a trigger (the statements leave the child's rows alone).  The
-- statements run with the caller's search_path only while the table has
-- none of these.
---------------------------------------------------------------------------
CREATE SCHEMA regress_hijack AUTHORIZATION regress_idem_hijack;
SET ROLE regress_idem_hijack;
CREATE FUNCTION regress_hijack.lower(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'hijacked: ran as %', current_user;
END $$;
GRANT USAGE ON SCHEMA regress_hijack TO PUBLIC;
RESET ROLE;
-- unqualified on purpose: resolved through search_path at run time
CREATE FUNCTION public.owner_text(t text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN lower(coalesce(t, 'x')); END $$;
CREATE FUNCTION public.owner_bool(t text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN lower(coalesce(t, 'x')) IS NOT NULL; END $$;
CREATE FUNCTION pg_temp.hijack_try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    SET LOCAL ROLE regress_idem_hijack;
    SET LOCAL search_path = regress_hijack, pg_catalog;
    r := pg_temp.try(sql);
    RESET ROLE;
    RESET search_path;
    RETURN r;
END $$;

ALTER TABLE idempotency.processed_events
    ALTER COLUMN error SET DEFAULT pg_catalog.to_jsonb(public.owner_text('e'));
SELECT pg_temp.hijack_try($$SELECT idempotency.mark_processed('code-default')$$) AS column_default;
-- built in, and it runs the query it is given under the current search_path
ALTER TABLE idempotency.processed_events ALTER COLUMN error SET DEFAULT
    pg_catalog.to_jsonb(pg_catalog.ts_rewrite('a'::pg_catalog.tsquery,
        'SELECT pg_catalog.to_tsquery(lower(''e'')), ''b''::pg_catalog.tsquery'));
SELECT pg_temp.hijack_try($$SELECT idempotency.mark_processed('code-default-builtin')$$) AS column_default_builtin;
ALTER TABLE idempotency.processed_events ALTER COLUMN error DROP DEFAULT;

ALTER TABLE idempotency.processed_events
    ADD CONSTRAINT owner_check CHECK (public.owner_bool(key));
SELECT pg_temp.hijack_try($$SELECT idempotency.mark_processed('code-check')$$) AS check_constraint;
ALTER TABLE idempotency.processed_events DROP CONSTRAINT owner_check;

CREATE DOMAIN public.owner_json AS jsonb CHECK (public.owner_bool(VALUE::text));
ALTER TABLE idempotency.processed_events ALTER COLUMN result TYPE public.owner_json;
SELECT pg_temp.hijack_try($$SELECT idempotency.mark_processed('code-domain')$$) AS domain_check;
ALTER TABLE idempotency.processed_events ALTER COLUMN result TYPE jsonb;
DROP DOMAIN public.owner_json;

CREATE INDEX owner_expr_events ON idempotency.processed_events (public.owner_text(key));
CREATE INDEX owner_expr_leases ON idempotency.leases (public.owner_text(key));
SELECT pg_temp.hijack_try($$SELECT idempotency.mark_processed('code-index')$$) AS index_expression;
SELECT pg_temp.hijack_try($$SELECT idempotency.lease_acquire('code-index')$$) AS index_expression_lease;
DROP INDEX idempotency.owner_expr_events;
DROP INDEX idempotency.owner_expr_leases;

CREATE INDEX owner_pred ON idempotency.processed_events (key) WHERE public.owner_bool(scope);
SELECT pg_temp.hijack_try($$SELECT idempotency.mark_processed('code-predicate')$$) AS index_predicate;
DROP INDEX idempotency.owner_pred;

INSERT INTO idempotency.processed_events (owner, scope, key, status, expires_at)
    VALUES ('regress_idem_hijack', '', 'code-rule', 'completed', 'infinity');
CREATE RULE owner_rule AS ON DELETE TO idempotency.processed_events
    DO ALSO SELECT public.owner_text(OLD.key);
SELECT pg_temp.hijack_try($$SELECT idempotency.forget('code-rule')$$) AS rule;
DROP RULE owner_rule ON idempotency.processed_events;

-- (a superuser bypasses row security: the policy binds an owner that is not one)
CREATE ROLE regress_idem_tabowner;
ALTER TABLE idempotency.leases OWNER TO regress_idem_tabowner;
ALTER TABLE idempotency.leases ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_policy ON idempotency.leases
    USING (public.owner_bool(key)) WITH CHECK (public.owner_bool(key));
INSERT INTO idempotency.leases (key, token, fencing_token, acquired_at, expires_at)
    VALUES ('code-policy', gen_random_uuid(), 1, now(), 'infinity');
SELECT pg_temp.hijack_try($$SELECT idempotency.lease_status('code-policy')$$) AS policy_read;
SELECT pg_temp.hijack_try($$SELECT idempotency.lease_release('code-policy')$$) AS policy_write;
DROP POLICY owner_policy ON idempotency.leases;
ALTER TABLE idempotency.leases DISABLE ROW LEVEL SECURITY, NO FORCE ROW LEVEL SECURITY;
ALTER TABLE idempotency.leases OWNER TO CURRENT_USER;
DROP ROLE regress_idem_tabowner;

CREATE TABLE public.events_child () INHERITS (idempotency.processed_events);
INSERT INTO public.events_child (owner, scope, key, status, expires_at)
    VALUES ('regress_idem_hijack', '', 'code-child', 'completed', 'infinity');
CREATE FUNCTION public.owner_child() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM lower('child');
    RETURN OLD;
END $$;
CREATE TRIGGER owner_child BEFORE DELETE ON public.events_child
    FOR EACH ROW EXECUTE FUNCTION public.owner_child();
SELECT pg_temp.hijack_try($$SELECT idempotency.forget('code-child')$$) AS inheritance_child;
SELECT key FROM public.events_child;
DROP TABLE public.events_child;
DROP FUNCTION public.owner_child();

-- with all of it gone, the same calls run as before
SELECT pg_temp.hijack_try($$SELECT idempotency.mark_processed('code-none')$$) AS no_code;
SELECT count(*) AS written FROM idempotency.processed_events WHERE key LIKE 'code-%';
DROP FUNCTION public.owner_text(text);
DROP FUNCTION public.owner_bool(text);
DELETE FROM idempotency.processed_events;
TRUNCATE idempotency.leases;
DROP SCHEMA regress_hijack CASCADE;

---------------------------------------------------------------------------
-- mutex_lock_here() and mutex_holders_here() are the statements that a
-- distributed mutex_lock() and mutex_holders() send, run as the owner of
-- idempotency.mutex_slots: called directly by another role they are
-- refused (a REVOKE EXECUTE on mutex_lock() must not leave them open).
---------------------------------------------------------------------------
SET ROLE regress_idem_hijack;
SELECT pg_temp.try($$SELECT idempotency.mutex_lock_here(0, 42, false, 0)$$);
SELECT pg_temp.try($$SELECT * FROM idempotency.mutex_holders_here(0, 42)$$);
RESET ROLE;
SELECT idempotency.mutex_lock_here(0, 42, false, 0) AS owner_may;
SELECT count(*) AS holders FROM idempotency.mutex_holders_here(0, 42);
DROP ROLE regress_idem_hijack;

---------------------------------------------------------------------------
-- The functions switch to the tables' owner only while the schema belongs
-- to a superuser (whoever owns it could swap the tables under their
-- names).  Given to another role, the schema makes them run as the caller,
-- who holds no privilege on the tables: 42501, until a superuser owns it
-- again; mutexes do not use the tables.
---------------------------------------------------------------------------
CREATE ROLE regress_idem_nsowner;
CREATE ROLE regress_idem_caller;
ALTER SCHEMA idempotency OWNER TO regress_idem_nsowner;
SET ROLE regress_idem_caller;
SELECT pg_temp.try($$SELECT idempotency.mark_processed('nsowner')$$);
SELECT pg_temp.try($$SELECT idempotency.lease_acquire('nsowner')$$);
SELECT idempotency.mutex_try_lock('nsowner') AS mutex_works;
RESET ROLE;
ALTER SCHEMA idempotency OWNER TO CURRENT_USER;
SET ROLE regress_idem_caller;
SELECT idempotency.mark_processed('nsowner') AS marked_again;
RESET ROLE;
DELETE FROM idempotency.processed_events WHERE key = 'nsowner';
DROP ROLE regress_idem_nsowner;
DROP ROLE regress_idem_caller;
