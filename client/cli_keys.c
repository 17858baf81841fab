/*
 * cli_keys.c: the key commands of the pgmarket tool: keys (platform API
 * keys and sealed provider keys) and rotate-keys (re-encryption under the
 * newest master key).
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

/* "read,write" -> NULL-terminated list in one allocation. */
static char **
split_list(const char *s)
{
	size_t		n = 2,
				len = strlen(s),
				i,
				k = 0;
	char	  **list;
	char	   *copy;

	for (i = 0; i < len; i++)
		n += s[i] == ',';
	list = malloc(n * sizeof(char *) + len + 1);
	if (list == NULL)
		return NULL;
	copy = (char *) (list + n);
	memcpy(copy, s, len + 1);
	list[k++] = copy;
	for (i = 0; i < len; i++)
		if (copy[i] == ',')
		{
			copy[i] = '\0';
			list[k++] = copy + i + 1;
		}
	list[k] = NULL;
	return list;
}

/*
 * What a keys subcommand is given: its name and the arguments after it,
 * which it reads with parse_args before it opens the connection.
 */
typedef struct
{
	const char *sub;
	int			argc;
	char	  **argv;
} keys_args;

typedef int (*keys_fn) (const keys_args *k);

/* The arguments of a subcommand that takes n positional ones, then conn. */
static int
keys_parse(const keys_args *k, const cli_opt *opts, char **a, int n, const char *what)
{
	char		cmd[64];
	int			got;

	snprintf(cmd, sizeof(cmd), "keys %s", k->sub);
	if (parse_args(cmd, k->argc, k->argv, opts, a, n, n, &got, what) ||
		uuid_arg("USER_ID", a[0]))
		return 2;
	return open_conn() != 0 ? 3 : 0;
}

/*
 * The rows that list (pgm_list_api_keys, pgm_list_provider_keys) gives for
 * the one argument USER_ID of "keys SUB" into *r; 0, or the exit code.
 */
static int
keys_of_user(const keys_args *k, pgm_status (*list) (pgm_conn *, const char *, pgm_result **),
			 pgm_result **r)
{
	char	   *a[1];
	char		what[64],
				usage[64];
	int			rc;

	*r = NULL;
	snprintf(what, sizeof(what), "keys %s", k->sub);
	snprintf(usage, sizeof(usage), "keys %s needs USER_ID", k->sub);
	if ((rc = keys_parse(k, NULL, a, 1, usage)) != 0)
		return rc;
	if (list(conn, a[0], r) != PGM_OK)
		return failed(what);
	return 0;
}

static int
keys_list(const keys_args *k)
{
	pgm_result *r;
	int			i,
				rc;

	if ((rc = keys_of_user(k, pgm_list_api_keys, &r)) != 0)
		return rc;
	printf("%-36s  %-24s  %-16s  %-12s  %-10s  %s\n", "key_id", "prefix", "name",
		   "scopes", "spent", "state");
	for (i = 0; i < pgm_result_rows(r); i++)
	{
		const char *revoked = pgm_result_value(r, i, "revoked_at");

		printf("%-36s  %-24s  %-16s  %-12s  %-10s  %s\n",
			   pgm_result_value(r, i, "key_id"), pgm_result_value(r, i, "prefix"),
			   pgm_result_value(r, i, "name"), pgm_result_value(r, i, "scopes"),
			   pgm_result_value(r, i, "total_spent"), revoked ? "revoked" : "active");
	}
	pgm_result_free(r);
	return 0;
}

static int
keys_create(const keys_args *k)
{
	pgm_api_key_options o = {0};
	char	  **scopes = NULL;
	char		key_id[PGM_UUID_LEN];
	char	   *key = NULL;
	char	   *a[2];
	const char *s = NULL;
	const cli_opt opts[] = {
		{"scopes", &s, NULL}, {"tier", &o.rate_limit_tier, NULL},
		{"env", &o.environment, NULL}, {"limit", &o.spend_limit, NULL},
		{"period", &o.spend_period, NULL}, {"expires", &o.expires_at, NULL},
		{NULL, NULL, NULL}};
	pgm_status	st;
	int			rc;

	if ((rc = keys_parse(k, opts, a, 2, "keys create needs USER_ID NAME")) != 0)
		return rc;
	if (s && (scopes = split_list(s)) == NULL)
		return 1;
	o.scopes = (const char *const *) scopes;
	st = pgm_create_api_key(conn, a[0], a[1], &o, key_id, &key);
	free(scopes);
	if (st != PGM_OK)
		return failed("keys create");
	printf("key_id  %s\napi_key %s\n", key_id, key);
	fprintf(stderr, "pgmarket: the raw key is shown once; it is not stored\n");
	pgm_free_secret(key);
	return 0;
}

/* revoke and revoke-provider */
static int
keys_revoke(const keys_args *k)
{
	int			revoked = 0;
	char	   *a[2];
	char		what[64];
	pgm_status	st;
	int			rc;

	snprintf(what, sizeof(what), "keys %s needs USER_ID KEY_ID", k->sub);
	if ((rc = keys_parse(k, NULL, a, 2, what)) != 0)
		return rc;
	st = k->sub[6] == '\0' ? pgm_revoke_api_key(conn, a[0], a[1], &revoked)
		: pgm_revoke_provider_key(conn, a[0], a[1], &revoked);
	if (st != PGM_OK)
		return failed("keys revoke");
	printf("%s\n", revoked ? "revoked" : "was revoked already");
	return 0;
}

static int
keys_put(const keys_args *k)
{
	char		secret[4096];
	char		key_id[PGM_UUID_LEN];
	char	   *a[2];
	const char *label = NULL;
	const cli_opt opts[] = {{"label", &label, NULL}, {NULL, NULL, NULL}};
	size_t		len;
	pgm_status	st;
	int			rc;

	if ((rc = keys_parse(k, opts, a, 2,
						 "keys put needs USER_ID PROVIDER (the secret on stdin)")) != 0)
		return rc;
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "secret for %s: ", a[1]);
	if (fgets(secret, sizeof(secret), stdin) == NULL)
	{
		fprintf(stderr, "pgmarket: keys put: no secret on stdin\n");
		return 1;
	}
	len = strcspn(secret, "\r\n");
	secret[len] = '\0';
	st = pgm_put_provider_key(conn, a[0], a[1], secret, label, key_id);
	sodium_memzero(secret, sizeof(secret));
	if (st != PGM_OK)
		return failed("keys put");
	printf("key_id %s\n", key_id);
	return 0;
}

static int
keys_providers(const keys_args *k)
{
	pgm_result *r;
	pgm_provider_key_info info;
	int			i,
				rc;

	if ((rc = keys_of_user(k, pgm_list_provider_keys, &r)) != 0)
		return rc;
	printf("%-36s  %-16s  %-6s  %-3s  %s\n", "key_id", "provider", "hint", "v", "state");
	for (i = 0; i < pgm_result_rows(r); i++)
		if (pgm_result_provider_key(r, i, &info) == PGM_OK)
			printf("%-36s  %-16s  %-6s  %-3d  %s\n", info.key_id, info.provider, info.hint,
				   info.key_version, info.revoked_at[0] ? "revoked" : "active");
	pgm_result_free(r);
	return 0;
}

/* A subcommand of keys, by name. */
typedef struct keys_subcommand
{
	const char *name;
	keys_fn		fn;
} keys_subcommand;

static const keys_subcommand keys_subcommands[] = {
	{"list", keys_list},
	{"create", keys_create},
	{"revoke", keys_revoke},
	{"revoke-provider", keys_revoke},
	{"put", keys_put},
	{"providers", keys_providers},
};

int
cmd_keys(int argc, char **argv)
{
	keys_args	k;
	size_t		i;

	if (argc < 1)
		return usage_error("keys needs a subcommand: list, create, revoke, put, providers, revoke-provider");
	k.sub = argv[0];
	k.argc = argc - 1;
	k.argv = argv + 1;
	for (i = 0; i < sizeof(keys_subcommands) / sizeof(keys_subcommands[0]); i++)
		if (strcmp(k.sub, keys_subcommands[i].name) == 0)
			return keys_subcommands[i].fn(&k);
	return usage_error("unknown keys subcommand \"%s\"", k.sub);
}

int
cmd_rotate(int argc, char **argv)
{
	long long	batch;
	long		total = 0;
	int64_t		n = 0;
	pgm_result *r = NULL;
	progress	p;

	const char *batch_text = NULL;
	const cli_opt opts[] = {{"batch", &batch_text, NULL}, {NULL, NULL, NULL}};
	char	   *a[1];
	int			npos;

	if (parse_args("rotate-keys", argc, argv, opts, a, 0, 0, &npos,
				   "rotate-keys takes no arguments but --batch N") ||
		int_value("--batch", batch_text, 1, INT32_MAX, 100, &batch))
		return 2;
	if (open_conn() != 0)
		return 3;
	/* an upper bound for the bar, when this role may count */
	if (pgm_exec(conn, "SELECT count(*) AS n FROM pgmarket.provider_keys", 0, NULL, &r) == PGM_OK)
		total = atol(pgm_result_value(r, 0, "n"));
	pgm_result_free(r);
	progress_start(&p, "re-encrypting", total);
	do
	{
		if (pgm_rotate_master_key(conn, (int) batch, &n) != PGM_OK)
		{
			progress_end(&p);
			return failed("rotate_master_key");
		}
		if (n > 0)
			progress_step(&p, (long) n);
	} while (n > 0);
	progress_end(&p);
	printf("rotation done: %ld provider keys re-encrypted\n", p.done);
	return 0;
}
