/*-------------------------------------------------------------------------
 *
 * userlock.c
 *	  Floor: the per-user lock protocol that every operation on a user's
 *	  money or rows follows, and the account checks that go with it.
 *
 * Concurrency rules
 * -----------------
 * Every change to a user's money goes through that user's row in
 * pgmarket.balances, and every operation takes that row's lock (by UPDATE
 * or SELECT ... FOR UPDATE) before it writes anything else of the user.
 * The single-user operations queue on a transaction-scoped lock of the user
 * first (pgm_queue_for_user), which only makes waiting cheaper.  So:
 *
 *  - charges of one user serialize on one row lock and see each other's
 *	  committed result (READ COMMITTED re-checks the WHERE clause of the
 *	  UPDATE on the newest row version), which keeps available >= 0 without
 *	  retries; charges of different users never wait on each other;
 *  - every insert of an idempotency key for a user happens under that user's
 *	  lock.  A call that looked a key up before it got the lock may still
 *	  meet a concurrent twin; its INSERT ... ON CONFLICT DO NOTHING then finds
 *	  the committed twin, the call undoes its balance change and replays the
 *	  twin's result.  Every caller succeeds, the charge applies once;
 *  - reservations of a user change only under the user's lock, so settle,
 *	  release and the expiry sweep cannot interleave;
 *  - operations that lock several users (deduct_batch, expire_reservations)
 *	  lock them in uuid order, so they cannot deadlock with each other.
 *
 * Expired holds stop counting without a background job: balances.next_expiry
 * says when the earliest hold of the user runs out, and any operation that
 * sees it passed sweeps the user's expired holds under the lock it already
 * holds before it decides anything.
 *
 * This file knows the balance row and the expiry hint, nothing of what the
 * features above it do with them.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"

static SPIPlanPtr plan_state;
static SPIPlanPtr plan_lock;
static SPIPlanPtr plan_sweep;
static SPIPlanPtr plan_row_owner;

static const PgmPlanDef lock_plans[] = {
	/* the state of a balance row, without locking it */
	{&plan_state,
		"SELECT active, total - spent - reserved, total,"
		"       coalesce(next_expiry <= now(), false)"
		"  FROM pgmarket.balances WHERE user_id = $1", 1, {UUIDOID}},

	/* lock a balance row */
	{&plan_lock,
		"SELECT active, coalesce(next_expiry <= now(), false)"
		"  FROM pgmarket.balances WHERE user_id = $1 FOR UPDATE", 1, {UUIDOID}},

	/*
	 * Sweep a locked user's expired holds and recompute the hint.  The
	 * subquery for next_expiry reads the holds as they were before this
	 * statement, so it leaves out the swept ones by their expiry time.
	 */
	{&plan_sweep,
		"WITH swept AS ("
		"  UPDATE pgmarket.reservations SET state = 'expired', closed_at = now()"
		"   WHERE user_id = $1 AND state = 'held' AND expires_at <= now()"
		"  RETURNING amount)"
		"UPDATE pgmarket.balances b"
		"   SET reserved = b.reserved - (SELECT coalesce(sum(amount), 0) FROM swept),"
		"       next_expiry = (SELECT min(r.expires_at)"
		"                        FROM pgmarket.reservations r"
		"                       WHERE r.user_id = $1 AND r.state = 'held'"
		"                         AND r.expires_at > now()),"
		"       updated_at = now()"
		" WHERE b.user_id = $1"
		" RETURNING (SELECT count(*) FROM swept),"
		"           b.total - b.spent - b.reserved", 1, {UUIDOID}},

	/* who last wrote or locked a balance row (see pgm_queue_for_user) */
	{&plan_row_owner,
		"SELECT xmin, xmax FROM pgmarket.balances WHERE user_id = $1", 1, {UUIDOID}},
};

#define prepare_plans() PGM_PREPARE_PLANS(lock_plans)

/* The balance row read by index, without SPI (pgm_user_active_read) */
static PgmIndexRef balance_by_user = {
	"balances", "balances_pkey", 1, {BTEqualStrategyNumber},
	1, {"active"}, {BOOLOID}
};

/*
 * Run one of the plans above, all of which take the user's id alone; true
 * when it returned the user's row (the last SPI result).
 */
static bool
exec_for_user(SPIPlanPtr *plan, Datum user_id)
{
	Datum		values[1] = {user_id};

	prepare_plans();
	pgm_exec(*plan, values, NULL, false);
	return SPI_processed == 1;
}

void
pgm_raise_unknown_account(Datum user_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_PGM_UNKNOWN_ACCOUNT),
			 errmsg("user %s does not exist or is deactivated",
					pgm_uuid_cstring(user_id))));
}

/*
 * The state of a user's balance row, without a lock; raises PM002 for an
 * unknown or deactivated user.  Leaves the row as the last SPI result.
 */
void
pgm_account_state(Datum user_id, PgmAccountState *state)
{
	if (!exec_for_user(&plan_state, user_id) || !pgm_col_bool(0, 1))
		pgm_raise_unknown_account(user_id);
	state->available = pgm_col_int64(0, 2);
	state->total = pgm_col_int64(0, 3);
	state->holds_expired = pgm_col_bool(0, 4);
}

/*
 * Sweep the expired holds of a user whose balance row this transaction has
 * locked; returns how many holds expired, and the available balance after
 * the sweep in *available when that is not NULL.
 */
int64
pgm_sweep_expired_holds(Datum user_id, int64 *available)
{
	if (!exec_for_user(&plan_sweep, user_id))
		return 0;
	if (available)
		*available = pgm_col_int64(0, 2);
	return pgm_col_int64(0, 1);
}

/*
 * Is the user's balance row there and active, under a snapshot?  Read by
 * index without SPI, for the read paths that take no lock
 * (get_chat_history; verify_api_key before 0.11.0's schema).
 */
bool
pgm_user_active_read(Snapshot snapshot, Datum user_id)
{
	PgmIndexScan scan;
	bool		active = false;
	bool		isnull;

	if (pgm_index_find(&scan, &balance_by_user, snapshot, 1, &user_id))
		active = DatumGetBool(pgm_index_col(&scan, 0, &isnull));
	pgm_index_end(&scan);
	return active;
}

/*
 * Queue for a user, then lock the balance row, sweeping the user's expired
 * holds when the row says there are any.  False, with nothing locked, for
 * an unknown or deactivated user.
 */
bool
pgm_try_lock_user(Datum user_id)
{
	pgm_queue_for_user(user_id);
	if (!exec_for_user(&plan_lock, user_id) || !pgm_col_bool(0, 1))
		return false;
	if (pgm_col_bool(0, 2))
		pgm_sweep_expired_holds(user_id, NULL);
	return true;
}

/* The same, raising PM002 for an unknown or deactivated user. */
void
pgm_lock_user(Datum user_id)
{
	if (!pgm_try_lock_user(user_id))
		pgm_raise_unknown_account(user_id);
}

/*
 * For the sweep of every user (expire_reservations, which goes in uuid
 * order): lock a user's balance row, active or not, without queueing, and
 * sweep its expired holds.  Returns how many expired; 0 when the row is gone.
 */
int64
pgm_sweep_user(Datum user_id)
{
	bool		active;

	if (!pgm_lock_user_row(user_id, &active))
		return 0;
	return pgm_sweep_expired_holds(user_id, NULL);
}

/*
 * Lock a user's balance row, active or not, without queueing; *active says
 * which.  False when there is no such row.
 */
bool
pgm_lock_user_row(Datum user_id, bool *active)
{
	if (!exec_for_user(&plan_lock, user_id))
		return false;
	*active = pgm_col_bool(0, 1);
	return true;
}

/*
 * Raise PM002 unless the user exists and is active; with lock, queue for the
 * user and lock the balance row as every ledger operation does.  For the
 * other C files that act on one user's rows.
 */
void
pgm_check_user(Datum user_id, bool lock)
{
	PgmAccountState state;

	if (lock)
		pgm_lock_user(user_id);
	else
		pgm_account_state(user_id, &state);
}

/*
 * Queue for a user before touching the user's balance row.
 *
 * Correctness comes from the row lock alone; this transaction-scoped lock
 * on the user (an advisory lock tag in a key space of pgmarket's own, which
 * SQL's pg_advisory_* functions cannot reach) only makes the queue cheap
 * when one user is hot.  Without it, every waiter on the row queues on the
 * tuple lock, then on the holder's transaction id, and re-checks the row on
 * wake-up; with it, the lock manager hands the user directly to the next
 * waiter, who then finds the row free.
 *
 * The multi-user operations (deduct_batch, expire_reservations) lock rows
 * without this lock, so that a batch of many users does not fill the shared
 * lock table.  A transaction that already holds a user's row (from such an
 * operation, earlier in the same transaction) must therefore not queue
 * behind a waiter for that very row: when the user lock is busy, we look at
 * the row, and skip the queue if this transaction has locked or written it.
 *
 * A transaction takes at most PGM_MAX_QUEUE_LOCKS of these locks: a bulk
 * job that funds ten thousand users in one transaction would otherwise fill
 * the shared lock table.  Past that, its calls rely on the row lock alone.
 */
#define PGM_MAX_QUEUE_LOCKS	32

static int	queue_locks_taken = 0;

/* The queue locks go with the transaction (pgmarket.c's callback). */
void
pgm_userlock_xact_end(void)
{
	queue_locks_taken = 0;
}

static void
queue_tag(LOCKTAG *tag, Datum user_id)
{
	pg_uuid_t  *u = DatumGetUUIDP(user_id);

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, 0x706d6b74,
						 hash_bytes(u->data, UUID_LEN), PGM_LOCKTAG_FIELD4);
}

/*
 * Has this transaction locked or written the user's balance row?  (Its
 * xmin or xmax is this transaction or one of its subtransactions; a row
 * locked by several transactions at once, a multixact, counts as not.)
 */
bool
pgm_user_row_held(Datum user_id)
{
	bool		isnull;
	TransactionId xmin;
	TransactionId xmax;

	if (!exec_for_user(&plan_row_owner, user_id))
		return false;
	xmin = DatumGetTransactionId(pgm_col(0, 1, &isnull));
	xmax = DatumGetTransactionId(pgm_col(0, 2, &isnull));
	return TransactionIdIsCurrentTransactionId(xmin) ||
		(TransactionIdIsValid(xmax) &&
		 TransactionIdIsCurrentTransactionId(xmax));
}

/*
 * Queue for a user without waiting: PGM_QUEUE_TAKEN when this call took
 * the lock, PGM_QUEUE_HELD when the transaction held it already (or takes
 * no more of them), PGM_QUEUE_BUSY when another transaction holds it: the
 * user is being charged right now, the sign that the user is hot.
 */
PgmQueueResult
pgm_queue_try(Datum user_id)
{
	LOCKTAG		tag;
	LockAcquireResult got;

	queue_tag(&tag, user_id);
	if (queue_locks_taken >= PGM_MAX_QUEUE_LOCKS)
		return PGM_QUEUE_HELD;
	got = LockAcquire(&tag, ExclusiveLock, false, true);
	if (got == LOCKACQUIRE_NOT_AVAIL)
		return PGM_QUEUE_BUSY;
	if (got == LOCKACQUIRE_OK)
	{
		queue_locks_taken++;
		return PGM_QUEUE_TAKEN;
	}
	return PGM_QUEUE_HELD;
}

/*
 * Queue for a user, waiting while another transaction holds the lock,
 * unless this transaction has locked or written the user's row (the rules
 * above PGM_MAX_QUEUE_LOCKS).
 */
void
pgm_queue_for_user(Datum user_id)
{
	LOCKTAG		tag;

	if (pgm_queue_try(user_id) != PGM_QUEUE_BUSY)
		return;
	if (pgm_user_row_held(user_id))
		return;
	queue_tag(&tag, user_id);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	queue_locks_taken++;
}

/* Does this transaction hold the user's queue lock? */
bool
pgm_queue_held(Datum user_id)
{
	LOCKTAG		tag;

	queue_tag(&tag, user_id);
	return LockHeldByMe(&tag, ExclusiveLock);
}

/*
 * Give back a queue lock that the caller took (PGM_QUEUE_TAKEN) and under
 * which it has written nothing, so that it can wait for something else
 * first (escrow.c's rule: the user's slots before the user's queue).
 */
void
pgm_queue_release(Datum user_id)
{
	LOCKTAG		tag;

	queue_tag(&tag, user_id);
	if (LockRelease(&tag, ExclusiveLock, false))
		queue_locks_taken--;
}

/* ----------------------------------------------------------------
 * The shapes of the small user-scoped calls
 * ----------------------------------------------------------------
 */

/*
 * The start of a call on one user's rows, after its arguments are
 * checked: SPI connected, the plans of the caller's table prepared (on
 * first use), and the user's account checked (PM002), with lock queued
 * for and the balance row locked, as pgm_check_user does.
 */
void
pgm_user_begin(Datum user_id, const PgmPlanDef *defs, int ndefs, bool lock)
{
	pgm_spi_connect();
	pgm_prepare_plans(defs, ndefs);
	pgm_check_user(user_id, lock);
}

/*
 * The whole of a call that runs one statement on a user's rows: check the
 * account of the user in values[0] (PM002), then run a plan of the
 * caller's table (prepared on first use) with values and nulls as its
 * parameters; returns how many rows it touched.  The caller has checked
 * the arguments and the actor rule.
 */
uint64
pgm_user_exec(const PgmPlanDef *defs, int ndefs, SPIPlanPtr *plan,
			  Datum *values, const char *nulls)
{
	uint64		n;

	pgm_user_begin(values[0], defs, ndefs, false);
	pgm_exec(*plan, values, nulls, false);
	n = SPI_processed;
	pgm_spi_finish();
	return n;
}

/*
 * The same with arguments 0 to nargs - 1 as $1 to $nargs (argument 0 the
 * user); true when it touched one row.
 */
bool
pgm_user_exec_one(FunctionCallInfo fcinfo, const PgmPlanDef *defs, int ndefs,
				  SPIPlanPtr *plan, int nargs)
{
	Datum		values[FUNC_MAX_ARGS];
	int			i;

	for (i = 0; i < nargs; i++)
		values[i] = PG_GETARG_DATUM(i);
	return pgm_user_exec(defs, ndefs, plan, values, NULL) == 1;
}

/*
 * The whole of a materialized set-returning call that lists the rows of the
 * user in argument 0: check the account (PM002), run a plan of the caller's
 * table with the user as $1, and put every row into the result, money
 * columns as pgm_put_rows turns them.  The caller has checked the actor
 * rule.
 */
Datum
pgm_user_rows(FunctionCallInfo fcinfo, const PgmPlanDef *defs, int ndefs,
			  SPIPlanPtr *plan, uint32 money_columns)
{
	Datum		values[1] = {PG_GETARG_DATUM(0)};

	InitMaterializedSRF(fcinfo, 0);
	pgm_user_begin(values[0], defs, ndefs, false);
	pgm_exec(*plan, values, NULL, true);
	pgm_put_rows((ReturnSetInfo *) fcinfo->resultinfo, money_columns);
	pgm_spi_finish();
	return (Datum) 0;
}

/*
 * revoke_api_key and revoke_provider_key: (user_id, key_id), the user's
 * key revoked by the caller's plan; true when it was active.
 */
Datum
pgm_user_revoke(FunctionCallInfo fcinfo, const PgmPlanDef *defs, int ndefs,
				SPIPlanPtr *plan)
{
	pgm_user_arg(fcinfo, 0);
	pgm_require_arg(fcinfo, 1, "key_id");
	PG_RETURN_BOOL(pgm_user_exec_one(fcinfo, defs, ndefs, plan, 2));
}
