-- Platform API keys' spend rows (api_key_spend, since 0.9.0): what
-- charge_api_key writes directly, compared with what the SQL path writes
-- and with what the ledger says, over generated charges.
--
-- Three keys of one user (a lifetime limit, a daily limit, no limit) take
-- 400 charges of random amounts (a fixed seed), some past a limit, some
-- past the balance, some repeating an idempotency key.  Each outcome is
-- recorded; then the key's counters must be exactly the sum of the charges
-- that went through it, no limit exceeded, and the ledger's books clean.
-- The same sequence again on a second user with a trigger of the owner's on
-- api_key_spend (which sends the spend through SQL) must give the same
-- outcomes and counters.  amcheck checks the spend table's index after
-- rows that could not stay on their page.
\set VERBOSITY terse
LOAD 'pgmarket';
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS amcheck;
RESET client_min_messages;
CREATE FUNCTION pg_temp.write_key_file(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (%s) TO PROGRAM %L', q,
                   'umask 077 && cat > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key');
END $$;
SELECT pg_temp.write_key_file($$SELECT '1:' || md5(random()::text) || md5(random()::text)$$);

-- one call's outcome: its SQLSTATE and, when it went through, the amount
CREATE FUNCTION pg_temp.charge(k text, amount numeric, idem text,
                               OUT state text, OUT charged numeric,
                               OUT replayed boolean)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT '00000', r.amount, r.replayed INTO state, charged, replayed
      FROM pgmarket.charge_api_key(k, amount, 'spend-model', 1, idem) r;
EXCEPTION WHEN OTHERS THEN
    state := SQLSTATE;
END $$;

CREATE TEMP TABLE spend_keys (run int, name text, key_id uuid, api_key text,
                              spend_limit numeric);
CREATE TEMP TABLE spend_calls (run int, i int, name text, amount numeric,
                               idem text, sqlstate text, charged numeric,
                               replayed boolean);

-- a run: a user with 60 credits and its three keys, 400 calls
CREATE FUNCTION pg_temp.spend_run(run int, uid uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    r record;
BEGIN
    PERFORM pgmarket.create_user('spend' || run || '@example.com',
                                 'spend' || run, id => uid);
    PERFORM pgmarket.add_funds(uid, 60);
    INSERT INTO spend_keys
        SELECT run, 'lifetime', key_id, api_key, 25
          FROM pgmarket.create_api_key(uid, 'lifetime', spend_limit => 25);
    INSERT INTO spend_keys
        SELECT run, 'daily', key_id, api_key, 15
          FROM pgmarket.create_api_key(uid, 'daily', spend_limit => 15,
                                       spend_period => 'day');
    INSERT INTO spend_keys
        SELECT run, 'open', key_id, api_key, NULL
          FROM pgmarket.create_api_key(uid, 'open');
    PERFORM setseed(0.25);
    FOR c IN
        SELECT g AS i,
               (ARRAY['lifetime', 'daily', 'open'])[1 + floor(random() * 3)::int] AS name,
               (ARRAY[0.000001, 0.1, 0.25, 0.5, 1, 1.5, 2.75, 3])[1 + floor(random() * 8)::int] AS amount,
               random() < 0.25 AS keyed
          FROM generate_series(1, 400) g
    LOOP
        -- a keyed call repeats the first one of its key and amount
        SELECT * INTO r FROM pg_temp.charge(
            (SELECT api_key FROM spend_keys k WHERE k.run = spend_run.run AND k.name = c.name),
            c.amount, CASE WHEN c.keyed THEN c.name || '-' || c.amount END);
        INSERT INTO spend_calls VALUES (run, c.i, c.name, c.amount,
                                        CASE WHEN c.keyed THEN c.name || '-' || c.amount END,
                                        r.state, r.charged, r.replayed);
    END LOOP;
END $$;

SELECT pg_temp.spend_run(1, '5d000000-0000-4000-8000-000000000001');

-- the second run through SQL: an owner's trigger on the spend table
CREATE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NEW;
END $$;
CREATE TRIGGER spend_noop BEFORE UPDATE ON pgmarket.api_key_spend
    FOR EACH ROW EXECUTE FUNCTION pg_temp.noop();
SELECT pg_temp.spend_run(2, '5d000000-0000-4000-8000-000000000002');
DROP TRIGGER spend_noop ON pgmarket.api_key_spend;

-- what happened: every outcome is one the contract names
SELECT run, sqlstate, count(*) > 0 AS seen
  FROM spend_calls GROUP BY run, sqlstate ORDER BY run, sqlstate;
-- some of each kind: charged, replayed, refused by a limit or the balance
SELECT run, count(*) FILTER (WHERE sqlstate = '00000' AND NOT replayed) > 50 AS charged,
       count(*) FILTER (WHERE replayed) > 5 AS replays,
       count(*) FILTER (WHERE sqlstate = 'PM001') > 50 AS refused
  FROM spend_calls GROUP BY run ORDER BY run;
-- the two paths decided every call alike
SELECT count(*) AS calls_that_differ
  FROM spend_calls a JOIN spend_calls b ON b.run = 2 AND b.i = a.i
 WHERE a.run = 1
   AND (a.sqlstate, a.charged, a.replayed) IS DISTINCT FROM (b.sqlstate, b.charged, b.replayed);
-- each key's counters are the sum of what went through it, first calls
-- only, and within its limit; the same in both runs
SELECT k.run, k.name, l.total_spent = coalesce(sum(c.charged) FILTER (WHERE NOT c.replayed), 0) AS total_is_sum,
       l.spent = l.total_spent AS period_is_total,
       k.spend_limit IS NULL OR l.total_spent <= k.spend_limit AS within_limit,
       l.total_spent
  FROM spend_keys k
  JOIN LATERAL pgmarket.list_api_keys(
         ('5d000000-0000-4000-8000-00000000000' || k.run)::uuid) l ON l.key_id = k.key_id
  LEFT JOIN spend_calls c ON c.run = k.run AND c.name = k.name AND c.sqlstate = '00000'
 GROUP BY k.run, k.name, k.spend_limit, l.total_spent, l.spent
 ORDER BY k.name, k.run;
-- the ledger agrees: every charge that went through is one entry
SELECT c.run, count(*) FILTER (WHERE NOT c.replayed) =
       (SELECT count(*) FROM pgmarket.ledger e
         WHERE e.user_id = ('5d000000-0000-4000-8000-00000000000' || c.run)::uuid
           AND e.kind = 'charge') AS one_entry_each
  FROM spend_calls c WHERE c.sqlstate = '00000' GROUP BY c.run ORDER BY c.run;
SELECT count(*) AS ledger_problems FROM pgmarket.verify_ledger();

-- the spend table's index holds every row version the charges left
SELECT bt_index_check('pgmarket.api_key_spend_pkey', true);
SELECT n_tup_upd > 0 AS updated FROM pg_stat_user_tables
 WHERE relid = 'pgmarket.api_key_spend'::regclass;

-- a key revoked between two charges: the next one is 28000, nothing written
SELECT pgmarket.revoke_api_key('5d000000-0000-4000-8000-000000000001', key_id)
  FROM spend_keys WHERE run = 1 AND name = 'open';
SELECT (pg_temp.charge(api_key, 1.0, NULL)).state
  FROM spend_keys WHERE run = 1 AND name = 'open';
SELECT l.total_spent = (SELECT sum(charged) FILTER (WHERE NOT replayed) FROM spend_calls
                          WHERE run = 1 AND name = 'open' AND sqlstate = '00000') AS unchanged
  FROM pgmarket.list_api_keys('5d000000-0000-4000-8000-000000000001') l
  JOIN spend_keys k ON k.key_id = l.key_id AND k.run = 1 AND k.name = 'open';

-- what the owner puts on the spend table is honoured as an UPDATE would:
-- a stored generated column and a rule send the spend through SQL
ALTER TABLE pgmarket.api_key_spend
    ADD COLUMN doubled bigint GENERATED ALWAYS AS (total_spent * 2) STORED;
CREATE TABLE spend_log (key_id uuid, total bigint);
CREATE RULE spend_logged AS ON UPDATE TO pgmarket.api_key_spend
    DO ALSO INSERT INTO spend_log VALUES (NEW.key_id, NEW.total_spent);
SELECT (pg_temp.charge(api_key, 0.000001, NULL)).state
  FROM spend_keys WHERE run = 2 AND name = 'open';
SELECT s.doubled = 2 * s.total_spent AS generated_kept,
       (SELECT count(*) FROM spend_log l WHERE l.key_id = s.key_id) AS logged
  FROM pgmarket.api_key_spend s JOIN spend_keys k USING (key_id)
 WHERE k.run = 2 AND k.name = 'open';
DROP RULE spend_logged ON pgmarket.api_key_spend;
DROP TABLE spend_log;
ALTER TABLE pgmarket.api_key_spend DROP COLUMN doubled;

-- an expression index created after this session's charges wrote the row
-- directly (the table's indexes were found plain then): the next charge
-- sees it and goes through SQL, which fills it
SELECT (pg_temp.charge(api_key, 0.000001, NULL)).state
  FROM spend_keys WHERE run = 2 AND name = 'open';
CREATE INDEX spend_total_expr ON pgmarket.api_key_spend ((total_spent + 0));
SELECT (pg_temp.charge(api_key, 0.000001, NULL)).state
  FROM spend_keys WHERE run = 2 AND name = 'open';
SET enable_seqscan = off;
SELECT count(*) AS found_by_expression
  FROM pgmarket.api_key_spend s JOIN spend_keys k USING (key_id)
 WHERE k.run = 2 AND k.name = 'open'
   AND s.total_spent + 0 = (SELECT total_spent FROM pgmarket.api_key_spend
                             WHERE key_id = k.key_id);
RESET enable_seqscan;
SELECT bt_index_check('pgmarket.spend_total_expr', true);
DROP INDEX pgmarket.spend_total_expr;

-- a spend row deleted by hand: the key's charge is 55000 (saying so) and
-- charges nothing
BEGIN;
DELETE FROM pgmarket.api_key_spend
 WHERE key_id = (SELECT key_id FROM spend_keys WHERE run = 2 AND name = 'open');
CREATE TEMP TABLE entries_before AS SELECT count(*) AS n FROM pgmarket.ledger;
SELECT (pg_temp.charge(api_key, 0.000001, NULL)).state
  FROM spend_keys WHERE run = 2 AND name = 'open';
SELECT (SELECT count(*) FROM pgmarket.ledger) = n AS nothing_charged
  FROM entries_before;
ROLLBACK;

COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
