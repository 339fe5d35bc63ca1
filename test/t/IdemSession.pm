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
package IdemSession;

use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;

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
