/* The chunker of the segment writer, kept apart so a unit test can check the exact bytes of
 * every chunk message without a server (tests/unit/test_chunker.c). */
#include "write/chunker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/crc32c.h"
#include "tracevault.pb-c.h"
#include "proto/wire.h"

const struct tv_limit tv_chunk_bytes_limit = {
	.min = 1,
	.max = TV_WIRE_MAX_MESSAGE_BYTES - TV_CHUNK_PREFIX_MAX,
};

size_t tv_chunk_default_bytes(size_t max_message_bytes)
{
	if (max_message_bytes < TV_DEFAULT_CHUNK_BYTES + TV_CHUNK_PREFIX_MAX)
		return max_message_bytes > TV_CHUNK_PREFIX_MAX ? max_message_bytes - TV_CHUNK_PREFIX_MAX
							       : 1;
	return TV_DEFAULT_CHUNK_BYTES;
}

size_t tv_chunk_max_bytes(size_t max_message_bytes)
{
	return max_message_bytes > TV_CHUNK_PREFIX_MAX ? max_message_bytes - TV_CHUNK_PREFIX_MAX : 0;
}

int tv_chunk_check_fits(size_t chunk_bytes, size_t max_message_bytes)
{
	return chunk_bytes <= tv_chunk_max_bytes(max_message_bytes) ? 0 : -EMSGSIZE;
}

/* protobuf-c pack of WriteRequest{chunk}: the plain path --no-zerocopy compares against. */
static int pack_copy(const uint8_t *data, uint64_t block_id, size_t offset, size_t len,
		     uint32_t crc, grpc_slice *out)
{
	Tracevault__V1__Chunk ch = TRACEVAULT__V1__CHUNK__INIT;
	Tracevault__V1__WriteRequest req = TRACEVAULT__V1__WRITE_REQUEST__INIT;
	size_t n;

	ch.block_id = block_id;
	ch.offset = offset;
	ch.crc32c = crc;
	ch.data.data = (uint8_t *)data; /* protobuf-c only reads it while packing */
	ch.data.len = len;
	req.value_case = TRACEVAULT__V1__WRITE_REQUEST__VALUE_CHUNK;
	req.chunk = &ch;
	n = protobuf_c_message_get_packed_size(&req.base);
	*out = grpc_slice_malloc(n);
	if (GRPC_SLICE_LENGTH(*out) != n)
		return -ENOMEM;
	protobuf_c_message_pack(&req.base, GRPC_SLICE_START_PTR(*out));
	return 0;
}

int tv_chunk_message(grpc_slice block, uint64_t block_id, size_t offset, size_t len,
		     enum tv_chunk_mode mode, int corrupt, grpc_byte_buffer **out,
		     uint32_t *crc32c_out, size_t *copied_bytes)
{
	const uint8_t *data = GRPC_SLICE_START_PTR(block) + offset;
	uint8_t prefix[TV_CHUNK_PREFIX_MAX];
	grpc_slice s[2];
	uint32_t crc;
	size_t plen;
	int ret;

	*out = NULL;
	*copied_bytes = 0;
	if (offset > GRPC_SLICE_LENGTH(block) || len > GRPC_SLICE_LENGTH(block) - offset)
		return -EINVAL;
	crc = tv_crc32c(data, len);
	*crc32c_out = crc;
	if (corrupt && len) {
		/* the cached block is shared and read-only: corrupt a private copy */
		uint8_t *bad = malloc(len);

		if (!bad)
			return -ENOMEM;
		memcpy(bad, data, len);
		bad[len / 2] ^= 0x01;
		ret = pack_copy(bad, block_id, offset, len, crc, &s[0]);
		free(bad);
		if (ret)
			return ret;
		*copied_bytes = len;
		*out = grpc_raw_byte_buffer_create(s, 1);
		grpc_slice_unref(s[0]);
		return *out ? 0 : -ENOMEM;
	}
	if (mode == TV_CHUNK_PACKED) {
		ret = pack_copy(data, block_id, offset, len, crc, &s[0]);
		if (ret)
			return ret;
		*copied_bytes = len;
		*out = grpc_raw_byte_buffer_create(s, 1);
		grpc_slice_unref(s[0]);
		return *out ? 0 : -ENOMEM;
	}
	plen = tv_wire_chunk_prefix(prefix, block_id, offset, crc, len);
	s[0] = grpc_slice_from_copied_buffer((const char *)prefix, plen);
	/* grpc_slice_sub would copy a sub-slice of <= 23 bytes inline; the no_ref variant plus
	 * an explicit ref always shares the block's refcount, whatever the length. */
	s[1] = grpc_slice_ref(grpc_slice_sub_no_ref(block, offset, offset + len));
	*out = grpc_raw_byte_buffer_create(s, 2); /* takes its own refs */
	grpc_slice_unref(s[0]);
	grpc_slice_unref(s[1]);
	return *out ? 0 : -ENOMEM;
}
