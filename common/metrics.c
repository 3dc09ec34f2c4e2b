/* The metrics registry's histograms and its Prometheus text exposition writer (format 0.0.4:
 * "# HELP name text", "# TYPE name counter|gauge|histogram", then "name{labels} value" lines;
 * a histogram as cumulative name_bucket{le="..."} lines ending with le="+Inf", then name_sum and
 * name_count). See common/metrics.h. */
#include "common/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

const uint64_t tv_metrics_latency_bounds_ns[TV_METRICS_LATENCY_BOUNDS] = {
	500000ull,      1000000ull,     2500000ull,     5000000ull,    10000000ull,
	25000000ull,    50000000ull,    100000000ull,   250000000ull,  500000000ull,
	1000000000ull,  2500000000ull,  5000000000ull,  10000000000ull,
};

const uint64_t tv_metrics_build_info_value = 1;

int tv_histogram_init(struct tv_histogram *h, const uint64_t *bounds_ns, size_t n)
{
	if (n > TV_HISTOGRAM_MAX_BOUNDS)
		return -EINVAL;
	for (size_t i = 1; i < n; i++)
		if (bounds_ns[i] <= bounds_ns[i - 1])
			return -EINVAL;
	memset(h, 0, sizeof(*h));
	h->bounds_ns = bounds_ns;
	h->nbounds = n;
	return 0;
}

void tv_histogram_observe_ns(struct tv_histogram *h, uint64_t ns)
{
	size_t i = 0;

	/* a linear scan: at most 16 compares, fewer than a lock */
	while (i < h->nbounds && ns > h->bounds_ns[i])
		i++;
	tv_metric_add(&h->buckets[i], 1);
	tv_metric_add(&h->sum_ns, ns);
}

/* A growing output buffer; err sticks at the first failure. */
struct out {
	char *p;
	size_t len, cap;
	int err;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->err)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->err = -EINVAL;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = o->cap * 2 > o->len + (size_t)n + 1 ? o->cap * 2 :
								   o->len + (size_t)n + 1;
		char *p = realloc(o->p, cap);

		if (!p) {
			o->err = -ENOMEM;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
}

/* The HELP text with '\' and newline escaped, as the format requires. */
static void put_help(struct out *o, const char *name, const char *help)
{
	put(o, "# HELP %s ", name);
	for (const char *s = help; *s; s++) {
		if (*s == '\\')
			put(o, "\\\\");
		else if (*s == '\n')
			put(o, "\\n");
		else
			put(o, "%c", *s);
	}
	put(o, "\n");
}

static const char *const TYPE_NAME[] = {
	[TV_METRIC_COUNTER] = "counter",
	[TV_METRIC_GAUGE] = "gauge",
	[TV_METRIC_HISTOGRAM] = "histogram",
};

/* ns as seconds, exactly (a bound or sum is whole ns): "0.0005", "10", "1.25" */
static void put_seconds(struct out *o, uint64_t ns)
{
	uint64_t s = ns / TV_NS_PER_S, frac = ns % TV_NS_PER_S;
	char digits[10];
	int end;

	if (!frac) {
		put(o, "%llu", (unsigned long long)s);
		return;
	}
	snprintf(digits, sizeof(digits), "%09llu", (unsigned long long)frac);
	for (end = 9; end > 0 && digits[end - 1] == '0'; end--)
		;
	put(o, "%llu.%.*s", (unsigned long long)s, end, digits);
}

static void put_histogram(struct out *o, const struct tv_metric *m)
{
	const struct tv_histogram *h = m->hist;
	const char *sep = m->labels ? "," : "";
	const char *labels = m->labels ? m->labels : "";
	uint64_t cum = 0;

	for (size_t i = 0; i <= h->nbounds; i++) {
		cum += tv_metric_get(&h->buckets[i]);
		put(o, "%s_bucket{%s%sle=\"", m->name, labels, sep);
		if (i < h->nbounds)
			put_seconds(o, h->bounds_ns[i]);
		else
			put(o, "+Inf");
		put(o, "\"} %llu\n", (unsigned long long)cum);
	}
	put(o, "%s_sum%s%s%s ", m->name, m->labels ? "{" : "", labels, m->labels ? "}" : "");
	put_seconds(o, tv_metric_get(&h->sum_ns));
	put(o, "\n%s_count%s%s%s %llu\n", m->name, m->labels ? "{" : "", labels,
	    m->labels ? "}" : "", (unsigned long long)cum);
}

int tv_metrics_render(const struct tv_metrics *m, char **out, size_t *len)
{
	struct out o = { .cap = 4096 };

	*out = NULL;
	*len = 0;
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].type == TV_METRIC_HISTOGRAM ? !m->v[i].hist : !m->v[i].value)
			return -EINVAL;
	o.p = malloc(o.cap);
	if (!o.p)
		return -ENOMEM;
	if (m->collect)
		m->collect(m->collect_arg);
	for (size_t i = 0; i < m->n; i++) {
		const struct tv_metric *e = &m->v[i];

		if (i == 0 || strcmp(e->name, m->v[i - 1].name)) {
			put_help(&o, e->name, e->help);
			put(&o, "# TYPE %s %s\n", e->name, TYPE_NAME[e->type]);
		}
		if (e->type == TV_METRIC_HISTOGRAM)
			put_histogram(&o, e);
		else if (e->labels)
			put(&o, "%s{%s} %llu\n", e->name, e->labels,
			    (unsigned long long)tv_metric_get(e->value));
		else
			put(&o, "%s %llu\n", e->name, (unsigned long long)tv_metric_get(e->value));
	}
	if (o.err) {
		free(o.p);
		return o.err;
	}
	*out = o.p;
	*len = o.len;
	return 0;
}
