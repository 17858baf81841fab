/*-------------------------------------------------------------------------
 *
 * profiles.c
 *	  An account's own fields, read and changed: get_user,
 *	  get_user_by_email, get_user_by_username, update_last_login,
 *	  update_user, reactivate_user.
 *
 * The lookups return rows of the view users (never the password hash), a
 * deactivated user included, with is_active false; no row when nobody
 * matches.  An email is matched in the one spelling emails.c gives it (so
 * ' Alice@Example.COM' finds alice@example.com, and the NFD spelling of an
 * address finds its NFC one), a username trimmed and without regard to
 * case; a value that cannot be an email or a username is 22023, as
 * create_user would answer it.  With pgmarket.actor set, get_user refuses
 * another user (42501) and the lookups by email and username answer no
 * row for one: a connection acting for one user learns nothing of others.
 *
 * Concurrency rules
 * -----------------
 * update_user and reactivate_user take the user's lock first (userlock.c:
 * the queue, then the balance row), then change the account row, so they
 * serialize with deactivate_user and with the role grants (roles.c), which
 * take the same locks in the same order.  A taken email or username is
 * checked under that lock; two users claiming one name at once meet the
 * unique index, and the second gets 23505 from it.  update_last_login is
 * one UPDATE of the account row, which READ COMMITTED re-checks against a
 * deactivation that commits first.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pgm_get_user);
PG_FUNCTION_INFO_V1(pgm_get_user_by_email);
PG_FUNCTION_INFO_V1(pgm_get_user_by_username);
PG_FUNCTION_INFO_V1(pgm_update_last_login);
PG_FUNCTION_INFO_V1(pgm_update_user);
PG_FUNCTION_INFO_V1(pgm_reactivate_user);

/* A username given to a lookup, before trimming */
#define PGM_MAX_LOOKUP_INPUT	1024

static SPIPlanPtr plan_by_id;
static SPIPlanPtr plan_by_email;
static SPIPlanPtr plan_by_username;
static SPIPlanPtr plan_stamp;
static SPIPlanPtr plan_taken;
static SPIPlanPtr plan_update;
static SPIPlanPtr plan_email_changes;
static SPIPlanPtr plan_reactivate;

static const PgmPlanDef profile_plans[] = {
	{&plan_by_id,
		"SELECT u.* FROM pgmarket.users u WHERE u.id = $1", 1, {UUIDOID}},

	{&plan_by_email,
		"SELECT u.* FROM pgmarket.users u WHERE u.email = $1", 1, {TEXTOID}},

	{&plan_by_username,
		"SELECT u.* FROM pgmarket.users u"
		" WHERE pg_catalog.lower(u.username) = pg_catalog.lower($1)",
		1, {TEXTOID}},

	{&plan_stamp,
		"UPDATE pgmarket.accounts SET last_login_at = now()"
		" WHERE id = $1 AND deleted_at IS NULL RETURNING last_login_at",
		1, {UUIDOID}},

	/* is the email or the username another user's? */
	{&plan_taken,
		"SELECT email = $2, lower(username) = lower($3)"
		"  FROM pgmarket.accounts"
		" WHERE id <> $1 AND (email = $2 OR lower(username) = lower($3))"
		" LIMIT 1",
		3, {UUIDOID, TEXTOID, TEXTOID}},

	{&plan_update,
		"UPDATE pgmarket.accounts"
		"   SET email = coalesce($2, email), username = coalesce($3, username)"
		" WHERE id = $1 AND (email IS DISTINCT FROM coalesce($2, email)"
		"       OR username IS DISTINCT FROM coalesce($3, username))",
		3, {UUIDOID, TEXTOID, TEXTOID}},

	/* does update_user's email differ from the stored one? */
	{&plan_email_changes,
		"SELECT 1 FROM pgmarket.accounts"
		" WHERE id = $1 AND email IS DISTINCT FROM $2",
		3, {UUIDOID, TEXTOID, TEXTOID}},
	/* both rows of a deactivated user, as deactivate_user set them */
	{&plan_reactivate,
		"WITH b AS ("
		"  UPDATE pgmarket.balances SET active = true, updated_at = now()"
		"   WHERE user_id = $1 AND NOT active RETURNING user_id)"
		"UPDATE pgmarket.accounts a SET deleted_at = NULL"
		"  FROM b WHERE a.id = b.user_id",
		1, {UUIDOID}},
};

#define prepare_plans() PGM_PREPARE_PLANS(profile_plans)

/*
 * A materialized lookup: the rows of users that a plan finds for one value,
 * less those of users other than pgmarket.actor when it is set.
 */
static Datum
lookup_rows(FunctionCallInfo fcinfo, SPIPlanPtr *plan, Datum value)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			ncols;
	Datum	   *values;
	bool	   *nulls;
	uint64		i;
	int			c;

	InitMaterializedSRF(fcinfo, 0);
	ncols = rsinfo->setDesc->natts;
	values = palloc(sizeof(Datum) * ncols);
	nulls = palloc(sizeof(bool) * ncols);

	pgm_spi_connect();
	prepare_plans();
	pgm_exec(*plan, &value, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		id = pgm_col(i, 1, &isnull);

		if (isnull || !pgm_actor_allows(DatumGetUUIDP(id)))
			continue;
		for (c = 0; c < ncols; c++)
			values[c] = pgm_col(i, c + 1, &nulls[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pgm_spi_finish();
	return (Datum) 0;
}

/* get_user(user_id) RETURNS SETOF users */
Datum
pgm_get_user(PG_FUNCTION_ARGS)
{
	return lookup_rows(fcinfo, &plan_by_id, pgm_user_arg(fcinfo, 0));
}

/* get_user_by_email(email) RETURNS SETOF users: the email as stored */
Datum
pgm_get_user_by_email(PG_FUNCTION_ARGS)
{
	char	   *email;

	pgm_require_arg(fcinfo, 0, "email");
	email = pgm_normalize_email(PG_GETARG_TEXT_PP(0));
	return lookup_rows(fcinfo, &plan_by_email, CStringGetTextDatum(email));
}

/*
 * get_user_by_username(username) RETURNS SETOF users: trimmed of ASCII
 * blanks, then a valid username (22023), compared without regard to case.
 */
Datum
pgm_get_user_by_username(PG_FUNCTION_ARGS)
{
	text	   *raw;
	const char *start;
	const char *end;
	char	   *username;

	pgm_require_arg(fcinfo, 0, "username");
	raw = PG_GETARG_TEXT_PP(0);
	if (VARSIZE_ANY_EXHDR(raw) > PGM_MAX_LOOKUP_INPUT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("username of %zu bytes is longer than 64 characters",
						(size_t) VARSIZE_ANY_EXHDR(raw))));
	start = VARDATA_ANY(raw);
	end = start + VARSIZE_ANY_EXHDR(raw);
	while (start < end && (*start == ' ' || *start == '\t' ||
						   *start == '\n' || *start == '\r'))
		start++;
	while (end > start && (end[-1] == ' ' || end[-1] == '\t' ||
						   end[-1] == '\n' || end[-1] == '\r'))
		end--;
	username = pnstrdup(start, end - start);

	/*
	 * Checked as it may be shown in the message: control characters become
	 * "?" and a long value is cut past 80 characters, neither of which a
	 * valid username holds, so the answer is the same.
	 */
	pgm_check_username(pgm_shown_value(username, 80));
	return lookup_rows(fcinfo, &plan_by_username, CStringGetTextDatum(username));
}

/*
 * update_last_login(user_id) RETURNS timestamptz: stamps last_login_at
 * with the transaction's time and returns it; PM002 for an unknown or
 * deactivated user.
 */
Datum
pgm_update_last_login(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	TimestampTz at;
	bool		isnull;

	pgm_spi_connect();
	prepare_plans();
	pgm_exec(plan_stamp, &user_id, NULL, false);
	if (SPI_processed != 1)
		pgm_raise_unknown_account(user_id);
	at = DatumGetTimestampTz(pgm_col(0, 1, &isnull));
	pgm_spi_finish();
	PG_RETURN_TIMESTAMPTZ(at);
}

/*
 * update_user's change, under the user's lock: the new email and/or
 * username (NULL: the current one stays), refused (23505) when another
 * user has it.
 */
static void
rename_account(Datum user_id, const char *email, const char *username)
{
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		isnull;

	values[0] = user_id;
	pgm_bind_cstring(values, nulls, 1, email);
	pgm_bind_cstring(values, nulls, 2, username);
	pgm_exec(plan_taken, values, nulls, false);
	if (SPI_processed == 1)
	{
		bool		email_taken = DatumGetBool(pgm_col(0, 1, &isnull));

		pgm_raise_account_taken(email_taken && !isnull, email, username);
	}
	/* a new recovery address: tokens mailed to the old one die */
	if (email != NULL)
	{
		pgm_exec(plan_email_changes, values, nulls, false);
		if (SPI_processed == 1)
			pgm_use_up_resets(user_id);
	}
	pgm_exec(plan_update, values, nulls, false);
}

/*
 * update_user(user_id, email DEFAULT NULL, username DEFAULT NULL): a new
 * email and/or username, checked as create_user checks them (22023) and
 * free (23505), not a tombstone shape (22023); NULL keeps the current
 * one.  A new email uses up the user's open reset tokens.  PM002 for an unknown or
 * deactivated user, also when nothing is to change.
 */
Datum
pgm_update_user(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	char	   *email = NULL;
	char	   *username = NULL;

	if (!PG_ARGISNULL(1))
		email = pgm_normalize_email(PG_GETARG_TEXT_PP(1));
	if (!PG_ARGISNULL(2))
	{
		username = text_to_cstring(PG_GETARG_TEXT_PP(2));
		pgm_check_username(username);
	}
	pgm_check_not_tombstone(email, username);

	PGM_USER_BEGIN(user_id, profile_plans, true);	/* PM002 in any case */
	if (email != NULL || username != NULL)
		rename_account(user_id, email, username);
	pgm_spi_finish();
	PG_RETURN_VOID();
}

/*
 * reactivate_user(user_id): undoes deactivate_user (the balance row active
 * again, deleted_at cleared).  A user who is active already is left as it
 * is; PM002 for an unknown user; 55000 for an erased one (erase_user left a
 * tombstone, which must not sign in again).  42501 with pgmarket.actor
 * set: a deactivation is undone by the back end, never by the user.  The
 * user's open reset tokens are used up.
 */
Datum
pgm_reactivate_user(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	PgmAccountState state;

	if (pgm_actor_set())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a user cannot be reactivated while pgmarket.actor is set"),
				 errdetail("A transaction that acts for a user never undoes a deactivation."),
				 errhint("Reactivate users from the back end, without pgmarket.actor.")));
	pgm_spi_connect();
	prepare_plans();
	pgm_queue_for_user(user_id);
	if (pgm_personal_erased(user_id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("user %s was erased and cannot be reactivated",
						pgm_uuid_cstring(user_id))));
	pgm_exec(plan_reactivate, &user_id, NULL, false);
	if (SPI_processed != 1)
		pgm_account_state(user_id, &state);	/* PM002 unless already active */
	else
	{
		pgm_api_keys_follow_user(user_id);
		pgm_use_up_resets(user_id);	/* none from before the lock survives */
	}
	pgm_spi_finish();
	PG_RETURN_VOID();
}
