# No password, platform key or provider key reaches the server log through
# the client library's default calls, even when the server logs every
# statement with its bind parameters (SPEC, Ground rules).
#
# The server runs with log_statement = all, log_min_duration_statement = 0
# (parse, bind and execute, each with its parameters) and
# log_parameter_max_length_on_error = -1 (the parameters of failing calls
# too), at verbose error verbosity.  client/tests/log_secrets.bin (built by
# `make -C client`) drives the library through create_user, authenticate
# with the right and a wrong password, hash_password, verify_password,
# create_api_key, verify_api_key and charge_api_key with the right and a
# wrong key, reserve_api_key and put_provider_key; the pgmarket tool stores
# a provider key read from stdin and prints health().  Then the log is
# searched for every password and key used (as text and as hex): none may
# appear.  The log must hold the calls' parameters (the search would find
# them) and the platform key's public part (it is not secret).
#
# Then the key file goes: client/tests/no_vault.bin shows that the same
# calls fail with PGM_VAULT_UNAVAILABLE instead of falling back to text, and
# that the explicit opt-in (pgm_set_plain_secrets) sends the password as
# text, which the log then holds: the search finds a secret that is there.
#
# With the 0.4.0 library, which sent passwords and platform keys as text
# parameters, this test fails.

use strict;
use warnings;

use Digest::MD5 qw(md5_hex);
use Fcntl;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $top     = $ENV{TESTDIR} // '.';
my $driver  = "$top/client/tests/log_secrets.bin";
my $novault = "$top/client/tests/no_vault.bin";
my $cli     = "$top/client/pgmarket";
unless (-x $driver && -x $novault && -x $cli)
{
	fail("the client programs are built (make -C client)");
	done_testing();
	exit 0;
}

sub random_hex
{
	my ($n) = @_;
	open my $fh, '<:raw', '/dev/urandom' or die "urandom: $!";
	read($fh, my $buf, $n) == $n or die "urandom: short read";
	close $fh;
	return unpack('H*', $buf);
}

my $keydir  = PostgreSQL::Test::Utils::tempdir;
my $keyfile = "$keydir/master.key";
sysopen(my $kfh, $keyfile, O_WRONLY | O_CREAT | O_EXCL, 0600)
  or die "could not create $keyfile: $!";
print $kfh "1:" . random_hex(32) . "\n";
close $kfh or die "could not write $keyfile: $!";

my $node = PostgreSQL::Test::Cluster->new('logsecrets');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
pgmarket.master_key_file = '$keyfile'
log_statement = all
log_min_duration_statement = 0
log_parameter_max_length = -1
log_parameter_max_length_on_error = -1
log_min_error_statement = error
log_error_verbosity = verbose
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pgmarket');

# Secrets that nothing else in the log could contain by chance.
my $password  = 'pw-' . random_hex(12);
my $wrong     = 'pw-wrong-' . random_hex(12);
my $provider1 = 'sk-proj-' . random_hex(16);
my $provider2 = 'sk-ant-' . random_hex(16);
my $suffix    = random_hex(4);

my $conninfo = $node->connstr('postgres');
my ($out, $err) = ('', '');
IPC::Run::run([ $driver, $conninfo, $password, $wrong, $provider1, $suffix ],
	'>', \$out, '2>', \$err);
is($? >> 8, 0, 'every call of the library succeeds as it should')
  or diag "$out\n$err";
my ($api_key)   = $out =~ /^api_key (\S+)$/m;
my ($wrong_key) = $out =~ /^wrong_key (\S+)$/m;
ok(defined $api_key && defined $wrong_key, 'the driver printed the keys it used');
$api_key   //= 'no key printed';
$wrong_key //= 'no key printed';

my $uid = $node->safe_psql('postgres',
	"SELECT id FROM pgmarket.users WHERE username = 'logs_$suffix'");

# the tool: a provider key from stdin, and health()
IPC::Run::run([ $cli, '-d', $conninfo, 'keys', 'put', $uid, 'anthropic' ],
	'<', \"$provider2\n", '>', \$out, '2>', \$err);
is($? >> 8, 0, 'pgmarket keys put stores a provider key') or diag $err;
IPC::Run::run([ $cli, '-d', $conninfo, 'health' ], '>', \$out, '2>', \$err);
is($? >> 8, 0, 'pgmarket health: ok') or diag "$out\n$err";
like($out, qr/"logs_bind_parameters": true/,
	'and it says that this server logs bind parameters');

# what the calls left in the database is right (compared by digest: the
# test's own SQL text must not hold a secret either)
is( $node->safe_psql(
		'postgres', qq{
		SELECT md5(pgmarket.get_provider_key('$uid', 'openai')),
		       md5(pgmarket.get_provider_key('$uid', 'anthropic')),
		       (SELECT available_balance FROM pgmarket.get_balance('$uid'))}),
	md5_hex($provider1) . '|' . md5_hex($provider2) . '|7.500000',
	'the provider keys and the balance are what the calls made');

my $log = slurp_file($node->logfile);

# the search finds what it looks for
like($log, qr/DETAIL:  parameters: \$1 = /,
	'the log holds bind parameters');
like($log, qr/\Q${\ substr($api_key, 0, 24)}\E/,
	'and the platform key\'s public part');
like($log, qr/unnamed portal with parameters|portal "[^"]*" with parameters/,
	'and the parameters of failing calls');

my $secret_part = substr($api_key, 25);
my %secrets = (
	'the password'                      => $password,
	'the wrong password'                => $wrong,
	'the platform key'                  => $api_key,
	'the platform key\'s secret part'   => $secret_part,
	'the wrong platform key'            => $wrong_key,
	'the wrong key\'s secret part'      => substr($wrong_key, 25),
	'the provider key (library)'        => $provider1,
	'the provider key (tool)'           => $provider2);
for my $what (sort keys %secrets)
{
	my $s = $secrets{$what};
	ok(index($log, $s) < 0, "$what is not in the server log");
	ok(index(lc($log), unpack('H*', $s)) < 0, "$what is not in it as hex");
}

# no vault: no fallback to text, unless asked for
unlink $keyfile or die "unlink $keyfile: $!";
IPC::Run::run([ $novault, $conninfo, "logs_$suffix", $password, $api_key ],
	'>', \$out, '2>', \$err);
is($? >> 8, 0, 'without a vault the calls fail with PM010; the opt-in sends text')
  or diag "$out\n$err";
IPC::Run::run([ $cli, '-d', $conninfo, 'health' ], '>', \$out, '2>', \$err);
is($? >> 8, 1, 'pgmarket health: not ok without the key file, exit 1');
like($out, qr/"problems": \["vault: no master key is loaded/,
	'and the problem says why');
$node->stop;
$log = slurp_file($node->logfile);
ok(index($log, $password) >= 0,
	'the password sent as text after the opt-in is in the log: the search works');
IPC::Run::run([ $cli, '-d', $conninfo, 'health' ], '>', \$out, '2>', \$err);
is($? >> 8, 3, 'pgmarket health: exit 3 when the server cannot be reached');

done_testing();
