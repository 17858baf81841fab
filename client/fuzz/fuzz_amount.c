/*
 * fuzz_amount.c: pgm_str_to_micro, the library's reader of amounts, on any
 * text, against a plain reference: whatever it accepts must be the exact
 * value of the text (a sign, digits, at most 6 significant fractional
 * digits, spaces around), inside +-PGM_MICRO_LIMIT; what it refuses must
 * be malformed, inexact or out of range; and pgm_micro_to_str must give
 * back text that reads as the same value.
 */
#include "fuzz.h"

#include <string.h>

#include "pgmarket.h"

/*
 * The reference reading of s: 1 with *micro set when s is an exact amount
 * in range, else 0.  __int128 keeps it free of overflow for any length up
 * to the cap below.
 */
static int
reference(const char *s, int64_t *micro)
{
	__int128	whole = 0;
	int64_t		frac = 0;
	int			neg = 0,
				digits = 0,
				nfrac = 0;

	while (*s == ' ')
		s++;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	for (; *s >= '0' && *s <= '9'; s++, digits++)
		if (whole < PGM_MICRO_LIMIT)
			whole = whole * 10 + (*s - '0');
	if (*s == '.')
		for (s++; *s >= '0' && *s <= '9'; s++, digits++, nfrac++)
		{
			if (nfrac < 6)
				frac = frac * 10 + (*s - '0');
			else if (*s != '0')
				return 0;
		}
	while (*s == ' ')
		s++;
	if (*s != '\0' || digits == 0 || whole >= PGM_MICRO_LIMIT / 1000000)
		return 0;
	for (; nfrac < 6; nfrac++)
		frac *= 10;
	*micro = (int64_t) (whole * 1000000 + frac) * (neg ? -1 : 1);
	return 1;
}

/* One input, as text (up to its first NUL) and as 64 raw bits. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *s = malloc(size + 1);
	char		buf[PGM_AMOUNT_LEN];
	int64_t		micro = 0,
				ref = 0,
				back = 0,
				raw;
	pgm_status	st;
	int			ok;

	FUZZ_CHECK(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	st = pgm_str_to_micro(s, &micro);
	ok = reference(s, &ref);
	FUZZ_CHECK(st == PGM_OK || st == PGM_INVALID_PARAMETER || st == PGM_OUT_OF_RANGE);
	FUZZ_CHECK((st == PGM_OK) == ok);
	if (ok)
	{
		FUZZ_CHECK(micro == ref);
		FUZZ_CHECK(micro > -PGM_MICRO_LIMIT && micro < PGM_MICRO_LIMIT);
		pgm_micro_to_str(micro, buf);
		FUZZ_CHECK(pgm_str_to_micro(buf, &back) == PGM_OK && back == micro);
	}
	free(s);

	/* the other direction, from any 64 bits */
	if (size >= sizeof(raw))
	{
		memcpy(&raw, data, sizeof(raw));
		pgm_micro_to_str(raw, buf);
		FUZZ_CHECK(strlen(buf) < PGM_AMOUNT_LEN);
		if (raw > -PGM_MICRO_LIMIT && raw < PGM_MICRO_LIMIT)
			FUZZ_CHECK(pgm_str_to_micro(buf, &back) == PGM_OK && back == raw);
		else
			FUZZ_CHECK(pgm_str_to_micro(buf, &back) == PGM_OUT_OF_RANGE);
	}
	return 0;
}
