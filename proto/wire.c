/* protobuf-c <-> grpc byte buffer helpers. Control messages are small and copied once; chunk
 * payloads never pass through here as bytes, only as a length (tv_wire_chunk_prefix). */
#include "proto/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>

#include "proto/varint.h"

const struct tv_limit tv_wire_message_bytes_limit = {
	.min = TV_WIRE_MIN_MESSAGE_BYTES,
	.max = TV_WIRE_MAX_MESSAGE_BYTES,
};

const struct tv_limit tv_summary_groups_limit = { .min = 1, .max = TV_SUMMARY_MAX_GROUPS };

int tv_wire_pack(const ProtobufCMessage *m, grpc_byte_buffer **out)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(n);

	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	*out = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return *out ? 0 : -ENOMEM;
}

int tv_wire_flatten_into(grpc_byte_buffer *bb, size_t max_bytes, uint8_t **buf, size_t *cap,
			 size_t *len)
{
	grpc_byte_buffer_reader rd;
	grpc_slice s;
	size_t total = grpc_byte_buffer_length(bb), need = total ? total : 1, pos = 0;

	if (total > max_bytes)
		return -EMSGSIZE;
	if (need > *cap) {
		/* at least doubled, so messages that grow a little at a time do not reallocate
		 * each; malloc, not realloc: the old bytes are not wanted */
		size_t grown = need > *cap * 2 ? need : *cap * 2;

		free(*buf);
		*buf = malloc(grown);
		*cap = *buf ? grown : 0;
		if (!*buf)
			return -ENOMEM;
	}
	if (!grpc_byte_buffer_reader_init(&rd, bb))
		return -EBADMSG;
	while (grpc_byte_buffer_reader_next(&rd, &s)) {
		size_t n = GRPC_SLICE_LENGTH(s);

		memcpy(*buf + pos, GRPC_SLICE_START_PTR(s), n);
		pos += n;
		grpc_slice_unref(s);
	}
	grpc_byte_buffer_reader_destroy(&rd);
	*len = pos;
	return 0;
}

int tv_wire_flatten(grpc_byte_buffer *bb, size_t max_bytes, uint8_t **out, size_t *len)
{
	uint8_t *buf = NULL;
	size_t cap = 0;
	int ret = tv_wire_flatten_into(bb, max_bytes, &buf, &cap, len);

	if (ret) {
		free(buf);
		return ret;
	}
	*out = buf;
	return 0;
}


size_t tv_wire_chunk_prefix(uint8_t prefix[TV_CHUNK_PREFIX_MAX], uint64_t block_id,
			    uint64_t offset, uint32_t crc32c, size_t data_len)
{
	/* Chunk fields in number order; proto3 omits zero scalars but data is always written so
	 * an empty chunk still parses as a chunk. Tags: (field << 3) | wire type. */
	uint8_t body[TV_CHUNK_PREFIX_MAX];
	size_t b = 0, n = 0;

	if (block_id) {
		body[b++] = (1 << 3) | 0;
		b += tv_varint_put(body + b, block_id);
	}
	if (offset) {
		body[b++] = (2 << 3) | 0;
		b += tv_varint_put(body + b, offset);
	}
	if (crc32c) {
		body[b++] = (3 << 3) | 0;
		b += tv_varint_put(body + b, crc32c);
	}
	body[b++] = (4 << 3) | 2;
	b += tv_varint_put(body + b, data_len);

	prefix[n++] = (2 << 3) | 2; /* WriteRequest.chunk */
	n += tv_varint_put(prefix + n, b + data_len);
	memcpy(prefix + n, body, b);
	return n + b;
}
