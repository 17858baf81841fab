INSERT INTO :tbl (n, id, email, username, password_hash)
SELECT v, gen_random_uuid(), 'bulk' || v || '@example.com', 'bulk' || v, 'x'
  FROM (SELECT nextval('bench_n') AS v FROM generate_series(1, 1000)) s;
