-- The baseline: a credit ledger as an application would write it without
-- pgmarket.  numeric money, a balance row per user with a derived
-- "available" column, a transactions log, and per-model stats kept by an
-- upsert in the same transaction.

CREATE SCHEMA bench_baseline;

CREATE TABLE bench_baseline.balances (
    user_id    uuid PRIMARY KEY,
    total      numeric NOT NULL DEFAULT 0,
    spent      numeric NOT NULL DEFAULT 0,
    available  numeric NOT NULL DEFAULT 0 CHECK (available >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bench_baseline.transactions (
    id         bigserial PRIMARY KEY,
    user_id    uuid NOT NULL,
    amount     numeric NOT NULL,
    model_id   text,
    tokens     bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_user_created
    ON bench_baseline.transactions (user_id, created_at);

CREATE TABLE bench_baseline.model_stats (
    model_id text PRIMARY KEY,
    requests bigint NOT NULL DEFAULT 0,
    tokens   bigint NOT NULL DEFAULT 0,
    cost     numeric NOT NULL DEFAULT 0
);

CREATE FUNCTION bench_baseline.baseline_deduct(p_user_id uuid,
        p_amount numeric, p_model_id text, p_tokens bigint)
    RETURNS numeric
    LANGUAGE plpgsql AS
$$
DECLARE
    v_available numeric;
BEGIN
    UPDATE bench_baseline.balances
       SET spent = spent + p_amount,
           available = available - p_amount,
           updated_at = now()
     WHERE user_id = p_user_id
       AND available >= p_amount
    RETURNING available INTO v_available;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insufficient funds for user %', p_user_id
            USING ERRCODE = 'P0001';
    END IF;

    INSERT INTO bench_baseline.transactions (user_id, amount, model_id, tokens)
    VALUES (p_user_id, p_amount, p_model_id, p_tokens);

    INSERT INTO bench_baseline.model_stats AS s (model_id, requests, tokens, cost)
    VALUES (p_model_id, 1, p_tokens, p_amount)
    ON CONFLICT (model_id) DO UPDATE
       SET requests = s.requests + 1,
           tokens = s.tokens + EXCLUDED.tokens,
           cost = s.cost + EXCLUDED.cost;

    RETURN v_available;
END
$$;

-- The same 10,000 users, each with the same large balance as in pgmarket.
INSERT INTO bench_baseline.balances (user_id, total, available)
SELECT bench_tools.uid(g), :funds, :funds
  FROM generate_series(1, :users) g;

INSERT INTO bench_baseline.model_stats (model_id)
SELECT 'model-' || g FROM generate_series(0, 3) g;
