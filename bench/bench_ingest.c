/* Ingest benchmark: sealed trace blocks streamed by the real segment writer to a running
 * tracevaultd, timed until each segment's commit (durable) reply. Used by bench/run.sh. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/clock.h"
#include "proto/block.h"
#include "write/grpc_writer.h"

#define DEFAULT_MIB 1024
#define DEFAULT_BLOCK_BYTES (4u << 20)
#define DEFAULT_BLOCKS_PER_SEGMENT 8

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* Seal one block of about block_bytes of synthetic records. Uncompressed by default: the
 * benchmark measures moving and storing bytes, not zstd; --zstd seals as the capture does, so
 * the server's check decompresses what it stores (sealing is not timed either way). */
static int make_block(struct tv_block_builder *b, uint64_t *ts, size_t block_bytes,
		      enum tv_codec codec, struct tv_block_buf *out)
{
	char path[64];
	void *data;
	size_t len;
	int err;

	while (tv_block_builder_raw_bytes(b) < block_bytes - 256) {
		Tracevault__V1__TraceRecord r;

		tracevault__v1__trace_record__init(&r);
		snprintf(path, sizeof(path), "/api/v1/items/%llu", (unsigned long long)*ts % 100000);
		r.ts_ns = (*ts)++;
		r.end_ns = r.ts_ns + 250000;
		r.latency_ns = 250000;
		r.pid = 4242;
		r.comm = "nginx";
		r.local = "127.0.0.1:8080";
		r.remote = "127.0.0.1:51234";
		r.method = "GET";
		r.path = path;
		r.status = 200;
		r.resp_body_bytes = 1234;
		err = tv_block_builder_add(b, &r);
		if (err)
			return err;
	}
	out->record_count = tv_block_builder_count(b);
	out->block_id = tv_random_id();
	err = tv_block_builder_seal(b, out->block_id, codec, TV_BLOCK_DEFAULT_ZSTD_LEVEL, &data,
				    &len);
	if (err)
		return err;
	out->data = data;
	out->len = len;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_ingest --server ADDR [--mib N] [--block-bytes N] "
		   "[--blocks-per-segment N] [--chunk-bytes N] [--no-zerocopy] [--cold] [--zstd]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "mib", required_argument, NULL, 'm' },
		{ "block-bytes", required_argument, NULL, 'b' },
		{ "blocks-per-segment", required_argument, NULL, 'k' },
		{ "chunk-bytes", required_argument, NULL, 'c' },
		{ "no-zerocopy", no_argument, NULL, 'Z' },
		{ "cold", no_argument, NULL, 'C' },
		{ "zstd", no_argument, NULL, 'z' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct tv_writer_opts wo = { 0 };
	size_t mib = DEFAULT_MIB, block_bytes = DEFAULT_BLOCK_BYTES, per_seg = DEFAULT_BLOCKS_PER_SEGMENT;
	size_t nblocks, pool, total = 0;
	uint64_t records = 0;
	enum tv_codec codec = TV_CODEC_NONE;
	struct tv_block_buf *blocks;
	struct tv_block_builder *b;
	struct tv_writer *w;
	uint64_t ts = 1700000000000000000ull;
	double t0, c0, dt, dc;
	char err[512];
	int c, cold = 0, ret = 1;

	/* the same block-memory reuse policy as the tracevault CLI (client/cli/main.c) */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		char *end;
		unsigned long long v = 0;

		if (c == '?') { /* getopt said why; optarg is not set */
			usage(stderr);
			return 2;
		}
		if (c != 's' && c != 'h' && c != 'Z' && c != 'C' && c != 'z') {
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || v == 0) {
				fprintf(stderr, "bench_ingest: invalid --%s: '%s'\n",
					opts[c == 'm' ? 1 : c == 'b' ? 2 : c == 'k' ? 3 : 4].name,
					optarg);
				return 2;
			}
		}
		switch (c) {
		case 's': wo.server = optarg; break;
		case 'm': mib = v; break;
		case 'b': block_bytes = v; break;
		case 'k': per_seg = v; break;
		case 'c': wo.chunk_bytes = v; break;
		case 'Z': wo.no_zerocopy = 1; break;
		case 'C': cold = 1; break;
		case 'z': codec = TV_CODEC_ZSTD; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!wo.server || block_bytes < 4096) {
		fprintf(stderr, "bench_ingest: %s\n",
			!wo.server ? "--server is required" : "--block-bytes must be >= 4096");
		return 2;
	}
	nblocks = (mib << 20) / block_bytes;
	if (nblocks == 0)
		nblocks = 1;
	blocks = calloc(nblocks, sizeof(*blocks));
	b = tv_block_builder_new();
	w = tv_writer_new(&wo);
	if (!blocks || !b || !w) {
		fprintf(stderr, "bench_ingest: out of memory\n");
		return 1;
	}
	/* Default: one segment's worth of blocks is sealed once and re-sent under fresh block ids,
	 * so block memory is reused as the client's block cache reuses it. --cold seals every
	 * block first, so every byte sent is memory the kernel has not read before. Sealing is
	 * never timed; the timed loop runs without gaps, so its fsyncs get no free idle time. */
	pool = cold ? nblocks : (per_seg < nblocks ? per_seg : nblocks);
	for (size_t i = 0; i < pool; i++) {
		int e = make_block(b, &ts, block_bytes, codec, &blocks[i]);

		if (e) {
			fprintf(stderr, "bench_ingest: seal block: %s\n", strerror(-e));
			goto out;
		}
	}
	if (tv_writer_probe(w, 5000, err, sizeof(err))) {
		fprintf(stderr, "bench_ingest: %s\n", err);
		goto out;
	}

	t0 = tv_monotonic_ns() / 1e9;
	c0 = cpu_s();
	for (size_t i = 0; i < nblocks; i += per_seg) {
		size_t n = nblocks - i < per_seg ? nblocks - i : per_seg;
		struct tv_block_buf *seg = cold ? blocks + i : blocks;

		/* write_segment returns only once gRPC let go of every borrowed block: restamping
		 * the pool for the next segment cannot touch bytes still being sent */
		for (size_t j = 0; j < n && !cold; j++) {
			seg[j].block_id = tv_random_id();
			tv_block_set_id((void *)seg[j].data, seg[j].len, seg[j].block_id);
		}
		if (tv_writer_write_segment(w, tv_random_id(), seg, n, err, sizeof(err))) {
			fprintf(stderr, "bench_ingest: segment at block %zu: %s\n", i, err);
			goto out;
		}
		for (size_t j = 0; j < n; j++) {
			total += seg[j].len;
			records += seg[j].record_count;
		}
	}
	dt = tv_monotonic_ns() / 1e9 - t0;
	dc = cpu_s() - c0;
	printf("ingest_bytes %zu\n", total);
	printf("ingest_seconds %.3f\n", dt);
	printf("ingest_MBps %.1f\n", total / dt / 1e6);
	printf("ingest_records_per_s %.0f\n", records / dt);
	printf("client_cpu_s_per_GB %.3f\n", dc / (total / 1e9));
	printf("payload_bytes_copied %llu\n",
	       (unsigned long long)tv_writer_stats(w)->payload_bytes_copied);
	ret = 0;
out:
	for (size_t i = 0; blocks && i < nblocks; i++)
		free((void *)blocks[i].data);
	free(blocks);
	tv_block_builder_free(b);
	tv_writer_free(w);
	return ret;
}
