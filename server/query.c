/* Time-range query executor: catalog lookup, then a k-way merge over block readers by
 * (ts_ns, block order). Records are forwarded as raw protobuf bytes, never decoded. */
#include "server/query.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/slice.h>

#include "proto/block.h"
#include "proto/varint.h"
#include "proto/wire.h"

struct cursor {
	struct tv_block_reader *r;
	size_t bi;           /* index in q->blocks: the tie-breaker after ts_ns */
	uint64_t ts_ns;      /* current record */
	const uint8_t *data; /* points into r */
	size_t len;
};

struct tv_query {
	struct tv_store *store;
	uint64_t from_ns, to_ns, limit, emitted;
	struct tv_catalog_block *blocks; /* overlap order: min_ts_ns, block_id */
	size_t nblocks, cap, next_block;
	struct cursor **heap;            /* min-heap of open cursors */
	size_t nheap;
	int done;
};

static int collect(const struct tv_catalog_block *b, void *arg)
{
	struct tv_query *q = arg;

	if (q->nblocks == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 16;
		struct tv_catalog_block *p = realloc(q->blocks, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		q->blocks = p;
		q->cap = ncap;
	}
	q->blocks[q->nblocks++] = *b;
	return 0;
}

int tv_query_new(struct tv_query **out, struct tv_catalog *c, struct tv_store *s,
		 uint64_t from_ns, uint64_t to_ns, uint64_t limit, char *err, size_t errlen)
{
	struct tv_query *q = calloc(1, sizeof(*q));
	int ret;

	*out = NULL;
	if (!q)
		return -ENOMEM;
	q->store = s;
	q->from_ns = from_ns;
	q->to_ns = to_ns;
	q->limit = limit;
	ret = tv_catalog_overlap(c, from_ns, to_ns, collect, q);
	if (ret) {
		snprintf(err, errlen, "catalog lookup failed: %s", strerror(-ret));
		tv_query_free(q);
		return ret;
	}
	q->heap = calloc(q->nblocks ? q->nblocks : 1, sizeof(*q->heap));
	if (!q->heap) {
		tv_query_free(q);
		return -ENOMEM;
	}
	*out = q;
	return 0;
}

static void cursor_free(struct cursor *cur)
{
	if (!cur)
		return;
	tv_block_reader_free(cur->r);
	free(cur);
}

void tv_query_free(struct tv_query *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->nheap; i++)
		cursor_free(q->heap[i]);
	free(q->heap);
	free(q->blocks);
	free(q);
}

/* ---- min-heap on (ts_ns, bi) ---- */

static int less(const struct cursor *a, const struct cursor *b)
{
	return a->ts_ns != b->ts_ns ? a->ts_ns < b->ts_ns : a->bi < b->bi;
}

static void heap_push(struct tv_query *q, struct cursor *c)
{
	size_t i = q->nheap++;

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!less(c, q->heap[p]))
			break;
		q->heap[i] = q->heap[p];
		i = p;
	}
	q->heap[i] = c;
}

static struct cursor *heap_pop(struct tv_query *q)
{
	struct cursor *top = q->heap[0], *last = q->heap[--q->nheap];
	size_t i = 0;

	for (;;) {
		size_t l = 2 * i + 1, m = l;

		if (l >= q->nheap)
			break;
		if (l + 1 < q->nheap && less(q->heap[l + 1], q->heap[l]))
			m = l + 1;
		if (!less(q->heap[m], last))
			break;
		q->heap[i] = q->heap[m];
		i = m;
	}
	if (q->nheap)
		q->heap[i] = last;
	return top;
}

/* Move cur to its next record. Returns 1 when it has one in range, 0 when it is exhausted or
 * past to_ns, -EBADMSG on a corrupt or out-of-order record (reason in err). */
static int cursor_advance(struct tv_query *q, struct cursor *cur, char *err, size_t errlen)
{
	const struct tv_block_header *h = tv_block_reader_header(cur->r);
	uint64_t prev_ts = cur->ts_ns;
	int ret = tv_block_reader_next_raw(cur->r, &cur->data, &cur->len, &cur->ts_ns);

	if (ret < 0) {
		snprintf(err, errlen, "block %016llx: corrupt record stream",
			 (unsigned long long)q->blocks[cur->bi].block_id);
		return -EBADMSG;
	}
	if (ret == 0)
		return 0;
	/* the merge relies on each block being sorted and inside its header range */
	if (cur->ts_ns < prev_ts || cur->ts_ns < h->min_ts_ns || cur->ts_ns > h->max_ts_ns) {
		snprintf(err, errlen, "block %016llx: record ts_ns %llu out of order or outside "
			 "[%llu, %llu]", (unsigned long long)q->blocks[cur->bi].block_id,
			 (unsigned long long)cur->ts_ns, (unsigned long long)h->min_ts_ns,
			 (unsigned long long)h->max_ts_ns);
		return -EBADMSG;
	}
	return cur->ts_ns < q->to_ns;
}

/* Read and check block bi, then position its cursor at the first record >= from_ns and put it
 * on the heap (or drop it when nothing of it is in range). */
static int open_block(struct tv_query *q, size_t bi, char *err, size_t errlen)
{
	const struct tv_catalog_block *meta = &q->blocks[bi];
	const struct tv_block_header *h;
	char why[160];
	struct cursor *cur = NULL;
	void *buf = NULL;
	size_t len = 0;
	int ret;

	ret = tv_store_read_block(q->store, meta->segment_id, meta->block_id,
				  TV_SERVER_MAX_BLOCK_BYTES, &buf, &len);
	if (ret) {
		snprintf(err, errlen, "block %016llx: cannot read file: %s",
			 (unsigned long long)meta->block_id, strerror(-ret));
		return ret == -ENOMEM ? ret : -EBADMSG;
	}
	cur = calloc(1, sizeof(*cur));
	if (!cur) {
		free(buf);
		return -ENOMEM;
	}
	cur->bi = bi;
	ret = tv_block_reader_open(&cur->r, buf, len, why, sizeof(why));
	free(buf);
	if (ret) {
		snprintf(err, errlen, "block %016llx: %s", (unsigned long long)meta->block_id, why);
		ret = ret == -ENOMEM ? ret : -EBADMSG;
		goto fail;
	}
	h = tv_block_reader_header(cur->r);
	if (h->block_id != meta->block_id || h->min_ts_ns != meta->min_ts_ns ||
	    h->max_ts_ns != meta->max_ts_ns || len != meta->bytes) {
		snprintf(err, errlen, "block %016llx: file does not match its catalog entry",
			 (unsigned long long)meta->block_id);
		ret = -EBADMSG;
		goto fail;
	}
	cur->ts_ns = 0;
	do {
		ret = cursor_advance(q, cur, err, errlen);
	} while (ret == 1 && cur->ts_ns < q->from_ns);
	if (ret < 0)
		goto fail;
	if (ret == 0) {
		cursor_free(cur);
		return 0;
	}
	heap_push(q, cur);
	return 0;
fail:
	cursor_free(cur);
	return ret;
}

int tv_query_next(struct tv_query *q, grpc_byte_buffer **out, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	uint32_t count = 0;
	grpc_slice slice;
	int ret;

	*out = NULL;
	while (!q->done && count < TV_QUERY_BATCH_RECORDS && len < TV_QUERY_BATCH_BYTES) {
		struct cursor *cur;

		if (q->limit && q->emitted == q->limit) {
			q->done = 1;
			break;
		}
		/* open every block that could hold the next record: its min_ts_ns is at or below
		 * the frontier (ties included, so block order breaks them) */
		while (q->next_block < q->nblocks &&
		       (q->nheap == 0 || q->blocks[q->next_block].min_ts_ns <= q->heap[0]->ts_ns)) {
			ret = open_block(q, q->next_block++, err, errlen);
			if (ret)
				goto fail;
		}
		if (q->nheap == 0) {
			q->done = 1;
			break;
		}
		cur = q->heap[0];
		/* QueryResponse.records (field 1, length-delimited) framed by hand around the raw
		 * record bytes: no decode/encode round trip */
		if (cap - len < cur->len + 11) {
			size_t ncap = cap ? cap * 2 : 64 * 1024;
			uint8_t *p;

			while (ncap - len < cur->len + 11)
				ncap *= 2;
			p = realloc(buf, ncap);
			if (!p) {
				ret = -ENOMEM;
				goto fail;
			}
			buf = p;
			cap = ncap;
		}
		buf[len++] = (1 << 3) | 2;
		len += tv_varint_put(buf + len, cur->len);
		memcpy(buf + len, cur->data, cur->len);
		len += cur->len;
		count++;
		q->emitted++;
		heap_pop(q);
		ret = cursor_advance(q, cur, err, errlen);
		if (ret < 0) {
			cursor_free(cur);
			goto fail;
		}
		if (ret)
			heap_push(q, cur);
		else
			cursor_free(cur);
	}
	if (count == 0) {
		free(buf);
		return 0;
	}
	/* the slice takes the buffer: grpc frees it when the transport is done with it */
	slice = grpc_slice_new(buf, len, free);
	*out = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);
	return *out ? 1 : -ENOMEM;
fail:
	free(buf);
	q->done = 1;
	return ret;
}
