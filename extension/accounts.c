/*-------------------------------------------------------------------------
 *
 * accounts.c
 *	  Users and passwords: create_user, authenticate, deactivate_user,
 *	  hash_password, verify_password.
 *
 * Passwords are stored as Argon2id strings (libsodium crypto_pwhash_str with
 * its "interactive" limits).  Hashes in Django's pbkdf2_sha256 format, which
 * services being migrated keep, and Argon2 hashes of other costs are
 * verified too, and authenticate replaces such a hash with a standard
 * Argon2id one at the first successful login.  Stored hashes are parsed
 * strictly and their cost is bounded (PGM_MAX_*): a hash beyond the bounds
 * is refused when it is stored and never run.
 *
 * authenticate costs the same work on every path: one standard Argon2id
 * verification (the user's hash, or a dummy one), plus the user's own hash
 * when it is of another kind.
 *
 * Emails are lower-cased and put in Unicode NFC wherever they are stored or
 * looked up, so that one address has one spelling (rules below).
 *
 * For other files (static until one needs them): check_password() verifies a
 * password against a stored hash, argon2id_hash() makes a new hash,
 * check_hash_to_store() vets a hash before it is stored, and
 * authenticate_login() is authenticate for a password already in hand.
 *
 * Every copy of a plaintext password made here is wiped with sodium_memzero
 * as soon as it has been used, and by a memory context callback when an
 * error unwinds the call.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include <sodium.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/unicode_norm.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"

PG_FUNCTION_INFO_V1(pgm_hash_password);
PG_FUNCTION_INFO_V1(pgm_verify_password);
PG_FUNCTION_INFO_V1(pgm_create_user);
PG_FUNCTION_INFO_V1(pgm_authenticate);
PG_FUNCTION_INFO_V1(pgm_deactivate_user);
PG_FUNCTION_INFO_V1(pgm_import_user);

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

/* ----------------------------------------------------------------
 * Passwords
 * ----------------------------------------------------------------
 */

/*
 * A copy of a text argument as a C string, in a buffer that is wiped when
 * its memory context goes (an error included); the caller also wipes it as
 * soon as it is done.  1 to PGM_MAX_PASSWORD_LEN bytes, else 22023.
 */
static char *
password_arg(FunctionCallInfo fcinfo, int argno, size_t *len)
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
static char *
argon2id_hash(const char *password, size_t len)
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
	PGM_HASH_PBKDF2_SHA256
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
	uint64		rounds;			/* PBKDF2 */
	const char *salt;			/* PBKDF2: the salt as the text holds it */
	size_t		salt_len;
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

/* "pbkdf2_sha256$ROUNDS$SALT$BASE64" (Django, passlib's django_pbkdf2_sha256) */
static PgmHashCheck
parse_pbkdf2(const char *hash, PgmHash *h)
{
	const char *p = hash;
	const char *q;
	size_t		n;

	h->kind = PGM_HASH_PBKDF2_SHA256;
	if (!skip(&p, "pbkdf2_sha256$") || !parse_decimal(&p, &h->rounds) ||
		h->rounds < 1 || !skip(&p, "$"))
		return PGM_HASH_MALFORMED;
	/* the salt: 1 to 128 printable ASCII characters other than '$' */
	for (q = p; *q > 0x20 && *q < 0x7f && *q != '$'; q++)
		;
	if (*q != '$' || q == p || q - p > PGM_MAX_PBKDF2_SALT_LEN)
		return PGM_HASH_MALFORMED;
	h->salt = p;
	h->salt_len = q - p;
	/* the derived key: padded base64 of 16 to 32 bytes */
	p = q + 1;
	n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
	if (p[n] != '\0' ||
		!b64_decode(p, n, sodium_base64_VARIANT_ORIGINAL, h->digest,
					sizeof(h->digest), &h->digest_len) ||
		h->digest_len < 16)
		return PGM_HASH_MALFORMED;
	if (h->rounds > PGM_MAX_PBKDF2_ROUNDS)
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
	if (hash[0] == '$')
		return parse_argon2(hash, h);
	return parse_pbkdf2(hash, h);
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
 * (600,000 rounds)?  The sealed verify_password tries a password against
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
	return h.kind == PGM_HASH_PBKDF2_SHA256 && h.rounds >= 600000;
}

/* Verify a password against a parsed, valid hash: true on a match. */
static bool
verify_parsed(const char *password, size_t len, const char *hash,
			  const PgmHash *h)
{
	unsigned char *actual;
	bool		ok;

	if (h->kind != PGM_HASH_PBKDF2_SHA256)
		return crypto_pwhash_str_verify(hash, password, len) == 0;
	actual = pgm_secret_alloc(sizeof(h->digest));
	pbkdf2_sha256(password, len, (const unsigned char *) h->salt,
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
 * A password hash given to be stored (import_user): 22023 unless it is in a
 * known format and within the bounds.  Never echoes the hash; what names
 * the value in the message (e.g. "password_hash of user <id>").
 */
static void
check_hash_to_store(const char *hash, const char *what)
{
	PgmHash		h;

	switch (parse_hash(hash, &h))
	{
		case PGM_HASH_VALID:
			if (h.kind == PGM_HASH_ARGON2I)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s is an Argon2i hash, not an Argon2id or pbkdf2_sha256 one",
								what)));
			return;
		case PGM_HASH_MALFORMED:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s is neither an Argon2id nor a pbkdf2_sha256 hash", what),
					 errdetail("Accepted: $argon2id$v=19$m=KIB,t=PASSES,p=LANES$SALT$HASH and pbkdf2_sha256$ROUNDS$SALT$BASE64, parameters in plain decimal.")));
			break;
		case PGM_HASH_TOO_COSTLY:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s asks for more work than pgmarket allows", what),
					 errdetail("The limits are %d PBKDF2 iterations, and for Argon2 %d KiB of memory, %d passes and %d lanes.",
							   PGM_MAX_PBKDF2_ROUNDS, PGM_MAX_ARGON2_KIB,
							   PGM_MAX_ARGON2_PASSES, PGM_MAX_ARGON2_LANES)));
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
	password = password_arg(fcinfo, 0, &len);
	hash = argon2id_hash(password, len);
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
	char	   *hash;
	int			ok;

	pgm_require_arg(fcinfo, 0, "password");
	pgm_require_arg(fcinfo, 1, "hash");
	password = password_arg(fcinfo, 0, &len);
	hash = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ok = check_password(password, len, hash);
	sodium_memzero(password, len);
	if (ok == PGM_PW_MALFORMED)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hash is neither an Argon2id nor a pbkdf2_sha256 password hash")));
	PG_RETURN_BOOL(ok == PGM_PW_MATCH);
}

/* ----------------------------------------------------------------
 * create_user(email, username, password, roles, id)
 * ----------------------------------------------------------------
 */

/*
 * Emails.  What an address may hold (the README says the same):
 *
 *	- ASCII blanks (space, tab, CR, LF) around it are trimmed; it is
 *	  lower-cased and put in Unicode NFC, so that the NFC and the NFD
 *	  spelling of one address are one account.  Non-ASCII needs a UTF8
 *	  database.
 *	- local@domain with exactly one "@"; at most 64 octets before it and
 *	  254 in all (UTF-8, after normalisation).
 *	- the local part: dot-separated atoms of ASCII letters, digits and
 *	  !#$%&'*+-/=?^_`{|}~, or non-ASCII characters; no quoted strings.
 *	- the domain: at least two dot-separated labels of 1 to 63 octets, each
 *	  of ASCII letters, digits and "-" (neither first nor last) or non-ASCII
 *	  characters; no address literals.
 *	- no dot first or last, and no two dots in a row, in either part.
 *	- nowhere a control (Cc), format (Cf) or separator (Zs, Zl, Zp)
 *	  character, a default-ignorable, noncharacter, private-use or surrogate
 *	  code point, a code point of a plane Unicode leaves unassigned (4 to 13)
 *	  or another character that shows as nothing (Hangul fillers, the blank
 *	  Braille pattern).
 */
#define PGM_MAX_EMAIL_INPUT		1024	/* bytes given, before trimming */
#define PGM_MAX_EMAIL_LEN		254
#define PGM_MAX_EMAIL_LOCAL_LEN 64
#define PGM_MAX_DNS_LABEL_LEN	63

typedef struct CodeRange
{
	pg_wchar	first;
	pg_wchar	last;
} CodeRange;

/*
 * Code points an email may not hold, in order (Unicode 15).  Noncharacters
 * U+nFFFE and U+nFFFF of every plane are caught apart from this table.
 */
static const CodeRange refused_code_points[] = {
	{0x0000, 0x001F},			/* Cc */
	{0x007F, 0x009F},			/* Cc */
	{0x00A0, 0x00A0},			/* Zs no-break space */
	{0x00AD, 0x00AD},			/* Cf soft hyphen */
	{0x034F, 0x034F},			/* combining grapheme joiner */
	{0x0600, 0x0605},			/* Cf Arabic number signs */
	{0x061C, 0x061C},			/* Cf Arabic letter mark */
	{0x06DD, 0x06DD},			/* Cf */
	{0x070F, 0x070F},			/* Cf */
	{0x0890, 0x0891},			/* Cf */
	{0x08E2, 0x08E2},			/* Cf */
	{0x115F, 0x1160},			/* Hangul fillers */
	{0x1680, 0x1680},			/* Zs ogham space mark */
	{0x17B4, 0x17B5},			/* Khmer inherent vowels */
	{0x180B, 0x180F},			/* Mongolian selectors, vowel separator */
	{0x2000, 0x200F},			/* Zs spaces, Cf zero width, marks */
	{0x2028, 0x202F},			/* Zl, Zp, Cf embeddings, Zs */
	{0x205F, 0x206F},			/* Zs, Cf invisible operators, isolates */
	{0x2800, 0x2800},			/* blank Braille pattern */
	{0x3000, 0x3000},			/* Zs ideographic space */
	{0x3164, 0x3164},			/* Hangul filler */
	{0xD800, 0xDFFF},			/* surrogates */
	{0xE000, 0xF8FF},			/* private use */
	{0xFDD0, 0xFDEF},			/* noncharacters */
	{0xFE00, 0xFE0F},			/* variation selectors */
	{0xFEFF, 0xFEFF},			/* Cf zero width no-break space, BOM */
	{0xFFA0, 0xFFA0},			/* halfwidth Hangul filler */
	{0xFFF0, 0xFFFF},			/* specials, Cf annotation marks */
	{0x110BD, 0x110BD},			/* Cf */
	{0x110CD, 0x110CD},			/* Cf */
	{0x13430, 0x1343F},			/* Cf Egyptian format controls */
	{0x1BCA0, 0x1BCA3},			/* Cf shorthand format controls */
	{0x1D173, 0x1D17A},			/* Cf musical format controls */
	{0x323B0, 0xDFFFF},			/* unassigned, up to plane 13 */
	{0xE0000, 0xEFFFF},			/* tags, variation selectors, unassigned */
	{0xF0000, 0x10FFFF},		/* private use planes */
};

/* May an email hold this code point at all? */
static bool
code_point_refused(pg_wchar c)
{
	int			lo = 0;
	int			hi = lengthof(refused_code_points) - 1;

	if (c > 0x10FFFF || (c & 0xFFFE) == 0xFFFE)
		return true;
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (c < refused_code_points[mid].first)
			hi = mid - 1;
		else if (c > refused_code_points[mid].last)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/* The blanks trimmed around an email or a login: space, tab, CR, LF */
static bool
is_ascii_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* An ASCII character of RFC 5322's atext (the local part, dots aside) */
static bool
is_atext(pg_wchar c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || (c < 0x80 && strchr("!#$%&'*+-/=?^_`{|}~", (int) c) != NULL);
}

/* The number of UTF-8 octets of code points s[from..to) */
static size_t
utf8_octets(const pg_wchar *s, int from, int to)
{
	size_t		n = 0;
	int			i;

	for (i = from; i < to; i++)
		n += s[i] < 0x80 ? 1 : s[i] < 0x800 ? 2 : s[i] < 0x10000 ? 3 : 4;
	return n;
}

/*
 * Normalise an email (len bytes at raw) as the rules above say.  On success
 * *out is the address to store and compare; otherwise false, with *reason
 * saying why (a full sentence) and *bad the offending code point, if any
 * (both may be NULL).  Never raises for a bad address.
 */
static bool
email_normalize(const char *raw, size_t len, char **out, const char **reason,
				pg_wchar *bad)
{
	const char *start = raw;
	const char *end = raw + len;
	const char *why = NULL;
	pg_wchar	culprit = 0;
	char	   *lowered;
	size_t		llen;
	pg_wchar   *cp;
	pg_wchar   *norm;
	int			n = 0;
	int			at = -1;
	int			i;
	bool		ascii = true;
	const unsigned char *p;
	char	   *result;
	char	   *w;

	if (reason)
		*reason = NULL;
	if (bad)
		*bad = 0;
	if (len > PGM_MAX_EMAIL_INPUT)
	{
		why = "An address has at most 254 octets.";
		goto refuse;
	}
	while (start < end && is_ascii_blank(*start))
		start++;
	while (end > start && is_ascii_blank(end[-1]))
		end--;
	for (p = (const unsigned char *) start; p < (const unsigned char *) end; p++)
		if (*p >= 0x80)
			ascii = false;
	if (!ascii && GetDatabaseEncoding() != PG_UTF8)
	{
		why = "An address with non-ASCII characters needs a database in the UTF8 encoding.";
		goto refuse;
	}

	/* lower-case, then code points in NFC */
	lowered = str_tolower(start, end - start, DEFAULT_COLLATION_OID);
	llen = strlen(lowered);
	cp = palloc((llen + 1) * sizeof(pg_wchar));
	for (p = (const unsigned char *) lowered; *p; p += pg_utf_mblen(p))
		cp[n++] = *p < 0x80 ? *p : utf8_to_unicode(p);
	cp[n] = 0;
	if (ascii)
		norm = cp;
	else
	{
		norm = unicode_normalize(UNICODE_NFC, cp);
		if (norm == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		/*
		 * NFC can turn a character that lower-casing left alone into an
		 * upper-case ASCII letter (U+212A KELVIN SIGN becomes "K"): fold
		 * ASCII once more, so that no two spellings of one address are two
		 * accounts.
		 */
		for (n = 0; norm[n]; n++)
			if (norm[n] >= 'A' && norm[n] <= 'Z')
				norm[n] += 'a' - 'A';
	}

	/* what the address may hold, character by character */
	for (i = 0; i < n; i++)
	{
		pg_wchar	c = norm[i];

		if (c == 0x20 || code_point_refused(c))
		{
			culprit = c;
			why = "It holds a control, format, separator or invisible character.";
			goto refuse;
		}
		if (c == '@')
		{
			if (at >= 0)
			{
				why = "An address has exactly one \"@\".";
				goto refuse;
			}
			at = i;
		}
		else if (c == '.')
		{
			if (i == 0 || i == n - 1 || norm[i - 1] == '.' ||
				norm[i - 1] == '@' || norm[i + 1] == '@')
			{
				why = "A dot may not come first or last in the local part or in a domain label, nor twice in a row.";
				goto refuse;
			}
		}
		else if (c < 0x80)
		{
			bool		allowed = at < 0 ? is_atext(c) :
				((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');

			if (!allowed)
			{
				culprit = c;
				why = at < 0 ?
					"The local part holds letters, digits, dots and !#$%&'*+-/=?^_`{|}~ only." :
					"A domain holds letters, digits, hyphens and dots only.";
				goto refuse;
			}
		}
	}
	if (at <= 0 || at == n - 1)
	{
		why = "An address is local-part@domain, neither part empty.";
		goto refuse;
	}
	if (utf8_octets(norm, 0, at) > PGM_MAX_EMAIL_LOCAL_LEN)
	{
		why = "The local part has at most 64 octets.";
		goto refuse;
	}
	if (utf8_octets(norm, 0, n) > PGM_MAX_EMAIL_LEN)
	{
		why = "An address has at most 254 octets.";
		goto refuse;
	}
	/* the domain's labels */
	{
		int			label = at + 1;
		int			labels = 0;

		for (i = at + 1; i <= n; i++)
		{
			if (i < n && norm[i] != '.')
				continue;
			labels++;
			if (norm[label] == '-' || norm[i - 1] == '-')
			{
				why = "A domain label may not begin or end with a hyphen.";
				goto refuse;
			}
			if (utf8_octets(norm, label, i) > PGM_MAX_DNS_LABEL_LEN)
			{
				why = "A domain label has at most 63 octets.";
				goto refuse;
			}
			label = i + 1;
		}
		if (labels < 2)
		{
			why = "A domain has at least two labels (example.com).";
			goto refuse;
		}
	}

	/* back to UTF-8 (the same bytes for ASCII) */
	result = palloc(utf8_octets(norm, 0, n) + 1);
	w = result;
	for (i = 0; i < n; i++)
	{
		if (norm[i] < 0x80)
			*w++ = (char) norm[i];
		else
		{
			unicode_to_utf8(norm[i], (unsigned char *) w);
			w += pg_utf_mblen((unsigned char *) w);
		}
	}
	*w = '\0';
	*out = result;
	return true;

refuse:
	if (reason)
		*reason = why;
	if (bad)
		*bad = culprit;
	return false;
}

/*
 * Trim, lower-case and normalise an email, and check that it is an address
 * as the rules above say; 22023 otherwise.
 */
static char *
normalize_email(text *raw)
{
	char	   *email;
	const char *reason;
	pg_wchar	bad;
	size_t		len = VARSIZE_ANY_EXHDR(raw);

	if (len > PGM_MAX_EMAIL_INPUT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("email of %zu bytes is longer than %d bytes",
						len, PGM_MAX_EMAIL_LEN)));
	if (email_normalize(VARDATA_ANY(raw), len, &email, &reason, &bad))
		return email;
	if (bad > 0x20 && bad < 0x7f)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("email \"%s\" is not a valid address", text_to_cstring(raw)),
				 errdetail("It holds \"%c\". %s", (char) bad, reason)));
	if (bad != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("email \"%s\" is not a valid address", text_to_cstring(raw)),
				 errdetail("It holds U+%04X, a control, format, separator or invisible character.",
						   (unsigned int) bad)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("email \"%s\" is not a valid address", text_to_cstring(raw)),
			 errdetail("%s", reason)));
	return NULL;				/* not reached */
}

/* A username: 3 to 64 of [A-Za-z0-9_.-], else 22023. */
static void
check_username(const char *username)
{
	size_t		len = strlen(username);
	const char *p;

	for (p = username; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
			break;
	if (len < 3 || len > 64 || *p != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("username \"%s\" is not valid", username),
				 errdetail("A username has 3 to 64 characters, each a letter, a digit, \"_\", \".\" or \"-\".")));
}

/* The roles must be a non-empty list of names that pgmarket.roles holds. */
static void
check_roles(ArrayType *roles)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	Oid			argtypes[1] = {TEXTOID};
	static SPIPlanPtr plan_role = NULL;

	if (ARR_NDIM(roles) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("roles must be a one-dimensional array")));
	deconstruct_array(roles, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("roles must name at least one role")));
	if (plan_role == NULL)
		plan_role = pgm_prepare("SELECT 1 FROM pgmarket.roles WHERE name = $1",
								1, argtypes);
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("roles must not contain null")));
		pgm_exec(plan_role, &elems[i], NULL, true);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("role \"%s\" does not exist", TextDatumGetCString(elems[i])),
					 errhint("The roles are listed in table pgmarket.roles.")));
	}
}

/*
 * Insert an account and its zero balance, with SPI connected.  A taken id,
 * email or username is 23505 with a message that names it (the unique
 * indexes stay the backstop against a race).  roles and created_at are
 * optional: (Datum) 0 / has_created_at false take the table's defaults.
 */
static void
insert_account(Datum id, const char *email, const char *username,
			   const char *hash, Datum roles, Datum created_at,
			   bool has_created_at)
{
	Oid			dup_types[3] = {TEXTOID, TEXTOID, UUIDOID};
	Oid			ins_types[6] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTARRAYOID, TIMESTAMPTZOID};
	static SPIPlanPtr plan_dup = NULL;
	static SPIPlanPtr plan_insert = NULL;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	if (plan_insert == NULL)
	{
		plan_dup = pgm_prepare(
			"SELECT id = $3, email = $1, lower(username) = lower($2)"
			"  FROM pgmarket.accounts"
			" WHERE id = $3 OR email = $1 OR lower(username) = lower($2)",
			3, dup_types);
		plan_insert = pgm_prepare(
			"WITH a AS ("
			"  INSERT INTO pgmarket.accounts (id, email, username,"
			"         password_hash, roles, created_at)"
			"  VALUES ($1, $2, $3, $4, coalesce($5, '{user}'),"
			"          coalesce($6, now())) RETURNING id)"
			"INSERT INTO pgmarket.balances (user_id) SELECT id FROM a",
			6, ins_types);
	}

	values[0] = CStringGetTextDatum(email);
	values[1] = CStringGetTextDatum(username);
	values[2] = id;
	pgm_exec(plan_dup, values, NULL, false);
	if (SPI_processed > 0)
	{
		if (DatumGetBool(pgm_col(0, 1, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("user id %s already exists",
							DatumGetCString(DirectFunctionCall1(uuid_out, id)))));
		if (DatumGetBool(pgm_col(0, 2, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("email \"%s\" is already registered", email)));
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("username \"%s\" is already taken", username),
				 errdetail("Usernames are unique without regard to case.")));
	}

	values[0] = id;
	values[1] = CStringGetTextDatum(email);
	values[2] = CStringGetTextDatum(username);
	values[3] = hash ? CStringGetTextDatum(hash) : (Datum) 0;
	values[4] = roles;
	values[5] = created_at;
	if (hash == NULL)
		nulls[3] = 'n';
	if (roles == (Datum) 0)
		nulls[4] = 'n';
	if (!has_created_at)
		nulls[5] = 'n';
	pgm_exec(plan_insert, values, nulls, false);
}

/* create_user: an account with an Argon2id hash of the password, if any */
Datum
pgm_create_user(PG_FUNCTION_ARGS)
{
	char	   *email;
	char	   *username;
	ArrayType  *roles;
	Datum		id;
	char	   *hash = NULL;

	pgm_require_arg(fcinfo, 0, "email");
	pgm_require_arg(fcinfo, 1, "username");
	pgm_require_arg(fcinfo, 3, "roles");
	pgm_require_arg(fcinfo, 4, "id");
	email = normalize_email(PG_GETARG_TEXT_PP(0));
	username = text_to_cstring(PG_GETARG_TEXT_PP(1));
	check_username(username);
	roles = PG_GETARG_ARRAYTYPE_P(3);
	id = PG_GETARG_DATUM(4);
	if (!PG_ARGISNULL(2))
	{
		size_t		len;
		char	   *password = password_arg(fcinfo, 2, &len);

		hash = argon2id_hash(password, len);
		sodium_memzero(password, len);
	}

	pgm_spi_connect();
	check_roles(roles);
	insert_account(id, email, username, hash, PointerGetDatum(roles),
				   (Datum) 0, false);
	SPI_finish();
	PG_RETURN_DATUM(id);
}

/* ----------------------------------------------------------------
 * import_user(id, email, username, password_hash, created_at) RETURNS uuid
 *
 * For migrations (pgmarket import): an account with a password hash made
 * elsewhere, kept as it is (Argon2id, or Django's pbkdf2_sha256, which
 * authenticate replaces at the first login).  A repeat with the same id,
 * email and username changes nothing, so an import can be run again.
 * ----------------------------------------------------------------
 */

Datum
pgm_import_user(PG_FUNCTION_ARGS)
{
	Datum		id;
	char	   *email;
	char	   *username;
	char	   *hash = NULL;
	Oid			find_types[1] = {UUIDOID};
	static SPIPlanPtr plan_find = NULL;

	pgm_require_arg(fcinfo, 0, "id");
	pgm_require_arg(fcinfo, 1, "email");
	pgm_require_arg(fcinfo, 2, "username");
	id = PG_GETARG_DATUM(0);
	email = normalize_email(PG_GETARG_TEXT_PP(1));
	username = text_to_cstring(PG_GETARG_TEXT_PP(2));
	check_username(username);
	if (!PG_ARGISNULL(3))
	{
		hash = text_to_cstring(PG_GETARG_TEXT_PP(3));
		check_hash_to_store(hash,
							psprintf("password_hash of user %s",
									 DatumGetCString(DirectFunctionCall1(uuid_out, id))));
	}

	pgm_spi_connect();
	if (plan_find == NULL)
		plan_find = pgm_prepare(
			"SELECT email, username FROM pgmarket.accounts WHERE id = $1",
			1, find_types);

	/* the same account again: nothing to do */
	pgm_exec(plan_find, &id, NULL, false);
	if (SPI_processed == 1)
	{
		bool		isnull;
		char	   *e = TextDatumGetCString(pgm_col(0, 1, &isnull));
		char	   *u = TextDatumGetCString(pgm_col(0, 2, &isnull));

		if (strcmp(e, email) != 0 || strcmp(u, username) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("user id %s already exists with another email or username",
							DatumGetCString(DirectFunctionCall1(uuid_out, id)))));
		SPI_finish();
		PG_RETURN_DATUM(id);
	}

	insert_account(id, email, username, hash, (Datum) 0,
				   PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4),
				   !PG_ARGISNULL(4));

	SPI_finish();
	PG_RETURN_DATUM(id);
}

/* ----------------------------------------------------------------
 * authenticate(login, password) RETURNS uuid
 *
 * NULL for an unknown login, a deactivated user, a user without a password
 * and a wrong password alike, after the same work (below), so that they take
 * about as long as each other.
 * ----------------------------------------------------------------
 */
/*
 * The work of authenticate for a password in hand (len bytes, at most
 * PGM_MAX_PASSWORD_LEN; the caller wipes it): true, with the user in *id,
 * when login names an active user whose stored hash the password matches.
 * Stamps last_login_at, and replaces a hash that is not a standard Argon2id
 * one.  Connects to SPI and finishes itself.
 */
static bool
authenticate_login(const char *login, const char *password, size_t len,
				   pg_uuid_t *id)
{
	size_t		login_len = strlen(login);
	char	   *email = NULL;
	char	   *username = NULL;
	Datum		values[2];
	Oid			find_types[2] = {TEXTOID, TEXTOID};
	Oid			stamp_types[2] = {UUIDOID, TEXTOID};
	static SPIPlanPtr plan_find = NULL;
	static SPIPlanPtr plan_stamp = NULL;
	bool		usable = false;
	char	   *hash = NULL;
	PgmHash		h = {0};
	bool		ok;
	char	   *rehash = NULL;
	char		nulls[2] = {' ', ' '};

	/*
	 * The login as an email (normalised as create_user stores it) and as a
	 * username (trimmed, lower-cased).  A username holds no "@" and an email
	 * always does, so at most one account matches; both index probes run
	 * whatever the login looks like, and a login that is neither form (or
	 * is too long to be either) probes for the empty string.
	 */
	if (login_len <= PGM_MAX_EMAIL_INPUT)
	{
		const char *start = login;
		const char *end = login + login_len;

		if (!email_normalize(login, login_len, &email, NULL, NULL))
			email = NULL;
		while (start < end && is_ascii_blank(*start))
			start++;
		while (end > start && is_ascii_blank(end[-1]))
			end--;
		username = str_tolower(start, end - start, DEFAULT_COLLATION_OID);
	}

	pgm_spi_connect();
	if (plan_find == NULL)
	{
		plan_find = pgm_prepare(
			"SELECT id, password_hash, deleted_at IS NULL"
			"  FROM pgmarket.accounts"
			" WHERE email = $1 OR lower(username) = $2", 2, find_types);
		plan_stamp = pgm_prepare(
			"UPDATE pgmarket.accounts"
			"   SET last_login_at = now(),"
			"       password_hash = coalesce($2, password_hash)"
			" WHERE id = $1", 2, stamp_types);
	}
	values[0] = CStringGetTextDatum(email ? email : "");
	values[1] = CStringGetTextDatum(username ? username : "");
	pgm_exec(plan_find, values, NULL, false);
	if (SPI_processed == 1)
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		hd;
		bool		active;

		memcpy(id, DatumGetUUIDP(SPI_getbinval(row, desc, 1, &isnull)),
			   sizeof(pg_uuid_t));
		hd = SPI_getbinval(row, desc, 2, &isnull);
		if (!isnull)
			hash = TextDatumGetCString(hd);
		active = DatumGetBool(SPI_getbinval(row, desc, 3, &isnull));
		usable = active && hash != NULL &&
			parse_hash(hash, &h) == PGM_HASH_VALID;
	}

	/*
	 * Every path costs one Argon2id verification at the standard cost: the
	 * user's own hash when it is one, else the dummy hash.  A hash of
	 * another kind or cost is verified on top of that.  An unknown login, a
	 * deactivated user, a user without a password and a stored hash that is
	 * malformed or beyond the bounds cost the dummy verification alone.
	 */
	if (usable && is_standard_argon2id(&h))
		ok = crypto_pwhash_str_verify(hash, password, len) == 0;
	else
	{
		/* only the time this takes matters, not its result */
		volatile int dummy = crypto_pwhash_str_verify(dummy_hash, password, len);

		(void) dummy;
		ok = usable && verify_parsed(password, len, hash, &h);
	}
	if (ok && !is_standard_argon2id(&h))
		rehash = argon2id_hash(password, len);

	if (ok)
	{
		values[0] = UUIDPGetDatum(id);
		values[1] = rehash ? CStringGetTextDatum(rehash) : (Datum) 0;
		if (rehash == NULL)
			nulls[1] = 'n';
		pgm_exec(plan_stamp, values, nulls, false);
	}
	SPI_finish();
	return ok;
}

/* authenticate(login, password): the arguments, then authenticate_login */
Datum
pgm_authenticate(PG_FUNCTION_ARGS)
{
	char	   *login;
	size_t		len;
	char	   *password;
	pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));
	bool		ok;

	pgm_require_arg(fcinfo, 0, "login");
	pgm_require_arg(fcinfo, 1, "password");
	login = text_to_cstring(PG_GETARG_TEXT_PP(0));
	password = password_arg(fcinfo, 1, &len);
	ok = authenticate_login(login, password, len, id);
	sodium_memzero(password, len);
	if (!ok)
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(id);
}

/* ----------------------------------------------------------------
 * deactivate_user(user_id): soft delete; the ledger keeps the history
 * ----------------------------------------------------------------
 */
Datum
pgm_deactivate_user(PG_FUNCTION_ARGS)
{
	Datum		user_id;
	Oid			types[1] = {UUIDOID};
	static SPIPlanPtr plan = NULL;

	pgm_user_arg(fcinfo, 0);
	user_id = PG_GETARG_DATUM(0);

	pgm_spi_connect();
	if (plan == NULL)
		plan = pgm_prepare(
			"WITH b AS ("
			"  UPDATE pgmarket.balances SET active = false, updated_at = now()"
			"   WHERE user_id = $1 AND active RETURNING user_id)"
			"UPDATE pgmarket.accounts a SET deleted_at = now()"
			"  FROM b WHERE a.id = b.user_id", 1, types);
	pgm_queue_for_user(user_id);
	pgm_exec(plan, &user_id, NULL, false);
	if (SPI_processed != 1)
		pgm_raise_unknown_account(user_id);
	SPI_finish();
	PG_RETURN_VOID();
}
