# authenticate takes comparable time whatever the outcome: a right or wrong
# password for an Argon2id user, a wrong password for an imported
# pbkdf2_sha256 user (1,000 and 100,000 rounds), an unknown username or
# email, a deactivated user, and a stored hash beyond the bounds (a user
# without a password and a malformed stored hash take that path too).
# Each path costs one Argon2id
# verification at the standard cost (a hash of another kind is verified on
# top of it), so no path answers early.
#
# The machine running this is shared and loaded: each case is timed on the
# server (clock_timestamp around the call) seven times, interleaved with the
# other cases, and only the fastest run of each counts; the fastest cases
# and the slowest must lie within a factor of 3.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('login_timing');
$node->init;
$node->start;

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION pgmarket;
	SELECT pgmarket.create_user('argon@example.com', 'argon', 'right password');
	SELECT pgmarket.import_user('f0000000-0000-4000-8000-000000000001',
	    'few@example.com', 'few_rounds',
	    'pbkdf2_sha256$1000$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=');
	SELECT pgmarket.import_user('f0000000-0000-4000-8000-000000000002',
	    'many@example.com', 'many_rounds',
	    'pbkdf2_sha256$100000$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=');
	SELECT pgmarket.deactivate_user(
	    pgmarket.create_user('gone@example.com', 'gone', 'right password'));
	SELECT pgmarket.create_user('costly@example.com', 'costly', 'right password');
	UPDATE pgmarket.accounts
	   SET password_hash = '$argon2id$v=19$m=65536,t=11,p=1$1rfEF1iI+VT2BnSTLKLWRg$VrjGm8eWkghZYQKAI/g13vBy5zYMUyS/c492sV6qVyM'
	 WHERE username = 'costly';

	CREATE TABLE login_case (n int, name text, login text, password text);
	INSERT INTO login_case VALUES
	    (1, 'argon2id, right password', 'argon', 'right password'),
	    (2, 'argon2id, wrong password', 'argon@example.com', 'wrong password'),
	    (3, 'pbkdf2 1000 rounds, wrong password', 'few_rounds', 'wrong password'),
	    (4, 'pbkdf2 100000 rounds, wrong password', 'many@example.com', 'wrong password'),
	    (5, 'unknown username', 'nobody', 'wrong password'),
	    (6, 'unknown email', 'nobody@example.com', 'wrong password'),
	    (7, 'deactivated user', 'gone', 'right password'),
	    (8, 'hash beyond the bounds', 'costly', 'right password');

	-- the fastest of seven runs of each case, the cases interleaved
	CREATE FUNCTION fastest_logins(runs int)
	    RETURNS TABLE (name text, ms float8) LANGUAGE plpgsql AS $$
	DECLARE
	    c record;
	    t0 timestamptz;
	    r int;
	BEGIN
	    CREATE TEMP TABLE timing (n int, ms float8);
	    FOR r IN 1 .. runs LOOP
	        FOR c IN SELECT * FROM login_case ORDER BY n LOOP
	            t0 := clock_timestamp();
	            PERFORM pgmarket.authenticate(c.login, c.password);
	            INSERT INTO timing VALUES
	                (c.n, extract(epoch FROM clock_timestamp() - t0) * 1000);
	        END LOOP;
	    END LOOP;
	    RETURN QUERY SELECT l.name, min(t.ms) FROM timing t
	        JOIN login_case l USING (n) GROUP BY l.n, l.name ORDER BY l.n;
	END $$;
});

# the outcomes first: only the right password of the active user logs in
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(n || ':' || (pgmarket.authenticate(login, password) IS NOT NULL), ' ' ORDER BY n)
	  FROM login_case}),
	'1:true 2:false 3:false 4:false 5:false 6:false 7:false 8:false',
	'only the right password of an active user logs in');

my $out = $node->safe_psql('postgres', 'SELECT name, ms FROM fastest_logins(7)');
my %ms;
foreach my $line (split /\n/, $out)
{
	my ($name, $ms) = split /\|/, $line;
	$ms{$name} = $ms;
	note sprintf('%-40s %8.1f ms', $name, $ms);
}
is(scalar keys %ms, 8, 'every case was timed');

my ($fastest) = sort { $ms{$a} <=> $ms{$b} } keys %ms;
my ($slowest) = sort { $ms{$b} <=> $ms{$a} } keys %ms;
ok( $ms{$slowest} <= 3 * $ms{$fastest},
	sprintf('slowest (%s, %.1f ms) within 3x of fastest (%s, %.1f ms)',
		$slowest, $ms{$slowest}, $fastest, $ms{$fastest}));

# the Argon2id verification is the floor: no case answers without it
ok($ms{$fastest} >= 0.25 * $ms{'argon2id, wrong password'},
	'no case answers much faster than an Argon2id verification');

$node->stop;
done_testing();
