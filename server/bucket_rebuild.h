/* `tracevaultd --rebuild-catalog --under s3://BUCKET/PREFIX`: the server's side of rebuilding
 * the catalog from the under-store's bucket (server/under/UNDERSTORE.md "Rebuild from the
 * bucket"). The bucket scan (server/under/rebuild.h) hands over each complete segment; here
 * each block's header is parsed and checked against the manifest (proto/block.h), and the
 * rows are merged into the catalog (tv_catalog_rebuild_add_segment: never replaces or removes
 * a row, so a data dir's own segments are never dropped). */
#ifndef TV_SERVER_BUCKET_REBUILD_H
#define TV_SERVER_BUCKET_REBUILD_H

#include <stddef.h>

#include "server/catalog.h"
#include "under/rebuild.h"

/* Merge every complete segment of RB's bucket into C (rows marked evicted: their blocks are
 * read from S3), filling REP (tv_rebuild_report_free; the caller prints it). A block whose
 * header does not parse, or says another id, size, time range, record count or payload CRC
 * than the manifest, skips its segment (TV_REBUILD_BAD_HEADER). 0, or a negative errno and
 * err (an S3 call or SQLite failed, out of memory): the segments merged before it stay, and
 * a second run adds the rest. */
int tv_bucket_rebuild(struct tv_catalog *c, struct tv_rebuild *rb, struct tv_rebuild_report *rep,
		      char *err, size_t errlen);

#endif
