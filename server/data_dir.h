/* The data dir as a whole, before the store and the catalog open anything in it: is it one
 * (refuse a directory that is not, e.g. someone's home), one owner (the lock), permissions
 * enforced on everything already there (0700 dirs, 0600 files, owned by us), and the FORMAT
 * marker. The layout and each rule are in server/RECOVERY.md. */
#ifndef TV_SERVER_DATA_DIR_H
#define TV_SERVER_DATA_DIR_H

#include <stddef.h>

/* DIR/FORMAT holds exactly this line: written when a data dir is created, or adopted (an
 * existing dir with our layout and no marker). Version 1: block files are named
 * <segment hex>-<block hex>.tvb (server/store_uring.h). */
#define TV_DATA_FORMAT_FILE "FORMAT"
#define TV_DATA_FORMAT_VERSION 1
#define TV_DATA_FORMAT_PREFIX "tracevault-data "
/* DIR/lock: held with flock by the one tracevaultd that owns DIR; its pid inside. */
#define TV_DATA_LOCK_FILE "lock"
/* At most this many permission fixes are logged one by one; the summary counts them all. */
#define TV_DATA_PERM_LOG_LINES 20

struct tv_data_dir {
	int dir_fd;         /* DIR, open while the server runs */
	int lock_fd;        /* DIR/lock, flock'ed until exit */
	int is_new;         /* DIR did not exist or was empty */
	int has_format;     /* DIR/FORMAT says TV_DATA_FORMAT_VERSION */
	int blocks_present; /* DIR/blocks existed (as a directory) before the store opened */
};

/* Make DIR ours, in this order, nothing read or changed in it before its step:
 *  1. create DIR (0700) when absent; refuse one that is not a directory, is a symlink itself,
 *     is not owned by our euid, or is group- or world-writable;
 *  2. look at it without changing anything: FORMAT with our line is ours; FORMAT with another
 *     version or other text is refused; without FORMAT (or with an empty one, a crash while it
 *     was written) DIR must be empty or hold only names of our layout (blocks, tmp,
 *     quarantine, catalog.db and its -wal/-shm/-journal, lock; and lost+found, which the root
 *     of a mounted file system has), and a blocks/ with entries but no block file name and no
 *     catalog.db is refused;
 *  3. take the lock (DIR/lock, 0600) or refuse naming the owner's pid;
 *  4. refuse a symlink or non-directory where blocks/, tmp/ or quarantine/ should be, or one
 *     group- or world-writable;
 *  5. permissions: every entry of our layout and everything directly in blocks/, tmp/ and
 *     quarantine/ (symlinks aside) must be owned by our euid, else refuse naming the first
 *     and the count; then modes are set to 0700 (dirs) and 0600 (files), each fix logged.
 * Returns 0, or -1 with a one-line reason in err (the caller exits 1). d->dir_fd and
 * d->lock_fd stay open until exit. */
int tv_data_dir_open(struct tv_data_dir *d, const char *dir, char *err, size_t errlen);

/* Write DIR/FORMAT (0600, fsynced with DIR) when it is absent; logs the adoption of a dir that
 * had data and no marker. Called once recovery succeeded. Returns 0 or -1 with err set. */
int tv_data_dir_mark(struct tv_data_dir *d, const char *dir, char *err, size_t errlen);

#endif
