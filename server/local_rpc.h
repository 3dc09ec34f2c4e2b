/* The HTTP API's way to the archive (server/http_api.c): a gRPC client of this very server
 * over a private unix socket, so every HTTP request is a Query or Summary call like any
 * client's. Why not read the catalog and blocks directly from the HTTP threads: the query
 * path (server/query.h) is bound to the server's one thread (its memory pool, open-block
 * count, retention's "oldest running query" and quarantine are unlocked state of that
 * thread). Through gRPC the HTTP side gets those limits, the damage handling and the
 * slicing that keeps Write acks flowing, for the cost of a loopback hop; the server's loop
 * never waits on an HTTP client (it serves these calls like others), and the HTTP threads
 * block only on their own calls.
 *
 * The socket is a unix socket in a private 0700 directory (tv_local_rpc_dir_new): it takes
 * plaintext even when the network port needs TLS and client certificates, and only this
 * process's user can reach it. Thread-safe: one channel, a completion queue per call. */
#ifndef TV_SERVER_LOCAL_RPC_H
#define TV_SERVER_LOCAL_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "tracevault.pb-c.h"

/* The socket's directory and gRPC address ("unix:/tmp/tracevaultd-http.XXXXXX/grpc.sock"),
 * made with mkdtemp (mode 0700). Free with tv_local_rpc_dir_free, which removes both. */
struct tv_local_rpc_dir {
	char dir[64];
	char addr[96];
};
int tv_local_rpc_dir_new(struct tv_local_rpc_dir *d, char *err, size_t errlen);
void tv_local_rpc_dir_free(struct tv_local_rpc_dir *d);

struct tv_local_rpc;

/* A channel to target (a gRPC address); max_message_bytes bounds what a reply may be. 0 or
 * -ENOMEM. */
int tv_local_rpc_new(struct tv_local_rpc **out, const char *target, size_t max_message_bytes);
void tv_local_rpc_free(struct tv_local_rpc *c); /* NULL: nothing */

/* Called per record of a Query's answer, in the answer's order; r is valid only during the
 * call. A non-zero return stops the query (the call is cancelled) and is returned. */
typedef int (*tv_local_record_cb)(const Tracevault__V1__TraceRecord *r, void *arg);

/* One Query call with req, ended within timeout_ms. Returns 0 (also when the server skipped
 * damaged blocks: DATA_LOSS, *skipped counts them), cb's non-zero value, -ETIMEDOUT (the
 * deadline passed), -EINVAL (INVALID_ARGUMENT: a filter the server refused; the message in
 * err), or -EIO with "CODE: message" in err. */
int tv_local_query(struct tv_local_rpc *c, const Tracevault__V1__QueryRequest *req,
		   unsigned timeout_ms, tv_local_record_cb cb, void *arg, uint64_t *skipped,
		   char *err, size_t errlen);

/* One Summary call: *out the unpacked reply (free it with
 * tracevault__v1__summary_response__free_unpacked(*out, NULL)). Errors as tv_local_query. */
int tv_local_summary(struct tv_local_rpc *c, const Tracevault__V1__SummaryRequest *req,
		     unsigned timeout_ms, Tracevault__V1__SummaryResponse **out, char *err,
		     size_t errlen);

/* One OTLP Export call (opentelemetry.proto.collector.trace.v1.TraceService/Export, the
 * gRPC path's handler, server/otlp_export.h) with req (len bytes of a serialized
 * ExportTraceServiceRequest, sent as is), ended within timeout_ms. The call's outcome in *st:
 * its gRPC status code and message, and the grpc-status-details-bin trailer (a
 * google.rpc.Status; the RetryInfo of a throttled Export), malloc'd or NULL; with code OK,
 * reply (malloc'd, reply_len bytes) is the ExportTraceServiceResponse as the server packed
 * it. Free with tv_local_export_status_free. 0 whatever the status, -ENOMEM. */
struct tv_local_export_status {
	int code;          /* grpc_status_code */
	char message[300];
	uint8_t *details;  /* grpc-status-details-bin, or NULL */
	size_t details_len;
	uint8_t *reply;
	size_t reply_len;
};
int tv_local_export(struct tv_local_rpc *c, const void *req, size_t len, unsigned timeout_ms,
		    struct tv_local_export_status *st);
void tv_local_export_status_free(struct tv_local_export_status *st);

#endif
