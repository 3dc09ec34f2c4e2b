/* Build the WriteRequests that store one Export's spans (see otlp_export.h) and the Export's
 * replies. The block is sealed here once, version 3 with zstd like the capture client's, and
 * cut into chunks of at most TV_OTLP_CHUNK_BYTES; the segment then checks it exactly as it
 * checks a block a client sent (proto/block_check.c). */
#include "server/otlp_export.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "proto/block.h"
#include "proto/crc32c.h"
#include "proto/wire.h"

const struct tv_limit tv_otlp_max_pending_bytes_limit = { .min = 64u << 10,
							  .max = 4ull << 30 };

/* Chunk payload per WriteRequest; smaller when --max-message-bytes is (room for the prefix). */
#define TV_OTLP_CHUNK_BYTES (1u << 20)
#define CHUNK_PREFIX_ROOM 64

/* A random non-zero id (segment and block ids must be unique per server: 64 random bits). */
static uint64_t random_id(void)
{
	uint64_t v = 0;

	while (v == 0)
		if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
			v = 0;
	return v;
}

static int push(struct tv_otlp_write *w, const ProtobufCMessage *m)
{
	return tv_wire_pack(m, &w->msgs[w->n++]) ? -ENOMEM : 0;
}

static int push_command(struct tv_otlp_write *w, Tracevault__V1__CommandType type,
			uint64_t block_id, uint64_t length)
{
	Tracevault__V1__WriteRequest req = TRACEVAULT__V1__WRITE_REQUEST__INIT;
	Tracevault__V1__WriteCommand cmd = TRACEVAULT__V1__WRITE_COMMAND__INIT;

	cmd.type = type;
	cmd.segment_id = w->segment_id;
	cmd.block_id = block_id;
	cmd.length = length;
	req.value_case = TRACEVAULT__V1__WRITE_REQUEST__VALUE_COMMAND;
	req.command = &cmd;
	return push(w, &req.base);
}

int tv_otlp_write_build(struct tv_otlp_spans *s, size_t max_message_bytes,
			struct tv_otlp_write *w, char *err, size_t errlen)
{
	struct tv_block_builder *b = tv_block_builder_new();
	size_t chunk = TV_OTLP_CHUNK_BYTES, nchunks;
	void *block = NULL;
	size_t block_len = 0;
	int ret;

	memset(w, 0, sizeof(*w));
	if (!b) {
		snprintf(err, errlen, "out of memory for the span block");
		return -ENOMEM;
	}
	for (size_t i = 0; i < s->n; i++) {
		ret = tv_block_builder_add(b, &s->recs[i]);
		if (ret == -E2BIG) {
			if (!s->rejected)
				snprintf(s->reject_msg, sizeof(s->reject_msg), "span %s: its record "
					 "passes %u bytes; spans like it were rejected",
					 s->recs[i].span_id, TV_BLOCK_MAX_RECORD_BYTES);
			s->rejected++;
			continue;
		}
		if (ret) {
			snprintf(err, errlen, "cannot add a span to its block: %s", strerror(-ret));
			goto out;
		}
	}
	ret = 0;
	if (tv_block_builder_count(b) == 0)
		goto out; /* nothing to store */
	w->block_id = random_id();
	w->segment_id = random_id();
	ret = tv_block_builder_seal(b, w->block_id, TV_CODEC_ZSTD, TV_BLOCK_DEFAULT_ZSTD_LEVEL,
				    &block, &block_len);
	if (ret) {
		snprintf(err, errlen, "cannot seal the span block: %s", strerror(-ret));
		goto out;
	}
	w->block_bytes = block_len;
	if (max_message_bytes > CHUNK_PREFIX_ROOM && max_message_bytes - CHUNK_PREFIX_ROOM < chunk)
		chunk = max_message_bytes - CHUNK_PREFIX_ROOM;
	nchunks = (block_len + chunk - 1) / chunk;
	w->msgs = calloc(nchunks + 3, sizeof(*w->msgs));
	if (!w->msgs) {
		ret = -ENOMEM;
		goto nomem;
	}
	if ((ret = push_command(w, TRACEVAULT__V1__COMMAND_TYPE__OPEN_SEGMENT, 0, 0)) ||
	    (ret = push_command(w, TRACEVAULT__V1__COMMAND_TYPE__OPEN_BLOCK, w->block_id,
				block_len)))
		goto nomem;
	for (size_t off = 0; off < block_len; off += chunk) {
		Tracevault__V1__WriteRequest req = TRACEVAULT__V1__WRITE_REQUEST__INIT;
		Tracevault__V1__Chunk c = TRACEVAULT__V1__CHUNK__INIT;
		size_t n = block_len - off < chunk ? block_len - off : chunk;

		c.block_id = w->block_id;
		c.offset = off;
		c.data.data = (uint8_t *)block + off;
		c.data.len = n;
		c.crc32c = tv_crc32c(c.data.data, n);
		req.value_case = TRACEVAULT__V1__WRITE_REQUEST__VALUE_CHUNK;
		req.chunk = &c;
		if ((ret = push(w, &req.base)))
			goto nomem;
	}
	if ((ret = push_command(w, TRACEVAULT__V1__COMMAND_TYPE__COMMIT, 0, 0)))
		goto nomem;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory framing the span block");
	tv_otlp_write_free(w);
out:
	free(block);
	tv_block_builder_free(b);
	return ret;
}

grpc_byte_buffer *tv_otlp_write_next(struct tv_otlp_write *w)
{
	return w->next < w->n ? w->msgs[w->next++] : NULL;
}

void tv_otlp_write_free(struct tv_otlp_write *w)
{
	for (size_t i = 0; w->msgs && i < w->n; i++)
		if (w->msgs[i])
			grpc_byte_buffer_destroy(w->msgs[i]);
	free(w->msgs);
	memset(w, 0, sizeof(*w));
}

int tv_otlp_pack_response(uint64_t rejected, const char *error_message,
			  grpc_byte_buffer **out)
{
	Tracevault__Otlp__V1__ExportTraceServiceResponse r =
		TRACEVAULT__OTLP__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
	Tracevault__Otlp__V1__ExportTracePartialSuccess ps =
		TRACEVAULT__OTLP__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;

	if (rejected) {
		ps.rejected_spans = (int64_t)rejected;
		ps.error_message = (char *)error_message;
		r.partial_success = &ps;
	}
	return tv_wire_pack(&r.base, out);
}

int tv_otlp_retry_details(const char *msg, unsigned delay_ms, grpc_slice *out)
{
	Tracevault__Otlp__V1__Duration d = TRACEVAULT__OTLP__V1__DURATION__INIT;
	Tracevault__Otlp__V1__RetryInfo ri = TRACEVAULT__OTLP__V1__RETRY_INFO__INIT;
	Tracevault__Otlp__V1__Any any = TRACEVAULT__OTLP__V1__ANY__INIT;
	Tracevault__Otlp__V1__Any *anys[1] = { &any };
	Tracevault__Otlp__V1__RpcStatus st = TRACEVAULT__OTLP__V1__RPC_STATUS__INIT;
	uint8_t ri_buf[64];
	size_t n;

	d.seconds = delay_ms / 1000;
	d.nanos = (int32_t)(delay_ms % 1000) * 1000000;
	ri.retry_delay = &d;
	any.type_url = "type.googleapis.com/google.rpc.RetryInfo";
	any.value.len = tracevault__otlp__v1__retry_info__pack(&ri, ri_buf);
	any.value.data = ri_buf;
	st.code = 8; /* RESOURCE_EXHAUSTED */
	st.message = (char *)msg;
	st.n_details = 1;
	st.details = anys;
	n = tracevault__otlp__v1__rpc_status__get_packed_size(&st);
	*out = grpc_slice_malloc(n);
	tracevault__otlp__v1__rpc_status__pack(&st, GRPC_SLICE_START_PTR(*out));
	return 0;
}
