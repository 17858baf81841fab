/*
 * cli_export.c: pgmarket export [FILE] [--with-secrets]: writes the
 * document that import reads, section by section: users, balance_tracker,
 * transactions, chat_history (when the server has chat), templates and
 * projects (when it has the store), api_keys (with --with-secrets only).
 */
#include "cli.h"
#include "json.h"
#include "store_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* One run of the export: where it writes, the users it writes of. */
typedef struct
{
	FILE	   *f;
	pgm_result *users;			/* export_accounts() */
	progress	p;
	int			first;			/* no element of the section written yet */
	int			with_secrets;
} exporter;

/*
 * A timestamptz as the server writes it under TimeZone UTC and DateStyle
 * ISO ("2026-01-02 03:04:05.12+00", fraction optional) in the export's one
 * format, ISO 8601 in UTC with microseconds ("2026-01-02T03:04:05.120000Z");
 * infinity or -infinity (which no import takes: a time a record had is
 * finite) as null, counted in nonfinite_times; anything else as it is.
 */
static long nonfinite_times;

static void
write_time(FILE *f, const char *v)
{
	size_t		n = v ? strlen(v) : 0,
				frac = 0;
	char		out[40];

	if (v && (strcmp(v, "infinity") == 0 || strcmp(v, "-infinity") == 0))
	{
		nonfinite_times++;
		fputs("null", f);
		return;
	}
	if (n < 22 || n > 32 || v[10] != ' ' || strcmp(v + n - 3, "+00") != 0)
	{
		if (v)
			json_write_string(f, v);
		else
			fputs("null", f);
		return;
	}
	memcpy(out, v, 19);
	out[10] = 'T';
	out[19] = '.';
	if (v[19] == '.')
		for (frac = 0; frac < 6 && v[20 + frac] >= '0' && v[20 + frac] <= '9'; frac++)
			out[20 + frac] = v[20 + frac];
	for (; frac < 6; frac++)
		out[20 + frac] = '0';
	out[26] = 'Z';
	out[27] = '\0';
	fprintf(f, "\"%s\"", out);
}

/* The element separator of a section: "" before the first, "," after. */
static const char *
sep(exporter *ex)
{
	const char *s = ex->first ? "" : ",";

	ex->first = 0;
	return s;
}

static const char *
user_id(const exporter *ex, int i)
{
	return pgm_result_value(ex->users, i, "id");
}

static void
write_users(exporter *ex)
{
	int			i;

	fputs("{\n  \"users\": {", ex->f);
	for (i = 0; i < pgm_result_rows(ex->users); i++)
	{
		fprintf(ex->f, "%s\n    \"%s\": {\"email\": ", i ? "," : "", user_id(ex, i));
		json_write_string(ex->f, pgm_result_value(ex->users, i, "email"));
		fputs(", \"username\": ", ex->f);
		json_write_string(ex->f, pgm_result_value(ex->users, i, "username"));
		if (ex->with_secrets && pgm_result_value(ex->users, i, "password_hash"))
		{
			fputs(", \"password_hash\": ", ex->f);
			json_write_string(ex->f, pgm_result_value(ex->users, i, "password_hash"));
		}
		fputs(", \"created_at\": ", ex->f);
		write_time(ex->f, pgm_result_value(ex->users, i, "created_at"));
		fputc('}', ex->f);
	}
}

static int
write_balances(exporter *ex)
{
	int			i;

	fputs("\n  },\n  \"balance_tracker\": {", ex->f);
	for (i = 0; i < pgm_result_rows(ex->users); i++)
	{
		pgm_balance b;

		if (pgm_get_balance(conn, user_id(ex, i), &b) != PGM_OK)
			return failed("export: get_balance");
		fprintf(ex->f, "%s\n    \"%s\": {\"total\": %s, \"spent\": %s}", i ? "," : "",
				b.user_id, b.total_balance, b.spent_balance);
		progress_step(&ex->p, 1);
	}
	return 0;
}

/* What one user's transactions need: the entries refunded, found first. */
typedef struct
{
	exporter   *ex;
	const char *uid;
	int64_t    *refunded;
	size_t		nref,
				capref;
} user_entries;

typedef void (*entry_fn) (user_entries *u, const pgm_ledger_entry *e);

/* fn for each of the user's ledger entries, newest first; 0, or 1 reported. */
static int
each_entry(user_entries *u, entry_fn fn)
{
	int64_t		before = 0;

	for (;;)
	{
		pgm_result *r = NULL;
		pgm_ledger_entry e;
		int			n,
					j;

		if (pgm_ledger_entries(conn, u->uid, 1000, before, &r) != PGM_OK)
			return failed("export: ledger_entries");
		n = pgm_result_rows(r);
		for (j = 0; j < n; j++)
		{
			pgm_result_ledger_entry(r, j, &e);
			before = e.entry_id;
			fn(u, &e);
		}
		pgm_result_free(r);
		if (n < 1000)
			return 0;
	}
}

static void
note_refund(user_entries *u, const pgm_ledger_entry *e)
{
	if (!e->refund_of)
		return;
	if (u->nref == u->capref)
	{
		u->capref = u->capref ? u->capref * 2 : 16;
		u->refunded = realloc(u->refunded, u->capref * sizeof(int64_t));
		if (u->refunded == NULL)
			abort();
	}
	u->refunded[u->nref++] = e->refund_of;
}

/* An entry as a transaction: refunds, and charges with refunds, left out. */
static void
write_entry(user_entries *u, const pgm_ledger_entry *e)
{
	FILE	   *f = u->ex->f;
	size_t		k;
	int			skip = 0;

	if (strcmp(e->kind, "refund") == 0)
		return;
	for (k = 0; k < u->nref; k++)
		skip |= u->refunded[k] == e->entry_id;
	if (skip)
		return;
	fprintf(f, "%s\n    {\"id\": ", sep(u->ex));
	if (e->idempotency_key)
		json_write_string(f, e->idempotency_key);
	else
		fprintf(f, "\"pgmarket-entry-%lld\"", (long long) e->entry_id);
	fprintf(f, ", \"user_id\": \"%s\", \"type\": \"%s\", \"amount\": %s, "
			"\"model_id\": ", u->uid, strcmp(e->kind, "charge") == 0 ? "charge" : "deposit",
			e->amount);
	if (e->model_id)
		json_write_string(f, e->model_id);
	else
		fputs("null", f);
	fprintf(f, ", \"tokens\": %lld, \"timestamp\": ", (long long) e->tokens_used);
	write_time(f, e->created_at);
	fputc('}', f);
}

static int
write_transactions(exporter *ex)
{
	int			i,
				rc;

	fputs("\n  },\n  \"transactions\": [", ex->f);
	ex->first = 1;
	for (i = 0; i < pgm_result_rows(ex->users); i++)
	{
		user_entries u = {ex, user_id(ex, i), NULL, 0, 0};

		/* charges with refunds are left to the opening charge: the format
		 * has no refunds */
		rc = each_entry(&u, note_refund);
		if (rc == 0)
			rc = each_entry(&u, write_entry);
		free(u.refunded);
		if (rc != 0)
			return rc;
		progress_step(&ex->p, 1);
	}
	fputs("\n  ]", ex->f);
	return 0;
}

/*
 * The messages of a session, oldest first: pages of get_chat_history
 * newest first (keyset on message_id), written in reverse.  0, or 1 with
 * the error reported.
 */
static int
export_chat_messages(FILE *f, const char *uid, const char *sid)
{
	pgm_result **pages = NULL;
	size_t		npages = 0,
				cap = 0,
				k;
	int64_t		before = 0;
	int			row,
				first = 1,
				rc = 0;

	for (;;)
	{
		pgm_result *r = NULL;
		int			n;

		if (pgm_get_chat_history(conn, uid, sid, 1000, before, 0, &r) != PGM_OK)
		{
			complain("export: get_chat_history");
			rc = 1;
			break;
		}
		if (npages == cap)
		{
			pgm_result **np;

			cap = cap ? cap * 2 : 4;
			np = realloc(pages, cap * sizeof(*pages));
			if (np == NULL)
			{
				fprintf(stderr, "pgmarket export: out of memory\n");
				pgm_result_free(r);
				rc = 1;
				break;
			}
			pages = np;
		}
		pages[npages++] = r;
		n = pgm_result_rows(r);
		if (n > 0)
			before = strtoll(pgm_result_value(r, n - 1, "message_id"), NULL, 10);
		if (n < 1000)
			break;
	}
	for (k = npages; rc == 0 && k-- > 0;)
		for (row = pgm_result_rows(pages[k]) - 1; row >= 0; row--)
		{
			const pgm_result *r = pages[k];
			const char *tools = pgm_result_value(r, row, "tool_calls");

			fprintf(f, "%s\n      {\"role\": ", first ? "" : ",");
			first = 0;
			json_write_string(f, pgm_result_value(r, row, "role"));
			fputs(", \"content\": ", f);
			json_write_string(f, pgm_result_value(r, row, "content"));
			fprintf(f, ", \"tokens\": %s, \"cost\": %s, \"timestamp\": ",
					pgm_result_value(r, row, "tokens"), pgm_result_value(r, row, "cost"));
			write_time(f, pgm_result_value(r, row, "created_at"));
			if (tools)
				fprintf(f, ", \"tool_calls\": %s", tools);
			fputc('}', f);
		}
	for (k = 0; k < npages; k++)
		pgm_result_free(pages[k]);
	free(pages);
	if (rc == 0 && !first)
		fputs("\n    ", f);
	return rc;
}

/* A session of the user's and its messages. */
static int
write_chat_session(exporter *ex, const char *uid, const pgm_result *sessions, int j)
{
	const char *sid = pgm_result_value(sessions, j, "session_id");
	const char *title = pgm_result_value(sessions, j, "title");
	const char *agent = pgm_result_value(sessions, j, "agent_id");

	fprintf(ex->f, "%s\n    \"%s\": {\"user_id\": \"%s\", \"model_id\": ", sep(ex), sid, uid);
	json_write_string(ex->f, pgm_result_value(sessions, j, "model_id"));
	fputs(", \"title\": ", ex->f);
	if (title)
		json_write_string(ex->f, title);
	else
		fputs("null", ex->f);
	if (agent)
	{
		fputs(", \"agent_id\": ", ex->f);
		json_write_string(ex->f, agent);
	}
	fputs(", \"messages\": [", ex->f);
	if (export_chat_messages(ex->f, uid, sid) != 0)
		return 1;
	fputs("]}", ex->f);
	return 0;
}

/* The user's chat sessions, each with its messages. */
static int
write_user_sessions(exporter *ex, const char *uid, const pgm_result *sessions)
{
	int			j;

	for (j = 0; j < pgm_result_rows(sessions); j++)
		if (write_chat_session(ex, uid, sessions, j) != 0)
			return 1;
	return 0;
}

/* What one user has of a per-user section, from list; 0, or 1 after failed(what). */
typedef pgm_status (*user_list_fn) (pgm_conn *conn, const char *user_id, pgm_result **out);

/*
 * Every session of a user that is not deleted, oldest first: read from the
 * table (as the users are from their view), since list_chat_sessions
 * answers pages of at most 1000.
 */
static pgm_status
list_user_sessions(pgm_conn *c, const char *user_id, pgm_result **out)
{
	const char *p[1] = {user_id};

	return pgm_exec(c, "SELECT session_id, model_id, title, agent_id"
					" FROM pgmarket.chat_sessions"
					" WHERE user_id = $1::uuid AND deleted_at IS NULL"
					" ORDER BY created_at, session_id", 1, p, out);
}
typedef int (*user_write_fn) (exporter *ex, const char *uid, const pgm_result *r);

/* ",\n  \"NAME\": {" then each user's part, listed by list and written by write_user. */
static int
write_per_user(exporter *ex, const char *name, user_list_fn list, const char *what,
			   user_write_fn write_user)
{
	int			i;

	fprintf(ex->f, ",\n  \"%s\": {", name);
	ex->first = 1;
	for (i = 0; i < pgm_result_rows(ex->users); i++)
	{
		const char *uid = user_id(ex, i);
		pgm_result *r = NULL;
		int			rc;

		progress_step(&ex->p, 1);
		if (list(conn, uid, &r) != PGM_OK)
			return failed(what);
		rc = write_user(ex, uid, r);
		pgm_result_free(r);
		if (rc != 0)
			return rc;
	}
	fputs("\n  }", ex->f);
	return 0;
}

/* The user's live provider keys, in plaintext: "uid": {"provider": "secret", ...}. */
static int
write_user_keys(exporter *ex, const char *uid, const pgm_result *keys)
{
	int			j,
				firstkey = 1;

	for (j = 0; j < pgm_result_rows(keys); j++)
	{
		pgm_provider_key_info k;
		char	   *secret = NULL;

		pgm_result_provider_key(keys, j, &k);
		if (k.revoked_at[0])
			continue;
		if (pgm_get_provider_key(conn, uid, k.provider, &secret) != PGM_OK)
			return failed("export: get_provider_key");
		if (firstkey)
			fprintf(ex->f, "%s\n    \"%s\": {", sep(ex), uid);
		fprintf(ex->f, "%s\"%s\": ", firstkey ? "" : ", ", k.provider);
		json_write_string(ex->f, secret);
		pgm_free_secret(secret);
		firstkey = 0;
	}
	if (!firstkey)
		fputs("}", ex->f);
	return 0;
}

/* Every section, in order; 0, or 1 with the failure reported. */
static int
write_document(exporter *ex, int have_chat, int with_secrets)
{
	write_users(ex);
	if (write_balances(ex) != 0 || write_transactions(ex) != 0)
		return 1;
	if (have_chat && write_per_user(ex, "chat_history", list_user_sessions,
									"export: chat sessions", write_user_sessions) != 0)
		return 1;
	if (server_has("pgmarket.get_template(text)") && store_export(conn, ex->f, ex->users) != 0)
		return failed("export: projects and templates");
	if (with_secrets && write_per_user(ex, "api_keys", pgm_list_provider_keys,
									   "export: list_provider_keys", write_user_keys) != 0)
		return 1;
	fputs("\n}\n", ex->f);
	return 0;
}

int
cmd_export(int argc, char **argv)
{
	char	   *a[1] = {NULL};
	int			with_secrets = 0;
	const cli_opt opts[] = {{"with-secrets", NULL, &with_secrets}, {NULL, NULL, NULL}};
	exporter	ex = {0};
	int			rc,
				npos,
				have_chat;

	if (parse_args("export", argc, argv, opts, a, 0, 1, &npos, "export takes at most one FILE"))
		return 2;
	if (open_conn() != 0)
		return 3;
	ex.with_secrets = with_secrets;
	/* every timestamp in one format, whatever the role's settings say */
	if (pgm_exec(conn, "SELECT pg_catalog.set_config('TimeZone', 'UTC', false), "
				 "pg_catalog.set_config('DateStyle', 'ISO, YMD', false)",
				 0, NULL, NULL) != PGM_OK)
		return failed("export: setting TimeZone");
	if (pgm_export_accounts(conn, &ex.users) != PGM_OK)
		return failed("export: export_accounts");
	if ((ex.f = open_output("export", npos == 1 ? a[0] : NULL, with_secrets ? 0600 : 0644)) == NULL)
	{
		pgm_result_free(ex.users);
		return 1;
	}
	have_chat = server_has("pgmarket.list_chat_sessions(uuid,text,integer,timestamp with time zone,uuid)");
	progress_start(&ex.p, "exporting",
				   pgm_result_rows(ex.users) * (2 + (with_secrets ? 1 : 0) + (have_chat ? 1 : 0)));
	rc = write_document(&ex, have_chat, with_secrets);
	progress_end(&ex.p);
	pgm_result_free(ex.users);
	if (ex.f != stdout && fclose(ex.f) != 0)
	{
		fprintf(stderr, "pgmarket export: write failed: %s\n", strerror(errno));
		rc = 1;
	}
	if (nonfinite_times > 0)
		fprintf(stderr, "pgmarket export: warning: %ld times were infinity or -infinity "
				"(not a time a record had), written as null\n", nonfinite_times);
	if (rc == 0 && !with_secrets)
		fprintf(stderr, "pgmarket export: provider keys left out (--with-secrets writes "
				"them and the password hashes; the keys in plaintext, which needs "
				"pgmarket_keyreader)\n");
	return rc;
}
