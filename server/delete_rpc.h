/* The Delete rpc's work on the server: remove a segment's committed blocks whole (through the
 * retiring steps of server/retention.h) and/or listed block ids (their files first, then
 * their catalog rows), and build the DeleteResponse.
 * rpc_server.c owns the call and first aborts the segment's Write streams still in flight. */
#ifndef TV_DELETE_RPC_H
#define TV_DELETE_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <grpc/status.h>

#include "server/catalog.h"
#include "server/metrics.h"
#include "server/retention.h"
#include "server/store_uring.h"
#include "tracevault.pb-c.h"

/* May req remove what it names? GRPC_STATUS_OK, or PERMISSION_DENIED when its segment_id
 * belongs to another writer (its writer_token is not the segment's: catalog.h,
 * tv_catalog_segment_may_delete) or INTERNAL, with the reason in msg (msglen bytes). The caller
 * asks before it touches anything, in-flight streams included, and ends the call when not OK:
 * a failing writer's cleanup then removes only what it wrote. Block ids need no token. */
grpc_status_code tv_delete_rpc_check(struct tv_catalog *c,
				     const Tracevault__V1__DeleteRequest *req, char *msg,
				     size_t msglen);

/* Carry out req: its segment's committed blocks (segment_id != 0 with its writer_token: T1,
 * U and T2 of retention.h, so a crash never leaves part of the segment), then its block_ids
 * (files first, then rows); logs what was removed. The caller aborted aborted_streams Write
 * streams of the segment still in flight, which removed deleted_temp_blocks temp files (that
 * count goes into the response as is). Returns GRPC_STATUS_OK with *out the packed
 * DeleteResponse (the caller owns it), or the status to end the call with (server/status.h's
 * table) and its reason in msg (msglen bytes, always terminated; "" on OK). An OK Delete of a
 * segment counts in metrics->segments_deleted when it removed something (committed blocks, an
 * in-flight stream, temp files), else in metrics->segment_deletes_noop; the blocks it removed
 * count in metrics->deleted_blocks. */
grpc_status_code tv_delete_rpc_apply(struct tv_catalog *c, struct tv_store *s,
				     struct tv_server_metrics *metrics,
				     struct tv_retention *r,
				     const Tracevault__V1__DeleteRequest *req,
				     uint64_t aborted_streams, uint64_t deleted_temp_blocks,
				     grpc_byte_buffer **out, char *msg, size_t msglen);

#endif
