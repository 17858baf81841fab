# A crash in the middle of an import batch.
#
# import_batch applies up to 10,000 records in one statement, each record in
# a subtransaction of its own.  A crash while the statement runs must leave
# nothing of the batch behind (it never committed), the ledger and the
# indexes consistent, and a re-run of the same batch must apply it whole.
#
# Where the crash falls is made certain, not left to timing: a second
# session holds, in an open transaction, an account whose email is that of
# the batch's 1,500th record, so the import's insert of that record waits on
# the second session's transaction after 1,499 records were written.  The
# test waits until the server reports that wait, then stops the server with
# "immediate".  A second crash falls while an entries batch runs (its point
# inside the batch is not fixed; every assertion holds wherever it falls).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $nusers  = 3000;
my $blocked = 1500;    # the record the import waits at

sub uid { return sprintf('70000000-0000-4000-8000-%012d', shift); }

my $node = PostgreSQL::Test::Cluster->new('import_crash');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pgmarket; CREATE EXTENSION amcheck');

# The documents, kept in a table so that every run sends the same records.
$node->safe_psql(
	'postgres', qq{
	CREATE TABLE docs (section text PRIMARY KEY, doc jsonb NOT NULL);
	INSERT INTO docs
	SELECT 'users', jsonb_agg(jsonb_build_object(
	           'id', '70000000-0000-4000-8000-' || lpad(i::text, 12, '0'),
	           'email', 'imp' || i || '\@example.com',
	           'username', 'imp' || i) ORDER BY i)
	  FROM generate_series(1, $nusers) i;
	INSERT INTO docs
	SELECT 'entries', jsonb_agg(jsonb_build_object(
	           'user_id', '70000000-0000-4000-8000-' || lpad((1 + i % $nusers)::text, 12, '0'),
	           'type', CASE WHEN i < $nusers THEN 'deposit' ELSE 'charge' END,
	           'amount', CASE WHEN i < $nusers THEN '10' ELSE '0.25' END,
	           'model_id', 'model-x',
	           'key', 'e-' || i) ORDER BY i)
	  FROM generate_series(0, 2 * $nusers - 1) i;
});

my $psql = $node->installed_command('psql');

# A psql in the background: its input from the scalar $in as it is pumped,
# or, given a command, that command alone (it needs no pumping to run).
sub start_psql
{
	my ($in, $out, $err, $command) = @_;
	my @cmd = ($psql, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr('postgres'));
	push @cmd, '-c', $command if defined $command;
	return IPC::Run::start(\@cmd, '<', $in, '>', $out, '2>', $err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
}

# The blocker: an open transaction holding the 1,500th record's email.
my ($bin, $bout, $berr) = ('', '', '');
my $blocker = start_psql(\$bin, \$bout, \$berr);
$bin .= "BEGIN;\n"
  . "SELECT 'held', pgmarket.create_user('imp$blocked\@example.com', 'blocker') IS NOT NULL;\n";
$blocker->pump until $bout =~ /^held\|t$/m || $berr ne '';
is($berr, '', 'the blocker holds the email of one record of the batch');

# The import, in its own session.
my ($iout, $ierr) = ('', '');
my $import = start_psql(\undef, \$iout, \$ierr,
	"SELECT count(*) FROM pgmarket.import_batch('users', (SELECT doc FROM docs WHERE section = 'users'))");

ok( $node->poll_query_until(
		'postgres', q{
	SELECT EXISTS (SELECT 1 FROM pg_stat_activity
	                WHERE pid <> pg_backend_pid()
	                  AND query LIKE '%import_batch(''users''%'
	                  AND wait_event_type = 'Lock' AND wait_event = 'transactionid')}),
	'the import waits at its record ' . $blocked);

$node->stop('immediate');
eval { $import->finish; };
eval { $blocker->finish; };
is($iout, '', 'the import was not acknowledged');

$node->start;
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pgmarket.accounts WHERE email LIKE 'imp%\@example.com'"),
	'0',
	'nothing of the crashed batch is left, nor the blocker\'s account');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pgmarket.verify_ledger()'),
	'0', 'verify_ledger is clean after the crash');

# Every btree index of the schema is consistent with its heap.
sub check_indexes
{
	my $what = shift;
	my $bad  = $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (
	  SELECT bt_index_check(c.oid, true)
	    FROM pg_index i
	    JOIN pg_class c ON c.oid = i.indexrelid
	    JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
	    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'pgmarket') s});
	ok(defined $bad && $bad =~ /^\d+$/, "every index of the schema checked $what");
}
check_indexes('after the first crash');

# The same batch again applies whole.
my $counts = $node->safe_psql(
	'postgres', q{
	SELECT outcome, count(*) FROM pgmarket.import_batch('users',
	         (SELECT doc FROM docs WHERE section = 'users'))
	 GROUP BY outcome ORDER BY outcome});
is($counts, "created|$nusers", 'the re-run creates every user of the batch');

# The second crash: while an entries batch runs.
my ($eout, $eerr) = ('', '');
my $entries = start_psql(\undef, \$eout, \$eerr,
	"SELECT count(*) FROM pgmarket.import_batch('entries', (SELECT doc FROM docs WHERE section = 'entries'))");
ok( $node->poll_query_until(
		'postgres', q{
	SELECT EXISTS (SELECT 1 FROM pg_stat_activity
	                WHERE pid <> pg_backend_pid()
	                  AND query LIKE '%import_batch(''entries''%' AND state = 'active')}),
	'the entries batch runs');
$node->stop('immediate');
eval { $entries->finish; };

$node->start;
my $after = $node->safe_psql('postgres',
	"SELECT count(*) FROM pgmarket.ledger WHERE idempotency_key LIKE 'e-%'");
ok($after eq '0' || ($after eq 2 * $nusers && $eout =~ /^\d+$/m),
	'the entries batch is all there (acknowledged) or not at all: ' . $after . ' entries');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pgmarket.verify_ledger()'),
	'0', 'verify_ledger is clean after the second crash');
check_indexes('after the second crash');

$counts = $node->safe_psql(
	'postgres', q{
	SELECT outcome, count(*) FROM pgmarket.import_batch('entries',
	         (SELECT doc FROM docs WHERE section = 'entries'))
	 GROUP BY outcome ORDER BY outcome});
ok($counts eq 'created|' . 2 * $nusers || ($after ne '0' && $counts eq 'present|' . 2 * $nusers),
	"the re-run of the entries applies them exactly once ($counts)");
is( $node->safe_psql(
		'postgres', q{
	SELECT sum(total_balance) || ' ' || sum(spent_balance) FROM pgmarket.accounts a,
	       LATERAL pgmarket.get_balance(a.id) b WHERE a.email LIKE 'imp%'}),
	sprintf('%.6f %.6f', 10 * $nusers, 0.25 * $nusers),
	'the balances are the sums of the batch');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pgmarket.verify_ledger()'),
	'0', 'verify_ledger is clean at the end');

$node->stop;
done_testing();
