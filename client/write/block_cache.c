/* Bounded block cache: a byte budget with blocking reservations, and the slice destroy
 * callback that is the single place a sealed block's memory is freed and its bytes returned. */
#include "write/block_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "common/clock.h"

/*
 * Lifetime: the cache struct is refcounted too. The owner holds one ref, every live block one
 * more, so a destroy callback that runs on a gRPC thread after tv_block_cache_free still finds
 * its mutex and counters. Whoever drops the last ref frees the struct.
 */
struct tv_block_cache {
	pthread_mutex_t mu;
	pthread_cond_t room; /* signalled whenever used_bytes goes down */
	size_t capacity_bytes, used_bytes, peak_bytes, blocks;
	long refs;
};

/* One cached block: what its destroy callback needs. */
struct cached_block {
	struct tv_block_cache *cache;
	void *data;
	size_t len;
};

struct tv_block_cache *tv_block_cache_new(size_t capacity_bytes)
{
	struct tv_block_cache *c;
	pthread_condattr_t ca;

	if (capacity_bytes == 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->capacity_bytes = capacity_bytes;
	c->refs = 1;
	pthread_mutex_init(&c->mu, NULL);
	/* timed waits against CLOCK_MONOTONIC: a wall-clock step must not stretch back-pressure */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->room, &ca);
	pthread_condattr_destroy(&ca);
	return c;
}

/* Drop one ref; the caller holds c->mu, which this releases. */
static void cache_unref_locked(struct tv_block_cache *c)
{
	bool last = --c->refs == 0;

	pthread_mutex_unlock(&c->mu);
	if (last) {
		pthread_cond_destroy(&c->room);
		pthread_mutex_destroy(&c->mu);
		free(c);
	}
}

void tv_block_cache_free(struct tv_block_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	cache_unref_locked(c);
}

static void release_bytes_locked(struct tv_block_cache *c, size_t bytes)
{
	c->used_bytes -= bytes < c->used_bytes ? bytes : c->used_bytes;
	pthread_cond_broadcast(&c->room);
}

int tv_block_cache_reserve(struct tv_block_cache *c, size_t bytes, int timeout_ms)
{
	struct timespec until;
	int ret = 0;

	if (bytes > c->capacity_bytes)
		return -E2BIG;
	until = tv_timespec_from_ns(tv_monotonic_ns() +
				    (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * TV_NS_PER_MS);
	pthread_mutex_lock(&c->mu);
	/* bounded by the deadline: every wake re-checks room, a timeout ends the loop */
	while (c->capacity_bytes - c->used_bytes < bytes) {
		if (timeout_ms <= 0 ||
		    pthread_cond_timedwait(&c->room, &c->mu, &until) == ETIMEDOUT) {
			if (c->capacity_bytes - c->used_bytes < bytes)
				ret = -ENOBUFS;
			break;
		}
	}
	if (ret == 0) {
		c->used_bytes += bytes;
		if (c->used_bytes > c->peak_bytes)
			c->peak_bytes = c->used_bytes;
	}
	pthread_mutex_unlock(&c->mu);
	return ret;
}

void tv_block_cache_unreserve(struct tv_block_cache *c, size_t bytes)
{
	pthread_mutex_lock(&c->mu);
	release_bytes_locked(c, bytes);
	pthread_mutex_unlock(&c->mu);
}

/* The slice destroy callback: the only place a cached block is freed. Runs on whatever thread
 * drops the last ref (ours, or a gRPC transport thread). */
static void block_destroy(void *arg)
{
	struct cached_block *b = arg;
	struct tv_block_cache *c = b->cache;

	free(b->data);
	pthread_mutex_lock(&c->mu);
	c->blocks--;
	release_bytes_locked(c, b->len);
	free(b);
	cache_unref_locked(c);
}

int tv_block_cache_adopt(struct tv_block_cache *c, void *data, size_t len, grpc_slice *out)
{
	struct cached_block *b = malloc(sizeof(*b));

	if (!b) {
		free(data);
		tv_block_cache_unreserve(c, len);
		return -ENOMEM;
	}
	b->cache = c;
	b->data = data;
	b->len = len;
	pthread_mutex_lock(&c->mu);
	c->refs++;
	c->blocks++;
	pthread_mutex_unlock(&c->mu);
	*out = grpc_slice_new_with_user_data(data, len, block_destroy, b);
	return 0;
}

void tv_block_cache_stats(struct tv_block_cache *c, struct tv_block_cache_stats *st)
{
	pthread_mutex_lock(&c->mu);
	st->used_bytes = c->used_bytes;
	st->peak_bytes = c->peak_bytes;
	st->blocks = c->blocks;
	st->capacity_bytes = c->capacity_bytes;
	pthread_mutex_unlock(&c->mu);
}
