/* The wording of a bad command line that getopt_long itself finds (an unknown option, a
 * missing value, a value given to a flag), shared so that tracevault and tracevaultd say it
 * the same way: "unknown option '--x'", "option '--x' needs a value", "option '--x' takes no
 * value". */
#ifndef TV_COMMON_USAGE_H
#define TV_COMMON_USAGE_H

#include <stddef.h>

/* The argument getopt_long was reading when it returned, given optind before and after the
 * call: argv[optind - 1] once it moved past it, but argv[optind] while it is still inside a
 * group of short options ("-zF": glibc moves optind only after the group's last letter, so
 * argv[optind - 1] would name the argument before the group). */
const char *tv_usage_getopt_arg(char *const *argv, int optind_before, int optind_after);

/* The reason, without the program's prefix, for getopt_long's result c ('?' or ':'; opterr 0
 * and an optstring starting with ':'), given arg = tv_usage_getopt_arg(...) and getopt's
 * optopt.
 * Short options are values below 256 (a long-only option's value may be anything).
 * Writes a NUL-terminated line into buf (cut to len bytes); nothing is allocated. */
void tv_usage_getopt_reason(int c, const char *arg, int optopt, char *buf, size_t len);

#endif
