-- Account lookups and updates: get_user, get_user_by_email,
-- get_user_by_username, update_last_login, update_user, reactivate_user.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT pgmarket.create_user('pr.alice@example.com', 'Pr_Alice', 'correct horse',
                            id => 'ac100000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user(U&'pr.jos\00E9@example.com', 'pr_jose',
                            roles => '{user,developer}',
                            id => 'ac100000-0000-4000-8000-000000000002');
SELECT pgmarket.create_user('pr.carol@example.com', 'pr_carol',
                            id => 'ac100000-0000-4000-8000-000000000003');

-- lookups: by id, by email in any spelling, by username without case
SELECT id, email, username, roles, is_active, last_login_at IS NULL AS never
  FROM pgmarket.get_user('ac100000-0000-4000-8000-000000000001');
SELECT id FROM pgmarket.get_user_by_email(' Pr.Alice@Example.COM');
SELECT id FROM pgmarket.get_user_by_email(E'\tPR.ALICE@example.com\n');
SELECT id FROM pgmarket.get_user_by_email(U&'PR.JOSE\0301@example.com');  -- NFD
SELECT id FROM pgmarket.get_user_by_username('  pr_alice ');
SELECT id FROM pgmarket.get_user_by_username('PR_ALICE');
SELECT id, username FROM pgmarket.get_user_by_username('Pr_JoSe');
-- the columns of the view users, never the hash
SELECT string_agg(attname, ',' ORDER BY attnum)
  FROM pg_attribute
 WHERE attrelid = 'pgmarket.users'::regclass AND attnum > 0;
SELECT count(*) = 7 AS seven_columns
  FROM pgmarket.get_user('ac100000-0000-4000-8000-000000000001') u,
       LATERAL jsonb_object_keys(to_jsonb(u));

-- unknown: no row, never an error
SELECT count(*) FROM pgmarket.get_user('ac100000-0000-4000-8000-0000000000ff');
SELECT count(*) FROM pgmarket.get_user_by_email('nobody@example.com');
SELECT count(*) FROM pgmarket.get_user_by_username('nobody');
-- input that cannot be an email or a username: 22023; NULL: 22004
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_user_by_email('not-an-email')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_user_by_email(repeat('a', 2000) || '@example.com')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_user_by_username('ab')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_user_by_username('pr.alice@example.com')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_user_by_username(E'al\x01ice')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_user_by_username(repeat('a', 5000))$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_user(NULL)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_user_by_email(NULL)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_user_by_username(NULL)$$);

-- update_last_login stamps and returns the transaction's time
BEGIN;
SELECT pgmarket.update_last_login('ac100000-0000-4000-8000-000000000003') = now() AS returns_now;
SELECT last_login_at = now() AS stamped FROM pgmarket.users
 WHERE id = 'ac100000-0000-4000-8000-000000000003';
COMMIT;
SELECT pg_temp.err($$SELECT pgmarket.update_last_login('ac100000-0000-4000-8000-0000000000ff')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_last_login(NULL)$$);

-- update_user: the same rules as create_user
SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', email => ' Pr.Carol.New@Example.com ');
SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', username => 'Pr_Carol_2');
SELECT email, username FROM pgmarket.users WHERE id = 'ac100000-0000-4000-8000-000000000003';
SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', 'pr.carol@example.com', 'pr_carol');
SELECT email, username FROM pgmarket.users WHERE id = 'ac100000-0000-4000-8000-000000000003';
-- the user's own name in another case is no conflict
SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', username => 'PR_CAROL');
SELECT username FROM pgmarket.users WHERE id = 'ac100000-0000-4000-8000-000000000003';
-- nothing to change: nothing changes
SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003');
-- taken, malformed, unknown, NULL user
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', email => 'PR.ALICE@example.com')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', username => 'pr_alice')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', email => U&'PR.JOSE\0301@example.com')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', email => 'bad@nodot')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', username => 'x!')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', username => ' pr_carol')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-0000000000ff', email => 'pr.z@example.com')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-0000000000ff')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_user(NULL, email => 'pr.z@example.com')$$);
-- a bad value is reported before an unknown user
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-0000000000ff', email => 'bad')$$);
SELECT email, username FROM pgmarket.users WHERE id = 'ac100000-0000-4000-8000-000000000003';

-- deactivated: still found by the lookups, with is_active false; no update
SELECT pgmarket.deactivate_user('ac100000-0000-4000-8000-000000000003');
SELECT id, is_active FROM pgmarket.get_user_by_username('pr_carol');
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', username => 'pr_carol3')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_last_login('ac100000-0000-4000-8000-000000000003')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_balance('ac100000-0000-4000-8000-000000000003')$$);
-- its email and username stay its own
SELECT pg_temp.err($$SELECT pgmarket.create_user('pr.carol@example.com', 'pr_carol9')$$);

-- reactivate_user undoes it; again is nothing; unknown is PM002
SELECT pgmarket.reactivate_user('ac100000-0000-4000-8000-000000000003');
SELECT is_active FROM pgmarket.get_user('ac100000-0000-4000-8000-000000000003');
SELECT available_balance FROM pgmarket.get_balance('ac100000-0000-4000-8000-000000000003');
SELECT pgmarket.reactivate_user('ac100000-0000-4000-8000-000000000003');
SELECT pg_temp.err($$SELECT pgmarket.reactivate_user('ac100000-0000-4000-8000-0000000000ff')$$);
SELECT pg_temp.err($$SELECT pgmarket.reactivate_user(NULL)$$);

-- the actor rule: another user's id is 42501; another user's email or
-- username finds nothing
BEGIN;
SET LOCAL pgmarket.actor = 'ac100000-0000-4000-8000-000000000001';
SELECT id FROM pgmarket.get_user('ac100000-0000-4000-8000-000000000001');
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_user('ac100000-0000-4000-8000-000000000002')$$);
SELECT id FROM pgmarket.get_user_by_email('pr.alice@example.com');
SELECT count(*) FROM pgmarket.get_user_by_email(U&'pr.jos\00E9@example.com');
SELECT count(*) FROM pgmarket.get_user_by_username('pr_jose');
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000002', username => 'pr_jose2')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_last_login('ac100000-0000-4000-8000-000000000002')$$);
SELECT pg_temp.err($$SELECT pgmarket.reactivate_user('ac100000-0000-4000-8000-000000000002')$$);
SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000001', username => 'pr_alice');
ROLLBACK;

-- the audit trail records the changes
SELECT operation, changed_columns
  FROM pgmarket.audit_log
 WHERE table_name = 'pgmarket.accounts' AND operation = 'UPDATE'
   AND row_key->>'id' = 'ac100000-0000-4000-8000-000000000003'
 ORDER BY id;

-- update_user never writes a tombstone shape of erase_user (22023)
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', email => 'ac100000-0000-4000-8000-000000000001@erased.invalid')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', email => 'X@ERASED.invalid')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', username => 'erased-ac100000000040008000000000000001')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000003', username => 'ERASED-x')$$);
SELECT email, username FROM pgmarket.users WHERE id = 'ac100000-0000-4000-8000-000000000003';

-- a deactivated user does not reactivate themselves: with pgmarket.actor
-- set, reactivate_user is 42501 (for any user), and the user stays inactive
SELECT pgmarket.deactivate_user('ac100000-0000-4000-8000-000000000003');
SET pgmarket.actor = 'ac100000-0000-4000-8000-000000000003';
SELECT pg_temp.err($$SELECT pgmarket.reactivate_user('ac100000-0000-4000-8000-000000000003')$$);
SELECT pg_temp.err($$SELECT pgmarket.reactivate_user('ac100000-0000-4000-8000-000000000001')$$);
SET ROLE pgmarket_app;
SELECT pg_temp.err($$SELECT pgmarket.reactivate_user('ac100000-0000-4000-8000-000000000003')$$);
RESET ROLE;
RESET pgmarket.actor;
SELECT is_active FROM pgmarket.users WHERE id = 'ac100000-0000-4000-8000-000000000003';
SELECT pgmarket.reactivate_user('ac100000-0000-4000-8000-000000000003');
SELECT is_active FROM pgmarket.users WHERE id = 'ac100000-0000-4000-8000-000000000003';

-- as the application role
SET ROLE pgmarket_app;
SELECT id FROM pgmarket.get_user_by_email('pr.alice@example.com');
SELECT pgmarket.update_user('ac100000-0000-4000-8000-000000000001', username => 'pr_alice_a');
SELECT username FROM pgmarket.get_user('ac100000-0000-4000-8000-000000000001');
RESET ROLE;
