/*-------------------------------------------------------------------------
 *
 * audit.h
 *	  What the two halves of the audit trail share: audit.c, which captures
 *	  changes into pgmarket.audit_log, and audit_chain.c, which seals them
 *	  into the keyed hash chain of pgmarket.audit_seals.  Only those two
 *	  files include it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGMARKET_AUDIT_H
#define PGMARKET_AUDIT_H

#include "pgmarket.h"

#include "utils/relcache.h"

/* audit_log's columns, in table order */
enum
{
	AL_ID = 0,
	AL_AT,
	AL_TXID,
	AL_TABLE_NAME,
	AL_OPERATION,
	AL_ROW_KEY,
	AL_OLD_VALUES,
	AL_NEW_VALUES,
	AL_CHANGED_COLUMNS,
	AL_ACTOR,
	AL_DB_ROLE,
	AL_CLIENT_ADDR,
	AL_APPLICATION_NAME,
	AL_NATTS
};

/* The trail's relations, looked up once per backend (audit.c) */
typedef struct AuditRels
{
	Oid			nsp;			/* the pgmarket schema */
	Oid			log;			/* audit_log */
	Oid			seq;			/* audit_log_id_seq */
	Oid			seals;			/* audit_seals */
} AuditRels;

/* audit.c */
extern AuditRels pgm_audit_rels(void);
extern Oid	pgm_audit_pk_index(Relation rel);
extern int64 pgm_audit_seq_last(void);
extern void pgm_audit_log_event(const char *operation, int64 rows,
								int64 through_id);

/* audit_chain.c: set while it inserts a seal record (see audit_restored) */
extern bool pgm_audit_appending_seal;

#endif							/* PGMARKET_AUDIT_H */
