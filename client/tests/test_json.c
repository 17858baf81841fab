/*
 * test_json.c: the JSON reader of pgmarket import and the import's checks
 * that need no server (json.c, importdoc.c), on the inputs that json.h
 * promises to refuse and on a few it must accept.  No database: it runs
 * anywhere.  One line per check, then "# tally: P F" for run.sh.
 */
#include "importdoc.h"
#include "json.h"
#include "pgmarket.h"

#include <stdio.h>
#include <string.h>

static int	n_pass,
			n_fail;

/* Counts and prints one check. */
static void
check(int ok, const char *what, const char *detail)
{
	if (ok)
		n_pass++;
	else
		n_fail++;
	printf("%s - %s%s%s\n", ok ? "ok" : "not ok", what, detail ? ": " : "", detail ? detail : "");
}

/* src must be refused with an error that starts with want. */
static void
refused(const char *what, const char *src, const char *want)
{
	char		err[256];
	json	   *v = json_parse(src, strlen(src), err, sizeof(err));

	check(v == NULL && strncmp(err, want, strlen(want)) == 0, what, v ? "accepted" : err);
	json_free(v);
}

/* src must parse. */
static json *
accepted(const char *what, const char *src)
{
	char		err[256];
	json	   *v = json_parse(src, strlen(src), err, sizeof(err));

	check(v != NULL, what, v ? NULL : err);
	return v;
}

/* read_amount of v must give want (want_why NULL) or fail with want_why. */
static void
amount(const json *v, int64_t want, const char *want_why, const char *what)
{
	int64_t		micro = -1;
	const char *why = NULL;
	int			ok = read_amount(v, &micro, &why);

	if (want_why == NULL)
		check(ok && micro == want, what, ok ? NULL : why);
	else
		check(!ok && strcmp(why, want_why) == 0, what, ok ? "accepted" : why);
}

/* Every check, in the order of json.h's promises, then importdoc.h's. */
int
main(void)
{
	json	   *v;
	char		err[256];

	refused("\\u0000 in a string is refused with its line and column",
			"{\"a\":\n  \"x\\u0000y\"}", "line 2, column 5: \\u0000 in a string");
	refused("\\u0000 in a member name is refused",
			"{\"us\\u0000ers\": {}}", "line 1, column 5: \\u0000");
	refused("a repeated member name is refused at the repetition",
			"{\"users\": {},\n \"users\": {}}",
			"line 2, column 2: member name \"users\" repeated (first at line 1, column 2)");
	refused("a repeated name in a nested object is refused",
			"{\"a\": {\"b\": 1, \"c\": 2, \"b\": 3}}", "line 1, column 24: member name \"b\"");
	refused("an integer above int64 is refused, not clamped",
			"{\"tokens\": 99999999999999999999}",
			"line 1, column 12: integer 99999999999999999999 does not fit in 64 bits");
	refused("INT64_MAX + 1 is refused", "[9223372036854775808]", "line 1, column 2: integer");
	refused("INT64_MIN - 1 is refused", "[-9223372036854775809]", "line 1, column 2: integer");
	refused("invalid UTF-8 is refused", "[\"\xff\"]", "line 1, column 3: invalid UTF-8");
	refused("an overlong UTF-8 form is refused", "[\"\xc0\x80\"]", "line 1, column 3: invalid UTF-8");
	refused("a UTF-8 surrogate is refused", "[\"\xed\xa0\x80\"]", "line 1, column 3: invalid UTF-8");
	refused("a lone surrogate escape is refused", "[\"\\ud800\"]", "line 1, column 3: bad escape");
	refused("an unterminated string is reported at its quote", "[\"abc\\", "line 1, column 2: unterminated");
	refused("65 levels of nesting are refused",
			"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
			"line 1, column 66: nested too deeply");
	refused("a control byte is named by its value", "\x01", "line 1, column 1: unexpected byte 0x01");

	v = accepted("INT64_MIN and INT64_MAX are accepted",
				 "[-9223372036854775808, 9223372036854775807, -0]");
	check(v && v->n == 3 && strcmp(v->items[1]->text, "9223372036854775807") == 0,
		  "integers keep their text", NULL);
	json_free(v);
	v = accepted("a long fraction and a big exponent are numbers, kept as text",
				 "[1.00000000000000000000000001, 1e999999]");
	json_free(v);
	v = accepted("surrogate pairs and UTF-8 are decoded", "[\"\\ud83d\\ude00\", \"\xc3\xa9\"]");
	check(v && strcmp(v->items[0]->text, "\xf0\x9f\x98\x80") == 0 && v->items[0]->len == 4,
		  "U+1F600 from its surrogate pair", NULL);
	json_free(v);

	/* many members: the repetition check is not quadratic, and finds the last one */
	{
		static char big[200000];
		size_t		n = 0;
		int			i;

		n += (size_t) snprintf(big + n, sizeof(big) - n, "{");
		for (i = 0; i < 10000; i++)
			n += (size_t) snprintf(big + n, sizeof(big) - n, "\"k%d\": %d, ", i, i);
		snprintf(big + n, sizeof(big) - n, "\"k9999\": 0}");
		v = json_parse(big, strlen(big), err, sizeof(err));
		check(v == NULL && strstr(err, "member name \"k9999\" repeated") != NULL,
			  "a repetition among 10000 members is found", v ? "accepted" : err);
		json_free(v);
	}

	/* the document as a whole, as pgmarket import refuses it */
	v = import_parse("[1]", 3, err, sizeof(err));
	check(v == NULL && strcmp(err, "the document must be an object, not array") == 0,
		  "import: the document must be an object", err);
	v = import_parse("{\"transactions\": {}}", 20, err, sizeof(err));
	check(v == NULL && strcmp(err, "section \"transactions\" must be an array, not object") == 0,
		  "import: a section of the wrong type", err);
	v = import_parse("{\"users\": {}, \"users\": {}}", 26, err, sizeof(err));
	check(v == NULL && strncmp(err, "not valid JSON: line 1, column 15: member name", 46) == 0,
		  "import: a repeated section", err);

	/* field checks */
	check(is_uuid("0a000000-0000-4000-8000-00000000000F") &&
		  !is_uuid("0a000000-0000-4000-8000-00000000000G") &&
		  !is_uuid("0a000000x0000-4000-8000-000000000001") && !is_uuid(NULL),
		  "is_uuid", NULL);
	v = accepted("amounts", "[8999999999999.999999, 9000000000000, 1.0000001, -1, 1e2, \"0.5\"]");
	if (v && v->n == 6)
	{
		amount(v->items[0], INT64_C(8999999999999999999), NULL, "the largest amount is read exactly");
		amount(v->items[1], 0, "out of range", "9000000000000 is out of range");
		amount(v->items[2], 0, "not a whole number of micro-credits", "below a micro-credit is refused");
		amount(v->items[3], 0, "negative", "a negative amount is refused");
		amount(v->items[4], 0, "in exponent notation", "exponent notation is refused");
		amount(v->items[5], 500000, NULL, "an amount in a string");
	}
	json_free(v);

	printf("# tally: %d %d\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
