/* One Write stream's segment: the protocol state machine (OPEN_SEGMENT, OPEN_BLOCK + chunks,
 * FLUSH, COMMIT, CANCEL) over the store and catalog, independent of the gRPC transport.
 * The rpc layer feeds it request messages and sends back what each step says. */
#ifndef TV_SEGMENT_H
#define TV_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <grpc/status.h>

#include "catalog.h"
#include "store_uring.h"

/* More blocks than this in one segment is RESOURCE_EXHAUSTED: bounds per-stream state. */
#define TV_SERVER_MAX_SEGMENT_BLOCKS 65536

/* What the transport must do after one step. */
struct tv_segment_step {
	grpc_byte_buffer *response; /* NULL or a WriteResponse to send; the caller owns it */
	int finished;               /* 1: end the call with code/msg (after sending response) */
	grpc_status_code code;
	char msg[256];
};

struct tv_segment;

/* c and s must outlive the segment. max_message_bytes bounds one request. NULL on ENOMEM. */
struct tv_segment *tv_segment_new(struct tv_catalog *c, struct tv_store *s,
				  size_t max_message_bytes);
/* Aborts (deletes temp files of) a segment that was not committed, then frees it. */
void tv_segment_free(struct tv_segment *seg);

/* Handle one received WriteRequest message (bb stays owned by the caller). */
void tv_segment_on_message(struct tv_segment *seg, grpc_byte_buffer *bb,
			   struct tv_segment_step *step);
/* The request stream ended (half-close or cancel) at this point: abort unless committed. */
void tv_segment_on_end(struct tv_segment *seg, struct tv_segment_step *step);

/* 0 until OPEN_SEGMENT arrived. */
uint64_t tv_segment_id(const struct tv_segment *seg);
/* 1 while the segment can still be committed (not committed, cancelled or failed). */
int tv_segment_is_open(const struct tv_segment *seg);
/* Abandon an open segment from outside the stream (a Delete rpc): deletes its temp files and
 * returns how many blocks were removed. The stream's later messages are rejected. */
size_t tv_segment_abort(struct tv_segment *seg, const char *why);

#endif
