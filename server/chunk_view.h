/* Zero-copy reading of a received WriteRequest{chunk}: parse the small prefix by hand, then
 * describe the data as iovecs pointing into the received slices (refs held) for io_uring. */
#ifndef TV_CHUNK_VIEW_H
#define TV_CHUNK_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>

#include "tracevault.pb-c.h"

struct tv_chunk_view {
	uint64_t block_id, offset;
	uint32_t crc32c;      /* as sent */
	size_t data_len;
	grpc_slice *slices;   /* refs owned by the view (released by tv_chunk_view_release) */
	size_t nslices;
	struct iovec *iov;    /* the data bytes only, pointing into slices */
	int iovcnt;
};

/* Returns 1 with v filled (and slice refs taken) when bb is a WriteRequest holding only a chunk
 * whose data field comes last: the layout tv_wire_chunk_prefix writes, scalar fields in any
 * order. Returns 0 when the message must take the protobuf-c path instead (a command, another
 * field order, unknown fields, anything malformed: protobuf-c decides), -ENOMEM on allocation
 * failure. Nothing of the payload is copied. */
int tv_chunk_view_parse(grpc_byte_buffer *bb, struct tv_chunk_view *v);

/* Wrap an unpacked fallback request's chunk as a view without copying its data again; the view
 * takes ownership of req (freed with tracevault__v1__write_request__free_unpacked when the last
 * slice ref goes). Returns 0 or -ENOMEM (req then still belongs to the caller). */
int tv_chunk_view_from_unpacked(Tracevault__V1__WriteRequest *req, struct tv_chunk_view *v);

/* Drop the slice refs and arrays. Safe on a zeroed view. */
void tv_chunk_view_release(struct tv_chunk_view *v);

/* CRC32C continued over the bytes of iov[0..n) after skipping the first skip bytes. */
uint32_t tv_iov_crc32c(uint32_t crc, const struct iovec *iov, int n, size_t skip);
/* Copy len bytes starting skip bytes into iov[0..n) to dst (for the block header, at most
 * TV_BLOCK_MAX_HEADER_BYTES; never payload). Returns the bytes copied (less when the iovecs
 * are shorter). */
size_t tv_iov_copy_out(const struct iovec *iov, int n, size_t skip, void *dst, size_t len);

#endif
