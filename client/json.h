/*
 * json.h: a small JSON reader for pgmarket import.  Numbers keep their
 * source text (never converted to double), so amounts are read exactly;
 * strings are decoded to UTF-8; objects keep their members in order.
 * What a document may not do (it is refused, never truncated or clamped):
 * hold a string that is not UTF-8 or holds \u0000, repeat a member name in
 * an object, write an integer that does not fit in int64_t, nest deeper
 * than 64 levels.
 */
#ifndef PGM_JSON_H
#define PGM_JSON_H

#include <stddef.h>
#include <stdio.h>

typedef enum
{
	JSON_NULL,
	JSON_FALSE,
	JSON_TRUE,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT
} json_type;

typedef struct json json;

struct json
{
	json_type	type;
	char	   *text;			/* NUMBER: source text; STRING: decoded */
	size_t		len;			/* NUMBER, STRING: bytes (no NUL in them) */
	size_t		n;				/* ARRAY, OBJECT: members */
	char	  **keys;			/* OBJECT */
	json	  **items;			/* ARRAY, OBJECT */
	int			line;			/* where the value starts */
};

/*
 * Parses a whole document; NULL with err ("line L, column C: ...") set.
 * Columns count bytes from 1.
 */
json	   *json_parse(const char *src, size_t len, char *err, size_t errsize);
void		json_free(json *v);
/* The member of an object, or NULL. */
json	   *json_get(const json *obj, const char *key);
const char *json_type_name(json_type t);
/* Writes s as a JSON string literal. */
void		json_write_string(FILE *f, const char *s);
/* Writes v as JSON text (numbers as their source text). */
void		json_write_value(FILE *f, const json *v);
/* v as malloc'd JSON text, or NULL (out of memory). */
char	   *json_to_text(const json *v);

#endif
