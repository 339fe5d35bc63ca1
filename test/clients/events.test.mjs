// The webhook scenario through node-postgres: the same event
// delivered 200 times at once through a pool is processed exactly once,
// and the 199 other deliveries replay the stored result.  Both usage
// patterns: the work in the caller's transaction, and the work outside the
// database with a lease and a token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pool, concurrently } from './lib.mjs';

const db = pool(20);
before(async () => {
  await db.query('CREATE TABLE IF NOT EXISTS events_effects (event_id text, delivery int)');
});
after(async () => {
  await db.query('DROP TABLE IF EXISTS events_effects');
  await db.query("DELETE FROM idempotency.processed_events WHERE scope LIKE 'clients-%'");
  await db.end();
});

const payload = { type: 'invoice.paid', invoice: 'in_42', amount: 1000 };

// In one transaction: claim, do the work in the database, complete, commit.
async function handleInTransaction(eventId, delivery) {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const { rows: [c] } = await client.query(
      "SELECT status, result FROM idempotency.claim($1, $2, 'clients-tx', wait => '60 s', require_complete => true)",
      [eventId, payload]);
    if (c.status !== 'claimed') {
      await client.query('COMMIT');
      return { status: c.status, result: c.result };
    }
    await client.query('INSERT INTO events_effects VALUES ($1, $2)', [eventId, delivery]);
    await client.query('SELECT pg_sleep(0.2)');   // the work takes a while
    const result = { processed_by: delivery };
    await client.query("SELECT idempotency.complete($1, $2, 'clients-tx')", [eventId, result]);
    await client.query('COMMIT');
    return { status: 'claimed', result };
  } catch (e) {
    await client.query('ROLLBACK');
    throw e;
  } finally {
    client.release();
  }
}

// Across transactions: claim with a lease (the claim commits at once), call
// "another system", complete with the token.  Waiting deliveries hold their
// pool connection while they wait, so the handler keeps its connection until
// it has completed: a handler that released it during the external call and
// asked the pool again for complete() would queue behind the 19 waiters.
async function handleWithLease(eventId, delivery) {
  const client = await db.connect();
  try {
    const { rows: [c] } = await client.query(
      "SELECT status, result, token FROM idempotency.claim($1, $2, 'clients-lease', lease => '1 minute', wait => '60 s')",
      [eventId, payload]);
    if (c.status !== 'claimed') return { status: c.status, result: c.result };
    await new Promise((r) => setTimeout(r, 200));  // the external call
    await client.query('INSERT INTO events_effects VALUES ($1, $2)', [eventId, delivery]);
    const result = { processed_by: delivery };
    await client.query("SELECT idempotency.complete($1, $2, 'clients-lease', $3)", [eventId, result, c.token]);
    return { status: 'claimed', result };
  } finally {
    client.release();
  }
}

for (const [name, handler] of [['in one transaction', handleInTransaction],
                               ['with a lease', handleWithLease]]) {
  test(`200 concurrent deliveries of one webhook event, ${name}: processed once, 199 replays`, async () => {
    const eventId = `evt_${name.replace(/ /g, '_')}`;
    const settled = await concurrently(200, (i) => handler(eventId, i));
    const rejected = settled.filter((r) => r.status === 'rejected');
    assert.equal(rejected.length, 0, rejected.map((r) => r.reason.message).join('; '));
    const outcomes = settled.map((r) => r.value);
    const claimed = outcomes.filter((o) => o.status === 'claimed');
    const replays = outcomes.filter((o) => o.status === 'completed');
    assert.equal(claimed.length, 1, 'exactly one delivery does the work');
    assert.equal(replays.length, 199, 'every other delivery replays');
    for (const r of replays) assert.deepEqual(r.result, claimed[0].result);
    const { rows: [{ n }] } = await db.query(
      'SELECT count(*)::int AS n FROM events_effects WHERE event_id = $1', [eventId]);
    assert.equal(n, 1, 'the side effect happened once');
  });
}

test('statuses and errors reach the driver with their SQLSTATE', async () => {
  const scope = 'clients-errors';
  const { rows: [c] } = await db.query(
    "SELECT status, token FROM idempotency.claim('k1', '{\"a\": 1}', $1, lease => '10 ms')", [scope]);
  assert.equal(c.status, 'claimed');
  const { rows: [m] } = await db.query(
    "SELECT status FROM idempotency.claim('k1', '{\"a\": 2}', $1)", [scope]);
  assert.equal(m.status, 'mismatch');              // HTTP 422
  await new Promise((r) => setTimeout(r, 50));
  const { rows: [t] } = await db.query(
    "SELECT status, attempts FROM idempotency.claim('k1', '{\"a\": 1}', $1)", [scope]);
  assert.deepEqual(t, { status: 'claimed', attempts: 2 });   // takeover
  await assert.rejects(
    db.query("SELECT idempotency.complete('k1', '1', $1, $2)", [scope, c.token]),
    (err) => err.code === '55P03' && /token is stale/.test(err.message));
  await assert.rejects(
    db.query("SELECT idempotency.complete('nope', '1', $1, gen_random_uuid())", [scope]),
    (err) => err.code === '22023' && /is not claimed/.test(err.message) && /idempotency.claim\(\)/.test(err.hint));
  await assert.rejects(db.query('SELECT idempotency.claim(NULL)'), (err) => err.code === '22004');

  const client = await db.connect();
  try {
    await client.query('BEGIN');
    await client.query("SELECT idempotency.claim('k2', scope => $1, require_complete => true)", [scope]);
    await assert.rejects(client.query('COMMIT'),
      (err) => err.code === '2D000' && /require_complete/.test(err.message));
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
});
