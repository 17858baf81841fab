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
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "funcapi.h"
#include "utils/builtins.h"

/*
 * The search path of pgmarket's own SQL
 * -------------------------------------
 * Every statement pgmarket runs through SPI is resolved under the search
 * path "pg_catalog, pg_temp": the catalog first, the session's temporary
 * schema after it for relations only (PostgreSQL never looks functions or
 * operators up there), never a schema of the caller's.  Its SQL names its
 * own tables with the schema and leaves operators and functions to
 * pg_catalog, so a caller who puts a schema of look-alike operators first
 * in its search_path reaches none of them.
 *
 * Most API functions have that path as a SET clause.  A SET clause costs
 * a GUC switch and restore around every call, and the caller's path is
 * computed anew after each (about a tenth of what verify_api_key costs),
 * so the functions whose common path runs no SQL at all (they read and
 * write by index, index_read.c and heapwrite.c) have none, and their SQL,
 * when they run some, gets the same path here: pgm_spi_connect pushes it
 * as an override search path and pgm_spi_finish pops it.  An error pops
 * it with the (sub)transaction it aborts.  The override holds the same
 * schemas in the same order as the SET clause gives (the temporary schema
 * once the session has one), so that a kept plan is not parsed again when
 * functions of both kinds use it.  Which functions go without the SET
 * clause, and why nothing on their way resolves a name outside SPI: the
 * README's Security section; sql/spi_search_path.sql calls them under a
 * search path that shadows every catalog operator and many functions.
 */
void
pgm_spi_connect(void)
{
	OverrideSearchPath path = {NIL, false, false, 0};
	Oid			temp_nsp;
	Oid			temp_toast_nsp;
	int			rc = SPI_connect();

	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(rc));
	GetTempNamespaceState(&temp_nsp, &temp_toast_nsp);
	path.schemas = list_make1_oid(PG_CATALOG_NAMESPACE);
	if (OidIsValid(temp_nsp))
		path.schemas = lappend_oid(path.schemas, temp_nsp);
	PushOverrideSearchPath(&path);
	list_free(path.schemas);
}

/* The end of what pgm_spi_connect began. */
void
pgm_spi_finish(void)
{
	int			rc;

	PopOverrideSearchPath();
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
