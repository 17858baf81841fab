-- The agent platform's store: projects, templates and change requests.
-- Every function with each bad input, the actor rule, row-level security,
-- forward-only status changes and the audit trail.  Outputs show no
-- generated id or time: only facts about them.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM,
                          '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
                          '<uuid>', 'g');
END $$;
SELECT coalesce(max(id), 0) AS audit_base FROM pgmarket.audit_log \gset

SELECT pgmarket.create_user('proj-a@example.com', 'proj_alice', id => 'd1000000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('proj-b@example.com', 'proj_bob', id => 'd1000000-0000-4000-8000-000000000002');
SELECT pgmarket.create_user('proj-c@example.com', 'proj_carol', id => 'd1000000-0000-4000-8000-000000000003');
SELECT pgmarket.deactivate_user('d1000000-0000-4000-8000-000000000003');
\set alice '''d1000000-0000-4000-8000-000000000001'''
\set bob '''d1000000-0000-4000-8000-000000000002'''
\set carol '''d1000000-0000-4000-8000-000000000003'''
\set p1 '''d2000000-0000-4000-8000-000000000001'''

SET ROLE pgmarket_app;

-------------------------------------------------------------------------------
-- save_project: insert, update by its owner, another user's id
-------------------------------------------------------------------------------
SELECT pgmarket.save_project(:alice, 'shop', 'web',
           codebase => '{"language": "python", "files": 12}',
           dependencies => '{flask,sqlalchemy}',
           environment => '{"PYTHON": "3.11"}', id => :p1) = :p1 AS kept_id;
SELECT pgmarket.save_project(:alice, 'blog', 'web') AS p2 \gset
SELECT pgmarket.save_project(:alice, 'bot', 'agent', test_coverage => 81.5,
           scores => '{"quality": 7}', last_deployed_at => '2026-01-02 03:04:05+00') AS p3 \gset
SELECT name, type, status, codebase, dependencies, environment, deployment,
       test_coverage, scores, last_deployed_at IS NULL AS never_deployed
  FROM pgmarket.get_project(:alice, :p1);
-- the same id again: an update, the same row
SELECT pgmarket.save_project(:alice, 'shop-v2', 'web', deployment => '{"target": "fly"}',
           id => :p1) = :p1 AS same_id;
SELECT name, deployment, codebase
  FROM pgmarket.get_project(:alice, :p1);
SELECT count(*) AS alice_projects FROM pgmarket.projects WHERE user_id = :alice;
-- an update without scores or coverage keeps them
SELECT pgmarket.save_project(:alice, 'bot', 'agent', id => :'p3') = :'p3' AS same_bot;
SELECT test_coverage, scores, last_deployed_at = '2026-01-02 03:04:05+00' AS deployed_kept
  FROM pgmarket.get_project(:alice, :'p3');
-- another user's id: 42501, and nothing changes
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000002', 'mine', 'web',
                                                  id => 'd2000000-0000-4000-8000-000000000001')$$);
SELECT name FROM pgmarket.get_project(:alice, :p1);

-------------------------------------------------------------------------------
-- bad input: NULLs 22004, bad values 22023, unknown users PM002
-------------------------------------------------------------------------------
SELECT pg_temp.err($$SELECT pgmarket.save_project(NULL, 'x', 'web')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', NULL, 'web')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', codebase => NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', dependencies => NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', dependencies => '{a,NULL}')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', environment => NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', deployment => NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', '', 'web')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', repeat('n', 201), 'web')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', E'a\nb', 'web')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', codebase => '[1, 2]')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', environment => '"text"')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', dependencies => '{{a,b},{c,d}}')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', dependencies => ARRAY[''])$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', dependencies => '[5:6]={x,y}')$$);
-- arguments are checked before the account: a bad value of an unknown user is 22023 / 22004
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-00000000ffff', NULL, 'web')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_projects('d1000000-0000-4000-8000-00000000ffff', 'bogus')$$);
SELECT pg_temp.err($$SELECT pgmarket.get_project('d1000000-0000-4000-8000-00000000ffff', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', test_coverage => 100.5)$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', test_coverage => -1)$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000001', 'x', 'web', scores => '[]')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-00000000ffff', 'x', 'web')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000003', 'x', 'web')$$);
SELECT pg_temp.err($$SELECT pgmarket.get_project('d1000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.get_project(NULL, 'd2000000-0000-4000-8000-000000000001')$$);
-- an unknown project, and another user's, answer as an unknown chat session does
SELECT pg_temp.err($$SELECT pgmarket.get_project('d1000000-0000-4000-8000-000000000001', 'd2000000-0000-4000-8000-00000000ffff')$$);
SELECT pg_temp.err($$SELECT pgmarket.get_project('d1000000-0000-4000-8000-000000000002', 'd2000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.err($$SELECT pgmarket.archive_project('d1000000-0000-4000-8000-000000000002', 'd2000000-0000-4000-8000-000000000001')$$);
SELECT count(*) AS alice_projects_unchanged FROM pgmarket.projects WHERE user_id = :alice;

-------------------------------------------------------------------------------
-- list_projects: newest first, by status, keyset pages
-------------------------------------------------------------------------------
SELECT name FROM pgmarket.list_projects(:alice);
SELECT name FROM pgmarket.list_projects(:alice, max_rows => 2);
SELECT created_at AS page_end FROM pgmarket.list_projects(:alice, max_rows => 2) ORDER BY created_at LIMIT 1 \gset
SELECT name FROM pgmarket.list_projects(:alice, before => :'page_end');
SELECT count(*) AS bobs FROM pgmarket.list_projects(:bob);
-- projects saved in one transaction are paged like any others
BEGIN;
SELECT count(pgmarket.save_project(:alice, 'batch-' || g, 'lib')) AS saved
  FROM generate_series(1, 3) g;
SELECT string_agg(name, ',') AS first_page FROM pgmarket.list_projects(:alice, max_rows => 2);
SELECT min(created_at) AS page_end FROM pgmarket.list_projects(:alice, max_rows => 2) \gset
SELECT string_agg(name, ',') AS second_page FROM pgmarket.list_projects(:alice, max_rows => 2, before => :'page_end');
ROLLBACK;
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_projects('d1000000-0000-4000-8000-000000000001', 'gone')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_projects('d1000000-0000-4000-8000-000000000001', max_rows => 0)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_projects('d1000000-0000-4000-8000-000000000001', max_rows => 1001)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_projects('d1000000-0000-4000-8000-000000000001', max_rows => NULL)$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_projects(NULL)$$);

-------------------------------------------------------------------------------
-- archive_project
-------------------------------------------------------------------------------
SELECT pgmarket.archive_project(:alice, :'p2');
SELECT pg_temp.err(format($$SELECT pgmarket.archive_project('d1000000-0000-4000-8000-000000000001', %L)$$, :'p2'));
SELECT name FROM pgmarket.list_projects(:alice);
SELECT name, status FROM pgmarket.list_projects(:alice, 'archived');
SELECT count(*) AS every_status FROM pgmarket.list_projects(:alice, NULL);

-------------------------------------------------------------------------------
-- change requests: forward only
-------------------------------------------------------------------------------
SELECT pgmarket.request_modification(:alice, :p1, 'add a cart page',
           impact => '{"risk": "low"}', affected_files => '{app.py,templates/cart.html}') AS m1 \gset
SELECT pgmarket.request_modification(:alice, :p1, 'drop the legacy API') AS m2 \gset
SELECT request, requested_by = :alice AS by_user, impact, affected_files, status,
       applied_at IS NULL AS not_applied
  FROM pgmarket.list_modifications(:alice, :p1);
SELECT pgmarket.set_modification_status(:alice, :'m1', 'approved');
SELECT pgmarket.set_modification_status(:alice, :'m1', 'applied',
           results => '{"tests": "passed"}', modified_files => '{app.py}');
SELECT request, status, results, modified_files, applied_at IS NOT NULL AS applied_stamped
  FROM pgmarket.list_modifications(:alice, :p1) ORDER BY request;
-- backward, sideways and repeated transitions: 22023, nothing changes
SELECT pg_temp.err(format($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000001', %L, 'approved')$$, :'m1'));
SELECT pg_temp.err(format($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000001', %L, 'rejected')$$, :'m1'));
SELECT pg_temp.err(format($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000001', %L, 'applied')$$, :'m2'));
SELECT pg_temp.err(format($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000001', %L, 'requested')$$, :'m2'));
SELECT pg_temp.err(format($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000001', %L, 'done')$$, :'m2'));
SELECT pg_temp.err(format($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000001', %L, NULL)$$, :'m2'));
SELECT pg_temp.err(format($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000001', %L, 'rejected', results => '[1]')$$, :'m2'));
SELECT pgmarket.set_modification_status(:alice, :'m2', 'rejected', results => '{"why": "still used"}');
SELECT pg_temp.err(format($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000001', %L, 'approved')$$, :'m2'));
SELECT request, status, results FROM pgmarket.list_modifications(:alice, :p1) ORDER BY request;
-- unknown or another user's
SELECT pg_temp.err($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000001', 'd3000000-0000-4000-8000-00000000ffff', 'approved')$$);
SELECT pg_temp.err(format($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000002', %L, 'failed')$$, :'m1'));
SELECT pg_temp.err($$SELECT pgmarket.request_modification('d1000000-0000-4000-8000-000000000002', 'd2000000-0000-4000-8000-000000000001', 'mine now')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_modifications('d1000000-0000-4000-8000-000000000002', 'd2000000-0000-4000-8000-000000000001')$$);
-- bad input
SELECT pg_temp.err($$SELECT pgmarket.request_modification('d1000000-0000-4000-8000-000000000001', NULL, 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.request_modification('d1000000-0000-4000-8000-000000000001', 'd2000000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.request_modification('d1000000-0000-4000-8000-000000000001', 'd2000000-0000-4000-8000-000000000001', '')$$);
SELECT pg_temp.err($$SELECT pgmarket.request_modification('d1000000-0000-4000-8000-000000000001', 'd2000000-0000-4000-8000-000000000001', 'x', impact => NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.request_modification('d1000000-0000-4000-8000-000000000001', 'd2000000-0000-4000-8000-000000000001', 'x', affected_files => '{NULL}')$$);
SELECT pg_temp.err($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000001', NULL, 'approved')$$);
-- an archived project takes no new request
SELECT pg_temp.err(format($$SELECT pgmarket.request_modification('d1000000-0000-4000-8000-000000000001', %L, 'revive it')$$, :'p2'));
SELECT count(*) AS requests FROM pgmarket.modifications WHERE user_id = :alice;

-------------------------------------------------------------------------------
-- the actor rule and row-level security
-------------------------------------------------------------------------------
SELECT pgmarket.save_project(:bob, 'bobs', 'cli') AS bp \gset
BEGIN;
SET LOCAL pgmarket.actor = 'd1000000-0000-4000-8000-000000000001';
SELECT count(*) AS visible, bool_and(user_id = :alice) AS only_alice FROM pgmarket.projects;
SELECT count(*) AS visible_requests FROM pgmarket.modifications;
SELECT name FROM pgmarket.get_project(:alice, :p1);
SELECT pg_temp.err(format($$SELECT pgmarket.get_project('d1000000-0000-4000-8000-000000000002', %L)$$, :'bp'));
SELECT pg_temp.err($$SELECT pgmarket.save_project('d1000000-0000-4000-8000-000000000002', 'x', 'web')$$);
SELECT pg_temp.err($$SELECT * FROM pgmarket.list_projects('d1000000-0000-4000-8000-000000000002')$$);
SELECT pg_temp.err(format($$SELECT pgmarket.set_modification_status('d1000000-0000-4000-8000-000000000002', %L, 'failed')$$, :'m1'));
COMMIT;
-- tables are read-only to the application: only the functions write
SELECT pg_temp.err($$UPDATE pgmarket.projects SET name = 'x'$$);
SELECT pg_temp.err($$DELETE FROM pgmarket.modifications$$);
SELECT pg_temp.err($$INSERT INTO pgmarket.templates (id, name, category, files) VALUES (gen_random_uuid(), 't', 'c', '{}')$$);

-------------------------------------------------------------------------------
-- templates: a shared catalogue, written by pgmarket_admin only
-------------------------------------------------------------------------------
SELECT pg_temp.err($$SELECT pgmarket.save_template('fastapi-crud', 'api', '{"main.py": "app = FastAPI()"}')$$);
RESET ROLE;
SET ROLE pgmarket_admin;
SELECT pgmarket.save_template('fastapi-crud', 'api', '{"main.py": "app = FastAPI()"}',
           description => 'A CRUD service', required_vars => '{DATABASE_URL}',
           tags => '{python,rest}', optional_vars => '{"PORT": "8000"}',
           tech_stack => '{fastapi,postgresql}', setup_minutes => 5,
           complexity => 'beginner') AS t1 \gset
SELECT pgmarket.save_template('react-spa', 'web', '[{"path": "src/App.jsx", "content": "..."}]') AS t2 \gset
SELECT pgmarket.save_template('fastapi-crud', 'api', '{"main.py": "app = FastAPI(title=\"x\")"}',
           tags => '{python}') = :'t1' AS replaced_by_name;
SELECT pg_temp.err($$SELECT pgmarket.save_template(NULL, 'api', '{}')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_template('t', NULL, '{}')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_template('t', 'api', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.save_template('t', 'api', '"just text"')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_template('t', 'api', '{}', setup_minutes => -1)$$);
SELECT pg_temp.err($$SELECT pgmarket.save_template('t', 'api', '{}', tags => '{NULL}')$$);
SELECT pg_temp.err($$SELECT pgmarket.save_template('t', 'api', '{}', optional_vars => NULL)$$);
RESET ROLE;
SET ROLE pgmarket_app;
SELECT name, category, files, description, required_vars, tags, optional_vars,
       tech_stack, setup_minutes, complexity
  FROM pgmarket.get_template('fastapi-crud');
SELECT name FROM pgmarket.list_templates();
SELECT name FROM pgmarket.list_templates('web');
SELECT count(*) AS none FROM pgmarket.list_templates('nothing');
SELECT pg_temp.err($$SELECT pgmarket.get_template('no-such-template')$$);
SELECT pg_temp.err($$SELECT pgmarket.get_template(NULL)$$);
RESET ROLE;

-------------------------------------------------------------------------------
-- every change is in the audit trail
-------------------------------------------------------------------------------
SELECT table_name, operation, count(*)
  FROM pgmarket.audit_log
 WHERE id > :audit_base
   AND table_name IN ('pgmarket.projects', 'pgmarket.templates', 'pgmarket.modifications')
 GROUP BY 1, 2 ORDER BY 1, 2;
