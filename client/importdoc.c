/*
 * importdoc.c: see importdoc.h.  No connection, no global state: what is
 * here decides from its arguments alone, so that it can be tested and
 * fuzzed without a server.
 */
#include "importdoc.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgmarket.h"

static const char *const chat_roles[] = {"system", "user", "assistant", "tool", NULL};

/* The sections pgmarket import reads, and the type each must have. */
static const struct
{
	const char *name;
	json_type	type;
}			sections[] =
{
	{"users", JSON_OBJECT},
	{"balance_tracker", JSON_OBJECT},
	{"transactions", JSON_ARRAY},
	{"api_keys", JSON_OBJECT},
	{"chat_history", JSON_OBJECT},
};

/* The document, or NULL with err set: see importdoc.h. */
json *
import_parse(const char *src, size_t len, char *err, size_t errsize)
{
	char		why[256];
	json	   *doc = json_parse(src, len, why, sizeof(why));
	size_t		i;

	if (doc == NULL)
	{
		snprintf(err, errsize, "not valid JSON: %s", why);
		return NULL;
	}
	if (doc->type != JSON_OBJECT)
	{
		snprintf(err, errsize, "the document must be an object, not %s",
				 json_type_name(doc->type));
		json_free(doc);
		return NULL;
	}
	for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
	{
		const json *v = json_get(doc, sections[i].name);

		if (v && v->type != sections[i].type)
		{
			snprintf(err, errsize, "section \"%s\" must be an %s, not %s",
					 sections[i].name, json_type_name(sections[i].type),
					 json_type_name(v->type));
			json_free(doc);
			return NULL;
		}
	}
	return doc;
}

/* Hex digits and dashes in the 8-4-4-4-12 places, nothing else. */
int
is_uuid(const char *s)
{
	int			i;

	if (s == NULL || strlen(s) != 36)
		return 0;
	for (i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return 0;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return 0;
	}
	return 1;
}

/* n digits at s as a number, or -1. */
static int
digits(const char *s, int n)
{
	int			v = 0,
				i;

	for (i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t		era,
				yoe,
				doy,
				doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

const char *
import_time_problem(const char *s, int64_t now, int64_t skew)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			y,
				mo,
				d,
				h,
				mi,
				sec = 0,
				oh = 0,
				om = 0,
				sign = 0,
				dim;
	const char *p;
	int64_t		t;

	if (s == NULL)
		return "missing";
	y = digits(s, 4);
	if (y < 1 || s[4] != '-' || (mo = digits(s + 5, 2)) < 1 || mo > 12 || s[7] != '-' ||
		(d = digits(s + 8, 2)) < 1 || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
		(h = digits(s + 11, 2)) < 0 || h > 23 || s[13] != ':' ||
		(mi = digits(s + 14, 2)) < 0 || mi > 59)
		return "must be ISO 8601 with its offset, as 2024-05-06T07:08:09Z";
	dim = mdays[mo - 1] + (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
	if (d > dim)
		return "is not a date of the calendar";
	p = s + 16;
	if (*p == ':')
	{
		if ((sec = digits(p + 1, 2)) < 0 || sec > 59)
			return "must be ISO 8601 with its offset, as 2024-05-06T07:08:09Z";
		p += 3;
		if (*p == '.')
		{
			if (p[1] < '0' || p[1] > '9')
				return "must be ISO 8601 with its offset, as 2024-05-06T07:08:09Z";
			for (p++; *p >= '0' && *p <= '9'; p++)
				;
		}
	}
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
		sign = 0;
	else if ((*p == '+' || *p == '-') && (oh = digits(p + 1, 2)) >= 0 && oh <= 15 &&
			 (p[3] == '\0' ||
			  (p[3] == ':' && (om = digits(p + 4, 2)) >= 0 && om <= 59 && p[6] == '\0') ||
			  ((om = digits(p + 3, 2)) >= 0 && om <= 59 && p[5] == '\0')))
		sign = *p == '+' ? 1 : -1;
	else
		return "must be ISO 8601 with its offset (Z or +HH:MM), as 2024-05-06T07:08:09Z";
	t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
		sign * (oh * 3600 + om * 60);
	if (t > now + skew)
		return "is in the future";
	return NULL;
}

/*
 * The text of a number or a string, never through a double: exponents are
 * refused, the rest is pgm_str_to_micro's.
 */
int
read_amount(const json *v, int64_t *micro, const char **why)
{
	pgm_status	st;

	if (v == NULL)
	{
		*why = "missing";
		return 0;
	}
	if (v->type != JSON_NUMBER && v->type != JSON_STRING)
	{
		*why = "not a number";
		return 0;
	}
	if (strpbrk(v->text, "eE"))
	{
		*why = "in exponent notation";
		return 0;
	}
	st = pgm_str_to_micro(v->text, micro);
	if (st == PGM_OUT_OF_RANGE)
	{
		*why = "out of range";
		return 0;
	}
	if (st != PGM_OK)
	{
		*why = "not a whole number of micro-credits";
		return 0;
	}
	if (*micro < 0)
	{
		*why = "negative";
		return 0;
	}
	return 1;
}

/* A role of chat_roles, a string content, tokens in int4, an exact cost. */
const char *
chat_message_problem(const json *m, char *why, size_t whysize)
{
	const json *role = json_get(m, "role"),
			   *content = json_get(m, "content"),
			   *tokens = json_get(m, "tokens"),
			   *cost = json_get(m, "cost");
	int64_t		micro;
	const char *amount_why;
	int			i,
				known = 0;

	if (m->type != JSON_OBJECT)
		return "not an object";
	if (role == NULL || role->type != JSON_STRING)
		return "needs a string role";
	for (i = 0; chat_roles[i]; i++)
		known |= strcmp(role->text, chat_roles[i]) == 0;
	if (!known)
	{
		snprintf(why, whysize, "role must be system, user, assistant or tool, not %.40s",
				 role->text);
		return why;
	}
	if (content == NULL || content->type != JSON_STRING ||
		strlen(content->text) != content->len)
		return "needs a string content (without NUL characters)";
	if (tokens && tokens->type != JSON_NULL)
	{
		char	   *end;
		long long	t;

		errno = 0;
		if (tokens->type != JSON_NUMBER ||
			(t = strtoll(tokens->text, &end, 10), *end != '\0') || errno ||
			t < 0 || t > 2147483647)
			return "tokens must be a whole number from 0 to 2147483647";
	}
	if (cost && cost->type != JSON_NULL && !read_amount(cost, &micro, &amount_why))
	{
		snprintf(why, whysize, "cost is %s", amount_why);
		return why;
	}
	return NULL;
}
