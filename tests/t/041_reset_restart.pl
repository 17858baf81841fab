# Password reset tokens across restarts.
#
# A token lives in a table, as a keyed hash under a subkey of the master key
# (the key file is read again after a restart), so a token handed out before
# a clean restart or a crash resets the password after it, once; and it
# still expires: a token created with a one-second ttl keeps the expires_at
# it was given, and once the server's clock has passed that instant (the
# test polls for the condition, it does not sleep a fixed time) the token
# resets nothing.  The master key file is written by the test, mode 0600,
# in the data directory.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('reset_restart');
$node->init;
my $keyfile = $node->data_dir . '/reset_tap.key';
open(my $fh, '>', $keyfile) or die "cannot write $keyfile: $!";
print $fh '1:' . ('7e' x 32) . "\n";
close($fh);
chmod(0600, $keyfile) or die "chmod $keyfile: $!";
$node->append_conf('postgresql.conf', "pgmarket.master_key_file = 'reset_tap.key'\n");
$node->start;

my $user = 'ac500000-0000-4000-8000-000000000001';
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION pgmarket;
	SELECT pgmarket.create_user('restart\@example.com', 'restart', 'first password',
	                            '{user}', '$user');
});

sub token
{
	my ($ttl) = @_;
	return $node->safe_psql('postgres',
		"SELECT pgmarket.create_password_reset('$user', '$ttl')");
}

sub reset_to
{
	my ($token, $password) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(pgmarket.reset_password('$token', '$password')::text, 'NULL')");
}

sub logs_in
{
	my ($password) = @_;
	return $node->safe_psql('postgres',
		"SELECT pgmarket.authenticate('restart', '$password') IS NOT NULL");
}

my $long = token('1 hour');
my $short = token('1 second');
like($long, qr/^pwr_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/, 'a token is handed out');
my $expiry = $node->safe_psql('postgres',
	"SELECT expires_at FROM pgmarket.password_resets"
	  . " WHERE user_id = '$user' AND expires_at < now() + interval '1 minute'");
isnt($expiry, '', 'the short token has its expiry stored');

$node->restart;

is($node->safe_psql('postgres',
		"SELECT expires_at FROM pgmarket.password_resets"
		  . " WHERE user_id = '$user' AND expires_at < now() + interval '1 minute'"),
	$expiry, 'the short token keeps its expiry across the restart');

# wait until the server's clock is past the stored expiry (a condition,
# not a fixed sleep), then the short token resets nothing
ok($node->poll_query_until('postgres',
		"SELECT now() > '$expiry'::timestamptz"),
	'the server clock passes the stored expiry');
is(reset_to($short, 'late password'), 'NULL', 'after its expiry the token resets nothing');
is(logs_in('first password'), 't', 'the password is unchanged');

# the long one works after the restart, once
is(reset_to($long, 'second password'), $user, 'a token from before the restart resets');
is(logs_in('second password'), 't', 'the new password works');
is(reset_to($long, 'third password'), 'NULL', 'and it is used up');

# a crash: a committed token survives it
my $crash = token('1 hour');
$node->stop('immediate');
$node->start;
is(reset_to($crash, 'after crash'), $user, 'a token from before a crash resets');
is(logs_in('after crash'), 't', 'the new password works after the crash');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pgmarket.password_resets WHERE user_id = '$user' AND used_at IS NULL"),
	'0', 'no token of the user is left open');

$node->stop;
done_testing();
