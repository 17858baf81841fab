#!/usr/bin/env bash
# gen_proxy.sh: write the PL/Proxy declarations of the pgmarket API.
#
#   proxy/gen_proxy.sh [PSQL-CONNECTION-ARGS...] > proxy/pgmarket_proxy.sql
#
# Reads the catalog of a database where `CREATE EXTENSION pgmarket` is
# installed (libpq environment or psql arguments name it) and prints, on
# stdout, the SQL that a *proxy* database runs (after CREATE EXTENSION
# plproxy) to get a schema `pgmarket` with the same functions, names,
# argument lists, defaults and result types as on one node:
#
#  - the composite types of the extension (balance, ledger_result, charge),
#    and as composite types of the same name and columns the row types of
#    its tables that API functions return (projects, templates,
#    modifications);
#  - every function whose first argument is `user_id uuid`, as a
#    LANGUAGE plproxy pgmarket_proxy.X_on_node(actor text, ...), RUN ON
#    hashtext(user_id::text): the user's node, behind pgmarket.X(...), an
#    SQL function with the node's signature that passes the session's
#    current_setting('pgmarket.actor', true) as `actor`.  The remote query
#    wraps the first argument in the node's pgmarket.proxy_actor(actor, ...),
#    which sets the actor on the node (from pgmarket.proxy_role only) before
#    the API function runs;
#  - create_user / create_user_sealed / create_user_hashed / import_user
#    routed by their `id`
#    (create_user's default gen_random_uuid() is evaluated on the proxy,
#    before routing), as pgmarket_proxy.*_on_node behind wrappers in the
#    static part that first claim the email and username in the proxy's
#    directory, so that they stay unique across all nodes;
#  - verify_api_key / charge_api_key / reserve_api_key / check_rate_limit
#    routed by api_key_partition(api_key), computed on the proxy from the
#    key's public part (same int as hashtext(owner::text) & 65535), and
#    their sealed forms by api_key_partition(key_prefix), the public part
#    they carry in the clear;
#  - the template catalogue (save_template, get_template, list_templates),
#    which belongs to no user, RUN ON 0: one catalogue node, so that a
#    template name stays unique and list_templates comes back in the node's
#    order;
#  - the cross-user functions and views as RUN ON ALL plus a merge
#    (proxy/pgmarket_proxy_static.sql, appended verbatim), with the actor
#    forwarded the same way.
#
# A NULL routing value goes to partition 0 (coalesce(..., 0)): the node then
# raises what one node raises (22004 for a NULL user_id, 28000 / no row for a
# malformed key), instead of a PL/Proxy error.
#
# The cluster itself (CREATE SERVER pgmarket FOREIGN DATA WRAPPER plproxy)
# is not part of this output: pgmarket_proxy.set_nodes() creates it, see
# proxy/README.md.
#
# Node-only functions (the internals listed in $internal) are not
# declared, and the grants mirrored from the node name only the functions
# this output declares; a function of the node that is neither declared nor
# listed as internal is reported on stderr (the TAP test then fails too).
#
# The output is checked in as proxy/pgmarket_proxy.sql; regenerate it after
# an API change and review the diff.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PSQL=${PSQL:-psql}

# Functions of the extension that only the node itself calls: triggers,
# audit set-up, the actor plumbing and the store's shared checks; and the
# auditor's opener of personal values (audit_open), which reads the trail
# and the per-user keys of one node, so it is called on that node; and the
# migration's batch apply and account export (import_batch,
# export_accounts), which pgmarket import and export run on each node.
internal="'audit_event', 'audit_trigger', 'forbid_change', 'enable_audit',
          'disable_audit', 'current_actor', 'proxy_actor',
          'audit_require_owner', 'audit_restored', 'user_scope',
          'store_check_text', 'store_check_list', 'store_check_json',
          'store_project', 'audit_ddl', 'audit_internal_active',
          'audit_open', 'audit_open_value',
          'import_batch', 'export_accounts'"
# Generated, besides the per-user functions (first argument user_id uuid).
routed="'create_user', 'create_user_sealed', 'create_user_hashed', 'import_user',
        'verify_api_key', 'charge_api_key', 'reserve_api_key',
        'verify_api_key_sealed', 'charge_api_key_sealed',
        'reserve_api_key_sealed',
        'save_template', 'get_template', 'list_templates',
        'reset_password', 'reset_password_sealed',
        'check_rate_limit', 'check_rate_limit_sealed'"
# Per-user functions declared wholly by the static part (their result is
# the row type of the proxy's view users, which the static part creates).
own="'get_user'"
# Declared by the static part (its CREATE FUNCTION pgmarket.X).
static=$(sed -n 's/^CREATE FUNCTION pgmarket\.\([a-z_0-9]*\)(.*/'"'"'\1'"'"'/p' \
             "$here/pgmarket_proxy_static.sql" | sort -u | paste -sd, -)

q() {
    "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -v "internal=$internal" \
        -v "routed=$routed" -v "static=$static" -v "own=$own" "$@"
}

version=$(q "$@" -c "SELECT extversion FROM pg_extension WHERE extname = 'pgmarket'")
[ -n "$version" ] || { echo "gen_proxy.sh: pgmarket is not installed there" >&2; exit 1; }

cat <<EOF
-- pgmarket_proxy.sql: PL/Proxy front of the pgmarket $version API.
-- GENERATED by proxy/gen_proxy.sh from the catalog of a pgmarket $version
-- node; do not edit by hand (edit proxy/pgmarket_proxy_static.sql or the
-- generator). Run in the proxy database as a superuser:
--     CREATE EXTENSION plproxy;  \i pgmarket_proxy.sql
--     SELECT pgmarket_proxy.set_nodes(ARRAY['dbname=.. host=.. port=..', ...]);

CREATE SCHEMA pgmarket;
CREATE SCHEMA pgmarket_proxy;

DO \$\$
BEGIN
    -- The roles of the extension, so that the same grants apply here.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmarket_app') THEN
        CREATE ROLE pgmarket_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmarket_auditor') THEN
        CREATE ROLE pgmarket_auditor NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmarket_admin') THEN
        CREATE ROLE pgmarket_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgmarket_keyreader') THEN
        CREATE ROLE pgmarket_keyreader NOLOGIN;
    END IF;
END
\$\$;

-------------------------------------------------------------------------------
-- Composite types, as on a node
-------------------------------------------------------------------------------
EOF

# Composite types, and the row types of the tables that declared functions
# return (as composite types: the proxy has no such tables).  Not the row
# types of views.
q "$@" <<'SQL'
SET search_path = pg_catalog;
SELECT format(E'CREATE TYPE pgmarket.%I AS (\n%s\n);\n',
              t.typname,
              string_agg(format('    %I %s', a.attname,
                                format_type(a.atttypid, a.atttypmod)),
                         E',\n' ORDER BY a.attnum))
  FROM pg_type t
  JOIN pg_class c ON c.oid = t.typrelid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE t.typnamespace = 'pgmarket'::regnamespace
   AND (c.relkind = 'c'
        OR (c.relkind IN ('r', 'p')
            AND t.oid IN (SELECT p.prorettype FROM pg_proc p
                           WHERE p.pronamespace = 'pgmarket'::regnamespace
                             AND p.proname NOT IN (:internal))))
 GROUP BY t.typname
 ORDER BY t.typname;
SQL

cat <<'EOF'
-------------------------------------------------------------------------------
-- Per-user functions: RUN ON the user's partition, with the actor
--
-- Each function X of the API is two here: pgmarket_proxy.X_on_node(actor,
-- ...), the PL/Proxy call, whose remote query wraps the first argument in
-- the node's pgmarket.proxy_actor(actor, value), so that the node sets the
-- forwarded actor before X runs (an argument is evaluated before the call it
-- is passed to); and pgmarket.X(...), with the node's signature, which
-- passes this session's pgmarket.actor along (an SQL function, inlined into
-- the caller's query where PostgreSQL can).
-------------------------------------------------------------------------------
EOF

# Types print schema-qualified with an empty search_path.
q "$@" <<'SQL'
SET search_path = pg_catalog;
WITH api AS (
    SELECT p.oid, p.proname, p.pronargs, p.proretset,
           CASE WHEN p.proname IN ('create_user', 'create_user_sealed',
                                   'create_user_hashed', 'import_user')
                THEN 'coalesce(hashtext(id::text), 0)'
                WHEN p.proargnames[1] = 'user_id'
                THEN 'coalesce(hashtext(user_id::text), 0)'
                WHEN p.proname LIKE '%\_api\_key\_sealed'
                  OR p.proname = 'check_rate_limit_sealed'
                THEN 'coalesce(pgmarket.api_key_partition(key_prefix), 0)'
                -- the catalogue node
                WHEN p.proname IN ('save_template', 'get_template', 'list_templates')
                THEN '0'
                WHEN p.proname IN ('reset_password', 'reset_password_sealed')
                THEN 'coalesce(pgmarket.reset_token_partition(token), 0)'
                ELSE 'coalesce(pgmarket.api_key_partition(api_key), 0)'
           END AS run_on,
           -- $2 .. $(n+1) of the proxy call: the API's arguments after the actor
           (SELECT string_agg(', $' || i, '' ORDER BY i)
              FROM generate_series(3, p.pronargs + 1) i) AS rest,
           (SELECT string_agg(', $' || i, '' ORDER BY i)
              FROM generate_series(1, p.pronargs) i) AS args
      FROM pg_proc p
     WHERE p.pronamespace = 'pgmarket'::regnamespace
       AND p.prokind = 'f'
       AND p.proname NOT IN (:internal)
       AND p.proname NOT IN (:own)
       AND (   (p.proargnames[1] = 'user_id' AND p.proargtypes[0] = 'uuid'::regtype)
            OR p.proname IN (:routed))
)
SELECT format(E'CREATE FUNCTION pgmarket_proxy.%I(actor text, %s)\n'
              '    RETURNS %s\n'
              '    LANGUAGE plproxy\n'
              'AS $$\n'
              '    CLUSTER ''pgmarket'';\n'
              '    RUN ON %s;\n'
              '    SELECT * FROM pgmarket.%I(pgmarket.proxy_actor($1, $2)%s);\n'
              '$$;\n',
              a.proname || '_on_node',
              pg_get_function_identity_arguments(a.oid),
              pg_get_function_result(a.oid),
              a.run_on, a.proname, coalesce(a.rest, ''))
       || CASE WHEN a.proname IN ('create_user', 'create_user_sealed',
                                  'create_user_hashed', 'import_user', 'update_user',
                                  'erase_user')
               THEN ''
               -- the wrappers of these claim the email and username first
               -- (erase_user releases them after): proxy/pgmarket_proxy_static.sql
               WHEN a.proretset THEN
                   format(E'\nCREATE FUNCTION pgmarket.%I(%s)\n'
                          '    RETURNS %s\n'
                          '    LANGUAGE sql\n'
                          'BEGIN ATOMIC\n'
                          '    SELECT * FROM pgmarket_proxy.%I(\n'
                          '        pg_catalog.current_setting(''pgmarket.actor'', true)%s);\n'
                          'END;\n',
                          a.proname, pg_get_function_arguments(a.oid),
                          pg_get_function_result(a.oid),
                          a.proname || '_on_node', a.args)
               ELSE
                   format(E'\nCREATE FUNCTION pgmarket.%I(%s)\n'
                          '    RETURNS %s\n'
                          '    LANGUAGE sql\n'
                          '    RETURN pgmarket_proxy.%I(\n'
                          '        pg_catalog.current_setting(''pgmarket.actor'', true)%s);\n',
                          a.proname, pg_get_function_arguments(a.oid),
                          pg_get_function_result(a.oid),
                          a.proname || '_on_node', a.args)
          END
  FROM api a
 ORDER BY a.proname;
SQL

cat <<'EOF'
-------------------------------------------------------------------------------
-- Routing helpers, cross-user functions and views (proxy/pgmarket_proxy_static.sql)
-------------------------------------------------------------------------------
EOF
cat "$here/pgmarket_proxy_static.sql"

cat <<'EOF'

-------------------------------------------------------------------------------
-- Privileges, as on a node
-------------------------------------------------------------------------------
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgmarket FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgmarket_proxy FROM PUBLIC;
GRANT USAGE ON SCHEMA pgmarket TO PUBLIC;
-- The internals the public wrappers and views call, to the same roles as
-- the wrappers (not set_nodes: superuser only).
GRANT USAGE ON SCHEMA pgmarket_proxy
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin, pgmarket_keyreader;
GRANT EXECUTE ON FUNCTION
    pgmarket_proxy.user_partition(uuid),
    pgmarket_proxy.partition_count(),
    pgmarket_proxy.partition_node(int)
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin, pgmarket_keyreader;
GRANT EXECUTE ON FUNCTION pgmarket_proxy.credits_on_any(text, bigint)
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin;
GRANT EXECUTE ON FUNCTION
    pgmarket_proxy.vault_public_key_on_any(text),
    pgmarket_proxy.hash_password_on_any(text, text),
    pgmarket_proxy.verify_password_on_any(text, text, text),
    pgmarket_proxy.hash_password_sealed_on_any(text, bytea),
    pgmarket_proxy.verify_password_sealed_on_any(text, bytea, text),
    pgmarket_proxy.authenticate_all(text, text, text),
    pgmarket_proxy.authenticate_sealed_all(text, text, bytea),
    pgmarket_proxy.chat_session_owner_all(text, uuid),
    pgmarket_proxy.expire_reservations_all(text),
    pgmarket_proxy.deduct_batch_on(text, int, pgmarket.charge[]),
    pgmarket_proxy.claim_identity(uuid, text, text),
    pgmarket_proxy.claim_update(uuid, text, text),
    pgmarket_proxy.get_user_by_email_all(text, text),
    pgmarket_proxy.get_user_by_username_all(text, text),
    pgmarket_proxy.user_by_identity_all(text, text, text)
    TO pgmarket_app, pgmarket_admin;
GRANT EXECUTE ON FUNCTION pgmarket_proxy.add_account_role_all(text, text, text)
    TO pgmarket_admin;
GRANT EXECUTE ON FUNCTION pgmarket_proxy.release_identity(uuid) TO pgmarket_admin;
GRANT EXECUTE ON FUNCTION
    pgmarket_proxy.model_usage_all(text),
    pgmarket_proxy.usage_daily_all(text),
    pgmarket_proxy.users_all(text),
    pgmarket_proxy.model_ratings_all(),
    pgmarket_proxy.health_all(text),
    pgmarket_proxy.tiers_on_any()
    TO pgmarket_app, pgmarket_auditor, pgmarket_admin;
-- a table on the node, a view here
GRANT SELECT ON pgmarket.tiers TO pgmarket_app, pgmarket_auditor, pgmarket_admin;
GRANT EXECUTE ON FUNCTION
    pgmarket_proxy.verify_audit_all(text, boolean, bytea),
    pgmarket_proxy.audit_head_all(text),
    pgmarket_proxy.verify_ledger_all(text)
    TO pgmarket_auditor, pgmarket_admin;
GRANT EXECUTE ON FUNCTION
    pgmarket_proxy.seal_audit_all(text),
    pgmarket_proxy.rotate_master_key_all(text, int),
    pgmarket_proxy.set_tier_all(text, text, int, bigint, int)
    TO pgmarket_admin;
EOF

# Mirror the node's EXECUTE grants to the pgmarket_* roles, on the API
# function and on its PL/Proxy call (X_on_node, for the generated ones):
# for the functions declared above only, so that a node-only function or
# one the proxy does not know yet is never named here.
q "$@" <<'SQL'
SET search_path = pg_catalog;
SELECT format('GRANT EXECUTE ON FUNCTION pgmarket.%I(%s) TO %s;',
              p.proname, pg_get_function_identity_arguments(p.oid),
              string_agg(DISTINCT quote_ident(r.rolname), ', '))
       || CASE WHEN (p.proargnames[1] = 'user_id' AND p.proargtypes[0] = 'uuid'::regtype)
                    OR p.proname IN (:routed)
               THEN format(E'\nGRANT EXECUTE ON FUNCTION pgmarket_proxy.%I(actor text, %s) TO %s;',
                           p.proname || '_on_node',
                           pg_get_function_identity_arguments(p.oid),
                           string_agg(DISTINCT quote_ident(r.rolname), ', '))
               ELSE ''
          END
  FROM pg_proc p
  CROSS JOIN LATERAL aclexplode(p.proacl) a
  JOIN pg_roles r ON r.oid = a.grantee
 WHERE p.pronamespace = 'pgmarket'::regnamespace
   AND p.prokind = 'f' AND a.privilege_type = 'EXECUTE'
   AND r.rolname LIKE 'pgmarket\_%'
   AND p.proname NOT IN (:internal)
   AND (   (p.proargnames[1] = 'user_id' AND p.proargtypes[0] = 'uuid'::regtype)
        OR p.proname IN (:routed) OR p.proname IN (:static))
 GROUP BY p.oid, p.proname
 ORDER BY p.proname;
SELECT format('GRANT SELECT ON pgmarket.%I TO %s;', c.relname,
              string_agg(DISTINCT quote_ident(r.rolname), ', '))
  FROM pg_class c
  CROSS JOIN LATERAL aclexplode(c.relacl) a
  JOIN pg_roles r ON r.oid = a.grantee
 WHERE c.relnamespace = 'pgmarket'::regnamespace AND c.relkind = 'v'
   AND a.privilege_type = 'SELECT' AND r.rolname LIKE 'pgmarket\_%'
   AND c.relname IN ('model_usage', 'usage_daily', 'users', 'model_ratings')
 GROUP BY c.relname
 ORDER BY c.relname;
SQL

# What the node has and this output neither declares nor lists as internal.
missing=$(q "$@" <<'SQL'
SET search_path = pg_catalog;
SELECT string_agg(p.proname, ', ' ORDER BY p.proname)
  FROM pg_proc p
 WHERE p.pronamespace = 'pgmarket'::regnamespace AND p.prokind = 'f'
   AND p.proname NOT IN (:internal)
   AND NOT coalesce(p.proargnames[1] = 'user_id' AND p.proargtypes[0] = 'uuid'::regtype, false)
   AND p.proname NOT IN (:routed) AND p.proname NOT IN (:static);
SQL
)
if [ -n "$missing" ]; then
    echo "gen_proxy.sh: not declared on the proxy (add to the static part or to \$internal): $missing" >&2
fi
