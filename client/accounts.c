/*
 * accounts.c: the account surface of libpgmarket: lookups, updates,
 * password changes and resets, account roles and external identities.
 *
 * Each call is one statement through pgm_exec (so the actor and the error
 * mapping are the library's, and it works through pgbouncer); the password
 * calls seal their passwords through pgmi_exec_passwords.
 */
#include "pgmarket.h"
#include "pgm_private.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* A scalar's text out of a one-row result: NULL for SQL NULL or no row. */
static const char *
scalar(pgm_result *r, const char *column)
{
	if (r == NULL || pgm_result_rows(r) < 1)
		return NULL;
	return pgm_result_value(r, 0, column);
}

static void
copy_text(char *dst, size_t size, const char *src)
{
	if (dst == NULL)
		return;
	if (src == NULL)
		src = "";
	strncpy(dst, src, size - 1);
	dst[size - 1] = '\0';
}

/* A call whose result is ignored (void functions). */
static pgm_status
void_call(pgm_conn *c, const char *sql, int n, const char *const *vals)
{
	return pgm_exec(c, sql, n, vals, NULL);
}

/*
 * The public call fn(conn, a[, b[, c]]): sql with those text parameters,
 * its result dropped, through void_call.
 */
#define VOID_CALL1(fn, sql, a) \
	pgm_status \
	fn(pgm_conn *c, const char *a) \
	{ \
		return void_call(c, sql, 1, (const char *const[]) {a}); \
	}
#define VOID_CALL2(fn, sql, a, b) \
	pgm_status \
	fn(pgm_conn *c, const char *a, const char *b) \
	{ \
		return void_call(c, sql, 2, (const char *const[]) {a, b}); \
	}
#define VOID_CALL3(fn, sql, a, b, d) \
	pgm_status \
	fn(pgm_conn *c, const char *a, const char *b, const char *d) \
	{ \
		return void_call(c, sql, 3, (const char *const[]) {a, b, d}); \
	}

/*
 * A call of one boolean result "b" into *out (may be NULL): plain_sql, or
 * sealed_sql with the values whose bit is set in secrets sealed (0: none,
 * and sealed_sql is not used).
 */
static pgm_status
bool_call(pgm_conn *c, const char *plain_sql, const char *sealed_sql, int n,
		  const char *const *vals, unsigned secrets, int *out)
{
	pgm_result *r = NULL;
	pgm_status	st;
	const char *v;

	if (out)
		*out = 0;
	st = secrets ? pgmi_exec_passwords(c, plain_sql, sealed_sql, n, vals, secrets, &r)
		: pgm_exec(c, plain_sql, n, vals, &r);
	if (st == PGM_OK && out && (v = scalar(r, "b")) != NULL)
		*out = strcmp(v, "t") == 0;
	pgm_result_free(r);
	return st;
}

/*
 * A call of one uuid result "u" into user_id ("" for NULL or a failure):
 * plain_sql, or sealed_sql with the values whose bit is set in secrets
 * sealed (0: none), as bool_call.
 */
static pgm_status
uuid_call(pgm_conn *c, const char *plain_sql, const char *sealed_sql, int n,
		  const char *const *vals, unsigned secrets, char user_id[PGM_UUID_LEN])
{
	pgm_result *r = NULL;
	pgm_status	st;

	st = secrets ? pgmi_exec_passwords(c, plain_sql, sealed_sql, n, vals, secrets, &r)
		: pgm_exec(c, plain_sql, n, vals, &r);
	copy_text(user_id, PGM_UUID_LEN, st == PGM_OK ? scalar(r, "u") : NULL);
	pgm_result_free(r);
	return st;
}

/* ------------------------------------------------------------------------
 * Lookups and updates
 * ------------------------------------------------------------------------ */

pgm_status
pgm_get_user(pgm_conn *c, const char *user_id, pgm_result **out)
{
	const char *vals[1] = {user_id};

	return pgm_exec(c, "SELECT * FROM pgmarket.get_user($1::uuid)", 1, vals, out);
}

pgm_status
pgm_get_user_by_email(pgm_conn *c, const char *email, pgm_result **out)
{
	const char *vals[1] = {email};

	return pgm_exec(c, "SELECT * FROM pgmarket.get_user_by_email($1)", 1, vals, out);
}

pgm_status
pgm_get_user_by_username(pgm_conn *c, const char *username, pgm_result **out)
{
	const char *vals[1] = {username};

	return pgm_exec(c, "SELECT * FROM pgmarket.get_user_by_username($1)", 1, vals, out);
}

pgm_status
pgm_result_user(const pgm_result *r, int row, pgm_user *out)
{
	const char *active;

	if (r == NULL || out == NULL || row < 0 || row >= pgm_result_rows(r))
		return PGM_CLIENT_ERROR;
	out->id = pgm_result_value(r, row, "id");
	out->email = pgm_result_value(r, row, "email");
	out->username = pgm_result_value(r, row, "username");
	out->roles = pgm_result_value(r, row, "roles");
	active = pgm_result_value(r, row, "is_active");
	out->is_active = active != NULL && strcmp(active, "t") == 0;
	out->created_at = pgm_result_value(r, row, "created_at");
	out->last_login_at = pgm_result_value(r, row, "last_login_at");
	return out->id ? PGM_OK : PGM_CLIENT_ERROR;
}

pgm_status
pgm_update_last_login(pgm_conn *c, const char *user_id, char at[PGM_TIME_LEN])
{
	const char *vals[1] = {user_id};
	pgm_result *r = NULL;
	pgm_status	st;

	st = pgm_exec(c, "SELECT pgmarket.update_last_login($1::uuid) AS at", 1, vals, &r);
	copy_text(at, PGM_TIME_LEN, st == PGM_OK ? scalar(r, "at") : NULL);
	pgm_result_free(r);
	return st;
}

VOID_CALL3(pgm_update_user, "SELECT pgmarket.update_user($1::uuid, $2, $3)",
		   user_id, email, username)

VOID_CALL1(pgm_reactivate_user, "SELECT pgmarket.reactivate_user($1::uuid)", user_id)

/* ------------------------------------------------------------------------
 * Passwords
 * ------------------------------------------------------------------------ */

pgm_status
pgm_change_password(pgm_conn *c, const char *user_id, const char *old_password,
					const char *new_password, int *changed)
{
	const char *vals[3] = {user_id, old_password, new_password};

	return bool_call(c, "SELECT pgmarket.change_password($1::uuid, $2, $3) AS b",
					 "SELECT pgmarket.change_password_sealed($1::uuid, $2::bytea, $3::bytea) AS b",
					 3, vals, (1u << 1) | (1u << 2), changed);
}

pgm_status
pgm_create_password_reset(pgm_conn *c, const char *user_id, const char *ttl,
						  char **token)
{
	const char *vals[2] = {user_id, ttl};

	/* the token in the result's memory is wiped before it goes */
	return pgmi_exec_secret(c, "SELECT pgmarket.create_password_reset($1::uuid, "
							"COALESCE($2::interval, '1 hour'))", 2, vals, token);
}

pgm_status
pgm_reset_password(pgm_conn *c, const char *token, const char *new_password,
				   char user_id[PGM_UUID_LEN])
{
	const char *vals[2] = {token, new_password};

	return uuid_call(c, "SELECT pgmarket.reset_password($1, $2) AS u",
					 "SELECT pgmarket.reset_password_sealed($1, $2::bytea) AS u",
					 2, vals, 1u << 1, user_id);
}

/* ------------------------------------------------------------------------
 * Account roles
 * ------------------------------------------------------------------------ */

VOID_CALL2(pgm_add_account_role, "SELECT pgmarket.add_account_role($1, $2)", name, description)

VOID_CALL2(pgm_grant_user_role, "SELECT pgmarket.grant_user_role($1::uuid, $2)", user_id, role)

VOID_CALL2(pgm_revoke_user_role, "SELECT pgmarket.revoke_user_role($1::uuid, $2)", user_id, role)

pgm_status
pgm_has_role(pgm_conn *c, const char *user_id, const char *role, int *has)
{
	const char *vals[2] = {user_id, role};

	return bool_call(c, "SELECT pgmarket.has_role($1::uuid, $2) AS b", NULL, 2, vals, 0, has);
}

/* ------------------------------------------------------------------------
 * External identities
 * ------------------------------------------------------------------------ */

VOID_CALL3(pgm_link_identity, "SELECT pgmarket.link_identity($1::uuid, $2, $3)",
		   user_id, provider, subject)

pgm_status
pgm_unlink_identity(pgm_conn *c, const char *user_id, const char *provider,
					int *removed)
{
	const char *vals[2] = {user_id, provider};

	return bool_call(c, "SELECT pgmarket.unlink_identity($1::uuid, $2) AS b", NULL, 2, vals,
					 0, removed);
}

pgm_status
pgm_user_by_identity(pgm_conn *c, const char *provider, const char *subject,
					 char user_id[PGM_UUID_LEN])
{
	const char *vals[2] = {provider, subject};

	return uuid_call(c, "SELECT pgmarket.user_by_identity($1, $2) AS u", NULL, 2, vals, 0,
					 user_id);
}
