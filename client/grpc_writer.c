/* The segment writer: one Write stream per server a segment touches, all driven on one
 * completion queue; chunks are zero-copy sub-slices of each block's refcounted slice; commit is
 * two-phase (FLUSH everywhere, then COMMIT everywhere); any failure cancels and deletes. */
#include "grpc_writer.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "block.h"
#include "chunker.h"
#include "rpc.h"
#include "tracevault.pb-c.h"
#include "wire.h"

/* How long the transport may keep a reference to a borrowed block after its call is gone.
 * gRPC drops them as it tears the stream down; hitting this means a leaked reference. */
#define ZC_RELEASE_TIMEOUT_S 60
#define REASON_BYTES 512
/* How long a segment waits for a server's channel to (re)connect before its streams start
 * (and fail fast if it is still down). Not a retry: nothing of the segment was sent yet. */
#define CONNECT_WAIT_MS 5000
#define CLEANUP_BYTES 1536

/*
 * Ownership of block memory. Every block is one refcounted slice; each chunk's byte buffer holds
 * a sub-slice sharing that refcount, so gRPC keeps the bytes alive for exactly as long as it
 * needs them, possibly after the call is gone. Blocks from the cache (tv_block_buf.slice) are
 * freed by the cache's destroy callback when the last ref drops: the writer need not wait.
 * Borrowed blocks (slice == NULL: put, bench) are wrapped here with zc_release as destroy
 * callback, and write_segment waits for zc_refs to reach zero before it returns, since the
 * caller frees that memory afterwards.
 */
struct tv_writer {
	char *server[TV_WRITER_MAX_SERVERS];
	grpc_channel *ch[TV_WRITER_MAX_SERVERS];
	unsigned nservers;
	size_t max_message_bytes, chunk_bytes, window_bytes;
	int timeout_ms, delete_timeout_ms;
	enum tv_chunk_mode mode;
	uint64_t corrupt_chunk;
	grpc_completion_queue *cq; /* every call of this writer; one thread at a time */
	struct tv_writer_stats st;

	pthread_mutex_t zc_mu;
	pthread_cond_t zc_cv;
	long zc_refs; /* borrowed blocks not yet released by gRPC */
};

enum tag_kind { TAG_SEND, TAG_RECV, TAG_STATUS };

struct wstream;

/* Completion-queue tag: which stream, which of its three batches. */
struct op_tag {
	struct wstream *s;
	enum tag_kind kind;
};

/* What a stream sends next. */
enum wstep {
	W_OPEN_SEGMENT,
	W_OPEN_BLOCK,
	W_CHUNK,
	W_DATA_DONE,  /* all chunks sent: FLUSH once every byte is acked */
	W_FLUSH_SENT, /* waiting for the FLUSH reply */
	W_FLUSHED,    /* COMMIT once every stream of the segment is flushed */
	W_COMMIT_SENT,
};

struct seg;

/* One Write call to one server, carrying the segment's blocks placed there. */
struct wstream {
	struct seg *sg;
	unsigned server;
	grpc_call *call;
	size_t *blk;	  /* indexes into sg->blocks, in send order */
	uint64_t *acked;  /* per blk[i]: bytes the server acknowledged */
	size_t nblk;
	size_t bi, off;	  /* next block (index into blk) and offset in it */
	size_t blocks_acked; /* leading blk[] entries fully acknowledged */
	enum wstep step;
	uint64_t sent_bytes, acked_bytes;
	bool per_chunk_acks; /* the server acked part of a block: the window is strict */
	bool send_busy, recv_busy, status_busy, committed;
	grpc_byte_buffer *send_bb, *recv_bb;
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status;
	grpc_slice details;
	struct op_tag t_send, t_recv, t_status;
};

/* One segment in progress. */
struct seg {
	struct tv_writer *w;
	uint64_t segment_id;
	const struct tv_block_buf *blocks;
	size_t n;
	grpc_slice *base; /* per block: our ref on its slice */
	struct wstream *streams;
	size_t nstreams, nflushed;
	bool failed;
	char reason[REASON_BYTES];
	char cleanup[CLEANUP_BYTES];
	unsigned cleanup_errors;
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
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ZC_RELEASE_TIMEOUT_S;
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
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		v = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
		    ((uint64_t)getpid() << 48);
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

/* Split "A,B,C" into w->server[]. -EINVAL on an empty entry or too many. */
static int parse_servers(struct tv_writer *w, const char *list)
{
	const char *p = list;

	if (!list || !*list)
		return -EINVAL;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len == 0 || w->nservers == TV_WRITER_MAX_SERVERS)
			return -EINVAL;
		w->server[w->nservers] = strndup(p, len);
		if (!w->server[w->nservers])
			return -ENOMEM;
		w->nservers++;
		if (!comma)
			break;
		p = comma + 1;
		if (!*p)
			return -EINVAL; /* trailing comma */
	}
	return 0;
}

struct tv_writer *tv_writer_new(const struct tv_writer_opts *o)
{
	struct tv_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->max_message_bytes = o->max_message_bytes ? o->max_message_bytes
						    : TV_DEFAULT_MAX_MESSAGE_BYTES;
	w->chunk_bytes = o->chunk_bytes ? o->chunk_bytes : TV_DEFAULT_CHUNK_BYTES;
	w->window_bytes = o->window_bytes ? o->window_bytes : TV_WRITER_DEFAULT_WINDOW_BYTES;
	w->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : TV_DEFAULT_WRITE_TIMEOUT_MS;
	w->delete_timeout_ms = o->delete_timeout_ms > 0 ? o->delete_timeout_ms
							: TV_WRITER_DEFAULT_DELETE_TIMEOUT_MS;
	w->mode = o->no_zerocopy ? TV_CHUNK_PACKED : TV_CHUNK_ZEROCOPY;
	w->corrupt_chunk = o->test_corrupt_chunk;
	pthread_mutex_init(&w->zc_mu, NULL);
	pthread_cond_init(&w->zc_cv, NULL);
	grpc_init();
	w->cq = grpc_completion_queue_create_for_next(NULL);
	if (w->max_message_bytes <= 2 * TV_CHUNK_PREFIX_MAX || !w->cq ||
	    parse_servers(w, o->server)) {
		tv_writer_free(w);
		return NULL;
	}
	/* A chunk plus its prefix must fit in one message. */
	if (w->chunk_bytes > w->max_message_bytes - TV_CHUNK_PREFIX_MAX)
		w->chunk_bytes = w->max_message_bytes - TV_CHUNK_PREFIX_MAX;
	for (unsigned i = 0; i < w->nservers; i++) {
		w->ch[i] = tv_rpc_channel_new(w->server[i], w->max_message_bytes);
		if (!w->ch[i]) {
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
	for (unsigned i = 0; i < w->nservers; i++) {
		if (w->ch[i])
			grpc_channel_destroy(w->ch[i]);
		free(w->server[i]);
	}
	if (w->cq)
		tv_rpc_cq_destroy(w->cq); /* nothing is outstanding between calls */
	grpc_shutdown();
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
	for (unsigned i = 0; i < w->nservers; i++) {
		int ret = tv_rpc_probe(w->ch[i], w->cq, w->server[i], timeout_ms, err, errlen);

		if (ret)
			return ret;
	}
	return 0;
}

/* ---- one segment ---- */

static void appendf(char *buf, size_t size, const char *fmt, ...)
{
	size_t len = strlen(buf);
	va_list ap;

	if (len + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + len, size - len, fmt, ap);
	va_end(ap);
}

static void cleanup_error(struct seg *sg, const char *fmt, ...)
{
	char one[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(one, sizeof(one), fmt, ap);
	va_end(ap);
	appendf(sg->cleanup, sizeof(sg->cleanup), "%s%s", sg->cleanup_errors ? "; " : "", one);
	sg->cleanup_errors++;
}

/* The first failure decides the reason; every stream of the segment is cancelled at once so
 * none of them can still commit (Alluxio's BlockOutStream.cancel cancels every data writer). */
static void fail_segment(struct seg *sg, const char *fmt, ...)
{
	va_list ap;

	if (sg->failed)
		return;
	sg->failed = true;
	va_start(ap, fmt);
	vsnprintf(sg->reason, sizeof(sg->reason), fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < sg->nstreams; i++) {
		struct wstream *s = &sg->streams[i];
		grpc_call_error rc;

		if (!s->call)
			continue;
		rc = grpc_call_cancel(s->call, NULL);
		if (rc != GRPC_CALL_OK)
			cleanup_error(sg, "cancel of the stream to %s: grpc_call_error %d",
				      sg->w->server[s->server], (int)rc);
	}
}

static int pack_command(Tracevault__V1__CommandType type, uint64_t segment_id,
			uint64_t block_id, uint64_t length, grpc_byte_buffer **out)
{
	Tracevault__V1__WriteCommand cmd = TRACEVAULT__V1__WRITE_COMMAND__INIT;
	Tracevault__V1__WriteRequest req = TRACEVAULT__V1__WRITE_REQUEST__INIT;

	cmd.type = type;
	cmd.segment_id = segment_id;
	cmd.block_id = block_id;
	cmd.length = length;
	req.value_case = TRACEVAULT__V1__WRITE_REQUEST__VALUE_COMMAND;
	req.command = &cmd;
	return tv_wire_pack(&req.base, out);
}

/*
 * Flow control: at most window_bytes of chunk payload sent and not acknowledged per stream.
 * A server may ack each chunk (WriteResponse{block_id, offset}) or only whole blocks. Until a
 * stream has seen a partial-block ack we cannot tell which, and a window smaller than a block
 * would deadlock against a whole-block acker; so until then a chunk may also go when every
 * earlier block of the stream is fully acked (at most one block beyond the window in flight).
 * Once a partial ack arrived, the window is strict. A chunk always goes when nothing is
 * unacked, so chunk_bytes > window_bytes cannot stall either.
 */
static bool window_allows(const struct wstream *s, size_t len)
{
	uint64_t unacked = s->sent_bytes - s->acked_bytes;

	if (unacked == 0 || unacked + len <= s->sg->w->window_bytes)
		return true;
	return !s->per_chunk_acks && s->blocks_acked >= s->bi;
}

/* Start the send of the stream's next message if the protocol and the window allow it. */
static void pump(struct wstream *s)
{
	struct seg *sg = s->sg;
	struct tv_writer *w = sg->w;
	const struct tv_block_buf *b;
	grpc_byte_buffer *bb = NULL;
	grpc_op ops[3];
	size_t nops = 0, len, copied;
	uint32_t crc;
	bool last = false;
	int ret = 0;

	if (s->send_busy || sg->failed)
		return;
	memset(ops, 0, sizeof(ops));
	switch (s->step) {
	case W_OPEN_SEGMENT:
		ops[nops++].op = GRPC_OP_SEND_INITIAL_METADATA;
		ret = pack_command(TRACEVAULT__V1__COMMAND_TYPE__OPEN_SEGMENT, sg->segment_id, 0, 0,
				   &bb);
		s->step = W_OPEN_BLOCK;
		break;
	case W_OPEN_BLOCK:
		b = &sg->blocks[s->blk[s->bi]];
		ret = pack_command(TRACEVAULT__V1__COMMAND_TYPE__OPEN_BLOCK, sg->segment_id,
				   b->block_id, b->len, &bb);
		s->off = 0;
		s->step = W_CHUNK;
		break;
	case W_CHUNK:
		b = &sg->blocks[s->blk[s->bi]];
		len = tv_chunk_len(b->len, s->off, w->chunk_bytes);
		if (!window_allows(s, len))
			return; /* an ack will pump again */
		ret = tv_chunk_message(sg->base[s->blk[s->bi]], b->block_id, s->off, len, w->mode,
				       w->corrupt_chunk && w->st.chunks_sent + 1 == w->corrupt_chunk,
				       &bb, &crc, &copied);
		if (ret)
			break;
		w->st.chunks_sent++;
		w->st.payload_bytes_copied += copied;
		s->sent_bytes += len;
		s->off += len;
		if (s->off == b->len)
			s->step = ++s->bi < s->nblk ? W_OPEN_BLOCK : W_DATA_DONE;
		break;
	case W_DATA_DONE:
		/* FLUSH only once the server has every byte: its reply then covers them all */
		if (s->acked_bytes < s->sent_bytes)
			return;
		ret = pack_command(TRACEVAULT__V1__COMMAND_TYPE__FLUSH, sg->segment_id, 0, 0, &bb);
		s->step = W_FLUSH_SENT;
		break;
	case W_FLUSHED:
		/* phase two starts only when every server made its part durable in temp */
		if (sg->nflushed < sg->nstreams)
			return;
		ret = pack_command(TRACEVAULT__V1__COMMAND_TYPE__COMMIT, sg->segment_id, 0, 0, &bb);
		last = true;
		s->step = W_COMMIT_SENT;
		break;
	default:
		return;
	}
	if (ret) {
		fail_segment(sg, "building a request for %s: %s", w->server[s->server],
			     strerror(-ret));
		return;
	}
	ops[nops].op = GRPC_OP_SEND_MESSAGE;
	ops[nops++].data.send_message.send_message = bb;
	if (last)
		ops[nops++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	if (grpc_call_start_batch(s->call, ops, nops, &s->t_send, NULL) != GRPC_CALL_OK) {
		grpc_byte_buffer_destroy(bb);
		fail_segment(sg, "%s: cannot start a send batch", w->server[s->server]);
		return;
	}
	s->send_bb = bb;
	s->send_busy = true;
}

static void recv_next(struct wstream *s, bool with_initial_metadata)
{
	grpc_op ops[2];
	size_t nops = 0;

	memset(ops, 0, sizeof(ops));
	if (with_initial_metadata) {
		ops[nops].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[nops++].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
	}
	ops[nops].op = GRPC_OP_RECV_MESSAGE;
	ops[nops++].data.recv_message.recv_message = &s->recv_bb;
	if (grpc_call_start_batch(s->call, ops, nops, &s->t_recv, NULL) != GRPC_CALL_OK) {
		fail_segment(s->sg, "%s: cannot start a receive batch",
			     s->sg->w->server[s->server]);
		return;
	}
	s->recv_busy = true;
}

static void on_commit_reply(struct wstream *s, const Tracevault__V1__WriteResponse *r)
{
	struct seg *sg = s->sg;
	size_t found = 0;

	for (size_t i = 0; i < s->nblk; i++) {
		uint64_t id = sg->blocks[s->blk[i]].block_id;

		for (size_t j = 0; j < r->n_committed_block_ids; j++) {
			if (r->committed_block_ids[j] == id) {
				found++;
				break;
			}
		}
	}
	if (found != s->nblk || r->n_committed_block_ids != s->nblk) {
		fail_segment(sg, "%s: commit reply lists %zu blocks, %zu of the %zu sent",
			     sg->w->server[s->server], r->n_committed_block_ids, found, s->nblk);
		return;
	}
	s->committed = true;
}

static void on_ack(struct wstream *s, const Tracevault__V1__WriteResponse *r)
{
	struct seg *sg = s->sg;
	const char *srv = sg->w->server[s->server];
	size_t j;

	for (j = s->blocks_acked; j < s->nblk; j++)
		if (sg->blocks[s->blk[j]].block_id == r->block_id)
			break;
	if (j == s->nblk || j >= s->bi + 1 || r->offset > sg->blocks[s->blk[j]].len) {
		fail_segment(sg, "%s: ack for block %016" PRIx64 " offset %" PRIu64
			     " matches nothing sent", srv, r->block_id, r->offset);
		return;
	}
	if (r->offset > s->acked[j]) {
		s->acked_bytes += r->offset - s->acked[j];
		s->acked[j] = r->offset;
	}
	if (r->offset < sg->blocks[s->blk[j]].len)
		s->per_chunk_acks = true;
	while (s->blocks_acked < s->nblk &&
	       s->acked[s->blocks_acked] == sg->blocks[s->blk[s->blocks_acked]].len)
		s->blocks_acked++;
	if (s->acked_bytes > s->sent_bytes)
		fail_segment(sg, "%s: acked %" PRIu64 " bytes, only %" PRIu64 " sent", srv,
			     s->acked_bytes, s->sent_bytes);
}

static void on_flush_reply(struct wstream *s, const Tracevault__V1__WriteResponse *r)
{
	struct seg *sg = s->sg;

	if (s->step != W_FLUSH_SENT) {
		fail_segment(sg, "%s: unexpected segment reply (offset %" PRIu64 ")",
			     sg->w->server[s->server], r->offset);
		return;
	}
	if (r->offset != s->sent_bytes) {
		fail_segment(sg, "%s: FLUSH made %" PRIu64 " of %" PRIu64 " bytes durable",
			     sg->w->server[s->server], r->offset, s->sent_bytes);
		return;
	}
	s->step = W_FLUSHED;
	if (++sg->nflushed == sg->nstreams)
		for (size_t i = 0; i < sg->nstreams; i++)
			pump(&sg->streams[i]);
}

/* An ack, a FLUSH reply, or the commit reply. */
static void handle_reply(struct wstream *s)
{
	Tracevault__V1__WriteResponse *r;
	uint8_t *flat = NULL;
	size_t len;
	int ret;

	ret = tv_wire_flatten(s->recv_bb, s->sg->w->max_message_bytes, &flat, &len);
	grpc_byte_buffer_destroy(s->recv_bb);
	s->recv_bb = NULL;
	if (ret) {
		fail_segment(s->sg, "%s: read reply: %s", s->sg->w->server[s->server],
			     strerror(-ret));
		return;
	}
	r = tracevault__v1__write_response__unpack(NULL, len, flat);
	free(flat);
	if (!r) {
		fail_segment(s->sg, "%s: reply does not parse as WriteResponse",
			     s->sg->w->server[s->server]);
		return;
	}
	if (r->committed)
		on_commit_reply(s, r);
	else if (r->block_id == 0)
		on_flush_reply(s, r);
	else
		on_ack(s, r);
	tracevault__v1__write_response__free_unpacked(r, NULL);
	pump(s);
}

static void on_status(struct wstream *s)
{
	struct seg *sg = s->sg;
	char text[REASON_BYTES - 80];

	if (s->status != GRPC_STATUS_OK) {
		tv_rpc_status_text(s->status, &s->details, text, sizeof(text));
		fail_segment(sg, "%s: %s", sg->w->server[s->server], text);
	} else if (!s->committed) {
		fail_segment(sg, "%s: stream ended with OK but no commit reply",
			     sg->w->server[s->server]);
	}
}

static int start_stream(struct wstream *s, gpr_timespec deadline)
{
	struct tv_writer *w = s->sg->w;
	grpc_op op;

	s->call = grpc_channel_create_call(w->ch[s->server], NULL, GRPC_PROPAGATE_DEFAULTS, w->cq,
					   grpc_slice_from_static_string(TV_METHOD_WRITE), NULL,
					   deadline, NULL);
	if (!s->call) {
		fail_segment(s->sg, "%s: cannot create the Write call", w->server[s->server]);
		return -ENOMEM;
	}
	tv_rpc_status_op(&op, &s->trail_md, &s->status, &s->details);
	if (grpc_call_start_batch(s->call, &op, 1, &s->t_status, NULL) != GRPC_CALL_OK) {
		fail_segment(s->sg, "%s: cannot start the status batch", w->server[s->server]);
		return -EIO;
	}
	s->status_busy = true;
	return 0;
}

static bool any_busy(const struct seg *sg)
{
	for (size_t i = 0; i < sg->nstreams; i++) {
		const struct wstream *s = &sg->streams[i];

		if (s->send_busy || s->recv_busy || s->status_busy)
			return true;
	}
	return false;
}

/* Drive every stream to its end: every started batch completes exactly once, so the loop ends
 * when none is outstanding. Bounded by the call deadline (plus slack, then cancel). */
static void run_segment(struct seg *sg, gpr_timespec deadline)
{
	gpr_timespec wait_until =
		gpr_time_add(deadline, gpr_time_from_millis(TV_RPC_CQ_SLACK_MS, GPR_TIMESPAN));

	for (size_t i = 0; i < sg->nstreams; i++) {
		struct wstream *s = &sg->streams[i];
		long left_ms = gpr_time_to_millis(
			gpr_time_sub(deadline, gpr_now(GPR_CLOCK_MONOTONIC)));

		tv_rpc_wait_ready(sg->w->ch[s->server], sg->w->cq,
				  left_ms < CONNECT_WAIT_MS ? (left_ms > 0 ? left_ms : 0)
							    : CONNECT_WAIT_MS);
	}
	for (size_t i = 0; i < sg->nstreams && !sg->failed; i++)
		start_stream(&sg->streams[i], deadline);
	for (size_t i = 0; i < sg->nstreams && !sg->failed; i++) {
		pump(&sg->streams[i]);
		recv_next(&sg->streams[i], true);
	}
	while (any_busy(sg)) {
		grpc_event ev = grpc_completion_queue_next(sg->w->cq, wait_until, NULL);
		struct op_tag *t;
		struct wstream *s;

		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			/* gRPC should have ended the calls at their deadline; force it. After a
			 * cancel every batch completes promptly. */
			fail_segment(sg, "no completion by the deadline (%d ms)", sg->w->timeout_ms);
			wait_until = gpr_inf_future(GPR_CLOCK_MONOTONIC);
			continue;
		}
		if (ev.type != GRPC_OP_COMPLETE)
			break; /* queue shut down: cannot happen while we own it */
		t = ev.tag;
		s = t->s;
		switch (t->kind) {
		case TAG_SEND:
			s->send_busy = false;
			grpc_byte_buffer_destroy(s->send_bb);
			s->send_bb = NULL;
			/* a failed send means a broken stream: its status says why */
			if (ev.success)
				pump(s);
			break;
		case TAG_RECV:
			s->recv_busy = false;
			if (ev.success && s->recv_bb) {
				handle_reply(s);
				if (!sg->failed)
					recv_next(s, false);
			} else if (s->recv_bb) {
				grpc_byte_buffer_destroy(s->recv_bb);
				s->recv_bb = NULL;
			}
			break;
		case TAG_STATUS:
			s->status_busy = false;
			on_status(s);
			break;
		}
	}
}

/* Ask one server to remove whatever it holds of the segment; a failure is a cleanup error. */
static bool delete_on(struct seg *sg, unsigned server)
{
	struct tv_writer *w = sg->w;
	Tracevault__V1__DeleteRequest req = TRACEVAULT__V1__DELETE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	char why[384];
	int ret;

	req.segment_id = sg->segment_id;
	ret = tv_rpc_unary(w->ch[server], w->cq, TV_METHOD_DELETE, &req.base,
			   &tracevault__v1__delete_response__descriptor, w->max_message_bytes,
			   w->delete_timeout_ms, &resp, why, sizeof(why));
	if (ret) {
		cleanup_error(sg, "delete on %s: %s", w->server[server], why);
		return false;
	}
	protobuf_c_message_free_unpacked(resp, NULL);
	return true;
}

/* Streams for the servers the blocks are placed on, each with its blocks in segment order. */
static int plan_streams(struct seg *sg)
{
	struct tv_writer *w = sg->w;
	size_t per[TV_WRITER_MAX_SERVERS] = {0};
	int idx[TV_WRITER_MAX_SERVERS];
	unsigned *place = calloc(sg->n, sizeof(*place));

	if (!place)
		return -ENOMEM;
	for (size_t i = 0; i < sg->n; i++) {
		place[i] = tv_place_block(sg->blocks[i].block_id, w->nservers);
		per[place[i]]++;
	}
	sg->streams = calloc(w->nservers, sizeof(*sg->streams));
	if (!sg->streams) {
		free(place);
		return -ENOMEM;
	}
	for (unsigned k = 0; k < w->nservers; k++) {
		struct wstream *s;

		idx[k] = -1;
		if (!per[k])
			continue;
		idx[k] = (int)sg->nstreams;
		s = &sg->streams[sg->nstreams++];
		s->sg = sg;
		s->server = k;
		s->blk = calloc(per[k], sizeof(*s->blk));
		s->acked = calloc(per[k], sizeof(*s->acked));
		s->status = GRPC_STATUS_UNKNOWN;
		s->details = grpc_empty_slice();
		grpc_metadata_array_init(&s->init_md);
		grpc_metadata_array_init(&s->trail_md);
		s->t_send = (struct op_tag){s, TAG_SEND};
		s->t_recv = (struct op_tag){s, TAG_RECV};
		s->t_status = (struct op_tag){s, TAG_STATUS};
		if (!s->blk || !s->acked) {
			free(place);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < sg->n; i++) {
		struct wstream *s = &sg->streams[idx[place[i]]];

		s->blk[s->nblk++] = i;
	}
	free(place);
	return 0;
}

static void free_streams(struct seg *sg)
{
	for (size_t i = 0; sg->streams && i < sg->nstreams; i++) {
		struct wstream *s = &sg->streams[i];

		if (s->call)
			grpc_call_unref(s->call);
		grpc_slice_unref(s->details);
		grpc_metadata_array_destroy(&s->init_md);
		grpc_metadata_array_destroy(&s->trail_md);
		free(s->blk);
		free(s->acked);
	}
	free(sg->streams);
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
	gpr_timespec deadline = tv_rpc_deadline_ms(w->timeout_ms);
	struct seg sg = {.w = w, .segment_id = segment_id, .blocks = blocks, .n = n};
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
	ret = sg.base ? plan_streams(&sg) : -ENOMEM;
	if (ret) {
		fail_segment(&sg, "out of memory planning the segment");
	} else {
		for (size_t i = 0; i < n; i++) {
			if (blocks[i].slice) {
				sg.base[i] = grpc_slice_ref(*blocks[i].slice);
			} else {
				sg.base[i] = zc_wrap(w, &blocks[i]);
				borrowed = true;
			}
		}
		run_segment(&sg, deadline);
	}
	committed = !sg.failed;
	for (size_t i = 0; i < sg.nstreams; i++)
		committed = committed && sg.streams[i].committed &&
			    sg.streams[i].status == GRPC_STATUS_OK;
	if (!committed && !sg.failed)
		fail_segment(&sg, "segment not confirmed by every server");
	free_streams(&sg);
	if (sg.base) {
		for (size_t i = 0; i < n; i++)
			grpc_slice_unref(sg.base[i]); /* an all-zero slice has no refcount */
		free(sg.base);
	}
	if (borrowed)
		zc_wait_idle(w);

	if (committed) {
		w->st.segments_committed++;
		w->st.blocks_committed += n;
		w->st.records_committed += records;
		w->st.bytes_committed += bytes;
		return 0;
	}
	/* every server a block was placed on, even where no stream got started */
	for (size_t i = 0; i < n; i++) {
		unsigned k = tv_place_block(blocks[i].block_id, w->nservers);
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = tv_place_block(blocks[j].block_id, w->nservers) == k;
		if (!seen && delete_on(&sg, k))
			deleted++;
	}
	w->st.segments_failed++;
	w->st.blocks_dropped += n;
	w->st.records_dropped += records;
	w->st.cleanup_errors += sg.cleanup_errors;
	ts_range(blocks, n, &from_ns, &to_ns);
	snprintf(err, errlen,
		 "segment %016" PRIx64 " failed: %s; dropped %zu blocks, %" PRIu64
		 " records, ts [%" PRIu64 ", %" PRIu64 "]; cleanup: ",
		 segment_id, sg.reason, n, records, from_ns, to_ns);
	if (sg.cleanup_errors)
		appendf(err, errlen, "%u errors: %s", sg.cleanup_errors, sg.cleanup);
	else
		appendf(err, errlen, "ok (segment deleted on %u server%s)", deleted,
			deleted == 1 ? "" : "s");
	return -EIO;
}
