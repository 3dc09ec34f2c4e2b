/* Consistent sampling of captured exchanges (`tracevault capture --sample-ratio`): by W3C trace
 * id exactly as OpenTelemetry's TraceIdRatioBased sampler decides, else by connection. */
#ifndef TV_SAMPLER_H
#define TV_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

struct tv_sampler {
	double ratio;
	int64_t id_upper_bound; /* OTel's idUpperBound for ratio */
	bool keep_all;          /* ratio 1: sampling is off */
};

/* ratio must be in (0, 1]; returns 0 or -EINVAL. */
int tv_sampler_init(struct tv_sampler *s, double ratio);

/* Strict parse of a --sample-ratio argument: a finite decimal in (0, 1]. 0 or -EINVAL. */
int tv_sampler_parse_ratio(const char *str, double *ratio);

/* The OTel decision for a trace id given as 32 lowercase hex chars. A string that is not such
 * an id is kept: nothing is dropped on input we cannot judge. */
bool tv_sampler_keep_trace(const struct tv_sampler *s, const char *trace_id);

/* The decision for an exchange without a trace id: a hash of its connection's identity, so all
 * exchanges of one connection share it. */
bool tv_sampler_keep_conn(const struct tv_sampler *s, uint64_t conn_id, uint64_t conn_gen);

/* trace_id non-empty: by trace id; else by connection. */
bool tv_sampler_keep(const struct tv_sampler *s, const char *trace_id, uint64_t conn_id,
		     uint64_t conn_gen);

#endif
