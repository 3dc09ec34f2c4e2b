/* tracevault put: reads JSON Lines and streams the sealed blocks to the servers as one atomic
 * segment while it parses (memory bounded by --cache-bytes); a bad line cancels the segment,
 * so a bad file leaves nothing on the servers. */
#include <errno.h>
#include <getopt.h>
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

struct put_opts {
	struct tv_writer_opts wo;
	size_t cache_bytes;
};

static const struct tv_cli_opt put_options[] = {
	{"server", 's', TV_CLI_ARG_STRING, offsetof(struct put_opts, wo.server), NULL, NULL,
	 NULL},
	{"cache-bytes", 0, TV_CLI_ARG_SIZE, offsetof(struct put_opts, cache_bytes),
	 &tv_pipeline_cache_bytes_limit, NULL, NULL},
	TV_CLI_WRITER_OPTIONS(struct put_opts, wo.),
	{0},
};

static const char *const put_usage[] = {
	"Usage: tracevault put [--server HOST:PORT[,HOST:PORT...]] [--cache-bytes N]\n"
	"                      [--chunk-bytes N]\n"
	"                      [--window-bytes N] [--no-zerocopy] [--max-message-bytes N]\n"
	"                      [--test-corrupt-chunk N] FILE|-\n"
	"\n"
	"Import JSON Lines records (the fields `tracevault query --format jsonl` prints; ts_ns\n"
	"required, others default to 0 or \"\") as one atomic segment, sent while it is read and\n"
	"committed at the end of the input (with several servers: two-phase, FLUSH on all, then\n"
	"COMMIT on all). A bad line cancels the import with its line number and nothing is\n"
	"committed. Sizes N take a K, M or G suffix.\n"
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
	"                             1 to 9223372036854775807\n"
	"  -h, --help                 this text\n"
	"\n"
	"Examples:\n"
	"  tracevault put --server 127.0.0.1:7070 records.jsonl\n"
	"  tracevault put --server 127.0.0.1:7070,127.0.0.1:7071 records.jsonl\n"
	"  gzip -dc old.jsonl.gz | tracevault put --server 127.0.0.1:7070 -\n",
	NULL,
};

/* The parser side of a streamed put: lines in, one sealed block per next() call. */
struct put_source {
	FILE *in;
	const char *name;
	struct tv_block_builder *b;
	struct tv_record_reader *rd;
	char *line;
	size_t cap;
	uint64_t line_no, records, blocks;
	struct tv_block_buf first; /* sealed before connecting (see tv_cmd_put) */
	bool has_first;
};

static int seal_block(struct put_source *ps, struct tv_block_buf *out, char *err, size_t errlen)
{
	uint32_t count = tv_block_builder_count(ps->b);
	uint64_t block_id = tv_random_id();
	void *data;
	size_t len;
	int ret;

	if (count == 0)
		return 0;
	ret = tv_block_builder_seal(ps->b, block_id, TV_CODEC_ZSTD, TV_BLOCK_DEFAULT_ZSTD_LEVEL,
				    &data, &len);
	if (ret) {
		snprintf(err, errlen, "seal block: %s", strerror(-ret));
		return ret;
	}
	*out = (struct tv_block_buf){
		.block_id = block_id, .data = data, .len = len, .record_count = count};
	ps->records += count;
	ps->blocks++;
	return 1;
}

/* tv_block_source_fn: parse lines until a block is full (or the input ends) and seal it.
 * A bad line fails with "FILE:LINE: reason": the writer then cancels the whole segment. */
static int next_block(void *arg, struct tv_block_buf *out, char *err, size_t errlen)
{
	struct put_source *ps = arg;
	const Tracevault__V1__TraceRecord *rec;
	char why[TV_CLI_ERR_LEN];
	ssize_t n;
	int ret;

	if (ps->has_first) {
		*out = ps->first;
		ps->has_first = false;
		return 1;
	}
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
		ret = tv_block_builder_add(ps->b, rec);
		if (ret) {
			snprintf(err, errlen, "%s:%" PRIu64 ": %s", ps->name, ps->line_no,
				 ret == -E2BIG ? "record too large" : strerror(-ret));
			return ret;
		}
		if (tv_block_builder_count(ps->b) >= PUT_BLOCK_RECORDS ||
		    tv_block_builder_raw_bytes(ps->b) >= PUT_BLOCK_RAW_BYTES)
			return seal_block(ps, out, err, errlen);
	}
	if (ferror(ps->in)) {
		snprintf(err, errlen, "read %s: %s", ps->name, strerror(errno));
		return -EIO;
	}
	return seal_block(ps, out, err, errlen);
}

int tv_cmd_put(int argc, char **argv)
{
	struct put_opts po = {0};
	struct put_source ps = {0};
	struct tv_writer *w = NULL;
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
	path = argv[optind];
	ps.name = strcmp(path, "-") == 0 ? "<stdin>" : path;
	ps.in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (!ps.in)
		return tv_cli_runtime_error("open %s: %s", path, strerror(errno));
	ps.b = tv_block_builder_new();
	ps.rd = tv_record_reader_new();
	if (!ps.b || !ps.rd) {
		ret = tv_cli_runtime_error("out of memory");
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
	tv_block_builder_free(ps.b);
	tv_record_reader_free(ps.rd);
	free(ps.line);
	if (ps.in != stdin)
		fclose(ps.in);
	return ret;
}
