/* bench_blocks: the block format's read side, version 2 beside version 3 on the same records
 * (issue 12). Seals the records of RECORDS.pb (bench/realistic_records.py) into blocks of
 * --block-bytes raw bytes (the client's default 4 MiB) with each version's encoder, then
 * reads them through tv_block_stream as the server's query does (blocks in memory, so the
 * disk is not measured): stored bytes per record; for random 1-minute windows the rows decoded,
 * records returned and wall time per window (every block overlapping it opened, seeked to the
 * window's start and read to its end); for random trace ids (half present, half absent) the
 * time to find every record with it over the whole range (version 3 tests each block's filter
 * first). Prints one line per figure; nothing is asserted.
 * usage: bench_blocks RECORDS.pb [--windows N] [--lookups N] [--block-bytes N] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/block.h"
#include "proto/block_stream.h"
#include "proto/block_v3.h"
#include "proto/varint.h"

struct blk {
	uint8_t *p;
	size_t len;
	uint64_t min_ts, max_ts;
};

struct mem {
	const uint8_t *p;
	size_t len;
};

static ssize_t mem_read(void *arg, uint64_t off, void *buf, size_t len)
{
	struct mem *m = arg;

	if (off >= m->len)
		return 0;
	if (len > m->len - off)
		len = m->len - off;
	memcpy(buf, m->p + off, len);
	return (ssize_t)len;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, size_t n, double p)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[(size_t)(p * (double)(n - 1))];
}

static uint64_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 11;
}

/* Seal recs into blocks of about block_bytes raw with the encoder of version. */
static struct blk *seal_all(uint8_t **recs, size_t *lens, size_t n, unsigned version,
			    size_t block_bytes, size_t *nblk)
{
	struct tv_block_builder *b = tv_block_builder_new();
	struct blk *out = NULL;
	size_t cap = 0;

	*nblk = 0;
	tv_block_builder_set_version(b, version);
	for (size_t i = 0; i <= n; i++) {
		if (tv_block_builder_count(b) &&
		    (i == n || tv_block_builder_raw_bytes(b) >= block_bytes)) {
			struct tv_block_header h;
			void *p;
			size_t len;

			if (tv_block_builder_seal(b, 1 + *nblk, TV_CODEC_ZSTD,
						  TV_BLOCK_DEFAULT_ZSTD_LEVEL, &p, &len)) {
				fprintf(stderr, "bench_blocks: seal failed\n");
				exit(1);
			}
			tv_block_header_parse(p, len, &h, NULL, 0);
			if (*nblk == cap) {
				cap = cap ? cap * 2 : 64;
				out = realloc(out, cap * sizeof(*out));
			}
			out[(*nblk)++] = (struct blk){ p, len, h.min_ts_ns, h.max_ts_ns };
		}
		if (i < n) {
			Tracevault__V1__TraceRecord *r =
				tracevault__v1__trace_record__unpack(NULL, lens[i], recs[i]);

			if (!r || tv_block_builder_add(b, r)) {
				fprintf(stderr, "bench_blocks: record %zu does not parse\n", i);
				exit(1);
			}
			tracevault__v1__trace_record__free_unpacked(r, NULL);
		}
	}
	tv_block_builder_free(b);
	return out;
}

static struct tv_block_stream *open_blk(const struct blk *k, struct mem *m)
{
	struct tv_block_stream *s;
	char err[256];

	m->p = k->p;
	m->len = k->len;
	if (tv_block_stream_open(&s, mem_read, m, k->len, NULL, err, sizeof(err))) {
		fprintf(stderr, "bench_blocks: %s\n", err);
		exit(1);
	}
	return s;
}

/* One window [from, to): every overlapping block, seeked and read to to. */
static void window(const struct blk *blks, size_t nblk, uint64_t from, uint64_t to,
		   uint64_t *rows, uint64_t *recs, uint64_t *ns)
{
	uint64_t t0 = now_ns();

	*rows = *recs = 0;
	for (size_t i = 0; i < nblk; i++) {
		struct tv_block_stream *s;
		const uint8_t *d;
		size_t len;
		uint64_t ts;
		char err[256];
		struct mem m;
		int ret;

		if (blks[i].max_ts < from || blks[i].min_ts >= to)
			continue;
		s = open_blk(&blks[i], &m);
		tv_block_stream_seek(s, from);
		while ((ret = tv_block_stream_next(s, &d, &len, &ts, err, sizeof(err))) == 1 &&
		       ts < to)
			*recs += ts >= from;
		*rows += tv_block_stream_rows_decoded(s);
		tv_block_stream_finish(s, err, sizeof(err));
		tv_block_stream_free(s);
	}
	*ns = now_ns() - t0;
}

/* Every record with trace id id (32 bytes): their count; *opened the blocks read. */
static uint64_t lookup(const struct blk *blks, size_t nblk, const char *id, uint64_t *opened)
{
	uint64_t found = 0;

	*opened = 0;
	for (size_t i = 0; i < nblk; i++) {
		struct tv_block_stream *s;
		const uint8_t *d, *t;
		size_t len, tl;
		uint64_t ts;
		char err[256];
		struct mem m;

		s = open_blk(&blks[i], &m);
		if (tv_block_stream_may_hold_trace(s, id, 1, 33, err, sizeof(err)) == 1) {
			++*opened;
			while (tv_block_stream_next(s, &d, &len, &ts, err, sizeof(err)) == 1)
				if (tv_v3_record_trace(d, len, &t, &tl) == 0 && tl == 32 &&
				    !memcmp(t, id, 32))
					found++;
		}
		tv_block_stream_free(s);
	}
	return found;
}

int main(int argc, char **argv)
{
	size_t nwin = 200, nlook = 100, block_bytes = 4u << 20, n = 0, cap = 0, nb[2];
	uint8_t *file, **recs = NULL;
	size_t *lens = NULL, flen;
	struct blk *blks[2];
	uint64_t seed = 42;
	FILE *f;

	if (argc < 2) {
		fprintf(stderr, "usage: bench_blocks RECORDS.pb [--windows N] [--lookups N] "
			"[--block-bytes N]\n");
		return 2;
	}
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--windows"))
			nwin = strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--lookups"))
			nlook = strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--block-bytes"))
			block_bytes = strtoul(argv[i + 1], NULL, 10);
	}
	f = fopen(argv[1], "rb");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	fseek(f, 0, SEEK_END);
	flen = (size_t)ftell(f);
	rewind(f);
	file = malloc(flen);
	if (fread(file, 1, flen, f) != flen) {
		fprintf(stderr, "bench_blocks: short read\n");
		return 1;
	}
	fclose(f);
	for (size_t off = 0; off < flen;) {
		uint64_t l;
		size_t used;

		if (tv_varint_get(file + off, flen - off, &l, &used) || l > flen - off - used)
			return fprintf(stderr, "bench_blocks: bad record framing\n"), 1;
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			recs = realloc(recs, cap * sizeof(*recs));
			lens = realloc(lens, cap * sizeof(*lens));
		}
		recs[n] = file + off + used;
		lens[n++] = (size_t)l;
		off += used + (size_t)l;
	}
	for (int v = 0; v < 2; v++) {
		uint64_t bytes = 0;

		uint64_t t0 = now_ns(), sealed;

		blks[v] = seal_all(recs, lens, n, v ? 3 : 2, block_bytes, &nb[v]);
		sealed = now_ns() - t0;
		for (size_t i = 0; i < nb[v]; i++)
			bytes += blks[v][i].len;
		printf("v%d stored: %zu records, %zu blocks, %.2f B/record; sealed in %.0f ms (with "
		       "unpacking each record)\n", v ? 3 : 2, n, nb[v], (double)bytes / (double)n,
		       (double)sealed / 1e6);
	}
	{
		uint64_t lo = blks[0][0].min_ts, hi = blks[0][nb[0] - 1].max_ts;
		uint64_t *t[2], *rw[2], *rc[2];

		for (int v = 0; v < 2; v++) {
			t[v] = calloc(nwin, 8);
			rw[v] = calloc(nwin, 8);
			rc[v] = calloc(nwin, 8);
		}
		for (size_t w = 0; w < nwin; w++) {
			uint64_t from = lo + rnd(&seed) % (hi - lo - 60000000000ull);

			for (int v = 0; v < 2; v++)
				window(blks[v], nb[v], from, from + 60000000000ull, &rw[v][w],
				       &rc[v][w], &t[v][w]);
		}
		for (int v = 0; v < 2; v++) {
			uint64_t sr = 0, sc = 0;

			for (size_t w = 0; w < nwin; w++) {
				sr += rw[v][w];
				sc += rc[v][w];
			}
			printf("v%d 1-minute window (%zu): %.0f records returned, %.0f rows decoded "
			       "(mean); %.2f / %.2f ms p50 / p99\n", v ? 3 : 2, nwin,
			       (double)sc / (double)nwin, (double)sr / (double)nwin,
			       (double)pct(t[v], nwin, 0.5) / 1e6, (double)pct(t[v], nwin, 0.99) / 1e6);
			free(t[v]);
			free(rw[v]);
			free(rc[v]);
		}
	}
	for (int v = 0; v < 2; v++) { /* the whole range, every record built */
		uint64_t rows, recs, ns, best = UINT64_MAX;

		for (int k = 0; k < 3; k++) {
			window(blks[v], nb[v], 0, UINT64_MAX, &rows, &recs, &ns);
			best = ns < best ? ns : best;
		}
		printf("v%d whole range: %llu records in %.1f ms (best of 3), %.2f M records/s\n",
		       v ? 3 : 2, (unsigned long long)recs, (double)best / 1e6,
		       (double)recs / ((double)best / 1e9) / 1e6);
	}
	{
		uint64_t *t[2], op[2] = { 0 }, fnd[2] = { 0 };
		char id[40];

		for (int v = 0; v < 2; v++)
			t[v] = calloc(nlook, 8);
		for (size_t k = 0; k < nlook; k++) {
			if (k % 2 == 0) { /* a record's id: the next traced record after a random one */
				size_t i = (size_t)(rnd(&seed) % n);
				const uint8_t *tr = NULL;
				size_t tl = 0;

				for (; i < n; i = (i + 1) % n)
					if (!tv_v3_record_trace(recs[i], lens[i], &tr, &tl) && tl == 32)
						break;
				memcpy(id, tr, 32);
				id[32] = 0;
			} else {
				snprintf(id, sizeof(id), "%016llx%016llx",
					 (unsigned long long)rnd(&seed),
					 (unsigned long long)rnd(&seed));
			}
			for (int v = 0; v < 2; v++) {
				uint64_t t0 = now_ns(), o;

				fnd[v] += lookup(blks[v], nb[v], id, &o);
				t[v][k] = now_ns() - t0;
				op[v] += o;
			}
		}
		if (fnd[0] != fnd[1])
			printf("MISMATCH: v2 found %llu records, v3 %llu\n",
			       (unsigned long long)fnd[0], (unsigned long long)fnd[1]);
		for (int v = 0; v < 2; v++) {
			printf("v%d --trace-id over all %zu blocks (%zu ids, half absent): %.1f blocks "
			       "decoded per id, %llu records found; %.2f / %.2f ms p50 / p99\n",
			       v ? 3 : 2, nb[v], nlook, (double)op[v] / (double)nlook,
			       (unsigned long long)fnd[v], (double)pct(t[v], nlook, 0.5) / 1e6,
			       (double)pct(t[v], nlook, 0.99) / 1e6);
			free(t[v]);
		}
	}
	for (int v = 0; v < 2; v++) {
		for (size_t i = 0; i < nb[v]; i++)
			free(blks[v][i].p);
		free(blks[v]);
	}
	free(recs);
	free(lens);
	free(file);
	return 0;
}
