# Sealing the audit trail across restarts.
#
# The chain lives in tables, so it must survive a clean restart and a crash
# (immediate stop, then crash recovery): seals made before verify after,
# the next seal_audit goes on from the last sealed id, and the ids a crash
# leaves unused (the sequence jumps ahead of what it had handed out) do not
# stop the chain.  The master key file is written by the test, mode 0600,
# in the data directory.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('audit_restart');
$node->init;
my $keyfile = $node->data_dir . '/audit_tap.key';
open(my $fh, '>', $keyfile) or die "cannot write $keyfile: $!";
print $fh '1:' . ('5c' x 32) . "\n";
close($fh);
chmod(0600, $keyfile) or die "chmod $keyfile: $!";
$node->append_conf('postgresql.conf', "pgmarket.master_key_file = 'audit_tap.key'\n");
$node->start;

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION pgmarket;
	CREATE TABLE t (id int PRIMARY KEY, v text);
	SELECT pgmarket.enable_audit('t');
	INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g;
	SELECT pgmarket.create_user('tap@example.com', 'tapuser', 'pw', '{user}',
	                            '5c000000-0000-4000-8000-0000000000a1');
});
my $sealed1 = $node->safe_psql('postgres', 'SELECT pgmarket.seal_audit()');
is($sealed1, '102', 'first seal: 100 inserts, the ENABLE_AUDIT event and a user');

# rows written but not sealed before the restart
$node->safe_psql('postgres', "UPDATE t SET v = 'updated' WHERE id <= 10");
$node->restart;

is($node->safe_psql('postgres', 'SELECT first_bad_id IS NULL, checked FROM pgmarket.verify_audit()'),
	't|102', 'after a restart the old seal verifies');
is($node->safe_psql('postgres', 'SELECT pgmarket.seal_audit()'),
	'10', 'the next seal takes the rows written before the restart');

# a crash with audited writes in flight
$node->safe_psql('postgres', "DELETE FROM t WHERE id > 90");
my $bg = $node->background_psql('postgres');
$bg->query_safe('BEGIN');
$bg->query_safe("INSERT INTO t VALUES (1000, 'in flight at the crash')");
$node->stop('immediate');
$bg->quit;
$node->start;

is($node->safe_psql('postgres', 'SELECT pgmarket.seal_audit()'),
	'10', 'after the crash the ten deletes are sealed, the lost insert is not');
$node->safe_psql('postgres', "INSERT INTO t VALUES (2000, 'after the crash')");
is($node->safe_psql('postgres', 'SELECT pgmarket.seal_audit()'),
	'1', 'ids lost in the crash do not stop the chain');
is( $node->safe_psql(
		'postgres', q{
	SELECT bool_and(after_id = coalesce(prev, 0))
	  FROM (SELECT after_id, lag(through_id) OVER (ORDER BY seq) AS prev
	          FROM pgmarket.audit_seals) x}),
	't', 'the seal ranges are contiguous');
is( $node->safe_psql(
		'postgres', q{
	SELECT (SELECT sum(row_count) FROM pgmarket.audit_seals)
	     = (SELECT count(*) FROM pgmarket.audit_log)}),
	't', 'every audit row is sealed exactly once');
is($node->safe_psql('postgres', 'SELECT first_bad_id IS NULL, checked FROM pgmarket.verify_audit(true)'),
	't|123', 'the whole chain verifies');

# tampering after the restart is still caught
$node->safe_psql(
	'postgres', q{
	ALTER TABLE pgmarket.audit_log DISABLE TRIGGER audit_log_append_only;
	UPDATE pgmarket.audit_log SET actor = 'mallory'
	 WHERE id = (SELECT min(id) FROM pgmarket.audit_log WHERE operation = 'DELETE');
	ALTER TABLE pgmarket.audit_log ENABLE TRIGGER audit_log_append_only;
});
$node->restart;
is( $node->safe_psql(
		'postgres', q{
	SELECT first_bad_id = (SELECT min(id) FROM pgmarket.audit_log WHERE operation = 'DELETE')
	  FROM pgmarket.verify_audit()}),
	't', 'a change made before a restart is found after it');
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	'SELECT * FROM pgmarket.verify_audit(true)', extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/PM013/, 'strict verification raises PM013');

$node->stop;
done_testing();
