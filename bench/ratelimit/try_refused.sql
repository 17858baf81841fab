-- a refused call (PM005), caught
\set i random(1, :users)
SELECT bench.try_charge(:i, 'bench-tight');
