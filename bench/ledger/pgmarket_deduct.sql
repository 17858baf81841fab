-- One charge through pgmarket, in its own transaction.
-- -D lo=1 -D hi=10000: a random user; -D lo=1 -D hi=1: the hot user.
\set n random(:lo, :hi)
\set m random(0, 3)
SELECT entry_id FROM pgmarket.deduct_balance(bench_tools.uid(:n), 0.000123, 'model-' || :m, 10);
