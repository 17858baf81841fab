/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Floor: the checks every SQL entry point makes of its arguments, and
 *	  the text helpers of error messages.
 *
 * Functions are not STRICT: a NULL where a value is required is an error
 * (22004) naming the argument, never a silent NULL result.  Short texts
 * (ids, keys, notes) are bounded in characters and refuse control
 * characters (22023); a value shown in a message is cut and made printable
 * so that it cannot forge a line of the server log.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "catalog/pg_collation.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/*
 * A required argument must not be NULL: raise 22004 naming it.  Functions are
 * not STRICT, so that a NULL is an error rather than a silent NULL result.
 */
void
pgm_require_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
}

/*
 * Is a short identifier-like text acceptable: not empty, at most maxlen
 * characters, no control characters?
 */
bool
pgm_text_ok(const char *value, int maxlen)
{
	const char *p;
	int			len = pg_mbstrlen(value);

	if (len == 0 || len > maxlen)
		return false;
	for (p = value; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/*
 * A value as an error message may show it: at most maxchars characters, cut
 * on a character boundary (never half of a multibyte character), "..."
 * after a cut, and every control character shown as "?", so that a value
 * cannot forge a line of the server log.
 */
char *
pgm_shown_value(const char *value, int maxchars)
{
	int			len = strlen(value);
	int			cut = pg_mbcharcliplen(value, len, maxchars);
	char	   *out = palloc(cut + 4);
	int			i;

	for (i = 0; i < cut; i++)
		out[i] = ((unsigned char) value[i] < 0x20 || value[i] == 0x7f) ? '?' : value[i];
	if (cut < len)
		memcpy(out + cut, "...", 3), cut += 3;
	out[cut] = '\0';
	return out;
}

/* The same check, raising 22023 with a message that says what is wrong. */
void
pgm_check_text(const char *argname, const char *value, int maxlen)
{
	if (pgm_text_ok(value, maxlen))
		return;
	if (*value == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname)));
	if (pg_mbstrlen(value) > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" is longer than %d characters",
						argname, pgm_shown_value(value, 40), maxlen)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s \"%s\" contains a control character",
					argname, pgm_shown_value(value, 80))));
}

/* An optional text argument (NULL allowed), checked when present. */
text *
pgm_optional_text(FunctionCallInfo fcinfo, int argno, const char *argname,
				  int maxlen)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		return NULL;
	t = PG_GETARG_TEXT_PP(argno);
	pgm_check_text(argname, text_to_cstring(t), maxlen);
	return t;
}

/* The canonical text of a uuid, for messages. */
char *
pgm_uuid_cstring(Datum uuid)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, uuid));
}

/* An interval as SQL writes it, for messages. */
char *
pgm_interval_cstring(Interval *interval)
{
	return DatumGetCString(DirectFunctionCall1(interval_out,
											   IntervalPGetDatum(interval)));
}

/*
 * A required integer argument from min to max: 22004 when NULL, else 22023
 * "<argname> <value> is out of range" with detail, a format that takes
 * min and max (say "A page holds %d to %d messages.").
 */
int32
pgm_int32_arg(FunctionCallInfo fcinfo, int argno, const char *argname,
			  int32 min, int32 max, const char *detail)
{
	int32		value;

	pgm_require_arg(fcinfo, argno, argname);
	value = PG_GETARG_INT32(argno);
	if (value < min || value > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s %d is out of range", argname, value),
				 errdetail(detail, min, max)));
	return value;
}

/*
 * The routing partition of a user, hashtext(user_id::text) & 65535: the
 * hash PL/Proxy's "RUN ON hashtext(user_id::text)" routes by, written into
 * platform keys and reset tokens so that a proxy finds the owner's node
 * from them alone.
 */
int
pgm_user_partition(Datum user_id)
{
	char	   *s = pgm_uuid_cstring(user_id);
	int32		h = DatumGetInt32(DirectFunctionCall1Coll(hashtext, C_COLLATION_OID,
														  CStringGetTextDatum(s)));

	return h & 0xffff;
}

/* A required short text argument: not NULL (22004), then as above. */
text *
pgm_required_text(FunctionCallInfo fcinfo, int argno, const char *argname,
				  int maxlen)
{
	pgm_require_arg(fcinfo, argno, argname);
	return pgm_optional_text(fcinfo, argno, argname, maxlen);
}
