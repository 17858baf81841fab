/*
 * test_batch.c: pgm_deduct_batch, the pipelined batch, against a live server.
 *
 *   test_batch             every test, in the database of the PG* environment
 *   test_batch bouncer CONNINFO
 *                          the same batches through pgbouncer in transaction
 *                          mode (CONNINFO), PG* naming the server itself
 *
 * The rule checked throughout: each charge of a batch gets what a
 * pgm_deduct_balance call of its own, made at the same point of the same
 * sequence, would have got (status, SQLSTATE, message, detail, hint,
 * balance, replay).  Each sequence runs twice on twin users, once as a
 * batch and once call by call, and the two are compared charge by charge.
 * Closes with "# tally: P F" for run.sh.
 */
#include "pgmarket.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "pgm_private.h"

static char suffix[16];			/* per run, for unique emails */
static int	user_seq;

/* Slots of a sequence's users: a twin of each is made for each run. */
enum
{
	U_MAIN,
	U_SECOND,
	U_GONE,						/* deactivated */
	U_COUNT
};

/* A charge of a sequence: user a slot (-1: the text in user). */
typedef struct
{
	int			slot;
	const char *user;
	const char *amount;
	const char *model_id;
	int64_t		tokens;
	const char *key;
} charge_spec;

/* A charge's outcome, as compared. */
typedef struct
{
	pgm_status	status;
	char		sqlstate[PGM_SQLSTATE_LEN];
	char		balance[PGM_AMOUNT_LEN];
	int			replayed;
	char	   *msg;
	char	   *detail;
	char	   *hint;
} outcome;

static void
make_users(pgm_conn *c, const char *funds, char ids[U_COUNT][PGM_UUID_LEN])
{
	int			i;
	pgm_ledger_result lr;

	for (i = 0; i < U_COUNT; i++)
	{
		char		email[128],
					uname[64];

		snprintf(email, sizeof(email), "batch%d-%s@example.com", ++user_seq, suffix);
		snprintf(uname, sizeof(uname), "batch%d_%s", user_seq, suffix);
		EXPECT(pgm_create_user(c, email, uname, NULL, NULL, NULL, ids[i]), PGM_OK, c);
		/* the deactivated one without money: an export leaves it out */
		if (i != U_GONE)
			EXPECT(pgm_add_funds(c, ids[i], funds, NULL, NULL, &lr), PGM_OK, c);
	}
	EXPECT(pgm_deactivate_user(c, ids[U_GONE]), PGM_OK, c);
}

static void
to_charges(const charge_spec *spec, size_t n, char ids[U_COUNT][PGM_UUID_LEN],
		   pgm_charge *ch)
{
	size_t		i;

	for (i = 0; i < n; i++)
		ch[i] = (pgm_charge) {
			spec[i].slot >= 0 ? ids[spec[i].slot] : spec[i].user,
				spec[i].amount, spec[i].model_id, spec[i].tokens, spec[i].key
		};
}

/*
 * s with every id of from[] written as the twin in to[], and the number
 * after "entry " (the twins' entries are numbered apart) as N; caller frees.
 */
static char *
twin_text(const char *s, char from[U_COUNT][PGM_UUID_LEN], char to[U_COUNT][PGM_UUID_LEN])
{
	char	   *out = strdup(s ? s : "");
	int			i;
	char	   *p;

	for (i = 0; out && from && i < U_COUNT; i++)
		while ((p = strstr(out, from[i])) != NULL)
			memcpy(p, to[i], PGM_UUID_LEN - 1);
	for (p = out; p && (p = strstr(p, "entry ")) != NULL;)
	{
		char	   *d = p += 6;

		while (*d >= '0' && *d <= '9')
			d++;
		if (d > p)
		{
			*p++ = 'N';
			memmove(p, d, strlen(d) + 1);
		}
	}
	return out;
}

static void
free_outcomes(outcome *o, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
	{
		free(o[i].msg);
		free(o[i].detail);
		free(o[i].hint);
	}
	free(o);
}

/* The sequence call by call, its words written for the batch's twins. */
static outcome *
run_single(pgm_conn *c, const pgm_charge *ch, size_t n,
		   char ids[U_COUNT][PGM_UUID_LEN], char twins[U_COUNT][PGM_UUID_LEN])
{
	outcome    *o = calloc(n, sizeof(*o));
	size_t		i;

	for (i = 0; o && i < n; i++)
	{
		pgm_ledger_result lr;

		memset(&lr, 0, sizeof(lr));
		o[i].status = pgm_deduct_balance(c, ch[i].user_id, ch[i].amount, ch[i].model_id,
										 ch[i].tokens_used, ch[i].idempotency_key, &lr);
		snprintf(o[i].sqlstate, sizeof(o[i].sqlstate), "%s",
				 o[i].status == PGM_OK ? "00000" : pgm_sqlstate(c));
		if (o[i].status == PGM_OK)
			memcpy(o[i].balance, lr.available_balance, sizeof(o[i].balance));
		o[i].replayed = lr.replayed;
		o[i].msg = twin_text(o[i].status == PGM_OK ? "" : pgm_errmsg(c), ids, twins);
		o[i].detail = twin_text(o[i].status == PGM_OK ? "" : pgm_errdetail(c), ids, twins);
		o[i].hint = twin_text(o[i].status == PGM_OK ? "" : pgm_errhint(c), ids, twins);
	}
	return o;
}

static outcome *
from_batch(pgm_conn *c, const pgm_charge_result *r, size_t n)
{
	outcome    *o = calloc(n, sizeof(*o));
	size_t		i;

	for (i = 0; o && i < n; i++)
	{
		o[i].status = r[i].status;
		memcpy(o[i].sqlstate, r[i].sqlstate, sizeof(o[i].sqlstate));
		memcpy(o[i].balance, r[i].available_balance, sizeof(o[i].balance));
		o[i].replayed = r[i].replayed;
		o[i].msg = twin_text(pgm_batch_errmsg(c, i), NULL, NULL);
		o[i].detail = twin_text(pgm_batch_errdetail(c, i), NULL, NULL);
		o[i].hint = twin_text(pgm_batch_errhint(c, i), NULL, NULL);
	}
	return o;
}

/* How many charges differ; each difference printed. */
static int
differences(const char *name, const outcome *batch, const outcome *single, size_t n)
{
	size_t		i;
	int			bad = 0;

	for (i = 0; i < n; i++)
	{
		const outcome *b = &batch[i],
				   *s = &single[i];

		if (b->status == s->status && strcmp(b->sqlstate, s->sqlstate) == 0 &&
			strcmp(b->balance, s->balance) == 0 && b->replayed == s->replayed &&
			strcmp(b->msg, s->msg) == 0 && strcmp(b->detail, s->detail) == 0 &&
			strcmp(b->hint, s->hint) == 0)
			continue;
		bad++;
		printf("# %s, charge %zu: batch %s %s [%s] \"%s\" \"%s\" / single %s %s [%s] \"%s\" \"%s\"\n",
			   name, i, pgm_status_name(b->status), b->sqlstate, b->balance, b->msg, b->detail,
			   pgm_status_name(s->status), s->sqlstate, s->balance, s->msg, s->detail);
	}
	return bad;
}

/* A user's count of ledger entries and their sum, as one text. */
static void
books(pgm_conn *c, const char *user, char *out, size_t size)
{
	const char *p[1] = {user};
	pgm_result *r = NULL;

	snprintf(out, size, "?");
	if (pgm_exec(c, "SELECT count(*) || '/' || coalesce(sum(amount), 0) AS b "
				 "FROM pgmarket.ledger WHERE user_id = $1::uuid", 1, p, &r) == PGM_OK)
		snprintf(out, size, "%s", pgm_result_value(r, 0, "b"));
	pgm_result_free(r);
}

/* Has each twin as many ledger entries as the other, of the same sum? */
static int
same_books(pgm_conn *c, char a[U_COUNT][PGM_UUID_LEN], char b[U_COUNT][PGM_UUID_LEN])
{
	int			i,
				same = 1;

	for (i = 0; i < U_COUNT; i++)
	{
		char		x[128],
					y[128];

		books(c, a[i], x, sizeof(x));
		books(c, b[i], y, sizeof(y));
		if (strcmp(x, y) != 0 || strcmp(x, "?") == 0)
		{
			printf("# books of slot %d: batch %s, single %s\n", i, x, y);
			same = 0;
		}
	}
	return same;
}

/*
 * The sequence as a batch on one set of twins, call by call on the other:
 * each charge's outcome must be the same.  bc runs the batch (it may go
 * through pgbouncer), c the single calls.  Returns the batch's results
 * (caller frees) for the caller's own checks.
 */
static pgm_charge_result *
compare_run(const char *name, pgm_conn *bc, pgm_conn *c, const charge_spec *spec,
			size_t n, const char *funds, int as_main)
{
	char		bids[U_COUNT][PGM_UUID_LEN],
				sids[U_COUNT][PGM_UUID_LEN];
	pgm_charge *ch = calloc(n, sizeof(*ch));
	pgm_charge_result *res = calloc(n, sizeof(*res));
	outcome    *ob,
			   *os;

	printf("# %s: %zu charges\n", name, n);
	make_users(c, funds, bids);
	make_users(c, funds, sids);
	to_charges(spec, n, bids, ch);
	if (as_main)
		EXPECT(pgm_set_actor(bc, bids[U_MAIN]), PGM_OK, bc);
	EXPECT(pgm_deduct_batch(bc, ch, n, res), PGM_OK, bc);
	ob = from_batch(bc, res, n);
	if (as_main)
		EXPECT(pgm_set_actor(bc, NULL), PGM_OK, bc);
	to_charges(spec, n, sids, ch);
	if (as_main)
		EXPECT(pgm_set_actor(c, sids[U_MAIN]), PGM_OK, c);
	os = run_single(c, ch, n, sids, bids);
	if (as_main)
		EXPECT(pgm_set_actor(c, NULL), PGM_OK, c);
	check(ob && os && differences(name, ob, os, n) == 0,
		  "every charge of the batch as a call of its own", __FILE__, __LINE__, bc);
	check(same_books(c, bids, sids), "the twins' books the same", __FILE__, __LINE__, c);
	free_outcomes(ob, n);
	free_outcomes(os, n);
	free(ch);
	return res;
}

static char long_model[301];
static char long_key[202];
static char long_control[130];
static char wide_model[2 * 201 + 1];	/* 201 two-byte characters */
static char huge_amount[10001];
static char *mega_model;

static void
fill_inputs(void)
{
	int			i;

	memset(long_model, 'm', sizeof(long_model) - 1);
	memset(long_key, 'k', sizeof(long_key) - 1);
	memset(long_control, 'c', sizeof(long_control) - 1);
	long_control[50] = '\x1b';
	for (i = 0; i < 201; i++)
		memcpy(wide_model + 2 * i, "\xc3\xa9", 2);	/* é */
	memset(huge_amount, '7', sizeof(huge_amount) - 1);
	mega_model = malloc(1 << 20);
	memset(mega_model, 'x', (1 << 20) - 1);
	mega_model[(1 << 20) - 1] = '\0';
}

/* Every error kind of deduct_balance, those the client refuses and the rest. */
static void
test_every_error(pgm_conn *bc, pgm_conn *c)
{
	const char *unknown = "c1ffffff-0000-4000-8000-00000000fffe";
	const charge_spec spec[] = {
		{U_MAIN, NULL, "0.25", "gpt-4o", 100, "k1"},	/* applies */
		{U_MAIN, NULL, "5", "gpt-4o", 100, NULL},	/* PM001 */
		{-1, unknown, "0.1", "gpt-4o", 1, NULL},	/* PM002 */
		{U_GONE, NULL, "0.1", "gpt-4o", 1, NULL},	/* PM002, deactivated */
		{U_MAIN, NULL, "0.30", "gpt-4o", 100, "k1"},	/* PM003 */
		{U_MAIN, NULL, "0.25", "gpt-4o", 100, "k1"},	/* replay */
		{-1, NULL, "0.1", "m", 1, NULL},	/* 22004 user_id, on the client */
		{U_MAIN, NULL, NULL, "m", 1, NULL}, /* 22004 amount */
		{U_MAIN, NULL, "0.1", NULL, 1, NULL},	/* 22004 model_id */
		{U_MAIN, NULL, "0", "m", 1, NULL},	/* 22023 zero */
		{U_MAIN, NULL, "0.000000", "m", 1, NULL},
		{U_MAIN, NULL, "-0", "m", 1, NULL},
		{U_MAIN, NULL, "-1.50", "m", 1, NULL},	/* 22023 negative */
		{U_MAIN, NULL, "0.0000001", "m", 1, NULL},	/* 22023, with a detail */
		{U_MAIN, NULL, "0007.1234567", "m", 1, NULL},
		{U_MAIN, NULL, "9000000000000", "m", 1, NULL},	/* 22003 */
		{U_MAIN, NULL, "8999999999999.999999", "m", 1, NULL},	/* PM001 */
		{U_MAIN, NULL, "00012345678901234.5", "m", 1, NULL},
		{U_MAIN, NULL, huge_amount, "m", 1, NULL},	/* the server's 22003 */
		{U_MAIN, NULL, "0.1", "", 1, NULL}, /* 22023 empty model */
		{U_MAIN, NULL, "0.1", long_model, 1, NULL},
		{U_MAIN, NULL, "0.1", mega_model, 1, NULL},
		{U_MAIN, NULL, "0.1", "a\tb", 1, NULL},
		{U_MAIN, NULL, "0.1", long_control, 1, NULL},
		{U_MAIN, NULL, "0.1", wide_model, 1, NULL},	/* the server counts */
		{U_MAIN, NULL, "0.1", "m", -5, NULL},	/* 22023 tokens */
		{U_MAIN, NULL, "0.1", "m", 1, long_key},	/* 22023 key */
		{U_MAIN, NULL, "0.1", "m", 1, ""},
		{-1, "not-a-uuid", "0.1", "m", 1, NULL},	/* 22P02, the server's */
		{-1, "{c1ffffff-0000-4000-8000-00000000fffe}", "0.1", "m", 1, NULL},
		{U_MAIN, NULL, "abc", "m", 1, NULL},
		{U_MAIN, NULL, "1e-7", "m", 1, NULL},
		{U_MAIN, NULL, " 0.05 ", "m", 1, NULL},
		{-1, NULL, "abc", "m", 1, NULL},	/* the cast fails before the NULL */
		{U_SECOND, NULL, "0.5", "m", 1, NULL},	/* applies */
		{U_MAIN, NULL, "0.10000000", "m", 1, "k2"},	/* applies: 0.1 */
		{U_MAIN, NULL, "0.10000000", "m", 1, "k2"},	/* replay */
	};
	size_t		n = sizeof(spec) / sizeof(spec[0]);
	pgm_charge_result *res;

	res = compare_run("every error kind", bc, c, spec, n, "1", 0);
	CHECK(res[0].status == PGM_OK && res[0].entry_id > 0 && res[5].replayed &&
		  res[5].entry_id == res[0].entry_id, bc);
	CHECK(res[1].status == PGM_INSUFFICIENT_FUNDS && strcmp(res[1].sqlstate, "PM001") == 0 &&
		  res[1].entry_id == 0, bc);
	CHECK(res[6].status == PGM_NULL_VALUE && res[13].status == PGM_INVALID_PARAMETER &&
		  res[15].status == PGM_OUT_OF_RANGE && res[28].status == PGM_SERVER_ERROR, bc);
	CHECK(strstr(pgm_batch_errdetail(bc, 13), "six fractional digits") != NULL, bc);
	CHECK(strcmp(pgm_batch_errmsg(bc, 0), "") == 0 && strcmp(pgm_batch_errmsg(bc, n), "") == 0, bc);
	free(res);
}

/* Under an actor: another user's charge is 42501, the actor's apply. */
static void
test_actor(pgm_conn *bc, pgm_conn *c)
{
	const charge_spec spec[] = {
		{U_MAIN, NULL, "0.25", "m", 1, NULL},
		{U_SECOND, NULL, "0.25", "m", 1, NULL}, /* 42501 */
		{-1, NULL, "0.1", "m", 1, NULL},	/* 22004, before the actor check */
		{U_MAIN, NULL, "0", "m", 1, NULL},	/* the server's: after the actor */
		{U_MAIN, NULL, "0.25", "m", 1, NULL},
	};
	pgm_charge_result *res;

	res = compare_run("under an actor", bc, c, spec, 5, "1", 1);
	CHECK(res[1].status == PGM_PERMISSION_DENIED && res[4].status == PGM_OK &&
		  strcmp(res[4].available_balance, "0.500000") == 0, bc);
	free(res);
}

/*
 * The charges of a generated test (at most GEN_MAX) and their idempotency
 * keys: gen_key(i, prefix, n) makes charge i's key "<prefix><n>".
 */
#define GEN_MAX 300
static charge_spec gen_spec[GEN_MAX];
static char gen_keys[GEN_MAX][16];

static const char *
gen_key(int i, const char *prefix, int n)
{
	snprintf(gen_keys[i], sizeof(gen_keys[i]), "%s%d", prefix, n);
	return gen_keys[i];
}

/* More charges than a transaction of the pipeline holds, failures at its edges. */
static void
test_windows(pgm_conn *bc, pgm_conn *c)
{
	const int	N = 300;
	charge_spec *spec = gen_spec;
	pgm_charge_result *res;
	int			i,
				good = 0;

	for (i = 0; i < N; i++)
	{
		int			fails = i == 0 || i == 62 || i == 63 || i == 64 || i == 127 ||
			i == 128 || i == 129 || i == 200 || i == 299;

		spec[i] = (charge_spec) {
			i % 3 == 0 ? U_SECOND : U_MAIN, NULL, fails ? "1000" : "0.01", "m", i,
				i % 7 == 0 ? gen_key(i, "w", i) : NULL
		};
		if (i == 150)
			spec[i].amount = NULL;	/* refused on the client, mid-window */
	}
	res = compare_run("windows", bc, c, spec, N, "2", 0);
	for (i = 0; i < N; i++)
		good += res[i].status == PGM_OK;
	CHECK(good == N - 10 && res[64].status == PGM_INSUFFICIENT_FUNDS &&
		  res[150].status == PGM_NULL_VALUE, bc);
	free(res);

	/* one user out of funds half way: every later charge fails on its own */
	for (i = 0; i < N; i++)
		spec[i] = (charge_spec) {U_MAIN, NULL, "0.01", "m", 1, NULL};
	res = compare_run("running dry", bc, c, spec, N, "1.5", 0);
	CHECK(res[149].status == PGM_OK && res[150].status == PGM_INSUFFICIENT_FUNDS &&
		  res[N - 1].status == PGM_INSUFFICIENT_FUNDS, bc);
	free(res);
}

/* NULL, empty and unusable arguments. */
static void
test_arguments(pgm_conn *c)
{
	pgm_charge	ch[1] = {{NULL, "1", "m", 0, NULL}};
	pgm_charge_result res[1];

	printf("# arguments\n");
	EXPECT(pgm_deduct_batch(NULL, ch, 1, res), PGM_CLIENT_ERROR, NULL);
	EXPECT(pgm_deduct_batch(c, NULL, 1, res), PGM_CLIENT_ERROR, c);
	EXPECT(pgm_deduct_batch(c, ch, 1, NULL), PGM_CLIENT_ERROR, c);
	EXPECT(pgm_deduct_batch(c, NULL, 0, NULL), PGM_OK, c);
	EXPECT(pgm_deduct_batch(c, ch, 0, res), PGM_OK, c);
	CHECK(strcmp(pgm_batch_errmsg(NULL, 0), "") == 0, c);
	/* inside a transaction block of the caller's */
	EXPECT(pgm_begin(c), PGM_OK, c);
	EXPECT(pgm_deduct_batch(c, ch, 1, res), PGM_CLIENT_ERROR, c);
	EXPECT(pgm_rollback(c), PGM_OK, c);
	EXPECT(pgm_deduct_batch(c, ch, 1, res), PGM_OK, c);
	CHECK(res[0].status == PGM_NULL_VALUE && strcmp(res[0].sqlstate, "22004") == 0 &&
		  strcmp(pgm_batch_errmsg(c, 0), "user_id must not be null") == 0, c);
	CHECK(PQpipelineStatus(pgm_pgconn(c)) == PQ_PIPELINE_OFF &&
		  PQtransactionStatus(pgm_pgconn(c)) == PQTRANS_IDLE, c);
	/* named prepared statements too */
	pgm_set_prepared(c, 1);
	{
		char		ids[U_COUNT][PGM_UUID_LEN];
		pgm_charge	two[2];
		pgm_charge_result r2[2];

		make_users(c, "1", ids);
		two[0] = (pgm_charge) {ids[U_MAIN], "0.4", "m", 0, NULL};
		two[1] = (pgm_charge) {ids[U_MAIN], "0.7", "m", 0, NULL};
		EXPECT(pgm_deduct_batch(c, two, 2, r2), PGM_OK, c);
		CHECK(r2[0].status == PGM_OK && r2[1].status == PGM_INSUFFICIENT_FUNDS, c);
	}
	pgm_set_prepared(c, 0);
}

/* ---- Failures inside a transaction, placed and generated ---------------- */

static const char *const unknown_user = "c1ffffff-0000-4000-8000-00000000fffd";

/*
 * N charges of 0.01 spread over two users, those at fail[] replaced by
 * failing ones (kind by kind: an unknown user, a deactivated one, beyond
 * the balance, an amount the server reads and refuses, a model the server
 * counts too long); compared with single calls.
 */
static pgm_charge_result *
run_failing_at(const char *name, pgm_conn *bc, pgm_conn *c, int n, const int *fail,
			   int nfail, const char *funds)
{
	charge_spec *spec = calloc(n, sizeof(*spec));
	pgm_charge_result *res;
	int			i;

	for (i = 0; i < n; i++)
		spec[i] = (charge_spec) {i % 2 ? U_SECOND : U_MAIN, NULL, "0.01", "m", 1, NULL};
	for (i = 0; i < nfail; i++)
	{
		charge_spec *f = &spec[fail[i]];

		switch (i % 5)
		{
			case 0:
				f->slot = -1, f->user = unknown_user;
				break;
			case 1:
				f->slot = U_GONE;
				break;
			case 2:
				f->amount = "1000";
				break;
			case 3:
				f->amount = "1e400";
				break;
			default:
				f->model_id = wide_model;
				break;
		}
	}
	res = compare_run(name, bc, c, spec, n, funds, 0);
	free(spec);
	return res;
}

/* Failures at a transaction's first, middle and last charge, several in one, all. */
static void
test_positions(pgm_conn *bc, pgm_conn *c)
{
	static const int edges[] = {0, 31, 63, 64, 65, 127, 128, 191, 199};
	static const int several[] = {3, 4, 5, 17, 30, 31, 32, 50, 61, 62, 63};
	static const int last[] = {63};
	static const int middle[] = {40};
	static int	every[130];
	pgm_charge_result *res;
	int			i,
				bad = 0;

	res = run_failing_at("a failure first in the first transaction", bc, c, 64, edges, 1, "5");
	CHECK(res[0].status == PGM_UNKNOWN_ACCOUNT && res[1].status == PGM_OK &&
		  res[63].status == PGM_OK, bc);
	free(res);
	res = run_failing_at("a failure last in the transaction", bc, c, 64, last, 1, "5");
	CHECK(res[62].status == PGM_OK && res[63].status == PGM_UNKNOWN_ACCOUNT, bc);
	free(res);
	res = run_failing_at("a failure in the middle", bc, c, 100, middle, 1, "5");
	CHECK(res[39].status == PGM_OK && res[40].status == PGM_UNKNOWN_ACCOUNT &&
		  res[41].status == PGM_OK && strcmp(res[41].available_balance, "4.790000") == 0, bc);
	free(res);
	res = run_failing_at("failures at the transactions' edges", bc, c, 200, edges,
						 (int) (sizeof(edges) / sizeof(edges[0])), "5");
	free(res);
	res = run_failing_at("several failures in one transaction", bc, c, 70, several,
						 (int) (sizeof(several) / sizeof(several[0])), "5");
	for (i = 0; i < 70; i++)
		bad += (res[i].status == PGM_OK) == (i == 3 || i == 4 || i == 5 || i == 17 ||
											 i == 30 || i == 31 || i == 32 || i == 50 ||
											 i == 61 || i == 62 || i == 63);
	CHECK(bad == 0, bc);
	free(res);
	for (i = 0; i < 130; i++)
		every[i] = i;
	res = run_failing_at("every charge fails", bc, c, 130, every, 130, "5");
	for (i = 0, bad = 0; i < 130; i++)
		bad += res[i].status == PGM_OK || res[i].entry_id != 0;
	CHECK(bad == 0, bc);
	free(res);
}

/*
 * Failures that come from the charges before them in the same transaction
 * (their user's balance spent, their key used): the charges before are
 * committed, and the failure is met again after them.
 */
static void
test_dependent(pgm_conn *bc, pgm_conn *c)
{
	const int	N = 140;
	charge_spec *spec = gen_spec;
	pgm_charge_result *res;
	int			i;

	for (i = 0; i < N; i++)
	{
		spec[i] = (charge_spec) {i % 4 == 3 ? U_SECOND : U_MAIN, NULL, "0.02", "m", 1,
			i % 3 == 0 ? gen_key(i, "d", i % 9) : NULL};
		if (i % 11 == 10)
			spec[i].amount = "0.03";	/* a key used with another amount: PM003 */
		if (i == 20 || i == 45 || i == 46)
			spec[i].amount = "0.9";		/* more than is left */
	}
	res = compare_run("failures from the charges before them", bc, c, spec, N, "1.5", 0);
	CHECK(res[9].status == PGM_OK && res[9].replayed && res[0].entry_id == res[9].entry_id, bc);
	free(res);
	res = compare_run("the same under an actor", bc, c, spec, N, "1.5", 1);
	free(res);
}

/* xorshift64*: the generated cases are the same for a seed everywhere. */
static uint64_t
next_random(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

/*
 * Generated sequences: users, amounts, keys (few, so that they replay and
 * conflict), inputs the client refuses and inputs only the server refuses,
 * mixed at random and compared with single calls, seed by seed.
 */
static void
test_generated(pgm_conn *bc, pgm_conn *c)
{
	static const char *const amounts[] = {
		"0.01", "0.02", "0.05", "0.1", "0.25", "0.5", "1.5", "0", "-1", NULL,
		"0.0000001", "1e400", "abc", "00.010000"
	};
	static const char *const keys[] = {"g1", "g2", "g3", "g4", "g5", "g6", "", NULL};
	static charge_spec spec[260];
	int			seed;

	for (seed = 1; seed <= 14; seed++)
	{
		uint64_t	s = UINT64_C(0x9e3779b97f4a7c15) * (uint64_t) seed;
		int			n = 1 + (int) (next_random(&s) % 259),
					i;
		char		name[64];
		pgm_charge_result *res;

		for (i = 0; i < n; i++)
		{
			uint64_t	r = next_random(&s);
			int			u = (int) (r % 16),
						a = (int) ((r >> 8) % 40),
						m = (int) ((r >> 16) % 60),
						k = (int) ((r >> 24) % 24);
			charge_spec *sp = &spec[i];

			sp->slot = u < 8 ? U_MAIN : u < 13 ? U_SECOND : u < 14 ? U_GONE : -1;
			sp->user = u == 14 ? unknown_user : NULL;	/* 15: NULL */
			sp->amount = a < (int) (sizeof(amounts) / sizeof(amounts[0])) ? amounts[a] :
				amounts[a % 4];
			sp->model_id = m == 0 ? NULL : m == 1 ? "" : m == 2 ? wide_model :
				m == 3 ? long_model : "m";
			sp->tokens = (int64_t) ((r >> 32) % 1000) - (r % 97 == 0 ? 2000 : 0);
			sp->key = k < 8 ? keys[k] : NULL;
		}
		snprintf(name, sizeof(name), "generated, seed %d", seed);
		res = compare_run(name, bc, c, spec, (size_t) n, seed % 3 ? "3" : "0.5", seed % 4 == 0);
		free(res);
	}
}

/* ---- Another session holding a user's lock ---------------------------- */

/*
 * A child that holds the balance row of user (in a transaction of its own,
 * through PG*, straight to the server), says so on ready, waits until a
 * backend waits for its lock, then ends the wait: commits (kill 0) or
 * terminates the waiting backend (kill 1).  Returns its pid.
 */
static pid_t
lock_holder(const char *user, int kill, int ready[2])
{
	pid_t		pid;

	if (pipe(ready) != 0)
		return -1;
	pid = fork();
	if (pid != 0)
	{
		close(ready[1]);
		return pid;
	}
	else
	{
		pgm_conn   *h = pgm_connect("");
		const char *p[1] = {user};
		pgm_result *r = NULL;
		int			waited = 0,
					tries;

		close(ready[0]);
		if (pgm_begin(h) != PGM_OK ||
			pgm_exec(h, "SELECT 1 FROM pgmarket.balances WHERE user_id = $1::uuid FOR UPDATE",
					 1, p, NULL) != PGM_OK ||
			write(ready[1], "1", 1) != 1)
			_exit(2);
		/*
		 * A bounded wait for a waiter to appear in pg_stat_activity (and,
		 * to kill it, to be terminated: a wait under the batch's 1 ms
		 * lock_timeout may end before the signal, and the waiter comes
		 * again).
		 */
		for (tries = 0; tries < 6000 && !waited; tries++)
		{
			if (pgm_exec(h, kill ?
						 "SELECT count(*) AS n FROM pg_stat_activity "
						 "WHERE CASE WHEN pg_backend_pid() = ANY (pg_blocking_pids(pid)) "
						 "THEN pg_terminate_backend(pid) END" :
						 "SELECT count(*) AS n FROM pg_stat_activity "
						 "WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))",
						 0, NULL, &r) == PGM_OK)
				waited = atoi(pgm_result_value(r, 0, "n")) > 0;
			pgm_result_free(r);
			r = NULL;
			if (!waited)
				usleep(10000);
		}
		pgm_commit(h);
		pgm_finish(h);
		_exit(waited ? 0 : 3);
	}
}

static int
child_ok(pid_t pid)
{
	int			status;

	return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * A charge that meets a held lock in the middle of a transaction is not
 * waited for there: it goes again first of the next, waits holding
 * nothing, and applies once the lock is free.
 */
static void
test_lock_wait(pgm_conn *bc, pgm_conn *c)
{
	char		ids[U_COUNT][PGM_UUID_LEN];
	pgm_charge	ch[5];
	pgm_charge_result res[5];
	pgm_balance b;
	int			ready[2];
	char		byte;
	pid_t		pid;

	printf("# a lock held by another session\n");
	make_users(c, "1", ids);
	ch[0] = (pgm_charge) {ids[U_MAIN], "0.1", "m", 0, NULL};
	ch[1] = (pgm_charge) {ids[U_MAIN], "0.1", "m", 0, NULL};
	ch[2] = (pgm_charge) {ids[U_SECOND], "0.3", "m", 0, NULL};	/* held */
	ch[3] = (pgm_charge) {ids[U_MAIN], "0.1", "m", 0, NULL};
	ch[4] = (pgm_charge) {ids[U_SECOND], "0.3", "m", 0, NULL};
	pid = lock_holder(ids[U_SECOND], 0, ready);
	CHECK(pid > 0 && read(ready[0], &byte, 1) == 1, c);
	close(ready[0]);
	EXPECT(pgm_deduct_batch(bc, ch, 5, res), PGM_OK, bc);
	CHECK(child_ok(pid), c);
	CHECK(res[0].status == PGM_OK && res[1].status == PGM_OK && res[2].status == PGM_OK &&
		  res[3].status == PGM_OK && res[4].status == PGM_OK &&
		  strcmp(res[3].available_balance, "0.700000") == 0 &&
		  strcmp(res[4].available_balance, "0.400000") == 0, bc);
	EXPECT(pgm_get_balance(c, ids[U_SECOND], &b), PGM_OK, c);
	CHECK(strcmp(b.available_balance, "0.400000") == 0, c);
}

/*
 * The connection breaks while a transaction of the batch waits: what was
 * committed says so and is in the ledger, what was sent is unknown, what
 * was never sent is PGM_CONNECTION_ERROR and is not in the ledger.
 */
static void
test_broken(pgm_conn *c, const char *conninfo, int savepoints)
{
	enum
	{
		N = 200,
		HELD = 100
	};
	char		ids[U_COUNT][PGM_UUID_LEN];
	static pgm_charge ch[N];
	static pgm_charge_result res[N];
	static char keys[N][24];
	pgm_conn   *bc = pgm_connect(conninfo);
	int			ready[2],
				i,
				ok = 0,
				unknown = 0,
				unsent = 0,
				wrong = 0;
	char		byte;
	pid_t		pid;

	printf("# the connection breaks mid-pipeline%s\n", savepoints ? ", savepoints" : "");
	pgmi_batch_savepoints(bc, savepoints);
	make_users(c, "100", ids);
	for (i = 0; i < N; i++)
	{
		snprintf(keys[i], sizeof(keys[i]), "broken-%d", i);
		ch[i] = (pgm_charge) {ids[i == HELD ? U_SECOND : U_MAIN], "0.01", "m", 0, keys[i]};
	}
	pid = lock_holder(ids[U_SECOND], 1, ready);
	CHECK(pid > 0 && read(ready[0], &byte, 1) == 1, c);
	close(ready[0]);
	EXPECT(pgm_deduct_batch(bc, ch, N, res), PGM_CONNECTION_ERROR, bc);
	CHECK(child_ok(pid), c);
	for (i = 0; i < N; i++)
	{
		const char *p[2] = {ids[U_MAIN], keys[i]};
		pgm_result *r = NULL;
		int			there;

		pgm_exec(c, "SELECT count(*) AS n FROM pgmarket.ledger WHERE user_id = $1::uuid "
				 "AND idempotency_key = $2", 2, p, &r);
		there = r && atoi(pgm_result_value(r, 0, "n")) == 1;
		pgm_result_free(r);
		if (res[i].status == PGM_OK)
			ok++, wrong += !there || i >= HELD;
		else if (res[i].status == PGM_OUTCOME_UNKNOWN)
			unknown++, wrong += i < HELD - 64 || i >= HELD + 64;
		else if (res[i].status == PGM_CONNECTION_ERROR)
			unsent++, wrong += there || i < HELD;
		else
			wrong++;
	}
	printf("# %d committed, %d unknown, %d not sent\n", ok, unknown, unsent);
	CHECK(wrong == 0 && ok > 0 && unknown > 0 && unsent > 0 && ok + unknown + unsent == N, c);
	pgm_finish(bc);
}

int
main(int argc, char **argv)
{
	const char *conninfo = argc >= 3 && strcmp(argv[1], "bouncer") == 0 ? argv[2] : "";
	pgm_conn   *c,
			   *bc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (sodium_init() < 0)
		return 2;
	snprintf(suffix, sizeof(suffix), "%08x", randombytes_random());
	fill_inputs();
	c = pgm_connect("");
	bc = pgm_connect(conninfo);
	CHECK(pgm_conn_status(c) == PGM_OK && pgm_conn_status(bc) == PGM_OK, c);
	if (pgm_conn_status(c) == PGM_OK && pgm_conn_status(bc) == PGM_OK)
	{
		printf("# batches %s\n", conninfo[0] ? conninfo : "straight to the server");
		int			savepoints;

		/* then as behind PL/Proxy: a savepoint a charge, nothing sent again */
		for (savepoints = 0; savepoints <= 1; savepoints++)
		{
			pgmi_batch_savepoints(bc, savepoints);
			printf("# %s\n", savepoints ? "a savepoint a charge" : "one statement a charge");
			test_every_error(bc, c);
			test_actor(bc, c);
			test_windows(bc, c);
			test_positions(bc, c);
			test_dependent(bc, c);
			test_generated(bc, c);
			test_lock_wait(bc, c);
			test_broken(c, conninfo, savepoints);
		}
		test_arguments(bc);
	}
	pgm_finish(c);
	pgm_finish(bc);
	free(mega_model);
	return tally();
}
