/* Sampling decisions for captured exchanges. Traced exchanges follow OpenTelemetry's
 * TraceIdRatioBased sampler bit for bit so tracevault keeps the same traces an OTel SDK would. */
#include "capture/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "capture/mix64.h"

/*
 * Reference: opentelemetry-java, sdk/trace/src/main/java/io/opentelemetry/sdk/trace/samplers/
 * TraceIdRatioBasedSampler.java (and TraceIdHex.getTraceIdRandomPart = the rightmost 16 hex
 * chars of the trace id read as a big-endian signed Java long):
 *
 *   idUpperBound = ratio == 0 ? Long.MIN_VALUE : ratio == 1 ? Long.MAX_VALUE
 *                                               : (long) (ratio * Long.MAX_VALUE);
 *   sample      <=> Math.abs(lowerLong(traceId)) < idUpperBound
 *
 * In Java, ratio * Long.MAX_VALUE is a double product (Long.MAX_VALUE rounds to 2^63) and the
 * cast truncates toward zero; Math.abs(Long.MIN_VALUE) stays Long.MIN_VALUE (negative), so a
 * lower half of 0x8000000000000000 is always sampled for ratio > 0. Both quirks are reproduced.
 * One deliberate difference: ratio 1 keeps everything here (Java drops the ids whose |lower|
 * is exactly Long.MAX_VALUE), because ratio 1 is our "sampling off" default and the capture
 * must not drop any exchange unasked.
 */

int tv_sampler_init(struct tv_sampler *s, double ratio)
{
	if (!(ratio > 0.0 && ratio <= 1.0)) /* also rejects NaN */
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->ratio = ratio;
	s->keep_all = ratio == 1.0;
	s->id_upper_bound = s->keep_all ? INT64_MAX : (int64_t)(ratio * (double)INT64_MAX);
	return 0;
}

int tv_sampler_parse_ratio(const char *str, double *ratio)
{
	char *end;
	double v;

	if (!str || !*str)
		return -EINVAL;
	errno = 0;
	v = strtod(str, &end);
	if (errno || end == str || *end || !isfinite(v) || !(v > 0.0 && v <= 1.0))
		return -EINVAL;
	*ratio = v;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* OTel's comparison for a lower-64-bit value. */
static bool keep_lower(const struct tv_sampler *s, uint64_t lower)
{
	int64_t v = (int64_t)lower;
	/* Java Math.abs: -INT64_MIN overflows and stays INT64_MIN */
	int64_t a = v == INT64_MIN ? INT64_MIN : (v < 0 ? -v : v);

	return a < s->id_upper_bound;
}

bool tv_sampler_keep_trace(const struct tv_sampler *s, const char *trace_id)
{
	uint64_t lower = 0;
	int i, h;

	if (s->keep_all)
		return true;
	if (!trace_id || strlen(trace_id) != 32)
		return true;
	for (i = 0; i < 32; i++)
		if (hexval(trace_id[i]) < 0)
			return true;
	for (i = 16; i < 32; i++) {
		h = hexval(trace_id[i]);
		lower = lower << 4 | (uint64_t)h;
	}
	return keep_lower(s, lower);
}

bool tv_sampler_keep_conn(const struct tv_sampler *s, uint64_t conn_id, uint64_t conn_gen)
{
	if (s->keep_all)
		return true;
	/* the same comparison as for trace ids, on a hash standing in for the random part */
	return keep_lower(s, tv_mix64(conn_id ^ tv_mix64(conn_gen + 0x9e3779b97f4a7c15ull)));
}

bool tv_sampler_keep(const struct tv_sampler *s, const char *trace_id, uint64_t conn_id,
		     uint64_t conn_gen)
{
	if (trace_id && *trace_id)
		return tv_sampler_keep_trace(s, trace_id);
	return tv_sampler_keep_conn(s, conn_id, conn_gen);
}
