/* io_uring block storage: the server's only writer of data files. Chunks go to a temp file per
 * block (writev straight from received buffers); a commit has the fdatasyncs of a segment's
 * blocks in flight together (one SQE each, submitted as it is prepared), then renames into
 * blocks/ and fsyncs the directories. */
#define _GNU_SOURCE /* renameat2, IOV_MAX */
#include "server/store_uring.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

/* SQ entries: every op is submitted at once, so this bounds nothing but a burst of prepares;
 * the kernel keeps CQEs beyond the CQ ring (IORING_FEAT_NODROP). */
#define RING_ENTRIES 256
#define TEMP_NAME_MAX 64

enum { OP_WRITEV = 1, OP_FDATASYNC, OP_FSYNC_DIR };

struct tv_store {
	struct io_uring ring;
	size_t inflight;           /* ops submitted, done not yet run */
	struct tv_store_op *parked; /* complete, done not yet run (see wait_op) */
	int blocks_fd; /* O_DIRECTORY fds: names are resolved relative to them (openat/renameat) */
	int tmp_fd;
	int dir_fd;    /* the data dir itself (quarantine/ is made in it when first needed) */
};

struct tv_store_file {
	int fd;
	int inflight;  /* ops on fd not yet complete */
	int abandoned; /* unlinked by tv_store_abort: close and free at inflight 0 */
	uint64_t block_id;
	char name[TEMP_NAME_MAX]; /* relative to tmp/ */
};

static void block_name(char *buf, size_t len, uint64_t block_id)
{
	snprintf(buf, len, "%016" PRIx64 ".tvb", block_id);
}

static int open_subdir(int parent_fd, const char *name, int *out)
{
	int fd;

	if (mkdirat(parent_fd, name, 0700) && errno != EEXIST)
		return -errno;
	fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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
	s->blocks_fd = s->tmp_fd = s->dir_fd = -1;
	dir_fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open data dir %s: %s", data_dir, strerror(-ret));
		goto fail;
	}
	s->dir_fd = dir_fd;
	ret = open_subdir(dir_fd, "blocks", &s->blocks_fd);
	if (!ret)
		ret = open_subdir(dir_fd, "tmp", &s->tmp_fd);
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
	close(s->blocks_fd);
	close(s->tmp_fd);
	close(s->dir_fd);
	free(s);
}

int tv_store_create_temp(struct tv_store *s, uint64_t segment_id, uint64_t block_id,
			 struct tv_store_file **out)
{
	struct tv_store_file *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	snprintf(f->name, sizeof(f->name), "%016" PRIx64 "-%016" PRIx64 ".tmp", segment_id,
		 block_id);
	f->block_id = block_id;
	f->fd = openat(s->tmp_fd, f->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (f->fd < 0) {
		int err = -errno;

		free(f);
		return err;
	}
	*out = f;
	return 0;
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
	if (op->kind == OP_WRITEV)
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
	(void)s;
	close(f->fd);
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

int tv_store_publish(struct tv_store *s, struct tv_store_file *const *files, size_t n)
{
	char name[TEMP_NAME_MAX];
	size_t i;
	int ret = 0;

	for (i = 0; i < n; i++) {
		block_name(name, sizeof(name), files[i]->block_id);
		if (renameat2(s->tmp_fd, files[i]->name, s->blocks_fd, name, RENAME_NOREPLACE)) {
			ret = -errno;
			goto undo;
		}
	}
	ret = fsync_fd(s, s->blocks_fd);
	if (!ret)
		ret = fsync_fd(s, s->tmp_fd);
	if (ret)
		goto undo;
	for (i = 0; i < n; i++) {
		close(files[i]->fd);
		free(files[i]);
	}
	return 0;
undo:
	/* move the renamed ones back so the caller's abort path unlinks them as temp files */
	while (i-- > 0) {
		block_name(name, sizeof(name), files[i]->block_id);
		if (renameat(s->blocks_fd, name, s->tmp_fd, files[i]->name))
			unlinkat(s->blocks_fd, name, 0);
	}
	return ret;
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

int tv_store_remove_block(struct tv_store *s, uint64_t block_id)
{
	char name[TEMP_NAME_MAX];

	block_name(name, sizeof(name), block_id);
	return unlinkat(s->blocks_fd, name, 0) ? -errno : 0;
}

int tv_store_sync_blocks_dir(struct tv_store *s)
{
	return fsync_fd(s, s->blocks_fd);
}

int tv_store_read_block(struct tv_store *s, uint64_t block_id, size_t max_bytes, void **buf,
			size_t *len)
{
	char name[TEMP_NAME_MAX];
	struct stat st;
	uint8_t *p = NULL;
	size_t got = 0;
	int fd, ret = 0;

	block_name(name, sizeof(name), block_id);
	fd = openat(s->blocks_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		ret = -errno;
		goto out;
	}
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

int tv_store_open_block(struct tv_store *s, uint64_t block_id, int *fd, uint64_t *size)
{
	char name[TEMP_NAME_MAX];
	struct stat st;
	int f, ret;

	*fd = -1;
	block_name(name, sizeof(name), block_id);
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

int tv_store_quarantine_block(struct tv_store *s, uint64_t block_id, char *moved_to,
			      size_t moved_len)
{
	char name[TEMP_NAME_MAX], qname[TEMP_NAME_MAX];
	struct stat st;
	int qfd, ret, f;

	snprintf(moved_to, moved_len, "quarantine/");
	ret = open_subdir(s->dir_fd, "quarantine", &qfd);
	if (ret)
		return ret;
	block_name(name, sizeof(name), block_id);
	/* an earlier block of the same id may be there already: never replace evidence */
	ret = -EEXIST;
	for (unsigned i = 0; i < TV_STORE_QUARANTINE_NAMES && ret == -EEXIST; i++) {
		if (i == 0)
			snprintf(qname, sizeof(qname), "%s", name);
		else
			snprintf(qname, sizeof(qname), "%016" PRIx64 ".%u.tvb", block_id, i);
		ret = renameat2(s->blocks_fd, name, qfd, qname, RENAME_NOREPLACE) ? -errno : 0;
	}
	if (ret)
		goto out;
	snprintf(moved_to, moved_len, "quarantine/%s", qname);
	/* files of the data dir are 0600 whatever they were; a symlink is left as it is (a
	 * chmod would follow it) */
	f = openat(qfd, qname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (f >= 0) {
		if (!fstat(f, &st) && S_ISREG(st.st_mode))
			fchmod(f, 0600);
		close(f);
	}
	ret = fsync_fd(s, qfd);
	if (!ret)
		ret = fsync_fd(s, s->blocks_fd);
out:
	close(qfd);
	return ret;
}

/* Call fn(name, arg) for every entry of the directory open at dir_fd but "." and "..", until
 * fn returns non-zero (returned). The walk reads a dup of dir_fd, which stays open. */
static int for_each_entry(int dir_fd, int (*fn)(const char *name, void *arg), void *arg)
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
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		ret = fn(de->d_name, arg);
		if (ret)
			break;
	}
	closedir(d);
	return ret;
}

struct clear_walk {
	struct tv_store *s;
	int removed;
};

static int unlink_temp(const char *name, void *arg)
{
	struct clear_walk *w = arg;

	if (unlinkat(w->s->tmp_fd, name, 0))
		return -errno;
	w->removed++;
	return 0;
}

int tv_store_clear_temp(struct tv_store *s)
{
	struct clear_walk w = { .s = s };
	int ret = for_each_entry(s->tmp_fd, unlink_temp, &w);

	if (!ret && w.removed)
		ret = fsync_fd(s, s->tmp_fd);
	return ret ? ret : w.removed;
}

static int parse_block_name(const char *name, uint64_t *id)
{
	char *end;

	if (strlen(name) != 20 || strcmp(name + 16, ".tvb"))
		return -EINVAL;
	for (int i = 0; i < 16; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return -EINVAL;
	errno = 0;
	*id = strtoull(name, &end, 16);
	return errno || end != name + 16 ? -EINVAL : 0;
}

struct list_walk {
	tv_store_block_cb cb;
	void *arg;
};

static int list_block(const char *name, void *arg)
{
	struct list_walk *w = arg;
	uint64_t id = 0;
	int valid = parse_block_name(name, &id) == 0;

	return w->cb(id, valid, name, w->arg);
}

int tv_store_list_blocks(struct tv_store *s, tv_store_block_cb cb, void *arg)
{
	struct list_walk w = { .cb = cb, .arg = arg };

	return for_each_entry(s->blocks_fd, list_block, &w);
}
