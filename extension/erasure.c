/*-------------------------------------------------------------------------
 *
 * erasure.c
 *	  erase_user: the right to be forgotten without breaking the books.
 *
 * In one transaction, under the user's lock (a hot user's escrow slots
 * gathered first, then pgm_queue_for_user, then the account row FOR
 * UPDATE):
 *
 *	 - the account keeps its id, roles and dates; its email becomes
 *	   "<id>@erased.invalid", its username "erased-<id in hex>", its
 *	   password hash NULL, and it is deactivated (deleted_at, the balance
 *	   inactive), so later calls for it are PM002;
 *	 - preferences deleted, rating reviews cleared (the stars stay, in the
 *	   model's ratings), chat messages' content replaced by "[erased]" and
 *	   their tool calls cleared, chat sessions' titles and contexts cleared
 *	   (ids, models, tokens and costs stay);
 *	 - provider keys deleted (the ciphertext goes; key_access_log keeps
 *	   when each was read, never a secret), platform keys revoked and their
 *	   names replaced by "[erased]" (prefix, scopes and spending stay);
 *	 - the rows of other account tables (erase_account_rows);
 *	 - the user's key of personal values destroyed (personal.c): every
 *	   personal value that the audit trail holds of the user, the old email
 *	   and username of the tombstoning above included, becomes unreadable,
 *	   while every sealed byte stays as it was, so verify_audit passes;
 *	 - an ERASE event in the audit trail, with what was erased (counts).
 *
 * The ledger, balances and reservations are not touched: amounts stay and
 * verify_ledger passes.
 *
 * A write for the user that passed its checks before the erasure committed
 * (set_preference, save_chat_message, ... read the account without locking
 * it) may still land after it: its audit values are sealed under the
 * destroyed key or written as "[erased]", but its row stays.  Erasing an
 * erased user again removes such rows (and records an ERASE event marked
 * "again"); with none, it changes nothing and records nothing (the key row
 * says the user is erased).  Deactivate the user first, let the traffic
 * drain, then erase, and no such row appears.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(pgm_erase_user);

/*
 * The per-user rows of the other account tables: one statement each, with
 * SPI connected; adds each count to *counts as "name": N and returns
 * their sum.  A table of the
 * user's personal data added later (external identities, say) is erased
 * here, by one more entry.
 */
typedef struct EraseStep
{
	const char *name;			/* the count's name in the ERASE event */
	const char *sql;			/* $1 is the user id */
	SPIPlanPtr	plan;
	bool		ledger;			/* rewrites the append-only ledger's free text */
} EraseStep;

static EraseStep erase_steps[] = {
	{"preferences",
	"DELETE FROM pgmarket.preferences WHERE user_id = $1", NULL},
	{"rating_reviews",
		"UPDATE pgmarket.ratings SET review = NULL, updated_at = now()"
	" WHERE user_id = $1 AND review IS NOT NULL", NULL},
	{"chat_messages",
		"UPDATE pgmarket.chat_messages SET content = '[erased]', tool_calls = NULL"
	" WHERE user_id = $1 AND (content <> '[erased]' OR tool_calls IS NOT NULL)", NULL},
	{"chat_sessions",
		"UPDATE pgmarket.chat_sessions SET title = NULL, context = NULL,"
		"       end_reason = NULL, agent_id = NULL, updated_at = now()"
		" WHERE user_id = $1 AND (title IS NOT NULL OR context IS NOT NULL"
	"                         OR end_reason IS NOT NULL OR agent_id IS NOT NULL)", NULL},
	{"provider_keys",
	"DELETE FROM pgmarket.provider_keys WHERE user_id = $1", NULL},
	{"platform_keys",
		"UPDATE pgmarket.api_keys SET revoked_at = coalesce(revoked_at, now()),"
		"       name = '[erased]'"
	" WHERE user_id = $1 AND (revoked_at IS NULL OR name <> '[erased]')", NULL},
	{"identities",
	"DELETE FROM pgmarket.identities WHERE user_id = $1", NULL},
	{"password_resets",
	"DELETE FROM pgmarket.password_resets WHERE user_id = $1", NULL},
	/* the agent platform's store: the user's projects and change requests */
	{"modifications",
		"DELETE FROM pgmarket.modifications WHERE user_id = $1 OR project_id IN"
	"       (SELECT id FROM pgmarket.projects WHERE user_id = $1)", NULL},
	{"projects",
	"DELETE FROM pgmarket.projects WHERE user_id = $1", NULL},
	/*
	 * Free text that the application gave with money: an idempotency key or
	 * a note may spell the person's email or name.  The keys become random
	 * ("erased:" and a uuid: still unique, linked to nothing), the notes go;
	 * amounts, kinds, models and times stay.
	 */
	{"reservation_keys",
		"UPDATE pgmarket.reservations"
		"   SET idempotency_key = 'erased:' || gen_random_uuid()"
		" WHERE user_id = $1 AND idempotency_key IS NOT NULL"
	"   AND idempotency_key NOT LIKE 'erased:%'", NULL},
	{"ledger_text",
		"UPDATE pgmarket.ledger"
		"   SET idempotency_key = CASE WHEN idempotency_key IS NULL"
		"                               OR idempotency_key LIKE 'erased:%'"
		"                              THEN idempotency_key"
		"                              ELSE 'erased:' || gen_random_uuid() END,"
		"       note = NULL"
		" WHERE user_id = $1 AND (note IS NOT NULL OR"
		"       (idempotency_key IS NOT NULL AND idempotency_key NOT LIKE 'erased:%'))",
	NULL, true},
	/* the rows of account tables added later go here, one line each */
};

/* One step; the ledger's with pgm_erasing_ledger_text set, and reset whatever happens. */
static void
exec_step(EraseStep *step, Datum user_id)
{
	if (!step->ledger)
	{
		pgm_exec(step->plan, &user_id, NULL, false);
		return;
	}
	pgm_erasing_ledger_text = true;
	PG_TRY();
	{
		pgm_exec(step->plan, &user_id, NULL, false);
	}
	PG_FINALLY();
	{
		pgm_erasing_ledger_text = false;
	}
	PG_END_TRY();
}

static uint64
erase_account_rows(Datum user_id, StringInfo counts)
{
	Oid			types[1] = {UUIDOID};
	int			i;
	uint64		total = 0;

	for (i = 0; i < lengthof(erase_steps); i++)
	{
		EraseStep  *step = &erase_steps[i];

		if (step->plan == NULL)
			step->plan = pgm_prepare(step->sql, 1, types);
		exec_step(step, user_id);
		appendStringInfo(counts, ", \"%s\": " UINT64_FORMAT,
						 step->name, (uint64) SPI_processed);
		total += SPI_processed;
	}
	return total;
}

static SPIPlanPtr plan_find;
static SPIPlanPtr plan_tomb;
static SPIPlanPtr plan_holder;

static const PgmPlanDef erase_plans[] = {
	{&plan_find,
		"SELECT 1 FROM pgmarket.accounts WHERE id = $1 FOR UPDATE",
		1, {UUIDOID}},

	/* $2 and $3: the tombstone email and username */
	{&plan_tomb,
		"WITH b AS ("
		"  UPDATE pgmarket.balances SET active = false, updated_at = now()"
		"   WHERE user_id = $1 AND active RETURNING user_id)"
		"UPDATE pgmarket.accounts"
		"   SET email = $2, username = $3, password_hash = NULL,"
		"       deleted_at = coalesce(deleted_at, now())"
		" WHERE id = $1",
		3, {UUIDOID, TEXTOID, TEXTOID}},

	/* another account that holds the tombstone email or username */
	{&plan_holder,
		"SELECT id FROM pgmarket.accounts"
		" WHERE id <> $1 AND (email = $2 OR lower(username) = lower($3))"
		" LIMIT 1",
		3, {UUIDOID, TEXTOID, TEXTOID}},
};

/*
 * erase_user(user_id uuid) RETURNS void, for pgmarket_admin.  22004 for a
 * NULL, PM002 for an unknown user (a deactivated one is erased all the
 * same); an erased user again: nothing to do.  55000, naming the holder,
 * when another account holds the tombstone email or username (possible
 * only for an account older than the rule that reserves those shapes).
 */
Datum
pgm_erase_user(PG_FUNCTION_ARGS)
{
	Datum		user_id;
	char	   *id;
	char	   *hex;
	char	   *p;
	Datum		values[3];
	StringInfoData counts;

	user_id = pgm_user_arg(fcinfo, 0);
	id = pgm_uuid_cstring(user_id);

	pgm_spi_connect();
	PGM_PREPARE_PLANS(erase_plans);
	/*
	 * A hot user's charges from escrow slots do not wait for the balance
	 * row: wait for the ones in flight first, so that none commits after
	 * the erasure with an idempotency key or a note that the erasure did
	 * not see.
	 */
	pgm_escrow_lock_account(user_id, plan_find);
	initStringInfo(&counts);
	appendStringInfo(&counts, "{\"user_id\": \"%s\"", id);

	/*
	 * Erased before: only rows that a write racing that erasure left
	 * (it passed its checks before the erasure committed) are left to go;
	 * with none, nothing changes and nothing is recorded.
	 */
	if (pgm_personal_erased(user_id))
	{
		if (erase_account_rows(user_id, &counts) > 0)
		{
			appendStringInfoString(&counts, ", \"again\": true}");
			pgm_audit_record_event("pgmarket.accounts", "ERASE",
								   DirectFunctionCall1(jsonb_in,
													   CStringGetDatum(counts.data)));
		}
		pgm_spi_finish();
		PG_RETURN_VOID();
	}

	hex = pstrdup(id);
	for (p = hex; *p; p++)
		if (*p == '-')
			memmove(p, p + 1, strlen(p));
	values[0] = user_id;
	values[1] = CStringGetTextDatum(psprintf("%s@erased.invalid", id));
	values[2] = CStringGetTextDatum(psprintf("erased-%s", hex));
	/*
	 * No other call writes a tombstone shape (pgm_check_not_tombstone), but
	 * an account from before that rule may hold one: say so, by name,
	 * rather than meet the unique index.
	 */
	pgm_exec(plan_holder, values, NULL, false);
	if (SPI_processed == 1)
	{
		bool		isnull;

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("user %s cannot be erased: user %s holds its tombstone email or username",
						id, pgm_uuid_cstring(pgm_col(0, 1, &isnull))),
				 errhint("Give user %s another email and username (update_user), then erase again.",
						 pgm_uuid_cstring(pgm_col(0, 1, &isnull)))));
	}
	pgm_exec(plan_tomb, values, NULL, false);
	pgm_escrow_reclaim(user_id);	/* the slots' money back into the row */
	pgm_api_keys_follow_user(user_id);

	erase_account_rows(user_id, &counts);
	appendStringInfoChar(&counts, '}');

	/* last: the tombstoning above sealed the old values under the key */
	pgm_personal_destroy(user_id);
	pgm_audit_record_event("pgmarket.accounts", "ERASE",
						   DirectFunctionCall1(jsonb_in,
											   CStringGetDatum(counts.data)));
	pgm_spi_finish();
	PG_RETURN_VOID();
}
