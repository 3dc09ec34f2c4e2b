/* The benchmark clients' shared pieces (bench_util.h). */
#include "bench_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

int tv_bench_parse_size(const char *prog, const char *name, const char *s, size_t lo,
			size_t hi, size_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || !*s || *s == '-' || v < lo || v > hi) {
		fprintf(stderr, "%s: invalid --%s: '%s' (%zu to %zu)\n", prog, name, s, lo, hi);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int tv_bench_num_opt(const char *prog, const struct option *opts,
		     const struct tv_bench_num *nums, size_t n, int c, const char *arg)
{
	const char *name = "?";

	for (size_t i = 0; i < n; i++) {
		if (nums[i].val != c)
			continue;
		for (size_t k = 0; opts[k].name; k++)
			if (opts[k].val == c)
				name = opts[k].name;
		return tv_bench_parse_size(prog, name, arg, nums[i].lo, nums[i].hi, nums[i].out) ?
			       -EINVAL : 1;
	}
	return 0;
}

double tv_bench_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (p in (0, 100]) of a sorted array of n > 0 values. */
static uint64_t pct(const uint64_t *v, size_t n, double p)
{
	size_t k = (size_t)(p / 100.0 * n + 0.999999);

	return v[k ? (k > n ? n : k) - 1 : 0];
}

void tv_bench_print_latency(const char *prefix, uint64_t *ns, size_t n)
{
	qsort(ns, n, sizeof(*ns), cmp_u64);
	printf("%s_p50_us %.0f\n", prefix, pct(ns, n, 50) / 1e3);
	printf("%s_p99_us %.0f\n", prefix, pct(ns, n, 99) / 1e3);
	printf("%s_max_us %.0f\n", prefix, ns[n - 1] / 1e3);
}
