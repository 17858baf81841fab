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
