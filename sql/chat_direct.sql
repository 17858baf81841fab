-- save_chat_message's and record_completion's two ways of writing a
-- message: directly (chat.c through heapwrite.c's pgm_insert_row: the heap
-- and the indexes, without the executor) and through the INSERT statement
-- (taken for a message with a message_uuid, in REPEATABLE READ, and when
-- the table has a trigger, a column or a default the direct write does
-- not know).  Both must write the same rows and keep every constraint.
\set VERBOSITY terse
SELECT pgmarket.create_user('cd1@example.com', 'chatdirect1',
                            id => '6d000000-0000-4000-8000-000000000001');
SELECT amount FROM pgmarket.add_funds('6d000000-0000-4000-8000-000000000001', 100);
SELECT pgmarket.create_chat_session('6d000000-0000-4000-8000-000000000001', 'gpt-d',
                                    id => '6d000000-0000-4000-9000-000000000001') IS NOT NULL AS s1;
SELECT pgmarket.create_chat_session('6d000000-0000-4000-8000-000000000001', 'gpt-d',
                                    id => '6d000000-0000-4000-9000-000000000002') IS NOT NULL AS s2;
CREATE FUNCTION pg_temp.u() RETURNS uuid LANGUAGE sql IMMUTABLE
    RETURN '6d000000-0000-4000-8000-000000000001'::uuid;
CREATE FUNCTION pg_temp.s(i int) RETURNS uuid LANGUAGE sql IMMUTABLE
    RETURN ('6d000000-0000-4000-9000-00000000000' || i)::uuid;

-- the same twelve messages into each session: into s1 as the table is,
-- into s2 with a statement trigger on the table (the statement writes)
CREATE TABLE pg_temp.msgs (ord int, role text, content text, tokens int,
                           cost numeric, tool_calls jsonb, model text,
                           completion boolean);
INSERT INTO pg_temp.msgs
SELECT g, (ARRAY['system', 'user', 'assistant', 'tool'])[1 + g % 4],
       'message ' || g || repeat(' words', g * g * 40),
       g * 3, round(g * 0.001234, 6),
       CASE WHEN g % 3 = 0 THEN jsonb_build_object('call', g) END,
       CASE WHEN g % 5 = 0 THEN 'model-' || g END,
       g % 2 = 0
  FROM generate_series(1, 12) g;
CREATE TABLE pg_temp.writes (s int, at timestamptz);
CREATE FUNCTION pg_temp.write(s int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    m pg_temp.msgs;
BEGIN
    INSERT INTO pg_temp.writes VALUES (s, now());
    FOR m IN SELECT * FROM pg_temp.msgs ORDER BY ord LOOP
        IF m.completion THEN
            PERFORM pgmarket.record_completion(pg_temp.u(), pg_temp.s(s), m.content,
                                               m.tokens, m.cost, model_id => m.model);
        ELSE
            PERFORM pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(s), m.role,
                                               m.content, m.tokens, m.cost,
                                               m.tool_calls, model_id => m.model);
        END IF;
    END LOOP;
END $$;
SELECT pg_temp.write(1);
CREATE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER chat_direct_noop AFTER INSERT ON pgmarket.chat_messages
    FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.noop();
SELECT pg_temp.write(2);
DROP TRIGGER chat_direct_noop ON pgmarket.chat_messages;

-- the two sessions' messages are the same, column by column (content
-- large enough to be stored out of line included)
CREATE TABLE pg_temp.rows AS
SELECT m.session_id = pg_temp.s(1) AS direct, row_number() OVER w AS n,
       m.user_id, m.role, m.content, m.tokens, m.cost, m.tool_calls,
       m.entry_id IS NOT NULL AS charged,
       m.created_at = (SELECT at FROM pg_temp.writes w
                        WHERE w.s = CASE WHEN m.session_id = pg_temp.s(1) THEN 1 ELSE 2 END) AS now,
       m.message_uuid, m.model_id
  FROM pgmarket.chat_messages m
 WHERE m.session_id IN (pg_temp.s(1), pg_temp.s(2))
WINDOW w AS (PARTITION BY m.session_id ORDER BY m.message_id);
SELECT direct, count(*) AS messages, count(*) FILTER (WHERE charged) AS charged,
       bool_and(now) AS dated, max(length(content)) AS longest
  FROM pg_temp.rows GROUP BY direct ORDER BY direct;
SELECT a.n FROM pg_temp.rows a FULL JOIN pg_temp.rows b ON b.n = a.n AND NOT b.direct
 WHERE a.direct
   AND (a.user_id, a.role, a.content, a.tokens, a.cost, a.tool_calls, a.charged,
        a.now, a.message_uuid, a.model_id)
       IS DISTINCT FROM
       (b.user_id, b.role, b.content, b.tokens, b.cost, b.tool_calls, b.charged,
        b.now, b.message_uuid, b.model_id);
-- the completions' entries are theirs, and the history reads every message
SELECT count(*) AS linked FROM pgmarket.chat_messages m
  JOIN pgmarket.ledger l ON l.entry_id = m.entry_id AND l.user_id = m.user_id
 WHERE m.session_id = pg_temp.s(1) AND l.amount = m.cost;
SELECT count(*) AS history FROM pgmarket.get_chat_history(pg_temp.u(), pg_temp.s(1), 100);

-- an owner's CHECK constraint on the table holds on the direct write
ALTER TABLE pgmarket.chat_messages ADD CONSTRAINT chat_direct_short
    CHECK (length(content) < 1000) NOT VALID;
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', repeat('x', 999)) > 0 AS saved;
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', repeat('x', 1000)) > 0 AS saved;
SELECT entry_id > 0 AS charged FROM pgmarket.record_completion(pg_temp.u(), pg_temp.s(1), repeat('y', 1000), 1, 1);
ALTER TABLE pgmarket.chat_messages DROP CONSTRAINT chat_direct_short;
SELECT available_balance FROM pgmarket.get_balance(pg_temp.u());

-- a column the direct write does not know, with a default: the statement
-- writes it, and the default is there
ALTER TABLE pgmarket.chat_messages ADD COLUMN chat_direct_extra text DEFAULT 'filled';
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', 'with a new column') > 0 AS saved;
SELECT chat_direct_extra FROM pgmarket.chat_messages WHERE content = 'with a new column';
ALTER TABLE pgmarket.chat_messages DROP COLUMN chat_direct_extra;
-- a dropped column does not stand in the way
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', 'after the drop') > 0 AS saved;

-- a column of a domain type with a default (the type's, not the column's):
-- the statement writes it
CREATE DOMAIN public.chat_direct_region AS text DEFAULT 'eu';
ALTER TABLE pgmarket.chat_messages ADD COLUMN chat_direct_region public.chat_direct_region;
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', 'with a domain') > 0 AS saved;
SELECT chat_direct_region FROM pgmarket.chat_messages WHERE content = 'with a domain';
ALTER TABLE pgmarket.chat_messages DROP COLUMN chat_direct_region;
DROP DOMAIN public.chat_direct_region;

-- the table as a partition: the statement checks the partition's bound
-- (here the message ids so far), which the next message is past
SELECT max(message_id) + 1 AS bound FROM pgmarket.chat_messages \gset
CREATE TABLE public.chat_direct_parent (LIKE pgmarket.chat_messages)
    PARTITION BY RANGE (message_id);
ALTER TABLE public.chat_direct_parent ATTACH PARTITION pgmarket.chat_messages
    FOR VALUES FROM (MINVALUE) TO (:bound);
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', 'past the bound') > 0 AS saved;
ALTER TABLE public.chat_direct_parent DETACH PARTITION pgmarket.chat_messages;
DROP TABLE public.chat_direct_parent;
SELECT count(*) AS past_the_bound FROM pgmarket.chat_messages WHERE content = 'past the bound';

-- another default for created_at: the statement computes it
ALTER TABLE pgmarket.chat_messages ALTER COLUMN created_at
    SET DEFAULT '2001-02-03 04:05:06+00';
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', 'an old default') > 0 AS saved;
SELECT created_at = '2001-02-03 04:05:06+00' AS defaulted
  FROM pgmarket.chat_messages WHERE content = 'an old default';
ALTER TABLE pgmarket.chat_messages ALTER COLUMN created_at SET DEFAULT pg_catalog.now();
BEGIN;
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', 'now again') > 0 AS saved;
SELECT created_at = now() AS now FROM pgmarket.chat_messages WHERE content = 'now again';
COMMIT;

-- a row trigger of the owner fires: the statement writes
CREATE TABLE pg_temp.seen (content text);
CREATE FUNCTION pg_temp.seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pg_temp.seen VALUES (NEW.content);
    RETURN NEW;
END $$;
CREATE TRIGGER chat_direct_seen AFTER INSERT ON pgmarket.chat_messages
    FOR EACH ROW EXECUTE FUNCTION pg_temp.seen();
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', 'seen by a trigger') > 0 AS saved;
DROP TRIGGER chat_direct_seen ON pgmarket.chat_messages;
SELECT * FROM pg_temp.seen;

-- the calls wrapped: three completions in one statement (each a step of
-- the command counter: each finds the others' rows), one in a CTE, a
-- message under COPY; every completion keeps its entry
SELECT count(pgmarket.record_completion(pg_temp.u(), pg_temp.s(1),
                                        'one statement ' || g, 1, 0.000001))
  FROM generate_series(1, 3) g;
WITH r AS (SELECT * FROM pgmarket.record_completion(pg_temp.u(), pg_temp.s(1),
                                                    'in a CTE', 1, 0.000002))
SELECT kind, amount, replayed FROM r;
COPY (SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user',
                                        'under COPY') > 0) TO STDOUT;
SELECT m.content, l.amount FROM pgmarket.chat_messages m
  JOIN pgmarket.ledger l ON l.entry_id = m.entry_id AND l.user_id = m.user_id
 WHERE m.content LIKE 'one statement %' OR m.content = 'in a CTE'
 ORDER BY m.message_id;
SELECT count(*) AS under_copy FROM pgmarket.chat_messages WHERE content = 'under COPY';

-- a read-only transaction gets the statement's error, and writes nothing
BEGIN READ ONLY;
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', 'read only') > 0 AS saved;
ROLLBACK;

-- a table of the extension that an owner altered under a direct read: a
-- clear 55000, not an internal error; as made again, it reads again
BEGIN;
ALTER TABLE pgmarket.chat_sessions ALTER COLUMN model_id TYPE varchar(200);
\set VERBOSITY default
SELECT count(*) FROM pgmarket.get_chat_history(pg_temp.u(), pg_temp.s(1), 5);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
ROLLBACK;
SELECT count(*) AS history FROM pgmarket.get_chat_history(pg_temp.u(), pg_temp.s(1), 5);

-- the message table renamed in the transaction after a direct write: the
-- next message is not written into it under its old identity, it takes
-- the statement, which finds no chat_messages (42P01)
BEGIN;
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', 'before the rename') > 0 AS saved;
ALTER TABLE pgmarket.chat_messages RENAME TO chat_messages_renamed;
SELECT pgmarket.save_chat_message(pg_temp.u(), pg_temp.s(1), 'user', 'after the rename') > 0 AS saved;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT count(*) AS after_rename FROM pgmarket.chat_messages WHERE content = 'after the rename';

-- every index of the table holds exactly its rows
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS amcheck;
RESET client_min_messages;
SELECT c.relname, bt_index_check(c.oid, true) IS NOT NULL AS checked
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'pgmarket.chat_messages'::regclass
 ORDER BY c.relname;
DROP EXTENSION amcheck;
SELECT * FROM pgmarket.verify_ledger();
