/*
 * store_io.h: the "projects" and "templates" sections of pgmarket import and
 * export (the agent platform's ProjectContextStore and TemplateLibrary).
 */
#ifndef PGM_STORE_IO_H
#define PGM_STORE_IO_H

#include <stdio.h>

#include "json.h"
#include "pgmarket.h"

typedef struct store_counts
{
	long		created;
	long		present;
} store_counts;

/* Called for a rejected record, with its section, key and reason. */
typedef void (*store_reject_fn) (void *arg, const char *section,
								 const char *record, const char *reason);

/*
 * Imports the two sections of doc (either may be absent): every record not
 * yet in the database is saved, one already there is left as it is.
 * Returns 0, or -1 when the server could not be reached (the caller
 * reports it).
 */
int			store_import(pgm_conn *conn, const json *doc, store_reject_fn reject,
						 void *arg, store_counts *projects,
						 store_counts *templates);

/*
 * Writes ",\n  \"templates\": {...},\n  \"projects\": {...}" for the given
 * users' projects and every template; 0, or -1 on a failed call.
 */
int			store_export(pgm_conn *conn, FILE *f, pgm_result *users);

#endif
