\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.2.0'" to load this file. \quit

-- pgmarket 0.2.0: the vault of provider keys that users bring, and the
-- platform API keys that the marketplace issues.
--
-- The master key lives in the file named by pgmarket.master_key_file, never
-- in the database.  provider_keys holds ciphertexts only; api_keys holds
-- keyed hashes only; neither table is readable by pgmarket_app.

-------------------------------------------------------------------------------
-- Vault
-------------------------------------------------------------------------------

-- One row per stored key.  nonce and ciphertext are XChaCha20-Poly1305 with
-- the key id, user id, key_version and provider as associated data.  hint is
-- the last 4 characters of the secret (NULL for secrets shorter than 8).
CREATE TABLE @extschema@.provider_keys (
    key_id       uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES @extschema@.accounts (id),
    provider     text NOT NULL,
    label        text,
    hint         text,
    key_version  int NOT NULL,
    nonce        bytea NOT NULL,
    ciphertext   bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT provider_keys_provider
        CHECK (provider OPERATOR(pg_catalog.~) '^[a-z0-9_.-]{1,64}$'),
    CONSTRAINT provider_keys_version CHECK (key_version > 0),
    CONSTRAINT provider_keys_nonce CHECK (pg_catalog.length(nonce) = 24)
);
-- one active key per user and provider
CREATE UNIQUE INDEX provider_keys_one_active
    ON @extschema@.provider_keys (user_id, provider) WHERE revoked_at IS NULL;
CREATE INDEX provider_keys_user ON @extschema@.provider_keys (user_id);
-- rotation looks for rows that are not under the newest version
CREATE INDEX provider_keys_version ON @extschema@.provider_keys (key_version);

CREATE SEQUENCE @extschema@.key_access_log_id_seq;

-- Append-only record of every decryption: who, which key, when; never the
-- secret.  session_role is session_user, db_role the role in effect when
-- get_provider_key was called (after SET ROLE), actor is pgmarket.actor.
CREATE TABLE @extschema@.key_access_log (
    id           bigint PRIMARY KEY
                 DEFAULT pg_catalog.nextval('@extschema@.key_access_log_id_seq'),
    at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    key_id       uuid NOT NULL,
    user_id      uuid NOT NULL,
    provider     text NOT NULL,
    session_role text,
    db_role      text,
    actor        text
);
CREATE INDEX key_access_log_key ON @extschema@.key_access_log (key_id, at);

CREATE TRIGGER key_access_log_append_only
    BEFORE UPDATE OR DELETE ON @extschema@.key_access_log
    FOR EACH ROW EXECUTE FUNCTION @extschema@.forbid_change();
CREATE TRIGGER key_access_log_no_truncate
    BEFORE TRUNCATE ON @extschema@.key_access_log
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.forbid_change();

CREATE FUNCTION @extschema@.put_provider_key(user_id uuid, provider text,
        secret text, label text DEFAULT NULL)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_put_provider_key'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.put_provider_key_sealed(user_id uuid,
        provider text, sealed bytea, label text DEFAULT NULL)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_put_provider_key_sealed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.vault_public_key() RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgm_vault_public_key'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.get_provider_key(user_id uuid, provider text)
    RETURNS text
    AS 'MODULE_PATHNAME', 'pgm_get_provider_key'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.list_provider_keys(user_id uuid)
    RETURNS TABLE (key_id uuid, provider text, label text, hint text,
                   key_version int, created_at timestamptz,
                   last_used_at timestamptz, revoked_at timestamptz)
    AS 'MODULE_PATHNAME', 'pgm_list_provider_keys'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.revoke_provider_key(user_id uuid, key_id uuid)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'pgm_revoke_provider_key'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.rotate_master_key(batch_size int DEFAULT 1000)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'pgm_rotate_master_key'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- Re-encrypt every provider key under the newest master key version, one
-- committed batch at a time.  A procedure that commits may be neither
-- SECURITY DEFINER nor carry a SET clause, so this one runs as its caller
-- and qualifies every name; the work is done by rotate_master_key.
CREATE PROCEDURE @extschema@.rotate_all_keys(batch_size int DEFAULT 1000)
    LANGUAGE plpgsql
AS $$
DECLARE
    n     bigint;
    total bigint := 0;
BEGIN
    IF batch_size IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = 'batch_size must not be null';
    END IF;
    LOOP
        n := @extschema@.rotate_master_key(batch_size);
        EXIT WHEN n OPERATOR(pg_catalog.=) 0;
        total := total OPERATOR(pg_catalog.+) n;
        COMMIT;
        RAISE NOTICE 're-encrypted % provider keys so far', total;
    END LOOP;
    RAISE NOTICE 'rotation done: % provider keys re-encrypted', total;
END
$$;

-------------------------------------------------------------------------------
-- Platform API keys
-------------------------------------------------------------------------------

-- The raw key is never stored: prefix (sk_<env>_<partition><random id>) for
-- display and lookup, hash = keyed BLAKE2b-256 of the whole key under the
-- API-key subkey of master key version hash_version.  Spend is tracked per
-- key under its row lock: period_spent since period_start (the start of the
-- current UTC day or month; NULL for a lifetime limit), total_spent ever.
CREATE TABLE @extschema@.api_keys (
    key_id          uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES @extschema@.accounts (id),
    name            text NOT NULL,
    prefix          text NOT NULL,
    hash            bytea NOT NULL,
    hash_version    int NOT NULL,
    scopes          text[] NOT NULL,
    rate_limit_tier text NOT NULL,
    environment     text NOT NULL,
    expires_at      timestamptz,
    spend_limit     bigint,
    spend_period    text,
    period_start    timestamptz,
    period_spent    bigint NOT NULL DEFAULT 0,
    total_spent     bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    CONSTRAINT api_keys_environment CHECK (environment IN ('live', 'test')),
    CONSTRAINT api_keys_scopes
        CHECK (scopes OPERATOR(pg_catalog.<@) '{read,write,admin}'::text[]),
    CONSTRAINT api_keys_spend_limit CHECK (spend_limit > 0),
    CONSTRAINT api_keys_spend_period
        CHECK (spend_period IN ('day', 'month')
               AND spend_limit IS NOT NULL OR spend_period IS NULL),
    CONSTRAINT api_keys_spent CHECK (period_spent >= 0 AND total_spent >= 0)
);
CREATE UNIQUE INDEX api_keys_prefix ON @extschema@.api_keys (prefix);
CREATE INDEX api_keys_user ON @extschema@.api_keys (user_id);

CREATE FUNCTION @extschema@.create_api_key(user_id uuid, name text,
        scopes text[] DEFAULT '{read,write}',
        rate_limit_tier text DEFAULT 'free',
        expires_at timestamptz DEFAULT NULL,
        environment text DEFAULT 'live',
        spend_limit numeric DEFAULT NULL,
        spend_period text DEFAULT NULL)
    RETURNS TABLE (key_id uuid, api_key text)
    AS 'MODULE_PATHNAME', 'pgm_create_api_key'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.verify_api_key(api_key text)
    RETURNS TABLE (key_id uuid, user_id uuid, scopes text[],
                   rate_limit_tier text)
    AS 'MODULE_PATHNAME', 'pgm_verify_api_key'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.charge_api_key(api_key text, amount numeric,
        model_id text, tokens_used bigint DEFAULT 0,
        idempotency_key text DEFAULT NULL)
    RETURNS @extschema@.ledger_result
    AS 'MODULE_PATHNAME', 'pgm_charge_api_key'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.reserve_api_key(api_key text, amount numeric,
        ttl interval DEFAULT '15 minutes', idempotency_key text DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'pgm_reserve_api_key'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.revoke_api_key(user_id uuid, key_id uuid)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'pgm_revoke_api_key'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.list_api_keys(user_id uuid)
    RETURNS TABLE (key_id uuid, name text, prefix text, scopes text[],
                   rate_limit_tier text, environment text,
                   spend_limit numeric, spend_period text, spent numeric,
                   total_spent numeric, created_at timestamptz,
                   expires_at timestamptz, last_used_at timestamptz,
                   revoked_at timestamptz)
    AS 'MODULE_PATHNAME', 'pgm_list_api_keys'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- The routing partition in a key's public part (NULL for anything that is
-- not a key): equal to hashtext(user_id::text) & 65535 of its owner, so a
-- PL/Proxy function can RUN ON api_key_partition(api_key) where the user's
-- functions RUN ON hashtext(user_id::text).
CREATE FUNCTION @extschema@.api_key_partition(api_key text) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN api_key OPERATOR(pg_catalog.~)
                     '^sk_(live|test)_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$'
                THEN pg_catalog.int4(pg_catalog.textcat('x',
                         pg_catalog.substr(api_key, 9, 4))::bit(16))
           END;

-------------------------------------------------------------------------------
-- Dump support and privileges
-------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('@extschema@.provider_keys', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.api_keys', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.key_access_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.key_access_log_id_seq', '');

REVOKE ALL ON @extschema@.provider_keys, @extschema@.api_keys,
    @extschema@.key_access_log FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.key_access_log_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION
    @extschema@.put_provider_key(uuid, text, text, text),
    @extschema@.put_provider_key_sealed(uuid, text, bytea, text),
    @extschema@.vault_public_key(),
    @extschema@.get_provider_key(uuid, text),
    @extschema@.list_provider_keys(uuid),
    @extschema@.revoke_provider_key(uuid, uuid),
    @extschema@.rotate_master_key(int),
    @extschema@.create_api_key(uuid, text, text[], text, timestamptz, text,
                               numeric, text),
    @extschema@.verify_api_key(text),
    @extschema@.charge_api_key(text, numeric, text, bigint, text),
    @extschema@.reserve_api_key(text, numeric, interval, text),
    @extschema@.revoke_api_key(uuid, uuid),
    @extschema@.list_api_keys(uuid),
    @extschema@.api_key_partition(text)
    FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.rotate_all_keys(int) FROM PUBLIC;

-- The application stores, lists and revokes keys, and issues, verifies and
-- charges platform keys; it cannot read a ciphertext, a hash or a secret.
GRANT EXECUTE ON FUNCTION
    @extschema@.put_provider_key(uuid, text, text, text),
    @extschema@.put_provider_key_sealed(uuid, text, bytea, text),
    @extschema@.vault_public_key(),
    @extschema@.list_provider_keys(uuid),
    @extschema@.revoke_provider_key(uuid, uuid),
    @extschema@.create_api_key(uuid, text, text[], text, timestamptz, text,
                               numeric, text),
    @extschema@.verify_api_key(text),
    @extschema@.charge_api_key(text, numeric, text, bigint, text),
    @extschema@.reserve_api_key(text, numeric, interval, text),
    @extschema@.revoke_api_key(uuid, uuid),
    @extschema@.list_api_keys(uuid),
    @extschema@.api_key_partition(text)
    TO pgmarket_app, pgmarket_admin;

-- Decryption is granted separately.
GRANT EXECUTE ON FUNCTION @extschema@.get_provider_key(uuid, text)
    TO pgmarket_keyreader, pgmarket_admin;

-- Rotation is the administrator's.
GRANT EXECUTE ON FUNCTION @extschema@.rotate_master_key(int) TO pgmarket_admin;
GRANT EXECUTE ON PROCEDURE @extschema@.rotate_all_keys(int) TO pgmarket_admin;

-- The record of decryptions is part of the audit trail.
GRANT SELECT ON @extschema@.key_access_log TO pgmarket_auditor, pgmarket_admin;
