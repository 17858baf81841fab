# Rate limits of platform keys under load, in both places the limiter
# counts (SPEC "Platform API keys", tiers; extension/ratelimit.c).
#
# Two clusters: one without preloading (the limiter counts in the unlogged
# table rate_counters) and one with shared_preload_libraries = 'pgmarket'
# (a shared-memory hash, here of 2 keys, so that a third key falls back to
# the table).  On each, 16 pgbench clients charge one key of a tier of 120
# requests a minute plus a burst of 10 for 20 seconds, as fast as they can.
# The run lies within one 60-second window, so the limit, counted exactly,
# admits exactly 130 calls: the test checks that the calls admitted are
# 130, that the ledger holds exactly those 130 charges and the balance lost
# exactly their amount (no refused call charged anything), that every other
# call was refused with PM005 (any other error aborts a client and fails
# the run), and that check_rate_limit then says to wait less than a
# minute.  Then, on each: a charge that fails (PM001) and a rolled-back
# savepoint give their request back; the shared-memory cluster counts its
# third key in the table; and after a crash (immediate stop) the counters
# are forgotten, the ledger is intact.  Last, pgmarket tiers (list, set,
# check) against the first cluster.

use strict;
use warnings;

use Fcntl;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $clients = 16;
my $seconds = 20;
my $rpm     = 120;
my $burst   = 10;

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

my $uid = '6a000000-0000-4000-8000-000000000001';
my $setup = qq{
CREATE EXTENSION pgmarket;
CREATE SCHEMA t;
CREATE SEQUENCE t.admitted;
CREATE SEQUENCE t.refused;
SELECT pgmarket.set_tier('tap', $rpm, NULL, $burst);
SELECT pgmarket.set_tier('tiny', 2, NULL, 0);
SELECT pgmarket.create_user('rate\@example.com', 'rate', id => '$uid');
SELECT pgmarket.add_funds('$uid', 10000);
CREATE TABLE t.k AS
    SELECT 1 AS n, api_key FROM pgmarket.create_api_key('$uid', 'load', rate_limit_tier => 'tap');
-- one call of the load: 1 admitted, 0 refused (PM005); anything else fails
CREATE FUNCTION t.try_charge() RETURNS int LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM pgmarket.charge_api_key((SELECT api_key FROM t.k WHERE n = 1), 0.01, 'm-load', 5);
    PERFORM nextval('t.admitted');
    RETURN 1;
EXCEPTION WHEN SQLSTATE 'PM005' THEN
    PERFORM nextval('t.refused');
    RETURN 0;
END
\$\$;
CREATE FUNCTION t.run(q text) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE r text;
BEGIN
    EXECUTE q INTO r;
    RETURN coalesce(r, '<null>');
EXCEPTION WHEN others THEN
    RETURN 'ERROR ' || SQLSTATE;
END
\$\$;
};

my %nodes;
for my $mode ('table', 'shared_memory')
{
	my $n = PostgreSQL::Test::Cluster->new("rate_$mode");
	$n->init;
	$n->append_conf('postgresql.conf',
		"pgmarket.master_key_file = '$keyfile'\nmax_connections = 40\n");
	$n->append_conf('postgresql.conf',
		"shared_preload_libraries = 'pgmarket'\npgmarket.rate_limit_keys = 2\n")
	  if $mode eq 'shared_memory';
	$n->start;
	$n->safe_psql('postgres', $setup);
	$nodes{$mode} = $n;
}

my $script = PostgreSQL::Test::Utils::tempdir . '/charge.sql';
{
	open my $fh, '>', $script or die $!;
	print $fh "SELECT t.try_charge();\n";
	close $fh;
}

for my $mode ('table', 'shared_memory')
{
	my $n = $nodes{$mode};
	my $q = sub { return $n->safe_psql('postgres', $_[0]); };

	is($q->("LOAD 'pgmarket'; SHOW pgmarket.rate_limiter"), $mode, "$mode: the limiter's place");

	# --- 16 clients on one key for 20 s ----------------------------------
	my ($out, $err);
	my $ok = IPC::Run::run(
		[ 'pgbench', '-n', '-c', $clients, '-j', 4, '-T', $seconds,
		  '-f', $script, '-h', $n->host, '-p', $n->port, 'postgres' ],
		'>', \$out, '2>', \$err);
	ok($ok, "$mode: pgbench ran $clients clients for ${seconds}s") or diag "$out\n$err";
	my ($processed) = $out =~ /number of transactions actually processed: (\d+)/;
	$processed //= -1;
	unlike($out . $err, qr/aborted|failed transactions: [1-9]/,
		"$mode: no call failed with anything but PM005");

	my $admitted = $q->('SELECT last_value * is_called::int FROM t.admitted');
	my $refused  = $q->('SELECT last_value * is_called::int FROM t.refused');
	note "$mode: $processed calls, $admitted admitted, $refused refused";
	is($admitted, $rpm + $burst,
		"$mode: exactly requests_per_minute + burst admitted in the window");
	is($admitted + $refused, $processed, "$mode: every other call refused with PM005");
	cmp_ok($refused, '>', 0, "$mode: the load went past the limit");
	is($q->("SELECT count(*) FROM pgmarket.ledger WHERE model_id = 'm-load'"),
		$admitted, "$mode: the ledger holds the admitted charges, no more");
	is($q->("SELECT available_balance FROM pgmarket.get_balance('$uid')"),
		sprintf('%.6f', 10000 - 0.01 * $admitted),
		"$mode: the balance lost exactly the admitted charges");
	is($q->("SELECT count(*) FROM pgmarket.verify_ledger()"), '0',
		"$mode: the ledger verifies");
	like($q->(qq{SELECT format('%s %s', allowed, remaining_requests)
	               FROM pgmarket.check_rate_limit((SELECT api_key FROM t.k WHERE n = 1))}),
		qr/^f 0$/, "$mode: check_rate_limit says no");
	my $wait = $q->(qq{SELECT retry_after_ms
	                     FROM pgmarket.check_rate_limit((SELECT api_key FROM t.k WHERE n = 1))});
	cmp_ok($wait, '>', 0, "$mode: a wait");
	cmp_ok($wait, '<=', 61000, "$mode: of at most 61 s");

	# --- a failed charge and a rolled-back savepoint give back ------------
	$q->(qq{INSERT INTO t.k
	        SELECT 2, api_key FROM pgmarket.create_api_key('$uid', 'tiny', rate_limit_tier => 'tiny')});
	my $k2 = "(SELECT api_key FROM t.k WHERE n = 2)";
	is($q->("SELECT t.run(\$\$SELECT pgmarket.charge_api_key($k2, 1000000, 'm-tiny')\$\$)"),
		'ERROR PM001', "$mode: a charge over the balance fails");
	is($q->(qq{BEGIN;
	           SAVEPOINT s;
	           SELECT 1 FROM pgmarket.charge_api_key($k2, 1, 'm-tiny');
	           ROLLBACK TO s;
	           SELECT remaining_requests FROM pgmarket.check_rate_limit($k2);
	           COMMIT;}),
		"1\n2", "$mode: neither it nor a rolled-back savepoint used a request");
	is($q->(qq{SELECT string_agg(t.run(\$\$SELECT 1 FROM pgmarket.charge_api_key($k2, 1, 'm-tiny')\$\$), ' ')
	             FROM generate_series(1, 3)}),
		'1 1 ERROR PM005', "$mode: the tier's two requests, then PM005");

	# --- where the keys are counted ---------------------------------------
	if ($mode eq 'shared_memory')
	{
		$q->(qq{INSERT INTO t.k
		        SELECT 3, api_key FROM pgmarket.create_api_key('$uid', 'third', rate_limit_tier => 'tiny')});
		my $k3 = "(SELECT api_key FROM t.k WHERE n = 3)";
		is($q->(qq{SELECT string_agg(t.run(\$\$SELECT 1 FROM pgmarket.charge_api_key($k3, 1, 'm-tiny')\$\$), ' ')
		             FROM generate_series(1, 3)}),
			'1 1 ERROR PM005', 'a key beyond pgmarket.rate_limit_keys is limited too');
		is($q->('SELECT count(*) FROM pgmarket.rate_counters'), '1',
			'... counted in the table, the two first keys in shared memory');
	}
	else
	{
		is($q->('SELECT count(*) FROM pgmarket.rate_counters'), '2',
			'table: one row per key');
	}

	# --- a crash forgives the window, never charges -------------------------
	$n->stop('immediate');
	$n->start;
	is($q->(qq{SELECT format('%s %s', allowed, remaining_requests)
	             FROM pgmarket.check_rate_limit((SELECT api_key FROM t.k WHERE n = 1))}),
		't ' . ($rpm + $burst), "$mode: after a crash the counters are forgotten");
	is($q->("SELECT count(*) FROM pgmarket.ledger WHERE model_id = 'm-load'"),
		$admitted, "$mode: and the ledger is as it was");
	is($q->("SELECT count(*) FROM pgmarket.verify_ledger()"), '0',
		"$mode: and verifies");
}

# --- the command-line tool: pgmarket tiers -----------------------------------
SKIP:
{
	my $cli = ($ENV{TESTDIR} // '.') . '/client/pgmarket';
	skip 'client/pgmarket is not built', 6 unless -x $cli;
	my $n = $nodes{table};
	my $conninfo = 'host=' . $n->host . ' port=' . $n->port . ' dbname=postgres';
	my $cli_run = sub {
		my ($in, @args) = @_;
		my ($out, $err);
		IPC::Run::run([ $cli, '-d', $conninfo, @args ], '<', \$in, '>', \$out, '2>', \$err);
		return ($? >> 8, $out // '', $err // '');
	};
	my ($rc, $out, $err) = $cli_run->('', 'tiers', 'set', 'cli-tier', '--rpm', '5', '--burst', '2');
	is($rc, 0, 'pgmarket tiers set') or diag $err;
	($rc, $out, $err) = $cli_run->('', 'tiers');
	like($out, qr/^cli-tier\s+5\s+-\s+2$/m, 'pgmarket tiers lists it, "-" for no limit');
	like($out, qr/^free\s+60\s+40000\s+10$/m, 'and the default tiers');
	($rc, $out, $err) = $cli_run->('', 'tiers', 'set', 'cli-tier', '--rpm', '-3');
	is($rc, 2, 'a negative limit is a usage error');
	my $k2 = $n->safe_psql('postgres', 'SELECT api_key FROM t.k WHERE n = 2');
	# the crash above forgave its window: use it up again
	$n->safe_psql('postgres',
		"SELECT t.run(\$\$SELECT 1 FROM pgmarket.charge_api_key('$k2', 1, 'm-tiny')\$\$) FROM generate_series(1, 2)");
	($rc, $out, $err) = $cli_run->("$k2\n", 'tiers', 'check');
	ok($rc == 1 && $out =~ /^allowed\s+no$/m && $out =~ /^remaining_requests\s+0$/m,
		'pgmarket tiers check: the key on stdin must wait (exit 1)')
	  or diag "$out\n$err";
	($rc, $out, $err) = $cli_run->("sk_live_nope\n", 'tiers', 'check');
	ok($rc == 3 && $err =~ /invalid API key/, 'and a key that does not verify fails (exit 3: the server refused)')
	  or diag "$out\n$err";
}

$_->stop for values %nodes;
done_testing();
