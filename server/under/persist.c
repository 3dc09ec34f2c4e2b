/* The under-store's persister (persist.h, UNDERSTORE.md): a worker thread that puts segments'
 * blocks and manifests into S3 and deletes segments from it, for the server's loop. The loop
 * queues jobs (todo), the worker runs them one at a time in order and moves each to done,
 * writing the eventfd; the loop's tv_persist_reap runs their callbacks. Deletes that S3 did
 * not answer wait in the worker's own retry list; confirmed ones go to the settled list for
 * the loop's journal (tv_persist_settle). async-through's uploads wait in their own queue
 * (aq), run when todo is empty, head first; a failed one stays at the head and is tried again
 * after a backoff, so the queue keeps its order and one upload at a time probes S3. */
#define _GNU_SOURCE
#include "under/persist.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/clock.h"

enum job_kind { JOB_PUT, JOB_DELETE, JOB_ASYNC };

struct tv_persist_job {
	enum job_kind kind;
	struct tv_persist *p;
	uint64_t segment_id, oldest_ts_ns;
	int dir_fd;                      /* the block files' dir: tmp/ (PUT), blocks/ (ASYNC) */
	struct tv_persist_block *blocks; /* JOB_PUT, JOB_ASYNC: n, owned */
	size_t n;
	tv_persist_done_fn done; /* JOB_PUT: NULL once detached (loop only) */
	/* JOB_ASYNC: its commit time (CLOCK_REALTIME), its blocks' bytes, given up (under mu:
	 * a Delete of the segment while it runs), and the loop's list of the outstanding ones
	 * (submission order: the head is the oldest) */
	int64_t queued_ns;
	uint64_t total_bytes;
	int cancelled;
	struct tv_persist_job *lprev, *lnext;
	/* JOB_PUT, under mu: the worker has run it (finished), the loop gave its segment up
	 * (detached); whichever comes second undoes a put that succeeded */
	int finished, detached;
	void *arg;
	int res;
	char err[TV_PERSIST_ERR_LEN];
	uint64_t submit_ns;
	int64_t submit_real_ns; /* CLOCK_REALTIME of the submit: what a settled delete covers */
	/* JOB_DELETE waiting in the worker's retry list */
	uint64_t retry_at_ns;
	unsigned retry_ms;
	struct tv_persist_job *next;
};

/* --s3-connections' bound; more connections than this only queue in the S3 server */
#define TV_PERSIST_CONNECTIONS_MAX 16
const struct tv_limit tv_persist_connections_limit = { .min = 1,
						       .max = TV_PERSIST_CONNECTIONS_MAX };

struct tv_persist {
	struct tv_s3 *s3; /* the worker's */
	/* the other connections of a segment's block PUTs (lanes[1..nlanes-1]; lanes[0] is s3),
	 * each used by one upload thread at a time (put_blocks) */
	struct tv_s3 *lanes[TV_PERSIST_CONNECTIONS_MAX];
	unsigned nlanes;
	struct tv_s3 *s3_loop; /* the start-up check's, kept for tv_persist_delete_now (loop) */
	char prefix[TV_PERSIST_PREFIX_MAX + 1];
	char bucket[64];
	struct tv_s3_put_limits lim;
	struct tv_persist_stats *st;
	pthread_t worker;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct tv_persist_job *todo_head, *todo_tail; /* under mu: loop -> worker */
	struct tv_persist_job *done_head, *done_tail; /* under mu: worker -> loop */
	int stopping;                                 /* under mu */
	struct tv_persist_job *retry;                 /* the worker's own */
	int efd;
	size_t outstanding; /* the loop's */
	struct tv_persist_local local; /* tv_persist_attach's; blocks_fd -1 before */
	int must_cache; /* --write-type must-cache: nothing is uploaded */
	/* async-through */
	int async;
	uint64_t qsegments, qbytes;                 /* the queue's bounds */
	struct tv_persist_job *aq_head, *aq_tail;   /* under mu: in order; the head may run */
	int aq_running;                             /* under mu: the worker runs aq_head */
	int async_stop;                             /* under mu: tv_persist_stop_async */
	uint64_t aq_retry_at_ns;                    /* the worker's: the head's next try */
	unsigned aq_retry_ms;                       /* the worker's: its backoff, 0: none */
	size_t async_n;                             /* the loop's: queued, not reaped */
	uint64_t async_bytes;
	struct tv_persist_job *lhead, *ltail;       /* the loop's: those jobs, in order */
	/* deletes confirmed, for the loop (under mu; nsettled read without it) */
	struct tv_persist_job *settled;
	uint64_t nsettled;
};

const struct tv_limit tv_persist_queue_segments_limit = { .min = 1,
							  .max = TV_PERSIST_MAX_QUEUE_SEGMENTS };
const struct tv_limit tv_persist_queue_bytes_limit = { .min = 1 << 20,
						       .max = TV_PERSIST_MAX_QUEUE_BYTES };

static void errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void tv_persist_stats_init(struct tv_persist_stats *st)
{
	memset(st, 0, sizeof(*st));
	tv_histogram_init(&st->persist_seconds, tv_metrics_latency_bounds_ns,
			  TV_METRICS_LATENCY_BOUNDS);
}

int tv_persist_parse_uri(const char *uri, char *bucket, size_t bucket_len, char *prefix,
			 size_t prefix_len, char *err, size_t errlen)
{
	const char *b, *slash;
	size_t blen, plen;

	if (strncmp(uri, "s3://", 5) != 0) {
		errf(err, errlen, "invalid --under: '%s' (s3://BUCKET/PREFIX)", uri);
		return -EINVAL;
	}
	b = uri + 5;
	slash = strchr(b, '/');
	blen = slash ? (size_t)(slash - b) : strlen(b);
	if (blen < 3 || blen > 63 || blen >= bucket_len) {
		errf(err, errlen, "invalid --under: '%s' (a bucket of 3 to 63 characters)", uri);
		return -EINVAL;
	}
	for (size_t i = 0; i < blen; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '.' ||
		      b[i] == '-')) {
			errf(err, errlen, "invalid --under: '%s' (a bucket is a-z 0-9 . -)", uri);
			return -EINVAL;
		}
	memcpy(bucket, b, blen);
	bucket[blen] = '\0';
	b = slash ? slash + 1 : b + blen;
	plen = strlen(b);
	while (plen && b[plen - 1] == '/')
		plen--;
	if (plen > TV_PERSIST_PREFIX_MAX || plen >= prefix_len) {
		errf(err, errlen, "invalid --under: PREFIX longer than %d bytes",
		     TV_PERSIST_PREFIX_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < plen; i++)
		if ((unsigned char)b[i] < 0x20 || b[i] == 0x7f ||
		    (b[i] == '/' && (i == 0 || b[i - 1] == '/'))) {
			errf(err, errlen, "invalid --under: '%s' (PREFIX has a control character "
			     "or an empty path element)", uri);
			return -EINVAL;
		}
	memcpy(prefix, b, plen);
	prefix[plen] = '\0';
	return 0;
}

void tv_persist_key(const char *prefix, uint64_t segment_id, uint64_t oldest_ts_ns,
		    uint64_t block_id, int manifest, int dir, char *key, size_t len)
{
	time_t t = (time_t)(oldest_ts_ns / 1000000000ull);
	struct tm tm;
	char hour[32];

	gmtime_r(&t, &tm);
	snprintf(hour, sizeof(hour), "%04d/%02d/%02d/%02d", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour);
	if (dir)
		snprintf(key, len, "%s%s" TV_PERSIST_LAYOUT "/%s/%016" PRIx64 "/", prefix,
			 *prefix ? "/" : "", hour, segment_id);
	else if (manifest)
		snprintf(key, len, "%s%s" TV_PERSIST_LAYOUT "/%s/%016" PRIx64 "/manifest.json",
			 prefix, *prefix ? "/" : "", hour, segment_id);
	else
		snprintf(key, len, "%s%s" TV_PERSIST_LAYOUT "/%s/%016" PRIx64 "/%016" PRIx64 ".blk",
			 prefix, *prefix ? "/" : "", hour, segment_id, block_id);
}

static enum tv_persist_failure failure_reason(int res)
{
	switch (res) {
	case -EACCES:
		return TV_PERSIST_FAIL_AUTH;
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
		return TV_PERSIST_FAIL_UNREACHABLE;
	case -ETIMEDOUT:
		return TV_PERSIST_FAIL_TIMEOUT;
	case -EIO:
		return TV_PERSIST_FAIL_SERVER;
	case -EEXIST:
		return TV_PERSIST_FAIL_CONFLICT;
	default:
		return TV_PERSIST_FAIL_OTHER;
	}
}

/* ---- the worker ---- */

/* The manifest of a job's segment (UNDERSTORE.md "Manifest"), malloc'd into *out (*len bytes). */
static int manifest_build(const struct tv_persist_job *j, char **out, size_t *len)
{
	json_t *root = json_object(), *blocks = json_array();
	uint64_t newest = 0, total = 0;
	char hex[17];
	int ret = -ENOMEM;

	if (!root || !blocks)
		goto out;
	for (size_t i = 0; i < j->n; i++) {
		const struct tv_persist_block *b = &j->blocks[i];
		json_t *o;

		snprintf(hex, sizeof(hex), "%016" PRIx64, b->block_id);
		o = json_pack("{s:s, s:s+, s:I, s:I, s:I, s:I, s:I, s:I}", "block_id", hex,
			      "object", hex, ".blk", "bytes", (json_int_t)b->bytes, "header_bytes",
			      (json_int_t)b->header_bytes, "payload_crc32c",
			      (json_int_t)b->payload_crc32c, "min_ts_ns", (json_int_t)b->min_ts_ns,
			      "max_ts_ns", (json_int_t)b->max_ts_ns, "record_count",
			      (json_int_t)b->record_count);
		if (!o || json_array_append_new(blocks, o))
			goto out;
		if (b->max_ts_ns > newest)
			newest = b->max_ts_ns;
		total += b->bytes;
	}
	snprintf(hex, sizeof(hex), "%016" PRIx64, j->segment_id);
	if (json_object_set_new(root, "format", json_string(TV_PERSIST_MANIFEST_FORMAT)) ||
	    json_object_set_new(root, "version", json_integer(TV_PERSIST_MANIFEST_VERSION)) ||
	    json_object_set_new(root, "segment_id", json_string(hex)) ||
	    json_object_set_new(root, "oldest_ts_ns", json_integer((json_int_t)j->oldest_ts_ns)) ||
	    json_object_set_new(root, "newest_ts_ns", json_integer((json_int_t)newest)) ||
	    json_object_set_new(root, "bytes", json_integer((json_int_t)total)) ||
	    json_object_set_new(root, "blocks", blocks)) {
		blocks = NULL; /* set_new took it, or freed it */
		goto out;
	}
	blocks = NULL;
	*out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!*out)
		goto out;
	*len = strlen(*out);
	ret = 0;
out:
	json_decref(blocks);
	json_decref(root);
	return ret;
}

/* Abort every multipart upload in progress under the segment's directory. */
static int abort_upload(void *arg, const char *key, const char *upload_id)
{
	struct tv_s3 *s3 = arg;
	char e[TV_PERSIST_ERR_LEN];

	/* an abort that fails leaves the upload for the next attempt (the listing sees it) */
	return tv_s3_mpu_abort(s3, key, upload_id, e, sizeof(e));
}

/* Delete the segment's manifest, then every object and upload under its directory, with the
 * client S3 (the worker's, or the loop's at start-up: never one client on two threads). 0, or
 * the first error with err naming it. */
static int delete_segment_objects(struct tv_persist *p, struct tv_s3 *s3, uint64_t segment_id,
				  uint64_t oldest, char *err, size_t errlen)
{
	char key[TV_PERSIST_KEY_LEN];
	int ret;

	tv_persist_key(p->prefix, segment_id, oldest, 0, 1, 0, key, sizeof(key));
	ret = tv_s3_delete(s3, key, err, errlen);
	if (ret)
		return ret;
	tv_persist_key(p->prefix, segment_id, oldest, 0, 0, 1, key, sizeof(key));
	ret = tv_s3_delete_prefix(s3, key, NULL, err, errlen);
	if (ret)
		return ret;
	return tv_s3_list_multipart_uploads(s3, key, abort_upload, s3, err, errlen);
}

/* A delete that failed goes to the retry list (the worker's). */
static void retry_later(struct tv_persist *p, struct tv_persist_job *d)
{
	d->retry_ms = d->retry_ms ? d->retry_ms * 2 : TV_PERSIST_CLEANUP_RETRY_MIN_MS;
	if (d->retry_ms > TV_PERSIST_CLEANUP_RETRY_MAX_MS)
		d->retry_ms = TV_PERSIST_CLEANUP_RETRY_MAX_MS;
	d->retry_at_ns = tv_monotonic_ns() + (uint64_t)d->retry_ms * 1000000ull;
	d->next = p->retry;
	p->retry = d;
	tv_metric_add(&p->st->cleanup_pending, 1);
}

/* A delete is confirmed: D (a JOB_DELETE, or NULL: a new one for SEGMENT_ID) goes to the
 * settled list, for the loop's journal. Without memory the journal row stays, and the next
 * start deletes again (idempotent). */
static void settle_push(struct tv_persist *p, struct tv_persist_job *d, uint64_t segment_id,
			int64_t submit_real_ns)
{
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (!d)
			return;
		d->kind = JOB_DELETE;
		d->segment_id = segment_id;
		d->submit_real_ns = submit_real_ns;
	}
	pthread_mutex_lock(&p->mu);
	d->next = p->settled;
	p->settled = d;
	tv_metric_add(&p->nsettled, 1);
	pthread_mutex_unlock(&p->mu);
}

/* One delete attempt; the job goes to the settled list, or is kept for a retry. */
static void run_delete(struct tv_persist *p, struct tv_persist_job *d)
{
	char e[TV_PERSIST_ERR_LEN];
	int ret = delete_segment_objects(p, p->s3, d->segment_id, d->oldest_ts_ns, e, sizeof(e));

	if (!ret) {
		tv_metric_add(&p->st->deleted_segments, 1);
		if (d->retry_ms)
			fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 " deleted "
				"from s3://%s after a retry\n", d->segment_id, p->bucket);
		settle_push(p, d, d->segment_id, d->submit_real_ns);
		return;
	}
	tv_metric_add(&p->st->delete_failures, 1);
	if (!d->retry_ms) /* logged once, not at every retry */
		fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 ": delete from "
			"S3 failed, retrying every %d..%d ms: %s\n", d->segment_id,
			TV_PERSIST_CLEANUP_RETRY_MIN_MS, TV_PERSIST_CLEANUP_RETRY_MAX_MS, e);
	retry_later(p, d);
}

/* A segment id is used once in the bucket too (UNDERSTORE.md "Two servers, one bucket"): -EEXIST
 * and err when the segment's manifest key exists already (another server's segment of this id
 * and hour, an earlier attempt's complete upload, or a committed segment a client writes
 * again), 0 when it does not, or the HEAD's error. */
static int manifest_absent(struct tv_persist *p, const struct tv_persist_job *j, char *err,
			   size_t errlen)
{
	char key[TV_PERSIST_KEY_LEN];
	uint64_t size;
	int ret;

	tv_persist_key(p->prefix, j->segment_id, j->oldest_ts_ns, 0, 1, 0, key, sizeof(key));
	ret = tv_s3_head(p->s3, key, &size, NULL, err, errlen);
	if (ret == -ENOENT)
		return 0;
	if (ret == 0) {
		errf(err, errlen, "s3://%s/%s exists already: segment id %016" PRIx64 " is used in "
		     "the bucket (by another server on it, or an earlier write of this segment)",
		     p->bucket, key, j->segment_id);
		return -EEXIST;
	}
	return ret;
}

/* An async-through upload whose manifest key exists (manifest_absent said -EEXIST): an earlier
 * try of this very upload wrote it and the crash or the failure came before the catalog knew
 * (1), or it is another writer's segment of the same id (0). Equal bytes decide: the manifest is
 * a function of the segment's catalog rows (manifest_build). 1, 0, or a negative errno of
 * the GET (j->err). */
static int manifest_is_ours(struct tv_persist *p, struct tv_persist_job *j,
			    const char *manifest, size_t mlen)
{
	char key[TV_PERSIST_KEY_LEN];
	uint64_t size;
	char *got;
	int ret;

	tv_persist_key(p->prefix, j->segment_id, j->oldest_ts_ns, 0, 1, 0, key, sizeof(key));
	ret = tv_s3_head(p->s3, key, &size, NULL, j->err, sizeof(j->err));
	if (ret)
		return ret == -ENOENT ? 0 : ret;
	if (size != mlen)
		return 0;
	got = malloc(mlen ? mlen : 1);
	if (!got)
		return -ENOMEM;
	ret = tv_s3_get_range(p->s3, key, 0, mlen, got, j->err, sizeof(j->err));
	if (!ret)
		ret = memcmp(got, manifest, mlen) == 0;
	free(got);
	return ret;
}

/* PUT block i of job j on client s3: its file (j->dir_fd: tmp/ for cache-through, blocks/ for
 * async-through), opened by name now, streamed. 0, or a negative errno with err naming what
 * failed; *local 1 when it was the file. */
static int put_block(struct tv_persist *p, struct tv_s3 *s3, const struct tv_persist_job *j,
		     size_t i, char *err, size_t errlen, int *local)
{
	const struct tv_persist_block *b = &j->blocks[i];
	char key[TV_PERSIST_KEY_LEN];
	struct stat st;
	int fd, ret = 0;

	tv_persist_key(p->prefix, j->segment_id, j->oldest_ts_ns, b->block_id, 0, 0, key,
		       sizeof(key));
	/* O_NOFOLLOW: the name is the store's, but a symlink planted there is not read through */
	fd = openat(j->dir_fd, b->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		ret = -errno;
	else if (fstat(fd, &st))
		ret = -errno;
	else if ((uint64_t)st.st_size != b->bytes)
		ret = -EIO;
	if (ret) {
		*local = 1;
		errf(err, errlen, "block %016" PRIx64 ": %s file %s: %s", b->block_id,
		     j->kind == JOB_ASYNC ? "block" : "temp", b->name,
		     ret == -EIO && fd >= 0 ? "not the block's size" : strerror(-ret));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	ret = tv_s3_put_file(s3, key, fd, 0, b->bytes, &p->lim, err, errlen);
	close(fd);
	return ret;
}

/* The blocks of one job, shared by its upload threads: each takes the next block not yet
 * taken until none is left or one has failed. */
struct put_blocks {
	struct tv_persist *p;
	struct tv_persist_job *j;
	pthread_mutex_t mu;
	size_t next;    /* under mu */
	int ret, local; /* under mu: the first failure */
	uint64_t bytes; /* under mu: bytes of the blocks in S3 */
};

struct put_lane {
	struct put_blocks *pb;
	struct tv_s3 *s3;
	pthread_t thread;
};

static void *put_lane_main(void *arg)
{
	struct put_lane *l = arg;
	struct put_blocks *pb = l->pb;
	char e[TV_PERSIST_ERR_LEN];

	for (;;) {
		size_t i;
		int ret, local = 0;

		pthread_mutex_lock(&pb->mu);
		if (pb->ret || pb->next >= pb->j->n) {
			pthread_mutex_unlock(&pb->mu);
			return NULL;
		}
		i = pb->next++;
		pthread_mutex_unlock(&pb->mu);
		ret = put_block(pb->p, l->s3, pb->j, i, e, sizeof(e), &local);
		pthread_mutex_lock(&pb->mu);
		if (!ret) {
			pb->bytes += pb->j->blocks[i].bytes;
		} else if (!pb->ret) {
			pb->ret = ret;
			pb->local = local;
			snprintf(pb->j->err, sizeof(pb->j->err), "%s", e);
		}
		pthread_mutex_unlock(&pb->mu);
	}
}

/* Every block of j in S3, on up to nlanes connections at once: the worker's thread is one
 * lane, each other lane a thread of its own for this job (a thread that cannot be started
 * leaves its blocks to the others). Returns after every PUT has ended, so that a cleanup that
 * follows a failure never races a PUT still under way: 0, or the first failure (j->err, and
 * *local as put_block), *bytes the bytes of the blocks stored. */
static int put_blocks(struct tv_persist *p, struct tv_persist_job *j, uint64_t *bytes,
		      int *local)
{
	struct put_blocks pb = { .p = p, .j = j };
	struct put_lane lanes[TV_PERSIST_CONNECTIONS_MAX];
	unsigned n = p->nlanes < j->n ? p->nlanes : (unsigned)j->n, started = 0;

	pthread_mutex_init(&pb.mu, NULL);
	for (unsigned k = 1; k < n; k++) {
		lanes[started] = (struct put_lane){ .pb = &pb, .s3 = p->lanes[k] };
		if (!pthread_create(&lanes[started].thread, NULL, put_lane_main, &lanes[started]))
			started++;
	}
	put_lane_main(&(struct put_lane){ .pb = &pb, .s3 = p->s3 });
	for (unsigned k = 0; k < started; k++)
		pthread_join(lanes[k].thread, NULL);
	pthread_mutex_destroy(&pb.mu);
	*bytes = pb.bytes;
	*local = pb.local;
	return pb.ret;
}

/* Every block of J (opened by name in j->dir_fd; put_blocks), then the manifest, written with
 * If-None-Match: * once a HEAD found its key free (manifest_absent). 0, or the first error with
 * j->err naming it; *local 1 when the error is a block file's (gone, unreadable, not its
 * size), not S3's; *touched 0 when nothing was PUT (the HEAD failed or found the key taken).
 * -EEXIST: the segment id is another's in the bucket (nothing of its directory may be
 * deleted); except that an async-through upload finding its own manifest (manifest_is_ours:
 * an earlier try wrote it) is done, 0. */
static int put_objects(struct tv_persist *p, struct tv_persist_job *j, int *local, int *touched)
{
	char key[TV_PERSIST_KEY_LEN];
	char *manifest = NULL;
	size_t mlen = 0;
	uint64_t bytes = 0;
	int ret;

	*local = 0;
	*touched = 0;
	ret = manifest_build(j, &manifest, &mlen);
	if (ret) {
		errf(j->err, sizeof(j->err), "manifest: %s", strerror(-ret));
		return ret;
	}
	/* checked before the first block goes: a block PUT could replace another segment's
	 * object of the same key */
	ret = manifest_absent(p, j, j->err, sizeof(j->err));
	if (ret == -EEXIST && j->kind == JOB_ASYNC) {
		int ours = manifest_is_ours(p, j, manifest, mlen);

		if (ours == 1) {
			free(manifest);
			return 0;
		}
		if (ours < 0)
			ret = ours; /* the GET failed: an S3 error, retried */
	}
	if (!ret) {
		*touched = 1;
		ret = put_blocks(p, j, &bytes, local);
	}
	if (!ret) {
		tv_persist_key(p->prefix, j->segment_id, j->oldest_ts_ns, 0, 1, 0, key,
			       sizeof(key));
		/* If-None-Match: *: of two servers that passed manifest_absent for one id at once,
		 * one manifest wins and the other PUT fails with -EEXIST (412) */
		ret = tv_s3_put_object_if_absent(p->s3, key, manifest, mlen, j->err,
						 sizeof(j->err));
		if (ret == -EEXIST)
			errf(j->err, sizeof(j->err), "s3://%s/%s was written meanwhile (412): segment "
			     "id %016" PRIx64 " is used in the bucket by another writer", p->bucket,
			     key, j->segment_id);
	}
	free(manifest);
	if (!ret) {
		tv_metric_add(&p->st->segments, 1);
		tv_metric_add(&p->st->objects, j->n + 1);
		tv_metric_add(&p->st->bytes, bytes + mlen);
		tv_histogram_observe_ns(&p->st->persist_seconds, tv_monotonic_ns() - j->submit_ns);
	}
	return ret;
}

/* A PUT of a segment whose delete waits in the retry list (an earlier attempt of the same
 * segment id failed, and S3 did not answer its undo): that delete runs first, or the retry
 * would delete the new objects later, under the same keys. 0, or its error (the PUT fails with
 * it: S3 does not answer). */
static int flush_delete(struct tv_persist *p, struct tv_persist_job *j)
{
	struct tv_persist_job **pp = &p->retry;

	while (*pp && (*pp)->segment_id != j->segment_id)
		pp = &(*pp)->next;
	if (!*pp)
		return 0;
	{
		struct tv_persist_job *d = *pp;
		int ret = delete_segment_objects(p, p->s3, d->segment_id, d->oldest_ts_ns, j->err,
						 sizeof(j->err));

		if (ret) {
			tv_metric_add(&p->st->delete_failures, 1);
			return ret; /* d stays for its retry */
		}
		*pp = d->next;
		tv_metric_set(&p->st->cleanup_pending, tv_metric_get(&p->st->cleanup_pending) - 1);
		tv_metric_add(&p->st->deleted_segments, 1);
		free(d); /* not settled: the new attempt's journal row is the segment's now */
	}
	return 0;
}

/* A PUT job (cache-through): every block, then the manifest. On failure, what reached S3 is
 * deleted (or left to a retried delete when S3 does not answer), and j->err says what
 * failed. */
static void undo_put(struct tv_persist *p, struct tv_persist_job *j);

static void run_put(struct tv_persist *p, struct tv_persist_job *j)
{
	int ret, local = 0, touched = 0;

	ret = flush_delete(p, j);
	if (ret) { /* nothing of this attempt reached S3; the waiting delete covers the rest */
		size_t l = strlen(j->err);

		snprintf(j->err + l, sizeof(j->err) - l, " (the delete of an earlier attempt of "
			 "the segment, retried)");
		j->res = ret;
		tv_metric_add(&p->st->failures[failure_reason(ret)], 1);
		return;
	}
	ret = put_objects(p, j, &local, &touched);
	j->res = ret;
	if (!ret)
		return;
	tv_metric_add(&p->st->failures[local ? TV_PERSIST_FAIL_LOCAL : failure_reason(ret)], 1);
	/* nothing of this job reached S3 (the manifest check failed); or the directory is another
	 * segment's, which a delete would remove (block objects this job put before a lost race
	 * stay there, listed by no manifest: readers ignore them). Either way the journal's
	 * 'uploading' row is settled without a delete: at start-up it would delete the other's. */
	if (!touched || ret == -EEXIST) {
		settle_push(p, NULL, j->segment_id, j->submit_real_ns);
		return;
	}
	undo_put(p, j); /* nothing of a failed segment stays in the bucket */
}

/* Delete what put job J put into S3 (it failed, or its segment was given up), now, on the
 * worker; when S3 does not answer, the delete waits in the retry list and j->err says so. */
static void undo_put(struct tv_persist *p, struct tv_persist_job *j)
{
	char e[TV_PERSIST_ERR_LEN];

	if (delete_segment_objects(p, p->s3, j->segment_id, j->oldest_ts_ns, e, sizeof(e))) {
		struct tv_persist_job *d = calloc(1, sizeof(*d));
		size_t l = strlen(j->err);

		tv_metric_add(&p->st->delete_failures, 1);
		snprintf(j->err + l, sizeof(j->err) - l, "; its objects are deleted from S3 when "
			 "it answers again (retried)");
		if (d) {
			d->kind = JOB_DELETE;
			d->p = p;
			d->segment_id = j->segment_id;
			d->oldest_ts_ns = j->oldest_ts_ns;
			d->submit_real_ns = j->submit_real_ns;
			retry_later(p, d);
		}
	} else {
		tv_metric_add(&p->st->deleted_segments, 1);
		settle_push(p, NULL, j->segment_id, j->submit_real_ns);
	}
}

/* One try of an async-through upload (the head of aq). 0 when its manifest is written; a
 * local failure (the block file) is final; an S3 failure returns with *retry 1: nothing is
 * deleted (the next try writes the same keys; without a manifest nothing is read). */
static int run_async(struct tv_persist *p, struct tv_persist_job *j, int *retry)
{
	int local, touched, ret = put_objects(p, j, &local, &touched);

	/* -EEXIST: another writer's segment of this id, final like a local failure */
	*retry = ret && !local && ret != -EEXIST;
	if (ret && !*retry)
		tv_metric_add(&p->st->failures[local ? TV_PERSIST_FAIL_LOCAL :
					       failure_reason(ret)], 1);
	return ret;
}

/* Run the deletes whose retry time has come (all of them when force). */
static void run_retries(struct tv_persist *p, int force)
{
	struct tv_persist_job *due = NULL, **pp = &p->retry;
	uint64_t now = tv_monotonic_ns();

	while (*pp) {
		struct tv_persist_job *d = *pp;

		if (force || d->retry_at_ns <= now) {
			*pp = d->next;
			d->next = due;
			due = d;
			tv_metric_set(&p->st->cleanup_pending,
				      tv_metric_get(&p->st->cleanup_pending) - 1);
		} else {
			pp = &d->next;
		}
	}
	while (due) {
		struct tv_persist_job *d = due;

		due = d->next;
		run_delete(p, d);
	}
}

/* Worker (or loop), under mu: hand a finished job to the loop and wake it. */
static void to_done(struct tv_persist *p, struct tv_persist_job *j)
{
	uint64_t one = 1;

	j->next = NULL;
	if (p->done_tail)
		p->done_tail->next = j;
	else
		p->done_head = j;
	p->done_tail = j;
	if (write(p->efd, &one, sizeof(one)) < 0) {
		/* an eventfd write fails only at a counter of 2^64-1: the loop is awake */
	}
}

/* Worker, under mu, aq_head idle and due: one try of it (mu released meanwhile). A failure on
 * the S3 side keeps it at the head for the next try, after the backoff. */
static void async_turn(struct tv_persist *p)
{
	struct tv_persist_job *a = p->aq_head;
	int retry, res;

	p->aq_running = 1;
	pthread_mutex_unlock(&p->mu);
	res = run_async(p, a, &retry);
	pthread_mutex_lock(&p->mu);
	p->aq_running = 0;
	if (retry && !a->cancelled && !p->async_stop) {
		if (!p->aq_retry_ms)
			fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 ": upload "
				"failed, retrying every %d..%d ms (it is committed locally): %s\n",
				a->segment_id, TV_PERSIST_ASYNC_RETRY_MIN_MS,
				TV_PERSIST_ASYNC_RETRY_MAX_MS, a->err);
		p->aq_retry_ms = p->aq_retry_ms ? p->aq_retry_ms * 2 :
						  TV_PERSIST_ASYNC_RETRY_MIN_MS;
		if (p->aq_retry_ms > TV_PERSIST_ASYNC_RETRY_MAX_MS)
			p->aq_retry_ms = TV_PERSIST_ASYNC_RETRY_MAX_MS;
		p->aq_retry_at_ns = tv_monotonic_ns() + (uint64_t)p->aq_retry_ms * 1000000ull;
		tv_metric_add(&p->st->retries, 1);
		return;
	}
	if (p->aq_retry_ms && !res)
		fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 " uploaded after "
			"retries: S3 answers again\n", a->segment_id);
	p->aq_retry_ms = 0;
	p->aq_retry_at_ns = 0;
	p->aq_head = a->next; /* the running head is never unlinked by the loop */
	if (!p->aq_head)
		p->aq_tail = NULL;
	a->res = a->cancelled ? -ECANCELED : res;
	to_done(p, a);
}

/* The worker: todo first (cache-through puts, deletes), then the deletes whose retry is due,
 * then the head of async-through's queue when its backoff is over; else it sleeps until the
 * next of those times or a submit. */
static void *worker_main(void *arg)
{
	struct tv_persist *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct tv_persist_job *j = p->todo_head;
		uint64_t next = UINT64_MAX, now;
		struct timespec ts;

		if (j) {
			p->todo_head = j->next;
			if (!p->todo_head)
				p->todo_tail = NULL;
			pthread_mutex_unlock(&p->mu);
			if (j->kind == JOB_DELETE) {
				run_delete(p, j); /* settles or keeps it; no done callback */
				pthread_mutex_lock(&p->mu);
				continue;
			}
			run_put(p, j);
			pthread_mutex_lock(&p->mu);
			j->finished = 1;
			if (j->detached && !j->res) {
				/* given up meanwhile: undone before the next job, which may be a
				 * later attempt of the same segment id under the same keys */
				pthread_mutex_unlock(&p->mu);
				undo_put(p, j);
				pthread_mutex_lock(&p->mu);
			}
			pthread_mutex_unlock(&p->mu);
			run_retries(p, 0);
			pthread_mutex_lock(&p->mu);
			to_done(p, j);
			continue;
		}
		if (p->stopping)
			break;
		now = tv_monotonic_ns();
		for (struct tv_persist_job *d = p->retry; d; d = d->next)
			if (d->retry_at_ns < next)
				next = d->retry_at_ns;
		if (next <= now) {
			pthread_mutex_unlock(&p->mu);
			run_retries(p, 0);
			pthread_mutex_lock(&p->mu);
			continue;
		}
		if (p->aq_head) {
			if (p->aq_retry_at_ns <= now) {
				async_turn(p);
				continue;
			}
			if (p->aq_retry_at_ns < next)
				next = p->aq_retry_at_ns;
		}
		if (next == UINT64_MAX) {
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		ts.tv_sec = (time_t)(next / 1000000000ull);
		ts.tv_nsec = (long)(next % 1000000000ull);
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	}
	pthread_mutex_unlock(&p->mu);
	run_retries(p, 1); /* once more at shutdown */
	return NULL;
}

/* ---- the loop's side ---- */

int tv_persist_open(struct tv_persist **out, const struct tv_persist_opts *o, char *err,
		    size_t errlen)
{
	struct tv_persist *p = calloc(1, sizeof(*p));
	pthread_condattr_t ca;
	struct tv_s3 *check = NULL;
	int ret;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->efd = -1;
	p->local.blocks_fd = -1;
	p->async = o->async;
	p->must_cache = o->must_cache;
	p->qsegments = o->queue_segments ? o->queue_segments : TV_PERSIST_DEFAULT_QUEUE_SEGMENTS;
	p->qbytes = o->queue_bytes ? o->queue_bytes : TV_PERSIST_DEFAULT_QUEUE_BYTES;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the retry times are monotonic */
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	snprintf(p->prefix, sizeof(p->prefix), "%s", o->prefix);
	snprintf(p->bucket, sizeof(p->bucket), "%s", o->bucket);
	p->lim = o->put_limits;
	p->st = o->stats;
	ret = tv_s3_put_limits_check(&p->lim, err, errlen);
	if (ret)
		goto fail;
	ret = tv_s3_open(&check, o->endpoint, o->region, o->bucket, o->access_key, o->secret_key,
			 err, errlen);
	if (ret)
		goto fail;
	p->s3_loop = check; /* kept for tv_persist_delete_now */
	ret = tv_s3_head_bucket(check, err, errlen);
	if (ret)
		goto fail;
	ret = tv_s3_open(&p->s3, o->endpoint, o->region, o->bucket, o->access_key,
			 o->secret_key, err, errlen);
	if (ret)
		goto fail;
	p->nlanes = o->connections ? o->connections : TV_PERSIST_CONNECTIONS_DEFAULT;
	if (tv_limit_check(&tv_persist_connections_limit, p->nlanes)) {
		ret = -EINVAL;
		errf(err, errlen, "--s3-connections %u: want 1 to %d", p->nlanes,
		     TV_PERSIST_CONNECTIONS_MAX);
		goto fail;
	}
	for (unsigned k = 1; k < p->nlanes; k++) { /* no connection until the first PUT */
		ret = tv_s3_open(&p->lanes[k], o->endpoint, o->region, o->bucket, o->access_key,
				 o->secret_key, err, errlen);
		if (ret)
			goto fail;
	}
	p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->efd < 0) {
		ret = -errno;
		errf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	ret = -pthread_create(&p->worker, NULL, worker_main, p);
	if (ret) {
		errf(err, errlen, "start the under-store's thread: %s", strerror(-ret));
		goto fail;
	}
	p->started = 1;
	*out = p;
	return 0;
fail:
	tv_persist_close(p);
	return ret;
}

void tv_persist_close(struct tv_persist *p)
{
	if (!p)
		return;
	if (p->started) {
		pthread_mutex_lock(&p->mu);
		p->stopping = 1;
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->worker, NULL);
	}
	while (p->retry) {
		struct tv_persist_job *d = p->retry;
		char key[TV_PERSIST_KEY_LEN];

		p->retry = d->next;
		tv_persist_key(p->prefix, d->segment_id, d->oldest_ts_ns, 0, 0, 1, key, sizeof(key));
		fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 " not deleted from "
			"S3 at exit: delete s3://%s/%s* by hand\n", d->segment_id, p->bucket, key);
		free(d);
	}
	while (p->done_head) {
		struct tv_persist_job *j = p->done_head;

		p->done_head = j->next;
		free(j->blocks);
		free(j);
	}
	/* async uploads never run: their segments stay 'queued' in the journal */
	while (p->aq_head) {
		struct tv_persist_job *j = p->aq_head;

		p->aq_head = j->next;
		free(j->blocks);
		free(j);
	}
	while (p->settled) {
		struct tv_persist_job *d = p->settled;

		p->settled = d->next;
		free(d);
	}
	if (p->local.blocks_fd >= 0)
		close(p->local.blocks_fd);
	tv_s3_close(p->s3_loop);
	tv_s3_close(p->s3);
	for (unsigned k = 1; k < TV_PERSIST_CONNECTIONS_MAX; k++)
		tv_s3_close(p->lanes[k]);
	if (p->efd >= 0)
		close(p->efd);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

int tv_persist_event_fd(const struct tv_persist *p)
{
	return p->efd;
}

size_t tv_persist_outstanding(const struct tv_persist *p)
{
	return p->outstanding;
}

static void submit(struct tv_persist *p, struct tv_persist_job *j)
{
	pthread_mutex_lock(&p->mu);
	j->next = NULL;
	if (p->todo_tail)
		p->todo_tail->next = j;
	else
		p->todo_head = j;
	p->todo_tail = j;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* A PUT or ASYNC job of segment_id with its own copy of blocks[0..n), read from dir_fd; NULL
 * when out of memory. */
static struct tv_persist_job *job_new(struct tv_persist *p, enum job_kind kind,
				      uint64_t segment_id, uint64_t oldest_ts_ns, int dir_fd,
				      const struct tv_persist_block *blocks, size_t n)
{
	struct tv_persist_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->blocks = malloc(n * sizeof(*blocks));
	if (!j->blocks) {
		free(j);
		return NULL;
	}
	memcpy(j->blocks, blocks, n * sizeof(*blocks));
	j->kind = kind;
	j->p = p;
	j->segment_id = segment_id;
	j->oldest_ts_ns = oldest_ts_ns;
	j->dir_fd = dir_fd;
	j->n = n;
	return j;
}

int tv_persist_put_segment(struct tv_persist *p, uint64_t segment_id, uint64_t oldest_ts_ns,
			   int tmp_fd, const struct tv_persist_block *blocks, size_t n,
			   tv_persist_done_fn done, void *arg, struct tv_persist_job **job)
{
	struct tv_persist_job *j;

	if (!n)
		return -EINVAL;
	j = job_new(p, JOB_PUT, segment_id, oldest_ts_ns, tmp_fd, blocks, n);
	if (!j)
		return -ENOMEM;
	j->done = done;
	j->arg = arg;
	j->submit_ns = tv_monotonic_ns();
	j->submit_real_ns = (int64_t)tv_realtime_ns();
	p->outstanding++;
	tv_metric_set(&p->st->queued, p->outstanding);
	*job = j;
	submit(p, j);
	return 0;
}

void tv_persist_detach(struct tv_persist_job *job)
{
	struct tv_persist *p = job->p;
	int undo;

	job->done = NULL;
	pthread_mutex_lock(&p->mu);
	job->detached = 1;
	undo = job->finished && !job->res; /* else the worker undoes it when it finishes */
	pthread_mutex_unlock(&p->mu);
	/* now, before the loop submits anything else (a later attempt of the segment id) */
	if (undo && tv_persist_delete_segment(p, job->segment_id, job->oldest_ts_ns))
		fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 " was given up "
			"after it was persisted, and its delete from S3 could not be queued "
			"(out of memory)\n", job->segment_id);
}

/* Loop, under mu: give up segment_id's async upload: unlinked from aq and done with
 * -ECANCELED, or (running) marked, to end so when its try ends. */
static void purge_async(struct tv_persist *p, uint64_t segment_id)
{
	struct tv_persist_job **pp = &p->aq_head, *prev = NULL;

	while (*pp) {
		struct tv_persist_job *a = *pp;

		if (a->segment_id != segment_id || (a == p->aq_head && p->aq_running)) {
			if (a->segment_id == segment_id)
				a->cancelled = 1;
			prev = a;
			pp = &a->next;
			continue;
		}
		*pp = a->next;
		if (p->aq_tail == a)
			p->aq_tail = prev;
		a->res = -ECANCELED;
		to_done(p, a);
	}
}

int tv_persist_delete_segment(struct tv_persist *p, uint64_t segment_id, uint64_t oldest_ts_ns)
{
	struct tv_persist_job *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->kind = JOB_DELETE;
	d->p = p;
	d->segment_id = segment_id;
	d->oldest_ts_ns = oldest_ts_ns;
	d->submit_real_ns = (int64_t)tv_realtime_ns();
	if (p->async_n) {
		pthread_mutex_lock(&p->mu);
		purge_async(p, segment_id);
		pthread_mutex_unlock(&p->mu);
	}
	submit(p, d); /* after the upload running now, if one is: the worker takes todo next */
	return 0;
}

/* Loop: the async gauges from the loop's list and counts. */
static void async_gauges(struct tv_persist *p)
{
	tv_metric_set(&p->st->unpersisted_segments, p->async_n);
	tv_metric_set(&p->st->unpersisted_bytes, p->async_bytes);
	tv_metric_set(&p->st->oldest_unpersisted_ns, p->lhead ? (uint64_t)p->lhead->queued_ns : 0);
}

/* Loop: an async job reaped leaves the loop's list and counts. */
static void async_unlink(struct tv_persist *p, struct tv_persist_job *j)
{
	if (j->lprev)
		j->lprev->lnext = j->lnext;
	else
		p->lhead = j->lnext;
	if (j->lnext)
		j->lnext->lprev = j->lprev;
	else
		p->ltail = j->lprev;
	p->async_n--;
	p->async_bytes -= j->total_bytes;
	async_gauges(p);
}

size_t tv_persist_reap(struct tv_persist *p)
{
	struct tv_persist_job *j;
	uint64_t v;
	size_t count = 0;

	if (read(p->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing signalled since the last read; the list decides */
	}
	pthread_mutex_lock(&p->mu);
	j = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->mu);
	while (j) {
		struct tv_persist_job *next = j->next;

		p->outstanding--;
		if (j->kind == JOB_ASYNC) {
			async_unlink(p, j);
			if (p->local.async_done)
				p->local.async_done(p->local.arg, j->segment_id, j->oldest_ts_ns,
						    j->res, j->err);
		} else if (j->done) {
			j->done(j->arg, j->res, j->err);
		} /* detached: undone by the worker or by tv_persist_detach */
		free(j->blocks);
		free(j);
		j = next;
		count++;
	}
	tv_metric_set(&p->st->queued, p->outstanding);
	return count;
}

/* ---- the journal and async-through (persist.h) ---- */

void tv_persist_attach(struct tv_persist *p, const struct tv_persist_local *l)
{
	if (p->local.blocks_fd >= 0 && p->local.blocks_fd != l->blocks_fd)
		close(p->local.blocks_fd);
	p->local = *l;
}

int tv_persist_is_async(const struct tv_persist *p)
{
	return p->async;
}

int tv_persist_is_must_cache(const struct tv_persist *p)
{
	return p->must_cache;
}

int tv_persist_delete_now(struct tv_persist *p, uint64_t segment_id, uint64_t oldest_ts_ns,
			  char *err, size_t errlen)
{
	int ret = delete_segment_objects(p, p->s3_loop, segment_id, oldest_ts_ns, err, errlen);

	if (!ret)
		tv_metric_add(&p->st->deleted_segments, 1);
	return ret;
}

size_t tv_persist_settle(struct tv_persist *p)
{
	struct tv_persist_job *d;
	size_t n = 0;

	if (!tv_metric_get(&p->nsettled))
		return 0;
	pthread_mutex_lock(&p->mu);
	d = p->settled;
	p->settled = NULL;
	tv_metric_set(&p->nsettled, 0);
	pthread_mutex_unlock(&p->mu);
	while (d) {
		struct tv_persist_job *next = d->next;

		if (p->local.settled)
			p->local.settled(p->local.arg, d->segment_id, d->submit_real_ns);
		free(d);
		d = next;
		n++;
	}
	return n;
}

int tv_persist_queue_fits(const struct tv_persist *p, size_t nsegments, uint64_t bytes)
{
	if (!p->async_n && nsegments <= 1)
		return 1; /* a lone segment goes whatever its size: it could never fit otherwise */
	return p->async_n + nsegments <= p->qsegments && p->async_bytes + bytes <= p->qbytes;
}

int tv_persist_queue_segment(struct tv_persist *p, uint64_t segment_id, uint64_t oldest_ts_ns,
			     int64_t queued_ns, const struct tv_persist_block *blocks, size_t n)
{
	struct tv_persist_job *j;

	if (!n || p->local.blocks_fd < 0)
		return -EINVAL;
	j = job_new(p, JOB_ASYNC, segment_id, oldest_ts_ns, p->local.blocks_fd, blocks, n);
	if (!j)
		return -ENOMEM;
	j->queued_ns = queued_ns;
	for (size_t i = 0; i < n; i++)
		j->total_bytes += blocks[i].bytes;
	j->submit_ns = tv_monotonic_ns();
	/* the loop's list and counts, until tv_persist_reap */
	j->lprev = p->ltail;
	if (p->ltail)
		p->ltail->lnext = j;
	else
		p->lhead = j;
	p->ltail = j;
	p->async_n++;
	p->async_bytes += j->total_bytes;
	p->outstanding++;
	tv_metric_set(&p->st->queued, p->outstanding);
	async_gauges(p);
	pthread_mutex_lock(&p->mu);
	j->next = NULL;
	if (p->aq_tail)
		p->aq_tail->next = j;
	else
		p->aq_head = j;
	p->aq_tail = j;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

size_t tv_persist_unpersisted(const struct tv_persist *p)
{
	return p->async_n;
}

void tv_persist_stop_async(struct tv_persist *p)
{
	struct tv_persist_job *keep = NULL, *a;

	pthread_mutex_lock(&p->mu);
	p->async_stop = 1;
	a = p->aq_head;
	if (a && p->aq_running) { /* it ends with its try (async_turn) */
		keep = a;
		a = a->next;
		keep->next = NULL;
	}
	p->aq_head = p->aq_tail = keep;
	while (a) {
		struct tv_persist_job *next = a->next;

		a->res = -ECANCELED;
		to_done(p, a);
		a = next;
	}
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}
