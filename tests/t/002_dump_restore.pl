# pg_dump / pg_restore of a database that uses pgmarket, and the extension's
# life cycle.
#
# The extension registers its tables and sequences with
# pg_extension_config_dump, so a dump carries users, balances, ledger,
# reservations, the roles added after install and the sequence positions.
# After a restore (custom and plain format) the data is the same row for row,
# verify_ledger() is empty, idempotency keys still replay, new entries and
# holds do not collide with restored ones, and the ledger is still
# append-only.  ALTER EXTENSION pgmarket UPDATE is a no-op on the default
# version; DROP EXTENSION / CREATE EXTENSION works, the cluster-wide roles
# surviving the drop.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;

my $default_version = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'pgmarket'");

my $alice = '00000000-0000-0000-0000-00000000000a';
my $bob   = '00000000-0000-0000-0000-00000000000b';
my $carol = '00000000-0000-0000-0000-00000000000c';

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src',      'CREATE EXTENSION pgmarket');
my $entry_c1 = $node->safe_psql(
	'src', qq{
	SELECT pgmarket.create_user('alice\@example.com', 'alice', 'correct horse', '{user}', '$alice');
	SELECT pgmarket.create_user('bob\@example.com', 'Bob', NULL, '{user,developer}', '$bob');
	SELECT pgmarket.create_user('carol\@example.com', 'carol', NULL, '{user}', '$carol');
	SELECT pgmarket.add_funds('$alice', 100, 'dep-a1', 'opening');
	SELECT pgmarket.add_funds('$bob', 50.000001);
	SELECT pgmarket.add_funds('$carol', 10);
	SELECT pgmarket.deduct_balance('$bob', 0.000001, 'model-b', 1);
	SELECT pgmarket.deactivate_user('$carol');
	INSERT INTO pgmarket.roles (name, description) VALUES ('moderator', 'added after install');
	SELECT entry_id FROM pgmarket.deduct_balance('$alice', 12.5, 'model-a', 1000, 'chg-a1');
});
$entry_c1 = (split /\n/, $entry_c1)[-1];
$node->safe_psql(
	'src', qq{
	SELECT pgmarket.refund('$alice', $entry_c1, 2.5, 'ref-a1');
	SELECT pgmarket.reserve('$alice', 20, '1 day', 'hold-a1');
	SELECT pgmarket.settle('$alice', pgmarket.reserve('$alice', 5), 4, 'model-a', 40);
	SELECT pgmarket.release('$bob', pgmarket.reserve('$bob', 1));
});
is($node->safe_psql('src', 'SELECT * FROM pgmarket.verify_ledger()'),
	'', 'source ledger is consistent');

# Everything that must survive, in a stable order.
my %snapshot_sql = (
	accounts => 'SELECT id, email, username, password_hash, roles, created_at,'
	  . ' last_login_at, deleted_at FROM pgmarket.accounts ORDER BY id',
	users    => 'SELECT * FROM pgmarket.users ORDER BY id',
	balances => 'SELECT * FROM pgmarket.balances ORDER BY user_id',
	ledger   => 'SELECT * FROM pgmarket.ledger ORDER BY user_id, entry_id',
	reservations => 'SELECT * FROM pgmarket.reservations ORDER BY reservation_id',
	roles    => 'SELECT * FROM pgmarket.roles ORDER BY name',
	get_balance => "SELECT (pgmarket.get_balance(u)).* FROM unnest(ARRAY['$alice', '$bob']::uuid[]) u",
	model_usage => 'SELECT * FROM pgmarket.model_usage ORDER BY model_id',
	sequences =>
	  'SELECT last_value, is_called FROM pgmarket.ledger_entry_id_seq'
	  . ' UNION ALL SELECT last_value, is_called FROM pgmarket.reservation_id_seq',);

sub snapshot
{
	my $db = shift;
	return { map { ($_ => $node->safe_psql($db, $snapshot_sql{$_})) } keys %snapshot_sql };
}
my $before = snapshot('src');
like($before->{roles}, qr/moderator/, 'source has the added role');
is(scalar(my @l = split /\n/, $before->{ledger}), 7, 'source has 7 ledger entries');

my $tmp = PostgreSQL::Test::Utils::tempdir;

# Custom format, pg_restore.
command_ok(
	[ 'pg_dump', '-Fc', '-f', "$tmp/src.dump", '-d', $node->connstr('src') ],
	'pg_dump -Fc');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
command_ok(
	[
		'pg_restore', '--exit-on-error', '-d', $node->connstr('dst'),
		"$tmp/src.dump"
	],
	'pg_restore');

# Plain format, psql.
command_ok(
	[ 'pg_dump', '-f', "$tmp/src.sql", '-d', $node->connstr('src') ],
	'pg_dump plain');
$node->safe_psql('postgres', 'CREATE DATABASE dst_plain');
command_ok(
	[
		'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d',
		$node->connstr('dst_plain'), '-f', "$tmp/src.sql"
	],
	'restore of the plain dump');

for my $db ('dst', 'dst_plain')
{
	my $after = snapshot($db);
	for my $what (sort keys %snapshot_sql)
	{
		is($after->{$what}, $before->{$what}, "$db: $what survived the dump");
	}
	is($node->safe_psql($db, 'SELECT * FROM pgmarket.verify_ledger()'),
		'', "$db: verify_ledger() is empty");
}

# The restored database works like the original.
my $max_entry = $node->safe_psql('dst', 'SELECT max(entry_id) FROM pgmarket.ledger');
my $max_res   = $node->safe_psql('dst',
	'SELECT max(reservation_id) FROM pgmarket.reservations');
is( $node->safe_psql(
		'dst', qq{
	SELECT entry_id = $entry_c1, replayed, available_balance
	  FROM pgmarket.deduct_balance('$alice', 12.5, 'model-a', 1000, 'chg-a1')}),
	't|t|87.500000',
	'dst: a restored idempotency key replays its entry and its balance');
is( $node->safe_psql(
		'dst', qq{
	SELECT entry_id > $max_entry, replayed, available_balance
	  FROM pgmarket.deduct_balance('$alice', 6, 'model-a', 10, 'chg-a2')}),
	't|f|60.000000',
	'dst: a new charge gets a new entry id');
is( $node->safe_psql(
		'dst', qq{
	SELECT entry_id > $max_entry, replayed, available_balance
	  FROM pgmarket.deduct_balance('$bob', 1, 'model-b', 10)}),
	't|f|49.000000',
	'dst: so does a charge of another user');
is( $node->safe_psql('dst',
		"SELECT pgmarket.reserve('$bob', 1) > $max_res"),
	't', 'dst: a new hold gets a new reservation id');
is( $node->safe_psql(
		'dst', qq{
	SELECT kind, amount, available_balance
	  FROM pgmarket.settle('$alice',
	         (SELECT reservation_id FROM pgmarket.reservations
	           WHERE idempotency_key = 'hold-a1'), 20, 'model-a', 5)}),
	'charge|20.000000|60.000000',
	'dst: a restored hold can be settled');
is( $node->safe_psql('dst',
		"SELECT pgmarket.authenticate('alice', 'correct horse') = '$alice'"),
	't', 'dst: a restored password verifies');

my ($ret, $stdout, $stderr) = $node->psql('dst',
	"UPDATE pgmarket.ledger SET amount = 1 WHERE entry_id = $entry_c1",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'dst: the ledger refuses an UPDATE');
like($stderr, qr/55000/, 'dst: with SQLSTATE 55000');
($ret, $stdout, $stderr) = $node->psql('dst', 'TRUNCATE pgmarket.ledger',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/55000/, 'dst: the ledger refuses a TRUNCATE with 55000');
is($node->safe_psql('dst', 'SELECT * FROM pgmarket.verify_ledger()'),
	'', 'dst: verify_ledger() is empty after the new entries');

# ALTER EXTENSION ... UPDATE on the current version changes nothing.
my $ddl_before = $node->safe_psql(
	'src', q{
	SELECT pg_describe_object(classid, objid, objsubid)
	  FROM pg_depend
	 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
	   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgmarket')
	 ORDER BY 1});
($ret, $stdout, $stderr) = $node->psql('src', 'ALTER EXTENSION pgmarket UPDATE');
is($ret, 0, 'ALTER EXTENSION pgmarket UPDATE succeeds');
like($stderr, qr/already installed/, 'and says the version is already installed');
is($node->safe_psql('src', "SELECT extversion FROM pg_extension WHERE extname = 'pgmarket'"),
	$default_version, "the version stays $default_version");
is( $node->safe_psql(
		'src', q{
	SELECT pg_describe_object(classid, objid, objsubid)
	  FROM pg_depend
	 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
	   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgmarket')
	 ORDER BY 1}),
	$ddl_before,
	'the extension has the same members');
my $after = snapshot('src');
is_deeply($after, $before, 'and the same data');

# DROP EXTENSION / CREATE EXTENSION.
$node->safe_psql('src', 'DROP EXTENSION pgmarket');
# (the schema that CREATE EXTENSION created stays: it is not a member)
is( $node->safe_psql(
		'src', q{
	SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'pgmarket'::regnamespace)
	     + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgmarket'::regnamespace)
	     + (SELECT count(*) FROM pg_type WHERE typnamespace = 'pgmarket'::regnamespace)}),
	'0',
	'DROP EXTENSION drops every object of the extension');
is( $node->safe_psql(
		'src', q{
	SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles
	 WHERE rolname LIKE 'pgmarket\_%'}),
	'pgmarket_admin,pgmarket_app,pgmarket_auditor,pgmarket_keyreader',
	'the cluster-wide roles survive DROP EXTENSION');
$node->safe_psql('src', 'CREATE EXTENSION pgmarket');
is( $node->safe_psql(
		'src', qq{
	SELECT pgmarket.create_user('alice\@example.com', 'alice', NULL, '{user}', '$alice');
	SELECT (pgmarket.add_funds('$alice', 3)).available_balance;
	SELECT (pgmarket.deduct_balance('$alice', 1, 'model-a')).available_balance;
	SELECT count(*) FROM pgmarket.ledger;
	SELECT count(*) FROM pgmarket.verify_ledger();}),
	"$alice\n3.000000\n2.000000\n2\n0",
	'CREATE EXTENSION again: a fresh, working ledger');
is($node->safe_psql('src', 'SELECT count(*) FROM pgmarket.roles'),
	'4', 'with the default roles only');

# A second database in the same cluster, the roles already existing.
$node->safe_psql('postgres', 'CREATE DATABASE second');
$node->safe_psql('second', 'CREATE EXTENSION pgmarket');
is($node->safe_psql('second', "SELECT extversion FROM pg_extension WHERE extname = 'pgmarket'"),
	$default_version, 'CREATE EXTENSION in a second database');

$node->stop;
done_testing();
