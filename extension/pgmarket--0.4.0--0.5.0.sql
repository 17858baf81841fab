\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.5.0'" to load this file. \quit

-- pgmarket 0.5.0: money and the audit trail hold against an adversary.
--
-- Sections, one per area, in the order the areas are described in the
-- README.

-------------------------------------------------------------------------------
-- Amounts and batches
-------------------------------------------------------------------------------


-------------------------------------------------------------------------------
-- Accounts: passwords, hashes and emails
-------------------------------------------------------------------------------


-------------------------------------------------------------------------------
-- Secrets kept out of the server log, and health
-------------------------------------------------------------------------------


-------------------------------------------------------------------------------
-- Audit trail: who may attach it, what no wrapper can bypass, the anchor
-------------------------------------------------------------------------------

-- Attaching or detaching the audit trigger is for the table's owner (or a
-- superuser), judged on the role at the SQL surface: enable_audit and
-- disable_audit run as their owner, so the check is made in C on the outer
-- role (which no SECURITY DEFINER function changes).  Internal: granted to
-- nobody.
CREATE FUNCTION @extschema@.audit_require_owner(target regclass)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_audit_require_owner'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION @extschema@.enable_audit(target regclass,
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
    PERFORM @extschema@.audit_require_owner(target);
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

CREATE OR REPLACE FUNCTION @extschema@.disable_audit(target regclass)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = 'target must not be null';
    END IF;
    PERFORM @extschema@.audit_require_owner(target);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid OPERATOR(pg_catalog.=) target
                  AND t.tgname IN ('pgmarket_audit', 'pgmarket_audit_truncate')) THEN
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgmarket_audit ON %s', target);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgmarket_audit_truncate ON %s', target);
        PERFORM @extschema@.audit_event(target, 'DISABLE_AUDIT', NULL);
    END IF;
END
$$;

-- A restore of the trail.  Rows reach audit_log through SQL only when it is
-- restored (pg_restore, a plain dump, COPY FROM; the trigger writes with
-- heap inserts): the statement trigger moves audit_log_id_seq past every
-- restored id and sealed range and records the restore of audit_log as one
-- RESTORE event.  The sequence leaves the dump: its dumped value, set after
-- the data, would hand out the event's id a second time.
CREATE FUNCTION @extschema@.audit_restored() RETURNS trigger
    AS 'MODULE_PATHNAME', 'pgm_audit_restored' LANGUAGE C;
CREATE TRIGGER audit_log_restored
    AFTER INSERT ON @extschema@.audit_log
    REFERENCING NEW TABLE AS restored
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_restored();
CREATE TRIGGER audit_seals_restored
    AFTER INSERT ON @extschema@.audit_seals
    REFERENCING NEW TABLE AS restored
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_restored();
ALTER EXTENSION pgmarket DROP SEQUENCE @extschema@.audit_log_id_seq;
ALTER EXTENSION pgmarket ADD SEQUENCE @extschema@.audit_log_id_seq;

-- The head of the chain, the anchor an auditor keeps outside the database:
-- the highest sealed audit_log id, the chain hash of the last seal record and
-- its sealed_at; (0, 32 zero bytes, NULL) before the first seal.  The anchor
-- that verify_audit takes is int8send(last_id) || chain_hash.
CREATE FUNCTION @extschema@.audit_head()
    RETURNS TABLE (last_id bigint, chain_hash bytea, sealed_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE((SELECT pg_catalog.max(s.through_id)
                       FROM @extschema@.audit_seals s
                      WHERE s.kind OPERATOR(pg_catalog.=) 'seal'), 0),
           COALESCE(t.chain_hash,
                    pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex')),
           t.sealed_at
      FROM (SELECT 1) AS one
      LEFT JOIN (SELECT s.chain_hash, s.sealed_at
                   FROM @extschema@.audit_seals s
                  ORDER BY s.seq DESC LIMIT 1) AS t ON true
$$;

-- verify_audit takes the anchor: one signature.
DROP FUNCTION @extschema@.verify_audit(boolean);
CREATE FUNCTION @extschema@.verify_audit(strict boolean DEFAULT false,
        anchor bytea DEFAULT NULL)
    RETURNS TABLE (first_bad_id bigint, checked bigint)
    AS 'MODULE_PATHNAME', 'pgm_verify_audit'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION
    @extschema@.audit_require_owner(regclass),
    @extschema@.audit_restored(),
    @extschema@.audit_head(),
    @extschema@.verify_audit(boolean, bytea)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.audit_head(),
    @extschema@.verify_audit(boolean, bytea)
    TO pgmarket_auditor, pgmarket_admin;



-------------------------------------------------------------------------------
-- Scaling out: the actor forwarded by the proxy
-------------------------------------------------------------------------------

