/*-------------------------------------------------------------------------
 *
 * passwords.c
 *	  Password hashes: making them (hash_password), checking them
 *	  (verify_password), vetting a hash before it is stored, and the
 *	  verification of a login, for accounts.c.
 *
 * Passwords are stored as Argon2id strings (libsodium crypto_pwhash_str with
 * its "interactive" limits).  The hashes that services being migrated keep
 * are verified too: PBKDF2-HMAC-SHA256 as Django (pbkdf2_sha256$...),
 * Werkzeug (pbkdf2:sha256:...) and passlib ($pbkdf2-sha256$...) write it,
 * bcrypt ($2a$, $2b$, $2y$, through the system's libcrypt: crypt_rn), and
 * Argon2 hashes of other costs; authenticate replaces such a hash with a
 * standard Argon2id one at the first successful login (pgm_password_login
 * says when).  Stored hashes are parsed strictly and their cost is bounded
 * (PGM_MAX_*): a hash beyond the bounds is refused when it is stored and
 * never run.
 *
 * A login costs the same work on every path (pgm_password_login): one
 * standard Argon2id verification (the user's hash, or a dummy one), plus
 * the user's own hash when it is of another kind.
 *
 * For other files (pgmarket.h): pgm_password_arg() takes a password
 * argument, pgm_argon2id_hash() makes a new hash, pgm_check_hash_to_store()
 * vets a hash before it is stored, pgm_password_login() is the
 * verification of authenticate, and pgm_hash_costs_at_least_standard() is
 * the floor of the sealed verify_password.
 *
 * Every copy of a plaintext password made here is wiped with sodium_memzero
 * as soon as it has been used, and by a memory context callback when an
 * error unwinds the call.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <crypt.h>
#include <sodium.h>

#include "miscadmin.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(pgm_hash_password);
PG_FUNCTION_INFO_V1(pgm_verify_password);

/* A password is 1 to 1024 bytes. */
#define PGM_MAX_PASSWORD_LEN	1024

/*
 * What a stored hash may ask for.  A hash beyond these is refused when it is
 * stored and never run: its cost would be the attacker's choice.
 */
#define PGM_MAX_PBKDF2_ROUNDS	2000000
#define PGM_MAX_ARGON2_KIB		262144	/* 256 MiB */
#define PGM_MAX_ARGON2_PASSES	10
#define PGM_MAX_ARGON2_LANES	16
#define PGM_MAX_BCRYPT_COST		14
#define PGM_MAX_HASH_LEN		1024
#define PGM_MAX_PBKDF2_SALT_LEN 128

/* PBKDF2 rounds between two checks for query cancel and statement_timeout */
#define PGM_PBKDF2_ROUNDS_PER_CHECK 1024

/* The parameters of the Argon2id hashes pgmarket makes (libsodium's interactive limits). */
#define PGM_ARGON2_STD_KIB		(crypto_pwhash_MEMLIMIT_INTERACTIVE / 1024)
#define PGM_ARGON2_STD_PASSES	crypto_pwhash_OPSLIMIT_INTERACTIVE

/*
 * An Argon2id hash of a random password that nobody knows, made with the
 * same limits as real ones: authenticate verifies against it whenever it has
 * no standard Argon2id hash of the user to verify, so that every login costs
 * the same Argon2id verification.
 */
static const char dummy_hash[crypto_pwhash_STRBYTES] =
"$argon2id$v=19$m=65536,t=2,p=1$1rfEF1iI+VT2BnSTLKLWRg$VrjGm8eWkghZYQKAI/g13vBy5zYMUyS/c492sV6qVyM";

/*
 * A copy of a text argument as a C string, in a buffer that is wiped when
 * its memory context goes (an error included); the caller also wipes it as
 * soon as it is done.  1 to PGM_MAX_PASSWORD_LEN bytes, else 22023.
 */
char *
pgm_password_arg(FunctionCallInfo fcinfo, int argno, size_t *len)
{
	text	   *t = PG_GETARG_TEXT_PP(argno);
	char	   *s;

	*len = VARSIZE_ANY_EXHDR(t);
	if (*len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password must not be empty")));
	if (*len > PGM_MAX_PASSWORD_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password of %zu bytes is longer than %d bytes",
						*len, PGM_MAX_PASSWORD_LEN)));
	s = pgm_secret_alloc(*len + 1);
	memcpy(s, VARDATA_ANY(t), *len);
	s[*len] = '\0';
	return s;
}

/* A new Argon2id hash string at pgmarket's standard cost. */
char *
pgm_argon2id_hash(const char *password, size_t len)
{
	char	   *out = palloc(crypto_pwhash_STRBYTES);

	if (crypto_pwhash_str(out, password, len,
						  crypto_pwhash_OPSLIMIT_INTERACTIVE,
						  crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while hashing a password")));
	return out;
}

/*
 * PBKDF2-HMAC-SHA256 (RFC 8018), as Django's pbkdf2_sha256 hasher uses it.
 * The keyed HMAC state is computed once and copied for every round.  The
 * rounds check for query cancel and statement_timeout; the HMAC states live
 * in buffers that are wiped even when that unwinds the call.
 */
static void
pbkdf2_sha256(const char *password, size_t plen, const unsigned char *salt,
			  size_t slen, long rounds, unsigned char *out, size_t outlen)
{
	typedef struct Pbkdf2State
	{
		crypto_auth_hmacsha256_state keyed;
		crypto_auth_hmacsha256_state st;
		unsigned char u[crypto_auth_hmacsha256_BYTES];
		unsigned char t[crypto_auth_hmacsha256_BYTES];
	} Pbkdf2State;
	Pbkdf2State *s = pgm_secret_alloc(sizeof(Pbkdf2State));
	uint32		block;
	size_t		done = 0;

	crypto_auth_hmacsha256_init(&s->keyed, (const unsigned char *) password, plen);
	for (block = 1; done < outlen; block++)
	{
		unsigned char be[4] = {block >> 24, block >> 16, block >> 8, block};
		long		r;
		size_t		n;
		int			i;

		s->st = s->keyed;
		crypto_auth_hmacsha256_update(&s->st, salt, slen);
		crypto_auth_hmacsha256_update(&s->st, be, 4);
		crypto_auth_hmacsha256_final(&s->st, s->u);
		memcpy(s->t, s->u, sizeof(s->t));
		for (r = 1; r < rounds; r++)
		{
			if (r % PGM_PBKDF2_ROUNDS_PER_CHECK == 0)
				CHECK_FOR_INTERRUPTS();
			s->st = s->keyed;
			crypto_auth_hmacsha256_update(&s->st, s->u, sizeof(s->u));
			crypto_auth_hmacsha256_final(&s->st, s->u);
			for (i = 0; i < (int) sizeof(s->t); i++)
				s->t[i] ^= s->u[i];
		}
		n = Min(outlen - done, sizeof(s->t));
		memcpy(out + done, s->t, n);
		done += n;
	}
	sodium_memzero(s, sizeof(Pbkdf2State));
}

/*
 * The stored password hash formats, parsed.  Parsing is strict: the exact
 * syntax, decimal parameters without sign, blanks or leading zeros, and
 * base64 that decodes to sane lengths.
 */
typedef enum PgmHashKind
{
	PGM_HASH_ARGON2ID,
	PGM_HASH_ARGON2I,
	PGM_HASH_PBKDF2_SHA256,		/* Django, Werkzeug and passlib alike */
	PGM_HASH_BCRYPT
} PgmHashKind;

typedef enum PgmHashCheck
{
	PGM_HASH_VALID,
	PGM_HASH_MALFORMED,
	PGM_HASH_TOO_COSTLY			/* well-formed, but beyond the bounds */
} PgmHashCheck;

typedef struct PgmHash
{
	PgmHashKind kind;
	uint64		rounds;			/* PBKDF2; bcrypt: the cost (log2 rounds) */
	const unsigned char *salt;	/* PBKDF2: the salt's bytes */
	size_t		salt_len;
	unsigned char salt_buf[PGM_MAX_PBKDF2_SALT_LEN];	/* decoded salts */
	unsigned char digest[32];	/* PBKDF2: the derived key */
	size_t		digest_len;
	uint64		kib;			/* Argon2: m, t, p */
	uint64		passes;
	uint64		lanes;
} PgmHash;

/*
 * A decimal number at *p: digits only, no leading zero.  Values past
 * 9,999,999,999 read as that (they are beyond every bound anyway).  Advances
 * *p; false when there is no well-formed number.
 */
static bool
parse_decimal(const char **p, uint64 *value)
{
	const char *s = *p;
	uint64		v = 0;

	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
		return false;
	for (; *s >= '0' && *s <= '9'; s++)
		v = Min(v * 10 + (*s - '0'), UINT64CONST(9999999999));
	*p = s;
	*value = v;
	return true;
}

/* Does *p start with word?  If so, step past it. */
static bool
skip(const char **p, const char *word)
{
	size_t		n = strlen(word);

	if (strncmp(*p, word, n) != 0)
		return false;
	*p += n;
	return true;
}

/* The length of a run of base64 characters (standard alphabet, no '='). */
static size_t
b64_span(const char *s)
{
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
}

/* Decode n characters of base64 into out[0..max); false if malformed. */
static bool
b64_decode(const char *s, size_t n, int variant, unsigned char *out,
		   size_t max, size_t *len)
{
	return sodium_base642bin(out, max, s, n, NULL, len, NULL, variant) == 0;
}

/* "$argon2id$v=19$m=KIB,t=PASSES,p=LANES$SALT$HASH" (or $argon2i$) */
static PgmHashCheck
parse_argon2(const char *hash, PgmHash *h)
{
	const char *p = hash;
	unsigned char buf[64];
	size_t		n;
	size_t		len;
	uint64		min_passes;

	if (skip(&p, "$argon2id$"))
		h->kind = PGM_HASH_ARGON2ID;
	else if (skip(&p, "$argon2i$"))
		h->kind = PGM_HASH_ARGON2I;
	else
		return PGM_HASH_MALFORMED;
	if (strlen(hash) >= crypto_pwhash_STRBYTES)
		return PGM_HASH_MALFORMED;
	if (!skip(&p, "v=19$m=") || !parse_decimal(&p, &h->kib) ||
		!skip(&p, ",t=") || !parse_decimal(&p, &h->passes) ||
		!skip(&p, ",p=") || !parse_decimal(&p, &h->lanes) ||
		!skip(&p, "$"))
		return PGM_HASH_MALFORMED;
	/* salt: 8 to 64 bytes; hash: 16 to 64 bytes */
	n = b64_span(p);
	if (p[n] != '$' ||
		!b64_decode(p, n, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
					buf, sizeof(buf), &len) || len < 8)
		return PGM_HASH_MALFORMED;
	p += n + 1;
	n = b64_span(p);
	if (p[n] != '\0' ||
		!b64_decode(p, n, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
					buf, sizeof(buf), &len) || len < crypto_pwhash_BYTES_MIN)
		return PGM_HASH_MALFORMED;
	/* the least that Argon2 (as libsodium runs it) accepts */
	min_passes = h->kind == PGM_HASH_ARGON2I ? 3 : 1;
	if (h->lanes < 1 || h->passes < min_passes || h->kib < 8 * h->lanes)
		return PGM_HASH_MALFORMED;
	if (h->kib > PGM_MAX_ARGON2_KIB || h->passes > PGM_MAX_ARGON2_PASSES ||
		h->lanes > PGM_MAX_ARGON2_LANES)
		return PGM_HASH_TOO_COSTLY;
	return PGM_HASH_VALID;
}

/* A PBKDF2 salt given as text: 1 to 128 printable ASCII characters but '$' */
static bool
parse_text_salt(const char **p, PgmHash *h)
{
	const char *q;

	for (q = *p; *q > 0x20 && *q < 0x7f && *q != '$'; q++)
		;
	if (*q != '$' || q == *p || q - *p > PGM_MAX_PBKDF2_SALT_LEN)
		return false;
	h->salt = (const unsigned char *) *p;
	h->salt_len = q - *p;
	*p = q + 1;
	return true;
}

/*
 * The derived key of "pbkdf2_sha256$ROUNDS$SALT$BASE64" (Django, passlib's
 * django_pbkdf2_sha256), after a text salt: padded base64 of 16 to 32
 * bytes.
 */
static bool
parse_django_digest(const char *p, PgmHash *h)
{
	size_t		n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");

	return p[n] == '\0' &&
		b64_decode(p, n, sodium_base64_VARIANT_ORIGINAL, h->digest,
				   sizeof(h->digest), &h->digest_len) &&
		h->digest_len >= 16;
}

/*
 * The derived key of "pbkdf2:sha256:ROUNDS$SALT$HEX" (Werkzeug's
 * generate_password_hash), after a text salt: lower-case hex, 32 bytes
 * (SHA-256's length, which Werkzeug always uses; a shorter key would be a
 * prefix of the right one).  The rounds must be written out (Werkzeug
 * always does).
 */
static bool
parse_werkzeug_digest(const char *p, PgmHash *h)
{
	size_t		n = strspn(p, "0123456789abcdef");

	return p[n] == '\0' && n == 64 &&
		sodium_hex2bin(h->digest, sizeof(h->digest), p, n, NULL,
					   &h->digest_len, NULL) == 0;
}

/*
 * passlib's adapted base64 (ab64): the standard alphabet with '.' for '+',
 * no padding.  Decodes n characters at s into out[0..max).
 */
static bool
ab64_decode(const char *s, size_t n, unsigned char *out, size_t max,
			size_t *len)
{
	char		buf[PGM_MAX_HASH_LEN + 1];
	size_t		i;

	if (n > PGM_MAX_HASH_LEN)
		return false;
	for (i = 0; i < n; i++)
		buf[i] = s[i] == '.' ? '+' : s[i];
	return b64_decode(buf, n, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
					  out, max, len);
}

/* The length of a run of ab64 characters */
static size_t
ab64_span(const char *s)
{
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./");
}

/*
 * The salt of "$pbkdf2-sha256$ROUNDS$SALT$HASH" (passlib's pbkdf2_sha256):
 * 1 to 128 bytes in ab64, then '$'.
 */
static bool
parse_ab64_salt(const char **p, PgmHash *h)
{
	size_t		n = ab64_span(*p);

	if ((*p)[n] != '$' || n == 0 ||
		!ab64_decode(*p, n, h->salt_buf, sizeof(h->salt_buf), &h->salt_len) ||
		h->salt_len < 1)
		return false;
	h->salt = h->salt_buf;
	*p += n + 1;
	return true;
}

/* Its derived key: 32 bytes in ab64. */
static bool
parse_passlib_digest(const char *p, PgmHash *h)
{
	size_t		n = ab64_span(p);

	return p[n] == '\0' &&
		ab64_decode(p, n, h->digest, sizeof(h->digest), &h->digest_len) &&
		h->digest_len == 32;
}

/*
 * A PBKDF2-SHA256 hash in one of the dialects above: the dialect's prefix,
 * the rounds (at least 1) and "$", then the salt and the derived key as
 * the dialect writes them; too costly past PGM_MAX_PBKDF2_ROUNDS.
 */
static PgmHashCheck
parse_pbkdf2(const char *hash, const char *prefix,
			 bool (*salt) (const char **p, PgmHash *h),
			 bool (*digest) (const char *p, PgmHash *h), PgmHash *h)
{
	const char *p = hash;

	h->kind = PGM_HASH_PBKDF2_SHA256;
	if (!skip(&p, prefix) || !parse_decimal(&p, &h->rounds) ||
		h->rounds < 1 || !skip(&p, "$") || !salt(&p, h) || !digest(p, h))
		return PGM_HASH_MALFORMED;
	if (h->rounds > PGM_MAX_PBKDF2_ROUNDS)
		return PGM_HASH_TOO_COSTLY;
	return PGM_HASH_VALID;
}

/* bcrypt reads no more of a password than this */
#define PGM_BCRYPT_MAX_PASSWORD 72

/* bcrypt's base64 alphabet */
static const char bcrypt_b64[] =
"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/*
 * "$2b$CC$" + 22 characters of salt + 31 of hash (also $2a$ and $2y$): 60
 * characters in bcrypt's alphabet, the cost CC two digits from 04 to 31.
 * The last character of the salt and of the hash carries unused bits that
 * must be zero (else libcrypt would verify against another string).
 */
static PgmHashCheck
parse_bcrypt(const char *hash, PgmHash *h)
{
	const char *p = hash;
	int			last;

	h->kind = PGM_HASH_BCRYPT;
	if (!(skip(&p, "$2a$") || skip(&p, "$2b$") || skip(&p, "$2y$")))
		return PGM_HASH_MALFORMED;
	if (strlen(hash) != 60 || p[0] < '0' || p[0] > '3' ||
		p[1] < '0' || p[1] > '9' || p[2] != '$')
		return PGM_HASH_MALFORMED;
	h->rounds = (p[0] - '0') * 10 + (p[1] - '0');
	if (h->rounds < 4 || h->rounds > 31)
		return PGM_HASH_MALFORMED;
	p += 3;
	if (strspn(p, bcrypt_b64) != 53)
		return PGM_HASH_MALFORMED;
	last = strchr(bcrypt_b64, p[21]) - bcrypt_b64;
	if (last % 16 != 0)
		return PGM_HASH_MALFORMED;
	last = strchr(bcrypt_b64, p[52]) - bcrypt_b64;
	if (last % 4 != 0)
		return PGM_HASH_MALFORMED;
	if (h->rounds > PGM_MAX_BCRYPT_COST)
		return PGM_HASH_TOO_COSTLY;
	return PGM_HASH_VALID;
}

/* Parse a stored hash of any format pgmarket knows. */
static PgmHashCheck
parse_hash(const char *hash, PgmHash *h)
{
	memset(h, 0, sizeof(PgmHash));
	if (strlen(hash) > PGM_MAX_HASH_LEN)
		return PGM_HASH_MALFORMED;
	if (strncmp(hash, "$argon2", 7) == 0)
		return parse_argon2(hash, h);
	if (strncmp(hash, "$2", 2) == 0)
		return parse_bcrypt(hash, h);
	if (strncmp(hash, "$pbkdf2-sha256$", 15) == 0)
		return parse_pbkdf2(hash, "$pbkdf2-sha256$", parse_ab64_salt,
							parse_passlib_digest, h);
	if (strncmp(hash, "pbkdf2:", 7) == 0)
		return parse_pbkdf2(hash, "pbkdf2:sha256:", parse_text_salt,
							parse_werkzeug_digest, h);
	return parse_pbkdf2(hash, "pbkdf2_sha256$", parse_text_salt,
						parse_django_digest, h);
}

/* Is this an Argon2id hash at exactly the cost pgmarket itself uses? */
static bool
is_standard_argon2id(const PgmHash *h)
{
	return h->kind == PGM_HASH_ARGON2ID && h->kib == PGM_ARGON2_STD_KIB &&
		h->passes == PGM_ARGON2_STD_PASSES && h->lanes == 1;
}

/*
 * Does a hash, within the bounds, cost at least what pgmarket's own cost
 * (Argon2id at the standard memory and passes) or Django's default PBKDF2
 * (600,000 rounds, in any of its three spellings), or bcrypt at cost 12?
 * The sealed verify_password tries a password against
 * no cheaper hash, so that a blob copied from a log is no guessing oracle.
 */
bool
pgm_hash_costs_at_least_standard(const char *hash)
{
	PgmHash		h;

	if (parse_hash(hash, &h) != PGM_HASH_VALID)
		return false;
	if (h.kind == PGM_HASH_ARGON2ID)
		return h.kib >= PGM_ARGON2_STD_KIB && h.passes >= PGM_ARGON2_STD_PASSES;
	if (h.kind == PGM_HASH_BCRYPT)
		return h.rounds >= 12;
	return h.kind == PGM_HASH_PBKDF2_SHA256 && h.rounds >= 600000;
}

/*
 * A bcrypt hash, through libcrypt's crypt_rn: the string it computes from
 * the password and the stored setting, compared in constant time with the
 * stored one.  The password must be a C string (bcrypt reads it up to its
 * NUL, and only its first 72 bytes); its length is the caller's check.
 * The crypt_data, which holds the key schedule, is wiped.
 */
static bool
verify_bcrypt(const char *password, size_t len, const char *hash)
{
	struct crypt_data *data = pgm_secret_alloc(sizeof(struct crypt_data));
	const char *out;
	bool		ok;

	if (strlen(password) != len)
		return false;
	out = crypt_rn(password, hash, data, sizeof(struct crypt_data));
	ok = out != NULL && strlen(out) == 60 &&
		sodium_memcmp(out, hash, 60) == 0;
	sodium_memzero(data, sizeof(struct crypt_data));
	return ok;
}

/* Verify a password against a parsed, valid hash: true on a match. */
static bool
verify_parsed(const char *password, size_t len, const char *hash,
			  const PgmHash *h)
{
	unsigned char *actual;
	bool		ok;

	if (h->kind == PGM_HASH_BCRYPT)
		return verify_bcrypt(password, len, hash);
	if (h->kind != PGM_HASH_PBKDF2_SHA256)
		return crypto_pwhash_str_verify(hash, password, len) == 0;
	actual = pgm_secret_alloc(sizeof(h->digest));
	pbkdf2_sha256(password, len, h->salt,
				  h->salt_len, (long) h->rounds, actual, h->digest_len);
	ok = sodium_memcmp(actual, h->digest, h->digest_len) == 0;
	sodium_memzero(actual, sizeof(h->digest));
	return ok;
}

/* What check_password answers */
#define PGM_PW_MATCH		1
#define PGM_PW_NO_MATCH		0
#define PGM_PW_MALFORMED	(-1)	/* not a hash pgmarket knows */
#define PGM_PW_TOO_COSTLY	(-2)	/* beyond the bounds: not run at all */

/*
 * Verify a password against a stored hash of any known format:
 * PGM_PW_MATCH, PGM_PW_NO_MATCH, PGM_PW_MALFORMED or PGM_PW_TOO_COSTLY.
 */
static int
check_password(const char *password, size_t len, const char *hash)
{
	PgmHash		h;

	switch (parse_hash(hash, &h))
	{
		case PGM_HASH_MALFORMED:
			return PGM_PW_MALFORMED;
		case PGM_HASH_TOO_COSTLY:
			return PGM_PW_TOO_COSTLY;
		case PGM_HASH_VALID:
			break;
	}
	return verify_parsed(password, len, hash, &h) ? PGM_PW_MATCH : PGM_PW_NO_MATCH;
}

/*
 * A password hash given to be stored (import_user, create_user_hashed): 22023 unless it is in a
 * known format and within the bounds.  Never echoes the hash; what names
 * the value in the message (e.g. "password_hash of user <id>").
 */
void
pgm_check_hash_to_store(const char *hash, const char *what)
{
	PgmHash		h;

	switch (parse_hash(hash, &h))
	{
		case PGM_HASH_VALID:
			if (h.kind == PGM_HASH_ARGON2I)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s is an Argon2i hash, which pgmarket verifies but does not store",
								what)));
			return;
		case PGM_HASH_MALFORMED:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s is not a password hash in a format pgmarket knows", what),
					 errdetail("Accepted: $argon2id$v=19$m=KIB,t=PASSES,p=LANES$SALT$HASH, pbkdf2_sha256$ROUNDS$SALT$BASE64, pbkdf2:sha256:ROUNDS$SALT$HEX, $pbkdf2-sha256$ROUNDS$SALT$HASH and bcrypt $2a$, $2b$ or $2y$, parameters in plain decimal.")));
			break;
		case PGM_HASH_TOO_COSTLY:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s asks for more work than pgmarket allows", what),
					 errdetail("The limits are %d PBKDF2 iterations, a bcrypt cost of %d, and for Argon2 %d KiB of memory, %d passes and %d lanes.",
							   PGM_MAX_PBKDF2_ROUNDS, PGM_MAX_BCRYPT_COST,
							   PGM_MAX_ARGON2_KIB, PGM_MAX_ARGON2_PASSES,
							   PGM_MAX_ARGON2_LANES)));
			break;
	}
}

/*
 * hash_password(text) RETURNS text: an Argon2id hash string.
 */
Datum
pgm_hash_password(PG_FUNCTION_ARGS)
{
	size_t		len;
	char	   *password;
	char	   *hash;

	pgm_require_arg(fcinfo, 0, "password");
	password = pgm_password_arg(fcinfo, 0, &len);
	hash = pgm_argon2id_hash(password, len);
	sodium_memzero(password, len);
	PG_RETURN_TEXT_P(cstring_to_text(hash));
}

/*
 * verify_password(password, hash) RETURNS boolean.  A hash in no known
 * format is an error (22023), not a quiet false; a hash beyond the bounds
 * is false at once, without running it.
 */
Datum
pgm_verify_password(PG_FUNCTION_ARGS)
{
	size_t		len;
	char	   *password;
	int			ok;

	pgm_require_arg(fcinfo, 0, "password");
	pgm_require_arg(fcinfo, 1, "hash");
	password = pgm_password_arg(fcinfo, 0, &len);
	ok = check_password(password, len, text_to_cstring(PG_GETARG_TEXT_PP(1)));
	sodium_memzero(password, len);
	if (ok == PGM_PW_MALFORMED)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hash is not a password hash in a format pgmarket knows"),
				 errdetail("Accepted: Argon2id and Argon2i, pbkdf2_sha256$ (Django), pbkdf2:sha256: (Werkzeug), $pbkdf2-sha256$ (passlib) and bcrypt $2a$, $2b$, $2y$.")));
	PG_RETURN_BOOL(ok == PGM_PW_MATCH);
}

/* ----------------------------------------------------------------
 * Logins
 * ----------------------------------------------------------------
 */

/*
 * The password check of authenticate: true when the account is active and
 * its stored hash (NULL: none) is valid and matches the password.  On a
 * match with a hash that is not a standard Argon2id one, *rehash is a new
 * standard hash to store in its place (else NULL), except for a bcrypt
 * hash and a password longer than bcrypt's 72 bytes, which bcrypt checked
 * only in part: that hash stays.
 *
 * Every path costs one Argon2id verification at the standard cost: the
 * user's own hash when it is one, else the dummy hash.  A hash of another
 * kind or cost is verified on top of that.  An unknown login (the caller
 * passes no hash), a deactivated user, a user without a password and a
 * stored hash that is malformed or beyond the bounds cost the dummy
 * verification alone.
 */
bool
pgm_password_login(const char *password, size_t len, const char *stored,
				   bool active, char **rehash)
{
	PgmHash		h = {0};
	bool		usable;
	bool		ok;

	*rehash = NULL;
	usable = active && stored != NULL &&
		parse_hash(stored, &h) == PGM_HASH_VALID;
	if (usable && is_standard_argon2id(&h))
		ok = crypto_pwhash_str_verify(stored, password, len) == 0;
	else
	{
		/* only the time this takes matters, not its result */
		volatile int dummy = crypto_pwhash_str_verify(dummy_hash, password, len);

		(void) dummy;
		ok = usable && verify_parsed(password, len, stored, &h);
	}
	/*
	 * bcrypt checks only the first 72 bytes: a longer password that matches
	 * may not be the one the hash was made of, so an Argon2id of it could
	 * lock the owner out.  Such a login keeps the bcrypt hash.
	 */
	if (ok && !is_standard_argon2id(&h) &&
		!(h.kind == PGM_HASH_BCRYPT && len > PGM_BCRYPT_MAX_PASSWORD))
		*rehash = pgm_argon2id_hash(password, len);
	return ok;
}
