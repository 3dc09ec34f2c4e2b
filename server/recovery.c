/* Start-up recovery (see recovery.h and server/RECOVERY.md): tmp/ first (finish or drop what a
 * crash left), then blocks/ against the catalog, matched by block id on two sorted lists so that
 * a restart with N blocks costs one directory read and one catalog scan, not N file reads. */
#include "server/recovery.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "server/quarantine.h"
#include "server/retention.h"
#include "server/verify.h"

enum event { EV_ADOPT, EV_RENAME, EV_REPAIR, EV_DROP, EV_FINISH, EV_COUNT };

struct entry {
	char *name; /* owned */
	enum tv_store_name_kind kind;
	uint64_t segment_id, block_id;
	int regular;
};

struct row {
	uint64_t block_id, segment_id;
};

struct ctx {
	struct tv_catalog *c;
	struct tv_store *s;
	struct tv_recovery_report *rep;
	unsigned logged[EV_COUNT];
	struct entry *ents;
	size_t nents, ents_cap;
	struct row *rows;
	size_t nrows, rows_cap;
	struct tv_catalog_block *adopt;
	size_t nadopt, adopt_cap;
	uint64_t *drop;
	size_t ndrop, drop_cap;
	int blocks_changed, tmp_changed;
};

static int grow(void *pp, size_t *cap, size_t n, size_t elem)
{
	void **p = pp;
	size_t ncap;
	void *np;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 64;
	np = realloc(*p, ncap * elem);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

/* One log line about an event, up to TV_RECOVERY_LOG_LINES of each kind. */
static void note(struct ctx *x, enum event ev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void note(struct ctx *x, enum event ev, const char *fmt, ...)
{
	va_list ap;

	if (x->logged[ev]++ >= TV_RECOVERY_LOG_LINES)
		return;
	fputs("recovery: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void free_entries(struct ctx *x)
{
	for (size_t i = 0; i < x->nents; i++)
		free(x->ents[i].name);
	x->nents = 0;
}

static int collect_entry(const struct tv_store_entry *e, void *arg)
{
	struct ctx *x = arg;
	struct entry *d;

	if (grow(&x->ents, &x->ents_cap, x->nents, sizeof(*x->ents)))
		return -ENOMEM;
	d = &x->ents[x->nents];
	d->name = strdup(e->name);
	if (!d->name)
		return -ENOMEM;
	d->kind = e->kind;
	d->segment_id = e->segment_id;
	d->block_id = e->block_id;
	d->regular = e->regular;
	x->nents++;
	return 0;
}

static int collect_row(const struct tv_catalog_block *b, void *arg)
{
	struct ctx *x = arg;

	if (grow(&x->rows, &x->rows_cap, x->nrows, sizeof(*x->rows)))
		return -ENOMEM;
	x->rows[x->nrows++] = (struct row){ .block_id = b->block_id, .segment_id = b->segment_id };
	return 0;
}

static int cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

static int cmp_row(const void *a, const void *b)
{
	return cmp_u64(((const struct row *)a)->block_id, ((const struct row *)b)->block_id);
}

/* By block id; within one id, format-1 names before legacy ones, then by segment: the order in
 * which a file of that block is chosen. */
static int cmp_entry(const void *pa, const void *pb)
{
	const struct entry *a = pa, *b = pb;
	int r = cmp_u64(a->block_id, b->block_id);

	if (!r)
		r = (a->kind == TV_STORE_LEGACY) - (b->kind == TV_STORE_LEGACY);
	if (!r)
		r = cmp_u64(a->segment_id, b->segment_id);
	return r ? r : strcmp(a->name, b->name);
}

static int quarantine(struct ctx *x, enum tv_store_area area, const char *name,
		      const char *reason)
{
	int ret = tv_quarantine_file(x->s, area, name, reason);

	if (!ret)
		x->rep->quarantined++;
	/* a file that cannot be moved stays where it is, unlisted: logged, found again at the
	 * next start; not a reason to refuse serving everything else */
	return ret == -ENOMEM ? ret : 0;
}

/* Read name (in blocks/, or tmp/ when in_tmp) and check it is block block_id (verify.h's byte
 * checks, its header's id, the catalog's ts_ns range): 0 with *row filled (segment_id and
 * committed_ns left to the caller), 1 when it is not a servable block (reason in why), or a
 * negative errno (out of memory). */
static int check_file(struct ctx *x, const char *name, int in_tmp, uint64_t block_id,
		      struct tv_catalog_block *row, char *why, size_t whylen)
{
	struct tv_block_header h;
	int64_t mtime_ns = 0;
	void *buf = NULL;
	size_t len = 0;
	int ret;

	ret = in_tmp ? tv_store_read_temp(x->s, name, TV_SERVER_MAX_BLOCK_BYTES, &buf, &len) :
		       tv_store_read_named(x->s, name, TV_SERVER_MAX_BLOCK_BYTES, &buf, &len,
					   &mtime_ns);
	if (ret == -ENOMEM)
		return ret;
	if (ret == -EFBIG) {
		snprintf(why, whylen, "larger than the server's block limit (%u bytes)",
			 TV_SERVER_MAX_BLOCK_BYTES);
		return 1;
	}
	if (ret) {
		snprintf(why, whylen, "cannot read it: %s", strerror(-ret));
		return 1;
	}
	ret = tv_verify_block_bytes(buf, len, &h, why, whylen);
	free(buf);
	if (ret == -EPROTONOSUPPORT) {
		size_t used = strlen(why);

		snprintf(why + used, whylen - used, " (a format this tracevaultd does not read)");
		return 1;
	}
	if (ret)
		return 1;
	if (h.block_id != block_id) {
		snprintf(why, whylen, "its name says block %016llx, its header block %016llx",
			 (unsigned long long)block_id, (unsigned long long)h.block_id);
		return 1;
	}
	if (h.min_ts_ns > TV_CATALOG_MAX_TS_NS || h.max_ts_ns > TV_CATALOG_MAX_TS_NS) {
		snprintf(why, whylen, "ts_ns beyond 2^63-1, the catalog's range");
		return 1;
	}
	*row = (struct tv_catalog_block){ .block_id = block_id,
					  .min_ts_ns = h.min_ts_ns,
					  .max_ts_ns = h.max_ts_ns,
					  .record_count = h.record_count,
					  .bytes = len,
					  .committed_ns = mtime_ns,
					  .loss = h.loss,
					  .raw_bytes = h.raw_bytes };
	return 0;
}

/* ---- tmp/ ---- */

/* A temp file of a block whose row is committed (same segment): the crash came between the
 * catalog commit and the rename. Check it against its row and move it into blocks/. */
static int finish_commit(struct ctx *x, const struct entry *e, const struct tv_catalog_block *r)
{
	struct tv_catalog_block got;
	char why[256];
	int ret;

	ret = check_file(x, e->name, 1, e->block_id, &got, why, sizeof(why));
	if (ret < 0)
		return ret;
	if (!ret && got.bytes != r->bytes) {
		snprintf(why, sizeof(why), "%llu bytes, its catalog row says %llu",
			 (unsigned long long)got.bytes, (unsigned long long)r->bytes);
		ret = 1;
	}
	if (ret) /* its row is then dropped with the rows whose file is missing */
		return quarantine(x, TV_STORE_AREA_TMP, e->name, why);
	ret = tv_store_publish_temp(x->s, e->segment_id, e->block_id);
	if (ret == -EEXIST) { /* blocks/ has it already: this is a stale copy */
		ret = tv_store_remove_temp(x->s, e->name);
		x->tmp_changed = 1;
		return ret == -ENOENT ? 0 : ret;
	}
	if (ret)
		return ret;
	x->blocks_changed = x->tmp_changed = 1;
	x->rep->temp_finished++;
	note(x, EV_FINISH, "block %016llx of segment %016llx: its catalog row was committed before "
	     "a crash, its rename was not: moved into blocks/", (unsigned long long)e->block_id,
	     (unsigned long long)e->segment_id);
	return 0;
}

static int recover_temp(struct ctx *x)
{
	struct tv_catalog_block r;
	int ret = tv_store_list_temp(x->s, collect_entry, x);

	for (size_t i = 0; !ret && i < x->nents; i++) {
		const struct entry *e = &x->ents[i];

		if (!e->regular) {
			ret = quarantine(x, TV_STORE_AREA_TMP, e->name, "not a regular file");
			continue;
		}
		if (e->kind != TV_STORE_TEMP) {
			ret = quarantine(x, TV_STORE_AREA_TMP, e->name, "not a temp file name "
					 "(tmp/<segment hex>-<block hex>.tmp)");
			continue;
		}
		ret = tv_catalog_get(x->c, e->block_id, &r);
		if (ret < 0)
			break;
		if (ret && r.segment_id == e->segment_id) {
			ret = finish_commit(x, e, &r);
			continue;
		}
		ret = tv_store_remove_temp(x->s, e->name); /* never committed */
		if (ret == -ENOENT)
			ret = 0;
		if (!ret) {
			x->rep->temp_removed++;
			x->tmp_changed = 1;
		}
	}
	free_entries(x);
	if (!ret && x->tmp_changed)
		ret = tv_store_sync_temp_dir(x->s);
	if (!ret && x->rep->temp_removed)
		fprintf(stderr, "recovery: removed %llu uncommitted temp files\n",
			(unsigned long long)x->rep->temp_removed);
	return ret;
}

/* ---- blocks/ ---- */

static int push_adopt(struct ctx *x, const struct tv_catalog_block *b)
{
	if (grow(&x->adopt, &x->adopt_cap, x->nadopt, sizeof(*x->adopt)))
		return -ENOMEM;
	x->adopt[x->nadopt++] = *b;
	return 0;
}

static int push_drop(struct ctx *x, uint64_t block_id)
{
	if (grow(&x->drop, &x->drop_cap, x->ndrop, sizeof(*x->drop)))
		return -ENOMEM;
	x->drop[x->ndrop++] = block_id;
	return 0;
}

/* g[from..n) but g[keep] are second copies of the block kept as (kept_segment, its id):
 * quarantined. */
static int quarantine_rest(struct ctx *x, const struct entry *g, size_t from, size_t n,
			   size_t keep, uint64_t kept_segment)
{
	char why[160], kept[TV_STORE_NAME_BYTES];
	int ret = 0;

	tv_store_block_name(kept_segment, g[keep].block_id, kept, sizeof(kept));
	for (size_t k = from; !ret && k < n; k++) {
		if (k == keep)
			continue;
		snprintf(why, sizeof(why), "a second file of block %016llx (blocks/%s is the one "
			 "kept)", (unsigned long long)g[k].block_id, kept);
		ret = quarantine(x, TV_STORE_AREA_BLOCKS, g[k].name, why);
	}
	return ret;
}

/* Block r is listed; g[0..n) are the files of its id. Keep the one named for r's segment; a
 * legacy name is given r's segment; failing both, a file of another segment is kept and the
 * row takes the name's segment (the name was written with the block, the row may be damaged). */
static int match_row(struct ctx *x, const struct row *r, const struct entry *g, size_t n)
{
	size_t keep = n, k;
	uint64_t kept_segment = r->segment_id;
	int ret;

	for (k = 0; k < n && keep == n; k++)
		if (g[k].kind == TV_STORE_BLOCK && g[k].segment_id == r->segment_id)
			keep = k;
	for (k = 0; k < n && keep == n; k++) {
		if (g[k].kind != TV_STORE_LEGACY)
			continue;
		ret = tv_store_rename_block(x->s, g[k].name, r->segment_id, r->block_id);
		if (ret)
			return ret;
		x->blocks_changed = 1;
		x->rep->renamed++;
		note(x, EV_RENAME, "blocks/%s: renamed for its segment %016llx (the name of "
		     "FORMAT 1)", g[k].name, (unsigned long long)r->segment_id);
		keep = k;
	}
	for (k = 0; k < n && keep == n; k++) {
		ret = tv_catalog_set_segment(x->c, r->block_id, g[k].segment_id);
		if (ret)
			return ret;
		x->rep->repaired++;
		note(x, EV_REPAIR, "block %016llx: the catalog said segment %016llx, its file "
		     "blocks/%s says %016llx: the file's name is kept",
		     (unsigned long long)r->block_id, (unsigned long long)r->segment_id, g[k].name,
		     (unsigned long long)g[k].segment_id);
		kept_segment = g[k].segment_id;
		keep = k;
	}
	if (keep == n) {
		uint64_t oldest_ts_ns;
		int evicted = 0;

		/* an evicted segment's blocks live in the under-store: no file is right
		 * (server/evict.h); its rows stay, with or without --under */
		ret = tv_catalog_under_state(x->c, r->segment_id, &oldest_ts_ns, &evicted);
		if (ret < 0)
			return ret;
		if (ret == 1 && evicted) {
			x->rep->evicted++;
			return 0;
		}
		note(x, EV_DROP, "block %016llx (segment %016llx) is in the catalog but has no file: "
		     "its row is dropped", (unsigned long long)r->block_id,
		     (unsigned long long)r->segment_id);
		return push_drop(x, r->block_id);
	}
	x->rep->listed++;
	return quarantine_rest(x, g, 0, n, keep, kept_segment);
}

/* g[0..n) are the files of a block id the catalog does not list: the first that verifies is
 * adopted (a legacy name gets segment 0, "unknown"), the others quarantined. */
static int adopt_group(struct ctx *x, const struct entry *g, size_t n)
{
	struct tv_catalog_block b;
	char why[256];
	int ret;

	for (size_t k = 0; k < n; k++) {
		ret = check_file(x, g[k].name, 0, g[k].block_id, &b, why, sizeof(why));
		if (ret < 0)
			return ret;
		if (ret) {
			ret = quarantine(x, TV_STORE_AREA_BLOCKS, g[k].name, why);
			if (ret)
				return ret;
			continue;
		}
		b.segment_id = g[k].kind == TV_STORE_LEGACY ? 0 : g[k].segment_id;
		if (g[k].kind == TV_STORE_LEGACY) {
			ret = tv_store_rename_block(x->s, g[k].name, 0, g[k].block_id);
			if (ret)
				return ret;
			x->blocks_changed = 1;
			x->rep->renamed++;
			note(x, EV_RENAME, "blocks/%s: not in the catalog and its name carries no "
			     "segment: adopted as segment 0000000000000000 (unknown)", g[k].name);
		}
		note(x, EV_ADOPT, "block %016llx of segment %016llx was not in the catalog: verified "
		     "and adopted", (unsigned long long)b.block_id, (unsigned long long)b.segment_id);
		ret = push_adopt(x, &b);
		if (ret)
			return ret;
		return quarantine_rest(x, g, k + 1, n, k, b.segment_id);
	}
	return 0;
}

static int recover_blocks(struct ctx *x, char *err, size_t errlen)
{
	size_t i = 0, j = 0, nfiles = 0;
	uint64_t *ids = NULL;
	size_t n = 0;
	int ret;

	ret = tv_catalog_list(x->c, collect_row, x);
	if (!ret)
		ret = tv_store_list_blocks(x->s, collect_entry, x);
	if (ret) {
		snprintf(err, errlen, "recovery: cannot list the catalog and blocks/: %s",
			 strerror(-ret));
		return ret;
	}
	/* what is not a block file goes first; the rest is matched by block id */
	for (size_t k = 0; k < x->nents; k++) {
		struct entry e = x->ents[k];

		if (e.regular && e.kind != TV_STORE_FOREIGN) {
			x->ents[nfiles++] = e;
			continue;
		}
		if (!ret)
			ret = quarantine(x, TV_STORE_AREA_BLOCKS, e.name,
					 !e.regular ? "not a regular file" :
					 "not a block file name "
					 "(blocks/<segment hex>-<block hex>.tvb)");
		free(e.name);
	}
	x->nents = nfiles;
	if (ret)
		goto fail;
	if (x->nrows) /* qsort's base must not be NULL, even for 0 elements */
		qsort(x->rows, x->nrows, sizeof(*x->rows), cmp_row);
	if (nfiles)
		qsort(x->ents, nfiles, sizeof(*x->ents), cmp_entry);
	while (i < nfiles || j < x->nrows) {
		uint64_t id = j < x->nrows && (i >= nfiles || x->rows[j].block_id <= x->ents[i].block_id) ?
				      x->rows[j].block_id : x->ents[i].block_id;
		size_t g = i;

		while (i < nfiles && x->ents[i].block_id == id)
			i++;
		if (j < x->nrows && x->rows[j].block_id == id)
			ret = match_row(x, &x->rows[j++], x->ents + g, i - g);
		else
			ret = adopt_group(x, x->ents + g, i - g);
		if (ret)
			goto fail;
	}
	if (x->nadopt) {
		ret = tv_catalog_adopt(x->c, x->adopt, x->nadopt, err, errlen);
		if (ret)
			goto fail_logged;
		x->rep->adopted = x->nadopt;
	}
	if (x->ndrop) {
		ret = tv_catalog_delete_ids(x->c, x->drop, x->ndrop, &ids, &n);
		free(ids);
		if (ret)
			goto fail;
		x->rep->dropped_rows = x->ndrop;
	}
	if (x->blocks_changed)
		ret = tv_store_sync_blocks_dir(x->s);
	if (ret)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "recovery: %s", strerror(-ret));
fail_logged:
	return ret;
}

static void summary(const struct ctx *x, int rebuilt)
{
	const struct tv_recovery_report *r = x->rep;
	double ms = (double)r->elapsed_ns / 1e6;

	if (rebuilt)
		fprintf(stderr, "recovery: catalog rebuilt from blocks/: %llu blocks adopted, %llu "
			"files quarantined, in %.1f ms\n", (unsigned long long)r->adopted,
			(unsigned long long)r->quarantined, ms);
	fprintf(stderr, "recovery: %llu blocks (%llu listed, %llu adopted, %llu renamed, %llu rows "
		"repaired, %llu rows without a file dropped), %llu files quarantined, temp files: "
		"%llu removed, %llu commits finished; retired segments: %llu finished (%llu files); "
		"%.1f ms\n", (unsigned long long)r->blocks,
		(unsigned long long)r->listed, (unsigned long long)r->adopted,
		(unsigned long long)r->renamed, (unsigned long long)r->repaired,
		(unsigned long long)r->dropped_rows, (unsigned long long)r->quarantined,
		(unsigned long long)r->temp_removed, (unsigned long long)r->temp_finished,
		(unsigned long long)r->retired, (unsigned long long)r->retired_files, ms);
	if (r->evicted) /* a line of its own: tests read the one above */
		fprintf(stderr, "recovery: %llu blocks of evicted segments are in the under-store "
			"(no local file: their rows kept)\n", (unsigned long long)r->evicted);
}

int tv_recover(struct tv_catalog *c, struct tv_store *s, struct tv_recovery_report *rep,
	       char *err, size_t errlen)
{
	struct ctx x = { .c = c, .s = s, .rep = rep };
	uint64_t t0 = tv_monotonic_ns();
	int ret;

	*rep = (struct tv_recovery_report){ 0 };
	/* before tmp/ and blocks/ are matched: a retired segment's files must not be adopted */
	ret = tv_retention_recover(c, s, &rep->retired, &rep->retired_files, err, errlen);
	if (ret)
		goto out;
	ret = recover_temp(&x);
	if (ret) {
		snprintf(err, errlen, "recovery: cannot clear tmp/: %s", strerror(-ret));
		goto out;
	}
	ret = recover_blocks(&x, err, errlen);
	if (!ret)
		ret = tv_catalog_count(c, &rep->blocks);
	if (ret) {
		if (!err[0])
			snprintf(err, errlen, "recovery: %s", strerror(-ret));
		goto out;
	}
	rep->elapsed_ns = tv_monotonic_ns() - t0;
	summary(&x, tv_catalog_is_new(c) && rep->adopted + rep->quarantined > 0);
out:
	free_entries(&x);
	free(x.ents);
	free(x.rows);
	free(x.adopt);
	free(x.drop);
	return ret;
}

/* ---- the catalog file ---- */

/* Move catalog.db and its companions into quarantine/. */
static int set_catalog_aside(struct tv_store *s, const char *why)
{
	static const char *const NAMES[] = { TV_CATALOG_FILE "-wal", TV_CATALOG_FILE "-shm",
					     TV_CATALOG_FILE "-journal", TV_CATALOG_FILE };

	for (size_t i = 0; i < sizeof(NAMES) / sizeof(NAMES[0]); i++) {
		int ret = tv_quarantine_file(s, TV_STORE_AREA_DATA, NAMES[i], why);

		if (ret && ret != -ENOENT)
			return ret;
	}
	return 0;
}

int tv_recovery_open_catalog(struct tv_catalog **out, struct tv_store *s, const char *path,
			     int rebuild, char *err, size_t errlen)
{
	char why[512];
	int ret;

	if (rebuild) {
		ret = set_catalog_aside(s, "replaced by a catalog rebuilt from blocks/ "
					"(--rebuild-catalog)");
		if (ret) {
			snprintf(err, errlen, "cannot move %s aside: %s", path, strerror(-ret));
			return ret;
		}
	}
	ret = tv_catalog_open(out, path, err, errlen);
	if (ret != -EUCLEAN)
		return ret;
	snprintf(why, sizeof(why), "%s", err);
	fprintf(stderr, "recovery: %s: moving it into %s/ and rebuilding the catalog from %s/\n",
		why, TV_STORE_QUARANTINE_DIR, TV_STORE_BLOCKS_DIR);
	ret = set_catalog_aside(s, why);
	if (ret) {
		snprintf(err, errlen, "%s, and it cannot be moved aside: %s", why, strerror(-ret));
		return ret;
	}
	return tv_catalog_open(out, path, err, errlen);
}

int tv_recovery_check_blocks_dir(const char *data_dir, const char *path, char *err,
				 size_t errlen)
{
	struct tv_catalog *c = NULL;
	char ignored[256];
	struct stat st;
	uint64_t n = 0;

	if (stat(path, &st) || st.st_size == 0)
		return 0;
	if (tv_catalog_open(&c, path, ignored, sizeof(ignored)))
		return 0;
	if (tv_catalog_count(c, &n))
		n = 0;
	tv_catalog_close(c);
	if (!n)
		return 0;
	snprintf(err, errlen, "%s/%s is missing but %s lists %llu blocks: restore %s/%s (or move "
		 "%s away to start with an empty store)", data_dir, TV_STORE_BLOCKS_DIR, path,
		 (unsigned long long)n, data_dir, TV_STORE_BLOCKS_DIR, path);
	return -ENOENT;
}
