\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.9.0'" to load this file. \quit

-- pgmarket 0.9.0: the hot paths of API key charges and single charges, and
-- the extension's floor written once.
--
-- Each part below stands under a heading of its own, so that the calls of
-- 0.8.0 keep working.
