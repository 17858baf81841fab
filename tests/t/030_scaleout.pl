# Scale-out behind PL/Proxy (SPEC "Scaling out", proxy/).
#
# Three clusters: a proxy with plproxy and proxy/pgmarket_proxy.sql, and two
# data nodes with pgmarket (one master key for both).  Through the proxy:
#  - users land on the node that hashtext(id::text) & 1 names, and only there
#    (an explicit id and create_user's default gen_random_uuid() alike), and
#    emails and usernames stay unique across the nodes (the proxy's directory);
#  - a sequence of ledger calls (deposits, charges, idempotent replays, PM001,
#    PM002, PM003, 22004, 22023, reservations) gives the same results and
#    SQLSTATEs as the same sequence run directly on one node;
#  - deduct_batch over users of both nodes applies each charge on its node and
#    returns the rows in input order with their SQLSTATEs;
#  - model_usage, users and verify_ledger equal the merge over the nodes;
#    audit_head has one row per node and a node's anchor lies on its chain;
#    health() is merged over the nodes;
#  - a platform key created through the proxy routes its charges to its
#    owner's node (api_key_partition computed on the proxy); a bad key is 28000;
#    the client library's sealed key calls go the same way;
#  - projects and change requests live on their owner's node (PM002 for
#    another user's project, 42501 under another user's actor), templates
#    on partition 0's node;
#  - charge_api_key works through pgbouncer in transaction mode in front of
#    the proxy, and its idempotent repeat replays; so does the client
#    library's pipelined batch (pgm_deduct_batch), each charge on its node; set_tier reaches every
#    node, and a key's rate limit holds through both (PM005 past it);
#  - with one data node stopped, its users' calls fail with an error naming
#    the node, the other node's users go on, and after a restart nothing
#    acknowledged is lost.

use strict;
use warnings;

use File::Basename qw(dirname);
use Fcntl;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# PL/Proxy (Debian: postgresql-15-plproxy) must be installed in the server.
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

# A helper on every database: the text of a query's one value, or
# "ERROR <sqlstate>".
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
};

# Each data node's database is named after it, so that PL/Proxy's errors
# ("[pgm_data1] ...") say which node failed.
sub dbof { my ($n) = @_; return $n->name eq 'proxy' ? 'postgres' : 'pgm_' . $n->name; }

my @nodes;
for my $i (0, 1)
{
	my $n = PostgreSQL::Test::Cluster->new("data$i");
	$n->init;
	$n->append_conf('postgresql.conf',
		"pgmarket.master_key_file = '$keyfile'\nmax_connections = 20\n");
	$n->start;
	$n->safe_psql('postgres', "CREATE DATABASE pgm_data$i");
	$n->safe_psql(dbof($n), "CREATE EXTENSION pgmarket;\n$helper");
	push @nodes, $n;
}

my $proxy = PostgreSQL::Test::Cluster->new('proxy');
$proxy->init;
$proxy->start;
$proxy->safe_psql(dbof($proxy), 'CREATE EXTENSION plproxy');
$proxy->safe_psql(dbof($proxy), $helper);
{
	my ($ret, $out, $err) = $proxy->psql(
		'postgres', undef,
		extra_params => [ '-v', 'ON_ERROR_STOP=1', '-f', $proxy_sql ]);
	is($ret, 0, 'proxy schema loads') or diag $err;
}
my $conns = join(', ',
	map { "'host=" . $_->host . ' port=' . $_->port . ' dbname=' . dbof($_) . "'" }
	  @nodes);
is($proxy->safe_psql(dbof($proxy),
		"SELECT pgmarket_proxy.set_nodes(ARRAY[$conns])"),
	'2', 'cluster pgmarket: 2 partitions over 2 nodes');

# proxy/pgmarket_proxy.sql is generated (proxy/gen_proxy.sh): it must
# declare every function of the installed extension with the same
# signature and result, but the node-local administration ones.
{
	my $sig = q{SELECT string_agg(format('%s(%s) %s', p.proname,
	                   pg_get_function_arguments(p.oid), pg_get_function_result(p.oid)),
	                   E'\n' ORDER BY 1)
	              FROM pg_proc p
	             WHERE p.pronamespace = 'pgmarket'::regnamespace AND p.prokind = 'f'
	               AND p.proname NOT IN ('audit_event', 'audit_trigger', 'forbid_change',
	                                     'enable_audit', 'disable_audit', 'current_actor',
	                                     'proxy_actor', 'audit_require_owner',
	                                     'audit_restored', 'user_scope',
	                                     'store_check_text', 'store_check_list',
	                                     'store_check_json', 'store_project',
	                                     'audit_ddl', 'audit_internal_active',
	                                     'audit_open', 'audit_open_value',
	                                     'import_batch', 'export_accounts')};
	is($proxy->safe_psql('postgres', "SET search_path = pg_catalog; $sig"),
		$nodes[0]->safe_psql(dbof($nodes[0]), "SET search_path = pg_catalog; $sig"),
		'the proxy declares the API of the installed extension (regenerate proxy/pgmarket_proxy.sql if not)');
}
# and it is what the generator writes from a node of this tree, which
# declares or lists as internal every function of the node
{
	my ($out, $err);
	IPC::Run::run([ 'bash', dirname(__FILE__) . '/../../proxy/gen_proxy.sh',
			'-h', $nodes[0]->host, '-p', $nodes[0]->port, '-d', dbof($nodes[0]) ],
		'>', \$out, '2>', \$err);
	is($? >> 8, 0, 'proxy/gen_proxy.sh runs against a node') or diag $err;
	is($err, '', 'the generator leaves no function of the node undeclared');
	open(my $fh, '<', $proxy_sql) or die "$proxy_sql: $!";
	my $checked_in = do { local $/; <$fh> };
	close $fh;
	ok($out eq $checked_in,
		'proxy/pgmarket_proxy.sql is the generator\'s output (regenerate it if not)');
}

sub q_proxy { return $proxy->safe_psql(dbof($proxy), $_[0]); }

# Which node a user lives on, by the hash (computed by the server).
sub home
{
	my ($uid) = @_;
	return q_proxy("SELECT hashtext('$uid'::text) & 1");
}

# --- users land on their hash's node, and only there ----------------------

my @uids;
for my $i (1 .. 16)
{
	my $uid = sprintf('d0000000-0000-4000-8000-%012d', $i);
	is(q_proxy("SELECT pgmarket.create_user('u$i\@example.com', 'user$i', id => '$uid')"),
		$uid, "create_user u$i through the proxy");
	push @uids, $uid;
}
for my $i (17 .. 24)
{
	push @uids,
	  q_proxy("SELECT pgmarket.create_user('u$i\@example.com', 'user$i')");
}
# emails and usernames are unique across the nodes, not only on each
my ($home1) = q_proxy("SELECT hashtext('$uids[0]'::text) & 1");
my $elsewhere = q_proxy(
	"SELECT id FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, 64)) s"
	  . " WHERE hashtext(id::text) & 1 <> $home1 LIMIT 1");
is( q_proxy(
		"SELECT t.run(\$q\$SELECT pgmarket.create_user(' U1\@Example.com', 'someone', id => '$elsewhere')\$q\$)"
	),
	'ERROR 23505',
	'an email taken on one node is refused for a user of the other node');
is( q_proxy(
		"SELECT t.run(\$q\$SELECT pgmarket.create_user('fresh\@example.com', 'USER1', id => '$elsewhere')\$q\$)"
	),
	'ERROR 23505',
	'so is a username, without regard to case');
is( q_proxy(
		"SELECT t.run(\$q\$SELECT pgmarket.create_user('not an email', 'someone', id => '$elsewhere')\$q\$)"
	),
	'ERROR 22023',
	'a refused user claims nothing: the node\'s error, and the claim rolled back');
is(q_proxy("SELECT count(*) FROM pgmarket_proxy.directory WHERE user_id = '$elsewhere'"),
	'0', 'nothing of the refused users stays in the directory');
is(q_proxy("SELECT count(*) FROM pgmarket_proxy.directory"),
	'24', 'the directory holds every user created through the proxy');

my %on;
my $misplaced = 0;
for my $uid (@uids)
{
	my $h = home($uid);
	$on{$h}++;
	for my $n (0, 1)
	{
		my $c = $nodes[$n]->safe_psql(dbof($nodes[$n]),
			"SELECT count(*) FROM pgmarket.users WHERE id = '$uid'");
		$misplaced++ if $c != ($n == $h ? 1 : 0);
	}
}
is($misplaced, 0, 'every user is on the node its hash names and nowhere else');
ok($on{0} && $on{1}, "both nodes hold users ($on{0} and $on{1})");
is( $nodes[0]->safe_psql(dbof($nodes[0]), 'SELECT count(*) FROM pgmarket.users') +
	  $nodes[1]->safe_psql(dbof($nodes[1]), 'SELECT count(*) FROM pgmarket.users'),
	scalar(@uids),
	'no user twice');
is(q_proxy('SELECT count(*) FROM pgmarket.users'),
	scalar(@uids), 'users view through the proxy: the union');

# --- the account surface through the proxy ---------------------------------

is(q_proxy("SELECT id FROM pgmarket.get_user_by_email(' U2\@Example.COM')"),
	$uids[1], 'get_user_by_email finds a user on whichever node holds it');
is(q_proxy("SELECT id FROM pgmarket.get_user_by_username('USER3')"),
	$uids[2], 'get_user_by_username too');
is(q_proxy("SELECT username FROM pgmarket.get_user('$uids[3]')"),
	'user4', 'get_user on the user\'s node');
is(q_proxy("SELECT count(*) FROM pgmarket.get_user_by_email('nobody\@example.com')"),
	'0', 'an unknown email: no row from any node');
q_proxy("SELECT pgmarket.update_user('$uids[0]', username => 'user1_new')");
is(q_proxy("SELECT username_lower FROM pgmarket_proxy.directory WHERE user_id = '$uids[0]'"),
	'user1_new', 'update_user claims the new username in the directory');
is( q_proxy(
		"SELECT t.run(\$q\$SELECT pgmarket.update_user('$elsewhere', email => 'u1\@example.com')\$q\$)"),
	'ERROR 23505', 'an email of another node is refused to update_user');
is( q_proxy(
		"SELECT t.run(\$q\$SELECT pgmarket.update_user('$uids[1]', username => 'USER1_NEW')\$q\$)"),
	'ERROR 23505', 'so is a username another user holds');
my $token = q_proxy("SELECT pgmarket.create_password_reset('$uids[4]')");
is(q_proxy("SELECT pgmarket.reset_password('$token', 'proxy reset')"),
	$uids[4], 'a reset token routes to its user\'s node');
is(q_proxy("SELECT pgmarket.reset_password('$token', 'again') IS NULL"),
	't', 'and is used up there');
is(q_proxy("SELECT pgmarket.reset_password('not a token', 'x') IS NULL"),
	't', 'a text that is no token resets nothing');
q_proxy("SELECT pgmarket.link_identity('$uids[5]', 'github', 'proxy-octocat')");
is(q_proxy("SELECT pgmarket.user_by_identity('GitHub', 'proxy-octocat')"),
	$uids[5], 'user_by_identity asks every node');
q_proxy("SELECT pgmarket.add_account_role('proxy-role', 'on every node')");
is( $nodes[0]->safe_psql(dbof($nodes[0]), "SELECT count(*) FROM pgmarket.roles WHERE name = 'proxy-role'")
	  . $nodes[1]->safe_psql(dbof($nodes[1]), "SELECT count(*) FROM pgmarket.roles WHERE name = 'proxy-role'"),
	'11', 'add_account_role registers the role on every node');
q_proxy("SELECT pgmarket.grant_user_role('$uids[6]', 'proxy-role')");
is(q_proxy("SELECT pgmarket.has_role('$uids[6]', 'proxy-role')"),
	't', 'a role granted through the proxy');

# --- the same sequence through the proxy and on one node --------------------

my @seq = (
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.add_funds('U', 10, 'dep1')},
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.add_funds('U', 10, 'dep1')},
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.add_funds('U', 11, 'dep1')},
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.deduct_balance('U', 2.5, 'm-seq', 7, 'c1')},
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.deduct_balance('U', 2.5, 'm-seq', 7, 'c1')},
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.deduct_balance('U', 3, 'm-seq', 7, 'c1')},
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.deduct_balance('U', 100, 'm-seq')},
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.deduct_balance('U', 1.0000001, 'm-seq')},
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.deduct_balance('U', -1, 'm-seq')},
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.deduct_balance(NULL, 1, 'm-seq')},
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.deduct_balance('e0000000-0000-4000-8000-000000000099', 1, 'm-seq')},
	q{SELECT pgmarket.reserve('U', 4, idempotency_key => 'r1') IS NOT NULL},
	q{SELECT format('%s %s %s %s', total_balance, spent_balance, reserved_balance, available_balance) FROM pgmarket.get_balance('U')},
	q{SELECT pgmarket.reserve('U', 4, idempotency_key => 'r2') IS NOT NULL},
	q{SELECT format('%s %s %s %s', kind, amount, available_balance, replayed) FROM pgmarket.deduct_balance('U', 0.5, 'm-seq')},
	q{SELECT count(*) FROM pgmarket.ledger_entries('U')},
	q{SELECT string_agg(kind || ' ' || amount, ', ' ORDER BY entry_id) FROM pgmarket.ledger_entries('U', 2)},
	q{SELECT format('%s %s %s %s', total_balance, spent_balance, reserved_balance, available_balance) FROM pgmarket.get_balance('U')},
	q{SELECT count(*) FROM pgmarket.ledger_entries('U', 0)},
	q{SELECT format('%s %s %s %s', total_balance, spent_balance, reserved_balance, available_balance) FROM pgmarket.get_balance(NULL)},
);

sub run_seq
{
	my ($node, $uid) = @_;
	my @out;
	for my $s (@seq)
	{
		(my $q = $s) =~ s/'U'/'$uid'/g;
		$q =~ s/'/''/g;
		push @out, $node->safe_psql(dbof($node), "SELECT t.run('$q')");
	}
	return \@out;
}

my ($via, $direct) = ($uids[0], undef);
# a user on the other node than $via, driven on its node directly
for my $u (@uids) { if (home($u) != home($via)) { $direct = $u; last; } }
my $out_proxy  = run_seq($proxy, $via);
my $out_direct = run_seq($nodes[ home($direct) ], $direct);
is_deeply($out_proxy, $out_direct,
	'ledger sequence: same results and SQLSTATEs through the proxy as on one node');
ok((grep { $_ eq 'ERROR PM001' } @$out_proxy)
	  && (grep { $_ eq 'ERROR PM003' } @$out_proxy)
	  && (grep { $_ eq 'ERROR PM002' } @$out_proxy)
	  && (grep { $_ eq 'ERROR 22004' } @$out_proxy)
	  && (grep { $_ eq 'ERROR 22023' } @$out_proxy),
	'PM001, PM002, PM003, 22004, 22023 reach the proxy client')
  or diag explain $out_proxy;
like(
	$out_proxy->[4], qr/ t$/, 'an idempotent replay says replayed = true');

# The message of a node's error reaches the client, its SQLSTATE too.
{
	my ($ret, $out, $err) = $proxy->psql(
		'postgres',
		"SELECT pgmarket.deduct_balance('$via', 1000, 'm-seq')",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  PM001: .*insufficient funds/,
		'PM001 with the node\'s message through the proxy');
}

# --- deduct_batch split by node, merged in input order --------------------

# Fresh users, one on each node.
my @fresh = grep { $_ ne $via && $_ ne $direct } @uids;
my ($a0) = grep { home($_) == 0 } @fresh;
my ($a1) = grep { home($_) == 1 } @fresh;
q_proxy("SELECT pgmarket.add_funds('$_', 5)") for ($a0, $a1);
my $batch = q_proxy(
	qq{SELECT string_agg(format('%s %s %s', ordinal, sqlstate, available_balance), ', ' ORDER BY ordinal)
	   FROM pgmarket.deduct_batch(ARRAY[
	     ('$a1', 1, 'm-batch', 1, 'b1'),
	     ('$a0', 2, 'm-batch', 1, 'b2'),
	     ('$a1', 9, 'm-batch', 1, 'b3'),
	     ('e0000000-0000-4000-8000-000000000099', 1, 'm-batch', 1, 'b4'),
	     ('$a0', 1, 'm-batch', 1, 'b5'),
	     ('$a1', 1, 'm-batch', 1, 'b1')]::pgmarket.charge[])});
is($batch,
	'1 00000 4.000000, 2 00000 3.000000, 3 PM001 , 4 PM002 , 5 00000 2.000000, 6 00000 4.000000',
	'deduct_batch through the proxy: each charge on its node, input order');
is(q_proxy("SELECT count(*) FROM pgmarket.deduct_batch('{}')"),
	$nodes[0]->safe_psql(dbof($nodes[0]), "SELECT count(*) FROM pgmarket.deduct_batch('{}')"),
	'deduct_batch of an empty array: as on a node');
is(q_proxy("SELECT t.run('SELECT count(*) FROM pgmarket.deduct_batch(NULL)')"),
	$nodes[0]->safe_psql(dbof($nodes[0]), "SELECT t.run('SELECT count(*) FROM pgmarket.deduct_batch(NULL)')"),
	'deduct_batch(NULL): as on a node');
# not a list, or a longer one than a node takes: refused as a whole, not
# split into NULL charges or into sub-batches that each pass
is(q_proxy("SELECT t.run(\$q\$SELECT count(*) FROM pgmarket.deduct_batch(ARRAY[[('$a0', 1, 'm-batch', 0, NULL)], [('$a1', 1, 'm-batch', 0, NULL)]]::pgmarket.charge[])\$q\$)"),
	'ERROR 22023', 'deduct_batch of a 2-D array through the proxy: 22023, as on a node');
is(q_proxy("SELECT t.run(\$q\$SELECT count(*) FROM pgmarket.deduct_batch(array_fill(ROW('$a0', 1000, 'm-batch', 0, NULL)::pgmarket.charge, ARRAY[60000]) || array_fill(ROW('$a1', 1000, 'm-batch', 0, NULL)::pgmarket.charge, ARRAY[60000]))\$q\$)"),
	'ERROR 22023', 'deduct_batch of 120,000 charges over two nodes through the proxy: 22023, as on a node');

# --- platform keys route to the owner's node -------------------------------

my $key = q_proxy(
	"SELECT api_key FROM pgmarket.create_api_key('$a1', 'gateway')");
like($key, qr/^sk_live_/, 'create_api_key through the proxy');
is(q_proxy("SELECT pgmarket.api_key_partition('$key') & 1"),
	'1', 'api_key_partition on the proxy names the owner\'s partition');
is( q_proxy("SELECT pgmarket.api_key_partition('$key')"),
	$nodes[1]->safe_psql(dbof($nodes[1]), "SELECT pgmarket.api_key_partition('$key')"),
	'api_key_partition: same value on the proxy as on a node');
is(q_proxy("SELECT user_id FROM pgmarket.verify_api_key('$key')"),
	$a1, 'verify_api_key through the proxy finds the owner');
is( q_proxy(
		"SELECT format('%s %s', user_id, available_balance) FROM pgmarket.charge_api_key('$key', 0.25, 'm-key', 3)"
	),
	"$a1 3.750000",
	'charge_api_key through the proxy charges the owner on the owner\'s node');
is( $nodes[1]->safe_psql(dbof($nodes[1]),
		"SELECT count(*) FROM pgmarket.ledger WHERE user_id = '$a1' AND model_id = 'm-key'"),
	'1',
	'the charge is on node 1');
is(q_proxy("SELECT t.run('SELECT pgmarket.charge_api_key(''sk_live_nope'', 1, ''m'')')"),
	'ERROR 28000', 'a malformed key: 28000 through the proxy');
(my $bad = $key) =~ s/.$/ substr($key, -1) eq 'A' ? 'B' : 'A' /e;
is(q_proxy("SELECT t.run('SELECT pgmarket.charge_api_key(''$bad'', 1, ''m'')')"),
	'ERROR 28000', 'a wrong key: 28000 through the proxy');
is(q_proxy("SELECT count(*) FROM pgmarket.verify_api_key('$bad')"),
	'0', 'verify_api_key of a wrong key: no row');

# --- the platform key through the client library: the sealed calls --------
# The library seals the key to the vault's public key (vault_public_key on
# any node: both nodes share one master key) and calls verify_api_key_sealed
# and charge_api_key_sealed, routed by the key's public part.
SKIP:
{
	my $ex = ($ENV{TESTDIR} // '.') . '/client/examples/platform_key.bin';
	skip 'client/examples are not built', 2 unless -x $ex;
	my ($out, $err);
	IPC::Run::run([ $ex, 'host=' . $proxy->host . ' port=' . $proxy->port . ' dbname=postgres' ],
		'>', \$out, '2>', \$err);
	is($? >> 8, 0, 'the client library\'s platform key example through the proxy')
	  or diag "$out\n$err";
	like($out // '', qr/charged 0\.75.*rate limit: allowed, 69 requests left.*over the daily limit.*after revocation/s,
		'sealed verify, charge and check_rate_limit through the proxy, on the owner\'s node');
}
is(q_proxy("SELECT t.run(\$q\$SELECT pgmarket.authenticate_sealed('user3', '\\x00')\$q\$)"),
	$nodes[0]->safe_psql(dbof($nodes[0]),
		"SELECT t.run(\$q\$SELECT pgmarket.authenticate_sealed('user3', '\\x00')\$q\$)"),
	'authenticate_sealed of a malformed blob through the proxy: as on a node');
is(q_proxy("SELECT pgmarket.api_key_partition(left('$key', 24)) = pgmarket.api_key_partition('$key')"),
	't', 'api_key_partition of the public part alone: the key\'s partition');

# --- projects, templates and change requests -------------------------------

my $pa0 = q_proxy("SELECT pgmarket.save_project('$a0', 'shop', 'web', dependencies => '{flask}')");
like($pa0, qr/^[0-9a-f-]{36}$/, 'save_project through the proxy');
is($nodes[ home($a0) ]->safe_psql(dbof($nodes[ home($a0) ]),
		"SELECT count(*) FROM pgmarket.projects WHERE id = '$pa0' AND user_id = '$a0'"),
	'1', 'the project is on its owner\'s node');
is($nodes[ 1 - home($a0) ]->safe_psql(dbof($nodes[ 1 - home($a0) ]),
		"SELECT count(*) FROM pgmarket.projects WHERE id = '$pa0'"),
	'0', 'and not on the other node');
is(q_proxy("SELECT format('%s %s %s', name, status, dependencies) FROM pgmarket.get_project('$a0', '$pa0')"),
	'shop active {flask}', 'get_project through the proxy reads it back');
is(q_proxy("SELECT string_agg(name, ',') FROM pgmarket.list_projects('$a0')"),
	'shop', 'list_projects through the proxy');
my $ma0 = q_proxy("SELECT pgmarket.request_modification('$a0', '$pa0', 'add a cart page')");
q_proxy("SELECT pgmarket.set_modification_status('$a0', '$ma0', 'approved')");
is(q_proxy("SELECT string_agg(format('%s %s', request, status), ',') FROM pgmarket.list_modifications('$a0', '$pa0')"),
	'add a cart page approved', 'change requests through the proxy');
is(q_proxy("SELECT t.run(\$q\$SELECT name FROM pgmarket.get_project('$a1', '$pa0')\$q\$)"),
	'ERROR PM002', 'another user\'s project through the proxy: PM002');
# an actor set on the proxy: the nodes trust it from pgm_forwarder's members
# (the superuser this test connects as is one)
for my $n (@nodes)
{
	$n->safe_psql(dbof($n),
		"DROP ROLE IF EXISTS pgm_forwarder; CREATE ROLE pgm_forwarder NOLOGIN;"
		  . " ALTER DATABASE " . dbof($n) . " SET pgmarket.proxy_role = 'pgm_forwarder'");
}
is(q_proxy("SET pgmarket.actor = '$a0'; SELECT t.run(\$q\$SELECT name FROM pgmarket.get_project('$a0', '$pa0')\$q\$)"),
	'shop', 'actor A through the proxy: A\'s project');
is(q_proxy("SET pgmarket.actor = '$a0'; SELECT t.run(\$q\$SELECT pgmarket.save_project('$a1', 'theirs', 'web')\$q\$)"),
	'ERROR 42501', 'actor A through the proxy: a project for B is 42501');
is(q_proxy("SET pgmarket.actor = '$a0'; SELECT t.run(\$q\$SELECT count(*) FROM pgmarket.list_projects('$a1')\$q\$)"),
	'ERROR 42501', 'actor A through the proxy: B\'s projects are 42501');
# the catalogue has no user: one node, partition 0's
is(q_proxy(q{SELECT pgmarket.save_template('fastapi-crud', 'api', '{"main.py": "..."}', tags => '{python}') IS NOT NULL}),
	't', 'save_template through the proxy');
q_proxy(q{SELECT pgmarket.save_template('fastapi-crud', 'api', '{"main.py": "v2"}')});
q_proxy(q{SELECT pgmarket.save_template('cli-tool', 'cli', '{}')});
is($nodes[0]->safe_psql(dbof($nodes[0]), 'SELECT string_agg(name, \',\' ORDER BY name) FROM pgmarket.templates'),
	'cli-tool,fastapi-crud', 'the templates are on partition 0\'s node, each name once');
is($nodes[1]->safe_psql(dbof($nodes[1]), 'SELECT count(*) FROM pgmarket.templates'),
	'0', 'and none on the other node');
is(q_proxy(q{SELECT files ->> 'main.py' FROM pgmarket.get_template('fastapi-crud')}),
	'v2', 'get_template through the proxy: the catalogue node\'s template');
is(q_proxy(q{SELECT string_agg(name, ',') FROM pgmarket.list_templates()}),
	'cli-tool,fastapi-crud', 'list_templates through the proxy: by name');
is(q_proxy(q{SELECT string_agg(name, ',') FROM pgmarket.list_templates('api')}),
	'fastapi-crud', 'list_templates of a category through the proxy');
is(q_proxy(q{SELECT t.run('SELECT name FROM pgmarket.get_template(''nope'')')}),
	'ERROR PM002', 'an unknown template through the proxy: PM002');

# --- cross-user views and checks: the merge over the nodes ----------------

my $merge = q{SELECT string_agg(format('%s %s %s %s', model_id, requests, tokens, cost), ', ' ORDER BY model_id)
                FROM (SELECT model_id, sum(requests) AS requests, sum(tokens) AS tokens, sum(cost) AS cost
                        FROM (VALUES %s) v(model_id, requests, tokens, cost) GROUP BY 1) s};
my @rows;
for my $n (@nodes)
{
	push @rows,
	  map { my @f = split /\|/; "('$f[0]', $f[1], $f[2], $f[3])" }
	  split /\n/,
	  $n->safe_psql(dbof($n),
		'SELECT model_id, requests, tokens, cost FROM pgmarket.model_usage');
}
(my $mq = $merge) =~ s/%s\) v/@{[join(', ', @rows)]}) v/;
my $expect_usage = q_proxy($mq);
like($expect_usage, qr/m-batch .*m-key .*m-seq/, 'usage on both nodes');
is( q_proxy(
		q{SELECT string_agg(format('%s %s %s %s', model_id, requests, tokens, cost), ', ' ORDER BY model_id) FROM pgmarket.model_usage}
	),
	$expect_usage,
	'model_usage through the proxy: the sum over the nodes');
is(q_proxy('SELECT count(*) FROM pgmarket.verify_ledger()'),
	'0', 'verify_ledger through the proxy: empty');
is(q_proxy('SELECT pgmarket.expire_reservations() >= 0'), 't',
	'expire_reservations on all nodes');
ok(q_proxy('SELECT pgmarket.seal_audit()') > 0, 'seal_audit on all nodes');
is(q_proxy('SELECT first_bad_id IS NULL AND checked > 0 FROM pgmarket.verify_audit()'),
	't', 'verify_audit over all nodes');
is(q_proxy('SELECT count(*) FROM pgmarket.audit_head()'), scalar(@nodes),
	'audit_head through the proxy: one head per node');
my $node_anchor = q_proxy(q{SELECT encode(int8send(last_id) || chain_hash, 'hex')
	FROM pgmarket.audit_head() ORDER BY last_id DESC LIMIT 1});
is(q_proxy("SELECT first_bad_id IS NULL FROM pgmarket.verify_audit(true, '\\x$node_anchor')"),
	't', 'verify_audit through the proxy: a node\'s anchor lies on its chain');
is(q_proxy(q{SELECT first_bad_id IS NOT NULL FROM pgmarket.verify_audit(false,
	int8send(1) || decode(repeat('ab', 32), 'hex'))}),
	't', 'verify_audit through the proxy: a foreign anchor lies on none');
{
	my $h = q_proxy(q{SELECT format('%s %s %s %s', h ->> 'version',
		h -> 'vault' ->> 'loaded', h -> 'connections' ->> 'max',
		jsonb_typeof(h -> 'problems')) FROM pgmarket.health() h});
	my $v = $nodes[0]->safe_psql(dbof($nodes[0]), q{SELECT pgmarket.health() ->> 'version'});
	is($h, "$v true 40 array",
		'health() through the proxy: merged over the nodes (max_connections summed)');
	my $ok = join(',', map { $_->safe_psql(dbof($_), q{SELECT pgmarket.health() ->> 'ok'}) } @nodes);
	is(q_proxy(q{SELECT pgmarket.health() ->> 'ok'}), ($ok eq 'true,true' ? 'true' : 'false'),
		'health() through the proxy: ok only when every node is');
}
is(q_proxy("SELECT pgmarket.authenticate('user3', 'wrong') IS NULL"),
	't', 'authenticate through the proxy: NULL for a wrong password');

# --- an application role, not a superuser --------------------------------
# PL/Proxy connects to the nodes as the calling role (the user mapping has no
# user), so the role exists on every node, with the same grants.

for my $n (@nodes, $proxy)
{
	$n->safe_psql(dbof($n), 'CREATE ROLE gateway LOGIN IN ROLE pgmarket_app');
}
sub q_app
{
	my ($sql) = @_;
	return $proxy->safe_psql(dbof($proxy), $sql, extra_params => [ '-U', 'gateway' ]);
}
is(q_app("SELECT available_balance FROM pgmarket.deduct_balance('$a0', 0.5, 'm-app')"),
	'1.500000', 'pgmarket_app through the proxy: deduct_balance');
is(q_app("SELECT string_agg(sqlstate, ',' ORDER BY ordinal) FROM pgmarket.deduct_batch(ARRAY[('$a0', 0.5, 'm-app', 0, NULL), ('$a1', 0.25, 'm-app', 0, NULL)]::pgmarket.charge[])"),
	'00000,00000', 'pgmarket_app through the proxy: deduct_batch');
is(q_app("SELECT requests FROM pgmarket.model_usage WHERE model_id = 'm-app'"),
	'3', 'pgmarket_app through the proxy: model_usage');
is(q_app("SELECT pgmarket.authenticate('user3', 'wrong') IS NULL"),
	't', 'pgmarket_app through the proxy: authenticate');
{
	my ($ret, $out, $err) = $proxy->psql(dbof($proxy), 'SELECT pgmarket.seal_audit()',
		extra_params => [ '-U', 'gateway' ]);
	like($err, qr/permission denied/, 'pgmarket_app may not seal the audit trail');
}

# --- through pgbouncer in transaction mode, in front of the proxy ------------

SKIP:
{
	my $pgbouncer = `command -v pgbouncer 2>/dev/null`;
	chomp $pgbouncer;
	skip 'pgbouncer is not installed', 12 unless $pgbouncer;

	my $dir = PostgreSQL::Test::Utils::tempdir_short();
	my $bport = PostgreSQL::Test::Cluster::get_free_port();
	my $user = getpwuid($<);
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
	print $users "\"$user\" \"\"\n";
	close $users;
	system($pgbouncer, '-d', '-q', "$dir/pgbouncer.ini") == 0
	  or die "pgbouncer did not start";
	for (1 .. 50)
	{
		last if -S "$dir/.s.PGSQL.$bport";
		select(undef, undef, undef, 0.1);
	}

	# one value of a statement sent through pgbouncer
	my $via_bouncer = sub {
		my ($sql) = @_;
		my ($out, $err);
		IPC::Run::run([ 'psql', '-X', '-qAt', '-h', $dir, '-p', $bport,
				'-d', 'postgres', '-c', $sql ],
			'>', \$out, '2>', \$err);
		chomp $out if defined $out;
		return $out // "ERROR: $err";
	};
	my $u = $via_bouncer->(
		"SELECT pgmarket.create_user('bouncer\@example.com', 'bouncer')");
	like($u, qr/^[0-9a-f-]{36}$/, 'create_user through pgbouncer and the proxy');
	$via_bouncer->("SELECT pgmarket.add_funds('$u', 1)");
	my $bkey = $via_bouncer->(
		"SELECT api_key FROM pgmarket.create_api_key('$u', 'through the pooler')");
	is( $via_bouncer->(
			"SELECT format('%s %s', available_balance, replayed) FROM pgmarket.charge_api_key('$bkey', 0.25, 'm-bouncer', 1, 'b-1')"
		),
		'0.750000 f',
		'charge_api_key through pgbouncer in transaction mode and the proxy');
	is( $via_bouncer->(
			"SELECT format('%s %s', available_balance, replayed) FROM pgmarket.charge_api_key('$bkey', 0.25, 'm-bouncer', 1, 'b-1')"
		),
		'0.750000 t',
		'its idempotent repeat replays through pgbouncer');
	my $home = (grep {
			$_->safe_psql(dbof($_),
				"SELECT count(*) FROM pgmarket.ledger WHERE model_id = 'm-bouncer'") eq '1'
		} @nodes);
	is($home, 1, 'the charge is on one node, once');

	# a key's rate limit holds through pgbouncer and the proxy: every call
	# of the key reaches its owner's node, where its limiter lives
	$via_bouncer->("SELECT pgmarket.set_tier('scale3', 3, NULL, 0)");
	is( join(',', map {
				$_->safe_psql(dbof($_),
					"SELECT requests_per_minute FROM pgmarket.tiers WHERE name = 'scale3'")
			} @nodes),
		'3,3',
		'set_tier through pgbouncer and the proxy sets the tier on every node');
	is( $via_bouncer->(
			"SELECT format('%s %s %s', requests_per_minute, tokens_per_minute IS NULL, burst) FROM pgmarket.tiers WHERE name = 'scale3'"),
		'3 t 0', 'and the proxy\'s tiers read them back');
	my $lu = $via_bouncer->(
		"SELECT pgmarket.create_user('limited\@example.com', 'limited')");
	$via_bouncer->("SELECT pgmarket.add_funds('$lu', 1)");
	my $lkey = $via_bouncer->(
		"SELECT api_key FROM pgmarket.create_api_key('$lu', 'limited', rate_limit_tier => 'scale3')");
	is( join(',', map {
				$via_bouncer->(
					"SELECT t.run(\$\$SELECT amount FROM pgmarket.charge_api_key('$lkey', 0.01, 'm-limit')\$\$)")
			} 1 .. 5),
		'0.010000,0.010000,0.010000,ERROR PM005,ERROR PM005',
		'a tier of 3 requests a minute admits 3 charges through pgbouncer and the proxy, then PM005');
	is( $via_bouncer->(
			"SELECT format('%s %s', allowed, remaining_requests) FROM pgmarket.check_rate_limit('$lkey')"),
		'f 0', 'check_rate_limit through pgbouncer and the proxy says so');
	is( join(',', map {
				$_->safe_psql(dbof($_),
					"SELECT count(*) FROM pgmarket.ledger WHERE model_id = 'm-limit'")
			} @nodes),
		(home($lu) == 0 ? '3,0' : '0,3'),
		'the three charges, on the owner\'s node only');

	# the client library, through its command-line tool, unchanged: the
	# tool is built by `make -C client` (scripts/test.sh runs the client
	# suite first); without it these checks are skipped
	SKIP:
	{
		my $cli = ($ENV{TESTDIR} // '.') . '/client/pgmarket';
		skip 'client/pgmarket is not built', 4 unless -x $cli;
		my $conninfo = "host=$dir port=$bport dbname=postgres";
		my $cli_run = sub {
			my ($out, $err);
			IPC::Run::run([ $cli, '-d', $conninfo, @_ ], '>', \$out, '2>', \$err);
			return ($? >> 8, $out // '', $err // '');
		};
		my ($rc, $out, $err) = $cli_run->('add-funds', $u, '2', '--key', 'cli-1');
		is($rc, 0, 'the pgmarket tool adds funds through pgbouncer and the proxy')
		  or diag $err;
		($rc, $out, $err) =
		  $cli_run->('charge', $u, '0.5', 'm-cli', '--tokens', '7', '--key', 'cli-2');
		like($out, qr/charge of 0\.500000, available 2\.250000/,
			'and charges, with the balance the node recorded');
		($rc, $out, $err) = $cli_run->('charge', $u, '100', 'm-cli');
		ok($rc != 0 && $err =~ /PM001, PGM_INSUFFICIENT_FUNDS/,
			'a node\'s PM001 reaches the library as PGM_INSUFFICIENT_FUNDS')
		  or diag $err;
		($rc, $out, $err) = $cli_run->('balance', $u);
		like($out, qr/available\s+2\.250000/, 'and its balance reads back');
	}

	# the library's pipelined batch (client/examples/charge_batch.c) through
	# pgbouncer and the proxy: BEGIN, a savepoint a charge and COMMIT on the
	# proxy, each charge on its owner's node, each with its own outcome
	SKIP:
	{
		my $ex = ($ENV{TESTDIR} // '.') . '/client/examples/charge_batch.bin';
		skip 'client/examples are not built', 3 unless -x $ex;
		my ($out, $err);
		IPC::Run::run([ $ex, "host=$dir port=$bport dbname=postgres" ],
			'>', \$out, '2>', \$err);
		is($? >> 8, 0, 'pgm_deduct_batch through pgbouncer and the proxy')
		  or diag "$out\n$err";
		like($out // '',
			qr/refused: PM001 PM002 22023\n97 applied, 1 of them replayed\n.*available 0\.040000/s,
			'each charge of the batch with its own outcome, as on one node');
		is( join(',', sort map {
					$_->safe_psql(dbof($_),
						"SELECT count(*) FROM pgmarket.ledger WHERE model_id = 'gpt-4o-mini'")
				} @nodes),
			'0,96', 'the batch\'s 96 entries, on the owner\'s node only, once each');
	}

	open(my $pidf, '<', "$dir/pgbouncer.pid") or die $!;
	my $pid = <$pidf>;
	close $pidf;
	chomp $pid;
	kill 'TERM', $pid;
}

# --- a data node down -------------------------------------------------------

my $before = q_proxy(
	"SELECT available_balance FROM pgmarket.get_balance('$a1')");
$nodes[1]->stop('fast');
{
	my ($ret, $out, $err) = $proxy->psql('postgres',
		"SELECT pgmarket.deduct_balance('$a1', 0.1, 'm-down')");
	isnt($ret, 0, 'a user of the stopped node: the call fails');
	like($err, qr/ERROR:.*\[pgm_data1\].*(connect|connection)/i,
		'with an error that names the node and says it cannot be reached')
	  or diag $err;
}
is( q_proxy(
		"SELECT available_balance FROM pgmarket.deduct_balance('$a0', 0.5, 'm-down', 0, 'down1')"
	),
	'0.500000',
	'a user of the other node goes on');
$nodes[1]->start;
is(q_proxy("SELECT available_balance FROM pgmarket.get_balance('$a1')"),
	$before, 'node back: its user\'s balance is what it was');
is( q_proxy(
		"SELECT available_balance FROM pgmarket.deduct_balance('$a1', 0.25, 'm-down', 0, 'down2')"
	),
	'3.250000',
	'and its users are charged again');
is(q_proxy("SELECT count(*) FROM pgmarket.ledger_entries('$a0') WHERE idempotency_key = 'down1'"),
	'1', 'the charge made while the other node was down is there');
is(q_proxy('SELECT count(*) FROM pgmarket.verify_ledger()'),
	'0', 'verify_ledger after the restart: empty');

# --- a user made from a hash, then erased, through the proxy -----------------

my $hashed = 'd0000000-0000-4000-8000-0000000000e1';
is( q_proxy(
		"SELECT pgmarket.create_user_hashed('hashed\@example.com', 'hashed_user',"
		  . " '\$2b\$04\$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e', id => '$hashed')"),
	$hashed, 'create_user_hashed through the proxy');
is(q_proxy("SELECT pgmarket.authenticate('hashed_user', 'correct horse')"),
	$hashed, 'the bcrypt hash logs in through the proxy');
is(q_proxy("SELECT count(*) FROM pgmarket_proxy.directory WHERE user_id = '$hashed'"),
	'1', 'its email and username are claimed in the directory');
q_proxy("SELECT pgmarket.erase_user('$hashed')");
is(q_proxy("SELECT count(*) FROM pgmarket_proxy.directory WHERE user_id = '$hashed'"),
	'0', 'erase_user through the proxy releases them');
is( $nodes[ home($hashed) ]->safe_psql(dbof($nodes[ home($hashed) ]),
		"SELECT email FROM pgmarket.users WHERE id = '$hashed'"),
	"$hashed\@erased.invalid", 'and the user\'s node holds the tombstone');

$proxy->stop;
$_->stop for @nodes;
done_testing();
