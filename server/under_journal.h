/* The under-store's journal on the server's side (server/under/UNDERSTORE.md "Catalog
 * state"): what the loop does with the persister's results in the catalog, and the start-up
 * pass over the journal rows a crash left. The persister (server/under/persist.h) knows no
 * catalog; this module joins the two. */
#ifndef TV_SERVER_UNDER_JOURNAL_H
#define TV_SERVER_UNDER_JOURNAL_H

#include <stddef.h>

#include "server/catalog.h"
#include "server/store_uring.h"
#include "under/persist.h"

/* Start-up with --under, after recovery and before serving, on the server's thread: attach
 * the catalog to the persister (its confirmed deletes drop their journal rows, its
 * async-through uploads mark their segments persisted) and give it blocks/; then every
 * journal row left by the last run: 'uploading' and 'deleting' rows have their segment's
 * objects deleted from the bucket now (manifest first; one S3 does not answer is left to the
 * persister's retried delete), then the row goes; 'queued' rows are queued for upload again,
 * their blocks' headers read from blocks/. Logs one line of what it did. 0, or a negative
 * errno with err (the catalog could not be read, blocks/ could not be opened): the server
 * does not start. P, C and S must outlive the server. */
int tv_under_journal_start(struct tv_persist *p, struct tv_catalog *c, struct tv_store *s,
			   char *err, size_t errlen);

/* A committed segment's tv_persist_block list: names in blocks/ (tv_store_block_name), the
 * header fields of blocks read from their headers there. *out malloc'd (the caller frees),
 * in order of their oldest record (then block id), *oldest_ts_ns the smallest min_ts_ns.
 * 0, -ENOENT (no blocks rows: the segment is gone), or another negative errno with err naming
 * the block. */
int tv_under_journal_blocks(struct tv_catalog *c, struct tv_store *s, uint64_t segment_id,
			    struct tv_persist_block **out, size_t *n, uint64_t *oldest_ts_ns,
			    char *err, size_t errlen);

#endif
