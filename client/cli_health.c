/*
 * cli_health.c: the two commands of the pgmarket tool that do without the
 * shared connection: health (its own, so that an unreachable server is
 * told apart from an unhealthy one) and demo (none: it runs
 * scripts/demo.sh).
 */
#include "cli.h"
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/*
 * health: print health() and exit 0 when it says ok, 1 when not, 3 when
 * the server cannot be reached or the call fails.
 */
int
cmd_health(int argc, char **argv)
{
	char	   *j = NULL;
	json	   *doc;
	json	   *ok;
	char		err[256];
	char	   *a[1];
	int			rc,
				npos;

	if (parse_args("health", argc, argv, NULL, a, 0, 0, &npos, "health takes no arguments"))
		return 2;
	if (open_conn() != 0)
		return 3;
	if (pgm_health(conn, &j) != PGM_OK)
	{
		complain("health");
		pgm_finish(conn);
		return 3;
	}
	pgm_finish(conn);
	printf("%s\n", j);
	doc = json_parse(j, strlen(j), err, sizeof(err));
	ok = doc && doc->type == JSON_OBJECT ? json_get(doc, "ok") : NULL;
	rc = ok && ok->type == JSON_TRUE ? 0 : 1;
	json_free(doc);
	pgm_free(j);
	return rc;
}

/*
 * The demo script: scripts/demo.sh of a clone (from here, from .., or next
 * to the executable, client/pgmarket -> scripts/demo.sh), else the one that
 * `make -C client install` put into PREFIX/share/pgmarket (found from the
 * executable's PREFIX/bin, else at PGM_DATADIR, the PREFIX it was built
 * for).  1 with its path in path.
 */
static int
find_demo(char *path, size_t size)
{
	const char *dirs[] = {"scripts", "../scripts", NULL};
	char		self[4096];
	ssize_t		len;
	char	   *slash;
	int			i;

	for (i = 0; dirs[i]; i++)
	{
		snprintf(path, size, "%s/demo.sh", dirs[i]);
		if (access(path, R_OK) == 0)
			return 1;
	}
	len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len > 0)
	{
		self[len] = '\0';
		if ((slash = strrchr(self, '/')) != NULL)
		{
			*slash = '\0';
			snprintf(path, size, "%s/../scripts/demo.sh", self);
			if (access(path, R_OK) == 0)
				return 1;
			/* installed: PREFIX/bin/pgmarket -> PREFIX/share/pgmarket */
			snprintf(path, size, "%s/../share/pgmarket/demo.sh", self);
			if (access(path, R_OK) == 0)
				return 1;
		}
	}
	snprintf(path, size, "%s/demo.sh", PGM_DATADIR);
	return access(path, R_OK) == 0;
}

int
cmd_demo(void)
{
	char		path[4200];

	if (!find_demo(path, sizeof(path)))
	{
		fprintf(stderr, "pgmarket demo: needs the demo script: %s/demo.sh (installed by\n"
				"  make -C client install) or scripts/demo.sh of a clone of pgmarket, run from\n"
				"  the clone (bash scripts/demo.sh: a throwaway cluster, the extension, a tour)\n",
				PGM_DATADIR);
		return 1;
	}
	execlp("bash", "bash", path, (char *) NULL);
	fprintf(stderr, "pgmarket demo: cannot run bash %s: %s\n", path, strerror(errno));
	return 1;
}
