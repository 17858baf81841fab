\set lo random(1, 99000)
UPDATE :tbl SET balance = balance + 1, updated_at = now() WHERE n BETWEEN :lo AND :lo + 999;
