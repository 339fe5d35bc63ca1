// Insert-or-get through a real driver: many concurrent "create the account for
// this email" calls through a node-postgres pool of 20 connections.  Every
// call must be fulfilled with the same row; the table ends with one row.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pool, concurrently } from './lib.mjs';

const db = pool(20);

before(async () => {
  await db.query(`CREATE TABLE upsert_clients_accounts (
      id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, name text,
      created_at timestamptz NOT NULL DEFAULT now())`);
});
after(async () => {
  await db.query('DROP TABLE IF EXISTS upsert_clients_accounts');
  await db.end();
});

async function race(n, email) {
  const results = await concurrently(n, (i) => db.query(
    `SELECT (item).id, (item).email, created
       FROM idempotency.get_or_create(NULL::upsert_clients_accounts, $1::jsonb)`,
    [JSON.stringify({ email, name: `caller ${i}` })]));
  const rejected = results.filter((r) => r.status === 'rejected');
  assert.equal(rejected.length, 0, rejected.map((r) => r.reason.message).join('; '));
  const rows = results.map((r) => r.value.rows);
  assert.ok(rows.every((r) => r.length === 1 && r[0].id !== null), 'a call returned no row');
  const ids = new Set(rows.map((r) => r[0].id));
  assert.equal(ids.size, 1, `distinct ids: ${[...ids].join(', ')}`);
  assert.equal(rows.filter((r) => r[0].created).length, 1, 'exactly one call created the row');
  const { rows: [{ n: count }] } = await db.query(
    'SELECT count(*)::int AS n FROM upsert_clients_accounts WHERE email = $1', [email]);
  assert.equal(count, 1);
  console.log(`# result: ${n} concurrent calls -> 1 id, 1 created, ${count} row`);
}

test('25 concurrent get_or_create calls for one new email: one row, one id', async () => {
  await race(25, 'race-25@example.com');
});

test('500 concurrent get_or_create calls for one new email: one row, one id', async () => {
  await race(500, 'race-500@example.com');
});

test('idempotent_upsert_many and update_or_create through the driver', async () => {
  const batch = [{ email: 'm1@example.com' }, { email: 'm2@example.com' }, { email: 'm1@example.com' }];
  const results = await concurrently(20, () => db.query(
    'SELECT id, email FROM idempotency.idempotent_upsert_many(NULL::upsert_clients_accounts, $1::jsonb)',
    [JSON.stringify(batch)]));
  assert.ok(results.every((r) => r.status === 'fulfilled'));
  const first = results[0].value.rows;
  assert.deepEqual(first.map((r) => r.email), batch.map((b) => b.email));
  assert.equal(first[0].id, first[2].id);
  for (const r of results) assert.deepEqual(r.value.rows, first);

  const upd = await concurrently(20, (i) => db.query(
    `SELECT (item).name, created FROM idempotency.update_or_create(NULL::upsert_clients_accounts, $1::jsonb)`,
    [JSON.stringify({ email: 'm1@example.com', name: `n${i % 2}` })]));
  assert.ok(upd.every((r) => r.status === 'fulfilled'));
  assert.ok(upd.every((r) => r.value.rows[0].created === false));
});

test('misuse arrives with its SQLSTATE: 42P10, 22004, 42703', async () => {
  await assert.rejects(db.query(
    "SELECT idempotency.idempotent_upsert(NULL::upsert_clients_accounts, '{\"name\": \"x\"}')"),
  (err) => { assert.equal(err.code, '42P10'); assert.match(err.hint, /upsert_clients_accounts/); return true; });
  await assert.rejects(db.query(
    "SELECT idempotency.idempotent_upsert(NULL::upsert_clients_accounts, '{\"email\": null}')"),
  (err) => { assert.equal(err.code, '22004'); return true; });
  await assert.rejects(db.query(
    "SELECT idempotency.idempotent_upsert(NULL::upsert_clients_accounts, '{\"email\": \"a\", \"nope\": 1}')"),
  (err) => { assert.equal(err.code, '42703'); return true; });
});
