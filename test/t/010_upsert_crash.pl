# get_or_create across crashes: a backend killed with -9 while it holds an
# uncommitted insert (others waiting on it), and an immediate stop right
# after a commit.  Afterwards exactly one row per key, the committed row is
# returned unchanged, the uncommitted one is gone and re-created once.  A
# batch of new keys, whose rows go in a page at a time (a WAL record per
# page), then its index entries, committed right before an immediate stop:
# after recovery every row is found through each index, once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IdemSession;

my $node = PostgreSQL::Test::Cluster->new('upsert');
$node->init;
# the framework turns crash restarts off; this test is about them
$node->append_conf('postgresql.conf', 'restart_after_crash = on');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION idempotency;
	CREATE TABLE acct (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, who text);
});

my $call = sub {
	my ($email, $who) = @_;
	return qq{SELECT (item).email || ' ' || (item).who || ' ' || created::int
	            FROM idempotency.get_or_create(NULL::acct,
	                 jsonb_build_object('email', '$email', 'who', '$who'))};
};

# 1. The inserting backend is killed while another one waits for it.
my $s1 = IdemSession->new($node, 'postgres');
my $s2 = IdemSession->new($node, 'postgres');
$s1->query('BEGIN');
is($s1->query($call->('k1', 's1')), 'k1 s1 1', 's1 inserted k1 (uncommitted)');
$s2->query_start($call->('k1', 's2'));
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_locks WHERE NOT granted AND pid = " . $s2->pid)
  or die 'timed out waiting for s2 to block';
ok($s2->query_running, 's2 waits for s1');
kill 'KILL', $s1->pid;
$s1->quit;
$s2->quit;
IdemSession::wait_for_server($node) or die 'server did not come back';
is($node->safe_psql('postgres', $call->('k1', 'after')), 'k1 after 1',
	'after the crash the uncommitted row is gone and is created once');
is($node->safe_psql('postgres', $call->('k1', 'again')), 'k1 after 0',
	'... and then returned');

# 2. Committed just before an immediate stop: recovered and returned.
is($node->safe_psql('postgres', $call->('k2', 'before')), 'k2 before 1', 'k2 created');
my $s3 = IdemSession->new($node, 'postgres');
is($s3->query($call->('k2', 'cached')), 'k2 before 0', 'k2 returned (plans cached in a backend)');
$node->stop('immediate');
$s3->quit;
$node->start;
is($node->safe_psql('postgres', $call->('k2', 'recovered')), 'k2 before 0',
	'k2 survives crash recovery and is returned unchanged');

is($node->safe_psql('postgres', q{SELECT count(*) || ' ' || count(DISTINCT email) FROM acct}),
	'2 2', 'one row per key');

# 3. A batch of 2500 new keys committed just before an immediate stop.
my $batch = q{SELECT count(*) || ' ' || sum(id) FROM idempotency.idempotent_upsert_many(NULL::acct,
	(SELECT jsonb_agg(jsonb_build_object('email', 'b' || i, 'who', 'batch') ORDER BY i)
	   FROM generate_series(1, 2500) i))};
my $before = $node->safe_psql('postgres', $batch);
like($before, qr/^2500 \d+$/, 'a batch of 2500 new keys inserted');
$node->stop('immediate');
$node->start;
my $by_index = sub {
	my ($query) = @_;
	return $node->safe_psql('postgres',
		"SET enable_seqscan = off; SET enable_bitmapscan = off; $query");
};
is($by_index->(q{SELECT count(*) FROM generate_series(1, 2500) i
                  WHERE EXISTS (SELECT FROM acct WHERE email = 'b' || i)}),
	'2500', 'after recovery every batch row is found through the email index');
is($by_index->(q{SELECT count(*) FROM acct a WHERE a.email LIKE 'b%'
                  AND (SELECT count(*) FROM acct p WHERE p.id = a.id) = 1}),
	'2500', '... and through the primary key, once');
like($by_index->(q{EXPLAIN (COSTS OFF) SELECT FROM acct WHERE email = 'b1'}),
	qr/Index.*Scan.*acct_email_key/, 'the email look-up uses its index');
is($node->safe_psql('postgres', $batch), $before,
	'the same batch again returns the recovered rows');
is($node->safe_psql('postgres', q{SELECT count(*) FROM acct}), '2502', 'nothing inserted twice');

$node->stop;
done_testing();
