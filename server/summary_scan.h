/* Summary's reader (server/summary.h): the blocks of [from_ns, to_ns) one after another in the
 * catalog's order, without the Query executor's merge (a summary's counts do not depend on the
 * order of its records), each record that passes the filter handed to a sink as a view of its
 * fields. A version 3 block is read column by column (tv_block_stream_next_page): only the
 * columns of the fields the summary and its filter read are decompressed, no record is rebuilt
 * as protobuf, and the group key comes with its page-dictionary id so the summary finds its
 * group once per distinct string of a page instead of hashing it per record; a filter on one
 * string field is likewise answered once per distinct string of a page. Version 1 and 2
 * blocks, a version 3 record the columns keep whole, and a filter on trace ids (not a column
 * field) go record by record through tv_record_view_parse, as Summary read every block before.
 * A damaged or unreadable block is handled as the Query executor does (server/query.h,
 * PROTOCOL.md): skipped, quarantined when it fails its checks, and listed for the reply. */
#ifndef TV_SERVER_SUMMARY_SCAN_H
#define TV_SERVER_SUMMARY_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "proto/block_v3.h"
#include "server/catalog.h"
#include "server/filter.h"
#include "server/query.h"
#include "server/store_uring.h"
#include "tracevault.pb-c.h"

/* key_id of a record whose key string has no page-dictionary id (the record was read whole,
 * or the key is not a string field): the sink reads the key from the view. */
#define TV_SUMMARY_SCAN_NO_ID UINT32_MAX
/* key_id of a record without the key field (the key is ""), in a column-read page */
#define TV_SUMMARY_SCAN_ABSENT_ID TV_BLOCK_V3_MAX_PAGE_RECORDS
/* key_ids other than NO_ID are below this */
#define TV_SUMMARY_SCAN_IDS (TV_BLOCK_V3_MAX_PAGE_RECORDS + 1)

/* Where the records go. record: one record in range that passes the filter; v holds the fields
 * of tv_summary_scan_params.fields (and the filter's), its strings valid during the call only;
 * key_id (below TV_SUMMARY_SCAN_IDS, or NO_ID) names the key string: equal ids have equal keys
 * until the next ids_reset. A non-zero return (a negative errno with a reason in err) ends the
 * scan with it. ids_reset: the ids seen so far mean nothing from now on (a new page). */
struct tv_summary_scan_sink {
	int (*record)(void *arg, const struct tv_record_view *v, uint32_t key_id, char *err,
		      size_t errlen);
	void (*ids_reset)(void *arg);
	void *arg;
};

struct tv_summary_scan_params {
	uint64_t from_ns, to_ns;  /* from_ns <= to_ns (the caller's check) */
	uint32_t fields;          /* what the sink reads: bits 1u << TraceRecord field number */
	unsigned key_field;       /* the string field whose dictionary id is key_id (0: none) */
	struct tv_filter *filter; /* NULL: every record; taken by the scan, also on error */
};

struct tv_summary_scan;

/* Plan the scan: the catalog's blocks overlapping the window (metadata only), their list
 * charged to q (tv_query_reserve), which also gives the blocks' read memory and must be a
 * running query of pool (so that retention keeps the listed files: server/retention.h).
 * c, s, pool, q and sink's arg outlive the scan. Returns 0, or -ENOBUFS / -ENOMEM (the plan
 * does not fit) or the catalog's errno with a reason in err. */
int tv_summary_scan_new(struct tv_summary_scan **out, struct tv_catalog *c, struct tv_store *s,
			struct tv_query_pool *pool, struct tv_query *q,
			const struct tv_summary_scan_params *p,
			const struct tv_summary_scan_sink *sink, char *err, size_t errlen);
/* Read the next part: about one query slice (TV_QUERY_SLICE_RECORDS records, or
 * TV_QUERY_SLICE_NS; a version 3 page is read whole). Returns 1 when more remains, 0 when every
 * block was read or skipped, or a negative errno with a reason in err: the sink's error, or the
 * scan cannot go on (-ENOMEM, -ENOBUFS for the query's memory limits, -ENFILE when the
 * server's open-block limit is reached: RESOURCE_EXHAUSTED). */
int tv_summary_scan_step(struct tv_summary_scan *s, char *err, size_t errlen);
/* The blocks skipped so far, as SummaryResponse.skipped entries (owned by the scan). */
size_t tv_summary_scan_skipped(const struct tv_summary_scan *s,
			       Tracevault__V1__SkippedBlock *const **out);
/* Release the scan (its block, descriptors, memory back to q); logs one line on stderr:
 * "summary: planned P blocks, opened O, read R records (C in columns), T ms". NULL: no-op. */
void tv_summary_scan_free(struct tv_summary_scan *s);

#endif
