-- The extension itself: objects, dump registration, roles and privileges,
-- DROP and CREATE, and the rules every function follows.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT extname, extversion, extrelocatable, nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'pgmarket';

-- tables with user data are dumped by pg_dump
SELECT c.relname
  FROM pg_extension e, unnest(e.extconfig) AS cfg(oid)
  JOIN pg_class c ON c.oid = cfg.oid
 WHERE e.extname = 'pgmarket' ORDER BY 1;

-- every API function is SECURITY DEFINER with a fixed search_path, and none
-- is STRICT (a NULL argument is an error, not a silent NULL); credits() is
-- the views' display helper, api_key_partition() a pure routing helper, and
-- rotate_all_keys() a procedure that commits, which PostgreSQL does not allow
-- to be SECURITY DEFINER; proxy_actor() checks its caller's role and sets
-- pgmarket.actor for the transaction, which a SET clause would undo;
-- verify_api_key and get_chat_history have no SET clause and get the same
-- path for their SQL from extension/spi.c (tested in spi_search_path)
SELECT p.proname, p.prosecdef, p.proisstrict, p.proconfig
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'pgmarket' AND p.prorettype <> 'trigger'::regtype
 ORDER BY 1;

-- the roles exist and may not log in
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'pgmarket\_%' ORDER BY 1;

-- pgmarket_app calls the API and cannot touch the tables
SELECT pgmarket.create_user('x1@example.com', 'ext1', id => 'f0000000-0000-4000-8000-000000000001');
SET ROLE pgmarket_app;
SELECT available_balance FROM pgmarket.add_funds('f0000000-0000-4000-8000-000000000001', 3);
SELECT available_balance FROM pgmarket.deduct_balance('f0000000-0000-4000-8000-000000000001', 1, 'gpt-4');
SELECT username, is_active FROM pgmarket.users WHERE id = 'f0000000-0000-4000-8000-000000000001';
SELECT count(*) >= 1 AS sees_usage FROM pgmarket.model_usage;
SELECT pg_temp.err($$SELECT * FROM pgmarket.ledger$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.balances$$);
SELECT pg_temp.err($$SELECT password_hash FROM pgmarket.accounts$$);
SELECT pg_temp.err($$UPDATE pgmarket.balances SET total = 1e12$$);
SELECT pg_temp.err($$INSERT INTO pgmarket.ledger (entry_id, user_id, kind, amount, available) VALUES (1, 'f0000000-0000-4000-8000-000000000001', 'deposit', 1, 1)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_ledger()$$);
RESET ROLE;

-- pgmarket_auditor reads the ledger and checks it; it changes nothing
SET ROLE pgmarket_auditor;
SELECT count(*) > 0 AS reads_ledger FROM pgmarket.ledger;
SELECT * FROM pgmarket.verify_ledger();
SELECT pg_temp.err($$SELECT pgmarket.add_funds('f0000000-0000-4000-8000-000000000001', 3)$$);
SELECT pg_temp.err($$SELECT password_hash FROM pgmarket.accounts$$);
SELECT pg_temp.err($$DELETE FROM pgmarket.ledger$$);
RESET ROLE;

-- pgmarket_admin: the API and the checks; the ledger stays append-only for it too
SET ROLE pgmarket_admin;
SELECT available_balance FROM pgmarket.add_funds('f0000000-0000-4000-8000-000000000001', 1);
SELECT * FROM pgmarket.verify_ledger();
SELECT pg_temp.err($$DELETE FROM pgmarket.ledger$$);
INSERT INTO pgmarket.roles VALUES ('reseller', 'sells credit to others');
RESET ROLE;
SELECT pgmarket.create_user('x2@example.com', 'ext2', roles => '{user,reseller}') IS NOT NULL AS custom_role;

-- PUBLIC may not call anything
CREATE ROLE pgmarket_test_nobody;
SET ROLE pgmarket_test_nobody;
SELECT pg_temp.err($$SELECT pgmarket.get_balance('f0000000-0000-4000-8000-000000000001')$$);
RESET ROLE;
DROP ROLE pgmarket_test_nobody;

-- ALTER EXTENSION UPDATE to the current version is a no-op
ALTER EXTENSION pgmarket UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pgmarket';

-- DROP and CREATE work cleanly, and the roles survive
DROP EXTENSION pgmarket;
SELECT count(*) AS objects_left FROM pg_class
 WHERE relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'pgmarket');
SELECT count(*) AS roles_kept FROM pg_roles WHERE rolname LIKE 'pgmarket\_%';
CREATE EXTENSION pgmarket;
SELECT count(*) AS fresh_users FROM pgmarket.users;
SELECT pgmarket.create_user('x1@example.com', 'ext1', id => 'f0000000-0000-4000-8000-000000000001');
SELECT available_balance FROM pgmarket.add_funds('f0000000-0000-4000-8000-000000000001', 3);

-- an upgrade from every released version yields the schema of a fresh install
CREATE FUNCTION pg_temp.schema_signature() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT 'member ' || pg_describe_object(classid, objid, objsubid)
      FROM pg_depend
     WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
       AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgmarket')
    UNION ALL
    SELECT format('column %s.%s %s %s %s', c.relname, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(d.adbin, d.adrelid))
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE c.relnamespace = 'pgmarket'::regnamespace AND a.attnum > 0
       AND NOT a.attisdropped
    UNION ALL
    SELECT format('index %s', pg_get_indexdef(i.indexrelid))
      FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
     WHERE c.relnamespace = 'pgmarket'::regnamespace
    UNION ALL
    SELECT format('constraint %s %s', conname, pg_get_constraintdef(oid))
      FROM pg_constraint WHERE connamespace = 'pgmarket'::regnamespace
    UNION ALL
    SELECT format('function %s(%s) %s %s %s %s', p.proname,
                  pg_get_function_identity_arguments(p.oid),
                  pg_get_function_result(p.oid), p.prosecdef, p.proconfig,
                  md5(p.prosrc))
      FROM pg_proc p WHERE p.pronamespace = 'pgmarket'::regnamespace
    UNION ALL
    SELECT format('grant %s %s', c.relname, c.relacl)
      FROM pg_class c WHERE c.relnamespace = 'pgmarket'::regnamespace
    UNION ALL
    SELECT format('grant %s %s', p.proname, p.proacl)
      FROM pg_proc p WHERE p.pronamespace = 'pgmarket'::regnamespace
    UNION ALL
    SELECT format('trigger %s', pg_get_triggerdef(t.oid))
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = 'pgmarket'::regnamespace AND NOT t.tgisinternal
$$;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.schema_signature() AS s(line);
DROP EXTENSION pgmarket;
CREATE EXTENSION pgmarket VERSION '0.1.0';
ALTER EXTENSION pgmarket UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pgmarket';
CREATE TEMP TABLE upgraded AS SELECT * FROM pg_temp.schema_signature() AS s(line);
SELECT count(*) > 100 AS signature_has_content FROM fresh;
(SELECT 'only fresh: ' || line FROM fresh EXCEPT ALL SELECT 'only fresh: ' || line FROM upgraded)
UNION ALL
(SELECT 'only upgraded: ' || line FROM upgraded EXCEPT ALL SELECT 'only upgraded: ' || line FROM fresh);
