-- Passwords: change_password, create_password_reset, reset_password and
-- their sealed forms.
--
-- Like vault.sql, the test writes the master key file that the test
-- cluster's pgmarket.master_key_file names, and removes it at the end.
-- Tokens are random: the outputs show facts about them, never them.
\set VERBOSITY terse
LOAD 'pgmarket';
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM, 'pwr_[0-9a-f]{12}_\S+', '<token>', 'g');
END $$;
CREATE FUNCTION pg_temp.write_key_file(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (%s) TO PROGRAM %L', q,
                   'umask 077 && cat > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key');
END $$;
CREATE TEMP TABLE mk AS
    SELECT md5(random()::text) || md5(random()::text) AS k1,
           md5(random()::text) || md5(random()::text) AS k2;
SELECT pg_temp.write_key_file($$SELECT '1:' || k1 FROM mk$$);

SELECT pgmarket.create_user('rs.ann@example.com', 'rs_ann', 'old secret',
                            id => 'ac400000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('rs.bob@example.com', 'rs_bob', 'bob secret',
                            id => 'ac400000-0000-4000-8000-000000000002');
SELECT pgmarket.create_user('rs.sso@example.com', 'rs_sso',
                            id => 'ac400000-0000-4000-8000-000000000003');
\set ann '''ac400000-0000-4000-8000-000000000001'''
\set bob '''ac400000-0000-4000-8000-000000000002'''
\set sso '''ac400000-0000-4000-8000-000000000003'''
CREATE TEMP TABLE h AS SELECT id, password_hash FROM pgmarket.accounts WHERE id IN (:ann, :bob, :sso);

-------------------------------------------------------------------------------
-- change_password
-------------------------------------------------------------------------------
-- the wrong old password: false, and the hash stays as it was
SELECT pgmarket.change_password(:ann, 'not it', 'new secret') AS changed;
SELECT a.password_hash = h.password_hash AS unchanged
  FROM pgmarket.accounts a JOIN h USING (id) WHERE id = :ann;
SELECT pgmarket.authenticate('rs_ann', 'old secret') = :ann AS old_works;
-- the right one: true, the new one works, the old one no longer
SELECT pgmarket.change_password(:ann, 'old secret', 'new secret') AS changed;
SELECT pgmarket.authenticate('rs_ann', 'new secret') = :ann AS new_works,
       pgmarket.authenticate('rs_ann', 'old secret') IS NULL AS old_refused;
SELECT password_hash LIKE '$argon2id$%' AS argon2id FROM pgmarket.accounts WHERE id = :ann;
-- a user without a password has no old one to give
SELECT pgmarket.change_password(:sso, 'anything', 'new secret') AS changed;
SELECT password_hash IS NULL AS still_none FROM pgmarket.accounts WHERE id = :sso;
-- an imported Django hash is checked too (PBKDF2 of "password", salt "salt")
UPDATE pgmarket.accounts SET password_hash = 'pbkdf2_sha256$1$salt$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs='
 WHERE id = :bob;
SELECT pgmarket.change_password(:bob, 'password', 'bob new') AS changed;
SELECT pgmarket.authenticate('rs_bob', 'bob new') = :bob AS works;
-- bad input
SELECT pg_temp.err($$SELECT pgmarket.change_password(NULL, 'a', 'b')$$);
SELECT pg_temp.err($$SELECT pgmarket.change_password('ac400000-0000-4000-8000-000000000001', NULL, 'b')$$);
SELECT pg_temp.err($$SELECT pgmarket.change_password('ac400000-0000-4000-8000-000000000001', 'a', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.change_password('ac400000-0000-4000-8000-000000000001', 'new secret', '')$$);
SELECT pg_temp.err($$SELECT pgmarket.change_password('ac400000-0000-4000-8000-000000000001', 'new secret', repeat('p', 1025))$$);
SELECT pg_temp.err($$SELECT pgmarket.change_password('ac400000-0000-4000-8000-000000000001', '', 'b')$$);
SELECT pg_temp.err($$SELECT pgmarket.change_password('ac400000-0000-4000-8000-0000000000ff', 'a', 'b')$$);
SELECT pgmarket.authenticate('rs_ann', 'new secret') = :ann AS unchanged;

-------------------------------------------------------------------------------
-- create_password_reset and reset_password
-------------------------------------------------------------------------------
SELECT pgmarket.create_password_reset(:ann) AS t1 \gset
SELECT :'t1' ~ '^pwr_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$' AS well_formed,
       length(:'t1') AS length;
-- the table keeps a keyed hash, never the token; an hour by default
SELECT count(*) AS rows, bool_and(length(token_hash) = 32) AS hashed,
       bool_and(expires_at = created_at + interval '1 hour') AS one_hour,
       bool_and(used_at IS NULL) AS open
  FROM pgmarket.password_resets WHERE user_id = :ann;
SELECT count(*) AS plaintext FROM pgmarket.password_resets
 WHERE position(convert_to(:'t1', 'UTF8') IN token_hash) > 0;
-- used once: the user; again: NULL
SELECT pgmarket.reset_password(:'t1', 'reset secret') = :ann AS reset;
SELECT pgmarket.authenticate('rs_ann', 'reset secret') = :ann AS works;
SELECT pgmarket.reset_password(:'t1', 'again secret') IS NULL AS reused;
SELECT pgmarket.authenticate('rs_ann', 'reset secret') = :ann AS unchanged;
-- unknown, malformed and altered tokens: NULL
SELECT pgmarket.reset_password('pwr_000000000001_' || repeat('A', 43), 'x') IS NULL AS unknown,
       pgmarket.reset_password('not a token', 'x') IS NULL AS malformed,
       pgmarket.reset_password(upper(:'t1'), 'x') IS NULL AS altered,
       pgmarket.reset_password(:'t1' || 'x', 'x') IS NULL AS longer,
       pgmarket.reset_password('', 'x') IS NULL AS empty;
-- a version that is not in the key file: NULL too
SELECT pgmarket.reset_password(overlay(:'t1' placing '7fffffff' from 9 for 8), 'x') IS NULL AS other_version;
-- expired: NULL (the expiry moved into the past, as a clock would)
SELECT pgmarket.create_password_reset(:ann, '1 second') AS t2 \gset
UPDATE pgmarket.password_resets SET expires_at = now() - interval '1 microsecond'
 WHERE user_id = :ann AND used_at IS NULL;
SELECT pgmarket.reset_password(:'t2', 'late secret') IS NULL AS expired;
SELECT pgmarket.authenticate('rs_ann', 'reset secret') = :ann AS unchanged;
-- a new token clears the user's used and expired ones
SELECT pgmarket.create_password_reset(:ann, '7 days') AS t3 \gset
SELECT count(*) AS rows, bool_and(used_at IS NULL) AS open,
       bool_and(expires_at = created_at + interval '7 days') AS seven_days
  FROM pgmarket.password_resets WHERE user_id = :ann;
-- a reset uses up the user's other tokens; a password change does too
SELECT pgmarket.create_password_reset(:ann) AS t4 \gset
SELECT pgmarket.reset_password(:'t4', 'fourth secret') = :ann AS reset;
SELECT pgmarket.reset_password(:'t3', 'third secret') IS NULL AS other_used_up;
SELECT pgmarket.create_password_reset(:ann) AS t5 \gset
SELECT pgmarket.change_password(:ann, 'fourth secret', 'fifth secret') AS changed;
SELECT pgmarket.reset_password(:'t5', 'sixth secret') IS NULL AS used_up_by_change;
-- a user without a password may set one through a reset
SELECT pgmarket.create_password_reset(:sso, '1 minute') AS t6 \gset
SELECT pgmarket.reset_password(:'t6', 'sso secret') = :sso AS reset;
SELECT pgmarket.authenticate('rs_sso', 'sso secret') = :sso AS works;
-- a deactivated user's token resets nothing
SELECT pgmarket.create_password_reset(:bob) AS t7 \gset
SELECT pgmarket.deactivate_user(:bob);
SELECT pgmarket.reset_password(:'t7', 'x secret') IS NULL AS deactivated;
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000002')$$);
SELECT pgmarket.reactivate_user(:bob);
SELECT pgmarket.authenticate('rs_bob', 'bob new') = :bob AS unchanged;

-- a token dies when the account's state or recovery address changes:
-- deactivate_user (and reactivate_user after it) and update_user with a
-- new email use up every open token; a new username, or the same email
-- in another spelling, does not
SELECT pgmarket.create_password_reset(:bob, '7 days') AS t_cycle \gset
SELECT pgmarket.deactivate_user(:bob);
SELECT pgmarket.reactivate_user(:bob);
SELECT pgmarket.reset_password(:'t_cycle', 'attacker secret') IS NULL AS used_up_by_deactivation;
SELECT pgmarket.create_password_reset(:bob) AS t_email \gset
SELECT pgmarket.update_user(:bob, username => 'rs_bob_2');
SELECT pgmarket.update_user(:bob, email => (SELECT upper(email) FROM pgmarket.users WHERE id = :bob));
SELECT count(*) AS open_after_rename FROM pgmarket.password_resets
 WHERE user_id = :bob AND used_at IS NULL;
SELECT pgmarket.update_user(:bob, email => 'rs.bob.new@example.com', username => 'rs_bob');
SELECT count(*) AS open_after_new_email FROM pgmarket.password_resets
 WHERE user_id = :bob AND used_at IS NULL;
SELECT pgmarket.reset_password(:'t_email', 'attacker secret') IS NULL AS used_up_by_new_email;
-- a token in the table while the user is deactivated (one from before
-- this rule) dies at the reactivation
SELECT pgmarket.create_password_reset(:bob) AS t_react \gset
UPDATE pgmarket.balances SET active = false WHERE user_id = :bob;
UPDATE pgmarket.accounts SET deleted_at = now() WHERE id = :bob;
SELECT pgmarket.reactivate_user(:bob);
SELECT pgmarket.reset_password(:'t_react', 'attacker secret') IS NULL AS used_up_by_reactivation;
SELECT pgmarket.authenticate('rs_bob', 'bob new') = :bob AS password_unchanged;

-- ttl from 1 second to 7 days
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', '999 milliseconds')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', '0')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', '-1 hour')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', '7 days 1 microsecond')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', '1 mon')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', make_interval(days => 8, hours => -48))$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', '178000000 years')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', make_interval(days => 2147483647, secs => -1e15))$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', make_interval(days => -2147483647, hours => 2147483647))$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', '1 second')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001', '6 days 24 hours')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-0000000000ff')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset(NULL)$$);
-- reset_password's arguments
SELECT pg_temp.err($$SELECT pgmarket.reset_password(NULL, 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.reset_password('pwr_x', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.reset_password('pwr_x', '')$$);
SELECT pg_temp.err($$SELECT pgmarket.reset_password('pwr_x', repeat('p', 1025))$$);
SELECT pg_temp.err($$SELECT pgmarket.reset_password(repeat('t', 257), 'x')$$);
SELECT pgmarket.reset_password(repeat('t', 256), 'x') IS NULL AS long_unknown;

-- the actor: one's own token only; another's stays usable
SELECT pgmarket.create_password_reset(:bob) AS t8 \gset
BEGIN;
SET LOCAL pgmarket.actor = 'ac400000-0000-4000-8000-000000000001';
SELECT pgmarket.reset_password(:'t8', 'stolen secret') IS NULL AS not_the_actors;
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000002')$$);
SELECT pg_temp.err($$SELECT pgmarket.change_password('ac400000-0000-4000-8000-000000000002', 'bob new', 'x')$$);
COMMIT;
SELECT pgmarket.reset_password(:'t8', 'bob reset') = :bob AS still_usable;

-------------------------------------------------------------------------------
-- the sealed forms: a password sealed to the vault's public key
-------------------------------------------------------------------------------
SELECT pg_temp.err($$SELECT pgmarket.change_password_sealed('ac400000-0000-4000-8000-000000000001', '\x00', '\x00')$$);
SELECT pg_temp.err($$SELECT pgmarket.change_password_sealed('ac400000-0000-4000-8000-000000000001', NULL, '\x00')$$);
SELECT pg_temp.err($$SELECT pgmarket.change_password_sealed('ac400000-0000-4000-8000-000000000001', '\x00', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.change_password_sealed(NULL, '\x00', '\x00')$$);
SELECT pg_temp.err($$SELECT pgmarket.reset_password_sealed('pwr_x', decode(repeat('5a', 80), 'hex'))$$);
SELECT pg_temp.err($$SELECT pgmarket.reset_password_sealed(NULL, '\x00')$$);
SELECT pg_temp.err($$SELECT pgmarket.reset_password_sealed('pwr_x', NULL)$$);

-------------------------------------------------------------------------------
-- roles, the audit trail, and no vault
-------------------------------------------------------------------------------
SET ROLE pgmarket_app;
SELECT pgmarket.create_password_reset(:bob) AS t9 \gset
SELECT pgmarket.reset_password(:'t9', 'app reset') = :bob AS app_reset;
SELECT pgmarket.change_password(:bob, 'app reset', 'app change') AS app_change;
SELECT pg_temp.err($$SELECT count(*) FROM pgmarket.password_resets$$);
RESET ROLE;
SET ROLE pgmarket_auditor;
SELECT count(*) > 0 AS auditor_reads FROM pgmarket.password_resets WHERE used_at IS NOT NULL;
SELECT pg_temp.err($$SELECT token_hash FROM pgmarket.password_resets$$);
RESET ROLE;
-- the trail records the resets, never a hash
SELECT operation, changed_columns
  FROM pgmarket.audit_log
 WHERE table_name = 'pgmarket.password_resets'
   AND row_key->>'reset_id' IN (SELECT reset_id::text FROM pgmarket.password_resets
                                 WHERE user_id = :sso)
 ORDER BY id;
SELECT count(*) FILTER (WHERE new_values->>'token_hash' = '[redacted]') > 0 AS redacted,
       count(*) FILTER (WHERE new_values->>'token_hash' <> '[redacted]'
                           OR old_values->>'token_hash' <> '[redacted]'
                           OR row_key ? 'token_hash') AS hash_values_in_trail
  FROM pgmarket.audit_log
 WHERE table_name = 'pgmarket.password_resets';
SELECT count(*) > 0 AS password_changes_recorded FROM pgmarket.audit_log
 WHERE table_name = 'pgmarket.accounts' AND 'password_hash' = ANY (changed_columns)
   AND row_key->>'id' = 'ac400000-0000-4000-8000-000000000001';

-- without a vault: create and reset are PM010; change_password needs none
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
SELECT pg_temp.err($$SELECT pgmarket.create_password_reset('ac400000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.err($$SELECT pgmarket.reset_password('pwr_x', 'x')$$);
SELECT pgmarket.change_password(:ann, 'fifth secret', 'sixth secret') AS changed;
