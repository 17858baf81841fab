/*
 * json.c: see json.h.  A recursive descent parser over a buffer, RFC 8259
 * syntax, nesting limited to 64 levels.
 *
 * Stricter than the RFC where pgmarket import needs it to be: a document is
 * refused (with the line and column of the offending byte) when a string is
 * not UTF-8 or holds \u0000, when an object repeats a member name, or when
 * an integer (a number without fraction or exponent) does not fit in 64
 * bits.  Nothing is truncated or clamped, and the work is O(n log n) in the
 * size of the document whatever it holds.
 */
#include "json.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct
{
	const char *s;
	size_t		len;
	size_t		pos;
	int			line;
	size_t		line_start;
	char	   *err;
	size_t		errsize;
	int			failed;
} parser;

#define MAX_DEPTH 64

/* Where a byte of the document is: its line and its column (1-based). */
typedef struct
{
	int			line;
	size_t		column;
} where;

/* The line and column of byte pos, on the current line. */
static where
here(const parser *p, size_t pos)
{
	where		w = {p->line, pos - p->line_start + 1};

	return w;
}

/* Records the first error of a parse, at w. */
static void
vfail_at(parser *p, where w, const char *fmt, va_list ap)
{
	char		msg[256];

	if (p->failed)
		return;
	p->failed = 1;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (p->errsize > 0)
		snprintf(p->err, p->errsize, "line %d, column %zu: %s", w.line, w.column, msg);
}

/* An error at a position noted earlier. */
static void
fail_where(parser *p, where w, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vfail_at(p, w, fmt, ap);
	va_end(ap);
}

/* An error at byte pos of the current line. */
static void
fail_at(parser *p, size_t pos, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vfail_at(p, here(p, pos), fmt, ap);
	va_end(ap);
}

/* An error at the current position. */
static void
fail(parser *p, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vfail_at(p, here(p, p->pos), fmt, ap);
	va_end(ap);
}

/*
 * A printable excerpt of s for an error message: at most 40 bytes, control
 * characters shown as '?'.
 */
static const char *
excerpt(const char *s, char *buf, size_t size)
{
	size_t		i;

	for (i = 0; s[i] && i < 40 && i + 1 < size; i++)
		buf[i] = (unsigned char) s[i] < 0x20 || s[i] == 0x7F ? '?' : s[i];
	buf[i] = '\0';
	return buf;
}

static void
skip_ws(parser *p)
{
	while (p->pos < p->len)
	{
		char		c = p->s[p->pos];

		if (c == '\n')
		{
			if (p->line < INT_MAX)
				p->line++;
			p->line_start = p->pos + 1;
		}
		else if (c != ' ' && c != '\t' && c != '\r')
			break;
		p->pos++;
	}
}

static json *
new_value(parser *p, json_type t)
{
	json	   *v = calloc(1, sizeof(json));

	if (v == NULL)
		fail(p, "out of memory");
	else
	{
		v->type = t;
		v->line = p->line;
	}
	return v;
}

static int
hex4(parser *p, unsigned *out)
{
	unsigned	v = 0;
	int			i;

	if (p->pos + 4 > p->len)
		return 0;
	for (i = 0; i < 4; i++)
	{
		char		c = p->s[p->pos + i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned) (c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned) (c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned) (c - 'A' + 10);
		else
			return 0;
	}
	p->pos += 4;
	*out = v;
	return 1;
}

static size_t
put_utf8(char *d, unsigned cp)
{
	if (cp < 0x80)
	{
		d[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		d[0] = (char) (0xC0 | (cp >> 6));
		d[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		d[0] = (char) (0xE0 | (cp >> 12));
		d[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		d[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	d[0] = (char) (0xF0 | (cp >> 18));
	d[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	d[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	d[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

/*
 * The length of the UTF-8 sequence at s (at most n bytes available), or 0
 * when it is not one: RFC 3629, so no overlong forms, no surrogates, nothing
 * above U+10FFFF.
 */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t		len,
				i;
	unsigned	lo = 0x80,
				hi = 0xBF;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4;
	else
		return 0;
	/* the second byte rules out overlong forms, surrogates and > U+10FFFF */
	if (s[0] == 0xE0)
		lo = 0xA0;
	else if (s[0] == 0xED)
		hi = 0x9F;
	else if (s[0] == 0xF0)
		lo = 0x90;
	else if (s[0] == 0xF4)
		hi = 0x8F;
	if (len > n)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

/* At the opening quote; a malloc'd decoded string. */
static char *
parse_string(parser *p, size_t *outlen)
{
	size_t		open = p->pos,
				start = p->pos + 1,
				end = start;
	char	   *buf,
			   *d;

	/* the closing quote; decoded text is never longer than the source */
	while (end < p->len && p->s[end] != '"')
		end += p->s[end] == '\\' ? 2 : 1;
	if (end >= p->len)
	{
		fail_at(p, open, "unterminated string");
		return NULL;
	}
	buf = malloc(end - start + 1);
	if (buf == NULL)
	{
		fail(p, "out of memory");
		return NULL;
	}
	p->pos = start;
	d = buf;
	while (p->pos < end)
	{
		size_t		at = p->pos;
		unsigned char c = (unsigned char) p->s[p->pos++];

		if (c < 0x20)
		{
			fail_at(p, at, "control character in a string");
			goto bad;
		}
		if (c >= 0x80)
		{
			size_t		n = utf8_len((const unsigned char *) p->s + at, end - at);

			if (n == 0)
			{
				fail_at(p, at, "invalid UTF-8 in a string");
				goto bad;
			}
			memcpy(d, p->s + at, n);
			d += n;
			p->pos = at + n;
			continue;
		}
		if (c != '\\')
		{
			*d++ = (char) c;
			continue;
		}
		c = (unsigned char) p->s[p->pos++];
		switch (c)
		{
			case '"': *d++ = '"'; break;
			case '\\': *d++ = '\\'; break;
			case '/': *d++ = '/'; break;
			case 'b': *d++ = '\b'; break;
			case 'f': *d++ = '\f'; break;
			case 'n': *d++ = '\n'; break;
			case 'r': *d++ = '\r'; break;
			case 't': *d++ = '\t'; break;
			case 'u':
				{
					unsigned	cp,
								lo;

					if (!hex4(p, &cp))
						goto bad_escape;
					if (cp == 0)
					{
						fail_at(p, at, "\\u0000 in a string");
						goto bad;
					}
					if (cp >= 0xD800 && cp < 0xDC00)
					{
						if (p->pos + 2 > p->len || p->s[p->pos] != '\\' ||
							p->s[p->pos + 1] != 'u')
							goto bad_escape;
						p->pos += 2;
						if (!hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF)
							goto bad_escape;
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					}
					else if (cp >= 0xDC00 && cp < 0xE000)
						goto bad_escape;
					d += put_utf8(d, cp);
					break;
				}
			default:
				goto bad_escape;
		}
		continue;
bad_escape:
		fail_at(p, at, "bad escape in a string");
		goto bad;
	}
	p->pos = end + 1;			/* past the closing quote */
	*d = '\0';
	*outlen = (size_t) (d - buf);
	return buf;

bad:
	free(buf);
	return NULL;
}

static json *parse_value(parser *p, int depth);

/*
 * Appends item (and key, for an object) to v.  The arrays grow to the next
 * power of two, so that n members cost O(n) copying.
 */
static int
push(parser *p, json *v, char *key, json *item)
{
	if ((v->n & (v->n - 1)) == 0)	/* 0, 1, 2, 4, ...: full */
	{
		size_t		cap = v->n ? v->n * 2 : 1;
		json	  **items = realloc(v->items, cap * sizeof(json *));

		if (items == NULL)
			goto oom;
		v->items = items;
		if (v->type == JSON_OBJECT)
		{
			char	  **keys = realloc(v->keys, cap * sizeof(char *));

			if (keys == NULL)
				goto oom;
			v->keys = keys;
		}
	}
	if (v->type == JSON_OBJECT)
		v->keys[v->n] = key;
	v->items[v->n++] = item;
	return 1;
oom:
	fail(p, "out of memory");
	return 0;
}

/* The members of an object being checked for a repeated name. */
typedef struct
{
	const char *key;
	size_t		index;
	where		at;
} member;

/* By name, then by place: a total order, whatever qsort does with ties. */
static int
member_cmp(const void *a, const void *b)
{
	const member *x = a,
			   *y = b;
	int			c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

/*
 * Refuses an object that repeats a member name, at the first repetition in
 * document order.  Sorting keeps it O(n log n) whatever the names are (keys
 * hold no NUL: \u0000 is refused).
 */
static int
check_unique(parser *p, const json *v, const where *at)
{
	member	   *m;
	size_t		i,
				dup = SIZE_MAX,
				first = 0;
	char		buf[48];

	if (v->n < 2)
		return 1;
	m = malloc(v->n * sizeof(member));
	if (m == NULL)
	{
		fail(p, "out of memory");
		return 0;
	}
	for (i = 0; i < v->n; i++)
	{
		m[i].key = v->keys[i];
		m[i].index = i;
		m[i].at = at[i];
	}
	qsort(m, v->n, sizeof(member), member_cmp);
	for (i = 1; i < v->n; i++)
		if (strcmp(m[i].key, m[i - 1].key) == 0 &&
			(i < 2 || strcmp(m[i - 1].key, m[i - 2].key) != 0) &&
			m[i].index < dup)
		{
			dup = m[i].index;
			first = i - 1;
		}
	if (dup != SIZE_MAX)
		fail_where(p, at[dup], "member name \"%s\" repeated (first at line %d, column %zu)",
				   excerpt(v->keys[dup], buf, sizeof(buf)),
				   m[first].at.line, m[first].at.column);
	free(m);
	return dup == SIZE_MAX;
}

/*
 * Does the integer text s (an optional '-', then digits without a leading
 * zero) fit in int64_t?
 */
static int
fits_int64(const char *s, size_t len)
{
	int			neg = len > 0 && s[0] == '-';
	const char *limit = neg ? "9223372036854775808" : "9223372036854775807";

	s += neg;
	len -= (size_t) neg;
	return len < 19 || (len == 19 && memcmp(s, limit, 19) <= 0);
}

/* At a '-' or a digit: the number's source text. */
static json *
parse_number(parser *p)
{
	size_t		start = p->pos;
	int			integer = 1;
	json	   *v;

	if (p->s[p->pos] == '-')
		p->pos++;
	if (p->pos < p->len && p->s[p->pos] == '0')
		p->pos++;
	else if (p->pos < p->len && p->s[p->pos] >= '1' && p->s[p->pos] <= '9')
		while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
			p->pos++;
	else
	{
		fail(p, "bad number");
		return NULL;
	}
	if (p->pos < p->len && p->s[p->pos] == '.')
	{
		size_t		d = ++p->pos;

		integer = 0;
		while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
			p->pos++;
		if (p->pos == d)
		{
			fail(p, "bad number");
			return NULL;
		}
	}
	if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E'))
	{
		size_t		d;

		integer = 0;
		p->pos++;
		if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
			p->pos++;
		d = p->pos;
		while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
			p->pos++;
		if (p->pos == d)
		{
			fail(p, "bad number");
			return NULL;
		}
	}
	if (integer && !fits_int64(p->s + start, p->pos - start))
	{
		fail_at(p, start, "integer %.*s%s does not fit in 64 bits",
				(int) (p->pos - start < 40 ? p->pos - start : 40), p->s + start,
				p->pos - start > 40 ? "..." : "");
		return NULL;
	}
	v = new_value(p, JSON_NUMBER);
	if (v == NULL)
		return NULL;
	v->len = p->pos - start;
	v->text = malloc(v->len + 1);
	if (v->text == NULL)
	{
		json_free(v);
		fail(p, "out of memory");
		return NULL;
	}
	memcpy(v->text, p->s + start, v->len);
	v->text[v->len] = '\0';
	return v;
}

/*
 * At a '{' or '[': the array, or the object with its member names checked
 * for repetitions.
 */
static json *
parse_container(parser *p, int depth)
{
	char		close = p->s[p->pos] == '{' ? '}' : ']';
	json	   *v = new_value(p, close == '}' ? JSON_OBJECT : JSON_ARRAY);
	where	   *at = NULL;		/* OBJECT: where each member name starts */

	if (v == NULL)
		return NULL;
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == close)
	{
		p->pos++;
		return v;
	}
	for (;;)
	{
		char	   *key = NULL;
		json	   *item;

		skip_ws(p);
		if (v->type == JSON_OBJECT)
		{
			size_t		klen;

			if (p->pos >= p->len || p->s[p->pos] != '"')
			{
				fail(p, "expected a member name in quotes");
				break;
			}
			if ((v->n & (v->n - 1)) == 0)
			{
				where	   *na = realloc(at, (v->n ? v->n * 2 : 1) * sizeof(where));

				if (na == NULL)
				{
					fail(p, "out of memory");
					break;
				}
				at = na;
			}
			at[v->n] = here(p, p->pos);
			if ((key = parse_string(p, &klen)) == NULL)
				break;
			skip_ws(p);
			if (p->pos >= p->len || p->s[p->pos] != ':')
			{
				free(key);
				fail(p, "expected ':'");
				break;
			}
			p->pos++;
		}
		item = parse_value(p, depth + 1);
		if (item == NULL)
		{
			free(key);
			break;
		}
		if (!push(p, v, key, item))
		{
			free(key);
			json_free(item);
			break;
		}
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',')
		{
			p->pos++;
			continue;
		}
		if (p->pos < p->len && p->s[p->pos] == close)
		{
			p->pos++;
			if (v->type == JSON_OBJECT && !check_unique(p, v, at))
				break;
			free(at);
			return v;
		}
		fail(p, "expected ',' or '%c'", close);
		break;
	}
	free(at);
	json_free(v);
	return NULL;
}

static json *
parse_value(parser *p, int depth)
{
	char		c;

	skip_ws(p);
	if (p->pos >= p->len)
	{
		fail(p, "unexpected end of input");
		return NULL;
	}
	if (depth > MAX_DEPTH)
	{
		fail(p, "nested too deeply");
		return NULL;
	}
	c = p->s[p->pos];
	if (c == '{' || c == '[')
		return parse_container(p, depth);
	if (c == '"')
	{
		json	   *v = new_value(p, JSON_STRING);

		if (v && (v->text = parse_string(p, &v->len)) == NULL)
		{
			json_free(v);
			return NULL;
		}
		return v;
	}
	if (c == '-' || (c >= '0' && c <= '9'))
		return parse_number(p);
	if (p->len - p->pos >= 4 && memcmp(p->s + p->pos, "null", 4) == 0)
	{
		p->pos += 4;
		return new_value(p, JSON_NULL);
	}
	if (p->len - p->pos >= 4 && memcmp(p->s + p->pos, "true", 4) == 0)
	{
		p->pos += 4;
		return new_value(p, JSON_TRUE);
	}
	if (p->len - p->pos >= 5 && memcmp(p->s + p->pos, "false", 5) == 0)
	{
		p->pos += 5;
		return new_value(p, JSON_FALSE);
	}
	if (c > 0x20 && c < 0x7F)
		fail(p, "unexpected character '%c'", c);
	else
		fail(p, "unexpected byte 0x%02X", (unsigned) (unsigned char) c);
	return NULL;
}

json *
json_parse(const char *src, size_t len, char *err, size_t errsize)
{
	parser		p = {src, len, 0, 1, 0, err, errsize, 0};
	json	   *v;

	if (errsize > 0)
		err[0] = '\0';
	v = parse_value(&p, 0);
	if (v == NULL)
		return NULL;
	skip_ws(&p);
	if (p.pos != p.len)
	{
		fail(&p, "unexpected text after the document");
		json_free(v);
		return NULL;
	}
	return v;
}

void
json_free(json *v)
{
	size_t		i;

	if (v == NULL)
		return;
	for (i = 0; i < v->n; i++)
	{
		json_free(v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->text);
	free(v);
}

json *
json_get(const json *obj, const char *key)
{
	size_t		i;

	if (obj == NULL || obj->type != JSON_OBJECT)
		return NULL;
	for (i = 0; i < obj->n; i++)
		if (strcmp(obj->keys[i], key) == 0)
			return obj->items[i];
	return NULL;
}

const char *
json_type_name(json_type t)
{
	static const char *const names[] = {"null", "false", "true", "number",
	"string", "array", "object"};

	return (unsigned) t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

void
json_write_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Writes v as JSON text (numbers as their source text). */
void
json_write_value(FILE *f, const json *v)
{
	size_t		i;

	switch (v->type)
	{
		case JSON_NULL:
			fputs("null", f);
			break;
		case JSON_FALSE:
			fputs("false", f);
			break;
		case JSON_TRUE:
			fputs("true", f);
			break;
		case JSON_NUMBER:
			fputs(v->text, f);
			break;
		case JSON_STRING:
			json_write_string(f, v->text);
			break;
		case JSON_ARRAY:
		case JSON_OBJECT:
			fputc(v->type == JSON_ARRAY ? '[' : '{', f);
			for (i = 0; i < v->n; i++)
			{
				if (i)
					fputs(", ", f);
				if (v->type == JSON_OBJECT)
				{
					json_write_string(f, v->keys[i]);
					fputs(": ", f);
				}
				json_write_value(f, v->items[i]);
			}
			fputc(v->type == JSON_ARRAY ? ']' : '}', f);
			break;
	}
}

/* v as malloc'd JSON text, or NULL (out of memory). */
char *
json_to_text(const json *v)
{
	char	   *buf = NULL;
	size_t		size = 0;
	FILE	   *f = open_memstream(&buf, &size);

	if (f == NULL)
		return NULL;
	json_write_value(f, v);
	if (fclose(f) != 0)
	{
		free(buf);
		return NULL;
	}
	return buf;
}
