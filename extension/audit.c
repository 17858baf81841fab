/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The audit trail: the row trigger that writes pgmarket.audit_log, the
 *	  events enable_audit, disable_audit and purge_audit record there, and the
 *	  keyed hash chain over it (seal_audit, verify_audit, purge_audit).
 *
 * The trigger
 * -----------
 * audit_trigger() is a generic AFTER INSERT OR UPDATE OR DELETE row trigger.
 * Its arguments (TG_ARGV, cached with the trigger in the relcache, so no
 * look-up per row) are the columns to redact.  Per row it builds, in C:
 * row_key (the primary key columns, or the whole row when the table has no
 * primary key), old_values / new_values (an INSERT: new only, every column;
 * a DELETE: old only; an UPDATE: only the columns whose binary images differ,
 * datum_image_eq), changed_columns, and the context of the change: the
 * transaction's start time, its top-level transaction id, pgmarket.actor,
 * the role in effect at the SQL surface (GetOuterUserId: SET ROLE counts,
 * a SECURITY DEFINER function does not), the client address and
 * application_name.  A redacted column is listed in changed_columns but its
 * value is the JSON string "[redacted]" wherever it would appear.
 *
 * The row goes straight into the heap of audit_log and its indexes
 * (simple_heap_insert, index_insert), in the transaction of the change: no
 * executor, no plan, no permission check on audit_log (the trigger is the
 * only writer; application roles hold no privilege on it).  Values of the
 * common types go into jsonb without a detour through text; any other type
 * goes through to_jsonb itself, so the JSON is what to_jsonb(OLD) would give.
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
 * The chain and its concurrency rules
 * -----------------------------------
 * Audit rows are never updated, so the chain does not live in them: each
 * seal_audit() appends rows to pgmarket.audit_seals, each covering a range
 * of ids (after_id, through_id] with, for every audit row of that range in
 * id order, its id and a 16-byte keyed BLAKE2b MAC of the row's content;
 * chain_hash = keyed BLAKE2b-256(previous chain_hash, the seal's header and
 * entries).  The key is the audit subkey of the newest master key version,
 * recorded per seal (key_version), so older seals keep verifying after a
 * rotation while their version is still in the key file.  Since 0.5.0 the
 * chain hash covers every column of the seal record, sealed_at included
 * (rule 2); records made before (rule 1, without sealed_at) verify under
 * their own rule, and only as a prefix of the chain.
 *
 * A superuser holds the key (through seal_audit) and can rewrite the rows,
 * drop the seals and seal again; the chain then verifies in itself.  That is
 * caught against an anchor kept outside the database: the 40 bytes of the
 * last sealed id (big-endian) and the chain hash after it, as audit_head()
 * returns them and as every seal writes them to the server log.
 * verify_audit(anchor => ...) requires the chain to pass through that point.
 *
 * Writers never wait on the chain: they insert with an id from
 * audit_log_id_seq and never touch audit_seals.  Sealers serialize on an
 * ExclusiveLock of audit_seals (which no writer takes).  Ids are assigned
 * before commit, so a row with a lower id may commit after one with a higher
 * id; a sealer must neither skip it nor wait for it.  Every writer takes
 * its top-level transaction id BEFORE it draws an id.  The sealer reads the
 * sequence's last value L, then takes a snapshot S: any transaction holding
 * an id <= L had its xid before S, so it is visible in S, aborted, or in
 * S's list of running transactions.  It then notes whether any transaction
 * of that list is still running (R), and only then scans (after_id, L]
 * twice: with S (the rows it seals) and with a dirty snapshot (committed or
 * still in progress rows).  It seals up to, not including, the first id
 * that is dirty-visible but not visible in S (a transaction in flight or
 * committed after S), and, when R, the first id that has no tuple at all
 * (drawn by a transaction that has not inserted it yet, or aborted and
 * vacuumed away).  The rest waits for the next call.  Ranges are therefore
 * contiguous, no row is sealed twice, and none is skipped.
 *
 * verify_audit() recomputes every chain hash and every row MAC, in seal
 * order, and reports the first id that is missing, changed, moved or not
 * expected in a sealed range.  purge_audit() deletes the rows of whole seals
 * whose rows are all older than a given time (after verifying them) and
 * appends a 'purge' record to the chain; the seals stay, so the chain still
 * verifies from its start and the remaining rows are checked as before.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sodium.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "nodes/primnodes.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
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
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pgm_audit_trigger);
PG_FUNCTION_INFO_V1(pgm_audit_event);
PG_FUNCTION_INFO_V1(pgm_seal_audit);
PG_FUNCTION_INFO_V1(pgm_verify_audit);
PG_FUNCTION_INFO_V1(pgm_purge_audit);
PG_FUNCTION_INFO_V1(pgm_audit_require_owner);
PG_FUNCTION_INFO_V1(pgm_audit_restored);

/* audit_log's columns, in table order */
enum
{
	AL_ID = 0,
	AL_AT,
	AL_TXID,
	AL_TABLE_NAME,
	AL_OPERATION,
	AL_ROW_KEY,
	AL_OLD_VALUES,
	AL_NEW_VALUES,
	AL_CHANGED_COLUMNS,
	AL_ACTOR,
	AL_DB_ROLE,
	AL_CLIENT_ADDR,
	AL_APPLICATION_NAME,
	AL_NATTS
};

#define AUDIT_SCHEMA		"pgmarket"
#define AUDIT_MAC_BYTES		16
#define AUDIT_ENTRY_BYTES	(8 + AUDIT_MAC_BYTES)
#define AUDIT_CHAIN_BYTES	32
#define AUDIT_SUBKEY_ID		1
#define AUDIT_CHUNK_IDS		100000	/* ids per seal row */
#define AUDIT_REDACTED		"[redacted]"
#define AUDIT_CHAIN_LABEL	"pgmarket audit seal v2"
#define AUDIT_CHAIN_LABEL_V1 "pgmarket audit seal v1"
#define AUDIT_ANCHOR_BYTES	(8 + AUDIT_CHAIN_BYTES)
#define AUDIT_MAC_LABEL		"pgmarket audit row v1"

/* ----------------------------------------------------------------
 * Relations, looked up once per backend
 * ----------------------------------------------------------------
 */
static Oid	audit_log_oid = InvalidOid;
static Oid	audit_seq_oid = InvalidOid;
static Oid	audit_seals_oid = InvalidOid;
static Oid	audit_nsp_oid = InvalidOid;
static bool audit_callback_registered = false;

static void
audit_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == audit_log_oid ||
		relid == audit_seq_oid || relid == audit_seals_oid)
	{
		audit_log_oid = InvalidOid;
		audit_seq_oid = InvalidOid;
		audit_seals_oid = InvalidOid;
		audit_nsp_oid = InvalidOid;
	}
}

static Oid
audit_relid(const char *name)
{
	Oid			relid = get_relname_relid(name, audit_nsp_oid);

	if (!OidIsValid(relid))
		elog(ERROR, "relation %s.%s does not exist", AUDIT_SCHEMA, name);
	return relid;
}

static void
audit_lookup(void)
{
	if (OidIsValid(audit_log_oid))
		return;
	if (!audit_callback_registered)
	{
		CacheRegisterRelcacheCallback(audit_relcache_callback, (Datum) 0);
		audit_callback_registered = true;
	}
	audit_nsp_oid = get_namespace_oid(AUDIT_SCHEMA, false);
	audit_seq_oid = audit_relid("audit_log_id_seq");
	audit_seals_oid = audit_relid("audit_seals");
	audit_log_oid = audit_relid("audit_log");
}

/* The primary key index of audit_log (its only index by design). */
static Oid
audit_pk_index(Relation rel)
{
	Oid			idx = RelationGetPrimaryKeyIndex(rel);

	if (!OidIsValid(idx))
		elog(ERROR, "pgmarket.audit_log has no primary key");
	return idx;
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
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt16(value));
			return;
		case INT4OID:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt32(value));
			return;
		case INT8OID:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt64(value));
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
				char	   *s = DatumGetCString(DirectFunctionCall1(uuid_out, value));

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
			{
				Jsonb	   *jb = DatumGetJsonbP(value);

				v->type = jbvBinary;
				v->val.binary.data = &jb->root;
				v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
				return;
			}
		default:
			break;
	}
	{
		Jsonb	   *jb = generic_to_jsonb(value, typid);

		v->type = jbvBinary;
		v->val.binary.data = &jb->root;
		v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
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
 * A jsonb object of the columns of tuple selected by cols (all live columns
 * when cols is NULL), redacted ones as "[redacted]".
 */
static Datum
columns_to_jsonb(TupleDesc desc, HeapTuple tuple, const bool *cols,
				 const bool *redacted)
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
			bool		isnull;
			Datum		d = heap_getattr(tuple, i + 1, desc, &isnull);

			datum_to_jsonb_value(d, isnull, att->atttypid, &v);
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

/*
 * Append one row to audit_log: its id drawn here, after the transaction id
 * (audit_context) has been assigned, as the sealer's rule requires.
 */
static void
audit_write(Datum *values, bool *nulls)
{
	Relation	rel;
	Relation	idx;
	IndexInfo  *ii;
	HeapTuple	tup;
	Datum		ivalues[INDEX_MAX_KEYS];
	bool		inulls[INDEX_MAX_KEYS];
	int			i;

	audit_lookup();
	Assert(FullTransactionIdIsValid(GetTopFullTransactionIdIfAny()));
	values[AL_ID] = Int64GetDatum(nextval_internal(audit_seq_oid, false));
	nulls[AL_ID] = false;

	rel = table_open(audit_log_oid, RowExclusiveLock);
	if (RelationGetDescr(rel)->natts != AL_NATTS)
		elog(ERROR, "pgmarket.audit_log has %d columns, expected %d",
			 RelationGetDescr(rel)->natts, AL_NATTS);
	tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	simple_heap_insert(rel, tup);

	/* the primary key on id is audit_log's only index */
	if (list_length(RelationGetIndexList(rel)) != 1)
		elog(ERROR, "pgmarket.audit_log must have exactly one index, its primary key");
	idx = index_open(audit_pk_index(rel), RowExclusiveLock);
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
	audit_lookup();
	if (RelationGetNamespace(rel) != audit_nsp_oid)
		return false;
	return RangeVarGetRelid(copy->relation, NoLock, true) == RelationGetRelid(rel);
}

/*
 * The trigger.  AFTER ROW for INSERT, UPDATE and DELETE; its arguments are
 * the columns to redact.
 */
Datum
pgm_audit_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	Trigger    *trigger;
	HeapTuple	oldtup = NULL;
	HeapTuple	newtup = NULL;
	HeapTuple	keytup;
	Bitmapset  *pk;
	Datum		values[AL_NATTS];
	bool		nulls[AL_NATTS];
	bool	   *redacted;
	bool	   *keycols;
	bool	   *changed;
	Datum	   *names;
	int			nnames = 0;
	int			i;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "audit_trigger must be called as a trigger");
	if (!TRIGGER_FIRED_AFTER(td->tg_event))
		elog(ERROR, "audit_trigger must be an AFTER trigger");

	rel = td->tg_relation;
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		memset(nulls, 0, sizeof(nulls));
		audit_context(values, nulls);
		values[AL_TABLE_NAME] = CStringGetTextDatum(
			quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									   RelationGetRelationName(rel)));
		values[AL_OPERATION] = CStringGetTextDatum("TRUNCATE");
		nulls[AL_ROW_KEY] = nulls[AL_OLD_VALUES] = nulls[AL_NEW_VALUES] = true;
		values[AL_CHANGED_COLUMNS] = text_array(NULL, 0);
		audit_write(values, nulls);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "audit_trigger must be a row trigger for INSERT, UPDATE and DELETE");
	if (is_restore_copy(rel))
		return PointerGetDatum(NULL);

	desc = RelationGetDescr(rel);
	trigger = td->tg_trigger;

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		op = "INSERT";
		newtup = td->tg_trigtuple;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		op = "UPDATE";
		oldtup = td->tg_trigtuple;
		newtup = td->tg_newtuple;
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		op = "DELETE";
		oldtup = td->tg_trigtuple;
	}
	else
		elog(ERROR, "audit_trigger fired by an unexpected event");

	memset(nulls, 0, sizeof(nulls));
	/* the transaction id first: it must exist before the row's id is drawn */
	audit_context(values, nulls);

	values[AL_TABLE_NAME] = CStringGetTextDatum(
		quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
								   RelationGetRelationName(rel)));
	values[AL_OPERATION] = CStringGetTextDatum(op);

	redacted = palloc0(sizeof(bool) * desc->natts);
	keycols = palloc0(sizeof(bool) * desc->natts);
	changed = palloc0(sizeof(bool) * desc->natts);
	names = palloc(sizeof(Datum) * desc->natts);

	pk = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (trigger->tgnargs > 0)
			redacted[i] = is_redacted(trigger, NameStr(att->attname));
		keycols[i] = pk == NULL ||
			bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber, pk);

		if (oldtup != NULL && newtup != NULL)
		{
			bool		n1,
						n2;
			Datum		d1 = heap_getattr(oldtup, i + 1, desc, &n1);
			Datum		d2 = heap_getattr(newtup, i + 1, desc, &n2);

			changed[i] = (n1 != n2) ||
				(!n1 && !datum_image_eq(d1, d2, att->attbyval, att->attlen));
		}
		else
			changed[i] = true;
		if (changed[i])
			names[nnames++] = CStringGetTextDatum(NameStr(att->attname));
	}

	keytup = oldtup != NULL ? oldtup : newtup;
	values[AL_ROW_KEY] = columns_to_jsonb(desc, keytup, keycols, redacted);
	if (oldtup != NULL)
		values[AL_OLD_VALUES] = columns_to_jsonb(desc, oldtup, changed, redacted);
	else
		nulls[AL_OLD_VALUES] = true;
	if (newtup != NULL)
		values[AL_NEW_VALUES] = columns_to_jsonb(desc, newtup, changed, redacted);
	else
		nulls[AL_NEW_VALUES] = true;
	values[AL_CHANGED_COLUMNS] = text_array(names, nnames);

	audit_write(values, nulls);
	return PointerGetDatum(NULL);
}

/*
 * audit_event(target regclass, operation text, details jsonb): an audit row
 * for an act on a table rather than a row change (enable_audit,
 * disable_audit, purge_audit).  Internal: granted to nobody.
 */
Datum
pgm_audit_event(PG_FUNCTION_ARGS)
{
	Datum		values[AL_NATTS];
	bool		nulls[AL_NATTS];
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

	memset(nulls, 0, sizeof(nulls));
	audit_context(values, nulls);
	values[AL_TABLE_NAME] = CStringGetTextDatum(
		quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
								   relname));
	values[AL_OPERATION] = PointerGetDatum(PG_GETARG_TEXT_PP(1));
	nulls[AL_ROW_KEY] = true;
	nulls[AL_OLD_VALUES] = true;
	if (PG_ARGISNULL(2))
		nulls[AL_NEW_VALUES] = true;
	else
		values[AL_NEW_VALUES] = PG_GETARG_DATUM(2);
	values[AL_CHANGED_COLUMNS] = text_array(NULL, 0);
	audit_write(values, nulls);
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

/* Set while append_seal inserts a seal record (see audit_restored). */
static bool audit_appending_seal = false;

/* The last value that audit_log_id_seq handed out (0 before the first). */
static int64
audit_seq_last(void)
{
	LOCAL_FCINFO(sfc, 1);
	Datum		d;

	audit_lookup();
	InitFunctionCallInfoData(*sfc, NULL, 1, InvalidOid, NULL, NULL);
	sfc->args[0].value = ObjectIdGetDatum(audit_seq_oid);
	sfc->args[0].isnull = false;
	d = pg_sequence_last_value(sfc);
	return sfc->isnull ? 0 : DatumGetInt64(d);
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
	Relation	rel;
	int64		nrows;
	int64		high;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event) || td->tg_newtable == NULL)
		elog(ERROR, "audit_restored must be an AFTER INSERT statement trigger with a transition table");
	rel = td->tg_relation;
	nrows = (int64) tuplestore_tuple_count(td->tg_newtable);
	if (nrows == 0 || audit_appending_seal)
		return PointerGetDatum(NULL);

	/* read-write SPI: a fresh snapshot, which sees the statement's rows */
	pgm_spi_connect();
	audit_lookup();
	if (SPI_execute("SELECT GREATEST("
					" (SELECT COALESCE(max(id), 0) FROM pgmarket.audit_log),"
					" (SELECT COALESCE(max(through_id), 0) FROM pgmarket.audit_seals))",
					false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read pgmarket.audit_log");
	high = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	if (high > audit_seq_last())
		DirectFunctionCall2(setval_oid, ObjectIdGetDatum(audit_seq_oid),
							Int64GetDatum(high));

	if (RelationGetRelid(rel) == audit_log_oid)
	{
		Datum		values[AL_NATTS];
		bool		nulls[AL_NATTS];
		char		detail[128];
		int64		maxid;

		if (SPI_execute("SELECT COALESCE(max(id), 0) FROM pgmarket.audit_log",
						false, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not read pgmarket.audit_log");
		maxid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull));
		memset(nulls, 0, sizeof(nulls));
		audit_context(values, nulls);
		values[AL_TABLE_NAME] = CStringGetTextDatum("pgmarket.audit_log");
		values[AL_OPERATION] = CStringGetTextDatum("RESTORE");
		nulls[AL_ROW_KEY] = true;
		nulls[AL_OLD_VALUES] = true;
		snprintf(detail, sizeof(detail),
				 "{\"rows\": " INT64_FORMAT ", \"through_id\": " INT64_FORMAT "}",
				 nrows, maxid);
		values[AL_NEW_VALUES] = DirectFunctionCall1(jsonb_in, CStringGetDatum(detail));
		values[AL_CHANGED_COLUMNS] = text_array(NULL, 0);
		audit_write(values, nulls);
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* ----------------------------------------------------------------
 * MACs and the chain
 * ----------------------------------------------------------------
 */
static void
put_be64(unsigned char *p, uint64 v)
{
	int			i;

	for (i = 7; i >= 0; i--)
	{
		p[i] = v & 0xff;
		v >>= 8;
	}
}

static uint64
get_be64(const unsigned char *p)
{
	uint64		v = 0;
	int			i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/*
 * The MAC of one audit row: every column in table order, each as a null
 * flag and, when present, 8 big-endian bytes (id, at, txid) or a 4-byte
 * length and the bytes of the detoasted value (text, jsonb, text[], inet:
 * binary forms that a dump and restore reproduce).
 */
static void
row_mac(const unsigned char *key, TupleDesc desc, HeapTuple tup,
		unsigned char *out)
{
	crypto_generichash_state st;
	Datum		values[AL_NATTS];
	bool		nulls[AL_NATTS];
	int			i;

	heap_deform_tuple(tup, desc, values, nulls);
	crypto_generichash_init(&st, key, PGM_SUBKEY_BYTES, AUDIT_MAC_BYTES);
	crypto_generichash_update(&st, (const unsigned char *) AUDIT_MAC_LABEL,
							  sizeof(AUDIT_MAC_LABEL));
	for (i = 0; i < AL_NATTS; i++)
	{
		unsigned char flag = nulls[i] ? 0 : 1;
		unsigned char buf[8];

		crypto_generichash_update(&st, &flag, 1);
		if (nulls[i])
			continue;
		if (i == AL_ID || i == AL_AT || i == AL_TXID)
		{
			put_be64(buf, (uint64) DatumGetInt64(values[i]));
			crypto_generichash_update(&st, buf, 8);
		}
		else
		{
			struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(values[i]));
			uint32		len = VARSIZE_ANY_EXHDR(v);

			buf[0] = len >> 24;
			buf[1] = len >> 16;
			buf[2] = len >> 8;
			buf[3] = len;
			crypto_generichash_update(&st, buf, 4);
			crypto_generichash_update(&st, (const unsigned char *) VARDATA_ANY(v), len);
			if ((Pointer) v != DatumGetPointer(values[i]))
				pfree(v);
		}
	}
	crypto_generichash_final(&st, out, AUDIT_MAC_BYTES);
}

/*
 * The chain hash of a seal record.  Rule 2 (pgmarket 0.5.0 on) covers every
 * column of the record, sealed_at included; rule 1 (the seals made before
 * 0.5.0) covers all but sealed_at.  The labels differ, so a hash made under
 * one rule never verifies under the other.
 */
static void
chain_hash(int rule, const unsigned char *key, const unsigned char *prev,
		   int64 seq, const char *kind, int64 after_id, int64 through_id,
		   int64 row_count, int32 key_version, TimestampTz sealed_at,
		   const unsigned char *entries, Size entries_len, unsigned char *out)
{
	crypto_generichash_state st;
	unsigned char hdr[8 * 5 + 4];
	Size		hdrlen = 8 * 4 + 4;

	put_be64(hdr, (uint64) seq);
	put_be64(hdr + 8, (uint64) after_id);
	put_be64(hdr + 16, (uint64) through_id);
	put_be64(hdr + 24, (uint64) row_count);
	hdr[32] = ((uint32) key_version) >> 24;
	hdr[33] = ((uint32) key_version) >> 16;
	hdr[34] = ((uint32) key_version) >> 8;
	hdr[35] = ((uint32) key_version);
	if (rule >= 2)
	{
		put_be64(hdr + 36, (uint64) sealed_at);
		hdrlen += 8;
	}
	crypto_generichash_init(&st, key, PGM_SUBKEY_BYTES, AUDIT_CHAIN_BYTES);
	if (rule >= 2)
		crypto_generichash_update(&st, (const unsigned char *) AUDIT_CHAIN_LABEL,
								  sizeof(AUDIT_CHAIN_LABEL));
	else
		crypto_generichash_update(&st, (const unsigned char *) AUDIT_CHAIN_LABEL_V1,
								  sizeof(AUDIT_CHAIN_LABEL_V1));
	crypto_generichash_update(&st, prev, AUDIT_CHAIN_BYTES);
	crypto_generichash_update(&st, (const unsigned char *) kind, strlen(kind) + 1);
	crypto_generichash_update(&st, hdr, hdrlen);
	crypto_generichash_update(&st, entries, entries_len);
	crypto_generichash_final(&st, out, AUDIT_CHAIN_BYTES);
}

/* The audit subkey of a master key version; PM010 when it is not loaded. */
static unsigned char *
audit_subkey(int32 version)
{
	unsigned char *key = pgm_secret_alloc(PGM_SUBKEY_BYTES);

	if (!pgm_vault_subkey(version, PGM_KDF_CONTEXT_AUDIT, AUDIT_SUBKEY_ID, key))
		ereport(ERROR,
				(errcode(ERRCODE_PGM_VAULT_UNAVAILABLE),
				 errmsg("master key version %d, which sealed part of the audit trail, is not loaded",
						version),
				 errhint("Keep every master key version that sealed audit rows in the master key file.")));
	return key;
}

/* The last seal record: seq, through_id of the last 'seal', chain hash. */
typedef struct SealTip
{
	int64		seq;			/* 0: no record yet */
	int64		through_id;		/* of the last kind = 'seal' record */
	int64		purged_through; /* of the last kind = 'purge' record */
	unsigned char chain[AUDIT_CHAIN_BYTES];
} SealTip;

static SPIPlanPtr plan_tip = NULL;
static SPIPlanPtr plan_insert_seal = NULL;

static void
read_tip(SealTip *tip)
{
	if (plan_tip == NULL)
		plan_tip = pgm_prepare(
			"SELECT s.seq, s.chain_hash,"
			"       COALESCE((SELECT max(through_id) FROM pgmarket.audit_seals"
			"                  WHERE kind OPERATOR(pg_catalog.=) 'seal'), 0),"
			"       COALESCE((SELECT max(through_id) FROM pgmarket.audit_seals"
			"                  WHERE kind OPERATOR(pg_catalog.=) 'purge'), 0)"
			"  FROM pgmarket.audit_seals s ORDER BY s.seq DESC LIMIT 1",
			0, NULL);
	if (SPI_execute_plan(plan_tip, NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pgmarket.audit_seals");
	memset(tip, 0, sizeof(*tip));
	if (SPI_processed == 1)
	{
		HeapTuple	t = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		bytea	   *h;

		tip->seq = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
		h = DatumGetByteaPP(SPI_getbinval(t, d, 2, &isnull));
		if (VARSIZE_ANY_EXHDR(h) == AUDIT_CHAIN_BYTES)
			memcpy(tip->chain, VARDATA_ANY(h), AUDIT_CHAIN_BYTES);
		tip->through_id = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
		tip->purged_through = DatumGetInt64(SPI_getbinval(t, d, 4, &isnull));
	}
}

/*
 * Append a seal record (rule 2) and advance the tip.  The record is also
 * written to the server log, with its anchor, so that a copy of the chain's
 * progress exists outside the database.
 */
static void
append_seal(SealTip *tip, const char *kind, int64 after_id, int64 through_id,
			int64 row_count, int32 version, const unsigned char *key,
			bytea *entries)
{
	Oid			types[9] = {INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID,
	INT4OID, BYTEAOID, BYTEAOID, TIMESTAMPTZOID};
	Datum		args[9];
	bytea	   *hash = palloc(VARHDRSZ + AUDIT_CHAIN_BYTES);
	TimestampTz sealed_at = GetCurrentTransactionStartTimestamp();
	int64		head_id = strcmp(kind, "seal") == 0 ? through_id : tip->through_id;
	unsigned char anchor[AUDIT_ANCHOR_BYTES];
	char		hex[AUDIT_ANCHOR_BYTES * 2 + 1];

	chain_hash(2, key, tip->chain, tip->seq + 1, kind, after_id, through_id,
			   row_count, version, sealed_at, (unsigned char *) VARDATA(entries),
			   VARSIZE(entries) - VARHDRSZ, (unsigned char *) VARDATA(hash));
	SET_VARSIZE(hash, VARHDRSZ + AUDIT_CHAIN_BYTES);

	if (plan_insert_seal == NULL)
		plan_insert_seal = pgm_prepare(
			"INSERT INTO pgmarket.audit_seals (seq, kind, after_id, through_id,"
			"   row_count, key_version, entries, chain_hash, sealed_at)"
			" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", 9, types);
	args[0] = Int64GetDatum(tip->seq + 1);
	args[1] = CStringGetTextDatum(kind);
	args[2] = Int64GetDatum(after_id);
	args[3] = Int64GetDatum(through_id);
	args[4] = Int64GetDatum(row_count);
	args[5] = Int32GetDatum(version);
	args[6] = PointerGetDatum(entries);
	args[7] = PointerGetDatum(hash);
	args[8] = TimestampTzGetDatum(sealed_at);
	/* our own insert is no restore: audit_restored need not look */
	audit_appending_seal = true;
	PG_TRY();
	{
		if (SPI_execute_plan(plan_insert_seal, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not insert into pgmarket.audit_seals");
	}
	PG_FINALLY();
	{
		audit_appending_seal = false;
	}
	PG_END_TRY();

	tip->seq++;
	memcpy(tip->chain, VARDATA(hash), AUDIT_CHAIN_BYTES);
	if (strcmp(kind, "seal") == 0)
		tip->through_id = through_id;
	else
		tip->purged_through = through_id;

	put_be64(anchor, (uint64) head_id);
	memcpy(anchor + 8, tip->chain, AUDIT_CHAIN_BYTES);
	hex_encode((const char *) anchor, AUDIT_ANCHOR_BYTES, hex);
	hex[AUDIT_ANCHOR_BYTES * 2] = '\0';
	ereport(LOG,
			(errmsg("pgmarket audit %s record %lld: audit_log ids %lld to %lld (%lld rows), anchor \\x%s",
					kind, (long long) tip->seq, (long long) after_id + 1,
					(long long) through_id, (long long) row_count, hex),
			 errhidestmt(true)));
}

/* An index scan of audit_log over ids (lo, hi], in id order. */
static SysScanDesc
scan_range(Relation rel, Oid idx, Snapshot snap, int64 lo, int64 hi,
		   ScanKeyData *keys)
{
	ScanKeyInit(&keys[0], AL_ID + 1, BTGreaterStrategyNumber, F_INT8GT,
				Int64GetDatum(lo));
	ScanKeyInit(&keys[1], AL_ID + 1, BTLessEqualStrategyNumber, F_INT8LE,
				Int64GetDatum(hi));
	return systable_beginscan(rel, idx, true, snap, 2, keys);
}

static int64
tuple_id(HeapTuple tup, TupleDesc desc)
{
	bool		isnull;

	return DatumGetInt64(heap_getattr(tup, AL_ID + 1, desc, &isnull));
}

/* ----------------------------------------------------------------
 * seal_audit
 * ----------------------------------------------------------------
 */

/*
 * seal_audit() RETURNS bigint: seals every audit row that can be sealed
 * now (see the rules at the top of this file), in seal records of at most
 * AUDIT_CHUNK_IDS ids each, and returns how many rows it sealed.
 */
Datum
pgm_seal_audit(PG_FUNCTION_ARGS)
{
	SealTip		tip;
	int32		version;
	unsigned char *key;
	int64		last;
	int64		seqlast;
	bool		running = false;
	Snapshot	snap;
	Relation	rel;
	Oid			idx;
	TupleDesc	desc;
	int64		sealed = 0;
	int			i;
	MemoryContext chunkcxt;

	pgm_spi_connect();
	audit_lookup();
	/* sealers (and purges) queue here; writers never take this lock */
	LockRelationOid(audit_seals_oid, ExclusiveLock);
	/* see what a sealer we queued behind committed, whatever the isolation */
	PushActiveSnapshot(GetLatestSnapshot());

	version = pgm_vault_newest_version();	/* PM010 without a master key */
	key = audit_subkey(version);
	read_tip(&tip);
	last = tip.through_id;

	/* L: no id above it had been drawn when we looked */
	seqlast = audit_seq_last();
	if (seqlast <= last)
	{
		PopActiveSnapshot();
		SPI_finish();
		PG_RETURN_INT64(0);
	}

	/* S, then R: is any transaction running at S still running? */
	snap = RegisterSnapshot(GetLatestSnapshot());
	for (i = 0; i < snap->xcnt && !running; i++)
		if (TransactionIdIsInProgress(snap->xip[i]))
			running = true;

	rel = table_open(audit_log_oid, AccessShareLock);
	idx = audit_pk_index(rel);
	desc = RelationGetDescr(rel);
	chunkcxt = AllocSetContextCreate(CurrentMemoryContext, "seal_audit chunk",
									 ALLOCSET_DEFAULT_SIZES);

	while (last < seqlast)
	{
		int64		hi = Min(seqlast, last + AUDIT_CHUNK_IDS);
		int64		cap = hi;	/* seal ids <= cap */
		int64		expected = last + 1;
		int64		nvis = 0;
		int64		n;
		int64	   *visids;
		bytea	   *entries;
		ScanKeyData keys[2];
		SysScanDesc scan;
		HeapTuple	tup;
		MemoryContext old = MemoryContextSwitchTo(chunkcxt);

		/*
		 * The rows visible in S, with their MACs.  A row holds at most one
		 * visible version (audit rows are never updated but by tampering).
		 */
		entries = palloc(VARHDRSZ + (Size) (hi - last) * AUDIT_ENTRY_BYTES);
		visids = palloc(sizeof(int64) * (hi - last));
		scan = scan_range(rel, idx, snap, last, hi, keys);
		while ((tup = systable_getnext(scan)) != NULL)
		{
			unsigned char *e = (unsigned char *) VARDATA(entries) + nvis * AUDIT_ENTRY_BYTES;
			int64		id = tuple_id(tup, desc);

			if (nvis > 0 && visids[nvis - 1] == id)
				continue;
			visids[nvis] = id;
			put_be64(e, (uint64) id);
			row_mac(key, desc, tup, e + 8);
			nvis++;
		}
		systable_endscan(scan);

		/*
		 * Every version of every row of the range, in id order: the first id
		 * whose row is neither visible in S nor aborted (in flight, or
		 * committed after S) caps the seal; so does, while a transaction of S
		 * is still running, the first id without any row.
		 */
		n = 0;
		scan = scan_range(rel, idx, SnapshotAny, last, hi, keys);
		while ((tup = systable_getnext(scan)) != NULL)
		{
			int64		id = tuple_id(tup, desc);
			TransactionId xmin;

			while (n < nvis && visids[n] < id)
				n++;
			if (id < expected)
				continue;		/* another version of an id already settled */
			if (id > expected && running)
			{
				cap = expected - 1;	/* an id without a row */
				break;
			}
			if (n < nvis && visids[n] == id)
			{
				expected = id + 1;
				continue;
			}
			xmin = HeapTupleHeaderGetXmin(tup->t_data);
			if (!TransactionIdIsCurrentTransactionId(xmin) &&
				!TransactionIdIsInProgress(xmin) &&
				!TransactionIdDidCommit(xmin))
			{
				expected = id + 1;	/* aborted: never part of the trail */
				continue;
			}
			cap = id - 1;
			break;
		}
		systable_endscan(scan);
		if (cap == hi && running && expected <= hi)
			cap = expected - 1;	/* ids without a row at the end */

		/* seal the visible rows up to cap */
		n = 0;
		while (n < nvis && visids[n] <= cap)
			n++;

		/*
		 * Where the run of seals ends, end it on a row: ids without a row
		 * after the last sealed row are left to the next seal, which covers
		 * them as a gap before its own rows.  So no seal reaches beyond the
		 * last id in audit_log, and an event appended after a restore of the
		 * trail (whose id is above every restored row) is never inside a
		 * restored seal's range.
		 */
		if (cap < hi || hi == seqlast)
			cap = n > 0 ? visids[n - 1] : last;
		if (cap > last)
		{
			SET_VARSIZE(entries, VARHDRSZ + n * AUDIT_ENTRY_BYTES);
			append_seal(&tip, "seal", last, cap, n, version, key, entries);
			sealed += n;
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(chunkcxt);
		if (cap < hi)
			break;
		last = hi;
	}

	MemoryContextDelete(chunkcxt);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snap);
	PopActiveSnapshot();
	SPI_finish();
	PG_RETURN_INT64(sealed);
}

/* ----------------------------------------------------------------
 * verify_audit
 * ----------------------------------------------------------------
 */
typedef struct VerifyResult
{
	int64		first_bad_id;	/* 0: none */
	const char *problem;
	int64		checked;
	int64		purged_through;
	int64		sealed_through;
	bool		anchor_found;	/* no anchor given, or the chain contains it */
} VerifyResult;

static SPIPlanPtr plan_seals = NULL;

/* Record the first problem only. */
static bool
verify_bad(VerifyResult *r, int64 id, const char *problem)
{
	if (r->first_bad_id == 0)
	{
		r->first_bad_id = id;
		r->problem = problem;
	}
	return false;
}

/*
 * Check the rows of one seal against its entries: same ids in the same
 * order, same MACs, no row missing or added.
 */
static bool
verify_seal_rows(Relation rel, Oid idx, const unsigned char *key,
				 int64 after_id, int64 through_id,
				 const unsigned char *entries, int64 nentries, VerifyResult *r)
{
	TupleDesc	desc = RelationGetDescr(rel);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	int64		n = 0;
	bool		ok = true;

	scan = scan_range(rel, idx, GetActiveSnapshot(), after_id, through_id, keys);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		int64		id = tuple_id(tup, desc);
		int64		want;
		unsigned char mac[AUDIT_MAC_BYTES];

		if (n >= nentries)
		{
			ok = verify_bad(r, id, "a row that the seal does not list");
			break;
		}
		want = (int64) get_be64(entries + n * AUDIT_ENTRY_BYTES);
		if (id > want)
		{
			ok = verify_bad(r, want, "a sealed row is missing");
			break;
		}
		if (id < want)
		{
			ok = verify_bad(r, id, "a row that the seal does not list");
			break;
		}
		row_mac(key, desc, tup, mac);
		if (sodium_memcmp(mac, entries + n * AUDIT_ENTRY_BYTES + 8,
						  AUDIT_MAC_BYTES) != 0)
		{
			ok = verify_bad(r, id, "a sealed row was changed");
			break;
		}
		n++;
		r->checked++;
	}
	systable_endscan(scan);
	if (ok && n < nentries)
		ok = verify_bad(r, (int64) get_be64(entries + n * AUDIT_ENTRY_BYTES),
						"a sealed row is missing");
	return ok;
}

/*
 * Walk the chain from its start; check the rows of every seal whose rows
 * are not purged and whose through_id is at most limit.  Stops at the first
 * problem.  With an anchor (AUDIT_ANCHOR_BYTES: the sealed-through id and
 * the chain hash that audit_head() returned), also notes whether the chain
 * still passes through that point (r->anchor_found).  Records made under
 * rule 1 (before 0.5.0) are accepted only before the first rule 2 record.
 * The caller is connected to SPI.
 */
static void
verify_chain(int64 limit, const unsigned char *anchor, VerifyResult *r)
{
	Portal		portal;
	unsigned char prev[AUDIT_CHAIN_BYTES];
	int64		expected_seq = 1;
	int64		seal_through = 0;
	Relation	rel;
	Oid			idx;
	int32		keyver = 0;
	unsigned char *key = NULL;
	bool		done = false;
	bool		rule2_seen = false;
	int64		anchor_id = 0;

	memset(r, 0, sizeof(*r));
	memset(prev, 0, sizeof(prev));
	if (anchor != NULL)
	{
		anchor_id = (int64) get_be64(anchor);
		/* the start of every chain: no seal yet when the anchor was taken */
		if (anchor_id == 0 && sodium_is_zero(anchor + 8, AUDIT_CHAIN_BYTES))
			r->anchor_found = true;
	}
	else
		r->anchor_found = true;
	audit_lookup();
	rel = table_open(audit_log_oid, AccessShareLock);
	idx = audit_pk_index(rel);

	/* purged ranges: their rows are gone on purpose */
	if (SPI_execute("SELECT COALESCE(max(through_id), 0) FROM pgmarket.audit_seals"
					" WHERE kind OPERATOR(pg_catalog.=) 'purge'", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pgmarket.audit_seals");
	{
		bool		isnull;

		r->purged_through = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 1, &isnull));
	}

	if (plan_seals == NULL)
		plan_seals = pgm_prepare(
			"SELECT seq, kind, after_id, through_id, row_count, key_version,"
			"       entries, chain_hash, sealed_at"
			"  FROM pgmarket.audit_seals ORDER BY seq", 0, NULL);
	portal = SPI_cursor_open(NULL, plan_seals, NULL, NULL, true);
	while (!done)
	{
		uint64		j;

		SPI_cursor_fetch(portal, true, 16);
		if (SPI_processed == 0)
			break;
		for (j = 0; j < SPI_processed && !done; j++)
		{
			HeapTuple	t = SPI_tuptable->vals[j];
			TupleDesc	d = SPI_tuptable->tupdesc;
			bool		isnull;
			int64		seq = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
			char	   *kind = TextDatumGetCString(SPI_getbinval(t, d, 2, &isnull));
			int64		after_id = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
			int64		through_id = DatumGetInt64(SPI_getbinval(t, d, 4, &isnull));
			int64		row_count = DatumGetInt64(SPI_getbinval(t, d, 5, &isnull));
			int32		version = DatumGetInt32(SPI_getbinval(t, d, 6, &isnull));
			bytea	   *entries = DatumGetByteaPP(SPI_getbinval(t, d, 7, &isnull));
			bytea	   *stored = DatumGetByteaPP(SPI_getbinval(t, d, 8, &isnull));
			TimestampTz sealed_at = DatumGetTimestampTz(SPI_getbinval(t, d, 9, &isnull));
			const unsigned char *ent = (const unsigned char *) VARDATA_ANY(entries);
			Size		entlen = VARSIZE_ANY_EXHDR(entries);
			unsigned char h[AUDIT_CHAIN_BYTES];
			bool		is_seal = strcmp(kind, "seal") == 0;
			int64		first_id = entlen >= 8 ? (int64) get_be64(ent) : after_id + 1;
			bool		hash_ok = false;

			if (version != keyver)
			{
				key = audit_subkey(version);
				keyver = version;
			}
			if (VARSIZE_ANY_EXHDR(stored) == AUDIT_CHAIN_BYTES)
			{
				chain_hash(2, key, prev, seq, kind, after_id, through_id,
						   row_count, version, sealed_at, ent, entlen, h);
				if (sodium_memcmp(h, VARDATA_ANY(stored), AUDIT_CHAIN_BYTES) == 0)
					hash_ok = rule2_seen = true;
				else if (!rule2_seen)
				{
					chain_hash(1, key, prev, seq, kind, after_id, through_id,
							   row_count, version, sealed_at, ent, entlen, h);
					hash_ok = sodium_memcmp(h, VARDATA_ANY(stored),
											AUDIT_CHAIN_BYTES) == 0;
				}
			}
			if (!hash_ok || seq != expected_seq ||
				(is_seal && after_id != seal_through) ||
				(is_seal && entlen != (Size) row_count * AUDIT_ENTRY_BYTES))
			{
				verify_bad(r, is_seal ? first_id : after_id + 1,
						   "a seal record was changed, removed or reordered");
				done = true;
				break;
			}
			memcpy(prev, h, AUDIT_CHAIN_BYTES);
			expected_seq++;
			if (is_seal)
				seal_through = through_id;
			if (anchor != NULL && !r->anchor_found && seal_through == anchor_id &&
				sodium_memcmp(h, anchor + 8, AUDIT_CHAIN_BYTES) == 0)
				r->anchor_found = true;
			if (!is_seal)
				continue;
			if (through_id > limit)
			{
				done = true;
				break;
			}
			r->sealed_through = through_id;
			if (through_id <= r->purged_through)
				continue;
			if (!verify_seal_rows(rel, idx, key, after_id, through_id, ent,
								  row_count, r))
				done = true;
		}
	}
	SPI_cursor_close(portal);
	table_close(rel, AccessShareLock);

	/*
	 * The chain verifies in itself but no longer passes through the anchor:
	 * it was rewritten, or seals were removed.  The rows it vouched for from
	 * the first one the chain no longer covers, else from its last one.
	 */
	if (!r->anchor_found && r->first_bad_id == 0)
		verify_bad(r, Max(1, Min(anchor_id, seal_through + 1)),
				   "the chain does not contain the anchor: seals were rewritten or removed");
}

static void
raise_chain_broken(VerifyResult *r)
{
	ereport(ERROR,
			(errcode(ERRCODE_PGM_AUDIT_CHAIN_BROKEN),
			 errmsg("audit chain broken at audit_log id %lld: %s",
					(long long) r->first_bad_id, r->problem),
			 errdetail("%lld sealed rows verified before it.",
					   (long long) r->checked)));
}

/*
 * verify_audit(strict boolean DEFAULT false, anchor bytea DEFAULT NULL)
 *	 RETURNS TABLE(first_bad_id bigint, checked bigint): one row; first_bad_id
 * is NULL when every sealed row verifies and the chain contains the anchor
 * (when one is given).  strict raises PM013 instead.
 */
Datum
pgm_verify_audit(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		strict;
	unsigned char anchor[AUDIT_ANCHOR_BYTES];
	bool		have_anchor = false;
	VerifyResult r;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	pgm_require_arg(fcinfo, 0, "strict");
	strict = PG_GETARG_BOOL(0);
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
	{
		bytea	   *a = PG_GETARG_BYTEA_PP(1);

		if (VARSIZE_ANY_EXHDR(a) != AUDIT_ANCHOR_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("anchor of %d bytes is not an audit anchor",
							(int) VARSIZE_ANY_EXHDR(a)),
					 errdetail("An anchor is 40 bytes: the last sealed id (8 bytes, big-endian) and the chain hash, as audit_head() returns them.")));
		memcpy(anchor, VARDATA_ANY(a), AUDIT_ANCHOR_BYTES);
		have_anchor = true;
	}

	pgm_spi_connect();
	verify_chain(PG_INT64_MAX, have_anchor ? anchor : NULL, &r);
	SPI_finish();

	if (r.first_bad_id != 0 && strict)
		raise_chain_broken(&r);

	InitMaterializedSRF(fcinfo, 0);
	if (r.first_bad_id == 0)
		nulls[0] = true;
	values[0] = Int64GetDatum(r.first_bad_id);
	values[1] = Int64GetDatum(r.checked);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * purge_audit
 * ----------------------------------------------------------------
 */

/*
 * purge_audit(before timestamptz) RETURNS bigint: deletes the rows of the
 * oldest seals whose rows are all older than before, whole seals only, after
 * verifying them (PM013 if they do not verify); appends a 'purge' record to
 * the chain and a PURGE event to audit_log.  Returns the rows deleted.
 */
Datum
pgm_purge_audit(PG_FUNCTION_ARGS)
{
	TimestampTz before;
	SealTip		tip;
	VerifyResult r;
	int64		through = 0;
	int64		deleted = 0;
	Relation	rel;
	Oid			idx;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	int32		version;
	unsigned char *key;
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		args[2];
	uint64		j;

	pgm_require_arg(fcinfo, 0, "before");
	before = PG_GETARG_TIMESTAMPTZ(0);

	pgm_spi_connect();
	audit_lookup();
	LockRelationOid(audit_seals_oid, ExclusiveLock);
	PushActiveSnapshot(GetLatestSnapshot());
	version = pgm_vault_newest_version();
	key = audit_subkey(version);
	read_tip(&tip);

	/*
	 * The seals after the last purge, oldest first, while every row of the
	 * seal is older than before.
	 */
	args[0] = Int64GetDatum(tip.purged_through);
	args[1] = TimestampTzGetDatum(before);
	if (SPI_execute_with_args(
							  "SELECT s.through_id,"
							  "       (SELECT max(l.at) FROM pgmarket.audit_log l"
							  "         WHERE l.id OPERATOR(pg_catalog.>) s.after_id"
							  "           AND l.id OPERATOR(pg_catalog.<=) s.through_id)"
							  "  FROM pgmarket.audit_seals s"
							  " WHERE s.kind OPERATOR(pg_catalog.=) 'seal'"
							  "   AND s.through_id OPERATOR(pg_catalog.>) $1"
							  " ORDER BY s.seq",
							  2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pgmarket.audit_seals");
	for (j = 0; j < SPI_processed; j++)
	{
		bool		n1,
					n2;
		int64		t = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[j],
													SPI_tuptable->tupdesc, 1, &n1));
		Datum		maxat = SPI_getbinval(SPI_tuptable->vals[j],
										  SPI_tuptable->tupdesc, 2, &n2);

		if (!n2 && DatumGetTimestampTz(maxat) >= before)
			break;
		through = t;
	}
	if (through == 0)
	{
		PopActiveSnapshot();
		SPI_finish();
		PG_RETURN_INT64(0);
	}

	/* never destroy evidence of tampering */
	verify_chain(through, NULL, &r);
	if (r.first_bad_id != 0)
		raise_chain_broken(&r);

	rel = table_open(audit_log_oid, RowExclusiveLock);
	idx = audit_pk_index(rel);
	scan = scan_range(rel, idx, GetActiveSnapshot(), tip.purged_through,
					  through, keys);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		simple_heap_delete(rel, &tup->t_self);
		deleted++;
	}
	systable_endscan(scan);
	table_close(rel, NoLock);
	CommandCounterIncrement();

	{
		bytea	   *empty = palloc(VARHDRSZ);

		SET_VARSIZE(empty, VARHDRSZ);
		append_seal(&tip, "purge", tip.purged_through, through, deleted,
					version, key, empty);
	}

	/* and the act itself, as an event in the trail */
	{
		Datum		values[AL_NATTS];
		bool		nulls[AL_NATTS];
		char		detail[128];

		memset(nulls, 0, sizeof(nulls));
		audit_context(values, nulls);
		values[AL_TABLE_NAME] = CStringGetTextDatum("pgmarket.audit_log");
		values[AL_OPERATION] = CStringGetTextDatum("PURGE");
		nulls[AL_ROW_KEY] = true;
		nulls[AL_OLD_VALUES] = true;
		snprintf(detail, sizeof(detail),
				 "{\"through_id\": " INT64_FORMAT ", \"rows\": " INT64_FORMAT "}",
				 through, deleted);
		values[AL_NEW_VALUES] = DirectFunctionCall1(jsonb_in, CStringGetDatum(detail));
		values[AL_CHANGED_COLUMNS] = text_array(NULL, 0);
		audit_write(values, nulls);
	}

	PopActiveSnapshot();
	SPI_finish();
	PG_RETURN_INT64(deleted);
}
