/* cmocka tests of the chunker (client/write/chunker.c): a block cut into WriteRequest{chunk}
 * messages covers every byte once, in order, with the right offsets and CRCs, zero-copy or
 * packed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <grpc/byte_buffer_reader.h>

#include "write/chunker.h"
#include "proto/crc32c.h"
#include "tracevault.pb-c.h"
#include "proto/wire.h"

#define BLOCK_ID 0x1234abcd5678ef01ull

static uint8_t *pattern(size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 131 + (i >> 8));
	return p;
}

static void free_block(void *p)
{
	free(p);
}

/* The bytes of a message, as the server would see them. */
static uint8_t *flatten(grpc_byte_buffer *bb, size_t *len)
{
	uint8_t *flat;

	assert_int_equal(tv_wire_flatten(bb, SIZE_MAX, &flat, len), 0);
	return flat;
}

/* Cut a block of block_len bytes into chunks of chunk_bytes and check every message. */
static void check_chunking(size_t block_len, size_t chunk_bytes)
{
	uint8_t *data = pattern(block_len);
	grpc_slice block = grpc_slice_new_with_user_data(data, block_len, free_block, data);
	size_t off = 0, nchunks = 0;

	while (off < block_len) {
		size_t len = tv_chunk_len(block_len, off, chunk_bytes), zlen, plen, copied;
		grpc_byte_buffer *zc, *packed;
		Tracevault__V1__WriteRequest *req;
		uint8_t *zflat, *pflat;
		uint32_t crc, crc2;

		assert_true(len > 0 && len <= chunk_bytes);
		assert_int_equal(tv_chunk_message(block, BLOCK_ID, off, len, TV_CHUNK_ZEROCOPY, 0,
						  &zc, &crc, &copied), 0);
		assert_int_equal(copied, 0);
		assert_int_equal(crc, tv_crc32c(data + off, len));
		/* zero-copy: two slices, the payload one pointing into the block itself */
		assert_int_equal(zc->data.raw.slice_buffer.count, 2);
		assert_ptr_equal(GRPC_SLICE_START_PTR(zc->data.raw.slice_buffer.slices[1]),
				 data + off);
		assert_int_equal(GRPC_SLICE_LENGTH(zc->data.raw.slice_buffer.slices[1]), len);

		zflat = flatten(zc, &zlen);
		req = tracevault__v1__write_request__unpack(NULL, zlen, zflat);
		assert_non_null(req);
		assert_int_equal(req->value_case, TRACEVAULT__V1__WRITE_REQUEST__VALUE_CHUNK);
		assert_int_equal(req->chunk->block_id, BLOCK_ID);
		assert_int_equal(req->chunk->offset, off);
		assert_int_equal(req->chunk->crc32c, crc);
		assert_int_equal(req->chunk->data.len, len);
		assert_memory_equal(req->chunk->data.data, data + off, len);
		assert_int_equal(tv_crc32c(req->chunk->data.data, len), crc);
		tracevault__v1__write_request__free_unpacked(req, NULL);

		/* --no-zerocopy: one packed slice, byte-identical, payload counted as copied */
		assert_int_equal(tv_chunk_message(block, BLOCK_ID, off, len, TV_CHUNK_PACKED, 0,
						  &packed, &crc2, &copied), 0);
		assert_int_equal(copied, len);
		assert_int_equal(crc2, crc);
		pflat = flatten(packed, &plen);
		assert_int_equal(plen, zlen);
		assert_memory_equal(pflat, zflat, zlen);

		free(zflat);
		free(pflat);
		grpc_byte_buffer_destroy(zc);
		grpc_byte_buffer_destroy(packed);
		off += len;
		nchunks++;
	}
	assert_int_equal(off, block_len); /* covered exactly, ending on the last byte */
	assert_int_equal(nchunks, (block_len + chunk_bytes - 1) / chunk_bytes);
	grpc_slice_unref(block); /* the last ref: frees data (ASan would flag a leak or reuse) */
}

static void test_chunks_cover_block_in_order_last_short(void **state)
{
	(void)state;
	assert_int_equal(tv_chunk_len(10000, 8192, 4096), 1808); /* the short last chunk */
	check_chunking(10000, 4096);
	check_chunking(3u << 20, 1u << 20); /* exact multiple: no empty tail chunk */
	check_chunking((3u << 20) + 1, 1u << 20);
}

static void test_chunk_bytes_one(void **state)
{
	(void)state;
	check_chunking(300, 1); /* tiny sub-slices must still share the block, not copy */
}

static void test_block_smaller_than_a_chunk(void **state)
{
	(void)state;
	check_chunking(64, 1u << 20);
}

static void test_corrupt_chunk_flips_one_bit_after_crc(void **state)
{
	size_t len = 4096, flen, copied, diff = 0;
	uint8_t *data = pattern(len);
	grpc_slice block = grpc_slice_new_with_user_data(data, len, free_block, data);
	Tracevault__V1__WriteRequest *req;
	grpc_byte_buffer *bb;
	uint8_t *flat;
	uint32_t crc;

	(void)state;
	assert_int_equal(tv_chunk_message(block, BLOCK_ID, 0, len, TV_CHUNK_ZEROCOPY, 1, &bb, &crc,
					  &copied), 0);
	assert_int_equal(copied, len); /* the test path copies, and says so */
	flat = flatten(bb, &flen);
	req = tracevault__v1__write_request__unpack(NULL, flen, flat);
	assert_non_null(req);
	assert_int_equal(req->chunk->crc32c, tv_crc32c(data, len)); /* CRC of the good bytes */
	assert_int_not_equal(tv_crc32c(req->chunk->data.data, len), req->chunk->crc32c);
	for (size_t i = 0; i < len; i++)
		diff += __builtin_popcount(req->chunk->data.data[i] ^ data[i]);
	assert_int_equal(diff, 1);
	tracevault__v1__write_request__free_unpacked(req, NULL);
	free(flat);
	grpc_byte_buffer_destroy(bb);
	{
		uint8_t *orig = pattern(len);

		assert_memory_equal(data, orig, len); /* the shared block itself is untouched */
		free(orig);
	}
	grpc_slice_unref(block);
}

static void test_range_outside_block_is_rejected(void **state)
{
	uint8_t data[16] = {0};
	grpc_slice block = grpc_slice_from_static_buffer(data, sizeof(data));
	grpc_byte_buffer *bb;
	size_t copied;
	uint32_t crc;

	(void)state;
	assert_int_equal(tv_chunk_message(block, 1, 10, 7, TV_CHUNK_ZEROCOPY, 0, &bb, &crc,
					  &copied), -EINVAL);
	assert_null(bb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunks_cover_block_in_order_last_short),
		cmocka_unit_test(test_chunk_bytes_one),
		cmocka_unit_test(test_block_smaller_than_a_chunk),
		cmocka_unit_test(test_corrupt_chunk_flips_one_bit_after_crc),
		cmocka_unit_test(test_range_outside_block_is_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
