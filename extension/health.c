/*-------------------------------------------------------------------------
 *
 * health.c
 *	  health(): one cheap call that a load balancer or an operator polls.
 *
 *	  {"ok": bool, "version": text,
 *	   "vault": {"configured", "loaded", "versions", "newest"},
 *	   "audit": {"unsealed", "oldest_unsealed_age_s"},
 *	   "holds": {"live", "expired_unswept"},
 *	   "connections": {"used", "max"},
 *	   "logs_bind_parameters": bool, "problems": [text]}
 *
 * ok is false when the vault is configured (pgmarket.master_key_file set)
 * but no key can be loaded, or when client connections are at 95% of
 * max_connections; problems says why, one text each.  Everything else is
 * information.  The call reads a handful of index ranges (the audit rows
 * after the last seal, the held reservations) and the server's activity
 * array; it writes nothing.
 *
 * logs_bind_parameters
 * --------------------
 * Whether the current settings write a pgmarket call's bind parameters to
 * the server log, as PostgreSQL 15 decides it (src/backend/tcop/postgres.c):
 *
 *	- log_statement = all: each execute is logged with "DETAIL: parameters:
 *	  $1 = ...".  ddl and mod never log a SELECT, which is how every
 *	  pgmarket call is made, so they do not count;
 *	- log_min_duration_statement >= 0: each call that takes at least that
 *	  long is logged with its parameters (0: every call);
 *	- log_min_duration_sample >= 0 with log_statement_sample_rate > 0, and
 *	  log_transaction_sample_rate > 0: the sampled calls, likewise;
 *	- log_parameter_max_length = 0 turns the parameters off in all of the
 *	  above; and they are DETAIL lines, which log_error_verbosity = terse
 *	  leaves out of stderr and syslog output (csvlog and jsonlog keep them);
 *	- log_parameter_max_length_on_error <> 0 (any role may set it for its
 *	  own session): a call that fails carries "CONTEXT: ... with
 *	  parameters: ..." in its error, which the log keeps when errors are
 *	  logged (log_min_messages at error or below; log, fatal and panic leave
 *	  errors out) and CONTEXT lines are
 *	  (not terse, or csvlog/jsonlog).  log_min_error_statement adds the
 *	  statement text only, with $n placeholders, never the values.
 *
 * log_duration alone logs no statement text.  Extensions that log on their
 * own (auto_explain with its own parameter settings) are not seen here.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

PG_FUNCTION_INFO_V1(pgm_health);

/* Are DETAIL and CONTEXT lines written to the log? */
static bool
log_keeps_details(void)
{
	return Log_error_verbosity != PGERROR_TERSE ||
		(Log_destination & (LOG_DESTINATION_CSVLOG | LOG_DESTINATION_JSONLOG)) != 0;
}

/*
 * Would the current settings log a call's bind parameters?  See the file
 * header for the rules.
 */
static bool
logs_bind_parameters(void)
{
	bool		on_success;
	bool		on_error;

	if (!log_keeps_details())
		return false;
	on_success = log_parameter_max_length != 0 &&
		(log_statement == LOGSTMT_ALL ||
		 log_min_duration_statement >= 0 ||
		 (log_min_duration_sample >= 0 && log_statement_sample_rate > 0) ||
		 log_xact_sample_rate > 0);
	/* as elog.c's is_log_level_output: "log" logs no error */
	on_error = log_parameter_max_length_on_error != 0 &&
		log_min_messages != LOG && log_min_messages <= ERROR;
	return on_success || on_error;
}

/*
 * Load the vault's keys if it is configured, in a subtransaction so that
 * PM010 becomes a problem to report instead of an error.  Any other error
 * is raised.
 */
static void
check_vault(bool *loaded, int *versions, int32 *newest, char **problem)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	*loaded = false;
	*problem = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		*versions = pgm_keyring_versions();
		*newest = pgm_keyring_newest_version();
		*loaded = true;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode != ERRCODE_PGM_VAULT_UNAVAILABLE)
			ReThrowError(edata);
		*problem = psprintf("vault: %s", edata->message);
	}
	PG_END_TRY();
}

/*
 * The one query of health(): $1 to $4 the vault (configured, loaded,
 * versions, newest), $5 its problem or NULL, $6 logs_bind_parameters.
 */
static const char health_sql[] =
	"WITH s AS ("
	"  SELECT coalesce(max(through_id), 0) AS through"
	"    FROM pgmarket.audit_seals WHERE kind = 'seal'),"
	" a AS ("
	"  SELECT count(*) AS unsealed, min(l.at) AS oldest"
	"    FROM pgmarket.audit_log l, s WHERE l.id > s.through),"
	" h AS ("
	"  SELECT count(*) FILTER (WHERE expires_at > now()) AS live,"
	"         count(*) FILTER (WHERE expires_at <= now()) AS expired"
	"    FROM pgmarket.reservations WHERE state = 'held'),"
	" c AS ("
	"  SELECT (SELECT count(*) FROM pg_catalog.pg_stat_get_activity(NULL) x"
	"           WHERE x.backend_type = 'client backend') AS used,"
	"         pg_catalog.current_setting('max_connections')::int AS max),"
	" p AS ("
	"  SELECT array_remove(ARRAY["
	"           $5,"
	"           CASE WHEN c.used * 100 >= c.max * 95 THEN"
	"             format('connections: %s of max_connections %s in use (95%% or more)',"
	"                    c.used, c.max) END], NULL) AS problems"
	"    FROM c)"
	"SELECT jsonb_build_object("
	"  'ok', cardinality(p.problems) = 0,"
	"  'version', (SELECT extversion FROM pg_catalog.pg_extension"
	"               WHERE extname = 'pgmarket'),"
	"  'vault', jsonb_build_object('configured', $1, 'loaded', $2,"
	"                              'versions', $3, 'newest', $4),"
	"  'audit', jsonb_build_object('unsealed', a.unsealed,"
	"     'oldest_unsealed_age_s',"
	"     floor(extract(epoch FROM now() - a.oldest))::bigint),"
	"  'holds', jsonb_build_object('live', h.live,"
	"                              'expired_unswept', h.expired),"
	"  'connections', jsonb_build_object('used', c.used, 'max', c.max),"
	"  'logs_bind_parameters', $6,"
	"  'problems', to_jsonb(p.problems))"
	"  FROM a, h, c, p";

/* health() RETURNS jsonb */
Datum
pgm_health(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[6] = {BOOLOID, BOOLOID, INT4OID, INT4OID, TEXTOID, BOOLOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		configured = pgm_keyring_configured();
	bool		loaded = false;
	int			versions = 0;
	int32		newest = 0;
	char	   *problem = NULL;
	bool		isnull;
	Datum		result;

	if (configured)
		check_vault(&loaded, &versions, &newest, &problem);

	pgm_spi_connect();
	if (plan == NULL)
		plan = pgm_prepare(health_sql, 6, types);

	values[0] = BoolGetDatum(configured);
	values[1] = BoolGetDatum(loaded);
	values[2] = Int32GetDatum(versions);
	values[3] = Int32GetDatum(newest);
	values[4] = problem ? CStringGetTextDatum(problem) : (Datum) 0;
	values[5] = BoolGetDatum(logs_bind_parameters());
	if (!loaded)
		nulls[2] = nulls[3] = 'n';
	if (problem == NULL)
		nulls[4] = 'n';
	pgm_exec(plan, values, nulls, true);
	if (SPI_processed != 1)
		elog(ERROR, "health query returned %d rows", (int) SPI_processed);
	result = SPI_datumTransfer(pgm_col(0, 1, &isnull), false, -1);
	pgm_spi_finish();
	PG_RETURN_DATUM(result);
}
