# The audit chain against a superuser, and the anchor kept outside the
# database.
#
# A superuser holds the key through seal_audit(): with
# session_replication_role = replica it can rewrite audit rows, drop the
# seals and seal again, and verify_audit(true) alone is then clean.  What
# catches it is an anchor taken before: the head of the chain
# (audit_head(), written to the server log by every seal, and kept in a file
# by `pgmarket verify --anchor FILE`).  Also: a dump and restore keeps the
# chain and its anchors, records the restore of the trail as one event and
# goes on sealing; seals made before 0.5.0 (chain rule 1, without sealed_at)
# still verify, only as the chain's prefix.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $master_hex = 'a7' x 32;
my $node = PostgreSQL::Test::Cluster->new('audit_anchor');
$node->init;
my $keyfile = $node->data_dir . '/audit_anchor.key';
open(my $fh, '>', $keyfile) or die "cannot write $keyfile: $!";
print $fh "1:$master_hex\n";
close($fh);
chmod(0600, $keyfile) or die "chmod $keyfile: $!";
$node->append_conf('postgresql.conf', "pgmarket.master_key_file = 'audit_anchor.key'\n");
$node->start;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $cli = ($ENV{TESTDIR} // '.') . '/client/pgmarket';
my $have_cli = -x $cli;

# the head as the 80 hex digits of the anchor
sub head_hex
{
	my $db = shift // 'postgres';
	return $node->safe_psql($db,
		"SELECT encode(int8send(last_id) || chain_hash, 'hex') FROM pgmarket.audit_head()");
}

sub slurp_anchor
{
	my $f = shift;
	my $s = slurp_file($f);
	chomp $s;
	return $s;
}

# pgmarket verify --anchor FILE against a database: its exit code
sub cli_verify
{
	my ($db, $file) = @_;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ $cli, '-d', $node->connstr($db), 'verify', '--anchor', $file ],
		'>', \$stdout, '2>', \$stderr);
	return ($? >> 8, $stdout, $stderr);
}

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION pgmarket;
	CREATE TABLE t (id int PRIMARY KEY, v text);
	SELECT pgmarket.enable_audit('t');
	INSERT INTO t SELECT g, 'first' FROM generate_series(1, 10) g;
});
is($node->safe_psql('postgres', 'SELECT pgmarket.seal_audit()'), '11',
	'the first seal: the ENABLE_AUDIT event and ten inserts');

# every seal is in the server log, with its range and its anchor
my $head1 = head_hex();
like(slurp_file($node->logfile),
	qr/LOG:  pgmarket audit seal record 1: audit_log ids 1 to 11 \(11 rows\), anchor \\x$head1/,
	'the seal is in the server log with the anchor audit_head() returns');
is($node->safe_psql('postgres', "SELECT first_bad_id IS NULL FROM pgmarket.verify_audit(true, '\\x$head1')"),
	't', 'the anchor lies on the chain');

# pgmarket verify --anchor: created, then checked and advanced
my $anchor_file = "$tmp/anchor";
SKIP:
{
	skip 'client/pgmarket is not built', 6 unless $have_cli;
	my ($rc, $out) = cli_verify('postgres', $anchor_file);
	is($rc, 0, 'verify --anchor with no file yet succeeds');
	is(slurp_anchor($anchor_file), $head1, 'and creates the file at the head');

	$node->safe_psql('postgres', "UPDATE t SET v = 'second' WHERE id <= 5");
	is($node->safe_psql('postgres', 'SELECT pgmarket.seal_audit()'), '5', 'a second seal');
	($rc, $out) = cli_verify('postgres', $anchor_file);
	is($rc, 0, 'verify --anchor checks the old anchor');
	like($out, qr/verified, advanced to id 16/, 'and says it advanced');
	is(slurp_anchor($anchor_file), head_hex(), 'the file is the new head');
}
my $head2 = head_hex();
like(slurp_file($node->logfile), qr/pgmarket audit seal record 2: audit_log ids 12 to 16 \(5 rows\), anchor \\x$head2/,
	'the second seal is in the log too');

# a dump now, restored further down
command_ok([ 'pg_dump', '-Fc', '-f', "$tmp/audit.dump", '-d', $node->connstr('postgres') ],
	'pg_dump of a database with a sealed trail');
command_ok([ 'pg_dump', '-f', "$tmp/audit.sql", '-d', $node->connstr('postgres') ],
	'and a plain one');

# The superuser's rewrite: a row changed, every seal dropped, sealed again.
$node->safe_psql(
	'postgres', q{
	SET session_replication_role = replica;
	UPDATE pgmarket.audit_log SET actor = 'mallory' WHERE id = 3;
	TRUNCATE pgmarket.audit_seals;
	SELECT pgmarket.seal_audit();
});
is($node->safe_psql('postgres', 'SELECT first_bad_id IS NULL, checked FROM pgmarket.verify_audit(true)'),
	't|16', 'the re-sealed chain verifies in itself');
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT * FROM pgmarket.verify_audit(true, '\\x$head2')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/PM013.*does not contain the anchor/, 'against the anchor it is PM013');
is($node->safe_psql('postgres', "SELECT first_bad_id IS NOT NULL FROM pgmarket.verify_audit(false, '\\x$head1')"),
	't', 'so is it against an older anchor, as the server log has it');
SKIP:
{
	skip 'client/pgmarket is not built', 3 unless $have_cli;
	my ($rc, $out) = cli_verify('postgres', $anchor_file);
	is($rc, 1, 'pgmarket verify --anchor fails');
	like($out, qr/BROKEN/, 'and says the trail is broken');
	is(slurp_anchor($anchor_file), $head2, 'and leaves the anchor file as it was');
}

# The dump taken before: restored, the chain and its anchor are intact, the
# restore of the trail is one event, and the trail goes on.
for my $fmt ('custom', 'plain')
{
	my $db = "dst_$fmt";
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	if ($fmt eq 'custom')
	{
		command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr($db), "$tmp/audit.dump" ],
			"$fmt: pg_restore");
	}
	else
	{
		command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db),
				'-f', "$tmp/audit.sql" ], "$fmt: psql -f");
	}
	is($node->safe_psql($db, "SELECT first_bad_id IS NULL, checked FROM pgmarket.verify_audit(true, '\\x$head2')"),
		't|16', "$fmt: the restored chain verifies against the anchor");
	is($node->safe_psql($db, q{
		SELECT operation, new_values FROM pgmarket.audit_log WHERE id > 16 ORDER BY id}),
		'RESTORE|{"rows": 16, "through_id": 16}', "$fmt: the restore of audit_log is one event");
	$node->safe_psql($db, "INSERT INTO t VALUES (100, 'after the restore')");
	is($node->safe_psql($db, q{
		SELECT string_agg(id || ' ' || operation, ',' ORDER BY id) FROM pgmarket.audit_log WHERE id > 16}),
		'17 RESTORE,18 INSERT', "$fmt: new audit rows go on after it");
	is($node->safe_psql($db, 'SELECT pgmarket.seal_audit()'), '2', "$fmt: and are sealed");
	is($node->safe_psql($db, "SELECT first_bad_id IS NULL, checked FROM pgmarket.verify_audit(true, '\\x$head2')"),
		't|18', "$fmt: the old anchor stays on the longer chain");
	SKIP:
	{
		skip 'client/pgmarket is not built', 1 unless $have_cli;
		my $f = "$tmp/anchor_$fmt";
		open(my $af, '>', $f) or die "cannot write $f: $!";
		print $af "$head2\n";
		close($af);
		my ($rc) = cli_verify($db, $f);
		is($rc, 0, "$fmt: pgmarket verify --anchor with the anchor kept from before the dump");
	}
}

# Seals made before 0.5.0: their chain hashes (rule 1) cover every column of
# the record but sealed_at.  Rebuild the first chain that way (the row MACs
# did not change) and check that it verifies, as a prefix only.
SKIP:
{
	skip 'python3 with hashlib.blake2b is needed to compute rule 1 hashes', 5
	  unless system('python3', '-c', 'import hashlib; hashlib.blake2b(salt=b"", person=b"")') == 0;

	my $db = 'rule1';
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql(
		$db, q{
		CREATE EXTENSION pgmarket;
		CREATE TABLE t (id int PRIMARY KEY, v text);
		SELECT pgmarket.enable_audit('t');
		INSERT INTO t VALUES (1, 'a');
		SELECT pgmarket.seal_audit();
		INSERT INTO t VALUES (2, 'b');
		SELECT pgmarket.seal_audit();
	});
	my $records = $node->safe_psql($db, q{
		SELECT seq || ' ' || kind || ' ' || after_id || ' ' || through_id || ' ' || row_count
		       || ' ' || key_version || ' ' || encode(entries, 'hex')
		  FROM pgmarket.audit_seals ORDER BY seq});
	open(my $rf, '>', "$tmp/records") or die;
	print $rf "$records\n";
	close($rf);
	my $py = <<'PY';
import hashlib, struct, sys
master = bytes.fromhex(sys.argv[1])
sub = hashlib.blake2b(b'', digest_size=32, key=master,
                      salt=struct.pack('<Q', 1) + b'\0' * 8,
                      person=b'pgmaudit' + b'\0' * 8).digest()
prev = bytes.fromhex(sys.argv[3]) if len(sys.argv) > 3 else b'\0' * 32
for line in open(sys.argv[2]):
    f = line.split()
    if not f:
        continue
    seq, kind, after, through, count, ver = f[0], f[1], int(f[2]), int(f[3]), int(f[4]), int(f[5])
    entries = bytes.fromhex(f[6]) if len(f) > 6 else b''
    h = hashlib.blake2b(digest_size=32, key=sub)
    h.update(b'pgmarket audit seal v1\0')
    h.update(prev)
    h.update(kind.encode() + b'\0')
    h.update(struct.pack('>qqqqi', int(seq), after, through, count, ver))
    h.update(entries)
    prev = h.digest()
    print(seq, prev.hex())
PY
	my ($out, $err);
	IPC::Run::run([ 'python3', '-c', $py, $master_hex, "$tmp/records" ], '>', \$out, '2>', \$err)
	  or die "python3: $err";
	my $updates = join '', map { my ($s, $h) = split / /; "UPDATE pgmarket.audit_seals SET chain_hash = '\\x$h' WHERE seq = $s;\n" }
	  grep { /\S/ } split /\n/, $out;
	$node->safe_psql($db, "SET session_replication_role = replica;\n$updates");
	is($node->safe_psql($db, 'SELECT first_bad_id IS NULL, checked FROM pgmarket.verify_audit(true)'),
		't|3', 'a chain of rule 1 seals verifies');
	my $old_head = head_hex($db);
	$node->safe_psql($db, "INSERT INTO t VALUES (3, 'c'); SELECT pgmarket.seal_audit();");
	is($node->safe_psql($db, "SELECT first_bad_id IS NULL, checked FROM pgmarket.verify_audit(true, '\\x$old_head')"),
		't|4', 'a rule 2 seal goes on from it, through its anchor');
	is($node->safe_psql($db, q{
		BEGIN;
		SET LOCAL session_replication_role = replica;
		UPDATE pgmarket.audit_seals SET sealed_at = sealed_at - interval '1 day' WHERE seq = 3;
		SELECT first_bad_id IS NOT NULL FROM pgmarket.verify_audit();
		ROLLBACK;}), 't', 'the rule 2 seal covers sealed_at');
	is($node->safe_psql($db, q{
		BEGIN;
		SET LOCAL session_replication_role = replica;
		UPDATE pgmarket.audit_seals SET sealed_at = sealed_at - interval '1 day' WHERE seq = 1;
		SELECT first_bad_id IS NULL FROM pgmarket.verify_audit();
		ROLLBACK;}), 't', 'a rule 1 seal does not (as before 0.5.0)');

	# a rule 1 record after a rule 2 one is refused: a fourth seal, its hash
	# made under rule 1 on the rule 2 hash of the third
	$node->safe_psql($db, "INSERT INTO t VALUES (4, 'd'); SELECT pgmarket.seal_audit();");
	my $rec4 = $node->safe_psql($db, q{
		SELECT seq || ' ' || kind || ' ' || after_id || ' ' || through_id || ' ' || row_count
		       || ' ' || key_version || ' ' || encode(entries, 'hex')
		  FROM pgmarket.audit_seals WHERE seq = 4});
	my $prev3 = $node->safe_psql($db,
		"SELECT encode(chain_hash, 'hex') FROM pgmarket.audit_seals WHERE seq = 3");
	open($rf, '>', "$tmp/records") or die;
	print $rf "$rec4\n";
	close($rf);
	IPC::Run::run([ 'python3', '-c', $py, $master_hex, "$tmp/records", $prev3 ], '>', \$out, '2>', \$err)
	  or die "python3: $err";
	my ($h4) = map { (split / /)[1] } grep { /^4 / } split /\n/, $out;
	is($node->safe_psql($db, qq{
		BEGIN;
		SET LOCAL session_replication_role = replica;
		UPDATE pgmarket.audit_seals SET chain_hash = '\\x$h4' WHERE seq = 4;
		SELECT first_bad_id IS NOT NULL FROM pgmarket.verify_audit();
		ROLLBACK;}), 't', 'a rule 1 record after a rule 2 one does not verify');
}

$node->stop;
done_testing();
