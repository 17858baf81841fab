/*
 * charge_batch.c: meter a burst of requests in one call.  pgm_deduct_batch
 * pipelines the charges (one round trip and one commit per 64), and each
 * charge keeps its own outcome, as if it had been charged on its own: a
 * retry replays, a charge beyond the balance or of an unknown user fails
 * alone, and an amount that cannot be charged is refused before it is sent.
 */
#include <pgmarket.h>

#include <stdio.h>
#include <string.h>

#include "example_common.h"

#define N 100

int
main(int argc, char **argv)
{
	pgm_conn   *conn;
	char		user_id[PGM_UUID_LEN],
				keys[N][48];
	pgm_charge	charges[N];
	pgm_charge_result results[N];
	pgm_balance b;
	int			i,
				applied = 0,
				replayed = 0;

	conn = example_start(argc, argv, "frank", "1.00", user_id);
	for (i = 0; i < N; i++)
	{
		snprintf(keys[i], sizeof(keys[i]), "burst-%s-%d", user_id, i);
		charges[i] = (pgm_charge) {user_id, "0.01", "gpt-4o-mini", 120, keys[i]};
	}
	charges[90].idempotency_key = keys[0];	/* a retry of the first: replays */
	charges[91].amount = "5.00";	/* beyond the balance */
	charges[92].user_id = "00000000-0000-4000-8000-0000000000ff";	/* nobody */
	charges[93].amount = "0.0000001";	/* not whole micro-credits */

	if (pgm_deduct_batch(conn, charges, N, results) != PGM_OK)
	{
		fprintf(stderr, "batch: %s\n", pgm_errmsg(conn));
		pgm_finish(conn);
		return 1;
	}
	printf("%d charges in one call; refused:", N);
	for (i = 0; i < N; i++)
	{
		if (results[i].status == PGM_OK)
		{
			applied++;
			replayed += results[i].replayed;
		}
		else
			printf(" %s", results[i].sqlstate);
	}
	printf("\n%d applied, %d of them replayed\n", applied, replayed);
	for (i = 0; i < N; i++)
		if (results[i].status != PGM_OK)
			printf("charge %d: %s: %s\n", i, pgm_status_name(results[i].status),
				   pgm_batch_errmsg(conn, i));
	if (pgm_get_balance(conn, user_id, &b) != PGM_OK)
	{
		fprintf(stderr, "balance: %s\n", pgm_errmsg(conn));
		pgm_finish(conn);
		return 1;
	}
	printf("available %s\n", b.available_balance);
	pgm_finish(conn);
	return applied == N - 3 && replayed == 1 && strcmp(b.available_balance, "0.040000") == 0 ? 0 : 1;
}
