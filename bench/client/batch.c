/*
 * bench/client/batch.c: charges through libpgmarket, three ways, on one
 * connection: one call at a time (a round trip and a commit each);
 * pgm_deduct_batch (libpq pipeline mode: transactions of 64 charges, one
 * statement each, a round trip and a commit a transaction);
 * pgm_deduct_batch_array (the server's deduct_batch, 1,000 charges a
 * statement).  Each way runs REPEAT times, interleaved, the best kept.
 * Prints charges per second, the ratios to one call at a time, the
 * server's CPU time per charge (its backend's, from /proc: what the
 * charges cost the server whatever else loads the machine, and what the
 * wall clock of one call at a time does not show: a wait for the WAL
 * flush) and the target line (the pipelined batch at 5x or more); exit 3
 * when it is missed, 1 when a charge failed.
 *
 *   batch CONNINFO NUSERS NCHARGES [REPEAT]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pgmarket.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The CPU seconds process pid has used (user and system), or -1. */
static double
cpu_of(int pid)
{
	char		path[64],
				buf[1024];
	unsigned long utime,
				stime;
	FILE	   *f;
	size_t		len;
	char	   *p;
	int			i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	/* utime and stime: the 14th and 15th fields, the 12th and 13th after "(comm)" */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	for (p++, i = 0; i < 11 && p; i++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p, "%lu %lu", &utime, &stime) != 2)
		return -1;
	return (double) (utime + stime) / (double) sysconf(_SC_CLK_TCK);
}

/* The server's CPU microseconds per charge, as text ("-" without /proc). */
static const char *
per_charge(double secs, int charges, char *buf, size_t size)
{
	if (secs < 0)
		return "-";
	snprintf(buf, size, "%.1f", secs * 1e6 / charges);
	return buf;
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
				array = 0,
				cpu[3] = {0, 0, 0},
				c0;
	int			backend;
	char		cbuf[3][32];

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
	backend = PQbackendPID(pgm_pgconn(c));
	if (cpu_of(backend) < 0)
		cpu[0] = cpu[1] = cpu[2] = -1;

	for (r = 0; r < repeat; r++)
	{
		double		t;

		c0 = cpu_of(backend);
		t0 = now();
		for (i = 0; i < n; i++)
			failed += pgm_deduct_balance(c, charges[i].user_id, charges[i].amount,
										 charges[i].model_id, 10, NULL, &lr) != PGM_OK;
		t = now() - t0;
		single = r == 0 || t < single ? t : single;
		if (cpu[0] >= 0)
			cpu[0] += (cpu_of(backend) - c0) / repeat;

		c0 = cpu_of(backend);
		t0 = now();
		if (pgm_deduct_batch(c, charges, n, res) != PGM_OK)
			failed++;
		for (i = 0; i < n; i++)
			failed += res[i].status != PGM_OK;
		t = now() - t0;
		pipelined = r == 0 || t < pipelined ? t : pipelined;
		if (cpu[1] >= 0)
			cpu[1] += (cpu_of(backend) - c0) / repeat;

		c0 = cpu_of(backend);
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
		if (cpu[2] >= 0)
			cpu[2] += (cpu_of(backend) - c0) / repeat;
	}

	printf("%-52s %10s %12s %8s %14s\n", "way", "seconds", "charges/s", "ratio",
		   "server us/ch");
	printf("%-52s %10.3f %12.0f %7.2fx %14s\n", "pgm_deduct_balance, one call at a time",
		   single, n / single, 1.0, per_charge(cpu[0], n, cbuf[0], sizeof(cbuf[0])));
	printf("%-52s %10.3f %12.0f %7.2fx %14s\n", "pgm_deduct_batch (pipeline, 64 a transaction)",
		   pipelined, n / pipelined, single / pipelined,
		   per_charge(cpu[1], n, cbuf[1], sizeof(cbuf[1])));
	printf("%-52s %10.3f %12.0f %7.2fx %14s\n", "pgm_deduct_batch_array (1,000 per statement)",
		   array, n / array, single / array, per_charge(cpu[2], n, cbuf[2], sizeof(cbuf[2])));
	printf("charges that failed: %d\n", failed);
	printf("target: pgm_deduct_batch >= 5.00x one call at a time: %.2fx, %s\n",
		   single / pipelined, single / pipelined >= 5.0 ? "met" : "MISSED");
	pgm_finish(c);
	return failed != 0 ? 1 : single / pipelined >= 5.0 ? 0 : 3;
}
