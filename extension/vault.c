/*-------------------------------------------------------------------------
 *
 * vault.c
 *	  The master key file and the vault of provider keys that users bring:
 *	  put_provider_key, put_provider_key_sealed, vault_public_key,
 *	  get_provider_key, list_provider_keys, revoke_provider_key,
 *	  rotate_master_key.
 *
 * The master key file
 * -------------------
 * pgmarket.master_key_file (superuser only, reload) names a file with one
 * key per line, "VERSION:HEX64" (a version from 1 to 2147483647 and a
 * 32-byte key in 64 hexadecimal digits); blank lines and lines starting with
 * '#' are ignored.  The highest version encrypts; every listed version
 * decrypts.  The file must be a regular file that neither group nor others
 * may access (mode 0600 or 0400).
 *
 * The file is read lazily, at the first use in a transaction, and read again
 * when the configuration was reloaded (the GUC's assign hook marks the keys
 * stale) or when stat() shows that the file changed.  Its mode is checked
 * with stat() at the first use in every transaction, so a file that has
 * become missing or too permissive makes the vault unavailable (PM010) in
 * every new transaction.  Any problem wipes the loaded keys.
 *
 * The keys live in sodium_malloc()ed memory (guard pages, mlock()ed, wiped by
 * sodium_free()), kept read-only between loads.  SQL never sees them: every
 * use goes through a subkey derived per purpose with crypto_kdf (contexts in
 * pgmarket.h), so the provider-key cipher, the API-key hash, the audit chain
 * and the sealing key pair never share a key.
 *
 * Provider keys
 * -------------
 * A secret is encrypted with XChaCha20-Poly1305 (IETF) under the subkey of
 * the newest master key version, with a random 24-byte nonce.  The
 * associated data binds the ciphertext to its row: key id, user id, master
 * key version and provider.  A ciphertext copied to another row, user or
 * provider, or altered in any byte, fails authentication (PM011).
 *
 * Concurrency rules
 * -----------------
 * put_provider_key locks the user's balance row (the lock every ledger
 * operation takes first) before it revokes the user's active key for the
 * provider and inserts the new one, so concurrent puts of one user
 * serialize; the partial unique index provider_keys_one_active is the
 * backstop.  rotate_master_key locks the rows it re-encrypts (FOR UPDATE
 * SKIP LOCKED, then waiting when only locked rows are left, so that 0 means
 * done) and never takes a balance lock, so it cannot deadlock with puts.
 * A reader sees either the old or the new ciphertext of a row, both of
 * which decrypt while both key versions are listed in the file.
 *
 * Plaintext buffers are allocated with pgm_secret_alloc(): a memory context
 * reset callback wipes them even when an error unwinds the call, and the
 * code wipes them explicitly as soon as they are no longer needed.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <sodium.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(pgm_put_provider_key);
PG_FUNCTION_INFO_V1(pgm_put_provider_key_sealed);
PG_FUNCTION_INFO_V1(pgm_vault_public_key);
PG_FUNCTION_INFO_V1(pgm_get_provider_key);
PG_FUNCTION_INFO_V1(pgm_list_provider_keys);
PG_FUNCTION_INFO_V1(pgm_revoke_provider_key);
PG_FUNCTION_INFO_V1(pgm_rotate_master_key);

#define VAULT_MAX_KEYS			100
#define VAULT_MAX_FILE_BYTES	65536
#define VAULT_KEY_BYTES			crypto_kdf_KEYBYTES
#define VAULT_NONCE_BYTES		crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define VAULT_TAG_BYTES			crypto_aead_xchacha20poly1305_ietf_ABYTES
#define VAULT_SUBKEY_ID			1
#define PROVIDER_MAX_LEN		64
#define LABEL_MAX_LEN			200
#define SECRET_MAX_BYTES		16384
#define HINT_MIN_CHARS			8	/* shorter secrets get no hint */
#define HINT_CHARS				4
#define ROTATE_MAX_BATCH		100000

/* Domain separation of the associated data, should the format change. */
#define VAULT_AD_LABEL			"pgmarket provider key v1"

typedef struct VaultKey
{
	int32		version;
	unsigned char key[VAULT_KEY_BYTES];
} VaultKey;

/* The loaded keys, in sodium_malloc()ed memory, sorted by version. */
typedef struct VaultKeys
{
	int			nkeys;
	VaultKey	keys[VAULT_MAX_KEYS];
} VaultKeys;

static char *master_key_file = NULL;
static VaultKeys *vault_keys = NULL;
static bool vault_stale = true;		/* re-read the file at the next use */
static bool vault_checked = false;	/* checked in this transaction */
static struct stat vault_file_stat;	/* the file the keys were read from */
static char vault_file_path[MAXPGPATH];

/* ----------------------------------------------------------------
 * Secret buffers
 * ----------------------------------------------------------------
 */
typedef struct SecretBuffer
{
	MemoryContextCallback cb;
	void	   *ptr;
	Size		len;
} SecretBuffer;

static void
wipe_secret_buffer(void *arg)
{
	SecretBuffer *s = (SecretBuffer *) arg;

	sodium_memzero(s->ptr, s->len);
}

/*
 * Have a buffer in the current memory context wiped when that context is
 * reset or deleted, which also happens when an error unwinds the call.
 */
void
pgm_secret_register(void *ptr, Size len)
{
	SecretBuffer *s = palloc(sizeof(SecretBuffer));

	s->ptr = ptr;
	s->len = len;
	s->cb.func = wipe_secret_buffer;
	s->cb.arg = s;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &s->cb);
}

/* palloc0 a buffer for a secret, wiped when its memory context goes. */
void *
pgm_secret_alloc(Size len)
{
	void	   *ptr = palloc0(len);

	pgm_secret_register(ptr, len);
	return ptr;
}

/* A version 4 (random) uuid. */
void
pgm_random_uuid(pg_uuid_t *uuid)
{
	randombytes_buf(uuid->data, UUID_LEN);
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
}

/* ----------------------------------------------------------------
 * The GUC and the key file
 * ----------------------------------------------------------------
 */

/* Any assignment, a reload included, makes the next use read the file. */
static void
assign_master_key_file(const char *newval, void *extra)
{
	vault_stale = true;
	vault_checked = false;
}

/* A new transaction checks the file again. */
static void
vault_xact_callback(XactEvent event, void *arg)
{
	vault_checked = false;
}

/*
 * Define pgmarket.master_key_file; called from _PG_init before the prefix is
 * reserved, so that a value set in the configuration file is picked up.
 */
void
pgm_vault_init(void)
{
	DefineCustomStringVariable("pgmarket.master_key_file",
							   "File that holds the vault's master keys.",
							   "One key per line, VERSION:HEX64; the file must be "
							   "accessible by the server's operating system user only.",
							   &master_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL,
							   assign_master_key_file,
							   NULL);
	RegisterXactCallback(vault_xact_callback, NULL);
}

/* Wipe and free the loaded keys. */
static void
vault_forget(void)
{
	if (vault_keys != NULL)
		sodium_free(vault_keys);	/* makes it writable, wipes, frees */
	vault_keys = NULL;
	vault_stale = true;
	vault_checked = false;
}

#define VAULT_HINT_FORMAT \
	"Each line of the file must be VERSION:HEX64: a key version from 1 up and a 32-byte key in 64 hexadecimal digits (for example from \"openssl rand -hex 32\")."

/* Raise PM010 for a file problem; the loaded keys are wiped first. */
static void
vault_unavailable(const char *msg, const char *detail, const char *hint)
{
	vault_forget();
	ereport(ERROR,
			(errcode(ERRCODE_PGM_VAULT_UNAVAILABLE),
			 errmsg_internal("%s", msg),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

/*
 * The stat() and open() failures, with a hint that fits the errno.  Messages
 * name the file as pgmarket.master_key_file names it (a relative path is
 * relative to the data directory).
 */
static void
vault_file_error(const char *path, int err)
{
	errno = err;
	if (err == ENOENT)
		vault_unavailable(psprintf("no master key is loaded: master key file \"%s\" does not exist",
								   master_key_file),
						  NULL,
						  "Create the file or correct pgmarket.master_key_file, then reload the configuration.");
	vault_unavailable(psprintf("no master key is loaded: could not read master key file \"%s\": %s",
							   master_key_file, strerror(err)),
					  NULL,
					  "The file must be owned by the operating system user that runs the server, with mode 0600.");
}

/* Raise PM010 unless st describes a regular file only its owner may access. */
static void
vault_check_stat(const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		vault_unavailable(psprintf("no master key is loaded: master key file \"%s\" is not a regular file",
								   master_key_file),
						  NULL,
						  "Point pgmarket.master_key_file at a file, then reload the configuration.");
	if (st->st_mode & (S_IRWXG | S_IRWXO))
		vault_unavailable(psprintf("no master key is loaded: master key file \"%s\" is accessible by group or others",
								   master_key_file),
						  psprintf("Its permissions are %04o; only the server's operating system user may have access.",
								   (unsigned int) (st->st_mode & 07777)),
						  psprintf("Run chmod 600 %s, then reload the configuration.",
								   path));
}

/*
 * Parse the file's text into keys.  Returns NULL on success, else what is
 * wrong (naming the line, never any key material).
 */
static char *
vault_parse(const char *buf, size_t len, VaultKeys *out)
{
	size_t		pos = 0;
	int			lineno = 0;

	out->nkeys = 0;
	while (pos < len)
	{
		size_t		start = pos;
		size_t		end;
		size_t		p;
		int64		version = 0;
		size_t		binlen = 0;
		const char *hexend = NULL;
		VaultKey   *k;
		int			i;

		while (pos < len && buf[pos] != '\n')
			pos++;
		end = pos;
		if (pos < len)
			pos++;
		lineno++;

		while (start < end && (buf[start] == ' ' || buf[start] == '\t'))
			start++;
		while (end > start && (buf[end - 1] == ' ' || buf[end - 1] == '\t' ||
							   buf[end - 1] == '\r'))
			end--;
		if (start == end || buf[start] == '#')
			continue;

		for (p = start; p < end && buf[p] >= '0' && buf[p] <= '9'; p++)
		{
			version = version * 10 + (buf[p] - '0');
			if (version > PG_INT32_MAX)
				return psprintf("line %d: the key version is out of range (1 to 2147483647)",
								lineno);
		}
		if (p == start || p == end || buf[p] != ':')
			return psprintf("line %d is not of the form VERSION:HEX64", lineno);
		if (version == 0)
			return psprintf("line %d: key versions start at 1", lineno);
		p++;
		if (end - p != 2 * VAULT_KEY_BYTES)
			return psprintf("line %d: the key is not 64 hexadecimal digits", lineno);
		if (out->nkeys >= VAULT_MAX_KEYS)
			return psprintf("it lists more than %d keys", VAULT_MAX_KEYS);
		for (i = 0; i < out->nkeys; i++)
			if (out->keys[i].version == version)
				return psprintf("line %d: key version %d is listed twice",
								lineno, (int) version);

		k = &out->keys[out->nkeys];
		if (sodium_hex2bin(k->key, VAULT_KEY_BYTES, buf + p, end - p, NULL,
						   &binlen, &hexend) != 0 ||
			binlen != VAULT_KEY_BYTES || hexend != buf + end)
		{
			sodium_memzero(k->key, VAULT_KEY_BYTES);
			return psprintf("line %d: the key is not 64 hexadecimal digits", lineno);
		}
		if (sodium_is_zero(k->key, VAULT_KEY_BYTES))
			return psprintf("line %d: key version %d is all zeros",
							lineno, (int) version);
		k->version = (int32) version;
		out->nkeys++;
	}
	if (out->nkeys == 0)
		return pstrdup("it holds no key");
	return NULL;
}

/* Read and parse the key file; on success the new keys replace the old. */
static void
vault_read(const char *path)
{
	int			fd;
	struct stat st;
	unsigned char *buf;
	size_t		len = 0;
	VaultKeys  *keys;
	char	   *problem;
	int			i;

	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		vault_file_error(path, errno);
	if (fstat(fd, &st) != 0)
	{
		int			save = errno;

		close(fd);
		vault_file_error(path, save);
	}
	/* check what was opened, not what stat() saw a moment ago */
	if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO)) ||
		st.st_size > VAULT_MAX_FILE_BYTES)
	{
		close(fd);
		vault_check_stat(path, &st);
		vault_unavailable(psprintf("no master key is loaded: master key file \"%s\" is larger than %d bytes",
								   master_key_file, VAULT_MAX_FILE_BYTES),
						  NULL, VAULT_HINT_FORMAT);
	}

	buf = sodium_malloc(st.st_size + 1);
	keys = sodium_malloc(sizeof(VaultKeys));
	if (buf == NULL || keys == NULL)
	{
		close(fd);
		if (buf)
			sodium_free(buf);
		if (keys)
			sodium_free(keys);
		vault_unavailable("no master key is loaded: out of secure memory",
						  NULL, "Raise the server's limit of locked memory (ulimit -l).");
	}
	while (len < (size_t) st.st_size)
	{
		ssize_t		n = read(fd, buf + len, st.st_size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			int			save = n < 0 ? errno : EIO;

			close(fd);
			sodium_free(buf);
			sodium_free(keys);
			vault_file_error(path, save);
		}
		len += n;
	}
	close(fd);

	problem = vault_parse((const char *) buf, len, keys);
	sodium_free(buf);
	if (problem != NULL)
	{
		sodium_free(keys);
		vault_unavailable(psprintf("no master key is loaded: master key file \"%s\" is malformed: %s",
								   master_key_file, problem),
						  NULL, VAULT_HINT_FORMAT);
	}

	/* sort by version (insertion sort; a handful of keys) */
	for (i = 1; i < keys->nkeys; i++)
	{
		VaultKey	tmp;
		int			j;

		memcpy(&tmp, &keys->keys[i], sizeof(VaultKey));
		for (j = i; j > 0 && keys->keys[j - 1].version > tmp.version; j--)
			memcpy(&keys->keys[j], &keys->keys[j - 1], sizeof(VaultKey));
		memcpy(&keys->keys[j], &tmp, sizeof(VaultKey));
		sodium_memzero(&tmp, sizeof(tmp));
	}
	sodium_mprotect_readonly(keys);

	vault_forget();
	vault_keys = keys;
	vault_file_stat = st;
	strlcpy(vault_file_path, path, sizeof(vault_file_path));
	vault_stale = false;
	vault_checked = true;
}

static bool
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
		a->st_size == b->st_size && a->st_mtime == b->st_mtime &&
		a->st_ctime == b->st_ctime && a->st_mode == b->st_mode
#if defined(__linux__)
		&& a->st_mtim.tv_nsec == b->st_mtim.tv_nsec
		&& a->st_ctim.tv_nsec == b->st_ctim.tv_nsec
#endif
		;
}

/*
 * Make sure the keys are loaded and the file is still acceptable; raise
 * PM010 otherwise.  Cheap after the first call in a transaction.
 */
static void
vault_ensure(void)
{
	char		path[MAXPGPATH];
	struct stat st;

	if (vault_checked && !vault_stale && vault_keys != NULL)
		return;

	if (master_key_file == NULL || master_key_file[0] == '\0')
		vault_unavailable("no master key is loaded: pgmarket.master_key_file is not set",
						  NULL,
						  "Set pgmarket.master_key_file to the path of the master key file (ALTER SYSTEM SET pgmarket.master_key_file = '...') and reload the configuration.");

	if (is_absolute_path(master_key_file))
		strlcpy(path, master_key_file, sizeof(path));
	else
		snprintf(path, sizeof(path), "%s/%s", DataDir, master_key_file);

	if (stat(path, &st) != 0)
		vault_file_error(path, errno);
	vault_check_stat(path, &st);

	if (vault_keys != NULL && !vault_stale && same_file(&st, &vault_file_stat) &&
		strcmp(path, vault_file_path) == 0)
	{
		vault_checked = true;
		return;
	}
	vault_read(path);
}

static const VaultKey *
vault_find(int32 version)
{
	int			i;

	for (i = 0; i < vault_keys->nkeys; i++)
		if (vault_keys->keys[i].version == version)
			return &vault_keys->keys[i];
	return NULL;
}

/* The version that encrypts: the highest one in the file.  Raises PM010. */
int32
pgm_vault_newest_version(void)
{
	vault_ensure();
	return vault_keys->keys[vault_keys->nkeys - 1].version;
}

/*
 * Derive the PGM_SUBKEY_BYTES subkey of a master key version for one purpose
 * (an 8-byte context from pgmarket.h).  Raises PM010 when no key is loaded;
 * returns false when that version is not in the file.  The caller wipes out.
 *
 * A version this transaction has not seen may have been added to the file
 * since the transaction looked at it (a rotation that committed while a
 * reader's transaction was open, without a reload): before answering that
 * the version is missing, look at the file once more.
 */
bool
pgm_vault_subkey(int32 version, const char *context, uint64 subkey_id,
				 unsigned char *out)
{
	const VaultKey *k;

	vault_ensure();
	k = vault_find(version);
	if (k == NULL && version > vault_keys->keys[vault_keys->nkeys - 1].version)
	{
		vault_checked = false;
		vault_ensure();
		k = vault_find(version);
	}
	if (k == NULL)
		return false;
	if (crypto_kdf_derive_from_key(out, PGM_SUBKEY_BYTES, subkey_id, context,
								   k->key) != 0)
		elog(ERROR, "crypto_kdf_derive_from_key failed");
	return true;
}

/* ----------------------------------------------------------------
 * Encryption of provider keys
 * ----------------------------------------------------------------
 */

#define VAULT_AD_MAX (sizeof(VAULT_AD_LABEL) + 2 * UUID_LEN + 4 + PROVIDER_MAX_LEN)

/*
 * Associated data: label, key id, user id, key version (big-endian), and the
 * provider last, the only part of variable length.
 */
static size_t
build_ad(unsigned char *ad, const pg_uuid_t *key_id, const pg_uuid_t *user_id,
		 int32 version, const char *provider)
{
	size_t		n = 0;
	size_t		plen = strlen(provider);
	uint32		v = (uint32) version;

	Assert(plen <= PROVIDER_MAX_LEN);
	memcpy(ad + n, VAULT_AD_LABEL, sizeof(VAULT_AD_LABEL));
	n += sizeof(VAULT_AD_LABEL);
	memcpy(ad + n, key_id->data, UUID_LEN);
	n += UUID_LEN;
	memcpy(ad + n, user_id->data, UUID_LEN);
	n += UUID_LEN;
	ad[n++] = (v >> 24) & 0xff;
	ad[n++] = (v >> 16) & 0xff;
	ad[n++] = (v >> 8) & 0xff;
	ad[n++] = v & 0xff;
	memcpy(ad + n, provider, plen);
	return n + plen;
}

/* Encrypt a secret under a key version; fills nonce and returns ciphertext. */
static bytea *
encrypt_secret(int32 version, const pg_uuid_t *key_id, const pg_uuid_t *user_id,
			   const char *provider, const char *secret, size_t len,
			   bytea **nonce_out)
{
	unsigned char subkey[PGM_SUBKEY_BYTES];
	unsigned char ad[VAULT_AD_MAX];
	size_t		adlen = build_ad(ad, key_id, user_id, version, provider);
	bytea	   *nonce = palloc(VARHDRSZ + VAULT_NONCE_BYTES);
	bytea	   *ct = palloc(VARHDRSZ + len + VAULT_TAG_BYTES);
	unsigned long long ctlen = 0;

	if (!pgm_vault_subkey(version, PGM_KDF_CONTEXT_VAULT, VAULT_SUBKEY_ID, subkey))
		elog(ERROR, "master key version %d is not loaded", version);
	SET_VARSIZE(nonce, VARHDRSZ + VAULT_NONCE_BYTES);
	randombytes_buf(VARDATA(nonce), VAULT_NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt((unsigned char *) VARDATA(ct), &ctlen,
											   (const unsigned char *) secret, len,
											   ad, adlen, NULL,
											   (const unsigned char *) VARDATA(nonce),
											   subkey);
	sodium_memzero(subkey, sizeof(subkey));
	SET_VARSIZE(ct, VARHDRSZ + ctlen);
	*nonce_out = nonce;
	return ct;
}

/*
 * Decrypt a stored secret into a wiped-on-reset buffer, as a text datum.
 * Raises PM011 when the key version is not loaded or authentication fails.
 */
static text *
decrypt_secret(int32 version, const pg_uuid_t *key_id, const pg_uuid_t *user_id,
			   const char *provider, bytea *nonce, bytea *ct)
{
	unsigned char subkey[PGM_SUBKEY_BYTES];
	unsigned char ad[VAULT_AD_MAX];
	size_t		adlen = build_ad(ad, key_id, user_id, version, provider);
	size_t		ctlen = VARSIZE_ANY_EXHDR(ct);
	text	   *result;
	unsigned long long ptlen = 0;
	int			rc;
	char	   *id = DatumGetCString(DirectFunctionCall1(uuid_out,
														 UUIDPGetDatum((pg_uuid_t *) key_id)));

	if (!pgm_vault_subkey(version, PGM_KDF_CONTEXT_VAULT, VAULT_SUBKEY_ID, subkey))
		ereport(ERROR,
				(errcode(ERRCODE_PGM_DECRYPTION_FAILED),
				 errmsg("provider key %s cannot be decrypted: master key version %d is not loaded",
						id, version),
				 errhint("Add key version %d back to the master key file, then reload the configuration.",
						 version)));

	if (ctlen < VAULT_TAG_BYTES || VARSIZE_ANY_EXHDR(nonce) != VAULT_NONCE_BYTES)
	{
		sodium_memzero(subkey, sizeof(subkey));
		ereport(ERROR,
				(errcode(ERRCODE_PGM_DECRYPTION_FAILED),
				 errmsg("provider key %s failed authentication", id),
				 errdetail("Its stored ciphertext is truncated.")));
	}
	result = pgm_secret_alloc(VARHDRSZ + ctlen);
	rc = crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *) VARDATA(result),
													&ptlen, NULL,
													(const unsigned char *) VARDATA_ANY(ct),
													ctlen, ad, adlen,
													(const unsigned char *) VARDATA_ANY(nonce),
													subkey);
	sodium_memzero(subkey, sizeof(subkey));
	if (rc != 0)
	{
		sodium_memzero(VARDATA(result), ctlen);
		ereport(ERROR,
				(errcode(ERRCODE_PGM_DECRYPTION_FAILED),
				 errmsg("provider key %s failed authentication", id),
				 errdetail("The ciphertext was altered, moved to another row, or encrypted under another master key.")));
	}
	SET_VARSIZE(result, VARHDRSZ + ptlen);
	return result;
}

/* ----------------------------------------------------------------
 * Prepared statements
 * ----------------------------------------------------------------
 */
static SPIPlanPtr plan_revoke_active;
static SPIPlanPtr plan_insert;
static SPIPlanPtr plan_get;
static SPIPlanPtr plan_touch;
static SPIPlanPtr plan_log;
static SPIPlanPtr plan_log_audit;
static SPIPlanPtr plan_list;
static SPIPlanPtr plan_revoke;
static SPIPlanPtr plan_rotate_skip;
static SPIPlanPtr plan_rotate_wait;
static SPIPlanPtr plan_rekey;

static void
prepare_plans(void)
{
	Oid			u[] = {UUIDOID};
	Oid			u_t[] = {UUIDOID, TEXTOID};
	Oid			u_u[] = {UUIDOID, UUIDOID};
	Oid			ins[] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, INT4OID,
	BYTEAOID, BYTEAOID};
	Oid			log[] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Oid			rot[] = {INT4OID, INT4OID};
	Oid			rekey[] = {UUIDOID, INT4OID, BYTEAOID, BYTEAOID};

	if (plan_rekey != NULL)
		return;

	plan_revoke_active = pgm_prepare(
		"UPDATE pgmarket.provider_keys SET revoked_at = now()"
		" WHERE user_id = $1 AND provider = $2 AND revoked_at IS NULL",
		2, u_t);
	plan_insert = pgm_prepare(
		"INSERT INTO pgmarket.provider_keys (key_id, user_id, provider, label,"
		"       hint, key_version, nonce, ciphertext)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", 8, ins);
	plan_get = pgm_prepare(
		"SELECT key_id, key_version, nonce, ciphertext,"
		"       last_used_at IS NULL OR last_used_at < now() - interval '1 minute'"
		"  FROM pgmarket.provider_keys"
		" WHERE user_id = $1 AND provider = $2 AND revoked_at IS NULL",
		2, u_t);
	plan_touch = pgm_prepare(
		"UPDATE pgmarket.provider_keys SET last_used_at = now()"
		" WHERE key_id = $1", 1, u);
	plan_log = pgm_prepare(
		"INSERT INTO pgmarket.key_access_log (key_id, user_id, provider,"
		"       session_role, db_role, actor)"
		" VALUES ($1, $2, $3, $4, $5, $6)", 6, log);
	plan_log_audit = pgm_prepare(
		"SELECT pgmarket.audit_event('pgmarket.provider_keys'::regclass, 'DECRYPT',"
		"       pg_catalog.jsonb_build_object('key_id', $1, 'user_id', $2,"
		"                                     'provider', $3))", 3, log);
	plan_list = pgm_prepare(
		"SELECT key_id, provider, label, hint, key_version, created_at,"
		"       last_used_at, revoked_at"
		"  FROM pgmarket.provider_keys WHERE user_id = $1"
		" ORDER BY provider, created_at, key_id", 1, u);
	plan_revoke = pgm_prepare(
		"UPDATE pgmarket.provider_keys SET revoked_at = now()"
		" WHERE user_id = $1 AND key_id = $2 AND revoked_at IS NULL"
		" RETURNING key_id", 2, u_u);
	plan_rotate_skip = pgm_prepare(
		"SELECT key_id, user_id, provider, key_version, nonce, ciphertext"
		"  FROM pgmarket.provider_keys WHERE key_version <> $1"
		" ORDER BY key_id LIMIT $2 FOR UPDATE SKIP LOCKED", 2, rot);
	plan_rotate_wait = pgm_prepare(
		"SELECT key_id, user_id, provider, key_version, nonce, ciphertext"
		"  FROM pgmarket.provider_keys WHERE key_version <> $1"
		" ORDER BY key_id LIMIT $2 FOR UPDATE", 2, rot);
	plan_rekey = pgm_prepare(
		"UPDATE pgmarket.provider_keys"
		"   SET key_version = $2, nonce = $3, ciphertext = $4"
		" WHERE key_id = $1", 4, rekey);
}

/* A uuid column copied into the current memory context. */
static pg_uuid_t *
col_uuid(uint64 row, int colno)
{
	bool		isnull;
	pg_uuid_t  *copy = palloc(sizeof(pg_uuid_t));

	memcpy(copy, DatumGetUUIDP(pgm_col(row, colno, &isnull)), sizeof(pg_uuid_t));
	return copy;
}

/* A varlena column copied into the upper (caller's) memory context. */
static struct varlena *
col_varlena(uint64 row, int colno)
{
	bool		isnull;
	Datum		d = pgm_col(row, colno, &isnull);

	return (struct varlena *) DatumGetPointer(SPI_datumTransfer(d, false, -1));
}

/* ----------------------------------------------------------------
 * Arguments
 * ----------------------------------------------------------------
 */

/* A provider name, lower-cased: 1 to 64 of [a-z0-9_.-], else 22023. */
static char *
provider_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *s;
	char	   *p;
	bool		ok;

	pgm_require_arg(fcinfo, argno, "provider");
	s = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	ok = s[0] != '\0' && strlen(s) <= PROVIDER_MAX_LEN;
	for (p = s; ok && *p; p++)
	{
		if (*p >= 'A' && *p <= 'Z')
			*p += 'a' - 'A';
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			  *p == '_' || *p == '.' || *p == '-'))
			ok = false;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("provider name \"%s\" is not valid",
						text_to_cstring(PG_GETARG_TEXT_PP(argno))),
				 errdetail("A provider name is 1 to 64 of the characters a-z, 0-9, underscore, dot and hyphen.")));
	return s;
}

/* Check a plaintext secret (never shown in a message). */
static void
check_secret(const char *secret, size_t len)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("secret must not be empty")));
	if (len > SECRET_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("secret is longer than %d bytes", SECRET_MAX_BYTES)));
}

/* The last 4 characters of a secret of at least 8 characters, else NULL. */
static text *
secret_hint(const char *secret, size_t len)
{
	int			nchars = pg_mbstrlen_with_len(secret, len);
	const char *p = secret;
	int			i;

	if (nchars < HINT_MIN_CHARS)
		return NULL;
	for (i = 0; i < nchars - HINT_CHARS; i++)
		p += pg_mblen(p);
	return cstring_to_text_with_len(p, len - (p - secret));
}

/* ----------------------------------------------------------------
 * put_provider_key and put_provider_key_sealed
 * ----------------------------------------------------------------
 */

/*
 * Store a secret for (user, provider) under the newest key version, revoking
 * the user's active key for that provider.  Returns the new key id.
 */
static pg_uuid_t *
put_secret(Datum user_id, const char *provider, text *label,
		   const char *secret, size_t len)
{
	pg_uuid_t  *key_id = palloc(sizeof(pg_uuid_t));
	int32		version;
	bytea	   *nonce;
	bytea	   *ct;
	text	   *hint;
	Datum		values[8];
	char		nulls[8];

	check_secret(secret, len);
	version = pgm_vault_newest_version();
	pgm_random_uuid(key_id);
	hint = secret_hint(secret, len);
	ct = encrypt_secret(version, key_id, DatumGetUUIDP(user_id), provider,
						secret, len, &nonce);

	pgm_spi_connect();
	prepare_plans();
	pgm_check_user(user_id, true);

	values[0] = user_id;
	values[1] = CStringGetTextDatum(provider);
	pgm_exec(plan_revoke_active, values, NULL, false);

	memset(nulls, ' ', sizeof(nulls));
	values[0] = UUIDPGetDatum(key_id);
	values[1] = user_id;
	values[2] = CStringGetTextDatum(provider);
	values[3] = PointerGetDatum(label);
	values[4] = PointerGetDatum(hint);
	values[5] = Int32GetDatum(version);
	values[6] = PointerGetDatum(nonce);
	values[7] = PointerGetDatum(ct);
	if (label == NULL)
		nulls[3] = 'n';
	if (hint == NULL)
		nulls[4] = 'n';
	pgm_exec(plan_insert, values, nulls, false);

	SPI_finish();
	return key_id;
}

/*
 * The secret argument, detoasted; a detoasted copy is wiped when the call's
 * memory goes.
 */
static text *
secret_arg(FunctionCallInfo fcinfo, int argno)
{
	Datum		raw = PG_GETARG_DATUM(argno);
	text	   *t = PG_GETARG_TEXT_PP(argno);

	if ((Pointer) t != DatumGetPointer(raw))
		pgm_secret_register(t, VARSIZE_ANY(t));
	return t;
}

/*
 * put_provider_key(user_id uuid, provider text, secret text, label text)
 * RETURNS uuid
 */
Datum
pgm_put_provider_key(PG_FUNCTION_ARGS)
{
	char	   *provider;
	text	   *secret;
	text	   *label;

	pgm_user_arg(fcinfo, 0);
	provider = provider_arg(fcinfo, 1);
	pgm_require_arg(fcinfo, 2, "secret");
	secret = secret_arg(fcinfo, 2);
	label = pgm_optional_text(fcinfo, 3, "label", LABEL_MAX_LEN);

	PG_RETURN_UUID_P(put_secret(PG_GETARG_DATUM(0), provider, label,
								VARDATA_ANY(secret), VARSIZE_ANY_EXHDR(secret)));
}

/*
 * The vault's sealing key pair for a master key version: X25519 keys from a
 * seed derived from that version.  The caller wipes sk.
 */
static bool
box_keypair(int32 version, unsigned char *pk, unsigned char *sk)
{
	unsigned char seed[PGM_SUBKEY_BYTES];

	StaticAssertStmt(crypto_box_SEEDBYTES == PGM_SUBKEY_BYTES,
					 "box seed size");
	if (!pgm_vault_subkey(version, PGM_KDF_CONTEXT_BOX, VAULT_SUBKEY_ID, seed))
		return false;
	crypto_box_seed_keypair(pk, sk, seed);
	sodium_memzero(seed, sizeof(seed));
	return true;
}

/*
 * vault_public_key() RETURNS bytea: the 32-byte X25519 public key of the
 * newest master key version, for crypto_box_seal.
 */
Datum
pgm_vault_public_key(PG_FUNCTION_ARGS)
{
	unsigned char sk[crypto_box_SECRETKEYBYTES];
	bytea	   *pk = palloc(VARHDRSZ + crypto_box_PUBLICKEYBYTES);

	SET_VARSIZE(pk, VARHDRSZ + crypto_box_PUBLICKEYBYTES);
	if (!box_keypair(pgm_vault_newest_version(), (unsigned char *) VARDATA(pk), sk))
		elog(ERROR, "newest master key version is not loaded");
	sodium_memzero(sk, sizeof(sk));
	PG_RETURN_BYTEA_P(pk);
}

/*
 * put_provider_key_sealed(user_id uuid, provider text, sealed bytea,
 * label text) RETURNS uuid: the secret arrives sealed to vault_public_key();
 * the key pairs of every listed version are tried, newest first, so a
 * client that fetched the public key before a rotation still gets through.
 */
Datum
pgm_put_provider_key_sealed(PG_FUNCTION_ARGS)
{
	char	   *provider;
	bytea	   *sealed;
	text	   *label;
	size_t		slen;
	size_t		len;
	char	   *secret;
	bool		opened = false;
	int			i;

	pgm_user_arg(fcinfo, 0);
	provider = provider_arg(fcinfo, 1);
	pgm_require_arg(fcinfo, 2, "sealed");
	sealed = PG_GETARG_BYTEA_PP(2);
	label = pgm_optional_text(fcinfo, 3, "label", LABEL_MAX_LEN);

	slen = VARSIZE_ANY_EXHDR(sealed);
	if (slen <= crypto_box_SEALBYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sealed secret of %zu bytes is too short", slen),
				 errdetail("A sealed secret is %d bytes longer than the secret, which must not be empty.",
						   (int) crypto_box_SEALBYTES)));
	len = slen - crypto_box_SEALBYTES;
	if (len > SECRET_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("secret is longer than %d bytes", SECRET_MAX_BYTES)));

	(void) pgm_vault_newest_version();	/* PM010 if no key is loaded */
	secret = pgm_secret_alloc(len + 1);
	for (i = vault_keys->nkeys - 1; i >= 0 && !opened; i--)
	{
		unsigned char pk[crypto_box_PUBLICKEYBYTES];
		unsigned char sk[crypto_box_SECRETKEYBYTES];

		if (!box_keypair(vault_keys->keys[i].version, pk, sk))
			continue;
		opened = crypto_box_seal_open((unsigned char *) secret,
									  (const unsigned char *) VARDATA_ANY(sealed),
									  slen, pk, sk) == 0;
		sodium_memzero(sk, sizeof(sk));
	}
	if (!opened)
		ereport(ERROR,
				(errcode(ERRCODE_PGM_DECRYPTION_FAILED),
				 errmsg("sealed secret could not be opened"),
				 errdetail("It was not sealed to a public key of this vault, or it was altered."),
				 errhint("Seal the secret to the key that vault_public_key() returns.")));

	if (memchr(secret, '\0', len) != NULL ||
		!pg_verifymbstr(secret, len, true))
	{
		sodium_memzero(secret, len);
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("sealed secret is not valid text in the database encoding")));
	}

	PG_RETURN_UUID_P(put_secret(PG_GETARG_DATUM(0), provider, label, secret, len));
}

/*
 * Open a secret sealed (crypto_box_seal) to the public key of any listed
 * master key version, newest first, into out (sealed_len -
 * crypto_box_SEALBYTES bytes, which the caller wipes).  Raises PM010 when
 * no key is loaded; false when no key pair opens it.  For sealed.c.
 */
bool
pgm_vault_open_sealed(const unsigned char *sealed, size_t sealed_len,
					  unsigned char *out)
{
	int			i;

	(void) pgm_vault_newest_version();	/* PM010 if no key is loaded */
	if (sealed_len < crypto_box_SEALBYTES)
		return false;
	for (i = vault_keys->nkeys - 1; i >= 0; i--)
	{
		unsigned char pk[crypto_box_PUBLICKEYBYTES];
		unsigned char sk[crypto_box_SECRETKEYBYTES];
		bool		opened;

		if (!box_keypair(vault_keys->keys[i].version, pk, sk))
			continue;
		opened = crypto_box_seal_open(out, sealed, sealed_len, pk, sk) == 0;
		sodium_memzero(sk, sizeof(sk));
		if (opened)
			return true;
	}
	return false;
}

/* For health(): is pgmarket.master_key_file set at all? */
bool
pgm_vault_configured(void)
{
	return master_key_file != NULL && master_key_file[0] != '\0';
}

/* For health(): how many key versions are loaded; PM010 when none can be. */
int
pgm_vault_versions(void)
{
	vault_ensure();
	return vault_keys->nkeys;
}

/* ----------------------------------------------------------------
 * get_provider_key(user_id uuid, provider text) RETURNS text
 * ----------------------------------------------------------------
 */

/* The name of a role, or NULL. */
static Datum
role_name_datum(Oid roleid, bool *isnull)
{
	char	   *name = GetUserNameFromId(roleid, true);

	*isnull = name == NULL;
	return name ? CStringGetTextDatum(name) : (Datum) 0;
}

Datum
pgm_get_provider_key(PG_FUNCTION_ARGS)
{
	Datum		user_id;
	char	   *provider;
	pg_uuid_t  *key_id;
	int32		version;
	bytea	   *nonce;
	bytea	   *ct;
	bool		touch;
	bool		isnull;
	text	   *secret;
	Datum		values[6];
	char		nulls[6];
	const char *actor;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext old;

	pgm_user_arg(fcinfo, 0);
	user_id = PG_GETARG_DATUM(0);
	provider = provider_arg(fcinfo, 1);
	(void) pgm_vault_newest_version();	/* PM010 before anything else */

	pgm_spi_connect();
	prepare_plans();
	pgm_check_user(user_id, false);

	values[0] = user_id;
	values[1] = CStringGetTextDatum(provider);
	pgm_exec(plan_get, values, NULL, false);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGM_KEY_NOT_FOUND),
				 errmsg("user %s has no active key for provider \"%s\"",
						DatumGetCString(DirectFunctionCall1(uuid_out, user_id)),
						provider)));
	old = MemoryContextSwitchTo(caller);
	key_id = col_uuid(0, 1);
	MemoryContextSwitchTo(old);
	version = DatumGetInt32(pgm_col(0, 2, &isnull));
	nonce = (bytea *) col_varlena(0, 3);
	ct = (bytea *) col_varlena(0, 4);
	touch = DatumGetBool(pgm_col(0, 5, &isnull));

	/* decrypt into the caller's memory, wiped when that is reset */
	old = MemoryContextSwitchTo(caller);
	secret = decrypt_secret(version, key_id, DatumGetUUIDP(user_id), provider,
							nonce, ct);
	MemoryContextSwitchTo(old);

	if (touch)
	{
		values[0] = UUIDPGetDatum(key_id);
		pgm_exec(plan_touch, values, NULL, false);
	}

	/* who read which key, when; never the secret */
	memset(nulls, ' ', sizeof(nulls));
	values[0] = UUIDPGetDatum(key_id);
	values[1] = user_id;
	values[2] = CStringGetTextDatum(provider);
	values[3] = role_name_datum(GetSessionUserId(), &isnull);
	if (isnull)
		nulls[3] = 'n';
	values[4] = role_name_datum(GetOuterUserId(), &isnull);
	if (isnull)
		nulls[4] = 'n';
	actor = GetConfigOption("pgmarket.actor", true, false);
	if (actor != NULL && actor[0] != '\0')
		values[5] = CStringGetTextDatum(actor);
	else
		nulls[5] = 'n';
	pgm_exec(plan_log, values, nulls, false);
	/*
	 * and in the sealed audit trail too, so that a read cannot be deleted
	 * from key_access_log unseen
	 */
	pgm_exec(plan_log_audit, values, nulls, false);

	SPI_finish();
	PG_RETURN_TEXT_P(secret);
}

/* ----------------------------------------------------------------
 * list_provider_keys(user_id uuid)
 * ----------------------------------------------------------------
 */
Datum
pgm_list_provider_keys(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[8];
	bool		nulls[8];
	uint64		i;

	pgm_user_arg(fcinfo, 0);
	InitMaterializedSRF(fcinfo, 0);

	pgm_spi_connect();
	prepare_plans();
	pgm_check_user(PG_GETARG_DATUM(0), false);

	values[0] = PG_GETARG_DATUM(0);
	pgm_exec(plan_list, values, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		int			c;

		for (c = 0; c < 8; c++)
			values[c] = pgm_col(i, c + 1, &nulls[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	SPI_finish();
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * revoke_provider_key(user_id uuid, key_id uuid) RETURNS boolean
 *
 * true when the key was active and is now revoked; false when the user has
 * no such key or it was revoked already.
 * ----------------------------------------------------------------
 */
Datum
pgm_revoke_provider_key(PG_FUNCTION_ARGS)
{
	Datum		values[2];
	bool		revoked;

	pgm_user_arg(fcinfo, 0);
	pgm_require_arg(fcinfo, 1, "key_id");

	pgm_spi_connect();
	prepare_plans();
	pgm_check_user(PG_GETARG_DATUM(0), false);
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	pgm_exec(plan_revoke, values, NULL, false);
	revoked = SPI_processed == 1;
	SPI_finish();
	PG_RETURN_BOOL(revoked);
}

/* ----------------------------------------------------------------
 * rotate_master_key(batch_size int) RETURNS bigint
 *
 * Re-encrypts up to batch_size rows (revoked ones included) that are not
 * under the newest key version, and returns how many; 0 means every row is
 * under the newest version.  Rows that another transaction has locked are
 * skipped, unless they are all that is left: then the call waits for them,
 * so that 0 is only returned when the work is done.
 * ----------------------------------------------------------------
 */
Datum
pgm_rotate_master_key(PG_FUNCTION_ARGS)
{
	int32		batch;
	int32		newest;
	Datum		values[4];
	uint64		n;
	uint64		i;
	MemoryContext rowcxt;

	pgm_require_arg(fcinfo, 0, "batch_size");
	batch = PG_GETARG_INT32(0);
	if (batch < 1 || batch > ROTATE_MAX_BATCH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size %d is out of range", batch),
				 errdetail("A batch holds 1 to %d keys.", ROTATE_MAX_BATCH)));
	newest = pgm_vault_newest_version();

	pgm_spi_connect();
	prepare_plans();

	values[0] = Int32GetDatum(newest);
	values[1] = Int32GetDatum(batch);
	pgm_exec(plan_rotate_skip, values, NULL, false);
	if (SPI_processed == 0)
		pgm_exec(plan_rotate_wait, values, NULL, false);

	/* the batch stays in SPI_tuptable; each row's work in its own context */
	{
		SPITupleTable *batch_rows = SPI_tuptable;

		n = SPI_processed;
		rowcxt = AllocSetContextCreate(CurrentMemoryContext, "pgmarket rotate",
									   ALLOCSET_SMALL_SIZES);
		for (i = 0; i < n; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(rowcxt);
			HeapTuple	tup = batch_rows->vals[i];
			TupleDesc	desc = batch_rows->tupdesc;
			bool		isnull;
			pg_uuid_t  *key_id = DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull));
			pg_uuid_t  *user_id = DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull));
			char	   *provider = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
			int32		version = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
			bytea	   *nonce = DatumGetByteaPP(SPI_getbinval(tup, desc, 5, &isnull));
			bytea	   *ct = DatumGetByteaPP(SPI_getbinval(tup, desc, 6, &isnull));
			text	   *secret;
			bytea	   *new_nonce;
			bytea	   *new_ct;
			Datum		args[4];

			secret = decrypt_secret(version, key_id, user_id, provider, nonce, ct);
			new_ct = encrypt_secret(newest, key_id, user_id, provider,
									VARDATA(secret), VARSIZE(secret) - VARHDRSZ,
									&new_nonce);
			sodium_memzero(VARDATA(secret), VARSIZE(secret) - VARHDRSZ);

			args[0] = UUIDPGetDatum(key_id);
			args[1] = Int32GetDatum(newest);
			args[2] = PointerGetDatum(new_nonce);
			args[3] = PointerGetDatum(new_ct);
			pgm_exec(plan_rekey, args, NULL, false);
			if (SPI_processed != 1)
				elog(ERROR, "provider key row vanished during rotation");

			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);		/* wipes the plaintext too */
		}
		MemoryContextDelete(rowcxt);
	}

	SPI_finish();
	PG_RETURN_INT64((int64) n);
}
