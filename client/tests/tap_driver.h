/*
 * tap_driver.h: what the drivers of the TAP tests (log_secrets.c,
 * no_vault.c) share: the connection their first argument names, and a
 * line per check.
 */
#ifndef TAP_DRIVER_H
#define TAP_DRIVER_H

#include "pgmarket.h"

#include <stdio.h>
#include <stdlib.h>

static int	failed;				/* a check failed: the exit status */

/* "ok - WHAT", or "not ok - WHAT (STATUS: MESSAGE)" and failed set. */
static void
check(int ok, const char *what, pgm_conn *c)
{
	printf("%s - %s", ok ? "ok" : "not ok", what);
	if (!ok)
	{
		failed = 1;
		printf(" (%s: %s)", pgm_status_name(pgm_last_status(c)), pgm_errmsg(c));
	}
	printf("\n");
	fflush(stdout);
}

/*
 * The connection to argv[1] of a driver called with argc arguments in all
 * (USAGE the words after its name); exits 2 on a wrong count, 3 when the
 * connection fails.
 */
static pgm_conn *
driver_connect(int argc, char **argv, int want_argc, const char *usage)
{
	pgm_conn   *c;

	if (argc != want_argc)
	{
		fprintf(stderr, "usage: %s\n", usage);
		exit(2);
	}
	c = pgm_connect(argv[1]);
	if (c == NULL || pgm_conn_status(c) != PGM_OK)
	{
		fprintf(stderr, "cannot connect: %s\n", pgm_errmsg(c));
		exit(3);
	}
	return c;
}

#endif							/* TAP_DRIVER_H */
