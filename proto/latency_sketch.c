/* The latency sketch (latency_sketch.h): bucket indexing, counting, exact merges, quantile
 * reads, and the LatencySketch message. Indexing is exact at powers of two (bucket edges
 * 2^k) by integer arithmetic; between them log2 of a double in (1, 2) places x, and an x
 * within a rounding error of an edge base^j (irrational there) may land in the neighbouring
 * bucket, which moves its estimate by a relative 1e-15, far inside the bound. */
#include "proto/latency_sketch.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(TV_SKETCH_PER_OCTAVE == 1 << TV_SKETCH_SCALE, "buckets per octave = 2^scale");

int tv_sketch_index(uint64_t x_ns)
{
	int k = 63 - __builtin_clzll(x_ns); /* 2^k <= x < 2^(k+1) */
	int c;

	if ((x_ns & (x_ns - 1)) == 0)
		return TV_SKETCH_PER_OCTAVE * k - 1; /* 2^k closes bucket 64k-1 */
	/* x/2^k in (1, 2): c = ceil(64*log2 of it) in 1..64, clamped where the double of a
	 * 64-bit x rounds to an end */
	c = (int)ceil(TV_SKETCH_PER_OCTAVE * log2(ldexp((double)x_ns, -k)));
	if (c < 1)
		c = 1;
	if (c > TV_SKETCH_PER_OCTAVE)
		c = TV_SKETCH_PER_OCTAVE;
	return TV_SKETCH_PER_OCTAVE * k + c - 1;
}

double tv_sketch_bucket_value(int i)
{
	double base = exp2(1.0 / TV_SKETCH_PER_OCTAVE);

	return 2.0 * exp2((double)(i + 1) / TV_SKETCH_PER_OCTAVE) / (base + 1.0);
}

/* The buckets s spans once it covers lo..hi: 0 when it does already, else the new run in
 * *nlo..*nhi. A run grows by TV_SKETCH_GROW_SLACK more buckets on the side it grows (within
 * the index range), so a group whose latencies spread does not reallocate per record. */
static uint32_t span(const struct tv_sketch *s, int lo, int hi, int *nlo, int *nhi)
{
	*nlo = lo;
	*nhi = hi;
	if (s->n) {
		int top = s->offset + (int)s->n - 1;

		if (lo >= s->offset && hi <= top)
			return 0;
		*nlo = lo < s->offset ? lo - TV_SKETCH_GROW_SLACK : s->offset;
		*nhi = hi > top ? hi + TV_SKETCH_GROW_SLACK : top;
	}
	if (*nlo < TV_SKETCH_MIN_INDEX)
		*nlo = TV_SKETCH_MIN_INDEX;
	if (*nhi > TV_SKETCH_MAX_INDEX)
		*nhi = TV_SKETCH_MAX_INDEX;
	return (uint32_t)(*nhi - *nlo + 1);
}

/* Make s cover buckets lo..hi. */
static int cover(struct tv_sketch *s, int lo, int hi, size_t *grown_bytes)
{
	int nlo, nhi;
	uint64_t *c;
	uint32_t n = span(s, lo, hi, &nlo, &nhi);

	if (!n)
		return 0;
	c = calloc(n, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (s->n)
		memcpy(c + (s->offset - nlo), s->counts, s->n * sizeof(*c));
	if (grown_bytes)
		*grown_bytes += (size_t)(n - s->n) * sizeof(*c);
	free(s->counts);
	s->counts = c;
	s->offset = nlo;
	s->n = n;
	return 0;
}

int tv_sketch_add(struct tv_sketch *s, uint64_t x_ns, uint64_t n, size_t *grown_bytes)
{
	if (grown_bytes)
		*grown_bytes = 0;
	if (x_ns == 0) {
		s->zero_count += n;
		return 0;
	}
	return tv_sketch_add_index(s, tv_sketch_index(x_ns), n, grown_bytes);
}

int tv_sketch_add_index(struct tv_sketch *s, int i, uint64_t n, size_t *grown_bytes)
{
	int ret;

	if (grown_bytes)
		*grown_bytes = 0;
	ret = cover(s, i, i, grown_bytes);
	if (ret)
		return ret;
	s->counts[i - s->offset] += n;
	return 0;
}

size_t tv_sketch_growth_bytes(const struct tv_sketch *s, uint64_t x_ns)
{
	return x_ns ? tv_sketch_growth_bytes_index(s, tv_sketch_index(x_ns)) : 0;
}

size_t tv_sketch_growth_bytes_index(const struct tv_sketch *s, int i)
{
	int lo, hi;
	uint32_t n = span(s, i, i, &lo, &hi);

	return n ? (size_t)(n - s->n) * sizeof(*s->counts) : 0;
}

int tv_sketch_merge(struct tv_sketch *dst, const struct tv_sketch *src, size_t *grown_bytes)
{
	int ret;

	if (grown_bytes)
		*grown_bytes = 0;
	if (src->n) {
		ret = cover(dst, src->offset, src->offset + (int)src->n - 1, grown_bytes);
		if (ret)
			return ret;
		for (uint32_t k = 0; k < src->n; k++)
			dst->counts[src->offset - dst->offset + (int)k] += src->counts[k];
	}
	dst->zero_count += src->zero_count;
	return 0;
}

uint64_t tv_sketch_count(const struct tv_sketch *s)
{
	uint64_t n = s->zero_count;

	for (uint32_t k = 0; k < s->n; k++)
		n += s->counts[k];
	return n;
}

double tv_sketch_quantile(const struct tv_sketch *s, double q, uint64_t min_ns, uint64_t max_ns)
{
	uint64_t n = tv_sketch_count(s), rank, seen;
	double v = 0;

	if (n == 0)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	rank = (uint64_t)floor(q * (double)(n - 1));
	/* the extremes are known exactly */
	if (rank >= n - 1)
		return (double)max_ns;
	if (rank == 0)
		return (double)min_ns;
	seen = s->zero_count;
	if (rank >= seen) {
		for (uint32_t k = 0; k < s->n; k++) {
			seen += s->counts[k];
			if (rank < seen) {
				v = tv_sketch_bucket_value(s->offset + (int)k);
				break;
			}
		}
	}
	if (v < (double)min_ns)
		v = (double)min_ns;
	if (v > (double)max_ns)
		v = (double)max_ns;
	return v;
}

void tv_sketch_free(struct tv_sketch *s)
{
	free(s->counts);
	*s = (struct tv_sketch){ 0 };
}

void tv_sketch_to_pb(const struct tv_sketch *s, Tracevault__V1__LatencySketch *m)
{
	uint32_t lo = 0, hi = s->n;

	/* the counted run only: the slack of empty buckets at either end is not sent */
	while (lo < hi && !s->counts[lo])
		lo++;
	while (hi > lo && !s->counts[hi - 1])
		hi--;
	m->scale = TV_SKETCH_SCALE;
	m->zero_count = s->zero_count;
	m->offset = lo < hi ? s->offset + (int32_t)lo : 0;
	m->n_bucket_counts = hi - lo;
	m->bucket_counts = lo < hi ? s->counts + lo : NULL;
}

int tv_sketch_merge_pb(struct tv_sketch *s, const Tracevault__V1__LatencySketch *m)
{
	struct tv_sketch view = { .zero_count = m->zero_count, .offset = m->offset,
				  .n = (uint32_t)m->n_bucket_counts, .counts = m->bucket_counts };

	if (m->scale != TV_SKETCH_SCALE || m->n_bucket_counts > TV_SKETCH_MAX_BUCKETS ||
	    m->offset < TV_SKETCH_MIN_INDEX ||
	    (int64_t)m->offset + (int64_t)m->n_bucket_counts - 1 > TV_SKETCH_MAX_INDEX)
		return -EINVAL;
	return tv_sketch_merge(s, &view, NULL);
}
