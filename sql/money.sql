-- Amounts at and around every limit, on every path that takes one: each is
-- accepted exactly when it is a positive whole number of micro-credits below
-- 9,000,000,000,000 credits, and refused with the SQLSTATE the contract
-- names otherwise (22023: NaN, infinite, zero, negative, finer than a
-- micro-credit; 22003: at or above the limit), with the books unchanged.
-- Then the same rule against PostgreSQL's own numeric arithmetic for a few
-- thousand random amounts, the deduct_batch exploit of 0.4.0, arrays that
-- are not a list of charges, reservation ttls and the spend counters of
-- platform keys.
--
-- Like api_keys.sql, the test writes the master key file that the test
-- cluster's pgmarket.master_key_file names, and removes it at the end.
\set VERBOSITY terse
LOAD 'pgmarket';
-- an error as its SQLSTATE and message, with a platform key's random prefix
-- masked
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM,
                          'sk_(live|test)_[0-9a-f]{16}', '<prefix>', 'g');
END $$;
CREATE FUNCTION pg_temp.write_key_file(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (%s) TO PROGRAM %L', q,
                   'umask 077 && cat > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key');
END $$;
SELECT pg_temp.write_key_file($$SELECT '1:' || md5(random()::text) || md5(random()::text)$$);

-- one user per path, each with an empty balance
SELECT pgmarket.create_user(format('money%s@example.com', i), format('money%s', i),
                            id => format('6d000000-0000-4000-8000-%s', lpad(i::text, 12, '0'))::uuid)
  FROM generate_series(1, 12) i;
CREATE TEMP TABLE path_user (path text PRIMARY KEY, user_id uuid NOT NULL);
INSERT INTO path_user VALUES
    ('add_funds',        '6d000000-0000-4000-8000-000000000001'),
    ('deduct_balance',   '6d000000-0000-4000-8000-000000000002'),
    ('reserve',          '6d000000-0000-4000-8000-000000000003'),
    ('settle',           '6d000000-0000-4000-8000-000000000004'),
    ('refund',           '6d000000-0000-4000-8000-000000000005'),
    ('deduct_batch',     '6d000000-0000-4000-8000-000000000006'),
    ('record_completion','6d000000-0000-4000-8000-000000000007'),
    ('save_chat_message','6d000000-0000-4000-8000-000000000008'),
    ('create_api_key',   '6d000000-0000-4000-8000-000000000009'),
    ('charge_api_key',   '6d000000-0000-4000-8000-000000000010'),
    ('reserve_api_key',  '6d000000-0000-4000-8000-000000000011');
\set ux '''6d000000-0000-4000-8000-000000000012'''
CREATE TEMP TABLE session_of (path text PRIMARY KEY, session_id uuid NOT NULL);
INSERT INTO session_of
    SELECT path, pgmarket.create_chat_session(user_id, 'money-model')
      FROM path_user WHERE path IN ('record_completion', 'save_chat_message');
CREATE TEMP TABLE key_of (path text PRIMARY KEY, api_key text NOT NULL);
INSERT INTO key_of
    SELECT path, (pgmarket.create_api_key(user_id, 'money')).api_key
      FROM path_user WHERE path IN ('charge_api_key', 'reserve_api_key');

-- Everything an amount may change, as one digest.
CREATE FUNCTION pg_temp.books() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(concat_ws(',', user_id, total, spent, reserved, next_expiry),
                           ';' ORDER BY user_id) FROM pgmarket.balances),
        (SELECT string_agg(concat_ws(',', entry_id, user_id, kind, amount, available,
                                     model_id, tokens_used, idempotency_key, refund_of),
                           ';' ORDER BY entry_id) FROM pgmarket.ledger),
        (SELECT string_agg(concat_ws(',', reservation_id, amount, state, settled_amount),
                           ';' ORDER BY reservation_id) FROM pgmarket.reservations),
        (SELECT string_agg(concat_ws(',', key_id, spend_limit, period_spent, total_spent),
                           ';' ORDER BY key_id)
           FROM pgmarket.api_keys JOIN pgmarket.api_key_spend USING (key_id)),
        (SELECT string_agg(concat_ws(',', message_id, tokens, cost),
                           ';' ORDER BY message_id) FROM pgmarket.chat_messages)))
$$;

-- What the contract says of an amount, in numeric arithmetic: '00000'
-- when it is accepted, else its SQLSTATE.  Zero is a valid message cost.
CREATE FUNCTION pg_temp.expected(amount numeric, zero_ok boolean DEFAULT false)
    RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN amount IN ('NaN', 'Infinity', '-Infinity') THEN '22023'
        WHEN amount = 0 THEN CASE WHEN zero_ok THEN '00000' ELSE '22023' END
        WHEN amount < 0 THEN '22023'
        WHEN amount >= 9000000000000 THEN '22003'
        WHEN amount * 1000000 <> trunc(amount * 1000000) THEN '22023'
        ELSE '00000' END
$$;

-- One amount through one path, inside a subtransaction that is always
-- rolled back, so that every call starts from the same books.  Paths that
-- take money out first fund their user to just below the limit, so that
-- every valid amount fits.  Returns the SQLSTATE; 'BOOKS' when a refused
-- charge of a batch changed the books, 'SUM' when an accepted amount did
-- not land exactly.
CREATE FUNCTION pg_temp.outcome(p text, amount numeric) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    u uuid := (SELECT user_id FROM path_user WHERE path = p);
    top numeric := 8999999999999.999999;
    st text;
    id bigint;
    before text;
    b pgmarket.balance;
BEGIN
    BEGIN
        IF p NOT IN ('add_funds', 'save_chat_message', 'create_api_key') THEN
            PERFORM pgmarket.add_funds(u, top);
        END IF;
        CASE p
        WHEN 'add_funds' THEN
            PERFORM pgmarket.add_funds(u, amount);
            b := pgmarket.get_balance(u);
            IF b.total_balance <> amount OR b.available_balance <> amount THEN
                st := 'SUM';
            END IF;
        WHEN 'deduct_balance' THEN
            PERFORM pgmarket.deduct_balance(u, amount, 'money-model');
            b := pgmarket.get_balance(u);
            IF b.spent_balance <> amount OR b.available_balance <> top - amount THEN
                st := 'SUM';
            END IF;
        WHEN 'reserve' THEN
            PERFORM pgmarket.reserve(u, amount);
            b := pgmarket.get_balance(u);
            IF b.reserved_balance <> amount OR b.available_balance <> top - amount THEN
                st := 'SUM';
            END IF;
        WHEN 'settle' THEN
            id := pgmarket.reserve(u, top);
            PERFORM pgmarket.settle(u, id, amount, 'money-model');
            b := pgmarket.get_balance(u);
            IF b.spent_balance <> amount OR b.reserved_balance <> 0 THEN
                st := 'SUM';
            END IF;
        WHEN 'refund' THEN
            id := (pgmarket.deduct_balance(u, top, 'money-model')).entry_id;
            PERFORM pgmarket.refund(u, id, amount);
            b := pgmarket.get_balance(u);
            IF b.spent_balance <> top - amount OR b.available_balance <> amount THEN
                st := 'SUM';
            END IF;
        WHEN 'deduct_batch' THEN
            before := pg_temp.books();
            SELECT r.sqlstate INTO st
              FROM pgmarket.deduct_batch(ARRAY[(u, amount, 'money-model', 0, NULL)]::pgmarket.charge[]) r;
            IF st <> '00000' THEN
                IF pg_temp.books() <> before THEN
                    st := 'BOOKS';
                END IF;
            ELSE
                b := pgmarket.get_balance(u);
                IF b.spent_balance <> amount THEN
                    st := 'SUM';
                END IF;
            END IF;
        WHEN 'record_completion' THEN
            PERFORM pgmarket.record_completion(u, (SELECT session_id FROM session_of WHERE path = p),
                                               'done', 1, amount);
            b := pgmarket.get_balance(u);
            IF b.spent_balance <> amount THEN
                st := 'SUM';
            END IF;
        WHEN 'save_chat_message' THEN
            id := pgmarket.save_chat_message(u, (SELECT session_id FROM session_of WHERE path = p),
                                             'assistant', 'hi', 1, amount);
            IF (SELECT cost FROM pgmarket.get_chat_history(u, (SELECT session_id FROM session_of WHERE path = p), 1)) <> amount THEN
                st := 'SUM';
            END IF;
        WHEN 'create_api_key' THEN
            PERFORM pgmarket.create_api_key(u, 'limited', spend_limit => amount);
        WHEN 'charge_api_key' THEN
            PERFORM pgmarket.charge_api_key((SELECT api_key FROM key_of WHERE path = p),
                                            amount, 'money-model');
            b := pgmarket.get_balance(u);
            IF b.spent_balance <> amount THEN
                st := 'SUM';
            END IF;
        WHEN 'reserve_api_key' THEN
            PERFORM pgmarket.reserve_api_key((SELECT api_key FROM key_of WHERE path = p), amount);
            b := pgmarket.get_balance(u);
            IF b.reserved_balance <> amount THEN
                st := 'SUM';
            END IF;
        END CASE;
        st := coalesce(st, '00000');
        RAISE EXCEPTION 'roll back' USING ERRCODE = 'P0999';
    EXCEPTION
        WHEN SQLSTATE 'P0999' THEN
            NULL;
        WHEN OTHERS THEN
            st := SQLSTATE;
    END;
    RETURN st;
END $$;

SELECT pg_temp.books() AS books_at_start \gset
-- Rolled back holds still use up reservation ids; reservations.sql, which
-- runs next, counts its ids from where the tests before it left them.
SELECT last_value AS hold_seq_value, is_called AS hold_seq_called
  FROM pgmarket.reservation_id_seq \gset

-------------------------------------------------------------------------------
-- the limits, on every path
-------------------------------------------------------------------------------
CREATE TEMP TABLE boundary (ord serial, label text, amount numeric);
INSERT INTO boundary (label, amount) VALUES
    ('1 micro-credit',            0.000001),
    ('1.0000000',                 1.0000000),
    ('1.0000001',                 1.0000001),
    ('1e-7',                      1e-7),
    ('0',                         0),
    ('-0',                        '-0'),
    ('-0.000000',                 '-0.000000'),
    ('-0.000001',                 -0.000001),
    ('-1',                        -1),
    ('NaN',                       'NaN'),
    ('Infinity',                  'Infinity'),
    ('-Infinity',                 '-Infinity'),
    ('9e12 - 1 micro',            8999999999999.999999),
    ('9e12 - 1 micro, 0 after',   8999999999999.9999990000),
    ('9e12 - 1 micro, 1 after',   8999999999999.9999991),
    ('9e12',                      9000000000000),
    ('9e12 as 9e12',              9e12),
    ('9e12 + 1 micro',            9000000000000.000001),
    ('2^63/10^6 - 1 micro',       9223372036854.775807),
    ('2^63/10^6',                 9223372036854.775808),
    ('2^63/10^6 + 1 micro',       9223372036854.775809),
    ('9999999999999',             9999999999999),
    ('9999999999999.999999',      9999999999999.999999),
    ('2^64/10^6 (wraps to 0)',    18446744073709.551616),
    ('2^64/10^6 + 1 micro',       18446744073709.551617),
    ('2^64/10^6 + 10 credits',    18446744073719.551616),
    ('10^13',                     1e13),
    ('10^19',                     1e19),
    ('10^1000',                   1e1000),
    ('10^1000 + 1 micro',         1e1000 + 0.000001),
    ('-10^19',                    -1e19),
    ('1 and 500 zeros after',     ('1.' || repeat('0', 500))::numeric),
    ('1, 500 zeros, 1',           ('1.' || repeat('0', 500) || '1')::numeric),
    ('300 digits',                repeat('9', 300)::numeric),
    ('300 digits and a fraction', (repeat('9', 300) || '.5')::numeric),
    ('300 leading zeros',         ('0.' || repeat('0', 300) || '1')::numeric),
    ('exponent 1.5e3',            1.5e3),
    ('exponent 15e-7',            15e-7),
    ('exponent 1e-6',             1e-6);

SELECT label,
       pg_temp.outcome('add_funds', amount)         AS add_funds,
       pg_temp.outcome('deduct_balance', amount)    AS deduct,
       pg_temp.outcome('reserve', amount)           AS reserve,
       pg_temp.outcome('settle', amount)            AS settle,
       pg_temp.outcome('refund', amount)            AS refund,
       pg_temp.outcome('deduct_batch', amount)      AS batch,
       pg_temp.outcome('record_completion', amount) AS completion,
       pg_temp.outcome('save_chat_message', amount) AS message,
       pg_temp.outcome('create_api_key', amount)    AS key_limit,
       pg_temp.outcome('charge_api_key', amount)    AS key_charge,
       pg_temp.outcome('reserve_api_key', amount)   AS key_reserve
  FROM boundary ORDER BY ord;

-- and the same, against the rule
SELECT count(*) AS disagreements
  FROM boundary, path_user
 WHERE pg_temp.outcome(path, amount) <> pg_temp.expected(amount, path = 'save_chat_message');

SELECT pg_temp.books() = :'books_at_start' AS books_unchanged;

-- messages name the value
SELECT pg_temp.err(format('SELECT pgmarket.add_funds(%L, %s)', :ux, a))
  FROM unnest(ARRAY['9223372036854.775808', '1.0000001', '0', '-0', '''NaN''',
                    '1e13', '-5']) a;

-------------------------------------------------------------------------------
-- a few thousand random amounts through every path, against numeric
-------------------------------------------------------------------------------
CREATE TEMP TABLE random_amount (ord int, amount numeric);
SELECT setseed(0.20261201);
DO $$
DECLARE
    k int;
    r double precision;
    digits int;
    scale int;
    whole text;
    frac text;
    a numeric;
    edges numeric[] := ARRAY[0.000001, 1, 9000000000000, 9223372036854.775808,
                             10000000000000, 18446744073709.551616,
                             9999999999999.999999];
BEGIN
    FOR k IN 1 .. 2000 LOOP
        r := random();
        IF r < 0.04 THEN
            a := (ARRAY['NaN', 'Infinity', '-Infinity', '0', '-0'])[1 + floor(random() * 5)::int]::numeric;
        ELSIF r < 0.35 THEN
            -- a few micro-credits, or a few tenths of one, from an edge
            a := edges[1 + floor(random() * array_length(edges, 1))::int]
                 + (floor(random() * 7) - 3) * (ARRAY[0.000001, 0.0000001, 1])[1 + floor(random() * 3)::int];
        ELSE
            digits := floor(random() * 22)::int;
            scale := floor(random() * 10)::int;
            whole := '';
            WHILE length(whole) < digits LOOP
                whole := whole || lpad(floor(random() * 1e9)::bigint::text, 9, '0');
            END LOOP;
            whole := '0' || left(whole, digits);
            frac := '';
            WHILE length(frac) < scale LOOP
                frac := frac || lpad(floor(random() * 1e9)::bigint::text, 9, '0');
            END LOOP;
            a := (whole || '.' || left(frac, scale) || '0')::numeric;
            -- sometimes trailing zeros beyond the sixth digit, or exponent form
            IF random() < 0.2 THEN
                a := (a::text || '000')::numeric;
            END IF;
            IF random() < 0.1 THEN
                a := (a::text || 'e' || (floor(random() * 9) - 4)::int)::numeric;
            END IF;
        END IF;
        IF random() < 0.1 THEN
            a := -a;
        END IF;
        INSERT INTO random_amount VALUES (k, a);
    END LOOP;
END $$;

-- how the sample spreads over the outcomes (so that it tests something)
SELECT pg_temp.expected(amount) AS expected, count(*) > 100 AS plenty
  FROM random_amount GROUP BY 1 ORDER BY 1;

CREATE TEMP TABLE mismatch AS
    SELECT path, ord, amount, pg_temp.outcome(path, amount) AS got,
           pg_temp.expected(amount, path = 'save_chat_message') AS want
      FROM random_amount, path_user;
SELECT count(*) FILTER (WHERE got <> want) AS mismatches, count(*) AS calls FROM mismatch;
SELECT path, ord, amount, got, want FROM mismatch WHERE got <> want
 ORDER BY path, ord LIMIT 10;
SELECT pg_temp.books() = :'books_at_start' AS books_unchanged;

-------------------------------------------------------------------------------
-- the deduct_batch exploit of 0.4.0: amounts that wrapped to a negative
-- number of micro-credits lowered spent
-------------------------------------------------------------------------------
SELECT available_balance FROM pgmarket.add_funds(:ux, 10);
SELECT available_balance FROM pgmarket.deduct_balance(:ux, 10, 'money-model');
SELECT pg_temp.books() AS books_before \gset
-- the first is out of range; the second is a valid amount, more than the
-- user has
SELECT * FROM pgmarket.deduct_batch(ARRAY[(:ux, 9999999999999, 'money-model', 0, NULL),
      (:ux, 8446744073700.551616, 'money-model', 0, NULL)]::pgmarket.charge[]);
SELECT total_balance, spent_balance, available_balance FROM pgmarket.get_balance(:ux);
SELECT pg_temp.books() = :'books_before' AS books_unchanged;
-- nor any other pair or triple around 2^64 micro-credits
SELECT count(*) FILTER (WHERE r.sqlstate <> '22003') AS not_refused
  FROM (VALUES (9223372036854.775808), (9223372036854.775809), (9999999999999.999999),
               (18446744073709.551616), (18446744073709.551606), (18446744073699.551616)) v (a),
       LATERAL pgmarket.deduct_batch(ARRAY[(:ux, a, 'money-model', 0, NULL),
                                           (:ux, a, 'money-model', 0, NULL)]::pgmarket.charge[]) r;
SELECT spent_balance FROM pgmarket.get_balance(:ux);
SELECT pg_temp.books() = :'books_before' AS books_unchanged;
SELECT * FROM pgmarket.verify_ledger() WHERE user_id = :ux;

-------------------------------------------------------------------------------
-- deduct_batch: only a list of charges
-------------------------------------------------------------------------------
SELECT available_balance FROM pgmarket.add_funds(:ux, 5);
-- two dimensions, three dimensions: refused as a whole, nothing charged
SELECT pg_temp.err($$SELECT pgmarket.deduct_batch(ARRAY[
    [('6d000000-0000-4000-8000-000000000012', 1, 'money-model', 0, NULL)],
    [('6d000000-0000-4000-8000-000000000012', 1, 'money-model', 0, NULL)]]::pgmarket.charge[])$$);
SELECT pg_temp.err($$SELECT pgmarket.deduct_batch(ARRAY[[[
    ('6d000000-0000-4000-8000-000000000012', 1, 'money-model', 0, NULL)]]]::pgmarket.charge[])$$);
SELECT available_balance FROM pgmarket.get_balance(:ux);
-- a list that does not start at 1 is still counted from 1
SELECT ordinal, sqlstate, available_balance
  FROM pgmarket.deduct_batch('[5:6]={"(6d000000-0000-4000-8000-000000000012,1,money-model,0,)","(6d000000-0000-4000-8000-000000000012,9e12,money-model,0,)"}'::pgmarket.charge[]);
-- NULL elements and NULL fields: 22004 for that charge; tokens_used and the
-- key may be NULL (no tokens, no key); the others still apply
SELECT ordinal, sqlstate, entry_id IS NOT NULL AS has_entry, available_balance
  FROM pgmarket.deduct_batch(ARRAY[NULL, (NULL, 1, 'money-model', 0, NULL),
        (:ux, NULL, 'money-model', 0, NULL), (:ux, 1, NULL, 0, NULL),
        (:ux, 1, 'money-model', NULL, NULL), (:ux, 1, 'money-model', -1, NULL)]::pgmarket.charge[]);
-- the maximum is fine (all of them more than the user has), one more is not
SELECT count(*) AS charges, min(sqlstate), max(sqlstate)
  FROM pgmarket.deduct_batch(array_fill(ROW('6d000000-0000-4000-8000-000000000009', 0.000001,
                                            'money-model', 0, NULL)::pgmarket.charge, ARRAY[100000]));
-- empty, NULL, one above the maximum
SELECT count(*) FROM pgmarket.deduct_batch('{}'::pgmarket.charge[]);
SELECT pg_temp.err('SELECT pgmarket.deduct_batch(NULL)');
SELECT pg_temp.err(format('SELECT pgmarket.deduct_batch(array_fill(ROW(%L, 1, %L, 0, NULL)::pgmarket.charge, ARRAY[100001]))',
                          :ux, 'money-model'));
SELECT available_balance FROM pgmarket.get_balance(:ux);

-------------------------------------------------------------------------------
-- reservation ttls: more than zero and at most 7 days, checked field by
-- field, so that no interval wraps into range
-------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.ttl(t interval) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        PERFORM pgmarket.reserve('6d000000-0000-4000-8000-000000000012', 0.000001, t);
        RAISE EXCEPTION 'roll back' USING ERRCODE = 'P0999';
    EXCEPTION
        WHEN SQLSTATE 'P0999' THEN RETURN '00000';
        WHEN OTHERS THEN RETURN SQLSTATE;
    END;
END $$;
SELECT t, pg_temp.ttl(t::interval)
  FROM (VALUES ('1 microsecond'), ('15 minutes'), ('7 days'), ('6 days 24 hours'),
               ('168 hours'), ('8 days -24 hours'), ('7 days 00:00:00.000001'),
               ('168:00:00.000001'), ('0'), ('-1 hour'), ('1 day -25 hours'), ('1 mon'),
               ('1 mon -30 days'), ('1 year'), ('1000000 days -23999832 hours'),
               ('2147483647 days -298651766 hours -2504.48384 seconds'),
               ('-2147483648 days'), ('2147483647 hours')) v (t);
SELECT pg_temp.err(format('SELECT pgmarket.reserve(%L, 1, %L)', :ux, '8 days'));

-------------------------------------------------------------------------------
-- a platform key's lifetime counter never wraps or saturates
-------------------------------------------------------------------------------
SELECT pgmarket.create_user('money-key@example.com', 'moneykey',
                            id => '6d000000-0000-4000-8000-000000000013');
\set uk '''6d000000-0000-4000-8000-000000000013'''
SELECT api_key AS ak FROM pgmarket.create_api_key(:uk, 'big') \gset
SELECT available_balance FROM pgmarket.add_funds(:uk, 8999999999999.999999);
SELECT entry_id AS big1 FROM pgmarket.charge_api_key(:'ak', 5000000000000, 'money-model') \gset
SELECT kind, amount FROM pgmarket.refund(:uk, :big1);
-- spent so far 5e12; another 5e12 would take the counter to 1e13
SELECT pg_temp.books() AS books_before \gset
SELECT pg_temp.err(format('SELECT pgmarket.charge_api_key(%L, 5000000000000, %L)', :'ak', 'money-model'));
SELECT pg_temp.err(format('SELECT pgmarket.reserve_api_key(%L, 5000000000000)', :'ak'));
SELECT pg_temp.books() = :'books_before' AS books_unchanged;
SELECT amount FROM pgmarket.charge_api_key(:'ak', 3999999999999.999999, 'money-model');
SELECT total_spent FROM pgmarket.list_api_keys(:uk);

-------------------------------------------------------------------------------
-- balances: a deposit that would take the total to the limit is 22003
-------------------------------------------------------------------------------
SELECT total_balance FROM pgmarket.get_balance(:ux);
SELECT available_balance FROM pgmarket.add_funds(:ux, 8999999999980);
SELECT pg_temp.err(format('SELECT pgmarket.add_funds(%L, 5)', :ux));
SELECT available_balance FROM pgmarket.add_funds(:ux, 4.999999);
SELECT pg_temp.err(format('SELECT pgmarket.add_funds(%L, 0.000001)', :ux));
SELECT total_balance FROM pgmarket.get_balance(:ux);

-------------------------------------------------------------------------------
-- sums over many entries pass int64 although no balance does: the checks
-- and the usage views add up in numeric
-------------------------------------------------------------------------------
SELECT pgmarket.create_user('money-churn@example.com', 'moneychurn',
                            id => '6d000000-0000-4000-8000-000000000014');
\set uc '''6d000000-0000-4000-8000-000000000014'''
SELECT available_balance FROM pgmarket.add_funds(:uc, 8999999999999.999999);
SELECT entry_id AS churn1 FROM pgmarket.deduct_balance(:uc, 8000000000000, 'money-model') \gset
SELECT kind, amount FROM pgmarket.refund(:uc, :churn1);
SELECT available_balance FROM pgmarket.deduct_balance(:uc, 8000000000000, 'money-model');
-- charges of 16e12 credits, refunds of 8e12: the books agree
SELECT * FROM pgmarket.verify_ledger() WHERE user_id = :uc;
-- 8e12 net from this user and 4e12 from the key's: 12e12 for the model
SELECT requests, cost FROM pgmarket.model_usage WHERE model_id = 'money-model';
SELECT user_id, sum(requests) AS requests, sum(cost) AS cost FROM pgmarket.usage_daily
 WHERE model_id = 'money-model' GROUP BY user_id ORDER BY user_id;

-- token counts add up in numeric too: two charges of 2^63 - 1 tokens each
-- for one model leave the usage views readable, and exact
SELECT pgmarket.create_user('money-tokens@example.com', 'money_tokens',
                            id => '6d000000-0000-4000-8000-0000000000f1') IS NOT NULL AS made;
SELECT available_balance FROM pgmarket.add_funds('6d000000-0000-4000-8000-0000000000f1', 1);
SELECT kind FROM pgmarket.deduct_balance('6d000000-0000-4000-8000-0000000000f1', 0.000001,
                                         'tokens-model', 9223372036854775807);
SELECT kind FROM pgmarket.deduct_balance('6d000000-0000-4000-8000-0000000000f1', 0.000001,
                                         'tokens-model', 9223372036854775807);
SELECT requests, tokens FROM pgmarket.model_usage WHERE model_id = 'tokens-model';
SELECT requests, tokens FROM pgmarket.usage_daily WHERE model_id = 'tokens-model';

-- nothing above changed the books of the paths' users
SELECT (SELECT count(*) FROM pgmarket.ledger l JOIN path_user p USING (user_id)) AS path_entries,
       (SELECT count(*) FROM pgmarket.reservations r JOIN path_user p USING (user_id)) AS path_holds,
       (SELECT count(*) FROM pgmarket.chat_messages m
          JOIN session_of s USING (session_id)) AS path_messages;
SELECT * FROM pgmarket.verify_ledger() WHERE user_id::text LIKE '6d000000-%';

-- every hold of this test was rolled back or refused: give the ids back
SELECT count(*) AS holds_above FROM pgmarket.reservations
 WHERE reservation_id > :hold_seq_value;
SELECT setval('pgmarket.reservation_id_seq', :hold_seq_value, :'hold_seq_called') IS NOT NULL AS ids_back;

COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
