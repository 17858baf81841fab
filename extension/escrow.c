/*-------------------------------------------------------------------------
 *
 * escrow.c
 *	  Floor: escrow slots, the part of a hot user's balance that charges
 *	  take from without waiting on one another.
 *
 * One user's charges all write that user's balance row, so they commit one
 * at a time however many sessions send them.  A user whose charges meet
 * (a charge finds the user's queue lock taken, see userlock.c) gets
 * PGM_ESCROW_SLOTS rows in pgmarket.balance_slots, and the writer that
 * holds the balance row moves part of the available balance into them
 * (refill); from then on a charge that finds the queue busy takes its
 * amount from any slot that no one else is using and that holds enough
 * (FOR UPDATE SKIP LOCKED), and never waits.
 *
 * Money and its invariants
 * ------------------------
 * A slot holds amount >= 0 credits.  Moving money into a slot adds it to
 * balances.spent (and to balances.escrowed); a charge from a slot lowers
 * the slot's amount; moving it back (reclaim) lowers balances.spent again.
 * So, for every user:
 *
 *	   charged - refunded       = balances.spent - sum(slot amounts)
 *	   available (the whole)    = total - spent - reserved + sum(slot amounts)
 *	   total - spent - reserved >= 0 (the balance row's CHECK), amounts >= 0
 *	   sum(slot amounts)        <= balances.escrowed
 *
 * escrowed is an upper bound of the money in the slots: 0 means there is
 * none, and then no call reads the slots.  verify_ledger() checks all four.
 *
 * Locks, and why they cannot deadlock
 * -----------------------------------
 * A charge from a slot locks only that slot row (SKIP LOCKED: it never
 * waits).  The refill locks slots with SKIP LOCKED too.  Only one thing
 * ever waits for a slot: pgm_escrow_gather, which locks all the user's
 * slots in slot order, and only in a transaction that holds neither the
 * user's queue lock, nor the balance row, nor a slot of the user: slots
 * always before the queue and the row.  So a transaction that charged a
 * slot and then waits for the balance row (say, it adds funds) waits for a
 * holder that never waits for a slot; and two gatherers take the slots in
 * the same order.
 *
 * A writer that already holds the balance row (deduct_batch, an importer's
 * batch, a second call in one transaction) calls pgm_escrow_reclaim alone:
 * it moves back what is in the slots no one else is charging at that
 * moment.  A slot that another transaction is charging right now is that
 * transaction's until it ends; waiting for it while holding the row could
 * deadlock with that very transaction.
 *
 * The slot rows are made once per user, all PGM_ESCROW_SLOTS at a time,
 * under the balance row's lock, and never deleted.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "access/nbtree.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"

static SPIPlanPtr plan_gather;
static SPIPlanPtr plan_reclaim;
static SPIPlanPtr plan_make_slots;
static SPIPlanPtr plan_refill;
static SPIPlanPtr plan_escrowed;
static SPIPlanPtr plan_money;
static SPIPlanPtr plan_row_short;

static const PgmPlanDef escrow_plans[] = {
	/* every slot of a user, in slot order, waiting for their holders */
	{&plan_gather,
		"SELECT s.slot FROM pgmarket.balance_slots s"
		" WHERE s.user_id = $1 ORDER BY s.slot FOR UPDATE OF s",
		1, {UUIDOID}},

	/*
	 * The money of the slots no one else holds, back into the balance row;
	 * escrowed becomes what the slots still hold as this statement sees
	 * them (an upper bound: the slots it skipped can only lose money to
	 * the charges that hold them).
	 */
	{&plan_reclaim,
		"WITH p AS ("
		"  SELECT s.slot, s.amount FROM pgmarket.balance_slots s"
		"   WHERE s.user_id = $1 AND s.amount > 0"
		"   FOR UPDATE OF s SKIP LOCKED),"
		" d AS ("
		"  UPDATE pgmarket.balance_slots s SET amount = 0 FROM p"
		"   WHERE s.user_id = $1 AND s.slot = p.slot RETURNING p.amount),"
		" x AS (SELECT coalesce(sum(d.amount), 0)::bigint AS moved,"
		"              (SELECT coalesce(sum(o.amount), 0)::bigint"
		"                 FROM pgmarket.balance_slots o WHERE o.user_id = $1)"
		"              - coalesce(sum(d.amount), 0)::bigint AS left_over"
		"         FROM d)"
		"UPDATE pgmarket.balances b"
		"   SET spent = b.spent - x.moved, escrowed = greatest(x.left_over, 0)"
		"  FROM x WHERE b.user_id = $1"
		"   AND (x.moved > 0 OR b.escrowed <> greatest(x.left_over, 0))"
		" RETURNING x.moved",
		1, {UUIDOID}},

	{&plan_make_slots,
		"INSERT INTO pgmarket.balance_slots (user_id, slot)"
		" SELECT $1, g FROM generate_series(0, $2 - 1) g"
		" ON CONFLICT DO NOTHING",
		2, {UUIDOID, INT4OID}},

	/*
	 * Top up to $2 every free slot of the user that holds less than half of
	 * it; the caller holds the balance row and has checked that the row's
	 * available covers PGM_ESCROW_SLOTS times $2.
	 */
	{&plan_refill,
		"WITH p AS ("
		"  SELECT s.slot, s.amount FROM pgmarket.balance_slots s"
		"   WHERE s.user_id = $1 AND s.amount < $2 / 2"
		"   ORDER BY s.slot FOR UPDATE OF s SKIP LOCKED),"
		" u AS ("
		"  UPDATE pgmarket.balance_slots s SET amount = $2 FROM p"
		"   WHERE s.user_id = $1 AND s.slot = p.slot"
		"  RETURNING $2 - p.amount AS added),"
		" x AS (SELECT coalesce(sum(u.added), 0)::bigint AS added FROM u)"
		"UPDATE pgmarket.balances b"
		"   SET spent = b.spent + x.added, escrowed = b.escrowed + x.added"
		"  FROM x WHERE b.user_id = $1 AND x.added > 0"
		" RETURNING x.added",
		2, {UUIDOID, INT8OID}},

	{&plan_escrowed,
		"SELECT b.escrowed, (SELECT count(*) FROM pgmarket.balance_slots s"
		"                     WHERE s.user_id = $1)"
		"  FROM pgmarket.balances b WHERE b.user_id = $1",
		1, {UUIDOID}},

	{&plan_money,
		"SELECT CASE WHEN b.escrowed > 0 THEN"
		"         (SELECT coalesce(sum(s.amount), 0)::bigint"
		"            FROM pgmarket.balance_slots s WHERE s.user_id = $1)"
		"       ELSE 0 END"
		"  FROM pgmarket.balances b WHERE b.user_id = $1",
		1, {UUIDOID}},

	/* is the row alone, without a lock, short of $2 with money in slots? */
	{&plan_row_short,
		"SELECT b.escrowed > 0 AND b.total - b.spent - b.reserved < $2"
		"  FROM pgmarket.balances b WHERE b.user_id = $1",
		2, {UUIDOID, INT8OID}},
};

#define prepare_plans() PGM_PREPARE_PLANS(escrow_plans)

/* The slots of a user read by index, without SPI (pgm_escrow_money_read) */
static PgmIndexRef slots_by_user = {
	"balance_slots", "balance_slots_pkey", 1, {BTEqualStrategyNumber},
	1, {"amount"}, {INT8OID}
};

/* ----------------------------------------------------------------
 * The slots this transaction has charged
 * ----------------------------------------------------------------
 */
#define PGM_ESCROW_TRACKED	8

static pg_uuid_t charged_users[PGM_ESCROW_TRACKED];
static int	ncharged = 0;
static bool charged_many = false;

/* The record goes with the transaction (pgmarket.c's callback). */
void
pgm_escrow_xact_end(void)
{
	ncharged = 0;
	charged_many = false;
}

/*
 * Record that this transaction holds a slot of the user.  A slot charged in
 * a subtransaction that later aborted stays recorded: that only makes the
 * transaction more careful (pgm_escrow_gather does not wait).
 */
void
pgm_escrow_note_charge(Datum user_id)
{
	pg_uuid_t  *u = DatumGetUUIDP(user_id);
	int			i;

	for (i = 0; i < ncharged; i++)
		if (memcmp(charged_users[i].data, u->data, UUID_LEN) == 0)
			return;
	if (ncharged < PGM_ESCROW_TRACKED)
		charged_users[ncharged++] = *u;
	else
		charged_many = true;
}

static bool
holds_slot(Datum user_id)
{
	pg_uuid_t  *u = DatumGetUUIDP(user_id);
	int			i;

	if (charged_many)
		return true;
	for (i = 0; i < ncharged; i++)
		if (memcmp(charged_users[i].data, u->data, UUID_LEN) == 0)
			return true;
	return false;
}

/* ----------------------------------------------------------------
 * The entry points
 * ----------------------------------------------------------------
 */

/*
 * Does this database have the escrow tables (pgmarket 0.8.0)?  Until ALTER
 * EXTENSION UPDATE, the calls of older versions run without slots.
 */
static bool escrow_known = false;		/* escrow_present is up to date */
static bool escrow_present = false;

bool
pgm_escrow_on(void)
{
	return pgm_schema_fact(&escrow_known, &escrow_present, "balance_slots", NULL);
}

/*
 * Run one of the statements above when this database has the escrow
 * tables; false, with nothing run, when it has none.  SPI must be
 * connected.
 */
static bool
escrow_exec(SPIPlanPtr *plan, Datum *values)
{
	if (!pgm_escrow_on())
		return false;
	prepare_plans();
	pgm_exec(*plan, values, NULL, false);
	return true;
}

/* The bigint column of the last statement's one row, or 0 without one. */
static int64
one_row_int64(int colno)
{
	return SPI_processed == 1 ? pgm_col_int64(0, colno) : 0;
}

/*
 * Lock all the user's slots, waiting for the transactions that are
 * charging them, when this transaction may wait for them without risk of a
 * deadlock (see the top of the file); true when it did.  A caller that is
 * about to need the user's whole available calls this before it takes the
 * user's queue lock and balance row, then pgm_escrow_reclaim after.
 */
bool
pgm_escrow_gather(Datum user_id)
{
	Datum		values[1] = {user_id};

	if (!pgm_escrow_on())
		return false;
	if (holds_slot(user_id) || pgm_queue_held(user_id) ||
		pgm_user_row_held(user_id))
		return false;
	return escrow_exec(&plan_gather, values);
}

/*
 * For a call that changes a user's whole account (deactivate_user,
 * erase_user): wait for the charges in flight from the user's slots (the
 * slots before the queue: the order at the top of this file), queue for
 * the user, then run plan, the caller's statement that locks or changes the
 * account row with the user as $1; PM002 when it finds no row.  The caller
 * brings the slots' money back into the row (pgm_escrow_reclaim) when it
 * has changed what it must.
 */
void
pgm_escrow_lock_account(Datum user_id, SPIPlanPtr plan)
{
	(void) pgm_escrow_gather(user_id);
	pgm_queue_for_user(user_id);
	pgm_exec(plan, &user_id, NULL, false);
	if (SPI_processed != 1)
		pgm_raise_unknown_account(user_id);
}

/*
 * For a call that must lock the user's balance row before it knows whether
 * it charges (charge_api_key and reserve_api_key lock the user, then the
 * key): when the row alone, as last committed, is short of amount while
 * the slots hold money, gather the slots first, as long as this
 * transaction may wait for them (pgm_escrow_gather); a reclaim under the
 * row's lock then finds every slot free.  True when it gathered.
 */
bool
pgm_escrow_gather_if_short(Datum user_id, int64 amount)
{
	Datum		values[2] = {user_id, Int64GetDatum(amount)};
	bool		isnull;

	if (!escrow_exec(&plan_row_short, values) || SPI_processed != 1 ||
		!DatumGetBool(pgm_col(0, 1, &isnull)) || isnull)
		return false;
	return pgm_escrow_gather(user_id);
}

/*
 * For any writer that holds a user's balance row and needs the user's whole
 * available in that row (deduct_batch, the importer, the ledger's own
 * calls): move the money of the user's slots back into the row, and return
 * how much moved (0 when there was none, or no slots at all).  Slots that
 * other transactions are charging at this moment stay as they are, unless
 * the caller gathered them first (pgm_escrow_gather).  SPI must be
 * connected; the caller's last SPI result is lost.
 */
int64
pgm_escrow_reclaim(Datum user_id)
{
	Datum		values[1] = {user_id};

	if (!escrow_exec(&plan_escrowed, values) || one_row_int64(1) == 0)
		return 0;
	pgm_exec(plan_reclaim, values, NULL, false);
	return one_row_int64(1);
}

/*
 * Move part of a hot user's available into the slots, by a writer that
 * holds the balance row and has just seen available credits left in it
 * after a charge of amount: each free slot that holds less than half its
 * share is topped up to its share, a PGM_ESCROW_SLOTS-th of half the
 * available.  Nothing when a share would not hold a few such charges.
 * Returns how much moved.
 */
int64
pgm_escrow_refill(Datum user_id, int64 available, int64 amount)
{
	Datum		values[2] = {user_id};
	int64		share = available / (2 * PGM_ESCROW_SLOTS);

	if (amount <= 0 || share / 4 < amount ||
		!escrow_exec(&plan_escrowed, values) || SPI_processed != 1)
		return 0;
	if (pgm_col_int64(0, 2) < PGM_ESCROW_SLOTS)
	{
		values[1] = Int32GetDatum(PGM_ESCROW_SLOTS);
		pgm_exec(plan_make_slots, values, NULL, false);
	}
	values[1] = Int64GetDatum(share);
	pgm_exec(plan_refill, values, NULL, false);
	return one_row_int64(1);
}

/*
 * The money in a user's slots as this statement sees it (0 without slots):
 * what the balance row's total - spent - reserved leaves out of the whole
 * available.
 */
int64
pgm_escrow_money(Datum user_id)
{
	Datum		values[1] = {user_id};

	return escrow_exec(&plan_money, values) ? one_row_int64(1) : 0;
}

/*
 * The money in a user's slots as snapshot sees it, read by index without
 * SPI: SLOT_MONEY's sum for a balance row whose escrowed is above zero
 * (the caller looked), for the direct charge (ledger.c).  The sum stays
 * below escrowed, but a hand-edited slot could take it past bigint: 22003,
 * as the statement's cast to bigint raises.
 */
int64
pgm_escrow_money_read(Snapshot snapshot, Datum user_id)
{
	PgmIndexScan scan;
	int64		money = 0;
	bool		isnull;

	pgm_index_begin(&scan, &slots_by_user, snapshot, 1, &user_id);
	while (pgm_index_next(&scan, ForwardScanDirection))
	{
		int64		amount = DatumGetInt64(pgm_index_col(&scan, 0, &isnull));

		if (pg_add_s64_overflow(money, amount, &money))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("bigint out of range")));
	}
	pgm_index_end(&scan);
	return money;
}
