/* What the C benchmark clients (bench_ingest.c, otlp_load.c) share: their options' numbers,
 * the process's CPU time and the latency percentiles they print. Built into each of them
 * (bench/CMakeLists.txt); no library of the project depends on it. */
#ifndef TV_BENCH_UTIL_H
#define TV_BENCH_UTIL_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

/* Option --name's value s as a decimal integer in [lo, hi] into *out. On anything else
 * (empty, a sign, trailing text, out of range) prints "prog: invalid --name: 's' (lo to hi)"
 * to stderr and returns -EINVAL, *out untouched. */
int tv_bench_parse_size(const char *prog, const char *name, const char *s, size_t lo,
			size_t hi, size_t *out);

/* A numeric option: getopt_long's val for it, its bounds, where its value goes. */
struct tv_bench_num {
	int val;
	size_t lo, hi;
	size_t *out;
};

/* When c (getopt_long's answer) is the val of one of nums[0, n): its argument arg parsed by
 * tv_bench_parse_size under the option's name in opts, and 1, or -EINVAL (the message
 * printed). 0 when c is none of them. */
int tv_bench_num_opt(const char *prog, const struct option *opts,
		     const struct tv_bench_num *nums, size_t n, int c, const char *arg);

/* The process's CPU time, user plus system, in seconds (getrusage RUSAGE_SELF: every
 * thread). */
double tv_bench_cpu_s(void);

/* Sorts ns[0, n) (nanoseconds) and prints "PREFIX_p50_us", "PREFIX_p99_us" and
 * "PREFIX_max_us" lines (microseconds, nearest-rank percentiles, no decimals) to stdout.
 * n > 0. */
void tv_bench_print_latency(const char *prefix, uint64_t *ns, size_t n);

#endif
