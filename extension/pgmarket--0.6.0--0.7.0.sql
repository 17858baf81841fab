\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.7.0'" to load this file. \quit

-- pgmarket 0.7.0: the account surface, tiers and rate limits, imports
-- applied on the server in batches.
--
-- Each part below stands under a heading of its own; new functions only,
-- and the tables they need, so that the calls of 0.6.0 keep working.

-------------------------------------------------------------------------------
-- Imports in batches on the server (pgmarket import and export)
-------------------------------------------------------------------------------

-- A batch of an import's records in one statement, each under the rules of
-- its single call (import_user, add_funds / deduct_balance with the entry's
-- own time, put_provider_key_sealed, create_chat_session and
-- save_chat_message with each message's time); one row per record says
-- whether it was created, present already or rejected, and why.
CREATE FUNCTION @extschema@.import_batch(section text, records jsonb)
    RETURNS TABLE (idx integer, outcome text, reasons text[])
    AS 'MODULE_PATHNAME', 'pgm_import_batch'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.import_batch(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.import_batch(text, jsonb) TO pgmarket_admin;

-- The active accounts with their password hashes, for an export that gives
-- every login back (pgmarket export --with-secrets).
CREATE FUNCTION @extschema@.export_accounts()
    RETURNS TABLE (id uuid, email text, username text, password_hash text,
                   created_at timestamptz)
    AS 'MODULE_PATHNAME', 'pgm_export_accounts'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.export_accounts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.export_accounts() TO pgmarket_admin;
