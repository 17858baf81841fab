# The bad-input sweep: every function of schema pgmarket that pgmarket_app
# or pgmarket_admin may execute, taken from the catalog (a new function is
# swept without a change here), called with each argument in turn replaced by
# a bad value of its type (NULL, empty, a megabyte, the limits of the type,
# values just past the money range, hostile strings) and the other arguments
# valid: pgmarket_app without pgmarket.actor and, where a function names a
# user, with it; pgmarket_admin without.  Procedures (rotate_all_keys) commit
# and cannot run inside the sweep's subtransactions: they are listed, not
# swept.  The machinery is SQL, in tests/input_sweep.sql.
#
# Every call must succeed or end in a SQLSTATE of the contract's table; a
# refused call must leave every pgmarket table as it was (a digest of all
# their rows, as superuser); a call that succeeds must leave the fixture's
# money in range and verify_ledger() quiet, and must not have accepted a
# value that no argument of its type may take (an amount past the range, a
# two-dimensional list, a relation the caller does not own); no call may
# crash the server.  The test prints what it covered and the list of
# violations, and fails when that list is not empty.

use strict;
use warnings;

use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $harness = dirname(__FILE__) . '/../input_sweep.sql';

my $node = PostgreSQL::Test::Cluster->new('input_sweep');
$node->init;
my $keyfile = $node->data_dir . '/sweep.key';
open(my $fh, '>', $keyfile) or die "cannot write $keyfile: $!";
print $fh '1:' . ('3e' x 32) . "\n";
close($fh);
chmod(0600, $keyfile) or die "chmod $keyfile: $!";
# Failing statements are not logged: many of them hold a megabyte.
$node->append_conf(
	'postgresql.conf', qq{
pgmarket.master_key_file = 'sweep.key'
log_min_error_statement = panic
restart_after_crash = on
});
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION pgmarket');
$node->safe_psql('postgres', slurp_file($harness));
$node->safe_psql('postgres',
	"INSERT INTO sweep.fx (block, phash) VALUES (0, pgmarket.hash_password('sweep password 1'))"
);
my $planned = $node->safe_psql('postgres', 'SELECT sweep.plan()');
ok($planned > 0, "planned $planned calls");

# The digest sees a change of any row, even one that writes the same values.
my $digest_sql = $node->safe_psql('postgres', 'SELECT sweep.digest_sql()');
my $d1         = $node->safe_psql('postgres', $digest_sql);
$node->safe_psql('postgres', "UPDATE pgmarket.roles SET name = name WHERE name = 'support'");
isnt($node->safe_psql('postgres', $digest_sql), $d1, 'the digest sees a rewritten row');

my $guessed = $node->safe_psql(
	'postgres', q{
	SELECT string_agg(format('%s %s = %s', fn, argname, expr), E'\n' ORDER BY fn::text, argname)
	FROM sweep.guessed});
diag("arguments valid by their type only (name them in tests/input_sweep.sql):\n$guessed")
  if $guessed ne '';

# Run the calls; after a crash or a call that hangs, record that call and go
# on with the next one.
my $t0       = time;
my $restarts = 0;
while (1)
{
	my ($stdout, $stderr, $timed_out) = ('', '', 0);
	my $ret = $node->psql(
		'postgres', 'CALL sweep.run()',
		stdout    => \$stdout,
		stderr    => \$stderr,
		timeout   => 300,
		timed_out => \$timed_out);
	last if $ret == 0 && !$timed_out;

	$restarts++;
	my $why = $timed_out ? 'the call did not end within 300 s' : 'the server crashed';
	$node->poll_query_until('postgres', 'SELECT true')
	  or die "the server did not come back: $stderr";
	$node->safe_psql('postgres',
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'CALL sweep.run()'"
	) if $timed_out;
	$node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE query = 'CALL sweep.run()')"
	) or die 'the sweep did not stop';
	my $marked = $node->safe_psql(
		'postgres', qq{
		UPDATE sweep.results
		SET state = 'violation', problem = '$why',
		    message = left(regexp_replace(\$x\$$stderr\$x\$, '\\s+', ' ', 'g'), 200)
		WHERE state = 'started' RETURNING id});
	die "no call was in progress after: $stderr" if $marked eq '';
	die "too many crashes or hangs, last: $stderr" if $restarts > 20;
}
my $elapsed = time - $t0;

is($node->safe_psql('postgres', 'SELECT count(*) FROM sweep.results'),
	$planned, 'every planned call was made');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server still answers');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|server process .* was terminated/,
	'no backend died');

# What was covered.
my $coverage = $node->safe_psql(
	'postgres', q{
	SELECT format('%s%s: %s functions x %s calls',
	              c.rolname, CASE WHEN c.with_actor THEN ' with an actor' ELSE '' END,
	              count(DISTINCT c.fn), count(*))
	FROM sweep.cases c GROUP BY c.rolname, c.with_actor
	ORDER BY c.rolname DESC, c.with_actor});
my $outcomes = $node->safe_psql(
	'postgres', q{
	SELECT format('%s %s', coalesce(r.sqlstate, r.state), count(*))
	FROM sweep.results r
	GROUP BY coalesce(r.sqlstate, r.state) ORDER BY 1});
my $skipped = $node->safe_psql(
	'postgres', q{
	SELECT coalesce(string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text), 'none')
	FROM pg_proc p
	WHERE p.pronamespace = 'pgmarket'::regnamespace
	  AND (has_function_privilege('pgmarket_app', p.oid, 'EXECUTE')
	       OR has_function_privilege('pgmarket_admin', p.oid, 'EXECUTE'))
	  AND p.oid NOT IN (SELECT fn FROM sweep.swept)});
diag("input sweep:\n$coverage\nnot swept (procedures): $skipped");
diag(sprintf("outcomes (SQLSTATE or ok, calls):\n%s\nran in %.0f s with %d restarts",
		$outcomes, $elapsed, $restarts));

# Calls that took a NULL for an argument without a default and answered:
# the contract wants 22004 there, unless the README lists the function
# among its departures.  Listed, not failed.
my $nulls = $node->safe_psql(
	'postgres', q{
	SELECT string_agg(DISTINCT c.fn::text || ' ' || c.argname, E'\n')
	FROM sweep.cases c JOIN sweep.results r USING (id)
	WHERE r.state = 'ok' AND c.label = 'null'
	  AND pg_get_function_arg_default(c.fn, c.argpos) IS NULL});
diag("a NULL without a default answered, not 22004:\n$nulls") if $nulls ne '';

# The violations, one line per function, argument, value and outcome, with
# the roles they showed up for.
my $violations = $node->safe_psql(
	'postgres', q{
	SELECT format('%s | %s | %s | %s | %s | %s | %s',
	              c.fn, c.argname, c.label,
	              string_agg(DISTINCT c.rolname || CASE WHEN c.with_actor THEN '+actor' ELSE '' END, ','),
	              coalesce(r.sqlstate, 'ok'), r.problem, coalesce(min(r.message), ''))
	FROM sweep.cases c JOIN sweep.results r USING (id)
	WHERE r.state = 'violation'
	GROUP BY c.fn, c.argname, c.label, r.sqlstate, r.problem
	ORDER BY c.fn::text, c.argname, c.label});
my @violations = grep { $_ ne '' } split /\n/, $violations;
is(scalar(@violations), 0, 'no violations')
  or diag(
	"violations (function | argument | value | roles | SQLSTATE | problem | message):\n"
	  . join("\n", @violations));

$node->stop;
done_testing();
