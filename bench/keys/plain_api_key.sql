-- the floor: look the same raw key up by its prefix in a plain table (no
-- hash check, no revocation, expiry or user check)
\set i random(1, :users)
SELECT user_id, scopes, rate_limit_tier FROM bench.plain_api_keys WHERE prefix = left((SELECT api_key FROM bench.raw_keys WHERE i = :i), 24);
