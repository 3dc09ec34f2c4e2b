/* Block file storage under the data dir, driven by io_uring: temp files per in-flight block,
 * vectored writes from received slices, grouped fdatasync, rename into blocks/ on commit. */
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
};

/* One temp block file being written. Owned by the caller until tv_store_publish (which closes
 * it) or tv_store_abort (which closes, unlinks and frees it). */
struct tv_store_file;

/* Open the store in data_dir: creates data_dir/blocks and data_dir/tmp (0700) and the ring.
 * Returns 0 or a negative errno with a reason in err. */
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
/* Queue a writev of iov[0..n) at offset (n may exceed IOV_MAX: it is written in rounds).
 * Short writes are continued; a write that makes no progress is -ENOSPC. The file stays open
 * until op completes even if tv_store_abort runs first. Returns 0 or a negative errno (then
 * done will not run; -EBADF after tv_store_close_fd). */
int tv_store_submit_writev(struct tv_store *s, struct tv_store_file *f, uint64_t offset,
			   struct iovec *iov, int n, struct tv_store_op *op);
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
/* Rename each file to blocks/<block hex>.tvb (never replacing an existing one: -EEXIST), then
 * fsync blocks/ and tmp/ so the names are durable. Files are closed and freed on success; on
 * failure the ones already renamed are moved back into tmp/ (unlinked if that fails) and all
 * are still owned by the caller (tv_store_abort them). */
int tv_store_publish(struct tv_store *s, struct tv_store_file *const *files, size_t n);
/* Unlink a temp file now; close and free it once no operation on it is in flight.
 * NULL is a no-op. */
void tv_store_abort(struct tv_store *s, struct tv_store_file *f);

/* Remove blocks/<block hex>.tvb; -ENOENT when absent. */
int tv_store_remove_block(struct tv_store *s, uint64_t block_id);
/* fsync blocks/ after removals. */
int tv_store_sync_blocks_dir(struct tv_store *s);
/* Read a whole committed block file into a malloc'd buffer (*buf owned by the caller).
 * Returns 0, -ENOENT, -EFBIG (larger than max_bytes) or another negative errno. */
int tv_store_read_block(struct tv_store *s, uint64_t block_id, size_t max_bytes, void **buf,
			size_t *len);

/* Recovery: unlink every entry of tmp/; returns the count removed or a negative errno. */
int tv_store_clear_temp(struct tv_store *s);
/* Call cb for each blocks/<16 hex>.tvb file with its id; other names are reported through
 * cb with valid == 0 so the caller can log them. Stops early when cb returns non-zero. */
typedef int (*tv_store_block_cb)(uint64_t block_id, int valid, const char *name, void *arg);
int tv_store_list_blocks(struct tv_store *s, tv_store_block_cb cb, void *arg);

#endif
