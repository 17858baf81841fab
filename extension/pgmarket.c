/*-------------------------------------------------------------------------
 *
 * pgmarket.c
 *	  Module entry point and the helpers every pgmarket C file uses:
 *	  argument checks, SPI plan preparation, the append-only trigger.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sodium.h>

#include "commands/trigger.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/rel.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(pgm_forbid_change);

void		_PG_init(void);

/* pgmarket.actor: the application-level user the transaction acts for */
char	   *pgm_actor = NULL;

/* pgmarket.proxy_role: the role whose forwarded actor this node takes */
char	   *pgm_proxy_role = NULL;

/* pgmarket.audit_internal: enable_audit or disable_audit is at work */
static bool pgm_audit_internal = false;

/*
 * Module load: libsodium must be initialised once per process before any of
 * its functions is used (it picks implementations and seeds its RNG).  Then
 * the settings; the prefix is reserved last, so that values already set in
 * the configuration for the settings defined here are kept.
 */
void
_PG_init(void)
{
	if (sodium_init() < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("pgmarket could not initialise libsodium")));

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
	DefineCustomBoolVariable("pgmarket.audit_internal",
							 "Set by enable_audit and disable_audit while they change a table's audit triggers.",
							 "The DDL event trigger records other changes of those triggers; only a superuser (the functions' owner) may set this.",
							 &pgm_audit_internal,
							 false,
							 PGC_SUSET,
							 GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
	pgm_vault_init();
	pgm_sealed_init();
	MarkGUCPrefixReserved("pgmarket");
}

PG_FUNCTION_INFO_V1(pgm_audit_internal_active);

/*
 * audit_internal_active() RETURNS boolean: is enable_audit or disable_audit
 * changing a table's audit triggers?  The DDL event trigger asks this C
 * flag, which only the defined (superuser-only) setting moves: calling it
 * loads the library first, which discards a placeholder value that a
 * non-superuser may have set before.  Internal: granted to nobody.
 */
Datum
pgm_audit_internal_active(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pgm_audit_internal);
}

/*
 * A required argument must not be NULL: raise 22004 naming it.  Functions are
 * not STRICT, so that a NULL is an error rather than a silent NULL result.
 */
void
pgm_require_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
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

/*
 * Is a short identifier-like text acceptable: not empty, at most maxlen
 * characters, no control characters?
 */
bool
pgm_text_ok(const char *value, int maxlen)
{
	const char *p;
	int			len = pg_mbstrlen(value);

	if (len == 0 || len > maxlen)
		return false;
	for (p = value; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/*
 * A value as an error message may show it: at most maxchars characters, cut
 * on a character boundary (never half of a multibyte character), "..."
 * after a cut, and every control character shown as "?", so that a value
 * cannot forge a line of the server log.
 */
char *
pgm_shown_value(const char *value, int maxchars)
{
	int			len = strlen(value);
	int			cut = pg_mbcharcliplen(value, len, maxchars);
	char	   *out = palloc(cut + 4);
	int			i;

	for (i = 0; i < cut; i++)
		out[i] = ((unsigned char) value[i] < 0x20 || value[i] == 0x7f) ? '?' : value[i];
	if (cut < len)
		memcpy(out + cut, "...", 3), cut += 3;
	out[cut] = '\0';
	return out;
}

/* The same check, raising 22023 with a message that says what is wrong. */
void
pgm_check_text(const char *argname, const char *value, int maxlen)
{
	if (pgm_text_ok(value, maxlen))
		return;
	if (*value == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname)));
	if (pg_mbstrlen(value) > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" is longer than %d characters",
						argname, pgm_shown_value(value, 40), maxlen)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s \"%s\" contains a control character",
					argname, pgm_shown_value(value, 80))));
}

/* An optional text argument (NULL allowed), checked when present. */
text *
pgm_optional_text(FunctionCallInfo fcinfo, int argno, const char *argname,
				  int maxlen)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		return NULL;
	t = PG_GETARG_TEXT_PP(argno);
	pgm_check_text(argname, text_to_cstring(t), maxlen);
	return t;
}

void
pgm_spi_connect(void)
{
	int			rc = SPI_connect();

	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(rc));
}

/*
 * Prepare a statement once per backend and keep its plan.  The plan cache
 * revalidates it when a table it uses changes, so a cached plan survives
 * DROP and CREATE EXTENSION in the same session.
 */
SPIPlanPtr
pgm_prepare(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

/* Run a kept plan; any SPI failure is an internal error. */
int
pgm_exec(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return rc;
}

/* A column of a row of the last SPI result (valid until the next query). */
Datum
pgm_col(uint64 row, int colno, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 colno, isnull);
}

/*
 * Copy every row of the last SPI result into a materialized set-returning
 * function's result, turning the columns flagged in money_columns (bit n for
 * the n-th column, from 0) from bigint micro-credits into numeric credits.
 */
void
pgm_put_rows(ReturnSetInfo *rsinfo, uint32 money_columns)
{
	int			ncols = rsinfo->setDesc->natts;
	Datum	   *values = palloc(sizeof(Datum) * ncols);
	bool	   *nulls = palloc(sizeof(bool) * ncols);
	uint64		i;
	int			c;

	for (i = 0; i < SPI_processed; i++)
	{
		for (c = 0; c < ncols; c++)
		{
			values[c] = pgm_col(i, c + 1, &nulls[c]);
			if ((money_columns & (1U << c)) && !nulls[c])
				values[c] = pgm_micro_to_numeric(DatumGetInt64(values[c]));
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * Trigger that makes a table append-only: any UPDATE, DELETE or TRUNCATE
 * raises 55000, whoever runs it (the owner too; only a superuser who disables
 * the trigger can get past it, and that is what sealing is for).
 */
Datum
pgm_forbid_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "forbid_change must be called as a trigger");

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		op = "TRUNCATE";
	else
		op = "INSERT";

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("table %s is append-only: %s is not allowed",
					RelationGetRelationName(trigdata->tg_relation), op),
			 errdetail("Entries are never updated or deleted."),
			 errhint("Record a correction as a new entry.")));
	PG_RETURN_NULL();
}
