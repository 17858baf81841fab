-- charge_api_key through a key whose tier has limits: counted and admitted
\set i random(1, :users)
SELECT available_balance FROM pgmarket.charge_api_key((SELECT api_key FROM bench.raw_keys WHERE tier = 'bench-wide' AND i = :i), 0.000001, 'bench-model', 10);
