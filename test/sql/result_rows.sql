-- The row types of results: the functions that return a row take its type
-- from the executor when called in FROM, and from the catalog elsewhere.
-- Every calling context gives the same columns and values.
\set VERBOSITY terse
CREATE TABLE rr_items (id int GENERATED ALWAYS AS IDENTITY, sku text UNIQUE, n int);

-- get_or_create / update_or_create: in FROM, in the select list, expanded,
-- with aliases, in ROWS FROM with ordinality, laterally, prepared.
SELECT item, created FROM idempotency.get_or_create(NULL::rr_items, '{"sku": "a", "n": 1}');
SELECT idempotency.get_or_create(NULL::rr_items, '{"sku": "a", "n": 1}');
SELECT (idempotency.get_or_create(NULL::rr_items, '{"sku": "b", "n": 2}')).*;
SELECT r, c FROM idempotency.get_or_create(NULL::rr_items, '{"sku": "b"}') AS g(r, c);
SELECT * FROM ROWS FROM (idempotency.get_or_create(NULL::rr_items, '{"sku": "c", "n": 3}'),
                         idempotency.update_or_create(NULL::rr_items, '{"sku": "a", "n": 10}'))
    WITH ORDINALITY AS t(i1, c1, i2, c2, ord);
SELECT v.sku, (g.item).n, g.created
  FROM (VALUES ('a'), ('d'), ('a')) AS v(sku),
       LATERAL idempotency.get_or_create(NULL::rr_items, jsonb_build_object('sku', v.sku, 'n', 4)) AS g
 ORDER BY 1, 3;
PREPARE rr_goc(text) AS SELECT (item).sku, created FROM idempotency.get_or_create(NULL::rr_items, jsonb_build_object('sku', $1));
EXECUTE rr_goc('e');
EXECUTE rr_goc('e');
EXECUTE rr_goc('f');
DEALLOCATE rr_goc;
-- A composite result used as a value after the call returned.
SELECT row_to_json(g) FROM idempotency.update_or_create(NULL::rr_items, '{"sku": "f", "n": 6}') AS g;

-- claim: in FROM, in the select list, in ROWS FROM, prepared, in PL/pgSQL.
BEGIN;
SELECT status, result, token IS NOT NULL AS has_token, attempts
  FROM idempotency.claim('rr-1', '{"a": 1}', 'rr');
SELECT idempotency.complete('rr-1', '{"ok": 1}', 'rr');
COMMIT;
SELECT (idempotency.claim('rr-1', '{"a": 1}', 'rr')).status;
SELECT (c).status, (c).result FROM (SELECT idempotency.claim('rr-1', '{"a": 1}', 'rr') AS c) s;
SELECT s1, r1, s2 FROM ROWS FROM (idempotency.claim('rr-1', '{"a": 1}', 'rr'),
                                  idempotency.claim('rr-2', NULL, 'rr'))
    WITH ORDINALITY AS t(s1, r1, e1, t1, f1, a1, x1, s2, r2, e2, t2, f2, a2, x2, ord);
PREPARE rr_claim(text) AS SELECT status, result FROM idempotency.claim($1, NULL, 'rr');
EXECUTE rr_claim('rr-1');
EXECUTE rr_claim('rr-1');
EXECUTE rr_claim('rr-3');
DEALLOCATE rr_claim;
DO $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM idempotency.claim('rr-1', NULL, 'rr');
    RAISE NOTICE 'plpgsql: % %', r.status, r.result;
    r := idempotency.claim('rr-1', NULL, 'rr');
    RAISE NOTICE 'plpgsql assigned: % %', r.status, r.result;
END $$;

-- lease_acquire / lease_renew / lease_status (sets): in FROM, in the select
-- list, with ordinality.
SELECT status, token, fencing_token, holder FROM idempotency.lease_acquire('rr-lease', holder => 'h') \gset l_
SELECT :'l_status', :l_fencing_token, :'l_holder';
SELECT (idempotency.lease_status('rr-lease')).holder;
SELECT s, ord FROM idempotency.lease_renew('rr-lease', :'l_token'::uuid, '1 minute') WITH ORDINALITY AS r(s, e, ord);
SELECT status, expires_at > clock_timestamp() AS future
  FROM idempotency.lease_renew('rr-lease', (SELECT token FROM idempotency.lease_status('rr-lease')), '1 minute');
SELECT (idempotency.lease_acquire('rr-lease')).status;
SELECT holder, fencing_token FROM idempotency.lease_status('rr-lease');
SELECT idempotency.lease_release('rr-lease');

-- claim() and the lease functions return composite types (their row type
-- comes from the type cache, not from pg_proc at every execution).
SELECT p.proname, pg_get_function_result(p.oid)
  FROM pg_proc p
 WHERE p.pronamespace = 'idempotency'::regnamespace
   AND p.proname IN ('claim', 'lease_acquire', 'lease_renew', 'lease_status')
 ORDER BY 1;
SELECT pg_typeof(c) FROM idempotency.claim('rr-4', NULL, 'rr') AS c;
SELECT pg_typeof(l), l.status FROM idempotency.lease_acquire('rr-type') AS l;
SELECT idempotency.lease_release('rr-type');
-- A row type altered by its owner is refused (42804), in FROM and in the
-- select list, rather than filled past its end or with another type.
\set VERBOSITY sqlstate
BEGIN;
ALTER TYPE idempotency.claim_result ADD ATTRIBUTE extra int;
SELECT status FROM idempotency.claim('rr-altered', NULL, 'rr');
ROLLBACK;
\set VERBOSITY default
BEGIN;
ALTER TYPE idempotency.claim_result ADD ATTRIBUTE extra int;
SELECT idempotency.claim('rr-altered', NULL, 'rr');
ROLLBACK;
BEGIN;
ALTER TYPE idempotency.lease_acquire_result ALTER ATTRIBUTE holder TYPE varchar;
SELECT status FROM idempotency.lease_acquire('rr-altered');
ROLLBACK;
BEGIN;
ALTER TYPE idempotency.lease_renew_result DROP ATTRIBUTE expires_at;
SELECT status FROM idempotency.lease_renew('rr-altered', gen_random_uuid());
ROLLBACK;
BEGIN;
ALTER TYPE idempotency.lease_status_result ALTER ATTRIBUTE fencing_token TYPE numeric;
SELECT * FROM idempotency.lease_status('rr-altered');
ROLLBACK;
\set VERBOSITY terse
-- A dropped column stays in a type; with the same columns left, in the
-- same order, the calls work (an added column dropped again, a column
-- dropped and added again at the end).
BEGIN;
ALTER TYPE idempotency.claim_result ADD ATTRIBUTE extra int;
ALTER TYPE idempotency.claim_result DROP ATTRIBUTE extra;
ALTER TYPE idempotency.lease_acquire_result ADD ATTRIBUTE extra int;
ALTER TYPE idempotency.lease_acquire_result DROP ATTRIBUTE extra;
ALTER TYPE idempotency.lease_status_result DROP ATTRIBUTE expires_at, ADD ATTRIBUTE expires_at timestamptz;
SELECT status, result, attempts FROM idempotency.claim('rr-dropped', NULL, 'rr');
SELECT (idempotency.claim('rr-dropped-2', NULL, 'rr')).status;
SELECT status, holder FROM idempotency.lease_acquire('rr-dropped', holder => 'h');
SELECT holder, expires_at > acquired_at AS later FROM idempotency.lease_status('rr-dropped');
ROLLBACK;
-- and once the type is back, the same calls work
SELECT status FROM idempotency.claim('rr-altered', NULL, 'rr');
SELECT status, holder FROM idempotency.lease_acquire('rr-altered', holder => 'h');
SELECT count(*) FROM idempotency.lease_status('rr-altered');
SELECT idempotency.lease_release('rr-altered');

DROP TABLE rr_items;
SELECT idempotency.forget(k, 'rr') FROM unnest(ARRAY['rr-1', 'rr-2', 'rr-3', 'rr-4', 'rr-altered']) AS k;
