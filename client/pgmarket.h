/*
 * pgmarket.h: libpgmarket, the C client of the pgmarket extension.
 *
 * A thin layer over libpq.  One call per SQL function of the extension;
 * every call returns a pgm_status mapped from the server's SQLSTATE, and the
 * server's message, detail, hint and SQLSTATE stay readable from the
 * connection until the next call.  Money is exact decimal text in and out
 * ("12.345678"), never a double; pgm_str_to_micro and pgm_micro_to_str
 * convert to and from int64 micro-credits.
 *
 * Threads: one pgm_conn per thread.  The library keeps no global state
 * beyond libsodium's initialisation (sodium_init, itself thread-safe).
 *
 * Pooling: calls use unnamed statements (PQexecParams), so they work through
 * pgbouncer in transaction mode; pgm_set_prepared(conn, 1) switches to named
 * prepared statements for a direct connection.  With an actor set
 * (pgm_set_actor), each call is sent together with
 * set_config('pgmarket.actor', ..., true) in one pipeline, in one implicit
 * transaction and one round trip, so the actor never leaks to another
 * client of a pooled server connection.
 */
#ifndef PGMARKET_H
#define PGMARKET_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * PGM_VERSION_MAJOR, _MINOR, _PATCH and PGM_VERSION_STRING: the version of
 * the tree (pgmarket.control's default_version), which the library, the
 * tool and the extension share; client/Makefile writes the header.
 */
#include "pgmarket_version.h"

/* Sizes of the fixed text buffers in result structs, with the final NUL. */
#define PGM_UUID_LEN	37		/* 8-4-4-4-12 */
#define PGM_AMOUNT_LEN	32		/* "-8999999999999.999999" fits */
#define PGM_TIME_LEN	40		/* timestamptz as text */
#define PGM_NAME_LEN	72		/* kinds, providers, tiers, scopes */
#define PGM_SQLSTATE_LEN 6

/* The largest amount or balance, exclusive: 9,000,000,000,000 credits. */
#define PGM_MICRO_LIMIT INT64_C(9000000000000000000)

typedef enum pgm_status
{
	PGM_OK = 0,
	PGM_INSUFFICIENT_FUNDS,		/* PM001 */
	PGM_UNKNOWN_ACCOUNT,		/* PM002 */
	PGM_IDEMPOTENCY_CONFLICT,	/* PM003 */
	PGM_RESERVATION_STATE,		/* PM004 */
	PGM_VAULT_UNAVAILABLE,		/* PM010 */
	PGM_DECRYPTION_FAILED,		/* PM011 */
	PGM_KEY_NOT_FOUND,			/* PM012 */
	PGM_AUDIT_CHAIN_BROKEN,		/* PM013 */
	PGM_INVALID_API_KEY,		/* 28000 */
	PGM_NULL_VALUE,				/* 22004 */
	PGM_INVALID_PARAMETER,		/* 22023 */
	PGM_OUT_OF_RANGE,			/* 22003 */
	PGM_DUPLICATE,				/* 23505 */
	PGM_PERMISSION_DENIED,		/* 42501 */
	PGM_APPEND_ONLY,			/* 55000 */
	PGM_CONNECTION_ERROR,		/* no connection, or class 08 */
	PGM_SERVER_ERROR,			/* any other SQLSTATE */
	PGM_CLIENT_ERROR,			/* bad use of the library, out of memory */
	PGM_RATE_LIMITED,			/* PM005: pgm_retry_after_ms says how long */
	PGM_OUTCOME_UNKNOWN			/* a charge of pgm_deduct_batch sent before the
								 * connection broke, its commit unconfirmed */
} pgm_status;

/* "PGM_OK", "PGM_INSUFFICIENT_FUNDS", ...; never NULL. */
const char *pgm_status_name(pgm_status status);
/* The status a SQLSTATE maps to (NULL or "00000": PGM_OK). */
pgm_status pgm_status_from_sqlstate(const char *sqlstate);

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------ */

typedef struct pgm_conn pgm_conn;

/*
 * Opens a connection (libpq conninfo or URI; "" uses the PG* environment).
 * Returns NULL only when out of memory; otherwise check pgm_conn_status().
 */
pgm_conn   *pgm_connect(const char *conninfo);
/*
 * The same from keyword/value arrays ending at a NULL keyword, as libpq's
 * PQconnectdbParams with expand_dbname: a "dbname" value that is a conninfo
 * string or URI is expanded (psql's -d), and a keyword whose value is NULL
 * or "" is left to the PG* environment.
 */
pgm_conn   *pgm_connect_params(const char *const *keywords, const char *const *values);
/* Wraps a connection the application owns: pgm_finish will not close it. */
pgm_conn   *pgm_wrap(PGconn *pgconn);
/* Closes (if the library opened it) and frees. NULL is a no-op. */
void		pgm_finish(pgm_conn *conn);
/* PGM_OK when connected, else PGM_CONNECTION_ERROR. */
pgm_status	pgm_conn_status(const pgm_conn *conn);
PGconn	   *pgm_pgconn(pgm_conn *conn);

/* The application-level user for pgmarket.actor; NULL clears it. */
pgm_status	pgm_set_actor(pgm_conn *conn, const char *actor);
/* 1: named prepared statements (not through pgbouncer transaction mode). */
void		pgm_set_prepared(pgm_conn *conn, int on);
/*
 * Passwords and platform keys travel sealed to the vault's public key by
 * default (the *_sealed SQL functions), so that a server log that keeps
 * bind parameters (log_statement = all, ...) never holds them; without a
 * vault those calls fail with PGM_VAULT_UNAVAILABLE.  1: send them as text
 * instead, as the plain SQL functions take them (they then reach such a
 * log).  Provider keys are always sealed.
 */
void		pgm_set_plain_secrets(pgm_conn *conn, int on);

/* The outcome of the last call on conn; strings are "" when absent. */
pgm_status	pgm_last_status(const pgm_conn *conn);
const char *pgm_errmsg(const pgm_conn *conn);
const char *pgm_errdetail(const pgm_conn *conn);
const char *pgm_errhint(const pgm_conn *conn);
const char *pgm_sqlstate(const pgm_conn *conn);
/* After a call that returned PGM_RATE_LIMITED: the milliseconds to wait
 * before the key's tier admits a call again, as the server said; else 0. */
int64_t		pgm_retry_after_ms(const pgm_conn *conn);

/* ------------------------------------------------------------------------
 * Money helpers (exact)
 * ------------------------------------------------------------------------ */

/* "12.5" -> 12500000; PGM_INVALID_PARAMETER for anything not a whole
 * number of micro-credits, PGM_OUT_OF_RANGE at or beyond the limit. */
pgm_status	pgm_str_to_micro(const char *text, int64_t *micro);
/* 12500000 -> "12.500000"; buf holds PGM_AMOUNT_LEN bytes. */
char	   *pgm_micro_to_str(int64_t micro, char *buf);

/* ------------------------------------------------------------------------
 * Results
 * ------------------------------------------------------------------------ */

/* ledger_result */
typedef struct pgm_ledger_result
{
	int64_t		entry_id;
	char		user_id[PGM_UUID_LEN];
	char		kind[PGM_NAME_LEN];		/* deposit, charge, refund */
	char		amount[PGM_AMOUNT_LEN];
	char		available_balance[PGM_AMOUNT_LEN];
	int			replayed;
} pgm_ledger_result;

/* balance */
typedef struct pgm_balance
{
	char		user_id[PGM_UUID_LEN];
	char		total_balance[PGM_AMOUNT_LEN];
	char		spent_balance[PGM_AMOUNT_LEN];
	char		reserved_balance[PGM_AMOUNT_LEN];
	char		available_balance[PGM_AMOUNT_LEN];
	char		updated_at[PGM_TIME_LEN];
} pgm_balance;

/* One row of ledger_entries; text fields are "" for NULL. */
typedef struct pgm_ledger_entry
{
	int64_t		entry_id;
	char		kind[PGM_NAME_LEN];
	char		amount[PGM_AMOUNT_LEN];
	char		available_balance[PGM_AMOUNT_LEN];
	const char *model_id;		/* point into the result; NULL for NULL */
	int64_t		tokens_used;
	const char *idempotency_key;
	const char *note;
	int64_t		refund_of;		/* 0 for NULL */
	char		created_at[PGM_TIME_LEN];
} pgm_ledger_entry;

/* One row of list_provider_keys. */
typedef struct pgm_provider_key_info
{
	char		key_id[PGM_UUID_LEN];
	char		provider[PGM_NAME_LEN];
	const char *label;			/* NULL for NULL */
	char		hint[PGM_NAME_LEN];
	int			key_version;
	char		created_at[PGM_TIME_LEN];
	char		last_used_at[PGM_TIME_LEN];
	char		revoked_at[PGM_TIME_LEN];	/* "" while active */
} pgm_provider_key_info;

/*
 * A set of rows (ledger_entries, list_*, verify_ledger, pgm_exec): read it
 * by column name or through the typed accessors; free with
 * pgm_result_free.  Pointers into it live as long as it.
 */
typedef struct pgm_result pgm_result;

int			pgm_result_rows(const pgm_result *res);
/* The value as text; NULL for SQL NULL or an unknown column. */
const char *pgm_result_value(const pgm_result *res, int row, const char *column);
pgm_status	pgm_result_ledger_entry(const pgm_result *res, int row,
									pgm_ledger_entry *out);
pgm_status	pgm_result_provider_key(const pgm_result *res, int row,
									pgm_provider_key_info *out);
void		pgm_result_free(pgm_result *res);

/* Memory the library allocated: plain strings, and secrets (wiped). */
void		pgm_free(void *ptr);
void		pgm_free_secret(char *secret);

/*
 * Any SQL of the application's, with the library's error mapping and actor
 * handling: text parameters, text results.  out may be NULL.
 */
pgm_status	pgm_exec(pgm_conn *conn, const char *sql, int nparams,
					 const char *const *params, pgm_result **out);

/* ------------------------------------------------------------------------
 * Accounts
 * ------------------------------------------------------------------------ */

/* roles: NULL-terminated, or NULL for '{user}'; id: NULL for a new one;
 * password may be NULL.  user_id receives the new user's id.  The password
 * calls below send it sealed (see pgm_set_plain_secrets). */
pgm_status	pgm_create_user(pgm_conn *conn, const char *email,
							const char *username, const char *password,
							const char *const *roles, const char *id,
							char user_id[PGM_UUID_LEN]);
/* An account whose password hash the application made (or kept from the
 * service it replaces): Argon2id, Django pbkdf2_sha256$, Werkzeug
 * pbkdf2:sha256:, passlib $pbkdf2-sha256$ or bcrypt $2a$/$2b$/$2y$, within
 * the bounds (else PGM_INVALID_PARAMETER); replaced by Argon2id at the first
 * successful login.  roles and id as for pgm_create_user.  The hash travels
 * as a text parameter (it is no password; see the README on the server
 * log). */
pgm_status	pgm_create_user_hashed(pgm_conn *conn, const char *email,
								   const char *username,
								   const char *password_hash,
								   const char *const *roles, const char *id,
								   char user_id[PGM_UUID_LEN]);
/* user_id is "" when the login is refused. */
pgm_status	pgm_authenticate(pgm_conn *conn, const char *login,
							 const char *password,
							 char user_id[PGM_UUID_LEN]);
pgm_status	pgm_deactivate_user(pgm_conn *conn, const char *user_id);
/* The right to be forgotten (pgmarket_admin): the account becomes a
 * tombstone, its personal data and keys go, the books stay.  Again for an
 * erased user: PGM_OK (it removes what a write racing the first erasure
 * left, else changes nothing).  PGM_UNKNOWN_ACCOUNT for no such
 * user, PGM_PERMISSION_DENIED for a role below pgmarket_admin. */
pgm_status	pgm_erase_user(pgm_conn *conn, const char *user_id);
/* *hash: free with pgm_free. */
pgm_status	pgm_hash_password(pgm_conn *conn, const char *password, char **hash);
pgm_status	pgm_verify_password(pgm_conn *conn, const char *password,
								const char *hash, int *valid);
/* health() as JSON text; *json: free with pgm_free.  PGM_OK whatever the
 * "ok" member says: read it from the JSON. */
pgm_status	pgm_health(pgm_conn *conn, char **json);

/* ---- The account surface (client/accounts.c) ------------------------- */

/* One row of the view users; fields point into the result. */
typedef struct pgm_user
{
	const char *id;
	const char *email;
	const char *username;
	const char *roles;			/* array text: {user,developer} */
	int			is_active;
	const char *created_at;
	const char *last_login_at;	/* NULL before the first login */
} pgm_user;

/* The lookups: a result of no row (unknown) or one; read it with
 * pgm_result_user.  A deactivated user is found, is_active 0.  An email
 * or username that cannot be one is PGM_INVALID_PARAMETER. */
pgm_status	pgm_get_user(pgm_conn *conn, const char *user_id, pgm_result **out);
pgm_status	pgm_get_user_by_email(pgm_conn *conn, const char *email,
								  pgm_result **out);
pgm_status	pgm_get_user_by_username(pgm_conn *conn, const char *username,
									 pgm_result **out);
pgm_status	pgm_result_user(const pgm_result *res, int row, pgm_user *out);
/* at (may be NULL) receives the time stamped. */
pgm_status	pgm_update_last_login(pgm_conn *conn, const char *user_id,
								  char at[PGM_TIME_LEN]);
/* email, username: NULL keeps the current one. */
pgm_status	pgm_update_user(pgm_conn *conn, const char *user_id,
							const char *email, const char *username);
pgm_status	pgm_reactivate_user(pgm_conn *conn, const char *user_id);
/* *changed 0 (nothing changed) when the old password is wrong.  Both
 * passwords travel sealed (see pgm_set_plain_secrets). */
pgm_status	pgm_change_password(pgm_conn *conn, const char *user_id,
								const char *old_password,
								const char *new_password, int *changed);
/* ttl: an interval as text, NULL for 1 hour.  *token: shown once; free
 * with pgm_free_secret. */
pgm_status	pgm_create_password_reset(pgm_conn *conn, const char *user_id,
									  const char *ttl, char **token);
/* user_id is "" for an unknown, used or expired token.  The new password
 * travels sealed; the token as text (it is single-use). */
pgm_status	pgm_reset_password(pgm_conn *conn, const char *token,
							   const char *new_password,
							   char user_id[PGM_UUID_LEN]);
/* Account roles: the role registered in table roles; with an actor set
 * (pgm_set_actor), grants and revokes are PGM_PERMISSION_DENIED. */
pgm_status	pgm_add_account_role(pgm_conn *conn, const char *name,
								 const char *description);
pgm_status	pgm_grant_user_role(pgm_conn *conn, const char *user_id,
								const char *role);
pgm_status	pgm_revoke_user_role(pgm_conn *conn, const char *user_id,
								 const char *role);
pgm_status	pgm_has_role(pgm_conn *conn, const char *user_id,
						 const char *role, int *has);
/* External identities (single sign-on). */
pgm_status	pgm_link_identity(pgm_conn *conn, const char *user_id,
							  const char *provider, const char *subject);
pgm_status	pgm_unlink_identity(pgm_conn *conn, const char *user_id,
								const char *provider, int *removed);
/* user_id is "" when the identity is unknown. */
pgm_status	pgm_user_by_identity(pgm_conn *conn, const char *provider,
								 const char *subject,
								 char user_id[PGM_UUID_LEN]);

/* ---- end of the account surface -------------------------------------- */

/* ------------------------------------------------------------------------
 * Ledger.  Optional text arguments may be NULL (the SQL default).
 * ------------------------------------------------------------------------ */

pgm_status	pgm_add_funds(pgm_conn *conn, const char *user_id,
						  const char *amount, const char *idempotency_key,
						  const char *note, pgm_ledger_result *out);
pgm_status	pgm_deduct_balance(pgm_conn *conn, const char *user_id,
							   const char *amount, const char *model_id,
							   int64_t tokens_used,
							   const char *idempotency_key,
							   pgm_ledger_result *out);
/* amount NULL: what is left of the charge. */
pgm_status	pgm_refund(pgm_conn *conn, const char *user_id, int64_t entry_id,
					   const char *amount, const char *idempotency_key,
					   pgm_ledger_result *out);
pgm_status	pgm_get_balance(pgm_conn *conn, const char *user_id,
							pgm_balance *out);
/* before_id 0: the newest page. Rows: pgm_result_ledger_entry. */
pgm_status	pgm_ledger_entries(pgm_conn *conn, const char *user_id,
							   int max_rows, int64_t before_id,
							   pgm_result **out);
/* ttl: an interval as text ("5 minutes"), NULL for 15 minutes. */
pgm_status	pgm_reserve(pgm_conn *conn, const char *user_id,
						const char *amount, const char *ttl,
						const char *idempotency_key, int64_t *reservation_id);
pgm_status	pgm_settle(pgm_conn *conn, const char *user_id,
					   int64_t reservation_id, const char *amount,
					   const char *model_id, int64_t tokens_used,
					   pgm_ledger_result *out);
pgm_status	pgm_release(pgm_conn *conn, const char *user_id,
						int64_t reservation_id, pgm_balance *out);
pgm_status	pgm_expire_reservations(pgm_conn *conn, int64_t *swept);
/* Rows: user_id, problem; none when every invariant holds. */
pgm_status	pgm_verify_ledger(pgm_conn *conn, pgm_result **out);

/* One charge of a batch, and its outcome. */
typedef struct pgm_charge
{
	const char *user_id;
	const char *amount;
	const char *model_id;
	int64_t		tokens_used;
	const char *idempotency_key;	/* may be NULL */
} pgm_charge;

typedef struct pgm_charge_result
{
	pgm_status	status;
	char		sqlstate[PGM_SQLSTATE_LEN];	/* "00000" when applied */
	int64_t		entry_id;		/* 0 when it failed */
	char		available_balance[PGM_AMOUNT_LEN];
	int			replayed;		/* pgm_deduct_batch only */
} pgm_charge_result;

/*
 * n charges pipelined (libpq pipeline mode), in order, each with the result
 * or the error a pgm_deduct_balance call of its own would have given it:
 * results[i].status, .sqlstate, and pgm_batch_errmsg(conn, i) and friends.
 * A charge that fails undoes no other.  The charges travel in transactions
 * of up to 64, one statement each, one round trip and one commit a
 * transaction; a charge that fails aborts its transaction, keeps its own
 * error, and the others of that transaction (none of them committed) are
 * sent again without it.  A charge that would wait for a lock while its
 * transaction holds others' is put back and sent first in a transaction
 * of its own, so a batch never waits holding a lock.  What can be refused without the
 * server (a NULL, an amount that is no whole positive number of
 * micro-credits, a negative token count, an empty or over-long model or
 * key) is refused on the client with the server's words, and sent not at
 * all.  results has n slots.  Returns PGM_OK when every charge got its own
 * outcome; when the connection breaks, PGM_CONNECTION_ERROR, and each charge
 * says what is known of it: its outcome (committed or failed), or
 * PGM_OUTCOME_UNKNOWN (sent, its commit not confirmed: look it up by its
 * idempotency key), or PGM_CONNECTION_ERROR (never sent).  Outside a
 * transaction block only (else PGM_CLIENT_ERROR).
 */
pgm_status	pgm_deduct_batch(pgm_conn *conn, const pgm_charge *charges,
							 size_t n, pgm_charge_result *results);
/* The server's message, detail and hint for charge i of the last
 * pgm_deduct_batch on conn ("" when it applied, or out of range); valid
 * until the next pgm_deduct_batch, pgm_deduct_batch_array or pgm_finish. */
const char *pgm_batch_errmsg(const pgm_conn *conn, size_t i);
const char *pgm_batch_errdetail(const pgm_conn *conn, size_t i);
const char *pgm_batch_errhint(const pgm_conn *conn, size_t i);
/* The same through the server's deduct_batch(charge[]): one statement. */
pgm_status	pgm_deduct_batch_array(pgm_conn *conn, const pgm_charge *charges,
								   size_t n, pgm_charge_result *results);

/* ------------------------------------------------------------------------
 * Vault: provider keys
 * ------------------------------------------------------------------------ */

#define PGM_PUBLICKEY_BYTES 32

/* The vault's public key (cached per connection after the first call). */
pgm_status	pgm_vault_public_key(pgm_conn *conn,
								 unsigned char pk[PGM_PUBLICKEY_BYTES]);
/* Seals the secret on the client and stores it: the plaintext never
 * travels as SQL text.  label may be NULL. */
pgm_status	pgm_put_provider_key(pgm_conn *conn, const char *user_id,
								 const char *provider, const char *secret,
								 const char *label, char key_id[PGM_UUID_LEN]);
/* A secret sealed by the caller (crypto_box_seal to pgm_vault_public_key). */
pgm_status	pgm_put_provider_key_sealed(pgm_conn *conn, const char *user_id,
										const char *provider,
										const unsigned char *sealed,
										size_t sealed_len, const char *label,
										char key_id[PGM_UUID_LEN]);
/* *secret: free with pgm_free_secret, which wipes it. */
pgm_status	pgm_get_provider_key(pgm_conn *conn, const char *user_id,
								 const char *provider, char **secret);
/* Rows: pgm_result_provider_key. */
pgm_status	pgm_list_provider_keys(pgm_conn *conn, const char *user_id,
								   pgm_result **out);
pgm_status	pgm_revoke_provider_key(pgm_conn *conn, const char *user_id,
									const char *key_id, int *revoked);
/* batch_size <= 0: the server's default (1000). */
pgm_status	pgm_rotate_master_key(pgm_conn *conn, int batch_size,
								  int64_t *rotated);

/* ------------------------------------------------------------------------
 * Platform API keys
 * ------------------------------------------------------------------------ */

/* Every field NULL: the SQL default. */
typedef struct pgm_api_key_options
{
	const char *const *scopes;	/* NULL-terminated: read, write, admin */
	const char *rate_limit_tier;
	const char *expires_at;		/* timestamptz text */
	const char *environment;	/* live, test */
	const char *spend_limit;	/* amount */
	const char *spend_period;	/* day, month */
} pgm_api_key_options;

typedef struct pgm_api_key_check
{
	char		key_id[PGM_UUID_LEN];
	char		user_id[PGM_UUID_LEN];
	char		scopes[PGM_NAME_LEN];	/* array text: {read,write} */
	char		rate_limit_tier[PGM_NAME_LEN];
} pgm_api_key_check;

/* *api_key: the raw key, shown once; free with pgm_free_secret. */
pgm_status	pgm_create_api_key(pgm_conn *conn, const char *user_id,
							   const char *name,
							   const pgm_api_key_options *options,
							   char key_id[PGM_UUID_LEN], char **api_key);
/* The key calls below send the key sealed, its public part (the first 24
 * characters) in the clear; a text that is not shaped like a key is not
 * sent at all: verify says not valid, charge and reserve
 * PGM_INVALID_API_KEY.  (See pgm_set_plain_secrets.)
 * *valid 0 (and out zeroed) for a key that does not verify. */
pgm_status	pgm_verify_api_key(pgm_conn *conn, const char *api_key,
							   int *valid, pgm_api_key_check *out);
pgm_status	pgm_charge_api_key(pgm_conn *conn, const char *api_key,
							   const char *amount, const char *model_id,
							   int64_t tokens_used,
							   const char *idempotency_key,
							   pgm_ledger_result *out);
pgm_status	pgm_reserve_api_key(pgm_conn *conn, const char *api_key,
								const char *amount, const char *ttl,
								const char *idempotency_key,
								int64_t *reservation_id);
pgm_status	pgm_revoke_api_key(pgm_conn *conn, const char *user_id,
							   const char *key_id, int *revoked);
/* Rows by column name: key_id, name, prefix, scopes, rate_limit_tier,
 * environment, spend_limit, spend_period, spent, total_spent, created_at,
 * expires_at, last_used_at, revoked_at. */
pgm_status	pgm_list_api_keys(pgm_conn *conn, const char *user_id,
							  pgm_result **out);

/* ---- Tiers and rate limits (a platform key's tier: SPEC "Platform API
 * keys").  charge and reserve through a key over its tier's limits return
 * PGM_RATE_LIMITED, having charged nothing; pgm_retry_after_ms(conn) then
 * says when to retry. ---- */

/* A limit given as PGM_UNLIMITED is NULL in the table: no limit. */
#define PGM_UNLIMITED	INT64_C(-1)

typedef struct pgm_rate_limit
{
	int			allowed;		/* would a call be admitted now */
	int64_t		retry_after_ms; /* when not: the wait */
	int64_t		remaining_requests; /* PGM_UNLIMITED: no request limit */
} pgm_rate_limit;

/* check_rate_limit: reads, consumes nothing; the key travels as the key
 * calls above send it.  PGM_INVALID_API_KEY for a key that does not verify. */
pgm_status	pgm_check_rate_limit(pgm_conn *conn, const char *api_key,
								 pgm_rate_limit *out);
/* set_tier (pgmarket_admin): creates or changes a tier; burst >= 0. */
pgm_status	pgm_set_tier(pgm_conn *conn, const char *name,
						 int64_t requests_per_minute,
						 int64_t tokens_per_minute, int64_t burst);
/* Rows by column name: name, requests_per_minute, tokens_per_minute, burst
 * (NULL: no limit), ordered by name. */
pgm_status	pgm_list_tiers(pgm_conn *conn, pgm_result **out);
/* ---- end of tiers and rate limits ---- */

/* ------------------------------------------------------------------------
 * Audit trail
 * ------------------------------------------------------------------------ */

pgm_status	pgm_seal_audit(pgm_conn *conn, int64_t *sealed);
/* *first_bad_id 0 when the chain verifies; strict: PGM_AUDIT_CHAIN_BROKEN
 * instead. */
pgm_status	pgm_verify_audit(pgm_conn *conn, int strict,
							 int64_t *first_bad_id, int64_t *checked);

/*
 * The anchor an auditor keeps outside the database: the last sealed
 * audit_log id (8 bytes, big-endian) and the chain hash after it, 40 bytes.
 * A superuser can rewrite the trail and seal it again; the rewritten chain
 * no longer passes through an anchor taken before.
 */
#define PGM_AUDIT_ANCHOR_LEN	40
#define PGM_AUDIT_HASH_LEN		32

typedef struct pgm_audit_head_info
{
	int64_t		last_id;		/* 0 before the first seal */
	unsigned char chain_hash[PGM_AUDIT_HASH_LEN];	/* zeros before it */
	char		sealed_at[64];	/* "" before the first seal */
	unsigned char anchor[PGM_AUDIT_ANCHOR_LEN];	/* last_id || chain_hash */
} pgm_audit_head_info;

/* audit_head(): the head of the seal chain, and its anchor. */
pgm_status	pgm_audit_head(pgm_conn *conn, pgm_audit_head_info *out);
/* verify_audit(strict, anchor): as pgm_verify_audit, and the chain must
 * pass through anchor (PGM_AUDIT_ANCHOR_LEN bytes; NULL for none), else
 * *first_bad_id is set (strict: PGM_AUDIT_CHAIN_BROKEN). */
pgm_status	pgm_verify_audit_anchor(pgm_conn *conn, int strict,
									const unsigned char *anchor,
									size_t anchor_len,
									int64_t *first_bad_id, int64_t *checked);

/* ------------------------------------------------------------------------
 * Chat and metering.  A session that is unknown, another user's or deleted
 * is PGM_UNKNOWN_ACCOUNT (PM002); a message to an ended session, or ending
 * it twice, is 55000 (PGM_APPEND_ONLY).  JSON arguments (context,
 * tool_calls, preference values) are JSON text.
 * ------------------------------------------------------------------------ */

/* title, agent_id may be NULL.  session_id receives the new session's id
 * (the server chooses it). */
pgm_status	pgm_create_chat_session(pgm_conn *conn, const char *user_id,
									const char *model_id, const char *title,
									const char *agent_id,
									char session_id[PGM_UUID_LEN]);
/* The same with the application's own session id (NULL: the server
 * chooses): the same id again for the same user and model returns it (a
 * replay); for another user or model it is PGM_DUPLICATE (23505). */
pgm_status	pgm_create_chat_session_with_id(pgm_conn *conn, const char *user_id,
											const char *model_id,
											const char *title,
											const char *agent_id,
											const char *id,
											char session_id[PGM_UUID_LEN]);
/* role: system, user, assistant, tool.  cost: an amount recorded with the
 * message, not charged (NULL: 0); tool_calls may be NULL. */
pgm_status	pgm_save_chat_message(pgm_conn *conn, const char *user_id,
								  const char *session_id, const char *role,
								  const char *content, int tokens,
								  const char *cost, const char *tool_calls,
								  int64_t *message_id);
/* The same with the application's message uuid and the message's model
 * (each may be NULL; model NULL: the session's).  The same uuid with the
 * same message again returns the first message's id; anything else under
 * it is PGM_IDEMPOTENCY_CONFLICT (PM003). */
pgm_status	pgm_save_chat_message_ex(pgm_conn *conn, const char *user_id,
									 const char *session_id, const char *role,
									 const char *content, int tokens,
									 const char *cost, const char *tool_calls,
									 const char *message_uuid,
									 const char *model_id,
									 int64_t *message_id);
/* The assistant's message and the charge of its cost, both or neither;
 * a repeated idempotency_key replays (out->replayed) and stores nothing. */
pgm_status	pgm_record_completion(pgm_conn *conn, const char *user_id,
								  const char *session_id, const char *content,
								  int tokens, const char *cost,
								  const char *idempotency_key,
								  pgm_ledger_result *out);
/* The same with a message uuid (a repeat replays, out->replayed) and the
 * model charged and recorded (NULL: the session's). */
pgm_status	pgm_record_completion_ex(pgm_conn *conn, const char *user_id,
									 const char *session_id,
									 const char *content, int tokens,
									 const char *cost,
									 const char *idempotency_key,
									 const char *message_uuid,
									 const char *model_id,
									 pgm_ledger_result *out);
/* A page of max_rows (1..1000) messages, newest first unless oldest_first;
 * before_id 0: the newest page.  Rows by column name: message_id, role,
 * content, tokens, cost, tool_calls, created_at, model_id, message_uuid. */
pgm_status	pgm_get_chat_history(pgm_conn *conn, const char *user_id,
								 const char *session_id, int max_rows,
								 int64_t before_id, int oldest_first,
								 pgm_result **out);
/* status: completed or failed; reason may be NULL. */
pgm_status	pgm_end_chat_session(pgm_conn *conn, const char *user_id,
								 const char *session_id, const char *status,
								 const char *reason);
/* The keys of context (a JSON object) merged into the session's; the
 * replace form makes context the whole of it. */
pgm_status	pgm_update_chat_context(pgm_conn *conn, const char *user_id,
									const char *session_id, const char *context);
pgm_status	pgm_replace_chat_context(pgm_conn *conn, const char *user_id,
									 const char *session_id,
									 const char *context);
/* Soft deletion: the session is gone to the API. */
pgm_status	pgm_delete_chat_session(pgm_conn *conn, const char *user_id,
									const char *session_id);
/* A page of the sessions not deleted, newest created_at first (ties by
 * session_id): status (active, completed, failed; NULL: any), max_rows
 * 1..1000, before (a timestamptz, exclusive; NULL: the newest) and
 * before_session_id (with before: the sessions of that created_at after
 * this id).  The next page: the last row's created_at and session_id.
 * Rows by column name: session_id, model_id, agent_id, title, status,
 * context, message_count, created_at, last_activity_at.
 * pgm_list_chat_sessions: the newest 1000. */
pgm_status	pgm_list_chat_sessions_page(pgm_conn *conn, const char *user_id,
										const char *status, int max_rows,
										const char *before,
										const char *before_session_id,
										pgm_result **out);
pgm_status	pgm_list_chat_sessions(pgm_conn *conn, const char *user_id,
								   pgm_result **out);
/* The user a session belongs to, "" when it is unknown or deleted (or not
 * the user pgmarket.actor names). */
pgm_status	pgm_chat_session_owner(pgm_conn *conn, const char *session_id,
								   char owner[PGM_UUID_LEN]);
/* stars 1..5; one rating per user and model, a second one replaces it;
 * review may be NULL. */
pgm_status	pgm_rate_model(pgm_conn *conn, const char *user_id,
						   const char *model_id, int stars, const char *review);
/* The view model_ratings: rows model_id, ratings, average_stars, by
 * model_id; model_id NULL: every model. */
pgm_status	pgm_model_ratings(pgm_conn *conn, const char *model_id,
							  pgm_result **out);
/* Insert or replace. */
pgm_status	pgm_set_preference(pgm_conn *conn, const char *user_id,
							   const char *key, const char *value);
/* Rows by column name: key, value, updated_at. */
pgm_status	pgm_get_preferences(pgm_conn *conn, const char *user_id,
								pgm_result **out);
/* *deleted: 1 when the preference was there. */
pgm_status	pgm_delete_preference(pgm_conn *conn, const char *user_id,
								  const char *key, int *deleted);

/* ------------------------------------------------------------------------
 * Projects, templates and change requests (the agent platform's store).
 * An unknown project or change request, or another user's, is
 * PGM_UNKNOWN_ACCOUNT (PM002), as for a chat session; a status change that
 * may not follow the current status is PGM_INVALID_PARAMETER (22023).  JSON
 * arguments are JSON text; rows are read by column name (the columns of
 * the tables projects, templates and modifications).
 * ------------------------------------------------------------------------ */

/* Every field NULL: the SQL default. */
typedef struct pgm_project_options
{
	const char *codebase;		/* JSON object */
	const char *const *dependencies;	/* NULL-terminated */
	const char *environment;	/* JSON object */
	const char *deployment;		/* JSON object */
	const char *id;				/* uuid: update the user's project of that id */
	const char *test_coverage;	/* numeric text, 0 to 100 */
	const char *scores;			/* JSON object */
	const char *last_deployed_at;	/* timestamptz text */
} pgm_project_options;

/* Every field NULL: the SQL default. */
typedef struct pgm_template_options
{
	const char *description;
	const char *const *required_vars;	/* NULL-terminated */
	const char *const *tags;	/* NULL-terminated */
	const char *optional_vars;	/* JSON object: name -> default */
	const char *const *tech_stack;	/* NULL-terminated */
	const char *setup_minutes;	/* integer text */
	const char *complexity;
} pgm_template_options;

/* Insert a project, or update the user's project options->id (another
 * user's id: PGM_PERMISSION_DENIED).  project_id receives its id. */
pgm_status	pgm_save_project(pgm_conn *conn, const char *user_id,
							 const char *name, const char *type,
							 const pgm_project_options *options,
							 char project_id[PGM_UUID_LEN]);
/* One row. */
pgm_status	pgm_get_project(pgm_conn *conn, const char *user_id,
							const char *project_id, pgm_result **out);
/* Newest first; status "active", "archived" or NULL (every status);
 * max_rows 1..1000; before: a created_at (timestamptz text) or NULL. */
pgm_status	pgm_list_projects(pgm_conn *conn, const char *user_id,
							  const char *status, int max_rows,
							  const char *before, pgm_result **out);
pgm_status	pgm_archive_project(pgm_conn *conn, const char *user_id,
								const char *project_id);
/* pgmarket_admin: insert or replace the template of that name (files: a
 * JSON object or array). */
pgm_status	pgm_save_template(pgm_conn *conn, const char *name,
							  const char *category, const char *files,
							  const pgm_template_options *options,
							  char template_id[PGM_UUID_LEN]);
pgm_status	pgm_get_template(pgm_conn *conn, const char *name,
							 pgm_result **out);
/* By name; category NULL: every category. */
pgm_status	pgm_list_templates(pgm_conn *conn, const char *category,
							   pgm_result **out);
/* impact (JSON object) and affected_files (NULL-terminated) may be NULL. */
pgm_status	pgm_request_modification(pgm_conn *conn, const char *user_id,
									 const char *project_id,
									 const char *request, const char *impact,
									 const char *const *affected_files,
									 char modification_id[PGM_UUID_LEN]);
/* status: approved, rejected, applied or failed, forward only; results
 * (JSON object) may be NULL. */
pgm_status	pgm_set_modification_status(pgm_conn *conn, const char *user_id,
										const char *modification_id,
										const char *status,
										const char *results);
/* Newest first. */
pgm_status	pgm_list_modifications(pgm_conn *conn, const char *user_id,
								   const char *project_id, pgm_result **out);

#ifdef __cplusplus
}
#endif

/* ------------------------------------------------------------------------
 * Imports and exports (pgmarket import and export; pgmarket_admin)
 * ------------------------------------------------------------------------ */

/* An account with a hash made elsewhere; password_hash and created_at
 * (ISO 8601) may be NULL.  A repeat of the same account changes nothing. */
pgm_status	pgm_import_user(pgm_conn *conn, const char *id, const char *email,
							const char *username, const char *password_hash,
							const char *created_at);
/*
 * import_batch(section, records): records is the text of a JSON array of
 * records of one section ("users", "entries", "provider_keys", "chats"; see
 * the README), applied in one statement.  *out has a row per record, in
 * order: idx (from 1), outcome ("created", "present", "rejected") and
 * reasons (a text[] literal, NULL unless rejected).
 */
pgm_status	pgm_import_batch(pgm_conn *conn, const char *section,
							 const char *records, pgm_result **out);
/* The active accounts with their password hashes: id, email, username,
 * password_hash, created_at (ISO 8601, UTC, microseconds). */
pgm_status	pgm_export_accounts(pgm_conn *conn, pgm_result **out);
/* One transaction over several calls (pgmarket import --dry-run). */
pgm_status	pgm_begin(pgm_conn *conn);
pgm_status	pgm_commit(pgm_conn *conn);
pgm_status	pgm_rollback(pgm_conn *conn);

#endif							/* PGMARKET_H */
