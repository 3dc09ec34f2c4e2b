/* Time-range query: finds the blocks overlapping [from_ns, to_ns) in the catalog and k-way
 * merges their records by ts_ns into QueryResponse batches, opening a block only when the
 * merge frontier reaches its min_ts_ns so memory stays bounded by the blocks that overlap. */
#ifndef TV_QUERY_H
#define TV_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>

#include "server/catalog.h"
#include "server/store_uring.h"

/* One QueryResponse holds at most this many records or (about) this many bytes. */
#define TV_QUERY_BATCH_RECORDS 4096
#define TV_QUERY_BATCH_BYTES (1u << 20)

struct tv_query;

/* Plan a query: reads the overlapping block list from the catalog (metadata only). from_ns <= to_ns
 * is the caller's check (equal is an empty range); limit 0 means no limit. c and s must outlive the
 * query. Returns 0 or a negative errno with a reason in err. */
int tv_query_new(struct tv_query **out, struct tv_catalog *c, struct tv_store *s,
		 uint64_t from_ns, uint64_t to_ns, uint64_t limit, char *err, size_t errlen);
void tv_query_free(struct tv_query *q);

/* Produce the next serialized QueryResponse into *out (caller owns it). Returns 1 with a batch,
 * 0 when the query is complete, -EBADMSG when a block is corrupt or missing (reason in err names
 * the block id: answer DATA_LOSS), or another negative errno. */
int tv_query_next(struct tv_query *q, grpc_byte_buffer **out, char *err, size_t errlen);

#endif
