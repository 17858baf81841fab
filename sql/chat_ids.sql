-- Chat keeps the application's own ids: caller-chosen session ids, message
-- uuids that replay, a model per message; context merged key by key;
-- sessions listed by status and paged; preferences deleted; the owner of a
-- session for callers that hold only its id.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT pgmarket.create_user('i1@example.com', 'ids1', id => '6b000000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('i2@example.com', 'ids2', id => '6b000000-0000-4000-8000-000000000002');
\set u1 '''6b000000-0000-4000-8000-000000000001'''
\set u2 '''6b000000-0000-4000-8000-000000000002'''
\set sa '''6b000000-0000-4000-8000-0000000000a1'''
\set sb '''6b000000-0000-4000-8000-0000000000b1'''
SELECT amount FROM pgmarket.add_funds(:u1, 10);

CREATE TEMP VIEW state AS
    SELECT (SELECT count(*) FROM pgmarket.chat_sessions
             WHERE user_id::text LIKE '6b000000-%') AS sessions,
           (SELECT count(*) FROM pgmarket.chat_messages
             WHERE user_id::text LIKE '6b000000-%') AS messages,
           (SELECT count(*) FROM pgmarket.ledger
             WHERE user_id::text LIKE '6b000000-%') AS entries,
           (SELECT available_balance FROM pgmarket.get_balance(:u1)) AS available1;

-------------------------------------------------------------------------------
-- session ids the caller chooses
-------------------------------------------------------------------------------
SELECT pgmarket.create_chat_session(:u1, 'gpt-4', 'kept id', id => :sa) = :sa AS kept;
-- the same id, user and model again: the same session, nothing new
SELECT pgmarket.create_chat_session(:u1, 'gpt-4', 'another title', id => :sa) = :sa AS replayed;
SELECT title FROM pgmarket.chat_sessions WHERE session_id = :sa;
-- the same id with another model or for another user: 23505
SELECT pg_temp.err($$SELECT pgmarket.create_chat_session('6b000000-0000-4000-8000-000000000001', 'claude-3', id => '6b000000-0000-4000-8000-0000000000a1')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_chat_session('6b000000-0000-4000-8000-000000000002', 'gpt-4', id => '6b000000-0000-4000-8000-0000000000a1')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_chat_session('6b000000-0000-4000-8000-000000000001', 'gpt-4', id => NULL)$$);
-- without an id the server makes one (the old call)
SELECT pgmarket.create_chat_session(:u1, 'claude-3') IS NOT NULL AS made;
SELECT * FROM state;

-------------------------------------------------------------------------------
-- message uuids and models
-------------------------------------------------------------------------------
SELECT pgmarket.save_chat_message(:u1, :sa, 'user', 'hello', 3, 0,
       message_uuid => '6b000000-0000-4000-8000-00000000f001') AS m1 \gset
-- a repeat with the same message: the first message's id, nothing stored
SELECT pgmarket.save_chat_message(:u1, :sa, 'user', 'hello', 3, 0,
       message_uuid => '6b000000-0000-4000-8000-00000000f001') = :m1 AS replayed;
SELECT * FROM state;
-- anything else under that uuid: PM003, nothing stored
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'user', 'hello!', 3, 0, message_uuid => '6b000000-0000-4000-8000-00000000f001')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'assistant', 'hello', 3, 0, message_uuid => '6b000000-0000-4000-8000-00000000f001')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'user', 'hello', 4, 0, message_uuid => '6b000000-0000-4000-8000-00000000f001')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'user', 'hello', 3, 0.5, message_uuid => '6b000000-0000-4000-8000-00000000f001')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'user', 'hello', 3, 0, message_uuid => '6b000000-0000-4000-8000-00000000f001', model_id => 'claude-3')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'user', 'hello', 3, 0, '{"x": 1}', message_uuid => '6b000000-0000-4000-8000-00000000f001')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', E'us\ner', 'hello')$$);
SELECT * FROM state;
-- a message with a model of its own; one without takes the session's
SELECT pgmarket.save_chat_message(:u1, :sa, 'assistant', 'hi', 2, 0.25,
       message_uuid => '6b000000-0000-4000-8000-00000000f002',
       model_id => 'gpt-4o-mini') > :m1 AS saved;
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'user', 'x', model_id => '')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'user', 'x', model_id => repeat('m', 201))$$);
SELECT role, content, model_id, message_uuid
  FROM pgmarket.get_chat_history(:u1, :sa, oldest_first => true);

-- record_completion: the uuid replays the completion and its charge
SELECT amount, available_balance, replayed
  FROM pgmarket.record_completion(:u1, :sa, 'answer', 10, 1.5,
       message_uuid => '6b000000-0000-4000-8000-00000000f003', model_id => 'gpt-4o');
SELECT amount, available_balance, replayed
  FROM pgmarket.record_completion(:u1, :sa, 'answer', 10, 1.5,
       message_uuid => '6b000000-0000-4000-8000-00000000f003', model_id => 'gpt-4o');
SELECT pg_temp.err($$SELECT pgmarket.record_completion('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'answer', 10, 2, message_uuid => '6b000000-0000-4000-8000-00000000f003', model_id => 'gpt-4o')$$);
-- a uuid of a message that is not a completion
SELECT pg_temp.err($$SELECT pgmarket.record_completion('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'hello', 3, 1, message_uuid => '6b000000-0000-4000-8000-00000000f001')$$);
SELECT * FROM state;
-- the charge carries the message's model
SELECT kind, amount, model_id, tokens_used FROM pgmarket.ledger_entries(:u1, 1);
-- the same key with another model, or with a uuid it was not recorded
-- under; a uuid with a key the completion did not take: PM003
SELECT amount, replayed FROM pgmarket.record_completion(:u1, :sa, 'keyed', 1, 0.5, 'k-ids');
SELECT pg_temp.err($$SELECT pgmarket.record_completion('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'keyed', 1, 0.5, 'k-ids', model_id => 'other-model')$$);
SELECT pg_temp.err($$SELECT pgmarket.record_completion('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'keyed', 1, 0.5, 'k-ids', '6b000000-0000-4000-8000-00000000f009')$$);
SELECT pg_temp.err($$SELECT pgmarket.record_completion('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', 'answer', 10, 1.5, 'k-other', '6b000000-0000-4000-8000-00000000f003', 'gpt-4o')$$);
SELECT amount, replayed FROM pgmarket.record_completion(:u1, :sa, 'keyed', 1, 0.5, 'k-ids');
-- a uuid is unique across all messages: another user's session cannot take it
SELECT pgmarket.create_chat_session(:u2, 'gpt-4', id => :sb) = :sb AS made;
SELECT pg_temp.err($$SELECT pgmarket.save_chat_message('6b000000-0000-4000-8000-000000000002', '6b000000-0000-4000-8000-0000000000b1', 'user', 'hello', 3, 0, message_uuid => '6b000000-0000-4000-8000-00000000f001')$$);

-------------------------------------------------------------------------------
-- context: merged key by key unless merge => false
-------------------------------------------------------------------------------
SELECT pgmarket.update_chat_context(:u1, :sa, '{"language": "python"}');
SELECT pgmarket.update_chat_context(:u1, :sa, '{"file_path": "a.py", "language": "go"}');
SELECT context FROM pgmarket.chat_sessions WHERE session_id = :sa;
SELECT pgmarket.update_chat_context(:u1, :sa, '{"only": true}', merge => false);
SELECT context FROM pgmarket.chat_sessions WHERE session_id = :sa;
SELECT pg_temp.err($$SELECT pgmarket.update_chat_context('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', '{"a": 1}', merge => NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.update_chat_context('6b000000-0000-4000-8000-000000000001', '6b000000-0000-4000-8000-0000000000a1', '[1]')$$);

-------------------------------------------------------------------------------
-- sessions by status, newest first, in pages
-------------------------------------------------------------------------------
SELECT count(pgmarket.create_chat_session(:u1, 'm' || i,
           id => ('6b000000-0000-4000-8000-0000000001' || lpad(i::text, 2, '0'))::uuid)) AS made
  FROM generate_series(1, 5) i;
-- m1 .. m5 made at 01:00 .. 05:00 UTC
UPDATE pgmarket.chat_sessions SET created_at = '2026-01-01 00:00+00'::timestamptz + (substr(session_id::text, 35)::int) * interval '1 hour'
 WHERE session_id::text LIKE '6b000000-0000-4000-8000-0000000001%';
SELECT pgmarket.end_chat_session(:u1, '6b000000-0000-4000-8000-000000000102', 'completed');
SELECT model_id, status, message_count
  FROM pgmarket.list_chat_sessions(:u1, max_rows => 3, before => '2026-01-02 00:00+00');
SELECT model_id FROM pgmarket.list_chat_sessions(:u1, max_rows => 3, before => '2026-01-01 03:00+00');
SELECT model_id FROM pgmarket.list_chat_sessions(:u1, 'completed');
SELECT model_id, message_count, last_activity_at >= created_at AS ordered
  FROM pgmarket.list_chat_sessions(:u1, 'active') WHERE model_id = 'gpt-4';
SELECT count(*) FROM pgmarket.list_chat_sessions(:u1);
-- sessions made in one statement share created_at: the next page goes on
-- by session_id, so that none falls between two pages
SELECT count(pgmarket.create_chat_session(:u2, 'tie', id => ('6b000000-0000-4000-8000-0000000002' || lpad(i::text, 2, '0'))::uuid)) AS made
  FROM generate_series(1, 3) i;
SELECT session_id, created_at AS tie_at FROM pgmarket.list_chat_sessions(:u2, max_rows => 2)
 WHERE model_id = 'tie' ORDER BY session_id DESC LIMIT 1 \gset
SELECT substr(session_id::text, 33) AS page1 FROM pgmarket.list_chat_sessions(:u2, max_rows => 2);
SELECT substr(session_id::text, 33) AS page2
  FROM pgmarket.list_chat_sessions(:u2, max_rows => 2, before => :'tie_at', before_session_id => :'session_id');
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_chat_sessions('6b000000-0000-4000-8000-000000000001', 'open')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_chat_sessions('6b000000-0000-4000-8000-000000000001', max_rows => 0)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_chat_sessions('6b000000-0000-4000-8000-000000000001', max_rows => 1001)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_chat_sessions('6b000000-0000-4000-8000-000000000001', max_rows => NULL)$$);

-------------------------------------------------------------------------------
-- the calls wrapped: in a CTE, in a function, in COPY; a uuid replays
-- the same way from each
-------------------------------------------------------------------------------
WITH w AS (SELECT pgmarket.save_chat_message(:u1, '6b000000-0000-4000-8000-000000000101', 'user', 'wrapped',
                  message_uuid => '6b000000-0000-4000-8000-00000000f0c1') AS id)
SELECT id > 0 AS in_cte FROM w;
CREATE FUNCTION pg_temp.save_wrapped() RETURNS bigint LANGUAGE sql AS $$
    SELECT pgmarket.save_chat_message('6b000000-0000-4000-8000-000000000001',
           '6b000000-0000-4000-8000-000000000101', 'user', 'wrapped',
           message_uuid => '6b000000-0000-4000-8000-00000000f0c1') $$;
SELECT pg_temp.save_wrapped() = (SELECT message_id FROM pgmarket.chat_messages
                                  WHERE message_uuid = '6b000000-0000-4000-8000-00000000f0c1') AS in_function;
COPY (SELECT replayed FROM pgmarket.record_completion(:u1, '6b000000-0000-4000-8000-000000000101', 'copied', 1, 0.1,
      message_uuid => '6b000000-0000-4000-8000-00000000f0c2')) TO STDOUT;
COPY (SELECT replayed FROM pgmarket.record_completion(:u1, '6b000000-0000-4000-8000-000000000101', 'copied', 1, 0.1,
      message_uuid => '6b000000-0000-4000-8000-00000000f0c2')) TO STDOUT;
SELECT count(*) AS stored FROM pgmarket.chat_messages
 WHERE message_uuid IN ('6b000000-0000-4000-8000-00000000f0c1', '6b000000-0000-4000-8000-00000000f0c2');

-------------------------------------------------------------------------------
-- preferences deleted
-------------------------------------------------------------------------------
SELECT pgmarket.set_preference(:u1, 'theme', '"dark"');
SELECT pgmarket.delete_preference(:u1, 'theme') AS deleted,
       pgmarket.delete_preference(:u1, 'theme') AS again;
SELECT count(*) FROM pgmarket.get_preferences(:u1);
SELECT pg_temp.err($$SELECT pgmarket.delete_preference('6b000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.delete_preference('6b000000-0000-4000-8000-000000000001', '')$$);
SELECT pg_temp.err($$SELECT pgmarket.delete_preference('6b000000-0000-4000-8000-0000000000ff', 'theme')$$);

-------------------------------------------------------------------------------
-- the owner of a session
-------------------------------------------------------------------------------
SELECT pgmarket.chat_session_owner(:sa) = :u1 AS owner,
       pgmarket.chat_session_owner('6b000000-0000-4000-8000-0000000000ff') IS NULL AS unknown;
SELECT pg_temp.err($$SELECT pgmarket.chat_session_owner(NULL)$$);
BEGIN;
SET LOCAL pgmarket.actor = '6b000000-0000-4000-8000-000000000002';
-- another user's session is unknown to a connection acting for user 2
SELECT pgmarket.chat_session_owner(:sa) IS NULL AS hidden,
       pgmarket.chat_session_owner(:sb) = :u2 AS own;
ROLLBACK;
SELECT pgmarket.deactivate_user(:u2);
SELECT pgmarket.chat_session_owner(:sb) IS NULL AS deactivated;
SELECT pgmarket.delete_chat_session(:u1, :sa);
SELECT pgmarket.chat_session_owner(:sa) IS NULL AS deleted;
