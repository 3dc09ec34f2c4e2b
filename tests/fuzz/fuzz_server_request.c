/* libFuzzer harness: what tracevaultd does with the request messages of its five rpcs, driven
 * directly (no network): a Write stream's messages through the zero-copy chunk prefix parser
 * (server/chunk_view.c) and the segment state machine (server/segment.c) over a real store and
 * catalog; Query, Delete, Stats and Summary requests unpacked and handled as rpc_server.c does
 * (range check, tv_filter_compile, tv_query_new/next to the end, tv_delete_rpc_check/apply,
 * tv_catalog_stats, tv_summary_new/step to the end/reply).
 * The data dir (a fresh temp dir, removed at exit) holds one committed segment written at start
 * through the same segment code: two blocks of 20 records (versions 3 and 2) whose fields vary
 * (hosts in mixed case, paths with a query, remotes with and without a port, IPv6, no role,
 * no response, flags, a latency of 0), so queries and summaries read real blocks. Whatever an
 * input commits is deleted again after it, and a Delete that names the seeded segment or its
 * blocks is checked but not carried out: every input sees the same data.
 * Input: calls, each a u8 kind (% 5: 0 Write, 1 Query, 2 Delete, 3 Stats, 4 Summary; kinds
 * 0-3 mean what they meant before Summary was added) and a u16 length, then that many bytes.
 * A Write call's bytes are its messages, each a u16 (bits 0-14 the length, bit 15: a chunk's
 * crc32c is made right for its data), a u8 split (the message arrives as up to three gRPC
 * slices cut there), then the message bytes; the others' bytes are the request message.
 * Properties beyond "no crash, no leak": the chunk prefix parser reads exactly what protobuf-c
 * reads (block_id, offset, crc32c, data) whenever it takes a message; a stream ends with one
 * status; a Stats over everything counts the seeded blocks; a Summary refuses exactly the
 * requests PROTOCOL.md calls invalid (and the filters Query refuses), and otherwise answers
 * what the harness counts from a Query of the same window and filter: records, groups_total,
 * the largest max_groups groups in order with their exact counts, latency min/max/sum and
 * sketch buckets, each quantile within TV_SKETCH_ALPHA of the latency of its rank, the other
 * groups summed in `other`; over everything without a filter, the seeded records. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "proto/block.h"
#include "proto/crc32c.h"
#include "proto/latency_sketch.h"
#include "proto/wire.h"
#include "server/catalog.h"
#include "server/chunk_view.h"
#include "server/delete_rpc.h"
#include "server/metrics.h"
#include "server/filter.h"
#include "server/query.h"
#include "server/retention.h"
#include "server/segment.h"
#include "server/store_uring.h"
#include "server/summary.h"
#include "tracevault.pb-c.h"

#include "fuzz_check.h"

#define MAX_MESSAGE_BYTES (4u << 20)
#define SEED_SEGMENT 0x5eed
#define SEED_TOKEN 0x70c3e4
#define SEED_BLOCKS 2
#define SEED_RECORDS 20
/* bounds on every loop the harness drives */
#define MAX_QUERY_STEPS 10000
#define MAX_REAPS 10000

static char dir[64];
static struct tv_store *store;
static struct tv_catalog *catalog;
static struct tv_retention *retention;
static struct tv_query_pool pool;
static struct tv_commit_queue commit_q;
static struct tv_server_metrics metrics; /* counted into, never exposed */
static struct tv_segment_stats seg_stats = { .metrics = &metrics };
static uint64_t seed_block_ids[SEED_BLOCKS];

/* what a stream's sink heard */
struct stream {
	int finished;
	grpc_status_code code;
	int committed;
};

static void sink_ack(void *arg, uint64_t block_id, uint64_t offset)
{
	(void)arg;
	(void)block_id;
	(void)offset;
}

static void sink_reply(void *arg, grpc_byte_buffer *bb)
{
	struct stream *st = arg;
	uint8_t *flat = NULL;
	size_t len = 0;

	/* the server's own replies always unpack */
	FUZZ_CHECK(tv_wire_flatten(bb, MAX_MESSAGE_BYTES, &flat, &len) == 0);
	{
		Tracevault__V1__WriteResponse *r =
			tracevault__v1__write_response__unpack(NULL, len, flat);

		FUZZ_CHECK(r);
		if (r->committed)
			st->committed = 1;
		tracevault__v1__write_response__free_unpacked(r, NULL);
	}
	free(flat);
	grpc_byte_buffer_destroy(bb);
}

static void sink_finish(void *arg, grpc_status_code code, const char *msg)
{
	struct stream *st = arg;

	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "stream ends: status %d %s\n", (int)code, msg);
	FUZZ_CHECK(!st->finished); /* one status per call */
	st->finished = 1;
	st->code = code;
}

static void sink_wake(void *arg)
{
	(void)arg;
}

static const struct tv_segment_sink SINK = { sink_ack, sink_reply, sink_finish, sink_wake };

/* Complete the I/O in flight and the commit group waiting, as the server's loop does. */
static void settle(void)
{
	for (int i = 0; i < MAX_REAPS && (tv_store_inflight(store) || commit_q.n); i++) {
		if (commit_q.n) {
			tv_segment_commit_group(&commit_q);
			commit_q.new_segments = 0;
			commit_q.new_oldest_ts_ns = UINT64_MAX;
		}
		tv_store_reap(store, tv_store_inflight(store) ? 1000 : 0);
	}
	FUZZ_CHECK(!tv_store_inflight(store) && !commit_q.n);
}

/* A byte buffer of the n bytes at p, as up to three slices cut at split (gRPC hands a message
 * over in slices of any size). */
static grpc_byte_buffer *buffer_of(const uint8_t *p, size_t n, uint8_t split)
{
	grpc_slice s[3];
	size_t a = n * (split & 0xf) / 16, b = a + (n - a) * (split >> 4) / 16, k = 0;
	grpc_byte_buffer *bb;

	s[k++] = grpc_slice_from_copied_buffer((const char *)p, a);
	if (b > a)
		s[k++] = grpc_slice_from_copied_buffer((const char *)p + a, b - a);
	if (n > b)
		s[k++] = grpc_slice_from_copied_buffer((const char *)p + b, n - b);
	bb = grpc_raw_byte_buffer_create(s, k);
	for (size_t i = 0; i < k; i++)
		grpc_slice_unref(s[i]);
	return bb;
}

/* The zero-copy prefix parser against protobuf-c on the same message. */
static void check_chunk_view(grpc_byte_buffer *bb, const uint8_t *p, size_t n)
{
	struct tv_chunk_view v;
	int ret;

	memset(&v, 0, sizeof(v));
	ret = tv_chunk_view_parse(bb, &v);
	FUZZ_CHECK(ret == 0 || ret == 1 || ret == -ENOMEM);
	if (ret == 1) {
		Tracevault__V1__WriteRequest *req = tracevault__v1__write_request__unpack(NULL, n, p);
		uint8_t *copy = malloc(v.data_len + 1);
		size_t got;

		FUZZ_CHECK(req && req->value_case == TRACEVAULT__V1__WRITE_REQUEST__VALUE_CHUNK);
		FUZZ_CHECK(req->chunk->block_id == v.block_id && req->chunk->offset == v.offset &&
			   req->chunk->crc32c == v.crc32c && req->chunk->data.len == v.data_len);
		FUZZ_CHECK(copy);
		got = tv_iov_copy_out(v.iov, v.iovcnt, 0, copy, v.data_len);
		FUZZ_CHECK(got == v.data_len);
		FUZZ_CHECK(v.data_len == 0 || memcmp(copy, req->chunk->data.data, got) == 0);
		FUZZ_CHECK(tv_iov_crc32c(0, v.iov, v.iovcnt, 0) ==
			   tv_crc32c(req->chunk->data.data, req->chunk->data.len));
		free(copy);
		tracevault__v1__write_request__free_unpacked(req, NULL);
	}
	tv_chunk_view_release(&v);
}

/* Delete what the stream committed, back to the seeded data: the segment with its token, or,
 * when its OPEN_SEGMENT carried no token (a Delete of such a segment is refused: only its
 * block ids remove it), the blocks the stream opened. */
static void delete_segment(uint64_t segment_id, uint64_t token, uint64_t *block_ids,
			   size_t n_block_ids)
{
	Tracevault__V1__DeleteRequest req = TRACEVAULT__V1__DELETE_REQUEST__INIT;
	grpc_byte_buffer *bb = NULL;
	char msg[256];

	req.segment_id = token ? segment_id : 0;
	req.writer_token = token;
	if (!token) {
		if (!n_block_ids)
			return; /* an empty segment without a token: nothing to delete */
		req.n_block_ids = n_block_ids;
		req.block_ids = block_ids;
	}
	FUZZ_CHECK(tv_delete_rpc_check(catalog, &req, msg, sizeof(msg)) == GRPC_STATUS_OK);
	FUZZ_CHECK(tv_delete_rpc_apply(catalog, store, &metrics, retention, &req, 0, 0, &bb, msg,
				       sizeof(msg)) == GRPC_STATUS_OK);
	grpc_byte_buffer_destroy(bb);
	settle();
}

/* A Write stream: each message as the transport hands it over, then the half-close. */
static void write_stream(struct fuzz_in *in, bool check)
{
	struct stream st = { 0 };
	struct tv_segment *seg = tv_segment_new(catalog, store, MAX_MESSAGE_BYTES, &SINK, &st,
						&seg_stats, &commit_q);
	uint64_t seg_id = 0, token = 0, *block_ids = NULL;
	size_t n_block_ids = 0;

	FUZZ_CHECK(seg);
	while (in->n >= 3 && !st.finished) {
		uint16_t word = (uint16_t)fuzz_uint(in, 2);
		size_t n = word & 0x7fff, len;
		uint8_t split = fuzz_u8(in), *fixed = NULL;
		const uint8_t *p = fuzz_bytes(in, n, &len);
		Tracevault__V1__WriteRequest *req = tracevault__v1__write_request__unpack(NULL, len, p);
		grpc_byte_buffer *bb;

		/* bit 15 of the length: a chunk's crc32c is made right for its data (repacked),
		 * so mutated chunks, offsets and command orders reach the segment's rules */
		if ((word & 0x8000) && req &&
		    req->value_case == TRACEVAULT__V1__WRITE_REQUEST__VALUE_CHUNK) {
			req->chunk->crc32c = tv_crc32c(req->chunk->data.data, req->chunk->data.len);
			fixed = malloc(tracevault__v1__write_request__get_packed_size(req) + 1);
			FUZZ_CHECK(fixed);
			len = tracevault__v1__write_request__pack(req, fixed);
			p = fixed;
		}
		bb = buffer_of(p, len, split);

		/* the segment id and token this stream opens, to delete it if it commits */
		if (req && req->value_case == TRACEVAULT__V1__WRITE_REQUEST__VALUE_COMMAND &&
		    req->command->type == TRACEVAULT__V1__COMMAND_TYPE__OPEN_SEGMENT && !seg_id) {
			seg_id = req->command->segment_id;
			token = req->command->writer_token;
		}
		/* and the blocks it opens, to delete them when it has no token */
		if (req && req->value_case == TRACEVAULT__V1__WRITE_REQUEST__VALUE_COMMAND &&
		    req->command->type == TRACEVAULT__V1__COMMAND_TYPE__OPEN_BLOCK &&
		    req->command->block_id != seed_block_ids[0] &&
		    req->command->block_id != seed_block_ids[1]) {
			block_ids = realloc(block_ids, (n_block_ids + 1) * sizeof(*block_ids));
			FUZZ_CHECK(block_ids);
			block_ids[n_block_ids++] = req->command->block_id;
		}
		if (req)
			tracevault__v1__write_request__free_unpacked(req, NULL);
		if (check)
			check_chunk_view(bb, p, len);
		/* the transport receives only when the segment says so: wait for its I/O */
		for (int i = 0; i < MAX_REAPS && !tv_segment_can_receive(seg) && !st.finished &&
				(tv_store_inflight(store) || commit_q.n);
		     i++)
			settle();
		if (!st.finished)
			tv_segment_on_message(seg, bb);
		grpc_byte_buffer_destroy(bb);
		free(fixed);
		settle();
	}
	if (!st.finished)
		tv_segment_on_end(seg);
	settle();
	tv_segment_free(seg);
	settle();
	if (st.committed && check)
		delete_segment(seg_id, token, block_ids, n_block_ids);
	free(block_ids);
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *d, struct fuzz_in *in)
{
	size_t n = (size_t)fuzz_uint(in, 2), len;
	const uint8_t *p = fuzz_bytes(in, n, &len);

	return protobuf_c_message_unpack(d, NULL, len, p);
}

/* Plan a query of params and filter (taken) and read every batch to the end, each unpacked
 * and handed to batch (which must not keep it). Returns 0 when the query ended (its end
 * status read), or tv_query_new's or tv_query_next's error. */
static int run_query(const struct tv_query_params *params, struct tv_filter *filter,
		     void (*batch)(void *arg, const Tracevault__V1__QueryResponse *r), void *arg)
{
	struct tv_query *q = NULL;
	char err[TV_QUERY_ERR_LEN], details[256];
	int ret, steps = 0;

	ret = tv_query_new(&q, catalog, store, &pool, params, filter, err, sizeof(err));
	if (ret) {
		FUZZ_CHECK(ret < 0 && err[0]);
		return ret;
	}
	do {
		grpc_byte_buffer *bb = NULL;

		ret = tv_query_next(q, &bb, err, sizeof(err));
		if (ret == 1) {
			uint8_t *flat = NULL;
			size_t len = 0;
			Tracevault__V1__QueryResponse *r;

			FUZZ_CHECK(tv_wire_flatten(bb, 1u << 30, &flat, &len) == 0);
			r = tracevault__v1__query_response__unpack(NULL, len, flat);
			FUZZ_CHECK(r);
			if (getenv("FUZZ_TRACE"))
				fprintf(stderr, "query batch: %zu records\n", r->n_records);
			batch(arg, r);
			tracevault__v1__query_response__free_unpacked(r, NULL);
			free(flat);
			grpc_byte_buffer_destroy(bb);
		}
	} while (ret >= 1 && ++steps < MAX_QUERY_STEPS);
	FUZZ_CHECK(ret <= 0); /* ended within the bound */
	if (ret == 0)
		(void)tv_query_end_status(q, details, sizeof(details));
	tv_query_free(q);
	return ret;
}

/* no more records than asked for, in one batch */
static void batch_within_limit(void *arg, const Tracevault__V1__QueryResponse *r)
{
	const uint64_t *limit = arg;

	FUZZ_CHECK(!*limit || r->n_records <= *limit);
}

static void query(struct fuzz_in *in)
{
	Tracevault__V1__QueryRequest *req =
		(void *)unpack(&tracevault__v1__query_request__descriptor, in);
	struct tv_filter *filter = NULL;
	struct tv_query_params params;
	char err[TV_QUERY_ERR_LEN];
	int ret;

	if (!req)
		return;
	if (req->from_ns > req->to_ns) /* rpc_server.c's range_valid: INVALID_ARGUMENT */
		goto out;
	ret = tv_filter_compile(req->filter, &filter, err, sizeof(err));
	if (ret) {
		FUZZ_CHECK(ret < 0 && err[0]);
		goto out;
	}
	params = (struct tv_query_params){ .from_ns = req->from_ns, .to_ns = req->to_ns,
					   .limit = req->limit, .reverse = req->reverse,
					   .features = req->filter ? 1 : 0, .silent = true };
	(void)run_query(&params, filter, batch_within_limit, &req->limit);
out:
	tracevault__v1__query_request__free_unpacked(req, NULL);
}

static void delete_call(struct fuzz_in *in)
{
	Tracevault__V1__DeleteRequest *req =
		(void *)unpack(&tracevault__v1__delete_request__descriptor, in);
	grpc_byte_buffer *bb = NULL;
	grpc_status_code code;
	char msg[256];
	bool seeded = false;

	if (!req)
		return;
	code = tv_delete_rpc_check(catalog, req, msg, sizeof(msg));
	if (code != GRPC_STATUS_OK)
		goto out;
	/* the seeded data stays: every input sees the same archive */
	seeded = req->segment_id == SEED_SEGMENT;
	for (size_t i = 0; i < req->n_block_ids; i++)
		for (size_t k = 0; k < SEED_BLOCKS; k++)
			seeded = seeded || req->block_ids[i] == seed_block_ids[k];
	if (seeded)
		goto out;
	code = tv_delete_rpc_apply(catalog, store, &metrics, retention, req, 0, 0, &bb, msg,
				   sizeof(msg));
	FUZZ_CHECK(code == GRPC_STATUS_OK ? bb != NULL : msg[0] != '\0');
	if (bb)
		grpc_byte_buffer_destroy(bb);
	settle();
out:
	tracevault__v1__delete_request__free_unpacked(req, NULL);
}

static void stats(struct fuzz_in *in)
{
	Tracevault__V1__StatsRequest *req =
		(void *)unpack(&tracevault__v1__stats_request__descriptor, in);
	struct tv_catalog_stats st;

	if (!req)
		return;
	if (req->from_ns <= req->to_ns)
		FUZZ_CHECK(tv_catalog_stats(catalog, req->from_ns, req->to_ns, &st) == 0);
	tracevault__v1__stats_request__free_unpacked(req, NULL);
}

/* ---- Summary, against the same window and filter counted from a Query's records ---- */

/* A group as the reference counts it, from the records a Query returned */
struct ref_group {
	char *key;
	size_t key_len;
	uint64_t count, n_4xx, n_5xx, n_no_response, n_flagged;
	uint64_t lat_count, lat_min_ns, lat_max_ns, lat_sum_ns;
	uint64_t *lat; /* the latencies counted (status != 0), lat_count of them */
	struct tv_sketch sk;
};

struct ref {
	int by;
	struct ref_group *g;
	size_t n, cap;
	uint64_t records, skipped;
};

/* The key of r under GroupBy by, as PROTOCOL.md words it (written apart from summary.c's):
 * into buf (at least 24 bytes) or pointing into r. */
static const char *ref_key(int by, const Tracevault__V1__TraceRecord *r, char *buf, size_t *len)
{
	const char *k = "", *colon;

	switch (by) {
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_PATH: /* before its first '?' */
		k = r->path;
		*len = strcspn(k, "?");
		return k;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_HOST: /* ASCII-lowercased, port kept */
		*len = strlen(r->host);
		for (size_t i = 0; i < *len && i < 255; i++)
			buf[i] = (char)(r->host[i] >= 'A' && r->host[i] <= 'Z' ? r->host[i] + 32 :
										     r->host[i]);
		FUZZ_CHECK(*len < 256);
		return buf;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_METHOD:
		k = r->method;
		break;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_STATUS:
		*len = (size_t)sprintf(buf, "%u", r->status);
		return buf;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_COMM:
		k = r->comm;
		break;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_REMOTE: /* "[::1]:80" -> "::1", "a:80" -> "a" */
		k = r->remote;
		*len = strlen(k);
		colon = strrchr(k, ':');
		if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
			return k; /* no port */
		if (k[0] == '[' && colon > k + 1 && colon[-1] == ']') {
			*len = (size_t)(colon - k) - 2;
			return k + 1;
		}
		if (k[0] != '[' && memchr(k, ':', (size_t)(colon - k)) == NULL)
			*len = (size_t)(colon - k);
		return k;
	case TRACEVAULT__V1__GROUP_BY__GROUP_BY_ROLE:
		k = r->role;
		break;
	default:
		break;
	}
	*len = strlen(k);
	return k;
}

static void ref_batch(void *arg, const Tracevault__V1__QueryResponse *resp)
{
	struct ref *ref = arg;

	ref->skipped += resp->n_skipped;
	for (size_t i = 0; i < resp->n_records; i++) {
		const Tracevault__V1__TraceRecord *r = resp->records[i];
		char buf[256];
		size_t len, k;
		const char *key = ref_key(ref->by, r, buf, &len);
		struct ref_group *g;

		for (k = 0; k < ref->n; k++)
			if (ref->g[k].key_len == len && memcmp(ref->g[k].key, key, len) == 0)
				break;
		if (k == ref->n) {
			if (ref->n == ref->cap) {
				ref->cap = ref->cap ? 2 * ref->cap : 16;
				ref->g = realloc(ref->g, ref->cap * sizeof(*ref->g));
				FUZZ_CHECK(ref->g);
			}
			ref->g[k] = (struct ref_group){ .key = malloc(len + 1), .key_len = len };
			FUZZ_CHECK(ref->g[k].key);
			memcpy(ref->g[k].key, key, len);
			ref->g[k].key[len] = '\0';
			ref->n++;
		}
		g = &ref->g[k];
		g->count++;
		g->n_4xx += r->status >= 400 && r->status <= 499;
		g->n_5xx += r->status >= 500 && r->status <= 599;
		g->n_no_response += r->status == 0;
		g->n_flagged += r->flags != 0;
		if (r->status) {
			g->lat = realloc(g->lat, (g->lat_count + 1) * sizeof(*g->lat));
			FUZZ_CHECK(g->lat && tv_sketch_add(&g->sk, r->latency_ns, 1, NULL) == 0);
			g->lat[g->lat_count++] = r->latency_ns;
			g->lat_min_ns = g->lat_count == 1 || r->latency_ns < g->lat_min_ns ?
						r->latency_ns : g->lat_min_ns;
			g->lat_max_ns = r->latency_ns > g->lat_max_ns ? r->latency_ns : g->lat_max_ns;
			g->lat_sum_ns = g->lat_sum_ns > UINT64_MAX - r->latency_ns ?
						UINT64_MAX : g->lat_sum_ns + r->latency_ns;
		}
		ref->records++;
	}
}

/* PROTOCOL.md's order of groups: count descending, then key bytewise ascending */
static int ref_order(const void *a, const void *b)
{
	const struct ref_group *x = a, *y = b;
	int c = memcmp(x->key, y->key, x->key_len < y->key_len ? x->key_len : y->key_len);

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static int u64_order(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Add g's counts into o (the groups past the ones returned, which the reply sums in other). */
static void ref_fold(struct ref_group *o, const struct ref_group *g)
{
	o->lat = realloc(o->lat, (o->lat_count + g->lat_count + 1) * sizeof(*o->lat));
	FUZZ_CHECK(o->lat && tv_sketch_merge(&o->sk, &g->sk, NULL) == 0);
	if (g->lat_count)
		memcpy(o->lat + o->lat_count, g->lat, g->lat_count * sizeof(*g->lat));
	if (g->lat_count && (o->lat_count == 0 || g->lat_min_ns < o->lat_min_ns))
		o->lat_min_ns = g->lat_min_ns;
	o->lat_max_ns = g->lat_max_ns > o->lat_max_ns ? g->lat_max_ns : o->lat_max_ns;
	o->lat_sum_ns = o->lat_sum_ns > UINT64_MAX - g->lat_sum_ns ? UINT64_MAX :
								    o->lat_sum_ns + g->lat_sum_ns;
	o->lat_count += g->lat_count;
	o->count += g->count;
	o->n_4xx += g->n_4xx;
	o->n_5xx += g->n_5xx;
	o->n_no_response += g->n_no_response;
	o->n_flagged += g->n_flagged;
}

/* A group of the reply is the reference's: the same counts and exact latency figures, the
 * same sketch buckets, each quantile within TV_SKETCH_ALPHA of the latency of its rank
 * (floor(q*(n-1)) of the sorted latencies: PROTOCOL.md's guarantee). */
static void check_group(const Tracevault__V1__SummaryGroup *m, struct ref_group *g,
			const double *qs, size_t nq)
{
	Tracevault__V1__LatencySketch want = TRACEVAULT__V1__LATENCY_SKETCH__INIT;

	FUZZ_CHECK(strlen(m->key) == g->key_len && memcmp(m->key, g->key, g->key_len) == 0);
	FUZZ_CHECK(m->count == g->count && m->count_4xx == g->n_4xx && m->count_5xx == g->n_5xx &&
		   m->count_no_response == g->n_no_response && m->count_flagged == g->n_flagged);
	FUZZ_CHECK(m->latency_count == g->lat_count && m->latency_sum_ns == g->lat_sum_ns);
	FUZZ_CHECK(m->latency_min_ns == g->lat_min_ns && m->latency_max_ns == g->lat_max_ns);
	tv_sketch_to_pb(&g->sk, &want);
	FUZZ_CHECK(m->latency && m->latency->scale == TV_SKETCH_SCALE &&
		   m->latency->zero_count == want.zero_count &&
		   m->latency->offset == want.offset &&
		   m->latency->n_bucket_counts == want.n_bucket_counts);
	FUZZ_CHECK(!want.n_bucket_counts ||
		   memcmp(m->latency->bucket_counts, want.bucket_counts,
			  want.n_bucket_counts * sizeof(uint64_t)) == 0);
	FUZZ_CHECK(m->n_quantile_ns == nq);
	if (g->lat_count)
		qsort(g->lat, g->lat_count, sizeof(*g->lat), u64_order);
	for (size_t i = 0; i < nq; i++) {
		double x = 0;

		if (g->lat_count)
			x = (double)g->lat[(uint64_t)floor(qs[i] * (double)(g->lat_count - 1))];
		FUZZ_CHECK(fabs(m->quantile_ns[i] - x) <= TV_SKETCH_ALPHA * x * (1 + 1e-9) + 1e-6);
	}
}

/* What Summary must refuse (INVALID_ARGUMENT), from PROTOCOL.md's words. */
static bool summary_request_valid(const Tracevault__V1__SummaryRequest *req)
{
	if (req->from_ns > req->to_ns || (int)req->by < 0 ||
	    (int)req->by > TRACEVAULT__V1__GROUP_BY__GROUP_BY_ROLE ||
	    req->max_groups > TV_SUMMARY_MAX_GROUPS || req->n_quantiles > TV_SUMMARY_MAX_QUANTILES)
		return false;
	for (size_t i = 0; i < req->n_quantiles; i++)
		if (!(req->quantiles[i] >= 0 && req->quantiles[i] <= 1))
			return false;
	return true;
}

/* tv_summary_free logs a line per summary on stderr: not one per execution (FUZZ_TRACE
 * keeps it). */
static void summary_free_quietly(struct tv_summary *s)
{
	int saved, null = -1;

	if (!s)
		return;
	saved = getenv("FUZZ_TRACE") ? -1 : dup(2);

	if (saved >= 0 && (null = open("/dev/null", O_WRONLY)) >= 0)
		dup2(null, 2);
	tv_summary_free(s);
	if (null >= 0) {
		dup2(saved, 2);
		close(null);
	}
	if (saved >= 0)
		close(saved);
}

static void summary(struct fuzz_in *in)
{
	static const double dflt[] = TV_SUMMARY_DEFAULT_QUANTILES;
	Tracevault__V1__SummaryRequest *req =
		(void *)unpack(&tracevault__v1__summary_request__descriptor, in);
	Tracevault__V1__SummaryResponse *r = NULL;
	struct tv_summary *s = NULL;
	struct tv_filter *filter = NULL;
	struct ref ref = { 0 };
	struct ref_group other = { .key = (char *)"" };
	struct tv_query_params params;
	grpc_byte_buffer *bb = NULL;
	char err[TV_QUERY_ERR_LEN] = "";
	uint8_t *flat = NULL;
	size_t len = 0, nq, max_groups, want_groups;
	const double *qs;
	int ret, fret, steps = 0;

	if (!req)
		return;
	ret = tv_summary_new(&s, catalog, store, &pool, req, err, sizeof(err));
	if (!summary_request_valid(req)) {
		FUZZ_CHECK(ret == -EINVAL && err[0] && !s);
		goto out;
	}
	/* a filter Query refuses, Summary refuses with the same errno */
	fret = tv_filter_compile(req->filter, &filter, err, sizeof(err));
	if (fret) {
		FUZZ_CHECK(ret == fret && !s);
		goto out;
	}
	FUZZ_CHECK(ret == 0 && s);
	do
		ret = tv_summary_step(s, err, sizeof(err));
	while (ret == 1 && ++steps < MAX_QUERY_STEPS);
	FUZZ_CHECK(ret == 0); /* the seeded blocks are whole: nothing can stop it */
	FUZZ_CHECK(tv_summary_reply(s, TV_DEFAULT_MAX_MESSAGE_BYTES, &bb, err, sizeof(err)) == 0);
	FUZZ_CHECK(tv_wire_flatten(bb, 1u << 30, &flat, &len) == 0);
	r = tracevault__v1__summary_response__unpack(NULL, len, flat);
	FUZZ_CHECK(r);

	/* the reference: the same window and filter as a Query, every record */
	ref.by = (int)req->by;
	params = (struct tv_query_params){ .from_ns = req->from_ns, .to_ns = req->to_ns,
					   .features = req->filter ? 1 : 0, .silent = true };
	FUZZ_CHECK(run_query(&params, filter, ref_batch, &ref) == 0);
	filter = NULL; /* the query took it */
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "summary: %llu records in %zu groups (query: %llu in %zu)\n",
			(unsigned long long)r->records, r->n_groups,
			(unsigned long long)ref.records, ref.n);
	FUZZ_CHECK(!r->n_skipped && !ref.skipped && !r->groups_overflowed);
	FUZZ_CHECK(r->records == ref.records && r->groups_total == ref.n);
	/* over everything, the seeded records exactly (as the Stats at the end counts them) */
	if (req->from_ns == 0 && req->to_ns == UINT64_MAX && !req->filter)
		FUZZ_CHECK(r->records == SEED_BLOCKS * SEED_RECORDS);

	/* the largest max_groups groups in order, the rest summed in other */
	if (ref.n)
		qsort(ref.g, ref.n, sizeof(*ref.g), ref_order);
	max_groups = req->max_groups ? req->max_groups : TV_SUMMARY_DEFAULT_GROUPS;
	want_groups = ref.n < max_groups ? ref.n : max_groups;
	nq = req->n_quantiles ? req->n_quantiles : sizeof(dflt) / sizeof(dflt[0]);
	qs = req->n_quantiles ? req->quantiles : dflt;
	FUZZ_CHECK(r->n_groups == want_groups);
	for (size_t i = 0; i < want_groups; i++)
		check_group(r->groups[i], &ref.g[i], qs, nq);
	for (size_t i = want_groups; i < ref.n; i++)
		ref_fold(&other, &ref.g[i]);
	FUZZ_CHECK(!other.count == !r->other);
	if (r->other)
		check_group(r->other, &other, qs, nq);
out:
	for (size_t i = 0; i < ref.n; i++) {
		free(ref.g[i].key);
		free(ref.g[i].lat);
		tv_sketch_free(&ref.g[i].sk);
	}
	free(ref.g);
	free(other.lat);
	tv_sketch_free(&other.sk);
	tv_filter_free(filter);
	if (r)
		tracevault__v1__summary_response__free_unpacked(r, NULL);
	free(flat);
	if (bb)
		grpc_byte_buffer_destroy(bb);
	summary_free_quietly(s);
	tracevault__v1__summary_request__free_unpacked(req, NULL);
}

/* ---- the seeded archive ---- */

static size_t put_msg(uint8_t *out, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	/* chunks ask for their crc32c to be made right (a no-op here; see write_stream) */
	unsigned fix = m->descriptor == &tracevault__v1__write_request__descriptor &&
		       ((const Tracevault__V1__WriteRequest *)m)->value_case ==
			       TRACEVAULT__V1__WRITE_REQUEST__VALUE_CHUNK;

	FUZZ_CHECK(n < 0x8000);
	out[0] = (uint8_t)n;
	out[1] = (uint8_t)(n >> 8 | fix << 7);
	out[2] = 0x48; /* three slices */
	return 3 + protobuf_c_message_pack(m, out + 3);
}

static uint64_t stream_segment = SEED_SEGMENT, stream_token = SEED_TOKEN;

static size_t put_cmd(uint8_t *out, Tracevault__V1__CommandType type, uint64_t block_id,
		      uint64_t length)
{
	Tracevault__V1__WriteRequest w = TRACEVAULT__V1__WRITE_REQUEST__INIT;
	Tracevault__V1__WriteCommand c = TRACEVAULT__V1__WRITE_COMMAND__INIT;

	c.type = type;
	c.segment_id = stream_segment;
	c.writer_token = type == TRACEVAULT__V1__COMMAND_TYPE__OPEN_SEGMENT ? stream_token : 0;
	c.block_id = block_id;
	c.length = length;
	w.value_case = TRACEVAULT__V1__WRITE_REQUEST__VALUE_COMMAND;
	w.command = &c;
	return put_msg(out, &w.base);
}

static size_t put_chunk(uint8_t *out, uint64_t block_id, uint64_t offset, const void *data,
			size_t len)
{
	Tracevault__V1__WriteRequest w = TRACEVAULT__V1__WRITE_REQUEST__INIT;
	Tracevault__V1__Chunk c = TRACEVAULT__V1__CHUNK__INIT;

	c.block_id = block_id;
	c.offset = offset;
	c.crc32c = tv_crc32c(data, len);
	c.data.data = (uint8_t *)data;
	c.data.len = len;
	w.value_case = TRACEVAULT__V1__WRITE_REQUEST__VALUE_CHUNK;
	w.chunk = &c;
	return put_msg(out, &w.base);
}

static void *seal(unsigned version, uint64_t block_id, uint64_t t0, size_t *len)
{
	struct tv_block_builder *b = tv_block_builder_new();
	void *out = NULL;

	FUZZ_CHECK(b && tv_block_builder_set_version(b, version) == 0);
	for (unsigned i = 0; i < SEED_RECORDS; i++) {
		Tracevault__V1__TraceRecord r = TRACEVAULT__V1__TRACE_RECORD__INIT;
		char trace[33];

		static const char *const remotes[] = { "127.0.0.1:5000", "[::1]:8080",
						       "10.0.0.7:443", "::1" };
		static const char *const hosts[] = { "example.com", "Example.COM:8080", "" };

		r.ts_ns = t0 + i * 1000000ull;
		r.latency_ns = i == 4 ? 0 : 1000 + i * i * 97;
		r.pid = 100 + i % 3;
		r.comm = i % 2 ? "nginx" : "curl";
		r.remote = (char *)remotes[(i + 2) % 4];
		r.method = i == 6 ? "DELETE" : i % 4 ? "GET" : "POST";
		r.path = i % 3 ? i % 2 ? "/api/items?id=7" : "/api/items" : "/health";
		r.status = i == 7 ? 404 : i == 11 ? 0 : i % 5 ? 200 : 500;
		r.flags = i == 11 ? 1 /* NO_RESPONSE */ : i == 13 ? 2 /* PARTIAL */ : 0;
		r.end_ns = r.ts_ns + r.latency_ns;
		r.role = i == 9 ? "" : i % 2 ? "server" : "client";
		r.host = (char *)hosts[i % 3];
		snprintf(trace, sizeof(trace), "4bf92f3577b34da6a3ce929d0e0e%04x", i);
		r.trace_id = trace;
		FUZZ_CHECK(tv_block_builder_add(b, &r) == 0);
	}
	FUZZ_CHECK(tv_block_builder_seal(b, block_id, TV_CODEC_ZSTD, 3, &out, len) == 0);
	tv_block_builder_free(b);
	return out;
}

/* The Write stream that writes the seeded segment (a v3 block, then a v2 block: one check
 * context reads both); also the seed corpus's Write input when TV_FUZZ_WRITE_SEEDS names a
 * directory. */
static size_t seed_stream(uint8_t *out, const uint64_t *block_ids)
{
	size_t n = 0;

	n += put_cmd(out + n, TRACEVAULT__V1__COMMAND_TYPE__OPEN_SEGMENT, 0, 0);
	for (unsigned k = 0; k < SEED_BLOCKS; k++) {
		size_t len, half;
		void *blk = seal(k ? 2 : 3, block_ids[k], 1767225600000000000ull + k * 1000000000ull,
				 &len);

		n += put_cmd(out + n, TRACEVAULT__V1__COMMAND_TYPE__OPEN_BLOCK, block_ids[k], len);
		/* the second block in two chunks */
		half = k ? len / 2 : len;
		n += put_chunk(out + n, block_ids[k], 0, blk, half);
		if (half < len)
			n += put_chunk(out + n, block_ids[k], half, (uint8_t *)blk + half,
				       len - half);
		free(blk);
	}
	n += put_cmd(out + n, TRACEVAULT__V1__COMMAND_TYPE__FLUSH, 0, 0);
	n += put_cmd(out + n, TRACEVAULT__V1__COMMAND_TYPE__COMMIT, 0, 0);
	return n;
}

/* ---- the seed corpus (TV_FUZZ_WRITE_SEEDS=DIR): one file per call kind ---- */

static void write_seed(const char *dir_, const char *name, uint8_t kind, const uint8_t *p,
		       size_t n)
{
	uint8_t head[3] = { kind, (uint8_t)n, (uint8_t)(n >> 8) };
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir_, name);
	f = fopen(path, "wb");
	if (!f || fwrite(head, 1, 3, f) != 3 || fwrite(p, 1, n, f) != n || fclose(f))
		exit(1);
}

static void write_msg_seed(const char *dir_, const char *name, uint8_t kind,
			   const ProtobufCMessage *m)
{
	uint8_t buf[4096];
	size_t n = protobuf_c_message_pack(m, buf);

	write_seed(dir_, name, kind, buf, n);
}

static void write_seeds(const char *d)
{
	static uint8_t buf[64 << 10];
	const uint64_t ids[SEED_BLOCKS] = { 0xfeed000000000001ull, 0xfeed000000000002ull };
	Tracevault__V1__QueryRequest q = TRACEVAULT__V1__QUERY_REQUEST__INIT;
	Tracevault__V1__QueryFilter f = TRACEVAULT__V1__QUERY_FILTER__INIT;
	Tracevault__V1__StringMatch sm = TRACEVAULT__V1__STRING_MATCH__INIT;
	Tracevault__V1__StringMatch *paths[1] = { &sm };
	Tracevault__V1__Range st = TRACEVAULT__V1__RANGE__INIT, lat = TRACEVAULT__V1__RANGE__INIT;
	Tracevault__V1__Range *status[1] = { &st };
	Tracevault__V1__DeleteRequest del = TRACEVAULT__V1__DELETE_REQUEST__INIT;
	Tracevault__V1__StatsRequest sr = TRACEVAULT__V1__STATS_REQUEST__INIT;
	Tracevault__V1__SummaryRequest sum = TRACEVAULT__V1__SUMMARY_REQUEST__INIT;
	double quantiles[4] = { 0, 0.25, 0.5, 1 };
	char *methods[2] = { "GET", "POST" }, *trace[1] = { "4BF92F3577B34DA6A3CE929D0E0E0003" };
	char *remotes[2] = { "127.0.0.0/8", "::1" };
	uint64_t del_ids[2] = { 0xfeed000000000001ull, 42 };
	size_t n;

	/* a whole segment of another writer (committed, then deleted by the harness) */
	stream_segment = 0x5eed2;
	stream_token = 0x70c3e5;
	n = seed_stream(buf, ids);
	write_seed(d, "write_segment", 0, buf, n);
	/* the window of the seeded blocks, forward and reverse */
	q.from_ns = 1767225600000000000ull;
	q.to_ns = 1767225602000000000ull;
	write_msg_seed(d, "query_window", 1, &q.base);
	q.reverse = 1;
	q.limit = 7;
	write_msg_seed(d, "query_reverse_limit", 1, &q.base);
	q.reverse = 0;
	q.limit = 0;
	/* filters of each kind */
	f.n_methods = 2;
	f.methods = methods;
	st.lo = 200;
	st.hi = 299;
	f.n_status = 1;
	f.status = status;
	sm.kind = TRACEVAULT__V1__MATCH_KIND__MATCH_GLOB;
	sm.value = "/api/*";
	f.n_paths = 1;
	f.paths = paths;
	q.filter = &f;
	write_msg_seed(d, "query_filter_method_status_path", 1, &q.base);
	memset(&f, 0, sizeof(f));
	tracevault__v1__query_filter__init(&f);
	f.n_trace_ids = 1;
	f.trace_ids = trace;
	f.n_remotes = 2;
	f.remotes = remotes;
	lat.lo = 1005;
	lat.hi = UINT64_MAX;
	f.latency_ns = &lat;
	f.role = TRACEVAULT__V1__ROLE__ROLE_SERVER;
	f.flags_none = 0xffffffffu;
	sm.kind = TRACEVAULT__V1__MATCH_KIND__MATCH_PREFIX;
	sm.value = "ngi";
	f.n_comms = 1;
	f.comms = paths;
	write_msg_seed(d, "query_filter_trace_remote_latency", 1, &q.base);
	/* deletes: another writer's segment with a wrong token, unknown and known block ids */
	del.segment_id = SEED_SEGMENT;
	del.writer_token = 1;
	write_msg_seed(d, "delete_wrong_token", 2, &del.base);
	del.segment_id = 0;
	del.writer_token = 0;
	del.n_block_ids = 2;
	del.block_ids = del_ids;
	write_msg_seed(d, "delete_blocks", 2, &del.base);
	/* stats: everything, and an inverted range */
	sr.to_ns = UINT64_MAX;
	write_msg_seed(d, "stats_all", 3, &sr.base);
	sr.from_ns = 5;
	sr.to_ns = 4;
	write_msg_seed(d, "stats_inverted", 3, &sr.base);
	/* summaries: everything by path; a filtered window by remote with two groups and
	 * quantiles; by host; an unknown GroupBy (refused) */
	sum.to_ns = UINT64_MAX;
	sum.by = TRACEVAULT__V1__GROUP_BY__GROUP_BY_PATH;
	write_msg_seed(d, "summary_all_by_path", 4, &sum.base);
	sum.from_ns = 1767225600000000000ull;
	sum.to_ns = 1767225601010000000ull;
	sum.by = TRACEVAULT__V1__GROUP_BY__GROUP_BY_REMOTE;
	sum.max_groups = 2;
	sum.n_quantiles = 4;
	sum.quantiles = quantiles;
	memset(&f, 0, sizeof(f));
	tracevault__v1__query_filter__init(&f);
	f.n_methods = 2;
	f.methods = methods;
	sum.filter = &f;
	write_msg_seed(d, "summary_filter_by_remote_max_groups", 4, &sum.base);
	sum.filter = NULL;
	sum.max_groups = 0;
	sum.n_quantiles = 0;
	sum.by = TRACEVAULT__V1__GROUP_BY__GROUP_BY_HOST;
	write_msg_seed(d, "summary_window_by_host", 4, &sum.base);
	sum.by = 9;
	write_msg_seed(d, "summary_unknown_group_by", 4, &sum.base);
	exit(0);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cleanup(void)
{
	tv_retention_free(retention);
	tv_catalog_close(catalog);
	tv_store_close(store);
	if (dir[0])
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct tv_retention_opts ro = { .grace_ns = 0 };
	const char *seeds = getenv("TV_FUZZ_WRITE_SEEDS");
	static uint8_t stream_buf[64 << 10];
	char db[128], err[256];
	struct fuzz_in in;
	size_t n;

	(void)argc;
	(void)argv;
	grpc_init();
	seed_block_ids[0] = 0xb10c000000000001ull;
	seed_block_ids[1] = 0xb10c000000000002ull;
	snprintf(dir, sizeof(dir), "%s/tv-fuzz-server-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir) || snprintf(db, sizeof(db), "%s/%s", dir, TV_CATALOG_FILE) < 0 ||
	    tv_store_open(&store, dir, err, sizeof(err)) ||
	    tv_catalog_open(&catalog, db, err, sizeof(err))) {
		fprintf(stderr, "fuzz_server_request: cannot open a data dir in %s: %s\n", dir, err);
		exit(1);
	}
	atexit(cleanup);
	tv_query_pool_init(&pool, 0, 0);
	commit_q.new_oldest_ts_ns = UINT64_MAX;
	if (tv_retention_new(&retention, &ro, catalog, store, &pool, err, sizeof(err))) {
		fprintf(stderr, "fuzz_server_request: retention: %s\n", err);
		exit(1);
	}
	if (seeds)
		write_seeds(seeds);
	n = seed_stream(stream_buf, seed_block_ids);
	in = (struct fuzz_in){ stream_buf, n };
	write_stream(&in, false);
	{
		struct tv_catalog_stats st;

		FUZZ_CHECK(tv_catalog_stats(catalog, 0, UINT64_MAX, &st) == 0);
		FUZZ_CHECK(st.blocks == SEED_BLOCKS && st.records == SEED_BLOCKS * SEED_RECORDS);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };

	while (in.n) {
		uint8_t kind = fuzz_u8(&in);

		switch (kind % 5) {
		case 0: {
			size_t n = (size_t)fuzz_uint(&in, 2), len;
			struct fuzz_in w;

			w.p = fuzz_bytes(&in, n, &len);
			w.n = len;
			write_stream(&w, true);
			break;
		}
		case 1:
			query(&in);
			break;
		case 2:
			delete_call(&in);
			break;
		case 3:
			stats(&in);
			break;
		default:
			summary(&in);
			break;
		}
	}
	/* the seeded archive is still whole */
	{
		struct tv_catalog_stats st;

		FUZZ_CHECK(tv_catalog_stats(catalog, 0, UINT64_MAX, &st) == 0);
		FUZZ_CHECK(st.blocks == SEED_BLOCKS && st.records == SEED_BLOCKS * SEED_RECORDS);
	}
	return 0;
}
