\set n random(1, 100000)
UPDATE :tbl SET balance = balance + 1, updated_at = now() WHERE n = :n;
