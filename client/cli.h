/*
 * cli.h: what the commands of the pgmarket tool share (cli_common.c): the
 * connection, the reporting of failures, the parsing of a command's
 * arguments and the progress bar; and each command's entry point.
 */
#ifndef PGM_CLI_H
#define PGM_CLI_H

#include "pgmarket.h"

#include <stdio.h>
#include <sys/types.h>

/* The connection of the command being run (main opens it, health its own). */
extern pgm_conn *conn;
/* -q/--quiet: no progress bar. */
extern int	quiet;

/* "pgmarket: WHAT failed: message (sqlstate, status)", DETAIL, HINT. */
void		complain(const char *what);
/* complain(what), then 3: the exit status when the server refused a call. */
int			failed(const char *what);
/* "pgmarket: MESSAGE\nTry ..." on stderr; returns 2. */
int			usage_error(const char *fmt,...) __attribute__((format(printf, 1, 2)));

/*
 * Opens conn, once, as psql would: with the dbname (a database name, or a
 * conninfo string or URI expanded by libpq), host, port and user that
 * set_conn_option gave (psql's -d, -h, -p, -U) over the PG* environment.
 * 0 (also when conn is open already), or -1 with "out of memory" or
 * "cannot connect: ..." said on stderr (conn then NULL).
 */
int			open_conn(void);
/* keyword "dbname", "host", "port" or "user"; value is kept, not copied. */
void		set_conn_option(const char *keyword, const char *value);
/* The user the connection acts for (pgmarket.actor), set when it opens. */
void		set_actor(const char *actor);
/* Does the server have the function of this signature ("schema.f(types)")? */
int			server_has(const char *signature);

/*
 * One option of a command, --NAME (a NULL name ends a list): one that
 * takes a value when value is set (*value stays NULL when it is absent), a
 * flag when flag is set (*flag becomes 1).
 */
typedef struct
{
	const char *name;
	const char **value;
	int		   *flag;
} cli_opt;

/*
 * A command's arguments (argv: those after the command's name, which is
 * cmd) through getopt_long: the options of opts anywhere among the
 * positional arguments, as --NAME VALUE or --NAME=VALUE, "--" ending them;
 * the positional arguments into pos[0..max_pos), their number in *npos.
 * 0 when there are min_pos to max_pos of them; otherwise, and for an
 * unknown option, a missing value or an option given twice, 2 after a
 * usage error (what: "charge needs USER_ID AMOUNT MODEL", say).
 */
int			parse_args(const char *cmd, int argc, char **argv, const cli_opt *opts,
					   char **pos, int min_pos, int max_pos, int *npos, const char *what);
/*
 * The whole number s (dflt when s is NULL) from min to max into *out: 0,
 * or 2 after a usage error naming option name for a malformed number or
 * one out of range (strtoll's overflow included, never clamped).
 */
/* 0 when s is a uuid, else a usage error naming it: 2. */
int			uuid_arg(const char *name, const char *s);
/*
 * s with its control characters (and DEL) written \u00XX, into a buffer
 * that the next call reuses: for text from outside shown on stderr.
 */
const char *printable(const char *s);
int			int_value(const char *name, const char *s, long long min, long long max,
					  long long dflt, long long *out);

/*
 * path for writing, with mode whether it is created or was there: a
 * symbolic link is refused (O_NOFOLLOW), and so is a file of another owner
 * or one that is not a regular file; it is truncated only after those
 * checks.  "-" or NULL: stdout.  NULL, said on stderr as "pgmarket WHAT:
 * cannot write ...", when it cannot be.
 */
FILE	   *open_output(const char *what, const char *path, mode_t mode);

/* A progress bar on a terminal, a line per tenth elsewhere. */
typedef struct
{
	const char *label;
	long		total;
	long		done;
	int			tty;
	int			last_tenth;
} progress;

void		progress_start(progress *p, const char *label, long total);
void		progress_step(progress *p, long n);
void		progress_end(progress *p);

/* The commands: each returns the tool's exit status. */
int			cmd_balance(int argc, char **argv);
int			cmd_add_funds(int argc, char **argv);
int			cmd_charge(int argc, char **argv);
int			cmd_keys(int argc, char **argv);
int			cmd_user(int argc, char **argv);
int			cmd_tiers(int argc, char **argv);
int			cmd_rotate(int argc, char **argv);
int			cmd_verify(int argc, char **argv);
int			cmd_import(int argc, char **argv);
int			cmd_export(int argc, char **argv);
/* These two open no connection before they have read their arguments. */
int			cmd_health(int argc, char **argv);
int			cmd_demo(void);

#endif
