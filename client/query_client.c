/* The Query rpc from the client side: probe the channel, send one QueryRequest, read the
 * QueryResponse batches until the status, checking order and bounds of what comes back. */
#include "query_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "rpc.h"
#include "wire.h"

#define TAG_START ((void *)1)
#define TAG_RECV ((void *)2)
#define TAG_STATUS ((void *)3)

struct query_state {
	uint64_t from_ns, to_ns, limit, seen, last_ts_ns;
	size_t max_message_bytes;
	tv_query_cb cb;
	void *arg;
	int cb_ret;		/* non-zero: the callback asked to stop */
	char local_err[256];	/* a reply that broke the contract */
};

/* Hand one batch to the callback. Returns false to stop reading. */
static bool deliver(struct query_state *q, grpc_byte_buffer *bb)
{
	Tracevault__V1__QueryResponse *resp;
	uint8_t *flat = NULL;
	size_t len;
	int ret;

	ret = tv_wire_flatten(bb, q->max_message_bytes, &flat, &len);
	if (ret) {
		snprintf(q->local_err, sizeof(q->local_err), "query failed: read reply: %s",
			 strerror(-ret));
		return false;
	}
	resp = tracevault__v1__query_response__unpack(NULL, len, flat);
	free(flat);
	if (!resp) {
		snprintf(q->local_err, sizeof(q->local_err),
			 "query failed: reply does not parse as QueryResponse");
		return false;
	}
	for (size_t i = 0; i < resp->n_records; i++) {
		const Tracevault__V1__TraceRecord *r = resp->records[i];

		if (r->ts_ns < q->from_ns || r->ts_ns >= q->to_ns || r->ts_ns < q->last_ts_ns) {
			snprintf(q->local_err, sizeof(q->local_err),
				 "query failed: server sent ts_ns %" PRIu64
				 " out of order or outside [%" PRIu64 ", %" PRIu64 ")",
				 r->ts_ns, q->from_ns, q->to_ns);
			break;
		}
		if (q->limit && q->seen == q->limit)
			break; /* the server should have stopped: never print more than asked */
		q->last_ts_ns = r->ts_ns;
		q->seen++;
		q->cb_ret = q->cb(r, q->arg);
		if (q->cb_ret)
			break;
	}
	tracevault__v1__query_response__free_unpacked(resp, NULL);
	return !q->local_err[0] && !q->cb_ret && !(q->limit && q->seen == q->limit);
}

static int run_query(grpc_channel *ch, grpc_completion_queue *cq, struct query_state *q,
		     char *err, size_t errlen)
{
	Tracevault__V1__QueryRequest req = TRACEVAULT__V1__QUERY_REQUEST__INIT;
	gpr_timespec deadline = tv_rpc_deadline_ms(TV_QUERY_TIMEOUT_MS);
	gpr_timespec wait_until =
		gpr_time_add(deadline, gpr_time_from_millis(TV_RPC_CQ_SLACK_MS, GPR_TIMESPAN));
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_byte_buffer *send = NULL, *recv = NULL;
	bool start_busy = false, recv_busy = false, status_busy = false, stop = false;
	grpc_op ops[4];
	grpc_call *call;
	int ret;

	req.from_ns = q->from_ns;
	req.to_ns = q->to_ns;
	req.limit = q->limit;
	ret = tv_wire_pack(&req.base, &send);
	if (ret) {
		snprintf(err, errlen, "query failed: pack request: %s", strerror(-ret));
		return ret;
	}
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
					grpc_slice_from_static_string(TV_METHOD_QUERY), NULL,
					deadline, NULL);
	if (!call) {
		grpc_byte_buffer_destroy(send);
		snprintf(err, errlen, "query failed: cannot create the call");
		return -ENOMEM;
	}
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);

	start_busy = grpc_call_start_batch(call, ops, tv_rpc_request_ops(ops, send, &init_md),
					   TAG_START, NULL) == GRPC_CALL_OK;
	tv_rpc_status_op(&ops[0], &trail_md, &status, &details);
	status_busy = grpc_call_start_batch(call, ops, 1, TAG_STATUS, NULL) == GRPC_CALL_OK;
	if (!start_busy || !status_busy) {
		snprintf(q->local_err, sizeof(q->local_err), "query failed: start batch failed");
		stop = true;
		grpc_call_cancel(call, NULL);
	}

	/* Each batch completes exactly once; the loop ends when none is outstanding. */
	while (start_busy || recv_busy || status_busy) {
		grpc_event ev;

		if (!stop && !recv_busy) {
			memset(ops, 0, sizeof(ops));
			ops[0].op = GRPC_OP_RECV_MESSAGE;
			ops[0].data.recv_message.recv_message = &recv;
			recv_busy = grpc_call_start_batch(call, ops, 1, TAG_RECV, NULL) ==
				    GRPC_CALL_OK;
			if (!recv_busy) {
				stop = true;
				grpc_call_cancel(call, NULL);
			}
		}
		ev = grpc_completion_queue_next(cq, wait_until, NULL);
		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			snprintf(q->local_err, sizeof(q->local_err),
				 "query failed: no completion by the deadline");
			stop = true;
			grpc_call_cancel(call, NULL);
			wait_until = gpr_inf_future(GPR_CLOCK_MONOTONIC);
			continue;
		}
		if (ev.type != GRPC_OP_COMPLETE)
			break;
		if (ev.tag == TAG_START) {
			start_busy = false;
		} else if (ev.tag == TAG_STATUS) {
			status_busy = false;
		} else if (ev.tag == TAG_RECV) {
			recv_busy = false;
			if (!ev.success || !recv) {
				stop = true; /* end of stream: the status follows */
				continue;
			}
			if (!deliver(q, recv) && !stop) {
				stop = true;
				/* stopped early (limit, callback, bad reply): end the stream */
				grpc_call_cancel(call, NULL);
			}
			grpc_byte_buffer_destroy(recv);
			recv = NULL;
		}
	}

	if (q->local_err[0]) {
		snprintf(err, errlen, "%s", q->local_err);
		ret = -EPROTO;
	} else if (q->cb_ret) {
		ret = q->cb_ret;
	} else if (q->limit && q->seen == q->limit) {
		ret = 0; /* we cancelled after the last wanted record: CANCELLED is expected */
	} else if (status != GRPC_STATUS_OK) {
		char what[512];

		tv_rpc_status_text(status, &details, what, sizeof(what));
		snprintf(err, errlen, "query failed: %s", what);
		ret = tv_rpc_status_errno(status);
	} else {
		ret = 0;
	}
	grpc_byte_buffer_destroy(send);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	grpc_call_unref(call);
	return ret;
}

int tv_query(const char *server, uint64_t from_ns, uint64_t to_ns, uint64_t limit,
	     size_t max_message_bytes, tv_query_cb cb, void *arg, char *err, size_t errlen)
{
	struct query_state q = {
		.from_ns = from_ns, .to_ns = to_ns, .limit = limit, .cb = cb, .arg = arg,
		.max_message_bytes = max_message_bytes ? max_message_bytes
						       : TV_DEFAULT_MAX_MESSAGE_BYTES,
	};
	grpc_completion_queue *cq;
	grpc_channel *ch;
	int ret;

	grpc_init();
	cq = grpc_completion_queue_create_for_next(NULL);
	ch = cq ? tv_rpc_channel_new(server, q.max_message_bytes) : NULL;
	if (!ch) {
		snprintf(err, errlen, "cannot create a channel to %s", server);
		ret = -ENOMEM;
		goto out;
	}
	ret = tv_rpc_probe(ch, cq, server, TV_QUERY_CONNECT_TIMEOUT_MS, err, errlen);
	/* an empty window holds nothing: the server is checked, but not asked */
	if (ret == 0 && from_ns < to_ns)
		ret = run_query(ch, cq, &q, err, errlen);
out:
	if (ch)
		grpc_channel_destroy(ch);
	if (cq)
		tv_rpc_cq_destroy(cq); /* nothing is outstanding between calls */
	grpc_shutdown();
	return ret;
}
