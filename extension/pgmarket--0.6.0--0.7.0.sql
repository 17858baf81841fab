\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.7.0'" to load this file. \quit

-- pgmarket 0.7.0: the account surface, tiers and rate limits, imports
-- applied on the server in batches.
--
-- Each part below stands under a heading of its own; new functions only,
-- and the tables they need, so that the calls of 0.6.0 keep working.

-------------------------------------------------------------------------------
-- Part: the account surface (lookups, updates, passwords and resets,
-- account roles, reactivation, external identities)
-------------------------------------------------------------------------------

-- Password reset tokens, stored only as a BLAKE2b-256 hash keyed with a
-- subkey of the master key (resets.c); the raw token is returned once.
-- hash_version is the master key version of the hash (the token carries it
-- too, so that reset_password hashes once and looks up once).
CREATE TABLE @extschema@.password_resets (
    reset_id     uuid PRIMARY KEY,
    token_hash   bytea NOT NULL,
    hash_version int NOT NULL,
    user_id      uuid NOT NULL REFERENCES @extschema@.accounts (id),
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);
CREATE UNIQUE INDEX password_resets_token
    ON @extschema@.password_resets (token_hash);
CREATE INDEX password_resets_user ON @extschema@.password_resets (user_id);

-- External identities (single sign-on): one user per (provider, subject),
-- one subject per user and provider.
CREATE TABLE @extschema@.identities (
    provider   text NOT NULL,
    subject    text NOT NULL,
    user_id    uuid NOT NULL REFERENCES @extschema@.accounts (id),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (provider, subject)
);
CREATE UNIQUE INDEX identities_user_provider
    ON @extschema@.identities (user_id, provider);

-- Lookups (profiles.c)
CREATE FUNCTION @extschema@.get_user(user_id uuid)
    RETURNS SETOF @extschema@.users
    AS 'MODULE_PATHNAME', 'pgm_get_user'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.get_user_by_email(email text)
    RETURNS SETOF @extschema@.users
    AS 'MODULE_PATHNAME', 'pgm_get_user_by_email'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.get_user_by_username(username text)
    RETURNS SETOF @extschema@.users
    AS 'MODULE_PATHNAME', 'pgm_get_user_by_username'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.update_last_login(user_id uuid)
    RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'pgm_update_last_login'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.update_user(user_id uuid, email text DEFAULT NULL,
        username text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_update_user'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.reactivate_user(user_id uuid)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_reactivate_user'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- Passwords and resets (resets.c; the sealed forms in sealed.c)
CREATE FUNCTION @extschema@.change_password(user_id uuid, old_password text,
        new_password text)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'pgm_change_password'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.change_password_sealed(user_id uuid,
        sealed_old_password bytea, sealed_new_password bytea)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'pgm_change_password_sealed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.create_password_reset(user_id uuid,
        ttl interval DEFAULT '1 hour')
    RETURNS text
    AS 'MODULE_PATHNAME', 'pgm_create_password_reset'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.reset_password(token text, new_password text)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_reset_password'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.reset_password_sealed(token text,
        sealed_new_password bytea)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_reset_password_sealed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- Account roles (roles.c)
CREATE FUNCTION @extschema@.add_account_role(name text,
        description text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_add_account_role'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.grant_user_role(user_id uuid, role text)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_grant_user_role'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.revoke_user_role(user_id uuid, role text)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_revoke_user_role'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.has_role(user_id uuid, role text)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'pgm_has_role'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- External identities (identities.c)
CREATE FUNCTION @extschema@.link_identity(user_id uuid, provider text,
        subject text)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_link_identity'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.unlink_identity(user_id uuid, provider text)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'pgm_unlink_identity'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.user_by_identity(provider text, subject text)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_user_by_identity'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- The routing partition of a reset token (its four hex digits after
-- "pwr_": hashtext(user_id::text) & 65535), as api_key_partition is a
-- platform key's: what a PL/Proxy front routes reset_password by.
CREATE FUNCTION @extschema@.reset_token_partition(token text)
    RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN token OPERATOR(pg_catalog.~)
                     '^pwr_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$'
                THEN pg_catalog.int4(pg_catalog.textcat('x',
                         pg_catalog.substr(token, 5, 4))::bit(16))
           END;

-- Audited from install, like accounts; a reset's hash is recorded as
-- changed, never with its value.
CREATE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.password_resets
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger('token_hash');
CREATE TRIGGER pgmarket_audit_truncate
    AFTER TRUNCATE ON @extschema@.password_resets
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.identities
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit_truncate
    AFTER TRUNCATE ON @extschema@.identities
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger();

-- Row-level security, as for the other tables of per-user rows.
ALTER TABLE @extschema@.password_resets ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.identities ENABLE ROW LEVEL SECURITY;
CREATE POLICY password_resets_staff ON @extschema@.password_resets
    FOR SELECT TO pgmarket_auditor, pgmarket_admin USING (true);
CREATE POLICY identities_actor ON @extschema@.identities FOR ALL TO pgmarket_app
    USING (pg_catalog.current_setting('pgmarket.actor', true) IS NULL
        OR pg_catalog.current_setting('pgmarket.actor', true) OPERATOR(pg_catalog.=) ''
        OR user_id OPERATOR(pg_catalog.=) @extschema@.current_actor())
    WITH CHECK (pg_catalog.current_setting('pgmarket.actor', true) IS NULL
        OR pg_catalog.current_setting('pgmarket.actor', true) OPERATOR(pg_catalog.=) ''
        OR user_id OPERATOR(pg_catalog.=) @extschema@.current_actor());
CREATE POLICY identities_staff ON @extschema@.identities
    FOR SELECT TO pgmarket_auditor, pgmarket_admin USING (true);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.password_resets', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.identities', '');

REVOKE ALL ON @extschema@.password_resets, @extschema@.identities FROM PUBLIC;
REVOKE ALL ON FUNCTION
    @extschema@.get_user(uuid),
    @extschema@.get_user_by_email(text),
    @extschema@.get_user_by_username(text),
    @extschema@.update_last_login(uuid),
    @extschema@.update_user(uuid, text, text),
    @extschema@.reactivate_user(uuid),
    @extschema@.change_password(uuid, text, text),
    @extschema@.change_password_sealed(uuid, bytea, bytea),
    @extschema@.create_password_reset(uuid, interval),
    @extschema@.reset_password(text, text),
    @extschema@.reset_password_sealed(text, bytea),
    @extschema@.add_account_role(text, text),
    @extschema@.grant_user_role(uuid, text),
    @extschema@.revoke_user_role(uuid, text),
    @extschema@.has_role(uuid, text),
    @extschema@.link_identity(uuid, text, text),
    @extschema@.unlink_identity(uuid, text),
    @extschema@.user_by_identity(text, text),
    @extschema@.reset_token_partition(text)
    FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    @extschema@.get_user(uuid),
    @extschema@.get_user_by_email(text),
    @extschema@.get_user_by_username(text),
    @extschema@.update_last_login(uuid),
    @extschema@.update_user(uuid, text, text),
    @extschema@.reactivate_user(uuid),
    @extschema@.change_password(uuid, text, text),
    @extschema@.change_password_sealed(uuid, bytea, bytea),
    @extschema@.create_password_reset(uuid, interval),
    @extschema@.reset_password(text, text),
    @extschema@.reset_password_sealed(text, bytea),
    @extschema@.grant_user_role(uuid, text),
    @extschema@.revoke_user_role(uuid, text),
    @extschema@.has_role(uuid, text),
    @extschema@.link_identity(uuid, text, text),
    @extschema@.unlink_identity(uuid, text),
    @extschema@.user_by_identity(text, text),
    @extschema@.reset_token_partition(text)
    TO pgmarket_app, pgmarket_admin;
GRANT EXECUTE ON FUNCTION @extschema@.add_account_role(text, text)
    TO pgmarket_admin;

-- Identities are read under the policies, like preferences; reset hashes,
-- like platform key hashes, by nobody but the auditors.
GRANT SELECT ON @extschema@.identities
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin;
GRANT SELECT (reset_id, user_id, created_at, expires_at, used_at)
    ON @extschema@.password_resets TO pgmarket_auditor, pgmarket_admin;

-------------------------------------------------------------------------------
-- End of part: the account surface
-------------------------------------------------------------------------------

-------------------------------------------------------------------------------
-- Part: tiers and rate limits (extension/ratelimit.c)
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

-------------------------------------------------------------------------------
-- Part: hashes made elsewhere (create_user_hashed) and the right to be
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
CREATE OR REPLACE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.identities
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger(
        'owner:user_id', 'personal:subject');
CREATE OR REPLACE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.projects
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger(
        'owner:user_id', 'personal:name', 'personal:codebase',
        'personal:environment', 'personal:deployment');
CREATE OR REPLACE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.modifications
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger(
        'owner:user_id', 'personal:request', 'personal:requested_by',
        'personal:results');

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

-------------------------------------------------------------------------------
-- Part: imports in batches on the server (pgmarket import and export)
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
