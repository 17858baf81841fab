/*-------------------------------------------------------------------------
 *
 * actor.c
 *	  Floor: the pgmarket.actor rule, which every user-scoped call keeps,
 *	  and its forwarding through the PL/Proxy front (proxy_actor).
 *
 * The actor rule
 * --------------
 * These functions run as the extension's owner, so row-level security does
 * not filter what they do.  Instead, when pgmarket.actor is set (not
 * empty), user_id must be that user (the canonical text of the uuid, any
 * case), else 42501: a connection acting for one user cannot reach another
 * user's rows through the API either.  pgm_check_actor() is exported for
 * the other C files.
 *
 * Behind the PL/Proxy front (proxy/), the actor of the proxy's session
 * travels with each call: the remote query wraps the first argument of the
 * API function in proxy_actor(actor, value), which sets pgmarket.actor for
 * the node's transaction (SET LOCAL; PL/Proxy runs each remote query as a
 * transaction of its own) and returns value unchanged.  An argument is
 * evaluated before the function it is passed to is called, so the API
 * function always runs under the forwarded actor.  The node takes a
 * forwarded actor only from the role named by pgmarket.proxy_role or a
 * member of it; from any other role, or with the setting empty, it is
 * refused (42501), never ignored.  An empty actor forwards nothing: the
 * call runs as the caller's own connection would, which for pgmarket_app
 * means the trusted back end.
 *
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <ctype.h>

#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"

PG_FUNCTION_INFO_V1(pgm_current_actor);
PG_FUNCTION_INFO_V1(pgm_proxy_actor);

/* pgmarket.actor: the application-level user the transaction acts for */
char	   *pgm_actor = NULL;

/* pgmarket.proxy_role: the role whose forwarded actor this node takes */
static char *pgm_proxy_role = NULL;

/*
 * Define pgmarket.actor and pgmarket.proxy_role; called from _PG_init before
 * the prefix is reserved.
 */
void
pgm_actor_init(void)
{
	DefineCustomStringVariable("pgmarket.actor",
							   "The application-level user on whose behalf the transaction acts.",
							   "Usually set with SET LOCAL by the trusted back end.",
							   &pgm_actor,
							   NULL,
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pgmarket.proxy_role",
							   "The role from which this node takes a pgmarket.actor forwarded by a PL/Proxy front.",
							   "Members of the role may forward one too; when empty, no role may.",
							   &pgm_proxy_role,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
}

/*
 * Parse pgmarket.actor: false when it is not the text of a uuid (8-4-4-4-12
 * hexadecimal digits, any case).  Checked before uuid_in, which would
 * raise an error, and accepts other spellings besides.
 */
static bool
parse_actor(const char *s, pg_uuid_t *out)
{
	int			i;

	if (strlen(s) != 36)
		return false;
	for (i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	memcpy(out, DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(s))),
		   sizeof(pg_uuid_t));
	return true;
}

/*
 * The actor rule: when pgmarket.actor is set, user_id must be the actor's.
 * Raises 42501 naming both, and nothing else of the user.
 */
/* Does the transaction act for a user (pgmarket.actor set, not empty)? */
bool
pgm_actor_set(void)
{
	return pgm_actor != NULL && pgm_actor[0] != '\0';
}

/* May this transaction act for user?  pgm_check_actor without the error. */
bool
pgm_actor_allows(const pg_uuid_t *user)
{
	pg_uuid_t	actor;

	if (!pgm_actor_set())
		return true;
	return parse_actor(pgm_actor, &actor) &&
		memcmp(actor.data, user->data, UUID_LEN) == 0;
}

/*
 * The answer of a call that says whose a row is (user_by_identity,
 * chat_session_owner): the owner, or NULL when there is none or when
 * pgmarket.actor names another user, so that a connection acting for one
 * user learns nothing of the others' rows.
 */
Datum
pgm_owner_result(FunctionCallInfo fcinfo, pg_uuid_t *owner)
{
	if (owner == NULL || !pgm_actor_allows(owner))
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(owner);
}

void
pgm_check_actor(Datum user_id)
{
	if (pgm_actor_allows(DatumGetUUIDP(user_id)))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("pgmarket.actor \"%s\" may not act for user %s",
					pgm_actor, pgm_uuid_cstring(user_id)),
			 errdetail("A transaction that acts for a user touches only that user's rows.")));
}

/* current_actor(): the actor's uuid, or NULL (unset, empty, not a uuid). */
Datum
pgm_current_actor(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *actor;

	if (!pgm_actor_set())
		PG_RETURN_NULL();
	actor = palloc(sizeof(pg_uuid_t));
	if (!parse_actor(pgm_actor, actor))
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(actor);
}

/*
 * May the current role forward an actor to this node?  Only the role that
 * pgmarket.proxy_role names, or a role that is a member of it (a superuser
 * is a member of every role); with the setting empty, no role.  Raises 42501
 * naming the role and the actor otherwise.
 */
static void
check_forwarding_role(const char *actor)
{
	Oid			caller = GetUserId();
	Oid			proxy;

	if (pgm_proxy_role == NULL || pgm_proxy_role[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not forward pgmarket.actor \"%s\"",
						GetUserNameFromId(caller, false), actor),
				 errdetail("pgmarket.proxy_role is not set, so this node takes a forwarded actor from no role.")));

	proxy = get_role_oid(pgm_proxy_role, true);
	if (!OidIsValid(proxy) || !is_member_of_role(caller, proxy))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not forward pgmarket.actor \"%s\"",
						GetUserNameFromId(caller, false), actor),
				 errdetail("This node takes a forwarded actor only from role \"%s\" (pgmarket.proxy_role) and its members.",
						   pgm_proxy_role)));
}

/*
 * proxy_actor(actor text, value anyelement) RETURNS anyelement: the node's
 * side of the actor that the PL/Proxy front forwards (see "The actor rule"
 * above).  A non-empty actor is checked against pgmarket.proxy_role and set
 * as pgmarket.actor for the rest of the transaction; NULL or empty sets
 * nothing.  Returns value as it came, NULL included, so that it can wrap an
 * argument of the call it must precede.
 *
 * Not SECURITY DEFINER and without a SET clause: the role checked is the
 * caller's, and a SET clause would undo the setting when this returns.
 */
Datum
pgm_proxy_actor(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
	{
		char	   *actor = text_to_cstring(PG_GETARG_TEXT_PP(0));

		if (actor[0] != '\0')
		{
			check_forwarding_role(actor);
			(void) set_config_option("pgmarket.actor", actor,
									 PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_LOCAL, true, 0, false);
		}
	}
	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(PG_GETARG_DATUM(1));
}

/*
 * The user_id argument of a user-scoped function: required (22004), and the
 * user the transaction acts for when pgmarket.actor is set (42501).
 */
Datum
pgm_user_arg(FunctionCallInfo fcinfo, int argno)
{
	pgm_require_arg(fcinfo, argno, "user_id");
	pgm_check_actor(PG_GETARG_DATUM(argno));
	return PG_GETARG_DATUM(argno);
}
