-- The audit trigger per statement: a table that enable_audit audits records
-- through three statement triggers with transition tables.  What they write
-- must be what the row trigger wrote, row for row, whatever statement
-- carries the change.
\set VERBOSITY terse
DROP SCHEMA IF EXISTS aust CASCADE;
DROP ROLE IF EXISTS aust_owner;
CREATE ROLE aust_owner IN ROLE pgmarket_admin;
CREATE SCHEMA aust AUTHORIZATION aust_owner;
SELECT coalesce(max(id), 0) AS base FROM pgmarket.audit_log \gset

-- two identical tables: s audited by enable_audit, r by the row trigger
-- (the form up to 0.7.0, made here by hand)
SET ROLE aust_owner;
CREATE TABLE aust.s (id int PRIMARY KEY, v text, n numeric, secret text,
                     gone int, at timestamptz DEFAULT '2024-01-01 00:00:00+00');
ALTER TABLE aust.s DROP COLUMN gone;
CREATE TABLE aust.r (LIKE aust.s INCLUDING ALL);
SELECT pgmarket.enable_audit('aust.s', '{secret}');
RESET ROLE;
CREATE TRIGGER pgmarket_audit AFTER INSERT OR UPDATE OR DELETE ON aust.r
    FOR EACH ROW EXECUTE FUNCTION pgmarket.audit_trigger('secret');
CREATE TRIGGER pgmarket_audit_truncate AFTER TRUNCATE ON aust.r
    FOR EACH STATEMENT EXECUTE FUNCTION pgmarket.audit_trigger();
SELECT tgrelid::regclass AS tbl, tgname,
       CASE WHEN tgtype::int & 1 = 1 THEN 'row' ELSE 'statement' END AS form,
       tgoldtable, tgnewtable, encode(tgargs, 'escape') AS args
  FROM pg_trigger WHERE tgrelid IN ('aust.s'::regclass, 'aust.r'::regclass)
 ORDER BY 1, 2;

-- what one table's audit rows say, in id order, without their table
CREATE FUNCTION pg_temp.trail(tbl text, after bigint) RETURNS SETOF text
LANGUAGE sql AS $$
    SELECT concat_ws(' | ', operation, row_key, old_values, new_values,
                     changed_columns, actor, db_role)
      FROM pgmarket.audit_log
     WHERE id > after AND table_name = tbl
       AND operation IN ('INSERT', 'UPDATE', 'DELETE') ORDER BY id
$$;
-- the same rows, and of each operation in the same order (a statement that
-- does several, MERGE or a writable CTE, has its rows grouped by operation
-- in the statement form: one transition table each)
CREATE FUNCTION pg_temp.same(after bigint) RETURNS boolean LANGUAGE sql AS $$
    SELECT ARRAY(SELECT t FROM pg_temp.trail('aust.s', after) WITH ORDINALITY AS x(t, i)
                  ORDER BY split_part(t, ' ', 1), i)
         = ARRAY(SELECT t FROM pg_temp.trail('aust.r', after) WITH ORDINALITY AS x(t, i)
                  ORDER BY split_part(t, ' ', 1), i)
$$;
-- run the same statement on both tables
CREATE FUNCTION pg_temp.both(stmt text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE replace(stmt, '%T', 'aust.s');
    EXECUTE replace(stmt, '%T', 'aust.r');
END $$;

SET ROLE aust_owner;
SET pgmarket.actor = 'bulk-tester';
SELECT pg_temp.both($$INSERT INTO %T (id, v, n, secret)
    SELECT g, 'v' || g, g * 1.5, 's' || g FROM generate_series(1, 50) g$$);
SELECT pg_temp.both($$UPDATE %T SET n = n + 1 WHERE id <= 20$$);
-- no column changes: an UPDATE row with nothing in it, as before
SELECT pg_temp.both($$UPDATE %T SET v = v WHERE id BETWEEN 21 AND 23$$);
-- to and from NULL, and a redacted column
SELECT pg_temp.both($$UPDATE %T SET v = NULL, secret = 'changed' WHERE id % 7 = 0$$);
SELECT pg_temp.both($$UPDATE %T SET v = 'back' WHERE v IS NULL$$);
-- nothing matched: nothing recorded
SELECT pg_temp.both($$UPDATE %T SET v = 'none' WHERE id < 0$$);
SELECT pg_temp.both($$DELETE FROM %T WHERE id > 45$$);
-- INSERT ... ON CONFLICT DO UPDATE: inserted and updated rows
SELECT pg_temp.both($$INSERT INTO %T (id, v) SELECT g, 'upsert' FROM generate_series(40, 48) g
    ON CONFLICT (id) DO UPDATE SET v = excluded.v || '-again'$$);
-- MERGE (PostgreSQL 15): every action
SELECT pg_temp.both($$MERGE INTO %T t
    USING (SELECT g AS id FROM generate_series(1, 60, 3) g) src ON t.id = src.id
    WHEN MATCHED AND t.id < 10 THEN DELETE
    WHEN MATCHED THEN UPDATE SET n = -1
    WHEN NOT MATCHED THEN INSERT (id, v) VALUES (src.id, 'merged')$$);
-- a writable CTE: two statements' rows
SELECT pg_temp.both($$WITH d AS (DELETE FROM %T WHERE id BETWEEN 30 AND 32 RETURNING *)
    INSERT INTO %T (id, v) SELECT id + 1000, 'moved' FROM d$$);
SELECT pg_temp.same(:base) AS same_rows,
       (SELECT count(*) FROM pg_temp.trail('aust.s', :base)) AS rows_each;
SELECT operation, count(*) FROM pgmarket.audit_log
 WHERE id > :base AND table_name = 'aust.s' GROUP BY 1 ORDER BY 1;
-- a few of them as they are
SELECT t FROM pg_temp.trail('aust.s', :base) t
 WHERE t LIKE 'UPDATE | {"id": 7}%' OR t LIKE 'UPDATE | {"id": 21}%'
    OR t LIKE 'DELETE | {"id": 46}%' OR t LIKE 'INSERT | {"id": 1030}%';

-- a rolled-back subtransaction's rows are gone, the rest stay
SELECT max(id) AS mark FROM pgmarket.audit_log \gset
BEGIN;
SELECT pg_temp.both($$UPDATE %T SET v = 'kept' WHERE id = 2$$);
SAVEPOINT sp;
SELECT pg_temp.both($$UPDATE %T SET v = 'rolled back' WHERE id <= 10$$);
ROLLBACK TO sp;
DO $d$
BEGIN
    PERFORM pg_temp.both($$UPDATE %T SET v = 'also rolled back' WHERE id <= 10$$);
    RAISE EXCEPTION 'undo';
EXCEPTION WHEN raise_exception THEN
    NULL;
END $d$;
COMMIT;
SELECT pg_temp.same(:mark) AS same_rows, array_agg(t) AS rows
  FROM pg_temp.trail('aust.s', :mark) t;

-- a trigger of the user's that changes the rows again, and one that reads
-- the same transition table: every change is recorded, each by the
-- statement that made it
RESET ROLE;
CREATE FUNCTION aust.bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.v NOT LIKE '%bumped' THEN
        EXECUTE format('UPDATE %s SET v = v || %L WHERE id = $1', TG_RELID::regclass, '-bumped')
          USING NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION aust.count_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE '% saw % new rows', TG_NAME, (SELECT count(*) FROM newrows);
    RETURN NULL;
END $$;
CREATE TRIGGER bump AFTER UPDATE ON aust.s FOR EACH ROW EXECUTE FUNCTION aust.bump();
CREATE TRIGGER bump AFTER UPDATE ON aust.r FOR EACH ROW EXECUTE FUNCTION aust.bump();
CREATE TRIGGER a_reader AFTER UPDATE ON aust.s REFERENCING NEW TABLE AS newrows
    FOR EACH STATEMENT EXECUTE FUNCTION aust.count_new();
CREATE TRIGGER z_reader AFTER UPDATE ON aust.s REFERENCING NEW TABLE AS newrows
    FOR EACH STATEMENT EXECUTE FUNCTION aust.count_new();
SELECT max(id) AS mark FROM pgmarket.audit_log \gset
SELECT pg_temp.both($$UPDATE %T SET v = 'x' WHERE id IN (3, 4, 5)$$);
-- the same rows; in the statement form a statement's rows come after those
-- of the statements its row triggers ran
SELECT ARRAY(SELECT t FROM pg_temp.trail('aust.s', :mark) t ORDER BY 1)
     = ARRAY(SELECT t FROM pg_temp.trail('aust.r', :mark) t ORDER BY 1) AS same_rows;
SELECT t FROM pg_temp.trail('aust.s', :mark) t;
DROP TRIGGER bump ON aust.s;
DROP TRIGGER bump ON aust.r;
DROP TRIGGER a_reader ON aust.s;
DROP TRIGGER z_reader ON aust.s;

-- COPY FROM of 100,000 rows, by a superuser into a user's table: recorded
-- row by row, in batches
SELECT max(id) AS mark FROM pgmarket.audit_log \gset
COPY aust.s (id) FROM PROGRAM 'seq 100001 200000';
SELECT count(*) AS copied_rows, min(row_key->>'id') AS first, max((row_key->>'id')::int) AS last,
       count(DISTINCT txid) AS transactions, bool_and(operation = 'INSERT') AS all_inserts
  FROM pgmarket.audit_log WHERE id > :mark;
SELECT (SELECT array_agg(id ORDER BY id) FROM pgmarket.audit_log WHERE id > :mark)
     = (SELECT array_agg(g::bigint) FROM generate_series(:mark + 1, :mark + 100000) g) AS ids_in_order,
       (SELECT bool_and((l.row_key->>'id')::int = l.id - :mark + 100000)
          FROM pgmarket.audit_log l WHERE l.id > :mark) AS rows_in_copy_order;
-- and a DELETE of them all: one statement, 100,000 rows
DELETE FROM aust.s WHERE id > 100000;
SELECT count(*) AS deleted_rows FROM pgmarket.audit_log
 WHERE id > :mark AND operation = 'DELETE' AND table_name = 'aust.s';

-- TRUNCATE is an act, as before
SET ROLE aust_owner;
TRUNCATE aust.s;
SELECT operation, row_key, new_values FROM pgmarket.audit_log ORDER BY id DESC LIMIT 1;

-- the triggers are the audit triggers: none of them swapped, disabled
-- unseen or given up quietly
CREATE FUNCTION aust.noop() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN RETURN NULL; END$f$;
CREATE OR REPLACE TRIGGER pgmarket_audit_insert AFTER INSERT ON aust.s
    FOR EACH STATEMENT EXECUTE FUNCTION aust.noop();
CREATE OR REPLACE TRIGGER pgmarket_audit_delete AFTER DELETE ON aust.s
    FOR EACH ROW EXECUTE FUNCTION aust.noop();
CREATE TRIGGER pgmarket_audit_insert AFTER INSERT ON aust.r
    FOR EACH STATEMENT EXECUTE FUNCTION aust.noop();
SELECT max(id) AS mark FROM pgmarket.audit_log \gset
ALTER TABLE aust.s DISABLE TRIGGER pgmarket_audit_insert;
INSERT INTO aust.s (id, v) VALUES (1, 'while the insert trigger is off');
ALTER TABLE aust.s ENABLE TRIGGER pgmarket_audit_insert;
DROP TRIGGER pgmarket_audit_delete ON aust.s;
SELECT operation, new_values->>'command' AS command, new_values->>'object' AS object,
       new_values->'audit_triggers'->>'pgmarket_audit_insert' AS insert_trigger
  FROM pgmarket.audit_log WHERE id > :mark ORDER BY id;
SELECT pgmarket.enable_audit('aust.s', '{secret}');
-- a redacted column stays redacted in every one of them
ALTER TABLE aust.s RENAME COLUMN secret TO plain;

-- a table audited per statement is not made a partition or an inheritance
-- child (its parent's statements would change its rows unrecorded)
CREATE TABLE aust.parent (id int, v text, n numeric, secret text,
                          at timestamptz) PARTITION BY RANGE (id);
CREATE TABLE aust.lone (id int PRIMARY KEY, v text, n numeric, secret text, at timestamptz);
SELECT pgmarket.enable_audit('aust.lone');
ALTER TABLE aust.parent ATTACH PARTITION aust.lone FOR VALUES FROM (0) TO (1000);
CREATE TABLE aust.base (id int, v text, n numeric, secret text, at timestamptz);
ALTER TABLE aust.lone INHERIT aust.base;
-- detach, attach, enable again: the row form, which fires for rows routed
-- through the parent and for the partition's own statements
SELECT pgmarket.disable_audit('aust.lone');
ALTER TABLE aust.parent ATTACH PARTITION aust.lone FOR VALUES FROM (0) TO (1000);
SELECT pgmarket.enable_audit('aust.lone');
SELECT max(id) AS mark FROM pgmarket.audit_log \gset
INSERT INTO aust.parent (id, v) VALUES (1, 'through the parent'), (2, 'and another');
UPDATE aust.lone SET v = 'directly' WHERE id = 2;
-- a partitioned table is audited per row; its partitions inherit the trigger
-- (adding one takes a superuser, who may copy the audit trigger)
CREATE TABLE aust.parted (id int, v text) PARTITION BY RANGE (id);
SELECT pgmarket.enable_audit('aust.parted');
RESET ROLE;
CREATE TABLE aust.p2 PARTITION OF aust.parted FOR VALUES FROM (1000) TO (2000);
ALTER TABLE aust.p2 OWNER TO aust_owner;
SET ROLE aust_owner;
INSERT INTO aust.parted (id, v) VALUES (1500, 'p2 through the parent');
UPDATE aust.p2 SET v = 'p2 directly';
SELECT table_name, operation, row_key, new_values->>'v' AS v FROM pgmarket.audit_log
 WHERE id > :mark AND operation IN ('INSERT', 'UPDATE') ORDER BY id;
SELECT tgrelid::regclass AS tbl, tgname,
       CASE WHEN tgtype::int & 1 = 1 THEN 'row' ELSE 'statement' END AS form
  FROM pg_trigger WHERE tgrelid IN ('aust.lone'::regclass, 'aust.parted'::regclass, 'aust.p2'::regclass)
   AND tgname LIKE 'pgmarket_audit%' ORDER BY 1, 2;
RESET ROLE;

DROP SCHEMA aust CASCADE;
DROP ROLE aust_owner;
