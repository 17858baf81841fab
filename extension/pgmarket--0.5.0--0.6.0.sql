\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.6.0'" to load this file. \quit

-- pgmarket 0.6.0: chat keeps the application's own ids, merges context,
-- pages sessions.
--
-- Each chat function that takes new arguments is dropped and created again
-- with its extended signature, never overloaded beside the old one (which
-- would make every old-style call ambiguous); the new arguments come last,
-- with defaults, so the calls of 0.5.0 keep working.  Two old calls change
-- what they do, as the contract now says: update_chat_context merges the
-- keys it is given into the context (merge => false replaces it, as
-- before), and list_chat_sessions returns message counts and last activity
-- instead of end_reason, updated_at and ended_at.  Its pages go by
-- created_at and, among sessions created at the same time, by session_id
-- (before_session_id: the last row's), so that no session falls between
-- two pages.

-------------------------------------------------------------------------------
-- Messages: the application's uuid and the message's own model
-------------------------------------------------------------------------------

-- message_uuid: the application's id of the message, unique across the
-- messages of this database; a repeat with the same uuid and the same
-- message replays.  model_id: the model that produced or received the
-- message, the session's when the call names none (NULL on rows stored
-- before 0.6.0: get_chat_history reports the session's model for them).
ALTER TABLE @extschema@.chat_messages
    ADD COLUMN message_uuid uuid,
    ADD COLUMN model_id text;
CREATE UNIQUE INDEX chat_messages_uuid
    ON @extschema@.chat_messages (message_uuid) WHERE message_uuid IS NOT NULL;

-------------------------------------------------------------------------------
-- Functions with extended signatures
-------------------------------------------------------------------------------

DROP FUNCTION @extschema@.create_chat_session(uuid, text, text, text);
CREATE FUNCTION @extschema@.create_chat_session(user_id uuid, model_id text,
        title text DEFAULT NULL, agent_id text DEFAULT NULL,
        id uuid DEFAULT pg_catalog.gen_random_uuid())
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_create_chat_session'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

DROP FUNCTION @extschema@.save_chat_message(uuid, uuid, text, text, int,
    numeric, jsonb);
CREATE FUNCTION @extschema@.save_chat_message(user_id uuid, session_id uuid,
        role text, content text, tokens int DEFAULT 0, cost numeric DEFAULT 0,
        tool_calls jsonb DEFAULT NULL, message_uuid uuid DEFAULT NULL,
        model_id text DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'pgm_save_chat_message'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

DROP FUNCTION @extschema@.record_completion(uuid, uuid, text, int, numeric,
    text);
CREATE FUNCTION @extschema@.record_completion(user_id uuid, session_id uuid,
        content text, tokens int, cost numeric,
        idempotency_key text DEFAULT NULL, message_uuid uuid DEFAULT NULL,
        model_id text DEFAULT NULL)
    RETURNS @extschema@.ledger_result
    AS 'MODULE_PATHNAME', 'pgm_record_completion'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

DROP FUNCTION @extschema@.get_chat_history(uuid, uuid, int, bigint, boolean);
CREATE FUNCTION @extschema@.get_chat_history(user_id uuid, session_id uuid,
        max_rows int DEFAULT 100, before_id bigint DEFAULT NULL,
        oldest_first boolean DEFAULT false)
    RETURNS TABLE (message_id bigint, role text, content text, tokens int,
                   cost numeric, tool_calls jsonb, created_at timestamptz,
                   model_id text, message_uuid uuid)
    AS 'MODULE_PATHNAME', 'pgm_get_chat_history'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

DROP FUNCTION @extschema@.update_chat_context(uuid, uuid, jsonb);
CREATE FUNCTION @extschema@.update_chat_context(user_id uuid,
        session_id uuid, context jsonb, merge boolean DEFAULT true)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_update_chat_context'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

DROP FUNCTION @extschema@.list_chat_sessions(uuid);
CREATE FUNCTION @extschema@.list_chat_sessions(user_id uuid,
        status text DEFAULT NULL, max_rows int DEFAULT 50,
        before timestamptz DEFAULT NULL, before_session_id uuid DEFAULT NULL)
    RETURNS TABLE (session_id uuid, model_id text, agent_id text,
                   title text, status text, context jsonb,
                   message_count bigint, created_at timestamptz,
                   last_activity_at timestamptz)
    AS 'MODULE_PATHNAME', 'pgm_list_chat_sessions'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-------------------------------------------------------------------------------
-- New functions
-------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.delete_preference(user_id uuid, key text)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'pgm_delete_preference'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-- The user a session belongs to, for callers that hold only its id; NULL
-- when the session is unknown, deleted, or not the user pgmarket.actor
-- names.
CREATE FUNCTION @extschema@.chat_session_owner(session_id uuid)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'pgm_chat_session_owner'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

-------------------------------------------------------------------------------
-- Privileges
-------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    @extschema@.create_chat_session(uuid, text, text, text, uuid),
    @extschema@.save_chat_message(uuid, uuid, text, text, int, numeric, jsonb,
                                  uuid, text),
    @extschema@.record_completion(uuid, uuid, text, int, numeric, text, uuid,
                                  text),
    @extschema@.get_chat_history(uuid, uuid, int, bigint, boolean),
    @extschema@.update_chat_context(uuid, uuid, jsonb, boolean),
    @extschema@.list_chat_sessions(uuid, text, int, timestamptz, uuid),
    @extschema@.delete_preference(uuid, text),
    @extschema@.chat_session_owner(uuid)
    FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    @extschema@.create_chat_session(uuid, text, text, text, uuid),
    @extschema@.save_chat_message(uuid, uuid, text, text, int, numeric, jsonb,
                                  uuid, text),
    @extschema@.record_completion(uuid, uuid, text, int, numeric, text, uuid,
                                  text),
    @extschema@.get_chat_history(uuid, uuid, int, bigint, boolean),
    @extschema@.update_chat_context(uuid, uuid, jsonb, boolean),
    @extschema@.list_chat_sessions(uuid, text, int, timestamptz, uuid),
    @extschema@.delete_preference(uuid, text),
    @extschema@.chat_session_owner(uuid)
    TO pgmarket_app, pgmarket_admin;
