// test/bench/redis-guard.mjs -- the Redis idempotency-guard pattern, as a
// load generator for the benchmark's redis group (test/bench/groups/60-redis.sh).
//
//   node redis-guard.mjs PORT CLIENTS SECONDS
//
// Each of CLIENTS connections to 127.0.0.1:PORT runs, for a new key each
// call, what an application does around a request:
//
//   SET key in_progress NX EX 86400     (claim; nil when someone has it)
//   SET key <result> EX 86400           (complete; keeps the expiry)
//
// one command at a time per connection, no pipelining.  Speaks RESP over
// node:net directly (no npm package).  Prints pgbench's two summary lines
// (calls counted as transactions) so the benchmark reads it like pgbench.
import net from 'node:net';

const [port, clients, seconds] = process.argv.slice(2).map(Number);
const TTL = '86400';
const RESULT = '{"ok": true}';
let done = 0;
let running = true;

function command(...args) {
	let s = `*${args.length}\r\n`;
	for (const a of args) s += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
	return s;
}

function fail(message) {
	console.error(message);
	process.exit(1);
}

// One connection; resolves with its "go" function once connected.
function client(id) {
	return new Promise((resolve) => {
		const sock = net.connect({ host: '127.0.0.1', port });
		sock.setNoDelay(true);
		let buf = '';
		let n = 0;
		let completing = false;
		let key;
		const next = () => {
			if (!running) return;
			key = `req-${process.pid}-${id}-${n++}`;
			completing = false;
			sock.write(command('SET', key, 'in_progress', 'NX', 'EX', TTL));
		};
		sock.on('data', (d) => {
			buf += d;
			let i;
			while ((i = buf.indexOf('\r\n')) >= 0) {
				const line = buf.slice(0, i);
				buf = buf.slice(i + 2);
				if (line[0] === '-') fail(`redis: ${line}`);
				if (!completing && line === '+OK') {
					// first time: (the work would run here) store the result
					completing = true;
					sock.write(command('SET', key, RESULT, 'EX', TTL));
				} else {
					// completed, or nil: a duplicate (never, keys are fresh)
					done++;
					next();
				}
			}
		});
		sock.on('error', (e) => fail(`redis connection: ${e.message}`));
		sock.on('connect', () => resolve(next));
	});
}

// Connect every client first, then start the clock (pgbench's "without
// initial connection time").
const starters = await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
const start = process.hrtime.bigint();
for (const go of starters) go();
setTimeout(() => {
	running = false;
	const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
	console.log(`number of transactions actually processed: ${done}`);
	console.log(`tps = ${(done / elapsed).toFixed(6)} (without initial connection time)`);
	process.exit(0);
}, seconds * 1000);
