-- The floor of a deduct_batch call: the same input built the same way (1,000
-- charges of random users), then the same writes with no checks at all: one
-- INSERT ... SELECT FROM unnest of the 1,000 ledger entries and one
-- UPDATE ... FROM unnest of the users' balances (a user's charges summed, as
-- deduct_batch writes each balance once).  No lock first, no balance read,
-- no idempotency lookup, no per-charge result.
WITH c AS MATERIALIZED (
       SELECT array_agg(bench_tools.uid(1 + (random() * 9999)::int)) AS us,
              array_agg('model-' || (g % 4)) AS ms
         FROM generate_series(1, 1000) g),
     e AS (
       INSERT INTO bench_floor.ledger (entry_id, user_id, kind, amount, available,
                                       model_id, tokens_used, idempotency_key)
       SELECT nextval('bench_floor.ledger_entry_id_seq'), x.u, 'charge', 123, 0,
              x.m, 10, NULL
         FROM c, unnest(c.us, c.ms) AS x (u, m))
UPDATE bench_floor.balances b
   SET spent = b.spent + x.d, updated_at = now()
  FROM (SELECT y.u, 123 * count(*) AS d
          FROM c, unnest(c.us) AS y (u) GROUP BY y.u) x
 WHERE b.user_id = x.u;
