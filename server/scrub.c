/* tracevaultd --scrub (see scrub.h): the catalog's rows are copied first, so that quarantining
 * (which deletes rows) never runs inside a walk of the table. */
#include "server/scrub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "proto/block_v3.h"
#include "server/quarantine.h"
#include "server/verify.h"

struct rows {
	struct tv_catalog_block *v;
	size_t n, cap;
};

static int collect(const struct tv_catalog_block *b, void *arg)
{
	struct rows *r = arg;

	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 256;
		struct tv_catalog_block *p = realloc(r->v, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->v = p;
		r->cap = ncap;
	}
	r->v[r->n++] = *b;
	return 0;
}

/* 1 when the header h says what row b says (id, time range, count, size, loss, raw size). */
static int row_matches(const struct tv_catalog_block *b, const struct tv_block_header *h,
		       size_t len)
{
	return h->block_id == b->block_id && h->min_ts_ns == b->min_ts_ns &&
	       h->max_ts_ns == b->max_ts_ns && h->record_count == b->record_count &&
	       len == b->bytes && !memcmp(&h->loss, &b->loss, sizeof(h->loss)) &&
	       h->raw_bytes == b->raw_bytes;
}

/* Check one block: 0 (whatever was found, counted in rep) or a negative errno. */
static int scrub_one(struct tv_catalog *c, struct tv_store *s, const struct tv_catalog_block *b,
		     struct tv_scrub_report *rep)
{
	struct tv_block_header h;
	char why[256], name[TV_STORE_NAME_BYTES];
	void *buf = NULL;
	size_t len = 0;
	int ret;

	rep->blocks++;
	tv_store_block_name(b->segment_id, b->block_id, name, sizeof(name));
	ret = tv_store_read_block(s, b->segment_id, b->block_id, TV_SERVER_MAX_BLOCK_BYTES, &buf,
				  &len);
	if (ret == -ENOMEM)
		return ret;
	if (ret == -ENOENT) {
		uint64_t oldest_ts_ns;
		int evicted = 0;

		/* evicted (server/evict.h): the block is in the under-store, not checked here */
		if (tv_catalog_under_state(c, b->segment_id, &oldest_ts_ns, &evicted) == 1 &&
		    evicted)
			return 0;
		fprintf(stderr, "scrub: block %016llx: its file blocks/%s is missing: row dropped\n",
			(unsigned long long)b->block_id, name);
		rep->missing++;
		ret = tv_quarantine_block(s, c, b->segment_id, b->block_id, "file missing");
		return ret == -ENOENT ? 0 : ret;
	}
	if (ret) {
		snprintf(why, sizeof(why), "cannot read it: %s", strerror(-ret));
	} else {
		rep->bytes += len;
		ret = tv_verify_block_records(buf, len, &h, why, sizeof(why));
		if (!ret && h.block_id != b->block_id) {
			snprintf(why, sizeof(why), "its header says block %016llx",
				 (unsigned long long)h.block_id);
			ret = -EBADMSG;
		}
	}
	if (ret == -ENOMEM) {
		free(buf);
		return ret;
	}
	if (ret) {
		free(buf);
		rep->damaged++;
		tv_quarantine_block(s, c, b->segment_id, b->block_id, why);
		return 0;
	}
	/* the catalog's copy of its trace-id filter (catalog.h) must be the file's: a query
	 * trusts it to rule the block out (versions 1 and 2 have no filter, and no copy) */
	ret = h.version < 3 ? 0 :
	      tv_catalog_trace_filter_check(c, b->block_id, (uint8_t *)buf + h.header_bytes +
					    (size_t)h.page_count * TV_BLOCK_V3_PAGE_ENTRY_BYTES,
					    h.bloom_bytes);
	if (ret < 0) {
		free(buf);
		return ret;
	}
	if (ret == 1) {
		rep->repaired++;
		fprintf(stderr, "scrub: block %016llx: the catalog's copy of its trace-id filter "
			"differed from the block's: copy dropped\n", (unsigned long long)b->block_id);
	}
	free(buf);
	if (!row_matches(b, &h, len)) {
		struct tv_catalog_block fixed = *b;

		fixed.min_ts_ns = h.min_ts_ns;
		fixed.max_ts_ns = h.max_ts_ns;
		fixed.record_count = h.record_count;
		fixed.bytes = len;
		fixed.loss = h.loss;
		fixed.raw_bytes = h.raw_bytes;
		ret = tv_catalog_replace(c, &fixed);
		if (ret)
			return ret;
		rep->repaired++;
		fprintf(stderr, "scrub: block %016llx: its catalog row disagreed with its header "
			"(which verifies): row rewritten from the header\n",
			(unsigned long long)b->block_id);
	}
	return 0;
}

int tv_scrub(struct tv_catalog *c, struct tv_store *s, struct tv_scrub_report *rep, char *err,
	     size_t errlen)
{
	struct rows rows = { 0 };
	uint64_t t0 = tv_monotonic_ns();
	int ret;

	*rep = (struct tv_scrub_report){ 0 };
	ret = tv_catalog_list(c, collect, &rows);
	for (size_t i = 0; !ret && i < rows.n; i++)
		ret = scrub_one(c, s, &rows.v[i], rep);
	free(rows.v);
	rep->elapsed_ns = tv_monotonic_ns() - t0;
	if (ret) {
		snprintf(err, errlen, "scrub: %s", strerror(-ret));
		return ret;
	}
	fprintf(stderr, "scrub: %llu blocks, %llu bytes verified in %.3f s: %llu damaged "
		"(quarantined), %llu missing, %llu rows repaired\n",
		(unsigned long long)rep->blocks, (unsigned long long)rep->bytes,
		(double)rep->elapsed_ns / 1e9, (unsigned long long)rep->damaged,
		(unsigned long long)rep->missing, (unsigned long long)rep->repaired);
	return 0;
}
