/*
 * reserve_and_settle.c: a streaming completion whose cost is known only at
 * the end.  Hold an upper bound before streaming, settle the real cost
 * after (the rest of the hold is freed); release the hold if the stream
 * fails.  A hold that is never settled expires by itself.
 */
#include <pgmarket.h>

#include <stdio.h>
#include <time.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	pgm_conn   *conn = pgm_connect(argc > 1 ? argv[1] : "");
	char		email[96],
				username[64],
				user_id[PGM_UUID_LEN];
	int64_t		hold = 0,
				hold2 = 0;
	pgm_balance b;
	pgm_ledger_result r;
	int			rc = 1;

	if (conn == NULL || pgm_conn_status(conn) != PGM_OK)
	{
		fprintf(stderr, "connection failed: %s\n", pgm_errmsg(conn));
		goto out;
	}
	snprintf(email, sizeof(email), "carol.%ld.%d@example.com", (long) time(NULL), (int) getpid());
	snprintf(username, sizeof(username), "carol_%ld_%d", (long) time(NULL), (int) getpid());
	if (pgm_create_user(conn, email, username, NULL, NULL, NULL, user_id) != PGM_OK ||
		pgm_add_funds(conn, user_id, "2.00", NULL, NULL, NULL) != PGM_OK)
	{
		fprintf(stderr, "setup: %s\n", pgm_errmsg(conn));
		goto out;
	}
	/* before streaming: hold the most the completion may cost */
	if (pgm_reserve(conn, user_id, "0.50", "5 minutes", NULL, &hold) != PGM_OK ||
		pgm_get_balance(conn, user_id, &b) != PGM_OK)
	{
		fprintf(stderr, "reserve: %s\n", pgm_errmsg(conn));
		goto out;
	}
	printf("hold %lld: reserved %s, available %s\n", (long long) hold,
		   b.reserved_balance, b.available_balance);
	/* ... stream 5120 tokens ... then charge what they cost */
	if (pgm_settle(conn, user_id, hold, "0.1234", "claude-sonnet", 5120, &r) != PGM_OK)
	{
		fprintf(stderr, "settle: %s\n", pgm_errmsg(conn));
		goto out;
	}
	printf("settled %s, available %s\n", r.amount, r.available_balance);
	/* a second stream that fails half-way: give the hold back */
	if (pgm_reserve(conn, user_id, "0.50", NULL, NULL, &hold2) != PGM_OK ||
		pgm_release(conn, user_id, hold2, &b) != PGM_OK)
	{
		fprintf(stderr, "release: %s\n", pgm_errmsg(conn));
		goto out;
	}
	printf("released hold %lld, available %s\n", (long long) hold2, b.available_balance);
	/* settling it now is an error of its own kind */
	if (pgm_settle(conn, user_id, hold2, "0.1", "claude-sonnet", 1, &r) == PGM_RESERVATION_STATE)
		printf("settle after release: %s\n", pgm_errmsg(conn));
	rc = 0;
out:
	pgm_finish(conn);
	return rc;
}
