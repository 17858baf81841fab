/*
 * cli_common.c: what the commands of the pgmarket tool share: the
 * connection, the reporting of failures, argument parsing and the
 * progress bar.
 */
#include "cli.h"
#include "importdoc.h"

#include <errno.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <getopt.h>
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
	return 3;
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

/*
 * psql's connection options, in the order libpq applies them: a keyword
 * that comes after "dbname" overrides what an expanded dbname says.
 */
static const char *conn_keywords[] = {"dbname", "host", "port", "user",
"fallback_application_name", NULL};
static const char *conn_values[] = {NULL, NULL, NULL, NULL, "pgmarket", NULL};

/* --actor: the user every call of the command acts for (NULL: none) */
static const char *conn_actor;

void
set_actor(const char *actor)
{
	conn_actor = actor;
}

void
set_conn_option(const char *keyword, const char *value)
{
	int			i;

	for (i = 0; conn_keywords[i] != NULL; i++)
		if (strcmp(conn_keywords[i], keyword) == 0)
			conn_values[i] = value;
}

int
open_conn(void)
{
	if (conn != NULL)
		return 0;
	conn = pgm_connect_params(conn_keywords, conn_values);
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
	if (conn_actor)
		pgm_set_actor(conn, conn_actor);
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

int
parse_args(const char *cmd, int argc, char **argv, const cli_opt *opts,
		   char **pos, int min_pos, int max_pos, int *npos, const char *what)
{
	struct option *lo;
	char	  **v;
	char	   *seen;
	int			nopts = 0,
				rc = 0,
				c,
				i;

	*npos = 0;
	while (opts && opts[nopts].name)
		nopts++;
	/* getopt_long permutes its argv: a copy, with the command as argv[0] */
	v = calloc(argc + 2, sizeof(char *));
	lo = calloc(nopts + 1, sizeof(struct option));
	seen = calloc(nopts + 1, 1);
	if (v == NULL || lo == NULL || seen == NULL)
	{
		fprintf(stderr, "pgmarket: out of memory\n");
		rc = 2;
		goto done;
	}
	v[0] = (char *) cmd;
	memcpy(v + 1, argv, argc * sizeof(char *));
	for (i = 0; i < nopts; i++)
	{
		lo[i].name = opts[i].name;
		lo[i].has_arg = opts[i].value ? required_argument : no_argument;
		lo[i].val = 256 + i;
	}
	/*
	 * Only an option's whole name: getopt_long would take any unique prefix
	 * ("--y" for "--yes"), and a confirmation must be spelled out.  The
	 * value of an option that takes one is skipped; "--" ends the options.
	 */
	for (i = 1; i < argc + 1; i++)
	{
		const char *arg = v[i];
		size_t		n;
		int			o;

		if (strcmp(arg, "--") == 0)
			break;
		if (strncmp(arg, "--", 2) != 0)
			continue;
		n = strcspn(arg + 2, "=");
		for (o = 0; o < nopts; o++)
			if (strlen(opts[o].name) == n && strncmp(opts[o].name, arg + 2, n) == 0)
				break;
		if (o == nopts)
		{
			rc = usage_error("%s: unknown option \"%.*s\"", cmd, (int) n + 2, arg);
			goto done;
		}
		if (opts[o].value && arg[n + 2] == '\0')
			i++;				/* its value */
	}
	opterr = 0;
	optind = 0;					/* glibc: start afresh */
	while ((c = getopt_long(argc + 1, v, ":", lo, NULL)) != -1)
	{
		if (c == ':')
		{
			rc = usage_error("%s: option \"%s\" needs a value", cmd, v[optind - 1]);
			goto done;
		}
		if (c < 256 || c - 256 >= nopts)
		{
			rc = usage_error("%s: unknown option \"%s\"", cmd, v[optind - 1]);
			goto done;
		}
		i = c - 256;
		if (seen[i]++)
		{
			rc = usage_error("%s: option \"--%s\" given twice", cmd, opts[i].name);
			goto done;
		}
		if (opts[i].value)
			*opts[i].value = optarg;
		else
			*opts[i].flag = 1;
	}
	for (i = optind; i < argc + 1; i++)
	{
		if (*npos < max_pos)
			pos[*npos] = v[i];
		(*npos)++;
	}
	if (*npos < min_pos || *npos > max_pos)
		rc = usage_error("%s", what);
done:
	free(v);
	free(lo);
	free(seen);
	return rc;
}

const char *
printable(const char *s)
{
	/* four in turn: one message may show a few */
	static char buf[4][1024];
	static int	next;
	char	   *out = buf[next++ % 4];
	size_t		o = 0;

	if (s == NULL)
		return "(null)";
	for (; *s && o + 8 < sizeof(buf[0]); s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c < 0x20 || c == 0x7f)
			o += snprintf(out + o, sizeof(buf[0]) - o, "\\u%04x", c);
		else if (c == 0xc2 && (unsigned char) s[1] >= 0x80 && (unsigned char) s[1] <= 0x9f)
			o += snprintf(out + o, sizeof(buf[0]) - o, "\\u%04x", (unsigned char) *++s);	/* C1 */
		else
			out[o++] = (char) c;
	}
	if (*s)
	{
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

int
uuid_arg(const char *name, const char *s)
{
	if (is_uuid(s))
		return 0;
	return usage_error("%s must be a uuid (8-4-4-4-12 hex digits), not \"%s\"", name,
					   printable(s));
}

int
int_value(const char *name, const char *s, long long min, long long max,
		  long long dflt, long long *out)
{
	char	   *end;
	long long	v;

	*out = dflt;
	if (s == NULL)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != '\0' || errno == ERANGE || v < min || v > max)
		return usage_error("%s must be a whole number from %lld to %lld, not \"%s\"",
						   name, min, max, s);
	*out = v;
	return 0;
}

/* ------------------------------------------------------------------------
 * Output files
 * ------------------------------------------------------------------------ */

FILE *
open_output(const char *what, const char *path, mode_t mode)
{
	struct stat st;
	const char *why = NULL;
	int			fd;
	FILE	   *f;

	if (path == NULL || strcmp(path, "-") == 0)
		return stdout;
	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
	{
		fprintf(stderr, "pgmarket %s: cannot write %s: %s\n", what, path,
				errno == ELOOP ? "it is a symbolic link" : strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0)
		why = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	else if (st.st_uid != geteuid())
		why = "the file belongs to another user";
	else if (fchmod(fd, mode) != 0 || ftruncate(fd, 0) != 0)
		why = strerror(errno);
	if (why != NULL || (f = fdopen(fd, "w")) == NULL)
	{
		fprintf(stderr, "pgmarket %s: cannot write %s: %s\n", what, path,
				why != NULL ? why : strerror(errno));
		close(fd);
		return NULL;
	}
	return f;
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
