/* common/usage.h: one wording for the errors getopt_long finds, in both binaries. */
#include "common/usage.h"

#include <stdio.h>
#include <string.h>

/* optopt names a short option character (not a long-only option's value, not '?') */
static int is_short(int optopt)
{
	return optopt > ' ' && optopt < 127 && optopt != '?';
}

const char *tv_usage_getopt_arg(char *const *argv, int optind_before, int optind_after)
{
	return optind_after == optind_before ? argv[optind_after] : argv[optind_after - 1];
}

void tv_usage_getopt_reason(int c, const char *arg, int optopt, char *buf, size_t len)
{
	int is_long = strncmp(arg, "--", 2) == 0;
	const char *eq = is_long ? strchr(arg, '=') : NULL;

	if (c == ':') {
		if (is_long)
			snprintf(buf, len, "option '%s' needs a value", arg);
		else
			snprintf(buf, len, "option '-%c' needs a value", optopt);
	} else if (is_long && eq && optopt) {
		/* glibc sets optopt to the option's value only when it knows the option: so this
		 * is a flag given "=value", not an unknown "--x=y" */
		snprintf(buf, len, "option '%.*s' takes no value", (int)(eq - arg), arg);
	} else if (!is_long && is_short(optopt)) {
		snprintf(buf, len, "unknown option '-%c'", optopt);
	} else {
		snprintf(buf, len, "unknown option '%s'", arg);
	}
}
