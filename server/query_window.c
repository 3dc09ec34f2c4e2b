/* The reverse Query's per-block window (query_window.h): a byte ring of record copies and a
 * table of their places. Records enter newest last and leave newest first (pop) or oldest
 * first (eviction), so the live bytes are one contiguous run of the ring, maybe wrapped. The
 * ring grows by doubling up to what the window may hold; the table doubles, and is compacted
 * instead when at least half of it is dead entries, so each entry is moved O(1) times. */
#include "server/query_window.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(TV_BLOCK_MAX_RECORD_BYTES + TV_QUERY_WINDOW_ENTRY_BYTES <= TV_QUERY_WINDOW_BYTES,
	       "the largest record must fit an empty window");
_Static_assert(TV_QUERY_WINDOW_BYTES <= UINT32_MAX, "ring offsets are 32-bit");
_Static_assert(sizeof(struct tv_query_window_rec) <= TV_QUERY_WINDOW_ENTRY_BYTES,
	       "an entry costs what the window charges for it");

#define MIN_RING_BYTES (64u << 10)
#define MIN_RECS 64u

void tv_query_window_init(struct tv_query_window *w, const struct tv_block_budget *budget)
{
	*w = (struct tv_query_window){ .budget = budget };
}

static int reserve(struct tv_query_window *w, size_t bytes, char *why, size_t whylen)
{
	int ret = w->budget ? w->budget->reserve(w->budget->arg, bytes, why, whylen) : 0;

	if (!ret)
		w->held += bytes;
	return ret;
}

static void release(struct tv_query_window *w, size_t bytes)
{
	if (w->budget)
		w->budget->release(w->budget->arg, bytes);
	w->held -= bytes;
}

/* Grow the ring to hold need bytes, copying the live run to its start (unwrapped). */
static int grow_ring(struct tv_query_window *w, size_t need, char *why, size_t whylen)
{
	size_t ncap = w->cap ? w->cap * 2 : MIN_RING_BYTES, head;
	uint8_t *nb;
	int ret;

	while (ncap < need)
		ncap *= 2;
	if (ncap > TV_QUERY_WINDOW_BYTES)
		ncap = TV_QUERY_WINDOW_BYTES; /* need is at most that: push evicted first */
	ret = reserve(w, ncap - w->cap, why, whylen);
	if (ret)
		return ret;
	nb = malloc(ncap);
	if (!nb) {
		release(w, ncap - w->cap);
		snprintf(why, whylen, "out of memory for a reverse window of %zu bytes", ncap);
		return -ENOMEM;
	}
	head = (w->tail + w->cap - w->used) % (w->cap ? w->cap : 1);
	if (w->used) {
		size_t first = w->cap - head < w->used ? w->cap - head : w->used;

		memcpy(nb, w->buf + head, first);
		memcpy(nb + first, w->buf, w->used - first);
	}
	for (size_t i = w->first; i < w->n; i++)
		w->recs[i].off = (uint32_t)((w->recs[i].off + w->cap - head) % w->cap);
	free(w->buf);
	w->buf = nb;
	w->cap = ncap;
	w->tail = w->used;
	return 0;
}

/* Room for one more entry in the table: compact when half of it is dead, else double it. */
static int room_recs(struct tv_query_window *w, char *why, size_t whylen)
{
	size_t ncap;
	void *np;
	int ret;

	if (w->n < w->recs_cap)
		return 0;
	if (w->first && w->first >= w->recs_cap / 2) {
		memmove(w->recs, w->recs + w->first, (w->n - w->first) * sizeof(*w->recs));
		w->n -= w->first;
		w->first = 0;
		return 0;
	}
	ncap = w->recs_cap ? w->recs_cap * 2 : MIN_RECS;
	ret = reserve(w, (ncap - w->recs_cap) * sizeof(*w->recs), why, whylen);
	if (ret)
		return ret;
	np = realloc(w->recs, ncap * sizeof(*w->recs));
	if (!np) {
		release(w, (ncap - w->recs_cap) * sizeof(*w->recs));
		snprintf(why, whylen, "out of memory for a reverse window's table");
		return -ENOMEM;
	}
	w->recs = np;
	w->recs_cap = ncap;
	return 0;
}

static void evict_oldest(struct tv_query_window *w)
{
	const struct tv_query_window_rec *r = &w->recs[w->first++];

	w->used -= r->len;
	w->cost -= r->len + TV_QUERY_WINDOW_ENTRY_BYTES;
	w->evicted = true;
	if (w->first == w->n)
		w->first = w->n = 0;
}

int tv_query_window_push(struct tv_query_window *w, const uint8_t *data, size_t len,
			 uint64_t ts_ns, uint32_t ordinal, char *why, size_t whylen)
{
	size_t cost = len + TV_QUERY_WINDOW_ENTRY_BYTES, first;
	struct tv_query_window_rec *r;
	int ret;

	if (cost > TV_QUERY_WINDOW_BYTES) { /* a block_stream record never is: its check */
		snprintf(why, whylen, "record of %zu bytes is larger than a reverse window", len);
		return -EBADMSG;
	}
	/* what eviction would free is only dropped once the new record is sure to fit */
	if (w->cost + cost <= TV_QUERY_WINDOW_BYTES && (w->used + len > w->cap || !w->cap)) {
		ret = grow_ring(w, w->used + len, why, whylen);
		if (ret)
			return ret;
	}
	if (w->cost + cost > TV_QUERY_WINDOW_BYTES && w->cap < TV_QUERY_WINDOW_BYTES) {
		ret = grow_ring(w, TV_QUERY_WINDOW_BYTES, why, whylen);
		if (ret)
			return ret;
	}
	ret = room_recs(w, why, whylen);
	if (ret)
		return ret;
	while (w->cost + cost > TV_QUERY_WINDOW_BYTES)
		evict_oldest(w);
	if (w->used == 0)
		w->tail = 0;
	r = &w->recs[w->n++];
	*r = (struct tv_query_window_rec){ .off = (uint32_t)w->tail, .len = (uint32_t)len,
					   .ordinal = ordinal, .ts_ns = ts_ns };
	first = w->cap - w->tail < len ? w->cap - w->tail : len;
	memcpy(w->buf + w->tail, data, first);
	memcpy(w->buf, data + first, len - first);
	w->tail = (w->tail + len) % w->cap;
	w->used += len;
	w->cost += cost;
	return 0;
}

const struct tv_query_window_rec *tv_query_window_last(const struct tv_query_window *w,
							const uint8_t **p1, size_t *l1,
							const uint8_t **p2, size_t *l2)
{
	const struct tv_query_window_rec *r = &w->recs[w->n - 1];
	size_t first = w->cap - r->off < r->len ? w->cap - r->off : r->len;

	*p1 = w->buf + r->off;
	*l1 = first;
	*p2 = first < r->len ? w->buf : NULL;
	*l2 = r->len - first;
	return r;
}

const struct tv_query_window_rec *tv_query_window_oldest(const struct tv_query_window *w)
{
	return &w->recs[w->first];
}

void tv_query_window_pop(struct tv_query_window *w)
{
	const struct tv_query_window_rec *r = &w->recs[--w->n];

	w->used -= r->len;
	w->cost -= r->len + TV_QUERY_WINDOW_ENTRY_BYTES;
	w->tail = r->off;
	if (w->first == w->n)
		w->first = w->n = 0;
}

void tv_query_window_reset(struct tv_query_window *w)
{
	w->first = w->n = 0;
	w->used = w->tail = w->cost = 0;
	w->evicted = false;
}

void tv_query_window_free(struct tv_query_window *w)
{
	free(w->buf);
	free(w->recs);
	if (w->held)
		release(w, w->held);
	tv_query_window_init(w, w->budget);
}
