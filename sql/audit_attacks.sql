-- Attacks on the statement-level audit triggers.  SPEC's Audit section:
-- no role below superuser can make a change go unrecorded on an audited
-- table.  Each numbered case says what holds, or which known limit of
-- README's it records.
\set VERBOSITY terse
DROP SCHEMA IF EXISTS brk CASCADE;
DROP ROLE IF EXISTS brk_owner;
CREATE ROLE brk_owner IN ROLE pgmarket_admin;
CREATE SCHEMA brk AUTHORIZATION brk_owner;
SELECT coalesce(max(id), 0) AS base FROM pgmarket.audit_log \gset

-- 1. An audited table that later gets an inheritance child: refused
-- (42501), as an audited table becoming a child is; the child's own
-- statements would not fire the parent's statement triggers.
SET ROLE brk_owner;
CREATE TABLE brk.t (id int PRIMARY KEY, v text);
SELECT pgmarket.enable_audit('brk.t');
INSERT INTO brk.t VALUES (1, 'a');
CREATE TABLE brk.kid () INHERITS (brk.t);
INSERT INTO brk.kid VALUES (10, 'hidden');
UPDATE brk.kid SET v = 'hidden too' WHERE id = 10;
SELECT id, v FROM brk.t ORDER BY id;
UPDATE brk.t SET v = v || '!';
RESET ROLE;
-- t: every row visible in brk.t has its INSERT in the trail
SELECT bool_and(EXISTS (SELECT 1 FROM pgmarket.audit_log a
                         WHERE a.id > :base AND a.operation = 'INSERT'
                           AND a.row_key = jsonb_build_object('id', t.id)))
       AS every_row_of_t_inserted_on_record
  FROM brk.t;
-- no row of the child in the trail: it was never created
SELECT bool_and(a.table_name = 'brk.kid') AS child_rows_under_their_table
  FROM pgmarket.audit_log a
 WHERE a.id > :base AND a.row_key = '{"id": 10}';

-- 2. Renaming an audit trigger, then dropping it under its new name: the
-- rename is refused (42501), so the trigger keeps its name, the drop
-- finds no trigger of the new name, and the insert after it is recorded.
SET ROLE brk_owner;
CREATE TABLE brk.r (id int PRIMARY KEY, v text);
SELECT pgmarket.enable_audit('brk.r');
ALTER TRIGGER pgmarket_audit_insert ON brk.r RENAME TO plain_name;
DROP TRIGGER plain_name ON brk.r;
INSERT INTO brk.r VALUES (1, 'unrecorded');
RESET ROLE;
-- no drop, the rename having been refused
SELECT EXISTS (SELECT 1 FROM pgmarket.audit_log a
                WHERE a.id > :base AND a.table_name = 'brk.r' AND a.operation = 'DDL'
                  AND a.new_values->>'command' = 'DROP TRIGGER') AS drop_recorded;
-- t: the insert is recorded
SELECT EXISTS (SELECT 1 FROM pgmarket.audit_log a
                WHERE a.id > :base AND a.table_name = 'brk.r' AND a.operation = 'INSERT')
       AS insert_recorded;

-- 3. The owner disables one of the statement triggers: as with
-- disable_audit, which the owner may also call, the trail records that it
-- was switched off (a DDL event with the triggers' state), and the UPDATEs
-- while it is off are not recorded.
SET ROLE brk_owner;
CREATE TABLE brk.d (id int PRIMARY KEY, v text);
SELECT pgmarket.enable_audit('brk.d');
INSERT INTO brk.d VALUES (1, 'a');
ALTER TABLE brk.d DISABLE TRIGGER pgmarket_audit;
UPDATE brk.d SET v = 'changed unseen';
ALTER TABLE brk.d ENABLE TRIGGER pgmarket_audit;
RESET ROLE;
-- f: the owner switched the trail off, and that is on record
SELECT EXISTS (SELECT 1 FROM pgmarket.audit_log a
                WHERE a.id > :base AND a.table_name = 'brk.d' AND a.operation = 'UPDATE')
       AS update_recorded;

-- 4. DROP TABLE of an audited table by its owner: the trail records no
-- event for it (a known limit, README); its earlier rows stay.
SET ROLE brk_owner;
CREATE TABLE brk.gone (id int PRIMARY KEY, v text);
SELECT pgmarket.enable_audit('brk.gone');
INSERT INTO brk.gone VALUES (1, 'data');
DROP TABLE brk.gone;
RESET ROLE;
-- a known limit: f
SELECT EXISTS (SELECT 1 FROM pgmarket.audit_log a
                WHERE a.id > :base AND a.table_name = 'brk.gone'
                  AND a.operation NOT IN ('ENABLE_AUDIT', 'INSERT')) AS drop_recorded;

-- 5. Order, a known limit of the statement form (README): a user's AFTER
-- INSERT row trigger that changes or deletes the row just inserted.  The
-- nested statement's audit rows are written first (its statement ends
-- first), the INSERT's after, so in id order the trail updates or deletes
-- a row before it inserts it.  Every change is there, with its values.
SET ROLE brk_owner;
CREATE TABLE brk.o (id int PRIMARY KEY, v text);
SELECT pgmarket.enable_audit('brk.o');
CREATE FUNCTION brk.fix() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE brk.o SET v = 'fixed' WHERE id = NEW.id; RETURN NULL; END $$;
CREATE TRIGGER z_fix AFTER INSERT ON brk.o FOR EACH ROW EXECUTE FUNCTION brk.fix();
INSERT INTO brk.o VALUES (1, 'orig');
DROP TRIGGER z_fix ON brk.o;
CREATE FUNCTION brk.undo() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN DELETE FROM brk.o WHERE id = NEW.id; RETURN NULL; END $$;
CREATE TRIGGER z_undo AFTER INSERT ON brk.o FOR EACH ROW EXECUTE FUNCTION brk.undo();
INSERT INTO brk.o VALUES (2, 'gone at once');
DROP TRIGGER z_undo ON brk.o;
RESET ROLE;
SELECT operation, row_key FROM pgmarket.audit_log
 WHERE id > :base AND table_name = 'brk.o' AND operation <> 'ENABLE_AUDIT' ORDER BY id;
-- the known limit: f (each row's first audit row is not its INSERT)
SELECT bool_and(first_op = 'INSERT') AS insert_comes_first
  FROM (SELECT DISTINCT ON (row_key) row_key, operation AS first_op
          FROM pgmarket.audit_log
         WHERE id > :base AND table_name = 'brk.o' AND operation <> 'ENABLE_AUDIT'
         ORDER BY row_key, id) f;

-- And what holds: two UPDATEs, a DELETE and an INSERT ... ON CONFLICT DO
-- UPDATE of one table in one query; a BEFORE trigger that skips one row and
-- changes the others; an AFTER ROW trigger that updates another row of the
-- same table.  Every change recorded once, with the right old and new
-- values.
SET ROLE brk_owner;
CREATE TABLE brk.w (id int PRIMARY KEY, v text, n int DEFAULT 0);
SELECT pgmarket.enable_audit('brk.w');
INSERT INTO brk.w SELECT g, 'v' || g FROM generate_series(1, 6) g;
WITH a AS (UPDATE brk.w SET v = 'A' WHERE id IN (1, 2) RETURNING id),
     b AS (UPDATE brk.w SET n = 5 WHERE id IN (3, 4) RETURNING id),
     c AS (DELETE FROM brk.w WHERE id = 6 RETURNING id)
INSERT INTO brk.w VALUES (5, 'x', 0) ON CONFLICT (id) DO UPDATE SET v = 'C' || excluded.v;
CREATE FUNCTION brk.skip() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 1 THEN RETURN NULL; END IF;
    NEW.n := NEW.n + 100;
    RETURN NEW;
END $$;
CREATE TRIGGER a_skip BEFORE UPDATE ON brk.w FOR EACH ROW EXECUTE FUNCTION brk.skip();
UPDATE brk.w SET v = v || '+';
DROP TRIGGER a_skip ON brk.w;
CREATE FUNCTION brk.bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 2 THEN UPDATE brk.w SET n = n + 1 WHERE id = 3; END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER z_bump AFTER UPDATE ON brk.w FOR EACH ROW EXECUTE FUNCTION brk.bump();
UPDATE brk.w SET v = 'B' WHERE id IN (2, 4);
DROP TRIGGER z_bump ON brk.w;
RESET ROLE;
SELECT operation, row_key, old_values, new_values, changed_columns
  FROM pgmarket.audit_log
 WHERE id > :base AND table_name = 'brk.w' AND operation IN ('UPDATE', 'DELETE')
 ORDER BY row_key->>'id', id;

DROP SCHEMA brk CASCADE;
DROP ROLE brk_owner;
