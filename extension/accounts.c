/*-------------------------------------------------------------------------
 *
 * accounts.c
 *	  Users and passwords: create_user, authenticate, deactivate_user,
 *	  hash_password, verify_password.
 *
 * Passwords are stored as Argon2id strings (libsodium crypto_pwhash_str with
 * its "interactive" limits).  Hashes in Django's pbkdf2_sha256 format, which
 * services being migrated keep, are verified too, and authenticate replaces
 * such a hash with an Argon2id one at the first successful login.
 *
 * Every copy of a plaintext password made here is wiped with sodium_memzero
 * as soon as it has been used.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sodium.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"

PG_FUNCTION_INFO_V1(pgm_hash_password);
PG_FUNCTION_INFO_V1(pgm_verify_password);
PG_FUNCTION_INFO_V1(pgm_create_user);
PG_FUNCTION_INFO_V1(pgm_authenticate);
PG_FUNCTION_INFO_V1(pgm_deactivate_user);
PG_FUNCTION_INFO_V1(pgm_import_user);

#define PGM_MAX_PASSWORD_LEN	1024
#define PGM_MAX_PBKDF2_ROUNDS	10000000

/*
 * An Argon2id hash of a random password that nobody knows, made with the
 * same limits as real ones: authenticate verifies against it when the login
 * is unknown, so that an unknown login takes as long as a wrong password.
 */
static const char dummy_hash[crypto_pwhash_STRBYTES] =
"$argon2id$v=19$m=65536,t=2,p=1$1rfEF1iI+VT2BnSTLKLWRg$VrjGm8eWkghZYQKAI/g13vBy5zYMUyS/c492sV6qVyM";

/* ----------------------------------------------------------------
 * Passwords
 * ----------------------------------------------------------------
 */

/* A copy of a text argument as a C string; the caller wipes it. */
static char *
password_arg(FunctionCallInfo fcinfo, int argno, size_t *len)
{
	text	   *t = PG_GETARG_TEXT_PP(argno);
	char	   *s;

	*len = VARSIZE_ANY_EXHDR(t);
	if (*len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password must not be empty")));
	if (*len > PGM_MAX_PASSWORD_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password is longer than %d bytes", PGM_MAX_PASSWORD_LEN)));
	s = palloc(*len + 1);
	memcpy(s, VARDATA_ANY(t), *len);
	s[*len] = '\0';
	return s;
}

static char *
argon2id_hash(const char *password, size_t len)
{
	char	   *out = palloc(crypto_pwhash_STRBYTES);

	if (crypto_pwhash_str(out, password, len,
						  crypto_pwhash_OPSLIMIT_INTERACTIVE,
						  crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while hashing a password")));
	return out;
}

/*
 * PBKDF2-HMAC-SHA256 (RFC 8018), as Django's pbkdf2_sha256 hasher uses it.
 * The keyed HMAC state is computed once and copied for every round.
 */
static void
pbkdf2_sha256(const char *password, size_t plen, const unsigned char *salt,
			  size_t slen, long rounds, unsigned char *out, size_t outlen)
{
	crypto_auth_hmacsha256_state keyed;
	crypto_auth_hmacsha256_state st;
	unsigned char u[crypto_auth_hmacsha256_BYTES];
	unsigned char t[crypto_auth_hmacsha256_BYTES];
	uint32		block;
	size_t		done = 0;

	crypto_auth_hmacsha256_init(&keyed, (const unsigned char *) password, plen);
	for (block = 1; done < outlen; block++)
	{
		unsigned char be[4] = {block >> 24, block >> 16, block >> 8, block};
		long		r;
		size_t		n;
		int			i;

		st = keyed;
		crypto_auth_hmacsha256_update(&st, salt, slen);
		crypto_auth_hmacsha256_update(&st, be, 4);
		crypto_auth_hmacsha256_final(&st, u);
		memcpy(t, u, sizeof(t));
		for (r = 1; r < rounds; r++)
		{
			st = keyed;
			crypto_auth_hmacsha256_update(&st, u, sizeof(u));
			crypto_auth_hmacsha256_final(&st, u);
			for (i = 0; i < (int) sizeof(t); i++)
				t[i] ^= u[i];
		}
		n = Min(outlen - done, sizeof(t));
		memcpy(out + done, t, n);
		done += n;
	}
	sodium_memzero(&keyed, sizeof(keyed));
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(u, sizeof(u));
	sodium_memzero(t, sizeof(t));
}

/*
 * Verify "pbkdf2_sha256$ROUNDS$SALT$BASE64".  Returns -1 when the string is
 * not in that format, else 1 for a match and 0 for no match.
 */
static int
verify_pbkdf2(const char *password, size_t plen, const char *hash)
{
	const char *p = hash + strlen("pbkdf2_sha256$");
	char	   *end;
	long		rounds;
	const char *salt;
	const char *salt_end;
	unsigned char expected[64];
	unsigned char actual[64];
	size_t		elen;
	int			ok;

	rounds = strtol(p, &end, 10);
	if (end == p || *end != '$' || rounds < 1 || rounds > PGM_MAX_PBKDF2_ROUNDS)
		return -1;
	salt = end + 1;
	salt_end = strchr(salt, '$');
	if (salt_end == NULL || salt_end == salt)
		return -1;
	if (sodium_base642bin(expected, sizeof(expected), salt_end + 1,
						  strlen(salt_end + 1), NULL, &elen, NULL,
						  sodium_base64_VARIANT_ORIGINAL) != 0 ||
		elen < 16)
		return -1;
	pbkdf2_sha256(password, plen, (const unsigned char *) salt,
				  salt_end - salt, rounds, actual, elen);
	ok = sodium_memcmp(actual, expected, elen) == 0;
	sodium_memzero(actual, sizeof(actual));
	return ok;
}

static bool
is_argon2(const char *hash)
{
	return strncmp(hash, "$argon2id$", 10) == 0 ||
		strncmp(hash, "$argon2i$", 9) == 0;
}

/* Verify a password against a stored hash of either kind; -1: bad format. */
static int
check_password(const char *password, size_t len, const char *hash)
{
	if (is_argon2(hash))
		return crypto_pwhash_str_verify(hash, password, len) == 0;
	if (strncmp(hash, "pbkdf2_sha256$", 14) == 0)
		return verify_pbkdf2(password, len, hash);
	return -1;
}

/*
 * hash_password(text) RETURNS text: an Argon2id hash string.
 */
Datum
pgm_hash_password(PG_FUNCTION_ARGS)
{
	size_t		len;
	char	   *password;
	char	   *hash;

	pgm_require_arg(fcinfo, 0, "password");
	password = password_arg(fcinfo, 0, &len);
	hash = argon2id_hash(password, len);
	sodium_memzero(password, len);
	PG_RETURN_TEXT_P(cstring_to_text(hash));
}

/*
 * verify_password(password, hash) RETURNS boolean.  A hash in neither known
 * format is an error (22023), not a quiet false.
 */
Datum
pgm_verify_password(PG_FUNCTION_ARGS)
{
	size_t		len;
	char	   *password;
	char	   *hash;
	int			ok;

	pgm_require_arg(fcinfo, 0, "password");
	pgm_require_arg(fcinfo, 1, "hash");
	password = password_arg(fcinfo, 0, &len);
	hash = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ok = check_password(password, len, hash);
	sodium_memzero(password, len);
	if (ok < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hash is neither an Argon2id nor a pbkdf2_sha256 password hash")));
	PG_RETURN_BOOL(ok == 1);
}

/* ----------------------------------------------------------------
 * create_user(email, username, password, roles, id)
 * ----------------------------------------------------------------
 */

/* Trim and lower-case an email, and check that it looks like an address. */
static char *
normalize_email(text *raw)
{
	char	   *s = text_to_cstring(raw);
	char	   *start = s;
	char	   *end;
	char	   *email;
	char	   *at;
	char	   *p;
	bool		ok = true;

	while (*start == ' ' || *start == '\t' || *start == '\n' || *start == '\r')
		start++;
	end = start + strlen(start);
	while (end > start && (end[-1] == ' ' || end[-1] == '\t' ||
						   end[-1] == '\n' || end[-1] == '\r'))
		end--;
	email = str_tolower(start, end - start, DEFAULT_COLLATION_OID);

	at = strchr(email, '@');
	if (at == NULL || at == email || strchr(at + 1, '@') != NULL ||
		at - email > 64 || strlen(email) > 254)
		ok = false;
	for (p = email; ok && *p; p++)
		if ((unsigned char) *p <= 0x20 || *p == 0x7f || *p == '"' ||
			*p == ',' || *p == ';' || *p == '<' || *p == '>' || *p == '\\')
			ok = false;
	if (ok)
	{
		const char *domain = at + 1;
		const char *dot = strrchr(domain, '.');

		if (*domain == '\0' || *domain == '.' || dot == NULL ||
			dot[1] == '\0' || strstr(domain, "..") != NULL ||
			email[0] == '.' || at[-1] == '.')
			ok = false;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("email \"%s\" is not a valid address", s)));
	return email;
}

static void
check_username(const char *username)
{
	size_t		len = strlen(username);
	const char *p;

	for (p = username; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
			break;
	if (len < 3 || len > 64 || *p != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("username \"%s\" is not valid", username),
				 errdetail("A username has 3 to 64 characters, each a letter, a digit, \"_\", \".\" or \"-\".")));
}

/* The roles must be a non-empty list of names that pgmarket.roles holds. */
static void
check_roles(ArrayType *roles)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	Oid			argtypes[1] = {TEXTOID};
	static SPIPlanPtr plan_role = NULL;

	if (ARR_NDIM(roles) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("roles must be a one-dimensional array")));
	deconstruct_array(roles, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("roles must name at least one role")));
	if (plan_role == NULL)
		plan_role = pgm_prepare("SELECT 1 FROM pgmarket.roles WHERE name = $1",
								1, argtypes);
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("roles must not contain null")));
		pgm_exec(plan_role, &elems[i], NULL, true);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("role \"%s\" does not exist", TextDatumGetCString(elems[i])),
					 errhint("The roles are listed in table pgmarket.roles.")));
	}
}

/*
 * Insert an account and its zero balance, with SPI connected.  A taken id,
 * email or username is 23505 with a message that names it (the unique
 * indexes stay the backstop against a race).  roles and created_at are
 * optional: (Datum) 0 / has_created_at false take the table's defaults.
 */
static void
insert_account(Datum id, const char *email, const char *username,
			   const char *hash, Datum roles, Datum created_at,
			   bool has_created_at)
{
	Oid			dup_types[3] = {TEXTOID, TEXTOID, UUIDOID};
	Oid			ins_types[6] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTARRAYOID, TIMESTAMPTZOID};
	static SPIPlanPtr plan_dup = NULL;
	static SPIPlanPtr plan_insert = NULL;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	if (plan_insert == NULL)
	{
		plan_dup = pgm_prepare(
			"SELECT id = $3, email = $1, lower(username) = lower($2)"
			"  FROM pgmarket.accounts"
			" WHERE id = $3 OR email = $1 OR lower(username) = lower($2)",
			3, dup_types);
		plan_insert = pgm_prepare(
			"WITH a AS ("
			"  INSERT INTO pgmarket.accounts (id, email, username,"
			"         password_hash, roles, created_at)"
			"  VALUES ($1, $2, $3, $4, coalesce($5, '{user}'),"
			"          coalesce($6, now())) RETURNING id)"
			"INSERT INTO pgmarket.balances (user_id) SELECT id FROM a",
			6, ins_types);
	}

	values[0] = CStringGetTextDatum(email);
	values[1] = CStringGetTextDatum(username);
	values[2] = id;
	pgm_exec(plan_dup, values, NULL, false);
	if (SPI_processed > 0)
	{
		if (DatumGetBool(pgm_col(0, 1, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("user id %s already exists",
							DatumGetCString(DirectFunctionCall1(uuid_out, id)))));
		if (DatumGetBool(pgm_col(0, 2, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("email \"%s\" is already registered", email)));
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("username \"%s\" is already taken", username),
				 errdetail("Usernames are unique without regard to case.")));
	}

	values[0] = id;
	values[1] = CStringGetTextDatum(email);
	values[2] = CStringGetTextDatum(username);
	values[3] = hash ? CStringGetTextDatum(hash) : (Datum) 0;
	values[4] = roles;
	values[5] = created_at;
	if (hash == NULL)
		nulls[3] = 'n';
	if (roles == (Datum) 0)
		nulls[4] = 'n';
	if (!has_created_at)
		nulls[5] = 'n';
	pgm_exec(plan_insert, values, nulls, false);
}

Datum
pgm_create_user(PG_FUNCTION_ARGS)
{
	char	   *email;
	char	   *username;
	ArrayType  *roles;
	Datum		id;
	char	   *hash = NULL;

	pgm_require_arg(fcinfo, 0, "email");
	pgm_require_arg(fcinfo, 1, "username");
	pgm_require_arg(fcinfo, 3, "roles");
	pgm_require_arg(fcinfo, 4, "id");
	email = normalize_email(PG_GETARG_TEXT_PP(0));
	username = text_to_cstring(PG_GETARG_TEXT_PP(1));
	check_username(username);
	roles = PG_GETARG_ARRAYTYPE_P(3);
	id = PG_GETARG_DATUM(4);
	if (!PG_ARGISNULL(2))
	{
		size_t		len;
		char	   *password = password_arg(fcinfo, 2, &len);

		hash = argon2id_hash(password, len);
		sodium_memzero(password, len);
	}

	pgm_spi_connect();
	check_roles(roles);
	insert_account(id, email, username, hash, PointerGetDatum(roles),
				   (Datum) 0, false);
	SPI_finish();
	PG_RETURN_DATUM(id);
}

/* ----------------------------------------------------------------
 * import_user(id, email, username, password_hash, created_at) RETURNS uuid
 *
 * For migrations (pgmarket import): an account with a password hash made
 * elsewhere, kept as it is (Argon2id, or Django's pbkdf2_sha256, which
 * authenticate replaces at the first login).  A repeat with the same id,
 * email and username changes nothing, so an import can be run again.
 * ----------------------------------------------------------------
 */

/* Is a hash in a format verify_password understands?  Never echoes it. */
static bool
hash_format_ok(const char *hash)
{
	const char *p;
	int			dollars = 0;

	if (strncmp(hash, "$argon2id$", 10) == 0)
		return strlen(hash) < crypto_pwhash_STRBYTES;
	if (strncmp(hash, "pbkdf2_sha256$", 14) != 0)
		return false;
	for (p = hash + 14; *p; p++)
	{
		if (*p == '$')
			dollars++;
		else if ((unsigned char) *p <= 0x20 || *p == 0x7f)
			return false;
	}
	return dollars == 2 && strlen(hash) < 1024;
}

Datum
pgm_import_user(PG_FUNCTION_ARGS)
{
	Datum		id;
	char	   *email;
	char	   *username;
	char	   *hash = NULL;
	Oid			find_types[1] = {UUIDOID};
	static SPIPlanPtr plan_find = NULL;

	pgm_require_arg(fcinfo, 0, "id");
	pgm_require_arg(fcinfo, 1, "email");
	pgm_require_arg(fcinfo, 2, "username");
	id = PG_GETARG_DATUM(0);
	email = normalize_email(PG_GETARG_TEXT_PP(1));
	username = text_to_cstring(PG_GETARG_TEXT_PP(2));
	check_username(username);
	if (!PG_ARGISNULL(3))
	{
		hash = text_to_cstring(PG_GETARG_TEXT_PP(3));
		if (!hash_format_ok(hash))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("password_hash of user %s is neither an Argon2id nor a pbkdf2_sha256 hash",
							DatumGetCString(DirectFunctionCall1(uuid_out, id)))));
	}

	pgm_spi_connect();
	if (plan_find == NULL)
		plan_find = pgm_prepare(
			"SELECT email, username FROM pgmarket.accounts WHERE id = $1",
			1, find_types);

	/* the same account again: nothing to do */
	pgm_exec(plan_find, &id, NULL, false);
	if (SPI_processed == 1)
	{
		bool		isnull;
		char	   *e = TextDatumGetCString(pgm_col(0, 1, &isnull));
		char	   *u = TextDatumGetCString(pgm_col(0, 2, &isnull));

		if (strcmp(e, email) != 0 || strcmp(u, username) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("user id %s already exists with another email or username",
							DatumGetCString(DirectFunctionCall1(uuid_out, id)))));
		SPI_finish();
		PG_RETURN_DATUM(id);
	}

	insert_account(id, email, username, hash, (Datum) 0,
				   PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4),
				   !PG_ARGISNULL(4));

	SPI_finish();
	PG_RETURN_DATUM(id);
}

/* ----------------------------------------------------------------
 * authenticate(login, password) RETURNS uuid
 *
 * NULL for an unknown login, a deactivated user, a user without a password
 * and a wrong password alike; each of these verifies one hash, so they take
 * about as long as each other.
 * ----------------------------------------------------------------
 */
Datum
pgm_authenticate(PG_FUNCTION_ARGS)
{
	char	   *login;
	char	   *lowered;
	size_t		len;
	char	   *password;
	Datum		values[2];
	Oid			find_types[1] = {TEXTOID};
	Oid			stamp_types[2] = {UUIDOID, TEXTOID};
	static SPIPlanPtr plan_find = NULL;
	static SPIPlanPtr plan_stamp = NULL;
	bool		found = false;
	bool		active = false;
	char	   *hash = NULL;
	pg_uuid_t	id;
	int			ok;
	char	   *rehash = NULL;
	char		nulls[2] = {' ', ' '};

	pgm_require_arg(fcinfo, 0, "login");
	pgm_require_arg(fcinfo, 1, "password");
	login = text_to_cstring(PG_GETARG_TEXT_PP(0));
	lowered = str_tolower(login, strlen(login), DEFAULT_COLLATION_OID);
	password = password_arg(fcinfo, 1, &len);

	pgm_spi_connect();
	if (plan_find == NULL)
	{
		plan_find = pgm_prepare(
			"SELECT id, password_hash, deleted_at IS NULL"
			"  FROM pgmarket.accounts"
			" WHERE email = btrim($1) OR lower(username) = $1", 1, find_types);
		plan_stamp = pgm_prepare(
			"UPDATE pgmarket.accounts"
			"   SET last_login_at = now(),"
			"       password_hash = coalesce($2, password_hash)"
			" WHERE id = $1", 2, stamp_types);
	}
	values[0] = CStringGetTextDatum(lowered);
	pgm_exec(plan_find, values, NULL, false);
	if (SPI_processed == 1)
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		h;

		found = true;
		memcpy(&id, DatumGetUUIDP(SPI_getbinval(row, desc, 1, &isnull)),
			   sizeof(id));
		h = SPI_getbinval(row, desc, 2, &isnull);
		if (!isnull)
			hash = TextDatumGetCString(h);
		active = DatumGetBool(SPI_getbinval(row, desc, 3, &isnull));
	}

	if (!found || !active || hash == NULL)
	{
		/* only the time this takes matters, not its result */
		ok = crypto_pwhash_str_verify(dummy_hash, password, len);
		ok = 0;
	}
	else
	{
		ok = check_password(password, len, hash);
		if (ok == 1 && !is_argon2(hash))
			rehash = argon2id_hash(password, len);
	}
	sodium_memzero(password, len);

	if (ok != 1)
	{
		SPI_finish();
		PG_RETURN_NULL();
	}

	values[0] = UUIDPGetDatum(&id);
	values[1] = rehash ? CStringGetTextDatum(rehash) : (Datum) 0;
	if (rehash == NULL)
		nulls[1] = 'n';
	pgm_exec(plan_stamp, values, nulls, false);
	SPI_finish();
	{
		pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));

		memcpy(result, &id, sizeof(pg_uuid_t));
		PG_RETURN_UUID_P(result);
	}
}

/* ----------------------------------------------------------------
 * deactivate_user(user_id): soft delete; the ledger keeps the history
 * ----------------------------------------------------------------
 */
Datum
pgm_deactivate_user(PG_FUNCTION_ARGS)
{
	Datum		user_id;
	Oid			types[1] = {UUIDOID};
	static SPIPlanPtr plan = NULL;

	pgm_user_arg(fcinfo, 0);
	user_id = PG_GETARG_DATUM(0);

	pgm_spi_connect();
	if (plan == NULL)
		plan = pgm_prepare(
			"WITH b AS ("
			"  UPDATE pgmarket.balances SET active = false, updated_at = now()"
			"   WHERE user_id = $1 AND active RETURNING user_id)"
			"UPDATE pgmarket.accounts a SET deleted_at = now()"
			"  FROM b WHERE a.id = b.user_id", 1, types);
	pgm_queue_for_user(user_id);
	pgm_exec(plan, &user_id, NULL, false);
	if (SPI_processed != 1)
		pgm_raise_unknown_account(user_id);
	SPI_finish();
	PG_RETURN_VOID();
}
