/*
 * cli_common.c: what the commands of the pgmarket tool share: the
 * connection, the reporting of failures, argument parsing and the
 * progress bar.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

pgm_conn   *conn;
int			quiet;

/* ------------------------------------------------------------------------
 * Failures
 * ------------------------------------------------------------------------ */

void
complain(const char *what)
{
	fprintf(stderr, "pgmarket: %s failed: %s", what, pgm_errmsg(conn));
	if (pgm_sqlstate(conn)[0])
		fprintf(stderr, " (%s, %s)", pgm_sqlstate(conn),
				pgm_status_name(pgm_last_status(conn)));
	fputc('\n', stderr);
	if (pgm_errdetail(conn)[0])
		fprintf(stderr, "DETAIL: %s\n", pgm_errdetail(conn));
	if (pgm_errhint(conn)[0])
		fprintf(stderr, "HINT: %s\n", pgm_errhint(conn));
}

int
failed(const char *what)
{
	complain(what);
	return 1;
}

int
usage_error(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "pgmarket: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry \"pgmarket --help\".\n");
	return 2;
}

/* ------------------------------------------------------------------------
 * The connection
 * ------------------------------------------------------------------------ */

int
open_conn(const char *conninfo)
{
	conn = pgm_connect(conninfo);
	if (conn == NULL)
	{
		fprintf(stderr, "pgmarket: out of memory\n");
		return -1;
	}
	if (pgm_conn_status(conn) != PGM_OK)
	{
		fprintf(stderr, "pgmarket: cannot connect: %s\n", pgm_errmsg(conn));
		pgm_finish(conn);
		conn = NULL;
		return -1;
	}
	return 0;
}

int
server_has(const char *signature)
{
	pgm_result *r = NULL;
	const char *p[1] = {signature};
	int			yes = 0;

	if (pgm_exec(conn, "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL AS v", 1, p, &r) == PGM_OK)
		yes = strcmp(pgm_result_value(r, 0, "v"), "t") == 0;
	pgm_result_free(r);
	return yes;
}

/* ------------------------------------------------------------------------
 * Arguments
 * ------------------------------------------------------------------------ */

const char *
opt(int argc, char **argv, const char *name)
{
	int			i;

	for (i = 0; i < argc; i++)
		if (strcmp(argv[i], name) == 0 && i + 1 < argc)
			return argv[i + 1];
	return NULL;
}

int
has_flag(int argc, char **argv, const char *name)
{
	int			i;

	for (i = 0; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

int
int_opt(int argc, char **argv, const char *name, long long min, long long max,
		long long dflt, long long *out)
{
	const char *s = opt(argc, argv, name);
	char	   *end;
	long long	v;

	*out = dflt;
	if (s == NULL)
		return has_flag(argc, argv, name) ? usage_error("%s needs a value", name) : 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != '\0' || errno == ERANGE || v < min || v > max)
		return usage_error("%s must be a whole number from %lld to %lld, not \"%s\"",
						   name, min, max, s);
	*out = v;
	return 0;
}

int
positional(int argc, char **argv, char **out, int max)
{
	int			i,
				n = 0;

	for (i = 0; i < argc; i++)
	{
		if (strncmp(argv[i], "--", 2) == 0)
		{
			/* the options without a value; every other takes one */
			if (strcmp(argv[i], "--with-secrets") != 0 &&
				strcmp(argv[i], "--dry-run") != 0)
				i++;
			continue;
		}
		if (n < max)
			out[n] = argv[i];
		n++;
	}
	return n;
}

int
need_args(int argc, char **argv, char **a, int n, const char *what)
{
	if (positional(argc, argv, a, n) != n)
		return usage_error("%s", what);
	return 0;
}

/* ------------------------------------------------------------------------
 * Progress
 * ------------------------------------------------------------------------ */

void
progress_start(progress *p, const char *label, long total)
{
	p->label = label;
	p->total = total;
	p->done = 0;
	p->tty = isatty(STDERR_FILENO);
	p->last_tenth = -1;
}

void
progress_step(progress *p, long n)
{
	int			width = 30,
				fill;

	p->done += n;
	if (quiet)
		return;
	if (p->total <= 0)
	{
		if (p->tty)
			fprintf(stderr, "\r%s: %ld", p->label, p->done);
		return;
	}
	fill = (int) (p->done * width / p->total);
	if (fill > width)
		fill = width;
	if (p->tty)
		fprintf(stderr, "\r%s [%.*s%*s] %ld/%ld", p->label, fill,
				"##############################", width - fill, "", p->done, p->total);
	else
	{
		int			tenth = (int) (p->done * 10 / p->total);

		if (tenth != p->last_tenth)
		{
			fprintf(stderr, "%s: %ld/%ld\n", p->label, p->done, p->total);
			p->last_tenth = tenth;
		}
	}
}

void
progress_end(progress *p)
{
	if (p->tty && !quiet)
		fputc('\n', stderr);
}
