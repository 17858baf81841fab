/*
 * fuzz.h: what the fuzz targets share.  Each target defines
 * LLVMFuzzerTestOneInput, the entry point of libFuzzer; driver.c supplies a
 * main for compilers without libFuzzer.  A target checks its properties
 * with FUZZ_CHECK, which aborts: a failed property is reported like a crash.
 */
#ifndef PGM_FUZZ_H
#define PGM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

#endif
