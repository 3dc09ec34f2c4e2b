/* proto/block_stream.h: a stored block read piece by piece. One pass over the payload checks
 * its CRC32C before any record is handed out (a flipped bit must never reach a client as a
 * record), then a second pass decompresses into a buffer that holds the records not yet taken
 * (at least one whole record, so it grows to the largest one). The second pass sums the CRC
 * again: a file changed in place between the passes is reported at the end of the payload
 * (after records of it went out, but never silently). zstd allocates through
 * z_alloc, which reserves every byte from the caller's budget first, and decodes with its
 * window capped at 2^TV_BLOCK_MAX_WINDOW_LOG: a few KB of payload that claims 256 MiB of raw
 * records costs the same memory as any other block. */
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_createDStream_advanced: zstd allocates via z_alloc */
#include "proto/block_stream.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "common/errf.h"
#include "proto/block_v3.h"
#include "proto/crc32c.h"

#define WHY_LEN 192

_Static_assert(TV_BLOCK_STREAM_OUT_BYTES <= TV_BLOCK_STREAM_MAX_OUT_BYTES,
	       "the record buffer starts below its largest size");
_Static_assert((1u << TV_BLOCK_MAX_WINDOW_LOG) + (1u << 20) + TV_BLOCK_STREAM_MAX_OUT_BYTES +
			       TV_BLOCK_STREAM_READ_BYTES <= TV_BLOCK_STREAM_MAX_MEMORY_BYTES,
	       "TV_BLOCK_STREAM_MAX_MEMORY_BYTES must hold the window, zstd's buffers and tables, "
	       "the read buffer and the largest record");

struct tv_block_stream {
	struct tv_block_header h;
	tv_block_read_fn read;
	void *arg;
	const struct tv_block_budget *budget; /* NULL: no limit */
	size_t held;                          /* bytes reserved, this struct included */
	uint8_t *in;                          /* file bytes read, zstd input: [in_pos, in_len) */
	size_t in_pos, in_len;
	uint64_t off, end;                    /* next file offset to read; end of the payload */
	uint32_t crc;                         /* CRC32C of the payload read by the second pass */
	ZSTD_DStream *z;                      /* NULL for codec none */
	int frame_open;                       /* a zstd frame began and has not ended */
	uint8_t *out;                         /* payload bytes not handed out: [out_pos, out_len) */
	size_t out_cap, out_pos, out_len;
	uint64_t raw_done;                    /* payload bytes produced so far */
	uint32_t seen;                        /* records handed out */
	uint64_t last_ts_ns;
	int mem_ret;                          /* why zstd's last allocation failed (0: it did not) */
	char mem_why[WHY_LEN + 64];
	/* version 3: the directory at open, then one page at a time */
	ZSTD_DCtx *dctx;
	uint8_t *dir;                         /* page_count entries, CRC checked */
	uint8_t *pg;                          /* the stored page being read */
	size_t pg_cap;
	void *work;                           /* its decoder (tv_v3_page_work_bytes) */
	size_t work_cap;
	struct tv_v3_page *page;              /* NULL: none open */
	uint32_t next_page;                   /* the page to open when this one ends */
	uint64_t seek_ts_ns;                  /* rows before this are passed over unbuilt */
	uint64_t rows, pages;                 /* rows decoded, pages opened (measurement) */
	const char *trace_ids;                /* not NULL: pages that cannot hold one are passed */
	size_t ntrace_ids, trace_stride;
	uint64_t page_off;                    /* file offset of page next_page */
	/* tv_block_stream_next_unbuilt's record, left for tv_block_stream_write (its strings
	 * point into the page, valid until the next call) */
	struct tv_v3_record cur;
	bool cur_unbuilt;
};

_Static_assert(TV_BLOCK_V3_MAX_PAGES * TV_BLOCK_V3_PAGE_ENTRY_BYTES +
			       TV_BLOCK_V3_MAX_BLOOM_BYTES + TV_BLOCK_V3_MAX_PAGE_RAW_BYTES +
			       TV_BLOCK_V3_MAX_PAGE_RAW_BYTES + (3u << 19) /* dictionaries */ +
			       TV_BLOCK_STREAM_MAX_OUT_BYTES + TV_BLOCK_STREAM_READ_BYTES +
			       (1u << 20) /* zstd's context, ~100 KiB */ <=
		       TV_BLOCK_STREAM_MAX_MEMORY_BYTES,
	       "a version 3 stream fits TV_BLOCK_STREAM_MAX_MEMORY_BYTES too");

/* zstd's allocations carry their size in front, so z_free can give back what z_alloc took. */
union zhdr {
	size_t size;
	max_align_t align;
};

static int budget_take(const struct tv_block_budget *b, size_t bytes, char *why, size_t whylen)
{
	snprintf(why, whylen, "refused");
	return b && b->reserve ? b->reserve(b->arg, bytes, why, whylen) : 0;
}

static void budget_give(const struct tv_block_budget *b, size_t bytes)
{
	if (b && b->release)
		b->release(b->arg, bytes);
}

/* Reserve, then allocate bytes for what (named in the error). NULL with ret and err set. */
static void *s_alloc(struct tv_block_stream *s, size_t bytes, const char *what, int *ret,
		     char *err, size_t errlen)
{
	char why[WHY_LEN];
	void *p;

	*ret = budget_take(s->budget, bytes, why, sizeof(why));
	if (*ret) {
		tv_errf(err, errlen, 0, "cannot reserve %zu bytes for %s: %s", bytes, what, why);
		return NULL;
	}
	p = malloc(bytes);
	if (!p) {
		budget_give(s->budget, bytes);
		*ret = tv_errf(err, errlen, -ENOMEM, "out of memory allocating %zu bytes for %s",
			       bytes, what);
		return NULL;
	}
	s->held += bytes;
	return p;
}

static void s_free(struct tv_block_stream *s, void *p, size_t bytes)
{
	if (!p)
		return;
	free(p);
	s->held -= bytes;
	budget_give(s->budget, bytes);
}

static void *z_alloc(void *opaque, size_t size)
{
	struct tv_block_stream *s = opaque;
	size_t total = sizeof(union zhdr) + size;
	char why[WHY_LEN];
	union zhdr *p;
	int ret;

	if (size > SIZE_MAX - sizeof(union zhdr)) {
		s->mem_ret = -ENOMEM;
		snprintf(s->mem_why, sizeof(s->mem_why), "zstd asked for %zu bytes", size);
		return NULL;
	}
	ret = budget_take(s->budget, total, why, sizeof(why));
	if (ret) {
		s->mem_ret = ret;
		snprintf(s->mem_why, sizeof(s->mem_why), "cannot reserve %zu bytes for zstd: %s",
			 size, why);
		return NULL;
	}
	p = malloc(total);
	if (!p) {
		budget_give(s->budget, total);
		s->mem_ret = -ENOMEM;
		snprintf(s->mem_why, sizeof(s->mem_why), "out of memory allocating %zu bytes for "
			 "zstd", size);
		return NULL;
	}
	s->held += total;
	p->size = total;
	return p + 1;
}

static void z_free(void *opaque, void *address)
{
	struct tv_block_stream *s = opaque;
	union zhdr *p;

	if (!address)
		return;
	p = (union zhdr *)address - 1;
	s->held -= p->size;
	budget_give(s->budget, p->size);
	free(p);
}

/* len bytes at off into buf: the count read (short only at the end of the file) or a negative
 * errno with err set. */
static ssize_t read_full(struct tv_block_stream *s, uint64_t off, void *buf, size_t len,
			 char *err, size_t errlen)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = s->read(s->arg, off + got, (uint8_t *)buf + got, len - got);

		if (r < 0)
			return tv_errf(err, errlen, (int)r, "read at byte %llu: %s",
				       (unsigned long long)(off + got), strerror((int)-r));
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* Exactly len bytes at off, or -EBADMSG when the file ends first (it was cut after open). */
static int read_exact(struct tv_block_stream *s, uint64_t off, void *buf, size_t len, char *err,
		      size_t errlen)
{
	ssize_t got = read_full(s, off, buf, len, err, errlen);

	if (got < 0)
		return (int)got;
	if ((size_t)got < len)
		return tv_errf(err, errlen, -EBADMSG,
			       "block file ends at byte %llu, header says "
			       "%llu",
			       (unsigned long long)(off + (uint64_t)got),
			       (unsigned long long)s->end);
	return 0;
}

static int check_payload_crc(struct tv_block_stream *s, char *err, size_t errlen)
{
	uint32_t crc = 0;
	int ret;

	for (uint64_t off = s->off; off < s->end;) {
		size_t n = s->end - off < TV_BLOCK_STREAM_READ_BYTES ? (size_t)(s->end - off) :
									 TV_BLOCK_STREAM_READ_BYTES;

		ret = read_exact(s, off, s->in, n, err, errlen);
		if (ret)
			return ret;
		crc = tv_crc32c_extend(crc, s->in, n);
		off += n;
	}
	if (crc != s->h.payload_crc32c)
		return tv_errf(err, errlen, -EBADMSG,
			       "block payload checksum mismatch: stored "
			       "0x%08x, computed 0x%08x",
			       s->h.payload_crc32c, crc);
	return 0;
}

static int zstd_init(struct tv_block_stream *s, char *err, size_t errlen)
{
	ZSTD_customMem mem = { .customAlloc = z_alloc, .customFree = z_free, .opaque = s };
	size_t r;

	s->mem_ret = 0;
	s->z = ZSTD_createDStream_advanced(mem);
	if (!s->z)
		return tv_errf(err, errlen, s->mem_ret ? s->mem_ret : -ENOMEM, "%s",
			       s->mem_ret ? s->mem_why : "cannot create a zstd stream");
	r = ZSTD_DCtx_setParameter(s->z, ZSTD_d_windowLogMax, TV_BLOCK_MAX_WINDOW_LOG);
	if (ZSTD_isError(r))
		return tv_errf(err, errlen, -EINVAL, "zstd window limit: %s", ZSTD_getErrorName(r));
	return 0;
}


/* ---- version 3: the directory, then page by page ---- */

static int v3_open(struct tv_block_stream *s, char *err, size_t errlen)
{
	size_t dl = (size_t)s->h.page_count * TV_BLOCK_V3_PAGE_ENTRY_BYTES;
	int ret;

	if (s->h.page_count == 0)
		return 0;
	s->dir = s_alloc(s, dl, "the page directory", &ret, err, errlen);
	if (!s->dir)
		return ret;
	ret = read_exact(s, s->h.header_bytes, s->dir, dl, err, errlen);
	if (ret)
		return ret;
	if (tv_crc32c(s->dir, dl) != s->h.dir_crc32c)
		return tv_errf(err, errlen, -EBADMSG, "block page directory checksum mismatch");
	ret = tv_v3_directory_check(s->dir, &s->h, err, errlen);
	if (ret)
		return ret;
	s->page_off = s->h.header_bytes + dl + s->h.bloom_bytes;
	if (s->h.codec == TV_CODEC_ZSTD) {
		ZSTD_customMem mem = { .customAlloc = z_alloc, .customFree = z_free, .opaque = s };

		s->mem_ret = 0;
		s->dctx = ZSTD_createDCtx_advanced(mem);
		if (!s->dctx)
			return tv_errf(err, errlen, s->mem_ret ? s->mem_ret : -ENOMEM, "%s",
				       s->mem_ret ? s->mem_why : "cannot create a zstd context");
	}
	return 0;
}

static void v3_entry(const struct tv_block_stream *s, uint32_t i, struct tv_v3_page_entry *e)
{
	tv_v3_page_entry_get(s->dir + (size_t)i * TV_BLOCK_V3_PAGE_ENTRY_BYTES, e);
}

/* Grow the buffer at *p of *cap bytes to hold n (contents dropped), reserved first. */
static int s_room(struct tv_block_stream *s, void **p, size_t *cap, size_t n, const char *what,
		  char *err, size_t errlen)
{
	void *np;
	int ret;

	if (n <= *cap)
		return 0;
	np = s_alloc(s, n, what, &ret, err, errlen);
	if (!np)
		return ret;
	s_free(s, *p, *cap);
	*p = np;
	*cap = n;
	return 0;
}

/* What v3_load returns for a page passed over by the trace-id check (nothing opened). */
#define V3_PASSED 1

/* Read, check and open page next_page: every column (fields 0), or only those of fields
 * (tv_v3_page_open_fields). 0, V3_PASSED, or a negative errno. */
static int v3_load(struct tv_block_stream *s, uint32_t fields, char *err, size_t errlen)
{
	struct tv_v3_page_entry e;
	uint32_t i = s->next_page;
	int ret;

	v3_entry(s, i, &e);
	ret = s_room(s, (void **)&s->pg, &s->pg_cap, e.stored_len, "a page", err, errlen);
	if (!ret)
		ret = s_room(s, &s->work, &s->work_cap, tv_v3_page_work_bytes(&e),
			     "a page's columns", err, errlen);
	if (!ret)
		ret = read_exact(s, s->page_off, s->pg, e.stored_len, err, errlen);
	if (ret)
		return ret;
	if (tv_crc32c(s->pg, e.stored_len) != e.crc32c)
		return tv_errf(err, errlen, -EBADMSG, "block page %u checksum mismatch", i);
	s->mem_ret = 0;
	if (s->trace_ids) {
		ret = tv_v3_page_may_hold_trace(&e, s->pg, s->work, s->dctx, s->trace_ids,
						s->ntrace_ids, s->trace_stride, err, errlen);
		if (ret < 0 && s->mem_ret)
			return tv_errf(err, errlen, s->mem_ret, "%s", s->mem_why);
		if (ret < 0)
			return ret;
		if (ret == 0) { /* none of the ids: no record of it is built */
			s->page_off += e.stored_len;
			s->next_page++;
			s->pages++;
			return V3_PASSED;
		}
	}
	ret = fields ? tv_v3_page_open_fields(&s->page, s->work, &e, s->pg, s->dctx, fields, err,
					      errlen) :
		       tv_v3_page_open(&s->page, s->work, &e, s->pg, s->dctx, err, errlen);
	if (ret) {
		s->page = NULL;
		if (s->mem_ret)
			return tv_errf(err, errlen, s->mem_ret, "%s", s->mem_why);
		return ret;
	}
	s->page_off += e.stored_len;
	s->next_page++;
	s->pages++;
	return 0;
}

/* The next record of a version 3 block. build false: a record made of columns alone is left
 * unbuilt in s->cur (*data NULL) and one kept whole is handed out in place in its page; only a
 * record with kept fields beside its columns is built, so tv_block_stream_write cannot meet a
 * record that does not parse. */
static int v3_next(struct tv_block_stream *s, const uint8_t **data, size_t *len,
		   uint64_t *ts_ns, bool build, char *err, size_t errlen)
{
	struct tv_v3_record *r = &s->cur;
	int ret;

	s->cur_unbuilt = false;

	for (;;) {
		if (!s->page) {
			if (s->next_page == s->h.page_count)
				return 0;
			ret = v3_load(s, 0, err, errlen);
			if (ret < 0)
				return ret;
			if (ret == V3_PASSED)
				continue;
		}
		ret = tv_v3_page_next(s->page, r, err, errlen);
		if (ret < 0)
			return ret;
		if (ret == 0) {
			s->page = NULL;
			continue;
		}
		s->rows++;
		if (r->ts_ns < s->seek_ts_ns)
			continue; /* before the window: the columns moved on, nothing built */
		*len = r->bytes;
		*ts_ns = r->ts_ns;
		s->seen++;
		s->last_ts_ns = r->ts_ns;
		if (!build && tv_v3_record_whole(r, data))
			return 1;
		if (!build && !r->rest) {
			*data = NULL;
			s->cur_unbuilt = true;
			return 1;
		}
		/* from TV_BLOCK_STREAM_OUT_BYTES, then the largest record: no growth per byte */
		ret = s_room(s, (void **)&s->out, &s->out_cap,
			     r->bytes > TV_BLOCK_STREAM_OUT_BYTES ? r->bytes :
								    TV_BLOCK_STREAM_OUT_BYTES,
			     "the record buffer", err, errlen);
		if (!ret)
			ret = tv_v3_record_write(r, s->out, err, errlen);
		if (ret)
			return ret;
		*data = s->out;
		return 1;
	}
}

int tv_block_stream_next_page(struct tv_block_stream *s, uint32_t fields, uint64_t to_ns,
			      struct tv_v3_page **page, char *err, size_t errlen)
{
	struct tv_v3_page_entry e;
	int ret;

	*page = NULL;
	if (s->h.version < 3)
		return tv_errf(err, errlen, -EINVAL, "a version %u block has no pages", s->h.version);
	s->page = NULL;
	do { /* past the pages a trace-id check passed over (a stream given trace ids) */
		if (s->next_page == s->h.page_count)
			return 0;
		v3_entry(s, s->next_page, &e);
		if (e.first_ts >= to_ns)
			return 0;
		ret = v3_load(s, fields ? fields : TV_V3_FIELDS_READABLE, err, errlen);
		if (ret < 0)
			return ret;
	} while (ret == V3_PASSED);
	s->rows += e.records;
	*page = s->page;
	s->page = NULL; /* the caller reads it; tv_block_stream_next does not */
	return 1;
}

int tv_block_stream_seek(struct tv_block_stream *s, uint64_t ts_ns)
{
	uint32_t lo = 0, hi = s->h.page_count;

	if (s->h.version < 3 || s->seen || s->rows || s->page)
		return 0;
	while (lo < hi) { /* the first page whose last record is at or after ts_ns */
		uint32_t mid = lo + (hi - lo) / 2;
		struct tv_v3_page_entry e;

		v3_entry(s, mid, &e);
		if (e.last_ts < ts_ns)
			lo = mid + 1;
		else
			hi = mid;
	}
	s->page_off = s->h.header_bytes +
		      (uint64_t)s->h.page_count * TV_BLOCK_V3_PAGE_ENTRY_BYTES + s->h.bloom_bytes;
	for (uint32_t i = 0; i < lo; i++) {
		struct tv_v3_page_entry e;

		v3_entry(s, i, &e);
		s->page_off += e.stored_len;
	}
	s->next_page = lo;
	s->seek_ts_ns = ts_ns;
	return 1;
}

void tv_block_stream_trace_pages(struct tv_block_stream *s, const char *ids, size_t n,
				 size_t stride)
{
	s->trace_ids = n ? ids : NULL;
	s->ntrace_ids = n;
	s->trace_stride = stride;
}

int tv_block_stream_trace_filter(struct tv_block_stream *s, tv_block_filter_fn fn, void *arg,
				char *err, size_t errlen)
{
	uint8_t *bloom;
	int ret = 0;

	if (s->h.version < 3)
		return 0;
	if (s->h.bloom_bytes == 0) { /* the check made sure: no record of it has a 32-byte id */
		ret = fn(arg, NULL, 0, err, errlen);
		return ret ? ret : 1;
	}
	bloom = s_alloc(s, s->h.bloom_bytes, "the trace-id filter", &ret, err, errlen);
	if (!bloom)
		return ret;
	ret = read_exact(s, s->h.header_bytes +
				    (uint64_t)s->h.page_count * TV_BLOCK_V3_PAGE_ENTRY_BYTES,
			 bloom, s->h.bloom_bytes, err, errlen);
	if (!ret && tv_crc32c(bloom, s->h.bloom_bytes) != s->h.bloom_crc32c)
		ret = tv_errf(err, errlen, -EBADMSG, "block trace-id filter checksum mismatch");
	if (!ret)
		ret = fn(arg, bloom, s->h.bloom_bytes, err, errlen);
	s_free(s, bloom, s->h.bloom_bytes);
	return ret ? ret : 1;
}

struct may_hold {
	const char *ids;
	size_t n, stride;
	int found;
};

static int test_ids(void *arg, const uint8_t *bloom, size_t bytes, char *err, size_t errlen)
{
	struct may_hold *m = arg;

	(void)err;
	(void)errlen;
	for (size_t i = 0; !m->found && i < m->n; i++)
		m->found = tv_v3_bloom_test(bloom, bytes, tv_v3_trace_hash(m->ids + i * m->stride));
	return 0;
}

int tv_block_stream_may_hold_trace(struct tv_block_stream *s, const char *ids, size_t n,
				   size_t stride, char *err, size_t errlen)
{
	struct may_hold m = { .ids = ids, .n = n, .stride = stride };
	int ret = tv_block_stream_trace_filter(s, test_ids, &m, err, errlen);

	if (ret <= 0)
		return ret < 0 ? ret : 1; /* versions 1 and 2: no filter, any id may be there */
	return m.found;
}

uint64_t tv_block_stream_rows_decoded(const struct tv_block_stream *s)
{
	return s->h.version >= 3 ? s->rows : s->seen;
}

int tv_block_stream_open(struct tv_block_stream **out, tv_block_read_fn read, void *arg,
			 uint64_t file_bytes, const struct tv_block_budget *budget, char *err,
			 size_t errlen)
{
	struct tv_block_stream *s;
	char why[WHY_LEN];
	ssize_t got;
	int ret;

	*out = NULL;
	ret = budget_take(budget, sizeof(*s), why, sizeof(why));
	if (ret)
		return tv_errf(err, errlen, ret, "cannot reserve memory to read a block: %s", why);
	s = calloc(1, sizeof(*s));
	if (!s) {
		budget_give(budget, sizeof(*s));
		return tv_errf(err, errlen, -ENOMEM, "out of memory opening a block stream");
	}
	s->read = read;
	s->arg = arg;
	s->budget = budget;
	s->held = sizeof(*s);
	s->in = s_alloc(s, TV_BLOCK_STREAM_READ_BYTES, "the read buffer", &ret, err, errlen);
	if (!s->in)
		goto fail;
	got = read_full(s, 0, s->in,
			file_bytes < TV_BLOCK_MAX_HEADER_BYTES ? (size_t)file_bytes :
								 TV_BLOCK_MAX_HEADER_BYTES,
			err, errlen);
	if (got < 0) {
		ret = (int)got;
		goto fail;
	}
	ret = tv_block_header_parse(s->in, (size_t)got, &s->h, err, errlen);
	if (ret)
		goto fail;
	s->off = s->h.header_bytes;
	s->end = tv_block_total_bytes(&s->h);
	if (file_bytes != s->end) {
		ret = tv_errf(err, errlen, -EBADMSG,
			      "block size mismatch: have %llu bytes, header "
			      "says %llu",
			      (unsigned long long)file_bytes, (unsigned long long)s->end);
		goto fail;
	}
	if (s->h.version >= 3) {
		ret = v3_open(s, err, errlen);
		if (ret)
			goto fail;
		*out = s;
		return 0;
	}
	ret = check_payload_crc(s, err, errlen);
	if (ret)
		goto fail;
	if (s->h.codec == TV_CODEC_ZSTD) {
		ret = zstd_init(s, err, errlen);
		if (ret)
			goto fail;
	}
	s->out = s_alloc(s, TV_BLOCK_STREAM_OUT_BYTES, "the record buffer", &ret, err, errlen);
	if (!s->out)
		goto fail;
	s->out_cap = TV_BLOCK_STREAM_OUT_BYTES;
	*out = s;
	return 0;
fail:
	tv_block_stream_free(s);
	return ret;
}

const struct tv_block_header *tv_block_stream_header(const struct tv_block_stream *s)
{
	return &s->h;
}

uint32_t tv_block_stream_records(const struct tv_block_stream *s)
{
	return s->seen;
}

size_t tv_block_stream_held_bytes(const struct tv_block_stream *s)
{
	return s->held;
}

/* Room for need bytes from out_pos: move what is left to the front, grow when too small. */
static int make_room(struct tv_block_stream *s, size_t need, char *err, size_t errlen)
{
	size_t ncap = s->out_cap;
	uint8_t *p;
	int ret;

	if (s->out_pos) {
		memmove(s->out, s->out + s->out_pos, s->out_len - s->out_pos);
		s->out_len -= s->out_pos;
		s->out_pos = 0;
	}
	if (need <= s->out_cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	if (ncap > TV_BLOCK_STREAM_MAX_OUT_BYTES)
		ncap = TV_BLOCK_STREAM_MAX_OUT_BYTES; /* need is at most this: next() checked */
	p = s_alloc(s, ncap, "the record buffer", &ret, err, errlen);
	if (!p)
		return ret;
	memcpy(p, s->out, s->out_len);
	s_free(s, s->out, s->out_cap);
	s->out = p;
	s->out_cap = ncap;
	return 0;
}

static int zstd_error(struct tv_block_stream *s, size_t r, char *err, size_t errlen)
{
	if (s->mem_ret)
		return tv_errf(err, errlen, s->mem_ret, "%s", s->mem_why);
	if (ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge)
		return tv_errf(err, errlen, -EBADMSG,
			       "block payload needs a zstd window above "
			       "%u bytes (the reader's limit, BLOCK.md)",
			       1u << TV_BLOCK_MAX_WINDOW_LOG);
	return tv_errf(err, errlen, -EBADMSG, "block payload does not decompress: %s",
		       ZSTD_getErrorName(r));
}

static int check_second_crc(const struct tv_block_stream *s, char *err, size_t errlen)
{
	if (s->crc != s->h.payload_crc32c)
		return tv_errf(err, errlen, -EBADMSG,
			       "block file changed while it was read: payload "
			       "checksum now 0x%08x, stored 0x%08x",
			       s->crc, s->h.payload_crc32c);
	return 0;
}

/* Produce payload bytes after out_len (there is room). Returns 1 when some came, 0 at the end
 * of the payload (checked against raw_bytes), or a negative errno with err set. */
static int produce(struct tv_block_stream *s, char *err, size_t errlen)
{
	size_t room = s->out_cap - s->out_len;
	int ret;

	if (room == 0) /* next() always makes room first; without it zstd could spin here */
		return tv_errf(err, errlen, -EOVERFLOW, "record buffer full at %zu bytes",
			       s->out_cap);

	if (!s->z) { /* codec none: the payload is the records */
		size_t n = s->end - s->off < room ? (size_t)(s->end - s->off) : room;

		if (n == 0)
			goto end;
		ret = read_exact(s, s->off, s->out + s->out_len, n, err, errlen);
		if (ret)
			return ret;
		s->crc = tv_crc32c_extend(s->crc, s->out + s->out_len, n);
		s->off += n;
		s->out_len += n;
		s->raw_done += n;
		return 1;
	}
	for (;;) {
		ZSTD_outBuffer ob = { s->out + s->out_len, room, 0 };
		ZSTD_inBuffer ib;
		size_t r;

		if (s->in_pos == s->in_len && s->off < s->end) {
			size_t n = s->end - s->off < TV_BLOCK_STREAM_READ_BYTES ?
					   (size_t)(s->end - s->off) : TV_BLOCK_STREAM_READ_BYTES;

			ret = read_exact(s, s->off, s->in, n, err, errlen);
			if (ret)
				return ret;
			s->crc = tv_crc32c_extend(s->crc, s->in, n);
			s->off += n;
			s->in_pos = 0;
			s->in_len = n;
		}
		if (s->in_pos == s->in_len && !s->frame_open)
			goto end;
		ib = (ZSTD_inBuffer){ s->in, s->in_len, s->in_pos };
		s->mem_ret = 0;
		r = ZSTD_decompressStream(s->z, &ob, &ib);
		s->in_pos = ib.pos;
		if (ZSTD_isError(r))
			return zstd_error(s, r, err, errlen);
		s->frame_open = r != 0;
		if (ob.pos) {
			s->out_len += ob.pos;
			s->raw_done += ob.pos;
			if (s->raw_done > s->h.raw_bytes)
				return tv_errf(err, errlen, -EBADMSG,
					       "block payload decompresses to "
					       "more than raw_bytes %llu",
					       (unsigned long long)s->h.raw_bytes);
			return 1;
		}
		/* no input left and nothing more came out: the frame was cut */
		if (s->in_pos == s->in_len && s->off == s->end && s->frame_open)
			return tv_errf(err, errlen, -EBADMSG,
				       "block payload ends inside its zstd "
				       "frame after %llu of %llu raw bytes",
				       (unsigned long long)s->raw_done,
				       (unsigned long long)s->h.raw_bytes);
	}
end:
	ret = check_second_crc(s, err, errlen);
	if (ret)
		return ret;
	if (s->raw_done != s->h.raw_bytes)
		return tv_errf(err, errlen, -EBADMSG,
			       "block payload does not decompress to %llu "
			       "bytes: it ends after %llu",
			       (unsigned long long)s->h.raw_bytes, (unsigned long long)s->raw_done);
	return 0;
}

int tv_block_stream_finish(struct tv_block_stream *s, char *err, size_t errlen)
{
	int ret;

	if (s->h.version >= 3) /* every page served was checked as it was read */
		return 0;
	/* what the buffers hold was summed when it was read: only the rest of the file is left */
	while (s->off < s->end) {
		size_t n = s->end - s->off < TV_BLOCK_STREAM_READ_BYTES ?
				   (size_t)(s->end - s->off) : TV_BLOCK_STREAM_READ_BYTES;

		ret = read_exact(s, s->off, s->in, n, err, errlen);
		if (ret)
			return ret;
		s->crc = tv_crc32c_extend(s->crc, s->in, n);
		s->off += n;
	}
	s->in_pos = s->in_len = 0;
	return check_second_crc(s, err, errlen);
}

/* The record of n bytes at p (its prefix of used bytes before it) is whole in the buffer. */
static int take_record(struct tv_block_stream *s, const uint8_t *p, size_t n, size_t used,
		       const uint8_t **data, size_t *len, uint64_t *ts_ns, char *err,
		       size_t errlen)
{
	uint64_t ts;

	if (s->seen == s->h.record_count)
		return tv_errf(err, errlen, -EBADMSG,
			       "block holds more records than its "
			       "record_count %u",
			       s->h.record_count);
	if (tv_block_record_ts(p, n, &ts))
		return tv_errf(err, errlen, -EBADMSG,
			       "record %u of the block does not parse as a "
			       "TraceRecord",
			       s->seen);
	if (s->seen && ts < s->last_ts_ns)
		return tv_errf(err, errlen, -EBADMSG,
			       "record %u of the block is out of order: "
			       "ts_ns %llu after %llu",
			       s->seen, (unsigned long long)ts, (unsigned long long)s->last_ts_ns);
	if (ts < s->h.min_ts_ns || ts > s->h.max_ts_ns)
		return tv_errf(err, errlen, -EBADMSG,
			       "record %u of the block has ts_ns %llu "
			       "outside the header's [%llu, %llu]",
			       s->seen, (unsigned long long)ts, (unsigned long long)s->h.min_ts_ns,
			       (unsigned long long)s->h.max_ts_ns);
	*data = p;
	*len = n;
	*ts_ns = ts;
	s->out_pos += used + n;
	s->seen++;
	s->last_ts_ns = ts;
	return 1;
}

int tv_block_stream_next_unbuilt(struct tv_block_stream *s, const uint8_t **data, size_t *len,
				 uint64_t *ts_ns, char *err, size_t errlen)
{
	if (s->h.version >= 3)
		return v3_next(s, data, len, ts_ns, false, err, errlen);
	return tv_block_stream_next(s, data, len, ts_ns, err, errlen);
}

int tv_block_stream_write(struct tv_block_stream *s, uint8_t *out, char *err, size_t errlen)
{
	if (!s->cur_unbuilt)
		return tv_errf(err, errlen, -EINVAL, "no record left unbuilt to write");
	return tv_v3_record_write(&s->cur, out, err, errlen);
}

int tv_block_stream_next(struct tv_block_stream *s, const uint8_t **data, size_t *len,
			 uint64_t *ts_ns, char *err, size_t errlen)
{
	if (s->h.version >= 3)
		return v3_next(s, data, len, ts_ns, true, err, errlen);
	for (;;) {
		size_t avail = s->out_len - s->out_pos, used = 0, need;
		const uint8_t *p = s->out + s->out_pos;
		uint64_t n = 0;
		int ret;

		if (avail && tv_varint_get(p, avail, &n, &used) == 0) {
			if (n > TV_BLOCK_MAX_RECORD_BYTES)
				return tv_errf(err, errlen, -EBADMSG,
					       "record %u of the block is %llu "
					       "bytes, above the %u-byte record limit",
					       s->seen, (unsigned long long)n,
					       TV_BLOCK_MAX_RECORD_BYTES);
			if (used + n <= avail)
				return take_record(s, p + used, (size_t)n, used, data, len, ts_ns,
						   err, errlen);
			need = used + (size_t)n;
		} else if (avail >= TV_VARINT_MAX_BYTES) {
			return tv_errf(err, errlen, -EBADMSG,
				       "record %u of the block has a bad length "
				       "prefix",
				       s->seen);
		} else {
			need = avail + 1; /* the prefix is cut: at least one more byte */
		}
		ret = make_room(s, need, err, errlen);
		if (!ret)
			ret = produce(s, err, errlen);
		if (ret < 0)
			return ret;
		if (ret == 0) {
			if (avail)
				return tv_errf(err, errlen, -EBADMSG,
					       "block payload ends inside record "
					       "%u",
					       s->seen);
			if (s->seen != s->h.record_count)
				return tv_errf(err, errlen, -EBADMSG,
					       "block holds %u records, its "
					       "record_count says %u",
					       s->seen, s->h.record_count);
			return 0;
		}
	}
}

void tv_block_stream_free(struct tv_block_stream *s)
{
	const struct tv_block_budget *b;

	if (!s)
		return;
	b = s->budget;
	ZSTD_freeDStream(s->z); /* through z_free: NULL is a no-op */
	ZSTD_freeDCtx(s->dctx);
	s_free(s, s->dir, (size_t)s->h.page_count * TV_BLOCK_V3_PAGE_ENTRY_BYTES);
	s_free(s, s->pg, s->pg_cap);
	s_free(s, s->work, s->work_cap);
	s_free(s, s->out, s->out_cap);
	s_free(s, s->in, TV_BLOCK_STREAM_READ_BYTES);
	free(s);
	budget_give(b, sizeof(*s));
}
