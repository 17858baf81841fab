-- get_provider_key: decrypt one user's provider key (and record the read in
-- pgmarket.key_access_log, as the contract requires)
\set i random(1, :users)
SELECT pgmarket.get_provider_key(bench.uid(:i), 'openai');
