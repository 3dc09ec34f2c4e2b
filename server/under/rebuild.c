/* The bucket's side of --rebuild-catalog --under (rebuild.h, UNDERSTORE.md "Rebuild from the
 * bucket"): one listing of PREFIX/v1/, read directory by directory (the listing is sorted, so
 * a segment directory's keys come together), each manifest checked against its directory and
 * the listing, each block's header range-GOT; then the duplicate check over every complete
 * segment, then the caller's insert of each. */
#define _GNU_SOURCE
#include "under/rebuild.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "under/s3.h"

/* a segment directory's part of a key after PREFIX/v1/: "YYYY/MM/DD/HH/" + 16 hex + "/" */
#define HOUR_LEN 14
#define DIR_TAIL_LEN (HOUR_LEN + 17)
#define MANIFEST_NAME "manifest.json"
#define WHY_LEN 512

struct tv_rebuild {
	struct tv_s3 *s3;
	char bucket[64];
	char prefix[TV_PERSIST_PREFIX_MAX + 1];
	char list_prefix[TV_PERSIST_PREFIX_MAX + 8]; /* "PREFIX/v1/" or "v1/" */
};

/* an object of the directory being read: a block object's id and size */
struct dir_object {
	uint64_t block_id, size;
};

/* the scan's state across the listing's callbacks */
struct scan {
	struct tv_rebuild *rb;
	struct tv_rebuild_report *rep;
	char dir[TV_PERSIST_KEY_LEN]; /* the directory being read ("" before the first) */
	uint64_t segment_id;          /* from its name */
	int has_manifest;
	uint64_t manifest_bytes;
	struct dir_object *objs;
	size_t nobjs, objs_cap;
	uint64_t other_names; /* keys in the directory that are neither manifest nor block */
	struct tv_rebuild_segment *segs; /* complete segments, in listing order */
	size_t nsegs, segs_cap;
	char *err;
	size_t errlen;
};

static const char *const KIND_LABEL[TV_REBUILD_SKIP_KINDS] = {
	[TV_REBUILD_BAD_MANIFEST] = "bad manifest",
	[TV_REBUILD_UNKNOWN_VERSION] = "unknown manifest format or version",
	[TV_REBUILD_MISSING_OBJECT] = "missing or short object",
	[TV_REBUILD_BAD_HEADER] = "block header disagrees with the manifest",
	[TV_REBUILD_DUPLICATE_ID] = "id in another directory too",
	[TV_REBUILD_LOCAL_CONFLICT] = "differs from the local catalog",
	[TV_REBUILD_NO_MANIFEST] = "no manifest (never acknowledged)",
	[TV_REBUILD_DELETED_LOCALLY] = "deleted in the local catalog",
};

static void whyf(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void whyf(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

/* ---- the report ---- */

/* Append NAME to *LIST (space-separated) while it names fewer than TV_REBUILD_LIST_MAX. */
static void list_add(char **list, uint64_t count_before, const char *name)
{
	size_t had = *list ? strlen(*list) : 0, add = strlen(name);
	char *p;

	if (count_before >= TV_REBUILD_LIST_MAX)
		return;
	p = realloc(*list, had + add + 2);
	if (!p)
		return; /* the summary names fewer; the count is right */
	if (had)
		p[had++] = ' ';
	memcpy(p + had, name, add + 1);
	*list = p;
}

void tv_rebuild_report_skip(struct tv_rebuild_report *rep, enum tv_rebuild_skip kind,
			    const char *dir, const char *why)
{
	fprintf(stderr, "tracevaultd: rebuild: skipped s3://%s/%s (%s): %s\n", rep->bucket, dir,
		KIND_LABEL[kind], why);
	list_add(&rep->listed[kind], rep->skipped[kind], dir);
	rep->skipped[kind]++;
}

int tv_rebuild_report_complete(const struct tv_rebuild_report *rep)
{
	for (int k = 0; k < TV_REBUILD_LOSS_KINDS; k++)
		if (rep->skipped[k])
			return 0;
	return 1;
}

static void print_list(FILE *f, uint64_t count, const char *list)
{
	fprintf(f, "%s", list ? list : "");
	if (count > TV_REBUILD_LIST_MAX)
		fprintf(f, " and %" PRIu64 " more", count - TV_REBUILD_LIST_MAX);
	fputc('\n', f);
}

void tv_rebuild_report_print(const struct tv_rebuild_report *rep, FILE *f)
{
	uint64_t skipped = 0;

	for (int k = 0; k < TV_REBUILD_SKIP_KINDS; k++)
		skipped += rep->skipped[k];
	fprintf(f, "catalog rebuild from %s: %" PRIu64 " objects listed, %" PRIu64 " manifests "
		"read; %" PRIu64 " segments added (%" PRIu64 " blocks, %" PRIu64 " bytes, "
		"evicted), %" PRIu64 " already in the catalog, %" PRIu64 " skipped\n", rep->where,
		rep->objects, rep->manifests, rep->segments_added, rep->blocks_added,
		rep->bytes_added, rep->segments_present, skipped);
	for (int k = 0; k < TV_REBUILD_SKIP_KINDS; k++) {
		if (!rep->skipped[k])
			continue;
		fprintf(f, "skipped, %s: %" PRIu64 ": ", KIND_LABEL[k], rep->skipped[k]);
		print_list(f, rep->skipped[k], rep->listed[k]);
	}
	if (rep->stray_objects) {
		fprintf(f, "ignored, keys outside the layout: %" PRIu64 ": ", rep->stray_objects);
		print_list(f, rep->stray_objects, rep->stray_listed);
	}
	if (rep->unlisted_objects)
		fprintf(f, "ignored, objects in a segment directory its manifest does not list: "
			"%" PRIu64 "\n", rep->unlisted_objects);
}

void tv_rebuild_report_free(struct tv_rebuild_report *rep)
{
	for (int k = 0; k < TV_REBUILD_SKIP_KINDS; k++) {
		free(rep->listed[k]);
		rep->listed[k] = NULL;
	}
	free(rep->stray_listed);
	rep->stray_listed = NULL;
}

/* ---- open, close ---- */

int tv_rebuild_open(struct tv_rebuild **out, const struct tv_rebuild_opts *o, char *err,
		    size_t errlen)
{
	struct tv_rebuild *rb = calloc(1, sizeof(*rb));
	int ret;

	*out = NULL;
	if (!rb)
		return -ENOMEM;
	snprintf(rb->bucket, sizeof(rb->bucket), "%s", o->bucket);
	snprintf(rb->prefix, sizeof(rb->prefix), "%s", o->prefix);
	snprintf(rb->list_prefix, sizeof(rb->list_prefix), "%s%s" TV_PERSIST_LAYOUT "/",
		 o->prefix, *o->prefix ? "/" : "");
	ret = tv_s3_open(&rb->s3, o->endpoint, o->region, o->bucket, o->access_key,
			 o->secret_key, err, errlen);
	if (!ret)
		ret = tv_s3_head_bucket(rb->s3, err, errlen);
	if (ret) {
		tv_rebuild_close(rb);
		return ret;
	}
	*out = rb;
	return 0;
}

void tv_rebuild_close(struct tv_rebuild *rb)
{
	if (!rb)
		return;
	tv_s3_close(rb->s3);
	free(rb);
}

/* ---- reading one segment directory ---- */

static void segment_free(struct tv_rebuild_segment *seg)
{
	for (size_t i = 0; i < seg->n; i++)
		free(seg->blocks[i].header);
	free(seg->blocks);
	seg->blocks = NULL;
	seg->n = 0;
}

/* exactly 16 lower-case hex digits at S (then anything) into *V; 0 or -1 */
static int parse_hex16(const char *s, uint64_t *v)
{
	uint64_t x = 0;

	for (int i = 0; i < 16; i++) {
		char ch = s[i];

		if (ch >= '0' && ch <= '9')
			x = x << 4 | (uint64_t)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			x = x << 4 | (uint64_t)(ch - 'a' + 10);
		else
			return -1;
	}
	*v = x;
	return 0;
}

/* "YYYY/MM/DD/HH/SSSSSSSSSSSSSSSS/" at T (a key after PREFIX/v1/): 0 and *segment_id, or -1 */
static int parse_dir_tail(const char *t, uint64_t *segment_id)
{
	static const char SHAPE[] = "dddd/dd/dd/dd/";

	for (int i = 0; i < HOUR_LEN; i++)
		if (SHAPE[i] == 'd' ? t[i] < '0' || t[i] > '9' : t[i] != SHAPE[i])
			return -1;
	if (parse_hex16(t + HOUR_LEN, segment_id) || t[HOUR_LEN + 16] != '/')
		return -1;
	return 0;
}

/* a named integer field of O in [0, MAX] into *V; 0, or -1 with WHY */
static int get_uint(json_t *o, const char *name, uint64_t max, uint64_t *v, char *why,
		    size_t whylen)
{
	json_t *x = json_object_get(o, name);

	if (!json_is_integer(x) || json_integer_value(x) < 0 ||
	    (uint64_t)json_integer_value(x) > max) {
		whyf(why, whylen, "'%s' missing or not an integer in 0..%" PRIu64, name, max);
		return -1;
	}
	*v = (uint64_t)json_integer_value(x);
	return 0;
}

/* a named field of O that is 16 lower-case hex digits into *V; 0, or -1 with WHY */
static int get_hex(json_t *o, const char *name, uint64_t *v, char *why, size_t whylen)
{
	const char *s = json_string_value(json_object_get(o, name));

	if (!s || strlen(s) != 16 || parse_hex16(s, v)) {
		whyf(why, whylen, "'%s' missing or not 16 lower-case hex digits", name);
		return -1;
	}
	return 0;
}

/* the hour directory of TS_NS, "YYYY/MM/DD/HH/" (tv_persist_key's) into OUT */
static void hour_of(uint64_t ts_ns, char out[HOUR_LEN + 1])
{
	time_t t = (time_t)(ts_ns / 1000000000ull);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, HOUR_LEN + 1, "%04u/%02u/%02u/%02u/", (unsigned)(tm.tm_year + 1900) % 10000,
		 (unsigned)(tm.tm_mon + 1) % 100, (unsigned)tm.tm_mday % 100,
		 (unsigned)tm.tm_hour % 100);
}

/* One element of the manifest's "blocks" into *RB (its header not yet read); 0, or -1 with
 * WHY. */
static int parse_block(json_t *b, struct tv_rebuild_block *rb, char *why, size_t whylen)
{
	uint64_t header_bytes, crc;

	if (!json_is_object(b)) {
		whyf(why, whylen, "not a JSON object");
		return -1;
	}
	if (get_hex(b, "block_id", &rb->block_id, why, whylen) ||
	    get_uint(b, "bytes", INT64_MAX, &rb->bytes, why, whylen) ||
	    get_uint(b, "header_bytes", TV_REBUILD_HEADER_MAX_BYTES, &header_bytes, why,
		     whylen) ||
	    get_uint(b, "payload_crc32c", UINT32_MAX, &crc, why, whylen) ||
	    get_uint(b, "min_ts_ns", INT64_MAX, &rb->min_ts_ns, why, whylen) ||
	    get_uint(b, "max_ts_ns", INT64_MAX, &rb->max_ts_ns, why, whylen) ||
	    get_uint(b, "record_count", UINT32_MAX, &rb->record_count, why, whylen))
		return -1;
	rb->header_bytes = (uint32_t)header_bytes;
	rb->payload_crc32c = (uint32_t)crc;
	return 0;
}

/* The manifest's blocks into seg->blocks (headers not yet read), checked against itself and
 * its directory. 0, or a skip kind with WHY. */
static int parse_manifest(struct scan *sc, json_t *root, struct tv_rebuild_segment *seg,
			  char *why, size_t whylen)
{
	const char *tail = sc->dir + strlen(sc->rb->list_prefix);
	const char *format = json_string_value(json_object_get(root, "format"));
	json_t *version = json_object_get(root, "version"), *blocks;
	uint64_t min_ts = UINT64_MAX, max_ts = 0, total = 0;
	char hour[HOUR_LEN + 1];

	if (!json_is_object(root)) {
		whyf(why, whylen, "not a JSON object");
		return TV_REBUILD_BAD_MANIFEST;
	}
	if (!format || strcmp(format, TV_PERSIST_MANIFEST_FORMAT)) {
		whyf(why, whylen, "format '%s', not '" TV_PERSIST_MANIFEST_FORMAT "'",
		     format ? format : "(none)");
		return TV_REBUILD_UNKNOWN_VERSION;
	}
	if (!json_is_integer(version) ||
	    json_integer_value(version) != TV_PERSIST_MANIFEST_VERSION) {
		whyf(why, whylen, "version %lld: this server reads version %d",
		     json_is_integer(version) ? (long long)json_integer_value(version) : -1LL,
		     TV_PERSIST_MANIFEST_VERSION);
		return TV_REBUILD_UNKNOWN_VERSION;
	}
	if (get_hex(root, "segment_id", &seg->segment_id, why, whylen) ||
	    get_uint(root, "oldest_ts_ns", INT64_MAX, &seg->oldest_ts_ns, why, whylen) ||
	    get_uint(root, "newest_ts_ns", INT64_MAX, &seg->newest_ts_ns, why, whylen) ||
	    get_uint(root, "bytes", INT64_MAX, &seg->bytes, why, whylen))
		return TV_REBUILD_BAD_MANIFEST;
	if (seg->segment_id != sc->segment_id || seg->segment_id == 0) {
		whyf(why, whylen, "segment_id %016" PRIx64 " in the directory of %016" PRIx64,
		     seg->segment_id, sc->segment_id);
		return TV_REBUILD_BAD_MANIFEST;
	}
	hour_of(seg->oldest_ts_ns, hour);
	if (strncmp(hour, tail, HOUR_LEN)) {
		/* the keys are computed from oldest_ts_ns (tv_persist_key): elsewhere, they are not
		 * this segment's */
		whyf(why, whylen, "oldest_ts_ns %" PRIu64 " is in hour %.13s, not the directory's",
		     seg->oldest_ts_ns, hour);
		return TV_REBUILD_BAD_MANIFEST;
	}
	blocks = json_object_get(root, "blocks");
	if (!json_is_array(blocks) || json_array_size(blocks) == 0) {
		whyf(why, whylen, "'blocks' missing, not an array, or empty");
		return TV_REBUILD_BAD_MANIFEST;
	}
	seg->blocks = calloc(json_array_size(blocks), sizeof(*seg->blocks));
	if (!seg->blocks)
		return -ENOMEM;
	for (size_t i = 0; i < json_array_size(blocks); i++) {
		json_t *b = json_array_get(blocks, i);
		struct tv_rebuild_block *rb = &seg->blocks[seg->n];
		const char *object = json_string_value(json_object_get(b, "object"));
		char name[32];

		if (parse_block(b, rb, why, whylen)) {
			size_t l = strlen(why);

			snprintf(why + l, whylen - l, " (block %zu)", i);
			return TV_REBUILD_BAD_MANIFEST;
		}
		seg->n++;
		snprintf(name, sizeof(name), "%016" PRIx64 ".blk", rb->block_id);
		if (!object || strcmp(object, name)) {
			whyf(why, whylen, "block %016" PRIx64 ": object '%s', not '%s'", rb->block_id,
			     object ? object : "(none)", name);
			return TV_REBUILD_BAD_MANIFEST;
		}
		if (rb->block_id == 0 || rb->header_bytes == 0 || rb->header_bytes > rb->bytes ||
		    rb->min_ts_ns > rb->max_ts_ns) {
			whyf(why, whylen, "block %016" PRIx64 ": id 0, header_bytes %u of %" PRIu64
			     " bytes, or min_ts_ns above max_ts_ns", rb->block_id, rb->header_bytes,
			     rb->bytes);
			return TV_REBUILD_BAD_MANIFEST;
		}
		for (size_t k = 0; k < seg->n - 1; k++)
			if (seg->blocks[k].block_id == rb->block_id) {
				whyf(why, whylen, "block %016" PRIx64 " listed twice", rb->block_id);
				return TV_REBUILD_BAD_MANIFEST;
			}
		if (rb->min_ts_ns < min_ts)
			min_ts = rb->min_ts_ns;
		if (rb->max_ts_ns > max_ts)
			max_ts = rb->max_ts_ns;
		total += rb->bytes;
	}
	if (min_ts != seg->oldest_ts_ns || max_ts != seg->newest_ts_ns || total != seg->bytes) {
		whyf(why, whylen, "oldest_ts_ns, newest_ts_ns or bytes (%" PRIu64 ", %" PRIu64 ", %"
		     PRIu64 ") are not its blocks' (%" PRIu64 ", %" PRIu64 ", %" PRIu64 ")",
		     seg->oldest_ts_ns, seg->newest_ts_ns, seg->bytes, min_ts, max_ts, total);
		return TV_REBUILD_BAD_MANIFEST;
	}
	return 0;
}

static int cmp_obj(const void *a, const void *b)
{
	const struct dir_object *x = a, *y = b;

	return x->block_id < y->block_id ? -1 : x->block_id > y->block_id;
}

/* Every block of SEG in the directory's listing with its size (unlisted objects are counted),
 * then each header read. 0, a skip kind with WHY, or a negative errno (S3 failed: sc->err). */
static int check_objects(struct scan *sc, struct tv_rebuild_segment *seg, char *why,
			 size_t whylen)
{
	char key[TV_PERSIST_KEY_LEN + 32]; /* a directory + a name */
	size_t used = 0;

	qsort(sc->objs, sc->nobjs, sizeof(*sc->objs), cmp_obj);
	for (size_t i = 0; i < seg->n; i++) {
		struct tv_rebuild_block *b = &seg->blocks[i];
		struct dir_object want = { .block_id = b->block_id };
		struct dir_object *o = bsearch(&want, sc->objs, sc->nobjs, sizeof(*sc->objs),
					       cmp_obj);

		if (!o) {
			whyf(why, whylen, "block %016" PRIx64 ": its object is not in the bucket",
			     b->block_id);
			return TV_REBUILD_MISSING_OBJECT;
		}
		if (o->size != b->bytes) {
			whyf(why, whylen, "block %016" PRIx64 ": its object has %" PRIu64 " bytes, the "
			     "manifest says %" PRIu64, b->block_id, o->size, b->bytes);
			return TV_REBUILD_MISSING_OBJECT;
		}
		used++;
	}
	sc->rep->unlisted_objects += sc->nobjs - used + sc->other_names;
	for (size_t i = 0; i < seg->n; i++) {
		struct tv_rebuild_block *b = &seg->blocks[i];
		int ret;

		b->header = malloc(b->header_bytes);
		if (!b->header)
			return -ENOMEM;
		snprintf(key, sizeof(key), "%s%016" PRIx64 ".blk", sc->dir, b->block_id);
		ret = tv_s3_get_range(sc->rb->s3, key, 0, b->header_bytes, b->header, sc->err,
				      sc->errlen);
		if (ret == -ENOENT || ret == -ERANGE) {
			/* gone or shortened since the listing (a Delete of it meanwhile) */
			whyf(why, whylen, "block %016" PRIx64 ": header: %s", b->block_id, sc->err);
			return TV_REBUILD_MISSING_OBJECT;
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* The directory read so far is complete: check it, keep its segment or skip it. 0, or a
 * negative errno that stops the scan (S3 failed, out of memory). */
static int finish_dir(struct scan *sc)
{
	struct tv_rebuild_segment seg = { 0 };
	char key[TV_PERSIST_KEY_LEN + 32], why[WHY_LEN]; /* a directory + a name */
	json_error_t jerr;
	json_t *root = NULL;
	char *buf = NULL;
	int ret = 0, kind = -1;

	if (!sc->dir[0])
		return 0;
	snprintf(seg.dir, sizeof(seg.dir), "%s", sc->dir);
	if (!sc->has_manifest) {
		whyf(why, sizeof(why), "%zu objects and no " MANIFEST_NAME " (a persist that never "
		     "finished: a crash, or an undo S3 did not answer)",
		     sc->nobjs + (size_t)sc->other_names);
		kind = TV_REBUILD_NO_MANIFEST;
		goto out;
	}
	if (sc->manifest_bytes == 0 || sc->manifest_bytes > TV_REBUILD_MANIFEST_MAX_BYTES) {
		whyf(why, sizeof(why), MANIFEST_NAME " of %" PRIu64 " bytes (1 to %u)",
		     sc->manifest_bytes, TV_REBUILD_MANIFEST_MAX_BYTES);
		kind = TV_REBUILD_BAD_MANIFEST;
		goto out;
	}
	buf = malloc(sc->manifest_bytes);
	if (!buf) {
		ret = -ENOMEM;
		snprintf(sc->err, sc->errlen, "out of memory for a manifest of %" PRIu64 " bytes",
			 sc->manifest_bytes);
		goto out;
	}
	snprintf(key, sizeof(key), "%s" MANIFEST_NAME, sc->dir);
	ret = tv_s3_get_range(sc->rb->s3, key, 0, sc->manifest_bytes, buf, sc->err, sc->errlen);
	if (ret == -ENOENT || ret == -ERANGE) {
		whyf(why, sizeof(why), "changed since the listing: %s", sc->err);
		kind = ret == -ENOENT ? TV_REBUILD_NO_MANIFEST : TV_REBUILD_BAD_MANIFEST;
		ret = 0;
		goto out;
	}
	if (ret)
		goto out;
	sc->rep->manifests++;
	root = json_loadb(buf, sc->manifest_bytes, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		whyf(why, sizeof(why), "not JSON: line %d: %s", jerr.line, jerr.text);
		kind = TV_REBUILD_BAD_MANIFEST;
		goto out;
	}
	ret = parse_manifest(sc, root, &seg, why, sizeof(why));
	if (ret == 0)
		ret = check_objects(sc, &seg, why, sizeof(why));
	if (ret > 0) {
		kind = ret;
		ret = 0;
	}
	if (ret < 0 || kind >= 0)
		goto out;
	if (sc->nsegs == sc->segs_cap) {
		size_t cap = sc->segs_cap ? 2 * sc->segs_cap : 64;
		struct tv_rebuild_segment *p = realloc(sc->segs, cap * sizeof(*p));

		if (!p) {
			ret = -ENOMEM;
			snprintf(sc->err, sc->errlen, "out of memory for %zu segments", cap);
			goto out;
		}
		sc->segs = p;
		sc->segs_cap = cap;
	}
	sc->segs[sc->nsegs++] = seg;
	seg.blocks = NULL; /* the list owns them now */
	seg.n = 0;
out:
	if (kind >= 0)
		tv_rebuild_report_skip(sc->rep, (enum tv_rebuild_skip)kind, seg.dir, why);
	if (ret == -ENOMEM && !sc->err[0])
		snprintf(sc->err, sc->errlen, "out of memory");
	json_decref(root);
	free(buf);
	segment_free(&seg);
	sc->dir[0] = '\0';
	sc->nobjs = 0;
	sc->other_names = 0;
	sc->has_manifest = 0;
	return ret;
}

/* tv_s3_object_fn: one key of the listing */
static int on_object(void *arg, const char *key, uint64_t size_bytes)
{
	struct scan *sc = arg;
	size_t lp = strlen(sc->rb->list_prefix);
	const char *tail = key + lp, *name = tail + DIR_TAIL_LEN;
	uint64_t segment_id, block_id;
	int ret;

	sc->rep->objects++;
	if (strncmp(key, sc->rb->list_prefix, lp) || strlen(tail) <= DIR_TAIL_LEN ||
	    parse_dir_tail(tail, &segment_id) || lp + DIR_TAIL_LEN >= sizeof(sc->dir)) {
		list_add(&sc->rep->stray_listed, sc->rep->stray_objects, key);
		sc->rep->stray_objects++;
		return 0;
	}
	if (strncmp(key, sc->dir, lp + DIR_TAIL_LEN) || !sc->dir[0]) {
		ret = finish_dir(sc);
		if (ret)
			return ret;
		memcpy(sc->dir, key, lp + DIR_TAIL_LEN);
		sc->dir[lp + DIR_TAIL_LEN] = '\0';
		sc->segment_id = segment_id;
	}
	if (strcmp(name, MANIFEST_NAME) == 0) {
		sc->has_manifest = 1;
		sc->manifest_bytes = size_bytes;
		return 0;
	}
	if (strlen(name) != 20 || strcmp(name + 16, ".blk") || parse_hex16(name, &block_id)) {
		sc->other_names++; /* not ours to read; counted with the unlisted objects */
		return 0;
	}
	if (sc->nobjs == sc->objs_cap) {
		size_t cap = sc->objs_cap ? 2 * sc->objs_cap : 64;
		struct dir_object *p = realloc(sc->objs, cap * sizeof(*p));

		if (!p) {
			snprintf(sc->err, sc->errlen, "out of memory listing %s", sc->dir);
			return -ENOMEM;
		}
		sc->objs = p;
		sc->objs_cap = cap;
	}
	sc->objs[sc->nobjs++] = (struct dir_object){ block_id, size_bytes };
	return 0;
}

/* ---- duplicates and the caller's inserts ---- */

/* an id and the segment (index into scan.segs) that has it */
struct id_at {
	uint64_t id;
	size_t seg;
};

static int cmp_id_at(const void *a, const void *b)
{
	const struct id_at *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->seg < y->seg ? -1 : x->seg > y->seg;
}

/* Mark (dup[i] = index of another segment + 1) every segment that shares its segment id or a
 * block id with another; WHAT[i] says which id. -ENOMEM or 0. */
static int find_duplicates(const struct scan *sc, size_t *dup, uint64_t *what, int *is_block)
{
	size_t nblocks = 0, k = 0;
	struct id_at *ids;

	for (size_t i = 0; i < sc->nsegs; i++)
		nblocks += sc->segs[i].n;
	ids = malloc((nblocks > sc->nsegs ? nblocks : sc->nsegs) * sizeof(*ids) + 1);
	if (!ids)
		return -ENOMEM;
	for (int pass = 0; pass < 2; pass++) {
		k = 0;
		for (size_t i = 0; i < sc->nsegs; i++) {
			if (pass == 0)
				ids[k++] = (struct id_at){ sc->segs[i].segment_id, i };
			else
				for (size_t b = 0; b < sc->segs[i].n; b++)
					ids[k++] = (struct id_at){ sc->segs[i].blocks[b].block_id, i };
		}
		qsort(ids, k, sizeof(*ids), cmp_id_at);
		for (size_t i = 1; i < k; i++) {
			if (ids[i].id != ids[i - 1].id)
				continue;
			for (size_t j = i - 1; j <= i; j++) {
				size_t me = ids[j].seg, other = ids[j == i ? i - 1 : i].seg;

				if (!dup[me]) {
					dup[me] = other + 1;
					what[me] = ids[i].id;
					is_block[me] = pass;
				}
			}
		}
	}
	free(ids);
	return 0;
}

int tv_rebuild_scan(struct tv_rebuild *rb, tv_rebuild_segment_fn fn, void *arg,
		    struct tv_rebuild_report *rep, char *err, size_t errlen)
{
	struct scan sc = { .rb = rb, .rep = rep, .err = err, .errlen = errlen };
	size_t *dup = NULL;
	uint64_t *what = NULL;
	int *is_block = NULL;
	int ret;

	memset(rep, 0, sizeof(*rep));
	snprintf(rep->where, sizeof(rep->where), "s3://%s/%s", rb->bucket, rb->list_prefix);
	snprintf(rep->bucket, sizeof(rep->bucket), "%s", rb->bucket);
	if (errlen)
		err[0] = '\0';
	ret = tv_s3_list(rb->s3, rb->list_prefix, 0, on_object, &sc, err, errlen);
	if (!ret)
		ret = finish_dir(&sc);
	if (ret)
		goto out;
	dup = calloc(sc.nsegs + 1, sizeof(*dup));
	what = calloc(sc.nsegs + 1, sizeof(*what));
	is_block = calloc(sc.nsegs + 1, sizeof(*is_block));
	if (!dup || !what || !is_block || find_duplicates(&sc, dup, what, is_block)) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory checking %zu segments for duplicate ids",
			 sc.nsegs);
		goto out;
	}
	for (size_t i = 0; i < sc.nsegs; i++) {
		const struct tv_rebuild_segment *seg = &sc.segs[i];
		char why[WHY_LEN];

		if (dup[i]) {
			whyf(why, sizeof(why), "%s %016" PRIx64 " is in s3://%s/%s too: two "
			     "segments chose one id (another server's, or a client's reuse); "
			     "neither is rebuilt", is_block[i] ? "block id" : "segment id", what[i],
			     rb->bucket, sc.segs[dup[i] - 1].dir);
			tv_rebuild_report_skip(rep, TV_REBUILD_DUPLICATE_ID, seg->dir, why);
			continue;
		}
		ret = fn(arg, seg, rep, err, errlen);
		if (ret < 0)
			goto out;
		if (ret == TV_REBUILD_ADDED) {
			rep->segments_added++;
			rep->blocks_added += seg->n;
			rep->bytes_added += seg->bytes;
		} else if (ret == TV_REBUILD_PRESENT) {
			rep->segments_present++;
		}
		ret = 0;
	}
out:
	for (size_t i = 0; i < sc.nsegs; i++)
		segment_free(&sc.segs[i]);
	free(sc.segs);
	free(sc.objs);
	free(dup);
	free(what);
	free(is_block);
	return ret;
}
