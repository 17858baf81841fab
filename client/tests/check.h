/*
 * check.h: the line per check of the client test programs (test_client.c,
 * test_accounts.c): "ok - WHAT" or "not ok - WHAT (FILE:LINE) last: STATUS
 * MESSAGE", counted in n_pass and n_fail for the closing line.
 */
#ifndef PGM_TESTS_CHECK_H
#define PGM_TESTS_CHECK_H

#include "pgmarket.h"

#include <stdio.h>

static int	n_pass,
			n_fail;

static void
check(int ok, const char *what, const char *file, int line, pgm_conn *c)
{
	if (ok)
	{
		n_pass++;
		printf("ok - %s\n", what);
	}
	else
	{
		n_fail++;
		printf("not ok - %s (%s:%d)%s%s%s%s\n", what, file, line,
			   c ? " last: " : "", c ? pgm_status_name(pgm_last_status(c)) : "",
			   c ? " " : "", c ? pgm_errmsg(c) : "");
	}
	fflush(stdout);
}

#define CHECK(cond, c) check((cond), #cond, __FILE__, __LINE__, (c))
/* a call and the status it must return */
#define EXPECT(call, want, c) \
	check((call) == (want), #call " == " #want, __FILE__, __LINE__, (c))

#endif
