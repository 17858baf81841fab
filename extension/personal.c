/*-------------------------------------------------------------------------
 *
 * personal.c
 *	  Personal values in the audit trail, kept under a key per user, so
 *	  that erase_user can make them unreadable without touching a sealed
 *	  row: the audit trigger seals them (audit.c calls in here), the
 *	  auditor opens them (audit_open_value), erasure destroys the key
 *	  (pgm_personal_destroy, for erasure.c).
 *
 * Which columns
 * -------------
 * The audit trigger of one of pgmarket's own tables (a table in the
 * extension's schema; arguments of any other table are only column names to
 * redact) may take, besides the columns to redact, the arguments
 * "owner:COLUMN", the uuid column that names the row's user, and
 * "personal:COLUMN", a column whose value is personal to that user:
 * accounts' email and username, preferences' value, provider_keys' label
 * and hint, api_keys' name.  Wherever such a value would appear in audit_log (row_key,
 * old_values, new_values), the trail holds instead the JSON string
 *
 *	   personal:USER-UUID:BASE64
 *
 * where BASE64 (standard alphabet, padded) is a 24-byte nonce followed by
 * the XChaCha20-Poly1305 encryption of the value's JSON text, with the
 * user's 16 bytes and the column's name as associated data (so a value
 * cannot be moved to another user or column).  The chain seals that string
 * like any other value: destroying the key later changes no sealed byte.
 *
 * The keys
 * --------
 * Table personal_keys holds one row per user: a random 32-byte key, made
 * at the user's first personal value, and NULL once the user is erased
 * (then the trigger writes "[erased]" for that user's personal values).
 * The keys are not wrapped under the master key, so that accounts work
 * without a vault, as they always have; no pgmarket role may read the
 * table (only its owner, the superuser who created the extension), the
 * trigger and audit_open_value read it as that owner.  A key row is made
 * with INSERT ... ON CONFLICT, so two first writes of one user at once
 * agree on one key.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sodium.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(pgm_audit_open_value);

#define PERSONAL_PREFIX		"personal:"
#define PERSONAL_ERASED		"[erased]"
#define PERSONAL_KEY_BYTES	crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define PERSONAL_NONCE		crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define PERSONAL_TAG		crypto_aead_xchacha20poly1305_ietf_ABYTES
/* the JSON text of a value that is sealed: at most 1 MiB, else redacted */
#define PERSONAL_MAX_TEXT	(1024 * 1024)

/*
 * Run the SPI work of this file as the owner of personal_keys (the owner of
 * pgmarket's tables): the trigger fires for whoever changed the row.
 */
typedef struct OwnerSwitch
{
	Oid			saved_user;
	int			saved_sec;
} OwnerSwitch;

static void
as_owner_begin(Oid owner, OwnerSwitch *sw)
{
	GetUserIdAndSecContext(&sw->saved_user, &sw->saved_sec);
	SetUserIdAndSecContext(owner, sw->saved_sec | SECURITY_LOCAL_USERID_CHANGE);
}

static void
as_owner_end(OwnerSwitch *sw)
{
	SetUserIdAndSecContext(sw->saved_user, sw->saved_sec);
}

/* The owner of pgmarket's tables: the owner of personal_keys. */
static Oid
personal_keys_owner(void)
{
	static Oid	owner = InvalidOid;

	if (!OidIsValid(owner))
	{
		Oid			nsp = get_namespace_oid("pgmarket", false);
		Oid			rel = get_relname_relid("personal_keys", nsp);
		HeapTuple	tup;

		if (!OidIsValid(rel))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pgmarket's table personal_keys is missing"),
					 errhint("Run ALTER EXTENSION pgmarket UPDATE.")));
		tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for relation %u", rel);
		owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
		ReleaseSysCache(tup);
	}
	return owner;
}

static SPIPlanPtr plan_get_key;
static SPIPlanPtr plan_make_key;

/* personal_key's statements, prepared and run as the table's owner */
static const PgmPlanDef key_plans[] = {
	{&plan_get_key,
		"SELECT key FROM pgmarket.personal_keys WHERE user_id = $1",
		1, {UUIDOID}},

	{&plan_make_key,
		"INSERT INTO pgmarket.personal_keys (user_id, key) VALUES ($1, $2)"
		"  ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id"
		"  RETURNING key",
		2, {UUIDOID, BYTEAOID}},
};

/*
 * The key of a user into key[] (a buffer the caller wipes): true, or false
 * when the user has been erased.  With create, a user without a key gets a
 * new one.  Without create, false also when the user has none.
 */
static bool
personal_key(const pg_uuid_t *user, bool create, unsigned char *key)
{
	Datum		values[2];
	OwnerSwitch sw;
	bool		found = false;
	bool		have = false;
	unsigned char *fresh = NULL;

	as_owner_begin(personal_keys_owner(), &sw);
	pgm_spi_connect();
	PGM_PREPARE_PLANS(key_plans);
	values[0] = UUIDPGetDatum(user);
	pgm_exec(plan_get_key, values, NULL, false);
	found = SPI_processed == 1;
	if (!found && create)
	{
		bytea	   *b = palloc(VARHDRSZ + PERSONAL_KEY_BYTES);

		fresh = (unsigned char *) b;
		pgm_secret_register(b, VARHDRSZ + PERSONAL_KEY_BYTES);
		SET_VARSIZE(b, VARHDRSZ + PERSONAL_KEY_BYTES);
		randombytes_buf(VARDATA(b), PERSONAL_KEY_BYTES);
		values[1] = PointerGetDatum(b);
		pgm_exec(plan_make_key, values, NULL, false);
		found = SPI_processed == 1;
	}
	if (found)
	{
		bool		isnull;
		Datum		d = pgm_col(0, 1, &isnull);

		if (!isnull)
		{
			bytea	   *k = DatumGetByteaPP(d);

			if (VARSIZE_ANY_EXHDR(k) != PERSONAL_KEY_BYTES)
				elog(ERROR, "personal key of the wrong length");
			memcpy(key, VARDATA_ANY(k), PERSONAL_KEY_BYTES);
			have = true;
		}
	}
	if (fresh != NULL)
		sodium_memzero(fresh, VARHDRSZ + PERSONAL_KEY_BYTES);
	pgm_spi_finish();
	as_owner_end(&sw);
	return have;
}

/* The associated data of a sealed value: the user's bytes and the column */
static unsigned char *
personal_ad(const pg_uuid_t *user, const char *column, size_t *len)
{
	size_t		clen = strlen(column);
	unsigned char *ad = palloc(UUID_LEN + clen);

	memcpy(ad, user->data, UUID_LEN);
	memcpy(ad + UUID_LEN, column, clen);
	*len = UUID_LEN + clen;
	return ad;
}

/* ----------------------------------------------------------------
 * The trigger's side (audit.c)
 * ----------------------------------------------------------------
 */

/*
 * Read the personal arguments of an audit trigger on rel: *owner_attno (0:
 * none) and personal[i] for each column.  Only pgmarket's own tables take
 * them; false when rel has none.
 */
bool
pgm_personal_columns(Relation rel, Trigger *trigger, AttrNumber *owner_attno,
					 bool *personal)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		any = false;
	int			a;

	*owner_attno = 0;
	if (trigger->tgnargs == 0 ||
		strcmp(get_namespace_name(RelationGetNamespace(rel)), "pgmarket") != 0)
		return false;
	for (a = 0; a < trigger->tgnargs; a++)
	{
		const char *arg = trigger->tgargs[a];
		bool		is_owner = strncmp(arg, "owner:", 6) == 0;
		bool		is_personal = strncmp(arg, "personal:", 9) == 0;
		const char *col = is_owner ? arg + 6 : arg + 9;
		int			i;

		if (!is_owner && !is_personal)
			continue;
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (att->attisdropped || strcmp(NameStr(att->attname), col) != 0)
				continue;
			if (is_owner && att->atttypid == UUIDOID)
				*owner_attno = att->attnum;
			else if (is_personal)
			{
				personal[i] = true;
				any = true;
			}
		}
	}
	return any && *owner_attno != 0;
}

/*
 * The sealed form of one personal value of a row, in place of *v (the
 * value as the trail would show it), for the user that the row's owner
 * column names.  key_state caches that user's key for the calls of one row
 * version: 0 not yet read, 1 a key in key[], 2 erased (or no owner).
 */
void
pgm_personal_seal(Datum owner, bool owner_null, const char *column,
				  JsonbValue *v, int *key_state, unsigned char *key)
{
	const pg_uuid_t *user = DatumGetUUIDP(owner);
	Jsonb	   *jb;
	char	   *text;
	size_t		tlen;
	size_t		adlen;
	unsigned char *ad;
	unsigned char *blob;
	unsigned long long clen;
	size_t		b64len;
	char	   *b64;
	char	   *out;
	char	   *uuid;

	if (*key_state == 0)
		*key_state = (!owner_null && personal_key(user, true, key)) ? 1 : 2;
	if (*key_state == 2)
	{
		v->type = jbvString;
		v->val.string.val = PERSONAL_ERASED;
		v->val.string.len = strlen(PERSONAL_ERASED);
		return;
	}
	jb = JsonbValueToJsonb(v);
	text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	tlen = strlen(text);
	if (tlen > PERSONAL_MAX_TEXT)
	{
		v->type = jbvString;
		v->val.string.val = "[redacted]";
		v->val.string.len = strlen("[redacted]");
		return;
	}
	ad = personal_ad(user, column, &adlen);
	blob = palloc(PERSONAL_NONCE + tlen + PERSONAL_TAG);
	randombytes_buf(blob, PERSONAL_NONCE);
	crypto_aead_xchacha20poly1305_ietf_encrypt(blob + PERSONAL_NONCE, &clen,
											   (unsigned char *) text, tlen,
											   ad, adlen, NULL, blob, key);
	sodium_memzero(text, tlen);
	b64len = sodium_base64_encoded_len(PERSONAL_NONCE + clen,
									   sodium_base64_VARIANT_ORIGINAL);
	b64 = palloc(b64len);
	sodium_bin2base64(b64, b64len, blob, PERSONAL_NONCE + clen,
					  sodium_base64_VARIANT_ORIGINAL);
	uuid = DatumGetCString(DirectFunctionCall1(uuid_out, owner));
	out = psprintf("%s%s:%s", PERSONAL_PREFIX, uuid, b64);
	v->type = jbvString;
	v->val.string.val = out;
	v->val.string.len = strlen(out);
}

/* ----------------------------------------------------------------
 * Erasure (erasure.c)
 * ----------------------------------------------------------------
 */

/*
 * Destroy a user's key, with SPI connected: the row stays, its key NULL,
 * so that later personal values of the user are written as "[erased]".
 * True when the user was erased before (nothing changed).
 */
bool
pgm_personal_destroy(Datum user_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {UUIDOID};
	bool		isnull;

	if (plan == NULL)
		plan = pgm_prepare(
			"WITH old AS (SELECT key IS NULL AS erased FROM pgmarket.personal_keys"
			"              WHERE user_id = $1 FOR UPDATE)"
			"INSERT INTO pgmarket.personal_keys (user_id, key, erased_at)"
			"  VALUES ($1, NULL, now())"
			"  ON CONFLICT (user_id) DO UPDATE SET key = NULL,"
			"     erased_at = coalesce(personal_keys.erased_at, now())"
			"  RETURNING (SELECT erased FROM old)", 1, types);
	pgm_exec(plan, &user_id, NULL, false);
	return DatumGetBool(pgm_col(0, 1, &isnull)) && !isnull;
}

/*
 * Has the user been erased?  With SPI connected.
 */
bool
pgm_personal_erased(Datum user_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {UUIDOID};

	if (plan == NULL)
		plan = pgm_prepare(
			"SELECT 1 FROM pgmarket.personal_keys"
			" WHERE user_id = $1 AND key IS NULL", 1, types);
	pgm_exec(plan, &user_id, NULL, true);
	return SPI_processed == 1;
}

/* ----------------------------------------------------------------
 * audit_open_value(column text, value jsonb) RETURNS jsonb
 *
 * For the auditor: the value that a sealed personal value of the trail
 * stands for, given the column (the member name under which it appears).
 * A value that is not a sealed one comes back as it is; one whose user has
 * been erased is the string "[erased]".  audit_open (SQL) applies it to
 * each member of an object.  A value that only looks sealed and does not
 * open (text of the application's that starts with "personal:", a value
 * altered, or read under another column) comes back as it is too, so that
 * no row an application wrote can make the auditor's reading fail; an
 * alteration of a sealed row is verify_audit's to find.
 * ----------------------------------------------------------------
 */
Datum
pgm_audit_open_value(PG_FUNCTION_ARGS)
{
	char	   *column;
	Jsonb	   *value;
	JsonbValue	scalar;
	char	   *s;
	size_t		len;
	const char *p;
	Datum		owner;
	unsigned char *blob;
	size_t		bloblen;
	unsigned char *key;
	unsigned char *plain;
	unsigned long long plen;
	unsigned char *ad;
	size_t		adlen;
	bool		ok;
	Datum		result;

	pgm_require_arg(fcinfo, 0, "column");
	pgm_require_arg(fcinfo, 1, "value");
	column = text_to_cstring(PG_GETARG_TEXT_PP(0));
	value = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_SCALAR(value) ||
		!JsonbExtractScalar(&value->root, &scalar) ||
		scalar.type != jbvString ||
		scalar.val.string.len < strlen(PERSONAL_PREFIX) + 37 ||
		strncmp(scalar.val.string.val, PERSONAL_PREFIX,
				strlen(PERSONAL_PREFIX)) != 0)
		PG_RETURN_JSONB_P(value);

	s = pnstrdup(scalar.val.string.val, scalar.val.string.len);
	len = strlen(s);
	p = s + strlen(PERSONAL_PREFIX);
	if (strspn(p, "0123456789abcdef-") != 36 || p[36] != ':' || p[8] != '-' ||
		p[13] != '-' || p[18] != '-' || p[23] != '-')
		PG_RETURN_JSONB_P(value);	/* not one that pgmarket wrote */
	owner = DirectFunctionCall1(uuid_in, CStringGetDatum(pnstrdup(p, 36)));
	p += 37;
	bloblen = len;
	blob = palloc(bloblen);
	if (sodium_base642bin(blob, bloblen, p, strlen(p), NULL, &bloblen, NULL,
						  sodium_base64_VARIANT_ORIGINAL) != 0 ||
		bloblen < PERSONAL_NONCE + PERSONAL_TAG)
		PG_RETURN_JSONB_P(value);	/* not one that pgmarket wrote */

	key = pgm_secret_alloc(PERSONAL_KEY_BYTES);
	if (!personal_key(DatumGetUUIDP(owner), false, key))
	{
		sodium_memzero(key, PERSONAL_KEY_BYTES);
		PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in,
											CStringGetDatum("\"" PERSONAL_ERASED "\"")));
	}
	ad = personal_ad(DatumGetUUIDP(owner), column, &adlen);
	plain = pgm_secret_alloc(bloblen + 1);
	ok = crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL,
													blob + PERSONAL_NONCE,
													bloblen - PERSONAL_NONCE,
													ad, adlen, blob, key) == 0;
	sodium_memzero(key, PERSONAL_KEY_BYTES);
	if (!ok)
		PG_RETURN_JSONB_P(value);	/* altered, another column's, or not pgmarket's */
	plain[plen] = '\0';
	result = DirectFunctionCall1(jsonb_in, CStringGetDatum((char *) plain));
	sodium_memzero(plain, plen);
	PG_RETURN_DATUM(result);
}
