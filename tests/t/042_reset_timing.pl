# reset_password takes comparable time whatever the token: a valid one, an
# unknown one (well-formed, never issued), one used already, one expired, and
# a text that is no token at all.  Every path hashes the new password with
# Argon2id, computes one keyed hash of the token and makes one index probe,
# so no path answers early.
#
# The machine running this is shared and loaded: each case is timed on the
# server (clock_timestamp around the call) seven times, interleaved with the
# other cases, and only the fastest run of each counts; the fastest case and
# the slowest must lie within a factor of 3.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('reset_timing');
$node->init;
my $keyfile = $node->data_dir . '/reset_timing.key';
open(my $fh, '>', $keyfile) or die "cannot write $keyfile: $!";
print $fh '1:' . ('3d' x 32) . "\n";
close($fh);
chmod(0600, $keyfile) or die "chmod $keyfile: $!";
$node->append_conf('postgresql.conf', "pgmarket.master_key_file = 'reset_timing.key'\n");
$node->start;

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION pgmarket;
	SELECT pgmarket.create_user('timing@example.com', 'timing', 'first password',
	                            '{user}', 'ac600000-0000-4000-8000-000000000001');
	SELECT pgmarket.create_user('other@example.com', 'other', 'first password',
	                            '{user}', 'ac600000-0000-4000-8000-000000000002');

	-- a used token and an expired one, of a user of their own (a valid reset
	-- of the first user uses up that user's other tokens)
	CREATE TABLE reset_case (n int, name text, token text);
	INSERT INTO reset_case VALUES
	    (1, 'valid token', NULL),
	    (2, 'unknown token', 'pwr_000000000001_' || repeat('Q', 43)),
	    (3, 'used token', pgmarket.create_password_reset('ac600000-0000-4000-8000-000000000002')),
	    (4, 'expired token', pgmarket.create_password_reset('ac600000-0000-4000-8000-000000000002', '1 second')),
	    (5, 'no token at all', 'not a token');
	SELECT pgmarket.reset_password(token, 'used once') FROM reset_case WHERE n = 3;
	UPDATE pgmarket.password_resets SET expires_at = now() - interval '1 second'
	 WHERE used_at IS NULL;

	-- the fastest of seven runs of each case, the cases interleaved; the
	-- valid case gets a fresh token before each run, outside the timing
	CREATE FUNCTION fastest_resets(runs int)
	    RETURNS TABLE (name text, ms float8, answered text) LANGUAGE plpgsql AS $$
	DECLARE
	    c record;
	    t0 timestamptz;
	    r int;
	    tok text;
	    got uuid;
	BEGIN
	    CREATE TEMP TABLE timing (n int, ms float8, answered text);
	    FOR r IN 1 .. runs LOOP
	        FOR c IN SELECT * FROM reset_case ORDER BY n LOOP
	            tok := coalesce(c.token, pgmarket.create_password_reset(
	                'ac600000-0000-4000-8000-000000000001'));
	            t0 := clock_timestamp();
	            got := pgmarket.reset_password(tok, 'new password ' || r);
	            INSERT INTO timing VALUES
	                (c.n, extract(epoch FROM clock_timestamp() - t0) * 1000,
	                 coalesce(got::text, 'NULL'));
	        END LOOP;
	    END LOOP;
	    RETURN QUERY SELECT l.name, min(t.ms), string_agg(DISTINCT t.answered, ',')
	        FROM timing t JOIN reset_case l USING (n) GROUP BY l.n, l.name ORDER BY l.n;
	END $$;
});

my $out = $node->safe_psql('postgres', 'SELECT name, ms, answered FROM fastest_resets(7)');
my (%ms, %answered);
foreach my $line (split /\n/, $out)
{
	my ($name, $ms, $answered) = split /\|/, $line;
	$ms{$name} = $ms;
	$answered{$name} = $answered;
	note sprintf('%-20s %8.1f ms  %s', $name, $ms, $answered);
}
is(scalar keys %ms, 5, 'every case was timed');
is($answered{'valid token'}, 'ac600000-0000-4000-8000-000000000001',
	'a valid token resets, every time');
is(join(' ', map { $answered{$_} } ('unknown token', 'used token', 'expired token', 'no token at all')),
	'NULL NULL NULL NULL', 'the others reset nothing');

my ($fastest) = sort { $ms{$a} <=> $ms{$b} } keys %ms;
my ($slowest) = sort { $ms{$b} <=> $ms{$a} } keys %ms;
ok( $ms{$slowest} <= 3 * $ms{$fastest},
	sprintf('slowest (%s, %.1f ms) within 3x of fastest (%s, %.1f ms)',
		$slowest, $ms{$slowest}, $fastest, $ms{$fastest}));

is($node->safe_psql('postgres',
		"SELECT pgmarket.authenticate('other', 'used once') IS NOT NULL"),
	't', 'the used, expired and unknown tokens changed no password');

$node->stop;
done_testing();
