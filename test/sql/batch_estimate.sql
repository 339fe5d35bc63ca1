--
-- The planner's estimate of the rows of idempotent_upsert_many and
-- idempotent_upsert_columns: one per element of a constant batch (a JSON
-- array, or the first array of values, a constant or ARRAY[...]);
-- otherwise the functions' ROWS 100.  The calls stay Function Scans.
--
\set VERBOSITY terse

CREATE TABLE be (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, n int);
CREATE FUNCTION plan_rows(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    p json;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO p;
    RETURN (p->0->'Plan'->>'Plan Rows')::float8;
END $$;

EXPLAIN (COSTS OFF)
SELECT * FROM idempotency.idempotent_upsert_many(NULL::be, '[{"email": "a@x"}]');
SELECT plan_rows($$SELECT * FROM idempotency.idempotent_upsert_many(NULL::be,
                   '[{"email": "a@x"}, {"email": "b@x"}, {"email": "c@x"}]')$$) AS json3,
       plan_rows($$SELECT * FROM idempotency.idempotent_upsert_many(NULL::be, '[]')$$) AS json0,
       plan_rows($$SELECT * FROM idempotency.idempotent_upsert_many(NULL::be, '{"email": "a@x"}')$$) AS object,
       plan_rows($$SELECT * FROM idempotency.idempotent_upsert_many(NULL::be, NULL)$$) AS null_vals,
       plan_rows($$SELECT * FROM idempotency.idempotent_upsert_many(NULL::be,
                   (SELECT jsonb_agg(jsonb_build_object('email', g)) FROM generate_series(1, 5) g))$$) AS subquery;
SELECT plan_rows($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::be, '{email,n}', NULL,
                   ARRAY['a@x', 'b@x'], ARRAY[1, 2])$$) AS array2,
       plan_rows($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::be, '{email}', NULL,
                   '{a@x,b@x,c@x,d@x}'::text[])$$) AS const4,
       plan_rows($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::be, '{email}', NULL,
                   '{{a@x,b@x},{c@x,d@x}}'::text[])$$) AS two_dims,
       plan_rows($$SELECT * FROM idempotency.idempotent_upsert_columns(NULL::be, '{email}', NULL,
                   'a@x'::text)$$) AS not_array;
-- a prepared statement's generic plan: no constant, ROWS 100; its custom
-- plans see the value
PREPARE be_p(jsonb) AS SELECT * FROM idempotency.idempotent_upsert_many(NULL::be, $1);
SET plan_cache_mode = force_generic_plan;
SELECT plan_rows($$EXECUTE be_p('[{"email": "a@x"}, {"email": "b@x"}]')$$) AS generic;
SET plan_cache_mode = force_custom_plan;
SELECT plan_rows($$EXECUTE be_p('[{"email": "a@x"}, {"email": "b@x"}]')$$) AS custom;
RESET plan_cache_mode;
DEALLOCATE be_p;
-- the estimate changes nothing of the call: its rows, in input order
SELECT email FROM idempotency.idempotent_upsert_many(NULL::be,
  '[{"email": "b@x"}, {"email": "a@x"}, {"email": "b@x"}]');
SELECT email, n FROM idempotency.idempotent_upsert_columns(NULL::be, '{email,n}', NULL,
  ARRAY['c@x', 'a@x'], ARRAY[3, 4]);
-- and the batches stay Function Scans, their rows through a tuplestore
EXPLAIN (COSTS OFF)
SELECT email FROM idempotency.idempotent_upsert_columns(NULL::be, '{email}', NULL, ARRAY['a@x']);

DROP FUNCTION plan_rows(text);
DROP TABLE be;
