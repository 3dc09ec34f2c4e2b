/* Retention passes and whole-segment removal (see retention.h for the policy and the steps
 * T1, U, T2; server/RECOVERY.md for what start-up does after a crash between them). All on
 * the server's one thread: no locking. */
#include "server/retention.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/metrics.h"

const struct tv_limit tv_retention_time_limit = { .min = TV_RETENTION_MIN_TIME_NS,
						  .max = TV_RETENTION_MAX_TIME_NS };
const struct tv_limit tv_retention_bytes_limit = { .min = 1, .max = TV_RETENTION_MAX_BYTES };
const struct tv_limit tv_retention_interval_limit = { .min = TV_RETENTION_MIN_INTERVAL_NS,
						      .max = TV_RETENTION_MAX_INTERVAL_NS };
const struct tv_limit tv_retention_grace_limit = { .min = 0, .max = TV_RETENTION_MAX_GRACE_NS };
const struct tv_limit tv_retention_test_delay_limit = { .min = 0,
							.max = TV_RETENTION_MAX_TEST_DELAY_MS };

/* One block file to unlink. */
struct file {
	uint64_t segment_id, block_id;
};

/* A segment whose files were unlinked when blocks/ had been fsynced `syncs` times
 * (tv_store_blocks_syncs): the unlinks are durable once that count has moved past it. */
struct done_seg {
	uint64_t segment_id, syncs;
};

/* Segments past T1 whose files wait for U (and T2). */
struct batch {
	uint64_t seq;          /* tv_query_pool.started at T1: older queries may list them */
	uint64_t at_mono_ns;   /* T1, for the grace */
	uint64_t *segs;
	uint64_t *oldest;      /* per segment: its oldest record (UINT64_MAX: no block seen) */
	size_t nsegs;
	struct file *files;
	size_t nfiles, files_cap;
	size_t unlinked;       /* files[0..unlinked) are done (U runs a few files per turn) */
	int err;               /* the first unlink that failed (negative errno), 0: none */
	char msg[160];         /* and its message */
	uint64_t bytes;
	struct batch *next;
};

struct tv_retention {
	struct tv_retention_opts o;
	struct tv_catalog *c;
	struct tv_store *s;
	struct tv_query_pool *pool;
	struct tv_persist *under; /* --under: removed segments are deleted from S3 too */
	uint64_t next_check_mono_ns; /* the periodic check */
	int again;                   /* the last pass hit TV_RETENTION_PASS_MAX_SEGMENTS */
	uint64_t again_target;       /* and the byte target it had (0: none), for the next */
	int unlinking;               /* U has files left for the next turn (sweep) */
	struct batch *head, *tail;   /* in T1 order */
	/* segments past U whose retiring rows wait for T2, in U order. U does not fsync blocks/
	 * itself: the next commit group's fsync of it makes the unlinks durable (a pass follows
	 * commit groups), and only then may T2 drop the rows, in the next T1's transaction; the
	 * periodic check and exit fsync blocks/ for what is still waiting. ids: scratch for T2. */
	struct done_seg *done;
	uint64_t *ids;
	size_t ndone, done_cap;
	/* logged at exit; segments, blocks and removed_bytes are also the metrics endpoint's
	 * (tv_retention_counters), read from its thread: written with tv_metric_add */
	uint64_t passes, segments, blocks, removed_bytes, pass_ns, max_pass_ns;
};

static int policy(const struct tv_retention *r)
{
	return r->o.time_ns || r->o.bytes;
}

static void batch_free(struct batch *b)
{
	if (!b)
		return;
	free(b->segs);
	free(b->oldest);
	free(b->files);
	free(b);
}

static int add_file(uint64_t segment_id, uint64_t block_id, uint64_t bytes, uint64_t min_ts_ns,
		    void *arg)
{
	struct batch *b = arg;

	for (size_t i = 0; i < b->nsegs; i++) /* at most TV_RETENTION_PASS_MAX_SEGMENTS */
		if (b->segs[i] == segment_id && min_ts_ns < b->oldest[i])
			b->oldest[i] = min_ts_ns;

	if (b->nfiles == b->files_cap) {
		size_t ncap = b->files_cap ? b->files_cap * 2 : 16;
		struct file *p = realloc(b->files, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		b->files = p;
		b->files_cap = ncap;
	}
	b->files[b->nfiles++] = (struct file){ segment_id, block_id };
	b->bytes += bytes;
	return 0;
}

/* Append segs[0..n) to r->done, unlinked now. 0 or -ENOMEM (nothing appended). */
static int push_done(struct tv_retention *r, const uint64_t *segs, size_t n)
{
	int failed;
	uint64_t syncs = tv_store_blocks_syncs(r->s, &failed);

	if (r->ndone + n > r->done_cap) {
		size_t ncap = r->done_cap ? r->done_cap : 64;
		struct done_seg *p;
		uint64_t *ids;

		while (ncap < r->ndone + n)
			ncap *= 2;
		ids = realloc(r->ids, ncap * sizeof(*ids));
		if (!ids)
			return -ENOMEM;
		r->ids = ids;
		p = realloc(r->done, ncap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		r->done = p;
		r->done_cap = ncap;
	}
	for (size_t i = 0; i < n; i++)
		r->done[r->ndone++] = (struct done_seg){ segs[i], syncs };
	return 0;
}

/* How many of r->done (a prefix: U order) have durable unlinks, their ids in r->ids. None
 * once an fsync of blocks/ failed: their rows then stay for start-up. */
static size_t durable_done(struct tv_retention *r)
{
	int failed;
	uint64_t syncs = tv_store_blocks_syncs(r->s, &failed);
	size_t n = 0;

	if (failed)
		return 0;
	while (n < r->ndone && r->done[n].syncs < syncs) {
		r->ids[n] = r->done[n].segment_id;
		n++;
	}
	return n;
}

/* Drop the first n of r->done (their T2 committed). */
static void drop_done(struct tv_retention *r, size_t n)
{
	if (!n)
		return; /* r->done may be NULL: memmove's arguments must not be */
	memmove(r->done, r->done + n, (r->ndone - n) * sizeof(*r->done));
	r->ndone -= n;
}

/* T2 of r->done now, one transaction, after an fsync of blocks/ when an unlink is not durable
 * yet (the periodic check, exit). On failure they stay for the next try (their files are
 * gone: only the rows remain, which start-up drops too). */
static void retired_now(struct tv_retention *r)
{
	size_t n;
	int ret, failed;

	if (!r->ndone)
		return;
	tv_store_blocks_syncs(r->s, &failed);
	if (failed)
		return;
	n = durable_done(r);
	if (n < r->ndone) {
		ret = tv_store_sync_blocks_dir(r->s);
		if (ret) {
			fprintf(stderr, "retention: fsync of blocks/: %s: the retiring rows of %zu "
				"segments stay for the next start\n", strerror(-ret), r->ndone);
			return;
		}
		n = durable_done(r);
	}
	ret = tv_catalog_retired(r->c, r->ids, n);
	if (ret)
		fprintf(stderr, "retention: catalog: cannot drop %zu retiring rows: %s\n", n,
			strerror(-ret));
	else
		drop_done(r, n);
}

/* U of b, at most budget files of it (0: all): unlink them (ENOENT is fine: an earlier
 * attempt got that far); the first failure is kept in b->err and b->msg. Returns the number
 * of files unlinked by this call. */
static size_t unlink_files(struct tv_retention *r, struct batch *b, size_t budget)
{
	char name[TV_STORE_NAME_BYTES];
	size_t n = 0;

	for (; b->unlinked < b->nfiles && (!budget || n < budget); n++) {
		const struct file *f = &b->files[b->unlinked++];
		int rm;

		if (r->o.test_unlink_delay_ms) {
			struct timespec d = { .tv_sec = (time_t)(r->o.test_unlink_delay_ms / 1000),
					      .tv_nsec = (long)(r->o.test_unlink_delay_ms % 1000) *
							 1000000L };

			nanosleep(&d, NULL);
		}
		rm = tv_store_remove_block(r->s, f->segment_id, f->block_id);
		if (rm && rm != -ENOENT && !b->err) {
			tv_store_block_name(f->segment_id, f->block_id, name, sizeof(name));
			snprintf(b->msg, sizeof(b->msg), "cannot unlink blocks/%s: %s", name,
				 strerror(-rm));
			b->err = rm;
		}
	}
	return n;
}

/* After U of b: its segments wait in r->done for T2 (above). now_t2 (a Delete): fsync
 * blocks/ and T2 at once. When an unlink or the fsync failed the retiring rows stay, so the
 * next start finishes (never retried here: see the fsync note in segment.h). Returns 0 or
 * the first negative errno, named in msg. */
static int finish_batch(struct tv_retention *r, const struct batch *b, int now_t2, char *msg,
			size_t msglen)
{
	int ret;

	if (b->err) {
		snprintf(msg, msglen, "%s", b->msg);
		return b->err;
	}
	if (!now_t2 && push_done(r, b->segs, b->nsegs) == 0)
		return 0;
	/* a Delete, or no memory to let them wait: fsync and T2 of this batch at once */
	if (b->nfiles) {
		ret = tv_store_sync_blocks_dir(r->s);
		if (ret) {
			snprintf(msg, msglen, "fsync of blocks/: %s", strerror(-ret));
			return ret;
		}
	}
	ret = tv_catalog_retired(r->c, b->segs, b->nsegs);
	if (ret)
		snprintf(msg, msglen, "catalog: cannot drop the retiring rows: %s", strerror(-ret));
	return ret;
}

/* T1 of segs[0..n) into a new batch (*out). 0 or a negative errno (nothing changed). */
static int retire(struct tv_retention *r, const uint64_t *segs, size_t n, uint64_t writer_token,
		  struct batch **out)
{
	struct batch *b = calloc(1, sizeof(*b));
	size_t ndone;
	int ret;

	*out = NULL;
	if (!b)
		return -ENOMEM;
	b->segs = malloc((n ? n : 1) * sizeof(*b->segs));
	b->oldest = malloc((n ? n : 1) * sizeof(*b->oldest));
	if (!b->segs || !b->oldest) {
		batch_free(b);
		return -ENOMEM;
	}
	memcpy(b->segs, segs, n * sizeof(*segs));
	for (size_t i = 0; i < n; i++)
		b->oldest[i] = UINT64_MAX;
	b->nsegs = n;
	ndone = durable_done(r);
	ret = tv_catalog_retire(r->c, segs, n, writer_token, r->ids, ndone, add_file, b);
	if (ret) {
		batch_free(b);
		return ret;
	}
	drop_done(r, ndone); /* their T2 was this transaction */
	/* past the commit point: their objects go from the under-store too, manifest first
	 * (persist.h), asynchronously and retried; a crash before that leaves them in the bucket
	 * (UNDERSTORE.md "Delete and retention") */
	for (size_t i = 0; r->under && i < n; i++)
		if (b->oldest[i] != UINT64_MAX &&
		    tv_persist_delete_segment(r->under, segs[i], b->oldest[i]))
			fprintf(stderr, "tracevaultd: segment %016llx: cannot queue its delete from "
				"the under-store: out of memory\n", (unsigned long long)segs[i]);
	b->seq = r->pool->started;
	b->at_mono_ns = tv_monotonic_ns();
	*out = b;
	return 0;
}

/* U of the waiting batches whose older queries have ended or whose grace is over, oldest
 * first, at most budget files in this call (0: all): an unlink can take milliseconds on a
 * busy disk (2 ms each measured here, 0.6 s for a pass of 256 segments), and U runs on the
 * server's one thread, so a big removal is spread over the loop's turns (r->unlinking). */
static void sweep(struct tv_retention *r, size_t budget)
{
	uint64_t oldest = tv_query_pool_oldest(r->pool), now = 0;
	size_t spent = 0;

	r->unlinking = 0;
	while (r->head) {
		struct batch *b = r->head;
		char msg[256] = "";
		int ret;

		if (b->seq && oldest < b->seq) {
			if (!now)
				now = tv_monotonic_ns();
			if (now - b->at_mono_ns < r->o.grace_ns)
				return; /* later batches are younger: they wait too */
			fprintf(stderr, "retention: %zu segments waited %llu ms for older queries "
				"(--retain-query-grace): their files go now\n", b->nsegs,
				(unsigned long long)((now - b->at_mono_ns) / TV_NS_PER_MS));
			b->seq = 0; /* its wait is over, also for the next turns */
		}
		if (budget && spent >= budget) {
			r->unlinking = 1;
			return;
		}
		spent += unlink_files(r, b, budget ? budget - spent : 0);
		if (b->unlinked < b->nfiles) {
			r->unlinking = 1;
			return;
		}
		ret = finish_batch(r, b, 0, msg, sizeof(msg));
		if (ret)
			fprintf(stderr, "retention: %s: the files of %zu retired segments are "
				"removed at the next start\n", msg, b->nsegs);
		r->head = b->next;
		if (!r->head)
			r->tail = NULL;
		batch_free(b);
	}
}

int tv_retention_new(struct tv_retention **out, const struct tv_retention_opts *o,
		     struct tv_catalog *c, struct tv_store *s, struct tv_query_pool *pool,
		     char *err, size_t errlen)
{
	struct tv_retention *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	r->o = *o;
	if (!r->o.interval_ns)
		r->o.interval_ns = TV_RETENTION_DEFAULT_INTERVAL_NS;
	r->c = c;
	r->s = s;
	r->pool = pool;
	r->next_check_mono_ns = tv_monotonic_ns(); /* a pass at the first turn of the loop */
	*out = r;
	return 0;
}

void tv_retention_set_under(struct tv_retention *r, struct tv_persist *under)
{
	r->under = under;
}

void tv_retention_counters(const struct tv_retention *r, const uint64_t **segments,
			   const uint64_t **blocks, const uint64_t **bytes)
{
	*segments = &r->segments;
	*blocks = &r->blocks;
	*bytes = &r->removed_bytes;
}

void tv_retention_free(struct tv_retention *r)
{
	if (!r)
		return;
	r->o.grace_ns = 0; /* no query runs any more */
	sweep(r, 0);
	retired_now(r);
	if (r->passes)
		fprintf(stderr, "tracevaultd: retention: %llu pass%s removed %llu segment%s (%llu "
			"block%s, %llu bytes); %.2f ms per pass on average, %.2f ms the longest\n",
			(unsigned long long)r->passes, r->passes == 1 ? "" : "es",
			(unsigned long long)r->segments, r->segments == 1 ? "" : "s",
			(unsigned long long)r->blocks, r->blocks == 1 ? "" : "s",
			(unsigned long long)r->removed_bytes, (double)r->pass_ns / 1e6 / (double)r->passes, (double)r->max_pass_ns / 1e6);
	free(r->done);
	free(r->ids);
	free(r);
}

/* The candidates of a pass, oldest first (tv_catalog_segments_by_age's callback). */
struct choose {
	struct tv_retention *r;
	uint64_t cutoff_ns;      /* newest record before it: expired (0: no age limit) */
	uint64_t remaining;      /* the catalog's bytes minus those chosen so far */
	uint64_t bytes_target;   /* remove oldest while remaining is above it (0: no limit) */
	uint64_t segs[TV_RETENTION_PASS_MAX_SEGMENTS];
	size_t n;
	int full;
};

static int choose(const struct tv_catalog_segment *seg, void *arg)
{
	struct choose *ch = arg;
	int expired = ch->cutoff_ns && seg->newest_ts_ns < ch->cutoff_ns;
	int over = ch->bytes_target && ch->remaining > ch->bytes_target;

	if (!expired && !over)
		return 1; /* ordered by age: no later segment is older, the bytes are within */
	if (ch->n == TV_RETENTION_PASS_MAX_SEGMENTS) {
		ch->full = 1;
		return 1;
	}
	ch->segs[ch->n++] = seg->segment_id;
	ch->remaining -= seg->bytes < ch->remaining ? seg->bytes : ch->remaining;
	return 0;
}

int tv_retention_pass(struct tv_retention *r)
{
	struct choose *ch;
	struct batch *b = NULL;
	uint64_t t0 = tv_monotonic_ns(), now_ns = tv_realtime_ns(), blocks, dt;
	uint64_t carried = r->again_target; /* the target of a pass cut at the cap */
	int ret;

	r->again = 0;
	r->again_target = 0;
	if (!policy(r))
		return 0;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->r = r;
	if (r->o.time_ns && now_ns > r->o.time_ns)
		ch->cutoff_ns = now_ns - r->o.time_ns;
	ret = tv_catalog_size(r->c, &blocks, &ch->remaining);
	/* over the limit: down to the low-water mark, so that the next passes wait for that
	 * much more data instead of following every commit group */
	if (!ret && carried)
		ch->bytes_target = carried; /* the rest of a pass cut at the cap */
	else if (!ret && r->o.bytes && ch->remaining > r->o.bytes)
		ch->bytes_target = r->o.bytes - r->o.bytes / TV_RETENTION_LOW_WATER_DIV;
	if (!ret) {
		ret = tv_catalog_segments_by_age(r->c, choose, ch);
		ret = ret > 0 ? 0 : ret;
	}
	if (ret) {
		fprintf(stderr, "retention: cannot list the segments: %s\n", strerror(-ret));
		goto out;
	}
	if (!ch->n)
		goto out;
	ret = retire(r, ch->segs, ch->n, 0, &b);
	if (ret) {
		/* not again at once: a failing catalog (a full disk) is tried at the next
		 * --retain-interval, not on every turn of the loop */
		fprintf(stderr, "retention: cannot retire %zu segments: catalog: %s\n", ch->n,
			strerror(-ret));
		goto out;
	}
	/* cut at the cap: the rest right after the other work's turn */
	r->again = ch->full;
	r->again_target = ch->full ? ch->bytes_target : 0;
	dt = tv_monotonic_ns() - t0;
	tv_metric_add(&r->segments, b->nsegs);
	tv_metric_add(&r->blocks, b->nfiles);
	tv_metric_add(&r->removed_bytes, b->bytes);
	fprintf(stderr, "retention: removed %zu segments (%zu blocks, %llu bytes), oldest first"
		" (--retain-%s); %llu bytes kept; %.2f ms\n", b->nsegs, b->nfiles,
		(unsigned long long)b->bytes,
		ch->cutoff_ns && r->o.bytes ? "time, --retain-bytes" :
		ch->cutoff_ns ? "time" : "bytes",
		(unsigned long long)ch->remaining, (double)dt / 1e6);
	ret = (int)b->nsegs;
	if (r->tail)
		r->tail->next = b;
	else
		r->head = b;
	r->tail = b;
	sweep(r, TV_RETENTION_UNLINKS_PER_TURN); /* at once when no older query runs */
out:
	/* every pass counts in the figures logged at exit, also one that removed nothing */
	dt = tv_monotonic_ns() - t0;
	r->passes++;
	r->pass_ns += dt;
	if (dt > r->max_pass_ns)
		r->max_pass_ns = dt;
	free(ch);
	return ret;
}

void tv_retention_committed(struct tv_retention *r, uint64_t oldest_ts_ns)
{
	uint64_t now_ns, blocks, bytes;

	if (!policy(r))
		return;
	now_ns = tv_realtime_ns();
	/* the age limit after a commit only for a put of data already past it: what ages
	 * while stored goes at the periodic check, at most one pass per --retain-interval */
	if ((r->o.bytes && (tv_catalog_size(r->c, &blocks, &bytes) || bytes > r->o.bytes)) ||
	    (r->o.time_ns && now_ns > r->o.time_ns && oldest_ts_ns < now_ns - r->o.time_ns))
		tv_retention_pass(r); /* a failed size read too: the pass says why */
}

void tv_retention_tick(struct tv_retention *r)
{
	uint64_t now;

	if (r->head)
		sweep(r, TV_RETENTION_UNLINKS_PER_TURN);
	if (!policy(r))
		return;
	now = tv_monotonic_ns();
	if (!r->again && now < r->next_check_mono_ns)
		return;
	r->next_check_mono_ns = now + r->o.interval_ns;
	tv_retention_pass(r);
	retired_now(r); /* what no pass took along since the last check */
}

int tv_retention_due(const struct tv_retention *r)
{
	return r->again || r->unlinking;
}

int tv_retention_delete_segment(struct tv_retention *r, uint64_t segment_id,
				uint64_t writer_token, uint64_t *blocks, char *msg, size_t msglen)
{
	struct batch *b;
	int ret;

	*blocks = 0;
	ret = retire(r, &segment_id, 1, writer_token, &b);
	if (ret) {
		snprintf(msg, msglen, "segment %016llx: catalog: %s", (unsigned long long)segment_id,
			 strerror(-ret));
		return ret;
	}
	*blocks = b->nfiles;
	unlink_files(r, b, 0);
	ret = finish_batch(r, b, 1, msg, msglen);
	batch_free(b);
	return ret;
}

/* ---- start-up (recovery.c) ---- */

struct leftovers {
	struct tv_store *s;
	const uint64_t *segs;
	size_t nsegs;
	uint64_t files;
	int in_tmp;
	char *names;   /* tmp/ names to unlink after the walk (NUL-separated) */
	size_t len, cap;
	struct file *blocks;
	size_t nblocks, blocks_cap;
};

static int is_retiring(const struct leftovers *l, uint64_t segment_id)
{
	size_t lo = 0, hi = l->nsegs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (l->segs[mid] == segment_id)
			return 1;
		if (l->segs[mid] < segment_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* Collect the entries of retiring segments (a walk must not change its directory). */
static int collect_leftover(const struct tv_store_entry *e, void *arg)
{
	struct leftovers *l = arg;

	if (!e->regular || !is_retiring(l, e->segment_id))
		return 0;
	if (l->in_tmp && e->kind == TV_STORE_TEMP) {
		size_t n = strlen(e->name) + 1;

		if (l->len + n > l->cap) {
			size_t ncap = l->cap ? l->cap * 2 : 1024;
			char *p;

			while (ncap < l->len + n)
				ncap *= 2;
			p = realloc(l->names, ncap);
			if (!p)
				return -ENOMEM;
			l->names = p;
			l->cap = ncap;
		}
		memcpy(l->names + l->len, e->name, n);
		l->len += n;
	} else if (!l->in_tmp && e->kind == TV_STORE_BLOCK) {
		if (l->nblocks == l->blocks_cap) {
			size_t ncap = l->blocks_cap ? l->blocks_cap * 2 : 16;
			struct file *p = realloc(l->blocks, ncap * sizeof(*p));

			if (!p)
				return -ENOMEM;
			l->blocks = p;
			l->blocks_cap = ncap;
		}
		l->blocks[l->nblocks++] = (struct file){ e->segment_id, e->block_id };
	}
	return 0;
}

/* The blocks rows of a retiring segment (none unless the catalog was edited by hand, or an
 * older tracevaultd adopted the files again): their ids, to drop. */
struct stale_rows {
	uint64_t *ids;
	size_t n, cap;
};

static int collect_stale(const struct tv_catalog_block *b, void *arg)
{
	struct stale_rows *st = arg;

	if (st->n == st->cap) {
		size_t ncap = st->cap ? st->cap * 2 : 16;
		uint64_t *p = realloc(st->ids, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		st->ids = p;
		st->cap = ncap;
	}
	st->ids[st->n++] = b->block_id;
	return 0;
}

int tv_retention_recover(struct tv_catalog *c, struct tv_store *s, uint64_t *segments,
			 uint64_t *files, char *err, size_t errlen)
{
	struct leftovers l = { .s = s };
	struct stale_rows st = { 0 };
	uint64_t *segs = NULL, *gone = NULL;
	size_t nsegs = 0, ngone = 0;
	const char *what = "list the retiring segments";
	int ret;

	*segments = *files = 0;
	ret = tv_catalog_retiring(c, &segs, &nsegs);
	if (ret || !nsegs)
		goto out;
	l.segs = segs; /* ascending (tv_catalog_retiring) */
	l.nsegs = nsegs;
	what = "list blocks/";
	ret = tv_store_list_blocks(s, collect_leftover, &l);
	if (ret)
		goto out;
	l.in_tmp = 1;
	what = "list tmp/";
	ret = tv_store_list_temp(s, collect_leftover, &l);
	if (ret)
		goto out;
	what = "unlink a retired block file";
	for (size_t i = 0; i < l.nblocks; i++) {
		ret = tv_store_remove_block(s, l.blocks[i].segment_id, l.blocks[i].block_id);
		if (ret && ret != -ENOENT)
			goto out;
		ret = 0;
		l.files++;
	}
	what = "unlink a retired temp file";
	for (size_t off = 0; off < l.len; off += strlen(l.names + off) + 1) {
		ret = tv_store_remove_temp(s, l.names + off);
		if (ret && ret != -ENOENT)
			goto out;
		ret = 0;
		l.files++;
	}
	what = "drop rows of retiring segments";
	for (size_t i = 0; i < nsegs && !ret; i++)
		ret = tv_catalog_segment_blocks(c, segs[i], collect_stale, &st);
	if (!ret && st.n)
		ret = tv_catalog_delete_ids(c, st.ids, st.n, &gone, &ngone);
	if (ret)
		goto out;
	what = "fsync blocks/ and tmp/";
	ret = tv_store_sync_blocks_dir(s);
	if (!ret)
		ret = tv_store_sync_temp_dir(s);
	if (ret)
		goto out;
	what = "drop the retiring rows";
	ret = tv_catalog_retired(c, segs, nsegs);
	if (ret)
		goto out;
	*segments = nsegs;
	*files = l.files;
	if (st.n)
		fprintf(stderr, "recovery: %zu catalog rows of retired segments dropped\n", st.n);
out:
	if (ret)
		snprintf(err, errlen, "recovery: retired segments: cannot %s: %s", what,
			 strerror(-ret));
	free(segs);
	free(gone);
	free(st.ids);
	free(l.names);
	free(l.blocks);
	return ret;
}
