-- import_batch: an import's records in one statement, each under the rules of
-- its single call; export_accounts.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- the batch as a whole: NULLs, a section that is none, records that are no array
SELECT pg_temp.err($$SELECT * FROM pgmarket.import_batch(NULL, '[]')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.import_batch('users', NULL)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.import_batch('ledger', '[]')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.import_batch('users', '{"a": 1}')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.import_batch('users', '"x"')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.import_batch('users',
    (SELECT jsonb_agg(i) FROM generate_series(1, 10001) i))$$);
SELECT * FROM pgmarket.import_batch('users', '[]');

-- users: each its own outcome; a bad one does not stop the others
SELECT * FROM pgmarket.import_batch('users', $$[
  {"id": "e0000000-0000-4000-8000-000000000001", "email": "Imp1@Example.com", "username": "imp1",
   "password_hash": "pbkdf2_sha256$600000$c2FsdHNhbHQ$7LcoLLDoOR+i1EdoTP3UQVVbggscifbc8tiVaw4unJw=",
   "created_at": "2024-05-06T07:08:09.5Z"},
  {"id": "e0000000-0000-4000-8000-000000000002", "email": "imp2@example.com", "username": "imp2"},
  {"id": "not-a-uuid", "email": "x@example.com", "username": "xxx"},
  {"id": "e0000000-0000-4000-8000-000000000003", "email": "not an email", "username": "imp3"},
  {"id": "e0000000-0000-4000-8000-000000000004", "email": "imp4@example.com", "username": "imp4",
   "password_hash": "pbkdf2_sha256$1$x$y"},
  {"id": "e0000000-0000-4000-8000-000000000005", "email": "imp1@example.com", "username": "imp5"},
  {"id": "e0000000-0000-4000-8000-000000000006", "email": 7, "username": "imp6"},
  {"id": "e0000000-0000-4000-8000-000000000007", "username": "imp7"},
  42,
  {"id": "e0000000-0000-4000-8000-000000000008", "email": "imp8@example.com", "username": "imp8",
   "created_at": "yesterday-ish"}
]$$);
SELECT id, email, username, created_at < '2025-01-01' AS kept_time,
       password_hash IS NOT NULL AS has_hash
  FROM pgmarket.accounts WHERE id::text LIKE 'e0000000-%' ORDER BY id;
-- the same again: present, nothing changes
SELECT * FROM pgmarket.import_batch('users', $$[
  {"id": "e0000000-0000-4000-8000-000000000001", "email": "imp1@example.com", "username": "imp1"},
  {"id": "e0000000-0000-4000-8000-000000000002", "email": "other@example.com", "username": "imp2"}
]$$);

-- entries: deposits then charges, the time kept, an opening charge without a model
SELECT * FROM pgmarket.import_batch('entries', $$[
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "10.5",
   "key": "t-1", "created_at": "2024-06-01T00:00:00Z"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "charge", "amount": "1.25",
   "key": "t-2", "model_id": "gpt-4", "tokens": 12, "created_at": "2024-06-02T00:00:00Z"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "charge", "amount": "0.75",
   "key": "import-opening-charge-x"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "charge", "amount": "100",
   "key": "t-3", "model_id": "gpt-4"},
  {"user_id": "e0000000-0000-4000-8000-0000000000ff", "type": "deposit", "amount": "1", "key": "t-4"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "1.0000001", "key": "t-5"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "-1", "key": "t-6"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "9000000000000", "key": "t-7"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "refund", "amount": "1", "key": "t-8"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "1"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "charge", "amount": "1", "key": "t-9",
   "tokens": -1},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "charge", "amount": "1", "key": "t-10",
   "tokens": 99999999999999999999},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "10.5", "key": "t-1"}
]$$);
SELECT kind, amount, model_id, tokens_used, idempotency_key,
       created_at AT TIME ZONE 'UTC' < '2025-01-01' AS kept_time
  FROM pgmarket.ledger WHERE user_id = 'e0000000-0000-4000-8000-000000000001' ORDER BY entry_id;
SELECT total_balance, spent_balance FROM pgmarket.get_balance('e0000000-0000-4000-8000-000000000001');
-- the opening charge counts in no usage view
SELECT model_id, requests, tokens FROM pgmarket.model_usage ORDER BY model_id;
-- a re-run: present, and a key used otherwise is refused
SELECT * FROM pgmarket.import_batch('entries', $$[
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "10.5", "key": "t-1"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "charge", "amount": "1.25", "key": "t-2"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "2", "key": "t-2"}
]$$);

-- chats: the session under its id, each message at its time
SELECT * FROM pgmarket.import_batch('chats', $$[
  {"id": "e1000000-0000-4000-8000-000000000001", "user_id": "e0000000-0000-4000-8000-000000000001",
   "model_id": "gpt-4", "title": "t", "messages": [
     {"role": "user", "content": "hi", "tokens": 2, "cost": "0", "created_at": "2024-07-01T10:00:00Z"},
     {"role": "assistant", "content": "hello", "tokens": 3, "cost": "0.000125",
      "tool_calls": [{"name": "calc"}], "created_at": "2024-07-01T10:00:01.25Z"}]},
  {"id": "e1000000-0000-4000-8000-000000000002", "user_id": "e0000000-0000-4000-8000-000000000001",
   "model_id": "gpt-4", "messages": [{"role": "robot", "content": "beep"}]},
  {"id": "e1000000-0000-4000-8000-000000000003", "user_id": "e0000000-0000-4000-8000-000000000001",
   "model_id": "gpt-4", "messages": {"role": "user"}},
  {"id": "e1000000-0000-4000-8000-000000000004", "user_id": "e0000000-0000-4000-8000-0000000000ff",
   "model_id": "gpt-4", "messages": []}
]$$);
SELECT role, content, tokens, cost, tool_calls, created_at AT TIME ZONE 'UTC' AS at
  FROM pgmarket.chat_messages WHERE session_id = 'e1000000-0000-4000-8000-000000000001'
 ORDER BY message_id;
SELECT count(*) AS sessions FROM pgmarket.chat_sessions WHERE session_id::text LIKE 'e1000000-%';
SELECT * FROM pgmarket.import_batch('chats', $$[
  {"id": "e1000000-0000-4000-8000-000000000001", "user_id": "e0000000-0000-4000-8000-000000000001",
   "model_id": "gpt-4", "messages": [{"role": "user", "content": "again"}]},
  {"id": "e1000000-0000-4000-8000-000000000001", "user_id": "e0000000-0000-4000-8000-000000000002",
   "model_id": "gpt-4", "messages": []}
]$$);

-- times: finite and not in the future (a few minutes of skew aside), each
-- record alone: entries, users and messages
SELECT * FROM pgmarket.import_batch('entries', $$[
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "1",
   "key": "t-inf", "created_at": "infinity"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "1",
   "key": "t-ninf", "created_at": "-infinity"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "1",
   "key": "t-2999", "created_at": "2999-01-01T00:00:00Z"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "type": "deposit", "amount": "1",
   "key": "t-bad", "created_at": "2024-13-01T00:00:00Z"}
]$$);
SELECT count(*) AS none FROM pgmarket.ledger WHERE idempotency_key LIKE 't-%inf' OR idempotency_key = 't-2999';
-- a minute ahead (a clock's skew) is taken
SELECT * FROM pgmarket.import_batch('users', jsonb_build_array(jsonb_build_object(
  'id', 'e9000000-0000-4000-8000-0000000000a2', 'email', 'soon@example.com', 'username', 'soon_user',
  'created_at', now() + interval '1 minute')));
SELECT * FROM pgmarket.import_batch('users', $$[
  {"id": "e0000000-0000-4000-8000-0000000000a1", "email": "inf@example.com", "username": "inf_user",
   "created_at": "infinity"}
]$$);
SELECT * FROM pgmarket.import_batch('chats', $$[
  {"id": "e1000000-0000-4000-8000-0000000000a1", "user_id": "e0000000-0000-4000-8000-000000000001",
   "model_id": "gpt-4", "messages": [{"role": "user", "content": "late", "created_at": "3000-01-01T00:00:00Z"}]}
]$$);
SELECT count(*) AS none FROM pgmarket.users WHERE id = 'e0000000-0000-4000-8000-0000000000a1';

-- provider keys: a blob that is not sealed to this vault is refused alone
SELECT * FROM pgmarket.import_batch('provider_keys', $$[
  {"user_id": "e0000000-0000-4000-8000-000000000001", "provider": "openai", "sealed": "AAAA", "hint": "abcd"},
  {"user_id": "e0000000-0000-4000-8000-000000000001", "provider": "openai", "sealed": "not base64!"}
]$$);

-- export_accounts: the hashes as kept
SELECT id, email, password_hash IS NOT NULL AS has_hash
  FROM pgmarket.export_accounts() WHERE id::text LIKE 'e0000000-%' ORDER BY id;

-- only pgmarket_admin may
SELECT has_function_privilege('pgmarket_app', 'pgmarket.import_batch(text, jsonb)', 'EXECUTE') AS app_import,
       has_function_privilege('pgmarket_app', 'pgmarket.export_accounts()', 'EXECUTE') AS app_export,
       has_function_privilege('pgmarket_admin', 'pgmarket.import_batch(text, jsonb)', 'EXECUTE') AS admin_import;
