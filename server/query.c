/* Time-range query executor: catalog lookup, then a k-way merge over block streams by
 * (ts_ns, block order). Records are forwarded as raw protobuf bytes, never decoded; the
 * request's filter (server/filter.h) reads their tags in place and drops the ones it refuses
 * before they reach the merge. A version 3 block's record is rebuilt from its columns: without
 * a filter, forward, it is rebuilt only when it is sent, straight into the batch
 * (tv_block_stream_next_unbuilt), so its bytes are written once, not built then copied.
 *
 * Order. The plan is the catalog's (min_ts_ns, block_id) order, and a block's index in it (bi)
 * breaks ties of ts_ns; inside a block, records keep their stored order. So forward is
 * (ts_ns, bi, ordinal) ascending, and reverse is exactly that descending: reverse ==
 * reversed(forward), and reverse with limit N == the last N of forward, newest first.
 * Forward opens blocks by min_ts_ns when the heap's smallest head reaches it; reverse opens
 * them by (max_ts_ns, bi) descending when the heap's largest head falls to max_ts_ns (ties
 * included both ways), so only blocks overlapping the frontier are open.
 *
 * Reverse on today's blocks (one zstd frame, readable only forward): a windowed re-scan. A
 * pass reads the block from its start up to a cut (pass 0: the first record >= to_ns), keeps
 * its newest matching records in a bounded window (server/query_window.h) and hands them out
 * newest first; when the window had to drop older matches, the next pass reads up to the
 * oldest it kept. A block whose in-range matches fit the window is read once. A version 3
 * block's pass starts at from_ns's page (its ts index, in cursor_stream_open), forward and
 * reverse alike; a reverse page walk (the directory allows it) is not done yet.
 *
 * Slices. tv_query_next stops after TV_QUERY_SLICE_RECORDS records examined or about
 * TV_QUERY_SLICE_NS, wherever it is: a cursor in the middle of its search (past records the
 * filter refuses, or a reverse pass) is kept aside as q->pending and resumed first by the next
 * call, before the merge may emit anything. So the server's thread is never held longer than
 * one slice by one query.
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
#include <time.h>
#include <unistd.h>

#include <grpc/slice.h>

#include "common/size.h"
#include "proto/block_stream.h"
#include "proto/block_v3.h"
#include "proto/varint.h"
#include "proto/wire.h"
#include "server/evict.h"
#include "server/filter.h"
#include "server/quarantine.h"
#include "server/query_window.h"

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
	struct tv_block_stream *s; /* NULL between reverse passes */
	int fd;
	uint64_t file_bytes;
	size_t bi;           /* index in q->blocks: the tie-breaker after ts_ns */
	uint64_t ts_ns;      /* current record (the head) */
	/* forward: points into s, valid until it advances; NULL: a version 3 record left
	 * unbuilt, which emit_head builds straight into the batch (tv_block_stream_write) */
	const uint8_t *data;
	size_t len;
	uint32_t sent;       /* records of it in batches so far */
	/* reverse: the window of this pass and where the pass stands */
	struct tv_query_window w;
	uint32_t ordinal;    /* records taken from s in this pass */
	uint32_t cut;        /* this pass reads the records before this ordinal */
	bool filling;        /* a pass is under way (s is open) */
	bool head_sent;      /* the window's newest record went out: pop it first */
	bool more;           /* the window dropped older matches: another pass follows */
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
	/* what the next batch may hold: TV_QUERY_FIRST_BATCH_* doubling to TV_QUERY_BATCH_* */
	uint32_t batch_records;
	size_t batch_bytes;
	bool reverse;
	bool silent; /* tv_query_params.silent: no log line at the end */
	uint32_t features;               /* not 0: still to announce on the first message */
	struct tv_filter *filter;        /* NULL: every record in range */
	struct tv_catalog_block *blocks; /* overlap order: min_ts_ns, block_id */
	size_t nblocks, cap, next_block;
	size_t *order, order_cap;        /* reverse: bi by (max_ts_ns, bi) descending */
	struct cursor **heap;            /* open cursors with a head: min-heap, max- in reverse */
	size_t nheap, heap_cap;
	struct cursor *pending;          /* to step before the merge goes on (see Slices) */
	/* the slice under way: records examined, when to look at the clock, when it ends */
	uint64_t slice_ticks, next_clock_tick, slice_end_ns;
	/* for the log line */
	uint64_t started_ns, examined, opened;
	/* trace-id queries: blocks the catalog's filter copies ruled out (never opened), and
	 * filters read from block files (then copied into the catalog) */
	uint64_t filter_pruned, filter_read;
	bool filter_put_failed;          /* logged once */
	bool planned;
	struct skip *skips;
	size_t nskips, skips_cap;
	int fatal_ret;                   /* an error held back behind the last batch */
	char fatal_err[TV_QUERY_ERR_LEN];
	bool done;
	uint64_t seq;                    /* its number in the pool (tv_query_pool.started) */
	struct tv_query *older, *newer;  /* the pool's running queries, in seq order */
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

uint64_t tv_query_pool_oldest(const struct tv_query_pool *p)
{
	return p->oldest ? p->oldest->seq : p->started;
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

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

struct open_key {
	uint64_t max_ts_ns;
	size_t bi;
};

/* (max_ts_ns, bi) descending: the order in which reverse opens blocks */
static int open_key_cmp(const void *a, const void *b)
{
	const struct open_key *x = a, *y = b;

	if (x->max_ts_ns != y->max_ts_ns)
		return x->max_ts_ns > y->max_ts_ns ? -1 : 1;
	return x->bi > y->bi ? -1 : x->bi < y->bi;
}

/* Reverse's open order in q->order. The sort keys are a temporary array, reserved too. */
static int plan_reverse(struct tv_query *q, char *why, size_t whylen)
{
	size_t kcap = 0;
	struct open_key *k = NULL;
	int ret;

	if (!q->nblocks)
		return 0;
	ret = grow(q, (void **)&q->order, &q->order_cap, q->nblocks, sizeof(*q->order), why,
		   whylen);
	if (!ret)
		ret = grow(q, (void **)&k, &kcap, q->nblocks, sizeof(*k), why, whylen);
	if (ret)
		return ret;
	for (size_t i = 0; i < q->nblocks; i++)
		k[i] = (struct open_key){ .max_ts_ns = q->blocks[i].max_ts_ns, .bi = i };
	qsort(k, q->nblocks, sizeof(*k), open_key_cmp);
	for (size_t i = 0; i < q->nblocks; i++)
		q->order[i] = k[i].bi;
	free(k);
	release(q, kcap * sizeof(*k));
	return 0;
}

int tv_query_new(struct tv_query **out, struct tv_catalog *c, struct tv_store *s,
		 struct tv_query_pool *pool, const struct tv_query_params *p,
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
	q->started_ns = now_ns();
	q->filter = filter;
	q->store = s;
	q->catalog = c;
	q->pool = pool;
	q->budget = (struct tv_block_budget){ .reserve = reserve, .release = release, .arg = q };
	q->from_ns = p->from_ns;
	q->to_ns = p->to_ns;
	q->limit = p->limit;
	q->batch_records = TV_QUERY_FIRST_BATCH_RECORDS;
	q->batch_bytes = TV_QUERY_FIRST_BATCH_BYTES;
	q->reverse = p->reverse;
	q->silent = p->silent;
	q->features = p->features;
	pool->queries++;
	/* numbered before the catalog is read: a pass's rows gone at started == N are in no
	 * later query's list */
	q->seq = pool->started++;
	q->older = pool->newest;
	if (pool->newest)
		pool->newest->newer = q;
	else
		pool->oldest = q;
	pool->newest = q;
	ca.q = q;
	ret = tv_catalog_overlap(c, p->from_ns, p->to_ns, collect, &ca);
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
	if (!ret && q->reverse)
		ret = plan_reverse(q, ca.why, sizeof(ca.why));
	if (ret) {
		snprintf(err, errlen, "cannot plan the query over %zu blocks: %s", q->nblocks, ca.why);
		tv_query_free(q);
		return ret;
	}
	q->planned = true;
	*out = q;
	return 0;
}

static void cursor_free(struct cursor *cur)
{
	if (!cur)
		return;
	tv_block_stream_free(cur->s);
	tv_query_window_free(&cur->w);
	if (cur->fd >= 0) {
		close(cur->fd);
		cur->q->pool->open_blocks--;
	}
	free(cur);
}

void tv_query_free(struct tv_query *q)
{
	const char *ids;

	if (!q)
		return;
	if (q->planned && !q->silent) {
		char tail[128] = "";

		if (tv_filter_trace_ids(q->filter, &ids))
			snprintf(tail, sizeof(tail), "; trace ids: %llu blocks ruled out by the "
				 "catalog's filters, %llu filters read from block files",
				 (unsigned long long)q->filter_pruned,
				 (unsigned long long)q->filter_read);
		fprintf(stderr, "query: planned %zu blocks, opened %llu, examined %llu records, sent "
			"%llu, %s, %.1f ms%s\n", q->nblocks, (unsigned long long)q->opened,
			(unsigned long long)q->examined, (unsigned long long)q->emitted,
			q->reverse ? "reverse" : "forward", (double)(now_ns() - q->started_ns) / 1e6,
			tail);
	}
	tv_catalog_trace_filter_release(q->catalog);
	for (size_t i = 0; i < q->nheap; i++)
		cursor_free(q->heap[i]);
	cursor_free(q->pending);
	free(q->heap);
	free(q->order);
	free(q->blocks);
	free(q->skips);
	tv_filter_free(q->filter);
	release(q, q->held); /* the plan's arrays; every stream gave its share back */
	q->pool->queries--;
	if (q->older)
		q->older->newer = q->newer;
	else
		q->pool->oldest = q->newer;
	if (q->newer)
		q->newer->older = q->older;
	else
		q->pool->newest = q->older;
	free(q);
}

/* ---- the heap: (ts_ns, bi) ascending, or descending in reverse ---- */

/* Whether a's head goes out before b's. */
static int less(const struct cursor *a, const struct cursor *b)
{
	if (a->q->reverse)
		return a->ts_ns != b->ts_ns ? a->ts_ns > b->ts_ns : a->bi > b->bi;
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

/* Field number field (length-delimited) holding the l1 bytes at p1 then the l2 at p2 (a
 * record of a reverse window may wrap: two pieces). */
static int batch_put2(struct batch *b, unsigned field, const uint8_t *p1, size_t l1,
		      const uint8_t *p2, size_t l2)
{
	int ret = batch_room(b, l1 + l2 + 1 + TV_VARINT_MAX_BYTES);

	if (ret)
		return ret;
	b->buf[b->len++] = (uint8_t)(field << 3 | 2);
	b->len += tv_varint_put(b->buf + b->len, l1 + l2);
	memcpy(b->buf + b->len, p1, l1);
	b->len += l1;
	if (l2)
		memcpy(b->buf + b->len, p2, l2);
	b->len += l2;
	return 0;
}

static int batch_put(struct batch *b, unsigned field, const uint8_t *data, size_t len)
{
	return batch_put2(b, field, data, len, NULL, 0);
}

/* Field number field as a varint. */
static int batch_put_varint(struct batch *b, unsigned field, uint64_t v)
{
	int ret = batch_room(b, 1 + TV_VARINT_MAX_BYTES);

	if (ret)
		return ret;
	b->buf[b->len++] = (uint8_t)(field << 3 | 0);
	b->len += tv_varint_put(b->buf + b->len, v);
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

enum tv_block_fault tv_block_fault_of(int ret)
{
	switch (ret) {
	case -ENOMEM:
	case -ENOBUFS:
	case -EMFILE:
	case -ENFILE:
		return TV_BLOCK_RESOURCE;
	case -EBADMSG:         /* every check of BLOCK.md and the catalog row */
	case -EPROTONOSUPPORT: /* a version or codec Write would have refused */
	case -EINVAL:          /* shorter than a header */
	case -ELOOP:           /* a symlink */
	case -EMEDIUMTYPE:     /* not a regular file */
		return TV_BLOCK_DAMAGED;
	default:
		return TV_BLOCK_UNREADABLE;
	}
}

/* Block bi failed with ret for reason. Either the query cannot go on (returns ret with err
 * set), or the block is skipped: quarantined when damaged, logged, recorded and reported in b
 * (returns 0; the caller frees its cursor). served: its records already sent. */
static int block_fault(struct tv_query *q, size_t bi, int ret, const char *reason,
		       uint32_t served, struct batch *b, char *err, size_t errlen)
{
	const struct tv_catalog_block *meta = &q->blocks[bi];
	enum tv_block_fault kind = tv_block_fault_of(ret);
	char qerr[REASON_LEN];
	struct skip *sk;
	int r;

	if (kind == TV_BLOCK_RESOURCE) {
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
	if (kind == TV_BLOCK_DAMAGED) {
		/* logs what it did, or why it could not; its transaction goes without our read */
		tv_catalog_trace_filter_release(q->catalog);
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

/* ---- reading a block ---- */

ssize_t tv_block_read_fd(void *fd, uint64_t offset, void *buf, size_t len)
{
	ssize_t r;

	do
		r = pread(*(int *)fd, buf, len, (off_t)offset);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* ---- the slice ---- */

/* The clock is read once per this many records examined; opening a block (its CRC pass) counts
 * as many, so the check after it reads the clock. */
#define SLICE_CLOCK_EVERY 64

static void slice_begin(struct tv_query *q)
{
	q->slice_ticks = 0;
	q->next_clock_tick = SLICE_CLOCK_EVERY;
	q->slice_end_ns = now_ns() + TV_QUERY_SLICE_NS;
}

/* Whether the slice is over: checked before each record a cursor reads. */
static bool slice_spent(struct tv_query *q)
{
	if (q->slice_ticks >= TV_QUERY_SLICE_RECORDS)
		return true;
	if (q->slice_ticks < q->next_clock_tick)
		return false;
	q->next_clock_tick = q->slice_ticks + SLICE_CLOCK_EVERY;
	return now_ns() >= q->slice_end_ns;
}

/* A cursor took one record from its stream. */
static void slice_record(struct tv_query *q)
{
	q->slice_ticks++;
	q->examined++;
}

/* ---- cursors ---- */

/* What a cursor step returns besides 1 (a head in range) and 0 (done). */
#define STEP_PAUSED 2

/* The block's stream, at from_ns: a version 3 block starts at the page holding it (its ts
 * index), passing over the rows before it unbuilt; older ones from their first record. Every
 * reverse pass starts at the same place, so its ordinals (counted from here) stay the same
 * from pass to pass. Returns 0 or a negative errno with why. */
static int cursor_stream_open(struct tv_query *q, struct cursor *cur, char *why, size_t whylen)
{
	int ret = tv_block_stream_open(&cur->s, tv_block_read_fd, &cur->fd, cur->file_bytes,
				       &q->budget, why, whylen);

	const char *ids;
	size_t n;

	if (ret == 0) {
		tv_block_stream_seek(cur->s, q->from_ns);
		/* a trace-id query builds only the records of pages that may hold its ids */
		if ((n = tv_filter_trace_ids(q->filter, &ids)) > 0)
			tv_block_stream_trace_pages(cur->s, ids, n, TV_FILTER_TRACE_ID_STRIDE);
	}
	return ret;
}

/* Forward: move cur to its next record in range that passes the filter. Returns 1 with it,
 * 0 when the block has no more (exhausted, past to_ns, or skipped as damaged: its stream is
 * gone then; the caller drops it with cursor_drop), STEP_PAUSED when the slice is spent (call
 * again), or a negative errno when the query cannot go on (err set). */
static int forward_step(struct tv_query *q, struct cursor *cur, struct batch *b, char *err,
			size_t errlen)
{
	char why[REASON_LEN];
	int ret;

	/* a record the filter refuses is passed over here, so the merge only ever sees records
	 * that will be sent and the limit counts matches */
	for (;;) {
		if (slice_spent(q))
			return STEP_PAUSED;
		/* a filter reads the record's bytes; without one it is built only when sent */
		ret = q->filter ? tv_block_stream_next(cur->s, &cur->data, &cur->len, &cur->ts_ns,
						       why, sizeof(why)) :
				  tv_block_stream_next_unbuilt(cur->s, &cur->data, &cur->len,
							       &cur->ts_ns, why, sizeof(why));
		if (ret < 0) {
			tv_block_stream_free(cur->s);
			cur->s = NULL;
			return block_fault(q, cur->bi, ret, why, cur->sent, b, err, errlen);
		}
		if (ret == 0 || cur->ts_ns >= q->to_ns)
			return 0;
		slice_record(q);
		if (cur->ts_ns >= q->from_ns &&
		    (!q->filter || tv_filter_match(q->filter, cur->data, cur->len)))
			return 1;
	}
}

/* Reverse: the next head of cur, newest first (see "Reverse" at the top). The window's newest
 * record, after the one sent is popped; when the window is empty and it dropped older
 * matches, a new pass reads the block again up to the oldest it kept. Returns as
 * forward_step. records_served of a block found damaged counts its records sent: in reverse
 * those are its newest. */
static int reverse_step(struct tv_query *q, struct cursor *cur, struct batch *b, char *err,
			size_t errlen)
{
	char why[REASON_LEN];
	const uint8_t *data;
	size_t len;
	uint64_t ts;
	int ret;

	if (cur->head_sent) {
		tv_query_window_pop(&cur->w);
		cur->head_sent = false;
	}
	if (!cur->filling) {
		if (!tv_query_window_empty(&cur->w))
			goto head;
		if (!cur->more)
			return 0;
		ret = cursor_stream_open(q, cur, why, sizeof(why));
		if (ret)
			return block_fault(q, cur->bi, ret, why, cur->sent, b, err, errlen);
		tv_query_window_reset(&cur->w);
		cur->ordinal = 0;
		cur->more = false;
		cur->filling = true;
	}
	while (cur->ordinal < cur->cut) {
		if (slice_spent(q))
			return STEP_PAUSED;
		ret = tv_block_stream_next(cur->s, &data, &len, &ts, why, sizeof(why));
		if (ret < 0)
			goto fault;
		if (ret == 0 || ts >= q->to_ns)
			break;
		slice_record(q);
		cur->ordinal++;
		if (ts < q->from_ns || !tv_filter_match(q->filter, data, len))
			continue;
		ret = tv_query_window_push(&cur->w, data, len, ts, cur->ordinal - 1, why,
					   sizeof(why));
		if (ret) {
			snprintf(err, errlen, "block %016llx: %s",
				 (unsigned long long)q->blocks[cur->bi].block_id, why);
			return ret;
		}
	}
	/* the pass is over: complete the CRC before any record of it leaves */
	cur->filling = false;
	ret = tv_block_stream_finish(cur->s, why, sizeof(why));
	tv_block_stream_free(cur->s);
	cur->s = NULL;
	if (ret)
		return block_fault(q, cur->bi, ret, why, cur->sent, b, err, errlen);
	/* the next pass, if any, reads up to the oldest record kept */
	cur->more = cur->w.evicted;
	if (tv_query_window_empty(&cur->w))
		return 0; /* cannot be evicted: a push always leaves its record */
	cur->cut = tv_query_window_oldest(&cur->w)->ordinal;
head:
	cur->ts_ns = cur->w.recs[cur->w.n - 1].ts_ns; /* the newest kept */
	return 1;
fault:
	cur->filling = false;
	tv_block_stream_free(cur->s);
	cur->s = NULL;
	return block_fault(q, cur->bi, ret, why, cur->sent, b, err, errlen);
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

void tv_block_open_reason(struct tv_catalog *c, uint64_t block_id, int ret, const char *reader,
			  char *why, size_t len)
{
	switch (ret) {
	case -ENOENT:
		if (tv_catalog_contains(c, block_id) == 0)
			snprintf(why, len, "block file gone: deleted (Delete, or retention past "
				 "--retain-query-grace) or quarantined after the %s began", reader);
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

/* Step a cursor that is on no heap (just opened, its head just sent, or paused) and put it where
 * it belongs: on the heap with its next head, dropped when it has none, or aside in q->pending
 * when the slice ended first. Returns 0, or a negative errno when the query cannot go on (err
 * set; the cursor is freed). */
static int cursor_settle(struct tv_query *q, struct cursor *cur, struct batch *b, char *err,
			 size_t errlen)
{
	int ret = q->reverse ? reverse_step(q, cur, b, err, errlen) :
			       forward_step(q, cur, b, err, errlen);

	if (ret == 1) {
		heap_push(q, cur);
		return 0;
	}
	if (ret == STEP_PAUSED) {
		q->pending = cur;
		return 0;
	}
	if (ret == 0) /* nothing more of it in range, or skipped */
		return cursor_drop(q, cur, b, err, errlen);
	cursor_free(cur);
	return ret;
}

/* What a block's own trace-id filter says of the query's ids (tv_block_stream_trace_filter's
 * callback), and its copy for the catalog. */
struct trace_check {
	struct tv_query *q;
	uint64_t block_id;
	const char *ids;
	size_t n;
	bool found;
};

static int trace_check(void *arg, const uint8_t *bloom, size_t bytes, char *err, size_t errlen)
{
	struct trace_check *tc = arg;
	struct tv_query *q = tc->q;
	int r;

	(void)err;
	(void)errlen;
	for (size_t i = 0; !tc->found && i < tc->n; i++)
		tc->found = tv_v3_bloom_test(bloom, bytes, tv_v3_trace_hash(
						     tc->ids + i * TV_FILTER_TRACE_ID_STRIDE));
	q->filter_read++;
	/* a copy that cannot be kept costs the next query this read again, nothing more */
	r = tv_catalog_trace_filter_put(q->catalog, tc->block_id, bloom, bytes);
	if (r && r != -EBUSY && !q->filter_put_failed) {
		q->filter_put_failed = true;
		fprintf(stderr, "query: cannot copy block %016llx's trace-id filter into the "
			"catalog: %s (the block files' filters are read instead)\n",
			(unsigned long long)tc->block_id, strerror(-r));
	}
	return 0;
}

/* Open and check block bi, then settle its cursor (cursor_settle), or skip the block when it
 * cannot be served. Returns 0, or a negative errno when the query cannot go on (err set). */
static int open_block(struct tv_query *q, size_t bi, struct batch *b, char *err,
		      size_t errlen)
{
	const struct tv_catalog_block *meta = &q->blocks[bi];
	const struct tv_block_header *h;
	char why[REASON_LEN];
	struct cursor *cur;
	uint64_t size = 0;
	const char *ids = NULL;
	bool known = false; /* the catalog's copy says the block may hold one of the ids */
	size_t n;
	int ret, remote;

	/* a trace-id query asks the catalog's copy of the block's filter first (catalog.h): a
	 * block it rules out is never opened; without a copy the block's own filter decides,
	 * below, and is copied for the next query */
	n = tv_filter_trace_ids(q->filter, &ids);
	if (n > 0) {
		ret = tv_catalog_trace_filter_test(q->catalog, meta->block_id, ids, n,
						   TV_FILTER_TRACE_ID_STRIDE);
		if (ret == 0) {
			q->filter_pruned++;
			return 0;
		}
		known = ret == 1;
	}
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
	cur->cut = UINT32_MAX; /* reverse's first pass: up to to_ns */
	tv_query_window_init(&cur->w, &q->budget);
	q->opened++;
	q->slice_ticks += SLICE_CLOCK_EVERY; /* its CRC pass is work too */
	ret = tv_evict_open_block(q->pool->evict, q->store, meta->segment_id, meta->block_id,
				  meta->bytes, &cur->fd, &size, &remote, err, errlen);
	/* evicted, and S3 did not give it: the query cannot go on (S3 down or failing: asking
	 * again later may work), unless S3 said the object is gone (404): then the block is lost
	 * as a missing file is, skipped and reported (DATA_LOSS) while every other record goes */
	if (ret && remote && ret != -ENOENT) {
		free(cur);
		return ret;
	}
	if (ret) {
		free(cur);
		if (remote)
			snprintf(why, sizeof(why), "%s", err);
		else
			tv_block_open_reason(q->catalog, meta->block_id, ret, "query", why,
					     sizeof(why));
		return block_fault(q, bi, ret, why, 0, b, err, errlen);
	}
	q->pool->open_blocks++;
	cur->file_bytes = size;
	ret = cursor_stream_open(q, cur, why, sizeof(why));
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
	/* version 3 blocks: a trace-id query skips a block whose filter holds none of its ids
	 * (proto/block_stream.h); cursor_stream_open starts each pass at from_ns's page */
	if (n > 0 && !known) {
		struct trace_check tc = { .q = q, .block_id = meta->block_id, .ids = ids, .n = n };

		ret = tv_block_stream_trace_filter(cur->s, trace_check, &tc, why, sizeof(why));
		if (ret < 0)
			goto fault;
		if (ret == 1 && !tc.found) /* versions 1 and 2 (0): no filter, read it all */
			return cursor_drop(q, cur, b, err, errlen);
	}
	cur->filling = q->reverse; /* its first pass is under way */
	return cursor_settle(q, cur, b, err, errlen);
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

	for (size_t i = 0; i <= q->nheap; i++) {
		struct cursor *cur = i < q->nheap ? q->heap[i] : q->pending;

		if (!cur || !cur->sent || !cur->s || !tv_block_stream_finish(cur->s, why, sizeof(why)))
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

/* Whether the next block of the open order could hold the next record: forward, its
 * min_ts_ns is at or below the smallest head; reverse, its max_ts_ns at or above the largest
 * (ties included, so block order breaks them). */
static bool must_open_next(const struct tv_query *q)
{
	const struct tv_catalog_block *m;

	if (q->next_block >= q->nblocks)
		return false;
	if (q->nheap == 0)
		return true;
	m = &q->blocks[q->order ? q->order[q->next_block] : q->next_block];
	return q->reverse ? m->max_ts_ns >= q->heap[0]->ts_ns : m->min_ts_ns <= q->heap[0]->ts_ns;
}

/* emit_head for cur's head left unbuilt (cur is heap[0]): its bytes are built straight into
 * the batch, framed as batch_put2 frames them. A record that cannot be built (not expected:
 * tv_block_stream_write) is taken back out of the batch and its block skipped as damaged. */
static int emit_unbuilt(struct tv_query *q, struct cursor *cur, struct batch *b, char *err,
			size_t errlen)
{
	char why[REASON_LEN];
	size_t at = b->len;
	int ret = batch_room(b, cur->len + 1 + TV_VARINT_MAX_BYTES);

	if (ret) {
		snprintf(err, errlen, "out of memory building a batch");
		return ret;
	}
	b->buf[b->len++] = (uint8_t)(1 << 3 | 2);
	b->len += tv_varint_put(b->buf + b->len, cur->len);
	ret = tv_block_stream_write(cur->s, b->buf + b->len, why, sizeof(why));
	heap_pop(q);
	if (ret) {
		b->len = at;
		tv_block_stream_free(cur->s);
		cur->s = NULL;
		ret = block_fault(q, cur->bi, ret, why, cur->sent, b, err, errlen);
		cursor_free(cur);
		return ret;
	}
	b->len += cur->len;
	b->records++;
	q->emitted++;
	cur->sent++;
	q->pending = cur;
	return 0;
}

/* The heap's first head into the batch; its cursor goes aside to be stepped. */
static int emit_head(struct tv_query *q, struct batch *b, char *err, size_t errlen)
{
	struct cursor *cur = q->heap[0];
	const uint8_t *p1 = cur->data, *p2 = NULL;
	size_t l1 = cur->len, l2 = 0;
	int ret;

	if (q->reverse)
		tv_query_window_last(&cur->w, &p1, &l1, &p2, &l2);
	else if (!p1) /* a version 3 record left unbuilt: built in place */
		return emit_unbuilt(q, cur, b, err, errlen);
	ret = batch_put2(b, 1, p1, l1, p2, l2);
	if (ret) {
		snprintf(err, errlen, "out of memory building a batch");
		return ret;
	}
	b->records++;
	q->emitted++;
	cur->sent++;
	cur->head_sent = q->reverse;
	heap_pop(q);
	q->pending = cur;
	return 0;
}

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
	if (q->features) {
		ret = batch_put_varint(&b, 3, q->features);
		q->features = 0;
		if (ret) {
			snprintf(err, errlen, "out of memory building a batch");
			goto fail;
		}
	}
	slice_begin(q);
	while (!q->done && b.records < q->batch_records && b.len < q->batch_bytes) {
		if (q->limit && q->emitted == q->limit) {
			/* the cursor of the last head sent is not stepped: no read is wasted */
			struct cursor *cur = q->pending;

			q->pending = NULL;
			q->done = true;
			if (cur && (ret = cursor_drop(q, cur, &b, err, errlen)))
				goto fail;
			while (q->nheap) {
				ret = cursor_drop(q, heap_pop(q), &b, err, errlen);
				if (ret)
					goto fail;
			}
			break;
		}
		if (q->pending) {
			struct cursor *cur = q->pending;

			q->pending = NULL;
			ret = cursor_settle(q, cur, &b, err, errlen);
			if (ret)
				goto fail;
			if (q->pending)
				break; /* the slice is spent */
			continue;
		}
		if (must_open_next(q)) {
			size_t bi = q->order ? q->order[q->next_block] : q->next_block;

			q->next_block++;
			ret = open_block(q, bi, &b, err, errlen);
			if (ret)
				goto fail;
			continue;
		}
		if (q->nheap == 0) {
			q->done = true;
			break;
		}
		ret = emit_head(q, &b, err, errlen);
		if (ret)
			goto fail;
		if (slice_spent(q))
			break;
	}
	/* the catalog's filter read ends with the slice: Writes commit between slices */
	tv_catalog_trace_filter_release(q->catalog);
	if (b.len == 0) {
		free(b.buf);
		/* not done: the slice is spent */
		return q->done ? 0 : TV_QUERY_YIELD;
	}
	goto send;
fail:
	tv_catalog_trace_filter_release(q->catalog);
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
	if (b.records) { /* the next batch may hold twice as much (TV_QUERY_FIRST_BATCH_*) */
		q->batch_records = q->batch_records * 2 < TV_QUERY_BATCH_RECORDS ?
					   q->batch_records * 2 : TV_QUERY_BATCH_RECORDS;
		q->batch_bytes = q->batch_bytes * 2 < TV_QUERY_BATCH_BYTES ?
					 q->batch_bytes * 2 : TV_QUERY_BATCH_BYTES;
	}
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

int tv_query_reserve(struct tv_query *q, size_t bytes, char *why, size_t whylen)
{
	return reserve(q, bytes, why, whylen);
}

void tv_query_release(struct tv_query *q, size_t bytes)
{
	release(q, bytes);
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

