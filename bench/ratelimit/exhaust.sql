-- every bench-tight key uses its one request of the minute (refused calls
-- in the run then stay refused: a key gets one more call a minute)
SELECT sum(bench.try_charge(g, 'bench-tight')) AS admitted FROM generate_series(1, :users) g;
