# IdemSession -- a long-lived psql session for TAP tests.
#
# PostgreSQL::Test::Cluster's background_psql changed its interface in 16;
# this small wrapper works the same on every version.  It lets a test open a
# session, keep it inside a transaction, start a statement that blocks, and
# later collect its result -- the building blocks of crash tests ("kill -9
# the backend that holds the claim").
#
#   my $s = IdemSession->new($node, 'postgres');
#   $s->query('BEGIN');                  # returns stdout; stderr in $s->{stderr}
#   $s->query_start('SELECT pg_sleep(10)');  # do not wait
#   ... $s->query_wait;                   # wait for it
#   $s->pid;                              # backend pid
#   $s->quit;
#
#   IdemSession::wait_for_server($node)  # after a kill -9: true once the
#                                         # server answers again
package IdemSession;

use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep);

# Wait until the server answers a query again, after a crash reset: true,
# or false after the framework's default timeout.  The query goes on psql's
# command line: $node->psql and poll_query_until feed it through a pipe,
# and a psql that fails to connect may exit before the pipe is written to,
# which makes IPC::Run die with EPIPE (the test then stops with exit status
# 32 and no message).
sub wait_for_server
{
	my ($node) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		my ($out, $err) = ('', '');
		my $ok = eval {
			IPC::Run::run(
				[ 'psql', '-X', '-A', '-t', '-d', $node->connstr('postgres'), '-c', 'SELECT 1' ],
				'<', '/dev/null', '>', \$out, '2>', \$err);
		};
		return 1 if $ok && $out =~ /^1$/m;
		usleep(100_000);
	}
	return 0;
}

sub new
{
	my ($class, $node, $dbname) = @_;
	my $self = bless { stdin => '', stdout => '', stderr => '', n => 0 }, $class;
	$self->{timer} = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
	$self->{run} = IPC::Run::start(
		[ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr($dbname) ],
		'<', \$self->{stdin}, '>', \$self->{stdout}, '2>', \$self->{stderr},
		$self->{timer});
	$self->{pid} = $self->query('SELECT pg_backend_pid()');
	return $self;
}

sub pid { return $_[0]->{pid}; }

# Send a statement without waiting for its result.
sub query_start
{
	my ($self, $sql) = @_;
	$self->{marker} = '__idem_done_' . ++$self->{n} . '__';
	$self->{stdout} = '';
	$self->{stderr} = '';
	$self->{stdin} .= "$sql;\n\\echo $self->{marker}\n";
	IPC::Run::pump_nb($self->{run});
	return;
}

# Wait for the statement sent by query_start; return its stdout.
sub query_wait
{
	my ($self) = @_;
	my $marker = $self->{marker};
	$self->{timer}->start($PostgreSQL::Test::Utils::timeout_default);
	IPC::Run::pump($self->{run})
	  until $self->{stdout} =~ /\Q$marker\E/ || $self->{timer}->is_expired;
	die "IdemSession: timed out waiting for result" if $self->{timer}->is_expired;
	my $out = $self->{stdout};
	$out =~ s/\Q$marker\E\n?//;
	chomp $out;
	return $out;
}

# Is the statement sent by query_start still running?
sub query_running
{
	my ($self) = @_;
	IPC::Run::pump_nb($self->{run});
	return $self->{stdout} !~ /\Q$self->{marker}\E/;
}

sub query
{
	my ($self, $sql) = @_;
	$self->query_start($sql);
	return $self->query_wait;
}

sub stderr { return $_[0]->{stderr}; }

sub quit
{
	my ($self) = @_;
	$self->{stdin} .= "\\q\n";
	eval { IPC::Run::finish($self->{run}); 1 } or IPC::Run::kill_kill($self->{run});
	return;
}

1;
