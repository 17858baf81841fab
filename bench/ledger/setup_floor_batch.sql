-- The floor of a batch: the writes of deduct_batch with no checks, into
-- tables made like pgmarket's own (the same columns, indexes and CHECK
-- constraints; no row security, no triggers, no foreign keys), starting
-- from a copy of their rows so that both sides insert into indexes of the
-- same size.  ledger.sh runs it when the batch runs begin.
SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS bench_floor;
DROP TABLE IF EXISTS bench_floor.ledger, bench_floor.balances;
CREATE TABLE bench_floor.balances (LIKE pgmarket.balances INCLUDING ALL);
CREATE TABLE bench_floor.ledger (LIKE pgmarket.ledger INCLUDING ALL);
DROP SEQUENCE IF EXISTS bench_floor.ledger_entry_id_seq;
CREATE SEQUENCE bench_floor.ledger_entry_id_seq;
INSERT INTO bench_floor.balances SELECT * FROM pgmarket.balances;
INSERT INTO bench_floor.ledger SELECT * FROM pgmarket.ledger;
SELECT setval('bench_floor.ledger_entry_id_seq',
              coalesce((SELECT max(entry_id) FROM bench_floor.ledger), 0) + 1);
