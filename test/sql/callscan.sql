--
-- A call of idempotent_upsert, get_or_create or update_or_create in FROM
-- runs as the extension's custom scan ("IdempotencyCall"), not as a
-- Function Scan: the same rows, the same number of calls, the same
-- errors.  Where the query needs the call's whole row, WITH ORDINALITY or
-- ROWS FROM several functions, or with idempotency.call_scan off, it stays
-- a Function Scan.
--
\set VERBOSITY terse

CREATE TABLE cs (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE,
                 gone text, name text, n int);
ALTER TABLE cs DROP COLUMN gone;
CREATE TABLE outer3 AS SELECT g FROM generate_series(1, 3) g;
ANALYZE outer3;

-- How many times did the statement call get_or_create?  (Counted by the
-- function statistics of the current transaction.)
CREATE FUNCTION calls_of(stmt text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    before bigint;
    after bigint;
BEGIN
    SELECT coalesce(sum(calls), 0) INTO before FROM pg_stat_xact_user_functions
     WHERE schemaname = 'idempotency' AND funcname = 'get_or_create';
    EXECUTE stmt;
    SELECT coalesce(sum(calls), 0) INTO after FROM pg_stat_xact_user_functions
     WHERE schemaname = 'idempotency' AND funcname = 'get_or_create';
    RETURN after - before;
END $$;
SET track_functions = 'all';

EXPLAIN (VERBOSE, COSTS OFF)
SELECT * FROM idempotency.idempotent_upsert(NULL::cs, jsonb_build_object('email', 'a@x'::text, 'name', 'Ann'::text));
EXPLAIN (COSTS OFF)
SELECT created FROM idempotency.get_or_create(NULL::cs, '{"email": "a@x"}') WHERE created;
-- the rows, a dropped column in the table
SELECT * FROM idempotency.idempotent_upsert(NULL::cs, jsonb_build_object('email', 'a@x'::text, 'name', 'Ann'::text));
SELECT * FROM idempotency.idempotent_upsert(NULL::cs, '{"email": "a@x", "name": "other"}');
SELECT (item).id, (item).email, (item).name, created
  FROM idempotency.get_or_create(NULL::cs, '{"email": "b@x", "n": 2}');
SELECT (item).email, (item).n, created
  FROM idempotency.update_or_create(NULL::cs, '{"email": "b@x", "n": 3}');
-- a qual on the call's columns
SELECT created FROM idempotency.get_or_create(NULL::cs, '{"email": "a@x"}') WHERE created;
SELECT count(*) FROM idempotency.get_or_create(NULL::cs, '{"email": "a@x"}') WHERE NOT created;

-- Rescanned without a changed parameter (the call in a subquery that is
-- run again for every outer row, referring to none of its values): one
-- call, its row every time, as a Function Scan rewinds its result instead
-- of calling again.
EXPLAIN (COSTS OFF)
SELECT o.g, s.created
  FROM outer3 o, LATERAL (SELECT u.created, o.g AS og
                            FROM idempotency.get_or_create(NULL::cs, '{"email": "c@x"}') u OFFSET 0) s;
BEGIN;
SELECT calls_of($$SELECT o.g, s.created
                    FROM outer3 o, LATERAL (SELECT u.created, o.g AS og
                                              FROM idempotency.get_or_create(NULL::cs, '{"email": "c@x"}') u OFFSET 0) s$$) AS calls;
COMMIT;
SELECT o.g, s.created
  FROM outer3 o, LATERAL (SELECT u.created, o.g AS og
                            FROM idempotency.get_or_create(NULL::cs, '{"email": "d@x"}') u OFFSET 0) s
 ORDER BY o.g;
SELECT count(*) FROM cs WHERE email IN ('c@x', 'd@x');

-- A lateral reference: one call per outer row.
EXPLAIN (VERBOSE, COSTS OFF)
SELECT o.g, (u.item).email, u.created
  FROM outer3 o, idempotency.get_or_create(NULL::cs, jsonb_build_object('email', 'l' || o.g)) u;
BEGIN;
SELECT calls_of($$SELECT o.g, (u.item).email, u.created
                    FROM outer3 o, idempotency.get_or_create(NULL::cs, jsonb_build_object('email', 'l' || o.g)) u$$) AS calls;
COMMIT;
SELECT o.g, (u.item).email, u.created
  FROM outer3 o, idempotency.get_or_create(NULL::cs, jsonb_build_object('email', 'm' || (o.g % 2))) u
 ORDER BY o.g;

-- A scrollable cursor reads the row backwards (through a Material node).
BEGIN;
DECLARE c SCROLL CURSOR FOR SELECT email FROM idempotency.idempotent_upsert(NULL::cs, '{"email": "a@x"}');
FETCH c;
FETCH PRIOR c;
FETCH NEXT c;
COMMIT;

-- Function Scans: the whole row, WITH ORDINALITY, ROWS FROM, the setting.
EXPLAIN (COSTS OFF) SELECT u FROM idempotency.idempotent_upsert(NULL::cs, '{"email": "a@x"}') u;
SELECT u.email FROM idempotency.idempotent_upsert(NULL::cs, '{"email": "a@x"}') u;
EXPLAIN (COSTS OFF) SELECT * FROM idempotency.idempotent_upsert(NULL::cs, '{"email": "a@x"}') WITH ORDINALITY;
EXPLAIN (COSTS OFF) SELECT * FROM ROWS FROM (idempotency.idempotent_upsert(NULL::cs, '{"email": "a@x"}'), generate_series(1, 2));
SET idempotency.call_scan = off;
EXPLAIN (COSTS OFF) SELECT * FROM idempotency.idempotent_upsert(NULL::cs, '{"email": "a@x"}');
SELECT email FROM idempotency.idempotent_upsert(NULL::cs, '{"email": "a@x"}');
RESET idempotency.call_scan;
-- a call in the select list is no scan at all
SELECT (idempotency.get_or_create(NULL::cs, '{"email": "a@x"}')).created;

-- EXECUTE privilege is checked as for any call.
CREATE ROLE cs_user;
GRANT USAGE ON SCHEMA idempotency TO cs_user;
GRANT SELECT, INSERT ON cs TO cs_user;
REVOKE EXECUTE ON FUNCTION idempotency.get_or_create(anyelement, jsonb, text[]) FROM PUBLIC;
SET ROLE cs_user;
SELECT created FROM idempotency.get_or_create(NULL::cs, '{"email": "a@x"}');
RESET ROLE;
GRANT EXECUTE ON FUNCTION idempotency.get_or_create(anyelement, jsonb, text[]) TO PUBLIC;
SET ROLE cs_user;
SELECT created FROM idempotency.get_or_create(NULL::cs, '{"email": "a@x"}');
RESET ROLE;
REVOKE ALL ON cs FROM cs_user;
REVOKE USAGE ON SCHEMA idempotency FROM cs_user;
DROP ROLE cs_user;

-- The errors of the call, from inside the scan.
SELECT * FROM idempotency.idempotent_upsert(NULL::cs, '{"email": null}');
SELECT * FROM idempotency.idempotent_upsert(NULL::cs, '{"nope": 1}');
-- a first argument that is no row type: the function's error, from a
-- Function Scan
EXPLAIN (COSTS OFF) SELECT * FROM idempotency.idempotent_upsert('x'::text, '{}');
SELECT * FROM idempotency.idempotent_upsert('x'::text, '{}');
SELECT * FROM idempotency.get_or_create(NULL::int, '{}');

-- A prepared statement planned again after its table's columns changed
-- (a custom plan is made from the statement as it was analyzed): the plan
-- keeps the columns the statement uses, and the call raises 42804 when it
-- runs (it raised XX000, "variable not found in subplan target list", when
-- planned), whether the column the statement uses was dropped, is used in
-- a WHERE clause, or came back with another type.  Under a Function Scan
-- the executor raises its own error (42703, the attribute was dropped).
CREATE TABLE cs_ddl (k int PRIMARY KEY, v text, w text);
SET plan_cache_mode = force_custom_plan;
PREPARE ddl_all(int) AS
    SELECT * FROM idempotency.idempotent_upsert(NULL::cs_ddl, jsonb_build_object('k', $1));
PREPARE ddl_where(int) AS
    SELECT k FROM idempotency.idempotent_upsert(NULL::cs_ddl, jsonb_build_object('k', $1))
     WHERE w IS NULL;
EXECUTE ddl_all(1);
EXECUTE ddl_where(1);
ALTER TABLE cs_ddl DROP COLUMN v;
EXECUTE ddl_all(1);
ALTER TABLE cs_ddl DROP COLUMN w;
EXECUTE ddl_where(1);
ALTER TABLE cs_ddl ADD COLUMN w int;
EXECUTE ddl_where(1);
SET idempotency.call_scan = off;
EXECUTE ddl_all(1);
EXECUTE ddl_where(1);
RESET idempotency.call_scan;
DEALLOCATE ddl_all;
DEALLOCATE ddl_where;
RESET plan_cache_mode;
DROP TABLE cs_ddl;

-- idempotent_upsert returns its table's own rows: the plan scans the call
-- as that table ("on <table>" in EXPLAIN, with the call's alias), which it
-- locks when planned, and a cached plan is made again when the table
-- changes.  A column the statement does not use, added or dropped, changes
-- nothing; a column it uses, retyped to a binary-compatible type, is read
-- as before; dropped, the call raises 42804 as above, from the plan made
-- again for the table as it is now.
CREATE TABLE cs_gen (k int PRIMARY KEY, v text, w text);
SET plan_cache_mode = force_generic_plan;
PREPARE gen(int) AS
    SELECT k, v FROM idempotency.idempotent_upsert(NULL::cs_gen, jsonb_build_object('k', $1, 'v', 'x' || $1));
EXPLAIN (COSTS OFF) EXECUTE gen(1);
EXECUTE gen(1);
ALTER TABLE cs_gen ADD COLUMN z int;
EXECUTE gen(2);
ALTER TABLE cs_gen DROP COLUMN w;
EXECUTE gen(3);
ALTER TABLE cs_gen ALTER COLUMN v TYPE varchar(10);
EXECUTE gen(4);
ALTER TABLE cs_gen DROP COLUMN v;
EXECUTE gen(5);
DEALLOCATE gen;
RESET plan_cache_mode;
SELECT * FROM cs_gen ORDER BY k;
BEGIN;
EXPLAIN (COSTS OFF)
SELECT * FROM idempotency.idempotent_upsert(NULL::cs_gen, '{"k": 1}');
SELECT mode FROM pg_locks
 WHERE relation = 'cs_gen'::regclass AND pid = pg_backend_pid();
COMMIT;
-- beside the table itself, under an alias
EXPLAIN (COSTS OFF)
SELECT u.k, c.k
  FROM idempotency.idempotent_upsert(NULL::cs_gen, '{"k": 1}') u, cs_gen c
 WHERE c.k < 3;
SELECT u.k, c.k
  FROM idempotency.idempotent_upsert(NULL::cs_gen, '{"k": 1}') u, cs_gen c
 WHERE c.k < 3 ORDER BY c.k;
-- a partitioned table
CREATE TABLE cs_part (k int PRIMARY KEY, v text) PARTITION BY RANGE (k);
CREATE TABLE cs_part1 PARTITION OF cs_part FOR VALUES FROM (0) TO (100);
EXPLAIN (COSTS OFF)
SELECT * FROM idempotency.idempotent_upsert(NULL::cs_part, '{"k": 5, "v": "p"}');
SELECT * FROM idempotency.idempotent_upsert(NULL::cs_part, '{"k": 5, "v": "p"}');
SELECT tableoid::regclass, * FROM cs_part;
-- The function takes the table the executor opened for the scan instead of
-- opening it again: also when its insert fires a trigger that makes such a
-- call of its own on another table, and a call refused before it took the
-- table leaves nothing behind for the next call.
CREATE TABLE cs_log (k int PRIMARY KEY, by_trigger boolean DEFAULT true);
CREATE FUNCTION cs_gen_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM * FROM idempotency.idempotent_upsert(NULL::cs_log, jsonb_build_object('k', NEW.k));
    RETURN NEW;
END $$;
CREATE TRIGGER cs_gen_log AFTER INSERT ON cs_gen
    FOR EACH ROW EXECUTE FUNCTION cs_gen_log();
SELECT * FROM idempotency.idempotent_upsert(NULL::cs_gen, '{"k": 7}');
SELECT * FROM cs_log;
BEGIN READ ONLY;
SELECT * FROM idempotency.idempotent_upsert(NULL::cs_gen, '{"k": 8}');
ROLLBACK;
SELECT idempotency.idempotent_upsert(NULL::cs_log, '{"k": 8}');
SELECT * FROM idempotency.idempotent_upsert(NULL::cs_gen, '{"k": 8}');
SELECT * FROM cs_log ORDER BY k;
DROP TRIGGER cs_gen_log ON cs_gen;
DROP FUNCTION cs_gen_log();
DROP TABLE cs_log;
-- the row type of a view or of a composite type names no table: the call
-- is not scanned as one, and the function raises its error
CREATE VIEW cs_view AS SELECT k FROM cs_gen;
CREATE TYPE cs_type AS (k int);
EXPLAIN (COSTS OFF)
SELECT * FROM idempotency.idempotent_upsert(NULL::cs_view, '{"k": 1}');
SELECT * FROM idempotency.idempotent_upsert(NULL::cs_view, '{"k": 1}');
SELECT * FROM idempotency.idempotent_upsert(NULL::cs_type, '{"k": 1}');
DROP VIEW cs_view;
DROP TYPE cs_type;
DROP TABLE cs_gen, cs_part;

-- The scan looks the function up once per backend and forgets it when
-- pg_proc changes: made SECURITY DEFINER, the function runs as its owner
-- (the row's default current_user says who inserted it), and no longer
-- once the change is rolled back.
CREATE TABLE cs_who (k text PRIMARY KEY, who text NOT NULL DEFAULT current_user);
CREATE ROLE cs_caller;
GRANT USAGE ON SCHEMA idempotency TO cs_caller;
GRANT SELECT, INSERT ON cs_who TO cs_caller;
SET ROLE cs_caller;
EXPLAIN (COSTS OFF)
SELECT k, who = current_user AS by_caller
  FROM idempotency.idempotent_upsert(NULL::cs_who, '{"k": "a"}');
SELECT k, who = current_user AS by_caller
  FROM idempotency.idempotent_upsert(NULL::cs_who, '{"k": "a"}');
RESET ROLE;
BEGIN;
ALTER FUNCTION idempotency.idempotent_upsert(anyelement, jsonb, text[]) SECURITY DEFINER;
SET LOCAL ROLE cs_caller;
SELECT k, who = current_user AS by_caller
  FROM idempotency.idempotent_upsert(NULL::cs_who, '{"k": "b"}');
ROLLBACK;
SET ROLE cs_caller;
SELECT k, who = current_user AS by_caller
  FROM idempotency.idempotent_upsert(NULL::cs_who, '{"k": "c"}');
RESET ROLE;
DROP TABLE cs_who;
REVOKE USAGE ON SCHEMA idempotency FROM cs_caller;
DROP ROLE cs_caller;

RESET track_functions;
DROP FUNCTION calls_of(text);
DROP TABLE cs, outer3;
