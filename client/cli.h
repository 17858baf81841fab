/*
 * cli.h: what the commands of the pgmarket tool share (cli_common.c): the
 * connection, the reporting of failures, the parsing of a command's
 * arguments and the progress bar; and each command's entry point.
 */
#ifndef PGM_CLI_H
#define PGM_CLI_H

#include "pgmarket.h"

/* The connection of the command being run (main opens it, health its own). */
extern pgm_conn *conn;
/* -q/--quiet: no progress bar. */
extern int	quiet;

/* "pgmarket: WHAT failed: message (sqlstate, status)", DETAIL, HINT. */
void		complain(const char *what);
/* complain(what), then 1: a command's exit status for a failed call. */
int			failed(const char *what);
/* "pgmarket: MESSAGE\nTry ..." on stderr; returns 2. */
int			usage_error(const char *fmt,...) __attribute__((format(printf, 1, 2)));

/*
 * Opens conn from conninfo; 0, or -1 with "out of memory" or "cannot
 * connect: ..." said on stderr (conn then NULL).
 */
int			open_conn(const char *conninfo);
/* Does the server have the function of this signature ("schema.f(types)")? */
int			server_has(const char *signature);

/* --name value options after the positional arguments. */
const char *opt(int argc, char **argv, const char *name);
int			has_flag(int argc, char **argv, const char *name);
/*
 * A whole-number option from min to max (dflt when absent) into *out;
 * 0, or 2 after a usage error for a missing value, a malformed number or
 * one out of range (strtoll's overflow included, never clamped).
 */
int			int_opt(int argc, char **argv, const char *name, long long min,
					long long max, long long dflt, long long *out);
/* Positional arguments (not an option or an option's value): how many; the first max in out. */
int			positional(int argc, char **argv, char **out, int max);
/* positional() into a[n], which must find exactly n; else usage_error(what). */
int			need_args(int argc, char **argv, char **a, int n, const char *what);

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
int			cmd_tiers(int argc, char **argv);
int			cmd_rotate(int argc, char **argv);
int			cmd_verify(int argc, char **argv);
int			cmd_import(int argc, char **argv);
int			cmd_export(int argc, char **argv);
/* These two open no shared connection. */
int			cmd_health(const char *conninfo, int argc, char **argv);
int			cmd_demo(void);

#endif
