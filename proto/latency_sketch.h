/* The latency sketch of Summary (PROTOCOL.md "Summary", LatencySketch): DDSketch-style
 * counting (Masson, Rim, Lee, PVLDB 12(12) 2019) on the bucket boundaries of the OpenTelemetry
 * base-2 exponential histogram at scale 6. Bucket i holds the latencies in (base^i, base^(i+1)],
 * base = 2^(1/64); latency 0 has a counter of its own. A quantile is read as the bucket's
 * relative midpoint 2*base^(i+1)/(base+1), so for the item x of rank floor(q*(n-1)) of the
 * sorted latencies the estimate is within TV_SKETCH_ALPHA*x of x, whatever the distribution.
 * Two sketches merge exactly (bucket counts add), so a summary over several servers equals
 * the summary of their union. Shared by the server (counts) and the client (merges, reads). */
#ifndef TV_PROTO_LATENCY_SKETCH_H
#define TV_PROTO_LATENCY_SKETCH_H

#include <stddef.h>
#include <stdint.h>

#include "tracevault.pb-c.h"

#define TV_SKETCH_SCALE 6
/* Buckets per power of two: 2^TV_SKETCH_SCALE. */
#define TV_SKETCH_PER_OCTAVE 64
/* The relative error bound (base-1)/(base+1) for base = 2^(1/64): 0.5415 %. */
#define TV_SKETCH_ALPHA 0.005415159415902577
/* Indexes of latencies 1 ns .. 2^64-1 ns: -1 .. 4095, so a sketch holds at most this many
 * buckets (8 bytes each). */
#define TV_SKETCH_MIN_INDEX (-1)
#define TV_SKETCH_MAX_INDEX (64 * TV_SKETCH_PER_OCTAVE - 1)
#define TV_SKETCH_MAX_BUCKETS (TV_SKETCH_MAX_INDEX - TV_SKETCH_MIN_INDEX + 1)

/* Extra buckets a run takes on the side it grows (8 bytes each). */
#define TV_SKETCH_GROW_SLACK 8

/* A dense run of buckets offset .. offset+n-1 (counts malloc'd, n == 0: none yet). Zero it to
 * start; release with tv_sketch_free. */
struct tv_sketch {
	uint64_t zero_count;
	int32_t offset;
	uint32_t n;
	uint64_t *counts;
};

/* The bucket of a latency of x_ns > 0: ceil(64*log2(x)) - 1, exact at powers of two. */
int tv_sketch_index(uint64_t x_ns);
/* The estimate a quantile in bucket i reads: 2*base^(i+1)/(base+1) ns. */
double tv_sketch_bucket_value(int i);

/* Count one latency of x_ns, n times. Returns 0, or -ENOMEM (s unchanged). *grown_bytes, when
 * not NULL, is set to the bytes the bucket array grew by (for the caller's memory budget). */
int tv_sketch_add(struct tv_sketch *s, uint64_t x_ns, uint64_t n, size_t *grown_bytes);
/* The bytes tv_sketch_add(s, x_ns) would grow the bucket array by (0 when x_ns's bucket is
 * already covered), so a caller can charge them to a budget first. */
size_t tv_sketch_growth_bytes(const struct tv_sketch *s, uint64_t x_ns);
/* The same two for a latency > 0 whose bucket i (tv_sketch_index) the caller has already
 * computed: one log2 per value for a caller that charges before it adds. */
int tv_sketch_add_index(struct tv_sketch *s, int i, uint64_t n, size_t *grown_bytes);
size_t tv_sketch_growth_bytes_index(const struct tv_sketch *s, int i);
/* Add every count of src to dst. Returns 0, or -ENOMEM (dst unchanged). */
int tv_sketch_merge(struct tv_sketch *dst, const struct tv_sketch *src, size_t *grown_bytes);
/* Latencies counted. */
uint64_t tv_sketch_count(const struct tv_sketch *s);
/* The estimate of quantile q (0 <= q <= 1) of the counted latencies: the value of the bucket
 * holding the item of rank floor(q*(count-1)) (0-based), clamped to [min_ns, max_ns] (the
 * exact extremes, which the caller keeps; ranks 0 and count-1 read them). 0 when nothing is
 * counted. */
double tv_sketch_quantile(const struct tv_sketch *s, double q, uint64_t min_ns, uint64_t max_ns);
void tv_sketch_free(struct tv_sketch *s);

/* The sketch as a LatencySketch message, the run from its first to its last counted bucket
 * (offset 0 and no buckets when only zeros or nothing are counted): m's bucket_counts point
 * into s (valid while s is unchanged); m must be initialized. */
void tv_sketch_to_pb(const struct tv_sketch *s, Tracevault__V1__LatencySketch *m);
/* Add the counts of m to s. Returns 0, -EINVAL when m is not a sketch of scale 6 whose buckets
 * lie in TV_SKETCH_MIN_INDEX..TV_SKETCH_MAX_INDEX, or -ENOMEM. */
int tv_sketch_merge_pb(struct tv_sketch *s, const Tracevault__V1__LatencySketch *m);

#endif
