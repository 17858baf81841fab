/*
 * cli_ledger.c: the ledger commands of the pgmarket tool: balance,
 * add-funds, charge.
 */
#include "cli.h"

#include <stdio.h>

/* The outcome of a ledger call: the entry printed (0), or the failure of WHAT (1). */
static int
ledger_outcome(pgm_status st, const char *what, const pgm_ledger_result *r)
{
	if (st != PGM_OK)
		return failed(what);
	printf("entry %lld: %s of %s, available %s%s\n", (long long) r->entry_id,
		   r->kind, r->amount, r->available_balance, r->replayed ? " (replayed)" : "");
	return 0;
}

int
cmd_balance(int argc, char **argv)
{
	char	   *a[1];
	pgm_balance b;

	if (need_args(argc, argv, a, 1, "balance needs USER_ID"))
		return 2;
	if (pgm_get_balance(conn, a[0], &b) != PGM_OK)
		return failed("balance");
	printf("user       %s\ntotal      %s\nspent      %s\nreserved   %s\navailable  %s\n",
		   b.user_id, b.total_balance, b.spent_balance, b.reserved_balance,
		   b.available_balance);
	return 0;
}

int
cmd_add_funds(int argc, char **argv)
{
	char	   *a[2];
	pgm_ledger_result r;

	if (need_args(argc, argv, a, 2, "add-funds needs USER_ID AMOUNT"))
		return 2;
	return ledger_outcome(pgm_add_funds(conn, a[0], a[1], opt(argc, argv, "--key"),
										opt(argc, argv, "--note"), &r),
						  "add-funds", &r);
}

int
cmd_charge(int argc, char **argv)
{
	char	   *a[3];
	long long	tokens;
	pgm_ledger_result r;

	if (need_args(argc, argv, a, 3, "charge needs USER_ID AMOUNT MODEL"))
		return 2;
	if (int_opt(argc, argv, "--tokens", 0, INT64_MAX, 0, &tokens) != 0)
		return 2;
	return ledger_outcome(pgm_deduct_balance(conn, a[0], a[1], a[2], (int64_t) tokens,
											 opt(argc, argv, "--key"), &r),
						  "charge", &r);
}
