\echo Use "CREATE EXTENSION pgmarket" to load this file. \quit

-- pgmarket 0.1.0: accounts and the credit ledger.
--
-- Money is stored as bigint micro-credits (1 credit = 1,000,000) in the
-- tables and shown as numeric with six fractional digits by the functions and
-- views.  The C functions in the module do every change; the tables are not
-- writable by the application roles.

-------------------------------------------------------------------------------
-- Roles (cluster-wide; created once, kept by DROP EXTENSION)
-------------------------------------------------------------------------------
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pgmarket_app', 'pgmarket_keyreader',
                             'pgmarket_auditor', 'pgmarket_admin']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                       WHERE rolname OPERATOR(pg_catalog.=) r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;

GRANT USAGE ON SCHEMA @extschema@ TO pgmarket_app, pgmarket_keyreader,
    pgmarket_auditor, pgmarket_admin;

-------------------------------------------------------------------------------
-- Accounts
-------------------------------------------------------------------------------

-- The account roles a user may hold; create_user checks against this table.
CREATE TABLE @extschema@.roles (
    name        text PRIMARY KEY,
    description text NOT NULL DEFAULT ''
);
INSERT INTO @extschema@.roles (name, description) VALUES
    ('user', 'an end user who buys credit and spends it'),
    ('developer', 'a user who publishes models or agents'),
    ('support', 'staff who may look at accounts'),
    ('admin', 'staff who run the marketplace');

CREATE TABLE @extschema@.accounts (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    username      text NOT NULL,
    password_hash text,
    roles         text[] NOT NULL DEFAULT '{user}',
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_login_at timestamptz,
    deleted_at    timestamptz
);
CREATE UNIQUE INDEX accounts_email_key ON @extschema@.accounts (email);
CREATE UNIQUE INDEX accounts_username_key
    ON @extschema@.accounts (pg_catalog.lower(username));

CREATE VIEW @extschema@.users AS
    SELECT id, email, username, roles,
           deleted_at IS NULL AS is_active,
           created_at, last_login_at
      FROM @extschema@.accounts;

-------------------------------------------------------------------------------
-- Ledger
-------------------------------------------------------------------------------

-- One row per user.  total = sum of deposits, spent = sum of charges minus
-- sum of refunds, reserved = sum of holds not yet settled, released or swept.
-- next_expiry is the earliest expiry among those holds (a hint: it may be
-- earlier than the truth, never later), so that charges notice expired holds
-- without a background job.
CREATE TABLE @extschema@.balances (
    user_id     uuid PRIMARY KEY REFERENCES @extschema@.accounts (id),
    total       bigint NOT NULL DEFAULT 0,
    spent       bigint NOT NULL DEFAULT 0,
    reserved    bigint NOT NULL DEFAULT 0,
    next_expiry timestamptz,
    active      boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT balances_available CHECK (spent >= 0 AND reserved >= 0
                                         AND total - spent - reserved >= 0)
) WITH (fillfactor = 70);

CREATE SEQUENCE @extschema@.ledger_entry_id_seq;

-- Append-only: every change of a balance is one row here.  Only pgmarket's
-- C functions write it; they guarantee a known kind, a positive amount and
-- non-negative available and tokens, and verify_ledger() checks it.  (CHECK
-- constraints would say the same at a cost on every insert: PostgreSQL
-- rebuilds their expressions for each statement.)
CREATE TABLE @extschema@.ledger (
    entry_id        bigint NOT NULL,
    user_id         uuid NOT NULL,
    kind            text NOT NULL,
    amount          bigint NOT NULL,
    available       bigint NOT NULL,
    model_id        text,
    tokens_used     bigint NOT NULL DEFAULT 0,
    idempotency_key text,
    note            text,
    refund_of       bigint,
    reservation_id  bigint,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (user_id, entry_id)
);
CREATE UNIQUE INDEX ledger_idempotency_key
    ON @extschema@.ledger (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX ledger_refund_of ON @extschema@.ledger (user_id, refund_of)
    WHERE refund_of IS NOT NULL;

CREATE SEQUENCE @extschema@.reservation_id_seq;

CREATE TABLE @extschema@.reservations (
    reservation_id  bigint PRIMARY KEY
                    DEFAULT pg_catalog.nextval('@extschema@.reservation_id_seq'),
    user_id         uuid NOT NULL REFERENCES @extschema@.accounts (id),
    amount          bigint NOT NULL,
    state           text NOT NULL DEFAULT 'held',
    expires_at      timestamptz NOT NULL,
    idempotency_key text,
    ttl             interval NOT NULL,
    settled_amount  bigint,
    entry_id        bigint,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    closed_at       timestamptz,
    CONSTRAINT reservations_amount CHECK (amount > 0),
    CONSTRAINT reservations_state
        CHECK (state IN ('held', 'settled', 'released', 'expired')),
    CONSTRAINT reservations_settled
        CHECK (settled_amount IS NULL OR settled_amount <= amount)
);
CREATE UNIQUE INDEX reservations_idempotency_key
    ON @extschema@.reservations (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX reservations_held
    ON @extschema@.reservations (user_id, expires_at) WHERE state = 'held';

CREATE TYPE @extschema@.balance AS (
    user_id           uuid,
    total_balance     numeric,
    spent_balance     numeric,
    reserved_balance  numeric,
    available_balance numeric,
    updated_at        timestamptz
);

CREATE TYPE @extschema@.ledger_result AS (
    entry_id          bigint,
    user_id           uuid,
    kind              text,
    amount            numeric,
    available_balance numeric,
    replayed          boolean
);

CREATE TYPE @extschema@.charge AS (
    user_id         uuid,
    amount          numeric,
    model_id        text,
    tokens_used     bigint,
    idempotency_key text
);

-- The ledger is append-only for everybody, its owner included.
CREATE FUNCTION @extschema@.forbid_change() RETURNS trigger
    AS 'MODULE_PATHNAME', 'pgm_forbid_change' LANGUAGE C;

CREATE TRIGGER ledger_append_only
    BEFORE UPDATE OR DELETE ON @extschema@.ledger
    FOR EACH ROW EXECUTE FUNCTION @extschema@.forbid_change();
CREATE TRIGGER ledger_no_truncate
    BEFORE TRUNCATE ON @extschema@.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.forbid_change();

-------------------------------------------------------------------------------
-- Functions
-------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.hash_password(password text) RETURNS text
    AS 'MODULE_PATHNAME', 'pgm_hash_password'
    LANGUAGE C VOLATILE PARALLEL SAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.verify_password(password text, hash text)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'pgm_verify_password'
    LANGUAGE C VOLATILE PARALLEL SAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.create_user(email text, username text,
        password text DEFAULT NULL, roles text[] DEFAULT '{user}',
        id uuid DEFAULT pg_catalog.gen_random_uuid())
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_create_user'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.authenticate(login text, password text)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_authenticate'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.deactivate_user(user_id uuid) RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_deactivate_user'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.add_funds(user_id uuid, amount numeric,
        idempotency_key text DEFAULT NULL, note text DEFAULT NULL)
    RETURNS @extschema@.ledger_result
    AS 'MODULE_PATHNAME', 'pgm_add_funds'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.deduct_balance(user_id uuid, amount numeric,
        model_id text, tokens_used bigint DEFAULT 0,
        idempotency_key text DEFAULT NULL)
    RETURNS @extschema@.ledger_result
    AS 'MODULE_PATHNAME', 'pgm_deduct_balance'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.refund(user_id uuid, entry_id bigint,
        amount numeric DEFAULT NULL, idempotency_key text DEFAULT NULL)
    RETURNS @extschema@.ledger_result
    AS 'MODULE_PATHNAME', 'pgm_refund'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.get_balance(user_id uuid)
    RETURNS @extschema@.balance
    AS 'MODULE_PATHNAME', 'pgm_get_balance'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.ledger_entries(user_id uuid,
        max_rows int DEFAULT 50, before_id bigint DEFAULT NULL)
    RETURNS TABLE (entry_id bigint, kind text, amount numeric,
                   available_balance numeric, model_id text,
                   tokens_used bigint, idempotency_key text, note text,
                   refund_of bigint, created_at timestamptz)
    AS 'MODULE_PATHNAME', 'pgm_ledger_entries'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.reserve(user_id uuid, amount numeric,
        ttl interval DEFAULT '15 minutes', idempotency_key text DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'pgm_reserve'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.settle(user_id uuid, reservation_id bigint,
        amount numeric, model_id text, tokens_used bigint DEFAULT 0)
    RETURNS @extschema@.ledger_result
    AS 'MODULE_PATHNAME', 'pgm_settle'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.release(user_id uuid, reservation_id bigint)
    RETURNS @extschema@.balance
    AS 'MODULE_PATHNAME', 'pgm_release'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.expire_reservations() RETURNS int
    AS 'MODULE_PATHNAME', 'pgm_expire_reservations'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.deduct_batch(charges @extschema@.charge[])
    RETURNS TABLE (ordinal int, sqlstate text, entry_id bigint,
                   available_balance numeric)
    AS 'MODULE_PATHNAME', 'pgm_deduct_batch'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- Micro-credits to credits, exactly (the scale is always 6).
CREATE FUNCTION @extschema@.credits(micro bigint) RETURNS numeric
    AS 'MODULE_PATHNAME', 'pgm_credits'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Every check below is a full scan: run it from monitoring, not per request.
CREATE FUNCTION @extschema@.verify_ledger()
    RETURNS TABLE (user_id uuid, problem text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH sums AS (
        SELECT l.user_id,
               COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'deposit'), 0)::bigint AS deposits,
               COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'charge'), 0)::bigint AS charges,
               COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'refund'), 0)::bigint AS refunds
          FROM @extschema@.ledger l
         GROUP BY l.user_id
    ), holds AS (
        SELECT r.user_id, sum(r.amount)::bigint AS held
          FROM @extschema@.reservations r
         WHERE r.state = 'held'
         GROUP BY r.user_id
    ), over_refunded AS (
        SELECT c.user_id, c.entry_id
          FROM @extschema@.ledger c
          JOIN @extschema@.ledger r
            ON r.user_id = c.user_id AND r.refund_of = c.entry_id
         WHERE r.kind = 'refund'
         GROUP BY c.user_id, c.entry_id, c.amount, c.kind
        HAVING c.kind <> 'charge' OR sum(r.amount) > c.amount
    )
    SELECT b.user_id,
           pg_catalog.format('total %s differs from the sum of deposits %s',
                             @extschema@.credits(b.total),
                             @extschema@.credits(COALESCE(s.deposits, 0)))
      FROM @extschema@.balances b LEFT JOIN sums s USING (user_id)
     WHERE b.total <> COALESCE(s.deposits, 0)
    UNION ALL
    SELECT b.user_id,
           pg_catalog.format('spent %s differs from charges minus refunds %s',
                             @extschema@.credits(b.spent),
                             @extschema@.credits(COALESCE(s.charges - s.refunds, 0)))
      FROM @extschema@.balances b LEFT JOIN sums s USING (user_id)
     WHERE b.spent <> COALESCE(s.charges - s.refunds, 0)
    UNION ALL
    SELECT b.user_id,
           pg_catalog.format('reserved %s differs from the sum of held reservations %s',
                             @extschema@.credits(b.reserved),
                             @extschema@.credits(COALESCE(h.held, 0)))
      FROM @extschema@.balances b LEFT JOIN holds h USING (user_id)
     WHERE b.reserved <> COALESCE(h.held, 0)
    UNION ALL
    SELECT b.user_id, 'available balance is negative'
      FROM @extschema@.balances b
     WHERE b.total - b.spent - b.reserved < 0
    UNION ALL
    SELECT s.user_id, 'ledger entries for a user without a balance row'
      FROM sums s
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@.balances b
                        WHERE b.user_id = s.user_id)
    UNION ALL
    SELECT o.user_id,
           pg_catalog.format('entry %s is refunded beyond its charge or is not a charge',
                             o.entry_id)
      FROM over_refunded o
    UNION ALL
    SELECT l.user_id,
           pg_catalog.format('entry %s has a bad kind, amount, available balance or token count',
                             l.entry_id)
      FROM @extschema@.ledger l
     WHERE l.kind NOT IN ('deposit', 'charge', 'refund') OR l.amount <= 0
        OR l.available < 0 OR l.tokens_used < 0;
END;

-- Usage: charges per model, net of their refunds.  Computed from the ledger,
-- so that metering adds no write (and no hot row) to a charge.
CREATE VIEW @extschema@.model_usage AS
    SELECT l.model_id,
           pg_catalog.count(*) FILTER (WHERE l.kind = 'charge') AS requests,
           COALESCE(sum(l.tokens_used) FILTER (WHERE l.kind = 'charge'), 0)::bigint AS tokens,
           @extschema@.credits(COALESCE(sum(CASE l.kind WHEN 'charge' THEN l.amount
                                                  ELSE -l.amount END), 0)::bigint) AS cost
      FROM @extschema@.ledger l
     WHERE l.kind IN ('charge', 'refund') AND l.model_id IS NOT NULL
     GROUP BY l.model_id;

CREATE VIEW @extschema@.usage_daily AS
    SELECT l.user_id,
           (l.created_at AT TIME ZONE 'UTC')::date AS day,
           l.model_id,
           pg_catalog.count(*) FILTER (WHERE l.kind = 'charge') AS requests,
           COALESCE(sum(l.tokens_used) FILTER (WHERE l.kind = 'charge'), 0)::bigint AS tokens,
           @extschema@.credits(COALESCE(sum(CASE l.kind WHEN 'charge' THEN l.amount
                                                  ELSE -l.amount END), 0)::bigint) AS cost
      FROM @extschema@.ledger l
     WHERE l.kind IN ('charge', 'refund') AND l.model_id IS NOT NULL
     GROUP BY 1, 2, 3;

-------------------------------------------------------------------------------
-- Dump support and privileges
-------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('@extschema@.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.balances', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ledger', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.reservations', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.roles',
    $$WHERE name NOT IN ('user', 'developer', 'support', 'admin')$$);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ledger_entry_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.reservation_id_seq', '');

REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;

-- The application calls the API; it reads nothing directly but the views.
GRANT EXECUTE ON FUNCTION
    @extschema@.hash_password(text),
    @extschema@.verify_password(text, text),
    @extschema@.create_user(text, text, text, text[], uuid),
    @extschema@.authenticate(text, text),
    @extschema@.deactivate_user(uuid),
    @extschema@.add_funds(uuid, numeric, text, text),
    @extschema@.deduct_balance(uuid, numeric, text, bigint, text),
    @extschema@.refund(uuid, bigint, numeric, text),
    @extschema@.get_balance(uuid),
    @extschema@.ledger_entries(uuid, int, bigint),
    @extschema@.reserve(uuid, numeric, interval, text),
    @extschema@.settle(uuid, bigint, numeric, text, bigint),
    @extschema@.release(uuid, bigint),
    @extschema@.expire_reservations(),
    @extschema@.deduct_batch(@extschema@.charge[]),
    @extschema@.credits(bigint)
    TO pgmarket_app, pgmarket_admin;
GRANT SELECT ON @extschema@.users, @extschema@.model_usage,
    @extschema@.usage_daily, @extschema@.roles
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin;

-- Auditors read the ledger and the views; they change nothing.
GRANT SELECT ON @extschema@.ledger, @extschema@.balances,
    @extschema@.reservations
    TO pgmarket_auditor, pgmarket_admin;
GRANT EXECUTE ON FUNCTION @extschema@.verify_ledger(),
    @extschema@.credits(bigint)
    TO pgmarket_auditor, pgmarket_admin;
GRANT INSERT, UPDATE, DELETE ON @extschema@.roles TO pgmarket_admin;
