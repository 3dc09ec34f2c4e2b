/* Block file storage under the data dir, driven by io_uring: temp files per in-flight block,
 * vectored writes from received slices, grouped fdatasync, rename into blocks/ on commit. */
#ifndef TV_STORE_URING_H
#define TV_STORE_URING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "proto/wire.h"

/* Largest block the server accepts; a bigger OPEN_BLOCK is RESOURCE_EXHAUSTED. */
#define TV_SERVER_MAX_BLOCK_BYTES TV_WIRE_MAX_BLOCK_BYTES

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

/* Create tmp/<segment hex>-<block hex>.tmp with O_CREAT|O_EXCL, mode 0600. */
int tv_store_create_temp(struct tv_store *s, uint64_t segment_id, uint64_t block_id,
			 struct tv_store_file **out);
/* Queue a writev of iov[0..n) at offset (n may exceed IOV_MAX: it is written in rounds).
 * Short writes are continued; a write that makes no progress is -ENOSPC. The file stays open
 * until op completes even if tv_store_abort runs first. Returns 0 or a negative errno (then
 * done will not run). */
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
 * serve the tests: the server writes and syncs with the asynchronous calls above (its group
 * commit, in segment.c, has one fdatasync per block in flight at once). Publish, the directory
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

/* Open blocks/<block hex>.tvb for reading without following a symlink: *fd (the caller
 * closes it) and its *size in bytes. The file stays readable through *fd when it is renamed
 * (quarantined) or unlinked (deleted) meanwhile. Returns 0, -ENOENT, -ELOOP (a symlink),
 * -EMEDIUMTYPE (not a regular file: a directory, FIFO or device), or another negative errno. */
int tv_store_open_block(struct tv_store *s, uint64_t block_id, int *fd, uint64_t *size);
/* How many names tv_store_quarantine_block tries: <hex>.tvb, then <hex>.1.tvb ... */
#define TV_STORE_QUARANTINE_NAMES 100
/* Move blocks/<block hex>.tvb (whatever it is: a symlink is moved, not followed) to
 * quarantine/ in the data dir (created 0700), never replacing a file there, make a regular
 * file 0600, and fsync both directories. moved_to gets the new name relative to the data dir
 * ("quarantine/<hex>.tvb"). Returns 0, -ENOENT (no such block file), -EEXIST (every name
 * taken), or another negative errno. */
int tv_store_quarantine_block(struct tv_store *s, uint64_t block_id, char *moved_to,
			      size_t moved_len);

/* Recovery: unlink every entry of tmp/; returns the count removed or a negative errno. */
int tv_store_clear_temp(struct tv_store *s);
/* Call cb for each blocks/<16 hex>.tvb file with its id; other names are reported through
 * cb with valid == 0 so the caller can log them. Stops early when cb returns non-zero. */
typedef int (*tv_store_block_cb)(uint64_t block_id, int valid, const char *name, void *arg);
int tv_store_list_blocks(struct tv_store *s, tv_store_block_cb cb, void *arg);

#endif
