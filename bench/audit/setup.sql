-- bench/audit/setup.sql: four identical accounts-like tables, each with
-- 100,000 rows: t_none (not audited), t_audited (enable_audit: pgmarket's
-- statement triggers, password_hash redacted), t_row (the same C function as
-- the row trigger of 0.7.0) and t_plpgsql (the PL/pgSQL audit trigger people
-- write).
CREATE EXTENSION IF NOT EXISTS pgmarket;
CREATE SEQUENCE bench_n START 100001;

CREATE FUNCTION make_table(name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($t$
        CREATE TABLE %I (
            n             bigint PRIMARY KEY,
            id            uuid NOT NULL,
            email         text NOT NULL,
            username      text NOT NULL,
            password_hash text,
            roles         text[] NOT NULL DEFAULT '{user}',
            balance       numeric NOT NULL DEFAULT 0,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now()
        ) WITH (fillfactor = 70)$t$, name);
    EXECUTE format($t$
        INSERT INTO %I (n, id, email, username, password_hash, balance)
        SELECT g, gen_random_uuid(), 'user' || g || '@example.com', 'user' || g,
               '$argon2id$v=19$m=65536,t=2,p=1$' || md5(g::text), 100
          FROM generate_series(1, 100000) g$t$, name);
END $$;
SELECT make_table('t_none'), make_table('t_audited'), make_table('t_row'),
       make_table('t_plpgsql');

SELECT pgmarket.enable_audit('t_audited', '{password_hash}');
-- the row trigger, as enable_audit made it up to 0.7.0
CREATE TRIGGER pgmarket_audit AFTER INSERT OR UPDATE OR DELETE ON t_row
    FOR EACH ROW EXECUTE FUNCTION pgmarket.audit_trigger('password_hash');
CREATE TRIGGER pgmarket_audit_truncate AFTER TRUNCATE ON t_row
    FOR EACH STATEMENT EXECUTE FUNCTION pgmarket.audit_trigger();

-- The PL/pgSQL audit trigger as users write it.
CREATE TABLE plpgsql_audit (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    txid       bigint NOT NULL DEFAULT txid_current(),
    table_name text NOT NULL,
    operation  text NOT NULL,
    old_values jsonb,
    new_values jsonb,
    actor      text DEFAULT current_setting('pgmarket.actor', true),
    db_role    text DEFAULT current_user
);
CREATE FUNCTION plpgsql_audit_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO plpgsql_audit (table_name, operation, old_values, new_values)
    VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) - 'password_hash' END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) - 'password_hash' END);
    RETURN NULL;
END $$;
CREATE TRIGGER plpgsql_audit AFTER INSERT OR UPDATE OR DELETE ON t_plpgsql
    FOR EACH ROW EXECUTE FUNCTION plpgsql_audit_trigger();
VACUUM ANALYZE;
