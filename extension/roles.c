/*-------------------------------------------------------------------------
 *
 * roles.c
 *	  Account roles: add_account_role, grant_user_role, revoke_user_role,
 *	  has_role.
 *
 * A user's roles are the roles column of the account; a role must be
 * registered in table roles (user, developer, support and admin ship with
 * the extension; add_account_role, for pgmarket_admin, registers more).  A
 * role name is 1 to 32 of [a-z0-9_-]; a malformed or unregistered one is
 * 22023.
 *
 * Who may grant: pgmarket_admin, and pgmarket_app as the trusted back end,
 * that is without pgmarket.actor.  With an actor set, grant_user_role and
 * revoke_user_role are refused (42501) whoever calls, for any user: a
 * connection acting for a user never changes what that user may do.
 * has_role follows the actor rule of every per-user call.
 *
 * Concurrency rules
 * -----------------
 * A grant or revoke takes the user's lock (userlock.c: the queue, then the
 * balance row) before it changes the account row, and changes the array in
 * one UPDATE that reads the row it writes: two grants of different roles
 * to one user at once both survive, the second seeing the first's row.
 * deactivate_user takes the same lock, so a grant never revives a
 * deactivated user's row and waits for a deactivation in progress (PM002).
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(pgm_add_account_role);
PG_FUNCTION_INFO_V1(pgm_grant_user_role);
PG_FUNCTION_INFO_V1(pgm_revoke_user_role);
PG_FUNCTION_INFO_V1(pgm_has_role);

#define PGM_MAX_ROLE_LEN			32
#define PGM_MAX_ROLE_DESCRIPTION	500

static SPIPlanPtr plan_registered;
static SPIPlanPtr plan_register;
static SPIPlanPtr plan_grant;
static SPIPlanPtr plan_revoke;
static SPIPlanPtr plan_has;

static const PgmPlanDef role_plans[] = {
	{&plan_registered,
		"SELECT 1 FROM pgmarket.roles WHERE name = $1", 1, {TEXTOID}},

	/* a role registered again takes the new description */
	{&plan_register,
		"INSERT INTO pgmarket.roles AS r (name, description) VALUES ($1, $2)"
		" ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description"
		" WHERE r.description IS DISTINCT FROM EXCLUDED.description",
		2, {TEXTOID, TEXTOID}},

	{&plan_grant,
		"UPDATE pgmarket.accounts SET roles = pg_catalog.array_append(roles, $2)"
		" WHERE id = $1 AND NOT ($2 = ANY (roles))",
		2, {UUIDOID, TEXTOID}},

	{&plan_revoke,
		"UPDATE pgmarket.accounts SET roles = pg_catalog.array_remove(roles, $2)"
		" WHERE id = $1 AND $2 = ANY (roles)",
		2, {UUIDOID, TEXTOID}},

	{&plan_has,
		"SELECT $2 = ANY (roles) FROM pgmarket.accounts WHERE id = $1",
		2, {UUIDOID, TEXTOID}},
};

#define prepare_plans() PGM_PREPARE_PLANS(role_plans)

/* A role name argument: required (22004), 1 to 32 of [a-z0-9_-] (22023). */
static text *
role_name_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	text	   *t;
	const char *p;
	int			len;
	bool		ok;

	pgm_require_arg(fcinfo, argno, argname);
	t = PG_GETARG_TEXT_PP(argno);
	p = VARDATA_ANY(t);
	len = VARSIZE_ANY_EXHDR(t);
	ok = len >= 1 && len <= PGM_MAX_ROLE_LEN;
	for (; ok && len > 0; p++, len--)
		ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			*p == '_' || *p == '-';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" is not a valid role name", argname,
						pgm_shown_value(text_to_cstring(t), 40)),
				 errdetail("A role name is 1 to 32 of the characters a-z, 0-9, underscore and hyphen.")));
	return t;
}

/* With SPI connected: 22023 unless the role is registered in table roles. */
static void
check_registered(text *role)
{
	Datum		values[1] = {PointerGetDatum(role)};

	pgm_exec(plan_registered, values, NULL, true);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("role \"%s\" does not exist", text_to_cstring(role)),
				 errhint("The roles are listed in table pgmarket.roles; add_account_role registers more.")));
}

/*
 * A grant or a revoke: user and role checked, refused with an actor set,
 * then the plan under the user's lock.
 */
static Datum
change_roles(FunctionCallInfo fcinfo, SPIPlanPtr *plan, const char *what)
{
	Datum		values[2];
	text	   *role;

	pgm_require_arg(fcinfo, 0, "user_id");
	pgm_require_arg(fcinfo, 1, "role");
	if (pgm_actor_set())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("account roles cannot be %s while pgmarket.actor is set", what),
				 errdetail("A transaction that acts for a user never changes what a user may do."),
				 errhint("Grant and revoke roles from the back end, without pgmarket.actor.")));
	role = role_name_arg(fcinfo, 1, "role");
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PointerGetDatum(role);

	pgm_spi_connect();
	prepare_plans();
	check_registered(role);
	pgm_lock_user(values[0]);
	pgm_exec(*plan, values, NULL, false);
	pgm_spi_finish();
	PG_RETURN_VOID();
}

/* grant_user_role(user_id, role): the role added, if the user lacks it */
Datum
pgm_grant_user_role(PG_FUNCTION_ARGS)
{
	return change_roles(fcinfo, &plan_grant, "granted");
}

/* revoke_user_role(user_id, role): the role removed, if the user has it */
Datum
pgm_revoke_user_role(PG_FUNCTION_ARGS)
{
	return change_roles(fcinfo, &plan_revoke, "revoked");
}

/* has_role(user_id, role) RETURNS boolean */
Datum
pgm_has_role(PG_FUNCTION_ARGS)
{
	Datum		values[2];
	bool		has;

	values[0] = pgm_user_arg(fcinfo, 0);
	values[1] = PointerGetDatum(role_name_arg(fcinfo, 1, "role"));

	pgm_spi_connect();
	prepare_plans();
	check_registered(DatumGetTextPP(values[1]));
	pgm_check_user(values[0], false);
	pgm_exec(plan_has, values, NULL, true);
	has = SPI_processed == 1 && pgm_col_bool(0, 1);
	pgm_spi_finish();
	PG_RETURN_BOOL(has);
}

/*
 * add_account_role(name, description DEFAULT NULL): registers a role (a
 * NULL description is empty); a role registered already takes the new
 * description.  For pgmarket_admin (the grants say so).
 */
Datum
pgm_add_account_role(PG_FUNCTION_ARGS)
{
	Datum		values[2];
	char	   *description = "";

	values[0] = PointerGetDatum(role_name_arg(fcinfo, 0, "name"));
	if (!PG_ARGISNULL(1))
	{
		description = text_to_cstring(PG_GETARG_TEXT_PP(1));
		if (description[0] != '\0')
			pgm_check_text("description", description, PGM_MAX_ROLE_DESCRIPTION);
	}
	values[1] = CStringGetTextDatum(description);

	pgm_spi_connect();
	prepare_plans();
	pgm_exec(plan_register, values, NULL, false);
	pgm_spi_finish();
	PG_RETURN_VOID();
}
