# ALTER EXTENSION pgmarket UPDATE from every installed older version must
# yield the same schema as a fresh install of the default version, and keep
# the data: the ledger of a user made under the old version still verifies,
# balances are unchanged and idempotency keys still replay.
#
# The schema is compared through a catalog description of everything in
# schema pgmarket (columns by name, defaults, constraints, indexes, views,
# functions with their definitions and privileges, triggers, policies,
# sequences, the extension's members and its pg_dump configuration).
# With only one version installed there is nothing to update from; the test
# then only checks that UPDATE on the default version is a no-op.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->start;

my $default = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'pgmarket'");
my @sources = split /\n/, $node->safe_psql(
	'postgres', qq{
	SELECT source FROM pg_extension_update_paths('pgmarket')
	 WHERE target = '$default' AND source <> target AND path IS NOT NULL
	 ORDER BY source});
note("default version $default; update paths from: @sources");

my $describe = q{
SELECT kind || ' ' || name || ': ' || def FROM (
  SELECT 'schema' AS kind, n.nspname AS name, coalesce(n.nspacl::text, '') AS def
    FROM pg_namespace n WHERE n.nspname = 'pgmarket'
  UNION ALL
  SELECT 'relation', c.relname,
         c.relkind::text || ' ' || coalesce(array_to_string(c.reloptions, ','), '')
         || ' acl=' || coalesce(c.relacl::text, '')
         || ' rls=' || c.relrowsecurity || ' force=' || c.relforcerowsecurity
    FROM pg_class c WHERE c.relnamespace = 'pgmarket'::regnamespace
  UNION ALL
  SELECT 'column', c.relname || '.' || a.attname,
         format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
         || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
         || ' acl=' || coalesce(a.attacl::text, '')
    FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
   WHERE c.relnamespace = 'pgmarket'::regnamespace
  UNION ALL
  SELECT 'constraint', co.conrelid::regclass::text || '.' || co.conname,
         pg_get_constraintdef(co.oid)
    FROM pg_constraint co WHERE co.connamespace = 'pgmarket'::regnamespace
  UNION ALL
  SELECT 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
   WHERE c.relnamespace = 'pgmarket'::regnamespace
  UNION ALL
  SELECT 'view', c.relname, pg_get_viewdef(c.oid)
    FROM pg_class c
   WHERE c.relnamespace = 'pgmarket'::regnamespace AND c.relkind IN ('v', 'm')
  UNION ALL
  SELECT 'function', p.oid::regprocedure::text,
         pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl::text, '')
    FROM pg_proc p WHERE p.pronamespace = 'pgmarket'::regnamespace AND p.prokind <> 'a'
  UNION ALL
  SELECT 'aggregate', p.oid::regprocedure::text, coalesce(p.proacl::text, '')
    FROM pg_proc p WHERE p.pronamespace = 'pgmarket'::regnamespace AND p.prokind = 'a'
  UNION ALL
  SELECT 'type', t.typname, t.typtype::text || ' acl=' || coalesce(t.typacl::text, '')
    FROM pg_type t WHERE t.typnamespace = 'pgmarket'::regnamespace
  UNION ALL
  SELECT 'enum', e.enumtypid::regtype::text, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
    FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
   WHERE t.typnamespace = 'pgmarket'::regnamespace
   GROUP BY e.enumtypid
  UNION ALL
  SELECT 'trigger', tg.tgrelid::regclass::text || '.' || tg.tgname,
         pg_get_triggerdef(tg.oid) || ' enabled=' || tg.tgenabled::text
    FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
   WHERE NOT tg.tgisinternal AND c.relnamespace = 'pgmarket'::regnamespace
  UNION ALL
  SELECT 'policy', po.tablename || '.' || po.policyname,
         po.permissive || ' ' || po.roles::text || ' ' || po.cmd || ' using '
         || coalesce(po.qual, '') || ' check ' || coalesce(po.with_check, '')
    FROM pg_policies po WHERE po.schemaname = 'pgmarket'
  UNION ALL
  SELECT 'sequence', s.seqrelid::regclass::text,
         format_type(s.seqtypid, NULL) || ' ' || s.seqstart || ' ' || s.seqincrement
         || ' ' || s.seqmax || ' ' || s.seqmin || ' ' || s.seqcache || ' ' || s.seqcycle::text
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
   WHERE c.relnamespace = 'pgmarket'::regnamespace
  UNION ALL
  SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid), ''
    FROM pg_depend d
   WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
     AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgmarket')
  UNION ALL
  SELECT 'dumped', cfg.rel::regclass::text, coalesce(cfg.cond, '')
    FROM pg_extension e,
         unnest(e.extconfig, e.extcondition) AS cfg(rel, cond)
   WHERE e.extname = 'pgmarket'
  UNION ALL
  SELECT 'event trigger', evtname, evtevent || ' ' || evtenabled::text
    FROM pg_event_trigger
) x
ORDER BY 1};

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION pgmarket');
my $fresh = $node->safe_psql('fresh', $describe);
isnt($fresh, '', 'the fresh install describes itself');

# UPDATE on the default version changes nothing.
my ($ret, $stdout, $stderr) = $node->psql('fresh', 'ALTER EXTENSION pgmarket UPDATE');
is($ret, 0, "ALTER EXTENSION pgmarket UPDATE on $default succeeds");
is($node->safe_psql('fresh', $describe), $fresh, 'and changes nothing');

my $u = '00000000-0000-0000-0000-0000000000a1';
my $i = 0;
for my $from (@sources)
{
	my $db = 'from_' . $i++;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION pgmarket VERSION '$from'");

	# data made under the old version, through the 0.1.0 API
	$node->safe_psql(
		$db, qq{
		SELECT pgmarket.create_user('old\@example.com', 'olduser', NULL, '{user}', '$u');
		SELECT pgmarket.add_funds('$u', 100, 'old-deposit');
		SELECT pgmarket.deduct_balance('$u', 12.345678, 'model-old', 10, 'old-charge');
		SELECT pgmarket.reserve('$u', 5, '1 day', 'old-hold');
	});
	my $balance_before = $node->safe_psql($db,
		"SELECT total_balance, spent_balance, reserved_balance, available_balance"
		  . " FROM pgmarket.get_balance('$u')");

	($ret, $stdout, $stderr) = $node->psql($db, 'ALTER EXTENSION pgmarket UPDATE');
	is($ret, 0, "ALTER EXTENSION pgmarket UPDATE from $from") or diag($stderr);
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'pgmarket'"),
		$default, "from $from: now at $default");

	my $updated = $node->safe_psql($db, $describe);
	is($updated, $fresh, "from $from: the same schema as a fresh install");
	if ($updated ne $fresh)
	{
		my %f = map { ($_ => 1) } split /\n/, $fresh;
		my %g = map { ($_ => 1) } split /\n/, $updated;
		diag("only in the fresh install: $_") for grep { !$g{$_} } sort keys %f;
		diag("only after the update: $_")     for grep { !$f{$_} } sort keys %g;
	}

	is( $node->safe_psql($db,
			"SELECT total_balance, spent_balance, reserved_balance, available_balance"
			  . " FROM pgmarket.get_balance('$u')"),
		$balance_before,
		"from $from: the balance is unchanged");
	is($node->safe_psql($db, 'SELECT * FROM pgmarket.verify_ledger()'),
		'', "from $from: verify_ledger() is empty");
	is( $node->safe_psql(
			$db, qq{
		SELECT replayed, available_balance
		  FROM pgmarket.deduct_balance('$u', 12.345678, 'model-old', 10, 'old-charge')}),
		't|87.654322',
		"from $from: an old idempotency key replays");
	is( $node->safe_psql(
			$db, qq{
		SELECT replayed, available_balance
		  FROM pgmarket.deduct_balance('$u', 1, 'model-new', 1, 'new-charge')}),
		'f|81.654322',
		"from $from: a new charge applies");
}

$node->stop;
done_testing();
