/* Block file storage under the data dir, driven by io_uring: temp files per in-flight block,
 * vectored writes from received slices, grouped fdatasync, rename into blocks/ on commit; and the
 * one place that knows the names of block files, temp files and quarantined files:
 *
 *   blocks/<segment hex>-<block hex>.tvb   a committed block: 16 lowercase hex digits each, so
 *                                          the segment id is as durable as the block bytes and
 *                                          a lost catalog can be rebuilt from blocks/ alone
 *   blocks/<block hex>.tvb                 a block stored before the data dir's FORMAT 1 (no
 *                                          segment in the name): recovery renames it
 *   tmp/<segment hex>-<block hex>.tmp      a block being written (never committed data)
 *   quarantine/<name>[.N]                  a file moved out of the way, never deleted, beside
 *   quarantine/<name>[.N].reason           a text file saying why, from where and when
 *
 * server/RECOVERY.md says what start-up does with each. */
#ifndef TV_STORE_URING_H
#define TV_STORE_URING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/limit.h"
#include "proto/wire.h"

/* Largest block the server accepts; a bigger OPEN_BLOCK is RESOURCE_EXHAUSTED. */
#define TV_SERVER_MAX_BLOCK_BYTES TV_WIRE_MAX_BLOCK_BYTES
/* Temp block files open at once, over every stream (tracevaultd --max-open-files): each holds
 * a descriptor from OPEN_BLOCK until its data is synced. The bound: 1 to the kernel's default
 * ceiling of descriptors per process (fs.nr_open); what RLIMIT_NOFILE allows is decided at
 * start-up (server/fd_plan.h). A create beyond the budget is -EMFILE, before any open. */
#define TV_STORE_MAX_OPEN_FILES_MAX 1048576u
extern const struct tv_limit tv_store_max_files_limit;

/* The store's directories in the data dir (each 0700). */
#define TV_STORE_BLOCKS_DIR "blocks"
#define TV_STORE_TMP_DIR "tmp"
#define TV_STORE_QUARANTINE_DIR "quarantine"
/* Bytes of the longest name the store gives a block or temp file, with its NUL. */
#define TV_STORE_NAME_BYTES 40
/* A quarantined name that is taken gets a suffix .1, .2, ... up to this; beyond it the move
 * fails with -EEXIST (the file stays where it was). */
#define TV_STORE_QUARANTINE_MAX_SUFFIX 999

struct tv_store;
struct tv_store_file;

/* One asynchronous store operation (a vectored write or an fdatasync). The caller owns the
 * memory (usually embedded in a bigger struct, found again with container_of) and sets done;
 * the store owns everything else until done runs. done runs exactly once, from tv_store_reap,
 * never from inside the submit call, with res 0 or a negative errno (-ENOSPC, -EFBIG, -EIO).
 * A write's iovec array is advanced in place on short writes, so it must stay valid and
 * untouched until done. */
struct tv_store_op {
	void (*done)(struct tv_store_op *op, int res);
	/* private to the store */
	struct tv_store_file *file;
	struct iovec *iov;
	int iovcnt, kind, res;
	uint64_t offset;
	size_t left;
	struct tv_store_op *next; /* reaped while a synchronous call waited: dispatched later */
	int poll_fd;              /* tv_store_submit_poll's */
};

/* One temp block file being written. Owned by the caller until tv_store_publish (which closes
 * it) or tv_store_abort (which closes, unlinks and frees it). */
struct tv_store_file;

/* Open the store in data_dir: creates data_dir/blocks and data_dir/tmp (0700) when absent, and
 * the ring (quarantine/ is made when something is first moved there). Returns 0 or a negative
 * errno with a reason in err. */
int tv_store_open(struct tv_store **out, const char *data_dir, char *err, size_t errlen);
void tv_store_close(struct tv_store *s);

/* Set the budget of temp files open at once (tv_store_max_files_limit; 0 or -ERANGE). Until
 * it is set there is none: the unit tests and tools that open a store alone need none. */
int tv_store_set_max_files(struct tv_store *s, size_t max_files);
/* The budget (0: none), and the temp files holding a descriptor now. */
size_t tv_store_max_files(const struct tv_store *s);
size_t tv_store_open_files(const struct tv_store *s);

/* Create tmp/<segment hex>-<block hex>.tmp with O_CREAT|O_EXCL, mode 0600. Returns 0, -EMFILE
 * when the budget is used up (nothing was created), or the errno of openat (-EEXIST...). */
int tv_store_create_temp(struct tv_store *s, uint64_t segment_id, uint64_t block_id,
			 struct tv_store_file **out);
/* Close the descriptor of a temp file whose writes and fdatasync are done, so that a file
 * waiting for its segment's COMMIT holds no descriptor; its slot in the budget is free at
 * once. The file stays the caller's, for tv_store_publish (by name) or tv_store_abort; no
 * write or sync may be submitted on it any more (-EBADF). Closing after the sync, on the
 * descriptor that wrote, keeps every writeback error reported: a file closed before its
 * fdatasync could lose one (the inode, and its error, may be evicted before a new open). */
void tv_store_close_fd(struct tv_store *s, struct tv_store_file *f);
/* Read len bytes at offset of a temp file (written, synced, not yet published: COMMIT reads
 * a block's trace-id filter back from it, from the page cache, for the catalog) into buf (len
 * bytes), through a descriptor of its own opened read-only and closed here, so the file's
 * descriptor state does not matter. Returns 0, -ENODATA when the file ends before
 * offset + len, or the errno of openat/pread. */
int tv_store_pread_temp(struct tv_store *s, const struct tv_store_file *f, uint64_t offset,
			void *buf, size_t len);
/* Queue a writev of iov[0..n) at offset (n may exceed IOV_MAX: it is written in rounds).
 * Short writes are continued; a write that makes no progress is -ENOSPC. The file stays open
 * until op completes even if tv_store_abort runs first. Returns 0 or a negative errno (then
 * done will not run; -EBADF after tv_store_close_fd). */
int tv_store_submit_writev(struct tv_store *s, struct tv_store_file *f, uint64_t offset,
			   struct iovec *iov, int n, struct tv_store_op *op);
/* Queue a one-shot poll for POLLIN on fd (not the store's: the under-store's eventfd, so that
 * its worker's results wake the loop where it waits, in tv_store_reap). done gets 0 or a
 * negative errno; the op counts in tv_store_inflight until then. */
int tv_store_submit_poll(struct tv_store *s, int fd, struct tv_store_op *op);
/* The store's tmp/ (owned by the store) and a temp file's name in it: the under-store's
 * worker opens a synced temp file read-only by this name to copy it to S3. */
int tv_store_tmp_dir_fd(const struct tv_store *s);
const char *tv_store_temp_name(const struct tv_store_file *f);
/* Queue an fdatasync of f (IORING_FSYNC_DATASYNC). Same contract as tv_store_submit_writev. */
int tv_store_submit_fdatasync(struct tv_store *s, struct tv_store_file *f,
			      struct tv_store_op *op);
/* Run done for every completed operation. With wait_us > 0 and nothing ready, wait up to
 * wait_us for one completion first. Returns the number of ops completed. */
int tv_store_reap(struct tv_store *s, long wait_us);
/* Operations submitted whose done has not run yet. */
size_t tv_store_inflight(const struct tv_store *s);

/* Synchronous helpers: they wait only for their own completion; completions of asynchronous
 * ops seen meanwhile are kept for the next tv_store_reap. tv_store_writev and tv_store_sync
 * serve the tests: the server writes and syncs with the asynchronous calls above (segment.c
 * syncs each block as soon as its last write is done, overlapping the next block's writes). Publish, the directory
 * fsyncs, removal and recovery are synchronous in the server too. */
/* Write the n iovecs at offset with io_uring writev, resubmitting after short writes.
 * Returns 0 or a negative errno (-ENOSPC, -EFBIG, -EIO...). The iovecs are not modified. */
int tv_store_writev(struct tv_store *s, struct tv_store_file *f, uint64_t offset,
		    const struct iovec *iov, int n);
/* fdatasync the n files one after the other (IORING_FSYNC_DATASYNC), each submitted and waited
 * for on its own; a failure does not stop the others. Returns 0 or the first negative errno. */
int tv_store_sync(struct tv_store *s, struct tv_store_file *const *files, size_t n);
/* Rename each file to blocks/<segment hex>-<block hex>.tvb (never replacing an existing one:
 * -EEXIST), then fsync blocks/ and tmp/ so the names are durable. Files are closed and freed on
 * success; on failure the ones already renamed are moved back into tmp/ (unlinked if that
 * fails) and all are still owned by the caller (tv_store_abort them). The caller commits the
 * catalog rows first: blocks/ holds only committed blocks (server/RECOVERY.md). */
int tv_store_publish(struct tv_store *s, struct tv_store_file *const *files, size_t n);
/* tv_store_publish in steps, for a group commit of several segments with one directory sync:
 * tv_store_rename_in renames files[0..n) into blocks/ (RENAME_NOREPLACE); on failure (negative
 * errno, -EEXIST for a name already there) the ones it renamed are moved back and the files
 * stay the caller's. tv_store_sync_dirs fsyncs blocks/ then tmp/ (synchronous; negative errno
 * of the first failure: the caller must not retry it, a second fsync may report success for
 * entries the first one lost). tv_store_rename_back undoes a tv_store_rename_in of files[0..n)
 * (after a failed sync). tv_store_release_published closes and frees files[0..n) once their
 * directory entries are durable. */
int tv_store_rename_in(struct tv_store *s, struct tv_store_file *const *files, size_t n);
int tv_store_sync_dirs(struct tv_store *s);
void tv_store_rename_back(struct tv_store *s, struct tv_store_file *const *files, size_t n);
void tv_store_release_published(struct tv_store *s, struct tv_store_file *const *files, size_t n);
/* Unlink a temp file now; close and free it once no operation on it is in flight.
 * NULL is a no-op. */
void tv_store_abort(struct tv_store *s, struct tv_store_file *f);

/* Remove blocks/<segment hex>-<block hex>.tvb; -ENOENT when absent. */
int tv_store_remove_block(struct tv_store *s, uint64_t segment_id, uint64_t block_id);
/* fsync blocks/ after removals. */
int tv_store_sync_blocks_dir(struct tv_store *s);
/* How many fsyncs of blocks/ have succeeded so far (any of the calls above that sync it): an
 * unlink done before the count moved past N is durable once it exceeds N (retention waits
 * for a commit group's sync instead of paying one of its own). *failed is 1 once one failed
 * (a later success then proves nothing about earlier entries: the caller must not rely on
 * it). */
uint64_t tv_store_blocks_syncs(const struct tv_store *s, int *failed);
/* Read a whole committed block file into a malloc'd buffer (*buf owned by the caller). A name
 * that is not a regular file (a symlink is not followed) is -ELOOP or -EINVAL. Returns 0,
 * -ENOENT, -EFBIG (larger than max_bytes) or another negative errno. */
int tv_store_read_block(struct tv_store *s, uint64_t segment_id, uint64_t block_id,
			size_t max_bytes, void **buf, size_t *len);
/* The file name of a committed block, "<segment hex>-<block hex>.tvb", into name (at least
 * TV_STORE_NAME_BYTES bytes): for messages and tv_store_quarantine. */
void tv_store_block_name(uint64_t segment_id, uint64_t block_id, char *name, size_t len);

/* Open the file of committed block (segment_id, block_id) for reading without following a
 * symlink: *fd (the caller closes it) and its *size in bytes. The file stays readable through *fd when it is renamed
 * (quarantined) or unlinked (deleted) meanwhile. Returns 0, -ENOENT, -ELOOP (a symlink),
 * -EMEDIUMTYPE (not a regular file: a directory, FIFO or device), or another negative errno. */
int tv_store_open_block(struct tv_store *s, uint64_t segment_id, uint64_t block_id, int *fd,
			uint64_t *size);

/* ---- recovery (server/recovery.c, synchronous) ---- */

/* What a name in blocks/ or tmp/ is, by the rules at the top of this file. */
enum tv_store_name_kind {
	TV_STORE_BLOCK,    /* blocks/<segment>-<block>.tvb */
	TV_STORE_LEGACY,   /* blocks/<block>.tvb: segment_id is 0 (unknown) */
	TV_STORE_TEMP,     /* tmp/<segment>-<block>.tmp */
	TV_STORE_FOREIGN,  /* any other name: not ours */
};

struct tv_store_entry {
	const char *name;  /* relative to its directory; valid during the callback only */
	enum tv_store_name_kind kind;
	uint64_t segment_id, block_id; /* from the name (0 when the name does not carry it) */
	int regular;       /* 1 for a regular file; 0 for a directory, symlink, fifo, ... */
};
/* What name in blocks/ is (TV_STORE_BLOCK, TV_STORE_LEGACY or TV_STORE_FOREIGN), for a check
 * that does not open the store (is a directory ours?); *block_id gets its id. */
enum tv_store_name_kind tv_store_block_name_kind(const char *name, uint64_t *block_id);
/* Called once per entry; a non-zero return stops the walk and is returned. */
typedef int (*tv_store_entry_cb)(const struct tv_store_entry *e, void *arg);
/* Every entry of blocks/ (tv_store_list_blocks) or tmp/ (tv_store_list_temp) but "." and "..",
 * in directory order. The callback must not add or remove entries of that directory. */
int tv_store_list_blocks(struct tv_store *s, tv_store_entry_cb cb, void *arg);
int tv_store_list_temp(struct tv_store *s, tv_store_entry_cb cb, void *arg);
/* Read blocks/<name> (a name from tv_store_list_blocks) like tv_store_read_block; *mtime_ns
 * gets its modification time (the commit time of a block file: it is never written after). */
int tv_store_read_named(struct tv_store *s, const char *name, size_t max_bytes, void **buf,
			size_t *len, int64_t *mtime_ns);
/* Same for tmp/<name>. */
int tv_store_read_temp(struct tv_store *s, const char *name, size_t max_bytes, void **buf,
		       size_t *len);
/* Rename blocks/<name> to the name of block (segment_id, block_id) without replacing one
 * (-EEXIST): a legacy name gets its segment. Not synced: tv_store_sync_blocks_dir after. */
int tv_store_rename_block(struct tv_store *s, const char *name, uint64_t segment_id,
			  uint64_t block_id);
/* Finish a publish a crash interrupted after the catalog commit: tmp/<segment>-<block>.tmp to
 * blocks/<segment>-<block>.tvb, without replacing (-EEXIST). Not synced. */
int tv_store_publish_temp(struct tv_store *s, uint64_t segment_id, uint64_t block_id);
/* Unlink tmp/<name> (uncommitted data). Not synced: tv_store_sync_temp_dir after. */
int tv_store_remove_temp(struct tv_store *s, const char *name);
int tv_store_sync_temp_dir(struct tv_store *s);

/* ---- quarantine ---- */

/* Where a file to quarantine is: the data dir itself (catalog.db and its companions) or one of
 * the store's directories. */
enum tv_store_area { TV_STORE_AREA_DATA, TV_STORE_AREA_BLOCKS, TV_STORE_AREA_TMP };

/* The prefix of area's files relative to the data dir, for messages: "blocks/", "tmp/", or ""
 * for the data dir itself. A static string. */
const char *tv_store_area_dir(enum tv_store_area area);

/* Move area/name into quarantine/ (created 0700 when absent) under the same name, or name.N
 * when that is taken, and write quarantine/<that>.reason (0600): reason, the original path and
 * the time. Nothing is ever deleted; a directory or symlink moves as it is (not followed).
 * Both directories are fsynced. The quarantined name goes into qname (qlen bytes, may be NULL).
 * Returns 0, -ENOENT when area/name does not exist, -EEXIST when every suffix is taken, or
 * another negative errno (the file then stays where it was). */
int tv_store_quarantine(struct tv_store *s, enum tv_store_area area, const char *name,
			const char *reason, char *qname, size_t qlen);
/* The count of files tv_store_quarantine moved from blocks/ so far (this process), for the
 * metrics endpoint: read it with tv_metric_get (common/metrics.h) from any thread. */
const uint64_t *tv_store_quarantined_blocks(const struct tv_store *s);
/* The data dir's O_DIRECTORY descriptor (owned by the store, open until tv_store_close). */
int tv_store_dir_fd(const struct tv_store *s);
/* Re-caching a block read back from the under-store (server/evict.h): give the anonymous
 * file fd (O_TMPFILE, made in tmp/ so on blocks/'s file system; its data already fdatasync'd
 * by the caller) the name of committed block (segment_id, block_id) in blocks/ (linkat through
 * /proc/self/fd), then fsync blocks/. 0, -EEXIST when the name is taken, or a negative errno
 * (nothing linked, or linked but not yet durable: the caller must not rely on it). */
int tv_store_link_block(struct tv_store *s, uint64_t segment_id, uint64_t block_id, int fd);

#endif
