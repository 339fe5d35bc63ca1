# Keyed mutexes and dying backends: nothing about a mutex outlives the
# process that holds it.
#
# 1. A backend holding a mutex (transaction scope, in an open transaction)
#    is killed with SIGTERM: the waiter queued behind it is granted the
#    mutex at once, well inside its own 5-minute timeout.
# 2. The same with a session mutex held by an idle session.
# 3. A holder killed with SIGKILL: the postmaster resets every backend (the
#    waiter's connection dies too, as with any crash); afterwards the mutex
#    is free -- it lives only in shared memory, never on disk.
# 4. A session mutex granted to a waiter at the moment its wait is cancelled
#    (the lock manager keeps a lock granted while the error is raised): the
#    call fails, and the waiter holds neither the mutex nor its marker.  The
#    waiter is stopped (SIGSTOP) while the holder unlocks and cancels it, so
#    that both have happened when it runs again.  Without a timeout (the
#    server's lock_timeout) and with one (the wait in a subtransaction).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IdemSession;

my $node = PostgreSQL::Test::Cluster->new('mutex');
$node->init;
# PostgreSQL::Test::Cluster turns crash restarts off; part 3 needs them.
$node->append_conf('postgresql.conf', 'restart_after_crash = on');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION idempotency');

# Wait until $pid shows as waiting for the mutex $key.
sub wait_for_waiter
{
	my ($key, $pid) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM idempotency.mutex_holders('$key') WHERE pid = $pid AND NOT granted")
	  or die "backend $pid never queued for mutex $key";
}

sub kill_and_handoff
{
	my ($key, $lock_sql, $label) = @_;
	my $holder = IdemSession->new($node, 'postgres');
	my $waiter = IdemSession->new($node, 'postgres');

	is($holder->query($lock_sql), 't', "$label: holder got the mutex");
	$waiter->query_start(
		"SELECT idempotency.mutex_lock('$key', '5 minutes') AS got, clock_timestamp()");
	wait_for_waiter($key, $waiter->pid);
	ok($waiter->query_running, "$label: waiter is waiting");

	my $t0 = time;
	kill 'TERM', $holder->pid;
	my $out = $waiter->query_wait;
	my $elapsed = time - $t0;
	like($out, qr/^t\|/, "$label: waiter got the mutex after the holder was killed");
	# "At once": the lock manager wakes it when the dying backend releases
	# its locks.  30 s is a generous bound next to the 5-minute timeout.
	cmp_ok($elapsed, '<', 30, "$label: hand-off took ${elapsed}s");
	$holder->quit;
	$waiter->quit;
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM idempotency.mutex_holders('$key')"),
		'0', "$label: nothing left behind");
	return;
}

kill_and_handoff('tx-key', "BEGIN; SELECT idempotency.mutex_lock('tx-key')",
	'transaction mutex, SIGTERM');
kill_and_handoff('session-key', "SELECT idempotency.mutex_session_lock('session-key')",
	'session mutex, SIGTERM');

sub granted_while_cancelled
{
	my ($key, $timeout, $label) = @_;
	my $holder = IdemSession->new($node, 'postgres');
	my $waiter = IdemSession->new($node, 'postgres');

	is($holder->query("SELECT idempotency.mutex_session_lock('$key')"), 't',
		"$label: holder got the session mutex");
	$waiter->query_start("SELECT idempotency.mutex_session_lock('$key', $timeout)");
	wait_for_waiter($key, $waiter->pid);
	kill 'STOP', $waiter->pid;
	is($holder->query(
			"SELECT idempotency.mutex_session_unlock('$key'), pg_cancel_backend(" . $waiter->pid . ")"),
		't|t', "$label: holder unlocked and cancelled the stopped waiter");
	kill 'CONT', $waiter->pid;
	$waiter->query_wait;
	like($waiter->stderr, qr/canceling statement due to user request/,
		"$label: the waiter's call was cancelled");
	is($waiter->query(
			"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"),
		'0', "$label: the cancelled waiter holds neither the mutex nor its marker");
	is($holder->query("SELECT idempotency.mutex_try_lock('$key')"), 't',
		"$label: the mutex is free");
	$holder->quit;
	$waiter->quit;
	return;
}

granted_while_cancelled('race-key-1', 'NULL', 'granted while cancelled, no timeout');
granted_while_cancelled('race-key-2', "'5 minutes'", 'granted while cancelled, with a timeout');

# SIGKILL: crash and reset.
my $holder = IdemSession->new($node, 'postgres');
is($holder->query("BEGIN; SELECT idempotency.mutex_lock('crash-key')"), 't',
	'SIGKILL: holder got the mutex');
kill 'KILL', $holder->pid;
$holder->quit;
# The postmaster resets the cluster; wait until it accepts connections.
ok(IdemSession::wait_for_server($node), 'SIGKILL: server is back after the crash reset');
is($node->safe_psql('postgres',
		"SELECT idempotency.mutex_try_lock('crash-key')"),
	't', 'SIGKILL: after the crash reset the mutex is free');

$node->stop;
done_testing();
