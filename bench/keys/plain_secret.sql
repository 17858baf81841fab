-- the floor: the same secret as plain text, by primary key
\set i random(1, :users)
SELECT secret FROM bench.plain_secrets WHERE user_id = bench.uid(:i);
