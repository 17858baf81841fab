\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.8.0'" to load this file. \quit

-- pgmarket 0.8.0: throughput where a marketplace's load concentrates (one
-- hot account, batches of charges, bulk statements on audited tables) and
-- the hot paths of key checks and chat history.
--
-- Each part below stands under a heading of its own, so that the calls of
-- 0.7.0 keep working.
