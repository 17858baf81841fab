/*
 * cli_user.c: the user command of the pgmarket tool, the account surface:
 *
 *   user show USER_ID | --email EMAIL | --username NAME
 *   user set USER_ID [--email EMAIL] [--username NAME]
 *   user grant USER_ID ROLE          user revoke USER_ID ROLE
 *   user reset-password USER_ID [--ttl INTERVAL]
 *   user link USER_ID PROVIDER SUBJECT
 *   user unlink USER_ID PROVIDER
 *   user erase USER_ID --yes
 *
 * Arguments are read with parse_args before the connection opens: an
 * unknown option, one without its value or a wrong number of arguments
 * exits 2 without connecting.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#define USER_MAX_ARGS 4

/* A user subcommand's arguments once checked. */
typedef struct
{
	const char *sub;
	int			argc;			/* those after the subcommand */
	char	  **argv;
	char	   *a[USER_MAX_ARGS];	/* the positional ones */
	int			n;
	const char *email;			/* --email */
	const char *username;		/* --username */
	const char *ttl;			/* --ttl */
} user_args;

/*
 * The subcommand's arguments through parse_args: the options it takes
 * (names among email, username, ttl), from min to max positional ones.
 * 0, or 2 after a usage error; nothing has connected yet.
 */
static int
user_parse(user_args *u, const char *const *names, int min, int max)
{
	cli_opt		opts[4];
	char		cmd[64],
				what[160];
	int			k = 0;

	for (; names && *names; names++)
	{
		opts[k].name = *names;
		opts[k].value = strcmp(*names, "email") == 0 ? &u->email :
			strcmp(*names, "username") == 0 ? &u->username : &u->ttl;
		opts[k].flag = NULL;
		k++;
	}
	opts[k].name = NULL;
	snprintf(cmd, sizeof(cmd), "user %s", u->sub);
	if (min == max)
		snprintf(what, sizeof(what), "user %s: %d argument%s expected (see pgmarket user --help)",
				 u->sub, min, min == 1 ? "" : "s");
	else
		snprintf(what, sizeof(what), "user %s: %d to %d arguments expected (see pgmarket user --help)",
				 u->sub, min, max);
	if (parse_args(cmd, u->argc, u->argv, opts, u->a, min, max, &u->n, what))
		return 2;
	return u->n >= 1 ? uuid_arg("USER_ID", u->a[0]) : 0;
}

/* The connection, once the arguments are good: 0, or 3. */
static int
user_connect(void)
{
	return open_conn() != 0 ? 3 : 0;
}

static int
user_show(user_args *u)
{
	static const char *const names[] = {"email", "username", NULL};
	pgm_result *r = NULL;
	pgm_user	row;
	pgm_status	st;
	int			rc;

	/* USER_ID, or one of the options instead */
	if ((rc = user_parse(u, names, 0, 1)) != 0)
		return rc;
	if ((u->n == 1) + (u->email != NULL) + (u->username != NULL) != 1)
		return usage_error("user show needs one of USER_ID, --email EMAIL, --username NAME");
	if ((rc = user_connect()) != 0)
		return rc;
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
user_set(user_args *u)
{
	static const char *const names[] = {"email", "username", NULL};
	int			rc;

	if ((rc = user_parse(u, names, 1, 1)) != 0)
		return rc;
	if (u->email == NULL && u->username == NULL)
		return usage_error("user set needs --email EMAIL or --username NAME");
	if ((rc = user_connect()) != 0)
		return rc;
	if (pgm_update_user(conn, u->a[0], u->email, u->username) != PGM_OK)
		return failed("user set");
	return 0;
}

/* grant and revoke */
static int
user_role(user_args *u)
{
	int			grant = strcmp(u->sub, "grant") == 0;
	int			rc;

	if ((rc = user_parse(u, NULL, 2, 2)) != 0 || (rc = user_connect()) != 0)
		return rc;
	if ((grant ? pgm_grant_user_role(conn, u->a[0], u->a[1])
		 : pgm_revoke_user_role(conn, u->a[0], u->a[1])) != PGM_OK)
		return failed(grant ? "user grant" : "user revoke");
	return 0;
}

static int
user_reset_password(user_args *u)
{
	static const char *const names[] = {"ttl", NULL};
	char	   *token = NULL;
	int			rc;

	if ((rc = user_parse(u, names, 1, 1)) != 0 || (rc = user_connect()) != 0)
		return rc;
	if (pgm_create_password_reset(conn, u->a[0], u->ttl, &token) != PGM_OK)
		return failed("user reset-password");
	printf("%s\n", token);
	fprintf(stderr, "pgmarket: the reset token is shown once; it is not stored\n");
	pgm_free_secret(token);
	return 0;
}

static int
user_link(user_args *u)
{
	int			rc;

	if ((rc = user_parse(u, NULL, 3, 3)) != 0 || (rc = user_connect()) != 0)
		return rc;
	if (pgm_link_identity(conn, u->a[0], u->a[1], u->a[2]) != PGM_OK)
		return failed("user link");
	return 0;
}

static int
user_unlink(user_args *u)
{
	int			removed = 0;
	int			rc;

	if ((rc = user_parse(u, NULL, 2, 2)) != 0 || (rc = user_connect()) != 0)
		return rc;
	if (pgm_unlink_identity(conn, u->a[0], u->a[1], &removed) != PGM_OK)
		return failed("user unlink");
	if (!removed)
	{
		fprintf(stderr, "pgmarket: user %s has no %s identity\n", u->a[0], u->a[1]);
		return 1;
	}
	return 0;
}

/* erase: the right to be forgotten (pgmarket_admin); asks for --yes */
static int
user_erase(user_args *u)
{
	int			yes = 0,
				got,
				rc;
	char		cmd[64];
	const cli_opt opts[] = {{"yes", NULL, &yes}, {NULL, NULL, NULL}};

	snprintf(cmd, sizeof(cmd), "user %s", u->sub);
	if (parse_args(cmd, u->argc, u->argv, opts, u->a, 1, 1, &got,
				   "user erase: 1 argument expected (see pgmarket user --help)") ||
		uuid_arg("USER_ID", u->a[0]))
		return 2;
	if (!yes)
		return usage_error("user erase cannot be undone: give --yes to erase user %s", u->a[0]);
	if ((rc = user_connect()) != 0)
		return rc;
	if (pgm_erase_user(conn, u->a[0]) != PGM_OK)
		return failed("user erase");
	printf("user %s erased\n", u->a[0]);
	return 0;
}

int
cmd_user(int argc, char **argv)
{
	static const struct
	{
		const char *name;
		int			(*fn) (user_args *u);
	}			subs[] = {
		{"show", user_show},
		{"set", user_set},
		{"grant", user_role},
		{"revoke", user_role},
		{"reset-password", user_reset_password},
		{"link", user_link},
		{"unlink", user_unlink},
		{"erase", user_erase},
	};
	user_args	u = {0};
	size_t		i;

	if (argc < 1)
		return usage_error("user needs a subcommand: show, set, grant, revoke, reset-password, link, unlink, erase");
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (strcmp(argv[0], subs[i].name) == 0)
		{
			u.sub = subs[i].name;
			u.argc = argc - 1;
			u.argv = argv + 1;
			return subs[i].fn(&u);
		}
	return usage_error("unknown user subcommand \"%s\"", argv[0]);
}
