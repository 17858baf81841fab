-- deduct_balance's two ways of writing a charge without a key: directly
-- (heapwrite.c: the balance row updated and the entry inserted through the
-- table and index access methods) and through its SQL statement (taken
-- when a trigger, REPEATABLE READ or a row this transaction wrote asks for
-- it).  Both must give every charge the same outcome, write the same
-- ledger, and leave indexes that hold exactly the tables' rows.
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS amcheck;
RESET client_min_messages;

-- Four twin sets of 12 users with the same funds: set 1 is charged on the
-- direct path (a transaction per charge), set 2 on the SQL path (a
-- statement trigger on the ledger), set 3 in one transaction (its first
-- charge of a user direct, the next ones through SQL: the row is the
-- transaction's own), set 4 in one REPEATABLE READ transaction (SQL).
-- User 12 of each set is deactivated; users 11 have an expiry hint that
-- has passed (the first charge that meets it sweeps); user 13 does not
-- exist.
CREATE FUNCTION pg_temp.u(s int, i int) RETURNS uuid LANGUAGE sql IMMUTABLE
    RETURN ('f' || s || '000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid;
SELECT count(pgmarket.create_user('direct' || s || '-' || i || '@example.com',
                                  'direct' || s || '-' || i, id => pg_temp.u(s, i)))
  FROM generate_series(1, 4) s, generate_series(1, 12) i;
SELECT count(pgmarket.add_funds(pg_temp.u(s, i), 2 + i % 5))
  FROM generate_series(1, 4) s, generate_series(1, 12) i;
SELECT count(pgmarket.deactivate_user(pg_temp.u(s, 12))) FROM generate_series(1, 4) s;
UPDATE pgmarket.balances SET next_expiry = now() - interval '1 millisecond'
 WHERE user_id IN (SELECT pg_temp.u(s, 11) FROM generate_series(1, 4) s);
-- users 10 have part of their money in escrow slots, as a hot user's
-- refill leaves it (16 slots of 0.05 credits): a charge reports the whole
-- available, slots included, on either path, until one that the row alone
-- cannot cover brings the slots' money back
INSERT INTO pgmarket.balance_slots (user_id, slot, amount)
SELECT pg_temp.u(s, 10), g, 50000 FROM generate_series(1, 4) s, generate_series(0, 15) g;
UPDATE pgmarket.balances SET spent = spent + 800000, escrowed = 800000
 WHERE user_id IN (SELECT pg_temp.u(s, 10) FROM generate_series(1, 4) s);
SELECT * FROM pgmarket.verify_ledger();

-- 300 random charges: amounts mostly small, some too large for what is
-- left, a model id of 200 characters now and then
CREATE TABLE pg_temp.charges (ord int, i int, amount numeric, model text,
                              tokens bigint);
SELECT setseed(0.29);
INSERT INTO pg_temp.charges
SELECT g, 1 + (random() * 12.4)::int,
       CASE WHEN r < 0.08 THEN round((random() * 3)::numeric, 6)
            ELSE round((random() * 0.2)::numeric, 6) + 0.000001 END,
       CASE WHEN random() < 0.05 THEN repeat('m', 200) ELSE 'direct-m' || (g % 3) END,
       (random() * 50)::bigint
  FROM (SELECT g, random() AS r FROM generate_series(1, 300) g) x;
SELECT count(*) AS charges, count(*) FILTER (WHERE i = 13) AS unknown_user
  FROM pg_temp.charges;

CREATE TABLE pg_temp.results (path text, ord int, sqlstate text, available numeric);

-- one charge, its outcome into results
CREATE FUNCTION pg_temp.charge(s int, path text, c pg_temp.charges) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM pgmarket.deduct_balance(pg_temp.u(s, c.i), c.amount,
                                                 c.model, c.tokens);
    INSERT INTO pg_temp.results VALUES (path, c.ord, '00000', r.available_balance);
EXCEPTION WHEN OTHERS THEN
    INSERT INTO pg_temp.results VALUES (path, c.ord, SQLSTATE, NULL);
END
$$;

-- the charges lo..hi of set s, each in a transaction of its own
CREATE PROCEDURE pg_temp.each(s int, path text, lo int, hi int) LANGUAGE plpgsql AS $$
DECLARE
    c pg_temp.charges;
BEGIN
    FOR c IN SELECT * FROM pg_temp.charges WHERE ord BETWEEN lo AND hi ORDER BY ord LOOP
        PERFORM pg_temp.charge(s, path, c);
        COMMIT;
    END LOOP;
END
$$;

-- the charges lo..hi of set s in the caller's transaction
CREATE FUNCTION pg_temp.all_in_one(s int, path text, lo int, hi int) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    c pg_temp.charges;
BEGIN
    FOR c IN SELECT * FROM pg_temp.charges WHERE ord BETWEEN lo AND hi ORDER BY ord LOOP
        PERFORM pg_temp.charge(s, path, c);
    END LOOP;
END
$$;

-- The first 150 charges as the tables are.
CALL pg_temp.each(1, 'direct', 1, 150);
CREATE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER ledger_direct_noop AFTER INSERT ON pgmarket.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.noop();
CALL pg_temp.each(2, 'sql', 1, 150);
DROP TRIGGER ledger_direct_noop ON pgmarket.ledger;
SELECT pg_temp.all_in_one(3, 'one-xact', 1, 150);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.all_in_one(4, 'rr', 1, 150);
COMMIT;

-- The other 150 with an index on balances.updated_at, so that no update of
-- a balance row is HOT and each enters the index (and the primary key)
-- again, and with a CHECK constraint added after the first charges had the
-- table's constraints prepared: spent may not pass 3 credits.
CREATE INDEX ledger_direct_updated ON pgmarket.balances (updated_at);
ALTER TABLE pgmarket.balances ADD CONSTRAINT ledger_direct_cap
    CHECK (spent <= 3000000) NOT VALID;
CALL pg_temp.each(1, 'direct', 151, 300);
CREATE TRIGGER ledger_direct_noop AFTER INSERT ON pgmarket.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.noop();
CALL pg_temp.each(2, 'sql', 151, 300);
DROP TRIGGER ledger_direct_noop ON pgmarket.ledger;
SELECT pg_temp.all_in_one(3, 'one-xact', 151, 300);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.all_in_one(4, 'rr', 151, 300);
COMMIT;

-- the cap is reached (23514) and reported as the statement reports it
SELECT count(pgmarket.add_funds(pg_temp.u(s, 1), 10)) FROM generate_series(1, 4) s;
SELECT available_balance FROM pgmarket.deduct_balance(pg_temp.u(1, 1), 3.5, 'direct-cap');
CREATE TRIGGER ledger_direct_noop AFTER INSERT ON pgmarket.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.noop();
SELECT available_balance FROM pgmarket.deduct_balance(pg_temp.u(2, 1), 3.5, 'direct-cap');
DROP TRIGGER ledger_direct_noop ON pgmarket.ledger;

-- a read-only transaction: the statements' own errors, nothing written
BEGIN READ ONLY;
SELECT available_balance FROM pgmarket.deduct_balance(pg_temp.u(1, 2), 0.1, 'direct-ro');
ROLLBACK;
BEGIN READ ONLY;
SELECT sqlstate FROM pgmarket.deduct_batch(ARRAY[(pg_temp.u(1, 2), 0.1, 'direct-ro', 0, NULL)]::pgmarket.charge[]);
ROLLBACK;

-- every index of the two tables holds exactly their rows, in order
SELECT c.relname, bt_index_check(c.oid, true) IS NOT NULL AS checked
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid IN ('pgmarket.balances'::regclass, 'pgmarket.ledger'::regclass)
 ORDER BY c.relname;
ALTER TABLE pgmarket.balances DROP CONSTRAINT ledger_direct_cap;
DROP INDEX pgmarket.ledger_direct_updated;

-- what became of the charges: every kind of outcome comes up
SELECT sqlstate, count(*) FROM pg_temp.results WHERE path = 'direct'
 GROUP BY sqlstate ORDER BY sqlstate;
-- and each way gives each charge the same outcome and available balance
SELECT d.ord, d.sqlstate, d.available, o.path, o.sqlstate, o.available
  FROM pg_temp.results d JOIN pg_temp.results o ON o.ord = d.ord AND o.path <> 'direct'
 WHERE d.path = 'direct'
   AND (d.sqlstate, d.available) IS DISTINCT FROM (o.sqlstate, o.available);
SELECT path, count(*) FROM pg_temp.results GROUP BY path ORDER BY path;

-- the ledgers of the four sets are the same, entry by entry in id order
CREATE TABLE pg_temp.entries AS
SELECT s, substr(l.user_id::text, 25)::int AS i, l.kind, l.amount, l.available,
       l.model_id, l.tokens_used, l.idempotency_key, l.note, l.refund_of,
       l.reservation_id, l.created_at IS NOT NULL AS dated,
       row_number() OVER (PARTITION BY s ORDER BY l.entry_id) AS n
  FROM generate_series(1, 4) s
  JOIN pgmarket.ledger l
    ON l.user_id IN (SELECT pg_temp.u(s, i) FROM generate_series(1, 13) i);
SELECT s, count(*) AS entries, count(*) FILTER (WHERE kind = 'charge') AS charges
  FROM pg_temp.entries GROUP BY s ORDER BY s;
SELECT a.s, a.n, a.i, a.kind, a.amount, a.available
  FROM pg_temp.entries a
  FULL JOIN pg_temp.entries b ON b.s = 1 AND b.n = a.n
 WHERE a.s IN (2, 3, 4)
   AND (a.i, a.kind, a.amount, a.available, a.model_id, a.tokens_used,
        a.idempotency_key, a.note, a.refund_of, a.reservation_id, a.dated)
       IS DISTINCT FROM
       (b.i, b.kind, b.amount, b.available, b.model_id, b.tokens_used,
        b.idempotency_key, b.note, b.refund_of, b.reservation_id, b.dated);

-- the balances are the same, and the passed hints swept
SELECT i, count(DISTINCT (b.total_balance, b.spent_balance, b.reserved_balance,
                          b.available_balance)) AS distinct_balances,
       min(b.available_balance) AS available, min(b.reserved_balance) AS reserved
  FROM generate_series(1, 4) s, generate_series(1, 11) i,
       LATERAL pgmarket.get_balance(pg_temp.u(s, i)) b
 GROUP BY i ORDER BY i;

-- entry ids are unique and the ledger agrees with the balances
SELECT count(*) = count(DISTINCT entry_id) AS ids_unique FROM pgmarket.ledger;
SELECT * FROM pgmarket.verify_ledger();
DROP EXTENSION amcheck;

-- an owner's CHECK constraint on the ledger that calls an SQL function: the
-- direct write evaluates it, and a new body of the function (CREATE OR
-- REPLACE, which invalidates no table) takes effect at the next charge of
-- the same session, as it does for a statement
SELECT pgmarket.create_user('direct-check@example.com', 'directcheck',
                            id => '5fc00000-0000-4000-8000-000000000001');
SELECT amount FROM pgmarket.add_funds('5fc00000-0000-4000-8000-000000000001', 10);
CREATE SCHEMA ledger_direct_ops;
CREATE FUNCTION ledger_direct_ops.tokens_ok(bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT $1 < 1000';
ALTER TABLE pgmarket.ledger ADD CONSTRAINT ledger_tokens_ok
    CHECK (ledger_direct_ops.tokens_ok(tokens_used)) NOT VALID;
SELECT amount FROM pgmarket.deduct_balance('5fc00000-0000-4000-8000-000000000001', 0.01, 'm', 500);
CREATE OR REPLACE FUNCTION ledger_direct_ops.tokens_ok(bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT $1 < 10';
DO $$
BEGIN
    PERFORM pgmarket.deduct_balance('5fc00000-0000-4000-8000-000000000001', 0.01, 'm', 500);
    RAISE NOTICE 'the charge went through';
EXCEPTION WHEN check_violation THEN
    RAISE NOTICE 'refused: %', SQLERRM;
END $$;
SELECT amount FROM pgmarket.deduct_balance('5fc00000-0000-4000-8000-000000000001', 0.01, 'm', 5);
ALTER TABLE pgmarket.ledger DROP CONSTRAINT ledger_tokens_ok;
DROP SCHEMA ledger_direct_ops CASCADE;
SELECT available_balance FROM pgmarket.get_balance('5fc00000-0000-4000-8000-000000000001');

-- a CHECK constraint that the direct write cannot keep prepared (a CASE),
-- sorted before one it can: the second charge of the session finds the
-- table's constraints as the first left them, and both are checked
ALTER TABLE pgmarket.ledger ADD CONSTRAINT a_ledger_direct_kinds
    CHECK (CASE WHEN kind = 'charge' THEN amount > 0 ELSE true END) NOT VALID;
ALTER TABLE pgmarket.ledger ADD CONSTRAINT b_ledger_direct_tokens
    CHECK (tokens_used < 100000) NOT VALID;
SELECT amount FROM pgmarket.deduct_balance('5fc00000-0000-4000-8000-000000000001', 0.01, 'm', 7);
SELECT amount FROM pgmarket.deduct_balance('5fc00000-0000-4000-8000-000000000001', 0.01, 'm', 8);
SELECT sqlstate FROM pgmarket.deduct_batch(ARRAY[
    ('5fc00000-0000-4000-8000-000000000001', 0.01, 'm', 9, NULL),
    ('5fc00000-0000-4000-8000-000000000001', 0.01, 'm', 100000, NULL)]::pgmarket.charge[]);
DO $$
BEGIN
    PERFORM pgmarket.deduct_balance('5fc00000-0000-4000-8000-000000000001', 0.01, 'm', 100000);
EXCEPTION WHEN check_violation THEN
    RAISE NOTICE 'refused: %', SQLERRM;
END $$;
-- an IN list is kept prepared, and refuses what it refuses, every time
ALTER TABLE pgmarket.ledger ADD CONSTRAINT c_ledger_direct_models
    CHECK (model_id IN ('m', 'n') OR kind <> 'charge') NOT VALID;
SELECT amount FROM pgmarket.deduct_balance('5fc00000-0000-4000-8000-000000000001', 0.01, 'n', 1);
DO $$
BEGIN
    FOR i IN 1..2 LOOP
        BEGIN
            PERFORM pgmarket.deduct_balance('5fc00000-0000-4000-8000-000000000001', 0.01, 'z', 1);
        EXCEPTION WHEN check_violation THEN
            RAISE NOTICE 'refused: %', SQLERRM;
        END;
    END LOOP;
END $$;
SELECT amount FROM pgmarket.deduct_balance('5fc00000-0000-4000-8000-000000000001', 0.01, 'm', 1);
-- three charges in one statement, under COPY: the first direct, the next
-- ones through the statement (the row is this transaction's), one balance
COPY (SELECT c.available_balance
        FROM generate_series(1, 3) g,
             LATERAL pgmarket.deduct_balance('5fc00000-0000-4000-8000-000000000001',
                                             0.01, 'm', g) c
       ORDER BY g) TO STDOUT;
ALTER TABLE pgmarket.ledger DROP CONSTRAINT a_ledger_direct_kinds;
ALTER TABLE pgmarket.ledger DROP CONSTRAINT b_ledger_direct_tokens;
ALTER TABLE pgmarket.ledger DROP CONSTRAINT c_ledger_direct_models;
SELECT available_balance FROM pgmarket.get_balance('5fc00000-0000-4000-8000-000000000001');
