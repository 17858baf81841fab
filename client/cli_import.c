/*
 * cli_import.c: pgmarket import FILE: loads a JSON document (see README)
 * in four steps: read it, validate every record (what is wrong is
 * rejected, with its reason, and the rest goes on), apply what is valid
 * (nothing twice: a re-run finds what a first run loaded), report the
 * counts.  Exit status 1 when any record was rejected.
 */
#include "cli.h"
#include "importdoc.h"
#include "json.h"
#include "store_io.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *
str_member(const json *o, const char *key)
{
	json	   *v = json_get(o, key);

	return v && v->type == JSON_STRING ? v->text : NULL;
}

typedef struct
{
	const char *id;
	const json *user;			/* in the users section, or NULL */
	int			in_db;			/* exists already */
	int			rejected;		/* unusable: everything of it is rejected */
	int			has_balance;
	int64_t		total,
				spent,
				deposits,
				charges;
} imp_user;

typedef struct
{
	const json *t;
	imp_user   *u;
	int			charge;			/* else deposit */
	int			ok;
	char		amount[PGM_AMOUNT_LEN];
	int64_t		tokens;
} imp_tx;

/* A chat session of the file, validated. */
typedef struct
{
	const char *id;				/* the session uuid in the file */
	const json *s;
	imp_user   *u;
	const char *model;
	const json *messages;		/* an array, or NULL */
} imp_chat;

/* One run of the import: the document, what of it is valid, the counts. */
typedef struct
{
	json	   *doc;
	const json *users,
			   *balances,
			   *txs,
			   *keys,
			   *chat;
	imp_user   *iusers;
	size_t		nusers,
				capusers;
	imp_tx	   *tx;
	size_t		ntx;
	imp_chat   *chats;
	size_t		nchats;
	long		rejected;
	long		steps;			/* of the progress bar */
	progress	p;
	long		users_created,
				users_present,
				entries_new,
				entries_replayed,
				keys_new,
				keys_present,
				hashes_skipped,
				chats_new,
				chats_present,
				chat_messages_new;
	int			have_chat;
	int			have_store;
	store_counts projects,
				templates;
} importer;

/* Says why a record is rejected, and counts it; returns 0 (the record is not taken). */
static int
reject(importer *im, const char *section, const char *record, const char *fmt,...)
__attribute__((format(printf, 4, 5)));

static int
reject(importer *im, const char *section, const char *record, const char *fmt,...)
{
	va_list		ap;

	im->rejected++;
	fprintf(stderr, "rejected %s[%s]: ", section, record);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 0;
}

/* reject() for the store's sections (store_io.c). */
static void
reject_store(void *arg, const char *section, const char *record, const char *reason)
{
	reject((importer *) arg, section, record, "%s", reason);
}

/* reject() of a record whose call failed: the server's message and SQLSTATE. */
static void
reject_call(importer *im, const char *section, const char *record)
{
	reject(im, section, record, "%s (%s)", pgm_errmsg(conn), pgm_sqlstate(conn));
}

/*
 * After a failed call of the apply step: ends the progress line, then 1
 * with the failure reported when the connection is gone (the import
 * stops), 0 when the record is to be rejected.
 */
static int
connection_lost(importer *im, pgm_status st, const char *what)
{
	progress_end(&im->p);
	if (st != PGM_CONNECTION_ERROR)
		return 0;
	complain(what);
	return 1;
}

static imp_user *
find_user(importer *im, const char *id, int create)
{
	size_t		i;

	for (i = 0; i < im->nusers; i++)
		if (strcasecmp(im->iusers[i].id, id) == 0)
			return &im->iusers[i];
	if (!create)
		return NULL;
	if (im->nusers == im->capusers)
	{
		size_t		cap = im->capusers ? im->capusers * 2 : 64;
		imp_user   *nu = realloc(im->iusers, cap * sizeof(imp_user));

		if (nu == NULL)
			return NULL;
		im->iusers = nu;
		im->capusers = cap;
	}
	memset(&im->iusers[im->nusers], 0, sizeof(imp_user));
	im->iusers[im->nusers].id = id;
	return &im->iusers[im->nusers++];
}

/* Is the user in the database (active)? -1 on error. */
static int
user_in_db(const char *id)
{
	pgm_result *r = NULL;
	const char *p[1] = {id};
	int			found;

	if (pgm_exec(conn, "SELECT is_active FROM pgmarket.users WHERE id = $1::uuid", 1, p, &r) != PGM_OK)
		return -1;
	found = pgm_result_rows(r) > 0 && strcmp(pgm_result_value(r, 0, "is_active"), "t") == 0;
	pgm_result_free(r);
	return found;
}

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

static char *
read_file(const char *path, size_t *len)
{
	FILE	   *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char	   *buf = NULL;
	size_t		cap = 0,
				n = 0,
				got;

	if (f == NULL)
		return NULL;
	for (;;)
	{
		if (n + 65536 + 1 > cap)
		{
			char	   *nb;

			cap = (n + 65536 + 1) * 2;
			nb = realloc(buf, cap);
			if (nb == NULL)
			{
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
		}
		got = fread(buf + n, 1, 65536, f);
		n += got;
		if (got == 0)
			break;
	}
	if (buf)
		buf[n] = '\0';
	*len = n;
	if (f != stdin)
		fclose(f);
	return buf;
}

/* The document at path into im (its sections found); 0, or the exit status. */
static int
read_document(importer *im, const char *path)
{
	static const char *const known[] = {"users", "balance_tracker", "transactions",
	"api_keys", "chat_history", "projects", "templates"};
	char		err[256];
	size_t		len,
				i,
				k;
	char	   *text = read_file(path, &len);

	if (text == NULL)
	{
		fprintf(stderr, "pgmarket import: cannot read %s: %s\n", path, strerror(errno));
		return 1;
	}
	im->doc = import_parse(text, len, err, sizeof(err));
	free(text);
	if (im->doc == NULL)
	{
		fprintf(stderr, "pgmarket import: %s: %s\n", path, err);
		return 2;
	}
	for (i = 0; i < im->doc->n; i++)
	{
		for (k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			if (strcmp(im->doc->keys[i], known[k]) == 0)
				break;
		if (k == sizeof(known) / sizeof(known[0]))
			fprintf(stderr, "pgmarket import: warning: unknown section \"%s\" ignored\n",
					im->doc->keys[i]);
	}
	im->users = json_get(im->doc, "users");
	im->balances = json_get(im->doc, "balance_tracker");
	im->txs = json_get(im->doc, "transactions");
	im->keys = json_get(im->doc, "api_keys");
	im->chat = json_get(im->doc, "chat_history");
	return 0;
}

/* ------------------------------------------------------------------------
 * Validation: each returns 0, or -1 when out of memory
 * ------------------------------------------------------------------------ */

/*
 * User i of the users section: 1 when it is valid, 0 when rejected, -1
 * when out of memory.
 */
static int
validate_user(importer *im, size_t i)
{
	const json *users = im->users;
	const char *id = users->keys[i];
	const json *u = users->items[i];
	const char *email = str_member(u, "email"),
			   *uname = str_member(u, "username");
	imp_user   *iu;
	size_t		k;

	if (!is_uuid(id))
		return reject(im, "users", id, "malformed uuid");
	if (u->type != JSON_OBJECT || email == NULL || uname == NULL)
		return reject(im, "users", id, "needs an object with string email and username");
	for (k = 0; k < i; k++)
	{
		const char *e2 = str_member(users->items[k], "email"),
				   *n2 = str_member(users->items[k], "username");

		if ((e2 && strcasecmp(e2, email) == 0) || (n2 && strcasecmp(n2, uname) == 0))
			return reject(im, "users", id, "duplicate email or username %s / %s in the file",
						  email, uname);
	}
	if (find_user(im, id, 0))
		return reject(im, "users", id, "listed twice");
	if ((iu = find_user(im, id, 1)) == NULL)
		return -1;
	iu->user = u;
	return 1;
}

static int
validate_balances(importer *im)
{
	const json *balances = im->balances;
	size_t		i;

	for (i = 0; balances && i < balances->n; i++)
	{
		const char *id = balances->keys[i];
		const json *b = balances->items[i];
		const char *why;
		int64_t		total,
					spent;
		imp_user   *iu;

		if (!is_uuid(id))
		{
			reject(im, "balance_tracker", id, "malformed uuid");
			continue;
		}
		if (b->type != JSON_OBJECT)
		{
			reject(im, "balance_tracker", id, "must be an object with total and spent");
			continue;
		}
		if (!read_amount(json_get(b, "total"), &total, &why))
		{
			reject(im, "balance_tracker", id, "total is %s", why);
			continue;
		}
		if (!read_amount(json_get(b, "spent"), &spent, &why))
		{
			reject(im, "balance_tracker", id, "spent is %s", why);
			continue;
		}
		if (spent > total)
		{
			reject(im, "balance_tracker", id, "spent %s exceeds total %s",
				   json_get(b, "spent")->text, json_get(b, "total")->text);
			continue;
		}
		if ((iu = find_user(im, id, 1)) == NULL)
			return -1;
		iu->has_balance = 1;
		iu->total = total;
		iu->spent = spent;
		im->steps += 2;
	}
	return 0;
}

/* A transaction's type: 0 deposit, 1 charge, -1 neither. */
static int
tx_kind(const char *type)
{
	static const char *const words[] = {"deposit", "credit", "topup", "charge", "debit", "usage"};
	size_t		i;

	for (i = 0; type && i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(type, words[i]) == 0)
			return i >= 3;
	return -1;
}

/* A transaction's tokens (absent or null: 0) into *out; 0 when malformed. */
static int
tx_tokens(const json *tokens, int64_t *out)
{
	char	   *end;

	*out = 0;
	if (tokens == NULL || tokens->type == JSON_NULL)
		return 1;
	errno = 0;
	if (tokens->type != JSON_NUMBER ||
		(*out = strtoll(tokens->text, &end, 10), *end != '\0') ||
		errno == ERANGE || *out < 0)
		return 0;
	return 1;
}

/*
 * Transaction i into the next free slot of im->tx: 1 when it is valid, 0
 * when rejected, -1 when out of memory.
 */
static int
validate_transaction(importer *im, size_t i)
{
	const json *t = im->txs->items[i];
	const char *id = str_member(t, "id"),
			   *uid = str_member(t, "user_id"),
			   *type = str_member(t, "type"),
			   *why;
	char		label[128];
	int64_t		m = 0,
			   *sum,
				next;
	imp_tx	   *x = &im->tx[im->ntx];
	size_t		k;

	snprintf(label, sizeof(label), "%zu", i);
	if (t->type != JSON_OBJECT)
		return reject(im, "transactions", label, "not an object");
	if (id == NULL || id[0] == '\0')
		return reject(im, "transactions", label, "needs a string id (its idempotency key)");
	snprintf(label, sizeof(label), "%zu, id %.40s", i, id);
	if (!is_uuid(uid))
		return reject(im, "transactions", label, "malformed user_id");
	if ((x->charge = tx_kind(type)) < 0)
		return reject(im, "transactions", label, "type must be deposit or charge, not %s",
					  type ? type : "missing");
	if (!read_amount(json_get(t, "amount"), &m, &why))
		return reject(im, "transactions", label, "amount is %s", why);
	if (m == 0)
		return reject(im, "transactions", label, "amount is zero");
	if (!tx_tokens(json_get(t, "tokens"), &x->tokens))
		return reject(im, "transactions", label, "tokens must be a whole number >= 0");
	for (k = 0; k < im->ntx; k++)
		if (strcmp(str_member(im->tx[k].t, "id"), id) == 0 &&
			strcasecmp(str_member(im->tx[k].t, "user_id"), uid) == 0)
			return reject(im, "transactions", label, "duplicate id");
	if ((x->u = find_user(im, uid, 1)) == NULL)
		return -1;
	/* the user's listed deposits or charges, checked: never wrapped */
	sum = x->charge ? &x->u->charges : &x->u->deposits;
	if (__builtin_add_overflow(*sum, m, &next) || next >= PGM_MICRO_LIMIT)
		return reject(im, "transactions", label,
					  "amount would take the user's listed %s to 9000000000000 credits or more",
					  x->charge ? "charges" : "deposits");
	*sum = next;
	x->t = t;
	x->ok = 1;
	pgm_micro_to_str(m, x->amount);
	return 1;
}

/*
 * Records 0..n-1 of a section through one (1 valid, 0 rejected, -1 out of
 * memory), counting the valid ones in *nvalid (unless NULL) and im->steps:
 * 0, or -1.  Used for the users, the transactions and the chat sessions.
 */
static int
validate_each(importer *im, size_t n, int (*one) (importer *im, size_t i), size_t *nvalid)
{
	size_t		i;

	for (i = 0; i < n; i++)
		switch (one(im, i))
		{
			case -1:
				return -1;
			case 1:
				if (nvalid)
					(*nvalid)++;
				im->steps++;
				break;
		}
	return 0;
}

/* Is the member absent, null or a string? */
static int
null_or_string(const json *v)
{
	return v == NULL || v->type == JSON_NULL || v->type == JSON_STRING;
}

/*
 * Chat session i into the next free slot of im->chats: 1 when it is
 * valid, 0 when rejected, -1 when out of memory.
 */
static int
validate_chat(importer *im, size_t i)
{
	const char *id = im->chat->keys[i];
	const json *cs = im->chat->items[i];
	const char *uid = str_member(cs, "user_id");
	const json *model = json_get(cs, "model_id"),
			   *msgs = json_get(cs, "messages");
	imp_chat   *ch = &im->chats[im->nchats];
	const char *problem = NULL;
	char		why[128];
	size_t		k;

	if (!is_uuid(id))
		return reject(im, "chat_history", id, "malformed uuid");
	if (cs->type != JSON_OBJECT)
		return reject(im, "chat_history", id, "must be an object with user_id, model_id, messages");
	if (!is_uuid(uid))
		return reject(im, "chat_history", id, "malformed user_id");
	if (!null_or_string(model) || !null_or_string(json_get(cs, "title")) ||
		!null_or_string(json_get(cs, "agent_id")))
		return reject(im, "chat_history", id, "model_id, title and agent_id must be strings");
	if (msgs && msgs->type != JSON_NULL && msgs->type != JSON_ARRAY)
		return reject(im, "chat_history", id, "messages must be an array");
	for (k = 0; msgs && msgs->type == JSON_ARRAY && k < msgs->n && !problem; k++)
		problem = chat_message_problem(msgs->items[k], why, sizeof(why));
	if (problem)
		return reject(im, "chat_history", id, "message %zu: %s", k - 1, problem);
	for (k = 0; k < im->nchats; k++)
		if (strcasecmp(im->chats[k].id, id) == 0)
			return reject(im, "chat_history", id, "%s", "listed twice");
	ch->id = id;
	ch->s = cs;
	ch->model = model && model->type == JSON_STRING ? model->text : "unknown";
	ch->messages = msgs && msgs->type == JSON_ARRAY ? msgs : NULL;
	if ((ch->u = find_user(im, uid, 1)) == NULL)
		return -1;
	return 1;
}

/*
 * Consistency and existence: every user named is in the file or the
 * database, its listed entries within its balance.  0, or -1 when the
 * lookup failed (reported).
 */
static int
check_users(importer *im)
{
	size_t		i;

	for (i = 0; i < im->nusers; i++)
	{
		imp_user   *u = &im->iusers[i];
		int			in_db = user_in_db(u->id);
		char		a1[PGM_AMOUNT_LEN],
					a2[PGM_AMOUNT_LEN],
					a3[PGM_AMOUNT_LEN],
					a4[PGM_AMOUNT_LEN];

		if (in_db < 0)
		{
			complain("import: looking up users");
			return -1;
		}
		u->in_db = in_db;
		if (u->user == NULL && !in_db)
		{
			reject(im, "user", u->id, "unknown user: not in users and not in the database");
			u->rejected = 1;
		}
		else if (u->has_balance && (u->deposits > u->total || u->charges > u->spent))
		{
			reject(im, "balance_tracker", u->id,
				   "inconsistent: listed deposits %s / charges %s exceed total %s / spent %s",
				   pgm_micro_to_str(u->deposits, a1), pgm_micro_to_str(u->charges, a2),
				   pgm_micro_to_str(u->total, a3), pgm_micro_to_str(u->spent, a4));
			u->rejected = 1;
		}
	}
	return 0;
}

/* All of the validation step: 0, or the exit status (1). */
static int
validate(importer *im)
{
	size_t		nusers = im->users ? im->users->n : 0,
				ntxs = im->txs ? im->txs->n : 0,
				nchats = im->chat ? im->chat->n : 0;

	/* a slot for each transaction and chat session, filled by the valid ones */
	if ((ntxs > 0 && (im->tx = calloc(ntxs, sizeof(imp_tx))) == NULL) ||
		(nchats > 0 && (im->chats = calloc(nchats, sizeof(imp_chat))) == NULL) ||
		validate_each(im, nusers, validate_user, NULL) != 0 || validate_balances(im) != 0 ||
		validate_each(im, ntxs, validate_transaction, &im->ntx) != 0 ||
		validate_each(im, nchats, validate_chat, &im->nchats) != 0)
	{
		fprintf(stderr, "pgmarket import: out of memory\n");
		return 1;
	}
	return check_users(im) != 0 ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * Applying: each returns 0, or -1 when the import stops (reported)
 * ------------------------------------------------------------------------ */

/* Creates user u: 1 when created, 0 when its call failed (the outcome on conn). */
static int
create_user(importer *im, const imp_user *u, int have_import_user)
{
	const char *hash = str_member(u->user, "password_hash");
	char		out[PGM_UUID_LEN];

	if (hash && have_import_user)
	{
		const char *params[5] = {u->id, str_member(u->user, "email"),
			str_member(u->user, "username"), hash,
		str_member(u->user, "created_at")};

		return pgm_exec(conn, "SELECT pgmarket.import_user($1::uuid, $2, $3, $4, "
						"$5::timestamptz)", 5, params, NULL) == PGM_OK;
	}
	if (hash)
		im->hashes_skipped++;
	return pgm_create_user(conn, str_member(u->user, "email"),
						   str_member(u->user, "username"), NULL, NULL, u->id,
						   out) == PGM_OK;
}

static int
apply_users(importer *im, int have_import_user)
{
	size_t		i;

	for (i = 0; i < im->nusers; i++)
	{
		imp_user   *u = &im->iusers[i];

		if (u->user == NULL)
			continue;
		progress_step(&im->p, 1);
		if (u->in_db)
		{
			im->users_present++;
			continue;
		}
		if (create_user(im, u, have_import_user))
		{
			im->users_created++;
			continue;
		}
		if (connection_lost(im, pgm_last_status(conn), "import"))
			return -1;
		reject(im, "users", u->id, "%s", pgm_errmsg(conn));
		u->rejected = 1;
	}
	return 0;
}

/*
 * A ledger call's outcome: 0 when it went through (counted), 1 when its
 * record is to be rejected, -1 when the connection is gone (reported).
 */
static int
ledger_outcome(importer *im, pgm_status st, const pgm_ledger_result *r)
{
	if (st == PGM_OK)
	{
		if (r->replayed)
			im->entries_replayed++;
		else
			im->entries_new++;
		return 0;
	}
	return connection_lost(im, st, "import") ? -1 : 1;
}

/* The transactions of one kind: pass 0 the deposits, pass 1 the charges. */
static int
apply_transactions(importer *im, int pass)
{
	size_t		i;

	for (i = 0; i < im->ntx; i++)
	{
		imp_tx	   *x = &im->tx[i];
		pgm_ledger_result r;
		pgm_status	st;
		const char *id = str_member(x->t, "id");
		const char *model = str_member(x->t, "model_id");
		const char *ts = str_member(x->t, "timestamp");
		char		note[128];

		if (x->charge != pass)
			continue;
		progress_step(&im->p, 1);
		if (x->u->rejected)
		{
			im->rejected++;		/* reported with its user */
			continue;
		}
		snprintf(note, sizeof(note), "import%s%.64s", ts ? " " : "", ts ? ts : "");
		if (x->charge)
			st = pgm_deduct_balance(conn, x->u->id, x->amount, model ? model : "unknown",
									x->tokens, id, &r);
		else
			st = pgm_add_funds(conn, x->u->id, x->amount, id, note, &r);
		switch (ledger_outcome(im, st, &r))
		{
			case -1:
				return -1;
			case 1:
				reject_call(im, "transactions", id);
				break;
		}
	}
	return 0;
}

/*
 * What the balances say beyond the listed transactions: pass 0 the opening
 * deposit (total - deposits), pass 1 the opening charge (spent - charges).
 */
static int
apply_openings(importer *im, int pass)
{
	size_t		i;

	for (i = 0; i < im->nusers; i++)
	{
		imp_user   *u = &im->iusers[i];
		int64_t		diff;
		char		key[96],
					amount[PGM_AMOUNT_LEN];
		pgm_ledger_result r;
		pgm_status	st;

		if (!u->has_balance)
			continue;
		progress_step(&im->p, 1);
		if (u->rejected)
			continue;
		diff = pass == 0 ? u->total - u->deposits : u->spent - u->charges;
		if (diff <= 0)
			continue;
		pgm_micro_to_str(diff, amount);
		snprintf(key, sizeof(key), "import-opening-%s-%s", pass ? "charge" : "deposit", u->id);
		st = pass == 0
			? pgm_add_funds(conn, u->id, amount, key, "import: opening balance", &r)
			: pgm_deduct_balance(conn, u->id, amount, "import", 0, key, &r);
		switch (ledger_outcome(im, st, &r))
		{
			case -1:
				return -1;
			case 1:
				reject(im, "balance_tracker", u->id, "opening %s: %s (%s)",
					   pass ? "charge" : "deposit", pgm_errmsg(conn), pgm_sqlstate(conn));
				break;
		}
	}
	return 0;
}

/* Per user: deposits, the opening deposit, charges, the opening charge. */
static int
apply_ledger(importer *im)
{
	int			pass;

	for (pass = 0; pass < 2; pass++)
		if (apply_transactions(im, pass) != 0 || apply_openings(im, pass) != 0)
			return -1;
	return 0;
}

/* Is this imported key of the user's (same provider, same last four) there already? */
static int
provider_key_present(const char *uid, const char *provider, const json *secret)
{
	pgm_result *r = NULL;
	int			row,
				present = 0;

	if (pgm_list_provider_keys(conn, uid, &r) == PGM_OK)
		for (row = 0; row < pgm_result_rows(r); row++)
		{
			pgm_provider_key_info info;

			pgm_result_provider_key(r, row, &info);
			if (info.revoked_at[0] == '\0' && info.label &&
				strcmp(info.label, "imported") == 0 &&
				strcasecmp(info.provider, provider) == 0 &&
				strcmp(info.hint, secret->text + secret->len - 4) == 0)
				present = 1;
		}
	pgm_result_free(r);
	return present;
}

/* The user's key for provider, sealed on the way in. */
static void
import_provider_key(importer *im, const char *uid, const char *provider, const json *secret)
{
	char		key_id[PGM_UUID_LEN],
				rec[128];
	size_t		slen;

	snprintf(rec, sizeof(rec), "%s.%s", uid, provider);
	if (secret->type != JSON_STRING || secret->len < 4 || secret->len > 4096 ||
		strlen(secret->text) != secret->len)
	{
		reject(im, "api_keys", rec, "the key must be a string of 4 to 4096 characters");
		return;
	}
	for (slen = 0; slen < secret->len; slen++)
		if (isspace((unsigned char) secret->text[slen]) ||
			iscntrl((unsigned char) secret->text[slen]))
			break;
	if (slen != secret->len)
	{
		reject(im, "api_keys", rec, "malformed key (contains white space)");
		return;
	}
	if (provider_key_present(uid, provider, secret))
	{
		im->keys_present++;
		return;
	}
	if (pgm_put_provider_key(conn, uid, provider, secret->text, "imported",
							 key_id) == PGM_OK)
		im->keys_new++;
	else
	{
		progress_end(&im->p);
		reject_call(im, "api_keys", rec);
	}
}

/* Provider keys, sealed on the way in; one imported key per provider. */
static void
apply_provider_keys(importer *im)
{
	const json *keys = im->keys;
	size_t		i,
				k;

	for (i = 0; keys && i < keys->n; i++)
	{
		const char *uid = keys->keys[i];
		const json *pk = keys->items[i];
		imp_user   *u = is_uuid(uid) ? find_user(im, uid, 0) : NULL;
		int			ok_user;

		progress_step(&im->p, 1);
		if (!is_uuid(uid) || pk->type != JSON_OBJECT)
		{
			reject(im, "api_keys", uid, "%s", is_uuid(uid) ? "must be an object of provider: key"
				   : "malformed uuid");
			continue;
		}
		ok_user = u ? !u->rejected : user_in_db(uid) == 1;
		if (!ok_user)
		{
			reject(im, "api_keys", uid, "unknown user");
			continue;
		}
		for (k = 0; k < pk->n; k++)
			import_provider_key(im, uid, pk->keys[k], pk->items[k]);
	}
}

/* Is the file's session id already imported for its user?  1, 0; -1 on
 * error.  A session counts as present when it is that session (imported
 * with its id, or an export imported back), or one that an import of
 * pgmarket 0.5.0 made with the context {"imported_from": id}. */
static int
chat_session_present(const imp_chat *ch)
{
	pgm_result *r = NULL;
	char		owner[PGM_UUID_LEN];
	int			row,
				found = 0;

	if (pgm_chat_session_owner(conn, ch->id, owner) != PGM_OK)
		return -1;
	if (strcasecmp(owner, ch->u->id) == 0)
		return 1;
	if (pgm_list_chat_sessions(conn, ch->u->id, &r) != PGM_OK)
		return -1;
	for (row = 0; row < pgm_result_rows(r) && !found; row++)
	{
		const char *ctx = pgm_result_value(r, row, "context");

		if (ctx)
		{
			char		err[64];
			json	   *cj = json_parse(ctx, strlen(ctx), err, sizeof(err));
			const char *from = cj ? str_member(cj, "imported_from") : NULL;

			found = from && strcasecmp(from, ch->id) == 0;
			json_free(cj);
		}
	}
	pgm_result_free(r);
	return found;
}

/* Runs SQL outside the library (transaction control); 1 on success. */
static int
raw_exec(const char *sql)
{
	PGresult   *res = PQexec(pgm_pgconn(conn), sql);
	int			ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		fprintf(stderr, "pgmarket import: %s failed: %s", sql, PQerrorMessage(pgm_pgconn(conn)));
	PQclear(res);
	return ok;
}

/*
 * One session and its messages, in one transaction: the session under the
 * file's id, then each message with its cost recorded (not charged).  *nmsg receives
 * the messages stored.  PGM_OK, or the failing call's status with the
 * transaction rolled back.
 */
static pgm_status
import_chat_session(const imp_chat *ch, long *nmsg)
{
	char		sid[PGM_UUID_LEN];
	size_t		j;
	pgm_status	st;

	*nmsg = 0;
	if (!raw_exec("BEGIN"))
		return PGM_CONNECTION_ERROR;
	st = pgm_create_chat_session_with_id(conn, ch->u->id, ch->model,
										 str_member(ch->s, "title"),
										 str_member(ch->s, "agent_id"), ch->id, sid);
	for (j = 0; st == PGM_OK && ch->messages && j < ch->messages->n; j++)
	{
		const json *m = ch->messages->items[j];
		const json *tokens = json_get(m, "tokens"),
				   *cost = json_get(m, "cost"),
				   *tools = json_get(m, "tool_calls");
		char		amount[PGM_AMOUNT_LEN] = "0";
		char	   *tool_text = NULL;
		int64_t		micro = 0;
		const char *why;

		if (cost && cost->type != JSON_NULL && read_amount(cost, &micro, &why))
			pgm_micro_to_str(micro, amount);
		if (tools && tools->type != JSON_NULL && (tool_text = json_to_text(tools)) == NULL)
		{
			fprintf(stderr, "pgmarket import: out of memory\n");
			st = PGM_CLIENT_ERROR;
			break;
		}
		st = pgm_save_chat_message(conn, ch->u->id, sid, str_member(m, "role"),
								   str_member(m, "content"),
								   tokens && tokens->type == JSON_NUMBER ? atoi(tokens->text) : 0,
								   amount, tool_text, NULL);
		free(tool_text);
		if (st == PGM_OK)
			(*nmsg)++;
	}
	if (st == PGM_OK)
		return raw_exec("COMMIT") ? PGM_OK : PGM_CONNECTION_ERROR;
	PQclear(PQexec(pgm_pgconn(conn), "ROLLBACK"));
	*nmsg = 0;
	return st;
}


/* Chat sessions: one transaction each, under their ids. */
static int
apply_chats(importer *im)
{
	size_t		i;

	if (im->chat && im->chat->n > 0)
	{
		im->have_chat = server_has("pgmarket.create_chat_session(uuid,text,text,text,uuid)");
		if (!im->have_chat)
			fprintf(stderr, "pgmarket import: warning: section chat_history skipped: "
					"this server has no chat functions (create_chat_session)\n");
	}
	for (i = 0; im->have_chat && i < im->nchats; i++)
	{
		imp_chat   *ch = &im->chats[i];
		long		nmsg = 0;
		int			present;
		pgm_status	st;

		progress_step(&im->p, 1);
		if (ch->u->rejected)
		{
			im->rejected++;		/* reported with its user */
			continue;
		}
		present = chat_session_present(ch);
		if (present < 0)
		{
			if (connection_lost(im, pgm_last_status(conn), "import: list_chat_sessions"))
				return -1;
			reject_call(im, "chat_history", ch->id);
			continue;
		}
		if (present)
		{
			im->chats_present++;
			continue;
		}
		st = import_chat_session(ch, &nmsg);
		if (st == PGM_OK)
		{
			im->chats_new++;
			im->chat_messages_new += nmsg;
			continue;
		}
		if (connection_lost(im, st, "import"))
			return -1;
		reject_call(im, "chat_history", ch->id);
	}
	return 0;
}

/* The agent platform's store: templates, then projects. */
static int
apply_store(importer *im)
{
	if (json_get(im->doc, "projects") == NULL && json_get(im->doc, "templates") == NULL)
		return 0;
	im->have_store = server_has("pgmarket.get_template(text)");
	if (!im->have_store)
		fprintf(stderr, "pgmarket import: warning: sections projects and templates "
				"skipped: this server has no store functions (save_project)\n");
	else if (store_import(conn, im->doc, reject_store, im, &im->projects, &im->templates) != 0)
	{
		complain("import: projects and templates");
		return -1;
	}
	return 0;
}

/* All of the apply step, in its order: 0, or -1 when the import stops. */
static int
apply(importer *im)
{
	int			have_import_user;

	if (im->keys)
		im->steps += (long) im->keys->n;
	have_import_user = server_has("pgmarket.import_user(uuid,text,text,text,timestamptz)");
	progress_start(&im->p, "importing", im->steps);
	if (apply_users(im, have_import_user) != 0 || apply_ledger(im) != 0)
		return -1;
	apply_provider_keys(im);
	if (apply_chats(im) != 0)
		return -1;
	progress_end(&im->p);
	return apply_store(im);
}

/* ------------------------------------------------------------------------
 * Reporting
 * ------------------------------------------------------------------------ */

/* The counts on stdout; the exit status: 1 when any record was rejected. */
static int
report(const importer *im)
{
	printf("users: %ld created, %ld already present\n", im->users_created, im->users_present);
	printf("ledger entries: %ld new, %ld already present\n", im->entries_new,
		   im->entries_replayed);
	printf("provider keys: %ld stored (sealed), %ld already present\n", im->keys_new,
		   im->keys_present);
	if (im->have_chat)
		printf("chat sessions: %ld created (%ld messages), %ld already present\n",
			   im->chats_new, im->chat_messages_new, im->chats_present);
	if (im->have_store)
	{
		printf("templates: %ld created, %ld already present\n",
			   im->templates.created, im->templates.present);
		printf("projects: %ld created, %ld already present\n",
			   im->projects.created, im->projects.present);
	}
	if (im->hashes_skipped)
		printf("password hashes: %ld not imported (the server has no import_user yet); "
			   "those users have no password\n", im->hashes_skipped);
	printf("rejected records: %ld\n", im->rejected);
	if (im->rejected == 0)
		return 0;
	fprintf(stderr, "pgmarket import: %ld records rejected (listed above); "
			"fix them and run the import again: what was loaded stays, "
			"nothing is loaded twice\n", im->rejected);
	return 1;
}

int
cmd_import(int argc, char **argv)
{
	char	   *a[1];
	importer	im = {0};
	int			rc;

	if (need_args(argc, argv, a, 1, "import needs FILE (or - for stdin)"))
		return 2;
	if ((rc = read_document(&im, a[0])) != 0)
		return rc;
	rc = validate(&im);
	if (rc == 0)
		rc = apply(&im) != 0 ? 1 : report(&im);
	free(im.tx);
	free(im.chats);
	free(im.iusers);
	json_free(im.doc);
	return rc;
}
