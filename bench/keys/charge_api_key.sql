-- charge_api_key: verify the key, check scope and spend limit, charge its
-- user one micro-credit; one statement, one round trip, one transaction
\set i random(1, :users)
SELECT available_balance FROM pgmarket.charge_api_key((SELECT api_key FROM bench.raw_keys WHERE i = :i), 0.000001, 'bench-model', 10);
