-- DDL on an audited table is on the record: its owner, who may detach the
-- trail with disable_audit, cannot detach it (or rewrite its rows) with
-- DDL unseen.
\set VERBOSITY terse
DROP SCHEMA IF EXISTS audit_ddl CASCADE;
DROP ROLE IF EXISTS audit_ddl_owner;
CREATE ROLE audit_ddl_owner IN ROLE pgmarket_admin;
CREATE SCHEMA audit_ddl AUTHORIZATION audit_ddl_owner;
SELECT coalesce(max(id), 0) AS base FROM pgmarket.audit_log \gset
CREATE FUNCTION pg_temp.trail(after bigint)
RETURNS TABLE (table_name text, operation text, command text, object text,
               triggers jsonb, keys text[])
LANGUAGE sql AS $$
    SELECT table_name, operation, new_values->>'command', new_values->>'object',
           new_values->'audit_triggers',
           ARRAY(SELECT jsonb_object_keys(new_values) ORDER BY 1)
      FROM pgmarket.audit_log WHERE id > after ORDER BY id
$$;

SET ROLE audit_ddl_owner;
CREATE TABLE audit_ddl.t (id int PRIMARY KEY, v text);
SELECT pgmarket.enable_audit('audit_ddl.t');
INSERT INTO audit_ddl.t VALUES (1, 'a');
-- disabling the trigger by hand is recorded, and so is enabling it again
ALTER TABLE audit_ddl.t DISABLE TRIGGER pgmarket_audit;
UPDATE audit_ddl.t SET v = 'while detached';
ALTER TABLE audit_ddl.t ENABLE TRIGGER pgmarket_audit;
-- rows rewritten by DDL
ALTER TABLE audit_ddl.t ALTER COLUMN v TYPE text USING 'rewritten-' || v;
-- the trigger renamed, then dropped
ALTER TRIGGER pgmarket_audit ON audit_ddl.t RENAME TO quiet;
ALTER TRIGGER quiet ON audit_ddl.t RENAME TO pgmarket_audit;
DROP TRIGGER pgmarket_audit ON audit_ddl.t;
DROP TRIGGER pgmarket_audit_truncate ON audit_ddl.t;
-- a table without the trail: its DDL is nobody's business
CREATE TABLE audit_ddl.plain (id int);
ALTER TABLE audit_ddl.plain ADD COLUMN v text;
-- enable_audit and disable_audit record their own events only
SELECT pgmarket.enable_audit('audit_ddl.t');
SELECT pgmarket.disable_audit('audit_ddl.t');
RESET ROLE;
SELECT * FROM pg_temp.trail(:base);

-- a trigger of the audit triggers' name must run the audit trigger: no
-- CREATE OR REPLACE TRIGGER swaps the trail for a function recording nothing
SELECT coalesce(max(id), 0) AS base FROM pgmarket.audit_log \gset
SET ROLE audit_ddl_owner;
SELECT pgmarket.enable_audit('audit_ddl.t', '{v}');
CREATE FUNCTION audit_ddl.noop() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN RETURN NULL; END$f$;
CREATE OR REPLACE TRIGGER pgmarket_audit AFTER INSERT OR UPDATE OR DELETE ON audit_ddl.t
    FOR EACH ROW EXECUTE FUNCTION audit_ddl.noop();
CREATE TRIGGER pgmarket_audit_truncate AFTER TRUNCATE ON audit_ddl.plain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_ddl.noop();
-- a redacted column cannot be renamed away from its redaction
ALTER TABLE audit_ddl.t RENAME COLUMN v TO v2;
ALTER TABLE audit_ddl.t DROP COLUMN v;
INSERT INTO audit_ddl.t VALUES (7, 'still redacted');
RESET ROLE;
SELECT table_name, operation, new_values FROM pgmarket.audit_log
 WHERE id > :base ORDER BY id;

-- a placeholder set before the library is loaded in a session does not
-- switch the record off: a new session, nothing of pgmarket's C loaded yet
\c -
SET ROLE audit_ddl_owner;
SET pgmarket.audit_internal = on;
ALTER TABLE audit_ddl.t DISABLE TRIGGER pgmarket_audit;
RESET ROLE;
SELECT table_name, operation, new_values->>'command' AS command,
       new_values->'audit_triggers' AS triggers
  FROM pgmarket.audit_log ORDER BY id DESC LIMIT 1;

-- pgmarket's own tables are the superuser's: their DDL is not recorded here
ALTER TABLE pgmarket.preferences ALTER COLUMN value SET STATISTICS 100;
ALTER TABLE pgmarket.preferences ALTER COLUMN value SET STATISTICS -1;
SELECT count(*) AS own_tables_ddl FROM pgmarket.audit_log
 WHERE id > :base AND table_name = 'pgmarket.preferences';
-- the switch the functions use is a superuser's
SET ROLE audit_ddl_owner;
SET pgmarket.audit_internal = on;
RESET ROLE;

DROP SCHEMA audit_ddl CASCADE;
DROP ROLE audit_ddl_owner;
