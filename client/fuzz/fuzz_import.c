/*
 * fuzz_import.c: the checks of pgmarket import that need no server, on any
 * bytes: import_parse (the document as a whole), then every record of every
 * section through the field checks the import applies (uuids, amounts read
 * exactly, chat messages), the way the import walks them.  Accepted values
 * must keep importdoc.h's promises.
 */
#include "fuzz.h"

#include <string.h>

#include "importdoc.h"
#include "pgmarket.h"

/* A string member of o, or NULL (as cmd_import reads them). */
static const char *
str_member(const json *o, const char *key)
{
	const json *v = json_get(o, key);

	return v && v->type == JSON_STRING ? v->text : NULL;
}

/* What is_uuid accepts has the length of a uuid. */
static void
check_uuid(const char *s)
{
	if (is_uuid(s))
		FUZZ_CHECK(strlen(s) == 36);
}

/* An accepted amount is in range; a refused one says why. */
static void
check_amount(const json *v)
{
	int64_t		micro = -1;
	const char *why = NULL;

	if (read_amount(v, &micro, &why))
		FUZZ_CHECK(micro >= 0 && micro < PGM_MICRO_LIMIT);
	else
		FUZZ_CHECK(why != NULL && why[0] != '\0');
}

/*
 * A time: one accepted is of the one shape (date, T or space, hh:mm, an
 * offset at the end) and not past the clock given; a refused one says why.
 */
static void
check_time(const char *s)
{
	const int64_t now = 1767225600;	/* 2026-01-01T00:00:00Z */
	const char *problem;
	size_t		n;

	if (s == NULL)
		return;
	problem = import_time_problem(s, now, 300);
	if (problem != NULL)
	{
		FUZZ_CHECK(problem[0] != '\0');
		return;
	}
	n = strlen(s);
	FUZZ_CHECK(n >= 17 && s[4] == '-' && s[7] == '-' && s[13] == ':');
	FUZZ_CHECK(s[n - 1] == 'Z' || s[n - 1] == 'z' || (s[n - 1] >= '0' && s[n - 1] <= '9'));
	FUZZ_CHECK(strncmp(s, "2100", 4) < 0);
}

/* One input: the document, then each section's records. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		err[512],
				why[128];
	json	   *doc = import_parse((const char *) data, size, err, sizeof(err));
	const json *sec;
	size_t		i,
				k;

	if (doc == NULL)
	{
		FUZZ_CHECK(err[0] != '\0');
		return 0;
	}
	FUZZ_CHECK(doc->type == JSON_OBJECT);

	if ((sec = json_get(doc, "users")) != NULL)
		for (i = 0; i < sec->n; i++)
		{
			check_uuid(sec->keys[i]);
			(void) str_member(sec->items[i], "email");
			check_time(str_member(sec->items[i], "created_at"));
		}
	if ((sec = json_get(doc, "balance_tracker")) != NULL)
		for (i = 0; i < sec->n; i++)
		{
			check_uuid(sec->keys[i]);
			check_amount(json_get(sec->items[i], "total"));
			check_amount(json_get(sec->items[i], "spent"));
		}
	if ((sec = json_get(doc, "transactions")) != NULL)
		for (i = 0; i < sec->n; i++)
		{
			check_uuid(str_member(sec->items[i], "user_id"));
			check_amount(json_get(sec->items[i], "amount"));
			check_time(str_member(sec->items[i], "timestamp"));
		}
	if ((sec = json_get(doc, "api_keys")) != NULL)
		for (i = 0; i < sec->n; i++)
			check_uuid(sec->keys[i]);
	if ((sec = json_get(doc, "chat_history")) != NULL)
		for (i = 0; i < sec->n; i++)
		{
			const json *msgs = json_get(sec->items[i], "messages");

			check_uuid(sec->keys[i]);
			check_uuid(str_member(sec->items[i], "user_id"));
			for (k = 0; msgs && msgs->type == JSON_ARRAY && k < msgs->n; k++)
			{
				const char *problem = chat_message_problem(msgs->items[k], why, sizeof(why));

				FUZZ_CHECK(problem == NULL || problem[0] != '\0');
				check_time(str_member(msgs->items[k], "timestamp"));
			}
		}
	json_free(doc);
	return 0;
}
