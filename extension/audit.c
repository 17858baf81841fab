/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  Capturing changes into the audit trail: the trigger that writes
 *	  pgmarket.audit_log, the events enable_audit, disable_audit and the
 *	  chain's calls record there (audit_event, RESTORE, PURGE), and the
 *	  trail's relations.  Sealing, verifying and purging the trail is
 *	  audit_chain.c's; what the two share is in audit.h.
 *
 * The trigger
 * -----------
 * audit_trigger() runs in three forms.  The one enable_audit attaches to a
 * table is per statement: AFTER INSERT, AFTER UPDATE and AFTER DELETE FOR
 * EACH STATEMENT, each with its transition tables, which it reads at the
 * end of the statement (an UPDATE's i-th old row is the old version of its
 * i-th new row).  A partitioned table, a partition or an inheritance child
 * has the row form instead (AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW):
 * a statement trigger does not fire for rows that reach a table through its
 * parent.  TRUNCATE has a statement trigger of its own, recorded as an act.
 * Its arguments (TG_ARGV, cached with the trigger in the relcache) are the
 * columns to redact (and on pgmarket's own tables the personal columns,
 * personal.c).  Per changed row, either form builds, in C: row_key (the
 * primary key columns, or the whole row when the table has no primary key),
 * old_values / new_values (an INSERT: new only, every column; a DELETE: old
 * only; an UPDATE: only the columns whose binary images differ,
 * datum_image_eq), changed_columns, and the context of the change: the
 * transaction's start time, its top-level transaction id, pgmarket.actor,
 * the role in effect at the SQL surface (GetOuterUserId: SET ROLE counts,
 * a SECURITY DEFINER function does not), the client address and
 * application_name.  A redacted column is listed in changed_columns but its
 * value is the JSON string "[redacted]" wherever it would appear.  What the
 * rows of a statement share is worked out once (StmtAudit).
 *
 * The rows go straight into the heap of audit_log and its index, in the
 * transaction of the change: no executor, no plan, no permission check on
 * audit_log (the trigger is the only writer; application roles hold no
 * privilege on it).  A statement's rows are written in batches: one
 * heap_multi_insert (one WAL record per page), then each row's primary key
 * entry, in id order; their memory is kept for the backend's life, so that
 * a batch does not fault fresh pages in.  Values of the common types go into
 * jsonb without a detour through text; any other type goes through to_jsonb
 * itself, so the JSON is what to_jsonb(OLD) would give.
 *
 * Every writer takes its top-level transaction id BEFORE it draws an id
 * from audit_log_id_seq (audit_context, then audit_write): the sealer's
 * rule depends on it (audit_chain.c).  Writers never touch audit_seals.
 *
 * No wrapper turns the trigger off: a change made through COPY (...) TO, a
 * CTE, a function, a prepared statement or a cursor is recorded like any
 * other.  The one exception is a restore: a top-level COPY FROM into one of
 * pgmarket's own tables by a superuser session (is_restore_copy), which is
 * what pg_restore and a plain dump do; the restored audit_log already holds
 * the history of those rows.  The restore of audit_log itself is recorded as
 * one RESTORE event (audit_restored).
 *
 * Who may attach or detach the trigger: the owner of the table, or a
 * superuser, judged on the role at the SQL surface (audit_require_owner).
 *
 *-------------------------------------------------------------------------
 */
#include "audit.h"

#include <sodium.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "nodes/primnodes.h"
#include "tcop/pquery.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(pgm_audit_trigger);
PG_FUNCTION_INFO_V1(pgm_audit_event);
PG_FUNCTION_INFO_V1(pgm_audit_require_owner);
PG_FUNCTION_INFO_V1(pgm_audit_restored);

/* pgmarket.audit_internal: enable_audit or disable_audit is at work */
static bool pgm_audit_internal = false;

/*
 * Define pgmarket.audit_internal; called from _PG_init before the prefix is
 * reserved.
 */
void
pgm_audit_init(void)
{
	DefineCustomBoolVariable("pgmarket.audit_internal",
							 "Set by enable_audit and disable_audit while they change a table's audit triggers.",
							 "The DDL event trigger records other changes of those triggers; only a superuser (the functions' owner) may set this.",
							 &pgm_audit_internal,
							 false,
							 PGC_SUSET,
							 GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
}

PG_FUNCTION_INFO_V1(pgm_audit_internal_active);

/*
 * audit_internal_active() RETURNS boolean: is enable_audit or disable_audit
 * changing a table's audit triggers?  The DDL event trigger asks this C
 * flag, which only the defined (superuser-only) setting moves: calling it
 * loads the library first, which discards a placeholder value that a
 * non-superuser may have set before.  Internal: granted to nobody.
 */
Datum
pgm_audit_internal_active(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pgm_audit_internal);
}

#define AUDIT_SCHEMA		"pgmarket"
#define AUDIT_REDACTED		"[redacted]"

/* ----------------------------------------------------------------
 * Relations, looked up once per backend
 * ----------------------------------------------------------------
 */
static AuditRels audit_rels = {InvalidOid, InvalidOid, InvalidOid, InvalidOid};

/* Forget the relations on an invalidation (pgmarket.c's callback). */
void
pgm_audit_relcache(Oid relid)
{
	if (relid == InvalidOid || relid == audit_rels.log ||
		relid == audit_rels.seq || relid == audit_rels.seals)
	{
		audit_rels.log = InvalidOid;
		audit_rels.seq = InvalidOid;
		audit_rels.seals = InvalidOid;
		audit_rels.nsp = InvalidOid;
	}
}

static Oid
audit_relid(const char *name)
{
	Oid			relid = get_relname_relid(name, audit_rels.nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "relation %s.%s does not exist", AUDIT_SCHEMA, name);
	return relid;
}

/*
 * The trail's relations.  A copy: a relcache invalidation (any lock taken
 * after this call) may clear the cache, never the caller's copy.
 */
AuditRels
pgm_audit_rels(void)
{
	if (OidIsValid(audit_rels.log))
		return audit_rels;
	audit_rels.nsp = get_namespace_oid(AUDIT_SCHEMA, false);
	audit_rels.seq = audit_relid("audit_log_id_seq");
	audit_rels.seals = audit_relid("audit_seals");
	audit_rels.log = audit_relid("audit_log");
	return audit_rels;
}

/* The primary key index of audit_log (its only index by design). */
Oid
pgm_audit_pk_index(Relation rel)
{
	Oid			idx = RelationGetPrimaryKeyIndex(rel);

	if (!OidIsValid(idx))
		elog(ERROR, "pgmarket.audit_log has no primary key");
	return idx;
}

/* The last value that audit_log_id_seq handed out (0 before the first). */
int64
pgm_audit_seq_last(void)
{
	LOCAL_FCINFO(sfc, 1);
	Datum		d;

	InitFunctionCallInfoData(*sfc, NULL, 1, InvalidOid, NULL, NULL);
	sfc->args[0].value = ObjectIdGetDatum(pgm_audit_rels().seq);
	sfc->args[0].isnull = false;
	d = pg_sequence_last_value(sfc);
	return sfc->isnull ? 0 : DatumGetInt64(d);
}

/* ----------------------------------------------------------------
 * Values to jsonb
 * ----------------------------------------------------------------
 */
typedef struct ToJsonbEntry
{
	Oid			typid;			/* hash key */
	FmgrInfo	flinfo;
} ToJsonbEntry;

static HTAB *to_jsonb_cache = NULL;

/*
 * to_jsonb(value) for a type the fast path does not know.  to_jsonb is
 * polymorphic and reads its argument's type from the call expression, so a
 * FuncExpr over a NULL constant of that type stands in for one, cached per
 * type in TopMemoryContext.
 */
static Jsonb *
generic_to_jsonb(Datum value, Oid typid)
{
	ToJsonbEntry *e;
	bool		found;

	if (to_jsonb_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(ToJsonbEntry);
		ctl.hcxt = TopMemoryContext;
		to_jsonb_cache = hash_create("pgmarket to_jsonb cache", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(to_jsonb_cache, &typid, HASH_ENTER, &found);
	if (!found)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		FuncExpr   *fe;

		PG_TRY();
		{
			fmgr_info_cxt(F_TO_JSONB, &e->flinfo, TopMemoryContext);
			fe = makeFuncExpr(F_TO_JSONB, JSONBOID,
							  list_make1(makeNullConst(typid, -1, InvalidOid)),
							  InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
			fmgr_info_set_expr((Node *) fe, &e->flinfo);
		}
		PG_CATCH();
		{
			hash_search(to_jsonb_cache, &typid, HASH_REMOVE, NULL);
			PG_RE_THROW();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);
	}
	return DatumGetJsonbP(FunctionCall1(&e->flinfo, value));
}

static void
string_value(JsonbValue *v, const char *s, int len)
{
	v->type = jbvString;
	v->val.string.val = (char *) s;
	v->val.string.len = len;
}

static void
binary_value(JsonbValue *v, Jsonb *jb)
{
	v->type = jbvBinary;
	v->val.binary.data = &jb->root;
	v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
}

/*
 * A column value as a JsonbValue, as to_jsonb would make it: numbers,
 * booleans, strings, dates in ISO 8601 and jsonb directly; everything else
 * through to_jsonb.
 */
static void
datum_to_jsonb_value(Datum value, bool isnull, Oid typid, JsonbValue *v)
{
	if (isnull)
	{
		v->type = jbvNull;
		return;
	}
	switch (typid)
	{
		case BOOLOID:
			v->type = jbvBool;
			v->val.boolean = DatumGetBool(value);
			return;
		case INT2OID:
		case INT4OID:
		case INT8OID:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(typid == INT2OID ? DatumGetInt16(value) :
											  typid == INT4OID ? DatumGetInt32(value) :
											  DatumGetInt64(value));
			return;
		case NUMERICOID:
			{
				Numeric		n = DatumGetNumeric(value);

				if (numeric_is_nan(n) || numeric_is_inf(n))
					break;		/* to_jsonb makes a string of those */
				v->type = jbvNumeric;
				v->val.numeric = n;
				return;
			}
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			{
				text	   *t = DatumGetTextPP(value);

				string_value(v, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				return;
			}
		case NAMEOID:
			{
				char	   *s = NameStr(*DatumGetName(value));

				string_value(v, s, strlen(s));
				return;
			}
		case UUIDOID:
			{
				char	   *s = pgm_uuid_cstring(value);

				string_value(v, s, strlen(s));
				return;
			}
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			{
				char	   *s = JsonEncodeDateTime(NULL, value, typid, NULL);

				string_value(v, s, strlen(s));
				return;
			}
		case JSONBOID:
			binary_value(v, DatumGetJsonbP(value));
			return;
		default:
			break;
	}
	binary_value(v, generic_to_jsonb(value, typid));
}

/* Is column attname among the trigger's arguments (the redacted columns)? */
static bool
is_redacted(Trigger *trigger, const char *attname)
{
	int			i;

	for (i = 0; i < trigger->tgnargs; i++)
		if (strcmp(trigger->tgargs[i], attname) == 0)
			return true;
	return false;
}

/*
 * The personal columns of a row change (personal.c): which columns, the
 * owner column, and the key of the last owner met, so that the row key, the
 * old and the new values of one change read it once.
 */
typedef struct PersonalCtx
{
	bool	   *personal;		/* NULL: the table has none */
	AttrNumber	owner_attno;
	pg_uuid_t	owner;			/* whose key is in key (key_state != 0) */
	int			key_state;		/* 0 none read, 1 a key, 2 erased */
	unsigned char *key;
} PersonalCtx;

/*
 * A jsonb object of the columns of a row (its values and nulls, deformed)
 * selected by cols (all live columns when cols is NULL), redacted ones as
 * "[redacted]", personal ones sealed under the key of the row's owner (pc:
 * NULL or no personal columns, none).
 */
static Datum
columns_to_jsonb(TupleDesc desc, const Datum *values, const bool *isnulls,
				 const bool *cols, const bool *redacted, PersonalCtx *pc)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;
	int			i;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		JsonbValue	k;
		JsonbValue	v;

		if (att->attisdropped || (cols != NULL && !cols[i]))
			continue;
		string_value(&k, NameStr(att->attname), strlen(NameStr(att->attname)));
		pushJsonbValue(&state, WJB_KEY, &k);
		if (redacted[i])
			string_value(&v, AUDIT_REDACTED, strlen(AUDIT_REDACTED));
		else
		{
			bool		isnull = isnulls[i];

			datum_to_jsonb_value(values[i], isnull, att->atttypid, &v);
			if (pc != NULL && pc->personal != NULL && pc->personal[i] && !isnull)
			{
				bool		onull = isnulls[pc->owner_attno - 1];
				Datum		owner = values[pc->owner_attno - 1];

				if (pc->key_state != 0 &&
					(onull || memcmp(DatumGetUUIDP(owner), &pc->owner,
									 sizeof(pg_uuid_t)) != 0))
					pc->key_state = 0;
				if (!onull)
					memcpy(&pc->owner, DatumGetUUIDP(owner), sizeof(pg_uuid_t));
				pgm_personal_seal(owner, onull, NameStr(att->attname), &v,
								  &pc->key_state, pc->key);
			}
		}
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/* ----------------------------------------------------------------
 * The context of a change, cached per backend where it cannot change
 * ----------------------------------------------------------------
 */
static bool client_addr_known = false;
static bool client_addr_null = true;
static Datum client_addr_value;
static Oid	role_name_oid = InvalidOid;
static char role_name[NAMEDATALEN];

static void
audit_context(Datum *values, bool *nulls)
{
	Oid			role = GetOuterUserId();

	values[AL_AT] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[AL_TXID] = Int64GetDatum((int64) U64FromFullTransactionId(GetTopFullTransactionId()));

	if (pgm_actor != NULL && pgm_actor[0] != '\0')
		values[AL_ACTOR] = CStringGetTextDatum(pgm_actor);
	else
		nulls[AL_ACTOR] = true;

	if (role != role_name_oid)
	{
		char	   *name = GetUserNameFromId(role, true);

		strlcpy(role_name, name ? name : "", sizeof(role_name));
		role_name_oid = role;
	}
	values[AL_DB_ROLE] = CStringGetTextDatum(role_name);

	if (!client_addr_known)
	{
		LOCAL_FCINFO(fcinfo, 0);
		Datum		d;

		InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
		d = inet_client_addr(fcinfo);
		client_addr_null = fcinfo->isnull;
		if (!client_addr_null)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			client_addr_value = datumCopy(d, false, -1);
			MemoryContextSwitchTo(old);
		}
		client_addr_known = true;
	}
	values[AL_CLIENT_ADDR] = client_addr_value;
	nulls[AL_CLIENT_ADDR] = client_addr_null;

	if (application_name != NULL && application_name[0] != '\0')
		values[AL_APPLICATION_NAME] = CStringGetTextDatum(application_name);
	else
		nulls[AL_APPLICATION_NAME] = true;
}

/* ----------------------------------------------------------------
 * Writing audit rows
 * ----------------------------------------------------------------
 */

/*
 * Append one row to audit_log: its id drawn here, after the transaction id
 * (audit_context) has been assigned, as the sealer's rule requires.
 */
static void
audit_write(Datum *values, bool *nulls)
{
	AuditRels	rels = pgm_audit_rels();
	Relation	rel;
	Relation	idx;
	IndexInfo  *ii;
	HeapTuple	tup;
	Datum		ivalues[INDEX_MAX_KEYS];
	bool		inulls[INDEX_MAX_KEYS];
	int			i;

	Assert(FullTransactionIdIsValid(GetTopFullTransactionIdIfAny()));
	values[AL_ID] = Int64GetDatum(nextval_internal(rels.seq, false));
	nulls[AL_ID] = false;

	rel = table_open(rels.log, RowExclusiveLock);
	if (RelationGetDescr(rel)->natts != AL_NATTS)
		elog(ERROR, "pgmarket.audit_log has %d columns, expected %d",
			 RelationGetDescr(rel)->natts, AL_NATTS);
	tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	simple_heap_insert(rel, tup);

	/* the primary key on id is audit_log's only index */
	if (list_length(RelationGetIndexList(rel)) != 1)
		elog(ERROR, "pgmarket.audit_log must have exactly one index, its primary key");
	idx = index_open(pgm_audit_pk_index(rel), RowExclusiveLock);
	ii = BuildIndexInfo(idx);
	if (ii->ii_Expressions != NIL || ii->ii_Predicate != NIL)
		elog(ERROR, "pgmarket.audit_log's primary key is not a plain index");
	for (i = 0; i < ii->ii_NumIndexAttrs; i++)
	{
		AttrNumber	attno = ii->ii_IndexAttrNumbers[i];

		ivalues[i] = values[attno - 1];
		inulls[i] = nulls[attno - 1];
	}
	index_insert(idx, ivalues, inulls, &tup->t_self, rel, UNIQUE_CHECK_YES,
				 false, ii);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
}

static Datum
text_array(Datum *elems, int n)
{
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/* A table's name as audit_log.table_name holds it: schema.table, quoted. */
static char *
qualified_name(Oid nspid, const char *relname)
{
	return quote_qualified_identifier(get_namespace_name(nspid), relname);
}

/*
 * Append an audit row for an act on a table rather than a row change
 * (TRUNCATE, audit_event, RESTORE, PURGE): no row key, no old values, no
 * changed columns; new_values is details, or NULL when no_details.
 */
static void
audit_write_act(const char *table_name, Datum operation, Datum details,
				bool no_details)
{
	Datum		values[AL_NATTS];
	bool		nulls[AL_NATTS];

	memset(nulls, 0, sizeof(nulls));
	audit_context(values, nulls);
	values[AL_TABLE_NAME] = CStringGetTextDatum(table_name);
	values[AL_OPERATION] = operation;
	nulls[AL_ROW_KEY] = true;
	nulls[AL_OLD_VALUES] = true;
	values[AL_NEW_VALUES] = no_details ? (Datum) 0 : details;
	nulls[AL_NEW_VALUES] = no_details;
	values[AL_CHANGED_COLUMNS] = text_array(NULL, 0);
	audit_write(values, nulls);
}

/*
 * An event on a table, recorded by another feature in C (get_provider_key's
 * DECRYPT): what audit_event(target, operation, details) records, without a
 * call through SQL.  table_name is the table's qualified name.
 */
void
pgm_audit_record_event(const char *table_name, const char *operation,
					   Datum details)
{
	audit_write_act(table_name, CStringGetTextDatum(operation), details, false);
}

/*
 * An event of the trail itself (RESTORE, PURGE), recorded against
 * pgmarket.audit_log with new_values {"rows": rows, "through_id": id}.
 */
void
pgm_audit_log_event(const char *operation, int64 rows, int64 through_id)
{
	char		detail[128];

	snprintf(detail, sizeof(detail),
			 "{\"rows\": " INT64_FORMAT ", \"through_id\": " INT64_FORMAT "}",
			 rows, through_id);
	audit_write_act("pgmarket.audit_log", CStringGetTextDatum(operation),
					DirectFunctionCall1(jsonb_in, CStringGetDatum(detail)),
					false);
}

/* ----------------------------------------------------------------
 * The trigger
 * ----------------------------------------------------------------
 */

/*
 * Is this row change part of a restore: a top-level COPY FROM into this very
 * table, one of pgmarket's own, by a superuser session (pg_restore, or psql
 * replaying a plain dump)?  The kind of statement is read from the portal's
 * parse tree, not from its command tag (COPY (SELECT f()) TO STDOUT has the
 * same tag), and the rights are the session's and the outer role's, never
 * superuser() (true inside every SECURITY DEFINER function that a superuser
 * owns).  No role below superuser can issue a COPY FROM into pgmarket's
 * tables at all, so nothing it does is exempt.
 */
static bool
is_restore_copy(Relation rel)
{
	PlannedStmt *ps;
	CopyStmt   *copy;

	if (ActivePortal == NULL || ActivePortal->commandTag != CMDTAG_COPY)
		return false;
	if (list_length(ActivePortal->stmts) != 1)
		return false;
	ps = linitial_node(PlannedStmt, ActivePortal->stmts);
	if (ps->commandType != CMD_UTILITY || ps->utilityStmt == NULL ||
		!IsA(ps->utilityStmt, CopyStmt))
		return false;
	copy = (CopyStmt *) ps->utilityStmt;
	if (!copy->is_from || copy->relation == NULL || copy->query != NULL)
		return false;
	if (!superuser_arg(GetSessionUserId()) || !superuser_arg(GetOuterUserId()))
		return false;
	if (RelationGetNamespace(rel) != pgm_audit_rels().nsp)
		return false;
	return RangeVarGetRelid(copy->relation, NoLock, true) == RelationGetRelid(rel);
}

/*
 * What the audit rows of one statement (or of one row, for the row form of
 * the trigger) share, worked out once: the table's name, the operation, the
 * columns redacted, in the key and personal, the context of the change; and
 * the batch of audit rows not yet in audit_log.
 */
#define AUDIT_BATCH_ROWS	200
#define AUDIT_BATCH_BYTES	(96 * 1024)	/* of formed rows, per batch */

/*
 * The memory of the batches, kept for the life of the backend so that a
 * statement's rows do not fault fresh pages in: the formed rows of a batch
 * (reset after each batch), and what building one row takes (reset after
 * each row).  Both are emptied at the start of each statement.
 */
static MemoryContext audit_batch_cxt = NULL;
static MemoryContext audit_row_cxt = NULL;

/*
 * Statements being audited in this backend right now: more than one when a
 * value's conversion to jsonb (a cast of the user's) runs a statement on an
 * audited table; such an inner statement takes memory of its own.
 */
static int	audit_stmt_depth = 0;

typedef struct StmtAudit
{
	TupleDesc	desc;			/* the audited table's */
	bool		is_update;
	Datum		table_name;
	Datum		operation;
	bool	   *redacted;		/* among the trigger's arguments */
	bool	   *keycols;		/* part of row_key */
	bool	   *changed;		/* per row of an UPDATE */
	Datum	   *colnames;		/* every column's name, as text */
	Datum	   *names;			/* the changed columns' names */
	Datum		all_names;		/* text[] of every live column */
	bool	   *last_changed;	/* the changed columns of the last UPDATE row */
	Datum		last_names;		/* and their text[]; 0: none yet */
	PersonalCtx pc;
	Datum		ctx_values[AL_NATTS];	/* audit_context's part */
	bool		ctx_nulls[AL_NATTS];
	/* audit_log, its primary key, and the rows not written yet */
	Relation	log;
	Relation	idx;
	IndexInfo  *ii;
	TupleDesc	logdesc;		/* a copy: slots made from it pin nothing */
	TupleTableSlot *slots[AUDIT_BATCH_ROWS];
	int			nslots;			/* how many of slots are made */
	int			nrows;			/* how many hold a row to write */
	Size		nbytes;			/* their formed size */
	MemoryContext batchcxt;		/* audit_batch_cxt, or one of its own */
	MemoryContext rowcxt;		/* audit_row_cxt, or one of its own */
	bool		own_cxts;
} StmtAudit;

/*
 * Start the audit rows of a statement on rel: the context first (it takes
 * the transaction id, which must exist before any row's id is drawn), then
 * what every row shares, then audit_log and its primary key, opened once.
 */
static void
audit_stmt_begin(StmtAudit *sa, Relation rel, Trigger *trigger, const char *op)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Bitmapset  *pk = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	AuditRels	rels;
	int			nnames = 0;
	int			i;

	memset(sa, 0, offsetof(StmtAudit, slots));
	sa->nslots = 0;
	sa->nrows = 0;
	memset(sa->ctx_nulls, 0, sizeof(sa->ctx_nulls));
	audit_context(sa->ctx_values, sa->ctx_nulls);

	sa->desc = desc;
	sa->is_update = strcmp(op, "UPDATE") == 0;
	sa->table_name = CStringGetTextDatum(
		qualified_name(RelationGetNamespace(rel), RelationGetRelationName(rel)));
	sa->operation = CStringGetTextDatum(op);
	sa->redacted = palloc0(sizeof(bool) * desc->natts);
	sa->keycols = palloc0(sizeof(bool) * desc->natts);
	sa->changed = palloc0(sizeof(bool) * desc->natts);
	sa->last_changed = palloc0(sizeof(bool) * desc->natts);
	sa->last_names = (Datum) 0;
	sa->colnames = palloc0(sizeof(Datum) * desc->natts);
	sa->names = palloc(sizeof(Datum) * desc->natts);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (trigger->tgnargs > 0)
			sa->redacted[i] = is_redacted(trigger, NameStr(att->attname));
		sa->keycols[i] = pk == NULL ||
			bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber, pk);
		sa->colnames[i] = CStringGetTextDatum(NameStr(att->attname));
		sa->names[nnames++] = sa->colnames[i];
	}
	sa->all_names = text_array(sa->names, nnames);

	sa->pc.personal = palloc0(sizeof(bool) * desc->natts);
	if (pgm_personal_columns(rel, trigger, &sa->pc.owner_attno, sa->pc.personal))
		sa->pc.key = pgm_secret_alloc(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
	else
		sa->pc.personal = NULL;

	rels = pgm_audit_rels();
	sa->log = table_open(rels.log, RowExclusiveLock);
	if (RelationGetDescr(sa->log)->natts != AL_NATTS)
		elog(ERROR, "pgmarket.audit_log has %d columns, expected %d",
			 RelationGetDescr(sa->log)->natts, AL_NATTS);
	/* the primary key on id is audit_log's only index */
	if (list_length(RelationGetIndexList(sa->log)) != 1)
		elog(ERROR, "pgmarket.audit_log must have exactly one index, its primary key");
	sa->idx = index_open(pgm_audit_pk_index(sa->log), RowExclusiveLock);
	sa->ii = BuildIndexInfo(sa->idx);
	if (sa->ii->ii_Expressions != NIL || sa->ii->ii_Predicate != NIL)
		elog(ERROR, "pgmarket.audit_log's primary key is not a plain index");
	sa->logdesc = CreateTupleDescCopy(RelationGetDescr(sa->log));
	if (audit_stmt_depth > 1)
	{
		sa->own_cxts = true;
		sa->batchcxt = AllocSetContextCreate(CurrentMemoryContext,
											 "pgmarket audit rows",
											 ALLOCSET_DEFAULT_SIZES);
		sa->rowcxt = AllocSetContextCreate(CurrentMemoryContext,
										   "pgmarket audit row",
										   ALLOCSET_DEFAULT_SIZES);
		return;
	}
	if (audit_batch_cxt == NULL)
	{
		audit_batch_cxt = AllocSetContextCreate(TopMemoryContext,
												"pgmarket audit rows",
												AUDIT_BATCH_BYTES + 64 * 1024,
												AUDIT_BATCH_BYTES + 64 * 1024,
												ALLOCSET_DEFAULT_MAXSIZE);
		audit_row_cxt = AllocSetContextCreate(TopMemoryContext,
											  "pgmarket audit row",
											  64 * 1024, 64 * 1024,
											  ALLOCSET_DEFAULT_MAXSIZE);
	}
	/* what an error in an earlier statement left there */
	MemoryContextReset(audit_batch_cxt);
	MemoryContextReset(audit_row_cxt);
	sa->own_cxts = false;
	sa->batchcxt = audit_batch_cxt;
	sa->rowcxt = audit_row_cxt;
}

/*
 * Write the batch: one multi-row insert into the heap of audit_log (one WAL
 * record per page rather than per row), then each row's primary key entry,
 * in id order.
 */
static void
audit_stmt_flush(StmtAudit *sa)
{
	int			i,
				k;

	if (sa->nrows == 0)
		return;
	heap_multi_insert(sa->log, sa->slots, sa->nrows,
					  GetCurrentCommandId(true), 0, NULL);
	for (i = 0; i < sa->nrows; i++)
	{
		TupleTableSlot *slot = sa->slots[i];
		Datum		ivalues[INDEX_MAX_KEYS];
		bool		inulls[INDEX_MAX_KEYS];

		for (k = 0; k < sa->ii->ii_NumIndexAttrs; k++)
			ivalues[k] = slot_getattr(slot, sa->ii->ii_IndexAttrNumbers[k],
									  &inulls[k]);
		index_insert(sa->idx, ivalues, inulls, &slot->tts_tid, sa->log,
					 UNIQUE_CHECK_YES, false, sa->ii);
		ExecClearTuple(slot);
	}
	sa->nrows = 0;
	sa->nbytes = 0;
	MemoryContextReset(sa->batchcxt);
}

/*
 * The audit row of one row change, from the deformed old and new versions
 * of the row (ov/on: NULL for an INSERT; nv/nn: NULL for a DELETE), its id
 * drawn now, in the order of the changes.
 */
static void
audit_stmt_row(StmtAudit *sa, const Datum *ov, const bool *on,
			   const Datum *nv, const bool *nn)
{
	TupleDesc	desc = sa->desc;
	Datum		values[AL_NATTS];
	bool		nulls[AL_NATTS];
	const bool *cols = NULL;
	MemoryContext old;
	HeapTuple	tup;
	int			i;

	if (sa->nrows == AUDIT_BATCH_ROWS || sa->nbytes >= AUDIT_BATCH_BYTES)
		audit_stmt_flush(sa);
	old = MemoryContextSwitchTo(sa->rowcxt);

	memcpy(values, sa->ctx_values, sizeof(values));
	memcpy(nulls, sa->ctx_nulls, sizeof(nulls));
	values[AL_TABLE_NAME] = sa->table_name;
	values[AL_OPERATION] = sa->operation;

	if (sa->is_update)
	{
		int			nnames = 0;

		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (att->attisdropped)
			{
				sa->changed[i] = false;
				continue;
			}
			sa->changed[i] = (on[i] != nn[i]) ||
				(!on[i] && !datum_image_eq(ov[i], nv[i], att->attbyval,
										   att->attlen));
			if (sa->changed[i])
				sa->names[nnames++] = sa->colnames[i];
		}
		cols = sa->changed;
		/* the rows of a statement mostly change the same columns */
		if (sa->last_names == (Datum) 0 ||
			memcmp(sa->changed, sa->last_changed, sizeof(bool) * desc->natts) != 0)
		{
			MemoryContextSwitchTo(old);
			sa->last_names = text_array(sa->names, nnames);
			memcpy(sa->last_changed, sa->changed, sizeof(bool) * desc->natts);
			MemoryContextSwitchTo(sa->rowcxt);
		}
		values[AL_CHANGED_COLUMNS] = sa->last_names;
	}
	else
		values[AL_CHANGED_COLUMNS] = sa->all_names;

	values[AL_ROW_KEY] = columns_to_jsonb(desc, ov != NULL ? ov : nv,
										  on != NULL ? on : nn,
										  sa->keycols, sa->redacted, &sa->pc);
	if (ov != NULL)
		values[AL_OLD_VALUES] = columns_to_jsonb(desc, ov, on, cols,
												 sa->redacted, &sa->pc);
	else
		nulls[AL_OLD_VALUES] = true;
	if (nv != NULL)
		values[AL_NEW_VALUES] = columns_to_jsonb(desc, nv, nn, cols,
												 sa->redacted, &sa->pc);
	else
		nulls[AL_NEW_VALUES] = true;

	/* the transaction id exists (audit_stmt_begin): now the row's id */
	values[AL_ID] = Int64GetDatum(nextval_internal(pgm_audit_rels().seq, false));
	nulls[AL_ID] = false;
	MemoryContextSwitchTo(sa->batchcxt);
	tup = heap_form_tuple(RelationGetDescr(sa->log), values, nulls);
	MemoryContextSwitchTo(old);
	MemoryContextReset(sa->rowcxt);
	sa->nbytes += tup->t_len;

	if (sa->nrows == sa->nslots)
		sa->slots[sa->nslots++] = MakeSingleTupleTableSlot(sa->logdesc,
														   &TTSOpsHeapTuple);
	ExecStoreHeapTuple(tup, sa->slots[sa->nrows++], true);
}

/* Write what is left, and close the statement's audit. */
static void
audit_stmt_end(StmtAudit *sa)
{
	int			i;

	audit_stmt_flush(sa);
	for (i = 0; i < sa->nslots; i++)
		ExecDropSingleTupleTableSlot(sa->slots[i]);
	sa->nslots = 0;
	index_close(sa->idx, NoLock);
	table_close(sa->log, NoLock);
	if (sa->pc.key != NULL)
		sodium_memzero(sa->pc.key, crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
	if (sa->own_cxts)
	{
		MemoryContextDelete(sa->batchcxt);
		MemoryContextDelete(sa->rowcxt);
	}
	else
		MemoryContextReset(sa->rowcxt);
}

static void audit_statement_rows(StmtAudit *sa, TriggerData *td,
								 const char *op, TupleDesc desc,
								 Tuplestorestate *oldts,
								 Tuplestorestate *newts);

/* The operation a trigger was fired for. */
static const char *
trigger_operation(TriggerData *td)
{
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		return "INSERT";
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		return "UPDATE";
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
		return "DELETE";
	elog(ERROR, "audit_trigger fired by an unexpected event");
	return NULL;				/* keep the compiler quiet */
}

/*
 * Which versions of a row the trigger's event has (trigger_operation has
 * checked that it is one of the three): the old one for UPDATE and DELETE,
 * the new one for INSERT and UPDATE.
 */
static void
event_versions(TriggerData *td, bool *has_old, bool *has_new)
{
	*has_old = !TRIGGER_FIRED_BY_INSERT(td->tg_event);
	*has_new = !TRIGGER_FIRED_BY_DELETE(td->tg_event);
}

/*
 * The row form: one row change, from the row versions of the trigger.
 */
static void
audit_row_trigger(TriggerData *td)
{
	Relation	rel = td->tg_relation;
	TupleDesc	desc = RelationGetDescr(rel);
	const char *op = trigger_operation(td);
	HeapTuple	oldtup;
	HeapTuple	newtup;
	Datum	   *ov = NULL,
			   *nv = NULL;
	bool	   *on = NULL,
			   *nn = NULL;
	StmtAudit  *sa;
	bool		has_old,
				has_new;

	event_versions(td, &has_old, &has_new);
	oldtup = has_old ? td->tg_trigtuple : NULL;
	newtup = !has_new ? NULL : has_old ? td->tg_newtuple : td->tg_trigtuple;
	if (oldtup != NULL)
	{
		ov = palloc(sizeof(Datum) * desc->natts);
		on = palloc(sizeof(bool) * desc->natts);
		heap_deform_tuple(oldtup, desc, ov, on);
	}
	if (newtup != NULL)
	{
		nv = palloc(sizeof(Datum) * desc->natts);
		nn = palloc(sizeof(bool) * desc->natts);
		heap_deform_tuple(newtup, desc, nv, nn);
	}
	sa = palloc(sizeof(StmtAudit));
	audit_stmt_depth++;
	PG_TRY();
	{
		audit_stmt_begin(sa, rel, td->tg_trigger, op);
		audit_stmt_row(sa, ov, on, nv, nn);
		audit_stmt_end(sa);
	}
	PG_FINALLY();
	{
		audit_stmt_depth--;
	}
	PG_END_TRY();
}

/*
 * A reader of a transition table of its own, from its start: a trigger of
 * the user's that reads the same table keeps its place.
 */
static void
transition_open(Tuplestorestate *ts)
{
	int			ptr = tuplestore_alloc_read_pointer(ts, EXEC_FLAG_REWIND);

	tuplestore_select_read_pointer(ts, ptr);
	tuplestore_rescan(ts);
}

static void
transition_close(Tuplestorestate *ts)
{
	if (ts != NULL)
		tuplestore_select_read_pointer(ts, 0);
}

/*
 * The statement form: every row change of the statement, from its transition
 * tables (an UPDATE's i-th old row is the old version of its i-th new row),
 * in their order, written in batches.
 */
static void
audit_statement_trigger(TriggerData *td)
{
	Relation	rel = td->tg_relation;
	const char *op = trigger_operation(td);
	Tuplestorestate *oldts;
	Tuplestorestate *newts;
	TupleDesc	desc;
	StmtAudit  *sa;
	int64		n;
	bool		has_old,
				has_new;

	event_versions(td, &has_old, &has_new);
	oldts = has_old ? td->tg_oldtable : NULL;
	newts = has_new ? td->tg_newtable : NULL;
	if (has_new && newts == NULL)
		elog(ERROR, "audit_trigger for %s must reference the new rows' transition table", op);
	if (has_old && oldts == NULL)
		elog(ERROR, "audit_trigger for %s must reference the old rows' transition table", op);

	n = tuplestore_tuple_count(newts != NULL ? newts : oldts);
	if (n == 0)
		return;					/* nothing changed: nothing to record */
	if (oldts != NULL && newts != NULL && tuplestore_tuple_count(oldts) != n)
		elog(ERROR, "audit_trigger: the transition tables of an UPDATE differ in length");
	if (is_restore_copy(rel))
		return;

	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	sa = palloc(sizeof(StmtAudit));
	audit_stmt_depth++;
	PG_TRY();
	{
		audit_statement_rows(sa, td, op, desc, oldts, newts);
	}
	PG_FINALLY();
	{
		audit_stmt_depth--;
	}
	PG_END_TRY();
}

/* The rows of audit_statement_trigger, from its transition tables. */
static void
audit_statement_rows(StmtAudit *sa, TriggerData *td, const char *op,
					 TupleDesc desc, Tuplestorestate *oldts,
					 Tuplestorestate *newts)
{
	TupleTableSlot *oslot = NULL;
	TupleTableSlot *nslot = NULL;

	audit_stmt_begin(sa, td->tg_relation, td->tg_trigger, op);
	if (oldts != NULL)
	{
		oslot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
		transition_open(oldts);
	}
	if (newts != NULL)
	{
		nslot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
		transition_open(newts);
	}
	for (;;)
	{
		bool		have_old = oslot != NULL &&
			tuplestore_gettupleslot(oldts, true, false, oslot);
		bool		have_new = nslot != NULL &&
			tuplestore_gettupleslot(newts, true, false, nslot);

		if ((oslot != NULL && !have_old) || (nslot != NULL && !have_new))
		{
			if ((oslot != NULL && have_old) || (nslot != NULL && have_new))
				elog(ERROR, "audit_trigger: the transition tables of an UPDATE differ in length");
			break;
		}
		if (oslot != NULL)
			slot_getallattrs(oslot);
		if (nslot != NULL)
			slot_getallattrs(nslot);
		audit_stmt_row(sa,
					   oslot != NULL ? oslot->tts_values : NULL,
					   oslot != NULL ? oslot->tts_isnull : NULL,
					   nslot != NULL ? nslot->tts_values : NULL,
					   nslot != NULL ? nslot->tts_isnull : NULL);
	}
	/* an error leaves them to the statement's abort */
	transition_close(oldts);
	transition_close(newts);
	audit_stmt_end(sa);
	if (oslot != NULL)
		ExecDropSingleTupleTableSlot(oslot);
	if (nslot != NULL)
		ExecDropSingleTupleTableSlot(nslot);
}

/*
 * The trigger, in three forms:
 *
 *   AFTER INSERT, AFTER UPDATE, AFTER DELETE FOR EACH STATEMENT, each with
 *   its transition tables (REFERENCING NEW TABLE / OLD TABLE): every row of
 *   the statement, written in batches (the form enable_audit makes for a
 *   table);
 *   AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW: one row (the form for a
 *   partitioned table, whose partitions inherit it, and for a partition or
 *   an inheritance child, where the statement form would not fire);
 *   AFTER TRUNCATE FOR EACH STATEMENT, recorded as an act.
 *
 * The arguments of the first two are the columns to redact (and, on
 * pgmarket's own tables, 'owner:' and 'personal:' columns, personal.c).
 */
Datum
pgm_audit_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "audit_trigger must be called as a trigger");
	if (!TRIGGER_FIRED_AFTER(td->tg_event))
		elog(ERROR, "audit_trigger must be an AFTER trigger");

	rel = td->tg_relation;
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		audit_write_act(qualified_name(RelationGetNamespace(rel),
									   RelationGetRelationName(rel)),
						CStringGetTextDatum("TRUNCATE"), (Datum) 0, true);
		return PointerGetDatum(NULL);
	}
	if (TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
	{
		audit_statement_trigger(td);
		return PointerGetDatum(NULL);
	}
	if (is_restore_copy(rel))
		return PointerGetDatum(NULL);
	audit_row_trigger(td);
	return PointerGetDatum(NULL);
}

/* ----------------------------------------------------------------
 * Acts on tables
 * ----------------------------------------------------------------
 */

/*
 * audit_event(target regclass, operation text, details jsonb): an audit row
 * for an act on a table rather than a row change (enable_audit,
 * disable_audit, purge_audit).  Internal: granted to nobody.
 */
Datum
pgm_audit_event(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *relname;

	pgm_require_arg(fcinfo, 0, "target");
	pgm_require_arg(fcinfo, 1, "operation");
	relid = PG_GETARG_OID(0);
	relname = get_rel_name(relid);
	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));

	audit_write_act(qualified_name(get_rel_namespace(relid), relname),
					PointerGetDatum(PG_GETARG_TEXT_PP(1)),
					PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2),
					PG_ARGISNULL(2));
	PG_RETURN_VOID();
}

/*
 * audit_require_owner(target regclass): 42501 unless the role in effect at
 * the SQL surface (SET ROLE counts; the SECURITY DEFINER function that calls
 * this does not) owns target or is a superuser.  enable_audit and
 * disable_audit call it before they touch the table: attaching the trigger
 * copies a table's rows into the trail, detaching it stops the record.
 * Internal: granted to nobody.
 */
Datum
pgm_audit_require_owner(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			role = GetOuterUserId();

	pgm_require_arg(fcinfo, 0, "target");
	relid = PG_GETARG_OID(0);
	if (get_rel_name(relid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (!pg_class_ownercheck(relid, role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" does not own table %s",
						GetUserNameFromId(role, false),
						quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												   get_rel_name(relid))),
				 errhint("Only the owner of a table, or a superuser, may attach or detach its audit trigger.")));
	PG_RETURN_VOID();
}

/*
 * The statement trigger of a restore of the trail: AFTER INSERT FOR EACH
 * STATEMENT on audit_log and on audit_seals, with the inserted rows as a
 * transition table.  The trigger writes audit_log with heap inserts, so an
 * INSERT statement there is a restore (pg_restore, a plain dump, COPY FROM)
 * or a superuser's hand.  It moves audit_log_id_seq past every restored id
 * and sealed range (the sequence is not in the dump: its dumped value would
 * be set after this event and hand out the event's id again), and, for
 * audit_log, appends one RESTORE event: how many rows came in and the
 * highest id in audit_log after them.
 */
Datum
pgm_audit_restored(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	AuditRels	rels;
	int64		nrows;
	int64		maxid;
	int64		high;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event) || td->tg_newtable == NULL)
		elog(ERROR, "audit_restored must be an AFTER INSERT statement trigger with a transition table");
	nrows = (int64) tuplestore_tuple_count(td->tg_newtable);
	if (nrows == 0 || pgm_audit_appending_seal)
		return PointerGetDatum(NULL);

	/* read-write SPI: a fresh snapshot, which sees the statement's rows */
	pgm_spi_connect();
	rels = pgm_audit_rels();
	if (SPI_execute("SELECT (SELECT COALESCE(max(id), 0) FROM pgmarket.audit_log),"
					" (SELECT COALESCE(max(through_id), 0) FROM pgmarket.audit_seals)",
					false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read pgmarket.audit_log");
	maxid = DatumGetInt64(pgm_col(0, 1, &isnull));
	high = Max(maxid, DatumGetInt64(pgm_col(0, 2, &isnull)));
	if (high > pgm_audit_seq_last())
		DirectFunctionCall2(setval_oid, ObjectIdGetDatum(rels.seq),
							Int64GetDatum(high));

	if (RelationGetRelid(td->tg_relation) == rels.log)
		pgm_audit_log_event("RESTORE", nrows, maxid);
	pgm_spi_finish();
	return PointerGetDatum(NULL);
}
