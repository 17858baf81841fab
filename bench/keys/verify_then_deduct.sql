-- the same as two calls, as a gateway without charge_api_key would make
-- them: verify_api_key, then deduct_balance for the user it returned (two
-- statements, two round trips, each its own transaction; no spend limit)
\set i random(1, :users)
SELECT user_id AS uid FROM pgmarket.verify_api_key((SELECT api_key FROM bench.raw_keys WHERE i = :i)) \gset
SELECT available_balance FROM pgmarket.deduct_balance(:uid, 0.000001, 'bench-model', 10);
