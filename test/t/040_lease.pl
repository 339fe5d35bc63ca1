# Leases are rows: they survive an immediate stop (crash) and restart, and a
# backend that dies while holding one.  Fencing tokens keep increasing across
# all of it, and a lease left behind by a dead holder is taken over, with a
# higher fencing token, only once it has expired.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IdemSession;

my $node = PostgreSQL::Test::Cluster->new('lease');
$node->init;
# kill -9 of a backend makes the postmaster reinitialize; the test framework
# turns that off by default.
$node->append_conf('postgresql.conf', 'restart_after_crash = on');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION idempotency');

sub acquire
{
	my ($key, $ttl, $holder) = @_;
	return $node->safe_psql('postgres',
		"SELECT status || ' ' || fencing_token || ' ' || token
		   FROM idempotency.lease_acquire('$key', ttl => '$ttl', holder => '$holder')");
}

sub status
{
	my ($key) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce((SELECT holder || ' ' || fencing_token || ' ' || token
		                    FROM idempotency.lease_status('$key')), 'free')");
}

# Fencing tokens across release and an immediate stop.
like(acquire('job', '1 hour', 'a'), qr/^acquired 1 /, 'first acquire: fencing token 1');
is($node->safe_psql('postgres', "SELECT idempotency.lease_release('job')"),
	'released', 'released');
like(acquire('job', '1 hour', 'b'), qr/^acquired 2 /, 'after release: fencing token 2');
$node->safe_psql('postgres', "SELECT idempotency.lease_release('job')");

$node->stop('immediate');
$node->start;
like(acquire('job', '1 hour', 'c'), qr/^acquired 3 /,
	'after an immediate stop: fencing token 3, never reused');

# A lease held across a crash is still held after recovery (same token),
# blocks others until it expires, and is then taken with a higher token.
my ($st, $fence, $token) = split / /, acquire('held', '5 seconds', 'crashed-holder');
is($st, 'acquired', 'lease acquired just before the crash');
my $t0 = time();
$node->stop('immediate');
$node->start;
is(status('held'), "crashed-holder $fence $token", 'the lease survived the crash');
like(acquire('held', '1 hour', 'next'), qr/^conflict $fence $token$/,
	'another acquirer gets conflict while it is live');
my $left = 5.5 - (time() - $t0);
usleep($left * 1e6) if $left > 0;
like(acquire('held', '1 hour', 'next'), qr/^acquired @{[$fence + 1]} /,
	'after expiry it is acquired with a higher fencing token');

# A backend killed while holding a lease: the lease is a committed row, so
# it stays until it expires -- first with pg_terminate_backend, then with
# kill -9 (which makes the postmaster reinitialize every backend).
for my $how ('terminate', 'kill9')
{
	my $key = "killed-$how";
	my $s = IdemSession->new($node, 'postgres');
	my $out = $s->query(
		"SELECT status || ' ' || fencing_token FROM idempotency.lease_acquire('$key', ttl => '5 seconds', holder => 'doomed')");
	is($out, 'acquired 1', "$how: the doomed backend holds the lease");
	my $t1 = time();
	if ($how eq 'terminate')
	{
		$node->safe_psql('postgres', 'SELECT pg_terminate_backend(' . $s->pid . ')');
	}
	else
	{
		kill 'KILL', $s->pid;
	}
	$s->quit;
	# Wait until the server accepts connections again (after kill -9 it
	# restarts all backends).
	ok(IdemSession::wait_for_server($node), "$how: the server accepts connections again");
	like(status($key), qr/^doomed 1 /, "$how: the lease outlives its backend");
	like(acquire($key, '1 hour', 'rescuer'), qr/^conflict 1 /,
		"$how: conflict while the dead holder's lease is live");
	my $rest = 5.5 - (time() - $t1);
	usleep($rest * 1e6) if $rest > 0;
	like(acquire($key, '1 hour', 'rescuer'), qr/^acquired 2 /,
		"$how: acquired with fencing token 2 after expiry");
}

# A waiting acquire is woken by a release in another session promptly.
my ($s2, $tok) = (undef, undef);
(undef, undef, $tok) = split / /, acquire('wake', '1 hour', 'holder');
$s2 = IdemSession->new($node, 'postgres');
$s2->query_start(
	"SELECT status FROM idempotency.lease_acquire('wake', wait => '60 s')");
# Let it start waiting.
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND query LIKE '%lease_acquire(''wake''%'"
) or die "waiter did not start waiting";
my $t2 = time();
$node->safe_psql('postgres', "SELECT idempotency.lease_release('wake', '$tok')");
is($s2->query_wait, 'acquired', 'the waiter got the lease after the release');
my $latency = time() - $t2;
note sprintf('release to wake-up (incl. psql round trips): %.1f ms', $latency * 1000);
cmp_ok($latency, '<', 2, 'the waiter woke within 2 s of the release (target: 50 ms)');
$s2->quit;

# pg_dump / pg_restore keeps the leases table (pg_extension_config_dump),
# so fencing tokens keep increasing in the restored database.
$node->safe_psql('postgres', "SELECT idempotency.lease_release('job')");
my $dump = $node->basedir . '/lease.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
	'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
is( $node->safe_psql('restored',
		"SELECT status || ' ' || fencing_token FROM idempotency.lease_acquire('job')"),
	'acquired 4',
	'after dump and restore the next fencing token of "job" is 4');

$node->stop;
done_testing();
