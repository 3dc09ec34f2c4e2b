/* The HTTP API's gRPC client of its own server (local_rpc.h): a Query (server streaming),
 * Summary or Export (unary) call over the private unix socket, on grpc C core's completion-queue API
 * with a queue per call (one batch in flight at a time), so any number of HTTP threads call
 * at once. */
#include "server/local_rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/grpc_util.h"
#include "proto/wire.h"

#define SOCK_NAME "grpc.sock"

int tv_local_rpc_dir_new(struct tv_local_rpc_dir *d, char *err, size_t errlen)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/tracevaultd-http.XXXXXX");
	if (!mkdtemp(d->dir)) { /* mode 0700: only this user reaches the socket */
		int ret = -errno;

		snprintf(err, errlen, "cannot make the HTTP API's socket directory %s: %s", d->dir,
			 strerror(-ret));
		d->dir[0] = '\0';
		return ret;
	}
	snprintf(d->addr, sizeof(d->addr), "unix:%s/" SOCK_NAME, d->dir);
	return 0;
}

void tv_local_rpc_dir_free(struct tv_local_rpc_dir *d)
{
	char path[sizeof(d->dir) + sizeof(SOCK_NAME) + 1];

	if (!d->dir[0])
		return;
	snprintf(path, sizeof(path), "%s/" SOCK_NAME, d->dir);
	unlink(path);
	rmdir(d->dir);
	d->dir[0] = '\0';
}

struct tv_local_rpc {
	grpc_channel *ch;
};

int tv_local_rpc_new(struct tv_local_rpc **out, const char *target, size_t max_message_bytes)
{
	grpc_arg args[1];
	grpc_channel_args ch_args = { .num_args = 1, .args = args };
	grpc_channel_credentials *creds;
	struct tv_local_rpc *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return -ENOMEM;
	args[0] = tv_grpc_int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)max_message_bytes);
	creds = grpc_insecure_credentials_create();
	c->ch = grpc_channel_create(target, creds, &ch_args);
	grpc_channel_credentials_release(creds);
	if (!c->ch) {
		free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

void tv_local_rpc_free(struct tv_local_rpc *c)
{
	if (!c)
		return;
	grpc_channel_destroy(c->ch);
	free(c);
}

/* One call's state. */
struct call {
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status;
	grpc_slice details;
	int tag; /* one op batch in flight at a time: its tag is &tag */
};

/* Wait for the batch in flight (one at a time per call). 0 or -EIO. */
static int wait_batch(struct call *c)
{
	grpc_event ev = grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
						   NULL);

	return ev.type == GRPC_OP_COMPLETE && ev.tag == &c->tag && ev.success ? 0 : -EIO;
}

static void start(struct call *c, struct tv_local_rpc *rpc, const char *method,
		 const void *req, size_t len, unsigned timeout_ms)
{
	grpc_slice m = grpc_slice_from_static_string(method);
	grpc_slice body = grpc_slice_from_copied_buffer(req, len);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&body, 1);
	grpc_op ops[3];

	grpc_slice_unref(body);
	memset(ops, 0, sizeof(ops));
	c->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_metadata_array_init(&c->init_md);
	grpc_metadata_array_init(&c->trail_md);
	c->details = grpc_empty_slice();
	c->call = grpc_channel_create_call(rpc->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, m, NULL,
					   gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
							gpr_time_from_millis(timeout_ms,
									     GPR_TIMESPAN)),
					   NULL);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	/* a failed send still ends with a status: finish reads it */
	if (grpc_call_start_batch(c->call, ops, 3, &c->tag, NULL) == GRPC_CALL_OK)
		(void)wait_batch(c);
	grpc_byte_buffer_destroy(bb);
}

/* The next message into *buf (malloc'd, *len bytes), or 0 with *buf NULL at the stream's
 * end. -EIO when the batch failed. */
static int recv_message(struct call *c, uint8_t **buf, size_t *len, int first)
{
	grpc_byte_buffer *bb = NULL;
	grpc_op ops[2];
	grpc_byte_buffer_reader rd;
	grpc_slice s;
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	if (first) {
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n++].data.recv_initial_metadata.recv_initial_metadata = &c->init_md;
	}
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n++].data.recv_message.recv_message = &bb;
	*buf = NULL;
	*len = 0;
	if (grpc_call_start_batch(c->call, ops, n, &c->tag, NULL) != GRPC_CALL_OK ||
	    wait_batch(c))
		return -EIO;
	if (!bb)
		return 0;
	if (!grpc_byte_buffer_reader_init(&rd, bb)) {
		grpc_byte_buffer_destroy(bb);
		return -EIO;
	}
	s = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	grpc_byte_buffer_destroy(bb);
	*len = GRPC_SLICE_LENGTH(s);
	*buf = malloc(*len ? *len : 1);
	if (*buf)
		memcpy(*buf, GRPC_SLICE_START_PTR(s), *len);
	grpc_slice_unref(s);
	return *buf ? 0 : -ENOMEM;
}

/* Receive the call's status into c->status, c->details and c->trail_md (cancelled first
 * when ret is set). */
static void recv_status(struct call *c, int ret)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &c->trail_md;
	op.data.recv_status_on_client.status = &c->status;
	op.data.recv_status_on_client.status_details = &c->details;
	if (ret)
		grpc_call_cancel(c->call, NULL);
	if (grpc_call_start_batch(c->call, &op, 1, &c->tag, NULL) != GRPC_CALL_OK ||
	    wait_batch(c))
		c->status = GRPC_STATUS_INTERNAL;
}

/* The call and its queue freed. */
static void call_free(struct call *c)
{
	grpc_slice_unref(c->details);
	grpc_metadata_array_destroy(&c->init_md);
	grpc_metadata_array_destroy(&c->trail_md);
	grpc_call_unref(c->call);
	tv_grpc_cq_destroy(c->cq);
}

/* The call's status into a return value and err; the call and queue freed. */
static int finish(struct call *c, int ret, char *err, size_t errlen)
{
	char *details;

	recv_status(c, ret);
	details = grpc_slice_to_c_string(c->details);
	if (!ret && c->status != GRPC_STATUS_OK && c->status != GRPC_STATUS_DATA_LOSS) {
		snprintf(err, errlen, "%s: %s", tv_grpc_status_name(c->status), details);
		ret = c->status == GRPC_STATUS_DEADLINE_EXCEEDED ? -ETIMEDOUT :
		      c->status == GRPC_STATUS_INVALID_ARGUMENT ? -EINVAL :
		      c->status == GRPC_STATUS_RESOURCE_EXHAUSTED ? -ENOBUFS : -EIO;
	}
	gpr_free(details);
	call_free(c);
	return ret;
}

int tv_local_query(struct tv_local_rpc *rpc, const Tracevault__V1__QueryRequest *req,
		   unsigned timeout_ms, tv_local_record_cb cb, void *arg, uint64_t *skipped,
		   char *err, size_t errlen)
{
	struct call c = { 0 };
	size_t len = tracevault__v1__query_request__get_packed_size(req);
	uint8_t *buf = malloc(len ? len : 1);
	int ret = 0;

	*skipped = 0;
	if (!buf)
		return -ENOMEM;
	tracevault__v1__query_request__pack(req, buf);
	start(&c, rpc, TV_METHOD_QUERY, buf, len, timeout_ms);
	free(buf);
	for (int first = 1;; first = 0) {
		Tracevault__V1__QueryResponse *m;
		uint8_t *msg;
		size_t n;

		if (recv_message(&c, &msg, &n, first) || !msg)
			break; /* the end, or a failure the status names */
		m = tracevault__v1__query_response__unpack(NULL, n, msg);
		free(msg);
		if (!m) {
			snprintf(err, errlen, "a QueryResponse that does not parse");
			ret = -EIO;
			break;
		}
		*skipped += m->n_skipped;
		for (size_t i = 0; i < m->n_records && !ret; i++)
			ret = cb(m->records[i], arg);
		tracevault__v1__query_response__free_unpacked(m, NULL);
		if (ret)
			break;
	}
	return finish(&c, ret, err, errlen);
}

int tv_local_summary(struct tv_local_rpc *rpc, const Tracevault__V1__SummaryRequest *req,
		     unsigned timeout_ms, Tracevault__V1__SummaryResponse **out, char *err,
		     size_t errlen)
{
	struct call c = { 0 };
	size_t len = tracevault__v1__summary_request__get_packed_size(req);
	uint8_t *buf = malloc(len ? len : 1), *msg = NULL;
	size_t n;
	int ret = 0;

	*out = NULL;
	if (!buf)
		return -ENOMEM;
	tracevault__v1__summary_request__pack(req, buf);
	start(&c, rpc, TV_METHOD_SUMMARY, buf, len, timeout_ms);
	free(buf);
	if (!recv_message(&c, &msg, &n, 1) && msg) {
		*out = tracevault__v1__summary_response__unpack(NULL, n, msg);
		free(msg);
		if (!*out) {
			snprintf(err, errlen, "a SummaryResponse that does not parse");
			ret = -EIO;
		}
	}
	ret = finish(&c, ret, err, errlen);
	if (!ret && !*out) {
		snprintf(err, errlen, "Summary answered no message");
		ret = -EIO;
	}
	if (ret && *out) {
		tracevault__v1__summary_response__free_unpacked(*out, NULL);
		*out = NULL;
	}
	return ret;
}

int tv_local_export(struct tv_local_rpc *rpc, const void *req, size_t len, unsigned timeout_ms,
		    struct tv_local_export_status *st)
{
	struct call c = { 0 };
	char *details;
	int ret;

	memset(st, 0, sizeof(*st));
	start(&c, rpc, TV_METHOD_OTLP_EXPORT, req, len, timeout_ms);
	ret = recv_message(&c, &st->reply, &st->reply_len, 1);
	recv_status(&c, 0); /* a failed receive: the status says why */
	st->code = c.status;
	details = grpc_slice_to_c_string(c.details);
	snprintf(st->message, sizeof(st->message), "%s", details);
	gpr_free(details);
	for (size_t i = 0; i < c.trail_md.count && ret != -ENOMEM; i++) {
		const grpc_metadata *md = &c.trail_md.metadata[i];
		size_t n = GRPC_SLICE_LENGTH(md->value);

		if (grpc_slice_str_cmp(md->key, "grpc-status-details-bin") || st->details)
			continue;
		st->details = malloc(n ? n : 1);
		if (!st->details) {
			ret = -ENOMEM;
			break;
		}
		memcpy(st->details, GRPC_SLICE_START_PTR(md->value), n);
		st->details_len = n;
	}
	call_free(&c);
	if (ret == -ENOMEM) {
		tv_local_export_status_free(st);
		return ret;
	}
	if (st->code == GRPC_STATUS_OK && !st->reply) {
		st->code = GRPC_STATUS_INTERNAL;
		snprintf(st->message, sizeof(st->message), "Export answered OK without a reply");
	}
	return 0;
}

void tv_local_export_status_free(struct tv_local_export_status *st)
{
	free(st->details);
	free(st->reply);
	memset(st, 0, sizeof(*st));
}
