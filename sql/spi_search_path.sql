-- The search path of pgmarket's own SQL (extension/spi.c).  verify_api_key
-- and get_chat_history have no SET search_path clause: they run with the
-- caller's search path, and every statement they run through SPI must
-- still resolve its operators, functions and aggregates in pg_catalog.
-- Here the caller puts a schema first that shadows, generated from the
-- catalog, every pg_catalog operator, every plain function and every
-- aggregate of ordinary argument types with one that raises; then it calls
-- them (and charge_api_key, which keeps its SET clause) on each of their
-- paths (a first call that prepares the plans, the stamp of a key's last
-- use, the ledger's SQL path, a charge's spend row through SQL, errors, a
-- savepoint rolled back).  A shadow reached is an error "trap: ... reached"
-- in the output.  After every call the caller's search path is what it
-- set.  Last, an owner's trigger that relies on its own SET clause, fired
-- by verify_api_key's stamp while the caller has a temporary table of the
-- name it uses, writes the owner's table, and a trigger that sets
-- search_path locally does not change the caller's.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.write_key_file(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (%s) TO PROGRAM %L', q,
                   'umask 077 && cat > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key');
END $$;
SELECT pg_temp.write_key_file($$SELECT '1:' || md5(random()::text) || md5(random()::text)$$);

-- the API functions without a SET clause: these two and no other
SELECT p.oid::regprocedure AS without_set_clause
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'pgmarket' AND p.prosecdef AND p.proconfig IS NULL
 ORDER BY 1;

-- the data: a user with funds, two keys (one with a spend limit), a chat
-- session of another user's and one of this user's with 30 messages
SELECT pgmarket.create_user('sp1@example.com', 'searchpath1', id => '5f000000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('sp2@example.com', 'searchpath2', id => '5f000000-0000-4000-8000-000000000002');
SELECT amount FROM pgmarket.add_funds('5f000000-0000-4000-8000-000000000001', 100);
SELECT api_key AS key_open FROM pgmarket.create_api_key('5f000000-0000-4000-8000-000000000001', 'open') \gset
SELECT api_key AS key_limited FROM pgmarket.create_api_key('5f000000-0000-4000-8000-000000000001', 'limited', spend_limit => 2) \gset
SELECT api_key AS key_watched FROM pgmarket.create_api_key('5f000000-0000-4000-8000-000000000001', 'watched') \gset
SELECT api_key AS key_watched2 FROM pgmarket.create_api_key('5f000000-0000-4000-8000-000000000001', 'watched2') \gset
SELECT pgmarket.create_chat_session('5f000000-0000-4000-8000-000000000001', 'gpt-4') AS s_mine \gset
SELECT pgmarket.create_chat_session('5f000000-0000-4000-8000-000000000002', 'gpt-4') AS s_other \gset
SELECT count(pgmarket.save_chat_message('5f000000-0000-4000-8000-000000000001', :'s_mine',
                                        CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END,
                                        'message ' || g, g, g * 0.001))
  FROM generate_series(1, 30) g;

-- the shadows, from the catalog: a function of the same signature that
-- raises, for every operator, every plain function and every aggregate of
-- pg_catalog whose argument and result types are ordinary (no pseudo-type)
CREATE SCHEMA trap;
DO $$
DECLARE
    o record;
    f record;
    a record;
    n int := 0;
BEGIN
    FOR o IN
        SELECT op.oid, op.oprname, op.oprleft::regtype AS l,
               op.oprright::regtype AS r, op.oprresult::regtype AS res
          FROM pg_operator op
         WHERE op.oprnamespace = 'pg_catalog'::regnamespace
           AND op.oprcode <> 0
           AND NOT EXISTS (SELECT 1 FROM pg_type t
                            WHERE t.oid IN (op.oprleft, op.oprright, op.oprresult)
                              AND t.typtype = 'p')
    LOOP
        EXECUTE format('CREATE FUNCTION trap.op_%s(%s%s) RETURNS %s LANGUAGE plpgsql AS %L',
                       o.oid,
                       CASE WHEN o.l::oid = 0 THEN '' ELSE o.l::text || ', ' END,
                       o.r, o.res,
                       format('BEGIN RAISE EXCEPTION USING MESSAGE = %L; END', 'trap: operator ' || o.oprname || ' reached'));
        EXECUTE format('CREATE OPERATOR trap.%s (%s RIGHTARG = %s, FUNCTION = trap.op_%s)',
                       o.oprname,
                       CASE WHEN o.l::oid = 0 THEN '' ELSE 'LEFTARG = ' || o.l::text || ',' END,
                       o.r, o.oid);
        n := n + 1;
    END LOOP;
    RAISE NOTICE 'operators shadowed: %', CASE WHEN n > 500 THEN 'over 500' ELSE n::text END;
    n := 0;
    FOR f IN
        SELECT p.oid, p.proname, p.proretset,
               pg_get_function_identity_arguments(p.oid) AS args,
               p.prorettype::regtype AS res
          FROM pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND p.prokind = 'f' AND p.pronargs BETWEEN 0 AND 4
           AND p.proname !~ '^(pg_|_)'
           AND p.provariadic = 0
           AND NOT EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[] || p.prorettype) t(oid)
                             JOIN pg_type ty ON ty.oid = t.oid
                            WHERE ty.typtype = 'p')
           AND NOT EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[]) t(oid)
                             JOIN pg_type ty ON ty.oid = t.oid
                            WHERE ty.typname IN ('cstring', 'internal'))
           AND p.proallargtypes IS NULL
    LOOP
        EXECUTE format('CREATE FUNCTION trap.%I(%s) RETURNS %s%s LANGUAGE plpgsql AS %L',
                       f.proname, f.args,
                       CASE WHEN f.proretset THEN 'SETOF ' ELSE '' END, f.res,
                       format('BEGIN RAISE EXCEPTION USING MESSAGE = %L; END', 'trap: function ' || f.proname || ' reached'));
        n := n + 1;
    END LOOP;
    RAISE NOTICE 'functions shadowed: %', CASE WHEN n > 1000 THEN 'over 1000' ELSE n::text END;
    n := 0;
    FOR a IN
        SELECT p.oid, p.proname, p.proargtypes[0]::regtype AS arg,
               p.prorettype::regtype AS res
          FROM pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND p.prokind = 'a' AND p.pronargs = 1
           AND NOT EXISTS (SELECT 1 FROM pg_type t
                            WHERE t.oid IN (p.proargtypes[0], p.prorettype)
                              AND t.typtype = 'p')
    LOOP
        EXECUTE format('CREATE FUNCTION trap.agg_%s(%s, %s) RETURNS %s LANGUAGE plpgsql AS %L',
                       a.oid, a.res, a.arg, a.res,
                       format('BEGIN RAISE EXCEPTION USING MESSAGE = %L; END', 'trap: aggregate ' || a.proname || ' reached'));
        EXECUTE format('CREATE FUNCTION trap.aggf_%s(%s) RETURNS %s LANGUAGE plpgsql AS %L',
                       a.oid, a.res, a.res,
                       format('BEGIN RAISE EXCEPTION USING MESSAGE = %L; END', 'trap: aggregate ' || a.proname || ' reached'));
        EXECUTE format('CREATE AGGREGATE trap.%I(%s) (SFUNC = trap.agg_%s, STYPE = %s, FINALFUNC = trap.aggf_%s)',
                       a.proname, a.arg, a.oid, a.res, a.oid);
        n := n + 1;
    END LOOP;
    CREATE FUNCTION trap.count_star(bigint) RETURNS bigint LANGUAGE plpgsql
        AS $f$BEGIN RAISE EXCEPTION 'trap: aggregate count reached'; END$f$;
    CREATE AGGREGATE trap.count(*) (SFUNC = trap.count_star, STYPE = bigint,
                                    FINALFUNC = trap.count_star);
    RAISE NOTICE 'aggregates shadowed: %', CASE WHEN n > 50 THEN 'over 50' ELSE n::text END;
END $$;
GRANT USAGE ON SCHEMA trap TO PUBLIC;

-- an owner's triggers on api_keys: one writes a table of the owner's by an
-- unqualified name under its own SET clause, one sets search_path locally
CREATE SCHEMA ops;
CREATE TABLE ops.key_usage (key_id uuid, seen timestamptz);
CREATE FUNCTION ops.note_usage() RETURNS trigger LANGUAGE plpgsql
    SET search_path = ops, pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO key_usage VALUES (NEW.key_id, NEW.last_used_at);
    RETURN NULL;
END $$;
CREATE FUNCTION ops.switch_path() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'ops, pg_catalog, pg_temp', true);
    RETURN NULL;
END $$;

-- a new session, so that the functions prepare their plans under the
-- caller's search path below
\c
\set VERBOSITY terse
-- the outcome of a statement, in words that need no operator of the caller's
-- (a key's random prefix masked)
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE OPERATOR(pg_catalog.||) ': ' OPERATOR(pg_catalog.||)
           pg_catalog.regexp_replace(SQLERRM, 'sk_live_[0-9a-f]{16}', 'sk_live_<prefix>');
END $$;
SET search_path = trap, pg_catalog;

-- the shadows work: the caller's own SQL reaches them
SELECT pg_temp.try($$SELECT 1::bigint = 1::bigint$$);
SELECT pg_temp.try($$SELECT lower('A'::text)$$);
SELECT pg_temp.try($$SELECT sum(g::bigint) FROM (VALUES (1)) v(g)$$);

-- verify_api_key: the first call prepares, stamps last_used_at (SQL)
SELECT user_id, scopes, rate_limit_tier FROM pgmarket.verify_api_key(:'key_open');
-- the second reads only
SELECT user_id, scopes, rate_limit_tier FROM pgmarket.verify_api_key(:'key_open');
SELECT pg_catalog.count(*) FROM pgmarket.verify_api_key('sk_live_0000000000000000_unknown');
SELECT pg_catalog.count(*) FROM pgmarket.verify_api_key('not a key');
SHOW search_path;

-- charge_api_key: the direct path, the ledger's SQL path (an idempotency
-- key), its replay, a charge past the key's limit and past the balance
SELECT amount, available_balance, replayed FROM pgmarket.charge_api_key(:'key_open', 0.5, 'gpt-4', 10);
SELECT amount, available_balance, replayed FROM pgmarket.charge_api_key(:'key_open', 0.25, 'gpt-4', 10, 'sp-1');
SELECT amount, available_balance, replayed FROM pgmarket.charge_api_key(:'key_open', 0.25, 'gpt-4', 10, 'sp-1');
SELECT amount, available_balance, replayed FROM pgmarket.charge_api_key(:'key_limited', 1.5, 'gpt-4');
SELECT pg_temp.try(pg_catalog.format($$SELECT pgmarket.charge_api_key(%L, 1, 'gpt-4')$$, :'key_limited'));
SELECT pg_temp.try(pg_catalog.format($$SELECT pgmarket.charge_api_key(%L, 1000, 'gpt-4')$$, :'key_open'));
SELECT pg_temp.try($$SELECT pgmarket.charge_api_key('sk_live_0000000000000000_unknown', 1, 'gpt-4')$$);
SHOW search_path;

-- get_chat_history: the first call prepares; newest first, oldest first,
-- before an id; another user's session and an unknown one raise
SELECT pg_catalog.count(*) FROM pgmarket.get_chat_history('5f000000-0000-4000-8000-000000000001', :'s_mine', 10);
SELECT content FROM pgmarket.get_chat_history('5f000000-0000-4000-8000-000000000001', :'s_mine', 3);
SELECT content FROM pgmarket.get_chat_history('5f000000-0000-4000-8000-000000000001', :'s_mine', 3, oldest_first => true);
SELECT pg_catalog.min(message_id) AS before_id FROM pgmarket.get_chat_history('5f000000-0000-4000-8000-000000000001', :'s_mine', 28) \gset
SELECT content FROM pgmarket.get_chat_history('5f000000-0000-4000-8000-000000000001', :'s_mine', 5, :before_id);
SELECT pg_catalog.replace(pg_temp.try(pg_catalog.format($$SELECT pgmarket.get_chat_history('5f000000-0000-4000-8000-000000000001', %L, 5)$$, :'s_other')), :'s_other', '<the other user''s session>');
SELECT pg_temp.try($$SELECT pgmarket.get_chat_history('5f000000-0000-4000-8000-000000000001', '5f000000-0000-4000-9000-00000000dead', 5)$$);
SHOW search_path;

-- the calls inside a CTE and a LATERAL join, and an error of the history's
-- SQL caught by a PL/pgSQL block, the path checked inside the block
WITH h AS (SELECT * FROM pgmarket.get_chat_history('5f000000-0000-4000-8000-000000000001', :'s_mine', 4))
SELECT pg_catalog.count(*) FROM h;
SELECT pg_catalog.count(*) FROM (VALUES (:'key_open'), (:'key_limited')) k(api_key),
       LATERAL pgmarket.verify_api_key(k.api_key) v;
DO $$
BEGIN
    BEGIN
        PERFORM pgmarket.get_chat_history('5f000000-0000-4000-8000-000000000001',
                                          '5f000000-0000-4000-9000-00000000dead', 5);
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'caught %, search_path %', SQLSTATE,
            pg_catalog.current_setting('search_path');
    END;
END $$;
SHOW search_path;

-- errors inside savepoints: what the rolled back subtransaction pushed goes
-- with it, the next calls still resolve in pg_catalog, nothing leaks
BEGIN;
SAVEPOINT a;
\set VERBOSITY sqlstate
SELECT amount FROM pgmarket.charge_api_key(:'key_limited', 1, 'gpt-4');
\set VERBOSITY terse
ROLLBACK TO SAVEPOINT a;
SELECT amount, replayed FROM pgmarket.charge_api_key(:'key_open', 0.125, 'gpt-4', 1, 'sp-2');
SELECT pg_catalog.count(*) FROM pgmarket.get_chat_history('5f000000-0000-4000-8000-000000000001', :'s_mine', 50);
SHOW search_path;
COMMIT;

-- a charge whose spend row goes through SQL: a trigger of the owner's on
-- api_key_spend (pgm_index_can_update says no)
RESET search_path;
CREATE FUNCTION pg_temp.spend_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NEW;
END $$;
CREATE TRIGGER spend_seen BEFORE UPDATE ON pgmarket.api_key_spend
    FOR EACH ROW EXECUTE FUNCTION pg_temp.spend_seen();
SET search_path = trap, pg_catalog;
SELECT amount, replayed FROM pgmarket.charge_api_key(:'key_open', 0.0625, 'gpt-4');
RESET search_path;
DROP TRIGGER spend_seen ON pgmarket.api_key_spend;

-- the owner's triggers, fired by the stamp of a key not used yet, while
-- the caller has a temporary table called key_usage whose trigger raises
RESET search_path;
CREATE TRIGGER note_usage AFTER UPDATE OF last_used_at ON pgmarket.api_keys
    FOR EACH ROW EXECUTE FUNCTION ops.note_usage();
CREATE TRIGGER switch_path AFTER UPDATE OF last_used_at ON pgmarket.api_keys
    FOR EACH ROW EXECUTE FUNCTION ops.switch_path();
CREATE TEMP TABLE key_usage (key_id uuid, seen timestamptz);
CREATE FUNCTION pg_temp.hijacked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'trap: the caller''s key_usage reached';
END $$;
CREATE TRIGGER hijacked BEFORE INSERT ON pg_temp.key_usage
    FOR EACH ROW EXECUTE FUNCTION pg_temp.hijacked();
SET search_path = trap, pg_catalog;
SELECT user_id FROM pgmarket.verify_api_key(:'key_watched');
SHOW search_path;
-- and once more with the caller's path exactly pgmarket's own (a second
-- key not used yet): the path the trigger set locally goes with the call
SET search_path = pg_catalog, pg_temp;
SELECT user_id FROM pgmarket.verify_api_key(:'key_watched2');
SHOW search_path;
RESET search_path;
SELECT pg_catalog.count(*) AS owner_rows FROM ops.key_usage;
SELECT pg_catalog.count(*) AS caller_rows FROM pg_temp.key_usage;
DROP TRIGGER note_usage ON pgmarket.api_keys;
DROP TRIGGER switch_path ON pgmarket.api_keys;

-- what all that did, read with the catalog's operators
SELECT k.name, s.total_spent
  FROM pgmarket.api_keys k JOIN pgmarket.api_key_spend s USING (key_id)
 WHERE k.user_id = '5f000000-0000-4000-8000-000000000001' ORDER BY k.name;
SELECT available_balance FROM pgmarket.get_balance('5f000000-0000-4000-8000-000000000001');
SELECT pg_catalog.count(*) AS ledger_problems FROM pgmarket.verify_ledger();
SELECT count(*) AS stamped FROM pgmarket.api_keys
 WHERE user_id = '5f000000-0000-4000-8000-000000000001' AND last_used_at IS NOT NULL;

SET client_min_messages = warning;
DROP SCHEMA trap CASCADE;
DROP SCHEMA ops CASCADE;
RESET client_min_messages;
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
