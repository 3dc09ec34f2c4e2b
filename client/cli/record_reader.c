/* put's JSON Lines reader. The reference parser (tv_record_json_parse: jansson, a DOM with an
 * allocation per value, a hashtable per object, a key lookup per field) cost ~6 us a line and
 * over half of put's CPU. Here yajl's event parser (Debian libyajl-dev 2.1) drives a state
 * machine bound to the record's schema: each key is found by length and memcmp, each value
 * goes straight into the record, strings are copied once into one arena per reader, numbers are
 * read from their text as exact u64 (no int64 detour), and nothing is allocated per line but
 * yajl's handle.
 *
 * The fast path reads a line only when it can prove the reference reads it to the same record;
 * it *declines* everything else and the reference decides, so accepted lines, refused lines and
 * every message stay what the reference gives (tests/unit/test_record_reader.c checks the
 * fast path against it on random and mutated lines). It declines a line:
 * - with a byte below 0x20 other than tab, CR, LF: yajl takes \v and \f as whitespace where
 *   jansson does not, and both refuse a raw control byte in a string;
 * - with bytes >= 0x80 that are not strict UTF-8 (jansson's rules: no overlong form, no
 *   surrogate, nothing past U+10FFFF; yajl's own check is looser, so it is turned off);
 * - with a \u escape of a surrogate (\uD800-\uDFFF): yajl turns a lone one into '?' or a
 *   wrong code point where jansson refuses it, and a correct pair is rare enough to leave to
 *   the reference; a decoded string holding NUL (\u0000), which jansson refuses;
 * - with anything but whitespace after the object (see only_whitespace_after);
 * - that is not one object of known keys, each once, with the right value types; a number that
 *   is negative, not an integer, or out of its field's range; a header element that is not
 *   exactly {"name": string, "value": string}; a body given twice; base64 that does not
 *   decode; no ts_ns; a record tv_record_check refuses (it runs on the record read here
 *   too, so an id in upper case is lower-cased alike). All of these are refused lines (the
 *   reference words the reason);
 * - with a "span" (a span record): rare in put's input, left to the reference. */
#include "cli/record_reader.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "cli/out_buf.h"
#include "cli/record_json.h"

enum key_kind { K_U64, K_U32, K_STR, K_BODY, K_BODY_B64, K_HEADERS };

struct key {
	const char *name;
	size_t len;
	enum key_kind kind;
	int side;   /* K_BODY, K_BODY_B64, K_HEADERS: 0 request, 1 response */
	size_t off; /* K_U64, K_U32, K_STR: into Tracevault__V1__TraceRecord */
};

#define KEY(n, k) {#n, sizeof(#n) - 1, k, 0, offsetof(Tracevault__V1__TraceRecord, n)}
#define SIDE_KEY(n, k, s) {#n, sizeof(#n) - 1, k, s, 0}
/* Every key tv_record_json_parse takes; ts_ns first (the required one: bit 0 of seen). */
static const struct key KEYS[] = {
	KEY(ts_ns, K_U64),
	KEY(end_ns, K_U64),
	KEY(latency_ns, K_U64),
	KEY(pid, K_U32),
	KEY(comm, K_STR),
	KEY(local, K_STR),
	KEY(remote, K_STR),
	KEY(method, K_STR),
	KEY(path, K_STR),
	KEY(status, K_U32),
	KEY(req_body_bytes, K_U64),
	KEY(resp_body_bytes, K_U64),
	KEY(trace_id, K_STR),
	KEY(span_id, K_STR),
	KEY(flags, K_U32),
	KEY(role, K_STR),
	KEY(host, K_STR),
	KEY(http_version, K_STR),
	SIDE_KEY(req_headers, K_HEADERS, 0),
	SIDE_KEY(resp_headers, K_HEADERS, 1),
	SIDE_KEY(req_body, K_BODY, 0),
	SIDE_KEY(resp_body, K_BODY, 1),
	SIDE_KEY(req_body_base64, K_BODY_B64, 0),
	SIDE_KEY(resp_body_base64, K_BODY_B64, 1),
	KEY(req_content_type, K_STR),
	KEY(resp_content_type, K_STR),
	KEY(req_content_encoding, K_STR),
	KEY(resp_content_encoding, K_STR),
};
#define N_KEYS (sizeof(KEYS) / sizeof(KEYS[0]))
_Static_assert(N_KEYS <= 32, "seen is a 32-bit mask of KEYS");
#define SEEN_TS_NS 1u

/* Where the event parser is in the one shape a record line has:
 * {key: value, ..., "req_headers": [{"name": s, "value": s}, ...], ...} */
enum rstate {
	RS_START,  /* before the top object */
	RS_KEY,    /* in the top object, a key or its end next */
	RS_VALUE,  /* after a top-level key: its value next */
	RS_HARRAY, /* in a header array: an element or its end next */
	RS_HKEY,   /* in a header element: "name", "value" or its end next */
	RS_HVALUE, /* after "name" or "value": a string next */
	RS_DONE,   /* after the top object */
};

struct header_ref {
	const char *name, *value;
	int side;
};

struct tv_record_reader {
	/* the line being read: strings inside it had no escapes */
	const char *line;
	size_t len;
	/* every string and decoded body of the line, NUL-terminated strings; reset per line */
	char *arena;
	size_t arena_cap, arena_used;
	/* header elements in input order, then the record's arrays built from them */
	struct header_ref *hrefs;
	size_t n_hrefs, hrefs_cap;
	Tracevault__V1__Header *hdrs;
	Tracevault__V1__Header **hdr_ptrs;
	size_t hdrs_cap;

	Tracevault__V1__TraceRecord rec;
	enum rstate st;
	const struct key *key; /* RS_VALUE, and the side of RS_HARRAY.. */
	uint32_t seen;         /* bit i: KEYS[i] was given */
	unsigned hseen;        /* RS_HKEY: 1 "name", 2 "value" given */
	int hfield;            /* RS_HVALUE: 0 name, 1 value */
	const char *hname, *hvalue;
	bool body_given[2];
	bool oom;

	yajl_handle h;     /* the line's parser, for its offset */
	size_t end_off;    /* offset just after the top object's '}' */

	struct tv_record_ids ids;  /* the record's ids, lower-cased by tv_record_check */
	struct tv_record_json ref; /* the reference's last good line, while held */
	bool ref_held;
	uint64_t fallbacks;
};

/* ---- the line check before yajl (the first three declines of the file comment) ---- */

static bool is_surrogate_escape(const unsigned char *s, size_t n)
{
	/* s at a backslash that starts an escape (line_is_plain steps over each escape whole,
	 * so the second backslash of "\\uD800" is never taken for one): "\uD800".."\uDFFF" in
	 * any case */
	return n >= 4 && s[1] == 'u' && (s[2] == 'd' || s[2] == 'D') &&
	       ((s[3] >= '8' && s[3] <= '9') || (s[3] >= 'a' && s[3] <= 'f') ||
		(s[3] >= 'A' && s[3] <= 'F'));
}

/* true when the line has none of the bytes the fast path leaves to the reference */
static bool line_is_plain(const char *line, size_t len)
{
	const unsigned char *s = (const unsigned char *)line;

	for (size_t i = 0; i < len;) {
		unsigned char c = s[i];

		if (c >= 0x20 && c < 0x80 && c != '\\') {
			i++;
		} else if (c == '\\') {
			if (is_surrogate_escape(s + i, len - i))
				return false;
			i += 2; /* the escaped byte is ASCII or yajl refuses the escape */
		} else if (c == '\t' || c == '\n' || c == '\r') {
			i++;
		} else if (c >= 0x80) {
			size_t n = tv_utf8_seq(s + i, len - i); /* jansson's rules too */

			if (n == 0)
				return false;
			i += n;
		} else {
			return false;
		}
	}
	return true;
}

/* ---- the yajl callbacks: each returns 0 (cancel: the line is declined) off the shape ---- */

/* A copy of yajl's string (NUL-terminated) in the arena, or NULL to decline: a decoded string
 * (it had escapes) that holds a NUL. The arena was sized for the line before parsing: each
 * copy (n + 1 bytes) is shorter than the literal it came from (quotes included). */
static char *keep(struct tv_record_reader *rd, const unsigned char *s, size_t n)
{
	const char *p = (const char *)s;
	char *d;

	if ((p < rd->line || p >= rd->line + rd->len) && memchr(s, '\0', n))
		return NULL;
	if (rd->arena_cap - rd->arena_used < n + 1)
		return NULL; /* cannot happen (see above); declining is safe */
	d = rd->arena + rd->arena_used;
	memcpy(d, s, n);
	d[n] = '\0';
	rd->arena_used += n + 1;
	return d;
}

static int no_value(void *ctx)
{
	(void)ctx;
	return 0;
}

static int on_boolean(void *ctx, int v)
{
	(void)v;
	return no_value(ctx);
}

static int on_number(void *ctx, const char *s, size_t n)
{
	struct tv_record_reader *rd = ctx;
	uint64_t v = 0;

	if (rd->st != RS_VALUE || (rd->key->kind != K_U64 && rd->key->kind != K_U32) || n == 0)
		return 0;
	/* yajl lexed a JSON number: only plain digits are an integer here */
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	if (rd->key->kind == K_U32) {
		uint32_t v32 = (uint32_t)v;

		if (v > UINT32_MAX)
			return 0;
		memcpy((char *)&rd->rec + rd->key->off, &v32, sizeof(v32));
	} else {
		memcpy((char *)&rd->rec + rd->key->off, &v, sizeof(v));
	}
	rd->st = RS_KEY;
	return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
	struct tv_record_reader *rd = ctx;
	ProtobufCBinaryData *body;
	char *d;

	if (rd->st == RS_HVALUE) {
		if (!(d = keep(rd, s, n)))
			return 0;
		*(rd->hfield ? &rd->hvalue : &rd->hname) = d;
		rd->st = RS_HKEY;
		return 1;
	}
	if (rd->st != RS_VALUE)
		return 0;
	switch (rd->key->kind) {
	case K_STR:
		if (!(d = keep(rd, s, n)))
			return 0;
		memcpy((char *)&rd->rec + rd->key->off, &d, sizeof(d));
		break;
	case K_BODY:
	case K_BODY_B64:
		if (rd->body_given[rd->key->side])
			return 0; /* both forms of one body */
		rd->body_given[rd->key->side] = true;
		body = rd->key->side ? &rd->rec.resp_body : &rd->rec.req_body;
		if (!(d = keep(rd, s, n)))
			return 0;
		if (rd->key->kind == K_BODY_B64) {
			/* decoded over its own copy: the output never passes the input */
			if (tv_record_b64_decode(d, n, (uint8_t *)d, &body->len))
				return 0;
		} else {
			body->len = n;
		}
		body->data = (uint8_t *)d;
		break;
	default:
		return 0;
	}
	rd->st = RS_KEY;
	return 1;
}

static int on_start_map(void *ctx)
{
	struct tv_record_reader *rd = ctx;

	if (rd->st == RS_START) {
		rd->st = RS_KEY;
	} else if (rd->st == RS_HARRAY) {
		rd->hseen = 0;
		rd->hname = rd->hvalue = NULL;
		rd->st = RS_HKEY;
	} else {
		return 0;
	}
	return 1;
}

static const struct key *find_key(const unsigned char *k, size_t n)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (KEYS[i].len == n && memcmp(KEYS[i].name, k, n) == 0)
			return &KEYS[i];
	return NULL;
}

static int on_map_key(void *ctx, const unsigned char *k, size_t n)
{
	struct tv_record_reader *rd = ctx;

	if (rd->st == RS_KEY) {
		const struct key *key = find_key(k, n);
		uint32_t bit;

		if (!key)
			return 0;
		bit = 1u << (key - KEYS);
		if (rd->seen & bit)
			return 0;
		rd->seen |= bit;
		rd->key = key;
		rd->st = RS_VALUE;
		return 1;
	}
	if (rd->st != RS_HKEY)
		return 0;
	if (n == 4 && memcmp(k, "name", 4) == 0)
		rd->hfield = 0;
	else if (n == 5 && memcmp(k, "value", 5) == 0)
		rd->hfield = 1;
	else
		return 0;
	if (rd->hseen & (1u << rd->hfield))
		return 0;
	rd->hseen |= 1u << rd->hfield;
	rd->st = RS_HVALUE;
	return 1;
}

static int on_end_map(void *ctx)
{
	struct tv_record_reader *rd = ctx;

	if (rd->st == RS_KEY) {
		/* yajl's offset in the line: just past this '}' (the one chunk is the line) */
		rd->end_off = yajl_get_bytes_consumed(rd->h);
		rd->st = RS_DONE;
		return 1;
	}
	if (rd->st != RS_HKEY || rd->hseen != 3)
		return 0;
	if (rd->n_hrefs == rd->hrefs_cap) {
		size_t cap = rd->hrefs_cap ? 2 * rd->hrefs_cap : 16;
		struct header_ref *h = realloc(rd->hrefs, cap * sizeof(*h));

		if (!h) {
			rd->oom = true;
			return 0;
		}
		rd->hrefs = h;
		rd->hrefs_cap = cap;
	}
	rd->hrefs[rd->n_hrefs++] = (struct header_ref){rd->hname, rd->hvalue, rd->key->side};
	rd->st = RS_HARRAY;
	return 1;
}

static int on_start_array(void *ctx)
{
	struct tv_record_reader *rd = ctx;

	if (rd->st != RS_VALUE || rd->key->kind != K_HEADERS)
		return 0;
	rd->st = RS_HARRAY;
	return 1;
}

static int on_end_array(void *ctx)
{
	struct tv_record_reader *rd = ctx;

	if (rd->st != RS_HARRAY)
		return 0;
	rd->st = RS_KEY;
	return 1;
}

/* yajl 2.1 takes the start of a token cut by the end of the input after the top value (a
 * lone '"', "tru", "-") for a token still to come and returns ok where jansson refuses the
 * line: after the top object only whitespace may follow. */
static bool only_whitespace_after(const char *line, size_t len, size_t off)
{
	for (; off < len; off++)
		if (line[off] != ' ' && line[off] != '\t' && line[off] != '\n' && line[off] != '\r')
			return false;
	return true;
}

static const yajl_callbacks CALLBACKS = {
	.yajl_null = no_value,
	.yajl_boolean = on_boolean,
	.yajl_number = on_number, /* given, so yajl_integer and yajl_double are never called */
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end_map,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end_array,
};

/* Point the record's header arrays at the header elements read (request, then response). */
static int build_headers(struct tv_record_reader *rd)
{
	size_t n = rd->n_hrefs, k = 0;

	if (n == 0)
		return 0;
	if (n > rd->hdrs_cap) {
		Tracevault__V1__Header *h = realloc(rd->hdrs, n * sizeof(*h));
		Tracevault__V1__Header **p;

		if (!h)
			return -ENOMEM;
		rd->hdrs = h;
		p = realloc(rd->hdr_ptrs, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		rd->hdr_ptrs = p;
		rd->hdrs_cap = n;
	}
	for (int side = 0; side < 2; side++) {
		size_t first = k;

		for (size_t i = 0; i < n; i++) {
			if (rd->hrefs[i].side != side)
				continue;
			tracevault__v1__header__init(&rd->hdrs[k]);
			rd->hdrs[k].name = (char *)rd->hrefs[i].name;
			rd->hdrs[k].value = (char *)rd->hrefs[i].value;
			rd->hdr_ptrs[k] = &rd->hdrs[k];
			k++;
		}
		if (k == first)
			continue;
		if (side == 0) {
			rd->rec.req_headers = rd->hdr_ptrs + first;
			rd->rec.n_req_headers = k - first;
		} else {
			rd->rec.resp_headers = rd->hdr_ptrs + first;
			rd->rec.n_resp_headers = k - first;
		}
	}
	return 0;
}

int tv_record_reader_parse_fast(struct tv_record_reader *rd, const char *line, size_t len,
				const Tracevault__V1__TraceRecord **rec)
{
	static const Tracevault__V1__TraceRecord init = TRACEVAULT__V1__TRACE_RECORD__INIT;
	char why[256];
	yajl_handle h;
	bool ok;

	if (!line_is_plain(line, len))
		return 0;
	if (rd->arena_cap < len + 1) {
		char *a = realloc(rd->arena, len + 1);

		if (!a)
			return -ENOMEM;
		rd->arena = a;
		rd->arena_cap = len + 1;
	}
	rd->line = line;
	rd->len = len;
	rd->arena_used = 0;
	rd->n_hrefs = 0;
	rd->rec = init;
	rd->st = RS_START;
	rd->seen = 0;
	rd->body_given[0] = rd->body_given[1] = false;
	rd->oom = false;
	h = yajl_alloc(&CALLBACKS, NULL, rd);
	if (!h)
		return -ENOMEM;
	rd->h = h;
	/* line_is_plain checked UTF-8 more strictly than yajl would */
	yajl_config(h, yajl_dont_validate_strings, 1);
	ok = yajl_parse(h, (const unsigned char *)line, len) == yajl_status_ok &&
	     yajl_complete_parse(h) == yajl_status_ok && rd->st == RS_DONE &&
	     (rd->seen & SEEN_TS_NS) && only_whitespace_after(line, len, rd->end_off);
	yajl_free(h);
	rd->h = NULL;
	if (rd->oom)
		return -ENOMEM;
	if (!ok)
		return 0;
	if (build_headers(rd))
		return -ENOMEM;
	if (tv_record_check(&rd->rec, &rd->ids, why, sizeof(why)))
		return 0; /* refused: the reference says why */
	*rec = &rd->rec;
	return 1;
}

int tv_record_reader_parse(struct tv_record_reader *rd, const char *line, size_t len,
			   const Tracevault__V1__TraceRecord **rec, char *err, size_t errlen)
{
	int ret;

	if (rd->ref_held) {
		tv_record_json_release(&rd->ref);
		rd->ref_held = false;
	}
	ret = tv_record_reader_parse_fast(rd, line, len, rec);
	if (ret == 1)
		return 0;
	if (ret < 0) {
		snprintf(err, errlen, "out of memory");
		return ret;
	}
	rd->fallbacks++;
	ret = tv_record_json_parse(&rd->ref, line, len, err, errlen);
	if (ret)
		return ret;
	rd->ref_held = true;
	*rec = &rd->ref.rec;
	return 0;
}

uint64_t tv_record_reader_fallbacks(const struct tv_record_reader *rd)
{
	return rd->fallbacks;
}

struct tv_record_reader *tv_record_reader_new(void)
{
	return calloc(1, sizeof(struct tv_record_reader));
}

void tv_record_reader_free(struct tv_record_reader *rd)
{
	if (!rd)
		return;
	if (rd->ref_held)
		tv_record_json_release(&rd->ref);
	free(rd->arena);
	free(rd->hrefs);
	free(rd->hdrs);
	free(rd->hdr_ptrs);
	free(rd);
}
