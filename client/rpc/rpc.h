/* Client-side gRPC plumbing shared by the segment writer and the query client: channel setup
 * with our message limits, the reachability probe, deadlines, unary calls (status names
 * and queue shutdown are common/grpc_util.h). */
#ifndef TV_RPC_H
#define TV_RPC_H

#include <stdbool.h>
#include <stddef.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "common/tls.h"

/* Extra time granted to completion-queue waits past a call's own deadline: gRPC finishes the
 * call with DEADLINE_EXCEEDED by then, so hitting this bound means gRPC itself is stuck. */
#define TV_RPC_CQ_SLACK_MS 5000

/* Reconnect backoff of our channels (gRPC's default grows to 120 s). */
#define TV_RPC_RECONNECT_MIN_MS 100
#define TV_RPC_RECONNECT_MAX_MS 1000

/* How every channel of a command reaches its servers (--tls-ca, --tls-cert, --tls-key,
 * --tls-server-name): plaintext when the pointer is NULL or pem->ca is NULL; else TLS with gRPC's
 * own credentials, the server's certificate verified against pem->ca and its name against
 * server_name, or when that is NULL against the host of the target (the HOST of HOST:PORT:
 * an IP address must be in the certificate's subjectAltName as an IP entry, a name as a DNS
 * one). pem->cert and pem->key, when set, are the client's certificate for mutual TLS. The
 * strings are the caller's and must live while channels are created (gRPC copies them). */
struct tv_rpc_tls {
	const struct tv_tls_pem *pem;
	const char *server_name;
};

/* A channel to "HOST:PORT" (plaintext or TLS as tls says) with max send/receive message sizes
 * set to max_message_bytes and gRPC-level retries disabled (a failed write is never retried,
 * see grpc_writer.c). grpc_init() must have been called. NULL on failure. */
grpc_channel *tv_rpc_channel_new(const char *server, const struct tv_rpc_tls *tls,
				 size_t max_message_bytes);
/* The same for a client that reads a long stream of large messages (Query): to a loopback
 * HOST:PORT (127.0.0.0/8, ::1, localhost), HTTP/2 BDP probing off, so gRPC buffers about the
 * message the client asks for instead of a window that grows to tens of megabytes when the
 * server is faster than the client; to any other target, probing stays on (the window a
 * real network's bandwidth-delay product needs). */
grpc_channel *tv_rpc_read_channel_new(const char *server, const struct tv_rpc_tls *tls,
				      size_t max_message_bytes);

/* Deadline timeout_ms from now (CLOCK_MONOTONIC). */
gpr_timespec tv_rpc_deadline_ms(long timeout_ms);

/* Wait until the channel is READY. A channel that falls into TRANSIENT_FAILURE gives
 * -ECONNREFUSED and "cannot reach server H:P: <cause>", the cause found by a plain TCP connect
 * ("connection refused", "cannot resolve ...", "TCP connects but no gRPC server answers"),
 * and where TCP connects, by a TLS handshake of our own with tls's settings (tls as the
 * channel was made with): "TLS handshake failed: certificate verify failed (hostname
 * mismatch)", "the server speaks TLS: give --tls-ca", "... alert certificate required";
 * no READY within timeout_ms gives -ETIMEDOUT. cq is a next-queue with no other work. */
int tv_rpc_probe(grpc_channel *ch, grpc_completion_queue *cq, const char *server,
		 const struct tv_rpc_tls *tls, long timeout_ms, char *err, size_t errlen);

/* Wait, through TRANSIENT_FAILURE and reconnects, until the channel is READY: 0, or
 * -ETIMEDOUT after timeout_ms. Unlike tv_rpc_probe it does not give up on the first failed
 * connect (a server restarting on the same port). cq is a next-queue with no other work. */
int tv_rpc_wait_ready(grpc_channel *ch, grpc_completion_queue *cq, long timeout_ms);

/* One unary call: packs req, waits for the reply and the status, unpacks the reply with
 * out_desc into *out (free with protobuf_c_message_free_unpacked). Returns 0 on status OK,
 * else a negative errno with "CODE: message" in err. */
int tv_rpc_unary(grpc_channel *ch, grpc_completion_queue *cq, const char *method,
		 const ProtobufCMessage *req, const ProtobufCMessageDescriptor *out_desc,
		 size_t max_message_bytes, long timeout_ms, ProtobufCMessage **out, char *err,
		 size_t errlen);

/* One unary call to server (over tls) on a channel and completion queue of its own, both gone
 * on return: tv_rpc_channel_new, tv_rpc_probe with probe_timeout_ms, tv_rpc_unary with
 * timeout_ms. grpc_init() must have been called. Returns 0 with *out as tv_rpc_unary gives
 * it, or a negative errno: *called false when no call was made (no channel: -ENOMEM and
 * "cannot create a channel to H:P"; tv_rpc_probe's error and its message), err then being
 * the whole message; *called true when the call failed, err then being tv_rpc_unary's
 * "CODE: message", for the caller to say which call failed where. */
int tv_rpc_unary_to(const char *server, const struct tv_rpc_tls *tls, const char *method,
		    const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *out_desc, size_t max_message_bytes,
		    long probe_timeout_ms, long timeout_ms, ProtobufCMessage **out, bool *called,
		    char *err, size_t errlen);

/* Fill ops[0..4) with "send the one request and half-close, receive the initial metadata":
 * SEND_INITIAL_METADATA, SEND_MESSAGE(send), SEND_CLOSE_FROM_CLIENT, RECV_INITIAL_METADATA.
 * Returns 4, the number of ops. */
size_t tv_rpc_request_ops(grpc_op ops[4], grpc_byte_buffer *send, grpc_metadata_array *init_md);

/* Fill *op with RECV_STATUS_ON_CLIENT into the given places (owned by the caller). */
void tv_rpc_status_op(grpc_op *op, grpc_metadata_array *trail_md, grpc_status_code *status,
		      grpc_slice *details);

/* Negative errno that best matches a gRPC status (UNAVAILABLE -> -ECONNREFUSED, ...). */
int tv_rpc_status_errno(grpc_status_code code);

/* Format "CODE: details" into err from a finished call's status. */
void tv_rpc_status_text(grpc_status_code code, const grpc_slice *details, char *err,
			size_t errlen);

#endif
