\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.7.0'" to load this file. \quit

-- pgmarket 0.7.0: the account surface, tiers and rate limits, imports
-- applied on the server in batches.
--
-- Each part below stands under a heading of its own; new functions only,
-- and the tables they need, so that the calls of 0.6.0 keep working.

-------------------------------------------------------------------------------
-- Tiers and rate limits (extension/ratelimit.c)
-------------------------------------------------------------------------------

-- A platform key's tier names its limits: in any 60 seconds at most
-- requests_per_minute + burst calls and tokens_per_minute tokens; a NULL
-- limit is no limit.  set_tier is the way to change a row.
CREATE TABLE @extschema@.tiers (
    name                text PRIMARY KEY,
    requests_per_minute int,
    tokens_per_minute   bigint,
    burst               int NOT NULL DEFAULT 0,
    CONSTRAINT tiers_name CHECK (name OPERATOR(pg_catalog.~) '^[a-z0-9_-]{1,32}$'),
    CONSTRAINT tiers_requests CHECK (requests_per_minute > 0),
    CONSTRAINT tiers_tokens CHECK (tokens_per_minute > 0),
    CONSTRAINT tiers_burst CHECK (burst >= 0)
);
INSERT INTO @extschema@.tiers (name, requests_per_minute, tokens_per_minute, burst) VALUES
    ('free', 60, 40000, 10),
    ('pro', 600, 1000000, 100),
    ('enterprise', 6000, 20000000, 1000);
-- A key of 0.6.0 whose tier is not one of these keeps working as it did,
-- without limits, until set_tier gives its tier some.
INSERT INTO @extschema@.tiers (name)
    SELECT DISTINCT k.rate_limit_tier FROM @extschema@.api_keys k
     WHERE k.rate_limit_tier OPERATOR(pg_catalog.~) '^[a-z0-9_-]{1,32}$'
    ON CONFLICT (name) DO NOTHING;
-- The three rows above come with the extension; rows set_tier adds go into
-- a dump (a changed default row does not: see the README).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.tiers',
    $$WHERE name NOT IN ('free', 'pro', 'enterprise')$$);

-- The limiter's counters when the library is not preloaded: one row per
-- key, its last 61 seconds (ratelimit.c's RateWindow), locked per key.
-- Not money and not WAL-logged: a crash or a failover empties the table,
-- which forgives what was counted, never charges.
CREATE UNLOGGED TABLE @extschema@.rate_counters (
    key_id uuid PRIMARY KEY,
    state  bytea NOT NULL
);

CREATE FUNCTION @extschema@.set_tier(name text, requests_per_minute int,
        tokens_per_minute bigint, burst int DEFAULT 0)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_set_tier'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.check_rate_limit(api_key text)
    RETURNS TABLE (allowed boolean, retry_after_ms bigint,
                   remaining_requests bigint)
    AS 'MODULE_PATHNAME', 'pgm_check_rate_limit'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- The sealed form, which the client library sends (see sealed.c).
CREATE FUNCTION @extschema@.check_rate_limit_sealed(key_prefix text,
        sealed_key bytea)
    RETURNS TABLE (allowed boolean, retry_after_ms bigint,
                   remaining_requests bigint)
    AS 'MODULE_PATHNAME', 'pgm_check_rate_limit_sealed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON @extschema@.tiers, @extschema@.rate_counters FROM PUBLIC;
REVOKE ALL ON FUNCTION
    @extschema@.set_tier(text, int, bigint, int),
    @extschema@.check_rate_limit(text),
    @extschema@.check_rate_limit_sealed(text, bytea)
    FROM PUBLIC;
GRANT SELECT ON @extschema@.tiers
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin;
GRANT EXECUTE ON FUNCTION
    @extschema@.check_rate_limit(text),
    @extschema@.check_rate_limit_sealed(text, bytea)
    TO pgmarket_app, pgmarket_admin;
GRANT EXECUTE ON FUNCTION @extschema@.set_tier(text, int, bigint, int)
    TO pgmarket_admin;
