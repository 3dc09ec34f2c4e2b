/* The segment writer: one channel per server, block placement, the lifetime of borrowed blocks,
 * and tv_writer_write_segment, which runs a segment's Write streams (write_stream.c) and after a
 * failure applies the no-retry rule: Delete the segment everywhere, count and report the loss. */
#include "write/grpc_writer.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/addr.h"
#include "common/clock.h"
#include "common/grpc_util.h"
#include "proto/block.h"
#include "write/block_cache.h"
#include "write/chunker.h"
#include "rpc/rpc.h"
#include "tracevault.pb-c.h"
#include "proto/wire.h"
#include "write/write_stream.h"

const struct tv_limit tv_writer_window_bytes_limit = {.min = 1, .max = 1ull << 40};

/* How long the transport may keep a reference to a borrowed block after its call is gone.
 * gRPC drops them as it tears the stream down; hitting this means a leaked reference. */
#define ZC_RELEASE_TIMEOUT_S 60

/*
 * Ownership of block memory. Every block is one refcounted slice; each chunk's byte buffer holds
 * a sub-slice sharing that refcount, so gRPC keeps the bytes alive for exactly as long as it
 * needs them, possibly after the call is gone. Blocks from the cache (tv_block_buf.slice) are
 * freed by the cache's destroy callback when the last ref drops: the writer need not wait.
 * Borrowed blocks (slice == NULL: bench) are wrapped here with zc_release as destroy
 * callback, and write_segment waits for zc_refs to reach zero before it returns, since the
 * caller frees that memory afterwards.
 */
struct tv_writer {
	struct tv_wstream_conf conf; /* servers, channels, queue and stream settings */
	struct tv_server_list servers; /* conf.server[i] points into it */
	struct tv_rpc_tls tls;         /* of every channel (tv_writer_opts.tls), for the probe */
	int delete_timeout_ms;
	struct tv_writer_stats st;

	pthread_mutex_t zc_mu;
	pthread_cond_t zc_cv;
	long zc_refs; /* borrowed blocks not yet released by gRPC */
};

static void zc_release(void *arg)
{
	struct tv_writer *w = arg;

	pthread_mutex_lock(&w->zc_mu);
	if (--w->zc_refs == 0)
		pthread_cond_broadcast(&w->zc_cv);
	pthread_mutex_unlock(&w->zc_mu);
}

/* Wrap a borrowed block in a slice whose destroy callback counts it back. */
static grpc_slice zc_wrap(struct tv_writer *w, const struct tv_block_buf *b)
{
	pthread_mutex_lock(&w->zc_mu);
	w->zc_refs++;
	pthread_mutex_unlock(&w->zc_mu);
	/* gRPC only reads slice memory; the cast drops const for its signature */
	return grpc_slice_new_with_user_data((void *)b->data, b->len, zc_release, w);
}

/* Wait until gRPC released every borrowed block. Returning earlier would let the caller free
 * memory the transport still reads; a reference that never comes back is a gRPC bug we cannot
 * recover from safely, so it aborts rather than risk a use after free. */
static void zc_wait_idle(struct tv_writer *w)
{
	struct timespec until = tv_timespec_from_ns(tv_realtime_ns() +
						    ZC_RELEASE_TIMEOUT_S * TV_NS_PER_S);
	pthread_mutex_lock(&w->zc_mu);
	while (w->zc_refs > 0) {
		if (pthread_cond_timedwait(&w->zc_cv, &w->zc_mu, &until) == ETIMEDOUT &&
		    w->zc_refs > 0) {
			fprintf(stderr, "tracevault: gRPC kept %ld block references for %d s\n",
				w->zc_refs, ZC_RELEASE_TIMEOUT_S);
			abort();
		}
	}
	pthread_mutex_unlock(&w->zc_mu);
}

uint64_t tv_random_id(void)
{
	uint64_t v = 0;

	/* 8 bytes from getrandom never block after boot and are not interrupted by signals;
	 * the retry bound only guards against a zero draw. */
	for (int i = 0; i < 8 && v == 0; i++) {
		if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
			v = 0;
	}
	if (v == 0) { /* getrandom unavailable: still unique enough per process and instant */
		v = tv_realtime_ns() ^ ((uint64_t)getpid() << 48);
		v |= 1;
	}
	return v;
}

unsigned tv_place_block(uint64_t block_id, unsigned nservers)
{
	/* Jump consistent hash (Lamping & Veach 2014), verbatim constants of the paper. */
	int64_t b = -1, j = 0;
	uint64_t key = block_id;

	if (nservers <= 1)
		return 0;
	while (j < (int64_t)nservers) {
		b = j;
		key = key * 2862933555777941757ull + 1;
		j = (int64_t)((double)(b + 1) * ((double)(1ll << 31) / (double)((key >> 33) + 1)));
	}
	return (unsigned)b;
}

/* Split "A,B,C" into w->conf.server[] (common/addr.h's rule). -EINVAL on an empty entry or
 * more than TV_WRITER_MAX_SERVERS, -ENOMEM. */
static int parse_servers(struct tv_writer *w, const char *list)
{
	int ret;

	if (!list)
		return -EINVAL;
	ret = tv_server_list_parse(list, TV_WRITER_MAX_SERVERS, &w->servers);
	if (ret)
		return ret;
	for (size_t i = 0; i < w->servers.n; i++)
		w->conf.server[i] = w->servers.v[i];
	w->conf.nservers = (unsigned)w->servers.n;
	return 0;
}

struct tv_writer *tv_writer_new(const struct tv_writer_opts *o)
{
	struct tv_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->conf.max_message_bytes = o->max_message_bytes ? o->max_message_bytes
						    : TV_DEFAULT_MAX_MESSAGE_BYTES;
	w->conf.chunk_bytes = o->chunk_bytes ? o->chunk_bytes
					     : tv_chunk_default_bytes(w->conf.max_message_bytes);
	w->conf.window_bytes = o->window_bytes ? o->window_bytes : TV_WRITER_DEFAULT_WINDOW_BYTES;
	w->conf.timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : TV_DEFAULT_WRITE_TIMEOUT_MS;
	w->delete_timeout_ms = o->delete_timeout_ms > 0 ? o->delete_timeout_ms
							: TV_WRITER_DEFAULT_DELETE_TIMEOUT_MS;
	w->conf.mode = o->no_zerocopy ? TV_CHUNK_PACKED : TV_CHUNK_ZEROCOPY;
	w->conf.corrupt_chunk = o->test_corrupt_chunk;
	w->conf.writer_token = tv_random_id();
	if (o->tls)
		w->tls = *o->tls;
	pthread_mutex_init(&w->zc_mu, NULL);
	pthread_cond_init(&w->zc_cv, NULL);
	grpc_init();
	w->conf.cq = grpc_completion_queue_create_for_next(NULL);
	if (tv_limit_check(&tv_wire_message_bytes_limit, w->conf.max_message_bytes) ||
	    tv_limit_check(&tv_chunk_bytes_limit, w->conf.chunk_bytes) ||
	    tv_limit_check(&tv_writer_window_bytes_limit, w->conf.window_bytes) ||
	    tv_chunk_check_fits(w->conf.chunk_bytes, w->conf.max_message_bytes) || !w->conf.cq ||
	    parse_servers(w, o->server)) {
		tv_writer_free(w);
		return NULL;
	}
	for (unsigned i = 0; i < w->conf.nservers; i++) {
		w->conf.ch[i] = tv_rpc_channel_new(w->conf.server[i], &w->tls,
						   w->conf.max_message_bytes);
		if (!w->conf.ch[i]) {
			tv_writer_free(w);
			return NULL;
		}
	}
	return w;
}

void tv_writer_free(struct tv_writer *w)
{
	if (!w)
		return;
	for (unsigned i = 0; i < w->conf.nservers; i++) {
		if (w->conf.ch[i])
			grpc_channel_destroy(w->conf.ch[i]);
	}
	if (w->conf.cq)
		tv_grpc_cq_destroy(w->conf.cq); /* nothing is outstanding between calls */
	grpc_shutdown();
	tv_server_list_free(&w->servers);
	pthread_cond_destroy(&w->zc_cv);
	pthread_mutex_destroy(&w->zc_mu);
	free(w);
}

const struct tv_writer_stats *tv_writer_stats(const struct tv_writer *w)
{
	return &w->st;
}

int tv_writer_probe(struct tv_writer *w, int timeout_ms, char *err, size_t errlen)
{
	for (unsigned i = 0; i < w->conf.nservers; i++) {
		int ret = tv_rpc_probe(w->conf.ch[i], w->conf.cq, w->conf.server[i], &w->tls,
				       timeout_ms, err, errlen);

		if (ret)
			return ret;
	}
	return 0;
}

/* ---- one segment ---- */

/* Ask one server to remove whatever it holds of the segment; a failure is a cleanup error. */
static bool delete_on(struct tv_writer *w, struct tv_wstream_seg *sg, unsigned server)
{
	Tracevault__V1__DeleteRequest req = TRACEVAULT__V1__DELETE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	char why[384];
	int ret;

	req.segment_id = sg->segment_id;
	req.writer_token = w->conf.writer_token; /* the server deletes only what we opened */
	ret = tv_rpc_unary(w->conf.ch[server], w->conf.cq, TV_METHOD_DELETE, &req.base,
			   &tracevault__v1__delete_response__descriptor, w->conf.max_message_bytes,
			   w->delete_timeout_ms, &resp, why, sizeof(why));
	if (ret) {
		tv_wstream_cleanup_error(sg, "delete on %s: %s", w->conf.server[server], why);
		return false;
	}
	protobuf_c_message_free_unpacked(resp, NULL);
	return true;
}

/* Time range of the records in the segment, from the block headers (for the loss line). */
static void ts_range(const struct tv_block_buf *blocks, size_t n, uint64_t *from_ns,
		     uint64_t *to_ns)
{
	*from_ns = UINT64_MAX;
	*to_ns = 0;
	for (size_t i = 0; i < n; i++) {
		struct tv_block_header h;

		if (tv_block_header_parse(blocks[i].data, blocks[i].len, &h, NULL, 0))
			continue;
		if (h.record_count && h.min_ts_ns < *from_ns)
			*from_ns = h.min_ts_ns;
		if (h.record_count && h.max_ts_ns > *to_ns)
			*to_ns = h.max_ts_ns;
	}
	if (*from_ns > *to_ns)
		*from_ns = *to_ns = 0;
}

/*
 * Why no retry (Alluxio's rule for block writes): a segment is the unit of atomicity. After any
 * failure we cannot know how far each server got, so the only state we can establish is
 * "nothing of this segment exists anywhere": cancel every stream and Delete the segment on
 * every server it touched. Replaying would need the blocks to outlive the caller's budget and
 * risks duplicates on a server that did commit; the loss is counted and logged instead.
 */
int tv_writer_write_segment(struct tv_writer *w, uint64_t segment_id,
			    const struct tv_block_buf *blocks, size_t n, char *err, size_t errlen)
{
	gpr_timespec deadline = tv_rpc_deadline_ms(w->conf.timeout_ms);
	struct tv_wstream_seg sg = {.conf = &w->conf, .st = &w->st, .segment_id = segment_id,
				    .blocks = blocks, .n = n};
	char cleanup[TV_WSTREAM_CLEANUP_BYTES + 32];
	uint64_t records = 0, bytes = 0, from_ns, to_ns;
	bool borrowed = false, committed;
	unsigned deleted = 0;
	int ret;

	if (n == 0)
		return 0; /* nothing to make durable: no stream at all */
	for (size_t i = 0; i < n; i++) {
		records += blocks[i].record_count;
		bytes += blocks[i].len;
	}
	sg.base = calloc(n, sizeof(*sg.base));
	ret = sg.base ? tv_wstream_plan(&sg) : -ENOMEM;
	if (ret) {
		tv_wstream_fail(&sg, "out of memory planning the segment");
	} else {
		for (size_t i = 0; i < n; i++) {
			if (blocks[i].slice) {
				sg.base[i] = grpc_slice_ref(*blocks[i].slice);
			} else {
				sg.base[i] = zc_wrap(w, &blocks[i]);
				borrowed = true;
			}
		}
		tv_wstream_run(&sg, deadline);
	}
	committed = tv_wstream_committed(&sg);
	if (!committed && !sg.failed)
		tv_wstream_fail(&sg, "segment not confirmed by every server");
	tv_wstream_free(&sg);
	if (sg.base) {
		for (size_t i = 0; i < n; i++)
			grpc_slice_unref(sg.base[i]); /* an all-zero slice has no refcount */
		free(sg.base);
	}
	if (borrowed)
		zc_wait_idle(w);

	if (committed) {
		w->st.last_commit_ns = sg.commit_acked_ns - sg.commit_sent_ns;
		w->st.segments_committed++;
		w->st.blocks_committed += n;
		w->st.records_committed += records;
		w->st.bytes_committed += bytes;
		return 0;
	}
	/* every server a block was placed on, even where no stream got started */
	for (size_t i = 0; i < n; i++) {
		unsigned k = tv_place_block(blocks[i].block_id, w->conf.nservers);
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = tv_place_block(blocks[j].block_id, w->conf.nservers) == k;
		if (!seen && delete_on(w, &sg, k))
			deleted++;
	}
	w->st.segments_failed++;
	w->st.blocks_dropped += n;
	w->st.records_dropped += records;
	w->st.cleanup_errors += sg.cleanup_errors;
	ts_range(blocks, n, &from_ns, &to_ns);
	if (sg.cleanup_errors)
		snprintf(cleanup, sizeof(cleanup), "%u errors: %s", sg.cleanup_errors, sg.cleanup);
	else
		snprintf(cleanup, sizeof(cleanup), "ok (segment deleted on %u server%s)", deleted,
			 deleted == 1 ? "" : "s");
	snprintf(err, errlen,
		 "segment %016" PRIx64 " failed: %s; dropped %zu blocks, %" PRIu64
		 " records, ts [%" PRIu64 ", %" PRIu64 "]; cleanup: %s",
		 segment_id, sg.reason, n, records, from_ns, to_ns, cleanup);
	return -EIO;
}

/* ---- one streamed segment ---- */

struct stream_feed {
	struct tv_block_cache *cache;
	tv_block_source_fn next;
	void *arg;
	struct tv_block_buf *blocks;
	grpc_slice *base;
	size_t cap;
	struct tv_block_buf pending; /* produced, waiting for room in the cache */
	bool has_pending;
	int src_ret;                 /* next()'s error, 0 if none */
	char src_err[TV_WSTREAM_REASON_BYTES];
	uint64_t records, bytes, from_ns, to_ns;
};

static bool feed_block(struct tv_wstream_seg *sg)
{
	struct stream_feed *f = sg->feed_arg;
	struct tv_block_header h;
	grpc_slice slice;
	int ret;

	if (!f->has_pending) {
		f->pending = (struct tv_block_buf){0};
		ret = f->next(f->arg, &f->pending, f->src_err, sizeof(f->src_err));
		if (ret == 0) {
			sg->more_input = false;
			return false;
		}
		if (ret < 0) {
			f->src_ret = ret;
			tv_wstream_fail(sg, "%s", f->src_err);
			return false;
		}
		f->has_pending = true;
	}
	ret = tv_block_cache_reserve(f->cache, f->pending.len, 0);
	if (ret == -ENOBUFS)
		return false; /* an ack will free room */
	if (ret) {
		tv_wstream_fail(sg, "a block of %zu bytes is larger than the cache", f->pending.len);
		f->src_ret = ret;
		snprintf(f->src_err, sizeof(f->src_err), "%s", sg->reason);
		return false;
	}
	if (sg->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64;
		struct tv_block_buf *b = realloc(f->blocks, cap * sizeof(*b));
		grpc_slice *base;

		if (b)
			f->blocks = b;
		base = b ? realloc(f->base, cap * sizeof(*base)) : NULL;
		if (!base) {
			tv_block_cache_unreserve(f->cache, f->pending.len);
			tv_wstream_fail(sg, "out of memory growing the segment");
			return false;
		}
		f->base = base;
		f->cap = cap;
	}
	if (!tv_block_header_parse(f->pending.data, f->pending.len, &h, NULL, 0) &&
	    h.record_count) {
		if (h.min_ts_ns < f->from_ns)
			f->from_ns = h.min_ts_ns;
		if (h.max_ts_ns > f->to_ns)
			f->to_ns = h.max_ts_ns;
	}
	ret = tv_block_cache_adopt(f->cache, (void *)f->pending.data, f->pending.len, &slice);
	f->has_pending = false; /* the cache owns (or freed) the data now */
	if (ret) {
		tv_wstream_fail(sg, "out of memory adopting a block");
		return false;
	}
	f->blocks[sg->n] = f->pending;
	f->blocks[sg->n].data = NULL; /* freed by the cache once sent and acknowledged */
	f->base[sg->n] = slice;
	sg->blocks = f->blocks;
	sg->base = f->base;
	f->records += f->pending.record_count;
	f->bytes += f->pending.len;
	sg->n++;
	tv_wstream_add_block(sg, sg->n - 1);
	return true;
}

int tv_writer_stream_segment(struct tv_writer *w, uint64_t segment_id, size_t cache_bytes,
			     tv_block_source_fn next, void *arg, char *err, size_t errlen)
{
	struct stream_feed f = {.next = next, .arg = arg, .from_ns = UINT64_MAX};
	struct tv_wstream_seg sg = {.conf = &w->conf, .st = &w->st, .segment_id = segment_id,
				    .more_input = true, .release_acked = true,
				    .feed = feed_block, .feed_arg = &f};
	char cleanup[TV_WSTREAM_CLEANUP_BYTES + 32];
	unsigned deleted = 0;
	bool committed;

	f.cache = tv_block_cache_new(cache_bytes);
	if (!f.cache || tv_wstream_begin(&sg)) {
		tv_block_cache_free(f.cache);
		free(sg.streams);
		snprintf(err, errlen, "segment %016" PRIx64 " failed: out of memory", segment_id);
		return -ENOMEM;
	}
	tv_wstream_run_streaming(&sg);
	committed = tv_wstream_committed(&sg) && !sg.more_input;
	if (!committed && !sg.failed)
		tv_wstream_fail(&sg, "segment not confirmed by every server");
	tv_wstream_free(&sg);
	for (size_t i = 0; i < sg.n; i++)
		grpc_slice_unref(f.base[i]); /* the released ones are empty slices */
	if (f.has_pending)
		free((void *)f.pending.data);
	tv_block_cache_free(f.cache); /* lives on while gRPC still holds a block */

	if (committed) {
		w->st.segments_committed++;
		w->st.blocks_committed += sg.n;
		w->st.records_committed += f.records;
		w->st.bytes_committed += f.bytes;
		free(f.blocks);
		free(f.base);
		return 0;
	}
	for (unsigned k = 0; k < w->conf.nservers; k++)
		if (sg.stream_of[k] && delete_on(w, &sg, k))
			deleted++;
	free(f.blocks);
	free(f.base);
	w->st.segments_failed++;
	w->st.blocks_dropped += sg.n;
	w->st.records_dropped += f.records;
	w->st.cleanup_errors += sg.cleanup_errors;
	if (sg.cleanup_errors)
		snprintf(cleanup, sizeof(cleanup), "%u errors: %s", sg.cleanup_errors, sg.cleanup);
	else
		snprintf(cleanup, sizeof(cleanup), "ok (segment deleted on %u server%s)", deleted,
			 deleted == 1 ? "" : "s");
	if (f.src_ret) {
		/* the input's own failure: its reason alone, as when nothing was sent */
		if (sg.cleanup_errors)
			snprintf(err, errlen, "%s; cleanup: %s", f.src_err, cleanup);
		else
			snprintf(err, errlen, "%s", f.src_err);
		return f.src_ret;
	}
	if (f.from_ns > f.to_ns)
		f.from_ns = f.to_ns = 0;
	snprintf(err, errlen,
		 "segment %016" PRIx64 " failed: %s; dropped %zu blocks, %" PRIu64
		 " records, ts [%" PRIu64 ", %" PRIu64 "]; cleanup: %s",
		 segment_id, sg.reason, sg.n, f.records, f.from_ns, f.to_ns, cleanup);
	return -EIO;
}
