/* The under-store's journal, the server's side (under_journal.h): callbacks that keep the
 * catalog's under_pending / under_persisted tables in step with the persister, and the
 * start-up pass over what a crash left in them. All on the server's one thread. */
#define _GNU_SOURCE
#include "server/under_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/block.h"

/* The persister confirmed a delete from S3: the journal row may go. */
static void settled(void *arg, uint64_t segment_id, int64_t since_ns)
{
	struct tv_catalog *c = arg;
	int ret = tv_catalog_under_settled(c, segment_id, since_ns);

	if (ret)
		fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 ": deleted from "
			"S3, but its journal row stays (the next start deletes again): %s\n",
			segment_id, strerror(-ret));
}

/* An async-through upload ended (persist.h's async_done). */
static void async_done(void *arg, uint64_t segment_id, uint64_t oldest_ts_ns, int res,
		       const char *err)
{
	struct tv_catalog *c = arg;
	int ret;

	if (res == -ECANCELED) /* deleted meanwhile, or the server stops: the journal says */
		return;
	if (res == -EEXIST) {
		/* the directory is another writer's segment of this id (persist.c put_objects):
		 * never uploaded into it, never retried; the segment stays local-only */
		ret = tv_catalog_under_pending_drop(c, segment_id);
		fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 ": not uploaded: "
			"%s (it stays local only%s)\n", segment_id, err,
			ret ? "; its journal row stays, the next start tries again" : "");
		return;
	}
	if (res) {
		fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 ": not uploaded: "
			"%s (it stays queued; the next start tries again)\n", segment_id, err);
		return;
	}
	ret = tv_catalog_under_persisted(c, segment_id, oldest_ts_ns);
	if (ret < 0)
		fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 ": uploaded, but "
			"the catalog cannot mark it persisted (the next start uploads it again): "
			"%s\n", segment_id, strerror(-ret));
}

/* Manifest order for a segment rebuilt from the catalog: by oldest record, then block id (the
 * order the client wrote them in is not kept; a reader does not depend on it). */
static int by_time(const void *a, const void *b)
{
	const struct tv_persist_block *x = a, *y = b;

	if (x->min_ts_ns != y->min_ts_ns)
		return x->min_ts_ns < y->min_ts_ns ? -1 : 1;
	return x->block_id < y->block_id ? -1 : x->block_id > y->block_id;
}

struct blocks_acc {
	struct tv_catalog_block *rows;
	size_t n, cap;
};

static int add_row(const struct tv_catalog_block *b, void *arg)
{
	struct blocks_acc *a = arg;

	if (a->n == a->cap) {
		size_t ncap = a->cap ? a->cap * 2 : 16;
		struct tv_catalog_block *p = realloc(a->rows, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		a->rows = p;
		a->cap = ncap;
	}
	a->rows[a->n++] = *b;
	return 0;
}

/* Block (segment_id, r->block_id)'s header from its file in blocks/, into *pb. */
static int block_entry(struct tv_store *s, uint64_t segment_id, const struct tv_catalog_block *r,
		       struct tv_persist_block *pb, char *err, size_t errlen)
{
	uint8_t hdr[TV_BLOCK_MAX_HEADER_BYTES];
	struct tv_block_header h;
	uint64_t size;
	ssize_t got;
	int fd, ret;

	tv_store_block_name(segment_id, r->block_id, pb->name, sizeof(pb->name));
	ret = tv_store_open_block(s, segment_id, r->block_id, &fd, &size);
	if (ret) {
		snprintf(err, errlen, "blocks/%s: %s", pb->name, strerror(-ret));
		return ret;
	}
	got = pread(fd, hdr, sizeof(hdr), 0);
	ret = got < 0 ? -errno : 0;
	close(fd);
	if (!ret)
		ret = tv_block_header_parse(hdr, (size_t)got, &h, NULL, 0);
	if (!ret && (h.block_id != r->block_id || size != r->bytes ||
		     tv_block_total_bytes(&h) != size))
		ret = -EBADMSG;
	if (ret) {
		snprintf(err, errlen, "blocks/%s: its header: %s", pb->name, strerror(-ret));
		return ret;
	}
	pb->block_id = r->block_id;
	pb->bytes = size;
	pb->min_ts_ns = h.min_ts_ns;
	pb->max_ts_ns = h.max_ts_ns;
	pb->record_count = h.record_count;
	pb->header_bytes = h.header_bytes;
	pb->payload_crc32c = h.payload_crc32c;
	return 0;
}

int tv_under_journal_blocks(struct tv_catalog *c, struct tv_store *s, uint64_t segment_id,
			    struct tv_persist_block **out, size_t *n, uint64_t *oldest_ts_ns,
			    char *err, size_t errlen)
{
	struct blocks_acc a = { 0 };
	struct tv_persist_block *pb = NULL;
	int ret;

	*out = NULL;
	*n = 0;
	*oldest_ts_ns = UINT64_MAX;
	ret = tv_catalog_segment_blocks(c, segment_id, add_row, &a);
	if (ret) {
		snprintf(err, errlen, "catalog: %s", strerror(-ret));
		goto out;
	}
	if (!a.n) {
		ret = -ENOENT;
		snprintf(err, errlen, "no blocks in the catalog");
		goto out;
	}
	pb = calloc(a.n, sizeof(*pb));
	if (!pb) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < a.n; i++) {
		ret = block_entry(s, segment_id, &a.rows[i], &pb[i], err, errlen);
		if (ret)
			goto out;
		if (pb[i].min_ts_ns < *oldest_ts_ns)
			*oldest_ts_ns = pb[i].min_ts_ns;
	}
	qsort(pb, a.n, sizeof(*pb), by_time);
	*out = pb;
	*n = a.n;
	pb = NULL;
out:
	free(pb);
	free(a.rows);
	return ret;
}

/* The start-up pass's state and counts (for its log line). */
struct startup {
	struct tv_persist *p;
	struct tv_catalog *c;
	struct tv_store *s;
	size_t deleted, delete_later, queued, gone, broken;
};

static int startup_row(uint64_t segment_id, uint64_t oldest_ts_ns, enum tv_under_pending state,
		       int64_t at_ns, void *arg)
{
	struct startup *st = arg;
	struct tv_persist_block *pb;
	char err[TV_PERSIST_ERR_LEN];
	uint64_t oldest;
	size_t n;
	int ret;

	if (state != TV_UNDER_QUEUED) {
		/* never acknowledged ('uploading'), or removed locally ('deleting'): before
		 * serving, so that a client writing the same segment id again is not undone */
		ret = tv_persist_delete_now(st->p, segment_id, oldest_ts_ns, err, sizeof(err));
		if (!ret) {
			st->deleted++;
			return tv_catalog_under_settled(st->c, segment_id, INT64_MAX);
		}
		fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 " (journal: %s): "
			"delete from S3 failed, retried in the background: %s\n", segment_id,
			state == TV_UNDER_UPLOADING ? "uploading" : "deleting", err);
		st->delete_later++;
		return tv_persist_delete_segment(st->p, segment_id, oldest_ts_ns);
	}
	ret = tv_under_journal_blocks(st->c, st->s, segment_id, &pb, &n, &oldest, err,
				      sizeof(err));
	if (ret == -ENOENT) { /* removed since (its 'deleting' row would have replaced it) */
		st->gone++;
		return tv_catalog_under_pending_drop(st->c, segment_id);
	}
	if (ret == -ENOMEM)
		return ret;
	if (ret) {
		fprintf(stderr, "tracevaultd: under-store: segment %016" PRIx64 " stays queued, "
			"not uploaded: %s\n", segment_id, err);
		st->broken++;
		return 0;
	}
	ret = tv_persist_queue_segment(st->p, segment_id, oldest_ts_ns, at_ns, pb, n);
	free(pb);
	if (!ret)
		st->queued++;
	return ret;
}

int tv_under_journal_start(struct tv_persist *p, struct tv_catalog *c, struct tv_store *s,
			   char *err, size_t errlen)
{
	struct tv_persist_local l = { .settled = settled, .async_done = async_done, .arg = c };
	struct startup st = { .p = p, .c = c, .s = s };
	int ret;

	l.blocks_fd = openat(tv_store_dir_fd(s), TV_STORE_BLOCKS_DIR,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (l.blocks_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "under-store: open " TV_STORE_BLOCKS_DIR "/: %s",
			 strerror(errno));
		return ret;
	}
	tv_persist_attach(p, &l); /* the persister owns blocks_fd from here */
	ret = tv_catalog_under_pending_list(c, startup_row, &st);
	if (ret) {
		snprintf(err, errlen, "under-store: the catalog's journal: %s", strerror(-ret));
		return ret;
	}
	if (st.deleted || st.delete_later || st.queued || st.gone || st.broken)
		fprintf(stderr, "tracevaultd: under-store journal: %zu segments deleted from the "
			"bucket (never acknowledged, or deleted locally), %zu left to a retried "
			"delete, %zu queued for upload again, %zu gone, %zu not uploadable\n",
			st.deleted, st.delete_later, st.queued, st.gone, st.broken);
	return 0;
}
