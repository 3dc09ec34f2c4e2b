/* Ingest benchmark: sealed trace blocks streamed by the real segment writer to a running
 * tracevaultd, timed until each segment's commit (durable) reply, by 1..N concurrent writers
 * (threads, each with its own tv_writer). Prints throughput and the commit latency
 * percentiles (COMMIT sent -> commit reply, per segment). Used by bench/run.sh. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "common/clock.h"
#include "proto/block.h"
#include "proto/wire.h"
#include "write/chunker.h"
#include "write/grpc_writer.h"

#define DEFAULT_MIB 1024
#define DEFAULT_BLOCK_BYTES (4u << 20)
#define DEFAULT_BLOCKS_PER_SEGMENT 8
#define MAX_WRITERS 64 /* --writers: threads, each with its own gRPC channel */

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

/* --sealed-block-bytes: seal one block as the runs do and print its size. Blocks are filled
 * to block_bytes of raw records (as the capture's --block-bytes); the block format stores them
 * in fewer bytes, and those are what the server writes per block file: bench/run.sh gives the
 * disk ceiling files of this size. Returns main's exit code. */
static int print_sealed_block_bytes(size_t block_bytes, enum tv_codec codec)
{
	struct tv_block_builder *b = tv_block_builder_new();
	struct tv_block_buf blk = { 0 };
	uint64_t ts = 1700000000000000000ull;
	int err = b ? make_block(b, &ts, block_bytes, codec, &blk) : -ENOMEM;

	tv_block_builder_free(b);
	if (err) {
		fprintf(stderr, "bench_ingest: seal block: %s\n", strerror(-err));
		return 1;
	}
	printf("sealed_block_bytes %zu\n", blk.len);
	printf("raw_block_bytes %zu\n", block_bytes);
	free((void *)blk.data);
	return 0;
}

/* A private copy of a sealed block (malloc'd data, owned by *out): each block of a pool, and
 * each writer's pool, gets its own memory to restamp block ids in. Returns 0 or -ENOMEM. */
static int copy_block(const struct tv_block_buf *in, struct tv_block_buf *out)
{
	void *data = malloc(in->len);

	if (!data)
		return -ENOMEM;
	memcpy(data, in->data, in->len);
	*out = *in;
	out->data = data;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_ingest --server ADDR [--mib N] [--block-bytes N] "
		   "[--blocks-per-segment N] [--chunk-bytes N] [--writers N (1-%d)] "
		   "[--no-zerocopy] [--cold] [--zstd]\n"
		   "       bench_ingest --sealed-block-bytes [--block-bytes N] [--zstd]: the size one "
		   "block seals to (what the server stores per block file), no server\n", MAX_WRITERS);
}

/* One writer thread: its own tv_writer, block pool and slice of the --mib total. */
struct bench_writer {
	struct tv_writer_opts wo;
	size_t nblocks, per_seg, block_bytes;
	enum tv_codec codec;
	int cold;
	uint64_t ts;                 /* first record timestamp, distinct per writer (--cold) */
	const struct tv_block_buf *sealed; /* not --cold: the pool main sealed, copied per writer */
	pthread_barrier_t *start;    /* every writer probed and sealed: start timing together */
	/* results */
	size_t total, nseg;
	uint64_t records, copied, *commit_ns; /* commit_ns[nseg]: per committed segment */
	double end_s;                /* CLOCK_MONOTONIC s at its last commit */
	int failed;
	char err[640];
};

static void *run_writer(void *arg)
{
	struct bench_writer *bw = arg;
	struct tv_block_buf *blocks = calloc(bw->nblocks, sizeof(*blocks));
	struct tv_block_builder *b = tv_block_builder_new();
	struct tv_writer *w = tv_writer_new(&bw->wo);
	size_t pool, maxseg = (bw->nblocks + bw->per_seg - 1) / bw->per_seg;
	int started = 0;

	bw->commit_ns = calloc(maxseg ? maxseg : 1, sizeof(*bw->commit_ns));
	if (!blocks || !b || !w || !bw->commit_ns) {
		snprintf(bw->err, sizeof(bw->err), "out of memory");
		goto fail;
	}
	/* Default: one segment's worth of blocks is sealed once and re-sent under fresh block ids,
	 * so block memory is reused as the client's block cache reuses it. --cold seals every
	 * block first, so every byte sent is memory the kernel has not read before. Sealing is
	 * never timed; the timed loop runs without gaps, so its fsyncs get no free idle time. */
	pool = bw->cold ? bw->nblocks : (bw->per_seg < bw->nblocks ? bw->per_seg : bw->nblocks);
	for (size_t i = 0; i < pool; i++) {
		int e = bw->sealed ? copy_block(&bw->sealed[i], &blocks[i])
				   : make_block(b, &bw->ts, bw->block_bytes, bw->codec, &blocks[i]);

		if (e) {
			snprintf(bw->err, sizeof(bw->err), "seal block: %s", strerror(-e));
			goto fail;
		}
	}
	if (tv_writer_probe(w, 5000, bw->err, sizeof(bw->err)))
		goto fail;
	pthread_barrier_wait(bw->start);
	started = 1;
	for (size_t i = 0; i < bw->nblocks; i += bw->per_seg) {
		size_t n = bw->nblocks - i < bw->per_seg ? bw->nblocks - i : bw->per_seg;
		struct tv_block_buf *seg = bw->cold ? blocks + i : blocks;
		char err[512];

		/* write_segment returns only once gRPC let go of every borrowed block: restamping
		 * the pool for the next segment cannot touch bytes still being sent */
		for (size_t j = 0; j < n && !bw->cold; j++) {
			seg[j].block_id = tv_random_id();
			tv_block_set_id((void *)seg[j].data, seg[j].len, seg[j].block_id);
		}
		if (tv_writer_write_segment(w, tv_random_id(), seg, n, err, sizeof(err))) {
			snprintf(bw->err, sizeof(bw->err), "segment at block %zu: %s", i, err);
			goto fail;
		}
		bw->commit_ns[bw->nseg++] = tv_writer_stats(w)->last_commit_ns;
		for (size_t j = 0; j < n; j++) {
			bw->total += seg[j].len;
			bw->records += seg[j].record_count;
		}
	}
	bw->end_s = tv_monotonic_ns() / 1e9;
	goto out;
fail:
	bw->failed = 1;
	if (!started) /* the others wait for every writer at the barrier */
		pthread_barrier_wait(bw->start);
out:
	for (size_t i = 0; blocks && i < bw->nblocks; i++)
		free((void *)blocks[i].data);
	free(blocks);
	tv_block_builder_free(b);
	if (w)
		bw->copied = tv_writer_stats(w)->payload_bytes_copied;
	tv_writer_free(w);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "mib", required_argument, NULL, 'm' },
		{ "block-bytes", required_argument, NULL, 'b' },
		{ "blocks-per-segment", required_argument, NULL, 'k' },
		{ "chunk-bytes", required_argument, NULL, 'c' },
		{ "writers", required_argument, NULL, 'w' },
		{ "no-zerocopy", no_argument, NULL, 'Z' },
		{ "cold", no_argument, NULL, 'C' },
		{ "zstd", no_argument, NULL, 'z' },
		{ "sealed-block-bytes", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct tv_writer_opts wo = { 0 };
	size_t mib = DEFAULT_MIB, block_bytes = DEFAULT_BLOCK_BYTES, per_seg = DEFAULT_BLOCKS_PER_SEGMENT;
	size_t nblocks, nwriters = 1, total = 0, nseg = 0, copied = 0;
	uint64_t records = 0, *lat = NULL;
	enum tv_codec codec = TV_CODEC_NONE;
	struct bench_writer *bw = NULL;
	struct tv_block_buf *pool = NULL;
	size_t npool = 0;
	pthread_t tid[MAX_WRITERS];
	pthread_barrier_t start;
	double t0, c0, dt, dc, end_s = 0;
	int c, cold = 0, sealed_only = 0, ret = 1;
	const struct tv_bench_num nums[] = {
		{ 'm', 1, SIZE_MAX, &mib },
		{ 'b', 1, SIZE_MAX, &block_bytes },
		{ 'k', 1, SIZE_MAX, &per_seg },
		{ 'c', 1, SIZE_MAX, &wo.chunk_bytes },
		{ 'w', 1, MAX_WRITERS, &nwriters },
	};

	/* the same block-memory reuse policy as the tracevault CLI (client/cli/main.c) */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		/* '?' (getopt said why) is no numeric option: usage below */
		int num = tv_bench_num_opt("bench_ingest", opts, nums,
					   sizeof(nums) / sizeof(nums[0]), c, optarg);

		if (num < 0)
			return 2;
		if (num)
			continue;
		switch (c) {
		case 's': wo.server = optarg; break;
		case 'Z': wo.no_zerocopy = 1; break;
		case 'C': cold = 1; break;
		case 'z': codec = TV_CODEC_ZSTD; break;
		case 'S': sealed_only = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if ((!wo.server && !sealed_only) || block_bytes < 4096) {
		fprintf(stderr, "bench_ingest: %s\n",
			block_bytes < 4096 ? "--block-bytes must be >= 4096" : "--server is required");
		return 2;
	}
	if (sealed_only)
		return print_sealed_block_bytes(block_bytes, codec);
	/* --mib is the total of all writers, its blocks split evenly between them, each writer's
	 * in segments of per_seg blocks with a short last one where they do not divide: so that
	 * every writer writes even when there are fewer whole segments than writers (a small
	 * run: bench/run.sh's quick mode, 8 blocks for 4 writers) */
	nblocks = (mib << 20) / block_bytes;
	if (nblocks == 0)
		nblocks = 1;
	if (nwriters > nblocks) {
		fprintf(stderr, "bench_ingest: --writers %zu is more than the %zu blocks of --mib %zu\n",
			nwriters, nblocks, mib);
		return 2;
	}
	bw = calloc(nwriters, sizeof(*bw));
	if (!bw || pthread_barrier_init(&start, NULL, (unsigned)nwriters + 1)) {
		fprintf(stderr, "bench_ingest: out of memory\n");
		return 1;
	}
	/* Not --cold: one block sealed here once and copied into a segment's worth of blocks,
	 * each writer re-sending its own copy of them (the same records under fresh block ids,
	 * as one writer already did from segment to segment): sealing is never timed, but at
	 * ~60 ms a block it was most of a small run's wall time */
	if (!cold) {
		size_t first = nblocks / nwriters + (nblocks % nwriters != 0); /* writer 0's */
		struct tv_block_builder *b = tv_block_builder_new();
		uint64_t ts = 1700000000000000000ull;
		int err = 0;

		npool = per_seg < first ? per_seg : first;
		pool = calloc(npool, sizeof(*pool));
		if (!b || !pool)
			err = -ENOMEM;
		if (!err)
			err = make_block(b, &ts, block_bytes, codec, &pool[0]);
		for (size_t i = 1; i < npool && !err; i++)
			err = copy_block(&pool[0], &pool[i]);
		tv_block_builder_free(b);
		if (err) {
			fprintf(stderr, "bench_ingest: seal block: %s\n", strerror(-err));
			goto out;
		}
	}
	for (size_t i = 0; i < nwriters; i++) {
		bw[i].wo = wo;
		bw[i].per_seg = per_seg;
		bw[i].nblocks = nblocks / nwriters + (i < nblocks % nwriters);
		bw[i].block_bytes = block_bytes;
		bw[i].codec = codec;
		bw[i].cold = cold;
		bw[i].sealed = pool;
		bw[i].ts = 1700000000000000000ull + (uint64_t)i * 1000000000000ull;
		bw[i].start = &start;
		if (pthread_create(&tid[i], NULL, run_writer, &bw[i])) {
			fprintf(stderr, "bench_ingest: cannot start writer thread %zu\n", i);
			return 1; /* the started threads block at the barrier: exit ends them */
		}
	}
	pthread_barrier_wait(&start);
	t0 = tv_monotonic_ns() / 1e9;
	c0 = tv_bench_cpu_s();
	for (size_t i = 0; i < nwriters; i++)
		pthread_join(tid[i], NULL);
	dc = tv_bench_cpu_s() - c0;
	for (size_t i = 0; i < nwriters; i++) {
		if (bw[i].failed) {
			fprintf(stderr, "bench_ingest: writer %zu: %s\n", i, bw[i].err);
			goto out;
		}
		total += bw[i].total;
		records += bw[i].records;
		nseg += bw[i].nseg;
		copied += bw[i].copied;
		if (bw[i].end_s > end_s)
			end_s = bw[i].end_s;
	}
	lat = calloc(nseg ? nseg : 1, sizeof(*lat));
	if (!lat || !nseg) {
		fprintf(stderr, "bench_ingest: %s\n", lat ? "no segment written" : "out of memory");
		goto out;
	}
	nseg = 0;
	for (size_t i = 0; i < nwriters; i++)
		for (size_t j = 0; j < bw[i].nseg; j++)
			lat[nseg++] = bw[i].commit_ns[j];
	dt = end_s - t0;
	printf("writers %zu\n", nwriters);
	/* the chunk size the writers used: --chunk-bytes, or the writer's default for the default
	 * message size (bench/run.sh labels its runs with it) */
	printf("chunk_bytes %zu\n",
	       wo.chunk_bytes ? wo.chunk_bytes : tv_chunk_default_bytes(TV_DEFAULT_MAX_MESSAGE_BYTES));
	printf("ingest_bytes %zu\n", total);
	printf("ingest_seconds %.3f\n", dt);
	printf("ingest_MBps %.1f\n", total / dt / 1e6);
	printf("ingest_records_per_s %.0f\n", records / dt);
	printf("segments %zu\n", nseg);
	printf("segments_per_s %.1f\n", nseg / dt);
	/* COMMIT sent -> commit reply, per segment (tv_writer_stats.last_commit_ns) */
	tv_bench_print_latency("commit", lat, nseg);
	printf("client_cpu_s_per_GB %.3f\n", dc / (total / 1e9));
	printf("payload_bytes_copied %zu\n", copied);
	ret = 0;
out:
	for (size_t i = 0; pool && i < npool; i++)
		free((void *)pool[i].data);
	free(pool);
	for (size_t i = 0; i < nwriters; i++)
		free(bw[i].commit_ns);
	free(bw);
	free(lat);
	return ret;
}
