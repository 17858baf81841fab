-- A platform key carries its user's active flag (api_keys.user_active,
-- 0.11.0), which verify_api_key reads instead of the balance row: it
-- follows deactivate_user, reactivate_user and erase_user for every key of
-- the user, revoked ones too, and a database still on 0.10.0's schema
-- verifies through the balance row until ALTER EXTENSION UPDATE, which sets
-- the flag of keys whose user was deactivated before.
\set VERBOSITY terse
LOAD 'pgmarket';
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE FUNCTION pg_temp.write_key_file(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (%s) TO PROGRAM %L', q,
                   'umask 077 && cat > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key');
END $$;
SELECT pg_temp.write_key_file($$SELECT '1:' || md5(random()::text) || md5(random()::text)$$);
-- keys whose flag differs from their user's balance row (always none); a
-- SQL function, which outlives the DROP EXTENSION below
CREATE FUNCTION pg_temp.keys_out_of_step() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*)
      FROM pgmarket.api_keys k JOIN pgmarket.balances b USING (user_id)
     WHERE k.user_active IS DISTINCT FROM b.active
$$;

SELECT pgmarket.create_user('flag1@example.com', 'flag1', id => '5c000000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('flag2@example.com', 'flag2', id => '5c000000-0000-4000-8000-000000000002');
\set u1 '''5c000000-0000-4000-8000-000000000001'''
\set u2 '''5c000000-0000-4000-8000-000000000002'''
SELECT api_key AS a1 FROM pgmarket.create_api_key(:u1, 'one') \gset
SELECT api_key AS a2 FROM pgmarket.create_api_key(:u1, 'two') \gset
SELECT key_id AS k3, api_key AS a3 FROM pgmarket.create_api_key(:u1, 'three') \gset
SELECT api_key AS b1 FROM pgmarket.create_api_key(:u2, 'other user') \gset
SELECT pgmarket.revoke_api_key(:u1, :'k3');
SELECT name, user_active FROM pgmarket.api_keys
 WHERE user_id IN (:u1, :u2) ORDER BY created_at, name;

-- deactivation: every key of the user, and only that user's
SELECT pgmarket.deactivate_user(:u1);
SELECT name, user_active FROM pgmarket.api_keys
 WHERE user_id IN (:u1, :u2) ORDER BY created_at, name;
SELECT (SELECT count(*) FROM pgmarket.verify_api_key(:'a1')) AS one,
       (SELECT count(*) FROM pgmarket.verify_api_key(:'a2')) AS two,
       (SELECT count(*) FROM pgmarket.verify_api_key(:'b1')) AS other;
SELECT pg_temp.keys_out_of_step();
-- the audit trail shows the change on each key row
SELECT count(*) AS audited_flag_changes
  FROM pgmarket.audit_log
 WHERE table_name = 'pgmarket.api_keys' AND operation = 'UPDATE'
   AND new_values->>'user_active' = 'false' AND changed_columns = '{user_active}'
   AND (row_key->>'key_id')::uuid IN (SELECT key_id FROM pgmarket.api_keys WHERE user_id = :u1);
-- no key for a deactivated user
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5c000000-0000-4000-8000-000000000001', 'x')$$);

-- reactivation: the keys verify again, the revoked one does not
SELECT pgmarket.reactivate_user(:u1);
SELECT name, user_active FROM pgmarket.api_keys
 WHERE user_id IN (:u1, :u2) ORDER BY created_at, name;
SELECT (SELECT count(*) FROM pgmarket.verify_api_key(:'a1')) AS one,
       (SELECT count(*) FROM pgmarket.verify_api_key(:'a3')) AS revoked;
SELECT pg_temp.keys_out_of_step();
-- a deactivation rolled back leaves the keys as they were
BEGIN;
SELECT pgmarket.deactivate_user(:u1);
SELECT count(*) AS verifies_inside FROM pgmarket.verify_api_key(:'a1');
ROLLBACK;
SELECT count(*) AS verifies_after FROM pgmarket.verify_api_key(:'a1');
-- in REPEATABLE READ as in READ COMMITTED
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) AS verifies_before FROM pgmarket.verify_api_key(:'a2');
SELECT pgmarket.deactivate_user(:u1);
SELECT count(*) AS verifies_inside FROM pgmarket.verify_api_key(:'a2');
COMMIT;
SELECT pg_temp.keys_out_of_step();
SELECT pgmarket.reactivate_user(:u1);

-- erasure: the keys are revoked and their user inactive
SELECT pgmarket.erase_user(:u2);
SELECT name, user_active, revoked_at IS NOT NULL AS revoked
  FROM pgmarket.api_keys WHERE user_id = :u2;
SELECT count(*) AS verifies FROM pgmarket.verify_api_key(:'b1');
SELECT pg_temp.keys_out_of_step();

-- a superuser's hand edit of the flag is only that key's: verify reads the
-- key row alone
UPDATE pgmarket.api_keys SET user_active = false WHERE name = 'two';
SELECT (SELECT count(*) FROM pgmarket.verify_api_key(:'a1')) AS one,
       (SELECT count(*) FROM pgmarket.verify_api_key(:'a2')) AS two;
UPDATE pgmarket.api_keys SET user_active = true WHERE name = 'two';

-------------------------------------------------------------------------------
-- 0.10.0's schema under this library, then ALTER EXTENSION UPDATE
-------------------------------------------------------------------------------
DROP EXTENSION pgmarket;
CREATE EXTENSION pgmarket VERSION '0.10.0';
SELECT pgmarket.create_user('old1@example.com', 'old1', id => '5c000000-0000-4000-8000-000000000011');
SELECT pgmarket.create_user('old2@example.com', 'old2', id => '5c000000-0000-4000-8000-000000000012');
\set o1 '''5c000000-0000-4000-8000-000000000011'''
\set o2 '''5c000000-0000-4000-8000-000000000012'''
SELECT api_key AS c1 FROM pgmarket.create_api_key(:o1, 'old one') \gset
SELECT api_key AS c2 FROM pgmarket.create_api_key(:o2, 'old two') \gset
-- verify reads the balance row for the flag
SELECT (SELECT count(*) FROM pgmarket.verify_api_key(:'c1')) AS one,
       (SELECT count(*) FROM pgmarket.verify_api_key(:'c2')) AS two;
SELECT pgmarket.deactivate_user(:o1);
SELECT (SELECT count(*) FROM pgmarket.verify_api_key(:'c1')) AS one,
       (SELECT count(*) FROM pgmarket.verify_api_key(:'c2')) AS two;
SELECT count(*) AS user_active_columns
  FROM pg_attribute
 WHERE attrelid = 'pgmarket.api_keys'::regclass AND attname = 'user_active';
ALTER EXTENSION pgmarket UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pgmarket';
SELECT name, user_active FROM pgmarket.api_keys ORDER BY name;
SELECT (SELECT count(*) FROM pgmarket.verify_api_key(:'c1')) AS one,
       (SELECT count(*) FROM pgmarket.verify_api_key(:'c2')) AS two;
SELECT pg_temp.keys_out_of_step();
SELECT pgmarket.reactivate_user(:o1);
SELECT count(*) AS verifies FROM pgmarket.verify_api_key(:'c1');
SELECT pg_temp.keys_out_of_step();

COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
