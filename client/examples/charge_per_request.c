/*
 * charge_per_request.c: charge each API request once.  The request id is
 * the idempotency key: a retry after a timeout returns the first result
 * (replayed) instead of charging twice; running out of credit is an
 * ordinary outcome (PGM_INSUFFICIENT_FUNDS), not a crash.
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
				user_id[PGM_UUID_LEN],
				request_id[64];
	pgm_ledger_result r;
	pgm_status	st;
	int			rc = 1;

	if (conn == NULL || pgm_conn_status(conn) != PGM_OK)
	{
		fprintf(stderr, "connection failed: %s\n", pgm_errmsg(conn));
		goto out;
	}
	snprintf(email, sizeof(email), "bob.%ld.%d@example.com", (long) time(NULL), (int) getpid());
	snprintf(username, sizeof(username), "bob_%ld_%d", (long) time(NULL), (int) getpid());
	if (pgm_create_user(conn, email, username, NULL, NULL, NULL, user_id) != PGM_OK ||
		pgm_add_funds(conn, user_id, "0.01", NULL, NULL, NULL) != PGM_OK)
	{
		fprintf(stderr, "setup: %s\n", pgm_errmsg(conn));
		goto out;
	}
	for (int i = 1; i <= 4; i++)
	{
		snprintf(request_id, sizeof(request_id), "req-%s-%d", user_id, i);
		/* the gateway retries every request once */
		for (int attempt = 0; attempt < 2; attempt++)
		{
			st = pgm_deduct_balance(conn, user_id, "0.004200", "gpt-4o", 1234, request_id, &r);
			if (st == PGM_OK)
				printf("%s: charged %s, available %s%s\n", request_id, r.amount,
					   r.available_balance, r.replayed ? " (replayed)" : "");
			else if (st == PGM_INSUFFICIENT_FUNDS)
				printf("%s: refused: %s\n", request_id, pgm_errmsg(conn));
			else
			{
				fprintf(stderr, "%s: %s %s\n", request_id, pgm_status_name(st), pgm_errmsg(conn));
				goto out;
			}
		}
	}
	rc = 0;
out:
	pgm_finish(conn);
	return rc;
}
