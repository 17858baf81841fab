-- tour.sql: a short walk through pgmarket's accounts and ledger.
--
-- scripts/demo.sh runs it on a fresh cluster:
--     psql -X -v ON_ERROR_STOP=1 -e -f scripts/tour.sql
-- It expects `CREATE EXTENSION pgmarket` to have been run in the database
-- and creates its own users, so run it once per fresh database.

\set ON_ERROR_STOP 1
\set QUIET 1
\pset null '(null)'
\set QUIET 0
SET search_path TO pgmarket, public;

\echo
\echo '== 1. Accounts ==================================================='
\echo 'Two users: alice signs in with a password, bob has none (an API-only account).'
SELECT create_user('Alice@Example.com ', 'alice', 'correct horse battery staple') AS alice \gset
SELECT create_user('bob@example.com', 'bob') AS bob \gset
\echo 'The users view never shows a password hash; the email was trimmed and lower-cased.'
SELECT email, username, roles, is_active FROM users ORDER BY username;

\echo
\echo 'authenticate() takes the email or the username; a wrong password is just NULL.'
SELECT authenticate('alice', 'correct horse battery staple') = :'alice' AS alice_signed_in;
SELECT authenticate('alice@example.com', 'wrong password') AS wrong_password;
SELECT authenticate('nobody', 'whatever') AS unknown_login;

\echo
\echo '== 2. Deposits and idempotency ==================================='
\echo 'Amounts are numeric, exact to the micro-credit (6 digits).'
SELECT * FROM add_funds(:'alice', 100, 'topup-2025-001', 'card 4242');
\echo 'The same call with the same idempotency key replays the first result: no second deposit.'
SELECT * FROM add_funds(:'alice', 100, 'topup-2025-001', 'card 4242');
SELECT * FROM add_funds(:'bob', 5, 'bob-first-topup');

\echo
\echo '== 3. Charges ====================================================='
SELECT * FROM deduct_balance(:'alice', 0.004211, 'gpt-4o', 1532, 'req-0001') \gset charge_
\echo 'charged alice' :charge_amount 'credits for gpt-4o as entry' :charge_entry_id 'leaving' :charge_available_balance 'available'
SELECT * FROM deduct_balance(:'alice', 1.25, 'claude-3-opus', 4100);

\echo
\echo 'Charging more than is available raises PM001 (insufficient_funds) and changes nothing.'
SELECT set_config('tour.bob', :'bob', false) \gset
DO $$
BEGIN
    PERFORM pgmarket.deduct_balance(current_setting('tour.bob')::uuid,
                                    1000, 'gpt-4o', 90000);
    RAISE EXCEPTION 'the charge should have been refused';
EXCEPTION WHEN SQLSTATE 'PM001' THEN
    RAISE NOTICE 'refused with SQLSTATE %: %', SQLSTATE, SQLERRM;
END
$$;
SELECT total_balance, spent_balance, available_balance FROM get_balance(:'bob');

\echo
\echo '== 4. Two-phase charges: reserve, then settle or release ========='
\echo 'A hold takes credit out of "available" until the call finishes.'
SELECT reserve(:'alice', 5, '10 minutes') AS hold \gset
SELECT reserved_balance, available_balance FROM get_balance(:'alice');
\echo 'Settle charges what the call really cost (at most the hold) and frees the rest.'
SELECT * FROM settle(:'alice', :hold, 3.5, 'gpt-4o', 2200);
\echo 'A second hold that is released instead charges nothing.'
SELECT reserve(:'alice', 2) AS hold2 \gset
SELECT user_id = :'alice' AS alice, reserved_balance, available_balance
  FROM release(:'alice', :hold2);

\echo
\echo '== 5. Refunds ====================================================='
\echo 'Part of a charge comes back; refunds of a charge never exceed it.'
SELECT * FROM refund(:'alice', :charge_entry_id, 0.001, 'refund-req-0001');
\echo 'The rest of it (no amount given).'
SELECT kind, amount, available_balance FROM refund(:'alice', :charge_entry_id);

\echo
\echo '== 6. A batch of charges in one call ============================='
\echo 'Each charge stands on its own: the bad ones report their SQLSTATE, the good ones apply.'
SELECT b.ordinal, b.sqlstate, b.entry_id IS NOT NULL AS applied, b.available_balance
  FROM deduct_batch(ARRAY[
         ROW(:'alice', 0.5, 'gpt-4o', 800, 'batch-1')::charge,        -- fine
         ROW(:'bob', 50, 'gpt-4o', 800, 'batch-2')::charge,           -- PM001: bob has 5
         ROW(:'alice', 0.0000001, 'gpt-4o', 1, 'batch-3')::charge,    -- 22023: not a whole micro-credit
         ROW(gen_random_uuid(), 1, 'gpt-4o', 1, 'batch-4')::charge,   -- PM002: no such user
         ROW(:'bob', 1, 'mistral-large', 300, 'batch-5')::charge      -- fine
       ]) AS b
 ORDER BY b.ordinal;

\echo
\echo '== 7. Balances and history ======================================='
SELECT username, b.total_balance, b.spent_balance, b.reserved_balance, b.available_balance
  FROM users u, LATERAL get_balance(u.id) b
 ORDER BY username;
\echo 'Alice''s ledger, newest first (keyset pagination with before_id).'
SELECT entry_id, kind, amount, available_balance, model_id, tokens_used,
       idempotency_key, refund_of
  FROM ledger_entries(:'alice', 10);

\echo
\echo '== 8. Metering ===================================================='
\echo 'Usage per model, net of refunds:'
SELECT * FROM model_usage ORDER BY model_id;
\echo 'Usage per user and day:'
SELECT u.username, d.day = (now() AT TIME ZONE 'UTC')::date AS today,
       d.model_id, d.requests, d.tokens, d.cost
  FROM usage_daily d JOIN users u ON u.id = d.user_id
 ORDER BY u.username, d.model_id;

\echo
\echo '== 9. The vault: keys users bring ================================='
\echo 'Alice stores her OpenAI key; the table holds only a ciphertext bound to its row.'
SELECT put_provider_key(:'alice', 'OpenAI', 'sk-demo-alice-0123456789abcdef', 'work account') AS alice_key \gset
SELECT provider, label, hint, key_version, revoked_at IS NULL AS active
  FROM list_provider_keys(:'alice');
SELECT length(ciphertext) AS ciphertext_bytes,
       position(convert_to('sk-demo', 'UTF8') IN ciphertext) = 0 AS no_plaintext_in_table
  FROM provider_keys WHERE key_id = :'alice_key';
\echo 'The gateway decrypts it when it calls the provider (a pgmarket_keyreader grant):'
SELECT get_provider_key(:'alice', 'openai') AS decrypted;
\echo 'Every decryption is recorded, never the secret:'
SELECT provider, session_role FROM key_access_log ORDER BY id;
\echo 'A new key for the same provider revokes the old one:'
SELECT put_provider_key(:'alice', 'openai', 'sk-demo-alice-rotated-99999999') IS NOT NULL AS stored;
SELECT hint, revoked_at IS NULL AS active FROM list_provider_keys(:'alice') ORDER BY created_at;

\echo
\echo '== 10. Platform API keys =========================================='
\echo 'Alice gets a key with a monthly spend limit of 1 credit; the raw key is shown once.'
SELECT key_id AS alice_api_key_id, api_key AS alice_api_key
  FROM create_api_key(:'alice', 'my bot', spend_limit => 1, spend_period => 'month') \gset
SELECT left(:'alice_api_key', 24) || '...' AS shown_once_prefix;
SELECT set_config('tour.api_key', :'alice_api_key', false) IS NOT NULL AS remembered;
SELECT user_id = :'alice' AS belongs_to_alice, scopes, rate_limit_tier
  FROM verify_api_key(:'alice_api_key');
\echo 'The gateway checks the key and charges in one call:'
SELECT kind, amount, available_balance FROM charge_api_key(:'alice_api_key', 0.6, 'gpt-4o', 800);
\echo 'A charge past the key''s monthly limit is refused (PM001), whatever the balance:'
DO $$
BEGIN
    PERFORM pgmarket.charge_api_key(current_setting('tour.api_key'), 0.5, 'gpt-4o', 500);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE '% %', SQLSTATE, SQLERRM;
END $$;
SELECT name, spend_limit, spent FROM list_api_keys(:'alice');
\echo 'Revocation takes effect on the next call (28000):'
SELECT revoke_api_key(:'alice', :'alice_api_key_id');
DO $$
BEGIN
    PERFORM pgmarket.charge_api_key(current_setting('tour.api_key'), 0.1, 'gpt-4o', 100);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE '% %', SQLSTATE, SQLERRM;
END $$;

\echo
\echo '== 11. Chat: a completion stored and charged in one step ========='
SELECT create_chat_session(:'alice', 'gpt-4o', 'Trip planning') AS session \gset
SELECT save_chat_message(:'alice', :'session', 'user', 'Three days in Lisbon?', 9) IS NOT NULL AS saved;
SELECT kind, amount, available_balance, replayed
  FROM record_completion(:'alice', :'session', 'Day 1: Alfama...', 420, 0.0042, 'completion-1');
\echo 'A retry of the same request stores no second message and charges nothing more:'
SELECT kind, amount, available_balance, replayed
  FROM record_completion(:'alice', :'session', 'Day 1: Alfama...', 420, 0.0042, 'completion-1');
SELECT role, content, tokens, cost FROM get_chat_history(:'alice', :'session', oldest_first => true);

\echo
\echo '== 12. Acting for one user: pgmarket.actor ========================'
\echo 'The back end says whom a transaction acts for; then no other user can be touched (42501).'
BEGIN;
SELECT set_config('pgmarket.actor', :'alice', true) IS NOT NULL AS acting_for_alice;
SELECT available_balance FROM get_balance(:'alice');
DO $$
BEGIN
    PERFORM pgmarket.get_balance(u.id) FROM pgmarket.users u WHERE u.username = 'bob';
    RAISE NOTICE 'unexpected: bob''s balance was reachable';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE '% %', SQLSTATE, SQLERRM;
END $$;
COMMIT;

\echo
\echo '== 13. The audit trail and its seal ==============================='
\echo 'Every change of accounts, keys, roles and preferences is recorded; secrets are redacted.'
SELECT table_name, operation, changed_columns, new_values->>'password_hash' AS password_hash
  FROM audit_log WHERE table_name = 'pgmarket.accounts' ORDER BY id LIMIT 2;
SELECT seal_audit() > 0 AS sealed;
SELECT first_bad_id IS NULL AS chain_verifies, checked > 0 AS rows_checked FROM verify_audit();

\echo
\echo '== 14. Checks ====================================================='
\echo 'verify_ledger() lists broken invariants: none.'
SELECT count(*) AS problems FROM verify_ledger();
SELECT * FROM verify_ledger();

\echo
\echo 'End of the tour.'
