# pg_dump / pg_restore of a database using the extension, over the whole
# matrix: installed by a superuser or by a non-superuser database owner
# (trusted install); dumped by the installer in custom and plain format;
# restored into a fresh database by a superuser, and (for the owner's
# install) by the owner role into a database it owns -- without
# --no-owner and without --enable-row-security.  Every restore exits 0
# with no error, holds every processed_events and leases row, and fencing
# tokens issued afterwards (a new claim, a new acquire of an existing lease)
# are larger than any issued before.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;

my $su = $node->safe_psql('postgres', 'SELECT current_user');
$node->safe_psql('postgres', q{
	CREATE ROLE app_owner LOGIN;
	CREATE ROLE writer_a LOGIN;
	CREATE ROLE writer_b LOGIN;
});

my $dir = PostgreSQL::Test::Utils::tempdir;

sub as
{
	my ($role, $db, $sql) = @_;
	return $node->safe_psql($db, $sql, extra_params => [ '-U', $role ]);
}

# Run a client program; return (exit status, stderr).
sub run_client
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err);
	return ($? >> 8, $err);
}

# test/fixtures/rows.sql as ROLE, keys starting with TAG.
my $rows_sql = slurp_file('test/fixtures/rows.sql');

sub write_rows
{
	my ($role, $db, $tag) = @_;
	as($role, $db, "SET idem.tag = '$tag';\n$rows_sql");
	return;
}

# Every row, as the superuser (no row level security).
sub rows
{
	my ($db) = @_;
	return $node->safe_psql($db, q{
		SELECT 'events ' || to_jsonb(p)::text FROM idempotency.processed_events p ORDER BY owner::text, scope, key;
		SELECT 'leases ' || to_jsonb(l)::text FROM idempotency.leases l ORDER BY key;});
}

# Owners and privileges of the extension's relations.
sub acls
{
	my ($db) = @_;
	return $node->safe_psql($db, q{
		SELECT c.relname || ' ' || c.relowner::regrole || ' ' || coalesce(c.relacl::text, '-')
		  FROM pg_class c
		 WHERE c.relnamespace = 'idempotency'::regnamespace AND c.relkind IN ('r', 'S', 'v')
		 ORDER BY c.relname});
}

sub max_fencing
{
	my ($db) = @_;
	return $node->safe_psql($db, q{
		SELECT greatest((SELECT max(fencing_token) FROM idempotency.processed_events),
		                (SELECT last_value FROM idempotency.processed_events_fencing_seq))});
}

my @matrix;

# Source databases: one per installer.
my %installs = (superuser => $su, owner => 'app_owner');
for my $install ('superuser', 'owner')
{
	my $installer = $installs{$install};
	my $src = "src_$install";
	$node->safe_psql('postgres', "CREATE DATABASE $src OWNER $installer");
	as($installer, $src, 'CREATE EXTENSION idempotency');
	is( $node->safe_psql($src,
			"SELECT extowner::regrole FROM pg_extension WHERE extname = 'idempotency'"),
		$installer, "$install: installed by $installer");
	write_rows($installer, $src, "$install-i");
	write_rows('writer_a', $src, "$install-a");
	write_rows('writer_b', $src, "$install-b");
	as($installer, $src,
		"SELECT nextval('idempotency.processed_events_fencing_seq') FROM generate_series(1, 5)");
	my $source_rows = rows($src);
	is( $node->safe_psql($src, q{
			SELECT count(DISTINCT owner) || ' ' || count(*) FROM idempotency.processed_events}),
		'3 24', "$install: rows of three owners");
	my $before = max_fencing($src);
	my $lease_before = $node->safe_psql($src,
		"SELECT fencing_token FROM idempotency.leases WHERE key = '$install-a-lease-1'");
	cmp_ok($lease_before, '>', 1, "$install: lease fencing counter advanced to $lease_before");

	my @restorers = ([ 'superuser', $su ]);
	push @restorers, [ 'owner', 'app_owner' ] if $install eq 'owner';

	for my $format ('custom', 'plain')
	{
		my $file = "$dir/$install.$format";
		my ($rc, $err) = run_client('pg_dump', $format eq 'custom' ? '-Fc' : '-Fp',
			'-f', $file, '-U', $installer, '-d', $node->connstr($src));
		my $dumped = is($rc, 0, "$install/$format: pg_dump by $installer exits 0")
		  && is($err, '', "$install/$format: pg_dump prints nothing on stderr");
		diag($err) if $err ne '';

		for my $r (@restorers)
		{
			my ($who, $restorer) = @$r;
			my $cell = "$install-installed, $format dump, restored by $who";
			my $dst = "dst_${install}_${format}_$who";
			$node->safe_psql('postgres',
				"CREATE DATABASE $dst" . ($who eq 'owner' ? " OWNER $restorer" : ''));
			my @restore = $format eq 'custom'
			  ? ('pg_restore', '-U', $restorer, '-d', $node->connstr($dst), $file)
			  : ('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-U', $restorer,
				'-d', $node->connstr($dst), '-f', $file);
			($rc, $err) = run_client(@restore);
			my $ok = is($rc, 0, "$cell: $restore[0] exits 0");
			$ok = unlike($err, qr/error/i, "$cell: no error from $restore[0]") && $ok;
			diag($err) if $err ne '';

			$ok = is(rows($dst), $source_rows, "$cell: every processed_events and leases row")
			  && $ok;
			my $claim = as('writer_a', $dst,
				"SELECT fencing_token FROM idempotency.claim('after-restore', NULL, 'orders')");
			$ok = cmp_ok($claim, '>', $before,
				"$cell: new claim's fencing token $claim > $before (largest before)") && $ok;
			my $lease = as('writer_b', $dst,
				"SELECT status || ' ' || (fencing_token > $lease_before) FROM idempotency.lease_acquire('$install-a-lease-1')");
			$ok = is($lease, 'acquired true',
				"$cell: lease acquired again with fencing token above $lease_before") && $ok;
			# Privileges as a fresh install by the restoring role has them:
			# no direct write for anyone but the tables' owner.
			$ok = is(acls($dst), acls("src_$who"),
				"$cell: privileges on the tables as after an install by the $who") && $ok;
			$ok = is( $node->safe_psql($dst, q{
					SELECT has_table_privilege('writer_a', 'idempotency.processed_events', 'SELECT')
					    || ' ' || has_table_privilege('writer_a', 'idempotency.processed_events', 'INSERT, UPDATE, DELETE, TRUNCATE')
					    || ' ' || has_table_privilege('writer_a', 'idempotency.leases', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
					    || ' ' || has_sequence_privilege('writer_a', 'idempotency.processed_events_fencing_seq', 'USAGE, UPDATE')}),
				'true false false false',
				"$cell: other roles read their rows and write nothing directly") && $ok;
			if ($who eq 'owner')
			{
				$ok = is( $node->safe_psql($dst, q{
						SELECT r.rolsuper || ' ' || e.extowner::regrole
						       || ' ' || (SELECT string_agg(DISTINCT c.relowner::regrole::text, ',')
						                    FROM pg_class c
						                   WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'S'))
						  FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner,
						       pg_extension e
						 WHERE n.nspname = 'idempotency' AND e.extname = 'idempotency'}),
					'true app_owner app_owner',
					"$cell: schema owned by a superuser, extension and tables by the restoring role")
				  && $ok;
			}
			push @matrix, sprintf('%-60s %s', $cell, ($dumped && $ok) ? 'ok' : 'FAILED');
		}
	}
}

diag("dump/restore matrix:\n" . join("\n", @matrix));

$node->stop;
done_testing();
