/*-------------------------------------------------------------------------
 *
 * importer.c
 *	  import_batch(section, records) applies a batch of an import's records
 *	  (users, ledger entries, provider keys or chat sessions) in one
 *	  statement; export_accounts() reads the accounts back with their
 *	  password hashes.  Both are pgmarket_admin's, for pgmarket import and
 *	  export.
 *
 * A record is applied by the C entry point of the single call it stands
 * for, under that call's rules: import_user (accounts.c), an entry of the
 * ledger with its own time (pgm_ledger_import_entry, ledger.c),
 * put_provider_key_sealed (vault.c), create_chat_session and
 * save_chat_message (chat.c).  Each record runs in a subtransaction of its
 * own: a record that its call refuses is rolled back alone and reported
 * with the server's message and SQLSTATE, and the batch goes on.  An error
 * that is not about one record (a bad batch, a cancel) fails the call as a
 * whole, and then nothing of the batch is applied.
 *
 * What a batch already finds in the database (a re-run) is read with one
 * statement per batch and counted as present without calling anything, so
 * that a second run of a document costs a lookup per batch.
 *
 * Concurrency rules
 * -----------------
 * The balance rows of every user a batch of entries or keys touches (but
 * for the records it finds present, which need nothing) are locked first,
 * after the lookup and before any record is applied, in uuid order (the order deduct_batch and
 * expire_reservations use, so that batches cannot deadlock with them or
 * with each other); each record's call then takes the same locks again,
 * which it already holds.  Users and chat sessions take the locks their
 * single calls take.
 *
 * Memory: a call works in a context of its own, deleted at its end, and
 * each record in a child context reset after it, so that a batch holds its
 * input, one record's work and the result rows.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "storage/bufmgr.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pgm_import_batch);
PG_FUNCTION_INFO_V1(pgm_export_accounts);

/* the single calls whose C this file applies a record with */
extern Datum pgm_import_user(PG_FUNCTION_ARGS);
extern Datum pgm_put_provider_key_sealed(PG_FUNCTION_ARGS);
extern Datum pgm_create_chat_session(PG_FUNCTION_ARGS);
extern Datum pgm_save_chat_message(PG_FUNCTION_ARGS);

#define IMPORT_MAX_BATCH		10000
#define IMPORT_MAX_MESSAGES		100000	/* of one session */

typedef enum
{
	SEC_USERS,
	SEC_ENTRIES,
	SEC_KEYS,
	SEC_CHATS
} Section;

typedef enum
{
	OUT_CREATED,
	OUT_PRESENT,
	OUT_REJECTED
} Outcome;

static const char *const outcome_names[] = {"created", "present", "rejected"};

/* What the database already holds for a record, found by the batch lookup. */
typedef struct Found
{
	char		key[NAMEDATALEN * 4];	/* hash key, see found_key() */
	char	   *kind;			/* entries: the entry's kind */
	int64		amount;			/* entries: its amount */
	char	   *email;			/* users; chats: the session's user, as text */
	char	   *username;		/* users */
} Found;

typedef struct Batch
{
	MemoryContext cxt;			/* the call's */
	MemoryContext rec_cxt;		/* one record's work, reset after it */
	Section		section;
	Jsonb	   *records;
	int			n;
	HTAB	   *found;			/* found_key -> Found */
	ReturnSetInfo *rsinfo;
} Batch;

/* ----------------------------------------------------------------
 * Reading a record
 * ----------------------------------------------------------------
 */

/* Member name of the object c, or NULL when absent or JSON null. */
static JsonbValue *
member(JsonbContainer *c, const char *name)
{
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) name;
	k.val.string.len = strlen(name);
	v = findJsonbValueFromContainer(c, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	return v;
}

/* A string member as a C string, or NULL; 22023 when not a string. */
static char *
member_str(JsonbContainer *c, const char *name)
{
	JsonbValue *v = member(c, name);

	if (v == NULL)
		return NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a string", name)));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* A required string member (22004 when absent). */
static char *
need_str(JsonbContainer *c, const char *name)
{
	char	   *s = member_str(c, name);

	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s is required", name)));
	return s;
}

/* A uuid member (required). */
static Datum
need_uuid(JsonbContainer *c, const char *name)
{
	return DirectFunctionCall1(uuid_in, CStringGetDatum(need_str(c, name)));
}

/* How far past the server's clock an imported time may be: 5 minutes. */
#define IMPORT_TIME_SKEW	(5 * 60 * USECS_PER_SEC)

/* A timestamptz member, or false when absent; 22023 when not finite or in the future. */
static bool
member_time(JsonbContainer *c, const char *name, Datum *out)
{
	char	   *s = member_str(c, name);

	if (s == NULL)
		return false;
	*out = DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	/* a time a record had: finite, and not later than now (give or take a clock's skew) */
	if (TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(*out)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a finite time, not \"%s\"", name, s)));
	if (DatumGetTimestampTz(*out) > GetCurrentTimestamp() + IMPORT_TIME_SKEW)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s %s is in the future", name, s)));
	return true;
}

/* A numeric member given as a JSON number or as its exact text, or false. */
static bool
member_numeric(JsonbContainer *c, const char *name, Datum *out)
{
	JsonbValue *v = member(c, name);

	if (v == NULL)
		return false;
	if (v->type == jbvNumeric)
		*out = NumericGetDatum(v->val.numeric);
	else if (v->type == jbvString)
		*out = DirectFunctionCall3(numeric_in,
								   CStringGetDatum(pnstrdup(v->val.string.val,
															v->val.string.len)),
								   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a number", name)));
	return true;
}

/* A whole-number member from 0 up, at most max (0 when absent). */
static int64
member_count(JsonbContainer *c, const char *name, int64 max)
{
	Datum		num;
	int64		v;

	if (!member_numeric(c, name, &num))
		return 0;
	v = DatumGetInt64(DirectFunctionCall1(numeric_int8, num));
	if (v < 0 || v > max ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, num,
										  DirectFunctionCall1(int8_numeric,
															  Int64GetDatum(v)))) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%s must be a whole number from 0 to " INT64_FORMAT, name, max)));
	return v;
}

/* The i-th record of the batch, which must be an object. */
static JsonbContainer *
record_at(Batch *b, int i)
{
	JsonbValue *v = getIthJsonbValueFromContainer(&b->records->root, i);

	if (v == NULL || v->type != jbvBinary ||
		!JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("record %d is not an object", i + 1)));
	return v->val.binary.data;
}

/* ----------------------------------------------------------------
 * Statistics that keep up with the import
 * ----------------------------------------------------------------
 */

/*
 * ANALYZE the tables a section writes when they have more than doubled since
 * their statistics were taken.  The single calls' cached plans were made
 * for the tables as they were (empty, in a fresh database); without this, a
 * lookup planned as a scan of a small table stays one while the import
 * fills it, and the import turns quadratic.  ANALYZE invalidates those
 * plans, and doubling keeps the number of ANALYZEs logarithmic.  The size
 * is the relation's blocks, which counts this transaction's own rows too
 * (a dry run is one transaction).
 */
static void
refresh_stats(Section section)
{
	static const char *const tables[][3] = {
		[SEC_USERS] = {"accounts", "balances", NULL},
		[SEC_ENTRIES] = {"ledger", "balances", NULL},
		[SEC_KEYS] = {"provider_keys", NULL, NULL},
		[SEC_CHATS] = {"chat_sessions", "chat_messages", NULL},
	};
	int			i;

	for (i = 0; tables[section][i]; i++)
	{
		Oid			relid = get_relname_relid(tables[section][i],
											  get_namespace_oid("pgmarket", false));
		Relation	rel;
		BlockNumber blocks;
		int32		relpages;

		if (!OidIsValid(relid))
			continue;
		rel = table_open(relid, AccessShareLock);
		blocks = RelationGetNumberOfBlocks(rel);
		relpages = rel->rd_rel->relpages;
		table_close(rel, AccessShareLock);
		if (blocks > (BlockNumber) (2 * Max(relpages, 0) + 16))
		{
			char	   *sql = psprintf("ANALYZE pgmarket.%s", tables[section][i]);

			if (SPI_execute(sql, false, 0) < 0)
				elog(ERROR, "could not analyze pgmarket.%s", tables[section][i]);
		}
	}
}

/* ----------------------------------------------------------------
 * What the database holds already: one lookup per batch
 * ----------------------------------------------------------------
 */

static void
found_key(char *buf, const char *a, const char *b)
{
	snprintf(buf, NAMEDATALEN * 4, "%s/%s", a, b ? b : "");
}

static Found *
found_get(Batch *b, const char *a, const char *c)
{
	char		key[NAMEDATALEN * 4];

	found_key(key, a, c);
	return hash_search(b->found, key, HASH_FIND, NULL);
}

static Found *
found_put(Batch *b, const char *a, const char *c)
{
	char		key[NAMEDATALEN * 4];
	bool		isnew;
	Found	   *f;

	found_key(key, a, c);
	f = hash_search(b->found, key, HASH_ENTER, &isnew);
	if (isnew)
	{
		f->kind = f->email = f->username = NULL;
		f->amount = 0;
	}
	return f;
}

/* uuid text of a record's member, canonical (lower case), or NULL if bad. */
static char *
uuid_text_noerror(JsonbContainer *c, const char *name)
{
	JsonbValue *v = member(c, name);
	char	   *s;
	char	   *p;

	if (v == NULL || v->type != jbvString || v->val.string.len != 36)
		return NULL;
	s = pnstrdup(v->val.string.val, v->val.string.len);
	for (p = s; *p; p++)
	{
		if (*p >= 'A' && *p <= 'F')
			*p = *p - 'A' + 'a';
		if ((p - s == 8 || p - s == 13 || p - s == 18 || p - s == 23) ?
			*p != '-' : !((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return NULL;
	}
	return s;
}

/* A text[] of n C strings (NULLs allowed) for a statement's argument. */
static Datum
text_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
	{
		nulls[i] = items[i] == NULL;
		d[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(items[i]);
	}
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, TEXTOID,
											  -1, false, TYPALIGN_INT));
}

/*
 * Reads what the batch's records already have in the database into
 * b->found, and locks the balance rows of the batch's users in uuid order
 * (entries and keys).  The uuids go as text and are cast by the statement;
 * a record whose uuid is malformed is left to its own call to refuse.
 */
static void
batch_lookup(Batch *b)
{
	char	  **ids = palloc0(sizeof(char *) * Max(b->n, 1));
	char	  **seconds = palloc0(sizeof(char *) * Max(b->n, 1));
	Oid			types[2] = {TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[2];
	SPIPlanPtr	plan;
	const char *sql;
	uint64		r;
	int			i,
				k = 0;

	for (i = 0; i < b->n; i++)
	{
		JsonbValue *rv = getIthJsonbValueFromContainer(&b->records->root, i);
		JsonbContainer *c;
		char	   *id;
		JsonbValue *v;

		if (rv == NULL || rv->type != jbvBinary ||
			!JsonContainerIsObject(rv->val.binary.data))
			continue;			/* refused by its own turn */
		c = rv->val.binary.data;
		id = uuid_text_noerror(c, b->section == SEC_USERS || b->section == SEC_CHATS ?
							   "id" : "user_id");
		if (id == NULL)
			continue;
		ids[k] = id;
		if (b->section == SEC_ENTRIES && (v = member(c, "key")) != NULL &&
			v->type == jbvString)
			seconds[k] = pnstrdup(v->val.string.val, v->val.string.len);
		else if (b->section == SEC_CHATS)
			seconds[k] = uuid_text_noerror(c, "user_id");
		k++;
	}
	if (k == 0)
		return;
	args[0] = text_array(ids, k);
	args[1] = text_array(seconds, k);

	switch (b->section)
	{
		case SEC_USERS:
			sql = "SELECT a.id::text, NULL, a.email, a.username, NULL::bigint"
				"  FROM pgmarket.accounts a WHERE a.id = ANY ($1::uuid[])";
			break;
		case SEC_ENTRIES:
			sql = "SELECT l.user_id::text, l.idempotency_key, l.kind, NULL, l.amount"
				"  FROM unnest($1::uuid[], $2::text[]) AS k (u, key)"
				"  JOIN pgmarket.ledger l"
				"    ON l.user_id = k.u AND l.idempotency_key = k.key";
			break;
		case SEC_KEYS:
			sql = "SELECT p.user_id::text, p.provider || '/' || p.hint, NULL, NULL,"
				"       NULL::bigint"
				"  FROM pgmarket.provider_keys p"
				" WHERE p.user_id = ANY ($1::uuid[]) AND p.revoked_at IS NULL"
				"   AND p.label = 'imported'";
			break;
		case SEC_CHATS:
		default:
			/* a session under its id, or one an import of 0.5.0 made */
			sql = "SELECT s.session_id::text, NULL, s.user_id::text, NULL, NULL::bigint"
				"  FROM pgmarket.chat_sessions s WHERE s.session_id = ANY ($1::uuid[])"
				" UNION ALL "
				"SELECT s.context ->> 'imported_from', NULL, s.user_id::text, NULL,"
				"       NULL::bigint"
				"  FROM pgmarket.chat_sessions s"
				" WHERE s.user_id = ANY ($2::uuid[]) AND s.deleted_at IS NULL"
				"   AND s.context ? 'imported_from'";
			break;
	}
	plan = SPI_prepare(sql, 2, types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed");
	pgm_exec(plan, args, NULL, true);
	SPI_freeplan(plan);
	MemoryContextSwitchTo(b->cxt);
	for (r = 0; r < SPI_processed; r++)
	{
		char	   *a = pgm_col_text(r, 1);
		char	   *second = pgm_col_text(r, 2);
		Found	   *f;
		bool		isnull;

		if (a == NULL)
			continue;
		for (i = 0; a[i]; i++)
			if (a[i] >= 'A' && a[i] <= 'F')
				a[i] = a[i] - 'A' + 'a';
		f = found_put(b, a, b->section == SEC_USERS || b->section == SEC_CHATS ?
					  NULL : second);
		if (b->section == SEC_ENTRIES)
		{
			f->kind = pgm_col_text(r, 3);
			f->amount = DatumGetInt64(pgm_col(r, 5, &isnull));
		}
		else if (b->section == SEC_USERS)
		{
			f->email = pgm_col_text(r, 3);
			f->username = pgm_col_text(r, 4);
		}
		else if (b->section == SEC_CHATS)
			f->email = pgm_col_text(r, 3);	/* the owner's uuid, as text */
	}
	MemoryContextSwitchTo(b->cxt);
}

/*
 * Locks the balance rows of the users whose records the lookup did not
 * find present (entries and keys), in uuid order, before any of them is
 * applied: the order deduct_batch takes, so that batches cannot deadlock.
 * A record found present needs no lock (what was found is committed), so a
 * re-run locks nothing and writes nothing.
 */
static void
batch_lock(Batch *b, const bool *quick)
{
	char	  **ids = palloc0(sizeof(char *) * Max(b->n, 1));
	Oid			types[1] = {TEXTARRAYOID};
	Datum		args[1];
	SPIPlanPtr	plan;
	int			i,
				k = 0;

	if (b->section != SEC_ENTRIES && b->section != SEC_KEYS)
		return;
	for (i = 0; i < b->n; i++)
	{
		JsonbValue *rv = getIthJsonbValueFromContainer(&b->records->root, i);
		char	   *id;

		if (quick[i] || rv == NULL || rv->type != jbvBinary ||
			!JsonContainerIsObject(rv->val.binary.data))
			continue;
		if ((id = uuid_text_noerror(rv->val.binary.data, "user_id")) != NULL)
			ids[k++] = id;
	}
	if (k == 0)
		return;
	args[0] = text_array(ids, k);
	plan = SPI_prepare("SELECT b.user_id FROM pgmarket.balances b"
					   " WHERE b.user_id = ANY ($1::uuid[])"
					   " ORDER BY b.user_id FOR UPDATE OF b", 1, types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed");
	pgm_exec(plan, args, NULL, false);
	SPI_freeplan(plan);
	MemoryContextSwitchTo(b->cxt);
}

/* ----------------------------------------------------------------
 * Applying one record
 * ----------------------------------------------------------------
 */

/* Calls a single call's C with the arguments given (NULL where isnull). */
static Datum
call_single(PGFunction fn, int nargs, const Datum *args, const bool *isnull,
			bool *result_null)
{
	LOCAL_FCINFO(fc, 9);
	Datum		result;
	int			i;

	Assert(nargs <= 9);
	InitFunctionCallInfoData(*fc, NULL, nargs, InvalidOid, NULL, NULL);
	for (i = 0; i < nargs; i++)
	{
		fc->args[i].value = args[i];
		fc->args[i].isnull = isnull[i];
	}
	result = fn(fc);
	if (result_null)
		*result_null = fc->isnull;
	return result;
}

static Datum
opt_text(char *s, bool *isnull)
{
	*isnull = s == NULL;
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* users: {"id", "email", "username", "password_hash"?, "created_at"?} */
static Outcome
apply_user(Batch *b, JsonbContainer *c)
{
	Datum		args[5];
	bool		nulls[5] = {false, false, false, false, false};
	char	   *id = uuid_text_noerror(c, "id");
	bool		existed = id && found_get(b, id, NULL) != NULL;

	args[0] = need_uuid(c, "id");
	args[1] = CStringGetTextDatum(need_str(c, "email"));
	args[2] = CStringGetTextDatum(need_str(c, "username"));
	args[3] = opt_text(member_str(c, "password_hash"), &nulls[3]);
	nulls[4] = !member_time(c, "created_at", &args[4]);
	call_single(pgm_import_user, 5, args, nulls, NULL);
	return existed ? OUT_PRESENT : OUT_CREATED;
}

/*
 * entries: {"user_id", "type": "deposit" | "charge", "amount" (its exact
 * text), "key", "model_id"?, "tokens"?, "note"?, "created_at"?}
 */
static Outcome
apply_entry(Batch *b, JsonbContainer *c)
{
	Datum		user_id = need_uuid(c, "user_id");
	char	   *type = need_str(c, "type");
	char	   *key = need_str(c, "key");
	char	   *model = member_str(c, "model_id");
	char	   *note = member_str(c, "note");
	Datum		num;
	Datum		ts = (Datum) 0;
	bool		has_ts;
	bool		charge;
	int64		amount;
	int64		tokens;
	Found	   *f;
	PgmLedgerOutcome out;

	if (strcmp(type, "deposit") == 0)
		charge = false;
	else if (strcmp(type, "charge") == 0)
		charge = true;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("type \"%s\" is neither deposit nor charge",
						pgm_shown_value(type, 40))));
	if (!member_numeric(c, "amount", &num))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("amount is required")));
	amount = pgm_numeric_to_micro(num, "amount");
	pgm_check_text("idempotency_key", key, PGM_MAX_IDEM_KEY_LEN);
	if (model)
		pgm_check_text("model_id", model, PGM_MAX_MODEL_ID_LEN);
	if (note)
		pgm_check_text("note", note, PGM_MAX_NOTE_LEN);
	tokens = member_count(c, "tokens", PG_INT64_MAX);
	has_ts = member_time(c, "created_at", &ts);

	/* found by the batch's lookup: a repeat, or a key used otherwise */
	f = found_get(b, pgm_uuid_cstring(user_id), key);
	if (f != NULL)
	{
		if (strcmp(f->kind, type) != 0 || f->amount != amount)
			ereport(ERROR,
					(errcode(ERRCODE_PGM_IDEMPOTENCY_CONFLICT),
					 errmsg("idempotency key \"%s\" was already used with other arguments",
							pgm_shown_value(key, 80)),
					 errdetail("It was used by a %s of %s credits for user %s.",
							   f->kind, pgm_micro_to_cstring(f->amount),
							   pgm_uuid_cstring(user_id))));
		return OUT_PRESENT;
	}
	pgm_ledger_import_entry(user_id, charge, amount,
							model ? cstring_to_text(model) : NULL, tokens,
							cstring_to_text(key),
							note ? cstring_to_text(note) : NULL, ts, has_ts, &out);
	return out.replayed ? OUT_PRESENT : OUT_CREATED;
}

/*
 * provider_keys: {"user_id", "provider", "sealed" (base64 of the secret
 * sealed to the vault's public key), "hint" (its last four characters),
 * "label"?}.  The user's imported key for the provider with that hint is
 * the same key.
 */
static Outcome
apply_key(Batch *b, JsonbContainer *c)
{
	Datum		args[4];
	bool		nulls[4] = {false, false, false, false};
	char	   *provider = need_str(c, "provider");
	char	   *hint = member_str(c, "hint");
	char	   *label = member_str(c, "label");
	char	   *uid;
	char		second[NAMEDATALEN * 2];

	args[0] = need_uuid(c, "user_id");
	uid = pgm_uuid_cstring(args[0]);
	if (hint)
	{
		snprintf(second, sizeof(second), "%.64s/%.8s", provider, hint);
		if (found_get(b, uid, second) != NULL)
			return OUT_PRESENT;
	}
	args[1] = CStringGetTextDatum(provider);
	args[2] = DirectFunctionCall2(binary_decode,
								  CStringGetTextDatum(need_str(c, "sealed")),
								  CStringGetTextDatum("base64"));
	args[3] = CStringGetTextDatum(label ? label : "imported");
	call_single(pgm_put_provider_key_sealed, 4, args, nulls, NULL);
	return OUT_CREATED;
}

/*
 * chats: {"id", "user_id", "model_id", "title"?, "agent_id"?, "messages":
 * [{"role", "content", "tokens"?, "cost"?, "tool_calls"?, "created_at"?}]}:
 * the session under its id, its messages with their costs recorded (not
 * charged) and their times kept.
 */
static Outcome
apply_chat(Batch *b, JsonbContainer *c)
{
	Datum		args[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};
	char	   *id = uuid_text_noerror(c, "id");
	char	   *uid = uuid_text_noerror(c, "user_id");
	Found	   *f = id ? found_get(b, id, NULL) : NULL;
	JsonbValue *msgs = member(c, "messages");
	Datum		user_id = need_uuid(c, "user_id");
	Datum		session_id = need_uuid(c, "id");
	int			nmsg = 0;
	int			i;
	Datum	   *ids = NULL;
	Datum	   *times = NULL;
	bool	   *tnull = NULL;

	if (f != NULL)
	{
		if (uid == NULL || f->email == NULL || strcmp(f->email, uid) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("chat session %s belongs to another user", id)));
		return OUT_PRESENT;
	}
	if (msgs != NULL &&
		(msgs->type != jbvBinary || !JsonContainerIsArray(msgs->val.binary.data)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("messages must be an array")));
	if (msgs)
		nmsg = JsonContainerSize(msgs->val.binary.data);
	if (nmsg > IMPORT_MAX_MESSAGES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a session of %d messages is more than %d", nmsg,
						IMPORT_MAX_MESSAGES)));

	args[0] = user_id;
	args[1] = CStringGetTextDatum(need_str(c, "model_id"));
	args[2] = opt_text(member_str(c, "title"), &nulls[2]);
	args[3] = opt_text(member_str(c, "agent_id"), &nulls[3]);
	args[4] = session_id;
	call_single(pgm_create_chat_session, 5, args, nulls, NULL);

	if (nmsg > 0)
	{
		ids = palloc(sizeof(Datum) * nmsg);
		times = palloc(sizeof(Datum) * nmsg);
		tnull = palloc(sizeof(bool) * nmsg);
	}
	for (i = 0; i < nmsg; i++)
	{
		JsonbValue *mv = getIthJsonbValueFromContainer(msgs->val.binary.data, i);
		JsonbContainer *m;
		JsonbValue *tools;
		Datum		cost;

		CHECK_FOR_INTERRUPTS();
		if (mv == NULL || mv->type != jbvBinary ||
			!JsonContainerIsObject(mv->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("message %d is not an object", i + 1)));
		m = mv->val.binary.data;
		memset(nulls, false, sizeof(nulls));
		args[0] = user_id;
		args[1] = session_id;
		args[2] = CStringGetTextDatum(need_str(m, "role"));
		args[3] = CStringGetTextDatum(need_str(m, "content"));
		args[4] = Int32GetDatum((int32) member_count(m, "tokens", PG_INT32_MAX));
		if (!member_numeric(m, "cost", &cost))
			cost = DirectFunctionCall1(int4_numeric, Int32GetDatum(0));
		args[5] = cost;
		tools = member(m, "tool_calls");
		nulls[6] = tools == NULL;
		args[6] = tools ? JsonbPGetDatum(JsonbValueToJsonb(tools)) : (Datum) 0;
		ids[i] = call_single(pgm_save_chat_message, 7, args, nulls, NULL);
		tnull[i] = !member_time(m, "created_at", &times[i]);
	}
	if (nmsg > 0)
	{
		/* each message at the time the document gives it */
		static SPIPlanPtr plan_times = NULL;
		Oid			types[3] = {UUIDOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID};
		int			dims[1] = {nmsg};
		int			lbs[1] = {1};
		Datum		targs[3];

		if (plan_times == NULL)
			plan_times = pgm_prepare(
				"UPDATE pgmarket.chat_messages m SET created_at = t.at"
				"  FROM unnest($2, $3) AS t (id, at)"
				" WHERE m.session_id = $1 AND m.message_id = t.id"
				"   AND t.at IS NOT NULL", 3, types);
		targs[0] = session_id;
		targs[1] = PointerGetDatum(construct_array(ids, nmsg, INT8OID, 8,
												   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		targs[2] = PointerGetDatum(construct_md_array(times, tnull, 1, dims, lbs,
													  TIMESTAMPTZOID, 8,
													  FLOAT8PASSBYVAL,
													  TYPALIGN_DOUBLE));
		pgm_exec(plan_times, targs, NULL, false);
	}
	return OUT_CREATED;
}

/* One row of the result: the record's ordinal, outcome and reasons. */
static void
put_outcome(Batch *b, int i, Outcome o, const char *reason)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, reason == NULL};

	values[0] = Int32GetDatum(i + 1);
	values[1] = CStringGetTextDatum(outcome_names[o]);
	if (reason)
	{
		Datum		r = CStringGetTextDatum(reason);

		values[2] = PointerGetDatum(construct_array(&r, 1, TEXTOID, -1, false,
													TYPALIGN_INT));
	}
	tuplestore_putvalues(b->rsinfo->setResult, b->rsinfo->setDesc, values, nulls);
}

/* A string member's text without raising (NULL when absent or not a string). */
static char *
str_noerror(JsonbContainer *c, const char *name)
{
	JsonbValue *v = member(c, name);

	return v && v->type == jbvString ? pnstrdup(v->val.string.val, v->val.string.len) : NULL;
}

/*
 * Is record c present already, as the batch's lookup found it, by a test
 * that raises nothing?  Then it needs no subtransaction and no call: this
 * is what makes a re-run of a document cheap.  false sends the record the
 * long way, which decides it (and finds it present too, when it is).
 */
static bool
quick_present(Batch *b, JsonbContainer *c)
{
	Found	   *f;
	char	   *id;

	switch (b->section)
	{
		case SEC_USERS:
			{
				char	   *email = str_noerror(c, "email");
				char	   *username = str_noerror(c, "username");

				id = uuid_text_noerror(c, "id");
				f = id ? found_get(b, id, NULL) : NULL;
				return f && email && username && f->email && f->username &&
					strcmp(f->email, email) == 0 && strcmp(f->username, username) == 0;
			}
		case SEC_ENTRIES:
			{
				char	   *key = str_noerror(c, "key");
				char	   *type = str_noerror(c, "type");
				char	   *amount = str_noerror(c, "amount");

				id = uuid_text_noerror(c, "user_id");
				f = id && key ? found_get(b, id, key) : NULL;
				return f && type && amount && strcmp(f->kind, type) == 0 &&
					strcmp(pgm_micro_to_cstring(f->amount), amount) == 0;
			}
		case SEC_KEYS:
			{
				char	   *provider = str_noerror(c, "provider");
				char	   *hint = str_noerror(c, "hint");
				char		second[NAMEDATALEN * 2];

				id = uuid_text_noerror(c, "user_id");
				if (id == NULL || provider == NULL || hint == NULL)
					return false;
				snprintf(second, sizeof(second), "%.64s/%.8s", provider, hint);
				return found_get(b, id, second) != NULL;
			}
		case SEC_CHATS:
			{
				char	   *uid = uuid_text_noerror(c, "user_id");

				id = uuid_text_noerror(c, "id");
				f = id ? found_get(b, id, NULL) : NULL;
				return f && uid && f->email && strcmp(f->email, uid) == 0;
			}
	}
	return false;
}

/* How a record of each section is applied */
static Outcome (*const appliers[]) (Batch *b, JsonbContainer *c) = {
	[SEC_USERS] = apply_user,
	[SEC_ENTRIES] = apply_entry,
	[SEC_KEYS] = apply_key,
	[SEC_CHATS] = apply_chat,
};

/*
 * Record i in a subtransaction of its own: its outcome, or, when its call
 * raised an error, the error as its reason and the subtransaction rolled
 * back.  An error that is no record's fault (a cancel, a lost lock, out of
 * memory) is raised again and fails the batch.
 */
static void
apply_record(Batch *b, int i, bool quick)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile Outcome o = OUT_REJECTED;
	char	   *volatile reason = NULL;

	if (quick)
	{
		put_outcome(b, i, OUT_PRESENT, NULL);
		return;
	}
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(b->rec_cxt);
	PG_TRY();
	{
		o = appliers[b->section] (b, record_at(b, i));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			code;

		MemoryContextSwitchTo(b->cxt);
		edata = CopyErrorData();
		code = edata->sqlerrcode;
		if (code == ERRCODE_QUERY_CANCELED || code == ERRCODE_OUT_OF_MEMORY ||
			code == ERRCODE_T_R_DEADLOCK_DETECTED ||
			code == ERRCODE_T_R_SERIALIZATION_FAILURE ||
			code == ERRCODE_ADMIN_SHUTDOWN || code == ERRCODE_INTERNAL_ERROR ||
			ERRCODE_TO_CATEGORY(code) == ERRCODE_INSUFFICIENT_RESOURCES ||
			ERRCODE_TO_CATEGORY(code) == ERRCODE_PROGRAM_LIMIT_EXCEEDED ||
			code == ERRCODE_LOCK_NOT_AVAILABLE)
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		reason = psprintf("%s (%s)", edata->message, unpack_sql_state(code));
		o = OUT_REJECTED;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(b->cxt);
	put_outcome(b, i, o, reason);
	MemoryContextReset(b->rec_cxt);
}

static Section
section_arg(const char *s)
{
	if (strcmp(s, "users") == 0)
		return SEC_USERS;
	if (strcmp(s, "entries") == 0)
		return SEC_ENTRIES;
	if (strcmp(s, "provider_keys") == 0)
		return SEC_KEYS;
	if (strcmp(s, "chats") == 0)
		return SEC_CHATS;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("section \"%s\" is not one of users, entries, provider_keys, chats",
					pgm_shown_value(s, 40))));
	return SEC_USERS;			/* not reached */
}

/* ----------------------------------------------------------------
 * import_batch(section text, records jsonb)
 *		RETURNS TABLE (idx integer, outcome text, reasons text[])
 * ----------------------------------------------------------------
 */
Datum
pgm_import_batch(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	HASHCTL		hctl;
	Batch		b;
	bool	   *quick;
	int			i;

	pgm_require_arg(fcinfo, 0, "section");
	pgm_require_arg(fcinfo, 1, "records");
	memset(&b, 0, sizeof(b));
	b.section = section_arg(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	b.records = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(b.records) || JB_ROOT_IS_SCALAR(b.records))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("records must be a JSON array")));
	b.n = JB_ROOT_COUNT(b.records);
	if (b.n > IMPORT_MAX_BATCH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a batch of %d records is more than %d", b.n, IMPORT_MAX_BATCH)));

	InitMaterializedSRF(fcinfo, 0);
	b.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	b.cxt = AllocSetContextCreate(caller_cxt, "pgmarket import_batch",
								  ALLOCSET_DEFAULT_SIZES);
	b.rec_cxt = AllocSetContextCreate(b.cxt, "pgmarket import record",
									  ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(b.cxt);
	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = NAMEDATALEN * 4;
	hctl.entrysize = sizeof(Found);
	hctl.hcxt = b.cxt;
	b.found = hash_create("pgmarket import found", Max(b.n, 16), &hctl,
						  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	pgm_spi_connect();
	MemoryContextSwitchTo(b.cxt);
	quick = palloc0(sizeof(bool) * Max(b.n, 1));
	if (b.n > 0)
	{
		refresh_stats(b.section);
		MemoryContextSwitchTo(b.cxt);
		batch_lookup(&b);
		for (i = 0; i < b.n; i++)
		{
			JsonbValue *rv = getIthJsonbValueFromContainer(&b.records->root, i);

			MemoryContextSwitchTo(b.rec_cxt);
			quick[i] = rv && rv->type == jbvBinary &&
				JsonContainerIsObject(rv->val.binary.data) &&
				quick_present(&b, rv->val.binary.data);
			MemoryContextSwitchTo(b.cxt);
			MemoryContextReset(b.rec_cxt);
		}
		batch_lock(&b, quick);
	}
	for (i = 0; i < b.n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		apply_record(&b, i, quick[i]);
	}
	pgm_spi_finish();
	MemoryContextSwitchTo(caller_cxt);
	MemoryContextDelete(b.cxt);
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * export_accounts() RETURNS TABLE (id uuid, email text, username text,
 *		password_hash text, created_at timestamptz)
 *
 * The active accounts in creation order, with the hashes import_user
 * keeps, so that an export with secrets gives every login back.
 * ----------------------------------------------------------------
 */
Datum
pgm_export_accounts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	static SPIPlanPtr plan = NULL;

	pgm_materialize(fcinfo);
	pgm_spi_connect();
	if (plan == NULL)
		plan = pgm_prepare("SELECT id, email, username, password_hash, created_at"
						   "  FROM pgmarket.accounts WHERE deleted_at IS NULL"
						   " ORDER BY created_at, id", 0, NULL);
	pgm_exec(plan, NULL, NULL, true);
	pgm_put_rows(rsinfo, 0);
	pgm_spi_finish();
	return (Datum) 0;
}
