\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.9.0'" to load this file. \quit

-- pgmarket 0.9.0: the hot paths of API key charges and single charges, and
-- the extension's floor written once.
--
-- Each part below stands under a heading of its own, so that the calls of
-- 0.8.0 keep working.

-------------------------------------------------------------------------------
-- API keys: the spend counters in a table of their own (extension/apikeys.c)
-------------------------------------------------------------------------------

-- What a key has spent moves out of api_keys, whose rows are the keys'
-- definitions (audited, five CHECK constraints, three indexes), into a
-- narrow row per key that charges update in place (HOT: fillfactor 50, one
-- index, one CHECK, no audit row; the ledger records every charge).  A
-- charge locks the key's row (FOR NO KEY UPDATE, so a revocation waits for
-- it and it waits for a revocation, as before) and then its spend row.
-- period_spent counts since period_start (the start of the current UTC day
-- or month; NULL for a lifetime limit), total_spent over the key's life.
CREATE TABLE @extschema@.api_key_spend (
    key_id       uuid PRIMARY KEY
                 REFERENCES @extschema@.api_keys (key_id) ON DELETE CASCADE,
    period_start timestamptz,
    period_spent bigint NOT NULL DEFAULT 0,
    total_spent  bigint NOT NULL DEFAULT 0,
    CONSTRAINT api_key_spend_spent CHECK (period_spent >= 0 AND total_spent >= 0)
) WITH (fillfactor = 50);

INSERT INTO @extschema@.api_key_spend (key_id, period_start, period_spent,
                                       total_spent)
    SELECT key_id, period_start, period_spent, total_spent
      FROM @extschema@.api_keys;

ALTER TABLE @extschema@.api_keys
    DROP COLUMN period_start,
    DROP COLUMN period_spent,
    DROP COLUMN total_spent;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.api_key_spend', '');
REVOKE ALL ON @extschema@.api_key_spend FROM PUBLIC;
