/*-------------------------------------------------------------------------
 *
 * pgmarket.c
 *	  The module's entry point, which initialises each file that defines a
 *	  setting, and what belongs to the whole extension: the append-only
 *	  trigger of its ledgers.
 *
 * The C files stand in floors, each calling only the files below it:
 *
 *	features	ledger.c batch.c vault.c apikeys.c accounts.c (with
 *				passwords.c and emails.c) erasure.c chat.c
 *				preferences.c audit.c (capture) and audit_chain.c
 *				(seal, verify, purge) personal.c (personal values of
 *				the trail under per-user keys) sealed.c health.c
 *				projects.c ratelimit.c (tiers and the rate limiter of
 *				platform keys, for apikeys.c) importer.c
 *				(they call each other only through C entry points:
 *				the ledger's pgm_ledger_charge, pgm_ledger_reserve,
 *				pgm_ledger_import_entry and pgm_ledger_result, audit's
 *				pgm_audit_record_event, the single calls' own C functions
 *				that importer.c applies an import's records with,
 *				the password floor of passwords.c, personal.c's
 *				pgm_personal_*, apikeys.c's pgm_api_keys_follow_user;
 *				never through SQL)
 *	floor		userlock.c (the per-user lock protocol), actor.c (the
 *				pgmarket.actor rule), keyring.c (master keys, subkeys,
 *				sealing key pairs, secret buffers, random ids), spi.c
 *				(kept plans, columns), index_read.c (rows read by index
 *				without SPI, for the hottest reads), args.c (argument
 *				checks, message text), money.c (micro-credits)
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sodium.h>

#include "commands/trigger.h"
#include "access/htup_details.h"
#include "utils/datum.h"
#include "catalog/namespace.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/rel.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(pgm_forbid_change);

void		_PG_init(void);

static void relcache_changed(Datum arg, Oid relid);
static void xact_ended(XactEvent event, void *arg);
static void subxact_ended(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg);

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

	pgm_actor_init();
	pgm_audit_init();
	pgm_keyring_init();
	pgm_sealed_init();
	pgm_ratelimit_init();
	MarkGUCPrefixReserved("pgmarket");

	CacheRegisterRelcacheCallback(relcache_changed, (Datum) 0);
	RegisterXactCallback(xact_ended, NULL);
	RegisterSubXactCallback(subxact_ended, NULL);
}

/*
 * Raise 55000 unless the extension installed in this database is the
 * version this library was built for.  Between installing a new library
 * and ALTER EXTENSION UPDATE, the functions of the old version call the
 * new C with fewer arguments, over tables without the new columns: a
 * feature whose C reads what the old version lacks checks once, before it
 * prepares its plans, and refuses with a message that says what to do
 * rather than failing on a missing column.  Needs an SPI connection.
 */
void
pgm_require_schema(void)
{
	bool		isnull;
	char	   *installed = NULL;

	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension"
					" WHERE extname = 'pgmarket'", true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
		installed = TextDatumGetCString(pgm_col(0, 1, &isnull));
	if (installed != NULL && strcmp(installed, PGM_VERSION) == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the pgmarket library is version %s, the extension in this database is %s",
					PGM_VERSION, installed ? installed : "missing"),
			 errhint("Run ALTER EXTENSION pgmarket UPDATE.")));
}

/*
 * What a feature knows of this database's schema (is a table of a later
 * version there, was the installed version checked) holds until the next
 * relcache invalidation: any of them may be ALTER EXTENSION UPDATE or DROP
 * EXTENSION.  The feature keeps a flag "known", registered here once; one
 * callback clears every flag, and the next use looks again (a catalog-cache
 * look-up after a DDL, instead of one on every call).  One callback for
 * all: a backend has room for few.
 */
#define PGM_MAX_SCHEMA_FLAGS	8

static bool *schema_flags[PGM_MAX_SCHEMA_FLAGS];
static int	n_schema_flags = 0;

/* ----------------------------------------------------------------
 * The library's callbacks
 *
 * One of each kind for the whole library, registered at load, calling each
 * file's hook: a file that caches what the catalogs say forgets it on a
 * relcache invalidation, a file that keeps per-transaction state drops it
 * when the (sub)transaction ends.  A backend has room for ten relcache
 * callbacks for all its libraries together; pgmarket takes one.
 * ----------------------------------------------------------------
 */
static void
relcache_changed(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < n_schema_flags; i++)
		*schema_flags[i] = false;
	pgm_index_read_relcache(relid);
	pgm_heapwrite_relcache(relid);
	pgm_audit_relcache(relid);
	pgm_ratelimit_relcache(relid);
}

static void
xact_ended(XactEvent event, void *arg)
{
	pgm_spi_xact_end();
	pgm_userlock_xact_end();
	pgm_escrow_xact_end();
	pgm_keyring_xact_end();
	pgm_ratelimit_xact_end(event);
}

static void
subxact_ended(SubXactEvent event, SubTransactionId mySubid,
			  SubTransactionId parentSubid, void *arg)
{
	pgm_spi_subxact_end(event, mySubid);
	pgm_ratelimit_subxact_end(event, mySubid, parentSubid);
}

void
pgm_schema_flag_register(bool *known)
{
	int			i;

	for (i = 0; i < n_schema_flags; i++)
		if (schema_flags[i] == known)
			return;
	if (n_schema_flags >= PGM_MAX_SCHEMA_FLAGS)
		elog(ERROR, "too many schema flags registered");
	schema_flags[n_schema_flags++] = known;
}

/* Is there a table relname in schema pgmarket?  (catalog caches only) */
bool
pgm_schema_has_table(const char *relname)
{
	Oid			nsp = get_namespace_oid("pgmarket", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid(relname, nsp));
}

/*
 * A fact of the schema that a feature keeps in *value until the next
 * relcache invalidation: is there a table relname (colname NULL), or does
 * it have a column colname?  *known is the feature's registered flag.
 */
bool
pgm_schema_fact(bool *known, bool *value, const char *relname,
				const char *colname)
{
	if (!*known)
	{
		pgm_schema_flag_register(known);
		*value = colname ? pgm_schema_has_column(relname, colname) :
			pgm_schema_has_table(relname);
		*known = true;
	}
	return *value;
}

/* Does table relname of schema pgmarket have a column colname? */
bool
pgm_schema_has_column(const char *relname, const char *colname)
{
	Oid			nsp = get_namespace_oid("pgmarket", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	return OidIsValid(relid) && get_attnum(relid, colname) != InvalidAttrNumber;
}

/*
 * Set by erase_user (erasure.c) around its one statement that rewrites the
 * ledger's free text (note, idempotency_key) of the user it erases: the
 * application's text may hold the person's email or name.  No SQL can set
 * it; forbid_change lets that statement through and nothing else.
 */
bool		pgm_erasing_ledger_text = false;

/* Does the row update change nothing but the ledger's note and idempotency key? */
static bool
only_free_text_changes(TriggerData *trigdata)
{
	TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		oldnull,
					newnull;
		Datum		oldv,
					newv;

		if (att->attisdropped ||
			strcmp(NameStr(att->attname), "note") == 0 ||
			strcmp(NameStr(att->attname), "idempotency_key") == 0)
			continue;
		oldv = heap_getattr(trigdata->tg_trigtuple, i + 1, desc, &oldnull);
		newv = heap_getattr(trigdata->tg_newtuple, i + 1, desc, &newnull);
		if (oldnull != newnull ||
			(!oldnull && !datumIsEqual(oldv, newv, att->attbyval, att->attlen)))
			return false;
	}
	return true;
}

/*
 * Trigger that makes a table append-only: any UPDATE, DELETE or TRUNCATE
 * raises 55000, whoever runs it (the owner too; only a superuser who disables
 * the trigger can get past it, and that is what sealing is for).  The one
 * exception is erase_user's rewrite of the ledger's free text, above.
 */
Datum
pgm_forbid_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "forbid_change must be called as a trigger");

	if (pgm_erasing_ledger_text &&
		TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) &&
		TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) &&
		strcmp(RelationGetRelationName(trigdata->tg_relation), "ledger") == 0 &&
		only_free_text_changes(trigdata))
		return PointerGetDatum(trigdata->tg_newtuple);

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
