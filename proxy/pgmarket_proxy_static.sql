-- pgmarket_proxy_static.sql: the hand-written part of the proxy schema,
-- appended by proxy/gen_proxy.sh after the generated per-user functions.

-- The routing partition of a platform key, computed here from its public
-- part (the same definition as on a node): hashtext(owner::text) & 65535.
-- It takes the whole key or its 24-character public part alone (key_prefix
-- of the sealed calls).
-- PL/Proxy keeps value & (partition_count - 1), and for any power-of-two
-- count up to 65536 that equals hashtext(owner::text) & (count - 1): the
-- partition of the owner's per-user calls.
CREATE FUNCTION pgmarket.api_key_partition(api_key text) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN api_key OPERATOR(pg_catalog.~)
                     '^sk_(live|test)_[0-9a-f]{16}(_[A-Za-z0-9_-]{43})?$'
                THEN pg_catalog.int4(pg_catalog.textcat('x',
                         pg_catalog.substr(api_key, 9, 4))::bit(16))
           END;

-- Partitions of cluster 'pgmarket': the p<N> options of its server.
CREATE FUNCTION pgmarket_proxy.partition_count() RETURNS int
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT count(*)::int
              FROM pg_foreign_server s, unnest(s.srvoptions) o
             WHERE s.srvname = 'pgmarket' AND o ~ '^p[0-9]+=');

-- The partition of a user: what RUN ON of the per-user functions computes.
CREATE FUNCTION pgmarket_proxy.user_partition(user_id uuid) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN pg_catalog.hashtext(user_id::text)
           OPERATOR(pg_catalog.&) (pgmarket_proxy.partition_count() - 1);

-- The node (connection string) of a partition.
CREATE FUNCTION pgmarket_proxy.partition_node(part int) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT substr(o, length('p' || part) + 2)
              FROM pg_foreign_server s, unnest(s.srvoptions) o
             WHERE s.srvname = 'pgmarket' AND o LIKE 'p' || part || '=%');

-- (Re)defines cluster 'pgmarket': `partitions` partitions (a power of two,
-- default: the number of nodes rounded up to one) dealt round-robin over
-- the nodes, partition p on nodes[p % n + 1].  With a power-of-two number
-- of nodes that puts partition p on node p & (n - 1): raising the partition
-- count (2 -> 8 over 2 nodes) moves no user; adding nodes means moving the
-- partitions that change node (see proxy/README.md).
CREATE FUNCTION pgmarket_proxy.set_nodes(nodes text[], partitions int DEFAULT NULL,
                                         mapping_options text DEFAULT NULL)
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n int := coalesce(cardinality(nodes), 0);
    parts int := coalesce(partitions, n);
    opts text := '';
    p int;
BEGIN
    IF n = 0 THEN
        RAISE EXCEPTION 'set_nodes: no node given' USING ERRCODE = '22023';
    END IF;
    IF parts < n OR parts > 65536 OR (parts & (parts - 1)) <> 0 THEN
        RAISE EXCEPTION 'set_nodes: % partitions: must be a power of two, at least % (the nodes) and at most 65536', parts, n
            USING ERRCODE = '22023';
    END IF;
    FOR p IN 0 .. parts - 1 LOOP
        opts := opts || format(', p%s %L', p, nodes[p % n + 1]);
    END LOOP;
    DROP SERVER IF EXISTS pgmarket CASCADE;
    EXECUTE 'CREATE SERVER pgmarket FOREIGN DATA WRAPPER plproxy OPTIONS ('
            || 'connection_lifetime ''1800'', disable_binary ''1'''
            || opts || ')';
    EXECUTE 'CREATE USER MAPPING FOR PUBLIC SERVER pgmarket'
            || coalesce(' OPTIONS (' || mapping_options || ')', '');
    GRANT USAGE ON FOREIGN SERVER pgmarket
        TO pgmarket_app, pgmarket_auditor, pgmarket_admin, pgmarket_keyreader;
    RETURN parts;
END
$$;

-------------------------------------------------------------------------------
-- The actor travels with every call
--
-- Every call to a node passes this session's pgmarket.actor
-- (current_setting('pgmarket.actor', true)) as the first argument of a
-- PL/Proxy function, whose remote query hands it to the node's
-- pgmarket.proxy_actor(actor, value) before the API function runs:
--  - with arguments, proxy_actor wraps the first one, and an argument is
--    evaluated before the function it is passed to;
--  - without (views, verify_ledger(), seal_audit(), ...), the query reads
--        FROM pgmarket.proxy_actor($1, true) AS a(ok),
--             LATERAL (SELECT ... WHERE a.ok OFFSET 0) AS s
--    the subquery refers to a row of a, so it is evaluated for that row,
--    after it; OFFSET 0 keeps the planner from flattening it into a join
--    whose order would be free.
-- The node sets the actor for its transaction (each remote query is one),
-- and takes it only from the role its pgmarket.proxy_role names (42501
-- otherwise).  An empty or unset actor sets nothing there.
-------------------------------------------------------------------------------

-------------------------------------------------------------------------------
-- Functions of no user: any node answers alike
-------------------------------------------------------------------------------

CREATE FUNCTION pgmarket_proxy.credits_on_any(actor text, micro bigint) RETURNS numeric
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ANY;
    SELECT pgmarket.credits(pgmarket.proxy_actor($1, $2));
$$;

CREATE FUNCTION pgmarket.credits(micro bigint) RETURNS numeric
    LANGUAGE sql STRICT
    RETURN pgmarket_proxy.credits_on_any(
        pg_catalog.current_setting('pgmarket.actor', true), micro);

CREATE FUNCTION pgmarket_proxy.hash_password_on_any(actor text, password text)
    RETURNS text
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ANY;
    SELECT pgmarket.hash_password(pgmarket.proxy_actor($1, $2));
$$;

CREATE FUNCTION pgmarket.hash_password(password text) RETURNS text
    LANGUAGE sql
    RETURN pgmarket_proxy.hash_password_on_any(
        pg_catalog.current_setting('pgmarket.actor', true), password);

CREATE FUNCTION pgmarket_proxy.verify_password_on_any(actor text, password text,
        hash text)
    RETURNS boolean
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ANY;
    SELECT pgmarket.verify_password(pgmarket.proxy_actor($1, $2), $3);
$$;

CREATE FUNCTION pgmarket.verify_password(password text, hash text) RETURNS boolean
    LANGUAGE sql
    RETURN pgmarket_proxy.verify_password_on_any(
        pg_catalog.current_setting('pgmarket.actor', true), password, hash);

-- The sealed forms: any node opens a blob when all share one master key.
CREATE FUNCTION pgmarket_proxy.hash_password_sealed_on_any(actor text,
        sealed_password bytea)
    RETURNS text
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ANY;
    SELECT pgmarket.hash_password_sealed(pgmarket.proxy_actor($1, $2));
$$;

CREATE FUNCTION pgmarket.hash_password_sealed(sealed_password bytea) RETURNS text
    LANGUAGE sql
    RETURN pgmarket_proxy.hash_password_sealed_on_any(
        pg_catalog.current_setting('pgmarket.actor', true), sealed_password);

CREATE FUNCTION pgmarket_proxy.verify_password_sealed_on_any(actor text,
        sealed_password bytea, hash text)
    RETURNS boolean
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ANY;
    SELECT pgmarket.verify_password_sealed(pgmarket.proxy_actor($1, $2), $3);
$$;

CREATE FUNCTION pgmarket.verify_password_sealed(sealed_password bytea, hash text)
    RETURNS boolean
    LANGUAGE sql
    RETURN pgmarket_proxy.verify_password_sealed_on_any(
        pg_catalog.current_setting('pgmarket.actor', true), sealed_password, hash);

-- The sealed path needs one master key on every node (scaleout.sh
-- --same-key): a secret sealed to one node's public key opens only there.
CREATE FUNCTION pgmarket_proxy.vault_public_key_on_any(actor text) RETURNS bytea
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ANY;
    SELECT s.k FROM pgmarket.proxy_actor($1, true) AS a(ok),
           LATERAL (SELECT pgmarket.vault_public_key() AS k WHERE a.ok OFFSET 0) AS s;
$$;

CREATE FUNCTION pgmarket.vault_public_key() RETURNS bytea
    LANGUAGE sql
    RETURN pgmarket_proxy.vault_public_key_on_any(
        pg_catalog.current_setting('pgmarket.actor', true));

-------------------------------------------------------------------------------
-- Cross-user functions: RUN ON ALL, merged here
-------------------------------------------------------------------------------

-- A login is an email or a username: not routable; every node checks it
-- (each in comparable time) and at most one says who.
CREATE FUNCTION pgmarket_proxy.authenticate_all(actor text, login text, password text)
    RETURNS SETOF uuid
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT pgmarket.authenticate(pgmarket.proxy_actor($1, $2), $3);
$$;

CREATE FUNCTION pgmarket.authenticate(login text, password text) RETURNS uuid
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT a FROM pgmarket_proxy.authenticate_all(
                       current_setting('pgmarket.actor', true), login, password) a
             WHERE a IS NOT NULL LIMIT 1);

-- A session id is the application's own and names no partition: every
-- node looks (an index probe each), at most one knows the session.
CREATE FUNCTION pgmarket_proxy.chat_session_owner_all(actor text, session_id uuid)
    RETURNS SETOF uuid
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT pgmarket.chat_session_owner(pgmarket.proxy_actor($1, $2));
$$;

-- An id that two nodes know (an application chose it twice) names no one.
CREATE FUNCTION pgmarket.chat_session_owner(session_id uuid) RETURNS uuid
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT CASE WHEN count(*) = 1 THEN (array_agg(o))[1] END
              FROM pgmarket_proxy.chat_session_owner_all(
                       current_setting('pgmarket.actor', true), session_id) o
             WHERE o IS NOT NULL);

CREATE FUNCTION pgmarket_proxy.authenticate_sealed_all(actor text, login text,
        sealed_password bytea)
    RETURNS SETOF uuid
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT pgmarket.authenticate_sealed(pgmarket.proxy_actor($1, $2), $3);
$$;

CREATE FUNCTION pgmarket.authenticate_sealed(login text, sealed_password bytea)
    RETURNS uuid
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT a FROM pgmarket_proxy.authenticate_sealed_all(
                       current_setting('pgmarket.actor', true), login,
                       sealed_password) a
             WHERE a IS NOT NULL LIMIT 1);

-- Every node's health(), merged: ok only when every node is ok, counts
-- summed (connections too: each node has its own max_connections), the
-- oldest unsealed age and the problems of all nodes.
CREATE FUNCTION pgmarket_proxy.health_all(actor text) RETURNS SETOF jsonb
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT s.h FROM pgmarket.proxy_actor($1, true) AS a(ok),
           LATERAL (SELECT pgmarket.health() AS h WHERE a.ok OFFSET 0) AS s;
$$;

CREATE FUNCTION pgmarket.health() RETURNS jsonb
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (
    WITH n AS (SELECT h FROM pgmarket_proxy.health_all(
                                 current_setting('pgmarket.actor', true)) h)
    SELECT jsonb_build_object(
        'ok', bool_and((h ->> 'ok')::boolean),
        'version', min(h ->> 'version'),
        'vault', jsonb_build_object(
            'configured', bool_and((h -> 'vault' ->> 'configured')::boolean),
            'loaded', bool_and((h -> 'vault' ->> 'loaded')::boolean),
            'versions', min((h -> 'vault' ->> 'versions')::int),
            'newest', min((h -> 'vault' ->> 'newest')::int)),
        'audit', jsonb_build_object(
            'unsealed', sum((h -> 'audit' ->> 'unsealed')::bigint),
            'oldest_unsealed_age_s',
                max((h -> 'audit' ->> 'oldest_unsealed_age_s')::bigint)),
        'holds', jsonb_build_object(
            'live', sum((h -> 'holds' ->> 'live')::bigint),
            'expired_unswept', sum((h -> 'holds' ->> 'expired_unswept')::bigint)),
        'connections', jsonb_build_object(
            'used', sum((h -> 'connections' ->> 'used')::int),
            'max', sum((h -> 'connections' ->> 'max')::int)),
        'logs_bind_parameters', bool_or((h ->> 'logs_bind_parameters')::boolean),
        'problems', coalesce((SELECT jsonb_agg(p.v)
                                FROM n, jsonb_array_elements(n.h -> 'problems') p(v)),
                             '[]'::jsonb))
      FROM n);

CREATE FUNCTION pgmarket_proxy.expire_reservations_all(actor text) RETURNS SETOF int
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT s.n FROM pgmarket.proxy_actor($1, true) AS a(ok),
           LATERAL (SELECT pgmarket.expire_reservations() AS n WHERE a.ok OFFSET 0) AS s;
$$;

CREATE FUNCTION pgmarket.expire_reservations() RETURNS int
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT coalesce(sum(n), 0)::int
              FROM pgmarket_proxy.expire_reservations_all(
                       current_setting('pgmarket.actor', true)) n);

CREATE FUNCTION pgmarket_proxy.seal_audit_all(actor text) RETURNS SETOF bigint
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT s.n FROM pgmarket.proxy_actor($1, true) AS a(ok),
           LATERAL (SELECT pgmarket.seal_audit() AS n WHERE a.ok OFFSET 0) AS s;
$$;

CREATE FUNCTION pgmarket.seal_audit() RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT coalesce(sum(n), 0)::bigint
              FROM pgmarket_proxy.seal_audit_all(
                       current_setting('pgmarket.actor', true)) n);

CREATE FUNCTION pgmarket_proxy.purge_audit_all(actor text, before timestamptz)
    RETURNS SETOF bigint
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT pgmarket.purge_audit(pgmarket.proxy_actor($1, $2));
$$;

CREATE FUNCTION pgmarket.purge_audit(before timestamptz) RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT coalesce(sum(n), 0)::bigint
              FROM pgmarket_proxy.purge_audit_all(
                       current_setting('pgmarket.actor', true), before) n);

-- One batch per node per call: 0 once every node is done.
CREATE FUNCTION pgmarket_proxy.rotate_master_key_all(actor text, batch_size int)
    RETURNS SETOF bigint
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT pgmarket.rotate_master_key(pgmarket.proxy_actor($1, $2));
$$;

CREATE FUNCTION pgmarket.rotate_master_key(batch_size int DEFAULT 1000) RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT coalesce(sum(n), 0)::bigint
              FROM pgmarket_proxy.rotate_master_key_all(
                       current_setting('pgmarket.actor', true), batch_size) n);

-- Tiers are each node's own table: set on every node, so that a key
-- created on any node finds its tier there and its limiter (on the key's
-- own node) reads the same limits.
CREATE FUNCTION pgmarket_proxy.set_tier_all(actor text, name text,
        requests_per_minute int, tokens_per_minute bigint, burst int)
    RETURNS SETOF int
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT 1 FROM pgmarket.set_tier(pgmarket.proxy_actor($1, $2), $3, $4, $5);
$$;

CREATE FUNCTION pgmarket.set_tier(name text, requests_per_minute int,
        tokens_per_minute bigint, burst int DEFAULT 0) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT count(*) FROM pgmarket_proxy.set_tier_all(
        current_setting('pgmarket.actor', true), name, requests_per_minute,
        tokens_per_minute, burst);
END;

-- Each node's audit chain is its own: one row per node here, merged to
-- the first bad id (an id of the node whose chain broke) and the rows
-- checked over all nodes.  strict => true raises PM013 from that node.  An
-- anchor is the head of one node's chain: every node verifies its chain
-- without it, and the anchor must lie on the chain of one of them (else
-- the first bad id any node reports for it, PM013 under strict).
CREATE FUNCTION pgmarket_proxy.verify_audit_all(actor text, strict boolean,
        anchor bytea)
    RETURNS TABLE (first_bad_id bigint, checked bigint)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT * FROM pgmarket.verify_audit(pgmarket.proxy_actor($1, $2), $3);
$$;

CREATE FUNCTION pgmarket.verify_audit(strict boolean DEFAULT false,
        anchor bytea DEFAULT NULL::bytea)
    RETURNS TABLE (first_bad_id bigint, checked bigint)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    actor   text := current_setting('pgmarket.actor', true);
    bad     bigint;
    n       bigint;
    on_one  boolean;
    abad    bigint;
BEGIN
    SELECT min(v.first_bad_id), coalesce(sum(v.checked), 0)::bigint
      INTO bad, n
      FROM pgmarket_proxy.verify_audit_all(actor, strict, NULL) v;
    IF anchor IS NOT NULL AND bad IS NULL THEN
        SELECT bool_or(v.first_bad_id IS NULL), min(v.first_bad_id)
          INTO on_one, abad
          FROM pgmarket_proxy.verify_audit_all(actor, false, anchor) v;
        IF NOT coalesce(on_one, false) THEN
            IF strict THEN
                RAISE EXCEPTION USING ERRCODE = 'PM013',
                    MESSAGE = format('audit chain broken at audit_log id %s: no node''s chain contains the anchor',
                                     abad);
            END IF;
            bad := abad;
        END IF;
    END IF;
    first_bad_id := bad;
    checked := n;
    RETURN NEXT;
END
$$;

-- The head of each node's chain: one row per node (an anchor names one).
CREATE FUNCTION pgmarket_proxy.audit_head_all(actor text)
    RETURNS TABLE (last_id bigint, chain_hash bytea, sealed_at timestamptz)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT s.* FROM pgmarket.proxy_actor($1, true) AS a(ok),
           LATERAL (SELECT * FROM pgmarket.audit_head() WHERE a.ok OFFSET 0) AS s;
$$;

CREATE FUNCTION pgmarket.audit_head()
    RETURNS TABLE (last_id bigint, chain_hash bytea, sealed_at timestamptz)
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM pgmarket_proxy.audit_head_all(current_setting('pgmarket.actor', true));
END;

-- Rows of users live on their node: the union is the answer.
CREATE FUNCTION pgmarket_proxy.verify_ledger_all(actor text)
    RETURNS TABLE (user_id uuid, problem text)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT s.* FROM pgmarket.proxy_actor($1, true) AS a(ok),
           LATERAL (SELECT * FROM pgmarket.verify_ledger() WHERE a.ok OFFSET 0) AS s;
$$;

CREATE FUNCTION pgmarket.verify_ledger()
    RETURNS TABLE (user_id uuid, problem text)
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT * FROM pgmarket_proxy.verify_ledger_all(current_setting('pgmarket.actor', true));
END;

-------------------------------------------------------------------------------
-- Views: computed per node, merged here
-------------------------------------------------------------------------------

-- The node's views model_usage, usage_daily and users show a connection
-- with an actor only the actor's rows (row-level security): so do these.
CREATE FUNCTION pgmarket_proxy.model_usage_all(actor text)
    RETURNS TABLE (model_id text, requests bigint, tokens numeric, cost numeric)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT s.* FROM pgmarket.proxy_actor($1, true) AS a(ok),
           LATERAL (SELECT model_id, requests, tokens, cost FROM pgmarket.model_usage
                     WHERE a.ok OFFSET 0) AS s;
$$;

CREATE VIEW pgmarket.model_usage AS
    SELECT m.model_id,
           sum(m.requests)::bigint AS requests,
           sum(m.tokens) AS tokens,
           sum(m.cost) AS cost
      FROM pgmarket_proxy.model_usage_all(current_setting('pgmarket.actor', true)) m
     GROUP BY m.model_id;

CREATE FUNCTION pgmarket_proxy.usage_daily_all(actor text)
    RETURNS TABLE (user_id uuid, day date, model_id text, requests bigint,
                   tokens numeric, cost numeric)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT s.* FROM pgmarket.proxy_actor($1, true) AS a(ok),
           LATERAL (SELECT user_id, day, model_id, requests, tokens, cost
                      FROM pgmarket.usage_daily WHERE a.ok OFFSET 0) AS s;
$$;

CREATE VIEW pgmarket.usage_daily AS
    SELECT * FROM pgmarket_proxy.usage_daily_all(current_setting('pgmarket.actor', true));

CREATE FUNCTION pgmarket_proxy.users_all(actor text)
    RETURNS TABLE (id uuid, email text, username text, roles text[],
                   is_active boolean, created_at timestamptz,
                   last_login_at timestamptz)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT s.* FROM pgmarket.proxy_actor($1, true) AS a(ok),
           LATERAL (SELECT id, email, username, roles, is_active, created_at,
                           last_login_at
                      FROM pgmarket.users WHERE a.ok OFFSET 0) AS s;
$$;

CREATE VIEW pgmarket.users AS
    SELECT * FROM pgmarket_proxy.users_all(current_setting('pgmarket.actor', true));

-- Exact: counts and sums of stars per node, averaged here.  No actor: the
-- node's view model_ratings is not filtered by the actor (it runs with its
-- owner's rights over every rating), so the proxy reads every rating too.
CREATE FUNCTION pgmarket_proxy.model_ratings_all()
    RETURNS TABLE (model_id text, ratings bigint, stars bigint)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT model_id, count(*) AS ratings, sum(stars)::bigint AS stars
      FROM pgmarket.ratings GROUP BY model_id;
$$;

CREATE VIEW pgmarket.model_ratings AS
    SELECT r.model_id,
           sum(r.ratings)::bigint AS ratings,
           round(sum(r.stars)::numeric / sum(r.ratings), 2) AS average_stars
      FROM pgmarket_proxy.model_ratings_all() r
     GROUP BY r.model_id;

-- The tiers, which set_tier keeps the same on every node: partition 0's
-- node answers for all, as a table of the node would.
CREATE FUNCTION pgmarket_proxy.tiers_on_any()
    RETURNS TABLE (name text, requests_per_minute int, tokens_per_minute bigint,
                   burst int)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON 0;
    SELECT name, requests_per_minute, tokens_per_minute, burst FROM pgmarket.tiers;
$$;

CREATE VIEW pgmarket.tiers AS
    SELECT * FROM pgmarket_proxy.tiers_on_any();

-------------------------------------------------------------------------------
-- deduct_batch: split by partition, one call per partition, merged back
-- into input order
-------------------------------------------------------------------------------

-- With an actor, each node refuses its other users' charges one by one
-- (42501 rows), as one node does.
CREATE FUNCTION pgmarket_proxy.deduct_batch_on(actor text, part int,
        charges pgmarket.charge[])
    RETURNS TABLE (ordinal int, sqlstate text, entry_id bigint,
                   available_balance numeric)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON part;
    SELECT * FROM pgmarket.deduct_batch(pgmarket.proxy_actor($1, $3));
$$;

-- Each sub-batch applies on its node on its own terms, as each charge does
-- on one node; a node that is down fails the whole call (the other nodes'
-- sub-batches that ran before are applied: retry with the same idempotency
-- keys).
CREATE FUNCTION pgmarket.deduct_batch(charges pgmarket.charge[])
    RETURNS TABLE (ordinal int, sqlstate text, entry_id bigint,
                   available_balance numeric)
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH input AS (
        SELECT (i - array_lower(charges, 1) + 1)::int AS ord,
               charges[i] AS c
          FROM generate_subscripts(charges, 1) i
         WHERE array_ndims(charges) = 1 AND cardinality(charges) <= 100000
    ), parts AS (
        SELECT coalesce(pgmarket_proxy.user_partition((c).user_id), 0) AS part,
               array_agg(c ORDER BY ord) AS cs,
               array_agg(ord ORDER BY ord) AS ords
          FROM input
         GROUP BY 1
    ), nulls AS (
        -- A NULL or empty array, or one that is not a list of at most
        -- 100,000 charges (split up, it would pass): the node says what one
        -- node says.
        SELECT 0 AS part, charges AS cs, ARRAY[]::int[] AS ords
         WHERE coalesce(cardinality(charges), 0) = 0
            OR array_ndims(charges) > 1 OR cardinality(charges) > 100000
    )
    SELECT coalesce(p.ords[r.ordinal], r.ordinal), r.sqlstate, r.entry_id,
           r.available_balance
      FROM (SELECT * FROM parts UNION ALL SELECT * FROM nulls) p
      CROSS JOIN LATERAL pgmarket_proxy.deduct_batch_on(
                             current_setting('pgmarket.actor', true), p.part, p.cs) r
     ORDER BY 1;
END;

-------------------------------------------------------------------------------
-- One directory of emails and usernames for all nodes
-------------------------------------------------------------------------------

-- Each node keeps its users' emails and usernames unique; across nodes the
-- proxy does: create_user and import_user claim the email and the username
-- here, in the proxy's transaction, before the node creates the user.  If
-- the node refuses, the transaction rolls back and the claim with it.
CREATE TABLE pgmarket_proxy.directory (
    email          text PRIMARY KEY,
    username_lower text NOT NULL UNIQUE,
    user_id        uuid NOT NULL
);

CREATE FUNCTION pgmarket_proxy.claim_identity(p_id uuid, p_email text,
        p_username text)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e text;
    u text;
    owner uuid;
BEGIN
    -- a NULL is the node's to report, with the node's SQLSTATE
    IF p_id IS NULL OR p_email IS NULL OR p_username IS NULL THEN
        RETURN;
    END IF;
    e := lower(btrim(p_email, E' \t\n\r'));
    u := lower(p_username);
    BEGIN
        INSERT INTO pgmarket_proxy.directory VALUES (e, u, p_id);
    EXCEPTION WHEN unique_violation THEN
        SELECT d.user_id INTO owner FROM pgmarket_proxy.directory d WHERE d.email = e;
        IF FOUND AND owner <> p_id THEN
            RAISE EXCEPTION USING ERRCODE = '23505',
                MESSAGE = format('email "%s" is already registered', e);
        END IF;
        SELECT d.user_id INTO owner FROM pgmarket_proxy.directory d
         WHERE d.username_lower = u;
        IF FOUND AND owner <> p_id THEN
            RAISE EXCEPTION USING ERRCODE = '23505',
                MESSAGE = format('username "%s" is already taken', p_username),
                DETAIL = 'Usernames are unique without regard to case.';
        END IF;
        -- the same user again (a repeated import): the node decides
    END;
END
$$;

CREATE FUNCTION pgmarket.create_user(email text, username text,
        password text DEFAULT NULL::text, roles text[] DEFAULT '{user}'::text[],
        id uuid DEFAULT gen_random_uuid())
    RETURNS uuid
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pgmarket_proxy.claim_identity(id, email, username);
    RETURN pgmarket_proxy.create_user_on_node(
        pg_catalog.current_setting('pgmarket.actor', true),
        email, username, password, roles, id);
END
$$;

CREATE FUNCTION pgmarket.create_user_sealed(email text, username text,
        sealed_password bytea DEFAULT NULL::bytea,
        roles text[] DEFAULT '{user}'::text[],
        id uuid DEFAULT gen_random_uuid())
    RETURNS uuid
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pgmarket_proxy.claim_identity(id, email, username);
    RETURN pgmarket_proxy.create_user_sealed_on_node(
        pg_catalog.current_setting('pgmarket.actor', true),
        email, username, sealed_password, roles, id);
END
$$;

CREATE FUNCTION pgmarket.create_user_hashed(email text, username text,
        password_hash text, roles text[] DEFAULT '{user}'::text[],
        id uuid DEFAULT gen_random_uuid())
    RETURNS uuid
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pgmarket_proxy.claim_identity(id, email, username);
    RETURN pgmarket_proxy.create_user_hashed_on_node(
        pg_catalog.current_setting('pgmarket.actor', true),
        email, username, password_hash, roles, id);
END
$$;

-- erase_user: the node erases; the proxy's directory then forgets the
-- user's email and username too (in the same transaction)
CREATE FUNCTION pgmarket_proxy.release_identity(p_id uuid)
    RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM pgmarket_proxy.directory d WHERE d.user_id = p_id;
$$;

CREATE FUNCTION pgmarket.erase_user(user_id uuid)
    RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pgmarket_proxy.erase_user_on_node(
        pg_catalog.current_setting('pgmarket.actor', true), user_id);
    PERFORM pgmarket_proxy.release_identity(user_id);
END
$$;

CREATE FUNCTION pgmarket.import_user(id uuid, email text, username text,
        password_hash text DEFAULT NULL::text,
        created_at timestamp with time zone DEFAULT NULL::timestamp with time zone)
    RETURNS uuid
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pgmarket_proxy.claim_identity(id, email, username);
    RETURN pgmarket_proxy.import_user_on_node(
        pg_catalog.current_setting('pgmarket.actor', true),
        id, email, username, password_hash, created_at);
END
$$;

-------------------------------------------------------------------------------
-- Accounts: lookups, updates, resets, roles and identities
-------------------------------------------------------------------------------

-- The routing partition of a password reset token (resets.c on a node):
-- the four hex digits after "pwr_" are hashtext(user_id::text) & 65535, as
-- in a platform key.  NULL for a text that is not shaped like a token; the
-- call then goes to partition 0, which answers NULL as every node would.
CREATE FUNCTION pgmarket.reset_token_partition(token text) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN token OPERATOR(pg_catalog.~)
                     '^pwr_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$'
                THEN pg_catalog.int4(pg_catalog.textcat('x',
                         pg_catalog.substr(token, 5, 4))::bit(16))
           END;

-- get_user: on the user's node.  Declared here rather than generated: its
-- result is the row type of the view users, which this part creates.
CREATE FUNCTION pgmarket_proxy.get_user_on_node(actor text, user_id uuid)
    RETURNS TABLE (id uuid, email text, username text, roles text[],
                   is_active boolean, created_at timestamptz,
                   last_login_at timestamptz)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON coalesce(hashtext(user_id::text), 0);
    SELECT * FROM pgmarket.get_user(pgmarket.proxy_actor($1, $2));
$$;

CREATE FUNCTION pgmarket.get_user(user_id uuid)
    RETURNS SETOF pgmarket.users
    LANGUAGE sql
BEGIN ATOMIC
    SELECT * FROM pgmarket_proxy.get_user_on_node(
        pg_catalog.current_setting('pgmarket.actor', true), user_id);
END;

-- An email or a username names no partition: every node looks (an index
-- probe each), at most one finds the user.
CREATE FUNCTION pgmarket_proxy.get_user_by_email_all(actor text, email text)
    RETURNS TABLE (id uuid, email text, username text, roles text[],
                   is_active boolean, created_at timestamptz,
                   last_login_at timestamptz)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT * FROM pgmarket.get_user_by_email(pgmarket.proxy_actor($1, $2));
$$;

CREATE FUNCTION pgmarket.get_user_by_email(email text)
    RETURNS SETOF pgmarket.users
    LANGUAGE sql
BEGIN ATOMIC
    SELECT * FROM pgmarket_proxy.get_user_by_email_all(
        pg_catalog.current_setting('pgmarket.actor', true), email);
END;

CREATE FUNCTION pgmarket_proxy.get_user_by_username_all(actor text, username text)
    RETURNS TABLE (id uuid, email text, username text, roles text[],
                   is_active boolean, created_at timestamptz,
                   last_login_at timestamptz)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT * FROM pgmarket.get_user_by_username(pgmarket.proxy_actor($1, $2));
$$;

CREATE FUNCTION pgmarket.get_user_by_username(username text)
    RETURNS SETOF pgmarket.users
    LANGUAGE sql
BEGIN ATOMIC
    SELECT * FROM pgmarket_proxy.get_user_by_username_all(
        pg_catalog.current_setting('pgmarket.actor', true), username);
END;

-- update_user claims a new email or username in the directory first (as
-- create_user does), so that they stay unique across all nodes; the node
-- then checks and changes them.  A user the directory does not know
-- (created on a node directly) is the node's alone to check.
CREATE FUNCTION pgmarket_proxy.claim_update(p_id uuid, p_email text,
        p_username text)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e text := lower(btrim(p_email, E' \t\n\r'));
    u text := lower(p_username);
BEGIN
    IF p_id IS NULL OR (p_email IS NULL AND p_username IS NULL) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM pgmarket_proxy.directory d
                WHERE d.email = e AND d.user_id <> p_id) THEN
        RAISE EXCEPTION USING ERRCODE = '23505',
            MESSAGE = format('email "%s" is already registered', e);
    END IF;
    IF EXISTS (SELECT FROM pgmarket_proxy.directory d
                WHERE d.username_lower = u AND d.user_id <> p_id) THEN
        RAISE EXCEPTION USING ERRCODE = '23505',
            MESSAGE = format('username "%s" is already taken', p_username),
            DETAIL = 'Usernames are unique without regard to case.';
    END IF;
    UPDATE pgmarket_proxy.directory d
       SET email = coalesce(e, d.email),
           username_lower = coalesce(u, d.username_lower)
     WHERE d.user_id = p_id;
END
$$;

CREATE FUNCTION pgmarket.update_user(user_id uuid, email text DEFAULT NULL::text,
        username text DEFAULT NULL::text)
    RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pgmarket_proxy.claim_update(user_id, email, username);
    PERFORM pgmarket_proxy.update_user_on_node(
        pg_catalog.current_setting('pgmarket.actor', true),
        user_id, email, username);
END
$$;

-- An identity names no partition: every node looks, and an identity that
-- two nodes know (linked on each) names no one.
CREATE FUNCTION pgmarket_proxy.user_by_identity_all(actor text, provider text,
        subject text)
    RETURNS SETOF uuid
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT pgmarket.user_by_identity(pgmarket.proxy_actor($1, $2), $3);
$$;

CREATE FUNCTION pgmarket.user_by_identity(provider text, subject text)
    RETURNS uuid
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT CASE WHEN count(*) = 1 THEN (array_agg(o))[1] END
              FROM pgmarket_proxy.user_by_identity_all(
                       current_setting('pgmarket.actor', true), provider, subject) o
             WHERE o IS NOT NULL);

-- Every node has its own table of roles: a role is registered on all.
CREATE FUNCTION pgmarket_proxy.add_account_role_all(actor text, name text,
        description text)
    RETURNS SETOF int
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT 1 FROM pgmarket.add_account_role(pgmarket.proxy_actor($1, $2), $3);
$$;

CREATE FUNCTION pgmarket.add_account_role(name text, description text DEFAULT NULL::text)
    RETURNS void
    LANGUAGE sql
BEGIN ATOMIC
    SELECT count(*) FROM pgmarket_proxy.add_account_role_all(
        pg_catalog.current_setting('pgmarket.actor', true), name, description);
END;
