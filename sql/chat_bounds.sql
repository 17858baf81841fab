-- Chat inputs that are bounded: a session's context is a JSON object, and a
-- message's content has at most 10 MiB; both refused with 22023 and
-- nothing stored.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT pgmarket.create_user('chat-bounds@example.com', 'chat_bounds',
                            id => '6e100000-0000-4000-8000-000000000001') IS NOT NULL AS made;
SELECT pgmarket.create_chat_session('6e100000-0000-4000-8000-000000000001', 'gpt-4o') AS s \gset
SELECT pgmarket.add_funds('6e100000-0000-4000-8000-000000000001', 1) IS NOT NULL AS funded;

SELECT pgmarket.update_chat_context('6e100000-0000-4000-8000-000000000001', :'s', '{"k": 1}');
SELECT pg_temp.err(format($$SELECT pgmarket.update_chat_context('6e100000-0000-4000-8000-000000000001', %L, '[1]')$$, :'s'));
SELECT pg_temp.err(format($$SELECT pgmarket.update_chat_context('6e100000-0000-4000-8000-000000000001', %L, 'null')$$, :'s'));
SELECT pg_temp.err(format($$SELECT pgmarket.update_chat_context('6e100000-0000-4000-8000-000000000001', %L, '"text"')$$, :'s'));
SELECT context FROM pgmarket.chat_sessions WHERE session_id = :'s';

-- 10 MiB is fine, one byte more is not, for a saved message and a completion
SELECT pgmarket.save_chat_message('6e100000-0000-4000-8000-000000000001', :'s', 'user',
                                  repeat('x', 10 * 1024 * 1024)) > 0 AS at_the_bound;
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message('6e100000-0000-4000-8000-000000000001', %L, 'user', repeat('x', 10 * 1024 * 1024 + 1))$$, :'s'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion('6e100000-0000-4000-8000-000000000001', %L, repeat('é', 5 * 1024 * 1024 + 1), 1, 0.5)$$, :'s'));
SELECT count(*) AS messages, max(octet_length(content)) AS longest
  FROM pgmarket.chat_messages WHERE session_id = :'s';
SELECT available_balance FROM pgmarket.get_balance('6e100000-0000-4000-8000-000000000001');
