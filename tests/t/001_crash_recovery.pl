# Crash recovery of the ledger.
#
# Several clients charge 50 users as fast as they can, each charge its own
# transaction (plus some two-charge transactions and reserve/settle pairs),
# while as many others charge one hot user (so that its charges meet, and
# go through its escrow slots: with and without idempotency keys),
# and record every charge whose result came back from the server: psql
# prints a result row only after the statement's transaction has committed
# and the server has answered.  The server is then stopped with
# "immediate" (SIGQUIT to every backend, no shutdown checkpoint) while
# charges are in flight, and started again through crash recovery.
#
# After recovery: verify_ledger() is empty, every acknowledged entry is in
# the ledger, every retry of an idempotency key (acknowledged or in flight
# at the crash) applies at most once, and the node takes new charges.  Then
# the same for a completion under its message uuid, with one held open in a
# transaction at a second crash.
#
# (PostgreSQL::Test::Cluster runs with fsync = off.  That does not weaken the
# test: an immediate stop kills the server's processes, not the machine, so
# WAL that a commit has written is in the kernel's page cache either way.)

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $nusers   = 50;
my $nclients = 4;        # spread over the users
my $nhot     = 4;        # all on user 1, the hot one
my $nsteps   = 20000;    # per client: far more than run before the crash
my $min_acks = 300;      # per client, before the crash

sub uid { return sprintf('00000000-0000-0000-0000-%012d', shift); }

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', "max_connections = 30\n");
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION pgmarket');
$node->safe_psql(
	'postgres', qq{
	SELECT count(pgmarket.create_user('user' || i || '\@example.com', 'user' || i,
	                                  NULL, '{user}',
	                                  ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid))
	  FROM generate_series(1, $nusers) i;
	SELECT count(pgmarket.add_funds(('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid,
	                                1000, 'opening-' || i))
	  FROM generate_series(1, $nusers) i;
	SELECT pgmarket.add_funds('00000000-0000-0000-0000-000000000001', 100000, 'hot-opening');
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM pgmarket.verify_ledger()'),
	'0', 'ledger consistent after setup');

# The arguments of the autocommit charge number $i of client $c; the retry
# after the crash must repeat them exactly.
sub is_hot { return $_[0] > $nclients; }

sub charge_args
{
	my ($c, $i) = @_;
	my $u      = is_hot($c) ? 1 : ($c * 7919 + $i * 31) % $nusers + 1;
	my $amount = sprintf('0.%02d%04d', 1 + $i % 5, $i % 9973);
	my $tokens = $i % 1000;
	return (uid($u), $amount, 'model-' . ($i % 3), $tokens, "c$c-$i");
}

# Write one psql script per client.  Output (psql -A -t -F ' '):
#   A <entry_id> <user> <key>       an autocommit charge, acknowledged
#   T <key>                         a charge inside a transaction (not yet)
#   C <key1> <key2>                 that transaction committed (read back)
#   S <entry_id> <user>             a settle, acknowledged
#   N <entry_id> <user>             a hot charge without a key, acknowledged
# A hot client sends only autocommit charges of user 1, every other one
# without a key.
my $tmp = PostgreSQL::Test::Utils::tempdir;
my @scripts;
for my $c (1 .. $nclients + $nhot)
{
	my $file = "$tmp/client$c.sql";
	open my $fh, '>', $file or die "could not write $file: $!";
	for my $i (1 .. $nsteps)
	{
		if (is_hot($c) && $i % 2 == 0)
		{
			my ($u, $amount, $model, $tokens) = charge_args($c, $i);
			print $fh "SELECT 'N', entry_id, user_id FROM "
			  . "pgmarket.deduct_balance('$u', $amount, '$model', $tokens);\n";
		}
		elsif (is_hot($c))
		{
			my ($u, $amount, $model, $tokens, $key) = charge_args($c, $i);
			print $fh "SELECT 'A', entry_id, user_id, '$key' FROM "
			  . "pgmarket.deduct_balance('$u', $amount, '$model', $tokens, '$key');\n";
		}
		elsif ($i % 10 == 3)
		{
			# two charges in one explicit transaction, users in ascending
			# order (as every client takes them) so that no deadlock occurs
			my ($u1, $u2) = sort { $a <=> $b }
			  (($c * 13 + $i) % $nusers + 1, ($c * 17 + $i * 7) % $nusers + 1);
			$u2 = $u2 % $nusers + 1 if $u1 == $u2;
			($u1, $u2) = sort { $a <=> $b } ($u1, $u2);
			my ($k1, $k2) = ("t$c-$i-a", "t$c-$i-b");
			print $fh "BEGIN;\n";
			printf $fh "SELECT 'T', '%s' FROM pgmarket.deduct_balance('%s', 0.02, 'model-t', 7, '%s');\n",
			  $k1, uid($u1), $k1;
			printf $fh "SELECT 'T', '%s' FROM pgmarket.deduct_balance('%s', 0.03, 'model-t', 7, '%s');\n",
			  $k2, uid($u2), $k2;
			print $fh "COMMIT;\n";
			# printed only if both entries are there, i.e. the COMMIT did commit
			printf $fh "SELECT 'C', '%s', '%s' WHERE (SELECT count(*) FROM pgmarket.ledger"
			  . " WHERE (user_id, idempotency_key) IN (('%s', '%s'), ('%s', '%s'))) = 2;\n",
			  $k1, $k2, uid($u1), $k1, uid($u2), $k2;
		}
		elsif ($i % 10 == 7)
		{
			# a hold of 0.5 settled at 0.25
			my $u = uid(($c * 11 + $i * 3) % $nusers + 1);
			print $fh "SELECT pgmarket.reserve('$u', 0.5, '1 hour') AS rid \\gset\n";
			print $fh "SELECT 'S', entry_id, user_id FROM pgmarket.settle('$u', :rid, 0.25, 'model-s', 3);\n";
		}
		else
		{
			my ($u, $amount, $model, $tokens, $key) = charge_args($c, $i);
			print $fh "SELECT 'A', entry_id, user_id, '$key' FROM "
			  . "pgmarket.deduct_balance('$u', $amount, '$model', $tokens, '$key');\n";
		}
	}
	print $fh "SELECT 'DONE';\n";
	close $fh;
	push @scripts, $file;
}

# Start the clients.
my $psql = $node->installed_command('psql');
my @clients;
for my $c (1 .. $nclients + $nhot)
{
	my ($out, $err) = ('', '');
	my $cl = { c => $c, out => \$out, err => \$err };
	$cl->{h} = IPC::Run::start(
		[
			$psql, '-X', '-q', '-A', '-t', '-F', ' ',
			'-v', 'ON_ERROR_STOP=0',
			'-d', $node->connstr('postgres'),
			'-f', $scripts[ $c - 1 ]
		],
		'<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	push @clients, $cl;
}

sub acks { my $o = shift; my $n = () = $$o =~ /^[ASN] /mg; return $n; }

# Let them run until each has some acknowledged charges, then crash.
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while (time() < $deadline)
{
	$_->{h}->pump_nb for @clients;
	last unless grep { acks($_->{out}) < $min_acks } @clients;
	usleep(20_000);
}
$_->{h}->pump_nb for @clients;
ok(!(grep { acks($_->{out}) < $min_acks } @clients),
	"every client got $min_acks acknowledgements before the crash");

$node->stop('immediate');

for my $cl (@clients)
{
	eval { $cl->{h}->finish; };
}
ok(!(grep { ${ $_->{out} } =~ /^DONE$/m } @clients),
	'no client had finished its script at the crash');
for my $cl (@clients)
{
	note("client $cl->{c} stderr: " . substr(${ $cl->{err} }, 0, 400));

	# errors other than those of the lost connection would mean a bad test
	my @errs = grep { !/connection|terminat|server closed|SSL SYSCALL|no connection|^\s*$|^\s*(This probably|before or while)/i }
	  split /\n/, ${ $cl->{err} };
	is(join("\n", @errs), '', "client $cl->{c}: no error but the crash");
}

# Collect what was acknowledged.
my (@acked_entries, @acked_keys, %max_i);
for my $cl (@clients)
{
	my %pending;
	for my $line (split /\n/, ${ $cl->{out} })
	{
		if ($line =~ /^A (\d+) (\S+) (c(\d+)-(\d+))$/)
		{
			push @acked_entries, [ $2, $1 ];
			push @acked_keys,    [ $2, $3, $1 ];
			$max_i{$4} = $5 if !defined $max_i{$4} || $5 > $max_i{$4};
		}
		elsif ($line =~ /^[SN] (\d+) (\S+)$/)
		{
			push @acked_entries, [ $2, $1 ];
		}
		elsif ($line =~ /^T (\S+)$/)
		{
			$pending{$1} = 1;
		}
		elsif ($line =~ /^C (\S+) (\S+)$/)
		{
			delete @pending{ $1, $2 };
			push @acked_keys, [ undef, $1, undef ], [ undef, $2, undef ];
		}
	}
}
note(scalar(@acked_entries) . ' acknowledged entries, '
	  . scalar(@acked_keys) . ' acknowledged keys');

$node->start;
ok($node->log_contains('database system was interrupted|was not properly shut down'),
	'the restart went through crash recovery');

is($node->safe_psql('postgres', 'SELECT * FROM pgmarket.verify_ledger()'),
	'', 'verify_ledger() is empty after crash recovery');

is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM pgmarket.balances
	 WHERE total - spent - reserved < 0 OR reserved < 0 OR spent < 0}),
	'0',
	'no balance is negative after crash recovery');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) > 0 AND bool_and(amount >= 0) FROM pgmarket.balance_slots
	 WHERE user_id = '00000000-0000-0000-0000-000000000001'}),
	't',
	'the hot user has escrow slots, none negative');
is( $node->safe_psql(
		'postgres', q{
	SELECT available_balance >= 0 FROM pgmarket.get_balance('00000000-0000-0000-0000-000000000001')}),
	't',
	'the hot user\'s available balance is not negative');

# Every acknowledged entry is there.
my $values = join(",\n", map { "('$_->[0]'::uuid, $_->[1]::bigint)" } @acked_entries);
is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*) FROM (VALUES $values) v(user_id, entry_id)
	 WHERE NOT EXISTS (SELECT 1 FROM pgmarket.ledger l
	                    WHERE l.user_id = v.user_id AND l.entry_id = v.entry_id
	                      AND l.kind = 'charge')}),
	'0',
	'every acknowledged entry survived the crash');

$values = join(",\n", map { "('$_->[1]')" } @acked_keys);
is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*) FROM (VALUES $values) v(k)
	 WHERE (SELECT count(*) FROM pgmarket.ledger l
	         WHERE l.idempotency_key = v.k) <> 1}),
	'0',
	'every acknowledged idempotency key has exactly one entry');

# The clients retry: every autocommit charge up to a few past the last one
# acknowledged (so including the ones in flight at the crash) is sent again.
# Acknowledged ones must replay their entry; all must end with one entry.
my $spent_sql = 'SELECT sum(g.spent_balance * 1000000)::bigint FROM pgmarket.balances b,'
  . ' LATERAL pgmarket.get_balance(b.user_id) g';
my $spent_before = $node->safe_psql('postgres', $spent_sql);
my %acked_entry = map { ($_->[1] => $_->[2]) } grep { defined $_->[2] } @acked_keys;
my (@retry, $n_acked_retries);
for my $c (1 .. $nclients + $nhot)
{
	my $last = ($max_i{$c} // 0) + 5;
	for my $i (1 .. $last)
	{
		next if !is_hot($c) && ($i % 10 == 3 || $i % 10 == 7);
		next if is_hot($c) && $i % 2 == 0;
		my ($u, $amount, $model, $tokens, $key) = charge_args($c, $i);
		my $expect = $acked_entry{$key} // 'NULL';
		$n_acked_retries++ if $expect ne 'NULL';
		push @retry, "('$u'::uuid, ${amount}::numeric, '$model', ${tokens}::bigint, '$key', ${expect}::bigint)";
	}
}
$values = join(",\n", @retry);
my $res = $node->safe_psql(
	'postgres', qq{
	SELECT count(*) FILTER (WHERE v.expect IS NOT NULL AND r.replayed
	                              AND r.entry_id = v.expect),
	       count(*) FILTER (WHERE v.expect IS NOT NULL AND NOT (r.replayed
	                              AND r.entry_id = v.expect)),
	       count(*) FILTER (WHERE v.expect IS NULL AND r.replayed),
	       count(*) FILTER (WHERE v.expect IS NULL AND NOT r.replayed),
	       coalesce(sum(v.amount * 1000000) FILTER (WHERE NOT r.replayed), 0)::bigint
	  FROM (VALUES $values) v(u, amount, model, tokens, k, expect),
	       LATERAL pgmarket.deduct_balance(v.u, v.amount, v.model, v.tokens, v.k) r});
my ($replayed_ok, $replayed_bad, $unacked_replayed, $unacked_applied, $applied_micro) =
  split /\|/, $res;
is($replayed_ok,  $n_acked_retries, 'every acknowledged charge replays its entry');
is($replayed_bad, '0',              'no acknowledged charge is applied twice');
note("of the unacknowledged retries, $unacked_replayed had committed before the crash"
	  . " and $unacked_applied were applied now");

is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*) FROM (VALUES $values) v(u, amount, model, tokens, k, expect)
	 WHERE (SELECT count(*) FROM pgmarket.ledger l
	         WHERE l.user_id = v.u AND l.idempotency_key = v.k) <> 1}),
	'0',
	'after the retries every key has exactly one entry');

is( $node->safe_psql(
		'postgres', qq{
	SELECT ($spent_sql) - $spent_before = $applied_micro}),
	't',
	'the retries charged exactly the charges that had not been applied');

is($node->safe_psql('postgres', 'SELECT * FROM pgmarket.verify_ledger()'),
	'', 'verify_ledger() is empty after the retries');

# The node keeps working.
my $u1 = uid(1);
my $before = $node->safe_psql('postgres',
	"SELECT available_balance FROM pgmarket.get_balance('$u1')");
is( $node->safe_psql(
		'postgres', qq{
	SELECT kind, amount, replayed
	  FROM pgmarket.deduct_balance('$u1', 1.5, 'model-after', 10, 'after-crash-1')}),
	'charge|1.500000|f',
	'a new charge after recovery');
is( $node->safe_psql(
		'postgres', qq{
	SELECT available_balance = $before - 1.5
	  FROM pgmarket.get_balance('$u1')}),
	't',
	'the new charge is reflected in the balance');
is( $node->safe_psql(
		'postgres', qq{
	SELECT replayed FROM pgmarket.deduct_balance('$u1', 1.5, 'model-after', 10, 'after-crash-1')}),
	't',
	'and its key replays');
is($node->safe_psql('postgres', 'SELECT * FROM pgmarket.verify_ledger()'),
	'', 'verify_ledger() is empty at the end');

# Chat: a completion stored under its message uuid before a crash replays
# after it; one in flight at the crash (its transaction open) is gone, and
# its retry stores it once.
my $sid = '00000000-0000-4000-a000-000000000001';
my $m1  = '00000000-0000-4000-b000-000000000001';
my $m2  = '00000000-0000-4000-b000-000000000002';
$node->safe_psql('postgres',
	"SELECT pgmarket.create_chat_session('$u1', 'model-chat', id => '$sid')");
my $completion = sub {
	my ($content, $uuid) = @_;
	return "SELECT amount, replayed FROM pgmarket.record_completion('$u1', '$sid',"
	  . " '$content', 5, 0.25, message_uuid => '$uuid')";
};
is($node->safe_psql('postgres', $completion->('before the crash', $m1)),
	'0.250000|f', 'a completion under its message uuid');
my ($in, $out, $err) = ("BEGIN;\n" . $completion->('in flight', $m2) . ";\n", '', '');
my $held = IPC::Run::start([ $psql, '-X', '-qAt', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$held->pump until $out =~ /\|f$/m;
$node->stop('immediate');
eval { $held->finish; };
$node->start;
is($node->safe_psql('postgres', $completion->('before the crash', $m1)),
	'0.250000|t', 'after the crash, the committed completion replays');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM pgmarket.chat_messages WHERE message_uuid = '$m2'"),
	'0', 'the completion in flight at the crash is gone');
is($node->safe_psql('postgres', $completion->('in flight', $m2)),
	'0.250000|f', 'its retry stores it');
is($node->safe_psql('postgres', $completion->('in flight', $m2)),
	'0.250000|t', 'once');
is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*), count(DISTINCT m.entry_id), sum(l.amount)
	  FROM pgmarket.chat_messages m JOIN pgmarket.ledger l USING (user_id, entry_id)
	 WHERE m.session_id = '$sid'}),
	'2|2|500000', 'two messages, each with its own charge');
is($node->safe_psql('postgres', 'SELECT * FROM pgmarket.verify_ledger()'),
	'', 'verify_ledger() is empty after the chat crash');

$node->stop;
done_testing();
