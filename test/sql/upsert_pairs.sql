--
-- Calls written with jsonb_build_object('column', value, ...): where every
-- name is a constant naming a column and every value is of its column's
-- type (text, smallint, integer, bigint, boolean, uuid, without a type
-- modifier), the planner passes the values to the function as they are,
-- and the function neither builds nor reads a jsonb object.  Every other
-- call keeps its jsonb object.  Either way the rows and the errors are
-- those of the same call with the object written out.
--
\set VERBOSITY terse

CREATE TABLE pt (
    id      bigserial PRIMARY KEY,
    email   text NOT NULL UNIQUE,
    name    text,
    i2      smallint,
    i4      int,
    i8      bigint,
    b       boolean,
    u       uuid,
    amount  numeric,
    code    varchar(5),
    f       float8,
    seen    timestamptz,
    doubled int GENERATED ALWAYS AS (i4 * 2) STORED
);

-- Does the plan of the statement pass the values as they are?  (The call
-- then has a text[] of names where vals was.)
CREATE FUNCTION passes_values(stmt text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    line text;
    call text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || stmt LOOP
        call := call || line;
    END LOOP;
    IF call ~ '\(NULL::pt, ''\{[^'']*\}''::text\[\]' THEN
        RETURN true;
    ELSIF call ~ '\(NULL::pt, ' THEN
        RETURN false;
    END IF;
    RAISE EXCEPTION 'no call in the plan: %', call;
END $$;

-- Passed as they are: values of the columns' types, in any order, with or
-- without key_cols; the plan shows the names (and key_cols) as a text[].
EXPLAIN (VERBOSE, COSTS OFF)
SELECT * FROM idempotency.idempotent_upsert(NULL::pt,
    jsonb_build_object('name', 'Ann'::text, 'email', 'a@x'::text, 'i4', 4));
EXPLAIN (VERBOSE, COSTS OFF)
SELECT * FROM idempotency.get_or_create(NULL::pt,
    jsonb_build_object('email', 'a@x'::text), ARRAY['email']);
SELECT passes_values($$SELECT * FROM idempotency.update_or_create(NULL::pt,
    jsonb_build_object('email', 'a@x'::text, 'i2', 2::smallint, 'i8', 8::bigint,
                       'b', true, 'u', '00000000-0000-0000-0000-000000000001'::uuid))$$);

-- Kept as an object: a value of another type than its column's (an
-- unknown literal, an integer for a text column), a column of another type
-- (numeric, varchar(5), float8, timestamptz), the same name twice, a name
-- that is no column or a generated column, a name that is not a constant,
-- key_cols that is not a constant, the VARIADIC form.  (An object built
-- otherwise from constants, jsonb_object(ARRAY['email', 'a@x']), is folded
-- into a constant object, whose values are passed as below.)
SELECT passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'a@x'))$$) AS unknown_literal,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 5))$$) AS int_for_text,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'a@x'::text, 'amount', 1.5))$$) AS numeric_col,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'a@x'::text, 'code', 'ab'::varchar))$$) AS varchar_col,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'a@x'::text, 'f', 1.5::float8))$$) AS float_col,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'a@x'::text, 'seen', now()))$$) AS timestamptz_col;
SELECT passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'a@x'::text, 'email', 'b@x'::text))$$) AS twice,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'a@x'::text, 'nope', 1))$$) AS no_column,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'a@x'::text, 'doubled', 1))$$) AS generated,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object((SELECT 'email'::text), 'a@x'::text))$$) AS computed_name,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'a@x'::text), (SELECT ARRAY['email']))$$) AS computed_key_cols,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object(VARIADIC ARRAY['email', 'a@x']))$$) AS variadic,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_object(ARRAY['email', 'a@x']))$$) AS jsonb_object;

-- A constant object is passed as its values too where each converts to
-- its column without a doubt: a string for a text column, a boolean, an
-- integer in the column's range (up to 18 digits), null.  Anything else
-- keeps the object, and the conversion (and its errors) at run time: a
-- string for another type, a number for a text column, a number with a
-- fraction or out of the column's range, a nested value, an empty object.
EXPLAIN (VERBOSE, COSTS OFF)
SELECT * FROM idempotency.idempotent_upsert(NULL::pt,
    '{"email": "c@x", "i2": -32768, "i4": 7, "i8": -922337203685477580, "b": true, "name": null}');
SELECT passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "c@x"}', '{email}')$$) AS with_key_cols,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "c@x", "i4": "7"}')$$) AS string_for_int,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": 5}')$$) AS number_for_text,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "c@x", "i4": 7.0}')$$) AS fraction,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "c@x", "i2": 40000}')$$) AS out_of_range,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "c@x", "i8": 1234567890123456789}')$$) AS nineteen_digits;
SELECT passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "c@x", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}')$$) AS uuid_string,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "c@x", "name": ["x"]}')$$) AS nested,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "c@x", "amount": 1}')$$) AS numeric_col,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "c@x", "doubled": 1}')$$) AS generated,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{}')$$) AS empty,
       passes_values($$SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '[{"email": "c@x"}]')$$) AS not_an_object;
-- the rows and the errors of the conversion
SELECT (item).email, (item).i2, (item).i4, (item).i8, (item).b, (item).name, created
  FROM idempotency.get_or_create(NULL::pt,
       '{"email": "c@x", "i2": -32768, "i4": 7, "i8": -922337203685477580, "b": true, "name": null}');
SELECT (item).email, (item).i2, (item).i4, (item).i8, (item).b, (item).name, created
  FROM idempotency.get_or_create(NULL::pt,
       jsonb_build_object('email', 'c@x', 'i2', -32768, 'i4', 7, 'i8', -922337203685477580, 'b', true, 'name', null));
SELECT email, i4 FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "d@x", "i4": 1e2}');
SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "e@x", "i2": 40000}');
SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": "e@x", "i4": 7.5}');
SELECT * FROM idempotency.idempotent_upsert(NULL::pt, '{"email": null}');

-- The same rows as with the object written out.
SELECT (item).email, (item).name, (item).i2, (item).i4, (item).i8, (item).b,
       (item).u, created
  FROM idempotency.get_or_create(NULL::pt,
       jsonb_build_object('email', 'a@x'::text, 'name', 'Ann'::text,
                          'i2', (-32768)::smallint, 'i4', 123456789,
                          'i8', (-9223372036854775807 - 1)::bigint,
                          'b', false, 'u', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid));
SELECT (item).email, (item).name, (item).i2, (item).i4, (item).i8, (item).b,
       (item).u, created
  FROM idempotency.get_or_create(NULL::pt,
       '{"email": "a@x", "name": "Ann", "i2": -32768, "i4": 123456789,
         "i8": -9223372036854775808, "b": false,
         "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}');
-- NULL values; the other columns' values are ignored on a hit ...
SELECT (item).email, (item).name, (item).i4, created
  FROM idempotency.get_or_create(NULL::pt,
       jsonb_build_object('email', 'n@x'::text, 'name', NULL::text, 'i4', NULL::int));
SELECT email, name, i4 FROM idempotency.idempotent_upsert(NULL::pt,
       jsonb_build_object('email', 'n@x'::text, 'name', 'other'::text));
-- ... and set by update_or_create
SELECT (item).email, (item).name, (item).i4, (item).b, created
  FROM idempotency.update_or_create(NULL::pt,
       jsonb_build_object('email', 'n@x'::text, 'name', 'Nat'::text, 'i4', 9, 'b', true));
-- a NULL key, as with the object
SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', NULL::text));
-- key_cols kept with the names; their errors as before
SELECT email FROM idempotency.idempotent_upsert(NULL::pt,
       jsonb_build_object('email', 'k@x'::text), '{email}');
SELECT email FROM idempotency.idempotent_upsert(NULL::pt,
       jsonb_build_object('email', 'k@x'::text), '{name}');
SELECT email FROM idempotency.idempotent_upsert(NULL::pt,
       jsonb_build_object('email', 'k@x'::text), '{nope}');
-- errors of the calls kept as objects, as before
SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'a@x'::text, 'nope', 1));
SELECT * FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'a@x'::text, 'doubled', 1));
-- the same name twice: the last value, as in jsonb
SELECT email FROM idempotency.idempotent_upsert(NULL::pt,
       jsonb_build_object('email', 'first@x'::text, 'email', 'last@x'::text));

-- A value read from another table, stored out of line there: the row gets
-- the value, not a pointer into the other table's TOAST relation.
CREATE TABLE src (big text);
ALTER TABLE src ALTER COLUMN big SET STORAGE EXTERNAL;
INSERT INTO src SELECT string_agg(md5(g::text), '') FROM generate_series(1, 200) g;
SELECT pg_column_size(big) > 6000 AS stored_whole FROM src;
SELECT length(u.name), u.name = s.big AS same
  FROM src s, LATERAL idempotency.idempotent_upsert(NULL::pt,
       jsonb_build_object('email', 'big@x'::text, 'name', s.big)) AS u;
DROP TABLE src;
SELECT length(name), md5(name) = md5((SELECT string_agg(md5(g::text), '') FROM generate_series(1, 200) g)) AS same
  FROM pt WHERE email = 'big@x';

-- A prepared statement: its plan passes the values, and is made again
-- after the table changes.
SET plan_cache_mode = force_generic_plan;
PREPARE p(text, bigint) AS
    SELECT (item).email, created
      FROM idempotency.get_or_create(NULL::pt, jsonb_build_object('email', $1, 'i8', $2));
EXECUTE p('p1@x', 1);
EXECUTE p('p1@x', 2);
SELECT passes_values('EXECUTE p(''p1@x'', 1)');
ALTER TABLE pt ALTER COLUMN i8 TYPE numeric;
SELECT passes_values('EXECUTE p(''p2@x'', 1)');
EXECUTE p('p2@x', 3);
SELECT email, i8, pg_typeof(i8) FROM pt WHERE email LIKE 'p_@x' ORDER BY email;
DEALLOCATE p;
RESET plan_cache_mode;

-- EXECUTE privilege is still checked on the function called.
CREATE ROLE pairs_user;
GRANT USAGE ON SCHEMA idempotency TO pairs_user;
GRANT SELECT, INSERT ON pt TO pairs_user;
GRANT USAGE ON SEQUENCE pt_id_seq TO pairs_user;
REVOKE EXECUTE ON FUNCTION idempotency.idempotent_upsert(anyelement, jsonb, text[]) FROM PUBLIC;
SET ROLE pairs_user;
SELECT email FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'r@x'::text));
RESET ROLE;
GRANT EXECUTE ON FUNCTION idempotency.idempotent_upsert(anyelement, jsonb, text[]) TO pairs_user;
SET ROLE pairs_user;
SELECT email FROM idempotency.idempotent_upsert(NULL::pt, jsonb_build_object('email', 'r@x'::text));
RESET ROLE;
GRANT EXECUTE ON FUNCTION idempotency.idempotent_upsert(anyelement, jsonb, text[]) TO PUBLIC;
REVOKE EXECUTE ON FUNCTION idempotency.idempotent_upsert(anyelement, jsonb, text[]) FROM pairs_user;
REVOKE ALL ON pt FROM pairs_user;
REVOKE ALL ON SEQUENCE pt_id_seq FROM pairs_user;
REVOKE USAGE ON SCHEMA idempotency FROM pairs_user;
DROP ROLE pairs_user;

-- The support function takes and returns "internal": no SQL can call it.
SELECT pg_get_function_arguments(oid) AS arguments, pg_get_function_result(oid) AS result
  FROM pg_proc WHERE oid = 'idempotency.upsert_support'::regproc;

DROP FUNCTION passes_values(text);
DROP TABLE pt;
