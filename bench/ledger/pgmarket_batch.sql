-- One deduct_batch call with 1,000 charges of random users; returns how many
-- charges did not apply (must be 0; ledger.sh also counts the ledger rows).
SELECT count(*) FILTER (WHERE b.sqlstate <> '00000') AS failed
  FROM pgmarket.deduct_batch(
         (SELECT array_agg(row(bench_tools.uid(1 + (random() * 9999)::int),
                               0.000123, 'model-' || (g % 4), 10, NULL)::pgmarket.charge)
            FROM generate_series(1, 1000) g)) b;
