// The driver's view of the extension: calls through a pool, and errors that
// arrive with their SQLSTATE and hint, which is what application code
// switches on.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { pool, concurrently } from './lib.mjs';

const db = pool(20);
after(() => db.end());

test('200 concurrent calls through a pool of 20 connections', async () => {
  const { rows: [{ v }] } = await db.query(
    "SELECT default_version AS v FROM pg_available_extensions WHERE name = 'idempotency'");
  const results = await concurrently(200, () => db.query('SELECT idempotency.version() AS v'));
  const rejected = results.filter((r) => r.status === 'rejected');
  assert.equal(rejected.length, 0, rejected.map((r) => r.reason.message).join('; '));
  assert.deepEqual(new Set(results.map((r) => r.value.rows[0].v)), new Set([v]));
});

test('a version mismatch reaches the driver as SQLSTATE 55000 with a hint', async () => {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    await client.query("UPDATE pg_extension SET extversion = '0.0.1' WHERE extname = 'idempotency'");
    await client.query('ALTER FUNCTION idempotency.version() COST 2');
    await assert.rejects(client.query('SELECT idempotency.version()'), (err) => {
      assert.equal(err.code, '55000');
      assert.match(err.message, /SQL objects of version 0\.0\.1/);
      assert.match(err.hint, /ALTER EXTENSION idempotency UPDATE/);
      return true;
    });
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
  const { rows } = await db.query('SELECT idempotency.version() IS NOT NULL AS ok');
  assert.equal(rows[0].ok, true);
});
