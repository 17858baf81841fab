-- bench/keys.sh: the data.  :users users (bench<i>@example.com, id
-- bench.uid(i)), each with
--   - one provider key for 'openai' in pgmarket's vault, and the same secret
--     in a plain text column (bench.plain_secrets) and under pgcrypto's
--     pgp_sym_encrypt (bench.pgp_secrets);
--   - one platform API key (no spend limit) and plenty of funds; the raw key
--     is kept in bench.raw_keys (i primary key), which both sides of every
--     API key comparison read in the same way; bench.plain_api_keys is the
--     plain table a hand-written gateway would look the key up in.
-- Batches of 1,000 users per transaction (\gexec): pgmarket locks each
-- user's balance row, and 10,000 in one transaction would overflow the lock
-- table.
CREATE EXTENSION pgmarket;
CREATE EXTENSION pgcrypto;
CREATE SCHEMA bench;

CREATE FUNCTION bench.uid(i int) RETURNS uuid IMMUTABLE PARALLEL SAFE LANGUAGE sql
    RETURN ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid;
CREATE FUNCTION bench.secret(i int) RETURNS text IMMUTABLE LANGUAGE sql
    RETURN 'sk-proj-bench-' || i || '-' || md5(i::text) || md5((-i)::text);

SELECT format($q$SELECT count(pgmarket.create_user('bench' || g || '@example.com',
                                                     'bench' || g, id => bench.uid(g)))
                   FROM generate_series(%s, %s) g$q$, lo, least(lo + 999, :users))
  FROM generate_series(1, :users, 1000) lo
\gexec
SELECT format($q$SELECT count(pgmarket.add_funds(bench.uid(g), 1000000, note => 'bench'))
                   FROM generate_series(%s, %s) g$q$, lo, least(lo + 999, :users))
  FROM generate_series(1, :users, 1000) lo
\gexec
SELECT format($q$SELECT count(pgmarket.put_provider_key(bench.uid(g), 'openai', bench.secret(g)))
                   FROM generate_series(%s, %s) g$q$, lo, least(lo + 999, :users))
  FROM generate_series(1, :users, 1000) lo
\gexec

-- the keys' tier has no limits: these runs measure the key check and the
-- charge, as the baselines do (bench/ratelimit.sh measures the limiter)
SELECT pgmarket.set_tier('bench-open', NULL, NULL);
CREATE TABLE bench.raw_keys (i int PRIMARY KEY, api_key text NOT NULL);
SELECT format($q$INSERT INTO bench.raw_keys
                  SELECT g, k.api_key FROM generate_series(%s, %s) g,
                         LATERAL pgmarket.create_api_key(bench.uid(g), 'bench',
                                                         rate_limit_tier => 'bench-open') k$q$,
              lo, least(lo + 999, :users))
  FROM generate_series(1, :users, 1000) lo
\gexec

-- the baselines
CREATE TABLE bench.plain_secrets (user_id uuid PRIMARY KEY, secret text NOT NULL);
INSERT INTO bench.plain_secrets SELECT bench.uid(g), bench.secret(g)
  FROM generate_series(1, :users) g;
CREATE TABLE bench.pgp_secrets (user_id uuid PRIMARY KEY, ciphertext bytea NOT NULL);
INSERT INTO bench.pgp_secrets
  SELECT bench.uid(g), pgp_sym_encrypt(bench.secret(g), 'bench passphrase')
  FROM generate_series(1, :users) g;
-- what a hand-written gateway keeps: prefix (primary key), owner, hash, scopes
CREATE TABLE bench.plain_api_keys (prefix text PRIMARY KEY, user_id uuid NOT NULL,
                                   hash bytea NOT NULL, scopes text[] NOT NULL,
                                   rate_limit_tier text NOT NULL);
INSERT INTO bench.plain_api_keys
  SELECT left(r.api_key, 24), bench.uid(r.i), sha256(convert_to(r.api_key, 'UTF8')),
         '{read,write}', 'free'
    FROM bench.raw_keys r;
-- what a recorded plain read writes (like pgmarket.key_access_log)
CREATE TABLE bench.access_log (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),
                               user_id uuid NOT NULL, provider text NOT NULL, db_role text);
CREATE INDEX ON bench.access_log (user_id, at);
