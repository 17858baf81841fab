/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  Floor: how pgmarket's C files talk to SPI.  Statements are prepared
 *	  once per backend and kept (pgm_prepare); a failure of SPI itself is an
 *	  internal error; columns are read by number and copied out where they
 *	  must outlive the next query.
 *
 * Scalars are copied out of SPI results before SPI_finish; result tuples
 * are built in the caller's memory context after it.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

/*
 * The search path of pgmarket's own SQL
 * -------------------------------------
 * Every statement pgmarket runs through SPI is resolved under the search
 * path PGM_SEARCH_PATH, "pg_catalog, pg_temp": the catalog first, the
 * session's temporary schema after it for relations only (PostgreSQL never
 * looks functions or operators up there), never a schema of the caller's.
 * Its SQL names its own tables with the schema and leaves operators and
 * functions to pg_catalog, so a caller who puts a schema of look-alike
 * operators first in its search_path reaches none of them.
 *
 * Most API functions carry that path as a SET clause, and then it is
 * already in force here.  A SET clause sets the GUC and restores it around
 * every call, and the caller's path is computed anew after each: about a
 * tenth of what verify_api_key costs.  So verify_api_key and
 * get_chat_history, whose common path runs no SQL (they read by index,
 * index_read.c), have none, and their SQL, when they run some, gets the
 * same path here, set the way a SET clause sets it: pgm_spi_connect_pinned
 * opens a GUC nest level and sets search_path in it (GUC_ACTION_SAVE), and
 * pgm_spi_finish closes the level, which restores the caller's path.  (A
 * function with a SET clause calls pgm_spi_connect, which does the same
 * only when the path in force is another, that is when it runs under a
 * caller of no SET clause.)  So everything inside behaves as under a SET
 * clause: a function it calls (an owner's trigger, a function in a CHECK
 * constraint) with a SET clause of its own gets its own path, and a
 * search_path set locally inside does not outlive the call.  An error that
 * aborts the (sub)transaction closes the level itself; the levels this
 * file opened are then forgotten (forget_levels_xact, _subxact).  An
 * override search path (PushOverrideSearchPath) would be cheaper, but it
 * takes precedence over the SET clauses of the functions called inside.
 * sql/spi_search_path.sql calls the two under a search
 * path that shadows every catalog operator, plain function and aggregate,
 * and with an owner's trigger that relies on its own SET clause.
 */
#define PGM_SEARCH_PATH "pg_catalog, pg_temp"

/* One pgm_spi_connect: the GUC nest level it opened (0: none). */
typedef struct SpiLevel
{
	int			guc_level;
	SubTransactionId subxid;
} SpiLevel;

static SpiLevel *spi_levels = NULL;	/* in TopMemoryContext */
static int	spi_levels_size = 0;
static int	spi_depth = 0;

/*
 * A (sub)transaction that ends takes the SPI connections and GUC levels
 * opened in it (AtEOSubXact_SPI, AtEOSubXact_GUC); forget ours with them
 * (pgmarket.c's callbacks call these).
 */
void
pgm_spi_xact_end(void)
{
	spi_depth = 0;
}

void
pgm_spi_subxact_end(SubXactEvent event, SubTransactionId mySubid)
{
	if (event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB)
		return;
	while (spi_depth > 0 && spi_levels[spi_depth - 1].subxid == mySubid)
		spi_depth--;
}

static void
spi_connect(bool always_set)
{
	int			rc;
	SpiLevel   *level;

	if (spi_depth == spi_levels_size)
	{
		int			size = spi_levels_size == 0 ? 16 : 2 * spi_levels_size;

		spi_levels = spi_levels == NULL ?
			MemoryContextAlloc(TopMemoryContext, size * sizeof(SpiLevel)) :
			repalloc(spi_levels, size * sizeof(SpiLevel));
		spi_levels_size = size;
	}
	rc = SPI_connect();
	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(rc));
	level = &spi_levels[spi_depth++];
	level->subxid = GetCurrentSubTransactionId();
	level->guc_level = 0;
	if (always_set || strcmp(namespace_search_path, PGM_SEARCH_PATH) != 0)
	{
		level->guc_level = NewGUCNestLevel();
		(void) set_config_option("search_path", PGM_SEARCH_PATH, PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
								 false);
	}
}

/* SPI for a function with a SET clause: the path is set only if need be. */
void
pgm_spi_connect(void)
{
	spi_connect(false);
}

/*
 * SPI for verify_api_key and get_chat_history, which have no SET clause:
 * the path set always, also when the caller's is the same, so that a path
 * set locally inside (an owner's trigger) goes with the level, as it goes
 * with a SET clause's.
 */
void
pgm_spi_connect_pinned(void)
{
	spi_connect(true);
}

/* The end of what pgm_spi_connect began: the caller's search path back. */
void
pgm_spi_finish(void)
{
	int			rc;

	if (spi_depth == 0 ||
		spi_levels[spi_depth - 1].subxid != GetCurrentSubTransactionId())
		elog(ERROR, "pgm_spi_finish without its pgm_spi_connect");
	spi_depth--;
	if (spi_levels[spi_depth].guc_level != 0)
		AtEOXact_GUC(true, spi_levels[spi_depth].guc_level);
	rc = SPI_finish();
	if (rc != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed: %s", SPI_result_code_string(rc));
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

/*
 * Run a kept plan that writes, under a snapshot taken now instead of the
 * statement's or the transaction's.  For a write that must reach every row
 * committed before a lock the caller holds, also in REPEATABLE READ, whose
 * transaction snapshot may be older than the lock (as the foreign key
 * triggers of PostgreSQL read the referenced rows).  Rows changed after that
 * snapshot and before the write are then a serialization failure, as for
 * any UPDATE in REPEATABLE READ.
 */
int
pgm_exec_latest(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	int			rc;

	CommandCounterIncrement();
	rc = SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(),
							  InvalidSnapshot, false, true, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute_snapshot failed: %s", SPI_result_code_string(rc));
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

/* A bigint column of the last SPI result; NULL reads as 0. */
int64
pgm_col_int64(uint64 row, int colno)
{
	bool		isnull;
	Datum		d = pgm_col(row, colno, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* A boolean column of the last SPI result; NULL reads as false. */
bool
pgm_col_bool(uint64 row, int colno)
{
	bool		isnull;
	Datum		d = pgm_col(row, colno, &isnull);

	return !isnull && DatumGetBool(d);
}

/* A text column copied into the upper (caller's) memory context, or NULL. */
char *
pgm_col_text(uint64 row, int colno)
{
	bool		isnull;
	Datum		d = pgm_col(row, colno, &isnull);
	char	   *s;
	char	   *copy;

	if (isnull)
		return NULL;
	s = TextDatumGetCString(d);
	copy = SPI_palloc(strlen(s) + 1);
	strcpy(copy, s);
	return copy;
}

/* A uuid column (not NULL), copied into the current memory context. */
pg_uuid_t *
pgm_col_uuid(uint64 row, int colno)
{
	bool		isnull;
	pg_uuid_t  *copy = palloc(sizeof(pg_uuid_t));

	memcpy(copy, DatumGetUUIDP(pgm_col(row, colno, &isnull)), sizeof(pg_uuid_t));
	return copy;
}

/*
 * The uuid in column colno of the last result's one row, copied into the
 * upper (caller's) memory context, which outlives SPI_finish; NULL when
 * the result is not one row or the value is NULL.
 */
pg_uuid_t *
pgm_one_uuid(int colno)
{
	bool		isnull;
	Datum		d;
	pg_uuid_t  *copy;

	if (SPI_processed != 1)
		return NULL;
	d = pgm_col(0, colno, &isnull);
	if (isnull)
		return NULL;
	copy = SPI_palloc(sizeof(pg_uuid_t));
	memcpy(copy, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	return copy;
}

/*
 * Parameter i of a plan (values and nulls as pgm_exec takes them) from a
 * pointer that may be NULL: a NULL pointer is SQL NULL.
 */
void
pgm_bind_ptr(Datum *values, char *nulls, int i, const void *ptr)
{
	values[i] = PointerGetDatum(ptr);
	nulls[i] = ptr == NULL ? 'n' : ' ';
}

/* The same for a C string, bound as text. */
void
pgm_bind_cstring(Datum *values, char *nulls, int i, const char *s)
{
	pgm_bind_ptr(values, nulls, i, s == NULL ? NULL : cstring_to_text(s));
}

/* A varlena column (not NULL), copied into the upper memory context. */
struct varlena *
pgm_col_varlena(uint64 row, int colno)
{
	bool		isnull;
	Datum		d = pgm_col(row, colno, &isnull);

	return (struct varlena *) DatumGetPointer(SPI_datumTransfer(d, false, -1));
}

/*
 * Prepare and keep every plan of a table whose pointer is still NULL, the
 * first time a feature is used in the backend.  The last entry is set last,
 * so when it is set, all are: a call that failed half way (a table missing
 * during DROP EXTENSION, say) prepares the rest at the next use.
 */
void
pgm_prepare_plans(const PgmPlanDef *defs, int ndefs)
{
	int			i;

	if (*defs[ndefs - 1].plan != NULL)
		return;
	for (i = 0; i < ndefs; i++)
		if (*defs[i].plan == NULL)
			*defs[i].plan = pgm_prepare(defs[i].sql, defs[i].nargs,
										(Oid *) defs[i].argtypes);
}

/*
 * The composite result of a function that returns one row, built in the
 * current (the caller's) memory context from values and nulls in the order
 * of the row type's columns.
 */
Datum
pgm_result_row(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}
