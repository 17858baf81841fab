# Crash recovery of charges through platform API keys.
#
# Four clients charge one user as fast as they can through two of its keys
# (one open, one with a lifetime spend limit it never reaches; their tier
# has no rate limits), each charge
# its own transaction, so that the user's charges meet and go through its
# escrow slots, and every charge writes its key's spend row (without a
# lock of its own first: extension/apikeys.c, count_spend).  Each client
# records the charges whose result came back.  The server is stopped with
# "immediate" while charges are in flight and started again through crash
# recovery.
#
# After recovery: verify_ledger() is empty, every acknowledged charge is in
# the ledger, and each key's counters hold exactly the charges the ledger
# holds through it (its model id tells them apart): a charge and its spend
# are one transaction, recovered or lost together.  The node then takes new
# charges through both keys.

use strict;
use warnings;

use Fcntl;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $nclients = 4;
my $nsteps   = 20000;    # per client: far more than run before the crash
my $min_acks = 200;      # per client, before the crash

my $keydir  = PostgreSQL::Test::Utils::tempdir;
my $keyfile = "$keydir/master.key";
{
	open my $rnd, '<:raw', '/dev/urandom' or die "urandom: $!";
	read($rnd, my $buf, 32) == 32 or die "urandom: short read";
	close $rnd;
	sysopen(my $fh, $keyfile, O_WRONLY | O_CREAT | O_EXCL, 0600)
	  or die "could not create $keyfile: $!";
	print $fh '1:' . unpack('H*', $buf) . "\n";
	close $fh or die "could not write $keyfile: $!";
}

my $uid  = '6b000000-0000-4000-8000-000000000001';
my $node = PostgreSQL::Test::Cluster->new('keycrash');
$node->init;
$node->append_conf('postgresql.conf',
	"max_connections = 20\npgmarket.master_key_file = '$keyfile'\n");
$node->start;

$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION pgmarket;
CREATE SCHEMA t;
SELECT pgmarket.create_user('keycrash\@example.com', 'keycrash', id => '$uid');
SELECT pgmarket.add_funds('$uid', 1000000);
SELECT pgmarket.set_tier('crash-open', NULL, NULL);
CREATE TABLE t.k (name text PRIMARY KEY, key_id uuid, api_key text);
INSERT INTO t.k SELECT 'open', key_id, api_key
  FROM pgmarket.create_api_key('$uid', 'open', rate_limit_tier => 'crash-open');
INSERT INTO t.k SELECT 'limited', key_id, api_key
  FROM pgmarket.create_api_key('$uid', 'limited', spend_limit => 500000,
                               rate_limit_tier => 'crash-open');
});

# One psql script per client: "A <entry_id> <key name>" for each charge
# acknowledged.  The raw keys are read from t.k, never printed.
my @scripts;
for my $c (1 .. $nclients)
{
	my $file = PostgreSQL::Test::Utils::tempdir . "/client$c.sql";
	open my $fh, '>', $file or die "$file: $!";
	for my $i (1 .. $nsteps)
	{
		my $name   = ($c + $i) % 2 ? 'open' : 'limited';
		my $amount = sprintf('0.%06d', 1 + ($c * 7 + $i) % 997);
		print $fh "SELECT 'A', entry_id, '$name' FROM pgmarket.charge_api_key("
		  . "(SELECT api_key FROM t.k WHERE name = '$name'), $amount, 'm-$name', 1);\n";
	}
	print $fh "SELECT 'DONE';\n";
	close $fh;
	push @scripts, $file;
}

my $psql = $node->installed_command('psql');
my @clients;
for my $c (1 .. $nclients)
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

sub acks { my $o = shift; my $n = () = $$o =~ /^A /mg; return $n; }

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
	my @errs = grep { !/connection|terminat|server closed|SSL SYSCALL|no connection|^\s*$|^\s*(This probably|before or while)/i }
	  split /\n/, ${ $cl->{err} };
	is(join("\n", @errs), '', "client $cl->{c}: no error but the crash");
}

my @acked;
for my $cl (@clients)
{
	push @acked, $1 while ${ $cl->{out} } =~ /^A (\d+) \w+$/mg;
}

$node->start;

is($node->safe_psql('postgres', 'SELECT count(*) FROM pgmarket.verify_ledger()'),
	'0', 'ledger consistent after recovery');

is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) > 0 AND bool_and(amount >= 0) FROM pgmarket.balance_slots
 WHERE user_id = '$uid'}
	),
	't',
	'the user has escrow slots, none negative');

my $list = join(',', @acked);
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM unnest('{$list}'::bigint[]) a(e)
 WHERE NOT EXISTS (SELECT 1 FROM pgmarket.ledger l
                    WHERE l.entry_id = a.e AND l.user_id = '$uid' AND l.kind = 'charge')}
	),
	'0',
	scalar(@acked) . ' acknowledged charges all in the ledger');

# each key's counters against the ledger's charges through it
my $counters = qq{
SELECT k.name,
       s.total_spent = coalesce(l.micro, 0) AS total_matches,
       s.period_spent = coalesce(l.micro, 0) AS period_matches,
       l.n > 0 AS charged
  FROM t.k k
  JOIN pgmarket.api_key_spend s USING (key_id)
  LEFT JOIN (SELECT model_id, sum(amount) AS micro, count(*) AS n
               FROM pgmarket.ledger
              WHERE user_id = '$uid' AND kind = 'charge'
              GROUP BY model_id) l ON l.model_id = 'm-' || k.name
 ORDER BY k.name};
is($node->safe_psql('postgres', $counters),
	"limited|t|t|t\nopen|t|t|t",
	'each key spent exactly what the ledger charged through it');

# the node takes new charges through both keys
is( $node->safe_psql(
		'postgres', q{
SELECT count(pgmarket.charge_api_key(api_key, 0.000001, 'm-' || name, 1)) FROM t.k}
	),
	'2',
	'both keys charge after recovery');
is($node->safe_psql('postgres', $counters),
	"limited|t|t|t\nopen|t|t|t", 'and their counters still match the ledger');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pgmarket.verify_ledger()'),
	'0', 'ledger consistent at the end');

$node->stop;
done_testing();
