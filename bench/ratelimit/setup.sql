-- bench/ratelimit.sh: the data.  :users users (id bench.uid(i)), each
-- with plenty of funds and three platform keys, one per tier:
--   bench-open    no limits: the limiter has nothing to count
--   bench-wide    limits no run reaches (2,147,483,647 requests and
--                 9e18 tokens a minute): every call is counted and admitted
--   bench-tight   1 request a minute: after bench/ratelimit/exhaust.sql,
--                 every call is refused (PM005)
-- The raw keys are kept in bench.raw_keys (i, tier), read by the same
-- primary-key subquery in every script.
CREATE EXTENSION pgmarket;
CREATE SCHEMA bench;

SELECT pgmarket.set_tier('bench-open', NULL, NULL);
SELECT pgmarket.set_tier('bench-wide', 2147483647, 9000000000000000000, 0);
SELECT pgmarket.set_tier('bench-tight', 1, NULL, 0);

CREATE FUNCTION bench.uid(i int) RETURNS uuid IMMUTABLE PARALLEL SAFE LANGUAGE sql
    RETURN ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid;

SELECT count(pgmarket.create_user('bench' || g || '@example.com', 'bench' || g,
                                  id => bench.uid(g)))
  FROM generate_series(1, :users) g;
SELECT count(pgmarket.add_funds(bench.uid(g), 1000000)) FROM generate_series(1, :users) g;

CREATE TABLE bench.raw_keys (i int, tier text, api_key text NOT NULL,
                             PRIMARY KEY (tier, i));
INSERT INTO bench.raw_keys
  SELECT g, t, k.api_key
    FROM generate_series(1, :users) g,
         unnest(ARRAY['bench-open', 'bench-wide', 'bench-tight']) t,
         LATERAL pgmarket.create_api_key(bench.uid(g), 'bench ' || t,
                                         rate_limit_tier => t) k;

-- A call that may be refused, as a gateway makes it: 1 admitted, 0
-- refused (PM005).  Both the admitted and the refused side go through it
-- (it costs a subtransaction each), so that their rates compare.
CREATE FUNCTION bench.try_charge(i int, t text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmarket.charge_api_key(
        (SELECT api_key FROM bench.raw_keys r WHERE r.tier = t AND r.i = try_charge.i),
        0.000001, 'bench-model', 10);
    RETURN 1;
EXCEPTION WHEN SQLSTATE 'PM005' THEN
    RETURN 0;
END $$;
