/*
 * importdoc.h: the checks of pgmarket import that need no server, each a
 * pure function of its input: the document as a whole (well-formed JSON,
 * an object, each known section of its type) and the fields of a record
 * (uuids, amounts read exactly from their JSON text, chat messages).  The
 * fuzz targets in fuzz/ call these with untrusted bytes.
 */
#ifndef PGM_IMPORTDOC_H
#define PGM_IMPORTDOC_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

/*
 * The document in src, or NULL with err set to why it is refused as a whole
 * ("not valid JSON: line L, column C: ...", "the document must be an
 * object, not array", "section \"users\" must be an object, not string").
 * Free it with json_free.
 */
json	   *import_parse(const char *src, size_t len, char *err, size_t errsize);

/* Is s a uuid in its 8-4-4-4-12 hex form? */
int			is_uuid(const char *s);

/*
 * An amount from a JSON number (its exact text) or a numeric string, in
 * micro-credits: 1 with *micro set (0 <= *micro < PGM_MICRO_LIMIT), or 0
 * with *why set ("missing", "negative", ...).
 */
int			read_amount(const json *v, int64_t *micro, const char **why);

/*
 * Why the time text s of a record cannot be imported, or NULL: it must be
 * ISO 8601 / RFC 3339 with its offset, "2024-05-06T07:08:09.5Z" or
 * "2024-05-06 07:08:09+02:00" (seconds and fraction optional, Z or
 * +HH[:MM] / -HH[:MM]), a real date and time, and not later than now plus
 * skew seconds.
 */
const char *import_time_problem(const char *s, int64_t now, int64_t skew);

/* Why a message of a chat session cannot be imported, or NULL. */
const char *chat_message_problem(const json *m, char *why, size_t whysize);

#endif
