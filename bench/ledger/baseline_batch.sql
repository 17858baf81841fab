-- The baseline's answer to a batch: its function called 1,000 times in one
-- statement (one transaction: unlike deduct_batch, one failure undoes all).
SELECT count(bench_baseline.baseline_deduct(bench_tools.uid(1 + (random() * 9999)::int),
                                            0.000123, 'model-' || (g % 4), 10))
  FROM generate_series(1, 1000) g;
