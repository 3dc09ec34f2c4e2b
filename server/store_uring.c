/* io_uring block storage: the server's only writer of data files. Chunks go to a temp file per
 * block (writev straight from received buffers); each block is fdatasynced once written (one
 * SQE, the segment's syncs overlapping its later writes) and its descriptor closed; a commit
 * renames into blocks/ and fsyncs the directories. */
#define _GNU_SOURCE /* renameat2, IOV_MAX */
#include "server/store_uring.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "common/metrics.h"

/* SQ entries: every op is submitted at once, so this bounds nothing but a burst of prepares;
 * the kernel keeps CQEs beyond the CQ ring (IORING_FEAT_NODROP). */
#define RING_ENTRIES 256
#define TEMP_NAME_MAX TV_STORE_NAME_BYTES
#define ID_HEX_DIGITS 16
/* "<16 hex>-<16 hex>.tvb" and "<16 hex>.tvb" */
#define BLOCK_NAME_LEN (2 * ID_HEX_DIGITS + 5)
#define LEGACY_NAME_LEN (ID_HEX_DIGITS + 4)
_Static_assert(BLOCK_NAME_LEN + 1 <= TV_STORE_NAME_BYTES, "TV_STORE_NAME_BYTES too small");

enum { OP_WRITEV = 1, OP_FDATASYNC, OP_FSYNC_DIR, OP_POLL };

const struct tv_limit tv_store_max_files_limit = { .min = 1, .max = TV_STORE_MAX_OPEN_FILES_MAX };

struct tv_store {
	struct io_uring ring;
	size_t inflight;           /* ops submitted, done not yet run */
	size_t open_files;         /* temp files holding a descriptor */
	size_t max_files;          /* budget of open_files; 0: none set */
	struct tv_store_op *parked; /* complete, done not yet run (see wait_op) */
	int dir_fd; /* O_DIRECTORY fds: names are resolved relative to them (openat/renameat) */
	int blocks_fd;
	int tmp_fd;
	int quarantine_fd; /* -1 until the first tv_store_quarantine */
	uint64_t blocks_syncs;  /* fsyncs of blocks/ that succeeded (tv_store_blocks_syncs) */
	int blocks_sync_failed; /* one failed: later ones prove nothing about earlier entries */
	uint64_t quarantined_blocks; /* files moved from blocks/ (tv_store_quarantined_blocks) */
};

struct tv_store_file {
	int fd;        /* -1 once closed (tv_store_close_fd) */
	int inflight;  /* ops on fd not yet complete */
	int abandoned; /* unlinked by tv_store_abort: close and free at inflight 0 */
	uint64_t segment_id, block_id;
	char name[TEMP_NAME_MAX]; /* relative to tmp/ */
};

void tv_store_block_name(uint64_t segment_id, uint64_t block_id, char *name, size_t len)
{
	snprintf(name, len, "%016" PRIx64 "-%016" PRIx64 ".tvb", segment_id, block_id);
}

static void temp_name(uint64_t segment_id, uint64_t block_id, char *name, size_t len)
{
	snprintf(name, len, "%016" PRIx64 "-%016" PRIx64 ".tmp", segment_id, block_id);
}

/* DIR/name, created 0700 when absent; never through a symlink (data_dir.c refused one there,
 * and one put there since makes this fail with ELOOP instead of being followed). */
static int open_subdir(int parent_fd, const char *name, int *out)
{
	int fd;

	if (mkdirat(parent_fd, name, 0700) && errno != EEXIST)
		return -errno;
	fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0700)) {
		int err = -errno;

		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

int tv_store_open(struct tv_store **out, const char *data_dir, char *err, size_t errlen)
{
	struct tv_store *s;
	int dir_fd, ret;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory opening the store in %s", data_dir);
		return -ENOMEM;
	}
	s->dir_fd = s->blocks_fd = s->tmp_fd = s->quarantine_fd = -1;
	dir_fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open data dir %s: %s", data_dir, strerror(-ret));
		goto fail;
	}
	s->dir_fd = dir_fd;
	ret = open_subdir(dir_fd, TV_STORE_BLOCKS_DIR, &s->blocks_fd);
	if (!ret)
		ret = open_subdir(dir_fd, TV_STORE_TMP_DIR, &s->tmp_fd);
	if (ret) {
		snprintf(err, errlen, "cannot create %s/blocks or %s/tmp: %s", data_dir, data_dir,
			 strerror(-ret));
		goto fail;
	}
	ret = io_uring_queue_init(RING_ENTRIES, &s->ring, 0);
	if (ret) {
		snprintf(err, errlen, "io_uring_queue_init: %s", strerror(-ret));
		s->ring.ring_fd = -1;
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->dir_fd >= 0)
		close(s->dir_fd);
	if (s->blocks_fd >= 0)
		close(s->blocks_fd);
	if (s->tmp_fd >= 0)
		close(s->tmp_fd);
	if (s->dir_fd >= 0)
		close(s->dir_fd);
	free(s);
	return ret;
}

void tv_store_close(struct tv_store *s)
{
	if (!s)
		return;
	while (s->inflight || s->parked) /* ops of streams already gone: let them finish */
		tv_store_reap(s, 100000);
	io_uring_queue_exit(&s->ring);
	close(s->dir_fd);
	close(s->blocks_fd);
	close(s->tmp_fd);
	if (s->quarantine_fd >= 0)
		close(s->quarantine_fd);
	free(s);
}

int tv_store_set_max_files(struct tv_store *s, size_t max_files)
{
	if (tv_limit_check(&tv_store_max_files_limit, max_files))
		return -ERANGE;
	s->max_files = max_files;
	return 0;
}

size_t tv_store_max_files(const struct tv_store *s)
{
	return s->max_files;
}

size_t tv_store_open_files(const struct tv_store *s)
{
	return s->open_files;
}

/* The one place a temp file's descriptor is closed, so that the count stays exact. */
static void file_close_fd(struct tv_store *s, struct tv_store_file *f)
{
	if (f->fd < 0)
		return;
	close(f->fd);
	f->fd = -1;
	s->open_files--;
}

int tv_store_create_temp(struct tv_store *s, uint64_t segment_id, uint64_t block_id,
			 struct tv_store_file **out)
{
	struct tv_store_file *f;

	if (s->max_files && s->open_files >= s->max_files)
		return -EMFILE;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	temp_name(segment_id, block_id, f->name, sizeof(f->name));
	f->segment_id = segment_id;
	f->block_id = block_id;
	f->fd = openat(s->tmp_fd, f->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (f->fd < 0) {
		int err = -errno;

		free(f);
		return err;
	}
	s->open_files++;
	*out = f;
	return 0;
}

void tv_store_close_fd(struct tv_store *s, struct tv_store_file *f)
{
	/* an op still in flight would use a closed (or reused) descriptor: the caller closes
	 * only after its last op's done; never reached, but a leak beats a wrong write */
	if (!f || f->inflight > 0)
		return;
	file_close_fd(s, f);
}

int tv_store_pread_temp(struct tv_store *s, const struct tv_store_file *f, uint64_t offset,
			void *buf, size_t len)
{
	size_t got = 0;
	int fd, ret = 0;

	/* O_NOFOLLOW: the name is ours, but a symlink planted in tmp/ is not read through */
	fd = openat(s->tmp_fd, f->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	while (got < len) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(offset + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			break;
		}
		if (r == 0) {
			ret = -ENODATA;
			break;
		}
		got += (size_t)r;
	}
	close(fd);
	return ret;
}

/* ---- asynchronous operations ----
 * One ring per store, driven from the server's single thread: submit never waits, and every
 * completion is handed to its op's done callback from tv_store_reap, so the gRPC loop keeps
 * receiving while the kernel writes. The synchronous helpers below wait for their own op only
 * and park the other completions (s->parked) for the next reap, so a done callback never runs
 * nested inside another store call. */

static struct io_uring_sqe *get_sqe(struct tv_store *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (!sqe) { /* SQ ring full of prepared entries: hand them to the kernel, then retry */
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
	}
	return sqe;
}

/* Prepare and submit the next round of op (a write continues where the last round ended). */
static int op_issue(struct tv_store *s, struct tv_store_op *op)
{
	struct io_uring_sqe *sqe = get_sqe(s);
	int ret;

	if (!sqe)
		return -EBUSY;
	if (op->kind == OP_POLL)
		io_uring_prep_poll_add(sqe, op->poll_fd, POLLIN);
	else if (op->kind == OP_WRITEV)
		io_uring_prep_writev(sqe, op->file->fd, op->iov,
				     (unsigned)(op->iovcnt < IOV_MAX ? op->iovcnt : IOV_MAX),
				     op->offset);
	else
		io_uring_prep_fsync(sqe, op->file->fd,
				    op->kind == OP_FDATASYNC ? IORING_FSYNC_DATASYNC : 0);
	io_uring_sqe_set_data(sqe, op);
	/* Once prepared, the SQE belongs to the ring whatever submit answers (-EAGAIN, -EBUSY
	 * under memory or CQ pressure): the kernel takes it at the next submit, which
	 * tv_store_reap retries. So the op is issued; failing it here would free an op the
	 * kernel can still complete. */
	ret = io_uring_submit(&s->ring);
	if (ret < 0)
		fprintf(stderr, "tracevaultd: io_uring submit deferred: %s\n", strerror(-ret));
	return 0;
}

static void file_put(struct tv_store *s, struct tv_store_file *f)
{
	if (!f || --f->inflight > 0 || !f->abandoned)
		return;
	file_close_fd(s, f);
	free(f);
}

/* A write round finished with res bytes: advance the iovec window. Returns 1 when more is left
 * (issued again), 0 when the op is complete, or a negative errno. */
static int write_progress(struct tv_store *s, struct tv_store_op *op, int res)
{
	size_t done = (size_t)res;
	int first = 0;

	if (res < 0)
		return res;
	if (res == 0)
		return -ENOSPC; /* no progress and no error: treat as a full device */
	op->offset += done;
	op->left -= done;
	while (first < op->iovcnt && done >= op->iov[first].iov_len) {
		done -= op->iov[first].iov_len;
		first++;
	}
	op->iov += first;
	op->iovcnt -= first;
	if (op->iovcnt > 0) {
		op->iov[0].iov_base = (char *)op->iov[0].iov_base + done;
		op->iov[0].iov_len -= done;
	}
	if (op->left == 0)
		return 0;
	return op_issue(s, op) ? -EIO : 1;
}

/* A CQE of op arrived: 1 while the op continues (short write), else 0 with op->res final. */
static int op_cqe(struct tv_store *s, struct tv_store_op *op, int res)
{
	if (op->kind == OP_WRITEV) {
		int ret = write_progress(s, op, res);

		if (ret == 1)
			return 1;
		op->res = ret;
	} else {
		op->res = res < 0 ? res : 0;
	}
	return 0;
}

static void op_finish(struct tv_store *s, struct tv_store_op *op)
{
	struct tv_store_file *f = op->file;

	s->inflight--;
	file_put(s, f); /* an abandoned file closes before anyone hears the op is done */
	op->done(op, op->res);
}

static int submit_op(struct tv_store *s, struct tv_store_file *f, struct tv_store_op *op,
		     int kind)
{
	int ret;

	if (f->fd < 0)
		return -EBADF;
	op->file = f;
	op->kind = kind;
	op->res = 0;
	op->next = NULL;
	ret = op_issue(s, op);
	if (ret)
		return ret;
	f->inflight++;
	s->inflight++;
	return 0;
}

int tv_store_submit_writev(struct tv_store *s, struct tv_store_file *f, uint64_t offset,
			   struct iovec *iov, int n, struct tv_store_op *op)
{
	size_t left = 0;

	for (int i = 0; i < n; i++)
		left += iov[i].iov_len;
	if (n <= 0 || left == 0)
		return -EINVAL;
	op->iov = iov;
	op->iovcnt = n;
	op->offset = offset;
	op->left = left;
	return submit_op(s, f, op, OP_WRITEV);
}

int tv_store_submit_fdatasync(struct tv_store *s, struct tv_store_file *f,
			      struct tv_store_op *op)
{
	return submit_op(s, f, op, OP_FDATASYNC);
}

int tv_store_submit_poll(struct tv_store *s, int fd, struct tv_store_op *op)
{
	int ret;

	op->file = NULL;
	op->kind = OP_POLL;
	op->poll_fd = fd;
	op->res = 0;
	op->next = NULL;
	ret = op_issue(s, op);
	if (ret)
		return ret;
	s->inflight++;
	return 0;
}

int tv_store_tmp_dir_fd(const struct tv_store *s)
{
	return s->tmp_fd;
}

const char *tv_store_temp_name(const struct tv_store_file *f)
{
	return f->name;
}

size_t tv_store_inflight(const struct tv_store *s)
{
	return s->inflight;
}

/* Take one CQE if there is one: its op, and whether the op is complete. */
static struct tv_store_op *take_cqe(struct tv_store *s, struct io_uring_cqe *cqe)
{
	struct tv_store_op *op = io_uring_cqe_get_data(cqe);
	int res = cqe->res;

	io_uring_cqe_seen(&s->ring, cqe);
	return op_cqe(s, op, res) ? NULL : op;
}

int tv_store_reap(struct tv_store *s, long wait_us)
{
	struct io_uring_cqe *cqe;
	int count = 0;

	if (io_uring_sq_ready(&s->ring)) /* entries a failed submit left behind (op_issue) */
		io_uring_submit(&s->ring);
	if (wait_us > 0 && !s->parked && s->inflight &&
	    io_uring_peek_cqe(&s->ring, &cqe) != 0) {
		struct __kernel_timespec ts = { .tv_sec = wait_us / 1000000,
						.tv_nsec = (wait_us % 1000000) * 1000 };

		io_uring_wait_cqe_timeout(&s->ring, &cqe, &ts); /* -ETIME is the normal outcome */
	}
	for (;;) {
		struct tv_store_op *op = s->parked;

		if (op) {
			s->parked = op->next;
		} else {
			if (io_uring_peek_cqe(&s->ring, &cqe) != 0)
				break;
			op = take_cqe(s, cqe);
			if (!op)
				continue;
		}
		op_finish(s, op);
		count++;
	}
	return count;
}

static void sync_done(struct tv_store_op *op, int res)
{
	(void)op;
	(void)res;
}

/* Wait for op only; other completed ops are parked for tv_store_reap. */
static int wait_op(struct tv_store *s, struct tv_store_op *op)
{
	for (;;) {
		struct io_uring_cqe *cqe;
		struct tv_store_op *got;
		int ret;

		do
			ret = io_uring_wait_cqe(&s->ring, &cqe);
		while (ret == -EINTR);
		if (ret < 0)
			return ret; /* the ring is unusable: nothing sane left to reap */
		got = take_cqe(s, cqe);
		if (!got)
			continue;
		if (got == op) {
			s->inflight--;
			file_put(s, op->file);
			return op->res;
		}
		got->next = s->parked;
		s->parked = got;
	}
}

int tv_store_writev(struct tv_store *s, struct tv_store_file *f, uint64_t offset,
		    const struct iovec *iov, int n)
{
	struct tv_store_op op = { .done = sync_done };
	struct iovec *local;
	int cnt = 0, ret;

	if (n < 0)
		return -EINVAL;
	local = calloc(n ? (size_t)n : 1, sizeof(*local));
	if (!local)
		return -ENOMEM;
	for (int i = 0; i < n; i++)
		if (iov[i].iov_len)
			local[cnt++] = iov[i];
	ret = cnt ? tv_store_submit_writev(s, f, offset, local, cnt, &op) : 0;
	if (cnt && !ret)
		ret = wait_op(s, &op);
	free(local);
	return ret;
}

int tv_store_sync(struct tv_store *s, struct tv_store_file *const *files, size_t n)
{
	int first_err = 0;

	/* one at a time is fine here: the server's group commit uses the async submit */
	for (size_t i = 0; i < n; i++) {
		struct tv_store_op op = { .done = sync_done };
		int ret = tv_store_submit_fdatasync(s, files[i], &op);

		if (!ret)
			ret = wait_op(s, &op);
		if (ret && !first_err)
			first_err = ret;
	}
	return first_err;
}

static int fsync_fd(struct tv_store *s, int fd)
{
	struct tv_store_file dir = { .fd = fd };
	struct tv_store_op op = { .done = sync_done };
	int ret;

	op.file = &dir;
	op.kind = OP_FSYNC_DIR;
	ret = op_issue(s, &op);
	if (ret)
		return ret;
	dir.inflight = 1;
	s->inflight++;
	return wait_op(s, &op);
}

/* Move files[0..i) back from blocks/ into tmp/ (or unlink them where that fails), so the
 * caller's abort path removes them as temp files. */
static void rename_back(struct tv_store *s, struct tv_store_file *const *files, size_t i)
{
	char name[TEMP_NAME_MAX];

	while (i-- > 0) {
		tv_store_block_name(files[i]->segment_id, files[i]->block_id, name, sizeof(name));
		if (renameat(s->blocks_fd, name, s->tmp_fd, files[i]->name))
			unlinkat(s->blocks_fd, name, 0);
	}
}

int tv_store_rename_in(struct tv_store *s, struct tv_store_file *const *files, size_t n)
{
	char name[TEMP_NAME_MAX];

	for (size_t i = 0; i < n; i++) {
		tv_store_block_name(files[i]->segment_id, files[i]->block_id, name, sizeof(name));
		if (renameat2(s->tmp_fd, files[i]->name, s->blocks_fd, name, RENAME_NOREPLACE)) {
			int ret = -errno;

			rename_back(s, files, i);
			return ret;
		}
	}
	return 0;
}

void tv_store_rename_back(struct tv_store *s, struct tv_store_file *const *files, size_t n)
{
	rename_back(s, files, n);
}

/* fsync blocks/, counted for tv_store_blocks_syncs. */
static int sync_blocks(struct tv_store *s)
{
	int ret = fsync_fd(s, s->blocks_fd);

	if (ret)
		s->blocks_sync_failed = 1;
	else
		s->blocks_syncs++;
	return ret;
}

uint64_t tv_store_blocks_syncs(const struct tv_store *s, int *failed)
{
	*failed = s->blocks_sync_failed;
	return s->blocks_syncs;
}

int tv_store_sync_dirs(struct tv_store *s)
{
	int ret = sync_blocks(s);

	if (!ret)
		ret = fsync_fd(s, s->tmp_fd);
	return ret;
}

void tv_store_release_published(struct tv_store *s, struct tv_store_file *const *files, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		file_close_fd(s, files[i]);
		free(files[i]);
	}
}

int tv_store_publish(struct tv_store *s, struct tv_store_file *const *files, size_t n)
{
	int ret = tv_store_rename_in(s, files, n);

	if (ret)
		return ret;
	ret = tv_store_sync_dirs(s);
	if (ret) {
		rename_back(s, files, n);
		return ret;
	}
	tv_store_release_published(s, files, n);
	return 0;
}

void tv_store_abort(struct tv_store *s, struct tv_store_file *f)
{
	if (!f)
		return;
	unlinkat(s->tmp_fd, f->name, 0);
	f->abandoned = 1;
	f->inflight++;
	file_put(s, f); /* closes now unless a write or sync on it is still in flight */
}


int tv_store_remove_block(struct tv_store *s, uint64_t segment_id, uint64_t block_id)
{
	char name[TEMP_NAME_MAX];

	tv_store_block_name(segment_id, block_id, name, sizeof(name));
	return unlinkat(s->blocks_fd, name, 0) ? -errno : 0;
}

int tv_store_sync_blocks_dir(struct tv_store *s)
{
	return sync_blocks(s);
}

int tv_store_sync_temp_dir(struct tv_store *s)
{
	return fsync_fd(s, s->tmp_fd);
}

/* Read dir_fd/name whole (see tv_store_read_block). O_NOFOLLOW: a symlink planted in blocks/
 * is not a way to make the server read another file; O_NONBLOCK: nor is a fifo a way to hang
 * it (a regular file ignores the flag). */
static int read_file_at(int dir_fd, const char *name, size_t max_bytes, void **buf, size_t *len,
			int64_t *mtime_ns)
{
	struct stat st;
	uint8_t *p = NULL;
	size_t got = 0;
	int fd, ret = 0;

	fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto out;
	}
	if (mtime_ns)
		*mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if ((uint64_t)st.st_size > max_bytes) {
		ret = -EFBIG;
		goto out;
	}
	p = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!p) {
		ret = -ENOMEM;
		goto out;
	}
	/* pread keeps the query path simple; queries are not the hot write path */
	while (got < (size_t)st.st_size) {
		ssize_t r = pread(fd, p + got, (size_t)st.st_size - got, (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		if (r == 0)
			break; /* truncated under us: the block check will report it */
		got += (size_t)r;
	}
	*buf = p;
	*len = got;
	p = NULL;
out:
	free(p);
	close(fd);
	return ret;
}

int tv_store_read_block(struct tv_store *s, uint64_t segment_id, uint64_t block_id,
			size_t max_bytes, void **buf, size_t *len)
{
	char name[TEMP_NAME_MAX];

	tv_store_block_name(segment_id, block_id, name, sizeof(name));
	return read_file_at(s->blocks_fd, name, max_bytes, buf, len, NULL);
}

int tv_store_read_named(struct tv_store *s, const char *name, size_t max_bytes, void **buf,
			size_t *len, int64_t *mtime_ns)
{
	return read_file_at(s->blocks_fd, name, max_bytes, buf, len, mtime_ns);
}

int tv_store_read_temp(struct tv_store *s, const char *name, size_t max_bytes, void **buf,
		       size_t *len)
{
	return read_file_at(s->tmp_fd, name, max_bytes, buf, len, NULL);
}

int tv_store_open_block(struct tv_store *s, uint64_t segment_id, uint64_t block_id, int *fd,
			uint64_t *size)
{
	char name[TEMP_NAME_MAX];
	struct stat st;
	int f, ret;

	*fd = -1;
	tv_store_block_name(segment_id, block_id, name, sizeof(name));
	/* O_NOFOLLOW: a symlink in blocks/ is not ours; O_NONBLOCK: a FIFO must not hang the
	 * server thread in open (it does nothing to reads of a regular file) */
	f = openat(s->blocks_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (f < 0)
		return -errno;
	if (fstat(f, &st)) {
		ret = -errno;
		close(f);
		return ret;
	}
	if (!S_ISREG(st.st_mode)) {
		close(f);
		return -EMEDIUMTYPE;
	}
	*fd = f;
	*size = (uint64_t)st.st_size;
	return 0;
}

/* Call fn(de, arg) for every entry of the directory open at dir_fd but "." and "..", until
 * fn returns non-zero (returned). The walk reads a dup of dir_fd, which stays open. */
static int for_each_entry(int dir_fd, int (*fn)(int dir_fd, const struct dirent *de, void *arg),
			  void *arg)
{
	int fd = dup(dir_fd), ret = 0;
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		ret = -errno;
		close(fd);
		return ret;
	}
	rewinddir(d); /* a dup shares the offset of an earlier walk */
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			ret = errno ? -errno : 0;
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		ret = fn(dir_fd, de, arg);
		if (ret)
			break;
	}
	closedir(d);
	return ret;
}

/* ID_HEX_DIGITS lowercase hex digits at p (the only spelling we write, so the only one read:
 * a name that differs only in case is another file). */
static int parse_hex_id(const char *p, uint64_t *id)
{
	uint64_t v = 0;

	for (int i = 0; i < ID_HEX_DIGITS; i++) {
		char c = p[i];

		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return -EINVAL;
	}
	*id = v;
	return 0;
}

/* "<seg>-<block><suffix>" with suffix ".tvb" or ".tmp". */
static int parse_pair_name(const char *name, const char *suffix, uint64_t *seg, uint64_t *blk)
{
	if (strlen(name) != BLOCK_NAME_LEN || name[ID_HEX_DIGITS] != '-' ||
	    strcmp(name + 2 * ID_HEX_DIGITS + 1, suffix))
		return -EINVAL;
	if (parse_hex_id(name, seg) || parse_hex_id(name + ID_HEX_DIGITS + 1, blk))
		return -EINVAL;
	return 0;
}

static void classify(const char *name, int in_tmp, struct tv_store_entry *e)
{
	e->name = name;
	e->kind = TV_STORE_FOREIGN;
	e->segment_id = e->block_id = 0;
	if (in_tmp) {
		if (!parse_pair_name(name, ".tmp", &e->segment_id, &e->block_id))
			e->kind = TV_STORE_TEMP;
	} else if (!parse_pair_name(name, ".tvb", &e->segment_id, &e->block_id)) {
		e->kind = TV_STORE_BLOCK;
	} else if (strlen(name) == LEGACY_NAME_LEN && !strcmp(name + ID_HEX_DIGITS, ".tvb") &&
		   !parse_hex_id(name, &e->block_id)) {
		e->kind = TV_STORE_LEGACY;
	}
	if (e->kind == TV_STORE_FOREIGN)
		e->segment_id = e->block_id = 0;
}

enum tv_store_name_kind tv_store_block_name_kind(const char *name, uint64_t *block_id)
{
	struct tv_store_entry e;

	classify(name, 0, &e);
	*block_id = e.block_id;
	return e.kind;
}

struct list_walk {
	tv_store_entry_cb cb;
	void *arg;
	int in_tmp;
};

static int list_entry(int dir_fd, const struct dirent *de, void *arg)
{
	struct list_walk *w = arg;
	struct tv_store_entry e;
	struct stat st;

	classify(de->d_name, w->in_tmp, &e);
	if (de->d_type != DT_UNKNOWN) {
		e.regular = de->d_type == DT_REG;
	} else { /* a file system without d_type: ask, without following a symlink */
		if (fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW))
			return errno == ENOENT ? 0 : -errno;
		e.regular = S_ISREG(st.st_mode);
	}
	return w->cb(&e, w->arg);
}

int tv_store_list_blocks(struct tv_store *s, tv_store_entry_cb cb, void *arg)
{
	struct list_walk w = { .cb = cb, .arg = arg, .in_tmp = 0 };

	return for_each_entry(s->blocks_fd, list_entry, &w);
}

int tv_store_list_temp(struct tv_store *s, tv_store_entry_cb cb, void *arg)
{
	struct list_walk w = { .cb = cb, .arg = arg, .in_tmp = 1 };

	return for_each_entry(s->tmp_fd, list_entry, &w);
}

int tv_store_rename_block(struct tv_store *s, const char *name, uint64_t segment_id,
			  uint64_t block_id)
{
	char to[TEMP_NAME_MAX];

	tv_store_block_name(segment_id, block_id, to, sizeof(to));
	return renameat2(s->blocks_fd, name, s->blocks_fd, to, RENAME_NOREPLACE) ? -errno : 0;
}

int tv_store_publish_temp(struct tv_store *s, uint64_t segment_id, uint64_t block_id)
{
	char from[TEMP_NAME_MAX], to[TEMP_NAME_MAX];

	temp_name(segment_id, block_id, from, sizeof(from));
	tv_store_block_name(segment_id, block_id, to, sizeof(to));
	return renameat2(s->tmp_fd, from, s->blocks_fd, to, RENAME_NOREPLACE) ? -errno : 0;
}

int tv_store_remove_temp(struct tv_store *s, const char *name)
{
	return unlinkat(s->tmp_fd, name, 0) ? -errno : 0;
}

/* ---- quarantine ---- */

const char *tv_store_area_dir(enum tv_store_area area)
{
	switch (area) {
	case TV_STORE_AREA_BLOCKS:
		return TV_STORE_BLOCKS_DIR "/";
	case TV_STORE_AREA_TMP:
		return TV_STORE_TMP_DIR "/";
	default:
		return "";
	}
}

static int area_fd(const struct tv_store *s, enum tv_store_area area)
{
	switch (area) {
	case TV_STORE_AREA_BLOCKS:
		return s->blocks_fd;
	case TV_STORE_AREA_TMP:
		return s->tmp_fd;
	default:
		return s->dir_fd;
	}
}

static int exists_at(int dir_fd, const char *name)
{
	struct stat st;

	return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

/* Write quarantine/<qname>.reason: why, from where, when (unix ns). O_EXCL: the caller chose a
 * name whose .reason was free. */
static int write_reason(struct tv_store *s, const char *qname, enum tv_store_area area,
			const char *name, const char *reason)
{
	char path[NAME_MAX + 16];
	struct timespec now;
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s.reason", qname);
	fd = openat(s->quarantine_fd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		    0600);
	if (fd < 0)
		return -errno;
	clock_gettime(CLOCK_REALTIME, &now);
	if (dprintf(fd, "%s\nfrom: %s%s\nat_unix_ns: %lld\n", reason, tv_store_area_dir(area), name,
		    (long long)now.tv_sec * 1000000000LL + now.tv_nsec) < 0 ||
	    fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

const uint64_t *tv_store_quarantined_blocks(const struct tv_store *s)
{
	return &s->quarantined_blocks;
}

int tv_store_dir_fd(const struct tv_store *s)
{
	return s->dir_fd;
}

int tv_store_quarantine(struct tv_store *s, enum tv_store_area area, const char *name,
			const char *reason, char *qname, size_t qlen)
{
	char dest[NAME_MAX + 1], rname[NAME_MAX + 16];
	int from = area_fd(s, area), ret;

	if (strlen(name) > NAME_MAX - 8) /* room for ".NNN" and ".reason" beside it */
		return -ENAMETOOLONG;
	if (!exists_at(from, name))
		return -ENOENT;
	if (s->quarantine_fd < 0) {
		ret = open_subdir(s->dir_fd, TV_STORE_QUARANTINE_DIR, &s->quarantine_fd);
		if (ret)
			return ret;
	}
	for (int k = 0;; k++) {
		if (k > TV_STORE_QUARANTINE_MAX_SUFFIX)
			return -EEXIST;
		if (k)
			snprintf(dest, sizeof(dest), "%s.%d", name, k);
		else
			snprintf(dest, sizeof(dest), "%s", name);
		snprintf(rname, sizeof(rname), "%s.reason", dest);
		if (exists_at(s->quarantine_fd, dest) || exists_at(s->quarantine_fd, rname))
			continue;
		if (!renameat2(from, name, s->quarantine_fd, dest, RENAME_NOREPLACE))
			break;
		if (errno != EEXIST)
			return -errno;
	}
	/* The file is safe in quarantine/ now, so the move succeeded whatever follows: a missing
	 * reason file loses only the why, which the caller logs too; a failed directory fsync at
	 * worst puts the file back where it was after a power loss, to be found again. */
	if (qname)
		snprintf(qname, qlen, "%s", dest);
	if (area == TV_STORE_AREA_BLOCKS)
		tv_metric_add(&s->quarantined_blocks, 1);
	ret = write_reason(s, dest, area, name, reason);
	if (ret)
		fprintf(stderr, "tracevaultd: cannot write %s/%s.reason: %s\n",
			TV_STORE_QUARANTINE_DIR, dest, strerror(-ret));
	ret = fsync_fd(s, s->quarantine_fd);
	if (!ret)
		ret = fsync_fd(s, from);
	if (ret)
		fprintf(stderr, "tracevaultd: fsync after quarantining %s%s: %s\n",
			tv_store_area_dir(area), name, strerror(-ret));
	return 0;
}

int tv_store_link_block(struct tv_store *s, uint64_t segment_id, uint64_t block_id, int fd)
{
	char name[TEMP_NAME_MAX], path[64];

	tv_store_block_name(segment_id, block_id, name, sizeof(name));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	/* AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH; the /proc link is what linkat(2)
	 * documents for an O_TMPFILE without it */
	if (linkat(AT_FDCWD, path, s->blocks_fd, name, AT_SYMLINK_FOLLOW))
		return -errno;
	return sync_blocks(s);
}
