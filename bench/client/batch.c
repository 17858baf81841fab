/*
 * bench/client/batch.c: charges through libpgmarket, three ways, on one
 * connection: one call at a time (a round trip and a commit each);
 * pgm_deduct_batch (libpq pipeline mode: transactions of 64 charges, one
 * statement each, a round trip and a commit a transaction);
 * pgm_deduct_batch_array (the server's deduct_batch, 1,000 charges a
 * statement).  Each way runs REPEAT times, interleaved, the best kept.
 * Prints charges per second, the ratios to one call at a time and the
 * target line (the pipelined batch at 5x or more); exit 3 when it is
 * missed, 1 when a charge failed.
 *
 *   batch CONNINFO NUSERS NCHARGES [REPEAT]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgmarket.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	pgm_conn   *c;
	int			nusers,
				n,
				i,
				r,
				repeat,
				failed = 0;
	char	  (*ids)[PGM_UUID_LEN];
	pgm_charge *charges;
	pgm_charge_result *res;
	pgm_ledger_result lr;
	double		t0,
				single = 0,
				pipelined = 0,
				array = 0;

	if (argc != 4 && argc != 5)
	{
		fprintf(stderr, "usage: batch CONNINFO NUSERS NCHARGES [REPEAT]\n");
		return 2;
	}
	nusers = atoi(argv[2]);
	n = atoi(argv[3]);
	repeat = argc == 5 ? atoi(argv[4]) : 1;
	if (nusers < 1 || n < 1 || repeat < 1)
	{
		fprintf(stderr, "batch: NUSERS, NCHARGES and REPEAT must be positive\n");
		return 2;
	}
	c = pgm_connect(argv[1]);
	if (pgm_conn_status(c) != PGM_OK)
	{
		fprintf(stderr, "connect: %s\n", pgm_errmsg(c));
		return 1;
	}
	ids = calloc(nusers, sizeof(*ids));
	charges = calloc(n, sizeof(*charges));
	res = calloc(n, sizeof(*res));
	for (i = 0; i < nusers; i++)
	{
		char		email[64],
					name[64];

		snprintf(email, sizeof(email), "bench%d@example.com", i);
		snprintf(name, sizeof(name), "bench%d", i);
		if (pgm_create_user(c, email, name, NULL, NULL, NULL, ids[i]) != PGM_OK ||
			pgm_add_funds(c, ids[i], "1000000", NULL, NULL, &lr) != PGM_OK)
		{
			fprintf(stderr, "setup: %s\n", pgm_errmsg(c));
			return 1;
		}
	}
	for (i = 0; i < n; i++)
		charges[i] = (pgm_charge) {ids[(i * 7919) % nusers], "0.000123", "model-1", 10, NULL};

	for (r = 0; r < repeat; r++)
	{
		double		t;

		t0 = now();
		for (i = 0; i < n; i++)
			failed += pgm_deduct_balance(c, charges[i].user_id, charges[i].amount,
										 charges[i].model_id, 10, NULL, &lr) != PGM_OK;
		t = now() - t0;
		single = r == 0 || t < single ? t : single;

		t0 = now();
		if (pgm_deduct_batch(c, charges, n, res) != PGM_OK)
			failed++;
		for (i = 0; i < n; i++)
			failed += res[i].status != PGM_OK;
		t = now() - t0;
		pipelined = r == 0 || t < pipelined ? t : pipelined;

		t0 = now();
		for (i = 0; i < n; i += 1000)
		{
			int			k = n - i < 1000 ? n - i : 1000;

			if (pgm_deduct_batch_array(c, charges + i, k, res + i) != PGM_OK)
				failed++;
		}
		for (i = 0; i < n; i++)
			failed += res[i].status != PGM_OK;
		t = now() - t0;
		array = r == 0 || t < array ? t : array;
	}

	printf("%-52s %10s %12s %8s\n", "way", "seconds", "charges/s", "ratio");
	printf("%-52s %10.3f %12.0f %7.2fx\n", "pgm_deduct_balance, one call at a time",
		   single, n / single, 1.0);
	printf("%-52s %10.3f %12.0f %7.2fx\n", "pgm_deduct_batch (pipeline, 64 a transaction)",
		   pipelined, n / pipelined, single / pipelined);
	printf("%-52s %10.3f %12.0f %7.2fx\n", "pgm_deduct_batch_array (1,000 per statement)",
		   array, n / array, single / array);
	printf("charges that failed: %d\n", failed);
	printf("target: pgm_deduct_batch >= 5.00x one call at a time: %.2fx, %s\n",
		   single / pipelined, single / pipelined >= 5.0 ? "met" : "MISSED");
	pgm_finish(c);
	return failed != 0 ? 1 : single / pipelined >= 5.0 ? 0 : 3;
}
