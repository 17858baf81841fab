-- The password hashes that migrated services hold: Werkzeug
-- (pbkdf2:sha256:), passlib ($pbkdf2-sha256$, adapted base64) and bcrypt
-- ($2a$, $2b$, $2y$ through libcrypt), beside Django's pbkdf2_sha256 and
-- Argon2id (sql/passwords.sql): fixed vectors, truncated and altered
-- hashes, bounds, create_user_hashed and the re-hash at the first login.
--
-- The vectors were made with Python's hashlib.pbkdf2_hmac (the PBKDF2
-- formats, as Werkzeug and passlib compute them) and with libcrypt's
-- crypt_r (bcrypt); their passwords are 'correct horse' unless a row says.
\set VERBOSITY terse
SET statement_timeout = '20s';
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- verify_password's answer, or the error's SQLSTATE
CREATE FUNCTION pg_temp.outcome(pw text, h text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN pgmarket.verify_password(pw, h)::text;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
-- create_user_hashed for a throwaway user; 'stored' or the error
CREATE FUNCTION pg_temp.try_store(h text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmarket.create_user_hashed('probe@example.com', 'probe', h,
                                        id => '7d000000-0000-4000-8000-0000000000ff');
    DELETE FROM pgmarket.balances WHERE user_id = '7d000000-0000-4000-8000-0000000000ff';
    DELETE FROM pgmarket.accounts WHERE id = '7d000000-0000-4000-8000-0000000000ff';
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
    ok := pgmarket.verify_password('correct horse', h);
    RETURN ok::text || CASE WHEN clock_timestamp() - t0 < interval '50 ms'
                            THEN ', at once' ELSE ', slowly' END;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE TEMP TABLE vec (name text PRIMARY KEY, hash text, password text,
    login text GENERATED ALWAYS AS (replace(replace(name, ' ', '_'), '-', '_')) STORED);
INSERT INTO vec (name, hash, password) VALUES
    ('werkzeug', 'pbkdf2:sha256:1000$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135', 'correct horse'),
    ('werkzeug utf-8', 'pbkdf2:sha256:1000$NaCl4Werkzeug123$1855158808e2e6b7c2b88ead4fa3c648f0387a6e2ce6288ddb9107708c2fb669', 'pässwörd'),
    ('passlib', '$pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M', 'correct horse'),
    ('passlib 29000', '$pbkdf2-sha256$29000$AQIDBAUGBwgJCgsMDQ4PEA$w1vBRt/bq4DEPHOLYVnuzRZyx.DDhbXawXxlnyt0FGU', 'correct horse'),
    ('passlib dots', '$pbkdf2-sha256$1000$........................$HKamUwdN./EFDoLIKYWvQMf7YluZcgOGkXd1gx6cJgE', 'correct horse'),
    ('bcrypt 2a', '$2a$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e', 'correct horse'),
    ('bcrypt 2b', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e', 'correct horse'),
    ('bcrypt 2y', '$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e', 'correct horse'),
    ('bcrypt cost 10', '$2b$10$abcdefghijklmnopqrstuu23JPZtHcGhwXSF41f93o/7vBdDut3Xu', 'correct horse'),
    ('bcrypt 72 bytes', '$2b$04$0123456789abcdefghijkuS2oNdylzRqHgoUhdHwdLxPI6Qj9CJpu', repeat('a', 72)),
    ('bcrypt utf-8', '$2y$05$ZYXWVUTSRQPONMLKJIHGFeh3HZR8qkeZW5B4ZfyCdW4BwNA4EPwJ6', 'pässwörd');

-- every vector verifies its password and no other
SELECT name, pgmarket.verify_password(password, hash) AS right_password,
       pgmarket.verify_password(password || 'x', hash) AS longer,
       pgmarket.verify_password(left(password, -1), hash) AS shorter,
       pgmarket.verify_password('Correct horse', hash) AS other
  FROM vec ORDER BY name;
-- bcrypt reads 72 bytes of a password and no more (libcrypt, as every bcrypt)
SELECT pgmarket.verify_password(repeat('a', 73),
       '$2b$04$0123456789abcdefghijkuS2oNdylzRqHgoUhdHwdLxPI6Qj9CJpu') AS bcrypt_73_bytes;

-- every proper prefix of every vector: never a match; malformed (22023),
-- or a shorter well-formed hash that does not match
SELECT name, string_agg(o || ' x' || n, ', ' ORDER BY o) AS prefixes
  FROM (SELECT name, o, count(*) AS n
          FROM vec, generate_series(1, length(hash) - 1) AS cut,
               LATERAL pg_temp.outcome(password, left(hash, cut)) AS o
         WHERE name NOT IN ('bcrypt cost 10', 'passlib 29000')
         GROUP BY name, o) s
 GROUP BY name ORDER BY name;
-- every vector with one character changed (to '!', to 'A' or to '.'):
-- never a match
SELECT name, bool_or(o = 'true') AS any_match, count(*) FILTER (WHERE o = '22023') AS malformed,
       count(*) FILTER (WHERE o = 'false') AS no_match
  FROM vec, generate_series(1, length(hash)) AS pos, unnest(ARRAY['!', 'A', '.']) AS c,
       LATERAL pg_temp.outcome(password, overlay(hash PLACING c FROM pos FOR 1)) AS o
 WHERE name NOT IN ('bcrypt cost 10', 'passlib 29000')
   AND substr(hash, pos, 1) <> c
 GROUP BY name ORDER BY name;

-- malformed hashes of the new formats: not a hash at all (22023)
SELECT h, pg_temp.outcome('correct horse', h) FROM unnest(ARRAY[
    -- Werkzeug: rounds written out, plain decimal; lower-case hex of 32 bytes
    'pbkdf2:sha256$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    'pbkdf2:sha256:$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    'pbkdf2:sha256:01000$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    'pbkdf2:sha256:0$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    'pbkdf2:sha256:-1000$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    'pbkdf2:sha1:1000$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    'pbkdf2:sha512:1000$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    'pbkdf2:sha256:1000$$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    'pbkdf2:sha256:1000$NaCl4Werkzeug123$A656D6309493E842C775CB22EE9DD136CC3D07A6088FA52ACD27899262AD1135',
    'pbkdf2:sha256:1000$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad113',
    'pbkdf2:sha256:1000$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135aa',
    'pbkdf2:sha256:1000$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136',
    'pbkdf2:sha256:1000$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd1',
    'pbkdf2:sha256:1000$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135$',
    'pbkdf2:sha256:1000$' || repeat('s', 129) || '$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    -- passlib: '.' for '+', no padding, a 32-byte key, a salt of 1 to 128 bytes
    '$pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA$w1vBRt/bq4DEPHOLYVnuzRZyx+DDhbXawXxlnyt0FGU',
    '$pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA==$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M',
    '$pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M=',
    '$pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8',
    '$pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8MAA',
    '$pbkdf2-sha256$1000$$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M',
    '$pbkdf2-sha256$1000$A$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M',
    '$pbkdf2-sha256$1000$' || repeat('A', 172) || '$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M',
    '$pbkdf2-sha256$01000$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M',
    '$pbkdf2-sha256$$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M',
    '$pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M$',
    '$pbkdf2-sha512$1000$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M',
    '$pbkdf2$1000$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M',
    -- bcrypt: 60 characters of its alphabet, cost 04 to 31, unused bits zero
    '$2x$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
    '$2$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
    '$2b$03$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
    '$2b$32$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
    '$2b$4$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
    '$2b$004$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
    '$2b$04$abcdefghijklmnopqrstuvjydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
    '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6f',
    '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6',
    '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6eu',
    '$2b$04$abcdefghijklmnopqrstuujydOTSfIH+d5oUHpsygqV5X9xJLQc6e',
    '$2b$04$abcdefghijklmnopqrstuujydOTSfIH=d5oUHpsygqV5X9xJLQc6e',
    '$2b$04$abcdefghijklmnopqrstu$jydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
    -- oversized: past 1024 characters, whatever the format
    'pbkdf2:sha256:1000$' || repeat('s', 1100) || '$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    '$pbkdf2-sha256$1000$AQIDBAUGBwgJCgsMDQ4PEA$' || repeat('A', 1100),
    '$2b$04$' || repeat('a', 1100)
]) AS h;

-- bounds: PBKDF2 up to 2,000,000 iterations, bcrypt up to cost 14;
-- beyond them refused when stored ...
SELECT r, pg_temp.try_store('pbkdf2:sha256:' || r || '$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135') AS werkzeug,
       pg_temp.try_store('$pbkdf2-sha256$' || r || '$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M') AS passlib
  FROM unnest(ARRAY['1', '1999999', '2000000', '2000001', '99999999999999999999']) AS r;
SELECT c, pg_temp.try_store('$2b$' || c || '$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e') AS bcrypt
  FROM unnest(ARRAY['04', '13', '14', '15', '31']) AS c;
-- ... and never run when met: false at once
SELECT h, pg_temp.quick_verify(h) FROM unnest(ARRAY[
    'pbkdf2:sha256:2000001$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    'pbkdf2:sha256:99999999999$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135',
    '$pbkdf2-sha256$2000001$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M',
    '$2b$15$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
    '$2y$31$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e'
]) AS h;
-- the refusals added no account
SELECT count(*) AS probe_accounts FROM pgmarket.accounts
 WHERE id = '7d000000-0000-4000-8000-0000000000ff' OR username = 'probe';

-------------------------------------------------------------------------------
-- create_user_hashed: every format logs in and is replaced by Argon2id
-------------------------------------------------------------------------------
SELECT pgmarket.create_user_hashed(login || '@example.com', login, hash,
           id => ('7d000000-0000-4000-8000-0000000000' || lpad(n::text, 2, '0'))::uuid) IS NOT NULL AS created
  FROM (SELECT name, login, hash, row_number() OVER (ORDER BY name) AS n FROM vec) s
 ORDER BY n;
SELECT v.name, a.password_hash = v.hash AS kept_as_given, a.roles
  FROM vec v JOIN pgmarket.accounts a ON a.email = v.login || '@example.com'
 ORDER BY v.name;
-- a wrong password: NULL, and the hash stays
SELECT v.name, pgmarket.authenticate(v.login || '@example.com', 'wrong password') IS NULL AS refused,
       a.password_hash = v.hash AS kept
  FROM vec v JOIN pgmarket.accounts a ON a.email = v.login || '@example.com'
 ORDER BY v.name;
-- the right one: the user, and the hash becomes a standard Argon2id one
SELECT v.name, pgmarket.authenticate(v.login || '@example.com', v.password) = a.id AS logged_in
  FROM vec v JOIN pgmarket.accounts a ON a.email = v.login || '@example.com'
 ORDER BY v.name;
SELECT v.name, a.password_hash LIKE '$argon2id$v=19$m=65536,t=2,p=1$%' AS rehashed,
       a.last_login_at IS NOT NULL AS stamped
  FROM vec v JOIN pgmarket.accounts a ON a.email = v.login || '@example.com'
 ORDER BY v.name;
SELECT v.name, pgmarket.authenticate(v.login || '@example.com', v.password) = a.id AS again,
       pgmarket.authenticate(v.login || '@example.com', 'wrong password') IS NULL AS still_refused
  FROM vec v JOIN pgmarket.accounts a ON a.email = v.login || '@example.com'
 ORDER BY v.name;

-- the same checks as create_user, and the hash's: nothing added, the hash
-- never in a message
SELECT count(*) AS accounts_before FROM pgmarket.accounts \gset
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed(NULL, 'h_null', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', NULL, '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', 'h_null', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', 'h_null', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', 'h_null', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e', id => NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('not an email', 'h_bad', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', 'h', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', 'h_plain', 'correct horse')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', 'h_md5', 'md5$abc$0123456789abcdef')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', 'h_argon2i',
       '$argon2i$v=19$m=8192,t=3,p=1$rWL3n+zpW/oKXncXBFbPTw$JvTQLRX9tLKQSwsI0CtMjVwx8YR8O4ZQISKgjQKzpFU')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', 'h_costly', '$2b$15$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', 'h_role', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e', '{nosuchrole}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('Werkzeug@Example.com', 'h_dup', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', 'WERKZEUG', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('h@example.com', 'h_dupid', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
       id => '7d000000-0000-4000-8000-000000000001')$$);
SELECT count(*) - :accounts_before AS accounts_added FROM pgmarket.accounts;

-- pgmarket_app may call it, with roles and an id; the balance comes with it
SET ROLE pgmarket_app;
SELECT pgmarket.create_user_hashed(' App@Example.COM ', 'app_hashed',
       '$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e',
       '{user,developer}', '7d000000-0000-4000-8000-0000000000a0');
SELECT email, username, roles, is_active FROM pgmarket.users WHERE username = 'app_hashed';
SELECT total_balance, available_balance FROM pgmarket.get_balance('7d000000-0000-4000-8000-0000000000a0');
SELECT pgmarket.authenticate('app_hashed', 'correct horse') AS app_login;
RESET ROLE;

-- a stored hash beyond the bounds (written past the API) is never run:
-- authenticate answers NULL (after the dummy Argon2id work alone, see
-- tests/t/040_login_timing.pl) and keeps it
CREATE TEMP TABLE costly (h text);
INSERT INTO costly VALUES
    ('$2b$15$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e'),
    ('$2y$31$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e'),
    ('pbkdf2:sha256:2000001$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135'),
    ('$pbkdf2-sha256$99999999$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M');
CREATE FUNCTION pg_temp.login_with(h text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pgmarket.accounts SET password_hash = h WHERE username = 'bcrypt_2a';
    RETURN coalesce(pgmarket.authenticate('bcrypt_2a', 'correct horse')::text, 'refused')
           || CASE WHEN (SELECT password_hash FROM pgmarket.accounts
                          WHERE username = 'bcrypt_2a') = h THEN ', kept' ELSE ', replaced' END;
END $$;
SELECT left(h, 24) AS hash, pg_temp.login_with(h) FROM costly;

-- import_user keeps every format too
SELECT name, pgmarket.import_user(('7d000000-0000-4000-8000-0000000001' || lpad(n::text, 2, '0'))::uuid,
           'fmtimp' || n || '@example.com', 'fmtimp_' || n, hash) IS NOT NULL AS imported
  FROM (SELECT name, hash, row_number() OVER (ORDER BY name) AS n FROM vec) s
 ORDER BY n;
SELECT count(*) AS kept_as_given FROM pgmarket.accounts a JOIN vec v ON a.password_hash = v.hash
 WHERE a.username LIKE 'fmtimp\_%';
RESET statement_timeout;

-- bcrypt checks 72 bytes: a longer password that matches may not be the
-- one the hash was made of, so its login keeps the bcrypt hash (an
-- Argon2id of it would lock the owner out); a login of 72 bytes or fewer
-- replaces it as every other format's does
SELECT pgmarket.create_user_hashed('bclong@example.com', 'bc_long',
       '$2b$04$0123456789abcdefghijkuS2oNdylzRqHgoUhdHwdLxPI6Qj9CJpu') IS NOT NULL AS created;
SELECT pgmarket.authenticate('bc_long', repeat('a', 72) || 'WRONG') IS NOT NULL AS longer_accepted_by_bcrypt;
SELECT password_hash = '$2b$04$0123456789abcdefghijkuS2oNdylzRqHgoUhdHwdLxPI6Qj9CJpu' AS bcrypt_kept
  FROM pgmarket.accounts WHERE username = 'bc_long';
SELECT pgmarket.authenticate('bc_long', repeat('a', 72)) IS NOT NULL AS owner_still_logs_in;
SELECT password_hash LIKE '$argon2id$%' AS replaced_at_72_bytes
  FROM pgmarket.accounts WHERE username = 'bc_long';
SELECT pgmarket.authenticate('bc_long', repeat('a', 72)) IS NOT NULL AS owner_after_upgrade,
       pgmarket.authenticate('bc_long', repeat('a', 72) || 'WRONG') IS NULL AS longer_refused_after;
