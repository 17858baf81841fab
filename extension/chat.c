/*-------------------------------------------------------------------------
 *
 * chat.c
 *	  Chat sessions and messages, and completions charged with their
 *	  message.
 *
 * Ownership
 * ---------
 * Every function takes the user_id of the rows it touches first and touches
 * no other user's rows.  A session that does not exist, belongs to another
 * user or was deleted is reported the same way, PM002 "chat session ... not
 * found for user ...", so that a caller learns nothing about other users'
 * sessions.  An ended session (completed or failed) takes no new messages
 * (55000).
 *
 * Concurrency rules
 * -----------------
 * A message is stored under a FOR SHARE lock of its session row, and ending,
 * deleting or changing the context of a session takes FOR UPDATE: a session
 * that was ended or deleted has no message committed after that.
 *
 * record_completion stores the assistant's message and charges its cost in
 * the same transaction: the charge goes through the ledger's C entry point
 * pgm_ledger_charge (the path of deduct_balance) with the message's
 * model_id (the session's when the call names none), so the ledger entry is
 * an ordinary charge that model_usage and usage_daily count.  Both happen or neither:
 * an error in either (PM001 above all) aborts the statement.  With an
 * idempotency key, the call first locks the user as every ledger operation
 * does (pgm_check_user) and only then looks the key up in the ledger: a
 * concurrent repeat of the same key waits for the first call to commit or
 * abort, then finds its entry and the message that carries it, and replays
 * them (replayed = true) without storing a second message or charging
 * again.  The same key with another session, content, tokens or cost, or a
 * key already used by a ledger call that is not a completion, raises PM003.
 *
 * The application's own ids
 * -------------------------
 * A session may be created under the application's id: the same id again
 * for the same user and model is a repeat that returns it, anything else
 * 23505.  A message may carry the application's uuid (unique across the
 * messages): a repeat under it with the same message in the same session
 * returns the first message's id (a completion: its result, replayed), and
 * anything else under it is PM003, which names nothing of the message (it
 * may be another user's).  A completion with a uuid locks the user first,
 * as with an idempotency key, so its twin waits and then replays; a plain
 * message relies on the unique index (INSERT ... ON CONFLICT DO NOTHING,
 * then the committed twin is read).
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/nbtree.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(pgm_create_chat_session);
PG_FUNCTION_INFO_V1(pgm_save_chat_message);
PG_FUNCTION_INFO_V1(pgm_record_completion);
PG_FUNCTION_INFO_V1(pgm_get_chat_history);
PG_FUNCTION_INFO_V1(pgm_end_chat_session);
PG_FUNCTION_INFO_V1(pgm_update_chat_context);
PG_FUNCTION_INFO_V1(pgm_delete_chat_session);
PG_FUNCTION_INFO_V1(pgm_list_chat_sessions);
PG_FUNCTION_INFO_V1(pgm_chat_session_owner);

#define PGM_MAX_TITLE_LEN		500
#define PGM_MAX_AGENT_ID_LEN	200
#define PGM_MAX_REASON_LEN		2000

/* How a session row is read: for a message, for a change, or just read. */
typedef enum SessionLock
{
	SESSION_READ = 0,
	SESSION_SHARE,
	SESSION_UPDATE
} SessionLock;

/* What the functions need to know of a session. */
typedef struct SessionInfo
{
	text	   *model_id;		/* copied into the caller's context */
	char		status[16];
} SessionInfo;

/* ----------------------------------------------------------------
 * Prepared statements
 * ----------------------------------------------------------------
 */
static SPIPlanPtr plan_session[3];
static SPIPlanPtr plan_new_session;
static SPIPlanPtr plan_insert_message;
static SPIPlanPtr plan_find_completion;
static SPIPlanPtr plan_end;
static SPIPlanPtr plan_context;
static SPIPlanPtr plan_delete;
static SPIPlanPtr plan_sessions;
static SPIPlanPtr plan_session_of_id;
static SPIPlanPtr plan_find_uuid;
static SPIPlanPtr plan_entry;
static SPIPlanPtr plan_merge_context;
static SPIPlanPtr plan_owner;

#define SESSION_SQL \
	"SELECT s.model_id, s.status, s.deleted_at IS NOT NULL, b.active" \
	"  FROM pgmarket.chat_sessions s" \
	"  JOIN pgmarket.balances b ON b.user_id = s.user_id" \
	" WHERE s.session_id = $1 AND s.user_id = $2"

static const PgmPlanDef chat_plans[] = {
	{&plan_session[SESSION_READ],
		SESSION_SQL,
		2, {UUIDOID, UUIDOID}},

	{&plan_session[SESSION_SHARE],
		SESSION_SQL " FOR SHARE OF s",
		2, {UUIDOID, UUIDOID}},

	{&plan_session[SESSION_UPDATE],
		SESSION_SQL " FOR UPDATE OF s",
		2, {UUIDOID, UUIDOID}},

	{&plan_new_session,
		"INSERT INTO pgmarket.chat_sessions (session_id, user_id, model_id,"
		"       title, agent_id)"
		" VALUES ($1, $2, $3, $4, $5)"
		" ON CONFLICT (session_id) DO NOTHING RETURNING session_id",
		5, {UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID}},

	/* whose a taken session id is */
	{&plan_session_of_id,
		"SELECT user_id, model_id, deleted_at IS NOT NULL"
		"  FROM pgmarket.chat_sessions WHERE session_id = $1",
		1, {UUIDOID}},

	{&plan_insert_message,
		"INSERT INTO pgmarket.chat_messages (session_id, user_id, role,"
		"       content, tokens, cost, tool_calls, entry_id, message_uuid,"
		"       model_id)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
		" ON CONFLICT (message_uuid) WHERE message_uuid IS NOT NULL DO NOTHING"
		" RETURNING message_id",
		10, {UUIDOID, UUIDOID, TEXTOID, TEXTOID, INT4OID, INT8OID, JSONBOID,
		INT8OID, UUIDOID, TEXTOID}},

	/* the message a uuid names, whoever's it is */
	{&plan_find_uuid,
		"SELECT user_id, session_id, role, content, tokens, cost, model_id,"
		"       message_id, entry_id, tool_calls"
		"  FROM pgmarket.chat_messages WHERE message_uuid = $1",
		1, {UUIDOID}},

	/* what a completion's charge left available */
	{&plan_entry,
		"SELECT amount, available FROM pgmarket.ledger"
		" WHERE user_id = $1 AND entry_id = $2",
		2, {UUIDOID, INT8OID}},

	/* the entry of an idempotency key, and the message that carries it */
	{&plan_find_completion,
		"SELECT l.entry_id, l.kind, l.amount, l.available,"
		"       m.session_id, m.content, m.tokens, m.cost, l.model_id,"
		"       m.message_uuid"
		"  FROM pgmarket.ledger l"
		"  LEFT JOIN pgmarket.chat_messages m"
		"    ON m.user_id = l.user_id AND m.entry_id = l.entry_id"
		" WHERE l.user_id = $1 AND l.idempotency_key = $2",
		2, {UUIDOID, TEXTOID}},

	{&plan_end,
		"UPDATE pgmarket.chat_sessions"
		"   SET status = $2, end_reason = $3, ended_at = now(),"
		"       updated_at = now()"
		" WHERE session_id = $1",
		3, {UUIDOID, TEXTOID, TEXTOID}},

	{&plan_context,
		"UPDATE pgmarket.chat_sessions SET context = $2, updated_at = now()"
		" WHERE session_id = $1",
		2, {UUIDOID, JSONBOID}},

	{&plan_delete,
		"UPDATE pgmarket.chat_sessions"
		"   SET deleted_at = now(), updated_at = now()"
		" WHERE session_id = $1",
		1, {UUIDOID}},

	/*
	 * A page of sessions, newest first, with each one's message count and
	 * last activity (its newest message, or its own last change): the
	 * counts read the primary key of chat_messages, by session.
	 */
	{&plan_sessions,
		"SELECT s.session_id, s.model_id, s.agent_id, s.title, s.status,"
		"       s.context, m.n, s.created_at, greatest(s.updated_at, m.last)"
		"  FROM pgmarket.chat_sessions s"
		"  CROSS JOIN LATERAL (SELECT count(*) AS n, max(created_at) AS last"
		"                        FROM pgmarket.chat_messages"
		"                       WHERE session_id = s.session_id) m"
		" WHERE s.user_id = $1 AND s.deleted_at IS NULL"
		"   AND ($2::text IS NULL OR s.status = $2)"
		"   AND ($4::timestamptz IS NULL OR s.created_at < $4"
		"        OR (s.created_at = $4 AND s.session_id > $5))"
		" ORDER BY s.created_at DESC, s.session_id LIMIT $3",
		5, {UUIDOID, TEXTOID, INT4OID, TIMESTAMPTZOID, UUIDOID}},


	/* a top-level merge: the keys given replace theirs, the others stay */
	{&plan_merge_context,
		"UPDATE pgmarket.chat_sessions"
		"   SET context = coalesce(context, '{}'::jsonb) || $2,"
		"       updated_at = now()"
		" WHERE session_id = $1",
		2, {UUIDOID, JSONBOID}},

	{&plan_owner,
		"SELECT s.user_id FROM pgmarket.chat_sessions s"
		"  JOIN pgmarket.balances b ON b.user_id = s.user_id AND b.active"
		" WHERE s.session_id = $1 AND s.deleted_at IS NULL",
		1, {UUIDOID}},
};

/*
 * The chat's plans read the columns of 0.6.0: until ALTER EXTENSION UPDATE
 * they are not prepared, and the calls say so (pgm_require_schema).
 */
static bool chat_schema_checked = false;

static void
prepare_plans(void)
{
	if (!chat_schema_checked)
	{
		pgm_schema_flag_register(&chat_schema_checked);
		pgm_require_schema();
		chat_schema_checked = true;
	}
	PGM_PREPARE_PLANS(chat_plans);
}

/* ----------------------------------------------------------------
 * Helpers
 * ----------------------------------------------------------------
 */

static void
raise_session_not_found(Datum session_id, Datum user_id, bool deleted)
{
	ereport(ERROR,
			(errcode(ERRCODE_PGM_UNKNOWN_ACCOUNT),
			 errmsg("chat session %s not found for user %s",
					pgm_uuid_cstring(session_id), pgm_uuid_cstring(user_id)),
			 deleted ? errdetail("The session was deleted.") : 0));
}

/* A session row read by its primary key, without SPI. */
enum
{
	SC_USER_ID, SC_DELETED_AT, SC_MODEL_ID, SC_STATUS, SC_NCOLS
};

static PgmIndexRef session_by_id = {
	"chat_sessions", "chat_sessions_pkey", 1, {BTEqualStrategyNumber},
	SC_NCOLS, {"user_id", "deleted_at", "model_id", "status"},
	{UUIDOID, TIMESTAMPTZOID, TEXTOID, TEXTOID}
};

static bool same_uuid(Datum a, Datum b);

/*
 * A session read by index, without SPI, under snapshot: the session row,
 * then the owner's balance row.  True when the session is the user's, not
 * deleted, and the user is active; false when anything of that does not
 * hold (find_session's statement then tells why).  With lock (SESSION_SHARE
 * or SESSION_UPDATE) the session row is locked FOR SHARE or FOR UPDATE as
 * plan_session[lock] locks it: in READ COMMITTED after waiting for a
 * concurrent writer, at its latest version, whose columns are the ones
 * checked (40001 in REPEATABLE READ and SERIALIZABLE, as the statement
 * raises); another user's session is not locked, as the statement's WHERE
 * leaves it.  The session's model into *model (in the caller's context)
 * and its status into info, each when not NULL.
 */
static bool
read_session(Snapshot snapshot, Datum user_id, Datum session_id,
			 SessionLock lock, Datum *model, SessionInfo *info)
{
	PgmIndexScan scan;
	bool		ok = false;
	bool		isnull;

	if (pgm_index_find(&scan, &session_by_id, snapshot, 1, &session_id) &&
		same_uuid(pgm_index_col(&scan, SC_USER_ID, &isnull), user_id) &&
		(lock == SESSION_READ ||
		 pgm_index_lock_row(&scan, lock == SESSION_UPDATE ?
							LockTupleExclusive : LockTupleShare)))
	{
		ok = same_uuid(pgm_index_col(&scan, SC_USER_ID, &isnull), user_id);
		(void) pgm_index_col(&scan, SC_DELETED_AT, &isnull);
		ok = ok && isnull;
		if (ok && model)
			*model = datumCopy(pgm_index_col(&scan, SC_MODEL_ID, &isnull),
							   false, -1);
		if (ok && info)
			text_to_cstring_buffer(DatumGetTextPP(pgm_index_col(&scan, SC_STATUS,
																&isnull)),
								   info->status, sizeof(info->status));
	}
	pgm_index_end(&scan);
	return ok && pgm_user_active_read(snapshot, user_id);
}

/*
 * plan_session[lock] for SESSION_SHARE and SESSION_UPDATE, directly: after
 * the command counter's step and under a new snapshot, as SPI runs a
 * statement that writes.  info filled when true (SPI connected: the model
 * moved to the caller's context by SPI_datumTransfer).
 */
static bool
lock_session_direct(Datum user_id, Datum session_id, SessionLock lock,
					SessionInfo *info)
{
	Datum		model = (Datum) 0;
	bool		ok;

	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	ok = read_session(GetActiveSnapshot(), user_id, session_id, lock,
					  info ? &model : NULL, info);
	PopActiveSnapshot();
	if (ok && info)
		info->model_id = (text *) SPI_datumTransfer(model, false, -1);
	return ok;
}

/*
 * Find a session of a user (SPI connected), with the lock asked for.  Raises
 * PM002 for an unknown or deactivated user, and for a session that does not
 * exist, is another user's or was deleted.  info may be NULL.  A lock is
 * taken directly; the statement runs when there is no lock to take, and
 * when the direct read did not find a readable session, to say why.
 */
static void
find_session(Datum user_id, Datum session_id, SessionLock lock,
			 SessionInfo *info)
{
	Datum		values[2] = {session_id, user_id};
	bool		isnull;

	if (lock != SESSION_READ &&
		lock_session_direct(user_id, session_id, lock, info))
		return;
	pgm_exec(plan_session[lock], values, NULL, lock == SESSION_READ);
	if (SPI_processed != 1)
	{
		pgm_check_user(user_id, false);
		raise_session_not_found(session_id, user_id, false);
	}
	if (!DatumGetBool(pgm_col(0, 4, &isnull)))
		pgm_raise_unknown_account(user_id);
	if (DatumGetBool(pgm_col(0, 3, &isnull)))
		raise_session_not_found(session_id, user_id, true);
	if (info)
	{
		Datum		model = pgm_col(0, 1, &isnull);
		char	   *status = TextDatumGetCString(pgm_col(0, 2, &isnull));

		info->model_id = (text *) SPI_datumTransfer(model, false, -1);
		strlcpy(info->status, status, sizeof(info->status));
	}
}

/*
 * Is status one of a session's: active, completed or failed (with ended,
 * one that a session ends as: completed or failed)?
 */
static bool
is_session_status(const char *status, bool ended)
{
	return (!ended && strcmp(status, "active") == 0) ||
		strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0;
}

/* An ended session takes no new messages. */
static void
check_open(Datum session_id, const SessionInfo *info)
{
	if (strcmp(info->status, "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("chat session %s is %s", pgm_uuid_cstring(session_id),
						info->status),
				 errdetail("An ended session takes no new messages.")));
}


static int32
tokens_arg(FunctionCallInfo fcinfo, int argno)
{
	int32		tokens;

	pgm_require_arg(fcinfo, argno, "tokens");
	tokens = PG_GETARG_INT32(argno);
	if (tokens < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tokens %d must not be negative", tokens)));
	return tokens;
}

/*
 * The cost of a message as recorded: zero or a positive whole number of
 * micro-credits.  Anything else raises what the ledger raises for it.
 */
static int64
recorded_cost(Datum num)
{
	int64		micro = 0;

	if (pgm_numeric_to_micro_noerror(num, &micro) == PGM_AMOUNT_ZERO)
		return 0;
	return pgm_numeric_to_micro(num, "cost");
}

/* A message to store, as the calls that store one describe it. */
typedef struct NewMessage
{
	Datum		session_id;
	Datum		user_id;
	const char *role;
	text	   *content;
	int32		tokens;
	int64		cost;
	Datum		tool_calls;		/* (Datum) 0: none */
	int64		entry_id;		/* 0: not a completion */
	Datum		message_uuid;	/* (Datum) 0: none */
	text	   *model_id;		/* the message's, else the session's */
} NewMessage;

/* ----------------------------------------------------------------
 * A message written directly
 *
 * plan_insert_message without SPI, the plan cache or the executor
 * (heapwrite.c's pgm_insert_row), for a message without a message_uuid
 * (the statement's ON CONFLICT arbiter is the uuid's index) in READ
 * COMMITTED.  What the statement writes, and only while it is all the
 * statement writes: chat_messages with the columns of 0.6.0 by name and
 * type and no other that an INSERT leaving it out would fill or refuse;
 * message_id's default nextval of chat_message_id_seq and created_at's
 * now(), which the write computes alike; no trigger for INSERT but the
 * check of the foreign key from session_id to chat_sessions, which the
 * callers' FOR SHARE lock of the session row (find_session) already
 * holds; no rule, no row security that applies.  The shape is read once
 * per relcache invalidation; the triggers at every write.
 * ----------------------------------------------------------------
 */
enum
{
	MW_SESSION_ID, MW_MESSAGE_ID, MW_USER_ID, MW_ROLE, MW_CONTENT, MW_TOKENS,
	MW_COST, MW_TOOL_CALLS, MW_ENTRY_ID, MW_CREATED_AT, MW_MESSAGE_UUID,
	MW_MODEL_ID, MW_NCOLS
};

static const char *const message_cols[MW_NCOLS] = {
	"session_id", "message_id", "user_id", "role", "content", "tokens",
	"cost", "tool_calls", "entry_id", "created_at", "message_uuid", "model_id"
};
static const Oid message_types[MW_NCOLS] = {
	UUIDOID, INT8OID, UUIDOID, TEXTOID, TEXTOID, INT4OID, INT8OID, JSONBOID,
	INT8OID, TIMESTAMPTZOID, UUIDOID, TEXTOID
};

typedef struct MessageShape
{
	Oid			relid;
	Oid			seqid;			/* chat_message_id_seq */
	Oid			sessions_relid;
	AttrNumber	sessions_key;	/* chat_sessions.session_id */
	AttrNumber	col[MW_NCOLS];
} MessageShape;

static bool message_shape_known = false;
static bool message_shape_ok = false;
static MessageShape message_shape;

/* Is node a call of function funcid with no argument, or with the one
 * constant regclass arg (InvalidOid: none)? */
static bool
default_is_call(Node *node, Oid funcid, Oid arg)
{
	FuncExpr   *f = (FuncExpr *) node;
	Const	   *c;

	if (node == NULL || !IsA(node, FuncExpr) || f->funcid != funcid)
		return false;
	if (!OidIsValid(arg))
		return f->args == NIL;
	if (list_length(f->args) != 1 || !IsA(linitial(f->args), Const))
		return false;
	c = (Const *) linitial(f->args);
	return c->consttype == REGCLASSOID && !c->constisnull &&
		DatumGetObjectId(c->constvalue) == arg;
}

/* Read the shape of chat_messages (rel, open and locked) that the direct
 * write needs; false when the table is not that shape. */
static bool
read_message_shape(Relation rel, MessageShape *shape)
{
	Oid			nsp = RelationGetNamespace(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	int			c;

	shape->relid = RelationGetRelid(rel);
	if (strcmp(RelationGetRelationName(rel), "chat_messages") != 0 ||
		nsp != get_namespace_oid("pgmarket", true))
		return false;
	shape->seqid = get_relname_relid("chat_message_id_seq", nsp);
	shape->sessions_relid = get_relname_relid("chat_sessions", nsp);
	if (!OidIsValid(shape->seqid) || !OidIsValid(shape->sessions_relid))
		return false;
	shape->sessions_key = get_attnum(shape->sessions_relid, "session_id");
	if (shape->sessions_key == InvalidAttrNumber)
		return false;

	if (desc->constr && desc->constr->has_generated_stored)
		return false;
	for (c = 0; c < MW_NCOLS; c++)
		if ((shape->col[c] = pgm_column_number(desc, message_cols[c],
											   message_types[c], false)) ==
			InvalidAttrNumber)
			return false;
	/* message_id and created_at by their defaults, checked below */
	return pgm_insert_fills_nothing_else(desc, shape->col, MW_NCOLS) &&
		default_is_call(pgm_column_default(rel, shape->col[MW_MESSAGE_ID]),
						F_NEXTVAL, shape->seqid) &&
		default_is_call(pgm_column_default(rel, shape->col[MW_CREATED_AT]),
						F_NOW, InvalidOid);
}

/*
 * The message written directly, its id returned; 0 when this message or
 * this transaction takes the statement.
 */
static int64
insert_message_direct(const NewMessage *m)
{
	MessageShape *shape = &message_shape;
	Oid			relid;
	Relation	rel;
	TupleTableSlot *slot;
	int64		message_id;

	if (m->message_uuid != (Datum) 0 || IsolationUsesXactSnapshot() ||
		XactReadOnly || IsInParallelMode())
		return 0;

	/*
	 * The table locked first, as the statement locks it: taking the lock
	 * processes the invalidations of what another session changed and
	 * committed meanwhile (a column, a default), and the shape is read
	 * again after one.  The table found by the shape's OID while the shape
	 * is known (one dropped meanwhile is not found: the statement then).
	 */
	relid = message_shape_known ? shape->relid :
		get_relname_relid("chat_messages", get_namespace_oid("pgmarket", true));
	if (!OidIsValid(relid) ||
		(rel = try_table_open(relid, RowExclusiveLock)) == NULL)
		return 0;
	if (!message_shape_known || shape->relid != RelationGetRelid(rel))
	{
		pgm_schema_flag_register(&message_shape_known);
		message_shape_ok = read_message_shape(rel, shape);
		message_shape_known = true;
	}
	if (!message_shape_ok ||
		!pgm_direct_insertable(rel, shape->col[MW_SESSION_ID],
							   shape->sessions_relid, shape->sessions_key))
	{
		table_close(rel, NoLock);
		return 0;
	}
	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
	memset(slot->tts_isnull, true,
		   sizeof(bool) * slot->tts_tupleDescriptor->natts);
	message_id = nextval_internal(shape->seqid, true);
#define SET(which, value) \
	(slot->tts_values[shape->col[which] - 1] = (value), \
	 slot->tts_isnull[shape->col[which] - 1] = false)
	SET(MW_SESSION_ID, m->session_id);
	SET(MW_MESSAGE_ID, Int64GetDatum(message_id));
	SET(MW_USER_ID, m->user_id);
	SET(MW_ROLE, CStringGetTextDatum(m->role));
	SET(MW_CONTENT, PointerGetDatum(m->content));
	SET(MW_TOKENS, Int32GetDatum(m->tokens));
	SET(MW_COST, Int64GetDatum(m->cost));
	if (m->tool_calls != (Datum) 0)
		SET(MW_TOOL_CALLS, m->tool_calls);
	if (m->entry_id != 0)
		SET(MW_ENTRY_ID, Int64GetDatum(m->entry_id));
	SET(MW_CREATED_AT,
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()));
	if (m->model_id != NULL)
		SET(MW_MODEL_ID, PointerGetDatum(m->model_id));
#undef SET
	ExecStoreVirtualTuple(slot);
	pgm_insert_row(rel, slot);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	return message_id;
}

/*
 * Insert a message into a locked, open session; returns its id, or 0 when
 * a concurrent call committed a message under the same uuid first.
 * Directly where that is what the statement writes.
 */
static int64
insert_message(const NewMessage *m)
{
	Datum		values[10];
	char		nulls[10];
	int64		message_id = insert_message_direct(m);

	if (message_id != 0)
		return message_id;
	memset(nulls, ' ', sizeof(nulls));
	values[0] = m->session_id;
	values[1] = m->user_id;
	values[2] = CStringGetTextDatum(m->role);
	values[3] = PointerGetDatum(m->content);
	values[4] = Int32GetDatum(m->tokens);
	values[5] = Int64GetDatum(m->cost);
	values[6] = m->tool_calls;
	values[7] = Int64GetDatum(m->entry_id);
	values[8] = m->message_uuid;
	values[9] = PointerGetDatum(m->model_id);
	if (m->tool_calls == (Datum) 0)
		nulls[6] = 'n';
	if (m->entry_id == 0)
		nulls[7] = 'n';
	if (m->message_uuid == (Datum) 0)
		nulls[8] = 'n';
	pgm_exec(plan_insert_message, values, nulls, false);
	return SPI_processed == 1 ? pgm_col_int64(0, 1) : 0;
}

static bool
same_uuid(Datum a, Datum b)
{
	return memcmp(DatumGetUUIDP(a)->data, DatumGetUUIDP(b)->data, UUID_LEN) == 0;
}

static bool
same_text(Datum a, Datum b)
{
	return DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID, a, b));
}

/* Run a kept plan that reads at most one row: true when it found one. */
static bool
found_row(SPIPlanPtr plan, Datum *values)
{
	pgm_exec(plan, values, NULL, false);
	return SPI_processed == 1;
}

/* PM003 for a message uuid taken by something else; detail says what. */
static void raise_uuid_taken(Datum message_uuid, const char *detail) pg_attribute_noreturn();

static void
raise_uuid_taken(Datum message_uuid, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_PGM_IDEMPOTENCY_CONFLICT),
			 errmsg("message_uuid %s was already used with other arguments",
					pgm_uuid_cstring(message_uuid)),
			 errdetail_internal("%s", detail)));
}

/* Is the row plan_find_uuid found the message m, to the letter? */
static bool
same_message(const NewMessage *m)
{
	bool		isnull;
	bool		model_null;
	bool		same;
	Datum		model = pgm_col(0, 7, &model_null);

	same = same_uuid(pgm_col(0, 1, &isnull), m->user_id) &&
		same_uuid(pgm_col(0, 2, &isnull), m->session_id) &&
		same_text(pgm_col(0, 3, &isnull), CStringGetTextDatum(m->role)) &&
		same_text(pgm_col(0, 4, &isnull), PointerGetDatum(m->content)) &&
		DatumGetInt32(pgm_col(0, 5, &isnull)) == m->tokens &&
		pgm_col_int64(0, 6) == m->cost &&
		!model_null && same_text(model, PointerGetDatum(m->model_id));
	if (same)
	{
		bool		tools_null;
		Datum		tools = pgm_col(0, 10, &tools_null);

		same = m->tool_calls == (Datum) 0 ? tools_null :
			!tools_null && DatumGetBool(DirectFunctionCall2(jsonb_eq, tools,
															m->tool_calls));
	}
	return same;
}

/*
 * The message that m's uuid already names, if any: its id (and in
 * *entry_id its ledger charge, 0 for none) when it is the same message of
 * the same user and session; PM003 when it is anything else, naming
 * nothing of it (it may be another user's).  False when the uuid is free.
 */
static bool
find_by_uuid(const NewMessage *m, int64 *message_id, int64 *entry_id)
{
	Datum		uuid = m->message_uuid;

	if (!found_row(plan_find_uuid, &uuid))
		return false;
	if (!same_message(m))
		raise_uuid_taken(m->message_uuid,
						 "A message uuid names one message: the same role, content, tokens, cost, model and tool calls in the same session of the same user.");
	*message_id = pgm_col_int64(0, 8);
	*entry_id = pgm_col_int64(0, 9);
	return true;
}

/*
 * Is argument argno there and not NULL?  The arguments that 0.6.0 added
 * come last; until ALTER EXTENSION UPDATE, the functions of 0.5.0 call
 * this library without them, and get what the defaults give.
 */
static bool
has_arg(FunctionCallInfo fcinfo, int argno)
{
	return PG_NARGS() > argno && !PG_ARGISNULL(argno);
}

/*
 * An optional argument as the parameter of the same number of a plan:
 * SQL NULL when NULL or absent.
 */
static void
bind_optional_arg(FunctionCallInfo fcinfo, int argno, Datum *values,
				  char *nulls)
{
	values[argno] = has_arg(fcinfo, argno) ? PG_GETARG_DATUM(argno) : (Datum) 0;
	nulls[argno] = has_arg(fcinfo, argno) ? ' ' : 'n';
}

/* The optional message_uuid argument: (Datum) 0 when NULL or absent. */
static Datum
uuid_arg_or_none(FunctionCallInfo fcinfo, int argno)
{
	return has_arg(fcinfo, argno) ? PG_GETARG_DATUM(argno) : (Datum) 0;
}

/* An optional trailing text argument: NULL when absent, else checked. */
static text *
optional_trailing_text(FunctionCallInfo fcinfo, int argno,
					   const char *argname, int maxlen)
{
	return PG_NARGS() > argno ?
		pgm_optional_text(fcinfo, argno, argname, maxlen) : NULL;
}

/* ----------------------------------------------------------------
 * create_chat_session(user_id, model_id, title, agent_id) RETURNS uuid
 * ----------------------------------------------------------------
 */
/*
 * The session a taken id names: the same user and model (not deleted) make
 * it a repeat of this call, which returns the id; anything else is 23505.
 */
static void
check_taken_id(Datum session_id, Datum user_id, text *model_id)
{
	Datum		values[1] = {session_id};
	bool		isnull;

	pgm_exec(plan_session_of_id, values, NULL, false);
	if (SPI_processed == 1 &&
		same_uuid(pgm_col(0, 1, &isnull), user_id) &&
		same_text(pgm_col(0, 2, &isnull), PointerGetDatum(model_id)) &&
		!pgm_col_bool(0, 3))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("chat session %s already exists", pgm_uuid_cstring(session_id)),
			 errdetail("A session id names one session: the same id again is a repeat only for the same user and model.")));
}

Datum
pgm_create_chat_session(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	text	   *model_id;
	text	   *title;
	text	   *agent_id;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	model_id = pgm_required_text(fcinfo, 1, "model_id", PGM_MAX_MODEL_ID_LEN);
	title = pgm_optional_text(fcinfo, 2, "title", PGM_MAX_TITLE_LEN);
	agent_id = pgm_optional_text(fcinfo, 3, "agent_id", PGM_MAX_AGENT_ID_LEN);
	if (PG_NARGS() > 4)
	{
		pgm_require_arg(fcinfo, 4, "id");
		values[0] = PG_GETARG_DATUM(4);
	}
	else
	{
		/* the 0.5.0 function: the server makes the id */
		pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));

		pgm_random_uuid(id);
		values[0] = UUIDPGetDatum(id);
	}

	pgm_spi_connect();
	prepare_plans();
	pgm_check_user(user_id, false);

	values[1] = user_id;
	values[2] = PointerGetDatum(model_id);
	pgm_bind_ptr(values, nulls, 3, title);
	pgm_bind_ptr(values, nulls, 4, agent_id);
	pgm_exec(plan_new_session, values, nulls, false);
	if (SPI_processed != 1)
		check_taken_id(values[0], user_id, model_id);

	pgm_spi_finish();
	PG_RETURN_DATUM(values[0]);
}

/*
 * A message's content: at most PGM_MAX_CONTENT_BYTES octets (22023), so that
 * one call cannot store an unbounded row.
 */
static text *
content_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *content = PG_GETARG_TEXT_PP(argno);

	if (VARSIZE_ANY_EXHDR(content) > PGM_MAX_CONTENT_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("content of %zu bytes is longer than %d bytes",
						(size_t) VARSIZE_ANY_EXHDR(content), PGM_MAX_CONTENT_BYTES)));
	return content;
}

/* ----------------------------------------------------------------
 * save_chat_message(user_id, session_id, role, content, tokens, cost,
 *					 tool_calls) RETURNS bigint
 * ----------------------------------------------------------------
 */
Datum
pgm_save_chat_message(PG_FUNCTION_ARGS)
{
	NewMessage	m;
	SessionInfo info;
	text	   *model_id;
	int64		message_id = 0;
	int64		entry_id;

	m.user_id = pgm_user_arg(fcinfo, 0);
	pgm_require_arg(fcinfo, 1, "session_id");
	pgm_require_arg(fcinfo, 2, "role");
	pgm_require_arg(fcinfo, 3, "content");
	m.session_id = PG_GETARG_DATUM(1);
	m.role = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (strcmp(m.role, "system") != 0 && strcmp(m.role, "user") != 0 &&
		strcmp(m.role, "assistant") != 0 && strcmp(m.role, "tool") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("role \"%s\" is not a chat role",
						pgm_shown_value(m.role, 40)),
				 errhint("A message's role is system, user, assistant or tool.")));
	m.content = content_arg(fcinfo, 3);
	m.tokens = tokens_arg(fcinfo, 4);
	pgm_require_arg(fcinfo, 5, "cost");
	m.cost = recorded_cost(PG_GETARG_DATUM(5));
	m.tool_calls = PG_ARGISNULL(6) ? (Datum) 0 : PG_GETARG_DATUM(6);
	m.entry_id = 0;
	m.message_uuid = uuid_arg_or_none(fcinfo, 7);
	model_id = optional_trailing_text(fcinfo, 8, "model_id", PGM_MAX_MODEL_ID_LEN);

	pgm_spi_connect();
	prepare_plans();
	find_session(m.user_id, m.session_id, SESSION_SHARE, &info);
	m.model_id = model_id ? model_id : info.model_id;
	/* a repeat under the same uuid returns the first message's id */
	if (m.message_uuid == (Datum) 0 ||
		!find_by_uuid(&m, &message_id, &entry_id))
	{
		check_open(m.session_id, &info);
		message_id = insert_message(&m);
		/* a concurrent call with this uuid committed first: its message */
		if (message_id == 0 && !find_by_uuid(&m, &message_id, &entry_id))
			elog(ERROR, "message_uuid conflict without a visible message");
	}
	pgm_spi_finish();
	PG_RETURN_INT64(message_id);
}

/* ----------------------------------------------------------------
 * record_completion(user_id, session_id, content, tokens, cost,
 *					 idempotency_key) RETURNS ledger_result
 * ----------------------------------------------------------------
 */
/*
 * Did the earlier charge carry the model this call names (or, when it
 * names none, the session's)?
 */
static bool
same_model(Datum prior, bool prior_null, const NewMessage *m)
{
	Datum		values[1] = {m->session_id};
	Datum		model;
	bool		isnull;

	if (prior_null)
		return false;
	if (m->model_id != NULL)
		return same_text(prior, PointerGetDatum(m->model_id));
	if (!found_row(plan_session_of_id, values))
		return false;
	model = pgm_col(0, 2, &isnull);
	return same_text(prior, model);
}

/*
 * A completion repeated under its idempotency key (the caller holds the
 * user's lock): true, with the first call's result in *out, when the key
 * was used by this completion; PM003 when it was used by anything else.
 */
static bool
replay_by_key(const NewMessage *m, text *key, PgmLedgerOutcome *out)
{
	Datum		kv[2] = {m->user_id, PointerGetDatum(key)};
	bool		isnull;
	bool		msg_null;
	bool		model_null;
	bool		uuid_null;
	bool		same;
	int64		prior_entry;
	Datum		prior_model;
	Datum		prior_uuid;

	if (!found_row(plan_find_completion, kv))
		return false;
	prior_entry = pgm_col_int64(0, 1);
	out->entry_id = prior_entry;
	out->kind = "charge";
	out->amount = pgm_col_int64(0, 3);
	out->available = pgm_col_int64(0, 4);
	out->replayed = true;
	(void) pgm_col(0, 5, &msg_null);
	same = !msg_null && same_uuid(pgm_col(0, 5, &isnull), m->session_id) &&
		DatumGetInt32(pgm_col(0, 7, &isnull)) == m->tokens &&
		pgm_col_int64(0, 8) == m->cost &&
		out->amount == m->cost &&
		same_text(pgm_col(0, 6, &isnull), PointerGetDatum(m->content));
	/* copied out: same_model may run a query of its own */
	prior_model = pgm_col(0, 9, &model_null);
	prior_model = model_null ? (Datum) 0 : datumCopy(prior_model, false, -1);
	prior_uuid = pgm_col(0, 10, &uuid_null);
	/* a uuid given with the key must be the one the completion took */
	if (same && m->message_uuid != (Datum) 0)
		same = !uuid_null && same_uuid(prior_uuid, m->message_uuid);
	same = same && same_model(prior_model, model_null, m);
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_PGM_IDEMPOTENCY_CONFLICT),
				 errmsg("idempotency key \"%s\" was already used with other arguments",
						text_to_cstring(key)),
				 msg_null
				 ? errdetail("It was used by a ledger entry %lld of user %s that is not a completion.",
							 (long long) prior_entry, pgm_uuid_cstring(m->user_id))
				 : errdetail("It was used by the completion recorded as entry %lld for user %s.",
							 (long long) prior_entry, pgm_uuid_cstring(m->user_id))));
	return true;
}

/*
 * A completion repeated under its message uuid (the caller holds the
 * user's lock): true, with the first call's result in *out, when the uuid
 * names this completion; PM003 when it names another message, a message
 * that is not a completion, or when the call also brings a key that the
 * completion was not recorded under (key was looked up first and is free).
 */
static bool
replay_by_uuid(const NewMessage *m, text *key, PgmLedgerOutcome *out)
{
	int64		message_id;
	int64		entry_id;
	Datum		values[2];

	if (m->message_uuid == (Datum) 0 || !find_by_uuid(m, &message_id, &entry_id))
		return false;
	/* the key, when one came too, named nothing: not this completion's */
	if (key != NULL)
		raise_uuid_taken(m->message_uuid,
						 psprintf("It names a completion recorded without idempotency key \"%s\".",
								  text_to_cstring(key)));
	if (entry_id == 0)
		raise_uuid_taken(m->message_uuid,
						 psprintf("It names message %lld, which is not a completion.",
								  (long long) message_id));
	values[0] = m->user_id;
	values[1] = Int64GetDatum(entry_id);
	if (!found_row(plan_entry, values))
		elog(ERROR, "the charge of message %lld is missing", (long long) message_id);
	out->entry_id = entry_id;
	out->kind = "charge";
	out->amount = pgm_col_int64(0, 1);
	out->available = pgm_col_int64(0, 2);
	out->replayed = true;
	return true;
}

Datum
pgm_record_completion(PG_FUNCTION_ARGS)
{
	NewMessage	m;
	text	   *key;
	text	   *model_id;
	SessionInfo info;
	PgmLedgerOutcome out;

	m.user_id = pgm_user_arg(fcinfo, 0);
	pgm_require_arg(fcinfo, 1, "session_id");
	pgm_require_arg(fcinfo, 2, "content");
	m.session_id = PG_GETARG_DATUM(1);
	m.role = "assistant";
	m.content = content_arg(fcinfo, 2);
	m.tokens = tokens_arg(fcinfo, 3);
	pgm_require_arg(fcinfo, 4, "cost");
	m.cost = pgm_numeric_to_micro(PG_GETARG_DATUM(4), "cost");
	key = pgm_optional_text(fcinfo, 5, "idempotency_key", PGM_MAX_IDEM_KEY_LEN);
	m.tool_calls = (Datum) 0;
	m.message_uuid = uuid_arg_or_none(fcinfo, 6);
	model_id = optional_trailing_text(fcinfo, 7, "model_id", PGM_MAX_MODEL_ID_LEN);

	m.model_id = model_id;		/* the session's, once it is read */

	pgm_spi_connect();
	prepare_plans();

	/* under the user's lock, no twin of this key or uuid is in flight */
	if (key != NULL || m.message_uuid != (Datum) 0)
		pgm_check_user(m.user_id, true);
	if (key != NULL && replay_by_key(&m, key, &out))
	{
		pgm_spi_finish();
		PG_RETURN_DATUM(pgm_ledger_result(fcinfo, m.user_id, &out));
	}

	find_session(m.user_id, m.session_id, SESSION_SHARE, &info);
	m.model_id = model_id ? model_id : info.model_id;
	if (replay_by_uuid(&m, key, &out))
	{
		pgm_spi_finish();
		PG_RETURN_DATUM(pgm_ledger_result(fcinfo, m.user_id, &out));
	}
	check_open(m.session_id, &info);

	/* the charge, as deduct_balance makes it, with the message's model */
	pgm_ledger_charge(m.user_id, m.cost, m.model_id, (int64) m.tokens, key, &out);
	if (out.replayed)
		elog(ERROR, "idempotency key \"%s\" replayed under the user's lock",
			 text_to_cstring(key));

	m.entry_id = out.entry_id;
	if (insert_message(&m) == 0)
		raise_uuid_taken(m.message_uuid,
						 "Another message took it while this completion was being recorded.");

	pgm_spi_finish();
	PG_RETURN_DATUM(pgm_ledger_result(fcinfo, m.user_id, &out));
}

/*
 * What get_chat_history reads by index, without SPI: the session row, the
 * user's balance row, then the page of messages in the primary key's order.
 * A plan costs more to start than these reads, and a page is read often.
 */
enum
{
	MC_MESSAGE_ID, MC_ROLE, MC_CONTENT, MC_TOKENS, MC_COST, MC_TOOL_CALLS,
	MC_CREATED_AT, MC_MODEL_ID, MC_MESSAGE_UUID, MC_NCOLS
};

static PgmIndexRef messages_by_session = {
	"chat_messages", "chat_messages_pkey",
	2, {BTEqualStrategyNumber, BTLessStrategyNumber},
	MC_NCOLS, {"message_id", "role", "content", "tokens", "cost",
	"tool_calls", "created_at", "model_id", "message_uuid"},
	{INT8OID, TEXTOID, TEXTOID, INT4OID, INT8OID, JSONBOID, TIMESTAMPTZOID,
	TEXTOID, UUIDOID}
};

/*
 * One message into the result, its cost from micro-credits to credits, its
 * model the session's when it has none of its own.
 */
static void
put_message(ReturnSetInfo *rsinfo, Datum *values, bool *nulls, Datum model)
{
	if (!nulls[MC_COST])
		values[MC_COST] = pgm_micro_to_numeric(DatumGetInt64(values[MC_COST]));
	if (nulls[MC_MODEL_ID])
	{
		values[MC_MODEL_ID] = model;
		nulls[MC_MODEL_ID] = false;
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* ----------------------------------------------------------------
 * get_chat_history(user_id, session_id, max_rows, before_id, oldest_first)
 *
 * A page holds the max_rows newest messages of the session (older than
 * before_id when it is given), newest first, or the same page oldest first
 * when oldest_first (for replaying a conversation to a model).  The next
 * page, going back in time, is before_id => the smallest message_id of
 * this one.
 * ----------------------------------------------------------------
 */
Datum
pgm_get_chat_history(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	Datum		session_id;
	int32		max_rows;
	bool		oldest_first;
	bool		before = !PG_ARGISNULL(3);
	Snapshot	snapshot;
	PgmIndexScan scan;
	Datum		keys[2];
	Datum		values[MC_NCOLS];
	bool		nulls[MC_NCOLS];
	int			n = 0;
	Datum		model = (Datum) 0;

	pgm_require_arg(fcinfo, 1, "session_id");
	pgm_require_arg(fcinfo, 2, "max_rows");
	pgm_require_arg(fcinfo, 4, "oldest_first");
	session_id = PG_GETARG_DATUM(1);
	max_rows = pgm_int32_arg(fcinfo, 2, "max_rows", 1, PGM_MAX_PAGE_ROWS,
							 "A page holds %d to %d messages.");
	oldest_first = PG_GETARG_BOOL(4);

	pgm_materialize(fcinfo);
	if (!chat_schema_checked)
	{
		pgm_spi_connect_pinned();
		prepare_plans();
		pgm_spi_finish();
	}

	/* the snapshot of the statement, as a read-only SPI plan would use */
	snapshot = GetActiveSnapshot();
	if (!read_session(snapshot, user_id, session_id, SESSION_READ, &model,
					  NULL))
	{
		/* raises unless the session is the user's */
		pgm_spi_connect_pinned();
		prepare_plans();
		find_session(user_id, session_id, SESSION_READ, NULL);
		pgm_spi_finish();
		return (Datum) 0;
	}

	keys[0] = session_id;
	keys[1] = before ? PG_GETARG_DATUM(3) : (Datum) 0;
	pgm_index_begin(&scan, &messages_by_session, snapshot, before ? 2 : 1,
					keys);
	if (!oldest_first)
	{
		/* newest first: the index order backwards, straight out */
		while (n < max_rows && pgm_index_next(&scan, BackwardScanDirection))
		{
			pgm_index_row(&scan, values, nulls);
			put_message(rsinfo, values, nulls, model);
			n++;
		}
	}
	else
	{
		/* the same page, oldest first */
		HeapTuple  *page = palloc(sizeof(HeapTuple) * max_rows);
		TupleDesc	desc = RelationGetDescr(scan.heap);

		while (n < max_rows && pgm_index_next(&scan, BackwardScanDirection))
			page[n++] = ExecCopySlotHeapTuple(scan.slot);
		while (n-- > 0)
		{
			int			c;

			for (c = 0; c < MC_NCOLS; c++)
				values[c] = heap_getattr(page[n], scan.attnums[c], desc,
										 &nulls[c]);
			put_message(rsinfo, values, nulls, model);
		}
	}
	pgm_index_end(&scan);
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * end_chat_session(user_id, session_id, status, reason)
 *
 * completed or failed, once: ending an ended session raises 55000.
 * ----------------------------------------------------------------
 */
Datum
pgm_end_chat_session(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	Datum		session_id;
	char	   *status;
	text	   *reason;
	SessionInfo info;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	pgm_require_arg(fcinfo, 1, "session_id");
	pgm_require_arg(fcinfo, 2, "status");
	session_id = PG_GETARG_DATUM(1);
	status = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (!is_session_status(status, true))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("status \"%s\" is not an end of a chat session", status),
				 errhint("A session ends as completed or failed.")));
	reason = pgm_optional_text(fcinfo, 3, "reason", PGM_MAX_REASON_LEN);

	pgm_spi_connect();
	prepare_plans();
	find_session(user_id, session_id, SESSION_UPDATE, &info);
	if (strcmp(info.status, "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("chat session %s is already %s",
						pgm_uuid_cstring(session_id), info.status)));

	values[0] = session_id;
	values[1] = CStringGetTextDatum(status);
	pgm_bind_ptr(values, nulls, 2, reason);
	pgm_exec(plan_end, values, nulls, false);
	pgm_spi_finish();
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * update_chat_context(user_id, session_id, context)
 * ----------------------------------------------------------------
 */
Datum
pgm_update_chat_context(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	Datum		values[2];
	bool		merge;

	pgm_require_arg(fcinfo, 1, "session_id");
	pgm_require_arg(fcinfo, 2, "context");
	if (!JB_ROOT_IS_OBJECT(PG_GETARG_JSONB_P(2)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context must be a JSON object")));
	/* the 0.5.0 function has no merge argument and replaces */
	merge = false;
	if (PG_NARGS() > 3)
	{
		pgm_require_arg(fcinfo, 3, "merge");
		merge = PG_GETARG_BOOL(3);
	}
	values[0] = PG_GETARG_DATUM(1);
	values[1] = PG_GETARG_DATUM(2);

	pgm_spi_connect();
	prepare_plans();
	/* the row lock first: a merge reads the context the last one committed */
	find_session(user_id, values[0], SESSION_UPDATE, NULL);
	pgm_exec(merge ? plan_merge_context : plan_context, values, NULL, false);
	pgm_spi_finish();
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * delete_chat_session(user_id, session_id): soft deletion.  The session and
 * its messages stay in the tables (deleted_at set); to the API it is gone.
 * ----------------------------------------------------------------
 */
Datum
pgm_delete_chat_session(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	Datum		values[1];

	pgm_require_arg(fcinfo, 1, "session_id");
	values[0] = PG_GETARG_DATUM(1);

	pgm_spi_connect();
	prepare_plans();
	find_session(user_id, values[0], SESSION_UPDATE, NULL);
	pgm_exec(plan_delete, values, NULL, false);
	pgm_spi_finish();
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * list_chat_sessions(user_id): the user's sessions that are not deleted,
 * newest first.
 * ----------------------------------------------------------------
 */
/*
 * list_chat_sessions(user_id, status, max_rows, before, before_session_id):
 * a page of the user's sessions, newest first; the next page is
 * before => the last row's created_at, before_session_id => its
 * session_id (sessions made in one transaction share created_at).
 */
Datum
pgm_list_chat_sessions(PG_FUNCTION_ARGS)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int32		max_rows;

	values[0] = pgm_user_arg(fcinfo, 0);
	if (PG_NARGS() < 4)
	{
		/* the 0.5.0 function: refused until the update (55000) */
		pgm_spi_connect();
		prepare_plans();
		elog(ERROR, "list_chat_sessions called with %d arguments", PG_NARGS());
	}
	if (!PG_ARGISNULL(1))
	{
		char	   *status = text_to_cstring(PG_GETARG_TEXT_PP(1));

		if (!is_session_status(status, false))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("status \"%s\" is not a session status",
							pgm_shown_value(status, 40)),
					 errhint("A session is active, completed or failed.")));
	}
	max_rows = pgm_int32_arg(fcinfo, 2, "max_rows", 1, PGM_MAX_PAGE_ROWS,
							 "A page holds %d to %d sessions.");
	bind_optional_arg(fcinfo, 1, values, nulls);
	values[2] = Int32GetDatum(max_rows);
	bind_optional_arg(fcinfo, 3, values, nulls);
	/* among sessions made at `before`, those after the last row's id */
	bind_optional_arg(fcinfo, 4, values, nulls);

	InitMaterializedSRF(fcinfo, 0);
	pgm_spi_connect();
	prepare_plans();
	pgm_check_user(values[0], false);
	pgm_exec(plan_sessions, values, nulls, true);
	pgm_put_rows((ReturnSetInfo *) fcinfo->resultinfo, 0);
	pgm_spi_finish();
	return (Datum) 0;
}

/*
 * chat_session_owner(session_id) RETURNS uuid: the user a session belongs
 * to, for callers that hold only its id; NULL when it is unknown or
 * deleted or its user is deactivated, and when pgmarket.actor names another
 * user (a connection acting for one user learns nothing of the others'
 * sessions).
 */
Datum
pgm_chat_session_owner(PG_FUNCTION_ARGS)
{
	Datum		values[1];
	pg_uuid_t  *owner;

	pgm_require_arg(fcinfo, 0, "session_id");
	values[0] = PG_GETARG_DATUM(0);

	pgm_spi_connect();
	prepare_plans();
	pgm_exec(plan_owner, values, NULL, true);
	owner = pgm_one_uuid(1);
	pgm_spi_finish();
	return pgm_owner_result(fcinfo, owner);
}
