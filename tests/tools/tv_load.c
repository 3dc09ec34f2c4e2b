/* Test-only driver: writes synthetic records through the real client pipeline (pipeline.h),
 * one segment per stdin command, so integration tests can fail a write at a chosen moment. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "write/pipeline.h"

/* Records are told apart by their path: /tvload/<tag>/<seq>/<pad>. ts_ns = ts_base + seq, so
 * every record of one driver has a unique, increasing ts_ns. The pad (from a fixed PRNG, in a
 * 64-letter alphabet) makes blocks large and hard to compress, so sizes on disk are
 * predictable enough to fill a tmpfs or cross RLIMIT_FSIZE. */
#define DEFAULT_PAD_BYTES 200
#define MAX_PAD_BYTES 65536
#define DEFAULT_TS_BASE_NS 1767225600000000000ull /* 2026-01-01T00:00:00Z */
/* A test drives segments by command; a block sealed by age would split one into several. */
#define DEFAULT_BLOCK_AGE_MS (3600 * 1000)
#define LINE_MAX_BYTES 256

static const char PAD_ALPHABET[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char usage[] =
	"Usage: tv_load --server ADDRS --records N [options]   (test-only driver)\n"
	"Reads commands on stdin, one per line, answers each on stdout:\n"
	"  segment [N]   add N (default --records) records, flush: 'segment ok|failed first F\n"
	"                count N refused K[ seqs A-B,...]' (refused: the adds that returned\n"
	"                -ENOBUFS; the pipeline may drop more records than these with them)\n"
	"  add N         add N records without flushing: 'added first F count N refused K...'\n"
	"  flush         flush: 'flush ok|failed'\n"
	"  stats         the pipeline stats as one JSON line\n"
	"  quit          free the pipeline and exit: 'bye'\n"
	"Options: --tag T --ts-base NS --pad-bytes N --cache-bytes B --block-bytes B\n"
	"  --block-age-ms MS --backpressure-ms MS --chunk-bytes B --window-bytes B\n"
	"  --max-message-bytes B --write-timeout-ms MS --delete-timeout-ms MS\n"
	"  --test-corrupt-chunk K --no-zerocopy\n";

enum {
	OPT_RECORDS = 256, OPT_TAG, OPT_TS_BASE, OPT_PAD, OPT_CACHE, OPT_BLOCK, OPT_AGE, OPT_BP,
	OPT_CHUNK, OPT_WINDOW, OPT_MAXMSG, OPT_WTIMEOUT, OPT_DTIMEOUT, OPT_CORRUPT, OPT_NOZC,
};

static const struct option options[] = {
	{"server", required_argument, NULL, 's'},
	{"records", required_argument, NULL, OPT_RECORDS},
	{"tag", required_argument, NULL, OPT_TAG},
	{"ts-base", required_argument, NULL, OPT_TS_BASE},
	{"pad-bytes", required_argument, NULL, OPT_PAD},
	{"cache-bytes", required_argument, NULL, OPT_CACHE},
	{"block-bytes", required_argument, NULL, OPT_BLOCK},
	{"block-age-ms", required_argument, NULL, OPT_AGE},
	{"backpressure-ms", required_argument, NULL, OPT_BP},
	{"chunk-bytes", required_argument, NULL, OPT_CHUNK},
	{"window-bytes", required_argument, NULL, OPT_WINDOW},
	{"max-message-bytes", required_argument, NULL, OPT_MAXMSG},
	{"write-timeout-ms", required_argument, NULL, OPT_WTIMEOUT},
	{"delete-timeout-ms", required_argument, NULL, OPT_DTIMEOUT},
	{"test-corrupt-chunk", required_argument, NULL, OPT_CORRUPT},
	{"no-zerocopy", no_argument, NULL, OPT_NOZC},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* Seq runs [from, to] that tv_pipeline_add refused in the current command, so a test knows
 * exactly which records can never be stored. */
struct runs {
	uint64_t (*v)[2];
	size_t n, cap;
};

struct load {
	struct tv_pipeline *p;
	struct runs refused;
	uint64_t records_per_segment, next_seq, ts_base_ns;
	unsigned tag;
	size_t pad_bytes;
	uint64_t rng;
	char *path_buf;
};

/* splitmix64: a fixed sequence, so a run is reproducible from its options. */
static uint64_t next_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!*s || *s == '-')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return !errno && !*end;
}

static int bad_value(const char *opt, const char *val)
{
	fprintf(stderr, "tv_load: invalid --%s: '%s'\n", opt, val);
	return 2;
}

static int note_refused(struct runs *r, uint64_t seq)
{
	if (r->n && r->v[r->n - 1][1] + 1 == seq) {
		r->v[r->n - 1][1] = seq;
		return 0;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 64;
		void *v = realloc(r->v, cap * sizeof(*r->v));

		if (!v)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n][0] = r->v[r->n][1] = seq;
	r->n++;
	return 0;
}

/* " seqs A-B,C-D" for the refused runs of this command, or nothing. */
static void print_refused(const struct runs *r)
{
	for (size_t i = 0; i < r->n; i++)
		printf("%s%" PRIu64 "-%" PRIu64, i ? "," : " seqs ", r->v[i][0], r->v[i][1]);
}

/* Add n records; returns how many the pipeline refused (-ENOBUFS: dropped by back-pressure).
 * Any other error is fatal to the driver: *fatal set to the negative errno. */
static uint64_t add_records(struct load *l, uint64_t n, int *fatal)
{
	Tracevault__V1__TraceRecord r = TRACEVAULT__V1__TRACE_RECORD__INIT;
	uint64_t refused = 0;

	*fatal = 0;
	l->refused.n = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t seq = l->next_seq++;
		int len, ret;

		len = snprintf(l->path_buf, 64, "/tvload/%u/%" PRIu64 "/", l->tag, seq);
		for (size_t k = 0; k < l->pad_bytes; k++) {
			if (k % 10 == 0)
				l->rng = next_rand(&l->rng) ^ seq;
			l->path_buf[len + k] = PAD_ALPHABET[(l->rng >> (6 * (k % 10))) & 63];
		}
		l->path_buf[len + l->pad_bytes] = '\0';
		r.ts_ns = l->ts_base_ns + seq;
		r.end_ns = r.ts_ns + 1000;
		r.latency_ns = 1000;
		r.pid = (uint32_t)seq;
		r.comm = "tv_load";
		r.local = "127.0.0.1:80";
		r.remote = "127.0.0.1:40000";
		r.method = "GET";
		r.path = l->path_buf;
		r.status = 200;
		r.resp_body_bytes = seq;
		ret = tv_pipeline_add(l->p, &r);
		if (ret == -ENOBUFS) {
			refused++;
			ret = note_refused(&l->refused, seq);
		}
		if (ret && ret != -ENOBUFS) {
			*fatal = ret;
			return refused;
		}
	}
	return refused;
}

/* Flush, and say whether a segment failed during it. tv_pipeline_flush's -EIO stays set once
 * any segment of the pipeline's life failed, so the per-flush answer comes from the counter. */
static bool flush_failed(struct tv_pipeline *p)
{
	struct tv_pipeline_stats before, after;

	tv_pipeline_stats(p, &before);
	tv_pipeline_flush(p);
	tv_pipeline_stats(p, &after);
	return after.segments_failed != before.segments_failed;
}

static void print_stats(struct tv_pipeline *p)
{
	struct tv_pipeline_stats st;

	tv_pipeline_stats(p, &st);
	printf("{\"records_in\": %" PRIu64 ", \"records_committed\": %" PRIu64
	       ", \"records_dropped_cache\": %" PRIu64 ", \"records_dropped_failed\": %" PRIu64
	       ", \"blocks_committed\": %" PRIu64 ", \"blocks_dropped\": %" PRIu64
	       ", \"segments_committed\": %" PRIu64 ", \"segments_failed\": %" PRIu64
	       ", \"bytes_committed\": %" PRIu64 ", \"cleanup_errors\": %" PRIu64
	       ", \"payload_bytes_copied\": %" PRIu64 ", \"cache_bytes_used\": %" PRIu64
	       ", \"cache_bytes_peak\": %" PRIu64 "}\n",
	       st.records_in, st.records_committed, st.records_dropped_cache,
	       st.records_dropped_failed, st.blocks_committed, st.blocks_dropped,
	       st.segments_committed, st.segments_failed, st.bytes_committed, st.cleanup_errors,
	       st.payload_bytes_copied, st.cache_bytes_used, st.cache_bytes_peak);
}

/* One stdin command. Returns 1 to go on, 0 on quit, negative errno on a fatal error. */
static int command(struct load *l, char *line)
{
	char word[16] = "";
	uint64_t n = l->records_per_segment, first = l->next_seq, refused;
	int fields, fatal;

	line[strcspn(line, "\r\n")] = '\0';
	fields = sscanf(line, "%15s %" SCNu64, word, &n);
	if (fields < 1)
		return 1; /* blank line */
	if (!strcmp(word, "segment") || !strcmp(word, "add")) {
		if (!strcmp(word, "add") && fields < 2) {
			printf("error add needs a count\n");
			return 1;
		}
		refused = add_records(l, n, &fatal);
		if (fatal) {
			fprintf(stderr, "tv_load: tv_pipeline_add: %s\n", strerror(-fatal));
			return fatal;
		}
		/* seq range [first, first + n): ts range [ts_base + first, ts_base + first + n) */
		if (!strcmp(word, "add")) {
			printf("added first %" PRIu64 " count %" PRIu64 " refused %" PRIu64,
			       first, n, refused);
		} else {
			printf("segment %s first %" PRIu64 " count %" PRIu64 " refused %" PRIu64,
			       flush_failed(l->p) ? "failed" : "ok", first, n, refused);
		}
		print_refused(&l->refused);
		printf("\n");
		return 1;
	}
	if (!strcmp(word, "flush")) {
		printf("flush %s\n", flush_failed(l->p) ? "failed" : "ok");
		return 1;
	}
	if (!strcmp(word, "stats")) {
		print_stats(l->p);
		return 1;
	}
	if (!strcmp(word, "quit"))
		return 0;
	printf("error unknown command '%s'\n", word);
	return 1;
}

int main(int argc, char **argv)
{
	struct tv_pipeline_opts o = {.block_age_ms = DEFAULT_BLOCK_AGE_MS};
	struct load l = {.ts_base_ns = DEFAULT_TS_BASE_NS, .pad_bytes = DEFAULT_PAD_BYTES};
	char err[512], line[LINE_MAX_BYTES];
	uint64_t v;
	int c, ret = 1;

	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt_long(argc, argv, "hs:", options, NULL)) != -1) {
		const char *name = c >= 256 ? options[c - 256 + 1].name : "server";

		if (c == 'h') {
			fputs(usage, stdout);
			return 0;
		}
		if (c == 's') {
			o.servers = optarg;
			continue;
		}
		if (c == OPT_NOZC) {
			o.no_zerocopy = 1;
			continue;
		}
		if (c == '?')
			return 2;
		if (!parse_u64(optarg, &v))
			return bad_value(name, optarg);
		switch (c) {
		case OPT_RECORDS: l.records_per_segment = v; break;
		case OPT_TAG: l.tag = (unsigned)v; break;
		case OPT_TS_BASE: l.ts_base_ns = v; break;
		case OPT_PAD:
			if (v > MAX_PAD_BYTES)
				return bad_value(name, optarg);
			l.pad_bytes = v;
			break;
		case OPT_CACHE: o.cache_bytes = v; break;
		case OPT_BLOCK: o.block_bytes = v; break;
		case OPT_AGE: o.block_age_ms = (int)v; break;
		case OPT_BP: o.backpressure_ms = (int)v; break;
		case OPT_CHUNK: o.chunk_bytes = v; break;
		case OPT_WINDOW: o.window_bytes = v; break;
		case OPT_MAXMSG: o.max_message_bytes = v; break;
		case OPT_WTIMEOUT: o.write_timeout_ms = (int)v; break;
		case OPT_DTIMEOUT: o.delete_timeout_ms = (int)v; break;
		case OPT_CORRUPT: o.test_corrupt_chunk = v; break;
		default: return 2;
		}
	}
	if (!o.servers || !l.records_per_segment || optind != argc) {
		fprintf(stderr, "tv_load: need --server and --records N > 0, no arguments\n");
		return 2;
	}
	l.path_buf = malloc(64 + l.pad_bytes + 1);
	if (!l.path_buf) {
		fprintf(stderr, "tv_load: out of memory\n");
		return 1;
	}
	l.rng = l.tag;
	setvbuf(stdout, NULL, _IOLBF, 0); /* every answer is a readiness signal for the test */
	ret = tv_pipeline_new(&l.p, &o, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "tv_load: %s\n", err);
		ret = 1;
		goto out;
	}
	printf("ready\n");
	ret = 0;
	while (fgets(line, sizeof(line), stdin)) {
		int r = command(&l, line);

		if (r < 0) {
			ret = 1;
			break;
		}
		if (r == 0)
			break;
	}
	tv_pipeline_free(l.p);
	if (ret == 0)
		printf("bye\n");
out:
	free(l.refused.v);
	free(l.path_buf);
	return ret;
}
