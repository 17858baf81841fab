-- Password hashes: strict parsing, bounded cost (refused when stored, never
-- run when met), query cancel inside PBKDF2, the password length bound.
\set VERBOSITY terse
-- a hash beyond the bounds that did run would take long: fail instead
SET statement_timeout = '10s';
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- import a hash for a throwaway user; 'stored' or the error
CREATE FUNCTION pg_temp.try_import(h text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmarket.import_user('7c000000-0000-4000-8000-0000000000ff',
                                 'probe@example.com', 'probe', h);
    DELETE FROM pgmarket.balances WHERE user_id = '7c000000-0000-4000-8000-0000000000ff';
    DELETE FROM pgmarket.accounts WHERE id = '7c000000-0000-4000-8000-0000000000ff';
    RETURN 'stored';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- verify_password's answer and whether it came at once (under 50 ms)
CREATE FUNCTION pg_temp.quick_verify(h text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    ok boolean;
BEGIN
    ok := pgmarket.verify_password('password', h);
    RETURN ok::text || CASE WHEN clock_timestamp() - t0 < interval '50 ms'
                            THEN ', at once' ELSE ', slowly' END;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- PBKDF2 iterations: 1 to 2,000,000
SELECT r, pg_temp.try_import('pbkdf2_sha256$' || r || '$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=')
  FROM unnest(ARRAY['1', '1999999', '2000000', '2000001', '10000000',
                    '99999999999999999999999']) AS r;
-- Argon2id memory: up to 262144 KiB (256 MiB); time cost up to 10; lanes up to 16
SELECT params, pg_temp.try_import('$argon2id$v=19$' || params || '$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k')
  FROM unnest(ARRAY['m=262143,t=1,p=1', 'm=262144,t=1,p=1', 'm=262145,t=1,p=1',
                    'm=524288,t=1,p=1', 'm=65536,t=9,p=1', 'm=65536,t=10,p=1',
                    'm=65536,t=11,p=1', 'm=65536,t=2000000,p=1',
                    'm=65536,t=2,p=16', 'm=65536,t=2,p=17']) AS params;

-- malformed parameter text is not a hash at all
SELECT h, pg_temp.try_import(h) FROM unnest(ARRAY[
    'pbkdf2_sha256$+1000$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    'pbkdf2_sha256$ 1000$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    'pbkdf2_sha256$01000$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    'pbkdf2_sha256$-1$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    'pbkdf2_sha256$0$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    'pbkdf2_sha256$1e6$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    'pbkdf2_sha256$$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    'pbkdf2_sha256$1000$$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    'pbkdf2_sha256$1000$sa lt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    'pbkdf2_sha256$1000$salt$',
    'pbkdf2_sha256$1000$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o',
    'pbkdf2_sha256$1000$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=$',
    'pbkdf2_sha256$1000$salt$xeR41ZKIyEGqUw22',
    'pbkdf2_sha256$1000$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0rxeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    'pbkdf2_sha256$1000$' || repeat('s', 129) || '$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    '$argon2id$v=19$m=065536,t=2,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$v=19$m= 65536,t=2,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$v=19$m=65536,t=+2,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$v=19$m=65536,t=0,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$v=19$m=65536,t=2,p=0$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$v=19$m=4,t=2,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$v=19$t=2,m=65536,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$v=18$m=65536,t=2,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$m=65536,t=2,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$v=19$m=65536,t=2,p=1$7c2gt3O$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$v=19$m=65536,t=2,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC',
    '$argon2id$v=19$m=65536,t=2,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k=',
    '$argon2id$v=19$m=65536,t=2,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k$',
    '$argon2id$v=19$m=65536,t=2,p=1,x=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2i$v=19$m=8192,t=3,p=1$rWL3n+zpW/oKXncXBFbPTw$JvTQLRX9tLKQSwsI0CtMjVwx8YR8O4ZQISKgjQKzpFU'
]) AS h;

-- the refusals above added no account
SELECT count(*) AS probe_accounts FROM pgmarket.accounts
 WHERE id = '7c000000-0000-4000-8000-0000000000ff' OR username = 'probe';

-- import_user names the user, never the hash, and adds nothing
SELECT count(*) AS accounts_before FROM pgmarket.accounts \gset
SELECT pg_temp.err($$SELECT pgmarket.import_user('7c000000-0000-4000-8000-000000000001',
       'slow@example.com', 'slow',
       'pbkdf2_sha256$2000001$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=')$$);
SELECT pg_temp.err($$SELECT pgmarket.import_user('7c000000-0000-4000-8000-000000000001',
       'slow@example.com', 'slow',
       '$argon2id$v=19$m=524288,t=1,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k')$$);
SELECT pg_temp.err($$SELECT pgmarket.import_user('7c000000-0000-4000-8000-000000000001',
       'slow@example.com', 'slow', 'pbkdf2_sha256$ 1000$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=')$$);
SELECT count(*) - :accounts_before AS accounts_added FROM pgmarket.accounts;

-- verify_password: a hash beyond the bounds is false at once, never run
SELECT h, pg_temp.quick_verify(h) FROM unnest(ARRAY[
    'pbkdf2_sha256$2000001$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    'pbkdf2_sha256$99999999999$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
    '$argon2id$v=19$m=524288,t=1,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$v=19$m=65536,t=11,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k',
    '$argon2id$v=19$m=8192,t=1,p=100$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k'
]) AS h;
-- malformed is an error, as before
SELECT pg_temp.quick_verify('pbkdf2_sha256$01$salt$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs=');
-- within the bounds, hashes of other costs verify (Argon2id at 8 MiB and one
-- pass, Argon2i at 8 MiB and three passes, made by libsodium)
SELECT pgmarket.verify_password('tiger',
       '$argon2id$v=19$m=8192,t=1,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k') AS argon2id_8mib,
       pgmarket.verify_password('tigre',
       '$argon2id$v=19$m=8192,t=1,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k') AS wrong,
       pgmarket.verify_password('tiger',
       '$argon2i$v=19$m=8192,t=3,p=1$rWL3n+zpW/oKXncXBFbPTw$JvTQLRX9tLKQSwsI0CtMjVwx8YR8O4ZQISKgjQKzpFU') AS argon2i;

-- authenticate: a stored hash beyond the bounds is never run; NULL after
-- the same dummy work as an unknown login
SELECT pgmarket.import_user('7c000000-0000-4000-8000-000000000002', 'costly@example.com',
       'costly', '$argon2id$v=19$m=8192,t=1,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k') IS NOT NULL AS imported;
UPDATE pgmarket.accounts
   SET password_hash = '$argon2id$v=19$m=65536,t=11,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k'
 WHERE username = 'costly';
SELECT pgmarket.authenticate('costly', 'tiger') IS NULL AS over_bound_argon2;
UPDATE pgmarket.accounts
   SET password_hash = 'pbkdf2_sha256$99999999$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o='
 WHERE username = 'costly';
SELECT pgmarket.authenticate('costly@example.com', 'password') IS NULL AS over_bound_pbkdf2;
UPDATE pgmarket.accounts SET password_hash = 'pbkdf2_sha256$ 1$salt$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs='
 WHERE username = 'costly';
SELECT pgmarket.authenticate('costly', 'password') IS NULL AS malformed_stored_hash;

-- a non-standard Argon2id hash logs in and becomes a standard one
UPDATE pgmarket.accounts
   SET password_hash = '$argon2id$v=19$m=8192,t=1,p=1$7c2gt3OMCCpS/qSoBQwYQQ$KqvIuIyIGO7uB11zC+32FcItSrZRvI/0lASe4Dndj7k'
 WHERE username = 'costly';
SELECT pgmarket.authenticate('costly', 'tigre') IS NULL AS wrong_password;
SELECT pgmarket.authenticate('costly', 'tiger') = '7c000000-0000-4000-8000-000000000002' AS logged_in;
SELECT password_hash LIKE '$argon2id$v=19$m=65536,t=2,p=1$%' AS rehashed
  FROM pgmarket.accounts WHERE username = 'costly';

-- PBKDF2 honours statement_timeout (and so query cancel): 2,000,000 rounds,
-- the most allowed, take well over a second
-- (cancelled within a second: an uninterruptible loop would run to its end
-- and meet the cancel only afterwards)
CREATE FUNCTION pg_temp.cancelled(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE q;
    RETURN 'ran to the end';
EXCEPTION WHEN query_canceled THEN
    RETURN SQLSTATE || ': ' || SQLERRM ||
           CASE WHEN clock_timestamp() - t0 < interval '1 s' THEN ', promptly'
                ELSE ', late' END;
END $$;
SET statement_timeout = '200ms';
SELECT pg_temp.cancelled($$SELECT pgmarket.verify_password('password',
       'pbkdf2_sha256$2000000$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=')$$);
SET statement_timeout = '10s';

-- a password has 1 to 1024 bytes
SELECT length(pgmarket.hash_password(repeat('p', 1024))) > 0 AS at_the_limit;
SELECT pg_temp.err($$SELECT pgmarket.hash_password(repeat('p', 1025))$$);
SELECT pg_temp.err($$SELECT pgmarket.verify_password(repeat('p', 1025), 'pbkdf2_sha256$1$salt$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs=')$$);
SELECT pg_temp.err($$SELECT pgmarket.authenticate('costly', repeat('p', 100000))$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('long@example.com', 'longpw', repeat('é', 513))$$);
RESET statement_timeout;
