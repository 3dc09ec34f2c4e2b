/* Summary's block reader (server/summary_scan.h): one block open at a time, in the catalog's
 * (min_ts_ns, block_id) order, each read to its end or to to_ns.
 *
 * Two ways through a block, chosen when it is opened:
 *   - columns: a version 3 block, when every field the summary and its filter read has a column
 *     (tv_v3_page_open_fields). A page is read whole in one go: rows before from_ns are passed
 *     over (the columns are sequential), the page's rows from to_ns on are not looked at.
 *   - records: versions 1 and 2, or a filter on trace ids (a v3 block is first tested against
 *     its trace-id filter, as the Query executor does). Each record is rebuilt, parsed with
 *     tv_record_view_parse and matched with the filter, as Summary did through the Query
 *     executor's sink. A v1/v2 stream completes its second CRC pass before the block is left
 *     (tv_block_stream_finish), so a file changed while it was read is reported.
 *
 * A block that cannot be served is handled as server/query.c's block_fault does, with the same
 * classification: no memory or descriptor ends the scan (RESOURCE_EXHAUSTED); a block that
 * fails its checks is quarantined and skipped; an unreadable or missing file is skipped and
 * left in place. A skipped block's records counted before the fault (records_served) stay
 * counted, as through the executor. */
#include "server/summary_scan.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/block_stream.h"
#include "server/evict.h"
#include "server/quarantine.h"

#define REASON_LEN 256
/* The clock is read once per this many records (query.c's SLICE_CLOCK_EVERY) */
#define CLOCK_EVERY 64

struct skip {
	Tracevault__V1__SkippedBlock m;
	char reason[REASON_LEN];
};

struct tv_summary_scan {
	struct tv_catalog *catalog;
	struct tv_store *store;
	struct tv_query_pool *pool;
	struct tv_query *q;
	struct tv_block_budget budget;
	struct tv_summary_scan_sink sink;
	uint64_t from_ns, to_ns;
	struct tv_filter *filter;
	uint32_t fields;          /* the sink's and the filter's */
	unsigned key_field;
	bool columns_ok;          /* every field has a column (no trace-id filter) */
	/* the one string field the filter reads (0: none or several): in a column-read page its
	 * strings' answer is kept per dictionary id, valid while its gen is s->gen */
	unsigned filter_str_field;
	struct verdict {
		uint32_t gen;
		bool ok;
	} *verdicts;
	uint32_t gen;
	struct tv_catalog_block *blocks;
	size_t nblocks, cap, next_block;
	size_t held;              /* bytes of the plan and skips charged to q */
	/* the open block */
	struct tv_block_stream *st;
	int fd;
	size_t bi;
	bool by_columns;
	uint32_t served;          /* its records given to the sink */
	/* the skipped blocks */
	struct skip **skips;
	Tracevault__V1__SkippedBlock **skipped;
	size_t nskips;
	/* measurement */
	uint64_t started_ns, opened, rows, column_rows;
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int budget_reserve(void *arg, size_t bytes, char *why, size_t whylen)
{
	return tv_query_reserve(arg, bytes, why, whylen);
}

static void budget_release(void *arg, size_t bytes)
{
	tv_query_release(arg, bytes);
}

struct collect_arg {
	struct tv_summary_scan *s;
	char why[REASON_LEN];
};

static int collect(const struct tv_catalog_block *b, void *arg)
{
	struct collect_arg *ca = arg;
	struct tv_summary_scan *s = ca->s;

	if (s->nblocks == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 16;
		struct tv_catalog_block *p;
		int ret = tv_query_reserve(s->q, (ncap - s->cap) * sizeof(*p), ca->why,
					   sizeof(ca->why));

		if (ret)
			return ret;
		s->held += (ncap - s->cap) * sizeof(*p);
		p = realloc(s->blocks, ncap * sizeof(*p));
		if (!p) {
			snprintf(ca->why, sizeof(ca->why), "out of memory");
			return -ENOMEM;
		}
		s->blocks = p;
		s->cap = ncap;
	}
	s->blocks[s->nblocks++] = *b;
	return 0;
}

int tv_summary_scan_new(struct tv_summary_scan **out, struct tv_catalog *c, struct tv_store *st,
			struct tv_query_pool *pool, struct tv_query *q,
			const struct tv_summary_scan_params *p,
			const struct tv_summary_scan_sink *sink, char *err, size_t errlen)
{
	struct collect_arg ca = { .why = "" };
	struct tv_summary_scan *s = calloc(1, sizeof(*s));
	uint32_t filter_fields = tv_filter_fields(p->filter);
	int ret;

	*out = NULL;
	if (!s) {
		tv_filter_free(p->filter);
		snprintf(err, errlen, "out of memory planning the summary");
		return -ENOMEM;
	}
	s->started_ns = now_ns();
	s->catalog = c;
	s->store = st;
	s->pool = pool;
	s->q = q;
	s->budget = (struct tv_block_budget){ .reserve = budget_reserve,
					      .release = budget_release, .arg = q };
	s->sink = *sink;
	s->from_ns = p->from_ns;
	s->to_ns = p->to_ns;
	s->filter = p->filter;
	s->fields = p->fields | filter_fields;
	s->key_field = p->key_field;
	s->columns_ok = (s->fields & ~TV_V3_FIELDS_READABLE) == 0;
	s->fd = -1;
	if (__builtin_popcount(filter_fields & TV_FILTER_STRING_FIELDS) == 1) {
		ret = tv_query_reserve(q, TV_SUMMARY_SCAN_IDS * sizeof(*s->verdicts), ca.why,
				       sizeof(ca.why));
		if (!ret) {
			s->held += TV_SUMMARY_SCAN_IDS * sizeof(*s->verdicts);
			s->verdicts = calloc(TV_SUMMARY_SCAN_IDS, sizeof(*s->verdicts));
			ret = s->verdicts ? 0 : -ENOMEM;
		}
		if (ret) {
			snprintf(err, errlen, "cannot plan the summary: %s",
				 ca.why[0] ? ca.why : "out of memory");
			tv_summary_scan_free(s);
			return ret;
		}
		s->filter_str_field = (unsigned)__builtin_ctz(filter_fields & TV_FILTER_STRING_FIELDS);
		s->gen = 1;
	}
	ca.s = s;
	ret = tv_catalog_overlap(c, p->from_ns, p->to_ns, collect, &ca);
	if (ret) {
		if (ca.why[0])
			snprintf(err, errlen, "cannot plan the summary over %zu+ blocks: %s",
				 s->nblocks, ca.why);
		else
			snprintf(err, errlen, "catalog lookup failed: %s", strerror(-ret));
		tv_summary_scan_free(s);
		return ret;
	}
	*out = s;
	return 0;
}

static void close_block(struct tv_summary_scan *s)
{
	tv_block_stream_free(s->st);
	s->st = NULL;
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
		s->pool->open_blocks--;
	}
}

void tv_summary_scan_free(struct tv_summary_scan *s)
{
	if (!s)
		return;
	fprintf(stderr, "summary: planned %zu blocks, opened %llu, read %llu records (%llu in "
		"columns), %.1f ms\n", s->nblocks, (unsigned long long)s->opened,
		(unsigned long long)s->rows, (unsigned long long)s->column_rows,
		(double)(now_ns() - s->started_ns) / 1e6);
	close_block(s);
	for (size_t i = 0; i < s->nskips; i++)
		free(s->skips[i]);
	free(s->skips);
	free(s->skipped);
	free(s->blocks);
	free(s->verdicts);
	tv_filter_free(s->filter);
	tv_query_release(s->q, s->held);
	free(s);
}

size_t tv_summary_scan_skipped(const struct tv_summary_scan *s,
			       Tracevault__V1__SkippedBlock *const **out)
{
	*out = s->skipped;
	return s->nskips;
}

/* ---- a block that cannot be served (server/query.h's classification) ---- */

/* The open block failed with ret for reason: the scan cannot go on (returns ret with err set),
 * or the block is skipped (returns 0): quarantined when damaged, logged and listed. The block
 * is closed either way. */
static int block_fault(struct tv_summary_scan *s, int ret, const char *reason, char *err,
		       size_t errlen)
{
	const struct tv_catalog_block *meta = &s->blocks[s->bi];
	Tracevault__V1__SkippedBlock **pp;
	struct skip *sk, **sp;
	char why[REASON_LEN];
	int r;

	close_block(s);
	if (tv_block_fault_of(ret) == TV_BLOCK_RESOURCE) {
		snprintf(err, errlen, "block %016llx: %s", (unsigned long long)meta->block_id,
			 reason);
		return ret;
	}
	r = tv_query_reserve(s->q, sizeof(*sk) + 2 * sizeof(void *), why, sizeof(why));
	sk = r ? NULL : calloc(1, sizeof(*sk));
	sp = sk ? realloc(s->skips, (s->nskips + 1) * sizeof(*sp)) : NULL;
	if (sp)
		s->skips = sp;
	pp = sp ? realloc(s->skipped, (s->nskips + 1) * sizeof(*pp)) : NULL;
	if (!pp) {
		free(sk);
		if (!r)
			tv_query_release(s->q, sizeof(*sk) + 2 * sizeof(void *));
		snprintf(err, errlen, "block %016llx fails its checks (%s) and cannot be reported: "
			 "%s", (unsigned long long)meta->block_id, reason,
			 r ? why : "out of memory");
		return r ? r : -ENOMEM;
	}
	s->held += sizeof(*sk) + 2 * sizeof(void *);
	s->skipped = pp;
	tracevault__v1__skipped_block__init(&sk->m);
	snprintf(sk->reason, sizeof(sk->reason), "%s", reason);
	sk->m.block_id = meta->block_id;
	sk->m.segment_id = meta->segment_id;
	sk->m.min_ts_ns = meta->min_ts_ns;
	sk->m.max_ts_ns = meta->max_ts_ns;
	sk->m.records_served = s->served;
	sk->m.reason = sk->reason;
	if (tv_block_fault_of(ret) == TV_BLOCK_DAMAGED) /* logs what it did, or why not */
		sk->m.quarantined = tv_quarantine_block(s->store, s->catalog, meta->segment_id,
							meta->block_id, reason) == 0;
	s->skips[s->nskips] = sk;
	s->skipped[s->nskips++] = &sk->m;
	fprintf(stderr, "summary: skipped block %016llx of segment %016llx, ts_ns [%llu, %llu], "
		"%u of its records counted: %s (%s)\n", (unsigned long long)meta->block_id,
		(unsigned long long)meta->segment_id, (unsigned long long)meta->min_ts_ns,
		(unsigned long long)meta->max_ts_ns, s->served, reason,
		sk->m.quarantined ? "quarantined" : "left in place");
	return 0;
}

/* ---- opening a block ---- */

/* Open block bi and check it against its catalog row; a block that cannot be served is
 * skipped (s->st stays NULL). Returns 0, or a negative errno when the scan cannot go on. */
static int open_block(struct tv_summary_scan *s, size_t bi, char *err, size_t errlen)
{
	const struct tv_catalog_block *meta = &s->blocks[bi];
	const struct tv_block_header *h;
	char why[REASON_LEN];
	uint64_t size = 0;
	const char *ids;
	size_t n;
	int ret, remote;

	if (s->pool->open_blocks >= s->pool->max_open_blocks) {
		snprintf(err, errlen, "block %016llx: %zu block files are open in queries, the "
			 "server's limit: try again later or narrow the time range",
			 (unsigned long long)meta->block_id, s->pool->max_open_blocks);
		return -ENFILE;
	}
	s->bi = bi;
	s->served = 0;
	s->opened++;
	ret = tv_evict_open_block(s->pool->evict, s->store, meta->segment_id, meta->block_id,
				  meta->bytes, &s->fd, &size, &remote, err, errlen);
	/* evicted, and S3 did not give it: the scan cannot go on, unless S3 said the object
	 * is gone (404): a lost block, skipped as a missing file is (query.c's open) */
	if (ret && remote && ret != -ENOENT) {
		s->fd = -1;
		return ret;
	}
	if (ret) {
		s->fd = -1;
		if (remote)
			snprintf(why, sizeof(why), "%s", err);
		else
			tv_block_open_reason(s->catalog, meta->block_id, ret, "summary", why,
					     sizeof(why));
		return block_fault(s, ret, why, err, errlen);
	}
	s->pool->open_blocks++;
	ret = tv_block_stream_open(&s->st, tv_block_read_fd, &s->fd, size, &s->budget, why,
				   sizeof(why));
	if (ret)
		return block_fault(s, ret, why, err, errlen);
	h = tv_block_stream_header(s->st);
	if (h->block_id != meta->block_id || h->min_ts_ns != meta->min_ts_ns ||
	    h->max_ts_ns != meta->max_ts_ns || h->record_count != meta->record_count ||
	    size != meta->bytes) {
		snprintf(why, sizeof(why), "file does not match its catalog entry (block %016llx, "
			 "ts_ns [%llu, %llu], %u records, %llu bytes)",
			 (unsigned long long)h->block_id, (unsigned long long)h->min_ts_ns,
			 (unsigned long long)h->max_ts_ns, h->record_count,
			 (unsigned long long)size);
		return block_fault(s, -EBADMSG, why, err, errlen);
	}
	if ((n = tv_filter_trace_ids(s->filter, &ids)) > 0) {
		ret = tv_block_stream_may_hold_trace(s->st, ids, n, TV_FILTER_TRACE_ID_STRIDE, why,
						     sizeof(why));
		if (ret < 0)
			return block_fault(s, ret, why, err, errlen);
		if (ret == 0) {
			close_block(s);
			return 0;
		}
	}
	tv_block_stream_seek(s->st, s->from_ns);
	s->by_columns = h->version >= 3 && s->columns_ok;
	return 0;
}

/* ---- reading ---- */

/* A record that passed the filter to the sink. */
static int pass(struct tv_summary_scan *s, const struct tv_record_view *v, uint32_t key_id,
		char *err, size_t errlen)
{
	s->served++;
	return s->sink.record(s->sink.arg, v, key_id, err, errlen);
}

static int give(struct tv_summary_scan *s, const struct tv_record_view *v, uint32_t key_id,
		char *err, size_t errlen)
{
	if (s->filter && !tv_filter_match_view(s->filter, v))
		return 0;
	return pass(s, v, key_id, err, errlen);
}

/* The filter on a record of a column-read page: the strings' answer of its id when the filter
 * reads one string field (computed once per id and page). */
static bool page_match(struct tv_summary_scan *s, const struct tv_record_view *v,
		       const struct tv_v3_fields *r)
{
	struct verdict *vd;
	uint32_t id;

	if (!s->filter)
		return true;
	if (!s->filter_str_field)
		return tv_filter_match_view(s->filter, v);
	if (!tv_filter_match_numbers(s->filter, v))
		return false;
	id = r->str_id[s->filter_str_field];
	vd = &s->verdicts[id == TV_V3_NO_ID ? TV_SUMMARY_SCAN_ABSENT_ID : id];
	if (vd->gen != s->gen)
		*vd = (struct verdict){ .gen = s->gen,
					.ok = tv_filter_match_strings(s->filter, v) };
	return vd->ok;
}

/* The view of a record kept whole (or of a v1/v2 block). */
static int give_bytes(struct tv_summary_scan *s, const uint8_t *rec, size_t len, char *err,
		      size_t errlen)
{
	struct tv_record_view v;

	if (!tv_record_view_parse(rec, len, &v)) { /* Write and the block checks refuse these */
		snprintf(err, errlen, "summary: a stored record of %zu bytes does not parse", len);
		return -EBADMSG;
	}
	return give(s, &v, TV_SUMMARY_SCAN_NO_ID, err, errlen);
}

/* Up to CLOCK_EVERY records of a record-read block. Returns 1 (more), 0 (the block is done:
 * its end or to_ns), STREAM_FAULT with ret's errno in *fault and why (the block's fault), or
 * a negative errno (the sink's). */
#define STREAM_FAULT 2
static int records_part(struct tv_summary_scan *s, int *fault, char *why, size_t whylen,
			char *err, size_t errlen)
{
	const uint8_t *data;
	size_t len;
	uint64_t ts;
	int ret;

	for (int i = 0; i < CLOCK_EVERY; i++) {
		ret = tv_block_stream_next(s->st, &data, &len, &ts, why, whylen);
		if (ret < 0) {
			*fault = ret;
			return STREAM_FAULT;
		}
		if (ret == 0 || ts >= s->to_ns)
			return 0;
		s->rows++;
		if (ts < s->from_ns)
			continue;
		if ((ret = give_bytes(s, data, len, err, errlen)))
			return ret;
	}
	return 1;
}

/* The record's fields from its columns into v (only those read; v's others stay as set). */
static void view_of(struct tv_record_view *v, const struct tv_v3_fields *r, uint32_t fields)
{
#define NUM(f, name) if (fields & 1u << (f)) v->name = r->num[f]
#define STR(f, name)                                    \
	if (fields & 1u << (f)) {                       \
		v->name = (const char *)r->str[f];      \
		v->name##_len = r->str_len[f];          \
	}
	NUM(3, latency_ns);
	NUM(4, pid);
	NUM(10, status);
	NUM(15, flags);
	STR(5, comm);
	STR(7, remote);
	STR(8, method);
	STR(9, path);
	STR(18, role);
	STR(19, host);
#undef NUM
#undef STR
}

/* One page of a column-read block. Returns 1 (a page was read), 0 (no more pages in range),
 * STREAM_FAULT, or a negative errno (the sink's). */
static int page_part(struct tv_summary_scan *s, int *fault, char *why, size_t whylen,
		     char *err, size_t errlen)
{
	struct tv_record_view v = { .comm = "", .remote = "", .method = "", .path = "",
				    .trace_id = "", .role = "", .host = "" };
	struct tv_v3_page *page;
	struct tv_v3_fields r;
	const uint64_t *ts;
	uint32_t n, i;
	int ret;

	ret = tv_block_stream_next_page(s->st, s->fields, s->to_ns, &page, why, whylen);
	if (ret <= 0) {
		*fault = ret;
		return ret < 0 ? STREAM_FAULT : 0;
	}
	s->sink.ids_reset(s->sink.arg);
	if (s->verdicts && ++s->gen == 0) { /* wrapped: no verdict may look current */
		memset(s->verdicts, 0, TV_SUMMARY_SCAN_IDS * sizeof(*s->verdicts));
		s->gen = 1;
	}
	ts = tv_v3_page_ts(page);
	n = tv_v3_page_records(page);
	for (i = 0; i < n && ts[i] < s->to_ns; i++) {
		ret = tv_v3_page_next_fields(page, &r, why, whylen);
		if (ret <= 0) {
			*fault = ret ? ret : -EBADMSG;
			if (!ret)
				snprintf(why, whylen, "page ends after %u of its %u records", i, n);
			return STREAM_FAULT;
		}
		if (ts[i] < s->from_ns)
			continue;
		if (r.raw) {
			ret = give_bytes(s, r.raw, r.raw_len, err, errlen);
		} else {
			uint32_t id = TV_SUMMARY_SCAN_NO_ID;

			view_of(&v, &r, s->fields);
			if (!page_match(s, &v, &r))
				continue;
			if (s->key_field)
				id = r.str_id[s->key_field] == TV_V3_NO_ID ?
					     TV_SUMMARY_SCAN_ABSENT_ID : r.str_id[s->key_field];
			ret = pass(s, &v, id, err, errlen);
		}
		if (ret)
			return ret;
	}
	s->rows += i;
	s->column_rows += i;
	if (i == n) { /* every column used exactly */
		ret = tv_v3_page_next_fields(page, &r, why, whylen);
		if (ret) {
			*fault = ret < 0 ? ret : -EBADMSG;
			if (ret > 0)
				snprintf(why, whylen, "page holds more than its %u records", n);
			return STREAM_FAULT;
		}
	}
	return i == n ? 1 : 0;
}

int tv_summary_scan_step(struct tv_summary_scan *s, char *err, size_t errlen)
{
	uint64_t end_ns = now_ns() + TV_QUERY_SLICE_NS, rows0 = s->rows;
	char why[REASON_LEN];
	int ret, fault = 0;
	bool some = false;

	for (;;) {
		/* after one part at least: a block open (a v1/v2 block's CRC pass, or a v3 block
		 * its trace-id filter turns away) counts as work too */
		if (some && (s->rows - rows0 >= TV_QUERY_SLICE_RECORDS || now_ns() >= end_ns))
			return s->st || s->next_block < s->nblocks ? 1 : 0;
		some = true;
		if (!s->st) {
			if (s->next_block == s->nblocks)
				return 0;
			ret = open_block(s, s->next_block++, err, errlen);
			if (ret)
				return ret;
			continue;
		}
		ret = s->by_columns ? page_part(s, &fault, why, sizeof(why), err, errlen) :
				      records_part(s, &fault, why, sizeof(why), err, errlen);
		if (ret < 0)
			return ret;
		if (ret == 0 && !s->by_columns &&
		    (fault = tv_block_stream_finish(s->st, why, sizeof(why))))
			ret = STREAM_FAULT; /* the file changed while it was read */
		if (ret == STREAM_FAULT) {
			ret = block_fault(s, fault, why, err, errlen);
			if (ret)
				return ret;
		} else if (ret == 0) {
			close_block(s);
		}
	}
}
