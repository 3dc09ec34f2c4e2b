/* The Write stream protocol for one segment: every chunk is checked (offset, CRC32C) and
 * written to its block's temp file; each complete block's header and payload CRC are verified;
 * COMMIT makes the segment durable and visible atomically (fdatasync, rename, one catalog
 * transaction) before it is acknowledged. Any failure deletes everything of the segment. */
#include "segment.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "block.h"
#include "crc32c.h"
#include "wire.h"

enum seg_state { SEG_OPEN, SEG_COMMITTED, SEG_ABORTED };

struct seg_block {
	uint64_t block_id;
	uint64_t length;   /* from OPEN_BLOCK */
	uint64_t received; /* contiguous bytes written so far */
	struct tv_store_file *file; /* NULL once published or aborted */
	uint8_t hdr[TV_BLOCK_HEADER_BYTES];
	struct tv_block_header h;
	int hdr_ok;
	uint32_t payload_crc; /* running CRC32C over bytes [64, received) */
	int complete, synced;
};

struct tv_segment {
	struct tv_catalog *catalog;
	struct tv_store *store;
	size_t max_message_bytes;
	uint64_t segment_id;
	enum seg_state state;
	struct seg_block *blocks;
	size_t n, cap;
};

#define ERR_PREFIX_FMT "segment %016llx: "

struct tv_segment *tv_segment_new(struct tv_catalog *c, struct tv_store *s,
				  size_t max_message_bytes)
{
	struct tv_segment *seg = calloc(1, sizeof(*seg));

	if (!seg)
		return NULL;
	seg->catalog = c;
	seg->store = s;
	seg->max_message_bytes = max_message_bytes;
	return seg;
}

static size_t drop_temp_files(struct tv_segment *seg)
{
	size_t removed = 0;

	for (size_t i = 0; i < seg->n; i++) {
		if (seg->blocks[i].file) {
			tv_store_abort(seg->store, seg->blocks[i].file);
			seg->blocks[i].file = NULL;
			removed++;
		}
	}
	return removed;
}

size_t tv_segment_abort(struct tv_segment *seg, const char *why)
{
	size_t removed;

	if (seg->state != SEG_OPEN)
		return 0;
	removed = drop_temp_files(seg);
	seg->state = SEG_ABORTED;
	if (seg->segment_id)
		fprintf(stderr, "segment %016llx aborted: %s (%zu temp blocks deleted)\n",
			(unsigned long long)seg->segment_id, why, removed);
	return removed;
}

void tv_segment_free(struct tv_segment *seg)
{
	if (!seg)
		return;
	tv_segment_abort(seg, "stream closed");
	drop_temp_files(seg);
	free(seg->blocks);
	free(seg);
}

uint64_t tv_segment_id(const struct tv_segment *seg)
{
	return seg->segment_id;
}

int tv_segment_is_open(const struct tv_segment *seg)
{
	return seg->state == SEG_OPEN;
}

/* End the stream with an error: the segment's temp data goes, the message names the segment. */
static void fail(struct tv_segment *seg, struct tv_segment_step *step, grpc_status_code code,
		 const char *fmt, ...)
{
	char reason[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (step->response) {
		grpc_byte_buffer_destroy(step->response);
		step->response = NULL;
	}
	step->finished = 1;
	step->code = code;
	if (seg->segment_id)
		snprintf(step->msg, sizeof(step->msg), ERR_PREFIX_FMT "%s",
			 (unsigned long long)seg->segment_id, reason);
	else
		snprintf(step->msg, sizeof(step->msg), "%s", reason);
	tv_segment_abort(seg, reason);
	seg->state = SEG_ABORTED;
}

static grpc_status_code errno_code(int err)
{
	switch (err) {
	case -ENOSPC:
	case -EDQUOT:
	case -EFBIG:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case -EEXIST:
		return GRPC_STATUS_ALREADY_EXISTS;
	default:
		return GRPC_STATUS_INTERNAL;
	}
}

static void respond(struct tv_segment_step *step, uint64_t block_id, uint64_t offset,
		    const uint64_t *committed, size_t ncommitted)
{
	Tracevault__V1__WriteResponse r = TRACEVAULT__V1__WRITE_RESPONSE__INIT;

	r.block_id = block_id;
	r.offset = offset;
	r.committed = committed != NULL;
	r.committed_block_ids = (uint64_t *)committed;
	r.n_committed_block_ids = ncommitted;
	if (tv_wire_pack(&r.base, &step->response))
		step->response = NULL; /* an ack lost to ENOMEM: the final reply still decides */
}

static struct seg_block *current(struct tv_segment *seg)
{
	return seg->n ? &seg->blocks[seg->n - 1] : NULL;
}

static void open_block(struct tv_segment *seg, const Tracevault__V1__WriteCommand *cmd,
		       struct tv_segment_step *step)
{
	struct seg_block *cur = current(seg), *b;
	int ret;

	if (cmd->block_id == 0)
		return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT, "OPEN_BLOCK needs block_id != 0");
	if (cur && !cur->complete)
		return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
			    "OPEN_BLOCK %016llx while block %016llx is incomplete (%llu of %llu bytes)",
			    (unsigned long long)cmd->block_id, (unsigned long long)cur->block_id,
			    (unsigned long long)cur->received, (unsigned long long)cur->length);
	if (cmd->length < TV_BLOCK_HEADER_BYTES)
		return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
			    "block %016llx: length %llu is shorter than the %d-byte header",
			    (unsigned long long)cmd->block_id, (unsigned long long)cmd->length,
			    TV_BLOCK_HEADER_BYTES);
	if (cmd->length > TV_SERVER_MAX_BLOCK_BYTES)
		return fail(seg, step, GRPC_STATUS_RESOURCE_EXHAUSTED,
			    "block %016llx: length %llu exceeds the server limit of %u bytes",
			    (unsigned long long)cmd->block_id, (unsigned long long)cmd->length,
			    TV_SERVER_MAX_BLOCK_BYTES);
	if (seg->n == TV_SERVER_MAX_SEGMENT_BLOCKS)
		return fail(seg, step, GRPC_STATUS_RESOURCE_EXHAUSTED,
			    "more than %d blocks in one segment", TV_SERVER_MAX_SEGMENT_BLOCKS);
	for (size_t i = 0; i < seg->n; i++)
		if (seg->blocks[i].block_id == cmd->block_id)
			return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
				    "block %016llx opened twice in one segment",
				    (unsigned long long)cmd->block_id);
	ret = tv_catalog_contains(seg->catalog, cmd->block_id);
	if (ret)
		return fail(seg, step, ret > 0 ? GRPC_STATUS_ALREADY_EXISTS : GRPC_STATUS_INTERNAL,
			    ret > 0 ? "block %016llx is already committed" :
				      "block %016llx: catalog lookup failed",
			    (unsigned long long)cmd->block_id);
	if (seg->n == seg->cap) {
		size_t ncap = seg->cap ? seg->cap * 2 : 8;
		struct seg_block *p = realloc(seg->blocks, ncap * sizeof(*p));

		if (!p)
			return fail(seg, step, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		seg->blocks = p;
		seg->cap = ncap;
	}
	b = &seg->blocks[seg->n];
	memset(b, 0, sizeof(*b));
	b->block_id = cmd->block_id;
	b->length = cmd->length;
	b->payload_crc = 0; /* CRC32C of zero bytes; extended as payload arrives */
	ret = tv_store_create_temp(seg->store, seg->segment_id, b->block_id, &b->file);
	if (ret)
		return fail(seg, step, errno_code(ret),
			    ret == -EEXIST ? "block %016llx is already being written by another stream"
					   : "block %016llx: cannot create temp file: %s",
			    (unsigned long long)b->block_id, strerror(-ret));
	seg->n++;
}

/* Check the header once its 64 bytes are in: fail fast on a block that cannot be valid. */
static int check_header(struct tv_segment *seg, struct seg_block *b, struct tv_segment_step *step)
{
	char why[160];

	if (tv_block_header_parse(b->hdr, sizeof(b->hdr), &b->h, why, sizeof(why))) {
		fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT, "block %016llx: %s",
		     (unsigned long long)b->block_id, why);
		return -1;
	}
	if (b->h.block_id != b->block_id) {
		fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
		     "block %016llx: header carries block id %016llx",
		     (unsigned long long)b->block_id, (unsigned long long)b->h.block_id);
		return -1;
	}
	if (tv_block_total_bytes(&b->h) != b->length) {
		fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
		     "block %016llx: header says %llu bytes, OPEN_BLOCK said %llu",
		     (unsigned long long)b->block_id,
		     (unsigned long long)tv_block_total_bytes(&b->h), (unsigned long long)b->length);
		return -1;
	}
	if (b->h.max_ts_ns > TV_CATALOG_MAX_TS_NS) {
		fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
		     "block %016llx: max_ts_ns %llu beyond the supported 2^63-1",
		     (unsigned long long)b->block_id, (unsigned long long)b->h.max_ts_ns);
		return -1;
	}
	b->hdr_ok = 1;
	return 0;
}

static void chunk(struct tv_segment *seg, const Tracevault__V1__Chunk *c,
		  struct tv_segment_step *step)
{
	struct seg_block *b = current(seg);
	const uint8_t *data = c->data.data;
	size_t len = c->data.len;
	struct iovec iov;
	uint32_t crc;
	int ret;

	if (!b || b->complete || c->block_id != b->block_id)
		return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
			    "chunk for block %016llx, but no such block is open",
			    (unsigned long long)c->block_id);
	if (c->offset != b->received)
		return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
			    "block %016llx: chunk at offset %llu, expected %llu",
			    (unsigned long long)b->block_id, (unsigned long long)c->offset,
			    (unsigned long long)b->received);
	if (len > b->length - b->received)
		return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
			    "block %016llx: chunk of %zu bytes at %llu overruns its length %llu",
			    (unsigned long long)b->block_id, len, (unsigned long long)c->offset,
			    (unsigned long long)b->length);
	crc = tv_crc32c(data, len);
	if (crc != c->crc32c)
		return fail(seg, step, GRPC_STATUS_DATA_LOSS,
			    "block %016llx: chunk at offset %llu has CRC32C 0x%08x, sender said 0x%08x",
			    (unsigned long long)b->block_id, (unsigned long long)c->offset, crc,
			    c->crc32c);
	iov.iov_base = (void *)data;
	iov.iov_len = len;
	ret = tv_store_writev(seg->store, b->file, b->received, &iov, 1);
	if (ret)
		return fail(seg, step, errno_code(ret), "block %016llx: write temp file: %s",
			    (unsigned long long)b->block_id, strerror(-ret));
	/* split the bytes between the header copy and the running payload CRC */
	if (b->received < TV_BLOCK_HEADER_BYTES) {
		size_t h = TV_BLOCK_HEADER_BYTES - b->received;

		if (h > len)
			h = len;
		memcpy(b->hdr + b->received, data, h);
		data += h;
		len -= h;
		b->received += h;
		if (b->received == TV_BLOCK_HEADER_BYTES && check_header(seg, b, step))
			return;
	}
	b->payload_crc = tv_crc32c_extend(b->payload_crc, data, len);
	b->received += len;
	if (b->received < b->length)
		return;
	if (b->payload_crc != b->h.payload_crc32c)
		return fail(seg, step, GRPC_STATUS_DATA_LOSS,
			    "block %016llx: payload CRC32C 0x%08x, header says 0x%08x",
			    (unsigned long long)b->block_id, b->payload_crc, b->h.payload_crc32c);
	b->complete = 1;
	respond(step, b->block_id, b->length, NULL, 0);
}

/* fdatasync every complete block not yet synced, as one io_uring submission. */
static int sync_complete(struct tv_segment *seg, uint64_t *durable_bytes)
{
	struct tv_store_file **files;
	size_t k = 0;
	int ret;

	files = calloc(seg->n ? seg->n : 1, sizeof(*files));
	if (!files)
		return -ENOMEM;
	for (size_t i = 0; i < seg->n; i++)
		if (seg->blocks[i].complete && !seg->blocks[i].synced)
			files[k++] = seg->blocks[i].file;
	ret = tv_store_sync(seg->store, files, k);
	free(files);
	if (ret)
		return ret;
	*durable_bytes = 0;
	for (size_t i = 0; i < seg->n; i++) {
		if (seg->blocks[i].complete) {
			seg->blocks[i].synced = 1;
			*durable_bytes += seg->blocks[i].length;
		}
	}
	return 0;
}

static void commit(struct tv_segment *seg, struct tv_segment_step *step)
{
	struct tv_catalog_block *rows = NULL;
	struct tv_store_file **files = NULL;
	uint64_t *ids = NULL, durable = 0, records = 0;
	char why[200];
	int ret;

	for (size_t i = 0; i < seg->n; i++) {
		if (!seg->blocks[i].complete)
			return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
				    "COMMIT with block %016llx incomplete (%llu of %llu bytes)",
				    (unsigned long long)seg->blocks[i].block_id,
				    (unsigned long long)seg->blocks[i].received,
				    (unsigned long long)seg->blocks[i].length);
		ret = tv_catalog_contains(seg->catalog, seg->blocks[i].block_id);
		if (ret)
			return fail(seg, step,
				    ret > 0 ? GRPC_STATUS_ALREADY_EXISTS : GRPC_STATUS_INTERNAL,
				    ret > 0 ? "block %016llx is already committed" :
					      "block %016llx: catalog lookup failed",
				    (unsigned long long)seg->blocks[i].block_id);
	}
	rows = calloc(seg->n ? seg->n : 1, sizeof(*rows));
	files = calloc(seg->n ? seg->n : 1, sizeof(*files));
	ids = calloc(seg->n ? seg->n : 1, sizeof(*ids));
	if (!rows || !files || !ids) {
		fail(seg, step, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory at COMMIT");
		goto out;
	}
	ret = sync_complete(seg, &durable);
	if (ret) {
		fail(seg, step, errno_code(ret), "fdatasync of temp files: %s", strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < seg->n; i++) {
		const struct seg_block *b = &seg->blocks[i];

		files[i] = b->file;
		ids[i] = b->block_id;
		rows[i] = (struct tv_catalog_block){ .block_id = b->block_id,
						     .segment_id = seg->segment_id,
						     .min_ts_ns = b->h.min_ts_ns,
						     .max_ts_ns = b->h.max_ts_ns,
						     .record_count = b->h.record_count,
						     .bytes = b->length };
		records += b->h.record_count;
	}
	ret = tv_store_publish(seg->store, files, seg->n);
	if (ret) {
		fail(seg, step, errno_code(ret), "rename into blocks/: %s", strerror(-ret));
		goto out;
	}
	/* the files now live in blocks/ and are closed: from here the segment owns none */
	for (size_t i = 0; i < seg->n; i++)
		seg->blocks[i].file = NULL;
	ret = tv_catalog_commit_segment(seg->catalog, rows, seg->n, why, sizeof(why));
	if (ret) {
		/* nothing became visible: take the renamed files back out */
		for (size_t i = 0; i < seg->n; i++)
			tv_store_remove_block(seg->store, ids[i]);
		tv_store_sync_blocks_dir(seg->store);
		fail(seg, step, errno_code(ret), "%s", why);
		goto out;
	}
	seg->state = SEG_COMMITTED;
	fprintf(stderr, "segment %016llx committed: %zu blocks, %llu records, %llu bytes\n",
		(unsigned long long)seg->segment_id, seg->n, (unsigned long long)records,
		(unsigned long long)durable);
	respond(step, 0, durable, ids, seg->n);
	step->finished = 1;
	step->code = GRPC_STATUS_OK;
out:
	free(rows);
	free(files);
	free(ids);
}

static void command(struct tv_segment *seg, const Tracevault__V1__WriteCommand *cmd,
		    struct tv_segment_step *step)
{
	uint64_t durable = 0;
	int ret;

	if (cmd->type == TRACEVAULT__V1__COMMAND_TYPE__OPEN_SEGMENT) {
		if (seg->segment_id)
			return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT, "OPEN_SEGMENT sent twice");
		if (cmd->segment_id == 0)
			return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
				    "OPEN_SEGMENT needs segment_id != 0");
		seg->segment_id = cmd->segment_id;
		return;
	}
	if (!seg->segment_id)
		return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
			    "the first request of a Write stream must be OPEN_SEGMENT");
	switch (cmd->type) {
	case TRACEVAULT__V1__COMMAND_TYPE__OPEN_BLOCK:
		return open_block(seg, cmd, step);
	case TRACEVAULT__V1__COMMAND_TYPE__FLUSH:
		ret = sync_complete(seg, &durable);
		if (ret)
			return fail(seg, step, errno_code(ret), "fdatasync of temp files: %s",
				    strerror(-ret));
		return respond(step, 0, durable, NULL, 0);
	case TRACEVAULT__V1__COMMAND_TYPE__COMMIT:
		return commit(seg, step);
	case TRACEVAULT__V1__COMMAND_TYPE__CANCEL:
		tv_segment_abort(seg, "CANCEL from the client");
		step->finished = 1;
		step->code = GRPC_STATUS_OK;
		snprintf(step->msg, sizeof(step->msg), ERR_PREFIX_FMT "cancelled",
			 (unsigned long long)seg->segment_id);
		return;
	default:
		return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT, "unknown command type %d",
			    (int)cmd->type);
	}
}

void tv_segment_on_message(struct tv_segment *seg, grpc_byte_buffer *bb,
			   struct tv_segment_step *step)
{
	Tracevault__V1__WriteRequest *req = NULL;
	uint8_t *flat = NULL;
	size_t len = 0;
	int ret;

	memset(step, 0, sizeof(*step));
	if (seg->state != SEG_OPEN)
		return fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
			    "request after the segment was committed or abandoned");
	/* the skeleton flattens and unpacks; the zero-copy path (prefix parse + slices straight
	 * to tv_store_writev) replaces this without changing the store API */
	ret = tv_wire_flatten(bb, seg->max_message_bytes, &flat, &len);
	if (ret)
		return fail(seg, step, ret == -EMSGSIZE ? GRPC_STATUS_RESOURCE_EXHAUSTED :
							  GRPC_STATUS_INTERNAL,
			    "cannot read request: %s", strerror(-ret));
	req = tracevault__v1__write_request__unpack(NULL, len, flat);
	if (!req) {
		fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
		     "request is not a valid WriteRequest protobuf (%zu bytes)", len);
		goto out;
	}
	switch (req->value_case) {
	case TRACEVAULT__V1__WRITE_REQUEST__VALUE_COMMAND:
		command(seg, req->command, step);
		break;
	case TRACEVAULT__V1__WRITE_REQUEST__VALUE_CHUNK:
		if (!seg->segment_id)
			fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
			     "the first request of a Write stream must be OPEN_SEGMENT");
		else
			chunk(seg, req->chunk, step);
		break;
	default:
		fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
		     "WriteRequest carries neither a command nor a chunk");
		break;
	}
out:
	if (req)
		tracevault__v1__write_request__free_unpacked(req, NULL);
	free(flat);
}

void tv_segment_on_end(struct tv_segment *seg, struct tv_segment_step *step)
{
	memset(step, 0, sizeof(*step));
	step->finished = 1;
	if (seg->state == SEG_COMMITTED)
		return;
	fail(seg, step, GRPC_STATUS_INVALID_ARGUMENT,
	     "stream ended without COMMIT: segment discarded");
}
