-- The array of pgmarket_batch.sql alone, without the call: its rate tells
-- how much of a deduct_batch transaction is spent building the input.
SELECT cardinality(
         (SELECT array_agg(row(bench_tools.uid(1 + (random() * 9999)::int),
                               0.000123, 'model-' || (g % 4), 10, NULL)::pgmarket.charge)
            FROM generate_series(1, 1000) g));
