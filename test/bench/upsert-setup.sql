-- Shared setup of the upsert benchmark groups (test/bench/groups/1N-upsert-*):
-- a fresh accounts-like table and the hand-written idioms that
-- idempotent_upsert replaces.  Each group runs this first, then fills the
-- table the way it needs.
DROP TABLE IF EXISTS upsert_bench CASCADE;
DROP TABLE IF EXISTS upsert_bench_misses;
CREATE TABLE upsert_bench (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    name       text,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- the race group records here every call that returned no row
CREATE UNLOGGED TABLE upsert_bench_misses (idiom text);

-- The PL/pgSQL exception loop (the PostgreSQL manual's merge_db pattern).
CREATE OR REPLACE FUNCTION upsert_bench_plpgsql(p_email text) RETURNS upsert_bench
LANGUAGE plpgsql AS $$
DECLARE
    r upsert_bench;
BEGIN
    LOOP
        SELECT * INTO r FROM upsert_bench WHERE email = p_email;
        IF FOUND THEN
            RETURN r;
        END IF;
        BEGIN
            INSERT INTO upsert_bench (email) VALUES (p_email) RETURNING * INTO r;
            RETURN r;
        EXCEPTION WHEN unique_violation THEN
            -- someone else inserted it: look again
        END;
    END LOOP;
END $$;
