-- The ledger: add_funds, deduct_balance, refund, idempotency, get_balance,
-- ledger_entries, verify_ledger, the usage views and the append-only rule.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT pgmarket.create_user('l1@example.com', 'ledger1', id => 'b0000000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('l2@example.com', 'ledger2', id => 'b0000000-0000-4000-8000-000000000002');
\set u1 '''b0000000-0000-4000-8000-000000000001'''
\set u2 '''b0000000-0000-4000-8000-000000000002'''

-- a view of the state that every failed call below must leave unchanged
CREATE TEMP VIEW state AS
    SELECT (SELECT count(*) FROM pgmarket.ledger l WHERE l.user_id = b.user_id) AS entries,
           b.total, b.spent, b.reserved
      FROM pgmarket.balances b
     WHERE b.user_id = 'b0000000-0000-4000-8000-000000000001';

-- deposits; amounts are exact to the micro-credit, shown with 6 digits
SELECT kind, amount, available_balance, replayed FROM pgmarket.add_funds(:u1, 100, note => 'welcome');
SELECT kind, amount, available_balance, replayed FROM pgmarket.add_funds(:u1, 0.000001);
SELECT kind, amount, available_balance, replayed FROM pgmarket.add_funds(:u1, 1.0000000);
SELECT * FROM pgmarket.get_balance(:u1) \gset b_
SELECT :'b_total_balance' AS total, :'b_available_balance' AS available;

-- charges
SELECT kind, amount, available_balance, replayed FROM pgmarket.deduct_balance(:u1, 0.123456, 'gpt-4', 1000);
SELECT kind, amount, available_balance, replayed FROM pgmarket.deduct_balance(:u1, 1, 'claude-3', 20);
-- 10 x 0.1 is exactly 1, with no floating point anywhere
SELECT count(*) FROM generate_series(1, 10) i,
       LATERAL pgmarket.deduct_balance(:u1, 0.1, 'gpt-4', i - i) d;
SELECT total_balance, spent_balance, available_balance FROM pgmarket.get_balance(:u1);

-- bad amounts: 22023 or 22003, never rounded, and nothing changes
SELECT * FROM state;
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', 1.0000001)$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', 0)$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', -5)$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', 'NaN')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', 'Infinity')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', '-Infinity')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', 9000000000000)$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', 8999999999999.999999)$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds(NULL, 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-0000000000ff', 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', 1, '')$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', 0.0000005, 'gpt-4')$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', -1, 'gpt-4')$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', 1, NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', 1, '')$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', 1, 'gpt-4', -1)$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', 1, 'gpt-4', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-0000000000ff', 1, 'gpt-4')$$);
-- insufficient funds: PM001, and the balance is untouched
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', 98.876546, 'gpt-4')$$);
SELECT * FROM state;
-- exactly the available balance is fine
SELECT kind, amount, available_balance FROM pgmarket.deduct_balance(:u1, 98.876545, 'gpt-4');
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', 0.000001, 'gpt-4')$$);

-- the largest balance: just below 9e12 credits; one micro-credit more is 22003
SELECT pgmarket.create_user('l3@example.com', 'ledger3', id => 'b0000000-0000-4000-8000-000000000003');
SELECT available_balance FROM pgmarket.add_funds('b0000000-0000-4000-8000-000000000003', 8999999999999.999999);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000003', 0.000001)$$);
SELECT available_balance FROM pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000003', 8999999999999.999999, 'big');
-- the total stays at the limit after spending: deposits are what count
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000003', 1)$$);

-- idempotency: the same key and arguments replay the first result
SELECT entry_id AS first_deposit, available_balance, replayed
  FROM pgmarket.add_funds(:u1, 50, 'topup-1', 'card 4242') \gset
SELECT kind, amount, available_balance, replayed FROM pgmarket.add_funds(:u1, 50, 'topup-1', 'card 4242');
SELECT entry_id = :first_deposit AS same_entry FROM pgmarket.add_funds(:u1, 50, 'topup-1', 'card 4242');
SELECT kind, amount, available_balance, replayed FROM pgmarket.deduct_balance(:u1, 2, 'gpt-4', 7, 'req-1');
-- a replay reports the available balance recorded with the first call
SELECT available_balance FROM pgmarket.deduct_balance(:u1, 3, 'gpt-4');
SELECT kind, amount, available_balance, replayed FROM pgmarket.deduct_balance(:u1, 2, 'gpt-4', 7, 'req-1');
SELECT count(*) AS entries_for_req_1 FROM pgmarket.ledger WHERE idempotency_key = 'req-1';
-- the same key with other arguments: PM003, nothing changes
SELECT * FROM state;
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', 2.5, 'gpt-4', 7, 'req-1')$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', 2, 'gpt-3', 7, 'req-1')$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', 2, 'gpt-4', 8, 'req-1')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', 2, 'req-1')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', 50, 'topup-1', 'other note')$$);
SELECT * FROM state;
-- keys are per user: another user may use the same key
SELECT kind, amount, replayed FROM pgmarket.add_funds(:u2, 5, 'topup-1');
-- a replay of a charge that would no longer fit still replays
SELECT available_balance AS before FROM pgmarket.get_balance(:u2);
SELECT kind, amount, replayed FROM pgmarket.deduct_balance(:u2, 5, 'gpt-4', 0, 'all-of-it');
SELECT kind, amount, replayed FROM pgmarket.deduct_balance(:u2, 5, 'gpt-4', 0, 'all-of-it');

-- refunds: all or part of a charge, never more than it
SELECT entry_id AS charge_id FROM pgmarket.deduct_balance(:u1, 10, 'gpt-4', 500) \gset
SELECT kind, amount, available_balance, replayed FROM pgmarket.refund(:u1, :charge_id, 4);
SELECT kind, amount, available_balance, replayed FROM pgmarket.refund(:u1, :charge_id, 4, 'refund-a');
SELECT kind, amount, available_balance, replayed FROM pgmarket.refund(:u1, :charge_id, 4, 'refund-a');
SELECT * FROM state;
SELECT pg_temp.err(format($$SELECT pgmarket.refund('b0000000-0000-4000-8000-000000000001', %s, 2.000001)$$, :charge_id));
SELECT pg_temp.err(format($$SELECT pgmarket.refund('b0000000-0000-4000-8000-000000000001', %s, 0)$$, :charge_id));
SELECT pg_temp.err(format($$SELECT pgmarket.refund('b0000000-0000-4000-8000-000000000001', %s)$$, :first_deposit));
SELECT pg_temp.err($$SELECT pgmarket.refund('b0000000-0000-4000-8000-000000000001', 999999)$$);
SELECT pg_temp.err(format($$SELECT pgmarket.refund('b0000000-0000-4000-8000-000000000002', %s)$$, :charge_id));
SELECT pg_temp.err($$SELECT pgmarket.refund('b0000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err(format($$SELECT pgmarket.refund('b0000000-0000-4000-8000-000000000001', %s, 1, 'refund-a')$$, :charge_id));
SELECT * FROM state;
-- the rest of it, with no amount
SELECT kind, amount, replayed FROM pgmarket.refund(:u1, :charge_id);
SELECT pg_temp.err(format($$SELECT pgmarket.refund('b0000000-0000-4000-8000-000000000001', %s)$$, :charge_id));
-- a refund cannot be refunded
SELECT pg_temp.err(format($$SELECT pgmarket.refund('b0000000-0000-4000-8000-000000000001', %s)$$,
       (SELECT max(entry_id) FROM pgmarket.ledger WHERE kind = 'refund')));

-- get_balance and its errors
SELECT total_balance, spent_balance, reserved_balance, available_balance FROM pgmarket.get_balance(:u1);
SELECT pg_temp.err($$SELECT pgmarket.get_balance(NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.get_balance('b0000000-0000-4000-8000-0000000000ff')$$);

-- ledger_entries: newest first, keyset pages
SELECT entry_id AS newest FROM pgmarket.ledger_entries(:u1, 1) \gset
SELECT kind, amount, available_balance, model_id, tokens_used, idempotency_key, note,
       refund_of IS NOT NULL AS is_refund
  FROM pgmarket.ledger_entries(:u1, 5);
SELECT count(*) AS second_page, max(entry_id) < :newest AS older
  FROM pgmarket.ledger_entries(:u1, 5, :newest);
SELECT count(*) AS all_entries FROM pgmarket.ledger_entries(:u1, 1000);
SELECT count(*) FROM pgmarket.ledger WHERE user_id = :u1;
-- pages cover every entry exactly once
WITH RECURSIVE pages(n, last_id, seen) AS (
    SELECT 1, min(entry_id), count(*) FROM pgmarket.ledger_entries('b0000000-0000-4000-8000-000000000001', 4)
  UNION ALL
    SELECT p.n + 1, x.last_id, x.cnt
      FROM pages p,
           LATERAL (SELECT min(entry_id) AS last_id, count(*) AS cnt
                      FROM pgmarket.ledger_entries('b0000000-0000-4000-8000-000000000001', 4, p.last_id)) x
     WHERE x.cnt > 0
)
SELECT sum(seen) AS paged FROM pages;
SELECT pg_temp.err($$SELECT * FROM pgmarket.ledger_entries('b0000000-0000-4000-8000-000000000001', 0)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.ledger_entries('b0000000-0000-4000-8000-000000000001', 1001)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.ledger_entries('b0000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.ledger_entries('b0000000-0000-4000-8000-0000000000ff')$$);

-- usage views: charges net of refunds, per model and per user and day
SELECT model_id, requests, tokens, cost FROM pgmarket.model_usage ORDER BY model_id;
SELECT user_id = :u1 AS is_u1, day = (now() AT TIME ZONE 'UTC')::date AS today,
       model_id, requests, tokens, cost
  FROM pgmarket.usage_daily ORDER BY user_id, model_id;

-- a transaction that acts for a user (pgmarket.actor) may touch only that user
BEGIN;
SET LOCAL pgmarket.actor = 'b0000000-0000-4000-8000-000000000002';
SELECT available_balance FROM pgmarket.get_balance(:u2);
SELECT pg_temp.err($$SELECT pgmarket.get_balance('b0000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('b0000000-0000-4000-8000-000000000001', 1, 'gpt-4')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_funds('b0000000-0000-4000-8000-000000000001', 1)$$);
SELECT ordinal, sqlstate FROM pgmarket.deduct_batch(ARRAY[
    ('b0000000-0000-4000-8000-000000000001', 1, 'gpt-4', 0, NULL),
    ('b0000000-0000-4000-8000-000000000002', 100, 'gpt-4', 0, NULL)]::pgmarket.charge[]);
-- an actor that is not a user id acts for nobody
SET LOCAL pgmarket.actor = 'support-7';
SELECT pg_temp.err($$SELECT pgmarket.get_balance('b0000000-0000-4000-8000-000000000002')$$);
ROLLBACK;

-- the invariants hold
SELECT * FROM pgmarket.verify_ledger();

-- the ledger is append-only, for its owner too
SELECT pg_temp.err($$UPDATE pgmarket.ledger SET amount = 1$$);
SELECT pg_temp.err($$DELETE FROM pgmarket.ledger$$);
SELECT pg_temp.err($$TRUNCATE pgmarket.ledger$$);
SELECT count(*) > 0 AS entries_kept FROM pgmarket.ledger;

-- verify_ledger finds a balance changed behind the ledger's back
BEGIN;
UPDATE pgmarket.balances SET total = total + 1 WHERE user_id = :u1;
SELECT user_id = :u1 AS is_u1, problem FROM pgmarket.verify_ledger();
ROLLBACK;
-- and an entry written behind the C functions' back
BEGIN;
INSERT INTO pgmarket.ledger (entry_id, user_id, kind, amount, available)
VALUES (-1, :u2, 'gift', 0, -5);
SELECT user_id = :u2 AS is_u2, problem FROM pgmarket.verify_ledger() WHERE problem LIKE 'entry -1 %';
ROLLBACK;
-- and a balance row that went missing
BEGIN;
DELETE FROM pgmarket.balances WHERE user_id = :u2;
SELECT user_id = :u2 AS is_u2, problem FROM pgmarket.verify_ledger();
ROLLBACK;

-- escrow slots, the hot account's path (extension/escrow.c): money moved
-- into 16 slots of 0.5 credits, as the refill moves it, keeps every figure
SELECT amount FROM pgmarket.add_funds(:u1, 100, 'slots-test');
BEGIN;
SELECT available_balance AS avail0, spent_balance AS spent0
  FROM pgmarket.get_balance(:u1) \gset
INSERT INTO pgmarket.balance_slots (user_id, slot, amount)
SELECT :u1, g, 500000 FROM generate_series(0, 15) g;
UPDATE pgmarket.balances SET spent = spent + 8000000, escrowed = 8000000
 WHERE user_id = :u1;
SELECT * FROM pgmarket.verify_ledger();
SELECT available_balance = :avail0 AS same_available,
       spent_balance = :spent0 AS same_spent
  FROM pgmarket.get_balance(:u1);
-- a charge that the row's part (avail0 - 8) cannot cover, the whole can:
-- the slots' money comes back first
SELECT kind, amount = :avail0 - 4 AS amount_ok, available_balance
  FROM pgmarket.deduct_balance(:u1, :avail0 - 4, 'model-slots', 1);
SELECT count(*) AS slots, sum(amount) AS in_slots FROM pgmarket.balance_slots
 WHERE user_id = :u1;
SELECT escrowed FROM pgmarket.balances WHERE user_id = :u1;
SELECT * FROM pgmarket.verify_ledger();
-- and PM001 names the whole available
SELECT pg_temp.err($$SELECT amount FROM pgmarket.deduct_balance(
    'b0000000-0000-4000-8000-000000000001', 5, 'model-slots', 1)$$);
-- verify_ledger finds slots that hold more than escrowed, or a spent that
-- the slots no longer explain
UPDATE pgmarket.balance_slots SET amount = 1000000 WHERE user_id = :u1 AND slot = 3;
SELECT user_id = :u1 AS is_u1, problem FROM pgmarket.verify_ledger();
ROLLBACK;
