/*-------------------------------------------------------------------------
 *
 * accounts.c
 *	  Users: create_user, create_user_hashed, import_user, authenticate,
 *	  deactivate_user, erase_user.
 *
 * Password hashing and checking is passwords.c's, the spelling of an email
 * address emails.c's; this file holds the accounts table's calls.
 *
 * authenticate answers NULL for an unknown login, a deactivated user, a
 * user without a password and a wrong password alike, after the same work
 * (pgm_password_login), so that they take about as long as each other.
 * A hash that is not a standard Argon2id one is replaced at the first
 * successful login.
 *
 * For other files (static until one needs them): authenticate_login() is
 * authenticate for a password already in hand.
 *
 * Every copy of a plaintext password made here is wiped with sodium_memzero
 * as soon as it has been used, and by a memory context callback when an
 * error unwinds the call.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sodium.h>

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(pgm_create_user);
PG_FUNCTION_INFO_V1(pgm_authenticate);
PG_FUNCTION_INFO_V1(pgm_deactivate_user);
PG_FUNCTION_INFO_V1(pgm_import_user);
PG_FUNCTION_INFO_V1(pgm_create_user_hashed);

/* ----------------------------------------------------------------
 * create_user(email, username, password, roles, id)
 * ----------------------------------------------------------------
 */

/* A username: 3 to 64 of [A-Za-z0-9_.-], else 22023. */
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

/* The same rule, for the other account files (profiles.c: update_user). */
void
pgm_check_username(const char *username)
{
	check_username(username);
}

/*
 * The shapes erase_user gives a tombstone ("<id>@erased.invalid",
 * "erased-<id in hex>") are erase_user's alone: an account that is
 * created, imported or renamed into one is 22023, so nobody looks erased
 * who is not and nobody holds a tombstone before its user is erased.
 * Either argument may be NULL (not checked).
 */
void
pgm_check_not_tombstone(const char *email, const char *username)
{
	size_t		suffix = strlen(PGM_TOMBSTONE_DOMAIN);

	if (email != NULL && strlen(email) >= suffix &&
		pg_strcasecmp(email + strlen(email) - suffix, PGM_TOMBSTONE_DOMAIN) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("email \"%s\" is reserved", email),
				 errdetail("Addresses ending in \"%s\" are the tombstones of erased users.",
						   PGM_TOMBSTONE_DOMAIN)));
	if (username != NULL &&
		pg_strncasecmp(username, PGM_TOMBSTONE_USER_PREFIX,
					   strlen(PGM_TOMBSTONE_USER_PREFIX)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("username \"%s\" is reserved", username),
				 errdetail("Usernames beginning with \"%s\" are the tombstones of erased users.",
						   PGM_TOMBSTONE_USER_PREFIX)));
}

/*
 * With pgmarket.actor set, a new account gets the default roles {user} and
 * no other (42501): a transaction that acts for a user never grants a
 * role, and minting an account of higher roles would be one (roles.c's
 * rule for grant_user_role).  Without an actor, the back end chooses.
 */
static void
check_roles_for_actor(ArrayType *roles)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (!pgm_actor_set())
		return;
	deconstruct_array(roles, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (ARR_NDIM(roles) == 1 && n == 1 && !nulls[0] &&
		strcmp(TextDatumGetCString(elems[0]), "user") == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("an account with roles other than {user} cannot be created while pgmarket.actor is set"),
			 errdetail("A transaction that acts for a user never grants a role."),
			 errhint("Create the account with the default roles, or from the back end without pgmarket.actor.")));
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
 * With SPI connected: 23505, with a message that names it, when the id,
 * the email or the username is taken (the unique indexes stay the
 * backstop against a race).
 */
static void
check_account_free(Datum id, const char *email, const char *username)
{
	Oid			types[3] = {TEXTOID, TEXTOID, UUIDOID};
	static SPIPlanPtr plan = NULL;
	Datum		values[3];
	bool		isnull;

	if (plan == NULL)
		plan = pgm_prepare(
			"SELECT id = $3, email = $1, lower(username) = lower($2)"
			"  FROM pgmarket.accounts"
			" WHERE id = $3 OR email = $1 OR lower(username) = lower($2)",
			3, types);
	values[0] = CStringGetTextDatum(email);
	values[1] = CStringGetTextDatum(username);
	values[2] = id;
	pgm_exec(plan, values, NULL, false);
	if (SPI_processed == 0)
		return;
	if (DatumGetBool(pgm_col(0, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("user id %s already exists",
						pgm_uuid_cstring(id))));
	pgm_raise_account_taken(DatumGetBool(pgm_col(0, 2, &isnull)), email,
							username);
}

/*
 * 23505 for an email (email_taken) or else a username that another account
 * holds: create_user's words, and update_user's (profiles.c).
 */
void
pgm_raise_account_taken(bool email_taken, const char *email,
						const char *username)
{
	if (email_taken)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("email \"%s\" is already registered", email)));
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("username \"%s\" is already taken", username),
			 errdetail("Usernames are unique without regard to case.")));
}

/*
 * Insert an account and its zero balance, with SPI connected, once
 * check_account_free passes.  hash, roles and created_at are optional:
 * NULL, (Datum) 0 and has_created_at false take the table's defaults.
 */
static void
insert_account(Datum id, const char *email, const char *username,
			   const char *hash, Datum roles, Datum created_at,
			   bool has_created_at)
{
	Oid			types[6] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTARRAYOID, TIMESTAMPTZOID};
	static SPIPlanPtr plan = NULL;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	check_account_free(id, email, username);
	if (plan == NULL)
		plan = pgm_prepare(
			"WITH a AS ("
			"  INSERT INTO pgmarket.accounts (id, email, username,"
			"         password_hash, roles, created_at)"
			"  VALUES ($1, $2, $3, $4, coalesce($5, '{user}'),"
			"          coalesce($6, now())) RETURNING id)"
			"INSERT INTO pgmarket.balances (user_id) SELECT id FROM a",
			6, types);
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
	pgm_exec(plan, values, nulls, false);
}

/*
 * What create_user and create_user_hashed take alike, read and checked in
 * their order: the NULL checks (password_hash too when with_hash: it is
 * required there), the email, the username, the tombstone and actor rules,
 * the roles and the id.  The third argument, the password or its hash, is
 * each caller's own.
 */
typedef struct NewAccount
{
	char	   *email;
	char	   *username;
	ArrayType  *roles;
	Datum		id;
} NewAccount;

static void
new_account_args(FunctionCallInfo fcinfo, bool with_hash, NewAccount *a)
{
	pgm_require_arg(fcinfo, 0, "email");
	pgm_require_arg(fcinfo, 1, "username");
	if (with_hash)
		pgm_require_arg(fcinfo, 2, "password_hash");
	pgm_require_arg(fcinfo, 3, "roles");
	pgm_require_arg(fcinfo, 4, "id");
	a->email = pgm_normalize_email(PG_GETARG_TEXT_PP(0));
	a->username = text_to_cstring(PG_GETARG_TEXT_PP(1));
	check_username(a->username);
	pgm_check_not_tombstone(a->email, a->username);
	a->roles = PG_GETARG_ARRAYTYPE_P(3);
	check_roles_for_actor(a->roles);
	a->id = PG_GETARG_DATUM(4);
}

/* The account of new_account_args, with its hash (NULL: no password). */
static Datum
create_account(const NewAccount *a, const char *hash)
{
	pgm_spi_connect();
	check_roles(a->roles);
	insert_account(a->id, a->email, a->username, hash,
				   PointerGetDatum(a->roles), (Datum) 0, false);
	pgm_spi_finish();
	return a->id;
}

/* create_user: an account with an Argon2id hash of the password, if any */
Datum
pgm_create_user(PG_FUNCTION_ARGS)
{
	NewAccount	a;
	char	   *hash = NULL;

	new_account_args(fcinfo, false, &a);
	if (!PG_ARGISNULL(2))
	{
		size_t		len;
		char	   *password = pgm_password_arg(fcinfo, 2, &len);

		hash = pgm_argon2id_hash(password, len);
		sodium_memzero(password, len);
	}
	PG_RETURN_DATUM(create_account(&a, hash));
}

/* ----------------------------------------------------------------
 * create_user_hashed(email, username, password_hash, roles, id) RETURNS uuid
 *
 * create_user for an application that made the hash itself (or keeps one
 * from the service it replaces): the same checks and the same account, the
 * hash vetted as import_user vets it (a known format within the bounds,
 * else 22023; never echoed).  authenticate replaces a hash that is not a
 * standard Argon2id one at the first successful login.
 * ----------------------------------------------------------------
 */
Datum
pgm_create_user_hashed(PG_FUNCTION_ARGS)
{
	NewAccount	a;
	char	   *hash;

	new_account_args(fcinfo, true, &a);
	hash = text_to_cstring(PG_GETARG_TEXT_PP(2));
	pgm_check_hash_to_store(hash, "password_hash");
	PG_RETURN_DATUM(create_account(&a, hash));
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
	email = pgm_normalize_email(PG_GETARG_TEXT_PP(1));
	username = text_to_cstring(PG_GETARG_TEXT_PP(2));
	check_username(username);
	pgm_check_not_tombstone(email, username);
	if (!PG_ARGISNULL(3))
	{
		hash = text_to_cstring(PG_GETARG_TEXT_PP(3));
		pgm_check_hash_to_store(hash,
								psprintf("password_hash of user %s",
										 pgm_uuid_cstring(id)));
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
							pgm_uuid_cstring(id))));
		pgm_spi_finish();
		PG_RETURN_DATUM(id);
	}

	insert_account(id, email, username, hash, (Datum) 0,
				   PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4),
				   !PG_ARGISNULL(4));

	pgm_spi_finish();
	PG_RETURN_DATUM(id);
}

/* ----------------------------------------------------------------
 * authenticate(login, password) RETURNS uuid
 *
 * NULL for an unknown login, a deactivated user, a user without a password
 * and a wrong password alike, after the same work (pgm_password_login), so
 * that they take about as long as each other.
 * ----------------------------------------------------------------
 */
/*
 * The work of authenticate for a password in hand (len bytes, at most
 * PGM_MAX_PASSWORD_LEN; the caller wipes it): true, with the user in *id,
 * when login names an active user whose stored hash the password matches.
 * Stamps last_login_at, and replaces a hash that is not a standard Argon2id
 * one.  Connects to SPI and finishes itself.
 */
static bool
authenticate_login(const char *login, const char *password, size_t len,
				   pg_uuid_t *id)
{
	char	   *email;
	char	   *username;
	Datum		values[2];
	Oid			find_types[2] = {TEXTOID, TEXTOID};
	Oid			stamp_types[2] = {UUIDOID, TEXTOID};
	static SPIPlanPtr plan_find = NULL;
	static SPIPlanPtr plan_stamp = NULL;
	bool		active = false;
	char	   *hash = NULL;
	bool		ok;
	char	   *rehash;
	char		nulls[2] = {' ', ' '};

	/*
	 * Both index probes run whatever the login looks like; a login that is
	 * neither form probes for the empty string.
	 */
	pgm_login_forms(login, &email, &username);

	pgm_spi_connect();
	if (plan_find == NULL)
	{
		plan_find = pgm_prepare(
			"SELECT id, password_hash, deleted_at IS NULL"
			"  FROM pgmarket.accounts"
			" WHERE email = $1 OR lower(username) = $2", 2, find_types);
		plan_stamp = pgm_prepare(
			"UPDATE pgmarket.accounts"
			"   SET last_login_at = now(),"
			"       password_hash = coalesce($2, password_hash)"
			" WHERE id = $1", 2, stamp_types);
	}
	values[0] = CStringGetTextDatum(email ? email : "");
	values[1] = CStringGetTextDatum(username ? username : "");
	pgm_exec(plan_find, values, NULL, false);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		hd;

		memcpy(id, DatumGetUUIDP(pgm_col(0, 1, &isnull)), sizeof(pg_uuid_t));
		hd = pgm_col(0, 2, &isnull);
		if (!isnull)
			hash = TextDatumGetCString(hd);
		active = DatumGetBool(pgm_col(0, 3, &isnull));
	}

	ok = pgm_password_login(password, len, hash, active, &rehash);
	if (ok)
	{
		values[0] = UUIDPGetDatum(id);
		values[1] = rehash ? CStringGetTextDatum(rehash) : (Datum) 0;
		if (rehash == NULL)
			nulls[1] = 'n';
		pgm_exec(plan_stamp, values, nulls, false);
	}
	pgm_spi_finish();
	return ok;
}

/* authenticate(login, password): the arguments, then authenticate_login */
Datum
pgm_authenticate(PG_FUNCTION_ARGS)
{
	char	   *login;
	size_t		len;
	char	   *password;
	pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));
	bool		ok;

	pgm_require_arg(fcinfo, 0, "login");
	pgm_require_arg(fcinfo, 1, "password");
	login = text_to_cstring(PG_GETARG_TEXT_PP(0));
	password = pgm_password_arg(fcinfo, 1, &len);
	ok = authenticate_login(login, password, len, id);
	sodium_memzero(password, len);
	if (!ok)
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(id);
}

/* ----------------------------------------------------------------
 * deactivate_user(user_id): soft delete; the ledger keeps the history.
 * The user's open password reset tokens are used up.
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
	/*
	 * A hot user's charges from escrow slots do not wait for the balance
	 * row: wait for the ones in flight first, and bring the slots' money
	 * back into the row.
	 */
	pgm_escrow_lock_account(user_id, plan);
	pgm_escrow_reclaim(user_id);
	pgm_api_keys_follow_user(user_id);
	/* a token sent before the account was locked must not reopen it */
	pgm_use_up_resets(user_id);
	pgm_spi_finish();
	PG_RETURN_VOID();
}
