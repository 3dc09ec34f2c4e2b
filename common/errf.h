/* The reason for a failure, written into the caller's err buffer: the one helper behind every
 * "say why, return the errno" path of both binaries (proto's block checks, the server's data-dir
 * checks, the CLI's time parser), so each of them does not keep its own copy. */
#ifndef TV_COMMON_ERRF_H
#define TV_COMMON_ERRF_H

#include <stddef.h>

/* Format the reason into err (errlen bytes, always NUL-terminated, cut to fit; nothing is
 * written when err is NULL or errlen is 0) and return ret unchanged, so a caller can write
 * `return tv_errf(err, errlen, -EBADMSG, "...", ...);`. */
int tv_errf(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
