/*-------------------------------------------------------------------------
 *
 * emails.c
 *	  The one spelling of an email address: how create_user and import_user
 *	  store it (pgm_normalize_email) and the forms authenticate looks a
 *	  login up in (pgm_login_forms).
 *
 * Emails are lower-cased and put in Unicode NFC wherever they are stored or
 * looked up, so that one address has one spelling.  What an address may
 * hold (the README says the same):
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
 *
 * Checking an address never raises for a bad one (email_normalize says
 * why); only pgm_normalize_email turns that into 22023.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "catalog/pg_collation.h"
#include "common/unicode_norm.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/formatting.h"

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

/* Step past the ASCII blanks at either end of [*start, *end). */
static void
trim_blanks(const char **start, const char **end)
{
	while (*start < *end && is_ascii_blank(**start))
		(*start)++;
	while (*end > *start && is_ascii_blank((*end)[-1]))
		(*end)--;
}

/*
 * The code points of an email (len bytes at raw): trimmed, lower-cased and
 * in NFC, with ASCII folded once more; *n of them, 0-terminated.  NULL with
 * *why when the input cannot be an address at all.
 */
static pg_wchar *
email_code_points(const char *raw, size_t len, int *n, const char **why)
{
	const char *start = raw;
	const char *end = raw + len;
	const unsigned char *p;
	bool		ascii = true;
	char	   *lowered;
	pg_wchar   *cp;
	pg_wchar   *norm;

	if (len > PGM_MAX_EMAIL_INPUT)
	{
		*why = "An address has at most 254 octets.";
		return NULL;
	}
	trim_blanks(&start, &end);
	for (p = (const unsigned char *) start; p < (const unsigned char *) end; p++)
		if (*p >= 0x80)
			ascii = false;
	if (!ascii && GetDatabaseEncoding() != PG_UTF8)
	{
		*why = "An address with non-ASCII characters needs a database in the UTF8 encoding.";
		return NULL;
	}

	/* lower-case, then code points in NFC */
	lowered = str_tolower(start, end - start, DEFAULT_COLLATION_OID);
	cp = palloc((strlen(lowered) + 1) * sizeof(pg_wchar));
	*n = 0;
	for (p = (const unsigned char *) lowered; *p; p += pg_utf_mblen(p))
		cp[(*n)++] = *p < 0x80 ? *p : utf8_to_unicode(p);
	cp[*n] = 0;
	if (ascii)
		return cp;
	norm = unicode_normalize(UNICODE_NFC, cp);
	if (norm == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	/*
	 * NFC can turn a character that lower-casing left alone into an
	 * upper-case ASCII letter (U+212A KELVIN SIGN becomes "K"): fold ASCII
	 * once more, so that no two spellings of one address are two accounts.
	 */
	for (*n = 0; norm[*n]; (*n)++)
		if (norm[*n] >= 'A' && norm[*n] <= 'Z')
			norm[*n] += 'a' - 'A';
	return norm;
}

/*
 * What the address (n code points) may hold, character by character: NULL
 * when every one is allowed where it stands, else why not, with the
 * offending code point in *culprit when one is to blame.  *at is the
 * position of the "@" (-1: none).
 */
static const char *
check_characters(const pg_wchar *norm, int n, int *at, pg_wchar *culprit)
{
	int			i;

	*at = -1;
	for (i = 0; i < n; i++)
	{
		pg_wchar	c = norm[i];

		if (c == 0x20 || code_point_refused(c))
		{
			*culprit = c;
			return "It holds a control, format, separator or invisible character.";
		}
		if (c == '@')
		{
			if (*at >= 0)
				return "An address has exactly one \"@\".";
			*at = i;
		}
		else if (c == '.')
		{
			if (i == 0 || i == n - 1 || norm[i - 1] == '.' ||
				norm[i - 1] == '@' || norm[i + 1] == '@')
				return "A dot may not come first or last in the local part or in a domain label, nor twice in a row.";
		}
		else if (c < 0x80)
		{
			bool		allowed = *at < 0 ? is_atext(c) :
				((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');

			if (!allowed)
			{
				*culprit = c;
				return *at < 0 ?
					"The local part holds letters, digits, dots and !#$%&'*+-/=?^_`{|}~ only." :
					"A domain holds letters, digits, hyphens and dots only.";
			}
		}
	}
	return NULL;
}

/*
 * The parts of an address whose characters are allowed (the "@" at at):
 * neither part empty, within the lengths, the domain's labels well formed.
 * NULL, or why not.
 */
static const char *
check_parts(const pg_wchar *norm, int n, int at)
{
	int			label = at + 1;
	int			labels = 0;
	int			i;

	if (at <= 0 || at == n - 1)
		return "An address is local-part@domain, neither part empty.";
	if (utf8_octets(norm, 0, at) > PGM_MAX_EMAIL_LOCAL_LEN)
		return "The local part has at most 64 octets.";
	if (utf8_octets(norm, 0, n) > PGM_MAX_EMAIL_LEN)
		return "An address has at most 254 octets.";
	for (i = at + 1; i <= n; i++)
	{
		if (i < n && norm[i] != '.')
			continue;
		labels++;
		if (norm[label] == '-' || norm[i - 1] == '-')
			return "A domain label may not begin or end with a hyphen.";
		if (utf8_octets(norm, label, i) > PGM_MAX_DNS_LABEL_LEN)
			return "A domain label has at most 63 octets.";
		label = i + 1;
	}
	if (labels < 2)
		return "A domain has at least two labels (example.com).";
	return NULL;
}

/* n code points back to a UTF-8 string (the same bytes for ASCII). */
static char *
code_points_to_utf8(const pg_wchar *norm, int n)
{
	char	   *result = palloc(utf8_octets(norm, 0, n) + 1);
	char	   *w = result;
	int			i;

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
	return result;
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
	const char *why = NULL;
	pg_wchar	culprit = 0;
	pg_wchar   *norm;
	int			n = 0;
	int			at = -1;

	norm = email_code_points(raw, len, &n, &why);
	if (norm != NULL)
		why = check_characters(norm, n, &at, &culprit);
	if (norm != NULL && why == NULL)
		why = check_parts(norm, n, at);
	if (reason)
		*reason = why;
	if (bad)
		*bad = culprit;
	if (why != NULL)
		return false;
	*out = code_points_to_utf8(norm, n);
	return true;
}

/*
 * Trim, lower-case and normalise an email, and check that it is an address
 * as the rules above say; 22023 otherwise.
 */
char *
pgm_normalize_email(text *raw)
{
	char	   *email;
	const char *reason;
	const char *detail;
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
		detail = psprintf("It holds \"%c\". %s", (char) bad, reason);
	else if (bad != 0)
		detail = psprintf("It holds U+%04X, a control, format, separator or invisible character.",
						  (unsigned int) bad);
	else
		detail = reason;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("email \"%s\" is not a valid address", text_to_cstring(raw)),
			 errdetail("%s", detail)));
	return NULL;				/* not reached */
}

/*
 * The forms authenticate looks a login up in: as an email (normalised as
 * create_user stores it; NULL when it is no address) and as a username
 * (trimmed, lower-cased).  A username holds no "@" and an email always
 * does, so at most one account matches either.  A login too long to be
 * either is neither (both NULL).
 */
void
pgm_login_forms(const char *login, char **email, char **username)
{
	size_t		len = strlen(login);
	const char *start = login;
	const char *end = login + len;

	*email = NULL;
	*username = NULL;
	if (len > PGM_MAX_EMAIL_INPUT)
		return;
	if (!email_normalize(login, len, email, NULL, NULL))
		*email = NULL;
	trim_blanks(&start, &end);
	*username = str_tolower(start, end - start, DEFAULT_COLLATION_OID);
}
