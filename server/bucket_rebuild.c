/* --rebuild-catalog --under (bucket_rebuild.h): the header check and the catalog merge of each
 * complete segment the bucket scan (under/rebuild.c) finds. */
#include "server/bucket_rebuild.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/clock.h"
#include "proto/block.h"

struct ctx {
	struct tv_catalog *c;
	int64_t now_ns; /* every added row's committed_ns: the rebuild's time */
};

/* B's header (as the bucket holds it) against the manifest's fields; 0 and *h, or -1 and WHY */
static int check_header(const struct tv_rebuild_block *b, struct tv_block_header *h, char *why,
			size_t whylen)
{
	char e[256];

	if (tv_block_header_parse(b->header, b->header_bytes, h, e, sizeof(e))) {
		snprintf(why, whylen, "block %016" PRIx64 ": header: %s", b->block_id, e);
		return -1;
	}
	if (h->header_bytes != b->header_bytes || h->block_id != b->block_id ||
	    tv_block_total_bytes(h) != b->bytes || h->min_ts_ns != b->min_ts_ns ||
	    h->max_ts_ns != b->max_ts_ns || h->record_count != b->record_count ||
	    h->payload_crc32c != b->payload_crc32c) {
		snprintf(why, whylen, "block %016" PRIx64 ": the header says block %016" PRIx64 ", "
			 "%u + %" PRIu64 " bytes, ts_ns [%" PRIu64 ", %" PRIu64 "], %u records, "
			 "payload CRC %08x; the manifest %u + %" PRIu64 " bytes, [%" PRIu64 ", %"
			 PRIu64 "], %" PRIu64 " records, CRC %08x", b->block_id, h->block_id,
			 h->header_bytes, h->payload_bytes, h->min_ts_ns, h->max_ts_ns,
			 h->record_count, h->payload_crc32c, b->header_bytes,
			 b->bytes - b->header_bytes, b->min_ts_ns, b->max_ts_ns, b->record_count,
			 b->payload_crc32c);
		return -1;
	}
	if (h->min_ts_ns > TV_CATALOG_MAX_TS_NS || h->max_ts_ns > TV_CATALOG_MAX_TS_NS) {
		snprintf(why, whylen, "block %016" PRIx64 ": ts_ns beyond 2^63-1, the catalog's "
			 "range", b->block_id);
		return -1;
	}
	return 0;
}

/* tv_rebuild_segment_fn */
static int add_segment(void *arg, const struct tv_rebuild_segment *seg,
		       struct tv_rebuild_report *rep, char *err, size_t errlen)
{
	struct ctx *x = arg;
	struct tv_catalog_block *rows = calloc(seg->n, sizeof(*rows));
	struct tv_block_header h;
	char why[768];
	int ret;

	if (!rows) {
		snprintf(err, errlen, "out of memory for segment %016" PRIx64 "'s %zu blocks",
			 seg->segment_id, seg->n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < seg->n; i++) {
		const struct tv_rebuild_block *b = &seg->blocks[i];

		if (check_header(b, &h, why, sizeof(why))) {
			tv_rebuild_report_skip(rep, TV_REBUILD_BAD_HEADER, seg->dir, why);
			free(rows);
			return TV_REBUILD_SKIPPED;
		}
		rows[i] = (struct tv_catalog_block){ .block_id = b->block_id,
						     .segment_id = seg->segment_id,
						     .min_ts_ns = h.min_ts_ns,
						     .max_ts_ns = h.max_ts_ns,
						     .record_count = h.record_count,
						     .bytes = b->bytes,
						     .loss = h.loss,
						     .raw_bytes = h.raw_bytes };
	}
	ret = tv_catalog_rebuild_add_segment(x->c, seg->segment_id, seg->oldest_ts_ns, rows,
					     seg->n, x->now_ns, why, sizeof(why));
	free(rows);
	switch (ret) {
	case TV_CATALOG_REBUILD_ADDED:
		return TV_REBUILD_ADDED;
	case TV_CATALOG_REBUILD_PRESENT:
		return TV_REBUILD_PRESENT;
	case TV_CATALOG_REBUILD_DELETED:
		tv_rebuild_report_skip(rep, TV_REBUILD_DELETED_LOCALLY, seg->dir, why);
		return TV_REBUILD_SKIPPED;
	case TV_CATALOG_REBUILD_CONFLICT:
		tv_rebuild_report_skip(rep, TV_REBUILD_LOCAL_CONFLICT, seg->dir, why);
		return TV_REBUILD_SKIPPED;
	default:
		snprintf(err, errlen, "%s", why);
		return ret < 0 ? ret : -EIO;
	}
}

int tv_bucket_rebuild(struct tv_catalog *c, struct tv_rebuild *rb, struct tv_rebuild_report *rep,
		      char *err, size_t errlen)
{
	struct ctx x = { .c = c, .now_ns = (int64_t)tv_realtime_ns() };

	return tv_rebuild_scan(rb, add_segment, &x, rep, err, errlen);
}
