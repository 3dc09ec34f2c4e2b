/* Metrics both binaries export (--metrics-addr): counters, gauges and duration histograms kept
 * as plain uint64_t that the hot paths bump with relaxed atomics (no lock, no allocation), a
 * table naming them, and the writer of the Prometheus text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/) that the HTTP endpoint
 * (common/metrics_http.h) serves from its own thread. */
#ifndef TV_COMMON_METRICS_H
#define TV_COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Counters and gauges are uint64_t fields of the owner's struct; every write goes through these
 * (relaxed atomics: the exposition thread reads them while the owner's thread writes). A counter
 * only grows; a gauge is set. */
static inline void tv_metric_add(uint64_t *v, uint64_t n)
{
	__atomic_fetch_add(v, n, __ATOMIC_RELAXED);
}

static inline void tv_metric_set(uint64_t *v, uint64_t x)
{
	__atomic_store_n(v, x, __ATOMIC_RELAXED);
}

static inline uint64_t tv_metric_get(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

/* The most upper bounds one histogram has (its +Inf bucket comes on top). */
#define TV_HISTOGRAM_MAX_BOUNDS 16

/* A histogram of durations with fixed upper bounds (ns, ascending, at most
 * TV_HISTOGRAM_MAX_BOUNDS), exposed in seconds. buckets[i] counts the observations in
 * (bounds_ns[i-1], bounds_ns[i]], buckets[nbounds] those above every bound: not cumulative, so
 * one observation is one atomic add; the writer sums them, and its _count is their sum, so a
 * scrape racing an observation never shows a +Inf bucket different from _count. */
struct tv_histogram {
	const uint64_t *bounds_ns; /* static table, not owned */
	size_t nbounds;
	uint64_t buckets[TV_HISTOGRAM_MAX_BOUNDS + 1];
	uint64_t sum_ns;
};

/* Latency buckets for both binaries' duration histograms, in ns: 0.5 ms to 10 s (a commit's
 * fsyncs take ms on a disk and more on a busy one; a query runs from ms to minutes). */
#define TV_METRICS_LATENCY_BOUNDS 14
extern const uint64_t tv_metrics_latency_bounds_ns[TV_METRICS_LATENCY_BOUNDS];

/* Set h empty over bounds_ns[0..n) (n <= TV_HISTOGRAM_MAX_BOUNDS; the table must outlive h).
 * Returns 0 or -EINVAL (n too large, or bounds not ascending). */
int tv_histogram_init(struct tv_histogram *h, const uint64_t *bounds_ns, size_t n);
/* Count one observation of ns nanoseconds. Any thread, no lock. */
void tv_histogram_observe_ns(struct tv_histogram *h, uint64_t ns);

enum tv_metric_type { TV_METRIC_COUNTER, TV_METRIC_GAUGE, TV_METRIC_HISTOGRAM };

/* One exposed series. Entries of one name follow each other in a table (with different labels):
 * the writer gives the name one # HELP and # TYPE, from the first of them. */
struct tv_metric {
	const char *name;   /* Prometheus conventions: tracevault_..._total for counters, a unit
			     * suffix (_bytes, _seconds) */
	const char *help;   /* one line; backslashes and newlines are escaped */
	enum tv_metric_type type;
	const char *labels; /* NULL, or the label pairs as written inside {}: reason="ring_full" */
	const uint64_t *value;          /* counter or gauge (read with tv_metric_get) */
	const struct tv_histogram *hist; /* histogram */
};

/* The build's identity, the first series of both binaries' tables (the Prometheus *_build_info
 * convention: a gauge of 1 whose labels a query joins onto other series):
 * tracevault_build_info{version="X.Y.Z"} 1. TV_VERSION comes from the build. */
extern const uint64_t tv_metrics_build_info_value; /* 1 */
#define TV_METRICS_BUILD_INFO                                                              \
	{ "tracevault_build_info", "The build of this process: its version in the label, "  \
	  "value always 1.", TV_METRIC_GAUGE, "version=\"" TV_VERSION "\"",                   \
	  &tv_metrics_build_info_value, NULL }

/* What one endpoint exposes: a table (owned by the caller, outliving the endpoint) and an
 * optional hook run before each exposition on the endpoint's thread, for values read at scrape
 * time (a statvfs, another module's locked stats) that it stores into table fields. */
struct tv_metrics {
	const struct tv_metric *v;
	size_t n;
	void (*collect)(void *arg);
	void *collect_arg;
};

/* Run m's collect hook, then write every series in the text format into *out (malloc'd, the
 * caller frees; *len bytes, NUL-terminated). Returns 0, -EINVAL for a histogram or value entry
 * missing its pointer, or -ENOMEM. */
int tv_metrics_render(const struct tv_metrics *m, char **out, size_t *len);

#endif
