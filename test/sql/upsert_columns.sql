--
-- idempotent_upsert_columns: a batch given as one array per column.  The
-- rows, their order and the errors are those of idempotent_upsert_many
-- with the same rows as a JSON array; where the set-based path applies the
-- values go to it as they are, elsewhere (row-level security, a column
-- with a type modifier, a partitioned table, NULLS NOT DISTINCT) they go
-- through the JSON form's paths and must come back exactly as given.
--
\set VERBOSITY terse

-- SQLSTATE and message of a statement that should fail.
CREATE FUNCTION err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN short_text AS text CHECK (length(VALUE) <= 5);

CREATE TABLE ct (
    id      bigserial PRIMARY KEY,
    email   text NOT NULL UNIQUE,
    n       int,
    f       float8,
    amount  numeric,
    seen    timestamptz,
    j       jsonb,
    m       mood,
    s       short_text,
    raw     bytea,
    doubled int GENERATED ALWAYS AS (n * 2) STORED
);

-- new keys, a key twice, input order kept
SELECT id, email, n FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email,n}', NULL,
    ARRAY['b', 'a', 'b'], ARRAY[1, 2, 3]);
-- existing and new keys, the columns named in another order: the existing
-- rows come back as they are
SELECT id, email, n FROM idempotency.idempotent_upsert_columns(NULL::ct, '{n,email}', NULL,
    ARRAY[9, 8, 7], ARRAY['c', 'a', 'b']);
-- an untyped literal is read as an array of the column's type
SELECT id, email FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, '{a,d}');
-- explicit key columns
SELECT id, email FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', '{email}', ARRAY['d']);
-- no rows
SELECT count(*) FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, ARRAY[]::text[]);
-- the same as the JSON form
SELECT (SELECT array_agg(c.id) FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL,
            ARRAY['d', 'a', 'e']) c) =
       (SELECT array_agg(m.id) FROM idempotency.idempotent_upsert_many(NULL::ct,
            '[{"email": "d"}, {"email": "a"}, {"email": "e"}]') m) AS same_rows;

-- values of many types, as given
SELECT email, n, doubled, f::text, amount, seen, j, m, s, raw
  FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email,n,f,amount,seen,j,m,s,raw}', NULL,
    ARRAY['t1', 't2'], ARRAY[1, NULL], ARRAY['-0'::float8, 0.1], ARRAY[1.50, NULL::numeric],
    ARRAY['2026-01-02 03:04:05.678901+00'::timestamptz, NULL],
    ARRAY['{"x": [1, 2]}'::jsonb, '5'], ARRAY['happy'::mood, 'sad'],
    ARRAY['abc', NULL]::short_text[], ARRAY['\x00ff'::bytea, '']);

-- Errors, before anything is written
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, NULL, NULL, ARRAY['x'])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{}', NULL, ARRAY['x'])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{{email}}', NULL, ARRAY['x'])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email,NULL}', NULL, ARRAY['x'], ARRAY['y'])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email,n}', NULL, ARRAY['x'])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email,nope}', NULL, ARRAY['x'], ARRAY[1])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email,doubled}', NULL, ARRAY['x'], ARRAY[1])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email,email}', NULL, ARRAY['x'], ARRAY['y'])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, ARRAY[1])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, 'x'::text)$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email,s}', NULL, ARRAY['x'], ARRAY['abc'])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, NULL::text[])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, ARRAY[['x'], ['y']])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email,n}', NULL, ARRAY['x', 'y'], ARRAY[1])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, VARIADIC ARRAY[ARRAY['x']])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, ARRAY['x', NULL])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{n}', NULL, ARRAY[1])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', '{n}', ARRAY['x'])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(1, '{email}', NULL, ARRAY['x'])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email,s}', NULL, ARRAY['x'], ARRAY['toolong']::short_text[])$$);
SELECT count(*) AS no_x FROM ct WHERE email IN ('x', 'y');

-- Columns whose values would not come back the same through JSON
CREATE TABLE ct_types (k text PRIMARY KEY, a int[], r ct, js json);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct_types, '{k,a}', NULL, ARRAY['x'], '{}'::int[])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct_types, '{k,r}', NULL, ARRAY['x'], ARRAY[NULL::ct])$$);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct_types, '{k,js}', NULL, ARRAY['x'], ARRAY['{}'::json])$$);

-- The paths without the set-based one get the values through JSON: they
-- come back exactly (-0, every digit of a float8 whatever
-- extra_float_digits says, a timestamptz under another DateStyle in a time
-- zone whose abbreviation, IST, reads back as Israel's, an interval under
-- another IntervalStyle, a jsonb scalar), and a type modifier applies as
-- in INSERT.
CREATE TABLE cx (
    k     text PRIMARY KEY,
    f     float8,
    seen  timestamptz,
    span  interval,
    j     jsonb,
    code  varchar(3)
);
SET extra_float_digits = -3;
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'Asia/Kolkata';
SET IntervalStyle = 'sql_standard';
SELECT k FROM idempotency.idempotent_upsert_columns(NULL::cx, '{k,f,seen,span,j,code}', NULL,
    ARRAY['a', 'b'], ARRAY['-0'::float8, 0.1234567890123456789],
    ARRAY['2026-01-02 03:04:05.678901+00'::timestamptz, 'infinity'],
    ARRAY['-1 year -2 mons +3 days -04:05:06.7'::interval, '1 day -1 second'],
    ARRAY['"s"'::jsonb, 'null'], ARRAY['ab', NULL]::varchar[]);
RESET extra_float_digits;
RESET DateStyle;
RESET TimeZone;
RESET IntervalStyle;
SELECT k, f::text, CASE k WHEN 'b' THEN f = 0.1234567890123456789::float8 END AS exact,
       CASE k WHEN 'a' THEN seen = '2026-01-02 03:04:05.678901+00' END AS same_time, seen,
       span, span = CASE k WHEN 'a' THEN '-1 year -2 mons +3 days -04:05:06.7'::interval
                           ELSE '1 day -1 second' END AS same_span,
       j, jsonb_typeof(j), code
  FROM cx ORDER BY k;
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::cx, '{k,code}', NULL, ARRAY['c'], ARRAY['abcd']::varchar[])$$);
SELECT count(*) AS no_c FROM cx WHERE k = 'c';

-- Row-level security: the rows the policy lets the role see and insert
CREATE ROLE regress_cols_user;
GRANT SELECT, INSERT ON ct TO regress_cols_user;
GRANT USAGE ON SEQUENCE ct_id_seq TO regress_cols_user;
ALTER TABLE ct ENABLE ROW LEVEL SECURITY;
CREATE POLICY ct_sel ON ct FOR SELECT USING (email LIKE 'r%' OR email = 'a');
CREATE POLICY ct_ins ON ct FOR INSERT WITH CHECK (email LIKE 'r%');
SET ROLE regress_cols_user;
SELECT email, n FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email,n}', NULL,
    ARRAY['r1', 'a', 'r1'], ARRAY[1, 2, 3]);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, ARRAY['zz'])$$);
RESET ROLE;
ALTER TABLE ct DISABLE ROW LEVEL SECURITY;

-- No INSERT privilege: a batch of existing keys reads, a new key is 42501
CREATE ROLE regress_cols_reader;
GRANT SELECT ON ct TO regress_cols_reader;
SET ROLE regress_cols_reader;
SELECT email FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, ARRAY['a', 'b']);
SELECT err($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, ARRAY['a', 'new'])$$);
RESET ROLE;

-- A partitioned table, and a NULLS NOT DISTINCT key with a NULL in it
CREATE TABLE cp (k int, v text, PRIMARY KEY (k)) PARTITION BY RANGE (k);
CREATE TABLE cp1 PARTITION OF cp FOR VALUES FROM (0) TO (100);
CREATE TABLE cp2 PARTITION OF cp FOR VALUES FROM (100) TO (200);
SELECT * FROM idempotency.idempotent_upsert_columns(NULL::cp, '{k,v}', NULL,
    ARRAY[150, 5, 150], ARRAY['x', 'y', 'z']);
SELECT tableoid::regclass, * FROM cp ORDER BY k;
CREATE TABLE cn (a int, b int, v text);
CREATE UNIQUE INDEX ON cn (a, b) NULLS NOT DISTINCT;
SELECT * FROM idempotency.idempotent_upsert_columns(NULL::cn, '{a,b,v}', NULL,
    ARRAY[1, 1, 1], ARRAY[NULL, 2, NULL]::int[], ARRAY['p', 'q', 'r']);
SELECT * FROM cn ORDER BY a, b;

-- Counted as idempotent_upsert_many, one per row
SELECT idempotency.stats_reset();
SELECT count(*) FROM idempotency.idempotent_upsert_columns(NULL::ct, '{email}', NULL, ARRAY['a', 'b', 'new1']);
SELECT outcome, calls FROM idempotency.stats
 WHERE operation = 'idempotent_upsert_many' AND calls > 0 ORDER BY outcome;

DROP TABLE ct, ct_types, cx, cp, cn;
DROP TYPE mood;
DROP DOMAIN short_text;
DROP FUNCTION err(text);
DROP OWNED BY regress_cols_user, regress_cols_reader;
DROP ROLE regress_cols_user, regress_cols_reader;
