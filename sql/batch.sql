-- deduct_batch: many charges in one call, each on its own terms.
\set VERBOSITY terse
SELECT pgmarket.create_user('d1@example.com', 'batcher1', id => 'd0000000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('d2@example.com', 'batcher2', id => 'd0000000-0000-4000-8000-000000000002');
SELECT pgmarket.create_user('d3@example.com', 'batcher3', id => 'd0000000-0000-4000-8000-000000000003');
SELECT available_balance FROM pgmarket.add_funds('d0000000-0000-4000-8000-000000000001', 10);
SELECT available_balance FROM pgmarket.add_funds('d0000000-0000-4000-8000-000000000002', 1);
SELECT pgmarket.deactivate_user('d0000000-0000-4000-8000-000000000003');

-- a mix of good and bad charges; one failing does not undo the others
SELECT ordinal, sqlstate, entry_id IS NOT NULL AS has_entry, available_balance
  FROM pgmarket.deduct_batch(ARRAY[
    ('d0000000-0000-4000-8000-000000000001', 1, 'gpt-4', 10, NULL),        -- 1 ok
    ('d0000000-0000-4000-8000-000000000002', 2, 'gpt-4', 10, NULL),        -- 2 PM001
    ('d0000000-0000-4000-8000-000000000002', 0.5, 'gpt-4', 10, NULL),      -- 3 ok: it fits
    ('d0000000-0000-4000-8000-000000000001', 2, 'claude', 5, 'k-1'),       -- 4 ok
    ('d0000000-0000-4000-8000-000000000001', 2, 'claude', 5, 'k-1'),       -- 5 replay of 4
    ('d0000000-0000-4000-8000-000000000001', 3, 'claude', 5, 'k-1'),       -- 6 PM003
    ('d0000000-0000-4000-8000-0000000000ff', 1, 'gpt-4', 0, NULL),         -- 7 PM002 unknown
    ('d0000000-0000-4000-8000-000000000003', 1, 'gpt-4', 0, NULL),         -- 8 PM002 deactivated
    NULL,                                                                  -- 9 22004
    ('d0000000-0000-4000-8000-000000000001', NULL, 'gpt-4', 0, NULL),      -- 10 22004
    ('d0000000-0000-4000-8000-000000000001', 1, NULL, 0, NULL),            -- 11 22004
    (NULL, 1, 'gpt-4', 0, NULL),                                           -- 12 22004
    ('d0000000-0000-4000-8000-000000000001', 1.0000001, 'gpt-4', 0, NULL), -- 13 22023
    ('d0000000-0000-4000-8000-000000000001', -1, 'gpt-4', 0, NULL),        -- 14 22023
    ('d0000000-0000-4000-8000-000000000001', 1e13, 'gpt-4', 0, NULL),      -- 15 22003
    ('d0000000-0000-4000-8000-000000000001', 1, '', 0, NULL),              -- 16 22023
    ('d0000000-0000-4000-8000-000000000001', 1, 'gpt-4', -5, NULL),        -- 17 22023
    ('d0000000-0000-4000-8000-000000000001', 7, 'gpt-4', NULL, NULL),      -- 18 ok, tokens 0
    ('d0000000-0000-4000-8000-000000000001', 0.000001, 'gpt-4', 0, NULL)   -- 19 PM001
  ]::pgmarket.charge[]);

-- entries were written in input order, with the running available balance
SELECT kind, amount, available, model_id, tokens_used, idempotency_key
  FROM pgmarket.ledger WHERE user_id IN ('d0000000-0000-4000-8000-000000000001',
                                         'd0000000-0000-4000-8000-000000000002')
   AND kind = 'charge'
 ORDER BY entry_id;
SELECT user_id, total_balance, spent_balance, available_balance
  FROM pgmarket.get_balance('d0000000-0000-4000-8000-000000000001')
UNION ALL
SELECT user_id, total_balance, spent_balance, available_balance
  FROM pgmarket.get_balance('d0000000-0000-4000-8000-000000000002');

-- a key used by a single call earlier replays in a batch, and the other way round
SELECT replayed FROM pgmarket.add_funds('d0000000-0000-4000-8000-000000000001', 5);
SELECT ordinal, sqlstate, available_balance
  FROM pgmarket.deduct_batch(ARRAY[
    ('d0000000-0000-4000-8000-000000000001', 2, 'claude', 5, 'k-1'),
    ('d0000000-0000-4000-8000-000000000001', 1, 'claude', 5, 'k-2')]::pgmarket.charge[]);
SELECT amount, replayed FROM pgmarket.deduct_balance('d0000000-0000-4000-8000-000000000001', 1, 'claude', 5, 'k-2');

-- an empty batch, a NULL batch
SELECT count(*) FROM pgmarket.deduct_batch('{}');
\set VERBOSITY default
SELECT * FROM pgmarket.deduct_batch(NULL);
\set VERBOSITY terse

-- a large batch over many users
SELECT count(*) FROM generate_series(1, 50) i,
       LATERAL pgmarket.create_user('bulk' || i || '@example.com', 'bulk' || i,
           id => ('e0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid);
SELECT count(*) FROM generate_series(1, 50) i,
       LATERAL pgmarket.add_funds(('e0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 1);
SELECT sqlstate, count(*)
  FROM pgmarket.deduct_batch((
        SELECT array_agg(ROW(('e0000000-0000-4000-8000-' || lpad((1 + i % 50)::text, 12, '0'))::uuid,
                             0.003, 'model-' || i % 3, 1, NULL)::pgmarket.charge ORDER BY i)
          FROM generate_series(1, 5000) i))
 GROUP BY sqlstate ORDER BY sqlstate;
-- each user could afford 333 charges of 0.003 out of 1; 100 came for each
SELECT min(available_balance), max(available_balance)
  FROM generate_series(1, 50) i,
       LATERAL pgmarket.get_balance(('e0000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid);
SELECT * FROM pgmarket.verify_ledger();
