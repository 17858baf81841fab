-- an admitted call, caught the way a refused one is
\set i random(1, :users)
SELECT bench.try_charge(:i, 'bench-wide');
