/* TraceStore over grpc C core: a completion-queue loop on one thread. Each call is a struct
 * whose ops carry tags (call pointer + op kind) and whose life is one enum call_state; a call is
 * freed when it is C_DONE and its last started batch has come back. Write and Query streams
 * are counted against their limits, and a call left waiting on its client past the idle
 * timeout is ended (idle_expire).
 * Write calls delegate the protocol to segment.c, Query calls to query.c, Delete to
 * delete_rpc.c; Stats sums catalog rows here. OTLP Export calls (PROTOCOL.md "OTLP ingest") feed
 * the segment of their spans the Write requests otlp_export.c builds, and are answered from
 * its commit. A call to any other path (an unknown service or method) is answered UNIMPLEMENTED
 * at once, as gRPC's C++ server does (unknown_begin). */
#include "server/rpc_server.h"

#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/clock.h"
#include "common/grpc_util.h"
#include "common/metrics.h"
#include "server/delete_rpc.h"
#include "server/evict.h"
#include "server/grpc_log.h"
#include "server/otlp_export.h"
#include "server/peers.h"
#include "server/query.h"
#include "server/segment.h"
#include "server/status.h"
#include "server/summary.h"
#include "server/under_journal.h"
#include "proto/wire.h"

/* The registered methods, then M_UNKNOWN: a call to any path none of them has, requested with
 * grpc_server_request_call. gRPC C core hands such calls only to that request and, while none is
 * posted, keeps them queued until their deadline (forever without one): one is always posted. */
enum method { M_WRITE, M_QUERY, M_DELETE, M_STATS, M_SUMMARY, M_EXPORT, M_UNKNOWN, M_COUNT };
enum op { OP_REQUEST, OP_CLOSE, OP_RECV, OP_SEND, OP_STATUS, OP_COUNT, OP_SHUTDOWN };

static const char *const METHOD_NAME[M_COUNT] = { "Write", "Query", "Delete", "Stats",
						  "Summary", "Export", "unknown method" };

/* How much of an unknown method's path its status message and log line show: the bytes shown
 * (each at most 4 characters escaped), then "... (N bytes)". gRPC bounds the path itself only
 * by its metadata limit (8 KiB by default). */
#define PATH_SHOWN_BYTES 128
#define PATH_TEXT_LEN (PATH_SHOWN_BYTES * 4 + 32)

/* the peer table holds every counted stream: sized by the same bound */
_Static_assert(TV_PEERS_MAX_STREAMS == TV_RPC_MAX_STREAMS, "one bound for stream counts");
/* metrics.h indexes streams_refused by these */
_Static_assert(TV_PEER_WRITE == 0 && TV_PEER_QUERY == 1 && TV_PEER_CLASSES == 2,
	       "streams_refused[class]");

/* The per-peer count of a counted method (Write or Query). */
static enum tv_peer_class peer_class(enum method m)
{
	return m == M_WRITE ? TV_PEER_WRITE : TV_PEER_QUERY;
}

const struct tv_limit tv_rpc_streams_limit = { .min = 1, .max = TV_RPC_MAX_STREAMS };
const struct tv_limit tv_rpc_idle_timeout_ms_limit = { .min = TV_RPC_MIN_IDLE_TIMEOUT_MS,
						       .max = TV_RPC_MAX_IDLE_TIMEOUT_MS };

struct call;

struct tag {
	struct call *call; /* NULL for the server shutdown tag */
	enum op op;
};

/* A queued response: a packed message, or (bb == NULL) a Write ack packed only when it is
 * sent, so that a newer ack for the same block can replace it while it waits. */
struct msg_node {
	grpc_byte_buffer *bb;
	uint64_t block_id, offset;
	struct msg_node *next;
};

/* Where a call is in its life. A call only moves down this list, and only set_state moves it.
 *
 *   state          what holds                                 leaves on                -> to
 *   C_REQUESTED    a slot posted with request_registered_call OP_REQUEST ok            -> C_OPEN
 *                  (request_call: M_UNKNOWN)                  OP_REQUEST !ok (shutdown)-> C_DONE
 *                  (no call from a client yet)
 *   C_OPEN         the method runs; no status decided yet     finish()                 -> C_FINISHING
 *                                                             Write: end of stream     -> C_EOS_WAIT
 *                                                             close op not startable   -> C_DONE
 *   C_EOS_WAIT     Write only: the client's message stream    cancel (OP_CLOSE) or
 *                  ended; no RECV_MESSAGE is posted again.    grace over (on_end), or
 *                  Waits TV_RPC_EOS_GRACE_MS for a cancel     finish() (I/O failure,
 *                  to tell a cancel from a half-close         a Delete)                -> C_FINISHING
 *   C_FINISHING    status decided (code, details); waits for  pump() starts the status -> C_STATUS_SENT
 *                  queued replies, the send in flight and     starting it fails        -> C_DONE
 *                  the segment's I/O
 *   C_STATUS_SENT  the SEND_STATUS batch is in flight         OP_STATUS                -> C_DONE
 *   C_DONE         no status batch will start or is in        call_free once outstanding == 0
 *                  flight
 *
 * Being ordered, "a status is decided" is state >= C_FINISHING (status_decided). */
enum call_state {
	C_REQUESTED,
	C_OPEN,
	C_EOS_WAIT,
	C_FINISHING,
	C_STATUS_SENT,
	C_DONE,
};

struct call {
	struct tv_rpc_server *srv;
	enum method m;
	struct tag tags[OP_COUNT];
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array req_md;
	grpc_call_details details_in; /* M_UNKNOWN: the path and host the client called */
	grpc_byte_buffer *payload; /* first request message (Query, Delete) */
	grpc_byte_buffer *recv_bb; /* target of the outstanding RECV_MESSAGE (Write) */
	grpc_byte_buffer *send_bb; /* the one outstanding SEND_MESSAGE */
	struct msg_node *queue_head, *queue_tail; /* responses waiting for send_bb to clear */
	enum call_state state;
	int outstanding;      /* started batches whose tag has not come back */
	/* Two facts the state does not hold, because they are independent of it:
	 *  - recv_busy: a RECV_MESSAGE is in flight. Posted only in C_OPEN, but it stays in flight
	 *    after the status is decided (grpc returns it when a message comes or the call ends),
	 *    so it coexists with C_FINISHING, C_STATUS_SENT and C_DONE.
	 *  - cancelled: written by grpc when RECV_CLOSE_ON_SERVER completes (an int because the
	 *    op wants one), which can happen in any state after C_REQUESTED; read in OP_CLOSE. */
	bool recv_busy;
	int cancelled;
	gpr_timespec eos_deadline; /* in C_EOS_WAIT: when the end of stream counts as half-close */
	gpr_timespec active_at;    /* the client last made progress (see waits_on_client) */
	bool counted;              /* holds one of the server's stream slots of its method,
				    * and one of its peer's (srv->peers) */
	struct tv_peer peer;       /* the client's address (set where counting begins) */
	bool idle_ended;           /* idle_expire ended it: not again */
	grpc_status_code code;    /* from C_FINISHING on */
	grpc_slice details;
	struct tv_segment *seg;
	struct tv_query *query;
	struct tv_summary *summary; /* a Summary being counted (one step per turn) */
	uint64_t query_mono_ns;     /* a Query's request began (0: none), for its latency */
	bool runnable;            /* on the server's runnable list (a query that yielded, or a
				   * Summary still counting) */
	struct call *run_next;
	struct call *prev, *next; /* live calls of the server (Delete looks for segments) */
	/* an OTLP Export: the Write requests of its spans' segment (fed as the segment can take
	 * them), what its reply will say, the request bytes it holds of the server's pending
	 * bound, when it began, and a throttled reply's grpc-status-details-bin */
	struct tv_otlp_write ow;
	uint64_t otlp_accepted, otlp_rejected;
	char *otlp_msg;
	size_t otlp_bytes;
	bool otlp_committed;
	uint64_t export_mono_ns;
	grpc_metadata status_md;
	bool status_md_set;
};

struct tv_rpc_server {
	grpc_server *server;
	grpc_completion_queue *cq;
	void *method[M_COUNT]; /* from grpc_server_register_method; NULL for M_UNKNOWN */
	struct tv_catalog *catalog;
	struct tv_store *store;
	size_t max_message_bytes;
	struct call *calls;
	size_t live;
	struct tag shutdown_tag;
	int shutting_down, shutdown_done, stopped;
	size_t eos_waiting;   /* calls in C_EOS_WAIT (kept by set_state) */
	struct tv_segment_stats seg_stats;
	struct tv_commit_queue commit_q;
	unsigned events_since_queued; /* gRPC events handled while commit_q was not empty */
	unsigned max_streams[M_COUNT]; /* Write and Query; 0 for unlimited methods */
	unsigned streams[M_COUNT];     /* calls with counted set, per method */
	struct tv_peers *peers;        /* the same calls per peer, within each peer's share */
	bool peer_unparsed_logged;     /* a peer string gRPC gave was not understood (once) */
	unsigned idle_timeout_ms;
	gpr_timespec next_idle_scan;
	struct tv_query_pool query_pool; /* the limits and holdings of all queries */
	/* Queries whose last slice yielded (TV_QUERY_YIELD): each gets one slice per turn of the
	 * loop, round-robin, and the loop polls gRPC without blocking while any is waiting. */
	struct call *run_head, *run_tail;
	struct tv_retention *retention;  /* passes, and the removal of whole segments */
	struct tv_server_metrics metrics; /* --metrics-addr (server/metrics.h) */
	/* the under-store, and the poll of its eventfd in the store's io_uring while persists are
	 * outstanding (its results then wake the loop where it waits for I/O) */
	struct tv_persist *under;
	struct tv_store_op under_poll;
	int under_armed;
	/* OTLP ingest (otlp_export.h): the request bytes of Exports in progress and its bound,
	 * the largest request, the span limits */
	size_t otlp_pending_bytes, otlp_max_pending_bytes, otlp_max_message_bytes;
	struct tv_otlp_limits otlp_limits;
	/* the log lines of calls to unknown methods: a client that keeps calling one (a health
	 * or reflection probe, a scanner) gets TV_GRPC_LOG_WINDOW_LINES per window, then one
	 * line counting the rest (unknown_log_expire) */
	struct tv_log_limit unknown_log;
};

/* The stored blocks and bytes gauges from the catalog's totals row (O(1)): after each commit
 * group and every TV_RPC_IDLE_SCAN_MS, so a scrape sees them at most that old. */
static void refresh_stored(struct tv_rpc_server *srv)
{
	uint64_t blocks, bytes;

	if (tv_catalog_size(srv->catalog, &blocks, &bytes))
		return; /* kept as they were: the failure shows in the calls that meet it */
	tv_metric_set(&srv->metrics.stored_blocks, blocks);
	tv_metric_set(&srv->metrics.stored_bytes, bytes);
}

/* ---- call lifecycle ---- */

static struct call *call_new(struct tv_rpc_server *srv, enum method m)
{
	struct call *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->srv = srv;
	c->m = m;
	c->state = C_REQUESTED;
	for (int i = 0; i < OP_COUNT; i++)
		c->tags[i] = (struct tag){ .call = c, .op = (enum op)i };
	grpc_metadata_array_init(&c->req_md);
	grpc_call_details_init(&c->details_in);
	c->details = grpc_empty_slice();
	c->next = srv->calls;
	if (srv->calls)
		srv->calls->prev = c;
	srv->calls = c;
	srv->live++;
	return c;
}

static void drop_queue(struct call *c)
{
	while (c->queue_head) {
		struct msg_node *n = c->queue_head;

		c->queue_head = n->next;
		if (n->bb)
			grpc_byte_buffer_destroy(n->bb);
		free(n);
	}
	c->queue_tail = NULL;
}

/* The one place a call changes state; it keeps the server's count of calls in C_EOS_WAIT. */
static void set_state(struct call *c, enum call_state to)
{
	if (c->state == C_EOS_WAIT)
		c->srv->eos_waiting--;
	if (to == C_EOS_WAIT)
		c->srv->eos_waiting++;
	c->state = to;
}

static bool status_decided(const struct call *c)
{
	return c->state >= C_FINISHING;
}

static void run_push(struct tv_rpc_server *srv, struct call *c)
{
	if (c->runnable)
		return;
	c->runnable = true;
	c->run_next = NULL;
	if (srv->run_tail)
		srv->run_tail->run_next = c;
	else
		srv->run_head = c;
	srv->run_tail = c;
}

static void run_unlink(struct tv_rpc_server *srv, struct call *c)
{
	struct call **pp = &srv->run_head, *prev = NULL;

	while (*pp && *pp != c) {
		prev = *pp;
		pp = &(*pp)->run_next;
	}
	if (!*pp)
		return;
	*pp = c->run_next;
	if (srv->run_tail == c)
		srv->run_tail = prev;
	c->runnable = false;
	c->run_next = NULL;
}

static void call_free(struct call *c)
{
	struct tv_rpc_server *srv = c->srv;

	if (c->prev)
		c->prev->next = c->next;
	else
		srv->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->live--;
	if (c->counted) {
		srv->streams[c->m]--;
		tv_peers_release(srv->peers, &c->peer, peer_class(c->m));
	}
	if (c->runnable)
		run_unlink(srv, c);
	tv_segment_free(c->seg); /* aborts a segment that was not committed */
	tv_otlp_write_free(&c->ow);
	free(c->otlp_msg);
	srv->otlp_pending_bytes -= c->otlp_bytes;
	if (c->status_md_set)
		grpc_slice_unref(c->status_md.value);
	tv_query_free(c->query);
	tv_summary_free(c->summary);
	drop_queue(c);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->recv_bb)
		grpc_byte_buffer_destroy(c->recv_bb);
	if (c->send_bb)
		grpc_byte_buffer_destroy(c->send_bb);
	grpc_metadata_array_destroy(&c->req_md);
	grpc_call_details_destroy(&c->details_in);
	grpc_slice_unref(c->details);
	if (c->call)
		grpc_call_unref(c->call);
	free(c);
}

static int start_batch(struct call *c, enum op kind, const grpc_op *ops, size_t n)
{
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->tags[kind], NULL);

	if (e != GRPC_CALL_OK) {
		fprintf(stderr, "%s: grpc_call_start_batch(op %d) failed: %d\n",
			METHOD_NAME[c->m], (int)kind, (int)e);
		return -EIO;
	}
	c->outstanding++;
	return 0;
}

static void post_request(struct tv_rpc_server *srv, enum method m)
{
	struct call *c = call_new(srv, m);
	grpc_call_error e;

	if (!c) {
		fprintf(stderr, "%s: out of memory posting a request slot\n", METHOD_NAME[m]);
		return;
	}
	/* an unknown method's message is never read: gRPC drops it with the call */
	e = m == M_UNKNOWN ?
		    grpc_server_request_call(srv->server, &c->call, &c->details_in, &c->req_md,
					     srv->cq, srv->cq, &c->tags[OP_REQUEST]) :
		    grpc_server_request_registered_call(srv->server, srv->method[m], &c->call,
							&c->deadline, &c->req_md,
							m == M_WRITE ? NULL : &c->payload, srv->cq,
							srv->cq, &c->tags[OP_REQUEST]);
	if (e != GRPC_CALL_OK) {
		fprintf(stderr, "%s: grpc_server_request%s_call failed: %d\n", METHOD_NAME[m],
			m == M_UNKNOWN ? "" : "_registered", (int)e);
		call_free(c);
		return;
	}
	c->outstanding++;
}

/* ---- sending: one SEND_MESSAGE at a time, then the status ---- */

static void pump(struct call *c);

static void finish(struct call *c, grpc_status_code code, const char *msg)
{
	if (status_decided(c))
		return;
	set_state(c, C_FINISHING);
	if (c->runnable)
		run_unlink(c->srv, c);
	if (c->query_mono_ns)
		tv_histogram_observe_ns(&c->srv->metrics.query_seconds,
					tv_monotonic_ns() - c->query_mono_ns);
	if (c->export_mono_ns)
		tv_histogram_observe_ns(&c->srv->metrics.otlp_export_seconds,
					tv_monotonic_ns() - c->export_mono_ns);
	/* a query's blocks and memory go back to the pool now, not when grpc frees the call */
	tv_query_free(c->query);
	c->query = NULL;
	tv_summary_free(c->summary);
	c->summary = NULL;
	c->code = code;
	grpc_slice_unref(c->details);
	c->details = grpc_slice_from_copied_string(msg);
	if (code != GRPC_STATUS_OK) {
		drop_queue(c); /* an error status goes out without the acks still queued */
		/* an unknown method's line is rate-limited: unknown_begin prints it */
		if (code != GRPC_STATUS_CANCELLED && c->m != M_UNKNOWN)
			fprintf(stderr, "%s failed: %s: %s\n", METHOD_NAME[c->m], tv_grpc_status_name(code),
				msg);
	}
	pump(c);
}

/* finish on a negative errno from checking or serving a request: -EINVAL (a malformed
 * request) is INVALID_ARGUMENT, any other the errno's status (server/status.h); the message is
 * err, or strerror when err is empty. */
static void finish_errno(struct call *c, int ret, const char *err)
{
	finish(c, ret == -EINVAL ? GRPC_STATUS_INVALID_ARGUMENT : tv_status_from_errno(ret),
	       err[0] ? err : strerror(-ret));
}

static void enqueue(struct call *c, grpc_byte_buffer *bb)
{
	struct msg_node *n = calloc(1, sizeof(*n));

	if (!n) {
		grpc_byte_buffer_destroy(bb);
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory queueing a response");
		return;
	}
	n->bb = bb;
	if (c->queue_tail)
		c->queue_tail->next = n;
	else
		c->queue_head = n;
	c->queue_tail = n;
}

static int send_message(struct call *c, grpc_byte_buffer *bb)
{
	grpc_op op = { 0 };

	c->send_bb = bb;
	/* the client's idle clock starts when a reply is offered, not at the last one it took: a
	 * call whose answer took long to build (Summary, a yielding scan) is not the client's
	 * delay */
	c->active_at = gpr_now(GPR_CLOCK_MONOTONIC);
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = bb;
	if (start_batch(c, OP_SEND, &op, 1)) {
		c->send_bb = NULL;
		grpc_byte_buffer_destroy(bb);
		return -EIO;
	}
	return 0;
}

/* Next query batch into send_bb, or the query's final status. */
static void query_produce(struct call *c)
{
	grpc_byte_buffer *bb = NULL;
	char err[TV_QUERY_ERR_LEN] = "";
	int ret = tv_query_next(c->query, &bb, err, sizeof(err));

	if (ret == 1) {
		if (send_message(c, bb))
			finish(c, GRPC_STATUS_INTERNAL, "cannot start SEND_MESSAGE");
	} else if (ret == TV_QUERY_YIELD) {
		run_push(c->srv, c); /* its next slice comes after the other work's turn */
	} else if (ret == 0) {
		grpc_status_code code = tv_query_end_status(c->query, err, sizeof(err));

		finish(c, code, err);
	} else {
		finish(c, tv_status_from_errno(ret), err[0] ? err : strerror(-ret));
	}
}

/* One step of a Summary (a slice of its query): back on the runnable list while records
 * remain, then the one reply and the status. */
static void summary_produce(struct call *c)
{
	grpc_byte_buffer *bb = NULL;
	char err[TV_QUERY_ERR_LEN] = "";
	int ret = tv_summary_step(c->summary, err, sizeof(err));

	if (ret == 1) {
		run_push(c->srv, c); /* its next step comes after the other work's turn */
		return;
	}
	if (ret == 0)
		ret = tv_summary_reply(c->summary, c->srv->max_message_bytes, &bb, err, sizeof(err));
	tv_summary_free(c->summary);
	c->summary = NULL;
	if (ret) {
		finish_errno(c, ret, err);
		return;
	}
	enqueue(c, bb);
	finish(c, GRPC_STATUS_OK, "");
}

/* Pack a deferred Write ack; NULL on ENOMEM (the ack is dropped: a later one supersedes it). */
static grpc_byte_buffer *pack_ack(const struct msg_node *n)
{
	Tracevault__V1__WriteResponse r = TRACEVAULT__V1__WRITE_RESPONSE__INIT;
	grpc_byte_buffer *bb = NULL;

	r.block_id = n->block_id;
	r.offset = n->offset;
	return tv_wire_pack(&r.base, &bb) ? NULL : bb;
}

static void pump(struct call *c)
{
	grpc_op op = { 0 };

	if (!c->send_bb && c->queue_head) {
		struct msg_node *n = c->queue_head;
		grpc_byte_buffer *bb = n->bb ? n->bb : pack_ack(n);

		c->queue_head = n->next;
		if (!c->queue_head)
			c->queue_tail = NULL;
		/* !bb: an ack lost to ENOMEM, which a later ack supersedes */
		if (bb && send_message(c, bb)) {
			if (status_decided(c))
				drop_queue(c);
			else
				finish(c, GRPC_STATUS_INTERNAL, "send failed");
		}
		free(n);
	}
	if (!c->send_bb && c->state == C_OPEN && c->m == M_QUERY && c->query && !c->runnable)
		query_produce(c); /* may call finish, which re-enters pump in C_FINISHING */
	else if (c->state == C_OPEN && c->m == M_SUMMARY && c->summary && !c->runnable)
		summary_produce(c);
	/* a Write's status waits for its segment's I/O: a failed segment's files are gone and its
	 * space is free before the client hears the status */
	if (c->state == C_FINISHING && !c->send_bb && !c->queue_head &&
	    !(c->seg && tv_segment_busy(c->seg))) {
		set_state(c, C_STATUS_SENT);
		op.op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		op.data.send_status_from_server.status = c->code;
		op.data.send_status_from_server.status_details = &c->details;
		if (c->status_md_set) {
			op.data.send_status_from_server.trailing_metadata_count = 1;
			op.data.send_status_from_server.trailing_metadata = &c->status_md;
		}
		if (start_batch(c, OP_STATUS, &op, 1))
			set_state(c, C_DONE);
	}
}

/* ---- per method ---- */

/* Only in C_OPEN: in C_EOS_WAIT the stream has ended, and a receive after its end would come
 * back at once with another end of stream. */
static void post_recv(struct call *c)
{
	grpc_op op = { 0 };

	if (c->recv_busy || c->state != C_OPEN || !tv_segment_can_receive(c->seg))
		return;
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->recv_bb;
	if (start_batch(c, OP_RECV, &op, 1))
		finish(c, GRPC_STATUS_INTERNAL, "cannot start RECV_MESSAGE");
	else
		c->recv_busy = true;
}

/* ---- the segment's sink: how segment.c reaches the call ---- */

static void seg_ack(void *arg, uint64_t block_id, uint64_t offset)
{
	struct call *c = arg;
	struct msg_node *n;

	if (status_decided(c))
		return;
	/* coalesce: an ack still queued for this block just takes the newer offset */
	for (n = c->queue_head; n; n = n->next) {
		if (!n->bb && n->block_id == block_id) {
			n->offset = offset;
			return;
		}
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return; /* a later ack (or the commit reply) supersedes this one */
	n->block_id = block_id;
	n->offset = offset;
	if (c->queue_tail)
		c->queue_tail->next = n;
	else
		c->queue_head = n;
	c->queue_tail = n;
	pump(c);
}

static void seg_reply(void *arg, grpc_byte_buffer *bb)
{
	struct call *c = arg;

	if (status_decided(c)) {
		grpc_byte_buffer_destroy(bb);
		return;
	}
	enqueue(c, bb);
	pump(c);
}

static void seg_finish(void *arg, grpc_status_code code, const char *msg)
{
	finish(arg, code, msg);
}

static void seg_wake(void *arg)
{
	struct call *c = arg;

	c->active_at = gpr_now(GPR_CLOCK_MONOTONIC); /* the idle clock starts after our own I/O */
	post_recv(c);
	pump(c);
}

static const struct tv_segment_sink SEG_SINK = {
	.ack = seg_ack, .reply = seg_reply, .finish = seg_finish, .wake = seg_wake,
};

static void write_on_recv(struct call *c, int ok)
{
	grpc_byte_buffer *bb = c->recv_bb;

	c->recv_bb = NULL;
	c->recv_busy = false;
	if (c->state != C_OPEN || !ok) {
		/* not C_OPEN: the status is decided (no receive is posted in C_EOS_WAIT);
		 * !ok: the call broke (cancel, disconnect); RECV_CLOSE_ON_SERVER says which */
		if (bb)
			grpc_byte_buffer_destroy(bb);
		return;
	}
	if (!bb) {
		/* A client cancel also ends the message stream (ok, NULL) and RECV_CLOSE_ON_SERVER
		 * reports it just after; an error status sent first would hide it (cancelled is
		 * then set for any non-OK status). So wait briefly for the cancel before calling
		 * this a half-close without COMMIT: the log must say which it was. */
		c->eos_deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					       gpr_time_from_millis(TV_RPC_EOS_GRACE_MS, GPR_TIMESPAN));
		set_state(c, C_EOS_WAIT);
		return;
	}
	c->active_at = gpr_now(GPR_CLOCK_MONOTONIC);
	tv_segment_on_message(c->seg, bb);
	grpc_byte_buffer_destroy(bb); /* the segment holds refs on the slices it writes from */
	post_recv(c);
	pump(c);
}

/* Unpack the single request message of a unary-request call, or NULL (status decided). */
static ProtobufCMessage *unpack_payload(struct call *c, const ProtobufCMessageDescriptor *d)
{
	ProtobufCMessage *m;
	uint8_t *flat = NULL;
	size_t len = 0;
	char msg[128];

	if (!c->payload) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
		return NULL;
	}
	if (tv_wire_flatten(c->payload, c->srv->max_message_bytes, &flat, &len)) {
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot read request message");
		return NULL;
	}
	m = protobuf_c_message_unpack(d, NULL, len, flat);
	free(flat);
	if (!m) {
		snprintf(msg, sizeof(msg), "request is not a valid %s protobuf (%zu bytes)",
			 d->short_name, len);
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
	}
	return m;
}

/* Query and Stats take [from_ns, to_ns): from == to is an empty range, from > to a mistake
 * answered with INVALID_ARGUMENT (which finishes the call). */
static bool range_valid(struct call *c, uint64_t from_ns, uint64_t to_ns)
{
	char err[128];

	if (from_ns <= to_ns)
		return true;
	snprintf(err, sizeof(err), "from_ns %llu is after to_ns %llu",
		 (unsigned long long)from_ns, (unsigned long long)to_ns);
	finish(c, GRPC_STATUS_INVALID_ARGUMENT, err);
	return false;
}

static void query_begin(struct call *c)
{
	Tracevault__V1__QueryRequest *req;
	struct tv_query_params params;
	struct tv_filter *filter = NULL;
	char err[TV_QUERY_ERR_LEN] = "";
	int ret;

	c->query_mono_ns = tv_monotonic_ns();
	req = (Tracevault__V1__QueryRequest *)unpack_payload(
		c, &tracevault__v1__query_request__descriptor);
	if (!req)
		return;
	if (!range_valid(c, req->from_ns, req->to_ns))
		goto out;
	ret = tv_filter_compile(req->filter, &filter, err, sizeof(err));
	if (ret) {
		finish_errno(c, ret, err);
		goto out;
	}
	params = (struct tv_query_params){
		.from_ns = req->from_ns, .to_ns = req->to_ns, .limit = req->limit,
		.reverse = req->reverse,
		/* an older server ignores fields 4 and 5: the client needs to hear we did not */
		.features = (req->filter ? TV_QUERY_FEATURE_FILTER : 0) |
			    (req->reverse ? TV_QUERY_FEATURE_REVERSE : 0) |
			    (req->filter && (req->filter->kind || req->filter->n_services) ?
				     TV_QUERY_FEATURE_SPANS : 0),
	};
	ret = tv_query_new(&c->query, c->srv->catalog, c->srv->store, &c->srv->query_pool,
			   &params, filter, err, sizeof(err));
	if (ret) {
		finish(c, tv_status_from_errno(ret), err[0] ? err : strerror(-ret));
		goto out;
	}
	pump(c);
out:
	tracevault__v1__query_request__free_unpacked(req, NULL);
}

/* In-flight streams of a deleted segment lose their temp data and end ABORTED. Returns the
 * streams aborted; *removed gets the temp files they removed. */
static uint64_t abort_segment_streams(struct tv_rpc_server *srv, uint64_t segment_id,
				      uint64_t *removed)
{
	uint64_t n = 0;

	*removed = 0;
	for (struct call *w = srv->calls; w; w = w->next) {
		if (w->m != M_WRITE || !w->seg || status_decided(w) ||
		    tv_segment_id(w->seg) != segment_id || !tv_segment_is_open(w->seg))
			continue;
		*removed += tv_segment_abort(w->seg, "deleted by a Delete call");
		finish(w, GRPC_STATUS_ABORTED, "segment deleted by a Delete call");
		n++;
	}
	return n;
}

static void delete_begin(struct call *c)
{
	struct tv_rpc_server *srv = c->srv;
	Tracevault__V1__DeleteRequest *req;
	grpc_byte_buffer *bb = NULL;
	uint64_t temp_blocks = 0, streams = 0;
	grpc_status_code code;
	char msg[256];

	req = (Tracevault__V1__DeleteRequest *)unpack_payload(
		c, &tracevault__v1__delete_request__descriptor);
	if (!req)
		return;
	/* another writer's segment is refused before anything, its streams included, is touched */
	code = tv_delete_rpc_check(srv->catalog, req, msg, sizeof(msg));
	if (code != GRPC_STATUS_OK) {
		finish(c, code, msg);
		goto out;
	}
	if (req->segment_id)
		streams = abort_segment_streams(srv, req->segment_id, &temp_blocks);
	code = tv_delete_rpc_apply(srv->catalog, srv->store, &srv->metrics, srv->retention, req,
				   streams, temp_blocks, &bb, msg, sizeof(msg));
	if (code == GRPC_STATUS_OK)
		enqueue(c, bb);
	finish(c, code, msg);
out:
	tracevault__v1__delete_request__free_unpacked(req, NULL);
}

/* The Stats reply: the catalog's sums as a packed StatsResponse (*out owned by the caller). */
static int pack_stats(const struct tv_catalog_stats *st, grpc_byte_buffer **out)
{
	Tracevault__V1__StatsResponse r = TRACEVAULT__V1__STATS_RESPONSE__INIT;

	r.blocks = st->blocks;
	r.records = st->records;
	r.bytes = st->bytes;
	r.lost_ring_full = st->loss.ring_full;
	r.lost_map_full = st->loss.map_full;
	r.lost_parser = st->loss.parser;
	r.lost_cache = st->loss.cache;
	r.lost_failed = st->loss.failed;
	r.lost_requests = st->loss.requests;
	r.raw_bytes = st->raw_bytes;
	return tv_wire_pack(&r.base, out);
}

static void stats_begin(struct call *c)
{
	struct tv_catalog_stats st;
	Tracevault__V1__StatsRequest *req;
	grpc_byte_buffer *bb = NULL;
	char err[256];
	int ret;

	req = (Tracevault__V1__StatsRequest *)unpack_payload(
		c, &tracevault__v1__stats_request__descriptor);
	if (!req)
		return;
	if (!range_valid(c, req->from_ns, req->to_ns))
		goto out;
	ret = tv_catalog_stats(c->srv->catalog, req->from_ns, req->to_ns, &st);
	if (ret) {
		snprintf(err, sizeof(err), "catalog lookup failed: %s", strerror(-ret));
		finish(c, tv_status_from_errno(ret), err);
		goto out;
	}
	if (pack_stats(&st, &bb)) {
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory packing the reply");
		goto out;
	}
	enqueue(c, bb);
	finish(c, GRPC_STATUS_OK, "");
out:
	tracevault__v1__stats_request__free_unpacked(req, NULL);
}

/* A Summary counts in steps (a slice of its query each) taken from the runnable list like a
 * yielding Query's, so Write acks and other calls wait at most one slice for it. */
static void summary_begin(struct call *c)
{
	Tracevault__V1__SummaryRequest *req;
	char err[TV_QUERY_ERR_LEN] = "";
	int ret;

	req = (Tracevault__V1__SummaryRequest *)unpack_payload(
		c, &tracevault__v1__summary_request__descriptor);
	if (!req)
		return;
	ret = tv_summary_new(&c->summary, c->srv->catalog, c->srv->store, &c->srv->query_pool,
			     req, err, sizeof(err));
	tracevault__v1__summary_request__free_unpacked(req, NULL);
	if (ret) {
		c->summary = NULL;
		finish_errno(c, ret, err);
		return;
	}
	run_push(c->srv, c);
}

/* ---- OTLP Export: spans stored through a segment of their own (otlp_export.h) ---- */

/* Hand the segment the next Write requests while it can take them; each is freed once
 * taken (the segment holds its own refs on the slices it writes from). */
static void export_feed(struct call *c)
{
	grpc_byte_buffer *bb;

	while (c->state == C_OPEN && c->seg && tv_segment_is_open(c->seg) &&
	       tv_segment_can_receive(c->seg) && (bb = tv_otlp_write_next(&c->ow))) {
		c->ow.msgs[c->ow.next - 1] = NULL;
		tv_segment_on_message(c->seg, bb);
		grpc_byte_buffer_destroy(bb);
	}
}

/* The Export's reply (the spans stored, the refused counted), then OK. */
static void export_answer(struct call *c)
{
	struct tv_server_metrics *m = &c->srv->metrics;
	grpc_byte_buffer *bb = NULL;

	if (tv_otlp_pack_response(c->otlp_rejected, c->otlp_msg ? c->otlp_msg : "", &bb)) {
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory packing the reply");
		return;
	}
	tv_metric_add(&m->otlp_spans_accepted, c->otlp_accepted);
	tv_metric_add(&m->otlp_spans_rejected, c->otlp_rejected);
	enqueue(c, bb);
	finish(c, GRPC_STATUS_OK, "");
}

static void export_ack(void *arg, uint64_t block_id, uint64_t offset)
{
	(void)arg, (void)block_id, (void)offset; /* the block's progress: nobody waits on it */
}

static void export_reply(void *arg, grpc_byte_buffer *bb)
{
	struct call *c = arg;

	/* the only reply a segment sends us is COMMIT's (no FLUSH is fed): durable */
	grpc_byte_buffer_destroy(bb);
	c->otlp_committed = true;
}

static void export_finish(void *arg, grpc_status_code code, const char *msg)
{
	struct call *c = arg;
	char why[300];

	if (code == GRPC_STATUS_OK && c->otlp_committed) {
		export_answer(c);
		return;
	}
	snprintf(why, sizeof(why), "spans not stored: %s", msg);
	finish(c, code == GRPC_STATUS_OK ? GRPC_STATUS_INTERNAL : code, why);
}

static void export_wake(void *arg)
{
	struct call *c = arg;

	export_feed(c);
	pump(c);
}

static const struct tv_segment_sink EXPORT_SINK = {
	.ack = export_ack, .reply = export_reply, .finish = export_finish, .wake = export_wake,
};

/* RESOURCE_EXHAUSTED with the OTLP throttling hint: a google.rpc.RetryInfo in
 * grpc-status-details-bin (OTLP clients wait retry_delay, then send the request again). */
static void export_throttle(struct call *c, const char *msg)
{
	grpc_slice details;

	tv_metric_add(&c->srv->metrics.otlp_exports_throttled, 1);
	if (!tv_otlp_retry_details(msg, TV_OTLP_RETRY_DELAY_MS, &details)) {
		c->status_md.key = grpc_slice_from_static_string("grpc-status-details-bin");
		c->status_md.value = details;
		c->status_md_set = true;
	}
	finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
}

static void export_invalid(struct call *c, grpc_status_code code, const char *msg)
{
	tv_metric_add(&c->srv->metrics.otlp_exports_invalid, 1);
	finish(c, code, msg);
}

static void export_begin(struct call *c)
{
	struct tv_rpc_server *srv = c->srv;
	struct tv_otlp_spans spans;
	uint8_t *flat = NULL;
	size_t len = 0;
	char msg[300];
	int ret;

	c->export_mono_ns = tv_monotonic_ns();
	if (!c->payload) {
		export_invalid(c, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
		return;
	}
	len = grpc_byte_buffer_length(c->payload);
	if (len > srv->otlp_max_message_bytes) {
		snprintf(msg, sizeof(msg), "Export request of %zu bytes is above the server's "
			 "limit of %zu (--otlp-max-message-bytes): send smaller batches", len,
			 srv->otlp_max_message_bytes);
		export_invalid(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
		return;
	}
	/* one request is always taken when none is in progress, so no size can starve */
	if (srv->otlp_pending_bytes && srv->otlp_pending_bytes + len > srv->otlp_max_pending_bytes) {
		snprintf(msg, sizeof(msg), "server busy: %zu bytes of Export requests in progress, "
			 "the limit is %zu (--otlp-max-pending-bytes); retry after %u ms",
			 srv->otlp_pending_bytes, srv->otlp_max_pending_bytes,
			 TV_OTLP_RETRY_DELAY_MS);
		export_throttle(c, msg);
		return;
	}
	c->otlp_bytes = len;
	srv->otlp_pending_bytes += len;
	if (tv_wire_flatten(c->payload, srv->otlp_max_message_bytes, &flat, &len)) {
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot read request message");
		return;
	}
	grpc_byte_buffer_destroy(c->payload);
	c->payload = NULL;
	ret = tv_otlp_spans_decode(flat, len, &srv->otlp_limits, tv_realtime_ns(), &spans);
	free(flat);
	if (ret == -EBADMSG) {
		snprintf(msg, sizeof(msg), "request is not a valid ExportTraceServiceRequest "
			 "protobuf (%zu bytes)", len);
		tv_otlp_spans_free(&spans);
		export_invalid(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
		return;
	}
	if (ret) {
		tv_otlp_spans_free(&spans);
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory decoding the request");
		return;
	}
	if (spans.n)
		ret = tv_otlp_write_build(&spans, srv->max_message_bytes, &c->ow, msg,
					  sizeof(msg));
	c->otlp_rejected = spans.rejected;
	c->otlp_accepted = spans.received - spans.rejected;
	if (spans.rejected && !(c->otlp_msg = strdup(spans.reject_msg)))
		ret = -ENOMEM;
	tv_otlp_spans_free(&spans); /* the block is sealed: the records are not needed */
	if (ret) {
		finish(c, tv_status_from_errno(ret), ret == -ENOMEM ? "out of memory" : msg);
		return;
	}
	if (c->ow.n == 0) { /* no span to store */
		export_answer(c);
		return;
	}
	c->seg = tv_segment_new(srv->catalog, srv->store, srv->max_message_bytes, &EXPORT_SINK,
				c, &srv->seg_stats, &srv->commit_q);
	if (!c->seg) {
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	export_feed(c);
	pump(c);
}

/* ---- calls to unknown methods ---- */

/* path as text fit for a log line and a status message: printable ASCII as it is but '\\'
 * doubled, any other byte as \xHH; at most PATH_SHOWN_BYTES bytes of it, then "... (N bytes)"
 * when it is longer. out has PATH_TEXT_LEN bytes; returns out. */
static const char *path_text(grpc_slice path, char out[PATH_TEXT_LEN])
{
	const unsigned char *p = GRPC_SLICE_START_PTR(path);
	size_t len = GRPC_SLICE_LENGTH(path), shown = len < PATH_SHOWN_BYTES ? len :
								      PATH_SHOWN_BYTES;
	size_t o = 0;

	for (size_t i = 0; i < shown; i++) {
		if (p[i] == '\\') {
			out[o++] = '\\';
			out[o++] = '\\';
		} else if (p[i] >= 0x20 && p[i] < 0x7f) {
			out[o++] = (char)p[i];
		} else {
			o += (size_t)snprintf(out + o, PATH_TEXT_LEN - o, "\\x%02x", p[i]);
		}
	}
	if (shown < len)
		snprintf(out + o, PATH_TEXT_LEN - o, "... (%zu bytes)", len);
	else
		out[o] = '\0';
	return out;
}

/* The line for the unknown-method lines a window suppressed (none: nothing). */
static void unknown_log_report(uint64_t suppressed)
{
	if (suppressed)
		fprintf(stderr, "tracevaultd: %llu more calls to unknown methods answered "
			"UNIMPLEMENTED, not logged (at most %d lines per %d s)\n",
			(unsigned long long)suppressed, TV_GRPC_LOG_WINDOW_LINES,
			TV_GRPC_LOG_WINDOW_MS / 1000);
}

/* Report a window of unknown-method lines that has ended by now, or (force, at stop) the one
 * still open. */
static void unknown_log_expire(struct tv_rpc_server *srv, int force)
{
	uint64_t suppressed, unused;

	tv_log_limit_expire(&srv->unknown_log, tv_monotonic_ns(), force, &suppressed, &unused);
	unknown_log_report(suppressed);
}

/* UNIMPLEMENTED "unknown method PATH" for a call to a path no method has, as gRPC's C++ server
 * answers one (server_cc.cc, UnimplementedAsyncRequest): initial metadata (sent by call_begin
 * with the close op, whose return is what frees the call with the status's) and the status,
 * no message read. Logged within the rate limit. */
static void unknown_begin(struct call *c)
{
	struct tv_rpc_server *srv = c->srv;
	char path[PATH_TEXT_LEN], msg[PATH_TEXT_LEN + 32];
	uint64_t suppressed, unused;
	int admitted;

	snprintf(msg, sizeof(msg), "unknown method %s", path_text(c->details_in.method, path));
	admitted = tv_log_limit_admit(&srv->unknown_log, tv_monotonic_ns(), 0, &suppressed,
				      &unused);
	unknown_log_report(suppressed); /* the window before this line's, when one ended */
	if (admitted)
		fprintf(stderr, "call failed: UNIMPLEMENTED: %s\n", msg);
	finish(c, GRPC_STATUS_UNIMPLEMENTED, msg);
}

/* A Write or Query stream takes one of its method's slots and one of its peer's share of
 * them, or ends RESOURCE_EXHAUSTED naming the limit it met (true): its peer's share first,
 * so that a peer at its share learns that it is its own limit, whether or not the server's
 * is reached too (a share as large as the server's limit is no limit of its own: the
 * server's is named). Both are counted on this one thread, released in call_free. */
static bool over_stream_limit(struct call *c)
{
	struct tv_rpc_server *srv = c->srv;
	enum tv_peer_class pc = peer_class(c->m);
	char msg[200], who[TV_PEER_TEXT_LEN];
	const char *opt = c->m == M_WRITE ? "write" : "query";
	char *peer;
	unsigned held;
	int ret;

	if (!srv->max_streams[c->m])
		return false;
	peer = grpc_call_get_peer(c->call);
	if (tv_peer_parse(peer, &c->peer) && !srv->peer_unparsed_logged) {
		/* all such calls share one peer's share: fewer streams, never more */
		fprintf(stderr, "tracevaultd: peer address '%s' not understood: calls from such "
			"addresses share one peer's stream limits\n", peer ? peer : "(none)");
		srv->peer_unparsed_logged = true;
	}
	gpr_free(peer);
	held = tv_peers_held(srv->peers, &c->peer, pc);
	if (held >= tv_peers_per_peer(srv->peers, pc) &&
	    tv_peers_per_peer(srv->peers, pc) < srv->max_streams[c->m]) {
		tv_metric_add(&srv->metrics.streams_refused[pc][TV_REFUSED_PER_PEER], 1);
		snprintf(msg, sizeof(msg), "too many %s streams from peer %s: it holds %u, the "
			 "limit per peer (--max-%s-streams-per-peer)", METHOD_NAME[c->m],
			 tv_peer_format(&c->peer, who, sizeof(who)), held, opt);
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
		return true;
	}
	if (srv->streams[c->m] >= srv->max_streams[c->m]) {
		tv_metric_add(&srv->metrics.streams_refused[pc][TV_REFUSED_SERVER], 1);
		snprintf(msg, sizeof(msg), "too many %s streams: %u in progress, the server's "
			 "limit (--max-%s-streams)", METHOD_NAME[c->m], srv->streams[c->m], opt);
		finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
		return true;
	}
	/* within the server's limit the table has room (sized for it), and within the share */
	ret = tv_peers_acquire(srv->peers, &c->peer, pc, NULL);
	if (ret) {
		snprintf(msg, sizeof(msg), "cannot count the stream for its peer: %s",
			 strerror(-ret));
		finish(c, GRPC_STATUS_INTERNAL, msg);
		return true;
	}
	srv->streams[c->m]++;
	c->counted = true;
	return false;
}

static void call_begin(struct call *c)
{
	grpc_op ops[2] = { { 0 }, { 0 } };

	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[1].data.recv_close_on_server.cancelled = &c->cancelled;
	if (start_batch(c, OP_CLOSE, ops, 2)) {
		/* without the close op nothing tells us when the call ends: cancel it */
		grpc_call_cancel(c->call, NULL);
		set_state(c, C_DONE);
		return;
	}
	c->active_at = gpr_now(GPR_CLOCK_MONOTONIC);
	if (over_stream_limit(c))
		return;
	switch (c->m) {
	case M_WRITE:
		c->seg = tv_segment_new(c->srv->catalog, c->srv->store, c->srv->max_message_bytes,
					&SEG_SINK, c, &c->srv->seg_stats,
					&c->srv->commit_q);
		if (!c->seg)
			finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		else
			post_recv(c);
		break;
	case M_QUERY:
		query_begin(c);
		break;
	case M_STATS:
		stats_begin(c);
		break;
	case M_SUMMARY:
		summary_begin(c);
		break;
	case M_EXPORT:
		export_begin(c);
		break;
	case M_UNKNOWN:
		unknown_begin(c);
		break;
	default:
		delete_begin(c);
		break;
	}
}

static void on_event(struct tv_rpc_server *srv, struct tag *t, int ok)
{
	struct call *c = t->call;

	c->outstanding--;
	switch (t->op) {
	case OP_REQUEST:
		if (!ok) { /* server shutting down: the slot was never used */
			set_state(c, C_DONE);
			break;
		}
		set_state(c, C_OPEN);
		if (!srv->shutting_down)
			post_request(srv, c->m);
		call_begin(c);
		break;
	case OP_CLOSE:
		if (status_decided(c))
			break;
		if (c->cancelled) {
			if (c->seg)
				tv_segment_abort(c->seg, srv->shutting_down ? "server shutting down" :
									      "cancelled by client");
			finish(c, GRPC_STATUS_CANCELLED, "cancelled");
		}
		/* no cancel before our status: grpc reports a close then only as a cancel, so
		 * C_EOS_WAIT is left to its grace timer */
		break;
	case OP_RECV:
		write_on_recv(c, ok);
		break;
	case OP_SEND:
		grpc_byte_buffer_destroy(c->send_bb);
		c->send_bb = NULL;
		c->active_at = gpr_now(GPR_CLOCK_MONOTONIC);
		if (!ok) {
			/* The call is gone: no queued reply can reach it. Its status may have been
			 * decided already (a Stats or Delete reply is queued with its OK status):
			 * finish then does nothing, so pump below must still send that status, or
			 * the call never ends and SIGTERM waits for it forever. */
			drop_queue(c);
			finish(c, GRPC_STATUS_CANCELLED, "send failed: call is gone");
		}
		pump(c);
		break;
	case OP_STATUS:
		set_state(c, C_DONE);
		break;
	default:
		break;
	}
	if (c->outstanding == 0 && c->state == C_DONE)
		call_free(c);
}

/* ---- server ---- */


/* The port's credentials: insecure, or gRPC's own TLS from the checked PEM strings (gRPC
 * copies them). The client-certificate policy: none asked without a CA; with one, asked
 * and verified when given, or required too. NULL when gRPC cannot make them. */
static grpc_server_credentials *server_credentials(const struct tv_rpc_server_opts *o)
{
	grpc_ssl_pem_key_cert_pair pair;
	grpc_ssl_client_certificate_request_type req;

	if (!o->tls || !o->tls->cert)
		return grpc_insecure_server_credentials_create();
	pair.private_key = o->tls->key;
	pair.cert_chain = o->tls->cert;
	req = !o->tls->ca ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE :
	      o->require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY :
				       GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
	return grpc_ssl_server_credentials_create_ex(o->tls->ca, &pair, 1, req, NULL);
}

/* grpc does not say why a bind failed: try it ourselves to get an errno for the message. */
static const char *bind_error(const char *addr, char *buf, size_t len)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int fd, rc;

	snprintf(buf, len, "address unusable");
	if (!colon || (size_t)(colon - addr) >= sizeof(host))
		return buf;
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc) {
		snprintf(buf, len, "%s", gai_strerror(rc));
		return buf;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		if (bind(fd, res->ai_addr, res->ai_addrlen))
			snprintf(buf, len, "%s", strerror(errno));
		close(fd);
	}
	freeaddrinfo(res);
	return buf;
}

int tv_rpc_server_start(struct tv_rpc_server **out, const struct tv_rpc_server_opts *o,
			struct tv_catalog *c, struct tv_store *s, int *bound_port, char *err,
			size_t errlen)
{
	static const char *const paths[M_UNKNOWN] = { TV_METHOD_WRITE, TV_METHOD_QUERY,
						      TV_METHOD_DELETE, TV_METHOD_STATS,
						      TV_METHOD_SUMMARY, TV_METHOD_OTLP_EXPORT };
	grpc_arg args[5];
	grpc_channel_args ch_args = { .num_args = 5, .args = args };
	unsigned per_conn;
	grpc_server_credentials *creds;
	struct tv_rpc_server *srv;
	char why[128];
	int port;

	*out = NULL;
	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	srv->catalog = c;
	srv->store = s;
	srv->max_message_bytes = o->max_message_bytes;
	srv->otlp_max_message_bytes = o->otlp_max_message_bytes ? o->otlp_max_message_bytes :
							      TV_OTLP_DEFAULT_MAX_MESSAGE_BYTES;
	srv->otlp_max_pending_bytes = o->otlp_max_pending_bytes ? o->otlp_max_pending_bytes :
							      TV_OTLP_DEFAULT_MAX_PENDING_BYTES;
	srv->otlp_limits = o->otlp_limits;
	if (!srv->otlp_limits.max_attribute_bytes)
		srv->otlp_limits = (struct tv_otlp_limits){
			.max_attributes = TV_OTLP_DEFAULT_MAX_ATTRIBUTES,
			.max_attribute_bytes = TV_OTLP_DEFAULT_MAX_ATTRIBUTE_BYTES,
			.max_future_skew_ns = TV_OTLP_DEFAULT_MAX_FUTURE_SKEW_NS,
		};
	tv_query_pool_init(&srv->query_pool, o->query_memory_bytes, o->query_total_memory_bytes);
	if (o->query_open_blocks)
		srv->query_pool.max_open_blocks = o->query_open_blocks;
	srv->query_pool.evict = o->evict;
	srv->commit_q.new_oldest_ts_ns = UINT64_MAX;
	if (tv_retention_new(&srv->retention, &o->retention, c, s, &srv->query_pool, err,
			     errlen)) {
		free(srv);
		return -EIO;
	}
	{
		struct tv_server_metrics_ext ext = {
			.quarantined_blocks = tv_store_quarantined_blocks(s),
			.tls_handshake_failures = tv_grpc_log_tls_handshake_failures(),
			.under = o->under_stats,
			.evict = o->evict_stats,
		};

		tv_retention_counters(srv->retention, &ext.retention_segments,
				      &ext.retention_blocks, &ext.retention_bytes);
		tv_server_metrics_init(&srv->metrics, tv_store_dir_fd(s), &ext);
		srv->seg_stats.metrics = &srv->metrics;
		srv->seg_stats.under = o->under;
		srv->seg_stats.under_async = o->under && tv_persist_is_async(o->under);
		srv->seg_stats.under_must_cache = o->under && tv_persist_is_must_cache(o->under);
		srv->under = o->under;
		tv_retention_set_under(srv->retention, o->under);
		refresh_stored(srv);
	}
	/* the under-store's journal: what the last run left (objects of segments never
	 * acknowledged, deletes not confirmed, uploads queued), before anything is served */
	if (o->under && tv_under_journal_start(o->under, c, s, err, errlen)) {
		tv_retention_free(srv->retention);
		free(srv);
		return -EIO;
	}
	srv->shutdown_tag.op = OP_SHUTDOWN;
	srv->max_streams[M_WRITE] = o->max_write_streams ? o->max_write_streams :
							   TV_RPC_DEFAULT_MAX_WRITE_STREAMS;
	srv->max_streams[M_QUERY] = o->max_query_streams ? o->max_query_streams :
							   TV_RPC_DEFAULT_MAX_QUERY_STREAMS;
	srv->idle_timeout_ms = o->idle_timeout_ms ? o->idle_timeout_ms :
						    TV_RPC_DEFAULT_IDLE_TIMEOUT_MS;
	{
		const unsigned max[TV_PEER_CLASSES] = { srv->max_streams[M_WRITE],
							srv->max_streams[M_QUERY] };
		const unsigned share[TV_PEER_CLASSES] = {
			tv_peers_limit(o->max_write_streams_per_peer, max[TV_PEER_WRITE]),
			tv_peers_limit(o->max_query_streams_per_peer, max[TV_PEER_QUERY]),
		};

		if (tv_peers_new(&srv->peers, max, share)) {
			snprintf(err, errlen, "out of memory for the per-peer stream table");
			tv_retention_free(srv->retention);
			free(srv);
			return -ENOMEM;
		}
		fprintf(stderr, "tracevaultd: each peer (an IPv4 address, an IPv6 /64) holds at "
			"most %u of the %u Write and %u of the %u Query streams\n",
			share[TV_PEER_WRITE], max[TV_PEER_WRITE], share[TV_PEER_QUERY],
			max[TV_PEER_QUERY]);
	}
	per_conn = o->max_streams_per_connection;
	if (!per_conn) {
		per_conn = srv->max_streams[M_WRITE] / 2;
		if (per_conn > TV_RPC_DEFAULT_STREAMS_PER_CONNECTION)
			per_conn = TV_RPC_DEFAULT_STREAMS_PER_CONNECTION;
		if (per_conn == 0)
			per_conn = 1;
	}
	args[0] = tv_grpc_int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)o->max_message_bytes);
	/* a Query batch may pass a small receive limit (TV_QUERY_MAX_MESSAGE_BYTES) */
	args[1] = tv_grpc_int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
				  (int)(o->max_message_bytes > TV_QUERY_MAX_MESSAGE_BYTES ?
						o->max_message_bytes : TV_QUERY_MAX_MESSAGE_BYTES));
	/* with SO_REUSEPORT a second server could silently share our port */
	args[2] = tv_grpc_int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0);
	args[3] = tv_grpc_int_arg(GRPC_ARG_MAX_CONCURRENT_STREAMS, (int)per_conn);
	/* a connection without calls holds a descriptor for nothing */
	args[4] = tv_grpc_int_arg(GRPC_ARG_MAX_CONNECTION_IDLE_MS, (int)srv->idle_timeout_ms);
	srv->server = grpc_server_create(&ch_args, NULL);
	srv->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
	for (int m = 0; m < M_UNKNOWN; m++) {
		srv->method[m] = grpc_server_register_method(
			srv->server, paths[m], NULL,
			m == M_WRITE ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
			0);
		if (!srv->method[m]) {
			snprintf(err, errlen, "cannot register method %s", paths[m]);
			goto fail;
		}
	}
	creds = server_credentials(o);
	if (!creds) {
		snprintf(err, errlen, "gRPC refused the TLS credentials of --tls-cert/--tls-key");
		goto fail;
	}
	port = grpc_server_add_http2_port(srv->server, o->listen_addr, creds);
	grpc_server_credentials_release(creds);
	if (port <= 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", o->listen_addr,
			 bind_error(o->listen_addr, why, sizeof(why)));
		goto fail;
	}
	*bound_port = port;
	/* the HTTP API's own socket: plaintext, reachable by this user only (local_rpc.h) */
	if (o->local_addr) {
		creds = grpc_insecure_server_credentials_create();
		port = grpc_server_add_http2_port(srv->server, o->local_addr, creds);
		grpc_server_credentials_release(creds);
		if (port <= 0) {
			snprintf(err, errlen, "cannot listen on %s", o->local_addr);
			goto fail;
		}
	}
	grpc_server_start(srv->server);
	/* one request per method, M_UNKNOWN's too: each is posted again when its call comes */
	for (int m = 0; m < M_COUNT; m++)
		post_request(srv, (enum method)m);
	*out = srv;
	return 0;
fail:
	/* never started: no calls exist, destroy directly */
	tv_retention_free(srv->retention);
	grpc_server_destroy(srv->server);
	tv_grpc_cq_destroy(srv->cq); /* every tag was delivered: the server is destroyed */
	tv_peers_free(srv->peers);
	free(srv);
	return -EADDRNOTAVAIL;
}

/* Streams whose end was seen and no cancel followed within the grace time: half-closes. */
static void eos_expire(struct tv_rpc_server *srv)
{
	gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);

	for (struct call *c = srv->calls; c && srv->eos_waiting; c = c->next) {
		if (c->state != C_EOS_WAIT || gpr_time_cmp(now, c->eos_deadline) < 0)
			continue;
		/* on_end decides the status, which leaves C_EOS_WAIT: it aborts the segment, and a
		 * committed one finished the call at COMMIT, before any end of stream */
		tv_segment_on_end(c->seg);
	}
}

/* Whether the call waits on its client rather than on us: a Write stream with a receive posted
 * and none of its own I/O in flight (a client that sends nothing), or any call with a reply
 * that the transport has not taken (a client that reads nothing). active_at is when the
 * client last made progress: the call began, a message came, a reply went, our I/O ended. */
static bool waits_on_client(const struct call *c)
{
	if (c->send_bb)
		return true;
	return c->m == M_WRITE && c->state == C_OPEN && c->recv_busy && c->seg &&
	       !tv_segment_busy(c->seg);
}

/* End a call idle past the timeout. A Write stream's open segment is aborted (temp files
 * removed, logged) and the stream ends DEADLINE_EXCEEDED; a reply the client does not take
 * can only be cut by cancelling the call, whose pending ops then come back failed and free it
 * (the path of test_calls_cancelled_mid_reply_let_the_server_stop). */
static void idle_end(struct call *c)
{
	struct tv_rpc_server *srv = c->srv;
	char msg[200];

	c->idle_ended = true;
	if (c->m == M_WRITE && c->seg && tv_segment_id(c->seg))
		snprintf(msg, sizeof(msg), "segment %016llx: no request for %u ms, the server's "
			 "idle limit (--idle-timeout-ms): segment discarded",
			 (unsigned long long)tv_segment_id(c->seg), srv->idle_timeout_ms);
	else
		snprintf(msg, sizeof(msg), "%s call idle for %u ms, the server's idle limit "
			 "(--idle-timeout-ms)%s", METHOD_NAME[c->m], srv->idle_timeout_ms,
			 c->send_bb ? ": the client took no reply" : "");
	if (c->seg && tv_segment_is_open(c->seg))
		tv_segment_abort(c->seg, "idle past --idle-timeout-ms");
	if (status_decided(c))
		fprintf(stderr, "%s cancelled: %s\n", METHOD_NAME[c->m], msg);
	finish(c, GRPC_STATUS_DEADLINE_EXCEEDED, msg); /* logs it when not decided yet */
	if (c->send_bb)
		grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED, msg, NULL);
}

static void idle_expire(struct tv_rpc_server *srv)
{
	gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
	gpr_timespec idle = gpr_time_from_millis(srv->idle_timeout_ms, GPR_TIMESPAN);

	if (gpr_time_cmp(now, srv->next_idle_scan) < 0)
		return;
	srv->next_idle_scan = gpr_time_add(now, gpr_time_from_millis(TV_RPC_IDLE_SCAN_MS,
								      GPR_TIMESPAN));
	refresh_stored(srv); /* Delete, retention and quarantine change them too */
	tv_grpc_log_tick(0); /* a burst of gRPC log lines suppressed: say so once it ended */
	unknown_log_expire(srv, 0); /* and of unknown-method lines */
	for (struct call *c = srv->calls, *next; c; c = next) {
		next = c->next; /* idle_end does not free c (its ops are still out), but be safe */
		if (c->state == C_REQUESTED || c->state == C_DONE || c->idle_ended ||
		    !waits_on_client(c) || gpr_time_cmp(gpr_time_sub(now, c->active_at), idle) < 0)
			continue;
		idle_end(c);
	}
}

/* One thread serves both queues: gRPC's completion queue and the store's io_uring. Neither can
 * block on the other's events (grpc C core has no public way to watch a foreign fd or to be
 * woken by another thread, and its deadlines have millisecond resolution), so:
 *  - after every gRPC event the ring is reaped without blocking, which keeps acks prompt
 *    while messages stream in;
 *  - when no gRPC event is ready and I/O is in flight, the thread polls gRPC without blocking
 *    and then waits in io_uring for up to TV_RPC_IO_WAIT_US: a completion wakes it at once,
 *    and gRPC is looked at again within that bound;
 *  - with no I/O in flight it simply blocks in gRPC (TV_RPC_POLL_MS, for the stop flag);
 *  - a query runs in slices (server/query.h): one that yielded waits on the runnable list,
 *    and while any does, gRPC is polled without blocking and one query slice runs after
 *    each event or empty poll, round-robin, so Write acks wait at most one slice.
 * A second thread for completions would need a lock around every call and segment; the
 * polling costs a few wake-ups per write instead. */
/* Watch the under-store's eventfd in the store's ring while any persist is outstanding: the
 * loop then counts it as I/O in flight and waits in io_uring, where the worker's result wakes
 * it at once; with none outstanding nothing is armed and the loop blocks in gRPC as before. */
static void under_arm(struct tv_rpc_server *srv);

static void under_polled(struct tv_store_op *op, int res)
{
	struct tv_rpc_server *srv =
		(struct tv_rpc_server *)((char *)op - offsetof(struct tv_rpc_server, under_poll));

	srv->under_armed = 0;
	if (res < 0)
		fprintf(stderr, "tracevaultd: under-store: poll of its eventfd: %s\n",
			strerror(-res));
	tv_persist_reap(srv->under); /* done callbacks: segments queue for commit, or fail */
	srv->commit_q.blocked = 0; /* async-through: uploads may have made room */
	under_arm(srv);
}

static void under_arm(struct tv_rpc_server *srv)
{
	int ret;

	if (srv->under) /* confirmed deletes: their journal rows go (cheap when none) */
		tv_persist_settle(srv->under);
	if (!srv->under || srv->under_armed || !tv_persist_outstanding(srv->under))
		return;
	srv->under_poll.done = under_polled;
	ret = tv_store_submit_poll(srv->store, tv_persist_event_fd(srv->under), &srv->under_poll);
	if (ret) { /* the ring is full: reaped at the next turn of the loop instead */
		tv_persist_reap(srv->under);
		srv->commit_q.blocked = 0;
		return;
	}
	srv->under_armed = 1;
}

/* How long the loop blocks in gRPC while the under-store's eventfd poll is its only I/O:
 * TV_RPC_UNDER_WAIT_MS when a COMMIT waits on the result (a cache-through persist, or room in
 * async-through's queue), else TV_RPC_UNDER_ASYNC_WAIT_MS. */
static long under_wait_ms(const struct tv_rpc_server *srv)
{
	int waited_on = srv->commit_q.blocked ||
			tv_persist_outstanding(srv->under) > tv_persist_unpersisted(srv->under);

	return waited_on ? TV_RPC_UNDER_WAIT_MS : TV_RPC_UNDER_ASYNC_WAIT_MS;
}

/* Segments wait in the commit queue, and not only for room in async-through's upload queue
 * (a finished upload clears blocked: under_polled; with no upload outstanding there is room
 * whatever blocked says, e.g. when the members of the group that filled it failed). */
static int commit_ready(const struct tv_rpc_server *srv)
{
	return srv->commit_q.n && (!srv->commit_q.blocked || !srv->under ||
				   !tv_persist_outstanding(srv->under));
}

/* Commit the waiting segments as one group, then reap what the syncs let complete. */
static void run_commit_group(struct tv_rpc_server *srv)
{
	srv->events_since_queued = 0;
	tv_segment_commit_group(&srv->commit_q);
	tv_store_reap(srv->store, 0);
	refresh_stored(srv);
	/* after each group: O(1) unless a retention limit is now crossed */
	if (srv->commit_q.new_segments) {
		tv_retention_committed(srv->retention, srv->commit_q.new_oldest_ts_ns);
		srv->commit_q.new_segments = 0;
		srv->commit_q.new_oldest_ts_ns = UINT64_MAX;
		/* then --local-bytes: O(1) unless the local files are above it */
		if (srv->query_pool.evict)
			tv_evict_pass(srv->query_pool.evict);
	}
}

/* The next slice of the first runnable query; it goes to the back of the list if it yields
 * again. */
static void run_one(struct tv_rpc_server *srv)
{
	struct call *c = srv->run_head;

	run_unlink(srv, c);
	pump(c); /* query_produce when it may send */
}

int tv_rpc_server_run(struct tv_rpc_server *srv, volatile sig_atomic_t *stop)
{
	while (!(srv->shutdown_done && srv->live == 0)) {
		gpr_timespec deadline;
		grpc_event ev;
		struct tag *t;
		int io, under_only;

		under_arm(srv); /* a segment may have started a persist since the last turn */
		io = tv_store_inflight(srv->store) > 0;

		if (*stop && !srv->shutting_down) {
			srv->shutting_down = 1;
			grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->shutdown_tag);
			grpc_server_cancel_all_calls(srv->server);
		}
		if (srv->eos_waiting)
			eos_expire(srv);
		idle_expire(srv);
		if (!srv->shutting_down)
			tv_retention_tick(srv->retention);
		/* a waiting commit group runs as soon as no gRPC event is ready (below); so does
		 * the next slice of a runnable query */
		/* the only I/O in flight is the under-store's eventfd poll: S3 calls take
		 * milliseconds, so block in gRPC for TV_RPC_UNDER_WAIT_MS rather than spin between
		 * gRPC and a 50 us wait in io_uring for the whole of an upload */
		under_only = io && srv->under_armed && tv_store_inflight(srv->store) == 1;
		deadline = (io && !under_only) || commit_ready(srv) || srv->run_head ||
				   tv_retention_due(srv->retention) ?
				gpr_inf_past(GPR_CLOCK_MONOTONIC) :
				gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					     gpr_time_from_millis(under_only ? under_wait_ms(srv) :
								  srv->eos_waiting ? 1 :
								  TV_RPC_POLL_MS, GPR_TIMESPAN));
		ev = grpc_completion_queue_next(srv->cq, deadline, NULL);
		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			if (commit_ready(srv)) {
				run_commit_group(srv);
				continue;
			}
			tv_store_reap(srv->store, io && !srv->run_head ? TV_RPC_IO_WAIT_US : 0);
			if (srv->run_head)
				run_one(srv);
			continue;
		}
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		t = ev.tag;
		if (t == &srv->shutdown_tag)
			srv->shutdown_done = 1;
		else
			on_event(srv, t, ev.success);
		tv_store_reap(srv->store, 0);
		/* under a steady stream of events the queue still gets its turn */
		if (commit_ready(srv) && ++srv->events_since_queued >= TV_RPC_GROUP_MAX_EVENTS)
			run_commit_group(srv);
		/* one slice per event: a stream of events cannot starve the queries, nor a long
		 * query the events (each waits at most one slice, TV_QUERY_SLICE_NS) */
		if (srv->run_head)
			run_one(srv);
	}
	/* writes of streams already freed complete into unlinked files, persists of segments
	 * already given up into S3 (then deleted): wait for them; async-through's uploads not
	 * started are given up (their segments stay queued in the journal for the next start) */
	if (srv->under)
		tv_persist_stop_async(srv->under);
	under_arm(srv);
	while (tv_store_inflight(srv->store))
		tv_store_reap(srv->store, TV_RPC_POLL_MS * 1000L);
	if (!srv->stopped)
		unknown_log_expire(srv, 1);
	if (!srv->stopped && srv->commit_q.groups)
		fprintf(stderr, "tracevaultd: group commit: %llu segments in %llu groups, largest "
			"%llu\n", (unsigned long long)srv->commit_q.segments,
			(unsigned long long)srv->commit_q.groups,
			(unsigned long long)srv->commit_q.largest);
	if (!srv->stopped)
		fprintf(stderr, "tracevaultd: receive path: %llu zero-copy chunks, %llu chunks "
			"via protobuf-c, payload bytes copied: %llu\n",
			(unsigned long long)srv->seg_stats.zero_copy_chunks,
			(unsigned long long)srv->seg_stats.fallback_chunks,
			(unsigned long long)srv->seg_stats.payload_bytes_copied);
	srv->stopped = 1;
	return 0;
}

const struct tv_metrics *tv_rpc_server_metrics(const struct tv_rpc_server *srv)
{
	return &srv->metrics.reg;
}

void tv_rpc_server_free(struct tv_rpc_server *srv)
{
	if (!srv)
		return;
	if (!srv->stopped) {
		volatile sig_atomic_t stop = 1;

		tv_rpc_server_run(srv, &stop);
	}
	grpc_server_destroy(srv->server);
	tv_grpc_cq_destroy(srv->cq); /* every tag was delivered: the server is destroyed */
	tv_retention_free(srv->retention); /* every query has ended: what waits goes now */
	tv_peers_free(srv->peers);
	free(srv);
}
