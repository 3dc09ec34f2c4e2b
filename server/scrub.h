/* tracevaultd --scrub: read every committed block completely and check it against BLOCK.md and
 * its catalog row; quarantine what fails (server/quarantine.h), repair a row that disagrees with
 * a block that verifies, and report. The same checks a query makes, done ahead of time. */
#ifndef TV_SERVER_SCRUB_H
#define TV_SERVER_SCRUB_H

#include <stdint.h>

#include "server/catalog.h"
#include "server/store_uring.h"

struct tv_scrub_report {
	uint64_t blocks;      /* rows checked */
	uint64_t bytes;       /* block bytes read */
	uint64_t damaged;     /* blocks that failed their checks: quarantined */
	uint64_t missing;     /* rows whose file was gone: dropped */
	uint64_t repaired;    /* rows rewritten from a block that verifies */
	uint64_t elapsed_ns;
};

/* Check every block the catalog lists, one at a time (memory: one block and its decompressed
 * payload, verify.h). Logs each finding and a summary line `scrub: N blocks, B bytes verified
 * in T s: D damaged (quarantined), M missing, R rows repaired`. Returns 0 whatever it found (see
 * *rep), or a negative errno with a reason in err when the catalog failed. */
int tv_scrub(struct tv_catalog *c, struct tv_store *s, struct tv_scrub_report *rep, char *err,
	     size_t errlen);

#endif
