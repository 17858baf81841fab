-- Between installing this library and ALTER EXTENSION UPDATE, the chat
-- functions of 0.5.0 call the new C with fewer arguments, over tables
-- without the new columns: each call refuses with 55000 and a hint, never
-- crashes and changes nothing; after the update, the rows 0.5.0 made are
-- read and extended by the new functions.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
DROP EXTENSION pgmarket;
CREATE EXTENSION pgmarket VERSION '0.5.0';
SELECT pgmarket.create_user('old@example.com', 'old_calls', id => '6c000000-0000-4000-8000-000000000001');
\set u '''6c000000-0000-4000-8000-000000000001'''
\set s '''6c000000-0000-4000-8000-0000000000a1'''
SELECT amount FROM pgmarket.add_funds(:u, 10);
-- a session and two messages as 0.5.0 stored them
INSERT INTO pgmarket.chat_sessions (session_id, user_id, model_id, title, agent_id)
VALUES (:s, :u, 'gpt-4', 'old', 'agent-1');
INSERT INTO pgmarket.chat_messages (session_id, user_id, role, content, tokens, cost)
VALUES (:s, :u, 'user', 'hi', 2, 0), (:s, :u, 'assistant', 'hello', 3, 500000);
CREATE TEMP VIEW state AS
    SELECT (SELECT count(*) FROM pgmarket.chat_sessions) AS sessions,
           (SELECT count(*) FROM pgmarket.chat_messages) AS messages,
           (SELECT count(*) FROM pgmarket.ledger) AS entries,
           (SELECT context FROM pgmarket.chat_sessions) AS context;

-- the calls of 0.5.0, before the update
SELECT pg_temp.err($$SELECT pgmarket.create_chat_session('6c000000-0000-4000-8000-000000000001', 'gpt-4')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6c000000-0000-4000-8000-000000000001', '6c000000-0000-4000-8000-0000000000a1', 'user', 'more')$$);
SELECT pg_temp.err($$SELECT pgmarket.record_completion('6c000000-0000-4000-8000-000000000001', '6c000000-0000-4000-8000-0000000000a1', 'answer', 3, 0.5, 'k-old')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.get_chat_history('6c000000-0000-4000-8000-000000000001', '6c000000-0000-4000-8000-0000000000a1')$$);
SELECT pg_temp.err($$SELECT pgmarket.update_chat_context('6c000000-0000-4000-8000-000000000001', '6c000000-0000-4000-8000-0000000000a1', '{"a": 1}')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_chat_sessions('6c000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.err($$SELECT pgmarket.end_chat_session('6c000000-0000-4000-8000-000000000001', '6c000000-0000-4000-8000-0000000000a1', 'completed')$$);
SELECT * FROM state;

ALTER EXTENSION pgmarket UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pgmarket';
-- the rows of 0.5.0: their messages report the session's model, no uuid
SELECT role, content, cost, model_id, message_uuid IS NULL AS no_uuid
  FROM pgmarket.get_chat_history(:u, :s, oldest_first => true);
SELECT model_id, title, agent_id, status, message_count
  FROM pgmarket.list_chat_sessions(:u);
SELECT pgmarket.update_chat_context(:u, :s, '{"a": 1}');
SELECT pgmarket.update_chat_context(:u, :s, '{"b": 2}');
SELECT amount, available_balance, replayed
  FROM pgmarket.record_completion(:u, :s, 'answer', 3, 0.5, 'k-new');
SELECT * FROM state;
