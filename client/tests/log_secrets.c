/*
 * log_secrets.c: every library call that carries a password or a key, for
 * tests/t/013_log_secrets.pl, which runs it against a server that logs
 * every statement with its parameters and then searches the log.
 *
 *   log_secrets CONNINFO PASSWORD WRONG_PASSWORD PROVIDER_SECRET SUFFIX
 *
 * Through the library's default calls: create_user, authenticate with the
 * right and a wrong password, hash_password and verify_password,
 * create_api_key, verify_api_key (right and wrong key), charge_api_key
 * (right and wrong key), reserve_api_key, put_provider_key.  Prints
 * "api_key KEY" (the raw key the server issued, for the search), a line
 * per check, and exits 1 when a check failed.  Uses only calls that
 * libpgmarket 0.4.0 has, so the same program shows what that version sent.
 */
#include "pgmarket.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap_driver.h"

int
main(int argc, char **argv)
{
	pgm_conn   *c;
	char		email[128],
				uname[64],
				uid[PGM_UUID_LEN],
				who[PGM_UUID_LEN],
				kid[PGM_UUID_LEN],
				pkid[PGM_UUID_LEN];
	char	   *key = NULL;
	char	   *hash = NULL;
	char	   *wrong_key;
	int			valid = 0;
	int64_t		rid = 0;
	pgm_api_key_check chk;
	pgm_rate_limit rl;
	pgm_ledger_result lr;

	c = driver_connect(argc, argv, 6,
					   "log_secrets CONNINFO PASSWORD WRONG_PASSWORD PROVIDER_SECRET SUFFIX");
	snprintf(email, sizeof(email), "logs-%s@example.com", argv[5]);
	snprintf(uname, sizeof(uname), "logs_%s", argv[5]);

	check(pgm_create_user(c, email, uname, argv[2], NULL, NULL, uid) == PGM_OK,
		  "create_user with a password", c);
	check(pgm_authenticate(c, uname, argv[2], who) == PGM_OK &&
		  strcmp(who, uid) == 0, "authenticate: the right password", c);
	check(pgm_authenticate(c, email, argv[3], who) == PGM_OK && who[0] == '\0',
		  "authenticate: a wrong password is refused", c);
	check(pgm_hash_password(c, argv[2], &hash) == PGM_OK, "hash_password", c);
	check(hash && pgm_verify_password(c, argv[2], hash, &valid) == PGM_OK && valid,
		  "verify_password: right", c);
	check(hash && pgm_verify_password(c, argv[3], hash, &valid) == PGM_OK && !valid,
		  "verify_password: wrong", c);
	pgm_free(hash);

	check(pgm_add_funds(c, uid, "10", NULL, NULL, &lr) == PGM_OK, "add_funds", c);
	check(pgm_create_api_key(c, uid, "log test", NULL, kid, &key) == PGM_OK && key,
		  "create_api_key", c);
	if (key == NULL)
		return 1;
	printf("api_key %s\n", key);
	check(pgm_verify_api_key(c, key, &valid, &chk) == PGM_OK && valid &&
		  strcmp(chk.user_id, uid) == 0, "verify_api_key: the key verifies", c);

	/* the same key with its last character changed */
	wrong_key = strdup(key);
	if (wrong_key == NULL)
		return 1;
	wrong_key[strlen(wrong_key) - 1] = wrong_key[strlen(wrong_key) - 1] == 'A' ? 'B' : 'A';
	printf("wrong_key %s\n", wrong_key);
	check(pgm_verify_api_key(c, wrong_key, &valid, &chk) == PGM_OK && !valid,
		  "verify_api_key: a wrong key does not", c);
	check(pgm_charge_api_key(c, key, "1.5", "m-logs", 10, "logs-1", &lr) == PGM_OK &&
		  strcmp(lr.available_balance, "8.500000") == 0, "charge_api_key", c);
	check(pgm_charge_api_key(c, wrong_key, "1.5", "m-logs", 10, NULL, &lr) ==
		  PGM_INVALID_API_KEY, "charge_api_key: a wrong key is 28000", c);
	check(pgm_charge_api_key(c, key, "100", "m-logs", 10, NULL, &lr) ==
		  PGM_INSUFFICIENT_FUNDS, "charge_api_key: insufficient funds", c);
	check(pgm_reserve_api_key(c, key, "1", NULL, NULL, &rid) == PGM_OK && rid > 0,
		  "reserve_api_key", c);
	check(pgm_check_rate_limit(c, key, &rl) == PGM_OK && rl.allowed,
		  "check_rate_limit", c);
	check(pgm_check_rate_limit(c, wrong_key, &rl) == PGM_INVALID_API_KEY,
		  "check_rate_limit: a wrong key is 28000", c);
	check(pgm_put_provider_key(c, uid, "openai", argv[4], NULL, pkid) == PGM_OK,
		  "put_provider_key", c);

	pgm_free_secret(key);
	free(wrong_key);
	pgm_finish(c);
	return failed;
}
