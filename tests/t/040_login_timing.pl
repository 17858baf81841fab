# authenticate takes comparable time whatever the outcome: a right or wrong
# password for an Argon2id user, a wrong password for a user of every hash
# format pgmarket keeps (Argon2id of another cost; Django pbkdf2_sha256 at
# 1,000 and 100,000 rounds; Werkzeug pbkdf2:sha256 at 100,000; passlib
# $pbkdf2-sha256$ at 29,000, its default; bcrypt $2b$ and $2y$ at cost 10),
# an unknown username or email, a deactivated user of every format, and a
# stored hash beyond the bounds (a user without a password and a malformed
# stored hash take that path too).  The imported formats are timed before
# their first successful login, which would replace them by Argon2id.
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
	SELECT pgmarket.import_user('f0000000-0000-4000-8000-000000000003',
	    'werkzeug@example.com', 'werkzeug',
	    'pbkdf2:sha256:100000$TimingSalt0123$8b004abf4cec82959ae6f1959d90b0e43b54cf4b6793c199d3ec8f96701c1448');
	SELECT pgmarket.import_user('f0000000-0000-4000-8000-000000000004',
	    'passlib@example.com', 'passlib',
	    '$pbkdf2-sha256$29000$KCkqKywtLi8wMTIzNDU2Nw$.wvVgq/DILqSP0KdsiyFAOE2ydfIRdGbOmj9zoQQ4sI');
	SELECT pgmarket.import_user('f0000000-0000-4000-8000-000000000005',
	    'bcrypt@example.com', 'bcrypt',
	    '$2b$10$TimingSaltForBcrypt01uOcoaPURXZPuqgQ760w0eb1CzMW/MmvC');
	SELECT pgmarket.import_user('f0000000-0000-4000-8000-000000000006',
	    'bcrypt2y@example.com', 'bcrypt2y',
	    '$2y$10$TimingSaltForBcrypt01uOcoaPURXZPuqgQ760w0eb1CzMW/MmvC');
	SELECT pgmarket.import_user('f0000000-0000-4000-8000-000000000007',
	    'argon8m@example.com', 'argon8m',
	    '$argon2id$v=19$m=8192,t=1,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k');
	SELECT pgmarket.deactivate_user(
	    pgmarket.create_user('gone@example.com', 'gone', 'right password'));
	-- deactivated users of every imported format (their right passwords)
	SELECT pgmarket.import_user(('f0000000-0000-4000-8000-00000000010' || n)::uuid,
	    'gone' || n || '@example.com', 'gone_' || f, h)
	  FROM (VALUES
	    (1, 'django', 'pbkdf2_sha256$100000$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o='),
	    (2, 'werkzeug', 'pbkdf2:sha256:100000$TimingSalt0123$8b004abf4cec82959ae6f1959d90b0e43b54cf4b6793c199d3ec8f96701c1448'),
	    (3, 'passlib', '$pbkdf2-sha256$29000$KCkqKywtLi8wMTIzNDU2Nw$.wvVgq/DILqSP0KdsiyFAOE2ydfIRdGbOmj9zoQQ4sI'),
	    (4, 'bcrypt', '$2b$10$TimingSaltForBcrypt01uOcoaPURXZPuqgQ760w0eb1CzMW/MmvC')) AS g(n, f, h);
	SELECT pgmarket.deactivate_user(('f0000000-0000-4000-8000-00000000010' || n)::uuid)
	  FROM generate_series(1, 4) AS n;
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
	    (8, 'hash beyond the bounds', 'costly', 'right password'),
	    (9, 'werkzeug 100000 rounds, wrong password', 'werkzeug', 'wrong password'),
	    (10, 'passlib 29000 rounds, wrong password', 'passlib@example.com', 'wrong password'),
	    (11, 'bcrypt 2b cost 10, wrong password', 'bcrypt', 'wrong password'),
	    (12, 'bcrypt 2y cost 10, wrong password', 'bcrypt2y@example.com', 'wrong password'),
	    (13, 'argon2id 8 MiB, wrong password', 'argon8m', 'wrong password'),
	    (14, 'deactivated django user', 'gone_django', 'password'),
	    (15, 'deactivated werkzeug user', 'gone2@example.com', 'right password'),
	    (16, 'deactivated passlib user', 'gone_passlib', 'right password'),
	    (17, 'deactivated bcrypt user', 'gone_bcrypt', 'right password');

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
	'1:true 2:false 3:false 4:false 5:false 6:false 7:false 8:false 9:false '
	  . '10:false 11:false 12:false 13:false 14:false 15:false 16:false 17:false',
	'only the right password of an active user logs in');

my $out = $node->safe_psql('postgres', 'SELECT name, ms FROM fastest_logins(7)');
my %ms;
foreach my $line (split /\n/, $out)
{
	my ($name, $ms) = split /\|/, $line;
	$ms{$name} = $ms;
	note sprintf('%-42s %8.1f ms', $name, $ms);
}
is(scalar keys %ms, 17, 'every case was timed');

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
