/*-------------------------------------------------------------------------
 *
 * vault.c
 *	  The vault of provider keys that users bring: put_provider_key,
 *	  put_provider_key_sealed, vault_public_key, get_provider_key,
 *	  list_provider_keys, revoke_provider_key, rotate_master_key.
 *
 * The master key file and the keys derived from it are keyring.c's.
 *
 * Provider keys
 * -------------
 * A secret is encrypted with XChaCha20-Poly1305 (IETF) under the subkey of
 * the newest master key version, with a random 24-byte nonce.  The
 * associated data binds the ciphertext to its row: key id, user id, master
 * key version and provider.  A ciphertext copied to another row, user or
 * provider, or altered in any byte, fails authentication (PM011).
 *
 * Concurrency rules
 * -----------------
 * put_provider_key locks the user's balance row (the lock every ledger
 * operation takes first) before it revokes the user's active key for the
 * provider and inserts the new one, so concurrent puts of one user
 * serialize; the partial unique index provider_keys_one_active is the
 * backstop.  rotate_master_key locks the rows it re-encrypts (FOR UPDATE
 * SKIP LOCKED, then waiting when only locked rows are left, so that 0 means
 * done) and never takes a balance lock, so it cannot deadlock with puts.
 * A reader sees either the old or the new ciphertext of a row, both of
 * which decrypt while both key versions are listed in the file.
 *
 * Plaintext buffers are allocated with pgm_secret_alloc(): a memory context
 * reset callback wipes them even when an error unwinds the call, and the
 * code wipes them explicitly as soon as they are no longer needed.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sodium.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(pgm_put_provider_key);
PG_FUNCTION_INFO_V1(pgm_put_provider_key_sealed);
PG_FUNCTION_INFO_V1(pgm_vault_public_key);
PG_FUNCTION_INFO_V1(pgm_get_provider_key);
PG_FUNCTION_INFO_V1(pgm_list_provider_keys);
PG_FUNCTION_INFO_V1(pgm_revoke_provider_key);
PG_FUNCTION_INFO_V1(pgm_rotate_master_key);

#define VAULT_NONCE_BYTES		crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define VAULT_TAG_BYTES			crypto_aead_xchacha20poly1305_ietf_ABYTES
#define VAULT_SUBKEY_ID			1
#define PROVIDER_MAX_LEN		64
#define LABEL_MAX_LEN			200
#define SECRET_MAX_BYTES		16384
#define HINT_MIN_CHARS			8	/* shorter secrets get no hint */
#define HINT_CHARS				4
#define ROTATE_MAX_BATCH		100000

/* Domain separation of the associated data, should the format change. */
#define VAULT_AD_LABEL			"pgmarket provider key v1"

/* ----------------------------------------------------------------
 * Encryption of provider keys
 * ----------------------------------------------------------------
 */

#define VAULT_AD_MAX (sizeof(VAULT_AD_LABEL) + 2 * UUID_LEN + 4 + PROVIDER_MAX_LEN)

/*
 * Associated data: label, key id, user id, key version (big-endian), and the
 * provider last, the only part of variable length.
 */
static size_t
build_ad(unsigned char *ad, const pg_uuid_t *key_id, const pg_uuid_t *user_id,
		 int32 version, const char *provider)
{
	size_t		n = 0;
	size_t		plen = strlen(provider);
	uint32		v = (uint32) version;

	Assert(plen <= PROVIDER_MAX_LEN);
	memcpy(ad + n, VAULT_AD_LABEL, sizeof(VAULT_AD_LABEL));
	n += sizeof(VAULT_AD_LABEL);
	memcpy(ad + n, key_id->data, UUID_LEN);
	n += UUID_LEN;
	memcpy(ad + n, user_id->data, UUID_LEN);
	n += UUID_LEN;
	ad[n++] = (v >> 24) & 0xff;
	ad[n++] = (v >> 16) & 0xff;
	ad[n++] = (v >> 8) & 0xff;
	ad[n++] = v & 0xff;
	memcpy(ad + n, provider, plen);
	return n + plen;
}

/* Encrypt a secret under a key version; fills nonce and returns ciphertext. */
static bytea *
encrypt_secret(int32 version, const pg_uuid_t *key_id, const pg_uuid_t *user_id,
			   const char *provider, const char *secret, size_t len,
			   bytea **nonce_out)
{
	unsigned char subkey[PGM_SUBKEY_BYTES];
	unsigned char ad[VAULT_AD_MAX];
	size_t		adlen = build_ad(ad, key_id, user_id, version, provider);
	bytea	   *nonce = palloc(VARHDRSZ + VAULT_NONCE_BYTES);
	bytea	   *ct = palloc(VARHDRSZ + len + VAULT_TAG_BYTES);
	unsigned long long ctlen = 0;

	if (!pgm_keyring_subkey(version, PGM_KDF_CONTEXT_VAULT, VAULT_SUBKEY_ID, subkey))
		elog(ERROR, "master key version %d is not loaded", version);
	SET_VARSIZE(nonce, VARHDRSZ + VAULT_NONCE_BYTES);
	randombytes_buf(VARDATA(nonce), VAULT_NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt((unsigned char *) VARDATA(ct), &ctlen,
											   (const unsigned char *) secret, len,
											   ad, adlen, NULL,
											   (const unsigned char *) VARDATA(nonce),
											   subkey);
	sodium_memzero(subkey, sizeof(subkey));
	SET_VARSIZE(ct, VARHDRSZ + ctlen);
	*nonce_out = nonce;
	return ct;
}

/*
 * Decrypt a stored secret into a wiped-on-reset buffer, as a text datum.
 * Raises PM011 when the key version is not loaded or authentication fails.
 */
static text *
decrypt_secret(int32 version, const pg_uuid_t *key_id, const pg_uuid_t *user_id,
			   const char *provider, bytea *nonce, bytea *ct)
{
	unsigned char subkey[PGM_SUBKEY_BYTES];
	unsigned char ad[VAULT_AD_MAX];
	size_t		adlen = build_ad(ad, key_id, user_id, version, provider);
	size_t		ctlen = VARSIZE_ANY_EXHDR(ct);
	text	   *result;
	unsigned long long ptlen = 0;
	int			rc;
	char	   *id = pgm_uuid_cstring(UUIDPGetDatum((pg_uuid_t *) key_id));

	if (!pgm_keyring_subkey(version, PGM_KDF_CONTEXT_VAULT, VAULT_SUBKEY_ID, subkey))
		ereport(ERROR,
				(errcode(ERRCODE_PGM_DECRYPTION_FAILED),
				 errmsg("provider key %s cannot be decrypted: master key version %d is not loaded",
						id, version),
				 errhint("Add key version %d back to the master key file, then reload the configuration.",
						 version)));

	if (ctlen < VAULT_TAG_BYTES || VARSIZE_ANY_EXHDR(nonce) != VAULT_NONCE_BYTES)
	{
		sodium_memzero(subkey, sizeof(subkey));
		ereport(ERROR,
				(errcode(ERRCODE_PGM_DECRYPTION_FAILED),
				 errmsg("provider key %s failed authentication", id),
				 errdetail("Its stored ciphertext is truncated.")));
	}
	result = pgm_secret_alloc(VARHDRSZ + ctlen);
	rc = crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *) VARDATA(result),
													&ptlen, NULL,
													(const unsigned char *) VARDATA_ANY(ct),
													ctlen, ad, adlen,
													(const unsigned char *) VARDATA_ANY(nonce),
													subkey);
	sodium_memzero(subkey, sizeof(subkey));
	if (rc != 0)
	{
		sodium_memzero(VARDATA(result), ctlen);
		ereport(ERROR,
				(errcode(ERRCODE_PGM_DECRYPTION_FAILED),
				 errmsg("provider key %s failed authentication", id),
				 errdetail("The ciphertext was altered, moved to another row, or encrypted under another master key.")));
	}
	SET_VARSIZE(result, VARHDRSZ + ptlen);
	return result;
}

/* ----------------------------------------------------------------
 * Prepared statements
 * ----------------------------------------------------------------
 */
static SPIPlanPtr plan_revoke_active;
static SPIPlanPtr plan_insert;
static SPIPlanPtr plan_get;
static SPIPlanPtr plan_touch;
static SPIPlanPtr plan_log;
static SPIPlanPtr plan_list;
static SPIPlanPtr plan_revoke;
static SPIPlanPtr plan_rotate_skip;
static SPIPlanPtr plan_rotate_wait;
static SPIPlanPtr plan_rekey;

/* up to $2 rows not under key version $1, locked, in key order */
#define ROTATE_SQL \
	"SELECT key_id, user_id, provider, key_version, nonce, ciphertext" \
	"  FROM pgmarket.provider_keys WHERE key_version <> $1" \
	" ORDER BY key_id LIMIT $2 FOR UPDATE"

static const PgmPlanDef vault_plans[] = {
	{&plan_revoke_active,
		"UPDATE pgmarket.provider_keys SET revoked_at = now()"
		" WHERE user_id = $1 AND provider = $2 AND revoked_at IS NULL",
		2, {UUIDOID, TEXTOID}},

	{&plan_insert,
		"INSERT INTO pgmarket.provider_keys (key_id, user_id, provider, label,"
		"       hint, key_version, nonce, ciphertext)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
		8, {UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, BYTEAOID, BYTEAOID}},

	{&plan_get,
		"SELECT key_id, key_version, nonce, ciphertext,"
		"       last_used_at IS NULL OR last_used_at < now() - interval '1 minute'"
		"  FROM pgmarket.provider_keys"
		" WHERE user_id = $1 AND provider = $2 AND revoked_at IS NULL",
		2, {UUIDOID, TEXTOID}},

	{&plan_touch,
		"UPDATE pgmarket.provider_keys SET last_used_at = now()"
		" WHERE key_id = $1",
		1, {UUIDOID}},

	{&plan_log,
		"INSERT INTO pgmarket.key_access_log (key_id, user_id, provider,"
		"       session_role, db_role, actor)"
		" VALUES ($1, $2, $3, $4, $5, $6)",
		6, {UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}},

	{&plan_list,
		"SELECT key_id, provider, label, hint, key_version, created_at,"
		"       last_used_at, revoked_at"
		"  FROM pgmarket.provider_keys WHERE user_id = $1"
		" ORDER BY provider, created_at, key_id",
		1, {UUIDOID}},

	{&plan_revoke,
		"UPDATE pgmarket.provider_keys SET revoked_at = now()"
		" WHERE user_id = $1 AND key_id = $2 AND revoked_at IS NULL"
		" RETURNING key_id",
		2, {UUIDOID, UUIDOID}},

	/* the rows rotate_master_key locks: first those no one holds */
	{&plan_rotate_skip, ROTATE_SQL " SKIP LOCKED", 2, {INT4OID, INT4OID}},

	{&plan_rotate_wait, ROTATE_SQL, 2, {INT4OID, INT4OID}},

	{&plan_rekey,
		"UPDATE pgmarket.provider_keys"
		"   SET key_version = $2, nonce = $3, ciphertext = $4"
		" WHERE key_id = $1",
		4, {UUIDOID, INT4OID, BYTEAOID, BYTEAOID}},
};

#define prepare_plans() PGM_PREPARE_PLANS(vault_plans)

/* ----------------------------------------------------------------
 * Arguments
 * ----------------------------------------------------------------
 */

/* A provider name, lower-cased: 1 to 64 of [a-z0-9_.-], else 22023. */
static char *
provider_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *s;
	char	   *p;
	bool		ok;

	pgm_require_arg(fcinfo, argno, "provider");
	s = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	ok = s[0] != '\0' && strlen(s) <= PROVIDER_MAX_LEN;
	for (p = s; ok && *p; p++)
	{
		if (*p >= 'A' && *p <= 'Z')
			*p += 'a' - 'A';
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			  *p == '_' || *p == '.' || *p == '-'))
			ok = false;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("provider name \"%s\" is not valid",
						text_to_cstring(PG_GETARG_TEXT_PP(argno))),
				 errdetail("A provider name is 1 to 64 of the characters a-z, 0-9, underscore, dot and hyphen.")));
	return s;
}

/* Check a plaintext secret (never shown in a message). */
static void
check_secret(const char *secret, size_t len)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("secret must not be empty")));
	if (len > SECRET_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("secret is longer than %d bytes", SECRET_MAX_BYTES)));
}

/* The last 4 characters of a secret of at least 8 characters, else NULL. */
static text *
secret_hint(const char *secret, size_t len)
{
	int			nchars = pg_mbstrlen_with_len(secret, len);
	const char *p = secret;
	int			i;

	if (nchars < HINT_MIN_CHARS)
		return NULL;
	for (i = 0; i < nchars - HINT_CHARS; i++)
		p += pg_mblen(p);
	return cstring_to_text_with_len(p, len - (p - secret));
}

/* ----------------------------------------------------------------
 * put_provider_key and put_provider_key_sealed
 * ----------------------------------------------------------------
 */

/* Run a plan whose parameters are a user and a provider ($1, $2). */
static void
exec_user_provider(SPIPlanPtr plan, Datum user_id, const char *provider)
{
	Datum		values[2] = {user_id, CStringGetTextDatum(provider)};

	pgm_exec(plan, values, NULL, false);
}

/*
 * Store a secret for (user, provider) under the newest key version, revoking
 * the user's active key for that provider.  Returns the new key id.
 */
static pg_uuid_t *
put_secret(Datum user_id, const char *provider, text *label,
		   const char *secret, size_t len)
{
	pg_uuid_t  *key_id = palloc(sizeof(pg_uuid_t));
	int32		version;
	bytea	   *nonce;
	bytea	   *ct;
	text	   *hint;
	Datum		values[8];
	char		nulls[8];

	check_secret(secret, len);
	version = pgm_keyring_newest_version();
	pgm_random_uuid(key_id);
	hint = secret_hint(secret, len);
	ct = encrypt_secret(version, key_id, DatumGetUUIDP(user_id), provider,
						secret, len, &nonce);

	PGM_USER_BEGIN(user_id, vault_plans, true);
	exec_user_provider(plan_revoke_active, user_id, provider);

	memset(nulls, ' ', sizeof(nulls));
	values[0] = UUIDPGetDatum(key_id);
	values[1] = user_id;
	values[2] = CStringGetTextDatum(provider);
	pgm_bind_ptr(values, nulls, 3, label);
	pgm_bind_ptr(values, nulls, 4, hint);
	values[5] = Int32GetDatum(version);
	values[6] = PointerGetDatum(nonce);
	values[7] = PointerGetDatum(ct);
	pgm_exec(plan_insert, values, nulls, false);

	pgm_spi_finish();
	return key_id;
}

/*
 * The secret argument, detoasted; a detoasted copy is wiped when the call's
 * memory goes.
 */
static text *
secret_arg(FunctionCallInfo fcinfo, int argno)
{
	Datum		raw = PG_GETARG_DATUM(argno);
	text	   *t = PG_GETARG_TEXT_PP(argno);

	if ((Pointer) t != DatumGetPointer(raw))
		pgm_secret_register(t, VARSIZE_ANY(t));
	return t;
}

/*
 * put_provider_key(user_id uuid, provider text, secret text, label text)
 * RETURNS uuid
 */
Datum
pgm_put_provider_key(PG_FUNCTION_ARGS)
{
	char	   *provider;
	text	   *secret;
	text	   *label;

	pgm_user_arg(fcinfo, 0);
	provider = provider_arg(fcinfo, 1);
	pgm_require_arg(fcinfo, 2, "secret");
	secret = secret_arg(fcinfo, 2);
	label = pgm_optional_text(fcinfo, 3, "label", LABEL_MAX_LEN);

	PG_RETURN_UUID_P(put_secret(PG_GETARG_DATUM(0), provider, label,
								VARDATA_ANY(secret), VARSIZE_ANY_EXHDR(secret)));
}

Datum
pgm_vault_public_key(PG_FUNCTION_ARGS)
{
	unsigned char sk[crypto_box_SECRETKEYBYTES];
	bytea	   *pk = palloc(VARHDRSZ + crypto_box_PUBLICKEYBYTES);

	SET_VARSIZE(pk, VARHDRSZ + crypto_box_PUBLICKEYBYTES);
	if (!pgm_keyring_box_keypair(pgm_keyring_newest_version(), (unsigned char *) VARDATA(pk), sk))
		elog(ERROR, "newest master key version is not loaded");
	sodium_memzero(sk, sizeof(sk));
	PG_RETURN_BYTEA_P(pk);
}

/*
 * put_provider_key_sealed(user_id uuid, provider text, sealed bytea,
 * label text) RETURNS uuid: the secret arrives sealed to vault_public_key();
 * the key pairs of every listed version are tried, newest first, so a
 * client that fetched the public key before a rotation still gets through.
 */
Datum
pgm_put_provider_key_sealed(PG_FUNCTION_ARGS)
{
	char	   *provider;
	bytea	   *sealed;
	text	   *label;
	size_t		slen;
	size_t		len;
	char	   *secret;

	pgm_user_arg(fcinfo, 0);
	provider = provider_arg(fcinfo, 1);
	pgm_require_arg(fcinfo, 2, "sealed");
	sealed = PG_GETARG_BYTEA_PP(2);
	label = pgm_optional_text(fcinfo, 3, "label", LABEL_MAX_LEN);

	slen = VARSIZE_ANY_EXHDR(sealed);
	if (slen <= crypto_box_SEALBYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sealed secret of %zu bytes is too short", slen),
				 errdetail("A sealed secret is %d bytes longer than the secret, which must not be empty.",
						   (int) crypto_box_SEALBYTES)));
	len = slen - crypto_box_SEALBYTES;
	if (len > SECRET_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("secret is longer than %d bytes", SECRET_MAX_BYTES)));

	secret = pgm_secret_alloc(len + 1);
	if (!pgm_keyring_open_sealed((const unsigned char *) VARDATA_ANY(sealed),
								 slen, (unsigned char *) secret))
		ereport(ERROR,
				(errcode(ERRCODE_PGM_DECRYPTION_FAILED),
				 errmsg("sealed secret could not be opened"),
				 errdetail("It was not sealed to a public key of this vault, or it was altered."),
				 errhint("Seal the secret to the key that vault_public_key() returns.")));

	if (memchr(secret, '\0', len) != NULL ||
		!pg_verifymbstr(secret, len, true))
	{
		sodium_memzero(secret, len);
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("sealed secret is not valid text in the database encoding")));
	}

	PG_RETURN_UUID_P(put_secret(PG_GETARG_DATUM(0), provider, label, secret, len));
}


/*
 * The DECRYPT event of a read in the sealed audit trail, so that a read
 * cannot be deleted from key_access_log unseen: {"key_id", "user_id",
 * "provider"} against pgmarket.provider_keys.
 */
static void
record_decrypt(Datum key_id, Datum user_id, const char *provider)
{
	StringInfoData json;

	initStringInfo(&json);
	appendStringInfo(&json, "{\"key_id\": \"%s\", \"user_id\": \"%s\", \"provider\": ",
					 pgm_uuid_cstring(key_id), pgm_uuid_cstring(user_id));
	escape_json(&json, provider);
	appendStringInfoChar(&json, '}');
	pgm_audit_record_event("pgmarket.provider_keys", "DECRYPT",
						   DirectFunctionCall1(jsonb_in,
											   CStringGetDatum(json.data)));
}

/* ----------------------------------------------------------------
 * get_provider_key(user_id uuid, provider text) RETURNS text
 * ----------------------------------------------------------------
 */

Datum
pgm_get_provider_key(PG_FUNCTION_ARGS)
{
	Datum		user_id;
	char	   *provider;
	pg_uuid_t  *key_id;
	int32		version;
	bytea	   *nonce;
	bytea	   *ct;
	bool		touch;
	bool		isnull;
	text	   *secret;
	Datum		values[6];
	char		nulls[6];
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext old;

	pgm_user_arg(fcinfo, 0);
	user_id = PG_GETARG_DATUM(0);
	provider = provider_arg(fcinfo, 1);
	(void) pgm_keyring_newest_version();	/* PM010 before anything else */

	PGM_USER_BEGIN(user_id, vault_plans, false);
	exec_user_provider(plan_get, user_id, provider);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGM_KEY_NOT_FOUND),
				 errmsg("user %s has no active key for provider \"%s\"",
						pgm_uuid_cstring(user_id),
						provider)));
	old = MemoryContextSwitchTo(caller);
	key_id = pgm_col_uuid(0, 1);
	MemoryContextSwitchTo(old);
	version = DatumGetInt32(pgm_col(0, 2, &isnull));
	nonce = (bytea *) pgm_col_varlena(0, 3);
	ct = (bytea *) pgm_col_varlena(0, 4);
	touch = DatumGetBool(pgm_col(0, 5, &isnull));

	/* decrypt into the caller's memory, wiped when that is reset */
	old = MemoryContextSwitchTo(caller);
	secret = decrypt_secret(version, key_id, DatumGetUUIDP(user_id), provider,
							nonce, ct);
	MemoryContextSwitchTo(old);

	values[0] = UUIDPGetDatum(key_id);
	if (touch)
		pgm_exec(plan_touch, values, NULL, false);

	/* who read which key, when; never the secret */
	memset(nulls, ' ', sizeof(nulls));
	values[1] = user_id;
	values[2] = CStringGetTextDatum(provider);
	pgm_bind_cstring(values, nulls, 3, GetUserNameFromId(GetSessionUserId(), true));
	pgm_bind_cstring(values, nulls, 4, GetUserNameFromId(GetOuterUserId(), true));
	pgm_bind_cstring(values, nulls, 5, pgm_actor_set() ? pgm_actor : NULL);
	pgm_exec(plan_log, values, nulls, false);
	record_decrypt(values[0], user_id, provider);

	pgm_spi_finish();
	PG_RETURN_TEXT_P(secret);
}

/* ----------------------------------------------------------------
 * list_provider_keys(user_id uuid)
 * ----------------------------------------------------------------
 */
Datum
pgm_list_provider_keys(PG_FUNCTION_ARGS)
{
	pgm_user_arg(fcinfo, 0);
	return pgm_user_rows(fcinfo, vault_plans, lengthof(vault_plans),
						 &plan_list, 0);
}

/* ----------------------------------------------------------------
 * revoke_provider_key(user_id uuid, key_id uuid) RETURNS boolean
 *
 * true when the key was active and is now revoked; false when the user has
 * no such key or it was revoked already.
 * ----------------------------------------------------------------
 */
Datum
pgm_revoke_provider_key(PG_FUNCTION_ARGS)
{
	return pgm_user_revoke(fcinfo, vault_plans, lengthof(vault_plans), &plan_revoke);
}

/* ----------------------------------------------------------------
 * rotate_master_key(batch_size int) RETURNS bigint
 *
 * Re-encrypts up to batch_size rows (revoked ones included) that are not
 * under the newest key version, and returns how many; 0 means every row is
 * under the newest version.  Rows that another transaction has locked are
 * skipped, unless they are all that is left: then the call waits for them,
 * so that 0 is only returned when the work is done.
 * ----------------------------------------------------------------
 */
Datum
pgm_rotate_master_key(PG_FUNCTION_ARGS)
{
	int32		batch;
	int32		newest;
	Datum		values[4];
	uint64		n;
	uint64		i;
	MemoryContext rowcxt;

	batch = pgm_int32_arg(fcinfo, 0, "batch_size", 1, ROTATE_MAX_BATCH,
						  "A batch holds %d to %d keys.");
	newest = pgm_keyring_newest_version();

	pgm_spi_connect();
	prepare_plans();

	values[0] = Int32GetDatum(newest);
	values[1] = Int32GetDatum(batch);
	pgm_exec(plan_rotate_skip, values, NULL, false);
	if (SPI_processed == 0)
		pgm_exec(plan_rotate_wait, values, NULL, false);

	/* the batch stays in SPI_tuptable; each row's work in its own context */
	{
		SPITupleTable *batch_rows = SPI_tuptable;

		n = SPI_processed;
		rowcxt = AllocSetContextCreate(CurrentMemoryContext, "pgmarket rotate",
									   ALLOCSET_SMALL_SIZES);
		for (i = 0; i < n; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(rowcxt);
			HeapTuple	tup = batch_rows->vals[i];
			TupleDesc	desc = batch_rows->tupdesc;
			bool		isnull;
			pg_uuid_t  *key_id = DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull));
			pg_uuid_t  *user_id = DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull));
			char	   *provider = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
			int32		version = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
			bytea	   *nonce = DatumGetByteaPP(SPI_getbinval(tup, desc, 5, &isnull));
			bytea	   *ct = DatumGetByteaPP(SPI_getbinval(tup, desc, 6, &isnull));
			text	   *secret;
			bytea	   *new_nonce;
			bytea	   *new_ct;
			Datum		args[4];

			secret = decrypt_secret(version, key_id, user_id, provider, nonce, ct);
			new_ct = encrypt_secret(newest, key_id, user_id, provider,
									VARDATA(secret), VARSIZE(secret) - VARHDRSZ,
									&new_nonce);
			sodium_memzero(VARDATA(secret), VARSIZE(secret) - VARHDRSZ);

			args[0] = UUIDPGetDatum(key_id);
			args[1] = Int32GetDatum(newest);
			args[2] = PointerGetDatum(new_nonce);
			args[3] = PointerGetDatum(new_ct);
			pgm_exec(plan_rekey, args, NULL, false);
			if (SPI_processed != 1)
				elog(ERROR, "provider key row vanished during rotation");

			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);		/* wipes the plaintext too */
		}
		MemoryContextDelete(rowcxt);
	}

	pgm_spi_finish();
	PG_RETURN_INT64((int64) n);
}
