\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.8.0'" to load this file. \quit

-- pgmarket 0.8.0: throughput where a marketplace's load concentrates (one
-- hot account, batches of charges, bulk statements on audited tables) and
-- the hot paths of key checks and chat history.
--
-- Each part below stands under a heading of its own, so that the calls of
-- 0.7.0 keep working.

-------------------------------------------------------------------------------
-- One hot account: escrow slots (extension/escrow.c)
-------------------------------------------------------------------------------

-- A hot user's balance is split: part of the available balance is moved
-- into escrow slots, which concurrent charges take from without waiting on
-- one another or on the balance row.  Money moved into a slot is counted
-- in balances.spent (so that total - spent - reserved, what every writer
-- of the balance row checks, stays the row's own part) and in
-- balances.escrowed, an upper bound of what the slots hold (0: nothing,
-- and no call reads them).  So a user's charges minus refunds are
-- spent - sum(slot amounts), and the available balance is
-- total - spent - reserved + sum(slot amounts).  Slot rows are made for a
-- user the first time its charges meet, PGM_ESCROW_SLOTS at once, and
-- never deleted.
ALTER TABLE @extschema@.balances
    ADD COLUMN escrowed bigint NOT NULL DEFAULT 0;

CREATE TABLE @extschema@.balance_slots (
    user_id uuid NOT NULL REFERENCES @extschema@.accounts (id),
    slot    int NOT NULL,
    amount  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, slot),
    CONSTRAINT balance_slots_amount CHECK (amount >= 0 AND slot >= 0)
) WITH (fillfactor = 50);

ALTER TABLE @extschema@.balance_slots ENABLE ROW LEVEL SECURITY;
CREATE POLICY balance_slots_actor ON @extschema@.balance_slots FOR ALL TO pgmarket_app
    USING (pg_catalog.current_setting('pgmarket.actor', true) IS NULL
        OR pg_catalog.current_setting('pgmarket.actor', true) OPERATOR(pg_catalog.=) ''
        OR user_id OPERATOR(pg_catalog.=) @extschema@.current_actor())
    WITH CHECK (pg_catalog.current_setting('pgmarket.actor', true) IS NULL
        OR pg_catalog.current_setting('pgmarket.actor', true) OPERATOR(pg_catalog.=) ''
        OR user_id OPERATOR(pg_catalog.=) @extschema@.current_actor());
CREATE POLICY balance_slots_staff ON @extschema@.balance_slots
    FOR SELECT TO pgmarket_auditor, pgmarket_admin USING (true);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.balance_slots', '');
REVOKE ALL ON @extschema@.balance_slots FROM PUBLIC;
GRANT SELECT ON @extschema@.balance_slots TO pgmarket_auditor, pgmarket_admin;

-- verify_ledger() with the slots: spent less the slots' money is the
-- charges less the refunds; no slot below zero, none of a user without a
-- balance row, and the slots never hold more than escrowed says.
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
    ), slots AS (
        SELECT s.user_id, sum(s.amount) AS money,
               pg_catalog.bool_or(s.amount < 0) AS negative
          FROM @extschema@.balance_slots s
         GROUP BY s.user_id
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
                             (b.spent - COALESCE(e.money, 0)) * 0.000001,
                             COALESCE(s.charges - s.refunds, 0) * 0.000001)
      FROM @extschema@.balances b LEFT JOIN sums s USING (user_id)
           LEFT JOIN slots e USING (user_id)
     WHERE b.spent - COALESCE(e.money, 0) <> COALESCE(s.charges - s.refunds, 0)
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
    SELECT e.user_id, 'an escrow slot is negative'
      FROM slots e
     WHERE e.negative
    UNION ALL
    SELECT b.user_id,
           pg_catalog.format('escrow slots hold %s, more than the escrowed %s',
                             e.money * 0.000001, @extschema@.credits(b.escrowed))
      FROM @extschema@.balances b JOIN slots e USING (user_id)
     WHERE e.money > b.escrowed
    UNION ALL
    SELECT e.user_id, 'escrow slots for a user without a balance row'
      FROM slots e
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@.balances b
                        WHERE b.user_id = e.user_id)
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

-- Audited bulk statements: the audit trigger per statement
-------------------------------------------------------------------------------

-- An audited table records its row changes through three statement
-- triggers with transition tables, all running audit_trigger() with the
-- same arguments: pgmarket_audit (AFTER UPDATE, the name the row trigger
-- had), pgmarket_audit_insert and pgmarket_audit_delete; pgmarket_audit_truncate
-- stays as it was.  audit_trigger() writes one audit row per changed row, as
-- before, from the transition tables in their order, and puts a
-- statement's rows into audit_log in batches.  A partitioned table, a
-- partition and an inheritance child keep the row trigger (AFTER INSERT OR
-- UPDATE OR DELETE FOR EACH ROW, named pgmarket_audit): a statement trigger
-- does not fire for rows that reach such a table through another.

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
    trg  text;
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
    FOREACH trg IN ARRAY ARRAY['pgmarket_audit', 'pgmarket_audit_insert',
                               'pgmarket_audit_delete', 'pgmarket_audit_truncate'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid OPERATOR(pg_catalog.=) target
                      AND t.tgname OPERATOR(pg_catalog.=) trg) THEN
            EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', trg, target);
        END IF;
    END LOOP;
    IF kind OPERATOR(pg_catalog.=) 'p'
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i
                   WHERE i.inhrelid OPERATOR(pg_catalog.=) target) THEN
        -- rows reach it through its parent or its partitions: per row
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgmarket_audit AFTER INSERT OR UPDATE OR DELETE ON %s'
            ' FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger(%s)',
            target, COALESCE(args, ''));
    ELSE
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgmarket_audit AFTER UPDATE ON %s'
            ' REFERENCING OLD TABLE AS pgmarket_old NEW TABLE AS pgmarket_new'
            ' FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger(%s)',
            target, COALESCE(args, ''));
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgmarket_audit_insert AFTER INSERT ON %s'
            ' REFERENCING NEW TABLE AS pgmarket_new'
            ' FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger(%s)',
            target, COALESCE(args, ''));
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgmarket_audit_delete AFTER DELETE ON %s'
            ' REFERENCING OLD TABLE AS pgmarket_old'
            ' FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger(%s)',
            target, COALESCE(args, ''));
    END IF;
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
DECLARE
    trg text;
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = 'target must not be null';
    END IF;
    PERFORM @extschema@.audit_require_owner(target);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid OPERATOR(pg_catalog.=) target
                  AND t.tgname IN ('pgmarket_audit', 'pgmarket_audit_insert',
                                   'pgmarket_audit_delete', 'pgmarket_audit_truncate')) THEN
        PERFORM pg_catalog.set_config('pgmarket.audit_internal', 'on', true);
        FOREACH trg IN ARRAY ARRAY['pgmarket_audit', 'pgmarket_audit_insert',
                                   'pgmarket_audit_delete', 'pgmarket_audit_truncate'] LOOP
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s', trg, target);
        END LOOP;
        PERFORM pg_catalog.set_config('pgmarket.audit_internal', 'off', true);
        PERFORM @extschema@.audit_event(target, 'DISABLE_AUDIT', NULL);
    END IF;
END
$$;

-- audit_ddl knows the statement triggers' names, and refuses to make a table
-- audited per statement a partition or an inheritance child (the rows that
-- its parent's statements change there would not be recorded): detach the
-- trail, attach the table, and enable_audit again, which makes the row form.
CREATE OR REPLACE FUNCTION @extschema@.audit_ddl() RETURNS event_trigger
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
               AND d.address_names[3] IN ('pgmarket_audit', 'pgmarket_audit_insert',
                                          'pgmarket_audit_delete', 'pgmarket_audit_truncate')
               AND n.nspname OPERATOR(pg_catalog.<>) '@extschema@'
        LOOP
            PERFORM @extschema@.audit_event(rel::regclass, 'DDL',
                pg_catalog.jsonb_build_object('command', 'DROP TRIGGER', 'object', obj));
        END LOOP;
        RETURN;
    END IF;
    -- no trigger of those names but the audit trigger itself
    SELECT pg_catalog.format('%s on %s', t.tgname, t.tgrelid::regclass) INTO bad
      FROM pg_catalog.pg_event_trigger_ddl_commands() c
      JOIN pg_catalog.pg_trigger t ON t.oid OPERATOR(pg_catalog.=) c.objid
     WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass
       AND t.tgname IN ('pgmarket_audit', 'pgmarket_audit_insert',
                        'pgmarket_audit_delete', 'pgmarket_audit_truncate')
       AND t.tgfoid OPERATOR(pg_catalog.<>) '@extschema@.audit_trigger()'::pg_catalog.regprocedure
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('trigger %s must run the audit trigger', bad),
            HINT = 'Change the audit triggers with enable_audit and disable_audit.';
    END IF;
    -- the audit triggers keep their names: a renamed one would drop unseen
    SELECT pg_catalog.format('%s on %s', t.tgname, t.tgrelid::regclass) INTO bad
      FROM pg_catalog.pg_event_trigger_ddl_commands() c
      JOIN pg_catalog.pg_trigger t ON t.oid OPERATOR(pg_catalog.=) c.objid
     WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass
       AND c.command_tag OPERATOR(pg_catalog.=) 'ALTER TRIGGER'
       AND t.tgfoid OPERATOR(pg_catalog.=) '@extschema@.audit_trigger()'::pg_catalog.regprocedure
       AND t.tgname NOT IN ('pgmarket_audit', 'pgmarket_audit_insert',
                            'pgmarket_audit_delete', 'pgmarket_audit_truncate')
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('trigger %s runs the audit trigger and cannot be renamed', bad),
            HINT = 'Change the audit triggers with enable_audit and disable_audit.';
    END IF;
    -- no new inheritance child below a table audited per statement: the
    -- child's own statements would not fire the parent's triggers
    SELECT pg_catalog.format('%s cannot inherit from %s', c.objid::pg_catalog.regclass,
                             i.inhparent::pg_catalog.regclass) INTO bad
      FROM pg_catalog.pg_event_trigger_ddl_commands() c
      JOIN pg_catalog.pg_inherits i ON i.inhrelid OPERATOR(pg_catalog.=) c.objid
     WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND c.command_tag IN ('CREATE TABLE', 'ALTER TABLE')
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid OPERATOR(pg_catalog.=) i.inhparent
                      AND t.tgfoid OPERATOR(pg_catalog.=)
                          '@extschema@.audit_trigger()'::pg_catalog.regprocedure
                      AND (t.tgnewtable IS NOT NULL OR t.tgoldtable IS NOT NULL))
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('%s: the parent is audited per statement', bad),
            HINT = 'Call disable_audit on the parent, create the child, then enable_audit on each.';
    END IF;
    -- no table audited per statement below a parent
    SELECT t.tgrelid::regclass::text INTO bad
      FROM pg_catalog.pg_trigger t
      JOIN pg_catalog.pg_inherits i ON i.inhrelid OPERATOR(pg_catalog.=) t.tgrelid
     WHERE t.tgfoid OPERATOR(pg_catalog.=) '@extschema@.audit_trigger()'::pg_catalog.regprocedure
       AND (t.tgnewtable IS NOT NULL OR t.tgoldtable IS NOT NULL)
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('%s is audited per statement and cannot be a partition or an inheritance child',
                                        bad),
            HINT = 'Call disable_audit, attach the table, then enable_audit, which audits it per row.';
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
           AND t.tgname IN ('pgmarket_audit', 'pgmarket_audit_insert', 'pgmarket_audit_delete')
           AND t.tgfoid OPERATOR(pg_catalog.=)
               '@extschema@.audit_trigger()'::pg_catalog.regprocedure
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

-- audit_ddl also sees CREATE TABLE, for an inheritance child of a table
-- audited per statement.
DROP EVENT TRIGGER pgmarket_audit_ddl;
CREATE EVENT TRIGGER pgmarket_audit_ddl ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'CREATE TRIGGER', 'CREATE TABLE')
    EXECUTE FUNCTION @extschema@.audit_ddl();

-- Every table audited by the row trigger moves to the statement triggers,
-- pgmarket's own and the users': same arguments, same enabled state.  A
-- partitioned table, a partition and an inheritance child keep the row
-- trigger.  Nothing is recorded in the trail: what it records does not
-- change.
DO $$
DECLARE
    r     record;
    args  text;
    trg   text;
BEGIN
    PERFORM pg_catalog.set_config('pgmarket.audit_internal', 'on', true);
    FOR r IN
        SELECT t.oid AS tgoid, t.tgrelid::regclass AS target, t.tgenabled
          FROM pg_catalog.pg_trigger t
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid
         WHERE t.tgname OPERATOR(pg_catalog.=) 'pgmarket_audit'
           AND t.tgfoid OPERATOR(pg_catalog.=) '@extschema@.audit_trigger()'::pg_catalog.regprocedure
           AND (t.tgtype::int OPERATOR(pg_catalog.&) 1) OPERATOR(pg_catalog.=) 1
           AND t.tgparentid OPERATOR(pg_catalog.=) 0
           AND c.relkind OPERATOR(pg_catalog.=) 'r'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i
                            WHERE i.inhrelid OPERATOR(pg_catalog.=) c.oid)
         ORDER BY t.tgrelid
    LOOP
        args := pg_catalog.regexp_replace(pg_catalog.pg_get_triggerdef(r.tgoid),
                    '^.* EXECUTE FUNCTION [^(]*audit_trigger\((.*)\)$', '\1');
        EXECUTE pg_catalog.format('DROP TRIGGER pgmarket_audit ON %s', r.target);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgmarket_audit AFTER UPDATE ON %s'
            ' REFERENCING OLD TABLE AS pgmarket_old NEW TABLE AS pgmarket_new'
            ' FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger(%s)',
            r.target, args);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgmarket_audit_insert AFTER INSERT ON %s'
            ' REFERENCING NEW TABLE AS pgmarket_new'
            ' FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger(%s)',
            r.target, args);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgmarket_audit_delete AFTER DELETE ON %s'
            ' REFERENCING OLD TABLE AS pgmarket_old'
            ' FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger(%s)',
            r.target, args);
        IF r.tgenabled OPERATOR(pg_catalog.<>) 'O' THEN
            FOREACH trg IN ARRAY ARRAY['pgmarket_audit', 'pgmarket_audit_insert',
                                       'pgmarket_audit_delete'] LOOP
                EXECUTE pg_catalog.format('ALTER TABLE %s %s TRIGGER %I', r.target,
                    CASE r.tgenabled WHEN 'D' THEN 'DISABLE'
                                     WHEN 'R' THEN 'ENABLE REPLICA'
                                     ELSE 'ENABLE ALWAYS' END, trg);
            END LOOP;
        END IF;
    END LOOP;
    PERFORM pg_catalog.set_config('pgmarket.audit_internal', 'off', true);
END
$$;
