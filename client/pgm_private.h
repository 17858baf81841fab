/*
 * pgm_private.h: what the files of libpgmarket share beyond pgmarket.h.
 * Under the private prefix pgmi_, which libpgmarket.map does not export.
 */
#ifndef PGM_PRIVATE_H
#define PGM_PRIVATE_H

#include "pgmarket.h"

/*
 * sealed_sql with the text parameters vals (at most 8), those whose bit is
 * set in secrets sealed to the vault as passwords (binary bytea); or
 * plain_sql with all of them as text when pgm_set_plain_secrets is on.
 * out as pgm_exec's (may be NULL).
 */
pgm_status	pgmi_exec_passwords(pgm_conn *conn, const char *plain_sql,
								const char *sealed_sql, int n,
								const char *const *vals, unsigned secrets,
								pgm_result **out);

/*
 * sql (its text parameters vals) answering one secret, into *secret (may be
 * NULL; free with pgm_free_secret), the copy in the result wiped.
 */
pgm_status	pgmi_exec_secret(pgm_conn *conn, const char *sql, int n,
							 const char *const *vals, char **secret);

/*
 * on: pgm_deduct_batch on conn takes deduct_balance to commit each charge
 * by itself, as behind PL/Proxy (a savepoint a charge, nothing sent
 * again); off: it looks deduct_balance's language up again.  For tests.
 */
void		pgmi_batch_savepoints(pgm_conn *conn, int on);

#endif
