-- Read-only transactions: every function that writes fails up front with
-- SQLSTATE 25006 and a hint (the same error as on a hot standby, where every
-- transaction is read-only); the functions that only read, and the mutex
-- functions, work.
\set VERBOSITY terse
SET client_min_messages = warning;

-- SQLSTATE, message and hint of an error, or 'ok'.
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    msg text;
    hint text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ': ' || msg || E'\n  HINT: ' || hint;
END $$;

CREATE TABLE ro_items (id int PRIMARY KEY, name text);
INSERT INTO ro_items VALUES (1, 'one');
SELECT token AS done_token FROM idempotency.claim('ro-done') \gset
SELECT idempotency.complete('ro-done', '{"ok": true}', token => :'done_token');
SELECT status FROM idempotency.claim('ro-open', lease => '1 hour');
SELECT token AS ro_token FROM idempotency.lease_acquire('ro-lease', ttl => '1 hour') \gset

BEGIN READ ONLY;
SELECT f, pg_temp.try(sql) AS outcome FROM (VALUES
    ('idempotent_upsert (row exists)', $$SELECT idempotency.idempotent_upsert(NULL::ro_items, '{"id": 1}')$$),
    ('idempotent_upsert (row missing)', $$SELECT idempotency.idempotent_upsert(NULL::ro_items, '{"id": 2}')$$),
    ('get_or_create (row exists)', $$SELECT idempotency.get_or_create(NULL::ro_items, '{"id": 1}')$$),
    ('update_or_create', $$SELECT idempotency.update_or_create(NULL::ro_items, '{"id": 1, "name": "uno"}')$$),
    ('idempotent_upsert_many', $$SELECT idempotency.idempotent_upsert_many(NULL::ro_items, '[{"id": 1}]')$$),
    ('idempotent_upsert_columns', $$SELECT idempotency.idempotent_upsert_columns(NULL::ro_items, '{id}', NULL, ARRAY[1])$$),
    ('mark_processed', $$SELECT idempotency.mark_processed('ro-new')$$),
    ('claim (completed key)', $$SELECT idempotency.claim('ro-done')$$),
    ('claim (new key)', $$SELECT idempotency.claim('ro-new')$$),
    ('complete', $$SELECT idempotency.complete('ro-open', '{}')$$),
    ('fail', $$SELECT idempotency.fail('ro-open')$$),
    ('forget', $$SELECT idempotency.forget('ro-done')$$),
    ('purge', $$SELECT idempotency.purge()$$),
    ('lease_acquire', $$SELECT idempotency.lease_acquire('ro-lease-2')$$),
    ('lease_renew', $$SELECT idempotency.lease_renew('ro-lease', '$$ || :'ro_token' || $$')$$),
    ('lease_release', $$SELECT idempotency.lease_release('ro-lease')$$),
    ('lease_assert', $$SELECT idempotency.lease_assert('ro-lease', '$$ || :'ro_token' || $$')$$),
    -- refused whatever the arguments: 25006 before any argument error
    ('purge (batch_size 0)', $$SELECT idempotency.purge(0)$$),
    ('purge (batch_size NULL)', $$SELECT idempotency.purge(NULL)$$),
    ('mark_processed (empty key)', $$SELECT idempotency.mark_processed('')$$),
    ('claim (NULL key)', $$SELECT idempotency.claim(NULL)$$),
    ('complete (empty key)', $$SELECT idempotency.complete('', '{}')$$),
    ('forget (NULL key)', $$SELECT idempotency.forget(NULL)$$),
    ('idempotent_upsert (vals not an object)', $$SELECT idempotency.idempotent_upsert(NULL::ro_items, '[]')$$),
    ('idempotent_upsert_many (vals NULL)', $$SELECT idempotency.idempotent_upsert_many(NULL::ro_items, NULL)$$),
    ('idempotent_upsert_columns (cols NULL)', $$SELECT idempotency.idempotent_upsert_columns(NULL::ro_items, NULL, NULL, ARRAY[1])$$),
    ('lease_acquire (ttl 0)', $$SELECT idempotency.lease_acquire('ro-lease-3', ttl => '0')$$),
    ('lease_release (empty key)', $$SELECT idempotency.lease_release('')$$)
) AS calls(f, sql);

-- What only reads works; so do the mutexes (advisory locks are allowed in
-- read-only transactions and on a hot standby).
SELECT f, pg_temp.try(sql) AS outcome FROM (VALUES
    ('version', $$SELECT idempotency.version()$$),
    ('lease_status', $$SELECT idempotency.lease_status('ro-lease')$$),
    ('mutex_lock', $$SELECT idempotency.mutex_lock('ro-m')$$),
    ('mutex_try_lock', $$SELECT idempotency.mutex_try_lock('ro-m')$$),
    ('mutex_session_lock', $$SELECT idempotency.mutex_session_lock('ro-s')$$),
    ('mutex_session_try_lock', $$SELECT idempotency.mutex_session_try_lock('ro-s')$$),
    ('mutex_holders', $$SELECT idempotency.mutex_holders('ro-s')$$),
    ('mutex_session_unlock', $$SELECT idempotency.mutex_session_unlock('ro-s')$$),
    ('mutex_session_unlock_all', $$SELECT idempotency.mutex_session_unlock_all()$$)
) AS calls(f, sql);
SELECT fencing_token, holder FROM idempotency.lease_status('ro-lease');
SELECT count(*) AS mutex_holders FROM idempotency.mutex_holders('ro-m');
SELECT count(*) AS session_mutex_holders FROM idempotency.mutex_holders('ro-s');
COMMIT;

-- default_transaction_read_only gives the same error; the full message.
SET default_transaction_read_only = on;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT idempotency.claim('ro-new');
SELECT idempotency.purge();
\set VERBOSITY terse
RESET default_transaction_read_only;

-- Nothing changed, and a read-write transaction works again.
SELECT status, result FROM idempotency.claim('ro-done');
SELECT key, status FROM idempotency.processed_events
 WHERE key LIKE 'ro-%' ORDER BY key;
SELECT (item).name, created
  FROM idempotency.update_or_create(NULL::ro_items, '{"id": 1, "name": "uno"}');
SELECT idempotency.lease_release('ro-lease', :'ro_token');
SELECT idempotency.forget('ro-done'), idempotency.forget('ro-open');
DROP TABLE ro_items;
