/*-------------------------------------------------------------------------
 *
 * chat.c
 *	  Chat sessions and messages, completions charged with their message,
 *	  model ratings, user preferences, and the pgmarket.actor rule.
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
 * The actor rule
 * --------------
 * These functions run as the extension's owner, so row-level security does
 * not filter what they do.  Instead, when pgmarket.actor is set (not
 * empty), user_id must be that user (the canonical text of the uuid, any
 * case), else 42501: a connection acting for one user cannot reach another
 * user's rows through the API either.  pgm_check_actor() is exported for
 * the other C files.
 *
 * Behind the PL/Proxy front (proxy/), the actor of the proxy's session
 * travels with each call: the remote query wraps the first argument of the
 * API function in proxy_actor(actor, value), which sets pgmarket.actor for
 * the node's transaction (SET LOCAL; PL/Proxy runs each remote query as a
 * transaction of its own) and returns value unchanged.  An argument is
 * evaluated before the function it is passed to is called, so the API
 * function always runs under the forwarded actor.  The node takes a
 * forwarded actor only from the role named by pgmarket.proxy_role or a
 * member of it; from any other role, or with the setting empty, it is
 * refused (42501), never ignored.  An empty actor forwards nothing: the
 * call runs as the caller's own connection would, which for pgmarket_app
 * means the trusted back end.
 *
 * Concurrency rules
 * -----------------
 * A message is stored under a FOR SHARE lock of its session row, and ending,
 * deleting or changing the context of a session takes FOR UPDATE: a session
 * that was ended or deleted has no message committed after that.
 *
 * record_completion stores the assistant's message and charges its cost in
 * the same transaction: the charge goes through pgmarket.deduct_balance
 * (SPI), with the session's model_id, so the ledger entry is an ordinary
 * charge that model_usage and usage_daily count.  Both happen or neither:
 * an error in either (PM001 above all) aborts the statement.  With an
 * idempotency key, the call first locks the user as every ledger operation
 * does (pgm_check_user) and only then looks the key up in the ledger: a
 * concurrent repeat of the same key waits for the first call to commit or
 * abort, then finds its entry and the message that carries it, and replays
 * them (replayed = true) without storing a second message or charging
 * again.  The same key with another session, content, tokens or cost, or a
 * key already used by a ledger call that is not a completion, raises PM003.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(pgm_create_chat_session);
PG_FUNCTION_INFO_V1(pgm_save_chat_message);
PG_FUNCTION_INFO_V1(pgm_record_completion);
PG_FUNCTION_INFO_V1(pgm_get_chat_history);
PG_FUNCTION_INFO_V1(pgm_end_chat_session);
PG_FUNCTION_INFO_V1(pgm_update_chat_context);
PG_FUNCTION_INFO_V1(pgm_delete_chat_session);
PG_FUNCTION_INFO_V1(pgm_list_chat_sessions);
PG_FUNCTION_INFO_V1(pgm_rate_model);
PG_FUNCTION_INFO_V1(pgm_set_preference);
PG_FUNCTION_INFO_V1(pgm_get_preferences);
PG_FUNCTION_INFO_V1(pgm_current_actor);
PG_FUNCTION_INFO_V1(pgm_proxy_actor);


#define PGM_MAX_TITLE_LEN		500
#define PGM_MAX_AGENT_ID_LEN	200
#define PGM_MAX_REASON_LEN		2000
#define PGM_MAX_REVIEW_LEN		10000
#define PGM_MAX_PREF_KEY_LEN	100

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
static SPIPlanPtr plan_deduct;
static SPIPlanPtr plan_history[4];
static SPIPlanPtr plan_end;
static SPIPlanPtr plan_context;
static SPIPlanPtr plan_delete;
static SPIPlanPtr plan_sessions;
static SPIPlanPtr plan_rate;
static SPIPlanPtr plan_set_pref;
static SPIPlanPtr plan_prefs;

#define SESSION_SQL \
	"SELECT s.model_id, s.status, s.deleted_at IS NOT NULL, b.active" \
	"  FROM pgmarket.chat_sessions s" \
	"  JOIN pgmarket.balances b ON b.user_id = s.user_id" \
	" WHERE s.session_id = $1 AND s.user_id = $2"

/*
 * The ownership check rides along as a one-time filter (an uncorrelated
 * EXISTS); a page without rows then calls find_session to tell an empty
 * session from one that is not the user's.
 */
#define HISTORY_COLS \
	"SELECT message_id, role, content, tokens, cost, tool_calls, created_at" \
	"  FROM pgmarket.chat_messages WHERE session_id = $1" \
	"   AND EXISTS (SELECT 1 FROM pgmarket.chat_sessions s" \
	"                 JOIN pgmarket.balances b ON b.user_id = s.user_id" \
	"                WHERE s.session_id = $1 AND s.user_id = $4" \
	"                  AND s.deleted_at IS NULL AND b.active)"

static void
prepare_plans(void)
{
	Oid			u_u[] = {UUIDOID, UUIDOID};
	Oid			u[] = {UUIDOID};
	Oid			sess[] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID};
	Oid			msg[] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, INT4OID, INT8OID,
	JSONBOID, INT8OID};
	Oid			u_t[] = {UUIDOID, TEXTOID};
	Oid			deduct[] = {UUIDOID, NUMERICOID, TEXTOID, INT8OID, TEXTOID};
	Oid			hist[] = {UUIDOID, INT4OID, INT8OID, UUIDOID};
	Oid			end[] = {UUIDOID, TEXTOID, TEXTOID};
	Oid			ctx[] = {UUIDOID, JSONBOID};
	Oid			rate[] = {UUIDOID, TEXTOID, INT4OID, TEXTOID};
	Oid			pref[] = {UUIDOID, TEXTOID, JSONBOID};

	if (plan_prefs != NULL)
		return;

	plan_session[SESSION_READ] = pgm_prepare(SESSION_SQL, 2, u_u);
	plan_session[SESSION_SHARE] = pgm_prepare(SESSION_SQL " FOR SHARE OF s",
											  2, u_u);
	plan_session[SESSION_UPDATE] = pgm_prepare(SESSION_SQL " FOR UPDATE OF s",
											   2, u_u);

	plan_new_session = pgm_prepare(
		"INSERT INTO pgmarket.chat_sessions (session_id, user_id, model_id,"
		"       title, agent_id)"
		" VALUES ($1, $2, $3, $4, $5)", 5, sess);

	plan_insert_message = pgm_prepare(
		"INSERT INTO pgmarket.chat_messages (session_id, user_id, role,"
		"       content, tokens, cost, tool_calls, entry_id)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
		" RETURNING message_id", 8, msg);

	/* the entry of an idempotency key, and the message that carries it */
	plan_find_completion = pgm_prepare(
		"SELECT l.entry_id, l.kind, l.amount, l.available,"
		"       m.session_id, m.content, m.tokens, m.cost"
		"  FROM pgmarket.ledger l"
		"  LEFT JOIN pgmarket.chat_messages m"
		"    ON m.user_id = l.user_id AND m.entry_id = l.entry_id"
		" WHERE l.user_id = $1 AND l.idempotency_key = $2", 2, u_t);

	plan_deduct = pgm_prepare(
		"SELECT entry_id, available_balance, replayed"
		"  FROM pgmarket.deduct_balance($1, $2, $3, $4, $5)", 5, deduct);

	/*
	 * History pages: newest first, optionally before a message id; oldest
	 * first is the same page in the other order.
	 */
	plan_history[0] = pgm_prepare(
		HISTORY_COLS " ORDER BY message_id DESC LIMIT $2", 4, hist);
	plan_history[1] = pgm_prepare(
		HISTORY_COLS " AND message_id < $3 ORDER BY message_id DESC LIMIT $2",
		4, hist);
	plan_history[2] = pgm_prepare(
		"SELECT * FROM (" HISTORY_COLS " ORDER BY message_id DESC LIMIT $2) p"
		" ORDER BY message_id", 4, hist);
	plan_history[3] = pgm_prepare(
		"SELECT * FROM (" HISTORY_COLS " AND message_id < $3"
		" ORDER BY message_id DESC LIMIT $2) p ORDER BY message_id", 4, hist);

	plan_end = pgm_prepare(
		"UPDATE pgmarket.chat_sessions"
		"   SET status = $2, end_reason = $3, ended_at = now(),"
		"       updated_at = now()"
		" WHERE session_id = $1", 3, end);

	plan_context = pgm_prepare(
		"UPDATE pgmarket.chat_sessions SET context = $2, updated_at = now()"
		" WHERE session_id = $1", 2, ctx);

	plan_delete = pgm_prepare(
		"UPDATE pgmarket.chat_sessions"
		"   SET deleted_at = now(), updated_at = now()"
		" WHERE session_id = $1", 1, u);

	plan_sessions = pgm_prepare(
		"SELECT session_id, model_id, title, agent_id, status, end_reason,"
		"       context, created_at, updated_at, ended_at"
		"  FROM pgmarket.chat_sessions"
		" WHERE user_id = $1 AND deleted_at IS NULL"
		" ORDER BY created_at DESC, session_id", 1, u);

	plan_rate = pgm_prepare(
		"INSERT INTO pgmarket.ratings (user_id, model_id, stars, review)"
		" VALUES ($1, $2, $3, $4)"
		" ON CONFLICT (user_id, model_id) DO UPDATE"
		"   SET stars = excluded.stars, review = excluded.review,"
		"       updated_at = now()", 4, rate);

	plan_set_pref = pgm_prepare(
		"INSERT INTO pgmarket.preferences (user_id, key, value)"
		" VALUES ($1, $2, $3)"
		" ON CONFLICT (user_id, key) DO UPDATE"
		"   SET value = excluded.value, updated_at = now()"
		" WHERE preferences.value IS DISTINCT FROM excluded.value", 3, pref);

	plan_prefs = pgm_prepare(
		"SELECT key, value, updated_at FROM pgmarket.preferences"
		" WHERE user_id = $1 ORDER BY key", 1, u);
}

/* ----------------------------------------------------------------
 * Helpers
 * ----------------------------------------------------------------
 */

static char *
uuid_cstring(Datum id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, id));
}

/*
 * Parse pgmarket.actor: false when it is not the text of a uuid (8-4-4-4-12
 * hexadecimal digits, any case).  Checked before uuid_in, which would
 * raise an error, and accepts other spellings besides.
 */
static bool
parse_actor(const char *s, pg_uuid_t *out)
{
	int			i;

	if (strlen(s) != 36)
		return false;
	for (i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	memcpy(out, DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(s))),
		   sizeof(pg_uuid_t));
	return true;
}

/*
 * The actor rule: when pgmarket.actor is set, user_id must be the actor's.
 * Raises 42501 naming both, and nothing else of the user.
 */
/* May this transaction act for user?  pgm_check_actor without the error. */
bool
pgm_actor_allows(const pg_uuid_t *user)
{
	pg_uuid_t	actor;

	if (pgm_actor == NULL || pgm_actor[0] == '\0')
		return true;
	return parse_actor(pgm_actor, &actor) &&
		memcmp(actor.data, user->data, UUID_LEN) == 0;
}

void
pgm_check_actor(Datum user_id)
{
	if (pgm_actor_allows(DatumGetUUIDP(user_id)))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("pgmarket.actor \"%s\" may not act for user %s",
					pgm_actor, uuid_cstring(user_id)),
			 errdetail("A transaction that acts for a user touches only that user's rows.")));
}

/* current_actor(): the actor's uuid, or NULL (unset, empty, not a uuid). */
Datum
pgm_current_actor(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *actor;

	if (pgm_actor == NULL || pgm_actor[0] == '\0')
		PG_RETURN_NULL();
	actor = palloc(sizeof(pg_uuid_t));
	if (!parse_actor(pgm_actor, actor))
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(actor);
}

/*
 * May the current role forward an actor to this node?  Only the role that
 * pgmarket.proxy_role names, or a role that is a member of it (a superuser
 * is a member of every role); with the setting empty, no role.  Raises 42501
 * naming the role and the actor otherwise.
 */
static void
check_forwarding_role(const char *actor)
{
	Oid			caller = GetUserId();
	Oid			proxy;

	if (pgm_proxy_role == NULL || pgm_proxy_role[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not forward pgmarket.actor \"%s\"",
						GetUserNameFromId(caller, false), actor),
				 errdetail("pgmarket.proxy_role is not set, so this node takes a forwarded actor from no role.")));

	proxy = get_role_oid(pgm_proxy_role, true);
	if (!OidIsValid(proxy) || !is_member_of_role(caller, proxy))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not forward pgmarket.actor \"%s\"",
						GetUserNameFromId(caller, false), actor),
				 errdetail("This node takes a forwarded actor only from role \"%s\" (pgmarket.proxy_role) and its members.",
						   pgm_proxy_role)));
}

/*
 * proxy_actor(actor text, value anyelement) RETURNS anyelement: the node's
 * side of the actor that the PL/Proxy front forwards (see "The actor rule"
 * above).  A non-empty actor is checked against pgmarket.proxy_role and set
 * as pgmarket.actor for the rest of the transaction; NULL or empty sets
 * nothing.  Returns value as it came, NULL included, so that it can wrap an
 * argument of the call it must precede.
 *
 * Not SECURITY DEFINER and without a SET clause: the role checked is the
 * caller's, and a SET clause would undo the setting when this returns.
 */
Datum
pgm_proxy_actor(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
	{
		char	   *actor = text_to_cstring(PG_GETARG_TEXT_PP(0));

		if (actor[0] != '\0')
		{
			check_forwarding_role(actor);
			(void) set_config_option("pgmarket.actor", actor,
									 PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_LOCAL, true, 0, false);
		}
	}
	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(PG_GETARG_DATUM(1));
}

static void
raise_session_not_found(Datum session_id, Datum user_id, bool deleted)
{
	ereport(ERROR,
			(errcode(ERRCODE_PGM_UNKNOWN_ACCOUNT),
			 errmsg("chat session %s not found for user %s",
					uuid_cstring(session_id), uuid_cstring(user_id)),
			 deleted ? errdetail("The session was deleted.") : 0));
}

/*
 * Find a session of a user (SPI connected), with the lock asked for.  Raises
 * PM002 for an unknown or deactivated user, and for a session that does not
 * exist, is another user's or was deleted.  info may be NULL.
 */
static void
find_session(Datum user_id, Datum session_id, SessionLock lock,
			 SessionInfo *info)
{
	Datum		values[2] = {session_id, user_id};
	bool		isnull;

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

/* An ended session takes no new messages. */
static void
check_open(Datum session_id, const SessionInfo *info)
{
	if (strcmp(info->status, "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("chat session %s is %s", uuid_cstring(session_id),
						info->status),
				 errdetail("An ended session takes no new messages.")));
}

/* A required text argument, checked like the other short texts. */
static text *
required_text(FunctionCallInfo fcinfo, int argno, const char *argname,
			  int maxlen)
{
	pgm_require_arg(fcinfo, argno, argname);
	return pgm_optional_text(fcinfo, argno, argname, maxlen);
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

/* Insert a message into a locked, open session; returns its id. */
static int64
insert_message(Datum session_id, Datum user_id, const char *role,
			   text *content, int32 tokens, int64 cost, Datum tool_calls,
			   bool has_tool_calls, int64 entry_id, bool has_entry)
{
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	values[0] = session_id;
	values[1] = user_id;
	values[2] = CStringGetTextDatum(role);
	values[3] = PointerGetDatum(content);
	values[4] = Int32GetDatum(tokens);
	values[5] = Int64GetDatum(cost);
	values[6] = tool_calls;
	values[7] = Int64GetDatum(entry_id);
	if (!has_tool_calls)
		nulls[6] = 'n';
	if (!has_entry)
		nulls[7] = 'n';
	pgm_exec(plan_insert_message, values, nulls, false);
	return DatumGetInt64(pgm_col(0, 1, &isnull));
}

/* Build a ledger_result in the caller's context (after SPI_finish). */
static Datum
ledger_result_datum(FunctionCallInfo fcinfo, int64 entry_id, Datum user_id,
					int64 amount, Datum available, bool replayed)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = Int64GetDatum(entry_id);
	values[1] = user_id;
	values[2] = CStringGetTextDatum("charge");
	values[3] = pgm_micro_to_numeric(amount);
	values[4] = available;
	values[5] = BoolGetDatum(replayed);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/* ----------------------------------------------------------------
 * create_chat_session(user_id, model_id, title, agent_id) RETURNS uuid
 * ----------------------------------------------------------------
 */
Datum
pgm_create_chat_session(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	text	   *model_id;
	text	   *title;
	text	   *agent_id;
	pg_uuid_t  *session_id = palloc(sizeof(pg_uuid_t));
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	model_id = required_text(fcinfo, 1, "model_id", PGM_MAX_MODEL_ID_LEN);
	title = pgm_optional_text(fcinfo, 2, "title", PGM_MAX_TITLE_LEN);
	agent_id = pgm_optional_text(fcinfo, 3, "agent_id", PGM_MAX_AGENT_ID_LEN);
	pgm_random_uuid(session_id);

	pgm_spi_connect();
	prepare_plans();
	pgm_check_user(user_id, false);

	values[0] = UUIDPGetDatum(session_id);
	values[1] = user_id;
	values[2] = PointerGetDatum(model_id);
	values[3] = PointerGetDatum(title);
	values[4] = PointerGetDatum(agent_id);
	if (title == NULL)
		nulls[3] = 'n';
	if (agent_id == NULL)
		nulls[4] = 'n';
	pgm_exec(plan_new_session, values, nulls, false);

	SPI_finish();
	PG_RETURN_UUID_P(session_id);
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
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	Datum		session_id;
	char	   *role;
	text	   *content;
	int32		tokens;
	int64		cost;
	SessionInfo info;
	int64		message_id;

	pgm_require_arg(fcinfo, 1, "session_id");
	pgm_require_arg(fcinfo, 2, "role");
	pgm_require_arg(fcinfo, 3, "content");
	session_id = PG_GETARG_DATUM(1);
	role = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 &&
		strcmp(role, "assistant") != 0 && strcmp(role, "tool") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("role \"%s\" is not a chat role", role),
				 errhint("A message's role is system, user, assistant or tool.")));
	content = content_arg(fcinfo, 3);
	tokens = tokens_arg(fcinfo, 4);
	pgm_require_arg(fcinfo, 5, "cost");
	cost = recorded_cost(PG_GETARG_DATUM(5));

	pgm_spi_connect();
	prepare_plans();
	find_session(user_id, session_id, SESSION_SHARE, &info);
	check_open(session_id, &info);
	message_id = insert_message(session_id, user_id, role, content, tokens,
								cost, PG_ARGISNULL(6) ? (Datum) 0 : PG_GETARG_DATUM(6),
								!PG_ARGISNULL(6), 0, false);
	SPI_finish();
	PG_RETURN_INT64(message_id);
}

/* ----------------------------------------------------------------
 * record_completion(user_id, session_id, content, tokens, cost,
 *					 idempotency_key) RETURNS ledger_result
 * ----------------------------------------------------------------
 */
Datum
pgm_record_completion(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	Datum		session_id;
	text	   *content;
	int32		tokens;
	int64		cost;
	text	   *key;
	SessionInfo info;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int64		entry_id;
	Datum		available;

	pgm_require_arg(fcinfo, 1, "session_id");
	pgm_require_arg(fcinfo, 2, "content");
	session_id = PG_GETARG_DATUM(1);
	content = content_arg(fcinfo, 2);
	tokens = tokens_arg(fcinfo, 3);
	pgm_require_arg(fcinfo, 4, "cost");
	cost = pgm_numeric_to_micro(PG_GETARG_DATUM(4), "cost");
	key = pgm_optional_text(fcinfo, 5, "idempotency_key", PGM_MAX_IDEM_KEY_LEN);

	pgm_spi_connect();
	prepare_plans();

	if (key != NULL)
	{
		Datum		kv[2] = {user_id, PointerGetDatum(key)};

		/* under the user's lock, no twin of this key is in flight */
		pgm_check_user(user_id, true);
		pgm_exec(plan_find_completion, kv, NULL, false);
		if (SPI_processed == 1)
		{
			bool		msg_null;
			bool		same;
			int64		prior_entry = DatumGetInt64(pgm_col(0, 1, &isnull));
			int64		prior_amount = DatumGetInt64(pgm_col(0, 3, &isnull));
			int64		prior_available = DatumGetInt64(pgm_col(0, 4, &isnull));
			Datum		prior_session = pgm_col(0, 5, &msg_null);

			same = !msg_null &&
				memcmp(DatumGetUUIDP(prior_session)->data,
					   DatumGetUUIDP(session_id)->data, UUID_LEN) == 0 &&
				DatumGetInt32(pgm_col(0, 7, &isnull)) == tokens &&
				DatumGetInt64(pgm_col(0, 8, &isnull)) == cost &&
				prior_amount == cost &&
				DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID,
													 pgm_col(0, 6, &isnull),
													 PointerGetDatum(content)));
			if (!same)
				ereport(ERROR,
						(errcode(ERRCODE_PGM_IDEMPOTENCY_CONFLICT),
						 errmsg("idempotency key \"%s\" was already used with other arguments",
								text_to_cstring(key)),
						 msg_null
						 ? errdetail("It was used by a ledger entry %lld of user %s that is not a completion.",
									 (long long) prior_entry, uuid_cstring(user_id))
						 : errdetail("It was used by the completion recorded as entry %lld for user %s.",
									 (long long) prior_entry, uuid_cstring(user_id))));
			SPI_finish();
			PG_RETURN_DATUM(ledger_result_datum(fcinfo, prior_entry, user_id,
												prior_amount,
												pgm_micro_to_numeric(prior_available),
												true));
		}
	}

	find_session(user_id, session_id, SESSION_SHARE, &info);
	check_open(session_id, &info);

	/* the charge, as deduct_balance makes it, with the session's model */
	values[0] = user_id;
	values[1] = PG_GETARG_DATUM(4);
	values[2] = PointerGetDatum(info.model_id);
	values[3] = Int64GetDatum((int64) tokens);
	values[4] = PointerGetDatum(key);
	if (key == NULL)
		nulls[4] = 'n';
	pgm_exec(plan_deduct, values, nulls, false);
	if (SPI_processed != 1)
		elog(ERROR, "deduct_balance returned no row");
	if (DatumGetBool(pgm_col(0, 3, &isnull)))
		elog(ERROR, "idempotency key \"%s\" replayed under the user's lock",
			 text_to_cstring(key));
	entry_id = DatumGetInt64(pgm_col(0, 1, &isnull));
	available = SPI_datumTransfer(pgm_col(0, 2, &isnull), false, -1);

	insert_message(session_id, user_id, "assistant", content, tokens, cost,
				   (Datum) 0, false, entry_id, true);

	SPI_finish();
	PG_RETURN_DATUM(ledger_result_datum(fcinfo, entry_id, user_id, cost,
										available, false));
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
	Datum		args[4];

	pgm_require_arg(fcinfo, 1, "session_id");
	pgm_require_arg(fcinfo, 2, "max_rows");
	pgm_require_arg(fcinfo, 4, "oldest_first");
	session_id = PG_GETARG_DATUM(1);
	max_rows = PG_GETARG_INT32(2);
	oldest_first = PG_GETARG_BOOL(4);
	if (max_rows < 1 || max_rows > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows %d is out of range", max_rows),
				 errdetail("A page holds 1 to 1000 messages.")));

	InitMaterializedSRF(fcinfo, 0);

	pgm_spi_connect();
	prepare_plans();

	args[0] = session_id;
	args[1] = Int32GetDatum(max_rows);
	args[2] = before ? PG_GETARG_DATUM(3) : Int64GetDatum(0);
	args[3] = user_id;
	pgm_exec(plan_history[(oldest_first ? 2 : 0) + (before ? 1 : 0)], args,
			 NULL, true);
	if (SPI_processed == 0)
	{
		/* an empty page: raises unless the session is the user's */
		find_session(user_id, session_id, SESSION_READ, NULL);
		SPI_finish();
		return (Datum) 0;
	}

	pgm_put_rows(rsinfo, 1U << 4);	/* cost */

	SPI_finish();
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
	if (strcmp(status, "completed") != 0 && strcmp(status, "failed") != 0)
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
						uuid_cstring(session_id), info.status)));

	values[0] = session_id;
	values[1] = CStringGetTextDatum(status);
	values[2] = PointerGetDatum(reason);
	if (reason == NULL)
		nulls[2] = 'n';
	pgm_exec(plan_end, values, nulls, false);
	SPI_finish();
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

	pgm_require_arg(fcinfo, 1, "session_id");
	pgm_require_arg(fcinfo, 2, "context");
	if (!JB_ROOT_IS_OBJECT(PG_GETARG_JSONB_P(2)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context must be a JSON object")));
	values[0] = PG_GETARG_DATUM(1);
	values[1] = PG_GETARG_DATUM(2);

	pgm_spi_connect();
	prepare_plans();
	find_session(user_id, values[0], SESSION_UPDATE, NULL);
	pgm_exec(plan_context, values, NULL, false);
	SPI_finish();
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
	SPI_finish();
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * list_chat_sessions(user_id): the user's sessions that are not deleted,
 * newest first.
 * ----------------------------------------------------------------
 */
Datum
pgm_list_chat_sessions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	uint64		i;

	InitMaterializedSRF(fcinfo, 0);
	pgm_spi_connect();
	prepare_plans();
	pgm_check_user(user_id, false);
	pgm_exec(plan_sessions, &user_id, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		Datum		values[10];
		bool		nulls[10];
		int			c;

		for (c = 0; c < 10; c++)
			values[c] = pgm_col(i, c + 1, &nulls[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * rate_model(user_id, model_id, stars, review): one rating per user and
 * model; a second call replaces the first.
 * ----------------------------------------------------------------
 */
Datum
pgm_rate_model(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	text	   *model_id;
	int32		stars;
	text	   *review = NULL;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	model_id = required_text(fcinfo, 1, "model_id", PGM_MAX_MODEL_ID_LEN);
	pgm_require_arg(fcinfo, 2, "stars");
	stars = PG_GETARG_INT32(2);
	if (stars < 1 || stars > 5)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stars %d is out of range", stars),
				 errdetail("A rating is 1 to 5 stars.")));
	if (!PG_ARGISNULL(3))
	{
		review = PG_GETARG_TEXT_PP(3);
		if (pg_mbstrlen_with_len(VARDATA_ANY(review),
								 VARSIZE_ANY_EXHDR(review)) > PGM_MAX_REVIEW_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("review is longer than %d characters",
							PGM_MAX_REVIEW_LEN)));
	}

	pgm_spi_connect();
	prepare_plans();
	pgm_check_user(user_id, false);
	values[0] = user_id;
	values[1] = PointerGetDatum(model_id);
	values[2] = Int32GetDatum(stars);
	values[3] = PointerGetDatum(review);
	if (review == NULL)
		nulls[3] = 'n';
	pgm_exec(plan_rate, values, nulls, false);
	SPI_finish();
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * set_preference(user_id, key, value): insert or replace; JSON null is a
 * value like any other.  get_preferences(user_id): all of them, by key.
 * ----------------------------------------------------------------
 */
Datum
pgm_set_preference(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	text	   *key;
	Datum		values[3];

	key = required_text(fcinfo, 1, "key", PGM_MAX_PREF_KEY_LEN);
	pgm_require_arg(fcinfo, 2, "value");

	pgm_spi_connect();
	prepare_plans();
	pgm_check_user(user_id, false);
	values[0] = user_id;
	values[1] = PointerGetDatum(key);
	values[2] = PG_GETARG_DATUM(2);
	pgm_exec(plan_set_pref, values, NULL, false);
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
pgm_get_preferences(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	uint64		i;

	InitMaterializedSRF(fcinfo, 0);
	pgm_spi_connect();
	prepare_plans();
	pgm_check_user(user_id, false);
	pgm_exec(plan_prefs, &user_id, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		Datum		values[3];
		bool		nulls[3];
		int			c;

		for (c = 0; c < 3; c++)
			values[c] = pgm_col(i, c + 1, &nulls[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
