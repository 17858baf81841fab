\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.5.0'" to load this file. \quit

-- pgmarket 0.5.0: money and the audit trail hold against an adversary.
--
-- Sections, one per area, in the order the areas are described in the
-- README.

-------------------------------------------------------------------------------
-- Amounts and batches
-------------------------------------------------------------------------------


-------------------------------------------------------------------------------
-- Accounts: passwords, hashes and emails
-------------------------------------------------------------------------------


-------------------------------------------------------------------------------
-- Secrets kept out of the server log, and health
-------------------------------------------------------------------------------


-------------------------------------------------------------------------------
-- Audit trail: who may attach it, what no wrapper can bypass, the anchor
-------------------------------------------------------------------------------


-------------------------------------------------------------------------------
-- Scaling out: the actor forwarded by the proxy
-------------------------------------------------------------------------------

-- The node's side of pgmarket.actor forwarded by the PL/Proxy front
-- (proxy/): the remote query wraps the first argument of the API call in
-- proxy_actor(actor, value), which sets the actor for the node's transaction
-- and returns value, so that the call runs under it.  Only the role named
-- by pgmarket.proxy_role (or a member) may forward a non-empty actor (42501
-- otherwise).  Neither SECURITY DEFINER nor SET: the role checked is the
-- caller's, and a SET clause would undo the setting on return.
CREATE FUNCTION @extschema@.proxy_actor(actor text, value anyelement)
    RETURNS anyelement
    AS 'MODULE_PATHNAME', 'pgm_proxy_actor'
    LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.proxy_actor(text, anyelement) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.proxy_actor(text, anyelement)
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin, pgmarket_keyreader;

