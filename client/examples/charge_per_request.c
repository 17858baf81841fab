/*
 * charge_per_request.c: charge each API request once.  The request id is
 * the idempotency key: a retry after a timeout returns the first result
 * (replayed) instead of charging twice; running out of credit is an
 * ordinary outcome (PGM_INSUFFICIENT_FUNDS), not a crash.
 */
#include <pgmarket.h>

#include <stdio.h>

#include "example_common.h"

int
main(int argc, char **argv)
{
	pgm_conn   *conn;
	char		user_id[PGM_UUID_LEN],
				request_id[64];
	pgm_ledger_result r;
	pgm_status	st;
	int			rc = 1;

	conn = example_start(argc, argv, "bob", "0.01", user_id);
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
