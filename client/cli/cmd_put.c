/* tracevault put: reads JSON Lines and streams the sealed blocks to the servers as one atomic
 * segment while it parses (memory bounded by --cache-bytes); a bad line (one the parser or
 * tv_record_check refuses, cli/record_json.h) cancels the segment, so a bad file leaves
 * nothing on the servers. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "proto/block.h"
#include "cli/cli.h"
#include "common/addr.h"
#include "cli/commands.h"
#include "cli/tls_args.h"
#include "write/grpc_writer.h"
#include "write/pipeline.h"
#include "cli/record_reader.h"
#include "proto/wire.h"

/* put seals a block at whichever comes first: capture's default block size (the pipeline's),
 * or this many records. */
#define PUT_BLOCK_RAW_BYTES TV_DEFAULT_BLOCK_BYTES
#define PUT_BLOCK_RECORDS 65536
#define CONNECT_TIMEOUT_MS 10000
/* Sealed blocks held at once (--cache-bytes): parsed ahead of the network, or sent and not yet
 * acknowledged. This, not the file size, bounds put's memory. */
#define PUT_DEFAULT_CACHE_BYTES (64u << 20)
/* stdio's buffer for the input: its default (4 KiB here) made one read() per ~10 lines */
#define PUT_READ_BUFFER_BYTES (1u << 20)

struct put_opts {
	struct tv_writer_opts wo;
	size_t cache_bytes;
	struct tv_tls_args tls;
};

static const struct tv_cli_opt put_options[] = {
	{"server", 's', TV_CLI_ARG_STRING, offsetof(struct put_opts, wo.server), NULL, NULL,
	 NULL},
	{"cache-bytes", 0, TV_CLI_ARG_SIZE, offsetof(struct put_opts, cache_bytes),
	 &tv_pipeline_cache_bytes_limit, NULL, NULL},
	TV_CLI_WRITER_OPTIONS(struct put_opts, wo.),
	TV_TLS_CLI_OPTIONS(struct put_opts, tls),
	{0},
};

static const char *const put_usage[] = {
	"Usage: tracevault put [--server HOST:PORT[,HOST:PORT...]] [--cache-bytes N]\n"
	"                      [--chunk-bytes N]\n"
	"                      [--window-bytes N] [--no-zerocopy] [--max-message-bytes N]\n"
	"                      [--test-corrupt-chunk N]\n"
	"                      " TV_TLS_CLI_SYNOPSIS " [--tls-server-name NAME]\n"
	"                      FILE|-\n"
	"\n"
	"Import JSON Lines records (the fields `tracevault query --format jsonl` prints, span\n"
	"records' \"span\" included; ts_ns required, others default to 0 or \"\") as one atomic\n"
	"segment, sent while it is read and committed at the end of the input (with several\n"
	"servers: two-phase, FLUSH on all, then COMMIT on all). Each line is checked as the\n"
	"store holds records: ts_ns at most 2^63-1; status 0 or 100 to 999; trace_id and\n"
	"span_id \"\" or 32 and 16 hex digits, not all zeros (stored lower-case); a span record\n"
	"as OTLP ingest keeps one (ids set, end_ns not before ts_ns, no exchange fields, at most\n"
	"256 attributes, strings of at most 16K). A bad line cancels the import with\n"
	"FILE:LINE: reason (exit 1) and nothing is committed. Sizes N take a K, M or G suffix.\n"
	"\n"
	"  -s, --server LIST          tracevaultd(s) to write to, comma-separated (default:\n"
	"                             $" TV_SERVER_ENV ", else " TV_DEFAULT_SERVER ")\n"
	"      --cache-bytes N        sealed blocks held in memory at once, 2K to 1024G and\n"
	"                             at least two 4M blocks (default 64M); bounds memory\n"
	"                             whatever the file size\n"
	"      --chunk-bytes N        payload bytes per gRPC message, 1 to 1073741760 and at\n"
	"                             most --max-message-bytes - 64 (default 1M)\n"
	"      --window-bytes N       unacknowledged bytes per stream, 1 to 1024G (default 8M)\n"
	"      --no-zerocopy          copy chunks with protobuf-c (for comparison)\n"
	"      --max-message-bytes N  gRPC message size limit, 64K to 1G (default 16M)\n"
	"      --test-corrupt-chunk N test only: corrupt the Nth chunk sent,\n"
	"                             1 to 9223372036854775807\n",
	TV_TLS_CLI_HELP,
	"  -h, --help                 this text\n"
	"\n"
	"Examples:\n"
	"  tracevault put --server 127.0.0.1:7070 records.jsonl\n"
	"  tracevault put --server 127.0.0.1:7070,127.0.0.1:7071 records.jsonl\n"
	"  gzip -dc old.jsonl.gz | tracevault put --server 127.0.0.1:7070 -\n",
	NULL,
};

/* A block sealed (packed records sorted, zstd, CRC) on a second thread while the next one is
 * parsed: put then costs max(parse, seal) per block instead of their sum. One job at a time,
 * handed over under mu: the parser gives a full builder and takes the result back before it
 * gives the next, so each builder is only ever touched by one thread at a time. */
struct sealer {
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct tv_block_builder *job; /* the builder being sealed */
	bool busy;                    /* a job was given and its result not yet taken */
	bool done;                    /* its result is ready */
	bool quit;
	int ret;                      /* 1 with out set, or a negative errno with err */
	struct tv_block_buf out;
	char err[TV_CLI_ERR_LEN];
};

/* The parser side of a streamed put: lines in, one sealed block per next() call. Two builders:
 * one filled here, the other being sealed. */
struct put_source {
	FILE *in;
	const char *name;
	struct tv_block_builder *b[2];
	int cur; /* the builder lines go into */
	struct tv_record_reader *rd;
	struct sealer sl;
	char *line;
	size_t cap;
	bool eof;
	uint64_t line_no, records, blocks;
	struct tv_block_buf first; /* sealed before connecting (see tv_cmd_put) */
	bool has_first;
};

/* Seal b's records into *out as a new block. 1, or a negative errno with err set. */
static int seal_block(struct tv_block_builder *b, struct tv_block_buf *out, char *err,
		      size_t errlen)
{
	uint32_t count = tv_block_builder_count(b);
	uint64_t block_id = tv_random_id();
	void *data;
	size_t len;
	int ret;

	ret = tv_block_builder_seal(b, block_id, TV_CODEC_ZSTD, TV_BLOCK_DEFAULT_ZSTD_LEVEL,
				    &data, &len);
	if (ret) {
		snprintf(err, errlen, "seal block: %s", strerror(-ret));
		return ret;
	}
	*out = (struct tv_block_buf){
		.block_id = block_id, .data = data, .len = len, .record_count = count};
	return 1;
}

static void *sealer_main(void *arg)
{
	struct sealer *sl = arg;

	pthread_mutex_lock(&sl->mu);
	for (;;) {
		while (!sl->quit && !(sl->busy && !sl->done))
			pthread_cond_wait(&sl->cv, &sl->mu);
		if (sl->quit)
			break;
		pthread_mutex_unlock(&sl->mu);
		sl->ret = seal_block(sl->job, &sl->out, sl->err, sizeof(sl->err));
		pthread_mutex_lock(&sl->mu);
		sl->done = true;
		pthread_cond_broadcast(&sl->cv);
	}
	pthread_mutex_unlock(&sl->mu);
	return NULL;
}

static int sealer_start(struct sealer *sl)
{
	int ret;

	pthread_mutex_init(&sl->mu, NULL);
	pthread_cond_init(&sl->cv, NULL);
	ret = pthread_create(&sl->thread, NULL, sealer_main, sl);
	sl->started = ret == 0;
	if (sl->started)
		pthread_setname_np(sl->thread, "tv-put-seal"); /* for top and perf; best effort */
	return -ret;
}

/* Stop the thread once its job (if any) is sealed; a result never taken is freed. */
static void sealer_stop(struct sealer *sl)
{
	if (!sl->started)
		return;
	pthread_mutex_lock(&sl->mu);
	while (sl->busy && !sl->done)
		pthread_cond_wait(&sl->cv, &sl->mu);
	sl->quit = true;
	pthread_cond_broadcast(&sl->cv);
	pthread_mutex_unlock(&sl->mu);
	pthread_join(sl->thread, NULL);
	if (sl->busy && sl->ret == 1)
		free((void *)sl->out.data);
	pthread_cond_destroy(&sl->cv);
	pthread_mutex_destroy(&sl->mu);
	sl->started = false;
}

static void sealer_give(struct sealer *sl, struct tv_block_builder *b)
{
	pthread_mutex_lock(&sl->mu);
	sl->job = b;
	sl->busy = true;
	sl->done = false;
	pthread_cond_broadcast(&sl->cv);
	pthread_mutex_unlock(&sl->mu);
}

/* Wait for the job given last and take its result: 1 with *out (ownership moves to the
 * caller), or its negative errno with err. */
static int sealer_take(struct put_source *ps, struct tv_block_buf *out, char *err, size_t errlen)
{
	struct sealer *sl = &ps->sl;
	int ret;

	pthread_mutex_lock(&sl->mu);
	while (!sl->done)
		pthread_cond_wait(&sl->cv, &sl->mu);
	sl->busy = false;
	ret = sl->ret;
	if (ret == 1) {
		*out = sl->out;
		ps->records += out->record_count;
		ps->blocks++;
	} else {
		snprintf(err, errlen, "%s", sl->err);
	}
	pthread_mutex_unlock(&sl->mu);
	return ret;
}

/* Parse lines into the current builder until it is full (1) or the input ends (0); a bad
 * line fails with "FILE:LINE: reason". */
static int parse_block(struct put_source *ps, char *err, size_t errlen)
{
	struct tv_block_builder *b = ps->b[ps->cur];
	const Tracevault__V1__TraceRecord *rec;
	char why[TV_CLI_ERR_LEN];
	ssize_t n;
	int ret;

	while ((n = getline(&ps->line, &ps->cap, ps->in)) >= 0) {
		size_t len = (size_t)n, i;
		char *line = ps->line;

		ps->line_no++;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
			;
		if (i == len)
			continue; /* empty lines are allowed anywhere */
		ret = tv_record_reader_parse(ps->rd, line, len, &rec, why, sizeof(why));
		if (ret) {
			snprintf(err, errlen, "%s:%" PRIu64 ": %s", ps->name, ps->line_no, why);
			return ret;
		}
		ret = tv_block_builder_add(b, rec);
		if (ret) {
			snprintf(err, errlen, "%s:%" PRIu64 ": %s", ps->name, ps->line_no,
				 ret == -E2BIG ? "record too large" : strerror(-ret));
			return ret;
		}
		if (tv_block_builder_count(b) >= PUT_BLOCK_RECORDS ||
		    tv_block_builder_raw_bytes(b) >= PUT_BLOCK_RAW_BYTES)
			return 1;
	}
	if (ferror(ps->in)) {
		snprintf(err, errlen, "read %s: %s", ps->name, strerror(errno));
		return -EIO;
	}
	return 0;
}

/* tv_block_source_fn: the next sealed block, in input order. A full builder goes to the sealer
 * and this thread parses on into the other one; the block returned is the one sealed before.
 * A bad line fails with "FILE:LINE: reason": the writer then cancels the whole segment. */
static int next_block(void *arg, struct tv_block_buf *out, char *err, size_t errlen)
{
	struct put_source *ps = arg;

	if (ps->has_first) {
		*out = ps->first;
		ps->has_first = false;
		return 1;
	}
	for (;;) {
		bool have_block, sealing;
		int ret = 0;

		if (!ps->eof) {
			ret = parse_block(ps, err, errlen);
			if (ret < 0)
				return ret; /* a block still sealing is freed by sealer_stop */
			ps->eof = ret == 0;
		}
		have_block = tv_block_builder_count(ps->b[ps->cur]) > 0;
		sealing = ps->sl.busy;
		if (!have_block && !sealing)
			return 0;
		if (sealing)
			ret = sealer_take(ps, out, err, errlen);
		if (have_block && ret >= 0) {
			sealer_give(&ps->sl, ps->b[ps->cur]);
			ps->cur ^= 1;
		}
		if (sealing)
			return ret;
		/* the first block of the input is sealing: parse the next meanwhile */
	}
}

int tv_cmd_put(int argc, char **argv)
{
	struct put_opts po = {0};
	struct put_source ps = {0};
	struct tv_writer *w = NULL;
	char *read_buf = NULL; /* ps.in's stdio buffer: freed after fclose */
	const char *path;
	char err[TV_CLI_ERR_LEN];
	size_t cache;
	int ret;

	ret = tv_cli_parse(argc, argv, put_options, put_usage, &po);
	if (ret != TV_CLI_PARSED)
		return ret;
	ret = tv_cli_check_servers(&po.wo.server);
	if (ret)
		return ret;
	ret = tv_cli_check_chunk_fits(po.wo.chunk_bytes, po.wo.max_message_bytes);
	if (ret)
		return ret;
	cache = po.cache_bytes ? po.cache_bytes : PUT_DEFAULT_CACHE_BYTES;
	if (tv_pipeline_check_cache(cache, PUT_BLOCK_RAW_BYTES))
		return tv_cli_usage_error("--cache-bytes must hold at least two of put's blocks of "
					  "4M (at least 8M)");
	if (optind == argc)
		return tv_cli_usage_error("put: missing FILE (or - for stdin)");
	if (optind + 1 < argc)
		return tv_cli_usage_error("put: unexpected argument '%s'", argv[optind + 1]);
	ret = tv_tls_args_load(&po.tls, &po.wo.tls);
	if (ret)
		return ret;
	path = argv[optind];
	ps.name = strcmp(path, "-") == 0 ? "<stdin>" : path;
	ps.in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (!ps.in) {
		tv_tls_args_free(&po.tls);
		return tv_cli_runtime_error("open %s: %s", path, strerror(errno));
	}
	/* a file's (a pipe gives at most its own size a read anyway); glibc ignores the size
	 * unless it is given the buffer; without one, the default stays */
	read_buf = ps.in != stdin ? malloc(PUT_READ_BUFFER_BYTES) : NULL;
	if (read_buf)
		setvbuf(ps.in, read_buf, _IOFBF, PUT_READ_BUFFER_BYTES);
	ps.b[0] = tv_block_builder_new();
	ps.b[1] = tv_block_builder_new();
	ps.rd = tv_record_reader_new();
	if (!ps.b[0] || !ps.b[1] || !ps.rd) {
		ret = tv_cli_runtime_error("out of memory");
		goto out;
	}
	ret = sealer_start(&ps.sl);
	if (ret) {
		ret = tv_cli_runtime_error("start the sealing thread: %s", strerror(-ret));
		goto out;
	}
	/* The first block is parsed before connecting: a file that fits one block (most) is
	 * wholly checked before any server is involved, as before streaming. */
	ret = next_block(&ps, &ps.first, err, sizeof(err));
	if (ret < 0) {
		ret = tv_cli_runtime_error("%s", err);
		goto out;
	}
	ps.has_first = ret == 1;

	w = tv_writer_new(&po.wo);
	if (!w) {
		ret = tv_cli_runtime_error("cannot create gRPC channels to %s", po.wo.server);
		goto out;
	}
	if (tv_writer_probe(w, CONNECT_TIMEOUT_MS, err, sizeof(err)) ||
	    tv_writer_stream_segment(w, tv_random_id(), cache, next_block, &ps, err,
				     sizeof(err))) {
		ret = tv_cli_runtime_error("%s", err);
		goto out;
	}
	fprintf(stderr, "put %" PRIu64 " record%s in %" PRIu64 " block%s\n", ps.records,
		ps.records == 1 ? "" : "s", ps.blocks, ps.blocks == 1 ? "" : "s");
	ret = EXIT_SUCCESS;
out:
	if (ps.has_first)
		free((void *)ps.first.data);
	tv_writer_free(w);
	sealer_stop(&ps.sl);
	tv_block_builder_free(ps.b[0]);
	tv_block_builder_free(ps.b[1]);
	tv_record_reader_free(ps.rd);
	free(ps.line);
	if (ps.in != stdin)
		fclose(ps.in);
	free(read_buf);
	tv_tls_args_free(&po.tls);
	return ret;
}
