-- Accounts: create_user, authenticate, deactivate_user, passwords, the users view.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- email is trimmed and lower-cased; the id can be given
SELECT pgmarket.create_user('  Alice@Example.COM ', 'alice', 'correct horse',
                            id => 'a0000000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('bob@example.com', 'Bob_the.builder-2',
                            roles => '{user,developer}',
                            id => 'a0000000-0000-4000-8000-000000000002');
SELECT id, email, username, roles, is_active, last_login_at IS NULL AS never_logged_in
  FROM pgmarket.users ORDER BY id;

-- the password is stored as an Argon2id hash, never as given
SELECT password_hash LIKE '$argon2id$v=19$m=65536,t=2,p=1$%' AS argon2id,
       password_hash NOT LIKE '%correct horse%' AS not_plain
  FROM pgmarket.accounts WHERE username = 'alice';
-- the users view never shows the hash
SELECT count(*) FROM information_schema.columns
 WHERE table_schema = 'pgmarket' AND table_name = 'users'
   AND column_name = 'password_hash';

-- a zero balance is created with the user
SELECT total_balance, spent_balance, reserved_balance, available_balance
  FROM pgmarket.get_balance('a0000000-0000-4000-8000-000000000001');

-- a generated id when none is given
SELECT pgmarket.create_user('carol@example.com', 'carol') IS NOT NULL AS created;

-- bad input: each with its SQLSTATE, and nothing is created
SELECT pg_temp.err($$SELECT pgmarket.create_user('alice@example.com', 'alice2')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('ALICE@example.com ', 'alice3')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', 'ALICE')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', 'dave', id => 'a0000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('not-an-email', 'dave')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@nodot', 'dave')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('da ve@example.com', 'dave')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('@example.com', 'dave')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', 'dv')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', 'dave!')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', repeat('d', 65))$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', 'dave', roles => '{user,wizard}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', 'dave', roles => '{}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', 'dave', roles => '{user,NULL}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', 'dave', '')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user(NULL, 'dave')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', 'dave', roles => NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('dave@example.com', 'dave', id => NULL)$$);
SELECT count(*) AS users FROM pgmarket.accounts;

-- authenticate by email or username, without regard to case
SELECT pgmarket.authenticate('alice', 'correct horse');
SELECT pgmarket.authenticate(' ALICE@example.com', 'correct horse');
SELECT pgmarket.authenticate('alice', 'wrong horse') IS NULL AS wrong_password;
SELECT pgmarket.authenticate('nobody', 'correct horse') IS NULL AS unknown_login;
SELECT pgmarket.authenticate('bob@example.com', 'anything') IS NULL AS no_password_set;
SELECT last_login_at IS NOT NULL AS stamped FROM pgmarket.users WHERE username = 'alice';
SELECT pg_temp.err($$SELECT pgmarket.authenticate(NULL, 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.authenticate('alice', NULL)$$);

-- hash_password and verify_password
SELECT pgmarket.verify_password('s3cret', pgmarket.hash_password('s3cret')) AS same,
       pgmarket.verify_password('s3creT', pgmarket.hash_password('s3cret')) AS different;
SELECT pgmarket.hash_password('s3cret') <> pgmarket.hash_password('s3cret') AS salted;
SELECT pg_temp.err($$SELECT pgmarket.verify_password('x', 'md5abcdef')$$);
SELECT pg_temp.err($$SELECT pgmarket.hash_password(NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.hash_password('')$$);
SELECT pg_temp.err($$SELECT pgmarket.verify_password(NULL, 'x')$$);

-- Django's pbkdf2_sha256 hashes verify (the published PBKDF2-HMAC-SHA256
-- vectors for "password" with salt "salt", 1 and 4096 rounds, 32 bytes)
SELECT pgmarket.verify_password('password',
       'pbkdf2_sha256$1$salt$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs=') AS one_round,
       pgmarket.verify_password('password',
       'pbkdf2_sha256$4096$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=') AS rounds_4096,
       pgmarket.verify_password('passwort',
       'pbkdf2_sha256$4096$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=') AS wrong;

-- a user with an imported pbkdf2 hash logs in, and the hash becomes Argon2id
UPDATE pgmarket.accounts
   SET password_hash = 'pbkdf2_sha256$4096$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o='
 WHERE username = 'carol';
SELECT pgmarket.authenticate('carol', 'passwort') IS NULL AS wrong_keeps_null;
SELECT password_hash LIKE 'pbkdf2_sha256$%' AS still_pbkdf2 FROM pgmarket.accounts WHERE username = 'carol';
SELECT pgmarket.authenticate('carol', 'password') IS NOT NULL AS logged_in;
SELECT password_hash LIKE '$argon2id$%' AS upgraded FROM pgmarket.accounts WHERE username = 'carol';
SELECT pgmarket.authenticate('carol', 'password') IS NOT NULL AS logged_in_again;

-- deactivate: soft delete; the user stays in the view; later calls raise PM002
SELECT pgmarket.add_funds('a0000000-0000-4000-8000-000000000002', 5) IS NOT NULL AS funded;
SELECT pgmarket.deactivate_user('a0000000-0000-4000-8000-000000000002');
SELECT username, is_active FROM pgmarket.users WHERE id = 'a0000000-0000-4000-8000-000000000002';
SELECT pg_temp.err($$SELECT pgmarket.deactivate_user('a0000000-0000-4000-8000-000000000002')$$);
SELECT pg_temp.err($$SELECT pgmarket.deactivate_user('a0000000-0000-4000-8000-0000000000ff')$$);
SELECT pg_temp.err($$SELECT pgmarket.deactivate_user(NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.get_balance('a0000000-0000-4000-8000-000000000002')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('a0000000-0000-4000-8000-000000000002', 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('a0000000-0000-4000-8000-000000000002', 1, 'm')$$);
-- the ledger keeps the history
SELECT kind, pgmarket.credits(amount) FROM pgmarket.ledger
 WHERE user_id = 'a0000000-0000-4000-8000-000000000002';
-- a deactivated user cannot log in, and the email stays taken
UPDATE pgmarket.accounts SET password_hash = pgmarket.hash_password('pw')
 WHERE username = 'Bob_the.builder-2';
SELECT pgmarket.authenticate('bob@example.com', 'pw') IS NULL AS deactivated_cannot_login;
SELECT pg_temp.err($$SELECT pgmarket.create_user('bob@example.com', 'bob2')$$);

-- import_user: a migrated account keeps its pbkdf2_sha256 hash until its
-- first login; a repeat changes nothing; a clash is 23505; a bad hash 22023
SELECT pgmarket.import_user('a0000000-0000-4000-8000-0000000000a1', 'Migrated@Example.com',
       'migrated', 'pbkdf2_sha256$4096$salt$xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o=',
       '2025-01-31 12:00:00+00');
SELECT email, username, created_at = '2025-01-31 12:00:00+00' AS kept_created_at
  FROM pgmarket.users WHERE id = 'a0000000-0000-4000-8000-0000000000a1';
SELECT total_balance FROM pgmarket.get_balance('a0000000-0000-4000-8000-0000000000a1');
SELECT pgmarket.import_user('a0000000-0000-4000-8000-0000000000a1', 'migrated@example.com',
       'migrated', 'pbkdf2_sha256$1$other$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs=') AS repeat;
SELECT password_hash LIKE 'pbkdf2_sha256$4096$%' AS first_hash_kept
  FROM pgmarket.accounts WHERE username = 'migrated';
SELECT pgmarket.authenticate('migrated', 'password') = 'a0000000-0000-4000-8000-0000000000a1' AS logged_in;
SELECT password_hash LIKE '$argon2id$%' AS upgraded FROM pgmarket.accounts WHERE username = 'migrated';
SELECT pg_temp.err($$SELECT pgmarket.import_user('a0000000-0000-4000-8000-0000000000a1', 'other@example.com', 'migrated')$$);
SELECT pg_temp.err($$SELECT pgmarket.import_user('a0000000-0000-4000-8000-0000000000a2', 'migrated@example.com', 'migrated2')$$);
SELECT pg_temp.err($$SELECT pgmarket.import_user('a0000000-0000-4000-8000-0000000000a2', 'm2@example.com', 'MIGRATED')$$);
SELECT pg_temp.err($$SELECT pgmarket.import_user('a0000000-0000-4000-8000-0000000000a2', 'm2@example.com', 'migrated2', 'md5deadbeef')$$);
SELECT pg_temp.err($$SELECT pgmarket.import_user(NULL, 'm2@example.com', 'migrated2')$$);
SELECT pgmarket.import_user('a0000000-0000-4000-8000-0000000000a2', 'm2@example.com', 'migrated2') IS NOT NULL AS without_password;
SET ROLE pgmarket_app;
SELECT pg_temp.err($$SELECT pgmarket.import_user('a0000000-0000-4000-8000-0000000000a3', 'm3@example.com', 'migrated3')$$);
RESET ROLE;

-- with pgmarket.actor set, a new account has the default roles {user} and
-- no other: 42501 and nothing created (a user acting never grants a role)
SET pgmarket.actor = 'a0000000-0000-4000-8000-000000000001';
SELECT pg_temp.err($$SELECT pgmarket.create_user('act1@example.com', 'act_admin', 'pw-act-12', '{admin}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('act2@example.com', 'act_dev', 'pw-act-12', '{user,developer}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('act2@example.com', 'act_dev', 'pw-act-12', '{user,user}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('act3@example.com', 'act_hashed', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e', '{admin}')$$);
SELECT count(*) AS none_created FROM pgmarket.accounts WHERE username LIKE 'act\_%';
SELECT pgmarket.create_user('act4@example.com', 'act_plain', 'pw-act-12') IS NOT NULL AS default_roles;
SELECT pgmarket.create_user('act5@example.com', 'act_user', 'pw-act-12', '{user}') IS NOT NULL AS user_named;
SELECT pgmarket.create_user_hashed('act6@example.com', 'act_hashed_user',
       '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e') IS NOT NULL AS hashed_default;
RESET pgmarket.actor;
-- the back end, without an actor, chooses
SELECT pgmarket.create_user('act7@example.com', 'act_backend', 'pw-act-12', '{admin}') IS NOT NULL AS backend_admin;
SELECT username, roles FROM pgmarket.users WHERE username LIKE 'act\_%' ORDER BY username;

-- the tombstone shapes of erase_user are reserved: 22023, nothing created
SELECT pg_temp.err($$SELECT pgmarket.create_user('x@erased.invalid', 'tomb_a', 'pw-tomb-12')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user(' X@Erased.INVALID ', 'tomb_a', 'pw-tomb-12')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('tomb@example.com', 'erased-a0000000000040008000000000000001', 'pw-tomb-12')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user('tomb@example.com', 'Erased-x', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('tomb@erased.invalid', 'tomb_b', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_user_hashed('tomb@example.com', 'erased-b', '$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e')$$);
SELECT pg_temp.err($$SELECT pgmarket.import_user('a0000000-0000-4000-8000-0000000000b1', 'tomb@erased.invalid', 'tomb_c')$$);
SELECT pg_temp.err($$SELECT pgmarket.import_user('a0000000-0000-4000-8000-0000000000b1', 'tomb@example.com', 'ERASED-c')$$);
SELECT count(*) AS none_created FROM pgmarket.accounts
 WHERE username ILIKE 'tomb\_%' OR username ILIKE 'erased-%' OR email LIKE 'tomb@%';
-- the same words elsewhere are not the shapes
SELECT pgmarket.create_user('erased-fan@example.com', 'not-erased', 'pw-tomb-12') IS NOT NULL AS other_spellings;
SELECT pgmarket.create_user('fan@erased.invalid.example.com', 'erased_fan', 'pw-tomb-12') IS NOT NULL AS other_domain;
