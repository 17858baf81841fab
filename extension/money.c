/*-------------------------------------------------------------------------
 *
 * money.c
 *	  Exact conversion between numeric credits and int64 micro-credits.
 *
 * An amount is accepted only when it is a finite, positive, whole number of
 * micro-credits below 9,000,000,000,000 credits: 1.0000001 is refused, never
 * rounded, while 1.0000000 is fine.  The check reads numeric's own text form
 * digit by digit, so no floating point is ever involved.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(pgm_credits);

/*
 * Parse a numeric into micro-credits without raising an error; the caller
 * decides how to report a failure (deduct_batch reports it per charge).
 *
 * The checks come in a fixed order: not finite, then zero or negative, then
 * at or above the limit, then finer than a micro-credit.  The whole part is
 * compared with the limit while it is read, digit by digit, and nothing is
 * multiplied until it is known to be below 9,000,000,000,000: a value of 14
 * digits or more is refused without being accumulated at all, and a value of
 * 13 digits never comes near int64's range (10^13 * 10^6 would not fit, but
 * 9 * 10^12 * 10^6 does).  numeric_out writes neither an exponent nor
 * leading zeros, and every fractional digit of the scale, so the text is
 * read in one pass whatever its length.
 */
PgmAmountError
pgm_numeric_to_micro_noerror(Datum num, int64 *micro)
{
	Numeric		n = DatumGetNumeric(num);
	char	   *s;
	const char *p;
	int64		whole = 0;
	int64		frac = 0;
	int			digits = 0;
	int			fdigits = 0;
	bool		nonzero = false;
	PgmAmountError result = PGM_AMOUNT_OK;

	if (numeric_is_nan(n) || numeric_is_inf(n))
		return PGM_AMOUNT_NOT_FINITE;

	s = DatumGetCString(DirectFunctionCall1(numeric_out, num));
	p = s;
	if (*p == '-')
	{
		pfree(s);
		return PGM_AMOUNT_NOT_POSITIVE;
	}

	/* whole part: below PGM_MAX_MICRO / PGM_MICRO_PER_CREDIT credits */
	for (; *p >= '0' && *p <= '9'; p++)
	{
		if (digits == 0 && *p == '0')
			continue;			/* leading zeros */
		nonzero = true;
		if (++digits > 13)
		{
			result = PGM_AMOUNT_TOO_LARGE;
			break;
		}
		whole = whole * 10 + (*p - '0');	/* < 10^13: cannot overflow */
	}
	if (result == PGM_AMOUNT_OK && whole >= PGM_MAX_MICRO / PGM_MICRO_PER_CREDIT)
		result = PGM_AMOUNT_TOO_LARGE;
	if (result == PGM_AMOUNT_OK && *p == '.')
	{
		for (p++; *p >= '0' && *p <= '9'; p++)
		{
			if (*p != '0')
				nonzero = true;
			if (fdigits < 6)
				frac = frac * 10 + (*p - '0');
			else if (*p != '0' && result == PGM_AMOUNT_OK)
				result = PGM_AMOUNT_TOO_PRECISE;
			fdigits++;
		}
		for (; fdigits < 6; fdigits++)
			frac *= 10;
	}
	pfree(s);
	if (!nonzero)
		return PGM_AMOUNT_ZERO;
	if (result != PGM_AMOUNT_OK)
		return result;

	/* whole < 9 * 10^12 and frac < 10^6: the sum is below PGM_MAX_MICRO */
	*micro = whole * PGM_MICRO_PER_CREDIT + frac;
	Assert(*micro > 0 && *micro < PGM_MAX_MICRO);
	return PGM_AMOUNT_OK;
}

/* The SQLSTATE that an amount error maps to (for deduct_batch's results). */
int
pgm_amount_error_sqlstate(PgmAmountError err)
{
	return err == PGM_AMOUNT_TOO_LARGE ? ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE
		: ERRCODE_INVALID_PARAMETER_VALUE;
}

/*
 * What pgm_numeric_to_micro says of each error, after the argument's name
 * and its value, and the detail it adds (none where NULL).
 */
static const struct
{
	const char *message;
	const char *detail;
}			amount_errors[] = {
	[PGM_AMOUNT_NOT_FINITE] = {"is not a finite number", NULL},
	[PGM_AMOUNT_ZERO] = {"must be greater than zero", NULL},
	[PGM_AMOUNT_NOT_POSITIVE] = {"must be greater than zero", NULL},
	[PGM_AMOUNT_TOO_PRECISE] = {"is not a whole number of micro-credits",
	"Amounts are exact to six fractional digits and are never rounded."},
	[PGM_AMOUNT_TOO_LARGE] = {"is out of range",
	"Amounts and balances stay below 9000000000000 credits."},
};

/*
 * Parse a numeric argument into micro-credits, raising 22023 or 22003
 * (pgm_amount_error_sqlstate) with a message that names the argument and
 * its value.
 */
int64
pgm_numeric_to_micro(Datum num, const char *argname)
{
	int64		micro = 0;
	PgmAmountError err = pgm_numeric_to_micro_noerror(num, &micro);
	char	   *shown;

	if (err == PGM_AMOUNT_OK)
		return micro;

	shown = pgm_shown_value(DatumGetCString(DirectFunctionCall1(numeric_out, num)), 60);
	ereport(ERROR,
			(errcode(pgm_amount_error_sqlstate(err)),
			 errmsg("%s %s %s", argname, shown, amount_errors[err].message),
			 amount_errors[err].detail ?
			 errdetail("%s", amount_errors[err].detail) : 0));
	return 0;					/* keep compiler quiet */
}

/* Micro-credits as numeric credits, always with six fractional digits. */
Datum
pgm_micro_to_numeric(int64 micro)
{
	return NumericGetDatum(int64_div_fast_to_numeric(micro, 6));
}

/* Micro-credits as text, for messages. */
char *
pgm_micro_to_cstring(int64 micro)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out,
											   pgm_micro_to_numeric(micro)));
}

/*
 * credits(bigint): the SQL face of pgm_micro_to_numeric, used by the views.
 */
Datum
pgm_credits(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(pgm_micro_to_numeric(PG_GETARG_INT64(0)));
}
