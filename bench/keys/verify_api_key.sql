-- verify_api_key of a random user's raw key (read from bench.raw_keys by
-- primary key in the same statement, as plain_api_key.sql does too)
\set i random(1, :users)
SELECT user_id, scopes, rate_limit_tier FROM pgmarket.verify_api_key((SELECT api_key FROM bench.raw_keys WHERE i = :i));
