/*
 * cli_user.c: the user command of the pgmarket tool, the account surface:
 *
 *   user show USER_ID | --email EMAIL | --username NAME
 *   user set USER_ID [--email EMAIL] [--username NAME]
 *   user grant USER_ID ROLE          user revoke USER_ID ROLE
 *   user reset-password USER_ID [--ttl INTERVAL]
 *   user link USER_ID PROVIDER SUBJECT
 *   user unlink USER_ID PROVIDER
 *
 * Options are checked before anything is sent: an unknown option, one
 * without its value or a wrong number of arguments exits 2.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#define USER_MAX_ARGS 4

/* cmd_user_check: parse and check only, before any connection is made. */
static int	check_only = 0;

/* A user subcommand's arguments once checked. */
typedef struct
{
	const char *sub;
	char	   *a[USER_MAX_ARGS];	/* the positional ones */
	int			n;
	const char *email;			/* --email */
	const char *username;		/* --username */
	const char *ttl;			/* --ttl */
} user_args;

/*
 * Parse argv (after the subcommand): options among allowed (each takes a
 * value), the rest positional; npos of them (-1: any number, the caller
 * checks).  0, or 2 after a usage error.
 */
static int
parse_user_args(int argc, char **argv, const char *const *allowed, int npos,
				user_args *u)
{
	int			i;

	u->n = 0;
	for (i = 0; i < argc; i++)
	{
		const char *const *o;
		const char **slot = NULL;

		if (argv[i][0] != '-' || argv[i][1] == '\0')
		{
			if (u->n < USER_MAX_ARGS)
				u->a[u->n] = argv[i];
			u->n++;
			continue;
		}
		for (o = allowed; *o; o++)
			if (strcmp(argv[i], *o) == 0)
				break;
		if (*o == NULL)
			return usage_error("user %s: unknown option \"%s\"", u->sub, argv[i]);
		if (i + 1 >= argc)
			return usage_error("user %s: %s needs a value", u->sub, argv[i]);
		if (strcmp(*o, "--email") == 0)
			slot = &u->email;
		else if (strcmp(*o, "--username") == 0)
			slot = &u->username;
		else
			slot = &u->ttl;
		*slot = argv[++i];
	}
	if (npos >= 0 && u->n != npos)
		return usage_error("user %s: %d argument%s expected, %d given (see pgmarket user --help)",
						   u->sub, npos, npos == 1 ? "" : "s", u->n);
	return 0;
}

static int
user_show(int argc, char **argv, user_args *u)
{
	static const char *const allowed[] = {"--email", "--username", NULL};
	pgm_result *r = NULL;
	pgm_user	row;
	pgm_status	st;
	int			rc;

	/* USER_ID, or one of the options instead */
	if ((rc = parse_user_args(argc, argv, allowed, -1, u)) != 0)
		return rc;
	if ((u->n == 1) + (u->email != NULL) + (u->username != NULL) != 1)
		return usage_error("user show needs one of USER_ID, --email EMAIL, --username NAME");
	if (check_only)
		return 0;
	if (u->n == 1)
		st = pgm_get_user(conn, u->a[0], &r);
	else if (u->email)
		st = pgm_get_user_by_email(conn, u->email, &r);
	else
		st = pgm_get_user_by_username(conn, u->username, &r);
	if (st != PGM_OK)
		return failed("user show");
	if (pgm_result_rows(r) == 0 || pgm_result_user(r, 0, &row) != PGM_OK)
	{
		pgm_result_free(r);
		fprintf(stderr, "pgmarket: no such user\n");
		return 1;
	}
	printf("id             %s\n", row.id);
	printf("email          %s\n", row.email ? row.email : "");
	printf("username       %s\n", row.username ? row.username : "");
	printf("roles          %s\n", row.roles ? row.roles : "");
	printf("active         %s\n", row.is_active ? "yes" : "no");
	printf("created_at     %s\n", row.created_at ? row.created_at : "");
	printf("last_login_at  %s\n", row.last_login_at ? row.last_login_at : "never");
	pgm_result_free(r);
	return 0;
}

static int
user_set(int argc, char **argv, user_args *u)
{
	static const char *const allowed[] = {"--email", "--username", NULL};
	int			rc;

	if ((rc = parse_user_args(argc, argv, allowed, 1, u)) != 0)
		return rc;
	if (u->email == NULL && u->username == NULL)
		return usage_error("user set needs --email EMAIL or --username NAME");
	if (check_only)
		return 0;
	if (pgm_update_user(conn, u->a[0], u->email, u->username) != PGM_OK)
		return failed("user set");
	return 0;
}

/* grant and revoke */
static int
user_role(int argc, char **argv, user_args *u)
{
	static const char *const allowed[] = {NULL};
	int			grant = strcmp(u->sub, "grant") == 0;
	int			rc;

	if ((rc = parse_user_args(argc, argv, allowed, 2, u)) != 0)
		return rc;
	if (check_only)
		return 0;
	if ((grant ? pgm_grant_user_role(conn, u->a[0], u->a[1])
		 : pgm_revoke_user_role(conn, u->a[0], u->a[1])) != PGM_OK)
		return failed(grant ? "user grant" : "user revoke");
	return 0;
}

static int
user_reset_password(int argc, char **argv, user_args *u)
{
	static const char *const allowed[] = {"--ttl", NULL};
	char	   *token = NULL;
	int			rc;

	if ((rc = parse_user_args(argc, argv, allowed, 1, u)) != 0)
		return rc;
	if (check_only)
		return 0;
	if (pgm_create_password_reset(conn, u->a[0], u->ttl, &token) != PGM_OK)
		return failed("user reset-password");
	printf("%s\n", token);
	fprintf(stderr, "pgmarket: the reset token is shown once; it is not stored\n");
	pgm_free_secret(token);
	return 0;
}

static int
user_link(int argc, char **argv, user_args *u)
{
	static const char *const allowed[] = {NULL};
	int			rc;

	if ((rc = parse_user_args(argc, argv, allowed, 3, u)) != 0)
		return rc;
	if (check_only)
		return 0;
	if (pgm_link_identity(conn, u->a[0], u->a[1], u->a[2]) != PGM_OK)
		return failed("user link");
	return 0;
}

static int
user_unlink(int argc, char **argv, user_args *u)
{
	static const char *const allowed[] = {NULL};
	int			removed = 0;
	int			rc;

	if ((rc = parse_user_args(argc, argv, allowed, 2, u)) != 0)
		return rc;
	if (check_only)
		return 0;
	if (pgm_unlink_identity(conn, u->a[0], u->a[1], &removed) != PGM_OK)
		return failed("user unlink");
	if (!removed)
	{
		fprintf(stderr, "pgmarket: user %s has no %s identity\n", u->a[0], u->a[1]);
		return 1;
	}
	return 0;
}

/*
 * For main, before it connects: the arguments of a user command checked
 * (0), or 2 after a usage error, so that a bad option never waits for a
 * server.
 */
int
cmd_user_check(int argc, char **argv)
{
	int			rc;

	check_only = 1;
	rc = cmd_user(argc, argv);
	check_only = 0;
	return rc;
}

int
cmd_user(int argc, char **argv)
{
	static const struct
	{
		const char *name;
		int			(*fn) (int argc, char **argv, user_args *u);
	}			subs[] = {
		{"show", user_show},
		{"set", user_set},
		{"grant", user_role},
		{"revoke", user_role},
		{"reset-password", user_reset_password},
		{"link", user_link},
		{"unlink", user_unlink},
	};
	user_args	u = {0};
	size_t		i;

	if (argc < 1)
		return usage_error("user needs a subcommand: show, set, grant, revoke, reset-password, link, unlink");
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (strcmp(argv[0], subs[i].name) == 0)
		{
			u.sub = subs[i].name;
			return subs[i].fn(argc - 1, argv + 1, &u);
		}
	return usage_error("unknown user subcommand \"%s\"", argv[0]);
}
