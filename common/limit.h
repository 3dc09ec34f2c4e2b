/* The bound of one limit (a size, a time, a count), defined once by the module that enforces
 * it and exported as a const struct tv_limit: the module validates its options with
 * tv_limit_check and the CLIs check and report the same object, so a bound cannot drift
 * between the place that states it and the place that enforces it. */
#ifndef TV_COMMON_LIMIT_H
#define TV_COMMON_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tv_limit {
	uint64_t min, max; /* inclusive, in the unit of the value (bytes, ms, count) */
	bool pow2;         /* the value must also be a power of two */
	uint64_t step;     /* the value must also be a multiple of step (0: any value): a
			    * bound kept in ms that its consumer counts in whole seconds */
};

/* 0 if min <= v <= max (and v is a power of two when pow2, a multiple of step when step),
 * else -ERANGE. */
int tv_limit_check(const struct tv_limit *l, uint64_t v);

/* The bound in words, for a usage message: "1K to 32M", "a power of two, 4K to 1G" (bytes via
 * tv_size_format), or "1 to 86400000" when bytes is false; a step adds ", a multiple of 1000"
 * (in the same unit). Returns the length written (without
 * the NUL), or -ENOSPC when len is too small. */
int tv_limit_format(const struct tv_limit *l, bool bytes, char *buf, size_t len);

#endif
