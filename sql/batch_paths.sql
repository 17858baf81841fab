-- deduct_batch's two ways of writing: directly (table_multi_insert, rows
-- locked and updated through the primary key) and through SQL statements
-- (taken when a trigger, REPEATABLE READ or row security asks for it).
-- Both must give the same results as one deduct_balance call per charge.
\set VERBOSITY terse

-- Three twin sets of 12 users with the same funds: set 1 is charged by
-- batches on the direct path, set 2 by batches on the SQL path, set 3 one
-- charge at a time.  User 12 of each set is deactivated; users 11 have a
-- hold that has expired (swept by the first charge that meets it).
CREATE FUNCTION pg_temp.u(s int, i int) RETURNS uuid LANGUAGE sql IMMUTABLE
    RETURN ('b' || s || '000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid;
SELECT count(pgmarket.create_user('paths' || s || '-' || i || '@example.com',
                                  'paths' || s || '-' || i, id => pg_temp.u(s, i)))
  FROM generate_series(1, 3) s, generate_series(1, 12) i;
SELECT count(pgmarket.add_funds(pg_temp.u(s, i), 2 + i % 5))
  FROM generate_series(1, 3) s, generate_series(1, 12) i;
SELECT count(pgmarket.deactivate_user(pg_temp.u(s, 12))) FROM generate_series(1, 3) s;
SELECT count(pgmarket.reserve(pg_temp.u(s, 11), 1.5, '1 microsecond')) FROM generate_series(1, 3) s;

-- A random list of 400 charges of one set: amounts mostly small, some too
-- large for what is left, some malformed (zero, negative, more than six
-- decimals, out of range); keys from a small pool so that replays and
-- conflicts come up, within the batch and across batches; some users
-- unknown (13), deactivated (12) or with the expired hold (11); an empty
-- model id now and then.
CREATE TABLE pg_temp.charges (ord int, i int, amount numeric, model text,
                              tokens bigint, key text);
SELECT setseed(0.17);
INSERT INTO pg_temp.charges
SELECT g, 1 + (random() * 12.4)::int,
       CASE WHEN r < 0.02 THEN 0
            WHEN r < 0.04 THEN -1
            WHEN r < 0.06 THEN 0.0000001
            WHEN r < 0.07 THEN 1e13
            WHEN r < 0.15 THEN round((random() * 3)::numeric, 6)
            ELSE round((random() * 0.2)::numeric, 6) + 0.000001 END,
       CASE WHEN random() < 0.02 THEN '' ELSE 'paths-m' || (g % 3) END,
       (random() * 50)::bigint,
       CASE WHEN random() < 0.4 THEN 'k' || (random() * 30)::int END
  FROM (SELECT g, random() AS r FROM generate_series(1, 400) g) x;
SELECT count(*) AS charges, count(DISTINCT key) AS keys,
       count(*) FILTER (WHERE i = 13) AS unknown_user FROM pg_temp.charges;

CREATE FUNCTION pg_temp.batch(s int, lo int, hi int)
    RETURNS TABLE (ord int, sqlstate text, available numeric)
    LANGUAGE sql AS $$
    SELECT lo - 1 + b.ordinal, b.sqlstate, b.available_balance
      FROM pgmarket.deduct_batch((
             SELECT array_agg(ROW(pg_temp.u(s, c.i), c.amount, c.model, c.tokens,
                                  c.key)::pgmarket.charge ORDER BY c.ord)
               FROM pg_temp.charges c WHERE c.ord BETWEEN lo AND hi)) b
$$;
CREATE TABLE pg_temp.results (path text, ord int, sqlstate text, available numeric);

-- set 1, direct path: three batches (keys replay across them too)
INSERT INTO pg_temp.results SELECT 'direct', * FROM pg_temp.batch(1, 1, 150);
INSERT INTO pg_temp.results SELECT 'direct', * FROM pg_temp.batch(1, 151, 151);
INSERT INTO pg_temp.results SELECT 'direct', * FROM pg_temp.batch(1, 152, 400);

-- set 2, SQL path: a statement trigger on the ledger for the first batch,
-- REPEATABLE READ for the second, a row trigger on balances for the third
CREATE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
BEGIN;
CREATE TRIGGER batch_paths_noop AFTER INSERT ON pgmarket.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.noop();
INSERT INTO pg_temp.results SELECT 'sql', * FROM pg_temp.batch(2, 1, 150);
DROP TRIGGER batch_paths_noop ON pgmarket.ledger;
COMMIT;
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO pg_temp.results SELECT 'sql', * FROM pg_temp.batch(2, 151, 151);
COMMIT;
BEGIN;
CREATE TRIGGER batch_paths_noop AFTER UPDATE ON pgmarket.balances
    FOR EACH ROW EXECUTE FUNCTION pg_temp.noop();
INSERT INTO pg_temp.results SELECT 'sql', * FROM pg_temp.batch(2, 152, 400);
DROP TRIGGER batch_paths_noop ON pgmarket.balances;
COMMIT;

-- set 3: the same charges one deduct_balance call at a time, in input order
DO $$
DECLARE
    c record;
    r record;
BEGIN
    FOR c IN SELECT * FROM pg_temp.charges ORDER BY ord LOOP
        BEGIN
            SELECT * INTO r FROM pgmarket.deduct_balance(pg_temp.u(3, c.i), c.amount,
                                                         c.model, c.tokens, c.key);
            INSERT INTO pg_temp.results VALUES ('single', c.ord, '00000', r.available_balance);
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO pg_temp.results VALUES ('single', c.ord, SQLSTATE, NULL);
        END;
    END LOOP;
END
$$;

-- what became of the charges: every kind of outcome comes up
SELECT sqlstate, count(*) FROM pg_temp.results WHERE path = 'single'
 GROUP BY sqlstate ORDER BY sqlstate;
-- and each path gives each charge the same outcome and available balance
SELECT s.ord, s.sqlstate AS single, d.sqlstate AS direct, q.sqlstate AS sql,
       s.available AS single_available, d.available AS direct_available,
       q.available AS sql_available
  FROM pg_temp.results s
  JOIN pg_temp.results d ON d.path = 'direct' AND d.ord = s.ord
  JOIN pg_temp.results q ON q.path = 'sql' AND q.ord = s.ord
 WHERE s.path = 'single'
   AND (s.sqlstate, s.available) IS DISTINCT FROM (d.sqlstate, d.available)
    OR (s.path = 'single' AND (s.sqlstate, s.available) IS DISTINCT FROM (q.sqlstate, q.available));
SELECT path, count(*) FROM pg_temp.results GROUP BY path ORDER BY path;

-- the ledgers of the three sets are the same, entry by entry in input order
-- (the batches' entries come in input order, as one call at a time would)
CREATE TABLE pg_temp.entries AS
SELECT s, substr(l.user_id::text, 25)::int AS i, l.kind, l.amount, l.available,
       l.model_id, l.tokens_used, l.idempotency_key,
       row_number() OVER (PARTITION BY s ORDER BY l.entry_id) AS n
  FROM generate_series(1, 3) s
  JOIN pgmarket.ledger l
    ON l.user_id IN (SELECT pg_temp.u(s, i) FROM generate_series(1, 13) i);
SELECT s, count(*) AS entries, count(DISTINCT kind) AS kinds FROM pg_temp.entries
 GROUP BY s ORDER BY s;
SELECT a.s, a.n, a.i, a.kind, a.amount, a.available
  FROM pg_temp.entries a
  FULL JOIN pg_temp.entries b ON b.s = 3 AND b.n = a.n
 WHERE a.s IN (1, 2)
   AND (a.i, a.kind, a.amount, a.available, a.model_id, a.tokens_used, a.idempotency_key)
       IS DISTINCT FROM
       (b.i, b.kind, b.amount, b.available, b.model_id, b.tokens_used, b.idempotency_key);

-- the balances and the holds: the same, and the expired holds swept
SELECT i, count(DISTINCT (b.total_balance, b.spent_balance, b.reserved_balance,
                          b.available_balance)) AS distinct_balances,
       min(b.available_balance) AS available, min(b.reserved_balance) AS reserved
  FROM generate_series(1, 3) s, generate_series(1, 11) i,
       LATERAL pgmarket.get_balance(pg_temp.u(s, i)) b
 GROUP BY i ORDER BY i;
SELECT substr(user_id::text, 1, 2) AS set, state, count(*)
  FROM pgmarket.reservations
 WHERE user_id IN (SELECT pg_temp.u(s, 11) FROM generate_series(1, 3) s)
 GROUP BY 1, 2 ORDER BY 1, 2;

-- metering sees the same usage on each set
SELECT substr(user_id::text, 1, 2) AS set, model_id, sum(requests) AS requests,
       sum(tokens) AS tokens, sum(cost) AS cost
  FROM pgmarket.usage_daily
 WHERE user_id IN (SELECT pg_temp.u(s, i) FROM generate_series(1, 3) s,
                                              generate_series(1, 12) i)
 GROUP BY 1, 2 ORDER BY 2, 1;

-- a batch on the direct path replays the single calls' keys and the other
-- way round, and a batch of refusals and replays writes nothing
SELECT count(pgmarket.add_funds(pg_temp.u(1, i), 100)) FROM generate_series(1, 10) i;
SELECT ordinal, sqlstate, available_balance
  FROM pgmarket.deduct_batch(ARRAY[
         (pg_temp.u(1, 3), 0.5, 'paths-x', 0, 'cross-1'),
         (pg_temp.u(1, 3), 0.5, 'paths-x', 0, 'cross-1')]::pgmarket.charge[]);
SELECT amount, available_balance, replayed
  FROM pgmarket.deduct_balance(pg_temp.u(1, 3), 0.5, 'paths-x', 0, 'cross-1');
SELECT count(*) AS entries_before FROM pgmarket.ledger \gset
SELECT ordinal, sqlstate FROM pgmarket.deduct_batch(ARRAY[
         (pg_temp.u(1, 3), 1e6, 'paths-x', 0, NULL),
         (pg_temp.u(1, 12), 0.1, 'paths-x', 0, NULL),
         (pg_temp.u(1, 3), 0.5, 'paths-x', 0, 'cross-1'),
         (pg_temp.u(1, 3), 0.5, 'paths-y', 0, 'cross-1')]::pgmarket.charge[]);
SELECT count(*) - :entries_before AS new_entries FROM pgmarket.ledger;

-- every outcome in one batch on the direct path, under an actor (so that
-- another user's charge is 42501): each charge gets its own sqlstate, the
-- others apply, and a user's next charge may still fit after a PM001
SET pgmarket.actor = 'b1000000-0000-4000-8000-000000000004';
SELECT ordinal, sqlstate, available_balance
  FROM pgmarket.deduct_batch(ARRAY[
         (pg_temp.u(1, 4), 0.25, 'paths-e', 1, 'every-1'),   -- applies
         NULL,                                               -- 22004
         (pg_temp.u(1, 4), NULL, 'paths-e', 1, NULL),        -- 22004
         (pg_temp.u(1, 4), 0.0000001, 'paths-e', 1, NULL),   -- 22023
         (pg_temp.u(1, 4), 1e13, 'paths-e', 1, NULL),        -- 22003
         (pg_temp.u(1, 5), 0.25, 'paths-e', 1, NULL),        -- 42501
         (pg_temp.u(1, 4), 1e6, 'paths-e', 1, NULL),         -- PM001
         (pg_temp.u(1, 4), 0.25, 'paths-e', 1, 'every-1'),   -- replay
         (pg_temp.u(1, 4), 0.5, 'paths-e', 1, 'every-1'),    -- PM003
         (pg_temp.u(1, 4), 0.25, 'paths-e', 1, NULL)         -- applies
       ]::pgmarket.charge[]);
RESET pgmarket.actor;

-- a batch larger than one chunk of the direct path's inserts (1,000), with
-- keys, in one call: its entries are in input order with their running
-- balances, and a second call replays every one of them
CREATE TABLE pg_temp.big AS
SELECT g, pg_temp.u(1, 1 + g % 10) AS u, 0.01 * (1 + g % 7) AS amount,
       'big-' || g AS key
  FROM generate_series(1, 2500) g;
CREATE TABLE pg_temp.big_first AS
SELECT * FROM pgmarket.deduct_batch((SELECT array_agg(ROW(u, amount, 'paths-big', 1, key)::pgmarket.charge ORDER BY g)
                                       FROM pg_temp.big));
SELECT sqlstate, count(*) FROM pg_temp.big_first GROUP BY 1;
SELECT count(*) AS out_of_order
  FROM (SELECT entry_id, lag(entry_id) OVER (ORDER BY ordinal) AS prev FROM pg_temp.big_first) x
 WHERE entry_id <= prev;
SELECT count(*) AS mismatches
  FROM pg_temp.big_first f
  JOIN pgmarket.ledger l ON l.entry_id = f.entry_id
  JOIN pg_temp.big b ON b.g = f.ordinal
 WHERE l.user_id <> b.u OR l.idempotency_key <> b.key
    OR l.available::numeric / 1000000 <> f.available_balance;
SELECT count(*) AS differing_replays
  FROM pgmarket.deduct_batch((SELECT array_agg(ROW(u, amount, 'paths-big', 1, key)::pgmarket.charge ORDER BY g)
                                FROM pg_temp.big)) r
  JOIN pg_temp.big_first f USING (ordinal)
 WHERE (r.sqlstate, r.entry_id, r.available_balance) IS DISTINCT FROM
       (f.sqlstate, f.entry_id, f.available_balance);

SELECT * FROM pgmarket.verify_ledger();
