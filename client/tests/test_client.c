/*
 * test_client.c: libpgmarket against a live server.
 *
 *   test_client            every test, in the database of the PG* environment
 *   test_client bouncer CONNINFO
 *                          the pooled subset, through pgbouncer in transaction
 *                          mode (CONNINFO), with PG* naming the server itself
 *
 * The database must have the extension and a master key file configured
 * (tests/run.sh does both; PGMARKET_TEST_KEYFILE names the file, relative to
 * the data directory).  The program runs as a superuser: it provokes some
 * errors by changing server settings.  It prints one line per check and
 * closes with "# tally: P F" for run.sh to add up.
 */
#include "pgmarket.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"

/*
 * Row 0's column col of r is want: the check of
 *     v = pgm_result_value(r, 0, col);
 *     CHECK(v && strcmp(v, want) == 0, c);
 * under the name that CHECK prints.
 */
#define CHECK_VALUE(r, col, want, c) \
	check_value((r), (col), (want), "v && strcmp(v, " #want ") == 0", __FILE__, __LINE__, (c))

static void
check_value(const pgm_result *r, const char *col, const char *want, const char *what,
			const char *file, int line, pgm_conn *c)
{
	const char *v = pgm_result_value(r, 0, col);

	check(v && strcmp(v, want) == 0, what, file, line, c);
}

static char suffix[16];			/* per run, for unique emails and keys */

static void
make_user(pgm_conn *c, const char *name, char id[PGM_UUID_LEN])
{
	char		email[128],
				uname[64];

	snprintf(email, sizeof(email), "%s-%s@example.com", name, suffix);
	snprintf(uname, sizeof(uname), "%s_%s", name, suffix);
	EXPECT(pgm_create_user(c, email, uname, NULL, NULL, NULL, id), PGM_OK, c);
}

/* Superuser SQL without results; 1 on success. */
static int
sql(pgm_conn *c, const char *q)
{
	pgm_status	st = pgm_exec(c, q, 0, NULL, NULL);

	if (st != PGM_OK)
		printf("# sql failed: %s: %s\n", q, pgm_errmsg(c));
	return st == PGM_OK;
}

/* One text value of a superuser query (caller frees), or NULL. */
static char *
sql_value(pgm_conn *c, const char *q, int n, const char *const *params)
{
	pgm_result *r = NULL;
	char	   *v = NULL;

	if (pgm_exec(c, q, n, params, &r) == PGM_OK && pgm_result_rows(r) > 0)
	{
		const char *s = pgm_result_value(r, 0, "v");

		v = s ? strdup(s) : NULL;
	}
	pgm_result_free(r);
	return v;
}

/* ------------------------------------------------------------------------ */

static void
test_status_and_money(void)
{
	int64_t		m = 0;
	char		buf[PGM_AMOUNT_LEN];
	int			s;

	printf("# status names, SQLSTATE map, money helpers\n");
	for (s = PGM_OK; s <= PGM_RATE_LIMITED; s++)
		CHECK(strncmp(pgm_status_name((pgm_status) s), "PGM_", 4) == 0, NULL);
	CHECK(strcmp(pgm_status_name(PGM_INSUFFICIENT_FUNDS), "PGM_INSUFFICIENT_FUNDS") == 0, NULL);
	CHECK(pgm_status_from_sqlstate("PM001") == PGM_INSUFFICIENT_FUNDS, NULL);
	CHECK(pgm_status_from_sqlstate("PM013") == PGM_AUDIT_CHAIN_BROKEN, NULL);
	CHECK(pgm_status_from_sqlstate("PM005") == PGM_RATE_LIMITED, NULL);
	CHECK(strcmp(pgm_status_name(PGM_RATE_LIMITED), "PGM_RATE_LIMITED") == 0, NULL);
	CHECK(pgm_status_from_sqlstate("08006") == PGM_CONNECTION_ERROR, NULL);
	CHECK(pgm_status_from_sqlstate("22012") == PGM_SERVER_ERROR, NULL);
	CHECK(pgm_status_from_sqlstate(NULL) == PGM_OK, NULL);

	CHECK(pgm_str_to_micro("12.5", &m) == PGM_OK && m == 12500000, NULL);
	CHECK(pgm_str_to_micro("0.000001", &m) == PGM_OK && m == 1, NULL);
	CHECK(pgm_str_to_micro("1.0000000", &m) == PGM_OK && m == 1000000, NULL);
	CHECK(pgm_str_to_micro("1.0000001", &m) == PGM_INVALID_PARAMETER, NULL);
	CHECK(pgm_str_to_micro("8999999999999.999999", &m) == PGM_OK &&
		  m == INT64_C(8999999999999999999), NULL);
	CHECK(pgm_str_to_micro("9000000000000", &m) == PGM_OUT_OF_RANGE, NULL);
	CHECK(pgm_str_to_micro("abc", &m) == PGM_INVALID_PARAMETER, NULL);
	CHECK(pgm_str_to_micro("", &m) == PGM_INVALID_PARAMETER, NULL);
	CHECK(pgm_str_to_micro("1e3", &m) == PGM_INVALID_PARAMETER, NULL);
	CHECK(pgm_str_to_micro("-2.25", &m) == PGM_OK && m == -2250000, NULL);
	CHECK(strcmp(pgm_micro_to_str(12500000, buf), "12.500000") == 0, NULL);
	CHECK(strcmp(pgm_micro_to_str(1, buf), "0.000001") == 0, NULL);
	CHECK(strcmp(pgm_micro_to_str(-2250000, buf), "-2.250000") == 0, NULL);
	CHECK(strcmp(pgm_micro_to_str(INT64_MIN, buf), "-9223372036854.775808") == 0, NULL);
}

static void
test_connections(void)
{
	pgm_conn   *bad,
			   *w;
	PGconn	   *pg;

	printf("# connections\n");
	bad = pgm_connect("host=/nonexistent port=1 connect_timeout=2");
	CHECK(bad != NULL, NULL);
	CHECK(pgm_conn_status(bad) == PGM_CONNECTION_ERROR, bad);
	CHECK(pgm_last_status(bad) == PGM_CONNECTION_ERROR, bad);
	CHECK(pgm_errmsg(bad)[0] != '\0', bad);
	EXPECT(pgm_get_balance(bad, "00000000-0000-0000-0000-000000000000", NULL),
		   PGM_CONNECTION_ERROR, bad);
	pgm_finish(bad);
	pgm_finish(NULL);

	/* a wrapped connection stays the application's */
	pg = PQconnectdb("");
	w = pgm_wrap(pg);
	CHECK(pgm_conn_status(w) == PGM_OK, w);
	CHECK(pgm_pgconn(w) == pg, w);
	pgm_finish(w);
	CHECK(PQstatus(pg) == CONNECTION_OK, NULL);
	PQfinish(pg);
	CHECK(pgm_wrap(NULL) == NULL, NULL);
	CHECK(pgm_last_status(NULL) == PGM_CLIENT_ERROR, NULL);
}

static void
test_accounts(pgm_conn *c)
{
	char		id[PGM_UUID_LEN],
				id2[PGM_UUID_LEN],
				who[PGM_UUID_LEN],
				email[128],
				uname[64];
	char	   *hash = NULL;
	int			ok = -1;
	const char *roles[] = {"user", "developer", NULL};
	const char *badroles[] = {"emperor", NULL};
	const char *fixed = "c1000000-0000-4000-8000-000000000001";
	pgm_ledger_result lr;

	printf("# accounts\n");
	snprintf(email, sizeof(email), "  Acct-%s@Example.COM ", suffix);
	snprintf(uname, sizeof(uname), "acct_%s", suffix);
	EXPECT(pgm_create_user(c, email, uname, "correct horse", roles, NULL, id), PGM_OK, c);
	CHECK(strlen(id) == 36, c);
	/* 23505, with the server's message and SQLSTATE on the connection */
	EXPECT(pgm_create_user(c, email, "other_name", NULL, NULL, NULL, id2), PGM_DUPLICATE, c);
	CHECK(strcmp(pgm_sqlstate(c), "23505") == 0, c);
	CHECK(pgm_errmsg(c)[0] != '\0', c);
	CHECK(id2[0] == '\0', c);
	EXPECT(pgm_create_user(c, "not-an-email", "someone", NULL, NULL, NULL, id2),
		   PGM_INVALID_PARAMETER, c);
	CHECK(strcmp(pgm_sqlstate(c), "22023") == 0, c);
	EXPECT(pgm_create_user(c, NULL, "someone", NULL, NULL, NULL, id2), PGM_NULL_VALUE, c);
	CHECK(strcmp(pgm_sqlstate(c), "22004") == 0, c);
	EXPECT(pgm_create_user(c, "x@example.com", "someone", NULL, badroles, NULL, id2),
		   PGM_INVALID_PARAMETER, c);
	/* a chosen id, and the same id again */
	snprintf(email, sizeof(email), "fixed-%s@example.com", suffix);
	snprintf(uname, sizeof(uname), "fixed_%s", suffix);
	if (pgm_create_user(c, email, uname, NULL, NULL, fixed, id2) == PGM_OK)
		CHECK(strcmp(id2, fixed) == 0, c);
	else
		CHECK(pgm_last_status(c) == PGM_DUPLICATE, c);	/* a re-run */
	snprintf(email, sizeof(email), "fixed2-%s@example.com", suffix);
	snprintf(uname, sizeof(uname), "fixed2_%s", suffix);
	EXPECT(pgm_create_user(c, email, uname, NULL, NULL, fixed, id2), PGM_DUPLICATE, c);

	/* the last status resets on success */
	EXPECT(pgm_authenticate(c, uname + 1, "whatever", who), PGM_OK, c);
	CHECK(pgm_sqlstate(c)[0] == '\0' && pgm_errmsg(c)[0] == '\0', c);

	snprintf(uname, sizeof(uname), "acct_%s", suffix);
	EXPECT(pgm_authenticate(c, uname, "correct horse", who), PGM_OK, c);
	CHECK(strcmp(who, id) == 0, c);
	EXPECT(pgm_authenticate(c, uname, "wrong", who), PGM_OK, c);
	CHECK(who[0] == '\0', c);
	EXPECT(pgm_authenticate(c, NULL, "wrong", who), PGM_NULL_VALUE, c);

	EXPECT(pgm_hash_password(c, "s3cret pass", &hash), PGM_OK, c);
	CHECK(hash != NULL && strncmp(hash, "$argon2id$", 10) == 0, c);
	EXPECT(pgm_verify_password(c, "s3cret pass", hash, &ok), PGM_OK, c);
	CHECK(ok == 1, c);
	EXPECT(pgm_verify_password(c, "other", hash, &ok), PGM_OK, c);
	CHECK(ok == 0, c);
	pgm_free(hash);
	EXPECT(pgm_verify_password(c, "x", "not a hash", &ok), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_hash_password(c, NULL, &hash), PGM_NULL_VALUE, c);
	CHECK(hash == NULL, c);

	EXPECT(pgm_deactivate_user(c, id), PGM_OK, c);
	EXPECT(pgm_add_funds(c, id, "1", NULL, NULL, &lr), PGM_UNKNOWN_ACCOUNT, c);
	CHECK(strcmp(pgm_sqlstate(c), "PM002") == 0, c);
	EXPECT(pgm_deactivate_user(c, "c1ffffff-0000-4000-8000-00000000ffff"), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_authenticate(c, uname, "correct horse", who), PGM_OK, c);
	CHECK(who[0] == '\0', c);

	/* a hash made elsewhere (bcrypt of "correct horse"), then its erasure */
	snprintf(email, sizeof(email), "hashed-%s@example.com", suffix);
	snprintf(uname, sizeof(uname), "hashed_%s", suffix);
	EXPECT(pgm_create_user_hashed(c, email, uname,
								  "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e",
								  roles, NULL, id), PGM_OK, c);
	CHECK(strlen(id) == 36, c);
	EXPECT(pgm_authenticate(c, email, "correct horse", who), PGM_OK, c);
	CHECK(strcmp(who, id) == 0, c);
	EXPECT(pgm_create_user_hashed(c, "h2@example.com", "h2_name", "correct horse",
								  NULL, NULL, id2), PGM_INVALID_PARAMETER, c);
	CHECK(id2[0] == '\0', c);
	EXPECT(pgm_create_user_hashed(c, "h2@example.com", "h2_name",
								  "$2b$15$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e",
								  NULL, NULL, id2), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_create_user_hashed(c, "h2@example.com", "h2_name", NULL, NULL, NULL, id2),
		   PGM_NULL_VALUE, c);
	EXPECT(pgm_create_user_hashed(c, "h2@example.com", "h2_name", "x", NULL, NULL, NULL),
		   PGM_CLIENT_ERROR, c);
	EXPECT(pgm_create_user_hashed(NULL, "h2@example.com", "h2_name", "x", NULL, NULL, id2),
		   PGM_CLIENT_ERROR, NULL);
	EXPECT(pgm_erase_user(c, id), PGM_OK, c);
	EXPECT(pgm_authenticate(c, email, "correct horse", who), PGM_OK, c);
	CHECK(who[0] == '\0', c);
	EXPECT(pgm_erase_user(c, id), PGM_OK, c);	/* again: nothing to do */
	EXPECT(pgm_add_funds(c, id, "1", NULL, NULL, &lr), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_erase_user(c, "c1ffffff-0000-4000-8000-00000000ffff"), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_erase_user(c, NULL), PGM_NULL_VALUE, c);
	EXPECT(pgm_erase_user(NULL, id), PGM_CLIENT_ERROR, NULL);
}

static void
test_ledger(pgm_conn *c)
{
	char		u[PGM_UUID_LEN],
				key[64];
	pgm_ledger_result lr,
				ch;
	pgm_balance b;
	pgm_result *r = NULL;
	pgm_ledger_entry e;
	int64_t		rid = 0,
				n = -1,
				last = 0;
	int			i;

	printf("# ledger\n");
	make_user(c, "ledger", u);
	snprintf(key, sizeof(key), "dep-%s", suffix);
	EXPECT(pgm_add_funds(c, u, "20.00", key, "stripe", &lr), PGM_OK, c);
	CHECK(strcmp(lr.kind, "deposit") == 0 && strcmp(lr.amount, "20.000000") == 0 &&
		  strcmp(lr.available_balance, "20.000000") == 0 && !lr.replayed &&
		  lr.entry_id > 0 && strcmp(lr.user_id, u) == 0, c);
	/* idempotent replay, and a conflict */
	EXPECT(pgm_add_funds(c, u, "20", key, "stripe", &lr), PGM_OK, c);
	CHECK(lr.replayed == 1, c);
	EXPECT(pgm_add_funds(c, u, "21", key, "stripe", &lr), PGM_IDEMPOTENCY_CONFLICT, c);
	CHECK(strcmp(pgm_sqlstate(c), "PM003") == 0, c);
	/* exactness */
	EXPECT(pgm_add_funds(c, u, "1.0000001", NULL, NULL, &lr), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_add_funds(c, u, "0", NULL, NULL, &lr), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_add_funds(c, u, "-1", NULL, NULL, &lr), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_add_funds(c, u, "9000000000000", NULL, NULL, &lr), PGM_OUT_OF_RANGE, c);
	CHECK(strcmp(pgm_sqlstate(c), "22003") == 0, c);
	EXPECT(pgm_add_funds(c, u, NULL, NULL, NULL, &lr), PGM_NULL_VALUE, c);
	EXPECT(pgm_add_funds(c, "c1ffffff-0000-4000-8000-00000000ffff", "1", NULL, NULL, &lr),
		   PGM_UNKNOWN_ACCOUNT, c);

	EXPECT(pgm_deduct_balance(c, u, "0.0042", "gpt-4o", 1234, NULL, &ch), PGM_OK, c);
	CHECK(strcmp(ch.kind, "charge") == 0 && strcmp(ch.available_balance, "19.995800") == 0, c);
	EXPECT(pgm_deduct_balance(c, u, "100", "gpt-4o", 1, NULL, &lr), PGM_INSUFFICIENT_FUNDS, c);
	CHECK(strcmp(pgm_sqlstate(c), "PM001") == 0 && pgm_errmsg(c)[0], c);
	EXPECT(pgm_deduct_balance(c, u, "1", NULL, 1, NULL, &lr), PGM_NULL_VALUE, c);
	EXPECT(pgm_deduct_balance(c, "c1ffffff-0000-4000-8000-00000000ffff", "1", "m", 0, NULL, &lr),
		   PGM_UNKNOWN_ACCOUNT, c);

	EXPECT(pgm_refund(c, u, ch.entry_id, "0.0002", NULL, &lr), PGM_OK, c);
	CHECK(strcmp(lr.kind, "refund") == 0 && strcmp(lr.available_balance, "19.996000") == 0, c);
	EXPECT(pgm_refund(c, u, ch.entry_id, "1", NULL, &lr), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_refund(c, u, ch.entry_id, NULL, NULL, &lr), PGM_OK, c);	/* the rest */
	CHECK(strcmp(lr.amount, "0.004000") == 0, c);

	EXPECT(pgm_get_balance(c, u, &b), PGM_OK, c);
	CHECK(strcmp(b.total_balance, "20.000000") == 0 && strcmp(b.spent_balance, "0.000000") == 0 &&
		  strcmp(b.available_balance, "20.000000") == 0 && strcmp(b.user_id, u) == 0 &&
		  b.updated_at[0], c);
	EXPECT(pgm_get_balance(c, "nonsense", &b), PGM_SERVER_ERROR, c);	/* 22P02 */
	CHECK(strcmp(pgm_sqlstate(c), "22P02") == 0, c);

	/* pages of ledger_entries */
	for (i = 0; i < 5; i++)
		EXPECT(pgm_deduct_balance(c, u, "0.01", "page-model", 10, NULL, &lr), PGM_OK, c);
	EXPECT(pgm_ledger_entries(c, u, 4, 0, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 4, c);
	EXPECT(pgm_result_ledger_entry(r, 0, &e), PGM_OK, c);
	CHECK(strcmp(e.kind, "charge") == 0 && strcmp(e.model_id, "page-model") == 0 &&
		  e.tokens_used == 10 && e.idempotency_key == NULL && e.created_at[0], c);
	EXPECT(pgm_result_ledger_entry(r, 3, &e), PGM_OK, c);
	last = e.entry_id;
	CHECK(pgm_result_ledger_entry(r, 4, &e) == PGM_CLIENT_ERROR, c);
	CHECK(pgm_result_value(r, 0, "no_such_column") == NULL, c);
	pgm_result_free(r);
	EXPECT(pgm_ledger_entries(c, u, 100, last, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 5, c);	/* 1 charge, 2 refunds, 1 charge, 1 deposit */
	EXPECT(pgm_result_ledger_entry(r, pgm_result_rows(r) - 1, &e), PGM_OK, c);
	CHECK(strcmp(e.kind, "deposit") == 0 && e.note && strcmp(e.note, "stripe") == 0, c);
	pgm_result_free(r);
	r = NULL;
	EXPECT(pgm_ledger_entries(c, u, 0, 0, &r), PGM_INVALID_PARAMETER, c);
	CHECK(r == NULL, c);

	/* holds */
	snprintf(key, sizeof(key), "hold-%s", suffix);
	EXPECT(pgm_reserve(c, u, "0.50", "5 minutes", key, &rid), PGM_OK, c);
	CHECK(rid > 0, c);
	EXPECT(pgm_get_balance(c, u, &b), PGM_OK, c);
	CHECK(strcmp(b.reserved_balance, "0.500000") == 0, c);
	EXPECT(pgm_settle(c, u, rid, "0.60", "claude", 1, &lr), PGM_RESERVATION_STATE, c);
	CHECK(strcmp(pgm_sqlstate(c), "PM004") == 0, c);
	EXPECT(pgm_settle(c, u, rid, "0.1234", "claude", 5120, &lr), PGM_OK, c);
	CHECK(strcmp(lr.amount, "0.123400") == 0 && strcmp(lr.kind, "charge") == 0, c);
	EXPECT(pgm_settle(c, u, rid, "0.1", "claude", 1, &lr), PGM_RESERVATION_STATE, c);
	EXPECT(pgm_reserve(c, u, "1", NULL, NULL, &rid), PGM_OK, c);
	EXPECT(pgm_release(c, u, rid, &b), PGM_OK, c);
	CHECK(strcmp(b.reserved_balance, "0.000000") == 0, c);
	EXPECT(pgm_release(c, u, rid, &b), PGM_RESERVATION_STATE, c);
	EXPECT(pgm_reserve(c, u, "1000", NULL, NULL, &rid), PGM_INSUFFICIENT_FUNDS, c);
	EXPECT(pgm_reserve(c, u, "1", "0 seconds", NULL, &rid), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_expire_reservations(c, &n), PGM_OK, c);
	CHECK(n >= 0, c);

	EXPECT(pgm_verify_ledger(c, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 0, c);
	pgm_result_free(r);
}

/* A mix of charges that apply and charges that fail, each on its own. */
static void
test_batch(pgm_conn *c, int array)
{
	char		u1[PGM_UUID_LEN],
				u2[PGM_UUID_LEN],
				k1[64],
				k2[64];
	pgm_ledger_result lr;
	pgm_balance b;
	pgm_charge ch[7];
	pgm_charge_result res[7];
	const char *unknown = "c1ffffff-0000-4000-8000-00000000fffe";

	printf("# %s\n", array ? "deduct_batch (server array)" : "deduct_batch (pipeline)");
	make_user(c, array ? "batcha1" : "batchp1", u1);
	make_user(c, array ? "batcha2" : "batchp2", u2);
	EXPECT(pgm_add_funds(c, u1, "1", NULL, NULL, &lr), PGM_OK, c);
	EXPECT(pgm_add_funds(c, u2, "1", NULL, NULL, &lr), PGM_OK, c);
	snprintf(k1, sizeof(k1), "b1-%s-%d", suffix, array);
	snprintf(k2, sizeof(k2), "b2-%s-%d", suffix, array);
	memset(ch, 0, sizeof(ch));
	ch[0] = (pgm_charge) {u1, "0.25", "gpt-4o", 100, k1};
	ch[1] = (pgm_charge) {u1, "5", "gpt-4o", 100, NULL};		/* PM001 */
	ch[2] = (pgm_charge) {unknown, "0.1", "gpt-4o", 1, NULL};	/* PM002 */
	ch[3] = (pgm_charge) {u2, "0.0000001", "gpt-4o", 1, NULL};	/* 22023 */
	ch[4] = (pgm_charge) {u2, "0.5", "gpt-4o", 1, k2};
	ch[5] = (pgm_charge) {u1, "0.30", "gpt-4o", 100, k1};		/* PM003 */
	ch[6] = (pgm_charge) {u1, "0.25", "gpt-4o", 100, k1};		/* replay */
	if (array)
		EXPECT(pgm_deduct_batch_array(c, ch, 7, res), PGM_OK, c);
	else
		EXPECT(pgm_deduct_batch(c, ch, 7, res), PGM_OK, c);
	CHECK(res[0].status == PGM_OK && res[0].entry_id > 0 &&
		  strcmp(res[0].sqlstate, "00000") == 0 &&
		  strcmp(res[0].available_balance, "0.750000") == 0, c);
	CHECK(res[1].status == PGM_INSUFFICIENT_FUNDS && strcmp(res[1].sqlstate, "PM001") == 0 &&
		  res[1].entry_id == 0, c);
	CHECK(res[2].status == PGM_UNKNOWN_ACCOUNT, c);
	CHECK(res[3].status == PGM_INVALID_PARAMETER, c);
	CHECK(res[4].status == PGM_OK && strcmp(res[4].available_balance, "0.500000") == 0, c);
	CHECK(res[5].status == PGM_IDEMPOTENCY_CONFLICT, c);
	CHECK(res[6].status == PGM_OK && res[6].entry_id == res[0].entry_id, c);
	if (!array)
		CHECK(res[6].replayed == 1 && res[0].replayed == 0, c);
	EXPECT(pgm_get_balance(c, u1, &b), PGM_OK, c);
	CHECK(strcmp(b.available_balance, "0.750000") == 0, c);
	EXPECT(pgm_get_balance(c, u2, &b), PGM_OK, c);
	CHECK(strcmp(b.available_balance, "0.500000") == 0, c);
	/* empty batches */
	if (array)
		EXPECT(pgm_deduct_batch_array(c, ch, 0, res), PGM_OK, c);
	else
		EXPECT(pgm_deduct_batch(c, ch, 0, res), PGM_OK, c);
	/* the connection is usable afterwards, out of pipeline mode */
	CHECK(PQpipelineStatus(pgm_pgconn(c)) == PQ_PIPELINE_OFF, c);
	EXPECT(pgm_get_balance(c, u1, &b), PGM_OK, c);
}

/* Many charges: more than one chunk of the pipeline. */
static void
test_big_batch(pgm_conn *c)
{
	enum
	{
		N = 600
	};
	char		u[PGM_UUID_LEN];
	static pgm_charge ch[N];
	static pgm_charge_result res[N];
	pgm_ledger_result lr;
	pgm_balance b;
	int			i,
				good = 0;

	printf("# a big pipelined batch\n");
	make_user(c, "bigbatch", u);
	EXPECT(pgm_add_funds(c, u, "5.00", NULL, NULL, &lr), PGM_OK, c);
	for (i = 0; i < N; i++)
		ch[i] = (pgm_charge) {u, "0.01", "bulk", 1, NULL};
	EXPECT(pgm_deduct_batch(c, ch, N, res), PGM_OK, c);
	for (i = 0; i < N; i++)
		good += res[i].status == PGM_OK;
	CHECK(good == 500, c);
	CHECK(res[499].status == PGM_OK && res[500].status == PGM_INSUFFICIENT_FUNDS, c);
	EXPECT(pgm_get_balance(c, u, &b), PGM_OK, c);
	CHECK(strcmp(b.available_balance, "0.000000") == 0, c);
}

static void
test_actor_and_prepared(pgm_conn *c)
{
	char		u[PGM_UUID_LEN],
				actor[PGM_UUID_LEN];
	char	   *v;
	pgm_ledger_result lr;
	pgm_balance b;
	const char *p[1];
	pgm_charge ch[2];
	pgm_charge_result res[2];

	printf("# actor, prepared statements\n");
	make_user(c, "actor", actor);
	EXPECT(pgm_set_actor(c, actor), PGM_OK, c);
	make_user(c, "acted", u);
	p[0] = u;
	v = sql_value(c, "SELECT actor AS v FROM pgmarket.audit_log "
				  "WHERE table_name = 'pgmarket.accounts' AND operation = 'INSERT' "
				  "AND row_key->>'id' = $1", 1, p);
	CHECK(v && strcmp(v, actor) == 0, c);
	free(v);
	/* set_config(..., true): gone after the call's transaction */
	EXPECT(pgm_set_actor(c, NULL), PGM_OK, c);
	v = sql_value(c, "SELECT coalesce(current_setting('pgmarket.actor', true), '') AS v", 0, NULL);
	CHECK(v && v[0] == '\0', c);
	free(v);
	/* a transaction that acts for a user may touch only that user's rows */
	EXPECT(pgm_set_actor(c, actor), PGM_OK, c);
	EXPECT(pgm_add_funds(c, u, "2", NULL, NULL, &lr), PGM_PERMISSION_DENIED, c);
	EXPECT(pgm_set_actor(c, NULL), PGM_OK, c);
	memcpy(actor, u, PGM_UUID_LEN);
	/* errors through the pipelined path */
	EXPECT(pgm_set_actor(c, actor), PGM_OK, c);
	EXPECT(pgm_deduct_balance(c, u, "1", "m", 0, NULL, &lr), PGM_INSUFFICIENT_FUNDS, c);
	EXPECT(pgm_add_funds(c, u, "2", NULL, NULL, &lr), PGM_OK, c);
	ch[0] = (pgm_charge) {u, "1", "m", 0, NULL};
	ch[1] = (pgm_charge) {u, "5", "m", 0, NULL};
	EXPECT(pgm_deduct_batch(c, ch, 2, res), PGM_OK, c);
	CHECK(res[0].status == PGM_OK && res[1].status == PGM_INSUFFICIENT_FUNDS, c);
	EXPECT(pgm_set_actor(c, NULL), PGM_OK, c);

	/* named prepared statements, prepared once per connection */
	pgm_set_prepared(c, 1);
	EXPECT(pgm_get_balance(c, u, &b), PGM_OK, c);
	EXPECT(pgm_get_balance(c, u, &b), PGM_OK, c);
	CHECK(strcmp(b.available_balance, "1.000000") == 0, c);
	EXPECT(pgm_deduct_balance(c, u, "5", "m", 0, NULL, &lr), PGM_INSUFFICIENT_FUNDS, c);
	EXPECT(pgm_set_actor(c, actor), PGM_OK, c);
	EXPECT(pgm_deduct_balance(c, u, "0.5", "m", 0, NULL, &lr), PGM_OK, c);
	EXPECT(pgm_deduct_batch(c, ch, 1, res), PGM_OK, c);
	CHECK(res[0].status == PGM_INSUFFICIENT_FUNDS, c);
	EXPECT(pgm_set_actor(c, NULL), PGM_OK, c);
	v = sql_value(c, "SELECT count(*)::text AS v FROM pg_prepared_statements "
				  "WHERE name LIKE 'pgmarket_q%'", 0, NULL);
	CHECK(v && atoi(v) >= 2, c);
	free(v);
	pgm_set_prepared(c, 0);
}

/*
 * The vault; PM010 first, with the key file moved away for a moment.  The
 * vault looks at the file in every transaction, so no reload is needed.
 */
static void
test_vault(pgm_conn *c)
{
	const char *keyfile = getenv("PGMARKET_TEST_KEYFILE");
	char		u[PGM_UUID_LEN],
				kid[PGM_UUID_LEN],
				kid2[PGM_UUID_LEN],
				q[512];
	unsigned char pk[PGM_PUBLICKEY_BYTES],
				junk[80];
	char	   *secret = NULL,
			   *v;
	pgm_result *r = NULL;
	pgm_provider_key_info info;
	int			revoked = -1,
				i;
	int64_t		n = -1;

	printf("# vault\n");
	if (keyfile == NULL)
	{
		CHECK(!"PGMARKET_TEST_KEYFILE is set", NULL);
		return;
	}
	make_user(c, "vault", u);

	/* PM010: no master key */
	snprintf(q, sizeof(q), "COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && mv %s %s.away'",
			 keyfile, keyfile);
	CHECK(sql(c, q), c);
	EXPECT(pgm_put_provider_key(c, u, "openai", "sk-test-nokey-123456", NULL, kid),
		   PGM_VAULT_UNAVAILABLE, c);
	CHECK(strcmp(pgm_sqlstate(c), "PM010") == 0, c);
	snprintf(q, sizeof(q), "COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && mv %s.away %s'",
			 keyfile, keyfile);
	CHECK(sql(c, q), c);

	EXPECT(pgm_vault_public_key(c, pk), PGM_OK, c);
	EXPECT(pgm_put_provider_key(c, u, "OpenAI", "sk-proj-abcdefgh1234", "laptop", kid), PGM_OK, c);
	CHECK(strlen(kid) == 36, c);
	EXPECT(pgm_get_provider_key(c, u, "openai", &secret), PGM_OK, c);
	CHECK(secret && strcmp(secret, "sk-proj-abcdefgh1234") == 0, c);
	pgm_free_secret(secret);
	secret = NULL;
	/* a new key for the provider revokes the old one */
	EXPECT(pgm_put_provider_key(c, u, "openai", "sk-proj-second-key-9999", NULL, kid2), PGM_OK, c);
	EXPECT(pgm_get_provider_key(c, u, "openai", &secret), PGM_OK, c);
	CHECK(secret && strcmp(secret, "sk-proj-second-key-9999") == 0, c);
	pgm_free_secret(secret);
	secret = NULL;
	EXPECT(pgm_list_provider_keys(c, u, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 2, c);
	for (i = 0; i < pgm_result_rows(r); i++)
	{
		EXPECT(pgm_result_provider_key(r, i, &info), PGM_OK, c);
		if (strcmp(info.key_id, kid2) == 0)
			CHECK(strcmp(info.hint, "9999") == 0 && info.revoked_at[0] == '\0' &&
				  info.label == NULL && info.key_version >= 1, c);
		else
			CHECK(strcmp(info.key_id, kid) == 0 && info.revoked_at[0] != '\0' &&
				  info.label && strcmp(info.label, "laptop") == 0, c);
	}
	pgm_result_free(r);
	EXPECT(pgm_revoke_provider_key(c, u, kid2, &revoked), PGM_OK, c);
	CHECK(revoked == 1, c);
	EXPECT(pgm_revoke_provider_key(c, u, kid2, &revoked), PGM_OK, c);
	CHECK(revoked == 0, c);
	/* PM012 */
	EXPECT(pgm_get_provider_key(c, u, "openai", &secret), PGM_KEY_NOT_FOUND, c);
	CHECK(secret == NULL && strcmp(pgm_sqlstate(c), "PM012") == 0, c);
	/* PM011: a sealed box that is not one */
	randombytes_buf(junk, sizeof(junk));
	EXPECT(pgm_put_provider_key_sealed(c, u, "anthropic", junk, sizeof(junk), NULL, kid),
		   PGM_DECRYPTION_FAILED, c);
	CHECK(strcmp(pgm_sqlstate(c), "PM011") == 0 && pgm_errhint(c)[0] && pgm_errdetail(c)[0], c);
	EXPECT(pgm_put_provider_key(c, u, "Not A Provider!", "sk-xxxxxxxx", NULL, kid),
		   PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_put_provider_key(c, u, "openai", NULL, NULL, kid), PGM_NULL_VALUE, c);
	EXPECT(pgm_put_provider_key(c, "c1ffffff-0000-4000-8000-00000000ffff", "openai",
								"sk-xxxxxxxxxxxx", NULL, kid), PGM_UNKNOWN_ACCOUNT, c);

	/* rotation: add version 2 and re-encrypt */
	EXPECT(pgm_put_provider_key(c, u, "anthropic", "sk-ant-rotate-me-0001", NULL, kid), PGM_OK, c);
	v = sql_value(c, "SELECT pg_catalog.pg_read_file(current_setting('pgmarket.master_key_file')) AS v",
				  0, NULL);
	CHECK(v != NULL, c);
	if (v)
	{
		char		hex[65];
		unsigned char raw[32];
		char	   *nl = strchr(v, '\n');

		if (nl)
			*nl = '\0';
		randombytes_buf(raw, sizeof(raw));
		sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
		snprintf(q, sizeof(q),
				 "COPY (SELECT '%s' UNION ALL SELECT '2:%s') TO PROGRAM "
				 "'umask 077 && cat > %s.tmp && mv %s.tmp %s'", v, hex, keyfile, keyfile, keyfile);
		CHECK(sql(c, q), c);
		free(v);
		EXPECT(pgm_rotate_master_key(c, 1, &n), PGM_OK, c);
		CHECK(n == 1, c);
		EXPECT(pgm_rotate_master_key(c, 0, &n), PGM_OK, c);
		CHECK(n >= 1, c);
		EXPECT(pgm_rotate_master_key(c, 0, &n), PGM_OK, c);
		CHECK(n == 0, c);
		/* the cached public key is now stale: the put refetches it */
		EXPECT(pgm_put_provider_key(c, u, "mistral", "sk-after-rotation-42", NULL, kid), PGM_OK, c);
		EXPECT(pgm_get_provider_key(c, u, "mistral", &secret), PGM_OK, c);
		CHECK(secret && strcmp(secret, "sk-after-rotation-42") == 0, c);
		pgm_free_secret(secret);
		secret = NULL;
		EXPECT(pgm_get_provider_key(c, u, "anthropic", &secret), PGM_OK, c);
		CHECK(secret && strcmp(secret, "sk-ant-rotate-me-0001") == 0, c);
		pgm_free_secret(secret);
	}
	EXPECT(pgm_rotate_master_key(c, -5, &n), PGM_OK, c);	/* the default */
}

/*
 * The sealed path keeps the plaintext out of the server log, where a
 * secret bound as a parameter lands with log_statement = 'all' (run.sh
 * sets it for the test database).
 */
static void
test_sealed_log(pgm_conn *c)
{
	char		u[PGM_UUID_LEN],
				kid[PGM_UUID_LEN],
				sealed_secret[64],
				plain_secret[64];
	const char *logfile = NULL;
	const char *pv[3];
	PGresult   *res;
	char	   *buf;

	printf("# sealed path and the server log\n");
	make_user(c, "sealedlog", u);
	snprintf(sealed_secret, sizeof(sealed_secret), "sk-SEALEDMARK-%s-%u", suffix, randombytes_random());
	snprintf(plain_secret, sizeof(plain_secret), "sk-PLAINMARK-%s-%u", suffix, randombytes_random());
	EXPECT(pgm_put_provider_key(c, u, "sealedcorp", sealed_secret, NULL, kid), PGM_OK, c);
	/* the control: the unsealed SQL function with the secret bound */
	pv[0] = u;
	pv[1] = "plaincorp";
	pv[2] = plain_secret;
	res = PQexecParams(pgm_pgconn(c), "SELECT pgmarket.put_provider_key($1::uuid, $2, $3)",
					   3, NULL, pv, NULL, NULL, 0);
	CHECK(PQresultStatus(res) == PGRES_TUPLES_OK, c);
	PQclear(res);
	/* the backend wrote the statement's log line before it ran it */

	buf = server_log(&logfile);
	if (buf == NULL)
	{
		printf("# skip: server log %s not readable\n", logfile);
		return;
	}
	CHECK(strstr(buf, "pgmarket.put_provider_key_sealed") != NULL, c);	/* logging is on */
	CHECK(strstr(buf, plain_secret) != NULL, c);	/* and would show a bound secret */
	CHECK(strstr(buf, sealed_secret) == NULL, c);	/* the sealed one never */
	free(buf);
}

static void
test_api_keys(pgm_conn *c)
{
	char		u[PGM_UUID_LEN],
				kid[PGM_UUID_LEN],
				kid_ro[PGM_UUID_LEN],
				kid_lim[PGM_UUID_LEN];
	char	   *key = NULL,
			   *key_ro = NULL,
			   *key_lim = NULL;
	const char *ro_scopes[] = {"read", NULL};
	const char *bad_scopes[] = {"superpowers", NULL};
	pgm_api_key_options ro = {0},
				lim = {0},
				bad = {0};
	pgm_api_key_check chk;
	pgm_ledger_result lr;
	pgm_result *r = NULL;
	int			valid = -1,
				revoked = -1,
				i;
	int64_t		rid = 0;

	printf("# platform API keys\n");
	make_user(c, "apikeys", u);
	EXPECT(pgm_add_funds(c, u, "10", NULL, NULL, &lr), PGM_OK, c);
	EXPECT(pgm_create_api_key(c, u, "gateway", NULL, kid, &key), PGM_OK, c);
	CHECK(key && strncmp(key, "sk_live_", 8) == 0 && strlen(key) == 68 && strlen(kid) == 36, c);
	ro.scopes = ro_scopes;
	ro.environment = "test";
	EXPECT(pgm_create_api_key(c, u, "reader", &ro, kid_ro, &key_ro), PGM_OK, c);
	CHECK(key_ro && strncmp(key_ro, "sk_test_", 8) == 0, c);
	lim.spend_limit = "1.5";
	lim.spend_period = "day";
	lim.rate_limit_tier = "pro";
	EXPECT(pgm_create_api_key(c, u, "limited", &lim, kid_lim, &key_lim), PGM_OK, c);
	bad.scopes = bad_scopes;
	EXPECT(pgm_create_api_key(c, u, "bad", &bad, kid, NULL), PGM_INVALID_PARAMETER, c);

	EXPECT(pgm_verify_api_key(c, key, &valid, &chk), PGM_OK, c);
	CHECK(valid == 1 && strcmp(chk.user_id, u) == 0 && strcmp(chk.scopes, "{read,write}") == 0 &&
		  strcmp(chk.rate_limit_tier, "free") == 0, c);
	EXPECT(pgm_verify_api_key(c, "sk_live_bogus", &valid, &chk), PGM_OK, c);
	CHECK(valid == 0 && chk.user_id[0] == '\0', c);

	EXPECT(pgm_charge_api_key(c, key, "0.25", "gpt-4o", 10, "ak-1", &lr), PGM_OK, c);
	CHECK(strcmp(lr.available_balance, "9.750000") == 0 && strcmp(lr.user_id, u) == 0, c);
	EXPECT(pgm_charge_api_key(c, "sk_live_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
							  "0.25", "gpt-4o", 10, NULL, &lr), PGM_INVALID_API_KEY, c);
	CHECK(strcmp(pgm_sqlstate(c), "28000") == 0, c);
	EXPECT(pgm_charge_api_key(c, key_ro, "0.25", "gpt-4o", 10, NULL, &lr), PGM_PERMISSION_DENIED, c);
	CHECK(strcmp(pgm_sqlstate(c), "42501") == 0, c);
	EXPECT(pgm_charge_api_key(c, key_lim, "1", "gpt-4o", 10, NULL, &lr), PGM_OK, c);
	EXPECT(pgm_charge_api_key(c, key_lim, "1", "gpt-4o", 10, NULL, &lr), PGM_INSUFFICIENT_FUNDS, c);
	EXPECT(pgm_reserve_api_key(c, key, "0.5", "1 minute", NULL, &rid), PGM_OK, c);
	CHECK(rid > 0, c);
	EXPECT(pgm_settle(c, u, rid, "0.2", "gpt-4o", 5, &lr), PGM_OK, c);
	EXPECT(pgm_reserve_api_key(c, "nope", "0.5", NULL, NULL, &rid), PGM_INVALID_API_KEY, c);

	EXPECT(pgm_list_api_keys(c, u, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 3, c);
	for (i = 0; i < pgm_result_rows(r); i++)
		if (strcmp(pgm_result_value(r, i, "key_id"), kid_lim) == 0)
			CHECK(strcmp(pgm_result_value(r, i, "spent"), "1.000000") == 0 &&
				  strcmp(pgm_result_value(r, i, "spend_limit"), "1.500000") == 0, c);
	pgm_result_free(r);

	EXPECT(pgm_revoke_api_key(c, u, kid_lim, &revoked), PGM_OK, c);
	CHECK(revoked == 1, c);
	EXPECT(pgm_charge_api_key(c, key_lim, "0.1", "gpt-4o", 10, NULL, &lr), PGM_INVALID_API_KEY, c);
	EXPECT(pgm_revoke_api_key(c, u, NULL, &revoked), PGM_NULL_VALUE, c);
	pgm_free_secret(key);
	pgm_free_secret(key_ro);
	pgm_free_secret(key_lim);
}

static void
test_rate_limits(pgm_conn *c)
{
	char		u[PGM_UUID_LEN],
				kid[PGM_UUID_LEN];
	char	   *key = NULL;
	pgm_api_key_options o = {0};
	pgm_rate_limit rl;
	pgm_ledger_result lr;
	pgm_result *r = NULL;
	int64_t		rid = 0;
	int			i,
				found = 0;

	printf("# tiers and rate limits\n");
	make_user(c, "ratelimits", u);
	EXPECT(pgm_add_funds(c, u, "10", NULL, NULL, &lr), PGM_OK, c);
	EXPECT(pgm_set_tier(c, "client-two", 2, PGM_UNLIMITED, 0), PGM_OK, c);
	EXPECT(pgm_set_tier(c, "client-bad", -5, PGM_UNLIMITED, 0), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_set_tier(c, "client-bad", 1, 1, -1), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_set_tier(c, NULL, 1, 1, 0), PGM_NULL_VALUE, c);
	EXPECT(pgm_list_tiers(c, &r), PGM_OK, c);
	for (i = 0; i < pgm_result_rows(r); i++)
		if (strcmp(pgm_result_value(r, i, "name"), "client-two") == 0)
			found = strcmp(pgm_result_value(r, i, "requests_per_minute"), "2") == 0 &&
				pgm_result_value(r, i, "tokens_per_minute") == NULL &&
				strcmp(pgm_result_value(r, i, "burst"), "0") == 0;
	CHECK(found, c);
	pgm_result_free(r);

	o.rate_limit_tier = "no-such-tier";
	EXPECT(pgm_create_api_key(c, u, "unknown tier", &o, kid, NULL), PGM_INVALID_PARAMETER, c);
	o.rate_limit_tier = "client-two";
	EXPECT(pgm_create_api_key(c, u, "two a minute", &o, kid, &key), PGM_OK, c);
	EXPECT(pgm_check_rate_limit(c, key, &rl), PGM_OK, c);
	CHECK(rl.allowed && rl.retry_after_ms == 0 && rl.remaining_requests == 2, c);
	EXPECT(pgm_charge_api_key(c, key, "0.1", "m-rate", 1, NULL, &lr), PGM_OK, c);
	CHECK(pgm_retry_after_ms(c) == 0, c);
	EXPECT(pgm_reserve_api_key(c, key, "0.1", NULL, NULL, &rid), PGM_OK, c);
	EXPECT(pgm_charge_api_key(c, key, "0.1", "m-rate", 1, NULL, &lr), PGM_RATE_LIMITED, c);
	CHECK(strcmp(pgm_sqlstate(c), "PM005") == 0 && pgm_retry_after_ms(c) > 0 &&
		  pgm_retry_after_ms(c) <= 61000, c);
	EXPECT(pgm_reserve_api_key(c, key, "0.1", NULL, NULL, &rid), PGM_RATE_LIMITED, c);
	CHECK(pgm_retry_after_ms(c) > 0, c);
	EXPECT(pgm_check_rate_limit(c, key, &rl), PGM_OK, c);
	CHECK(!rl.allowed && rl.retry_after_ms > 0 && rl.retry_after_ms <= 61000 &&
		  rl.remaining_requests == 0, c);
	CHECK(pgm_retry_after_ms(c) == 0, c);
	EXPECT(pgm_check_rate_limit(c, "sk_live_nope", &rl), PGM_INVALID_API_KEY, c);
	CHECK(!rl.allowed, c);
	/* the plain form, as the text the SQL function takes */
	pgm_set_plain_secrets(c, 1);
	EXPECT(pgm_check_rate_limit(c, key, &rl), PGM_OK, c);
	CHECK(!rl.allowed && rl.remaining_requests == 0, c);
	pgm_set_plain_secrets(c, 0);
	/* a tier without a request limit */
	EXPECT(pgm_set_tier(c, "client-two", PGM_UNLIMITED, PGM_UNLIMITED, 0), PGM_OK, c);
	EXPECT(pgm_check_rate_limit(c, key, &rl), PGM_OK, c);
	CHECK(rl.allowed && rl.remaining_requests == PGM_UNLIMITED, c);
	pgm_free_secret(key);
}

static void
test_audit_and_misc(pgm_conn *c)
{
	int64_t		n = -1,
				bad = -1,
				checked = -1;
	pgm_result *r = NULL;
	char	   *victim;

	printf("# audit trail, append-only, other errors\n");
	EXPECT(pgm_seal_audit(c, &n), PGM_OK, c);
	CHECK(n >= 1, c);
	EXPECT(pgm_verify_audit(c, 0, &bad, &checked), PGM_OK, c);
	CHECK(bad == 0 && checked >= n, c);
	EXPECT(pgm_verify_audit(c, 1, &bad, &checked), PGM_OK, c);

	/* the head and its anchor: on the chain; a foreign one is not */
	{
		pgm_audit_head_info head;
		unsigned char foreign[PGM_AUDIT_ANCHOR_LEN];

		EXPECT(pgm_audit_head(c, &head), PGM_OK, c);
		CHECK(head.last_id >= n && head.sealed_at[0] != '\0', c);
		CHECK(head.anchor[7] == (unsigned char) (head.last_id & 0xff) &&
			  memcmp(head.anchor + 8, head.chain_hash, PGM_AUDIT_HASH_LEN) == 0, c);
		EXPECT(pgm_verify_audit_anchor(c, 1, head.anchor, sizeof(head.anchor),
									   &bad, &checked), PGM_OK, c);
		CHECK(bad == 0 && checked >= n, c);
		EXPECT(pgm_verify_audit_anchor(c, 0, NULL, 0, &bad, &checked), PGM_OK, c);
		CHECK(bad == 0, c);
		memcpy(foreign, head.anchor, sizeof(foreign));
		foreign[PGM_AUDIT_ANCHOR_LEN - 1] ^= 1;
		EXPECT(pgm_verify_audit_anchor(c, 0, foreign, sizeof(foreign), &bad, &checked),
			   PGM_OK, c);
		CHECK(bad != 0, c);
		EXPECT(pgm_verify_audit_anchor(c, 1, foreign, sizeof(foreign), &bad, &checked),
			   PGM_AUDIT_CHAIN_BROKEN, c);
		EXPECT(pgm_verify_audit_anchor(c, 1, foreign, 3, &bad, &checked),
			   PGM_INVALID_PARAMETER, c);
	}

	/* PM013: a superuser who gets past the trigger is caught */
	victim = sql_value(c, "SELECT max(id)::text AS v FROM pgmarket.audit_log", 0, NULL);
	if (victim)
	{
		const char *p[1] = {victim};

		sql(c, "DROP TABLE IF EXISTS pg_temp.saved_audit");
		pgm_exec(c, "CREATE TEMP TABLE saved_audit AS SELECT * FROM pgmarket.audit_log "
				 "WHERE id = $1::bigint", 1, p, NULL);
		sql(c, "ALTER TABLE pgmarket.audit_log DISABLE TRIGGER audit_log_append_only");
		pgm_exec(c, "UPDATE pgmarket.audit_log SET application_name = 'tampered' "
				 "WHERE id = $1::bigint", 1, p, NULL);
		EXPECT(pgm_verify_audit(c, 0, &bad, &checked), PGM_OK, c);
		CHECK(bad == atoll(victim), c);
		EXPECT(pgm_verify_audit(c, 1, &bad, &checked), PGM_AUDIT_CHAIN_BROKEN, c);
		CHECK(strcmp(pgm_sqlstate(c), "PM013") == 0, c);
		/* put it back */
		sql(c, "UPDATE pgmarket.audit_log l SET application_name = s.application_name "
			"FROM pg_temp.saved_audit s WHERE l.id = s.id");
		sql(c, "ALTER TABLE pgmarket.audit_log ENABLE TRIGGER audit_log_append_only");
		EXPECT(pgm_verify_audit(c, 1, &bad, &checked), PGM_OK, c);
		free(victim);
	}
	else
		CHECK(!"an audit row to tamper with", c);

	/* 55000 */
	EXPECT(pgm_exec(c, "UPDATE pgmarket.ledger SET note = 'x'", 0, NULL, NULL), PGM_APPEND_ONLY, c);
	CHECK(strcmp(pgm_sqlstate(c), "55000") == 0, c);
	EXPECT(pgm_exec(c, "TRUNCATE pgmarket.ledger", 0, NULL, NULL), PGM_APPEND_ONLY, c);
	/* any other SQLSTATE */
	EXPECT(pgm_exec(c, "SELECT 1/0", 0, NULL, NULL), PGM_SERVER_ERROR, c);
	CHECK(strcmp(pgm_sqlstate(c), "22012") == 0, c);
	EXPECT(pgm_exec(c, "SELECT 1 AS one", 0, NULL, &r), PGM_OK, c);
	CHECK(strcmp(pgm_result_value(r, 0, "one"), "1") == 0, c);
	pgm_result_free(r);
	EXPECT(pgm_exec(c, NULL, 0, NULL, NULL), PGM_CLIENT_ERROR, c);
	/* a batch inside the application's transaction is refused */
	sql(c, "BEGIN");
	EXPECT(pgm_deduct_batch(c, NULL, 0, NULL), PGM_CLIENT_ERROR, c);
	sql(c, "ROLLBACK");

	/* 42501: a role without pgmarket's grants */
	sql(c, "DROP ROLE IF EXISTS pgm_client_nobody");
	sql(c, "CREATE ROLE pgm_client_nobody");
	sql(c, "SET ROLE pgm_client_nobody");
	EXPECT(pgm_seal_audit(c, &n), PGM_PERMISSION_DENIED, c);
	EXPECT(pgm_expire_reservations(c, &n), PGM_PERMISSION_DENIED, c);
	sql(c, "RESET ROLE");
	sql(c, "DROP ROLE pgm_client_nobody");
}

/*
 * Chat sessions, messages, completions, ratings, preferences: test_chat and
 * its parts, in the order they run (each part builds on the one before).
 */
static const char *const unknown_user = "c1ffffff-0000-4000-8000-00000000fffd";
static const char *const unknown_sid = "c2ffffff-0000-4000-8000-00000000fffd";

/* Sessions: sid and sid2 of u, osid of other. */
static void
chat_sessions(pgm_conn *c, const char *u, const char *other,
			  char sid[PGM_UUID_LEN], char osid[PGM_UUID_LEN])
{
	char		sid2[PGM_UUID_LEN];

	EXPECT(pgm_create_chat_session(c, u, "gpt-4o", "greetings", "agent-7", sid), PGM_OK, c);
	CHECK(strlen(sid) == 36, c);
	EXPECT(pgm_create_chat_session(c, u, "gpt-4o", NULL, NULL, sid2), PGM_OK, c);
	CHECK(strlen(sid2) == 36 && strcmp(sid, sid2) != 0, c);
	EXPECT(pgm_create_chat_session(c, other, "claude", NULL, NULL, osid), PGM_OK, c);
	EXPECT(pgm_create_chat_session(c, unknown_user, "gpt-4o", NULL, NULL, sid2),
		   PGM_UNKNOWN_ACCOUNT, c);
	CHECK(sid2[0] == '\0' && strcmp(pgm_sqlstate(c), "PM002") == 0, c);
	EXPECT(pgm_create_chat_session(c, u, NULL, NULL, NULL, sid2), PGM_NULL_VALUE, c);
}

/* Messages: cost recorded, not charged.  The id of the first message. */
static int64_t
chat_messages(pgm_conn *c, const char *u, const char *sid, const char *osid)
{
	int64_t		mid = 0,
				mid2 = 0;
	pgm_balance b;

	EXPECT(pgm_save_chat_message(c, u, sid, "user", "Hello \xc3\xa9", 3, "0.0001", NULL, &mid),
		   PGM_OK, c);
	CHECK(mid > 0, c);
	EXPECT(pgm_save_chat_message(c, u, sid, "tool", "42", 0, NULL,
								 "[{\"name\": \"calc\"}]", &mid2), PGM_OK, c);
	CHECK(mid2 > mid, c);
	EXPECT(pgm_get_balance(c, u, &b), PGM_OK, c);
	CHECK(strcmp(b.available_balance, "1.000000") == 0, c);
	EXPECT(pgm_save_chat_message(c, u, sid, "robot", "beep", 0, NULL, NULL, &mid2),
		   PGM_INVALID_PARAMETER, c);
	CHECK(strcmp(pgm_sqlstate(c), "22023") == 0 && mid2 == 0, c);
	EXPECT(pgm_save_chat_message(c, u, unknown_sid, "user", "hi", 0, NULL, NULL, &mid2),
		   PGM_UNKNOWN_ACCOUNT, c);
	CHECK(strcmp(pgm_sqlstate(c), "PM002") == 0, c);
	/* another user's session looks unknown */
	EXPECT(pgm_save_chat_message(c, u, osid, "user", "hi", 0, NULL, NULL, &mid2),
		   PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_save_chat_message(c, u, sid, "user", "hi", 0, "0.0000001", NULL, &mid2),
		   PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_save_chat_message(c, u, sid, "user", "hi", -1, NULL, NULL, &mid2),
		   PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_save_chat_message(c, u, sid, "user", NULL, 0, NULL, NULL, &mid2),
		   PGM_NULL_VALUE, c);
	EXPECT(pgm_save_chat_message(c, u, sid, "tool", "x", 0, NULL, "{not json", &mid2),
		   PGM_SERVER_ERROR, c);	/* 22P02 */
	return mid;
}

/* Completions: message and charge together, replayed by key. */
static void
chat_completions(pgm_conn *c, const char *u, const char *sid)
{
	char		key[64];
	pgm_ledger_result lr,
				lr2;
	pgm_balance b;
	char	   *v;
	const char *p[1];

	snprintf(key, sizeof(key), "compl-%s", suffix);
	EXPECT(pgm_record_completion(c, u, sid, "Hi! How can I help?", 120, "0.25", key, &lr),
		   PGM_OK, c);
	CHECK(strcmp(lr.kind, "charge") == 0 && strcmp(lr.amount, "0.250000") == 0 &&
		  strcmp(lr.available_balance, "0.750000") == 0 && !lr.replayed &&
		  lr.entry_id > 0 && strcmp(lr.user_id, u) == 0, c);
	EXPECT(pgm_record_completion(c, u, sid, "Hi! How can I help?", 120, "0.25", key, &lr2),
		   PGM_OK, c);
	CHECK(lr2.replayed == 1 && lr2.entry_id == lr.entry_id &&
		  strcmp(lr2.available_balance, "0.750000") == 0, c);
	EXPECT(pgm_record_completion(c, u, sid, "Something else", 120, "0.25", key, &lr2),
		   PGM_IDEMPOTENCY_CONFLICT, c);
	CHECK(strcmp(pgm_sqlstate(c), "PM003") == 0, c);
	EXPECT(pgm_record_completion(c, u, sid, "Too dear", 10, "5", NULL, &lr2),
		   PGM_INSUFFICIENT_FUNDS, c);
	CHECK(strcmp(pgm_sqlstate(c), "PM001") == 0, c);
	EXPECT(pgm_record_completion(c, u, unknown_sid, "Lost", 10, "0.01", NULL, &lr2),
		   PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_record_completion(c, u, sid, "Inexact", 10, "0.0000001", NULL, &lr2),
		   PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_get_balance(c, u, &b), PGM_OK, c);
	CHECK(strcmp(b.available_balance, "0.750000") == 0 &&
		  strcmp(b.spent_balance, "0.250000") == 0, c);
	/* nothing of the failed completions, one message of the replayed one */
	p[0] = sid;
	v = sql_value(c, "SELECT count(*)::text AS v FROM pgmarket.chat_messages "
				  "WHERE session_id = $1::uuid", 1, p);
	CHECK(v && strcmp(v, "3") == 0, c);
	free(v);
	p[0] = u;
	v = sql_value(c, "SELECT count(*)::text AS v FROM pgmarket.ledger "
				  "WHERE user_id = $1::uuid AND kind = 'charge'", 1, p);
	CHECK(v && strcmp(v, "1") == 0, c);
	free(v);
}

/* History, in pages; mid is the first message of sid. */
static void
chat_history(pgm_conn *c, const char *u, const char *other, const char *sid,
			 const char *osid, int64_t mid)
{
	pgm_result *r = NULL;
	int64_t		first_page_min;

	EXPECT(pgm_get_chat_history(c, u, sid, 100, 0, 0, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 3, c);
	if (pgm_result_rows(r) == 3)
	{
		CHECK(strcmp(pgm_result_value(r, 0, "role"), "assistant") == 0 &&
			  strcmp(pgm_result_value(r, 0, "cost"), "0.250000") == 0 &&
			  strcmp(pgm_result_value(r, 0, "tokens"), "120") == 0, c);
		CHECK(strcmp(pgm_result_value(r, 1, "role"), "tool") == 0 &&
			  pgm_result_value(r, 1, "tool_calls") != NULL, c);
		CHECK(strcmp(pgm_result_value(r, 2, "cost"), "0.000100") == 0 &&
			  strcmp(pgm_result_value(r, 2, "content"), "Hello \xc3\xa9") == 0 &&
			  pgm_result_value(r, 2, "tool_calls") == NULL &&
			  pgm_result_value(r, 2, "created_at") != NULL, c);
	}
	pgm_result_free(r);
	EXPECT(pgm_get_chat_history(c, u, sid, 100, 0, 1, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 3 && strcmp(pgm_result_value(r, 0, "role"), "user") == 0, c);
	pgm_result_free(r);
	EXPECT(pgm_get_chat_history(c, u, sid, 2, 0, 0, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 2, c);
	first_page_min = pgm_result_rows(r) == 2
		? atoll(pgm_result_value(r, 1, "message_id")) : 0;
	pgm_result_free(r);
	EXPECT(pgm_get_chat_history(c, u, sid, 2, first_page_min, 0, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 1 &&
		  atoll(pgm_result_value(r, 0, "message_id")) == mid, c);
	pgm_result_free(r);
	r = NULL;
	EXPECT(pgm_get_chat_history(c, u, sid, 0, 0, 0, &r), PGM_INVALID_PARAMETER, c);
	CHECK(r == NULL, c);
	EXPECT(pgm_get_chat_history(c, u, unknown_sid, 10, 0, 0, &r), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_get_chat_history(c, u, osid, 10, 0, 0, &r), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_get_chat_history(c, other, osid, 10, 0, 0, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 0, c);
	pgm_result_free(r);
}

/* Context, listing. */
static void
chat_context_and_list(pgm_conn *c, const char *u, const char *sid)
{
	pgm_result *r = NULL;
	int			i,
				found;

	EXPECT(pgm_update_chat_context(c, u, sid, "{\"topic\": \"greetings\", \"n\": 1}"), PGM_OK, c);
	EXPECT(pgm_update_chat_context(c, u, unknown_sid, "{}"), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_update_chat_context(c, u, sid, "{oops"), PGM_SERVER_ERROR, c);
	EXPECT(pgm_update_chat_context(c, u, sid, NULL), PGM_NULL_VALUE, c);
	EXPECT(pgm_list_chat_sessions(c, u, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 2, c);
	found = 0;
	for (i = 0; i < pgm_result_rows(r); i++)
		if (strcmp(pgm_result_value(r, i, "session_id"), sid) == 0)
			found = strcmp(pgm_result_value(r, i, "title"), "greetings") == 0 &&
				strcmp(pgm_result_value(r, i, "agent_id"), "agent-7") == 0 &&
				strcmp(pgm_result_value(r, i, "model_id"), "gpt-4o") == 0 &&
				strcmp(pgm_result_value(r, i, "status"), "active") == 0 &&
				strstr(pgm_result_value(r, i, "context"), "\"topic\": \"greetings\"") != NULL;
	CHECK(found, c);
	pgm_result_free(r);
	EXPECT(pgm_list_chat_sessions(c, unknown_user, &r), PGM_UNKNOWN_ACCOUNT, c);
}

/* Ending, then deletion. */
static void
chat_end_and_delete(pgm_conn *c, const char *u, const char *sid)
{
	int64_t		mid2 = 0;
	pgm_ledger_result lr2;
	pgm_balance b;
	pgm_result *r = NULL;

	EXPECT(pgm_end_chat_session(c, u, sid, "paused", NULL), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_end_chat_session(c, u, unknown_sid, "completed", NULL), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_end_chat_session(c, u, sid, "completed", "the user left"), PGM_OK, c);
	EXPECT(pgm_end_chat_session(c, u, sid, "failed", NULL), PGM_APPEND_ONLY, c);
	CHECK(strcmp(pgm_sqlstate(c), "55000") == 0, c);
	EXPECT(pgm_save_chat_message(c, u, sid, "user", "late", 0, NULL, NULL, &mid2),
		   PGM_APPEND_ONLY, c);
	EXPECT(pgm_record_completion(c, u, sid, "late", 1, "0.01", NULL, &lr2), PGM_APPEND_ONLY, c);
	EXPECT(pgm_get_balance(c, u, &b), PGM_OK, c);
	CHECK(strcmp(b.available_balance, "0.750000") == 0, c);

	/* deletion */
	EXPECT(pgm_delete_chat_session(c, u, sid), PGM_OK, c);
	EXPECT(pgm_delete_chat_session(c, u, sid), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_get_chat_history(c, u, sid, 10, 0, 0, &r), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_list_chat_sessions(c, u, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 1, c);
	pgm_result_free(r);
}

/* Ratings. */
static void
chat_ratings(pgm_conn *c, const char *u, const char *other)
{
	char		model[64];
	pgm_result *r = NULL;

	snprintf(model, sizeof(model), "rated-model-%s", suffix);
	EXPECT(pgm_rate_model(c, u, model, 5, "great"), PGM_OK, c);
	EXPECT(pgm_rate_model(c, u, model, 2, NULL), PGM_OK, c);	/* replaces */
	EXPECT(pgm_rate_model(c, other, model, 5, NULL), PGM_OK, c);
	EXPECT(pgm_rate_model(c, u, model, 6, NULL), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_rate_model(c, u, model, 0, NULL), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_rate_model(c, unknown_user, model, 3, NULL), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_rate_model(c, u, NULL, 3, NULL), PGM_NULL_VALUE, c);
	EXPECT(pgm_model_ratings(c, model, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 1 && strcmp(pgm_result_value(r, 0, "ratings"), "2") == 0 &&
		  strcmp(pgm_result_value(r, 0, "average_stars"), "3.50") == 0, c);
	pgm_result_free(r);
	EXPECT(pgm_model_ratings(c, NULL, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) >= 1, c);
	pgm_result_free(r);
}

/* Preferences. */
static void
chat_preferences(pgm_conn *c, const char *u)
{
	pgm_result *r = NULL;
	int			i,
				found;

	EXPECT(pgm_set_preference(c, u, "theme", "\"dark\""), PGM_OK, c);
	EXPECT(pgm_set_preference(c, u, "limits", "{\"daily\": 5}"), PGM_OK, c);
	EXPECT(pgm_set_preference(c, u, "theme", "\"light\""), PGM_OK, c);
	EXPECT(pgm_set_preference(c, u, "nothing", "null"), PGM_OK, c);
	EXPECT(pgm_set_preference(c, u, "bad", "{oops"), PGM_SERVER_ERROR, c);
	EXPECT(pgm_set_preference(c, u, NULL, "1"), PGM_NULL_VALUE, c);
	EXPECT(pgm_set_preference(c, u, "theme", NULL), PGM_NULL_VALUE, c);
	EXPECT(pgm_set_preference(c, unknown_user, "theme", "1"), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_get_preferences(c, u, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 3, c);
	found = 0;
	for (i = 0; i < pgm_result_rows(r); i++)
		if (strcmp(pgm_result_value(r, i, "key"), "theme") == 0)
			found = strcmp(pgm_result_value(r, i, "value"), "\"light\"") == 0;
	CHECK(found, c);
	pgm_result_free(r);
	EXPECT(pgm_get_preferences(c, unknown_user, &r), PGM_UNKNOWN_ACCOUNT, c);
	CHECK(r == NULL, c);
}

/* The application's own ids: sessions, message uuids, models, context
 * replaced, pages of sessions, the owner of a session, preferences deleted. */
static void
chat_own_ids(pgm_conn *c, const char *other)
{
	char		u[PGM_UUID_LEN],
				sid[PGM_UUID_LEN],
				again[PGM_UUID_LEN],
				owner[PGM_UUID_LEN],
				muuid[PGM_UUID_LEN];
	int64_t		m1 = 0,
				m2 = 0;
	int			deleted = -1;
	pgm_ledger_result lr;
	pgm_result *r = NULL;

	make_user(c, "chatids", u);
	EXPECT(pgm_add_funds(c, u, "1", NULL, NULL, &lr), PGM_OK, c);
	/* a session, then the same id again: a replay; another model or user: 23505 */
	EXPECT(pgm_create_chat_session_with_id(c, u, "gpt-4o", "kept", NULL, NULL, sid), PGM_OK, c);
	EXPECT(pgm_create_chat_session_with_id(c, u, "gpt-4o", NULL, NULL, sid, again), PGM_OK, c);
	CHECK(strcmp(sid, again) == 0, c);
	EXPECT(pgm_create_chat_session_with_id(c, u, "claude", NULL, NULL, sid, again),
		   PGM_DUPLICATE, c);
	EXPECT(pgm_create_chat_session_with_id(c, other, "gpt-4o", NULL, NULL, sid, again),
		   PGM_DUPLICATE, c);
	/* a message uuid (any fresh uuid: the one of a second session) replays */
	EXPECT(pgm_create_chat_session(c, u, "gpt-4o", NULL, NULL, muuid), PGM_OK, c);
	EXPECT(pgm_save_chat_message_ex(c, u, sid, "user", "hello", 2, NULL, NULL, muuid,
									"gpt-4o-mini", &m1), PGM_OK, c);
	EXPECT(pgm_save_chat_message_ex(c, u, sid, "user", "hello", 2, NULL, NULL, muuid,
									"gpt-4o-mini", &m2), PGM_OK, c);
	CHECK(m1 > 0 && m1 == m2, c);
	EXPECT(pgm_save_chat_message_ex(c, u, sid, "user", "hello!", 2, NULL, NULL, muuid,
									"gpt-4o-mini", &m2), PGM_IDEMPOTENCY_CONFLICT, c);
	EXPECT(pgm_record_completion_ex(c, u, sid, "answer", 3, "0.25", NULL, sid, "gpt-4o",
									&lr), PGM_OK, c);
	CHECK(!lr.replayed, c);
	EXPECT(pgm_record_completion_ex(c, u, sid, "answer", 3, "0.25", NULL, sid, "gpt-4o",
									&lr), PGM_OK, c);
	CHECK(lr.replayed && strcmp(lr.available_balance, "0.750000") == 0, c);
	EXPECT(pgm_get_chat_history(c, u, sid, 10, 0, 1, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 2, c);
	CHECK_VALUE(r, "model_id", "gpt-4o-mini", c);
	CHECK_VALUE(r, "message_uuid", muuid, c);
	pgm_result_free(r);
	/* context: merged, then replaced */
	EXPECT(pgm_update_chat_context(c, u, sid, "{\"a\": 1}"), PGM_OK, c);
	EXPECT(pgm_update_chat_context(c, u, sid, "{\"b\": 2}"), PGM_OK, c);
	EXPECT(pgm_list_chat_sessions_page(c, u, "active", 1, NULL, NULL, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 1, c);
	pgm_result_free(r);
	EXPECT(pgm_replace_chat_context(c, u, sid, "{\"c\": 3}"), PGM_OK, c);
	EXPECT(pgm_list_chat_sessions_page(c, u, NULL, 10, NULL, NULL, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 2, c);
	pgm_result_free(r);
	EXPECT(pgm_list_chat_sessions_page(c, u, "open", 10, NULL, NULL, &r), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_list_chat_sessions_page(c, u, NULL, 10, "2000-01-01", NULL, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 0, c);
	pgm_result_free(r);
	/* the owner of a session */
	EXPECT(pgm_chat_session_owner(c, sid, owner), PGM_OK, c);
	CHECK(strcmp(owner, u) == 0, c);
	EXPECT(pgm_chat_session_owner(c, unknown_sid, owner), PGM_OK, c);
	CHECK(owner[0] == '\0', c);
	/* preferences deleted */
	EXPECT(pgm_set_preference(c, u, "theme", "\"dark\""), PGM_OK, c);
	EXPECT(pgm_delete_preference(c, u, "theme", &deleted), PGM_OK, c);
	CHECK(deleted == 1, c);
	EXPECT(pgm_delete_preference(c, u, "theme", &deleted), PGM_OK, c);
	CHECK(deleted == 0, c);
	EXPECT(pgm_delete_preference(c, unknown_user, "theme", &deleted), PGM_UNKNOWN_ACCOUNT, c);
}

/* An actor, and named prepared statements, through the same path. */
static void
chat_as_actor(pgm_conn *c, const char *u, const char *other, const char *osid)
{
	int64_t		mid2 = 0;
	pgm_ledger_result lr2;
	pgm_result *r = NULL;

	pgm_set_prepared(c, 1);
	EXPECT(pgm_set_actor(c, other), PGM_OK, c);
	EXPECT(pgm_list_chat_sessions(c, u, &r), PGM_PERMISSION_DENIED, c);
	EXPECT(pgm_save_chat_message(c, other, osid, "user", "as myself", 1, NULL, NULL, &mid2),
		   PGM_OK, c);
	EXPECT(pgm_save_chat_message(c, other, osid, "system", "again", 1, "0", NULL, &mid2),
		   PGM_OK, c);
	EXPECT(pgm_record_completion(c, other, osid, "no money", 1, "0.01", NULL, &lr2),
		   PGM_INSUFFICIENT_FUNDS, c);
	EXPECT(pgm_set_actor(c, NULL), PGM_OK, c);
	EXPECT(pgm_get_chat_history(c, other, osid, 10, 0, 1, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 2 && strcmp(pgm_result_value(r, 1, "role"), "system") == 0, c);
	pgm_result_free(r);
	pgm_set_prepared(c, 0);
}

static void
test_chat(pgm_conn *c)
{
	char		u[PGM_UUID_LEN],
				other[PGM_UUID_LEN],
				sid[PGM_UUID_LEN],
				osid[PGM_UUID_LEN];
	pgm_ledger_result lr;
	int64_t		mid;

	printf("# chat and metering\n");
	make_user(c, "chat", u);
	make_user(c, "chatother", other);
	EXPECT(pgm_add_funds(c, u, "1", NULL, NULL, &lr), PGM_OK, c);
	chat_sessions(c, u, other, sid, osid);
	mid = chat_messages(c, u, sid, osid);
	chat_completions(c, u, sid);
	chat_history(c, u, other, sid, osid, mid);
	chat_context_and_list(c, u, sid);
	chat_end_and_delete(c, u, sid);
	chat_ratings(c, u, other);
	chat_preferences(c, u);
	chat_own_ids(c, other);
	chat_as_actor(c, u, other, osid);
}

/* ------------------------------------------------------------------------
 * Through pgbouncer in transaction mode
 * ------------------------------------------------------------------------ */

static void
test_bouncer(const char *conninfo)
{
	pgm_conn   *a = pgm_connect(conninfo),
			   *b = pgm_connect(conninfo),
			   *direct = pgm_connect("");
	char		actor[PGM_UUID_LEN],
				u[PGM_UUID_LEN],
				kid[PGM_UUID_LEN];
	char	   *v,
			   *secret = NULL;
	pgm_ledger_result lr;
	pgm_charge ch[4];
	pgm_charge_result res[4];
	int			i,
				leaks = 0;
	const char *p[1];

	printf("# through pgbouncer (transaction mode): %s\n", conninfo);
	CHECK(pgm_conn_status(a) == PGM_OK && pgm_conn_status(b) == PGM_OK, a);
	if (pgm_conn_status(a) != PGM_OK || pgm_conn_status(b) != PGM_OK)
		goto out;
	make_user(a, "bouncer_actor", actor);
	make_user(a, "bouncer_user", u);
	memcpy(actor, u, PGM_UUID_LEN);		/* the transaction acts for u */
	EXPECT(pgm_set_actor(a, actor), PGM_OK, a);
	for (i = 0; i < 20; i++)
	{
		EXPECT(pgm_add_funds(a, u, "0.5", NULL, NULL, &lr), PGM_OK, a);
		/* b shares the one server connection: the actor must not leak */
		v = sql_value(b, "SELECT coalesce(current_setting('pgmarket.actor', true), '') AS v", 0, NULL);
		leaks += v == NULL || v[0] != '\0';
		free(v);
	}
	CHECK(leaks == 0, b);
	EXPECT(pgm_deduct_balance(a, u, "100", "m", 0, NULL, &lr), PGM_INSUFFICIENT_FUNDS, a);
	/* the actor reached the audit trail */
	p[0] = u;
	EXPECT(pgm_put_provider_key(a, u, "openai", "sk-through-the-bouncer-1", NULL, kid), PGM_OK, a);
	v = sql_value(direct, "SELECT actor AS v FROM pgmarket.audit_log "
				  "WHERE table_name = 'pgmarket.provider_keys' AND new_values->>'user_id' = $1 "
				  "ORDER BY id DESC LIMIT 1", 1, p);
	CHECK(v && strcmp(v, actor) == 0, direct);
	free(v);
	EXPECT(pgm_get_provider_key(a, u, "openai", &secret), PGM_OK, a);
	CHECK(secret && strcmp(secret, "sk-through-the-bouncer-1") == 0, a);
	pgm_free_secret(secret);

	ch[0] = (pgm_charge) {u, "1", "m", 1, NULL};
	ch[1] = (pgm_charge) {u, "100", "m", 1, NULL};
	ch[2] = (pgm_charge) {u, "1", "m", 1, NULL};
	ch[3] = (pgm_charge) {u, "bad", "m", 1, NULL};
	EXPECT(pgm_deduct_batch(a, ch, 4, res), PGM_OK, a);
	CHECK(res[0].status == PGM_OK && res[1].status == PGM_INSUFFICIENT_FUNDS &&
		  res[2].status == PGM_OK && strcmp(res[2].available_balance, "8.000000") == 0 &&
		  res[3].status == PGM_SERVER_ERROR, a);
	EXPECT(pgm_set_actor(a, NULL), PGM_OK, a);
	EXPECT(pgm_deduct_batch(a, ch, 3, res), PGM_OK, a);
	CHECK(res[0].status == PGM_OK && res[1].status == PGM_INSUFFICIENT_FUNDS && res[2].status == PGM_OK, a);
	EXPECT(pgm_deduct_batch_array(a, ch, 3, res), PGM_OK, a);
	CHECK(res[0].status == PGM_OK && res[1].status == PGM_INSUFFICIENT_FUNDS &&
		  strcmp(res[2].available_balance, "4.000000") == 0, a);
out:
	pgm_finish(a);
	pgm_finish(b);
	pgm_finish(direct);
}

static void
quiet_notice(void *arg, const char *message)
{
	(void) arg;
	(void) message;
}

/* The agent platform's store: projects, templates, change requests. */
static void
test_projects(pgm_conn *c)
{
	char		u[PGM_UUID_LEN],
				other[PGM_UUID_LEN],
				pid[PGM_UUID_LEN],
				pid2[PGM_UUID_LEN],
				tid[PGM_UUID_LEN],
				tid2[PGM_UUID_LEN],
				mid[PGM_UUID_LEN],
				tname[64];
	const char *deps[] = {"flask", "sqlalchemy", NULL};
	const char *files[] = {"app.py", "templates/cart.html", NULL};
	const char *vars[] = {"DATABASE_URL", NULL};
	const char *tags[] = {"python", "rest", NULL};
	const char *unknown_pid = "c3ffffff-0000-4000-8000-00000000fffd";
	pgm_project_options po = {0};
	pgm_template_options to = {0};
	pgm_result *r = NULL;
	const char *v;

	printf("# projects, templates and change requests\n");
	make_user(c, "proj", u);
	make_user(c, "projother", other);

	po.codebase = "{\"language\": \"python\"}";
	po.dependencies = deps;
	po.test_coverage = "81.5";
	EXPECT(pgm_save_project(c, u, "shop", "web", &po, pid), PGM_OK, c);
	CHECK(strlen(pid) == 36, c);
	EXPECT(pgm_get_project(c, u, pid, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 1, c);
	CHECK_VALUE(r, "dependencies", "{flask,sqlalchemy}", c);
	CHECK_VALUE(r, "test_coverage", "81.5", c);
	CHECK_VALUE(r, "environment", "{}", c);	/* the SQL default */
	pgm_result_free(r);
	r = NULL;
	/* the same id again: an update; another user's id: 42501 */
	memset(&po, 0, sizeof(po));
	po.id = pid;
	EXPECT(pgm_save_project(c, u, "shop-v2", "web", &po, pid2), PGM_OK, c);
	CHECK(strcmp(pid, pid2) == 0, c);
	EXPECT(pgm_save_project(c, other, "mine", "web", &po, pid2), PGM_PERMISSION_DENIED, c);
	CHECK(pid2[0] == '\0' && strcmp(pgm_sqlstate(c), "42501") == 0, c);
	EXPECT(pgm_save_project(c, u, NULL, "web", NULL, pid2), PGM_NULL_VALUE, c);
	EXPECT(pgm_save_project(c, u, "x", "web", &(pgm_project_options) {.codebase = "[1]"}, pid2),
		   PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_save_project(c, u, "second", "cli", NULL, pid2), PGM_OK, c);
	EXPECT(pgm_get_project(c, u, unknown_pid, &r), PGM_UNKNOWN_ACCOUNT, c);
	CHECK(r == NULL && strcmp(pgm_sqlstate(c), "PM002") == 0, c);
	EXPECT(pgm_get_project(c, other, pid, &r), PGM_UNKNOWN_ACCOUNT, c);

	EXPECT(pgm_list_projects(c, u, NULL, 50, NULL, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 2, c);
	CHECK_VALUE(r, "name", "second", c);	/* newest first */
	pgm_result_free(r);
	r = NULL;
	EXPECT(pgm_list_projects(c, u, "active", 0, NULL, &r), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_archive_project(c, u, pid2), PGM_OK, c);
	EXPECT(pgm_archive_project(c, u, pid2), PGM_APPEND_ONLY, c);	/* 55000 */
	EXPECT(pgm_list_projects(c, u, "active", 50, NULL, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 1, c);
	pgm_result_free(r);
	r = NULL;

	/* templates (the test connects as a superuser, which may write them) */
	snprintf(tname, sizeof(tname), "fastapi-%s", suffix);
	to.description = "A CRUD service";
	to.required_vars = vars;
	to.tags = tags;
	to.optional_vars = "{\"PORT\": \"8000\"}";
	to.setup_minutes = "5";
	EXPECT(pgm_save_template(c, tname, "api", "{\"main.py\": \"app = FastAPI()\"}",
							 &to, tid), PGM_OK, c);
	EXPECT(pgm_get_template(c, tname, &r), PGM_OK, c);
	CHECK_VALUE(r, "optional_vars", "{\"PORT\": \"8000\"}", c);
	CHECK_VALUE(r, "setup_minutes", "5", c);
	pgm_result_free(r);
	r = NULL;
	EXPECT(pgm_save_template(c, tname, "api", "{}", NULL, tid2), PGM_OK, c);
	CHECK(strcmp(tid, tid2) == 0, c);	/* replaced by name */
	EXPECT(pgm_save_template(c, tname, "api", NULL, NULL, tid2), PGM_NULL_VALUE, c);
	EXPECT(pgm_get_template(c, tname, &r), PGM_OK, c);
	v = pgm_result_value(r, 0, "required_vars");
	CHECK(pgm_result_rows(r) == 1 && v && strcmp(v, "{}") == 0, c);
	pgm_result_free(r);
	r = NULL;
	EXPECT(pgm_get_template(c, "no-such-template-anywhere", &r), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_list_templates(c, "api", &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) >= 1, c);
	pgm_result_free(r);
	r = NULL;

	/* change requests: forward only */
	EXPECT(pgm_request_modification(c, u, pid, "add a cart page", "{\"risk\": \"low\"}",
									files, mid), PGM_OK, c);
	CHECK(strlen(mid) == 36, c);
	EXPECT(pgm_request_modification(c, u, pid2, "on an archived project", NULL, NULL, tid2),
		   PGM_APPEND_ONLY, c);
	EXPECT(pgm_set_modification_status(c, u, mid, "applied", NULL), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_set_modification_status(c, u, mid, "approved", NULL), PGM_OK, c);
	EXPECT(pgm_set_modification_status(c, u, mid, "applied", "{\"tests\": \"passed\"}"), PGM_OK, c);
	EXPECT(pgm_set_modification_status(c, u, mid, "approved", NULL), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_set_modification_status(c, other, mid, "failed", NULL), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_list_modifications(c, u, pid, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 1, c);
	CHECK_VALUE(r, "status", "applied", c);
	CHECK_VALUE(r, "affected_files", "{app.py,templates/cart.html}", c);
	pgm_result_free(r);
}

/* The calls of pgmarket import and export: import_user, import_batch, export_accounts, a transaction. */
static void
test_import(pgm_conn *c)
{
	unsigned char b[16];
	char		id[PGM_UUID_LEN],
				email[96],
				uname[64],
				json[1024];
	pgm_result *r = NULL;
	pgm_balance bal;
	int			row,
				found = 0;

	randombytes_buf(b, sizeof(b));
	snprintf(id, sizeof(id), "%02x%02x%02x%02x-%02x%02x-4%x%02x-8%x%02x-%02x%02x%02x%02x%02x%02x",
			 b[0], b[1], b[2], b[3], b[4], b[5], b[6] & 15, b[7], b[8] & 15, b[9],
			 b[10], b[11], b[12], b[13], b[14], b[15]);
	snprintf(email, sizeof(email), "imp-%s@example.com", suffix);
	snprintf(uname, sizeof(uname), "imp_%s", suffix);
	EXPECT(pgm_import_user(c, id, email, uname, NULL, "2024-01-02T03:04:05Z"), PGM_OK, c);
	EXPECT(pgm_import_user(c, id, email, uname, NULL, NULL), PGM_OK, c);
	EXPECT(pgm_import_user(c, id, "other@example.com", uname, NULL, NULL), PGM_DUPLICATE, c);
	EXPECT(pgm_import_user(c, id, email, uname, "not a hash", NULL), PGM_INVALID_PARAMETER, c);

	snprintf(json, sizeof(json),
			 "[{\"user_id\": \"%s\", \"type\": \"deposit\", \"amount\": \"2.5\", \"key\": \"imp-1\","
			 " \"created_at\": \"2024-02-01T00:00:00Z\"},"
			 " {\"user_id\": \"%s\", \"type\": \"charge\", \"amount\": \"9\", \"key\": \"imp-2\"}]",
			 id, id);
	EXPECT(pgm_import_batch(c, "entries", json, &r), PGM_OK, c);
	CHECK(pgm_result_rows(r) == 2, c);
	CHECK_VALUE(r, "outcome", "created", c);
	CHECK(strcmp(pgm_result_value(r, 1, "outcome"), "rejected") == 0 &&
		  strstr(pgm_result_value(r, 1, "reasons"), "PM001") != NULL, c);
	pgm_result_free(r);
	EXPECT(pgm_import_batch(c, "entries", json, &r), PGM_OK, c);
	CHECK_VALUE(r, "outcome", "present", c);
	pgm_result_free(r);
	EXPECT(pgm_import_batch(c, "nonsense", "[]", &r), PGM_INVALID_PARAMETER, c);
	CHECK(r == NULL, c);

	/* a transaction over several calls, rolled back: nothing stays */
	EXPECT(pgm_begin(c), PGM_OK, c);
	snprintf(json, sizeof(json),
			 "[{\"user_id\": \"%s\", \"type\": \"deposit\", \"amount\": \"1\", \"key\": \"imp-3\"}]", id);
	EXPECT(pgm_import_batch(c, "entries", json, &r), PGM_OK, c);
	CHECK_VALUE(r, "outcome", "created", c);
	pgm_result_free(r);
	EXPECT(pgm_rollback(c), PGM_OK, c);
	EXPECT(pgm_get_balance(c, id, &bal), PGM_OK, c);
	CHECK(strcmp(bal.total_balance, "2.500000") == 0, c);
	EXPECT(pgm_begin(c), PGM_OK, c);
	EXPECT(pgm_commit(c), PGM_OK, c);

	EXPECT(pgm_export_accounts(c, &r), PGM_OK, c);
	for (row = 0; row < pgm_result_rows(r); row++)
		if (strcmp(pgm_result_value(r, row, "id"), id) == 0)
			found = strcmp(pgm_result_value(r, row, "created_at"),
						   "2024-01-02T03:04:05.000000Z") == 0;
	CHECK(found, c);
	pgm_result_free(r);
}

int
main(int argc, char **argv)
{
	pgm_conn   *c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (sodium_init() < 0)
		return 2;
	snprintf(suffix, sizeof(suffix), "%08x", randombytes_random());

	if (argc >= 3 && strcmp(argv[1], "bouncer") == 0)
	{
		test_bouncer(argv[2]);
		return tally();
	}

	test_status_and_money();
	test_connections();
	if ((c = test_connect()) == NULL)
		return tally() | 1;
	PQsetNoticeProcessor(pgm_pgconn(c), quiet_notice, NULL);
	test_accounts(c);
	test_ledger(c);
	test_batch(c, 0);
	test_batch(c, 1);
	test_big_batch(c);
	test_actor_and_prepared(c);
	test_vault(c);
	test_sealed_log(c);
	test_api_keys(c);
	test_rate_limits(c);
	test_audit_and_misc(c);
	test_chat(c);
	test_projects(c);
	test_import(c);
	pgm_finish(c);
	return tally();
}
