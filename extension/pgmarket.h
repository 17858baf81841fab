/*-------------------------------------------------------------------------
 *
 * pgmarket.h
 *	  Internal declarations shared by the C files of the pgmarket extension.
 *
 * Money is carried in C as int64 micro-credits (1 credit = 1,000,000) and
 * converted to and from numeric only at the SQL surface (money.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGMARKET_H
#define PGMARKET_H

#include "postgres.h"
#include "fmgr.h"
#include "executor/spi.h"
#include "datatype/timestamp.h"
#include "utils/uuid.h"

/*
 * PGM_VERSION, the version of the extension's SQL that this library is
 * built for, is pgmarket.control's default_version: the Makefile passes it.
 */
#ifndef PGM_VERSION
#error "PGM_VERSION comes from pgmarket.control through the Makefile"
#endif

/* pgmarket.c: is the installed extension the one this library is for? */
extern void pgm_require_schema(void);
extern void pgm_schema_flag_register(bool *known);
extern bool pgm_schema_has_table(const char *relname);
extern bool pgm_schema_has_column(const char *relname, const char *colname);
extern bool pgm_schema_fact(bool *known, bool *value, const char *relname,
							const char *colname);
/* set by erase_user around its rewrite of the ledger's free text (pgmarket.c) */
extern bool pgm_erasing_ledger_text;

/* SQLSTATEs of the contract (SPEC, "Error codes") */
#define ERRCODE_PGM_INSUFFICIENT_FUNDS		MAKE_SQLSTATE('P','M','0','0','1')
#define ERRCODE_PGM_UNKNOWN_ACCOUNT			MAKE_SQLSTATE('P','M','0','0','2')
#define ERRCODE_PGM_IDEMPOTENCY_CONFLICT	MAKE_SQLSTATE('P','M','0','0','3')
#define ERRCODE_PGM_RESERVATION_STATE		MAKE_SQLSTATE('P','M','0','0','4')
#define ERRCODE_PGM_RATE_LIMITED			MAKE_SQLSTATE('P','M','0','0','5')
#define ERRCODE_PGM_VAULT_UNAVAILABLE		MAKE_SQLSTATE('P','M','0','1','0')
#define ERRCODE_PGM_DECRYPTION_FAILED		MAKE_SQLSTATE('P','M','0','1','1')
#define ERRCODE_PGM_KEY_NOT_FOUND			MAKE_SQLSTATE('P','M','0','1','2')
#define ERRCODE_PGM_AUDIT_CHAIN_BROKEN		MAKE_SQLSTATE('P','M','0','1','3')

/* Every amount and balance stays below 9e12 credits = 9e18 micro-credits. */
#define PGM_MICRO_PER_CREDIT	INT64CONST(1000000)
#define PGM_MAX_MICRO			INT64CONST(9000000000000000000)

/* field4 of pgmarket's advisory lock tags: SQL uses 1 and 2 */
#define PGM_LOCKTAG_FIELD4		0x504d

#define PGM_MAX_MODEL_ID_LEN	200
#define PGM_MAX_IDEM_KEY_LEN	200
#define PGM_MAX_NOTE_LEN		2000
#define PGM_MAX_CONTENT_BYTES	(10 * 1024 * 1024)	/* a chat message */

/* ================================================================
 * The floor: shared mechanisms that know nothing of the features
 * ================================================================
 */

/* money.c: micro-credits and the numeric surface */
typedef enum PgmAmountError
{
	PGM_AMOUNT_OK = 0,
	PGM_AMOUNT_NOT_FINITE,
	PGM_AMOUNT_ZERO,
	PGM_AMOUNT_NOT_POSITIVE,
	PGM_AMOUNT_TOO_PRECISE,
	PGM_AMOUNT_TOO_LARGE
} PgmAmountError;

extern PgmAmountError pgm_numeric_to_micro_noerror(Datum num, int64 *micro);
extern int64 pgm_numeric_to_micro(Datum num, const char *argname);
extern int	pgm_amount_error_sqlstate(PgmAmountError err);
extern Datum pgm_micro_to_numeric(int64 micro);
extern char *pgm_micro_to_cstring(int64 micro);

/* args.c: argument checks and the text of messages */
extern void pgm_require_arg(FunctionCallInfo fcinfo, int argno, const char *argname);
extern text *pgm_optional_text(FunctionCallInfo fcinfo, int argno,
							   const char *argname, int maxlen);
extern text *pgm_required_text(FunctionCallInfo fcinfo, int argno,
							   const char *argname, int maxlen);
extern bool pgm_text_ok(const char *value, int maxlen);
extern void pgm_check_text(const char *argname, const char *value, int maxlen);
extern char *pgm_shown_value(const char *value, int maxchars);
extern char *pgm_uuid_cstring(Datum uuid);
extern char *pgm_interval_cstring(Interval *interval);
#define PGM_MAX_PAGE_ROWS		1000	/* the max_rows of a page */
extern int32 pgm_int32_arg(FunctionCallInfo fcinfo, int argno,
						   const char *argname, int32 min, int32 max,
						   const char *detail);
extern int	pgm_user_partition(Datum user_id);

/*
 * Each file's hook in the library's callbacks (pgmarket.c): the end of a
 * (sub)transaction, a relcache invalidation of relid (InvalidOid: of all)
 */
#include "access/xact.h"
extern void pgm_spi_xact_end(void);
extern void pgm_spi_subxact_end(SubXactEvent event, SubTransactionId mySubid);
extern void pgm_userlock_xact_end(void);
extern void pgm_escrow_xact_end(void);
extern void pgm_keyring_xact_end(void);
extern void pgm_ratelimit_xact_end(XactEvent event);
extern void pgm_ratelimit_subxact_end(SubXactEvent event,
									  SubTransactionId mySubid,
									  SubTransactionId parentSubid);
extern void pgm_index_read_relcache(Oid relid);
extern void pgm_heapwrite_relcache(Oid relid);
extern void pgm_audit_relcache(Oid relid);
extern void pgm_ratelimit_relcache(Oid relid);

/* spi.c: kept plans and the columns of SPI results */
#define PGM_MAX_PLAN_ARGS		12

typedef struct PgmPlanDef
{
	SPIPlanPtr *plan;			/* where the kept plan goes */
	const char *sql;
	int			nargs;
	Oid			argtypes[PGM_MAX_PLAN_ARGS];
} PgmPlanDef;

extern void pgm_spi_connect(void);
extern void pgm_spi_connect_pinned(void);
extern void pgm_spi_finish(void);
extern SPIPlanPtr pgm_prepare(const char *sql, int nargs, Oid *argtypes);
extern void pgm_prepare_plans(const PgmPlanDef *defs, int ndefs);
#define PGM_PREPARE_PLANS(defs) pgm_prepare_plans((defs), lengthof(defs))
extern int	pgm_exec(SPIPlanPtr plan, Datum *values, const char *nulls,
					 bool read_only);
extern int	pgm_exec_latest(SPIPlanPtr plan, Datum *values, const char *nulls);
extern Datum pgm_col(uint64 row, int colno, bool *isnull);
extern int64 pgm_col_int64(uint64 row, int colno);
extern bool pgm_col_bool(uint64 row, int colno);
extern char *pgm_col_text(uint64 row, int colno);
extern pg_uuid_t *pgm_col_uuid(uint64 row, int colno);
extern struct varlena *pgm_col_varlena(uint64 row, int colno);
extern pg_uuid_t *pgm_one_uuid(int colno);
extern void pgm_bind_ptr(Datum *values, char *nulls, int i, const void *ptr);
extern void pgm_bind_cstring(Datum *values, char *nulls, int i, const char *s);
struct ReturnSetInfo;
extern void pgm_put_rows(struct ReturnSetInfo *rsinfo, uint32 money_columns);
extern Datum pgm_result_row(FunctionCallInfo fcinfo, Datum *values, bool *nulls);

/* actor.c: the pgmarket.actor rule */
extern char *pgm_actor;
extern void pgm_actor_init(void);
extern Datum pgm_user_arg(FunctionCallInfo fcinfo, int argno);
extern void pgm_check_actor(Datum user_id);
extern bool pgm_actor_allows(const pg_uuid_t *user);
extern bool pgm_actor_set(void);
extern Datum pgm_owner_result(FunctionCallInfo fcinfo, pg_uuid_t *owner);

/* userlock.c: the per-user lock protocol and the account checks */
typedef struct PgmAccountState
{
	int64		available;		/* total - spent - reserved */
	int64		total;
	bool		holds_expired;	/* next_expiry has passed */
} PgmAccountState;

extern void pgm_raise_unknown_account(Datum user_id);
extern void pgm_queue_for_user(Datum user_id);
typedef enum PgmQueueResult
{
	PGM_QUEUE_TAKEN,			/* this call took the user's queue lock */
	PGM_QUEUE_HELD,				/* the transaction had it (or takes no more) */
	PGM_QUEUE_BUSY				/* another transaction holds it */
} PgmQueueResult;
extern PgmQueueResult pgm_queue_try(Datum user_id);
extern bool pgm_queue_held(Datum user_id);
extern void pgm_queue_release(Datum user_id);
extern bool pgm_user_row_held(Datum user_id);
extern void pgm_account_state(Datum user_id, PgmAccountState *state);
extern bool pgm_user_active_read(Snapshot snapshot, Datum user_id);
extern bool pgm_lock_user_row(Datum user_id, bool *active);
extern bool pgm_try_lock_user(Datum user_id);
extern void pgm_lock_user(Datum user_id);
extern void pgm_check_user(Datum user_id, bool lock);
extern int64 pgm_sweep_expired_holds(Datum user_id, int64 *available);
extern int64 pgm_sweep_user(Datum user_id);
extern void pgm_user_begin(Datum user_id, const PgmPlanDef *defs, int ndefs,
						   bool lock);
#define PGM_USER_BEGIN(user_id, defs, lock) \
	pgm_user_begin((user_id), (defs), lengthof(defs), (lock))
extern uint64 pgm_user_exec(const PgmPlanDef *defs, int ndefs, SPIPlanPtr *plan,
							Datum *values, const char *nulls);
extern bool pgm_user_exec_one(FunctionCallInfo fcinfo, const PgmPlanDef *defs,
							  int ndefs, SPIPlanPtr *plan, int nargs);
extern Datum pgm_user_rows(FunctionCallInfo fcinfo, const PgmPlanDef *defs,
						   int ndefs, SPIPlanPtr *plan, uint32 money_columns);
extern Datum pgm_user_revoke(FunctionCallInfo fcinfo, const PgmPlanDef *defs,
							 int ndefs, SPIPlanPtr *plan);

/*
 * escrow.c: a hot user's escrow slots (its comment states the rules).
 * pgm_escrow_reclaim is for any writer that holds a user's balance row and
 * needs the user's whole available in that row.
 */
#define PGM_ESCROW_SLOTS		16
extern bool pgm_escrow_on(void);
extern int64 pgm_escrow_reclaim(Datum user_id);
extern bool pgm_escrow_gather(Datum user_id);
extern void pgm_escrow_lock_account(Datum user_id, SPIPlanPtr plan);
extern bool pgm_escrow_gather_if_short(Datum user_id, int64 amount);
extern int64 pgm_escrow_refill(Datum user_id, int64 available, int64 amount);
extern int64 pgm_escrow_money(Datum user_id);
extern int64 pgm_escrow_money_read(Snapshot snapshot, Datum user_id);
extern void pgm_escrow_note_charge(Datum user_id);

/* keyring.c: the master key file, subkeys, secret buffers, random ids */
#define PGM_SUBKEY_BYTES		32
#define PGM_KDF_CONTEXT_VAULT	"pgmvault"	/* provider key encryption */
#define PGM_KDF_CONTEXT_APIKEY	"pgmapkey"	/* platform API key hashes */
#define PGM_KDF_CONTEXT_AUDIT	"pgmaudit"	/* the audit hash chain */
#define PGM_KDF_CONTEXT_BOX		"pgmboxky"	/* the sealing key pair */
#define PGM_KDF_CONTEXT_RESET	"pgmreset"	/* password reset token hashes */
extern void pgm_keyring_init(void);
extern int32 pgm_keyring_newest_version(void);
extern bool pgm_keyring_subkey(int32 version, const char *context,
							   uint64 subkey_id, unsigned char *out);
extern bool pgm_keyring_keyed_hash(int32 version, const char *context,
								   uint64 subkey_id, const char *data, size_t len,
								   unsigned char *out, size_t out_len);
extern bool pgm_keyring_box_keypair(int32 version, unsigned char *pk,
									unsigned char *sk);
extern bool pgm_keyring_open_sealed(const unsigned char *sealed,
									size_t sealed_len, unsigned char *out);
extern bool pgm_keyring_configured(void);
extern int	pgm_keyring_versions(void);
extern void pgm_random_uuid(pg_uuid_t *uuid);
extern void *pgm_secret_alloc(Size len);
extern void pgm_secret_register(void *ptr, Size len);

/* index_read.c: rows of a table read by a btree index, without SPI */
#include "access/sdir.h"
#include "access/stratnum.h"
#include "utils/snapshot.h"

#define PGM_INDEX_MAX_COLS		12
#define PGM_INDEX_MAX_KEYS		2

typedef struct PgmIndexRef
{
	const char *relname;		/* a table of schema pgmarket */
	const char *indexname;		/* one of its plain btree indexes */
	int			nkeys;			/* key columns a scan may compare */
	StrategyNumber strategies[PGM_INDEX_MAX_KEYS];
	int			ncols;			/* the columns read, by name and type */
	const char *colnames[PGM_INDEX_MAX_COLS];
	Oid			coltypes[PGM_INDEX_MAX_COLS];
	/* looked up at the first use, forgotten on a relcache invalidation */
	bool		registered;
	Oid			relid;
	Oid			indexid;
	AttrNumber	attnums[PGM_INDEX_MAX_COLS];
	RegProcedure procs[PGM_INDEX_MAX_KEYS];
	Oid			collations[PGM_INDEX_MAX_KEYS];
	int8		plain_indexes;	/* every index of the table a plain btree?
								 * 0: not looked at yet, 1: yes, 2: no */
} PgmIndexRef;

typedef struct PgmIndexScan
{
	PgmIndexRef *ref;
	Oid			index_oid;
	AttrNumber	attnums[PGM_INDEX_MAX_COLS];
	struct RelationData *heap;
	struct RelationData *index;
	struct IndexScanDescData *scan;
	struct TupleTableSlot *slot;
} PgmIndexScan;

extern void pgm_index_begin(PgmIndexScan *s, PgmIndexRef *ref,
							Snapshot snapshot, int nkeys, const Datum *values);
extern bool pgm_index_find(PgmIndexScan *s, PgmIndexRef *ref,
						   Snapshot snapshot, int nkeys, const Datum *values);
extern bool pgm_index_next(PgmIndexScan *s, ScanDirection dir);
extern Datum pgm_index_col(PgmIndexScan *s, int col, bool *isnull);
extern void pgm_index_row(PgmIndexScan *s, Datum *values, bool *nulls);
extern void pgm_index_end(PgmIndexScan *s);
extern bool pgm_index_can_update(PgmIndexScan *s, int checks);
extern bool pgm_index_lock_row(PgmIndexScan *s, int lockmode);
extern bool pgm_index_try_lock_row(PgmIndexScan *s, int lockmode);
extern void pgm_index_update_row(PgmIndexScan *s, const Datum *values,
								 const bool *nulls);
extern bool pgm_index_try_update_row(PgmIndexScan *s, const Datum *values,
									 const bool *nulls);
extern void pgm_materialize(FunctionCallInfo fcinfo);

/*
 * heapwrite.c: pgmarket.balances and pgmarket.ledger written without the
 * executor (its comment says when that is what the statements write), and
 * the rule and the write of one row of any table (a chat message)
 */
#include "access/htup.h"
#include "access/tableam.h"
#include "catalog/pg_attribute.h"
#include "nodes/lockoptions.h"

enum
{
	PGM_L_ENTRY_ID, PGM_L_USER_ID, PGM_L_KIND, PGM_L_AMOUNT, PGM_L_AVAILABLE,
	PGM_L_MODEL_ID, PGM_L_TOKENS_USED, PGM_L_IDEMPOTENCY_KEY, PGM_L_NOTE,
	PGM_L_REFUND_OF, PGM_L_RESERVATION_ID, PGM_L_CREATED_AT, PGM_L_NCOLS
};
enum
{
	PGM_B_USER_ID, PGM_B_TOTAL, PGM_B_SPENT, PGM_B_RESERVED,
	PGM_B_NEXT_EXPIRY, PGM_B_ACTIVE, PGM_B_UPDATED_AT,
	PGM_B_ESCROWED,				/* 0.8.0; InvalidAttrNumber before */
	PGM_B_NCOLS
};
struct EState;
struct ResultRelInfo;
typedef struct PgmLedgerWriter
{
	struct RelationData *balances;
	struct RelationData *balances_pkey;
	struct RelationData *ledger;
	struct EState *estate;
	struct ResultRelInfo *balances_rri;
	struct ResultRelInfo *ledger_rri;
	bool		balances_fk_check;	/* a foreign key's UPDATE trigger */
	struct IndexScanDescData *scan; /* balances_pkey, between scan_begin/end */
	Snapshot	snapshot;		/* the scan's */
	AttrNumber	bcol[PGM_B_NCOLS];	/* 1-based */
	AttrNumber	lcol[PGM_L_NCOLS];
	Datum		now;			/* now(): updated_at, created_at */
	Datum		kind_charge;	/* 'charge' */
} PgmLedgerWriter;
extern bool pgm_direct_writable(Relation rel, CmdType cmd, AclMode mode,
								bool *fk_check);
extern bool pgm_direct_insertable(Relation rel, AttrNumber fk_col,
								  Oid ref_relid, AttrNumber ref_col);
extern struct Node *pgm_column_default(Relation rel, AttrNumber attnum);
extern bool pgm_column_filled_by_insert(Form_pg_attribute att);
extern bool pgm_insert_fills_nothing_else(TupleDesc desc,
										  const AttrNumber *written, int n);
extern AttrNumber pgm_column_number(TupleDesc desc, const char *name,
									 Oid type, bool notnull);
extern void pgm_insert_row(Relation rel, struct TupleTableSlot *slot);
extern bool pgm_writer_open(PgmLedgerWriter *w, bool update_balances);
extern void pgm_writer_close(PgmLedgerWriter *w);
extern void pgm_writer_check(PgmLedgerWriter *w, struct ResultRelInfo *rri,
							 struct TupleTableSlot *slot);
extern void pgm_writer_scan_begin(PgmLedgerWriter *w, Snapshot snapshot);
extern void pgm_writer_scan_end(PgmLedgerWriter *w);
extern bool pgm_writer_find(PgmLedgerWriter *w, const pg_uuid_t *user,
							struct TupleTableSlot *slot);
extern TM_Result pgm_writer_lock(PgmLedgerWriter *w, ItemPointer tid,
								 struct TupleTableSlot *slot,
								 LockTupleMode mode);
extern bool pgm_writer_update_fires_fk(PgmLedgerWriter *w,
									   HeapTuple oldtup);
extern TM_Result pgm_writer_update(PgmLedgerWriter *w, ItemPointer tid,
								   struct TupleTableSlot *newslot,
								   CommandId cid, LockTupleMode *lockmode);
extern void pgm_writer_charge_entry(PgmLedgerWriter *w,
									struct TupleTableSlot *slot,
									int64 entry_id, const pg_uuid_t *user,
									int64 amount, int64 available,
									Datum model_id, int64 tokens, Datum key);
extern void pgm_writer_insert_entries(PgmLedgerWriter *w,
									  struct TupleTableSlot **slots,
									  struct TupleTableSlot **index_order,
									  int k, CommandId cid);

/* ================================================================
 * Features: C entry points that other features may call
 * ================================================================
 */

/* ledger.c: charges and holds for the other features, never through SQL */
typedef struct PgmLedgerOutcome
{
	int64		entry_id;
	const char *kind;			/* "deposit", "charge" or "refund" */
	int64		amount;
	int64		available;
	bool		replayed;
} PgmLedgerOutcome;

extern void pgm_charge_args(FunctionCallInfo fcinfo, int model_arg,
							int tokens_arg, text **model_id, int64 *tokens);
extern Interval *pgm_ttl_arg(FunctionCallInfo fcinfo, int argno);
extern void pgm_ledger_charge(Datum user_id, int64 amount, text *model_id,
							  int64 tokens, text *key, PgmLedgerOutcome *out);
extern bool pgm_ledger_hold_key_used(Datum user_id, text *key);
extern int64 pgm_ledger_reserve(Datum user_id, int64 amount,
								Interval *ttl, text *key);
extern Datum pgm_ledger_result(FunctionCallInfo fcinfo, Datum user_id,
							   const PgmLedgerOutcome *out);
extern void pgm_ledger_import_entry(Datum user_id, bool charge, int64 amount,
									text *model_id, int64 tokens, text *key,
									text *note, Datum created_at,
									bool has_created_at,
									PgmLedgerOutcome *out);

/* passwords.c: password hashes, for accounts.c and sealed.c */
extern char *pgm_password_arg(FunctionCallInfo fcinfo, int argno, size_t *len);
extern char *pgm_argon2id_hash(const char *password, size_t len);
extern void pgm_check_hash_to_store(const char *hash, const char *what);
extern bool pgm_password_login(const char *password, size_t len,
							   const char *stored, bool active, char **rehash);
extern bool pgm_hash_costs_at_least_standard(const char *hash);

/* accounts.c: the username rule, for profiles.c */
extern void pgm_check_username(const char *username);
/* the 23505 of an email or username taken, for profiles.c */
extern void pgm_raise_account_taken(bool email_taken, const char *email,
									const char *username) pg_attribute_noreturn();
/* the tombstone shapes of erase_user, which no other call writes */
#define PGM_TOMBSTONE_DOMAIN		"@erased.invalid"
#define PGM_TOMBSTONE_USER_PREFIX	"erased-"
extern void pgm_check_not_tombstone(const char *email, const char *username);
/* resets.c: use up the user's open reset tokens (SPI connected) */
extern void pgm_use_up_resets(Datum user_id);

/* emails.c: the one spelling of an address, for accounts.c */
extern char *pgm_normalize_email(text *raw);
extern void pgm_login_forms(const char *login, char **email, char **username);

/* audit.c: its setting, and an event that another feature records */
extern void pgm_audit_init(void);
extern void pgm_audit_record_event(const char *table_name,
								   const char *operation, Datum details);

/* apikeys.c: the keys follow their user's active flag, for accounts.c,
 * profiles.c and erasure.c (SPI connected) */
extern void pgm_api_keys_follow_user(Datum user_id);

/* ratelimit.c: tiers and the rate limiter, for apikeys.c */
extern void pgm_ratelimit_init(void);
extern text *pgm_tier_arg(FunctionCallInfo fcinfo, int argno, const char *argname);
extern void pgm_tier_must_exist(text *tier);
extern void pgm_ratelimit_admit(const pg_uuid_t *key_id, Datum tier,
								int64 tokens, const char *key_prefix);
extern void pgm_ratelimit_peek(const pg_uuid_t *key_id, Datum tier,
							   bool *allowed, int64 *retry_ms,
							   int64 *remaining, bool *has_remaining);

/*
 * personal.c: personal values of the audit trail under per-user keys, for
 * audit.c (the trigger) and erasure.c (erase_user)
 */
struct RelationData;
struct Trigger;
struct JsonbValue;
extern bool pgm_personal_columns(struct RelationData *rel,
								 struct Trigger *trigger,
								 AttrNumber *owner_attno, bool *personal);
extern void pgm_personal_seal(Datum owner, bool owner_null, const char *column,
							  struct JsonbValue *v, int *key_state,
							  unsigned char *key);
extern bool pgm_personal_destroy(Datum user_id);
extern bool pgm_personal_erased(Datum user_id);

/* sealed.c: the sealed forms of the password and platform key calls */
extern void pgm_sealed_init(void);

#endif							/* PGMARKET_H */
