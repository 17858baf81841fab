/*
 * register_and_fund.c: create a user, credit a payment once (the payment id
 * is the idempotency key, so a retried webhook credits nothing more), log in
 * and read the balance.
 *
 *   cc register_and_fund.c $(pkg-config --cflags --libs pgmarket libpq libsodium)
 *   ./a.out ["conninfo"]        (default: the PG* environment)
 */
#include <pgmarket.h>

#include <stdio.h>

#include "example_common.h"

int
main(int argc, char **argv)
{
	pgm_conn   *conn = example_connect(argc, argv);
	char		email[96],
				username[64],
				user_id[PGM_UUID_LEN],
				who[PGM_UUID_LEN];
	pgm_ledger_result deposit;
	pgm_balance balance;
	int			rc = 1;

	if (conn == NULL)
		return 1;
	example_names("alice", email, sizeof(email), username, sizeof(username));

	if (pgm_create_user(conn, email, username, "correct horse battery", NULL, NULL,
						user_id) != PGM_OK)
	{
		fprintf(stderr, "create_user: %s (%s)\n", pgm_errmsg(conn), pgm_sqlstate(conn));
		goto out;
	}
	/* the webhook fires twice: the second credit is a replay */
	for (int i = 0; i < 2; i++)
		if (pgm_add_funds(conn, user_id, "20.00", "stripe-pi_3Nx-example", "card payment",
						  &deposit) != PGM_OK)
		{
			fprintf(stderr, "add_funds: %s\n", pgm_errmsg(conn));
			goto out;
		}
	if (pgm_authenticate(conn, username, "correct horse battery", who) != PGM_OK || who[0] == '\0')
	{
		fprintf(stderr, "login refused\n");
		goto out;
	}
	if (pgm_get_balance(conn, user_id, &balance) != PGM_OK)
	{
		fprintf(stderr, "get_balance: %s\n", pgm_errmsg(conn));
		goto out;
	}
	printf("user %s: deposit %s (replayed: %s), available %s\n", user_id, deposit.amount,
		   deposit.replayed ? "yes" : "no", balance.available_balance);
	rc = 0;
out:
	pgm_finish(conn);
	return rc;
}
