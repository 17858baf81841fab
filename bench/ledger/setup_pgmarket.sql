-- pgmarket side: the extension and the same 10,000 users, each funded far
-- beyond what the run can spend.  No passwords: Argon2 is slow on purpose.
--
-- 1,000 users per transaction (\gexec runs each generated statement on its
-- own): pgmarket takes a transaction-scoped lock per user it charges or
-- credits, and 10,000 of them in one transaction overflow the shared lock
-- table ("out of shared memory", max_locks_per_transaction).
CREATE EXTENSION pgmarket;

SELECT format($q$SELECT count(pgmarket.create_user('bench' || g || '@example.com',
                                                     'bench' || g,
                                                     id => bench_tools.uid(g)))
                   FROM generate_series(%s, %s) g$q$, lo, least(lo + 999, :users))
  FROM generate_series(1, :users, 1000) lo
\gexec

SELECT format($q$SELECT count(pgmarket.add_funds(bench_tools.uid(g), %s, note => 'bench'))
                   FROM generate_series(%s, %s) g$q$, :funds, lo, least(lo + 999, :users))
  FROM generate_series(1, :users, 1000) lo
\gexec
