/*
 * provider_key.c: store a user's own provider key and fetch it when calling
 * the provider.  pgm_put_provider_key seals the secret on the client
 * (crypto_box_seal to the vault's public key), so it never travels as SQL
 * text nor reaches a server log; pgm_free_secret wipes the fetched copy.
 * Fetching needs the pgmarket_keyreader role (or a superuser).
 */
#include <pgmarket.h>

#include <stdio.h>
#include <string.h>

#include "example_common.h"

int
main(int argc, char **argv)
{
	pgm_conn   *conn;
	char		user_id[PGM_UUID_LEN],
				key_id[PGM_UUID_LEN];
	char	   *secret = NULL;
	pgm_result *keys = NULL;
	pgm_provider_key_info info;
	int			rc = 1;

	conn = example_start(argc, argv, "dave", NULL, user_id);
	/* the act on behalf of the user is recorded in the audit trail */
	pgm_set_actor(conn, user_id);
	if (pgm_put_provider_key(conn, user_id, "openai", "sk-proj-example-0000-1234",
							 "laptop", key_id) != PGM_OK)
	{
		fprintf(stderr, "put_provider_key: %s %s\n", pgm_status_name(pgm_last_status(conn)),
				pgm_errmsg(conn));
		goto out;
	}
	if (pgm_get_provider_key(conn, user_id, "openai", &secret) != PGM_OK)
	{
		fprintf(stderr, "get_provider_key: %s\n", pgm_errmsg(conn));
		goto out;
	}
	printf("stored key %s; fetched %zu characters\n", key_id, strlen(secret));
	pgm_free_secret(secret);	/* wiped, then freed */

	if (pgm_list_provider_keys(conn, user_id, &keys) != PGM_OK)
		goto out;
	for (int i = 0; i < pgm_result_rows(keys); i++)
		if (pgm_result_provider_key(keys, i, &info) == PGM_OK)
			printf("%s %s ...%s v%d %s\n", info.key_id, info.provider, info.hint,
				   info.key_version, info.revoked_at[0] ? "revoked" : "active");
	pgm_result_free(keys);
	if (pgm_get_provider_key(conn, user_id, "anthropic", &secret) == PGM_KEY_NOT_FOUND)
		printf("no anthropic key: %s\n", pgm_errmsg(conn));
	rc = 0;
out:
	pgm_finish(conn);
	return rc;
}
