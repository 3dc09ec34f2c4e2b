/* What every harness of tests/fuzz uses: a property check that stops the fuzzer with the
 * failed condition and its place (libFuzzer then saves the input as a crash), and a reader of
 * the harness's own input encoding (bytes taken from the front). */
#ifndef TV_FUZZ_CHECK_H
#define TV_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                    \
			abort();                                                           \
		}                                                                          \
	} while (0)

/* The input still to read. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

/* The next byte, 0 once the input is spent. */
static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
	uint8_t v = 0;

	if (in->n) {
		v = in->p[0];
		in->p++;
		in->n--;
	}
	return v;
}

/* The next bytes little-endian as a number of up to 8 bytes (missing bytes are 0). */
static inline uint64_t fuzz_uint(struct fuzz_in *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)fuzz_u8(in) << (8 * i);
	return v;
}

/* Up to want bytes of the input (fewer at its end): *len gets their count. */
static inline const uint8_t *fuzz_bytes(struct fuzz_in *in, size_t want, size_t *len)
{
	const uint8_t *p = in->p;

	*len = want < in->n ? want : in->n;
	in->p += *len;
	in->n -= *len;
	return p;
}

#endif
