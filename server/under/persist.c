/* The under-store's persister (persist.h, UNDERSTORE.md): a worker thread that puts segments'
 * blocks and manifests into S3 and deletes segments from it, for the server's loop. The loop
 * queues jobs (todo), the worker runs them one at a time in order and moves each to done,
 * writing the eventfd; the loop's tv_persist_reap runs their callbacks. Deletes that S3 did
 * not answer wait in the worker's own retry list. */
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

enum job_kind { JOB_PUT, JOB_DELETE };

struct tv_persist_job {
	enum job_kind kind;
	struct tv_persist *p;
	uint64_t segment_id, oldest_ts_ns;
	int tmp_fd;
	struct tv_persist_block *blocks; /* JOB_PUT: n, owned */
	size_t n;
	tv_persist_done_fn done; /* JOB_PUT: NULL once detached (loop only) */
	void *arg;
	int res;
	char err[TV_PERSIST_ERR_LEN];
	uint64_t submit_ns;
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
	 * each used by one upload thread at a time (run_put) */
	struct tv_s3 *lanes[TV_PERSIST_CONNECTIONS_MAX];
	unsigned nlanes;
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
};

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
	struct tv_persist *p = arg;
	char e[TV_PERSIST_ERR_LEN];

	/* an abort that fails leaves the upload for the next attempt (the listing sees it) */
	return tv_s3_mpu_abort(p->s3, key, upload_id, e, sizeof(e));
}

/* Delete the segment's manifest, then every object and upload under its directory. 0, or the
 * first error with err naming it. */
static int delete_segment_objects(struct tv_persist *p, uint64_t segment_id, uint64_t oldest,
				  char *err, size_t errlen)
{
	char key[TV_PERSIST_KEY_LEN];
	int ret;

	tv_persist_key(p->prefix, segment_id, oldest, 0, 1, 0, key, sizeof(key));
	ret = tv_s3_delete(p->s3, key, err, errlen);
	if (ret)
		return ret;
	tv_persist_key(p->prefix, segment_id, oldest, 0, 0, 1, key, sizeof(key));
	ret = tv_s3_delete_prefix(p->s3, key, NULL, err, errlen);
	if (ret)
		return ret;
	return tv_s3_list_multipart_uploads(p->s3, key, abort_upload, p, err, errlen);
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

/* One delete attempt; the job is freed, or kept for a retry. */
static void run_delete(struct tv_persist *p, struct tv_persist_job *d)
{
	char e[TV_PERSIST_ERR_LEN];
	int ret = delete_segment_objects(p, d->segment_id, d->oldest_ts_ns, e, sizeof(e));

	if (!ret) {
		tv_metric_add(&p->st->deleted_segments, 1);
		if (d->retry_ms)
			fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 " deleted "
				"from s3://%s after a retry\n", d->segment_id, p->bucket);
		free(d);
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

/* PUT block i of job j on client s3: its temp file, opened by name now, streamed. 0, or a
 * negative errno with err naming what failed; *local 1 when it was the temp file. */
static int put_block(struct tv_persist *p, struct tv_s3 *s3, const struct tv_persist_job *j,
		     size_t i, char *err, size_t errlen, int *local)
{
	const struct tv_persist_block *b = &j->blocks[i];
	char key[TV_PERSIST_KEY_LEN];
	struct stat st;
	int fd, ret = 0;

	tv_persist_key(p->prefix, j->segment_id, j->oldest_ts_ns, b->block_id, 0, 0, key,
		       sizeof(key));
	/* O_NOFOLLOW: the name is the store's, but a symlink planted in tmp/ is not read
	 * through */
	fd = openat(j->tmp_fd, b->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		ret = -errno;
	else if (fstat(fd, &st))
		ret = -errno;
	else if ((uint64_t)st.st_size != b->bytes)
		ret = -EIO;
	if (ret) {
		*local = 1;
		errf(err, errlen, "block %016" PRIx64 ": temp file %s: %s", b->block_id, b->name,
		     ret == -EIO && fd >= 0 ? "not the block's size" : strerror(-ret));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	ret = tv_s3_put_file(s3, key, fd, 0, b->bytes, &p->lim, err, errlen);
	close(fd);
	return ret;
}

/* The blocks of one PUT job, shared by its upload threads: each takes the next block not yet
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

/* A PUT job: every block (put_blocks), then the manifest. On failure, what reached S3 is
 * deleted (or left to a retried delete when S3 does not answer), and j->err says what failed;
 * except when the segment's manifest key is another's (-EEXIST): then nothing is deleted,
 * since the directory is that segment's. */
static void run_put(struct tv_persist *p, struct tv_persist_job *j)
{
	char key[TV_PERSIST_KEY_LEN], e[TV_PERSIST_ERR_LEN];
	char *manifest = NULL;
	size_t mlen = 0;
	uint64_t bytes = 0;
	int ret, local = 0, touched = 0;

	/* checked before the first block goes: a block PUT could replace another segment's
	 * object of the same key */
	ret = manifest_absent(p, j, j->err, sizeof(j->err));
	if (!ret) {
		touched = 1;
		ret = put_blocks(p, j, &bytes, &local);
	}
	if (!ret) {
		ret = manifest_build(j, &manifest, &mlen);
		if (ret)
			errf(j->err, sizeof(j->err), "manifest: %s", strerror(-ret));
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
	j->res = ret;
	if (!ret) {
		tv_metric_add(&p->st->segments, 1);
		tv_metric_add(&p->st->objects, j->n + 1);
		tv_metric_add(&p->st->bytes, bytes + mlen);
		tv_histogram_observe_ns(&p->st->persist_seconds, tv_monotonic_ns() - j->submit_ns);
		return;
	}
	tv_metric_add(&p->st->failures[local ? TV_PERSIST_FAIL_LOCAL : failure_reason(ret)], 1);
	/* nothing of this job reached S3 (the manifest check failed); or the directory is another
	 * segment's, which a delete would remove (block objects this job put before a lost race
	 * stay there, listed by no manifest: readers ignore them) */
	if (!touched || ret == -EEXIST)
		return;
	/* undo: nothing of a failed segment stays in the bucket */
	if (delete_segment_objects(p, j->segment_id, j->oldest_ts_ns, e, sizeof(e))) {
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
			retry_later(p, d);
		}
	} else {
		tv_metric_add(&p->st->deleted_segments, 1);
	}
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

static void *worker_main(void *arg)
{
	struct tv_persist *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct tv_persist_job *j = p->todo_head;
		uint64_t one = 1;

		if (!j) {
			uint64_t next = UINT64_MAX;
			struct timespec ts;

			if (p->stopping)
				break;
			for (struct tv_persist_job *d = p->retry; d; d = d->next)
				if (d->retry_at_ns < next)
					next = d->retry_at_ns;
			if (next == UINT64_MAX) {
				pthread_cond_wait(&p->cv, &p->mu);
				continue;
			}
			if (next > tv_monotonic_ns()) {
				ts.tv_sec = (time_t)(next / 1000000000ull);
				ts.tv_nsec = (long)(next % 1000000000ull);
				pthread_cond_timedwait(&p->cv, &p->mu, &ts);
				continue;
			}
			pthread_mutex_unlock(&p->mu);
			run_retries(p, 0);
			pthread_mutex_lock(&p->mu);
			continue;
		}
		p->todo_head = j->next;
		if (!p->todo_head)
			p->todo_tail = NULL;
		pthread_mutex_unlock(&p->mu);
		if (j->kind == JOB_DELETE) {
			run_delete(p, j); /* frees or keeps it; no done callback */
			pthread_mutex_lock(&p->mu);
			continue;
		}
		run_put(p, j);
		run_retries(p, 0);
		pthread_mutex_lock(&p->mu);
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
	ret = tv_s3_head_bucket(check, err, errlen);
	tv_s3_close(check);
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

int tv_persist_put_segment(struct tv_persist *p, uint64_t segment_id, uint64_t oldest_ts_ns,
			   int tmp_fd, const struct tv_persist_block *blocks, size_t n,
			   tv_persist_done_fn done, void *arg, struct tv_persist_job **job)
{
	struct tv_persist_job *j;

	if (!n)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->blocks = malloc(n * sizeof(*blocks));
	if (!j->blocks) {
		free(j);
		return -ENOMEM;
	}
	memcpy(j->blocks, blocks, n * sizeof(*blocks));
	j->kind = JOB_PUT;
	j->p = p;
	j->segment_id = segment_id;
	j->oldest_ts_ns = oldest_ts_ns;
	j->tmp_fd = tmp_fd;
	j->n = n;
	j->done = done;
	j->arg = arg;
	j->submit_ns = tv_monotonic_ns();
	p->outstanding++;
	tv_metric_set(&p->st->queued, p->outstanding);
	*job = j;
	submit(p, j);
	return 0;
}

void tv_persist_detach(struct tv_persist_job *job)
{
	job->done = NULL;
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
	submit(p, d);
	return 0;
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
		if (j->done)
			j->done(j->arg, j->res, j->err);
		else if (!j->res && tv_persist_delete_segment(p, j->segment_id, j->oldest_ts_ns))
			fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 " was "
				"given up while it was persisted, and its delete from S3 could "
				"not be queued (out of memory)\n", j->segment_id);
		free(j->blocks);
		free(j);
		j = next;
		count++;
	}
	tv_metric_set(&p->st->queued, p->outstanding);
	return count;
}
