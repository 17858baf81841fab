/*-------------------------------------------------------------------------
 *
 * identities.c
 *	  External identities for single sign-on (Azure AD, Google, GitHub,
 *	  ...): link_identity, unlink_identity, user_by_identity.
 *
 * An identity is a (provider, subject) pair: the provider's name,
 * lower-cased, 1 to 64 of [a-z0-9_.-] (as provider keys name theirs), and
 * the subject the provider gives the person (OpenID Connect's "sub", an
 * Azure AD object id), 1 to 255 characters without control characters,
 * kept exactly as given (subjects are case-sensitive).  One user per
 * (provider, subject), and one subject per user and provider: linking a
 * taken identity, or a second subject of one provider, is 23505 (with
 * pgmarket.actor set, a taken identity is 42501 and names nobody).
 *
 * user_by_identity answers NULL for an unknown identity and for a
 * deactivated user (a login through the provider must not revive one),
 * and, with pgmarket.actor set, for another user's identity.
 *
 * Concurrency rules
 * -----------------
 * link_identity takes the user's lock (userlock.c) before it looks and
 * inserts, so two links for one user serialize; two users linking one
 * identity at once meet the primary key, and the second gets 23505 from
 * it.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(pgm_link_identity);
PG_FUNCTION_INFO_V1(pgm_unlink_identity);
PG_FUNCTION_INFO_V1(pgm_user_by_identity);

#define PGM_MAX_IDP_LEN			64
#define PGM_MAX_SUBJECT_LEN		255

static SPIPlanPtr plan_find;
static SPIPlanPtr plan_link;
static SPIPlanPtr plan_unlink;
static SPIPlanPtr plan_owner;

static const PgmPlanDef identity_plans[] = {
	/* the identity itself, or the user's identity of that provider */
	{&plan_find,
		"SELECT user_id = $1, subject = $3 FROM pgmarket.identities"
		" WHERE (provider = $2 AND subject = $3)"
		"    OR (user_id = $1 AND provider = $2)"
		" ORDER BY subject = $3 DESC LIMIT 1",
		3, {UUIDOID, TEXTOID, TEXTOID}},

	{&plan_link,
		"INSERT INTO pgmarket.identities (user_id, provider, subject)"
		" VALUES ($1, $2, $3)",
		3, {UUIDOID, TEXTOID, TEXTOID}},

	{&plan_unlink,
		"DELETE FROM pgmarket.identities WHERE user_id = $1 AND provider = $2",
		2, {UUIDOID, TEXTOID}},

	{&plan_owner,
		"SELECT i.user_id FROM pgmarket.identities i"
		"  JOIN pgmarket.balances b ON b.user_id = i.user_id AND b.active"
		" WHERE i.provider = $1 AND i.subject = $2",
		2, {TEXTOID, TEXTOID}},
};

/* An identity provider's name, lower-cased: 1 to 64 of [a-z0-9_.-]. */
static text *
provider_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *given;
	char	   *s;
	char	   *p;
	bool		ok;

	pgm_require_arg(fcinfo, argno, "provider");
	given = PG_GETARG_TEXT_PP(argno);
	ok = VARSIZE_ANY_EXHDR(given) >= 1 &&
		VARSIZE_ANY_EXHDR(given) <= PGM_MAX_IDP_LEN;
	s = ok ? text_to_cstring(given) : "";
	for (p = s; ok && *p; p++)
	{
		if (*p >= 'A' && *p <= 'Z')
			*p += 'a' - 'A';
		ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			*p == '_' || *p == '.' || *p == '-';
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("provider name \"%s\" is not valid",
						pgm_shown_value(text_to_cstring(given), 40)),
				 errdetail("A provider name is 1 to 64 of the characters a-z, 0-9, underscore, dot and hyphen.")));
	return cstring_to_text(s);
}

/* A subject: 1 to 255 characters, no control characters (22023). */
static text *
subject_arg(FunctionCallInfo fcinfo, int argno)
{
	pgm_require_arg(fcinfo, argno, "subject");
	if (VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(argno)) > 4 * PGM_MAX_SUBJECT_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subject is longer than %d characters", PGM_MAX_SUBJECT_LEN)));
	return pgm_optional_text(fcinfo, argno, "subject", PGM_MAX_SUBJECT_LEN);
}

/*
 * link_identity(user_id, provider, subject): the identity is the user's
 * from now on; the same link again changes nothing.  23505 when the
 * identity is another user's or the user has another subject of that
 * provider (with pgmarket.actor set, another user's identity is 42501,
 * naming nobody); PM002 for an unknown or deactivated user.
 */
Datum
pgm_link_identity(PG_FUNCTION_ARGS)
{
	Datum		values[3];
	bool		isnull;

	values[0] = pgm_user_arg(fcinfo, 0);
	values[1] = PointerGetDatum(provider_arg(fcinfo, 1));
	values[2] = PointerGetDatum(subject_arg(fcinfo, 2));

	PGM_USER_BEGIN(values[0], identity_plans, true);
	pgm_exec(plan_find, values, NULL, false);
	if (SPI_processed == 1)
	{
		bool		same_user = DatumGetBool(pgm_col(0, 1, &isnull));
		bool		same_subject = DatumGetBool(pgm_col(0, 2, &isnull));

		if (same_user && same_subject)
		{
			pgm_spi_finish();
			PG_RETURN_VOID();
		}
		/*
		 * With an actor set, whose the identity is stays hidden, as
		 * user_by_identity hides it: the refusal is the actor rule's 42501
		 * and names nobody.  That a taken identity cannot be linked is
		 * told by necessity (a free one links), as an email taken is.
		 */
		if (same_subject && pgm_actor_set())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("this %s identity cannot be linked while pgmarket.actor is set",
							TextDatumGetCString(values[1])),
					 errhint("Link it from the back end, without pgmarket.actor, to learn why.")));
		if (same_subject)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("this %s identity is already linked to another user",
							TextDatumGetCString(values[1])),
					 errdetail("An identity belongs to one user.")));
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("user %s already has a %s identity",
						pgm_uuid_cstring(values[0]), TextDatumGetCString(values[1])),
				 errhint("Unlink it first (unlink_identity).")));
	}
	pgm_exec(plan_link, values, NULL, false);
	pgm_spi_finish();
	PG_RETURN_VOID();
}

/*
 * unlink_identity(user_id, provider) RETURNS boolean: true when the user
 * had an identity of that provider, which is gone.
 */
Datum
pgm_unlink_identity(PG_FUNCTION_ARGS)
{
	Datum		values[2];

	values[0] = pgm_user_arg(fcinfo, 0);
	values[1] = PointerGetDatum(provider_arg(fcinfo, 1));
	PG_RETURN_BOOL(pgm_user_exec(identity_plans, lengthof(identity_plans),
								 &plan_unlink, values, NULL) == 1);
}

/*
 * user_by_identity(provider, subject) RETURNS uuid: the active user the
 * identity is linked to, else NULL (see the header for the actor).
 */
Datum
pgm_user_by_identity(PG_FUNCTION_ARGS)
{
	Datum		values[2];
	pg_uuid_t  *user;

	values[0] = PointerGetDatum(provider_arg(fcinfo, 0));
	values[1] = PointerGetDatum(subject_arg(fcinfo, 1));

	pgm_spi_connect();
	PGM_PREPARE_PLANS(identity_plans);
	pgm_exec(plan_owner, values, NULL, true);
	user = pgm_one_uuid(1);
	pgm_spi_finish();
	return pgm_owner_result(fcinfo, user);
}
