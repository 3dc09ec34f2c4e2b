/* Quarantine: a stored block that fails its checks leaves the archive without being destroyed.
 * Its file moves to DATA/quarantine/ (kept for inspection or repair) and its catalog row goes,
 * so no later query trips on it; one log line says which block, where it went and why. */
#ifndef TV_QUARANTINE_H
#define TV_QUARANTINE_H

#include <stddef.h>
#include <stdint.h>

#include "server/catalog.h"
#include "server/store_uring.h"

/* Quarantine block_id of segment_id for reason (one line, logged). The file is renamed first
 * and the row deleted after, so a crash in between leaves a catalog row without a file, which
 * start-up recovery drops, and never a block file without a row. A block file already gone
 * (-ENOENT: quarantined or deleted meanwhile) leaves the catalog as it is. A query still
 * reading the block through an open descriptor is not disturbed. Returns 0 or a negative errno
 * with a reason in err (always set then). */
int tv_quarantine_block(struct tv_store *store, struct tv_catalog *catalog, uint64_t segment_id,
			uint64_t block_id, const char *reason, char *err, size_t errlen);

#endif
