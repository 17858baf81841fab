-- Chat: sessions, messages, completions charged with their message,
-- history pages, ending and deleting sessions, ratings, preferences, and
-- the pgmarket.actor rule of the chat functions.
\set VERBOSITY terse
-- session ids are random: messages show them by the names given below
CREATE TEMP TABLE named (id text PRIMARY KEY, name text);
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    m text;
    n record;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    m := SQLSTATE || ': ' || SQLERRM;
    FOR n IN SELECT * FROM pg_temp.named LOOP
        m := replace(m, n.id, n.name);
    END LOOP;
    RETURN m;
END $$;

SELECT pgmarket.create_user('c1@example.com', 'chat1', id => '6a000000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('c2@example.com', 'chat2', id => '6a000000-0000-4000-8000-000000000002');
SELECT pgmarket.create_user('c3@example.com', 'chat3', id => '6a000000-0000-4000-8000-000000000003');
\set u1 '''6a000000-0000-4000-8000-000000000001'''
\set u2 '''6a000000-0000-4000-8000-000000000002'''
\set u3 '''6a000000-0000-4000-8000-000000000003'''
SELECT amount FROM pgmarket.add_funds(:u1, 10);
SELECT amount FROM pgmarket.add_funds(:u2, 10);

-- what every failed call below must leave unchanged
CREATE TEMP VIEW state AS
    SELECT (SELECT count(*) FROM pgmarket.chat_sessions) AS sessions,
           (SELECT count(*) FROM pgmarket.chat_messages) AS messages,
           (SELECT count(*) FROM pgmarket.ledger
             WHERE user_id::text LIKE '6a000000-%') AS entries,
           (SELECT available_balance FROM pgmarket.get_balance(:u1)) AS available1,
           (SELECT available_balance FROM pgmarket.get_balance(:u2)) AS available2;

-------------------------------------------------------------------------------
-- sessions
-------------------------------------------------------------------------------
SELECT pgmarket.create_chat_session(:u1, 'gpt-4', 'first chat', 'agent-7') AS s1 \gset
SELECT pgmarket.create_chat_session(:u1, 'claude-3') AS s2 \gset
SELECT pgmarket.create_chat_session(:u2, 'gpt-4', 'bob''s chat') AS s3 \gset
INSERT INTO named VALUES (:'s1', '<s1>'), (:'s2', '<s2>'), (:'s3', '<s3>');
SELECT count(DISTINCT x) AS distinct_ids FROM unnest(ARRAY[:'s1', :'s2', :'s3']::uuid[]) x;
SELECT model_id, title, agent_id, status, context, message_count
  FROM pgmarket.list_chat_sessions(:u1) ORDER BY model_id;
SELECT * FROM state;
SELECT pg_temp.err($$SELECT pgmarket.create_chat_session(NULL, 'gpt-4')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_chat_session('6a000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.create_chat_session('6a000000-0000-4000-8000-000000000001', '')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_chat_session('6a000000-0000-4000-8000-000000000001', repeat('m', 201))$$);
SELECT pg_temp.err($$SELECT pgmarket.create_chat_session('6a000000-0000-4000-8000-000000000001', 'gpt-4', E'a\nb')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_chat_session('6a000000-0000-4000-8000-0000000000ff', 'gpt-4')$$);
SELECT * FROM state;

-------------------------------------------------------------------------------
-- messages: recorded, never charged
-------------------------------------------------------------------------------
SELECT pgmarket.save_chat_message(:u1, :'s1', 'system', 'be brief') > 0 AS saved;
SELECT pgmarket.save_chat_message(:u1, :'s1', 'user', 'hello', 2) > 0 AS saved;
SELECT pgmarket.save_chat_message(:u1, :'s1', 'assistant', 'hi!', 3, 0.000123) > 0 AS saved;
SELECT pgmarket.save_chat_message(:u1, :'s1', 'tool', '{"t": 21}', 0, 0,
                                  '[{"name": "weather", "args": {"city": "Oslo"}}]') > 0 AS saved;
SELECT pgmarket.save_chat_message(:u1, :'s1', 'user', '', 0, 0.0000000) > 0 AS empty_content_saved;
SELECT * FROM state;
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6a000000-0000-4000-8000-000000000001', NULL, 'user', 'x')$$);
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, NULL, 'x')$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', NULL)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x', NULL)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x', 0, NULL)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'robot', 'x')$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'User', 'x')$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x', -1)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x', 0, -0.1)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x', 0, 0.0000001)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x', 0, 'NaN')$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x', 0, 9000000000000)$$, :u1, :'s1'));
-- another user's session and an unknown one look the same: PM002
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x')$$, :u1, :'s3'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x')$$, :u1, '6a000000-0000-4000-8000-0000000000ee'));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x')$$, '6a000000-0000-4000-8000-0000000000ff', :'s1'));
SELECT * FROM state;

-------------------------------------------------------------------------------
-- record_completion: the message and its charge, both or neither
-------------------------------------------------------------------------------
SELECT kind, amount, available_balance, replayed
  FROM pgmarket.record_completion(:u1, :'s1', 'the answer is 42', 120, 0.25, 'c-1') \gset r1_
SELECT :'r1_kind' AS kind, :'r1_amount' AS amount, :'r1_available_balance' AS available, :'r1_replayed' AS replayed;
SELECT entry_id AS r1_entry FROM pgmarket.ledger WHERE user_id = :u1 AND idempotency_key = 'c-1' \gset
-- the entry is an ordinary charge that carries the session's model
SELECT kind, amount, model_id, tokens_used, idempotency_key
  FROM pgmarket.ledger_entries(:u1, 1);
-- the message carries its entry (the table keeps micro-credits)
SELECT role, content, tokens, cost, entry_id = :r1_entry AS carries_entry
  FROM pgmarket.chat_messages WHERE session_id = :'s1' AND entry_id IS NOT NULL;
-- a repeat with the same key: the first result, no second message or charge
SELECT * FROM state;
SELECT entry_id = :r1_entry AS same_entry, kind, amount, available_balance, replayed
  FROM pgmarket.record_completion(:u1, :'s1', 'the answer is 42', 120, 0.25, 'c-1');
SELECT * FROM state;
-- the same key with other arguments: PM003
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'the answer is 43', 120, 0.25, 'c-1')$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'the answer is 42', 121, 0.25, 'c-1')$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'the answer is 42', 120, 0.26, 'c-1')$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'the answer is 42', 120, 0.25, 'c-1')$$, :u1, :'s2'));
-- a key that a plain charge used is not a completion's
SELECT amount FROM pgmarket.deduct_balance(:u1, 0.5, 'gpt-4', 10, 'plain-1');
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', 10, 0.5, 'plain-1')$$, :u1, :'s1'));
-- and deduct_balance with a completion's key and other arguments is PM003 too
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('6a000000-0000-4000-8000-000000000001', 1, 'gpt-4', 0, 'c-1')$$);
-- without a key, every call charges
SELECT amount, available_balance, replayed FROM pgmarket.record_completion(:u1, :'s2', 'short', 7, 0.125);
SELECT amount, available_balance, replayed FROM pgmarket.record_completion(:u1, :'s2', 'short', 7, 0.125);
SELECT * FROM state;
-- insufficient funds: PM001, nothing stored, nothing charged
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'too dear', 10, 1000)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'too dear', 10, 1000, 'c-dear')$$, :u1, :'s1'));
-- bad arguments: nothing stored, nothing charged
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', 1, 0)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', 1, -1)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', 1, 0.0000001)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', -1, 1)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', NULL, 1)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', 1, NULL)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, NULL, 1, 1)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, NULL, 'x', 1, 1)$$, :u1));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(NULL, %L, 'x', 1, 1)$$, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', 1, 1, '')$$, :u1, :'s1'));
-- another user's session: PM002, and neither user is charged
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', 1, 1)$$, :u1, :'s3'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', 1, 1, 'c-other')$$, :u1, :'s3'));
SELECT * FROM state;

-- metering counts completions like any charge (net of refunds)
SELECT model_id, requests, tokens, cost FROM pgmarket.usage_daily WHERE user_id = :u1 ORDER BY model_id;
SELECT amount FROM pgmarket.refund(:u1, :r1_entry, 0.05);
SELECT model_id, requests, tokens, cost FROM pgmarket.usage_daily WHERE user_id = :u1 ORDER BY model_id;

-------------------------------------------------------------------------------
-- history: keyset pages, newest first or oldest first
-------------------------------------------------------------------------------
SELECT role, content, tokens, cost, tool_calls
  FROM pgmarket.get_chat_history(:u1, :'s1');
SELECT content FROM pgmarket.get_chat_history(:u1, :'s1', 2);
SELECT min(message_id) AS page_end FROM pgmarket.get_chat_history(:u1, :'s1', 2) \gset
SELECT content FROM pgmarket.get_chat_history(:u1, :'s1', 2, :page_end);
-- oldest first: the same page in the other order
SELECT content FROM pgmarket.get_chat_history(:u1, :'s1', 2, oldest_first => true);
SELECT content FROM pgmarket.get_chat_history(:u1, :'s1', 2, :page_end, true);
SELECT content FROM pgmarket.get_chat_history(:u1, :'s1', 1000, oldest_first => true);
SELECT count(*) FROM pgmarket.get_chat_history(:u1, :'s1', 2, 1);
SELECT count(*) FROM pgmarket.get_chat_history(:u1, :'s2');
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L, 0)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L, 1001)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L, NULL)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L, 10, NULL, NULL)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, NULL)$$, :u1));
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L)$$, :u1, :'s3'));
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L)$$, :u2, :'s1'));

-------------------------------------------------------------------------------
-- context, ending
-------------------------------------------------------------------------------
SELECT pgmarket.update_chat_context(:u1, :'s2', '{"summary": "short answers", "turns": 2}');
-- merged: summary replaced, turns kept
SELECT pgmarket.update_chat_context(:u1, :'s2', '{"summary": "shorter"}');
SELECT model_id, context FROM pgmarket.list_chat_sessions(:u1) WHERE session_id = :'s2';
SELECT pg_temp.err(format($$SELECT pgmarket.update_chat_context(%L, %L, NULL)$$, :u1, :'s2'));
SELECT pg_temp.err(format($$SELECT pgmarket.update_chat_context(%L, %L, '{}')$$, :u2, :'s2'));

SELECT pg_temp.err(format($$SELECT pgmarket.end_chat_session(%L, %L, 'done')$$, :u1, :'s2'));
SELECT pg_temp.err(format($$SELECT pgmarket.end_chat_session(%L, %L, NULL)$$, :u1, :'s2'));
SELECT pg_temp.err(format($$SELECT pgmarket.end_chat_session(%L, %L, 'completed')$$, :u2, :'s2'));
SELECT pgmarket.end_chat_session(:u1, :'s2', 'completed', 'user closed the tab');
SELECT l.model_id, l.status, s.end_reason, s.ended_at IS NOT NULL AS ended
  FROM pgmarket.list_chat_sessions(:u1) l
  JOIN pgmarket.chat_sessions s USING (session_id) WHERE session_id = :'s2';
-- an ended session takes no new messages, and ends once
SELECT * FROM state;
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'more?')$$, :u1, :'s2'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'more', 1, 0.1)$$, :u1, :'s2'));
SELECT pg_temp.err(format($$SELECT pgmarket.end_chat_session(%L, %L, 'failed')$$, :u1, :'s2'));
SELECT * FROM state;
-- its history stays readable
SELECT count(*) FROM pgmarket.get_chat_history(:u1, :'s2');
SELECT pgmarket.end_chat_session(:u2, :'s3', 'failed');
SELECT l.status, s.end_reason FROM pgmarket.list_chat_sessions(:u2) l
  JOIN pgmarket.chat_sessions s USING (session_id);

-------------------------------------------------------------------------------
-- soft deletion: the rows stay, the API no longer finds the session
-------------------------------------------------------------------------------
SELECT pg_temp.err(format($$SELECT pgmarket.delete_chat_session(%L, %L)$$, :u2, :'s1'));
SELECT pgmarket.delete_chat_session(:u1, :'s1');
SELECT deleted_at IS NOT NULL AS deleted, status FROM pgmarket.chat_sessions WHERE session_id = :'s1';
SELECT count(*) AS listed FROM pgmarket.list_chat_sessions(:u1) WHERE session_id = :'s1';
SELECT * FROM state;
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'hello?')$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', 1, 0.1)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L)$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.update_chat_context(%L, %L, '{}')$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.end_chat_session(%L, %L, 'completed')$$, :u1, :'s1'));
SELECT pg_temp.err(format($$SELECT pgmarket.delete_chat_session(%L, %L)$$, :u1, :'s1'));
SELECT * FROM state;
-- a completion already recorded replays after its session is deleted
SELECT amount, replayed
  FROM pgmarket.record_completion(:u1, :'s1', 'the answer is 42', 120, 0.25, 'c-1');

-------------------------------------------------------------------------------
-- ratings: one per user and model, 1 to 5 stars
-------------------------------------------------------------------------------
SELECT pgmarket.rate_model(:u1, 'gpt-4', 4, 'good');
SELECT pgmarket.rate_model(:u1, 'gpt-4', 5);
SELECT pgmarket.rate_model(:u2, 'gpt-4', 2, 'slow');
SELECT pgmarket.rate_model(:u2, 'claude-3', 1);
SELECT user_id = :u1 AS mine, model_id, stars, review FROM pgmarket.ratings
 WHERE user_id::text LIKE '6a000000-%' ORDER BY 1 DESC, 2;
SELECT * FROM pgmarket.model_ratings WHERE model_id IN ('gpt-4', 'claude-3') ORDER BY 1;
SELECT pg_temp.err(format($$SELECT pgmarket.rate_model(%L, 'gpt-4', 0)$$, :u1));
SELECT pg_temp.err(format($$SELECT pgmarket.rate_model(%L, 'gpt-4', 6)$$, :u1));
SELECT pg_temp.err(format($$SELECT pgmarket.rate_model(%L, 'gpt-4', NULL)$$, :u1));
SELECT pg_temp.err(format($$SELECT pgmarket.rate_model(%L, NULL, 3)$$, :u1));
SELECT pg_temp.err(format($$SELECT pgmarket.rate_model(%L, '', 3)$$, :u1));
SELECT pg_temp.err($$SELECT pgmarket.rate_model('6a000000-0000-4000-8000-0000000000ff', 'gpt-4', 3)$$);
SELECT stars FROM pgmarket.ratings WHERE user_id = :u1 AND model_id = 'gpt-4';

-------------------------------------------------------------------------------
-- preferences (audited from install)
-------------------------------------------------------------------------------
SELECT max(id) AS mark FROM pgmarket.audit_log \gset
SELECT pgmarket.set_preference(:u1, 'theme', '"dark"');
SELECT pgmarket.set_preference(:u1, 'temperature', '0.7');
SELECT pgmarket.set_preference(:u1, 'theme', '"light"');
SELECT pgmarket.set_preference(:u1, 'theme', '"light"');   -- no change, no audit row
SELECT pgmarket.set_preference(:u1, 'nothing', 'null');
SELECT pgmarket.set_preference(:u2, 'theme', '"dark"');
SELECT key, value FROM pgmarket.get_preferences(:u1);
SELECT key, value FROM pgmarket.get_preferences(:u2);
SELECT count(*) FROM pgmarket.get_preferences(:u3);
SELECT table_name, operation, row_key,
       pgmarket.audit_open(old_values) - 'updated_at' AS old_values,
       pgmarket.audit_open(new_values) - 'updated_at' AS new_values
  FROM pgmarket.audit_log WHERE id > :mark ORDER BY id;
SELECT pg_temp.err(format($$SELECT pgmarket.set_preference(%L, 'theme', NULL)$$, :u1));
SELECT pg_temp.err(format($$SELECT pgmarket.set_preference(%L, NULL, '1')$$, :u1));
SELECT pg_temp.err(format($$SELECT pgmarket.set_preference(%L, '', '1')$$, :u1));
SELECT pg_temp.err(format($$SELECT pgmarket.set_preference(%L, repeat('k', 101), '1')$$, :u1));
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_preferences(NULL)$$);

-------------------------------------------------------------------------------
-- the actor rule: with pgmarket.actor set, only that user's calls
-------------------------------------------------------------------------------
BEGIN;
SET LOCAL pgmarket.actor = '6A000000-0000-4000-8000-000000000002';
SELECT count(*) FROM pgmarket.get_chat_history(:u2, :'s3');
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L)$$, :u1, :'s2'));
SELECT pg_temp.err(format($$SELECT pgmarket.create_chat_session(%L, 'gpt-4')$$, :u1));
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x')$$, :u1, :'s2'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', 1, 1)$$, :u1, :'s2'));
SELECT pg_temp.err(format($$SELECT pgmarket.set_preference(%L, 'theme', '1')$$, :u1));
SELECT pg_temp.err(format($$SELECT pgmarket.rate_model(%L, 'gpt-4', 1)$$, :u1));
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_preferences(%L)$$, :u1));
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.list_chat_sessions(%L)$$, :u1));
SELECT pg_temp.err(format($$SELECT pgmarket.delete_chat_session(%L, %L)$$, :u1, :'s2'));
SELECT pg_temp.err(format($$SELECT pgmarket.end_chat_session(%L, %L, 'failed')$$, :u1, :'s2'));
SELECT pg_temp.err(format($$SELECT pgmarket.update_chat_context(%L, %L, '{}')$$, :u1, :'s2'));
COMMIT;
BEGIN;
SET LOCAL pgmarket.actor = 'support-7';         -- not a uuid: acts for nobody
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L)$$, :u1, :'s2'));
COMMIT;
BEGIN;
SET LOCAL pgmarket.actor = '';                  -- empty: the trusted back end
SELECT count(*) FROM pgmarket.get_chat_history(:u1, :'s2');
COMMIT;

-- deactivated users: PM002 for every call
SELECT pgmarket.create_chat_session(:u3, 'gpt-4') AS s4 \gset
INSERT INTO named VALUES (:'s4', '<s4>');
SELECT pgmarket.deactivate_user(:u3);
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x')$$, :u3, :'s4'));
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L)$$, :u3, :'s4'));
SELECT pg_temp.err(format($$SELECT pgmarket.create_chat_session(%L, 'gpt-4')$$, :u3));
SELECT pg_temp.err(format($$SELECT pgmarket.rate_model(%L, 'gpt-4', 3)$$, :u3));

-- the ledger still adds up
SELECT * FROM pgmarket.verify_ledger();
