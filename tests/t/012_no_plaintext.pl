# Secrets never appear in plaintext in a table, the audit trail, an error
# message or a NOTICE; nor does a raw platform API key or the master key.
#
# Provider secrets are distinctive canaries ("sk-PLAINTEXT-CANARY-<n>-<md5>")
# computed on the server by canary(n), whose source splits the marker in two,
# so that no SQL text the test sends contains a canary: a statement that the
# server logs (log_min_error_statement logs failing statements) cannot be
# what puts a canary in the log.  Raw API keys stay on the server too, in the
# test's own table raw_keys (left out of the dump); statements pass them as
# subqueries, never as literals.  (A secret written as a literal in SQL text
# can reach the server log; that is what put_provider_key_sealed and bind
# parameters are for.)
#
# The test stores keys, reads them, replaces and revokes them, and forces
# every error it can: bad provider names, unknown users, NULLs, secrets that
# are too long, sealed secrets that do not open, tampered and moved
# ciphertexts, a missing master key file, revoked, read-only, malformed and
# over-limit API keys; and a rotation with its progress NOTICEs.  The server
# logs at debug1, with verbose errors (DETAIL, HINT, CONTEXT, LOCATION).
# Then no canary (as text or hex), no raw API key (nor its secret part) and
# no master key appears in: the data of every table (pg_dump --data-only),
# the server log, or any error, notice or listing the client saw.

use strict;
use warnings;

use Fcntl;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $keydir  = PostgreSQL::Test::Utils::tempdir;
my $keyfile = "$keydir/master.key";

sub random_hex
{
	open my $fh, '<:raw', '/dev/urandom' or die "urandom: $!";
	read($fh, my $buf, 32) == 32 or die "urandom: short read";
	close $fh;
	return unpack('H*', $buf);
}
my ($k1, $k2, $k3) = (random_hex(), random_hex(), random_hex());

sub write_key_file
{
	my ($text) = @_;
	my $tmp = "$keyfile.new";
	unlink $tmp;
	sysopen(my $fh, $tmp, O_WRONLY | O_CREAT | O_EXCL, 0600)
	  or die "could not create $tmp: $!";
	print $fh $text;
	close $fh or die "could not write $tmp: $!";
	rename $tmp, $keyfile or die "rename: $!";
	return;
}

my $node = PostgreSQL::Test::Cluster->new('plaintext');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
pgmarket.master_key_file = '$keyfile'
log_statement = none
log_min_messages = debug1
log_min_error_statement = error
log_error_verbosity = verbose
});
write_key_file("1:$k1\n");
$node->start;

my $u1     = 'e0000000-0000-4000-8000-000000000001';
my $u2     = 'e0000000-0000-4000-8000-000000000002';
my $nouser = 'e0000000-0000-4000-8000-00000000dead';

$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION pgmarket;
	CREATE FUNCTION canary(n int) RETURNS text IMMUTABLE LANGUAGE sql
		RETURN 'sk-PLAINTEXT-' || 'CANARY-' || n || '-' || md5(n::text);
	SELECT pgmarket.create_user('plain1\@example.com', 'plain1', 'pw-one-two-three', id => '$u1');
	SELECT pgmarket.create_user('plain2\@example.com', 'plain2', id => '$u2');
	SELECT pgmarket.add_funds('$u1', 100);
	CREATE TABLE raw_keys (name text PRIMARY KEY, key_id uuid, api_key text);
});

my @client;    # everything the client saw on stderr (errors, notices)

# Run a script; keep its stderr (and stdout if asked); return stdout.
sub run
{
	my ($what, $sql, $keep_stdout) = @_;
	my ($out, $err) = ('', '');
	$node->psql(
		'postgres', "\\set VERBOSITY verbose\n$sql",
		stdout        => \$out,
		stderr        => \$err,
		on_error_stop => 0);
	push @client, [ "$what (errors and notices)", $err ];
	push @client, [ "$what (output)", $out ] if $keep_stdout;
	return ($out, $err);
}

###########################################################################
# Provider keys: store, read, replace, and every error
###########################################################################
my ($out, $err) = run(
	'vault',
	qq{
SELECT pgmarket.put_provider_key('$u1', 'openai', canary(1), 'main') IS NOT NULL;
SELECT pgmarket.put_provider_key('$u1', 'anthropic', canary(2)) IS NOT NULL;
SELECT pgmarket.put_provider_key('$u2', 'openai', canary(3)) IS NOT NULL;
-- a replacement: the first key is revoked, and stays
SELECT pgmarket.put_provider_key('$u1', 'openai', canary(4), 'replacement') IS NOT NULL;
SELECT pgmarket.get_provider_key('$u1', 'openai') = canary(4) AS read_ok;
SELECT pgmarket.get_provider_key('$u2', 'openai') = canary(3) AS read_ok;

-- errors of put_provider_key
SELECT pgmarket.put_provider_key('$u1', 'Not A Provider!', canary(5));
SELECT pgmarket.put_provider_key('$nouser', 'openai', canary(6));
SELECT pgmarket.put_provider_key(NULL, 'openai', canary(7));
SELECT pgmarket.put_provider_key('$u1', 'openai', canary(8) || repeat('x', 20000));
SELECT pgmarket.put_provider_key('$u1', 'openai', canary(9), repeat('l', 1000));
SELECT pgmarket.put_provider_key('$u1', repeat('p', 65), canary(10));
-- a sealed secret that was not sealed
SELECT pgmarket.put_provider_key_sealed('$u1', 'openai', convert_to(canary(11), 'UTF8'));
SELECT pgmarket.put_provider_key_sealed('$u1', 'openai', convert_to(canary(11) || canary(11) || canary(11), 'UTF8'));
-- errors of get_provider_key
SELECT pgmarket.get_provider_key('$u1', 'mistral');
SELECT pgmarket.get_provider_key('$nouser', 'openai');
SELECT pgmarket.get_provider_key('$u1', 'Bad Name');
-- a tampered ciphertext
UPDATE pgmarket.provider_keys
   SET ciphertext = set_byte(ciphertext, 3, get_byte(ciphertext, 3) # 1)
 WHERE user_id = '$u1' AND provider = 'anthropic';
SELECT pgmarket.get_provider_key('$u1', 'anthropic');
-- a ciphertext moved to another row
UPDATE pgmarket.provider_keys d SET nonce = s.nonce, ciphertext = s.ciphertext
  FROM pgmarket.provider_keys s
 WHERE d.user_id = '$u2' AND d.provider = 'openai'
   AND s.user_id = '$u1' AND s.provider = 'openai' AND s.revoked_at IS NULL;
SELECT pgmarket.get_provider_key('$u2', 'openai');
-- an error inside a transaction that had read a key
BEGIN;
SELECT pgmarket.get_provider_key('$u1', 'openai') IS NOT NULL;
SELECT pgmarket.put_provider_key('$u1', 'bad provider', canary(12));
ROLLBACK;
-- a PL/pgSQL caller that fails after reading (CONTEXT lines)
DO \$\$
DECLARE s text;
BEGIN
    s := pgmarket.get_provider_key('$u1', 'openai');
    PERFORM pgmarket.put_provider_key('$u1', 'Bad!', s);
END
\$\$;
});
like($err, qr/22023: provider name "Not A Provider!" is not valid/,
	'errors were raised (bad provider)');
like($err, qr/PM002/,   'errors were raised (unknown user)');
like($err, qr/22004/,   'errors were raised (NULL)');
like($err, qr/secret is longer than/, 'errors were raised (too long)');
like($err, qr/PM011: sealed secret could not be opened|sealed secret/,
	'errors were raised (sealed)');
like($err, qr/PM012/, 'errors were raised (no key)');
like($err, qr/PM011: provider key \S+ failed authentication/,
	'errors were raised (tampered)');
like($out, qr/^t$/m, 'keys were read back');

###########################################################################
# Platform API keys
###########################################################################
($out, $err) = run(
	'api keys',
	qq{
INSERT INTO raw_keys SELECT 'main', key_id, api_key
  FROM pgmarket.create_api_key('$u1', 'main', spend_limit => 1);
INSERT INTO raw_keys SELECT 'readonly', key_id, api_key
  FROM pgmarket.create_api_key('$u1', 'read only', '{read}');
INSERT INTO raw_keys SELECT 'revoked', key_id, api_key
  FROM pgmarket.create_api_key('$u1', 'old');
INSERT INTO raw_keys SELECT 'poor', key_id, api_key
  FROM pgmarket.create_api_key('$u2', 'poor');
INSERT INTO raw_keys SELECT 'test', key_id, api_key
  FROM pgmarket.create_api_key('$u1', 'test', environment => 'test',
                               expires_at => now() + interval '1 day');
SELECT pgmarket.revoke_api_key('$u1', (SELECT key_id FROM raw_keys WHERE name = 'revoked'));
SELECT count(*) FROM pgmarket.verify_api_key((SELECT api_key FROM raw_keys WHERE name = 'main'));
SELECT (pgmarket.charge_api_key((SELECT api_key FROM raw_keys WHERE name = 'main'), 0.5, 'gpt-4o')).kind;
SELECT pgmarket.reserve_api_key((SELECT api_key FROM raw_keys WHERE name = 'main'), 0.25) IS NOT NULL;
-- errors
SELECT pgmarket.charge_api_key((SELECT api_key FROM raw_keys WHERE name = 'main'), 2, 'gpt-4o');
SELECT pgmarket.reserve_api_key((SELECT api_key FROM raw_keys WHERE name = 'main'), 2);
SELECT pgmarket.charge_api_key((SELECT api_key FROM raw_keys WHERE name = 'readonly'), 0.1, 'gpt-4o');
SELECT pgmarket.charge_api_key((SELECT api_key FROM raw_keys WHERE name = 'revoked'), 0.1, 'gpt-4o');
SELECT pgmarket.reserve_api_key((SELECT api_key FROM raw_keys WHERE name = 'revoked'), 0.1);
SELECT pgmarket.charge_api_key((SELECT api_key FROM raw_keys WHERE name = 'poor'), 0.1, 'gpt-4o');
SELECT pgmarket.charge_api_key((SELECT api_key FROM raw_keys WHERE name = 'main'), 0.1234567, 'gpt-4o');
SELECT pgmarket.charge_api_key((SELECT api_key FROM raw_keys WHERE name = 'main'), NULL, 'gpt-4o');
SELECT pgmarket.charge_api_key((SELECT left(api_key, 67) || 'A' FROM raw_keys WHERE name = 'main'), 0.1, 'gpt-4o');
SELECT pgmarket.charge_api_key((SELECT upper(api_key) FROM raw_keys WHERE name = 'main'), 0.1, 'gpt-4o');
SELECT pgmarket.charge_api_key(canary(13), 0.1, 'gpt-4o');
SELECT count(*) FROM pgmarket.verify_api_key(canary(14));
SELECT count(*) FROM pgmarket.verify_api_key((SELECT api_key FROM raw_keys WHERE name = 'revoked'));
SELECT pgmarket.create_api_key('$u1', 'bad', '{root}');
SELECT pgmarket.create_api_key('$nouser', 'nobody');
-- the listing shows prefixes and spend, never a key or a hash
SELECT * FROM pgmarket.list_api_keys('$u1');
SELECT * FROM pgmarket.list_provider_keys('$u1');
SELECT * FROM pgmarket.key_access_log;
}, 1);
like($err, qr/PM001: spend limit reached/, 'API key errors were raised (limit)');
like($err, qr/42501/, 'API key errors were raised (scope)');
like($err, qr/28000: invalid API key/, 'API key errors were raised (revoked)');

###########################################################################
# Rotation (progress NOTICEs) and an unavailable vault
###########################################################################
write_key_file("1:$k1\n2:$k2\n");
$node->reload;
($out, $err) = run('rotation', 'CALL pgmarket.rotate_all_keys(1);');
# the tampered and the moved ciphertexts stop the rotation
like($err, qr/ERROR:\s+PM011: provider key \S+ failed authentication/,
	'rotation stops at a tampered key');
$node->safe_psql(
	'postgres', qq{
	SET session_replication_role = replica;
	DELETE FROM pgmarket.provider_keys
	 WHERE (user_id, provider) IN (('$u1', 'anthropic'), ('$u2', 'openai'));
});
write_key_file("1:$k1\n2:$k2\n3:$k3\n");
$node->reload;
($out, $err) = run('rotation again', 'CALL pgmarket.rotate_all_keys(1);');
like($err, qr/NOTICE:\s+00000: re-encrypted 1 provider keys so far/,
	'rotation NOTICEs were sent');
like($err, qr/NOTICE:\s+00000: rotation done: 2 provider keys re-encrypted/,
	'rotation done');

unlink $keyfile;
$node->reload;
($out, $err) = run(
	'no master key',
	qq{
SELECT pgmarket.put_provider_key('$u1', 'openai', canary(15));
SELECT pgmarket.get_provider_key('$u1', 'openai');
SELECT pgmarket.charge_api_key((SELECT api_key FROM raw_keys WHERE name = 'main'), 0.1, 'gpt-4o');
SELECT pgmarket.create_api_key('$u1', 'no vault');
});
like($err, qr/PM010/, 'PM010 without the key file');
write_key_file("1:$k1\n2:$k2\n3:$k3\n");
$node->reload;

# what the test knows: the canaries, the raw keys
my @canaries = split /\n/,
  $node->safe_psql('postgres', 'SELECT canary(n) FROM generate_series(1, 20) n');
my @raw = split /\n/,
  $node->safe_psql('postgres', 'SELECT api_key FROM raw_keys ORDER BY name');
is(scalar @raw, 5, 'five raw API keys were issued');
is($node->safe_psql('postgres', "SELECT pgmarket.get_provider_key('$u1', 'openai')"),
	$canaries[3], 'the vault still works');

###########################################################################
# Where to look
###########################################################################
my @places = @client;

my $dumpfile = "$keydir/data.sql";
$node->command_ok(
	[
		'pg_dump', '--data-only', '--exclude-table-data=public.raw_keys',
		'-f', $dumpfile, '-d', $node->connstr('postgres')
	],
	'pg_dump --data-only');
my $dump = slurp_file($dumpfile);
like($dump, qr/COPY pgmarket\.provider_keys /, 'the dump has provider_keys');
like($dump, qr/COPY pgmarket\.api_keys /,      'the dump has api_keys');
like($dump, qr/COPY pgmarket\.key_access_log /, 'the dump has key_access_log');
if ($dump =~ /COPY pgmarket\.audit_log /)
{
	# (the audit trail, from 0.3.0: the changes of provider_keys and api_keys)
	like($dump, qr/COPY pgmarket\.audit_log [^\n]*\n(?:[^\n]*\n)*?[^\n]*provider_keys/,
		'the dump has the audit trail of provider_keys');
}
push @places, [ 'the data of every table (pg_dump --data-only)', $dump ];

# a control: what get_provider_key returns is found where it is
my ($control) = run('control',
	"SELECT pgmarket.get_provider_key('$u1', 'openai')", 1);
pop @client;
pop @client;

$node->stop;
my $log = slurp_file($node->logfile);
like($log, qr/ERROR:\s+PM011/, 'the server log has the errors');
like($log, qr/STATEMENT:\s+SELECT pgmarket\.put_provider_key/,
	'the server log has the failing statements');
like($log, qr/NOTICE:\s+00000: re-encrypted/, 'the server log has the NOTICEs');
push @places, [ 'the server log', $log ];

# needles: every canary (text, hex, with the marker alone), every raw API key
# (whole, and its secret part), every master key
my @needles = ([ 'the canary marker', 'PLAINTEXT-CANARY' ],
	[ 'the canary marker in hex', unpack('H*', 'PLAINTEXT-CANARY') ]);
for my $i (0 .. $#raw)
{
	push @needles, [ "raw API key " . ($i + 1), $raw[$i] ];
	push @needles,
	  [ "the secret part of raw API key " . ($i + 1), substr($raw[$i], 25) ];
}
push @needles, [ 'master key 1', $k1 ], [ 'master key 2', $k2 ],
  [ 'master key 3', $k3 ];
# the random part of each canary's md5 is distinctive enough
for my $i (0 .. $#canaries)
{
	push @needles,
	  [ 'canary ' . ($i + 1), substr($canaries[$i], 0, length($canaries[$i]) - 4) ];
}

sub secrets_in
{
	my ($text) = @_;
	my @found;
	for my $n (@needles)
	{
		my ($name, $needle) = @$n;
		push @found, $name if index(lc $text, lc $needle) >= 0;
	}
	return join(', ', @found);
}
like(secrets_in($control), qr/canary 4/, 'control: the search finds a secret');

for my $place (@places)
{
	my ($where, $text) = @$place;
	is(secrets_in($text), '', "nothing secret in $where");
}

done_testing();
