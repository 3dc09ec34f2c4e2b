/* The bounded cache of sealed trace blocks between the capture path and the segment writer.
 * Each block is wrapped once in a refcounted grpc_slice; its destroy callback frees it. */
#ifndef TV_BLOCK_CACHE_H
#define TV_BLOCK_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/slice.h>

struct tv_block_cache_stats {
	size_t used_bytes;  /* reserved + cached bytes not yet released */
	size_t peak_bytes;  /* highest used_bytes seen */
	size_t blocks;      /* cached blocks whose memory is still alive */
	size_t capacity_bytes;
};

struct tv_block_cache;

/* A cache that never holds more than capacity_bytes of reserved or cached blocks. NULL on
 * ENOMEM or capacity_bytes == 0. */
struct tv_block_cache *tv_block_cache_new(size_t capacity_bytes);

/* Drop the owner's reference. Blocks still referenced by slices (e.g. held by gRPC) keep the
 * cache's accounting alive until their last slice ref goes; then it is freed. Safe on NULL. */
void tv_block_cache_free(struct tv_block_cache *c);

/* Reserve bytes of the budget, waiting up to timeout_ms (0: do not wait) for blocks to be
 * released. 0 on success; -ENOBUFS when no room came in time (the caller drops and counts);
 * -E2BIG when bytes exceeds the whole capacity (it could never fit). */
int tv_block_cache_reserve(struct tv_block_cache *c, size_t bytes, int timeout_ms);

/* Give back a reservation that was not turned into a block (e.g. the caller gave up). */
void tv_block_cache_unreserve(struct tv_block_cache *c, size_t bytes);

/* Wrap data (malloc'd, len bytes, covered by an earlier reservation of len bytes) into a
 * refcounted slice. Ownership of data moves to the slice: the slice's destroy callback, run
 * when the last ref (ours or any sub-slice's, e.g. inside gRPC) is dropped, is the only place
 * that frees data and returns its len bytes to the budget, waking reserve() waiters. On
 * -ENOMEM data is freed and the reservation given back. */
int tv_block_cache_adopt(struct tv_block_cache *c, void *data, size_t len, grpc_slice *out);

void tv_block_cache_stats(struct tv_block_cache *c, struct tv_block_cache_stats *st);

#endif
