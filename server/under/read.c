/* Read-back of one block object from the under-store into an anonymous temp file (read.h):
 * range GETs of TV_UNDER_READ_CHUNK_BYTES, each retried a bounded number of times when S3 may
 * answer later, on the server's thread. The whole object, not the pages a query needs: see
 * UNDERSTORE.md "Eviction and read-back" for why. */
#define _GNU_SOURCE /* O_TMPFILE */
#include "under/read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/metrics.h"

struct tv_under_reader {
	struct tv_s3 *s3; /* the loop's own client: never the persister's worker's */
	char prefix[TV_PERSIST_PREFIX_MAX + 1];
	char bucket[64];
	struct tv_under_read_stats *st;
};

int tv_under_reader_open(struct tv_under_reader **out, const struct tv_persist_opts *o,
			 struct tv_under_read_stats *stats, char *err, size_t errlen)
{
	struct tv_under_reader *r = calloc(1, sizeof(*r));
	int ret;

	*out = NULL;
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(r->prefix, sizeof(r->prefix), "%s", o->prefix);
	snprintf(r->bucket, sizeof(r->bucket), "%s", o->bucket);
	r->st = stats;
	ret = tv_s3_open(&r->s3, o->endpoint, o->region, o->bucket, o->access_key, o->secret_key,
			 err, errlen);
	if (ret) {
		free(r);
		return ret;
	}
	tv_s3_set_timeouts(r->s3, TV_UNDER_READ_CONNECT_TIMEOUT_MS, TV_UNDER_READ_LOW_SPEED_TIME_S);
	*out = r;
	return 0;
}

void tv_under_reader_close(struct tv_under_reader *r)
{
	if (!r)
		return;
	tv_s3_close(r->s3);
	free(r);
}

/* Whether a failed GET may succeed if asked again: S3 not reachable or not answering, or a
 * 5xx. A 403, a 404 or a range outside the object will not change by asking again. */
static int transient(int ret)
{
	switch (ret) {
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -ETIMEDOUT:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -EIO:
		return 1;
	default:
		return 0;
	}
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* One range GET with its retries: 0, or the last attempt's errno with err set. */
static int get_chunk(struct tv_under_reader *r, const char *key, uint64_t off, size_t len,
		     void *buf, char *err, size_t errlen)
{
	unsigned pause_ms = TV_UNDER_READ_RETRY_MS;
	int ret = 0, attempt;

	for (attempt = 1; attempt <= TV_UNDER_READ_ATTEMPTS; attempt++) {
		if (attempt > 1) {
			tv_metric_add(&r->st->read_retries, 1);
			sleep_ms(pause_ms);
			pause_ms *= 2;
		}
		ret = tv_s3_get_range(r->s3, key, off, len, buf, err, errlen);
		if (!ret || !transient(ret))
			break;
	}
	if (ret && attempt > 1) {
		size_t n = strnlen(err, errlen);

		if (n + 1 < errlen)
			snprintf(err + n, errlen - n, " (%d attempts)",
				 attempt > TV_UNDER_READ_ATTEMPTS ? TV_UNDER_READ_ATTEMPTS : attempt);
	}
	return ret;
}

/* What one listing of a segment's directory found. */
struct check_walk {
	const char *dir; /* the directory's key prefix */
	size_t dir_len;
	const struct tv_under_object *blocks;
	size_t n;
	uint8_t *seen; /* n + 1: the blocks, then the manifest */
};

static int check_one(void *arg, const char *key, uint64_t size_bytes)
{
	struct check_walk *w = arg;
	const char *name = key + w->dir_len;
	unsigned long long id;
	char tail;

	if (strncmp(key, w->dir, w->dir_len))
		return 0;
	if (!strcmp(name, "manifest.json")) {
		w->seen[w->n] = 1;
		return 0;
	}
	if (sscanf(name, "%16llx.bl%c", &id, &tail) != 2 || tail != 'k')
		return 0;
	for (size_t i = 0; i < w->n; i++)
		if (w->blocks[i].block_id == id && w->blocks[i].bytes == size_bytes)
			w->seen[i] = 1;
	return 0;
}

int tv_under_check_segment(struct tv_under_reader *r, uint64_t segment_id,
			   uint64_t oldest_ts_ns, const struct tv_under_object *blocks, size_t n,
			   char *err, size_t errlen)
{
	char dir[TV_PERSIST_KEY_LEN];
	struct check_walk w = { .dir = dir, .blocks = blocks, .n = n };
	int ret;

	tv_persist_key(r->prefix, segment_id, oldest_ts_ns, 0, 0, 1, dir, sizeof(dir));
	w.dir_len = strlen(dir);
	w.seen = calloc(n + 1, 1);
	if (!w.seen) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ret = tv_s3_list(r->s3, dir, 0, check_one, &w, err, errlen);
	if (!ret && !w.seen[n]) {
		snprintf(err, errlen, "s3://%s/%smanifest.json is not in the bucket", r->bucket,
			 dir);
		ret = -ENOENT;
	}
	for (size_t i = 0; !ret && i < n; i++)
		if (!w.seen[i]) {
			snprintf(err, errlen, "s3://%s/%s%016llx.blk is not in the bucket with its "
				 "%llu bytes", r->bucket, dir,
				 (unsigned long long)blocks[i].block_id,
				 (unsigned long long)blocks[i].bytes);
			ret = -ENOENT;
		}
	free(w.seen);
	return ret;
}

int tv_under_read_block(struct tv_under_reader *r, uint64_t segment_id, uint64_t oldest_ts_ns,
			uint64_t block_id, uint64_t bytes, int dir_fd, int *fd, char *err,
			size_t errlen)
{
	char key[TV_PERSIST_KEY_LEN], why[TV_UNDER_READ_ERR_LEN];
	size_t cap = bytes < TV_UNDER_READ_CHUNK_BYTES ? (size_t)bytes : TV_UNDER_READ_CHUNK_BYTES;
	uint8_t *buf = NULL;
	uint64_t off;
	int ret, tfd;

	*fd = -1;
	if (!bytes) {
		snprintf(err, errlen, "under-store: block %016llx: 0 bytes to read",
			 (unsigned long long)block_id);
		return -EINVAL;
	}
	tv_persist_key(r->prefix, segment_id, oldest_ts_ns, block_id, 0, 0, key, sizeof(key));
	tfd = openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (tfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "under-store: a temp file for block %016llx in tmp/: %s",
			 (unsigned long long)block_id, strerror(errno));
		goto fail;
	}
	buf = malloc(cap);
	if (!buf) {
		ret = -ENOMEM;
		snprintf(err, errlen, "under-store: out of memory for a %zu-byte read of block "
			 "%016llx", cap, (unsigned long long)block_id);
		goto fail;
	}
	for (off = 0; off < bytes; off += cap) {
		size_t len = bytes - off < cap ? (size_t)(bytes - off) : cap;
		ssize_t w;

		ret = get_chunk(r, key, off, len, buf, why, sizeof(why));
		if (ret) {
			if (ret == -EIO) /* S3's 5xx, not a local disk's EIO (read.h) */
				ret = -EREMOTEIO;
			snprintf(err, errlen, "under-store: %s", why);
			goto fail;
		}
		w = pwrite(tfd, buf, len, (off_t)off);
		if (w != (ssize_t)len) {
			ret = w < 0 ? -errno : -EIO;
			snprintf(err, errlen, "under-store: write block %016llx into a temp file in "
				 "tmp/: %s", (unsigned long long)block_id, strerror(-ret));
			goto fail;
		}
	}
	free(buf);
	tv_metric_add(&r->st->reads, 1);
	tv_metric_add(&r->st->read_bytes, bytes);
	*fd = tfd;
	return 0;
fail:
	free(buf);
	if (tfd >= 0)
		close(tfd);
	tv_metric_add(&r->st->read_failures, 1);
	return ret;
}
