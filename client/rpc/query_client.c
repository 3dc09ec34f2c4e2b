/* The Query rpc from the client side: probe each server, send one QueryRequest to each, and
 * k-way merge the QueryResponse streams by ts_ns (newest first with reverse), checking order
 * and bounds of what comes back, and that a server announced the request fields it had to
 * evaluate (QueryResponse.features) before any of its records is taken. A response is read
 * in place (proto/record_wire.h): its bytes are copied once into the stream's reused buffer
 * and every record is handed out as a view into them, with no allocation per record or
 * message; only the rare SkippedBlock is unpacked. Each record is read once, as it is handed
 * out: a record that does not parse, or breaks the order or the window, fails the query there,
 * after the records before it (each one is checked before it is handed out). */
#include "rpc/query_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "common/addr.h"
#include "common/grpc_util.h"
#include "rpc/rpc.h"
#include "proto/record_wire.h"
#include "proto/varint.h"
#include "proto/wire.h"

/* A query tag names the stream and the batch: (stream index << 2) | kind, kind never 0. */
enum tag_kind { TAG_START = 1, TAG_RECV = 2, TAG_STATUS = 3 };
#define TAG(i, kind) ((void *)(((uintptr_t)(i) << 2) | (kind)))
#define TAG_STREAM(t) ((size_t)((uintptr_t)(t) >> 2))
#define TAG_KIND(t) ((enum tag_kind)((uintptr_t)(t) & 3))

/* A record of the batch a stream holds: where in its message, and its ts_ns for the merge. */
struct batch_rec {
	size_t off, len;
	uint64_t ts_ns;
};

/* One Query call on one server. A stream takes part in the merge while it holds a batch of
 * records (n_recs > 0); it is finished once its messages ended and its status came back OK.
 * It reads one message ahead: while the merge hands out its batch, the next message is
 * asked for and kept as it came (next), so the server sends it while the client renders. */
struct stream {
	const char *server; /* points into query_state.list */
	grpc_channel *ch;
	grpc_call *call;
	grpc_byte_buffer *send, *recv;
	grpc_byte_buffer *next; /* the message read ahead, not yet taken */
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status;
	grpc_slice details;
	bool start_busy, recv_busy, status_busy;
	bool ended; /* RECV_MESSAGE gave no message: the stream has no more batches */
	bool first_seen; /* its first message came (and carried the features asked for) */
	uint8_t *msg;		 /* the last message's bytes; grown, kept for the next one */
	size_t msg_cap;
	struct batch_rec *recs;	 /* its records; recs[pos] is the stream's head */
	size_t n_recs, recs_cap, pos;
	Tracevault__V1__SkippedBlock **skip; /* its skipped blocks, while they are reported */
	size_t n_skip, skip_cap;
	uint64_t last_ts_ns;
	size_t skipped; /* blocks the server reported skipped: its DATA_LOSS status is expected */
	bool status_waiting; /* the status came, not judged until every message before it is taken */
};

struct query_state {
	uint64_t from_ns, to_ns, limit, seen;
	bool reverse;
	uint32_t need_features; /* TV_QUERY_FEATURE_* the request needs the server to evaluate */
	const Tracevault__V1__QueryFilter *filter;
	size_t max_message_bytes;
	const struct tv_rpc_tls *tls; /* of every channel */
	tv_query_cb cb;
	tv_query_skip_cb skip_cb;
	tv_query_idle_cb idle_cb; /* may be NULL */
	void *arg;
	struct tv_server_list list; /* the server argument, split (s[i].server points in) */
	struct stream *s;
	size_t n;
	bool stopping;		/* limit reached, callback stop, or a failure: calls cancelled */
	int cb_ret;		/* non-zero: the callback asked to stop */
	int fail_ret;		/* negative errno of the first failure */
	char fail[1024];	/* ... and its one-line reason */
	struct tv_record_wire view; /* the record handed to cb */
};

/* "query failed" for one server, "query failed on H:P" once there are several, so a fan-out
 * names the server that broke the query. */
static void fail_stream(struct query_state *q, const struct stream *s, int ret, const char *what)
{
	if (q->fail_ret)
		return; /* the first failure is the one reported */
	q->fail_ret = ret;
	if (q->n > 1)
		snprintf(q->fail, sizeof(q->fail), "query failed on %s: %s", s->server, what);
	else
		snprintf(q->fail, sizeof(q->fail), "query failed: %s", what);
}

/* Stop every call: each outstanding batch still completes (with failure) and is reaped. */
static void stop_all(struct query_state *q)
{
	if (q->stopping)
		return;
	q->stopping = true;
	for (size_t i = 0; i < q->n; i++)
		if (q->s[i].call)
			grpc_call_cancel(q->s[i].call, NULL);
}

/* An answer without the features the request needs comes from a server that ignored those
 * fields (an older tracevaultd): its records would be unfiltered or in the wrong order. */
static void fail_features(struct query_state *q, struct stream *s, uint32_t have)
{
	uint32_t miss = q->need_features & ~have;
	char what[256];

	snprintf(what, sizeof(what), "server %s does not evaluate %s%s%s: upgrade tracevaultd",
		 s->server, miss & TV_QUERY_FEATURE_FILTER ? "filters" :
			    miss & TV_QUERY_FEATURE_SPANS ? "--kind/--service filters" : "",
		 (miss & TV_QUERY_FEATURE_FILTER) && (miss & TV_QUERY_FEATURE_REVERSE) ? " or " : "",
		 miss & TV_QUERY_FEATURE_REVERSE ? "reverse (--reverse)" : "");
	fail_stream(q, s, -EPROTO, what);
}

/* Whether ts_ns may follow last in a stream: forward ascending, reverse descending. */
static bool in_order(const struct query_state *q, uint64_t last, uint64_t ts_ns)
{
	return q->reverse ? ts_ns <= last : ts_ns >= last;
}

/* Grow *v (elements of size each, *cap of them) to hold n + 1. 0 or -ENOMEM. */
static int grow(void **v, size_t *cap, size_t n, size_t size)
{
	size_t want = *cap ? 2 * *cap : 64;
	void *p;

	if (n < *cap)
		return 0;
	if (want > SIZE_MAX / size)
		return -ENOMEM;
	p = realloc(*v, want * size);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = want;
	return 0;
}

static void free_skipped(struct stream *s)
{
	for (size_t i = 0; i < s->n_skip; i++)
		tracevault__v1__skipped_block__free_unpacked(s->skip[i], NULL);
	s->n_skip = 0;
}

/* The ts_ns a record leads with, for the merge, without reading the record: protobuf-c and
 * tracevaultd write fields in number order, so a record with a ts_ns starts with its tag (0x08).
 * Anything else gets the full check. emit_ready holds the value to the record's full reading,
 * which is the one that counts. 0, or -EBADMSG. */
static int head_ts(const uint8_t *rec, size_t len, uint64_t *ts_ns)
{
	size_t used;

	if (len >= 2 && rec[0] == 0x08 && tv_varint_get(rec + 1, len - 1, ts_ns, &used) == 0)
		return 0;
	return tv_record_wire_check(rec, len, ts_ns);
}

/* Read the QueryResponse of len bytes in s->msg: where its records are (each one is read when
 * it is handed out, emit_ready), its skipped blocks unpacked into s->skip, *features. 0,
 * -EBADMSG when protobuf-c would refuse the message's own fields (the rules of
 * proto/record_wire.h), or -ENOMEM. */
static int read_response(struct stream *s, size_t len, uint32_t *features)
{
	struct tv_wire_field f;
	uint64_t ts_ns;
	size_t pos = 0;

	s->n_recs = 0;
	*features = 0;
	while (pos < len) {
		if (tv_wire_next_field(s->msg, len, &pos, &f))
			return -EBADMSG;
		switch (f.number) {
		case 1: /* repeated TraceRecord records */
			if (f.wire_type != 2 || head_ts(f.p, f.len, &ts_ns))
				return -EBADMSG;
			if (grow((void **)&s->recs, &s->recs_cap, s->n_recs, sizeof(*s->recs)))
				return -ENOMEM;
			s->recs[s->n_recs++] = (struct batch_rec){
				.off = (size_t)(f.p - s->msg), .len = f.len, .ts_ns = ts_ns };
			break;
		case 2: /* repeated SkippedBlock skipped */
			if (f.wire_type != 2)
				return -EBADMSG;
			if (grow((void **)&s->skip, &s->skip_cap, s->n_skip, sizeof(*s->skip)))
				return -ENOMEM;
			s->skip[s->n_skip] = tracevault__v1__skipped_block__unpack(NULL, f.len, f.p);
			if (!s->skip[s->n_skip])
				return -EBADMSG; /* or out of memory: protobuf-c does not say */
			s->n_skip++;
			break;
		case 3: /* uint32 features */
			if (f.wire_type != 0)
				return -EBADMSG;
			*features = (uint32_t)f.v;
			break;
		default: /* unknown: skipped, as protobuf-c keeps it aside */
			break;
		}
	}
	return 0;
}

/* Take one message of stream s: its features, skipped blocks and where its records are (each
 * is checked against the window and the stream's order as it is handed out). A message
 * without records leaves s without a batch (the next one is asked for). */
static void take_batch(struct query_state *q, struct stream *s, grpc_byte_buffer *bb)
{
	uint32_t features;
	char what[256];
	size_t len;
	int ret;

	s->n_recs = s->pos = 0;
	ret = tv_wire_flatten_into(bb, q->max_message_bytes, &s->msg, &s->msg_cap, &len);
	if (ret) {
		snprintf(what, sizeof(what), "read reply: %s", strerror(-ret));
		fail_stream(q, s, -EPROTO, what);
		return;
	}
	ret = read_response(s, len, &features);
	if (ret) {
		s->n_recs = 0;
		free_skipped(s);
		if (ret == -ENOMEM)
			fail_stream(q, s, -ENOMEM, "out of memory reading the reply");
		else
			fail_stream(q, s, -EPROTO, "reply does not parse as QueryResponse");
		return;
	}
	if (!s->first_seen) {
		s->first_seen = true;
		if ((features & q->need_features) != q->need_features) {
			fail_features(q, s, features);
			s->n_recs = 0;
			free_skipped(s);
			return;
		}
	}
	/* before the batch's records: a skipped block concerns them and every later record */
	for (size_t i = 0; i < s->n_skip; i++) {
		s->skipped++;
		if (q->skip_cb)
			q->skip_cb(s->server, s->skip[i], q->arg);
	}
	free_skipped(s);
}

/* Read the record rec of stream s into q->view and check it: it parses (protobuf-c's rules),
 * its ts_ns is the one the merge ordered it by, inside the window and in the stream's order.
 * false with the query failed otherwise. */
static bool read_record(struct query_state *q, struct stream *s, const struct batch_rec *rec)
{
	char what[256];
	uint64_t ts_ns;

	if (tv_record_wire_parse_next(s->msg + rec->off, rec->len, &q->view)) {
		fail_stream(q, s, -EPROTO, "reply does not parse as QueryResponse");
		return false;
	}
	ts_ns = q->view.num[TV_REC_TS_NS];
	if (ts_ns != rec->ts_ns) { /* a second ts_ns field later in the record: the last counts */
		fail_stream(q, s, -EPROTO, "server sent a record with two ts_ns values");
		return false;
	}
	if (ts_ns < q->from_ns || ts_ns >= q->to_ns || !in_order(q, s->last_ts_ns, ts_ns)) {
		snprintf(what, sizeof(what),
			 "server sent ts_ns %" PRIu64 " out of order or outside [%" PRIu64
			 ", %" PRIu64 ")",
			 ts_ns, q->from_ns, q->to_ns);
		fail_stream(q, s, -EPROTO, what);
		return false;
	}
	s->last_ts_ns = ts_ns;
	return true;
}

/* Whether a head at ts_ns of a stream listed after the one holding best_ts goes out first. */
static bool first_of(const struct query_state *q, uint64_t ts_ns, uint64_t best_ts)
{
	return q->reverse ? ts_ns >= best_ts : ts_ns < best_ts;
}

static bool busy(const struct stream *s)
{
	return s->start_busy || s->recv_busy || s->status_busy;
}

static void post_recv(struct query_state *q, struct stream *s)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &s->recv;
	s->recv_busy = grpc_call_start_batch(s->call, &op, 1, TAG(s - q->s, TAG_RECV), NULL) ==
		       GRPC_CALL_OK;
	if (!s->recv_busy) {
		fail_stream(q, s, -EIO, "start batch failed");
		stop_all(q);
	}
}

/* Ask for the next message unless one is on its way or kept already. */
static void read_ahead(struct query_state *q, struct stream *s)
{
	if (!q->stopping && !s->ended && !s->next && !s->recv_busy)
		post_recv(q, s);
}

/* A stream's status, judged once every message before it was taken: a message read ahead
 * and not yet taken, or one still on its way, may hold the skipped blocks that make a
 * DATA_LOSS expected, or the first message's features. */
static void judge_status(struct query_state *q, struct stream *s)
{
	s->status_waiting = false;
	/* DATA_LOSS after skipped blocks were reported: every other record came */
	if (s->status == GRPC_STATUS_DATA_LOSS && s->skipped)
		return;
	/* a server that knows the fields always sends a first message */
	if (s->status == GRPC_STATUS_OK && !s->first_seen && q->need_features && !q->stopping) {
		fail_features(q, s, 0);
		stop_all(q);
		return;
	}
	if (s->status != GRPC_STATUS_OK && !q->stopping) {
		char what[512];

		tv_rpc_status_text(s->status, &s->details, what, sizeof(what));
		fail_stream(q, s, tv_rpc_status_errno(s->status), what);
		stop_all(q);
	}
}

/* Judge s's status if it came and nothing of s is left to take. */
static void judge_when_drained(struct query_state *q, struct stream *s)
{
	if (s->status_waiting && !s->next && !s->recv_busy)
		judge_status(q, s);
}

/* A stream without a batch takes the message it read ahead, if any, and asks for the next. */
static void refill(struct query_state *q, struct stream *s)
{
	if (!s->n_recs && s->next && !q->stopping) {
		take_batch(q, s, s->next);
		grpc_byte_buffer_destroy(s->next);
		s->next = NULL;
		if (q->fail_ret)
			stop_all(q);
		judge_when_drained(q, s);
	}
	read_ahead(q, s);
}

/* Hand records to the callback in merged ts_ns order for as long as every stream either holds
 * a batch or is finished: only then is the smallest head the smallest record still to come.
 * Ties go to the stream listed first, so equal inputs give equal outputs. Reverse is the exact
 * mirror: the largest head first, ties to the stream listed last. */
static void emit_ready(struct query_state *q)
{
	while (!q->stopping) {
		struct stream *best = NULL;
		const struct batch_rec *rec;

		for (size_t i = 0; i < q->n; i++) {
			struct stream *s = &q->s[i];

			refill(q, s);
			if (q->stopping)
				return;
			if (!s->n_recs) {
				if (!s->ended || s->status_busy || s->recv_busy)
					return; /* its next record may be the smallest */
				continue;
			}
			if (!best ||
			    first_of(q, s->recs[s->pos].ts_ns, best->recs[best->pos].ts_ns))
				best = s;
		}
		if (!best)
			return; /* every stream finished */
		rec = &best->recs[best->pos];
		if (!read_record(q, best, rec)) {
			best->n_recs = best->pos = 0;
			stop_all(q);
			return;
		}
		q->seen++;
		q->cb_ret = q->cb(&q->view, q->arg);
		if (q->cb_ret || (q->limit && q->seen == q->limit))
			stop_all(q); /* CANCELLED statuses that follow are ours */
		if (++best->pos == best->n_recs)
			best->n_recs = best->pos = 0; /* the next loop takes what it read ahead */
	}
}

/* Create the call of stream i and start its request and status batches. */
static void start_stream(struct query_state *q, size_t i, grpc_completion_queue *cq,
			 gpr_timespec deadline)
{
	Tracevault__V1__QueryRequest req = TRACEVAULT__V1__QUERY_REQUEST__INIT;
	struct stream *s = &q->s[i];
	grpc_op ops[4];
	char what[128];
	int ret;

	req.from_ns = q->from_ns;
	req.to_ns = q->to_ns;
	req.limit = q->limit; /* each server stops at limit; the merge cuts the union to limit */
	req.reverse = q->reverse;
	req.filter = (Tracevault__V1__QueryFilter *)q->filter; /* only read by pack */
	ret = tv_wire_pack(&req.base, &s->send);
	if (ret) {
		snprintf(what, sizeof(what), "pack request: %s", strerror(-ret));
		fail_stream(q, s, ret, what);
		stop_all(q);
		return;
	}
	s->call = grpc_channel_create_call(s->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
					   grpc_slice_from_static_string(TV_METHOD_QUERY), NULL,
					   deadline, NULL);
	if (!s->call) {
		fail_stream(q, s, -ENOMEM, "cannot create the call");
		stop_all(q);
		return;
	}
	s->start_busy = grpc_call_start_batch(s->call, ops,
					      tv_rpc_request_ops(ops, s->send, &s->init_md),
					      TAG(i, TAG_START), NULL) == GRPC_CALL_OK;
	tv_rpc_status_op(&ops[0], &s->trail_md, &s->status, &s->details);
	s->status_busy = grpc_call_start_batch(s->call, ops, 1, TAG(i, TAG_STATUS), NULL) ==
			 GRPC_CALL_OK;
	if (!s->start_busy || !s->status_busy) {
		fail_stream(q, s, -EIO, "start batch failed");
		stop_all(q);
	}
}

static void on_event(struct query_state *q, const grpc_event *ev)
{
	size_t i = TAG_STREAM(ev->tag);
	struct stream *s;

	if (i >= q->n)
		return;
	s = &q->s[i];
	switch (TAG_KIND(ev->tag)) {
	case TAG_START:
		s->start_busy = false;
		break;
	case TAG_STATUS:
		s->status_busy = false;
		s->ended = true; /* no message is sent after the status */
		s->status_waiting = true;
		judge_when_drained(q, s);
		break;
	case TAG_RECV:
		s->recv_busy = false;
		if (!ev->success || !s->recv) {
			s->ended = true; /* end of stream: the status follows */
			judge_when_drained(q, s);
			break;
		}
		/* s->recv is free before refill may post the next receive into it: gRPC can fill
		 * it from its own threads before that batch's event reaches us */
		s->next = s->recv;
		s->recv = NULL;
		if (q->stopping) {
			grpc_byte_buffer_destroy(s->next);
			s->next = NULL;
		} else {
			refill(q, s); /* taken now when the stream has no batch, else later */
		}
		break;
	}
}

/* Run every stream to its end on one completion queue. */
static void run_streams(struct query_state *q, grpc_completion_queue *cq)
{
	gpr_timespec deadline = tv_rpc_deadline_ms(TV_QUERY_TIMEOUT_MS);
	gpr_timespec wait_until =
		gpr_time_add(deadline, gpr_time_from_millis(TV_RPC_CQ_SLACK_MS, GPR_TIMESPAN));

	for (size_t i = 0; i < q->n && !q->stopping; i++)
		start_stream(q, i, cq, deadline);
	/* Each batch completes exactly once; the loop ends when none is outstanding. */
	for (;;) {
		bool any_busy = false;
		grpc_event ev;

		for (size_t i = 0; i < q->n && !q->stopping; i++)
			read_ahead(q, &q->s[i]);
		emit_ready(q);
		for (size_t i = 0; i < q->n; i++)
			any_busy |= q->s[i].call && busy(&q->s[i]);
		if (!any_busy)
			break;
		if (q->idle_cb && !q->stopping)
			q->idle_cb(q->arg); /* nothing more to hand out until a server answers */
		ev = grpc_completion_queue_next(cq, wait_until, NULL);
		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			if (!q->fail_ret) {
				q->fail_ret = -ETIMEDOUT;
				snprintf(q->fail, sizeof(q->fail),
					 "query failed: no completion by the deadline");
			}
			stop_all(q);
			wait_until = gpr_inf_future(GPR_CLOCK_MONOTONIC);
			continue;
		}
		if (ev.type != GRPC_OP_COMPLETE)
			break;
		on_event(q, &ev);
	}
}

/* Split the server list into q->s[].server. Returns 0 or -EINVAL/-ENOMEM with a reason. */
static int split_servers(struct query_state *q, const char *server, char *err, size_t errlen)
{
	int ret = tv_server_list_parse(server, 0, &q->list);

	if (ret == -EINVAL)
		snprintf(err, errlen, "invalid server list '%s': empty address", server);
	else if (ret)
		snprintf(err, errlen, "out of memory");
	if (ret)
		return ret;
	q->s = calloc(q->list.n, sizeof(*q->s));
	if (!q->s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (; q->n < q->list.n; q->n++) {
		q->s[q->n].server = q->list.v[q->n];
		q->s[q->n].last_ts_ns = q->reverse ? UINT64_MAX : 0;
		q->s[q->n].details = grpc_empty_slice();
		grpc_metadata_array_init(&q->s[q->n].init_md);
		grpc_metadata_array_init(&q->s[q->n].trail_md);
	}
	return 0;
}

static void free_streams(struct query_state *q)
{
	for (size_t i = 0; i < q->n; i++) {
		struct stream *s = &q->s[i];

		if (s->next)
			grpc_byte_buffer_destroy(s->next);
		free_skipped(s);
		free(s->skip);
		free(s->recs);
		free(s->msg);
		if (s->send)
			grpc_byte_buffer_destroy(s->send);
		grpc_slice_unref(s->details);
		grpc_metadata_array_destroy(&s->init_md);
		grpc_metadata_array_destroy(&s->trail_md);
		if (s->call)
			grpc_call_unref(s->call);
		if (s->ch)
			grpc_channel_destroy(s->ch);
	}
	free(q->s);
	tv_server_list_free(&q->list);
}

int tv_query(const char *server, const struct tv_rpc_tls *tls, uint64_t from_ns, uint64_t to_ns, uint64_t limit, bool reverse,
	     const Tracevault__V1__QueryFilter *filter, size_t max_message_bytes, tv_query_cb cb,
	     tv_query_skip_cb skip_cb, tv_query_idle_cb idle_cb, void *arg, char *err,
	     size_t errlen)
{
	struct query_state q = {
		.from_ns = from_ns, .to_ns = to_ns, .limit = limit, .filter = filter, .cb = cb,
		.reverse = reverse, .tls = tls,
		.need_features = (filter ? TV_QUERY_FEATURE_FILTER : 0) |
				 (reverse ? TV_QUERY_FEATURE_REVERSE : 0) |
				 (filter && (filter->kind || filter->n_services) ?
					  TV_QUERY_FEATURE_SPANS : 0),
		.skip_cb = skip_cb,
		.idle_cb = idle_cb,
		.arg = arg,
		.max_message_bytes = max_message_bytes ? max_message_bytes
						       : TV_DEFAULT_MAX_MESSAGE_BYTES,
	};
	grpc_completion_queue *cq;
	int ret;

	grpc_init();
	cq = grpc_completion_queue_create_for_next(NULL);
	if (!cq) {
		snprintf(err, errlen, "cannot create a completion queue");
		ret = -ENOMEM;
		goto out;
	}
	ret = split_servers(&q, server, err, errlen);
	if (ret)
		goto out;
	/* Every server is checked before any is asked, so an unreachable one fails the query
	 * before a single record is printed. The probe needs a queue with no other work. */
	for (size_t i = 0; i < q.n; i++) {
		q.s[i].ch = tv_rpc_read_channel_new(q.s[i].server, tls, q.max_message_bytes);
		if (!q.s[i].ch) {
			snprintf(err, errlen, "cannot create a channel to %s", q.s[i].server);
			ret = -ENOMEM;
			goto out;
		}
		ret = tv_rpc_probe(q.s[i].ch, cq, q.s[i].server, tls, TV_QUERY_CONNECT_TIMEOUT_MS,
				   err, errlen);
		if (ret)
			goto out;
	}
	/* an empty window holds nothing: the servers are checked, but not asked */
	if (from_ns >= to_ns)
		goto out;
	run_streams(&q, cq);
	if (q.fail_ret) {
		snprintf(err, errlen, "%s", q.fail);
		ret = q.fail_ret;
	} else {
		ret = q.cb_ret; /* 0 also when we cancelled after the last wanted record */
	}
out:
	free_streams(&q);
	if (cq)
		tv_grpc_cq_destroy(cq); /* nothing is outstanding between calls */
	grpc_shutdown();
	return ret;
}

/* One Stats call on server; its counters are added to sum. */
static int stats_one(const char *server, const struct tv_rpc_tls *tls,
		     const Tracevault__V1__StatsRequest *req,
		     size_t max_message_bytes, Tracevault__V1__StatsResponse *sum, char *err,
		     size_t errlen)
{
	ProtobufCMessage *m = NULL;
	Tracevault__V1__StatsResponse *r;
	char why[512];
	bool called;
	int ret;

	ret = tv_rpc_unary_to(server, tls, TV_METHOD_STATS, &req->base,
			      &tracevault__v1__stats_response__descriptor, max_message_bytes,
			      TV_QUERY_CONNECT_TIMEOUT_MS, TV_QUERY_CONNECT_TIMEOUT_MS, &m, &called,
			      why, sizeof(why));
	if (ret) {
		if (called)
			snprintf(err, errlen, "stats failed on %s: %s", server, why);
		else
			snprintf(err, errlen, "%s", why);
		return ret;
	}
	r = (Tracevault__V1__StatsResponse *)m;
	sum->blocks += r->blocks;
	sum->records += r->records;
	sum->bytes += r->bytes;
	sum->lost_ring_full += r->lost_ring_full;
	sum->lost_map_full += r->lost_map_full;
	sum->lost_parser += r->lost_parser;
	sum->lost_cache += r->lost_cache;
	sum->lost_failed += r->lost_failed;
	sum->lost_requests += r->lost_requests;
	sum->raw_bytes += r->raw_bytes;
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}

int tv_query_stats(const char *server, const struct tv_rpc_tls *tls, uint64_t from_ns,
		   uint64_t to_ns,
		   size_t max_message_bytes, Tracevault__V1__StatsResponse **out, char *err,
		   size_t errlen)
{
	Tracevault__V1__StatsRequest req = TRACEVAULT__V1__STATS_REQUEST__INIT;
	Tracevault__V1__StatsResponse *sum = calloc(1, sizeof(*sum));
	struct tv_server_list list = {0};
	int ret;

	*out = NULL;
	if (!sum) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	ret = tv_server_list_parse(server, 0, &list);
	if (ret) {
		snprintf(err, errlen, ret == -EINVAL ? "invalid server list '%s': empty address"
						     : "out of memory%.0s", server);
		goto out;
	}
	tracevault__v1__stats_response__init(sum);
	if (!max_message_bytes)
		max_message_bytes = TV_DEFAULT_MAX_MESSAGE_BYTES;
	req.from_ns = from_ns;
	req.to_ns = to_ns;
	grpc_init();
	for (size_t i = 0; i < list.n && !ret; i++)
		ret = stats_one(list.v[i], tls, &req, max_message_bytes, sum, err, errlen);
	grpc_shutdown();
	if (!ret) {
		*out = sum;
		sum = NULL;
	}
out:
	free(sum);
	tv_server_list_free(&list);
	return ret;
}
