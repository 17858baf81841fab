-- Shared by every side of the ledger benchmark: the floor table, the
-- helper that turns a user number into its uuid, and the wait-event sampler.
--
-- User n (1..10000) has the uuid 00000000-0000-4000-8000-<n, 12 digits>,
-- both in pgmarket and in the baseline, so that one pgbench variable picks
-- the same user on every side.  User 1 is the "hot" user.

CREATE SCHEMA bench_tools;

CREATE FUNCTION bench_tools.uid(n int) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid;

-- The floor: the cheapest durable write there is, one row updated in its
-- own transaction.
CREATE TABLE public.floor (
    id int PRIMARY KEY,
    n  bigint NOT NULL DEFAULT 0
);
INSERT INTO public.floor (id) SELECT g FROM generate_series(1, 10000) g;

-- Samples what the pgbench backends wait on, every step_s seconds for dur_s
-- seconds, and returns "event share%, ..." ("CPU" = active, not waiting;
-- "idle" = waiting for the client's next command).
CREATE FUNCTION bench_tools.sample_waits(dur_s float8, step_s float8)
    RETURNS text
    LANGUAGE plpgsql AS
$$
DECLARE
    t_end timestamptz := clock_timestamp() + make_interval(secs => dur_s);
    result text;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS wait_samples (w text);
    TRUNCATE wait_samples;
    WHILE clock_timestamp() < t_end LOOP
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO wait_samples
        SELECT CASE
                   WHEN a.state <> 'active' THEN 'idle'
                   WHEN a.wait_event IS NULL THEN 'CPU'
                   ELSE a.wait_event_type || ':' || a.wait_event
               END
          FROM pg_stat_activity a
         WHERE a.application_name = 'pgbench'
           AND a.backend_type = 'client backend';
        PERFORM pg_sleep(step_s);
    END LOOP;
    SELECT string_agg(format('%s %s%%', w, pct), ', ' ORDER BY c DESC, w)
      INTO result
      FROM (SELECT w, count(*) AS c,
                   round(100.0 * count(*) / sum(count(*)) OVER ())::int AS pct
              FROM wait_samples GROUP BY w) s
     WHERE pct > 0;
    RETURN coalesce(result, '(no samples)');
END
$$;
