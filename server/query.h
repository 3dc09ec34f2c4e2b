/* Time-range query: finds the blocks overlapping [from_ns, to_ns) in the catalog and k-way
 * merges their records by ts_ns (newest first with reverse) into QueryResponse batches,
 * opening a block only when the merge frontier reaches it. Each open block is a bounded stream
 * (proto/block_stream.h) whose memory comes from the query's budget and the server's pool,
 * so what queries hold is bounded by the limits below, never by the blocks' raw sizes. A block
 * that fails its checks is quarantined, reported in the stream and skipped (PROTOCOL.md).
 * The work is done in slices (TV_QUERY_SLICE_*), so that the server's one thread can serve
 * other calls between them. */
#ifndef TV_QUERY_H
#define TV_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <grpc/byte_buffer.h>
#include <grpc/status.h>

#include "common/limit.h"
#include "proto/block.h"
#include "server/catalog.h"
#include "server/filter.h"
#include "server/store_uring.h"

/* One QueryResponse holds at most this many records or (about) this many bytes. */
#define TV_QUERY_BATCH_RECORDS 4096
#define TV_QUERY_BATCH_BYTES (1u << 20)
/* The largest QueryResponse: a batch closes after the record that reaches
 * TV_QUERY_BATCH_BYTES, so it holds up to that plus one record (TV_BLOCK_MAX_RECORD_BYTES)
 * plus its framing and skipped entries; twice the sum leaves room for them. The server sends
 * messages up to the larger of this and --max-message-bytes (which bounds what it receives):
 * with a smaller send limit a query of large records ended RESOURCE_EXHAUSTED "Sent message
 * larger than max" halfway. Equal to client/cli/cli.h TV_CLI_READ_MIN_MESSAGE_BYTES, the least
 * `tracevault query` reads with. */
#define TV_QUERY_MAX_MESSAGE_BYTES (2 * (TV_QUERY_BATCH_BYTES + TV_BLOCK_MAX_RECORD_BYTES))
/* ... except the first ones: the first holds at most this many records or bytes, and each
 * later one twice what the one before could, up to the limits above. A client can print
 * nothing before a whole message has arrived and been unpacked, and a full first message
 * (1 MiB, past HTTP/2's first 64 KiB flow-control window) cost 13-40 ms before the first
 * record where a small one costs ~2 ms; after 6 messages the batches are full size again, so
 * a long read keeps its per-message overhead low. */
#define TV_QUERY_FIRST_BATCH_RECORDS 64
#define TV_QUERY_FIRST_BATCH_BYTES (16u << 10)

/* One call of tv_query_next examines at most this many records or runs about this long, then
 * returns what it has (or TV_QUERY_YIELD): the bound on how long one query holds the server's
 * thread, and so on the delay it adds to other calls (Write acks included). */
#define TV_QUERY_SLICE_RECORDS 16384
#define TV_QUERY_SLICE_NS (2u * 1000 * 1000)

/* Memory one query may hold to read its blocks (zstd windows, record and read buffers, the
 * plan of its blocks): tracevaultd --query-memory-bytes. The lower bound lets one stream of
 * the largest window and record (TV_BLOCK_STREAM_MAX_MEMORY_BYTES) and a plan of ~30,000
 * blocks in, so every valid block can be read. Beyond it the query ends RESOURCE_EXHAUSTED
 * after the records before that point. Not counted: the batch being built and the one being
 * sent (each at most TV_QUERY_BATCH_BYTES plus one record). */
#define TV_QUERY_DEFAULT_MEMORY_BYTES (256u << 20)
#define TV_QUERY_MIN_MEMORY_BYTES (16u << 20)
#define TV_QUERY_MAX_MEMORY_BYTES (1ull << 40)
extern const struct tv_limit tv_query_memory_bytes_limit;
/* The same memory summed over every running query: --query-total-memory-bytes (at least
 * --query-memory-bytes; same bounds). A query that finds the pool used up is refused
 * (RESOURCE_EXHAUSTED), never made to wait: a waiting query would hold what it has, and
 * stalled clients could then block every other query for good. */
#define TV_QUERY_DEFAULT_TOTAL_MEMORY_BYTES (1u << 30)
extern const struct tv_limit tv_query_total_memory_bytes_limit;
/* Block files open in all queries at once (one descriptor each, kept while the block's
 * records are merged): past it a query is refused (RESOURCE_EXHAUSTED), so queries cannot
 * take the descriptors the listener needs. The default; tracevaultd's descriptor plan
 * (server/fd_plan.h) lowers it with the other defaults when RLIMIT_NOFILE is small. */
#define TV_QUERY_MAX_OPEN_BLOCKS 512
/* Skipped blocks named in the DATA_LOSS status details (every one is in a
 * QueryResponse.skipped entry); and the size of the details and err buffers the caller
 * passes. */
#define TV_QUERY_DETAIL_BLOCKS 4
#define TV_QUERY_ERR_LEN 1024

/* What all queries of a server share: their limits and what they hold now. One per server,
 * set up with tv_query_pool_init; used from the server's one thread only. */
struct tv_query_pool {
	size_t memory_bytes;       /* per query */
	size_t total_memory_bytes; /* all queries */
	size_t used_bytes;         /* reserved by running queries */
	size_t open_blocks;        /* block files they hold open */
	size_t max_open_blocks;    /* at most (TV_QUERY_MAX_OPEN_BLOCKS unless the plan lowered it) */
	size_t queries;            /* running queries */
	/* Who may still open a block: every query gets the next number when it is planned
	 * (its block list is a snapshot of the catalog then), and the running ones are kept in
	 * that order, so the oldest is at the head. A retention pass that removed rows at
	 * started == N may unlink their files once tv_query_pool_oldest() >= N (server/
	 * retention.h): no query that could have listed them is left. */
	uint64_t started;          /* queries planned so far */
	struct tv_query *oldest, *newest;
	/* eviction's read-back (server/evict.h): a block whose file was evicted is read from
	 * the under-store; NULL: local files only */
	struct tv_evict *evict;
};

/* 0 selects the default of either limit. */
void tv_query_pool_init(struct tv_query_pool *p, size_t memory_bytes, size_t total_memory_bytes);
/* The number of the oldest running query, or p->started when none runs. */
uint64_t tv_query_pool_oldest(const struct tv_query_pool *p);

struct tv_query;
struct tv_evict;

/* What a QueryRequest asks (PROTOCOL.md, Query). */
struct tv_query_params {
	uint64_t from_ns, to_ns; /* from_ns <= to_ns is the caller's check; equal: empty */
	uint64_t limit;          /* 0: no limit, else at most this many records that pass */
	bool reverse;            /* newest first: the exact mirror of the forward order */
	/* QueryResponse.features (TV_QUERY_FEATURE_*): when not 0, the first message carries it
	 * (and one is always sent, maybe without records) */
	uint32_t features;
	bool silent; /* no "query: planned" line at the end (Summary's placeholder logs its own) */
};

/* Plan a query: reads the overlapping block list from the catalog (metadata only). filter
 * (NULL: every record in range) is taken by the query, also on error. c, s and pool must
 * outlive the query. Returns 0 or a negative errno with a reason in err (always set then):
 * -ENOBUFS / -ENOMEM when the plan does not fit (server/status.h gives the status). */
int tv_query_new(struct tv_query **out, struct tv_catalog *c, struct tv_store *s,
		 struct tv_query_pool *pool, const struct tv_query_params *p,
		 struct tv_filter *filter, char *err, size_t errlen);
/* Release the query and everything it holds (descriptors, memory back to the pool). A query
 * that was planned logs one line on stderr (unless its params were silent): "query: planned P blocks, opened O, examined E
 * records, sent S, forward|reverse, T ms" (E counts records decoded, every pass; T from
 * tv_query_new). */
void tv_query_free(struct tv_query *q);

/* Run one slice of the query (TV_QUERY_SLICE_*) and produce the next serialized QueryResponse
 * into *out (caller owns it). Returns 1 with a batch (records and/or skipped blocks, or the
 * first message's features): when the batch is full (TV_QUERY_BATCH_*) or the slice is spent;
 * TV_QUERY_YIELD when the slice is spent before anything was produced (call again: the
 * caller may serve other work first); 0 when the query is complete (tv_query_end_status
 * gives its status), or a negative errno with a reason in err: the query cannot go on (-ENOMEM,
 * -ENOBUFS, -ENFILE for the limits above: RESOURCE_EXHAUSTED; others INTERNAL, see
 * server/status.h). Records produced before such an error are returned first, as a
 * batch; the error comes with the next call. A damaged block is not an error: it is skipped,
 * reported in the batch and logged, and quarantined when the block itself fails its checks
 * (not when its file cannot be opened or read). */
#define TV_QUERY_YIELD 2
int tv_query_next(struct tv_query *q, grpc_byte_buffer **out, char *err, size_t errlen);

/* Charge bytes the caller holds for this query (Summary's groups) to its memory limits, as
 * its block streams are: 0, or -ENOBUFS with the limit named in why. Whatever is still
 * reserved is given back by tv_query_free. */
int tv_query_reserve(struct tv_query *q, size_t bytes, char *why, size_t whylen);
void tv_query_release(struct tv_query *q, size_t bytes);

/* Blocks skipped so far. */
size_t tv_query_skipped(const struct tv_query *q);
/* The status of a complete query: OK, or DATA_LOSS when blocks were skipped, with details
 * naming the first TV_QUERY_DETAIL_BLOCKS of them (written to details, always). */
grpc_status_code tv_query_end_status(const struct tv_query *q, char *details, size_t len);

/* ---- a block that cannot be served: shared with Summary's scan (server/summary_scan.c) ---- */

/* What a block's failure ret (negative errno) means: no memory or descriptor, so the reader
 * cannot go on (RESOURCE); the block itself fails its checks, a symlink or not a regular file:
 * quarantine and skip it (DAMAGED); anything else, its file gone or unreadable: skip it and
 * leave it in place (UNREADABLE). PROTOCOL.md, Query. */
enum tv_block_fault { TV_BLOCK_RESOURCE, TV_BLOCK_DAMAGED, TV_BLOCK_UNREADABLE };
enum tv_block_fault tv_block_fault_of(int ret);

/* The reason, in why (len bytes), that opening block_id's file failed with ret; reader
 * ("query", "summary") names who began before a file went. The CLI reads the "block file
 * gone" prefix (PROTOCOL.md). */
void tv_block_open_reason(struct tv_catalog *c, uint64_t block_id, int ret, const char *reader,
			  char *why, size_t len);

/* tv_block_stream_open's reader for a block file: pread of len bytes at offset from the
 * descriptor *(int *)fd, retried on EINTR. Bytes read, or a negative errno. */
ssize_t tv_block_read_fd(void *fd, uint64_t offset, void *buf, size_t len);

#endif
