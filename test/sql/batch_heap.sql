--
-- A backend that runs the same batch again and again keeps the batch's
-- memory in its heap between calls, instead of giving it back to the
-- kernel after each call and faulting it in again during the next.  The
-- backend's minor page faults (Linux: /proc/self/stat) over 200 batches of
-- 1000 existing keys, in both forms, after 20 batches to settle: from 9 to
-- more than 100 per call when the memory goes back and forth (the JSON
-- form here: 163 on 15, 132 on 18), none when it stays.
--
\set VERBOSITY terse

CREATE TABLE bh (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, n int);
INSERT INTO bh (email) SELECT 'k' || g FROM generate_series(1, 5000) g;
CREATE FUNCTION minor_faults() RETURNS bigint LANGUAGE sql AS $$
    SELECT split_part(split_part(pg_read_file('/proc/self/stat'), ') ', 2),
                      ' ', 8)::bigint
$$;
CREATE FUNCTION faults_per_batch(form text) RETURNS numeric
LANGUAGE plpgsql AS $$
DECLARE
    keys text := (SELECT '{' || string_agg('k' || g, ',') || '}'
                  FROM generate_series(1001, 2000) g);
    rows text := (SELECT '[' || string_agg('{"email": "k' || g || '"}', ',') || ']'
                  FROM generate_series(1001, 2000) g);
    before bigint;
    n bigint;
BEGIN
    FOR i IN 1..220 LOOP
        IF i = 21 THEN
            before := minor_faults();
        END IF;
        IF form = 'columns' THEN
            SELECT count(*) INTO n FROM idempotency.idempotent_upsert_columns(
                NULL::bh, '{email}', NULL, keys::text[]);
        ELSE
            SELECT count(*) INTO n FROM idempotency.idempotent_upsert_many(
                NULL::bh, rows::jsonb);
        END IF;
        IF n <> 1000 THEN
            RAISE EXCEPTION 'batch returned % rows', n;
        END IF;
    END LOOP;
    RETURN round((minor_faults() - before) / 200.0, 1);
END $$;

-- each in a new backend
\c
SELECT faults_per_batch('columns') < 5 AS columns_kept;
\c
SELECT faults_per_batch('many') < 5 AS many_kept;
-- no batch inserted a row
SELECT count(*) FROM bh;

DROP FUNCTION faults_per_batch(text);
DROP FUNCTION minor_faults();
DROP TABLE bh;
