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
#include "utils/uuid.h"

/* SQLSTATEs of the contract (SPEC, "Error codes") */
#define ERRCODE_PGM_INSUFFICIENT_FUNDS		MAKE_SQLSTATE('P','M','0','0','1')
#define ERRCODE_PGM_UNKNOWN_ACCOUNT			MAKE_SQLSTATE('P','M','0','0','2')
#define ERRCODE_PGM_IDEMPOTENCY_CONFLICT	MAKE_SQLSTATE('P','M','0','0','3')
#define ERRCODE_PGM_RESERVATION_STATE		MAKE_SQLSTATE('P','M','0','0','4')
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

/* money.c */
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

/* pgmarket.c: argument checks */
extern void pgm_require_arg(FunctionCallInfo fcinfo, int argno, const char *argname);
extern Datum pgm_user_arg(FunctionCallInfo fcinfo, int argno);
extern text *pgm_optional_text(FunctionCallInfo fcinfo, int argno,
							   const char *argname, int maxlen);
extern void pgm_check_text(const char *argname, const char *value, int maxlen);
extern char *pgm_shown_value(const char *value, int maxchars);

/* passwords.c: password hashes, for accounts.c and sealed.c */
extern char *pgm_password_arg(FunctionCallInfo fcinfo, int argno, size_t *len);
extern char *pgm_argon2id_hash(const char *password, size_t len);
extern void pgm_check_hash_to_store(const char *hash, const char *what);
extern bool pgm_password_login(const char *password, size_t len,
							   const char *stored, bool active, char **rehash);
extern bool pgm_hash_costs_at_least_standard(const char *hash);

/* emails.c: the one spelling of an address, for accounts.c */
extern char *pgm_normalize_email(text *raw);
extern void pgm_login_forms(const char *login, char **email, char **username);

/* pgmarket.c: text and SPI helpers */
extern bool pgm_text_ok(const char *value, int maxlen);
extern void pgm_spi_connect(void);
extern SPIPlanPtr pgm_prepare(const char *sql, int nargs, Oid *argtypes);
extern int	pgm_exec(SPIPlanPtr plan, Datum *values, const char *nulls,
					 bool read_only);
extern Datum pgm_col(uint64 row, int colno, bool *isnull);
struct ReturnSetInfo;
extern void pgm_put_rows(struct ReturnSetInfo *rsinfo, uint32 money_columns);

/* ledger.c, shared with batch.c */
extern void pgm_raise_unknown_account(Datum user_id);
extern void pgm_queue_for_user(Datum user_id);
extern void pgm_check_user(Datum user_id, bool lock);
extern int64 pgm_sweep_expired_holds(Datum user_id, int64 *available);

/* pgmarket.c: settings */
extern char *pgm_actor;
extern char *pgm_proxy_role;

/* chat.c: the pgmarket.actor rule */
extern void pgm_check_actor(Datum user_id);
extern bool pgm_actor_allows(const pg_uuid_t *user);

/* vault.c: the master key file and the keys derived from it */
#define PGM_SUBKEY_BYTES		32
#define PGM_KDF_CONTEXT_VAULT	"pgmvault"	/* provider key encryption */
#define PGM_KDF_CONTEXT_APIKEY	"pgmapkey"	/* platform API key hashes */
#define PGM_KDF_CONTEXT_AUDIT	"pgmaudit"	/* the audit hash chain */
#define PGM_KDF_CONTEXT_BOX		"pgmboxky"	/* the sealing key pair */
extern void pgm_vault_init(void);
extern int32 pgm_vault_newest_version(void);
extern bool pgm_vault_subkey(int32 version, const char *context,
							 uint64 subkey_id, unsigned char *out);
extern bool pgm_vault_open_sealed(const unsigned char *sealed,
								  size_t sealed_len, unsigned char *out);
extern bool pgm_vault_configured(void);
extern int	pgm_vault_versions(void);
extern void pgm_random_uuid(pg_uuid_t *uuid);
extern void *pgm_secret_alloc(Size len);
extern void pgm_secret_register(void *ptr, Size len);

/* sealed.c: the sealed forms of the password and platform key calls */
extern void pgm_sealed_init(void);

#endif							/* PGMARKET_H */
