/* cmocka tests for the server's zero-copy chunk parser (server/chunk_view.c): the prefix
 * tv_wire_chunk_prefix writes is found across slice boundaries without copying the payload, and
 * every other layout is left to protobuf-c (return 0) instead of being misread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <grpc/grpc.h>

#include "server/chunk_view.h"
#include "proto/crc32c.h"
#include "proto/wire.h"

/* A byte buffer of msg cut into slices of step bytes (like gRPC's ~64 KiB receive slices). */
static grpc_byte_buffer *sliced(const uint8_t *msg, size_t len, size_t step)
{
	grpc_slice s[256];
	size_t n = 0;
	grpc_byte_buffer *bb;

	for (size_t off = 0; off < len; off += step) {
		size_t l = len - off < step ? len - off : step;

		assert_true(n < 256);
		s[n++] = grpc_slice_from_copied_buffer((const char *)msg + off, l);
	}
	bb = grpc_raw_byte_buffer_create(s, n);
	for (size_t i = 0; i < n; i++)
		grpc_slice_unref(s[i]);
	return bb;
}

static void test_prefix_parsed_and_iovecs_point_into_slices(void **state)
{
	uint8_t msg[TV_CHUNK_PREFIX_MAX + 1000], data[1000], back[1000];
	struct tv_chunk_view v;
	(void)state;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	size_t p = tv_wire_chunk_prefix(msg, 0xabcdef, 4096, tv_crc32c(data, sizeof(data)),
					sizeof(data));
	memcpy(msg + p, data, sizeof(data));
	/* slices of 7 bytes: the prefix itself spans slices, the data starts mid-slice */
	for (size_t step = 1; step <= 301; step += 100) {
		grpc_byte_buffer *bb = sliced(msg, p + sizeof(data), step * 7);
		const grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;

		assert_int_equal(tv_chunk_view_parse(bb, &v), 1);
		assert_int_equal(v.block_id, 0xabcdef);
		assert_int_equal(v.offset, 4096);
		assert_int_equal(v.crc32c, tv_crc32c(data, sizeof(data)));
		assert_int_equal(v.data_len, sizeof(data));
		assert_int_equal(tv_iov_crc32c(0, v.iov, v.iovcnt, 0), v.crc32c);
		assert_int_equal(tv_iov_copy_out(v.iov, v.iovcnt, 0, back, sizeof(back)),
				 sizeof(back));
		assert_memory_equal(back, data, sizeof(data));
		/* zero-copy: the last iovec ends exactly where the view's ref of the last received
		 * slice ends, and for a refcounted slice that is the received memory itself */
		assert_ptr_equal((uint8_t *)v.iov[v.iovcnt - 1].iov_base +
					 v.iov[v.iovcnt - 1].iov_len,
				 GRPC_SLICE_END_PTR(v.slices[v.nslices - 1]));
		if (sb->slices[sb->count - 1].refcount)
			assert_ptr_equal(GRPC_SLICE_END_PTR(v.slices[v.nslices - 1]),
					 GRPC_SLICE_END_PTR(sb->slices[sb->count - 1]));
		grpc_byte_buffer_destroy(bb); /* the view's refs keep the bytes alive */
		assert_int_equal(tv_iov_crc32c(0, v.iov, v.iovcnt, 0), v.crc32c);
		tv_chunk_view_release(&v);
	}
}

/* Regression: a data slice of <= 23 bytes keeps its bytes inline in the grpc_slice struct.
 * The iovec must point into the view's own copy, not into the message, which the server
 * destroys while the io_uring write is still in flight (ASan reported the use after free). */
static void test_inline_data_slice_outlives_message(void **state)
{
	uint8_t prefix[TV_CHUNK_PREFIX_MAX], data[10] = "ABCDEFGHIJ", back[10];
	struct tv_chunk_view v;
	grpc_slice s[2];
	grpc_byte_buffer *bb;
	size_t plen;
	(void)state;

	plen = tv_wire_chunk_prefix(prefix, 0x8123456789abcdefull, 4096,
				    tv_crc32c(data, sizeof(data)), sizeof(data));
	s[0] = grpc_slice_from_copied_buffer((const char *)prefix, plen);
	s[1] = grpc_slice_from_copied_buffer((const char *)data, sizeof(data));
	assert_null(s[1].refcount); /* the case under test: inlined */
	bb = grpc_raw_byte_buffer_create(s, 2);
	grpc_slice_unref(s[0]);
	grpc_slice_unref(s[1]);
	assert_int_equal(tv_chunk_view_parse(bb, &v), 1);
	grpc_byte_buffer_destroy(bb);
	assert_int_equal(tv_iov_copy_out(v.iov, v.iovcnt, 0, back, sizeof(back)), sizeof(back));
	assert_memory_equal(back, data, sizeof(data));
	tv_chunk_view_release(&v);
}

static void test_other_layouts_go_to_protobuf_c(void **state)
{
	static const struct {
		const char *what;
		const uint8_t *msg;
		size_t len;
	} cases[] = {
		{ "a command", (const uint8_t *)"\x0a\x02\x08\x01", 4 },
		{ "data before the scalars", (const uint8_t *)"\x12\x06\x22\x02hi\x08\x05", 8 },
		{ "an unknown field", (const uint8_t *)"\x12\x05\x28\x01\x22\x01x", 7 },
		{ "chunk length past the end", (const uint8_t *)"\x12\x09\x08\x01", 4 },
		{ "data length past the end", (const uint8_t *)"\x12\x04\x22\x09xy", 6 },
		{ "a truncated varint", (const uint8_t *)"\x12\x02\x08\xff", 4 },
		{ "crc32c above 32 bits", (const uint8_t *)"\x12\x06\x18\xff\xff\xff\xff\x1f", 8 },
		{ "two WriteRequest fields", (const uint8_t *)"\x12\x00\x0a\x00", 4 },
	};
	struct tv_chunk_view v;
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		grpc_byte_buffer *bb = sliced(cases[i].msg, cases[i].len, 3);

		print_message("case: %s\n", cases[i].what);
		assert_int_equal(tv_chunk_view_parse(bb, &v), 0);
		assert_null(v.slices);
		grpc_byte_buffer_destroy(bb);
	}
}

static void test_empty_chunk_has_no_data(void **state)
{
	/* proto3 omits an empty data field: block_id 3, offset 64, nothing else */
	const uint8_t msg[] = { 0x12, 0x04, 0x08, 0x03, 0x10, 0x40 };
	grpc_byte_buffer *bb = sliced(msg, sizeof(msg), sizeof(msg));
	struct tv_chunk_view v;
	(void)state;

	assert_int_equal(tv_chunk_view_parse(bb, &v), 1);
	assert_int_equal(v.block_id, 3);
	assert_int_equal(v.offset, 64);
	assert_int_equal(v.data_len, 0);
	assert_int_equal(v.iovcnt, 0);
	tv_chunk_view_release(&v);
	grpc_byte_buffer_destroy(bb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prefix_parsed_and_iovecs_point_into_slices),
		cmocka_unit_test(test_inline_data_slice_outlives_message),
		cmocka_unit_test(test_other_layouts_go_to_protobuf_c),
		cmocka_unit_test(test_empty_chunk_has_no_data),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
