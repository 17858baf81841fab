-- One charge of a random user of node0, in its own transaction: the same
-- text directly on node0, through the proxy, through pgbouncer + proxy.
\set n random(1, :users)
SELECT entry_id FROM pgmarket.deduct_balance((SELECT id FROM bench_users WHERE i = :n), 0.000123, 'model-bench', 10);
