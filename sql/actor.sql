-- proxy_actor(actor, value): the node's side of the pgmarket.actor that the
-- PL/Proxy front forwards (proxy/).  It returns value as it came, and a
-- non-empty actor is set for the rest of the transaction, from the role
-- that pgmarket.proxy_role names (or a member) only; from any other role,
-- or with the setting empty, 42501.  Wrapped around the first argument of
-- an API call, it runs before the call does.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT pgmarket.create_user('pa@example.com', 'proxyactor_a', id => '6b000001-0000-4000-8000-00000000000a');
SELECT pgmarket.create_user('pb@example.com', 'proxyactor_b', id => '6b000001-0000-4000-8000-00000000000b');
SELECT available_balance FROM pgmarket.add_funds('6b000001-0000-4000-8000-00000000000a', 5);

DROP ROLE IF EXISTS pgmarket_test_fwd_gateway, pgmarket_test_fwd_other,
    pgmarket_test_fwd_proxy;
CREATE ROLE pgmarket_test_fwd_proxy NOLOGIN IN ROLE pgmarket_app;
CREATE ROLE pgmarket_test_fwd_gateway NOLOGIN IN ROLE pgmarket_app, pgmarket_test_fwd_proxy;
CREATE ROLE pgmarket_test_fwd_other NOLOGIN IN ROLE pgmarket_app;

-- the value comes back as it went in, NULL included; a NULL or empty actor
-- sets nothing, whoever forwards it
SELECT pgmarket.proxy_actor('', 42) AS int_value,
       pgmarket.proxy_actor(NULL, 'x'::text) AS text_value,
       pgmarket.proxy_actor('', NULL::uuid) IS NULL AS null_value;
SHOW pgmarket.actor;

-- pgmarket.proxy_role unset: no role may forward an actor, a superuser
-- neither
SHOW pgmarket.proxy_role;
SELECT pg_temp.err($$SELECT pgmarket.proxy_actor('6b000001-0000-4000-8000-00000000000a', 1)$$);

-- only a superuser sets it
SET ROLE pgmarket_test_fwd_gateway;
SELECT pg_temp.err($$SET pgmarket.proxy_role = 'pgmarket_test_fwd_gateway'$$);
RESET ROLE;
SET pgmarket.proxy_role = 'pgmarket_test_fwd_proxy';

-- a role that is not a member: refused, for its own user too, never ignored
SET ROLE pgmarket_test_fwd_other;
SELECT pg_temp.err($$SELECT user_id FROM pgmarket.get_balance(pgmarket.proxy_actor('6b000001-0000-4000-8000-00000000000a', '6b000001-0000-4000-8000-00000000000a'::uuid))$$);
-- an empty actor forwards nothing: the trusted back end, as without the proxy
SELECT user_id FROM pgmarket.get_balance(pgmarket.proxy_actor('', '6b000001-0000-4000-8000-00000000000b'::uuid));
RESET ROLE;

-- a member of pgmarket.proxy_role forwards an actor, and the call it wraps
-- runs under it: its own user, yes; another user, 42501
SET ROLE pgmarket_test_fwd_gateway;
SELECT user_id, available_balance FROM pgmarket.get_balance(pgmarket.proxy_actor('6b000001-0000-4000-8000-00000000000a', '6b000001-0000-4000-8000-00000000000a'::uuid));
SELECT pg_temp.err($$SELECT user_id FROM pgmarket.get_balance(pgmarket.proxy_actor('6b000001-0000-4000-8000-00000000000a', '6b000001-0000-4000-8000-00000000000b'::uuid))$$);
-- deduct_batch refuses the other user's charge row by row, as with SET
SELECT ordinal, sqlstate, available_balance
  FROM pgmarket.deduct_batch(pgmarket.proxy_actor('6b000001-0000-4000-8000-00000000000a',
       ARRAY[('6b000001-0000-4000-8000-00000000000a', 1, 'm-fwd', 0, NULL),
             ('6b000001-0000-4000-8000-00000000000b', 1, 'm-fwd', 0, NULL)]::pgmarket.charge[]));
-- the views, behind row-level security, in the form the proxy sends for
-- them: only the actor's row
SELECT s.username
  FROM pgmarket.proxy_actor('6b000001-0000-4000-8000-00000000000a', true) AS a(ok),
       LATERAL (SELECT username FROM pgmarket.users
                 WHERE a.ok AND username LIKE 'proxyactor%' OFFSET 0) AS s;
-- without an actor, both
SELECT count(*) AS both_users FROM pgmarket.users WHERE username LIKE 'proxyactor%';
-- the actor lasts until the end of the transaction, and no longer
BEGIN;
SELECT pgmarket.proxy_actor('support-7', 1);
SHOW pgmarket.actor;
COMMIT;
SHOW pgmarket.actor;
RESET ROLE;

-- the role itself may forward, and a superuser is a member of every role
SET ROLE pgmarket_test_fwd_proxy;
SELECT pgmarket.proxy_actor('6b000001-0000-4000-8000-00000000000b', 'role'::text) AS proxy_role_itself;
RESET ROLE;
SELECT pgmarket.proxy_actor('6b000001-0000-4000-8000-00000000000b', 'superuser'::text) AS superuser;

-- a setting that names no role: nobody
SET pgmarket.proxy_role = 'pgmarket_test_fwd_missing';
SELECT pg_temp.err($$SELECT pgmarket.proxy_actor('6b000001-0000-4000-8000-00000000000a', 1)$$);
RESET pgmarket.proxy_role;

DROP ROLE pgmarket_test_fwd_gateway,
    pgmarket_test_fwd_other, pgmarket_test_fwd_proxy;
