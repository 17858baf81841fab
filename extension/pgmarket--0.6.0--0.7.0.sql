\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.7.0'" to load this file. \quit

-- pgmarket 0.7.0: the account surface, tiers and rate limits, imports
-- applied on the server in batches.
--
-- Each part below stands under a heading of its own; new functions only,
-- and the tables they need, so that the calls of 0.6.0 keep working.
