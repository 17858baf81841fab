/*-------------------------------------------------------------------------
 *
 * heapwrite.c
 *	  Floor: pgmarket.balances and pgmarket.ledger written directly (the
 *	  table AM and the index AMs), without SPI, the plan cache or the
 *	  executor, for the hot writes of the ledger (ledger.c's single charge,
 *	  batch.c's batch).
 *
 * What is written is what the statements those callers would otherwise run
 * write, and this file says when that holds (pgm_writer_open):
 *
 *	- the tables are plain tables of the shape this file knows (the columns
 *	  by name and type; none that an INSERT leaving it out would fill or
 *	  refuse; balances found by a one-column btree primary key on user_id);
 *	- no trigger would fire: none for INSERT on the ledger, none for UPDATE
 *	  on balances except the foreign keys' own, which PostgreSQL skips
 *	  when the key does not change and the row was not written by this
 *	  transaction (pgm_writer_update_fires_fk says when it was: then the
 *	  caller takes the statement);
 *	- no row-level security applies to the user that runs the write (the
 *	  functions are SECURITY DEFINER, owned by the table owner), who has
 *	  the privileges the statement would check;
 *	- no rule rewrites the statement, and balances has no inheritance
 *	  child that the UPDATE would scan too;
 *	- the transaction is READ COMMITTED and may write: REPEATABLE READ and
 *	  SERIALIZABLE keep their snapshot rules and predicate locks through
 *	  the statements, and a read-only transaction gets the executor's
 *	  error from them.
 *
 * The writes themselves are the executor's: table_tuple_update (which
 * decides HOT and logs the update) and, when the update is not HOT, the new
 * version entered in every index; table_tuple_insert for one row,
 * table_multi_insert for many, and ExecInsertIndexTuples (unique checks,
 * partial-index predicates, 23505 on a duplicate); TOAST by the heap.  A
 * row goes through ExecConstraints first (NOT NULL and CHECK, raising
 * 23502 and 23514 as the statement would).  ExecConstraints would parse
 * every CHECK constraint from its stored node string again for every
 * ResultRelInfo, that is for every call; the expressions are kept here
 * instead, per backend, built as ExecPrepareExpr builds them, for a
 * constraint made only of plain operators and functions of the system
 * (pgm_constraint_exprs), and forgotten on a relcache invalidation of the
 * table.
 *
 * The callers own the snapshot and command id rules: a write of a row found
 * with a snapshot uses that snapshot, and a caller that stands for a
 * statement advances the command counter before it, as SPI does.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/array.h"
#include "utils/snapmgr.h"

static const char *const ledger_cols[PGM_L_NCOLS] = {
	"entry_id", "user_id", "kind", "amount", "available", "model_id",
	"tokens_used", "idempotency_key", "note", "refund_of", "reservation_id",
	"created_at"
};
static const Oid ledger_types[PGM_L_NCOLS] = {
	INT8OID, UUIDOID, TEXTOID, INT8OID, INT8OID, TEXTOID, INT8OID,
	TEXTOID, TEXTOID, INT8OID, INT8OID, TIMESTAMPTZOID
};

static const char *const balance_cols[PGM_B_NCOLS] = {
	"user_id", "total", "spent", "reserved", "next_expiry", "active",
	"updated_at", "escrowed"
};
static const Oid balance_types[PGM_B_NCOLS] = {
	UUIDOID, INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID, BOOLOID,
	TIMESTAMPTZOID, INT8OID
};

/* ----------------------------------------------------------------
 * CHECK constraints, prepared once per backend
 * ----------------------------------------------------------------
 */
#define PGM_CONSTRAINT_RELS	4

typedef struct ConstraintCache
{
	Oid			relid;			/* InvalidOid: a free entry */
	int			ncheck;
	char	  **ccbin;			/* the node strings they were built from */
	ExprState **exprs;			/* NULL: not kept (ExecConstraints builds) */
	bool		stale;			/* the table's relcache entry was invalidated */
	MemoryContext cxt;
} ConstraintCache;

static ConstraintCache constraint_cache[PGM_CONSTRAINT_RELS];

static void
forget_constraints(ConstraintCache *c)
{
	if (c->cxt)
		MemoryContextDelete(c->cxt);
	memset(c, 0, sizeof(*c));
}

/*
 * An invalidation only marks the table's expressions stale: a ResultRelInfo
 * of the call in progress may still point at them (an invalidation arrives
 * whenever a lock is taken).  The next call that asks for them, with a
 * ResultRelInfo of its own, frees them and prepares them again.
 * (pgmarket.c's relcache callback calls this.)
 */
void
pgm_heapwrite_relcache(Oid relid)
{
	int			i;

	for (i = 0; i < PGM_CONSTRAINT_RELS; i++)
		if (OidIsValid(constraint_cache[i].relid) &&
			(!OidIsValid(relid) || constraint_cache[i].relid == relid))
			constraint_cache[i].stale = true;
}

/*
 * May an expression state of this constraint outlive the statement?  Only
 * for the nodes whose evaluation keeps nothing in per-query memory, and
 * only functions of the system (a user's function could be replaced under
 * the kept expression without an invalidation of the table).
 */
static bool
plain_function(Oid funcid, void *context)
{
	return funcid >= FirstNormalObjectId;
}

static bool
keepable_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_Var:
		case T_Const:
		case T_OpExpr:
		case T_FuncExpr:
		case T_BoolExpr:
		case T_NullTest:
		case T_BooleanTest:
		case T_RelabelType:
		case T_ArrayExpr:
		case T_List:			/* an ArrayExpr's elements, walked as one */
			break;
		case T_ScalarArrayOpExpr:
			/* IN (...): a hashed one builds its table in per-query memory */
			if (OidIsValid(((ScalarArrayOpExpr *) node)->hashfuncid))
				return true;
			break;
		default:
			return true;
	}
	if (check_functions_in_node(node, plain_function, NULL))
		return true;
	return expression_tree_walker(node, keepable_walker, context);
}

/*
 * The prepared CHECK constraints of a table, in the order of its
 * TupleConstr, for ResultRelInfo.ri_ConstraintExprs; NULL when they are not
 * kept (then ExecConstraints prepares them itself, for this call).
 */
static ExprState **
pgm_constraint_exprs(Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	Oid			relid = RelationGetRelid(rel);
	ConstraintCache *c = NULL;
	MemoryContext old;
	int			i;

	if (constr == NULL || constr->num_check == 0)
		return NULL;
	for (i = 0; i < PGM_CONSTRAINT_RELS; i++)
		if (constraint_cache[i].relid == relid)
		{
			c = &constraint_cache[i];
			break;
		}
	if (c != NULL)
	{
		/* the invalidation forgets them; the strings are a second guard */
		bool		same = !c->stale && c->ncheck == constr->num_check;

		for (i = 0; same && i < c->ncheck; i++)
			same = strcmp(c->ccbin[i], constr->check[i].ccbin) == 0;
		if (same)
			return c->exprs;
		forget_constraints(c);
	}
	else
	{
		/* a free entry, or one of a table that may be gone */
		for (i = 0; i < PGM_CONSTRAINT_RELS && c == NULL; i++)
			if (!OidIsValid(constraint_cache[i].relid) ||
				constraint_cache[i].stale)
			{
				c = &constraint_cache[i];
				forget_constraints(c);
			}
		if (c == NULL)
			return NULL;
	}

	c->cxt = AllocSetContextCreate(CacheMemoryContext,
								   "pgmarket CHECK constraints",
								   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(c->cxt);
	c->ncheck = constr->num_check;
	c->ccbin = palloc(sizeof(char *) * c->ncheck);
	c->exprs = palloc(sizeof(ExprState *) * c->ncheck);
	/* every string, whether the expressions are kept or not: the next call
	 * compares them all */
	for (i = 0; i < c->ncheck; i++)
		c->ccbin[i] = pstrdup(constr->check[i].ccbin);
	for (i = 0; i < c->ncheck; i++)
	{
		Node	   *stored;
		Expr	   *expr;

		/*
		 * What ExecRelCheck and ExecPrepareExpr do, kept.  The stored tree
		 * is checked too: planning inlines an SQL function, whose body a
		 * CREATE OR REPLACE could change without an invalidation of the
		 * table.
		 */
		stored = stringToNode(constr->check[i].ccbin);
		if (keepable_walker(stored, NULL))
		{
			c->exprs = NULL;
			break;
		}
		expr = expression_planner((Expr *) stored);
		if (keepable_walker((Node *) expr, NULL))
		{
			c->exprs = NULL;
			break;
		}
		c->exprs[i] = ExecInitExpr(expr, NULL);
	}
	MemoryContextSwitchTo(old);
	c->relid = relid;
	return c->exprs;
}

/*
 * NOT NULL and CHECK constraints of a row about to be written, as the
 * executor checks them (23502, 23514 and their messages).
 */
static void
check_row(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate)
{
	if (RelationGetDescr(rri->ri_RelationDesc)->constr == NULL)
		return;
	if (rri->ri_ConstraintExprs == NULL)
		rri->ri_ConstraintExprs = pgm_constraint_exprs(rri->ri_RelationDesc);
	ExecConstraints(rri, slot, estate);
}

void
pgm_writer_check(PgmLedgerWriter *w, ResultRelInfo *rri, TupleTableSlot *slot)
{
	check_row(rri, slot, w->estate);
}

/* ----------------------------------------------------------------
 * When the direct path may be taken
 * ----------------------------------------------------------------
 */

/*
 * The attribute number of a table's column named so, of that type (NOT NULL
 * when notnull) and not generated, or InvalidAttrNumber.
 */
AttrNumber
pgm_column_number(TupleDesc desc, const char *name, Oid type, bool notnull)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->atttypid == type && (att->attnotnull || !notnull) &&
				!att->attgenerated ? att->attnum : InvalidAttrNumber;
	}
	return InvalidAttrNumber;
}

/*
 * Whether a statement of the command would fire a trigger on the table.  For
 * an UPDATE, the triggers of foreign keys do not count: the writers change
 * spent and updated_at only, never a key, and PostgreSQL itself skips those
 * triggers when the key is unchanged (RI_FKey_fk_upd_check_required and
 * RI_FKey_pk_upd_check_required) -- except, on the referencing side, for a
 * row this transaction wrote (pgm_writer_update_fires_fk).
 */
static bool
has_triggers(Relation rel, CmdType cmd, bool *fk_check)
{
	TriggerDesc *t = rel->trigdesc;
	int			i;

	*fk_check = false;
	if (t == NULL)
		return false;
	if (cmd == CMD_INSERT)
		return t->trig_insert_before_row || t->trig_insert_after_row ||
			t->trig_insert_instead_row || t->trig_insert_before_statement ||
			t->trig_insert_after_statement || t->trig_insert_new_table;
	for (i = 0; i < t->numtriggers; i++)
	{
		Trigger    *trig = &t->triggers[i];
		int			ri;

		if (trig->tgenabled == TRIGGER_DISABLED ||
			!TRIGGER_FOR_UPDATE(trig->tgtype))
			continue;
		ri = RI_FKey_trigger_type(trig->tgfoid);
		if (ri == RI_TRIGGER_NONE)
			return true;
		if (ri == RI_TRIGGER_FK)
			*fk_check = true;
	}
	return false;
}

/*
 * Whether the writers may write a table directly: a plain table that the
 * statement would write as it is, that is with no rule (which would
 * rewrite the statement), no inheritance child (which an UPDATE would scan
 * too), no trigger for the command, no row-level security that applies to
 * the function's owner, and the owner's privileges for it.
 */
bool
pgm_direct_writable(Relation rel, CmdType cmd, AclMode mode, bool *fk_check)
{
	Oid			relid = RelationGetRelid(rel);

	return rel->rd_rel->relkind == RELKIND_RELATION &&
		!rel->rd_rel->relispartition &&
		rel->rd_rules == NULL &&
		(cmd == CMD_INSERT || !rel->rd_rel->relhassubclass) &&
		!has_triggers(rel, cmd, fk_check) &&
		check_enable_rls(relid, InvalidOid, true) != RLS_ENABLED &&
		pg_class_aclcheck(relid, GetUserId(), mode) == ACLCHECK_OK;
}

/*
 * Is constraint conoid a foreign key from column fk_col alone to column
 * ref_col alone of table ref_relid?
 */
static bool
foreign_key_is(Oid conoid, AttrNumber fk_col, Oid ref_relid, AttrNumber ref_col)
{
	HeapTuple	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	Form_pg_constraint con;
	bool		same = false;

	if (!HeapTupleIsValid(tup))
		return false;
	con = (Form_pg_constraint) GETSTRUCT(tup);
	if (con->contype == CONSTRAINT_FOREIGN && con->confrelid == ref_relid)
	{
		Datum		keys[2];
		bool		isnull[2];
		AttrNumber	want[2] = {fk_col, ref_col};
		int			i;

		keys[0] = SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conkey,
								  &isnull[0]);
		keys[1] = SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_confkey,
								  &isnull[1]);
		same = true;
		for (i = 0; i < 2 && same; i++)
		{
			ArrayType  *a = isnull[i] ? NULL : DatumGetArrayTypeP(keys[i]);

			same = a != NULL && ARR_NDIM(a) == 1 && ARR_DIMS(a)[0] == 1 &&
				!ARR_HASNULL(a) && ARR_ELEMTYPE(a) == INT2OID &&
				((int16 *) ARR_DATA_PTR(a))[0] == want[i];
		}
	}
	ReleaseSysCache(tup);
	return same;
}

/*
 * May a caller write a row into rel directly, as an INSERT would, when the
 * row's column fk_col refers to the row of table ref_relid (by its column
 * ref_col) that the caller has locked in this transaction, FOR SHARE or
 * more?  pgm_direct_writable's rule, except that the checks of foreign
 * keys from fk_col to that column do not count: such a check finds the
 * referenced row and locks it FOR KEY SHARE, and the caller's lock holds
 * it already, against any DELETE or change of its key.  Any other trigger
 * for INSERT, enabled or not, or one that reads transition tables, does.
 */
bool
pgm_direct_insertable(Relation rel, AttrNumber fk_col, Oid ref_relid,
					  AttrNumber ref_col)
{
	TriggerDesc *t = rel->trigdesc;
	Oid			relid = RelationGetRelid(rel);
	int			i;

	if (rel->rd_rel->relkind != RELKIND_RELATION ||
		rel->rd_rel->relispartition || rel->rd_rules != NULL ||
		check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED ||
		pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		return false;
	if (t == NULL)
		return true;
	if (t->trig_insert_new_table)
		return false;
	for (i = 0; i < t->numtriggers; i++)
	{
		Trigger    *trig = &t->triggers[i];

		if (!TRIGGER_FOR_INSERT(trig->tgtype))
			continue;
		if (RI_FKey_trigger_type(trig->tgfoid) != RI_TRIGGER_FK ||
			!foreign_key_is(trig->tgconstraint, fk_col, ref_relid, ref_col))
			return false;
	}
	return true;
}

/*
 * Would an INSERT that leaves this column out write something into it, or
 * check what it writes?  A default of the column's or of its type (a
 * domain's), NOT NULL, a domain's constraints, a generated column.
 */
bool
pgm_column_filled_by_insert(Form_pg_attribute att)
{
	return !att->attisdropped &&
		(att->atthasdef || att->attnotnull || att->attgenerated ||
		 get_typtype(att->atttypid) == TYPTYPE_DOMAIN);
}

/*
 * Would an INSERT that writes just the n columns written[] fill or check
 * nothing in the table's other columns (pgm_column_filled_by_insert)?
 */
bool
pgm_insert_fills_nothing_else(TupleDesc desc, const AttrNumber *written, int n)
{
	int			i;
	int			c;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		for (c = 0; c < n; c++)
			if (att->attnum == written[c])
				break;
		if (c == n && pgm_column_filled_by_insert(att))
			return false;
	}
	return true;
}

/*
 * The default of a column as the table stores it (a planned expression
 * tree, not evaluated), or NULL for none: for a caller that checks what
 * an INSERT leaving the column out would write.
 */
Node *
pgm_column_default(Relation rel, AttrNumber attnum)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	int			i;

	if (constr == NULL)
		return NULL;
	for (i = 0; i < constr->num_defval; i++)
		if (constr->defval[i].adnum == attnum)
			return stringToNode(constr->defval[i].adbin);
	return NULL;
}

/*
 * Write the row in slot (a virtual slot of rel, every column filled) as an
 * INSERT of it does, for a caller that has checked that nothing else would
 * be written (pgm_direct_insertable, the columns' defaults): the command
 * counter advanced first as SPI does before a statement, the row's NOT
 * NULL and CHECK constraints (23502, 23514), the heap (TOAST included),
 * then every index, with its predicate and uniqueness (23505).
 */
void
pgm_insert_row(Relation rel, TupleTableSlot *slot)
{
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	CommandId	cid;

	CommandCounterIncrement();
	cid = GetCurrentCommandId(true);
	CheckCmdReplicaIdentity(rel, CMD_INSERT);
	InitResultRelInfo(rri, rel, 0, NULL, 0);
	ExecOpenIndices(rri, false);
	check_row(rri, slot, estate);
	table_tuple_insert(rel, slot, cid, 0, NULL);
	list_free(ExecInsertIndexTuples(rri, slot, estate, false, false, NULL,
									NIL));
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
}

/*
 * Open the direct path into *w, or return false (having opened nothing)
 * for the statements, when the direct one would not write exactly what they
 * write: under REPEATABLE READ or SERIALIZABLE, when a table has a trigger
 * for the command, row-level security that applies, a column the writers
 * do not know that has a default or must be set, or when balances is not
 * found by a one-column primary key on user_id.  The optional balance
 * column escrowed (0.8.0) is InvalidAttrNumber in w->bcol when absent.
 * The tables are locked as the statements lock them, to the end of the
 * transaction: balances for an UPDATE when update_balances, else only
 * read (a slot charge, whose statement reads the balance row: the writer
 * then cannot update it, and balances' triggers do not matter).
 */
bool
pgm_writer_open(PgmLedgerWriter *w, bool update_balances)
{
	LOCKMODE	balances_lock = update_balances ? RowExclusiveLock : AccessShareLock;
	Oid			nsp;
	Oid			balances_id;
	Oid			ledger_id;
	TupleDesc	desc;
	Oid			pkey;
	bool		fk_ledger;
	AttrNumber	written[PGM_L_NCOLS];
	int			n;
	int			i;

	memset(w, 0, sizeof(*w));

	/*
	 * The statements keep the snapshot rules of REPEATABLE READ and
	 * SERIALIZABLE, and refuse to write in a read-only transaction (or a
	 * parallel operation) with the executor's own error.
	 */
	if (IsolationUsesXactSnapshot() || XactReadOnly || IsInParallelMode())
		return false;
	nsp = get_namespace_oid("pgmarket", true);
	balances_id = get_relname_relid("balances", nsp);
	ledger_id = get_relname_relid("ledger", nsp);
	if (!OidIsValid(balances_id) || !OidIsValid(ledger_id))
		return false;
	w->balances = table_open(balances_id, balances_lock);
	w->ledger = table_open(ledger_id, RowExclusiveLock);
	if ((update_balances &&
		 !pgm_direct_writable(w->balances, CMD_UPDATE, ACL_SELECT | ACL_UPDATE,
							  &w->balances_fk_check)) ||
		!pgm_direct_writable(w->ledger, CMD_INSERT, ACL_INSERT, &fk_ledger))
		goto refuse;

	desc = RelationGetDescr(w->balances);
	for (i = 0; i < PGM_B_NCOLS; i++)
	{
		w->bcol[i] = pgm_column_number(desc, balance_cols[i], balance_types[i],
								   i != PGM_B_NEXT_EXPIRY);
		if (w->bcol[i] == InvalidAttrNumber && i != PGM_B_ESCROWED)
			goto refuse;
	}
	if (desc->constr && desc->constr->has_generated_stored)
		goto refuse;
	pkey = RelationGetPrimaryKeyIndex(w->balances);
	if (!OidIsValid(pkey))
		goto refuse;
	w->balances_pkey = index_open(pkey, AccessShareLock);
	if (w->balances_pkey->rd_rel->relam != BTREE_AM_OID ||
		w->balances_pkey->rd_index->indnatts != 1 ||
		w->balances_pkey->rd_index->indkey.values[0] != w->bcol[PGM_B_USER_ID])
		goto refuse;

	desc = RelationGetDescr(w->ledger);
	for (i = 0; i < PGM_L_NCOLS; i++)
	{
		w->lcol[i] = pgm_column_number(desc, ledger_cols[i], ledger_types[i], false);
		if (w->lcol[i] == InvalidAttrNumber)
			goto refuse;
	}
	/* a charge's INSERT leaves note, refund_of, reservation_id out */
	for (i = 0, n = 0; i < PGM_L_NCOLS; i++)
		if (i != PGM_L_NOTE && i != PGM_L_REFUND_OF && i != PGM_L_RESERVATION_ID)
			written[n++] = w->lcol[i];
	if (!pgm_insert_fills_nothing_else(desc, written, n))
		goto refuse;

	CheckCmdReplicaIdentity(w->ledger, CMD_INSERT);
	w->estate = CreateExecutorState();
	if (update_balances)
	{
		CheckCmdReplicaIdentity(w->balances, CMD_UPDATE);
		w->balances_rri = makeNode(ResultRelInfo);
		InitResultRelInfo(w->balances_rri, w->balances, 0, NULL, 0);
		ExecOpenIndices(w->balances_rri, false);
	}
	w->ledger_rri = makeNode(ResultRelInfo);
	InitResultRelInfo(w->ledger_rri, w->ledger, 0, NULL, 0);
	ExecOpenIndices(w->ledger_rri, false);
	w->now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	w->kind_charge = CStringGetTextDatum("charge");
	return true;

refuse:
	if (w->balances_pkey)
		index_close(w->balances_pkey, AccessShareLock);
	table_close(w->ledger, RowExclusiveLock);
	table_close(w->balances, balances_lock);
	memset(w, 0, sizeof(*w));
	return false;
}

/* Close the direct path; the tables stay locked to the end of the transaction. */
void
pgm_writer_close(PgmLedgerWriter *w)
{
	if (w->scan)
		pgm_writer_scan_end(w);
	if (w->balances_rri)
		ExecCloseIndices(w->balances_rri);
	ExecCloseIndices(w->ledger_rri);
	FreeExecutorState(w->estate);
	index_close(w->balances_pkey, NoLock);
	table_close(w->ledger, NoLock);
	table_close(w->balances, NoLock);
	memset(w, 0, sizeof(*w));
}

/* ----------------------------------------------------------------
 * The balance rows
 * ----------------------------------------------------------------
 */

/* Begin looking balance rows up through the primary key, with a snapshot. */
void
pgm_writer_scan_begin(PgmLedgerWriter *w, Snapshot snapshot)
{
	w->snapshot = snapshot;
	w->scan = index_beginscan(w->balances, w->balances_pkey, snapshot, 1, 0);
}

void
pgm_writer_scan_end(PgmLedgerWriter *w)
{
	index_endscan(w->scan);
	w->scan = NULL;
	w->snapshot = NULL;
}

/*
 * The version of a user's balance row that the scan's snapshot sees, into
 * slot (a slot of balances, table_slot_create); false when there is none.
 */
bool
pgm_writer_find(PgmLedgerWriter *w, const pg_uuid_t *user, TupleTableSlot *slot)
{
	ScanKeyData key;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(user));
	index_rescan(w->scan, &key, 1, NULL, 0);
	return index_getnext_slot(w->scan, ForwardScanDirection, slot);
}

/*
 * Lock the newest version of the balance row at *tid, waiting for its
 * writer, as SELECT ... FOR UPDATE (LockTupleExclusive) or an UPDATE's
 * re-check of a row that changed under it (the update's lock mode) do
 * under READ COMMITTED; the version locked goes into slot, its place into
 * slot->tts_tid.
 */
TM_Result
pgm_writer_lock(PgmLedgerWriter *w, ItemPointer tid, TupleTableSlot *slot,
				LockTupleMode mode)
{
	TM_FailureData tmfd;
	ItemPointerData at = *tid;

	ExecClearTuple(slot);
	return table_tuple_lock(w->balances, &at, w->snapshot, slot,
							GetCurrentCommandId(true), mode, LockWaitBlock,
							TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
}

/*
 * Would an UPDATE of this version of a balance row fire the foreign key's
 * check?  PostgreSQL fires it, key unchanged or not, when the row was
 * written by this transaction (RI_FKey_fk_upd_check_required); the
 * writers then take the statement, which does.
 */
bool
pgm_writer_update_fires_fk(PgmLedgerWriter *w, HeapTuple oldtup)
{
	return w->balances_fk_check &&
		TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(oldtup->t_data));
}

/*
 * Write the new version of the balance row at *tid (newslot: a heap tuple
 * slot of balances), as ExecUpdate does: its constraints checked, the
 * update made with the snapshot the row was found with, waiting for a
 * concurrent writer, and the new version entered in every index when the
 * update could not stay on the page (not HOT).  Returns the table AM's
 * result; on TM_Updated, *lockmode is the mode to lock the newest version
 * with before a re-check.
 */
TM_Result
pgm_writer_update(PgmLedgerWriter *w, ItemPointer tid, TupleTableSlot *newslot,
				  CommandId cid, LockTupleMode *lockmode)
{
	TM_FailureData tmfd;
	TM_Result	result;
	bool		update_indexes;

	pgm_writer_check(w, w->balances_rri, newslot);
	result = table_tuple_update(w->balances, tid, newslot, cid,
								w->snapshot ? w->snapshot : GetActiveSnapshot(),
								InvalidSnapshot, true, &tmfd, lockmode,
								&update_indexes);
	if (result == TM_Ok && update_indexes &&
		w->balances_rri->ri_NumIndices > 0)
		list_free(ExecInsertIndexTuples(w->balances_rri, newslot, w->estate,
										true, false, NULL, NIL));
	ResetPerTupleExprContext(w->estate);
	return result;
}

/* ----------------------------------------------------------------
 * Ledger entries
 * ----------------------------------------------------------------
 */

/*
 * Fill slot (of the ledger's tuple descriptor) with a charge's entry as a
 * charge's INSERT writes it: the columns it leaves out NULL, created_at
 * now().  model_id is a text Datum; key a text Datum or 0 for none.
 */
void
pgm_writer_charge_entry(PgmLedgerWriter *w, TupleTableSlot *slot,
						int64 entry_id, const pg_uuid_t *user, int64 amount,
						int64 available, Datum model_id, int64 tokens,
						Datum key)
{
	int			natts = slot->tts_tupleDescriptor->natts;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * natts);
#define SET(col, value) \
	(slot->tts_values[w->lcol[col] - 1] = (value), \
	 slot->tts_isnull[w->lcol[col] - 1] = false)
	SET(PGM_L_ENTRY_ID, Int64GetDatum(entry_id));
	SET(PGM_L_USER_ID, UUIDPGetDatum(user));
	SET(PGM_L_KIND, w->kind_charge);
	SET(PGM_L_AMOUNT, Int64GetDatum(amount));
	SET(PGM_L_AVAILABLE, Int64GetDatum(available));
	SET(PGM_L_MODEL_ID, model_id);
	SET(PGM_L_TOKENS_USED, Int64GetDatum(tokens));
	if (key != (Datum) 0)
		SET(PGM_L_IDEMPOTENCY_KEY, key);
	SET(PGM_L_CREATED_AT, w->now);
#undef SET
	ExecStoreVirtualTuple(slot);
}

/*
 * Write k ledger entries (slots, in the order of their ids) as an INSERT
 * does: each row's constraints checked, the rows written to the heap (one
 * table_tuple_insert for one row, one table_multi_insert for more: a WAL
 * record per heap page, not per row), then entered in every index of the
 * ledger in the order of index_order (NULL: the same order), so that a
 * caller can give them in key order and consecutive insertions land on the
 * same leaf pages.  A unique index raises 23505 as the INSERT would.
 */
void
pgm_writer_insert_entries(PgmLedgerWriter *w, TupleTableSlot **slots,
						  TupleTableSlot **index_order, int k, CommandId cid)
{
	int			i;

	for (i = 0; i < k; i++)
		pgm_writer_check(w, w->ledger_rri, slots[i]);
	if (k == 1)
		table_tuple_insert(w->ledger, slots[0], cid, 0, NULL);
	else
		table_multi_insert(w->ledger, slots, k, cid, 0, NULL);
	if (index_order == NULL)
		index_order = slots;
	for (i = 0; i < k; i++)
		list_free(ExecInsertIndexTuples(w->ledger_rri, index_order[i],
										w->estate, false, false, NULL, NIL));
	ResetPerTupleExprContext(w->estate);
}
