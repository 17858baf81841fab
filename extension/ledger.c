/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  The credit ledger: add_funds, deduct_balance, refund, get_balance,
 *	  ledger_entries, and the two-phase reserve / settle / release.
 *
 * Every operation follows the per-user lock protocol of userlock.c, whose
 * comment states the concurrency rules: one row lock per user, keys
 * inserted under it, several users locked in uuid order, expired holds
 * swept by whoever sees them first.
 *
 * The other feature files charge and reserve through pgm_ledger_charge()
 * and pgm_ledger_reserve(), the C entry points below, never through SQL:
 * the SQL functions deduct_balance and reserve are thin wrappers that
 * check their arguments and call the same entry points.
 *
 * Each SQL statement is prepared once per backend (SPI_keepplan).  Scalars are
 * copied out of SPI results before SPI_finish; result tuples are built in the
 * caller's memory context after it.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "access/xact.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pgm_add_funds);
PG_FUNCTION_INFO_V1(pgm_deduct_balance);
PG_FUNCTION_INFO_V1(pgm_refund);
PG_FUNCTION_INFO_V1(pgm_get_balance);
PG_FUNCTION_INFO_V1(pgm_ledger_entries);
PG_FUNCTION_INFO_V1(pgm_reserve);
PG_FUNCTION_INFO_V1(pgm_settle);
PG_FUNCTION_INFO_V1(pgm_release);
PG_FUNCTION_INFO_V1(pgm_expire_reservations);

/* A reservation lives at least this long and at most this long. */
#define PGM_MAX_TTL_USEC	(INT64CONST(7) * USECS_PER_DAY)

/* What an earlier entry with the same idempotency key recorded. */
typedef struct PriorEntry
{
	int64		entry_id;
	char	   *kind;
	int64		amount;
	int64		available;
	char	   *model_id;
	int64		tokens_used;
	char	   *note;
	int64		refund_of;
	bool		refund_of_null;
} PriorEntry;

/* ----------------------------------------------------------------
 * Prepared statements
 * ----------------------------------------------------------------
 */
static SPIPlanPtr plan_find_key;
static SPIPlanPtr plan_credit;
static SPIPlanPtr plan_debit;
static SPIPlanPtr plan_adjust;
static SPIPlanPtr plan_insert;
static SPIPlanPtr plan_insert_keyed;
static SPIPlanPtr plan_charge_of;
static SPIPlanPtr plan_reserve;
static SPIPlanPtr plan_insert_hold;
static SPIPlanPtr plan_find_hold_key;
static SPIPlanPtr plan_hold;
static SPIPlanPtr plan_close_hold;
static SPIPlanPtr plan_live_holds;
static SPIPlanPtr plan_balance;
static SPIPlanPtr plan_entries;
static SPIPlanPtr plan_entries_before;
static SPIPlanPtr plan_expired_users;
static SPIPlanPtr plan_charge;
static SPIPlanPtr plan_insert_dated;

/*
 * A charge without a key in one statement: the conditional UPDATE of the
 * balance row and the INSERT of its entry; the available recorded is the
 * row's after the charge, plus what extra adds (the escrow slots' money,
 * below).  charge_direct writes exactly this without the executor.
 */
#define CHARGE_SQL(extra) \
	"WITH b AS (" \
	"  UPDATE pgmarket.balances b SET spent = b.spent + $2, updated_at = now()" \
	"   WHERE b.user_id = $1 AND b.active AND b.total - b.spent - b.reserved >= $2" \
	"     AND (b.next_expiry IS NULL OR b.next_expiry > now())" \
	"  RETURNING b.total - b.spent - b.reserved" extra " AS available)" \
	"INSERT INTO pgmarket.ledger (entry_id, user_id, kind, amount," \
	"       available, model_id, tokens_used)" \
	"SELECT nextval('pgmarket.ledger_entry_id_seq'), $1, 'charge', $2," \
	"       b.available, $3, $4 FROM b" \
	" RETURNING entry_id, available"

static const PgmPlanDef ledger_plans[] = {
	{&plan_find_key,
		"SELECT entry_id, kind, amount, available, model_id, tokens_used,"
		"       note, refund_of"
		"  FROM pgmarket.ledger"
		" WHERE user_id = $1 AND idempotency_key = $2",
		2, {UUIDOID, TEXTOID}},

	/* add_funds: the new total stays below the limit */
	{&plan_credit,
		"UPDATE pgmarket.balances SET total = total + $2, updated_at = now()"
		" WHERE user_id = $1 AND active"
		"   AND total <= 8999999999999999999 - $2"
		" RETURNING total - spent - reserved,"
		"           coalesce(next_expiry <= now(), false)",
		2, {UUIDOID, INT8OID}},

	/* deduct_balance: only if the charge fits in what is available */
	{&plan_debit,
		"UPDATE pgmarket.balances SET spent = spent + $2, updated_at = now()"
		" WHERE user_id = $1 AND active AND total - spent - reserved >= $2"
		" RETURNING total - spent - reserved,"
		"           coalesce(next_expiry <= now(), false)",
		2, {UUIDOID, INT8OID}},

	/* a change of a locked row: total, spent and reserved deltas */
	{&plan_adjust,
		"UPDATE pgmarket.balances"
		"   SET total = total + $2, spent = spent + $3,"
		"       reserved = reserved + $4, updated_at = now()"
		" WHERE user_id = $1"
		" RETURNING total - spent - reserved",
		4, {UUIDOID, INT8OID, INT8OID, INT8OID}},

	{&plan_insert,
		"INSERT INTO pgmarket.ledger (entry_id, user_id, kind, amount,"
		"       available, model_id, tokens_used, idempotency_key, note,"
		"       refund_of, reservation_id)"
		" VALUES (nextval('pgmarket.ledger_entry_id_seq'), $1, $2, $3, $4,"
		"         $5, $6, $7, $8, $9, $10)"
		" RETURNING entry_id",
		10, {UUIDOID, TEXTOID, INT8OID, INT8OID, TEXTOID, INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID}},

	{&plan_insert_keyed,
		"INSERT INTO pgmarket.ledger (entry_id, user_id, kind, amount,"
		"       available, model_id, tokens_used, idempotency_key, note,"
		"       refund_of, reservation_id)"
		" VALUES (nextval('pgmarket.ledger_entry_id_seq'), $1, $2, $3, $4,"
		"         $5, $6, $7, $8, $9, $10)"
		" ON CONFLICT (user_id, idempotency_key)"
		"   WHERE idempotency_key IS NOT NULL DO NOTHING"
		" RETURNING entry_id",
		10, {UUIDOID, TEXTOID, INT8OID, INT8OID, TEXTOID, INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID}},

	/* the charge a refund refers to, and what has been refunded of it */
	{&plan_charge_of,
		"SELECT c.kind, c.amount, c.model_id,"
		"       (SELECT coalesce(sum(r.amount), 0)::bigint FROM pgmarket.ledger r"
		"         WHERE r.user_id = $1 AND r.refund_of = $2"
		"           AND r.kind = 'refund')"
		"  FROM pgmarket.ledger c WHERE c.user_id = $1 AND c.entry_id = $2",
		2, {UUIDOID, INT8OID}},

	{&plan_reserve,
		"UPDATE pgmarket.balances SET reserved = reserved + $2,"
		"       next_expiry = least(next_expiry, now() + $3),"
		"       updated_at = now()"
		" WHERE user_id = $1 AND active AND total - spent - reserved >= $2"
		" RETURNING coalesce(next_expiry <= now(), false)",
		3, {UUIDOID, INT8OID, INTERVALOID}},

	{&plan_insert_hold,
		"INSERT INTO pgmarket.reservations (user_id, amount, expires_at, ttl,"
		"       idempotency_key)"
		" VALUES ($1, $2, now() + $3, $3, $4)"
		" ON CONFLICT (user_id, idempotency_key)"
		"   WHERE idempotency_key IS NOT NULL DO NOTHING"
		" RETURNING reservation_id",
		4, {UUIDOID, INT8OID, INTERVALOID, TEXTOID}},

	{&plan_find_hold_key,
		"SELECT reservation_id, amount, ttl FROM pgmarket.reservations"
		" WHERE user_id = $1 AND idempotency_key = $2",
		2, {UUIDOID, TEXTOID}},

	{&plan_hold,
		"SELECT amount, state, expires_at, expires_at <= now()"
		"  FROM pgmarket.reservations"
		" WHERE user_id = $1 AND reservation_id = $2",
		2, {UUIDOID, INT8OID}},

	{&plan_close_hold,
		"UPDATE pgmarket.reservations"
		"   SET state = $2, settled_amount = $3, entry_id = $4,"
		"       closed_at = now()"
		" WHERE reservation_id = $1",
		4, {INT8OID, TEXTOID, INT8OID, INT8OID}},

	{&plan_live_holds,
		"SELECT coalesce(sum(amount), 0)::bigint FROM pgmarket.reservations"
		" WHERE user_id = $1 AND state = 'held' AND expires_at > now()",
		1, {UUIDOID}},

	{&plan_balance,
		"SELECT active, total, spent, reserved, updated_at,"
		"       coalesce(next_expiry <= now(), false)"
		"  FROM pgmarket.balances WHERE user_id = $1",
		1, {UUIDOID}},

	{&plan_entries,
		"SELECT entry_id, kind, amount, available, model_id, tokens_used,"
		"       idempotency_key, note, refund_of, created_at"
		"  FROM pgmarket.ledger WHERE user_id = $1"
		" ORDER BY entry_id DESC LIMIT $2",
		2, {UUIDOID, INT4OID, INT8OID}},

	{&plan_entries_before,
		"SELECT entry_id, kind, amount, available, model_id, tokens_used,"
		"       idempotency_key, note, refund_of, created_at"
		"  FROM pgmarket.ledger WHERE user_id = $1 AND entry_id < $3"
		" ORDER BY entry_id DESC LIMIT $2",
		3, {UUIDOID, INT4OID, INT8OID}},

	{&plan_expired_users,
		"SELECT DISTINCT user_id FROM pgmarket.reservations"
		" WHERE state = 'held' AND expires_at <= now()"
		" ORDER BY user_id",
		0, {InvalidOid}},

	/* deduct_balance without a key, when nothing stands in the way */
	{&plan_charge, CHARGE_SQL(""), 4, {UUIDOID, INT8OID, TEXTOID, INT8OID}},

	/* an imported entry, with the time its document gives it */
	{&plan_insert_dated,
		"INSERT INTO pgmarket.ledger (entry_id, user_id, kind, amount,"
		"       available, model_id, tokens_used, idempotency_key, note,"
		"       created_at)"
		" VALUES (nextval('pgmarket.ledger_entry_id_seq'), $1, $2, $3, $4,"
		"         $5, $6, $7, $8, coalesce($9, now()))"
		" ON CONFLICT (user_id, idempotency_key)"
		"   WHERE idempotency_key IS NOT NULL DO NOTHING"
		" RETURNING entry_id",
		9, {UUIDOID, TEXTOID, INT8OID, INT8OID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID}},
};

#define prepare_plans() PGM_PREPARE_PLANS(ledger_plans)

/* Does the schema of this call have escrow slots?  Set by prepare_ledger. */
static bool esc = false;

/*
 * The same writes where the schema has escrow slots (0.8.0, escrow.c):
 * what the balance row leaves out of the whole available is the money in
 * the user's slots, read only when balances.escrowed says there may be
 * some.  Each returns the money in the slots as its last column.
 */
#define SLOT_MONEY(b) \
	"CASE WHEN " b ".escrowed > 0 THEN" \
	" (SELECT coalesce(sum(es.amount), 0)::bigint" \
	"    FROM pgmarket.balance_slots es WHERE es.user_id = " b ".user_id)" \
	" ELSE 0 END"
#define SLOTS_STR2(n) #n
#define SLOTS_STR(n) SLOTS_STR2(n)

static SPIPlanPtr plan_credit_e;
static SPIPlanPtr plan_debit_e;
static SPIPlanPtr plan_adjust_e;
static SPIPlanPtr plan_balance_e;
static SPIPlanPtr plan_charge_e;
static SPIPlanPtr plan_slot_charge;
static SPIPlanPtr plan_slot_take;
static SPIPlanPtr plan_slot_undo;

/*
 * A charge from a slot: the user active, with no hold that may have
 * expired, and a slot that no one else holds with enough in it (SKIP
 * LOCKED: never a wait), tried from slot $5 on so that sessions spread.
 * The available recorded is the whole available as this statement sees
 * it: the balance row's, this slot's after the charge and the others'.
 */
#define SLOT_TAKE_SQL \
	"WITH m AS (" \
	"  SELECT b.total - b.spent - b.reserved AS main FROM pgmarket.balances b" \
	"   WHERE b.user_id = $1 AND b.active AND b.escrowed > 0" \
	"     AND (b.next_expiry IS NULL OR b.next_expiry > now()))," \
	" p AS (" \
	"  SELECT s.slot FROM pgmarket.balance_slots s, m" \
	"   WHERE s.user_id = $1 AND s.amount >= $2" \
	"   ORDER BY (s.slot + $3) % " SLOTS_STR(PGM_ESCROW_SLOTS) \
	"   LIMIT 1 FOR UPDATE OF s SKIP LOCKED)," \
	" u AS (" \
	"  UPDATE pgmarket.balance_slots s SET amount = s.amount - $2 FROM p" \
	"   WHERE s.user_id = $1 AND s.slot = p.slot" \
	"  RETURNING s.slot, s.amount)"
#define SLOT_AVAILABLE \
	"m.main + u.amount + (SELECT coalesce(sum(o.amount), 0)::bigint" \
	"   FROM pgmarket.balance_slots o WHERE o.user_id = $1 AND o.slot <> u.slot)"

static const PgmPlanDef escrow_ledger_plans[] = {
	{&plan_credit_e,
		"UPDATE pgmarket.balances b SET total = b.total + $2, updated_at = now()"
		" WHERE b.user_id = $1 AND b.active"
		"   AND b.total <= 8999999999999999999 - $2"
		" RETURNING b.total - b.spent - b.reserved,"
		"           coalesce(b.next_expiry <= now(), false), " SLOT_MONEY("b"),
		2, {UUIDOID, INT8OID}},

	{&plan_debit_e,
		"UPDATE pgmarket.balances b SET spent = b.spent + $2, updated_at = now()"
		" WHERE b.user_id = $1 AND b.active AND b.total - b.spent - b.reserved >= $2"
		" RETURNING b.total - b.spent - b.reserved,"
		"           coalesce(b.next_expiry <= now(), false), " SLOT_MONEY("b"),
		2, {UUIDOID, INT8OID}},

	{&plan_adjust_e,
		"UPDATE pgmarket.balances b"
		"   SET total = b.total + $2, spent = b.spent + $3,"
		"       reserved = b.reserved + $4, updated_at = now()"
		" WHERE b.user_id = $1"
		" RETURNING b.total - b.spent - b.reserved, " SLOT_MONEY("b"),
		4, {UUIDOID, INT8OID, INT8OID, INT8OID}},

	{&plan_balance_e,
		"SELECT b.active, b.total, b.spent, b.reserved, b.updated_at,"
		"       coalesce(b.next_expiry <= now(), false), " SLOT_MONEY("b")
		"  FROM pgmarket.balances b WHERE b.user_id = $1",
		1, {UUIDOID}},

	{&plan_charge_e, CHARGE_SQL(" + " SLOT_MONEY("b")),
		4, {UUIDOID, INT8OID, TEXTOID, INT8OID}},

	{&plan_slot_charge,
		SLOT_TAKE_SQL
		"INSERT INTO pgmarket.ledger (entry_id, user_id, kind, amount,"
		"       available, model_id, tokens_used)"
		"SELECT nextval('pgmarket.ledger_entry_id_seq'), $1, 'charge', $2,"
		"       " SLOT_AVAILABLE ", $4, $5 FROM u, m"
		" RETURNING entry_id, available",
		5, {UUIDOID, INT8OID, INT4OID, TEXTOID, INT8OID}},

	{&plan_slot_take,
		SLOT_TAKE_SQL
		"SELECT u.slot, " SLOT_AVAILABLE " FROM u, m",
		3, {UUIDOID, INT8OID, INT4OID}},

	{&plan_slot_undo,
		"UPDATE pgmarket.balance_slots SET amount = amount + $3"
		" WHERE user_id = $1 AND slot = $2",
		3, {UUIDOID, INT4OID, INT8OID}},
};

/* Prepare the plans; true when the schema has escrow slots. */
static bool
prepare_ledger(void)
{
	prepare_plans();
	esc = pgm_escrow_on();
	if (esc)
		PGM_PREPARE_PLANS(escrow_ledger_plans);
	return esc;
}

/* ----------------------------------------------------------------
 * Small helpers
 * ----------------------------------------------------------------
 */

static inline bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* The entry an idempotency key was used for, if any. */
static bool
find_key(Datum user_id, text *key, PriorEntry *prior)
{
	Datum		values[2] = {user_id, PointerGetDatum(key)};
	bool		isnull;

	pgm_exec(plan_find_key, values, NULL, false);
	if (SPI_processed == 0)
		return false;
	prior->entry_id = pgm_col_int64(0, 1);
	prior->kind = pgm_col_text(0, 2);
	prior->amount = pgm_col_int64(0, 3);
	prior->available = pgm_col_int64(0, 4);
	prior->model_id = pgm_col_text(0, 5);
	prior->tokens_used = pgm_col_int64(0, 6);
	prior->note = pgm_col_text(0, 7);
	prior->refund_of = pgm_col_int64(0, 8);
	(void) pgm_col(0, 8, &isnull);
	prior->refund_of_null = isnull;
	return true;
}

/*
 * A key was used before: the result of the first call if the arguments are
 * the same, else PM003.  same_args is decided by the caller.
 */
static void
replay(Datum user_id, text *key, const PriorEntry *prior, bool same_args,
	   PgmLedgerOutcome *out)
{
	if (!same_args)
		ereport(ERROR,
				(errcode(ERRCODE_PGM_IDEMPOTENCY_CONFLICT),
				 errmsg("idempotency key \"%s\" was already used with other arguments",
						text_to_cstring(key)),
				 errdetail("It was used by the %s of %s credits recorded as entry %lld for user %s.",
						   prior->kind, pgm_micro_to_cstring(prior->amount),
						   (long long) prior->entry_id, pgm_uuid_cstring(user_id))));
	out->entry_id = prior->entry_id;
	out->kind = prior->kind;
	out->amount = prior->amount;
	out->available = prior->available;
	out->replayed = true;
}

/*
 * Insert a ledger entry for a user whose balance row is locked and already
 * changed.  Returns false when a concurrent call committed the same key
 * first (only possible when key is not NULL).
 */
static bool
insert_entry(Datum user_id, const char *kind, int64 amount, int64 available,
			 text *model_id, int64 tokens, text *key, text *note,
			 int64 refund_of, bool has_refund_of, int64 reservation_id,
			 bool has_reservation, int64 *entry_id)
{
	Datum		values[10];
	char		nulls[10];

	values[0] = user_id;
	values[1] = CStringGetTextDatum(kind);
	values[2] = Int64GetDatum(amount);
	values[3] = Int64GetDatum(available);
	values[5] = Int64GetDatum(tokens);
	values[8] = Int64GetDatum(refund_of);
	values[9] = Int64GetDatum(reservation_id);
	memset(nulls, ' ', sizeof(nulls));
	pgm_bind_ptr(values, nulls, 4, model_id);
	pgm_bind_ptr(values, nulls, 6, key);
	pgm_bind_ptr(values, nulls, 7, note);
	if (!has_refund_of)
		nulls[8] = 'n';
	if (!has_reservation)
		nulls[9] = 'n';

	pgm_exec(key ? plan_insert_keyed : plan_insert, values, nulls, false);
	if (SPI_processed != 1)
		return false;
	*entry_id = pgm_col_int64(0, 1);
	return true;
}

/* Change a locked balance row by deltas; returns the new available. */
static int64
adjust_balance(Datum user_id, int64 d_total, int64 d_spent, int64 d_reserved)
{
	Datum		values[4] = {user_id, Int64GetDatum(d_total),
	Int64GetDatum(d_spent), Int64GetDatum(d_reserved)};

	pgm_exec(esc ? plan_adjust_e : plan_adjust, values, NULL, false);
	if (SPI_processed != 1)
		elog(ERROR, "balance row of user %s vanished", pgm_uuid_cstring(user_id));
	return pgm_col_int64(0, 1) + (esc ? pgm_col_int64(0, 2) : 0);
}

/*
 * The available balance after a write of the balance row by plan_credit or
 * plan_debit (or their _e forms), which are the last SPI result: the
 * row's, after a sweep of expired holds when the row says there are any,
 * plus the money in the user's slots.  The row's own part goes to
 * *row_part when that is not NULL.
 */
static int64
written_available(Datum user_id, int64 *row_part)
{
	int64		main = pgm_col_int64(0, 1);
	int64		money = esc ? pgm_col_int64(0, 3) : 0;

	if (pgm_col_bool(0, 2))
	{
		pgm_sweep_expired_holds(user_id, &main);
		money = pgm_escrow_money(user_id);
	}
	if (row_part)
		*row_part = main;
	return main + money;
}

/*
 * Build a ledger_result datum in the caller's context (after SPI_finish):
 * the result of every call that charges, deposits or refunds.
 */
Datum
pgm_ledger_result(FunctionCallInfo fcinfo, Datum user_id,
				  const PgmLedgerOutcome *out)
{
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	values[0] = Int64GetDatum(out->entry_id);
	values[1] = user_id;
	values[2] = CStringGetTextDatum(out->kind);
	values[3] = pgm_micro_to_numeric(out->amount);
	values[4] = pgm_micro_to_numeric(out->available);
	values[5] = BoolGetDatum(out->replayed);
	return pgm_result_row(fcinfo, values, nulls);
}

/*
 * Check the arguments every charge has: model_id (required, bounded) and
 * tokens_used (required, not negative).
 */
void
pgm_charge_args(FunctionCallInfo fcinfo, int model_arg, int tokens_arg,
					   text **model_id, int64 *tokens)
{
	pgm_require_arg(fcinfo, model_arg, "model_id");
	*model_id = pgm_optional_text(fcinfo, model_arg, "model_id",
								  PGM_MAX_MODEL_ID_LEN);
	pgm_require_arg(fcinfo, tokens_arg, "tokens_used");
	*tokens = PG_GETARG_INT64(tokens_arg);
	if (*tokens < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tokens_used %lld must not be negative",
						(long long) *tokens)));
}

/*
 * The deposit's write: the balance row credited (values: user_id, amount),
 * with SPI_processed the row it credited.  PM002 for a user who cannot be
 * credited, 22003 for a total past the balance limit.
 */
static void
credit(Datum *values, Datum user_id, int64 amount)
{
	pgm_exec(esc ? plan_credit_e : plan_credit, values, NULL, false);
	if (SPI_processed != 1)
	{
		PgmAccountState state;

		pgm_account_state(user_id, &state);
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("adding %s credits to user %s would take the balance past its limit",
						pgm_micro_to_cstring(amount), pgm_uuid_cstring(user_id)),
				 errdetail("The total is %s credits; balances stay below 9000000000000 credits.",
						   pgm_micro_to_cstring(state.total))));
	}
}

/* ----------------------------------------------------------------
 * add_funds(user_id, amount, idempotency_key, note)
 * ----------------------------------------------------------------
 */
Datum
pgm_add_funds(PG_FUNCTION_ARGS)
{
	Datum		user_id;
	int64		amount;
	text	   *key;
	text	   *note;
	PgmLedgerOutcome out = {0, "deposit", 0, 0, false};
	PriorEntry	prior;
	Datum		values[2];

	pgm_user_arg(fcinfo, 0);
	pgm_require_arg(fcinfo, 1, "amount");
	user_id = PG_GETARG_DATUM(0);
	amount = pgm_numeric_to_micro(PG_GETARG_DATUM(1), "amount");
	key = pgm_optional_text(fcinfo, 2, "idempotency_key", PGM_MAX_IDEM_KEY_LEN);
	note = pgm_optional_text(fcinfo, 3, "note", PGM_MAX_NOTE_LEN);
	out.amount = amount;

	pgm_spi_connect();
	(void) prepare_ledger();

	if (key && find_key(user_id, key, &prior))
	{
		pgm_check_user(user_id, false);
		replay(user_id, key, &prior,
			   str_eq(prior.kind, "deposit") && prior.amount == amount &&
			   str_eq(prior.note, note ? text_to_cstring(note) : NULL),
			   &out);
	}
	else
	{
		values[0] = user_id;
		values[1] = Int64GetDatum(amount);
		pgm_queue_for_user(user_id);
		credit(values, user_id, amount);
		out.available = written_available(user_id, NULL);

		if (!insert_entry(user_id, "deposit", amount, out.available, NULL, 0,
						  key, note, 0, false, 0, false, &out.entry_id))
		{
			/* a concurrent call with this key committed first */
			adjust_balance(user_id, -amount, 0, 0);
			if (!find_key(user_id, key, &prior))
				elog(ERROR, "idempotency key conflict without a visible entry");
			replay(user_id, key, &prior,
				   str_eq(prior.kind, "deposit") && prior.amount == amount &&
				   str_eq(prior.note, note ? text_to_cstring(note) : NULL),
				   &out);
		}
	}

	pgm_spi_finish();
	PG_RETURN_DATUM(pgm_ledger_result(fcinfo, user_id, &out));
}

/* ----------------------------------------------------------------
 * deduct_balance(user_id, amount, model_id, tokens_used, idempotency_key)
 * ----------------------------------------------------------------
 */
static inline bool
same_charge(const PriorEntry *prior, int64 amount, text *model_id, int64 tokens)
{
	return str_eq(prior->kind, "charge") && prior->amount == amount &&
		str_eq(prior->model_id, text_to_cstring(model_id)) &&
		prior->tokens_used == tokens;
}

/* PM001 with the numbers that explain it. */
static void
raise_insufficient(Datum user_id, int64 amount, int64 available,
				   const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_PGM_INSUFFICIENT_FUNDS),
			 errmsg("insufficient funds: %s of %s credits exceeds the available balance of %s credits",
					what, pgm_micro_to_cstring(amount),
					pgm_micro_to_cstring(available)),
			 errdetail("User %s.", pgm_uuid_cstring(user_id))));
}

/*
 * Take amount out of a user's available balance (spent or reserved, as the
 * plan says): run the conditional UPDATE; if it finds no row, tell an unknown
 * user from a short balance, sweeping expired holds once and trying again
 * when they are what stands in the way.  Returns true with the row locked,
 * or false when the money is short because a concurrent call with the same
 * idempotency key (found by key_plan) committed first.
 */
static bool
take_available(SPIPlanPtr plan, Datum *values, Datum user_id, int64 amount,
			   const char *what, SPIPlanPtr key_plan, text *key)
{
	PgmAccountState state;
	bool		swept = false;
	bool		reclaimed = false;
	bool		had_queue = esc && pgm_queue_held(user_id);
	int64		money = 0;

	pgm_queue_for_user(user_id);

	for (;;)
	{
		pgm_exec(plan, values, NULL, false);
		if (SPI_processed == 1)
			return true;

		pgm_account_state(user_id, &state);

		/*
		 * The slots come before the sweep of expired holds: the sweep writes
		 * the balance row, and a call that holds the row can no longer
		 * gather the slots (escrow.c's lock order); gathering takes the row
		 * and sweeps anyway.
		 */
		if (esc && !reclaimed && (money = pgm_escrow_money(user_id)) > 0)
		{
			/*
			 * Short in the balance row, with money in the slots: bring it
			 * back and try again.  When this call took the queue lock and
			 * has written nothing under it, give the lock back so that the
			 * slots can be gathered first (escrow.c's lock order); the
			 * charges that hold slots then finish before the money is
			 * counted.
			 */
			if (!had_queue && !swept && pgm_queue_held(user_id))
				pgm_queue_release(user_id);
			(void) pgm_escrow_gather(user_id);
			pgm_lock_user(user_id);
			pgm_escrow_reclaim(user_id);
			reclaimed = swept = true;
			continue;
		}
		if (state.holds_expired && !swept)
		{
			pgm_lock_user(user_id);	/* sweeps the expired holds */
			swept = true;
			continue;
		}

		/*
		 * A concurrent call with the same key may have committed while this
		 * one waited, taking the money this one was looking for: then this
		 * call is a repeat, not a charge that does not fit.
		 */
		if (key != NULL)
		{
			Datum		key_args[2] = {user_id, PointerGetDatum(key)};

			pgm_exec(key_plan, key_args, NULL, false);
			if (SPI_processed > 0)
				return false;
		}
		if (esc && reclaimed)
			money = pgm_escrow_money(user_id);
		raise_insufficient(user_id, amount, state.available + money, what);
	}
}

/* What charge_direct did. */
typedef enum DirectCharge
{
	DIRECT_CHARGED,				/* the charge is written, *out says how */
	DIRECT_NO_ROW,				/* nothing written: CHARGE_SQL finds no row */
	DIRECT_USE_SQL				/* nothing written: run CHARGE_SQL instead */
} DirectCharge;

/* int8 arithmetic as SQL's: 22003 when it wraps */
static inline int64
int8_checked(bool wrapped, int64 r)
{
	if (wrapped)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("bigint out of range")));
	return r;
}

static inline int64
int8_add(int64 a, int64 b)
{
	int64		r;
	bool		wrapped = pg_add_s64_overflow(a, b, &r);

	return int8_checked(wrapped, r);
}

static inline int64
int8_sub(int64 a, int64 b)
{
	int64		r;
	bool		wrapped = pg_sub_s64_overflow(a, b, &r);

	return int8_checked(wrapped, r);
}

/*
 * charge_direct's writes, with the writer open and the statement's
 * snapshot active: CHARGE_SQL step by step, as the executor runs it under
 * READ COMMITTED.  The UPDATE: the version of the row the snapshot sees,
 * its WHERE clause evaluated, the new version (spent + amount, updated_at
 * now()) written in its place, waiting for a concurrent writer of the row;
 * when that writer changed the row, the newest version is locked and
 * evaluated again (EvalPlanQual), and a version that no longer qualifies
 * means no row.  Then the INSERT: the next id of the ledger's sequence and
 * the entry.  A row whose escrowed is above zero has money in escrow
 * slots, which the statement's RETURNING adds to the available it reports
 * (SLOT_MONEY, read under the same snapshot).  DIRECT_USE_SQL, before
 * anything is written, where the statement would do more than this: a row
 * whose update would fire its foreign key's check
 * (pgm_writer_update_fires_fk).
 */
static DirectCharge
charge_write(PgmLedgerWriter *w, Oid seqid, Datum user_id, int64 amount,
			 text *model_id, int64 tokens, PgmLedgerOutcome *out)
{
	TupleDesc	desc = RelationGetDescr(w->balances);
	AttrNumber *bcol = w->bcol;
	TupleTableSlot *row = table_slot_create(w->balances, NULL);
	TupleTableSlot *newslot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
	TupleTableSlot *entry = NULL;
	Datum	   *values = palloc0(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc0(sizeof(bool) * desc->natts);
	bool	   *replace = palloc0(sizeof(bool) * desc->natts);
	CommandId	cid = GetCurrentCommandId(true);
	DirectCharge res = DIRECT_NO_ROW;
	int64		available = 0;

	replace[bcol[PGM_B_SPENT] - 1] = true;
	replace[bcol[PGM_B_UPDATED_AT] - 1] = true;
	values[bcol[PGM_B_UPDATED_AT] - 1] = w->now;

	pgm_writer_scan_begin(w, GetActiveSnapshot());
	if (pgm_writer_find(w, DatumGetUUIDP(user_id), row))
	{
		for (;;)
		{
			HeapTuple	tup = ExecFetchSlotHeapTuple(row, false, NULL);
			bool		isnull;
			Datum		expiry;
			int64		total;
			int64		spent;
			int64		reserved;
			ItemPointerData tid;
			LockTupleMode lockmode;
			TM_Result	result;

			/* the UPDATE's WHERE clause; active, total, ... are NOT NULL */
			if (!DatumGetBool(heap_getattr(tup, bcol[PGM_B_ACTIVE], desc, &isnull)))
				break;
			total = DatumGetInt64(heap_getattr(tup, bcol[PGM_B_TOTAL], desc, &isnull));
			spent = DatumGetInt64(heap_getattr(tup, bcol[PGM_B_SPENT], desc, &isnull));
			reserved = DatumGetInt64(heap_getattr(tup, bcol[PGM_B_RESERVED], desc, &isnull));
			if (int8_sub(int8_sub(total, spent), reserved) < amount)
				break;
			expiry = heap_getattr(tup, bcol[PGM_B_NEXT_EXPIRY], desc, &isnull);
			if (!isnull &&
				DatumGetTimestampTz(expiry) <= DatumGetTimestampTz(w->now))
				break;
			if (pgm_writer_update_fires_fk(w, tup))
			{
				res = DIRECT_USE_SQL;
				break;
			}

			/* SET spent = spent + $2, updated_at = now() */
			spent = int8_add(spent, amount);
			values[bcol[PGM_B_SPENT] - 1] = Int64GetDatum(spent);
			ExecStoreHeapTuple(heap_modify_tuple(tup, desc, values, nulls, replace),
							   newslot, true);
			tid = row->tts_tid;
			result = pgm_writer_update(w, &tid, newslot, cid, &lockmode);
			ExecClearTuple(newslot);
			if (result == TM_Ok)
			{
				/* RETURNING total - spent - reserved [+ SLOT_MONEY] */
				available = int8_sub(int8_sub(total, spent), reserved);
				if (esc && bcol[PGM_B_ESCROWED] != InvalidAttrNumber &&
					DatumGetInt64(heap_getattr(tup, bcol[PGM_B_ESCROWED],
											   desc, &isnull)) > 0)
					available = int8_add(available,
										 pgm_escrow_money_read(GetActiveSnapshot(),
															   user_id));
				res = DIRECT_CHARGED;
				break;
			}
			if (result == TM_Deleted)
				break;
			if (result != TM_Updated)
				elog(ERROR, "could not update the balance row of user %s (%d)",
					 pgm_uuid_cstring(user_id), (int) result);
			/* changed under us: lock the newest version, evaluate it again */
			result = pgm_writer_lock(w, &tid, row, lockmode);
			if (result == TM_Deleted)
				break;
			if (result != TM_Ok)
				elog(ERROR, "could not lock the balance row of user %s (%d)",
					 pgm_uuid_cstring(user_id), (int) result);
		}
	}
	pgm_writer_scan_end(w);
	ExecDropSingleTupleTableSlot(row);
	ExecDropSingleTupleTableSlot(newslot);

	if (res == DIRECT_CHARGED)
	{
		/* INSERT ... SELECT nextval(...), ... FROM b RETURNING entry_id */
		out->entry_id = nextval_internal(seqid, true);
		out->available = available;
		entry = MakeSingleTupleTableSlot(RelationGetDescr(w->ledger),
										 &TTSOpsHeapTuple);
		pgm_writer_charge_entry(w, entry, out->entry_id,
								DatumGetUUIDP(user_id), amount, available,
								PointerGetDatum(model_id), tokens, (Datum) 0);
		pgm_writer_insert_entries(w, &entry, NULL, 1, cid);
		ExecDropSingleTupleTableSlot(entry);
	}
	return res;
}

/*
 * CHARGE_SQL written directly (heapwrite.c): what the statement writes,
 * without SPI, the plan cache and the executor.  The statement's rules of
 * visibility are kept: the command counter advanced and a new snapshot
 * taken as SPI does before a statement (READ COMMITTED only:
 * pgm_writer_open refuses the others).  DIRECT_USE_SQL, having written
 * nothing, where pgm_writer_open or charge_write say the statement would
 * write something else.
 */
typedef DirectCharge (*DirectWrite) (PgmLedgerWriter *w, Oid seqid,
									 Datum user_id, int64 amount,
									 text *model_id, int64 tokens,
									 PgmLedgerOutcome *out);

static DirectCharge
charge_direct(DirectWrite write, bool update_balances, Datum user_id,
			  int64 amount, text *model_id, int64 tokens, PgmLedgerOutcome *out)
{
	MemoryContext cxt;
	MemoryContext old;
	PgmLedgerWriter w;
	Oid			seqid;
	DirectCharge res = DIRECT_USE_SQL;

	if (model_id == NULL)
		return DIRECT_USE_SQL;
	seqid = get_relname_relid("ledger_entry_id_seq",
							  get_namespace_oid("pgmarket", false));
	if (!OidIsValid(seqid))
		return DIRECT_USE_SQL;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "pgmarket charge",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	if (pgm_writer_open(&w, update_balances))
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		CommandCounterIncrement();
		UpdateActiveSnapshotCommandId();
		res = write(&w, seqid, user_id, amount, model_id, tokens, out);
		PopActiveSnapshot();
		pgm_writer_close(&w);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return res;
}

/*
 * A charge without an idempotency key, in one statement: the conditional
 * UPDATE of the balance and the INSERT of its entry (CHARGE_SQL), written
 * directly where that is what the statement writes.  Returns false, having
 * changed nothing, when the user is unknown or short of money or has holds
 * that may have expired; the caller then takes the general path, which
 * tells those cases apart.
 */
static bool
charge_at_once(Datum user_id, int64 amount, text *model_id, int64 tokens,
			   PgmLedgerOutcome *out)
{
	Datum		values[4] = {user_id, Int64GetDatum(amount),
	PointerGetDatum(model_id), Int64GetDatum(tokens)};

	switch (charge_direct(charge_write, true, user_id, amount, model_id,
						  tokens, out))
	{
		case DIRECT_CHARGED:
			return true;
		case DIRECT_NO_ROW:
			return false;
		case DIRECT_USE_SQL:
			break;
	}
	pgm_exec(esc ? plan_charge_e : plan_charge, values, NULL, false);
	if (SPI_processed != 1)
		return false;
	out->entry_id = pgm_col_int64(0, 1);
	out->available = pgm_col_int64(0, 2);
	return true;
}

/* Where a session starts looking for a free slot: sessions spread out. */
static inline Datum
slot_offset(void)
{
	return Int32GetDatum(MyProcPid % PGM_ESCROW_SLOTS);
}

/* A user's escrow slots by index, from a slot number on. */
static PgmIndexRef slots_from = {
	"balance_slots", "balance_slots_pkey", 2,
	{BTEqualStrategyNumber, BTGreaterEqualStrategyNumber},
	2, {"slot", "amount"}, {INT4OID, INT8OID}
};

/* What lock_free_slot found. */
typedef enum SlotFound
{
	SLOT_LOCKED,				/* a slot, locked: the scan is on it */
	SLOT_NONE,					/* no slot that qualifies */
	SLOT_STATEMENT				/* a slot the statement must write */
} SlotFound;

/*
 * SLOT_TAKE_SQL's p, over the slots of scan in its order and below slot
 * number `below`: the first slot whose version the snapshot sees holds
 * amount and that is locked FOR UPDATE without waiting (SKIP LOCKED), and
 * whose newest version, now locked, still holds it (the statement's
 * recheck; a slot that fails it stays locked, as the statement leaves it,
 * and is noted as held, so that this transaction does not wait to gather
 * the user's slots later: escrow.c's lock order).
 * *seen gets its amount as the snapshot saw it.  Before a slot is locked,
 * whether it may be written directly (pgm_index_can_update, which takes
 * the table's lock for an UPDATE first, as the statement takes it when it
 * starts): SLOT_STATEMENT, with no slot locked that this transaction did
 * not hold before, when it may not.
 */
static SlotFound
lock_free_slot(PgmIndexScan *scan, Datum user_id, int32 below, int64 amount,
			   int64 *seen)
{
	bool		isnull;

	while (pgm_index_next(scan, ForwardScanDirection))
	{
		int64		have;

		if (DatumGetInt32(pgm_index_col(scan, 0, &isnull)) >= below)
			return SLOT_NONE;
		have = DatumGetInt64(pgm_index_col(scan, 1, &isnull));
		if (have < amount)
			continue;
		if (!pgm_index_can_update(scan, 1))
			return SLOT_STATEMENT;
		if (!pgm_index_try_lock_row(scan, LockTupleExclusive))
			continue;
		if (DatumGetInt64(pgm_index_col(scan, 1, &isnull)) >= amount)
		{
			*seen = have;
			return SLOT_LOCKED;
		}
		pgm_escrow_note_charge(user_id);
	}
	return SLOT_NONE;
}

/*
 * plan_slot_charge written directly, with the writer open and the
 * statement's snapshot active.  m: the balance row as the snapshot sees
 * it, active, with slots, no hold that may have expired.  p: the slots
 * tried in the order of (slot + slot_offset()) % PGM_ESCROW_SLOTS, that is
 * from slot k on, then from 0 up to k.  u: the slot's newest version less
 * amount.  The entry: its available the balance row's part, this slot's
 * new amount and the other slots' as the snapshot sees them (SLOT_AVAILABLE).
 * DIRECT_NO_ROW when the statement finds no slot (nothing written);
 * DIRECT_USE_SQL, having written nothing, when a slot was found that the
 * statement must write (this transaction wrote it before, so a foreign
 * key's check would fire; a trigger) or balances has no escrowed column
 * as 0.8.0 made it.  The balance row is only read (the writer opened for
 * entries), as the statement reads it.
 */
static DirectCharge
slot_charge_write(PgmLedgerWriter *w, Oid seqid, Datum user_id, int64 amount,
				  text *model_id, int64 tokens, PgmLedgerOutcome *out)
{
	Snapshot	snapshot = GetActiveSnapshot();
	TupleTableSlot *row = table_slot_create(w->balances, NULL);
	TupleTableSlot *entry;
	PgmIndexScan scan;
	Datum		keys[2];
	Datum		values[2];
	bool		nulls[2] = {false, false};
	bool		usable = false;
	SlotFound	found;
	int64		main = 0;
	int64		seen = 0;
	int64		left;
	int32		k;

	/* escrowed as 0.8.0 made it (NOT NULL bigint), else the statement */
	if (w->bcol[PGM_B_ESCROWED] == InvalidAttrNumber)
		return DIRECT_USE_SQL;
	pgm_writer_scan_begin(w, snapshot);
	if (pgm_writer_find(w, DatumGetUUIDP(user_id), row))
	{
		AttrNumber *bcol = w->bcol;
		bool		isnull;
		bool		no_expiry;
		Datum		expiry;

		/* active, escrowed, total, spent and reserved are NOT NULL */
		expiry = slot_getattr(row, bcol[PGM_B_NEXT_EXPIRY], &no_expiry);
		usable = DatumGetBool(slot_getattr(row, bcol[PGM_B_ACTIVE], &isnull)) &&
			DatumGetInt64(slot_getattr(row, bcol[PGM_B_ESCROWED], &isnull)) > 0 &&
			(no_expiry ||
			 DatumGetTimestampTz(expiry) > DatumGetTimestampTz(w->now));
		if (usable)
			main = int8_sub(int8_sub(DatumGetInt64(slot_getattr(row, bcol[PGM_B_TOTAL], &isnull)),
									 DatumGetInt64(slot_getattr(row, bcol[PGM_B_SPENT], &isnull))),
							DatumGetInt64(slot_getattr(row, bcol[PGM_B_RESERVED], &isnull)));
	}
	pgm_writer_scan_end(w);
	ExecDropSingleTupleTableSlot(row);
	if (!usable)
		return DIRECT_NO_ROW;

	k = (PGM_ESCROW_SLOTS - DatumGetInt32(slot_offset())) % PGM_ESCROW_SLOTS;
	keys[0] = user_id;
	keys[1] = Int32GetDatum(k);
	pgm_index_begin(&scan, &slots_from, snapshot, 2, keys);
	found = lock_free_slot(&scan, user_id, PG_INT32_MAX, amount, &seen);
	if (found == SLOT_NONE)
	{
		pgm_index_end(&scan);
		pgm_index_begin(&scan, &slots_from, snapshot, 1, keys);
		found = lock_free_slot(&scan, user_id, k, amount, &seen);
	}
	if (found != SLOT_LOCKED)
	{
		pgm_index_end(&scan);
		return found == SLOT_NONE ? DIRECT_NO_ROW : DIRECT_USE_SQL;
	}
	values[0] = pgm_index_col(&scan, 0, &nulls[0]);
	left = int8_sub(DatumGetInt64(pgm_index_col(&scan, 1, &nulls[1])), amount);
	values[1] = Int64GetDatum(left);
	pgm_index_update_row(&scan, values, nulls);
	pgm_index_end(&scan);

	/* the slots as the snapshot saw them, this one's old version included */
	out->available = int8_add(int8_add(main, left),
							  int8_sub(pgm_escrow_money_read(snapshot, user_id),
									   seen));
	out->entry_id = nextval_internal(seqid, true);
	entry = MakeSingleTupleTableSlot(RelationGetDescr(w->ledger),
									 &TTSOpsHeapTuple);
	pgm_writer_charge_entry(w, entry, out->entry_id, DatumGetUUIDP(user_id),
							amount, out->available, PointerGetDatum(model_id),
							tokens, (Datum) 0);
	pgm_writer_insert_entries(w, &entry, NULL, 1, GetCurrentCommandId(true));
	ExecDropSingleTupleTableSlot(entry);
	return DIRECT_CHARGED;
}

/*
 * A charge without a key from one of the user's escrow slots, in one
 * statement (the slot's UPDATE and the entry's INSERT), written directly
 * where that is what the statement writes; false, having changed nothing,
 * when no free slot holds enough or the user is not active or may have
 * expired holds.
 */
static bool
charge_from_slot(Datum user_id, int64 amount, text *model_id, int64 tokens,
				 PgmLedgerOutcome *out)
{
	Datum		values[5] = {user_id, Int64GetDatum(amount), slot_offset(),
	PointerGetDatum(model_id), Int64GetDatum(tokens)};

	/* balances only read, as the statement reads it: no lock that waits */
	switch (charge_direct(slot_charge_write, false, user_id, amount, model_id,
						  tokens, out))
	{
		case DIRECT_CHARGED:
			pgm_escrow_note_charge(user_id);
			return true;
		case DIRECT_NO_ROW:
			return false;
		case DIRECT_USE_SQL:
			break;
	}
	pgm_exec(plan_slot_charge, values, NULL, false);
	if (SPI_processed != 1)
		return false;
	out->entry_id = pgm_col_int64(0, 1);
	out->available = pgm_col_int64(0, 2);
	pgm_escrow_note_charge(user_id);
	return true;
}

/*
 * The same with a key: the slot's money taken first, then the entry
 * inserted with its key; when a concurrent call with the same key
 * committed first, the slot gets its money back and the call replays the
 * twin's entry (*twin true).  False when no slot could be used.
 */
static bool
keyed_charge_from_slot(Datum user_id, int64 amount, text *model_id,
					   int64 tokens, text *key, PgmLedgerOutcome *out,
					   bool *twin)
{
	Datum		values[3] = {user_id, Int64GetDatum(amount), slot_offset()};
	int32		slot;

	*twin = false;
	pgm_exec(plan_slot_take, values, NULL, false);
	if (SPI_processed != 1)
		return false;
	pgm_escrow_note_charge(user_id);
	slot = (int32) pgm_col_int64(0, 1);
	out->available = pgm_col_int64(0, 2);
	if (insert_entry(user_id, "charge", amount, out->available, model_id,
					 tokens, key, NULL, 0, false, 0, false, &out->entry_id))
		return true;
	values[1] = Int32GetDatum(slot);
	values[2] = Int64GetDatum(amount);
	pgm_exec(plan_slot_undo, values, NULL, false);
	*twin = true;
	return true;
}

/*
 * Charge a user as deduct_balance does, inside the caller's SPI connection:
 * for the SQL function and for the other feature files (completions in
 * chat.c, platform keys in apikeys.c).  The caller has checked the
 * arguments (amount in micro-credits, model_id and tokens_used with
 * pgm_charge_args, the key's length) and the actor rule.
 */
void
pgm_ledger_charge(Datum user_id, int64 amount, text *model_id, int64 tokens,
				  text *key, PgmLedgerOutcome *out)
{
	PriorEntry	prior;
	Datum		values[2] = {user_id, Int64GetDatum(amount)};
	bool		hot = false;
	PgmQueueResult q = PGM_QUEUE_HELD;
	bool		twin;
	int64		row_available;

	(void) prepare_ledger();
	memset(out, 0, sizeof(*out));
	out->kind = "charge";
	out->amount = amount;

	/*
	 * The common case, done in one statement: the user's queue lock is
	 * free, and the charge goes to the balance row; or it is taken (the
	 * user is being charged right now: hot) and the charge goes to a free
	 * escrow slot without waiting.
	 */
	if (key == NULL)
	{
		if (!esc)
			pgm_queue_for_user(user_id);
		else if ((q = pgm_queue_try(user_id)) == PGM_QUEUE_BUSY)
			hot = true;
		if (hot ? charge_from_slot(user_id, amount, model_id, tokens, out)
			: charge_at_once(user_id, amount, model_id, tokens, out))
			return;
		/* nothing written: the general path may gather the slots first */
		if (q == PGM_QUEUE_TAKEN)
			pgm_queue_release(user_id);
	}
	else
	{
		if (find_key(user_id, key, &prior))
		{
			pgm_check_user(user_id, false);
			replay(user_id, key, &prior,
				   same_charge(&prior, amount, model_id, tokens), out);
			return;
		}
		if (esc && (q = pgm_queue_try(user_id)) == PGM_QUEUE_BUSY)
		{
			hot = true;
			if (keyed_charge_from_slot(user_id, amount, model_id, tokens, key,
									   out, &twin))
			{
				if (!twin)
					return;
				goto replay_twin;
			}
		}
		/* nothing written: the general path may gather the slots first */
		if (q == PGM_QUEUE_TAKEN)
			pgm_queue_release(user_id);
	}

	/*
	 * The general path: wait for the user, tell an unknown user, expired
	 * holds and a short balance apart (bringing the slots' money back
	 * when the row alone is short), and charge the balance row.  A hot
	 * user's slots are topped up after, by the one writer that holds the
	 * row.
	 */
	if (take_available(esc ? plan_debit_e : plan_debit, values, user_id,
					   amount, "a charge", plan_find_key, key))
	{
		out->available = written_available(user_id, &row_available);
		if (insert_entry(user_id, "charge", amount, out->available, model_id,
						 tokens, key, NULL, 0, false, 0, false, &out->entry_id))
		{
			if (hot)
				pgm_escrow_refill(user_id, row_available, amount);
			return;
		}
		adjust_balance(user_id, 0, -amount, 0);
	}
replay_twin:
	/* a concurrent call with this key committed first */
	if (!find_key(user_id, key, &prior))
		elog(ERROR, "idempotency key conflict without a visible entry");
	replay(user_id, key, &prior,
		   same_charge(&prior, amount, model_id, tokens), out);
}

Datum
pgm_deduct_balance(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	int64		amount;
	text	   *model_id;
	int64		tokens;
	text	   *key;
	PgmLedgerOutcome out;

	pgm_require_arg(fcinfo, 1, "amount");
	amount = pgm_numeric_to_micro(PG_GETARG_DATUM(1), "amount");
	pgm_charge_args(fcinfo, 2, 3, &model_id, &tokens);
	key = pgm_optional_text(fcinfo, 4, "idempotency_key", PGM_MAX_IDEM_KEY_LEN);

	pgm_spi_connect();
	pgm_ledger_charge(user_id, amount, model_id, tokens, key, &out);
	pgm_spi_finish();
	PG_RETURN_DATUM(pgm_ledger_result(fcinfo, user_id, &out));
}

/* ----------------------------------------------------------------
 * refund(user_id, entry_id, amount, idempotency_key)
 *
 * Locks the user first, so refunds of one charge serialize and their sum
 * never exceeds it.  spent goes down by the refund.
 * ----------------------------------------------------------------
 */
Datum
pgm_refund(PG_FUNCTION_ARGS)
{
	Datum		user_id;
	int64		charge_id;
	int64		amount = 0;
	bool		whole = PG_ARGISNULL(2);
	text	   *key;
	PgmLedgerOutcome out = {0, "refund", 0, 0, false};
	PriorEntry	prior;
	Datum		values[2];
	char	   *kind;
	int64		charged;
	int64		refunded;
	int64		left;
	char	   *model;

	pgm_user_arg(fcinfo, 0);
	pgm_require_arg(fcinfo, 1, "entry_id");
	user_id = PG_GETARG_DATUM(0);
	charge_id = PG_GETARG_INT64(1);
	if (!whole)
		amount = pgm_numeric_to_micro(PG_GETARG_DATUM(2), "amount");
	key = pgm_optional_text(fcinfo, 3, "idempotency_key", PGM_MAX_IDEM_KEY_LEN);

	pgm_spi_connect();
	(void) prepare_ledger();
	pgm_lock_user(user_id);

	if (key && find_key(user_id, key, &prior))
	{
		replay(user_id, key, &prior,
			   str_eq(prior.kind, "refund") && !prior.refund_of_null &&
			   prior.refund_of == charge_id &&
			   (whole || prior.amount == amount), &out);
		pgm_spi_finish();
		PG_RETURN_DATUM(pgm_ledger_result(fcinfo, user_id, &out));
	}

	values[0] = user_id;
	values[1] = Int64GetDatum(charge_id);
	pgm_exec(plan_charge_of, values, NULL, false);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("entry %lld is not a charge of user %s",
						(long long) charge_id, pgm_uuid_cstring(user_id))));
	kind = pgm_col_text(0, 1);
	charged = pgm_col_int64(0, 2);
	model = pgm_col_text(0, 3);
	refunded = pgm_col_int64(0, 4);
	if (strcmp(kind, "charge") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("entry %lld is a %s, not a charge",
						(long long) charge_id, kind)));
	left = charged - refunded;
	if (whole)
	{
		if (left == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("charge %lld is already refunded in full",
							(long long) charge_id)));
		amount = left;
	}
	else if (amount > left)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refund of %s credits exceeds the %s credits left of charge %lld",
						pgm_micro_to_cstring(amount), pgm_micro_to_cstring(left),
						(long long) charge_id),
				 errdetail("The charge was %s credits; %s credits are refunded already.",
						   pgm_micro_to_cstring(charged),
						   pgm_micro_to_cstring(refunded))));

	out.amount = amount;
	out.available = adjust_balance(user_id, 0, -amount, 0);
	if (!insert_entry(user_id, "refund", amount, out.available,
					  model ? cstring_to_text(model) : NULL, 0, key, NULL,
					  charge_id, true, 0, false, &out.entry_id))
		elog(ERROR, "idempotency key \"%s\" was inserted under a held lock",
			 text_to_cstring(key));

	pgm_spi_finish();
	PG_RETURN_DATUM(pgm_ledger_result(fcinfo, user_id, &out));
}

/* ----------------------------------------------------------------
 * get_balance(user_id) and release(), which returns the same shape
 * ----------------------------------------------------------------
 */

typedef struct BalanceRow
{
	int64		total;
	int64		spent;
	int64		reserved;
	TimestampTz updated_at;
} BalanceRow;

/*
 * Read a balance.  Holds that expired but are not swept yet are left out of
 * reserved, so the figure is right without a write.
 */
static void
read_balance(Datum user_id, bool read_only, BalanceRow *row)
{
	Datum		values[1] = {user_id};
	bool		isnull;

	pgm_exec(esc ? plan_balance_e : plan_balance, values, NULL, read_only);
	if (SPI_processed != 1 || !pgm_col_bool(0, 1))
		pgm_raise_unknown_account(user_id);
	row->total = pgm_col_int64(0, 2);
	/* the money in the slots is counted in the row's spent, not spent */
	row->spent = pgm_col_int64(0, 3) - (esc ? pgm_col_int64(0, 7) : 0);
	row->reserved = pgm_col_int64(0, 4);
	row->updated_at = DatumGetTimestampTz(pgm_col(0, 5, &isnull));
	if (pgm_col_bool(0, 6))
	{
		pgm_exec(plan_live_holds, values, NULL, read_only);
		row->reserved = pgm_col_int64(0, 1);
	}
}

static Datum
balance_datum(FunctionCallInfo fcinfo, Datum user_id, const BalanceRow *row)
{
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};
	values[0] = user_id;
	values[1] = pgm_micro_to_numeric(row->total);
	values[2] = pgm_micro_to_numeric(row->spent);
	values[3] = pgm_micro_to_numeric(row->reserved);
	values[4] = pgm_micro_to_numeric(row->total - row->spent - row->reserved);
	values[5] = TimestampTzGetDatum(row->updated_at);
	return pgm_result_row(fcinfo, values, nulls);
}

Datum
pgm_get_balance(PG_FUNCTION_ARGS)
{
	Datum		user_id;
	BalanceRow	row;

	pgm_user_arg(fcinfo, 0);
	user_id = PG_GETARG_DATUM(0);

	pgm_spi_connect();
	(void) prepare_ledger();
	read_balance(user_id, true, &row);
	pgm_spi_finish();
	PG_RETURN_DATUM(balance_datum(fcinfo, user_id, &row));
}

/* ----------------------------------------------------------------
 * ledger_entries(user_id, max_rows, before_id): newest first, keyset pages
 * ----------------------------------------------------------------
 */
Datum
pgm_ledger_entries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		user_id;
	int32		max_rows;
	Datum		args[3];

	pgm_user_arg(fcinfo, 0);
	pgm_require_arg(fcinfo, 1, "max_rows");
	user_id = PG_GETARG_DATUM(0);
	max_rows = PG_GETARG_INT32(1);
	if (max_rows < 1 || max_rows > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows %d is out of range", max_rows),
				 errdetail("A page holds 1 to 1000 entries.")));

	InitMaterializedSRF(fcinfo, 0);

	pgm_spi_connect();
	(void) prepare_ledger();
	pgm_check_user(user_id, false);

	args[0] = user_id;
	args[1] = Int32GetDatum(max_rows);
	args[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	pgm_exec(PG_ARGISNULL(2) ? plan_entries : plan_entries_before, args,
			  NULL, true);

	pgm_put_rows(rsinfo, (1U << 2) | (1U << 3));	/* amount, available */

	pgm_spi_finish();
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * reserve(user_id, amount, ttl, idempotency_key) RETURNS bigint
 * ----------------------------------------------------------------
 */

/*
 * Is a reservation's ttl more than zero and at most PGM_MAX_TTL_USEC?
 * Each field of the interval is bounded before the fields are added up: an
 * interval with months, or with days or a time part beyond 7 days either
 * way (say '1000000 days -23999832 hours', which adds up to 7 days), is out
 * of range, so nothing is added that could wrap, and now() + ttl always
 * stays a valid timestamp.
 */
static bool
ttl_in_range(const Interval *ttl, int64 *usec)
{
	int64		days_usec;

	if (ttl->month != 0)
		return false;
	if (ttl->day < -7 || ttl->day > 7 ||
		ttl->time < -PGM_MAX_TTL_USEC || ttl->time > PGM_MAX_TTL_USEC)
		return false;
	if (pg_mul_s64_overflow((int64) ttl->day, USECS_PER_DAY, &days_usec) ||
		pg_add_s64_overflow(days_usec, ttl->time, usec))
		return false;			/* cannot happen within the bounds above */
	return *usec > 0 && *usec <= PGM_MAX_TTL_USEC;
}

/* The ttl argument of a reservation: required (22004), in range (22023). */
Interval *
pgm_ttl_arg(FunctionCallInfo fcinfo, int argno)
{
	Interval   *ttl;
	int64		ttl_usec;

	pgm_require_arg(fcinfo, argno, "ttl");
	ttl = PG_GETARG_INTERVAL_P(argno);
	if (!ttl_in_range(ttl, &ttl_usec))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl %s is out of range",
						DatumGetCString(DirectFunctionCall1(interval_out,
															IntervalPGetDatum(ttl)))),
				 errdetail("A reservation lives for more than zero and at most 7 days.")));
	return ttl;
}

/*
 * The reservation an idempotency key made, which a repeat with the same
 * amount and ttl returns; PM003 when they differ.
 */
static int64
replay_reservation(Datum user_id, text *key, int64 amount, Interval *ttl)
{
	Datum		values[2] = {user_id, PointerGetDatum(key)};
	int64		reservation_id;
	Interval   *prior_ttl;
	bool		isnull;

	pgm_check_user(user_id, false);
	pgm_exec(plan_find_hold_key, values, NULL, false);
	if (SPI_processed != 1)
		elog(ERROR, "idempotency key conflict without a visible reservation");
	reservation_id = pgm_col_int64(0, 1);
	prior_ttl = DatumGetIntervalP(pgm_col(0, 3, &isnull));
	if (pgm_col_int64(0, 2) != amount ||
		DatumGetInt32(DirectFunctionCall2(interval_cmp,
										  IntervalPGetDatum(prior_ttl),
										  IntervalPGetDatum(ttl))) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGM_IDEMPOTENCY_CONFLICT),
				 errmsg("idempotency key \"%s\" was already used with other arguments",
						text_to_cstring(key)),
				 errdetail("It made reservation %lld of %s credits for user %s.",
						   (long long) reservation_id,
						   pgm_micro_to_cstring(pgm_col_int64(0, 2)),
						   pgm_uuid_cstring(user_id))));
	return reservation_id;
}

/*
 * Did the user make a reservation with idempotency key key?  (A repeat,
 * which pgm_ledger_reserve replays; for reserve_api_key, whose spend limit
 * does not count a repeat.)  Inside the caller's SPI connection.
 */
bool
pgm_ledger_hold_key_used(Datum user_id, text *key)
{
	Datum		values[2] = {user_id, PointerGetDatum(key)};

	(void) prepare_ledger();
	pgm_exec(plan_find_hold_key, values, NULL, false);
	return SPI_processed > 0;
}

/*
 * Reserve credits of a user as reserve does, inside the caller's SPI
 * connection: for the SQL function and for reserve_api_key.  The caller has
 * checked the arguments (pgm_ttl_arg, the key's length) and the actor rule.
 * Returns the reservation's id.
 */
int64
pgm_ledger_reserve(Datum user_id, int64 amount, Interval *ttl, text *key)
{
	Datum		values[4] = {user_id};
	char		nulls[4] = {' ', ' ', ' ', key ? ' ' : 'n'};

	(void) prepare_ledger();
	if (key && pgm_ledger_hold_key_used(user_id, key))
		return replay_reservation(user_id, key, amount, ttl);

	values[1] = Int64GetDatum(amount);
	values[2] = IntervalPGetDatum(ttl);
	values[3] = PointerGetDatum(key);
	if (take_available(plan_reserve, values, user_id, amount,
					   "a reservation", plan_find_hold_key, key))
	{
		if (pgm_col_bool(0, 1))
			pgm_sweep_expired_holds(user_id, NULL);
		pgm_exec(plan_insert_hold, values, nulls, false);
		if (SPI_processed == 1)
			return pgm_col_int64(0, 1);
		adjust_balance(user_id, 0, 0, -amount);
	}
	/* a concurrent call with this key committed first */
	return replay_reservation(user_id, key, amount, ttl);
}

Datum
pgm_reserve(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	int64		amount;
	Interval   *ttl;
	text	   *key;
	int64		reservation_id;

	pgm_require_arg(fcinfo, 1, "amount");
	pgm_require_arg(fcinfo, 2, "ttl");
	amount = pgm_numeric_to_micro(PG_GETARG_DATUM(1), "amount");
	ttl = pgm_ttl_arg(fcinfo, 2);
	key = pgm_optional_text(fcinfo, 3, "idempotency_key", PGM_MAX_IDEM_KEY_LEN);

	pgm_spi_connect();
	reservation_id = pgm_ledger_reserve(user_id, amount, ttl, key);
	pgm_spi_finish();
	PG_RETURN_INT64(reservation_id);
}

/*
 * Look up a held, unexpired reservation of a locked user or raise PM004;
 * returns its amount.
 */
static int64
live_hold(Datum user_id, int64 reservation_id, const char *verb)
{
	Datum		values[2] = {user_id, Int64GetDatum(reservation_id)};
	char	   *state;
	bool		isnull;

	pgm_exec(plan_hold, values, NULL, false);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGM_RESERVATION_STATE),
				 errmsg("cannot %s reservation %lld: no such reservation for user %s",
						verb, (long long) reservation_id, pgm_uuid_cstring(user_id))));
	state = pgm_col_text(0, 2);
	if (strcmp(state, "held") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGM_RESERVATION_STATE),
				 errmsg("cannot %s reservation %lld: it is %s",
						verb, (long long) reservation_id, state)));
	if (pgm_col_bool(0, 4))
		ereport(ERROR,
				(errcode(ERRCODE_PGM_RESERVATION_STATE),
				 errmsg("cannot %s reservation %lld: it expired at %s",
						verb, (long long) reservation_id,
						timestamptz_to_str(DatumGetTimestampTz(pgm_col(0, 3, &isnull))))));
	return pgm_col_int64(0, 1);
}

static void
close_hold(int64 reservation_id, const char *state, int64 settled,
		   int64 entry_id, bool has_entry)
{
	Datum		values[4] = {Int64GetDatum(reservation_id),
		CStringGetTextDatum(state), Int64GetDatum(settled),
	Int64GetDatum(entry_id)};
	char		nulls[4] = {' ', ' ', has_entry ? ' ' : 'n', has_entry ? ' ' : 'n'};

	pgm_exec(plan_close_hold, values, nulls, false);
}

/* ----------------------------------------------------------------
 * settle(user_id, reservation_id, amount, model_id, tokens_used)
 * ----------------------------------------------------------------
 */
Datum
pgm_settle(PG_FUNCTION_ARGS)
{
	Datum		user_id;
	int64		reservation_id;
	int64		amount;
	text	   *model_id;
	int64		tokens;
	int64		held;
	PgmLedgerOutcome out = {0, "charge", 0, 0, false};

	pgm_user_arg(fcinfo, 0);
	pgm_require_arg(fcinfo, 1, "reservation_id");
	pgm_require_arg(fcinfo, 2, "amount");
	user_id = PG_GETARG_DATUM(0);
	reservation_id = PG_GETARG_INT64(1);
	amount = pgm_numeric_to_micro(PG_GETARG_DATUM(2), "amount");
	pgm_charge_args(fcinfo, 3, 4, &model_id, &tokens);
	out.amount = amount;

	pgm_spi_connect();
	(void) prepare_ledger();
	pgm_lock_user(user_id);
	held = live_hold(user_id, reservation_id, "settle");
	if (amount > held)
		ereport(ERROR,
				(errcode(ERRCODE_PGM_RESERVATION_STATE),
				 errmsg("cannot settle reservation %lld for %s credits: only %s credits are reserved",
						(long long) reservation_id, pgm_micro_to_cstring(amount),
						pgm_micro_to_cstring(held))));

	out.available = adjust_balance(user_id, 0, amount, -held);
	insert_entry(user_id, "charge", amount, out.available, model_id, tokens,
				 NULL, NULL, 0, false, reservation_id, true, &out.entry_id);
	close_hold(reservation_id, "settled", amount, out.entry_id, true);

	pgm_spi_finish();
	PG_RETURN_DATUM(pgm_ledger_result(fcinfo, user_id, &out));
}

/* ----------------------------------------------------------------
 * release(user_id, reservation_id) RETURNS balance
 * ----------------------------------------------------------------
 */
Datum
pgm_release(PG_FUNCTION_ARGS)
{
	Datum		user_id;
	int64		reservation_id;
	int64		held;
	BalanceRow	row;

	pgm_user_arg(fcinfo, 0);
	pgm_require_arg(fcinfo, 1, "reservation_id");
	user_id = PG_GETARG_DATUM(0);
	reservation_id = PG_GETARG_INT64(1);

	pgm_spi_connect();
	(void) prepare_ledger();
	pgm_lock_user(user_id);
	held = live_hold(user_id, reservation_id, "release");
	adjust_balance(user_id, 0, 0, -held);
	close_hold(reservation_id, "released", 0, 0, false);
	read_balance(user_id, false, &row);

	pgm_spi_finish();
	PG_RETURN_DATUM(balance_datum(fcinfo, user_id, &row));
}

/* ----------------------------------------------------------------
 * expire_reservations(): sweep every user's expired holds, in uuid order
 * ----------------------------------------------------------------
 */
Datum
pgm_expire_reservations(PG_FUNCTION_ARGS)
{
	int64		swept = 0;
	uint64		nusers;
	Datum	   *users;
	uint64		i;

	pgm_spi_connect();
	(void) prepare_ledger();

	pgm_exec(plan_expired_users, NULL, NULL, false);
	nusers = SPI_processed;
	users = palloc(sizeof(Datum) * (nusers + 1));
	for (i = 0; i < nusers; i++)
	{
		bool		isnull;
		pg_uuid_t  *copy = palloc(sizeof(pg_uuid_t));

		memcpy(copy, DatumGetUUIDP(pgm_col(i, 1, &isnull)), sizeof(pg_uuid_t));
		users[i] = UUIDPGetDatum(copy);
	}
	for (i = 0; i < nusers; i++)
	{
		swept += pgm_sweep_user(users[i]);
	}

	pgm_spi_finish();
	if (swept > PG_INT32_MAX)
		swept = PG_INT32_MAX;
	PG_RETURN_INT32((int32) swept);
}

/* ----------------------------------------------------------------
 * Imported entries (importer.c)
 * ----------------------------------------------------------------
 */

/*
 * An imported entry is a repeat when its key holds an entry of the same
 * kind and amount: the key names the document's record, and the note or
 * model an earlier version of the import gave it does not make it another.
 */
static inline bool
same_import(const PriorEntry *prior, bool charge, int64 amount)
{
	return str_eq(prior->kind, charge ? "charge" : "deposit") &&
		prior->amount == amount;
}

/*
 * A deposit or charge of an import, inside the caller's SPI connection,
 * under the rules of add_funds and deduct_balance (the limit, the
 * available balance, the idempotency key and its replay) with two
 * differences: the entry keeps the time it was made (created_at, or now
 * when has_created_at is false), and a charge may carry no model (the
 * opening charge that reconciles a balance, which no usage view counts).
 * key is required: it is what makes a re-run add nothing.  The caller has
 * checked the arguments and locked the user's balance row.
 */
void
pgm_ledger_import_entry(Datum user_id, bool charge, int64 amount,
						text *model_id, int64 tokens, text *key, text *note,
						Datum created_at, bool has_created_at,
						PgmLedgerOutcome *out)
{
	PriorEntry	prior;
	Datum		values[9];
	char		nulls[9];

	(void) prepare_ledger();
	memset(out, 0, sizeof(*out));
	out->kind = charge ? "charge" : "deposit";
	out->amount = amount;
	Assert(key != NULL);

	if (find_key(user_id, key, &prior))
	{
		pgm_check_user(user_id, false);
		replay(user_id, key, &prior, same_import(&prior, charge, amount), out);
		return;
	}
	values[0] = user_id;
	values[1] = Int64GetDatum(amount);
	if (!charge)
	{
		pgm_queue_for_user(user_id);
		credit(values, user_id, amount);
	}
	else if (!take_available(esc ? plan_debit_e : plan_debit, values, user_id,
							 amount, "a charge", plan_find_key, key))
		goto twin;
	out->available = written_available(user_id, NULL);

	values[1] = CStringGetTextDatum(out->kind);
	values[2] = Int64GetDatum(amount);
	values[3] = Int64GetDatum(out->available);
	values[5] = Int64GetDatum(tokens);
	values[6] = PointerGetDatum(key);
	values[8] = created_at;
	memset(nulls, ' ', sizeof(nulls));
	pgm_bind_ptr(values, nulls, 4, model_id);
	pgm_bind_ptr(values, nulls, 7, note);
	if (!has_created_at)
		nulls[8] = 'n';
	pgm_exec(plan_insert_dated, values, nulls, false);
	if (SPI_processed == 1)
	{
		out->entry_id = pgm_col_int64(0, 1);
		return;
	}
	/* a concurrent call with this key committed first: undo, replay it */
	adjust_balance(user_id, charge ? 0 : -amount, charge ? -amount : 0, 0);
twin:
	if (!find_key(user_id, key, &prior))
		elog(ERROR, "idempotency key conflict without a visible entry");
	replay(user_id, key, &prior, same_import(&prior, charge, amount), out);
}
