/*-------------------------------------------------------------------------
 *
 * keyring.c
 *	  The floor of every secret pgmarket keeps: the master key file, the
 *	  subkeys derived from it, the vault's sealing key pairs, buffers that
 *	  are wiped when they go, and random ids.  Knows nothing of the features
 *	  that use it (vault.c, apikeys.c, audit, sealed.c, health.c).
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
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#define VAULT_MAX_KEYS			100
#define VAULT_MAX_FILE_BYTES	65536
#define VAULT_KEY_BYTES			crypto_kdf_KEYBYTES
#define BOX_SUBKEY_ID			1

typedef struct VaultKey
{
	int32		version;
	unsigned char key[VAULT_KEY_BYTES];
	/* the sealing key pair of this version, derived once at load */
	unsigned char box_pk[crypto_box_PUBLICKEYBYTES];
	unsigned char box_sk[crypto_box_SECRETKEYBYTES];
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

/* A new transaction checks the file again (pgmarket.c's callback). */
void
pgm_keyring_xact_end(void)
{
	vault_checked = false;
}

/*
 * Define pgmarket.master_key_file; called from _PG_init before the prefix is
 * reserved, so that a value set in the configuration file is picked up.
 */
void
pgm_keyring_init(void)
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

/*
 * The vault's sealing key pair of a master key version: X25519 keys from a
 * seed derived from that version, computed when the file is loaded (a
 * scalar multiplication each) rather than at every sealed call.
 */
static void
derive_box_keypair(VaultKey *k)
{
	unsigned char seed[PGM_SUBKEY_BYTES];

	StaticAssertStmt(crypto_box_SEEDBYTES == PGM_SUBKEY_BYTES,
					 "box seed size");
	if (crypto_kdf_derive_from_key(seed, sizeof(seed), BOX_SUBKEY_ID,
								   PGM_KDF_CONTEXT_BOX, k->key) != 0)
		elog(ERROR, "crypto_kdf_derive_from_key failed");
	crypto_box_seed_keypair(k->box_pk, k->box_sk, seed);
	sodium_memzero(seed, sizeof(seed));
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
	for (i = 0; i < keys->nkeys; i++)
		derive_box_keypair(&keys->keys[i]);
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
pgm_keyring_newest_version(void)
{
	vault_ensure();
	return vault_keys->keys[vault_keys->nkeys - 1].version;
}

/*
 * The loaded key of a version, or NULL when the file does not list it.
 * Raises PM010 when no key is loaded.
 *
 * A version this transaction has not seen may have been added to the file
 * since the transaction looked at it (a rotation that committed while a
 * reader's transaction was open, without a reload): before answering that
 * the version is missing, look at the file once more.
 */
static const VaultKey *
vault_key(int32 version)
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
	return k;
}

/*
 * Derive the PGM_SUBKEY_BYTES subkey of a master key version for one purpose
 * (an 8-byte context from pgmarket.h).  Raises PM010 when no key is loaded;
 * returns false when that version is not in the file.  The caller wipes out.
 */
bool
pgm_keyring_subkey(int32 version, const char *context, uint64 subkey_id,
				   unsigned char *out)
{
	const VaultKey *k = vault_key(version);

	if (k == NULL)
		return false;
	if (crypto_kdf_derive_from_key(out, PGM_SUBKEY_BYTES, subkey_id, context,
								   k->key) != 0)
		elog(ERROR, "crypto_kdf_derive_from_key failed");
	return true;
}

/*
 * A keyed BLAKE2b hash (out_len bytes) of data under the subkey of a master
 * key version for one purpose: how platform keys and reset tokens are
 * stored.  false when that version is not in the file (PM010 when no key
 * is loaded); the subkey is wiped.
 */
bool
pgm_keyring_keyed_hash(int32 version, const char *context, uint64 subkey_id,
					   const char *data, size_t len,
					   unsigned char *out, size_t out_len)
{
	unsigned char subkey[PGM_SUBKEY_BYTES];

	if (!pgm_keyring_subkey(version, context, subkey_id, subkey))
		return false;
	crypto_generichash(out, out_len, (const unsigned char *) data, len,
					   subkey, sizeof(subkey));
	sodium_memzero(subkey, sizeof(subkey));
	return true;
}

/* ----------------------------------------------------------------
 * The sealing key pairs
 * ----------------------------------------------------------------
 */

/*
 * The sealing key pair of a master key version (see derive_box_keypair);
 * false when the version is not in the file.  The caller wipes sk.
 */
bool
pgm_keyring_box_keypair(int32 version, unsigned char *pk, unsigned char *sk)
{
	const VaultKey *k = vault_key(version);

	if (k == NULL)
		return false;
	memcpy(pk, k->box_pk, sizeof(k->box_pk));
	memcpy(sk, k->box_sk, sizeof(k->box_sk));
	return true;
}

/*
 * vault_public_key() RETURNS bytea: the 32-byte X25519 public key of the
 * newest master key version, for crypto_box_seal.
 */

/*
 * Open a secret sealed (crypto_box_seal) to the public key of any listed
 * master key version, newest first, into out (sealed_len -
 * crypto_box_SEALBYTES bytes, which the caller wipes).  Raises PM010 when
 * no key is loaded; false when no key pair opens it.  For sealed.c.
 */
bool
pgm_keyring_open_sealed(const unsigned char *sealed, size_t sealed_len,
						unsigned char *out)
{
	int			i;

	(void) pgm_keyring_newest_version();	/* PM010 if no key is loaded */
	if (sealed_len < crypto_box_SEALBYTES)
		return false;
	for (i = vault_keys->nkeys - 1; i >= 0; i--)
	{
		const VaultKey *k = &vault_keys->keys[i];

		if (crypto_box_seal_open(out, sealed, sealed_len, k->box_pk,
								 k->box_sk) == 0)
			return true;
	}
	return false;
}

/* For health(): is pgmarket.master_key_file set at all? */
bool
pgm_keyring_configured(void)
{
	return master_key_file != NULL && master_key_file[0] != '\0';
}

/* For health(): how many key versions are loaded; PM010 when none can be. */
int
pgm_keyring_versions(void)
{
	vault_ensure();
	return vault_keys->nkeys;
}
