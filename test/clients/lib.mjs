// Shared helpers for the node-postgres client tests.  Connection settings
// come from the standard PG* environment variables set by test/run.
import pg from 'pg';

export function pool(max = 20) {
  return new pg.Pool({ max, connectionTimeoutMillis: 30000 });
}

// Run `n` calls of `fn` at once and wait for all of them to settle.
export async function concurrently(n, fn) {
  return Promise.allSettled(Array.from({ length: n }, (_, i) => fn(i)));
}
