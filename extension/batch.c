/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  deduct_batch(charge[]): many charges in one call, each on its own terms.
 *
 * A batch is decided in memory and written at once, whatever its size:
 *
 *	1. every charge is checked; a bad one gets its SQLSTATE and is skipped;
 *	2a. the balance rows of all users in the batch are locked in uuid order
 *	   (the order expire_reservations uses too, so batches cannot deadlock
 *	   with each other; a single-user call locks one row only);
 *	2b. each locked user's available balance is read, once, after its
 *	   expired holds are swept (batch_user_available: the one place where
 *	   a balance row's available is read before charges are decided);
 *	3. the entries already recorded under the batch's idempotency keys are
 *	   read -- after the locks, so that no twin can still be in flight;
 *	4. charges are applied in input order against each user's available
 *	   balance: one that does not fit gets PM001, the next may still fit;
 *	5. all entries are written (ids from the ledger's sequence, in input
 *	   order), then each user's balance row once;
 *	6. one row per input charge says what became of it.
 *
 * Each step is a function below, batch_<step>, called in this order by
 * pgm_deduct_batch.
 *
 * Steps 2a and 5 have two ways of doing their work.  The direct path
 * (heapwrite.c's writer) finds each balance row through the primary key and
 * locks it with table_tuple_lock (as SELECT ... FOR UPDATE does under READ
 * COMMITTED), writes the entries with one table_multi_insert per chunk of
 * BATCH_CHUNK (a WAL record per heap page, not per row) and enters them in
 * the ledger's indexes in key order, and updates each balance row in place
 * of the version it locked (no second look-up).  It keeps every index, CHECK
 * and NOT NULL constraint (ExecInsertIndexTuples, ExecConstraints).  The SQL
 * path runs one statement per step: SELECT ... FOR UPDATE of all users,
 * INSERT ... SELECT FROM unnest of all entries, UPDATE ... FROM unnest of
 * all balances.  batch_direct_open takes the direct path unless it would
 * not write exactly what those statements write (pgm_writer_open: a
 * trigger, row-level security that applies, REPEATABLE READ or
 * SERIALIZABLE, a changed table); the balances go through the UPDATE when
 * it would fire their foreign key's check (a row this transaction wrote).
 *
 * One failing charge does not undo the others.  An error that is not about
 * one charge (say, the server running out of disk) still fails the call as a
 * whole, and then nothing of it is applied.
 *
 * Memory: a call works in a memory context of its own, a child of the
 * caller's, deleted when the call returns (on an error, with the caller's).
 * SPI switches to its own procedure context at SPI_connect and after every
 * statement; the steps switch back to the batch's (batch_exec), so that SPI's
 * context holds only what SPI itself makes.  The result rows are written
 * after SPI_finish into the tuplestore that InitMaterializedSRF made in the
 * caller's per-query context.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "utils/resowner.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(pgm_deduct_batch);

#define PGM_MAX_BATCH	100000

/* One user touched by the batch. */
typedef struct BatchUser
{
	pg_uuid_t	id;				/* hash key */
	bool		usable;			/* exists and is active */
	bool		needs_sweep;	/* has holds that may have expired */
	int64		row_available;	/* total - spent - reserved of the locked row */
	int64		demand;			/* sum of the user's checked charges (capped) */
	int64		available;		/* what is left for the next charge (step 4) */
	int64		spent_delta;
	int			rank;			/* its place in uuid order (b->sorted) */
	ItemPointerData tid;		/* direct path: the locked version of the row */
	HeapTuple	row;			/* direct path: a copy of that version */
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

/* Everything one call works with; all of it is allocated in cxt. */
typedef struct Batch
{
	MemoryContext cxt;			/* this call's memory, deleted at its end */
	int			n;				/* charges in the input */
	BatchCharge *charges;		/* n of them, in input order */
	HTAB	   *users;			/* pg_uuid_t -> BatchUser */
	int			nusers;
	HTAB	   *keys;			/* KeyRef -> KeyedEntry */
	int			nkeyed;			/* checked charges that carry a key */
	int			napplied;		/* charges step 5 inserts */
	Datum	   *col_a;			/* scratch columns of n Datums for the */
	Datum	   *col_b;			/* statements' array arguments */
	bool	   *col_null;
	BatchUser **sorted;			/* the nusers users in uuid order */
	struct BatchDirect *direct; /* NULL: the batch goes through SQL */
} Batch;

/*
 * The direct path: the balance rows are found through their primary key and
 * locked with table_tuple_lock, the entries go into the ledger with one
 * table_multi_insert per chunk and into its indexes in key order, and each
 * balance row is updated in place of the version the batch locked.  It is
 * what the statements of the SQL path do, without the executor in between;
 * batch_direct_open says when it may be taken.
 */
#define BATCH_CHUNK		1000	/* entries per table_multi_insert */

typedef struct BatchDirect
{
	PgmLedgerWriter w;			/* the tables, their indexes (heapwrite.c) */
	TupleTableSlot *row_slot;	/* a balance row as found and locked */
	TupleTableSlot *new_slot;	/* its new version */
} BatchDirect;

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

static const PgmPlanDef batch_plans[] = {
	{&plan_lock_users,
		"SELECT b.user_id, b.active, b.total - b.spent - b.reserved,"
		"       coalesce(b.next_expiry <= now(), false)"
		"  FROM unnest($1) AS u (id)"
		"  JOIN pgmarket.balances b ON b.user_id = u.id"
		" ORDER BY b.user_id FOR UPDATE OF b",
		1, {UUIDARRAYOID}},

	{&plan_find_keys,
		"SELECT l.user_id, l.idempotency_key, l.kind, l.amount, l.model_id,"
		"       l.tokens_used, l.entry_id, l.available"
		"  FROM unnest($1, $2) AS k (user_id, idempotency_key)"
		"  JOIN pgmarket.ledger l"
		"    ON l.user_id = k.user_id AND l.idempotency_key = k.idempotency_key",
		2, {UUIDARRAYOID, TEXTARRAYOID}},

	{&plan_insert_many,
		"INSERT INTO pgmarket.ledger (entry_id, user_id, kind, amount,"
		"       available, model_id, tokens_used, idempotency_key)"
		"SELECT e, u, 'charge', a, v, m, t, k"
		"  FROM unnest($1, $2, $3, $4, $5, $6, $7) AS x (e, u, a, v, m, t, k)",
		7, {INT8ARRAYOID, UUIDARRAYOID, INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID, INT8ARRAYOID, TEXTARRAYOID}},

	{&plan_update_many,
		"UPDATE pgmarket.balances b"
		"   SET spent = b.spent + x.d, updated_at = now()"
		"  FROM unnest($1, $2) AS x (u, d)"
		" WHERE b.user_id = x.u",
		2, {UUIDARRAYOID, INT8ARRAYOID}},
};

#define prepare_plans() PGM_PREPARE_PLANS(batch_plans)

/* Step 1's reader: read and check one element of the input array. */
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

/*
 * Run one of the batch's statements.  SPI returns to its own procedure
 * context after every statement: switch back to the batch's, so that what a
 * step reads from the result lives in the batch's context.  The argument
 * arrays (from make_array) are not needed once the statement has run.
 */
static void
batch_exec(Batch *b, SPIPlanPtr plan, Datum *args, int nargs)
{
	int			i;

	pgm_exec(plan, args, NULL, false);
	MemoryContextSwitchTo(b->cxt);
	for (i = 0; i < nargs; i++)
		pfree(DatumGetPointer(args[i]));
}

/*
 * Run a statement whose two arguments are the first k uuids of col_a and the
 * first k values of col_b, of type btype (step 3's key lookup, step 5's
 * balance update).
 */
static void
batch_exec_pairs(Batch *b, SPIPlanPtr plan, int k, Oid btype)
{
	Datum		args[2];

	args[0] = make_array(b->col_a, NULL, k, UUIDOID);
	args[1] = make_array(b->col_b, NULL, k, btype);
	batch_exec(b, plan, args, 2);
}

/*
 * How many charges the input holds.  It must be a list, not a matrix (the
 * result's ordinals are positions in one list), of at most PGM_MAX_BATCH.
 */
static int
batch_size(ArrayType *input)
{
	int			n;

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
	return n;
}

/*
 * Step 1, read the charges: check every element of the input (read_charge)
 * and whether pgmarket.actor may charge its user, and group the charges that
 * pass by user.  A charge that fails a check keeps its SQLSTATE and takes no
 * part in the later steps; it does not fail the others.
 */
static void
batch_read_charges(Batch *b, ArrayType *input)
{
	Oid			elemtype = ARR_ELEMTYPE(input);
	TupleDesc	chargedesc = lookup_rowtype_tupdesc_copy(elemtype, -1);
	Datum	   *elems;
	bool	   *elem_nulls;
	HASHCTL		ctl;
	int			i;

	deconstruct_array(input, elemtype, -1, false, TYPALIGN_DOUBLE,
					  &elems, &elem_nulls, &b->n);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(BatchUser);
	ctl.hcxt = b->cxt;
	b->users = hash_create("pgmarket batch users", 256, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	b->charges = palloc(sizeof(BatchCharge) * b->n);
	for (i = 0; i < b->n; i++)
	{
		BatchCharge *c = &b->charges[i];
		bool		found;

		read_charge(elems[i], elem_nulls[i], chargedesc, c);
		if (c->sqlstate == 0 && !pgm_actor_allows(&c->user_id))
			c->sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
		if (c->sqlstate != 0)
			continue;
		c->user = hash_search(b->users, &c->user_id, HASH_ENTER, &found);
		if (!found)
		{
			memset((char *) c->user + sizeof(pg_uuid_t), 0,
				   sizeof(BatchUser) - sizeof(pg_uuid_t));
			b->nusers++;
		}
		if (pg_add_s64_overflow(c->user->demand, c->amount, &c->user->demand))
			c->user->demand = PG_INT64_MAX;
		if (c->key)
			b->nkeyed++;
	}
	pfree(elems);
	pfree(elem_nulls);

	b->col_a = palloc(sizeof(Datum) * b->n);
	b->col_b = palloc(sizeof(Datum) * b->n);
	b->col_null = palloc0(sizeof(bool) * b->n);
}

/*
 * Open the direct path (b->direct), or leave b->direct NULL for the SQL
 * path when the direct one would not write exactly what the SQL statements
 * write (pgm_writer_open says when: REPEATABLE READ or SERIALIZABLE, a
 * trigger, row-level security that applies, a changed table).  Every
 * index, CHECK and NOT NULL constraint is kept on either path.
 */
static void
batch_direct_open(Batch *b)
{
	BatchDirect *d = palloc0(sizeof(BatchDirect));

	if (!pgm_writer_open(&d->w, true))
	{
		pfree(d);
		return;
	}
	d->row_slot = table_slot_create(d->w.balances, NULL);
	d->new_slot = MakeSingleTupleTableSlot(RelationGetDescr(d->w.balances),
										   &TTSOpsHeapTuple);
	b->direct = d;
}

/* Close the direct path; the tables stay locked to the end of the transaction. */
static void
batch_direct_close(Batch *b)
{
	BatchDirect *d = b->direct;

	ExecDropSingleTupleTableSlot(d->row_slot);
	ExecDropSingleTupleTableSlot(d->new_slot);
	pgm_writer_close(&d->w);
	b->direct = NULL;
}

/* uuid order, the order of balances_pkey (uuid_cmp is a memcmp) */
static int
user_cmp(const void *a, const void *b)
{
	return memcmp((*(BatchUser *const *) a)->id.data,
				  (*(BatchUser *const *) b)->id.data, UUID_LEN);
}

/* The users of the batch, in uuid order, into b->sorted. */
static void
sort_users(Batch *b)
{
	HASH_SEQ_STATUS scan;
	BatchUser  *u;
	int			k = 0;

	b->sorted = palloc(sizeof(BatchUser *) * Max(b->nusers, 1));
	hash_seq_init(&scan, b->users);
	while ((u = hash_seq_search(&scan)) != NULL)
		b->sorted[k++] = u;
	qsort(b->sorted, k, sizeof(BatchUser *), user_cmp);
	while (k-- > 0)
		b->sorted[k]->rank = k;
}

/* SQL path of step 2: lock and read the k users of col_a, in one statement. */
static void
sql_lock_users(Batch *b, int k)
{
	Datum		args[1];
	uint64		r;

	args[0] = make_array(b->col_a, NULL, k, UUIDOID);
	batch_exec(b, plan_lock_users, args, 1);
	for (r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		Datum		id = pgm_col(r, 1, &isnull);
		BatchUser  *u = hash_search(b->users, DatumGetUUIDP(id), HASH_FIND, NULL);

		Assert(u != NULL);
		u->usable = pgm_col_bool(r, 2);
		u->row_available = pgm_col_int64(r, 3);
		u->needs_sweep = pgm_col_bool(r, 4);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Direct path of step 2 for one user: find the balance row through the
 * primary key and lock its newest version, as SELECT ... FOR UPDATE does
 * under READ COMMITTED (wait for a writer of the row, then follow the row to
 * the version it left, and lock that).  Keeps the locked version's place and
 * a copy of it, for step 5.  False when the user has no row.
 */
static bool
direct_lock_row(Batch *b, BatchUser *u)
{
	BatchDirect *d = b->direct;
	TM_Result	result;
	ItemPointerData tid;

	if (!pgm_writer_find(&d->w, &u->id, d->row_slot))
		return false;
	tid = d->row_slot->tts_tid;
	result = pgm_writer_lock(&d->w, &tid, d->row_slot, LockTupleExclusive);
	if (result == TM_Deleted)
		return false;
	if (result != TM_Ok)
		elog(ERROR, "could not lock the balance row of user %s (%d)",
			 pgm_uuid_cstring(UUIDPGetDatum(&u->id)), (int) result);
	u->tid = d->row_slot->tts_tid;
	if (u->row)
		heap_freetuple(u->row);
	u->row = ExecCopySlotHeapTuple(d->row_slot);
	ExecClearTuple(d->row_slot);
	return true;
}

/* Direct path of step 2: the state of a user's locked row, from its copy. */
static void
direct_read_row(Batch *b, BatchUser *u)
{
	BatchDirect *d = b->direct;
	TupleDesc	desc = RelationGetDescr(d->w.balances);
	AttrNumber *bcol = d->w.bcol;
	bool		isnull;
	Datum		expiry;
	int64		total;
	int64		spent;
	int64		reserved;

	/* active, total, spent and reserved are NOT NULL (pgm_writer_open) */
	u->usable = DatumGetBool(heap_getattr(u->row, bcol[PGM_B_ACTIVE], desc, &isnull));
	total = DatumGetInt64(heap_getattr(u->row, bcol[PGM_B_TOTAL], desc, &isnull));
	spent = DatumGetInt64(heap_getattr(u->row, bcol[PGM_B_SPENT], desc, &isnull));
	reserved = DatumGetInt64(heap_getattr(u->row, bcol[PGM_B_RESERVED], desc, &isnull));
	if (pg_sub_s64_overflow(total, spent, &u->row_available) ||
		pg_sub_s64_overflow(u->row_available, reserved, &u->row_available))
		elog(ERROR, "balance row of user %s out of range",
			 pgm_uuid_cstring(UUIDPGetDatum(&u->id)));
	expiry = heap_getattr(u->row, bcol[PGM_B_NEXT_EXPIRY], desc, &isnull);
	u->needs_sweep = !isnull &&
		DatumGetTimestampTz(expiry) <= DatumGetTimestampTz(d->w.now);
}

/* Direct path: take a snapshot that sees everything committed until now. */
static void
direct_begin_scan(BatchDirect *d)
{
	pgm_writer_scan_begin(&d->w, RegisterSnapshot(GetLatestSnapshot()));
}

static void
direct_end_scan(BatchDirect *d)
{
	Snapshot	snapshot = d->w.snapshot;

	pgm_writer_scan_end(&d->w);
	UnregisterSnapshot(snapshot);
}

/*
 * Step 2a, lock the users: lock the balance rows of all users of the batch
 * in uuid order (the order expire_reservations uses too, so that batches
 * cannot deadlock with each other), and read each row's state under its
 * lock.  A user without a row stays unusable (PM002 in step 4).  The direct
 * path locks one row after the other through the primary key; the SQL path
 * runs one statement (ORDER BY b.user_id FOR UPDATE).
 */
static void
batch_lock_users(Batch *b)
{
	int			i;

	if (b->nusers == 0)
		return;
	sort_users(b);
	if (b->direct == NULL)
	{
		for (i = 0; i < b->nusers; i++)
			b->col_a[i] = UUIDPGetDatum(&b->sorted[i]->id);
		sql_lock_users(b, b->nusers);
		return;
	}
	direct_begin_scan(b->direct);
	for (i = 0; i < b->nusers; i++)
	{
		BatchUser  *u = b->sorted[i];

		CHECK_FOR_INTERRUPTS();
		if (direct_lock_row(b, u))
			direct_read_row(b, u);
	}
	direct_end_scan(b->direct);
}

/*
 * Read a locked user's row again, after a statement of this call wrote it
 * (a sweep of expired holds): the row is still locked, by this transaction,
 * and the direct path takes the place of its new version.
 */
static void
batch_reread_user(Batch *b, BatchUser *u)
{
	CommandCounterIncrement();
	if (b->direct == NULL)
	{
		b->col_a[0] = UUIDPGetDatum(&u->id);
		sql_lock_users(b, 1);
		return;
	}
	direct_begin_scan(b->direct);
	if (direct_lock_row(b, u))
		direct_read_row(b, u);
	else
		u->usable = false;
	direct_end_scan(b->direct);
}

/*
 * Step 2b, the available balance of each locked user.  This is the one place
 * where the available of a user's balance row is read before any of the
 * user's charges is decided (step 4 starts from u->available and never reads
 * the row again).  Expired holds are swept first, under the lock step 2a
 * took, so that the charges meet the balance that is really available; a
 * sweep writes the row, which is then read again.  Whatever else must bring
 * money back into the row before the user's charges are decided goes here
 * too, under the same lock and before the read; u->demand says how much the
 * batch asks of the user.
 */
static void
batch_user_available(Batch *b, BatchUser *u)
{
	if (!u->usable)
		return;
	if (u->needs_sweep)
	{
		pgm_sweep_expired_holds(UUIDPGetDatum(&u->id), NULL);
		MemoryContextSwitchTo(b->cxt);	/* the sweep ran a statement */
		batch_reread_user(b, u);
		u->needs_sweep = false;
		if (!u->usable)
			return;
	}
	if (u->demand > u->row_available)
	{
		/*
		 * The row alone is short of what the batch asks: bring back the
		 * money of the user's free escrow slots (escrow.c; a slot that
		 * another transaction is charging stays its own).  The reclaim may
		 * write the row, which is then read again.
		 */
		pgm_escrow_reclaim(UUIDPGetDatum(&u->id));
		MemoryContextSwitchTo(b->cxt);
		batch_reread_user(b, u);
		if (!u->usable)
			return;
	}
	u->available = u->row_available;
}

static void
batch_users_available(Batch *b)
{
	int			i;

	for (i = 0; i < b->nusers; i++)
		batch_user_available(b, b->sorted[i]);
}

/* Step 3's reader: enter row r of the key lookup into b->keys. */
static void
remember_entry(Batch *b, uint64 r)
{
	bool		isnull;
	pg_uuid_t  *uid = palloc(sizeof(pg_uuid_t));
	KeyRef		ref;
	KeyedEntry *e;
	char	   *kind;

	memcpy(uid, DatumGetUUIDP(pgm_col(r, 1, &isnull)), sizeof(pg_uuid_t));
	ref.user_id = uid;
	ref.key = TextDatumGetCString(pgm_col(r, 2, &isnull));
	e = hash_search(b->keys, &ref, HASH_ENTER, NULL);
	kind = TextDatumGetCString(pgm_col(r, 3, &isnull));
	e->is_charge = strcmp(kind, "charge") == 0;
	e->amount = pgm_col_int64(r, 4);
	e->model_id = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 5);
	e->tokens = pgm_col_int64(r, 6);
	e->entry_id = pgm_col_int64(r, 7);
	e->available = pgm_col_int64(r, 8);
}

/*
 * Step 3, find the replays: read the entries already recorded under the
 * batch's (user, idempotency key) pairs into b->keys.  It runs after step 2
 * because a key is inserted under its user's lock: with all the batch's users
 * locked, no twin of a charge can still be in flight, and what this reads is
 * final for the rest of the call.
 */
static void
batch_find_replays(Batch *b)
{
	HASHCTL		ctl;
	uint64		r;
	int			i;
	int			k = 0;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(KeyRef);
	ctl.entrysize = sizeof(KeyedEntry);
	ctl.hash = keyref_hash;
	ctl.match = keyref_match;
	ctl.hcxt = b->cxt;
	b->keys = hash_create("pgmarket batch keys", Max(b->nkeyed, 16), &ctl,
						  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	if (b->nkeyed == 0)
		return;

	for (i = 0; i < b->n; i++)
	{
		BatchCharge *c = &b->charges[i];

		if (c->sqlstate != 0 || c->key == NULL)
			continue;
		b->col_a[k] = UUIDPGetDatum(&c->user_id);
		b->col_b[k] = CStringGetTextDatum(c->key);
		k++;
	}
	batch_exec_pairs(b, plan_find_keys, k, TEXTOID);

	for (r = 0; r < SPI_processed; r++)
		remember_entry(b, r);
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Step 4 for a charge whose key is recorded (by an earlier call, or by an
 * earlier charge of this batch): the same charge replays the recorded entry,
 * a different one gets PM003; neither moves money.  False when the charge's
 * key, if any, is not recorded.
 */
static bool
replay_charge(Batch *b, BatchCharge *c)
{
	KeyRef		ref;
	KeyedEntry *e;

	if (c->key == NULL)
		return false;
	ref.user_id = &c->user_id;
	ref.key = c->key;
	e = hash_search(b->keys, &ref, HASH_FIND, NULL);
	if (e == NULL)
		return false;
	if (e->is_charge && e->amount == c->amount &&
		e->tokens == c->tokens && e->model_id != NULL &&
		strcmp(e->model_id, c->model_id) == 0)
	{
		c->entry_id = e->entry_id;
		c->available = e->available;
	}
	else
		c->sqlstate = ERRCODE_PGM_IDEMPOTENCY_CONFLICT;
	return true;
}

/*
 * Step 4 for a new charge: take it from its user's available balance when it
 * fits (PM001 when not; the next charge may still fit), give it the next id
 * of the ledger's sequence, and record its key so that a twin later in the
 * batch replays it.
 */
static void
apply_charge(Batch *b, BatchCharge *c, Oid seqid)
{
	BatchUser  *u = c->user;
	int64		available;
	int64		spent_delta;

	if (c->amount > u->available)
	{
		c->sqlstate = ERRCODE_PGM_INSUFFICIENT_FUNDS;
		return;
	}

	/*
	 * 0 < amount <= available < PGM_MAX_MICRO, so neither can wrap; the
	 * check is there so that a change above cannot make them.
	 */
	if (pg_sub_s64_overflow(u->available, c->amount, &available) ||
		pg_add_s64_overflow(u->spent_delta, c->amount, &spent_delta))
	{
		c->sqlstate = ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE;
		return;
	}
	u->available = available;
	u->spent_delta = spent_delta;
	c->available = u->available;
	c->entry_id = nextval_internal(seqid, false);
	c->inserted = true;
	b->napplied++;
	if (c->key)
	{
		KeyRef		ref = {&c->user_id, c->key};
		KeyedEntry *e = hash_search(b->keys, &ref, HASH_ENTER, NULL);

		e->is_charge = true;
		e->amount = c->amount;
		e->model_id = c->model_id;
		e->tokens = c->tokens;
		e->entry_id = c->entry_id;
		e->available = c->available;
	}
}

/*
 * Step 4, apply: decide every charge that passed step 1, in input order,
 * in memory (the balances are written in step 5): PM002 for a user that is
 * unknown or deactivated, else a replay (replay_charge), else the charge
 * itself (apply_charge).
 */
static void
batch_apply(Batch *b)
{
	Oid			seqid = get_relname_relid("ledger_entry_id_seq",
										  get_namespace_oid("pgmarket", false));
	int			i;

	for (i = 0; i < b->n; i++)
	{
		BatchCharge *c = &b->charges[i];

		if (c->sqlstate != 0)
			continue;
		if (!c->user->usable)
			c->sqlstate = ERRCODE_PGM_UNKNOWN_ACCOUNT;
		else if (!replay_charge(b, c))
			apply_charge(b, c, seqid);
	}
}

/* SQL path of step 5: one INSERT of all entries. */
static void
sql_write_entries(Batch *b)
{
	Datum	   *ids = palloc(sizeof(Datum) * b->napplied);
	Datum	   *amounts = palloc(sizeof(Datum) * b->napplied);
	Datum	   *avail = palloc(sizeof(Datum) * b->napplied);
	Datum	   *models = palloc(sizeof(Datum) * b->napplied);
	Datum	   *tokens = palloc(sizeof(Datum) * b->napplied);
	Datum		args[7];
	int			i;
	int			k = 0;

	for (i = 0; i < b->n; i++)
	{
		BatchCharge *c = &b->charges[i];

		if (!c->inserted)
			continue;
		ids[k] = Int64GetDatum(c->entry_id);
		b->col_a[k] = UUIDPGetDatum(&c->user_id);
		amounts[k] = Int64GetDatum(c->amount);
		avail[k] = Int64GetDatum(c->available);
		models[k] = CStringGetTextDatum(c->model_id);
		tokens[k] = Int64GetDatum(c->tokens);
		b->col_null[k] = c->key == NULL;
		b->col_b[k] = c->key ? CStringGetTextDatum(c->key) : (Datum) 0;
		k++;
	}
	args[0] = make_array(ids, NULL, k, INT8OID);
	args[1] = make_array(b->col_a, NULL, k, UUIDOID);
	args[2] = make_array(amounts, NULL, k, INT8OID);
	args[3] = make_array(avail, NULL, k, INT8OID);
	args[4] = make_array(models, NULL, k, TEXTOID);
	args[5] = make_array(tokens, NULL, k, INT8OID);
	args[6] = make_array(b->col_b, b->col_null, k, TEXTOID);
	batch_exec(b, plan_insert_many, args, 7);
}

/* SQL path of step 5: one UPDATE of all balances. */
static void
sql_write_balances(Batch *b)
{
	HASH_SEQ_STATUS scan;
	BatchUser  *u;
	int			k = 0;

	hash_seq_init(&scan, b->users);
	while ((u = hash_seq_search(&scan)) != NULL)
	{
		if (u->spent_delta == 0)
			continue;
		b->col_a[k] = UUIDPGetDatum(&u->id);
		b->col_b[k] = Int64GetDatum(u->spent_delta);
		k++;
	}
	batch_exec_pairs(b, plan_update_many, k, INT8OID);
}

/*
 * Direct path of step 5 for one chunk of entries (slots[i] holds the entry
 * of charges[i]): written with one table_multi_insert (a WAL record per
 * page, not per row) and entered in every index of the ledger in key order,
 * so that consecutive insertions land on the same leaf pages
 * (pgm_writer_insert_entries: constraints checked, 23505 from a unique
 * index as the SQL path's INSERT would raise it).
 */
static void
direct_flush_entries(Batch *b, TupleTableSlot **slots, BatchCharge **charges,
					 int k, CommandId cid)
{
	BatchDirect *d = b->direct;
	TupleTableSlot **order = palloc(sizeof(TupleTableSlot *) * k);
	int		   *start = palloc0(sizeof(int) * (b->nusers + 1));
	int			i;

	/*
	 * (user_id, entry_id) order, the order of ledger_pkey: a counting sort
	 * by the users' ranks in uuid order, stable, so that a user's entries
	 * stay in input order, which is the order of their ids.
	 */
	for (i = 0; i < k; i++)
		start[charges[i]->user->rank + 1]++;
	for (i = 1; i <= b->nusers; i++)
		start[i] += start[i - 1];
	for (i = 0; i < k; i++)
		order[start[charges[i]->user->rank]++] = slots[i];
	pgm_writer_insert_entries(&d->w, slots, order, k, cid);
	pfree(order);
	pfree(start);
}

/*
 * Direct path of step 5, the entries: the rows the SQL path's INSERT writes
 * (the columns it leaves out are NULL; created_at is now()), BATCH_CHUNK at
 * a time, in input order.
 */
static void
direct_write_entries(Batch *b)
{
	BatchDirect *d = b->direct;
	TupleDesc	desc = CreateTupleDescCopy(RelationGetDescr(d->w.ledger));
	int			nslots = Min(b->napplied, BATCH_CHUNK);
	TupleTableSlot **slots = palloc(sizeof(TupleTableSlot *) * nslots);
	BatchCharge **charges = palloc(sizeof(BatchCharge *) * nslots);
	MemoryContext chunk_cxt = AllocSetContextCreate(b->cxt, "pgmarket deduct_batch chunk",
													ALLOCSET_DEFAULT_SIZES);
	CommandId	cid;
	int			i;
	int			k = 0;

	/* see the rows of this call's statements (sweeps) as the INSERT would */
	CommandCounterIncrement();
	cid = GetCurrentCommandId(true);
	/* the copy is not reference-counted: the slots pin nothing */
	for (i = 0; i < nslots; i++)
		slots[i] = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);

	for (i = 0; i < b->n; i++)
	{
		BatchCharge *c = &b->charges[i];
		TupleTableSlot *slot;
		MemoryContext old;

		if (!c->inserted)
			continue;
		CHECK_FOR_INTERRUPTS();
		slot = slots[k];
		old = MemoryContextSwitchTo(chunk_cxt);
		pgm_writer_charge_entry(&d->w, slot, c->entry_id, &c->user_id,
								c->amount, c->available,
								CStringGetTextDatum(c->model_id), c->tokens,
								c->key ? CStringGetTextDatum(c->key) : (Datum) 0);
		MemoryContextSwitchTo(old);
		charges[k++] = c;
		if (k == nslots)
		{
			direct_flush_entries(b, slots, charges, k, cid);
			MemoryContextReset(chunk_cxt);
			k = 0;
		}
	}
	if (k > 0)
		direct_flush_entries(b, slots, charges, k, cid);
	for (i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	MemoryContextDelete(chunk_cxt);
}

/*
 * Direct path of step 5, the balances: each user's row gets its new spent
 * and updated_at in place of the version step 2 locked (so no second lookup,
 * and no wait: the row is this transaction's), in uuid order.  The row's
 * CHECK constraint is checked; its indexes get the new version when the
 * update could not stay on the page (not HOT).
 */
static void
direct_write_balances(Batch *b)
{
	BatchDirect *d = b->direct;
	TupleDesc	desc = RelationGetDescr(d->w.balances);
	AttrNumber *bcol = d->w.bcol;
	Datum	   *values = palloc0(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc0(sizeof(bool) * desc->natts);
	bool	   *replace = palloc0(sizeof(bool) * desc->natts);
	CommandId	cid = GetCurrentCommandId(true);
	int			i;

	replace[bcol[PGM_B_SPENT] - 1] = true;
	replace[bcol[PGM_B_UPDATED_AT] - 1] = true;
	values[bcol[PGM_B_UPDATED_AT] - 1] = d->w.now;
	for (i = 0; i < b->nusers; i++)
	{
		BatchUser  *u = b->sorted[i];
		TM_Result	result;
		LockTupleMode lockmode;
		bool		isnull;
		int64		spent;

		if (u->spent_delta == 0)
			continue;
		CHECK_FOR_INTERRUPTS();
		spent = DatumGetInt64(heap_getattr(u->row, bcol[PGM_B_SPENT], desc, &isnull));
		if (pg_add_s64_overflow(spent, u->spent_delta, &spent))
			elog(ERROR, "spent balance of user %s out of range",
				 pgm_uuid_cstring(UUIDPGetDatum(&u->id)));
		values[bcol[PGM_B_SPENT] - 1] = Int64GetDatum(spent);
		ExecStoreHeapTuple(heap_modify_tuple(u->row, desc, values, nulls, replace),
						   d->new_slot, true);
		result = pgm_writer_update(&d->w, &u->tid, d->new_slot, cid, &lockmode);
		if (result != TM_Ok)
			elog(ERROR, "could not update the balance row of user %s (%d)",
				 pgm_uuid_cstring(UUIDPGetDatum(&u->id)), (int) result);
		ExecClearTuple(d->new_slot);
	}
}

/*
 * Would the SQL path's UPDATE fire the balance rows' foreign key check (on
 * a row this transaction wrote before the batch locked it)?  Then it is the
 * UPDATE that writes the balances.
 */
static bool
direct_fires_fk(Batch *b)
{
	int			i;

	for (i = 0; i < b->nusers; i++)
		if (b->sorted[i]->spent_delta != 0 &&
			pgm_writer_update_fires_fk(&b->direct->w, b->sorted[i]->row))
			return true;
	return false;
}

/*
 * Step 5, write: the entries of the charges step 4 applied, with the ids it
 * gave them (in input order) and the available balance each left, then each
 * user's spent delta into the balance row step 2 locked.  The keys go in with
 * the entries, while the users' locks are held.  The SQL path does it with
 * one INSERT ... SELECT FROM unnest and one UPDATE ... FROM unnest; the
 * direct path as above.
 */
static void
batch_write(Batch *b)
{
	if (b->direct)
	{
		direct_write_entries(b);
		if (direct_fires_fk(b))
			sql_write_balances(b);
		else
			direct_write_balances(b);
	}
	else
	{
		sql_write_entries(b);
		sql_write_balances(b);
	}
}

/*
 * Steps 3 and 4 again, after step 5 met a twin (below): forget what step 4
 * decided, read the keys again (the twin's entry is committed now) and
 * decide every checked charge again from the available balances step 2b
 * read, which the users' locks have kept as they were.
 */
static void
batch_redecide(Batch *b)
{
	int			i;

	for (i = 0; i < b->nusers; i++)
	{
		b->sorted[i]->available = b->sorted[i]->row_available;
		b->sorted[i]->spent_delta = 0;
	}
	for (i = 0; i < b->n; i++)
	{
		BatchCharge *c = &b->charges[i];

		if (c->user == NULL)
			continue;			/* refused in step 1: stays so */
		c->sqlstate = 0;
		c->inserted = false;
		c->entry_id = 0;
		c->available = 0;
	}
	b->napplied = 0;
	hash_destroy(b->keys);
	batch_find_replays(b);
	batch_apply(b);
}

/* Whether step 5 writes an idempotency key. */
static bool
writes_keys(Batch *b)
{
	int			i;

	for (i = 0; i < b->n; i++)
		if (b->charges[i].inserted && b->charges[i].key)
			return true;
	return false;
}

#define BATCH_TWIN_TRIES	3

/*
 * Step 5 for a batch that writes idempotency keys, in a subtransaction of
 * its own.  Every writer of a key holds its user's balance-row lock, which
 * this batch holds since step 2a, so a twin of one of its charges cannot be
 * in flight and step 3 saw every key there is.  Should a writer ever insert
 * a key without that lock, the ledger's unique index makes this insert wait
 * for it and then raise 23505; the subtransaction (entries only: the
 * balances come after them) is rolled back, steps 3 and 4 run again and
 * find the twin, which then replays, as INSERT ... ON CONFLICT would have
 * it.  The users' locks, taken before, are kept.  After BATCH_TWIN_TRIES
 * such rounds, or on any other error, the error stands.
 */
static void
batch_write_keyed(Batch *b)
{
	volatile int tries;

	for (tries = 1;; tries++)
	{
		ResourceOwner owner = CurrentResourceOwner;
		ErrorData  *volatile edata = NULL;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(b->cxt);
		PG_TRY();
		{
			batch_write(b);
			ReleaseCurrentSubTransaction();
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(b->cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(b->cxt);
		CurrentResourceOwner = owner;
		if (edata == NULL)
			return;
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION ||
			tries >= BATCH_TWIN_TRIES)
			ReThrowError(edata);
		FreeErrorData(edata);
		batch_redecide(b);
		if (b->napplied == 0)
			return;
	}
}

/*
 * Step 6, the result: one row per input charge, in input order: its ordinal,
 * its SQLSTATE ('00000' when applied or replayed) and then its entry id and
 * the available balance it left.  tuplestore_putvalues copies each row into
 * the tuplestore's (per-query) context; the Datums made for it here are
 * freed at once.
 */
static void
batch_put_result(Batch *b, ReturnSetInfo *rsinfo)
{
	int			i;

	for (i = 0; i < b->n; i++)
	{
		BatchCharge *c = &b->charges[i];
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
		pfree(DatumGetPointer(values[1]));
		if (!nulls[3])
			pfree(DatumGetPointer(values[3]));
	}
}

/*
 * deduct_batch(charges charge[]): the steps above, in order, in a memory
 * context of the call's own.  The steps that run statements do so between
 * SPI_connect and SPI_finish; SPI_finish returns to the context current at
 * SPI_connect, the batch's, and the result is written after it.
 */
Datum
pgm_deduct_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext caller_cxt = CurrentMemoryContext;
	ArrayType  *input;
	Batch		b;

	pgm_require_arg(fcinfo, 0, "charges");
	memset(&b, 0, sizeof(b));
	b.cxt = AllocSetContextCreate(caller_cxt, "pgmarket deduct_batch",
								  ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(b.cxt);
	input = PG_GETARG_ARRAYTYPE_P(0);
	b.n = batch_size(input);
	InitMaterializedSRF(fcinfo, 0);
	if (b.n > 0)
	{
		batch_read_charges(&b, input);

		pgm_spi_connect();
		prepare_plans();
		MemoryContextSwitchTo(b.cxt);
		if (b.nusers > 0)
			batch_direct_open(&b);
		batch_lock_users(&b);
		batch_users_available(&b);
		batch_find_replays(&b);
		batch_apply(&b);
		if (b.napplied > 0 && writes_keys(&b))
			batch_write_keyed(&b);
		else if (b.napplied > 0)
			batch_write(&b);
		if (b.direct)
			batch_direct_close(&b);
		pgm_spi_finish();
		batch_put_result(&b, rsinfo);
	}
	MemoryContextSwitchTo(caller_cxt);
	MemoryContextDelete(b.cxt);
	return (Datum) 0;
}
