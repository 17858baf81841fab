-- Account roles: add_account_role, grant_user_role, revoke_user_role,
-- has_role, and who may call them.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT pgmarket.create_user('ro.ann@example.com', 'ro_ann',
                            id => 'ac200000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('ro.bob@example.com', 'ro_bob',
                            id => 'ac200000-0000-4000-8000-000000000002');
\set ann '''ac200000-0000-4000-8000-000000000001'''
\set bob '''ac200000-0000-4000-8000-000000000002'''

-- the roles that ship
SELECT name FROM pgmarket.roles ORDER BY name;

-- grant, again (no change), has_role, revoke, again (no change)
SELECT pgmarket.grant_user_role(:ann, 'developer');
SELECT pgmarket.grant_user_role(:ann, 'developer');
SELECT roles FROM pgmarket.users WHERE id = :ann;
SELECT pgmarket.has_role(:ann, 'developer') AS dev, pgmarket.has_role(:ann, 'admin') AS admin;
SELECT pgmarket.revoke_user_role(:ann, 'user');
SELECT pgmarket.revoke_user_role(:ann, 'user');
SELECT roles FROM pgmarket.users WHERE id = :ann;
SELECT pgmarket.has_role(:ann, 'user') AS still_user;
-- every role may go; has_role is then false for all
SELECT pgmarket.revoke_user_role(:ann, 'developer');
SELECT roles FROM pgmarket.users WHERE id = :ann;
SELECT pgmarket.grant_user_role(:ann, 'user');

-- bad roles: malformed and unregistered are 22023, before the user
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-000000000001', 'wizard')$$);
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-000000000001', 'Admin')$$);
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-000000000001', '')$$);
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-000000000001', repeat('a', 33))$$);
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-000000000001', E'ad\nmin')$$);
SELECT pg_temp.err($$SELECT pgmarket.revoke_user_role('ac200000-0000-4000-8000-000000000001', 'wizard')$$);
SELECT pg_temp.err($$SELECT pgmarket.has_role('ac200000-0000-4000-8000-000000000001', 'wizard')$$);
SELECT pg_temp.err($$SELECT pgmarket.has_role('ac200000-0000-4000-8000-000000000001', 'x y')$$);
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-0000000000ff', 'wizard')$$);
-- unknown and deactivated users are PM002; NULLs 22004
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-0000000000ff', 'admin')$$);
SELECT pg_temp.err($$SELECT pgmarket.revoke_user_role('ac200000-0000-4000-8000-0000000000ff', 'admin')$$);
SELECT pg_temp.err($$SELECT pgmarket.has_role('ac200000-0000-4000-8000-0000000000ff', 'admin')$$);
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role(NULL, 'admin')$$);
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.revoke_user_role(NULL, 'admin')$$);
SELECT pg_temp.err($$SELECT pgmarket.revoke_user_role('ac200000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.has_role(NULL, 'admin')$$);
SELECT pg_temp.err($$SELECT pgmarket.has_role('ac200000-0000-4000-8000-000000000001', NULL)$$);
SELECT pgmarket.deactivate_user(:bob);
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-000000000002', 'admin')$$);
SELECT pg_temp.err($$SELECT pgmarket.has_role('ac200000-0000-4000-8000-000000000002', 'user')$$);
SELECT pgmarket.reactivate_user(:bob);
SELECT roles FROM pgmarket.users WHERE id = :bob;

-- add_account_role: a new role, then granted; names as the grants check
SELECT pgmarket.add_account_role('moderator', 'staff who moderate chats');
SELECT pgmarket.add_account_role('moderator', 'staff who moderate the chats');
SELECT pgmarket.add_account_role('beta-tester_2');
SELECT name, description FROM pgmarket.roles
 WHERE name IN ('moderator', 'beta-tester_2') ORDER BY name;
SELECT pgmarket.grant_user_role(:bob, 'moderator');
SELECT pgmarket.has_role(:bob, 'moderator');
SELECT pg_temp.err($$SELECT pgmarket.add_account_role('Moderator', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_account_role('mod erator', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_account_role(repeat('m', 33), 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_account_role('', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_account_role(NULL, 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.add_account_role('m2', repeat('d', 501))$$);
SELECT pg_temp.err($$SELECT pgmarket.add_account_role('m2', E'line\nbreak')$$);
SELECT count(*) FROM pgmarket.roles WHERE name = 'm2';
-- create_user takes the new role too
SELECT pgmarket.create_user('ro.cy@example.com', 'ro_cy', roles => '{user,moderator}',
                            id => 'ac200000-0000-4000-8000-000000000003');

-- with pgmarket.actor set, nobody grants or revokes, for any user
BEGIN;
SET LOCAL pgmarket.actor = 'ac200000-0000-4000-8000-000000000001';
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-000000000001', 'admin')$$);
SELECT pg_temp.err($$SELECT pgmarket.revoke_user_role('ac200000-0000-4000-8000-000000000001', 'user')$$);
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-000000000002', 'admin')$$);
-- has_role: the actor's own, not another's
SELECT pgmarket.has_role('ac200000-0000-4000-8000-000000000001', 'admin');
SELECT pg_temp.err($$SELECT pgmarket.has_role('ac200000-0000-4000-8000-000000000002', 'admin')$$);
ROLLBACK;
BEGIN;
SET LOCAL pgmarket.actor = 'support-7';
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-000000000001', 'admin')$$);
ROLLBACK;
SELECT roles FROM pgmarket.users WHERE id = :ann;

-- the roles: pgmarket_app grants without an actor; add_account_role is the
-- administrator's
SET ROLE pgmarket_app;
SELECT pgmarket.grant_user_role(:ann, 'support');
SELECT pgmarket.has_role(:ann, 'support');
SELECT pgmarket.revoke_user_role(:ann, 'support');
SELECT pg_temp.err($$SELECT pgmarket.add_account_role('hacker', 'x')$$);
RESET ROLE;
BEGIN;
SET ROLE pgmarket_app;
SET LOCAL pgmarket.actor = 'ac200000-0000-4000-8000-000000000001';
SELECT pg_temp.err($$SELECT pgmarket.grant_user_role('ac200000-0000-4000-8000-000000000001', 'admin')$$);
ROLLBACK;
SET ROLE pgmarket_admin;
SELECT pgmarket.add_account_role('auditor-staff', 'reads the trail');
SELECT pgmarket.grant_user_role(:ann, 'auditor-staff');
RESET ROLE;
SELECT roles FROM pgmarket.users WHERE id = :ann;

-- every change is in the audit trail
SELECT table_name, operation, changed_columns, new_values
  FROM pgmarket.audit_log
 WHERE (table_name = 'pgmarket.accounts' AND row_key->>'id' = 'ac200000-0000-4000-8000-000000000001'
        AND operation = 'UPDATE')
    OR (table_name = 'pgmarket.roles' AND row_key->>'name' IN ('moderator', 'auditor-staff'))
 ORDER BY id;
