-- health(): its shape, ok and problems with the vault missing and present,
-- logs_bind_parameters under the settings that log parameters, and who may
-- call it.  Outputs show no counts or times that other tests change: only
-- types and facts.
\set VERBOSITY terse
LOAD 'pgmarket';
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';

-- the shape
SELECT array_agg(k ORDER BY k) AS members FROM jsonb_object_keys(pgmarket.health()) k;
SELECT m, jsonb_typeof(pgmarket.health() -> m) AS type
  FROM unnest(ARRAY['ok', 'version', 'vault', 'audit', 'holds', 'connections',
                    'logs_bind_parameters', 'problems']) m;
-- (the age of the oldest unsealed row is null when there is none)
SELECT o, array_agg(k || ': ' || CASE WHEN k = 'oldest_unsealed_age_s' AND
                                           pgmarket.health() -> o -> k = 'null'
                                      THEN 'number'
                                      ELSE jsonb_typeof(pgmarket.health() -> o -> k) END
                    ORDER BY k) AS members
  FROM unnest(ARRAY['audit', 'holds', 'connections']) o,
       jsonb_object_keys(pgmarket.health() -> o) k
 GROUP BY o ORDER BY o;
SELECT pgmarket.health() ->> 'version' =
       (SELECT extversion FROM pg_extension WHERE extname = 'pgmarket') AS version_installed,
       (pgmarket.health() -> 'connections' ->> 'max')::int =
       current_setting('max_connections')::int AS max_connections,
       (pgmarket.health() -> 'connections' ->> 'used')::int >= 1 AS this_one_is_used;

-- the vault configured but its file missing: not ok, and the problem says why
SELECT h -> 'ok' AS ok, h -> 'vault' AS vault, h -> 'problems' AS problems
  FROM pgmarket.health() h;
-- with the key file: ok
COPY (SELECT '1:' || repeat('cd', 32) UNION ALL SELECT '2:' || repeat('ef', 32))
    TO PROGRAM 'umask 077 && cat > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key';
SELECT h -> 'ok' AS ok, h -> 'vault' AS vault, h -> 'problems' AS problems
  FROM pgmarket.health() h;
-- too permissive a file is a problem too
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && chmod 644 pgmarket_test.key';
SELECT h -> 'ok' AS ok, h -> 'vault' -> 'loaded' AS loaded, h -> 'problems' AS problems
  FROM pgmarket.health() h;
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';

-- unsealed audit rows and holds are counted; an empty trail has no age
SELECT (h -> 'audit' ->> 'unsealed')::bigint =
       (SELECT count(*) FROM pgmarket.audit_trail WHERE seal_seq IS NULL) AS unsealed_counted,
       (h -> 'audit' -> 'oldest_unsealed_age_s' = 'null') =
       ((h -> 'audit' ->> 'unsealed')::bigint = 0) AS age_only_when_unsealed,
       (h -> 'holds' ->> 'live')::bigint =
       (SELECT count(*) FROM pgmarket.reservations
         WHERE state = 'held' AND expires_at > now()) AS live_holds,
       (h -> 'holds' ->> 'expired_unswept')::bigint =
       (SELECT count(*) FROM pgmarket.reservations
         WHERE state = 'held' AND expires_at <= now()) AS expired_holds
  FROM pgmarket.health() h;

-- logs_bind_parameters: nothing logs parameters ...
SET log_statement = 'none';
SET log_min_duration_statement = -1;
SET log_min_duration_sample = -1;
SET log_transaction_sample_rate = 0;
SET log_parameter_max_length = -1;
SET log_parameter_max_length_on_error = 0;
SET log_min_messages = warning;
SET log_error_verbosity = default;
SELECT pgmarket.health() -> 'logs_bind_parameters' AS none_of_them;
-- ... until one setting does
SET log_statement = 'all';
SELECT pgmarket.health() -> 'logs_bind_parameters' AS log_statement_all;
SET log_parameter_max_length = 0;
SELECT pgmarket.health() -> 'logs_bind_parameters' AS but_no_parameter_text;
RESET log_parameter_max_length;
SET log_error_verbosity = terse;
SELECT current_setting('log_destination') = 'stderr' AS stderr_only,
       pgmarket.health() -> 'logs_bind_parameters' AS but_terse;
SET log_error_verbosity = default;
SET log_statement = 'mod';
SELECT pgmarket.health() -> 'logs_bind_parameters' AS mod_logs_no_select;
SET log_statement = 'none';
SET log_min_duration_statement = 0;
SELECT pgmarket.health() -> 'logs_bind_parameters' AS every_duration;
SET log_min_duration_statement = '5s';
SELECT pgmarket.health() -> 'logs_bind_parameters' AS slow_calls;
SET log_min_duration_statement = -1;
SET log_min_duration_sample = 0;
SELECT pgmarket.health() -> 'logs_bind_parameters' AS sample_rate_1;
SET log_statement_sample_rate = 0;
SELECT pgmarket.health() -> 'logs_bind_parameters' AS sample_rate_0;
SET log_min_duration_sample = -1;
RESET log_statement_sample_rate;
SET log_transaction_sample_rate = 0.01;
SELECT pgmarket.health() -> 'logs_bind_parameters' AS sampled_transactions;
SET log_transaction_sample_rate = 0;
SET log_parameter_max_length_on_error = 64;
SELECT pgmarket.health() -> 'logs_bind_parameters' AS parameters_of_errors;
SET log_min_messages = log;
SELECT pgmarket.health() -> 'logs_bind_parameters' AS errors_not_logged;
RESET log_min_messages;
RESET log_parameter_max_length_on_error;
RESET log_statement;
RESET log_min_duration_statement;
RESET log_min_duration_sample;
RESET log_transaction_sample_rate;
RESET log_error_verbosity;

-- who may call it: the application, the auditor and the administrator
SELECT r, has_function_privilege(r, 'pgmarket.health()', 'EXECUTE') AS may_call
  FROM unnest(ARRAY['pgmarket_app', 'pgmarket_auditor', 'pgmarket_admin',
                    'pgmarket_keyreader']) r;
SELECT count(*) AS public_may_call
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.oid = 'pgmarket.health()'::regprocedure AND a.grantee = 0;
SET ROLE pgmarket_auditor;
SELECT jsonb_typeof(pgmarket.health() -> 'ok') AS auditor_reads_it;
SET ROLE pgmarket_app;
SELECT jsonb_typeof(pgmarket.health() -> 'ok') AS app_reads_it;
RESET ROLE;
