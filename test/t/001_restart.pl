# The extension survives restarts: a clean restart, and an immediate stop
# (crash) followed by recovery.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IdemSession;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION idempotency');
my $version = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'idempotency'");
like($version, qr/^\d+\.\d+\.\d+$/, "default version is $version");

is($node->safe_psql('postgres', 'SELECT idempotency.version()'),
	$version, 'version() before restart');

$node->restart;
is($node->safe_psql('postgres', 'SELECT idempotency.version()'),
	$version, 'version() after a clean restart');

# Crash: immediate stop, then recovery replays the WAL.
$node->safe_psql('postgres', 'CREATE DATABASE second');
$node->safe_psql('second', 'CREATE EXTENSION idempotency');
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', 'SELECT idempotency.version()'),
	$version, 'version() after an immediate stop and recovery');
is($node->safe_psql('second', 'SELECT idempotency.version()'),
	$version, 'extension created just before the crash is there after recovery');

# A server that was killed with the library loaded in many backends.
my @bg;
for my $i (1 .. 4)
{
	my $s = IdemSession->new($node, 'postgres');
	is($s->query('SELECT idempotency.version()'), $version, "backend $i loaded the library");
	push @bg, $s;
}
$node->stop('immediate');
$_->quit for @bg;
$node->start;
is($node->safe_psql('postgres', 'SELECT idempotency.version()'),
	$version, 'version() after killing a server with busy backends');

$node->stop;
done_testing();
