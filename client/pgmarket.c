/*
 * pgmarket.c: libpgmarket, the C client of the pgmarket extension.
 *
 * Every call is one statement of a fixed table (queries[] below), sent with
 * text parameters through PQexecParams (unnamed statement) or, after
 * pgm_set_prepared(conn, 1), through a named statement prepared once per
 * connection.  With an actor set, the statement is sent in pipeline mode
 * behind SELECT set_config('pgmarket.actor', $1, true), both before one
 * Sync: the extended protocol runs everything before a Sync in one implicit
 * transaction, so the actor is in force for the call and gone at its
 * commit, and a pooler in transaction mode keeps the two on one server
 * connection.  The outcome of the last call (status, SQLSTATE, message,
 * detail, hint) is kept on the connection.
 */
#include "pgmarket.h"
#include "pgm_private.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

struct pgm_batch_error;

struct pgm_conn
{
	PGconn	   *pg;
	int			owned;			/* pgm_finish closes pg */
	char	   *actor;
	int			prepared;		/* use named statements */
	int			plain_secrets;	/* passwords and platform keys as text */
	uint64_t	prepared_mask[4];	/* which of queries[] are prepared, a bit each */
	int			have_pk;
	unsigned char pk[PGM_PUBLICKEY_BYTES];
	/* the last call's outcome */
	pgm_status	status;
	char		sqlstate[PGM_SQLSTATE_LEN];
	char	   *msg;
	char	   *detail;
	char	   *hint;
	int64_t		retry_after_ms; /* the wait a PM005 named */
	/* the last pgm_deduct_batch's words, a charge each (NULL: none) */
	struct pgm_batch_error *batch_errors;
	size_t		batch_n;
	/* deduct_balance's language, looked up once: 1 C, -1 another, 0 not yet */
	int			batch_local;
};

struct pgm_result
{
	PGresult   *res;
};

/*
 * Every statement of the library: Q(NAME, SQL) gives query_id Q_NAME and
 * its text queries[Q_NAME].  Every name schema-qualified; casts give the
 * parameters their types.
 */
#define QUERIES(Q) \
	Q(CREATE_USER, "SELECT pgmarket.create_user($1, $2, $3, " \
	  "COALESCE($4::text[], '{user}'::text[]), " \
	  "COALESCE($5::uuid, pg_catalog.gen_random_uuid()))") \
	Q(CREATE_USER_SEALED, "SELECT pgmarket.create_user_sealed($1, $2, $3::bytea, " \
	  "COALESCE($4::text[], '{user}'::text[]), " \
	  "COALESCE($5::uuid, pg_catalog.gen_random_uuid()))") \
	Q(CREATE_USER_HASHED, "SELECT pgmarket.create_user_hashed($1, $2, $3, " \
	  "COALESCE($4::text[], '{user}'::text[]), " \
	  "COALESCE($5::uuid, pg_catalog.gen_random_uuid()))") \
	Q(ERASE_USER, "SELECT pgmarket.erase_user($1::uuid)") \
	Q(AUTHENTICATE, "SELECT pgmarket.authenticate($1, $2)") \
	Q(AUTHENTICATE_SEALED, "SELECT pgmarket.authenticate_sealed($1, $2::bytea)") \
	Q(DEACTIVATE_USER, "SELECT pgmarket.deactivate_user($1::uuid)") \
	Q(HASH_PASSWORD, "SELECT pgmarket.hash_password($1)") \
	Q(HASH_PASSWORD_SEALED, "SELECT pgmarket.hash_password_sealed($1::bytea)") \
	Q(VERIFY_PASSWORD, "SELECT pgmarket.verify_password($1, $2)") \
	Q(VERIFY_PASSWORD_SEALED, "SELECT pgmarket.verify_password_sealed($1::bytea, $2)") \
	Q(HEALTH, "SELECT pgmarket.health()") \
	Q(ADD_FUNDS, "SELECT * FROM pgmarket.add_funds($1::uuid, $2::numeric, $3, $4)") \
	Q(DEDUCT_BALANCE, "SELECT * FROM pgmarket.deduct_balance($1::uuid, " \
	  "$2::numeric, $3, $4::bigint, $5)") \
	Q(DEDUCT_RECORD, "SELECT pgmarket.deduct_balance($1::uuid, $2::numeric, $3, " \
	  "$4::bigint, $5)") \
	Q(REFUND, "SELECT * FROM pgmarket.refund($1::uuid, $2::bigint, $3::numeric, $4)") \
	Q(GET_BALANCE, "SELECT * FROM pgmarket.get_balance($1::uuid)") \
	Q(LEDGER_ENTRIES, "SELECT * FROM pgmarket.ledger_entries($1::uuid, $2::int, $3::bigint)") \
	Q(RESERVE, "SELECT pgmarket.reserve($1::uuid, $2::numeric, " \
	  "COALESCE($3::interval, '15 minutes'::interval), $4)") \
	Q(SETTLE, "SELECT * FROM pgmarket.settle($1::uuid, $2::bigint, " \
	  "$3::numeric, $4, $5::bigint)") \
	Q(RELEASE, "SELECT * FROM pgmarket.release($1::uuid, $2::bigint)") \
	Q(EXPIRE, "SELECT pgmarket.expire_reservations()") \
	Q(VERIFY_LEDGER, "SELECT * FROM pgmarket.verify_ledger()") \
	Q(DEDUCT_LANGUAGE, "SELECT l.lanname FROM pg_catalog.pg_proc p " \
	  "JOIN pg_catalog.pg_language l ON l.oid = p.prolang WHERE p.oid = " \
	  "'pgmarket.deduct_balance(uuid,numeric,text,bigint,text)'::pg_catalog.regprocedure") \
	Q(DEDUCT_BATCH, "SELECT * FROM pgmarket.deduct_batch(ARRAY(" \
	  "SELECT ROW(u, a, m, t, k)::pgmarket.charge " \
	  "FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), " \
	  "pg_catalog.unnest($2::numeric[]), pg_catalog.unnest($3::text[]), " \
	  "pg_catalog.unnest($4::bigint[]), pg_catalog.unnest($5::text[])) " \
	  "WITH ORDINALITY AS x(u, a, m, t, k, o) ORDER BY o))") \
	Q(PUBLIC_KEY, "SELECT pgmarket.vault_public_key()") \
	Q(PUT_SEALED, "SELECT pgmarket.put_provider_key_sealed($1::uuid, $2, $3::bytea, $4)") \
	Q(GET_PROVIDER_KEY, "SELECT pgmarket.get_provider_key($1::uuid, $2)") \
	Q(LIST_PROVIDER_KEYS, "SELECT * FROM pgmarket.list_provider_keys($1::uuid)") \
	Q(REVOKE_PROVIDER_KEY, "SELECT pgmarket.revoke_provider_key($1::uuid, $2::uuid)") \
	Q(ROTATE, "SELECT pgmarket.rotate_master_key(COALESCE($1::int, 1000))") \
	Q(CREATE_API_KEY, "SELECT * FROM pgmarket.create_api_key($1::uuid, $2, " \
	  "COALESCE($3::text[], '{read,write}'::text[]), COALESCE($4, 'free'), " \
	  "$5::timestamptz, COALESCE($6, 'live'), $7::numeric, $8)") \
	Q(VERIFY_API_KEY, "SELECT * FROM pgmarket.verify_api_key($1)") \
	Q(VERIFY_API_KEY_SEALED, "SELECT * FROM pgmarket.verify_api_key_sealed($1, $2::bytea)") \
	Q(CHARGE_API_KEY, "SELECT * FROM pgmarket.charge_api_key($1, $2::numeric, " \
	  "$3, $4::bigint, $5)") \
	Q(CHARGE_API_KEY_SEALED, "SELECT * FROM pgmarket.charge_api_key_sealed($1, " \
	  "$2::bytea, $3::numeric, $4, $5::bigint, $6)") \
	Q(RESERVE_API_KEY, "SELECT pgmarket.reserve_api_key($1, $2::numeric, " \
	  "COALESCE($3::interval, '15 minutes'::interval), $4)") \
	Q(RESERVE_API_KEY_SEALED, "SELECT pgmarket.reserve_api_key_sealed($1, " \
	  "$2::bytea, $3::numeric, COALESCE($4::interval, '15 minutes'::interval), $5)") \
	Q(REVOKE_API_KEY, "SELECT pgmarket.revoke_api_key($1::uuid, $2::uuid)") \
	Q(LIST_API_KEYS, "SELECT * FROM pgmarket.list_api_keys($1::uuid)") \
	Q(CHECK_RATE_LIMIT, "SELECT * FROM pgmarket.check_rate_limit($1)") \
	Q(CHECK_RATE_LIMIT_SEALED, "SELECT * FROM pgmarket.check_rate_limit_sealed($1, $2::bytea)") \
	Q(SET_TIER, "SELECT pgmarket.set_tier($1, $2::int, $3::bigint, $4::int)") \
	Q(LIST_TIERS, "SELECT name, requests_per_minute, tokens_per_minute, burst" \
	  " FROM pgmarket.tiers ORDER BY name") \
	Q(SEAL_AUDIT, "SELECT pgmarket.seal_audit()") \
	Q(VERIFY_AUDIT, "SELECT * FROM pgmarket.verify_audit($1::boolean)") \
	Q(AUDIT_HEAD, "SELECT last_id, pg_catalog.encode(chain_hash, 'hex') AS chain_hash," \
	  " sealed_at FROM pgmarket.audit_head()") \
	Q(VERIFY_AUDIT_ANCHOR, "SELECT * FROM pgmarket.verify_audit($1::boolean," \
	  " pg_catalog.decode($2, 'hex'))") \
	Q(CREATE_CHAT_SESSION, "SELECT pgmarket.create_chat_session($1::uuid, $2, $3, $4, " \
	  "COALESCE($5::uuid, pg_catalog.gen_random_uuid()))") \
	Q(SAVE_CHAT_MESSAGE, "SELECT pgmarket.save_chat_message($1::uuid, $2::uuid, $3, $4, " \
	  "$5::int, COALESCE($6::numeric, 0::numeric), $7::jsonb, $8::uuid, $9)") \
	Q(RECORD_COMPLETION, "SELECT * FROM pgmarket.record_completion($1::uuid, $2::uuid, " \
	  "$3, $4::int, $5::numeric, $6, $7::uuid, $8)") \
	Q(GET_CHAT_HISTORY, "SELECT * FROM pgmarket.get_chat_history($1::uuid, $2::uuid, " \
	  "$3::int, $4::bigint, $5::boolean)") \
	Q(END_CHAT_SESSION, "SELECT pgmarket.end_chat_session($1::uuid, $2::uuid, $3, $4)") \
	Q(UPDATE_CHAT_CONTEXT, "SELECT pgmarket.update_chat_context($1::uuid, $2::uuid, $3::jsonb, " \
	  "$4::boolean)") \
	Q(DELETE_CHAT_SESSION, "SELECT pgmarket.delete_chat_session($1::uuid, $2::uuid)") \
	Q(LIST_CHAT_SESSIONS, "SELECT * FROM pgmarket.list_chat_sessions($1::uuid, $2, " \
	  "$3::int, $4::timestamptz, $5::uuid)") \
	Q(CHAT_SESSION_OWNER, "SELECT pgmarket.chat_session_owner($1::uuid)") \
	Q(RATE_MODEL, "SELECT pgmarket.rate_model($1::uuid, $2, $3::int, $4)") \
	Q(MODEL_RATINGS, "SELECT model_id, ratings, average_stars FROM pgmarket.model_ratings " \
	  "WHERE $1::text IS NULL OR model_id = $1::text ORDER BY model_id") \
	Q(SET_PREFERENCE, "SELECT pgmarket.set_preference($1::uuid, $2, $3::jsonb)") \
	Q(GET_PREFERENCES, "SELECT * FROM pgmarket.get_preferences($1::uuid)") \
	Q(DELETE_PREFERENCE, "SELECT pgmarket.delete_preference($1::uuid, $2)") \
	Q(SAVE_PROJECT, "SELECT pgmarket.save_project($1::uuid, $2, $3, " \
	  "COALESCE($4::jsonb, '{}'), COALESCE($5::text[], '{}'), COALESCE($6::jsonb, '{}'), " \
	  "COALESCE($7::jsonb, '{}'), $8::uuid, $9::numeric, $10::jsonb, $11::timestamptz)") \
	Q(GET_PROJECT, "SELECT * FROM pgmarket.get_project($1::uuid, $2::uuid)") \
	Q(LIST_PROJECTS, "SELECT * FROM pgmarket.list_projects($1::uuid, $2, $3::int, " \
	  "$4::timestamptz)") \
	Q(ARCHIVE_PROJECT, "SELECT pgmarket.archive_project($1::uuid, $2::uuid)") \
	Q(SAVE_TEMPLATE, "SELECT pgmarket.save_template($1, $2, $3::jsonb, $4, " \
	  "COALESCE($5::text[], '{}'), COALESCE($6::text[], '{}'), COALESCE($7::jsonb, '{}'), " \
	  "COALESCE($8::text[], '{}'), $9::int, $10)") \
	Q(GET_TEMPLATE, "SELECT * FROM pgmarket.get_template($1)") \
	Q(LIST_TEMPLATES, "SELECT * FROM pgmarket.list_templates($1)") \
	Q(REQUEST_MODIFICATION, "SELECT pgmarket.request_modification($1::uuid, $2::uuid, " \
	  "$3, COALESCE($4::jsonb, '{}'), COALESCE($5::text[], '{}'))") \
	Q(SET_MODIFICATION_STATUS, "SELECT pgmarket.set_modification_status($1::uuid, " \
	  "$2::uuid, $3, $4::jsonb)") \
	Q(LIST_MODIFICATIONS, "SELECT * FROM pgmarket.list_modifications($1::uuid, $2::uuid)") \
	Q(IMPORT_USER, "SELECT pgmarket.import_user($1::uuid, $2, $3, $4, $5::timestamptz)") \
	Q(IMPORT_BATCH, "SELECT idx, outcome, reasons FROM pgmarket.import_batch($1, $2::jsonb)" \
	  " ORDER BY idx") \
	Q(EXPORT_ACCOUNTS, "SELECT id, email, username, password_hash, pg_catalog.to_char(" \
	  "created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at" \
	  " FROM pgmarket.export_accounts()")

typedef enum
{
#define QUERY_ID(name, sql) Q_##name,
	QUERIES(QUERY_ID)
#undef QUERY_ID
	Q_COUNT
} query_id;

_Static_assert(Q_COUNT <= 64 * 4, "prepared_mask has a bit for each query");

static const char *const queries[Q_COUNT] = {
#define QUERY_SQL(name, sql) [Q_##name] = sql,
	QUERIES(QUERY_SQL)
#undef QUERY_SQL
};

static const char actor_sql[] =
	"SELECT pg_catalog.set_config('pgmarket.actor', $1, true)";

static void free_batch_errors(pgm_conn *c);

/* A parameter a callback of a common signature does not need. */
#define UNUSED __attribute__((unused))

/* ------------------------------------------------------------------------
 * Status names and the SQLSTATE map
 * ------------------------------------------------------------------------ */

/*
 * Every status, once: S(STATUS, SQLSTATE), the SQLSTATE that maps to it or
 * NULL for the statuses of the library's own (no connection, bad use) and
 * the catch-all.  pgm_status_name and the SQLSTATE map are made from it.
 */
#define STATUSES(S) \
	S(PGM_OK, NULL) \
	S(PGM_INSUFFICIENT_FUNDS, "PM001") \
	S(PGM_UNKNOWN_ACCOUNT, "PM002") \
	S(PGM_IDEMPOTENCY_CONFLICT, "PM003") \
	S(PGM_RESERVATION_STATE, "PM004") \
	S(PGM_RATE_LIMITED, "PM005") \
	S(PGM_VAULT_UNAVAILABLE, "PM010") \
	S(PGM_DECRYPTION_FAILED, "PM011") \
	S(PGM_KEY_NOT_FOUND, "PM012") \
	S(PGM_AUDIT_CHAIN_BROKEN, "PM013") \
	S(PGM_INVALID_API_KEY, "28000") \
	S(PGM_NULL_VALUE, "22004") \
	S(PGM_INVALID_PARAMETER, "22023") \
	S(PGM_OUT_OF_RANGE, "22003") \
	S(PGM_DUPLICATE, "23505") \
	S(PGM_PERMISSION_DENIED, "42501") \
	S(PGM_APPEND_ONLY, "55000") \
	S(PGM_CONNECTION_ERROR, NULL) \
	S(PGM_SERVER_ERROR, NULL) \
	S(PGM_CLIENT_ERROR, NULL) \
	S(PGM_OUTCOME_UNKNOWN, NULL)

#define STATUS_STATE(status, sqlstate) [status] = sqlstate,
static const char *const status_sqlstate[] = {STATUSES(STATUS_STATE)};
#undef STATUS_STATE

const char *
pgm_status_name(pgm_status status)
{
	switch (status)
	{
#define STATUS_NAME(st, sqlstate) case st: return #st;
			STATUSES(STATUS_NAME)
#undef STATUS_NAME
	}
	return "PGM_UNKNOWN_STATUS";
}

pgm_status
pgm_status_from_sqlstate(const char *sqlstate)
{
	size_t		i;

	if (sqlstate == NULL || strcmp(sqlstate, "00000") == 0)
		return PGM_OK;
	for (i = 0; i < sizeof(status_sqlstate) / sizeof(status_sqlstate[0]); i++)
		if (status_sqlstate[i] && strcmp(sqlstate, status_sqlstate[i]) == 0)
			return (pgm_status) i;
	if (strncmp(sqlstate, "08", 2) == 0)
		return PGM_CONNECTION_ERROR;
	return PGM_SERVER_ERROR;
}

/* ------------------------------------------------------------------------
 * The last call's outcome
 * ------------------------------------------------------------------------ */

static void
clear_error(pgm_conn *c)
{
	free(c->msg);
	free(c->detail);
	free(c->hint);
	c->msg = c->detail = c->hint = NULL;
	c->sqlstate[0] = '\0';
	c->status = PGM_OK;
	c->retry_after_ms = 0;
}

static char *
dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* A message of the library's own; returns status. */
static pgm_status
set_error(pgm_conn *c, pgm_status status, const char *fmt,...)
{
	char		buf[512];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	clear_error(c);
	c->status = status;
	c->msg = strdup(buf);
	return status;
}

/*
 * The wait a PM005 message names ("... retry after N ms"); 1000 when it
 * names none (a server that words it otherwise), never 0.
 */
static int64_t
retry_after(const char *msg)
{
	const char *p = msg ? strstr(msg, "retry after ") : NULL;
	long long	ms;

	if (p && sscanf(p + strlen("retry after "), "%lld ms", &ms) == 1 && ms > 0)
		return (int64_t) ms;
	return 1000;
}

/* The error of a failed PGresult (or of the connection when res is NULL). */
static pgm_status
set_result_error(pgm_conn *c, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	size_t		len;
	char	   *p;

	clear_error(c);
	if (state != NULL)
	{
		snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", state);
		c->status = pgm_status_from_sqlstate(state);
		c->msg = dup_or_null(msg);
		c->detail = dup_or_null(PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
		c->hint = dup_or_null(PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
		if (c->status == PGM_RATE_LIMITED)
			c->retry_after_ms = retry_after(c->msg);
		return c->status;
	}
	/* no SQLSTATE: libpq's own error, usually the connection */
	c->status = (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK)
		? PGM_CONNECTION_ERROR : PGM_SERVER_ERROR;
	if (res && PQresultStatus(res) == PGRES_FATAL_ERROR && PQresultErrorMessage(res)[0])
		c->msg = strdup(PQresultErrorMessage(res));
	else if (c->pg)
		c->msg = strdup(PQerrorMessage(c->pg));
	else
		c->msg = strdup("no connection");
	/* libpq's messages end in a newline */
	if (c->msg && (len = strlen(c->msg)) > 0)
		for (p = c->msg + len - 1; p >= c->msg && (*p == '\n' || *p == ' '); p--)
			*p = '\0';
	return c->status;
}

pgm_status
pgm_last_status(const pgm_conn *c)
{
	return c ? c->status : PGM_CLIENT_ERROR;
}

const char *
pgm_errmsg(const pgm_conn *c)
{
	return c && c->msg ? c->msg : "";
}

const char *
pgm_errdetail(const pgm_conn *c)
{
	return c && c->detail ? c->detail : "";
}

const char *
pgm_errhint(const pgm_conn *c)
{
	return c && c->hint ? c->hint : "";
}

const char *
pgm_sqlstate(const pgm_conn *c)
{
	return c ? c->sqlstate : "";
}

int64_t
pgm_retry_after_ms(const pgm_conn *c)
{
	return c && c->status == PGM_RATE_LIMITED ? c->retry_after_ms : 0;
}

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------ */

static pgm_conn *
new_conn(PGconn *pg, int owned)
{
	pgm_conn   *c;

	if (sodium_init() < 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->pg = pg;
	c->owned = owned;
	return c;
}

/* The library's side of a connection that libpq has opened (or not). */
static pgm_conn *
connected(PGconn *pg)
{
	pgm_conn   *c;

	if (pg == NULL)
		return NULL;
	c = new_conn(pg, 1);
	if (c == NULL)
	{
		PQfinish(pg);
		return NULL;
	}
	if (PQstatus(pg) != CONNECTION_OK)
		set_result_error(c, NULL);
	return c;
}

pgm_conn *
pgm_connect(const char *conninfo)
{
	return connected(PQconnectdb(conninfo ? conninfo : ""));
}

pgm_conn *
pgm_connect_params(const char *const *keywords, const char *const *values)
{
	return connected(PQconnectdbParams(keywords, values, 1));
}

pgm_conn *
pgm_wrap(PGconn *pgconn)
{
	pgm_conn   *c;

	if (pgconn == NULL)
		return NULL;
	c = new_conn(pgconn, 0);
	if (c && PQstatus(pgconn) != CONNECTION_OK)
		set_result_error(c, NULL);
	return c;
}

void
pgm_finish(pgm_conn *c)
{
	if (c == NULL)
		return;
	clear_error(c);
	free_batch_errors(c);
	if (c->owned && c->pg)
		PQfinish(c->pg);
	free(c->actor);
	sodium_memzero(c, sizeof(*c));
	free(c);
}

pgm_status
pgm_conn_status(const pgm_conn *c)
{
	if (c == NULL || c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK)
		return PGM_CONNECTION_ERROR;
	return PGM_OK;
}

PGconn *
pgm_pgconn(pgm_conn *c)
{
	return c ? c->pg : NULL;
}

pgm_status
pgm_set_actor(pgm_conn *c, const char *actor)
{
	char	   *copy = NULL;

	if (c == NULL)
		return PGM_CLIENT_ERROR;
	if (actor != NULL && (copy = strdup(actor)) == NULL)
		return set_error(c, PGM_CLIENT_ERROR, "out of memory");
	free(c->actor);
	c->actor = copy;
	clear_error(c);
	return PGM_OK;
}

void
pgm_set_prepared(pgm_conn *c, int on)
{
	if (c)
		c->prepared = on != 0;
}

void
pgm_set_plain_secrets(pgm_conn *c, int on)
{
	if (c)
		c->plain_secrets = on != 0;
}

/* ------------------------------------------------------------------------
 * Running a statement
 * ------------------------------------------------------------------------ */

/* Named statements: prepare query q once per connection (own round trip). */
static pgm_status
ensure_prepared(pgm_conn *c, query_id q, int nparams, char *name, size_t namesize)
{
	PGresult   *res;

	snprintf(name, namesize, "pgmarket_q%d", (int) q);
	if (c->prepared_mask[q / 64] & (UINT64_C(1) << (q % 64)))
		return PGM_OK;
	res = PQprepare(c->pg, name, queries[q], nparams, NULL);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		pgm_status	st = set_result_error(c, res);

		PQclear(res);
		return st;
	}
	PQclear(res);
	c->prepared_mask[q / 64] |= UINT64_C(1) << (q % 64);
	return PGM_OK;
}

/* Queues one statement in pipeline mode; 1 on success. */
static int
send_one(pgm_conn *c, query_id q, const char *sql, const char *name,
		 int n, const char *const *vals, const int *lens, const int *fmts)
{
	if (name != NULL)
		return PQsendQueryPrepared(c->pg, name, n, vals, lens, fmts, 0);
	return PQsendQueryParams(c->pg, q == Q_COUNT ? sql : queries[q], n, NULL,
							 vals, lens, fmts, 0);
}

/* Reads one statement's result in pipeline mode and the NULL after it. */
static PGresult *
read_one(pgm_conn *c)
{
	PGresult   *res = PQgetResult(c->pg);
	PGresult   *extra;

	if (res == NULL)
		return NULL;
	while ((extra = PQgetResult(c->pg)) != NULL)
		PQclear(extra);			/* cannot happen for one SELECT */
	return res;
}

/* Reads up to the PGRES_PIPELINE_SYNC; 0 when the connection failed. */
static int
read_sync(pgm_conn *c)
{
	for (;;)
	{
		PGresult   *res = PQgetResult(c->pg);
		ExecStatusType st;

		if (res == NULL)
		{
			if (PQstatus(c->pg) != CONNECTION_OK)
				return 0;
			continue;
		}
		st = PQresultStatus(res);
		PQclear(res);
		if (st == PGRES_PIPELINE_SYNC)
			return 1;
		if (PQstatus(c->pg) != CONNECTION_OK)
			return 0;
	}
}

static int
result_ok(const PGresult *res)
{
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

/*
 * Runs query q (or sql when q is Q_COUNT) and returns its result, or NULL
 * with the error kept on c.
 */
static PGresult *
run(pgm_conn *c, query_id q, const char *sql, int n,
	const char *const *vals, const int *lens, const int *fmts)
{
	char		name[32];
	const char *stmt = NULL;
	PGresult   *res;
	PGresult   *ares;

	if (c == NULL)
		return NULL;
	clear_error(c);
	if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK)
	{
		set_result_error(c, NULL);
		return NULL;
	}
	if (c->prepared && q != Q_COUNT)
	{
		if (ensure_prepared(c, q, n, name, sizeof(name)) != PGM_OK)
			return NULL;
		stmt = name;
	}

	if (c->actor == NULL)
	{
		if (stmt)
			res = PQexecPrepared(c->pg, stmt, n, vals, lens, fmts, 0);
		else
			res = PQexecParams(c->pg, q == Q_COUNT ? sql : queries[q], n, NULL,
							   vals, lens, fmts, 0);
		if (!result_ok(res))
		{
			set_result_error(c, res);
			PQclear(res);
			return NULL;
		}
		return res;
	}

	/* set_config and the call before one Sync: one implicit transaction */
	if (!PQenterPipelineMode(c->pg))
	{
		set_result_error(c, NULL);
		return NULL;
	}
	{
		const char *avals[1] = {c->actor};

		if (!PQsendQueryParams(c->pg, actor_sql, 1, NULL, avals, NULL, NULL, 0) ||
			!send_one(c, q, sql, stmt, n, vals, lens, fmts) ||
			!PQpipelineSync(c->pg))
		{
			set_result_error(c, NULL);
			PQexitPipelineMode(c->pg);
			return NULL;
		}
	}
	ares = read_one(c);
	res = read_one(c);
	if (!read_sync(c))
	{
		set_result_error(c, NULL);
		PQclear(ares);
		PQclear(res);
		return NULL;
	}
	PQexitPipelineMode(c->pg);
	if (!result_ok(ares))
	{
		set_result_error(c, ares);
		PQclear(ares);
		PQclear(res);
		return NULL;
	}
	PQclear(ares);
	if (!result_ok(res))
	{
		set_result_error(c, res);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* A one-row result's value, checking there is a row. */
static const char *
val(const PGresult *res, int row, int col)
{
	if (row < 0 || col < 0 || row >= PQntuples(res) || col >= PQnfields(res) ||
		PQgetisnull(res, row, col))
		return NULL;
	return PQgetvalue(res, row, col);
}

static void
copy(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

static int64_t
to_i64(const char *s)
{
	return s ? (int64_t) strtoll(s, NULL, 10) : 0;
}

static int
to_bool(const char *s)
{
	return s != NULL && s[0] == 't';
}

/* Needs exactly one row (the scalar functions return one). */
static pgm_status
need_row(pgm_conn *c, PGresult *res)
{
	if (PQntuples(res) < 1)
	{
		PQclear(res);
		return set_error(c, PGM_SERVER_ERROR, "the server returned no row");
	}
	return PGM_OK;
}

static pgm_status
fill_ledger_result(pgm_conn *c UNUSED, PGresult *res, void *arg)
{
	pgm_ledger_result *out = arg;

	memset(out, 0, sizeof(*out));
	out->entry_id = to_i64(val(res, 0, PQfnumber(res, "entry_id")));
	copy(out->user_id, sizeof(out->user_id), val(res, 0, PQfnumber(res, "user_id")));
	copy(out->kind, sizeof(out->kind), val(res, 0, PQfnumber(res, "kind")));
	copy(out->amount, sizeof(out->amount), val(res, 0, PQfnumber(res, "amount")));
	copy(out->available_balance, sizeof(out->available_balance),
		 val(res, 0, PQfnumber(res, "available_balance")));
	out->replayed = to_bool(val(res, 0, PQfnumber(res, "replayed")));
	return PGM_OK;
}

static pgm_status
fill_balance(pgm_conn *c UNUSED, PGresult *res, void *arg)
{
	pgm_balance *out = arg;

	memset(out, 0, sizeof(*out));
	copy(out->user_id, sizeof(out->user_id), val(res, 0, PQfnumber(res, "user_id")));
	copy(out->total_balance, sizeof(out->total_balance),
		 val(res, 0, PQfnumber(res, "total_balance")));
	copy(out->spent_balance, sizeof(out->spent_balance),
		 val(res, 0, PQfnumber(res, "spent_balance")));
	copy(out->reserved_balance, sizeof(out->reserved_balance),
		 val(res, 0, PQfnumber(res, "reserved_balance")));
	copy(out->available_balance, sizeof(out->available_balance),
		 val(res, 0, PQfnumber(res, "available_balance")));
	copy(out->updated_at, sizeof(out->updated_at),
		 val(res, 0, PQfnumber(res, "updated_at")));
	return PGM_OK;
}

/* Runs a ledger_result query and fills out (which may be NULL). */
/* Runs query q with text parameters only (the common case). */
static PGresult *
call(pgm_conn *c, query_id q, int n, const char *const *vals)
{
	return run(c, q, NULL, n, vals, NULL, NULL);
}

/* What reads a one-row result into out; PGM_OK or the failure, set on c. */
typedef pgm_status (*row_fn) (pgm_conn *c, PGresult *res, void *out);

/*
 * The one row of a result (NULL: the call failed) read by fill when out
 * is not NULL; the result is cleared.
 */
static pgm_status
take_row(pgm_conn *c, PGresult *res, row_fn fill, void *out)
{
	pgm_status	st = PGM_OK;

	if (res == NULL)
		return c ? c->status : PGM_CLIENT_ERROR;
	if (need_row(c, res) != PGM_OK)
		return c->status;
	if (out)
		st = fill(c, res, out);
	PQclear(res);
	return st;
}

/* Runs a ledger_result query and fills out (which may be NULL). */
static pgm_status
ledger_call(pgm_conn *c, query_id q, int n, const char *const *vals,
			pgm_ledger_result *out)
{
	return take_row(c, call(c, q, n, vals), fill_ledger_result, out);
}

/* The one scalar of a result (NULL: the call failed), handed to fn. */
/* A scalar's taker and its argument, for take_row. */
typedef struct
{
	void		(*fn) (const char *value, void *arg);
	void	   *arg;
} scalar_sink;

static pgm_status
fill_scalar(pgm_conn *c UNUSED, PGresult *res, void *sink)
{
	scalar_sink *s = sink;

	s->fn(val(res, 0, 0), s->arg);
	return PGM_OK;
}

/* The one scalar of a result (NULL: the call failed), handed to fn. */
static pgm_status
take_scalar(pgm_conn *c, PGresult *res,
			void (*fn) (const char *value, void *arg), void *arg)
{
	scalar_sink s = {fn, arg};

	return take_row(c, res, fill_scalar, fn ? &s : NULL);
}

/*
 * take_scalar into *out (size bytes, at most a uuid's; out may be NULL),
 * through a zeroed copy: a failed call leaves 0, false or "" in *out.
 */
static pgm_status
scalar_into(pgm_conn *c, PGresult *res, void (*fn) (const char *value, void *arg),
			void *out, size_t size)
{
	union
	{
		int64_t		i64;
		int			b;
		char		uuid[PGM_UUID_LEN];
	}			v;
	pgm_status	st;

	memset(&v, 0, sizeof(v));
	st = take_scalar(c, res, fn, &v);
	if (out)
		memcpy(out, &v, size);
	return st;
}

/* Runs a query with one scalar result and hands its text to fn. */
static pgm_status
scalar_call(pgm_conn *c, query_id q, int n, const char *const *vals,
			void (*fn) (const char *value, void *arg), void *arg)
{
	return take_scalar(c, call(c, q, n, vals), fn, arg);
}

static void
take_i64(const char *v, void *arg)
{
	*(int64_t *) arg = to_i64(v);
}

static void
take_bool(const char *v, void *arg)
{
	*(int *) arg = to_bool(v);
}

static void
take_uuid(const char *v, void *arg)
{
	copy((char *) arg, PGM_UUID_LEN, v);
}

/* res (NULL: the call failed) as a pgm_result in *out; cleared when out is NULL. */
static pgm_status
give_result(pgm_conn *c, PGresult *res, pgm_result **out)
{
	pgm_result *r;

	if (res == NULL)
		return c ? c->status : PGM_CLIENT_ERROR;
	if (out == NULL)
	{
		PQclear(res);
		return PGM_OK;
	}
	r = malloc(sizeof(*r));
	if (r == NULL)
	{
		PQclear(res);
		return set_error(c, PGM_CLIENT_ERROR, "out of memory");
	}
	r->res = res;
	*out = r;
	return PGM_OK;
}

static pgm_status
rows_call(pgm_conn *c, query_id q, int n, const char *const *vals,
		  pgm_result **out)
{
	if (out)
		*out = NULL;
	return give_result(c, call(c, q, n, vals), out);
}

/* rows_call of a query with one parameter (a user, a model, a name). */
static pgm_status
rows_of(pgm_conn *c, query_id q, const char *key, pgm_result **out)
{
	return rows_call(c, q, 1, &key, out);
}

/*
 * The public call fn(conn, key, out): the rows of query q of one
 * parameter (a user, a model, a name), through rows_of.
 */
#define ROWS_OF(fn, key, q) \
	pgm_status \
	fn(pgm_conn *c, const char *key, pgm_result **out) \
	{ \
		return rows_of(c, q, key, out); \
	}

/* The same with two text parameters. */
#define ROWS_OF2(fn, a, b, q) \
	pgm_status \
	fn(pgm_conn *c, const char *a, const char *b, pgm_result **out) \
	{ \
		const char *vals[2] = {a, b}; \
		\
		return rows_call(c, q, 2, vals, out); \
	}

/* ------------------------------------------------------------------------
 * Sealed secrets
 *
 * Passwords and platform keys travel sealed (crypto_box_seal) to the
 * vault's public key, fetched once per connection, inside a payload of the
 * extension's sealed format: format version 1, a tag ('P' password, 'K'
 * platform key), the time of sealing (seconds since 1970, big-endian), the
 * secret.  The server accepts it within 60 seconds of its clock, so what a
 * server log keeps is a blob that opens only in that vault, for a minute.
 * Without a vault the calls fail with PGM_VAULT_UNAVAILABLE; only
 * pgm_set_plain_secrets(conn, 1) sends them as text instead.
 * ------------------------------------------------------------------------ */

#define SEAL_TAG_PASSWORD	'P'
#define SEAL_TAG_API_KEY	'K'
#define SEAL_HEADER_BYTES	10
#define KEY_PREFIX_LEN		24	/* sk_live_ and 16 hex digits */

static pgm_status fetch_pk(pgm_conn *c);

/* Seal secret with its header; *out (malloc'd) holds *outlen bytes. */
static pgm_status
seal_secret(pgm_conn *c, char tag, const char *secret, unsigned char **out,
			size_t *outlen)
{
	size_t		len = strlen(secret);
	size_t		plen = SEAL_HEADER_BYTES + len;
	uint64_t	now = (uint64_t) time(NULL);
	unsigned char *payload;
	unsigned char *sealed;
	pgm_status	st;
	int			i;

	*out = NULL;
	if (!c->have_pk && (st = fetch_pk(c)) != PGM_OK)
		return st;
	payload = malloc(plen);
	sealed = malloc(plen + crypto_box_SEALBYTES);
	if (payload == NULL || sealed == NULL)
	{
		free(payload);
		free(sealed);
		return set_error(c, PGM_CLIENT_ERROR, "out of memory");
	}
	payload[0] = 1;
	payload[1] = (unsigned char) tag;
	for (i = 0; i < 8; i++)
		payload[2 + i] = (unsigned char) (now >> (56 - 8 * i));
	memcpy(payload + SEAL_HEADER_BYTES, secret, len);
	i = crypto_box_seal(sealed, payload, plen, c->pk);
	sodium_memzero(payload, plen);
	free(payload);
	if (i != 0)
	{
		free(sealed);
		return set_error(c, PGM_CLIENT_ERROR, "crypto_box_seal failed");
	}
	*out = sealed;
	*outlen = plen + crypto_box_SEALBYTES;
	return PGM_OK;
}

/*
 * Runs query q with parameter at replaced by secret, sealed (binary
 * bytea).  A blob the server cannot open (PM011: the master key changed
 * since this connection fetched the public key) is sealed again to a
 * freshly fetched key, once; nothing was done by the failed call.
 */
static PGresult *
run_sealed(pgm_conn *c, query_id q, int n, const char **vals, int at,
		   char tag, const char *secret)
{
	int			lens[8] = {0};
	int			fmts[8] = {0};
	PGresult   *res = NULL;
	int			attempt;

	if (c == NULL)
		return NULL;
	clear_error(c);
	for (attempt = 0; attempt < 2; attempt++)
	{
		unsigned char *sealed;
		size_t		slen = 0;

		if (attempt == 1)
			c->have_pk = 0;
		if (seal_secret(c, tag, secret, &sealed, &slen) != PGM_OK)
			return NULL;
		vals[at] = (const char *) sealed;
		lens[at] = (int) slen;
		fmts[at] = 1;
		res = run(c, q, NULL, n, vals, lens, fmts);
		vals[at] = NULL;
		free(sealed);
		if (res != NULL || c->status != PGM_DECRYPTION_FAILED)
			break;
	}
	return res;
}

/*
 * For the library's other files (pgm_private.h): sealed_sql with the text
 * parameters vals, those whose bit is set in secrets (and not NULL) sealed
 * as passwords and sent as binary bytea; plain_sql with every parameter as
 * text when plain secrets are on.  A blob the server cannot open is sealed
 * again to a freshly fetched key, once, as run_sealed does.  out as
 * pgm_exec.
 */
pgm_status
pgmi_exec_passwords(pgm_conn *c, const char *plain_sql, const char *sealed_sql,
					int n, const char *const *vals, unsigned secrets,
					pgm_result **out)
{
	const char *v[8];
	int			lens[8] = {0};
	int			fmts[8] = {0};
	unsigned char *sealed[8] = {0};
	PGresult   *res = NULL;
	int			attempt;
	int			i;

	if (out)
		*out = NULL;
	if (c == NULL || n > 8)
		return PGM_CLIENT_ERROR;
	if (c->plain_secrets)
		return pgm_exec(c, plain_sql, n, vals, out);
	clear_error(c);
	for (attempt = 0; attempt < 2; attempt++)
	{
		int			ok = 1;

		if (attempt == 1)
			c->have_pk = 0;
		for (i = 0; i < n; i++)
		{
			size_t		slen = 0;

			v[i] = vals[i];
			lens[i] = 0;
			fmts[i] = 0;
			if (!(secrets & (1u << i)) || vals[i] == NULL)
				continue;
			if (seal_secret(c, SEAL_TAG_PASSWORD, vals[i], &sealed[i], &slen) != PGM_OK)
			{
				ok = 0;
				break;
			}
			v[i] = (const char *) sealed[i];
			lens[i] = (int) slen;
			fmts[i] = 1;
		}
		if (ok)
			res = run(c, Q_COUNT, sealed_sql, n, v, lens, fmts);
		for (i = 0; i < n; i++)
		{
			free(sealed[i]);
			sealed[i] = NULL;
		}
		if (!ok || res != NULL || c->status != PGM_DECRYPTION_FAILED)
			break;
	}
	return give_result(c, res, out);
}

/* scalar_call with a sealed secret. */
/*
 * Query plain, or query sealed with the password vals[at] sealed in its
 * place (plain when the password is NULL or plain secrets are on).
 */
static PGresult *
password_call(pgm_conn *c, query_id plain, query_id sealed, int n, const char **vals,
			  int at)
{
	if (vals[at] == NULL || c->plain_secrets)
		return call(c, plain, n, vals);
	return run_sealed(c, sealed, n, vals, at, SEAL_TAG_PASSWORD, vals[at]);
}

/*
 * A text the call answered (malloc'd; NULL when out of memory) into *out,
 * or freed when out is NULL.
 */
static pgm_status
give_text(pgm_conn *c, pgm_status st, char *text, char **out)
{
	if (st == PGM_OK && text == NULL)
		return set_error(c, PGM_CLIENT_ERROR, "out of memory");
	if (out)
		*out = text;
	else
		free(text);
	return st;
}

/* A secret the call answered into *out, or wiped and freed when out is NULL. */
static pgm_status
give_secret(char *secret, char **out)
{
	if (out)
		*out = secret;
	else
		pgm_free_secret(secret);
	return PGM_OK;
}

/*
 * The public part of a platform key (prefix, KEY_PREFIX_LEN + 1 bytes);
 * 0 when the text is not shaped like a key, which the sealed calls then
 * refuse without sending it anywhere.
 */
static int
key_prefix(const char *api_key, char *prefix)
{
	int			i;

	if (strncmp(api_key, "sk_live_", 8) != 0 && strncmp(api_key, "sk_test_", 8) != 0)
		return 0;
	for (i = 8; i < KEY_PREFIX_LEN; i++)
		if (!((api_key[i] >= '0' && api_key[i] <= '9') ||
			  (api_key[i] >= 'a' && api_key[i] <= 'f')))
			return 0;
	memcpy(prefix, api_key, KEY_PREFIX_LEN);
	prefix[KEY_PREFIX_LEN] = '\0';
	return 1;
}

/*
 * A call that carries a platform key: the plain query takes (api_key,
 * args...), the sealed one (prefix, sealed api_key, args...), routed by the
 * key's public part.  NULL when it failed (the error set on c), or when
 * the key has no public part (PGM_INVALID_API_KEY, nothing sent).
 */
static PGresult *
api_key_call(pgm_conn *c, query_id plain, query_id sealed, const char *api_key,
			 int nargs, const char *const *args)
{
	const char *vals[8];
	char		prefix[KEY_PREFIX_LEN + 1];
	int			i;

	if (api_key == NULL || c->plain_secrets)
	{
		vals[0] = api_key;
		for (i = 0; i < nargs; i++)
			vals[1 + i] = args[i];
		return call(c, plain, 1 + nargs, vals);
	}
	if (!key_prefix(api_key, prefix))
	{
		set_error(c, PGM_INVALID_API_KEY, "invalid API key");
		return NULL;
	}
	vals[0] = prefix;
	vals[1] = NULL;				/* the sealed key, filled by run_sealed */
	for (i = 0; i < nargs; i++)
		vals[2 + i] = args[i];
	return run_sealed(c, sealed, 2 + nargs, vals, 1, SEAL_TAG_API_KEY, api_key);
}

#define I64BUF 24
#define fmt_i64(buf, v) (snprintf((buf), I64BUF, "%" PRId64, (int64_t) (v)), (buf))

/*
 * A text[] literal of a NULL-terminated list, quoted: {"a","b\"c"}.
 * Returns malloc'd text or NULL (out of memory).
 */
static char *
array_literal(const char *const *items)
{
	size_t		len = 3,
				i;
	char	   *buf,
			   *p;
	const char *s;

	for (i = 0; items[i]; i++)
		len += 2 * strlen(items[i]) + 3;
	buf = malloc(len);
	if (buf == NULL)
		return NULL;
	p = buf;
	*p++ = '{';
	for (i = 0; items[i]; i++)
	{
		if (i > 0)
			*p++ = ',';
		*p++ = '"';
		for (s = items[i]; *s; s++)
		{
			if (*s == '"' || *s == '\\')
				*p++ = '\\';
			*p++ = *s;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return buf;
}

/* ------------------------------------------------------------------------
 * Money helpers
 * ------------------------------------------------------------------------ */

pgm_status
pgm_str_to_micro(const char *text, int64_t *micro)
{
	const char *p = text;
	int			neg = 0,
				digits = 0,
				frac = 0;
	uint64_t	v = 0;

	if (text == NULL || micro == NULL)
		return PGM_CLIENT_ERROR;
	while (*p == ' ')
		p++;
	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	for (; *p >= '0' && *p <= '9'; p++, digits++)
	{
		v = v * 10 + (uint64_t) (*p - '0');
		if (v >= (uint64_t) (PGM_MICRO_LIMIT / 1000000))
			return PGM_OUT_OF_RANGE;
	}
	v *= 1000000;
	if (*p == '.')
	{
		uint64_t	scale = 100000;

		for (p++; *p >= '0' && *p <= '9'; p++, frac++)
		{
			if (frac >= 6)
			{
				if (*p != '0')
					return PGM_INVALID_PARAMETER;	/* below a micro-credit */
				continue;
			}
			v += (uint64_t) (*p - '0') * scale;
			scale /= 10;
		}
		digits += frac;
	}
	while (*p == ' ')
		p++;
	if (*p != '\0' || digits == 0)
		return PGM_INVALID_PARAMETER;
	*micro = neg ? -(int64_t) v : (int64_t) v;
	return PGM_OK;
}

char *
pgm_micro_to_str(int64_t micro, char *buf)
{
	uint64_t	u = micro < 0 ? (uint64_t) (-(micro + 1)) + 1 : (uint64_t) micro;

	snprintf(buf, PGM_AMOUNT_LEN, "%s%" PRIu64 ".%06" PRIu64,
			 micro < 0 ? "-" : "", u / 1000000, u % 1000000);
	return buf;
}

/* ------------------------------------------------------------------------
 * Results
 * ------------------------------------------------------------------------ */

int
pgm_result_rows(const pgm_result *r)
{
	return r ? PQntuples(r->res) : 0;
}

const char *
pgm_result_value(const pgm_result *r, int row, const char *column)
{
	int			col;

	if (r == NULL || column == NULL || row < 0)
		return NULL;
	col = PQfnumber(r->res, column);
	if (col < 0)
		return NULL;
	return val(r->res, row, col);
}

pgm_status
pgm_result_ledger_entry(const pgm_result *r, int row, pgm_ledger_entry *out)
{
	if (r == NULL || out == NULL || row < 0 || row >= PQntuples(r->res))
		return PGM_CLIENT_ERROR;
	memset(out, 0, sizeof(*out));
	out->entry_id = to_i64(pgm_result_value(r, row, "entry_id"));
	copy(out->kind, sizeof(out->kind), pgm_result_value(r, row, "kind"));
	copy(out->amount, sizeof(out->amount), pgm_result_value(r, row, "amount"));
	copy(out->available_balance, sizeof(out->available_balance),
		 pgm_result_value(r, row, "available_balance"));
	out->model_id = pgm_result_value(r, row, "model_id");
	out->tokens_used = to_i64(pgm_result_value(r, row, "tokens_used"));
	out->idempotency_key = pgm_result_value(r, row, "idempotency_key");
	out->note = pgm_result_value(r, row, "note");
	out->refund_of = to_i64(pgm_result_value(r, row, "refund_of"));
	copy(out->created_at, sizeof(out->created_at),
		 pgm_result_value(r, row, "created_at"));
	return PGM_OK;
}

pgm_status
pgm_result_provider_key(const pgm_result *r, int row, pgm_provider_key_info *out)
{
	if (r == NULL || out == NULL || row < 0 || row >= PQntuples(r->res))
		return PGM_CLIENT_ERROR;
	memset(out, 0, sizeof(*out));
	copy(out->key_id, sizeof(out->key_id), pgm_result_value(r, row, "key_id"));
	copy(out->provider, sizeof(out->provider), pgm_result_value(r, row, "provider"));
	out->label = pgm_result_value(r, row, "label");
	copy(out->hint, sizeof(out->hint), pgm_result_value(r, row, "hint"));
	out->key_version = (int) to_i64(pgm_result_value(r, row, "key_version"));
	copy(out->created_at, sizeof(out->created_at), pgm_result_value(r, row, "created_at"));
	copy(out->last_used_at, sizeof(out->last_used_at),
		 pgm_result_value(r, row, "last_used_at"));
	copy(out->revoked_at, sizeof(out->revoked_at), pgm_result_value(r, row, "revoked_at"));
	return PGM_OK;
}

void
pgm_result_free(pgm_result *r)
{
	if (r == NULL)
		return;
	PQclear(r->res);
	free(r);
}

void
pgm_free(void *ptr)
{
	free(ptr);
}

void
pgm_free_secret(char *secret)
{
	if (secret == NULL)
		return;
	sodium_memzero(secret, strlen(secret));
	free(secret);
}

/* A copy of a secret value of res; the value inside res is wiped. */
static char *
take_secret(PGresult *res, int row, int col)
{
	char	   *v = PQgetvalue(res, row, col);
	size_t		len = (size_t) PQgetlength(res, row, col);
	char	   *copy = malloc(len + 1);

	if (copy)
	{
		memcpy(copy, v, len);
		copy[len] = '\0';
	}
	sodium_memzero(v, len);
	return copy;
}

pgm_status
pgm_exec(pgm_conn *c, const char *sql, int nparams,
		 const char *const *params, pgm_result **out)
{
	if (out)
		*out = NULL;
	if (c == NULL)
		return PGM_CLIENT_ERROR;
	if (sql == NULL)
		return set_error(c, PGM_CLIENT_ERROR, "sql must not be NULL");
	return give_result(c, run(c, Q_COUNT, sql, nparams, params, NULL, NULL), out);
}

/* ------------------------------------------------------------------------
 * Accounts
 * ------------------------------------------------------------------------ */

/*
 * create_user and create_user_hashed: the roles as an array literal, the
 * third value (a password or a hash) sealed when sealed is not Q_COUNT;
 * user_id receives the new id ("" when the call fails).
 */
static pgm_status
create_user_call(pgm_conn *c, query_id plain, query_id sealed, const char *email,
				 const char *username, const char *secret,
				 const char *const *roles, const char *id,
				 char user_id[PGM_UUID_LEN])
{
	char	   *roles_lit = NULL;
	const char *vals[5] = {email, username, secret, NULL, id};
	PGresult   *res;
	pgm_status	st;

	if (c == NULL)
		return PGM_CLIENT_ERROR;
	if (roles && (roles_lit = array_literal(roles)) == NULL)
		return set_error(c, PGM_CLIENT_ERROR, "out of memory");
	vals[3] = roles_lit;
	res = sealed == Q_COUNT ? call(c, plain, 5, vals)
		: password_call(c, plain, sealed, 5, vals, 2);
	st = scalar_into(c, res, take_uuid, user_id, PGM_UUID_LEN);
	free(roles_lit);
	return st;
}

pgm_status
pgm_create_user(pgm_conn *c, const char *email, const char *username,
				const char *password, const char *const *roles,
				const char *id, char user_id[PGM_UUID_LEN])
{
	return create_user_call(c, Q_CREATE_USER, Q_CREATE_USER_SEALED, email, username,
							password, roles, id, user_id);
}

pgm_status
pgm_create_user_hashed(pgm_conn *c, const char *email, const char *username,
					   const char *password_hash, const char *const *roles,
					   const char *id, char user_id[PGM_UUID_LEN])
{
	if (user_id)
		user_id[0] = '\0';
	if (c != NULL && user_id == NULL)
		return set_error(c, PGM_CLIENT_ERROR, "user_id must not be NULL");
	return create_user_call(c, Q_CREATE_USER_HASHED, Q_COUNT, email, username,
							password_hash, roles, id, user_id);
}

pgm_status
pgm_authenticate(pgm_conn *c, const char *login, const char *password,
				 char user_id[PGM_UUID_LEN])
{
	const char *vals[2] = {login, password};

	if (c == NULL)
		return PGM_CLIENT_ERROR;
	return scalar_into(c, password_call(c, Q_AUTHENTICATE, Q_AUTHENTICATE_SEALED, 2, vals, 1),
					   take_uuid, user_id, PGM_UUID_LEN);
}

pgm_status
pgm_deactivate_user(pgm_conn *c, const char *user_id)
{
	const char *vals[1] = {user_id};

	return scalar_call(c, Q_DEACTIVATE_USER, 1, vals, NULL, NULL);
}

pgm_status
pgm_erase_user(pgm_conn *c, const char *user_id)
{
	const char *vals[1] = {user_id};

	return scalar_call(c, Q_ERASE_USER, 1, vals, NULL, NULL);
}

static void
take_strdup(const char *v, void *arg)
{
	*(char **) arg = v ? strdup(v) : NULL;
}

pgm_status
pgm_hash_password(pgm_conn *c, const char *password, char **hash)
{
	const char *vals[1] = {password};
	char	   *h = NULL;
	pgm_status	st;

	if (hash)
		*hash = NULL;
	if (c == NULL)
		return PGM_CLIENT_ERROR;
	st = take_scalar(c, password_call(c, Q_HASH_PASSWORD, Q_HASH_PASSWORD_SEALED, 1, vals, 0),
					 take_strdup, &h);
	return give_text(c, st, h, hash);
}

pgm_status
pgm_verify_password(pgm_conn *c, const char *password, const char *hash, int *valid)
{
	const char *vals[2] = {password, hash};

	if (c == NULL)
		return PGM_CLIENT_ERROR;
	return scalar_into(c, password_call(c, Q_VERIFY_PASSWORD, Q_VERIFY_PASSWORD_SEALED, 2, vals, 0),
					   take_bool, valid, sizeof(int));
}

pgm_status
pgm_health(pgm_conn *c, char **json)
{
	char	   *j = NULL;
	pgm_status	st;

	if (json)
		*json = NULL;
	st = scalar_call(c, Q_HEALTH, 0, NULL, take_strdup, &j);
	return give_text(c, st, j, json);
}

/* ------------------------------------------------------------------------
 * Ledger
 * ------------------------------------------------------------------------ */

pgm_status
pgm_add_funds(pgm_conn *c, const char *user_id, const char *amount,
			  const char *idempotency_key, const char *note,
			  pgm_ledger_result *out)
{
	const char *vals[4] = {user_id, amount, idempotency_key, note};

	return ledger_call(c, Q_ADD_FUNDS, 4, vals, out);
}

pgm_status
pgm_deduct_balance(pgm_conn *c, const char *user_id, const char *amount,
				   const char *model_id, int64_t tokens_used,
				   const char *idempotency_key, pgm_ledger_result *out)
{
	char		tokens[I64BUF];
	const char *vals[5] = {user_id, amount, model_id,
	fmt_i64(tokens, tokens_used), idempotency_key};

	return ledger_call(c, Q_DEDUCT_BALANCE, 5, vals, out);
}

pgm_status
pgm_refund(pgm_conn *c, const char *user_id, int64_t entry_id,
		   const char *amount, const char *idempotency_key,
		   pgm_ledger_result *out)
{
	char		entry[I64BUF];
	const char *vals[4] = {user_id, fmt_i64(entry, entry_id), amount, idempotency_key};

	return ledger_call(c, Q_REFUND, 4, vals, out);
}

pgm_status
pgm_get_balance(pgm_conn *c, const char *user_id, pgm_balance *out)
{
	const char *vals[1] = {user_id};

	return take_row(c, call(c, Q_GET_BALANCE, 1, vals), fill_balance, out);
}

pgm_status
pgm_ledger_entries(pgm_conn *c, const char *user_id, int max_rows,
				   int64_t before_id, pgm_result **out)
{
	char		rows[I64BUF],
				before[I64BUF];
	const char *vals[3] = {user_id, fmt_i64(rows, max_rows),
	before_id > 0 ? fmt_i64(before, before_id) : NULL};

	return rows_call(c, Q_LEDGER_ENTRIES, 3, vals, out);
}

pgm_status
pgm_reserve(pgm_conn *c, const char *user_id, const char *amount,
			const char *ttl, const char *idempotency_key,
			int64_t *reservation_id)
{
	const char *vals[4] = {user_id, amount, ttl, idempotency_key};

	return scalar_into(c, call(c, Q_RESERVE, 4, vals), take_i64, reservation_id,
					   sizeof(int64_t));
}

pgm_status
pgm_settle(pgm_conn *c, const char *user_id, int64_t reservation_id,
		   const char *amount, const char *model_id, int64_t tokens_used,
		   pgm_ledger_result *out)
{
	char		rid[I64BUF],
				tokens[I64BUF];
	const char *vals[5] = {user_id, fmt_i64(rid, reservation_id), amount,
	model_id, fmt_i64(tokens, tokens_used)};

	return ledger_call(c, Q_SETTLE, 5, vals, out);
}

pgm_status
pgm_release(pgm_conn *c, const char *user_id, int64_t reservation_id,
			pgm_balance *out)
{
	char		rid[I64BUF];
	const char *vals[2] = {user_id, fmt_i64(rid, reservation_id)};

	return take_row(c, call(c, Q_RELEASE, 2, vals), fill_balance, out);
}

pgm_status
pgm_expire_reservations(pgm_conn *c, int64_t *swept)
{
	return scalar_into(c, call(c, Q_EXPIRE, 0, NULL), take_i64, swept, sizeof(int64_t));
}

pgm_status
pgm_verify_ledger(pgm_conn *c, pgm_result **out)
{
	return rows_call(c, Q_VERIFY_LEDGER, 0, NULL, out);
}

/* ------------------------------------------------------------------------
 * Pipelined batches (pgm_deduct_batch)
 *
 * A round trip sends one transaction of up to BATCH_TXN charges, one
 * statement each and no savepoint:
 *
 *     BEGIN; [set_config(pgmarket.actor)];
 *     deduct_balance(1st); set_config(lock_timeout, 1ms);
 *     Parse(deduct_balance); Bind/Execute(2nd); Bind/Execute(3rd); ...
 *     COMMIT; Sync
 *
 * and reads its results.  The charges share one commit (one WAL flush
 * instead of one each), and from the second on they are bound to the
 * transaction's unnamed statement, parsed once (each round parses it
 * again, so that nothing outlives the round: pgbouncer in transaction mode
 * may give the next one another server).
 *
 * A charge that fails makes the server skip the rest of the round and
 * leaves the transaction aborted: nothing of it is committed.  The failed
 * charge ran after the charges before it, in the state those left, as it
 * would have run alone at that point of the sequence: its error is its
 * outcome.  The next round rolls the transaction back and sends the
 * charges before it and the ones after it again, in order, in a new
 * transaction: none of them was committed, so running them again is
 * exact, with idempotency keys or without.  Where the failure may have
 * come from the charges before it (they touch its user or use its
 * idempotency key), and they might not be what they were when they run
 * again (another session may write between the two round trips), the
 * failure is not kept: the charges before it are committed alone, and it
 * runs again first of the next transaction, in the state they left.  What
 * the client can refuse on its own (client_refuses) is refused without a
 * statement.  Nothing is ever sent again once it was committed, which
 * keeps a batch exact behind PL/Proxy too, where each charge commits on
 * its node as it runs.
 *
 * Behind PL/Proxy (deduct_balance is not the C function but a proxy's,
 * and each charge commits on its node as it runs) nothing that ran may be
 * sent again: there each charge gets a savepoint, never released (each
 * nests in the one before, ROLLBACK TO SAVEPOINT finds the newest, the
 * failed charge's, and COMMIT ends them all), a failed charge is rolled
 * back to it, and the next round begins with ROLLBACK TO SAVEPOINT and
 * COMMIT: the charges before it stand and are never sent again.
 *
 * Locks: a charge locks its user until the transaction's commit.  A
 * transaction that held some users' locks while it waited for another's
 * could close a cycle with deduct_batch or expire_reservations (which lock
 * in uuid order) or with another batch; so every charge but a
 * transaction's first runs under lock_timeout = 1ms, and one that meets a
 * held lock (55P03, or 40P01) runs again first of a transaction of its
 * own, once the charges before it are committed, where it waits holding
 * nothing, as a call of its own does.
 * ------------------------------------------------------------------------ */

#define BATCH_TXN 64
#define DONE 1					/* a charge's outcome is final */
#define HELD 2					/* applied before a failed one, to commit */

typedef enum
{
	B_BEGIN,
	B_ACTOR,
	B_TIMEOUT,
	B_PARSE,					/* the unnamed statement: deduct_balance */
	B_DEDUCT,					/* a charge, its own Parse */
	B_BOUND,					/* a charge bound to the unnamed statement */
	B_COMMIT,
	B_ROLLBACK,
	B_SAVEPOINT,				/* behind a proxy: a savepoint a charge, */
	B_UNDO,						/* rolled back to after a failed charge, */
	B_COMMIT_HELD				/* and the charges before it committed */
} bstep_kind;

static const char *const bstep_sql[] = {
	[B_BEGIN] = "BEGIN",
	[B_ACTOR] = "SELECT pg_catalog.set_config('pgmarket.actor', $1, true)",
	[B_TIMEOUT] = "SELECT pg_catalog.set_config('lock_timeout', '1ms', true)",
	[B_PARSE] = NULL,			/* queries[Q_DEDUCT_RECORD] */
	[B_DEDUCT] = NULL,
	[B_BOUND] = NULL,
	[B_COMMIT] = "COMMIT",
	[B_ROLLBACK] = "ROLLBACK",
	[B_SAVEPOINT] = "SAVEPOINT pgmarket_charge",
	[B_UNDO] = "ROLLBACK TO SAVEPOINT pgmarket_charge",
	[B_COMMIT_HELD] = "COMMIT",
};

typedef struct
{
	bstep_kind	kind;
	size_t		charge;			/* B_DEDUCT, B_BOUND */
} bstep;

struct pgm_batch_error
{
	char	   *msg;
	char	   *detail;
	char	   *hint;
};

typedef struct
{
	pgm_conn   *c;
	const pgm_charge *charges;
	pgm_charge_result *results;
	size_t		n;
	const char *stmt;			/* the named deduct statement, or NULL */
	unsigned char *done;		/* a charge each: DONE, HELD or 0 (to send) */
	int			savepoints;		/* a savepoint a charge, never sent again */
	int			held;			/* some charges are HELD */
	size_t		next;			/* the first charge not done */
	size_t		alone;			/* a charge to begin a transaction, or n */
	int			aborted;		/* the server's transaction is aborted */
	int			stop;			/* every charge left is decided */
	int			failed;			/* the round's failed step, or -1 */
	int			commit;			/* the round's COMMIT step, or -1 */
	bstep		steps[2 * BATCH_TXN + 8];
	int			nsteps;
} batch_run;

static void
free_batch_errors(pgm_conn *c)
{
	size_t		i;

	if (c->batch_errors == NULL)
		return;
	for (i = 0; i < c->batch_n; i++)
	{
		free(c->batch_errors[i].msg);
		free(c->batch_errors[i].detail);
		free(c->batch_errors[i].hint);
	}
	free(c->batch_errors);
	c->batch_errors = NULL;
	c->batch_n = 0;
}

/* Charge i's words, replacing what it had; 0 when out of memory. */
static int
keep_batch_error(batch_run *b, size_t i, const char *msg, const char *detail,
				 const char *hint)
{
	pgm_conn   *c = b->c;
	struct pgm_batch_error *e;

	if (c->batch_errors == NULL)
	{
		c->batch_errors = calloc(b->n, sizeof(*c->batch_errors));
		if (c->batch_errors == NULL)
			return 0;
		c->batch_n = b->n;
	}
	e = &c->batch_errors[i];
	free(e->msg);
	free(e->detail);
	free(e->hint);
	e->msg = dup_or_null(msg);
	e->detail = dup_or_null(detail);
	e->hint = dup_or_null(hint);
	return 1;
}

static const char *
batch_error_field(const pgm_conn *c, size_t i, int which)
{
	const struct pgm_batch_error *e;
	const char *s;

	if (c == NULL || c->batch_errors == NULL || i >= c->batch_n)
		return "";
	e = &c->batch_errors[i];
	s = which == 0 ? e->msg : which == 1 ? e->detail : e->hint;
	return s ? s : "";
}

const char *
pgm_batch_errmsg(const pgm_conn *c, size_t i)
{
	return batch_error_field(c, i, 0);
}

const char *
pgm_batch_errdetail(const pgm_conn *c, size_t i)
{
	return batch_error_field(c, i, 1);
}

const char *
pgm_batch_errhint(const pgm_conn *c, size_t i)
{
	return batch_error_field(c, i, 2);
}

/* Charge i's outcome: status and SQLSTATE, and its words (NULL: none). */
static void
decide(batch_run *b, size_t i, pgm_status status, const char *sqlstate,
	   const char *msg, const char *detail, const char *hint)
{
	pgm_charge_result *r = &b->results[i];

	memset(r, 0, sizeof(*r));
	r->status = status;
	copy(r->sqlstate, sizeof(r->sqlstate), sqlstate);
	if (msg || detail || hint || (b->c->batch_errors && i < b->c->batch_n))
		keep_batch_error(b, i, msg, detail, hint);
}

/* Charge i failed on the server with res's error. */
static void
decide_error(batch_run *b, size_t i, const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	decide(b, i, pgm_status_from_sqlstate(state), state,
		   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
		   PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
		   PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
}

/* ---- What the client refuses itself, in the words the server would use ---- */

/* 8-4-4-4-12 hex digits: text that uuid_in reads, whatever else it reads. */
static int
plain_uuid(const char *s)
{
	int			i;

	for (i = 0; i < 36; i++)
	{
		int			dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') ||
								   (s[i] >= 'a' && s[i] <= 'f') ||
								   (s[i] >= 'A' && s[i] <= 'F')))
			return 0;
	}
	return s[36] == '\0';
}

/*
 * -?DIGITS(.DIGITS)?, at most 200 characters: text that numeric_in reads,
 * and whose numeric_out the client can write itself (canon: leading zeros
 * of the whole part dropped, the sign of a zero dropped, the fraction as
 * it is).  0 for anything else.
 */
static int
plain_amount(const char *s, char canon[256])
{
	const char *p = s;
	const char *whole;
	int			neg = 0,
				zero = 1;
	size_t		len;

	if (strlen(s) > 200)
		return 0;
	if (*p == '-')
		neg = 1, p++;
	whole = p;
	if (!(*p >= '0' && *p <= '9'))
		return 0;
	while (*p >= '0' && *p <= '9')
		zero &= *p++ == '0';
	if (*p == '.')
	{
		if (!(p[1] >= '0' && p[1] <= '9'))
			return 0;
		for (p++; *p >= '0' && *p <= '9'; p++)
			zero &= *p == '0';
	}
	if (*p != '\0')
		return 0;
	while (*whole == '0' && whole[1] >= '0' && whole[1] <= '9')
		whole++;
	len = (size_t) snprintf(canon, 256, "%s%s", neg && !zero ? "-" : "", whole);
	return len < 256;
}

/* The value as pgm_shown_value shows ASCII text: maxchars, then "...". */
static void
shown(char *out, size_t size, const char *value, size_t maxchars)
{
	size_t		len = strlen(value),
				cut = len < maxchars ? len : maxchars,
				i,
				o = 0;

	for (i = 0; i < cut && o + 1 < size; i++)
		out[o++] = ((unsigned char) value[i] < 0x20 || value[i] == 0x7f) ? '?' : value[i];
	if (cut < len && o + 4 < size)
		memcpy(out + o, "...", 3), o += 3;
	out[o] = '\0';
}

/* An amount's refusal (amount: plain_amount's canon), as money.c words it. */
static int
refuse_amount(batch_run *b, size_t i, const char *amount)
{
	const char *p = amount;
	int			digits = 0,
				fdigits = 0,
				nonzero = 0,
				large = 0,
				precise = 0;
	char		v[80],
				msg[160];

	if (*p != '-')
	{
		for (; *p >= '0' && *p <= '9'; p++)
		{
			if (digits == 0 && *p == '0')
				continue;
			nonzero = 1;
			if (++digits > 13)
				large = 1;
		}
		/* 9,000,000,000,000 credits or more: 13 digits from "9" */
		if (digits == 13 && amount[strspn(amount, "0")] >= '9')
			large = 1;
		if (*p == '.')
			for (p++; *p; p++, fdigits++)
			{
				nonzero |= *p != '0';
				precise |= fdigits >= 6 && *p != '0';
			}
	}
	shown(v, sizeof(v), amount, 60);
	if (*amount == '-' || !nonzero)
		snprintf(msg, sizeof(msg), "amount %s must be greater than zero", v);
	else if (large)
	{
		snprintf(msg, sizeof(msg), "amount %s is out of range", v);
		decide(b, i, PGM_OUT_OF_RANGE, "22003", msg,
			   "Amounts and balances stay below 9000000000000 credits.", NULL);
		return 1;
	}
	else if (precise)
	{
		snprintf(msg, sizeof(msg), "amount %s is not a whole number of micro-credits", v);
		decide(b, i, PGM_INVALID_PARAMETER, "22023", msg,
			   "Amounts are exact to six fractional digits and are never rounded.", NULL);
		return 1;
	}
	else
		return 0;
	decide(b, i, PGM_INVALID_PARAMETER, "22023", msg, NULL, NULL);
	return 1;
}

/*
 * A short text's refusal as args.c words it: 1 refused, 0 fine, -1 when
 * the client cannot tell (text that is not ASCII: the server counts its
 * characters).
 */
static int
refuse_text(batch_run *b, size_t i, const char *name, const char *value, size_t maxlen)
{
	const char *p;
	int			control = 0;
	char		v[100],
				msg[200];

	for (p = value; *p; p++)
	{
		if ((unsigned char) *p >= 0x80)
			return -1;
		control |= (unsigned char) *p < 0x20 || *p == 0x7f;
	}
	if (*value == '\0')
		snprintf(msg, sizeof(msg), "%s must not be empty", name);
	else if (strlen(value) > maxlen)
	{
		shown(v, sizeof(v), value, 40);
		snprintf(msg, sizeof(msg), "%s \"%s\" is longer than %zu characters", name, v, maxlen);
	}
	else if (control)
	{
		shown(v, sizeof(v), value, 80);
		snprintf(msg, sizeof(msg), "%s \"%s\" contains a control character", name, v);
	}
	else
		return 0;
	decide(b, i, PGM_INVALID_PARAMETER, "22023", msg, NULL, NULL);
	return 1;
}

static void
refuse_null(batch_run *b, size_t i, const char *name)
{
	char		msg[64];

	snprintf(msg, sizeof(msg), "%s must not be null", name);
	decide(b, i, PGM_NULL_VALUE, "22004", msg, NULL, NULL);
}

/*
 * Does the client refuse charge i itself (deciding its outcome)?  The
 * checks run in deduct_balance's order, and stop short, leaving the charge
 * to the server, wherever the server would decide first something the
 * client cannot know (a cast it cannot mimic, pgmarket.actor) or would
 * count otherwise (text that is not ASCII).
 */
static int
client_refuses(batch_run *b, size_t i)
{
	const pgm_charge *ch = &b->charges[i];
	char		canon[256];
	int			t;

	if ((ch->user_id && !plain_uuid(ch->user_id)) ||
		(ch->amount && !plain_amount(ch->amount, canon)))
		return 0;				/* a cast fails first, or passes: the server's */
	if (ch->user_id == NULL)
		return refuse_null(b, i, "user_id"), 1;
	if (b->c->actor)
		return 0;				/* the actor check comes next */
	if (ch->amount == NULL)
		return refuse_null(b, i, "amount"), 1;
	if (refuse_amount(b, i, canon))
		return 1;
	if (ch->model_id == NULL)
		return refuse_null(b, i, "model_id"), 1;
	if ((t = refuse_text(b, i, "model_id", ch->model_id, 200)) != 0)
		return t > 0;
	if (ch->tokens_used < 0)
	{
		char		msg[80];

		snprintf(msg, sizeof(msg), "tokens_used %" PRId64 " must not be negative",
				 ch->tokens_used);
		decide(b, i, PGM_INVALID_PARAMETER, "22023", msg, NULL, NULL);
		return 1;
	}
	if (ch->idempotency_key &&
		(t = refuse_text(b, i, "idempotency_key", ch->idempotency_key, 200)) != 0)
		return t > 0;
	return 0;
}

/* ---- Rounds ---- */

static void
add_step(batch_run *b, bstep_kind kind, size_t charge)
{
	b->steps[b->nsteps].kind = kind;
	b->steps[b->nsteps].charge = charge;
	b->nsteps++;
}

static int
is_charge(const bstep *s)
{
	return s->kind == B_DEDUCT || s->kind == B_BOUND;
}

/*
 * The steps of the next round: the way out of an aborted transaction, then
 * a transaction of up to BATCH_TXN charges not done that the client does
 * not refuse, in order, ending before the charge that must run alone
 * (b->alone) unless it is the transaction's first.
 */
static void
plan_round(batch_run *b)
{
	size_t		i;
	int			k = 0;

	b->nsteps = 0;
	b->commit = -1;
	if (b->aborted && b->held)
	{
		add_step(b, B_UNDO, 0);
		add_step(b, B_COMMIT_HELD, 0);
	}
	else if (b->aborted)
		add_step(b, B_ROLLBACK, 0);
	for (i = b->next; i < b->n && k < BATCH_TXN && !b->stop; i++)
	{
		if (b->done[i])
			continue;
		if (client_refuses(b, i))
		{
			b->done[i] = DONE;
			continue;
		}
		if (i == b->alone && k > 0)
			break;
		if (k == 0)
		{
			add_step(b, B_BEGIN, i);
			if (b->c->actor)
				add_step(b, B_ACTOR, 0);
			if (i == b->alone)
				b->alone = b->n;
		}
		else if (k == 1)
		{
			add_step(b, B_TIMEOUT, 0);
			if (b->stmt == NULL && !b->savepoints)
				add_step(b, B_PARSE, 0);
		}
		if (b->savepoints)
			add_step(b, B_SAVEPOINT, 0);
		add_step(b, k == 0 || b->stmt || b->savepoints ? B_DEDUCT : B_BOUND, i);
		k++;
	}
	if (k > 0)
	{
		b->commit = b->nsteps;
		add_step(b, B_COMMIT, 0);
	}
}

/* Queues one step; 1 on success. */
static int
send_step(batch_run *b, const bstep *s)
{
	const pgm_charge *ch;
	char		tokens[I64BUF];
	const char *vals[5];

	switch (s->kind)
	{
		case B_ACTOR:
			return PQsendQueryParams(b->c->pg, bstep_sql[B_ACTOR], 1, NULL,
									 (const char *const *) &b->c->actor, NULL, NULL, 0);
		case B_PARSE:
			return PQsendPrepare(b->c->pg, "", queries[Q_DEDUCT_RECORD], 5, NULL);
		case B_DEDUCT:
		case B_BOUND:
			break;
		default:
			return PQsendQueryParams(b->c->pg, bstep_sql[s->kind], 0, NULL, NULL,
									 NULL, NULL, 0);
	}
	ch = &b->charges[s->charge];
	vals[0] = ch->user_id;
	vals[1] = ch->amount;
	vals[2] = ch->model_id;
	vals[3] = fmt_i64(tokens, ch->tokens_used);
	vals[4] = ch->idempotency_key;
	return send_one(b->c, Q_DEDUCT_RECORD, NULL,
					s->kind == B_BOUND ? "" : b->stmt, 5, vals, NULL, NULL);
}

/*
 * A ledger_result as its record text, "(entry_id,user_id,kind,amount,
 * available_balance,replayed)": the batch calls deduct_balance in the
 * target list, which spares the server a function scan per charge.  None
 * of the six fields is ever quoted (digits, a uuid, a word, numbers, t/f).
 */
static void
read_ledger_record(const char *rec, pgm_charge_result *r)
{
	char		field[6][PGM_AMOUNT_LEN + 8];
	int			f = 0;
	size_t		len = 0;
	const char *p;

	memset(field, 0, sizeof(field));
	for (p = rec && *rec == '(' ? rec + 1 : ""; *p && *p != ')' && f < 6; p++)
	{
		if (*p == ',')
		{
			f++;
			len = 0;
		}
		else if (len + 1 < sizeof(field[0]))
			field[f][len++] = *p;
	}
	r->entry_id = to_i64(field[0]);
	memcpy(r->available_balance, field[4], sizeof(r->available_balance) - 1);
	r->available_balance[sizeof(r->available_balance) - 1] = '\0';
	r->replayed = to_bool(field[5]);
}

/* The round's transaction committed: its charges' outcomes are final. */
static void
round_committed(batch_run *b)
{
	int			k;

	for (k = 0; k < b->nsteps; k++)
		if (is_charge(&b->steps[k]))
			b->done[b->steps[k].charge] = DONE;
}

/* The HELD charges committed, or not (lost; res: why, or NULL). */
static void
held_end(batch_run *b, int lost, const PGresult *res)
{
	size_t		i;

	for (i = b->next; i < b->n && b->held; i++)
		if (b->done[i] == HELD)
		{
			if (lost && res)
				decide_error(b, i, res);
			else if (lost)
				decide(b, i, PGM_SERVER_ERROR, "", NULL, NULL, NULL);
			b->done[i] = DONE;
		}
	b->held = 0;
}

/* It did not (res: why): its charges have that for outcome. */
static void
round_lost(batch_run *b, const PGresult *res)
{
	int			k;

	for (k = 0; k < b->nsteps; k++)
		if (is_charge(&b->steps[k]) && !b->done[b->steps[k].charge])
		{
			if (res)
				decide_error(b, b->steps[k].charge, res);
			else
				decide(b, b->steps[k].charge, PGM_SERVER_ERROR, "", NULL, NULL, NULL);
			b->done[b->steps[k].charge] = DONE;
		}
}

/* A step's result that succeeded. */
static void
step_done(batch_run *b, const bstep *s, PGresult *res)
{
	switch (s->kind)
	{
		case B_DEDUCT:
		case B_BOUND:
			/* not final before the COMMIT's result */
			decide(b, s->charge, PGM_OK, "00000", NULL, NULL, NULL);
			read_ledger_record(val(res, 0, 0), &b->results[s->charge]);
			break;
		case B_ROLLBACK:
		case B_UNDO:
			b->aborted = 0;
			break;
		case B_COMMIT_HELD:
			if (strcmp(PQcmdStatus(res), "COMMIT") == 0)
				held_end(b, 0, NULL);
			else
				held_end(b, 1, NULL);	/* cannot happen: the block was not aborted */
			break;
		case B_COMMIT:
			if (strcmp(PQcmdStatus(res), "COMMIT") == 0)
				round_committed(b);
			else
				round_lost(b, NULL);	/* cannot happen: the block was not aborted */
			break;
		default:
			break;
	}
}

/* Two charges' texts the same: NULL is no text. */
static int
same_text(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* Might charges a and b be of one user?  Plain uuids are compared. */
static int
same_user(const pgm_charge *a, const pgm_charge *b)
{
	if (a->user_id == NULL || b->user_id == NULL)
		return 0;
	if (!plain_uuid(a->user_id) || !plain_uuid(b->user_id))
		return 1;
	return strncasecmp(a->user_id, b->user_id, 36) == 0;
}

/*
 * Might the failure of the round's step f (a charge) come from the charges
 * before it in the transaction: one of them of its user or with its key?
 */
static int
failure_depends(const batch_run *b, int f)
{
	const pgm_charge *ch = &b->charges[b->steps[f].charge];
	int			k;

	for (k = 0; k < f; k++)
	{
		const pgm_charge *o;

		if (!is_charge(&b->steps[k]))
			continue;
		o = &b->charges[b->steps[k].charge];
		if (same_user(o, ch) || same_text(o->idempotency_key, ch->idempotency_key))
			return 1;
	}
	return 0;
}

/* Is step k the first charge of the round's transaction? */
static int
first_charge(const batch_run *b, int k)
{
	int			j;

	for (j = 0; j < k; j++)
		if (is_charge(&b->steps[j]))
			return 0;
	return 1;
}

/*
 * Step k failed; 0 when the batch cannot go on (res is then the error to
 * report).  The server skips the rest of the round.
 */
static int
step_failed(batch_run *b, int k, const PGresult *res)
{
	const bstep *s = &b->steps[k];
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	int			locked = state && (strcmp(state, "55P03") == 0 ||
								   strcmp(state, "40P01") == 0);
	size_t		i;

	switch (s->kind)
	{
		case B_DEDUCT:
		case B_BOUND:
			b->aborted = 1;
			for (i = 0; b->savepoints && (int) i < k; i++)
				if (is_charge(&b->steps[i]))
					b->done[b->steps[i].charge] = HELD, b->held = 1;
			if (!first_charge(b, k) &&
				(locked || (!b->savepoints && failure_depends(b, k))))
				b->alone = s->charge;	/* again, once those before it commit */
			else
			{
				decide_error(b, s->charge, res);
				b->done[s->charge] = DONE;
			}
			return 1;
		case B_ACTOR:
			/* deterministic: each call of its own would meet it too */
			b->aborted = 1;
			for (i = b->next; i < b->n; i++)
				if (!b->done[i])
				{
					decide_error(b, i, res);
					b->done[i] = DONE;
				}
			b->stop = 1;
			return 1;
		case B_COMMIT_HELD:
			held_end(b, 1, res);
			b->aborted = 0;
			return 1;
		case B_COMMIT:
			round_lost(b, res);		/* rolled back: not applied */
			b->aborted = 0;
			return 1;
		default:
			return 0;
	}
}

/* An error that ends the session (FATAL, PANIC), or no connection left. */
static int
session_lost(pgm_conn *c, const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

	return PQstatus(c->pg) != CONNECTION_OK ||
		(sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0));
}

/*
 * Sends and reads one round.  PGM_OK, or the status the batch ends with
 * (*sent: whether the round's COMMIT was queued).
 */
static pgm_status
run_round(batch_run *b, int *sent)
{
	pgm_conn   *c = b->c;
	pgm_status	fatal = PGM_OK;
	int			k;

	*sent = 0;
	b->failed = -1;
	for (k = 0; k < b->nsteps; k++)
	{
		if (!send_step(b, &b->steps[k]))
			return PGM_CONNECTION_ERROR;
		if (k == b->commit)
			*sent = 1;
	}
	if (!PQpipelineSync(c->pg))
		return PGM_CONNECTION_ERROR;
	for (k = 0; k < b->nsteps; k++)
	{
		PGresult   *res = read_one(c);

		if (res == NULL)
			return PGM_CONNECTION_ERROR;
		if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
			;
		else if (result_ok(res))
			step_done(b, &b->steps[k], res);
		else if (session_lost(c, res))
		{
			set_result_error(c, res);
			PQclear(res);
			return PGM_CONNECTION_ERROR;
		}
		else
		{
			if (b->failed < 0)
				b->failed = k;
			if (fatal == PGM_OK && !step_failed(b, k, res))
				fatal = set_result_error(c, res);	/* the rest is skipped: read on */
		}
		PQclear(res);
	}
	if (!read_sync(c))
		return PGM_CONNECTION_ERROR;
	if (fatal != PGM_OK)
		return fatal == PGM_CONNECTION_ERROR ? PGM_SERVER_ERROR : fatal;
	while (b->next < b->n && b->done[b->next] == DONE)
		b->next++;
	return PGM_OK;
}

/*
 * The batch cannot go on: what each charge not done is.  Run in a
 * transaction whose COMMIT was sent and not answered: unknown; in one that
 * failed before its COMMIT or whose COMMIT was never sent, or never sent:
 * not applied.
 */
static void
batch_broke(batch_run *b, int sent)
{
	size_t		i;
	int			k;

	for (i = b->next; i < b->n && b->held; i++)
		if (b->done[i] == HELD)
		{
			decide(b, i, PGM_OUTCOME_UNKNOWN, "", NULL, NULL, NULL);
			b->done[i] = DONE;
		}
	for (k = 0; k < b->nsteps; k++)
	{
		const bstep *s = &b->steps[k];

		if (!is_charge(s) || b->done[s->charge])
			continue;
		decide(b, s->charge, sent && b->failed < 0 ? PGM_OUTCOME_UNKNOWN :
			   PGM_CONNECTION_ERROR, "", NULL, NULL, NULL);
		b->done[s->charge] = DONE;
	}
	for (i = b->next; i < b->n; i++)
		if (!b->done[i])
			decide(b, i, PGM_CONNECTION_ERROR, "", NULL, NULL, NULL);
}

/*
 * Is deduct_balance the extension's C function, whose writes are undone
 * with the transaction?  Anything else (PL/Proxy's function, or no answer)
 * is taken to commit each charge by itself.  Looked up once a connection.
 */
static int
batch_local(pgm_conn *c)
{
	PGresult   *res;

	if (c->batch_local == 0)
	{
		res = call(c, Q_DEDUCT_LANGUAGE, 0, NULL);
		c->batch_local = res && PQntuples(res) == 1 &&
			strcmp(val(res, 0, 0), "c") == 0 ? 1 : -1;
		PQclear(res);
		clear_error(c);
	}
	return c->batch_local > 0;
}

void
pgmi_batch_savepoints(pgm_conn *c, int on)
{
	if (c)
		c->batch_local = on ? -1 : 0;
}

pgm_status
pgm_deduct_batch(pgm_conn *c, const pgm_charge *charges, size_t n,
				 pgm_charge_result *results)
{
	char		name[32];
	batch_run  *b;
	pgm_status	st = PGM_OK;
	int			sent = 0;

	if (c == NULL)
		return PGM_CLIENT_ERROR;
	clear_error(c);
	free_batch_errors(c);
	if (n > 0 && (charges == NULL || results == NULL))
		return set_error(c, PGM_CLIENT_ERROR, "charges and results must not be NULL");
	if (pgm_conn_status(c) != PGM_OK)
		return set_result_error(c, NULL);
	if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		return set_error(c, PGM_CLIENT_ERROR,
						 "pgm_deduct_batch needs a connection outside a transaction block");
	if (n == 0)
		return PGM_OK;
	b = calloc(1, sizeof(*b));
	if (b == NULL || (b->done = calloc(n, 1)) == NULL)
	{
		free(b);
		return set_error(c, PGM_CLIENT_ERROR, "out of memory");
	}
	b->c = c;
	b->charges = charges;
	b->results = results;
	b->n = n;
	b->alone = n;
	b->failed = -1;
	b->commit = -1;
	b->savepoints = !batch_local(c);
	if (c->prepared)
	{
		if (ensure_prepared(c, Q_DEDUCT_RECORD, 5, name, sizeof(name)) != PGM_OK)
		{
			free(b->done);
			free(b);
			return c->status;
		}
		b->stmt = name;
	}
	if (!PQenterPipelineMode(c->pg))
	{
		free(b->done);
		free(b);
		return set_result_error(c, NULL);
	}
	while (st == PGM_OK && ((b->next < n && !b->stop) || b->aborted))
	{
		plan_round(b);
		if (b->nsteps > 0)
			st = run_round(b, &sent);
		else
			while (b->next < n && b->done[b->next] == DONE)
				b->next++;
	}
	if (st != PGM_OK)
	{
		batch_broke(b, sent);
		if (c->status == PGM_OK)
			set_result_error(c, NULL);
		/* a broken connection says so, whatever its last words (57P01, ...) */
		if (c->status == PGM_OK || st == PGM_CONNECTION_ERROR)
			c->status = st;
		st = c->status;
	}
	PQexitPipelineMode(c->pg);
	/* a server error that ends the batch leaves no transaction open */
	if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		PQclear(PQexec(c->pg, "ROLLBACK"));
	free(b->done);
	free(b);
	if (st == PGM_OK)
		clear_error(c);
	return st;
}

/* Appends one array element ("..." or NULL) to a growing buffer. */
static int
append_elem(char **buf, size_t *len, size_t *cap, const char *s, int first)
{
	size_t		need = (s ? 2 * strlen(s) + 3 : 5) + 3;
	char	   *p;

	if (*len + need > *cap)
	{
		size_t		ncap = (*cap + need) * 2;
		char	   *nb = realloc(*buf, ncap);

		if (nb == NULL)
			return 0;
		*buf = nb;
		*cap = ncap;
	}
	p = *buf + *len;
	if (!first)
		*p++ = ',';
	if (s == NULL)
	{
		memcpy(p, "NULL", 4);
		p += 4;
	}
	else
	{
		*p++ = '"';
		for (; *s; s++)
		{
			if (*s == '"' || *s == '\\')
				*p++ = '\\';
			*p++ = *s;
		}
		*p++ = '"';
	}
	*p = '\0';
	*len = (size_t) (p - *buf);
	return 1;
}

pgm_status
pgm_deduct_batch_array(pgm_conn *c, const pgm_charge *charges, size_t n,
					   pgm_charge_result *results)
{
	char	   *arr[5] = {NULL};
	size_t		len[5] = {0},
				cap[5] = {0};
	size_t		i;
	int			k,
				ok = 1;
	PGresult   *res = NULL;
	pgm_status	st = PGM_OK;

	if (c == NULL)
		return PGM_CLIENT_ERROR;
	free_batch_errors(c);
	if (n > 0 && (charges == NULL || results == NULL))
		return set_error(c, PGM_CLIENT_ERROR, "charges and results must not be NULL");
	for (k = 0; k < 5 && ok; k++)
	{
		cap[k] = 64;
		arr[k] = malloc(cap[k]);
		if (arr[k] == NULL)
			ok = 0;
		else
		{
			arr[k][0] = '{';
			arr[k][1] = '\0';
			len[k] = 1;
		}
	}
	for (i = 0; i < n && ok; i++)
	{
		char		tokens[I64BUF];
		const char *f[5] = {charges[i].user_id, charges[i].amount,
			charges[i].model_id, fmt_i64(tokens, charges[i].tokens_used),
		charges[i].idempotency_key};

		for (k = 0; k < 5 && ok; k++)
			ok = append_elem(&arr[k], &len[k], &cap[k], f[k], i == 0);
	}
	if (!ok)
	{
		st = set_error(c, PGM_CLIENT_ERROR, "out of memory");
		goto done;
	}
	/* append_elem leaves room for the closing brace */
	for (k = 0; k < 5; k++)
	{
		arr[k][len[k]++] = '}';
		arr[k][len[k]] = '\0';
	}
	res = call(c, Q_DEDUCT_BATCH, 5, (const char *const *) arr);
	if (res == NULL)
	{
		st = c->status;
		goto done;
	}
	for (i = 0; i < n; i++)
		memset(&results[i], 0, sizeof(results[i]));
	for (k = 0; k < PQntuples(res); k++)
	{
		int64_t		ord = to_i64(val(res, k, PQfnumber(res, "ordinal")));
		pgm_charge_result *r;

		if (ord < 1 || (size_t) ord > n)
			continue;
		r = &results[ord - 1];
		copy(r->sqlstate, sizeof(r->sqlstate), val(res, k, PQfnumber(res, "sqlstate")));
		r->status = pgm_status_from_sqlstate(r->sqlstate);
		r->entry_id = to_i64(val(res, k, PQfnumber(res, "entry_id")));
		copy(r->available_balance, sizeof(r->available_balance),
			 val(res, k, PQfnumber(res, "available_balance")));
	}
done:
	PQclear(res);
	for (k = 0; k < 5; k++)
		free(arr[k]);
	return st;
}

/* ------------------------------------------------------------------------
 * Vault
 * ------------------------------------------------------------------------ */

static void
take_pk(const char *v, void *arg)
{
	pgm_conn   *c = arg;
	size_t		binlen = 0;

	c->have_pk = 0;
	if (v && v[0] == '\\' && v[1] == 'x' &&
		sodium_hex2bin(c->pk, sizeof(c->pk), v + 2, strlen(v + 2), NULL,
					   &binlen, NULL) == 0 && binlen == sizeof(c->pk))
		c->have_pk = 1;
}

static pgm_status
fetch_pk(pgm_conn *c)
{
	pgm_status	st = scalar_call(c, Q_PUBLIC_KEY, 0, NULL, take_pk, c);

	if (st == PGM_OK && !c->have_pk)
		return set_error(c, PGM_SERVER_ERROR, "vault_public_key() returned no key");
	return st;
}

pgm_status
pgm_vault_public_key(pgm_conn *c, unsigned char pk[PGM_PUBLICKEY_BYTES])
{
	pgm_status	st = PGM_OK;

	if (c == NULL)
		return PGM_CLIENT_ERROR;
	clear_error(c);
	if (!c->have_pk)
		st = fetch_pk(c);
	if (st == PGM_OK && pk)
		memcpy(pk, c->pk, PGM_PUBLICKEY_BYTES);
	return st;
}

pgm_status
pgm_put_provider_key_sealed(pgm_conn *c, const char *user_id,
							const char *provider, const unsigned char *sealed,
							size_t sealed_len, const char *label,
							char key_id[PGM_UUID_LEN])
{
	const char *vals[4] = {user_id, provider, (const char *) sealed, label};
	int			lens[4] = {0, 0, (int) sealed_len, 0};
	int			fmts[4] = {0, 0, 1, 0};

	return scalar_into(c, run(c, Q_PUT_SEALED, NULL, 4, vals, lens, fmts), take_uuid,
					   key_id, PGM_UUID_LEN);
}

pgm_status
pgm_put_provider_key(pgm_conn *c, const char *user_id, const char *provider,
					 const char *secret, const char *label,
					 char key_id[PGM_UUID_LEN])
{
	size_t		len;
	unsigned char *sealed;
	pgm_status	st;
	int			attempt;

	if (c == NULL)
		return PGM_CLIENT_ERROR;
	clear_error(c);
	if (secret == NULL)
		return set_error(c, PGM_NULL_VALUE, "secret must not be null");
	len = strlen(secret);
	sealed = malloc(len + crypto_box_SEALBYTES);
	if (sealed == NULL)
		return set_error(c, PGM_CLIENT_ERROR, "out of memory");
	/* a second attempt with a fresh public key: the master key may have
	 * changed since this connection fetched it */
	for (attempt = 0; attempt < 2; attempt++)
	{
		if (attempt == 1)
			c->have_pk = 0;
		if (!c->have_pk && (st = fetch_pk(c)) != PGM_OK)
			break;
		if (crypto_box_seal(sealed, (const unsigned char *) secret, len, c->pk) != 0)
		{
			st = set_error(c, PGM_CLIENT_ERROR, "crypto_box_seal failed");
			break;
		}
		st = pgm_put_provider_key_sealed(c, user_id, provider, sealed,
										 len + crypto_box_SEALBYTES, label, key_id);
		if (st != PGM_DECRYPTION_FAILED)
			break;
	}
	free(sealed);
	return st;
}

/* The secret of a one-column result, or the failure. */
static pgm_status
fill_secret(pgm_conn *c, PGresult *res, void *arg)
{
	char	  **s = arg;

	if (!PQgetisnull(res, 0, 0))
		*s = take_secret(res, 0, 0);
	if (*s == NULL)
		return set_error(c, PGM_CLIENT_ERROR, "out of memory or no secret");
	return PGM_OK;
}

/* The secret of res (NULL: the call failed) into *secret (may be NULL). */
static pgm_status
secret_of(pgm_conn *c, PGresult *res, char **secret)
{
	char	   *s = NULL;
	pgm_status	st;

	if (secret)
		*secret = NULL;
	st = take_row(c, res, fill_secret, &s);
	return st == PGM_OK ? give_secret(s, secret) : st;
}

pgm_status
pgmi_exec_secret(pgm_conn *c, const char *sql, int n, const char *const *vals,
				 char **secret)
{
	if (secret)
		*secret = NULL;
	if (c == NULL)
		return PGM_CLIENT_ERROR;
	return secret_of(c, run(c, Q_COUNT, sql, n, vals, NULL, NULL), secret);
}

pgm_status
pgm_get_provider_key(pgm_conn *c, const char *user_id, const char *provider,
					 char **secret)
{
	const char *vals[2] = {user_id, provider};

	return secret_of(c, call(c, Q_GET_PROVIDER_KEY, 2, vals), secret);
}

ROWS_OF(pgm_list_provider_keys, user_id, Q_LIST_PROVIDER_KEYS)

/* A revoke_* call: *revoked says whether this call revoked the key (0: it was already). */
static pgm_status
revoke_call(pgm_conn *c, query_id q, const char *user_id, const char *key_id,
			int *revoked)
{
	const char *vals[2] = {user_id, key_id};

	return scalar_into(c, call(c, q, 2, vals), take_bool, revoked, sizeof(int));
}

pgm_status
pgm_revoke_provider_key(pgm_conn *c, const char *user_id, const char *key_id,
						int *revoked)
{
	return revoke_call(c, Q_REVOKE_PROVIDER_KEY, user_id, key_id, revoked);
}

pgm_status
pgm_rotate_master_key(pgm_conn *c, int batch_size, int64_t *rotated)
{
	char		bs[I64BUF];
	const char *vals[1] = {batch_size > 0 ? fmt_i64(bs, batch_size) : NULL};

	return scalar_into(c, call(c, Q_ROTATE, 1, vals), take_i64, rotated, sizeof(int64_t));
}

/* ------------------------------------------------------------------------
 * Platform API keys
 * ------------------------------------------------------------------------ */

/* What create_api_key answers: its key_id (into a buffer that may be NULL) and the raw key. */
typedef struct
{
	char	   *key_id;
	char	   *key;
} new_api_key;

static pgm_status
fill_new_api_key(pgm_conn *c, PGresult *res, void *arg)
{
	new_api_key *k = arg;

	if (k->key_id)
		copy(k->key_id, PGM_UUID_LEN, val(res, 0, PQfnumber(res, "key_id")));
	k->key = take_secret(res, 0, PQfnumber(res, "api_key"));
	if (k->key == NULL)
		return set_error(c, PGM_CLIENT_ERROR, "out of memory");
	return PGM_OK;
}

pgm_status
pgm_create_api_key(pgm_conn *c, const char *user_id, const char *name,
				   const pgm_api_key_options *o, char key_id[PGM_UUID_LEN],
				   char **api_key)
{
	char	   *scopes = NULL;
	const char *vals[8];
	PGresult   *res;
	new_api_key k = {key_id, NULL};
	pgm_status	st;

	if (api_key)
		*api_key = NULL;
	if (key_id)
		key_id[0] = '\0';
	if (c == NULL)
		return PGM_CLIENT_ERROR;
	if (o && o->scopes && (scopes = array_literal(o->scopes)) == NULL)
		return set_error(c, PGM_CLIENT_ERROR, "out of memory");
	vals[0] = user_id;
	vals[1] = name;
	vals[2] = scopes;
	vals[3] = o ? o->rate_limit_tier : NULL;
	vals[4] = o ? o->expires_at : NULL;
	vals[5] = o ? o->environment : NULL;
	vals[6] = o ? o->spend_limit : NULL;
	vals[7] = o ? o->spend_period : NULL;
	res = call(c, Q_CREATE_API_KEY, 8, vals);
	free(scopes);
	st = take_row(c, res, fill_new_api_key, &k);
	return st == PGM_OK ? give_secret(k.key, api_key) : st;
}

pgm_status
pgm_verify_api_key(pgm_conn *c, const char *api_key, int *valid,
				   pgm_api_key_check *out)
{
	char		prefix[KEY_PREFIX_LEN + 1];
	PGresult   *res;

	if (valid)
		*valid = 0;
	if (out)
		memset(out, 0, sizeof(*out));
	if (c == NULL)
		return PGM_CLIENT_ERROR;
	if (api_key && !c->plain_secrets && !key_prefix(api_key, prefix))
	{
		clear_error(c);
		return PGM_OK;			/* not a key: it does not verify */
	}
	res = api_key_call(c, Q_VERIFY_API_KEY, Q_VERIFY_API_KEY_SEALED, api_key, 0, NULL);
	if (res == NULL)
		return c->status;
	if (PQntuples(res) > 0)
	{
		if (valid)
			*valid = 1;
		if (out)
		{
			copy(out->key_id, sizeof(out->key_id), val(res, 0, PQfnumber(res, "key_id")));
			copy(out->user_id, sizeof(out->user_id), val(res, 0, PQfnumber(res, "user_id")));
			copy(out->scopes, sizeof(out->scopes), val(res, 0, PQfnumber(res, "scopes")));
			copy(out->rate_limit_tier, sizeof(out->rate_limit_tier),
				 val(res, 0, PQfnumber(res, "rate_limit_tier")));
		}
	}
	PQclear(res);
	return PGM_OK;
}

pgm_status
pgm_charge_api_key(pgm_conn *c, const char *api_key, const char *amount,
				   const char *model_id, int64_t tokens_used,
				   const char *idempotency_key, pgm_ledger_result *out)
{
	char		tokens[I64BUF];
	const char *args[4] = {amount, model_id, fmt_i64(tokens, tokens_used), idempotency_key};

	if (c == NULL)
		return PGM_CLIENT_ERROR;
	return take_row(c, api_key_call(c, Q_CHARGE_API_KEY, Q_CHARGE_API_KEY_SEALED, api_key,
									4, args),
					fill_ledger_result, out);
}

pgm_status
pgm_reserve_api_key(pgm_conn *c, const char *api_key, const char *amount,
					const char *ttl, const char *idempotency_key,
					int64_t *reservation_id)
{
	const char *args[3] = {amount, ttl, idempotency_key};

	if (c == NULL)
		return PGM_CLIENT_ERROR;
	return scalar_into(c, api_key_call(c, Q_RESERVE_API_KEY, Q_RESERVE_API_KEY_SEALED, api_key,
									   3, args),
					   take_i64, reservation_id, sizeof(int64_t));
}

pgm_status
pgm_revoke_api_key(pgm_conn *c, const char *user_id, const char *key_id,
				   int *revoked)
{
	return revoke_call(c, Q_REVOKE_API_KEY, user_id, key_id, revoked);
}

ROWS_OF(pgm_list_api_keys, user_id, Q_LIST_API_KEYS)

/* ------------------------------------------------------------------------
 * Tiers and rate limits
 * ------------------------------------------------------------------------ */

static pgm_status
fill_rate_limit(pgm_conn *c UNUSED, PGresult *res, void *out)
{
	pgm_rate_limit *r = out;
	const char *remaining = val(res, 0, PQfnumber(res, "remaining_requests"));

	r->allowed = to_bool(val(res, 0, PQfnumber(res, "allowed")));
	r->retry_after_ms = to_i64(val(res, 0, PQfnumber(res, "retry_after_ms")));
	r->remaining_requests = remaining ? to_i64(remaining) : PGM_UNLIMITED;
	return PGM_OK;
}

pgm_status
pgm_check_rate_limit(pgm_conn *c, const char *api_key, pgm_rate_limit *out)
{
	pgm_rate_limit r = {0, 0, 0};
	pgm_status	st;

	if (out)
		*out = r;
	if (c == NULL)
		return PGM_CLIENT_ERROR;
	st = take_row(c, api_key_call(c, Q_CHECK_RATE_LIMIT, Q_CHECK_RATE_LIMIT_SEALED,
								  api_key, 0, NULL),
				  fill_rate_limit, &r);
	if (st == PGM_OK && out)
		*out = r;
	return st;
}

pgm_status
pgm_set_tier(pgm_conn *c, const char *name, int64_t requests_per_minute,
			 int64_t tokens_per_minute, int64_t burst)
{
	char		rpm[I64BUF];
	char		tpm[I64BUF];
	char		b[I64BUF];
	const char *vals[4] = {
		name,
		requests_per_minute == PGM_UNLIMITED ? NULL : fmt_i64(rpm, requests_per_minute),
		tokens_per_minute == PGM_UNLIMITED ? NULL : fmt_i64(tpm, tokens_per_minute),
		fmt_i64(b, burst)
	};

	if (c == NULL)
		return PGM_CLIENT_ERROR;
	return take_row(c, call(c, Q_SET_TIER, 4, vals), NULL, NULL);
}

pgm_status
pgm_list_tiers(pgm_conn *c, pgm_result **out)
{
	if (c == NULL)
		return PGM_CLIENT_ERROR;
	return rows_call(c, Q_LIST_TIERS, 0, NULL, out);
}

/* ------------------------------------------------------------------------
 * Audit trail
 * ------------------------------------------------------------------------ */

pgm_status
pgm_seal_audit(pgm_conn *c, int64_t *sealed)
{
	return scalar_into(c, call(c, Q_SEAL_AUDIT, 0, NULL), take_i64, sealed, sizeof(int64_t));
}

/* Where verify_audit's outcome goes: first_bad_id and checked, either may be NULL. */
typedef struct
{
	int64_t    *first_bad_id;
	int64_t    *checked;
} audit_outcome;

static pgm_status
fill_audit_outcome(pgm_conn *c UNUSED, PGresult *res, void *arg)
{
	audit_outcome *o = arg;

	if (o->first_bad_id)
		*o->first_bad_id = to_i64(val(res, 0, PQfnumber(res, "first_bad_id")));
	if (o->checked)
		*o->checked = to_i64(val(res, 0, PQfnumber(res, "checked")));
	return PGM_OK;
}

static void
clear_audit_outcome(int64_t *first_bad_id, int64_t *checked)
{
	if (first_bad_id)
		*first_bad_id = 0;
	if (checked)
		*checked = 0;
}

/* Runs a verify_audit query; both outputs 0 unless it answers. */
static pgm_status
audit_call(pgm_conn *c, query_id q, int n, const char *const *vals,
		   int64_t *first_bad_id, int64_t *checked)
{
	audit_outcome o = {first_bad_id, checked};

	clear_audit_outcome(first_bad_id, checked);
	return take_row(c, call(c, q, n, vals), fill_audit_outcome, &o);
}

pgm_status
pgm_verify_audit(pgm_conn *c, int strict, int64_t *first_bad_id, int64_t *checked)
{
	const char *vals[1] = {strict ? "true" : "false"};

	return audit_call(c, Q_VERIFY_AUDIT, 1, vals, first_bad_id, checked);
}

/* Hex digits to bytes; 0 unless s is exactly 2 * len hex digits. */
static int
from_hex(const char *s, unsigned char *out, size_t len)
{
	size_t		i;

	if (s == NULL || strlen(s) != 2 * len)
		return 0;
	for (i = 0; i < 2 * len; i++)
	{
		int			c = s[i];
		int			v = (c >= '0' && c <= '9') ? c - '0' :
			(c >= 'a' && c <= 'f') ? c - 'a' + 10 :
			(c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;

		if (v < 0)
			return 0;
		if (i % 2 == 0)
			out[i / 2] = (unsigned char) (v << 4);
		else
			out[i / 2] |= (unsigned char) v;
	}
	return 1;
}

static pgm_status
fill_audit_head(pgm_conn *c, PGresult *res, void *arg)
{
	pgm_audit_head_info *out = arg;
	int			i;

	out->last_id = to_i64(val(res, 0, 0));
	if (!from_hex(val(res, 0, 1), out->chain_hash, PGM_AUDIT_HASH_LEN))
		return set_error(c, PGM_SERVER_ERROR, "audit_head() returned no 32-byte chain hash");
	copy(out->sealed_at, sizeof(out->sealed_at), val(res, 0, 2));
	for (i = 0; i < 8; i++)
		out->anchor[i] = (unsigned char) ((uint64_t) out->last_id >> (56 - 8 * i));
	memcpy(out->anchor + 8, out->chain_hash, PGM_AUDIT_HASH_LEN);
	return PGM_OK;
}

pgm_status
pgm_audit_head(pgm_conn *c, pgm_audit_head_info *out)
{
	if (out == NULL)
		return c ? set_error(c, PGM_CLIENT_ERROR, "out must not be NULL") : PGM_CLIENT_ERROR;
	memset(out, 0, sizeof(*out));
	return take_row(c, call(c, Q_AUDIT_HEAD, 0, NULL), fill_audit_head, out);
}

pgm_status
pgm_verify_audit_anchor(pgm_conn *c, int strict, const unsigned char *anchor,
						size_t anchor_len, int64_t *first_bad_id, int64_t *checked)
{
	char		hex[2 * PGM_AUDIT_ANCHOR_LEN + 1];
	const char *vals[2] = {strict ? "true" : "false", NULL};
	size_t		i;

	clear_audit_outcome(first_bad_id, checked);
	if (anchor != NULL)
	{
		if (anchor_len != PGM_AUDIT_ANCHOR_LEN)
			return c ? set_error(c, PGM_INVALID_PARAMETER,
								 "an anchor is %d bytes, not %zu",
								 PGM_AUDIT_ANCHOR_LEN, anchor_len) : PGM_CLIENT_ERROR;
		for (i = 0; i < PGM_AUDIT_ANCHOR_LEN; i++)
			snprintf(hex + 2 * i, 3, "%02x", anchor[i]);
		vals[1] = hex;
	}
	return audit_call(c, Q_VERIFY_AUDIT_ANCHOR, 2, vals, first_bad_id, checked);
}

/* ------------------------------------------------------------------------
 * Chat and metering
 * ------------------------------------------------------------------------ */

pgm_status
pgm_create_chat_session_with_id(pgm_conn *c, const char *user_id,
								const char *model_id, const char *title,
								const char *agent_id, const char *id,
								char session_id[PGM_UUID_LEN])
{
	const char *vals[5] = {user_id, model_id, title, agent_id, id};

	return scalar_into(c, call(c, Q_CREATE_CHAT_SESSION, 5, vals), take_uuid, session_id,
					   PGM_UUID_LEN);
}

pgm_status
pgm_create_chat_session(pgm_conn *c, const char *user_id, const char *model_id,
						const char *title, const char *agent_id,
						char session_id[PGM_UUID_LEN])
{
	return pgm_create_chat_session_with_id(c, user_id, model_id, title,
										   agent_id, NULL, session_id);
}

pgm_status
pgm_save_chat_message_ex(pgm_conn *c, const char *user_id,
						 const char *session_id, const char *role,
						 const char *content, int tokens, const char *cost,
						 const char *tool_calls, const char *message_uuid,
						 const char *model_id, int64_t *message_id)
{
	char		tok[I64BUF];
	const char *vals[9] = {user_id, session_id, role, content,
		fmt_i64(tok, tokens), cost, tool_calls, message_uuid, model_id};

	return scalar_into(c, call(c, Q_SAVE_CHAT_MESSAGE, 9, vals), take_i64, message_id,
					   sizeof(int64_t));
}

pgm_status
pgm_save_chat_message(pgm_conn *c, const char *user_id, const char *session_id,
					  const char *role, const char *content, int tokens,
					  const char *cost, const char *tool_calls,
					  int64_t *message_id)
{
	return pgm_save_chat_message_ex(c, user_id, session_id, role, content,
									tokens, cost, tool_calls, NULL, NULL,
									message_id);
}

pgm_status
pgm_record_completion_ex(pgm_conn *c, const char *user_id,
						 const char *session_id, const char *content,
						 int tokens, const char *cost,
						 const char *idempotency_key, const char *message_uuid,
						 const char *model_id, pgm_ledger_result *out)
{
	char		tok[I64BUF];
	const char *vals[8] = {user_id, session_id, content, fmt_i64(tok, tokens),
		cost, idempotency_key, message_uuid, model_id};

	return ledger_call(c, Q_RECORD_COMPLETION, 8, vals, out);
}

pgm_status
pgm_record_completion(pgm_conn *c, const char *user_id, const char *session_id,
					  const char *content, int tokens, const char *cost,
					  const char *idempotency_key, pgm_ledger_result *out)
{
	return pgm_record_completion_ex(c, user_id, session_id, content, tokens,
									cost, idempotency_key, NULL, NULL, out);
}

pgm_status
pgm_get_chat_history(pgm_conn *c, const char *user_id, const char *session_id,
					 int max_rows, int64_t before_id, int oldest_first,
					 pgm_result **out)
{
	char		rows[I64BUF],
				before[I64BUF];
	const char *vals[5] = {user_id, session_id, fmt_i64(rows, max_rows),
		before_id > 0 ? fmt_i64(before, before_id) : NULL,
	oldest_first ? "true" : "false"};

	return rows_call(c, Q_GET_CHAT_HISTORY, 5, vals, out);
}

pgm_status
pgm_end_chat_session(pgm_conn *c, const char *user_id, const char *session_id,
					 const char *status, const char *reason)
{
	const char *vals[4] = {user_id, session_id, status, reason};

	return scalar_call(c, Q_END_CHAT_SESSION, 4, vals, NULL, NULL);
}

/* merge: the keys of context go into the session's (else it is replaced). */
static pgm_status
chat_context_call(pgm_conn *c, const char *user_id, const char *session_id,
				  const char *context, int merge)
{
	const char *vals[4] = {user_id, session_id, context,
	merge ? "true" : "false"};

	return scalar_call(c, Q_UPDATE_CHAT_CONTEXT, 4, vals, NULL, NULL);
}

pgm_status
pgm_update_chat_context(pgm_conn *c, const char *user_id, const char *session_id,
						const char *context)
{
	return chat_context_call(c, user_id, session_id, context, 1);
}

pgm_status
pgm_replace_chat_context(pgm_conn *c, const char *user_id,
						 const char *session_id, const char *context)
{
	return chat_context_call(c, user_id, session_id, context, 0);
}

pgm_status
pgm_delete_chat_session(pgm_conn *c, const char *user_id, const char *session_id)
{
	const char *vals[2] = {user_id, session_id};

	return scalar_call(c, Q_DELETE_CHAT_SESSION, 2, vals, NULL, NULL);
}

pgm_status
pgm_list_chat_sessions_page(pgm_conn *c, const char *user_id,
							const char *status, int max_rows,
							const char *before, const char *before_session_id,
							pgm_result **out)
{
	char		rows[I64BUF];
	const char *vals[5] = {user_id, status, fmt_i64(rows, max_rows), before,
	before_session_id};

	return rows_call(c, Q_LIST_CHAT_SESSIONS, 5, vals, out);
}

pgm_status
pgm_list_chat_sessions(pgm_conn *c, const char *user_id, pgm_result **out)
{
	return pgm_list_chat_sessions_page(c, user_id, NULL, 1000, NULL, NULL, out);
}

pgm_status
pgm_chat_session_owner(pgm_conn *c, const char *session_id,
					   char owner[PGM_UUID_LEN])
{
	const char *vals[1] = {session_id};

	owner[0] = '\0';
	return scalar_into(c, call(c, Q_CHAT_SESSION_OWNER, 1, vals), take_uuid, owner,
					   PGM_UUID_LEN);
}

pgm_status
pgm_rate_model(pgm_conn *c, const char *user_id, const char *model_id,
			   int stars, const char *review)
{
	char		s[I64BUF];
	const char *vals[4] = {user_id, model_id, fmt_i64(s, stars), review};

	return scalar_call(c, Q_RATE_MODEL, 4, vals, NULL, NULL);
}

ROWS_OF(pgm_model_ratings, model_id, Q_MODEL_RATINGS)

pgm_status
pgm_set_preference(pgm_conn *c, const char *user_id, const char *key,
				   const char *value)
{
	const char *vals[3] = {user_id, key, value};

	return scalar_call(c, Q_SET_PREFERENCE, 3, vals, NULL, NULL);
}

ROWS_OF(pgm_get_preferences, user_id, Q_GET_PREFERENCES)

pgm_status
pgm_delete_preference(pgm_conn *c, const char *user_id, const char *key,
					  int *deleted)
{
	const char *vals[2] = {user_id, key};

	return scalar_into(c, call(c, Q_DELETE_PREFERENCE, 2, vals), take_bool, deleted,
					   sizeof(int));
}

/* ------------------------------------------------------------------------
 * Projects, templates and change requests
 * ------------------------------------------------------------------------ */

/*
 * A call that answers a uuid and takes some NULL-terminated lists: list i
 * goes into vals[slots[i]] as an array literal (a NULL list stays NULL).
 * id (may be NULL) receives the uuid, or "" when the call fails.
 */
static pgm_status
uuid_call_lists(pgm_conn *c, query_id q, int n, const char **vals,
				const int *slots, const char *const *const *lists, int nlists,
				char id[PGM_UUID_LEN])
{
	char	   *arrays[4] = {NULL, NULL, NULL, NULL};
	char		tmp[PGM_UUID_LEN] = "";
	pgm_status	st = PGM_OK;
	int			i;

	if (id)
		id[0] = '\0';
	if (c == NULL)
		return PGM_CLIENT_ERROR;
	for (i = 0; i < nlists && st == PGM_OK; i++)
	{
		if (lists[i] && (arrays[i] = array_literal(lists[i])) == NULL)
			st = set_error(c, PGM_CLIENT_ERROR, "out of memory");
		vals[slots[i]] = arrays[i];
	}
	if (st == PGM_OK)
		st = scalar_call(c, q, n, vals, take_uuid, tmp);
	for (i = 0; i < nlists; i++)
		free(arrays[i]);
	if (id)
		copy(id, PGM_UUID_LEN, tmp);
	return st;
}

pgm_status
pgm_save_project(pgm_conn *c, const char *user_id, const char *name,
				 const char *type, const pgm_project_options *o,
				 char project_id[PGM_UUID_LEN])
{
	const char *vals[11] = {user_id, name, type,
		o ? o->codebase : NULL, NULL, o ? o->environment : NULL,
		o ? o->deployment : NULL, o ? o->id : NULL,
		o ? o->test_coverage : NULL, o ? o->scores : NULL,
	o ? o->last_deployed_at : NULL};
	const int	slots[1] = {4};
	const char *const *lists[1] = {o ? o->dependencies : NULL};

	return uuid_call_lists(c, Q_SAVE_PROJECT, 11, vals, slots, lists, 1, project_id);
}

ROWS_OF2(pgm_get_project, user_id, project_id, Q_GET_PROJECT)

pgm_status
pgm_list_projects(pgm_conn *c, const char *user_id, const char *status,
				  int max_rows, const char *before, pgm_result **out)
{
	char		n[I64BUF];
	const char *vals[4] = {user_id, status, fmt_i64(n, max_rows), before};

	return rows_call(c, Q_LIST_PROJECTS, 4, vals, out);
}

pgm_status
pgm_archive_project(pgm_conn *c, const char *user_id, const char *project_id)
{
	const char *vals[2] = {user_id, project_id};

	return scalar_call(c, Q_ARCHIVE_PROJECT, 2, vals, NULL, NULL);
}

pgm_status
pgm_save_template(pgm_conn *c, const char *name, const char *category,
				  const char *files, const pgm_template_options *o,
				  char template_id[PGM_UUID_LEN])
{
	const char *vals[10] = {name, category, files, o ? o->description : NULL,
		NULL, NULL, o ? o->optional_vars : NULL, NULL,
	o ? o->setup_minutes : NULL, o ? o->complexity : NULL};
	const int	slots[3] = {4, 5, 7};
	const char *const *lists[3] = {o ? o->required_vars : NULL,
	o ? o->tags : NULL, o ? o->tech_stack : NULL};

	return uuid_call_lists(c, Q_SAVE_TEMPLATE, 10, vals, slots, lists, 3, template_id);
}

ROWS_OF(pgm_get_template, name, Q_GET_TEMPLATE)

ROWS_OF(pgm_list_templates, category, Q_LIST_TEMPLATES)

pgm_status
pgm_request_modification(pgm_conn *c, const char *user_id,
						 const char *project_id, const char *request,
						 const char *impact, const char *const *affected_files,
						 char modification_id[PGM_UUID_LEN])
{
	const char *vals[5] = {user_id, project_id, request, impact, NULL};
	const int	slots[1] = {4};
	const char *const *lists[1] = {affected_files};

	return uuid_call_lists(c, Q_REQUEST_MODIFICATION, 5, vals, slots, lists, 1,
						   modification_id);
}

pgm_status
pgm_set_modification_status(pgm_conn *c, const char *user_id,
							const char *modification_id, const char *status,
							const char *results)
{
	const char *vals[4] = {user_id, modification_id, status, results};

	return scalar_call(c, Q_SET_MODIFICATION_STATUS, 4, vals,
					   NULL, NULL);
}

pgm_status
pgm_list_modifications(pgm_conn *c, const char *user_id,
					   const char *project_id, pgm_result **out)
{
	const char *vals[2] = {user_id, project_id};

	return rows_call(c, Q_LIST_MODIFICATIONS, 2, vals, out);
}

/* ------------------------------------------------------------------------
 * Imports and exports (pgmarket import and export)
 * ------------------------------------------------------------------------ */

pgm_status
pgm_import_user(pgm_conn *c, const char *id, const char *email,
				const char *username, const char *password_hash,
				const char *created_at)
{
	const char *vals[5] = {id, email, username, password_hash, created_at};

	return scalar_call(c, Q_IMPORT_USER, 5, vals, NULL, NULL);
}

ROWS_OF2(pgm_import_batch, section, records, Q_IMPORT_BATCH)

pgm_status
pgm_export_accounts(pgm_conn *c, pgm_result **out)
{
	return rows_call(c, Q_EXPORT_ACCOUNTS, 0, NULL, out);
}

pgm_status
pgm_begin(pgm_conn *c)
{
	/* never prepared: transaction control cannot be */
	return give_result(c, run(c, Q_COUNT, "BEGIN", 0, NULL, NULL, NULL), NULL);
}

pgm_status
pgm_commit(pgm_conn *c)
{
	/* never prepared: transaction control cannot be */
	return give_result(c, run(c, Q_COUNT, "COMMIT", 0, NULL, NULL, NULL), NULL);
}

pgm_status
pgm_rollback(pgm_conn *c)
{
	/* never prepared: transaction control cannot be */
	return give_result(c, run(c, Q_COUNT, "ROLLBACK", 0, NULL, NULL, NULL), NULL);
}
