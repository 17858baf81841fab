/*
 * cli_tiers.c: the tiers command of the pgmarket tool: the rate limit tiers
 * of platform keys (list, set) and a key's standing under its tier (check).
 *
 *   pgmarket tiers                        every tier and its limits
 *   pgmarket tiers set NAME [--rpm N] [--tpm N] [--burst N]
 *                                         create or change a tier; a limit
 *                                         left out is no limit
 *   pgmarket tiers check                  the key read from stdin: allowed,
 *                                         the wait and the requests left;
 *                                         exit 1 when it must wait
 */
#include "cli.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

/* A limit column: the number, or "-" for no limit. */
static const char *
limit_text(const char *v)
{
	return v ? v : "-";
}

/* A subcommand's arguments through parse_args, then the connection: 0, 2 or 3. */
static int
tiers_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, char **a,
			int n, const char *what)
{
	int			got;

	if (parse_args(cmd, argc, argv, opts, a, n, n, &got, what))
		return 2;
	return open_conn() != 0 ? 3 : 0;
}

static int
tiers_list(int argc, char **argv)
{
	pgm_result *r = NULL;
	char	   *a[1];
	int			i,
				rc;

	if ((rc = tiers_parse("tiers list", argc, argv, NULL, a, 0, "tiers list takes no arguments")) != 0)
		return rc;
	if (pgm_list_tiers(conn, &r) != PGM_OK)
		return failed("tiers");
	printf("%-32s  %19s  %17s  %10s\n", "name", "requests_per_minute",
		   "tokens_per_minute", "burst");
	for (i = 0; i < pgm_result_rows(r); i++)
		printf("%-32s  %19s  %17s  %10s\n", pgm_result_value(r, i, "name"),
			   limit_text(pgm_result_value(r, i, "requests_per_minute")),
			   limit_text(pgm_result_value(r, i, "tokens_per_minute")),
			   pgm_result_value(r, i, "burst"));
	pgm_result_free(r);
	return 0;
}

static int
tiers_set(int argc, char **argv)
{
	char	   *a[1];
	const char *rpm_text = NULL,
			   *tpm_text = NULL,
			   *burst_text = NULL;
	const cli_opt opts[] = {{"rpm", &rpm_text, NULL}, {"tpm", &tpm_text, NULL},
	{"burst", &burst_text, NULL}, {NULL, NULL, NULL}};
	long long	rpm,
				tpm,
				burst;
	int			got;

	if (parse_args("tiers set", argc, argv, opts, a, 1, 1, &got, "tiers set needs NAME") ||
		int_value("--rpm", rpm_text, 1, INT32_MAX, PGM_UNLIMITED, &rpm) ||
		int_value("--tpm", tpm_text, 1, INT64_MAX, PGM_UNLIMITED, &tpm) ||
		int_value("--burst", burst_text, 0, INT32_MAX, 0, &burst))
		return 2;
	if (open_conn() != 0)
		return 3;
	if (pgm_set_tier(conn, a[0], rpm, tpm, burst) != PGM_OK)
		return failed("tiers set");
	printf("tier %s set\n", a[0]);
	return 0;
}

static int
tiers_check(int argc, char **argv)
{
	char		key[256];
	char	   *a[1];
	pgm_rate_limit rl;
	pgm_status	st;
	int			rc;

	if ((rc = tiers_parse("tiers check", argc, argv, NULL, a, 0,
						  "tiers check takes no arguments (the key comes on stdin)")) != 0)
		return rc;

	if (isatty(STDIN_FILENO))
		fprintf(stderr, "API key: ");
	if (fgets(key, sizeof(key), stdin) == NULL)
		return usage_error("tiers check: no key on stdin");
	key[strcspn(key, "\r\n")] = '\0';
	if (key[0] == '\0')
		return usage_error("tiers check: no key on stdin");
	if (getc(stdin) != EOF)
	{
		sodium_memzero(key, sizeof(key));
		return usage_error("tiers check: one key on one line on stdin, nothing after it");
	}
	st = pgm_check_rate_limit(conn, key, &rl);
	sodium_memzero(key, sizeof(key));
	if (st != PGM_OK)
		return failed("tiers check");
	printf("allowed             %s\n", rl.allowed ? "yes" : "no");
	printf("retry_after_ms      %lld\n", (long long) rl.retry_after_ms);
	if (rl.remaining_requests == PGM_UNLIMITED)
		printf("remaining_requests  -\n");
	else
		printf("remaining_requests  %lld\n", (long long) rl.remaining_requests);
	return rl.allowed ? 0 : 1;
}

int
cmd_tiers(int argc, char **argv)
{
	if (argc == 0)
		return tiers_list(0, argv);
	if (strcmp(argv[0], "list") == 0)
		return tiers_list(argc - 1, argv + 1);
	if (strcmp(argv[0], "set") == 0)
		return tiers_set(argc - 1, argv + 1);
	if (strcmp(argv[0], "check") == 0)
		return tiers_check(argc - 1, argv + 1);
	return usage_error("unknown tiers subcommand \"%s\"", argv[0]);
}
