/*-------------------------------------------------------------------------
 *
 * resets.c
 *	  Changing a password: change_password, and the reset by a single-use
 *	  token, create_password_reset and reset_password.
 *
 * The reset token
 * ---------------
 *	  pwr_PPPPVVVVVVVV_SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS
 *
 * "pwr_"; PPPP, the user's partition in four lower-case hex digits
 * (hashtext(user_id::text) & 65535, what the PL/Proxy front routes by, as
 * a platform key carries it); VVVVVVVV, the master key version of its hash
 * in eight hex digits; "_" and 32 random bytes in URL-safe base64 without
 * padding (43 characters).  60 characters.  It is returned once; the table
 * keeps only its BLAKE2b-256 hash keyed with a subkey of that master key
 * version (context PGM_KDF_CONTEXT_RESET), so a copy of the table resets
 * nobody's password.
 *
 * reset_password answers the user for a known, unused, unexpired token
 * of an active user, and NULL for anything else, after the same work on
 * every path: the new password's Argon2id hash, one keyed hash of the
 * token (under the newest version when the token names none that is
 * loaded) and one statement that looks the hash up by its index.  The
 * token is used up by that statement's UPDATE ... WHERE used_at IS NULL:
 * of two calls with one token at once, the second waits for the first's
 * row lock and then finds it used (READ COMMITTED re-checks the row), so
 * exactly one wins.  A successful reset or change_password uses up every
 * other open token of the user, and so do deactivate_user, reactivate_user
 * and update_user with a new email (pgm_use_up_resets).  With pgmarket.actor set, another user's
 * token is unknown (and stays unused).
 *
 * change_password verifies the old password as authenticate does
 * (pgm_password_login, so a hash of any known format) under the account
 * row's lock, and answers false, changing nothing, when it does not match.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sodium.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pgm_change_password);
PG_FUNCTION_INFO_V1(pgm_create_password_reset);
PG_FUNCTION_INFO_V1(pgm_reset_password);

#define RESET_PREFIX			"pwr_"
#define RESET_PREFIX_LEN		4
#define RESET_PUBLIC_HEX		12	/* partition (4) and key version (8) */
#define RESET_SECRET_BYTES		32
#define RESET_SECRET_CHARS		43
#define RESET_TOKEN_LEN			(RESET_PREFIX_LEN + RESET_PUBLIC_HEX + 1 + RESET_SECRET_CHARS)
#define RESET_MAX_INPUT			256	/* longer is 22023, never hashed */
#define RESET_HASH_BYTES		32
#define RESET_SUBKEY_ID			1
#define RESET_MIN_TTL_USEC		USECS_PER_SEC
#define RESET_MAX_TTL_USEC		(7 * USECS_PER_DAY)

static SPIPlanPtr plan_lock_account;
static SPIPlanPtr plan_set_password;
static SPIPlanPtr plan_new_reset;
static SPIPlanPtr plan_use_reset;
static SPIPlanPtr plan_use_up;

static const PgmPlanDef reset_plans[] = {
	{&plan_lock_account,
		"SELECT password_hash FROM pgmarket.accounts"
		" WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
		1, {UUIDOID}},

	/* the new hash; every open token of the user is used up */
	{&plan_set_password,
		"WITH r AS (UPDATE pgmarket.password_resets SET used_at = now()"
		"            WHERE user_id = $1 AND used_at IS NULL)"
		"UPDATE pgmarket.accounts SET password_hash = $2 WHERE id = $1",
		2, {UUIDOID, TEXTOID}},

	/* a new token; the user's used and expired ones go */
	{&plan_new_reset,
		"WITH gone AS (DELETE FROM pgmarket.password_resets"
		"               WHERE user_id = $3"
		"                 AND (used_at IS NOT NULL OR expires_at <= now()))"
		"INSERT INTO pgmarket.password_resets"
		"       (reset_id, token_hash, hash_version, user_id, expires_at)"
		" VALUES ($5, $1, $2, $3, now() + $4)",
		5, {BYTEAOID, INT4OID, UUIDOID, INTERVALOID, UUIDOID}},

	/*
	 * Use a token up and set the password of its user, in one statement:
	 * one index probe of the hash whatever the token was.
	 */
	{&plan_use_reset,
		"WITH t AS ("
		"  UPDATE pgmarket.password_resets SET used_at = now()"
		"   WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()"
		"     AND (coalesce(current_setting('pgmarket.actor', true), '') = ''"
		"          OR user_id = pgmarket.current_actor())"
		"  RETURNING user_id),"
		" a AS ("
		"  UPDATE pgmarket.accounts a SET password_hash = $2"
		"    FROM t, pgmarket.balances b"
		"   WHERE a.id = t.user_id AND b.user_id = t.user_id AND b.active"
		"     AND a.deleted_at IS NULL"
		"  RETURNING a.id),"
		" others AS ("
		"  UPDATE pgmarket.password_resets r SET used_at = now()"
		"    FROM a WHERE r.user_id = a.id AND r.used_at IS NULL"
		"     AND r.token_hash <> $1)"
		"SELECT id FROM a",
		2, {BYTEAOID, TEXTOID}},

	/* every open token of the user used up (pgm_use_up_resets) */
	{&plan_use_up,
		"UPDATE pgmarket.password_resets SET used_at = now()"
		" WHERE user_id = $1 AND used_at IS NULL",
		1, {UUIDOID}},
};

#define prepare_plans() PGM_PREPARE_PLANS(reset_plans)

/*
 * For the account calls (accounts.c, profiles.c), with SPI connected: the
 * user's open reset tokens are used up, as a new password uses them up.
 * Called when the account's state or recovery address changes
 * (deactivate_user, reactivate_user, update_user with a new email): a
 * token mailed before that must not reset the password after it.
 */
void
pgm_use_up_resets(Datum user_id)
{
	prepare_plans();
	pgm_exec(plan_use_up, &user_id, NULL, false);
}

/*
 * The keyed hash of a token under a master key version (false when that
 * version is not loaded; PM010 when none is).
 */
static bool
token_hash(int32 version, const char *token, size_t len, unsigned char *out)
{
	return pgm_keyring_keyed_hash(version, PGM_KDF_CONTEXT_RESET, RESET_SUBKEY_ID,
								  token, len, out, RESET_HASH_BYTES);
}

static bool
is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/*
 * The master key version a token names, or 0 when it is not shaped like a
 * token at all.
 */
static int32
token_version(const char *token, size_t len)
{
	size_t		i;
	uint32		v = 0;

	if (len != RESET_TOKEN_LEN || memcmp(token, RESET_PREFIX, RESET_PREFIX_LEN) != 0 ||
		token[RESET_PREFIX_LEN + RESET_PUBLIC_HEX] != '_')
		return 0;
	for (i = RESET_PREFIX_LEN; i < RESET_PREFIX_LEN + RESET_PUBLIC_HEX; i++)
		if (!is_lower_hex(token[i]))
			return 0;
	for (i = RESET_PREFIX_LEN + RESET_PUBLIC_HEX + 1; i < len; i++)
		if (!((token[i] >= 'A' && token[i] <= 'Z') || (token[i] >= 'a' && token[i] <= 'z') ||
			  (token[i] >= '0' && token[i] <= '9') || token[i] == '-' || token[i] == '_'))
			return 0;
	for (i = RESET_PREFIX_LEN + 4; i < RESET_PREFIX_LEN + RESET_PUBLIC_HEX; i++)
		v = (v << 4) | (uint32) (token[i] <= '9' ? token[i] - '0' : token[i] - 'a' + 10);
	return (v >= 1 && v <= PG_INT32_MAX) ? (int32) v : 0;
}

/*
 * The ttl of a reset: required (22004), 1 second to 7 days (22023), in
 * days and time (months have no fixed length); its parts are bounded
 * before they are added, so that no value can wrap.
 */
static Interval *
reset_ttl_arg(FunctionCallInfo fcinfo, int argno)
{
	Interval   *ttl;
	int64		usec = 0;
	bool		ok;

	pgm_require_arg(fcinfo, argno, "ttl");
	ttl = PG_GETARG_INTERVAL_P(argno);
	ok = ttl->month == 0 && ttl->day >= -1000000 && ttl->day <= 1000000 &&
		ttl->time >= -1000000 * USECS_PER_DAY && ttl->time <= 1000000 * USECS_PER_DAY;
	if (ok)
	{
		usec = (int64) ttl->day * USECS_PER_DAY + ttl->time;
		ok = usec >= RESET_MIN_TTL_USEC && usec <= RESET_MAX_TTL_USEC;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl %s is out of range", pgm_interval_cstring(ttl)),
				 errdetail("A password reset lives from 1 second to 7 days.")));
	return ttl;
}

/* ----------------------------------------------------------------
 * change_password(user_id, old_password, new_password) RETURNS boolean
 * ----------------------------------------------------------------
 */
Datum
pgm_change_password(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	size_t		old_len;
	size_t		new_len;
	char	   *old_pw;
	char	   *new_pw;
	char	   *stored = NULL;
	char	   *rehash;
	char	   *hash;
	bool		ok;
	Datum		values[2];

	pgm_require_arg(fcinfo, 1, "old_password");
	pgm_require_arg(fcinfo, 2, "new_password");
	old_pw = pgm_password_arg(fcinfo, 1, &old_len);
	new_pw = pgm_password_arg(fcinfo, 2, &new_len);

	PGM_USER_BEGIN(user_id, reset_plans, false);
	pgm_exec(plan_lock_account, &user_id, NULL, false);
	if (SPI_processed != 1)
		pgm_raise_unknown_account(user_id);
	stored = pgm_col_text(0, 1);

	ok = pgm_password_login(old_pw, old_len, stored, true, &rehash);
	sodium_memzero(old_pw, old_len);
	if (ok)
	{
		hash = pgm_argon2id_hash(new_pw, new_len);
		values[0] = user_id;
		values[1] = CStringGetTextDatum(hash);
		pgm_exec(plan_set_password, values, NULL, false);
	}
	sodium_memzero(new_pw, new_len);
	pgm_spi_finish();
	PG_RETURN_BOOL(ok);
}

/* ----------------------------------------------------------------
 * create_password_reset(user_id, ttl DEFAULT '1 hour') RETURNS text
 * ----------------------------------------------------------------
 */
Datum
pgm_create_password_reset(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	Interval   *ttl = reset_ttl_arg(fcinfo, 1);
	int32		version = pgm_keyring_newest_version();	/* PM010 */
	char	   *token = pgm_secret_alloc(RESET_TOKEN_LEN + 1);
	unsigned char secret[RESET_SECRET_BYTES];
	unsigned char hash[RESET_HASH_BYTES];
	bytea	   *hash_datum;
	Datum		values[5];
	pg_uuid_t	reset_id;
	text	   *result;

	PGM_USER_BEGIN(user_id, reset_plans, false);

	snprintf(token, RESET_PREFIX_LEN + RESET_PUBLIC_HEX + 2, RESET_PREFIX "%04x%08x_",
			 pgm_user_partition(user_id), (unsigned int) version);
	randombytes_buf(secret, sizeof(secret));
	sodium_bin2base64(token + RESET_PREFIX_LEN + RESET_PUBLIC_HEX + 1,
					  RESET_SECRET_CHARS + 1, secret, sizeof(secret),
					  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(secret, sizeof(secret));
	Assert(strlen(token) == RESET_TOKEN_LEN);
	if (!token_hash(version, token, RESET_TOKEN_LEN, hash))
		elog(ERROR, "newest master key version is not loaded");

	hash_datum = palloc(VARHDRSZ + RESET_HASH_BYTES);
	SET_VARSIZE(hash_datum, VARHDRSZ + RESET_HASH_BYTES);
	memcpy(VARDATA(hash_datum), hash, RESET_HASH_BYTES);
	values[0] = PointerGetDatum(hash_datum);
	values[1] = Int32GetDatum(version);
	values[2] = user_id;
	values[3] = IntervalPGetDatum(ttl);
	pgm_random_uuid(&reset_id);
	values[4] = UUIDPGetDatum(&reset_id);
	pgm_exec(plan_new_reset, values, NULL, false);
	pgm_spi_finish();

	result = cstring_to_text_with_len(token, RESET_TOKEN_LEN);
	sodium_memzero(token, RESET_TOKEN_LEN + 1);
	PG_RETURN_TEXT_P(result);
}

/* ----------------------------------------------------------------
 * reset_password(token, new_password) RETURNS uuid
 * ----------------------------------------------------------------
 */
Datum
pgm_reset_password(PG_FUNCTION_ARGS)
{
	text	   *token;
	const char *raw;
	size_t		len;
	size_t		pw_len;
	char	   *new_pw;
	char	   *hash;
	int32		newest;
	int32		version;
	unsigned char digest[RESET_HASH_BYTES];
	bytea	   *hash_datum;
	Datum		values[2];
	pg_uuid_t  *user;

	pgm_require_arg(fcinfo, 0, "token");
	pgm_require_arg(fcinfo, 1, "new_password");
	token = PG_GETARG_TEXT_PP(0);
	raw = VARDATA_ANY(token);
	len = VARSIZE_ANY_EXHDR(token);
	if (len > RESET_MAX_INPUT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token of %zu bytes is longer than %d bytes", len,
						RESET_MAX_INPUT),
				 errdetail("A password reset token has %d characters.", RESET_TOKEN_LEN)));
	new_pw = pgm_password_arg(fcinfo, 1, &pw_len);
	newest = pgm_keyring_newest_version();	/* PM010 */

	/* the same work whatever the token: one hash, one Argon2id, one probe */
	version = token_version(raw, len);
	if (version == 0 || !token_hash(version, raw, len, digest))
		(void) token_hash(newest, raw, len, digest);
	hash = pgm_argon2id_hash(new_pw, pw_len);
	sodium_memzero(new_pw, pw_len);

	hash_datum = palloc(VARHDRSZ + RESET_HASH_BYTES);
	SET_VARSIZE(hash_datum, VARHDRSZ + RESET_HASH_BYTES);
	memcpy(VARDATA(hash_datum), digest, RESET_HASH_BYTES);
	values[0] = PointerGetDatum(hash_datum);
	values[1] = CStringGetTextDatum(hash);

	pgm_spi_connect();
	prepare_plans();
	pgm_exec(plan_use_reset, values, NULL, false);
	user = pgm_one_uuid(1);
	pgm_spi_finish();
	if (user == NULL)
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(user);
}
