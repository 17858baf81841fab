-- Emails: what an address may hold, Unicode NFC, and one account per
-- address however it is spelt.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- the SQLSTATE create_user raises for an email (or 'created'), nothing kept
CREATE FUNCTION pg_temp.try_email(e text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgmarket.create_user(e, 'emailprobe');
    RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'created';
EXCEPTION
    WHEN raise_exception THEN RETURN 'created';
    WHEN OTHERS THEN RETURN SQLSTATE;
END $$;

-- hostile code points, each in the local part, in the domain and first:
-- controls (Cc), formats (Cf), separators (Zs, Zl, Zp), default
-- ignorables, noncharacters, private use, unassigned planes, fillers
CREATE TEMP TABLE hostile (cp int);
INSERT INTO hostile
SELECT cp FROM generate_series(1, 31) AS cp                  -- C0 controls
UNION ALL SELECT 32                                          -- space
UNION ALL SELECT cp FROM generate_series(127, 160) AS cp     -- DEL, C1, NBSP
UNION ALL SELECT unnest(ARRAY[
    x'00AD', x'034F', x'0600', x'0605', x'061C', x'06DD', x'070F', x'0890',
    x'08E2', x'115F', x'1160', x'1680', x'17B4', x'17B5', x'180B', x'180E',
    x'180F', x'2028', x'2029', x'202F', x'205F', x'2800', x'3000', x'3164',
    x'FEFF', x'FFA0', x'FFF9', x'FFFB', x'FFFC', x'FFFD', x'110BD', x'110CD',
    x'13430', x'1343F', x'1BCA0', x'1BCA3', x'1D173', x'1D17A',
    x'E000', x'F8FF', x'F0000', x'FFFFD', x'100000', x'10FFFD',
    x'40000', x'DFFFF', x'E0001', x'E0020', x'E007F', x'E0100', x'E01EF']::int[])
UNION ALL SELECT cp FROM generate_series(x'2000'::int, x'200F'::int) AS cp  -- spaces, ZWSP, ZWJ, marks
UNION ALL SELECT cp FROM generate_series(x'202A'::int, x'202E'::int) AS cp  -- embeddings
UNION ALL SELECT cp FROM generate_series(x'2060'::int, x'206F'::int) AS cp  -- word joiner, isolates
UNION ALL SELECT cp FROM generate_series(x'FE00'::int, x'FE0F'::int) AS cp  -- variation selectors
UNION ALL SELECT cp FROM generate_series(x'FDD0'::int, x'FDEF'::int) AS cp  -- noncharacters
UNION ALL SELECT plane * 65536 + low FROM generate_series(0, 16) AS plane,
                                      unnest(ARRAY[x'FFFE'::int, x'FFFF'::int]) AS low;
SELECT count(*) AS hostile_code_points FROM hostile;
-- every one refused with 22023, wherever it stands
SELECT place, count(*) FILTER (WHERE r = '22023') AS refused,
       array_agg(to_hex(cp)) FILTER (WHERE r <> '22023') AS not_refused
  FROM hostile,
       LATERAL (VALUES
           ('local', pg_temp.try_email('a' || chr(cp) || 'b@example.com')),
           ('domain', pg_temp.try_email('ab@exa' || chr(cp) || 'mple.com')),
           ('first', pg_temp.try_email(chr(cp) || 'ab@example.com')),
           ('last', pg_temp.try_email('ab@example.com' || chr(cp)))) AS t(place, r)
 WHERE NOT (cp IN (9, 10, 13, 32) AND place IN ('first', 'last'))  -- trimmed
 GROUP BY place ORDER BY place;
-- ASCII blanks around an address are trimmed, and only they
SELECT pg_temp.try_email(E' \t\r\nblank@example.com \n') AS trimmed;

-- the message names the address and says what is wrong
SELECT pg_temp.err($$SELECT pgmarket.create_user(E'zw\u200Bsp@example.com', 'zwsp')$$);
\set VERBOSITY default
SELECT pgmarket.create_user(E'\uFEFFbom@example.com', 'bom');
SELECT pgmarket.create_user('a..b@example.com', 'dots');
\set VERBOSITY terse

-- dots, labels, the characters of each part, lengths (local 64 octets,
-- labels 63, the whole 254)
SELECT CASE WHEN length(e) > 40 THEN left(e, 12) || '... (' || octet_length(e) || ' octets)'
            ELSE e END AS email, pg_temp.try_email(e)
  FROM unnest(ARRAY[
    'a..b@example.com', '.ab@example.com', 'ab.@example.com', 'ab@.example.com',
    'ab@example..com', 'ab@example.com.', 'ab@-example.com', 'ab@example-.com',
    'ab@example', 'ab@', '@example.com', 'a@b@example.com', '"a b"@example.com',
    'ab@[192.0.2.1]', 'a(b)@example.com', 'ab@exa_mple.com', 'a\b@example.com',
    'a,b@example.com', 'a:b@example.com', 'ab@example.com:25',
    repeat('l', 64) || '@example.com', repeat('l', 65) || '@example.com',
    repeat('é', 32) || '@example.com', repeat('é', 32) || 'l@example.com',
    'ab@' || repeat('d', 63) || '.com', 'ab@' || repeat('d', 64) || '.com',
    'ab@' || repeat('d', 61) || '.' || repeat('d', 63) || '.' || repeat('d', 63) || '.' || repeat('d', 61),
    'ab@' || repeat('d', 61) || '.' || repeat('d', 63) || '.' || repeat('d', 63) || '.' || repeat('d', 62),
    repeat('x', 2000) || '@example.com',
    'o''brien+tag@example.com', 'a!#$%&*/=?^_`{|}~-b@example.com', 'ab@xn--bcher-kva.example',
    'Jöhn.Dœ@Bücher.example', 'δοκιμή@παράδειγμα.δοκιμή', '用户@例子.广告', 'ab@123.example'
]) WITH ORDINALITY AS t(e, n) ORDER BY n;

-- NFC: josé spelt with U+00E9 and with e + U+0301 is one address
SELECT pgmarket.create_user(E'Jos\u00E9@Example.com', 'jose_nfc',
                            id => '7e000000-0000-4000-8000-000000000001');
SELECT email, email = E'jos\u00E9@example.com' AS stored_nfc, email IS NFC NORMALIZED AS is_nfc
  FROM pgmarket.users WHERE username = 'jose_nfc';
SELECT pg_temp.err($$SELECT pgmarket.create_user(E'JOSE\u0301@example.com', 'jose_nfd')$$);
SELECT pg_temp.err($$SELECT pgmarket.import_user('7e000000-0000-4000-8000-000000000002', E'jose\u0301@example.com', 'jose_nfd')$$);
SELECT count(*) AS jose_accounts FROM pgmarket.accounts WHERE username LIKE 'jose%';
-- an NFD spelling stored first is stored as NFC too
SELECT pgmarket.create_user(E'Zoe\u0308@example.com', 'zoe_nfd', 'pw of zoe',
                            id => '7e000000-0000-4000-8000-000000000003');
SELECT email = E'zo\u00EB@example.com' AS stored_nfc FROM pgmarket.users WHERE username = 'zoe_nfd';
SELECT pg_temp.err($$SELECT pgmarket.create_user(E'zo\u00EB@example.com', 'zoe_nfc')$$);
-- authenticate finds the account by either spelling
SELECT pgmarket.authenticate(E' ZO\u00EB@Example.COM', 'pw of zoe') = '7e000000-0000-4000-8000-000000000003' AS nfc_login,
       pgmarket.authenticate(E'zoe\u0308@EXAMPLE.com', 'pw of zoe') = '7e000000-0000-4000-8000-000000000003' AS nfd_login,
       pgmarket.authenticate('zoe_nfd', 'pw of zoe') = '7e000000-0000-4000-8000-000000000003' AS username_login;
-- a login that is no valid address is an unknown login (NULL), not an error
SELECT pgmarket.authenticate(E'zo\u00EB\u200B@example.com', 'pw of zoe') IS NULL AS invisible,
       pgmarket.authenticate(repeat('z', 5000), 'pw of zoe') IS NULL AS too_long,
       pgmarket.authenticate('', 'pw of zoe') IS NULL AS empty;
-- NFC maps U+212A KELVIN SIGN to an ASCII "K", after lower-casing ran: it is
-- folded again, so the two spellings are one address
SELECT pgmarket.create_user(E'\u212Aevin@example.com', 'kelvin_sign',
                            id => '7e000000-0000-4000-8000-000000000004');
SELECT email FROM pgmarket.users WHERE username = 'kelvin_sign';
SELECT pg_temp.err($$SELECT pgmarket.create_user('Kevin@example.com', 'kevin_ascii')$$);
