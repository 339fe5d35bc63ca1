# processed_events across crashes, restarts and dump/restore:
#  - kill -9 of a backend holding an in-transaction claim: the key is free
#    after recovery (and a waiter on it does not hang);
#  - kill -9 after a committed lease-mode claim: the record stays
#    'in_progress' until the lease ends, then the next claim takes it over;
#  - a waiter on a lease is woken by the holder's complete() commit, not at
#    the end of its wait (not a lock wait, so isolationtester cannot test it);
#  - immediate stop during a pgbench run of claim+complete: after recovery,
#    every acknowledged transaction's key is there and 'completed', and
#    every row is found through each index as through the table;
#  - pg_dump / pg_restore keeps the records and the fencing sequence.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use IPC::Run;
use IdemSession;

my $node = PostgreSQL::Test::Cluster->new('events');
$node->init;
$node->append_conf('postgresql.conf', "restart_after_crash = on\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION idempotency');

# 1. kill -9 of a backend holding an in-transaction claim
{
	my $holder = IdemSession->new($node, 'postgres');
	$holder->query('BEGIN');
	is($holder->query("SELECT status FROM idempotency.claim('crash-1')"),
		'claimed', 'holder claimed crash-1 in a transaction');
	my $waiter = IdemSession->new($node, 'postgres');
	$waiter->query_start("SELECT status FROM idempotency.claim('crash-1', wait => '5 minutes')");
	# the waiter queues on the claim lock
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 18689")
	  or die 'waiter never queued';
	kill 'KILL', $holder->pid;
	ok(IdemSession::wait_for_server($node), 'server is back after kill -9 of the holder');
	$holder->quit;
	$waiter->quit;
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM idempotency.processed_events WHERE key = 'crash-1'"),
		'0', 'the uncommitted claim is gone');
	is($node->safe_psql('postgres',
			"SELECT status || ' ' || attempts FROM idempotency.claim('crash-1')"),
		'claimed 1', 'the key is free after the crash');
}

# 2. kill -9 after a committed lease-mode claim
{
	my $worker = IdemSession->new($node, 'postgres');
	my $claimed_at = time;
	is($worker->query("SELECT status FROM idempotency.claim('crash-2', lease => '3 seconds')"),
		'claimed', 'worker claimed crash-2 with a 3 s lease (committed)');
	kill 'KILL', $worker->pid;
	ok(IdemSession::wait_for_server($node), 'server is back after kill -9 of the worker');
	$worker->quit;
	my $during = $node->safe_psql('postgres',
		"SELECT status || ' ' || attempts FROM idempotency.claim('crash-2')");
	if (time - $claimed_at < 2.5)
	{
		is($during, 'in_progress 1', 'the lease survives the crash: in_progress until it ends');
	}
	else
	{
		pass('server restart took longer than the lease; in_progress check skipped');
	}
	# the next claim waits for the lease's end and takes over
	is($node->safe_psql('postgres',
			"SELECT status || ' ' || attempts FROM idempotency.claim('crash-2', wait => '60 s')"),
		'claimed 2', 'after the lease the next claim takes over (attempts 2)');
	cmp_ok(time - $claimed_at, '<', 30, 'the waiter woke at the lease end, not at its 60 s deadline');
}

# 3. a lease waiter is woken by the holder's complete() commit
{
	my $token = $node->safe_psql('postgres',
		"SELECT token FROM idempotency.claim('wake-1', lease => '1 hour')");
	my $waiter = IdemSession->new($node, 'postgres');
	my $t0 = time;
	$waiter->query_start("SELECT status, result FROM idempotency.claim('wake-1', wait => '60 s')");
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = " . $waiter->pid
		  . " AND wait_event_type = 'Extension'")
	  or die 'waiter never slept';
	$node->safe_psql('postgres', "SELECT idempotency.complete('wake-1', '\"done\"', token => '$token')");
	is($waiter->query_wait, 'completed|"done"', 'the waiter replays the result');
	cmp_ok(time - $t0, '<', 30, 'the waiter was woken by the commit, not by its 60 s deadline');
	$waiter->quit;
}

# 4. immediate stop during a pgbench run of claim + complete
{
	$node->safe_psql('postgres', 'CREATE SEQUENCE pb_keys');
	my $script = "$PostgreSQL::Test::Utils::tmp_check/events_pgbench.sql";
	open my $fh, '>', $script or die $!;
	print $fh <<'SQL';
SELECT nextval('pb_keys') AS k \gset
BEGIN;
SELECT status FROM idempotency.claim('pb-' || :k, require_complete => true);
SELECT idempotency.complete('pb-' || :k, jsonb_build_object('k', 'pb-' || :k));
COMMIT;
SQL
	close $fh;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-c', '4', '-T', '60', '-f', $script, $node->connstr('postgres') ],
		'>', \$out, '2>', \$err);
	# let it run, then stop the server under it
	for (1 .. 300)
	{
		$h->pump_nb;
		last if !$h->pumpable;
		last if $node->safe_psql('postgres',
			"SELECT count(*) >= 500 FROM idempotency.processed_events WHERE key LIKE 'pb-%'") eq 't';
		sleep 0.1;
	}
	die "pgbench did not get going: $out $err" if !$h->pumpable;
	$node->stop('immediate');
	$h->finish;

	my ($acked) = $out =~ /number of transactions actually processed: (\d+)/;
	ok(defined $acked && $acked > 0, 'pgbench reported acknowledged transactions')
	  or diag("pgbench stdout: $out\nstderr: $err");
	$node->start;
	my ($completed, $other) = split /\|/, $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE status = 'completed' AND result ->> 'k' = key),"
		  . " count(*) FILTER (WHERE status <> 'completed')"
		  . " FROM idempotency.processed_events WHERE key LIKE 'pb-%'");
	cmp_ok($completed, '>=', $acked // 0,
		"every acknowledged claim+complete is there and completed ($completed rows, $acked acknowledged)");
	is($other, '0', 'no claim is left in_progress (claim and complete commit together)');

	# claim and complete write their rows without the executor: every row
	# version recovery brought back is reachable through each index, as
	# through the table
	my $counts = q{
		SELECT (SELECT count(*) FROM idempotency.processed_events
		         WHERE key >= 'pb-' AND key < 'pb.') || ' '
		    || (SELECT count(*) FROM idempotency.processed_events
		         WHERE expires_at > '-infinity')};
	my $by_table = $node->safe_psql('postgres',
		"SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off; $counts");
	my $by_index = $node->safe_psql('postgres',
		"SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off; $counts");
	is($by_index, $by_table, "every row through the primary key and the expiry index ($by_table)");
	like($node->safe_psql('postgres',
			"SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off;"
			  . " EXPLAIN (COSTS OFF) $counts"),
		qr/Index Scan using processed_events_pkey.*Index Scan using processed_events_expires_at_idx/s,
		'... both read through their index');
}

# 5. pg_dump / pg_restore keeps the records
{
	$node->safe_psql('postgres', q{
		SELECT idempotency.mark_processed('dump-1');
		SELECT idempotency.claim('dump-2', lease => '1 hour');
		CREATE ROLE regress_ev_tenant;
		SET ROLE regress_ev_tenant;
		SELECT idempotency.claim('dump-3');
		SELECT idempotency.complete('dump-3', '{"r": 3}',
			token => (SELECT token FROM idempotency.processed_events WHERE key = 'dump-3'));
		RESET ROLE;
	});
	my $before = $node->safe_psql('postgres',
		"SELECT owner, scope, key, status, fingerprint, result, error, token, fencing_token, attempts,"
		  . " created_at, updated_at, locked_until, expires_at FROM idempotency.processed_events ORDER BY 1, 2, 3");
	my $dump = "$PostgreSQL::Test::Utils::tmp_check/events.dump";
	$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump');
	$node->safe_psql('postgres', 'CREATE DATABASE restored');
	$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
	my $after = $node->safe_psql('restored',
		"SELECT owner, scope, key, status, fingerprint, result, error, token, fencing_token, attempts,"
		  . " created_at, updated_at, locked_until, expires_at FROM idempotency.processed_events ORDER BY 1, 2, 3");
	is($after, $before, 'every record is restored unchanged');
	like($after, qr/dump-3\|completed/, 'including another role\'s records');
	is($node->safe_psql('restored',
			"SELECT status FROM idempotency.claim('dump-1')"),
		'completed', 'a restored record is replayed');
	is($node->safe_psql('restored',
			"SELECT (SELECT fencing_token FROM idempotency.claim('new-after-restore'))"
			  . " > (SELECT max(fencing_token) FROM idempotency.processed_events WHERE key <> 'new-after-restore')"),
		't', 'fencing tokens keep increasing after a restore');
	$node->safe_psql('restored', 'DELETE FROM idempotency.processed_events');
	$node->safe_psql('postgres', 'DELETE FROM idempotency.processed_events');
	$node->safe_psql('postgres', 'DROP ROLE regress_ev_tenant');
}

$node->stop;
done_testing();
