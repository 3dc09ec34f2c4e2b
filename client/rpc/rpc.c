/* gRPC C-core helpers for the client: every rpc we make goes through a channel built here and
 * waits on a completion queue with a bounded deadline. */
#include "rpc/rpc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "common/addr.h"
#include "common/grpc_util.h"
#include "proto/wire.h"
#include "rpc/tls_explain.h"

/* The channel's credentials: insecure, or gRPC's own TLS from tls's PEM strings (gRPC copies
 * them; verify options NULL: the default checks, chain and name). NULL when gRPC fails. */
static grpc_channel_credentials *channel_credentials(const struct tv_rpc_tls *tls)
{
	grpc_ssl_pem_key_cert_pair pair;

	if (!tls || !tls->pem || !tls->pem->ca)
		return grpc_insecure_credentials_create();
	pair.private_key = tls->pem->key;
	pair.cert_chain = tls->pem->cert;
	return grpc_ssl_credentials_create(tls->pem->ca, tls->pem->cert ? &pair : NULL, NULL,
					   NULL);
}

/* The channel with our common arguments, the TLS name override when tls has one, and n_extra
 * more (at most CHANNEL_EXTRA_ARGS). */
#define CHANNEL_COMMON_ARGS 5
#define CHANNEL_EXTRA_ARGS 1
static grpc_channel *channel_new(const char *server, const struct tv_rpc_tls *tls,
				 size_t max_message_bytes, const grpc_arg *extra, size_t n_extra)
{
	int max = max_message_bytes > INT_MAX ? INT_MAX : (int)max_message_bytes;
	grpc_arg args[CHANNEL_COMMON_ARGS + CHANNEL_EXTRA_ARGS + 1];
	grpc_channel_args ch_args = {.num_args = CHANNEL_COMMON_ARGS, .args = args};
	grpc_channel_credentials *creds;
	grpc_channel *ch;

	args[0] = tv_grpc_int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, max);
	args[1] = tv_grpc_int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, max);
	/* Retries off: the retry filter would keep the sent messages for replay, and our write rule
	 * is cancel + delete, never replay. */
	args[2] = tv_grpc_int_arg(GRPC_ARG_ENABLE_RETRIES, 0);
	/* After a server restart the channel reconnects within about a second, not after gRPC's
	 * default backoff of up to two minutes: the next segment must find it READY. Not
	 * GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: in gRPC 1.51 it is also the subchannel's minimum
	 * connect timeout, and at 100 ms a connection whose HTTP/2 handshake took longer (a
	 * 200 ms round trip, a busy server) was torn down and reported unreachable (rel-11).
	 * Left at its default (20 s), a connect attempt is bounded by our own deadlines. */
	args[3] = tv_grpc_int_arg(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, TV_RPC_RECONNECT_MIN_MS);
	args[4] = tv_grpc_int_arg(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, TV_RPC_RECONNECT_MAX_MS);
	for (size_t i = 0; i < n_extra && i < CHANNEL_EXTRA_ARGS; i++)
		args[ch_args.num_args++] = extra[i];
	if (tls && tls->pem && tls->pem->ca && tls->server_name) {
		/* the name the server's certificate must carry, instead of the target's host (and
		 * sent as SNI): a server reached by an address its certificate does not list */
		args[ch_args.num_args].type = GRPC_ARG_STRING;
		args[ch_args.num_args].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		args[ch_args.num_args++].value.string = (char *)tls->server_name;
	}
	creds = channel_credentials(tls);
	if (!creds)
		return NULL;
	ch = grpc_channel_create(server, creds, &ch_args);
	grpc_channel_credentials_release(creds);
	return ch;
}

grpc_channel *tv_rpc_channel_new(const char *server, const struct tv_rpc_tls *tls,
				 size_t max_message_bytes)
{
	return channel_new(server, tls, max_message_bytes, NULL, 0);
}

/* Whether server is HOST:PORT with a loopback host (common/addr.h): the only links whose
 * bandwidth-delay product is too small to need a window grown by BDP probing. Anything else (a
 * name, a gRPC URI) is taken as a real network. */
static bool loopback_target(const char *server)
{
	char host[256];
	unsigned port;

	return tv_hostport_parse(server, host, sizeof(host), &port) == 0 &&
	       tv_host_is_loopback(host);
}

grpc_channel *tv_rpc_read_channel_new(const char *server, const struct tv_rpc_tls *tls,
				      size_t max_message_bytes)
{
	/* No BDP probing on loopback: there the estimate only measures how far the server can
	 * run ahead of a client that renders slower than it reads, and the HTTP/2 window grew
	 * with it, to 35-80 MB of received messages held in fresh pages (a fault per 4 KiB: a
	 * fifth of the client's CPU over a whole day). Without it a message is let in as it is
	 * asked for, and the client asks one ahead (query_client.c). Over a real network the
	 * probing stays: without it a stream would move about one message (up to 1 MiB) per
	 * round trip, 10 MB/s at 100 ms. */
	grpc_arg no_bdp = tv_grpc_int_arg(GRPC_ARG_HTTP2_BDP_PROBE, 0);

	return channel_new(server, tls, max_message_bytes, &no_bdp,
			   loopback_target(server) ? 1 : 0);
}

gpr_timespec tv_rpc_deadline_ms(long timeout_ms)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			    gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

int tv_rpc_status_errno(grpc_status_code code)
{
	switch (code) {
	case GRPC_STATUS_OK: return 0;
	case GRPC_STATUS_CANCELLED: return -ECANCELED;
	case GRPC_STATUS_DEADLINE_EXCEEDED: return -ETIMEDOUT;
	case GRPC_STATUS_UNAVAILABLE: return -ECONNREFUSED;
	case GRPC_STATUS_INVALID_ARGUMENT: return -EINVAL;
	case GRPC_STATUS_RESOURCE_EXHAUSTED: return -ENOSPC;
	case GRPC_STATUS_DATA_LOSS: return -EBADMSG;
	case GRPC_STATUS_NOT_FOUND: return -ENOENT;
	case GRPC_STATUS_UNIMPLEMENTED: return -ENOSYS;
	case GRPC_STATUS_PERMISSION_DENIED: return -EACCES;
	default: return -EIO;
	}
}

void tv_rpc_status_text(grpc_status_code code, const grpc_slice *details, char *err,
			size_t errlen)
{
	size_t n = details ? GRPC_SLICE_LENGTH(*details) : 0;

	snprintf(err, errlen, "%s: %.*s", tv_grpc_status_name(code), (int)(n > 512 ? 512 : n),
		 n ? (const char *)GRPC_SLICE_START_PTR(*details) : "");
}

/* Bound on the plain TCP connect that explains a TRANSIENT_FAILURE. */
#define EXPLAIN_CONNECT_TIMEOUT_MS 2000

/* gRPC only says TRANSIENT_FAILURE, whether the name does not resolve, the port refuses, or
 * something that is not a gRPC server answers, or the TLS handshake fails. Redo the TCP connect
 * ourselves to name the real cause ("connection refused" in the common case), and where it
 * connects, the handshake (rpc/tls_explain.h). Targets that are not HOST:PORT (a gRPC
 * URI such as unix:/path) get gRPC's word for it. */
static void explain_unreachable(const char *server, const struct tv_rpc_tls *tls, char *why,
				size_t whylen)
{
	struct timeval tv = {.tv_sec = EXPLAIN_CONNECT_TIMEOUT_MS / 1000,
			     .tv_usec = EXPLAIN_CONNECT_TIMEOUT_MS % 1000 * 1000};
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
	char host[256], port_s[8];
	unsigned port;
	int rc, last_errno = 0;

	snprintf(why, whylen, "transient failure (gRPC could not connect)");
	if (strchr(server, '/') || tv_hostport_parse(server, host, sizeof(host), &port))
		return;
	snprintf(port_s, sizeof(port_s), "%u", port);
	rc = getaddrinfo(host, port_s, &hints, &res);
	if (rc) {
		snprintf(why, whylen, "cannot resolve the host: %s", gai_strerror(rc));
		return;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);

		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		/* on Linux SO_SNDTIMEO bounds a blocking connect; SO_RCVTIMEO the handshake */
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
		last_errno = errno;
		if (rc == 0) {
			/* TLS on one side only, or a handshake that fails: the handshake says */
			tv_rpc_tls_explain(fd, host, tls, why, whylen);
			close(fd);
			freeaddrinfo(res);
			return;
		}
		close(fd);
	}
	freeaddrinfo(res);
	if (last_errno == EINPROGRESS || last_errno == EAGAIN)
		last_errno = ETIMEDOUT;
	/* "connection refused", in the lower case of the rest of our messages */
	snprintf(why, whylen, "%s", strerror(last_errno));
	why[0] = (char)tolower((unsigned char)why[0]);
}

int tv_rpc_probe(grpc_channel *ch, grpc_completion_queue *cq, const char *server,
		 const struct tv_rpc_tls *tls, long timeout_ms, char *err, size_t errlen)
{
	gpr_timespec deadline = tv_rpc_deadline_ms(timeout_ms);
	gpr_timespec wait_until = gpr_time_add(deadline,
					       gpr_time_from_millis(TV_RPC_CQ_SLACK_MS, GPR_TIMESPAN));
	grpc_connectivity_state st = grpc_channel_check_connectivity_state(ch, 1);
	/* Bounded: each round waits for one state change, and the state machine has few states
	 * before TRANSIENT_FAILURE or READY; the deadline stops a peer that never answers. */
	for (int round = 0; round < 64; round++) {
		grpc_event ev;

		if (st == GRPC_CHANNEL_READY)
			return 0;
		if (st == GRPC_CHANNEL_TRANSIENT_FAILURE) {
			/* Seen with grpc 1.51: a refused TCP connect moves the channel
			 * CONNECTING -> TRANSIENT_FAILURE within milliseconds; so do a name that
			 * does not resolve and a peer that does not speak HTTP/2. */
			char why[160];

			explain_unreachable(server, tls, why, sizeof(why));
			snprintf(err, errlen, "cannot reach server %s: %s", server, why);
			return -ECONNREFUSED;
		}
		if (st == GRPC_CHANNEL_SHUTDOWN) {
			snprintf(err, errlen, "cannot reach server %s: channel shut down", server);
			return -ESHUTDOWN;
		}
		grpc_channel_watch_connectivity_state(ch, st, deadline, cq, (void *)&round);
		ev = grpc_completion_queue_next(cq, wait_until, NULL);
		if (ev.type != GRPC_OP_COMPLETE || !ev.success)
			break; /* the deadline passed without a state change */
		st = grpc_channel_check_connectivity_state(ch, 0);
	}
	snprintf(err, errlen, "cannot reach server %s: no connection within %ld ms", server,
		 timeout_ms);
	return -ETIMEDOUT;
}

int tv_rpc_wait_ready(grpc_channel *ch, grpc_completion_queue *cq, long timeout_ms)
{
	gpr_timespec deadline = tv_rpc_deadline_ms(timeout_ms);
	grpc_connectivity_state st = grpc_channel_check_connectivity_state(ch, 1);
	int tag;

	/* Bounded: each round waits for one state change or the deadline, whichever is first;
	 * the round cap covers a channel flapping between states faster than the deadline. */
	for (int round = 0; round < 256 && st != GRPC_CHANNEL_READY; round++) {
		grpc_event ev;

		if (st == GRPC_CHANNEL_SHUTDOWN)
			return -ESHUTDOWN;
		grpc_channel_watch_connectivity_state(ch, st, deadline, cq, &tag);
		ev = grpc_completion_queue_next(
			cq, gpr_time_add(deadline, gpr_time_from_millis(TV_RPC_CQ_SLACK_MS,
									 GPR_TIMESPAN)),
			NULL);
		if (ev.type != GRPC_OP_COMPLETE || !ev.success)
			return -ETIMEDOUT;
		/* try_to_connect again: out of TRANSIENT_FAILURE the channel may go IDLE */
		st = grpc_channel_check_connectivity_state(ch, 1);
	}
	return st == GRPC_CHANNEL_READY ? 0 : -ETIMEDOUT;
}

size_t tv_rpc_request_ops(grpc_op ops[4], grpc_byte_buffer *send, grpc_metadata_array *init_md)
{
	memset(ops, 0, 4 * sizeof(*ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = init_md;
	return 4;
}

void tv_rpc_status_op(grpc_op *op, grpc_metadata_array *trail_md, grpc_status_code *status,
		      grpc_slice *details)
{
	memset(op, 0, sizeof(*op));
	op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op->data.recv_status_on_client.trailing_metadata = trail_md;
	op->data.recv_status_on_client.status = status;
	op->data.recv_status_on_client.status_details = details;
}

int tv_rpc_unary(grpc_channel *ch, grpc_completion_queue *cq, const char *method,
		 const ProtobufCMessage *req, const ProtobufCMessageDescriptor *out_desc,
		 size_t max_message_bytes, long timeout_ms, ProtobufCMessage **out, char *err,
		 size_t errlen)
{
	gpr_timespec deadline = tv_rpc_deadline_ms(timeout_ms);
	grpc_metadata_array init_md, trail_md;
	grpc_byte_buffer *send = NULL, *recv = NULL;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[6];
	grpc_call *call;
	grpc_event ev;
	uint8_t *flat = NULL;
	size_t flat_len, nops;
	int ret, tag;

	*out = NULL;
	ret = tv_wire_pack(req, &send);
	if (ret) {
		snprintf(err, errlen, "pack request: %s", strerror(-ret));
		return ret;
	}
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
					grpc_slice_from_static_string(method), NULL, deadline, NULL);
	if (!call) {
		grpc_byte_buffer_destroy(send);
		snprintf(err, errlen, "create call %s failed", method);
		return -ENOMEM;
	}
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	nops = tv_rpc_request_ops(ops, send, &init_md);
	memset(&ops[nops], 0, sizeof(ops[nops]));
	ops[nops].op = GRPC_OP_RECV_MESSAGE;
	ops[nops++].data.recv_message.recv_message = &recv;
	tv_rpc_status_op(&ops[nops++], &trail_md, &status, &details);
	if (grpc_call_start_batch(call, ops, nops, &tag, NULL) != GRPC_CALL_OK) {
		snprintf(err, errlen, "start %s failed", method);
		ret = -EIO;
		goto out;
	}
	ev = grpc_completion_queue_next(
		cq, gpr_time_add(deadline, gpr_time_from_millis(TV_RPC_CQ_SLACK_MS, GPR_TIMESPAN)),
		NULL);
	if (ev.type != GRPC_OP_COMPLETE) {
		/* gRPC missed its own deadline: cancel, then the batch must still complete. */
		grpc_call_cancel(call, NULL);
		ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		snprintf(err, errlen, "%s: no completion by the deadline", method);
		ret = -ETIMEDOUT;
		goto out;
	}
	if (status != GRPC_STATUS_OK) {
		tv_rpc_status_text(status, &details, err, errlen);
		ret = tv_rpc_status_errno(status);
		goto out;
	}
	if (!recv) {
		snprintf(err, errlen, "%s: status OK without a reply", method);
		ret = -EBADMSG;
		goto out;
	}
	ret = tv_wire_flatten(recv, max_message_bytes, &flat, &flat_len);
	if (ret) {
		snprintf(err, errlen, "%s: reply: %s", method, strerror(-ret));
		goto out;
	}
	*out = protobuf_c_message_unpack(out_desc, NULL, flat_len, flat);
	if (!*out) {
		snprintf(err, errlen, "%s: reply does not parse", method);
		ret = -EBADMSG;
		goto out;
	}
	ret = 0;
out:
	free(flat);
	if (recv)
		grpc_byte_buffer_destroy(recv);
	grpc_byte_buffer_destroy(send);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	grpc_call_unref(call);
	return ret;
}

int tv_rpc_unary_to(const char *server, const struct tv_rpc_tls *tls, const char *method,
		    const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *out_desc, size_t max_message_bytes,
		    long probe_timeout_ms, long timeout_ms, ProtobufCMessage **out, bool *called,
		    char *err, size_t errlen)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
	grpc_channel *ch = cq ? tv_rpc_channel_new(server, tls, max_message_bytes) : NULL;
	int ret;

	*out = NULL;
	*called = false;
	if (!ch) {
		snprintf(err, errlen, "cannot create a channel to %s", server);
		ret = -ENOMEM;
		goto out;
	}
	ret = tv_rpc_probe(ch, cq, server, tls, probe_timeout_ms, err, errlen);
	if (ret)
		goto out;
	*called = true;
	ret = tv_rpc_unary(ch, cq, method, req, out_desc, max_message_bytes, timeout_ms, out, err,
			   errlen);
out:
	if (ch)
		grpc_channel_destroy(ch);
	if (cq)
		tv_grpc_cq_destroy(cq); /* nothing is outstanding: tv_rpc_unary waited for its batch */
	return ret;
}
