-- The sealed forms of the password and platform key calls (sealed.c):
-- every argument check and every path's SQLSTATE.
--
-- The blobs below were sealed once, with crypto_box_seal, to the public key
-- of the master key 1:abab...ab (64 hex digits), which this test writes as
-- pgmarket_test.key.  Each holds format version 1, a tag ('P' password,
-- 'K' platform key), a time of sealing and a secret; most were sealed at
-- 2020-01-01 00:00 UTC, so the session widens pgmarket.sealed_max_age (a
-- superuser setting) to accept them, and then narrows it back to show that
-- the default refuses them.  Valid platform keys are random, so the calls
-- that verify and charge a real key are tested through the client library
-- (client/tests), which seals every key it sends.
\set VERBOSITY terse
LOAD 'pgmarket';
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
COPY (SELECT '1:' || repeat('ab', 32))
    TO PROGRAM 'umask 077 && cat > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key';
SELECT encode(pgmarket.vault_public_key(), 'hex') =
       'b7a38ec261180a8ab5d589fc9bde64951585943e9ce53964489773439b95ed49' AS the_key_the_blobs_were_sealed_to;

CREATE TEMP TABLE blob (name text PRIMARY KEY, b bytea NOT NULL);
INSERT INTO blob VALUES
  -- 'P' 2020-01-01: 'correct horse 1', 'wrong horse 1', '' (empty)
  ('pw',       '\x205c193a16d20feecd088a0dc810371faa99d9552070a005372a87194de4f852424719431d494df3fd03f5a48b65540e144b45d476107342e4033b4b214f1be84e60c1ea669ad84559'),
  ('wrong',    '\xec0347ad96a78d7ce750fd8d89f25661ae4f3a9e1775a4282dd479f5a8cc9045dc42438692330672706dbe27612040175dd8fac63b3a83b3b7e6682b9af809821741fa1681e472'),
  ('empty',    '\xb6f94651c88ec1d847d791fdbe98c82c463a0d956886017b6ce431674e764045b644b1a3068df3fa3d08ca72c4f8abe6c0181f5ba4b2016902ca'),
  -- format version 2
  ('v2',       '\xdd5c4bccf19a4f7acf33b7169ffb2511ff8f8c8649fa9fff9edaa983a0b1662e3fcfc4d49d2dc839344625b73165ecc7d7d4a7006a88ded3b6f985df8537a73ba796eb5c029ca2e858'),
  -- 'correct horse 1' tagged as a platform key
  ('pw_as_key','\x01a57d0b76b31e7c3a8a7d4e211930780b51e59b55675144962885f10fed2445418ac3b9168fe7e7975ac22a973fdd7450a801bf419a89a1f4130112c0022a045930e280dbdd1ef509'),
  -- 'P' sealed at 2100-01-01
  ('future',   '\x6a055b6b04978817ec957d98473a86b9eb5d4efda3d8a786c69574f36da9863143515b03556dcf843c1db696bc3831180a0fb8dec0de636b32f110c11a6ab0574e0c1d5fade67dd0d3'),
  -- 'P' holding bytes that are not UTF-8
  ('bad_utf8', '\x3dff2439ad68c0c4c8dee3cfcfaf8063375a38d98408d10afa2e63cc0058c73a8010ad21d9147706ff5791b01e68b60ca35f8726807b1e6fa052137ad8c1866e27075c'),
  -- 'P' sealed to another public key
  ('other',    '\xaa078a9e2ca0e2de0432420b8e64aaaf6e7f8ef9a961dcb92ad192b3a9561f0f05bc8dfbb34e6f17267359f5927d00e8fedda3097d3b46fafe83746cebb16bdd3a0f4f230e040bc457'),
  -- 'K' 2020-01-01: a well-formed key that was never issued
  --   (sk_live_0000000000000000_AAA...), a text that is no key, a short one
  ('key',      '\x01a758045991133970abb5382875c4a773a4a04cdce91c72877df086b15e150fe111a116e317967eb5cd11c0fea0c708fe1cd11616f8a2a9bfdc5c3627b83f22d1e561147172f98356567fec222d4b903bf2c025b8c1c39f6ebc16cc89844e0a39c550c4a0bf376228d8f7df498a51646c601b4c5d4285c26886536690b4'),
  ('not_key',  '\xc3c46a5bb66ee5a7c20e70972a4ee897460bf8230142995250453ab230a6a06159d2940acfbf030e850c904c8c70ce2d6da3f4a7774161f0bc094ba17a2b41e0caab52a750b688b4f1cbd7f6c06589dac34577069acb54ce5f05dc621bb60c99b0e7'),
  ('short_key','\xca6a31bc60ac3ac66aebfab410a6a6a07858ebd474bd36a02c11b22771b97b4439d7f387db2592f0d6d75167e9e5a1038d8d57fbb00b34f88c8fee32ecba13'),
  -- the same key tagged as a password; and sealed at 2100-01-01
  ('key_as_pw','\x75e73fd6355389c2a97155768a5a99d51e0b3b26dd767e8e669c058d119d2b429edb2db34092c9f7eb69cc5054429634b90603162e98add1e39a3434e893d67d55624ed8ee0f8a7d6b5900ec37fe6cb6dbead00438df4584c6dc2d5bf3aaee5207982a806f546578811fdb47e7980484ee2f9f9bfb7602234fbf7f7454c8'),
  ('key_future','\x4932a622da78a2073524c103edd75fc6e56c95a2a34a4a39308b121b5e86342681df6612edf804bacf900fc271505fab06ab168112c9714f70746a753e0c4bee4b4c4f0fcd38aebff5810b7351ce7dad130141035cd623606f981b895a9293187e92123637b7e6321615452bbce93028357d2b32452ff9d4bb6db40d79f0'),
  -- not sealed at all
  ('junk',     decode(repeat('5a', 100), 'hex')),
  ('tiny',     '\x00');
CREATE FUNCTION pg_temp.b(n text) RETURNS bytea LANGUAGE sql AS
    $$ SELECT b FROM blob WHERE name = n $$;
\set prefix '''sk_live_0000000000000000'''

-- the default window refuses a blob sealed in 2020
SHOW pgmarket.sealed_max_age;
SELECT pg_temp.err($$SELECT pgmarket.authenticate_sealed('nobody', pg_temp.b('pw'))$$);
SELECT pg_temp.err($$SELECT pgmarket.hash_password_sealed(pg_temp.b('pw'))$$);
-- only a superuser may widen it
SET ROLE pgmarket_app;
SELECT pg_temp.err($$SET pgmarket.sealed_max_age = '1h'$$);
RESET ROLE;
SET pgmarket.sealed_max_age = '2147483647s';

-- accounts
SELECT pgmarket.create_user_sealed('Sealed1@Example.com', 'sealed_one', pg_temp.b('pw'),
                                   id => '5e000000-0000-4000-8000-000000000001') AS created;
SELECT pgmarket.authenticate_sealed('sealed_one', pg_temp.b('pw')) AS right_password;
SELECT pgmarket.authenticate_sealed('sealed1@example.com', pg_temp.b('pw')) AS by_email;
SELECT pgmarket.authenticate_sealed('sealed_one', pg_temp.b('wrong')) IS NULL AS wrong_password;
SELECT pgmarket.authenticate_sealed('nobody_here', pg_temp.b('pw')) IS NULL AS unknown_login;
-- the plain form sees the same password
SELECT pgmarket.authenticate('sealed_one', 'correct horse 1') AS plain_agrees;
-- no password at all
SELECT pgmarket.create_user_sealed('sealed2@example.com', 'sealed_two',
                                   id => '5e000000-0000-4000-8000-000000000002') AS created_without;
SELECT pgmarket.authenticate_sealed('sealed_two', pg_temp.b('pw')) IS NULL AS no_password_no_login;
SELECT pgmarket.verify_password_sealed(pg_temp.b('pw'), pgmarket.hash_password_sealed(pg_temp.b('pw'))) AS hash_verifies,
       pgmarket.verify_password_sealed(pg_temp.b('wrong'), pgmarket.hash_password_sealed(pg_temp.b('pw'))) AS wrong_does_not,
       pgmarket.verify_password('correct horse 1', pgmarket.hash_password_sealed(pg_temp.b('pw'))) AS plain_agrees;

-- NULLs (22004), before anything else
SELECT pg_temp.err($$SELECT pgmarket.create_user_sealed(NULL, 'sealed_x', pg_temp.b('pw'))$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_sealed('x@example.com', NULL, pg_temp.b('pw'))$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_sealed('x@example.com', 'sealed_x', pg_temp.b('pw'), NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_sealed('x@example.com', 'sealed_x', pg_temp.b('pw'), id => NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.authenticate_sealed(NULL, pg_temp.b('pw'))$$);
SELECT pg_temp.err($$SELECT pgmarket.authenticate_sealed('sealed_one', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.hash_password_sealed(NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.verify_password_sealed(NULL, 'h')$$);
SELECT pg_temp.err($$SELECT pgmarket.verify_password_sealed(pg_temp.b('pw'), NULL)$$);

-- blobs that are not sealed passwords: too short, empty, not opened by
-- this vault, another format, another tag, not text, out of the window
SELECT name, pg_temp.err(format('SELECT pgmarket.authenticate_sealed(%L, pg_temp.b(%L))',
                                'sealed_one', name)) AS authenticate_sealed
  FROM blob WHERE name IN ('tiny', 'empty', 'junk', 'other', 'v2', 'pw_as_key',
                           'bad_utf8', 'future')
 ORDER BY name;
SELECT pg_temp.err($$SELECT pgmarket.create_user_sealed('x@example.com', 'sealed_x', pg_temp.b('key'))$$);
SELECT pg_temp.err($$SELECT pgmarket.hash_password_sealed(pg_temp.b('junk'))$$);
SELECT pg_temp.err($$SELECT pgmarket.verify_password_sealed(pg_temp.b('future'),
    pgmarket.hash_password('pw'))$$);
-- no guessing oracle: a sealed password is never tried against a cheap hash
SELECT pg_temp.err($$SELECT pgmarket.verify_password_sealed(pg_temp.b('pw'),
    'pbkdf2_sha256$1$salt$' || encode(sha256('x'), 'base64'))$$);
SELECT pg_temp.err($$SELECT pgmarket.verify_password_sealed(pg_temp.b('pw'),
    '$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA')$$);
-- nor against the cheap hashes of the other formats (bcrypt below cost 12,
-- Werkzeug and passlib PBKDF2 below 600,000 iterations)
SELECT pg_temp.err($$SELECT pgmarket.verify_password_sealed(pg_temp.b('pw'),
    '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e')$$);
SELECT pg_temp.err($$SELECT pgmarket.verify_password_sealed(pg_temp.b('pw'),
    '$2y$11$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e')$$);
SELECT pg_temp.err($$SELECT pgmarket.verify_password_sealed(pg_temp.b('pw'),
    'pbkdf2:sha256:1000$NaCl4Werkzeug123$a656d6309493e842c775cb22ee9dd136cc3d07a6088fa52acd27899262ad1135')$$);
SELECT pg_temp.err($$SELECT pgmarket.verify_password_sealed(pg_temp.b('pw'),
    '$pbkdf2-sha256$599999$AQIDBAUGBwgJCgsMDQ4PEA$YwKfNMrnHLcz6zlkYSHCNthMmUVmRkplZtxCdAZgV8M')$$);
-- bcrypt at cost 12 is tried (and "pw" is not its password)
SELECT pgmarket.verify_password_sealed(pg_temp.b('pw'),
    '$2b$12$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e') AS bcrypt_12_tried;
-- what the plain functions check, the sealed ones check the same way
SELECT pg_temp.err($$SELECT pgmarket.create_user_sealed('not an email', 'sealed_x', pg_temp.b('pw'))$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_sealed('sealed1@example.com', 'sealed_x', pg_temp.b('pw'))$$);
SELECT pg_temp.err($$SELECT pgmarket.verify_password_sealed(pg_temp.b('pw'), 'not a hash')$$);
SELECT count(*) AS no_user_made FROM pgmarket.users WHERE username = 'sealed_x';

-- platform keys: the public part in the clear, the key sealed
SELECT pgmarket.api_key_partition(:prefix) AS partition_of_the_public_part,
       pgmarket.api_key_partition(:prefix || '_' || repeat('A', 43)) AS of_the_whole_key,
       pgmarket.api_key_partition('sk_live_000000000000000') IS NULL AS too_short_is_null;
SELECT count(*) AS unknown_key_no_row FROM pgmarket.verify_api_key_sealed(:prefix, pg_temp.b('key'));
SELECT count(*) AS short_text_no_row FROM pgmarket.verify_api_key_sealed(:prefix, pg_temp.b('short_key'));
SELECT pg_temp.err($$SELECT pgmarket.charge_api_key_sealed('sk_live_0000000000000000', pg_temp.b('key'), 1, 'm')$$);
SELECT pg_temp.err($$SELECT pgmarket.charge_api_key_sealed('sk_live_0000000000000000', pg_temp.b('short_key'), 1, 'm')$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve_api_key_sealed('sk_live_0000000000000000', pg_temp.b('key'), 1)$$);
-- the public part must be the sealed key's
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_api_key_sealed('sk_test_0000000000000001', pg_temp.b('key'))$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_api_key_sealed('sk_live_0000000000000000', pg_temp.b('not_key'))$$);
SELECT pg_temp.err($$SELECT pgmarket.charge_api_key_sealed('sk_live_000000000000000a', pg_temp.b('key'), 1, 'm')$$);
-- and well-formed
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_api_key_sealed('sk_live_nope', pg_temp.b('key'))$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_api_key_sealed('sk_live_000000000000000G', pg_temp.b('key'))$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve_api_key_sealed('sk_prod_0000000000000000', pg_temp.b('key'), 1)$$);
-- NULLs
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_api_key_sealed(NULL, pg_temp.b('key'))$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_api_key_sealed('sk_live_0000000000000000', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.charge_api_key_sealed(NULL, pg_temp.b('key'), 1, 'm')$$);
SELECT pg_temp.err($$SELECT pgmarket.charge_api_key_sealed('sk_live_0000000000000000', NULL, 1, 'm')$$);
SELECT pg_temp.err($$SELECT pgmarket.charge_api_key_sealed('sk_live_0000000000000000', pg_temp.b('key'), NULL, 'm')$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve_api_key_sealed(NULL, pg_temp.b('key'), 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve_api_key_sealed('sk_live_0000000000000000', NULL, 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve_api_key_sealed('sk_live_0000000000000000', pg_temp.b('key'), NULL)$$);
-- a bad amount is reported before the blob is opened
SELECT pg_temp.err($$SELECT pgmarket.charge_api_key_sealed('sk_live_0000000000000000', pg_temp.b('junk'), 0, 'm')$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve_api_key_sealed('sk_live_0000000000000000', pg_temp.b('junk'), 1.0000001)$$);
-- blobs that are not sealed platform keys
SELECT name, pg_temp.err(format('SELECT * FROM pgmarket.verify_api_key_sealed(%L, pg_temp.b(%L))',
                                'sk_live_0000000000000000', name)) AS verify_api_key_sealed
  FROM blob WHERE name IN ('tiny', 'junk', 'other', 'v2', 'pw', 'key_future')
 ORDER BY name;
SELECT pg_temp.err($$SELECT pgmarket.charge_api_key_sealed('sk_live_0000000000000000', pg_temp.b('key_as_pw'), 1, 'm')$$);

-- back to the default window: the same blobs are refused
RESET pgmarket.sealed_max_age;
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_api_key_sealed('sk_live_0000000000000000', pg_temp.b('key'))$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_sealed('x@example.com', 'sealed_x', pg_temp.b('pw'))$$);

-- no vault: PM010
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
SELECT pg_temp.err($$SELECT pgmarket.authenticate_sealed('sealed_one', pg_temp.b('pw'))$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_api_key_sealed('sk_live_0000000000000000', pg_temp.b('key'))$$);

-- who may call them: the application and the administrator
SELECT p.proname,
       has_function_privilege('pgmarket_app', p.oid, 'EXECUTE') AS app,
       has_function_privilege('pgmarket_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('pgmarket_auditor', p.oid, 'EXECUTE') AS auditor,
       has_function_privilege('pgmarket_keyreader', p.oid, 'EXECUTE') AS keyreader,
       p.prosecdef AS security_definer, p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'pgmarket'::regnamespace AND p.proname LIKE '%\_sealed'
 ORDER BY p.proname;
SELECT count(*) AS public_may_call
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.pronamespace = 'pgmarket'::regnamespace AND p.proname LIKE '%\_sealed'
   AND a.grantee = 0;
