\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.3.0'" to load this file. \quit

-- pgmarket 0.3.0: the audit trail.
--
-- audit_trigger() (C) records every INSERT, UPDATE and DELETE of an audited
-- table in audit_log, in the transaction of the change; TRUNCATE too.
-- audit_log is append-only for everybody.  Its rows are never updated, so
-- the seal is not in them: seal_audit() appends records to audit_seals that
-- cover ranges of ids with a keyed MAC per row and a keyed BLAKE2b hash
-- chain; verify_audit() recomputes both.  The view audit_trail shows each
-- row with the seal that covers it.

-------------------------------------------------------------------------------
-- Tables
-------------------------------------------------------------------------------

CREATE SEQUENCE @extschema@.audit_log_id_seq;

-- One row per row change (or per act on a table: ENABLE_AUDIT,
-- DISABLE_AUDIT, TRUNCATE, PURGE).  Written by the C trigger only, straight
-- into the heap: keep the primary key its only index, and keep the columns
-- in this order (the row MACs cover them in it).
CREATE TABLE @extschema@.audit_log (
    id               bigint PRIMARY KEY,
    at               timestamptz NOT NULL,   -- start of the transaction
    txid             bigint NOT NULL,        -- txid_current() of it
    table_name       text NOT NULL,          -- schema-qualified
    operation        text NOT NULL,
    row_key          jsonb,                  -- primary key, or the whole row
    old_values       jsonb,                  -- UPDATE: changed columns only
    new_values       jsonb,                  -- UPDATE: changed columns only
    changed_columns  text[] NOT NULL,
    actor            text,                   -- pgmarket.actor
    db_role          text,                   -- current_user at the SQL surface
    client_addr      inet,
    application_name text
);

-- The chain.  kind 'seal': the audit rows with after_id < id <= through_id,
-- row_count of them, entries = per row in id order its id (8 bytes,
-- big-endian) and a 16-byte keyed BLAKE2b MAC of its content.  kind
-- 'purge': the rows after_id < id <= through_id were deleted by
-- purge_audit (row_count of them); their seals stay.  chain_hash = keyed
-- BLAKE2b-256 over the previous record's chain_hash, this record's fields
-- and entries, under the audit subkey of master key version key_version.
CREATE TABLE @extschema@.audit_seals (
    seq          bigint PRIMARY KEY,
    kind         text NOT NULL,
    after_id     bigint NOT NULL,
    through_id   bigint NOT NULL,
    row_count    bigint NOT NULL,
    key_version  int NOT NULL,
    entries      bytea NOT NULL,
    chain_hash   bytea NOT NULL,
    sealed_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT audit_seals_kind CHECK (kind IN ('seal', 'purge')),
    CONSTRAINT audit_seals_range CHECK (through_id >= after_id AND row_count >= 0)
);
-- MACs do not compress
ALTER TABLE @extschema@.audit_seals ALTER COLUMN entries SET STORAGE EXTERNAL;

-- Append-only for everybody, owner and pgmarket_admin included.
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON @extschema@.audit_log
    FOR EACH ROW EXECUTE FUNCTION @extschema@.forbid_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON @extschema@.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.forbid_change();
CREATE TRIGGER audit_seals_append_only
    BEFORE UPDATE OR DELETE ON @extschema@.audit_seals
    FOR EACH ROW EXECUTE FUNCTION @extschema@.forbid_change();
CREATE TRIGGER audit_seals_no_truncate
    BEFORE TRUNCATE ON @extschema@.audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.forbid_change();

-- Each audit row with the seal that covers it (NULL: not sealed yet).
CREATE VIEW @extschema@.audit_trail AS
    SELECT l.id, l.at, l.txid, l.table_name, l.operation, l.row_key,
           l.old_values, l.new_values, l.changed_columns, l.actor, l.db_role,
           l.client_addr, l.application_name,
           s.seq AS seal_seq, s.key_version AS seal_key_version,
           s.sealed_at
      FROM @extschema@.audit_log l
      LEFT JOIN @extschema@.audit_seals s
        ON s.kind OPERATOR(pg_catalog.=) 'seal'
       AND l.id OPERATOR(pg_catalog.>) s.after_id
       AND l.id OPERATOR(pg_catalog.<=) s.through_id;

-------------------------------------------------------------------------------
-- Functions
-------------------------------------------------------------------------------

-- The trigger; its arguments are the columns to redact.
CREATE FUNCTION @extschema@.audit_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'pgm_audit_trigger' LANGUAGE C;

-- An act on a table, recorded in audit_log.  Internal: granted to nobody.
CREATE FUNCTION @extschema@.audit_event(target regclass, operation text,
        details jsonb)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_audit_event'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.enable_audit(target regclass,
        redact text[] DEFAULT '{}')
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind "char";
    col  text;
    args text;
    cols text[];
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = 'target must not be null';
    END IF;
    IF redact IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = 'redact must not be null';
    END IF;
    SELECT c.relkind INTO kind FROM pg_catalog.pg_class c
     WHERE c.oid OPERATOR(pg_catalog.=) target;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42P01',
            MESSAGE = pg_catalog.format('relation with OID %s does not exist',
                                        target::oid);
    END IF;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s is not a table', target);
    END IF;
    IF target IN ('@extschema@.audit_log'::regclass,
                  '@extschema@.audit_seals'::regclass) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = pg_catalog.format('%s is the audit trail itself', target);
    END IF;
    FOREACH col IN ARRAY redact LOOP
        IF col IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = '22004',
                MESSAGE = 'redact must not contain nulls';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid OPERATOR(pg_catalog.=) target
                          AND a.attname OPERATOR(pg_catalog.=) col
                          AND a.attnum OPERATOR(pg_catalog.>) 0
                          AND NOT a.attisdropped) THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = pg_catalog.format('column "%s" of %s does not exist',
                                            col, target);
        END IF;
    END LOOP;
    cols := ARRAY(SELECT DISTINCT u.c FROM pg_catalog.unnest(redact) AS u(c)
                   ORDER BY u.c);
    SELECT pg_catalog.string_agg(pg_catalog.quote_literal(c), ', ')
      INTO args FROM pg_catalog.unnest(cols) AS u(c);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid OPERATOR(pg_catalog.=) target
                  AND t.tgname OPERATOR(pg_catalog.=) 'pgmarket_audit') THEN
        EXECUTE pg_catalog.format('DROP TRIGGER pgmarket_audit ON %s', target);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid OPERATOR(pg_catalog.=) target
                  AND t.tgname OPERATOR(pg_catalog.=) 'pgmarket_audit_truncate') THEN
        EXECUTE pg_catalog.format('DROP TRIGGER pgmarket_audit_truncate ON %s', target);
    END IF;
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER pgmarket_audit AFTER INSERT OR UPDATE OR DELETE ON %s'
        ' FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger(%s)',
        target, COALESCE(args, ''));
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER pgmarket_audit_truncate AFTER TRUNCATE ON %s'
        ' FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger()',
        target);
    PERFORM @extschema@.audit_event(target, 'ENABLE_AUDIT',
        pg_catalog.jsonb_build_object('redact', pg_catalog.to_jsonb(cols)));
END
$$;

CREATE FUNCTION @extschema@.disable_audit(target regclass)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = 'target must not be null';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid OPERATOR(pg_catalog.=) target
                  AND t.tgname IN ('pgmarket_audit', 'pgmarket_audit_truncate')) THEN
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgmarket_audit ON %s', target);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgmarket_audit_truncate ON %s', target);
        PERFORM @extschema@.audit_event(target, 'DISABLE_AUDIT', NULL);
    END IF;
END
$$;

CREATE FUNCTION @extschema@.seal_audit() RETURNS bigint
    AS 'MODULE_PATHNAME', 'pgm_seal_audit'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.verify_audit(strict boolean DEFAULT false)
    RETURNS TABLE (first_bad_id bigint, checked bigint)
    AS 'MODULE_PATHNAME', 'pgm_verify_audit'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.purge_audit(before timestamptz) RETURNS bigint
    AS 'MODULE_PATHNAME', 'pgm_purge_audit'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-------------------------------------------------------------------------------
-- pgmarket's own tables of users, keys and roles are audited from install
-- (the same triggers enable_audit makes; no ENABLE_AUDIT event, so that a
-- restore into a fresh install finds audit_log empty)
-------------------------------------------------------------------------------

CREATE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.accounts
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger('password_hash');
CREATE TRIGGER pgmarket_audit_truncate
    AFTER TRUNCATE ON @extschema@.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.roles
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit_truncate
    AFTER TRUNCATE ON @extschema@.roles
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.provider_keys
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger('ciphertext', 'nonce');
CREATE TRIGGER pgmarket_audit_truncate
    AFTER TRUNCATE ON @extschema@.provider_keys
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.api_keys
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger('hash');
CREATE TRIGGER pgmarket_audit_truncate
    AFTER TRUNCATE ON @extschema@.api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger();

-------------------------------------------------------------------------------
-- Dump support and privileges
-------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('@extschema@.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.audit_seals', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.audit_log_id_seq', '');

REVOKE ALL ON @extschema@.audit_log, @extschema@.audit_seals,
    @extschema@.audit_trail FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.audit_log_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION
    @extschema@.audit_trigger(),
    @extschema@.audit_event(regclass, text, jsonb),
    @extschema@.enable_audit(regclass, text[]),
    @extschema@.disable_audit(regclass),
    @extschema@.seal_audit(),
    @extschema@.verify_audit(boolean),
    @extschema@.purge_audit(timestamptz)
    FROM PUBLIC;

-- Auditors read the trail and verify it; they change nothing.
GRANT SELECT ON @extschema@.audit_log, @extschema@.audit_seals,
    @extschema@.audit_trail
    TO pgmarket_auditor, pgmarket_admin;
GRANT EXECUTE ON FUNCTION @extschema@.verify_audit(boolean)
    TO pgmarket_auditor, pgmarket_admin;

-- Sealing, attaching the trigger and retention are the administrator's.
GRANT EXECUTE ON FUNCTION
    @extschema@.seal_audit(),
    @extschema@.enable_audit(regclass, text[]),
    @extschema@.disable_audit(regclass),
    @extschema@.purge_audit(timestamptz)
    TO pgmarket_admin;
