/* server/quarantine.h: move a damaged block out of blocks/ and out of the catalog. */
#include "server/quarantine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tv_quarantine_block(struct tv_store *store, struct tv_catalog *catalog, uint64_t segment_id,
			uint64_t block_id, const char *reason, char *err, size_t errlen)
{
	char moved_to[64];
	uint64_t *ids = NULL;
	size_t n = 0;
	int ret;

	ret = tv_store_quarantine_block(store, block_id, moved_to, sizeof(moved_to));
	if (ret) {
		snprintf(err, errlen, "cannot move block %016llx to quarantine/: %s",
			 (unsigned long long)block_id, strerror(-ret));
		return ret;
	}
	ret = tv_catalog_delete_ids(catalog, &block_id, 1, &ids, &n);
	free(ids);
	if (ret) {
		snprintf(err, errlen, "block %016llx moved to %s but its catalog row stays: %s",
			 (unsigned long long)block_id, moved_to, strerror(-ret));
		fprintf(stderr, "quarantine: %s\n", err);
		return ret;
	}
	fprintf(stderr, "quarantine: block %016llx of segment %016llx moved to %s: %s\n",
		(unsigned long long)block_id, (unsigned long long)segment_id, moved_to, reason);
	return 0;
}
