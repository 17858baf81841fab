-- the floor for a recorded read: the same plain SELECT by primary key, plus
-- an INSERT of who read what into a log table, in one statement
\set i random(1, :users)
WITH s AS (SELECT user_id, secret FROM bench.plain_secrets WHERE user_id = bench.uid(:i)),
     l AS (INSERT INTO bench.access_log (user_id, provider, db_role)
           SELECT user_id, 'openai', current_user FROM s)
SELECT secret FROM s;
