/*
 * check.h: the line per check of the client test programs (test_client.c,
 * test_accounts.c): "ok - WHAT" or "not ok - WHAT (FILE:LINE) last: STATUS
 * MESSAGE", counted in n_pass and n_fail for the closing line.
 */
#ifndef PGM_TESTS_CHECK_H
#define PGM_TESTS_CHECK_H

#include "pgmarket.h"

#include <stdio.h>
#include <stdlib.h>

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

/* The closing line run.sh adds up; the exit status that goes with it. */
static inline int
tally(void)
{
	printf("# tally: %d %d\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}

/* A connection through the PG* environment, checked; NULL (closed) if none. */
static inline pgm_conn *
test_connect(void)
{
	pgm_conn   *c = pgm_connect("");

	CHECK(pgm_conn_status(c) == PGM_OK, c);
	if (pgm_conn_status(c) != PGM_OK)
	{
		pgm_finish(c);
		return NULL;
	}
	return c;
}

/*
 * The text of the server log (PGMARKET_SERVER_LOG, else PGHOST/server.log,
 * as run.sh's cluster writes it), malloc'd, or NULL when it cannot be read;
 * *path (may be NULL) names the file.
 */
static inline char *
server_log(const char **path)
{
	static char buf_path[1024];
	const char *logfile = getenv("PGMARKET_SERVER_LOG");
	FILE	   *f;
	char	   *buf;
	long		size;

	if (logfile == NULL)
	{
		snprintf(buf_path, sizeof(buf_path), "%s/server.log",
				 getenv("PGHOST") ? getenv("PGHOST") : "");
		logfile = buf_path;
	}
	if (path)
		*path = logfile;
	if ((f = fopen(logfile, "r")) == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = size >= 0 ? malloc((size_t) size + 1) : NULL;
	if (buf && fread(buf, 1, (size_t) size, f) == (size_t) size)
		buf[size] = '\0';
	else
	{
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

#endif
