# Failover to a synchronous hot standby.
#
# On the primary: committed claims (completed, failed, still in progress
# within their lease, about to expire), mark_processed, leases acquired,
# renewed and released, a session mutex held, and a claim in a transaction
# that never commits.  On the hot standby, before promotion: every function
# of the extension either works (reads, mutexes -- node-local) or fails up
# front with SQLSTATE 25006 and a hint, and the server stays up.  Then the
# primary is stopped in immediate mode (a crash) and the standby promoted.
# On the new primary: every acknowledged record and lease is there
# unchanged; replays return the stored outcome; a claim within its lease is
# still in_progress and its holder can finish it; fencing tokens handed out
# after the promotion (claims, claim takeovers, lease acquisitions) are
# larger than every one handed out before; the mutex held on the old
# primary is free (mutexes live in the lock manager's memory, not in WAL).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use IdemSession;

my $t_start = time();

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION idempotency');
$primary->safe_psql('postgres',
	"CREATE TABLE items (id int PRIMARY KEY, name text);
	 INSERT INTO items VALUES (1, 'one')");
$primary->backup('base');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

# Synchronous replication: a commit returns once the standby has applied
# it, so what the client saw committed is on the standby (and readable
# there at once).
$primary->append_conf('postgresql.conf',
	"synchronous_standby_names = '*'\nsynchronous_commit = remote_apply\n");
$primary->reload;
$primary->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE sync_state = 'sync'")
  or die 'the standby never became synchronous';

sub sq
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# Every fencing token handed out before the failover, for claims (one
# sequence for all keys) and per lease key.
my $max_claim_fence = 0;
my %lease_fence;

sub claim
{
	my ($node, $args) = @_;
	my ($status, $token, $fence, $attempts, $result) = split /\|/,
	  sq($node, "SELECT status, token, fencing_token, attempts, result
	              FROM idempotency.claim($args)"), -1;
	return ($status, $token, $fence, $attempts, $result);
}

sub lease_acquire
{
	my ($node, $key, $args) = @_;
	my ($status, $token, $fence) = split /\|/,
	  sq($node, "SELECT status, token, fencing_token
	              FROM idempotency.lease_acquire('$key'$args)"), -1;
	return ($status, $token, $fence);
}

# A claim in a transaction that is still open at the crash: never
# acknowledged, so it must not survive; its fencing token was handed out,
# though.  The commits below come later in the WAL, so the sequence's
# WAL record covering this token reaches the standby with them.
my $uncommitted = IdemSession->new($primary, 'postgres');
$uncommitted->query('BEGIN');
my $unc_fence = $uncommitted->query(
	"SELECT fencing_token FROM idempotency.claim('uncommitted')");
like($unc_fence, qr/^\d+$/, 'a claim in an open transaction got a fencing token');
$max_claim_fence = $unc_fence;

# A completed claim, across transactions (claim, then complete with the token).
my ($st, $done_token, $fence) = claim($primary, "'done', '{\"order\": 1}', lease => '1 hour'");
is($st, 'claimed', 'claimed "done"');
$max_claim_fence = $fence if $fence > $max_claim_fence;
sq($primary, "SELECT idempotency.complete('done', '{\"charge\": \"ch_1\"}', token => '$done_token')");

# A claim still in progress within its lease, and one whose lease ends soon.
my ($open_st, $open_token, $open_fence) = claim($primary, "'open', lease => '1 hour'");
is($open_st, 'claimed', 'claimed "open" with a one-hour lease');
$max_claim_fence = $open_fence if $open_fence > $max_claim_fence;
my ($short_st, $short_token, $short_fence) = claim($primary, "'short', lease => '3 seconds'");
my $short_until = time() + 3;
is($short_st, 'claimed', 'claimed "short" with a three-second lease');
$max_claim_fence = $short_fence if $short_fence > $max_claim_fence;

# A failed claim (stored error, replayed), a retried one, mark_processed.
my (undef, $fail_token, $fail_fence) = claim($primary, "'failed'");
$max_claim_fence = $fail_fence if $fail_fence > $max_claim_fence;
sq($primary, "SELECT idempotency.fail('failed', '{\"code\": \"card_declined\"}', retryable => false, token => '$fail_token')");
my (undef, $retry_token, $retry_fence) = claim($primary, "'retried'");
$max_claim_fence = $retry_fence if $retry_fence > $max_claim_fence;
sq($primary, "SELECT idempotency.fail('retried', token => '$retry_token')");
is(sq($primary, "SELECT idempotency.mark_processed('event-1')"), 't', 'mark_processed("event-1")');

# Enough claims to pass several of the sequence's WAL-logged-ahead blocks
# (32 values each), one of them in a transaction that rolls back.
sq($primary, "BEGIN; SELECT idempotency.claim('rolled-back'); ROLLBACK");
my $bulk_max = sq($primary,
	"SELECT max(c.fencing_token) FROM generate_series(1, 70) g,
	        LATERAL idempotency.claim('bulk-' || g, lease => '1 hour') c");
$max_claim_fence = $bulk_max if $bulk_max > $max_claim_fence;
my $seq_last = sq($primary, 'SELECT last_value FROM idempotency.processed_events_fencing_seq');
$max_claim_fence = $seq_last if $seq_last > $max_claim_fence;
note "largest claim fencing token handed out before the failover: $max_claim_fence";

# Leases: held and renewed; released (free, counter kept); about to expire.
my ($l_st, $held_token, $held_fence) = lease_acquire($primary, 'held', ", ttl => '1 hour', holder => 'w1'");
is($l_st, 'acquired', 'lease "held" acquired');
is(sq($primary, "SELECT status FROM idempotency.lease_renew('held', '$held_token', '2 hours')"),
	'renewed', 'lease "held" renewed');
$lease_fence{held} = $held_fence;
my (undef, $rel_token, $rel_fence) = lease_acquire($primary, 'released', '');
is(sq($primary, "SELECT idempotency.lease_release('released', '$rel_token')"),
	'released', 'lease "released" released');
$lease_fence{released} = $rel_fence;
my (undef, $exp_token, $exp_fence) = lease_acquire($primary, 'expiring', ", ttl => '3 seconds'");
my $exp_until = time() + 3;
$lease_fence{expiring} = $exp_fence;

# A session mutex and a transaction mutex held on the primary at the crash.
my $mutex_holder = IdemSession->new($primary, 'postgres');
is($mutex_holder->query("SELECT idempotency.mutex_session_lock('m-session')"),
	't', 'session mutex held on the primary');
$mutex_holder->query('BEGIN');
is($mutex_holder->query("SELECT idempotency.mutex_lock('m-xact')"),
	't', 'transaction mutex held on the primary');

# What the clients were told was committed, as the primary has it.
my $events_sql = q{
	SELECT string_agg(concat_ws('|', key, status, result, error, token,
	                            fencing_token, attempts, locked_until, expires_at),
	                  E'\n' ORDER BY key)
	  FROM idempotency.processed_events};
my $leases_sql = q{
	SELECT string_agg(concat_ws('|', key, token, fencing_token, holder,
	                            acquired_at, expires_at), E'\n' ORDER BY key)
	  FROM idempotency.leases};
my $events_before = sq($primary, $events_sql);
my $leases_before = sq($primary, $leases_sql);
my $items_before = sq($primary, 'SELECT id, name FROM items ORDER BY id');

###########################################################################
# The hot standby, before promotion.
###########################################################################

is(sq($standby, 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
is(sq($standby, $events_sql), $events_before, 'the standby has every committed record');
is(sq($standby, $leases_sql), $leases_before, 'the standby has every lease');

# Every function of the extension: how it is called, and whether it works
# on a hot standby (3: a call of idempotent_upsert() the planner support
# function rewrote).  The list is checked against pg_proc below, so that a
# new function cannot be left out.
my $T = $held_token;
my @calls = (
	[ 'version',                  1, "SELECT idempotency.version()" ],
	[ 'lease_status',             1, "SELECT * FROM idempotency.lease_status('held')" ],
	[ 'mutex_lock',               1, "SELECT idempotency.mutex_lock('sb')" ],
	[ 'mutex_try_lock',           1, "SELECT idempotency.mutex_try_lock('sb')" ],
	[ 'mutex_session_lock',       1, "SELECT idempotency.mutex_session_lock('sb')" ],
	[ 'mutex_session_try_lock',   1, "SELECT idempotency.mutex_session_try_lock('sb')" ],
	[ 'mutex_holders',            1, "SELECT * FROM idempotency.mutex_holders('sb')" ],
	[ 'mutex_lock_here',          1, "SELECT idempotency.mutex_lock_here(0, 1, false, 0)" ],
	[ 'mutex_holders_here',       1, "SELECT * FROM idempotency.mutex_holders_here(0, 1)" ],
	# without Citus it refuses first (and distributing is the primary's job)
	[ 'citus_distribute',         2, "SELECT idempotency.citus_distribute()" ],
	[ 'mutex_session_unlock',     1, "SELECT idempotency.mutex_session_unlock('sb')" ],
	[ 'mutex_session_unlock_all', 1, "SELECT idempotency.mutex_session_unlock_all()" ],
	[ 'stats_read',               1, "SELECT * FROM idempotency.stats" ],
	[ 'stats_scope',              1, "SELECT idempotency.stats_scope()" ],
	[ 'stats_reset',              1, "SELECT idempotency.stats_reset()" ],
	[ 'idempotent_upsert',        0, "SELECT idempotency.idempotent_upsert(NULL::items, '{\"id\": 1}')" ],
	[ 'get_or_create',            0, "SELECT idempotency.get_or_create(NULL::items, '{\"id\": 2}')" ],
	[ 'update_or_create',         0, "SELECT idempotency.update_or_create(NULL::items, '{\"id\": 1, \"name\": \"uno\"}')" ],
	[ 'idempotent_upsert_many',   0, "SELECT idempotency.idempotent_upsert_many(NULL::items, '[{\"id\": 1}]')" ],
	[ 'idempotent_upsert_columns', 0, "SELECT idempotency.idempotent_upsert_columns(NULL::items, '{id}', NULL, ARRAY[1])" ],
	# the planner support function: planned through it, the call passes
	# its values as they are, and still refuses to run on a standby
	[ 'upsert_support',           3, "SELECT idempotency.idempotent_upsert(NULL::items, jsonb_build_object('id', 4, 'name', 'four'::text))" ],
	[ 'mark_processed',           0, "SELECT idempotency.mark_processed('event-1')" ],
	[ 'claim',                    0, "SELECT idempotency.claim('done')" ],
	[ 'complete',                 0, "SELECT idempotency.complete('open', '{}', token => '$open_token')" ],
	[ 'fail',                     0, "SELECT idempotency.fail('open', token => '$open_token')" ],
	[ 'forget',                   0, "SELECT idempotency.forget('done')" ],
	[ 'purge',                    0, "SELECT idempotency.purge()" ],
	[ 'lease_acquire',            0, "SELECT idempotency.lease_acquire('held')" ],
	[ 'lease_renew',              0, "SELECT idempotency.lease_renew('held', '$T')" ],
	[ 'lease_release',            0, "SELECT idempotency.lease_release('held', '$T')" ],
	[ 'lease_assert',             0, "SELECT idempotency.lease_assert('held', '$T')" ],
);
is( sq($standby,
		"SELECT string_agg(proname, ' ' ORDER BY proname) FROM pg_proc
		  WHERE pronamespace = 'idempotency'::regnamespace"),
	join(' ', sort map { $_->[0] } @calls),
	'the test calls every function of the extension');

for my $c (@calls)
{
	my ($fn, $works, $sql) = @$c;
	my ($out, $err) = ('', '');
	my $rc = $standby->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$out, stderr => \$err);
	if ($works == 1)
	{
		is($rc, 0, "standby: $fn() works") or diag $err;
	}
	elsif ($works == 3)
	{
		like($err, qr/ERROR:  25006: cannot call idempotency\.idempotent_upsert\(\) on a hot standby/,
			"standby: a call planned by $fn() fails with 25006");
	}
	elsif ($works == 2)
	{
		like($err, qr/ERROR:  0A000: Citus is not installed/,
			"standby: $fn() says Citus is not installed");
	}
	else
	{
		like($err, qr/ERROR:  25006: cannot call idempotency\.\Q$fn\E\(\) on a hot standby/,
			"standby: $fn() fails with 25006");
		like($err, qr/HINT:  Connect to the primary server/,
			"standby: $fn() says to connect to the primary");
	}
}
is(sq($standby, 'SELECT 1'), '1', 'the standby is still up after every call');
is(sq($standby, $events_sql), $events_before, 'the standby wrote nothing');

# Mutexes on a standby are the standby's own: a session there excludes
# other sessions there, and nobody on the primary.
my $sb_holder = IdemSession->new($standby, 'postgres');
is($sb_holder->query("SELECT idempotency.mutex_session_lock('node-local')"),
	't', 'standby: a session mutex is taken');
is(sq($standby, "SELECT idempotency.mutex_try_lock('node-local')"),
	'f', 'standby: another standby session cannot take it');
is(sq($primary, "SELECT idempotency.mutex_try_lock('node-local')"),
	't', 'primary: the same mutex is free there (mutexes are per server)');
is(sq($standby, "SELECT count(*) FROM idempotency.mutex_holders('m-session')"),
	'0', 'standby: the primary\'s session mutex is not visible on the standby');
$sb_holder->quit;

# The standby's sequence state is the logged-ahead value, never below what
# the primary handed out.
cmp_ok(sq($standby, 'SELECT last_value FROM idempotency.processed_events_fencing_seq'),
	'>=', $seq_last, 'the standby\'s fencing sequence is at or ahead of the primary\'s');

###########################################################################
# Failover: crash the primary, promote the standby.
###########################################################################

my $t_crash = time();
$primary->stop('immediate');
$uncommitted->quit;
$mutex_holder->quit;
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'the standby did not finish its promotion';
my $new = $standby;
note sprintf('crash to writable new primary: %.1f s', time() - $t_crash);

is(sq($new, $events_sql), $events_before,
	'every acknowledged record survived, unchanged (status, result, token, fencing token, lease)');
is(sq($new, $leases_sql), $leases_before, 'every lease survived, unchanged');
is(sq($new, 'SELECT id, name FROM items ORDER BY id'), $items_before, 'the table survived');

# Replays.
my @r = claim($new, "'done', '{\"order\": 1}'");
is("$r[0] $r[4]", 'completed {"charge": "ch_1"}', 'replay of "done": completed with the stored result');
is(sq($new, "SELECT status || ' ' || error FROM idempotency.claim('failed')"),
	'failed {"code": "card_declined"}', 'replay of "failed": the stored error');
is(sq($new, "SELECT idempotency.mark_processed('event-1')"), 'f',
	'mark_processed("event-1") is a duplicate');
is(sq($new, "SELECT count(*) FROM idempotency.processed_events WHERE key = 'uncommitted'"),
	'0', 'the claim that never committed is gone');
is(sq($new, "SELECT count(*) FROM idempotency.processed_events WHERE key = 'rolled-back'"),
	'0', 'the rolled-back claim is gone');

# The claim within its lease: still in progress, same holder.
@r = claim($new, "'open'");
is("$r[0] $r[2]", "in_progress $open_fence",
	'"open" is still in_progress, with its fencing token, for another caller');
is(sq($new, "SELECT token FROM idempotency.processed_events WHERE key = 'open'"),
	$open_token, 'and its holder\'s token is unchanged');
sq($new, "SELECT idempotency.complete('open', '{\"done\": true}', token => '$open_token')");
@r = claim($new, "'open'");
is("$r[0] $r[4]", 'completed {"done": true}', 'its holder completed it on the new primary');

# Fencing tokens after the promotion: larger than every one handed out
# before, for new claims, takeovers of expired claims and for leases.
@r = claim($new, "'new-key'");
is($r[0], 'claimed', 'a new key is claimed');
cmp_ok($r[2], '>', $max_claim_fence, "new claim's fencing token $r[2] > $max_claim_fence");
my $prev = $r[2];
@r = claim($new, "'uncommitted'");
cmp_ok($r[2], '>', $unc_fence,
	'the key claimed in the lost transaction gets a larger fencing token');
my $left = $short_until + 0.5 - time();
sleep $left if $left > 0;
@r = claim($new, "'short'");
is("$r[0] $r[3]", 'claimed 2', 'the expired claim "short" is taken over (attempt 2)');
cmp_ok($r[2], '>', $max_claim_fence, "takeover fencing token $r[2] > $max_claim_fence");
cmp_ok($r[2], '>', $prev, 'and larger than the previous claim on the new primary');

is(sq($new, "SELECT fencing_token || ' ' || holder FROM idempotency.lease_status('held')"),
	"$held_fence w1", 'lease "held" is still held by w1');
is(sq($new, "SELECT status FROM idempotency.lease_renew('held', '$held_token')"),
	'renewed', 'its holder renews it on the new primary');
@r = lease_acquire($new, 'held', '');
is("$r[0] $r[2]", "conflict $held_fence", 'another acquirer gets conflict');
@r = lease_acquire($new, 'released', '');
is($r[0], 'acquired', 'the released lease is acquired');
cmp_ok($r[2], '>', $lease_fence{released}, 'with a larger fencing token');
$left = $exp_until + 0.5 - time();
sleep $left if $left > 0;
@r = lease_acquire($new, 'expiring', '');
is($r[0], 'acquired', 'the expired lease is taken over');
cmp_ok($r[2], '>', $lease_fence{expiring}, 'with a larger fencing token');
is(sq($new, "SELECT idempotency.lease_assert('held', '$held_token')"),
	$held_fence, 'lease_assert of the surviving lease');

# Mutexes are not carried over.
is(sq($new, "SELECT count(*) FROM idempotency.mutex_holders('m-session')"),
	'0', 'nobody holds the old primary\'s session mutex');
is(sq($new, "SELECT idempotency.mutex_session_try_lock('m-session')"),
	't', 'the session mutex held on the old primary is free');
is(sq($new, "SELECT idempotency.mutex_try_lock('m-xact')"),
	't', 'the transaction mutex held on the old primary is free');

# Writes work on the new primary.
is(sq($new, "SELECT (item).name || ' ' || created FROM idempotency.get_or_create(NULL::items, '{\"id\": 2, \"name\": \"two\"}')"),
	'two true', 'get_or_create inserts on the new primary');
like(sq($new, 'SELECT idempotency.purge()'), qr/^\d+$/, 'purge() runs on the new primary');

note sprintf('test time: %.1f s', time() - $t_start);
$new->stop;
done_testing();
