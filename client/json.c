/*
 * json.c: see json.h.  A recursive descent parser over a buffer, RFC 8259
 * syntax, nesting limited to 64 levels.
 */
#include "json.h"

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

static void
fail(parser *p, const char *fmt,...)
{
	char		msg[256];
	va_list		ap;

	if (p->failed)
		return;
	p->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errsize, "line %d, column %zu: %s", p->line,
			 p->pos - p->line_start + 1, msg);
}

static void
skip_ws(parser *p)
{
	while (p->pos < p->len)
	{
		char		c = p->s[p->pos];

		if (c == '\n')
		{
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

/* At the opening quote; a malloc'd decoded string. */
static char *
parse_string(parser *p, size_t *outlen)
{
	size_t		start = ++p->pos;
	char	   *buf,
			   *d;

	/* decoded text is never longer than the source */
	while (p->pos < p->len && p->s[p->pos] != '"')
		p->pos += p->s[p->pos] == '\\' ? 2 : 1;
	if (p->pos >= p->len)
	{
		fail(p, "unterminated string");
		return NULL;
	}
	buf = malloc(p->pos - start + 1);
	if (buf == NULL)
	{
		fail(p, "out of memory");
		return NULL;
	}
	p->pos = start;
	d = buf;
	while (p->s[p->pos] != '"')
	{
		unsigned char c = (unsigned char) p->s[p->pos++];

		if (c < 0x20)
		{
			p->pos--;
			fail(p, "control character in a string");
			free(buf);
			return NULL;
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
	}
	p->pos++;					/* the closing quote */
	*d = '\0';
	*outlen = (size_t) (d - buf);
	return buf;

bad_escape:
	fail(p, "bad escape in a string");
	free(buf);
	return NULL;
}

static json *parse_value(parser *p, int depth);

static int
push(parser *p, json *v, char *key, json *item)
{
	char	  **keys = v->keys;
	json	  **items = realloc(v->items, (v->n + 1) * sizeof(json *));

	if (items == NULL)
		goto oom;
	v->items = items;
	if (v->type == JSON_OBJECT)
	{
		keys = realloc(v->keys, (v->n + 1) * sizeof(char *));
		if (keys == NULL)
			goto oom;
		v->keys = keys;
		v->keys[v->n] = key;
	}
	v->items[v->n++] = item;
	return 1;
oom:
	fail(p, "out of memory");
	return 0;
}

static json *
parse_value(parser *p, int depth)
{
	json	   *v = NULL;
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
	{
		char		close = c == '{' ? '}' : ']';

		v = new_value(p, c == '{' ? JSON_OBJECT : JSON_ARRAY);
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
				return v;
			}
			fail(p, "expected ',' or '%c'", close);
			break;
		}
		json_free(v);
		return NULL;
	}
	if (c == '"')
	{
		v = new_value(p, JSON_STRING);
		if (v && (v->text = parse_string(p, &v->len)) == NULL)
		{
			json_free(v);
			return NULL;
		}
		return v;
	}
	if (c == '-' || (c >= '0' && c <= '9'))
	{
		size_t		start = p->pos;

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
	fail(p, "unexpected character '%c'", c);
	return NULL;
}

json *
json_parse(const char *src, size_t len, char *err, size_t errsize)
{
	parser		p = {src, len, 0, 1, 0, err, errsize, 0};
	json	   *v;

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
