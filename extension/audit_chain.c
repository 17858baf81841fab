/*-------------------------------------------------------------------------
 *
 * audit_chain.c
 *	  The tamper-evident side of the audit trail: the keyed hash chain over
 *	  pgmarket.audit_log (seal_audit, verify_audit, purge_audit).  The rows
 *	  themselves are written by audit.c; what the two share is in audit.h.
 *
 * The chain
 * ---------
 * Audit rows are never updated, so the chain does not live in them: each
 * seal_audit() appends rows to pgmarket.audit_seals, each covering a range
 * of ids (after_id, through_id] with, for every audit row of that range in
 * id order, its id and a 16-byte keyed BLAKE2b MAC of the row's content;
 * chain_hash = keyed BLAKE2b-256(previous chain_hash, the seal's header and
 * entries).  The key is the audit subkey of the newest master key version,
 * recorded per seal (key_version), so older seals keep verifying after a
 * rotation while their version is still in the key file.  Since 0.5.0 the
 * chain hash covers every column of the seal record, sealed_at included
 * (rule 2); records made before (rule 1, without sealed_at) verify under
 * their own rule, and only as a prefix of the chain.
 *
 * A superuser holds the key (through seal_audit) and can rewrite the rows,
 * drop the seals and seal again; the chain then verifies in itself.  That is
 * caught against an anchor kept outside the database: the 40 bytes of the
 * last sealed id (big-endian) and the chain hash after it, as audit_head()
 * returns them and as every seal writes them to the server log.
 * verify_audit(anchor => ...) requires the chain to pass through that point.
 *
 * Concurrency: what a sealer may seal
 * -----------------------------------
 * Writers never wait on the chain: they insert with an id from
 * audit_log_id_seq and never touch audit_seals.  Sealers serialize on an
 * ExclusiveLock of audit_seals (which no writer takes).  Ids are assigned
 * before commit, so a row with a lower id may commit after one with a higher
 * id; a sealer must neither skip it nor wait for it.  Every writer takes
 * its top-level transaction id BEFORE it draws an id (audit.c keeps that
 * rule).  The sealer reads the sequence's last value L, then takes a
 * snapshot S: any transaction holding an id <= L had its xid before S, so
 * it is visible in S, aborted, or in S's list of running transactions.  It
 * then notes whether any transaction of that list is still running (R),
 * and only then scans (after_id, L] twice: with S (the rows it seals) and
 * with a dirty snapshot (committed or still in progress rows).  It seals up
 * to, not including, the first id that is dirty-visible but not visible in
 * S (a transaction in flight or committed after S), and, when R, the first
 * id that has no tuple at all (drawn by a transaction that has not inserted
 * it yet, or aborted and vacuumed away).  The rest waits for the next call.
 * Ranges are therefore contiguous, no row is sealed twice, and none is
 * skipped.
 *
 * verify_audit() recomputes every chain hash and every row MAC, in seal
 * order, and reports the first id that is missing, changed, moved or not
 * expected in a sealed range.  purge_audit() deletes the rows of whole seals
 * whose rows are all older than a given time (after verifying them) and
 * appends a 'purge' record to the chain; the seals stay, so the chain still
 * verifies from its start and the remaining rows are checked as before.
 *
 *-------------------------------------------------------------------------
 */
#include "audit.h"

#include <sodium.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pgm_seal_audit);
PG_FUNCTION_INFO_V1(pgm_verify_audit);
PG_FUNCTION_INFO_V1(pgm_purge_audit);

#define AUDIT_MAC_BYTES		16
#define AUDIT_ENTRY_BYTES	(8 + AUDIT_MAC_BYTES)
#define AUDIT_CHAIN_BYTES	32
#define AUDIT_SUBKEY_ID		1
#define AUDIT_CHUNK_IDS		100000	/* ids per seal row */
#define AUDIT_CHAIN_LABEL	"pgmarket audit seal v2"
#define AUDIT_CHAIN_LABEL_V1 "pgmarket audit seal v1"
#define AUDIT_ANCHOR_BYTES	(8 + AUDIT_CHAIN_BYTES)
#define AUDIT_MAC_LABEL		"pgmarket audit row v1"

/* Set while append_seal inserts a seal record (see audit_restored). */
bool		pgm_audit_appending_seal = false;

/* ----------------------------------------------------------------
 * MACs and the chain
 * ----------------------------------------------------------------
 */
static void
put_be64(unsigned char *p, uint64 v)
{
	int			i;

	for (i = 7; i >= 0; i--)
	{
		p[i] = v & 0xff;
		v >>= 8;
	}
}

static uint64
get_be64(const unsigned char *p)
{
	uint64		v = 0;
	int			i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/*
 * The MAC of one audit row: every column in table order, each as a null
 * flag and, when present, 8 big-endian bytes (id, at, txid) or a 4-byte
 * length and the bytes of the detoasted value (text, jsonb, text[], inet:
 * binary forms that a dump and restore reproduce).
 */
static void
row_mac(const unsigned char *key, TupleDesc desc, HeapTuple tup,
		unsigned char *out)
{
	crypto_generichash_state st;
	Datum		values[AL_NATTS];
	bool		nulls[AL_NATTS];
	int			i;

	heap_deform_tuple(tup, desc, values, nulls);
	crypto_generichash_init(&st, key, PGM_SUBKEY_BYTES, AUDIT_MAC_BYTES);
	crypto_generichash_update(&st, (const unsigned char *) AUDIT_MAC_LABEL,
							  sizeof(AUDIT_MAC_LABEL));
	for (i = 0; i < AL_NATTS; i++)
	{
		unsigned char flag = nulls[i] ? 0 : 1;
		unsigned char buf[8];

		crypto_generichash_update(&st, &flag, 1);
		if (nulls[i])
			continue;
		if (i == AL_ID || i == AL_AT || i == AL_TXID)
		{
			put_be64(buf, (uint64) DatumGetInt64(values[i]));
			crypto_generichash_update(&st, buf, 8);
		}
		else
		{
			struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(values[i]));
			uint32		len = VARSIZE_ANY_EXHDR(v);

			buf[0] = len >> 24;
			buf[1] = len >> 16;
			buf[2] = len >> 8;
			buf[3] = len;
			crypto_generichash_update(&st, buf, 4);
			crypto_generichash_update(&st, (const unsigned char *) VARDATA_ANY(v), len);
			if ((Pointer) v != DatumGetPointer(values[i]))
				pfree(v);
		}
	}
	crypto_generichash_final(&st, out, AUDIT_MAC_BYTES);
}

/* A record of audit_seals: what its chain hash covers */
typedef struct SealRecord
{
	int64		seq;
	const char *kind;			/* "seal" or "purge" */
	int64		after_id;
	int64		through_id;
	int64		row_count;
	int32		key_version;
	TimestampTz sealed_at;
	const unsigned char *entries;	/* row_count (id, MAC) entries */
	Size		entries_len;
} SealRecord;

/*
 * The chain hash of a seal record.  Rule 2 (pgmarket 0.5.0 on) covers every
 * column of the record, sealed_at included; rule 1 (the seals made before
 * 0.5.0) covers all but sealed_at.  The labels differ, so a hash made under
 * one rule never verifies under the other.
 */
static void
chain_hash(int rule, const unsigned char *key, const unsigned char *prev,
		   const SealRecord *rec, unsigned char *out)
{
	crypto_generichash_state st;
	unsigned char hdr[8 * 5 + 4];
	Size		hdrlen = 8 * 4 + 4;

	put_be64(hdr, (uint64) rec->seq);
	put_be64(hdr + 8, (uint64) rec->after_id);
	put_be64(hdr + 16, (uint64) rec->through_id);
	put_be64(hdr + 24, (uint64) rec->row_count);
	hdr[32] = ((uint32) rec->key_version) >> 24;
	hdr[33] = ((uint32) rec->key_version) >> 16;
	hdr[34] = ((uint32) rec->key_version) >> 8;
	hdr[35] = ((uint32) rec->key_version);
	if (rule >= 2)
	{
		put_be64(hdr + 36, (uint64) rec->sealed_at);
		hdrlen += 8;
	}
	crypto_generichash_init(&st, key, PGM_SUBKEY_BYTES, AUDIT_CHAIN_BYTES);
	if (rule >= 2)
		crypto_generichash_update(&st, (const unsigned char *) AUDIT_CHAIN_LABEL,
								  sizeof(AUDIT_CHAIN_LABEL));
	else
		crypto_generichash_update(&st, (const unsigned char *) AUDIT_CHAIN_LABEL_V1,
								  sizeof(AUDIT_CHAIN_LABEL_V1));
	crypto_generichash_update(&st, prev, AUDIT_CHAIN_BYTES);
	crypto_generichash_update(&st, (const unsigned char *) rec->kind,
							  strlen(rec->kind) + 1);
	crypto_generichash_update(&st, hdr, hdrlen);
	crypto_generichash_update(&st, rec->entries, rec->entries_len);
	crypto_generichash_final(&st, out, AUDIT_CHAIN_BYTES);
}

/* The audit subkey of a master key version; PM010 when it is not loaded. */
static unsigned char *
audit_subkey(int32 version)
{
	unsigned char *key = pgm_secret_alloc(PGM_SUBKEY_BYTES);

	if (!pgm_keyring_subkey(version, PGM_KDF_CONTEXT_AUDIT, AUDIT_SUBKEY_ID, key))
		ereport(ERROR,
				(errcode(ERRCODE_PGM_VAULT_UNAVAILABLE),
				 errmsg("master key version %d, which sealed part of the audit trail, is not loaded",
						version),
				 errhint("Keep every master key version that sealed audit rows in the master key file.")));
	return key;
}

/* The last seal record: seq, through_id of the last 'seal', chain hash. */
typedef struct SealTip
{
	int64		seq;			/* 0: no record yet */
	int64		through_id;		/* of the last kind = 'seal' record */
	int64		purged_through; /* of the last kind = 'purge' record */
	unsigned char chain[AUDIT_CHAIN_BYTES];
} SealTip;

static SPIPlanPtr plan_tip = NULL;

static void
read_tip(SealTip *tip)
{
	if (plan_tip == NULL)
		plan_tip = pgm_prepare(
			"SELECT s.seq, s.chain_hash,"
			"       COALESCE((SELECT max(through_id) FROM pgmarket.audit_seals"
			"                  WHERE kind OPERATOR(pg_catalog.=) 'seal'), 0),"
			"       COALESCE((SELECT max(through_id) FROM pgmarket.audit_seals"
			"                  WHERE kind OPERATOR(pg_catalog.=) 'purge'), 0)"
			"  FROM pgmarket.audit_seals s ORDER BY s.seq DESC LIMIT 1",
			0, NULL);
	if (SPI_execute_plan(plan_tip, NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pgmarket.audit_seals");
	memset(tip, 0, sizeof(*tip));
	if (SPI_processed == 1)
	{
		HeapTuple	t = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		bytea	   *h;

		tip->seq = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
		h = DatumGetByteaPP(SPI_getbinval(t, d, 2, &isnull));
		if (VARSIZE_ANY_EXHDR(h) == AUDIT_CHAIN_BYTES)
			memcpy(tip->chain, VARDATA_ANY(h), AUDIT_CHAIN_BYTES);
		tip->through_id = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
		tip->purged_through = DatumGetInt64(SPI_getbinval(t, d, 4, &isnull));
	}
}

/* Write a seal record's anchor and progress to the server log. */
static void
log_seal(const SealRecord *rec, int64 head_id, const unsigned char *chain)
{
	unsigned char anchor[AUDIT_ANCHOR_BYTES];
	char		hex[AUDIT_ANCHOR_BYTES * 2 + 1];

	put_be64(anchor, (uint64) head_id);
	memcpy(anchor + 8, chain, AUDIT_CHAIN_BYTES);
	hex_encode((const char *) anchor, AUDIT_ANCHOR_BYTES, hex);
	hex[AUDIT_ANCHOR_BYTES * 2] = '\0';
	ereport(LOG,
			(errmsg("pgmarket audit %s record %lld: audit_log ids %lld to %lld (%lld rows), anchor \\x%s",
					rec->kind, (long long) rec->seq, (long long) rec->after_id + 1,
					(long long) rec->through_id, (long long) rec->row_count, hex),
			 errhidestmt(true)));
}

static SPIPlanPtr plan_insert_seal = NULL;

/* Insert a seal record with its chain hash into audit_seals. */
static void
insert_seal(const SealRecord *rec, bytea *entries, bytea *hash)
{
	Oid			types[9] = {INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID,
	INT4OID, BYTEAOID, BYTEAOID, TIMESTAMPTZOID};
	Datum		args[9];

	if (plan_insert_seal == NULL)
		plan_insert_seal = pgm_prepare(
			"INSERT INTO pgmarket.audit_seals (seq, kind, after_id, through_id,"
			"   row_count, key_version, entries, chain_hash, sealed_at)"
			" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", 9, types);
	args[0] = Int64GetDatum(rec->seq);
	args[1] = CStringGetTextDatum(rec->kind);
	args[2] = Int64GetDatum(rec->after_id);
	args[3] = Int64GetDatum(rec->through_id);
	args[4] = Int64GetDatum(rec->row_count);
	args[5] = Int32GetDatum(rec->key_version);
	args[6] = PointerGetDatum(entries);
	args[7] = PointerGetDatum(hash);
	args[8] = TimestampTzGetDatum(rec->sealed_at);
	/* our own insert is no restore: audit_restored need not look */
	pgm_audit_appending_seal = true;
	PG_TRY();
	{
		if (SPI_execute_plan(plan_insert_seal, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not insert into pgmarket.audit_seals");
	}
	PG_FINALLY();
	{
		pgm_audit_appending_seal = false;
	}
	PG_END_TRY();
}

/*
 * Append a seal record (rule 2) and advance the tip.  The record is also
 * written to the server log, with its anchor, so that a copy of the chain's
 * progress exists outside the database.
 */
static void
append_seal(SealTip *tip, const char *kind, int64 after_id, int64 through_id,
			int64 row_count, int32 version, const unsigned char *key,
			bytea *entries)
{
	SealRecord	rec;
	bytea	   *hash = palloc(VARHDRSZ + AUDIT_CHAIN_BYTES);
	int64		head_id = strcmp(kind, "seal") == 0 ? through_id : tip->through_id;

	rec.seq = tip->seq + 1;
	rec.kind = kind;
	rec.after_id = after_id;
	rec.through_id = through_id;
	rec.row_count = row_count;
	rec.key_version = version;
	rec.sealed_at = GetCurrentTransactionStartTimestamp();
	rec.entries = (const unsigned char *) VARDATA(entries);
	rec.entries_len = VARSIZE(entries) - VARHDRSZ;
	chain_hash(2, key, tip->chain, &rec, (unsigned char *) VARDATA(hash));
	SET_VARSIZE(hash, VARHDRSZ + AUDIT_CHAIN_BYTES);
	insert_seal(&rec, entries, hash);

	tip->seq++;
	memcpy(tip->chain, VARDATA(hash), AUDIT_CHAIN_BYTES);
	if (strcmp(kind, "seal") == 0)
		tip->through_id = through_id;
	else
		tip->purged_through = through_id;
	log_seal(&rec, head_id, tip->chain);
}

/* An index scan of audit_log over ids (lo, hi], in id order. */
static SysScanDesc
scan_range(Relation rel, Oid idx, Snapshot snap, int64 lo, int64 hi,
		   ScanKeyData *keys)
{
	ScanKeyInit(&keys[0], AL_ID + 1, BTGreaterStrategyNumber, F_INT8GT,
				Int64GetDatum(lo));
	ScanKeyInit(&keys[1], AL_ID + 1, BTLessEqualStrategyNumber, F_INT8LE,
				Int64GetDatum(hi));
	return systable_beginscan(rel, idx, true, snap, 2, keys);
}

static int64
tuple_id(HeapTuple tup, TupleDesc desc)
{
	bool		isnull;

	return DatumGetInt64(heap_getattr(tup, AL_ID + 1, desc, &isnull));
}

/*
 * What seal_audit and purge_audit start with: SPI, the sealers' lock, a
 * snapshot that sees what a sealer queued ahead committed, the key of the
 * newest master key version (PM010 without one) and the chain's tip.
 */
static unsigned char *
chain_begin(SealTip *tip, int32 *version)
{
	unsigned char *key;

	pgm_spi_connect();
	/* sealers (and purges) queue here; writers never take this lock */
	LockRelationOid(pgm_audit_rels().seals, ExclusiveLock);
	/* see what a sealer we queued behind committed, whatever the isolation */
	PushActiveSnapshot(GetLatestSnapshot());
	*version = pgm_keyring_newest_version();
	key = audit_subkey(*version);
	read_tip(tip);
	return key;
}

static void
chain_end(void)
{
	PopActiveSnapshot();
	pgm_spi_finish();
}

/* ----------------------------------------------------------------
 * seal_audit
 * ----------------------------------------------------------------
 */

/* What one seal_audit call works with (see the rules at the top) */
typedef struct SealRun
{
	SealTip		tip;
	int32		version;
	unsigned char *key;
	int64		seqlast;		/* L: no id above it had been drawn */
	Snapshot	snap;			/* S */
	bool		running;		/* R: a transaction of S still runs */
	Relation	rel;			/* audit_log */
	Oid			idx;
	TupleDesc	desc;
} SealRun;

/* The rows of ids (last, hi] that S sees, with their MACs */
typedef struct SealChunk
{
	int64		last;
	int64		hi;
	bytea	   *entries;		/* nvis entries: id, MAC */
	int64	   *visids;			/* their ids, ascending */
	int64		nvis;
} SealChunk;

/* Is any transaction that was running at snap still running? */
static bool
snapshot_still_running(Snapshot snap)
{
	int			i;

	for (i = 0; i < snap->xcnt; i++)
		if (TransactionIdIsInProgress(snap->xip[i]))
			return true;
	return false;
}

/*
 * The rows of the chunk visible in S, with their MACs.  A row holds at most
 * one visible version (audit rows are never updated but by tampering).
 */
static void
chunk_visible(SealRun *run, SealChunk *c)
{
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;

	c->entries = palloc(VARHDRSZ + (Size) (c->hi - c->last) * AUDIT_ENTRY_BYTES);
	c->visids = palloc(sizeof(int64) * (c->hi - c->last));
	c->nvis = 0;
	scan = scan_range(run->rel, run->idx, run->snap, c->last, c->hi, keys);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		unsigned char *e = (unsigned char *) VARDATA(c->entries) + c->nvis * AUDIT_ENTRY_BYTES;
		int64		id = tuple_id(tup, run->desc);

		if (c->nvis > 0 && c->visids[c->nvis - 1] == id)
			continue;
		c->visids[c->nvis] = id;
		put_be64(e, (uint64) id);
		row_mac(run->key, run->desc, tup, e + 8);
		c->nvis++;
	}
	systable_endscan(scan);
}

/*
 * The highest id of the chunk that may be sealed now.  Every version of
 * every row of the range, in id order: the first id whose row is neither
 * visible in S nor aborted (in flight, or committed after S) caps the seal;
 * so does, while a transaction of S is still running, the first id without
 * any row.
 */
static int64
chunk_cap(SealRun *run, const SealChunk *c)
{
	int64		cap = c->hi;
	int64		expected = c->last + 1;
	int64		n = 0;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;

	scan = scan_range(run->rel, run->idx, SnapshotAny, c->last, c->hi, keys);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		int64		id = tuple_id(tup, run->desc);
		TransactionId xmin;

		while (n < c->nvis && c->visids[n] < id)
			n++;
		if (id < expected)
			continue;			/* another version of an id already settled */
		if (id > expected && run->running)
		{
			cap = expected - 1; /* an id without a row */
			break;
		}
		if (n < c->nvis && c->visids[n] == id)
		{
			expected = id + 1;
			continue;
		}
		xmin = HeapTupleHeaderGetXmin(tup->t_data);
		if (!TransactionIdIsCurrentTransactionId(xmin) &&
			!TransactionIdIsInProgress(xmin) &&
			!TransactionIdDidCommit(xmin))
		{
			expected = id + 1;	/* aborted: never part of the trail */
			continue;
		}
		cap = id - 1;
		break;
	}
	systable_endscan(scan);
	if (cap == c->hi && run->running && expected <= c->hi)
		cap = expected - 1;		/* ids without a row at the end */
	return cap;
}

/*
 * Seal what can be sealed of ids (last, hi]: returns the rows sealed, and
 * in *cap the highest id the seal covers (below hi: the rest must wait).
 */
static int64
seal_chunk(SealRun *run, int64 last, int64 hi, int64 *cap)
{
	SealChunk	c;
	int64		n = 0;

	c.last = last;
	c.hi = hi;
	chunk_visible(run, &c);
	*cap = chunk_cap(run, &c);

	/* seal the visible rows up to cap */
	while (n < c.nvis && c.visids[n] <= *cap)
		n++;

	/*
	 * Where the run of seals ends, end it on a row: ids without a row after
	 * the last sealed row are left to the next seal, which covers them as a
	 * gap before its own rows.  So no seal reaches beyond the last id in
	 * audit_log, and an event appended after a restore of the trail (whose
	 * id is above every restored row) is never inside a restored seal's
	 * range.
	 */
	if (*cap < hi || hi == run->seqlast)
		*cap = n > 0 ? c.visids[n - 1] : last;
	if (*cap <= last)
		return 0;
	SET_VARSIZE(c.entries, VARHDRSZ + n * AUDIT_ENTRY_BYTES);
	append_seal(&run->tip, "seal", last, *cap, n, run->version, run->key,
				c.entries);
	return n;
}

/*
 * seal_audit() RETURNS bigint: seals every audit row that can be sealed
 * now (see the rules at the top of this file), in seal records of at most
 * AUDIT_CHUNK_IDS ids each, and returns how many rows it sealed.
 */
Datum
pgm_seal_audit(PG_FUNCTION_ARGS)
{
	SealRun		run;
	int64		last;
	int64		sealed = 0;
	MemoryContext chunkcxt;

	run.key = chain_begin(&run.tip, &run.version);
	last = run.tip.through_id;

	/* L: no id above it had been drawn when we looked */
	run.seqlast = pgm_audit_seq_last();
	if (run.seqlast <= last)
	{
		chain_end();
		PG_RETURN_INT64(0);
	}

	/* S, then R: is any transaction running at S still running? */
	run.snap = RegisterSnapshot(GetLatestSnapshot());
	run.running = snapshot_still_running(run.snap);

	run.rel = table_open(pgm_audit_rels().log, AccessShareLock);
	run.idx = pgm_audit_pk_index(run.rel);
	run.desc = RelationGetDescr(run.rel);
	chunkcxt = AllocSetContextCreate(CurrentMemoryContext, "seal_audit chunk",
									 ALLOCSET_DEFAULT_SIZES);
	while (last < run.seqlast)
	{
		int64		hi = Min(run.seqlast, last + AUDIT_CHUNK_IDS);
		int64		cap;
		MemoryContext old = MemoryContextSwitchTo(chunkcxt);

		sealed += seal_chunk(&run, last, hi, &cap);
		MemoryContextSwitchTo(old);
		MemoryContextReset(chunkcxt);
		if (cap < hi)
			break;
		last = hi;
	}

	MemoryContextDelete(chunkcxt);
	table_close(run.rel, AccessShareLock);
	UnregisterSnapshot(run.snap);
	chain_end();
	PG_RETURN_INT64(sealed);
}


/* ----------------------------------------------------------------
 * verify_audit
 * ----------------------------------------------------------------
 */
typedef struct VerifyResult
{
	int64		first_bad_id;	/* 0: none */
	const char *problem;
	int64		checked;
	int64		purged_through;
	int64		sealed_through;
	bool		anchor_found;	/* no anchor given, or the chain contains it */
} VerifyResult;

static SPIPlanPtr plan_seals = NULL;

/* Record the first problem only. */
static bool
verify_bad(VerifyResult *r, int64 id, const char *problem)
{
	if (r->first_bad_id == 0)
	{
		r->first_bad_id = id;
		r->problem = problem;
	}
	return false;
}

/*
 * Check the rows of one seal against its entries: same ids in the same
 * order, same MACs, no row missing or added.
 */
static bool
verify_seal_rows(Relation rel, Oid idx, const unsigned char *key,
				 int64 after_id, int64 through_id,
				 const unsigned char *entries, int64 nentries, VerifyResult *r)
{
	TupleDesc	desc = RelationGetDescr(rel);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	int64		n = 0;
	bool		ok = true;

	scan = scan_range(rel, idx, GetActiveSnapshot(), after_id, through_id, keys);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		int64		id = tuple_id(tup, desc);
		int64		want;
		unsigned char mac[AUDIT_MAC_BYTES];

		if (n >= nentries)
		{
			ok = verify_bad(r, id, "a row that the seal does not list");
			break;
		}
		want = (int64) get_be64(entries + n * AUDIT_ENTRY_BYTES);
		if (id > want)
		{
			ok = verify_bad(r, want, "a sealed row is missing");
			break;
		}
		if (id < want)
		{
			ok = verify_bad(r, id, "a row that the seal does not list");
			break;
		}
		row_mac(key, desc, tup, mac);
		if (sodium_memcmp(mac, entries + n * AUDIT_ENTRY_BYTES + 8,
						  AUDIT_MAC_BYTES) != 0)
		{
			ok = verify_bad(r, id, "a sealed row was changed");
			break;
		}
		n++;
		r->checked++;
	}
	systable_endscan(scan);
	if (ok && n < nentries)
		ok = verify_bad(r, (int64) get_be64(entries + n * AUDIT_ENTRY_BYTES),
						"a sealed row is missing");
	return ok;
}

/* Where verify_chain's walk stands */
typedef struct ChainWalk
{
	unsigned char prev[AUDIT_CHAIN_BYTES];	/* the last chain hash */
	int64		expected_seq;
	int64		seal_through;	/* of the last 'seal' record */
	int32		keyver;			/* the version key is of; 0: none yet */
	unsigned char *key;
	bool		rule2_seen;		/* no rule 1 record may follow */
	int64		limit;
	const unsigned char *anchor;	/* NULL: no anchor given */
	int64		anchor_id;
	Relation	rel;			/* audit_log */
	Oid			idx;
} ChainWalk;

/* A seal record from a row of plan_seals' result */
static void
read_seal_record(HeapTuple t, TupleDesc d, SealRecord *rec, bytea **stored)
{
	bool		isnull;
	bytea	   *entries;

	rec->seq = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
	rec->kind = TextDatumGetCString(SPI_getbinval(t, d, 2, &isnull));
	rec->after_id = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
	rec->through_id = DatumGetInt64(SPI_getbinval(t, d, 4, &isnull));
	rec->row_count = DatumGetInt64(SPI_getbinval(t, d, 5, &isnull));
	rec->key_version = DatumGetInt32(SPI_getbinval(t, d, 6, &isnull));
	entries = DatumGetByteaPP(SPI_getbinval(t, d, 7, &isnull));
	*stored = DatumGetByteaPP(SPI_getbinval(t, d, 8, &isnull));
	rec->sealed_at = DatumGetTimestampTz(SPI_getbinval(t, d, 9, &isnull));
	rec->entries = (const unsigned char *) VARDATA_ANY(entries);
	rec->entries_len = VARSIZE_ANY_EXHDR(entries);
}

/*
 * Does the stored chain hash of rec follow from the walk's previous one?
 * Under rule 2, or under rule 1 while no rule 2 record has been seen.  The
 * hash that matched is left in h.
 */
static bool
record_hash_ok(ChainWalk *w, const SealRecord *rec, bytea *stored,
			   unsigned char *h)
{
	if (rec->key_version != w->keyver)
	{
		w->key = audit_subkey(rec->key_version);
		w->keyver = rec->key_version;
	}
	if (VARSIZE_ANY_EXHDR(stored) != AUDIT_CHAIN_BYTES)
		return false;
	chain_hash(2, w->key, w->prev, rec, h);
	if (sodium_memcmp(h, VARDATA_ANY(stored), AUDIT_CHAIN_BYTES) == 0)
	{
		w->rule2_seen = true;
		return true;
	}
	if (w->rule2_seen)
		return false;
	chain_hash(1, w->key, w->prev, rec, h);
	return sodium_memcmp(h, VARDATA_ANY(stored), AUDIT_CHAIN_BYTES) == 0;
}

/*
 * One step of the walk: check rec against the chain and, for a seal within
 * the limit whose rows are not purged, its rows.  False: stop the walk (a
 * problem, recorded in r, or past the limit).
 */
static bool
verify_record(ChainWalk *w, const SealRecord *rec, bytea *stored,
			  VerifyResult *r)
{
	unsigned char h[AUDIT_CHAIN_BYTES];
	bool		is_seal = strcmp(rec->kind, "seal") == 0;
	int64		first_id = rec->entries_len >= 8 ?
		(int64) get_be64(rec->entries) : rec->after_id + 1;

	if (!record_hash_ok(w, rec, stored, h) || rec->seq != w->expected_seq ||
		(is_seal && rec->after_id != w->seal_through) ||
		(is_seal && rec->entries_len != (Size) rec->row_count * AUDIT_ENTRY_BYTES))
	{
		verify_bad(r, is_seal ? first_id : rec->after_id + 1,
				   "a seal record was changed, removed or reordered");
		return false;
	}
	memcpy(w->prev, h, AUDIT_CHAIN_BYTES);
	w->expected_seq++;
	if (is_seal)
		w->seal_through = rec->through_id;
	if (w->anchor != NULL && !r->anchor_found && w->seal_through == w->anchor_id &&
		sodium_memcmp(h, w->anchor + 8, AUDIT_CHAIN_BYTES) == 0)
		r->anchor_found = true;
	if (!is_seal)
		return true;
	if (rec->through_id > w->limit)
		return false;
	r->sealed_through = rec->through_id;
	if (rec->through_id <= r->purged_through)
		return true;
	return verify_seal_rows(w->rel, w->idx, w->key, rec->after_id,
							rec->through_id, rec->entries, rec->row_count, r);
}

/* The walk's start: no record yet, and whether an anchor is given. */
static void
walk_start(ChainWalk *w, int64 limit, const unsigned char *anchor,
		   VerifyResult *r)
{
	memset(w, 0, sizeof(*w));
	memset(r, 0, sizeof(*r));
	w->expected_seq = 1;
	w->limit = limit;
	w->anchor = anchor;
	if (anchor != NULL)
	{
		w->anchor_id = (int64) get_be64(anchor);
		/* the start of every chain: no seal yet when the anchor was taken */
		if (w->anchor_id == 0 && sodium_is_zero(anchor + 8, AUDIT_CHAIN_BYTES))
			r->anchor_found = true;
	}
	else
		r->anchor_found = true;
}

/*
 * Walk the chain from its start; check the rows of every seal whose rows
 * are not purged and whose through_id is at most limit.  Stops at the first
 * problem.  With an anchor (AUDIT_ANCHOR_BYTES: the sealed-through id and
 * the chain hash that audit_head() returned), also notes whether the chain
 * still passes through that point (r->anchor_found).  Records made under
 * rule 1 (before 0.5.0) are accepted only before the first rule 2 record.
 * The caller is connected to SPI.
 */
static void
verify_chain(int64 limit, const unsigned char *anchor, VerifyResult *r)
{
	ChainWalk	w;
	SealTip		tip;
	Portal		portal;
	bool		done = false;

	walk_start(&w, limit, anchor, r);
	w.rel = table_open(pgm_audit_rels().log, AccessShareLock);
	w.idx = pgm_audit_pk_index(w.rel);

	/* purged ranges: their rows are gone on purpose */
	read_tip(&tip);
	r->purged_through = tip.purged_through;

	if (plan_seals == NULL)
		plan_seals = pgm_prepare(
			"SELECT seq, kind, after_id, through_id, row_count, key_version,"
			"       entries, chain_hash, sealed_at"
			"  FROM pgmarket.audit_seals ORDER BY seq", 0, NULL);
	portal = SPI_cursor_open(NULL, plan_seals, NULL, NULL, true);
	while (!done)
	{
		uint64		j;

		SPI_cursor_fetch(portal, true, 16);
		if (SPI_processed == 0)
			break;
		for (j = 0; j < SPI_processed && !done; j++)
		{
			SealRecord	rec;
			bytea	   *stored;

			read_seal_record(SPI_tuptable->vals[j], SPI_tuptable->tupdesc,
							 &rec, &stored);
			done = !verify_record(&w, &rec, stored, r);
		}
	}
	SPI_cursor_close(portal);
	table_close(w.rel, AccessShareLock);

	/*
	 * The chain verifies in itself but no longer passes through the anchor:
	 * it was rewritten, or seals were removed.  The rows it vouched for from
	 * the first one the chain no longer covers, else from its last one.
	 */
	if (!r->anchor_found && r->first_bad_id == 0)
		verify_bad(r, Max(1, Min(w.anchor_id, w.seal_through + 1)),
				   "the chain does not contain the anchor: seals were rewritten or removed");
}


static void
raise_chain_broken(VerifyResult *r)
{
	ereport(ERROR,
			(errcode(ERRCODE_PGM_AUDIT_CHAIN_BROKEN),
			 errmsg("audit chain broken at audit_log id %lld: %s",
					(long long) r->first_bad_id, r->problem),
			 errdetail("%lld sealed rows verified before it.",
					   (long long) r->checked)));
}

/*
 * verify_audit(strict boolean DEFAULT false, anchor bytea DEFAULT NULL)
 *	 RETURNS TABLE(first_bad_id bigint, checked bigint): one row; first_bad_id
 * is NULL when every sealed row verifies and the chain contains the anchor
 * (when one is given).  strict raises PM013 instead.
 */
Datum
pgm_verify_audit(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		strict;
	unsigned char anchor[AUDIT_ANCHOR_BYTES];
	bool		have_anchor = false;
	VerifyResult r;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	pgm_require_arg(fcinfo, 0, "strict");
	strict = PG_GETARG_BOOL(0);
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
	{
		bytea	   *a = PG_GETARG_BYTEA_PP(1);

		if (VARSIZE_ANY_EXHDR(a) != AUDIT_ANCHOR_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("anchor of %d bytes is not an audit anchor",
							(int) VARSIZE_ANY_EXHDR(a)),
					 errdetail("An anchor is 40 bytes: the last sealed id (8 bytes, big-endian) and the chain hash, as audit_head() returns them.")));
		memcpy(anchor, VARDATA_ANY(a), AUDIT_ANCHOR_BYTES);
		have_anchor = true;
	}

	pgm_spi_connect();
	verify_chain(PG_INT64_MAX, have_anchor ? anchor : NULL, &r);
	pgm_spi_finish();

	if (r.first_bad_id != 0 && strict)
		raise_chain_broken(&r);

	InitMaterializedSRF(fcinfo, 0);
	if (r.first_bad_id == 0)
		nulls[0] = true;
	values[0] = Int64GetDatum(r.first_bad_id);
	values[1] = Int64GetDatum(r.checked);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * purge_audit
 * ----------------------------------------------------------------
 */

/*
 * How far a purge may reach: the through_id of the last of the seals after
 * purged_through, oldest first, while every row of the seal is older than
 * before; 0 when not even the first qualifies.
 */
static int64
purge_reach(int64 purged_through, TimestampTz before)
{
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		args[2];
	int64		through = 0;
	uint64		j;

	args[0] = Int64GetDatum(purged_through);
	args[1] = TimestampTzGetDatum(before);
	if (SPI_execute_with_args(
							  "SELECT s.through_id,"
							  "       (SELECT max(l.at) FROM pgmarket.audit_log l"
							  "         WHERE l.id OPERATOR(pg_catalog.>) s.after_id"
							  "           AND l.id OPERATOR(pg_catalog.<=) s.through_id)"
							  "  FROM pgmarket.audit_seals s"
							  " WHERE s.kind OPERATOR(pg_catalog.=) 'seal'"
							  "   AND s.through_id OPERATOR(pg_catalog.>) $1"
							  " ORDER BY s.seq",
							  2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pgmarket.audit_seals");
	for (j = 0; j < SPI_processed; j++)
	{
		bool		n1,
					n2;
		int64		t = DatumGetInt64(pgm_col(j, 1, &n1));
		Datum		maxat = pgm_col(j, 2, &n2);

		if (!n2 && DatumGetTimestampTz(maxat) >= before)
			break;
		through = t;
	}
	return through;
}

/* Delete the audit rows of ids (after_id, through_id]: how many there were. */
static int64
delete_rows(int64 after_id, int64 through_id)
{
	Relation	rel = table_open(pgm_audit_rels().log, RowExclusiveLock);
	Oid			idx = pgm_audit_pk_index(rel);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	int64		deleted = 0;

	scan = scan_range(rel, idx, GetActiveSnapshot(), after_id, through_id, keys);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		simple_heap_delete(rel, &tup->t_self);
		deleted++;
	}
	systable_endscan(scan);
	table_close(rel, NoLock);
	CommandCounterIncrement();
	return deleted;
}

/*
 * purge_audit(before timestamptz) RETURNS bigint: deletes the rows of the
 * oldest seals whose rows are all older than before, whole seals only, after
 * verifying them (PM013 if they do not verify); appends a 'purge' record to
 * the chain and a PURGE event to audit_log.  Returns the rows deleted.
 */
Datum
pgm_purge_audit(PG_FUNCTION_ARGS)
{
	TimestampTz before;
	SealTip		tip;
	VerifyResult r;
	int64		through;
	int64		deleted;
	int32		version;
	unsigned char *key;
	bytea	   *empty;

	pgm_require_arg(fcinfo, 0, "before");
	before = PG_GETARG_TIMESTAMPTZ(0);

	key = chain_begin(&tip, &version);
	through = purge_reach(tip.purged_through, before);
	if (through == 0)
	{
		chain_end();
		PG_RETURN_INT64(0);
	}

	/* never destroy evidence of tampering */
	verify_chain(through, NULL, &r);
	if (r.first_bad_id != 0)
		raise_chain_broken(&r);

	deleted = delete_rows(tip.purged_through, through);
	empty = palloc(VARHDRSZ);
	SET_VARSIZE(empty, VARHDRSZ);
	append_seal(&tip, "purge", tip.purged_through, through, deleted,
				version, key, empty);

	/* and the act itself, as an event in the trail */
	pgm_audit_log_event("PURGE", deleted, through);

	chain_end();
	PG_RETURN_INT64(deleted);
}
