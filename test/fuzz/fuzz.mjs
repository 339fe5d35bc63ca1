// test/fuzz/fuzz.mjs -- a seeded, time-bounded fuzzer of the extension's SQL
// functions, run by test/suites/45-fuzz.sh (node-postgres).
//
// Generic SQL fuzzers rarely reach these functions, so this one generates
// random sequences of idempotency.* calls with hostile arguments (NULLs, empty
// and 1 MB strings, non-ASCII, extreme intervals, odd jsonb, wrong key_cols,
// stale or malformed tokens) against prepared tables with re-entering
// triggers, RLS, checked domains, expression indexes, partitions and a
// nondeterministic collation, and wraps them in transactions, savepoints,
// PL/pgSQL exception blocks, two-phase commit, small timeouts, disconnects,
// pg_terminate_backend, statements taking thousands of locks, and concurrent
// DDL (ADD/DROP COLUMN, GRANT/REVOKE, ANALYZE, CREATE/DROP INDEX, DISCARD ALL)
// from session 0.  Actual waits stay short: statement_timeout <= 5 s.
//
// Phases:
//   1. setup     a fresh database with the fuzz tables (schema "fuzz").
//   2. known     deterministic reproducers of defects found before; they run
//                every time, so the suite fails until the defect is fixed.
//   3. random    IDEM_FUZZ_SESSIONS concurrent sessions for the time budget.
//   4. final     no advisory lock of the extension and no prepared
//                transaction may be left once every session has ended.
//
// Failures: a server crash (log or restart), FATAL / PANIC / TRAP in the
// server log, a leaked lock at an idle point, a connection left inside a
// transaction by a call made outside one, SQLSTATE XX*** or messages starting
// with "unexpected" / "cache lookup failed" / "SPI_", and suspicious WARNINGs
// ("resource was not closed", "leaked", "snapshot ... still active" ...).
//
// Environment:
//   IDEM_FUZZ_SEED      seed (default: random; always printed)
//   IDEM_FUZZ_SECONDS   time budget of the random phase (default 60, max 120;
//                       IDEM_QUICK=1: 20)
//   IDEM_FUZZ_SESSIONS  concurrent sessions (default 4)
//   IDEM_FUZZ_LOGDIR    where the per-session statement logs go
//   IDEM_FUZZ_SERVER_LOG  the server's log file (crash / FATAL / WARNING scan)
//   IDEM_FUZZ_DB        database to (re)create (default idempotency_fuzz)
//   IDEM_FUZZ_PHASES    comma list of phases to run (default known,random)
//   IDEM_FUZZ_AVOID_KNOWN=1  do not generate the known defects' patterns in
//                       the random phase (lease_acquire waits, the flooding and
//                       invalidating triggers, non-row first arguments of
//                       idempotent_upsert_many), to look for other defects
//
// Output: "RESULT ok NAME" / "RESULT not-ok NAME :: REASON" lines for the
// suite, "# FINDING" lines as defects are found (one per distinct defect;
// "^^^ FINDING" marks the statement in the session log), then a summary:
// statements per function, errors per SQLSTATE, crashes.  At most 3 crashes:
// then the random phase ends.  Replay: in a fresh database with the
// extension available, psql -f setup.sql -f session-N.sql (from the log
// directory; statements in order, each result follows as a comment).
import pg from 'pg';
import fs from 'node:fs';
import path from 'node:path';

const env = process.env;
const SEED = env.IDEM_FUZZ_SEED && env.IDEM_FUZZ_SEED !== ''
  ? Number(env.IDEM_FUZZ_SEED) >>> 0
  : (Math.floor(Math.random() * 0xffffffff) >>> 0);
let SECONDS = Number(env.IDEM_FUZZ_SECONDS || (env.IDEM_QUICK === '1' ? 20 : 60));
if (!(SECONDS > 0)) SECONDS = 60;
SECONDS = Math.min(SECONDS, 120);
const NSESS = Math.max(1, Math.min(16, Number(env.IDEM_FUZZ_SESSIONS || 4)));
const LOGDIR = env.IDEM_FUZZ_LOGDIR || '.';
const SERVER_LOG = env.IDEM_FUZZ_SERVER_LOG || '';
const DB = env.IDEM_FUZZ_DB || 'idempotency_fuzz';
const PHASES = (env.IDEM_FUZZ_PHASES || 'known,random').split(',');
const AVOID_KNOWN = env.IDEM_FUZZ_AVOID_KNOWN === '1';
const ROLE = 'idem_fuzz_app';
const QUERY_TIMEOUT_MS = 20000;     // client-side backstop per statement
const MAX_CRASHES = 3;

fs.mkdirSync(LOGDIR, { recursive: true });
console.log(`# fuzz seed ${SEED} (IDEM_FUZZ_SEED=${SEED} to replay), ${SECONDS} s, ${NSESS} sessions, logs in ${LOGDIR}`);

// ---------------------------------------------------------------------------
// Results

const results = [];
function result(ok, name, reason = '') {
  results.push({ ok, name, reason });
  console.log(ok ? `RESULT ok ${name}` : `RESULT not-ok ${name} :: ${reason.replace(/\n/g, ' | ')}`);
}
// kind [/ variant] -> {count, first}: one line per distinct defect
const findings = new Map();
function finding(kind, detail, variant = '', session = null) {
  const key = variant ? `${kind} / ${variant}` : kind;
  if (session) session.log(`-- ^^^ FINDING ${key}`);
  const f = findings.get(key);
  if (f) { f.count++; return; }
  findings.set(key, { count: 1, first: detail });
  console.log(`# FINDING ${key}: ${detail.replace(/\n/g, ' | ').slice(0, 2000)}`);
}
const pidSession = new Map();   // backend pid -> session number
const terminatedPids = new Set();   // backends the fuzzer terminated on purpose
const sessionList = [];

// ---------------------------------------------------------------------------
// PRNG (mulberry32), one stream per session so that a seed replays the
// same statement sequences.

function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = {
    next,
    int: (n) => Math.floor(next() * n),
    chance: (p) => next() < p,
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    // weighted: [[w, value], ...]
    wpick: (pairs) => {
      let tot = 0;
      for (const [w] of pairs) tot += w;
      let x = next() * tot;
      for (const [w, v] of pairs) { if ((x -= w) < 0) return v; }
      return pairs[pairs.length - 1][1];
    },
  };
  return r;
}

// ---------------------------------------------------------------------------
// SQL literals

const lit = (s) => (s === null ? 'NULL' : `'${String(s).replace(/'/g, "''")}'`);
// A value is either {sql: 'expression'} or a JS string / null.
const sqlv = (v) => (v !== null && typeof v === 'object' && 'sql' in v ? v.sql : lit(v));
const huge = (n = 1048576, ch = 'x') => ({ sql: `repeat(${lit(ch)}, ${n})` });

// ---------------------------------------------------------------------------
// Server log monitor

const SERVER_CRASH = /terminated by signal|server process \(PID \d+\) was terminated|all server processes terminated; reinitializing|was terminated by exception/;
// PostgreSQL gives a savepoint its xid before it locks that xid; when the
// lock table is full (53200, which genMass below causes on purpose) the lock
// fails and the error aborts only the inner savepoint, so the outer one,
// committed later (RELEASE, COMMIT), releases a lock it never got: "you
// don't own a lock of type ExclusiveLock".  Expected, after a 53200 in the
// same transaction; anywhere else it is a finding.  Judged on the notice the
// session receives (every backend sends its warnings to its client), not on
// the server log's copy, which does not say in which transaction it came.
const XID_LOCK_LOST = /you don't own a lock of type ExclusiveLock/;
const BAD_WARNING = /resource was not closed|leaked|leak |snapshot .*still active|subtransaction left non-empty|still referenced|you don't own a lock|buffer refcount|relcache reference|catcache reference|tupdesc reference|plancache reference|not closed/i;
// (the fuzzer fills the shared lock table on purpose: connections starting
// meanwhile fail with "out of shared memory")
const FATAL_EXPECTED = /out of shared memory|connection to client lost|the database system is (in recovery mode|starting up|shutting down|not yet accepting connections)|terminating connection because of crash of another server process|canceling authentication due to timeout/;

class LogMonitor {
  constructor(file) {
    this.file = file;
    this.offset = 0;
    this.partial = '';
    this.crashes = [];
    this.events = [];        // {kind, line}
    this.recentFatal = [];
    if (file && fs.existsSync(file)) this.offset = fs.statSync(file).size;
  }
  poll() {
    if (!this.file || !fs.existsSync(this.file)) return;
    const size = fs.statSync(this.file).size;
    if (size < this.offset) this.offset = 0;
    if (size === this.offset) return;
    const fd = fs.openSync(this.file, 'r');
    const len = Math.min(size - this.offset, 64 * 1024 * 1024);
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, this.offset);
    fs.closeSync(fd);
    this.offset += len;
    const text = this.partial + buf.toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop();
    let prev = '';
    for (const line of lines) {
      this.scan(line, prev);
      prev = line;
    }
  }
  scan(line, prev) {
    const l = line.length > 3000 ? line.slice(0, 3000) + '…' : line;
    if (SERVER_CRASH.test(l)) {
      if (!/all server processes terminated/.test(l)) this.crashes.push(l);
      this.events.push({ kind: 'crash', line: l });
    } else if (/Failed process was running:/.test(l)) {
      this.events.push({ kind: 'crash-statement', line: l });
      if (this.crashes.length) this.crashes[this.crashes.length - 1] += ' | ' + l.replace(/^.*?DETAIL:\s*/, '');
    } else if (/TRAP:|[Aa]ssert(ion)? fail/.test(l)) {
      this.events.push({ kind: 'assertion', line: l });
    } else if (/\b(FATAL|PANIC):/.test(l)) {
      const pid = /\[(\d+)\]/.exec(l);
      const killed = pid && terminatedPids.has(Number(pid[1])) && /terminating connection due to administrator command/.test(l);
      if (!FATAL_EXPECTED.test(l) && !killed) this.events.push({ kind: /PANIC:/.test(l) ? 'panic' : 'fatal', line: l });
    } else if (/\bWARNING:/.test(l) && BAD_WARNING.test(l)) {
      // that one is judged where the session receives it (Session.run)
      if (!XID_LOCK_LOST.test(l)) this.events.push({ kind: 'warning', line: l });
    }
  }
  take() {
    this.poll();
    const e = this.events;
    this.events = [];
    return e;
  }
}
const logmon = new LogMonitor(SERVER_LOG);

// ---------------------------------------------------------------------------
// Connections

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function connect(database = DB, appname = 'fuzz') {
  const c = new pg.Client({
    database,
    application_name: appname,
    connectionTimeoutMillis: 10000,
    query_timeout: QUERY_TIMEOUT_MS,
  });
  c.txStatus = 'I';
  c.notices = [];
  c.on('error', (e) => { c.dead = e; });
  c.on('notice', (n) => c.notices.push(n));
  c.on('end', () => { c.dead = c.dead || new Error('connection ended'); });
  await c.connect();
  c.rfq = 0;
  c.connection.on('readyForQuery', (m) => {
    c.txStatus = m.status;
    c.rfq++;
    if (c.rfqWake) c.rfqWake();
  });
  const r = await c.query('SELECT pg_backend_pid() AS pid');
  c.pid = r.rows[0].pid;
  return c;
}

// Run a statement and wait for its ReadyForQuery: node-postgres rejects on
// the ErrorResponse, before the server reports the transaction status.
async function query(c, sql) {
  const before = c.rfq;
  const waitRfq = async () => {
    const until = Date.now() + 5000;
    while (c.rfq === before && !c.dead && Date.now() < until) {
      await new Promise((res) => { c.rfqWake = res; setTimeout(res, 50); });
    }
    c.rfqWake = null;
  };
  try {
    const r = await c.query(sql);
    await waitRfq();
    return r;
  } catch (e) {
    await waitRfq();
    throw e;
  }
}

function destroy(c) {
  if (!c) return;
  c.deliberateClose = true;
  try { c.connection.stream.destroy(); } catch { /* gone */ }
  try { c.end().catch(() => {}); } catch { /* gone */ }
}

// The server accepts connections and runs a query (waits for a restart).
async function waitServer(seconds = 90) {
  const until = Date.now() + seconds * 1000;
  let last;
  while (Date.now() < until) {
    try {
      const c = await connect('postgres', 'fuzz-health');
      const r = await c.query('SELECT pg_postmaster_start_time()::text AS t');
      await c.end();
      return r.rows[0].t;
    } catch (e) { last = e; }
    await sleep(500);
  }
  throw new Error(`server did not accept connections for ${seconds} s: ${last && last.message}`);
}

// ---------------------------------------------------------------------------
// Setup

const SETUP = String.raw`
SET client_min_messages = warning;
CREATE EXTENSION idempotency;
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${ROLE}') THEN
    CREATE ROLE ${ROLE} NOLOGIN;
  END IF;
END $$;
GRANT ${ROLE} TO CURRENT_USER;
CREATE SCHEMA fuzz;
GRANT USAGE ON SCHEMA fuzz TO ${ROLE};

CREATE TABLE fuzz.side (k text PRIMARY KEY, v text, n int);
CREATE TABLE fuzz.wide (k bigint PRIMARY KEY, c1 int, c2 int, c3 int, c4 int, c5 int,
  c6 int, c7 int, c8 int, c9 int, c10 int, c11 int);

-- a domain whose CHECK function re-enters the extension or invalidates
CREATE FUNCTION fuzz.check_val(v text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  IF v LIKE 'self-%' THEN
    -- invalidate the table being written, then re-enter with the same columns
    IF v LIKE 'self-grant%' THEN EXECUTE 'GRANT SELECT ON fuzz.plain TO ${ROLE}'; END IF;
    IF v LIKE 'self-analyze%' THEN ANALYZE fuzz.plain; END IF;
    PERFORM idempotency.idempotent_upsert(NULL::fuzz.plain, jsonb_build_object('email', 'inner-' || left(v, 100), 'd', 'x'));
  ELSIF v LIKE 'reenter%' THEN
    PERFORM idempotency.idempotent_upsert(NULL::fuzz.side, jsonb_build_object('k', left(v, 100)));
    PERFORM idempotency.mutex_try_lock(left(v, 100));
  ELSIF v LIKE 'analyze%' THEN
    ANALYZE fuzz.plain;
  ELSIF v LIKE 'grant%' THEN
    EXECUTE 'GRANT SELECT ON fuzz.plain TO ${ROLE}';
  ELSIF v LIKE 'raise%' THEN
    RAISE EXCEPTION 'domain check raised' USING ERRCODE = '23514';
  END IF;
  RETURN length(v) < 2000000;
END $f$;
CREATE DOMAIN fuzz.checked AS text CHECK (fuzz.check_val(VALUE));
CREATE DOMAIN fuzz.posint AS int CHECK (VALUE > 0);

CREATE TABLE fuzz.plain (
  id bigserial PRIMARY KEY,
  email text UNIQUE,
  name text,
  n fuzz.posint,
  j jsonb,
  d fuzz.checked,
  t timestamptz DEFAULT now(),
  g int GENERATED ALWAYS AS (n * 2) STORED
);
CREATE UNIQUE INDEX plain_lower_email ON fuzz.plain (lower(email));

-- BEFORE INSERT re-enters the extension on another table; BEFORE UPDATE
-- suppresses the update
CREATE TABLE fuzz.trig (k text PRIMARY KEY, v text, n int);
CREATE FUNCTION fuzz.trig_ins() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM idempotency.get_or_create(NULL::fuzz.side, jsonb_build_object('k', 'from-trig:' || left(NEW.k, 50), 'v', NEW.v));
  PERFORM * FROM idempotency.idempotent_upsert_many(NULL::fuzz.side,
      jsonb_build_array(jsonb_build_object('k', 'm1:' || left(NEW.k, 50)), jsonb_build_object('k', 'm2:' || left(NEW.k, 50), 'n', NEW.n)));
  IF NEW.v = 'mark' THEN PERFORM idempotency.mark_processed(left(NEW.k, 100), 'trig'); END IF;
  IF NEW.v = 'lease' THEN PERFORM idempotency.lease_acquire('trig:' || left(NEW.k, 100)); END IF;
  IF NEW.v = 'skip' THEN RETURN NULL; END IF;
  IF NEW.v = 'rekey' THEN NEW.k := NEW.k || '-rekeyed'; END IF;
  RETURN NEW;
END $f$;
CREATE TRIGGER trig_ins BEFORE INSERT ON fuzz.trig FOR EACH ROW EXECUTE FUNCTION fuzz.trig_ins();
CREATE FUNCTION fuzz.trig_upd() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF NEW.v = 'keep' THEN RETURN NEW; END IF;
  RETURN NULL;
END $f$;
CREATE TRIGGER trig_upd BEFORE UPDATE ON fuzz.trig FOR EACH ROW EXECUTE FUNCTION fuzz.trig_upd();

-- BEFORE INSERT that fills the upsert cache with more than 1024 column sets
CREATE TABLE fuzz.flood (k int PRIMARY KEY, v text);
CREATE FUNCTION fuzz.flood_ins() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE o jsonb;
BEGIN
  IF NEW.v LIKE 'flood%' THEN
    FOR i IN 1..1100 LOOP
      o := jsonb_build_object('k', NEW.k::bigint * 10000 + i);
      FOR b IN 0..10 LOOP
        IF (i >> b) & 1 = 1 THEN o := o || jsonb_build_object('c' || (b + 1), i); END IF;
      END LOOP;
      PERFORM idempotency.idempotent_upsert(NULL::fuzz.wide, o);
    END LOOP;
  END IF;
  RETURN NEW;
END $f$;
CREATE TRIGGER flood_ins BEFORE INSERT ON fuzz.flood FOR EACH ROW EXECUTE FUNCTION fuzz.flood_ins();

-- BEFORE INSERT that invalidates its own table and re-enters with the same columns
CREATE TABLE fuzz.inval (k int PRIMARY KEY, v text);
CREATE FUNCTION fuzz.inval_ins() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF pg_trigger_depth() < 2 AND NEW.v IS NOT NULL THEN
    IF NEW.v LIKE 'grant%' THEN EXECUTE 'GRANT SELECT ON fuzz.inval TO ${ROLE}'; END IF;
    IF NEW.v LIKE 'analyze%' THEN ANALYZE fuzz.inval; END IF;
    IF NEW.v LIKE '%reenter' THEN
      PERFORM idempotency.idempotent_upsert(NULL::fuzz.inval, jsonb_build_object('k', NEW.k + 100000, 'v', 'inner'));
    END IF;
  END IF;
  RETURN NEW;
END $f$;
CREATE TRIGGER inval_ins BEFORE INSERT ON fuzz.inval FOR EACH ROW EXECUTE FUNCTION fuzz.inval_ins();

-- row level security: the app role sees only its own rows
CREATE TABLE fuzz.rls (k int PRIMARY KEY, owner name NOT NULL DEFAULT current_user, v text);
ALTER TABLE fuzz.rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY rls_sel ON fuzz.rls FOR SELECT USING (owner = current_user);
CREATE POLICY rls_ins ON fuzz.rls FOR INSERT WITH CHECK (true);
CREATE POLICY rls_upd ON fuzz.rls FOR UPDATE USING (owner = current_user AND v IS DISTINCT FROM 'frozen');

-- partitioned
CREATE TABLE fuzz.part (k int, sub text, v text, PRIMARY KEY (k, sub)) PARTITION BY HASH (k);
CREATE TABLE fuzz.part_0 PARTITION OF fuzz.part FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE fuzz.part_1 PARTITION OF fuzz.part FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE fuzz.part_2 PARTITION OF fuzz.part FOR VALUES WITH (MODULUS 3, REMAINDER 2);

-- NULLS NOT DISTINCT, inheritance
CREATE TABLE fuzz.nnd (a int, b text, v text);
CREATE UNIQUE INDEX nnd_ab ON fuzz.nnd (a, b) NULLS NOT DISTINCT;
CREATE TABLE fuzz.parent (k int PRIMARY KEY, v text);
CREATE TABLE fuzz.child (extra text) INHERITS (fuzz.parent);

-- types without an equality operator (compared as text), identity, enum,
-- composite, range, arrays
CREATE TYPE fuzz.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE fuzz.pair AS (a int, b text);
CREATE TABLE fuzz.odd (
  id int GENERATED ALWAYS AS IDENTITY,
  k text PRIMARY KEY,
  js json, pt point, x xml, arr int[], rng int4range, m fuzz.mood, p fuzz.pair,
  bits varbit, ts tsvector, num numeric(10, 2), b bytea, f float8
);

GRANT ALL ON ALL TABLES IN SCHEMA fuzz TO ${ROLE};
GRANT ALL ON ALL SEQUENCES IN SCHEMA fuzz TO ${ROLE};
`;

const SETUP_ICU = String.raw`
CREATE COLLATION fuzz.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE fuzz.coll (id serial, name text COLLATE fuzz.ci, v text);
CREATE UNIQUE INDEX coll_name ON fuzz.coll (name);
GRANT ALL ON fuzz.coll TO ${ROLE};
GRANT ALL ON SEQUENCE fuzz.coll_id_seq TO ${ROLE};
`;

let haveICU = false;

async function setup() {
  const c = await connect('postgres', 'fuzz-setup');
  await c.query(`SET client_min_messages = warning`);
  await c.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await c.query(`CREATE DATABASE ${DB}`);
  // the statements logged for an error can hold 1 MB strings
  await c.query(`ALTER DATABASE ${DB} SET log_min_error_statement = panic`);
  await c.query(`ALTER DATABASE ${DB} SET log_error_verbosity = terse`);
  await c.query(`ALTER DATABASE ${DB} SET statement_timeout = '5s'`);
  await c.query(`ALTER DATABASE ${DB} SET lock_timeout = '3s'`);
  await c.query(`ALTER DATABASE ${DB} SET idle_in_transaction_session_timeout = 0`);
  // backends of connections the fuzzer dropped notice it during long waits
  await c.query(`ALTER DATABASE ${DB} SET client_connection_check_interval = '1s'`);
  await c.end();
  const d = await connect(DB, 'fuzz-setup');
  fs.writeFileSync(path.join(LOGDIR, 'setup.sql'), `-- fuzz seed ${SEED}: the schema the session logs run against\n${SETUP}\n${SETUP_ICU}`);
  await d.query(SETUP);
  try {
    await d.query(SETUP_ICU);
    haveICU = true;
  } catch (e) {
    console.log(`# no nondeterministic ICU collation (${e.message}): skipping fuzz.coll`);
  }
  await d.end();
}

// ---------------------------------------------------------------------------
// Argument generators

const KEYS = ['k1', 'k2', 'k3', 'k4', 'k5', 'shared', 'ünïcødé✓', 'ключ', '键', "o'quote", 'back\\slash', ' ', 'k\ttab'];

function genKey(r) {
  return r.wpick([
    [60, () => r.pick(KEYS)],
    [6, () => null],
    [6, () => ''],
    [3, () => huge(1024, 'k')],
    [3, () => huge(1025, 'k')],
    [2, () => huge(1048576, 'é')],
    [2, () => huge(257, 's')],
    [4, () => `rand-${r.int(1000)}`],
    [2, () => ({ sql: `chr(${1 + r.int(0x2fff)})` })],
  ])();
}
function genScope(r) {
  return r.wpick([[50, () => undefined], [20, () => ''], [10, () => 'api'], [5, () => null],
    [3, () => huge(256, 's')], [3, () => huge(257, 's')], [3, () => 'scöpe'], [1, () => huge(1048576)]])();
}
const INTERVALS_BAD = ['106751991 days', '1000 years 1 day', '-1 s', '178000000 years', '-106751991 days', '1000 years', '12000 mons'];
const INTERVALS_OK = ['1 ms', '50 ms', '200 ms', '1 s', '5 minutes', '30 days', '1 mon', '0', '00:00:00.000001'];
function genInterval(r, kind) {
  // kind: 'wait' (actual waiting: keep small), 'ttl'
  const bad = r.chance(0.15);
  if (r.chance(0.05)) return undefined;
  if (r.chance(0.05)) return null;
  if (bad) return r.pick(INTERVALS_BAD);
  if (kind === 'wait') return r.pick(['0', '0', '0', '10 ms', '100 ms', '1 s', '30 days', '2 s']);
  return r.pick(INTERVALS_OK);
}
function genBool(r) { return r.wpick([[45, true], [45, false], [5, null], [5, undefined]]); }
function boolSql(b) { return b === null ? 'NULL' : String(b); }

function genJsonScalar(r) {
  return r.pick([() => r.int(1000), () => -r.int(1e9), () => 1.5e300, () => 'str', () => 'ünï', () => true, () => null, () => '', () => '0'])();
}
function genJsonValue(r, depth = 0) {
  if (depth > 3 || r.chance(0.5)) return genJsonScalar(r);
  if (r.chance(0.5)) {
    const o = {};
    const n = r.int(4);
    for (let i = 0; i < n; i++) o[r.pick(['a', 'b', 'ä', 'k', 'status', 'n', ''])] = genJsonValue(r, depth + 1);
    return o;
  }
  return Array.from({ length: r.int(4) }, () => genJsonValue(r, depth + 1));
}
// An arbitrary jsonb argument (payload, result, error).
function genJsonb(r) {
  return r.wpick([
    [40, () => ({ sql: `${lit(JSON.stringify(genJsonValue(r, 1) ?? {}))}::jsonb` })],
    [20, () => ({ sql: `${lit(JSON.stringify({ a: r.int(3), b: 'x' }))}::jsonb` })],
    [10, () => null],
    [5, () => undefined],
    [5, () => ({ sql: `'[1,2,3]'::jsonb` })],
    [5, () => ({ sql: `'"scalar"'::jsonb` })],
    [3, () => ({ sql: `jsonb_build_object('big', repeat('x', 1048576))` })],
    [3, () => ({ sql: `(SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 5000) i)` })],
    [2, () => ({ sql: `(SELECT jsonb_agg(i) FROM generate_series(1, 10000) i)` })],
    [2, () => ({ sql: `'{}'::jsonb` })],
  ])();
}

// Tokens seen in results (claims, leases) plus junk.
class TokenPool {
  constructor() { this.toks = []; }
  add(t) { if (t && !this.toks.includes(t)) { this.toks.push(t); if (this.toks.length > 50) this.toks.shift(); } }
  gen(r) {
    return r.wpick([
      [50, () => (this.toks.length ? { sql: `${lit(r.pick(this.toks))}::uuid` } : null)],
      [15, () => null],
      [10, () => undefined],
      [10, () => ({ sql: 'gen_random_uuid()' })],
      [5, () => ({ sql: `'00000000-0000-0000-0000-000000000000'::uuid` })],
      [5, () => ({ sql: `'not-a-uuid'` })],
      [5, () => ({ sql: `''` })],
    ])();
  }
}

// Named-argument list; undefined = omitted (default).
function args(list) {
  return list.filter(([, v]) => v !== undefined)
    .map(([n, v]) => (n ? `${n} => ${typeof v === 'boolean' || v === null ? boolSql(v) : sqlv(v)}` : sqlv(v)))
    .join(', ');
}
// Positional first argument, then named ones.
function call(fn, first, named) {
  const rest = args(named);
  const a = [first, rest].filter((x) => x !== '').join(', ');
  return { fn, sql: `SELECT * FROM idempotency.${fn}(${a})` };
}

// Tables and their columns for upsert vals.
function tables(r) {
  const T = [
    { name: 'fuzz.plain', keys: [['id'], ['email']], cols: {
      id: () => r.pick([1, 2, 3, r.int(100), -1, null, '1', 'x']),
      email: () => r.pick(['a@x', 'A@X', 'b@x', 'ü@x', null, '', `e${r.int(20)}@x`]),
      name: () => r.pick(['n', null, 'ñ', 1]),
      n: () => r.pick([1, 5, 0, -1, null, 'x', 2147483647, 99999999999]),
      j: () => r.pick([{ a: 1 }, [1], 'x', null, { nested: { deep: [1, { x: 2 }] } }]),
      d: () => r.pick(['ok', 'reenter-' + r.int(5), 'analyze', 'grant', 'raise', null, '',
        ...(AVOID_KNOWN ? [] : ['self-grant', 'self-analyze', 'self-plain'])]),
      t: () => r.pick(['2026-01-01', 'infinity', 'garbage', null]),
      g: () => 1,
      nope: () => 1,
    } },
    { name: 'fuzz.trig', keys: [['k']], cols: {
      k: () => r.pick(['t1', 't2', `t${r.int(30)}`, null, 'ü']),
      v: () => r.pick(['keep', 'mark', 'lease', 'skip', 'rekey', 'plain', null]),
      n: () => r.pick([1, null, 'x']),
    } },
    { name: 'fuzz.rls', keys: [['k']], cols: {
      k: () => r.int(10), owner: () => r.pick(['postgres', ROLE, 'nobody']), v: () => r.pick(['a', 'frozen', null]) } },
    { name: 'fuzz.part', keys: [['k', 'sub']], cols: {
      k: () => r.pick([1, 2, 3, r.int(50), null]), sub: () => r.pick(['a', 'b', null, 'ü']), v: () => r.pick(['x', null]) } },
    { name: 'fuzz.nnd', keys: [['a', 'b']], cols: {
      a: () => r.pick([1, 2, null]), b: () => r.pick(['x', null]), v: () => r.pick(['v', null]) } },
    { name: 'fuzz.parent', keys: [['k']], cols: { k: () => r.int(10), v: () => r.pick(['p', null]) } },
    { name: 'fuzz.child', keys: [], cols: { k: () => r.int(10), v: () => 'c', extra: () => 'e' } },
    { name: 'fuzz.side', keys: [['k']], cols: { k: () => r.pick(['s1', 's2', null]), v: () => 'x', n: () => r.int(5) } },
    { name: 'fuzz.inval', keys: [['k']], cols: {
      k: () => r.int(50), v: () => r.pick(['x', 'grant', 'analyze', ...(AVOID_KNOWN ? [] : ['grant-reenter', 'analyze-reenter', 'reenter'])]) } },
    { name: 'fuzz.flood', keys: [['k']], cols: {
      k: () => r.int(1000), v: () => (AVOID_KNOWN ? 'x' : r.pick(['x', 'x', 'x', 'flood'])) } },
    { name: 'fuzz.odd', keys: [['k']], cols: {
      k: () => r.pick(['o1', 'o2', `o${r.int(10)}`, null]),
      id: () => 1,
      js: () => r.pick([{ a: 1 }, '{"a": 1}', '{"a":1}', [1], null, 'x']),
      pt: () => r.pick(['(1,2)', '(1, 2)', 'bad', null]),
      x: () => r.pick(['<a/>', '<a></a>', '<bad', null]),
      arr: () => r.pick([[1, 2], '{1,2}', [[1], [2]], [null], 'x', null]),
      rng: () => r.pick(['[1,5)', '[1,4]', 'empty', '(,)', 'x', null]),
      m: () => r.pick(['sad', 'happy', 'angry', null]),
      p: () => r.pick([{ a: 1, b: 'x' }, '(1,x)', { a: 'x' }, null]),
      bits: () => r.pick(['101', '2', null]),
      ts: () => r.pick(['a b', 'ü:1', null]),
      num: () => r.pick([1.005, '1e10', 'NaN', -0, null]),
      b: () => r.pick(['\\x00ff', 'plain', null]),
      f: () => r.pick([1.5, 'NaN', 'Infinity', '-0', null]),
    } },
    { name: 'pg_catalog.pg_class', keys: [], cols: { oid: () => 1 } },
    { name: 'information_schema.tables', keys: [], cols: { x: () => 1 } },
  ];
  if (haveICU) T.push({ name: 'fuzz.coll', keys: [['name']], cols: {
    name: () => r.pick(['Ada', 'ADA', 'ada', 'Ädä', 'b', null]), v: () => 'v' } });
  return T;
}

function genRow(r, t) {
  const o = {};
  const names = Object.keys(t.cols);
  // usually the key columns plus a few others
  if (t.keys.length && r.chance(0.85)) for (const k of r.pick(t.keys)) o[k] = t.cols[k]();
  for (const n of names) if (r.chance(/^(nope|g|oid|x)$/.test(n) ? 0.04 : 0.25)) o[n] = t.cols[n]();
  if (r.chance(0.05)) o[r.pick([`no_such_${r.int(3)}`, 'ctid', 'xmin', 'tableoid', '', 'K', '"k"', 'k '])] = 1;
  return o;
}
function genVals(r, t, many) {
  const w = r.wpick([
    [80, 'ok'], [3, 'null'], [3, 'empty'], [3, 'array'], [3, 'scalar'], [3, 'huge'], [2, 'nested'], [2, 'manyrows'],
  ]);
  switch (w) {
    case 'null': return null;
    case 'empty': return { sql: many ? `'[]'::jsonb` : `'{}'::jsonb` };
    case 'array': return { sql: many ? `'[1, "x", null]'::jsonb` : `'[{"k": 1}]'::jsonb` };
    case 'scalar': return { sql: `'7'::jsonb` };
    case 'nested': return { sql: `${lit(JSON.stringify(many ? [[genRow(r, t)]] : { x: genRow(r, t) }))}::jsonb` };
    case 'huge': {
      const k = t.keys.length ? t.keys[0][0] : 'k';
      const o = `jsonb_build_object(${lit(k)}, repeat('h', 1048576))`;
      return { sql: many ? `jsonb_build_array(${o}, ${o})` : o };
    }
    case 'manyrows': {
      if (!many) return { sql: `${lit(JSON.stringify(genRow(r, t)))}::jsonb` };
      return { sql: `(SELECT jsonb_agg(jsonb_build_object('k', i % 37, 'id', i % 37, 'email', 'm' || i % 41 || '@x', 'sub', 'a', 'a', i % 3, 'b', 'x', 'name', 'n' || i)) FROM generate_series(1, ${r.pick([10, 300, 3000])}) i)` };
    }
    default:
      if (many) return { sql: `${lit(JSON.stringify(Array.from({ length: 1 + r.int(6) }, () => genRow(r, t))))}::jsonb` };
      return { sql: `${lit(JSON.stringify(genRow(r, t)))}::jsonb` };
  }
}
// ---------------------------------------------------------------------------
// Statement generators: each returns {fn, sql}

function genUpsert(r) {
  const t = r.pick(tables(r));
  const fn = r.pick(['idempotent_upsert', 'get_or_create', 'update_or_create', 'idempotent_upsert_many']);
  const many = fn === 'idempotent_upsert_many';
  const vals = genVals(r, t, many);
  let kc = r.wpick([
    [70, undefined],
    [10, 'good'], [4, 'empty'], [4, 'nosuch'], [3, 'nullelem'], [3, 'null'], [3, 'dup'], [3, 'other'],
  ]);
  switch (kc) {
    case 'good': kc = t.keys.length ? { sql: `ARRAY[${r.pick(t.keys).map(lit).join(', ')}]` } : null; break;
    case 'empty': kc = { sql: `'{}'::text[]` }; break;
    case 'nosuch': kc = { sql: `ARRAY['no_such_col']` }; break;
    case 'nullelem': kc = { sql: `ARRAY[NULL]::text[]` }; break;
    case 'null': kc = null; break;
    case 'dup': kc = { sql: `ARRAY['k', 'k']` }; break;
    case 'other': kc = { sql: `ARRAY[${Object.keys(t.cols).slice(0, 1 + r.int(3)).map(lit).join(', ')}]` }; break;
    default: break;
  }
  const odd = AVOID_KNOWN && many ? ['NULL::record'] : ['NULL::int', "'x'::text", 'NULL::record', `ROW(1)::${t.name}`];
  const first = r.chance(0.97) ? `NULL::${t.name}` : r.pick(odd);
  return call(fn, first, [['vals', vals], ['key_cols', kc]]);
}

// idempotent_upsert_columns: rows of genRow as one array per column, mostly
// as untyped literals (read as arrays of the columns' types), sometimes of
// a wrong type, NULL, short, two-dimensional, too few, or a name repeated.
function arrElem(v) {
  if (v === null || v === undefined) return 'NULL';
  const s = typeof v === 'object' ? JSON.stringify(v) : String(v);
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}
function genColumns(r) {
  const t = r.pick(tables(r));
  const rows = Array.from({ length: r.pick([0, 1, 2, 5, 40]) }, () => genRow(r, t));
  let names = [...new Set(rows.flatMap((o) => Object.keys(o)))];
  if (!names.length) names = t.keys.length ? [...r.pick(t.keys)] : ['k'];
  if (r.chance(0.04)) names.push(r.pick(names));
  const arrays = names.map((n) => {
    const elems = rows.map((o) => arrElem(o[n]));
    switch (r.wpick([[85, 'lit'], [4, 'text'], [3, 'int'], [3, 'null'], [2, 'short'], [2, '2d'], [1, 'variadic']])) {
      case 'text': return `${lit(`{${elems.join(',')}}`)}::text[]`;
      case 'int': return `ARRAY[${rows.map(() => r.int(5)).join(', ')}]::int[]`;
      case 'null': return 'NULL::text[]';
      case 'short': return lit(`{${elems.slice(1).join(',')}}`);
      case '2d': return lit(`{${elems.map((e) => `{${e}}`).join(',')}}`);
      case 'variadic': return `VARIADIC ARRAY[${lit(`{${elems.join(',')}}`)}::text[]]`;
      default: return lit(`{${elems.join(',')}}`);
    }
  });
  // VARIADIC only as the last argument, alone
  const v = arrays.findIndex((a) => a.startsWith('VARIADIC'));
  const vals = v >= 0 ? [arrays[v]] : (r.chance(0.03) ? arrays.slice(1) : arrays);
  if (!vals.length) vals.push(`'{}'`);
  const cols = r.chance(0.03) ? 'NULL' : `${lit(`{${names.map(arrElem).join(',')}}`)}::text[]`;
  const kc = r.wpick([[80, 'NULL'], [10, t.keys.length ? `ARRAY[${r.pick(t.keys).map(lit).join(', ')}]` : 'NULL'],
    [5, `ARRAY['no_such_col']`], [5, `'{}'::text[]`]]);
  const first = r.chance(0.97) ? `NULL::${t.name}` : r.pick(['NULL::int', "'x'::text", 'NULL::record']);
  return { fn: 'idempotent_upsert_columns',
    sql: `SELECT * FROM idempotency.idempotent_upsert_columns(${first}, ${cols}, ${kc}, ${vals.join(', ')})` };
}

function genEvents(r, toks) {
  const fn = r.wpick([[20, 'mark_processed'], [30, 'claim'], [15, 'complete'], [15, 'fail'], [10, 'forget'], [5, 'purge']]);
  const key = genKey(r);
  switch (fn) {
    case 'mark_processed':
      return call(fn, sqlv(key), [['scope', genScope(r)], ['ttl', genInterval(r, 'ttl')]]);
    case 'claim':
      return call(fn, sqlv(key), [['payload', genJsonb(r)], ['scope', genScope(r)], ['lease', genInterval(r, 'ttl')],
        ['ttl', genInterval(r, 'ttl')], ['wait', genInterval(r, 'wait')], ['require_complete', genBool(r)]]);
    case 'complete':
      return call(fn, sqlv(key), [['result', genJsonb(r)], ['scope', genScope(r)], ['token', toks.gen(r)]]);
    case 'fail':
      return call(fn, sqlv(key), [['error', genJsonb(r)], ['retryable', genBool(r)], ['scope', genScope(r)], ['token', toks.gen(r)]]);
    case 'forget':
      return call(fn, sqlv(key), [['scope', genScope(r)]]);
    default:
      return call(fn, '', [['batch_size', r.pick([undefined, null, { sql: '0' }, { sql: '-1' }, { sql: '1' }, { sql: '10' }, { sql: '10000' }, { sql: '2147483647' }])]]);
  }
}

function genMutex(r) {
  const fn = r.wpick([[20, 'mutex_lock'], [15, 'mutex_try_lock'], [12, 'mutex_session_lock'], [10, 'mutex_session_try_lock'],
    [15, 'mutex_session_unlock'], [5, 'mutex_session_unlock_all'], [8, 'mutex_holders']]);
  const key = genKey(r);
  switch (fn) {
    case 'mutex_lock': case 'mutex_session_lock':
      return call(fn, sqlv(key), [['timeout', genInterval(r, 'wait')], ['shared', genBool(r)]]);
    case 'mutex_try_lock': case 'mutex_session_try_lock': case 'mutex_session_unlock':
      return call(fn, sqlv(key), [['shared', genBool(r)]]);
    case 'mutex_session_unlock_all':
      return call(fn, '', []);
    default:
      return call(fn, sqlv(key), []);
  }
}

function genLease(r, toks) {
  const fn = r.wpick([[35, 'lease_acquire'], [15, 'lease_renew'], [15, 'lease_release'], [10, 'lease_status'], [10, 'lease_assert']]);
  const key = genKey(r);
  switch (fn) {
    case 'lease_acquire': {
      const ttl = r.chance(0.1) ? r.pick(INTERVALS_BAD) : genInterval(r, 'ttl');
      let wait = genInterval(r, 'wait');
      // any error inside the wait (bad ttl, cancel) is the known defect
      if (AVOID_KNOWN && wait !== undefined && wait !== null && !/^-/.test(wait)) wait = '0';
      return call(fn, sqlv(key), [['ttl', ttl], ['holder', r.pick([undefined, null, 'w1', 'wörker', huge(1025, 'h')])],
        ['if_match', toks.gen(r)], ['wait', wait]]);
    }
    case 'lease_renew':
      return call(fn, sqlv(key), [['token', toks.gen(r) ?? null], ['ttl', genInterval(r, 'ttl')]]);
    case 'lease_release':
      return call(fn, sqlv(key), [['token', toks.gen(r)]]);
    case 'lease_status':
      return call(fn, sqlv(key), []);
    default:
      return call(fn, sqlv(key), [['token', toks.gen(r) ?? null]]);
  }
}

// Many locks in one statement: fills the shared lock table (53200), which
// must leave neither a mutex nor its marker behind.
function genMass(r) {
  const n = r.pick([100, 2000, 20000]);
  const fn = r.pick(['mutex_session_try_lock', 'mutex_session_lock', 'mutex_try_lock', 'mutex_lock', 'mark_processed', 'lease_status']);
  const extra = /^mutex/.test(fn) ? `, shared => ${r.chance(0.5)}` : '';
  return { fn: `${fn} (x${n})`, sql: `SELECT count(*) FROM generate_series(1, ${n}) i, LATERAL idempotency.${fn}('mass' || (i % ${r.pick([n, 7])})${extra}) x` };
}

function genCall(r, toks) {
  return r.wpick([
    [30, () => genUpsert(r)],
    [8, () => genColumns(r)],
    [25, () => genEvents(r, toks)],
    [20, () => genMutex(r)],
    [20, () => genLease(r, toks)],
    [2, () => ({ fn: 'version', sql: 'SELECT idempotency.version()' })],
    [1, () => genMass(r)],
  ])();
}

// Concurrent DDL (and a few session-level commands).
function genDDL(r) {
  const t = r.pick(['fuzz.plain', 'fuzz.trig', 'fuzz.rls', 'fuzz.part', 'fuzz.side', 'fuzz.inval', 'fuzz.nnd', 'fuzz.parent']);
  const c = `xcol${r.int(3)}`;
  return r.pick([
    () => ({ fn: 'ddl:add column', sql: `ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS ${c} text` }),
    () => ({ fn: 'ddl:drop column', sql: `ALTER TABLE ${t} DROP COLUMN IF EXISTS ${c}` }),
    () => ({ fn: 'ddl:grant', sql: `GRANT ALL ON ${t} TO ${ROLE}` }),
    () => ({ fn: 'ddl:revoke', sql: `REVOKE ${r.pick(['INSERT', 'SELECT', 'UPDATE'])} ON ${t} FROM ${ROLE}` }),
    () => ({ fn: 'ddl:revoke', sql: `REVOKE ALL ON idempotency.leases FROM ${ROLE}` }),
    () => ({ fn: 'ddl:analyze', sql: `ANALYZE ${t}` }),
    () => ({ fn: 'ddl:create index', sql: `CREATE INDEX IF NOT EXISTS fuzz_ix_${t.replace('.', '_')} ON ${t} ((1))` }),
    () => ({ fn: 'ddl:create unique index', sql: `CREATE UNIQUE INDEX IF NOT EXISTS fuzz_uix_${t.replace('.', '_')} ON ${t} (${t === 'fuzz.part' ? 'k, sub' : t === 'fuzz.nnd' ? 'a, b' : t === 'fuzz.plain' ? 'email' : 'k'})` }),
    () => ({ fn: 'ddl:drop index', sql: `DROP INDEX IF EXISTS fuzz.fuzz_ix_${t.replace('.', '_')}` }),
    () => ({ fn: 'ddl:drop index', sql: `DROP INDEX IF EXISTS fuzz.fuzz_uix_${t.replace('.', '_')}` }),
    () => ({ fn: 'ddl:discard all', sql: 'DISCARD ALL' }),
    () => ({ fn: 'ddl:rls toggle', sql: `ALTER TABLE fuzz.rls ${r.pick(['ENABLE', 'DISABLE', 'FORCE', 'NO FORCE'])} ROW LEVEL SECURITY` }),
    () => ({ fn: 'ddl:grant', sql: `GRANT ALL ON idempotency.leases TO ${ROLE}` }),
  ])();
}

// ---------------------------------------------------------------------------
// A fuzz session

const stats = { calls: new Map(), errors: new Map(), statements: 0 };
const bump = (m, k) => m.set(k, (m.get(k) || 0) + 1);
const pendingPrepared = new Set();
let stopping = false;
let crashed = false;

class Session {
  constructor(idx) {
    this.idx = idx;
    this.r = rng((SEED ^ Math.imul(idx + 1, 0x9E3779B1)) >>> 0);
    this.toks = new TokenPool();
    this.c = null;
    this.inTx = false;       // our model: inside BEGIN ... (or failed block)
    this.sessionMutex = false;  // may hold session mutexes
    this.file = path.join(LOGDIR, `session-${idx}.sql`);
    fs.writeFileSync(this.file, `-- fuzz seed ${SEED}, session ${idx}\n\\set ON_ERROR_STOP 0\n`);
    this.last = '';
  }
  log(s) { fs.appendFileSync(this.file, s + '\n'); }
  async open() {
    destroy(this.c);
    this.c = null;
    this.c = await connect(DB, `fuzz-${this.idx}`);
    this.inTx = false;
    this.sessionMutex = false;
    pidSession.set(this.c.pid, this.idx);
    this.log(`-- [${new Date().toISOString()}] connect pid ${this.c.pid}\n\\connect`);
  }
  disconnect(why) {
    this.log(`-- [${new Date().toISOString()}] disconnect (${why})`);
    destroy(this.c);
    this.c = null;
  }

  // Run one statement; returns {ok, rows, err}.  Checks errors, notices and
  // the transaction state afterwards.
  async run(stmt, { expectTx = this.inTx } = {}) {
    const c = this.c;
    const sql = stmt.sql;
    this.last = sql;
    stats.statements++;
    bump(stats.calls, stmt.fn);
    this.log(sql + ';');
    c.notices = [];
    let res;
    try {
      const q = await query(c, sql);
      const rows = Array.isArray(q) ? q.flatMap((x) => x.rows || []) : q.rows || [];
      this.log(`-- => ok, ${rows.length} row(s)`);
      res = { ok: true, rows };
    } catch (e) {
      const code = e.code || (c.dead ? 'connection-lost' : 'client-error');
      bump(stats.errors, code);
      this.log(`-- => ERROR ${code}: ${String(e.message).slice(0, 300).replace(/\n/g, ' ')}`);
      res = { ok: false, err: e, code };
      this.checkError(stmt, e, code, expectTx);
    }
    if (res.code === '53200' && this.inTx) this.txSaw53200 = true;
    for (const n of c.notices) {
      this.log(`-- ${n.severity}: ${String(n.message).slice(0, 300)}`);
      if (n.severity === 'WARNING' && this.txSaw53200 && XID_LOCK_LOST.test(n.message)) {
        // PostgreSQL's own: see XID_LOCK_LOST
        this.log('-- (expected: a savepoint got its xid but not the lock on it, 53200 earlier in this transaction)');
        bump(stats.errors, 'xid lock lost after 53200 (WARNING)');
      } else if (n.severity === 'WARNING' && BAD_WARNING.test(n.message)) {
        finding('warning', `session ${this.idx}: WARNING "${n.message}" after: ${sql.slice(0, 500)}`);
      }
      const m = /^fuzz-caught (\S+) (.*)$/s.exec(n.message || '');
      if (m && m[1] === '53200' && this.inTx) this.txSaw53200 = true;
      if (m) {
        bump(stats.errors, `${m[1]} (caught)`);
        this.checkError(stmt, { message: m[2], code: m[1], where: n.detail }, m[1], true);
      }
    }
    if (res.ok && stmt.fn && /^(claim|lease_acquire)$/.test(stmt.fn)) for (const row of res.rows) this.toks.add(row.token);
    if (!c.dead && this.checkTxState(stmt, res, expectTx)) {
      // back to a known state (this ROLLBACK may itself fail: that is checked too)
      await this.run({ fn: 'rollback', sql: 'ROLLBACK' }, { expectTx: true });
      if (!c.dead && c.txStatus !== 'I') this.disconnect('stuck in a transaction');
    }
    return res;
  }

  checkError(stmt, e, code, expectTx) {
    const msg = String(e.message || '');
    const where = `session ${this.idx} (pid ${this.c && this.c.pid}): ${stmt.sql.slice(0, 600)}`;
    const variant = `${stmt.fn}: ${msg.replace(/"[^"]*"/g, '"…"').slice(0, 80)}`;
    // Concurrent DDL on one catalog row (two sessions' GRANT/REVOKE on the
    // same table) is refused by PostgreSQL itself with XX000 "tuple
    // concurrently updated": a property of the server, not of the extension.
    // The DDL is the fuzzer's own, either a statement of session 0 or the
    // GRANT / ANALYZE that a fuzz table's trigger or domain check runs while
    // the extension writes the row (the innermost line of the error's
    // context then names it).
    const innermost = String(e.where || '').split('\n')[0];
    const ddlContext = /^SQL statement "(GRANT|REVOKE|ANALYZE)\b/.test(innermost);
    const coreDdlRace = (/^ddl/.test(stmt.fn) || ddlContext) && /tuple concurrently (updated|deleted)/.test(msg);
    const ctx = innermost ? ` (context: ${innermost.slice(0, 200)})` : '';
    if (/^XX/.test(code) && !coreDdlRace) finding(`internal error ${code}`, `${code} "${msg}"${ctx} from ${where}`, variant, this);
    else if (/^(unexpected|cache lookup failed|SPI_)/i.test(msg)) finding('internal error message', `${code} "${msg}" from ${where}`, variant, this);
    if (code === '25P02' && !expectTx) finding('aborted transaction outside a block', `25P02 "${msg}" from ${where} (see the statements before it in ${this.file})`, '', this);
    if (code === 'connection-lost' || code === '57P01' || /Connection terminated|connection error|terminating connection/i.test(msg)) {
      // A terminate whose own statement failed may still have sent its
      // signal: a pid the fuzzer ever aimed pg_terminate_backend at is never
      // a finding for "administrator command".
      const aimedAt = this.c && terminatedPids.has(this.c.pid) && /administrator command/.test(msg);
      if ((!this.c || !this.c.deliberateClose) && !aimedAt) finding('connection lost', `"${msg}" at ${where}`);
    }
  }

  checkTxState(stmt, res, expectTx) {
    const st = this.c.txStatus;
    if (!expectTx && st !== 'I') {
      finding('transaction left open', `session ${this.idx} (pid ${this.c.pid}): after ${res.ok ? 'success' : 'error ' + res.code} of a statement outside a transaction block the connection is in state '${st}' (T = in transaction, E = failed): ${stmt.sql.slice(0, 600)}`,
        `${stmt.fn} ${res.ok ? 'ok' : res.code}`, this);
      return true;
    }
    return false;
  }

  // No extension lock may be held between transactions, except session
  // mutexes (lock 18688 + marker 18693, always in pairs).
  async idleCheck(unlockAll) {
    if (!this.c || this.c.dead || this.c.txStatus !== 'I') return;
    if (unlockAll) {
      await this.run({ fn: 'mutex_session_unlock_all', sql: 'SELECT idempotency.mutex_session_unlock_all()' });
      this.sessionMutex = false;
    }
    const q = await this.run({ fn: 'check:locks', sql: `SELECT objsubid, mode, count(*) AS n, min(classid::text || '/' || objid::text) AS ex FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid BETWEEN 18688 AND 18694 GROUP BY 1, 2 ORDER BY 1, 2` });
    if (!q.ok) return;
    const rows = q.rows;
    const bad = rows.filter((x) => x.objsubid !== 18688 && x.objsubid !== 18693);
    const mutexes = rows.filter((x) => x.objsubid === 18688).reduce((s, x) => s + Number(x.n), 0);
    const markers = rows.filter((x) => x.objsubid === 18693).reduce((s, x) => s + Number(x.n), 0);
    const desc = JSON.stringify(rows);
    if (bad.length) finding('leaked lock', `session ${this.idx} (pid ${this.c.pid}) holds ${desc} outside a transaction; last statements in ${this.file}`);
    else if (unlockAll && rows.length) finding('leaked lock', `session ${this.idx} (pid ${this.c.pid}) holds ${desc} after mutex_session_unlock_all(); ${this.file}`);
    else if (mutexes !== markers) finding('unpaired session mutex', `session ${this.idx} (pid ${this.c.pid}): ${desc}; ${this.file}`);
    else if (!this.sessionMutex && mutexes) finding('leaked lock', `session ${this.idx} (pid ${this.c.pid}) holds session mutexes it never took: ${desc}`);
  }

  // One "episode": a statement or a group of statements in some wrapper.
  async episode(ddl) {
    const r = this.r;
    if (!this.c || this.c.dead) await this.open();
    const kind = r.wpick([
      [40, 'single'], [22, 'tx'], [10, 'do'], [4, 'prepared'], [5, 'set'], [2, 'disconnect'],
      [3, 'role'], [ddl ? 12 : 1, 'ddl'], [4, 'idlecheck'], [2, 'finishprepared'], [ddl ? 1 : 0, 'terminate'],
    ]);
    switch (kind) {
      case 'single': {
        const s = genCall(r, this.toks);
        this.noteSession(s);
        const res = await this.run(s);
        if (!res.ok && r.chance(0.3) && !this.c.dead) await this.run({ fn: 'check:select 1', sql: 'SELECT 1' });
        break;
      }
      case 'tx': case 'prepared': await this.transaction(kind === 'prepared'); break;
      case 'do': await this.doBlock(); break;
      case 'set':
        await this.run({ fn: 'set', sql: `SET ${r.pick(['lock_timeout', 'statement_timeout'])} = ${lit(r.pick(['10ms', '100ms', '1s', '3s']))}` });
        break;
      case 'role':
        await this.run({ fn: 'set role', sql: r.pick([`SET ROLE ${ROLE}`, 'RESET ROLE', `SET SESSION AUTHORIZATION ${ROLE}`, 'RESET SESSION AUTHORIZATION']) });
        break;
      case 'ddl': {
        const s = genDDL(r);
        const res = await this.run(s);
        if (s.sql === 'DISCARD ALL' && res.ok) this.sessionMutex = false;
        break;
      }
      case 'disconnect': this.disconnect('random'); break;
      case 'terminate': {
        // pg_terminate_backend of another session, whatever it is doing
        const other = r.pick(sessionList);
        if (other === this || !other.c || other.c.dead) break;
        other.c.deliberateClose = true;
        terminatedPids.add(other.c.pid);
        other.log(`-- [${new Date().toISOString()}] terminated by session ${this.idx}`);
        const target = other.c;
        const res = await this.run({ fn: 'pg_terminate_backend', sql: `SELECT pg_terminate_backend(${target.pid}) AS t` });
        // The mark stays once any terminate of this backend was sent: a later
        // call answers false because the first one already ended it, and a
        // call that failed may still have delivered its signal.  Only a clean
        // "false" with no earlier success means nothing was aimed at it.
        if (res.ok && res.rows[0] && res.rows[0].t) target.terminateSent = true;
        else if (res.ok && !target.terminateSent) target.deliberateClose = false;
        break;
      }
      case 'idlecheck': await this.idleCheck(r.chance(0.5)); break;
      case 'finishprepared': await this.finishPrepared(); break;
      default: break;
    }
  }
  noteSession(s) { if (/^mutex_session_(try_)?lock\b/.test(s.fn)) this.sessionMutex = true; }

  async finishPrepared() {
    if (pendingPrepared.size === 0) return;
    // another role may have prepared it
    await this.run({ fn: 'set role', sql: 'RESET SESSION AUTHORIZATION' });
    await this.run({ fn: 'set role', sql: 'RESET ROLE' });
    for (const gid of [...pendingPrepared]) {
      if (!this.c || this.c.dead) return;
      if (!pendingPrepared.has(gid)) continue;   // another session took it meanwhile
      pendingPrepared.delete(gid);
      const res = await this.run({ fn: 'finish prepared', sql: `${this.r.pick(['COMMIT', 'ROLLBACK'])} PREPARED ${lit(gid)}` });
      if (res.ok || res.code === '42704') continue;   // done, or finished by another session
      pendingPrepared.add(gid);                         // the final checks finish it
      // 53200: the shared lock table is full, which a mass statement of
      // another session (genMass) does on purpose; the server then refuses
      // any new lock, here the one COMMIT/ROLLBACK PREPARED takes, and the
      // prepared transaction stays as it was.  The final checks still
      // require every prepared transaction to be finished.
      if (!/^(57P01|57014|55P03|53200|connection-lost|client-error)$/.test(res.code)) {
        finding('finishing a prepared transaction failed', `${res.code} ${res.err.message} (${gid})`, res.code, this);
      }
    }
  }

  async transaction(prepare) {
    const r = this.r;
    const iso = r.pick(['', '', ' ISOLATION LEVEL REPEATABLE READ', ' ISOLATION LEVEL SERIALIZABLE', ' READ ONLY']);
    let res = await this.run({ fn: 'begin', sql: `BEGIN${iso}` }, { expectTx: true });
    if (!res.ok) return;
    this.inTx = true;
    this.txSaw53200 = false;
    const n = 1 + r.int(6);
    let sp = 0;
    for (let i = 0; i < n && !this.c.dead; i++) {
      if (this.c.txStatus === 'E') {
        // a failed block: mostly recover or give up rather than collect 25P02s
        if (sp && r.chance(0.6)) {
          await this.run({ fn: 'rollback to', sql: `ROLLBACK TO SAVEPOINT s${1 + r.int(sp)}` });
          continue;
        }
        if (r.chance(0.7)) break;
      }
      const w = r.wpick([[60, 'call'], [10, 'savepoint'], [7, 'rollback to'], [5, 'release'], [6, 'set local'], [3, 'disconnect']]);
      if (w === 'call') {
        const s = genCall(r, this.toks);
        this.noteSession(s);
        await this.run(s);
      } else if (w === 'savepoint') {
        await this.run({ fn: 'savepoint', sql: `SAVEPOINT s${++sp}` });
      } else if (w === 'rollback to' && sp) {
        await this.run({ fn: 'rollback to', sql: `ROLLBACK TO SAVEPOINT s${1 + r.int(sp)}` });
      } else if (w === 'release' && sp) {
        await this.run({ fn: 'release', sql: `RELEASE SAVEPOINT s${1 + r.int(sp)}` });
      } else if (w === 'set local') {
        await this.run({ fn: 'set local', sql: `SET LOCAL ${r.pick(['lock_timeout', 'statement_timeout'])} = ${lit(r.pick(['10ms', '100ms', '1s']))}` });
      } else if (w === 'disconnect') {
        this.disconnect('inside a transaction');
        return;
      }
    }
    if (this.c.dead) return;
    if (prepare) {
      const gid = `fuzz_${SEED}_${this.idx}_${r.int(1e9)}`;
      res = await this.run({ fn: 'prepare transaction', sql: `PREPARE TRANSACTION ${lit(gid)}` }, { expectTx: true });
      this.inTx = false;
      if (res.ok && this.c.txStatus === 'I') {
        pendingPrepared.add(gid);
        if (r.chance(0.2)) this.disconnect('after PREPARE TRANSACTION');
        else if (r.chance(0.7)) await this.finishPrepared();
      } else if (this.c.txStatus !== 'I') {
        await this.run({ fn: 'rollback', sql: 'ROLLBACK' }, { expectTx: true });
      }
      return;
    }
    const end = r.wpick([[50, 'COMMIT'], [45, 'ROLLBACK'], [5, 'disconnect']]);
    if (end === 'disconnect') { this.disconnect('before COMMIT'); return; }
    const endRes = await this.run({ fn: end.toLowerCase(), sql: end }, { expectTx: true });
    this.inTx = false;
    // A COMMIT cancelled (statement_timeout, cancel) before it started leaves
    // the block failed, as the server does for any statement: not a finding.
    const cancelled = endRes && !endRes.ok && ['57014', '55P03'].includes(endRes.code);
    if (!this.c.dead && this.c.txStatus !== 'I' && !cancelled) {
      finding('transaction left open', `session ${this.idx}: state '${this.c.txStatus}' after ${end}${endRes && !endRes.ok ? ' (error ' + endRes.code + ')' : ''}`, end, this);
    }
    if (!this.c.dead && this.c.txStatus !== 'I')
      await this.run({ fn: 'rollback', sql: 'ROLLBACK' }, { expectTx: true });
  }

  // PL/pgSQL with exception handlers: errors caught inside the server.
  async doBlock() {
    const r = this.r;
    const n = 1 + r.int(3);
    const parts = [];
    const fns = [];
    for (let i = 0; i < n; i++) {
      const s = genCall(r, this.toks);
      this.noteSession(s);
      fns.push(s.fn);
      const body = s.sql.replace(/^SELECT /, 'PERFORM ');
      const times = r.chance(0.4) ? 2 : 1;    // catch the same error twice in a row
      for (let k = 0; k < times; k++) parts.push(`  BEGIN\n    ${body};\n  EXCEPTION WHEN OTHERS THEN\n    GET STACKED DIAGNOSTICS ctx = PG_EXCEPTION_CONTEXT;\n    RAISE NOTICE 'fuzz-caught % %', SQLSTATE, SQLERRM USING DETAIL = ctx;\n  END;`);
    }
    const sql = `DO $fuzz$\nDECLARE ctx text;\nBEGIN\n${parts.join('\n')}\nEND\n$fuzz$`;
    for (const f of fns) bump(stats.calls, f);
    await this.run({ fn: 'do block', sql });
    if (this.c.dead) return;
    if (r.chance(0.3)) this.disconnect('after a DO block');
    else if (r.chance(0.5)) await this.run({ fn: 'check:select 1', sql: 'SELECT 1' });
  }

  async loop(deadline, ddl) {
    while (!stopping && Date.now() < deadline) {
      if (crashed) { await sleep(200); continue; }
      try {
        await this.episode(ddl);
      } catch (e) {
        this.log(`-- client exception: ${e.message}`);
        if (!crashed && !stopping) {
          if (/timeout/i.test(e.message)) finding('client timeout', `session ${this.idx}: no answer within ${QUERY_TIMEOUT_MS} ms to: ${this.last.slice(0, 600)}`);
        }
        destroy(this.c);
        this.c = null;
        await sleep(100);
      }
    }
    if (this.c && !this.c.dead && !crashed) {
      try {
        if (this.c.txStatus !== 'I') await this.run({ fn: 'rollback', sql: 'ROLLBACK' }, { expectTx: true });
        await this.idleCheck(true);
      } catch (e) { this.log(`-- client exception: ${e.message}`); }
    }
    destroy(this.c);
    this.c = null;
  }
}

// ---------------------------------------------------------------------------
// Crash watch: scans the server log while sessions run.

const crashReports = [];
async function checkServer(label) {
  const ev = logmon.take();
  let crash = false;
  for (const e of ev) {
    if (e.kind === 'crash') crash = true;
    if (e.kind === 'crash-statement') continue;
    if (e.kind !== 'crash') finding(`server log ${e.kind}`, `${label}: ${e.line}`);
  }
  if (crash) {
    const lines = ev.filter((e) => e.kind === 'crash' || e.kind === 'crash-statement').map((e) => {
      const m = /\(PID (\d+)\)/.exec(e.line);
      const sess = m && pidSession.has(Number(m[1])) ? ` [session ${pidSession.get(Number(m[1]))}: session-${pidSession.get(Number(m[1]))}.sql]` : '';
      return e.line + sess;
    });
    crashReports.push({ label, lines });
    finding('server crash', `${label}: ${lines.join(' | ')}`, String(crashReports.length));
  }
  return crash;
}

async function crashWatch(until) {
  while (!stopping && Date.now() < until) {
    await sleep(500);
    const crash = await checkServer('random phase');
    if (crash) {
      crashed = true;
      console.log('# server crashed; waiting for it to accept connections again');
      await waitServer(90);
      await sleep(500);
      logmon.take();
      crashed = false;
      if (crashReports.length >= MAX_CRASHES) { console.log(`# ${MAX_CRASHES} crashes: ending the random phase`); stopping = true; }
    }
  }
}

// ---------------------------------------------------------------------------
// Phase: known reproducers

async function expectHealthy(name, fn) {
  logmon.take();
  const before = await waitServer(60);
  const problems = [];
  try {
    await fn(problems);
  } catch (e) {
    problems.push(`client: ${e.message}`);
  }
  await sleep(300);
  const ev = logmon.take();
  for (const e of ev) if (e.kind !== 'crash-statement') problems.push(`server log: ${e.line}`);
  const crash = ev.find((e) => e.kind === 'crash');
  if (crash) {
    const st = ev.find((e) => e.kind === 'crash-statement');
    problems.unshift(`SERVER CRASH: ${crash.line}${st ? ' -- ' + st.line.replace(/^.*?DETAIL:\s*/, '') : ''}`);
  }
  let after;
  try { after = await waitServer(90); } catch (e) { problems.push(e.message); }
  if (after && after !== before) problems.push(`pg_postmaster_start_time changed: ${before} -> ${after}`);
  if (crash || problems.some((p) => /SERVER CRASH/.test(p))) {
    await sleep(500);
    logmon.take();
  }
  result(problems.length === 0, `fuzz/known/${name}`, problems.slice(0, 6).join('\n'));
}

// Run one statement on c; returns {ok, code, message, status}.
async function q(c, sql) {
  try {
    const r = await query(c, sql);
    return { ok: true, rows: r.rows, status: c.txStatus };
  } catch (e) {
    return { ok: false, code: e.code || 'client', message: e.message, status: c.dead ? 'dead' : c.txStatus };
  }
}

async function knownPhase() {
  // (1) an out-of-range ttl with a wait: the error must leave no
  // transaction or subtransaction behind.
  await expectHealthy('lease_acquire ttl out of range with wait, autocommit', async (p) => {
    const c = await connect(DB, 'fuzz-known');
    const a = await q(c, `SELECT * FROM idempotency.lease_acquire('fuzz-known-1', ttl => '106751991 days', wait => '1 s')`);
    if (a.ok) p.push('lease_acquire with ttl 106751991 days did not fail');
    if (a.status !== 'I') p.push(`after the error the connection is in state '${a.status}', not idle (I)`);
    const b = await q(c, 'SELECT 1');
    if (!b.ok) p.push(`SELECT 1 afterwards failed: ${b.code} ${b.message}`);
    const d = await q(c, 'ROLLBACK');
    if (c.dead) p.push(`ROLLBACK afterwards killed the connection: ${c.dead.message}`);
    else if (!d.ok) p.push(`ROLLBACK afterwards failed: ${d.code} ${d.message}`);
    destroy(c);
  });
  await expectHealthy('lease_acquire ttl out of range with wait, caught twice in PL/pgSQL', async (p) => {
    const c = await connect(DB, 'fuzz-known');
    const body = `BEGIN PERFORM * FROM idempotency.lease_acquire('fuzz-known-1', ttl => '106751991 days', wait => '1 s'); EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'fuzz-caught % %', SQLSTATE, SQLERRM; END;`;
    const a = await q(c, `DO $$ BEGIN ${body} ${body} END $$`);
    if (!a.ok) p.push(`DO block failed: ${a.code} ${a.message}`);
    const b = await q(c, 'SELECT 1');
    if (!b.ok) p.push(`SELECT 1 afterwards failed: ${b.code} ${b.message}`);
    destroy(c);
    await sleep(300);
  });
  await expectHealthy('lease_acquire ttl out of range with wait, in a transaction', async (p) => {
    const c = await connect(DB, 'fuzz-known');
    await q(c, 'BEGIN');
    await q(c, 'SAVEPOINT a');
    const a = await q(c, `SELECT * FROM idempotency.lease_acquire('fuzz-known-1', ttl => '1000 years 1 day', wait => '10 ms')`);
    const b = await q(c, 'ROLLBACK TO SAVEPOINT a');
    if (!b.ok) p.push(`ROLLBACK TO SAVEPOINT after ${a.ok ? 'success' : a.code} failed: ${b.code} ${b.message}`);
    const d = await q(c, 'COMMIT');
    if (c.dead) p.push(`COMMIT killed the connection: ${c.dead.message}`);
    else if (!d.ok) p.push(`COMMIT failed: ${d.code} ${d.message}`);
    destroy(c);
  });
  await expectHealthy('lease_acquire cancelled while waiting for an uncommitted acquirer', async (p) => {
    const a = await connect(DB, 'fuzz-known');
    const c = await connect(DB, 'fuzz-known');
    await q(a, 'BEGIN');
    await q(a, `SELECT * FROM idempotency.lease_acquire('fuzz-known-2', ttl => '1 min')`);
    await q(c, `SET statement_timeout = '300ms'`);
    const x = await q(c, `SELECT * FROM idempotency.lease_acquire('fuzz-known-2', wait => '10 s')`);
    if (x.ok) p.push('lease_acquire was not cancelled');
    if (x.status !== 'I') p.push(`after ${x.ok ? 'success' : x.code} the connection is in state '${x.status}', not idle (I)`);
    const b = await q(c, 'SELECT 1');
    if (!b.ok) p.push(`SELECT 1 afterwards failed: ${b.code} ${b.message}`);
    const d = await q(c, 'ROLLBACK');
    if (c.dead) p.push(`ROLLBACK afterwards killed the connection: ${c.dead.message}`);
    else if (!d.ok) p.push(`ROLLBACK afterwards failed: ${d.code} ${d.message}`);
    await q(a, 'ROLLBACK');
    destroy(c);
    destroy(a);
  });
  // (2) a BEFORE INSERT trigger that names more column sets than the upsert
  // cache holds, while the outer call still uses its entry.
  await expectHealthy('trigger floods the upsert cache', async (p) => {
    const c = await connect(DB, 'fuzz-known');
    // Which freed entry gets reused depends on the hash order of the cache
    // keys (table OIDs), so vary the outer call's operation and columns.
    const stmts = [];
    for (let i = 0; i < 4; i++) {
      const k = 900000 + i * 10;
      const kc = i % 2 ? `, key_cols => '{k}'` : '';
      stmts.push(`SELECT * FROM idempotency.get_or_create(NULL::fuzz.flood, '{"k": ${k}, "v": "flood"}'${kc})`);
      stmts.push(`SELECT * FROM idempotency.idempotent_upsert_many(NULL::fuzz.flood, '[{"k": ${k + 1}, "v": "flood"}, {"k": ${k + 2}}, {"k": ${k + 3}, "v": "x"}]'${kc})`);
      stmts.push(`SELECT * FROM idempotency.update_or_create(NULL::fuzz.flood, '{"k": ${k + 4}, "v": "flood"}'${kc})`);
    }
    for (const sql of stmts) {
      const a = await q(c, sql);
      if (!a.ok) { p.push(`${sql}: ${a.code} ${a.message}`); break; }
    }
    destroy(c);
  });
  // (2b) invalidation of the table in use (GRANT / ANALYZE) inside its own
  // trigger, then a nested call with the same column set.
  for (const v of ['grant-reenter', 'analyze-reenter']) {
    await expectHealthy(`trigger invalidates and re-enters (${v})`, async (p) => {
      const c = await connect(DB, 'fuzz-known');
      const a = await q(c, `SELECT * FROM idempotency.idempotent_upsert_many(NULL::fuzz.inval, '[{"k": 1, "v": "${v}"}, {"k": 2}]')`);
      if (!a.ok) p.push(`idempotent_upsert_many failed: ${a.code} ${a.message}`);
      const b = await q(c, `SELECT * FROM idempotency.update_or_create(NULL::fuzz.inval, '{"k": 3, "v": "${v}"}')`);
      if (!b.ok && c.dead) p.push(`update_or_create: ${b.message}`);
      destroy(c);
    });
  }
  // (3) a first argument that is not a table's row type: 42809 as for the
  // one-row functions, not an internal error from the set-returning machinery
  await expectHealthy('idempotent_upsert_many with a non-row first argument', async (p) => {
    const c = await connect(DB, 'fuzz-known');
    for (const first of ["'x'::text", 'NULL::int']) {
      const a = await q(c, `SELECT * FROM idempotency.idempotent_upsert_many(${first}, '[{"k": 1}]')`);
      if (a.ok || a.code !== '42809') p.push(`idempotent_upsert_many(${first}, ...): ${a.ok ? 'no error' : `${a.code} ${a.message}`} (expected 42809)`);
    }
    destroy(c);
  });
  // (3b) the same for the one-row functions called in FROM, which the
  // extension plans as its own scan node where the call returns a row type:
  // a call that does not is left to the Function Scan, and to the function's
  // 42809, not refused while planning with an internal error
  await expectHealthy('one-row upserts in FROM with a non-row first argument', async (p) => {
    const c = await connect(DB, 'fuzz-known');
    for (const fn of ['idempotent_upsert', 'get_or_create', 'update_or_create']) {
      for (const first of ["'x'::text", 'NULL::int']) {
        const a = await q(c, `SELECT * FROM idempotency.${fn}(${first}, vals => '{}'::jsonb)`);
        if (a.ok || a.code !== '42809') p.push(`${fn}(${first}, ...) in FROM: ${a.ok ? 'no error' : `${a.code} ${a.message}`} (expected 42809)`);
      }
    }
    destroy(c);
  });
  // (2c) a domain CHECK function that invalidates the table being written
  // (GRANT / ANALYZE) and re-enters with the same column set
  for (const d of ['self-grant', 'self-analyze']) {
    await expectHealthy(`domain check function invalidates and re-enters (${d})`, async (p) => {
      const c = await connect(DB, 'fuzz-known');
      for (const sql of [
        `SELECT * FROM idempotency.get_or_create(NULL::fuzz.plain, '{"email": "known-${d}-1@x", "d": "${d}-1"}')`,
        `SELECT * FROM idempotency.idempotent_upsert_many(NULL::fuzz.plain, '[{"email": "known-${d}-2@x", "d": "${d}-2"}, {"email": "known-${d}-3@x", "d": "${d}-3"}]')`,
        `SELECT * FROM idempotency.update_or_create(NULL::fuzz.plain, '{"email": "known-${d}-1@x", "d": "${d}-4"}')`,
      ]) {
        const a = await q(c, sql);
        if (!a.ok) { p.push(`${sql}: ${a.code} ${a.message}`); break; }
      }
      destroy(c);
    });
  }
  // ... and one that re-enters on another table, invalidates or raises
  await expectHealthy('domain check function re-enters on another table', async (p) => {
    const c = await connect(DB, 'fuzz-known');
    for (const d of ['analyze', 'grant', 'reenter-1']) {
      const a = await q(c, `SELECT * FROM idempotency.idempotent_upsert_many(NULL::fuzz.plain, '[{"email": "dom-${d}@x", "d": "${d}"}, {"email": "dom2-${d}@x", "d": "${d}"}]')`);
      if (!a.ok) p.push(`idempotent_upsert_many with d = ${d} failed: ${a.code} ${a.message}`);
      if (c.dead) break;
    }
    destroy(c);
  });
}

// ---------------------------------------------------------------------------
// Final checks

async function finalChecks() {
  await waitServer(90);
  await sleep(500);
  const c = await connect(DB, 'fuzz-final');
  // finish what the sessions left prepared (e.g. after a disconnect)
  for (const gid of pendingPrepared) {
    const r = await q(c, `ROLLBACK PREPARED ${lit(gid)}`);
    if (!r.ok && r.code !== '42704') finding('finishing a prepared transaction failed', `${r.code} ${r.message} (${gid})`);
  }
  const pp = await q(c, `SELECT gid FROM pg_prepared_xacts WHERE database = current_database()`);
  if (pp.ok && pp.rows.length) {
    finding('prepared transactions left', pp.rows.map((x) => x.gid).join(', '));
    for (const x of pp.rows) await q(c, `ROLLBACK PREPARED ${lit(x.gid)}`);
  }
  // every session has ended: nobody may hold an extension lock (backends of
  // dropped connections notice within client_connection_check_interval or
  // at their statement_timeout)
  for (let i = 0; i < 60; i++) {
    const b = await q(c, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE 'fuzz-%'`);
    if (!b.ok || b.rows[0].n === 0) break;
    await sleep(250);
  }
  let locks;
  for (let i = 0; i < 20; i++) {
    locks = await q(c, `SELECT l.pid, l.objsubid, l.mode, l.granted, a.application_name FROM pg_locks l LEFT JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.objsubid BETWEEN 18688 AND 18694`);
    if (!locks.ok || locks.rows.length === 0) break;
    await sleep(250);   // backends of closed connections may still be exiting
  }
  if (locks.ok && locks.rows.length) finding('leaked lock', `after every session ended: ${JSON.stringify(locks.rows.slice(0, 10))}`);
  await c.end();
  await checkServer('final');
}

// ---------------------------------------------------------------------------

async function main() {
  const t0 = Date.now();
  await waitServer(60);
  const startedAt = await waitServer(60);
  await setup();
  logmon.take();
  console.log(`# setup done (ICU nondeterministic collation: ${haveICU ? 'yes' : 'no'})`);

  if (PHASES.includes('known')) {
    const k0 = Date.now();
    await knownPhase();
    console.log(`# known reproducers: ${((Date.now() - k0) / 1000).toFixed(1)} s`);
  }

  if (PHASES.includes('random')) {
    const r0 = Date.now();
    const deadline = r0 + SECONDS * 1000;
    const sessions = Array.from({ length: NSESS }, (_, i) => new Session(i));
    sessionList.push(...sessions);
    const hardStop = setTimeout(() => { stopping = true; }, (SECONDS + 30) * 1000);
    const watch = crashWatch(deadline + 2000);
    await Promise.all(sessions.map((s, i) => s.loop(deadline, i === 0)));
    stopping = true;
    clearTimeout(hardStop);
    await watch;
    await checkServer('random phase');
    if (logmon.crashes.length) await waitServer(90);
    await finalChecks();
    const after = await waitServer(90);
    if (after !== startedAt) finding('server restarted', `pg_postmaster_start_time changed: ${startedAt} -> ${after}`);
    console.log(`# random phase: ${stats.statements} statements in ${((Date.now() - r0) / 1000).toFixed(1)} s`);
    const bad = [...findings.entries()];
    result(bad.length === 0, `fuzz/random (seed ${SEED})`,
      bad.map(([k, f]) => `${k} (x${f.count}): ${f.first.slice(0, 800)}`).join('\n'));
  }

  // summary
  console.log('# statements per function:');
  for (const [k, v] of [...stats.calls.entries()].sort((a, b) => b[1] - a[1])) console.log(`#   ${String(v).padStart(6)}  ${k}`);
  console.log('# errors per SQLSTATE:');
  for (const [k, v] of [...stats.errors.entries()].sort((a, b) => b[1] - a[1])) console.log(`#   ${String(v).padStart(6)}  ${k}`);
  if (crashReports.length) {
    console.log('# crashes:');
    for (const c of crashReports) console.log(`#   ${c.lines.join(' | ').slice(0, 1500)}`);
  }
  console.log(`# seed ${SEED}; total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  process.exit(results.every((x) => x.ok) ? 0 : 1);
}

main().catch(async (e) => {
  console.log(`RESULT not-ok fuzz/driver :: ${e.stack || e}`);
  try { await waitServer(90); } catch { /* reported by the suite */ }
  process.exit(2);
});
