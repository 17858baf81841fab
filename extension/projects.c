/*-------------------------------------------------------------------------
 *
 * projects.c
 *	  The one C entry point of the agent platform's store (projects,
 *	  templates and change requests).
 *
 * The store itself is plain storage, written in PL/pgSQL in the install
 * script.  What every user-scoped call of pgmarket shares stays here, in C,
 * in one place: user_id is required (22004), it must be the user that
 * pgmarket.actor names when that is set (42501), and the account must exist
 * and be active (PM002).  user_scope() is revoked from every role: only the
 * store's SECURITY DEFINER functions, running as the extension's owner,
 * call it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "pgmarket.h"

PG_FUNCTION_INFO_V1(pgm_user_scope);

/*
 * user_scope(user_id uuid) RETURNS void: raises unless the call may act on
 * user_id's rows.
 */
Datum
pgm_user_scope(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);

	pgm_spi_connect();
	pgm_check_user(user_id, false);
	pgm_spi_finish();
	PG_RETURN_VOID();
}
