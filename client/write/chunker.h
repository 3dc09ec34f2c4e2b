/* Cuts a block (one refcounted slice) into WriteRequest{chunk} messages: a packed prefix plus a
 * sub-slice of the block (zero-copy), or one protobuf-c packed message (--no-zerocopy). */
#ifndef TV_CHUNKER_H
#define TV_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>

#include "common/limit.h"

/* Payload bytes per chunk message (--chunk-bytes): the default, and the bound: at least 1, and
 * with its prefix no more than the largest message (the chosen --max-message-bytes is
 * checked by tv_chunk_check_fits). */
#define TV_DEFAULT_CHUNK_BYTES (1u << 20)
extern const struct tv_limit tv_chunk_bytes_limit;

/* The chunk size when none is chosen: TV_DEFAULT_CHUNK_BYTES, or less so that it fits a
 * message of max_message_bytes (a small message limit alone must not make a write fail). */
size_t tv_chunk_default_bytes(size_t max_message_bytes);

/* The largest chunk, in payload bytes, that fits with its prefix (TV_CHUNK_PREFIX_MAX) in one
 * message of max_message_bytes: max_message_bytes - TV_CHUNK_PREFIX_MAX, 0 when none does.
 * The CLI states it when --chunk-bytes is too large for --max-message-bytes. */
size_t tv_chunk_max_bytes(size_t max_message_bytes);

/* 0 when a chunk of chunk_bytes is at most tv_chunk_max_bytes(max_message_bytes), else
 * -EMSGSIZE. */
int tv_chunk_check_fits(size_t chunk_bytes, size_t max_message_bytes);

enum tv_chunk_mode {
	TV_CHUNK_ZEROCOPY = 0, /* [prefix slice][sub-slice sharing the block's refcount] */
	TV_CHUNK_PACKED = 1,   /* protobuf-c pack into a fresh slice: copies the payload */
};

/* Payload length of the chunk that starts at offset: min(chunk_bytes, block_len - offset). */
static inline size_t tv_chunk_len(size_t block_len, size_t offset, size_t chunk_bytes)
{
	size_t left = block_len - offset;

	return left < chunk_bytes ? left : chunk_bytes;
}

/* Build the message for bytes [offset, offset+len) of block (whose bytes start at block_id's
 * block offset 0). The CRC32C is computed over the real bytes; with corrupt != 0 the payload
 * is then copied and one bit flipped (test only: the server must see a CRC mismatch).
 * *copied_bytes gets the payload bytes copied in user space (0 for a zero-copy chunk).
 * *out is owned by the caller (grpc_byte_buffer_destroy); it holds its own refs on the block
 * slice. Returns 0 or -ENOMEM / -EINVAL (range outside the block). */
int tv_chunk_message(grpc_slice block, uint64_t block_id, size_t offset, size_t len,
		     enum tv_chunk_mode mode, int corrupt, grpc_byte_buffer **out,
		     uint32_t *crc32c_out, size_t *copied_bytes);

#endif
