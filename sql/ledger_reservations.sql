-- Two-phase charges: reserve, settle, release, expiry without a background job.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- Time passing, without a sleep: the holds' expiry moves into the past, and
-- so does their users' next_expiry (the earliest expiry of their holds).
CREATE FUNCTION pg_temp.expire(ids bigint[]) RETURNS void LANGUAGE sql AS $$
    UPDATE pgmarket.reservations SET expires_at = now() - interval '1 millisecond'
     WHERE reservation_id = ANY (ids);
    UPDATE pgmarket.balances b SET next_expiry = now() - interval '1 millisecond'
     WHERE b.user_id IN (SELECT user_id FROM pgmarket.reservations
                          WHERE reservation_id = ANY (ids));
$$;

SELECT pgmarket.create_user('r1@example.com', 'reserver1', id => 'c0000000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('r2@example.com', 'reserver2', id => 'c0000000-0000-4000-8000-000000000002');
\set u1 '''c0000000-0000-4000-8000-000000000001'''
\set u2 '''c0000000-0000-4000-8000-000000000002'''
SELECT available_balance FROM pgmarket.add_funds(:u1, 10);

-- a hold takes the amount out of available, not out of total
SELECT pgmarket.reserve(:u1, 4) AS r1 \gset
SELECT total_balance, spent_balance, reserved_balance, available_balance FROM pgmarket.get_balance(:u1);
-- a charge cannot use what is held
SELECT pg_temp.err($$SELECT pgmarket.deduct_balance('c0000000-0000-4000-8000-000000000001', 6.000001, 'gpt-4')$$);
-- nor can another hold
SELECT pg_temp.err($$SELECT pgmarket.reserve('c0000000-0000-4000-8000-000000000001', 6.5)$$);

-- settle for less than the hold: the charge is the amount, the rest is freed
SELECT kind, amount, available_balance, replayed FROM pgmarket.settle(:u1, :r1, 2.5, 'gpt-4', 300);
SELECT total_balance, spent_balance, reserved_balance, available_balance FROM pgmarket.get_balance(:u1);
SELECT state, pgmarket.credits(settled_amount) FROM pgmarket.reservations WHERE reservation_id = :r1;
-- settled is final
SELECT pg_temp.err(format($$SELECT pgmarket.settle('c0000000-0000-4000-8000-000000000001', %s, 1, 'gpt-4')$$, :r1));
SELECT pg_temp.err(format($$SELECT pgmarket.release('c0000000-0000-4000-8000-000000000001', %s)$$, :r1));

-- release gives it all back
SELECT pgmarket.reserve(:u1, 3) AS r2 \gset
SELECT total_balance, spent_balance, reserved_balance, available_balance FROM pgmarket.release(:u1, :r2);
SELECT pg_temp.err(format($$SELECT pgmarket.release('c0000000-0000-4000-8000-000000000001', %s)$$, :r2));

-- settle above the hold: PM004, nothing changes
SELECT pgmarket.reserve(:u1, 1) AS r3 \gset
SELECT pg_temp.err(format($$SELECT pgmarket.settle('c0000000-0000-4000-8000-000000000001', %s, 1.000001, 'gpt-4')$$, :r3));
SELECT state FROM pgmarket.reservations WHERE reservation_id = :r3;
SELECT kind, amount FROM pgmarket.settle(:u1, :r3, 1, 'gpt-4');

-- unknown reservations, another user's reservation
SELECT pgmarket.reserve(:u1, 1) AS r4 \gset
SELECT pg_temp.err($$SELECT pgmarket.settle('c0000000-0000-4000-8000-000000000001', 999999, 1, 'gpt-4')$$);
SELECT pg_temp.err(format($$SELECT pgmarket.release('c0000000-0000-4000-8000-000000000002', %s)$$, :r4));
SELECT pg_temp.err(format($$SELECT pgmarket.settle('c0000000-0000-4000-8000-000000000002', %s, 1, 'gpt-4')$$, :r4));

-- bad arguments
SELECT pg_temp.err($$SELECT pgmarket.reserve('c0000000-0000-4000-8000-000000000001', 1, '0 seconds')$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve('c0000000-0000-4000-8000-000000000001', 1, '-1 minute')$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve('c0000000-0000-4000-8000-000000000001', 1, '8 days')$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve('c0000000-0000-4000-8000-000000000001', 1, '1 month')$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve('c0000000-0000-4000-8000-000000000001', 1, NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve('c0000000-0000-4000-8000-000000000001', 0)$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve('c0000000-0000-4000-8000-000000000001', 0.0000001)$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve('c0000000-0000-4000-8000-0000000000ff', 1)$$);
SELECT pg_temp.err($$SELECT pgmarket.settle('c0000000-0000-4000-8000-000000000001', NULL, 1, 'gpt-4')$$);
SELECT pg_temp.err(format($$SELECT pgmarket.settle('c0000000-0000-4000-8000-000000000001', %s, 0, 'gpt-4')$$, :r4));
SELECT pg_temp.err(format($$SELECT pgmarket.settle('c0000000-0000-4000-8000-000000000001', %s, 1, NULL)$$, :r4));
SELECT pg_temp.err($$SELECT pgmarket.release('c0000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.release(NULL, 1)$$);
SELECT * FROM pgmarket.release(:u1, :r4) \gset

-- idempotent reserve: the same key and arguments return the same hold
SELECT pgmarket.reserve(:u1, 2, '10 minutes', 'stream-1') AS r5 \gset
SELECT pgmarket.reserve(:u1, 2, '10 minutes', 'stream-1') = :r5 AS same_hold;
SELECT reserved_balance FROM pgmarket.get_balance(:u1);
SELECT pg_temp.err($$SELECT pgmarket.reserve('c0000000-0000-4000-8000-000000000001', 3, '10 minutes', 'stream-1')$$);
SELECT pg_temp.err($$SELECT pgmarket.reserve('c0000000-0000-4000-8000-000000000001', 2, '11 minutes', 'stream-1')$$);
SELECT * FROM pgmarket.release(:u1, :r5) \gset

-- expiry: an expired hold stops counting at once, with no job running
SELECT available_balance AS before FROM pgmarket.get_balance(:u1);
SELECT pgmarket.reserve(:u1, 5, '1 second') AS r6 \gset
SELECT reserved_balance, available_balance FROM pgmarket.get_balance(:u1);
-- time passes: the hold's expiry moves into the past (no sleep, no race)
SELECT pg_temp.expire(ARRAY[:r6]);
SELECT reserved_balance, available_balance FROM pgmarket.get_balance(:u1);
-- settle or release of an expired hold: PM004
SELECT pg_temp.err(format($$SELECT pgmarket.settle('c0000000-0000-4000-8000-000000000001', %s, 1, 'gpt-4')$$, :r6));
SELECT pg_temp.err(format($$SELECT pgmarket.release('c0000000-0000-4000-8000-000000000001', %s)$$, :r6));
-- a charge may use the expired amount: it sweeps the hold first
SELECT kind, amount, available_balance FROM pgmarket.deduct_balance(:u1, 6.5, 'gpt-4');
SELECT state FROM pgmarket.reservations WHERE reservation_id = :r6;
SELECT reserved_balance, available_balance FROM pgmarket.get_balance(:u1);

-- expire_reservations sweeps every user's expired holds
SELECT available_balance FROM pgmarket.add_funds(:u2, 3);
SELECT pgmarket.reserve(:u2, 1, '100 milliseconds') AS r7 \gset
SELECT pgmarket.reserve(:u2, 1, '100 milliseconds') AS r8 \gset
SELECT pgmarket.reserve(:u2, 1, '1 hour') AS r9 \gset
SELECT pg_temp.expire(ARRAY[:r7, :r8]);
SELECT pgmarket.expire_reservations();
SELECT pgmarket.expire_reservations();
SELECT reservation_id = :r9 AS is_r9, state FROM pgmarket.reservations
 WHERE user_id = :u2 ORDER BY reservation_id;
SELECT reserved, pgmarket.credits(total - spent - reserved) AS available
  FROM pgmarket.balances WHERE user_id = :u2;

SELECT * FROM pgmarket.verify_ledger();
