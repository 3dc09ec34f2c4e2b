/* The Write stream protocol for one segment: every chunk is checked (offset, CRC32C) and
 * written to its block's temp file; each block's header, payload CRC and whole content (every
 * record, proto/block_check.h) are verified as its bytes arrive; a complete block is
 * fdatasynced as soon as its writes are done and its descriptor closed; COMMIT makes the
 * segment visible atomically (rename, one catalog transaction) once every block is synced,
 * before it is acknowledged. Any failure deletes everything of the segment. */
#include "server/segment.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "common/clock.h"
#include "common/metrics.h"
#include "proto/block.h"
#include "proto/block_check.h"
#include "proto/block_v3.h"
#include "server/chunk_view.h"
#include "server/status.h"
#include "proto/crc32c.h"
#include "proto/wire.h"

enum seg_state { SEG_OPEN, SEG_COMMITTED, SEG_ABORTED };
/* PENDING_QUEUED: COMMIT is ready and the segment waits in its tv_commit_queue (or is in the
 * group being committed) */
/* PENDING_PERSIST: COMMIT is ready and the segment's blocks and manifest are being copied to
 * the under-store (cache-through); it joins the queue when they are all there */
enum pending { PENDING_NONE, PENDING_FLUSH, PENDING_COMMIT, PENDING_PERSIST, PENDING_QUEUED };

struct seg_block {
	uint64_t block_id;
	uint64_t length;   /* from OPEN_BLOCK */
	uint64_t received; /* contiguous bytes accepted (checked and submitted) so far */
	struct tv_store_file *file; /* NULL once published or aborted */
	uint8_t hdr[TV_BLOCK_MAX_HEADER_BYTES];
	struct tv_block_header h;
	uint32_t hdr_bytes;   /* header length once its version is in; 0 before */
	int hdr_checked;
	uint32_t payload_crc; /* running CRC32C over bytes [hdr_bytes, received) */
	int complete, synced;
	int holds_fd;         /* file's descriptor is open (from OPEN_BLOCK until synced) */
};

/* One write or fdatasync in flight. Queued in submission order so acks go out in block order
 * even when the kernel completes writes out of order. */
struct seg_io {
	struct tv_store_op op;
	struct tv_segment *seg; /* NULL once the segment is freed: the op only cleans up */
	size_t bi;              /* index in seg->blocks */
	uint64_t end_offset;    /* block bytes written once this write is done */
	size_t len;
	int is_sync, completed, res;
	struct tv_chunk_view view; /* the received slices the write reads from */
	struct seg_io *next;
};

struct tv_segment {
	struct tv_catalog *catalog;
	struct tv_store *store;
	size_t max_message_bytes;
	const struct tv_segment_sink *sink;
	void *arg;
	struct tv_segment_stats *stats;
	uint64_t segment_id;
	uint64_t writer_token; /* of OPEN_SEGMENT; a Delete of the segment must present it */
	int reserved;          /* segment_id is this stream's in the catalog (until it ends) */
	enum seg_state state;
	enum pending pending;
	struct seg_block *blocks;
	size_t n, cap;
	struct seg_io *io_head, *io_tail; /* in flight, or done behind one that is not */
	size_t inflight_ops, inflight_bytes;
	size_t open_files; /* blocks with holds_fd */
	/* the open block's content check, reused block after block; its memory is bounded by
	 * block_check.h's limits (one zstd window, one record) and freed with the segment */
	struct tv_block_check *check;
	struct tv_commit_queue *q;
	struct tv_segment *q_prev, *q_next; /* in q while pending == PENDING_QUEUED */
	int queued;
	uint64_t commit_mono_ns; /* when COMMIT arrived (the commit latency metric) */
	/* cache-through (UNDERSTORE.md "Write path"): the persist in flight (PENDING_PERSIST), and
	 * whether the segment's objects are in S3, under the keys of oldest_ts_ns; a segment that
	 * fails or is aborted after that has them deleted (tv_segment_abort) */
	struct tv_persist_job *persist_job;
	int persisted;
	uint64_t oldest_ts_ns;
};

#define ERR_PREFIX_FMT "segment %016llx: "

static void io_done(struct tv_store_op *op, int res);

struct tv_segment *tv_segment_new(struct tv_catalog *c, struct tv_store *s,
				  size_t max_message_bytes, const struct tv_segment_sink *sink,
				  void *arg, struct tv_segment_stats *stats,
				  struct tv_commit_queue *q)
{
	struct tv_segment *seg = calloc(1, sizeof(*seg));

	if (!seg)
		return NULL;
	seg->catalog = c;
	seg->store = s;
	seg->max_message_bytes = max_message_bytes;
	seg->sink = sink;
	seg->arg = arg;
	seg->stats = stats;
	seg->q = q;
	return seg;
}

/* The block's descriptor is closed (its data synced, or the file aborted or published). */
static void fd_closed(struct tv_segment *seg, struct seg_block *b)
{
	if (b->holds_fd) {
		b->holds_fd = 0;
		seg->open_files--;
	}
}

static size_t drop_temp_files(struct tv_segment *seg)
{
	size_t removed = 0;

	for (size_t i = 0; i < seg->n; i++) {
		if (seg->blocks[i].file) {
			tv_store_abort(seg->store, seg->blocks[i].file);
			seg->blocks[i].file = NULL;
			fd_closed(seg, &seg->blocks[i]);
			removed++;
		}
	}
	return removed;
}

/* The segment id is no longer this stream's: committed (its row is in the catalog now) or
 * abandoned (another stream may use it; nothing of it was kept). */
static void release_id(struct tv_segment *seg)
{
	if (seg->reserved)
		tv_catalog_segment_close(seg->catalog, seg->segment_id);
	seg->reserved = 0;
}

static void dequeue(struct tv_segment *seg)
{
	struct tv_commit_queue *q = seg->q;

	if (!seg->queued)
		return;
	if (seg->q_prev)
		seg->q_prev->q_next = seg->q_next;
	else
		q->head = seg->q_next;
	if (seg->q_next)
		seg->q_next->q_prev = seg->q_prev;
	else
		q->tail = seg->q_prev;
	seg->q_prev = seg->q_next = NULL;
	seg->queued = 0;
	q->n--;
}

static void enqueue(struct tv_segment *seg)
{
	struct tv_commit_queue *q = seg->q;

	seg->q_prev = q->tail;
	seg->q_next = NULL;
	if (q->tail)
		q->tail->q_next = seg;
	else
		q->head = seg;
	q->tail = seg;
	seg->queued = 1;
	q->n++;
}

size_t tv_segment_abort(struct tv_segment *seg, const char *why)
{
	size_t removed;

	dequeue(seg); /* a queued segment aborted (cancel, Delete, shutdown) leaves its queue */
	if (seg->state != SEG_OPEN)
		return 0;
	if (seg->persist_job) { /* its objects are deleted once the put is done */
		tv_persist_detach(seg->persist_job);
		seg->persist_job = NULL;
	}
	if (seg->persisted) { /* in S3, never acknowledged: nothing of it may stay there */
		int jr = tv_catalog_under_deleting(seg->catalog, seg->segment_id,
						   seg->oldest_ts_ns);

		if (jr) /* its 'uploading' row stays: the next start deletes it all the same */
			fprintf(stderr, "segment %016llx: the under-store's journal: %s\n",
				(unsigned long long)seg->segment_id, strerror(-jr));
		seg->persisted = 0;
		if (tv_persist_delete_segment(seg->stats->under, seg->segment_id,
					      seg->oldest_ts_ns))
			fprintf(stderr, "segment %016llx: cannot queue its delete from S3: out of "
				"memory\n", (unsigned long long)seg->segment_id);
	}
	removed = drop_temp_files(seg);
	release_id(seg);
	seg->state = SEG_ABORTED;
	seg->pending = PENDING_NONE;
	if (seg->segment_id)
		tv_metric_add(&seg->stats->metrics->segments_aborted, 1);
	if (seg->segment_id)
		fprintf(stderr, "segment %016llx aborted: %s; removed %zu temp files\n",
			(unsigned long long)seg->segment_id, why, removed);
	return removed;
}

static void io_free(struct seg_io *io)
{
	tv_chunk_view_release(&io->view);
	free(io);
}

void tv_segment_free(struct tv_segment *seg)
{
	if (!seg)
		return;
	tv_segment_abort(seg, "stream closed");
	drop_temp_files(seg);
	/* ops the kernel still holds are detached and free themselves on completion */
	while (seg->io_head) {
		struct seg_io *io = seg->io_head;

		seg->io_head = io->next;
		if (io->completed)
			io_free(io);
		else
			io->seg = NULL;
	}
	tv_block_check_free(seg->check);
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

static struct seg_block *current(struct tv_segment *seg);

/* Between blocks (the next request may be an OPEN_BLOCK, which takes a descriptor), wait while
 * this stream holds TV_SEGMENT_MAX_OPEN_FILES, or holds any while the store's budget is used
 * up: its own syncs free them, and its completions wake it. A stream holding none does not
 * wait: its OPEN_BLOCK gets RESOURCE_EXHAUSTED when no descriptor is free. Inside a block it
 * never waits for files: the block's chunks are what lets its file be synced and closed. */
static int waits_for_files(const struct tv_segment *seg)
{
	const struct seg_block *cur = current((struct tv_segment *)seg);
	size_t max = tv_store_max_files(seg->store);

	if (cur && !cur->complete)
		return 0;
	return seg->open_files >= TV_SEGMENT_MAX_OPEN_FILES ||
	       (seg->open_files > 0 && max && tv_store_open_files(seg->store) >= max);
}

int tv_segment_can_receive(const struct tv_segment *seg)
{
	return seg->state == SEG_OPEN && seg->pending == PENDING_NONE &&
	       seg->inflight_ops < TV_SEGMENT_MAX_INFLIGHT_CHUNKS &&
	       seg->inflight_bytes < TV_SEGMENT_MAX_INFLIGHT_BYTES && !waits_for_files(seg);
}

size_t tv_segment_busy(const struct tv_segment *seg)
{
	/* a persist in flight counts: the stream waits on S3, not on its client */
	return seg->inflight_ops + (seg->persist_job != NULL);
}

/* End the stream with an error: the segment's temp data goes, the message names the segment. */
static void fail(struct tv_segment *seg, grpc_status_code code, const char *fmt, ...)
{
	char reason[448], msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (seg->segment_id)
		snprintf(msg, sizeof(msg), ERR_PREFIX_FMT "%s", (unsigned long long)seg->segment_id,
			 reason);
	else
		snprintf(msg, sizeof(msg), "%s", reason);
	tv_segment_abort(seg, reason);
	seg->state = SEG_ABORTED;
	seg->sink->finish(seg->arg, code, msg);
}

static grpc_status_code errno_code(int err)
{
	return tv_status_from_errno(err);
}

static void respond(struct tv_segment *seg, uint64_t offset, const uint64_t *committed,
		    size_t ncommitted)
{
	Tracevault__V1__WriteResponse r = TRACEVAULT__V1__WRITE_RESPONSE__INIT;
	grpc_byte_buffer *bb = NULL;

	r.offset = offset;
	r.committed = committed != NULL;
	r.committed_block_ids = (uint64_t *)committed;
	r.n_committed_block_ids = ncommitted;
	if (tv_wire_pack(&r.base, &bb) == 0)
		seg->sink->reply(seg->arg, bb);
	/* a reply lost to ENOMEM: the final status still decides */
}

static struct seg_block *current(struct tv_segment *seg)
{
	return seg->n ? &seg->blocks[seg->n - 1] : NULL;
}

/* A block id already in the catalog is ALREADY_EXISTS: block ids are unique for good. */
static int check_not_committed(struct tv_segment *seg, uint64_t block_id)
{
	int ret = tv_catalog_contains(seg->catalog, block_id);

	if (ret == 0)
		return 0;
	if (ret > 0)
		fail(seg, GRPC_STATUS_ALREADY_EXISTS, "block %016llx is already committed",
		     (unsigned long long)block_id);
	else
		fail(seg, errno_code(ret), "block %016llx: catalog lookup failed: %s",
		     (unsigned long long)block_id, strerror(-ret));
	return ret > 0 ? -EEXIST : ret;
}

static void open_block(struct tv_segment *seg, const Tracevault__V1__WriteCommand *cmd)
{
	struct seg_block *cur = current(seg), *b;
	int ret;

	if (cmd->block_id == 0) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT, "OPEN_BLOCK needs block_id != 0");
		return;
	}
	if (cur && !cur->complete) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "OPEN_BLOCK %016llx while block %016llx is incomplete (%llu of %llu bytes)",
		     (unsigned long long)cmd->block_id, (unsigned long long)cur->block_id,
		     (unsigned long long)cur->received, (unsigned long long)cur->length);
		return;
	}
	if (cmd->length < TV_BLOCK_MIN_HEADER_BYTES) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "block %016llx: length %llu is shorter than the %d-byte header",
		     (unsigned long long)cmd->block_id, (unsigned long long)cmd->length,
		     TV_BLOCK_MIN_HEADER_BYTES);
		return;
	}
	if (cmd->length > TV_SERVER_MAX_BLOCK_BYTES) {
		fail(seg, GRPC_STATUS_RESOURCE_EXHAUSTED,
		     "block %016llx: length %llu exceeds the server limit of %u bytes",
		     (unsigned long long)cmd->block_id, (unsigned long long)cmd->length,
		     TV_SERVER_MAX_BLOCK_BYTES);
		return;
	}
	if (seg->n == TV_SERVER_MAX_SEGMENT_BLOCKS) {
		fail(seg, GRPC_STATUS_RESOURCE_EXHAUSTED,
		     "more than %d blocks in one segment", TV_SERVER_MAX_SEGMENT_BLOCKS);
		return;
	}
	for (size_t i = 0; i < seg->n; i++) {
		if (seg->blocks[i].block_id == cmd->block_id) {
			fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
			     "block %016llx opened twice in one segment",
			     (unsigned long long)cmd->block_id);
			return;
		}
	}
	if (check_not_committed(seg, cmd->block_id))
		return;
	if (seg->n == seg->cap) {
		size_t ncap = seg->cap ? seg->cap * 2 : 8;
		struct seg_block *p = realloc(seg->blocks, ncap * sizeof(*p));

		if (!p) {
			fail(seg, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
		seg->blocks = p;
		seg->cap = ncap;
	}
	b = &seg->blocks[seg->n];
	memset(b, 0, sizeof(*b));
	b->block_id = cmd->block_id;
	b->length = cmd->length;
	b->payload_crc = 0; /* CRC32C of zero bytes; extended as payload arrives */
	ret = tv_store_create_temp(seg->store, seg->segment_id, b->block_id, &b->file);
	if (ret == -EMFILE && tv_store_max_files(seg->store) &&
	    tv_store_open_files(seg->store) >= tv_store_max_files(seg->store)) {
		fail(seg, GRPC_STATUS_RESOURCE_EXHAUSTED,
		     "block %016llx: no descriptor free for its temp file: %zu block files open, "
		     "the server's limit (--max-open-files)", (unsigned long long)b->block_id,
		     tv_store_open_files(seg->store));
		return;
	}
	if (ret) {
		fail(seg, errno_code(ret),
		     ret == -EEXIST ? "block %016llx is already being written by another stream"
				    : "block %016llx: cannot create temp file: %s",
		     (unsigned long long)b->block_id, strerror(-ret));
		return;
	}
	b->holds_fd = 1;
	seg->open_files++;
	seg->n++;
}

/* The status of a failed content check (block_check.h's errors, PROTOCOL.md's table): a block
 * that contradicts itself is DATA_LOSS, a reserved field in use INVALID_ARGUMENT (a format we
 * do not read, like an unknown codec), a record or zstd window above its limit
 * RESOURCE_EXHAUSTED. Ends the stream when ret != 0 and returns ret. */
static int content_failed(struct tv_segment *seg, const struct seg_block *b, int ret,
			 const char *why)
{
	grpc_status_code code;

	if (ret == 0)
		return 0;
	switch (ret) {
	case -EPROTONOSUPPORT:
		code = GRPC_STATUS_INVALID_ARGUMENT;
		break;
	case -EMSGSIZE:
	case -ENOMEM:
		code = GRPC_STATUS_RESOURCE_EXHAUSTED;
		break;
	default:
		code = GRPC_STATUS_DATA_LOSS;
		break;
	}
	fail(seg, code, "block %016llx: %s", (unsigned long long)b->block_id,
	     ret == -ENOMEM ? "out of memory checking its records" : why);
	return ret;
}

/* Check the header once all its bytes are in: fail fast on a block that cannot be valid. */
static int check_header(struct tv_segment *seg, struct seg_block *b)
{
	char why[160];
	int ret = tv_block_header_parse(b->hdr, b->hdr_bytes, &b->h, why, sizeof(why));

	if (ret) {
		/* damaged bytes (magic, header CRC32C, size bounds: -EBADMSG) are DATA_LOSS like a
		 * payload CRC mismatch; a version or codec we do not read is the peer's format,
		 * INVALID_ARGUMENT (PROTOCOL.md's status table) */
		fail(seg, ret == -EBADMSG ? GRPC_STATUS_DATA_LOSS : GRPC_STATUS_INVALID_ARGUMENT,
		     "block %016llx: %s", (unsigned long long)b->block_id, why);
		return -EINVAL;
	}
	if (b->h.block_id != b->block_id) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "block %016llx: header carries block id %016llx",
		     (unsigned long long)b->block_id, (unsigned long long)b->h.block_id);
		return -EINVAL;
	}
	if (tv_block_total_bytes(&b->h) != b->length) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "block %016llx: header says %llu bytes, OPEN_BLOCK said %llu",
		     (unsigned long long)b->block_id,
		     (unsigned long long)tv_block_total_bytes(&b->h), (unsigned long long)b->length);
		return -EINVAL;
	}
	if (b->h.max_ts_ns > TV_CATALOG_MAX_TS_NS) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "block %016llx: max_ts_ns %llu beyond the supported 2^63-1",
		     (unsigned long long)b->block_id, (unsigned long long)b->h.max_ts_ns);
		return -EINVAL;
	}
	if (!seg->check && !(seg->check = tv_block_check_new())) {
		fail(seg, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return -ENOMEM;
	}
	return content_failed(seg, b, tv_block_check_begin(seg->check, &b->h, why, sizeof(why)),
			     why);
}

static void io_queue(struct tv_segment *seg, struct seg_io *io)
{
	if (seg->io_tail)
		seg->io_tail->next = io;
	else
		seg->io_head = io;
	seg->io_tail = io;
	seg->inflight_ops++;
	seg->inflight_bytes += io->len;
}

/* ---- one chunk: place, chunk CRC, header, payload CRC, then the write ----
 * Each check below decides the status itself (fail) and returns a negative errno, so that
 * chunk() only has to stop; nothing reaches the disk before every check has passed. */

/* The chunk continues the open block at exactly the next offset and stays inside it. */
static int check_chunk_place(struct tv_segment *seg, const struct seg_block *b,
			     const struct tv_chunk_view *v)
{
	if (!b || b->complete || v->block_id != b->block_id) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "chunk for block %016llx, but no such block is open",
		     (unsigned long long)v->block_id);
		return -EINVAL;
	}
	if (v->offset != b->received) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "block %016llx: chunk at offset %llu, expected %llu",
		     (unsigned long long)b->block_id, (unsigned long long)v->offset,
		     (unsigned long long)b->received);
		return -EINVAL;
	}
	if (v->data_len > b->length - b->received) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "block %016llx: chunk of %zu bytes at %llu overruns its length %llu",
		     (unsigned long long)b->block_id, v->data_len, (unsigned long long)v->offset,
		     (unsigned long long)b->length);
		return -EINVAL;
	}
	return 0;
}

/* The chunk's bytes are the ones the sender checksummed (catches damage in transit). */
static int check_chunk_crc(struct tv_segment *seg, const struct seg_block *b,
			   const struct tv_chunk_view *v)
{
	uint32_t crc = tv_iov_crc32c(0, v->iov, v->iovcnt, 0);

	if (crc == v->crc32c)
		return 0;
	fail(seg, GRPC_STATUS_DATA_LOSS,
	     "chunk crc32c mismatch: block %016llx at offset %llu: CRC32C 0x%08x, sender said 0x%08x",
	     (unsigned long long)b->block_id, (unsigned long long)v->offset, crc, v->crc32c);
	return -EBADMSG;
}

/* The block header (not payload) is copied out to be parsed and checked. Its length depends
 * on the version (BLOCK.md), so the first TV_BLOCK_PREFIX_BYTES come in first; the header is
 * checked as soon as all of it is in, which may take several chunks. *hdr_in_chunk is set to
 * the header bytes this chunk carried, which the payload CRC skips. */
static int take_header(struct tv_segment *seg, struct seg_block *b, const struct tv_chunk_view *v,
		       size_t *hdr_in_chunk)
{
	size_t len = v->data_len, h = 0;
	int ret;

	while (!b->hdr_checked && h < len) {
		size_t want = b->hdr_bytes ? b->hdr_bytes : TV_BLOCK_PREFIX_BYTES;
		size_t have = b->received + h, n = want - have;

		if (n > len - h)
			n = len - h;
		tv_iov_copy_out(v->iov, v->iovcnt, h, b->hdr + have, n);
		h += n;
		if (b->received + h < want)
			break;
		if (b->hdr_bytes) {
			ret = check_header(seg, b);
			if (ret)
				return ret;
			b->hdr_checked = 1;
			break;
		}
		b->hdr_bytes = tv_block_header_bytes(b->hdr);
		if (b->hdr_bytes == 0 || b->hdr_bytes > b->length) {
			uint32_t magic;

			memcpy(&magic, b->hdr, 4);
			fail(seg, GRPC_STATUS_INVALID_ARGUMENT, "block %016llx: %s",
			     (unsigned long long)b->block_id,
			     b->hdr_bytes ? "length shorter than its header"
			     : le32toh(magic) != TV_BLOCK_MAGIC ? "bad block magic"
							 : "unsupported block version");
			return -EINVAL;
		}
	}
	*hdr_in_chunk = h;
	return 0;
}

/* Extend the block's running payload CRC over this chunk's payload bytes; the chunk that
 * completes the block must bring it to the CRC its header promised. */
static int check_payload_crc(struct tv_segment *seg, struct seg_block *b,
			     const struct tv_chunk_view *v, size_t hdr_in_chunk)
{
	b->payload_crc = tv_iov_crc32c(b->payload_crc, v->iov, v->iovcnt, hdr_in_chunk);
	if (b->received + v->data_len < b->length || b->payload_crc == b->h.payload_crc32c)
		return 0;
	fail(seg, GRPC_STATUS_DATA_LOSS, "block %016llx: payload CRC32C 0x%08x, header says 0x%08x",
	     (unsigned long long)b->block_id, b->payload_crc, b->h.payload_crc32c);
	return -EBADMSG;
}

/* Feed this chunk's payload bytes to the block's content check; the chunk that completes the
 * block ends it, so a block whose records break any rule of BLOCK.md is refused before its
 * last byte is written and can never be committed. */
static int check_content(struct tv_segment *seg, struct seg_block *b,
			 const struct tv_chunk_view *v, size_t hdr_in_chunk)
{
	size_t skip = hdr_in_chunk;
	char why[200];
	int ret = 0;

	if (!b->hdr_checked)
		return 0; /* the chunk carried header bytes only */
	for (int i = 0; i < v->iovcnt && !ret; i++) {
		const struct iovec *io = &v->iov[i];

		if (skip >= io->iov_len) {
			skip -= io->iov_len;
			continue;
		}
		ret = tv_block_check_feed(seg->check, (const uint8_t *)io->iov_base + skip,
					  io->iov_len - skip, why, sizeof(why));
		skip = 0;
	}
	if (!ret && b->received + v->data_len == b->length)
		ret = tv_block_check_end(seg->check, why, sizeof(why));
	return content_failed(seg, b, ret, why);
}

/* Submit the write of a checked, non-empty chunk at the block's end, straight from the view's
 * slices, and move the block's offset past it (the ack comes when the write completes, in
 * retire). Takes ownership of v: the write releases it when it is done. */
static void write_chunk(struct tv_segment *seg, struct seg_block *b, struct tv_chunk_view *v)
{
	struct seg_io *io = calloc(1, sizeof(*io));
	int ret;

	if (!io) {
		fail(seg, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		tv_chunk_view_release(v);
		return;
	}
	io->seg = seg;
	io->bi = seg->n - 1;
	io->len = v->data_len;
	io->end_offset = b->received + v->data_len;
	io->view = *v;
	memset(v, 0, sizeof(*v));
	io->op.done = io_done;
	ret = tv_store_submit_writev(seg->store, b->file, b->received, io->view.iov,
				     io->view.iovcnt, &io->op);
	if (ret) {
		io_free(io);
		fail(seg, errno_code(ret), "block %016llx: write temp file: %s",
		     (unsigned long long)b->block_id, strerror(-ret));
		return;
	}
	io_queue(seg, io);
	b->received += io->len;
	b->complete = b->received == b->length;
}

/* Accept one chunk: check it fully (place, CRC32C, header, payload CRC of a complete block,
 * the records it completes) before a byte reaches the disk, then write it. Takes ownership
 * of v. */
static void chunk(struct tv_segment *seg, struct tv_chunk_view *v)
{
	struct seg_block *b = current(seg);
	size_t hdr_in_chunk = 0;

	if (check_chunk_place(seg, b, v) || check_chunk_crc(seg, b, v) ||
	    take_header(seg, b, v, &hdr_in_chunk) || check_payload_crc(seg, b, v, hdr_in_chunk) ||
	    check_content(seg, b, v, hdr_in_chunk) ||
	    v->data_len == 0) { /* an empty chunk has nothing to write; the offset did not move */
		tv_chunk_view_release(v);
		return;
	}
	write_chunk(seg, b, v);
}

/* A block's last write is done: fdatasync it now, on the descriptor that wrote it, so that its
 * descriptor can be closed before COMMIT (io_done). The syncs of a segment's blocks overlap the
 * writes of the blocks after them; a FLUSH or COMMIT waits for the last one. Returns 0 or a
 * negative errno. */
static int sync_block(struct tv_segment *seg, size_t bi)
{
	struct seg_io *io = calloc(1, sizeof(*io));
	int ret;

	if (!io)
		return -ENOMEM;
	io->seg = seg;
	io->bi = bi;
	io->is_sync = 1;
	io->op.done = io_done;
	ret = tv_store_submit_fdatasync(seg->store, seg->blocks[bi].file, &io->op);
	if (ret) {
		free(io);
		return ret;
	}
	io_queue(seg, io);
	return 0;
}

static uint64_t durable_bytes(const struct tv_segment *seg)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < seg->n; i++)
		if (seg->blocks[i].synced)
			sum += seg->blocks[i].length;
	return sum;
}

/* What COMMIT hands to the store and the catalog, one entry per block (arrays of seg->n). */
struct commit_set {
	struct tv_catalog_block *rows;
	struct tv_store_file **files;
	uint64_t *ids;
	uint64_t total_bytes;
};

static void commit_set_free(struct commit_set *cs)
{
	free(cs->rows);
	free(cs->files);
	free(cs->ids);
}

/* -ENOMEM leaves cs for commit_set_free. */
static int commit_set_build(const struct tv_segment *seg, struct commit_set *cs)
{
	size_t n = seg->n ? seg->n : 1;

	cs->rows = calloc(n, sizeof(*cs->rows));
	cs->files = calloc(n, sizeof(*cs->files));
	cs->ids = calloc(n, sizeof(*cs->ids));
	if (!cs->rows || !cs->files || !cs->ids)
		return -ENOMEM;
	for (size_t i = 0; i < seg->n; i++) {
		const struct seg_block *b = &seg->blocks[i];

		cs->files[i] = b->file;
		cs->ids[i] = b->block_id;
		cs->rows[i] = (struct tv_catalog_block){ .block_id = b->block_id,
							 .segment_id = seg->segment_id,
							 .min_ts_ns = b->h.min_ts_ns,
							 .max_ts_ns = b->h.max_ts_ns,
							 .record_count = b->h.record_count,
							 .bytes = b->length,
							 .loss = b->h.loss,
							 .raw_bytes = b->h.raw_bytes };
		cs->total_bytes += b->length;
	}
	return 0;
}

/* The segment's rows are in the catalog (and its files renamed, if renamed): take them back
 * out, so that nothing of it stays visible, and fail it with the reason. */
static void unpublish(struct tv_segment *seg, const struct commit_set *cs, int renamed,
		      grpc_status_code code, const char *why)
{
	uint64_t *ids = NULL;
	size_t n = 0;
	int undo;

	if (renamed)
		tv_store_rename_back(seg->store, cs->files, seg->n);
	undo = tv_catalog_delete_ids(seg->catalog, cs->ids, seg->n, &ids, &n);
	free(ids);
	if (undo) /* rows without files: dropped at the next start (RECOVERY.md) */
		fprintf(stderr, "segment %016llx: cannot take its rows back out of the catalog: %s\n",
			(unsigned long long)seg->segment_id, strerror(-undo));
	fail(seg, code, "%s", why);
}

/* One member of a commit group, from the pre-check to its reply. */
struct member {
	struct tv_segment *seg;
	struct commit_set cs;
	int ok;      /* no failure of its own so far */
	int renamed; /* its files are in blocks/ */
};

/* The group's buffer for one trace-id filter at a time: bounded by the largest filter
 * (TV_BLOCK_V3_MAX_BLOOM_BYTES), whatever the number of blocks. */
struct filter_buf {
	uint8_t *p;
	size_t cap;
	int failed; /* a copy could not be stored: logged once per group */
};

/* Inside the group transaction, after the member's rows: store a copy of each of its version
 * 3 blocks' trace-id filters in the catalog (catalog.h, "Trace-id filters"), so that the
 * first --trace-id query after the put reads no block file's filter. The bytes are read back
 * from the temp file, just written and synced, so from the page cache (one open and pread per
 * block), rather than kept from the content check: the check has seen them, but keeping them
 * until COMMIT would hold up to 256 KiB for each of up to TV_SERVER_MAX_SEGMENT_BLOCKS blocks
 * per stream. They are checked against the header's CRC32C again (the check verified the bytes
 * sent; this verifies the bytes read). A copy that cannot be taken costs only speed: the
 * block is committed without it and the first query reads its own filter and copies it. */
static void copy_filters(struct tv_segment *seg, struct filter_buf *fb)
{
	for (size_t i = 0; i < seg->n; i++) {
		const struct seg_block *b = &seg->blocks[i];
		size_t bytes = b->h.bloom_bytes;
		const char *what = "store it";
		int ret = 0;

		if (b->h.version < 3)
			continue; /* no filter */
		if (bytes > fb->cap) {
			uint8_t *p = malloc(bytes);

			if (!p) {
				ret = -ENOMEM;
				what = "buffer it";
				goto failed;
			}
			free(fb->p);
			fb->p = p;
			fb->cap = bytes;
		}
		if (bytes) {
			what = "read it back";
			ret = tv_store_pread_temp(seg->store, b->file,
						  (uint64_t)b->h.header_bytes +
							  (uint64_t)b->h.page_count *
								  TV_BLOCK_V3_PAGE_ENTRY_BYTES,
						  fb->p, bytes);
			if (!ret && tv_crc32c(fb->p, bytes) != b->h.bloom_crc32c)
				ret = -EBADMSG;
			if (ret)
				goto failed;
		}
		what = "store it";
		ret = tv_catalog_group_add_filter(seg->catalog, b->block_id, fb->p, bytes);
		if (!ret)
			continue;
failed:
		if (!fb->failed)
			fprintf(stderr, "segment %016llx: block %016llx: its trace-id filter is not "
				"copied into the catalog: cannot %s: %s (the first query reads it "
				"from the block file)\n", (unsigned long long)seg->segment_id,
				(unsigned long long)b->block_id, what, strerror(-ret));
		fb->failed = 1;
	}
}

/* Every member still ok fails with the same reason (a shared step failed). */
static void fail_all(struct member *m, size_t n, grpc_status_code code, const char *why,
		     int rows_in)
{
	for (size_t i = 0; i < n; i++) {
		if (!m[i].ok)
			continue;
		m[i].ok = 0;
		if (rows_in)
			unpublish(m[i].seg, &m[i].cs, m[i].renamed, code, why);
		else
			fail(m[i].seg, code, "%s", why);
	}
}

/* A committed segment in the server's metrics: what it made durable, and its COMMIT's time
 * from arrival to reply. */
static void count_commit(struct tv_segment *seg, const struct commit_set *cs)
{
	struct tv_server_metrics *mt = seg->stats->metrics;
	uint64_t records = 0;

	for (size_t b = 0; b < seg->n; b++)
		records += cs->rows[b].record_count;
	tv_metric_add(&mt->written_bytes, cs->total_bytes);
	tv_metric_add(&mt->written_records, records);
	tv_metric_add(&mt->written_blocks, seg->n);
	tv_metric_add(&mt->segments_committed, 1);
	tv_histogram_observe_ns(&mt->commit_seconds, tv_monotonic_ns() - seg->commit_mono_ns);
}

/* The segment's oldest record: the under-store's keys (tv_persist_key). */
static uint64_t oldest_of(const struct tv_segment *seg)
{
	uint64_t oldest = UINT64_MAX;

	for (size_t i = 0; i < seg->n; i++)
		if (seg->blocks[i].h.min_ts_ns < oldest)
			oldest = seg->blocks[i].h.min_ts_ns;
	return oldest;
}

static uint64_t segment_bytes(const struct tv_segment *seg)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < seg->n; i++)
		sum += seg->blocks[i].length;
	return sum;
}

/* The persister's list of the segment's blocks (calloc'd; NULL without memory): names in
 * tmp/ (cache-through, before the commit) or in blocks/ (async-through, after it). */
static struct tv_persist_block *persist_blocks(const struct tv_segment *seg, int committed)
{
	struct tv_persist_block *pb = calloc(seg->n, sizeof(*pb));

	for (size_t i = 0; pb && i < seg->n; i++) {
		const struct seg_block *b = &seg->blocks[i];

		pb[i] = (struct tv_persist_block){ .block_id = b->block_id,
						   .bytes = b->length,
						   .min_ts_ns = b->h.min_ts_ns,
						   .max_ts_ns = b->h.max_ts_ns,
						   .record_count = b->h.record_count,
						   .header_bytes = b->hdr_bytes,
						   .payload_crc32c = b->payload_crc };
		if (committed)
			tv_store_block_name(seg->segment_id, b->block_id, pb[i].name,
					    sizeof(pb[i].name));
		else
			snprintf(pb[i].name, sizeof(pb[i].name), "%s", tv_store_temp_name(b->file));
	}
	return pb;
}

/* async-through, a committed segment (journaled 'queued' in its group's transaction): queue
 * its upload. Out of memory it stays queued in the journal, for the next start. */
static void queue_upload(struct tv_segment *seg)
{
	struct tv_persist_block *pb = persist_blocks(seg, 1);
	int ret = pb ? tv_persist_queue_segment(seg->stats->under, seg->segment_id,
						seg->oldest_ts_ns, tv_realtime_ns(), pb, seg->n) :
		       -ENOMEM;

	free(pb);
	if (ret)
		fprintf(stderr, "segment %016llx: committed, but its upload to the under-store "
			"cannot be queued (%s): the next start queues it\n",
			(unsigned long long)seg->segment_id, strerror(-ret));
}

/*
 * Group commit (RECOVERY.md "Group commit"). The order of one segment's commit is kept for the
 * group: data fdatasynced (before the segment was queued), then the catalog rows (the commit
 * point), then the renames into blocks/, then the fsyncs of blocks/ and tmp/, then the reply.
 * Only the syncs are shared: one WAL fsync (the transaction's COMMIT) and one fsync per
 * directory for all members. An fsync that fails is not retried: after a failed fsync Linux
 * may drop the dirty entries and report success on the next one (PostgreSQL's "fsyncgate").
 */
void tv_segment_commit_group(struct tv_commit_queue *q)
{
	struct member m[TV_COMMIT_GROUP_MAX_SEGMENTS];
	struct filter_buf fb = { 0 };
	struct tv_catalog *cat;
	struct tv_store *store;
	char why[200], msg[256];
	size_t n = 0, nok = 0;
	uint64_t newest = 0; /* of one member */
	uint64_t async_bytes = 0;
	size_t async_n = 0;
	int ret;

	q->blocked = 0;
	while (q->head && n < TV_COMMIT_GROUP_MAX_SEGMENTS) {
		struct tv_segment *seg = q->head;

		/* async-through: no more than its upload queue has room for; the rest wait,
		 * unanswered, until uploads end (the server clears blocked then) */
		if (seg->stats->under_async && seg->n) {
			if (!tv_persist_queue_fits(seg->stats->under, async_n + 1,
						   async_bytes + segment_bytes(seg))) {
				q->blocked = 1;
				break;
			}
			async_n++;
			async_bytes += segment_bytes(seg);
		}
		dequeue(seg); /* pending stays PENDING_QUEUED: no request is received meanwhile */
		m[n++] = (struct member){ .seg = seg, .ok = 1 };
	}
	if (!n)
		return;
	q->groups++;
	q->segments += n;
	if (n > q->largest)
		q->largest = n;
	cat = m[0].seg->catalog;
	store = m[0].seg->store;

	/* 1. own checks: another stream may have committed one of these blocks since OPEN_BLOCK
	 * checked (a duplicate inside the group is caught by the insert, in its savepoint) */
	for (size_t i = 0; i < n; i++) {
		struct tv_segment *seg = m[i].seg;

		for (size_t b = 0; b < seg->n && m[i].ok; b++)
			if (check_not_committed(seg, seg->blocks[b].block_id))
				m[i].ok = 0;
		if (m[i].ok && commit_set_build(seg, &m[i].cs)) {
			m[i].ok = 0;
			fail(seg, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory at COMMIT");
		}
		nok += m[i].ok;
	}
	if (!nok)
		goto out;

	/* 2. one transaction, one savepoint per member: the commit point of the whole group;
	 * each member's trace-id filter copies go in with its rows (copy_filters) */
	ret = tv_catalog_group_begin(cat, why, sizeof(why));
	if (ret) {
		fail_all(m, n, errno_code(ret), why, 0);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct tv_segment *seg = m[i].seg;

		if (!m[i].ok)
			continue;
		ret = tv_catalog_group_add(cat, seg->segment_id, seg->writer_token, m[i].cs.rows,
					   seg->n, why, sizeof(why));
		if (ret) {
			m[i].ok = 0;
			fail(seg, errno_code(ret), "%s", why);
			continue;
		}
		copy_filters(seg, &fb);
		/* the under-store's journal, in the commit point: cache-through's 'uploading'
		 * row becomes its under_persisted row, async-through's segment is 'queued' */
		if (seg->stats->under && seg->n && !seg->stats->under_must_cache) {
			seg->oldest_ts_ns = oldest_of(seg);
			ret = tv_catalog_group_add_under(cat, seg->segment_id, seg->oldest_ts_ns,
							 seg->stats->under_async, why,
							 sizeof(why));
			if (ret) { /* SQLite failed: the group's transaction is not to be trusted */
				free(fb.p);
				tv_catalog_group_rollback(cat);
				fail_all(m, n, errno_code(ret), why, 0);
				goto out;
			}
		}
	}
	free(fb.p);
	fb.p = NULL;
	ret = tv_catalog_group_commit(cat, why, sizeof(why));
	if (ret) { /* rolled back: no member's rows are in */
		snprintf(msg, sizeof(msg), "%s (commit group of %zu segments)", why, n);
		fail_all(m, n, errno_code(ret), msg, 0);
		goto out;
	}

	/* 3. renames, per member: a failure takes only that member's rows back out */
	nok = 0;
	for (size_t i = 0; i < n; i++) {
		if (!m[i].ok)
			continue;
		ret = tv_store_rename_in(store, m[i].cs.files, m[i].seg->n);
		if (ret) {
			m[i].ok = 0;
			snprintf(why, sizeof(why), "rename into blocks/: %s", strerror(-ret));
			unpublish(m[i].seg, &m[i].cs, 0, errno_code(ret), why);
			continue;
		}
		m[i].renamed = 1;
		nok++;
	}
	if (!nok)
		goto out;

	/* 4. one fsync of blocks/ and tmp/ for the group; on failure no member is acknowledged */
	ret = tv_store_sync_dirs(store);
	if (ret) {
		snprintf(msg, sizeof(msg), "fsync of blocks/ or tmp/: %s (commit group of %zu "
			 "segments, all failed)", strerror(-ret), n);
		fail_all(m, n, errno_code(ret), msg, 1);
		goto out;
	}

	/* 5. durable: reply */
	for (size_t i = 0; i < n; i++) {
		struct tv_segment *seg = m[i].seg;

		if (!m[i].ok)
			continue;
		tv_store_release_published(store, m[i].cs.files, seg->n);
		/* the files now live in blocks/ and are closed: from here the segment owns none */
		for (size_t b = 0; b < seg->n; b++) {
			seg->blocks[b].file = NULL;
			fd_closed(seg, &seg->blocks[b]);
		}
		release_id(seg);
		seg->state = SEG_COMMITTED;
		seg->pending = PENDING_NONE;
		if (seg->stats->under_async && seg->n)
			queue_upload(seg);
		fprintf(stderr, "segment %016llx committed: %zu blocks, %llu bytes\n",
			(unsigned long long)seg->segment_id, seg->n,
			(unsigned long long)m[i].cs.total_bytes);
		respond(seg, m[i].cs.total_bytes, m[i].cs.ids, seg->n);
		seg->sink->finish(seg->arg, GRPC_STATUS_OK, "");
		count_commit(seg, &m[i].cs);
		q->new_segments++;
		for (size_t b = 0; b < seg->n; b++)
			newest = m[i].cs.rows[b].max_ts_ns > newest ? m[i].cs.rows[b].max_ts_ns :
								      newest;
		if (newest < q->new_oldest_ts_ns)
			q->new_oldest_ts_ns = newest;
		newest = 0;
	}
out:
	for (size_t i = 0; i < n; i++)
		commit_set_free(&m[i].cs);
}

/* The under-store's answer (tv_persist_done_fn, on the loop's thread): the segment's objects are
 * all in S3, and it joins the commit queue; or the persist failed, its objects are gone from S3
 * (persist.c undid them), and the segment fails with the S3 error, its temp files deleted. */
/* The status of a segment whose copy to S3 failed (PROTOCOL.md): S3 down or slow is
 * UNAVAILABLE (the client may write the segment again later), anything else INTERNAL. */
static grpc_status_code under_code(int res)
{
	switch (res) {
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -ETIMEDOUT:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -EIO:
		return GRPC_STATUS_UNAVAILABLE;
	case -EFBIG:
	case -ENOMEM:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case -EEXIST: /* the segment id is used in the bucket (persist.c's manifest check) */
		return GRPC_STATUS_ALREADY_EXISTS;
	default:
		return GRPC_STATUS_INTERNAL;
	}
}

static void persist_done(void *arg, int res, const char *err)
{
	struct tv_segment *seg = arg;

	seg->persist_job = NULL;
	if (seg->state != SEG_OPEN) /* not reached: an abort detaches the job */
		return;
	if (res) {
		fail(seg, under_code(res), "under-store: %s", err);
	} else {
		seg->persisted = 1;
		seg->pending = PENDING_QUEUED; /* tv_segment_commit_group takes it from here */
		enqueue(seg);
	}
	seg->sink->wake(seg->arg);
}

/* cache-through: copy the segment's synced temp files and then its manifest to S3 before it
 * may commit (UNDERSTORE.md "Write path"). */
static void persist(struct tv_segment *seg)
{
	struct tv_persist_block *pb = persist_blocks(seg, 0);
	uint64_t oldest = oldest_of(seg);
	int ret;

	if (!pb) {
		fail(seg, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory at COMMIT");
		return;
	}
	/* the journal first, in a transaction of its own: a crash from here on leaves a row
	 * that makes the next start delete whatever of the segment reached S3 */
	ret = tv_catalog_under_pending_put(seg->catalog, seg->segment_id, oldest,
					   TV_UNDER_UPLOADING);
	if (ret) {
		free(pb);
		fail(seg, errno_code(ret), "under-store: the catalog's journal: %s",
		     strerror(-ret));
		return;
	}
	seg->oldest_ts_ns = oldest;
	seg->pending = PENDING_PERSIST;
	ret = tv_persist_put_segment(seg->stats->under, seg->segment_id, oldest,
				     tv_store_tmp_dir_fd(seg->store), pb, seg->n, persist_done, seg,
				     &seg->persist_job);
	free(pb);
	if (ret)
		fail(seg, errno_code(ret), "under-store: queue the segment: %s", strerror(-ret));
}

/* A FLUSH or COMMIT waits here until the writes before it and the syncs of their blocks are
 * done: every complete block is then synced (its sync follows its last write, see retire). */
static void advance(struct tv_segment *seg)
{
	enum pending p = seg->pending;

	if (seg->state != SEG_OPEN || p == PENDING_NONE || p == PENDING_QUEUED ||
	    p == PENDING_PERSIST || seg->inflight_ops)
		return;
	if (p == PENDING_FLUSH) {
		seg->pending = PENDING_NONE;
		respond(seg, durable_bytes(seg), NULL, 0);
	} else if (seg->stats->under && seg->n && !seg->stats->under_async &&
		   !seg->stats->under_must_cache) {
		persist(seg);
	} else {
		seg->pending = PENDING_QUEUED; /* tv_segment_commit_group takes it from here */
		enqueue(seg);
	}
}

/* Retire finished ops from the head: acks for writes (newest offset per block), and the sync
 * of a block whose last write this was; the synced mark for fdatasyncs. In order, so a
 * block's last write retires after all its others. */
static void retire(struct tv_segment *seg)
{
	while (seg->io_head && seg->io_head->completed) {
		struct seg_io *io = seg->io_head;
		struct seg_block *b = &seg->blocks[io->bi];
		int ret;

		seg->io_head = io->next;
		if (!seg->io_head)
			seg->io_tail = NULL;
		if (seg->state == SEG_OPEN && io->res == 0) {
			if (io->is_sync) {
				b->synced = 1;
			} else {
				seg->sink->ack(seg->arg, b->block_id, io->end_offset);
				if (io->end_offset == b->length) {
					ret = sync_block(seg, io->bi);
					if (ret)
						fail(seg, errno_code(ret),
						     "block %016llx: fdatasync temp file: %s",
						     (unsigned long long)b->block_id,
						     strerror(-ret));
				}
			}
		}
		io_free(io);
	}
}

static void io_done(struct tv_store_op *op, int res)
{
	struct seg_io *io = (struct seg_io *)((char *)op - offsetof(struct seg_io, op));
	struct tv_segment *seg = io->seg;

	io->completed = 1;
	io->res = res;
	if (!seg) { /* the stream is gone: only the slices and the op remain to release */
		io_free(io);
		return;
	}
	seg->inflight_ops--;
	seg->inflight_bytes -= io->len;
	if (io->is_sync && res == 0 && seg->state == SEG_OPEN) {
		/* synced: the file only waits for COMMIT now, without a descriptor */
		struct seg_block *b = &seg->blocks[io->bi];

		tv_store_close_fd(seg->store, b->file);
		fd_closed(seg, b);
	}
	if (res < 0 && seg->state == SEG_OPEN) {
		const struct seg_block *b = &seg->blocks[io->bi];

		fail(seg, errno_code(res), io->is_sync ? "block %016llx: fdatasync temp file: %s" :
			  "block %016llx: write temp file: %s",
		     (unsigned long long)b->block_id, strerror(-res));
	}
	retire(seg);
	advance(seg);
	seg->sink->wake(seg->arg);
}

/* OPEN_SEGMENT: the id must be new for the archive (never committed or deleted, not open on
 * another stream), so that no other writer's data can be reached through it: ALREADY_EXISTS
 * otherwise (PROTOCOL.md "Segment ids and who may delete"). */
static void open_segment(struct tv_segment *seg, const Tracevault__V1__WriteCommand *cmd)
{
	char why[200];
	int ret = tv_catalog_segment_open(seg->catalog, cmd->segment_id, cmd->writer_token, why,
					  sizeof(why));

	if (ret) {
		fail(seg, ret == -EEXIST   ? GRPC_STATUS_ALREADY_EXISTS
			  : ret == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED
					   : GRPC_STATUS_INTERNAL,
		     "%s", why);
		return;
	}
	seg->segment_id = cmd->segment_id;
	seg->writer_token = cmd->writer_token;
	seg->reserved = 1;
	fprintf(stderr, "segment %016llx opened\n", (unsigned long long)seg->segment_id);
}

static void command(struct tv_segment *seg, const Tracevault__V1__WriteCommand *cmd)
{
	if (cmd->type == TRACEVAULT__V1__COMMAND_TYPE__OPEN_SEGMENT) {
		if (seg->segment_id) {
			fail(seg, GRPC_STATUS_INVALID_ARGUMENT, "OPEN_SEGMENT sent twice");
			return;
		}
		if (cmd->segment_id == 0) {
			fail(seg, GRPC_STATUS_INVALID_ARGUMENT, "OPEN_SEGMENT needs segment_id != 0");
			return;
		}
		open_segment(seg, cmd);
		return;
	}
	if (!seg->segment_id) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "the first request of a Write stream must be OPEN_SEGMENT");
		return;
	}
	switch (cmd->type) {
	case TRACEVAULT__V1__COMMAND_TYPE__OPEN_BLOCK:
		open_block(seg, cmd);
		break;
	case TRACEVAULT__V1__COMMAND_TYPE__FLUSH:
		seg->pending = PENDING_FLUSH;
		advance(seg);
		break;
	case TRACEVAULT__V1__COMMAND_TYPE__COMMIT:
		/* a COMMIT naming another segment is a confused writer: commit nothing */
		if (cmd->segment_id && cmd->segment_id != seg->segment_id) {
			fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
			     "COMMIT names segment %016llx, the stream's is %016llx",
			     (unsigned long long)cmd->segment_id,
			     (unsigned long long)seg->segment_id);
			return;
		}
		for (size_t i = 0; i < seg->n; i++) {
			if (!seg->blocks[i].complete) {
				fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
				     "COMMIT with block %016llx incomplete (%llu of %llu bytes)",
				     (unsigned long long)seg->blocks[i].block_id,
				     (unsigned long long)seg->blocks[i].received,
				     (unsigned long long)seg->blocks[i].length);
				return;
			}
		}
		seg->pending = PENDING_COMMIT;
		seg->commit_mono_ns = tv_monotonic_ns();
		advance(seg);
		break;
	case TRACEVAULT__V1__COMMAND_TYPE__CANCEL: {
		char msg[64];

		tv_segment_abort(seg, "cancelled by client");
		snprintf(msg, sizeof(msg), ERR_PREFIX_FMT "cancelled",
			 (unsigned long long)seg->segment_id);
		seg->sink->finish(seg->arg, GRPC_STATUS_OK, msg);
		break;
	}
	default:
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT, "unknown command type %d", (int)cmd->type);
		break;
	}
}

/* The protobuf-c path: commands (small), and chunks in a layout the prefix parser leaves
 * alone. A chunk taken this way costs copies, which are counted. */
static void unpack_message(struct tv_segment *seg, grpc_byte_buffer *bb)
{
	Tracevault__V1__WriteRequest *req = NULL;
	struct tv_chunk_view v;
	uint8_t *flat = NULL;
	size_t len = 0;
	int ret;

	ret = tv_wire_flatten(bb, seg->max_message_bytes, &flat, &len);
	if (ret) {
		fail(seg, errno_code(ret), "cannot read request: %s", strerror(-ret));
		return;
	}
	req = tracevault__v1__write_request__unpack(NULL, len, flat);
	free(flat);
	if (!req) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "request is not a valid WriteRequest protobuf (%zu bytes)", len);
		return;
	}
	switch (req->value_case) {
	case TRACEVAULT__V1__WRITE_REQUEST__VALUE_COMMAND:
		command(seg, req->command);
		break;
	case TRACEVAULT__V1__WRITE_REQUEST__VALUE_CHUNK:
		if (!seg->segment_id) {
			fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
			     "the first request of a Write stream must be OPEN_SEGMENT");
			break;
		}
		/* flatten copied the message, unpack copied data out of it */
		seg->stats->fallback_chunks++;
		seg->stats->payload_bytes_copied += len + req->chunk->data.len;
		if (tv_chunk_view_from_unpacked(req, &v)) {
			fail(seg, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
			break;
		}
		chunk(seg, &v); /* v owns req now */
		return;
	default:
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "WriteRequest carries neither a command nor a chunk");
		break;
	}
	tracevault__v1__write_request__free_unpacked(req, NULL);
}

void tv_segment_on_message(struct tv_segment *seg, grpc_byte_buffer *bb)
{
	struct tv_chunk_view v;
	int ret;

	if (seg->state != SEG_OPEN) {
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "request after the segment was committed or abandoned");
		return;
	}
	ret = tv_chunk_view_parse(bb, &v);
	if (ret < 0) {
		fail(seg, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (ret == 0) {
		unpack_message(seg, bb);
		return;
	}
	if (!seg->segment_id) {
		tv_chunk_view_release(&v);
		fail(seg, GRPC_STATUS_INVALID_ARGUMENT,
		     "the first request of a Write stream must be OPEN_SEGMENT");
		return;
	}
	seg->stats->zero_copy_chunks++;
	chunk(seg, &v);
}

void tv_segment_on_end(struct tv_segment *seg)
{
	if (seg->state == SEG_COMMITTED)
		return;
	fail(seg, GRPC_STATUS_INVALID_ARGUMENT, "stream ended without COMMIT: segment discarded");
}
