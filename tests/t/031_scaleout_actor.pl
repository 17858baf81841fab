# The actor rule through the PL/Proxy scale-out (SPEC "Scaling out", "Row-level
# security"; proxy/).
#
# A proxy with proxy/pgmarket_proxy.sql and two data nodes, as in
# 030_scaleout.pl, with pgmarket.proxy_role = 'pgm_forwarder' on the nodes.
# PL/Proxy connects to the nodes as the calling role: `gateway` is a member
# of pgm_forwarder on the nodes, `intruder` is not.  Through the proxy:
#  - with pgmarket.actor set, the node enforces it: the actor's own rows,
#    yes; another user's balance, ledger, charges (also by platform key and
#    in deduct_batch), 42501; the views show only the actor's rows; the
#    node's audit trail records the actor;
#  - without an actor, the trusted back end as before;
#  - an actor forwarded by a role that is not pgmarket.proxy_role (or with
#    the setting empty on the node) is refused with 42501, never ignored,
#    for per-user calls, RUN ON ALL calls and views alike;
#  - through pgbouncer in transaction mode too, and a SET LOCAL actor does
#    not outlive its transaction on the pooled connection.

use strict;
use warnings;

use File::Basename qw(dirname);
use Fcntl;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

{
	my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
	chomp(my $sharedir = `$pg_config --sharedir`);
	plan skip_all => 'plproxy is not installed (postgresql-15-plproxy)'
	  unless -e "$sharedir/extension/plproxy.control";
}

my $proxy_sql = dirname(__FILE__) . '/../../proxy/pgmarket_proxy.sql';
-e $proxy_sql or die "no $proxy_sql";

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

# On every database: the text of a query's one value, or "ERROR <sqlstate>",
# callable by the application roles.
my $helper = q{
CREATE SCHEMA t;
CREATE FUNCTION t.run(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
    EXECUTE q INTO r;
    RETURN coalesce(r, '<null>');
EXCEPTION WHEN others THEN
    RETURN 'ERROR ' || SQLSTATE;
END
$$;
GRANT USAGE ON SCHEMA t TO PUBLIC;
};
my $roles = q{
CREATE ROLE gateway LOGIN IN ROLE pgmarket_app;
CREATE ROLE intruder LOGIN IN ROLE pgmarket_app;
};

sub dbof { my ($n) = @_; return $n->name eq 'proxy' ? 'postgres' : 'pgm_' . $n->name; }

my @nodes;
for my $i (0, 1)
{
	my $n = PostgreSQL::Test::Cluster->new("data$i");
	$n->init;
	$n->append_conf('postgresql.conf',
		"pgmarket.master_key_file = '$keyfile'\nmax_connections = 20\n"
		  . "pgmarket.proxy_role = 'pgm_forwarder'\n");
	$n->start;
	$n->safe_psql('postgres', "CREATE DATABASE pgm_data$i");
	$n->safe_psql(dbof($n),
		"CREATE EXTENSION pgmarket;\n$helper\n$roles\n"
		  . "CREATE ROLE pgm_forwarder NOLOGIN;\nGRANT pgm_forwarder TO gateway;");
	push @nodes, $n;
}

my $proxy = PostgreSQL::Test::Cluster->new('proxy');
$proxy->init;
$proxy->start;
$proxy->safe_psql('postgres', 'CREATE EXTENSION plproxy');
{
	my ($ret, $out, $err) = $proxy->psql(
		'postgres', undef,
		extra_params => [ '-v', 'ON_ERROR_STOP=1', '-f', $proxy_sql ]);
	is($ret, 0, 'proxy schema loads') or diag $err;
}
$proxy->safe_psql('postgres', "$helper\n$roles");
my $conns = join(', ',
	map { "'host=" . $_->host . ' port=' . $_->port . ' dbname=' . dbof($_) . "'" }
	  @nodes);
$proxy->safe_psql('postgres', "SELECT pgmarket_proxy.set_nodes(ARRAY[$conns])");

# One value through the proxy, as ROLE (default: the superuser), with
# pgmarket.actor set to ACTOR for the session when given; errors as
# "ERROR <sqlstate>".
sub via
{
	my ($role, $actor, $sql) = @_;
	(my $q = $sql) =~ s/'/''/g;
	my $set = defined $actor ? "SET pgmarket.actor = '$actor';\n" : '';
	return $proxy->safe_psql('postgres', "${set}SELECT t.run('$q')",
		$role ? (extra_params => [ '-U', $role ]) : ());
}

sub home { return $proxy->safe_psql('postgres', "SELECT hashtext('$_[0]'::text) & 1"); }

# Two users on different nodes, made through the proxy without an actor.
my ($alice, $bob);
for my $i (1 .. 64)
{
	my $uid = sprintf('a1000000-0000-4000-8000-%012d', $i);
	if (!defined $alice) { $alice = $uid; next; }
	if (home($uid) ne home($alice)) { $bob = $uid; last; }
}
is(via(undef, undef, "SELECT pgmarket.create_user('alice\@example.com', 'alice', id => '$alice')"),
	$alice, 'alice created through the proxy');
is(via(undef, undef, "SELECT pgmarket.create_user('bob\@example.com', 'bob', id => '$bob')"),
	$bob, 'bob created through the proxy, on the other node');
via(undef, undef, "SELECT pgmarket.add_funds('$_', 10)") for ($alice, $bob);
my $bob_key = via(undef, undef,
	"SELECT api_key FROM pgmarket.create_api_key('$bob', 'bob''s gateway')");
like($bob_key, qr/^sk_live_/, 'a platform key of bob');
via(undef, undef, "SELECT pgmarket.deduct_balance('$_', 1, 'm-$_')") for ($alice, $bob);

# --- the forwarding role with an actor: the node enforces it ---------------

is(via('gateway', $alice, "SELECT available_balance FROM pgmarket.get_balance('$alice')"),
	'9.000000', 'actor alice through the proxy: her own balance');
is(via('gateway', $alice, "SELECT available_balance FROM pgmarket.get_balance('$bob')"),
	'ERROR 42501', 'actor alice through the proxy: bob\'s balance is 42501');
is(via('gateway', $alice, "SELECT available_balance FROM pgmarket.deduct_balance('$bob', 1, 'm-steal')"),
	'ERROR 42501', 'actor alice may not charge bob');
is(via('gateway', $alice, "SELECT count(*) FROM pgmarket.ledger_entries('$bob')"),
	'ERROR 42501', 'nor read his ledger (a set-returning function)');
is(via('gateway', $alice, "SELECT entry_id FROM pgmarket.charge_api_key('$bob_key', 1, 'm-steal')"),
	'ERROR 42501', 'nor charge him by his platform key (routed by the key)');
is( via('gateway', $alice,
		"SELECT string_agg(sqlstate, ',' ORDER BY ordinal) FROM pgmarket.deduct_batch(ARRAY[('$alice', 1, 'm-batch', 0, NULL), ('$bob', 1, 'm-steal', 0, NULL)]::pgmarket.charge[])"
	),
	'00000,42501',
	'deduct_batch split by node: alice\'s charge applies, bob\'s is refused');
is(via(undef, undef, "SELECT available_balance FROM pgmarket.get_balance('$bob')"),
	'9.000000', 'bob\'s balance is untouched');
is(via('gateway', $alice, "SELECT string_agg(username, ',') FROM pgmarket.users"),
	'alice', 'the users view through the proxy: only the actor\'s row');
is(via('gateway', $alice, "SELECT string_agg(model_id, ',' ORDER BY model_id) FROM pgmarket.model_usage"),
	"m-$alice,m-batch", 'model_usage: only the actor\'s usage');
is(via('gateway', $alice, "SELECT count(DISTINCT user_id) FROM pgmarket.usage_daily"),
	'1', 'usage_daily: only the actor\'s rows');
is(via('gateway', $alice, "SELECT pgmarket.authenticate('bob', 'wrong') IS NULL"),
	'true', 'authenticate, on every node, with the actor');

# the node records the forwarded actor in its audit trail
is(via('gateway', $alice, "SELECT pgmarket.set_preference('$alice', 'theme', '\"dark\"')"),
	'', 'set_preference for the actor through the proxy');
is( $nodes[ home($alice) ]->safe_psql(dbof($nodes[ home($alice) ]),
		"SELECT actor || ' ' || db_role FROM pgmarket.audit_log WHERE table_name = 'pgmarket.preferences' ORDER BY id DESC LIMIT 1"),
	"$alice gateway",
	'the node\'s audit trail records the actor set on the proxy');

# --- no actor: the trusted back end, as before ---------------------------

is(via('gateway', undef, "SELECT available_balance FROM pgmarket.get_balance('$bob')"),
	'9.000000', 'no actor: the trusted back end reads any balance');
is(via('gateway', '', "SELECT available_balance FROM pgmarket.get_balance('$bob')"),
	'9.000000', 'an empty actor is no actor');
is(via('gateway', undef, "SELECT count(*) FROM pgmarket.users"),
	'2', 'no actor: the users view shows every user');

# --- a role that is not pgmarket.proxy_role: refused, never ignored ------------

is(via('intruder', $alice, "SELECT available_balance FROM pgmarket.get_balance('$alice')"),
	'ERROR 42501', 'an actor forwarded by another role: 42501, even for that user');
is(via('intruder', $alice, "SELECT available_balance FROM pgmarket.get_balance('$bob')"),
	'ERROR 42501', 'and for another user');
is(via('intruder', $alice, "SELECT count(*) FROM pgmarket.users"),
	'ERROR 42501', 'a view (RUN ON ALL): 42501');
is(via('intruder', $alice, "SELECT pgmarket.expire_reservations()"),
	'ERROR 42501', 'a RUN ON ALL function without arguments: 42501');
is(via('intruder', $alice, "SELECT length(pgmarket.vault_public_key())"),
	'ERROR 42501', 'a RUN ON ANY function: 42501');
is( via('intruder', $alice,
		"SELECT string_agg(sqlstate, ',') FROM pgmarket.deduct_batch(ARRAY[('$alice', 1, 'm-x', 0, NULL)]::pgmarket.charge[])"
	),
	'ERROR 42501',
	'deduct_batch: 42501');
is(via('intruder', $alice, "SELECT pgmarket.create_user('carol\@example.com', 'carol')"),
	'ERROR 42501', 'create_user: 42501');
is(via(undef, undef, "SELECT count(*) FROM pgmarket_proxy.directory WHERE username_lower = 'carol'"),
	'0', 'and the refused user claims nothing in the proxy\'s directory');
is(via('intruder', undef, "SELECT available_balance FROM pgmarket.get_balance('$bob')"),
	'9.000000', 'the same role without an actor: the trusted back end');

# pgmarket.proxy_role empty on the nodes (for gateway's sessions there):
# forwarding is refused, to gateway too
$_->safe_psql(dbof($_), "ALTER ROLE gateway SET pgmarket.proxy_role = ''") for @nodes;
is(via('gateway', $alice, "SELECT available_balance FROM pgmarket.get_balance('$alice')"),
	'ERROR 42501', 'pgmarket.proxy_role unset on the node: a forwarded actor is refused');
is(via('gateway', undef, "SELECT available_balance FROM pgmarket.get_balance('$alice')"),
	'8.000000', 'and no actor still works');
$_->safe_psql(dbof($_), 'ALTER ROLE gateway RESET pgmarket.proxy_role') for @nodes;
is(via('gateway', $alice, "SELECT available_balance FROM pgmarket.get_balance('$alice')"),
	'8.000000', 'the setting back: forwarding works again');

# --- through pgbouncer in transaction mode ----------------------------------

SKIP:
{
	my $pgbouncer = `command -v pgbouncer 2>/dev/null`;
	chomp $pgbouncer;
	skip 'pgbouncer is not installed', 4 unless $pgbouncer;

	my $dir = PostgreSQL::Test::Utils::tempdir_short();
	my $bport = PostgreSQL::Test::Cluster::get_free_port();
	open(my $ini, '>', "$dir/pgbouncer.ini") or die $!;
	print $ini "[databases]\n",
	  "postgres = host=", $proxy->host, " port=", $proxy->port,
	  " dbname=postgres\n",
	  "[pgbouncer]\nlisten_addr =\nlisten_port = $bport\n",
	  "unix_socket_dir = $dir\nauth_type = trust\n",
	  "auth_file = $dir/users.txt\npool_mode = transaction\n",
	  "default_pool_size = 1\nlogfile = $dir/pgbouncer.log\n",
	  "pidfile = $dir/pgbouncer.pid\n",
	  "ignore_startup_parameters = extra_float_digits\n";
	close $ini;
	open(my $users, '>', "$dir/users.txt") or die $!;
	print $users "\"gateway\" \"\"\n";
	close $users;
	system($pgbouncer, '-d', '-q', "$dir/pgbouncer.ini") == 0
	  or die "pgbouncer did not start";
	for (1 .. 50)
	{
		last if -S "$dir/.s.PGSQL.$bport";
		select(undef, undef, undef, 0.1);
	}

	# one transaction through pgbouncer as gateway, SET LOCAL actor first
	# when given
	my $bounce = sub {
		my ($actor, $sql) = @_;
		(my $q = $sql) =~ s/'/''/g;
		my $set = defined $actor ? "SET LOCAL pgmarket.actor = '$actor'; " : '';
		my ($out, $err);
		IPC::Run::run(
			[
				'psql', '-X', '-qAt', '-h', $dir, '-p', $bport, '-U', 'gateway',
				'-d', 'postgres', '-c', "BEGIN; ${set}SELECT t.run('$q'); COMMIT;"
			],
			'>', \$out, '2>', \$err);
		chomp $out if defined $out;
		return $out // "ERROR: $err";
	};
	is($bounce->($alice, "SELECT available_balance FROM pgmarket.get_balance('$alice')"),
		'8.000000', 'through pgbouncer: the actor\'s own balance');
	is($bounce->($alice, "SELECT available_balance FROM pgmarket.get_balance('$bob')"),
		'ERROR 42501', 'through pgbouncer: another user\'s balance is 42501');
	is($bounce->(undef, "SELECT available_balance FROM pgmarket.get_balance('$bob')"),
		'9.000000',
		'the next transaction on the pooled connection has no actor: the trusted back end');
	is($bounce->($bob, "SELECT available_balance FROM pgmarket.get_balance('$bob')"),
		'9.000000', 'and another actor on it is that actor');

	open(my $pidf, '<', "$dir/pgbouncer.pid") or die $!;
	my $pid = <$pidf>;
	close $pidf;
	chomp $pid;
	kill 'TERM', $pid;
}

$proxy->stop;
$_->stop for @nodes;
done_testing();
