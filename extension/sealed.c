/*-------------------------------------------------------------------------
 *
 * sealed.c
 *	  The sealed forms of the calls that take a password or a platform key:
 *	  create_user_sealed, authenticate_sealed, hash_password_sealed,
 *	  verify_password_sealed, verify_api_key_sealed, charge_api_key_sealed,
 *	  reserve_api_key_sealed, change_password_sealed, reset_password_sealed,
 *	  check_rate_limit_sealed.
 *
 * With log_statement = all (and with several other settings, see health.c)
 * the server log holds every bind parameter of every call.  A password or a
 * platform key passed as text would be written there in plaintext.  These
 * functions take it sealed instead: the client encrypts it with
 * crypto_box_seal to vault_public_key() (as put_provider_key_sealed takes a
 * provider key), so the log holds a blob that only the vault's secret key
 * opens.
 *
 * The sealed payload
 * ------------------
 *	  byte 0		format version, 1
 *	  byte 1		what it holds: 'P' a password, 'K' a platform API key
 *	  bytes 2-9		when it was sealed: seconds since 1970-01-01 UTC,
 *					big-endian, by the client's clock
 *	  bytes 10-		the secret, UTF-8 text without NUL
 *
 * A payload is accepted only within pgmarket.sealed_max_age seconds (60 by
 * default; superuser only) of the server's clock, either way: a blob copied
 * from a log can be replayed through
 * pgmarket's own SQL API (by a role allowed to call it) for at most that
 * long, and never anywhere else (the gateway, a login form, another site
 * where the user reuses the password): it is not the secret.  The tag keeps
 * a sealed password from being taken as a platform key and the other way
 * round.
 *
 * A platform key keeps its public part in the clear (key_prefix, the first
 * 24 characters: "sk_live_" and the partition and id digits), because a
 * PL/Proxy front routes on it (api_key_partition); the node checks that it
 * is the prefix of the sealed key.
 *
 * Each function opens the payload into a buffer that is wiped when the
 * call's memory goes (and explicitly after use), then calls the plain
 * function's C entry point with the opened secret in place of the blob, so
 * that both forms check, hash, verify and charge in exactly one way.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sodium.h>

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pgm_create_user_sealed);
PG_FUNCTION_INFO_V1(pgm_authenticate_sealed);
PG_FUNCTION_INFO_V1(pgm_hash_password_sealed);
PG_FUNCTION_INFO_V1(pgm_verify_password_sealed);
PG_FUNCTION_INFO_V1(pgm_verify_api_key_sealed);
PG_FUNCTION_INFO_V1(pgm_charge_api_key_sealed);
PG_FUNCTION_INFO_V1(pgm_check_rate_limit_sealed);
PG_FUNCTION_INFO_V1(pgm_reserve_api_key_sealed);
PG_FUNCTION_INFO_V1(pgm_change_password_sealed);
PG_FUNCTION_INFO_V1(pgm_reset_password_sealed);

/* the plain functions (accounts.c, passwords.c, apikeys.c) */
extern PGDLLEXPORT Datum pgm_create_user(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum pgm_authenticate(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum pgm_hash_password(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum pgm_verify_password(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum pgm_verify_api_key(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum pgm_charge_api_key(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum pgm_check_rate_limit(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum pgm_reserve_api_key(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum pgm_change_password(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum pgm_reset_password(PG_FUNCTION_ARGS);

#define SEALED_VERSION			1
#define SEALED_PASSWORD			'P'
#define SEALED_API_KEY			'K'
#define SEALED_HEADER_BYTES		10
#define SEALED_MAX_SECRET		16384
#define KEY_PREFIX_LEN			24	/* "sk_live_" + 16 lower-case hex digits */
#define INNER_MAX_ARGS			8

/* pgmarket.sealed_max_age: how long a sealed secret is accepted, seconds */
static int	sealed_max_age = 60;

/* Define pgmarket.sealed_max_age; called from _PG_init. */
void
pgm_sealed_init(void)
{
	DefineCustomIntVariable("pgmarket.sealed_max_age",
							"How long a sealed password or platform key is accepted after it was sealed.",
							"Also how far ahead of the server's clock it may be.  A sealed secret copied from a server log can be replayed through pgmarket's SQL functions for this long.",
							&sealed_max_age,
							60, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

/* Wipe an opened secret as soon as the call that used it returns. */
static void
wipe_text(text *t)
{
	sodium_memzero(VARDATA(t), VARSIZE(t) - VARHDRSZ);
}

/*
 * A sealed secret is accepted within sealed_max_age seconds of the server's
 * clock, either way; outside that window the opened secret is wiped and the
 * call is 22023.
 */
static void
check_sealed_age(const char *argname, int64 sealed_at, text *secret)
{
	int64		now = (int64) timestamptz_to_time_t(GetCurrentTimestamp());

	if (sealed_at < now - sealed_max_age || sealed_at > now + sealed_max_age)
		wipe_text(secret);
	if (sealed_at < now - sealed_max_age)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s was sealed at %s, more than %d seconds ago",
						argname,
						timestamptz_to_str(time_t_to_timestamptz((pg_time_t) Max(sealed_at, 0))),
						sealed_max_age),
				 errdetail("A sealed secret is accepted for %d seconds, so that one copied from a log cannot be used later.",
						   sealed_max_age),
				 errhint("Seal the secret again for each call, and check the client's clock.")));
	if (sealed_at > now + sealed_max_age)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s was sealed at %s, more than %d seconds ahead of the server's clock",
						argname,
						timestamptz_to_str(time_t_to_timestamptz((pg_time_t) Min(sealed_at, INT64CONST(253402300799)))),
						sealed_max_age),
				 errhint("Check the clocks of the client and of the server.")));
}

/*
 * Open the sealed argument argno (already checked for NULL) that must hold
 * a secret of the given kind, and return it as a text datum in a buffer
 * wiped when the current memory context goes.  Raises 22023 for a blob of
 * the wrong size, kind or format, or out of its time window; PM010 without
 * a vault; PM011 when no key pair of the vault opens it; 22021 when the
 * secret is not valid text.
 */
static text *
open_sealed(FunctionCallInfo fcinfo, int argno, const char *argname, char kind)
{
	bytea	   *sealed = PG_GETARG_BYTEA_PP(argno);
	size_t		slen = VARSIZE_ANY_EXHDR(sealed);
	size_t		plen;
	unsigned char *payload;
	size_t		len;
	text	   *secret;
	int64		sealed_at = 0;
	int			i;

	if (slen <= crypto_box_SEALBYTES + SEALED_HEADER_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too short: %zu bytes", argname, slen),
				 errdetail("A sealed secret is %d bytes longer than the secret, which must not be empty.",
						   (int) (crypto_box_SEALBYTES + SEALED_HEADER_BYTES))));
	plen = slen - crypto_box_SEALBYTES;
	if (plen - SEALED_HEADER_BYTES > SEALED_MAX_SECRET)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s holds more than %d bytes", argname, SEALED_MAX_SECRET)));

	payload = pgm_secret_alloc(plen);
	if (!pgm_keyring_open_sealed((const unsigned char *) VARDATA_ANY(sealed),
								 slen, payload))
		ereport(ERROR,
				(errcode(ERRCODE_PGM_DECRYPTION_FAILED),
				 errmsg("%s could not be opened", argname),
				 errdetail("It was not sealed to a public key of this vault, or it was altered."),
				 errhint("Seal it to the key that vault_public_key() returns.")));

	if (payload[0] != SEALED_VERSION ||
		(payload[1] != SEALED_PASSWORD && payload[1] != SEALED_API_KEY))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not in the sealed format of pgmarket", argname),
				 errdetail("A sealed payload starts with format version 1, a tag and the time it was sealed.")));
	if (payload[1] != kind)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s holds a sealed %s, not a sealed %s", argname,
						payload[1] == SEALED_PASSWORD ? "password" : "platform key",
						kind == SEALED_PASSWORD ? "password" : "platform key")));

	for (i = 0; i < 8; i++)
		sealed_at = (int64) (((uint64) sealed_at << 8) | payload[2 + i]);
	len = plen - SEALED_HEADER_BYTES;
	secret = pgm_secret_alloc(VARHDRSZ + len);
	SET_VARSIZE(secret, VARHDRSZ + len);
	memcpy(VARDATA(secret), payload + SEALED_HEADER_BYTES, len);
	sodium_memzero(payload + SEALED_HEADER_BYTES, len);
	if (memchr(VARDATA(secret), '\0', len) != NULL ||
		!pg_verifymbstr(VARDATA(secret), len, true))
	{
		sodium_memzero(VARDATA(secret), len);
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("%s does not hold valid text in the database encoding",
						argname)));
	}

	check_sealed_age(argname, sealed_at, secret);
	return secret;
}

/*
 * Call a plain function's C entry point with the given arguments, in the
 * outer call's context: its flinfo (hence its result type) and its
 * resultinfo, so that a set-returning function fills the outer result.
 */
static Datum
call_plain(PGFunction fn, FunctionCallInfo outer, int nargs,
		   const Datum *values, const bool *nulls, bool *isnull)
{
	LOCAL_FCINFO(inner, INNER_MAX_ARGS);
	Datum		result;
	int			i;

	Assert(nargs <= INNER_MAX_ARGS);
	InitFunctionCallInfoData(*inner, outer->flinfo, nargs,
							 outer->fncollation, outer->context,
							 outer->resultinfo);
	for (i = 0; i < nargs; i++)
	{
		inner->args[i].value = values[i];
		inner->args[i].isnull = nulls[i];
	}
	result = fn(inner);
	*isnull = inner->isnull;
	return result;
}

/* The outer call's arguments, copied for the plain call. */
static void
copy_args(FunctionCallInfo fcinfo, int nargs, Datum *values, bool *nulls)
{
	int			i;

	for (i = 0; i < nargs; i++)
	{
		values[i] = PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i);
	}
}

/*
 * The key_prefix argument: the public part of a platform key, 22023 when it
 * is not of the form sk_live_ or sk_test_ and 16 lower-case hex digits.
 */
static char *
key_prefix_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *prefix;
	bool		ok;
	int			i;

	pgm_require_arg(fcinfo, argno, "key_prefix");
	prefix = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	ok = strlen(prefix) == KEY_PREFIX_LEN &&
		(strncmp(prefix, "sk_live_", 8) == 0 || strncmp(prefix, "sk_test_", 8) == 0);
	for (i = 8; ok && i < KEY_PREFIX_LEN; i++)
		ok = (prefix[i] >= '0' && prefix[i] <= '9') ||
			(prefix[i] >= 'a' && prefix[i] <= 'f');
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_prefix \"%s\" is not the public part of a platform key",
						prefix),
				 errdetail("The public part is the first 24 characters of the key: sk_live_ or sk_test_ and 16 hexadecimal digits.")));
	return prefix;
}

/*
 * Open a sealed platform key and check that key_prefix is its public part
 * (a sealed text that is no key at all is left to the plain function,
 * which treats it as a key that does not verify).
 */
static text *
open_sealed_key(FunctionCallInfo fcinfo, const char *prefix, int argno)
{
	text	   *key = open_sealed(fcinfo, argno, "sealed_key", SEALED_API_KEY);

	if (VARSIZE(key) - VARHDRSZ >= KEY_PREFIX_LEN &&
		memcmp(VARDATA(key), prefix, KEY_PREFIX_LEN) != 0)
	{
		wipe_text(key);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_prefix \"%s\" is not the public part of the sealed key",
						prefix)));
	}
	return key;
}

/* ----------------------------------------------------------------
 * Accounts
 * ----------------------------------------------------------------
 */

/*
 * The password calls: the plain function with the outer call's nargs
 * arguments, the sealed password at argno (unless it is NULL) opened in
 * place of the blob and wiped as soon as the call returns.  The caller
 * checks the arguments first, as the plain call would.
 */
static Datum
call_password_sealed(FunctionCallInfo fcinfo, PGFunction plain, int nargs,
					 int argno)
{
	Datum		values[INNER_MAX_ARGS];
	bool		nulls[INNER_MAX_ARGS];
	text	   *password = NULL;
	Datum		result;

	Assert(nargs <= INNER_MAX_ARGS);
	copy_args(fcinfo, nargs, values, nulls);
	if (!PG_ARGISNULL(argno))
	{
		password = open_sealed(fcinfo, argno, "sealed_password", SEALED_PASSWORD);
		values[argno] = PointerGetDatum(password);
	}
	result = call_plain(plain, fcinfo, nargs, values, nulls, &fcinfo->isnull);
	if (password)
		wipe_text(password);
	return result;
}

/*
 * create_user_sealed(email text, username text, sealed_password bytea,
 *					  roles text[], id uuid) RETURNS uuid
 */
Datum
pgm_create_user_sealed(PG_FUNCTION_ARGS)
{
	pgm_require_arg(fcinfo, 0, "email");
	pgm_require_arg(fcinfo, 1, "username");
	pgm_require_arg(fcinfo, 3, "roles");
	pgm_require_arg(fcinfo, 4, "id");
	return call_password_sealed(fcinfo, pgm_create_user, 5, 2);
}

/* authenticate_sealed(login text, sealed_password bytea) RETURNS uuid */
Datum
pgm_authenticate_sealed(PG_FUNCTION_ARGS)
{
	pgm_require_arg(fcinfo, 0, "login");
	pgm_require_arg(fcinfo, 1, "sealed_password");
	return call_password_sealed(fcinfo, pgm_authenticate, 2, 1);
}

/* hash_password_sealed(sealed_password bytea) RETURNS text */
Datum
pgm_hash_password_sealed(PG_FUNCTION_ARGS)
{
	pgm_require_arg(fcinfo, 0, "sealed_password");
	return call_password_sealed(fcinfo, pgm_hash_password, 1, 0);
}

/*
 * The hashes a sealed password may be tried against: none cheaper than the
 * ones pgmarket itself makes or than Django's default PBKDF2 (passwords.c
 * decides, with its own parser).  Otherwise a blob copied from a server log
 * would be an oracle for guessing its password against a hash of the
 * guesser's choosing (one PBKDF2 round, say), thousands of guesses a second
 * within the blob's lifetime.  The plain verify_password keeps every hash
 * within the bounds.
 */
static void
check_hash_floor(const char *hash)
{
	if (pgm_hash_costs_at_least_standard(hash))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("a sealed password is verified only against an Argon2id hash of at least 64 MiB and 2 passes, a PBKDF2 hash of at least 600000 rounds or a bcrypt hash of cost 12 or more"),
			 errhint("Use verify_password for other hashes, or authenticate_sealed to check a user's password.")));
}

/* verify_password_sealed(sealed_password bytea, hash text) RETURNS boolean */
Datum
pgm_verify_password_sealed(PG_FUNCTION_ARGS)
{
	pgm_require_arg(fcinfo, 0, "sealed_password");
	pgm_require_arg(fcinfo, 1, "hash");
	check_hash_floor(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	return call_password_sealed(fcinfo, pgm_verify_password, 2, 0);
}

/* ----------------------------------------------------------------
 * Platform API keys
 * ----------------------------------------------------------------
 */

/*
 * The key calls without other arguments: the plain function with the
 * opened key in place of the prefix and the blob.
 */
static Datum
call_key_only_sealed(FunctionCallInfo fcinfo, PGFunction plain)
{
	char	   *prefix;
	Datum		values[1];
	bool		nulls[1] = {false};
	text	   *key;
	Datum		result;
	bool		isnull;

	prefix = key_prefix_arg(fcinfo, 0);
	pgm_require_arg(fcinfo, 1, "sealed_key");
	key = open_sealed_key(fcinfo, prefix, 1);
	values[0] = PointerGetDatum(key);
	result = call_plain(plain, fcinfo, 1, values, nulls, &isnull);
	wipe_text(key);
	return result;
}

/*
 * verify_api_key_sealed(key_prefix text, sealed_key bytea)
 *	 RETURNS TABLE(key_id uuid, user_id uuid, scopes text[], rate_limit_tier text)
 */
Datum
pgm_verify_api_key_sealed(PG_FUNCTION_ARGS)
{
	return call_key_only_sealed(fcinfo, pgm_verify_api_key);
}

/*
 * check_rate_limit_sealed(key_prefix text, sealed_key bytea)
 *	 RETURNS TABLE(allowed boolean, retry_after_ms bigint,
 *				   remaining_requests bigint)
 */
Datum
pgm_check_rate_limit_sealed(PG_FUNCTION_ARGS)
{
	return call_key_only_sealed(fcinfo, pgm_check_rate_limit);
}

/*
 * The key calls with an amount: key_prefix, sealed_key and amount required
 * and checked (the amount first, as the plain call checks it), then the
 * plain function with the opened key in place of the prefix and the blob.
 */
static Datum
call_key_sealed(FunctionCallInfo fcinfo, PGFunction plain, int nargs)
{
	char	   *prefix;
	Datum		values[INNER_MAX_ARGS];
	bool		nulls[INNER_MAX_ARGS];
	text	   *key;
	Datum		result;
	bool		isnull;
	int			i;

	Assert(nargs <= INNER_MAX_ARGS);
	pgm_require_arg(fcinfo, 0, "key_prefix");
	pgm_require_arg(fcinfo, 1, "sealed_key");
	pgm_require_arg(fcinfo, 2, "amount");
	prefix = key_prefix_arg(fcinfo, 0);
	(void) pgm_numeric_to_micro(PG_GETARG_DATUM(2), "amount");
	for (i = 0; i < nargs; i++)
	{
		values[i] = PG_GETARG_DATUM(i + 1);
		nulls[i] = PG_ARGISNULL(i + 1);
	}
	key = open_sealed_key(fcinfo, prefix, 1);
	values[0] = PointerGetDatum(key);
	result = call_plain(plain, fcinfo, nargs, values, nulls, &isnull);
	wipe_text(key);
	return result;
}

/*
 * charge_api_key_sealed(key_prefix text, sealed_key bytea, amount numeric,
 *						 model_id text, tokens_used bigint,
 *						 idempotency_key text) RETURNS ledger_result
 */
Datum
pgm_charge_api_key_sealed(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(call_key_sealed(fcinfo, pgm_charge_api_key, 5));
}

/*
 * reserve_api_key_sealed(key_prefix text, sealed_key bytea, amount numeric,
 *						  ttl interval, idempotency_key text) RETURNS bigint
 */
Datum
pgm_reserve_api_key_sealed(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(call_key_sealed(fcinfo, pgm_reserve_api_key, 4));
}

/* ----------------------------------------------------------------
 * Password changes (resets.c)
 * ----------------------------------------------------------------
 */

/*
 * change_password_sealed(user_id uuid, sealed_old_password bytea,
 *						  sealed_new_password bytea) RETURNS boolean
 */
Datum
pgm_change_password_sealed(PG_FUNCTION_ARGS)
{
	Datum		values[3];
	bool		nulls[3];
	text	   *old_pw;
	text	   *new_pw;
	Datum		result;

	pgm_user_arg(fcinfo, 0);
	pgm_require_arg(fcinfo, 1, "sealed_old_password");
	pgm_require_arg(fcinfo, 2, "sealed_new_password");
	copy_args(fcinfo, 3, values, nulls);
	old_pw = open_sealed(fcinfo, 1, "sealed_old_password", SEALED_PASSWORD);
	new_pw = open_sealed(fcinfo, 2, "sealed_new_password", SEALED_PASSWORD);
	values[1] = PointerGetDatum(old_pw);
	values[2] = PointerGetDatum(new_pw);
	result = call_plain(pgm_change_password, fcinfo, 3, values, nulls,
						&fcinfo->isnull);
	wipe_text(old_pw);
	wipe_text(new_pw);
	return result;
}

/*
 * reset_password_sealed(token text, sealed_new_password bytea) RETURNS uuid.
 * The token travels as text: it is single-use, and used up by the call
 * that succeeds.
 */
Datum
pgm_reset_password_sealed(PG_FUNCTION_ARGS)
{
	Datum		values[2];
	bool		nulls[2];
	text	   *new_pw;
	Datum		result;

	pgm_require_arg(fcinfo, 0, "token");
	pgm_require_arg(fcinfo, 1, "sealed_new_password");
	copy_args(fcinfo, 2, values, nulls);
	new_pw = open_sealed(fcinfo, 1, "sealed_new_password", SEALED_PASSWORD);
	values[1] = PointerGetDatum(new_pw);
	result = call_plain(pgm_reset_password, fcinfo, 2, values, nulls,
						&fcinfo->isnull);
	wipe_text(new_pw);
	return result;
}
