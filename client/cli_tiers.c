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

/* A limit column: the number, or "-" for no limit. */
static const char *
limit_text(const char *v)
{
	return v ? v : "-";
}

static int
tiers_list(void)
{
	pgm_result *r = NULL;
	int			i;

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
	long long	rpm,
				tpm,
				burst;

	if (need_args(argc, argv, a, 1, "tiers set needs NAME") != 0)
		return 2;
	if (int_opt(argc, argv, "--rpm", 1, INT32_MAX, PGM_UNLIMITED, &rpm) != 0 ||
		int_opt(argc, argv, "--tpm", 1, INT64_MAX, PGM_UNLIMITED, &tpm) != 0 ||
		int_opt(argc, argv, "--burst", 0, INT32_MAX, 0, &burst) != 0)
		return 2;
	if (pgm_set_tier(conn, a[0], rpm, tpm, burst) != PGM_OK)
		return failed("tiers set");
	printf("tier %s set\n", a[0]);
	return 0;
}

static int
tiers_check(void)
{
	char		key[256];
	pgm_rate_limit rl;
	pgm_status	st;

	if (isatty(STDIN_FILENO))
		fprintf(stderr, "API key: ");
	if (fgets(key, sizeof(key), stdin) == NULL)
	{
		fprintf(stderr, "pgmarket: tiers check: no key on stdin\n");
		return 1;
	}
	key[strcspn(key, "\r\n")] = '\0';
	st = pgm_check_rate_limit(conn, key, &rl);
	memset(key, 0, sizeof(key));
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
	if (argc == 0 || strcmp(argv[0], "list") == 0)
		return tiers_list();
	if (strcmp(argv[0], "set") == 0)
		return tiers_set(argc - 1, argv + 1);
	if (strcmp(argv[0], "check") == 0)
		return tiers_check();
	return usage_error("unknown tiers subcommand \"%s\"", argv[0]);
}
