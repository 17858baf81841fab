INSERT INTO :tbl (n, id, email, username, password_hash)
SELECT v, gen_random_uuid(), 'new' || v || '@example.com', 'new' || v, 'x'
  FROM nextval('bench_n') v;
