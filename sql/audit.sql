-- The audit trail: the trigger on pgmarket's own tables and on any table,
-- redaction, actor and role, enable/disable, append-only, sealing,
-- verification against a superuser's tampering, key rotation and purging.
--
-- The test writes the master key file that the test cluster's
-- pgmarket.master_key_file names (as sql/vault.sql does), and removes it at
-- the end.  Outputs show no id, time or transaction id: only facts about them.
\set VERBOSITY terse
LOAD 'pgmarket';
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(regexp_replace(SQLSTATE || ': ' || SQLERRM,
                          '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
                          '<uuid>', 'g'), 'id [0-9]+', 'id <n>', 'g');
END $$;
CREATE FUNCTION pg_temp.write_key_file(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (%s) TO PROGRAM %L', q,
                   'umask 077 && cat > pgmarket_test.key.new && mv pgmarket_test.key.new pgmarket_test.key');
END $$;
-- the audit rows written since id "after", without times and ids, personal
-- values opened (they are kept under the user's key)
CREATE FUNCTION pg_temp.trail(after bigint)
RETURNS TABLE (table_name text, operation text, row_key jsonb, old_values jsonb,
               new_values jsonb, changed_columns text[], actor text, db_role text)
LANGUAGE sql AS $$
    SELECT table_name, operation, row_key,
           pgmarket.audit_open(old_values) - '{created_at,last_login_at,deleted_at}'::text[],
           pgmarket.audit_open(new_values) - '{created_at,last_login_at,deleted_at}'::text[],
           changed_columns, actor, db_role
      FROM pgmarket.audit_log WHERE id > after ORDER BY id
$$;
CREATE TEMP TABLE mk AS
    SELECT md5(random()::text) || md5(random()::text) AS k1,
           md5(random()::text) || md5(random()::text) AS k2;
SELECT pg_temp.write_key_file($$SELECT '1:' || k1 FROM mk$$);
SELECT coalesce(max(id), 0) AS base FROM pgmarket.audit_log \gset

-------------------------------------------------------------------------------
-- pgmarket's own tables are audited from install; secrets are redacted
-------------------------------------------------------------------------------
SELECT tgrelid::regclass AS audited, tgargs <> '' AS has_redactions
  FROM pg_trigger WHERE tgname = 'pgmarket_audit'
   AND tgrelid::regclass::text LIKE 'pgmarket.%' ORDER BY 1;

SELECT pgmarket.create_user('Audit1@Example.com', 'audit1', 'correct horse',
                            id => '5c000000-0000-4000-8000-000000000001');
SELECT pgmarket.authenticate('audit1', 'correct horse') IS NOT NULL AS logged_in;
SET pgmarket.actor = '5c000000-0000-4000-8000-000000000001';  -- the user closes the account
SELECT pgmarket.deactivate_user('5c000000-0000-4000-8000-000000000001');
RESET pgmarket.actor;
INSERT INTO pgmarket.roles VALUES ('auditing', 'a role for the audit test');
DELETE FROM pgmarket.roles WHERE name = 'auditing';
SELECT * FROM pg_temp.trail(:base);
-- the password hash is nowhere in the trail
SELECT count(*) AS rows_with_hash FROM pgmarket.audit_log a, pgmarket.accounts u
 WHERE a.id > :base AND u.id = '5c000000-0000-4000-8000-000000000001'
   AND (a.old_values::text || a.new_values::text) LIKE '%' || u.password_hash || '%';

-- platform keys: the hash is redacted, the rest is recorded
SELECT max(id) AS mark FROM pgmarket.audit_log \gset
SELECT pgmarket.create_user('audit2@example.com', 'audit2',
                            id => '5c000000-0000-4000-8000-000000000002') IS NOT NULL AS created;
SELECT count(*) AS issued FROM pgmarket.create_api_key('5c000000-0000-4000-8000-000000000002', 'ci');
SELECT table_name, operation, new_values->>'hash' AS hash,
       pgmarket.audit_open(new_values)->>'name' AS name,
       changed_columns @> '{hash,prefix,scopes}' AS lists_columns
  FROM pgmarket.audit_log WHERE id > :mark ORDER BY id;
-- provider keys: ciphertext and nonce are redacted; the secret is nowhere
SELECT max(id) AS mark FROM pgmarket.audit_log \gset
SELECT pgmarket.put_provider_key('5c000000-0000-4000-8000-000000000002', 'openai',
                                 'sk-audit-secret-0123456789') IS NOT NULL AS stored;
SELECT pgmarket.get_provider_key('5c000000-0000-4000-8000-000000000002', 'openai') = 'sk-audit-secret-0123456789' AS decrypts;
SELECT table_name, operation, new_values->>'ciphertext' AS ciphertext,
       new_values->>'nonce' AS nonce, new_values->>'provider' AS provider,
       changed_columns
  FROM pgmarket.audit_log WHERE id > :mark ORDER BY id;
SELECT count(*) AS rows_with_secret FROM pgmarket.audit_log
 WHERE id > :base AND (coalesce(row_key::text, '') || coalesce(old_values::text, '')
                       || coalesce(new_values::text, '')) LIKE '%sk-audit-secret%';

-------------------------------------------------------------------------------
-- any table: enable_audit, every operation, redaction, actor and role
-------------------------------------------------------------------------------
CREATE TABLE audit_t (
    id     int PRIMARY KEY,
    name   text,
    secret text,
    amount numeric,
    tags   text[],
    meta   jsonb,
    seen   timestamptz
);
CREATE TABLE audit_nokey (a int, b text);
SELECT pgmarket.enable_audit('audit_t', '{secret}');
SELECT pgmarket.enable_audit('audit_nokey');
SELECT max(id) AS mark FROM pgmarket.audit_log \gset

INSERT INTO audit_t VALUES
    (1, 'one', 's3cr3t-one', 1.50, '{a,b}', '{"k": [1, 2]}', '2024-01-02 03:04:05+00'),
    (2, 'two', 's3cr3t-two', 2, NULL, NULL, NULL);
BEGIN;
SET LOCAL pgmarket.actor = 'user-42';
UPDATE audit_t SET amount = 3, secret = 's3cr3t-new' WHERE id = 1;
COMMIT;
UPDATE audit_t SET name = name WHERE id = 2;                 -- changes nothing
UPDATE audit_t SET tags = '{c}', meta = '{"k": null}' WHERE id = 2;
UPDATE audit_t SET id = 20 WHERE id = 2;                     -- a key change
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_t, audit_nokey TO pgmarket_app;
SET ROLE pgmarket_app;
DELETE FROM audit_t WHERE id = 1;
INSERT INTO audit_nokey VALUES (1, 'x');
UPDATE audit_nokey SET b = 'y';
RESET ROLE;
-- the role at the SQL surface, not the owner of a SECURITY DEFINER function
SET ROLE pgmarket_app;
SELECT pgmarket.create_user('audit3@example.com', 'audit3',
                            id => '5c000000-0000-4000-8000-000000000003') IS NOT NULL AS created;
RESET ROLE;
TRUNCATE audit_nokey;
SELECT * FROM pg_temp.trail(:mark);
-- no secret value anywhere; the context of each row
SELECT count(*) AS rows_with_secret FROM pgmarket.audit_log
 WHERE id > :mark AND (coalesce(row_key::text, '') || coalesce(old_values::text, '')
                       || coalesce(new_values::text, '')) LIKE '%s3cr3t%';
SELECT count(DISTINCT txid) AS transactions,
       bool_and(at = now() OR at < now()) AS times_ok,
       bool_and(client_addr IS NOT DISTINCT FROM inet_client_addr()) AS client_addr_ok,
       bool_and(application_name = current_setting('application_name')) AS application_name_ok
  FROM pgmarket.audit_log WHERE id > :mark;
-- one transaction, one txid, the one txid_current() gives
BEGIN;
INSERT INTO audit_t VALUES (5, 'five');
INSERT INTO audit_t VALUES (6, 'six');
SELECT count(*) AS rows, bool_and(txid = txid_current()) AS same_txid
  FROM pgmarket.audit_log WHERE table_name = 'public.audit_t' AND row_key->>'id' IN ('5', '6');
ROLLBACK;
-- a rolled-back change leaves no audit row
SELECT count(*) AS after_rollback FROM pgmarket.audit_log
 WHERE table_name = 'public.audit_t' AND row_key->>'id' IN ('5', '6');

-- re-enabling replaces the trigger; disabling drops it and says so
SELECT pgmarket.enable_audit('audit_t', '{name,secret,name}');
SELECT tgname, encode(tgargs, 'escape') AS args FROM pg_trigger
 WHERE tgrelid = 'audit_t'::regclass ORDER BY 1;
SELECT max(id) AS mark FROM pgmarket.audit_log \gset
INSERT INTO audit_t VALUES (7, 'seven', 'x');
SELECT pgmarket.disable_audit('audit_t');
SELECT pgmarket.disable_audit('audit_t');                    -- a no-op
INSERT INTO audit_t VALUES (8, 'eight', 'x');
SELECT * FROM pg_temp.trail(:mark);
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'audit_t'::regclass;

-- bad arguments
SELECT pg_temp.err($$SELECT pgmarket.enable_audit('audit_t', '{nosuch}')$$);
SELECT pg_temp.err($$SELECT pgmarket.enable_audit('audit_t', '{name,NULL}')$$);
SELECT pg_temp.err($$SELECT pgmarket.enable_audit(NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.enable_audit('audit_t', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.enable_audit('pgmarket.users')$$);
SELECT pg_temp.err($$SELECT pgmarket.enable_audit('pgmarket.audit_log')$$);
SELECT pg_temp.err($$SELECT pgmarket.disable_audit(NULL)$$);
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'audit_t'::regclass;

-- who may: pgmarket_admin enables and disables the tables it owns; the
-- others may not
ALTER TABLE audit_t OWNER TO pgmarket_admin;
SET ROLE pgmarket_admin;
SELECT pgmarket.enable_audit('audit_t');
SELECT pgmarket.disable_audit('audit_t');
RESET ROLE;
ALTER TABLE audit_t OWNER TO CURRENT_USER;
SET ROLE pgmarket_app;
SELECT pg_temp.err($$SELECT pgmarket.enable_audit('audit_t')$$);
SELECT pg_temp.err($$SELECT pgmarket.disable_audit('audit_nokey')$$);
SELECT pg_temp.err($$SELECT pgmarket.seal_audit()$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_audit()$$);
SELECT pg_temp.err($$SELECT count(*) FROM pgmarket.audit_log$$);
SELECT pg_temp.err($$SELECT pgmarket.audit_event('audit_t', 'FAKE', NULL)$$);
RESET ROLE;
SET ROLE pgmarket_auditor;
SELECT count(*) > 0 AS auditor_reads FROM pgmarket.audit_log;
SELECT pg_temp.err($$SELECT pgmarket.seal_audit()$$);
SELECT pg_temp.err($$SELECT pgmarket.enable_audit('audit_t')$$);
SELECT pg_temp.err($$SELECT pgmarket.purge_audit(now())$$);
RESET ROLE;

-------------------------------------------------------------------------------
-- append-only, for every role: the trigger stops even a role with the grant
-------------------------------------------------------------------------------
SELECT pg_temp.err($$UPDATE pgmarket.audit_log SET actor = 'x'$$);
SELECT pg_temp.err($$DELETE FROM pgmarket.audit_log$$);
SELECT pg_temp.err($$TRUNCATE pgmarket.audit_log$$);
SET ROLE pgmarket_admin;
SELECT pg_temp.err($$UPDATE pgmarket.audit_log SET actor = 'x'$$);
SELECT pg_temp.err($$DELETE FROM pgmarket.audit_log$$);
RESET ROLE;
BEGIN;
GRANT UPDATE, DELETE, TRUNCATE ON pgmarket.audit_log, pgmarket.audit_seals
    TO pgmarket_admin, pgmarket_auditor, pgmarket_app;
SET ROLE pgmarket_admin;
SELECT pg_temp.err($$UPDATE pgmarket.audit_log SET actor = 'x'$$);
SELECT pg_temp.err($$DELETE FROM pgmarket.audit_log$$);
SELECT pg_temp.err($$TRUNCATE pgmarket.audit_log$$);
RESET ROLE;
SET ROLE pgmarket_auditor;
SELECT pg_temp.err($$DELETE FROM pgmarket.audit_log$$);
RESET ROLE;
SET ROLE pgmarket_app;
SELECT pg_temp.err($$UPDATE pgmarket.audit_log SET actor = 'x'$$);
RESET ROLE;
ROLLBACK;

-------------------------------------------------------------------------------
-- sealing needs the master key
-------------------------------------------------------------------------------
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
SELECT pg_temp.err($$SELECT pgmarket.seal_audit()$$);
SELECT pg_temp.write_key_file($$SELECT '1:' || k1 FROM mk$$);

SELECT pgmarket.seal_audit() > 0 AS sealed;
SELECT pgmarket.seal_audit() AS sealed_again;
SELECT max(through_id) AS sealed_through FROM pgmarket.audit_seals \gset
SELECT first_bad_id,
       checked = (SELECT count(*) FROM pgmarket.audit_log WHERE id <= :sealed_through) AS checked_all
  FROM pgmarket.verify_audit();
SELECT checked > 0 AS strict_ok FROM pgmarket.verify_audit(strict => true);
SELECT count(*) AS unsealed FROM pgmarket.audit_trail WHERE seal_seq IS NULL;
SELECT kind, key_version, length(chain_hash) AS hash_bytes,
       length(entries) = 24 * row_count AS entries_ok
  FROM pgmarket.audit_seals ORDER BY seq;
-- the seals are append-only too
SELECT pg_temp.err($$UPDATE pgmarket.audit_seals SET kind = 'seal'$$);
SELECT pg_temp.err($$DELETE FROM pgmarket.audit_seals$$);
SELECT pg_temp.err($$TRUNCATE pgmarket.audit_seals$$);
BEGIN;
GRANT UPDATE, DELETE ON pgmarket.audit_seals TO pgmarket_admin;
SET ROLE pgmarket_admin;
SELECT pg_temp.err($$DELETE FROM pgmarket.audit_seals$$);
RESET ROLE;
ROLLBACK;
-- the auditor verifies; pgmarket_admin seals
SET ROLE pgmarket_auditor;
SELECT first_bad_id FROM pgmarket.verify_audit();
RESET ROLE;
INSERT INTO audit_nokey VALUES (2, 'sealed by the admin');
SET ROLE pgmarket_admin;
SELECT pgmarket.seal_audit() AS sealed_by_admin;
RESET ROLE;

-------------------------------------------------------------------------------
-- a superuser who disables the append-only trigger is caught
-------------------------------------------------------------------------------
SELECT id AS victim FROM pgmarket.audit_log
 WHERE table_name = 'public.audit_t' AND operation = 'UPDATE' AND actor = 'user-42' \gset
SELECT id AS victim2 FROM pgmarket.audit_log
 WHERE table_name = 'public.audit_t' AND operation = 'DELETE' \gset
CREATE TEMP TABLE saved AS SELECT * FROM pgmarket.audit_log WHERE id IN (:victim, :victim2);
ALTER TABLE pgmarket.audit_log DISABLE TRIGGER audit_log_append_only;

-- a changed value
UPDATE pgmarket.audit_log SET actor = 'someone-else' WHERE id = :victim;
SELECT first_bad_id = :victim AS finds_change, checked < :sealed_through AS stops_there
  FROM pgmarket.verify_audit();
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_audit(true)$$);
-- put back exactly, it verifies again
UPDATE pgmarket.audit_log SET actor = 'user-42' WHERE id = :victim;
SELECT first_bad_id FROM pgmarket.verify_audit();

-- a changed jsonb value, even one of the same length
UPDATE pgmarket.audit_log SET new_values = '{"amount": 4, "secret": "[redacted]"}'
 WHERE id = :victim;
SELECT first_bad_id = :victim AS finds_change FROM pgmarket.verify_audit();
UPDATE pgmarket.audit_log l SET new_values = s.new_values FROM saved s
 WHERE l.id = :victim AND s.id = :victim;
SELECT first_bad_id FROM pgmarket.verify_audit();

-- a deleted row
DELETE FROM pgmarket.audit_log WHERE id = :victim;
SELECT first_bad_id = :victim AS finds_deletion FROM pgmarket.verify_audit();
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_audit(strict => true)$$);
INSERT INTO pgmarket.audit_log SELECT * FROM saved WHERE id = :victim;
SELECT first_bad_id FROM pgmarket.verify_audit();

-- reordered rows: the two swap their ids
UPDATE pgmarket.audit_log SET id = -1 WHERE id = :victim;
UPDATE pgmarket.audit_log SET id = :victim WHERE id = :victim2;
UPDATE pgmarket.audit_log SET id = :victim2 WHERE id = -1;
SELECT first_bad_id = :victim AS finds_reordering FROM pgmarket.verify_audit();
UPDATE pgmarket.audit_log SET id = -1 WHERE id = :victim;
UPDATE pgmarket.audit_log SET id = :victim WHERE id = :victim2;
UPDATE pgmarket.audit_log SET id = :victim2 WHERE id = -1;
SELECT first_bad_id FROM pgmarket.verify_audit();

-- purge refuses to destroy the evidence of a change
UPDATE pgmarket.audit_log SET actor = NULL WHERE id = :victim;
SELECT pg_temp.err($$SELECT pgmarket.purge_audit(now() + interval '1 day')$$);
UPDATE pgmarket.audit_log SET actor = 'user-42' WHERE id = :victim;
ALTER TABLE pgmarket.audit_log ENABLE TRIGGER audit_log_append_only;
SELECT first_bad_id FROM pgmarket.verify_audit();

-- the seals themselves: changed, removed
ALTER TABLE pgmarket.audit_seals DISABLE TRIGGER audit_seals_append_only;
CREATE TEMP TABLE saved_seals AS SELECT * FROM pgmarket.audit_seals;
UPDATE pgmarket.audit_seals SET row_count = row_count - 1, entries = substr(entries, 1, length(entries) - 24)
 WHERE seq = 1;
SELECT first_bad_id IS NOT NULL AS finds_seal_change FROM pgmarket.verify_audit();
UPDATE pgmarket.audit_seals s SET row_count = v.row_count, entries = v.entries
  FROM saved_seals v WHERE s.seq = 1 AND v.seq = 1;
DELETE FROM pgmarket.audit_seals WHERE seq = 1;
SELECT first_bad_id IS NOT NULL AS finds_seal_removal FROM pgmarket.verify_audit();
INSERT INTO pgmarket.audit_seals SELECT * FROM saved_seals WHERE seq = 1;
ALTER TABLE pgmarket.audit_seals ENABLE TRIGGER audit_seals_append_only;
SELECT first_bad_id FROM pgmarket.verify_audit();

-------------------------------------------------------------------------------
-- key rotation: old seals verify while their version is in the file
-------------------------------------------------------------------------------
SELECT pg_temp.write_key_file($$SELECT '1:' || k1 FROM mk UNION ALL SELECT '2:' || k2 FROM mk$$);
INSERT INTO audit_nokey VALUES (3, 'after rotation');
SELECT pgmarket.seal_audit() AS sealed_under_v2;
SELECT key_version, count(*) > 0 AS seals FROM pgmarket.audit_seals GROUP BY 1 ORDER BY 1;
SELECT first_bad_id FROM pgmarket.verify_audit();
SELECT pg_temp.write_key_file($$SELECT '2:' || k2 FROM mk$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.verify_audit()$$);
SELECT pg_temp.write_key_file($$SELECT '1:' || k1 FROM mk UNION ALL SELECT '2:' || k2 FROM mk$$);
SELECT first_bad_id FROM pgmarket.verify_audit();

-------------------------------------------------------------------------------
-- retention: whole sealed ranges, older than a time, recorded in the chain
-------------------------------------------------------------------------------
SELECT pgmarket.purge_audit(now() - interval '1 day') AS purged_nothing;
INSERT INTO audit_nokey VALUES (4, 'not sealed yet');
SELECT count(*) AS rows_sealed FROM pgmarket.audit_trail WHERE seal_seq IS NOT NULL \gset
SELECT pgmarket.purge_audit(now() + interval '1 day') = :rows_sealed AS purged_all_sealed;
SELECT count(*) AS sealed_rows_left FROM pgmarket.audit_trail WHERE seal_seq IS NOT NULL;
SELECT table_name, operation, new_values ? 'through_id' AS says_through,
       (new_values->>'rows')::bigint = :rows_sealed AS says_rows
  FROM pgmarket.audit_log WHERE operation = 'PURGE';
SELECT kind, row_count = :rows_sealed AS all_rows FROM pgmarket.audit_seals
 WHERE kind = 'purge';
SELECT * FROM pgmarket.verify_audit();
SELECT pgmarket.seal_audit() AS sealed_after_purge;
SELECT * FROM pgmarket.verify_audit();
SELECT pgmarket.purge_audit(now() + interval '1 day') AS purged_again;
SELECT * FROM pgmarket.verify_audit();
SELECT pg_temp.err($$SELECT pgmarket.purge_audit(NULL)$$);

-------------------------------------------------------------------------------
-- clean up
-------------------------------------------------------------------------------
SELECT pgmarket.disable_audit('audit_nokey');
DROP TABLE audit_t, audit_nokey;
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f pgmarket_test.key';
