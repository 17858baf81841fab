-- The vault: the master key file, put/get/list/revoke of provider keys,
-- sealed puts, tampering, rotation, roles and the access log.
--
-- The test cluster names pgmarket_test.key (in the data directory) as
-- pgmarket.master_key_file; the test writes that file through COPY ... TO
-- PROGRAM (as superuser) and removes it at the end.  The setting never
-- changes, so nothing waits for a configuration reload: the vault looks at
-- the file at the first use in every transaction.  Outputs show no key,
-- uuid or time: only facts about them.
\set VERBOSITY terse
-- the settings of a C extension exist once its library is loaded
LOAD 'pgmarket';
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM,
                          '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
                          '<uuid>', 'g');
END $$;
-- write the key file from a query, mode 0600 (or as the umask says),
-- through a filter
CREATE FUNCTION pg_temp.write_key_file(q text, umask text DEFAULT '077',
                                       filter text DEFAULT 'cat')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (%s) TO PROGRAM %L', q,
                   format('umask %s && %s > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key',
                          umask, filter));
END $$;
CREATE FUNCTION pg_temp.shell(cmd text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- the program reads the row COPY writes, so COPY never meets a closed pipe
    EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'cat > /dev/null && (' || cmd || ') > /dev/null');
END $$;

-- three random master keys, kept for the session
CREATE TEMP TABLE mk AS
    SELECT md5(random()::text) || md5(random()::text) AS k1,
           md5(random()::text) || md5(random()::text) AS k2,
           md5(random()::text) || md5(random()::text) AS k3;

SELECT pgmarket.create_user('vault1@example.com', 'vault1', id => '5a000000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('vault2@example.com', 'vault2', id => '5a000000-0000-4000-8000-000000000002');
\set u1 '''5a000000-0000-4000-8000-000000000001'''
\set u2 '''5a000000-0000-4000-8000-000000000002'''

-------------------------------------------------------------------------------
-- no master key: PM010, whatever is wrong, and nothing is stored
-------------------------------------------------------------------------------
SELECT pg_temp.shell('rm -f pgmarket_test.key');
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'openai', 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.err($$SELECT pgmarket.rotate_master_key()$$);

SELECT current_setting('pgmarket.master_key_file');
-- missing
SELECT pg_temp.shell('rm -f pgmarket_test.key');
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'openai', 'sk-proj-abcdefgh1234')$$);
-- readable by group and others
SELECT pg_temp.write_key_file($$SELECT '1:' || k1 FROM mk$$, '022');
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'openai', 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.shell('chmod 640 pgmarket_test.key');
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'openai', 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.shell('chmod 604 pgmarket_test.key');
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'openai', 'sk-proj-abcdefgh1234')$$);
-- not a regular file
SELECT pg_temp.shell('rm -f pgmarket_test.key && mkdir -m 700 pgmarket_test.key');
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'openai', 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.shell('rmdir pgmarket_test.key');
-- malformed
SELECT pg_temp.write_key_file($$SELECT 'hello'$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.write_key_file($$SELECT '1:abcd'$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.write_key_file($$SELECT '1:' || k1 || '00' FROM mk$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.write_key_file($$SELECT '1:' || repeat('zz', 32)$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.write_key_file($$SELECT '0:' || k1 FROM mk$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.write_key_file($$SELECT '-1:' || k1 FROM mk$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.write_key_file($$SELECT '2147483648:' || k1 FROM mk$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.write_key_file($$SELECT '1 ' || k1 FROM mk$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.write_key_file($$SELECT '1:' || repeat('00', 32)$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.write_key_file($$VALUES ('1:' || (SELECT k1 FROM mk)), ('1:' || (SELECT k2 FROM mk))$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.write_key_file($$VALUES ('# nothing but a comment'), ('')$$);
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT pg_temp.shell('rm -f pgmarket_test.key && umask 077 && touch pgmarket_test.key');
SELECT pg_temp.err($$SELECT pgmarket.vault_public_key()$$);
SELECT count(*) AS stored FROM pgmarket.provider_keys;

-- a good file: comments, blank lines, spaces and CRLF are fine
SELECT pg_temp.write_key_file($$VALUES ('# pgmarket regression master key'), (''), ('  1:' || (SELECT k1 FROM mk) || '  ')$$,
                              filter => 'sed "s/\$/\r/"');
SELECT length(pgmarket.vault_public_key()) AS public_key_bytes;
SELECT pgmarket.vault_public_key() AS pk1 \gset

-------------------------------------------------------------------------------
-- put, get, list
-------------------------------------------------------------------------------
SELECT pgmarket.put_provider_key(:u1, 'OpenAI', 'sk-proj-abcdefgh1234', 'main') AS k1 \gset
SELECT pgmarket.get_provider_key(:u1, 'openai');
SELECT pgmarket.get_provider_key(:u1, 'OPENAI');
SELECT key_id = :'k1' AS same_key, provider, label, hint, key_version,
       created_at IS NOT NULL AS created, last_used_at IS NOT NULL AS used,
       revoked_at
  FROM pgmarket.list_provider_keys(:u1);
-- the table holds a ciphertext: neither the secret nor a part of it
SELECT provider, hint, key_version, length(nonce) AS nonce_bytes,
       length(ciphertext) = length('sk-proj-abcdefgh1234') + 16 AS has_tag,
       position(convert_to('sk-proj', 'UTF8') IN ciphertext) = 0 AS opaque
  FROM pgmarket.provider_keys WHERE key_id = :'k1';
-- every get is in the access log (who, which key), never the secret
SELECT key_id = :'k1' AS same_key, user_id, provider,
       session_role = session_user AS session_role, db_role = current_user AS db_role,
       actor, at IS NOT NULL AS stamped
  FROM pgmarket.key_access_log ORDER BY id;
BEGIN;
SET LOCAL pgmarket.actor = '5a000000-0000-4000-8000-000000000001';
SELECT pgmarket.get_provider_key(:u1, 'openai');
COMMIT;
SELECT actor FROM pgmarket.key_access_log ORDER BY id DESC LIMIT 1;
SELECT pg_temp.err($$UPDATE pgmarket.key_access_log SET actor = 'someone else'$$);
SELECT pg_temp.err($$DELETE FROM pgmarket.key_access_log$$);
SELECT pg_temp.err($$TRUNCATE pgmarket.key_access_log$$);

-- multibyte secrets; a short secret gets no hint
SELECT pgmarket.put_provider_key(:u1, 'mistral', 'clé-secrète-ü€😀', NULL) IS NOT NULL AS stored;
SELECT pgmarket.get_provider_key(:u1, 'mistral');
SELECT pgmarket.put_provider_key(:u1, 'tiny', 'abc1234') IS NOT NULL AS stored;
SELECT pgmarket.get_provider_key(:u1, 'tiny');
SELECT provider, hint, label FROM pgmarket.list_provider_keys(:u1) ORDER BY provider;

-- a new key for the same provider revokes the old one
SELECT pgmarket.put_provider_key(:u1, 'openai', 'sk-proj-second-5678', 'rotated by user') AS k2 \gset
SELECT pgmarket.get_provider_key(:u1, 'openai');
SELECT key_id = :'k1' AS first, key_id = :'k2' AS second, hint, label,
       revoked_at IS NOT NULL AS revoked
  FROM pgmarket.list_provider_keys(:u1) WHERE provider = 'openai'
 ORDER BY created_at;
-- the index keeps one active key per user and provider
SELECT indexdef FROM pg_indexes WHERE indexname = 'provider_keys_one_active';

-- bad arguments
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key(NULL, 'openai', 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', NULL, 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'openai', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', '', 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'open ai', 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'open/ai', 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'é', 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.err(format($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', %L, 'sk-proj-abcdefgh1234')$$, repeat('p', 65)));
SELECT pg_temp.err(format($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', %L, 'sk-proj-abcdefgh1234')$$, repeat('p', 64)));
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'a.b_c-1', 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'openai', '')$$);
SELECT pg_temp.err(format($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'openai', %L)$$, repeat('s', 16385)));
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000001', 'openai', 'sk-proj-abcdefgh1234', '')$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-0000000000ff', 'openai', 'sk-proj-abcdefgh1234')$$);
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key(NULL, 'openai')$$);
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'open ai')$$);
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'anthropic')$$);
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-0000000000ff', 'openai')$$);
SELECT pg_temp.err($$SELECT pgmarket.list_provider_keys(NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.list_provider_keys('5a000000-0000-4000-8000-0000000000ff')$$);
SELECT pg_temp.err($$SELECT pgmarket.revoke_provider_key(NULL, gen_random_uuid())$$);
SELECT pg_temp.err($$SELECT pgmarket.revoke_provider_key('5a000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.revoke_provider_key('5a000000-0000-4000-8000-0000000000ff', gen_random_uuid())$$);
-- a failed call stores nothing
SELECT count(*) AS keys_of_u1 FROM pgmarket.provider_keys WHERE user_id = :u1;

-------------------------------------------------------------------------------
-- revoke
-------------------------------------------------------------------------------
SELECT pgmarket.put_provider_key(:u2, 'anthropic', 'sk-ant-api03-zyxw9876') AS k3 \gset
SELECT pgmarket.revoke_provider_key(:u1, :'k3') AS other_users_key;
SELECT pgmarket.revoke_provider_key(:u1, gen_random_uuid()) AS unknown_key;
SELECT pgmarket.revoke_provider_key(:u1, :'k1') AS already_revoked;
SELECT pgmarket.put_provider_key(:u1, 'groq', 'gsk_revokeme_0000') AS k4 \gset
SELECT pgmarket.revoke_provider_key(:u1, :'k4') AS revoked;
SELECT pgmarket.revoke_provider_key(:u1, :'k4') AS revoked_again;
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'groq')$$);
SELECT provider, revoked_at IS NOT NULL AS revoked
  FROM pgmarket.list_provider_keys(:u1) WHERE key_id = :'k4';
SELECT pgmarket.get_provider_key(:u2, 'anthropic');

-------------------------------------------------------------------------------
-- tampering: any change of a ciphertext, its nonce or its row is PM011
-------------------------------------------------------------------------------
UPDATE pgmarket.provider_keys
   SET ciphertext = set_byte(ciphertext, 3, get_byte(ciphertext, 3) # 1)
 WHERE key_id = :'k2';
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'openai')$$);
UPDATE pgmarket.provider_keys
   SET ciphertext = set_byte(ciphertext, 3, get_byte(ciphertext, 3) # 1)
 WHERE key_id = :'k2';
SELECT pgmarket.get_provider_key(:u1, 'openai') AS restored;
-- the tag
UPDATE pgmarket.provider_keys
   SET ciphertext = set_byte(ciphertext, length(ciphertext) - 1,
                             get_byte(ciphertext, length(ciphertext) - 1) # 128)
 WHERE key_id = :'k2';
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'openai')$$);
UPDATE pgmarket.provider_keys
   SET ciphertext = set_byte(ciphertext, length(ciphertext) - 1,
                             get_byte(ciphertext, length(ciphertext) - 1) # 128)
 WHERE key_id = :'k2';
-- the nonce
UPDATE pgmarket.provider_keys SET nonce = set_byte(nonce, 0, get_byte(nonce, 0) # 1)
 WHERE key_id = :'k2';
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'openai')$$);
UPDATE pgmarket.provider_keys SET nonce = set_byte(nonce, 0, get_byte(nonce, 0) # 1)
 WHERE key_id = :'k2';
-- truncated
UPDATE pgmarket.provider_keys SET ciphertext = substr(ciphertext, 1, 10) WHERE key_id = :'k4';
SELECT pgmarket.put_provider_key(:u1, 'groq', 'gsk_live_1111') IS NOT NULL AS stored;
UPDATE pgmarket.provider_keys SET revoked_at = now() WHERE user_id = :u1 AND provider = 'groq' AND revoked_at IS NULL;
UPDATE pgmarket.provider_keys SET revoked_at = NULL WHERE key_id = :'k4';
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'groq')$$);
DELETE FROM pgmarket.provider_keys WHERE key_id = :'k4';
-- another provider of the same row
UPDATE pgmarket.provider_keys SET provider = 'openai-eu' WHERE key_id = :'k2';
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'openai-eu')$$);
UPDATE pgmarket.provider_keys SET provider = 'openai' WHERE key_id = :'k2';
-- the version in the row is bound too
UPDATE pgmarket.provider_keys SET key_version = 2 WHERE key_id = :'k2';
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'openai')$$);
UPDATE pgmarket.provider_keys SET key_version = 1 WHERE key_id = :'k2';
-- a ciphertext copied to another user's row
SELECT pgmarket.put_provider_key(:u2, 'openai', 'sk-proj-of-user-two-0000') AS k5 \gset
UPDATE pgmarket.provider_keys d
   SET nonce = s.nonce, ciphertext = s.ciphertext
  FROM pgmarket.provider_keys s
 WHERE s.key_id = :'k2' AND d.key_id = :'k5';
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000002', 'openai')$$);
-- a ciphertext copied to another row of the same user and provider
SELECT pgmarket.put_provider_key(:u1, 'cohere', 'co-aaaaaaaaaaaa') AS k6 \gset
UPDATE pgmarket.provider_keys d
   SET nonce = s.nonce, ciphertext = s.ciphertext, provider = 'cohere'
  FROM pgmarket.provider_keys s
 WHERE s.key_id = :'k2' AND d.key_id = :'k6';
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'cohere')$$);
DELETE FROM pgmarket.provider_keys WHERE key_id = :'k6';
-- the original still reads
SELECT pgmarket.get_provider_key(:u1, 'openai') AS intact;
-- the failed reads left no trace in the access log
SELECT count(*) AS logged_reads FROM pgmarket.key_access_log;

-------------------------------------------------------------------------------
-- sealed puts: only a secret sealed to vault_public_key() opens
-------------------------------------------------------------------------------
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key_sealed('5a000000-0000-4000-8000-000000000001', 'openai', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key_sealed('5a000000-0000-4000-8000-000000000001', 'openai', '\x00')$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key_sealed('5a000000-0000-4000-8000-000000000001', 'openai', decode(repeat('00', 48), 'hex'))$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key_sealed('5a000000-0000-4000-8000-000000000001', 'openai', decode(repeat('ab', 80), 'hex'))$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key_sealed('5a000000-0000-4000-8000-000000000001', 'bad name', decode(repeat('ab', 80), 'hex'))$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key_sealed(NULL, 'openai', decode(repeat('ab', 80), 'hex'))$$);

-------------------------------------------------------------------------------
-- deactivated users: PM002
-------------------------------------------------------------------------------
SELECT pgmarket.create_user('vault3@example.com', 'vault3', id => '5a000000-0000-4000-8000-000000000003');
SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000003', 'openai', 'sk-proj-deactivated') AS k7 \gset
SELECT pgmarket.deactivate_user('5a000000-0000-4000-8000-000000000003');
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000003', 'openai')$$);
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000003', 'openai', 'sk-proj-again-0000')$$);
SELECT pg_temp.err($$SELECT pgmarket.list_provider_keys('5a000000-0000-4000-8000-000000000003')$$);

-------------------------------------------------------------------------------
-- roles
-------------------------------------------------------------------------------
SET ROLE pgmarket_app;
SELECT pgmarket.put_provider_key(:u2, 'together', 'tg-app-stored-0001') IS NOT NULL AS app_puts;
SELECT provider, hint FROM pgmarket.list_provider_keys(:u2) WHERE revoked_at IS NULL ORDER BY provider;
SELECT length(pgmarket.vault_public_key()) AS app_reads_public_key;
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000002', 'together')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.provider_keys$$);
SELECT pg_temp.err($$SELECT ciphertext FROM pgmarket.provider_keys$$);
SELECT pg_temp.err($$UPDATE pgmarket.provider_keys SET revoked_at = NULL$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.key_access_log$$);
SELECT pg_temp.err($$SELECT pgmarket.rotate_master_key()$$);
SELECT pg_temp.err($$CALL pgmarket.rotate_all_keys()$$);
RESET ROLE;
SET ROLE pgmarket_keyreader;
SELECT pgmarket.get_provider_key(:u2, 'together') AS keyreader_decrypts;
SELECT pg_temp.err($$SELECT pgmarket.put_provider_key('5a000000-0000-4000-8000-000000000002', 'together', 'tg-0000000000')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.provider_keys$$);
SELECT pg_temp.err($$SELECT pgmarket.rotate_master_key()$$);
RESET ROLE;
-- the log names the role that called, not the function's owner
SELECT provider, db_role, session_role = session_user AS session_role
  FROM pgmarket.key_access_log ORDER BY id DESC LIMIT 1;
SET ROLE pgmarket_auditor;
SELECT count(*) > 0 AS auditor_reads_log FROM pgmarket.key_access_log;
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000002', 'together')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.provider_keys$$);
RESET ROLE;
SET ROLE pgmarket_admin;
SELECT pgmarket.get_provider_key(:u2, 'together') AS admin_decrypts;
SELECT pgmarket.rotate_master_key() AS nothing_to_rotate;
SELECT pg_temp.err($$SELECT * FROM pgmarket.provider_keys$$);
RESET ROLE;

-------------------------------------------------------------------------------
-- rotation
-------------------------------------------------------------------------------
SELECT pg_temp.err($$SELECT pgmarket.rotate_master_key(NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.rotate_master_key(0)$$);
SELECT pg_temp.err($$SELECT pgmarket.rotate_master_key(100001)$$);
SELECT pg_temp.err($$CALL pgmarket.rotate_all_keys(NULL)$$);
SELECT key_version, count(*) FROM pgmarket.provider_keys GROUP BY 1 ORDER BY 1;
-- add version 2; the file is read again at the next transaction
SELECT pg_temp.write_key_file($$VALUES ('1:' || (SELECT k1 FROM mk)), ('2:' || (SELECT k2 FROM mk))$$);
SELECT pgmarket.vault_public_key() <> :'pk1' AS new_public_key;
-- new keys are encrypted under version 2 at once
SELECT pgmarket.put_provider_key(:u2, 'fireworks', 'fw-after-rotation-01') IS NOT NULL AS stored;
SELECT key_version FROM pgmarket.list_provider_keys(:u2) WHERE provider = 'fireworks';
-- a row that does not decrypt stops the rotation, which changes nothing
SELECT pg_temp.err($$SELECT pgmarket.rotate_master_key()$$);
SELECT key_version, count(*) FROM pgmarket.provider_keys GROUP BY 1 ORDER BY 1;
-- the broken row (user 2's openai key holds a copied ciphertext) must go
DELETE FROM pgmarket.provider_keys WHERE key_id = :'k5';
SELECT pgmarket.rotate_master_key(1) AS rotated;
SELECT pgmarket.rotate_master_key(3) AS rotated;
SELECT pgmarket.rotate_master_key() AS rotated;
SELECT pgmarket.rotate_master_key() AS rotated;
SELECT key_version, count(*) FROM pgmarket.provider_keys GROUP BY 1 ORDER BY 1;
-- every key still reads, revoked ones were re-encrypted too
SELECT pgmarket.get_provider_key(:u1, 'openai'), pgmarket.get_provider_key(:u1, 'mistral'),
       pgmarket.get_provider_key(:u2, 'anthropic'), pgmarket.get_provider_key(:u2, 'together');
SELECT provider, key_version, revoked_at IS NOT NULL AS revoked
  FROM pgmarket.list_provider_keys(:u1) ORDER BY provider, created_at;
-- version 1 can go now
SELECT pg_temp.write_key_file($$SELECT '2:' || k2 FROM mk$$);
SELECT pgmarket.get_provider_key(:u1, 'openai') AS without_version_1;
-- version 3, rotated by the procedure in committed batches of 4
SELECT pg_temp.write_key_file($$VALUES ('2:' || (SELECT k2 FROM mk)), ('3:' || (SELECT k3 FROM mk))$$);
CALL pgmarket.rotate_all_keys(4);
SELECT key_version, count(*) FROM pgmarket.provider_keys GROUP BY 1 ORDER BY 1;
-- a key file without the version of the rows: PM011, naming the version
SELECT pg_temp.write_key_file($$SELECT '2:' || k2 FROM mk$$);
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'openai')$$);
-- the wrong key under the right version number: PM011
SELECT pg_temp.write_key_file($$SELECT '3:' || k1 FROM mk$$);
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'openai')$$);
SELECT pg_temp.write_key_file($$SELECT '3:' || k3 FROM mk$$);
SELECT pgmarket.get_provider_key(:u1, 'openai') AS back;

-- a file that becomes too permissive or disappears: PM010 from the next
-- transaction on, and back once it is fixed
SELECT pg_temp.shell('chmod 644 pgmarket_test.key');
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'openai')$$);
SELECT pg_temp.shell('chmod 600 pgmarket_test.key');
SELECT pgmarket.get_provider_key(:u1, 'openai') AS fixed;
SELECT pg_temp.shell('mv pgmarket_test.key pgmarket_test.key.moved');
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'openai')$$);
SELECT pg_temp.shell('mv pgmarket_test.key.moved pgmarket_test.key');
SELECT pgmarket.get_provider_key(:u1, 'openai') AS fixed;

-------------------------------------------------------------------------------
-- clean up
-------------------------------------------------------------------------------
SELECT pg_temp.shell('rm -f pgmarket_test.key');
SELECT pg_temp.err($$SELECT pgmarket.get_provider_key('5a000000-0000-4000-8000-000000000001', 'openai')$$);
