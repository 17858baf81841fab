-- erase_user: the right to be forgotten without breaking the books.  A
-- user with every kind of data (account, preferences, ratings, chat,
-- provider and platform keys, ledger entries, audit rows sealed and not)
-- is erased; then no column of any table in schema pgmarket holds the
-- email, the username or the provider key in a readable form (the audit
-- trail opened as an auditor reads it included), while verify_ledger and
-- verify_audit pass and an anchor taken before still lies on the chain.
--
-- The test cluster names pgmarket_test.key as pgmarket.master_key_file;
-- the test writes that file (as sql/vault.sql does) and removes it at the
-- end.
\set VERBOSITY terse
LOAD 'pgmarket';
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE FUNCTION pg_temp.write_key_file(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (%s) TO PROGRAM %L', q,
                   'umask 077 && cat > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key');
END $$;
-- every column of every table in schema pgmarket (from the catalog), as
-- text (jsonb and arrays included) and, for bytea, as bytes: where does
-- needle occur, without regard to case?
CREATE FUNCTION pg_temp.find_anywhere(needle text)
RETURNS TABLE (place text, hits bigint) LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT k.oid::regclass::text AS tbl, a.attname, a.atttypid
               FROM pg_class k JOIN pg_attribute a ON a.attrelid = k.oid
              WHERE k.relnamespace = 'pgmarket'::regnamespace
                AND k.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY 1, 2
    LOOP
        IF c.atttypid = 'bytea'::regtype THEN
            EXECUTE format('SELECT count(*) FROM %s WHERE position(convert_to(lower($1), ''UTF8'') IN %I) > 0'
                           ' OR position(convert_to($1, ''UTF8'') IN %I) > 0',
                           c.tbl, c.attname, c.attname) INTO hits USING needle;
        ELSE
            EXECUTE format('SELECT count(*) FROM %s WHERE strpos(lower(%I::text), lower($1)) > 0',
                           c.tbl, c.attname) INTO hits USING needle;
        END IF;
        IF hits > 0 THEN
            place := c.tbl || '.' || c.attname;
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;
-- ... and in the audit trail as the auditor reads it, personal values opened
CREATE FUNCTION pg_temp.find_in_opened_trail(needle text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*) FROM pgmarket.audit_log
     WHERE strpos(lower(coalesce(pgmarket.audit_open(row_key)::text, '') ||
                        coalesce(pgmarket.audit_open(old_values)::text, '') ||
                        coalesce(pgmarket.audit_open(new_values)::text, '')),
                  lower(needle)) > 0
$$;

CREATE TEMP TABLE mk AS SELECT md5(random()::text) || md5(random()::text) AS k1;
SELECT pg_temp.write_key_file($$SELECT '1:' || k1 FROM mk$$);

\set eve '''e5000000-0000-4000-8000-000000000001'''
\set keep '''e5000000-0000-4000-8000-000000000002'''
SELECT pgmarket.create_user('Eve.Before@Example.com', 'eve_erasable', 'eve password',
                            id => :eve) IS NOT NULL AS eve;
SELECT pgmarket.create_user('keep.me@example.com', 'keep_me', 'keep password',
                            id => :keep) IS NOT NULL AS keep;
-- Eve's email changes once, so the trail holds the old and the new one
UPDATE pgmarket.accounts SET email = 'eve.erasable@example.com' WHERE id = :eve;

-- Eve's data, her email and username sprinkled through it
SELECT available_balance FROM pgmarket.add_funds(:eve, 100, 'eve-deposit-1');
SELECT available_balance FROM pgmarket.deduct_balance(:eve, 30, 'gpt-4', 1200, 'eve-charge-1');
SELECT pgmarket.set_preference(:eve, 'contact', '"eve.erasable@example.com"');
SELECT pgmarket.set_preference(:eve, 'profile', '{"nick": "eve_erasable", "langs": ["en"]}');
SELECT pgmarket.set_preference(:keep, 'contact', '"keep.me@example.com"');
SELECT pgmarket.rate_model(:eve, 'gpt-4', 4, 'by eve_erasable: fine');
SELECT pgmarket.create_chat_session(:eve, 'gpt-4', 'chat of eve.erasable@example.com',
                                    id => 'e5000000-0000-4000-8000-0000000000c1') IS NOT NULL AS session;
SELECT pgmarket.update_chat_context(:eve, 'e5000000-0000-4000-8000-0000000000c1',
                                    '{"who": "eve_erasable"}');
SELECT pgmarket.save_chat_message(:eve, 'e5000000-0000-4000-8000-0000000000c1', 'user',
       'I am eve_erasable, mail me at eve.erasable@example.com', 12,
       tool_calls => '[{"email": "eve.erasable@example.com"}]') IS NOT NULL AS message;
SELECT available_balance FROM pgmarket.record_completion(:eve, 'e5000000-0000-4000-8000-0000000000c1',
       'Hello eve_erasable', 20, 0.5, 'eve-completion-1');
SELECT pgmarket.put_provider_key(:eve, 'openai', 'sk-eve-provider-secret-0123456789',
                                 'key of eve.erasable@example.com') IS NOT NULL AS provider_key;
SELECT pgmarket.get_provider_key(:eve, 'openai') = 'sk-eve-provider-secret-0123456789' AS decrypts;
SELECT count(*) AS platform_keys FROM pgmarket.create_api_key(:eve, 'ci of eve_erasable');
SELECT pgmarket.put_provider_key(:keep, 'openai', 'sk-keep-provider-secret-987') IS NOT NULL AS keep_key;
-- free text the application gave: an idempotency key and a note that spell
-- her address, a hold's key, a project and its change request, an agent id
SELECT available_balance FROM pgmarket.add_funds(:eve, 1, 'topup for eve.erasable@example.com',
                                                 'invoice to eve_erasable');
SELECT pgmarket.reserve(:eve, 1, '1 hour', 'hold-eve_erasable') IS NOT NULL AS hold;
SELECT pgmarket.save_project(:eve, 'project of eve_erasable', 'web') IS NOT NULL AS project;
SELECT pgmarket.create_chat_session(:eve, 'gpt-4', NULL, 'agent-eve_erasable') IS NOT NULL AS agent_session;
-- a sign-on identity and an open password reset
SELECT pgmarket.link_identity(:eve, 'github', 'eve-gh-subject-4711');
SELECT pgmarket.create_password_reset(:eve) AS eve_reset_token \gset

-- what the books say before
CREATE TEMP TABLE books_before AS
    SELECT count(*) AS entries, sum(amount) AS amounts FROM pgmarket.ledger WHERE user_id = :eve;
SELECT total_balance, spent_balance, available_balance FROM pgmarket.get_balance(:eve);

-- part of the trail is sealed before the erasure, part is not; an anchor
-- of the sealed part is kept outside
SELECT pgmarket.seal_audit() > 0 AS sealed;
SELECT int8send(last_id) || chain_hash AS anchor FROM pgmarket.audit_head() \gset
SELECT pgmarket.set_preference(:eve, 'unsealed', '"eve_erasable, not sealed yet"');

-- before: the values are there, and the auditor reads them in the trail
SELECT place, hits > 0 AS found FROM pg_temp.find_anywhere('eve.erasable@example.com');
SELECT pg_temp.find_in_opened_trail('eve.erasable@example.com') > 0 AS auditor_reads_email,
       pg_temp.find_in_opened_trail('eve.before@example.com') > 0 AS auditor_reads_old_email,
       pg_temp.find_in_opened_trail('eve_erasable') > 0 AS auditor_reads_username;
-- ... though the trail itself holds them sealed: no plaintext in audit_log
SELECT place FROM pg_temp.find_anywhere('eve_erasable') WHERE place LIKE 'pgmarket.audit%';

-------------------------------------------------------------------------------
-- bad inputs: nothing changes
-------------------------------------------------------------------------------
SELECT count(*) AS trail_before FROM pgmarket.audit_log \gset
SELECT pg_temp.err($$SELECT pgmarket.erase_user(NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.erase_user('e5000000-0000-4000-8000-0000000000ff')$$);
SET ROLE pgmarket_app;
SELECT pg_temp.err($$SELECT pgmarket.erase_user('e5000000-0000-4000-8000-000000000001')$$);
RESET ROLE;
SET ROLE pgmarket_auditor;
SELECT pg_temp.err($$SELECT pgmarket.erase_user('e5000000-0000-4000-8000-000000000001')$$);
RESET ROLE;
-- with an actor set, only the actor's own account
SET pgmarket.actor = 'e5000000-0000-4000-8000-000000000002';
SELECT pg_temp.err($$SELECT pgmarket.erase_user('e5000000-0000-4000-8000-000000000001')$$);
RESET pgmarket.actor;
SELECT count(*) - :trail_before AS trail_rows_added, 
       (SELECT email FROM pgmarket.users WHERE id = :eve) AS email_still
  FROM pgmarket.audit_log;

-------------------------------------------------------------------------------
-- the erasure, by pgmarket_admin
-------------------------------------------------------------------------------
SET ROLE pgmarket_admin;
SELECT pgmarket.erase_user(:eve);
RESET ROLE;

-- the account: a tombstone, deactivated; its logins are gone
SELECT email, username, roles, is_active FROM pgmarket.users WHERE id = :eve;
SELECT password_hash IS NULL AS no_password FROM pgmarket.accounts WHERE id = :eve;
SELECT pgmarket.authenticate('eve.erasable@example.com', 'eve password') IS NULL AS email_login,
       pgmarket.authenticate('eve_erasable', 'eve password') IS NULL AS username_login;
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_balance('e5000000-0000-4000-8000-000000000001')$$);
-- preferences gone, the review cleared (the stars stay), chat content erased
SELECT count(*) AS preferences FROM pgmarket.preferences WHERE user_id = :eve;
SELECT stars, review FROM pgmarket.ratings WHERE user_id = :eve;
SELECT title, context FROM pgmarket.chat_sessions WHERE user_id = :eve;
SELECT role, content, tokens, tool_calls, cost FROM pgmarket.chat_messages
 WHERE user_id = :eve ORDER BY message_id;
-- the identity unlinked, the reset token gone with its row
SELECT pgmarket.user_by_identity('github', 'eve-gh-subject-4711') IS NULL AS identity_gone;
SELECT count(*) AS identities FROM pgmarket.identities WHERE user_id = :eve;
SELECT count(*) AS password_resets FROM pgmarket.password_resets WHERE user_id = :eve;
SELECT pgmarket.reset_password(:'eve_reset_token', 'a new password for eve') IS NULL AS reset_refused;
-- an erased user is not reactivated
SELECT pg_temp.err($$SELECT pgmarket.reactivate_user('e5000000-0000-4000-8000-000000000001')$$);
-- the projects gone; the ledger's keys random, its notes gone, and the
-- ledger append-only again right after
SELECT count(*) AS projects FROM pgmarket.projects WHERE user_id = :eve;
SELECT count(*) FILTER (WHERE idempotency_key LIKE 'erased:%') AS keys_replaced,
       count(*) FILTER (WHERE note IS NOT NULL) AS notes_left
  FROM pgmarket.ledger WHERE user_id = :eve;
SELECT pg_temp.err($$UPDATE pgmarket.ledger SET note = 'x' WHERE user_id = 'e5000000-0000-4000-8000-000000000001'$$);
SELECT pg_temp.err($$UPDATE pgmarket.ledger SET note = note$$);
-- provider keys destroyed, platform keys revoked
SELECT count(*) AS provider_keys FROM pgmarket.provider_keys WHERE user_id = :eve;
SELECT count(*) AS platform_keys, count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked
  FROM pgmarket.api_keys WHERE user_id = :eve;
-- the books: the same entries and amounts, and they verify
SELECT b.entries = l.entries AS same_entries, b.amounts = l.amounts AS same_amounts
  FROM books_before b,
       (SELECT count(*) AS entries, sum(amount) AS amounts FROM pgmarket.ledger
         WHERE user_id = :eve) l;
SELECT count(*) AS ledger_problems FROM pgmarket.verify_ledger();
-- the erasure is on the record, with what it erased
SELECT table_name, operation, new_values - 'user_id' AS erased,
       new_values->>'user_id' = :eve AS names_the_user
  FROM pgmarket.audit_log WHERE operation = 'ERASE';

-- afterwards: nowhere, in no column of any table, nor in the trail opened
SELECT n.needle, f.place
  FROM unnest(ARRAY['eve.erasable@example.com', 'eve.before@example.com',
                    'eve_erasable', 'sk-eve-provider-secret-0123456789',
                    'eve-gh-subject-4711']) AS n(needle),
       LATERAL pg_temp.find_anywhere(n.needle) AS f;
SELECT pg_temp.find_in_opened_trail('eve-gh-subject-4711') AS identity_rows;
SELECT pg_temp.find_in_opened_trail('eve.erasable@example.com') AS email_rows,
       pg_temp.find_in_opened_trail('eve.before@example.com') AS old_email_rows,
       pg_temp.find_in_opened_trail('eve_erasable') AS username_rows;
-- the trail's rows of Eve open to "[erased]"; the key row stays, empty
SELECT count(*) > 0 AS erased_values FROM pgmarket.audit_log
 WHERE strpos(pgmarket.audit_open(new_values)::text, '"[erased]"') > 0;
SELECT key IS NULL AS key_destroyed, erased_at IS NOT NULL AS erased FROM pgmarket.personal_keys
 WHERE user_id = :eve;
-- the bystander is untouched and still readable
SELECT email, username, is_active FROM pgmarket.users WHERE id = :keep;
SELECT pg_temp.find_in_opened_trail('keep.me@example.com') > 0 AS keep_readable;
SELECT pgmarket.get_provider_key(:keep, 'openai') = 'sk-keep-provider-secret-987' AS keep_key;

-- the chain: what was sealed before still verifies, the anchor still lies
-- on it, and the rows since seal and verify too
SELECT first_bad_id FROM pgmarket.verify_audit(strict => true, anchor => :'anchor');
SELECT pgmarket.seal_audit() > 0 AS sealed_again;
SELECT first_bad_id FROM pgmarket.verify_audit(strict => true, anchor => :'anchor');
SELECT first_bad_id FROM pgmarket.verify_audit(strict => true);

-- a second erasure changes nothing and records nothing
SELECT count(*) AS trail_before FROM pgmarket.audit_log \gset
SELECT pgmarket.erase_user(:eve);
SELECT count(*) - :trail_before AS trail_rows_added FROM pgmarket.audit_log;
SELECT email FROM pgmarket.users WHERE id = :eve;

-- a deactivated user can be erased; later writes of an erased user's
-- personal values are "[erased]" in the trail
SELECT pgmarket.create_user('gone.before@example.com', 'gone_before',
                            id => 'e5000000-0000-4000-8000-000000000003') IS NOT NULL AS created;
SELECT pgmarket.deactivate_user('e5000000-0000-4000-8000-000000000003');
SELECT pgmarket.erase_user('e5000000-0000-4000-8000-000000000003');
SELECT username LIKE 'erased-%' AS tombstoned, is_active FROM pgmarket.users
 WHERE id = 'e5000000-0000-4000-8000-000000000003';
SELECT count(*) AS found FROM pg_temp.find_anywhere('gone.before@example.com');
UPDATE pgmarket.accounts SET username = 'gone_again' WHERE id = 'e5000000-0000-4000-8000-000000000003';
SELECT new_values->>'username' AS written FROM pgmarket.audit_log
 WHERE id = (SELECT max(id) FROM pgmarket.audit_log);

-- the auditor's opener: values that are not sealed come back as they are,
-- and so do values that only look sealed or do not open (an application's
-- text, an altered value, a value read under another column): no row can
-- make the auditor's reading fail
SELECT pgmarket.audit_open('{"a": 1, "b": "x", "c": null}') AS plain,
       pgmarket.audit_open('"scalar"') AS scalar, pgmarket.audit_open('{}') AS empty;
SELECT pgmarket.audit_open_value('email',
       to_jsonb('personal:e5000000-0000-4000-8000-000000000002:' || repeat('A', 64)))
       = to_jsonb('personal:e5000000-0000-4000-8000-000000000002:' || repeat('A', 64)) AS forged_as_is,
       pgmarket.audit_open_value('email', '"personal:not-a-uuid-at-all-but-36-chars-longx:AAAA"')
       = '"personal:not-a-uuid-at-all-but-36-chars-longx:AAAA"' AS malformed_as_is,
       pgmarket.audit_open_value('email', '"personal:e5000000-0000-4000-8000-000000000002:!!"')
       = '"personal:e5000000-0000-4000-8000-000000000002:!!"' AS bad_base64_as_is;
SELECT pgmarket.audit_open_value('username', new_values->'email') = new_values->'email' AS other_column_as_is,
       pgmarket.audit_open_value('email', new_values->'email') AS right_column
  FROM pgmarket.audit_log
 WHERE table_name = 'pgmarket.accounts' AND operation = 'INSERT'
   AND row_key->>'id' = 'e5000000-0000-4000-8000-000000000002';
-- a preference whose text looks sealed is shown as the application wrote it
SELECT pgmarket.set_preference(:keep, 'odd', to_jsonb('personal:' || :keep || ':AAAA'));
SELECT pgmarket.audit_open(new_values)->'value' AS odd_value FROM pgmarket.audit_log
 WHERE id = (SELECT max(id) FROM pgmarket.audit_log);
SELECT pg_temp.err($$SELECT pgmarket.audit_open_value(NULL, '1')$$);
SET ROLE pgmarket_app;
SELECT pg_temp.err($$SELECT pgmarket.audit_open('{}')$$);
RESET ROLE;

-- an account holding a victim's tombstone (from before create_user and
-- update_user reserved the shapes, so written here directly) does not
-- block the erasure with a raw 23505: 55000 names the holder, nothing
-- changes; once it is renamed, the erasure goes through
SELECT pgmarket.create_user('victim2@example.com', 'victim2', 'victim password',
       id => 'e5000000-0000-4000-8000-0000000000a1') IS NOT NULL AS victim;
SELECT pgmarket.create_user('squat@example.com', 'squatter', 'squat password',
       id => 'e5000000-0000-4000-8000-0000000000a2') IS NOT NULL AS squatter;
UPDATE pgmarket.accounts SET email = 'e5000000-0000-4000-8000-0000000000a1@erased.invalid'
 WHERE id = 'e5000000-0000-4000-8000-0000000000a2';
SELECT pg_temp.err($$SELECT pgmarket.erase_user('e5000000-0000-4000-8000-0000000000a1')$$);
UPDATE pgmarket.accounts SET email = 'squat@example.com', username = 'ERASED-e50000000000400080000000000000a1'
 WHERE id = 'e5000000-0000-4000-8000-0000000000a2';
SELECT pg_temp.err($$SELECT pgmarket.erase_user('e5000000-0000-4000-8000-0000000000a1')$$);
SELECT email, username FROM pgmarket.users WHERE id = 'e5000000-0000-4000-8000-0000000000a1';
UPDATE pgmarket.accounts SET username = 'squatter' WHERE id = 'e5000000-0000-4000-8000-0000000000a2';
SELECT pgmarket.erase_user('e5000000-0000-4000-8000-0000000000a1');
SELECT email, username FROM pgmarket.users WHERE id = 'e5000000-0000-4000-8000-0000000000a1';

-- clean up
SELECT pg_temp.write_key_file($$SELECT ''$$);
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
