-- The audit trail against the roles that use it: no statement that a role
-- below superuser wraps around an audited change keeps the change out of the
-- trail; only a table's owner attaches or detaches the trigger; a superuser
-- who rewrites the rows and the seals is found against an anchor.
--
-- Runs in a database of its own (created and dropped here), as login roles
-- that hold nothing but pgmarket_app or pgmarket_admin (SET SESSION
-- AUTHORIZATION: the session user itself is not a superuser).  The master
-- key file is written as in sql/audit.sql and removed at the end.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_audit_adversary;
DROP ROLE IF EXISTS regress_audit_app;
DROP ROLE IF EXISTS regress_audit_admin;
DROP ROLE IF EXISTS regress_audit_auditor;
RESET client_min_messages;
CREATE ROLE regress_audit_app LOGIN IN ROLE pgmarket_app;
CREATE ROLE regress_audit_admin LOGIN IN ROLE pgmarket_admin;
CREATE ROLE regress_audit_auditor LOGIN IN ROLE pgmarket_auditor;
CREATE DATABASE regress_audit_adversary;
\c regress_audit_adversary
CREATE EXTENSION pgmarket;
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM, 'id [0-9]+', 'id <n>');
END $$;
COPY (SELECT '1:' || md5(random()::text) || md5(random()::text)) TO PROGRAM
    'umask 077 && cat > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key';

-------------------------------------------------------------------------------
-- The sweep: every audited change, under every wrapper, as pgmarket_app and
-- as pgmarket_admin, leaves its audit row
-------------------------------------------------------------------------------
CREATE SCHEMA adv;
GRANT USAGE ON SCHEMA adv TO pgmarket_app, pgmarket_admin;
-- a PL/pgSQL function around a statement (SECURITY INVOKER)
CREATE FUNCTION adv.run(q text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
BEGIN
    EXECUTE q INTO ok;
    RETURN ok;
END $$;
GRANT EXECUTE ON FUNCTION adv.run(text) TO pgmarket_app, pgmarket_admin;
-- a table under enable_audit that the roles may update
CREATE TABLE adv.t (id uuid PRIMARY KEY, v int NOT NULL);
SELECT pgmarket.enable_audit('adv.t');
GRANT SELECT, UPDATE ON adv.t TO pgmarket_app, pgmarket_admin;

-- The calls: q is a statement returning one row with a column ok, with %1$s
-- the quoted uuid of the user (or row) it acts on; tbl and op name the audit
-- row it must leave.  cursor_q is what a cursor runs where PostgreSQL takes
-- no cursor over the statement itself (an UPDATE).
CREATE TABLE adv.calls (call text PRIMARY KEY, q text NOT NULL,
                        cursor_q text, tbl text NOT NULL, op text NOT NULL);
INSERT INTO adv.calls VALUES
  ('create_user',
   $$SELECT pgmarket.create_user('new-' || %1$s || '@example.com', 'new_' || left(md5(%1$s), 12), 'pw', '{user}', %1$s) IS NOT NULL AS ok$$,
   NULL, 'pgmarket.accounts', 'INSERT'),
  ('deactivate_user',
   $$SELECT pgmarket.deactivate_user(%1$s) IS NOT NULL AS ok$$,
   NULL, 'pgmarket.accounts', 'UPDATE'),
  ('put_provider_key',
   $$SELECT pgmarket.put_provider_key(%1$s, 'openai', 'sk-adversary-key') IS NOT NULL AS ok$$,
   NULL, 'pgmarket.provider_keys', 'INSERT'),
  ('create_api_key',
   $$SELECT pgmarket.create_api_key(%1$s, 'adversary') IS NOT NULL AS ok$$,
   NULL, 'pgmarket.api_keys', 'INSERT'),
  ('set_preference',
   $$SELECT pgmarket.set_preference(%1$s, 'theme', '"dark"') IS NOT NULL AS ok$$,
   NULL, 'pgmarket.preferences', 'INSERT'),
  ('update',
   $$UPDATE adv.t SET v = v + 1 WHERE id = %1$s RETURNING true AS ok$$,
   $$SELECT adv.run(%1$L) AS ok$$, 'adv.t', 'UPDATE');

-- The wrappers: %1$s the statement (%1$L: as a literal), %2$s what a cursor
-- runs.
CREATE TABLE adv.wrappers (wrapper text PRIMARY KEY, template text NOT NULL);
INSERT INTO adv.wrappers VALUES
  ('plain',    $$%1$s$$),
  ('copy',     $$COPY (%1$s) TO STDOUT$$),
  ('cte',      $$WITH w AS (%1$s) SELECT ok FROM w$$),
  ('plpgsql',  $$SELECT adv.run(%1$L) AS ok$$),
  ('prepared', $$PREPARE w AS %1$s; EXECUTE w; DEALLOCATE w$$),
  ('cursor',   $$BEGIN; DECLARE w CURSOR FOR %2$s; FETCH ALL FROM w; COMMIT$$);

-- Every combination, with the user (or row) it acts on; all but create_user
-- act on one made beforehand.
CREATE TABLE adv.cases AS
    SELECT r.role, c.call, w.wrapper,
           md5(r.role || c.call || w.wrapper)::uuid AS target
      FROM (VALUES ('regress_audit_app'), ('regress_audit_admin')) AS r(role),
           adv.calls c, adv.wrappers w;
SELECT count(*) AS cases FROM adv.cases;
SELECT count(pgmarket.create_user('pre-' || target || '@example.com',
                                  'pre_' || left(md5(target::text), 12),
                                  NULL, '{user}', target)) AS users_made
  FROM adv.cases WHERE call <> 'create_user';
INSERT INTO adv.t SELECT target, 0 FROM adv.cases WHERE call = 'update';
SELECT coalesce(max(id), 0) AS base FROM pgmarket.audit_log \gset

-- Each case runs in the session of its role; neither the statements nor
-- their output are shown (the values are random ids and keys): an error
-- would still show.
\set ECHO none
\o /dev/null
SELECT 'SET SESSION AUTHORIZATION ' || k.role,
       format(w.template, s, coalesce(format(c.cursor_q, s), s)),
       'RESET SESSION AUTHORIZATION'
  FROM adv.cases k
  JOIN adv.calls c USING (call)
  JOIN adv.wrappers w USING (wrapper),
       LATERAL format(c.q, quote_literal(k.target)) AS s
 ORDER BY k.role, k.call, k.wrapper
\gexec
\o
\set ECHO all

-- One audit row per case, by the role that made the change.
SELECT k.role, k.call,
       string_agg(k.wrapper, ' ' ORDER BY k.wrapper)
         FILTER (WHERE EXISTS (
           SELECT 1 FROM pgmarket.audit_log a
            WHERE a.id > :base AND a.table_name = c.tbl AND a.operation = c.op
              AND a.db_role = k.role
              AND k.target::text IN (a.row_key->>'id', a.row_key->>'user_id',
                                     a.new_values->>'user_id'))) AS recorded,
       string_agg(k.wrapper, ' ' ORDER BY k.wrapper)
         FILTER (WHERE NOT EXISTS (
           SELECT 1 FROM pgmarket.audit_log a
            WHERE a.id > :base AND a.table_name = c.tbl AND a.operation = c.op
              AND a.db_role = k.role
              AND k.target::text IN (a.row_key->>'id', a.row_key->>'user_id',
                                     a.new_values->>'user_id'))) AS missing
  FROM adv.cases k JOIN adv.calls c USING (call)
 GROUP BY k.role, k.call ORDER BY k.role, k.call;
-- and the changes took effect
SELECT (SELECT count(*) FROM pgmarket.users u JOIN adv.cases k ON k.target = u.id
         WHERE k.call = 'create_user') AS created,
       (SELECT count(*) FROM pgmarket.users u JOIN adv.cases k ON k.target = u.id
         WHERE k.call = 'deactivate_user' AND NOT u.is_active) AS deactivated,
       (SELECT count(*) FROM adv.t WHERE v = 1) AS updated;

-- A superuser's COPY (...) TO is audited too: only a COPY FROM into the
-- table itself is a restore.
SELECT coalesce(max(id), 0) AS base FROM pgmarket.audit_log \gset
COPY (SELECT pgmarket.create_user('super@example.com', 'super_copy', NULL, '{user}',
                                  '5d000000-0000-4000-8000-000000000001')) TO STDOUT;
SELECT table_name, operation, db_role = current_user AS by_me
  FROM pgmarket.audit_log WHERE id > :base ORDER BY id;

-- A COPY FROM by a role below superuser is no restore: pgmarket_admin may
-- load pgmarket.roles, and every row is recorded.  A superuser's COPY FROM
-- into pgmarket's own tables is what pg_restore does, and is not.
SELECT coalesce(max(id), 0) AS base FROM pgmarket.audit_log \gset
SET SESSION AUTHORIZATION regress_audit_admin;
COPY pgmarket.roles (name, description) FROM STDIN;
copied	a role loaded by COPY
\.
RESET SESSION AUTHORIZATION;
COPY pgmarket.roles (name, description) FROM STDIN;
restored	a role restored by a superuser
\.
SELECT table_name, operation, row_key, db_role FROM pgmarket.audit_log
 WHERE id > :base ORDER BY id;
SELECT (SELECT count(*) FROM pgmarket.roles r
         WHERE r.name IN ('copied', 'restored')) AS roles_loaded;

-- A superuser's COPY FROM into a table of its own is audited row by row.
CREATE TABLE adv.loaded (id int PRIMARY KEY, v text);
SELECT pgmarket.enable_audit('adv.loaded');
SELECT coalesce(max(id), 0) AS base FROM pgmarket.audit_log \gset
COPY adv.loaded FROM PROGRAM 'printf "1\tone\n2\ttwo\n"';
SELECT table_name, operation, row_key FROM pgmarket.audit_log WHERE id > :base ORDER BY id;

-- A restore of audit_log itself (COPY FROM) is recorded as one event, and
-- the ids go on above the restored ones.
SELECT coalesce(max(id), 0) AS base FROM pgmarket.audit_log \gset
SELECT format('printf "%s\t2026-01-01 00:00:00+00\t1\tadv.t\tINSERT\t{}\t\\\\N\t{}\t{}\t\\\\N\tpostgres\t\\\\N\t\\\\N\n%s\t2026-01-01 00:00:00+00\t1\tadv.t\tINSERT\t{}\t\\\\N\t{}\t{}\t\\\\N\tpostgres\t\\\\N\t\\\\N\n"',
              :base + 10, :base + 11) AS prog \gset
COPY pgmarket.audit_log FROM PROGRAM :'prog';
SELECT id - :base AS rel_id, table_name, operation, new_values - 'through_id' AS new_values,
       new_values->>'through_id' = (:base + 11)::text AS through_restored
  FROM pgmarket.audit_log WHERE id > :base ORDER BY id;
UPDATE adv.t SET v = 2 WHERE id = (SELECT id FROM adv.t ORDER BY id LIMIT 1);
SELECT id - :base AS rel_id, table_name, operation
  FROM pgmarket.audit_log WHERE id > :base + 12 ORDER BY id;

-------------------------------------------------------------------------------
-- Who may attach the trigger: the owner of the table, or a superuser
-------------------------------------------------------------------------------
CREATE SCHEMA hr;
CREATE TABLE hr.salaries (id int PRIMARY KEY, salary numeric);
INSERT INTO hr.salaries VALUES (1, 100000);
CREATE TABLE adv.owned (id int PRIMARY KEY);
ALTER TABLE adv.owned OWNER TO regress_audit_admin;
SELECT 'hr.salaries'::regclass::oid AS salaries_oid \gset
SELECT coalesce(max(id), 0) AS base FROM pgmarket.audit_log \gset
SET SESSION AUTHORIZATION regress_audit_admin;
SELECT pg_temp.err($$SELECT pgmarket.enable_audit('hr.salaries')$$);
-- a numeric OID skips the schema's USAGE check, not the owner check
SELECT pg_temp.err(format('SELECT pgmarket.enable_audit(%s)', :salaries_oid));
SELECT pg_temp.err(format('SELECT pgmarket.enable_audit(%s::regclass, ''{}'')', :salaries_oid));
SELECT pg_temp.err(format('SELECT pgmarket.disable_audit(%s)', :salaries_oid));
-- nor may it detach pgmarket's own trail, or another's table
SELECT pg_temp.err($$SELECT pgmarket.disable_audit('pgmarket.accounts')$$);
SELECT pg_temp.err($$SELECT pgmarket.disable_audit('adv.t')$$);
-- its own table, yes
SELECT pgmarket.enable_audit('adv.owned');
INSERT INTO adv.owned VALUES (1);
SELECT pgmarket.disable_audit('adv.owned');
RESET SESSION AUTHORIZATION;
-- SET ROLE counts as the caller too
SET ROLE regress_audit_admin;
SELECT pg_temp.err($$SELECT pgmarket.enable_audit('adv.t')$$);
RESET ROLE;
SELECT table_name, operation, db_role FROM pgmarket.audit_log WHERE id > :base ORDER BY id;
SELECT tgrelid::regclass AS still_audited FROM pg_trigger
 WHERE tgname = 'pgmarket_audit' AND tgrelid IN ('pgmarket.accounts'::regclass, 'adv.t'::regclass,
                                                 'hr.salaries'::regclass)
 ORDER BY 1;
SELECT count(*) AS salary_rows_in_trail FROM pgmarket.audit_log WHERE table_name = 'hr.salaries';
-- a superuser may
SELECT pgmarket.enable_audit('hr.salaries');
SELECT pgmarket.disable_audit('hr.salaries');

-------------------------------------------------------------------------------
-- The seal: every column of the seal record, and the anchor
-------------------------------------------------------------------------------
SELECT pgmarket.seal_audit() > 0 AS sealed;
SELECT first_bad_id, checked = (SELECT count(*) FROM pgmarket.audit_log) AS checked_all
  FROM pgmarket.verify_audit(true);
-- the head: the last sealed id, the chain hash and sealed_at of the last seal
SELECT h.last_id = (SELECT max(id) FROM pgmarket.audit_log) AS last_id_ok,
       h.chain_hash = (SELECT chain_hash FROM pgmarket.audit_seals ORDER BY seq DESC LIMIT 1) AS hash_ok,
       h.sealed_at = (SELECT sealed_at FROM pgmarket.audit_seals ORDER BY seq DESC LIMIT 1) AS sealed_at_ok
  FROM pgmarket.audit_head() h;
SELECT int8send(last_id) || chain_hash AS anchor FROM pgmarket.audit_head() \gset
SELECT * FROM pgmarket.verify_audit(anchor => :'anchor') WHERE first_bad_id IS NOT NULL;
SELECT first_bad_id IS NULL AS ok FROM pgmarket.verify_audit(true, :'anchor');
-- an anchor taken before the first seal lies on every chain
SELECT first_bad_id IS NULL AS ok
  FROM pgmarket.verify_audit(true, int8send(0) || decode(repeat('00', 32), 'hex'));
-- not an anchor
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_audit(true, '\x00')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_audit(NULL, NULL)$$);
-- an anchor from a chain this one never passed through
SELECT first_bad_id IS NOT NULL AS found
  FROM pgmarket.verify_audit(anchor => int8send(1) || decode(repeat('ab', 32), 'hex'));

-- the chain goes on: an old anchor stays on it
INSERT INTO adv.loaded VALUES (3, 'three');
SELECT pgmarket.seal_audit() AS sealed;
SELECT first_bad_id IS NULL AS old_anchor_ok FROM pgmarket.verify_audit(true, :'anchor');

-- sealed_at is covered
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE pgmarket.audit_seals SET sealed_at = sealed_at - interval '1 day'
 WHERE seq = (SELECT max(seq) FROM pgmarket.audit_seals);
SELECT first_bad_id IS NOT NULL AS finds_sealed_at FROM pgmarket.verify_audit();
ROLLBACK;

-- A superuser rewrites a row, drops the seals and seals again: the chain
-- verifies in itself, the anchor finds it.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE pgmarket.audit_log SET actor = 'mallory' WHERE id = (SELECT min(id) FROM pgmarket.audit_log);
TRUNCATE pgmarket.audit_seals;
SELECT pgmarket.seal_audit() > 0 AS resealed;
SELECT first_bad_id IS NULL AS chain_alone_verifies FROM pgmarket.verify_audit(true);
SELECT first_bad_id IS NOT NULL AS anchor_finds_it FROM pgmarket.verify_audit(false, :'anchor');
SELECT pg_temp.err(format('SELECT * FROM pgmarket.verify_audit(true, %L)', :'anchor'));
ROLLBACK;

-- Seals deleted from the end: without an anchor the shorter chain verifies;
-- with it, it does not.
SELECT int8send(last_id) || chain_hash AS anchor FROM pgmarket.audit_head() \gset
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM pgmarket.audit_seals WHERE seq = (SELECT max(seq) FROM pgmarket.audit_seals);
SELECT first_bad_id IS NULL AS shorter_chain_verifies FROM pgmarket.verify_audit(true);
SELECT first_bad_id = (SELECT max(through_id) + 1 FROM pgmarket.audit_seals) AS first_unsealed
  FROM pgmarket.verify_audit(false, :'anchor');
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
TRUNCATE pgmarket.audit_seals;
SELECT first_bad_id AS no_seal_left FROM pgmarket.verify_audit(false, :'anchor');
ROLLBACK;
SELECT first_bad_id IS NULL AS intact FROM pgmarket.verify_audit(true, :'anchor');

-- who may read the head and verify against it
SET SESSION AUTHORIZATION regress_audit_auditor;
SELECT last_id > 0 AS auditor_reads_head FROM pgmarket.audit_head();
SELECT first_bad_id IS NULL AS auditor_verifies FROM pgmarket.verify_audit(true, :'anchor');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_audit_app;
SELECT pg_temp.err($$SELECT * FROM pgmarket.audit_head()$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_audit(true, NULL)$$);
RESET SESSION AUTHORIZATION;

-------------------------------------------------------------------------------
-- cleanup
-------------------------------------------------------------------------------
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
\c postgres
DROP DATABASE regress_audit_adversary;
DROP ROLE regress_audit_app;
DROP ROLE regress_audit_admin;
DROP ROLE regress_audit_auditor;
