/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *	  Tiers and rate limits of platform API keys: the table tiers,
 *	  set_tier, and the limiter that charge_api_key, reserve_api_key and
 *	  check_rate_limit (apikeys.c) ask through pgm_ratelimit_admit and
 *	  pgm_ratelimit_peek.
 *
 * The window
 * ----------
 * A key's tier allows, in any 60 seconds, requests_per_minute + burst calls
 * and tokens_per_minute tokens (NULL: no such limit).  The limiter keeps,
 * per key, a ring of 61 one-second buckets (RateWindow): the calls and the
 * tokens admitted in each of the last 61 whole seconds of the server's
 * clock.  A call at time t (in the second S = floor(t)) is admitted when
 * the buckets S-60 .. S plus the call itself stay within the limits, and is
 * then counted in bucket S.  Any 60-second interval [a, a + 60) that ends
 * at or after an admitted call lies within the seconds floor(a) .. S, that
 * is within the 61 buckets that call saw; so in every 60-second interval of
 * real time the key admits at most its limits, whatever the alignment.
 * That is what "exact" means here, and it is exact at the cost of
 * remembering a call for 60 to 61 seconds instead of 60: a key that used
 * its allowance gets it back within a second of the exact sliding window,
 * never earlier.  A key quiet for 61 seconds has its whole allowance.
 * retry_after_ms is the time until the oldest buckets that must go have
 * gone (rounded up to the millisecond), so a retry at that time is
 * admitted unless others used the room first.
 *
 * The time is the clock read under the key's lock (below), never the
 * transaction's start: the order of admissions is the order of the lock.
 * A clock that steps back is taken as standing still until it catches up.
 *
 * Where the counters live
 * -----------------------
 * With pgmarket in shared_preload_libraries: a fixed-size shared hash
 * keyed by (database, key_id), pgmarket.rate_limit_keys entries (default
 * 10000, about 7.5 MB), in RL_PARTITIONS partitions each under an LWLock
 * of its own: keys in different partitions never wait on each other, and
 * keys in one partition hold its lock for a few hundred instructions.
 * Entries are never evicted: when the hash is full, keys that have no entry
 * yet are counted in the table below, and stay there until a restart (a key
 * is in one place or the other, never both, so the limit stays exact).
 *
 * Without preloading (or for the keys that do not fit): the UNLOGGED table
 * rate_counters, one row per key holding its RateWindow.  A call first
 * reads the committed row without a lock, and is refused from it when it
 * does not fit (see table_decide: that refusal is always right); a call
 * that fits is decided again and counted under the row's lock (SELECT ...
 * FOR UPDATE), so concurrent admissions through one key queue on that row
 * and calls with different keys never meet.  The row lock is held to the
 * end of the transaction, so admissions of one key are serialised with its
 * charges' commits; it is taken before the user's lock, never after.
 *
 * Neither place is WAL-logged: counters are not money.  A crash (or a
 * failover: an unlogged table is empty on a promoted standby, and shared
 * memory is per server) forgets what was counted, which lets keys make up
 * to one more window's worth of calls; it never charges anything twice.
 *
 * Transactions
 * ------------
 * A refused call raises PM005 before anything is locked or charged (the
 * user's lock, the key's row and the ledger come after the limiter), so it
 * writes nothing.  An admitted call counts at once; when its transaction
 * (or the subtransaction it ran in) aborts, the count goes too: in the
 * table by the rollback, in shared memory by the abort callbacks below,
 * which take back what this transaction counted (from the bucket it went
 * into, while that bucket is still in the ring).  So a call whose charge
 * fails (PM001, 22003, a lost connection ...) does not use up a request,
 * in either mode; calls refused meanwhile because of it were refused on
 * the safe side.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "access/nbtree.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pgm_set_tier);

#define RL_SLOTS				61	/* seconds S-60 .. S */
#define RL_PARTITIONS			64	/* a power of two */
#define RL_TIER_MAX				32

/* The last 61 seconds of a key; stored as is in rate_counters.state. */
typedef struct RateWindow
{
	int64		base;			/* the newest second counted (epoch 2000) */
	int32		requests[RL_SLOTS]; /* by second % RL_SLOTS */
	int64		tokens[RL_SLOTS];
} RateWindow;

typedef struct RateKey
{
	Oid			dbid;
	pg_uuid_t	key_id;
} RateKey;

typedef struct RateEntry
{
	RateKey		key;			/* the hash key: first */
	RateWindow	w;
} RateEntry;

typedef struct RateShared
{
	pg_atomic_uint32 entries;	/* entries handed out, at most max_keys */
	LWLockPadded *locks;
} RateShared;

/* A tier's limits; has_* false: no such limit. */
typedef struct RateLimits
{
	bool		has_requests;
	int64		requests;		/* requests_per_minute + burst */
	bool		has_tokens;
	int64		tokens;
	int64		per_minute;		/* requests_per_minute alone, for messages */
	int64		burst;
} RateLimits;

/* What this transaction counted in shared memory, to take back on abort. */
typedef struct RatePending
{
	RateKey		key;
	int64		second;
	int64		tokens;
	SubTransactionId subid;
} RatePending;

static int	rate_limit_keys = 10000;
static char *rate_limiter_mode = NULL;
static bool rate_shmem_requested = false;
static RateShared *rate_shared = NULL;
static HTAB *rate_hash = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static RatePending *pending = NULL; /* in TopTransactionContext */
static int	npending = 0;
static int	maxpending = 0;

/* ----------------------------------------------------------------
 * Prepared statements of the table mode and of set_tier
 * ----------------------------------------------------------------
 */
static SPIPlanPtr plan_lock;
static SPIPlanPtr plan_create;
static SPIPlanPtr plan_store;
static SPIPlanPtr plan_set_tier;

static const PgmPlanDef rate_plans[] = {
	{&plan_lock,
		"SELECT state FROM pgmarket.rate_counters WHERE key_id = $1 FOR UPDATE",
		1, {UUIDOID}},
	{&plan_create,
		"INSERT INTO pgmarket.rate_counters (key_id, state) VALUES ($1, $2)"
		" ON CONFLICT (key_id) DO NOTHING",
		2, {UUIDOID, BYTEAOID}},
	{&plan_store,
		"UPDATE pgmarket.rate_counters SET state = $2 WHERE key_id = $1",
		2, {UUIDOID, BYTEAOID}},
	{&plan_set_tier,
		"INSERT INTO pgmarket.tiers AS t"
		"       (name, requests_per_minute, tokens_per_minute, burst)"
		" VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE"
		"   SET requests_per_minute = EXCLUDED.requests_per_minute,"
		"       tokens_per_minute = EXCLUDED.tokens_per_minute,"
		"       burst = EXCLUDED.burst",
		4, {TEXTOID, INT4OID, INT8OID, INT4OID}},
};

#define prepare_plans() PGM_PREPARE_PLANS(rate_plans)

/* A key's committed counters, read without SPI or a lock. */
static PgmIndexRef counter_by_key = {
	"rate_counters", "rate_counters_pkey", 1, {BTEqualStrategyNumber},
	1, {"state"}, {BYTEAOID}
};

/* A tier's row, read by its primary key without SPI on every call. */
static PgmIndexRef tier_by_name = {
	"tiers", "tiers_pkey", 1, {BTEqualStrategyNumber},
	3, {"requests_per_minute", "tokens_per_minute", "burst"},
	{INT4OID, INT8OID, INT4OID}
};

/* ----------------------------------------------------------------
 * Shared memory
 * ----------------------------------------------------------------
 */
static Size
rate_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(RateShared)),
					hash_estimate_size(rate_limit_keys, sizeof(RateEntry)));
}

static void
rate_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(rate_shmem_size());
	RequestNamedLWLockTranche("pgmarket_ratelimit", RL_PARTITIONS);
}

static void
rate_shmem_startup(void)
{
	HASHCTL		info;
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rate_shared = ShmemInitStruct("pgmarket rate limiter", sizeof(RateShared),
								  &found);
	if (!found)
	{
		pg_atomic_init_u32(&rate_shared->entries, 0);
		rate_shared->locks = GetNamedLWLockTranche("pgmarket_ratelimit");
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(RateKey);
	info.entrysize = sizeof(RateEntry);
	info.num_partitions = RL_PARTITIONS;
	rate_hash = ShmemInitHash("pgmarket rate limiter keys",
							  rate_limit_keys, rate_limit_keys, &info,
							  HASH_ELEM | HASH_BLOBS | HASH_PARTITION);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Called by _PG_init: the settings, and the shared memory when the library
 * is being preloaded (it cannot be had later; nor can a PGC_POSTMASTER
 * setting be defined then, so pgmarket.rate_limit_keys exists only in a
 * server that preloads the library).
 */
void
pgm_ratelimit_init(void)
{
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("pgmarket.rate_limit_keys",
								"Platform keys whose rate limits are counted in shared memory.",
								"Keys beyond it are counted in a table.",
								&rate_limit_keys, 10000, 0, 1000000,
								PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("pgmarket.rate_limiter",
							   "Where the rate limiter counts: shared_memory or table.",
							   NULL, &rate_limiter_mode,
							   process_shared_preload_libraries_in_progress ?
							   "shared_memory" : "table",
							   PGC_INTERNAL, 0, NULL, NULL, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
	rate_shmem_requested = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = rate_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = rate_shmem_startup;
}

/* ----------------------------------------------------------------
 * The window
 * ----------------------------------------------------------------
 */

/* Move the ring to second now (empties the seconds that fell out). */
static void
window_advance(RateWindow *w, int64 now)
{
	int64		s;

	if (now <= w->base)
		return;
	if (now - w->base >= RL_SLOTS)
	{
		memset(w->requests, 0, sizeof(w->requests));
		memset(w->tokens, 0, sizeof(w->tokens));
	}
	else
		for (s = w->base + 1; s <= now; s++)
		{
			w->requests[s % RL_SLOTS] = 0;
			w->tokens[s % RL_SLOTS] = 0;
		}
	w->base = now;
}

/* Does a call of tokens fit beside requests and used already counted? */
static bool
window_fits(const RateLimits *l, int64 requests, int64 used, int64 tokens)
{
	return (!l->has_requests || requests < l->requests) &&
		(!l->has_tokens || tokens <= l->tokens - used);
}

/*
 * Decide about a call of tokens at now_us on a window already advanced to
 * its second; false with *retry_ms when it does not fit.  *remaining: the
 * requests left before this call.
 */
static bool
window_decide(const RateWindow *w, const RateLimits *l, int64 now_us,
			  int64 tokens, int64 *retry_ms, int64 *remaining)
{
	int64		requests = 0;
	int64		used = 0;
	int64		s;
	int			i;

	for (i = 0; i < RL_SLOTS; i++)
	{
		requests += w->requests[i];
		used += w->tokens[i];
	}
	*remaining = l->has_requests ? Max(l->requests - requests, 0) : 0;
	*retry_ms = 0;
	if (window_fits(l, requests, used, tokens))
		return true;

	/* bucket s leaves the window when the clock reaches s + RL_SLOTS */
	for (s = w->base - (RL_SLOTS - 1); s <= w->base; s++)
	{
		requests -= w->requests[s % RL_SLOTS];
		used -= w->tokens[s % RL_SLOTS];
		if (window_fits(l, requests, used, tokens))
			break;
	}
	*retry_ms = Max(((s + RL_SLOTS) * USECS_PER_SEC - now_us + 999) / 1000, 1);
	return false;
}

static void
window_count(RateWindow *w, int64 tokens)
{
	w->requests[w->base % RL_SLOTS]++;
	w->tokens[w->base % RL_SLOTS] += tokens;
}

/* The clock, in microseconds and whole seconds since 2000. */
static int64
clock_now(int64 *second)
{
	int64		now = GetCurrentTimestamp();

	*second = now / USECS_PER_SEC;
	if (now < 0)
		elog(ERROR, "the clock is before 2000");
	return now;
}

/* ----------------------------------------------------------------
 * Tiers
 * ----------------------------------------------------------------
 */

/*
 * The tiers, kept per backend
 * ---------------------------
 * Every charge and reservation through a platform key asks its tier's
 * limits, also for keys whose tier has none; reading the schema, the table
 * and the tier's row each time cost more than the limiter itself.  So a
 * backend keeps what it read: whether the tiers table is there (forgotten
 * at any relcache invalidation: it may be the extension dropped, created
 * or updated), and the limits of the last TIER_CACHE_SIZE tiers asked for,
 * found or not (forgotten at a relcache invalidation of tiers, or of all).
 *
 * Rows of tiers are written only by set_tier, which invalidates the
 * table's relcache entry: at its commit every backend forgets the tiers
 * (and the writer itself at its next command, or at its abort), so a
 * change takes effect at the next call of every key of the tier.  A value
 * is kept only when no invalidation came while it was read, and only when
 * it was read under a new snapshot (not a repeatable read transaction's
 * older one), so a backend never keeps a tier older than the last
 * invalidation it processed.
 */
#define TIER_CACHE_SIZE			16

typedef struct TierCacheEntry
{
	char		name[RL_TIER_MAX + 1];
	RateLimits	limits;			/* all false: the tier has no limits */
} TierCacheEntry;

static TierCacheEntry tier_cache[TIER_CACHE_SIZE];
static int	tier_cache_used = 0;
static int	tier_cache_next = 0;	/* the entry to replace when full */
static Oid	tiers_relid = InvalidOid;
static bool tiers_checked = false;	/* tiers_relid is what the catalog says */
static uint64 tier_cache_generation = 0;

/* The tiers' cache goes with an invalidation (pgmarket.c's callback). */
void
pgm_ratelimit_relcache(Oid relid)
{
	tier_cache_generation++;
	tiers_checked = false;
	if (relid == InvalidOid || relid == tiers_relid)
	{
		tier_cache_used = 0;
		tier_cache_next = 0;
	}
}

/* The tiers table, or InvalidOid while the 0.7.0 schema is not installed. */
static Oid
tiers_table(void)
{
	Oid			nsp;
	Oid			relid;

	if (tiers_checked)
		return tiers_relid;
	nsp = get_namespace_oid("pgmarket", true);
	relid = OidIsValid(nsp) ? get_relname_relid("tiers", nsp) : InvalidOid;
	if (relid != tiers_relid)
	{
		tier_cache_used = 0;
		tier_cache_next = 0;
		tiers_relid = relid;
	}
	tiers_checked = true;
	return tiers_relid;
}

/* Read a tier's row: true when there is one (*l then holds its limits). */
static bool
tier_read(Datum tier, RateLimits *l)
{
	PgmIndexScan scan;
	bool		isnull;
	bool		found;
	Datum		d;

	memset(l, 0, sizeof(*l));
	PushActiveSnapshot(GetTransactionSnapshot());
	found = pgm_index_find(&scan, &tier_by_name, GetActiveSnapshot(), 1, &tier);
	if (found)
	{
		d = pgm_index_col(&scan, 0, &isnull);
		l->has_requests = !isnull;
		l->per_minute = isnull ? 0 : DatumGetInt32(d);
		l->burst = DatumGetInt32(pgm_index_col(&scan, 2, &isnull));
		l->requests = l->per_minute + l->burst;
		d = pgm_index_col(&scan, 1, &isnull);
		l->has_tokens = !isnull;
		l->tokens = isnull ? 0 : DatumGetInt64(d);
	}
	pgm_index_end(&scan);
	PopActiveSnapshot();
	return found;
}

/*
 * The limits of a tier by name; false when it has none (no row, both
 * limits NULL, or the tiers table of 0.7.0 not installed yet: between a
 * library update and ALTER EXTENSION UPDATE, keys work as in 0.6.0).
 */
static bool
tier_limits(Datum tier, RateLimits *l)
{
	text	   *t = DatumGetTextPP(tier);
	size_t		len = VARSIZE_ANY_EXHDR(t);
	uint64		generation;
	int			i;

	memset(l, 0, sizeof(*l));
	AcceptInvalidationMessages();	/* a set_tier committed meanwhile */
	if (!OidIsValid(tiers_table()))
		return false;
	if (len <= RL_TIER_MAX)
		for (i = 0; i < tier_cache_used; i++)
			if (strncmp(tier_cache[i].name, VARDATA_ANY(t), len) == 0 &&
				tier_cache[i].name[len] == '\0')
			{
				*l = tier_cache[i].limits;
				return l->has_requests || l->has_tokens;
			}

	generation = tier_cache_generation;
	(void) tier_read(tier, l);
	if (generation == tier_cache_generation && tiers_checked &&
		!IsolationUsesXactSnapshot() && len <= RL_TIER_MAX)
	{
		TierCacheEntry *e;

		if (tier_cache_used < TIER_CACHE_SIZE)
			e = &tier_cache[tier_cache_used++];
		else
		{
			e = &tier_cache[tier_cache_next];
			tier_cache_next = (tier_cache_next + 1) % TIER_CACHE_SIZE;
		}
		memcpy(e->name, VARDATA_ANY(t), len);
		e->name[len] = '\0';
		e->limits = *l;
	}
	return l->has_requests || l->has_tokens;
}

/* A rate limit tier's name: 1 to 32 of [a-z0-9_-]; 22004 when NULL. */
text *
pgm_tier_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	char	   *s;
	char	   *p;
	bool		ok;

	pgm_require_arg(fcinfo, argno, argname);
	s = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	ok = s[0] != '\0' && strlen(s) <= RL_TIER_MAX;
	for (p = s; ok && *p; p++)
		ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			*p == '_' || *p == '-';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" is not valid", argname,
						pgm_shown_value(s, 40)),
				 errdetail("A tier is 1 to 32 of the characters a-z, 0-9, underscore and hyphen.")));
	return PG_GETARG_TEXT_PP(argno);
}

/*
 * 22023 unless a tier of that name exists (create_api_key's check); any
 * name passes while the tiers table of 0.7.0 is not installed yet.
 */
void
pgm_tier_must_exist(text *tier)
{
	RateLimits	l;

	if (!OidIsValid(tiers_table()))
		return;
	if (!tier_read(PointerGetDatum(tier), &l))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate_limit_tier \"%s\" is not a tier", text_to_cstring(tier)),
				 errhint("The tiers are the rows of pgmarket.tiers; set_tier adds one.")));
}

/* ----------------------------------------------------------------
 * Taking back on abort what shared memory counted
 * ----------------------------------------------------------------
 */

/* Take one pending count back, if its bucket is still in the ring. */
static void
undo_pending(const RatePending *p)
{
	uint32		hash = get_hash_value(rate_hash, &p->key);
	LWLock	   *lock = &rate_shared->locks[hash % RL_PARTITIONS].lock;
	RateEntry  *e;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	e = hash_search_with_hash_value(rate_hash, &p->key, hash, HASH_FIND, NULL);
	if (e != NULL && p->second <= e->w.base &&
		e->w.base - p->second < RL_SLOTS)
	{
		int			slot = p->second % RL_SLOTS;

		if (e->w.requests[slot] > 0)
			e->w.requests[slot]--;
		e->w.tokens[slot] = Max(e->w.tokens[slot] - p->tokens, 0);
	}
	LWLockRelease(lock);
}

/*
 * A call's counts stand when its transaction commits and are taken back
 * when it aborts, the subtransaction's when that aborts (pgmarket.c's
 * callbacks).
 */
void
pgm_ratelimit_xact_end(XactEvent event)
{
	int			i;

	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		for (i = 0; i < npending; i++)
			undo_pending(&pending[i]);
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
	{
		pending = NULL;			/* TopTransactionContext goes */
		npending = maxpending = 0;
	}
}

void
pgm_ratelimit_subxact_end(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid)
{
	int			i;
	int			kept = 0;

	if (npending == 0)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		for (i = 0; i < npending; i++)
		{
			if (pending[i].subid >= mySubid)
				undo_pending(&pending[i]);
			else
				pending[kept++] = pending[i];
		}
		npending = kept;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		for (i = 0; i < npending; i++)
			if (pending[i].subid == mySubid)
				pending[i].subid = parentSubid;
}

static void
remember_pending(const RateKey *key, int64 second, int64 tokens)
{
	if (npending == maxpending)
	{
		int			n = maxpending == 0 ? 8 : maxpending * 2;

		if (pending == NULL)
			pending = MemoryContextAlloc(TopTransactionContext,
										 n * sizeof(RatePending));
		else
			pending = repalloc(pending, n * sizeof(RatePending));
		maxpending = n;
	}
	pending[npending].key = *key;
	pending[npending].second = second;
	pending[npending].tokens = tokens;
	pending[npending].subid = GetCurrentSubTransactionId();
	npending++;
}

/* ----------------------------------------------------------------
 * The two places
 * ----------------------------------------------------------------
 */

/*
 * Decide (and count, with consume) in shared memory.  Returns false when
 * the key has no entry and none is left: the caller uses the table.
 */
static bool
shmem_decide(const pg_uuid_t *key_id, const RateLimits *l, int64 tokens,
			 bool consume, bool *admitted, int64 *retry_ms, int64 *remaining)
{
	RateKey		key;
	uint32		hash;
	LWLock	   *lock;
	RateEntry  *e;
	int64		now_us;
	int64		second;

	if (rate_hash == NULL)
		return false;
	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.key_id = *key_id;
	hash = get_hash_value(rate_hash, &key);
	lock = &rate_shared->locks[hash % RL_PARTITIONS].lock;

	LWLockAcquire(lock, consume ? LW_EXCLUSIVE : LW_SHARED);
	e = hash_search_with_hash_value(rate_hash, &key, hash, HASH_FIND, NULL);
	if (e == NULL && consume)
	{
		/* a slot for a new key, while there is one; never taken back */
		if (pg_atomic_fetch_add_u32(&rate_shared->entries, 1) < (uint32) rate_limit_keys)
		{
			bool		found;

			e = hash_search_with_hash_value(rate_hash, &key, hash,
											HASH_ENTER_NULL, &found);
			if (e != NULL && !found)
				memset(&e->w, 0, sizeof(e->w));
			else if (e == NULL)	/* out of shared memory: full from now on */
				pg_atomic_fetch_add_u32(&rate_shared->entries, (uint32) rate_limit_keys);
		}
		else
			pg_atomic_fetch_sub_u32(&rate_shared->entries, 1);
		if (e == NULL)
		{
			LWLockRelease(lock);
			return false;
		}
	}
	now_us = clock_now(&second);
	if (e == NULL)
	{
		/* never counted here; but it may be counted in the table */
		LWLockRelease(lock);
		if (pg_atomic_read_u32(&rate_shared->entries) < (uint32) rate_limit_keys)
		{
			*admitted = true;
			*retry_ms = 0;
			*remaining = l->has_requests ? l->requests : 0;
			return true;
		}
		return false;
	}
	if (consume)
	{
		window_advance(&e->w, second);
		*admitted = window_decide(&e->w, l, now_us, tokens, retry_ms, remaining);
		if (*admitted)
			window_count(&e->w, tokens);
		second = e->w.base;
	}
	else
	{
		RateWindow	w = e->w;

		window_advance(&w, second);
		*admitted = window_decide(&w, l, now_us, tokens, retry_ms, remaining);
	}
	LWLockRelease(lock);
	if (consume && *admitted)
		remember_pending(&key, second, tokens);
	return true;
}

/* The RateWindow stored in a bytea (an empty one for anything else). */
static void
window_from_datum(Datum d, RateWindow *w)
{
	bytea	   *b = DatumGetByteaPP(d);

	if (VARSIZE_ANY_EXHDR(b) == sizeof(RateWindow))
		memcpy(w, VARDATA_ANY(b), sizeof(RateWindow));
	else
		memset(w, 0, sizeof(RateWindow));
}

static Datum
window_to_datum(const RateWindow *w)
{
	bytea	   *b = palloc(VARHDRSZ + sizeof(RateWindow));

	SET_VARSIZE(b, VARHDRSZ + sizeof(RateWindow));
	memcpy(VARDATA(b), w, sizeof(RateWindow));
	return PointerGetDatum(b);
}

/*
 * The committed window of a key in rate_counters, read by its primary key
 * without SPI or a lock; false when the key has no row.
 */
static bool
table_read(const pg_uuid_t *key_id, RateWindow *w)
{
	PgmIndexScan scan;
	Datum		key = UUIDPGetDatum(key_id);
	bool		isnull;
	bool		found;

	PushActiveSnapshot(GetTransactionSnapshot());
	found = pgm_index_find(&scan, &counter_by_key, GetActiveSnapshot(), 1, &key);
	if (found)
		window_from_datum(pgm_index_col(&scan, 0, &isnull), w);
	else
		memset(w, 0, sizeof(RateWindow));
	pgm_index_end(&scan);
	PopActiveSnapshot();
	return found;
}

/*
 * Decide (and count, with consume) in rate_counters.
 *
 * First from the committed row, without a lock: calls that other
 * transactions admitted and have not committed yet only add to it, and a
 * row of a later commit only drops seconds that are out of this call's
 * window anyway, so a call the committed row refuses would be refused
 * under the lock too.  That makes a refusal a read (no lock, no xid, no
 * wait behind the key's open charges).  A call it would admit is decided
 * again under the row's lock, and counted there.
 */
static void
table_decide(const pg_uuid_t *key_id, const RateLimits *l, int64 tokens,
			 bool consume, bool *admitted, int64 *retry_ms, int64 *remaining)
{
	RateWindow	w;
	Datum		values[2];
	bool		isnull;
	bool		exists;
	int64		now_us;
	int64		second;

	(void) table_read(key_id, &w);
	now_us = clock_now(&second);
	window_advance(&w, second);
	*admitted = window_decide(&w, l, now_us, tokens, retry_ms, remaining);
	if (!consume || !*admitted)
		return;

	pgm_spi_connect();
	prepare_plans();
	values[0] = UUIDPGetDatum(key_id);
	pgm_exec(plan_lock, values, NULL, false);
	exists = SPI_processed == 1;
	if (exists)
		window_from_datum(pgm_col(0, 1, &isnull), &w);
	else
		memset(&w, 0, sizeof(w));

	now_us = clock_now(&second);
	window_advance(&w, second);
	*admitted = window_decide(&w, l, now_us, tokens, retry_ms, remaining);
	if (*admitted)
	{
		window_count(&w, tokens);
		values[1] = window_to_datum(&w);
		if (!exists)
		{
			/* a first call: the row is new, or another call made it first */
			pgm_exec(plan_create, values, NULL, false);
			if (SPI_processed != 1)
			{
				pgm_spi_finish();
				table_decide(key_id, l, tokens, consume, admitted, retry_ms,
							 remaining);
				return;
			}
		}
		else
			pgm_exec(plan_store, values, NULL, false);
	}
	pgm_spi_finish();
}

static void
decide(const pg_uuid_t *key_id, const RateLimits *l, int64 tokens,
	   bool consume, bool *admitted, int64 *retry_ms, int64 *remaining)
{
	if (!shmem_decide(key_id, l, tokens, consume, admitted, retry_ms, remaining))
		table_decide(key_id, l, tokens, consume, admitted, retry_ms, remaining);
}

/* ----------------------------------------------------------------
 * The entry points for apikeys.c
 * ----------------------------------------------------------------
 */

/*
 * Admit one call of tokens through a key of a tier, and count it; raise
 * PM005 with the wait when the tier allows no more (nothing counted), or
 * 22023 when the call alone has more tokens than the tier allows a minute.
 */
void
pgm_ratelimit_admit(const pg_uuid_t *key_id, Datum tier, int64 tokens,
					const char *key_prefix)
{
	RateLimits	l;
	bool		admitted;
	int64		retry_ms;
	int64		remaining;

	if (!tier_limits(tier, &l))
		return;
	if (!l.has_tokens)
		tokens = 0;				/* not counted: nothing bounds their sum */
	if (l.has_tokens && tokens > l.tokens)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tokens_used " INT64_FORMAT " exceeds the " INT64_FORMAT " tokens a minute of tier \"%s\"",
						tokens, l.tokens, TextDatumGetCString(tier)),
				 errdetail("No window of the tier could ever admit this call.")));

	decide(key_id, &l, tokens, true, &admitted, &retry_ms, &remaining);
	if (!admitted)
		ereport(ERROR,
				(errcode(ERRCODE_PGM_RATE_LIMITED),
				 errmsg("rate limited: API key %s of tier \"%s\" allows no more %s now; retry after " INT64_FORMAT " ms",
						key_prefix, TextDatumGetCString(tier),
						remaining == 0 && l.has_requests ? "requests" : "tokens",
						retry_ms),
				 errdetail("retry_after_ms=" INT64_FORMAT ": the tier allows %s in any 60 seconds.",
						   retry_ms,
						   psprintf("%s requests%s and %s tokens",
									l.has_requests ? psprintf(INT64_FORMAT, l.per_minute) : "unlimited",
									l.burst > 0 ? psprintf(" (plus a burst of " INT64_FORMAT ")", l.burst) : "",
									l.has_tokens ? psprintf(INT64_FORMAT, l.tokens) : "unlimited"))));
}

/*
 * What check_rate_limit answers: would a call be admitted now (with a
 * token left, when the tier counts tokens), when to retry if not, and the
 * requests left (*has_remaining false: no request limit).  Consumes nothing.
 */
void
pgm_ratelimit_peek(const pg_uuid_t *key_id, Datum tier, bool *allowed,
				   int64 *retry_ms, int64 *remaining, bool *has_remaining)
{
	RateLimits	l;

	*allowed = true;
	*retry_ms = 0;
	*remaining = 0;
	*has_remaining = false;
	if (!tier_limits(tier, &l))
		return;
	decide(key_id, &l, l.has_tokens ? 1 : 0, false, allowed, retry_ms, remaining);
	*has_remaining = l.has_requests;
}

/* ----------------------------------------------------------------
 * set_tier(name text, requests_per_minute int, tokens_per_minute bigint,
 *			burst int DEFAULT 0) RETURNS void
 * ----------------------------------------------------------------
 */
Datum
pgm_set_tier(PG_FUNCTION_ARGS)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	text	   *name = pgm_tier_arg(fcinfo, 0, "name");
	static const char *const argnames[] = {NULL, "requests_per_minute",
	"tokens_per_minute", "burst"};
	int			i;

	pgm_require_arg(fcinfo, 3, "burst");
	for (i = 1; i <= 3; i++)
	{
		int64		v;

		if (PG_ARGISNULL(i))
			continue;
		v = i == 2 ? PG_GETARG_INT64(i) : PG_GETARG_INT32(i);
		if (v < (i == 3 ? 0 : 1))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s " INT64_FORMAT " is not valid", argnames[i], v),
					 errdetail(i == 3 ? "A burst is zero or more requests." :
							   "A limit is 1 or more, or null for no limit.")));
	}

	values[0] = PointerGetDatum(name);
	for (i = 1; i <= 3; i++)
	{
		values[i] = PG_GETARG_DATUM(i);
		if (PG_ARGISNULL(i))
			nulls[i] = 'n';
	}
	pgm_spi_connect();
	prepare_plans();
	pgm_exec(plan_set_tier, values, nulls, false);
	pgm_spi_finish();
	/* every backend forgets the tiers it kept: at commit, or here at once */
	CacheInvalidateRelcacheByRelid(tiers_table());
	PG_RETURN_VOID();
}
