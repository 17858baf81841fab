\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.5.0'" to load this file. \quit

-- pgmarket 0.5.0: money and the audit trail hold against an adversary.
--
-- Sections, one per area, in the order the areas are described in the
-- README.

-------------------------------------------------------------------------------
-- Amounts and batches
-------------------------------------------------------------------------------

-- Every amount and balance is below 9e18 micro-credits, but a sum over many
-- entries is not: charges of one user refunded and charged again, or the
-- charges of one model across users, can pass int64.  verify_ledger and the
-- cost of the usage views therefore add up in numeric and never cast a sum
-- back to bigint (0.4.0 did, and then failed with "bigint out of range"
-- instead of reporting).  Same signatures and columns as before.
CREATE OR REPLACE FUNCTION @extschema@.verify_ledger()
    RETURNS TABLE (user_id uuid, problem text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH sums AS (
        SELECT l.user_id,
               COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'deposit'), 0) AS deposits,
               COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'charge'), 0) AS charges,
               COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'refund'), 0) AS refunds
          FROM @extschema@.ledger l
         GROUP BY l.user_id
    ), holds AS (
        SELECT r.user_id, sum(r.amount) AS held
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
                             COALESCE(s.deposits, 0) * 0.000001)
      FROM @extschema@.balances b LEFT JOIN sums s USING (user_id)
     WHERE b.total <> COALESCE(s.deposits, 0)
    UNION ALL
    SELECT b.user_id,
           pg_catalog.format('spent %s differs from charges minus refunds %s',
                             @extschema@.credits(b.spent),
                             COALESCE(s.charges - s.refunds, 0) * 0.000001)
      FROM @extschema@.balances b LEFT JOIN sums s USING (user_id)
     WHERE b.spent <> COALESCE(s.charges - s.refunds, 0)
    UNION ALL
    SELECT b.user_id,
           pg_catalog.format('reserved %s differs from the sum of held reservations %s',
                             @extschema@.credits(b.reserved),
                             COALESCE(h.held, 0) * 0.000001)
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

-- CREATE OR REPLACE VIEW resets the options, so they are given again.
CREATE OR REPLACE VIEW @extschema@.model_usage
    WITH (security_invoker = true, security_barrier = true) AS
    SELECT l.model_id,
           pg_catalog.count(*) FILTER (WHERE l.kind = 'charge') AS requests,
           COALESCE(sum(l.tokens_used) FILTER (WHERE l.kind = 'charge'), 0)::bigint AS tokens,
           COALESCE(sum(CASE l.kind WHEN 'charge' THEN l.amount
                                    ELSE -l.amount END), 0) * 0.000001 AS cost
      FROM @extschema@.ledger l
     WHERE l.kind IN ('charge', 'refund') AND l.model_id IS NOT NULL
     GROUP BY l.model_id;

CREATE OR REPLACE VIEW @extschema@.usage_daily
    WITH (security_invoker = true, security_barrier = true) AS
    SELECT l.user_id,
           (l.created_at AT TIME ZONE 'UTC')::date AS day,
           l.model_id,
           pg_catalog.count(*) FILTER (WHERE l.kind = 'charge') AS requests,
           COALESCE(sum(l.tokens_used) FILTER (WHERE l.kind = 'charge'), 0)::bigint AS tokens,
           COALESCE(sum(CASE l.kind WHEN 'charge' THEN l.amount
                                    ELSE -l.amount END), 0) * 0.000001 AS cost
      FROM @extschema@.ledger l
     WHERE l.kind IN ('charge', 'refund') AND l.model_id IS NOT NULL
     GROUP BY 1, 2, 3;


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

