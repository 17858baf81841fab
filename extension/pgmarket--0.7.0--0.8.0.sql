\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.8.0'" to load this file. \quit

-- pgmarket 0.8.0: throughput where a marketplace's load concentrates (one
-- hot account, batches of charges, bulk statements on audited tables) and
-- the hot paths of key checks and chat history.
--
-- Each part below stands under a heading of its own, so that the calls of
-- 0.7.0 keep working.

-------------------------------------------------------------------------------
-- One hot account: escrow slots (extension/escrow.c)
-------------------------------------------------------------------------------

-- A hot user's balance is split: part of the available balance is moved
-- into escrow slots, which concurrent charges take from without waiting on
-- one another or on the balance row.  Money moved into a slot is counted
-- in balances.spent (so that total - spent - reserved, what every writer
-- of the balance row checks, stays the row's own part) and in
-- balances.escrowed, an upper bound of what the slots hold (0: nothing,
-- and no call reads them).  So a user's charges minus refunds are
-- spent - sum(slot amounts), and the available balance is
-- total - spent - reserved + sum(slot amounts).  Slot rows are made for a
-- user the first time its charges meet, PGM_ESCROW_SLOTS at once, and
-- never deleted.
ALTER TABLE @extschema@.balances
    ADD COLUMN escrowed bigint NOT NULL DEFAULT 0;

CREATE TABLE @extschema@.balance_slots (
    user_id uuid NOT NULL REFERENCES @extschema@.accounts (id),
    slot    int NOT NULL,
    amount  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, slot),
    CONSTRAINT balance_slots_amount CHECK (amount >= 0 AND slot >= 0)
) WITH (fillfactor = 50);

ALTER TABLE @extschema@.balance_slots ENABLE ROW LEVEL SECURITY;
CREATE POLICY balance_slots_actor ON @extschema@.balance_slots FOR ALL TO pgmarket_app
    USING (pg_catalog.current_setting('pgmarket.actor', true) IS NULL
        OR pg_catalog.current_setting('pgmarket.actor', true) OPERATOR(pg_catalog.=) ''
        OR user_id OPERATOR(pg_catalog.=) @extschema@.current_actor())
    WITH CHECK (pg_catalog.current_setting('pgmarket.actor', true) IS NULL
        OR pg_catalog.current_setting('pgmarket.actor', true) OPERATOR(pg_catalog.=) ''
        OR user_id OPERATOR(pg_catalog.=) @extschema@.current_actor());
CREATE POLICY balance_slots_staff ON @extschema@.balance_slots
    FOR SELECT TO pgmarket_auditor, pgmarket_admin USING (true);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.balance_slots', '');
REVOKE ALL ON @extschema@.balance_slots FROM PUBLIC;
GRANT SELECT ON @extschema@.balance_slots TO pgmarket_auditor, pgmarket_admin;

-- verify_ledger() with the slots: spent less the slots' money is the
-- charges less the refunds; no slot below zero, none of a user without a
-- balance row, and the slots never hold more than escrowed says.
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
    ), slots AS (
        SELECT s.user_id, sum(s.amount) AS money,
               pg_catalog.bool_or(s.amount < 0) AS negative
          FROM @extschema@.balance_slots s
         GROUP BY s.user_id
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
                             (b.spent - COALESCE(e.money, 0)) * 0.000001,
                             COALESCE(s.charges - s.refunds, 0) * 0.000001)
      FROM @extschema@.balances b LEFT JOIN sums s USING (user_id)
           LEFT JOIN slots e USING (user_id)
     WHERE b.spent - COALESCE(e.money, 0) <> COALESCE(s.charges - s.refunds, 0)
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
    SELECT e.user_id, 'an escrow slot is negative'
      FROM slots e
     WHERE e.negative
    UNION ALL
    SELECT b.user_id,
           pg_catalog.format('escrow slots hold %s, more than the escrowed %s',
                             e.money * 0.000001, @extschema@.credits(b.escrowed))
      FROM @extschema@.balances b JOIN slots e USING (user_id)
     WHERE e.money > b.escrowed
    UNION ALL
    SELECT e.user_id, 'escrow slots for a user without a balance row'
      FROM slots e
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@.balances b
                        WHERE b.user_id = e.user_id)
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
