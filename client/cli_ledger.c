/*
 * cli_ledger.c: the ledger commands of the pgmarket tool: balance,
 * add-funds, charge.
 */
#include "cli.h"

#include <stdio.h>

/* The outcome of a ledger call: the entry printed (0), or the failure of WHAT (3). */
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
	int			n;
	pgm_balance b;

	if (parse_args("balance", argc, argv, NULL, a, 1, 1, &n, "balance needs USER_ID") ||
		uuid_arg("USER_ID", a[0]))
		return 2;
	if (open_conn() != 0)
		return 3;
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
	const char *key = NULL,
			   *note = NULL;
	const cli_opt opts[] = {{"key", &key, NULL}, {"note", &note, NULL}, {NULL, NULL, NULL}};
	int			n;
	pgm_ledger_result r;

	if (parse_args("add-funds", argc, argv, opts, a, 2, 2, &n,
				   "add-funds needs USER_ID AMOUNT") ||
		uuid_arg("USER_ID", a[0]))
		return 2;
	if (open_conn() != 0)
		return 3;
	return ledger_outcome(pgm_add_funds(conn, a[0], a[1], key, note, &r), "add-funds", &r);
}

int
cmd_charge(int argc, char **argv)
{
	char	   *a[3];
	const char *key = NULL,
			   *tokens_text = NULL;
	const cli_opt opts[] = {{"key", &key, NULL}, {"tokens", &tokens_text, NULL}, {NULL, NULL, NULL}};
	long long	tokens;
	int			n;
	pgm_ledger_result r;

	if (parse_args("charge", argc, argv, opts, a, 3, 3, &n,
				   "charge needs USER_ID AMOUNT MODEL") ||
		uuid_arg("USER_ID", a[0]) ||
		int_value("--tokens", tokens_text, 0, INT64_MAX, 0, &tokens))
		return 2;
	if (open_conn() != 0)
		return 3;
	return ledger_outcome(pgm_deduct_balance(conn, a[0], a[1], a[2], (int64_t) tokens, key, &r),
						  "charge", &r);
}
