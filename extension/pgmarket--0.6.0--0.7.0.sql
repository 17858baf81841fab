\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.7.0'" to load this file. \quit

-- pgmarket 0.7.0: the account surface, tiers and rate limits, imports
-- applied on the server in batches.
--
-- Each part below stands under a heading of its own; new functions only,
-- and the tables they need, so that the calls of 0.6.0 keep working.

-------------------------------------------------------------------------------
-- Accounts: hashes made elsewhere (create_user_hashed) and the right to be
-- forgotten (erase_user, personal values of the audit trail under per-user
-- keys)
-------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.create_user_hashed(email text, username text,
        password_hash text, roles text[] DEFAULT '{user}',
        id uuid DEFAULT pg_catalog.gen_random_uuid())
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_create_user_hashed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.create_user_hashed(text, text, text, text[], uuid)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.create_user_hashed(text, text, text, text[], uuid)
    TO pgmarket_app, pgmarket_admin;

-- One key per user for the personal values of the audit trail (personal.c):
-- random, made at the user's first personal value; NULL once the user is
-- erased.  No pgmarket role reads it; the trigger and audit_open_value do,
-- as its owner.
CREATE TABLE @extschema@.personal_keys (
    user_id    uuid PRIMARY KEY,
    key        bytea,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    erased_at  timestamptz,
    CONSTRAINT personal_keys_key CHECK (key IS NULL OR pg_catalog.length(key) OPERATOR(pg_catalog.=) 32),
    CONSTRAINT personal_keys_erased CHECK ((key IS NULL) OPERATOR(pg_catalog.=) (erased_at IS NOT NULL))
);
REVOKE ALL ON @extschema@.personal_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.personal_keys', '');

-- The personal columns of pgmarket's own audited tables, kept in the trail
-- under the owner's key ("owner:COLUMN" names the user, "personal:COLUMN"
-- a value of theirs; only pgmarket's own tables take these arguments).
-- From this version on; rows written before stay as they were.
CREATE OR REPLACE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.accounts
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger('password_hash',
        'owner:id', 'personal:email', 'personal:username');
CREATE OR REPLACE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.preferences
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger(
        'owner:user_id', 'personal:value');
CREATE OR REPLACE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.provider_keys
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger('ciphertext', 'nonce',
        'owner:user_id', 'personal:label', 'personal:hint');
CREATE OR REPLACE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.api_keys
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger('hash',
        'owner:user_id', 'personal:name');

CREATE FUNCTION @extschema@.erase_user(user_id uuid) RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_erase_user'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.erase_user(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.erase_user(uuid) TO pgmarket_admin;

-- For the auditor: a personal value of the trail opened, or "[erased]"
CREATE FUNCTION @extschema@.audit_open_value(col text, value jsonb)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'pgm_audit_open_value'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
-- ... and every member of an object (row_key, old_values, new_values)
CREATE FUNCTION @extschema@.audit_open(vals jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN pg_catalog.jsonb_typeof(vals) OPERATOR(pg_catalog.=) 'object'
        THEN (SELECT COALESCE(pg_catalog.jsonb_object_agg(e.key,
                         @extschema@.audit_open_value(e.key, e.value)), '{}'::jsonb)
                FROM pg_catalog.jsonb_each(vals) AS e)
        ELSE vals END;
REVOKE ALL ON FUNCTION @extschema@.audit_open_value(text, jsonb),
    @extschema@.audit_open(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.audit_open_value(text, jsonb),
    @extschema@.audit_open(jsonb) TO pgmarket_auditor, pgmarket_admin;
