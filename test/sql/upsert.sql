-- idempotent_upsert, get_or_create, update_or_create, idempotent_upsert_many:
-- key inference, type conversion, defaults, triggers,
-- partitions, privileges, RLS, refused relations, hostile identifiers,
-- cache invalidation and the zero-write hit path.

SET client_min_messages = warning;

---------------------------------------------------------------------------
-- Basics: primary key / single unique column inference
---------------------------------------------------------------------------
CREATE TABLE accounts (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    name       text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- inserted: defaults apply to absent columns
SELECT id, email, name, created_at IS NOT NULL AS has_default
  FROM idempotency.idempotent_upsert(NULL::accounts, '{"email": "a@example.com", "name": "A"}');
-- existing row returned unchanged (name stays "A")
SELECT id, email, name
  FROM idempotency.idempotent_upsert(NULL::accounts, '{"email": "a@example.com", "name": "other"}');
-- get_or_create reports created
SELECT (item).id, (item).email, created
  FROM idempotency.get_or_create(NULL::accounts, '{"email": "b@example.com"}');
SELECT (item).id, (item).email, created
  FROM idempotency.get_or_create(NULL::accounts, '{"email": "b@example.com"}');
-- the primary key alone is a key too
SELECT id, email FROM idempotency.idempotent_upsert(NULL::accounts, '{"id": 1}');
-- both id and email given: ambiguous, then explicit key_cols
SELECT id FROM idempotency.idempotent_upsert(NULL::accounts, '{"id": 1, "email": "a@example.com"}');
SELECT id, email FROM idempotency.idempotent_upsert(NULL::accounts,
    '{"id": 1, "email": "a@example.com"}', ARRAY['email']);
SELECT id, email FROM idempotency.idempotent_upsert(NULL::accounts,
    '{"id": 1, "email": "a@example.com"}', ARRAY['id']);
-- no key in vals
SELECT idempotency.idempotent_upsert(NULL::accounts, '{"name": "nobody"}');
-- key_cols that match no index, or name no column, or repeat one
SELECT idempotency.idempotent_upsert(NULL::accounts, '{"email": "a@example.com", "name": "A"}', ARRAY['name']);
SELECT idempotency.idempotent_upsert(NULL::accounts, '{"email": "a@example.com"}', ARRAY['nope']);
SELECT idempotency.idempotent_upsert(NULL::accounts, '{"email": "a@example.com"}', ARRAY['email', 'email']);
SELECT idempotency.idempotent_upsert(NULL::accounts, '{"email": "a@example.com"}', ARRAY[]::text[]);
SELECT idempotency.idempotent_upsert(NULL::accounts, '{"email": "a@example.com"}', ARRAY[NULL]::text[]);
-- an explicit key column missing from vals
SELECT idempotency.idempotent_upsert(NULL::accounts, '{"email": "a@example.com"}', ARRAY['id']);
-- bad vals
SELECT idempotency.idempotent_upsert(NULL::accounts, NULL);
SELECT idempotency.idempotent_upsert(NULL::accounts, '[1, 2]');
SELECT idempotency.idempotent_upsert(NULL::accounts, '"text"');
SELECT idempotency.idempotent_upsert(NULL::accounts, '{}');
SELECT idempotency.idempotent_upsert(NULL::accounts, '{"email": "x@example.com", "nope": 1}');
SELECT idempotency.idempotent_upsert(NULL::accounts, '{"email": "x@example.com", "ctid": "(0,1)"}');
-- NULL key
SELECT idempotency.idempotent_upsert(NULL::accounts, '{"email": null}');
-- a value the column type rejects
SELECT idempotency.idempotent_upsert(NULL::accounts, '{"id": "not a number"}');
-- nothing above inserted a row
SELECT id, email, name FROM accounts ORDER BY id;

---------------------------------------------------------------------------
-- Composite keys, NULLS NOT DISTINCT, other unique indexes
---------------------------------------------------------------------------
CREATE TABLE memberships (
    org   int NOT NULL,
    usr   int NOT NULL,
    role  text NOT NULL DEFAULT 'member',
    badge text UNIQUE,
    UNIQUE (org, usr)
);
SELECT * FROM idempotency.get_or_create(NULL::memberships, '{"usr": 2, "org": 1}');
SELECT * FROM idempotency.get_or_create(NULL::memberships, '{"org": 1, "usr": 2, "role": "admin"}');
SELECT * FROM idempotency.idempotent_upsert(NULL::memberships, '{"org": 1, "usr": 2}', '{usr,org}');
-- a unique violation on ANOTHER unique index is a real error
SELECT * FROM idempotency.idempotent_upsert(NULL::memberships, '{"org": 1, "usr": 3, "badge": "b1"}', '{org,usr}');
SELECT * FROM idempotency.idempotent_upsert(NULL::memberships, '{"org": 1, "usr": 4, "badge": "b1"}', '{org,usr}');

CREATE TABLE tags (name text, scope text, UNIQUE NULLS NOT DISTINCT (name, scope));
SELECT (item).*, created FROM idempotency.get_or_create(NULL::tags, '{"name": "t", "scope": null}');
SELECT (item).*, created FROM idempotency.get_or_create(NULL::tags, '{"name": "t", "scope": null}');
SELECT (item).*, created FROM idempotency.get_or_create(NULL::tags, '{"name": "t", "scope": "s"}');
SELECT * FROM idempotency.idempotent_upsert_many(NULL::tags,
    '[{"name": "t", "scope": null}, {"name": "u", "scope": null}, {"name": "u", "scope": null}]');
SELECT count(*) FROM tags;

-- partial, expression and deferrable unique indexes are no arbiters
CREATE TABLE odd_keys (a int, b text, c int, d int);
CREATE UNIQUE INDEX odd_partial ON odd_keys (a) WHERE a > 0;
CREATE UNIQUE INDEX odd_expr ON odd_keys (lower(b));
ALTER TABLE odd_keys ADD CONSTRAINT odd_deferrable UNIQUE (c) DEFERRABLE;
SELECT idempotency.idempotent_upsert(NULL::odd_keys, '{"a": 1, "b": "x", "c": 1}');
SELECT idempotency.idempotent_upsert(NULL::odd_keys, '{"c": 1}', '{c}');
CREATE UNIQUE INDEX odd_plain ON odd_keys (d);
SELECT idempotency.idempotent_upsert(NULL::odd_keys, '{"a": 1, "b": "x", "c": 1, "d": 7}');
DROP TABLE odd_keys;

---------------------------------------------------------------------------
-- Type conversion: exactly jsonb_populate_record's
---------------------------------------------------------------------------
CREATE TYPE upsert_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN upsert_pos AS int CHECK (VALUE > 0);
CREATE DOMAIN upsert_nn AS text NOT NULL DEFAULT 'dflt';
CREATE TYPE upsert_pair AS (x int, y text);
CREATE TABLE typed (
    k      text PRIMARY KEY,
    n      numeric(10, 2),
    ts     timestamptz,
    arr    int[],
    doc    jsonb,
    js     json,
    mood   upsert_mood,
    pos    upsert_pos,
    nn     upsert_nn,
    pair   upsert_pair,
    pairs  upsert_pair[],
    maybe  text DEFAULT 'default'
);
SET timezone = 'UTC';
SELECT * FROM idempotency.idempotent_upsert(NULL::typed, $$ {
    "k": "one", "n": 12.345, "ts": "2024-01-02 03:04:05+02", "arr": [1, 2, 3],
    "doc": {"a": [1, {"b": null}]}, "js": {"z": 1, "a": 2}, "mood": "happy", "pos": 5,
    "pair": {"x": 1, "y": "why"}, "pairs": [{"x": 2, "y": "b"}, {"x": 3}], "maybe": null
} $$);
-- the same conversion as jsonb_populate_record
SELECT t::text = r::text AS same_as_populate_record
  FROM typed t, jsonb_populate_record(NULL::typed, $$ {
    "k": "one", "n": 12.345, "ts": "2024-01-02 03:04:05+02", "arr": [1, 2, 3],
    "doc": {"a": [1, {"b": null}]}, "js": {"z": 1, "a": 2}, "mood": "happy", "pos": 5,
    "pair": {"x": 1, "y": "why"}, "pairs": [{"x": 2, "y": "b"}, {"x": 3}], "maybe": null,
    "nn": "dflt" } $$) r
 WHERE t.k = 'one';
-- absent domain-NOT-NULL column takes its default; explicit JSON null is NULL
SELECT k, nn, maybe FROM idempotency.idempotent_upsert(NULL::typed, '{"k": "two"}');
-- conversion errors: domain CHECK, enum, array, numeric overflow, domain NOT NULL
SELECT idempotency.idempotent_upsert(NULL::typed, '{"k": "bad", "pos": -1}');
SELECT idempotency.idempotent_upsert(NULL::typed, '{"k": "bad", "mood": "angry"}');
SELECT idempotency.idempotent_upsert(NULL::typed, '{"k": "bad", "arr": "nope"}');
SELECT idempotency.idempotent_upsert(NULL::typed, '{"k": "bad", "n": 123456789012}');
SELECT idempotency.idempotent_upsert(NULL::typed, '{"k": "bad", "nn": null}');
SELECT count(*) FROM typed;
-- all-text columns are converted without jsonb_populate_record when every
-- value is a JSON string or null; the same values as it gives, and other
-- JSON values (number, boolean, object, array) still go through it
CREATE TABLE texts (k text PRIMARY KEY, a text, b text);
SELECT r.k, r.a, r.b, p.a = r.a AND p.b IS NOT DISTINCT FROM r.b AS same_as_populate_record
  FROM (VALUES ('{"k": "s1", "a": "caf\u00e9 \"q\" \\ \n", "b": null}'::jsonb),
               ('{"k": "s2", "a": 5.50, "b": "x"}'), ('{"k": "s3", "a": true, "b": {"o": [1]}}'),
               ('{"k": "s4", "a": [1, "two"], "b": ""}')) AS v(j),
       LATERAL idempotency.idempotent_upsert(NULL::texts, v.j) AS r,
       LATERAL jsonb_populate_record(NULL::texts, v.j) AS p;
SELECT k, a, b FROM idempotency.idempotent_upsert_many(NULL::texts,
    '[{"k": "s1", "a": "other"}, {"k": "m1", "a": "new", "b": null}, {"k": "m2", "a": 7, "b": "n"}]');
DROP TABLE texts;

---------------------------------------------------------------------------
-- serial, identity, generated columns
---------------------------------------------------------------------------
CREATE TABLE gen (
    id    int GENERATED ALWAYS AS IDENTITY,
    id2   int GENERATED BY DEFAULT AS IDENTITY,
    code  text UNIQUE,
    price int,
    twice int GENERATED ALWAYS AS (price * 2) STORED
);
SELECT * FROM idempotency.idempotent_upsert(NULL::gen, '{"code": "c1", "price": 21}');
SELECT * FROM idempotency.idempotent_upsert(NULL::gen, '{"code": "c1", "price": 99}');
SELECT * FROM idempotency.idempotent_upsert(NULL::gen, '{"code": "c2", "id2": 40}');
SELECT idempotency.idempotent_upsert(NULL::gen, '{"code": "c3", "twice": 4}');
SELECT idempotency.idempotent_upsert(NULL::gen, '{"code": "c3", "id": 4}');
SELECT count(*) FROM gen;

---------------------------------------------------------------------------
-- Partitioned table, temp and unlogged tables, a dropped column
---------------------------------------------------------------------------
CREATE TABLE events (region text, ext_id int, body text, PRIMARY KEY (region, ext_id))
    PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
SELECT * FROM idempotency.idempotent_upsert(NULL::events, '{"region": "eu", "ext_id": 1, "body": "x"}');
SELECT (item).*, created FROM idempotency.get_or_create(NULL::events, '{"region": "us", "ext_id": 1}');
SELECT (item).*, created FROM idempotency.get_or_create(NULL::events, '{"region": "eu", "ext_id": 1}');
SELECT idempotency.idempotent_upsert(NULL::events, '{"region": "fr", "ext_id": 1}');
SELECT tableoid::regclass, * FROM events ORDER BY 1, 2, 3;

CREATE TEMP TABLE scratch (k int PRIMARY KEY, v text);
SELECT * FROM idempotency.idempotent_upsert(NULL::scratch, '{"k": 1, "v": "t"}');
SELECT * FROM idempotency.idempotent_upsert(NULL::pg_temp.scratch, '{"k": 1, "v": "u"}');
CREATE UNLOGGED TABLE fast (k int PRIMARY KEY, v text);
SELECT * FROM idempotency.idempotent_upsert(NULL::fast, '{"k": 1, "v": "u"}');
SELECT * FROM idempotency.idempotent_upsert(NULL::fast, '{"k": 1, "v": "w"}');

CREATE TABLE holes (a int, gone text, k int UNIQUE, v text);
ALTER TABLE holes DROP COLUMN gone;
ALTER TABLE holes DROP COLUMN a;
SELECT * FROM idempotency.idempotent_upsert(NULL::holes, '{"k": 1, "v": "one"}');
SELECT * FROM idempotency.idempotent_upsert(NULL::holes, '{"k": 1, "v": "two"}');
SELECT idempotency.idempotent_upsert(NULL::holes, '{"k": 2, "gone": "x"}');
SELECT * FROM idempotency.idempotent_upsert_many(NULL::holes, '[{"k": 3}, {"k": 1}]');

---------------------------------------------------------------------------
-- Triggers fire as for a plain INSERT (and not at all on a hit)
---------------------------------------------------------------------------
CREATE TABLE trig (k int PRIMARY KEY, v text, stamp text);
CREATE TABLE trig_log (what text);
CREATE FUNCTION trig_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.stamp := 'before:' || coalesce(NEW.v, ''); INSERT INTO trig_log VALUES (TG_OP || ' before ' || NEW.k); RETURN NEW; END $$;
CREATE FUNCTION trig_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO trig_log VALUES (TG_OP || ' after ' || NEW.k); RETURN NULL; END $$;
CREATE TRIGGER trig_b BEFORE INSERT OR UPDATE ON trig FOR EACH ROW EXECUTE FUNCTION trig_before();
CREATE TRIGGER trig_a AFTER INSERT OR UPDATE ON trig FOR EACH ROW EXECUTE FUNCTION trig_after();
SELECT * FROM idempotency.idempotent_upsert(NULL::trig, '{"k": 1, "v": "x"}');
SELECT * FROM idempotency.idempotent_upsert(NULL::trig, '{"k": 1, "v": "y"}');
SELECT (item).*, created FROM idempotency.update_or_create(NULL::trig, '{"k": 1, "v": "x"}');
SELECT (item).*, created FROM idempotency.update_or_create(NULL::trig, '{"k": 1, "v": "z"}');
SELECT * FROM trig_log;
-- a BEFORE trigger that suppresses the row: no endless loop, a clear error
CREATE FUNCTION trig_skip() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.k > 100 THEN RETURN NULL; END IF; RETURN NEW; END $$;
CREATE TRIGGER trig_s BEFORE INSERT ON trig FOR EACH ROW EXECUTE FUNCTION trig_skip();
SELECT idempotency.idempotent_upsert(NULL::trig, '{"k": 101}');
DROP TABLE trig, trig_log;
DROP FUNCTION trig_before(), trig_after(), trig_skip();

---------------------------------------------------------------------------
-- update_or_create
---------------------------------------------------------------------------
CREATE TABLE prefs (uid int PRIMARY KEY, theme text, extra json, pt point, n int);
SELECT (item).*, created FROM idempotency.update_or_create(NULL::prefs, '{"uid": 1, "theme": "dark", "extra": {"a": 1}, "pt": "(1,2)"}');
SELECT (item).*, created FROM idempotency.update_or_create(NULL::prefs, '{"uid": 1, "theme": "light"}');
SELECT (item).*, created FROM idempotency.update_or_create(NULL::prefs, '{"uid": 1, "theme": null}');
SELECT (item).*, created FROM idempotency.update_or_create(NULL::prefs, '{"uid": 1, "extra": {"a": 2}, "pt": "(3,4)"}');
-- only the key given: nothing to set
SELECT (item).*, created FROM idempotency.update_or_create(NULL::prefs, '{"uid": 1}');
SELECT * FROM prefs;

---------------------------------------------------------------------------
-- Zero writes when the row exists: no xid, no inserted/updated tuple
---------------------------------------------------------------------------
-- (the xact counters include this session's not yet reported earlier
-- transactions, so compare before and after)
BEGIN;
SELECT pg_stat_get_xact_tuples_inserted('accounts'::regclass) AS ins0,
       pg_stat_get_xact_tuples_updated('accounts'::regclass) AS upd0,
       pg_stat_get_xact_tuples_updated('prefs'::regclass) AS prefs0 \gset
SELECT id FROM idempotency.idempotent_upsert(NULL::accounts, '{"email": "a@example.com"}');
SELECT created FROM idempotency.get_or_create(NULL::accounts, '{"email": "a@example.com", "name": "zzz"}');
SELECT created FROM idempotency.update_or_create(NULL::prefs, '{"uid": 1, "extra": {"a": 2}, "pt": "(3,4)", "theme": null}');
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::accounts, '[{"email": "a@example.com"}, {"email": "b@example.com"}]');
SELECT txid_current_if_assigned() IS NULL AS no_xid,
       pg_stat_get_xact_tuples_inserted('accounts'::regclass) - :ins0 AS ins,
       pg_stat_get_xact_tuples_updated('accounts'::regclass) - :upd0 AS upd,
       pg_stat_get_xact_tuples_updated('prefs'::regclass) - :prefs0 AS prefs_upd;
COMMIT;
-- and a miss does write (the check above can fail)
BEGIN;
SELECT pg_stat_get_xact_tuples_inserted('accounts'::regclass) AS ins0 \gset
SELECT created FROM idempotency.get_or_create(NULL::accounts, '{"email": "c@example.com"}');
SELECT txid_current_if_assigned() IS NULL AS no_xid,
       pg_stat_get_xact_tuples_inserted('accounts'::regclass) - :ins0 AS ins;
ROLLBACK;

---------------------------------------------------------------------------
-- idempotent_upsert_many
---------------------------------------------------------------------------
CREATE TABLE items (id serial PRIMARY KEY, sku text UNIQUE NOT NULL, qty int DEFAULT 1);
SELECT * FROM idempotency.idempotent_upsert_many(NULL::items,
    '[{"sku": "b"}, {"sku": "a", "qty": 5}, {"sku": "b", "qty": 9}, {"sku": "c"}]');
-- input order, existing rows unchanged, a repeated key gives the same row
SELECT * FROM idempotency.idempotent_upsert_many(NULL::items,
    '[{"sku": "c"}, {"sku": "d"}, {"sku": "a"}, {"sku": "d"}]');
SELECT * FROM idempotency.idempotent_upsert_many(NULL::items, '[]');
SELECT * FROM idempotency.idempotent_upsert_many(NULL::items, '{"sku": "a"}');
SELECT * FROM idempotency.idempotent_upsert_many(NULL::items, '[{"sku": "a"}, 3]');
SELECT * FROM idempotency.idempotent_upsert_many(NULL::items, '[{"sku": "e"}, {"sku": null}]');
SELECT * FROM idempotency.idempotent_upsert_many(NULL::items, '[{"sku": "e"}, {"nope": 1}]');
SELECT * FROM items ORDER BY id;
-- 1000 at once, then again (all existing)
SELECT count(*), count(DISTINCT id) FROM idempotency.idempotent_upsert_many(NULL::items,
    (SELECT jsonb_agg(jsonb_build_object('sku', 'bulk' || g)) FROM generate_series(1, 1000) g));
SELECT count(*), count(DISTINCT id) FROM idempotency.idempotent_upsert_many(NULL::items,
    (SELECT jsonb_agg(jsonb_build_object('sku', 'bulk' || g)) FROM generate_series(1, 1000) g));
SELECT count(*) FROM items;
-- the set-based path: new and existing keys mixed, repeated keys (also
-- new ones), input order kept; a dropped column; a BEFORE INSERT trigger
-- that sets a non-key column (the row returned is the row stored)
CREATE TABLE batched (id serial PRIMARY KEY, gone int, k text UNIQUE NOT NULL, note text, n int DEFAULT 7);
ALTER TABLE batched DROP COLUMN gone;
CREATE FUNCTION batched_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.note := coalesce(NEW.note, 'by trigger ' || NEW.k);
    RETURN NEW;
END $$;
CREATE TRIGGER batched_note BEFORE INSERT ON batched FOR EACH ROW EXECUTE FUNCTION batched_note();
INSERT INTO batched (k, note) VALUES ('m', 'there before');
SELECT * FROM idempotency.idempotent_upsert_many(NULL::batched,
    '[{"k": "z"}, {"k": "m", "note": "ignored"}, {"k": "b"}, {"k": "z", "note": "dup"}, {"k": "a", "note": "given"}, {"k": "b"}]');
-- the same keys again: all existing, nothing inserted, no trigger
SELECT * FROM idempotency.idempotent_upsert_many(NULL::batched,
    '[{"k": "a"}, {"k": "b"}, {"k": "m"}, {"k": "z"}]');
SELECT id, k, note, n FROM batched ORDER BY id;
-- several key columns: inserted in the index's order (ids), returned in input order
CREATE TABLE batched2 (id serial PRIMARY KEY, a int, b text, v text, UNIQUE (a, b));
SELECT id, a, b FROM idempotency.idempotent_upsert_many(NULL::batched2,
    '[{"a": 2, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "x"}, {"a": 2, "b": "x"}]');
SELECT id, a, b FROM idempotency.idempotent_upsert_many(NULL::batched2,
    '[{"a": 1, "b": "x"}, {"a": 3, "b": "a"}, {"a": 2, "b": "x"}, {"a": 0, "b": "z"}]');
-- a column whose type has no array type (an array column): the statement
-- path, same answers
CREATE TABLE batched3 (id serial PRIMARY KEY, k text UNIQUE, tags int[]);
SELECT id, k, tags FROM idempotency.idempotent_upsert_many(NULL::batched3,
    '[{"k": "b", "tags": [1, 2]}, {"k": "a", "tags": []}, {"k": "b", "tags": [3]}]');
SELECT id, k, tags FROM idempotency.idempotent_upsert_many(NULL::batched3,
    '[{"k": "a", "tags": [9]}, {"k": "c", "tags": null}, {"k": "b", "tags": [9]}]');
-- elements naming different columns whose names, in the order jsonb keeps
-- an object's keys (by length, then bytes), run together into the same
-- bytes ("k" "ab" "cdef", "k" "abc" "def"): each element's values go to its
-- own columns; a number for a text column is converted as
-- jsonb_populate_record converts it
CREATE TABLE batched4 (k text PRIMARY KEY, ab text, cdef text, abc text, def text);
SELECT k, ab, cdef, abc, def FROM idempotency.idempotent_upsert_many(NULL::batched4,
    '[{"k": "1", "ab": "x", "cdef": "y"}, {"k": "2", "abc": "x", "def": "y"},
      {"k": "3", "ab": "p", "cdef": "q"}, {"k": "4", "abc": "p", "def": null},
      {"k": "5", "ab": 7, "cdef": "z"}, {"k": "6", "cdef": "r", "ab": "s"}]');
SELECT k, ab, cdef, abc, def FROM batched4 ORDER BY k;
DROP TABLE batched4;
-- objects of more than 32 keys (jsonb stores every 32nd key's position
-- instead of its length): elements naming all 40 columns, or 39 of them,
-- each value in its column
CREATE TABLE batched5 (k text PRIMARY KEY);
SELECT format('ALTER TABLE batched5 %s',
              string_agg(format('ADD COLUMN c%s text', g), ', ')) FROM generate_series(1, 39) g \gexec
WITH el AS (
    SELECT e, jsonb_object_agg(col, CASE WHEN col = 'k' THEN 'k' || e ELSE col || '-' || e END) AS o
      FROM generate_series(1, 4) e,
           LATERAL (SELECT 'k' UNION ALL SELECT 'c' || g FROM generate_series(1, 39) g
                     WHERE e < 3 OR g <> 17) AS cols(col)
     GROUP BY e)
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::batched5,
    (SELECT jsonb_agg(o ORDER BY e) FROM el));
SELECT k, c1, c16, c17, c18, c32, c33, c39 FROM batched5 ORDER BY k;
SELECT count(*) AS misplaced FROM batched5 b, jsonb_each_text(to_jsonb(b)) AS v(col, val)
 WHERE col <> 'k' AND val IS DISTINCT FROM (CASE WHEN col = 'c17' AND b.k IN ('k3', 'k4')
                                                 THEN NULL ELSE col || '-' || substr(b.k, 2) END);
DROP TABLE batched5;
-- new keys of a batch are sorted under the key index's collation, a libc
-- one that is not "C" (its comparisons use buffers that grow with the
-- keys): keys longer than those buffers, inserted in that order
CREATE COLLATION upsert_c_utf8 (provider = libc, locale = 'C.UTF-8');
CREATE TABLE batched6 (id serial PRIMARY KEY, k text NOT NULL);
CREATE UNIQUE INDEX batched6_k ON batched6 (k COLLATE upsert_c_utf8);
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::batched6,
    (SELECT jsonb_agg(jsonb_build_object('k', repeat(chr(100 - g), 3000) || g) ORDER BY g)
       FROM generate_series(1, 3) g));
SELECT id, left(k, 3) AS k_starts, length(k) FROM batched6 ORDER BY id;
DROP TABLE batched6;
DROP COLLATION upsert_c_utf8;
-- a unique violation on another unique index is raised, nothing is kept
CREATE UNIQUE INDEX batched_note_key ON batched (note);
\set VERBOSITY terse
SELECT k FROM idempotency.idempotent_upsert_many(NULL::batched, '[{"k": "y", "note": "given"}]', '{k}');
\set VERBOSITY default
SELECT count(*) FROM batched;
DROP TABLE batched, batched2, batched3;
DROP FUNCTION batched_note();

---------------------------------------------------------------------------
-- The hit path returns whole rows: TOASTed values, values of columns added
-- later (stored as "missing" in old tuples), inheritance children
---------------------------------------------------------------------------
CREATE TABLE blobs (k int PRIMARY KEY, big text);
INSERT INTO blobs SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 5000) g;
ALTER TABLE blobs ADD COLUMN later text DEFAULT 'filled';
SELECT k, length(big), md5(big) = (SELECT md5(string_agg(md5(g::text), '')) FROM generate_series(1, 5000) g) AS same, later
  FROM idempotency.idempotent_upsert(NULL::blobs, '{"k": 1}');
SELECT (item).k, length((item).big), (item).later, created
  FROM idempotency.get_or_create(NULL::blobs, '{"k": 1, "big": "x"}');
DROP TABLE blobs;
-- a row in an inheritance child is found like a plain SELECT finds it
CREATE TABLE parent_t (k int PRIMARY KEY, v text);
CREATE TABLE child_t () INHERITS (parent_t);
INSERT INTO child_t VALUES (5, 'in child');
SELECT * FROM idempotency.idempotent_upsert(NULL::parent_t, '{"k": 5, "v": "new"}');
SELECT tableoid::regclass, * FROM parent_t;
DROP TABLE parent_t CASCADE;

---------------------------------------------------------------------------
-- Refused relations
---------------------------------------------------------------------------
CREATE VIEW accounts_v AS SELECT * FROM accounts;
CREATE MATERIALIZED VIEW accounts_mv AS SELECT * FROM accounts;
CREATE FOREIGN DATA WRAPPER upsert_dummy_fdw;
CREATE SERVER upsert_dummy_srv FOREIGN DATA WRAPPER upsert_dummy_fdw;
CREATE FOREIGN TABLE accounts_ft (email text) SERVER upsert_dummy_srv;
CREATE TYPE upsert_plain AS (email text);
SELECT idempotency.idempotent_upsert(NULL::accounts_v, '{"email": "a@example.com"}');
SELECT idempotency.idempotent_upsert(NULL::accounts_mv, '{"email": "a@example.com"}');
SELECT idempotency.idempotent_upsert(NULL::accounts_ft, '{"email": "a@example.com"}');
SELECT idempotency.idempotent_upsert(NULL::upsert_plain, '{"email": "a@example.com"}');
SELECT idempotency.idempotent_upsert(NULL::int, '{"email": "a@example.com"}');
SELECT idempotency.idempotent_upsert(NULL::record, '{"email": "a@example.com"}');
SELECT idempotency.get_or_create(NULL::accounts_v, '{"email": "a@example.com"}');
DROP VIEW accounts_v;
DROP MATERIALIZED VIEW accounts_mv;
DROP FOREIGN TABLE accounts_ft;
DROP SERVER upsert_dummy_srv;
DROP FOREIGN DATA WRAPPER upsert_dummy_fdw;
DROP TYPE upsert_plain;

---------------------------------------------------------------------------
-- Hostile identifiers
---------------------------------------------------------------------------
CREATE SCHEMA "we;ird ""schema""";
CREATE TABLE "we;ird ""schema"""."select ""x""; DROP TABLE accounts; --" (
    "Ünïcødé key" text PRIMARY KEY,
    "order" int,
    "a b;c" text DEFAULT 'd"q',
    "idem_row" text
);
SELECT * FROM idempotency.idempotent_upsert(NULL::"we;ird ""schema"""."select ""x""; DROP TABLE accounts; --",
    '{"Ünïcødé key": "k''1", "order": 1, "idem_row": "r"}');
SELECT * FROM idempotency.idempotent_upsert_many(NULL::"we;ird ""schema"""."select ""x""; DROP TABLE accounts; --",
    '[{"Ünïcødé key": "k''1"}, {"Ünïcødé key": "k2", "order": 2}]');
SELECT (item).*, created FROM idempotency.update_or_create(NULL::"we;ird ""schema"""."select ""x""; DROP TABLE accounts; --",
    '{"Ünïcødé key": "k2", "order": 3, "a b;c": "); DROP TABLE accounts; --"}');
SELECT count(*) AS accounts_survived FROM accounts;
DROP SCHEMA "we;ird ""schema""" CASCADE;

---------------------------------------------------------------------------
-- A key too large for a btree entry: the index's own error, no crash
---------------------------------------------------------------------------
CREATE TABLE bigkey (k text PRIMARY KEY);
SELECT idempotency.idempotent_upsert(NULL::bigkey,
    jsonb_build_object('k', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g)));
DROP TABLE bigkey;

---------------------------------------------------------------------------
-- Cache invalidation: the table changes under the cached plans
---------------------------------------------------------------------------
CREATE TABLE morph (k int PRIMARY KEY, v text);
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"k": 1, "v": "a"}');
ALTER TABLE morph ADD COLUMN w text DEFAULT 'w';
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"k": 1, "v": "a"}');
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"k": 2, "v": "b"}');
ALTER TABLE morph DROP COLUMN v;
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"k": 2}');
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"k": 3, "v": "b"}');
ALTER TABLE morph RENAME COLUMN w TO v2;
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"k": 3, "v2": "c"}');
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"k": 4, "w": "c"}');
-- an index created: {"k", "v2"} becomes ambiguous; dropped: fine again
DELETE FROM morph WHERE k < 3;
CREATE UNIQUE INDEX morph_v2 ON morph (v2);
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"k": 3, "v2": "c"}');
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"v2": "c"}');
DROP INDEX morph_v2;
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"k": 3, "v2": "c"}');
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"v2": "c"}');
-- the key changes type
ALTER TABLE morph ALTER COLUMN k TYPE text;
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"k": "3x"}');
-- dropped and re-created under the same name
DROP TABLE morph;
CREATE TABLE morph (id text, k int UNIQUE, note text DEFAULT 'new');
SELECT * FROM idempotency.idempotent_upsert(NULL::morph, '{"k": 1}');
SELECT * FROM idempotency.idempotent_upsert_many(NULL::morph, '[{"k": 1}, {"k": 2}]');
DROP TABLE morph;

---------------------------------------------------------------------------
-- Privileges and column privileges: the caller's own
---------------------------------------------------------------------------
CREATE ROLE regress_upsert_user;
CREATE ROLE regress_upsert_other;
GRANT USAGE ON SCHEMA public TO regress_upsert_user, regress_upsert_other;
CREATE TABLE guarded (id serial PRIMARY KEY, email text UNIQUE, name text, secret text);
INSERT INTO guarded (email, secret) VALUES ('old@example.com', 's');
SET ROLE regress_upsert_user;
SELECT idempotency.idempotent_upsert(NULL::guarded, '{"email": "old@example.com"}');
RESET ROLE;
GRANT SELECT, INSERT (email) ON guarded TO regress_upsert_user;
GRANT USAGE ON SEQUENCE guarded_id_seq TO regress_upsert_user;
SET ROLE regress_upsert_user;
SELECT id, email FROM idempotency.idempotent_upsert(NULL::guarded, '{"email": "old@example.com"}');
SELECT id, email FROM idempotency.idempotent_upsert(NULL::guarded, '{"email": "new@example.com"}');
-- no INSERT privilege on column name
SELECT id, email FROM idempotency.idempotent_upsert(NULL::guarded, '{"email": "new2@example.com", "name": "n"}');
-- update_or_create needs UPDATE
SELECT (item).id, created FROM idempotency.update_or_create(NULL::guarded, '{"email": "old@example.com", "name": "n"}');
RESET ROLE;
GRANT UPDATE (name) ON guarded TO regress_upsert_user;
GRANT INSERT (name) ON guarded TO regress_upsert_user;
SET ROLE regress_upsert_user;
SELECT (item).name, created FROM idempotency.update_or_create(NULL::guarded, '{"email": "old@example.com", "name": "n"}');
RESET ROLE;
-- SELECT on some columns only: the row cannot be returned
REVOKE SELECT ON guarded FROM regress_upsert_user;
GRANT SELECT (id, email) ON guarded TO regress_upsert_user;
SET ROLE regress_upsert_user;
SELECT id FROM idempotency.idempotent_upsert(NULL::guarded, '{"email": "old@example.com"}');
RESET ROLE;

---------------------------------------------------------------------------
-- Row level security: a hidden existing row is 42501, never a second row
---------------------------------------------------------------------------
CREATE TABLE notes (id serial PRIMARY KEY, slug text UNIQUE, author name DEFAULT current_user, body text);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes_sel ON notes FOR SELECT USING (author = current_user);
CREATE POLICY notes_ins ON notes FOR INSERT WITH CHECK (author = current_user);
CREATE POLICY notes_upd ON notes FOR UPDATE USING (author = current_user AND body IS DISTINCT FROM 'frozen');
GRANT SELECT, INSERT, UPDATE ON notes TO regress_upsert_user, regress_upsert_other;
GRANT USAGE ON SEQUENCE notes_id_seq TO regress_upsert_user, regress_upsert_other;
SET ROLE regress_upsert_other;
SELECT slug, author FROM idempotency.idempotent_upsert(NULL::notes, '{"slug": "theirs"}');
SELECT slug, author FROM idempotency.idempotent_upsert(NULL::notes, '{"slug": "frozen", "body": "frozen"}');
SET ROLE regress_upsert_user;
SELECT slug, author FROM idempotency.idempotent_upsert(NULL::notes, '{"slug": "mine"}');
SELECT slug, author FROM idempotency.idempotent_upsert(NULL::notes, '{"slug": "mine"}');
SELECT slug FROM idempotency.idempotent_upsert(NULL::notes, '{"slug": "theirs"}');
SELECT (item).slug FROM idempotency.get_or_create(NULL::notes, '{"slug": "theirs"}');
SELECT (item).slug FROM idempotency.update_or_create(NULL::notes, '{"slug": "theirs", "body": "b"}');
SELECT slug FROM idempotency.idempotent_upsert_many(NULL::notes, '[{"slug": "mine"}, {"slug": "theirs"}]');
-- WITH CHECK applies to the insert
SELECT slug FROM idempotency.idempotent_upsert(NULL::notes, '{"slug": "forged", "author": "regress_upsert_other"}');
RESET ROLE;
-- visible but not updatable: update_or_create refuses instead of claiming success
UPDATE notes SET author = 'regress_upsert_user' WHERE slug = 'frozen';
SET ROLE regress_upsert_user;
SELECT (item).slug, (item).body FROM idempotency.update_or_create(NULL::notes, '{"slug": "frozen", "body": "thawed"}');
SELECT (item).slug, (item).body, created FROM idempotency.update_or_create(NULL::notes, '{"slug": "frozen", "body": "frozen"}');
RESET ROLE;
SELECT slug, author, body FROM notes ORDER BY id;

DROP TABLE notes, guarded;
DROP OWNED BY regress_upsert_user, regress_upsert_other;
DROP ROLE regress_upsert_user, regress_upsert_other;

---------------------------------------------------------------------------
-- Batches of new keys: a unique violation on another index is still an
-- error, with nothing inserted; many batches in one transaction never
-- overflow the backend's cache of subtransaction xids
---------------------------------------------------------------------------
CREATE TABLE twokeys (id serial PRIMARY KEY, k text UNIQUE NOT NULL, code int UNIQUE);
INSERT INTO twokeys (k, code) VALUES ('old', 1);
SELECT k, code FROM idempotency.idempotent_upsert_many(NULL::twokeys,
    '[{"k": "n1", "code": 2}, {"k": "n2", "code": 1}, {"k": "n3", "code": 3}]', '{k}');
SELECT k, code FROM twokeys ORDER BY k;
SELECT k, code FROM idempotency.idempotent_upsert_many(NULL::twokeys,
    '[{"k": "n1", "code": 2}, {"k": "old", "code": 1}, {"k": "n3", "code": 3}]', '{k}');
BEGIN;
SELECT sum(n) FROM generate_series(1, 70) g,
    LATERAL (SELECT count(*) AS n FROM idempotency.idempotent_upsert_many(NULL::twokeys,
        jsonb_build_array(jsonb_build_object('k', 'x' || g || 'a'), jsonb_build_object('k', 'x' || g || 'b')), '{k}')) c;
DO $$
DECLARE
    overflowed boolean;
BEGIN
    -- the function exists from PostgreSQL 16 on
    IF to_regproc('pg_catalog.pg_stat_get_backend_subxact') IS NOT NULL THEN
        EXECUTE 'SELECT x.subxact_overflowed FROM pg_catalog.pg_stat_get_backend_idset() b,
                   LATERAL pg_catalog.pg_stat_get_backend_subxact(b) x
                 WHERE pg_catalog.pg_stat_get_backend_pid(b) = pg_catalog.pg_backend_pid()'
            INTO overflowed;
        IF overflowed THEN
            RAISE EXCEPTION 'the subtransaction xid cache overflowed';
        END IF;
    END IF;
END $$;
SELECT count(*) FROM twokeys WHERE k LIKE 'x%';
COMMIT;
DROP TABLE twokeys;

---------------------------------------------------------------------------
-- Rows the caller's own statement deleted earlier are gone for the lookup
-- too (a DELETE in WITH, then the call): the key is inserted again
---------------------------------------------------------------------------
CREATE TABLE cte_del (id serial PRIMARY KEY, k text UNIQUE NOT NULL);
INSERT INTO cte_del (k) VALUES ('gone'), ('gone-1'), ('gone-2');
WITH d AS (DELETE FROM cte_del WHERE k = 'gone' RETURNING k)
SELECT g.created, (g.item).k FROM d,
    LATERAL idempotency.get_or_create(NULL::cte_del, jsonb_build_object('k', d.k)) g;
WITH d AS (DELETE FROM cte_del WHERE k LIKE 'gone-%' RETURNING k)
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::cte_del,
    (SELECT jsonb_agg(jsonb_build_object('k', k) ORDER BY k) FROM d));
SELECT k, id > 3 AS new_row FROM cte_del ORDER BY k;
DROP TABLE cte_del;

---------------------------------------------------------------------------
-- The statements name the index's collation with its schema: a later call
-- under another search_path parses them again and finds the same one
---------------------------------------------------------------------------
CREATE SCHEMA upsert_coll;
CREATE COLLATION upsert_coll.c_copy FROM "C";
CREATE TABLE collkey (id serial PRIMARY KEY, k text);
CREATE UNIQUE INDEX collkey_k ON collkey (k COLLATE upsert_coll.c_copy);
SET search_path = upsert_coll, public;
SELECT k FROM idempotency.idempotent_upsert(NULL::collkey, '{"k": "a"}');
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::collkey, '[{"k": "b"}, {"k": "c"}]');
RESET search_path;
SELECT k FROM idempotency.idempotent_upsert(NULL::collkey, '{"k": "d"}');
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::collkey, '[{"k": "e"}, {"k": "f"}]');
SELECT string_agg(k, ',' ORDER BY k) FROM collkey;
DROP TABLE collkey;

-- A key column whose own collation is in a schema the caller may not use:
-- a plain INSERT needs no USAGE there, nor do the upserts (the statements
-- name a collation only where it differs from the column's, or where a
-- second unique index on the key's columns makes it necessary).
CREATE TABLE collcol (id serial PRIMARY KEY, k text COLLATE upsert_coll.c_copy UNIQUE);
CREATE ROLE regress_upsert_nocoll;
GRANT SELECT, INSERT ON collcol TO regress_upsert_nocoll;
GRANT USAGE ON SEQUENCE collcol_id_seq TO regress_upsert_nocoll;
SET ROLE regress_upsert_nocoll;
INSERT INTO collcol (k) VALUES ('plain');
SELECT k FROM idempotency.idempotent_upsert(NULL::collcol, '{"k": "a"}');
SELECT (item).k, created FROM idempotency.get_or_create(NULL::collcol, '{"k": "a"}');
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::collcol, '[{"k": "b"}, {"k": "c"}, {"k": "a"}]');
RESET ROLE;
SELECT string_agg(k, ',' ORDER BY k) FROM collcol;
DROP TABLE collcol;
DROP ROLE regress_upsert_nocoll;
DROP SCHEMA upsert_coll CASCADE;

---------------------------------------------------------------------------
-- A key column whose type (a domain) is not the input type of the index's
-- operator: the operands are cast to that type, so an operator of the same
-- name taking the domain, planted in the operator's schema, is never run
---------------------------------------------------------------------------
CREATE SCHEMA upsert_ops;
CREATE OPERATOR upsert_ops.= (LEFTARG = text, RIGHTARG = text, FUNCTION = texteq,
    COMMUTATOR = OPERATOR(upsert_ops.=));
CREATE OPERATOR upsert_ops.< (LEFTARG = text, RIGHTARG = text, FUNCTION = text_lt);
CREATE OPERATOR upsert_ops.<= (LEFTARG = text, RIGHTARG = text, FUNCTION = text_le);
CREATE OPERATOR upsert_ops.>= (LEFTARG = text, RIGHTARG = text, FUNCTION = text_ge);
CREATE OPERATOR upsert_ops.> (LEFTARG = text, RIGHTARG = text, FUNCTION = text_gt);
CREATE OPERATOR CLASS upsert_ops.text_ops FOR TYPE text USING btree AS
    OPERATOR 1 upsert_ops.<, OPERATOR 2 upsert_ops.<=, OPERATOR 3 upsert_ops.=,
    OPERATOR 4 upsert_ops.>=, OPERATOR 5 upsert_ops.>, FUNCTION 1 bttextcmp(text, text);
CREATE DOMAIN upsert_ops.dtext AS text;
CREATE TABLE shadowed (id serial PRIMARY KEY, k upsert_ops.dtext NOT NULL, v int);
CREATE UNIQUE INDEX shadowed_k ON shadowed (k upsert_ops.text_ops);
-- what a role allowed to create objects in upsert_ops could add
CREATE FUNCTION upsert_ops.spy(upsert_ops.dtext, upsert_ops.dtext) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'planted operator called';
    RETURN $1::text = $2::text;
END $$;
CREATE OPERATOR upsert_ops.= (LEFTARG = upsert_ops.dtext, RIGHTARG = upsert_ops.dtext,
    FUNCTION = upsert_ops.spy);
SELECT k FROM idempotency.idempotent_upsert(NULL::shadowed, '{"k": "a", "v": 1}');
SELECT (item).v, created FROM idempotency.update_or_create(NULL::shadowed, '{"k": "a", "v": 2}');
SELECT (item).v, created FROM idempotency.update_or_create(NULL::shadowed, '{"k": "b", "v": 2}');
SELECT k FROM idempotency.idempotent_upsert_many(NULL::shadowed, '[{"k": "c"}, {"k": "a"}]');
-- the set statements of a batch (no direct probe under SERIALIZABLE)
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT k FROM idempotency.idempotent_upsert_many(NULL::shadowed, '[{"k": "e"}, {"k": "d"}, {"k": "a"}, {"k": "e"}]');
COMMIT;
SELECT string_agg(k, ',' ORDER BY k::text) FROM shadowed;
DROP TABLE shadowed;
DROP SCHEMA upsert_ops CASCADE;
-- Operators whose input type is polymorphic or another type than the
-- column's (anyarray, anyenum, record, text for varchar, a domain's base
-- type): keys and the update_or_create comparison, one row and batches
CREATE TYPE upsert_color AS ENUM ('red', 'green');
CREATE DOMAIN upsert_code AS int CHECK (VALUE > 0);
CREATE TABLE polykeys (id serial PRIMARY KEY, a int[] UNIQUE, c upsert_color UNIQUE,
    v varchar(10) UNIQUE, d upsert_code UNIQUE, p upsert_pair UNIQUE, note text);
SELECT created FROM idempotency.get_or_create(NULL::polykeys, '{"a": [1, 2], "note": "x"}', '{a}');
SELECT created FROM idempotency.get_or_create(NULL::polykeys, '{"a": [1, 2]}', '{a}');
SELECT created FROM idempotency.get_or_create(NULL::polykeys, '{"c": "red"}', '{c}');
SELECT created FROM idempotency.get_or_create(NULL::polykeys, '{"v": "vee"}', '{v}');
SELECT created FROM idempotency.get_or_create(NULL::polykeys, '{"d": 7}', '{d}');
SELECT created FROM idempotency.get_or_create(NULL::polykeys, '{"p": {"x": 1, "y": "a"}}', '{p}');
SELECT (item).note, created FROM idempotency.update_or_create(NULL::polykeys, '{"a": [1, 2], "note": "y"}', '{a}');
SELECT (item).note, created FROM idempotency.update_or_create(NULL::polykeys, '{"c": "red", "note": "y"}', '{c}');
SELECT (item).note, created FROM idempotency.update_or_create(NULL::polykeys, '{"v": "vee", "note": "y"}', '{v}');
SELECT (item).note, created FROM idempotency.update_or_create(NULL::polykeys, '{"d": 7, "note": "y"}', '{d}');
SELECT (item).note, created FROM idempotency.update_or_create(NULL::polykeys, '{"p": {"x": 1, "y": "a"}, "note": "y"}', '{p}');
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::polykeys, '[{"v": "w1"}, {"v": "vee"}, {"v": "w1"}]', '{v}');
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::polykeys, '[{"c": "green"}, {"c": "red"}]', '{c}');
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::polykeys, '[{"d": 8}, {"d": 7}]', '{d}');
COMMIT;
SELECT a, c, v, d, p, note FROM polykeys ORDER BY id;
-- the comparison of non-key columns of such types
SELECT (item).arr, (item).mood, (item).pos, (item).pair, (item).pairs, created
  FROM idempotency.update_or_create(NULL::typed, $$ {"k": "one", "arr": [3], "mood": "ok",
      "pos": 6, "pair": {"x": 9, "y": "z"}, "pairs": [{"x": 1}]} $$);
SELECT (item).arr, (item).mood, (item).pos, (item).pair, (item).pairs, created
  FROM idempotency.update_or_create(NULL::typed, $$ {"k": "one", "arr": [3], "mood": "ok",
      "pos": 6, "pair": {"x": 9, "y": "z"}, "pairs": [{"x": 1}]} $$);
DROP TABLE polykeys;
DROP TYPE upsert_color;
DROP DOMAIN upsert_code;

---------------------------------------------------------------------------
-- REPEATABLE READ: a row the snapshot sees is returned as it was seen
---------------------------------------------------------------------------
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT id, email FROM idempotency.idempotent_upsert(NULL::accounts, '{"email": "a@example.com"}');
SELECT (item).email, created FROM idempotency.get_or_create(NULL::accounts, '{"email": "rr@example.com"}');
SELECT (item).email, created FROM idempotency.get_or_create(NULL::accounts, '{"email": "rr@example.com"}');
ROLLBACK;

---------------------------------------------------------------------------
-- update_or_create on a composite column: NULL and a row of null fields
-- are different values (IS NULL is true for both), so each replaces the
-- other; and a NULLS NOT DISTINCT composite key whose value is NULL finds
-- the NULL row, not a row of null fields
---------------------------------------------------------------------------
CREATE TYPE upsert_cpair AS (a int, b int);
CREATE TABLE cnull (k int PRIMARY KEY, v upsert_cpair);
INSERT INTO cnull VALUES (1, NULL), (2, ROW(NULL, NULL));
SELECT (item).v IS NOT DISTINCT FROM NULL AS v_is_null, created
  FROM idempotency.update_or_create(NULL::cnull, '{"k": 1, "v": {"a": null, "b": null}}');
SELECT (item).v IS NOT DISTINCT FROM NULL AS v_is_null, created
  FROM idempotency.update_or_create(NULL::cnull, '{"k": 2, "v": null}');
SELECT k, v IS NOT DISTINCT FROM NULL AS v_is_null, v::text FROM cnull ORDER BY k;
CREATE TABLE cnullkey (id serial, k upsert_cpair, v text);
CREATE UNIQUE INDEX cnullkey_k ON cnullkey (k) NULLS NOT DISTINCT;
INSERT INTO cnullkey (k, v) VALUES (ROW(NULL, NULL), 'row of nulls');
SELECT (item).v, created FROM idempotency.get_or_create(NULL::cnullkey, '{"k": null, "v": "null"}');
SELECT (item).v, created FROM idempotency.get_or_create(NULL::cnullkey, '{"k": null, "v": "again"}');
SELECT v FROM cnullkey ORDER BY id;
-- the batch path too: a NULL key and a row of null fields are two keys
SELECT v FROM idempotency.idempotent_upsert_many(NULL::cnullkey,
    '[{"k": null, "v": "b1"}, {"k": {"a": null, "b": null}, "v": "b2"}, {"k": {"a": 1, "b": 2}, "v": "b3"}]');
SELECT v FROM cnullkey ORDER BY id;
DROP TABLE cnull, cnullkey;
DROP TYPE upsert_cpair;

---------------------------------------------------------------------------
-- A composite column whose type is altered (ADD and RENAME ATTRIBUTE send
-- no invalidation for the table): the next call fills the new layout
---------------------------------------------------------------------------
CREATE TYPE upsert_cfill AS (a int, b int);
CREATE TABLE cfill (k int PRIMARY KEY, v upsert_cfill);
SELECT (item).v::text, created FROM idempotency.get_or_create(NULL::cfill, '{"k": 1, "v": {"a": 1, "b": 2}}');
ALTER TYPE upsert_cfill ADD ATTRIBUTE c int;
SELECT (item).v::text, created FROM idempotency.get_or_create(NULL::cfill, '{"k": 2, "v": {"a": 1, "b": 2, "c": 3}}');
ALTER TYPE upsert_cfill RENAME ATTRIBUTE b TO bb;
SELECT (item).v::text, created FROM idempotency.get_or_create(NULL::cfill, '{"k": 3, "v": {"a": 1, "bb": 5, "c": 6}}');
SELECT k, v::text FROM cfill ORDER BY k;
DROP TABLE cfill;
DROP TYPE upsert_cfill;

---------------------------------------------------------------------------
-- A BEFORE UPDATE trigger that rewrites the key: update_or_create raises
-- 55000, as for a BEFORE INSERT trigger, instead of returning another
-- key's row (the update is undone)
---------------------------------------------------------------------------
CREATE TABLE ukey (k int PRIMARY KEY, v text);
CREATE FUNCTION ukey_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.k := NEW.k + 100; RETURN NEW; END $$;
CREATE TRIGGER ukey_bump BEFORE UPDATE ON ukey FOR EACH ROW EXECUTE FUNCTION ukey_bump();
INSERT INTO ukey VALUES (1, 'a');
SELECT (item).k, created FROM idempotency.update_or_create(NULL::ukey, '{"k": 1, "v": "b"}');
SELECT k, v FROM ukey;
DROP TABLE ukey;
DROP FUNCTION ukey_bump();

---------------------------------------------------------------------------
-- A schema renamed after a call (a hit: its statements not yet prepared):
-- the next call, with the same columns, works on the same table, not on a
-- new table under the old name
---------------------------------------------------------------------------
CREATE SCHEMA upsert_ren;
CREATE TABLE upsert_ren.t (k int PRIMARY KEY, v text);
INSERT INTO upsert_ren.t VALUES (1, 'old');
SELECT k, v FROM idempotency.idempotent_upsert(NULL::upsert_ren.t, '{"k": 1, "v": "hit"}');
ALTER SCHEMA upsert_ren RENAME TO upsert_ren2;
CREATE SCHEMA upsert_ren;
CREATE TABLE upsert_ren.t (k int PRIMARY KEY, v text);
SELECT k, v FROM idempotency.idempotent_upsert(NULL::upsert_ren2.t, '{"k": 2, "v": "new"}');
SELECT 'renamed' AS schema, k, v FROM upsert_ren2.t
UNION ALL SELECT 'new', k, v FROM upsert_ren.t ORDER BY 1, 2;
DROP SCHEMA upsert_ren CASCADE;
DROP SCHEMA upsert_ren2 CASCADE;

---------------------------------------------------------------------------
-- A deferrable unique constraint on the key's columns, with the key's
-- collation and operator class: INSERT ... ON CONFLICT takes it as an
-- arbiter and refuses to run, so a call that must insert says why (hits
-- still work).  With another collation it is no arbiter: the statements
-- name the key's, and inserts work.
---------------------------------------------------------------------------
CREATE TABLE dkey (k int PRIMARY KEY, v text, CONSTRAINT dkey_k_deferred UNIQUE (k) DEFERRABLE);
INSERT INTO dkey VALUES (2, 'there');
SELECT k FROM idempotency.idempotent_upsert(NULL::dkey, '{"k": 1}', '{k}');
SELECT (item).v, created FROM idempotency.get_or_create(NULL::dkey, '{"k": 2}', '{k}');
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::dkey, '[{"k": 2}, {"k": 3}, {"k": 4}]', '{k}');
DROP TABLE dkey;
CREATE TABLE dcoll (e text, CONSTRAINT dcoll_e_deferred UNIQUE (e) DEFERRABLE);
CREATE UNIQUE INDEX dcoll_e_c ON dcoll (e COLLATE "C");
SELECT (item).e, created FROM idempotency.get_or_create(NULL::dcoll, '{"e": "x"}');
SELECT (item).e, created FROM idempotency.get_or_create(NULL::dcoll, '{"e": "x"}');
SELECT count(*) FROM idempotency.idempotent_upsert_many(NULL::dcoll, '[{"e": "x"}, {"e": "y"}, {"e": "z"}]');
DROP TABLE dcoll;

DROP TABLE accounts, memberships, tags, typed, gen, events, scratch, fast, holes, prefs, items;
DROP TYPE upsert_mood, upsert_pair;
DROP DOMAIN upsert_pos, upsert_nn;
RESET timezone;
