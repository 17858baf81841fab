/*
 * cli.c: the pgmarket command-line tool, on libpgmarket: its options, its
 * usage and the dispatch to the commands (cli_*.c).
 *
 *   pgmarket [-d CONNINFO] [--actor UUID] COMMAND [ARGS]
 *
 * The connection comes from -d/--dbname (a libpq conninfo string or URI)
 * or the PG* environment.  Every failure prints what failed and the
 * server's message on stderr and exits non-zero.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *usage_text =
"pgmarket: the command-line tool of pgmarket " PGM_VERSION_STRING "\n"
"\n"
"usage: pgmarket [-d CONNINFO] [--actor UUID] COMMAND [ARGS]\n"
"\n"
"  balance USER_ID                      the user's balance\n"
"  add-funds USER_ID AMOUNT [--key IDEMPOTENCY_KEY] [--note TEXT]\n"
"  charge USER_ID AMOUNT MODEL [--tokens N] [--key IDEMPOTENCY_KEY]\n"
"  keys list USER_ID                    platform API keys\n"
"  keys create USER_ID NAME [--scopes read,write] [--tier T] [--env live|test]\n"
"              [--limit AMOUNT --period day|month] [--expires TIMESTAMP]\n"
"  keys revoke USER_ID KEY_ID\n"
"  keys put USER_ID PROVIDER [--label L]   provider key, read from stdin, sealed\n"
"  keys providers USER_ID               provider keys (never the secret)\n"
"  keys revoke-provider USER_ID KEY_ID\n"
"  rotate-keys [--batch N]              re-encrypt under the newest master key\n"
"  verify [--anchor FILE]               verify_ledger and verify_audit; with FILE,\n"
"                                       check the chain against the anchor it\n"
"                                       holds, then advance it to the head\n"
"  health                               health() as JSON; exit 1 when not ok\n"
"  import FILE [--dry-run] [--report REPORT]\n"
"                                       load a JSON document (see README);\n"
"                                       --dry-run checks it all and writes\n"
"                                       nothing, --report writes the counts and\n"
"                                       every rejected record as JSON\n"
"  export [FILE] [--with-secrets]       write one\n"
"  demo                                 a throwaway cluster and a tour\n"
"\n"
"The connection: -d/--dbname CONNINFO, else PGHOST, PGPORT, PGDATABASE, ...\n";

/* The commands that run on the shared connection, which main opens. */
static const struct
{
	const char *name;
	int			(*fn) (int argc, char **argv);
}			commands[] = {
	{"balance", cmd_balance},
	{"add-funds", cmd_add_funds},
	{"charge", cmd_charge},
	{"keys", cmd_keys},
	{"rotate-keys", cmd_rotate},
	{"verify", cmd_verify},
	{"import", cmd_import},
	{"export", cmd_export},
};

/*
 * The usage of one command, from usage_text: its lines (a line that starts
 * with "  NAME " and the lines indented further under it).  0, or 2 when
 * the command is unknown.
 */
static int
command_usage(const char *name)
{
	/* the list of commands: after the title's and the synopsis's blank lines */
	const char *line = strstr(strstr(usage_text, "\n\n") + 2, "\n\n") + 2;
	size_t		len = strlen(name);
	int			in = 0,
				found = 0;

	while (*line && *line != '\n')	/* up to the blank line after the list */
	{
		const char *end = strchr(line, '\n');
		int			n = end ? (int) (end - line) : (int) strlen(line);

		if (strncmp(line, "  ", 2) == 0 && line[2] != ' ')
			in = strncmp(line + 2, name, len) == 0 &&
				(line[2 + len] == ' ' || line[2 + len] == '\n');
		if (in)
		{
			if (!found)
				printf("usage: pgmarket [-d CONNINFO] [--actor UUID] %s ...\n\n", name);
			printf("%.*s\n", n, line);
			found = 1;
		}
		if (!end)
			break;
		line = end + 1;
	}
	return found ? 0 : usage_error("unknown command \"%s\"", name);
}

/* Does the command's part of argv ask for its usage (-h, --help)? */
static int
asks_help(int argc, char **argv)
{
	int			i;

	for (i = 0; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
}

/*
 * The options before the command: the index of the command in argv, or -1
 * with *rc the exit status (after --help, --version or a usage error).
 */
static int
parse_options(int argc, char **argv, const char **conninfo, const char **actor, int *rc)
{
	int			i = 1;

	*rc = 0;
	while (i < argc && argv[i][0] == '-')
	{
		if ((strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--dbname") == 0) && i + 1 < argc)
		{
			*conninfo = argv[i + 1];
			i += 2;
		}
		else if (strncmp(argv[i], "--dbname=", 9) == 0)
			*conninfo = argv[i++] + 9;
		else if (strcmp(argv[i], "--actor") == 0 && i + 1 < argc)
		{
			*actor = argv[i + 1];
			i += 2;
		}
		else if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0)
		{
			quiet = 1;
			i++;
		}
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
		{
			fputs(usage_text, stdout);
			return -1;
		}
		else if (strcmp(argv[i], "--version") == 0)
		{
			printf("pgmarket %s\n", PGM_VERSION_STRING);
			return -1;
		}
		else
		{
			*rc = usage_error("unknown option \"%s\"", argv[i]);
			return -1;
		}
	}
	if (i >= argc)
	{
		fputs(usage_text, stderr);
		*rc = 2;
		return -1;
	}
	return i;
}

int
main(int argc, char **argv)
{
	const char *conninfo = "";
	const char *actor = NULL;
	const char *cmd;
	size_t		c;
	int			i,
				rc;

	if ((i = parse_options(argc, argv, &conninfo, &actor, &rc)) < 0)
		return rc;
	cmd = argv[i++];
	/* COMMAND --help: its usage, without connecting or doing anything */
	if (asks_help(argc - i, argv + i))
		return command_usage(cmd);
	if (strcmp(cmd, "demo") == 0)
		return cmd_demo();
	if (strcmp(cmd, "health") == 0)
		return cmd_health(conninfo, argc - i, argv + i);
	if (strcmp(cmd, "help") == 0)
	{
		fputs(usage_text, stdout);
		return 0;
	}
	for (c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
		if (strcmp(cmd, commands[c].name) == 0)
			break;
	if (c == sizeof(commands) / sizeof(commands[0]))
		return usage_error("unknown command \"%s\"", cmd);
	if (open_conn(conninfo) != 0)
		return 1;
	if (actor)
		pgm_set_actor(conn, actor);
	rc = commands[c].fn(argc - i, argv + i);
	pgm_finish(conn);
	return rc;
}
