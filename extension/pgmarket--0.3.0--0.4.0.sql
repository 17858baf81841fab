\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.4.0'" to load this file. \quit

-- pgmarket 0.4.0: chat sessions and messages, completions charged in one
-- step with their message, ratings, preferences, and row-level security.
--
-- Money is bigint micro-credits in the tables, numeric credits at the SQL
-- surface, as in the ledger.  A completion's charge is an ordinary ledger
-- entry carrying the session's model_id, so model_usage and usage_daily
-- count it like any other charge.
--
-- Row-level security: every table that holds one user's rows has a policy
-- for pgmarket_app that lets it see only the rows of pgmarket.actor when
-- that setting is not empty (all rows when it is: the trusted back end), and
-- one that lets pgmarket_auditor and pgmarket_admin see every row.  The
-- SECURITY DEFINER functions run as the extension's owner, a superuser, and
-- are not subject to these policies: they check instead that user_id equals
-- pgmarket.actor when it is set (42501 otherwise).  The views that roles
-- read become security_invoker views, so the policies of their base tables
-- apply to the caller.

-------------------------------------------------------------------------------
-- Chat
-------------------------------------------------------------------------------

-- status: active until end_chat_session makes it completed or failed;
-- deleted_at: soft deletion (delete_chat_session).  Both ended and deleted
-- sessions refuse new messages.
CREATE TABLE @extschema@.chat_sessions (
    session_id  uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES @extschema@.accounts (id),
    model_id    text NOT NULL,
    title       text,
    agent_id    text,
    status      text NOT NULL DEFAULT 'active',
    end_reason  text,
    context     jsonb,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    ended_at    timestamptz,
    deleted_at  timestamptz,
    CONSTRAINT chat_sessions_status
        CHECK (status IN ('active', 'completed', 'failed')),
    CONSTRAINT chat_sessions_ended
        CHECK ((status = 'active') = (ended_at IS NULL))
);
CREATE INDEX chat_sessions_user ON @extschema@.chat_sessions (user_id, created_at);

CREATE SEQUENCE @extschema@.chat_message_id_seq;

-- One row per message.  cost is what the message cost, in micro-credits
-- (recorded, not charged, by save_chat_message); entry_id is the ledger
-- charge of a message stored by record_completion.  The primary key serves
-- the history of a session, newest first, by keyset.
CREATE TABLE @extschema@.chat_messages (
    session_id  uuid NOT NULL REFERENCES @extschema@.chat_sessions (session_id),
    message_id  bigint NOT NULL
                DEFAULT pg_catalog.nextval('@extschema@.chat_message_id_seq'),
    user_id     uuid NOT NULL,
    role        text NOT NULL,
    content     text NOT NULL,
    tokens      int NOT NULL DEFAULT 0,
    cost        bigint NOT NULL DEFAULT 0,
    tool_calls  jsonb,
    entry_id    bigint,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (session_id, message_id),
    CONSTRAINT chat_messages_role
        CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    CONSTRAINT chat_messages_tokens CHECK (tokens >= 0),
    CONSTRAINT chat_messages_cost CHECK (cost >= 0)
);
-- the message of a completion's charge (idempotent replays find it here)
CREATE UNIQUE INDEX chat_messages_entry
    ON @extschema@.chat_messages (user_id, entry_id) WHERE entry_id IS NOT NULL;

-- One rating per user and model.
CREATE TABLE @extschema@.ratings (
    user_id     uuid NOT NULL REFERENCES @extschema@.accounts (id),
    model_id    text NOT NULL,
    stars       int NOT NULL,
    review      text,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (user_id, model_id),
    CONSTRAINT ratings_stars CHECK (stars BETWEEN 1 AND 5)
);
CREATE INDEX ratings_model ON @extschema@.ratings (model_id);

CREATE TABLE @extschema@.preferences (
    user_id     uuid NOT NULL REFERENCES @extschema@.accounts (id),
    key         text NOT NULL,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (user_id, key)
);

-- Ratings per model: aggregates only, over every user's rating (it runs
-- with its owner's rights on purpose: an average reveals no one's row).
CREATE VIEW @extschema@.model_ratings AS
    SELECT r.model_id,
           pg_catalog.count(*) AS ratings,
           pg_catalog.round(pg_catalog.avg(r.stars), 2) AS average_stars
      FROM @extschema@.ratings r
     GROUP BY r.model_id;

-------------------------------------------------------------------------------
-- Functions
-------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.create_chat_session(user_id uuid, model_id text,
        title text DEFAULT NULL, agent_id text DEFAULT NULL)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_create_chat_session'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.save_chat_message(user_id uuid, session_id uuid,
        role text, content text, tokens int DEFAULT 0, cost numeric DEFAULT 0,
        tool_calls jsonb DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'pgm_save_chat_message'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.record_completion(user_id uuid, session_id uuid,
        content text, tokens int, cost numeric,
        idempotency_key text DEFAULT NULL)
    RETURNS @extschema@.ledger_result
    AS 'MODULE_PATHNAME', 'pgm_record_completion'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.get_chat_history(user_id uuid, session_id uuid,
        max_rows int DEFAULT 100, before_id bigint DEFAULT NULL,
        oldest_first boolean DEFAULT false)
    RETURNS TABLE (message_id bigint, role text, content text, tokens int,
                   cost numeric, tool_calls jsonb, created_at timestamptz)
    AS 'MODULE_PATHNAME', 'pgm_get_chat_history'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.end_chat_session(user_id uuid, session_id uuid,
        status text, reason text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_end_chat_session'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.update_chat_context(user_id uuid,
        session_id uuid, context jsonb)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_update_chat_context'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.delete_chat_session(user_id uuid, session_id uuid)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_delete_chat_session'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.list_chat_sessions(user_id uuid)
    RETURNS TABLE (session_id uuid, model_id text, title text,
                   agent_id text, status text, end_reason text,
                   context jsonb, created_at timestamptz,
                   updated_at timestamptz, ended_at timestamptz)
    AS 'MODULE_PATHNAME', 'pgm_list_chat_sessions'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.rate_model(user_id uuid, model_id text,
        stars int, review text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_rate_model'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.set_preference(user_id uuid, key text,
        value jsonb)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_set_preference'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.get_preferences(user_id uuid)
    RETURNS TABLE (key text, value jsonb, updated_at timestamptz)
    AS 'MODULE_PATHNAME', 'pgm_get_preferences'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- The user pgmarket.actor names: NULL when the setting is empty or is not a
-- uuid.  The row-level security policies use it; it reads a setting and
-- nothing else, so it runs as its caller and is granted to the roles.
CREATE FUNCTION @extschema@.current_actor() RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_current_actor'
    LANGUAGE C STABLE PARALLEL SAFE;

-------------------------------------------------------------------------------
-- Audit: preferences are audited from install, like accounts
-------------------------------------------------------------------------------

CREATE TRIGGER pgmarket_audit
    AFTER INSERT OR UPDATE OR DELETE ON @extschema@.preferences
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_trigger();
CREATE TRIGGER pgmarket_audit_truncate
    AFTER TRUNCATE ON @extschema@.preferences
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_trigger();

-------------------------------------------------------------------------------
-- Row-level security
--
-- pgmarket_app: with pgmarket.actor empty, every row (the trusted back end);
-- with it set, only the rows of that user (no row at all when it is not a
-- uuid).  pgmarket_auditor, pgmarket_admin: every row, for reading.  Any
-- other role holds no privilege on these tables.  The owner (a superuser)
-- and the SECURITY DEFINER functions are not subject to the policies.
-------------------------------------------------------------------------------

DO $rls$
DECLARE
    t   record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
            ('accounts', 'id'), ('balances', 'user_id'), ('ledger', 'user_id'),
            ('reservations', 'user_id'), ('provider_keys', 'user_id'),
            ('api_keys', 'user_id'), ('key_access_log', 'user_id'),
            ('chat_sessions', 'user_id'), ('chat_messages', 'user_id'),
            ('ratings', 'user_id'), ('preferences', 'user_id')) AS v(tab, col)
    LOOP
        EXECUTE pg_catalog.format(
            'ALTER TABLE @extschema@.%I ENABLE ROW LEVEL SECURITY', t.tab);
        EXECUTE pg_catalog.format(
            'CREATE POLICY %I ON @extschema@.%I FOR ALL TO pgmarket_app'
            ' USING (pg_catalog.current_setting(''pgmarket.actor'', true) IS NULL'
            '     OR pg_catalog.current_setting(''pgmarket.actor'', true) OPERATOR(pg_catalog.=) '''''
            '     OR %I OPERATOR(pg_catalog.=) @extschema@.current_actor())'
            ' WITH CHECK (pg_catalog.current_setting(''pgmarket.actor'', true) IS NULL'
            '     OR pg_catalog.current_setting(''pgmarket.actor'', true) OPERATOR(pg_catalog.=) '''''
            '     OR %I OPERATOR(pg_catalog.=) @extschema@.current_actor())',
            t.tab || '_actor', t.tab, t.col, t.col);
        EXECUTE pg_catalog.format(
            'CREATE POLICY %I ON @extschema@.%I FOR SELECT'
            ' TO pgmarket_auditor, pgmarket_admin USING (true)',
            t.tab || '_staff', t.tab);
    END LOOP;
END
$rls$;

-- The views that roles read run with the caller's rights, behind a
-- security barrier, so that the policies above apply to them.
ALTER VIEW @extschema@.users
    SET (security_invoker = true, security_barrier = true);
ALTER VIEW @extschema@.model_usage
    SET (security_invoker = true, security_barrier = true);
ALTER VIEW @extschema@.usage_daily
    SET (security_invoker = true, security_barrier = true);

-------------------------------------------------------------------------------
-- Dump support and privileges
-------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('@extschema@.chat_sessions', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.chat_messages', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ratings', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.preferences', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.chat_message_id_seq', '');

REVOKE ALL ON @extschema@.chat_sessions, @extschema@.chat_messages,
    @extschema@.ratings, @extschema@.preferences, @extschema@.model_ratings
    FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.chat_message_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION
    @extschema@.create_chat_session(uuid, text, text, text),
    @extschema@.save_chat_message(uuid, uuid, text, text, int, numeric, jsonb),
    @extschema@.record_completion(uuid, uuid, text, int, numeric, text),
    @extschema@.get_chat_history(uuid, uuid, int, bigint, boolean),
    @extschema@.end_chat_session(uuid, uuid, text, text),
    @extschema@.update_chat_context(uuid, uuid, jsonb),
    @extschema@.delete_chat_session(uuid, uuid),
    @extschema@.list_chat_sessions(uuid),
    @extschema@.rate_model(uuid, text, int, text),
    @extschema@.set_preference(uuid, text, jsonb),
    @extschema@.get_preferences(uuid),
    @extschema@.current_actor()
    FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    @extschema@.create_chat_session(uuid, text, text, text),
    @extschema@.save_chat_message(uuid, uuid, text, text, int, numeric, jsonb),
    @extschema@.record_completion(uuid, uuid, text, int, numeric, text),
    @extschema@.get_chat_history(uuid, uuid, int, bigint, boolean),
    @extschema@.end_chat_session(uuid, uuid, text, text),
    @extschema@.update_chat_context(uuid, uuid, jsonb),
    @extschema@.delete_chat_session(uuid, uuid),
    @extschema@.list_chat_sessions(uuid),
    @extschema@.rate_model(uuid, text, int, text),
    @extschema@.set_preference(uuid, text, jsonb),
    @extschema@.get_preferences(uuid)
    TO pgmarket_app, pgmarket_admin;
GRANT EXECUTE ON FUNCTION @extschema@.current_actor()
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin;

-- Reads under the policies.  The views users, model_usage and usage_daily
-- now run with the caller's rights, so the roles that read them get SELECT
-- on the columns they show, and on no secret: accounts.password_hash stays
-- unreadable (column grants), and so do provider_keys and api_keys as a
-- whole for pgmarket_app.
GRANT SELECT (id, email, username, roles, created_at, last_login_at,
              deleted_at)
    ON @extschema@.accounts TO pgmarket_app, pgmarket_auditor, pgmarket_admin;
GRANT SELECT (user_id, kind, amount, model_id, tokens_used, created_at)
    ON @extschema@.ledger TO pgmarket_app;
GRANT SELECT ON @extschema@.chat_sessions, @extschema@.chat_messages,
    @extschema@.ratings, @extschema@.preferences, @extschema@.model_ratings
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin;

-------------------------------------------------------------------------------
-- Migrations: an account with a password hash made elsewhere
-------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.import_user(id uuid, email text, username text,
        password_hash text DEFAULT NULL, created_at timestamptz DEFAULT NULL)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_import_user'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.import_user(uuid, text, text, text, timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.import_user(uuid, text, text, text, timestamptz)
    TO pgmarket_admin;
