/*
 * cli_import.c: pgmarket import FILE [--dry-run] [--report FILE]: loads a
 * JSON document (see README) in four steps: read it (refused as a whole
 * when it is not strict JSON), validate every record with every reason
 * against it (in one pass, with hash tables: linear in the document),
 * apply what is valid in batches on the server (import_batch, one
 * statement per batch of records, which applies each record under its
 * single call's rules and says whether it was created, present already or
 * rejected), report the counts.  Exit status 1 when any record was
 * rejected.
 *
 * Memory: the document as parsed (every string of it once), an entry per
 * record of the users, transactions and chat sessions, and the text of one
 * batch at a time.
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
#include <time.h>
#include <sys/stat.h>

#include <sodium.h>

#define BATCH_RECORDS	2000	/* records a batch holds at most */
#define BATCH_BYTES		(4 * 1024 * 1024)	/* and text, once past a record */
#define TIME_SKEW		300		/* seconds a record's time may be past the clock */

static const char *
str_member(const json *o, const char *key)
{
	json	   *v = o && o->type == JSON_OBJECT ? json_get(o, key) : NULL;

	return v && v->type == JSON_STRING ? v->text : NULL;
}

/* ------------------------------------------------------------------------
 * A set of strings (case folded by the caller), open addressing
 * ------------------------------------------------------------------------ */

typedef struct
{
	char	  **keys;
	void	  **vals;
	size_t		cap,
				n;
} strmap;

static uint64_t
str_hash(const char *s)
{
	uint64_t	h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 1099511628211ULL;
	return h;
}

/* The value under key, or NULL. */
static void *
map_get(const strmap *m, const char *key)
{
	size_t		i;

	if (m->cap == 0)
		return NULL;
	for (i = str_hash(key) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
		if (strcmp(m->keys[i], key) == 0)
			return m->vals[i];
	return NULL;
}

/* Puts key (copied) -> val unless key is there; 1 added, 0 there, -1 out of memory. */
static int
map_put(strmap *m, const char *key, void *val)
{
	size_t		i;

	if ((m->n + 1) * 2 > m->cap)
	{
		strmap		g = {0};
		size_t		k;

		g.cap = m->cap ? m->cap * 2 : 64;
		g.keys = calloc(g.cap, sizeof(char *));
		g.vals = calloc(g.cap, sizeof(void *));
		if (g.keys == NULL || g.vals == NULL)
		{
			free(g.keys);
			free(g.vals);
			return -1;
		}
		for (k = 0; k < m->cap; k++)
			if (m->keys[k])
			{
				for (i = str_hash(m->keys[k]) & (g.cap - 1); g.keys[i]; i = (i + 1) & (g.cap - 1))
					;
				g.keys[i] = m->keys[k];
				g.vals[i] = m->vals[k];
			}
		g.n = m->n;
		free(m->keys);
		free(m->vals);
		*m = g;
	}
	for (i = str_hash(key) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
		if (strcmp(m->keys[i], key) == 0)
			return 0;
	if ((m->keys[i] = strdup(key)) == NULL)
		return -1;
	m->vals[i] = val;
	m->n++;
	return 1;
}

static void
map_free(strmap *m)
{
	size_t		i;

	for (i = 0; i < m->cap; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->vals);
}

/* s lower-cased into buf (at most size-1 bytes). */
static const char *
fold(const char *s, char *buf, size_t size)
{
	size_t		i;

	for (i = 0; s[i] && i + 1 < size; i++)
		buf[i] = (char) tolower((unsigned char) s[i]);
	buf[i] = '\0';
	return buf;
}

/* ------------------------------------------------------------------------
 * The run
 * ------------------------------------------------------------------------ */

typedef struct
{
	const char *id;
	const json *user;			/* in the users section, or NULL */
	int			rejected;		/* everything of it is rejected */
	int			has_balance;
	int			opening_new;	/* an opening entry was created */
	int			opening_bad;
	int64_t		total,
				spent,
				deposits,
				charges;
} imp_user;

/* A record of a section, with what became of it. */
typedef struct
{
	const char *key;			/* how the report names it */
	const json *rec;
	imp_user   *u;
	size_t		rec_index;		/* transactions: its place in the section */
	int			charge;			/* transactions: else deposit */
	char		amount[PGM_AMOUNT_LEN];
	int64_t		tokens;
} imp_rec;

/* One record's rejection, every reason of it. */
typedef struct
{
	char	   *section;
	char	   *key;
	char	  **reasons;
	size_t		nreasons;
} rejection;

typedef struct
{
	long		created,
				present,
				rejected;
} counts;

enum
{
	C_USERS, C_BALANCES, C_TXS, C_KEYS, C_CHATS, C_PROJECTS, C_TEMPLATES, C_N
};
static const char *const count_names[C_N] = {"users", "balance_tracker", "transactions",
"api_keys", "chat_history", "projects", "templates"};

typedef struct
{
	json	   *doc;
	const json *users,
			   *balances,
			   *txs,
			   *keys,
			   *chat;
	strmap		by_id;			/* folded uuid -> imp_user */
	imp_user  **iusers;
	size_t		nusers,
				capusers;
	imp_rec    *tx;				/* the valid transactions */
	size_t		ntx;
	imp_rec    *chats;
	size_t		nchats;
	rejection  *rej;
	size_t		nrej,
				caprej;
	counts		c[C_N];
	long		entries_new,
				entries_present,
				keys_new,
				keys_present,
				chat_messages_new;
	int			dry_run;
	int			have_chat;
	int			have_store;
	long		steps;
	progress	p;
	store_counts projects,
				templates;
	int			oom;
	int64_t		now;			/* the clock when the import began */
	long		with_user;		/* records rejected with their user, not listed */
} importer;

/*
 * Adds a reason to the record's rejection (the last one when it is of the
 * same record, else a new one).  Returns 0: the record is not taken.
 */
static int
reject(importer *im, const char *section, const char *record, const char *fmt,...)
__attribute__((format(printf, 4, 5)));

static int
reject(importer *im, const char *section, const char *record, const char *fmt,...)
{
	va_list		ap;
	char		buf[1024];
	rejection  *r;
	char	  **nr;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	r = im->nrej ? &im->rej[im->nrej - 1] : NULL;
	if (r == NULL || strcmp(r->section, section) != 0 || strcmp(r->key, record) != 0)
	{
		if (im->nrej == im->caprej)
		{
			size_t		cap = im->caprej ? im->caprej * 2 : 64;
			rejection  *n = realloc(im->rej, cap * sizeof(rejection));

			if (n == NULL)
			{
				im->oom = 1;
				return 0;
			}
			im->rej = n;
			im->caprej = cap;
		}
		r = &im->rej[im->nrej++];
		r->section = strdup(section);
		r->key = strdup(record);
		r->reasons = NULL;
		r->nreasons = 0;
	}
	if (r->section == NULL || r->key == NULL ||
		(nr = realloc(r->reasons, (r->nreasons + 1) * sizeof(char *))) == NULL)
	{
		im->oom = 1;
		return 0;
	}
	r->reasons = nr;
	if ((r->reasons[r->nreasons] = strdup(buf)) == NULL)
		im->oom = 1;
	else
		r->nreasons++;
	return 0;
}

/* reject() for the store's sections (store_io.c). */
static void
reject_store(void *arg, const char *section, const char *record, const char *reason)
{
	reject((importer *) arg, section, record, "%s", reason);
}

/* The user of this id (created when asked), or NULL. */
static imp_user *
find_user(importer *im, const char *id, int create)
{
	char		f[64];
	imp_user   *u;

	fold(id, f, sizeof(f));
	if ((u = map_get(&im->by_id, f)) != NULL || !create)
		return u;
	if (im->nusers == im->capusers)
	{
		size_t		cap = im->capusers ? im->capusers * 2 : 64;
		imp_user  **nu = realloc(im->iusers, cap * sizeof(imp_user *));

		if (nu == NULL)
			return NULL;
		im->iusers = nu;
		im->capusers = cap;
	}
	if ((u = calloc(1, sizeof(imp_user))) == NULL)
		return NULL;
	u->id = id;
	if (map_put(&im->by_id, f, u) < 0)
	{
		free(u);
		return NULL;
	}
	im->iusers[im->nusers++] = u;
	return u;
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
		fprintf(stderr, "pgmarket import: cannot read %s: %s\n", printable(path), strerror(errno));
		return 2;
	}
	im->doc = import_parse(text, len, err, sizeof(err));
	free(text);
	if (im->doc == NULL)
	{
		fprintf(stderr, "pgmarket import: %s: %s\n", printable(path), printable(err));
		return 2;
	}
	for (i = 0; i < im->doc->n; i++)
	{
		for (k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			if (strcmp(im->doc->keys[i], known[k]) == 0)
				break;
		if (k == sizeof(known) / sizeof(known[0]))
			fprintf(stderr, "pgmarket import: warning: unknown section \"%s\" ignored\n",
					printable(im->doc->keys[i]));
	}
	im->users = json_get(im->doc, "users");
	im->balances = json_get(im->doc, "balance_tracker");
	im->txs = json_get(im->doc, "transactions");
	im->keys = json_get(im->doc, "api_keys");
	im->chat = json_get(im->doc, "chat_history");
	return 0;
}

/* ------------------------------------------------------------------------
 * Validation: each record once, every reason of it
 * ------------------------------------------------------------------------ */

static int
validate_users(importer *im)
{
	strmap		emails = {0},
				names = {0};
	size_t		i;
	int			rc = 0;

	for (i = 0; im->users && i < im->users->n && rc == 0; i++)
	{
		const char *id = im->users->keys[i];
		const json *u = im->users->items[i];
		const char *email = str_member(u, "email"),
				   *uname = str_member(u, "username");
		int			bad = 0;
		char		f[512];
		imp_user   *iu;

		if (!is_uuid(id))
			bad = !reject(im, "users", id, "malformed uuid");
		if (u->type != JSON_OBJECT || email == NULL || uname == NULL)
			bad = !reject(im, "users", id, "needs an object with string email and username");
		else
		{
			int			e = map_put(&emails, fold(email, f, sizeof(f)), NULL);
			int			n = e < 0 ? -1 : map_put(&names, fold(uname, f, sizeof(f)), NULL);

			if (e < 0 || n < 0)
				rc = -1;
			else if (e == 0 || n == 0)
				bad = !reject(im, "users", id, "duplicate email or username %s / %s in the file",
							  email, uname);
		}
		if (json_get(u, "created_at") && json_get(u, "created_at")->type != JSON_NULL)
		{
			const char *at = str_member(u, "created_at"),
					   *why = at ? import_time_problem(at, im->now, TIME_SKEW) : "must be a string";

			if (why)
				bad = !reject(im, "users", id, "created_at %s", why);
		}
		if (bad)
			continue;
		if (find_user(im, id, 0))
		{
			reject(im, "users", id, "listed twice");
			continue;
		}
		if ((iu = find_user(im, id, 1)) == NULL)
			rc = -1;
		else
			iu->user = u;
	}
	map_free(&emails);
	map_free(&names);
	return rc;
}

/*
 * The folded ids listed more than once among the keys of obj (uuids that
 * differ in letter case only are one): into dup; 0 or -1.
 */
static int
twice_listed(const json *obj, strmap *dup)
{
	strmap		seen = {0};
	size_t		i;
	int			rc = 0;
	char		f[64];

	for (i = 0; obj && obj->type == JSON_OBJECT && i < obj->n && rc == 0; i++)
	{
		int			added;

		if (!is_uuid(obj->keys[i]))
			continue;
		fold(obj->keys[i], f, sizeof(f));
		if ((added = map_put(&seen, f, (void *) 1)) < 0)
			rc = -1;
		else if (added == 0 && map_put(dup, f, (void *) 1) < 0)
			rc = -1;
	}
	map_free(&seen);
	return rc;
}

/*
 * A balance that is rejected rejects its user too (with everything of it):
 * loading the user without it would load other money than the document says.
 */
static int
balance_rejected(importer *im, const char *id)
{
	imp_user   *iu;

	if (!is_uuid(id))
		return 0;
	if ((iu = find_user(im, id, 1)) == NULL)
		return -1;
	iu->rejected = 1;
	return 0;
}

static int
validate_balances(importer *im)
{
	strmap		dup = {0};
	size_t		i;
	char		f[64];

	if (twice_listed(im->balances, &dup) != 0)
	{
		map_free(&dup);
		return -1;
	}
	for (i = 0; im->balances && i < im->balances->n; i++)
	{
		const char *id = im->balances->keys[i];
		const json *b = im->balances->items[i];
		const char *why;
		int64_t		total = 0,
					spent = 0;
		int			bad = 0;
		imp_user   *iu;

		if (!is_uuid(id))
			bad = !reject(im, "balance_tracker", id, "malformed uuid");
		else if (map_get(&dup, fold(id, f, sizeof(f))))
			bad = !reject(im, "balance_tracker", id, "listed twice (uuids that differ in case only are one user)");
		if (b->type != JSON_OBJECT)
		{
			reject(im, "balance_tracker", id, "must be an object with total and spent");
			if (balance_rejected(im, id) != 0)
				break;
			continue;
		}
		if (!read_amount(json_get(b, "total"), &total, &why))
			bad = !reject(im, "balance_tracker", id, "total is %s", why);
		if (!read_amount(json_get(b, "spent"), &spent, &why))
			bad = !reject(im, "balance_tracker", id, "spent is %s", why);
		if (!bad && spent > total)
			bad = !reject(im, "balance_tracker", id, "spent %s exceeds total %s",
						  json_get(b, "spent")->text, json_get(b, "total")->text);
		if (bad)
		{
			if (balance_rejected(im, id) != 0)
				break;
			continue;
		}
		if ((iu = find_user(im, id, 1)) == NULL)
			break;
		iu->has_balance = 1;
		iu->total = total;
		iu->spent = spent;
	}
	map_free(&dup);
	return im->balances && i < im->balances->n ? -1 : 0;
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
 * What checks one record of a section: 1 kept (*x filled), 0 rejected
 * (the reasons said), -1 out of memory.  ids holds the section's keys seen
 * so far, for duplicates.
 */
typedef int (*record_check) (importer *im, size_t i, strmap *ids, imp_rec *x);

/*
 * Every record of section (NULL: absent) through check, those kept into
 * *recs, counted in *nrecs; 0, or -1 when out of memory.
 */
static int
validate_section(importer *im, const json *section, record_check check,
				 imp_rec **recs, size_t *nrecs)
{
	strmap		ids = {0};
	size_t		i,
				n = section ? section->n : 0;
	int			rc = 0;

	if (n > 0 && (*recs = calloc(n, sizeof(imp_rec))) == NULL)
		return -1;
	for (i = 0; i < n && rc >= 0; i++)
		if ((rc = check(im, i, &ids, &(*recs)[*nrecs])) > 0)
			(*nrecs)++;
	map_free(&ids);
	return rc < 0 ? -1 : 0;
}

/* One record of transactions. */
static int
check_transaction(importer *im, size_t i, strmap *ids, imp_rec *x)
{
	const json *t = im->txs->items[i];
	const char *id = str_member(t, "id"),
			   *uid = str_member(t, "user_id"),
			   *type = str_member(t, "type"),
			   *why;
	char		label[128],
				dk[512];
	int64_t		m = 0,
			   *sum,
				next;
	int			bad = 0,
				added;

	snprintf(label, sizeof(label), "%zu", i);
	if (t->type != JSON_OBJECT)
		return reject(im, "transactions", label, "not an object"), 0;
	if (id == NULL || id[0] == '\0')
		return reject(im, "transactions", label, "needs a string id (its idempotency key)"), 0;
	snprintf(label, sizeof(label), "%zu, id %.40s", i, id);
	if (!is_uuid(uid))
		bad = !reject(im, "transactions", label, "malformed user_id");
	if ((x->charge = tx_kind(type)) < 0)
		bad = !reject(im, "transactions", label, "type must be deposit or charge, not %s",
					  type ? type : "missing");
	if (!read_amount(json_get(t, "amount"), &m, &why))
		bad = !reject(im, "transactions", label, "amount is %s", why);
	else if (m == 0)
		bad = !reject(im, "transactions", label, "amount is zero");
	if (!tx_tokens(json_get(t, "tokens"), &x->tokens))
		bad = !reject(im, "transactions", label, "tokens must be a whole number >= 0");
	if (json_get(t, "model_id") && json_get(t, "model_id")->type != JSON_NULL &&
		str_member(t, "model_id") == NULL)
		bad = !reject(im, "transactions", label, "model_id must be a string or null");
	if (json_get(t, "timestamp") && json_get(t, "timestamp")->type != JSON_NULL)
	{
		const char *at = str_member(t, "timestamp"),
				   *tw = at ? import_time_problem(at, im->now, TIME_SKEW) : "must be a string";

		if (tw)
			bad = !reject(im, "transactions", label, "timestamp %s", tw);
	}
	if (uid)
	{
		char		fu[64];

		snprintf(dk, sizeof(dk), "%s/%s", fold(uid, fu, sizeof(fu)), id);
		if ((added = map_put(ids, dk, NULL)) < 0)
			return -1;
		if (added == 0)
			bad = !reject(im, "transactions", label, "duplicate id");
	}
	if (bad)
		return 0;
	if ((x->u = find_user(im, uid, 1)) == NULL)
		return -1;
	/* the user's listed deposits or charges, checked: never wrapped */
	sum = x->charge ? &x->u->charges : &x->u->deposits;
	if (__builtin_add_overflow(*sum, m, &next) || next >= PGM_MICRO_LIMIT)
	{
		reject(im, "transactions", label,
			   "amount would take the user's listed %s to 9000000000000 credits or more",
			   x->charge ? "charges" : "deposits");
		return 0;
	}
	*sum = next;
	x->rec = t;
	x->key = id;
	x->rec_index = i;
	pgm_micro_to_str(m, x->amount);
	return 1;
}

/* Is the member absent, null or a string? */
static int
null_or_string(const json *v)
{
	return v == NULL || v->type == JSON_NULL || v->type == JSON_STRING;
}

/* The problems of a session's messages, said; 1 when there was one. */
static int
reject_chat_messages(importer *im, const char *id, const json *msgs)
{
	char		why[128];
	size_t		k;
	int			bad = 0;

	if (msgs && msgs->type != JSON_NULL && msgs->type != JSON_ARRAY)
		bad = !reject(im, "chat_history", id, "messages must be an array");
	for (k = 0; msgs && msgs->type == JSON_ARRAY && k < msgs->n; k++)
	{
		const char *problem = chat_message_problem(msgs->items[k], why, sizeof(why));
		const json *ts = msgs->items[k]->type == JSON_OBJECT ?
		json_get(msgs->items[k], "timestamp") : NULL;

		if (problem)
			bad = !reject(im, "chat_history", id, "message %zu: %s", k, problem);
		else if (!null_or_string(ts))
			bad = !reject(im, "chat_history", id, "message %zu: timestamp must be a string", k);
		else if (ts && ts->type == JSON_STRING &&
				 (problem = import_time_problem(ts->text, im->now, TIME_SKEW)) != NULL)
			bad = !reject(im, "chat_history", id, "message %zu: timestamp %s", k, problem);
	}
	return bad;
}

/* One session of chat_history. */
static int
check_chat(importer *im, size_t i, strmap *ids, imp_rec *x)
{
	const char *id = im->chat->keys[i];
	const json *cs = im->chat->items[i];
	const char *uid = str_member(cs, "user_id");
	char		f[64];
	int			bad = 0,
				added;

	if (!is_uuid(id))
		bad = !reject(im, "chat_history", id, "malformed uuid");
	if (cs->type != JSON_OBJECT)
		return reject(im, "chat_history", id, "must be an object with user_id, model_id, messages"), 0;
	if (!is_uuid(uid))
		bad = !reject(im, "chat_history", id, "malformed user_id");
	if (!null_or_string(json_get(cs, "model_id")) || !null_or_string(json_get(cs, "title")) ||
		!null_or_string(json_get(cs, "agent_id")))
		bad = !reject(im, "chat_history", id, "model_id, title and agent_id must be strings");
	bad |= reject_chat_messages(im, id, json_get(cs, "messages"));
	if (is_uuid(id))
	{
		if ((added = map_put(ids, fold(id, f, sizeof(f)), NULL)) < 0)
			return -1;
		if (added == 0)
			bad = !reject(im, "chat_history", id, "listed twice");
	}
	if (bad)
		return 0;
	x->key = id;
	x->rec = cs;
	return (x->u = find_user(im, uid, 1)) == NULL ? -1 : 1;
}

/* Listed entries within the balance: else the user is inconsistent. */
static void
check_users(importer *im)
{
	size_t		i;

	for (i = 0; i < im->nusers; i++)
	{
		imp_user   *u = im->iusers[i];
		char		a1[PGM_AMOUNT_LEN],
					a2[PGM_AMOUNT_LEN],
					a3[PGM_AMOUNT_LEN],
					a4[PGM_AMOUNT_LEN];

		if (u->has_balance && (u->deposits > u->total || u->charges > u->spent))
		{
			reject(im, "balance_tracker", u->id,
				   "inconsistent: listed deposits %s / charges %s exceed total %s / spent %s",
				   pgm_micro_to_str(u->deposits, a1), pgm_micro_to_str(u->charges, a2),
				   pgm_micro_to_str(u->total, a3), pgm_micro_to_str(u->spent, a4));
			u->rejected = 1;
		}
		/* its user record, listed: the counts add up to the document */
		if (u->rejected && u->user != NULL)
			reject(im, "users", u->id, "its balance_tracker record was rejected");
	}
}

static int
validate(importer *im)
{
	if (validate_users(im) != 0 || validate_balances(im) != 0 ||
		validate_section(im, im->txs, check_transaction, &im->tx, &im->ntx) != 0 ||
		validate_section(im, im->chat, check_chat, &im->chats, &im->nchats) != 0 || im->oom)
	{
		fprintf(stderr, "pgmarket import: out of memory\n");
		return 1;
	}
	check_users(im);
	return 0;
}

/* ------------------------------------------------------------------------
 * Applying: batches of records, one import_batch statement each
 * ------------------------------------------------------------------------ */

/* What a record of a batch stands for, to count and report its outcome. */
typedef struct
{
	int			count;			/* C_* it counts in */
	const char *section;		/* of the report */
	char		key[160];
	imp_user   *u;				/* its user, marked when a user is rejected */
	int			is_user;
	int			opening;		/* an opening entry */
	long		messages;		/* chats: the session's messages */
} batch_item;

typedef struct
{
	importer   *im;
	const char *section;		/* import_batch's */
	char	   *buf;
	size_t		len;
	FILE	   *f;
	batch_item *items;
	int			n;
} batch;

static int
batch_open(batch *b)
{
	b->buf = NULL;
	b->len = 0;
	b->n = 0;
	if ((b->f = open_memstream(&b->buf, &b->len)) == NULL)
		return -1;
	fputc('[', b->f);
	return 0;
}

/* Sends the batch, counts and reports what became of each record; 0 or -1. */
static int
batch_flush(batch *b)
{
	importer   *im = b->im;
	pgm_result *r = NULL;
	int			row,
				rc = 0;

	fputc(']', b->f);
	if (fclose(b->f) != 0)
		return -1;
	b->f = NULL;
	if (b->n > 0)
	{
		if (pgm_import_batch(conn, b->section, b->buf, &r) != PGM_OK)
		{
			progress_end(&im->p);
			complain("import: import_batch");
			rc = -1;
		}
		for (row = 0; rc == 0 && row < pgm_result_rows(r); row++)
		{
			int			idx = atoi(pgm_result_value(r, row, "idx")) - 1;
			const char *outcome = pgm_result_value(r, row, "outcome");
			const char *reasons = pgm_result_value(r, row, "reasons");
			batch_item *it;

			if (idx < 0 || idx >= b->n)
				continue;
			it = &b->items[idx];
			if (strcmp(outcome, "rejected") == 0)
			{
				char	   *why = strdup(reasons ? reasons : "{}");
				size_t		wl = why ? strlen(why) : 0;

				/* {"reason (SQLSTATE)"}: the one reason, unquoted */
				if (why && wl >= 4 && why[1] == '"')
				{
					char	   *d = why,
							   *s = why + 2;

					for (; *s && !(s[0] == '"' && s[1] == '}'); s++)
					{
						if (*s == '\\' && s[1])
							s++;
						*d++ = *s;
					}
					*d = '\0';
				}
				else if (why && wl >= 2)
				{
					memmove(why, why + 1, wl - 2);
					why[wl - 2] = '\0';
				}
				reject(im, it->section, it->key, "%s", why ? why : "rejected");
				free(why);
				if (it->opening && it->u)
					it->u->opening_bad = 1;
				if (it->is_user && it->u)
					it->u->rejected = 1;
				continue;
			}
			if (strcmp(outcome, "created") == 0)
			{
				if (it->opening)
					it->u->opening_new = 1;
				else
					im->c[it->count].created++;
				if (it->count == C_TXS || it->opening)
					im->entries_new++;
				else if (it->count == C_KEYS)
					im->keys_new++;
				else if (it->count == C_CHATS)
					im->chat_messages_new += it->messages;
			}
			else
			{
				if (!it->opening)
					im->c[it->count].present++;
				if (it->count == C_TXS || it->opening)
					im->entries_present++;
				else if (it->count == C_KEYS)
					im->keys_present++;
			}
		}
		pgm_result_free(r);
		progress_step(&im->p, b->n);
	}
	free(b->buf);
	b->buf = NULL;
	b->n = 0;
	if (rc == 0 && batch_open(b) != 0)
		rc = -1;
	return rc;
}

/* The next item of the batch (the record's text written by the caller). */
static batch_item *
batch_add(batch *b, int count, const char *section, const char *key, imp_user *u)
{
	batch_item *it = &b->items[b->n++];

	memset(it, 0, sizeof(*it));
	it->count = count;
	it->section = section;
	snprintf(it->key, sizeof(it->key), "%s", key);
	it->u = u;
	if (b->n > 1)
		fputc(',', b->f);
	return it;
}

/* After a record: send the batch when it is full. */
static int
batch_next(batch *b)
{
	fflush(b->f);
	if (b->n >= BATCH_RECORDS || b->len >= BATCH_BYTES)
		return batch_flush(b);
	return 0;
}

static void
put_member(FILE *f, const char *name, const char *value, int *first)
{
	if (value == NULL)
		return;
	fprintf(f, "%s\"%s\": ", *first ? "" : ", ", name);
	json_write_string(f, value);
	*first = 0;
}

static int
apply_users(importer *im, batch *b)
{
	size_t		i;

	b->section = "users";
	for (i = 0; i < im->nusers; i++)
	{
		imp_user   *u = im->iusers[i];
		batch_item *it;
		int			first = 1;

		if (u->user == NULL || u->rejected)
			continue;
		it = batch_add(b, C_USERS, "users", u->id, u);
		it->is_user = 1;
		fputc('{', b->f);
		put_member(b->f, "id", u->id, &first);
		put_member(b->f, "email", str_member(u->user, "email"), &first);
		put_member(b->f, "username", str_member(u->user, "username"), &first);
		put_member(b->f, "password_hash", str_member(u->user, "password_hash"), &first);
		put_member(b->f, "created_at", str_member(u->user, "created_at"), &first);
		fputc('}', b->f);
		if (batch_next(b) != 0)
			return -1;
	}
	return batch_flush(b);
}

/* One entry of the ledger, as import_batch reads it. */
static void
put_entry(FILE *f, const char *uid, int charge, const char *amount, const char *key,
		  const char *model, int64_t tokens, const char *note, const char *ts)
{
	int			first = 1;

	fputc('{', f);
	put_member(f, "user_id", uid, &first);
	put_member(f, "type", charge ? "charge" : "deposit", &first);
	put_member(f, "amount", amount, &first);
	put_member(f, "key", key, &first);
	put_member(f, "model_id", model, &first);
	put_member(f, "note", note, &first);
	put_member(f, "created_at", ts, &first);
	fprintf(f, ", \"tokens\": %lld}", (long long) tokens);
}

/*
 * The ledger: the deposits, the opening deposits (total - deposits), the
 * charges, the opening charges (spent - charges), so that every charge
 * meets the money it was paid with.  An opening charge carries no model:
 * no usage view counts it.
 */
static int
apply_ledger(importer *im, batch *b)
{
	int			pass;
	size_t		i;

	b->section = "entries";
	for (pass = 0; pass < 2; pass++)
	{
		for (i = 0; i < im->ntx; i++)
		{
			imp_rec    *x = &im->tx[i];
			char		label[160];

			if (x->charge != pass)
				continue;
			if (x->u->rejected)
			{
				snprintf(label, sizeof(label), "%zu, id %.40s", (size_t) (x->rec_index), x->key);
				reject(im, "transactions", label, "its user was rejected");
				progress_step(&im->p, 1);
				continue;
			}
			snprintf(label, sizeof(label), "%.120s", x->key);
			batch_add(b, C_TXS, "transactions", label, x->u);
			put_entry(b->f, x->u->id, x->charge, x->amount, x->key,
					  str_member(x->rec, "model_id"), x->tokens, NULL,
					  str_member(x->rec, "timestamp"));
			if (batch_next(b) != 0)
				return -1;
		}
		for (i = 0; i < im->nusers; i++)
		{
			imp_user   *u = im->iusers[i];
			int64_t		diff;
			char		key[96],
						amount[PGM_AMOUNT_LEN];
			batch_item *it;

			if (!u->has_balance || u->rejected)
				continue;
			diff = pass == 0 ? u->total - u->deposits : u->spent - u->charges;
			if (diff <= 0)
				continue;
			pgm_micro_to_str(diff, amount);
			snprintf(key, sizeof(key), "import-opening-%s-%s", pass ? "charge" : "deposit", u->id);
			it = batch_add(b, C_BALANCES, "balance_tracker", u->id, u);
			it->opening = 1;
			put_entry(b->f, u->id, pass, amount, key, NULL, 0,
					  pass ? NULL : "import: opening balance", NULL);
			if (batch_next(b) != 0)
				return -1;
		}
		if (batch_flush(b) != 0)
			return -1;
	}
	/* each balance: created when an opening entry was */
	for (i = 0; i < im->nusers; i++)
	{
		imp_user   *u = im->iusers[i];

		if (!u->has_balance)
			continue;
		if (u->rejected || u->opening_bad)
			continue;			/* listed with its reason */
		else if (u->opening_new)
			im->c[C_BALANCES].created++;
		else
			im->c[C_BALANCES].present++;
	}
	return 0;
}

/* The last four characters of a UTF-8 secret (the vault's hint). */
static const char *
last_four(const char *s, size_t len)
{
	const char *p = s + len;
	int			chars = 0;

	while (p > s && chars < 4)
	{
		p--;
		if (((unsigned char) *p & 0xC0) != 0x80)
			chars++;
	}
	return p;
}

/* Provider keys, sealed to the vault's public key on the way. */
static int
apply_provider_keys(importer *im, batch *b)
{
	unsigned char pk[PGM_PUBLICKEY_BYTES];
	int			have_pk = 0;
	size_t		i,
				k;
	strmap		dup = {0};
	char		f[64];

	/* one user listed twice: neither list is the one the document means */
	if (twice_listed(im->keys, &dup) != 0)
	{
		map_free(&dup);
		fprintf(stderr, "pgmarket import: out of memory\n");
		return -1;
	}
	b->section = "provider_keys";
	for (i = 0; im->keys && i < im->keys->n; i++)
	{
		const char *uid = im->keys->keys[i];
		const json *pks = im->keys->items[i];
		imp_user   *u = is_uuid(uid) ? find_user(im, uid, 0) : NULL;

		if (!is_uuid(uid) || pks->type != JSON_OBJECT)
		{
			reject(im, "api_keys", uid, "%s", is_uuid(uid) ? "must be an object of provider: key"
				   : "malformed uuid");
			continue;
		}
		if (map_get(&dup, fold(uid, f, sizeof(f))))
		{
			reject(im, "api_keys", uid, "listed twice (uuids that differ in case only are one user)");
			continue;
		}
		for (k = 0; k < pks->n; k++)
		{
			const json *secret = pks->items[k];
			char		rec[160];
			size_t		j;
			unsigned char *sealed;
			char	   *b64;
			size_t		slen,
						b64len;
			int			first = 1;

			snprintf(rec, sizeof(rec), "%s.%.100s", uid, pks->keys[k]);
			if (secret->type != JSON_STRING || secret->len < 4 || secret->len > 4096)
			{
				reject(im, "api_keys", rec, "the key must be a string of 4 to 4096 characters");
				continue;
			}
			for (j = 0; j < secret->len; j++)
				if (isspace((unsigned char) secret->text[j]) ||
					iscntrl((unsigned char) secret->text[j]))
					break;
			if (j != secret->len)
			{
				reject(im, "api_keys", rec, "malformed key (contains white space)");
				continue;
			}
			/* its own reasons first, then its user's */
			if (u && u->rejected)
			{
				reject(im, "api_keys", rec, "its user was rejected");
				continue;
			}
			if (!have_pk)
			{
				if (pgm_vault_public_key(conn, pk) != PGM_OK)
				{
					progress_end(&im->p);
					complain("import: vault_public_key");
					goto fail;
				}
				have_pk = 1;
			}
			slen = secret->len + crypto_box_SEALBYTES;
			b64len = sodium_base64_ENCODED_LEN(slen, sodium_base64_VARIANT_ORIGINAL);
			sealed = malloc(slen);
			b64 = malloc(b64len);
			if (sealed == NULL || b64 == NULL ||
				crypto_box_seal(sealed, (const unsigned char *) secret->text, secret->len, pk) != 0)
			{
				free(sealed);
				free(b64);
				fprintf(stderr, "pgmarket import: sealing a key failed\n");
				goto fail;
			}
			sodium_bin2base64(b64, b64len, sealed, slen, sodium_base64_VARIANT_ORIGINAL);
			batch_add(b, C_KEYS, "api_keys", rec, u);
			fputc('{', b->f);
			put_member(b->f, "user_id", uid, &first);
			put_member(b->f, "provider", pks->keys[k], &first);
			put_member(b->f, "sealed", b64, &first);
			if (secret->len >= 8)
				put_member(b->f, "hint", last_four(secret->text, secret->len), &first);
			put_member(b->f, "label", "imported", &first);
			fputc('}', b->f);
			free(sealed);
			free(b64);
			if (batch_next(b) != 0)
				goto fail;
		}
	}
	map_free(&dup);
	return batch_flush(b);
fail:
	map_free(&dup);
	return -1;
}

/* Chat sessions under their ids, each message with its time. */
static int
apply_chats(importer *im, batch *b)
{
	size_t		i,
				j;

	if (im->chat && im->chat->n > 0)
	{
		im->have_chat = server_has("pgmarket.create_chat_session(uuid,text,text,text,uuid)");
		if (!im->have_chat)
			fprintf(stderr, "pgmarket import: warning: section chat_history skipped: "
					"this server has no chat functions (create_chat_session)\n");
	}
	b->section = "chats";
	for (i = 0; im->have_chat && i < im->nchats; i++)
	{
		imp_rec    *ch = &im->chats[i];
		const json *msgs = json_get(ch->rec, "messages");
		const char *model = str_member(ch->rec, "model_id");
		batch_item *it;
		int			first = 1;

		if (ch->u->rejected)
		{
			reject(im, "chat_history", ch->key, "its user was rejected");
			progress_step(&im->p, 1);
			continue;
		}
		it = batch_add(b, C_CHATS, "chat_history", ch->key, ch->u);
		fputc('{', b->f);
		put_member(b->f, "id", ch->key, &first);
		put_member(b->f, "user_id", ch->u->id, &first);
		put_member(b->f, "model_id", model ? model : "unknown", &first);
		put_member(b->f, "title", str_member(ch->rec, "title"), &first);
		put_member(b->f, "agent_id", str_member(ch->rec, "agent_id"), &first);
		fputs(", \"messages\": [", b->f);
		for (j = 0; msgs && msgs->type == JSON_ARRAY && j < msgs->n; j++)
		{
			const json *m = msgs->items[j];
			const json *tokens = json_get(m, "tokens"),
					   *cost = json_get(m, "cost"),
					   *tools = json_get(m, "tool_calls");
			int64_t		micro = 0;
			char		amount[PGM_AMOUNT_LEN] = "0";
			const char *why;
			int			mf = 1;

			if (cost && cost->type != JSON_NULL && read_amount(cost, &micro, &why))
				pgm_micro_to_str(micro, amount);
			fputs(j ? ", {" : "{", b->f);
			put_member(b->f, "role", str_member(m, "role"), &mf);
			put_member(b->f, "content", str_member(m, "content"), &mf);
			put_member(b->f, "cost", amount, &mf);
			put_member(b->f, "created_at", str_member(m, "timestamp"), &mf);
			if (tokens && tokens->type == JSON_NUMBER)
				fprintf(b->f, ", \"tokens\": %s", tokens->text);
			if (tools && tools->type != JSON_NULL)
			{
				fputs(", \"tool_calls\": ", b->f);
				json_write_value(b->f, tools);
			}
			fputc('}', b->f);
		}
		fputs("]}", b->f);
		it->messages = msgs && msgs->type == JSON_ARRAY ? (long) msgs->n : 0;
		if (batch_next(b) != 0)
			return -1;
	}
	return batch_flush(b);
}

/* The agent platform's store: templates, then projects (a call each). */
static int
apply_store(importer *im)
{
	if (json_get(im->doc, "projects") == NULL && json_get(im->doc, "templates") == NULL)
		return 0;
	im->have_store = server_has("pgmarket.get_template(text)");
	if (!im->have_store)
		fprintf(stderr, "pgmarket import: warning: sections projects and templates "
				"skipped: this server has no store functions (save_project)\n");
	else if (im->dry_run)
	{
		im->have_store = 0;
		fprintf(stderr, "pgmarket import: note: --dry-run does not try the sections "
				"projects and templates on the server\n");
	}
	else if (store_import(conn, im->doc, reject_store, im, &im->projects, &im->templates) != 0)
	{
		complain("import: projects and templates");
		return -1;
	}
	return 0;
}

static int
apply(importer *im)
{
	batch		b = {0};
	int			rc;

	b.im = im;
	if ((b.items = calloc(BATCH_RECORDS, sizeof(batch_item))) == NULL || batch_open(&b) != 0)
	{
		free(b.items);
		fprintf(stderr, "pgmarket import: out of memory\n");
		return -1;
	}
	im->steps = (long) im->nusers * 3 + (long) im->ntx + (long) im->nchats;
	if (im->keys)
		im->steps += (long) im->keys->n;
	progress_start(&im->p, im->dry_run ? "checking" : "importing", im->steps);
	rc = apply_users(im, &b) != 0 || apply_ledger(im, &b) != 0 ||
		apply_provider_keys(im, &b) != 0 || apply_chats(im, &b) != 0 ? -1 : 0;
	progress_end(&im->p);
	if (b.f)
		fclose(b.f);
	free(b.buf);
	free(b.items);
	if (rc == 0)
		rc = apply_store(im);
	return rc;
}

/* ------------------------------------------------------------------------
 * Reporting
 * ------------------------------------------------------------------------ */

static long
total_rejected(const importer *im)
{
	return (long) im->nrej;
}

/* The report file: counts and every rejected record with all its reasons. */
static int
write_report(const importer *im, const char *path)
{
	FILE	   *f = open_output("import", path, 0600);	/* it names users */
	size_t		i,
				k;
	int			c;

	if (f == NULL)
		return -1;
	fprintf(f, "{\"dry_run\": %s,\n \"counts\": {", im->dry_run ? "true" : "false");
	for (c = 0; c < C_N; c++)
	{
		counts		n = im->c[c];

		if (c == C_PROJECTS)
			n.created = im->projects.created, n.present = im->projects.present;
		if (c == C_TEMPLATES)
			n.created = im->templates.created, n.present = im->templates.present;
		/* what was rejected with its user, and each rejection listed */
		for (i = 0; i < im->nrej; i++)
			if (strcmp(im->rej[i].section, count_names[c]) == 0)
				n.rejected++;
		fprintf(f, "%s\n  \"%s\": {\"created\": %ld, \"present\": %ld, \"rejected\": %ld}",
				c ? "," : "", count_names[c], n.created, n.present, n.rejected);
	}
	fputs("},\n \"rejected\": [", f);
	for (i = 0; i < im->nrej; i++)
	{
		fprintf(f, "%s\n  {\"section\": ", i ? "," : "");
		json_write_string(f, im->rej[i].section);
		fputs(", \"key\": ", f);
		json_write_string(f, im->rej[i].key);
		fputs(", \"reasons\": [", f);
		for (k = 0; k < im->rej[i].nreasons; k++)
		{
			if (k)
				fputs(", ", f);
			json_write_string(f, im->rej[i].reasons[k]);
		}
		fputs("]}", f);
	}
	fputs("\n ]}\n", f);
	if (f == stdout)
		return fflush(f) == 0 ? 0 : -1;
	return fclose(f) == 0 ? 0 : -1;
}

/* The rejections on stderr, then the counts on stdout; the exit status. */
static int
report(const importer *im, const char *report_path)
{
	size_t		i,
				k;

	for (i = 0; i < im->nrej; i++)
	{
		/* text of the document, its control characters escaped: no terminal escapes */
		fprintf(stderr, "rejected %s[%s]: ", im->rej[i].section, printable(im->rej[i].key));
		for (k = 0; k < im->rej[i].nreasons; k++)
			fprintf(stderr, "%s%s", k ? "; " : "", printable(im->rej[i].reasons[k]));
		fputc('\n', stderr);
	}
	if (im->dry_run)
		printf("dry run: nothing was written; what an import would do:\n");
	printf("users: %ld created, %ld already present\n", im->c[C_USERS].created,
		   im->c[C_USERS].present);
	printf("ledger entries: %ld new, %ld already present\n", im->entries_new,
		   im->entries_present);
	printf("provider keys: %ld stored (sealed), %ld already present\n", im->keys_new,
		   im->keys_present);
	if (im->have_chat)
		printf("chat sessions: %ld created (%ld messages), %ld already present\n",
			   im->c[C_CHATS].created, im->chat_messages_new, im->c[C_CHATS].present);
	if (im->have_store)
	{
		printf("templates: %ld created, %ld already present\n",
			   im->templates.created, im->templates.present);
		printf("projects: %ld created, %ld already present\n",
			   im->projects.created, im->projects.present);
	}
	printf("rejected records: %ld\n", total_rejected(im));
	if (report_path && write_report(im, report_path) != 0)
		return 1;
	if (total_rejected(im) == 0)
		return 0;
	fprintf(stderr, "pgmarket import: %ld records rejected (listed above); "
			"fix them and run the import again: what was loaded stays, "
			"nothing is loaded twice\n", total_rejected(im));
	return 1;
}

static void
free_importer(importer *im)
{
	size_t		i,
				k;

	for (i = 0; i < im->nrej; i++)
	{
		for (k = 0; k < im->rej[i].nreasons; k++)
			free(im->rej[i].reasons[k]);
		free(im->rej[i].reasons);
		free(im->rej[i].section);
		free(im->rej[i].key);
	}
	free(im->rej);
	for (i = 0; i < im->nusers; i++)
		free(im->iusers[i]);
	free(im->iusers);
	map_free(&im->by_id);
	free(im->tx);
	free(im->chats);
	json_free(im->doc);
}

/* Are the two paths one file (the same name, or the same device and inode)? */
static int
same_file(const char *doc, const char *other)
{
	struct stat a,
				b;

	if (strcmp(doc, "-") == 0)
		return strcmp(other, "/dev/stdin") == 0;
	if (strcmp(doc, other) == 0)
		return 1;
	return stat(doc, &a) == 0 && stat(other, &b) == 0 &&
		a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int
cmd_import(int argc, char **argv)
{
	char	   *a[1];
	importer	im = {0};
	const char *report_path = NULL;
	const cli_opt opts[] = {{"report", &report_path, NULL},
	{"dry-run", NULL, &im.dry_run}, {NULL, NULL, NULL}};
	int			rc,
				npos;

	im.now = (int64_t) time(NULL);
	if (parse_args("import", argc, argv, opts, a, 1, 1, &npos,
				   "import needs FILE (or - for stdin)"))
		return 2;
	if (report_path && same_file(a[0], report_path))
		return usage_error("import: the report %s is the document itself", report_path);
	if (open_conn() != 0)
		return 3;
	if ((rc = read_document(&im, a[0])) != 0)
		return rc;
	rc = validate(&im);
	if (rc == 0 && im.dry_run && pgm_begin(conn) != PGM_OK)
		rc = failed("import: BEGIN");
	if (rc == 0)
	{
		/* the server lost or refused a call: 3, not "records rejected" */
		rc = apply(&im) != 0 ? 3 : 0;
		if (im.dry_run && pgm_rollback(conn) != PGM_OK)
			rc = failed("import: ROLLBACK");
		if (rc == 0)
			rc = report(&im, report_path);
	}
	free_importer(&im);
	return rc;
}
