/*
 * no_vault.c: the library's sealed calls against a server whose vault has
 * no key, for tests/t/013_log_secrets.pl.
 *
 *   no_vault CONNINFO LOGIN PASSWORD API_KEY
 *
 * By default a call that would send a password or a platform key fails
 * with PGM_VAULT_UNAVAILABLE (PM010) and sends nothing in plaintext; after
 * pgm_set_plain_secrets(conn, 1) authenticate sends the password as text
 * and succeeds (the caller then finds it in the server log).  Prints a
 * line per check and exits 1 when a check failed.
 */
#include "pgmarket.h"

#include <stdio.h>
#include <string.h>

#include "tap_driver.h"

int
main(int argc, char **argv)
{
	pgm_conn   *c;
	char		who[PGM_UUID_LEN];
	char		uid[PGM_UUID_LEN];
	char	   *hash = NULL;
	int			valid = 1;
	pgm_ledger_result lr;

	c = driver_connect(argc, argv, 5, "no_vault CONNINFO LOGIN PASSWORD API_KEY");
	check(pgm_authenticate(c, argv[2], argv[3], who) == PGM_VAULT_UNAVAILABLE &&
		  strcmp(pgm_sqlstate(c), "PM010") == 0 && who[0] == '\0',
		  "authenticate without a vault: PGM_VAULT_UNAVAILABLE", c);
	check(pgm_create_user(c, "novault@example.com", "no_vault_user", argv[3],
						  NULL, NULL, uid) == PGM_VAULT_UNAVAILABLE,
		  "create_user with a password: PGM_VAULT_UNAVAILABLE", c);
	check(pgm_hash_password(c, argv[3], &hash) == PGM_VAULT_UNAVAILABLE && hash == NULL,
		  "hash_password: PGM_VAULT_UNAVAILABLE", c);
	check(pgm_verify_api_key(c, argv[4], &valid, NULL) == PGM_VAULT_UNAVAILABLE && !valid,
		  "verify_api_key: PGM_VAULT_UNAVAILABLE", c);
	check(pgm_charge_api_key(c, argv[4], "1", "m-novault", 1, NULL, &lr) ==
		  PGM_VAULT_UNAVAILABLE, "charge_api_key: PGM_VAULT_UNAVAILABLE", c);
	check(pgm_create_user(c, "novault@example.com", "no_vault_user", NULL,
						  NULL, NULL, uid) == PGM_OK,
		  "create_user without a password needs no vault", c);

	pgm_set_plain_secrets(c, 1);
	check(pgm_authenticate(c, argv[2], argv[3], who) == PGM_OK && who[0] != '\0',
		  "pgm_set_plain_secrets: authenticate sends the password as text", c);
	pgm_finish(c);
	return failed;
}
