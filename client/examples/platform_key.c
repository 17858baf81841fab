/*
 * platform_key.c: the marketplace issues an API key, the gateway checks it
 * and charges through it in one round trip, asks how much of its tier's
 * rate limit is left, and the owner revokes it.
 */
#include <pgmarket.h>

#include <stdio.h>

#include "example_common.h"

int
main(int argc, char **argv)
{
	/* the key's terms, and what the calls tell of it */
	pgm_api_key_options opts = {0};
	pgm_api_key_check check;
	pgm_rate_limit limit;
	pgm_ledger_result r;
	int			valid = 0,
				revoked = 0,
				rc = 1;
	char		user_id[PGM_UUID_LEN],
				key_id[PGM_UUID_LEN];
	char	   *api_key = NULL;
	pgm_conn   *conn;

	conn = example_start(argc, argv, "erin", "5", user_id);
	/* issue: at most 1 credit a day through this key */
	opts.spend_limit = "1.00";
	opts.spend_period = "day";
	if (pgm_create_api_key(conn, user_id, "gateway", &opts, key_id, &api_key) != PGM_OK)
	{
		fprintf(stderr, "create_api_key: %s\n", pgm_errmsg(conn));
		goto out;
	}
	printf("issued key %s (%.24s...)\n", key_id, api_key);
	/* check */
	if (pgm_verify_api_key(conn, api_key, &valid, &check) != PGM_OK || !valid)
	{
		fprintf(stderr, "verify_api_key failed\n");
		goto out;
	}
	printf("key of user %s, scopes %s, tier %s\n", check.user_id, check.scopes,
		   check.rate_limit_tier);
	/* charge: key check, scope, spend limit and the charge in one call */
	switch (pgm_charge_api_key(conn, api_key, "0.75", "gpt-4o", 900, "req-1", &r))
	{
		case PGM_OK:
			break;
		case PGM_RATE_LIMITED:
			/* nothing was charged: the gateway answers 429 with Retry-After */
			fprintf(stderr, "rate limited, retry in %lld ms\n",
					(long long) pgm_retry_after_ms(conn));
			goto out;
		default:
			fprintf(stderr, "charge_api_key: %s\n", pgm_errmsg(conn));
			goto out;
	}
	printf("charged %s, available %s\n", r.amount, r.available_balance);
	/* the key's tier (free: 60 requests a minute and a burst of 10) */
	if (pgm_check_rate_limit(conn, api_key, &limit) != PGM_OK)
	{
		fprintf(stderr, "check_rate_limit: %s\n", pgm_errmsg(conn));
		goto out;
	}
	printf("rate limit: %s, %lld requests left\n", limit.allowed ? "allowed" : "must wait",
		   (long long) limit.remaining_requests);
	if (pgm_charge_api_key(conn, api_key, "0.75", "gpt-4o", 900, "req-2", &r) ==
		PGM_INSUFFICIENT_FUNDS)
		printf("over the daily limit: %s\n", pgm_errmsg(conn));
	/* revoke: the very next call is refused */
	if (pgm_revoke_api_key(conn, user_id, key_id, &revoked) != PGM_OK || !revoked)
		goto out;
	if (pgm_charge_api_key(conn, api_key, "0.01", "gpt-4o", 1, NULL, &r) == PGM_INVALID_API_KEY)
		printf("after revocation: %s\n", pgm_errmsg(conn));
	rc = 0;
out:
	pgm_free_secret(api_key);
	pgm_finish(conn);
	return rc;
}
