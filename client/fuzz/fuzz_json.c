/*
 * fuzz_json.c: json_parse on any bytes.  Besides surviving them under the
 * sanitizers, a parse must keep the promises of json.h (errors carry a line
 * and a column; strings hold no NUL; integers fit in int64_t; no member name
 * repeats), and what json_write_string writes of an accepted document must
 * parse back to the same document.
 */
#include "fuzz.h"

#include <string.h>

#include "json.h"

/* The promises of json.h about one parsed value, recursively. */
static void
check_value(const json *v)
{
	size_t		i,
				k;

	FUZZ_CHECK(v != NULL);
	FUZZ_CHECK(v->line >= 1);
	switch (v->type)
	{
		case JSON_STRING:
		case JSON_NUMBER:
			FUZZ_CHECK(v->text != NULL && strlen(v->text) == v->len);
			break;
		case JSON_OBJECT:
			for (i = 0; i < v->n; i++)
			{
				FUZZ_CHECK(v->keys[i] != NULL);
				FUZZ_CHECK(json_get(v, v->keys[i]) == v->items[i]);
				/* pairwise only for small objects: json.c's check is the fast one */
				for (k = 0; v->n <= 64 && k < i; k++)
					FUZZ_CHECK(strcmp(v->keys[k], v->keys[i]) != 0);
			}
			/* FALLTHROUGH */
		case JSON_ARRAY:
			for (i = 0; i < v->n; i++)
				check_value(v->items[i]);
			break;
		default:
			FUZZ_CHECK(v->text == NULL);
	}
}

/* Are a and b the same document? */
static int
same(const json *a, const json *b)
{
	size_t		i;

	if (a->type != b->type || a->n != b->n || a->len != b->len)
		return 0;
	if ((a->type == JSON_STRING || a->type == JSON_NUMBER) &&
		memcmp(a->text, b->text, a->len) != 0)
		return 0;
	for (i = 0; i < a->n; i++)
		if ((a->keys && strcmp(a->keys[i], b->keys[i]) != 0) ||
			!same(a->items[i], b->items[i]))
			return 0;
	return 1;
}

/* One input: the error's form, or the promises and the round trip. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		err[256];
	json	   *v = json_parse((const char *) data, size, err, sizeof(err));
	char	   *text = NULL;
	size_t		textlen = 0;
	FILE	   *f;
	json	   *again;
	int			line;
	size_t		column;

	if (v == NULL)
	{
		FUZZ_CHECK(sscanf(err, "line %d, column %zu: ", &line, &column) == 2);
		FUZZ_CHECK(line >= 1 && column >= 1 && column <= size + 1);
		return 0;
	}
	check_value(v);

	f = open_memstream(&text, &textlen);
	FUZZ_CHECK(f != NULL);
	json_write_value(f, v);
	FUZZ_CHECK(fclose(f) == 0);
	again = json_parse(text, textlen, err, sizeof(err));
	if (again == NULL)
		fprintf(stderr, "written back: %s\nrefused: %s\n", text, err);
	FUZZ_CHECK(again != NULL);
	FUZZ_CHECK(same(v, again));
	json_free(again);
	free(text);
	json_free(v);
	return 0;
}
