-- The bad-input sweep's machinery, loaded by tests/t/050_input_sweep.pl into
-- a database of its own, outside schema pgmarket (so that the sweep never
-- sweeps itself).
--
-- sweep.plan() reads the catalog: every function in schema pgmarket that a
-- role may execute (has_function_privilege), except the trigger functions and
-- procedures, and for each argument in turn a list of bad values of that
-- argument's type, with every other argument valid.  sweep.run() makes each
-- call as that role, commits what succeeds, and checks after every refused
-- call that no row of any pgmarket table changed (a digest over the rows in
-- key order, computed as superuser).
--
-- Values are SQL expressions of the argument's own type, so that a value
-- that the type itself refuses (a malformed uuid) is never a case: the call
-- is reached with a typed value.  {name} placeholders stand for the fixture
-- of the block being swept (a user with funds, a session, keys, a hold);
-- sweep.fixture() makes a fresh one for every function and role.

DROP SCHEMA IF EXISTS sweep CASCADE;
CREATE SCHEMA sweep;

-- SQLSTATEs of the contract's table: a refused call must end in one of them.
CREATE TABLE sweep.allowed (sqlstate text PRIMARY KEY);
INSERT INTO sweep.allowed VALUES
	('PM001'), ('PM002'), ('PM003'), ('PM004'), ('PM005'), ('PM010'),
	('PM011'), ('PM012'), ('PM013'), ('28000'), ('22004'), ('22023'),
	('22003'), ('23505'), ('42501'), ('55000');

-- Bad values per argument type: (type, label, expression).  must_refuse
-- marks the values that no argument of that type may accept (see the
-- UPDATE below): such a call that succeeds is a violation too.
CREATE TABLE sweep.bad_value (
	typ		regtype NOT NULL,
	label	text NOT NULL,
	expr	text NOT NULL,
	must_refuse boolean NOT NULL DEFAULT false,
	PRIMARY KEY (typ, label)
);

INSERT INTO sweep.bad_value VALUES
	-- text
	('text', 'null', 'NULL::text'),
	('text', 'empty', $$''::text$$),
	('text', 'blank', $$'   '::text$$),
	('text', '1MB', $$repeat('a', 1048576)$$),
	('text', '1MB unicode', $$repeat(U&'\00E9\+01F600', 174762)$$),
	('text', '65 chars', $$repeat('b', 65)$$),
	('text', 'control chars', $$E'\x01\x02\x1b[31m\x7f\x08'::text$$),
	('text', 'newlines', $$E'a\nb\rc\td'::text$$),
	('text', 'U+202E', $$U&'abc\202Etxt.exe'$$),
	('text', 'quotes', $q$$$'"`\\'$$::text$q$),
	('text', 'sql injection', $q$$$x'); DROP TABLE pgmarket.ledger; --$$::text$q$),
	('text', 'format specifiers', $$'%s%n%x%p%%%1$s'::text$$),
	('text', 'uppercase email', $$'  SWEEP@EXAMPLE.COM  '::text$$),
	-- numeric
	('numeric', 'null', 'NULL::numeric'),
	('numeric', 'zero', '0::numeric'),
	('numeric', 'negative', '(-1)::numeric'),
	('numeric', 'micro below', '0.0000001::numeric'),
	('numeric', 'seven digits', '1.0000001::numeric'),
	('numeric', 'NaN', $$'NaN'::numeric$$),
	('numeric', 'Infinity', $$'Infinity'::numeric$$),
	('numeric', '-Infinity', $$'-Infinity'::numeric$$),
	('numeric', '9e12', '9000000000000::numeric'),
	('numeric', '9e12 - 1 micro', '8999999999999.999999::numeric'),
	('numeric', '2^63 micro', '9223372036854.775808::numeric'),
	('numeric', '2^63 - 1 micro', '9223372036854.775807::numeric'),
	('numeric', '-2^63 micro', '(-9223372036854.775808)::numeric'),
	('numeric', '2^64 micro', '18446744073709.551616::numeric'),
	('numeric', '2^64 + 1 micro', '18446744073709.551617::numeric'),
	('numeric', '2^63', '9223372036854775808::numeric'),
	('numeric', '-2^63', '(-9223372036854775808)::numeric'),
	('numeric', '2^31', '2147483648::numeric'),
	('numeric', '10^30', '1e30::numeric'),
	('numeric', '10^-30', '1e-30::numeric'),
	-- integers
	('integer', 'null', 'NULL::integer'),
	('integer', 'zero', '0'),
	('integer', 'negative', '(-1)'),
	('integer', 'int max', '2147483647'),
	('integer', 'int min', '(-2147483648)'),
	('bigint', 'null', 'NULL::bigint'),
	('bigint', 'zero', '0::bigint'),
	('bigint', 'negative', '(-1)::bigint'),
	('bigint', 'int max + 1', '2147483648::bigint'),
	('bigint', 'bigint max', '9223372036854775807::bigint'),
	('bigint', 'bigint min', '(-9223372036854775808)::bigint'),
	-- boolean
	('boolean', 'null', 'NULL::boolean'),
	('boolean', 'true', 'true'),
	-- uuid
	('uuid', 'null', 'NULL::uuid'),
	('uuid', 'nil', $$'00000000-0000-0000-0000-000000000000'::uuid$$),
	('uuid', 'max', $$'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid$$),
	('uuid', 'unknown', $$'5eed0000-0000-4000-8000-00000000dead'::uuid$$),
	('uuid', 'other user', '{uid2}'),
	('uuid', 'deactivated user', '{deact}'),
	('uuid', 'a session id', '{sid}'),
	-- interval
	('interval', 'null', 'NULL::interval'),
	('interval', 'zero', $$'0'::interval$$),
	('interval', 'negative', $$'-1 second'::interval$$),
	('interval', '1 microsecond', $$'1 microsecond'::interval$$),
	('interval', '8 days', $$'8 days'::interval$$),
	('interval', '1 month', $$'1 mon'::interval$$),
	('interval', 'max', $$'178000000 years'::interval$$),
	('interval', 'min', $$'-178000000 years'::interval$$),
	-- timestamptz
	('timestamptz', 'null', 'NULL::timestamptz'),
	('timestamptz', 'infinity', $$'infinity'::timestamptz$$),
	('timestamptz', '-infinity', $$'-infinity'::timestamptz$$),
	('timestamptz', 'past', $$'2000-01-01 00:00:00+00'::timestamptz$$),
	('timestamptz', 'min', $$'4713-01-01 00:00:00+00 BC'::timestamptz$$),
	('timestamptz', 'max', $$'294276-12-31 23:59:59+00'::timestamptz$$),
	-- jsonb
	('jsonb', 'null', 'NULL::jsonb'),
	('jsonb', 'json null', $$'null'::jsonb$$),
	('jsonb', 'scalar', $$'"%s%n"'::jsonb$$),
	('jsonb', 'array', $$'[1,2]'::jsonb$$),
	('jsonb', '1MB string', $$jsonb_build_object('k', repeat('x', 1048576))$$),
	('jsonb', 'deep', $$(repeat('[', 2000) || repeat(']', 2000))::jsonb$$),
	('jsonb', '10000 keys', $$(SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 10000) i)$$),
	('jsonb', 'hostile keys', $$jsonb_build_object(U&'\202E%s', $q$'); DROP TABLE x; --$q$)$$),
	-- text[]
	('text[]', 'null', 'NULL::text[]'),
	('text[]', 'empty', $$'{}'::text[]$$),
	('text[]', 'null element', 'ARRAY[NULL]::text[]'),
	('text[]', 'empty element', $$ARRAY['']::text[]$$),
	('text[]', '2-D', $$'{{user,user},{user,user}}'::text[]$$),
	('text[]', 'lower bound 0', $$'[0:1]={user,user}'::text[]$$),
	('text[]', '100000 elements', $$array_fill('user'::text, ARRAY[100000])$$),
	('text[]', '1MB element', $$ARRAY[repeat('a', 1048576)]$$),
	('text[]', 'hostile elements', $q$ARRAY['%s%n', $$'); DROP TABLE x; --$$, U&'\202E']$q$),
	-- bytea
	('bytea', 'null', 'NULL::bytea'),
	('bytea', 'empty', $$'\x'::bytea$$),
	('bytea', '1 byte', $$'\x00'::bytea$$),
	('bytea', '1MB', $$decode(repeat('ab', 1048576), 'hex')$$),
	('bytea', '80 bytes', $$decode(repeat('5a', 80), 'hex')$$),
	-- regclass
	('regclass', 'null', 'NULL::regclass'),
	('regclass', 'oid 0', $$0::oid::regclass$$),
	('regclass', 'unknown oid', $$4294967295::oid::regclass$$),
	('regclass', 'audit_log', $$'pgmarket.audit_log'::regclass$$),
	('regclass', 'audit_seals', $$'pgmarket.audit_seals'::regclass$$),
	('regclass', 'ledger', $$'pgmarket.ledger'::regclass$$),
	('regclass', 'pg_authid', $$'pg_catalog.pg_authid'::regclass$$),
	('regclass', 'a view', $$'pgmarket.users'::regclass$$),
	('regclass', 'a sequence', $$'pgmarket.ledger_entry_id_seq'::regclass$$),
	-- pgmarket.charge[]
	('pgmarket.charge[]', 'null', 'NULL::pgmarket.charge[]'),
	('pgmarket.charge[]', 'empty', $$'{}'::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'null element', 'ARRAY[NULL]::pgmarket.charge[]'),
	('pgmarket.charge[]', 'null fields', 'ARRAY[ROW(NULL, NULL, NULL, NULL, NULL)]::pgmarket.charge[]'),
	('pgmarket.charge[]', 'null amount', $$ARRAY[ROW({uid}, NULL, 'm', 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'unknown user', $$ARRAY[ROW('5eed0000-0000-4000-8000-00000000dead', 1, 'm', 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'other user', $$ARRAY[ROW({uid2}, 1, 'm', 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'amount 10^30', $$ARRAY[ROW({uid}, 1e30, 'm', 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'amount 2^63 micro', $$ARRAY[ROW({uid}, 9223372036854.775808, 'm', 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'amount 2^64 micro', $$ARRAY[ROW({uid}, 18446744073709.551616, 'm', 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'amount 2^64 + 1 micro', $$ARRAY[ROW({uid}, 18446744073709.551617, 'm', 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'amount -2^63 micro', $$ARRAY[ROW({uid}, -9223372036854.775808, 'm', 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'amount NaN', $$ARRAY[ROW({uid}, 'NaN', 'm', 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'amount seven digits', $$ARRAY[ROW({uid}, 1.0000001, 'm', 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'negative tokens', $$ARRAY[ROW({uid}, 1, 'm', -1, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', '1MB model', $$ARRAY[ROW({uid}, 1, repeat('m', 1048576), 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', '1MB key', $$ARRAY[ROW({uid}, 1, 'm', 0, repeat('k', 1048576))]::pgmarket.charge[]$$),
	('pgmarket.charge[]', '2-D', $$ARRAY[[ROW({uid}, 1, 'm', 0, NULL), ROW({uid}, 1, 'm', 0, NULL)], [ROW({uid}, 1, 'm', 0, NULL), ROW({uid}, 1, 'm', 0, NULL)]]::pgmarket.charge[]$$),
	('pgmarket.charge[]', 'two wrapping to zero', $$ARRAY[ROW({uid}, 9223372036854.775807, 'm', 0, NULL), ROW({uid}, 9223372036854.775809, 'm', 0, NULL)]::pgmarket.charge[]$$),
	('pgmarket.charge[]', '20000 charges', $$(SELECT array_agg(ROW({uid}, 1000, 'm', 0, NULL)::pgmarket.charge) FROM generate_series(1, 20000))$$);

-- Every numeric argument is an amount (money, a cost, a limit): these are
-- never whole numbers of micro-credits within range, or never positive.
-- A two-dimensional array is never a list of names or of charges, a charge
-- list that wraps or breaks the range is never one to apply, a hold's ttl
-- is positive, a sealed secret opens, and a relation is audited only by its
-- owner (none of these is pgmarket_admin's or pgmarket_app's).
UPDATE sweep.bad_value SET must_refuse = true
WHERE (typ = 'numeric'::regtype AND label NOT IN ('null', 'zero', '9e12 - 1 micro', '2^31'))
   OR (typ = 'text[]'::regtype AND label IN ('2-D', 'null element'))
   OR (typ = 'pgmarket.charge[]'::regtype
       AND label NOT IN ('null', 'empty', 'other user', 'unknown user', '20000 charges'))
   OR (typ = 'interval'::regtype AND label IN ('null', 'zero', 'negative', 'min'))
   OR (typ = 'bytea'::regtype)
   OR (typ = 'regclass'::regtype);

-- Arguments for which a value that must_refuse marks is fine after all: a
-- NULL sealed password is no password (as create_user's NULL password), a
-- NULL anchor is no anchor, and a project's test coverage is a percentage,
-- not an amount.
CREATE TABLE sweep.may_accept (
	fn		text NOT NULL,
	argname	text NOT NULL,
	label	text NOT NULL,
	PRIMARY KEY (fn, argname, label)
);
INSERT INTO sweep.may_accept VALUES
	('create_user_sealed', 'sealed_password', 'null'),
	('verify_audit', 'anchor', 'null'),
	('save_project', 'test_coverage', '10^-30'),
	('save_project', 'test_coverage', 'micro below'),
	('save_project', 'test_coverage', 'seven digits');

-- Valid values by argument name, where the name alone says what is valid;
-- fn narrows a row to one function.  An argument with a default takes its
-- default instead; one that neither has falls back to valid_by_type.
CREATE TABLE sweep.valid_by_name (
	argname	text NOT NULL,
	fn		text NOT NULL DEFAULT '',
	expr	text NOT NULL,
	PRIMARY KEY (argname, fn)
);
INSERT INTO sweep.valid_by_name VALUES
	('user_id', '', '{uid}'),
	('id', '', $$md5('sweep-id-{n}')::uuid$$),
	('amount', '', '0.5::numeric'),
	('cost', '', '0.25::numeric'),
	('model_id', '', $$'sweep-model'::text$$),
	('email', '', $$'sweep-{n}@example.com'::text$$),
	('username', '', $$'sweep_{n}'::text$$),
	('login', '', $${uname}$$),
	('password', '', $$'sweep password 1'::text$$),
	('hash', '', '{phash}'),
	('password_hash', 'create_user_hashed', '{phash}'),
	('api_key', '', '{apikey}'),
	('name', '', $$'sweep key'::text$$),
	('name', 'set_tier', $$'sweep-tier'::text$$),
	('requests_per_minute', '', '60'),
	('tokens_per_minute', '', '100000::bigint'),
	('provider', '', $$'openai'::text$$),
	('secret', '', $$'sk-sweep-0123456789'::text$$),
	('sealed', '', $$decode(repeat('5a', 80), 'hex')$$),
	('session_id', '', '{sid}'),
	('role', '', $$'user'::text$$),
	('content', '', $$'hello'::text$$),
	('tokens', '', '3'),
	('status', '', $$'completed'::text$$),
	('context', '', $$'{"k": 1}'::jsonb$$),
	('stars', '', '4'),
	('key', '', $$'theme'::text$$),
	('value', '', $$'"dark"'::jsonb$$),
	('reservation_id', '', '{rid}'),
	('entry_id', '', '{eid}'),
	('key_id', 'revoke_provider_key', '{pkid}'),
	('key_id', 'revoke_api_key', '{akid}'),
	('target', '', $$'sweep.audited'::regclass$$),
	('before', '', $$(now() - interval '1 year')$$),
	('micro', '', '1::bigint'),
	('charges', '', $$ARRAY[ROW({uid}, 0.5, 'm', 1, NULL)]::pgmarket.charge[]$$),
	('old_password', '', $$'sweep password 1'::text$$),
	('new_password', '', $$'sweep password 2'::text$$),
	('sealed_old_password', '', $$decode(repeat('5a', 80), 'hex')$$),
	('sealed_new_password', '', $$decode(repeat('5a', 80), 'hex')$$),
	('token', '', $$'pwr_000000000001_' || repeat('A', 43)$$),
	('subject', '', $$'sweep-subject-{n}'::text$$),
	('description', '', $$'a role of the sweep'::text$$),
	('name', 'add_account_role', $$'sweep_role'::text$$);

CREATE TABLE sweep.valid_by_type (typ regtype PRIMARY KEY, expr text NOT NULL);
INSERT INTO sweep.valid_by_type VALUES
	('uuid', '{uid}'), ('text', $$'sweep'::text$$), ('numeric', '1::numeric'),
	('integer', '1'), ('bigint', '1::bigint'), ('boolean', 'false'),
	('jsonb', $$'{}'::jsonb$$), ('text[]', $$'{}'::text[]$$),
	('interval', $$'1 hour'::interval$$),
	('timestamptz', $$(now() + interval '1 day')$$),
	('bytea', $$'\x00'::bytea$$), ('regclass', $$'sweep.audited'::regclass$$);

-- A table for enable_audit and disable_audit, owned by the role that may
-- call them.
GRANT USAGE ON SCHEMA sweep TO pgmarket_admin;
CREATE TABLE sweep.audited (id int PRIMARY KEY, v text);
ALTER TABLE sweep.audited OWNER TO pgmarket_admin;

-- The fixture of one block: every id a valid argument may name.
CREATE TABLE sweep.fx (
	block	int PRIMARY KEY,
	uid		uuid, uid2 uuid, deact uuid, uname text, sid uuid, apikey text,
	akid	uuid, pkid uuid, rid bigint, eid bigint, phash text
);

-- Make a fresh fixture for a block, as the superuser, without an actor.
CREATE FUNCTION sweep.fixture(b int) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
	u	uuid := md5('sweep-user-' || b)::uuid;
	u2	uuid := md5('sweep-user2-' || b)::uuid;
	d	uuid := md5('sweep-deact-' || b)::uuid;
	k	record;
BEGIN
	PERFORM pgmarket.create_user(format('fx%s@example.com', b), 'fx' || b, id => u);
	PERFORM pgmarket.create_user(format('fx%sb@example.com', b), 'fx' || b || 'b', id => u2);
	PERFORM pgmarket.create_user(format('fx%sd@example.com', b), 'fx' || b || 'd', id => d);
	PERFORM pgmarket.add_funds(u, 1000);
	PERFORM pgmarket.add_funds(u2, 1000);
	PERFORM pgmarket.add_funds(d, 10);
	PERFORM pgmarket.deactivate_user(d);
	SELECT * INTO k FROM pgmarket.create_api_key(u, 'fixture');
	INSERT INTO sweep.fx VALUES (b, u, u2, d, 'fx' || b,
		pgmarket.create_chat_session(u, 'sweep-model'),
		k.api_key, k.key_id,
		pgmarket.put_provider_key(u, 'openai', 'sk-fixture-0123456789'),
		pgmarket.reserve(u, 10),
		(pgmarket.deduct_balance(u, 5, 'sweep-model')).entry_id,
		(SELECT phash FROM sweep.fx WHERE block = 0));
END
$f$;

-- The digest of every table in schema pgmarket: md5 over each table's rows
-- in primary key order (whole-row order for a table without one), each row
-- as its version (xmin) and place (ctid): an insert, an update (even one
-- that writes the same values) or a delete of any row changes it, and it
-- never has to read a megabyte-long value that an earlier case stored.
CREATE FUNCTION sweep.digest_sql() RETURNS text LANGUAGE sql AS $f$
	SELECT 'SELECT md5(concat_ws(''/'', ' || string_agg(
		format('(SELECT md5(coalesce(string_agg(t.xmin::text || t.ctid::text, '','' ORDER BY %s), '''')) FROM %s t)',
			coalesce((SELECT string_agg(format('t.%I', a.attname), ', ' ORDER BY k.ord)
			          FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a
			          WHERE i.indrelid = c.oid AND i.indisprimary
			            AND a.attrelid = c.oid AND a.attnum = k.attnum),
			         't::text'),
			c.oid::regclass),
		', ' ORDER BY c.relname) || '))'
	FROM pg_class c
	WHERE c.relnamespace = 'pgmarket'::regnamespace AND c.relkind IN ('r', 'p')
$f$;

-- One row per call to make.
CREATE TABLE sweep.cases (
	id		int PRIMARY KEY,
	block	int NOT NULL,
	rolname	name NOT NULL,
	with_actor boolean NOT NULL,
	fn		regprocedure NOT NULL,
	argpos	int NOT NULL,
	argname	text NOT NULL,
	label	text NOT NULL,
	must_refuse boolean NOT NULL,
	call	text NOT NULL
);

-- Arguments whose valid value came from no default and no name: the type's
-- fallback (or NULL), which may make the sweep of the other arguments weak.
CREATE TABLE sweep.guessed (
	fn		regprocedure NOT NULL,
	argname	text NOT NULL,
	expr	text NOT NULL,
	PRIMARY KEY (fn, argname)
);

CREATE TABLE sweep.results (
	id		int PRIMARY KEY REFERENCES sweep.cases,
	state	text NOT NULL,		-- started, ok, refused, violation
	sqlstate text,
	message	text,
	problem	text,
	ms		double precision
);

-- Functions swept for a role: executable by it, not trigger functions, not
-- procedures (they commit, which no call inside a subtransaction may).
CREATE VIEW sweep.swept AS
	SELECT r.rolname, p.oid::regprocedure AS fn, p.proname, p.pronargs,
	       'uuid'::regtype = ANY (p.proargtypes::regtype[])
	       OR 'api_key' = ANY (p.proargnames)
	       OR EXISTS (SELECT FROM unnest(p.proargtypes) t(oid)
	                  JOIN pg_type ty ON ty.oid = t.oid
	                  LEFT JOIN pg_type el ON el.oid = ty.typelem
	                  JOIN pg_attribute a
	                    ON a.attrelid = coalesce(nullif(el.typrelid, 0), ty.typrelid)
	                   AND a.attname = 'user_id') AS names_user
	FROM pg_proc p, (VALUES ('pgmarket_app'::name), ('pgmarket_admin')) r(rolname)
	WHERE p.pronamespace = 'pgmarket'::regnamespace
	  AND p.prokind = 'f'
	  AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
	  AND has_function_privilege(r.rolname, p.oid, 'EXECUTE');

-- Fill sweep.cases from the catalog.  With an actor, a user_id (or a
-- charge) naming anyone else must be refused, whatever the function.
-- Blocks: one per (role, actor mode,
-- function); pgmarket_app is swept without an actor and, for the functions
-- that name a user (a uuid argument, a platform key, or rows with a
-- user_id such as charges), with one as well;
-- pgmarket_admin without.
CREATE FUNCTION sweep.plan() RETURNS int LANGUAGE plpgsql AS $f$
DECLARE
	s		record;
	b		int := 0;
	n		int := 0;
	i		int;
	j		int;
	v		record;
	args	text[];
	valid	text[];
	t		regtype;
	nm		text;
	dflt	text;
	mode	boolean;
BEGIN
	DELETE FROM sweep.results;
	DELETE FROM sweep.cases;
	DELETE FROM sweep.guessed;
	FOR s IN SELECT * FROM sweep.swept ORDER BY rolname DESC, fn::text LOOP
		FOREACH mode IN ARRAY CASE WHEN s.rolname = 'pgmarket_app' AND s.names_user
		                           THEN ARRAY[false, true] ELSE ARRAY[false] END LOOP
			b := b + 1;
			valid := '{}';
			FOR i IN 1 .. s.pronargs LOOP
				SELECT p.proargtypes[i - 1]::regtype, p.proargnames[i],
				       pg_get_function_arg_default(p.oid, i)
				INTO t, nm, dflt FROM pg_proc p WHERE p.oid = s.fn;
				valid[i] := coalesce(
					dflt,
					(SELECT expr FROM sweep.valid_by_name
					 WHERE argname = nm AND fn IN ('', s.proname) ORDER BY fn DESC LIMIT 1),
					(SELECT expr FROM sweep.valid_by_type WHERE typ = t),
					format('NULL::%s', t));
				IF dflt IS NULL AND NOT EXISTS (SELECT FROM sweep.valid_by_name
				                                WHERE argname = nm AND fn IN ('', s.proname)) THEN
					INSERT INTO sweep.guessed VALUES (s.fn, coalesce(nm, '$' || i), valid[i])
					ON CONFLICT DO NOTHING;
				END IF;
			END LOOP;
			FOR i IN 1 .. s.pronargs LOOP
				SELECT p.proargtypes[i - 1]::regtype, p.proargnames[i]
				INTO t, nm FROM pg_proc p WHERE p.oid = s.fn;
				FOR v IN SELECT label, expr, must_refuse FROM sweep.bad_value
				         WHERE typ = t ORDER BY label LOOP
					n := n + 1;
					args := valid;
					args[i] := v.expr;
					INSERT INTO sweep.cases VALUES (n, b, s.rolname, mode, s.fn, i,
						coalesce(nm, '$' || i), v.label,
						(v.must_refuse AND NOT EXISTS (SELECT FROM sweep.may_accept m
						                               WHERE m.fn = s.proname AND m.argname = nm
						                                 AND m.label = v.label))
						OR (mode AND v.label IN ('other user', 'deactivated user',
						                                       'a session id', 'nil', 'max', 'unknown')
						                  AND nm = 'user_id')
						              OR (mode AND v.label = 'other user' AND nm = 'charges'),
						format('SELECT * FROM pgmarket.%I(%s)', s.proname,
						       array_to_string(args, ', ')));
				END LOOP;
			END LOOP;
		END LOOP;
	END LOOP;
	RETURN n;
END
$f$;

-- Replace {name} placeholders with the block's fixture.
CREATE FUNCTION sweep.bind(call text, f sweep.fx, n int) RETURNS text
LANGUAGE sql IMMUTABLE AS $f$
	SELECT replace(replace(replace(replace(replace(replace(replace(replace(
	       replace(replace(replace(replace(call,
		'{uid2}', quote_literal(f.uid2) || '::uuid'),
		'{uid}', quote_literal(f.uid) || '::uuid'),
		'{deact}', quote_literal(f.deact) || '::uuid'),
		'{uname}', quote_literal(f.uname) || '::text'),
		'{sid}', quote_literal(f.sid) || '::uuid'),
		'{apikey}', quote_literal(f.apikey) || '::text'),
		'{akid}', quote_literal(f.akid) || '::uuid'),
		'{pkid}', quote_literal(f.pkid) || '::uuid'),
		'{rid}', f.rid || '::bigint'),
		'{eid}', f.eid || '::bigint'),
		'{phash}', quote_literal(f.phash) || '::text'),
		'{n}', n::text)
$f$;

-- Money invariants of the fixture's users after a call that succeeded.
CREATE FUNCTION sweep.money_problem(f sweep.fx) RETURNS text LANGUAGE sql AS $f$
	SELECT coalesce(
		(SELECT format('balance of %s out of range: total %s spent %s reserved %s',
		               user_id, total, spent, reserved)
		 FROM pgmarket.balances
		 WHERE user_id IN (f.uid, f.uid2, f.deact)
		   AND (total < 0 OR spent < 0 OR reserved < 0
		        OR total >= 9000000000000000000 OR total - spent - reserved < 0)
		 LIMIT 1),
		(SELECT format('ledger entry %s of %s has amount %s', entry_id, user_id, amount)
		 FROM pgmarket.ledger
		 WHERE user_id IN (f.uid, f.uid2, f.deact)
		   AND (amount <= 0 OR amount >= 9000000000000000000)
		 LIMIT 1),
		(SELECT format('verify_ledger: %s %s', v.user_id, v.problem)
		 FROM pgmarket.verify_ledger() v
		 WHERE v.user_id IN (f.uid, f.uid2, f.deact)
		 LIMIT 1))
$f$;

-- Make every call not made yet, committing after each one, so that a crash
-- loses nothing and the run goes on from the next case.  A case is marked
-- started (and committed) before its call: one left started after a crash is
-- the call that crashed the server.
CREATE PROCEDURE sweep.run() LANGUAGE plpgsql AS $f$
DECLARE
	c		record;
	f		sweep.fx;
	cur		int := -1;
	dsql	text := sweep.digest_sql();
	before_d text;
	after_d	text;
	sql		text;
	st		text;
	msg		text;
	prob	text;
	t0		timestamptz;
	ok		boolean;
	refused	boolean;
	rows	jsonb;
BEGIN
	FOR c IN SELECT * FROM sweep.cases x
	         WHERE NOT EXISTS (SELECT FROM sweep.results r WHERE r.id = x.id)
	         ORDER BY id LOOP
		IF c.block <> cur THEN
			IF NOT EXISTS (SELECT FROM sweep.fx WHERE block = c.block) THEN
				PERFORM sweep.fixture(c.block);
			END IF;
			SELECT * INTO f FROM sweep.fx WHERE block = c.block;
			cur := c.block;
			EXECUTE dsql INTO before_d;
		END IF;
		INSERT INTO sweep.results (id, state) VALUES (c.id, 'started');
		COMMIT;
		sql := sweep.bind(c.call, f, c.id);
		st := NULL; msg := NULL; prob := NULL; refused := false;
		t0 := clock_timestamp();
		BEGIN
			PERFORM set_config('role', c.rolname, true);
			IF c.with_actor THEN
				PERFORM set_config('pgmarket.actor', f.uid::text, true);
			END IF;
			EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(r)), ''[]'') FROM (%s) r', sql)
			INTO rows;
			PERFORM set_config('pgmarket.actor', '', true);
			PERFORM set_config('role', 'none', true);
			ok := true;
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
			ok := false;
		END;
		IF ok THEN
			-- a batch that refused every charge refused the call
			IF jsonb_typeof(rows) = 'array' AND jsonb_array_length(rows) > 0
			   AND rows->0 ? 'sqlstate'
			   AND NOT EXISTS (SELECT FROM jsonb_array_elements(rows) e
			                   WHERE e->>'sqlstate' = '00000') THEN
				refused := true;
				SELECT string_agg(DISTINCT e->>'sqlstate', ',') INTO st
				FROM jsonb_array_elements(rows) e;
				IF EXISTS (SELECT FROM jsonb_array_elements(rows) e
				           WHERE NOT EXISTS (SELECT FROM sweep.allowed a
				                             WHERE a.sqlstate = e->>'sqlstate')) THEN
					prob := 'batch row SQLSTATE outside the contract';
				END IF;
			ELSIF c.must_refuse THEN
				prob := 'accepted a value that no call may accept';
			ELSE
				prob := sweep.money_problem(f);
			END IF;
		ELSE
			refused := true;
			IF NOT EXISTS (SELECT FROM sweep.allowed a WHERE a.sqlstate = st) THEN
				prob := 'SQLSTATE outside the contract';
			END IF;
		END IF;
		EXECUTE dsql INTO after_d;
		IF refused AND after_d IS DISTINCT FROM before_d AND prob IS NULL THEN
			prob := 'refused, but pgmarket tables changed';
		END IF;
		before_d := after_d;
		UPDATE sweep.results
		SET state = CASE WHEN prob IS NOT NULL THEN 'violation'
		                 WHEN refused THEN 'refused' ELSE 'ok' END,
		    sqlstate = st,
		    message = left(regexp_replace(msg, '\s+', ' ', 'g'), 200),
		    problem = prob,
		    ms = extract(epoch FROM clock_timestamp() - t0) * 1000
		WHERE id = c.id;
		COMMIT;
	END LOOP;
END
$f$;
