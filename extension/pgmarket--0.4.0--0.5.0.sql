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

-- CREATE OR REPLACE VIEW resets the options, so they are given again.
CREATE OR REPLACE VIEW @extschema@.model_usage
    WITH (security_invoker = true, security_barrier = true) AS
    SELECT l.model_id,
           pg_catalog.count(*) FILTER (WHERE l.kind = 'charge') AS requests,
           COALESCE(sum(l.tokens_used) FILTER (WHERE l.kind = 'charge'), 0)::bigint AS tokens,
           COALESCE(sum(CASE l.kind WHEN 'charge' THEN l.amount
                                    ELSE -l.amount END), 0) * 0.000001 AS cost
      FROM @extschema@.ledger l
     WHERE l.kind IN ('charge', 'refund') AND l.model_id IS NOT NULL
     GROUP BY l.model_id;

CREATE OR REPLACE VIEW @extschema@.usage_daily
    WITH (security_invoker = true, security_barrier = true) AS
    SELECT l.user_id,
           (l.created_at AT TIME ZONE 'UTC')::date AS day,
           l.model_id,
           pg_catalog.count(*) FILTER (WHERE l.kind = 'charge') AS requests,
           COALESCE(sum(l.tokens_used) FILTER (WHERE l.kind = 'charge'), 0)::bigint AS tokens,
           COALESCE(sum(CASE l.kind WHEN 'charge' THEN l.amount
                                    ELSE -l.amount END), 0) * 0.000001 AS cost
      FROM @extschema@.ledger l
     WHERE l.kind IN ('charge', 'refund') AND l.model_id IS NOT NULL
     GROUP BY 1, 2, 3;


-------------------------------------------------------------------------------
-- Accounts: passwords, hashes and emails
-------------------------------------------------------------------------------


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

