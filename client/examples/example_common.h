/*
 * example_common.h: the set-up every example shares, so that each one
 * shows only the calls of its own use case.  Header only: an example still
 * builds on its own,
 *
 *   cc EXAMPLE.c $(pkg-config --cflags --libs pgmarket libpq libsodium)
 */
#ifndef EXAMPLE_COMMON_H
#define EXAMPLE_COMMON_H

#include <pgmarket.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/*
 * The connection to argv[1] (default: the PG* environment), or NULL after
 * saying why on stderr.
 */
static inline pgm_conn *
example_connect(int argc, char **argv)
{
	pgm_conn   *conn = pgm_connect(argc > 1 ? argv[1] : "");

	if (conn == NULL || pgm_conn_status(conn) != PGM_OK)
	{
		fprintf(stderr, "connection failed: %s\n", pgm_errmsg(conn));
		pgm_finish(conn);
		return NULL;
	}
	return conn;
}

/* A fresh email and username for this run: NAME.TIME.PID@example.com, NAME_TIME_PID. */
static inline void
example_names(const char *name, char *email, size_t email_size,
			  char *username, size_t username_size)
{
	long		now = (long) time(NULL);
	int			pid = (int) getpid();

	snprintf(email, email_size, "%s.%ld.%d@example.com", name, now, pid);
	snprintf(username, username_size, "%s_%ld_%d", name, now, pid);
}

/*
 * The connection of example_connect with a new user (no password) that has
 * FUNDS credits (NULL: none) for the example to work with; user_id receives
 * the user's id.  Without them an example has nothing to show: it exits 1
 * after saying why on stderr.
 */
static inline pgm_conn *
example_start(int argc, char **argv, const char *name, const char *funds,
			  char user_id[PGM_UUID_LEN])
{
	pgm_conn   *conn = example_connect(argc, argv);
	char		email[96],
				username[64];

	if (conn == NULL)
		exit(1);
	example_names(name, email, sizeof(email), username, sizeof(username));
	if (pgm_create_user(conn, email, username, NULL, NULL, NULL, user_id) != PGM_OK ||
		(funds && pgm_add_funds(conn, user_id, funds, NULL, NULL, NULL) != PGM_OK))
	{
		fprintf(stderr, "setup: %s\n", pgm_errmsg(conn));
		pgm_finish(conn);
		exit(1);
	}
	return conn;
}

#endif							/* EXAMPLE_COMMON_H */
