/*
 * reserve_and_settle.c: a streaming completion whose cost is known only at
 * the end.  Hold an upper bound before streaming, settle the real cost
 * after (the rest of the hold is freed); release the hold if the stream
 * fails.  A hold that is never settled expires by itself.
 */
#include <pgmarket.h>

#include <stdio.h>

#include "example_common.h"

int
main(int argc, char **argv)
{
	pgm_conn   *conn;
	char		user_id[PGM_UUID_LEN];
	int64_t		hold = 0,
				hold2 = 0;
	pgm_balance b;
	pgm_ledger_result r;
	int			rc = 1;

	conn = example_start(argc, argv, "carol", "2.00", user_id);
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
