/*
 * cli.c: the pgmarket command-line tool, on libpgmarket: its options, its
 * usage and the dispatch to the commands (cli_*.c).
 *
 *   pgmarket [CONNECTION OPTIONS] [--actor UUID] COMMAND [ARGS]
 *
 * The connection options are psql's: -d/--dbname (a database name, or a
 * libpq conninfo string or URI), -h/--host, -p/--port, -U/--username, -w;
 * what they leave out comes from the PG* environment.  Every failure prints what failed and the
 * server's message on stderr and exits non-zero.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *usage_text =
"pgmarket: the command-line tool of pgmarket " PGM_VERSION_STRING "\n"
"\n"
"usage: pgmarket [-d DBNAME] [-h HOST] [-p PORT] [-U USER] [--actor UUID] [-q]\n"
"                COMMAND [ARGS]\n"
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
"  user show USER_ID | --email EMAIL | --username NAME\n"
"  user set USER_ID [--email EMAIL] [--username NAME]\n"
"  user grant USER_ID ROLE              an account role (user revoke: take it)\n"
"  user revoke USER_ID ROLE\n"
"  user reset-password USER_ID [--ttl INTERVAL]\n"
"                                       a single-use reset token, shown once\n"
"  user link USER_ID PROVIDER SUBJECT   an external identity (single sign-on)\n"
"  user unlink USER_ID PROVIDER\n"
"  user erase USER_ID --yes             erase_user: the right to be forgotten\n"
"  tiers [list]                         rate limit tiers of platform keys\n"
"  tiers set NAME [--rpm N] [--tpm N] [--burst N]\n"
"                                       create or change one; no --rpm or\n"
"                                       --tpm: no such limit\n"
"  tiers check                          the key on stdin: may it call now?\n"
"                                       exit 1 when it must wait\n"
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
"The connection, as psql's: -d/--dbname DBNAME (a database name, or a\n"
"conninfo string or URI), -h/--host, -p/--port, -U/--username, -w/--no-password\n"
"(the tool never prompts); what they leave out comes from PGHOST, PGPORT,\n"
"PGUSER, PGDATABASE, ...  -q/--quiet: no progress.  -?/--help, -V/--version.\n";

/*
 * The commands that run on the shared connection, conn: each reads its
 * arguments with parse_args and opens conn once they are good, so that a
 * usage error exits 2 without connecting.
 */
static const struct
{
	const char *name;
	int			(*fn) (int argc, char **argv);
}			commands[] = {
	{"balance", cmd_balance},
	{"add-funds", cmd_add_funds},
	{"charge", cmd_charge},
	{"keys", cmd_keys},
	{"user", cmd_user},
	{"tiers", cmd_tiers},
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
				printf("usage: pgmarket [CONNECTION OPTIONS] [--actor UUID] %s ...\n\n", name);
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
 * The options before the command that take a value, psql's connection
 * options among them: "-x VALUE", "--long VALUE" or "--long=VALUE".
 */
static const struct
{
	const char *short_name;
	const char *long_name;
	const char *keyword;		/* for set_conn_option; NULL: not one */
}			value_options[] = {
	{"-d", "--dbname", "dbname"},
	{"-h", "--host", "host"},
	{"-p", "--port", "port"},
	{"-U", "--username", "user"},
	{NULL, "--actor", NULL},
};

/*
 * The value of option o at argv[*i] (advancing *i past it), or NULL when
 * argv[*i] is not that option.  *missing is set when it is, without a value.
 */
static const char *
option_value(int argc, char **argv, int *i, int o, int *missing)
{
	const char *arg = argv[*i];
	const char *l = value_options[o].long_name;
	size_t		n = strlen(l);

	if ((value_options[o].short_name && strcmp(arg, value_options[o].short_name) == 0) ||
		strcmp(arg, l) == 0)
	{
		if (*i + 1 >= argc)
		{
			*missing = 1;
			return NULL;
		}
		*i += 2;
		return argv[*i - 1];
	}
	if (strncmp(arg, l, n) == 0 && arg[n] == '=')
	{
		*i += 1;
		return arg + n + 1;
	}
	return NULL;
}

/*
 * The options before the command: the index of the command in argv, or -1
 * with *rc the exit status (after --help, --version or a usage error).
 */
static int
parse_options(int argc, char **argv, const char **actor, int *rc)
{
	int			i = 1;

	*rc = 0;
	while (i < argc && argv[i][0] == '-')
	{
		const char *v = NULL;
		int			missing = 0;
		size_t		o;

		for (o = 0; o < sizeof(value_options) / sizeof(value_options[0]); o++)
			if ((v = option_value(argc, argv, &i, (int) o, &missing)) != NULL || missing)
				break;
		if (missing)
		{
			*rc = usage_error("option \"%s\" needs a value", argv[i]);
			return -1;
		}
		if (v != NULL)
		{
			if (value_options[o].keyword)
				set_conn_option(value_options[o].keyword, v);
			else
				*actor = v;
		}
		else if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0)
		{
			quiet = 1;
			i++;
		}
		else if (strcmp(argv[i], "-w") == 0 || strcmp(argv[i], "--no-password") == 0)
			i++;				/* the tool never prompts for a password */
		else if (strcmp(argv[i], "-?") == 0 || strcmp(argv[i], "--help") == 0)
		{
			fputs(usage_text, stdout);
			return -1;
		}
		else if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0)
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
	const char *actor = NULL;
	const char *cmd;
	size_t		c;
	int			i,
				rc;

	if ((i = parse_options(argc, argv, &actor, &rc)) < 0)
		return rc;
	cmd = argv[i++];
	/* COMMAND --help: its usage, without connecting or doing anything */
	if (asks_help(argc - i, argv + i))
		return command_usage(cmd);
	if (strcmp(cmd, "demo") == 0)
		return cmd_demo();
	if (strcmp(cmd, "health") == 0)
		return cmd_health(argc - i, argv + i);
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
	if (actor != NULL && uuid_arg("--actor", actor) != 0)
		return 2;
	set_actor(actor);
	rc = commands[c].fn(argc - i, argv + i);
	pgm_finish(conn);
	return rc;
}
