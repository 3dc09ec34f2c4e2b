/* Moving what cannot be served out of the way (see quarantine.h): the store does the move and
 * writes the reason file; this module keeps the catalog in step and logs. */
#include "server/quarantine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tv_quarantine_file(struct tv_store *s, enum tv_store_area area, const char *name,
		       const char *reason)
{
	char qname[TV_STORE_NAME_BYTES + 300];
	int ret = tv_store_quarantine(s, area, name, reason, qname, sizeof(qname));

	if (ret == -ENOENT)
		return ret; /* nothing to move: the caller decides whether that matters */
	if (ret)
		fprintf(stderr, "quarantine: cannot move %s%s into %s/ (%s): %s\n",
			tv_store_area_dir(area), name, TV_STORE_QUARANTINE_DIR, strerror(-ret),
			reason);
	else
		fprintf(stderr, "quarantine: %s%s -> %s/%s: %s\n", tv_store_area_dir(area), name,
			TV_STORE_QUARANTINE_DIR, qname, reason);
	return ret;
}

int tv_quarantine_block(struct tv_store *s, struct tv_catalog *c, uint64_t segment_id,
			uint64_t block_id, const char *reason)
{
	char name[TV_STORE_NAME_BYTES];
	uint64_t *ids = NULL;
	size_t n = 0;
	int ret;

	tv_store_block_name(segment_id, block_id, name, sizeof(name));
	ret = tv_quarantine_file(s, TV_STORE_AREA_BLOCKS, name, reason);
	if (ret && ret != -ENOENT)
		return ret;
	ret = tv_catalog_delete_ids(c, &block_id, 1, &ids, &n);
	free(ids);
	if (ret)
		fprintf(stderr, "quarantine: cannot delete the catalog row of block %016llx: %s "
			"(the next start drops it)\n", (unsigned long long)block_id, strerror(-ret));
	return ret;
}
