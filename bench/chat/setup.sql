-- bench/chat setup: users with funds, one session each, and one session of
-- 10,000 messages for the history runs.  Ids are made from numbers so that
-- the pgbench scripts need no look-up: user n is
-- 00000000-0000-4000-8000-<n, 12 digits>, its session
-- 00000000-0000-4000-9000-<n, 12 digits>.
CREATE EXTENSION pgmarket;
SELECT count(pgmarket.create_user('u' || n || '@bench.io', 'bench_' || n, NULL, '{user}',
              ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid))
  FROM generate_series(1, :users) n;
SELECT count(pgmarket.add_funds(('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 1000000))
  FROM generate_series(1, :users) n;
INSERT INTO pgmarket.chat_sessions (session_id, user_id, model_id, title)
SELECT ('00000000-0000-4000-9000-' || lpad(n::text, 12, '0'))::uuid,
       ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
       'gpt-4', 'bench session ' || n
  FROM generate_series(1, :users) n;
-- the long conversation: session 0 of user 1
INSERT INTO pgmarket.chat_sessions (session_id, user_id, model_id, title)
VALUES ('00000000-0000-4000-9000-000000000000',
        '00000000-0000-4000-8000-000000000001', 'gpt-4', 'long conversation');
INSERT INTO pgmarket.chat_messages (session_id, user_id, role, content, tokens, cost)
SELECT '00000000-0000-4000-9000-000000000000',
       '00000000-0000-4000-8000-000000000001',
       CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,
       'message ' || i || ': ' || repeat('lorem ipsum dolor sit amet ', 8),
       40 + i % 50, 123 * (i % 2)
  FROM generate_series(1, 10000) i;
VACUUM ANALYZE;
