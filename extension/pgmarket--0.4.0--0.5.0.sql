\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.5.0'" to load this file. \quit

-- pgmarket 0.5.0: money and the audit trail hold against an adversary.
--
-- Sections, one per area, in the order the areas are described in the
-- README.

-------------------------------------------------------------------------------
-- Amounts and batches
-------------------------------------------------------------------------------

-- Every amount and balance is below 9e18 micro-credits, but a sum over many
-- entries is not: charges of one user refunded and charged again, or the
-- charges of one model across users, can pass int64.  verify_ledger and the
-- cost of the usage views therefore add up in numeric and never cast a sum
-- back to bigint (0.4.0 did, and then failed with "bigint out of range"
-- instead of reporting).  Same signatures and columns as before.
CREATE OR REPLACE FUNCTION @extschema@.verify_ledger()
    RETURNS TABLE (user_id uuid, problem text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH sums AS (
        SELECT l.user_id,
               COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'deposit'), 0) AS deposits,
               COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'charge'), 0) AS charges,
               COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'refund'), 0) AS refunds
          FROM @extschema@.ledger l
         GROUP BY l.user_id
    ), holds AS (
        SELECT r.user_id, sum(r.amount) AS held
          FROM @extschema@.reservations r
         WHERE r.state = 'held'
         GROUP BY r.user_id
    ), over_refunded AS (
        SELECT c.user_id, c.entry_id
          FROM @extschema@.ledger c
          JOIN @extschema@.ledger r
            ON r.user_id = c.user_id AND r.refund_of = c.entry_id
         WHERE r.kind = 'refund'
         GROUP BY c.user_id, c.entry_id, c.amount, c.kind
        HAVING c.kind <> 'charge' OR sum(r.amount) > c.amount
    )
    SELECT b.user_id,
           pg_catalog.format('total %s differs from the sum of deposits %s',
                             @extschema@.credits(b.total),
                             COALESCE(s.deposits, 0) * 0.000001)
      FROM @extschema@.balances b LEFT JOIN sums s USING (user_id)
     WHERE b.total <> COALESCE(s.deposits, 0)
    UNION ALL
    SELECT b.user_id,
           pg_catalog.format('spent %s differs from charges minus refunds %s',
                             @extschema@.credits(b.spent),
                             COALESCE(s.charges - s.refunds, 0) * 0.000001)
      FROM @extschema@.balances b LEFT JOIN sums s USING (user_id)
     WHERE b.spent <> COALESCE(s.charges - s.refunds, 0)
    UNION ALL
    SELECT b.user_id,
           pg_catalog.format('reserved %s differs from the sum of held reservations %s',
                             @extschema@.credits(b.reserved),
                             COALESCE(h.held, 0) * 0.000001)
      FROM @extschema@.balances b LEFT JOIN holds h USING (user_id)
     WHERE b.reserved <> COALESCE(h.held, 0)
    UNION ALL
    SELECT b.user_id, 'available balance is negative'
      FROM @extschema@.balances b
     WHERE b.total - b.spent - b.reserved < 0
    UNION ALL
    SELECT s.user_id, 'ledger entries for a user without a balance row'
      FROM sums s
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@.balances b
                        WHERE b.user_id = s.user_id)
    UNION ALL
    SELECT o.user_id,
           pg_catalog.format('entry %s is refunded beyond its charge or is not a charge',
                             o.entry_id)
      FROM over_refunded o
    UNION ALL
    SELECT l.user_id,
           pg_catalog.format('entry %s has a bad kind, amount, available balance or token count',
                             l.entry_id)
      FROM @extschema@.ledger l
     WHERE l.kind NOT IN ('deposit', 'charge', 'refund') OR l.amount <= 0
        OR l.available < 0 OR l.tokens_used < 0;
END;

-- tokens is a numeric sum too: a bigint one let two charges near 2^63
-- tokens make the views raise 22003 for every reader, for good (the ledger
-- is append-only).  A column's type changes, so the views are made anew,
-- with their options and grants.
DROP VIEW @extschema@.model_usage;
DROP VIEW @extschema@.usage_daily;
CREATE VIEW @extschema@.model_usage
    WITH (security_invoker = true, security_barrier = true) AS
    SELECT l.model_id,
           pg_catalog.count(*) FILTER (WHERE l.kind = 'charge') AS requests,
           COALESCE(sum(l.tokens_used) FILTER (WHERE l.kind = 'charge'), 0) AS tokens,
           COALESCE(sum(CASE l.kind WHEN 'charge' THEN l.amount
                                    ELSE -l.amount END), 0) * 0.000001 AS cost
      FROM @extschema@.ledger l
     WHERE l.kind IN ('charge', 'refund') AND l.model_id IS NOT NULL
     GROUP BY l.model_id;

CREATE VIEW @extschema@.usage_daily
    WITH (security_invoker = true, security_barrier = true) AS
    SELECT l.user_id,
           (l.created_at AT TIME ZONE 'UTC')::date AS day,
           l.model_id,
           pg_catalog.count(*) FILTER (WHERE l.kind = 'charge') AS requests,
           COALESCE(sum(l.tokens_used) FILTER (WHERE l.kind = 'charge'), 0) AS tokens,
           COALESCE(sum(CASE l.kind WHEN 'charge' THEN l.amount
                                    ELSE -l.amount END), 0) * 0.000001 AS cost
      FROM @extschema@.ledger l
     WHERE l.kind IN ('charge', 'refund') AND l.model_id IS NOT NULL
     GROUP BY 1, 2, 3;
REVOKE ALL ON @extschema@.model_usage, @extschema@.usage_daily FROM PUBLIC;
GRANT SELECT ON @extschema@.model_usage, @extschema@.usage_daily
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin;


-------------------------------------------------------------------------------
-- Accounts: passwords, hashes and emails
-------------------------------------------------------------------------------

-- Emails are stored and compared in Unicode NFC from 0.5.0 on (accounts.c):
-- bring the stored ones to that form, so that a login or an import spelling
-- them either way still finds them.  Only a UTF8 database can hold non-ASCII
-- emails.  Two accounts whose emails differ only in normalisation stop this
-- update on the unique index, which names the address: rename one of them
-- and update again.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.=) 'UTF8' THEN
        UPDATE @extschema@.accounts
           SET email = pg_catalog.normalize(email, 'NFC')
         WHERE NOT pg_catalog.is_normalized(email, 'NFC');
    END IF;
END $$;


-------------------------------------------------------------------------------
-- Secrets kept out of the server log, and health
-------------------------------------------------------------------------------

-- The sealed forms of the calls that take a password or a platform key: the
-- secret travels sealed to vault_public_key() with the time it was sealed
-- (extension/sealed.c), so that a server log that keeps bind parameters
-- holds a blob that opens nowhere but in this vault, for 60 seconds.  A
-- platform key keeps its public part (key_prefix) in the clear, for routing.

CREATE FUNCTION @extschema@.create_user_sealed(email text, username text,
        sealed_password bytea DEFAULT NULL, roles text[] DEFAULT '{user}',
        id uuid DEFAULT pg_catalog.gen_random_uuid())
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_create_user_sealed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.authenticate_sealed(login text,
        sealed_password bytea)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_authenticate_sealed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.hash_password_sealed(sealed_password bytea)
    RETURNS text
    AS 'MODULE_PATHNAME', 'pgm_hash_password_sealed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.verify_password_sealed(sealed_password bytea,
        hash text)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'pgm_verify_password_sealed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.verify_api_key_sealed(key_prefix text,
        sealed_key bytea)
    RETURNS TABLE (key_id uuid, user_id uuid, scopes text[],
                   rate_limit_tier text)
    AS 'MODULE_PATHNAME', 'pgm_verify_api_key_sealed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.charge_api_key_sealed(key_prefix text,
        sealed_key bytea, amount numeric, model_id text,
        tokens_used bigint DEFAULT 0, idempotency_key text DEFAULT NULL)
    RETURNS @extschema@.ledger_result
    AS 'MODULE_PATHNAME', 'pgm_charge_api_key_sealed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.reserve_api_key_sealed(key_prefix text,
        sealed_key bytea, amount numeric, ttl interval DEFAULT '15 minutes',
        idempotency_key text DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'pgm_reserve_api_key_sealed'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- The routing partition of a platform key from its public part alone (the
-- first 24 characters, key_prefix of the sealed calls) as well as from the
-- whole key.
CREATE OR REPLACE FUNCTION @extschema@.api_key_partition(api_key text)
    RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN api_key OPERATOR(pg_catalog.~)
                     '^sk_(live|test)_[0-9a-f]{16}(_[A-Za-z0-9_-]{43})?$'
                THEN pg_catalog.int4(pg_catalog.textcat('x',
                         pg_catalog.substr(api_key, 9, 4))::bit(16))
           END;

-- One cheap call for a load balancer or an operator (extension/health.c).
CREATE FUNCTION @extschema@.health() RETURNS jsonb
    AS 'MODULE_PATHNAME', 'pgm_health'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION
    @extschema@.create_user_sealed(text, text, bytea, text[], uuid),
    @extschema@.authenticate_sealed(text, bytea),
    @extschema@.hash_password_sealed(bytea),
    @extschema@.verify_password_sealed(bytea, text),
    @extschema@.verify_api_key_sealed(text, bytea),
    @extschema@.charge_api_key_sealed(text, bytea, numeric, text, bigint, text),
    @extschema@.reserve_api_key_sealed(text, bytea, numeric, interval, text),
    @extschema@.health()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.create_user_sealed(text, text, bytea, text[], uuid),
    @extschema@.authenticate_sealed(text, bytea),
    @extschema@.hash_password_sealed(bytea),
    @extschema@.verify_password_sealed(bytea, text),
    @extschema@.verify_api_key_sealed(text, bytea),
    @extschema@.charge_api_key_sealed(text, bytea, numeric, text, bigint, text),
    @extschema@.reserve_api_key_sealed(text, bytea, numeric, interval, text)
    TO pgmarket_app, pgmarket_admin;
GRANT EXECUTE ON FUNCTION @extschema@.health()
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin;


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
        RAISE EXCEPTION USING ERRCODE = '22023',
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
    PERFORM pg_catalog.set_config('pgmarket.audit_internal', 'on', true);
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
    PERFORM pg_catalog.set_config('pgmarket.audit_internal', 'off', true);
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
        PERFORM pg_catalog.set_config('pgmarket.audit_internal', 'on', true);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgmarket_audit ON %s', target);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgmarket_audit_truncate ON %s', target);
        PERFORM pg_catalog.set_config('pgmarket.audit_internal', 'off', true);
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



-- DDL on an audited table is on the record.  Its owner may detach the trail
-- with disable_audit (recorded as DISABLE_AUDIT); the same done by DDL
-- (ALTER TABLE ... DISABLE TRIGGER, DROP TRIGGER, ALTER TRIGGER ... RENAME)
-- or a change of rows by DDL (ALTER COLUMN ... TYPE ... USING, DETACH
-- PARTITION) is recorded as a DDL event with its command and object (never
-- the query text, which may hold other statements and their secrets).  Two
-- things are refused instead: a trigger named like the audit triggers that
-- does not run audit_trigger() (CREATE OR REPLACE TRIGGER would otherwise
-- swap the trail for a function that records nothing), and a DDL that leaves
-- a redacted column name pointing at no column (a rename would otherwise put
-- that column's values into the trail).  pgmarket's own tables (owned by the
-- superuser) and the trigger changes that enable_audit and disable_audit
-- make themselves are left out.
CREATE FUNCTION @extschema@.audit_internal_active() RETURNS boolean
    AS 'MODULE_PATHNAME', 'pgm_audit_internal_active'
    LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.audit_internal_active() FROM PUBLIC;

CREATE FUNCTION @extschema@.audit_ddl() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel  oid;
    tag  text;
    obj  text;
    bad  text;
BEGIN
    -- the C flag, not the setting's text: before the library is loaded in
    -- a session, pgmarket.audit_internal would be a placeholder anyone sets
    IF @extschema@.audit_internal_active() THEN
        RETURN;
    END IF;
    IF TG_EVENT OPERATOR(pg_catalog.=) 'sql_drop' THEN
        -- a dropped audit trigger of a table that is still there and still
        -- has (or had, under that name) the trail
        FOR rel, obj IN
            SELECT c.oid, d.object_identity
              FROM pg_catalog.pg_event_trigger_dropped_objects() d
              JOIN pg_catalog.pg_namespace n
                ON n.nspname OPERATOR(pg_catalog.=) d.address_names[1]
              JOIN pg_catalog.pg_class c
                ON c.relnamespace OPERATOR(pg_catalog.=) n.oid
               AND c.relname OPERATOR(pg_catalog.=) d.address_names[2]
             WHERE d.object_type OPERATOR(pg_catalog.=) 'trigger'
               AND d.address_names[3] IN ('pgmarket_audit', 'pgmarket_audit_truncate')
               AND n.nspname OPERATOR(pg_catalog.<>) '@extschema@'
        LOOP
            PERFORM @extschema@.audit_event(rel::regclass, 'DDL',
                pg_catalog.jsonb_build_object('command', 'DROP TRIGGER', 'object', obj));
        END LOOP;
        RETURN;
    END IF;
    -- no trigger of that name but the audit trigger itself
    SELECT pg_catalog.format('%s on %s', t.tgname, t.tgrelid::regclass) INTO bad
      FROM pg_catalog.pg_event_trigger_ddl_commands() c
      JOIN pg_catalog.pg_trigger t ON t.oid OPERATOR(pg_catalog.=) c.objid
     WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass
       AND t.tgname IN ('pgmarket_audit', 'pgmarket_audit_truncate')
       AND t.tgfoid OPERATOR(pg_catalog.<>) '@extschema@.audit_trigger()'::pg_catalog.regprocedure
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('trigger %s must run the audit trigger', bad),
            HINT = 'Change the audit triggers with enable_audit and disable_audit.';
    END IF;
    FOR rel, tag, obj IN
        SELECT DISTINCT CASE WHEN c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass
                             THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t
                                    WHERE t.oid OPERATOR(pg_catalog.=) c.objid)
                             ELSE c.objid END,
               c.command_tag, c.object_identity
          FROM pg_catalog.pg_event_trigger_ddl_commands() c
         WHERE c.command_tag IN ('ALTER TABLE', 'ALTER TRIGGER', 'CREATE TRIGGER')
           AND c.classid IN ('pg_catalog.pg_class'::pg_catalog.regclass,
                             'pg_catalog.pg_trigger'::pg_catalog.regclass)
    LOOP
        CONTINUE WHEN rel IS NULL
            OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                            WHERE t.tgrelid OPERATOR(pg_catalog.=) rel
                              AND t.tgfoid OPERATOR(pg_catalog.=)
                                  '@extschema@.audit_trigger()'::pg_catalog.regprocedure)
            OR EXISTS (SELECT 1 FROM pg_catalog.pg_class k
                        WHERE k.oid OPERATOR(pg_catalog.=) rel
                          AND k.relnamespace OPERATOR(pg_catalog.=)
                              '@extschema@'::pg_catalog.regnamespace);
        -- every redacted column still names a column
        SELECT a.col INTO bad
          FROM pg_catalog.pg_trigger t,
               LATERAL pg_catalog.unnest(pg_catalog.string_to_array(
                   pg_catalog.encode(t.tgargs, 'escape'), '\000')) AS a(col)
         WHERE t.tgrelid OPERATOR(pg_catalog.=) rel
           AND t.tgname OPERATOR(pg_catalog.=) 'pgmarket_audit'
           AND a.col OPERATOR(pg_catalog.<>) ''
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute x
                            WHERE x.attrelid OPERATOR(pg_catalog.=) rel
                              AND x.attname OPERATOR(pg_catalog.=) a.col
                              AND x.attnum OPERATOR(pg_catalog.>) 0
                              AND NOT x.attisdropped)
         LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = pg_catalog.format('column "%s" of %s is redacted in the audit trail',
                                            bad, rel::regclass),
                HINT = 'Call disable_audit, change the column, then enable_audit with the new redactions.';
        END IF;
        CONTINUE WHEN tag OPERATOR(pg_catalog.=) 'CREATE TRIGGER';
        PERFORM @extschema@.audit_event(rel::regclass, 'DDL',
            pg_catalog.jsonb_build_object('command', tag, 'object', obj,
                'audit_triggers',
                (SELECT pg_catalog.jsonb_object_agg(t.tgname,
                            CASE WHEN t.tgenabled IN ('O', 'A') THEN 'enabled'
                                 ELSE 'disabled' END)
                   FROM pg_catalog.pg_trigger t
                  WHERE t.tgrelid OPERATOR(pg_catalog.=) rel
                    AND t.tgfoid OPERATOR(pg_catalog.=)
                        '@extschema@.audit_trigger()'::pg_catalog.regprocedure)));
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION @extschema@.audit_ddl() FROM PUBLIC;
CREATE EVENT TRIGGER pgmarket_audit_ddl ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'CREATE TRIGGER')
    EXECUTE FUNCTION @extschema@.audit_ddl();
CREATE EVENT TRIGGER pgmarket_audit_drop ON sql_drop
    WHEN TAG IN ('DROP TRIGGER', 'ALTER TABLE')
    EXECUTE FUNCTION @extschema@.audit_ddl();

-- Retention is a superuser's act: purge_audit deletes audit rows, and a role
-- that may delete the trail may also have made the changes it records.
REVOKE EXECUTE ON FUNCTION @extschema@.purge_audit(timestamptz) FROM pgmarket_admin;

-------------------------------------------------------------------------------
-- Scaling out: the actor forwarded by the proxy
-------------------------------------------------------------------------------

-- The node's side of pgmarket.actor forwarded by the PL/Proxy front
-- (proxy/): the remote query wraps the first argument of the API call in
-- proxy_actor(actor, value), which sets the actor for the node's transaction
-- and returns value, so that the call runs under it.  Only the role named
-- by pgmarket.proxy_role (or a member) may forward a non-empty actor (42501
-- otherwise).  Neither SECURITY DEFINER nor SET: the role checked is the
-- caller's, and a SET clause would undo the setting on return.
CREATE FUNCTION @extschema@.proxy_actor(actor text, value anyelement)
    RETURNS anyelement
    AS 'MODULE_PATHNAME', 'pgm_proxy_actor'
    LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.proxy_actor(text, anyelement) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.proxy_actor(text, anyelement)
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin, pgmarket_keyreader;


-------------------------------------------------------------------------------
-- Projects, templates and change requests: the agent platform's store
--
-- Plain storage, so PL/pgSQL; the rules that every user-scoped call shares
-- (user_id required, the actor rule, an active account) stay in C behind
-- user_scope(), which only these functions' owner may call.  A project
-- belongs to one user; a change request (modification) belongs to the
-- project's owner too, so that both route by user_id behind the proxy.
-- Templates are a shared catalogue, written by pgmarket_admin.
-------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.user_scope(user_id uuid) RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_user_scope'
    LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.user_scope(uuid) FROM PUBLIC;

CREATE TABLE @extschema@.projects (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES @extschema@.accounts (id),
    name             text NOT NULL,
    type             text NOT NULL,
    status           text NOT NULL DEFAULT 'active',
    codebase         jsonb NOT NULL DEFAULT '{}',
    dependencies     text[] NOT NULL DEFAULT '{}',
    environment      jsonb NOT NULL DEFAULT '{}',
    deployment       jsonb NOT NULL DEFAULT '{}',
    test_coverage    numeric,
    scores           jsonb NOT NULL DEFAULT '{}',
    -- the clock, not the transaction's start: list_projects pages by it,
    -- and projects saved in one transaction must not share one instant
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_deployed_at timestamptz,
    CONSTRAINT projects_status CHECK (status IN ('active', 'archived')),
    CONSTRAINT projects_coverage CHECK (test_coverage BETWEEN 0 AND 100)
);
CREATE INDEX projects_user ON @extschema@.projects (user_id, created_at, id);

CREATE TABLE @extschema@.templates (
    id             uuid PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    description    text,
    category       text NOT NULL,
    files          jsonb NOT NULL,
    required_vars  text[] NOT NULL DEFAULT '{}',
    optional_vars  jsonb NOT NULL DEFAULT '{}',
    tech_stack     text[] NOT NULL DEFAULT '{}',
    setup_minutes  int,
    complexity     text,
    tags           text[] NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT templates_setup CHECK (setup_minutes >= 0)
);
CREATE INDEX templates_category ON @extschema@.templates (category, name);

-- status moves forward only: requested -> approved -> applied or failed;
-- requested or approved -> rejected.  applied_at is set with applied.
CREATE TABLE @extschema@.modifications (
    id              uuid PRIMARY KEY,
    project_id      uuid NOT NULL REFERENCES @extschema@.projects (id),
    user_id         uuid NOT NULL REFERENCES @extschema@.accounts (id),
    request         text NOT NULL,
    requested_by    text NOT NULL,
    impact          jsonb NOT NULL DEFAULT '{}',
    affected_files  text[] NOT NULL DEFAULT '{}',
    modified_files  text[] NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'requested',
    results         jsonb,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    applied_at      timestamptz,
    CONSTRAINT modifications_status
        CHECK (status IN ('requested', 'approved', 'applied', 'rejected', 'failed')),
    CONSTRAINT modifications_applied
        CHECK ((status = 'applied') = (applied_at IS NOT NULL))
);
CREATE INDEX modifications_project
    ON @extschema@.modifications (project_id, created_at, id);
CREATE INDEX modifications_user ON @extschema@.modifications (user_id);

-- The checks that the store's functions share.  Each raises with the
-- SQLSTATE of the contract: 22004 for a NULL, 22023 for a bad value.
CREATE FUNCTION @extschema@.store_check_text(argname text, value text,
                                             maxlen int)
    RETURNS void LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be null', argname USING ERRCODE = '22004';
    END IF;
    IF pg_catalog.length(value) OPERATOR(pg_catalog.=) 0
       OR pg_catalog.length(value) OPERATOR(pg_catalog.>) maxlen
       OR value OPERATOR(pg_catalog.~) '[\x01-\x1f\x7f]' THEN
        RAISE EXCEPTION 'invalid % "%": must be 1 to % characters without control characters',
            argname,
            pg_catalog.regexp_replace(pg_catalog.left(value, 40), '[\x01-\x1f\x7f]', '?', 'g')
            || CASE WHEN pg_catalog.length(value) OPERATOR(pg_catalog.>) 40 THEN '...' ELSE '' END,
            maxlen USING ERRCODE = '22023';
    END IF;
END $$;

CREATE FUNCTION @extschema@.store_check_list(argname text, value text[],
                                             maxlen int)
    RETURNS void LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v text;
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be null', argname USING ERRCODE = '22004';
    END IF;
    IF pg_catalog.array_ndims(value) OPERATOR(pg_catalog.>) 1
       OR pg_catalog.array_lower(value, 1) OPERATOR(pg_catalog.<>) 1 THEN
        RAISE EXCEPTION 'invalid %: must be a one-dimensional array counted from 1', argname
            USING ERRCODE = '22023';
    END IF;
    IF pg_catalog.cardinality(value) OPERATOR(pg_catalog.>) 10000 THEN
        RAISE EXCEPTION 'invalid %: more than 10000 elements', argname
            USING ERRCODE = '22023';
    END IF;
    FOREACH v IN ARRAY value LOOP
        IF v IS NULL THEN
            RAISE EXCEPTION 'invalid %: an element is null', argname
                USING ERRCODE = '22004';
        END IF;
        PERFORM @extschema@.store_check_text(argname || ' element', v, maxlen);
    END LOOP;
END $$;

CREATE FUNCTION @extschema@.store_check_json(argname text, value jsonb,
                                             kinds text[] DEFAULT '{object}')
    RETURNS void LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be null', argname USING ERRCODE = '22004';
    END IF;
    IF NOT pg_catalog.jsonb_typeof(value) OPERATOR(pg_catalog.=) ANY (kinds) THEN
        RAISE EXCEPTION 'invalid %: a JSON % is not allowed here (%)', argname,
            pg_catalog.jsonb_typeof(value), pg_catalog.array_to_string(kinds, ' or ')
            USING ERRCODE = '22023';
    END IF;
    IF pg_catalog.octet_length(value::text) OPERATOR(pg_catalog.>) 16777216 THEN
        RAISE EXCEPTION 'invalid %: larger than 16 MB', argname USING ERRCODE = '22023';
    END IF;
END $$;

-- The user's project, locked for a change when lock: PM002 when it is
-- unknown or another user's (as for a chat session).
CREATE FUNCTION @extschema@.store_project(user_id uuid, project_id uuid,
                                          lock boolean)
    RETURNS @extschema@.projects LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.projects;
BEGIN
    IF project_id IS NULL THEN
        RAISE EXCEPTION 'project_id must not be null' USING ERRCODE = '22004';
    END IF;
    IF lock THEN
        SELECT * INTO p FROM @extschema@.projects AS x
         WHERE x.id OPERATOR(pg_catalog.=) project_id
           AND x.user_id OPERATOR(pg_catalog.=) store_project.user_id FOR UPDATE;
    ELSE
        SELECT * INTO p FROM @extschema@.projects AS x
         WHERE x.id OPERATOR(pg_catalog.=) project_id
           AND x.user_id OPERATOR(pg_catalog.=) store_project.user_id;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'project % not found for user %', project_id, user_id
            USING ERRCODE = 'PM002';
    END IF;
    RETURN p;
END $$;

REVOKE ALL ON FUNCTION
    @extschema@.store_check_text(text, text, int),
    @extschema@.store_check_list(text, text[], int),
    @extschema@.store_check_json(text, jsonb, text[]),
    @extschema@.store_project(uuid, uuid, boolean)
    FROM PUBLIC;

-- Insert a project, or update the user's project of that id.  Another
-- user's id: 42501, decided in the same statement as the write, so two
-- callers racing for one new id cannot both win.
CREATE FUNCTION @extschema@.save_project(user_id uuid, name text, type text,
        codebase jsonb DEFAULT '{}', dependencies text[] DEFAULT '{}',
        environment jsonb DEFAULT '{}', deployment jsonb DEFAULT '{}',
        id uuid DEFAULT NULL, test_coverage numeric DEFAULT NULL,
        scores jsonb DEFAULT NULL, last_deployed_at timestamptz DEFAULT NULL)
    RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    pid uuid := coalesce(save_project.id, pg_catalog.gen_random_uuid());
    got uuid;
BEGIN
    PERFORM @extschema@.store_check_text('name', name, 200);
    PERFORM @extschema@.store_check_text('type', type, 64);
    PERFORM @extschema@.store_check_json('codebase', codebase);
    PERFORM @extschema@.store_check_list('dependencies', dependencies, 200);
    PERFORM @extschema@.store_check_json('environment', environment);
    PERFORM @extschema@.store_check_json('deployment', deployment);
    IF scores IS NOT NULL THEN
        PERFORM @extschema@.store_check_json('scores', scores);
    END IF;
    IF test_coverage IS NOT NULL AND NOT (test_coverage BETWEEN 0 AND 100) THEN
        RAISE EXCEPTION 'invalid test_coverage %: must be a percentage from 0 to 100',
            test_coverage USING ERRCODE = '22023';
    END IF;
    PERFORM @extschema@.user_scope(user_id);
    INSERT INTO @extschema@.projects AS p
           (id, user_id, name, type, codebase, dependencies, environment,
            deployment, test_coverage, scores, last_deployed_at)
    VALUES (pid, user_id, name, type, codebase, dependencies, environment,
            deployment, test_coverage, coalesce(scores, '{}'), last_deployed_at)
    ON CONFLICT ON CONSTRAINT projects_pkey DO UPDATE
       SET name = excluded.name, type = excluded.type,
           codebase = excluded.codebase, dependencies = excluded.dependencies,
           environment = excluded.environment, deployment = excluded.deployment,
           test_coverage = coalesce(excluded.test_coverage, p.test_coverage),
           scores = CASE WHEN save_project.scores IS NULL THEN p.scores
                         ELSE excluded.scores END,
           last_deployed_at = coalesce(excluded.last_deployed_at, p.last_deployed_at),
           updated_at = pg_catalog.now()
     WHERE p.user_id OPERATOR(pg_catalog.=) excluded.user_id
    RETURNING p.id INTO got;
    IF got IS NULL THEN
        RAISE EXCEPTION 'project % belongs to another user', pid
            USING ERRCODE = '42501';
    END IF;
    RETURN got;
END $$;

CREATE FUNCTION @extschema@.get_project(user_id uuid, project_id uuid)
    RETURNS @extschema@.projects LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF project_id IS NULL THEN
        RAISE EXCEPTION 'project_id must not be null' USING ERRCODE = '22004';
    END IF;
    PERFORM @extschema@.user_scope(user_id);
    RETURN @extschema@.store_project(user_id, project_id, false);
END $$;

-- Newest first (created_at, then id), keyset-paged by created_at; status
-- NULL lists every status.
CREATE FUNCTION @extschema@.list_projects(user_id uuid,
        status text DEFAULT 'active', max_rows int DEFAULT 50,
        before timestamptz DEFAULT NULL)
    RETURNS SETOF @extschema@.projects LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF status IS NOT NULL AND status NOT IN ('active', 'archived') THEN
        RAISE EXCEPTION 'invalid status "%": must be active or archived', status
            USING ERRCODE = '22023';
    END IF;
    IF max_rows IS NULL THEN
        RAISE EXCEPTION 'max_rows must not be null' USING ERRCODE = '22004';
    END IF;
    IF max_rows NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'invalid max_rows %: must be from 1 to 1000', max_rows
            USING ERRCODE = '22023';
    END IF;
    PERFORM @extschema@.user_scope(user_id);
    RETURN QUERY
        SELECT * FROM @extschema@.projects AS p
         WHERE p.user_id OPERATOR(pg_catalog.=) list_projects.user_id
           AND (list_projects.status IS NULL
                OR p.status OPERATOR(pg_catalog.=) list_projects.status)
           AND (before IS NULL OR p.created_at OPERATOR(pg_catalog.<) before)
         ORDER BY p.created_at DESC, p.id DESC
         LIMIT max_rows;
END $$;

-- An archived project keeps its rows and takes no new change request;
-- archiving it again is 55000, as ending a chat session twice is.
CREATE FUNCTION @extschema@.archive_project(user_id uuid, project_id uuid)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p @extschema@.projects;
BEGIN
    IF project_id IS NULL THEN
        RAISE EXCEPTION 'project_id must not be null' USING ERRCODE = '22004';
    END IF;
    PERFORM @extschema@.user_scope(user_id);
    p := @extschema@.store_project(user_id, project_id, true);
    IF p.status OPERATOR(pg_catalog.=) 'archived' THEN
        RAISE EXCEPTION 'project % is already archived', project_id
            USING ERRCODE = '55000';
    END IF;
    UPDATE @extschema@.projects AS x
       SET status = 'archived', updated_at = pg_catalog.now()
     WHERE x.id OPERATOR(pg_catalog.=) project_id;
END $$;

-- Insert or replace a template by name (pgmarket_admin).
CREATE FUNCTION @extschema@.save_template(name text, category text,
        files jsonb, description text DEFAULT NULL,
        required_vars text[] DEFAULT '{}', tags text[] DEFAULT '{}',
        optional_vars jsonb DEFAULT '{}', tech_stack text[] DEFAULT '{}',
        setup_minutes int DEFAULT NULL, complexity text DEFAULT NULL)
    RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    got uuid;
BEGIN
    PERFORM @extschema@.store_check_text('name', name, 200);
    PERFORM @extschema@.store_check_text('category', category, 64);
    PERFORM @extschema@.store_check_json('files', files, '{object,array}');
    IF description IS NOT NULL AND pg_catalog.length(description) OPERATOR(pg_catalog.>) 100000 THEN
        RAISE EXCEPTION 'invalid description: longer than 100000 characters'
            USING ERRCODE = '22023';
    END IF;
    PERFORM @extschema@.store_check_list('required_vars', required_vars, 200);
    PERFORM @extschema@.store_check_list('tags', tags, 64);
    PERFORM @extschema@.store_check_json('optional_vars', optional_vars);
    PERFORM @extschema@.store_check_list('tech_stack', tech_stack, 64);
    IF setup_minutes < 0 THEN
        RAISE EXCEPTION 'invalid setup_minutes %: must not be negative', setup_minutes
            USING ERRCODE = '22023';
    END IF;
    IF complexity IS NOT NULL THEN
        PERFORM @extschema@.store_check_text('complexity', complexity, 32);
    END IF;
    INSERT INTO @extschema@.templates AS t
           (id, name, description, category, files, required_vars,
            optional_vars, tech_stack, setup_minutes, complexity, tags)
    VALUES (pg_catalog.gen_random_uuid(), name, description, category, files,
            required_vars, optional_vars, tech_stack, setup_minutes,
            complexity, tags)
    ON CONFLICT ON CONSTRAINT templates_name_key DO UPDATE
       SET description = excluded.description, category = excluded.category,
           files = excluded.files, required_vars = excluded.required_vars,
           optional_vars = excluded.optional_vars,
           tech_stack = excluded.tech_stack,
           setup_minutes = excluded.setup_minutes,
           complexity = excluded.complexity, tags = excluded.tags,
           updated_at = pg_catalog.now()
    RETURNING t.id INTO got;
    RETURN got;
END $$;

CREATE FUNCTION @extschema@.get_template(name text)
    RETURNS @extschema@.templates LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t @extschema@.templates;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'name must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO t FROM @extschema@.templates AS x
     WHERE x.name OPERATOR(pg_catalog.=) get_template.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'template "%" not found', name USING ERRCODE = 'PM002';
    END IF;
    RETURN t;
END $$;

-- By name; category NULL lists every category.
CREATE FUNCTION @extschema@.list_templates(category text DEFAULT NULL)
    RETURNS SETOF @extschema@.templates LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM @extschema@.templates AS t
     WHERE list_templates.category IS NULL
        OR t.category OPERATOR(pg_catalog.=) list_templates.category
     ORDER BY t.name;
$$;

-- A change request against one of the user's active projects.
-- requested_by: who asked (NULL: the actor, else the user).
CREATE FUNCTION @extschema@.request_modification(user_id uuid,
        project_id uuid, request text, impact jsonb DEFAULT '{}',
        affected_files text[] DEFAULT '{}', requested_by text DEFAULT NULL)
    RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p   @extschema@.projects;
    mid uuid := pg_catalog.gen_random_uuid();
BEGIN
    IF project_id IS NULL THEN
        RAISE EXCEPTION 'project_id must not be null' USING ERRCODE = '22004';
    END IF;
    IF request IS NULL THEN
        RAISE EXCEPTION 'request must not be null' USING ERRCODE = '22004';
    END IF;
    IF pg_catalog.length(request) NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'invalid request: must be 1 to 1000000 characters'
            USING ERRCODE = '22023';
    END IF;
    PERFORM @extschema@.store_check_json('impact', impact);
    PERFORM @extschema@.store_check_list('affected_files', affected_files, 1024);
    IF requested_by IS NOT NULL THEN
        PERFORM @extschema@.store_check_text('requested_by', requested_by, 200);
    END IF;
    PERFORM @extschema@.user_scope(user_id);
    -- the project row is locked (KEY SHARE by the foreign key would do, but
    -- an archive racing with the request must wait or be seen)
    p := @extschema@.store_project(user_id, project_id, true);
    IF p.status OPERATOR(pg_catalog.<>) 'active' THEN
        RAISE EXCEPTION 'project % is %', project_id, p.status
            USING ERRCODE = '55000';
    END IF;
    INSERT INTO @extschema@.modifications
           (id, project_id, user_id, request, requested_by, impact, affected_files)
    VALUES (mid, project_id, user_id, request,
            coalesce(requested_by,
                     NULLIF(pg_catalog.current_setting('pgmarket.actor', true), ''),
                     user_id::text),
            impact, affected_files);
    RETURN mid;
END $$;

-- Forward only.  The new status is written only if the row still holds a
-- status it may follow, so of two concurrent changes the one that lost the
-- race sees the winner's status and gets 22023 when it may not follow it.
CREATE FUNCTION @extschema@.set_modification_status(user_id uuid,
        modification_id uuid, status text, results jsonb DEFAULT NULL,
        modified_files text[] DEFAULT NULL)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    allowed text[];
    cur     text;
BEGIN
    IF modification_id IS NULL THEN
        RAISE EXCEPTION 'modification_id must not be null' USING ERRCODE = '22004';
    END IF;
    IF status IS NULL THEN
        RAISE EXCEPTION 'status must not be null' USING ERRCODE = '22004';
    END IF;
    allowed := CASE status
        WHEN 'approved' THEN '{requested}'
        WHEN 'rejected' THEN '{requested,approved}'
        WHEN 'applied' THEN '{approved}'
        WHEN 'failed' THEN '{approved}'
        END;
    IF allowed IS NULL THEN
        RAISE EXCEPTION 'invalid status "%": must be approved, rejected, applied or failed',
            status USING ERRCODE = '22023';
    END IF;
    IF results IS NOT NULL THEN
        PERFORM @extschema@.store_check_json('results', results);
    END IF;
    IF modified_files IS NOT NULL THEN
        PERFORM @extschema@.store_check_list('modified_files', modified_files, 1024);
    END IF;
    PERFORM @extschema@.user_scope(user_id);
    UPDATE @extschema@.modifications AS m
       SET status = set_modification_status.status,
           results = coalesce(set_modification_status.results, m.results),
           modified_files = coalesce(set_modification_status.modified_files,
                                     m.modified_files),
           applied_at = CASE WHEN set_modification_status.status OPERATOR(pg_catalog.=) 'applied'
                             THEN pg_catalog.now() END,
           updated_at = pg_catalog.now()
     WHERE m.id OPERATOR(pg_catalog.=) modification_id
       AND m.user_id OPERATOR(pg_catalog.=) set_modification_status.user_id
       AND m.status OPERATOR(pg_catalog.=) ANY (allowed);
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT m.status INTO cur FROM @extschema@.modifications AS m
     WHERE m.id OPERATOR(pg_catalog.=) modification_id
       AND m.user_id OPERATOR(pg_catalog.=) set_modification_status.user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'modification % not found for user %', modification_id, user_id
            USING ERRCODE = 'PM002';
    END IF;
    RAISE EXCEPTION 'modification % is %: it cannot become %', modification_id, cur, status
        USING ERRCODE = '22023';
END $$;

CREATE FUNCTION @extschema@.list_modifications(user_id uuid, project_id uuid)
    RETURNS SETOF @extschema@.modifications LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF project_id IS NULL THEN
        RAISE EXCEPTION 'project_id must not be null' USING ERRCODE = '22004';
    END IF;
    PERFORM @extschema@.user_scope(user_id);
    PERFORM @extschema@.store_project(user_id, project_id, false);
    RETURN QUERY
        SELECT * FROM @extschema@.modifications AS m
         WHERE m.project_id OPERATOR(pg_catalog.=) list_modifications.project_id
         ORDER BY m.created_at DESC, m.id DESC;
END $$;

-- Every change is in the audit trail.
CREATE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.projects
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit_truncate
    AFTER TRUNCATE ON @extschema@.projects
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.templates
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit_truncate
    AFTER TRUNCATE ON @extschema@.templates
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.modifications
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit_truncate
    AFTER TRUNCATE ON @extschema@.modifications
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger();

-- Row-level security, as for the other per-user tables.
ALTER TABLE @extschema@.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.modifications ENABLE ROW LEVEL SECURITY;
CREATE POLICY projects_actor ON @extschema@.projects FOR ALL TO pgmarket_app
    USING (pg_catalog.current_setting('pgmarket.actor', true) IS NULL
        OR pg_catalog.current_setting('pgmarket.actor', true) OPERATOR(pg_catalog.=) ''
        OR user_id OPERATOR(pg_catalog.=) @extschema@.current_actor())
    WITH CHECK (pg_catalog.current_setting('pgmarket.actor', true) IS NULL
        OR pg_catalog.current_setting('pgmarket.actor', true) OPERATOR(pg_catalog.=) ''
        OR user_id OPERATOR(pg_catalog.=) @extschema@.current_actor());
CREATE POLICY projects_staff ON @extschema@.projects FOR SELECT
    TO pgmarket_auditor, pgmarket_admin USING (true);
CREATE POLICY modifications_actor ON @extschema@.modifications FOR ALL TO pgmarket_app
    USING (pg_catalog.current_setting('pgmarket.actor', true) IS NULL
        OR pg_catalog.current_setting('pgmarket.actor', true) OPERATOR(pg_catalog.=) ''
        OR user_id OPERATOR(pg_catalog.=) @extschema@.current_actor())
    WITH CHECK (pg_catalog.current_setting('pgmarket.actor', true) IS NULL
        OR pg_catalog.current_setting('pgmarket.actor', true) OPERATOR(pg_catalog.=) ''
        OR user_id OPERATOR(pg_catalog.=) @extschema@.current_actor());
CREATE POLICY modifications_staff ON @extschema@.modifications FOR SELECT
    TO pgmarket_auditor, pgmarket_admin USING (true);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.projects', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.templates', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.modifications', '');

REVOKE ALL ON @extschema@.projects, @extschema@.templates,
    @extschema@.modifications FROM PUBLIC;
GRANT SELECT ON @extschema@.projects, @extschema@.templates,
    @extschema@.modifications
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin;

REVOKE ALL ON FUNCTION
    @extschema@.save_project(uuid, text, text, jsonb, text[], jsonb, jsonb,
                             uuid, numeric, jsonb, timestamptz),
    @extschema@.get_project(uuid, uuid),
    @extschema@.list_projects(uuid, text, int, timestamptz),
    @extschema@.archive_project(uuid, uuid),
    @extschema@.save_template(text, text, jsonb, text, text[], text[], jsonb,
                              text[], int, text),
    @extschema@.get_template(text),
    @extschema@.list_templates(text),
    @extschema@.request_modification(uuid, uuid, text, jsonb, text[], text),
    @extschema@.set_modification_status(uuid, uuid, text, jsonb, text[]),
    @extschema@.list_modifications(uuid, uuid)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.save_project(uuid, text, text, jsonb, text[], jsonb, jsonb,
                             uuid, numeric, jsonb, timestamptz),
    @extschema@.get_project(uuid, uuid),
    @extschema@.list_projects(uuid, text, int, timestamptz),
    @extschema@.archive_project(uuid, uuid),
    @extschema@.get_template(text),
    @extschema@.list_templates(text),
    @extschema@.request_modification(uuid, uuid, text, jsonb, text[], text),
    @extschema@.set_modification_status(uuid, uuid, text, jsonb, text[]),
    @extschema@.list_modifications(uuid, uuid)
    TO pgmarket_app, pgmarket_admin;
GRANT EXECUTE ON FUNCTION @extschema@.get_template(text),
    @extschema@.list_templates(text) TO pgmarket_auditor;
GRANT EXECUTE ON FUNCTION
    @extschema@.save_template(text, text, jsonb, text, text[], text[], jsonb,
                              text[], int, text)
    TO pgmarket_admin;
