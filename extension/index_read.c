/*-------------------------------------------------------------------------
 *
 * index_read.c
 *	  Floor: read rows of a pgmarket table by one of its btree indexes
 *	  directly (genam), without SPI, the plan cache or the executor.  For
 *	  the hot reads of a single row or a short range, where starting a plan
 *	  costs more than the read.
 *
 * A caller describes what it reads in a static PgmIndexRef: the table and
 * index by name in schema pgmarket, the strategy of each index key column
 * it may compare (BTEqualStrategyNumber, BTLessStrategyNumber, ...) and the
 * columns it reads, by name and type.  The first use in a backend looks the
 * OIDs, attribute numbers and comparison procedures up; a relcache
 * invalidation of the table or the index (DROP and CREATE EXTENSION in the
 * same session among others) forgets them, and the next use looks them up
 * again by name.
 *
 * The reads follow the rules of a SELECT: AccessShareLock on the table and
 * the index until the end of the transaction, rows visible to the snapshot
 * the caller gives (an MVCC snapshot), the scan keys compared with the
 * index's operator family and collation.  No privilege or row security
 * check is made: the callers are SECURITY DEFINER functions owned by the
 * superuser who created the extension, for whom neither applies.
 *
 * Datums read are valid until the next row is fetched or the scan ends;
 * copy what must live longer.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/xact.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_trigger.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "storage/lmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#define PGM_INDEX_SCHEMA		"pgmarket"
#define PGM_INDEX_MAX_REFS		16

static PgmIndexRef *known_refs[PGM_INDEX_MAX_REFS];
static int	n_known_refs = 0;

/*
 * Forget the OIDs of every ref on its table or index (or on all): the
 * relcache invalidation, through pgmarket.c's callback.
 */
void
pgm_index_read_relcache(Oid relid)
{
	int			i;

	for (i = 0; i < n_known_refs; i++)
	{
		PgmIndexRef *ref = known_refs[i];

		if (relid == InvalidOid || relid == ref->relid ||
			relid == ref->indexid)
		{
			ref->relid = InvalidOid;
			ref->indexid = InvalidOid;
			ref->plain_indexes = 0;
		}
	}
}

/*
 * A table or index of the extension that is no longer as pgmarket made it
 * (an owner's ALTER): 55000, with what differs, rather than an internal
 * error.
 */
static void
raise_changed(const char *relname, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("%s.%s is not as the pgmarket extension made it",
					PGM_INDEX_SCHEMA, relname),
			 errdetail_internal("%s", detail),
			 errhint("pgmarket reads its tables through their indexes; restore the table, or reinstall the extension.")));
}

/* Look up a ref's OIDs, attribute numbers and comparison procedures. */
static void
resolve_ref(PgmIndexRef *ref)
{
	Oid			nsp;
	Oid			relid;
	Oid			indexid;
	Relation	index;
	int			i;

	if (!ref->registered)
	{
		if (n_known_refs >= PGM_INDEX_MAX_REFS)
			elog(ERROR, "too many index reads registered");
		known_refs[n_known_refs++] = ref;
		ref->registered = true;
	}
	Assert(ref->ncols <= PGM_INDEX_MAX_COLS);
	Assert(ref->nkeys <= PGM_INDEX_MAX_KEYS);

	nsp = get_namespace_oid(PGM_INDEX_SCHEMA, false);
	relid = get_relname_relid(ref->relname, nsp);
	if (!OidIsValid(relid))
		raise_changed(ref->relname, "It does not exist.");
	indexid = get_relname_relid(ref->indexname, nsp);
	if (!OidIsValid(indexid))
		raise_changed(ref->relname, psprintf("Its index %s does not exist.",
											 ref->indexname));

	for (i = 0; i < ref->ncols; i++)
	{
		AttrNumber	attno = get_attnum(relid, ref->colnames[i]);

		if (attno == InvalidAttrNumber)
			raise_changed(ref->relname, psprintf("Its column %s does not exist.",
												 ref->colnames[i]));
		if (get_atttype(relid, attno) != ref->coltypes[i])
			raise_changed(ref->relname,
						  psprintf("Its column %s is of type %s, not %s.",
								   ref->colnames[i],
								   format_type_be(get_atttype(relid, attno)),
								   format_type_be(ref->coltypes[i])));
		ref->attnums[i] = attno;
	}

	index = index_open(indexid, AccessShareLock);
	if (index->rd_index->indrelid != relid ||
		index->rd_rel->relam != BTREE_AM_OID ||
		index->rd_index->indnkeyatts < ref->nkeys ||
		RelationGetIndexExpressions(index) != NIL ||
		RelationGetIndexPredicate(index) != NIL)
		raise_changed(ref->relname,
					  psprintf("Its index %s is not a plain btree index of it.",
							   ref->indexname));
	for (i = 0; i < ref->nkeys; i++)
	{
		Oid			opcintype = index->rd_opcintype[i];
		Oid			op = get_opfamily_member(index->rd_opfamily[i], opcintype,
											 opcintype, ref->strategies[i]);

		if (!OidIsValid(op))
			raise_changed(ref->relname,
						  psprintf("Its index %s has no operator of strategy %d on column %d.",
								   ref->indexname, ref->strategies[i], i + 1));
		ref->procs[i] = get_opcode(op);
		ref->collations[i] = index->rd_indcollation[i];
	}
	index_close(index, NoLock);

	/* last: a ref with a valid relid is whole */
	ref->indexid = indexid;
	ref->relid = relid;
}

/*
 * Start a scan of ref's index for the rows whose first nkeys key columns
 * compare with values[] by the ref's strategies, visible to snapshot.
 */
void
pgm_index_begin(PgmIndexScan *s, PgmIndexRef *ref, Snapshot snapshot,
				int nkeys, const Datum *values)
{
	ScanKeyData keys[PGM_INDEX_MAX_KEYS];
	int			i;

	Assert(nkeys >= 1 && nkeys <= ref->nkeys);
	if (!OidIsValid(ref->relid))
		resolve_ref(ref);
	/* copied first: opening may process an invalidation of the ref */
	s->ref = ref;
	memcpy(s->attnums, ref->attnums, sizeof(s->attnums));
	for (i = 0; i < nkeys; i++)
		ScanKeyEntryInitialize(&keys[i], 0, i + 1, ref->strategies[i],
							   InvalidOid, ref->collations[i], ref->procs[i],
							   values[i]);
	s->index_oid = ref->indexid;
	s->heap = table_open(ref->relid, AccessShareLock);
	s->index = index_open(s->index_oid, AccessShareLock);
	s->slot = table_slot_create(s->heap, NULL);
	s->scan = index_beginscan(s->heap, s->index, snapshot, nkeys, 0);
	index_rescan(s->scan, keys, nkeys, NULL, 0);
}

/*
 * The look-up of one key: pgm_index_begin, then the first row in the
 * index's order.  False when there is none; the scan is open either way,
 * for pgm_index_end.
 */
bool
pgm_index_find(PgmIndexScan *s, PgmIndexRef *ref, Snapshot snapshot,
			   int nkeys, const Datum *values)
{
	pgm_index_begin(s, ref, snapshot, nkeys, values);
	return pgm_index_next(s, ForwardScanDirection);
}

/* The next row in direction dir, into s->slot; false at the end. */
bool
pgm_index_next(PgmIndexScan *s, ScanDirection dir)
{
	return index_getnext_slot(s->scan, dir, s->slot);
}

/* Column col (its place in the ref's colnames) of the current row. */
Datum
pgm_index_col(PgmIndexScan *s, int col, bool *isnull)
{
	return slot_getattr(s->slot, s->attnums[col], isnull);
}

/*
 * Every column of the ref of the current row, in the ref's order, deformed
 * at once.  Pass-by-reference values point into the row's buffer.
 */
void
pgm_index_row(PgmIndexScan *s, Datum *values, bool *nulls)
{
	TupleTableSlot *slot = s->slot;
	int			maxatt = 0;
	int			i;

	for (i = 0; i < s->ref->ncols; i++)
		maxatt = Max(maxatt, s->attnums[i]);
	slot_getsomeattrs(slot, maxatt);
	for (i = 0; i < s->ref->ncols; i++)
	{
		values[i] = slot->tts_values[s->attnums[i] - 1];
		nulls[i] = slot->tts_isnull[s->attnums[i] - 1];
	}
}

/* End the scan; the locks stay until the end of the transaction. */
void
pgm_index_end(PgmIndexScan *s)
{
	index_endscan(s->scan);
	ExecDropSingleTupleTableSlot(s->slot);
	index_close(s->index, NoLock);
	table_close(s->heap, NoLock);
}

/*
 * Set up a materialized set-returning call for rows read here: with the
 * descriptor the executor expects when it gives one, which saves building
 * the function's result type from the catalogs at every call.
 */
void
pgm_materialize(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	if (rsinfo != NULL && IsA(rsinfo, ReturnSetInfo) &&
		rsinfo->expectedDesc != NULL)
		InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	else
		InitMaterializedSRF(fcinfo, 0);
}

/* ----------------------------------------------------------------
 * Locking and updating the row a scan found
 *
 * For the hot writes of one row that a caller has just found: what
 * SELECT ... FOR NO KEY UPDATE and a one-row UPDATE of some of the ref's
 * columns would do, without the executor.  Only for a table where that is
 * all the executor would do (pgm_index_can_update): heapwrite.c's rule of
 * what a direct write may skip (pgm_direct_writable: no trigger but the
 * foreign keys' own, which an UPDATE that leaves the key alone does not
 * fire unless this transaction wrote the row; no rule, no inheritance
 * child, no row-level security that applies), no stored generated column,
 * the CHECK constraints the caller knows of (it writes values that satisfy
 * them), and plain btree indexes on columns only.
 * ----------------------------------------------------------------
 */

/*
 * Is every index of the scan's table a plain btree on columns (what
 * insert_index_entries can fill)?  Kept in the ref until a relcache
 * invalidation of the table, which a new or dropped index sends; the
 * caller holds RowExclusiveLock, which CREATE INDEX waits for.
 */
static bool
indexes_plain(PgmIndexScan *s)
{
	List	   *indexes;
	ListCell   *lc;
	bool		ok = true;

	if (s->ref->plain_indexes != 0 && s->ref->relid == RelationGetRelid(s->heap))
		return s->ref->plain_indexes == 1;
	indexes = RelationGetIndexList(s->heap);
	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);

		if (idx->rd_rel->relam != BTREE_AM_OID ||
			RelationGetIndexExpressions(idx) != NIL ||
			RelationGetIndexPredicate(idx) != NIL)
			ok = false;
		index_close(idx, NoLock);
	}
	list_free(indexes);
	if (s->ref->relid == RelationGetRelid(s->heap))
		s->ref->plain_indexes = ok ? 1 : 2;
	return ok;
}

/*
 * May pgm_index_update_row write this table?  checks: how many CHECK
 * constraints the caller's values are known to satisfy.  Reads only the
 * relcache entry the scan holds open.
 */
bool
pgm_index_can_update(PgmIndexScan *s, int checks)
{
	Relation	rel = s->heap;
	bool		ok = true;
	bool		fk_check;
	bool		shouldfree;
	HeapTuple	row;

	/* the executor's lock for an UPDATE, before what it decides is read */
	LockRelationOid(RelationGetRelid(rel), RowExclusiveLock);
	if (!pgm_direct_writable(rel, CMD_UPDATE, ACL_SELECT | ACL_UPDATE, &fk_check) ||
		(rel->rd_att->constr ? rel->rd_att->constr->num_check : 0) != checks ||
		(rel->rd_att->constr && rel->rd_att->constr->has_generated_stored))
		return false;
	/* a foreign key checks a row this transaction wrote, even unchanged */
	row = ExecFetchSlotHeapTuple(s->slot, false, &shouldfree);
	if (fk_check &&
		TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(row->t_data)))
		ok = false;
	if (shouldfree)
		heap_freetuple(row);
	if (!ok)
		return false;
	/* a publication that cannot replicate an UPDATE refuses it, as SQL does */
	CheckCmdReplicaIdentity(rel, CMD_UPDATE);
	return indexes_plain(s);
}

static bool lock_row(PgmIndexScan *s, int lockmode, LockWaitPolicy wait);

/*
 * Lock the scan's current row in mode, waiting for a transaction that
 * holds it, and put its newest version in the scan's slot, as SELECT ...
 * FOR UPDATE does: under READ COMMITTED a row updated meanwhile is followed
 * to its newest version (the caller looks again at what it read), under
 * REPEATABLE READ or SERIALIZABLE a row changed since the snapshot raises
 * 40001.  False for a row deleted meanwhile or changed by this command.
 */
bool
pgm_index_lock_row(PgmIndexScan *s, int lockmode)
{
	return lock_row(s, lockmode, LockWaitBlock);
}

/*
 * The same as FOR UPDATE SKIP LOCKED takes it: false, without waiting, when
 * another transaction holds a conflicting lock on the row.
 */
bool
pgm_index_try_lock_row(PgmIndexScan *s, int lockmode)
{
	return lock_row(s, lockmode, LockWaitSkip);
}

/*
 * Does the row in the scan's slot still meet the scan's keys?  For a row
 * version that a lock reached by following its update chain: the
 * statement's recheck (EvalPlanQual), for a key that an UPDATE changed.
 */
static bool
keys_still_match(PgmIndexScan *s)
{
	IndexScanDesc scan = s->scan;
	int			i;

	for (i = 0; i < scan->numberOfKeys; i++)
	{
		ScanKey		key = &scan->keyData[i];
		AttrNumber	heapatt = s->index->rd_index->indkey.values[key->sk_attno - 1];
		bool		isnull;
		Datum		value;

		if (heapatt == InvalidAttrNumber)
			return false;
		value = slot_getattr(s->slot, heapatt, &isnull);
		if (isnull ||
			!DatumGetBool(FunctionCall2Coll(&key->sk_func, key->sk_collation,
											value, key->sk_argument)))
			return false;
	}
	return true;
}

static bool
lock_row(PgmIndexScan *s, int lockmode, LockWaitPolicy wait)
{
	TM_FailureData tmfd;
	TM_Result	res;
	ItemPointerData tid = s->slot->tts_tid;
	int			flags = TUPLE_LOCK_FLAG_LOCK_UPDATE_IN_PROGRESS;

	if (!IsolationUsesXactSnapshot())
		flags |= TUPLE_LOCK_FLAG_FIND_LAST_VERSION;
	LockRelationOid(RelationGetRelid(s->heap), RowShareLock);
	res = table_tuple_lock(s->heap, &tid, s->scan->xs_snapshot, s->slot,
						   GetCurrentCommandId(false), (LockTupleMode) lockmode, wait,
						   flags, &tmfd);
	switch (res)
	{
		case TM_Ok:
			/* a newer version than the scan found: its keys again */
			return !tmfd.traversed || keys_still_match(s);
		case TM_WouldBlock:
		case TM_SelfModified:
			return false;
		case TM_Updated:
		case TM_Deleted:
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update")));
			if (res == TM_Deleted)
				return false;
			break;
		default:
			break;
	}
	elog(ERROR, "unexpected table_tuple_lock status: %d", (int) res);
	return false;				/* not reached */
}

/* Index the new version of a row that could not stay on its page (not HOT). */
static void
insert_index_entries(Relation rel, HeapTuple tup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *info = BuildIndexInfo(idx);
		Datum		values[INDEX_MAX_KEYS];
		bool		nulls[INDEX_MAX_KEYS];
		int			i;

		/* an index being built concurrently takes no entries yet */
		if (!info->ii_ReadyForInserts)
		{
			index_close(idx, NoLock);
			continue;
		}
		for (i = 0; i < info->ii_NumIndexAttrs; i++)
			values[i] = heap_getattr(tup, info->ii_IndexAttrNumbers[i], desc,
									 &nulls[i]);
		index_insert(idx, values, nulls, &tup->t_self, rel,
					 idx->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 true, info);
		index_close(idx, NoLock);
	}
	list_free(indexes);
}

/*
 * The new version of the scan's current row: its ref columns replaced by
 * values/nulls (in the ref's order).
 */
static HeapTuple
new_version(PgmIndexScan *s, const Datum *values, const bool *nulls)
{
	TupleDesc	desc = RelationGetDescr(s->heap);
	Datum	   *newvalues = palloc0(sizeof(Datum) * desc->natts);
	bool	   *newnulls = palloc0(sizeof(bool) * desc->natts);
	bool	   *replace = palloc0(sizeof(bool) * desc->natts);
	HeapTuple	oldtup;
	HeapTuple	newtup;
	bool		shouldfree;
	int			i;

	for (i = 0; i < s->ref->ncols; i++)
	{
		newvalues[s->attnums[i] - 1] = values[i];
		newnulls[s->attnums[i] - 1] = nulls[i];
		replace[s->attnums[i] - 1] = true;
	}
	LockRelationOid(RelationGetRelid(s->heap), RowExclusiveLock);
	oldtup = ExecFetchSlotHeapTuple(s->slot, false, &shouldfree);
	newtup = heap_modify_tuple(oldtup, desc, newvalues, newnulls, replace);
	if (shouldfree)
		heap_freetuple(oldtup);
	pfree(newvalues);
	pfree(newnulls);
	pfree(replace);
	return newtup;
}

/*
 * Replace the ref's columns of the scan's current row, which this
 * transaction has locked (pgm_index_lock_row), by values/nulls (in the
 * ref's order), as an UPDATE of them would: a new row version (HOT when
 * no indexed column changes and the page has room, indexed otherwise),
 * WAL, statistics.  The caller has checked pgm_index_can_update and writes
 * values that satisfy the table's CHECK constraints.
 */
void
pgm_index_update_row(PgmIndexScan *s, const Datum *values, const bool *nulls)
{
	HeapTuple	newtup = new_version(s, values, nulls);

	simple_heap_update(s->heap, &s->slot->tts_tid, newtup);
	if (!HeapTupleIsHeapOnly(newtup))
		insert_index_entries(s->heap, newtup);
	heap_freetuple(newtup);
}

/*
 * The same for a row the scan read but did not lock, as an UPDATE's first
 * try does: the update waits for a concurrent writer of the row, and
 * writes only when the version read is still the newest.  False, with
 * nothing written, when it is not (another transaction updated or deleted
 * it, or this command did): the caller then locks the newest version
 * (pgm_index_lock_row, which raises 40001 under REPEATABLE READ) and
 * decides again on what it holds.  Saves the lock's WAL record for a row
 * that is seldom written by two transactions at once (an API key's spend
 * row).
 */
bool
pgm_index_try_update_row(PgmIndexScan *s, const Datum *values,
						 const bool *nulls)
{
	HeapTuple	newtup = new_version(s, values, nulls);
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	TM_Result	res;

	res = heap_update(s->heap, &s->slot->tts_tid, newtup,
					  GetCurrentCommandId(true), InvalidSnapshot, true,
					  &tmfd, &lockmode);
	if (res == TM_Ok && !HeapTupleIsHeapOnly(newtup))
		insert_index_entries(s->heap, newtup);
	heap_freetuple(newtup);
	if (res == TM_Invisible)
		elog(ERROR, "attempted to update invisible tuple");
	return res == TM_Ok;
}
