-- Virtual generated columns (PostgreSQL 18): stored as NULL and computed
-- by the executor, so a row read straight from the heap lacks their value.
-- Every call returns the computed value, the existing row as the new one.
-- Older servers have no virtual generated columns: the test only says so.
SELECT current_setting('server_version_num')::int >= 180000 AS has_virtual \gset
\if :has_virtual
CREATE TABLE vgen (k int PRIMARY KEY, a int, twice int GENERATED ALWAYS AS (a * 2) VIRTUAL);
SELECT k, a, twice FROM idempotency.idempotent_upsert(NULL::vgen, '{"k": 1, "a": 2}');
SELECT k, a, twice FROM idempotency.idempotent_upsert(NULL::vgen, '{"k": 1, "a": 2}');
SELECT (item).twice, created FROM idempotency.get_or_create(NULL::vgen, '{"k": 1}');
SELECT (item).twice, created FROM idempotency.update_or_create(NULL::vgen, '{"k": 1, "a": 5}');
SELECT k, twice FROM idempotency.idempotent_upsert_many(NULL::vgen,
    '[{"k": 1}, {"k": 2, "a": 7}, {"k": 3, "a": 8}]');
SELECT k, twice FROM idempotency.idempotent_upsert_many(NULL::vgen,
    '[{"k": 1}, {"k": 2}, {"k": 3}]');
SELECT k, twice FROM idempotency.idempotent_upsert_columns(NULL::vgen, '{k,a}', NULL,
    ARRAY[1, 4], ARRAY[NULL, 9]);
SELECT k, a, twice FROM vgen ORDER BY k;
DROP TABLE vgen;
\else
\echo 'skipped: this server has no virtual generated columns'
\endif
