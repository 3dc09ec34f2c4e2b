/* An OTLP Export call's spans made durable the way Write makes a segment durable: the span
 * records are sealed into one block and handed to a segment (server/segment.h) as the
 * WriteRequests a client would send (OPEN_SEGMENT, OPEN_BLOCK, chunks, COMMIT), so they take
 * the same checks, temp file, fdatasync, group commit, catalog rows, retention and under-store
 * path; the Export is answered from the segment's commit. This module builds those requests
 * and the Export replies; rpc_server.c drives the call. */
#ifndef TV_SERVER_OTLP_EXPORT_H
#define TV_SERVER_OTLP_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>

#include "proto/otlp_span.h"

/* Default of --otlp-max-pending-bytes: Export request bytes in progress at once (decoded, not
 * yet answered). An Export that would pass it (while another is in progress) is refused
 * RESOURCE_EXHAUSTED with a google.rpc.RetryInfo of TV_OTLP_RETRY_DELAY_MS, which OTLP
 * clients honour (the spec's "Throttling"). */
#define TV_OTLP_DEFAULT_MAX_PENDING_BYTES (64u << 20)
extern const struct tv_limit tv_otlp_max_pending_bytes_limit; /* 64K to 4G */
#define TV_OTLP_RETRY_DELAY_MS 1000

/* The WriteRequests that store one Export's spans as a segment of one block. */
struct tv_otlp_write {
	grpc_byte_buffer **msgs;
	size_t n, next;
	uint64_t segment_id, block_id;
	size_t block_bytes;
};

/* Seal s's records (n > 0) into one block and frame it as WriteRequests whose messages stay
 * within max_message_bytes. A record too large for a block (TV_BLOCK_MAX_RECORD_BYTES) is
 * refused like an invalid span (s->rejected, s->reject_msg); when none is left, *w is empty
 * (n 0). 0, or a negative errno with err set. Free w with tv_otlp_write_free. */
int tv_otlp_write_build(struct tv_otlp_spans *s, size_t max_message_bytes,
			struct tv_otlp_write *w, char *err, size_t errlen);
/* The next request to hand to tv_segment_on_message (still owned by w), or NULL after the
 * last (COMMIT). */
grpc_byte_buffer *tv_otlp_write_next(struct tv_otlp_write *w);
void tv_otlp_write_free(struct tv_otlp_write *w);

/* The ExportTraceServiceResponse: partial_success only when rejected > 0 (the spec: an
 * empty reply means every span was accepted). 0 or -ENOMEM. */
int tv_otlp_pack_response(uint64_t rejected, const char *error_message,
			  grpc_byte_buffer **out);
/* The grpc-status-details-bin value of a throttled Export: a google.rpc.Status (code 8,
 * RESOURCE_EXHAUSTED, msg) with one google.rpc.RetryInfo of delay_ms. 0 or -ENOMEM. */
int tv_otlp_retry_details(const char *msg, unsigned delay_ms, grpc_slice *out);

#endif
