-- Platform API keys: create, verify, charge and reserve through a key,
-- scopes, spend limits, revocation, expiry, roles, and master key rotation.
--
-- Like vault.sql, the test writes the master key file that the test
-- cluster's pgmarket.master_key_file names, and removes it at the end.
-- Raw keys are random: the outputs show facts about them, never them.
\set VERBOSITY terse
-- the settings of a C extension exist once its library is loaded
LOAD 'pgmarket';
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM,
                          'sk_(live|test)_[0-9a-f]{16}', '<prefix>', 'g');
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

SELECT pgmarket.create_user('apikey1@example.com', 'apikey1', id => '5b000000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('apikey2@example.com', 'apikey2', id => '5b000000-0000-4000-8000-000000000002');
\set u1 '''5b000000-0000-4000-8000-000000000001'''
\set u2 '''5b000000-0000-4000-8000-000000000002'''
SELECT available_balance FROM pgmarket.add_funds(:u1, 100);

-------------------------------------------------------------------------------
-- create
-------------------------------------------------------------------------------
SELECT key_id AS k1, api_key AS a1 FROM pgmarket.create_api_key(:u1, 'gateway') \gset
-- sk_live_, 4 hex digits of partition, 12 random hex digits, _, 43 characters
-- of URL-safe base64 (32 random bytes)
SELECT :'a1' ~ '^sk_live_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$' AS well_formed,
       length(:'a1') AS length;
-- the public part routes: its partition is hashtext(user_id::text) & 65535,
-- what a PL/Proxy RUN ON hashtext(user_id::text) uses
SELECT pgmarket.api_key_partition(:'a1') = (hashtext(:u1) & 65535) AS routes_to_owner,
       pgmarket.api_key_partition('sk_live_nope') IS NULL AS not_a_key;
-- the table keeps the prefix and a keyed hash, never the key
SELECT prefix = left(:'a1', 24) AS prefix, length(hash) AS hash_bytes, hash_version,
       hash <> sha256(convert_to(:'a1', 'UTF8')) AS keyed,
       position(substr(:'a1', 26) IN k::text) = 0 AS secret_not_stored,
       name, scopes, rate_limit_tier, environment, spend_limit, spend_period,
       expires_at, last_used_at, revoked_at
  FROM pgmarket.api_keys k WHERE key_id = :'k1';
-- two keys of one user share the partition, not the rest
SELECT key_id AS k2, api_key AS a2
  FROM pgmarket.create_api_key(:u1, 'batch jobs', '{write,read,read}', 'pro',
                               now() + interval '30 days', 'test') \gset
SELECT :'a2' ~ '^sk_test_' AS test_key, substr(:'a2', 9, 4) = substr(:'a1', 9, 4) AS same_partition,
       left(:'a2', 24) <> left(:'a1', 24) AS own_prefix;
SELECT name, scopes, rate_limit_tier, environment, expires_at > now() AS expires_later
  FROM pgmarket.list_api_keys(:u1) WHERE key_id = :'k2';

-- bad arguments
SELECT pg_temp.err($$SELECT pgmarket.create_api_key(NULL, 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-0000000000ff', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', '')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', '{}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', '{read,fly}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', '{READ}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', '{read,NULL}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', '{{read},{write}}')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', rate_limit_tier => NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', rate_limit_tier => 'Gold!')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', expires_at => '2000-01-01 00:00:00+00')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', environment => NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', environment => 'prod')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', spend_limit => 0)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', spend_limit => 1.0000001)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', spend_limit => 9000000000000)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', spend_limit => 5, spend_period => 'week')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x', spend_period => 'day')$$);
SELECT count(*) AS keys_of_u1 FROM pgmarket.api_keys WHERE user_id = :u1;

-------------------------------------------------------------------------------
-- verify
-------------------------------------------------------------------------------
SELECT key_id = :'k1' AS same_key, user_id, scopes, rate_limit_tier
  FROM pgmarket.verify_api_key(:'a1');
SELECT key_id = :'k2' AS same_key, user_id, scopes, rate_limit_tier
  FROM pgmarket.verify_api_key(:'a2');
-- last_used_at is kept to the minute
SELECT last_used_at = date_trunc('minute', last_used_at) AS to_the_minute,
       last_used_at <= now() AND last_used_at > now() - interval '2 minutes' AS recent
  FROM pgmarket.api_keys WHERE key_id = :'k1';
-- a stamp of this minute (here: of the next one) is not written again
UPDATE pgmarket.api_keys SET last_used_at = date_trunc('minute', now()) + interval '1 minute' WHERE key_id = :'k1';
SELECT xmin AS stamp_xmin FROM pgmarket.api_keys WHERE key_id = :'k1' \gset
SELECT count(*) FROM pgmarket.verify_api_key(:'a1');
SELECT xmin = :'stamp_xmin' AS not_rewritten FROM pgmarket.api_keys WHERE key_id = :'k1';
-- an older stamp is moved on
UPDATE pgmarket.api_keys SET last_used_at = date_trunc('minute', now()) - interval '5 minutes' WHERE key_id = :'k1';
SELECT count(*) FROM pgmarket.verify_api_key(:'a1');
SELECT last_used_at = date_trunc('minute', last_used_at) AND
       last_used_at > now() - interval '2 minutes' AS restamped
  FROM pgmarket.api_keys WHERE key_id = :'k1';
-- malformed or unknown keys: no row
SELECT count(*) AS empty FROM pgmarket.verify_api_key('');
SELECT count(*) AS junk FROM pgmarket.verify_api_key('sk_live_abc');
SELECT count(*) AS longer FROM pgmarket.verify_api_key(:'a1' || 'x');
SELECT count(*) AS shorter FROM pgmarket.verify_api_key(left(:'a1', 67));
SELECT count(*) AS upper FROM pgmarket.verify_api_key(upper(:'a1'));
SELECT count(*) AS other_env FROM pgmarket.verify_api_key(replace(:'a1', 'sk_live_', 'sk_test_'));
SELECT count(*) AS wrong_secret
  FROM pgmarket.verify_api_key(left(:'a1', 67) || CASE right(:'a1', 1) WHEN 'A' THEN 'B' ELSE 'A' END);
SELECT count(*) AS swapped_secret
  FROM pgmarket.verify_api_key(left(:'a1', 25) || substr(:'a2', 26));
SELECT count(*) AS unknown_prefix
  FROM pgmarket.verify_api_key('sk_live_0000000000000000_' || substr(:'a1', 26));
SELECT pg_temp.err($$SELECT pgmarket.verify_api_key(NULL)$$);

-------------------------------------------------------------------------------
-- charge and reserve through a key
-------------------------------------------------------------------------------
SELECT user_id, kind, amount, available_balance, replayed
  FROM pgmarket.charge_api_key(:'a1', 1.25, 'gpt-4', 100);
SELECT user_id, kind, amount, available_balance, replayed
  FROM pgmarket.charge_api_key(:'a1', 0.5, 'gpt-4', 10, 'req-1');
SELECT user_id, kind, amount, available_balance, replayed
  FROM pgmarket.charge_api_key(:'a1', 0.5, 'gpt-4', 10, 'req-1');
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0.7, 'gpt-4', 10, 'req-1')$$, :'a1'));
-- the charge is an ordinary ledger entry of the key's user
SELECT kind, amount, model_id, tokens_used, idempotency_key
  FROM pgmarket.ledger_entries(:u1, 2);
SELECT pgmarket.reserve_api_key(:'a1', 2) > 0 AS reserved;
SELECT total_balance, spent_balance, reserved_balance, available_balance
  FROM pgmarket.get_balance(:u1);
SELECT spent, total_spent FROM pgmarket.list_api_keys(:u1) WHERE key_id = :'k1';
-- bad arguments
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0, 'gpt-4')$$, :'a1'));
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1.0000001, 'gpt-4')$$, :'a1'));
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, NULL, 'gpt-4')$$, :'a1'));
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, NULL)$$, :'a1'));
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'gpt-4', -1)$$, :'a1'));
SELECT pg_temp.err($$SELECT pgmarket.charge_api_key(NULL, 1, 'gpt-4')$$);
SELECT pg_temp.err(format($$SELECT pgmarket.reserve_api_key(%L, 1, NULL)$$, :'a1'));
SELECT pg_temp.err(format($$SELECT pgmarket.reserve_api_key(%L, 1, '8 days')$$, :'a1'));
-- a key that does not verify: 28000 and nothing about why
SELECT pg_temp.err($$SELECT pgmarket.charge_api_key('sk_live_abc', 1, 'gpt-4')$$);
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'gpt-4')$$,
                          left(:'a1', 67) || CASE right(:'a1', 1) WHEN 'A' THEN 'B' ELSE 'A' END));
SELECT pg_temp.err($$SELECT pgmarket.reserve_api_key('sk_live_abc', 1)$$);
-- insufficient funds of the user: PM001 from the ledger
SELECT key_id AS k3, api_key AS a3 FROM pgmarket.create_api_key(:u2, 'broke') \gset
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0.000001, 'gpt-4')$$, :'a3'));
SELECT pg_temp.err(format($$SELECT pgmarket.reserve_api_key(%L, 0.000001)$$, :'a3'));
SELECT spent, total_spent FROM pgmarket.list_api_keys(:u2);

-- scopes: charging needs write
SELECT key_id AS k4, api_key AS a4 FROM pgmarket.create_api_key(:u1, 'read only', '{read}') \gset
SELECT scopes FROM pgmarket.verify_api_key(:'a4');
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'gpt-4')$$, :'a4'));
SELECT pg_temp.err(format($$SELECT pgmarket.reserve_api_key(%L, 1)$$, :'a4'));
SELECT key_id AS k5, api_key AS a5 FROM pgmarket.create_api_key(:u1, 'admin only', '{admin}') \gset
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'gpt-4')$$, :'a5'));

-------------------------------------------------------------------------------
-- spend limits, at their edge
-------------------------------------------------------------------------------
-- lifetime: 2 credits
SELECT key_id AS k6, api_key AS a6 FROM pgmarket.create_api_key(:u1, 'capped', spend_limit => 2) \gset
SELECT amount FROM pgmarket.charge_api_key(:'a6', 1.5, 'gpt-4', 0, 'cap-1');
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0.500001, 'gpt-4')$$, :'a6'));
SELECT amount, available_balance FROM pgmarket.charge_api_key(:'a6', 0.5, 'gpt-4');
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0.000001, 'gpt-4')$$, :'a6'));
SELECT pg_temp.err(format($$SELECT pgmarket.reserve_api_key(%L, 0.000001)$$, :'a6'));
-- a replay of a charge that went through still replays at the limit
SELECT amount, replayed FROM pgmarket.charge_api_key(:'a6', 1.5, 'gpt-4', 0, 'cap-1');
SELECT spend_limit, spend_period, spent, total_spent FROM pgmarket.list_api_keys(:u1) WHERE key_id = :'k6';
-- the refused charges changed nothing
SELECT available_balance FROM pgmarket.get_balance(:u1);
-- per day: 1 credit, then a new day
SELECT key_id AS k7, api_key AS a7
  FROM pgmarket.create_api_key(:u1, 'daily', spend_limit => 1, spend_period => 'day') \gset
SELECT pgmarket.reserve_api_key(:'a7', 0.4) > 0 AS reserved;
SELECT amount FROM pgmarket.charge_api_key(:'a7', 0.6, 'gpt-4');
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0.000001, 'gpt-4')$$, :'a7'));
SELECT spent, total_spent FROM pgmarket.list_api_keys(:u1) WHERE key_id = :'k7';
UPDATE pgmarket.api_key_spend SET period_start = period_start - interval '1 day' WHERE key_id = :'k7';
SELECT spent, total_spent FROM pgmarket.list_api_keys(:u1) WHERE key_id = :'k7';
SELECT amount FROM pgmarket.charge_api_key(:'a7', 1, 'gpt-4');
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0.000001, 'gpt-4')$$, :'a7'));
SELECT l.spent, l.total_spent, k.period_start = date_trunc('day', now(), 'UTC') AS today
  FROM pgmarket.list_api_keys(:u1) l JOIN pgmarket.api_key_spend k USING (key_id)
 WHERE key_id = :'k7';
-- per month
SELECT key_id AS k8, api_key AS a8
  FROM pgmarket.create_api_key(:u1, 'monthly', spend_limit => 0.000002, spend_period => 'month') \gset
SELECT amount FROM pgmarket.charge_api_key(:'a8', 0.000002, 'gpt-4');
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0.000001, 'gpt-4')$$, :'a8'));
SELECT period_start = date_trunc('month', now(), 'UTC') AS this_month
  FROM pgmarket.api_key_spend WHERE key_id = :'k8';

-------------------------------------------------------------------------------
-- revocation, expiry, deactivation: no row, 28000, at once
-------------------------------------------------------------------------------
SELECT pgmarket.revoke_api_key(:u2, :'k1') AS other_users_key;
SELECT pgmarket.revoke_api_key(:u1, gen_random_uuid()) AS unknown_key;
SELECT pgmarket.revoke_api_key(:u1, :'k1') AS revoked;
SELECT pgmarket.revoke_api_key(:u1, :'k1') AS revoked_again;
SELECT count(*) AS verifies FROM pgmarket.verify_api_key(:'a1');
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'gpt-4')$$, :'a1'));
SELECT pg_temp.err(format($$SELECT pgmarket.reserve_api_key(%L, 1)$$, :'a1'));
SELECT pg_temp.err($$SELECT pgmarket.revoke_api_key(NULL, gen_random_uuid())$$);
SELECT pg_temp.err($$SELECT pgmarket.revoke_api_key('5b000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.revoke_api_key('5b000000-0000-4000-8000-0000000000ff', gen_random_uuid())$$);
-- expired
UPDATE pgmarket.api_keys SET expires_at = now() - interval '1 second' WHERE key_id = :'k2';
SELECT count(*) AS verifies FROM pgmarket.verify_api_key(:'a2');
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'gpt-4')$$, :'a2'));
-- deactivated user
SELECT pgmarket.create_user('apikey3@example.com', 'apikey3', id => '5b000000-0000-4000-8000-000000000003');
SELECT available_balance FROM pgmarket.add_funds('5b000000-0000-4000-8000-000000000003', 5);
SELECT api_key AS a9 FROM pgmarket.create_api_key('5b000000-0000-4000-8000-000000000003', 'soon gone') \gset
SELECT count(*) AS verifies FROM pgmarket.verify_api_key(:'a9');
SELECT pgmarket.deactivate_user('5b000000-0000-4000-8000-000000000003');
SELECT count(*) AS verifies FROM pgmarket.verify_api_key(:'a9');
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'gpt-4')$$, :'a9'));
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000003', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.list_api_keys('5b000000-0000-4000-8000-000000000003')$$);

-- list: every key, revoked ones included, never the hash
SELECT name, prefix ~ '^sk_(live|test)_[0-9a-f]{16}$' AS prefix, scopes, rate_limit_tier,
       environment, spend_limit, spend_period, spent, total_spent,
       created_at IS NOT NULL AS created, revoked_at IS NOT NULL AS revoked
  FROM pgmarket.list_api_keys(:u1) ORDER BY created_at;
SELECT pg_temp.err($$SELECT pgmarket.list_api_keys(NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.list_api_keys('5b000000-0000-4000-8000-0000000000ff')$$);
SELECT count(*) AS hash_columns
  FROM pg_proc p, unnest(p.proargnames) a
 WHERE p.proname = 'list_api_keys' AND a LIKE '%hash%';
SELECT * FROM pgmarket.verify_ledger();

-------------------------------------------------------------------------------
-- roles
-------------------------------------------------------------------------------
SET ROLE pgmarket_app;
SELECT api_key AS a10 FROM pgmarket.create_api_key(:u1, 'made by the app') \gset
SELECT count(*) AS app_verifies FROM pgmarket.verify_api_key(:'a10');
SELECT amount FROM pgmarket.charge_api_key(:'a10', 0.25, 'gpt-4');
SELECT pgmarket.reserve_api_key(:'a10', 0.25) > 0 AS app_reserves;
SELECT count(*) > 0 AS app_lists FROM pgmarket.list_api_keys(:u1);
SELECT pg_temp.err($$SELECT * FROM pgmarket.api_keys$$);
SELECT pg_temp.err($$SELECT hash FROM pgmarket.api_keys$$);
SELECT pg_temp.err($$UPDATE pgmarket.api_keys SET revoked_at = NULL$$);
RESET ROLE;
SET ROLE pgmarket_keyreader;
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x')$$);
SELECT pg_temp.err(format($$SELECT pgmarket.verify_api_key(%L)$$, :'a10'));
RESET ROLE;
SET ROLE pgmarket_auditor;
SELECT pg_temp.err($$SELECT * FROM pgmarket.api_keys$$);
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'gpt-4')$$, :'a10'));
RESET ROLE;

-------------------------------------------------------------------------------
-- master key rotation: issued keys keep verifying
-------------------------------------------------------------------------------
SELECT pg_temp.write_key_file($$VALUES ('1:' || (SELECT k1 FROM mk)), ('2:' || (SELECT k2 FROM mk))$$);
SELECT count(*) AS old_key_verifies FROM pgmarket.verify_api_key(:'a10');
SELECT key_id AS k11, api_key AS a11 FROM pgmarket.create_api_key(:u1, 'after rotation') \gset
SELECT hash_version FROM pgmarket.api_keys WHERE key_id = :'k11';
SELECT count(*) AS new_key_verifies FROM pgmarket.verify_api_key(:'a11');
-- without version 1, keys hashed under it no longer verify
SELECT pg_temp.write_key_file($$SELECT '2:' || k2 FROM mk$$);
SELECT count(*) AS old_key_verifies FROM pgmarket.verify_api_key(:'a10');
SELECT count(*) AS new_key_verifies FROM pgmarket.verify_api_key(:'a11');

-------------------------------------------------------------------------------
-- with pgmarket.actor set, a key has the default tier "free" only (42501):
-- a user does not choose their own rate limit
-------------------------------------------------------------------------------
BEGIN;
SET LOCAL pgmarket.actor = '5b000000-0000-4000-8000-000000000001';
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'mine', '{read}', 'enterprise')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'mine', '{read}', 'pro')$$);
SELECT count(*) AS none_made FROM pgmarket.api_keys
 WHERE user_id = '5b000000-0000-4000-8000-000000000001' AND name = 'mine';
SELECT count(*) AS default_tier FROM pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'mine');
SELECT count(*) AS free_named FROM pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'mine', '{read}', 'free');
SELECT rate_limit_tier, count(*) FROM pgmarket.api_keys
 WHERE user_id = '5b000000-0000-4000-8000-000000000001' AND name = 'mine' GROUP BY 1;
ROLLBACK;
-- the back end, without an actor, chooses
BEGIN;
SELECT count(*) AS backend_enterprise FROM pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'mine', '{read}', 'enterprise');
ROLLBACK;

-------------------------------------------------------------------------------
-- no master key: PM010
-------------------------------------------------------------------------------
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
SELECT pg_temp.err(format($$SELECT pgmarket.verify_api_key(%L)$$, :'a11'));
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'gpt-4')$$, :'a11'));
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5b000000-0000-4000-8000-000000000001', 'x')$$);
