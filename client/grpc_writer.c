/* The segment writer: one Write stream per segment, chunks sent zero-copy as slices over the
 * caller's block memory, and the failure rule (cancel, Delete the segment, never retry).
 * Used by `tracevault put` (one segment per file) and by capture (one segment per flush). */
#include "grpc_writer.h"

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
#include <grpc/support/time.h>

#include "crc32c.h"
#include "rpc.h"
#include "tracevault.pb-c.h"
#include "wire.h"

/* Bound on the best-effort Delete after a failed segment: it must not hold up the caller
 * (capture keeps sealing blocks meanwhile) for long. */
#define DELETE_TIMEOUT_MS 5000
/* How long the transport may keep a reference to a sent chunk after its call is gone. gRPC
 * drops them as it tears the stream down; hitting this means a leaked reference. */
#define ZC_RELEASE_TIMEOUT_S 60

/* Completion-queue tags of the three kinds of batch a Write call has outstanding. */
#define TAG_SEND ((void *)1)
#define TAG_RECV ((void *)2)
#define TAG_STATUS ((void *)3)

/*
 * Zero-copy and ownership. Each chunk is sent as a byte buffer of two slices: a small prefix
 * (tv_wire_chunk_prefix, copied: it is not payload) and a slice that points into the caller's
 * block memory (grpc_slice_new_with_user_data). The caller only lends `blocks` for the call,
 * and gRPC may hold such a slice after the SEND_MESSAGE batch completes, even after the call is
 * unref'd (the transport frees written slices when it gets to it). So every payload slice
 * holds one count in zc_refs, dropped by its destroy callback on whatever gRPC thread frees
 * it, and tv_writer_write_segment does not return until zc_refs is back to zero.
 */
struct tv_writer {
	char *server;
	size_t max_message_bytes;
	size_t chunk_bytes;
	int timeout_ms;
	grpc_channel *ch;
	grpc_completion_queue *cq; /* every call and probe of this writer; one thread at a time */
	struct tv_writer_stats st;

	pthread_mutex_t zc_mu;
	pthread_cond_t zc_cv;
	long zc_refs; /* payload slices of the current segment not yet released by gRPC */
};

enum seg_step { STEP_OPEN_SEGMENT, STEP_OPEN_BLOCK, STEP_CHUNK, STEP_COMMIT, STEP_DONE };

/* One Write call in progress. */
struct seg_call {
	struct tv_writer *w;
	grpc_call *call;
	uint64_t segment_id;
	const struct tv_block_buf *blocks;
	size_t n;

	enum seg_step step; /* what the next message is */
	size_t blk;	    /* block of the next OPEN_BLOCK / chunk */
	size_t off;	    /* offset of the next chunk inside blocks[blk] */

	bool send_busy, recv_busy, status_busy, cancelled;
	grpc_byte_buffer *send_bb, *recv_bb;
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status;
	grpc_slice details;
	bool committed;
	char local_err[256]; /* first failure seen on our side (bad reply, start_batch error) */
};

static void zc_release(void *arg)
{
	struct tv_writer *w = arg;

	pthread_mutex_lock(&w->zc_mu);
	if (--w->zc_refs == 0)
		pthread_cond_broadcast(&w->zc_cv);
	pthread_mutex_unlock(&w->zc_mu);
}

static void zc_acquire(struct tv_writer *w)
{
	pthread_mutex_lock(&w->zc_mu);
	w->zc_refs++;
	pthread_mutex_unlock(&w->zc_mu);
}

/* Wait until gRPC released every payload slice of the finished call. Returning earlier would
 * let the caller free memory the transport still reads; a reference that never comes back is
 * a gRPC bug we cannot recover from safely, so it aborts rather than risk a use after free. */
static void zc_wait_idle(struct tv_writer *w)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ZC_RELEASE_TIMEOUT_S;
	pthread_mutex_lock(&w->zc_mu);
	while (w->zc_refs > 0) {
		if (pthread_cond_timedwait(&w->zc_cv, &w->zc_mu, &until) == ETIMEDOUT &&
		    w->zc_refs > 0) {
			fprintf(stderr, "tracevault: gRPC kept %ld chunk references for %d s\n",
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

struct tv_writer *tv_writer_new(const struct tv_writer_opts *o)
{
	struct tv_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->max_message_bytes = o->max_message_bytes ? o->max_message_bytes
						    : TV_DEFAULT_MAX_MESSAGE_BYTES;
	w->chunk_bytes = o->chunk_bytes ? o->chunk_bytes : TV_DEFAULT_CHUNK_BYTES;
	w->timeout_ms = o->timeout_ms ? o->timeout_ms : TV_DEFAULT_WRITE_TIMEOUT_MS;
	if (w->max_message_bytes <= 2 * TV_CHUNK_PREFIX_MAX) {
		free(w);
		return NULL;
	}
	/* A chunk plus its prefix must fit in one message. */
	if (w->chunk_bytes > w->max_message_bytes - TV_CHUNK_PREFIX_MAX)
		w->chunk_bytes = w->max_message_bytes - TV_CHUNK_PREFIX_MAX;
	w->server = strdup(o->server ? o->server : "");
	pthread_mutex_init(&w->zc_mu, NULL);
	pthread_cond_init(&w->zc_cv, NULL);
	grpc_init();
	w->cq = grpc_completion_queue_create_for_next(NULL);
	w->ch = w->server ? tv_rpc_channel_new(w->server, w->max_message_bytes) : NULL;
	if (!w->server || !w->cq || !w->ch) {
		tv_writer_free(w);
		return NULL;
	}
	return w;
}

void tv_writer_free(struct tv_writer *w)
{
	if (!w)
		return;
	if (w->ch)
		grpc_channel_destroy(w->ch);
	if (w->cq)
		tv_rpc_cq_destroy(w->cq); /* nothing is outstanding between calls */
	grpc_shutdown();
	pthread_cond_destroy(&w->zc_cv);
	pthread_mutex_destroy(&w->zc_mu);
	free(w->server);
	free(w);
}

const struct tv_writer_stats *tv_writer_stats(const struct tv_writer *w)
{
	return &w->st;
}

int tv_writer_probe(struct tv_writer *w, int timeout_ms, char *err, size_t errlen)
{
	return tv_rpc_probe(w->ch, w->cq, w->server, timeout_ms, err, errlen);
}

/* ---- one Write call ---- */

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

/* WriteRequest{chunk} as [prefix slice][slice over the block memory]: no payload copy. */
static int pack_chunk(struct tv_writer *w, const struct tv_block_buf *b, size_t off, size_t len,
		      grpc_byte_buffer **out)
{
	uint8_t prefix[TV_CHUNK_PREFIX_MAX];
	const uint8_t *data = (const uint8_t *)b->data + off;
	size_t plen = tv_wire_chunk_prefix(prefix, b->block_id, off, tv_crc32c(data, len), len);
	grpc_slice slices[2];

	slices[0] = grpc_slice_from_copied_buffer((const char *)prefix, plen);
	zc_acquire(w);
	/* gRPC only reads slice memory; the cast drops const for its signature. */
	slices[1] = grpc_slice_new_with_user_data((void *)data, len, zc_release, w);
	*out = grpc_raw_byte_buffer_create(slices, 2); /* takes its own refs */
	grpc_slice_unref(slices[0]);
	grpc_slice_unref(slices[1]);
	return *out ? 0 : -ENOMEM;
}

/* The next message of the stream in protocol order; *last is set for COMMIT. */
static int next_message(struct seg_call *sc, grpc_byte_buffer **bb, bool *last)
{
	const struct tv_block_buf *b;
	size_t len;
	int ret;

	*last = false;
	switch (sc->step) {
	case STEP_OPEN_SEGMENT:
		sc->step = sc->n ? STEP_OPEN_BLOCK : STEP_COMMIT;
		return pack_command(TRACEVAULT__V1__COMMAND_TYPE__OPEN_SEGMENT, sc->segment_id, 0,
				    0, bb);
	case STEP_OPEN_BLOCK:
		b = &sc->blocks[sc->blk];
		sc->off = 0;
		sc->step = b->len ? STEP_CHUNK : STEP_OPEN_BLOCK;
		if (!b->len && ++sc->blk == sc->n)
			sc->step = STEP_COMMIT;
		return pack_command(TRACEVAULT__V1__COMMAND_TYPE__OPEN_BLOCK, sc->segment_id,
				    b->block_id, b->len, bb);
	case STEP_CHUNK:
		b = &sc->blocks[sc->blk];
		len = b->len - sc->off;
		if (len > sc->w->chunk_bytes)
			len = sc->w->chunk_bytes;
		ret = pack_chunk(sc->w, b, sc->off, len, bb);
		sc->off += len;
		if (sc->off == b->len)
			sc->step = ++sc->blk == sc->n ? STEP_COMMIT : STEP_OPEN_BLOCK;
		return ret;
	case STEP_COMMIT:
		sc->step = STEP_DONE;
		*last = true;
		return pack_command(TRACEVAULT__V1__COMMAND_TYPE__COMMIT, sc->segment_id, 0, 0, bb);
	case STEP_DONE:
		break;
	}
	return -EINVAL;
}

static void fail_local(struct seg_call *sc, const char *fmt, const char *detail)
{
	if (!sc->local_err[0])
		snprintf(sc->local_err, sizeof(sc->local_err), fmt, detail);
	if (!sc->cancelled) {
		sc->cancelled = true;
		grpc_call_cancel(sc->call, NULL);
	}
}

/* Start the send of the next message (with the close on the last one), one at a time. */
static void send_next(struct seg_call *sc)
{
	grpc_op ops[3];
	size_t nops = 0;
	bool last;
	int ret;

	if (sc->step == STEP_DONE || sc->cancelled)
		return;
	memset(ops, 0, sizeof(ops));
	if (sc->step == STEP_OPEN_SEGMENT)
		ops[nops++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ret = next_message(sc, &sc->send_bb, &last);
	if (ret) {
		fail_local(sc, "build request: %s", strerror(-ret));
		return;
	}
	ops[nops].op = GRPC_OP_SEND_MESSAGE;
	ops[nops++].data.send_message.send_message = sc->send_bb;
	if (last)
		ops[nops++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	if (grpc_call_start_batch(sc->call, ops, nops, TAG_SEND, NULL) != GRPC_CALL_OK) {
		grpc_byte_buffer_destroy(sc->send_bb);
		sc->send_bb = NULL;
		fail_local(sc, "%s", "start send batch failed");
		return;
	}
	sc->send_busy = true;
}

static void recv_next(struct seg_call *sc, bool with_initial_metadata)
{
	grpc_op ops[2];
	size_t nops = 0;

	if (sc->cancelled)
		return;
	memset(ops, 0, sizeof(ops));
	if (with_initial_metadata) {
		ops[nops].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[nops++].data.recv_initial_metadata.recv_initial_metadata = &sc->init_md;
	}
	ops[nops].op = GRPC_OP_RECV_MESSAGE;
	ops[nops++].data.recv_message.recv_message = &sc->recv_bb;
	if (grpc_call_start_batch(sc->call, ops, nops, TAG_RECV, NULL) != GRPC_CALL_OK) {
		fail_local(sc, "%s", "start receive batch failed");
		return;
	}
	sc->recv_busy = true;
}

/* An ack or the commit reply. The commit must name exactly the blocks we sent. */
static void handle_reply(struct seg_call *sc)
{
	Tracevault__V1__WriteResponse *resp;
	uint8_t *flat = NULL;
	size_t len;
	int ret;

	ret = tv_wire_flatten(sc->recv_bb, sc->w->max_message_bytes, &flat, &len);
	grpc_byte_buffer_destroy(sc->recv_bb);
	sc->recv_bb = NULL;
	if (ret) {
		fail_local(sc, "read reply: %s", strerror(-ret));
		return;
	}
	resp = tracevault__v1__write_response__unpack(NULL, len, flat);
	free(flat);
	if (!resp) {
		fail_local(sc, "%s", "reply does not parse as WriteResponse");
		return;
	}
	if (resp->committed) {
		bool all = resp->n_committed_block_ids == sc->n;

		for (size_t i = 0; all && i < sc->n; i++) {
			bool found = false;

			for (size_t j = 0; j < resp->n_committed_block_ids && !found; j++)
				found = resp->committed_block_ids[j] == sc->blocks[i].block_id;
			all = found;
		}
		if (all)
			sc->committed = true;
		else
			fail_local(sc, "%s", "commit reply does not list the blocks sent");
	}
	tracevault__v1__write_response__free_unpacked(resp, NULL);
}

/* Run the call to its end: every batch completes exactly once, so the loop ends when none is
 * outstanding. Bounded by the call deadline (plus slack, then cancel). */
static void run_call(struct seg_call *sc, gpr_timespec deadline)
{
	grpc_op op;
	gpr_timespec wait_until =
		gpr_time_add(deadline, gpr_time_from_millis(TV_RPC_CQ_SLACK_MS, GPR_TIMESPAN));

	tv_rpc_status_op(&op, &sc->trail_md, &sc->status, &sc->details);
	if (grpc_call_start_batch(sc->call, &op, 1, TAG_STATUS, NULL) != GRPC_CALL_OK) {
		fail_local(sc, "%s", "start status batch failed");
		return;
	}
	sc->status_busy = true;
	send_next(sc);
	recv_next(sc, true);

	while (sc->send_busy || sc->recv_busy || sc->status_busy) {
		grpc_event ev = grpc_completion_queue_next(sc->w->cq, wait_until, NULL);

		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			/* gRPC should have ended the call at its deadline; force it. After a
			 * cancel every batch completes promptly. */
			fail_local(sc, "%s", "no completion by the deadline");
			wait_until = gpr_inf_future(GPR_CLOCK_MONOTONIC);
			continue;
		}
		if (ev.type != GRPC_OP_COMPLETE)
			break; /* queue shut down: cannot happen while we own it */
		if (ev.tag == TAG_SEND) {
			sc->send_busy = false;
			grpc_byte_buffer_destroy(sc->send_bb);
			sc->send_bb = NULL;
			/* a failed send means the stream is broken: the status says why */
			if (ev.success)
				send_next(sc);
		} else if (ev.tag == TAG_RECV) {
			sc->recv_busy = false;
			if (ev.success && sc->recv_bb) {
				handle_reply(sc);
				recv_next(sc, false);
			}
		} else if (ev.tag == TAG_STATUS) {
			sc->status_busy = false;
		}
	}
}

/* Best effort removal of whatever the server holds for the segment, after a failure. */
static void delete_segment(struct tv_writer *w, uint64_t segment_id, char *out, size_t outlen)
{
	Tracevault__V1__DeleteRequest req = TRACEVAULT__V1__DELETE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	char why[256];
	int ret;

	req.segment_id = segment_id;
	ret = tv_rpc_unary(w->ch, w->cq, TV_METHOD_DELETE, &req.base,
			   &tracevault__v1__delete_response__descriptor, w->max_message_bytes,
			   DELETE_TIMEOUT_MS, &resp, why, sizeof(why));
	if (ret) {
		snprintf(out, outlen, "delete of the segment failed too: %s", why);
		return;
	}
	snprintf(out, outlen, "segment deleted on the server (%" PRIu64 " temp blocks removed)",
		 ((Tracevault__V1__DeleteResponse *)resp)->deleted_temp_blocks +
			 ((Tracevault__V1__DeleteResponse *)resp)->deleted_blocks);
	protobuf_c_message_free_unpacked(resp, NULL);
}

/*
 * Why no retry: a segment is the unit of atomicity. After any failure we cannot know how far
 * the server got (it may even have committed just before the stream broke), so the only state
 * we can establish is "nothing of this segment exists": cancel the stream and Delete the
 * segment. Replaying would need the blocks to outlive this call and risks duplicates; the
 * caller decides what to do with the loss, which the stats make visible.
 */
int tv_writer_write_segment(struct tv_writer *w, uint64_t segment_id,
			    const struct tv_block_buf *blocks, size_t n, char *err, size_t errlen)
{
	gpr_timespec deadline = tv_rpc_deadline_ms(w->timeout_ms);
	struct seg_call sc = {
		.w = w, .segment_id = segment_id, .blocks = blocks, .n = n,
		.status = GRPC_STATUS_UNKNOWN, .step = STEP_OPEN_SEGMENT,
	};
	uint64_t records = 0, bytes = 0;
	char what[512], del[384];
	int ret;

	if (n == 0)
		return 0; /* nothing to make durable: no stream at all */
	for (size_t i = 0; i < n; i++) {
		records += blocks[i].record_count;
		bytes += blocks[i].len;
	}
	sc.details = grpc_empty_slice();
	grpc_metadata_array_init(&sc.init_md);
	grpc_metadata_array_init(&sc.trail_md);
	sc.call = grpc_channel_create_call(w->ch, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq,
					   grpc_slice_from_static_string(TV_METHOD_WRITE), NULL,
					   deadline, NULL);
	if (!sc.call) {
		snprintf(what, sizeof(what), "cannot create the Write call");
		ret = -ENOMEM;
	} else {
		run_call(&sc, deadline);
		grpc_call_unref(sc.call);
		zc_wait_idle(w);
		if (sc.status == GRPC_STATUS_OK && sc.committed && !sc.local_err[0]) {
			ret = 0;
		} else if (sc.local_err[0]) {
			snprintf(what, sizeof(what), "%s", sc.local_err);
			ret = -EPROTO;
		} else if (sc.status != GRPC_STATUS_OK) {
			tv_rpc_status_text(sc.status, &sc.details, what, sizeof(what));
			ret = tv_rpc_status_errno(sc.status);
		} else {
			snprintf(what, sizeof(what), "stream ended with OK but no commit reply");
			ret = -EPROTO;
		}
	}
	grpc_slice_unref(sc.details);
	grpc_metadata_array_destroy(&sc.init_md);
	grpc_metadata_array_destroy(&sc.trail_md);

	if (ret == 0) {
		w->st.segments_committed++;
		w->st.blocks_committed += n;
		w->st.records_committed += records;
		w->st.bytes_committed += bytes;
		return 0;
	}
	delete_segment(w, segment_id, del, sizeof(del));
	w->st.segments_failed++;
	w->st.blocks_dropped += n;
	w->st.records_dropped += records;
	snprintf(err, errlen, "write of segment %016" PRIx64 " to %s failed: %s; %s", segment_id,
		 w->server, what, del);
	return ret;
}
