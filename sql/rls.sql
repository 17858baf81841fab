-- Row-level security: a connection with pgmarket.actor set sees only that
-- user's rows through the views and tables granted to it; pgmarket_auditor
-- and pgmarket_admin see every row; pgmarket_app without an actor is the
-- trusted back end and sees every row.  Secret columns stay unreadable.
-- The API functions refuse, with 42501, a user_id other than the actor.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN       -- session ids are random: not shown
    RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM,
        '(?!6a000001)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
        '<session>', 'g');
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.err(text) TO PUBLIC;

SELECT pgmarket.create_user('ra@example.com', 'rls_a', 'pw-a', id => '6a000001-0000-4000-8000-00000000000a');
SELECT pgmarket.create_user('rb@example.com', 'rls_b', 'pw-b', id => '6a000001-0000-4000-8000-00000000000b');
\set ua '''6a000001-0000-4000-8000-00000000000a'''
\set ub '''6a000001-0000-4000-8000-00000000000b'''
SELECT amount FROM pgmarket.add_funds(:ua, 10);
SELECT amount FROM pgmarket.add_funds(:ub, 20);
SELECT amount FROM pgmarket.deduct_balance(:ua, 1, 'rls-model-a', 10);
SELECT amount FROM pgmarket.deduct_balance(:ub, 2, 'rls-model-b', 20);
SELECT pgmarket.reserve(:ua, 1) > 0 AS reserved;
SELECT pgmarket.create_chat_session(:ua, 'rls-model-a', 'a''s chat') AS sa \gset
SELECT pgmarket.create_chat_session(:ub, 'rls-model-b', 'b''s chat') AS sb \gset
SELECT pgmarket.save_chat_message(:ua, :'sa', 'user', 'from a') > 0 AS saved;
SELECT pgmarket.save_chat_message(:ub, :'sb', 'user', 'from b') > 0 AS saved;
SELECT amount FROM pgmarket.record_completion(:ua, :'sa', 'to a', 5, 0.5);
SELECT amount FROM pgmarket.record_completion(:ub, :'sb', 'to b', 6, 0.25);
SELECT pgmarket.rate_model(:ua, 'rls-model-a', 5);
SELECT pgmarket.rate_model(:ub, 'rls-model-a', 3);
SELECT pgmarket.set_preference(:ua, 'lang', '"nb"');
SELECT pgmarket.set_preference(:ub, 'lang', '"en"');

-- every table of per-user rows has row-level security and two policies
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT string_agg(p.polname || ':' || p.polcmd::text, ', ' ORDER BY p.polname)
          FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'pgmarket' AND c.relkind = 'r'
 ORDER BY 1;
-- the views that roles read run with the caller's rights
SELECT c.relname, c.reloptions
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'pgmarket' AND c.relkind = 'v'
 ORDER BY 1;

-- what a role sees of the two users, table by table
CREATE FUNCTION pg_temp.seen() RETURNS TABLE (relation text, rows_a bigint, rows_b bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r text;
    c text;
BEGIN
    FOREACH r IN ARRAY ARRAY['users:id', 'usage_daily:user_id', 'ledger:user_id',
                             'balances:user_id', 'reservations:user_id',
                             'api_keys:user_id', 'chat_sessions:user_id',
                             'chat_messages:user_id', 'ratings:user_id',
                             'preferences:user_id']
    LOOP
        relation := split_part(r, ':', 1);
        c := split_part(r, ':', 2);
        BEGIN
            EXECUTE format('SELECT count(*) FILTER (WHERE %I = %L), count(*) FILTER (WHERE %I = %L) FROM pgmarket.%I',
                           c, '6a000001-0000-4000-8000-00000000000a',
                           c, '6a000001-0000-4000-8000-00000000000b', relation)
               INTO rows_a, rows_b;
        EXCEPTION WHEN insufficient_privilege THEN
            rows_a := NULL;
            rows_b := NULL;
            relation := relation || ' (42501)';
        END;
        RETURN NEXT;
    END LOOP;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.seen() TO PUBLIC;
CREATE FUNCTION pg_temp.models() RETURNS TABLE (view text, model_id text, n bigint)
LANGUAGE sql AS $$
    SELECT 'model_usage', model_id, requests FROM pgmarket.model_usage
     WHERE model_id LIKE 'rls-%'
    UNION ALL
    SELECT 'model_ratings', model_id, ratings FROM pgmarket.model_ratings
     WHERE model_id LIKE 'rls-%'
    ORDER BY 1, 2
$$;
GRANT EXECUTE ON FUNCTION pg_temp.models() TO PUBLIC;

-------------------------------------------------------------------------------
-- pgmarket_app without an actor: the trusted back end sees every row
-------------------------------------------------------------------------------
SET ROLE pgmarket_app;
SELECT * FROM pg_temp.seen();
SELECT * FROM pg_temp.models();
RESET ROLE;

-------------------------------------------------------------------------------
-- pgmarket_app acting for A: A's rows only, through tables and views alike
-------------------------------------------------------------------------------
BEGIN;
SET LOCAL ROLE pgmarket_app;
SET LOCAL pgmarket.actor = '6a000001-0000-4000-8000-00000000000a';
SELECT * FROM pg_temp.seen();
SELECT * FROM pg_temp.models();
SELECT username, is_active FROM pgmarket.users;
SELECT role, content FROM pgmarket.chat_messages ORDER BY message_id;
SELECT key, value FROM pgmarket.preferences;
-- the API: A's calls go through, B's are refused
SELECT count(*) FROM pgmarket.get_chat_history(:ua, :'sa');
SELECT pgmarket.save_chat_message(:ua, :'sa', 'user', 'again') > 0 AS saved;
SELECT amount FROM pgmarket.record_completion(:ua, :'sa', 'again', 1, 0.1);
SELECT key FROM pgmarket.get_preferences(:ua);
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L)$$, :ub, :'sb'));
SELECT pg_temp.err(format($$SELECT pgmarket.record_completion(%L, %L, 'x', 1, 0.1)$$, :ub, :'sb'));
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_preferences(%L)$$, :ub));
-- A's actor with B's session: the session is not A's
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x')$$, :ua, :'sb'));
COMMIT;

-- acting for B: B's rows only
BEGIN;
SET LOCAL ROLE pgmarket_app;
SET LOCAL pgmarket.actor = '6a000001-0000-4000-8000-00000000000b';
SELECT * FROM pg_temp.seen();
SELECT * FROM pg_temp.models();
SELECT role, content FROM pgmarket.chat_messages ORDER BY message_id;
COMMIT;

-- an actor that is not a uuid, or an unknown user, sees nothing
BEGIN;
SET LOCAL ROLE pgmarket_app;
SET LOCAL pgmarket.actor = 'support-7';
SELECT * FROM pg_temp.seen();
SET LOCAL pgmarket.actor = '6a000001-0000-4000-8000-0000000000ff';
SELECT * FROM pg_temp.seen();
COMMIT;

-- secrets and writes stay out of reach, actor or not
SET ROLE pgmarket_app;
SELECT pg_temp.err($$SELECT password_hash FROM pgmarket.accounts$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.accounts$$);
-- the columns that the view users shows are readable, under the policies
SELECT pg_temp.err($$SELECT count(*) FROM pgmarket.accounts$$);
SELECT count(id) > 0 AS app_reads_account_ids FROM pgmarket.accounts;
SELECT pg_temp.err($$SELECT hash FROM pgmarket.api_keys$$);
SELECT pg_temp.err($$SELECT ciphertext FROM pgmarket.provider_keys$$);
SELECT pg_temp.err($$SELECT available FROM pgmarket.ledger$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.balances$$);
SELECT pg_temp.err($$INSERT INTO pgmarket.chat_messages (session_id, user_id, role, content) VALUES ('6a000001-0000-4000-8000-0000000000ee', '6a000001-0000-4000-8000-00000000000a', 'user', 'x')$$);
SELECT pg_temp.err($$UPDATE pgmarket.chat_sessions SET title = 'x'$$);
SELECT pg_temp.err($$DELETE FROM pgmarket.ratings$$);
SELECT pg_temp.err($$UPDATE pgmarket.preferences SET value = '1'$$);
RESET ROLE;

-------------------------------------------------------------------------------
-- auditors and administrators see every row, with an actor set or not
-------------------------------------------------------------------------------
BEGIN;
SET LOCAL ROLE pgmarket_auditor;
SET LOCAL pgmarket.actor = '6a000001-0000-4000-8000-00000000000a';
SELECT * FROM pg_temp.seen();
SELECT * FROM pg_temp.models();
SELECT pg_temp.err($$SELECT password_hash FROM pgmarket.accounts$$);
SELECT pg_temp.err($$UPDATE pgmarket.chat_sessions SET title = 'x'$$);
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x')$$, :ua, :'sa'));
COMMIT;
BEGIN;
SET LOCAL ROLE pgmarket_admin;
SET LOCAL pgmarket.actor = '6a000001-0000-4000-8000-00000000000b';
SELECT * FROM pg_temp.seen();
SELECT pg_temp.err($$SELECT password_hash FROM pgmarket.accounts$$);
-- the actor rule holds for the administrator too
SELECT pg_temp.err(format($$SELECT pgmarket.save_chat_message(%L, %L, 'user', 'x')$$, :ua, :'sa'));
SELECT pgmarket.save_chat_message(:ub, :'sb', 'user', 'by admin for b') > 0 AS saved;
COMMIT;

-------------------------------------------------------------------------------
-- other roles: nothing
-------------------------------------------------------------------------------
SET ROLE pgmarket_keyreader;
SELECT * FROM pg_temp.seen();
SELECT pg_temp.err(format($$SELECT pgmarket.create_chat_session(%L, 'x')$$, :ua));
RESET ROLE;
CREATE ROLE rls_nobody;
SET ROLE rls_nobody;
SELECT * FROM pg_temp.seen();
SELECT pg_temp.err($$SELECT * FROM pgmarket.model_ratings$$);
SELECT pg_temp.err($$SELECT pgmarket.current_actor()$$);
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.get_chat_history(%L, %L)$$, :ua, :'sa'));
SELECT pg_temp.err(format($$SELECT pgmarket.rate_model(%L, 'x', 1)$$, :ua));
RESET ROLE;
DROP ROLE rls_nobody;

-- current_actor(): the uuid, or NULL when unset, empty or not a uuid
SELECT pgmarket.current_actor() IS NULL AS unset;
SET pgmarket.actor = '6A000001-0000-4000-8000-00000000000A';
SELECT pgmarket.current_actor();
SET pgmarket.actor = '{6a000001-0000-4000-8000-00000000000a}';
SELECT pgmarket.current_actor() IS NULL AS not_canonical;
SET pgmarket.actor = '';
SELECT pgmarket.current_actor() IS NULL AS empty;
RESET pgmarket.actor;
SELECT * FROM pgmarket.verify_ledger();
