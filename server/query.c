/* Time-range query executor: catalog lookup, then a k-way merge over block streams by
 * (ts_ns, block order). Records are forwarded as raw protobuf bytes, never decoded; the
 * request's filter (server/filter.h) reads their tags in place and drops the ones it refuses
 * before they reach the merge.
 *
 * What can go wrong with a block, and what the query does (PROTOCOL.md, Query):
 *   - it fails its checks (header, size, CRC, the catalog row, decompression, records;
 *     a symlink or not a regular file): damaged. Quarantined (server/quarantine.h), logged,
 *     reported in the batch being built, skipped; the merge goes on without it.
 *   - its file is missing or cannot be read (ENOENT, EACCES, EIO): reported and skipped the
 *     same way, but left in place (the fault may be passing, or the block was deleted or
 *     quarantined after the query began).
 *   - no memory or descriptor for it (the limits of query.h, malloc): the query cannot be
 *     answered exactly and ends RESOURCE_EXHAUSTED, after sending what it produced.
 * A block's payload CRC is checked before its first record leaves, so a damaged block is
 * almost always found before any of its records is sent; a block whose records break the
 * format behind a good CRC (stored before Write checked them) is reported with the count of
 * records already sent from it. The payload is read twice (CRC, then records), so every
 * cursor completes the second CRC before it is dropped, also when the query stops before the
 * block's end (to_ns, limit): a file changed in place while it was read is reported, never
 * served silently. A version 3 block is read page by page instead (proto/block_stream.h): its
 * directory's CRC at open, each page's when the page is read, so only what is served is read
 * and checked; a window starts at its first page and a trace-id filter may skip the block. */
#include "server/query.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/slice.h>

#include "common/size.h"
#include "proto/block_stream.h"
#include "proto/varint.h"
#include "proto/wire.h"
#include "server/filter.h"
#include "server/quarantine.h"

#define REASON_LEN 256

_Static_assert(TV_QUERY_MIN_MEMORY_BYTES >= TV_BLOCK_STREAM_MAX_MEMORY_BYTES + (1u << 20),
	       "a query must be able to read the largest valid block");

const struct tv_limit tv_query_memory_bytes_limit = {
	.min = TV_QUERY_MIN_MEMORY_BYTES, .max = TV_QUERY_MAX_MEMORY_BYTES,
};
const struct tv_limit tv_query_total_memory_bytes_limit = {
	.min = TV_QUERY_MIN_MEMORY_BYTES, .max = TV_QUERY_MAX_MEMORY_BYTES,
};

struct cursor {
	struct tv_query *q;
	struct tv_block_stream *s;
	int fd;
	size_t bi;           /* index in q->blocks: the tie-breaker after ts_ns */
	uint64_t ts_ns;      /* current record */
	const uint8_t *data; /* points into s, valid until it advances */
	size_t len;
	uint32_t sent;       /* records of it in batches so far */
};

struct skip {
	size_t bi;
	uint32_t served;
	bool quarantined;
	char reason[REASON_LEN];
};

/* The QueryResponse under construction, framed by hand. */
struct batch {
	uint8_t *buf;
	size_t len, cap;
	uint32_t records;
};

struct tv_query {
	struct tv_store *store;
	struct tv_catalog *catalog;
	struct tv_query_pool *pool;
	struct tv_block_budget budget; /* its streams reserve through it */
	size_t held;                   /* bytes reserved from the pool */
	uint64_t from_ns, to_ns, limit, emitted;
	struct tv_filter *filter;        /* NULL: every record in range */
	struct tv_catalog_block *blocks; /* overlap order: min_ts_ns, block_id */
	size_t nblocks, cap, next_block;
	struct cursor **heap;            /* min-heap of open cursors */
	size_t nheap, heap_cap;
	struct skip *skips;
	size_t nskips, skips_cap;
	int fatal_ret;                   /* an error held back behind the last batch */
	char fatal_err[TV_QUERY_ERR_LEN];
	bool done;
};

void tv_query_pool_init(struct tv_query_pool *p, size_t memory_bytes, size_t total_memory_bytes)
{
	*p = (struct tv_query_pool){
		.memory_bytes = memory_bytes ? memory_bytes : TV_QUERY_DEFAULT_MEMORY_BYTES,
		.total_memory_bytes = total_memory_bytes ? total_memory_bytes :
							   TV_QUERY_DEFAULT_TOTAL_MEMORY_BYTES,
		.max_open_blocks = TV_QUERY_MAX_OPEN_BLOCKS,
	};
}

/* ---- the memory budget: per query, then the server's pool ---- */

static int reserve(void *arg, size_t bytes, char *why, size_t whylen)
{
	struct tv_query *q = arg;
	struct tv_query_pool *p = q->pool;
	char lim[32];

	if (bytes > p->memory_bytes - q->held) {
		tv_size_format(p->memory_bytes, lim, sizeof(lim));
		snprintf(why, whylen, "the query's memory limit is reached (--query-memory-bytes "
			 "%s; %zu bytes held, %zu blocks open): narrow the time range", lim, q->held,
			 q->nheap);
		return -ENOBUFS;
	}
	if (bytes > p->total_memory_bytes - p->used_bytes) {
		tv_size_format(p->total_memory_bytes, lim, sizeof(lim));
		snprintf(why, whylen, "the memory of all queries is in use (--query-total-memory-"
			 "bytes %s, %zu queries running): try again later", lim, p->queries);
		return -ENOBUFS;
	}
	q->held += bytes;
	p->used_bytes += bytes;
	return 0;
}

static void release(void *arg, size_t bytes)
{
	struct tv_query *q = arg;

	q->held -= bytes;
	q->pool->used_bytes -= bytes;
}

/* Grow an array of *cap elements of elem bytes to hold need, its memory reserved. */
static int grow(struct tv_query *q, void **p, size_t *cap, size_t need, size_t elem, char *why,
		size_t whylen)
{
	size_t ncap = *cap ? *cap * 2 : 16;
	void *np;
	int ret;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	ret = reserve(q, (ncap - *cap) * elem, why, whylen);
	if (ret)
		return ret;
	np = realloc(*p, ncap * elem);
	if (!np) {
		release(q, (ncap - *cap) * elem);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	*p = np;
	*cap = ncap;
	return 0;
}

struct collect_arg {
	struct tv_query *q;
	char why[REASON_LEN];
};

static int collect(const struct tv_catalog_block *b, void *arg)
{
	struct collect_arg *ca = arg;
	struct tv_query *q = ca->q;
	int ret = grow(q, (void **)&q->blocks, &q->cap, q->nblocks + 1, sizeof(*q->blocks), ca->why,
		       sizeof(ca->why));

	if (ret)
		return ret;
	q->blocks[q->nblocks++] = *b;
	return 0;
}

int tv_query_new(struct tv_query **out, struct tv_catalog *c, struct tv_store *s,
		 struct tv_query_pool *pool, uint64_t from_ns, uint64_t to_ns, uint64_t limit,
		 struct tv_filter *filter, char *err, size_t errlen)
{
	struct collect_arg ca = { .why = "" };
	struct tv_query *q = calloc(1, sizeof(*q));
	int ret;

	*out = NULL;
	if (!q) {
		tv_filter_free(filter);
		snprintf(err, errlen, "out of memory planning the query");
		return -ENOMEM;
	}
	q->filter = filter;
	q->store = s;
	q->catalog = c;
	q->pool = pool;
	q->budget = (struct tv_block_budget){ .reserve = reserve, .release = release, .arg = q };
	q->from_ns = from_ns;
	q->to_ns = to_ns;
	q->limit = limit;
	pool->queries++;
	ca.q = q;
	ret = tv_catalog_overlap(c, from_ns, to_ns, collect, &ca);
	if (ret) {
		if (ca.why[0])
			snprintf(err, errlen, "cannot plan the query over %zu+ blocks: %s",
				 q->nblocks, ca.why);
		else
			snprintf(err, errlen, "catalog lookup failed: %s", strerror(-ret));
		tv_query_free(q);
		return ret;
	}
	/* the heap holds at most one cursor per block */
	ret = grow(q, (void **)&q->heap, &q->heap_cap, q->nblocks ? q->nblocks : 1,
		   sizeof(*q->heap), ca.why, sizeof(ca.why));
	if (ret) {
		snprintf(err, errlen, "cannot plan the query over %zu blocks: %s", q->nblocks, ca.why);
		tv_query_free(q);
		return ret;
	}
	*out = q;
	return 0;
}

static void cursor_free(struct cursor *cur)
{
	if (!cur)
		return;
	tv_block_stream_free(cur->s);
	if (cur->fd >= 0) {
		close(cur->fd);
		cur->q->pool->open_blocks--;
	}
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
	free(q->skips);
	tv_filter_free(q->filter);
	release(q, q->held); /* the plan's arrays; every stream gave its share back */
	q->pool->queries--;
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

/* ---- the batch: QueryResponse fields framed by hand around bytes we already have ---- */

static int batch_room(struct batch *b, size_t n)
{
	size_t ncap = b->cap ? b->cap * 2 : 64 * 1024;
	uint8_t *p;

	if (b->cap - b->len >= n)
		return 0;
	while (ncap - b->len < n)
		ncap *= 2;
	p = realloc(b->buf, ncap);
	if (!p)
		return -ENOMEM;
	b->buf = p;
	b->cap = ncap;
	return 0;
}

/* Field number field (length-delimited) holding the len bytes at data. */
static int batch_put(struct batch *b, unsigned field, const uint8_t *data, size_t len)
{
	int ret = batch_room(b, len + 1 + TV_VARINT_MAX_BYTES);

	if (ret)
		return ret;
	b->buf[b->len++] = (uint8_t)(field << 3 | 2);
	b->len += tv_varint_put(b->buf + b->len, len);
	memcpy(b->buf + b->len, data, len);
	b->len += len;
	return 0;
}

/* QueryResponse.skipped (field 2) for q->skips[i]. */
static int batch_put_skip(struct tv_query *q, struct batch *b, size_t i)
{
	Tracevault__V1__SkippedBlock m = TRACEVAULT__V1__SKIPPED_BLOCK__INIT;
	const struct skip *sk = &q->skips[i];
	const struct tv_catalog_block *meta = &q->blocks[sk->bi];
	uint8_t buf[REASON_LEN + 128]; /* the reason and six small fields */
	size_t n;

	m.block_id = meta->block_id;
	m.segment_id = meta->segment_id;
	m.min_ts_ns = meta->min_ts_ns;
	m.max_ts_ns = meta->max_ts_ns;
	m.records_served = sk->served;
	m.reason = (char *)sk->reason;
	m.quarantined = sk->quarantined;
	if (tracevault__v1__skipped_block__get_packed_size(&m) > sizeof(buf))
		return -EMSGSIZE; /* cannot happen: the reason is shorter than REASON_LEN */
	n = tracevault__v1__skipped_block__pack(&m, buf);
	return batch_put(b, 2, buf, n);
}

/* ---- a block that cannot be served ---- */

enum fault {
	F_RESOURCE, /* no memory or descriptor: the query cannot go on */
	F_DAMAGED,  /* the block itself fails its checks: quarantine and skip */
	F_UNREADABLE, /* its file is gone or unreadable: skip, leave it */
};

static enum fault classify(int ret)
{
	switch (ret) {
	case -ENOMEM:
	case -ENOBUFS:
	case -EMFILE:
	case -ENFILE:
		return F_RESOURCE;
	case -EBADMSG:         /* every check of BLOCK.md and the catalog row */
	case -EPROTONOSUPPORT: /* a version or codec Write would have refused */
	case -EINVAL:          /* shorter than a header */
	case -ELOOP:           /* a symlink */
	case -EMEDIUMTYPE:     /* not a regular file */
		return F_DAMAGED;
	default:
		return F_UNREADABLE;
	}
}

/* Block bi failed with ret for reason. Either the query cannot go on (returns ret with err
 * set), or the block is skipped: quarantined when damaged, logged, recorded and reported in b
 * (returns 0; the caller frees its cursor). served: its records already sent. */
static int block_fault(struct tv_query *q, size_t bi, int ret, const char *reason,
		       uint32_t served, struct batch *b, char *err, size_t errlen)
{
	const struct tv_catalog_block *meta = &q->blocks[bi];
	enum fault kind = classify(ret);
	char qerr[REASON_LEN];
	struct skip *sk;
	int r;

	if (kind == F_RESOURCE) {
		snprintf(err, errlen, "block %016llx: %s", (unsigned long long)meta->block_id,
			 reason);
		return ret;
	}
	r = grow(q, (void **)&q->skips, &q->skips_cap, q->nskips + 1, sizeof(*q->skips), qerr,
		 sizeof(qerr));
	if (r) {
		snprintf(err, errlen, "block %016llx fails its checks (%s) and cannot be reported: "
			 "%s", (unsigned long long)meta->block_id, reason, qerr);
		return r;
	}
	sk = &q->skips[q->nskips++];
	*sk = (struct skip){ .bi = bi, .served = served };
	snprintf(sk->reason, sizeof(sk->reason), "%s", reason);
	if (kind == F_DAMAGED) {
		/* logs what it did, or why it could not */
		r = tv_quarantine_block(q->store, q->catalog, meta->segment_id, meta->block_id,
					reason);
		sk->quarantined = r == 0;
	}
	fprintf(stderr, "query: skipped block %016llx of segment %016llx, ts_ns [%llu, %llu], "
		"%u of its records sent: %s (%s)\n", (unsigned long long)meta->block_id,
		(unsigned long long)meta->segment_id, (unsigned long long)meta->min_ts_ns,
		(unsigned long long)meta->max_ts_ns, served, reason,
		sk->quarantined ? "quarantined" : "left in place");
	r = batch_put_skip(q, b, q->nskips - 1);
	if (r) {
		snprintf(err, errlen, "out of memory reporting skipped block %016llx",
			 (unsigned long long)meta->block_id);
		return r;
	}
	return 0;
}

/* ---- cursors ---- */

static ssize_t read_block(void *arg, uint64_t offset, void *buf, size_t len)
{
	struct cursor *cur = arg;
	ssize_t r;

	do
		r = pread(cur->fd, buf, len, (off_t)offset);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* Move cur to its next record. Returns 1 when it has one in range, 0 when it is exhausted,
 * past to_ns or skipped as damaged (its stream is gone then; the caller drops it with
 * cursor_drop), or a negative errno when the query cannot go on (err set). */
static int cursor_advance(struct tv_query *q, struct cursor *cur, struct batch *b, char *err,
			  size_t errlen)
{
	char why[REASON_LEN];
	int ret;

	/* a record the filter refuses is passed over here, so the merge only ever sees records
	 * that will be sent and the limit counts matches */
	do {
		ret = tv_block_stream_next(cur->s, &cur->data, &cur->len, &cur->ts_ns, why,
					   sizeof(why));
		if (ret < 0) {
			tv_block_stream_free(cur->s);
			cur->s = NULL;
			return block_fault(q, cur->bi, ret, why, cur->sent, b, err, errlen);
		}
		if (ret == 0 || cur->ts_ns >= q->to_ns)
			return 0;
	} while (cur->ts_ns >= q->from_ns && !tv_filter_match(q->filter, cur->data, cur->len));
	return 1;
}

/* Drop a cursor the merge is done with: its stream first reads the rest of its payload to
 * complete the second CRC (tv_block_stream_finish), and a file changed meanwhile is reported
 * like any damage. Returns 0 or a negative errno when the query cannot go on (err set). */
static int cursor_drop(struct tv_query *q, struct cursor *cur, struct batch *b, char *err,
		       size_t errlen)
{
	char why[REASON_LEN];
	int ret = 0;

	if (cur->s && (ret = tv_block_stream_finish(cur->s, why, sizeof(why))))
		ret = block_fault(q, cur->bi, ret, why, cur->sent, b, err, errlen);
	cursor_free(cur);
	return ret;
}

/* The reason an open of the block file failed with ret. */
static void open_reason(struct tv_query *q, uint64_t block_id, int ret, char *why, size_t len)
{
	switch (ret) {
	case -ENOENT:
		if (tv_catalog_contains(q->catalog, block_id) == 0)
			snprintf(why, len, "block file gone: deleted or quarantined after the "
				 "query began");
		else
			snprintf(why, len, "block file missing");
		break;
	case -ELOOP:
		snprintf(why, len, "block file is a symlink");
		break;
	case -EMEDIUMTYPE:
		snprintf(why, len, "block file is not a regular file");
		break;
	default:
		snprintf(why, len, "cannot open the block file: %s", strerror(-ret));
		break;
	}
}

/* Open and check block bi, then position its cursor at the first record >= from_ns and put it
 * on the heap (or drop it when nothing of it is in range, or skip it when it cannot be
 * served). Returns 0, or a negative errno when the query cannot go on (err set). */
static int open_block(struct tv_query *q, size_t bi, struct batch *b, char *err,
		      size_t errlen)
{
	const struct tv_catalog_block *meta = &q->blocks[bi];
	const struct tv_block_header *h;
	char why[REASON_LEN];
	struct cursor *cur;
	uint64_t size = 0;
	const char *ids;
	size_t n;
	int ret;

	if (q->pool->open_blocks >= q->pool->max_open_blocks) {
		snprintf(err, errlen, "block %016llx: %zu block files are open in queries, the "
			 "server's limit: try again later or narrow the time range",
			 (unsigned long long)meta->block_id, q->pool->max_open_blocks);
		return -ENFILE;
	}
	cur = calloc(1, sizeof(*cur));
	if (!cur) {
		snprintf(err, errlen, "block %016llx: out of memory for a cursor",
			 (unsigned long long)meta->block_id);
		return -ENOMEM;
	}
	cur->q = q;
	cur->bi = bi;
	ret = tv_store_open_block(q->store, meta->segment_id, meta->block_id, &cur->fd, &size);
	if (ret) {
		free(cur);
		open_reason(q, meta->block_id, ret, why, sizeof(why));
		return block_fault(q, bi, ret, why, 0, b, err, errlen);
	}
	q->pool->open_blocks++;
	ret = tv_block_stream_open(&cur->s, read_block, cur, size, &q->budget, why, sizeof(why));
	if (ret)
		goto fault;
	h = tv_block_stream_header(cur->s);
	if (h->block_id != meta->block_id || h->min_ts_ns != meta->min_ts_ns ||
	    h->max_ts_ns != meta->max_ts_ns || h->record_count != meta->record_count ||
	    size != meta->bytes) {
		snprintf(why, sizeof(why), "file does not match its catalog entry (block %016llx, "
			 "ts_ns [%llu, %llu], %u records, %llu bytes)",
			 (unsigned long long)h->block_id, (unsigned long long)h->min_ts_ns,
			 (unsigned long long)h->max_ts_ns, h->record_count,
			 (unsigned long long)size);
		ret = -EBADMSG;
		goto fault;
	}
	/* version 3 blocks: a trace-id query skips a block whose filter holds none of its ids,
	 * and a window starts at its first page (proto/block_stream.h) */
	if ((n = tv_filter_trace_ids(q->filter, &ids)) > 0) {
		ret = tv_block_stream_may_hold_trace(cur->s, ids, n, TV_FILTER_TRACE_ID_STRIDE, why,
						     sizeof(why));
		if (ret < 0)
			goto fault;
		if (ret == 0)
			return cursor_drop(q, cur, b, err, errlen);
	}
	tv_block_stream_seek(cur->s, q->from_ns);
	do {
		ret = cursor_advance(q, cur, b, err, errlen);
	} while (ret == 1 && cur->ts_ns < q->from_ns);
	if (ret == 1) {
		heap_push(q, cur);
		return 0;
	}
	if (ret == 0) /* nothing of it in range, or skipped */
		return cursor_drop(q, cur, b, err, errlen);
	cursor_free(cur);
	return ret;
fault:
	ret = block_fault(q, bi, ret, why, 0, b, err, errlen);
	cursor_free(cur);
	return ret;
}

/* The query ends with an error: no batch follows, but a block whose records went out and
 * whose file changed while it was read is still named, in err and in the log. */
static void check_on_failure(struct tv_query *q, char *err, size_t errlen)
{
	char why[REASON_LEN];
	size_t n;

	for (size_t i = 0; i < q->nheap; i++) {
		struct cursor *cur = q->heap[i];

		if (!cur->sent || !cur->s || !tv_block_stream_finish(cur->s, why, sizeof(why)))
			continue;
		fprintf(stderr, "query: block %016llx: %s; %u of its records were sent\n",
			(unsigned long long)q->blocks[cur->bi].block_id, why, cur->sent);
		n = strnlen(err, errlen);
		if (n + 1 < errlen)
			snprintf(err + n, errlen - n, "; and block %016llx: %s (%u of its records "
				 "were sent)", (unsigned long long)q->blocks[cur->bi].block_id, why,
				 cur->sent);
	}
}

/* ---- batches ---- */

int tv_query_next(struct tv_query *q, grpc_byte_buffer **out, char *err, size_t errlen)
{
	struct batch b = { 0 };
	grpc_slice slice;
	int ret;

	*out = NULL;
	if (q->fatal_ret) {
		snprintf(err, errlen, "%s", q->fatal_err);
		return q->fatal_ret;
	}
	while (!q->done && b.records < TV_QUERY_BATCH_RECORDS && b.len < TV_QUERY_BATCH_BYTES) {
		struct cursor *cur;

		if (q->limit && q->emitted == q->limit) {
			q->done = true;
			while (q->nheap) {
				ret = cursor_drop(q, heap_pop(q), &b, err, errlen);
				if (ret)
					goto fail;
			}
			break;
		}
		/* open every block that could hold the next record: its min_ts_ns is at or below
		 * the frontier (ties included, so block order breaks them) */
		while (q->next_block < q->nblocks &&
		       (q->nheap == 0 || q->blocks[q->next_block].min_ts_ns <= q->heap[0]->ts_ns)) {
			ret = open_block(q, q->next_block++, &b, err, errlen);
			if (ret)
				goto fail;
		}
		if (q->nheap == 0) {
			q->done = true;
			break;
		}
		cur = q->heap[0];
		ret = batch_put(&b, 1, cur->data, cur->len);
		if (ret) {
			snprintf(err, errlen, "out of memory building a batch");
			goto fail;
		}
		b.records++;
		q->emitted++;
		cur->sent++;
		heap_pop(q);
		ret = cursor_advance(q, cur, &b, err, errlen);
		if (ret == 1)
			heap_push(q, cur);
		else if (ret == 0)
			ret = cursor_drop(q, cur, &b, err, errlen);
		else
			cursor_free(cur);
		if (ret < 0)
			goto fail;
	}
	if (b.len == 0) {
		free(b.buf);
		return 0;
	}
	goto send;
fail:
	q->done = true;
	check_on_failure(q, err, errlen);
	if (b.len == 0) {
		free(b.buf);
		return ret;
	}
	/* what was produced goes out first; the error ends the stream after it */
	q->fatal_ret = ret;
	snprintf(q->fatal_err, sizeof(q->fatal_err), "%s", err);
send:
	/* the slice takes the buffer: grpc frees it when the transport is done with it */
	slice = grpc_slice_new(b.buf, b.len, free);
	*out = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);
	if (!*out) {
		snprintf(err, errlen, "out of memory wrapping a batch");
		return -ENOMEM;
	}
	return 1;
}

size_t tv_query_skipped(const struct tv_query *q)
{
	return q->nskips;
}

grpc_status_code tv_query_end_status(const struct tv_query *q, char *details, size_t len)
{
	size_t n;
	int w;

	if (len)
		details[0] = '\0';
	if (q->nskips == 0)
		return GRPC_STATUS_OK;
	w = snprintf(details, len, "skipped %zu block%s that cannot be served (listed in "
		     "QueryResponse.skipped); every other record was sent", q->nskips,
		     q->nskips == 1 ? "" : "s");
	for (size_t i = 0; i < q->nskips && i < TV_QUERY_DETAIL_BLOCKS; i++) {
		const struct skip *sk = &q->skips[i];
		const struct tv_catalog_block *meta = &q->blocks[sk->bi];

		n = w < 0 ? len : (size_t)w;
		if (n >= len)
			break;
		w += snprintf(details + n, len - n, "; block %016llx: %s (ts_ns %llu to %llu)",
			      (unsigned long long)meta->block_id, sk->reason,
			      (unsigned long long)meta->min_ts_ns,
			      (unsigned long long)meta->max_ts_ns);
	}
	n = w < 0 ? len : (size_t)w;
	if (q->nskips > TV_QUERY_DETAIL_BLOCKS && n < len)
		snprintf(details + n, len - n, "; and %zu more", q->nskips - TV_QUERY_DETAIL_BLOCKS);
	return GRPC_STATUS_DATA_LOSS;
}

