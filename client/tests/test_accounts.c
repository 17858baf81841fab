/*
 * test_accounts.c: the account surface of libpgmarket against a live
 * server: lookups, updates, password changes and resets (sealed, and kept
 * out of the server log), account roles and the actor rule, identities.
 *
 * Run by tests/run.sh in the database of the PG* environment (the
 * extension installed, a master key file written, log_statement = all);
 * one line per check, closing with "# tally: P F".
 */
#include "pgmarket.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "check.h"

static char suffix[16];

/*
 * The rows of a lookup that returned st into *r (read after the call: the
 * order in which a call's arguments are evaluated is unspecified), the
 * first into *u.
 */
static int
lookup_one(pgm_conn *c, pgm_status st, pgm_result **r, pgm_user *u)
{
	int			n = st == PGM_OK ? pgm_result_rows(*r) : -1;

	if (n == 1)
		CHECK(pgm_result_user(*r, 0, u) == PGM_OK, c);
	return n;
}

static void
test_lookups(pgm_conn *c, const char *id, const char *email, const char *uname)
{
	pgm_result *r = NULL;
	pgm_user	u;
	char		upper[300];
	char		at[PGM_TIME_LEN];
	size_t		i;

	printf("# lookups and updates\n");
	CHECK(lookup_one(c, pgm_get_user(c, id, &r), &r, &u) == 1, c);
	CHECK(strcmp(u.email, email) == 0 && strcmp(u.username, uname) == 0, c);
	CHECK(u.is_active && strcmp(u.roles, "{user}") == 0 && u.last_login_at == NULL, c);
	pgm_result_free(r);

	snprintf(upper, sizeof(upper), "  %s ", email);
	for (i = 0; upper[i]; i++)
		if (upper[i] >= 'a' && upper[i] <= 'z')
			upper[i] -= 'a' - 'A';
	CHECK(lookup_one(c, pgm_get_user_by_email(c, upper, &r), &r, &u) == 1, c);
	CHECK(strcmp(u.id, id) == 0, c);
	pgm_result_free(r);
	CHECK(lookup_one(c, pgm_get_user_by_username(c, uname, &r), &r, &u) == 1, c);
	pgm_result_free(r);
	CHECK(lookup_one(c, pgm_get_user_by_email(c, "nobody@example.com", &r), &r, &u) == 0, c);
	pgm_result_free(r);
	r = NULL;
	EXPECT(pgm_get_user_by_email(c, "not an email", &r), PGM_INVALID_PARAMETER, c);
	CHECK(r == NULL, c);
	EXPECT(pgm_get_user_by_username(c, NULL, &r), PGM_NULL_VALUE, c);

	EXPECT(pgm_update_last_login(c, id, at), PGM_OK, c);
	CHECK(at[0] != '\0', c);
	EXPECT(pgm_update_last_login(c, "ac700000-0000-4000-8000-0000000000ff", at),
		   PGM_UNKNOWN_ACCOUNT, c);
	CHECK(at[0] == '\0', c);

	snprintf(upper, sizeof(upper), "%s_2", uname);
	EXPECT(pgm_update_user(c, id, NULL, upper), PGM_OK, c);
	CHECK(lookup_one(c, pgm_get_user_by_username(c, upper, &r), &r, &u) == 1, c);
	CHECK(u.last_login_at != NULL, c);
	pgm_result_free(r);
	EXPECT(pgm_update_user(c, id, "bad@", NULL), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_update_user(c, id, NULL, uname), PGM_OK, c);

	EXPECT(pgm_deactivate_user(c, id), PGM_OK, c);
	CHECK(lookup_one(c, pgm_get_user(c, id, &r), &r, &u) == 1 && !u.is_active, c);
	pgm_result_free(r);
	EXPECT(pgm_update_user(c, id, NULL, upper), PGM_UNKNOWN_ACCOUNT, c);
	EXPECT(pgm_reactivate_user(c, id), PGM_OK, c);
	CHECK(lookup_one(c, pgm_get_user(c, id, &r), &r, &u) == 1 && u.is_active, c);
	pgm_result_free(r);
}

/* Does the server log hold needle?  -1 when it cannot be read. */
static int
log_has(const char *needle)
{
	char	   *buf = server_log(NULL);
	int			found = buf ? strstr(buf, needle) != NULL : -1;

	free(buf);
	return found;
}

static void
test_passwords(pgm_conn *c, const char *id, const char *uname)
{
	char		old_pw[64],
				new_pw[64],
				reset_pw[64],
				got[PGM_UUID_LEN];
	char	   *token = NULL;
	int			changed = -1;
	int			in_log;

	printf("# passwords and resets\n");
	snprintf(old_pw, sizeof(old_pw), "OLDMARK-%s", suffix);
	snprintf(new_pw, sizeof(new_pw), "NEWMARK-%s", suffix);
	snprintf(reset_pw, sizeof(reset_pw), "RESETMARK-%s", suffix);
	EXPECT(pgm_change_password(c, id, "wrong", new_pw, &changed), PGM_OK, c);
	CHECK(changed == 0, c);		/* a user without a password */

	EXPECT(pgm_create_password_reset(c, id, "10 minutes", &token), PGM_OK, c);
	CHECK(token != NULL && strncmp(token, "pwr_", 4) == 0 && strlen(token) == 60, c);
	EXPECT(pgm_reset_password(c, token, old_pw, got), PGM_OK, c);
	CHECK(strcmp(got, id) == 0, c);
	EXPECT(pgm_reset_password(c, token, reset_pw, got), PGM_OK, c);
	CHECK(got[0] == '\0', c);	/* used */
	EXPECT(pgm_authenticate(c, uname, old_pw, got), PGM_OK, c);
	CHECK(strcmp(got, id) == 0, c);
	pgm_free_secret(token);
	token = NULL;

	EXPECT(pgm_change_password(c, id, "wrong", new_pw, &changed), PGM_OK, c);
	CHECK(changed == 0, c);
	EXPECT(pgm_change_password(c, id, old_pw, new_pw, &changed), PGM_OK, c);
	CHECK(changed == 1, c);
	EXPECT(pgm_authenticate(c, uname, new_pw, got), PGM_OK, c);
	CHECK(strcmp(got, id) == 0, c);
	EXPECT(pgm_change_password(c, id, new_pw, "", &changed), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_create_password_reset(c, id, "8 days", &token), PGM_INVALID_PARAMETER, c);
	CHECK(token == NULL, c);
	EXPECT(pgm_reset_password(c, "pwr_nothing", reset_pw, got), PGM_OK, c);
	CHECK(got[0] == '\0', c);

	/* the passwords travelled sealed: none of them is in the server log */
	in_log = log_has(old_pw);
	if (in_log < 0)
		printf("# skip: the server log is not readable\n");
	else
	{
		CHECK(log_has("change_password_sealed") == 1, c);	/* logging is on */
		CHECK(in_log == 0, c);
		CHECK(log_has(new_pw) == 0, c);
		CHECK(log_has(reset_pw) == 0, c);
	}
}

static void
test_roles(pgm_conn *c, const char *id)
{
	char		role[40];
	int			has = -1;

	printf("# account roles\n");
	snprintf(role, sizeof(role), "tester-%s", suffix);
	EXPECT(pgm_grant_user_role(c, id, role), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_add_account_role(c, role, "runs the client tests"), PGM_OK, c);
	EXPECT(pgm_grant_user_role(c, id, role), PGM_OK, c);
	EXPECT(pgm_has_role(c, id, role, &has), PGM_OK, c);
	CHECK(has == 1, c);
	EXPECT(pgm_revoke_user_role(c, id, role), PGM_OK, c);
	EXPECT(pgm_has_role(c, id, role, &has), PGM_OK, c);
	CHECK(has == 0, c);
	EXPECT(pgm_grant_user_role(c, id, "Bad Role"), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_grant_user_role(c, "ac700000-0000-4000-8000-0000000000ff", "admin"),
		   PGM_UNKNOWN_ACCOUNT, c);
	/* with an actor, no grant, not even to oneself */
	EXPECT(pgm_set_actor(c, id), PGM_OK, c);
	EXPECT(pgm_grant_user_role(c, id, "admin"), PGM_PERMISSION_DENIED, c);
	EXPECT(pgm_has_role(c, id, "admin", &has), PGM_OK, c);
	CHECK(has == 0, c);
	EXPECT(pgm_has_role(c, "ac700000-0000-4000-8000-0000000000ff", "admin", &has),
		   PGM_PERMISSION_DENIED, c);
	EXPECT(pgm_set_actor(c, NULL), PGM_OK, c);
}

static void
test_identities(pgm_conn *c, const char *id, const char *other)
{
	char		subject[64],
				got[PGM_UUID_LEN];
	int			removed = -1;

	printf("# identities\n");
	snprintf(subject, sizeof(subject), "oid-%s", suffix);
	EXPECT(pgm_link_identity(c, id, "Azure-AD", subject), PGM_OK, c);
	EXPECT(pgm_link_identity(c, id, "azure-ad", subject), PGM_OK, c);
	EXPECT(pgm_user_by_identity(c, "azure-ad", subject, got), PGM_OK, c);
	CHECK(strcmp(got, id) == 0, c);
	EXPECT(pgm_link_identity(c, other, "azure-ad", subject), PGM_DUPLICATE, c);
	EXPECT(pgm_link_identity(c, id, "azure ad", subject), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_link_identity(c, id, "azure-ad", ""), PGM_INVALID_PARAMETER, c);
	EXPECT(pgm_user_by_identity(c, "azure-ad", "nobody", got), PGM_OK, c);
	CHECK(got[0] == '\0', c);
	EXPECT(pgm_unlink_identity(c, id, "azure-ad", &removed), PGM_OK, c);
	CHECK(removed == 1, c);
	EXPECT(pgm_unlink_identity(c, id, "azure-ad", &removed), PGM_OK, c);
	CHECK(removed == 0, c);
	EXPECT(pgm_user_by_identity(c, "azure-ad", subject, got), PGM_OK, c);
	CHECK(got[0] == '\0', c);
}

int
main(void)
{
	pgm_conn   *c;
	char		id[PGM_UUID_LEN],
				other[PGM_UUID_LEN],
				email[128],
				uname[64];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (sodium_init() < 0)
		return 2;
	snprintf(suffix, sizeof(suffix), "%08x", randombytes_random());
	if ((c = test_connect()) == NULL)
		return tally() | 1;
	snprintf(email, sizeof(email), "acct-%s@example.com", suffix);
	snprintf(uname, sizeof(uname), "acct_%s", suffix);
	EXPECT(pgm_create_user(c, email, uname, NULL, NULL, NULL, id), PGM_OK, c);
	snprintf(email, sizeof(email), "acct2-%s@example.com", suffix);
	snprintf(uname, sizeof(uname), "acct2_%s", suffix);
	EXPECT(pgm_create_user(c, email, uname, NULL, NULL, NULL, other), PGM_OK, c);
	snprintf(email, sizeof(email), "acct-%s@example.com", suffix);
	snprintf(uname, sizeof(uname), "acct_%s", suffix);

	test_lookups(c, id, email, uname);
	test_passwords(c, id, uname);
	test_roles(c, id);
	test_identities(c, id, other);
	pgm_finish(c);
	return tally();
}
