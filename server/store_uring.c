/* io_uring block storage: the server's only writer of data files. Chunks go to a temp file per
 * block (writev straight from received buffers), a commit groups the fdatasyncs of a segment
 * into one submission, then renames into blocks/ and fsyncs the directories. */
#define _GNU_SOURCE /* renameat2, IOV_MAX */
#include "store_uring.h"

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

#define RING_ENTRIES 64
/* A short write is retried; a device that keeps making no progress is an error, not a loop. */
#define MAX_WRITE_ROUNDS 64
#define TEMP_NAME_MAX 64

struct tv_store {
	struct io_uring ring;
	int blocks_fd; /* O_DIRECTORY fds: names are resolved relative to them (openat/renameat) */
	int tmp_fd;
};

struct tv_store_file {
	int fd;
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
	if (!s)
		return -ENOMEM;
	s->blocks_fd = s->tmp_fd = -1;
	dir_fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open data dir %s: %s", data_dir, strerror(-ret));
		goto fail;
	}
	ret = open_subdir(dir_fd, "blocks", &s->blocks_fd);
	if (!ret)
		ret = open_subdir(dir_fd, "tmp", &s->tmp_fd);
	close(dir_fd);
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
	free(s);
	return ret;
}

void tv_store_close(struct tv_store *s)
{
	if (!s)
		return;
	io_uring_queue_exit(&s->ring);
	close(s->blocks_fd);
	close(s->tmp_fd);
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

/* Submit the prepared SQEs and reap exactly n completions; returns the first negative result
 * (every CQE is still consumed so the ring stays clean) or 0. res[] gets each result by
 * user_data index when res != NULL. */
static int submit_and_reap(struct tv_store *s, unsigned n, int *res)
{
	struct io_uring_cqe *cqe;
	int first_err = 0, ret;

	ret = io_uring_submit_and_wait(&s->ring, n);
	if (ret < 0)
		return ret;
	for (unsigned i = 0; i < n; i++) {
		do
			ret = io_uring_wait_cqe(&s->ring, &cqe);
		while (ret == -EINTR);
		if (ret < 0)
			return ret; /* the ring is unusable: nothing sane left to reap */
		if (res && cqe->user_data < n)
			res[cqe->user_data] = cqe->res;
		if (cqe->res < 0 && !first_err)
			first_err = cqe->res;
		io_uring_cqe_seen(&s->ring, cqe);
	}
	return first_err;
}

int tv_store_writev(struct tv_store *s, struct tv_store_file *f, uint64_t offset,
		    const struct iovec *iov, int n)
{
	struct iovec local[IOV_MAX];
	size_t left = 0;
	int cnt = 0, res = 0, ret;

	if (n < 0 || n > IOV_MAX)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		if (iov[i].iov_len == 0)
			continue;
		local[cnt++] = iov[i];
		left += iov[i].iov_len;
	}
	for (int round = 0; left > 0; round++) {
		struct io_uring_sqe *sqe;
		size_t done;
		int first = 0;

		if (round == MAX_WRITE_ROUNDS)
			return -EIO;
		sqe = io_uring_get_sqe(&s->ring);
		if (!sqe)
			return -EBUSY;
		io_uring_prep_writev(sqe, f->fd, local, (unsigned)cnt, offset);
		sqe->user_data = 0;
		ret = submit_and_reap(s, 1, &res);
		if (ret < 0)
			return ret;
		if (res == 0)
			return -ENOSPC; /* no progress and no error: treat as a full device */
		/* short write: advance the iovec window past what the kernel took */
		done = (size_t)res;
		offset += done;
		left -= done;
		while (first < cnt && done >= local[first].iov_len) {
			done -= local[first].iov_len;
			first++;
		}
		if (first < cnt) {
			local[first].iov_base = (char *)local[first].iov_base + done;
			local[first].iov_len -= done;
		}
		memmove(local, local + first, (size_t)(cnt - first) * sizeof(*local));
		cnt -= first;
	}
	return 0;
}

int tv_store_sync(struct tv_store *s, struct tv_store_file *const *files, size_t n)
{
	size_t i = 0;
	int ret;

	while (i < n) {
		unsigned batch = 0;

		while (i < n && batch < RING_ENTRIES) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

			if (!sqe)
				break;
			io_uring_prep_fsync(sqe, files[i]->fd, IORING_FSYNC_DATASYNC);
			sqe->user_data = batch;
			batch++;
			i++;
		}
		if (batch == 0)
			return -EBUSY;
		ret = submit_and_reap(s, batch, NULL);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int fsync_fd(struct tv_store *s, int fd)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_fsync(sqe, fd, 0);
	sqe->user_data = 0;
	return submit_and_reap(s, 1, NULL);
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
	close(f->fd);
	unlinkat(s->tmp_fd, f->name, 0);
	free(f);
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

int tv_store_clear_temp(struct tv_store *s)
{
	int fd = dup(s->tmp_fd), removed = 0, ret = 0;
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
	rewinddir(d);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(s->tmp_fd, de->d_name, 0)) {
			ret = -errno;
			break;
		}
		removed++;
	}
	closedir(d);
	if (!ret && removed)
		ret = fsync_fd(s, s->tmp_fd);
	return ret ? ret : removed;
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

int tv_store_list_blocks(struct tv_store *s, tv_store_block_cb cb, void *arg)
{
	int fd = dup(s->blocks_fd), ret = 0;
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
	rewinddir(d);
	while ((de = readdir(d))) {
		uint64_t id = 0;
		int valid;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		valid = parse_block_name(de->d_name, &id) == 0;
		ret = cb(id, valid, de->d_name, arg);
		if (ret)
			break;
	}
	closedir(d);
	return ret;
}
