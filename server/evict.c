/* --local-bytes: eviction passes (E1 the catalog's evicted flag, E2 the unlinks) and the
 * read-back of evicted blocks for queries; the design is in evict.h and
 * server/under/UNDERSTORE.md "Eviction and read-back". */
#include "server/evict.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/metrics.h"

const struct tv_limit tv_evict_local_bytes_limit = { .min = 1, .max = TV_EVICT_MAX_BYTES };

struct tv_evict {
	uint64_t local_bytes;
	struct tv_under_reader *reader;
	struct tv_evict_stats *st;
	struct tv_catalog *c;
	struct tv_store *s;
	bool recache;
};

int tv_evict_new(struct tv_evict **out, const struct tv_evict_opts *o, struct tv_catalog *c,
		 struct tv_store *s, char *err, size_t errlen)
{
	struct tv_evict *e = calloc(1, sizeof(*e));

	*out = NULL;
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	e->local_bytes = o->local_bytes;
	e->reader = o->reader;
	e->st = o->stats;
	e->c = c;
	e->s = s;
	e->recache = o->recache;
	*out = e;
	return 0;
}

void tv_evict_free(struct tv_evict *e)
{
	free(e);
}

/* The segments a pass picks, oldest first, until the local bytes reach the target. */
struct pick {
	uint64_t local, target;
	uint64_t ids[TV_EVICT_PASS_MAX_SEGMENTS];
	uint64_t seg_bytes[TV_EVICT_PASS_MAX_SEGMENTS]; /* of ids[i] */
	uint64_t bytes;
	size_t n;
};

static int pick_one(const struct tv_catalog_evictable *seg, void *arg)
{
	struct pick *p = arg;

	if (p->local <= p->target || p->n == TV_EVICT_PASS_MAX_SEGMENTS)
		return 1; /* stop: enough, or the pass is full */
	p->seg_bytes[p->n] = seg->bytes;
	p->ids[p->n++] = seg->segment_id;
	p->bytes += seg->bytes;
	p->local = p->local > seg->bytes ? p->local - seg->bytes : 0;
	return 0;
}

struct unlink_walk {
	struct tv_store *s;
	uint64_t files, failed;
	int first_err;
};

/* E2 of one block: a file already gone is fine (a crash after an earlier E2). */
static int unlink_one(const struct tv_catalog_block *b, void *arg)
{
	struct unlink_walk *w = arg;
	int ret = tv_store_remove_block(w->s, b->segment_id, b->block_id);

	if (!ret) {
		w->files++;
	} else if (ret != -ENOENT) {
		w->failed++;
		if (!w->first_err)
			w->first_err = ret;
	}
	return 0;
}

/* A segment's blocks as the bucket must hold them (check_picked). */
struct objects_walk {
	struct tv_under_object *o; /* cap, grown by doubling */
	size_t n, cap;
};

static int object_one(const struct tv_catalog_block *b, void *arg)
{
	struct objects_walk *w = arg;

	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct tv_under_object *o = realloc(w->o, cap * sizeof(*o));

		if (!o)
			return -ENOMEM;
		w->o = o;
		w->cap = cap;
	}
	w->o[w->n++] = (struct tv_under_object){ .block_id = b->block_id, .bytes = b->bytes };
	return 0;
}

/* E0: keep in p only the picked segments that are whole in the bucket (one listing each,
 * tv_under_check_segment): a segment with an object missing (a lifecycle rule, a delete
 * behind the server's back) loses its under_persisted row and stays local, never evicted; when
 * the check cannot answer (S3 down), it and the rest stay local this pass. On the loop, as
 * read-back: one LIST per picked segment. Returns the count kept. */
static size_t check_picked(struct tv_evict *e, struct pick *p)
{
	struct objects_walk w = { 0 };
	size_t kept = 0;

	p->bytes = 0;
	for (size_t i = 0; i < p->n && e->reader; i++) {
		char why[TV_UNDER_READ_ERR_LEN];
		uint64_t oldest = 0;
		int evicted = 0, ret;

		w.n = 0;
		ret = tv_catalog_under_state(e->c, p->ids[i], &oldest, &evicted);
		if (ret == 1)
			ret = tv_catalog_segment_blocks(e->c, p->ids[i], object_one, &w);
		else if (ret == 0)
			ret = -ENOENT;
		if (ret < 0)
			continue; /* the catalog cannot say: stays local */
		ret = tv_under_check_segment(e->reader, p->ids[i], oldest, w.o, w.n, why,
					     sizeof(why));
		if (!ret) {
			p->bytes += p->seg_bytes[i];
			p->seg_bytes[kept] = p->seg_bytes[i];
			p->ids[kept++] = p->ids[i];
			continue;
		}
		if (ret == -ENOENT) {
			int r = tv_catalog_under_unpersist(e->c, p->ids[i]);

			tv_metric_add(&e->st->missing_segments, 1);
			fprintf(stderr, "tracevaultd: eviction: segment %016llx is not whole in the "
				"under-store (%s): its local files are its only copy, it is never "
				"evicted%s\n", (unsigned long long)p->ids[i], why,
				r ? "; dropping its persisted mark failed too" : "");
		} else { /* S3 down or failing: the rest would fail alike, each after its timeouts */
			fprintf(stderr, "tracevaultd: eviction: %zu segments stay local this pass: "
				"their objects cannot be checked: %s\n", p->n - i, why);
			break;
		}
	}
	free(w.o);
	return kept;
}

int tv_evict_pass(struct tv_evict *e)
{
	struct pick *p;
	struct unlink_walk w = { .s = e->s };
	uint64_t blocks, total, evicted;
	int ret;

	if (!e->local_bytes)
		return 0;
	/* O(1) first: the catalog's total covers the local bytes */
	ret = tv_catalog_size(e->c, &blocks, &total);
	if (ret || total <= e->local_bytes)
		return ret;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	ret = tv_catalog_local_bytes(e->c, &p->local, &evicted);
	if (ret || p->local <= e->local_bytes)
		goto out;
	p->target = e->local_bytes - e->local_bytes / TV_EVICT_LOW_WATER_DIV;
	ret = tv_catalog_evictable(e->c, pick_one, p);
	if (ret < 0)
		goto out;
	ret = 0;
	if (!p->n)
		goto out; /* only unpersisted segments are local: they stay */
	/* E0: each is whole in the bucket, or its local files are its only copy */
	p->n = check_picked(e, p);
	if (!p->n)
		goto out;
	/* E1: durable before any file goes */
	ret = tv_catalog_mark_evicted(e->c, p->ids, p->n);
	if (ret) {
		fprintf(stderr, "tracevaultd: eviction: catalog transaction marking %zu segments "
			"evicted failed: %s (nothing evicted)\n", p->n, strerror(-ret));
		goto out;
	}
	/* E2 */
	for (size_t i = 0; i < p->n; i++) {
		ret = tv_catalog_segment_blocks(e->c, p->ids[i], unlink_one, &w);
		if (ret && !w.first_err)
			w.first_err = ret;
	}
	tv_metric_add(&e->st->evicted_segments, p->n);
	tv_metric_add(&e->st->evicted_bytes, p->bytes);
	fprintf(stderr, "tracevaultd: eviction: %zu segments (%llu bytes, %llu files) evicted "
		"to the under-store, %llu bytes local (--local-bytes %llu)%s%s\n", p->n,
		(unsigned long long)p->bytes, (unsigned long long)w.files,
		(unsigned long long)p->local, (unsigned long long)e->local_bytes,
		w.first_err ? "; unlink failed: " : "",
		w.first_err ? strerror(-w.first_err) : "");
	ret = (int)p->n;
out:
	if (ret < 0)
		fprintf(stderr, "tracevaultd: eviction pass: %s\n", strerror(-ret));
	free(p);
	return ret;
}

/* Whether every block of a segment has its file in blocks/. */
struct local_walk {
	struct tv_store *s;
	int missing;
};

static int local_one(const struct tv_catalog_block *b, void *arg)
{
	struct local_walk *w = arg;
	uint64_t size;
	int fd, ret = tv_store_open_block(w->s, b->segment_id, b->block_id, &fd, &size);

	if (ret) {
		w->missing = 1;
		return 1; /* stop: one is enough */
	}
	close(fd);
	return 0;
}

/* --recache of block_id, read back into fd: durable in blocks/ first, then, when it was the
 * segment's last block missing, the catalog's flag cleared. A failure leaves the segment
 * evicted (a file linked anyway is only a local copy a query prefers: the same bytes). */
static void recache(struct tv_evict *e, uint64_t segment_id, uint64_t block_id, int fd)
{
	struct local_walk w = { .s = e->s };
	const char *what = "fdatasync the temp file";
	int ret = fdatasync(fd) ? -errno : 0;

	if (!ret) {
		what = "link it into blocks/";
		ret = tv_store_link_block(e->s, segment_id, block_id, fd);
	}
	if (!ret) {
		tv_metric_add(&e->st->recached_blocks, 1);
		what = "list the segment's blocks";
		ret = tv_catalog_segment_blocks(e->c, segment_id, local_one, &w);
		ret = ret == 1 ? 0 : ret;
	}
	if (!ret && !w.missing) {
		what = "clear its evicted flag";
		ret = tv_catalog_mark_cached(e->c, segment_id);
		if (!ret) {
			tv_metric_add(&e->st->recached_segments, 1);
			fprintf(stderr, "tracevaultd: recache: segment %016llx is local again\n",
				(unsigned long long)segment_id);
		}
	}
	if (ret)
		fprintf(stderr, "tracevaultd: recache: block %016llx of segment %016llx: cannot "
			"%s: %s (the segment stays evicted)\n", (unsigned long long)block_id,
			(unsigned long long)segment_id, what, strerror(-ret));
}

int tv_evict_open_block(struct tv_evict *e, struct tv_store *s, uint64_t segment_id,
			uint64_t block_id, uint64_t bytes, int *fd, uint64_t *size, int *remote,
			char *err, size_t errlen)
{
	char why[TV_UNDER_READ_ERR_LEN];
	uint64_t oldest_ts_ns = 0;
	int evicted = 0, ret, r;

	*remote = 0;
	ret = tv_store_open_block(s, segment_id, block_id, fd, size);
	if (ret != -ENOENT || !e)
		return ret;
	r = tv_catalog_under_state(e->c, segment_id, &oldest_ts_ns, &evicted);
	if (r <= 0 || !evicted)
		return ret; /* not evicted (or the catalog cannot say): a missing local file */
	*remote = 1;
	if (!e->reader) {
		snprintf(err, errlen, "block %016llx of segment %016llx is evicted to the "
			 "under-store, and tracevaultd runs without --under: it cannot be read",
			 (unsigned long long)block_id, (unsigned long long)segment_id);
		return -ENOTCONN;
	}
	ret = tv_under_read_block(e->reader, segment_id, oldest_ts_ns, block_id, bytes,
				  tv_store_tmp_dir_fd(s), fd, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "block %016llx of segment %016llx (evicted): %s",
			 (unsigned long long)block_id, (unsigned long long)segment_id, why);
		return ret;
	}
	*size = bytes;
	if (e->recache)
		recache(e, segment_id, block_id, *fd);
	return 0;
}
