/* Start-up recovery: before tracevaultd serves, bring the catalog, blocks/ and tmp/ into
 * agreement so that every block file that verifies is listed, everything listed has its file,
 * and nothing is deleted that could be data. The block files are the truth and the catalog an
 * index of them: a catalog that is new (lost, or moved aside as damaged) is rebuilt here from
 * the block files. The rules, case by case, are in server/RECOVERY.md. */
#ifndef TV_SERVER_RECOVERY_H
#define TV_SERVER_RECOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "server/catalog.h"
#include "server/store_uring.h"

/* At most this many lines per kind of event (adopted, quarantined, dropped...) go to the log;
 * the summary line counts them all. */
#define TV_RECOVERY_LOG_LINES 20

struct tv_recovery_report {
	uint64_t blocks;        /* catalog rows once recovery is done */
	uint64_t listed;        /* block files found listed by the catalog */
	uint64_t adopted;       /* block files the catalog did not list: verified and added */
	uint64_t renamed;       /* blocks/<block>.tvb names given their segment */
	uint64_t repaired;      /* rows whose segment id was taken from the file's name */
	uint64_t quarantined;   /* files moved into quarantine/ */
	uint64_t dropped_rows;  /* rows whose block file is missing */
	uint64_t evicted;       /* rows without a file whose segment is evicted: kept */
	uint64_t temp_removed;  /* uncommitted temp files unlinked */
	uint64_t temp_finished; /* commits a crash interrupted after the catalog commit */
	uint64_t retired;       /* segments with a retiring row (retention.h) finished */
	uint64_t retired_files; /* their block and temp files unlinked then */
	uint64_t elapsed_ns;
};

/* Run recovery (synchronous; before the server starts, with the data dir locked):
 *   retiring segments  (a retention pass or segment Delete a crash interrupted after its
 *            commit point) first: their files in blocks/ and tmp/ are unlinked, so no part
 *            of such a segment is matched or adopted below (tv_retention_recover)
 *   tmp/     a temp file whose block has a catalog row of its segment was committed and not
 *            yet renamed: it is checked and moved into blocks/; any other temp file is
 *            uncommitted and unlinked; what is not a temp file we write is quarantined
 *   blocks/  rows and files are matched by block id: a listed file is not read (start-up stays
 *            O(entries), not O(bytes)); a file the catalog does not list is read and checked
 *            (verify.h, bytes) and adopted into the catalog, or quarantined with the reason;
 *            a row without a file is dropped; a name that is not a block's is quarantined
 * Logs each event (capped, TV_RECOVERY_LOG_LINES) and one summary line, and fills *rep.
 * Returns 0, or a negative errno with a reason in err when the store or catalog failed (the
 * caller refuses to start: nothing was deleted). */
int tv_recover(struct tv_catalog *c, struct tv_store *s, struct tv_recovery_report *rep,
	       char *err, size_t errlen);

/* Open the catalog at path (DATA/catalog.db) for recovery. When tv_catalog_open finds it
 * unusable (-EUCLEAN: not a database, another program's, damaged...), or when rebuild is set
 * (--rebuild-catalog), catalog.db and its -wal, -shm and -journal are moved into quarantine/
 * with the reason (logged) and a new, empty catalog is opened, which tv_recover then fills
 * from blocks/. Returns 0, or a negative errno with a reason in err (the file may be fine but
 * unreadable now, -EIO, -EBUSY...: it is left as it is, and the caller refuses to start). */
int tv_recovery_open_catalog(struct tv_catalog **out, struct tv_store *s, const char *path,
			     int rebuild, char *err, size_t errlen);

/* Before the store opens (it would create DATA/blocks): when blocks/ is missing from a data
 * dir that is not new, and the catalog at path lists blocks, -ENOENT with a reason in err (the
 * caller refuses to start: the block files may be on a disk not mounted, or moved by hand;
 * starting would drop every row). 0 otherwise, also when the catalog cannot be opened (it is
 * then dealt with by tv_recovery_open_catalog). */
int tv_recovery_check_blocks_dir(const char *data_dir, const char *path, char *err,
				 size_t errlen);

#endif
