/* The client side of the Write streams of one segment: the per-stream protocol (commands,
 * chunks under the ack window, FLUSH, COMMIT), acks and replies, and the completion-queue loop
 * that drives every stream of the segment; the first failure cancels them all. */
#include "write/write_stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/support/time.h>

#include "common/clock.h"
#include "rpc/rpc.h"
#include "tracevault.pb-c.h"
#include "proto/wire.h"

/* How long a segment waits for a server's channel to (re)connect before its streams start
 * (and fail fast if it is still down). Not a retry: nothing of the segment was sent yet. */
#define CONNECT_WAIT_MS 5000

enum tag_kind { TAG_SEND, TAG_RECV, TAG_STATUS };

/* Completion-queue tag: which stream, which of its three batches. */
struct op_tag {
	struct tv_wstream *s;
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

/* One Write call to one server, carrying the segment's blocks placed there. */
struct tv_wstream {
	struct tv_wstream_seg *sg;
	unsigned server;
	grpc_call *call;
	size_t *blk;	  /* indexes into sg->blocks, in send order */
	uint64_t *acked;  /* per blk[i]: bytes the server acknowledged */
	size_t nblk, cap;
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

void tv_wstream_cleanup_error(struct tv_wstream_seg *sg, const char *fmt, ...)
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
void tv_wstream_fail(struct tv_wstream_seg *sg, const char *fmt, ...)
{
	va_list ap;

	if (sg->failed)
		return;
	sg->failed = true;
	va_start(ap, fmt);
	vsnprintf(sg->reason, sizeof(sg->reason), fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < sg->nstreams; i++) {
		struct tv_wstream *s = &sg->streams[i];
		grpc_call_error rc;

		if (!s->call)
			continue;
		rc = grpc_call_cancel(s->call, NULL);
		if (rc != GRPC_CALL_OK)
			tv_wstream_cleanup_error(sg,
						 "cancel of the stream to %s: grpc_call_error %d",
						 sg->conf->server[s->server], (int)rc);
	}
}

/* writer_token goes only with OPEN_SEGMENT (pass 0 for the others). */
static int pack_command(Tracevault__V1__CommandType type, uint64_t segment_id,
			uint64_t writer_token, uint64_t block_id, uint64_t length,
			grpc_byte_buffer **out)
{
	Tracevault__V1__WriteCommand cmd = TRACEVAULT__V1__WRITE_COMMAND__INIT;
	Tracevault__V1__WriteRequest req = TRACEVAULT__V1__WRITE_REQUEST__INIT;

	cmd.type = type;
	cmd.segment_id = segment_id;
	cmd.writer_token = writer_token;
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
static bool window_allows(const struct tv_wstream *s, size_t len)
{
	uint64_t unacked = s->sent_bytes - s->acked_bytes;

	if (unacked == 0 || unacked + len <= s->sg->conf->window_bytes)
		return true;
	return !s->per_chunk_acks && s->blocks_acked >= s->bi;
}

/* Start the send of the stream's next message if the protocol and the window allow it. */
static void pump(struct tv_wstream *s)
{
	struct tv_wstream_seg *sg = s->sg;
	const struct tv_wstream_conf *conf = sg->conf;
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
		ret = pack_command(TRACEVAULT__V1__COMMAND_TYPE__OPEN_SEGMENT, sg->segment_id,
				   conf->writer_token, 0, 0, &bb);
		s->step = W_OPEN_BLOCK;
		break;
	case W_OPEN_BLOCK:
		if (s->bi == s->nblk) {
			if (sg->more_input)
				return; /* tv_wstream_add_block or the end of input pumps again */
			s->step = W_DATA_DONE;
			pump(s);
			return;
		}
		b = &sg->blocks[s->blk[s->bi]];
		ret = pack_command(TRACEVAULT__V1__COMMAND_TYPE__OPEN_BLOCK, sg->segment_id, 0,
				   b->block_id, b->len, &bb);
		s->off = 0;
		s->step = W_CHUNK;
		break;
	case W_CHUNK:
		b = &sg->blocks[s->blk[s->bi]];
		len = tv_chunk_len(b->len, s->off, conf->chunk_bytes);
		if (!window_allows(s, len))
			return; /* an ack will pump again */
		ret = tv_chunk_message(sg->base[s->blk[s->bi]], b->block_id, s->off, len,
				       conf->mode,
				       conf->corrupt_chunk &&
					       sg->st->chunks_sent + 1 == conf->corrupt_chunk,
				       &bb, &crc, &copied);
		if (ret)
			break;
		sg->st->chunks_sent++;
		sg->st->payload_bytes_copied += copied;
		s->sent_bytes += len;
		s->off += len;
		if (s->off == b->len) {
			s->bi++;
			s->step = W_OPEN_BLOCK;
		}
		break;
	case W_DATA_DONE:
		/* FLUSH only once the server has every byte: its reply then covers them all */
		if (s->acked_bytes < s->sent_bytes)
			return;
		ret = pack_command(TRACEVAULT__V1__COMMAND_TYPE__FLUSH, sg->segment_id, 0, 0, 0,
				   &bb);
		s->step = W_FLUSH_SENT;
		break;
	case W_FLUSHED:
		/* phase two starts only when every server made its part durable in temp */
		if (sg->nflushed < sg->nstreams)
			return;
		ret = pack_command(TRACEVAULT__V1__COMMAND_TYPE__COMMIT, sg->segment_id, 0, 0, 0,
				   &bb);
		last = true;
		s->step = W_COMMIT_SENT;
		if (!sg->commit_sent_ns)
			sg->commit_sent_ns = tv_monotonic_ns();
		break;
	default:
		return;
	}
	if (ret) {
		tv_wstream_fail(sg, "building a request for %s: %s", conf->server[s->server],
				strerror(-ret));
		return;
	}
	ops[nops].op = GRPC_OP_SEND_MESSAGE;
	ops[nops++].data.send_message.send_message = bb;
	if (last)
		ops[nops++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	if (grpc_call_start_batch(s->call, ops, nops, &s->t_send, NULL) != GRPC_CALL_OK) {
		grpc_byte_buffer_destroy(bb);
		tv_wstream_fail(sg, "%s: cannot start a send batch", conf->server[s->server]);
		return;
	}
	s->send_bb = bb;
	s->send_busy = true;
}

static void recv_next(struct tv_wstream *s, bool with_initial_metadata)
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
		tv_wstream_fail(s->sg, "%s: cannot start a receive batch",
				s->sg->conf->server[s->server]);
		return;
	}
	s->recv_busy = true;
}

static void on_commit_reply(struct tv_wstream *s, const Tracevault__V1__WriteResponse *r)
{
	struct tv_wstream_seg *sg = s->sg;
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
		tv_wstream_fail(sg, "%s: commit reply lists %zu blocks, %zu of the %zu sent",
				sg->conf->server[s->server], r->n_committed_block_ids, found,
				s->nblk);
		return;
	}
	s->committed = true;
	sg->commit_acked_ns = tv_monotonic_ns();
}

static void on_ack(struct tv_wstream *s, const Tracevault__V1__WriteResponse *r)
{
	struct tv_wstream_seg *sg = s->sg;
	const char *srv = sg->conf->server[s->server];
	size_t j;

	for (j = s->blocks_acked; j < s->nblk; j++)
		if (sg->blocks[s->blk[j]].block_id == r->block_id)
			break;
	if (j == s->nblk || j >= s->bi + 1 || r->offset > sg->blocks[s->blk[j]].len) {
		tv_wstream_fail(sg, "%s: ack for block %016" PRIx64 " offset %" PRIu64
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
	       s->acked[s->blocks_acked] == sg->blocks[s->blk[s->blocks_acked]].len) {
		if (sg->release_acked) {
			/* gRPC's own sub-slice refs keep the bytes until it is done with them */
			grpc_slice_unref(sg->base[s->blk[s->blocks_acked]]);
			sg->base[s->blk[s->blocks_acked]] = grpc_empty_slice();
		}
		s->blocks_acked++;
	}
	if (s->acked_bytes > s->sent_bytes)
		tv_wstream_fail(sg, "%s: acked %" PRIu64 " bytes, only %" PRIu64 " sent", srv,
				s->acked_bytes, s->sent_bytes);
}

static void on_flush_reply(struct tv_wstream *s, const Tracevault__V1__WriteResponse *r)
{
	struct tv_wstream_seg *sg = s->sg;

	if (s->step != W_FLUSH_SENT) {
		tv_wstream_fail(sg, "%s: unexpected segment reply (offset %" PRIu64 ")",
				sg->conf->server[s->server], r->offset);
		return;
	}
	if (r->offset != s->sent_bytes) {
		tv_wstream_fail(sg, "%s: FLUSH made %" PRIu64 " of %" PRIu64 " bytes durable",
				sg->conf->server[s->server], r->offset, s->sent_bytes);
		return;
	}
	s->step = W_FLUSHED;
	if (++sg->nflushed == sg->nstreams)
		for (size_t i = 0; i < sg->nstreams; i++)
			pump(&sg->streams[i]);
}

/* An ack, a FLUSH reply, or the commit reply. */
static void handle_reply(struct tv_wstream *s)
{
	Tracevault__V1__WriteResponse *r;
	uint8_t *flat = NULL;
	size_t len;
	int ret;

	ret = tv_wire_flatten(s->recv_bb, s->sg->conf->max_message_bytes, &flat, &len);
	grpc_byte_buffer_destroy(s->recv_bb);
	s->recv_bb = NULL;
	if (ret) {
		tv_wstream_fail(s->sg, "%s: read reply: %s", s->sg->conf->server[s->server],
				strerror(-ret));
		return;
	}
	r = tracevault__v1__write_response__unpack(NULL, len, flat);
	free(flat);
	if (!r) {
		tv_wstream_fail(s->sg, "%s: reply does not parse as WriteResponse",
				s->sg->conf->server[s->server]);
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

static void on_status(struct tv_wstream *s)
{
	struct tv_wstream_seg *sg = s->sg;
	char text[TV_WSTREAM_REASON_BYTES - 80];

	if (s->status != GRPC_STATUS_OK) {
		tv_rpc_status_text(s->status, &s->details, text, sizeof(text));
		tv_wstream_fail(sg, "%s: %s", sg->conf->server[s->server], text);
	} else if (!s->committed) {
		tv_wstream_fail(sg, "%s: stream ended with OK but no commit reply",
				sg->conf->server[s->server]);
	}
}

static int start_stream(struct tv_wstream *s, gpr_timespec deadline)
{
	const struct tv_wstream_conf *conf = s->sg->conf;
	grpc_op op;

	s->call = grpc_channel_create_call(conf->ch[s->server], NULL, GRPC_PROPAGATE_DEFAULTS,
					   conf->cq, grpc_slice_from_static_string(TV_METHOD_WRITE),
					   NULL, deadline, NULL);
	if (!s->call) {
		tv_wstream_fail(s->sg, "%s: cannot create the Write call", conf->server[s->server]);
		return -ENOMEM;
	}
	tv_rpc_status_op(&op, &s->trail_md, &s->status, &s->details);
	if (grpc_call_start_batch(s->call, &op, 1, &s->t_status, NULL) != GRPC_CALL_OK) {
		tv_wstream_fail(s->sg, "%s: cannot start the status batch",
				conf->server[s->server]);
		return -EIO;
	}
	s->status_busy = true;
	return 0;
}

static bool any_busy(const struct tv_wstream_seg *sg)
{
	for (size_t i = 0; i < sg->nstreams; i++) {
		const struct tv_wstream *s = &sg->streams[i];

		if (s->send_busy || s->recv_busy || s->status_busy)
			return true;
	}
	return false;
}

/* One completed batch of a stream. */
static void on_event(const grpc_event *ev)
{
	struct op_tag *t = ev->tag;
	struct tv_wstream *s = t->s;
	struct tv_wstream_seg *sg = s->sg;

	switch (t->kind) {
	case TAG_SEND:
		s->send_busy = false;
		grpc_byte_buffer_destroy(s->send_bb);
		s->send_bb = NULL;
		/* a failed send means a broken stream: its status says why */
		if (ev->success)
			pump(s);
		break;
	case TAG_RECV:
		s->recv_busy = false;
		if (ev->success && s->recv_bb) {
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

/* Drive every stream to its end: every started batch completes exactly once, so the loop ends
 * when none is outstanding. Bounded by the call deadline (plus slack, then cancel). */
void tv_wstream_run(struct tv_wstream_seg *sg, gpr_timespec deadline)
{
	gpr_timespec wait_until =
		gpr_time_add(deadline, gpr_time_from_millis(TV_RPC_CQ_SLACK_MS, GPR_TIMESPAN));

	for (size_t i = 0; i < sg->nstreams; i++) {
		struct tv_wstream *s = &sg->streams[i];
		long left_ms = gpr_time_to_millis(
			gpr_time_sub(deadline, gpr_now(GPR_CLOCK_MONOTONIC)));

		tv_rpc_wait_ready(sg->conf->ch[s->server], sg->conf->cq,
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
		grpc_event ev = grpc_completion_queue_next(sg->conf->cq, wait_until, NULL);

		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			/* gRPC should have ended the calls at their deadline; force it. After a
			 * cancel every batch completes promptly. */
			tv_wstream_fail(sg, "no completion by the deadline (%d ms)",
					sg->conf->timeout_ms);
			wait_until = gpr_inf_future(GPR_CLOCK_MONOTONIC);
			continue;
		}
		if (ev.type != GRPC_OP_COMPLETE)
			break; /* queue shut down: cannot happen while we own it */
		on_event(&ev);
	}
}

bool tv_wstream_committed(const struct tv_wstream_seg *sg)
{
	bool committed = !sg->failed;

	for (size_t i = 0; i < sg->nstreams; i++)
		committed = committed && sg->streams[i].committed &&
			    sg->streams[i].status == GRPC_STATUS_OK;
	return committed;
}

/* Streams for the servers the blocks are placed on, each with its blocks in segment order. */
int tv_wstream_plan(struct tv_wstream_seg *sg)
{
	const struct tv_wstream_conf *conf = sg->conf;
	size_t per[TV_WRITER_MAX_SERVERS] = {0};
	int idx[TV_WRITER_MAX_SERVERS];
	unsigned *place = calloc(sg->n, sizeof(*place));

	if (!place)
		return -ENOMEM;
	for (size_t i = 0; i < sg->n; i++) {
		place[i] = tv_place_block(sg->blocks[i].block_id, conf->nservers);
		per[place[i]]++;
	}
	sg->streams = calloc(conf->nservers, sizeof(*sg->streams));
	if (!sg->streams) {
		free(place);
		return -ENOMEM;
	}
	for (unsigned k = 0; k < conf->nservers; k++) {
		struct tv_wstream *s;

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
		struct tv_wstream *s = &sg->streams[idx[place[i]]];

		s->blk[s->nblk++] = i;
	}
	free(place);
	return 0;
}

void tv_wstream_free(struct tv_wstream_seg *sg)
{
	for (size_t i = 0; sg->streams && i < sg->nstreams; i++) {
		struct tv_wstream *s = &sg->streams[i];

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

/* ---- streaming segments: blocks arrive while the streams run ---- */

int tv_wstream_begin(struct tv_wstream_seg *sg)
{
	sg->streams = calloc(sg->conf->nservers, sizeof(*sg->streams));
	return sg->streams ? 0 : -ENOMEM;
}

/* Append block i to stream s's list, growing it (doubling). */
static int stream_append(struct tv_wstream *s, size_t i)
{
	if (s->nblk == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		size_t *blk = realloc(s->blk, cap * sizeof(*blk));
		uint64_t *acked;

		if (!blk)
			return -ENOMEM;
		s->blk = blk;
		acked = realloc(s->acked, cap * sizeof(*acked));
		if (!acked)
			return -ENOMEM;
		s->acked = acked;
		s->cap = cap;
	}
	s->blk[s->nblk] = i;
	s->acked[s->nblk] = 0;
	s->nblk++;
	return 0;
}

int tv_wstream_add_block(struct tv_wstream_seg *sg, size_t i)
{
	unsigned k = tv_place_block(sg->blocks[i].block_id, sg->conf->nservers);
	struct tv_wstream *s;
	bool fresh = false;

	if (!sg->stream_of[k]) {
		s = &sg->streams[sg->nstreams];
		s->sg = sg;
		s->server = k;
		s->status = GRPC_STATUS_UNKNOWN;
		s->details = grpc_empty_slice();
		grpc_metadata_array_init(&s->init_md);
		grpc_metadata_array_init(&s->trail_md);
		s->t_send = (struct op_tag){s, TAG_SEND};
		s->t_recv = (struct op_tag){s, TAG_RECV};
		s->t_status = (struct op_tag){s, TAG_STATUS};
		sg->stream_of[k] = (int)++sg->nstreams;
		fresh = true;
	}
	s = &sg->streams[sg->stream_of[k] - 1];
	if (stream_append(s, i)) {
		tv_wstream_fail(sg, "out of memory adding a block to the segment");
		return -ENOMEM;
	}
	if (sg->failed)
		return 0;
	if (fresh) {
		/* no deadline: run_streaming bounds the time without progress instead */
		if (start_stream(s, gpr_inf_future(GPR_CLOCK_REALTIME)))
			return 0; /* the segment failed, with the reason */
		pump(s);
		recv_next(s, true);
	} else {
		pump(s); /* it may be waiting at the end of its list */
	}
	return 0;
}

void tv_wstream_run_streaming(struct tv_wstream_seg *sg)
{
	gpr_timespec last = gpr_now(GPR_CLOCK_MONOTONIC);
	gpr_timespec idle = gpr_time_from_millis(sg->conf->timeout_ms, GPR_TIMESPAN);
	/* how often to try feed again while the cache is full and nothing completes */
	gpr_timespec poll = gpr_time_from_millis(10, GPR_TIMESPAN);

	for (unsigned k = 0; k < sg->conf->nservers; k++)
		tv_rpc_wait_ready(sg->conf->ch[k], sg->conf->cq, CONNECT_WAIT_MS);
	for (;;) {
		gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC), until;
		bool fed = false, busy;
		grpc_event ev;

		if (sg->more_input && !sg->failed) {
			fed = sg->feed(sg);
			if (fed)
				last = now; /* parsing is progress too */
			if (!sg->more_input) /* the end: every stream may FLUSH now */
				for (size_t i = 0; i < sg->nstreams; i++)
					pump(&sg->streams[i]);
		}
		busy = any_busy(sg);
		if (!busy && (!sg->more_input || sg->failed))
			return;
		if (busy && !sg->failed && gpr_time_cmp(gpr_time_sub(now, last), idle) > 0) {
			tv_wstream_fail(sg, "no progress for %d ms", sg->conf->timeout_ms);
			continue; /* after a cancel every batch completes promptly */
		}
		if (fed)
			until = now; /* only collect what is ready, then parse on */
		else if (sg->more_input && !sg->failed)
			until = gpr_time_add(now, poll);
		else
			until = gpr_time_add(now, sg->failed ? idle : poll);
		ev = grpc_completion_queue_next(sg->conf->cq, until, NULL);
		if (ev.type == GRPC_QUEUE_TIMEOUT)
			continue;
		if (ev.type != GRPC_OP_COMPLETE)
			return; /* queue shut down: cannot happen while we own it */
		last = gpr_now(GPR_CLOCK_MONOTONIC);
		on_event(&ev);
	}
}
