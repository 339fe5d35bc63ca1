// Leases through node-postgres: the HTTP-style statuses as an application
// sees them, a race of 50 concurrent acquirers, a waiter woken by a release
// on another connection, and 55P03 from lease_assert as a driver error.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { pool, concurrently } from './lib.mjs';

const db = pool(20);
after(async () => {
  await db.query("DELETE FROM idempotency.leases WHERE key LIKE 'clients:%'");
  await db.end();
});

const acquire = async (key, opts = {}) => {
  const { rows: [row] } = await db.query(
    `SELECT * FROM idempotency.lease_acquire($1, ttl => $2, holder => $3,
                                             if_match => $4, wait => $5)`,
    [key, opts.ttl ?? '30 seconds', opts.holder ?? null, opts.ifMatch ?? null, opts.wait ?? '0']);
  return row;
};

test('50 concurrent acquirers: exactly one gets the lease, the rest see its token', async () => {
  const results = await concurrently(50, (i) => acquire('clients:race', { holder: `w${i}` }));
  const rejected = results.filter((r) => r.status === 'rejected');
  assert.equal(rejected.length, 0, rejected.map((r) => r.reason.message).join('; '));
  const rows = results.map((r) => r.value);
  const winners = rows.filter((r) => r.status === 'acquired');
  assert.equal(winners.length, 1);
  for (const r of rows) {
    assert.equal(r.token, winners[0].token);
    assert.equal(r.fencing_token, '1');   // bigint arrives as a string
  }
});

test('release by ETag, 412 on a stale one, 404 when free', async () => {
  const a = await acquire('clients:etag');
  const b = await acquire('clients:etag', { ifMatch: a.token });
  assert.equal(b.status, 'acquired');
  assert.equal(Number(b.fencing_token), Number(a.fencing_token) + 1);
  const rel = (token) => db.query('SELECT idempotency.lease_release($1, $2) AS s', ['clients:etag', token])
    .then((r) => r.rows[0].s);
  assert.equal(await rel(a.token), 'precondition_failed');
  assert.equal(await rel(b.token), 'released');
  assert.equal(await rel(b.token), 'not_found');
});

test('a waiting acquire is woken by a release on another connection', async () => {
  const held = await acquire('clients:wait', { ttl: '1 hour' });
  const waiter = acquire('clients:wait', { wait: '30 seconds', holder: 'waiter' });
  await new Promise((r) => setTimeout(r, 300));
  const t0 = Date.now();
  await db.query('SELECT idempotency.lease_release($1, $2)', ['clients:wait', held.token]);
  const got = await waiter;
  const ms = Date.now() - t0;
  assert.equal(got.status, 'acquired');
  assert.equal(got.holder, 'waiter');
  assert.ok(ms < 5000, `woke ${ms} ms after the release`);
});

test('lease_assert: 55P03 with a hint once the lease changed hands', async () => {
  const a = await acquire('clients:assert', { ttl: '100 milliseconds' });
  await new Promise((r) => setTimeout(r, 200));
  await acquire('clients:assert');
  await assert.rejects(db.query('SELECT idempotency.lease_assert($1, $2)', ['clients:assert', a.token]),
    (err) => {
      assert.equal(err.code, '55P03');
      assert.match(err.message, /is not held by token/);
      assert.match(err.hint, /acquire the lease "clients:assert" again/);
      return true;
    });
  await assert.rejects(acquire('clients:assert', { ifMatch: 'not-a-uuid' }), (err) => err.code === '22P02');
  await assert.rejects(acquire('', {}), (err) => err.code === '22023');
});
