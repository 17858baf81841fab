# Rotation of the master key, interrupted.
#
# 3,200 provider keys (3,000 active, 200 revoked) are stored under master key
# version 1.  Version 2 is added to the key file and the configuration
# reloaded; then "CALL pgmarket.rotate_all_keys(100)" runs in the background
# and is interrupted midway, three times over:
#
#   1. pg_terminate_backend() of the rotating backend;
#   2. kill -9 of the rotating backend (the server restarts itself: crash
#      recovery, restart_after_crash = on);
#   3. "pg_ctl stop -m immediate" of the whole server, then a start;
#
# with a clean restart in between.  A trigger that sleeps 2 ms per
# re-encrypted row (test only) slows the rotation down enough to interrupt
# it.  After every interruption: the keys under version 2 are a whole number
# of batches (a batch commits whole or not at all), progress is never lost,
# and every key, active or revoked, decrypts to its original secret.  Then
# rotate_master_key() is called until it returns 0: every key is under
# version 2, and still decrypts with version 1 removed from the file.

use strict;
use warnings;

use Fcntl;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $nusers    = 300;
my $nproviders = 10;
my $nkeys     = $nusers * $nproviders;    # active keys
my $nrevoked  = 200;                      # replaced, so revoked
my $total     = $nkeys + $nrevoked;
my $batch     = 100;

my $keydir  = PostgreSQL::Test::Utils::tempdir;
my $keyfile = "$keydir/master.key";

sub random_hex
{
	open my $fh, '<:raw', '/dev/urandom' or die "urandom: $!";
	read($fh, my $buf, 32) == 32 or die "urandom: short read";
	close $fh;
	return unpack('H*', $buf);
}
my ($k1, $k2) = (random_hex(), random_hex());

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

my $node = PostgreSQL::Test::Cluster->new('rotation');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
pgmarket.master_key_file = '$keyfile'
restart_after_crash = on
log_statement = none
});
write_key_file("1:$k1\n");
$node->start;

# Keys: number i (1..3000) belongs to user (i-1)/10+1 and provider
# p<(i-1)%10>, with label k<i>; the first 200 are replaced by k<i>-new.
# A key's secret is derived from its label, so it can be checked later.
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION pgmarket;
	CREATE FUNCTION uid(u int) RETURNS uuid IMMUTABLE LANGUAGE sql
		RETURN ('d1000000-0000-4000-8000-' || lpad(u::text, 12, '0'))::uuid;
	CREATE FUNCTION secret_of(label text) RETURNS text IMMUTABLE LANGUAGE sql
		RETURN 'sk-011-' || label || '-' || md5(label);
	SELECT count(pgmarket.create_user('rot' || u || '\@example.com', 'rot' || u,
	                                  id => uid(u)))
	  FROM generate_series(1, $nusers) u;
	SELECT count(pgmarket.put_provider_key(uid((i - 1) / $nproviders + 1),
	                                       'p' || (i - 1) % $nproviders,
	                                       secret_of('k' || i), 'k' || i))
	  FROM generate_series(1, $nkeys) i;
	SELECT count(pgmarket.put_provider_key(uid((i - 1) / $nproviders + 1),
	                                       'p' || (i - 1) % $nproviders,
	                                       secret_of('k' || i || '-new'), 'k' || i || '-new'))
	  FROM generate_series(1, $nrevoked) i;

	-- Every key that does not decrypt to its secret, with what it gave.  A
	-- revoked key is made the active one for a moment, in a subtransaction
	-- that is rolled back (as is the access log row of the read).
	CREATE FUNCTION bad_keys() RETURNS TABLE (label text, problem text)
	LANGUAGE plpgsql AS \$f\$
	#variable_conflict use_column
	DECLARE
		r record;
		s text;
	BEGIN
		FOR r IN SELECT k.key_id, k.user_id, k.provider AS prov, k.label AS lbl,
		                k.revoked_at IS NOT NULL AS rv
		           FROM pgmarket.provider_keys k ORDER BY k.key_id
		LOOP
			s := NULL;
			BEGIN
				IF r.rv THEN
					UPDATE pgmarket.provider_keys p SET revoked_at = now()
					 WHERE p.user_id = r.user_id AND p.provider = r.prov
					   AND p.revoked_at IS NULL;
					UPDATE pgmarket.provider_keys p SET revoked_at = NULL
					 WHERE p.key_id = r.key_id;
				END IF;
				s := pgmarket.get_provider_key(r.user_id, r.prov);
				RAISE EXCEPTION USING ERRCODE = 'PMX99', MESSAGE = 'undo';
			EXCEPTION
				WHEN SQLSTATE 'PMX99' THEN NULL;
				WHEN OTHERS THEN s := 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
			END;
			IF s IS DISTINCT FROM secret_of(r.lbl) THEN
				label := r.lbl;
				problem := coalesce(s, 'null');
				RETURN NEXT;
			END IF;
		END LOOP;
	END
	\$f\$;
});

is( $node->safe_psql(
		'postgres',
		"SELECT count(*) || ' ' || count(revoked_at) || ' ' || min(key_version) || ' ' || max(key_version)
		   FROM pgmarket.provider_keys"),
	"$total $nrevoked 1 1",
	"$total keys stored under version 1, $nrevoked of them revoked");
is($node->safe_psql('postgres', 'SELECT count(*) FROM bad_keys()'),
	'0', 'every key decrypts before the rotation');

# Version 2 arrives.
write_key_file("1:$k1\n2:$k2\n");
$node->reload;
# (every new session reads the file at its first use of the vault)
is( $node->safe_psql(
		'postgres', q{
	SELECT pgmarket.rotate_master_key(1) + pgmarket.rotate_master_key(1);
	SELECT count(*) FROM pgmarket.provider_keys WHERE key_version = 2}),
	"2\n2",
	'version 2 encrypts after the reload');
my $probed = 2;    # keys re-encrypted by that check

# Slow the re-encryption down (2 ms a row) so that it can be interrupted.
$node->safe_psql(
	'postgres', q{
	CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN PERFORM pg_sleep(0.002); RETURN NEW; END $$;
	CREATE TRIGGER slow_rotation BEFORE UPDATE ON pgmarket.provider_keys
		FOR EACH ROW WHEN (OLD.key_version IS DISTINCT FROM NEW.key_version)
		EXECUTE FUNCTION slow_down();
});

my $psql = $node->installed_command('psql');

sub rotated
{
	return $node->safe_psql('postgres',
		'SELECT count(*) FROM pgmarket.provider_keys WHERE key_version = 2') + 0;
}

# Start "CALL rotate_all_keys(100)" in the background; wait until at least
# $until keys are under version 2; return (harness, backend pid, \stderr).
sub start_rotation
{
	my ($until) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			$psql, '-X', '-v', 'ON_ERROR_STOP=1', '-d',
			$node->connstr('postgres') . ' application_name=rotator',
			'-c', "CALL pgmarket.rotate_all_keys($batch)"
		],
		'<', \undef, '>', \$out, '2>', \$err);
	my $pid;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		$pid = $node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE application_name = 'rotator'");
		last if $pid ne '' && rotated() >= $until;
		usleep(50_000);
	}
	die "rotation did not get going: $err" if $pid eq '';
	return ($h, $pid, \$err);
}

# After an interruption: whole batches, progress kept, every key decrypts.
sub check_state
{
	my ($what, $before) = @_;
	my $n = rotated();
	note("$what: $n of $total keys under version 2");
	ok($n > $before && $n < $total, "$what: interrupted midway ($n of $total)");
	is(($n - $probed) % $batch, 0, "$what: a whole number of batches of $batch");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM bad_keys()'),
		'0', "$what: every key decrypts to its secret");
	is( $node->safe_psql(
			'postgres', 'SELECT count(*) FROM pgmarket.provider_keys'),
		$total, "$what: no key lost");
	return $n;
}

my $done = $probed;

# 1. pg_terminate_backend
{
	my ($h, $pid, $err) = start_rotation($done + 500);
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	$h->finish;
	like($$err, qr/terminating connection due to administrator command/,
		'terminate: the rotating backend was terminated');
	like($$err, qr/NOTICE:\s+re-encrypted \d+ provider keys so far/,
		'terminate: progress NOTICEs came before');
	unlike($$err, qr/sk-011-/, 'terminate: no secret in the NOTICEs or errors');
	$done = check_state('terminate', $done);
}

# A clean restart in between.
$node->restart;
is(rotated(), $done, 'clean restart: progress kept');

# 2. kill -9 of the rotating backend: the server restarts itself
{
	my ($h, $pid, $err) = start_rotation($done + 500);
	kill 'KILL', $pid or die "kill $pid: $!";
	$h->finish;
	$node->poll_query_until('postgres', 'SELECT true')
	  or die 'server did not come back after the crash';
	ok( $node->log_contains(
			qr/server process \(PID $pid\) was terminated by signal 9/),
		'kill -9: the server noticed the crash and restarted');
	$done = check_state('kill -9 of the backend', $done);
}

# 3. immediate stop of the whole server, then a start
{
	my ($h, $pid, $err) = start_rotation($done + 500);
	$node->stop('immediate');
	$h->finish;
	$node->start;
	$done = check_state('immediate stop', $done);
}

# Resume, at full speed.
$node->safe_psql('postgres',
	'DROP TRIGGER slow_rotation ON pgmarket.provider_keys');
my $resumed = 0;
my $calls   = 0;
while (1)
{
	my $n = $node->safe_psql('postgres',
		'SELECT pgmarket.rotate_master_key(1000)');
	$calls++;
	last if $n == 0 || $calls > 100;
	$resumed += $n;
}
is($resumed, $total - $done, 'resumed: the rest was re-encrypted, once');
is( $node->safe_psql(
		'postgres',
		'SELECT count(*) || \' \' || min(key_version) || \' \' || max(key_version) FROM pgmarket.provider_keys'
	),
	"$total 2 2",
	'every key is under version 2');
is($node->safe_psql('postgres', 'SELECT pgmarket.rotate_master_key(1000)'),
	'0', 'rotate_master_key returns 0 once done');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bad_keys()'),
	'0', 'every key decrypts to its original secret');

# A restart, and version 1 gone from the file: nothing needs it any more.
write_key_file("2:$k2\n");
$node->restart;
is($node->safe_psql('postgres', 'SELECT count(*) FROM bad_keys()'),
	'0', 'without version 1 in the file every key still decrypts');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pgmarket.provider_keys p
		  WHERE p.revoked_at IS NULL
		    AND pgmarket.get_provider_key(p.user_id, p.provider) = secret_of(p.label)"),
	$nkeys,
	"all $nkeys active keys read back through get_provider_key");

# The whole procedure, on a fresh rotation to version 3.
my $k3 = random_hex();
write_key_file("2:$k2\n3:$k3\n");
$node->reload;
my ($ret, $out, $err) = $node->psql('postgres',
	"CALL pgmarket.rotate_all_keys(1000)");
is($ret, 0, 'rotate_all_keys to version 3 completes');
like($err, qr/NOTICE:\s+rotation done: $total provider keys re-encrypted/,
	'rotate_all_keys reports what it did');
is( $node->safe_psql(
		'postgres',
		'SELECT min(key_version) || \' \' || max(key_version) FROM pgmarket.provider_keys'),
	'3 3',
	'every key is under version 3');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bad_keys()'),
	'0', 'every key decrypts after the second rotation');

# The server log holds no key and no secret.
$node->stop;
my $log = slurp_file($node->logfile);
for my $k ($k1, $k2, $k3)
{
	ok(index(lc $log, $k) < 0, 'no master key in the server log');
}
unlike($log, qr/sk-011-/, 'no provider secret in the server log');

done_testing();
