-- External identities: link_identity, unlink_identity, user_by_identity.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT pgmarket.create_user('id.ann@example.com', 'id_ann',
                            id => 'ac300000-0000-4000-8000-000000000001');
SELECT pgmarket.create_user('id.bob@example.com', 'id_bob',
                            id => 'ac300000-0000-4000-8000-000000000002');
\set ann '''ac300000-0000-4000-8000-000000000001'''
\set bob '''ac300000-0000-4000-8000-000000000002'''

-- link; the same link again changes nothing; provider names lower-cased,
-- subjects exact
SELECT pgmarket.link_identity(:ann, 'Azure-AD', '6f1c2d3e-aaaa-bbbb-cccc-000000000001');
SELECT pgmarket.link_identity(:ann, 'azure-ad', '6f1c2d3e-aaaa-bbbb-cccc-000000000001');
SELECT pgmarket.link_identity(:ann, 'github', 'Octocat');
SELECT pgmarket.link_identity(:bob, 'github', 'octocat');
SELECT provider, subject, user_id FROM pgmarket.identities
 WHERE user_id IN (:ann, :bob) ORDER BY provider, subject;
SELECT pgmarket.user_by_identity('AZURE-AD', '6f1c2d3e-aaaa-bbbb-cccc-000000000001');
SELECT pgmarket.user_by_identity('github', 'Octocat') AS ann,
       pgmarket.user_by_identity('github', 'octocat') AS bob;
SELECT pgmarket.user_by_identity('github', 'nobody') IS NULL AS unknown,
       pgmarket.user_by_identity('google', 'Octocat') IS NULL AS other_provider;

-- one user per identity, one subject per user and provider: 23505
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000002', 'github', 'Octocat')$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000001', 'github', 'someone-else')$$);
-- bad values: 22023, before the user; NULLs 22004
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000001', '', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000001', 'git hub', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000001', repeat('p', 65), 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000001', 'google', '')$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000001', 'google', repeat('s', 256))$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000001', 'google', repeat('s', 100000))$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000001', 'google', E'ab\ncd')$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-0000000000ff', 'google', E'ab\x01')$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-0000000000ff', 'google', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity(NULL, 'google', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000001', NULL, 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000001', 'google', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.unlink_identity(NULL, 'google')$$);
SELECT pg_temp.err($$SELECT pgmarket.unlink_identity('ac300000-0000-4000-8000-000000000001', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.unlink_identity('ac300000-0000-4000-8000-000000000001', 'a/b')$$);
SELECT pg_temp.err($$SELECT pgmarket.unlink_identity('ac300000-0000-4000-8000-0000000000ff', 'google')$$);
SELECT pg_temp.err($$SELECT pgmarket.user_by_identity(NULL, 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.user_by_identity('google', NULL)$$);
SELECT pg_temp.err($$SELECT pgmarket.user_by_identity('goo gle', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.user_by_identity('google', repeat('s', 256))$$);
-- a subject of 255 characters, multibyte, is fine
SELECT pgmarket.link_identity(:bob, 'google', repeat(U&'\00E9', 255));
SELECT pgmarket.user_by_identity('google', repeat(U&'\00E9', 255)) = :bob AS found;
SELECT count(*) FROM pgmarket.identities WHERE user_id IN (:ann, :bob);

-- unlink: true once, then false
SELECT pgmarket.unlink_identity(:ann, 'GitHub');
SELECT pgmarket.unlink_identity(:ann, 'github');
SELECT pgmarket.user_by_identity('github', 'Octocat') IS NULL AS gone;
-- now free for another subject
SELECT pgmarket.link_identity(:ann, 'github', 'ann-new');

-- a deactivated user: not found, no link, no unlink; back after reactivation
SELECT pgmarket.deactivate_user(:bob);
SELECT pgmarket.user_by_identity('github', 'octocat') IS NULL AS deactivated;
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000002', 'gitlab', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.unlink_identity('ac300000-0000-4000-8000-000000000002', 'github')$$);
SELECT pgmarket.reactivate_user(:bob);
SELECT pgmarket.user_by_identity('github', 'octocat') = :bob AS back;

-- the actor: another user's identity is unknown; links only one's own
BEGIN;
SET LOCAL pgmarket.actor = 'ac300000-0000-4000-8000-000000000001';
SELECT pgmarket.user_by_identity('azure-ad', '6f1c2d3e-aaaa-bbbb-cccc-000000000001') = :ann AS own;
SELECT pgmarket.user_by_identity('github', 'octocat') IS NULL AS others_hidden;
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000002', 'gitlab', 'x')$$);
SELECT pg_temp.err($$SELECT pgmarket.unlink_identity('ac300000-0000-4000-8000-000000000002', 'github')$$);
-- linking another user's identity: refused without saying whose (42501,
-- as the actor rule answers), while user_by_identity answers NULL for it
SELECT pg_temp.err($$SELECT pgmarket.link_identity('ac300000-0000-4000-8000-000000000001', 'github', 'octocat')$$);
SELECT pgmarket.link_identity(:ann, 'gitlab', 'ann');
SET LOCAL ROLE pgmarket_app;
SELECT provider, subject FROM pgmarket.identities ORDER BY provider;
ROLLBACK;

-- pgmarket_app calls them all; the auditor reads the table, nothing else
SET ROLE pgmarket_app;
SELECT pgmarket.link_identity(:ann, 'google', 'ann-google');
SELECT pgmarket.user_by_identity('google', 'ann-google') = :ann AS app;
SELECT pgmarket.unlink_identity(:ann, 'google');
SELECT pg_temp.err($$INSERT INTO pgmarket.identities (provider, subject, user_id) VALUES ('x', 'y', 'ac300000-0000-4000-8000-000000000001')$$);
RESET ROLE;
SET ROLE pgmarket_auditor;
SELECT count(*) > 0 AS reads FROM pgmarket.identities;
SELECT pg_temp.err($$SELECT pgmarket.user_by_identity('google', 'x')$$);
RESET ROLE;

-- the audit trail has every link and unlink; the subject is a personal
-- value, sealed under the user's key, which the auditor opens
SELECT operation, row_key->>'provider' AS provider,
       left(pgmarket.audit_open(row_key)->>'subject', 12) AS subject,
       row_key->>'subject' LIKE 'personal:%' AS sealed
  FROM pgmarket.audit_log
 WHERE table_name = 'pgmarket.identities' AND row_key->>'provider' IN ('github', 'google')
 ORDER BY id;
