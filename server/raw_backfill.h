/* Start-up fill-in of the catalog's raw_bytes column (query --stats' compression ratio) for
 * rows made before the column existed: each such block's header is read (its first bytes
 * only, not the block) and its raw_bytes stored. Runs once per old row: a filled row is never
 * read again, and every block committed since carries the value from its COMMIT. */
#ifndef TV_SERVER_RAW_BACKFILL_H
#define TV_SERVER_RAW_BACKFILL_H

#include <stddef.h>
#include <stdint.h>

#include "server/catalog.h"
#include "server/store_uring.h"

/* Fill raw_bytes of every row without it from its block file's header (synchronous, before
 * the server serves; after tv_recover, so every row has its file). A header that cannot be
 * read or does not verify leaves its row unknown (counted as 0 by Stats, logged; a query of
 * the block finds the damage as before). *filled and *unknown (may be NULL) get the counts.
 * Returns 0, or a negative errno with a reason in err (the catalog could not be read or
 * written). Logs one line when it filled or missed anything. */
int tv_raw_backfill(struct tv_catalog *c, struct tv_store *s, uint64_t *filled,
		    uint64_t *unknown, char *err, size_t errlen);

#endif
