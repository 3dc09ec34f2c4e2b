/* The HTTP status selector both binaries read: the CLI's --status (client/cli/filter_args.c)
 * and the HTTP API's status= parameter (server/http_api.c), so that the two accept exactly
 * the same values and refuse the rest the same way. */
#ifndef TV_COMMON_STATUS_RANGE_H
#define TV_COMMON_STATUS_RANGE_H

#include <stddef.h>

/* The accepted forms, as an error message lists them. */
#define TV_STATUS_RANGE_FORMS "Nxx, NNN, NNN-NNN (100 to 999) or none"

/* Parse one item s[0..n) (not NUL-terminated; nothing around it: no space, no sign) into the
 * inclusive range [*lo, *hi] of HTTP status codes (RFC 9110 section 15.1: three digits; the
 * registered classes are 1xx to 5xx, but a status line may carry any of 100 to 999 and the
 * capture and put store what it carried, so each stored code can be selected): "none" is
 * [0, 0] (an exchange without a response), "5xx" is [500, 599], "404" is [404, 404],
 * "400-499" is [400, 499] (lo <= hi). Returns 0, or -EINVAL for anything else (*lo and *hi
 * then untouched). */
int tv_status_range_parse(const char *s, size_t n, unsigned *lo, unsigned *hi);

#endif
