-- pgmarket_proxy_static.sql: the hand-written part of the proxy schema,
-- appended by proxy/gen_proxy.sh after the generated per-user functions.

-- The routing partition of a platform key, computed here from its public
-- part (the same definition as on a node): hashtext(owner::text) & 65535.
-- PL/Proxy keeps value & (partition_count - 1), and for any power-of-two
-- count up to 65536 that equals hashtext(owner::text) & (count - 1): the
-- partition of the owner's per-user calls.
CREATE FUNCTION pgmarket.api_key_partition(api_key text) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN api_key OPERATOR(pg_catalog.~)
                     '^sk_(live|test)_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$'
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
-- Functions of no user: any node answers alike
-------------------------------------------------------------------------------

CREATE FUNCTION pgmarket.credits(micro bigint) RETURNS numeric
    LANGUAGE plproxy STRICT
AS $$ CLUSTER 'pgmarket'; RUN ON ANY; $$;

CREATE FUNCTION pgmarket.hash_password(password text) RETURNS text
    LANGUAGE plproxy
AS $$ CLUSTER 'pgmarket'; RUN ON ANY; $$;

CREATE FUNCTION pgmarket.verify_password(password text, hash text) RETURNS boolean
    LANGUAGE plproxy
AS $$ CLUSTER 'pgmarket'; RUN ON ANY; $$;

-- The sealed path needs one master key on every node (scaleout.sh
-- --same-key): a secret sealed to one node's public key opens only there.
CREATE FUNCTION pgmarket.vault_public_key() RETURNS bytea
    LANGUAGE plproxy
AS $$ CLUSTER 'pgmarket'; RUN ON ANY; $$;

-------------------------------------------------------------------------------
-- Cross-user functions: RUN ON ALL, merged here
-------------------------------------------------------------------------------

-- A login is an email or a username: not routable; every node checks it
-- (each in comparable time) and at most one says who.
CREATE FUNCTION pgmarket_proxy.authenticate_all(login text, password text)
    RETURNS SETOF uuid
    LANGUAGE plproxy
AS $$ CLUSTER 'pgmarket'; RUN ON ALL; TARGET pgmarket.authenticate; $$;

CREATE FUNCTION pgmarket.authenticate(login text, password text) RETURNS uuid
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT a FROM pgmarket_proxy.authenticate_all(login, password) a
             WHERE a IS NOT NULL LIMIT 1);

CREATE FUNCTION pgmarket_proxy.expire_reservations_all() RETURNS SETOF int
    LANGUAGE plproxy
AS $$ CLUSTER 'pgmarket'; RUN ON ALL; TARGET pgmarket.expire_reservations; $$;

CREATE FUNCTION pgmarket.expire_reservations() RETURNS int
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT coalesce(sum(n), 0)::int
              FROM pgmarket_proxy.expire_reservations_all() n);

CREATE FUNCTION pgmarket_proxy.seal_audit_all() RETURNS SETOF bigint
    LANGUAGE plproxy
AS $$ CLUSTER 'pgmarket'; RUN ON ALL; TARGET pgmarket.seal_audit; $$;

CREATE FUNCTION pgmarket.seal_audit() RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT coalesce(sum(n), 0)::bigint FROM pgmarket_proxy.seal_audit_all() n);

CREATE FUNCTION pgmarket_proxy.purge_audit_all(before timestamptz) RETURNS SETOF bigint
    LANGUAGE plproxy
AS $$ CLUSTER 'pgmarket'; RUN ON ALL; TARGET pgmarket.purge_audit; $$;

CREATE FUNCTION pgmarket.purge_audit(before timestamptz) RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT coalesce(sum(n), 0)::bigint
              FROM pgmarket_proxy.purge_audit_all(before) n);

-- One batch per node per call: 0 once every node is done.
CREATE FUNCTION pgmarket_proxy.rotate_master_key_all(batch_size int) RETURNS SETOF bigint
    LANGUAGE plproxy
AS $$ CLUSTER 'pgmarket'; RUN ON ALL; TARGET pgmarket.rotate_master_key; $$;

CREATE FUNCTION pgmarket.rotate_master_key(batch_size int DEFAULT 1000) RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT coalesce(sum(n), 0)::bigint
              FROM pgmarket_proxy.rotate_master_key_all(batch_size) n);

-- Each node's audit chain is its own: one row per node here, merged to
-- the first bad id (an id of the node whose chain broke) and the rows
-- checked over all nodes.  strict => true raises PM013 from that node.  An
-- anchor is the head of one node's chain: every node verifies its chain
-- without it, and the anchor must lie on the chain of one of them (else
-- the first bad id any node reports for it, PM013 under strict).
CREATE FUNCTION pgmarket_proxy.verify_audit_all(strict boolean, anchor bytea)
    RETURNS TABLE (first_bad_id bigint, checked bigint)
    LANGUAGE plproxy
AS $$ CLUSTER 'pgmarket'; RUN ON ALL; TARGET pgmarket.verify_audit; $$;

CREATE FUNCTION pgmarket.verify_audit(strict boolean DEFAULT false,
        anchor bytea DEFAULT NULL)
    RETURNS TABLE (first_bad_id bigint, checked bigint)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad   bigint;
    n     bigint;
    found boolean;
    abad  bigint;
BEGIN
    SELECT min(v.first_bad_id), coalesce(sum(v.checked), 0)::bigint
      INTO bad, n
      FROM pgmarket_proxy.verify_audit_all(strict, NULL) v;
    IF anchor IS NOT NULL AND bad IS NULL THEN
        SELECT bool_or(v.first_bad_id IS NULL), min(v.first_bad_id)
          INTO found, abad
          FROM pgmarket_proxy.verify_audit_all(false, anchor) v;
        IF NOT coalesce(found, false) THEN
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
CREATE FUNCTION pgmarket.audit_head()
    RETURNS TABLE (last_id bigint, chain_hash bytea, sealed_at timestamptz)
    LANGUAGE plproxy
AS $$ CLUSTER 'pgmarket'; RUN ON ALL; $$;

-- Rows of users live on their node: the union is the answer.
CREATE FUNCTION pgmarket.verify_ledger()
    RETURNS TABLE (user_id uuid, problem text)
    LANGUAGE plproxy
AS $$ CLUSTER 'pgmarket'; RUN ON ALL; $$;

-------------------------------------------------------------------------------
-- Views: computed per node, merged here
-------------------------------------------------------------------------------

CREATE FUNCTION pgmarket_proxy.model_usage_all()
    RETURNS TABLE (model_id text, requests bigint, tokens bigint, cost numeric)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT model_id, requests, tokens, cost FROM pgmarket.model_usage;
$$;

CREATE VIEW pgmarket.model_usage AS
    SELECT m.model_id,
           sum(m.requests)::bigint AS requests,
           sum(m.tokens)::bigint AS tokens,
           sum(m.cost) AS cost
      FROM pgmarket_proxy.model_usage_all() m
     GROUP BY m.model_id;

CREATE FUNCTION pgmarket_proxy.usage_daily_all()
    RETURNS TABLE (user_id uuid, day date, model_id text, requests bigint,
                   tokens bigint, cost numeric)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT user_id, day, model_id, requests, tokens, cost FROM pgmarket.usage_daily;
$$;

CREATE VIEW pgmarket.usage_daily AS
    SELECT * FROM pgmarket_proxy.usage_daily_all();

CREATE FUNCTION pgmarket_proxy.users_all()
    RETURNS TABLE (id uuid, email text, username text, roles text[],
                   is_active boolean, created_at timestamptz,
                   last_login_at timestamptz)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON ALL;
    SELECT id, email, username, roles, is_active, created_at, last_login_at
      FROM pgmarket.users;
$$;

CREATE VIEW pgmarket.users AS
    SELECT * FROM pgmarket_proxy.users_all();

-- Exact: counts and sums of stars per node, averaged here.
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

-------------------------------------------------------------------------------
-- deduct_batch: split by partition, one call per partition, merged back
-- into input order
-------------------------------------------------------------------------------

CREATE FUNCTION pgmarket_proxy.deduct_batch_on(part int, charges pgmarket.charge[])
    RETURNS TABLE (ordinal int, sqlstate text, entry_id bigint,
                   available_balance numeric)
    LANGUAGE plproxy
AS $$
    CLUSTER 'pgmarket';
    RUN ON part;
    SELECT ordinal, sqlstate, entry_id, available_balance
      FROM pgmarket.deduct_batch(charges);
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
    ), parts AS (
        SELECT coalesce(pgmarket_proxy.user_partition((c).user_id), 0) AS part,
               array_agg(c ORDER BY ord) AS cs,
               array_agg(ord ORDER BY ord) AS ords
          FROM input
         GROUP BY 1
    ), nulls AS (
        -- A NULL or empty array: the node says what one node says.
        SELECT 0 AS part, charges AS cs, ARRAY[]::int[] AS ords
         WHERE coalesce(cardinality(charges), 0) = 0
    )
    SELECT coalesce(p.ords[r.ordinal], r.ordinal), r.sqlstate, r.entry_id,
           r.available_balance
      FROM (SELECT * FROM parts UNION ALL SELECT * FROM nulls) p
      CROSS JOIN LATERAL pgmarket_proxy.deduct_batch_on(p.part, p.cs) r
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
    RETURN pgmarket_proxy.create_user_on_node(email, username, password, roles, id);
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
    RETURN pgmarket_proxy.import_user_on_node(id, email, username, password_hash,
                                              created_at);
END
$$;
