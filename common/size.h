/* Byte sizes as both binaries read and print them: decimal digits with an optional K, M or G
 * suffix (binary: KiB, MiB, GiB; "KiB" etc. accepted too), e.g. "4096", "64K", "16M". */
#ifndef TV_COMMON_SIZE_H
#define TV_COMMON_SIZE_H

#include <stddef.h>
#include <stdint.h>

/* The digit run every number of both binaries' command lines starts with: a non-empty run of
 * decimal digits at *p into *out, *p advanced past it. By hand rather than strtoull, which
 * takes a sign, leading spaces and (base 0) a prefix. Returns 0, -EINVAL when *p is not a
 * digit, or -ERANGE past 64 bits (*p and *out untouched on error). */
int tv_parse_digits(const char **p, uint64_t *out);

/* Parse the whole of s into *out_bytes. No sign, no space, no fraction. Returns 0, -EINVAL when
 * s is not a size, or -ERANGE when it does not fit in 64 bits. The bound of a particular option
 * is its owner's struct tv_limit (common/limit.h), checked after this. */
int tv_size_parse(const char *s, uint64_t *out_bytes);

/* Write bytes exactly, with the largest suffix that divides it: 1024 -> "1K", 33554432 ->
 * "32M", 1000 -> "1000", 0 -> "0". Returns the length written (without the NUL), or -ENOSPC
 * when len is too small (buf then holds ""). */
int tv_size_format(uint64_t bytes, char *buf, size_t len);

#endif
