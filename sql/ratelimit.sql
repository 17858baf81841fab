-- Tiers and rate limits of platform keys: the tiers table and set_tier,
-- create_api_key's check of the tier, charge_api_key, reserve_api_key and
-- check_rate_limit under a tier's limits, and bad input.
--
-- This cluster does not preload the library, so the limiter counts in the
-- table rate_counters (tests/t/060_rate_limits.pl runs both modes).  Waits
-- are shown as ranges: the limiter reads the clock.
\set VERBOSITY terse
LOAD 'pgmarket';
SHOW pgmarket.rate_limiter;
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(regexp_replace(SQLSTATE || ': ' || SQLERRM,
                          'sk_(live|test)_[0-9a-f]{16}', '<prefix>', 'g'),
                          'retry after [0-9]+ ms', 'retry after <n> ms');
END $$;
CREATE FUNCTION pg_temp.write_key_file(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (%s) TO PROGRAM %L', q,
                   'umask 077 && cat > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key');
END $$;
SELECT pg_temp.write_key_file($$SELECT '1:' || md5(random()::text) || md5(random()::text)$$);

SELECT pgmarket.create_user('rate1@example.com', 'rate1', id => '5c000000-0000-4000-8000-000000000001');
\set u1 '''5c000000-0000-4000-8000-000000000001'''
SELECT available_balance FROM pgmarket.add_funds(:u1, 100);

-------------------------------------------------------------------------------
-- tiers
-------------------------------------------------------------------------------
-- the documented defaults
SELECT * FROM pgmarket.tiers ORDER BY requests_per_minute;
SELECT pgmarket.set_tier('tiny', 3, 100, 1);
SELECT pgmarket.set_tier('tokens-only', NULL, 50);
SELECT pgmarket.set_tier('open', NULL, NULL);
SELECT * FROM pgmarket.tiers WHERE name IN ('tiny', 'tokens-only', 'open') ORDER BY name;
-- set_tier changes a row in place
SELECT pgmarket.set_tier('open', 1000, NULL, 5);
SELECT * FROM pgmarket.tiers WHERE name = 'open';
SELECT pgmarket.set_tier('open', NULL, NULL, 0);

-- bad input: 22004, 22023; nothing changes
SELECT pg_temp.err($$SELECT pgmarket.set_tier(NULL, 1, 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.set_tier('x', 1, 1, NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.set_tier('Gold!', 1, 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.set_tier('', 1, 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.set_tier(repeat('a', 33), 1, 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.set_tier(E'a\nb', 1, 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.set_tier('x', -1, 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.set_tier('x', 0, 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.set_tier('x', 1, -5)$$);
SELECT pg_temp.err($$SELECT pgmarket.set_tier('x', 1, 0)$$);
SELECT pg_temp.err($$SELECT pgmarket.set_tier('x', 1, 1, -1)$$);
SELECT pg_temp.err($$SELECT pgmarket.set_tier('tiny', -2147483648, 1)$$);
SELECT count(*) AS no_tier_x FROM pgmarket.tiers WHERE name = 'x';
SELECT * FROM pgmarket.tiers WHERE name = 'tiny';

-- create_api_key refuses an unknown tier (22023), before the account
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5c000000-0000-4000-8000-000000000001', 'x', rate_limit_tier => 'gold')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5c000000-0000-4000-8000-0000000000ff', 'x', rate_limit_tier => 'gold')$$);
SELECT pg_temp.err($$SELECT pgmarket.create_api_key('5c000000-0000-4000-8000-000000000001', 'x', rate_limit_tier => NULL)$$);
SELECT count(*) AS keys FROM pgmarket.api_keys WHERE user_id = :u1;

-------------------------------------------------------------------------------
-- requests: 3 a minute plus a burst of 1
-------------------------------------------------------------------------------
SELECT api_key AS a1 FROM pgmarket.create_api_key(:u1, 'tiny', rate_limit_tier => 'tiny') \gset
-- a quiet key has its whole allowance
SELECT * FROM pgmarket.check_rate_limit(:'a1');
SELECT available_balance FROM pgmarket.charge_api_key(:'a1', 1, 'm', 10);
SELECT available_balance FROM pgmarket.charge_api_key(:'a1', 1, 'm', 10);
-- check_rate_limit consumes nothing
SELECT * FROM pgmarket.check_rate_limit(:'a1');
SELECT * FROM pgmarket.check_rate_limit(:'a1');
SELECT pgmarket.reserve_api_key(:'a1', 1) > 0 AS reserved;
SELECT available_balance FROM pgmarket.charge_api_key(:'a1', 1, 'm', 10);
-- the fifth call in the minute: PM005, nothing charged, reserved or written
SELECT count(*) AS entries_before FROM pgmarket.ledger WHERE user_id = :u1 \gset
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'm', 10)$$, :'a1'));
SELECT pg_temp.err(format($$SELECT pgmarket.reserve_api_key(%L, 1)$$, :'a1'));
SELECT count(*) - :entries_before AS new_entries,
       (SELECT count(*) FROM pgmarket.reservations WHERE user_id = :u1) AS holds
  FROM pgmarket.ledger WHERE user_id = :u1;
SELECT available_balance FROM pgmarket.get_balance(:u1);
SELECT allowed, retry_after_ms BETWEEN 59000 AND 61000 AS waits_a_minute,
       remaining_requests
  FROM pgmarket.check_rate_limit(:'a1');
-- the message says when to retry
SELECT set_config('my.a1', :'a1', false) IS NOT NULL AS set;
DO $$
BEGIN
    PERFORM pgmarket.charge_api_key(current_setting('my.a1'), 1, 'm');
EXCEPTION WHEN SQLSTATE 'PM005' THEN
    RAISE NOTICE 'PM005, says when: %',
        SQLERRM ~ 'retry after [0-9]+ ms$';
END $$;
-- and the DETAIL begins with the same wait in a fixed form, for programs
DO $$
DECLARE
    msg text;
    detail text;
BEGIN
    PERFORM pgmarket.charge_api_key(current_setting('my.a1'), 1, 'm');
EXCEPTION WHEN SQLSTATE 'PM005' THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'PM005 detail: %, the same wait: %',
        regexp_replace(detail, '^retry_after_ms=[0-9]+: ', 'retry_after_ms=<n>: '),
        substring(detail FROM '^retry_after_ms=([0-9]+):') =
        substring(msg FROM 'retry after ([0-9]+) ms$');
END $$;

-------------------------------------------------------------------------------
-- a call whose charge fails gives its request back; so does a rollback
-------------------------------------------------------------------------------
SELECT api_key AS a2 FROM pgmarket.create_api_key(:u1, 'tiny 2', rate_limit_tier => 'tiny') \gset
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1000, 'm', 10)$$, :'a2'));
SELECT remaining_requests FROM pgmarket.check_rate_limit(:'a2');
BEGIN;
SELECT available_balance FROM pgmarket.charge_api_key(:'a2', 1, 'm', 10);
SELECT remaining_requests FROM pgmarket.check_rate_limit(:'a2');
ROLLBACK;
SELECT remaining_requests FROM pgmarket.check_rate_limit(:'a2');
-- a replayed idempotency key counts as a request too
SELECT replayed FROM pgmarket.charge_api_key(:'a2', 1, 'm', 10, 'idem-1');
SELECT replayed FROM pgmarket.charge_api_key(:'a2', 1, 'm', 10, 'idem-1');
SELECT remaining_requests FROM pgmarket.check_rate_limit(:'a2');

-------------------------------------------------------------------------------
-- tokens: 50 a minute, no request limit
-------------------------------------------------------------------------------
SELECT api_key AS a3 FROM pgmarket.create_api_key(:u1, 'tokens', rate_limit_tier => 'tokens-only') \gset
SELECT * FROM pgmarket.check_rate_limit(:'a3');
SELECT available_balance FROM pgmarket.charge_api_key(:'a3', 1, 'm', 30);
-- the call's own tokens count before it is admitted: 30 + 30 > 50
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'm', 30)$$, :'a3'));
SELECT available_balance FROM pgmarket.charge_api_key(:'a3', 1, 'm', 20);
-- a reservation counts no tokens
SELECT pgmarket.reserve_api_key(:'a3', 1) > 0 AS reserved;
SELECT allowed, retry_after_ms BETWEEN 59000 AND 61000 AS waits_a_minute,
       remaining_requests
  FROM pgmarket.check_rate_limit(:'a3');
-- more tokens than the tier allows a minute can never pass: 22023
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'm', 51)$$, :'a3'));

-------------------------------------------------------------------------------
-- no limits; tiers changed take effect at the next call
-------------------------------------------------------------------------------
SELECT api_key AS a4 FROM pgmarket.create_api_key(:u1, 'open', rate_limit_tier => 'open') \gset
SELECT count((pgmarket.charge_api_key(:'a4', 0.01, 'm', 1000000)).entry_id) AS charged
  FROM generate_series(1, 20);
SELECT * FROM pgmarket.check_rate_limit(:'a4');
SELECT count(*) AS rows FROM pgmarket.rate_counters WHERE key_id = (SELECT key_id FROM pgmarket.verify_api_key(:'a4'));
SELECT pgmarket.set_tier('open', 20, NULL);
SELECT allowed, remaining_requests FROM pgmarket.check_rate_limit(:'a4');
SELECT available_balance > 0 AS charged FROM pgmarket.charge_api_key(:'a4', 0.01, 'm');
SELECT allowed, remaining_requests FROM pgmarket.check_rate_limit(:'a4');
-- with a request limit and no token limit, tokens are not summed: no
-- amount of them can overflow a counter
SELECT count((pgmarket.charge_api_key(:'a4', 0.01, 'm', 9000000000000000000)).entry_id) AS charged
  FROM generate_series(1, 3);
SELECT allowed, remaining_requests FROM pgmarket.check_rate_limit(:'a4');
SELECT pgmarket.set_tier('open', NULL, NULL);
-- a session keeps the tiers it read, and forgets them when set_tier
-- changes one: at once in its own transaction, and back again when that
-- transaction (or the savepoint the change was made under) rolls back
SELECT allowed, remaining_requests FROM pgmarket.check_rate_limit(:'a4');
BEGIN;
SELECT pgmarket.set_tier('open', 1, NULL);
SELECT allowed, remaining_requests FROM pgmarket.check_rate_limit(:'a4');
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0.01, 'm')$$, :'a4'));
ROLLBACK;
SELECT allowed, remaining_requests FROM pgmarket.check_rate_limit(:'a4');
BEGIN;
SAVEPOINT s;
SELECT pgmarket.set_tier('open', 1, NULL);
SELECT allowed, remaining_requests FROM pgmarket.check_rate_limit(:'a4');
ROLLBACK TO SAVEPOINT s;
SELECT allowed, remaining_requests FROM pgmarket.check_rate_limit(:'a4');
COMMIT;

-------------------------------------------------------------------------------
-- bad input to check_rate_limit
-------------------------------------------------------------------------------
SELECT pg_temp.err($$SELECT pgmarket.check_rate_limit(NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.check_rate_limit('sk_live_nope')$$);
SELECT pg_temp.err($$SELECT pgmarket.check_rate_limit('')$$);
-- a key's arguments come before its limit: NULL model with a limited key
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, NULL)$$, :'a1'));
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 1, 'm', -1)$$, :'a1'));
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0, 'm')$$, :'a1'));

-------------------------------------------------------------------------------
-- roles: the application checks, the administrator sets
-------------------------------------------------------------------------------
SET ROLE pgmarket_app;
SELECT pg_temp.err($$SELECT pgmarket.set_tier('x', 1, 1)$$);
SELECT allowed FROM pgmarket.check_rate_limit(:'a4');
SELECT count(*) AS tiers_readable FROM pgmarket.tiers WHERE name = 'free';
SELECT pg_temp.err($$SELECT * FROM pgmarket.rate_counters$$);
SELECT pg_temp.err($$UPDATE pgmarket.tiers SET burst = 0$$);
RESET ROLE;
SET ROLE pgmarket_admin;
SELECT pgmarket.set_tier('admin-set', 1, 1);
RESET ROLE;

-------------------------------------------------------------------------------
-- between the library of 0.7.0 and ALTER EXTENSION UPDATE: keys of 0.6.0
-- work as they did, unlimited; after it, the installed tiers limit them,
-- and a tier of 0.6.0 that is not one of them becomes a tier without limits
-------------------------------------------------------------------------------
DROP EXTENSION pgmarket;
CREATE EXTENSION pgmarket VERSION '0.6.0';
SELECT pgmarket.create_user('rate2@example.com', 'rate2', id => '5c000000-0000-4000-8000-000000000002');
\set u2 '''5c000000-0000-4000-8000-000000000002'''
SELECT available_balance FROM pgmarket.add_funds(:u2, 100);
SELECT api_key AS f1 FROM pgmarket.create_api_key(:u2, 'free key') \gset
SELECT api_key AS g1 FROM pgmarket.create_api_key(:u2, 'gold key', rate_limit_tier => 'gold') \gset
SELECT count((pgmarket.charge_api_key(:'f1', 0.01, 'm')).entry_id) AS charged FROM generate_series(1, 80);
ALTER EXTENSION pgmarket UPDATE;
SELECT * FROM pgmarket.tiers ORDER BY name;
SELECT allowed, remaining_requests FROM pgmarket.check_rate_limit(:'f1');
SELECT count((pgmarket.charge_api_key(:'f1', 0.01, 'm')).entry_id) AS charged FROM generate_series(1, 70);
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0.01, 'm')$$, :'f1'));
SELECT count((pgmarket.charge_api_key(:'g1', 0.01, 'm')).entry_id) AS charged FROM generate_series(1, 80);

-- with pgmarket.actor set, check_rate_limit refuses another user's key
-- (42501) as charge_api_key does, and answers for the actor's own
BEGIN;
SET LOCAL pgmarket.actor = 'ab000000-0000-4000-8000-0000000000ff';
SELECT pg_temp.err(format($$SELECT * FROM pgmarket.check_rate_limit(%L)$$, :'f1'));
SELECT pg_temp.err(format($$SELECT pgmarket.charge_api_key(%L, 0.01, 'm')$$, :'f1'));
ROLLBACK;
BEGIN;
SELECT set_config('pgmarket.actor', :u2, true) IS NOT NULL AS acting_as_owner;
SELECT count(*) AS own_key_answered FROM pgmarket.check_rate_limit(:'f1');
ROLLBACK;

COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
