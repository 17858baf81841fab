/*-------------------------------------------------------------------------
 *
 * apikeys.c
 *	  Platform API keys, the keys the marketplace issues: create_api_key,
 *	  verify_api_key, charge_api_key, reserve_api_key, revoke_api_key,
 *	  list_api_keys, check_rate_limit (the limiter itself is ratelimit.c's).
 *
 * The raw key
 * -----------
 *	  sk_live_PPPPIIIIIIIIIIII_SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS
 *
 * "sk_live_" or "sk_test_"; PPPP, the owner's partition: four lower-case hex
 * digits of hashtext(user_id::text) & 65535, the hash PL/Proxy's
 * "RUN ON hashtext(user_id::text)" routes by, so a proxy with up to 65536
 * partitions finds the owner's node from the key alone (partition =
 * PPPP & (partitions - 1)) and learns nothing but that partition; IIII...,
 * 12 random hex digits that make the prefix unique; then "_" and 32 random
 * bytes in URL-safe base64 without padding (43 characters).  68 characters
 * in all.  The prefix (the first 24 characters) is stored for display and
 * lookup; the whole key only as a BLAKE2b-256 hash keyed with a subkey of the
 * master key (version stored with the hash, so rotating the master key does
 * not invalidate issued keys; a version removed from the key file does).
 *
 * Concurrency rules
 * -----------------
 * charge_api_key and reserve_api_key first ask the key's rate limiter
 * (ratelimit.c), which refuses with PM005 before anything is locked or
 * written, or counts the call (in shared memory, or under the key's row of
 * rate_counters, taken before and never after the user's lock).  Then they
 * lock the owner's balance row first (the
 * lock every ledger operation takes first, see ledger.c), then the key's
 * row FOR NO KEY UPDATE, then the key's spend row (api_key_spend); nothing
 * locks them in another order (revoke and the last_used_at stamp of
 * verify_api_key lock the key row only).  Under the key row lock the call
 * re-reads revoked_at and expires_at, so a revocation committed before the
 * lock takes effect at once, and under the spend row's it checks and
 * updates the key's spend in its period, so concurrent charges through one
 * key never take it past its limit.  Only these calls write a spend row,
 * each under the key row's lock, so a charge updates the spend row without
 * locking it first (count_spend).  The key's row itself is not written by
 * a charge (its last_used_at at most once a minute), so a charge adds no
 * row to the audit trail.  The charge itself is the ledger's (reserve for
 * reserve_api_key) in the same transaction.
 *
 * A key's row carries its user's active flag (user_active), a copy of
 * balances.active that verify_api_key reads so that it reads one row:
 * create_api_key inserts a key under the user's balance row lock (taken as
 * a charge takes it), and the calls that change the flag (deactivate_user,
 * reactivate_user, erase_user) write it into the user's key rows under the
 * same lock, with a snapshot taken after the lock was granted
 * (pgm_api_keys_follow_user).  So no key is created for a user being
 * deactivated, and none created just before escapes the deactivation.
 *
 * A replay of an idempotency key returns the first result even when the
 * key's limit is now reached, and does not count twice.  A reservation
 * counts in full against the key's limit when it is made (settling for less
 * or releasing does not give the difference back); refunds do not either.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sodium.h>

#include "access/nbtree.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pgm_create_api_key);
PG_FUNCTION_INFO_V1(pgm_verify_api_key);
PG_FUNCTION_INFO_V1(pgm_charge_api_key);
PG_FUNCTION_INFO_V1(pgm_reserve_api_key);
PG_FUNCTION_INFO_V1(pgm_revoke_api_key);
PG_FUNCTION_INFO_V1(pgm_list_api_keys);
PG_FUNCTION_INFO_V1(pgm_check_rate_limit);

#define APIKEY_ENV_LEN			8	/* "sk_live_" */
#define APIKEY_PUBLIC_HEX		16	/* partition (4) and random id (12) */
#define APIKEY_PREFIX_LEN		(APIKEY_ENV_LEN + APIKEY_PUBLIC_HEX)
#define APIKEY_SECRET_BYTES		32
#define APIKEY_SECRET_CHARS		43	/* base64url, no padding */
#define APIKEY_LEN				(APIKEY_PREFIX_LEN + 1 + APIKEY_SECRET_CHARS)
#define APIKEY_HASH_BYTES		32
#define APIKEY_SUBKEY_ID		1
#define APIKEY_NAME_MAX			200

/* ----------------------------------------------------------------
 * Prepared statements
 * ----------------------------------------------------------------
 */
static SPIPlanPtr plan_insert;
static SPIPlanPtr plan_stamp;
static SPIPlanPtr plan_lock_key;
static SPIPlanPtr plan_spend;
static SPIPlanPtr plan_revoke;
static SPIPlanPtr plan_follow;
static SPIPlanPtr plan_list;

/* The start of the current spend period of a key (NULL: lifetime). */
#define PERIOD_START_SQL \
	"CASE k.spend_period" \
	" WHEN 'day' THEN date_trunc('day', now(), 'UTC')" \
	" WHEN 'month' THEN date_trunc('month', now(), 'UTC') END"

/* What a key has spent in the current period (its spend row as s, its start as start). */
#define PERIOD_SPENT_SQL(start) \
	"CASE WHEN s.period_start IS NOT DISTINCT FROM " start \
	" THEN s.period_spent ELSE 0 END"

/* The statements that do not read the spend table (0.8.0's schema has them). */
static const PgmPlanDef apikey_plans[] = {
	/* last_used_at to the minute: at most one write per key and minute */
	{&plan_stamp,
		"UPDATE pgmarket.api_keys SET last_used_at = date_trunc('minute', now(), 'UTC')"
		" WHERE key_id = $1 AND (last_used_at IS NULL OR"
		"       last_used_at < date_trunc('minute', now(), 'UTC'))",
		1, {UUIDOID}},

	{&plan_revoke,
		"UPDATE pgmarket.api_keys SET revoked_at = now()"
		" WHERE user_id = $1 AND key_id = $2 AND revoked_at IS NULL"
		" RETURNING key_id",
		2, {UUIDOID, UUIDOID}},
};

/* pgm_api_keys_follow_user's (the keys' user_active is 0.11.0's) */
static const PgmPlanDef follow_plans[] = {
	{&plan_follow,
		"UPDATE pgmarket.api_keys SET user_active = $2"
		" WHERE user_id = $1 AND user_active IS DISTINCT FROM $2",
		2, {UUIDOID, BOOLOID}},
};

/*
 * The statements over a key's spend, written once for two schemas: 0.9.0's
 * spend rows (pgmarket.api_key_spend, s) and, until ALTER EXTENSION
 * UPDATE, 0.8.0's counters in the key's own row (s is then a LATERAL view
 * of k's columns).  A key's row is locked FOR NO KEY UPDATE before its
 * spend row, by every charge and reservation: a revocation (which updates
 * the key's row) waits for them and they wait for it, and under the lock
 * they re-read revoked_at and expires_at.
 */
#define KEY_INSERT_SQL \
	"INSERT INTO pgmarket.api_keys (key_id, user_id, name, prefix, hash," \
	"       hash_version, scopes, rate_limit_tier, environment," \
	"       expires_at, spend_limit, spend_period)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)" \
	" ON CONFLICT (prefix) DO NOTHING RETURNING key_id"
#define KEY_INSERT_TYPES \
	12, {UUIDOID, UUIDOID, TEXTOID, TEXTOID, BYTEAOID, INT4OID, TEXTARRAYOID, \
	TEXTOID, TEXTOID, TIMESTAMPTZOID, INT8OID, TEXTOID}

/* under the key's row lock: still usable? what has it spent? */
#define LOCK_KEY_SQL(from, locked) \
	"SELECT k.revoked_at IS NULL AND" \
	"       (k.expires_at IS NULL OR k.expires_at > now())," \
	"       k.spend_limit, k.spend_period, p.start," \
	"       " PERIOD_SPENT_SQL("p.start") ", s.total_spent" \
	"  FROM " from "," \
	"       LATERAL (SELECT " PERIOD_START_SQL " AS start) p" \
	" WHERE k.key_id = $1 FOR NO KEY UPDATE OF " locked

#define SPEND_SQL(table) \
	"UPDATE " table \
	"   SET period_start = $2, period_spent = $3, total_spent = $4" \
	" WHERE key_id = $1"

#define LIST_SQL(from) \
	"SELECT k.key_id, k.name, k.prefix, k.scopes, k.rate_limit_tier," \
	"       k.environment, k.spend_limit, k.spend_period," \
	"       coalesce(" PERIOD_SPENT_SQL("(" PERIOD_START_SQL ")") ", 0)," \
	"       coalesce(s.total_spent, 0), k.created_at, k.expires_at," \
	"       k.last_used_at, k.revoked_at" \
	"  FROM " from \
	" WHERE k.user_id = $1" \
	" ORDER BY k.created_at, k.key_id"

#define SPEND_ROWS \
	"pgmarket.api_keys k JOIN pgmarket.api_key_spend s ON s.key_id = k.key_id"
#define SPEND_COLUMNS \
	"pgmarket.api_keys k CROSS JOIN LATERAL" \
	" (SELECT k.period_start, k.period_spent, k.total_spent) s"

static SPIPlanPtr plan_insert_v8;
static SPIPlanPtr plan_lock_key_v8;
static SPIPlanPtr plan_spend_v8;
static SPIPlanPtr plan_list_v8;

static const PgmPlanDef spend_plans[] = {
	{&plan_insert,
		"WITH k AS (" KEY_INSERT_SQL ")"
		" INSERT INTO pgmarket.api_key_spend (key_id) SELECT key_id FROM k"
		" RETURNING key_id",
		KEY_INSERT_TYPES},
	{&plan_lock_key, LOCK_KEY_SQL(SPEND_ROWS, "k, s"), 1, {UUIDOID}},
	{&plan_spend, SPEND_SQL("pgmarket.api_key_spend"),
		4, {UUIDOID, TIMESTAMPTZOID, INT8OID, INT8OID}},
	{&plan_list,
		LIST_SQL("pgmarket.api_keys k"
				 " LEFT JOIN pgmarket.api_key_spend s ON s.key_id = k.key_id"),
		1, {UUIDOID}},
};

static const PgmPlanDef spend_plans_v8[] = {
	{&plan_insert_v8, KEY_INSERT_SQL, KEY_INSERT_TYPES},
	{&plan_lock_key_v8, LOCK_KEY_SQL(SPEND_COLUMNS, "k"), 1, {UUIDOID}},
	{&plan_spend_v8, SPEND_SQL("pgmarket.api_keys"),
		4, {UUIDOID, TIMESTAMPTZOID, INT8OID, INT8OID}},
	{&plan_list_v8, LIST_SQL(SPEND_COLUMNS), 1, {UUIDOID}},
};

#define prepare_plans() PGM_PREPARE_PLANS(apikey_plans)

/*
 * Which of the two is this database's (pgmarket.api_key_spend is there)?
 * Looked up again after any relcache invalidation (ALTER EXTENSION UPDATE,
 * DROP EXTENSION), not on every call.  With 0.8.0's schema the spend goes
 * through SQL only (no direct write of the spend row).
 */
static bool spend_table_known = false;
static bool spend_table_present = false;

/* prepare_plans() and the spend statements of this schema */
static void
prepare_spend_plans(void)
{
	(void) pgm_schema_fact(&spend_table_known, &spend_table_present,
						   "api_key_spend", NULL);
	prepare_plans();
	if (spend_table_present)
		PGM_PREPARE_PLANS(spend_plans);
	else
		PGM_PREPARE_PLANS(spend_plans_v8);
}

/* This schema's plan of the two (prepare_spend_plans first). */
#define SPEND_PLAN(name) (spend_table_present ? name : name##_v8)

/*
 * A raw key is stored as its keyed hash under a master key version: the
 * keyring's pgm_keyring_keyed_hash with PGM_KDF_CONTEXT_APIKEY and
 * APIKEY_SUBKEY_ID, APIKEY_HASH_BYTES long (false: that version is absent).
 */
#define key_hash(version, raw, len, out) \
	pgm_keyring_keyed_hash((version), PGM_KDF_CONTEXT_APIKEY, APIKEY_SUBKEY_ID, \
						   (raw), (len), (out), APIKEY_HASH_BYTES)

static bool
is_base64url(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Does a text look like a raw key at all? */
static bool
well_formed(const char *raw, size_t len)
{
	size_t		i;

	if (len != APIKEY_LEN)
		return false;
	if (memcmp(raw, "sk_live_", APIKEY_ENV_LEN) != 0 &&
		memcmp(raw, "sk_test_", APIKEY_ENV_LEN) != 0)
		return false;
	for (i = APIKEY_ENV_LEN; i < APIKEY_PREFIX_LEN; i++)
		if (raw[i] == '\0' || strchr("0123456789abcdef", raw[i]) == NULL)
			return false;
	if (raw[APIKEY_PREFIX_LEN] != '_')
		return false;
	for (i = APIKEY_PREFIX_LEN + 1; i < APIKEY_LEN; i++)
		if (!is_base64url(raw[i]))
			return false;
	return true;
}

/* A key that verified, copied out of the rows read. */
typedef struct VerifiedKey
{
	pg_uuid_t	key_id;
	pg_uuid_t	user_id;
	Datum		scopes;			/* text[] in the caller's context */
	Datum		tier;			/* text in the caller's context */
	bool		stale_stamp;	/* last_used_at is older than this minute */
	char		prefix[APIKEY_PREFIX_LEN + 1];
} VerifiedKey;

/*
 * The row verify_key reads, by index and without SPI: the hot path of every
 * API call is one lookup of one key, and a kept plan costs more to start
 * than the index probe itself.  The key row carries its user's active flag
 * (user_active, kept in step by pgm_api_keys_follow_user), so the call
 * reads no other row.  Until ALTER EXTENSION UPDATE from 0.10.0, whose keys
 * lack the column, the flag comes from the user's balance row, a second
 * probe (key_by_prefix_v10, then pgm_user_active_read); so it does for a
 * key row version from before the update, in which the column is NULL (a
 * REPEATABLE READ snapshot older than the update sees those).
 */
enum
{
	KC_KEY_ID, KC_USER_ID, KC_SCOPES, KC_TIER, KC_HASH, KC_HASH_VERSION,
	KC_REVOKED_AT, KC_EXPIRES_AT, KC_LAST_USED_AT, KC_USER_ACTIVE
};

static PgmIndexRef key_by_prefix = {
	"api_keys", "api_keys_prefix", 1, {BTEqualStrategyNumber},
	10, {"key_id", "user_id", "scopes", "rate_limit_tier", "hash",
	"hash_version", "revoked_at", "expires_at", "last_used_at", "user_active"},
	{UUIDOID, UUIDOID, TEXTARRAYOID, TEXTOID, BYTEAOID, INT4OID,
	TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, BOOLOID}
};

static PgmIndexRef key_by_prefix_v10 = {
	"api_keys", "api_keys_prefix", 1, {BTEqualStrategyNumber},
	9, {"key_id", "user_id", "scopes", "rate_limit_tier", "hash",
	"hash_version", "revoked_at", "expires_at", "last_used_at"},
	{UUIDOID, UUIDOID, TEXTARRAYOID, TEXTOID, BYTEAOID, INT4OID,
	TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
};

/* Do this database's key rows carry user_active?  (as spend_table_present) */
static bool key_flag_known = false;
static bool key_flag_present = false;

#define keys_carry_user_flag() \
	pgm_schema_fact(&key_flag_known, &key_flag_present, "api_keys", "user_active")

/* A key's row by id, as a charge locks it (see the top of the file). */
enum
{
	KL_REVOKED_AT, KL_EXPIRES_AT, KL_SPEND_LIMIT, KL_SPEND_PERIOD
};

static PgmIndexRef key_by_id = {
	"api_keys", "api_keys_pkey", 1, {BTEqualStrategyNumber},
	4, {"revoked_at", "expires_at", "spend_limit", "spend_period"},
	{TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, TEXTOID}
};

/* A key's spend row (pgm_index_update_row writes these columns). */
enum
{
	KS_PERIOD_START, KS_PERIOD_SPENT, KS_TOTAL_SPENT
};

static PgmIndexRef spend_by_key = {
	"api_key_spend", "api_key_spend_pkey", 1, {BTEqualStrategyNumber},
	3, {"period_start", "period_spent", "total_spent"},
	{TIMESTAMPTZOID, INT8OID, INT8OID}
};

/*
 * The start of the minute of a time, in UTC (plan_stamp writes the same):
 * last_used_at is kept to the minute, and a key whose stamp is older than
 * the current minute is stamped again.
 */
static TimestampTz
minute_start(TimestampTz t)
{
	TimestampTz r = t % USECS_PER_MINUTE;

	return t - (r < 0 ? r + USECS_PER_MINUTE : r);
}

/*
 * Look a raw key up by its prefix and compare its keyed hash in constant
 * time; true when it is known, not revoked, not expired and its user is
 * active (the key row's user_active).  A malformed or unknown key costs one
 * hash too.
 *
 * The rows are read as the kept plan that this replaces read them: under a
 * new snapshot after a command counter increment (SPI's rule for a
 * statement that is not read-only), so that a call sees what the calls
 * before it in the same statement or transaction did.
 */
static bool
verify_key(text *api_key, VerifiedKey *out)
{
	const char *raw = VARDATA_ANY(api_key);
	size_t		len = VARSIZE_ANY_EXHDR(api_key);
	unsigned char expected[APIKEY_HASH_BYTES];
	unsigned char actual[APIKEY_HASH_BYTES];
	int32		version = pgm_keyring_newest_version();	/* PM010 */
	bool		found = false;
	bool		usable = false;
	bool		match;

	memset(expected, 0xa5, sizeof(expected));
	memset(actual, 0, sizeof(actual));
	if (well_formed(raw, len))
	{
		PgmIndexScan scan;
		Snapshot	snapshot;
		Datum		prefix;
		bool		isnull;
		bool		flag = keys_carry_user_flag();

		memcpy(out->prefix, raw, APIKEY_PREFIX_LEN);
		out->prefix[APIKEY_PREFIX_LEN] = '\0';
		prefix = PointerGetDatum(cstring_to_text_with_len(raw, APIKEY_PREFIX_LEN));

		CommandCounterIncrement();
		PushActiveSnapshot(GetTransactionSnapshot());
		snapshot = GetActiveSnapshot();
		if (pgm_index_find(&scan, flag ? &key_by_prefix : &key_by_prefix_v10,
						   snapshot, 1, &prefix))
		{
			TimestampTz now = GetCurrentTransactionStartTimestamp();
			bytea	   *h = DatumGetByteaPP(pgm_index_col(&scan, KC_HASH, &isnull));
			Datum		d;

			memcpy(&out->key_id, DatumGetUUIDP(pgm_index_col(&scan, KC_KEY_ID, &isnull)), UUID_LEN);
			memcpy(&out->user_id, DatumGetUUIDP(pgm_index_col(&scan, KC_USER_ID, &isnull)), UUID_LEN);
			version = DatumGetInt32(pgm_index_col(&scan, KC_HASH_VERSION, &isnull));
			(void) pgm_index_col(&scan, KC_REVOKED_AT, &isnull);
			usable = isnull;
			d = pgm_index_col(&scan, KC_EXPIRES_AT, &isnull);
			if (!isnull && DatumGetTimestampTz(d) <= now)
				usable = false;
			/* no flag: 0.10.0's schema, or a row version from before the update */
			isnull = true;
			if (flag)
				d = pgm_index_col(&scan, KC_USER_ACTIVE, &isnull);
			if (isnull ? !pgm_user_active_read(snapshot, UUIDPGetDatum(&out->user_id)) :
				!DatumGetBool(d))
				usable = false;
			d = pgm_index_col(&scan, KC_LAST_USED_AT, &isnull);
			out->stale_stamp = isnull || DatumGetTimestampTz(d) < minute_start(now);
			out->scopes = datumCopy(pgm_index_col(&scan, KC_SCOPES, &isnull), false, -1);
			out->tier = datumCopy(pgm_index_col(&scan, KC_TIER, &isnull), false, -1);
			found = VARSIZE_ANY_EXHDR(h) == APIKEY_HASH_BYTES;
			if (found)
				memcpy(expected, VARDATA_ANY(h), APIKEY_HASH_BYTES);
		}
		pgm_index_end(&scan);
		PopActiveSnapshot();
	}
	/* hash whatever came, so that every path costs about the same */
	if (!key_hash(version, raw, len, actual))
		found = false;
	match = sodium_memcmp(expected, actual, APIKEY_HASH_BYTES) == 0;
	return found && match && usable;
}

/*
 * Keep last_used_at to the minute: write it when verify_key found it older
 * than the current minute (plan_stamp writes only then, so two calls in one
 * minute write once).  Needs prepare_plans().
 */
static void
stamp_if_stale(const VerifiedKey *key)
{
	Datum		values[1] = {UUIDPGetDatum(&key->key_id)};

	if (key->stale_stamp)
		pgm_exec(plan_stamp, values, NULL, false);
}

/* Does a text[] hold a scope? */
static bool
has_scope(Datum scopes, const char *scope)
{
	ArrayType  *arr = DatumGetArrayTypeP(scopes);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i] && strcmp(TextDatumGetCString(elems[i]), scope) == 0)
			return true;
	return false;
}

static void
raise_invalid_key(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("invalid API key")));
}

/* ----------------------------------------------------------------
 * create_api_key(user_id, name, scopes, rate_limit_tier, expires_at,
 *				  environment, spend_limit, spend_period)
 *	 RETURNS TABLE(key_id uuid, api_key text)
 * ----------------------------------------------------------------
 */

static const char *const known_scopes[] = {"read", "write", "admin"};

/* 22023 unless value is one of the two an argument may take. */
static void
check_choice(const char *argname, const char *value, const char *a,
			 const char *b, const char *detail)
{
	if (strcmp(value, a) != 0 && strcmp(value, b) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" is not valid", argname, value),
				 errdetail("%s", detail)));
}

/* Check scopes and return them in canonical order without duplicates. */
static Datum
scopes_arg(FunctionCallInfo fcinfo, int argno)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	bool		want[lengthof(known_scopes)] = {false, false, false};
	Datum		out[lengthof(known_scopes)];
	int			nout = 0;

	pgm_require_arg(fcinfo, argno, "scopes");
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scopes must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scopes must not be empty"),
				 errdetail("The scopes are read, write and admin.")));
	for (i = 0; i < n; i++)
	{
		char	   *s;
		int			k;
		bool		known = false;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("scopes must not contain null")));
		s = TextDatumGetCString(elems[i]);
		for (k = 0; k < lengthof(known_scopes); k++)
			if (strcmp(s, known_scopes[k]) == 0)
				want[k] = known = true;
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("scope \"%s\" is not valid", s),
					 errdetail("The scopes are read, write and admin.")));
	}
	for (i = 0; i < lengthof(known_scopes); i++)
		if (want[i])
			out[nout++] = CStringGetTextDatum(known_scopes[i]);
	return PointerGetDatum(construct_array(out, nout, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/*
 * With pgmarket.actor set, a new key has the default tier (the declaration's
 * DEFAULT, APIKEY_DEFAULT_TIER) and no other (42501): a tier is a limit the
 * back end sets, and a user never chooses their own, as they never grant
 * themselves a role.
 */
#define APIKEY_DEFAULT_TIER "free"

static void
check_tier_for_actor(text *tier)
{
	char	   *name;

	if (pgm_actor == NULL || pgm_actor[0] == '\0')
		return;
	name = text_to_cstring(tier);
	if (strcmp(name, APIKEY_DEFAULT_TIER) == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("rate_limit_tier \"%s\" cannot be chosen while pgmarket.actor is set", name),
			 errdetail("A transaction that acts for a user creates keys of tier \"%s\" only.",
					   APIKEY_DEFAULT_TIER),
			 errhint("Choose other tiers from the back end, without pgmarket.actor.")));
}

/*
 * A new raw key of an environment and a partition into raw (APIKEY_LEN + 1
 * bytes of secret memory): a random id and a random secret.
 */
static void
mint_raw_key(char *raw, const char *env, int partition)
{
	unsigned char id[(APIKEY_PUBLIC_HEX - 4) / 2];
	char		idhex[APIKEY_PUBLIC_HEX - 4 + 1];
	unsigned char secret[APIKEY_SECRET_BYTES];

	randombytes_buf(id, sizeof(id));
	sodium_bin2hex(idhex, sizeof(idhex), id, sizeof(id));
	snprintf(raw, APIKEY_PREFIX_LEN + 2, "sk_%s_%04x%s_", env, partition, idhex);
	randombytes_buf(secret, sizeof(secret));
	sodium_bin2base64(raw + APIKEY_PREFIX_LEN + 1, APIKEY_SECRET_CHARS + 1,
					  secret, sizeof(secret),
					  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(secret, sizeof(secret));
	Assert(strlen(raw) == APIKEY_LEN);
}

/* The stored hash of a new raw key, under the newest version. */
static bytea *
raw_key_hash(int32 version, const char *raw)
{
	bytea	   *b = palloc(VARHDRSZ + APIKEY_HASH_BYTES);

	SET_VARSIZE(b, VARHDRSZ + APIKEY_HASH_BYTES);
	if (!key_hash(version, raw, APIKEY_LEN, (unsigned char *) VARDATA(b)))
		elog(ERROR, "newest master key version is not loaded");
	return b;
}

Datum
pgm_create_api_key(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		user_id;
	text	   *name;
	Datum		scopes;
	text	   *tier;
	char	   *env;
	bool		has_limit = !PG_ARGISNULL(6);
	int64		limit = 0;
	char	   *period = NULL;
	pg_uuid_t  *key_id = palloc(sizeof(pg_uuid_t));
	char	   *raw = pgm_secret_alloc(APIKEY_LEN + 1);
	bytea	   *hash_datum;
	int32		version;
	int			partition;
	int			attempt;
	bool		inserted = false;
	Datum		values[12];
	char		nulls[12];
	Datum		result[2];
	bool		result_nulls[2] = {false, false};

	pgm_user_arg(fcinfo, 0);
	user_id = PG_GETARG_DATUM(0);
	pgm_require_arg(fcinfo, 1, "name");
	name = pgm_optional_text(fcinfo, 1, "name", APIKEY_NAME_MAX);
	scopes = scopes_arg(fcinfo, 2);
	tier = pgm_tier_arg(fcinfo, 3, "rate_limit_tier");
	pgm_tier_must_exist(tier);
	check_tier_for_actor(tier);
	if (!PG_ARGISNULL(4) &&
		PG_GETARG_TIMESTAMPTZ(4) <= GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expires_at %s is not in the future",
						timestamptz_to_str(PG_GETARG_TIMESTAMPTZ(4)))));
	pgm_require_arg(fcinfo, 5, "environment");
	env = text_to_cstring(PG_GETARG_TEXT_PP(5));
	check_choice("environment", env, "live", "test",
				 "The environment is live or test.");
	if (has_limit)
		limit = pgm_numeric_to_micro(PG_GETARG_DATUM(6), "spend_limit");
	if (!PG_ARGISNULL(7))
	{
		period = text_to_cstring(PG_GETARG_TEXT_PP(7));
		check_choice("spend_period", period, "day", "month",
					 "The period is day or month, or null for the key's lifetime.");
		if (!has_limit)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("spend_period \"%s\" needs a spend_limit", period)));
	}

	version = pgm_keyring_newest_version();	/* PM010 */
	InitMaterializedSRF(fcinfo, 0);

	pgm_spi_connect();
	prepare_spend_plans();
	/* under the balance row's lock: see pgm_api_keys_follow_user */
	pgm_check_user(user_id, true);
	partition = pgm_user_partition(user_id);

	for (attempt = 0; attempt < 5 && !inserted; attempt++)
	{
		pgm_random_uuid(key_id);
		mint_raw_key(raw, env, partition);
		hash_datum = raw_key_hash(version, raw);

		memset(nulls, ' ', sizeof(nulls));
		values[0] = UUIDPGetDatum(key_id);
		values[1] = user_id;
		values[2] = PointerGetDatum(name);
		values[3] = PointerGetDatum(cstring_to_text_with_len(raw, APIKEY_PREFIX_LEN));
		values[4] = PointerGetDatum(hash_datum);
		values[5] = Int32GetDatum(version);
		values[6] = scopes;
		values[7] = PointerGetDatum(tier);
		values[8] = CStringGetTextDatum(env);
		values[9] = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
		values[10] = Int64GetDatum(limit);
		values[11] = period ? CStringGetTextDatum(period) : (Datum) 0;
		if (PG_ARGISNULL(4))
			nulls[9] = 'n';
		if (!has_limit)
			nulls[10] = 'n';
		if (period == NULL)
			nulls[11] = 'n';
		pgm_exec(SPEND_PLAN(plan_insert), values, nulls, false);
		inserted = SPI_processed == 1;
	}
	if (!inserted)
		elog(ERROR, "could not find a free API key prefix");
	pgm_spi_finish();

	result[0] = UUIDPGetDatum(key_id);
	result[1] = PointerGetDatum(cstring_to_text_with_len(raw, APIKEY_LEN));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, result, result_nulls);
	sodium_memzero(raw, APIKEY_LEN + 1);
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * verify_api_key(api_key text)
 *	 RETURNS TABLE(key_id uuid, user_id uuid, scopes text[], rate_limit_tier text)
 * ----------------------------------------------------------------
 */
Datum
pgm_verify_api_key(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	VerifiedKey key;
	bool		ok;

	pgm_require_arg(fcinfo, 0, "api_key");
	pgm_materialize(fcinfo);

	/* SPI only for the stamp, at most once per key and minute */
	ok = verify_key(PG_GETARG_TEXT_PP(0), &key);
	if (ok && key.stale_stamp && !XactReadOnly)
	{
		pgm_spi_connect_pinned();
		prepare_plans();
		stamp_if_stale(&key);
		pgm_spi_finish();
	}

	if (ok)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		pg_uuid_t  *kid = palloc(sizeof(pg_uuid_t));
		pg_uuid_t  *uid = palloc(sizeof(pg_uuid_t));

		memcpy(kid, &key.key_id, sizeof(pg_uuid_t));
		memcpy(uid, &key.user_id, sizeof(pg_uuid_t));
		values[0] = UUIDPGetDatum(kid);
		values[1] = UUIDPGetDatum(uid);
		values[2] = key.scopes;
		values[3] = key.tier;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * charge_api_key and reserve_api_key
 * ----------------------------------------------------------------
 */

/* What the key's row said under its lock. */
typedef struct KeySpend
{
	bool		has_limit;
	int64		limit;
	char	   *period;			/* "day", "month" or NULL */
	bool		has_start;
	TimestampTz start;
	int64		spent;			/* in the current period */
	int64		total_spent;	/* over the key's lifetime */
} KeySpend;

/*
 * Verify the key, check its write scope and admit the call under the key's
 * rate limit (a call of tokens).  Raises 28000, 42501 or PM005.
 */
static void
admit_key(text *api_key, int64 tokens, VerifiedKey *key)
{
	if (!verify_key(api_key, key))
		raise_invalid_key();
	pgm_check_actor(UUIDPGetDatum(&key->user_id));
	if (!has_scope(key->scopes, "write"))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("API key %s does not have the write scope", key->prefix)));

	/* the tier's limits before any lock: a refused call is cheap (PM005) */
	pgm_ratelimit_admit(&key->key_id, key->tier, tokens, key->prefix);
}

/* admit_key, then the user's lock as reserve_api_key takes it. */
static void
lock_user_for_spending(text *api_key, int64 amount, VerifiedKey *key)
{
	admit_key(api_key, 0, key);	/* a hold counts as a request, no tokens */

	/*
	 * The user's lock first, as every ledger operation takes it; a hot
	 * user's escrow slots before it when the balance row alone is short of
	 * the amount (escrow.c's order), so that the ledger brings their money
	 * back before it decides, and PM001 means the whole available is short.
	 */
	(void) pgm_escrow_gather_if_short(UUIDPGetDatum(&key->user_id), amount);
	if (!pgm_try_lock_user(UUIDPGetDatum(&key->user_id)))
		raise_invalid_key();	/* the user was deactivated meanwhile */
}

/*
 * Then lock the key's own row and read its spend.  Raises 28000 when it was
 * revoked or expired meanwhile.
 */
static void
lock_key_for_spending(const VerifiedKey *key, KeySpend *spend)
{
	Datum		values[1];
	bool		isnull;
	Datum		d;

	values[0] = UUIDPGetDatum(&key->key_id);
	pgm_exec(SPEND_PLAN(plan_lock_key), values, NULL, false);
	if (SPI_processed != 1 || !DatumGetBool(pgm_col(0, 1, &isnull)))
		raise_invalid_key();	/* revoked or expired meanwhile */

	d = pgm_col(0, 2, &isnull);
	spend->has_limit = !isnull;
	spend->limit = isnull ? 0 : DatumGetInt64(d);
	d = pgm_col(0, 3, &isnull);
	spend->period = isnull ? NULL : TextDatumGetCString(d);
	d = pgm_col(0, 4, &isnull);
	spend->has_start = !isnull;
	spend->start = isnull ? 0 : DatumGetTimestampTz(d);
	spend->spent = DatumGetInt64(pgm_col(0, 5, &isnull));
	spend->total_spent = DatumGetInt64(pgm_col(0, 6, &isnull));
}

/* PM001 unless amount fits in what is left of the key's limit. */
static void
check_limit(const VerifiedKey *key, const KeySpend *spend, int64 amount,
			const char *what)
{
	if (!spend->has_limit || amount <= spend->limit - spend->spent)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PGM_INSUFFICIENT_FUNDS),
			 errmsg("spend limit reached: %s of %s credits would take API key %s past its limit of %s credits%s%s",
					what, pgm_micro_to_cstring(amount), key->prefix,
					pgm_micro_to_cstring(spend->limit),
					spend->period ? " per " : "",
					spend->period ? spend->period : ""),
			 errdetail("The key has spent %s credits %s.",
					   pgm_micro_to_cstring(spend->spent),
					   spend->period == NULL ? "so far" :
					   strcmp(spend->period, "day") == 0 ? "today (UTC)" :
					   "this month (UTC)")));
}

/*
 * The key's counters with amount counted (under its rows' locks).  Both
 * counters stay below the limit of every amount and balance, 9e18
 * micro-credits: a charge that would take one past it is refused (22003),
 * as a balance would be, rather than wrapped or silently clamped.  With a
 * spend limit the period counter never gets there (check_limit came
 * first); the lifetime counter of a busy key, whose refunds do not lower
 * it, could.
 */
static void
next_spend(const VerifiedKey *key, const KeySpend *spend, int64 amount,
		   int64 *spent, int64 *total)
{
	if (pg_add_s64_overflow(spend->spent, amount, spent) ||
		pg_add_s64_overflow(spend->total_spent, amount, total) ||
		*spent >= PGM_MAX_MICRO || *total >= PGM_MAX_MICRO)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%s credits would take the spend of API key %s past its counter's limit",
						pgm_micro_to_cstring(amount), key->prefix),
				 errdetail("The key has spent %s credits in this period and %s credits in all; counters stay below 9000000000000 credits.",
						   pgm_micro_to_cstring(spend->spent),
						   pgm_micro_to_cstring(spend->total_spent))));
}

/* Count amount against the key's spend through SQL (plan_spend). */
static void
record_spend(const VerifiedKey *key, const KeySpend *spend, int64 amount)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int64		spent;
	int64		total;

	next_spend(key, spend, amount, &spent, &total);
	values[0] = UUIDPGetDatum(&key->key_id);
	values[1] = TimestampTzGetDatum(spend->start);
	values[2] = Int64GetDatum(spent);
	values[3] = Int64GetDatum(total);
	if (!spend->has_start)
		nulls[1] = 'n';
	pgm_exec(SPEND_PLAN(plan_spend), values, nulls, false);
}

/*
 * The start of a key's current spend period, as PERIOD_START_SQL computes
 * it: the current UTC day or month of the transaction's start, or none.
 */
static bool
period_start(const char *period, TimestampTz *start)
{
	if (period == NULL)
		return false;
	*start = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_trunc_zone,
													 CStringGetTextDatum(period),
													 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
													 CStringGetTextDatum("UTC")));
	return true;
}

/*
 * The spend row the scan is on into spend: its counters, the period's
 * zero when the row's period is not the current one.
 */
static void
read_spend_row(PgmIndexScan *scan, KeySpend *spend)
{
	TimestampTz row_start;
	bool		row_has_start;
	bool		isnull;
	Datum		d;

	d = pgm_index_col(scan, KS_PERIOD_START, &isnull);
	row_has_start = !isnull;
	row_start = isnull ? 0 : DatumGetTimestampTz(d);
	spend->spent = DatumGetInt64(pgm_index_col(scan, KS_PERIOD_SPENT, &isnull));
	spend->total_spent = DatumGetInt64(pgm_index_col(scan, KS_TOTAL_SPENT, &isnull));
	/* CASE WHEN period_start IS NOT DISTINCT FROM start ... ELSE 0 END */
	if (row_has_start != spend->has_start ||
		(row_has_start && row_start != spend->start))
		spend->spent = 0;
}

/*
 * Every key has its spend row from its creation on; one deleted by hand
 * leaves the key unusable for spending until it is put back.
 */
static void
raise_no_spend_row(const VerifiedKey *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("API key %s has no row in pgmarket.api_key_spend", key->prefix),
			 errhint("Insert its key_id into pgmarket.api_key_spend again (its counters start at zero).")));
}

/* Lock the spend row the scan is on, at its newest version, and read it. */
static void
lock_spend_row(const VerifiedKey *key, PgmIndexScan *scan, KeySpend *spend)
{
	if (!pgm_index_lock_row(scan, LockTupleNoKeyExclusive))
		raise_no_spend_row(key);
	read_spend_row(scan, spend);
}

/*
 * Check the key's limit against the spend the scan's row holds and write
 * the row with amount counted: updated in place when locked, else tried
 * (false when the version read is no longer the newest).
 */
static bool
spend_row_write(const VerifiedKey *key, const KeySpend *spend, int64 amount,
				const char *what, PgmIndexScan *scan, bool locked)
{
	Datum		values[3];
	bool		nulls[3] = {!spend->has_start, false, false};
	int64		spent;
	int64		total;

	check_limit(key, spend, amount, what);
	next_spend(key, spend, amount, &spent, &total);
	values[KS_PERIOD_START] = TimestampTzGetDatum(spend->start);
	values[KS_PERIOD_SPENT] = Int64GetDatum(spent);
	values[KS_TOTAL_SPENT] = Int64GetDatum(total);
	if (!locked)
		return pgm_index_try_update_row(scan, values, nulls);
	pgm_index_update_row(scan, values, nulls);
	return true;
}

/*
 * Count amount against the spend row of a key whose row this transaction
 * has locked, after checking its limit (PM001).  Only the calls that hold
 * the key's row lock write its spend row, so the version the snapshot
 * taken after that lock reads is the newest, and the row is updated as an
 * UPDATE tries it, without a lock of its own first (one WAL record fewer);
 * a version that is not (a hand edit committed meanwhile, or one in flight,
 * which the update waits for) is locked at its newest, read and checked
 * again.  Through SQL, after the lock, when the table has more than
 * pgmarket put on it (a trigger, a constraint).
 */
static void
count_spend(const VerifiedKey *key, KeySpend *spend, int64 amount,
			const char *what)
{
	PgmIndexScan scan;
	Datum		id = UUIDPGetDatum(&key->key_id);

	if (!pgm_index_find(&scan, &spend_by_key, GetActiveSnapshot(), 1, &id))
		raise_no_spend_row(key);
	if (!pgm_index_can_update(&scan, 1))
	{
		lock_spend_row(key, &scan, spend);
		check_limit(key, spend, amount, what);
		record_spend(key, spend, amount);
	}
	else
	{
		read_spend_row(&scan, spend);
		if (!spend_row_write(key, spend, amount, what, &scan, false))
		{
			lock_spend_row(key, &scan, spend);
			(void) spend_row_write(key, spend, amount, what, &scan, true);
		}
	}
	pgm_index_end(&scan);
}

/*
 * Lock the key's row FOR NO KEY UPDATE at its newest version: 28000 when it
 * was revoked or expired meanwhile; its limit and period into spend.
 */
static void
lock_key_row(const VerifiedKey *key, KeySpend *spend)
{
	PgmIndexScan scan;
	Datum		id = UUIDPGetDatum(&key->key_id);
	bool		usable;
	bool		isnull;
	Datum		d;

	if (!pgm_index_find(&scan, &key_by_id, GetActiveSnapshot(), 1, &id) ||
		!pgm_index_lock_row(&scan, LockTupleNoKeyExclusive))
		raise_invalid_key();
	(void) pgm_index_col(&scan, KL_REVOKED_AT, &isnull);
	usable = isnull;
	d = pgm_index_col(&scan, KL_EXPIRES_AT, &isnull);
	if (!isnull && DatumGetTimestampTz(d) <= GetCurrentTransactionStartTimestamp())
		usable = false;
	if (!usable)
		raise_invalid_key();	/* revoked or expired meanwhile */
	d = pgm_index_col(&scan, KL_SPEND_LIMIT, &isnull);
	spend->has_limit = !isnull;
	spend->limit = isnull ? 0 : DatumGetInt64(d);
	d = pgm_index_col(&scan, KL_SPEND_PERIOD, &isnull);
	spend->period = isnull ? NULL : TextDatumGetCString(d);
	pgm_index_end(&scan);
}

/*
 * After the ledger's charge, under the user's lock: lock the key's row and
 * check that it is still usable (28000: revoked or expired meanwhile), and
 * with count check its limit (PM001) and count amount on its spend row.
 * What plan_lock_key, check_limit and record_spend do through SQL, read and
 * written directly (index_read.c); the spend row through SQL when the
 * table has more than pgmarket put on it (a trigger, a constraint).
 *
 * The key's row lock is what a charge and a revocation meet on, whatever
 * the isolation level: revoke_api_key's UPDATE of the row waits for a
 * charge in flight, and a charge waits for a revocation in flight and then
 * sees it (40001 under REPEATABLE READ).  A charge that did not lock the
 * row and met the revocation on the spend row instead was tried: a
 * revocation under REPEATABLE READ then failed with 40001 whenever a
 * charge through the key had committed since its snapshot (a key in use
 * could not be revoked), and a transaction that charged and then revoked,
 * reserved or deactivated deadlocked with a concurrent revocation.
 */
static void
lock_and_count(const VerifiedKey *key, int64 amount, bool count,
			   const char *what)
{
	KeySpend	spend;

	if (!spend_table_present)
	{
		/* 0.8.0's schema: the counters in the key's row, through SQL */
		lock_key_for_spending(key, &spend);
		if (count)
		{
			check_limit(key, &spend, amount, what);
			record_spend(key, &spend, amount);
		}
		return;
	}

	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	lock_key_row(key, &spend);
	if (count)
	{
		spend.has_start = period_start(spend.period, &spend.start);
		count_spend(key, &spend, amount, what);
	}
	PopActiveSnapshot();
}

/*
 * The ledger's charge for a key's user, which takes the user's lock as
 * deduct_balance takes it (the queue lock and the balance row, or a hot
 * user's escrow slot).  The key verified a moment ago with its user
 * active; a user deactivated since then is the same invalid key (28000) as
 * one that was deactivated before, not the ledger's PM002 that would tell
 * why.
 */
static void
charge_as_key(const VerifiedKey *key, int64 amount, text *model_id,
			  int64 tokens, text *idem, PgmLedgerOutcome *out)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		pgm_ledger_charge(UUIDPGetDatum(&key->user_id), amount, model_id,
						  tokens, idem, out);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		if (e->sqlerrcode != ERRCODE_PGM_UNKNOWN_ACCOUNT)
			PG_RE_THROW();
		FlushErrorState();
		raise_invalid_key();
	}
	PG_END_TRY();
}

/*
 * reserve_api_key's way: the key and amount arguments, the key verified
 * with its write scope, its user and its own rows locked, and the spend
 * limit checked unless the idempotency key was used before (the ledger then
 * replays or conflicts).  Connects SPI; returns whether the call repeats an
 * applied one.
 */
static bool
begin_spend(FunctionCallInfo fcinfo, int idem_arg, const char *what,
			VerifiedKey *key, KeySpend *spend, int64 *amount)
{
	bool		repeat = false;

	pgm_require_arg(fcinfo, 0, "api_key");
	pgm_require_arg(fcinfo, 1, "amount");
	*amount = pgm_numeric_to_micro(PG_GETARG_DATUM(1), "amount");

	pgm_spi_connect();
	prepare_spend_plans();
	lock_user_for_spending(PG_GETARG_TEXT_PP(0), *amount, key);
	lock_key_for_spending(key, spend);
	if (!PG_ARGISNULL(idem_arg))
		repeat = pgm_ledger_hold_key_used(UUIDPGetDatum(&key->user_id),
										  PG_GETARG_TEXT_PP(idem_arg));
	if (!repeat)
		check_limit(key, spend, *amount, what);
	return repeat;
}

/*
 * charge_api_key(api_key text, amount numeric, model_id text,
 *				  tokens_used bigint, idempotency_key text) RETURNS ledger_result
 *
 * The key's checks, then the ledger's charge (through its C entry point,
 * with the arguments checked as deduct_balance checks them), then the key's
 * rows: locked in the order of the top of the file, the user's first.  A
 * charge that the key's limit refuses (PM001), or through a key revoked
 * meanwhile (28000), raises after the ledger wrote, and the error undoes
 * it with the rest of the statement.
 */
Datum
pgm_charge_api_key(PG_FUNCTION_ARGS)
{
	VerifiedKey key;
	int64		amount;
	text	   *model_id;
	int64		tokens;
	text	   *idem;
	PgmLedgerOutcome out;

	/* the arguments first: the limiter counts tokens_used */
	pgm_require_arg(fcinfo, 0, "api_key");
	pgm_require_arg(fcinfo, 1, "amount");
	amount = pgm_numeric_to_micro(PG_GETARG_DATUM(1), "amount");
	pgm_charge_args(fcinfo, 2, 3, &model_id, &tokens);

	pgm_spi_connect();
	prepare_spend_plans();
	admit_key(PG_GETARG_TEXT_PP(0), tokens, &key);
	idem = pgm_optional_text(fcinfo, 4, "idempotency_key", PGM_MAX_IDEM_KEY_LEN);
	charge_as_key(&key, amount, model_id, tokens, idem, &out);
	/* a replay returns the first result and does not count twice */
	lock_and_count(&key, amount, !out.replayed, "a charge");
	stamp_if_stale(&key);

	pgm_spi_finish();
	PG_RETURN_DATUM(pgm_ledger_result(fcinfo, UUIDPGetDatum(&key.user_id), &out));
}

/*
 * reserve_api_key(api_key text, amount numeric, ttl interval,
 *				   idempotency_key text) RETURNS bigint
 */
Datum
pgm_reserve_api_key(PG_FUNCTION_ARGS)
{
	VerifiedKey key;
	KeySpend	spend;
	int64		amount;
	Interval   *ttl;
	text	   *idem;
	int64		reservation_id;
	bool		repeat;

	repeat = begin_spend(fcinfo, 3, "a reservation", &key, &spend, &amount);
	ttl = pgm_ttl_arg(fcinfo, 2);
	idem = pgm_optional_text(fcinfo, 3, "idempotency_key", PGM_MAX_IDEM_KEY_LEN);
	reservation_id = pgm_ledger_reserve(UUIDPGetDatum(&key.user_id), amount,
										ttl, idem);
	if (!repeat)
		record_spend(&key, &spend, amount);
	stamp_if_stale(&key);

	pgm_spi_finish();
	PG_RETURN_INT64(reservation_id);
}

/*
 * Carry a user's active flag from the balance row into the user's API key
 * rows (api_keys.user_active, which verify_api_key reads instead of the
 * balance row), for the calls that change it: deactivate_user,
 * reactivate_user, erase_user, after their change.  SPI connected.
 *
 * Under the balance row's lock (taken here, if the caller has not taken it
 * already), the flag cannot change, and create_api_key inserts a key only
 * under the same lock; so the keys are written under a snapshot taken after
 * the lock was granted (pgm_exec_latest), which holds every key committed
 * before, also in REPEATABLE READ.  The row lock comes before the key rows,
 * the order of every charge through a key.  A database still on 0.10.0's
 * schema has no such column: nothing to do.
 */
void
pgm_api_keys_follow_user(Datum user_id)
{
	Datum		values[2];
	bool		active;

	if (!keys_carry_user_flag())
		return;
	if (!pgm_lock_user_row(user_id, &active))
		pgm_raise_unknown_account(user_id);
	PGM_PREPARE_PLANS(follow_plans);
	values[0] = user_id;
	values[1] = BoolGetDatum(active);
	pgm_exec_latest(plan_follow, values, NULL);
}

/* ----------------------------------------------------------------
 * revoke_api_key(user_id uuid, key_id uuid) RETURNS boolean
 * ----------------------------------------------------------------
 */
Datum
pgm_revoke_api_key(PG_FUNCTION_ARGS)
{
	return pgm_user_revoke(fcinfo, apikey_plans, lengthof(apikey_plans), &plan_revoke);
}

/* ----------------------------------------------------------------
 * list_api_keys(user_id uuid): every key of the user, never the hash,
 * with its spend in the current period and over its lifetime
 * ----------------------------------------------------------------
 */
Datum
pgm_list_api_keys(PG_FUNCTION_ARGS)
{
	pgm_user_arg(fcinfo, 0);
	/* which schema's plans (a catalog look-up after an invalidation) */
	pgm_spi_connect();
	prepare_spend_plans();
	pgm_spi_finish();
	/* spend_limit, period_spent and total_spent are money */
	if (!spend_table_present)
		return pgm_user_rows(fcinfo, spend_plans_v8, lengthof(spend_plans_v8),
							 &plan_list_v8, (1U << 6) | (1U << 8) | (1U << 9));
	return pgm_user_rows(fcinfo, spend_plans, lengthof(spend_plans),
						 &plan_list, (1U << 6) | (1U << 8) | (1U << 9));
}

/* ----------------------------------------------------------------
 * check_rate_limit(api_key text)
 *	 RETURNS TABLE(allowed boolean, retry_after_ms bigint,
 *				   remaining_requests bigint)
 *
 * What the key's tier would say to a call now, consuming nothing; 28000
 * for a key that does not verify, and 42501 for another user's key with
 * pgmarket.actor set, as charge_api_key.
 * ----------------------------------------------------------------
 */
Datum
pgm_check_rate_limit(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	VerifiedKey key;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	bool		allowed;
	int64		retry_ms;
	int64		remaining;
	bool		has_remaining;

	pgm_require_arg(fcinfo, 0, "api_key");
	pgm_materialize(fcinfo);
	if (!verify_key(PG_GETARG_TEXT_PP(0), &key))
		raise_invalid_key();
	/* the actor rule of charge_api_key: another user's key is 42501 */
	pgm_check_actor(UUIDPGetDatum(&key.user_id));
	pgm_ratelimit_peek(&key.key_id, key.tier, &allowed, &retry_ms,
					   &remaining, &has_remaining);
	values[0] = BoolGetDatum(allowed);
	values[1] = Int64GetDatum(retry_ms);
	values[2] = Int64GetDatum(remaining);
	nulls[2] = !has_remaining;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
