# The master key file (pgmarket.master_key_file).
#
# A file that is missing, malformed, too permissive (group or other access)
# or not a regular file, or a setting that is empty, makes the vault
# unavailable: PM010 (vault_unavailable) with a hint that says what to do.
# That holds at server start and in a session that had the keys loaded once
# the configuration is reloaded.  Fixing the file makes the vault work again
# in the next transaction, without a restart; a restart keeps it working.
# Pointing the setting at another file with other keys makes the stored
# ciphertexts fail authentication (PM011), and pointing it back heals them.
# Non-superusers cannot see the setting.  The server log never holds the
# key material.

use strict;
use warnings;

use Fcntl;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $keydir  = PostgreSQL::Test::Utils::tempdir;
my $keyfile = "$keydir/master.key";
my $other   = "$keydir/other.key";

# three random 32-byte keys, hex
sub random_hex
{
	open my $fh, '<:raw', '/dev/urandom' or die "urandom: $!";
	read($fh, my $buf, 32) == 32 or die "urandom: short read";
	close $fh;
	return unpack('H*', $buf);
}
my @hex = map { random_hex() } 1 .. 3;

# Write a key file (replacing it) with the given mode.
sub write_key_file
{
	my ($path, $text, $mode) = @_;
	unlink $path;
	sysopen(my $fh, $path, O_WRONLY | O_CREAT | O_EXCL, 0600)
	  or die "could not create $path: $!";
	print $fh $text;
	close $fh or die "could not write $path: $!";
	chmod $mode, $path or die "chmod $path: $!";
	return;
}

my $node = PostgreSQL::Test::Cluster->new('keyfile');
$node->init;
$node->append_conf('postgresql.conf',
	"pgmarket.master_key_file = '$keyfile'\n");

write_key_file($keyfile, "1:$hex[0]\n", 0600);
$node->start;

my $uid = 'd0000000-0000-4000-8000-000000000001';
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION pgmarket;
	SELECT pgmarket.create_user('keyfile\@example.com', 'keyfile', id => '$uid');
	SELECT pgmarket.put_provider_key('$uid', 'openai', 'sk-010-secret-value-1');
});

my $get = "SELECT pgmarket.get_provider_key('$uid', 'openai')";

# Run a query in a new session; returns (exit code, stdout, stderr) with
# verbose errors (SQLSTATE, DETAIL, HINT).
sub run_verbose
{
	my ($sql) = @_;
	my ($stdout, $stderr);
	my $ret = $node->psql(
		'postgres', $sql,
		stdout       => \$stdout,
		stderr       => \$stderr,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return ($ret, $stdout, $stderr);
}

# The vault works: the stored secret comes back and a new one can be put.
sub vault_works
{
	my ($what) = @_;
	my ($ret, $out, $err) = run_verbose($get);
	is($out, 'sk-010-secret-value-1', "$what: get_provider_key works")
	  or diag($err);
	is( $node->safe_psql(
			'postgres', "SELECT length(pgmarket.vault_public_key())"),
		'32',
		"$what: vault_public_key works");
	return;
}

# The vault is unavailable: PM010 with the message and hint expected.
sub vault_fails
{
	my ($what, $msg, $hint) = @_;
	my ($ret, $out, $err) = run_verbose($get);
	isnt($ret, 0, "$what: get_provider_key fails");
	like($err, qr/ERROR:\s+PM010: no master key is loaded: .*$msg/,
		"$what: PM010 with the cause");
	like($err, qr/HINT:\s+$hint/, "$what: with a hint");
	($ret, $out, $err) = run_verbose(
		"SELECT pgmarket.put_provider_key('$uid', 'anthropic', 'sk-010-never-stored')");
	like($err, qr/ERROR:\s+PM010/, "$what: put_provider_key fails too");
	return;
}

vault_works('valid file at start');

my $qfile = quotemeta($keyfile);
my %cases = (
	missing => sub { unlink $keyfile },
	malformed => sub { write_key_file($keyfile, "hello\n", 0600) },
	short_key => sub { write_key_file($keyfile, "1:abcd\n", 0600) },
	version_zero => sub { write_key_file($keyfile, "0:$hex[0]\n", 0600) },
	duplicate => sub {
		write_key_file($keyfile, "1:$hex[0]\n1:$hex[1]\n", 0600);
	},
	all_zeros => sub { write_key_file($keyfile, '1:' . ('0' x 64) . "\n", 0600) },
	empty => sub { write_key_file($keyfile, "# no keys\n\n", 0600) },
	mode_0644 => sub { write_key_file($keyfile, "1:$hex[0]\n", 0644) },
	mode_0640 => sub { write_key_file($keyfile, "1:$hex[0]\n", 0640) },
	mode_0604 => sub { write_key_file($keyfile, "1:$hex[0]\n", 0604) },
	directory => sub { unlink $keyfile; mkdir $keyfile, 0700 or die "mkdir: $!" },);
my %expect = (
	missing => [ qr/master key file "$qfile" does not exist/,
		qr/Create the file or correct pgmarket\.master_key_file/ ],
	malformed => [ qr/master key file "$qfile" is malformed: line 1 is not of the form VERSION:HEX64/,
		qr/Each line of the file must be VERSION:HEX64/ ],
	short_key => [ qr/is malformed: line 1: the key is not 64 hexadecimal digits/,
		qr/Each line of the file must be VERSION:HEX64/ ],
	version_zero => [ qr/is malformed: line 1: key versions start at 1/,
		qr/Each line of the file must be VERSION:HEX64/ ],
	duplicate => [ qr/is malformed: line 2: key version 1 is listed twice/,
		qr/Each line of the file must be VERSION:HEX64/ ],
	all_zeros => [ qr/is malformed: line 1: key version 1 is all zeros/,
		qr/Each line of the file must be VERSION:HEX64/ ],
	empty => [ qr/is malformed: it holds no key/,
		qr/Each line of the file must be VERSION:HEX64/ ],
	mode_0644 => [ qr/master key file "$qfile" is accessible by group or others/,
		qr/Run chmod 600 $qfile, then reload the configuration/ ],
	mode_0640 => [ qr/is accessible by group or others/, qr/Run chmod 600/ ],
	mode_0604 => [ qr/is accessible by group or others/, qr/Run chmod 600/ ],
	directory => [ qr/master key file "$qfile" is not a regular file/,
		qr/Point pgmarket\.master_key_file at a file/ ],);
my @order = qw(missing malformed short_key version_zero duplicate all_zeros
  empty mode_0644 mode_0640 mode_0604 directory);

sub fix_key_file
{
	rmdir $keyfile if -d $keyfile;
	write_key_file($keyfile, "1:$hex[0]\n", 0600);
	return;
}

# The detail of a too permissive file names its mode.
$cases{mode_0644}->();
my (undef, undef, $err644) = run_verbose($get);
like($err644, qr/DETAIL:\s+Its permissions are 0644; only the server's operating system user may have access/,
	'0644: the detail names the mode');
fix_key_file();

###########################################################################
# At server start
###########################################################################
for my $case (qw(missing malformed mode_0644 directory))
{
	$node->stop;
	$cases{$case}->();
	$node->start;
	vault_fails("$case at start", @{ $expect{$case} });
	fix_key_file();
	vault_works("$case at start, then fixed without a restart");
}

###########################################################################
# After a reload, in a session that had the keys loaded
###########################################################################
my $bg = $node->background_psql('postgres', on_error_stop => 0);
$bg->query_safe('\set VERBOSITY verbose');

# Query the long-lived session; returns (stdout, stderr).
sub bg_query
{
	my ($sql) = @_;
	$bg->{stderr} = '';
	my $out = $bg->query($sql);
	my $err = $bg->{stderr};
	$bg->{stderr} = '';
	return ($out, $err);
}

# Wait until the long-lived session sees the change (the reload signal
# arrives asynchronously); returns its last (stdout, stderr).
sub bg_until
{
	my ($sql, $pattern) = @_;
	my ($out, $err);
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (1)
	{
		($out, $err) = bg_query($sql);
		last if ($out . $err) =~ $pattern || time() > $deadline;
		usleep(100_000);
	}
	return ($out, $err);
}

my ($out, $err) = bg_query($get);
is($out, 'sk-010-secret-value-1', 'long-lived session: keys loaded');

for my $case (@order)
{
	$cases{$case}->();
	$node->reload;
	($out, $err) = bg_until($get, qr/PM010/);
	like($err, qr/ERROR:\s+PM010: no master key is loaded: .*$expect{$case}[0]/,
		"$case after a reload: PM010 with the cause in the same session");
	like($err, qr/HINT:\s+$expect{$case}[1]/, "$case after a reload: with a hint");
	# every new transaction, not only the first
	($out, $err) = bg_query($get);
	like($err, qr/PM010/, "$case after a reload: the next transaction too");

	fix_key_file();
	$node->reload;
	($out, $err) = bg_until($get, qr/sk-010-secret-value-1/);
	is($out, 'sk-010-secret-value-1',
		"$case fixed and reloaded: works again in the same session");
	is($err, '', "$case fixed and reloaded: no error");
}

# No reload at all: a file that turns too permissive is refused in the next
# transaction (checked at the first use in every transaction).
chmod 0644, $keyfile;
($out, $err) = bg_query($get);
like($err, qr/PM010: .* is accessible by group or others/,
	'too permissive without a reload: PM010 in the next transaction');
chmod 0600, $keyfile;
($out, $err) = bg_query($get);
is($out, 'sk-010-secret-value-1', 'mode fixed: works again');

# An unset setting.
$node->safe_psql('postgres', "ALTER SYSTEM SET pgmarket.master_key_file = ''");
$node->reload;
($out, $err) = bg_until($get, qr/PM010/);
like($err, qr/PM010: no master key is loaded: pgmarket\.master_key_file is not set/,
	'setting empty: PM010');
like($err, qr/HINT:\s+Set pgmarket\.master_key_file to the path of the master key file/,
	'setting empty: with a hint');

# Another file with another key: the stored key fails authentication (PM011),
# new keys go under the other key; back to the right file, all is well.
write_key_file($other, "1:$hex[1]\n", 0600);
$node->safe_psql('postgres',
	"ALTER SYSTEM SET pgmarket.master_key_file = '$other'");
$node->reload;
($out, $err) = bg_until($get, qr/PM011/);
like($err, qr/ERROR:\s+PM011: provider key \S+ failed authentication/,
	'another master key: PM011');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET pgmarket.master_key_file');
$node->reload;
($out, $err) = bg_until($get, qr/sk-010-secret-value-1/);
is($out, 'sk-010-secret-value-1', 'setting back: works again');

# A file with a second version: the new version encrypts, the old decrypts.
write_key_file($keyfile, "1:$hex[0]\n2:$hex[2]\n", 0600);
$node->reload;
bg_query(
	"SELECT pgmarket.put_provider_key('$uid', 'anthropic', 'sk-010-secret-value-2')");
($out, $err) = bg_query(
	"SELECT provider || ':' || key_version FROM pgmarket.list_provider_keys('$uid') ORDER BY provider");
is($out, "anthropic:2\nopenai:1", 'version 2 encrypts, version 1 still listed');
$bg->quit;

###########################################################################
# A restart keeps working
###########################################################################
$node->restart;
vault_works('after a restart');
is( $node->safe_psql('postgres',
		"SELECT pgmarket.get_provider_key('$uid', 'anthropic')"),
	'sk-010-secret-value-2',
	'after a restart: the key under version 2 decrypts');

###########################################################################
# Only superusers see the setting
###########################################################################
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN IN ROLE pgmarket_app');
# (a C function of pgmarket loads the library, which defines the setting)
my $load = "SELECT count(*) FROM pgmarket.list_api_keys('$uid');";
my ($ret, $o, $e);
$ret = $node->psql('postgres', "$load SHOW pgmarket.master_key_file",
	stdout => \$o, stderr => \$e,
	extra_params => [ '-U', 'app' ]);
isnt($ret, 0, 'a non-superuser cannot SHOW the setting');
like($e, qr/permission denied|must be superuser|pg_read_all_settings/,
	'a non-superuser gets permission denied');
unlike($o // '', qr/\Q$keydir\E/, 'a non-superuser does not see the path');
$ret = $node->psql('postgres',
	"$load SELECT setting FROM pg_settings WHERE name = 'pgmarket.master_key_file'",
	stdout => \$o, stderr => \$e,
	extra_params => [ '-U', 'app' ]);
unlike($o // '', qr/\Q$keydir\E/, 'nor through pg_settings');
TODO:
{
	local $TODO =
	  'before the library is loaded in a session the setting is a placeholder that anyone may read (no shared_preload_libraries)';
	$ret = $node->psql('postgres', 'SHOW pgmarket.master_key_file',
		stdout => \$o, stderr => \$e,
		extra_params => [ '-U', 'app' ]);
	unlike($o // '', qr/\Q$keydir\E/,
		'a non-superuser does not see the path before the library is loaded');
}

###########################################################################
# The server log never holds key material
###########################################################################
$node->stop;
my $log = slurp_file($node->logfile);
like($log, qr/PM010|no master key is loaded/, 'the log has the errors');
for my $i (0 .. $#hex)
{
	my $h = $hex[$i];
	ok( index(lc $log, $h) < 0
		  && index(lc $log, substr($h, 0, 16)) < 0
		  && index(lc $log, substr($h, -16)) < 0,
		'the server log does not contain master key ' . ($i + 1));
}

done_testing();
