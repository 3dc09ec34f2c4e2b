/* The Summary rpc (PROTOCOL.md "Summary"): per-group counts, error counts and a latency
 * sketch (proto/latency_sketch.h) of the records of [from_ns, to_ns) that pass the request's
 * filter. The records come from server/summary_scan.h: the catalog's blocks one after another
 * with the Query executor's checks and damage handling, version 3 blocks read column by column.
 * Groups are held in a hash table charged to the query's memory limit (--query-memory-bytes). */
#ifndef TV_SERVER_SUMMARY_H
#define TV_SERVER_SUMMARY_H

#include <stddef.h>

#include <grpc/byte_buffer.h>

#include "server/catalog.h"
#include "server/query.h"
#include "server/store_uring.h"
#include "tracevault.pb-c.h"

/* The quantiles of a request without any. */
#define TV_SUMMARY_DEFAULT_QUANTILES { 0.5, 0.9, 0.99 }
/* Room kept in the reply for `other` and the message's own fields when the groups are cut to
 * the message limit: other's largest sketch (TV_SKETCH_MAX_BUCKETS varints) and its scalars. */
#define TV_SUMMARY_REPLY_RESERVE_BYTES (64u << 10)

struct tv_summary;

/* Check req and plan its query (the request is not kept). Returns 0, -EINVAL with a reason
 * naming the field in err (INVALID_ARGUMENT: "quantiles[1]: 1.5 is not in [0, 1]",
 * "max_groups: 200000 is above 100000", "by: unknown GroupBy 9", a filter's reason,
 * from_ns after to_ns), or tv_query_new's and tv_summary_scan_new's errors (-ENOBUFS,
 * -ENOMEM, the catalog's errno). */
int tv_summary_new(struct tv_summary **out, struct tv_catalog *c, struct tv_store *s,
		   struct tv_query_pool *pool, const Tracevault__V1__SummaryRequest *req,
		   char *err, size_t errlen);
/* Read the next part of the window: about one query slice per call (tv_summary_scan_step),
 * so a caller may interleave other work. Returns 1 when more remains, 0 when every record is
 * counted, or a negative errno with a reason in err (-ENOBUFS, -ENFILE, -ENOMEM are
 * RESOURCE_EXHAUSTED). */
int tv_summary_step(struct tv_summary *s, char *err, size_t errlen);
/* After the last step: the packed SummaryResponse into *out (caller owns it), at most
 * max_message_bytes: groups past req.max_groups, or past what fits, are summed into other.
 * Returns 0 or -ENOMEM. */
int tv_summary_reply(struct tv_summary *s, size_t max_message_bytes, grpc_byte_buffer **out,
		     char *err, size_t errlen);
void tv_summary_free(struct tv_summary *s);

#endif
