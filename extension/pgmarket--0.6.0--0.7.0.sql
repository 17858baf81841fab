\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.7.0'" to load this file. \quit

-- pgmarket 0.7.0: the account surface, tiers and rate limits, imports
-- applied on the server in batches.
--
-- Each part below stands under a heading of its own; new functions only,
-- and the tables they need, so that the calls of 0.6.0 keep working.

-------------------------------------------------------------------------------
-------------------------------------------------------------------------------
-- Part: the account surface (lookups, updates, passwords and resets,
-- account roles, reactivation, external identities)
-------------------------------------------------------------------------------
-------------------------------------------------------------------------------

-- Lookups and updates (profiles.c)
CREATE FUNCTION @extschema@.get_user(user_id uuid)
    RETURNS SETOF @extschema@.users
    AS 'MODULE_PATHNAME', 'pgm_get_user'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.get_user_by_email(email text)
    RETURNS SETOF @extschema@.users
    AS 'MODULE_PATHNAME', 'pgm_get_user_by_email'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.get_user_by_username(username text)
    RETURNS SETOF @extschema@.users
    AS 'MODULE_PATHNAME', 'pgm_get_user_by_username'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.update_last_login(user_id uuid)
    RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'pgm_update_last_login'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.update_user(user_id uuid, email text DEFAULT NULL,
        username text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_update_user'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.reactivate_user(user_id uuid)
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgm_reactivate_user'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION
    @extschema@.get_user(uuid),
    @extschema@.get_user_by_email(text),
    @extschema@.get_user_by_username(text),
    @extschema@.update_last_login(uuid),
    @extschema@.update_user(uuid, text, text),
    @extschema@.reactivate_user(uuid)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.get_user(uuid),
    @extschema@.get_user_by_email(text),
    @extschema@.get_user_by_username(text),
    @extschema@.update_last_login(uuid),
    @extschema@.update_user(uuid, text, text),
    @extschema@.reactivate_user(uuid)
    TO pgmarket_app, pgmarket_admin;

-------------------------------------------------------------------------------
-- End of part: the account surface
-------------------------------------------------------------------------------
