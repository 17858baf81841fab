/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  deduct_batch(charge[]): many charges in one call, each on its own terms.
 *
 * A batch is decided in memory and written with a handful of set-based
 * statements, whatever its size:
 *
 *	1. every charge is checked; a bad one gets its SQLSTATE and is skipped;
 *	2. the balance rows of all users in the batch are locked in uuid order
 *	   (the order expire_reservations uses too, so batches cannot deadlock
 *	   with each other; a single-user call locks one row only);
 *	3. the entries already recorded under the batch's idempotency keys are
 *	   read -- after the locks, so that no twin can still be in flight;
 *	4. charges are applied in input order against each user's available
 *	   balance: one that does not fit gets PM001, the next may still fit;
 *	5. one INSERT writes all entries (ids from the ledger's sequence, in
 *	   input order) and one UPDATE writes all balances.
 *
 * One failing charge does not undo the others.  An error that is not about
 * one charge (say, the server running out of disk) still fails the call as a
 * whole, and then nothing of it is applied.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(pgm_deduct_batch);

#define PGM_MAX_BATCH	100000

/* One user touched by the batch. */
typedef struct BatchUser
{
	pg_uuid_t	id;				/* hash key */
	bool		usable;			/* exists and is active */
	bool		needs_sweep;	/* has holds that may have expired */
	int64		available;
	int64		spent_delta;
} BatchUser;

/* One charge of the batch, and what became of it. */
typedef struct BatchCharge
{
	int			sqlstate;		/* 0 when applied (or replayed) */
	pg_uuid_t	user_id;
	int64		amount;
	char	   *model_id;
	int64		tokens;
	char	   *key;
	int64		entry_id;
	int64		available;
	bool		inserted;		/* written by this call */
	BatchUser  *user;
} BatchCharge;

/* (user, idempotency key) -> the charge recorded under it */
typedef struct KeyRef
{
	const pg_uuid_t *user_id;
	const char *key;
} KeyRef;

typedef struct KeyedEntry
{
	KeyRef		ref;			/* hash key */
	bool		is_charge;
	int64		amount;
	char	   *model_id;
	int64		tokens;
	int64		entry_id;
	int64		available;
} KeyedEntry;

static SPIPlanPtr plan_lock_users;
static SPIPlanPtr plan_find_keys;
static SPIPlanPtr plan_insert_many;
static SPIPlanPtr plan_update_many;

static uint32
keyref_hash(const void *key, Size keysize)
{
	const KeyRef *k = key;

	return hash_combine(hash_bytes(k->user_id->data, UUID_LEN),
						string_hash(k->key, 0));
}

static int
keyref_match(const void *key1, const void *key2, Size keysize)
{
	const KeyRef *a = key1;
	const KeyRef *b = key2;

	if (memcmp(a->user_id->data, b->user_id->data, UUID_LEN) != 0)
		return 1;
	return strcmp(a->key, b->key);
}

static void
prepare_batch_plans(void)
{
	Oid			lock_args[] = {UUIDARRAYOID};
	Oid			key_args[] = {UUIDARRAYOID, TEXTARRAYOID};
	Oid			ins_args[] = {INT8ARRAYOID, UUIDARRAYOID, INT8ARRAYOID,
	INT8ARRAYOID, TEXTARRAYOID, INT8ARRAYOID, TEXTARRAYOID};
	Oid			upd_args[] = {UUIDARRAYOID, INT8ARRAYOID};

	if (plan_update_many != NULL)
		return;

	plan_lock_users = pgm_prepare(
		"SELECT b.user_id, b.active, b.total - b.spent - b.reserved,"
		"       coalesce(b.next_expiry <= now(), false)"
		"  FROM unnest($1) AS u (id)"
		"  JOIN pgmarket.balances b ON b.user_id = u.id"
		" ORDER BY b.user_id FOR UPDATE OF b", 1, lock_args);

	plan_find_keys = pgm_prepare(
		"SELECT l.user_id, l.idempotency_key, l.kind, l.amount, l.model_id,"
		"       l.tokens_used, l.entry_id, l.available"
		"  FROM unnest($1, $2) AS k (user_id, idempotency_key)"
		"  JOIN pgmarket.ledger l"
		"    ON l.user_id = k.user_id AND l.idempotency_key = k.idempotency_key",
		2, key_args);

	plan_insert_many = pgm_prepare(
		"INSERT INTO pgmarket.ledger (entry_id, user_id, kind, amount,"
		"       available, model_id, tokens_used, idempotency_key)"
		"SELECT e, u, 'charge', a, v, m, t, k"
		"  FROM unnest($1, $2, $3, $4, $5, $6, $7) AS x (e, u, a, v, m, t, k)",
		7, ins_args);

	plan_update_many = pgm_prepare(
		"UPDATE pgmarket.balances b"
		"   SET spent = b.spent + x.d, updated_at = now()"
		"  FROM unnest($1, $2) AS x (u, d)"
		" WHERE b.user_id = x.u", 2, upd_args);
}

/* Step 1: read and check one element of the input array. */
static void
read_charge(Datum elem, bool elem_null, TupleDesc chargedesc, BatchCharge *c)
{
	HeapTupleData tuple;
	HeapTupleHeader th;
	Datum		values[5];
	bool		nulls[5];
	PgmAmountError err;

	memset(c, 0, sizeof(*c));
	if (elem_null)
	{
		c->sqlstate = ERRCODE_NULL_VALUE_NOT_ALLOWED;
		return;
	}
	th = DatumGetHeapTupleHeader(elem);
	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	heap_deform_tuple(&tuple, chargedesc, values, nulls);

	/* user_id, amount and model_id are required */
	if (nulls[0] || nulls[1] || nulls[2])
	{
		c->sqlstate = ERRCODE_NULL_VALUE_NOT_ALLOWED;
		return;
	}
	memcpy(&c->user_id, DatumGetUUIDP(values[0]), sizeof(pg_uuid_t));

	err = pgm_numeric_to_micro_noerror(values[1], &c->amount);
	if (err != PGM_AMOUNT_OK)
	{
		c->sqlstate = pgm_amount_error_sqlstate(err);
		return;
	}

	c->model_id = TextDatumGetCString(values[2]);
	c->tokens = nulls[3] ? 0 : DatumGetInt64(values[3]);
	c->key = nulls[4] ? NULL : TextDatumGetCString(values[4]);
	if (!pgm_text_ok(c->model_id, PGM_MAX_MODEL_ID_LEN) || c->tokens < 0 ||
		(c->key && !pgm_text_ok(c->key, PGM_MAX_IDEM_KEY_LEN)))
		c->sqlstate = ERRCODE_INVALID_PARAMETER_VALUE;
}

/* Build a one-dimensional array of n Datums, with NULLs where isnull says. */
static Datum
make_array(Datum *elems, bool *isnull, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, isnull, 1, dims, lbs,
											  elemtype, typlen, typbyval,
											  typalign));
}

Datum
pgm_deduct_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *input;
	Oid			elemtype;
	TupleDesc	chargedesc;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n;
	int			i;
	BatchCharge *charges;
	HASHCTL		ctl;
	HTAB	   *users;
	HTAB	   *keys;
	int			nusers = 0;
	int			nkeyed = 0;
	int			napplied = 0;
	Datum	   *arr_a;
	Datum	   *arr_b;
	bool	   *arr_null;
	Datum		args[7];
	Oid			seqid;
	HASH_SEQ_STATUS scan;
	BatchUser  *u;

	pgm_require_arg(fcinfo, 0, "charges");
	input = PG_GETARG_ARRAYTYPE_P(0);
	elemtype = ARR_ELEMTYPE(input);
	/* a list of charges, not a matrix: ordinals are positions in one list */
	if (ARR_NDIM(input) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("charges must be a one-dimensional array, not one of %d dimensions",
						ARR_NDIM(input))));
	n = ArrayGetNItems(ARR_NDIM(input), ARR_DIMS(input));
	if (n > PGM_MAX_BATCH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a batch of %d charges is too large", n),
				 errdetail("A batch holds at most %d charges.", PGM_MAX_BATCH)));

	InitMaterializedSRF(fcinfo, 0);
	if (n == 0)
		return (Datum) 0;

	chargedesc = lookup_rowtype_tupdesc_copy(elemtype, -1);
	deconstruct_array(input, elemtype, -1, false, TYPALIGN_DOUBLE,
					  &elems, &elem_nulls, &n);

	/* 1. read every charge; group by user */
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(BatchUser);
	ctl.hcxt = CurrentMemoryContext;
	users = hash_create("pgmarket batch users", 256, &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	charges = palloc(sizeof(BatchCharge) * n);
	for (i = 0; i < n; i++)
	{
		BatchCharge *c = &charges[i];
		bool		found;

		read_charge(elems[i], elem_nulls[i], chargedesc, c);
		if (c->sqlstate == 0 && !pgm_actor_allows(&c->user_id))
			c->sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
		if (c->sqlstate != 0)
			continue;
		c->user = hash_search(users, &c->user_id, HASH_ENTER, &found);
		if (!found)
		{
			c->user->usable = false;
			c->user->needs_sweep = false;
			c->user->available = 0;
			c->user->spent_delta = 0;
			nusers++;
		}
		if (c->key)
			nkeyed++;
	}

	arr_a = palloc(sizeof(Datum) * Max(n, 1));
	arr_b = palloc(sizeof(Datum) * Max(n, 1));
	arr_null = palloc0(sizeof(bool) * Max(n, 1));

	pgm_spi_connect();
	prepare_batch_plans();

	/* 2. lock the users' balance rows in uuid order */
	if (nusers > 0)
	{
		uint64		r;
		int			k = 0;

		hash_seq_init(&scan, users);
		while ((u = hash_seq_search(&scan)) != NULL)
			arr_a[k++] = UUIDPGetDatum(&u->id);
		args[0] = make_array(arr_a, NULL, k, UUIDOID);
		pgm_exec(plan_lock_users, args, NULL, false);

		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	row = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		id = SPI_getbinval(row, desc, 1, &isnull);

			u = hash_search(users, DatumGetUUIDP(id), HASH_FIND, NULL);
			Assert(u != NULL);
			u->usable = DatumGetBool(SPI_getbinval(row, desc, 2, &isnull));
			u->available = DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
			u->needs_sweep = DatumGetBool(SPI_getbinval(row, desc, 4, &isnull));
		}

		/* sweep the expired holds of users that have them, under the lock */
		hash_seq_init(&scan, users);
		while ((u = hash_seq_search(&scan)) != NULL)
			if (u->usable && u->needs_sweep)
				pgm_sweep_expired_holds(UUIDPGetDatum(&u->id), &u->available);
	}

	/* 3. the entries already recorded under the batch's keys */
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(KeyRef);
	ctl.entrysize = sizeof(KeyedEntry);
	ctl.hash = keyref_hash;
	ctl.match = keyref_match;
	ctl.hcxt = CurrentMemoryContext;
	keys = hash_create("pgmarket batch keys", Max(nkeyed, 16), &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	if (nkeyed > 0)
	{
		int			k = 0;
		uint64		r;

		for (i = 0; i < n; i++)
		{
			if (charges[i].sqlstate != 0 || charges[i].key == NULL)
				continue;
			arr_a[k] = UUIDPGetDatum(&charges[i].user_id);
			arr_b[k] = CStringGetTextDatum(charges[i].key);
			k++;
		}
		args[0] = make_array(arr_a, NULL, k, UUIDOID);
		args[1] = make_array(arr_b, NULL, k, TEXTOID);
		pgm_exec(plan_find_keys, args, NULL, false);

		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	row = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			pg_uuid_t  *uid = palloc(sizeof(pg_uuid_t));
			KeyRef		ref;
			KeyedEntry *e;
			bool		found;
			char	   *kind;

			memcpy(uid, DatumGetUUIDP(SPI_getbinval(row, desc, 1, &isnull)),
				   sizeof(pg_uuid_t));
			ref.user_id = uid;
			ref.key = TextDatumGetCString(SPI_getbinval(row, desc, 2, &isnull));
			e = hash_search(keys, &ref, HASH_ENTER, &found);
			kind = TextDatumGetCString(SPI_getbinval(row, desc, 3, &isnull));
			e->is_charge = strcmp(kind, "charge") == 0;
			e->amount = DatumGetInt64(SPI_getbinval(row, desc, 4, &isnull));
			e->model_id = SPI_getvalue(row, desc, 5);
			e->tokens = DatumGetInt64(SPI_getbinval(row, desc, 6, &isnull));
			e->entry_id = DatumGetInt64(SPI_getbinval(row, desc, 7, &isnull));
			e->available = DatumGetInt64(SPI_getbinval(row, desc, 8, &isnull));
		}
	}

	/* 4. apply in input order */
	seqid = get_relname_relid("ledger_entry_id_seq",
							  get_namespace_oid("pgmarket", false));
	for (i = 0; i < n; i++)
	{
		BatchCharge *c = &charges[i];
		KeyedEntry *e = NULL;
		KeyRef		ref;
		int64		available;
		int64		spent_delta;

		if (c->sqlstate != 0)
			continue;
		u = c->user;
		if (!u->usable)
		{
			c->sqlstate = ERRCODE_PGM_UNKNOWN_ACCOUNT;
			continue;
		}
		if (c->key)
		{
			ref.user_id = &c->user_id;
			ref.key = c->key;
			e = hash_search(keys, &ref, HASH_FIND, NULL);
			if (e != NULL)
			{
				if (e->is_charge && e->amount == c->amount &&
					e->tokens == c->tokens && e->model_id != NULL &&
					strcmp(e->model_id, c->model_id) == 0)
				{
					c->entry_id = e->entry_id;
					c->available = e->available;
				}
				else
					c->sqlstate = ERRCODE_PGM_IDEMPOTENCY_CONFLICT;
				continue;
			}
		}
		if (c->amount > u->available)
		{
			c->sqlstate = ERRCODE_PGM_INSUFFICIENT_FUNDS;
			continue;
		}

		/*
		 * 0 < amount <= available < PGM_MAX_MICRO, so neither can wrap; the
		 * check is there so that a change above cannot make them.
		 */
		if (pg_sub_s64_overflow(u->available, c->amount, &available) ||
			pg_add_s64_overflow(u->spent_delta, c->amount, &spent_delta))
		{
			c->sqlstate = ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE;
			continue;
		}
		u->available = available;
		u->spent_delta = spent_delta;
		c->available = u->available;
		c->entry_id = nextval_internal(seqid, false);
		c->inserted = true;
		napplied++;
		if (c->key)
		{
			e = hash_search(keys, &ref, HASH_ENTER, NULL);
			e->is_charge = true;
			e->amount = c->amount;
			e->model_id = c->model_id;
			e->tokens = c->tokens;
			e->entry_id = c->entry_id;
			e->available = c->available;
		}
	}

	/* 5. write the entries and the balances */
	if (napplied > 0)
	{
		Datum	   *ids = palloc(sizeof(Datum) * napplied);
		Datum	   *amounts = palloc(sizeof(Datum) * napplied);
		Datum	   *avail = palloc(sizeof(Datum) * napplied);
		Datum	   *models = palloc(sizeof(Datum) * napplied);
		Datum	   *tokens = palloc(sizeof(Datum) * napplied);
		int			k = 0;

		for (i = 0; i < n; i++)
		{
			BatchCharge *c = &charges[i];

			if (!c->inserted)
				continue;
			ids[k] = Int64GetDatum(c->entry_id);
			arr_a[k] = UUIDPGetDatum(&c->user_id);
			amounts[k] = Int64GetDatum(c->amount);
			avail[k] = Int64GetDatum(c->available);
			models[k] = CStringGetTextDatum(c->model_id);
			tokens[k] = Int64GetDatum(c->tokens);
			arr_null[k] = c->key == NULL;
			arr_b[k] = c->key ? CStringGetTextDatum(c->key) : (Datum) 0;
			k++;
		}
		args[0] = make_array(ids, NULL, k, INT8OID);
		args[1] = make_array(arr_a, NULL, k, UUIDOID);
		args[2] = make_array(amounts, NULL, k, INT8OID);
		args[3] = make_array(avail, NULL, k, INT8OID);
		args[4] = make_array(models, NULL, k, TEXTOID);
		args[5] = make_array(tokens, NULL, k, INT8OID);
		args[6] = make_array(arr_b, arr_null, k, TEXTOID);
		pgm_exec(plan_insert_many, args, NULL, false);

		k = 0;
		hash_seq_init(&scan, users);
		while ((u = hash_seq_search(&scan)) != NULL)
		{
			if (u->spent_delta == 0)
				continue;
			arr_a[k] = UUIDPGetDatum(&u->id);
			arr_b[k] = Int64GetDatum(u->spent_delta);
			k++;
		}
		args[0] = make_array(arr_a, NULL, k, UUIDOID);
		args[1] = make_array(arr_b, NULL, k, INT8OID);
		pgm_exec(plan_update_many, args, NULL, false);
	}

	/* the result, one row per input charge */
	for (i = 0; i < n; i++)
	{
		BatchCharge *c = &charges[i];
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = Int32GetDatum(i + 1);
		values[1] = CStringGetTextDatum(unpack_sql_state(c->sqlstate));
		if (c->sqlstate == 0)
		{
			values[2] = Int64GetDatum(c->entry_id);
			values[3] = pgm_micro_to_numeric(c->available);
		}
		else
			nulls[2] = nulls[3] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	SPI_finish();
	return (Datum) 0;
}
