/* The window of a reverse Query's block cursor (PROTOCOL.md "Reverse", design in query.c):
 * today's blocks are one zstd frame that can only be read forward, so a cursor reads a block
 * from its start and keeps the newest matching records it met in this window, then hands them
 * out newest first. The window holds at most a fixed number of bytes; when a record does not
 * fit, the oldest ones are dropped and the cursor reads the block again up to the oldest it
 * kept (a windowed re-scan). Its memory is reserved from the query's budget. */
#ifndef TV_QUERY_WINDOW_H
#define TV_QUERY_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/block.h"
#include "proto/block_stream.h"

/* What one window holds at most: its records' bytes plus TV_QUERY_WINDOW_ENTRY_BYTES of
 * bookkeeping per record. A block whose matching records in the range fit it is read once;
 * a larger one is read ceil(size / this) times. The memory behind it is at most 3x this (a
 * byte ring up to it, a record table that doubles). */
#define TV_QUERY_WINDOW_BYTES (4u << 20)
#define TV_QUERY_WINDOW_ENTRY_BYTES 24u

struct tv_query_window_rec {
	uint32_t off;     /* in the byte ring; the record may wrap past its end */
	uint32_t len;
	uint32_t ordinal; /* its place in the block, from 0 */
	uint64_t ts_ns;
};

struct tv_query_window {
	const struct tv_block_budget *budget; /* NULL: no limit */
	uint8_t *buf;                         /* byte ring of cap bytes */
	size_t cap, used, tail;
	struct tv_query_window_rec *recs;     /* live records are recs[first .. n) */
	size_t first, n, recs_cap;
	size_t cost;                          /* of the live records, at most TV_QUERY_WINDOW_BYTES */
	size_t held;                          /* reserved from the budget */
	bool evicted;                         /* records were dropped since the last reset */
};

/* An empty window drawing on budget (which must outlive it). */
void tv_query_window_init(struct tv_query_window *w, const struct tv_block_budget *budget);

/* Append a copy of the record of len bytes at data (its ordinal strictly above the last one's),
 * dropping the oldest records when it would not fit (evicted is set then). Returns 0, or
 * -ENOBUFS (the budget refused: its reason in why) or -ENOMEM, the window unchanged. A
 * record is at most TV_BLOCK_MAX_RECORD_BYTES, so it always fits an emptied window. */
int tv_query_window_push(struct tv_query_window *w, const uint8_t *data, size_t len,
			 uint64_t ts_ns, uint32_t ordinal, char *why, size_t whylen);

static inline bool tv_query_window_empty(const struct tv_query_window *w)
{
	return w->first == w->n;
}

/* The newest record (the window must not be empty), as one or two pieces: *p2 is NULL unless
 * it wraps past the ring's end. Valid until the window changes. */
const struct tv_query_window_rec *tv_query_window_last(const struct tv_query_window *w,
							const uint8_t **p1, size_t *l1,
							const uint8_t **p2, size_t *l2);
/* The oldest record kept (the window must not be empty). */
const struct tv_query_window_rec *tv_query_window_oldest(const struct tv_query_window *w);
/* Drop the newest record. */
void tv_query_window_pop(struct tv_query_window *w);
/* Empty it for the next pass (its memory stays) and clear evicted. */
void tv_query_window_reset(struct tv_query_window *w);
/* Free its memory and give it back to the budget. */
void tv_query_window_free(struct tv_query_window *w);

#endif
