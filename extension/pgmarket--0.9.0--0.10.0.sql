\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.10.0'" to load this file. \quit

-- pgmarket 0.10.0: the read paths of platform keys and chat history without
-- a SET clause.
--
-- verify_api_key and get_chat_history read by index in C; on their common
-- path they run no SQL and resolve no name.  A SET search_path clause set
-- and restored a GUC around every call and left the caller's search path
-- to be computed again, about a tenth of a verification.  The SQL they do
-- run (a key's last_used_at stamp, a first call's plans, the error paths)
-- is resolved under the same path as before, "pg_catalog, pg_temp", which
-- extension/spi.c sets itself, as a SET clause sets it, whenever they
-- connect to SPI.  They stay SECURITY DEFINER.

ALTER FUNCTION @extschema@.verify_api_key(text) RESET search_path;
ALTER FUNCTION @extschema@.get_chat_history(uuid, uuid, int, bigint, boolean)
    RESET search_path;
