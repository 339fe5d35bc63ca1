-- ShedLock's table (lease group and test/bench/instructions), and the same
-- table with the fillfactor of idempotency.leases.
DROP TABLE IF EXISTS bench_shedlock;
CREATE TABLE bench_shedlock (name varchar(64) PRIMARY KEY, lock_until timestamptz NOT NULL,
                             locked_at timestamptz NOT NULL, locked_by varchar(255) NOT NULL);
DROP TABLE IF EXISTS bench_shedlock_ff80;
CREATE TABLE bench_shedlock_ff80 (LIKE bench_shedlock INCLUDING ALL) WITH (fillfactor = 80);
