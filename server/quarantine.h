/* Quarantine: what start-up, scrub or a query finds that is not a block the server can serve
 * (a file that fails its checks, a name that is not ours, a damaged catalog) is moved into
 * DATA/quarantine/ with a .reason file beside it and logged, never deleted, and a quarantined
 * block loses its catalog row so no query lists it again. An operator can inspect it, copy it
 * out, or delete it (server/RECOVERY.md). */
#ifndef TV_SERVER_QUARANTINE_H
#define TV_SERVER_QUARANTINE_H

#include <stdint.h>

#include "server/catalog.h"
#include "server/store_uring.h"

/* Move the file of committed block (segment_id, block_id) from blocks/ into quarantine/ with
 * reason (one line: what failed, e.g. the verify.h message), then delete its catalog row, and
 * log `quarantine: blocks/<name> -> quarantine/<name>: <reason>`. The file goes first: a crash
 * in between leaves a row without a file, which start-up drops. When the file is already gone
 * (-ENOENT) the row is deleted all the same. Synchronous (a rename, fsyncs, one transaction).
 * Returns 0, or the negative errno of the move (the file and row then stay, logged) or of the
 * row's deletion (the file is in quarantine/; start-up drops the row). */
int tv_quarantine_block(struct tv_store *s, struct tv_catalog *c, uint64_t segment_id,
			uint64_t block_id, const char *reason);

/* Move area/name (a file or directory the catalog does not list) into quarantine/ with reason
 * and log it like tv_quarantine_block. Returns 0, -ENOENT when there is no such file (not
 * logged), or the negative errno of the move (logged). */
int tv_quarantine_file(struct tv_store *s, enum tv_store_area area, const char *name,
		       const char *reason);

#endif
