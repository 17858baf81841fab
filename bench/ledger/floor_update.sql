-- The floor: a one-row update in its own transaction.
-- -D lo=1 -D hi=10000: a random row; -D lo=1 -D hi=1: one hot row.
\set n random(:lo, :hi)
UPDATE public.floor SET n = n + 1 WHERE id = :n;
