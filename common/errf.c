/* tv_errf (see errf.h). */
#include "common/errf.h"

#include <stdarg.h>
#include <stdio.h>

int tv_errf(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}
