# Waiters are woken when the change they wait for commits through PREPARE
# TRANSACTION and COMMIT PREPARED.  COMMIT PREPARED runs none of the
# preparing session's callbacks, so a wake-up sent "at commit" from the
# preparing backend never comes: the waiter used to sleep until its own
# deadline or the lease's end.  Covered: a waiter that started before the
# PREPARE (sleeping on its latch), one that started after it (queued on the
# prepared transaction's lock), a ROLLBACK PREPARED (the waiter keeps
# waiting), and both claim() and lease_acquire().  The waits are 30 days,
# longer than INT_MAX milliseconds: they must be neither infinite nor an
# assertion failure on assert-enabled servers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IdemSession;

my $node = PostgreSQL::Test::Cluster->new('prepared');
$node->init;
$node->append_conf('postgresql.conf', 'max_prepared_transactions = 10');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION idempotency');

my $waiter = IdemSession->new($node, 'postgres');
my $changer = IdemSession->new($node, 'postgres');

# Is the waiter's backend still waiting (not idle)?
sub waiting
{
	return $node->safe_psql('postgres',
		"SELECT state = 'active' FROM pg_stat_activity WHERE pid = " . $waiter->pid) eq 't';
}

# Wait until the waiter's backend sleeps in its wait.
sub wait_for_sleep
{
	$node->poll_query_until('postgres',
		"SELECT wait_event_type IN ('Extension', 'Lock') FROM pg_stat_activity WHERE pid = "
		  . $waiter->pid)
	  or die 'waiter never started waiting';
}

sub claim_token
{
	my ($key) = @_;
	return $node->safe_psql('postgres',
		"SELECT token FROM idempotency.claim('$key', lease => '1 hour')");
}

sub lease_token
{
	my ($key) = @_;
	return $node->safe_psql('postgres',
		"SELECT token FROM idempotency.lease_acquire('$key', ttl => '1 hour')");
}

# 1. claim(): the waiter sleeps before the PREPARE.
my $t = claim_token('c1');
$waiter->query_start("SELECT status || ' ' || (result->>'n') FROM idempotency.claim('c1', wait => '30 days')");
wait_for_sleep();
$changer->query("BEGIN");
$changer->query("SELECT idempotency.complete('c1', '{\"n\": 1}', token => '$t')");
$changer->query("PREPARE TRANSACTION 'p1'");
usleep(300_000);
ok(waiting(), 'claim waiter still waits while the completion is only prepared');
my $start = time;
$changer->query("COMMIT PREPARED 'p1'");
is($waiter->query_wait, 'completed 1', 'claim waiter gets the replay after COMMIT PREPARED');
cmp_ok(time - $start, '<', 5, 'claim waiter woken at COMMIT PREPARED, not at its deadline');

# 2. claim(): the waiter starts after the PREPARE.
$t = claim_token('c2');
$changer->query("BEGIN");
$changer->query("SELECT idempotency.complete('c2', '{\"n\": 2}', token => '$t')");
$changer->query("PREPARE TRANSACTION 'p2'");
$waiter->query_start("SELECT status || ' ' || (result->>'n') FROM idempotency.claim('c2', wait => '30 days')");
wait_for_sleep();
usleep(300_000);
ok(waiting(), 'late claim waiter queues behind the prepared transaction');
$start = time;
$node->safe_psql('postgres', "COMMIT PREPARED 'p2'");
is($waiter->query_wait, 'completed 2', 'late claim waiter gets the replay');
cmp_ok(time - $start, '<', 5, 'late claim waiter woken at COMMIT PREPARED');

# 3. ROLLBACK PREPARED changes nothing: the waiter keeps waiting, until the
#    key really changes.
$t = claim_token('c3');
$waiter->query_start("SELECT status FROM idempotency.claim('c3', wait => '30 days')");
wait_for_sleep();
$changer->query("BEGIN");
$changer->query("SELECT idempotency.complete('c3', '{\"n\": 3}', token => '$t')");
$changer->query("PREPARE TRANSACTION 'p3'");
$changer->query("ROLLBACK PREPARED 'p3'");
usleep(500_000);
ok(waiting(), 'claim waiter keeps waiting after ROLLBACK PREPARED');
$changer->query("SELECT idempotency.complete('c3', '{\"n\": 3}', token => '$t')");
is($waiter->query_wait, 'completed', 'and is woken by the real completion');

# 4. lease_acquire(): woken by a release committed through 2PC, before and
#    after the PREPARE.
$t = lease_token('l1');
$waiter->query_start("SELECT status FROM idempotency.lease_acquire('l1', wait => '30 days')");
wait_for_sleep();
$changer->query("BEGIN");
$changer->query("SELECT idempotency.lease_release('l1', '$t')");
$changer->query("PREPARE TRANSACTION 'p4'");
usleep(300_000);
ok(waiting(), 'lease waiter still waits while the release is only prepared');
$start = time;
$changer->query("COMMIT PREPARED 'p4'");
is($waiter->query_wait, 'acquired', 'lease waiter acquires after COMMIT PREPARED');
cmp_ok(time - $start, '<', 5, 'lease waiter woken at COMMIT PREPARED');

$t = lease_token('l2');
$changer->query("BEGIN");
$changer->query("SELECT idempotency.lease_release('l2', '$t')");
$changer->query("PREPARE TRANSACTION 'p5'");
$waiter->query_start("SELECT status FROM idempotency.lease_acquire('l2', wait => '30 days')");
wait_for_sleep();
$start = time;
$changer->query("COMMIT PREPARED 'p5'");
is($waiter->query_wait, 'acquired', 'late lease waiter acquires after COMMIT PREPARED');
cmp_ok(time - $start, '<', 5, 'late lease waiter woken at COMMIT PREPARED');

# Nothing of ours is left in the lock table.
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid >= 18688"),
	'0', 'no advisory lock of the extension left');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'0', 'no prepared transaction left');

$waiter->quit;
$changer->quit;
$node->stop;
done_testing();
