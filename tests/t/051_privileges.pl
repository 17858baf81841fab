# The privilege matrix: what pgmarket_app, pgmarket_keyreader,
# pgmarket_auditor, pgmarket_admin and a role with none of them hold on every
# table, view, sequence and function of schema pgmarket, compared with the
# one expected table in tests/privileges.txt.  The catalog is read through
# has_*_privilege, so PUBLIC grants and role membership count; an object
# without a line in the table fails the test until it is classified, and so
# does a line for an object that is gone.
#
# Then the denials that matter are tried for real, as each role (SET ROLE):
# the application reading ciphertexts, key hashes or password hashes,
# writing the ledger, balances or the audit trail, calling the key and audit
# administration or import_user, reading a provider key without
# pgmarket_keyreader; and a few acts that must work, so that a denial is
# known to come from the privilege and not from a broken fixture.

use strict;
use warnings;

use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $expected_file = dirname(__FILE__) . '/../privileges.txt';
my @roles = qw(pgmarket_app pgmarket_keyreader pgmarket_auditor pgmarket_admin
  no_pgmarket_role);

my $node = PostgreSQL::Test::Cluster->new('privileges');
$node->init;
my $keyfile = $node->data_dir . '/privileges.key';
open(my $fh, '>', $keyfile) or die "cannot write $keyfile: $!";
print $fh '1:' . ('4d' x 32) . "\n";
close($fh);
chmod(0600, $keyfile) or die "chmod $keyfile: $!";
$node->append_conf('postgresql.conf', "pgmarket.master_key_file = 'privileges.key'\n");
$node->start;

my $uid = '41000000-0000-4000-8000-000000000001';
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION pgmarket;
	CREATE ROLE no_pgmarket_role;
	SELECT pgmarket.create_user('priv\@example.com', 'priv', id => '$uid');
	SELECT pgmarket.add_funds('$uid', 10);
	SELECT pgmarket.put_provider_key('$uid', 'openai', 'sk-041-0123456789');
});

# --- the matrix --------------------------------------------------------------

my $role_list = join(', ',
	map { "($_->[0], '$_->[1]')" } map { [ $_ + 1, $roles[$_] ] } 0 .. $#roles);
my $actual = $node->safe_psql(
	'postgres', qq{
WITH roles(ord, r) AS (VALUES $role_list),
objs AS (
	SELECT 'schema' AS kind, 'pgmarket' AS name, 'pgmarket'::regnamespace::oid AS oid
	UNION ALL
	SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view'
	                      WHEN 'm' THEN 'view' ELSE 'table' END,
	       c.relname, c.oid
	FROM pg_class c
	WHERE c.relnamespace = 'pgmarket'::regnamespace
	  AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
	UNION ALL
	SELECT CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END, p.proname, p.oid
	FROM pg_proc p WHERE p.pronamespace = 'pgmarket'::regnamespace),
cells AS (
	SELECT o.kind, o.name, rl.ord, coalesce(nullif(CASE
		WHEN o.kind = 'schema' THEN concat_ws(',',
			CASE WHEN has_schema_privilege(rl.r, o.oid, 'USAGE') THEN 'usage' END,
			CASE WHEN has_schema_privilege(rl.r, o.oid, 'CREATE') THEN 'create' END)
		WHEN o.kind IN ('function', 'procedure') THEN
			CASE WHEN has_function_privilege(rl.r, o.oid, 'EXECUTE') THEN 'execute' END
		WHEN o.kind = 'sequence' THEN concat_ws(',', VARIADIC ARRAY(
			SELECT lower(p) FROM unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) WITH ORDINALITY u(p, n)
			WHERE has_sequence_privilege(rl.r, o.oid, p) ORDER BY n))
		ELSE concat_ws(',', VARIADIC ARRAY(
			SELECT CASE WHEN has_table_privilege(rl.r, o.oid, p) THEN lower(p)
			            ELSE lower(p) || '(' ||
			                 (SELECT string_agg(a.attname, ',' ORDER BY a.attnum)
			                  FROM pg_attribute a
			                  WHERE a.attrelid = o.oid AND a.attnum > 0 AND NOT a.attisdropped
			                    AND has_column_privilege(rl.r, o.oid, a.attname, p)) || ')'
			       END
			FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
			                  'REFERENCES', 'TRIGGER']) WITH ORDINALITY u(p, n)
			WHERE has_table_privilege(rl.r, o.oid, p)
			   OR (p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
			       AND has_any_column_privilege(rl.r, o.oid, p))
			ORDER BY n))
		END, ''), '-') AS cell
	FROM objs o, roles rl)
SELECT kind || ' ' || name || ' | ' || string_agg(cell, ' | ' ORDER BY ord)
FROM cells GROUP BY kind, name ORDER BY kind, name});

my (%expected, %seen);
for my $line (split /\n/, slurp_file($expected_file))
{
	next if $line =~ /^\s*(#|$)/;
	my ($object) = $line =~ /^(\S+ \S+) \|/
	  or die "malformed line in $expected_file: $line";
	die "$object has two lines in $expected_file" if exists $expected{$object};
	$expected{$object} = $line;
}
my @wrong;
for my $line (split /\n/, $actual)
{
	my ($object) = $line =~ /^(\S+ \S+) \|/;
	push @wrong, "two signatures under one name: $object" if $seen{$object}++;
	if (!exists $expected{$object})
	{
		push @wrong, "not classified in tests/privileges.txt: $line";
	}
	elsif ($expected{$object} ne $line)
	{
		push @wrong, "expected: $expected{$object}\n  catalog: $line";
	}
}
push @wrong, "in tests/privileges.txt but not in the schema: $expected{$_}"
  for grep { !$seen{$_} } sort keys %expected;
is(scalar(@wrong), 0,
	sprintf('the catalog matches the expected privileges (%d objects x %d roles)',
		scalar(keys %seen), scalar(@roles)))
  or diag(join("\n", @wrong));

# --- the acts ------------------------------------------------------------------

# Run SQL as ROLE; returns the SQLSTATE it ended in, or 'ok'.
sub act
{
	my ($role, $sql) = @_;
	my ($stdout, $stderr);
	$node->psql(
		'postgres', "SET ROLE $role;\n$sql",
		stdout        => \$stdout,
		stderr        => \$stderr,
		on_error_stop => 1,
		extra_params  => [ '-v', 'VERBOSITY=verbose' ]);
	return $stderr =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : ($stderr eq '' ? 'ok' : $stderr);
}

my $import = "SELECT pgmarket.import_user('41000000-0000-4000-8000-0000000000ff', "
  . "'imp\@example.com', 'imported')";
my @acts = (
	# the application role
	[ 'pgmarket_app', 'SELECT ciphertext FROM pgmarket.provider_keys',        '42501' ],
	[ 'pgmarket_app', 'SELECT count(*) FROM pgmarket.provider_keys',          '42501' ],
	[ 'pgmarket_app', 'SELECT hash FROM pgmarket.api_keys',                   '42501' ],
	[ 'pgmarket_app', 'SELECT password_hash FROM pgmarket.accounts',          '42501' ],
	[ 'pgmarket_app', 'SELECT idempotency_key FROM pgmarket.ledger',          '42501' ],
	[ 'pgmarket_app', "INSERT INTO pgmarket.ledger (entry_id, user_id, kind, amount, available) VALUES (999, '$uid', 'deposit', 1000000, 1000000)", '42501' ],
	[ 'pgmarket_app', 'UPDATE pgmarket.balances SET total = total + 1000000', '42501' ],
	[ 'pgmarket_app', 'DELETE FROM pgmarket.reservations',                    '42501' ],
	[ 'pgmarket_app', 'TRUNCATE pgmarket.ledger',                             '42501' ],
	[ 'pgmarket_app', 'SELECT * FROM pgmarket.audit_log',                     '42501' ],
	[ 'pgmarket_app', "INSERT INTO pgmarket.roles (name) VALUES ('root')",    '42501' ],
	[ 'pgmarket_app', "SELECT setval('pgmarket.ledger_entry_id_seq', 1)",     '42501' ],
	[ 'pgmarket_app', 'CREATE TABLE pgmarket.mine (id int)',                  '42501' ],
	[ 'pgmarket_app', 'SELECT pgmarket.rotate_master_key()',                  '42501' ],
	[ 'pgmarket_app', 'CALL pgmarket.rotate_all_keys()',                      '42501' ],
	[ 'pgmarket_app', 'SELECT pgmarket.seal_audit()',                         '42501' ],
	[ 'pgmarket_app', "SELECT pgmarket.enable_audit('pgmarket.ledger')",      '42501' ],
	[ 'pgmarket_app', "SELECT pgmarket.disable_audit('pgmarket.accounts')",   '42501' ],
	[ 'pgmarket_app', 'SELECT pgmarket.purge_audit(now())',                   '42501' ],
	[ 'pgmarket_app', 'SELECT * FROM pgmarket.verify_audit()',                '42501' ],
	[ 'pgmarket_app', $import,                                                '42501' ],
	[ 'pgmarket_app', "SELECT pgmarket.get_provider_key('$uid', 'openai')",   '42501' ],
	[ 'pgmarket_app', "SELECT * FROM pgmarket.get_balance('$uid')",           'ok' ],
	[ 'pgmarket_app', 'SELECT count(*) FROM pgmarket.users',                  'ok' ],
	# the key reader
	[ 'pgmarket_keyreader', "SELECT pgmarket.get_provider_key('$uid', 'openai')", 'ok' ],
	[ 'pgmarket_keyreader', 'SELECT ciphertext FROM pgmarket.provider_keys',  '42501' ],
	[ 'pgmarket_keyreader', "SELECT * FROM pgmarket.get_balance('$uid')",     '42501' ],
	[ 'pgmarket_keyreader', "SELECT * FROM pgmarket.list_provider_keys('$uid')", '42501' ],
	# the auditor
	[ 'pgmarket_auditor', 'SELECT count(*) FROM pgmarket.ledger',             'ok' ],
	[ 'pgmarket_auditor', 'SELECT * FROM pgmarket.verify_ledger()',           'ok' ],
	[ 'pgmarket_auditor', 'SELECT * FROM pgmarket.verify_audit()',            'ok' ],
	[ 'pgmarket_auditor', 'SELECT ciphertext FROM pgmarket.provider_keys',    '42501' ],
	[ 'pgmarket_auditor', 'SELECT password_hash FROM pgmarket.accounts',      '42501' ],
	[ 'pgmarket_auditor', "SELECT * FROM pgmarket.add_funds('$uid', 1)",      '42501' ],
	[ 'pgmarket_auditor', "SELECT pgmarket.get_provider_key('$uid', 'openai')", '42501' ],
	[ 'pgmarket_auditor', 'DELETE FROM pgmarket.ledger',                      '42501' ],
	[ 'pgmarket_auditor', 'SELECT pgmarket.seal_audit()',                     '42501' ],
	# the administrator
	[ 'pgmarket_admin', 'SELECT ciphertext FROM pgmarket.provider_keys',      '42501' ],
	[ 'pgmarket_admin', 'SELECT hash FROM pgmarket.api_keys',                 '42501' ],
	[ 'pgmarket_admin', "INSERT INTO pgmarket.ledger (entry_id, user_id, kind, amount, available) VALUES (999, '$uid', 'deposit', 1000000, 1000000)", '42501' ],
	[ 'pgmarket_admin', 'DELETE FROM pgmarket.audit_log',                     '42501' ],
	[ 'pgmarket_admin', 'TRUNCATE pgmarket.audit_seals',                      '42501' ],
	[ 'pgmarket_admin', 'SELECT pgmarket.purge_audit(now())',                 '42501' ],
	[ 'pgmarket_admin', 'SELECT pgmarket.seal_audit() >= 0',                  'ok' ],
	[ 'pgmarket_admin', 'SELECT pgmarket.rotate_master_key()',                'ok' ],
	# nobody
	[ 'no_pgmarket_role', "SELECT * FROM pgmarket.get_balance('$uid')",       '42501' ],
	[ 'no_pgmarket_role', 'SELECT pgmarket.vault_public_key()',               '42501' ],
	[ 'no_pgmarket_role', 'SELECT count(*) FROM pgmarket.users',              '42501' ],
	[ 'no_pgmarket_role', 'SELECT count(*) FROM pgmarket.model_usage',        '42501' ],);

for my $a (@acts)
{
	my ($role, $sql, $want) = @$a;
	is(act($role, $sql), $want, "$role: $sql");
}

# the denied acts changed nothing
is( $node->safe_psql(
		'postgres',
		"SELECT (SELECT count(*) FROM pgmarket.ledger) || ' ' || (SELECT total FROM pgmarket.balances WHERE user_id = '$uid') || ' ' || (SELECT count(*) FROM pgmarket.accounts)"
	),
	'1 10000000 1',
	'the ledger, the balance and the accounts are as before');

$node->stop;
done_testing();
