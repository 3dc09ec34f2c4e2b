/* Streams sealed trace blocks to tracevaultd as segments over the Write rpc, and carries out
 * the write-failure rule: cancel, delete what the server holds for the segment, never retry. */
#ifndef TV_GRPC_WRITER_H
#define TV_GRPC_WRITER_H

#include <stddef.h>
#include <stdint.h>

#define TV_DEFAULT_CHUNK_BYTES (1u << 20)
#define TV_DEFAULT_WRITE_TIMEOUT_MS 30000

struct tv_writer_opts {
	const char *server;        /* "HOST:PORT" */
	size_t max_message_bytes;  /* 0: TV_DEFAULT_MAX_MESSAGE_BYTES */
	size_t chunk_bytes;        /* 0: TV_DEFAULT_CHUNK_BYTES */
	int timeout_ms;            /* deadline of one segment; 0: TV_DEFAULT_WRITE_TIMEOUT_MS */
};

/* One sealed block (tv_block_builder_seal output). The writer borrows data for the call. */
struct tv_block_buf {
	uint64_t block_id;
	const void *data;
	size_t len;
	uint32_t record_count;
};

struct tv_writer_stats {
	uint64_t segments_committed, segments_failed;
	uint64_t blocks_committed, blocks_dropped;
	uint64_t records_committed, records_dropped;
	uint64_t bytes_committed;
	/* Block payload bytes copied in user space on the write path. Chunks go to gRPC as slices
	 * that reference the caller's block memory, so this stays 0; a future path that has to
	 * copy (e.g. compression) must count here. */
	uint64_t payload_bytes_copied;
};

struct tv_writer;

/* Creates the channel (connects lazily). Returns NULL on allocation failure. The opts strings
 * are copied. */
struct tv_writer *tv_writer_new(const struct tv_writer_opts *o);
void tv_writer_free(struct tv_writer *w);

/* Check that the server answers (channel reaches READY within timeout_ms). Returns 0, or
 * -ECONNREFUSED / -ETIMEDOUT with a one-line reason in err ("cannot reach server H:P: ..."). */
int tv_writer_probe(struct tv_writer *w, int timeout_ms, char *err, size_t errlen);

/* Write blocks[0..n) as one segment on one stream: OPEN_SEGMENT, per block OPEN_BLOCK + chunks,
 * COMMIT, then wait for the commit reply. 0 once the server confirmed the commit (the data is
 * durable and visible). On any failure: the stream is cancelled, the server is asked (Delete,
 * bounded deadline) to remove what it holds of the segment, nothing is retried, the stats count
 * the dropped blocks/records, and a negative errno returns with the reason in err. */
int tv_writer_write_segment(struct tv_writer *w, uint64_t segment_id,
			    const struct tv_block_buf *blocks, size_t n, char *err, size_t errlen);

const struct tv_writer_stats *tv_writer_stats(const struct tv_writer *w);

/* A random non-zero 64-bit id for segments and blocks (getrandom). */
uint64_t tv_random_id(void);

#endif
