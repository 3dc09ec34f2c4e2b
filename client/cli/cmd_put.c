/* tracevault put: reads JSON Lines, checks every line and seals them into blocks first, then
 * writes the blocks as one atomic segment, so a bad file leaves nothing on the servers. */
#include <errno.h>
#include <getopt.h>
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
#include "cli/record_json.h"
#include "proto/wire.h"

/* put seals a block at whichever comes first: capture's default block size (the pipeline's),
 * or this many records. */
#define PUT_BLOCK_RAW_BYTES TV_DEFAULT_BLOCK_BYTES
#define PUT_BLOCK_RECORDS 65536
#define CONNECT_TIMEOUT_MS 10000

static const struct tv_cli_opt put_options[] = {
	{"server", 's', TV_CLI_ARG_STRING, offsetof(struct tv_writer_opts, server), NULL, NULL,
	 NULL},
	TV_CLI_WRITER_OPTIONS(struct tv_writer_opts, ),
	{0},
};

static const char *const put_usage[] = {
	"Usage: tracevault put [--server HOST:PORT[,HOST:PORT...]] [--chunk-bytes N]\n"
	"                      [--window-bytes N] [--no-zerocopy] [--max-message-bytes N]\n"
	"                      [--test-corrupt-chunk N] FILE|-\n"
	"\n"
	"Import JSON Lines records (the fields `tracevault query --format jsonl` prints; ts_ns\n"
	"required, others default to 0 or \"\") as one segment: all lines are checked first, then\n"
	"written atomically (with several servers: two-phase, FLUSH on all, then COMMIT on all).\n"
	"A bad line aborts the import with its line number. Sizes N take a K, M or G suffix.\n"
	"\n"
	"  -s, --server LIST          tracevaultd(s) to write to, comma-separated (default:\n"
	"                             $" TV_SERVER_ENV ", else " TV_DEFAULT_SERVER ")\n"
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

struct put_blocks {
	struct tv_block_buf *v;
	size_t n, cap;
	uint64_t records;
};

static void put_blocks_free(struct put_blocks *pb)
{
	for (size_t i = 0; i < pb->n; i++)
		free((void *)pb->v[i].data);
	free(pb->v);
}

static int seal_block(struct tv_block_builder *b, struct put_blocks *pb)
{
	uint32_t count = tv_block_builder_count(b);
	uint64_t block_id = tv_random_id();
	void *data;
	size_t len;
	int ret;

	if (count == 0)
		return 0;
	if (pb->n == pb->cap) {
		size_t cap = pb->cap ? pb->cap * 2 : 16;
		struct tv_block_buf *v = realloc(pb->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		pb->v = v;
		pb->cap = cap;
	}
	ret = tv_block_builder_seal(b, block_id, TV_CODEC_ZSTD, TV_BLOCK_DEFAULT_ZSTD_LEVEL,
				    &data, &len);
	if (ret)
		return ret;
	pb->v[pb->n++] = (struct tv_block_buf){
		.block_id = block_id, .data = data, .len = len, .record_count = count};
	pb->records += count;
	return 0;
}

/* Every line parsed and sealed into blocks before anything is sent, so a bad line leaves
 * nothing on the server. Returns 0, or 1 after printing "FILE:LINE: reason" / a read error. */
static int read_records(FILE *in, const char *name, struct put_blocks *pb)
{
	struct tv_block_builder *b = tv_block_builder_new();
	struct tv_record_json rj;
	char err[TV_CLI_ERR_LEN];
	char *line = NULL;
	size_t cap = 0;
	uint64_t line_no = 0;
	ssize_t n;
	int ret = 0;

	if (!b)
		return tv_cli_runtime_error("out of memory");
	while ((n = getline(&line, &cap, in)) >= 0) {
		size_t len = (size_t)n, i;

		line_no++;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
			;
		if (i == len)
			continue; /* empty lines are allowed anywhere */
		if (tv_record_json_parse(&rj, line, len, err, sizeof(err))) {
			ret = tv_cli_runtime_error("%s:%" PRIu64 ": %s", name, line_no, err);
			goto out;
		}
		ret = tv_block_builder_add(b, &rj.rec);
		tv_record_json_release(&rj);
		if (ret) {
			ret = tv_cli_runtime_error("%s:%" PRIu64 ": %s", name, line_no,
						   ret == -E2BIG ? "record too large"
							  : strerror(-ret));
			goto out;
		}
		if (tv_block_builder_count(b) >= PUT_BLOCK_RECORDS ||
		    tv_block_builder_raw_bytes(b) >= PUT_BLOCK_RAW_BYTES) {
			ret = seal_block(b, pb);
			if (ret) {
				ret = tv_cli_runtime_error("seal block: %s", strerror(-ret));
				goto out;
			}
		}
	}
	if (ferror(in)) {
		ret = tv_cli_runtime_error("read %s: %s", name, strerror(errno));
		goto out;
	}
	ret = seal_block(b, pb);
	if (ret)
		ret = tv_cli_runtime_error("seal block: %s", strerror(-ret));
out:
	free(line);
	tv_block_builder_free(b);
	return ret;
}

int tv_cmd_put(int argc, char **argv)
{
	struct tv_writer_opts wo = {0};
	struct put_blocks pb = {0};
	struct tv_writer *w = NULL;
	const char *path, *name;
	char err[TV_CLI_ERR_LEN];
	FILE *in;
	int ret;

	ret = tv_cli_parse(argc, argv, put_options, put_usage, &wo);
	if (ret != TV_CLI_PARSED)
		return ret;
	ret = tv_cli_check_servers(&wo.server);
	if (ret)
		return ret;
	ret = tv_cli_check_chunk_fits(wo.chunk_bytes, wo.max_message_bytes);
	if (ret)
		return ret;
	if (optind == argc)
		return tv_cli_usage_error("put: missing FILE (or - for stdin)");
	if (optind + 1 < argc)
		return tv_cli_usage_error("put: unexpected argument '%s'", argv[optind + 1]);
	path = argv[optind];
	name = strcmp(path, "-") == 0 ? "<stdin>" : path;
	in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (!in)
		return tv_cli_runtime_error("open %s: %s", path, strerror(errno));
	ret = read_records(in, name, &pb);
	if (in != stdin)
		fclose(in);
	if (ret)
		goto out;

	w = tv_writer_new(&wo);
	if (!w) {
		ret = tv_cli_runtime_error("cannot create gRPC channels to %s", wo.server);
		goto out;
	}
	if (tv_writer_probe(w, CONNECT_TIMEOUT_MS, err, sizeof(err)) ||
	    tv_writer_write_segment(w, tv_random_id(), pb.v, pb.n, err, sizeof(err))) {
		ret = tv_cli_runtime_error("%s", err);
		goto out;
	}
	fprintf(stderr, "put %" PRIu64 " record%s in %zu block%s\n", pb.records,
		pb.records == 1 ? "" : "s", pb.n, pb.n == 1 ? "" : "s");
	ret = EXIT_SUCCESS;
out:
	tv_writer_free(w);
	put_blocks_free(&pb);
	return ret;
}
