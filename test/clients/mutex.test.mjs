// Keyed mutexes through node-postgres: an in-process keyed mutex's
// API (run(key, task) -> task's result; sequential per key; an error in a
// task does not stop the next one) rebuilt on idempotency.mutex_lock, with
// tasks spread over the connections of a pool.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pool, concurrently } from './lib.mjs';

const db = pool(20);

// run(key, task): the task gets a client inside a transaction holding the
// mutex; its result is returned; a throw rolls back, releasing the mutex.
async function run(key, task, timeout = null) {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const { rows: [{ locked }] } = await client.query(
      'SELECT idempotency.mutex_lock($1, $2::interval) AS locked', [key, timeout]);
    if (!locked) {
      await client.query('ROLLBACK');
      return { busy: true };
    }
    const result = await task(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  } finally {
    client.release();
  }
}

before(async () => {
  await db.query('CREATE TABLE mutex_clients_counter (k text PRIMARY KEY, n int NOT NULL)');
  await db.query("INSERT INTO mutex_clients_counter VALUES ('a', 0), ('b', 0)");
});
after(async () => {
  await db.query('DROP TABLE mutex_clients_counter');
  await db.end();
});

test('100 read-then-write tasks on two keys over 20 connections: no lost update, failures do not stop the queue', async () => {
  const results = await concurrently(100, (i) => run(i % 2 ? 'counter:a' : 'counter:b', async (c) => {
    const key = i % 2 ? 'a' : 'b';
    const { rows: [{ n }] } = await c.query('SELECT n FROM mutex_clients_counter WHERE k = $1', [key]);
    await new Promise((r) => setTimeout(r, 1));
    await c.query('UPDATE mutex_clients_counter SET n = $2 WHERE k = $1', [key, n + 1]);
    if (i % 10 === 0) throw new Error(`task ${i} fails after writing`);   // rolled back
    return { key, v: n + 1 };
  }));
  const failed = results.filter((r) => r.status === 'rejected');
  assert.equal(failed.length, 10);
  assert.ok(failed.every((r) => /fails after writing/.test(r.reason.message)));
  const { rows } = await db.query('SELECT k, n FROM mutex_clients_counter ORDER BY k');
  assert.deepEqual(rows, [{ k: 'a', n: 50 }, { k: 'b', n: 40 }]);
  // Each key's successful tasks saw 0, 1, 2, ... in turn: strictly sequential.
  const ok = results.filter((r) => r.status === 'fulfilled').map((r) => r.value);
  for (const [key, count] of [['a', 50], ['b', 40]]) {
    const seen = ok.filter((x) => x.key === key).map((x) => x.v).sort((x, y) => x - y);
    assert.deepEqual(seen, Array.from({ length: count }, (_, j) => j + 1));
  }
});

test('a timeout reports busy; the holder is not disturbed', async () => {
  const holder = await db.connect();
  try {
    await holder.query('BEGIN');
    await holder.query("SELECT idempotency.mutex_lock('busy-key')");
    const r = await run('busy-key', async () => 'ran', '100 ms');
    assert.deepEqual(r, { busy: true });
    const { rows } = await db.query(
      "SELECT count(*)::int AS n FROM idempotency.mutex_holders('busy-key') WHERE granted");
    assert.equal(rows[0].n, 1);
  } finally {
    await holder.query('ROLLBACK');
    holder.release();
  }
  assert.equal(await run('busy-key', async () => 'ran', '1 s'), 'ran');
});

test('bad keys reach the driver with their SQLSTATE and hint', async () => {
  await assert.rejects(db.query('SELECT idempotency.mutex_lock($1)', [null]), (err) => {
    assert.equal(err.code, '22004');
    assert.match(err.hint, /non-empty text/);
    return true;
  });
  await assert.rejects(db.query("SELECT idempotency.mutex_lock('')"), { code: '22023' });
  await assert.rejects(db.query("SELECT idempotency.mutex_lock('k', '-1 s')"), { code: '22023' });
});
