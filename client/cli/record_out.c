/* query's output formats (record_out.h): jsonl, table and csv rendered here, otlp-json in
 * record_otlp.c; and the stream that batches the rendered records into few large writes. The
 * writers are hand-rolled so u64 values print exactly and every string comes out as valid
 * UTF-8 whatever bytes the capture saw. */
#include "cli/record_out.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/record_json.h"
#include "cli/record_otlp.h"
#include "cli/timespec.h"

static const char *str_at(const Tracevault__V1__TraceRecord *r, const struct tv_record_field *f)
{
	const char *s;

	memcpy(&s, (const char *)r + f->off, sizeof(s));
	return s ? s : "";
}

static uint64_t num_at(const Tracevault__V1__TraceRecord *r, const struct tv_record_field *f)
{
	const char *p = (const char *)r + f->off;

	if (f->type == TV_FIELD_U32) {
		uint32_t v;

		memcpy(&v, p, sizeof(v));
		return v;
	}
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* ---- jsonl ---- */

/* 1 when b[0, n) is valid UTF-8 without NUL: it can be a JSON string of exactly those bytes. */
static bool body_is_text(const uint8_t *b, size_t n)
{
	size_t len;

	for (size_t i = 0; i < n; i += len) {
		len = b[i] ? tv_utf8_seq(b + i, n - i) : 0;
		if (len == 0)
			return false;
	}
	return true;
}

static void out_base64(struct tv_out_buf *b, const uint8_t *d, size_t n)
{
	const char *B64 = tv_base64_alphabet;

	if (n > SIZE_MAX / 2 || tv_out_reserve(b, (n + 2) / 3 * 4 + 2))
		return;
	b->p[b->len++] = '"';
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) |
			     (i + 2 < n ? d[i + 2] : 0);

		b->p[b->len++] = B64[v >> 18 & 63];
		b->p[b->len++] = B64[v >> 12 & 63];
		b->p[b->len++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
		b->p[b->len++] = i + 2 < n ? B64[v & 63] : '=';
	}
	b->p[b->len++] = '"';
}

/* ,"key": */
static void json_key(struct tv_out_buf *b, const char *key, bool first)
{
	tv_out_char(b, first ? '{' : ',');
	tv_out_char(b, '"');
	tv_out_str(b, key);
	tv_out_lit(b, "\":");
}

void tv_record_jsonl(struct tv_out_buf *b, const Tracevault__V1__TraceRecord *r)
{
	for (size_t i = 0; i < TV_RECORD_N_FIELDS; i++) {
		const struct tv_record_field *f = &tv_record_fields[i];

		json_key(b, f->name, i == 0);
		if (f->type == TV_FIELD_STR)
			tv_out_json_str(b, str_at(r, f));
		else
			tv_out_u64(b, num_at(r, f));
	}
	for (int a = 0; a < 2; a++) {
		Tracevault__V1__Header **h = a ? r->resp_headers : r->req_headers;
		size_t n = a ? r->n_resp_headers : r->n_req_headers;

		if (n == 0)
			continue;
		json_key(b, tv_record_header_keys[a], false);
		tv_out_char(b, '[');
		for (size_t i = 0; i < n; i++) {
			if (i)
				tv_out_char(b, ',');
			tv_out_lit(b, "{\"name\":");
			tv_out_json_str(b, h[i]->name);
			tv_out_lit(b, ",\"value\":");
			tv_out_json_str(b, h[i]->value);
			tv_out_char(b, '}');
		}
		tv_out_char(b, ']');
	}
	for (int k = 0; k < 2; k++) {
		const ProtobufCBinaryData *bd = k ? &r->resp_body : &r->req_body;

		if (bd->len == 0)
			continue;
		if (body_is_text(bd->data, bd->len)) {
			json_key(b, tv_record_body_keys[k], false);
			tv_out_json_bytes(b, bd->data, bd->len);
		} else {
			json_key(b, tv_record_body_b64_keys[k], false);
			out_base64(b, bd->data, bd->len);
		}
	}
	for (size_t i = 0; i < TV_RECORD_N_BODY_STR_FIELDS; i++) {
		const char *s = str_at(r, &tv_record_body_str_fields[i]);

		if (!*s)
			continue;
		json_key(b, tv_record_body_str_fields[i].name, false);
		tv_out_json_str(b, s);
	}
	tv_out_lit(b, "}\n");
}

/* ---- table ---- */

#define COL_TIME 24
#define COL_ROLE 6 /* "server", "client" */
#define COL_METHOD 7
#define COL_HOST 24
#define COL_PATH 40
#define COL_HTTP 4 /* "1.1" */
#define COL_STATUS 6
#define COL_LATENCY 12
#define COL_PID 8
#define COL_COMM 16
#define TRUNC_MARK "..."
#define NUM_TEXT_LEN 48 /* a right-aligned number column's text, NUL included */

/* s, printable bytes only, cut to width (ending in "...") and padded to width and a space
 * unless last. */
static void table_col(struct tv_out_buf *b, const char *s, size_t width, bool last)
{
	size_t n = s ? strlen(s) : 0, show = n;
	bool cut = width > 0 && n > width;

	if (cut)
		show = width - strlen(TRUNC_MARK);
	if (tv_out_reserve(b, show))
		return;
	for (size_t i = 0; i < show; i++) {
		unsigned char c = (unsigned char)s[i];

		b->p[b->len++] = (char)(c >= 0x20 && c < 0x7f ? c : '?');
	}
	if (cut)
		tv_out_lit(b, TRUNC_MARK);
	if (last)
		return;
	tv_out_repeat(b, ' ', (cut ? width : show) < width ? width - show : 0);
	tv_out_char(b, ' ');
}

void tv_record_table_header(struct tv_out_buf *b)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "%-*s %-*s %-*s %-*s %-*s %-*s %*s %*s %*s %-*s %s\n",
			 COL_TIME, "TIME", COL_ROLE, "ROLE", COL_METHOD, "METHOD", COL_HOST,
			 "HOST", COL_PATH, "PATH", COL_HTTP, "HTTP", COL_STATUS, "STATUS",
			 COL_LATENCY, "LATENCY_MS", COL_PID, "PID", COL_COMM, "COMM", "REMOTE");

	if (n > 0 && (size_t)n < sizeof(line))
		tv_out_mem(b, line, (size_t)n);
}

void tv_record_table_row(struct tv_out_buf *b, const Tracevault__V1__TraceRecord *r)
{
	char when[TV_RFC3339_MS_LEN], nums[NUM_TEXT_LEN];
	int n;

	tv_format_rfc3339(r->ts_ns, when, sizeof(when));
	table_col(b, when, COL_TIME, false);
	table_col(b, r->role, COL_ROLE, false);
	table_col(b, r->method, COL_METHOD, false);
	table_col(b, r->host, COL_HOST, false);
	table_col(b, r->path, COL_PATH, false);
	table_col(b, r->http_version, COL_HTTP, false);
	/* one snprintf for the numbers: %.3f's rounding is the column's */
	n = snprintf(nums, sizeof(nums), "%*" PRIu32 " %*.3f %*" PRIu32 " ", COL_STATUS,
		     r->status, COL_LATENCY, (double)r->latency_ns / 1e6, COL_PID, r->pid);
	if (n > 0 && (size_t)n < sizeof(nums))
		tv_out_mem(b, nums, (size_t)n);
	table_col(b, r->comm, COL_COMM, false);
	table_col(b, r->remote, 0, true);
	tv_out_char(b, '\n');
}

/* ---- csv ---- */

#define CSV_EOL "\r\n" /* RFC 4180 §2.1 */

void tv_record_csv_header(struct tv_out_buf *b)
{
	for (size_t i = 0; i < TV_RECORD_N_FIELDS; i++) {
		if (i)
			tv_out_char(b, ',');
		tv_out_str(b, tv_record_fields[i].name);
	}
	tv_out_lit(b, CSV_EOL);
}

/* One field: the UTF-8-clean text, quoted when it holds a separator, a quote or a line end
 * (RFC 4180 §2.6, §2.7). */
static void csv_string(struct tv_out_buf *b, const char *s)
{
	size_t n = strlen(s), start, end, quotes = 0;

	if (strpbrk(s, ",\"\r\n") == NULL) {
		tv_out_utf8_clean(b, s, n);
		return;
	}
	tv_out_char(b, '"');
	start = b->len;
	tv_out_utf8_clean(b, s, n);
	if (b->failed)
		return;
	/* double each quote of what was just written, back to front in place */
	end = b->len;

	for (size_t i = start; i < end; i++)
		quotes += b->p[i] == '"';
	if (quotes && tv_out_reserve(b, quotes) == 0) {
		size_t w = end + quotes;

		for (size_t i = end; i-- > start;) {
			b->p[--w] = b->p[i];
			if (b->p[i] == '"')
				b->p[--w] = '"';
		}
		b->len = end + quotes;
	}
	tv_out_char(b, '"');
}

void tv_record_csv_row(struct tv_out_buf *b, const Tracevault__V1__TraceRecord *r)
{
	for (size_t i = 0; i < TV_RECORD_N_FIELDS; i++) {
		const struct tv_record_field *f = &tv_record_fields[i];

		if (i)
			tv_out_char(b, ',');
		if (f->type == TV_FIELD_STR)
			csv_string(b, str_at(r, f));
		else
			tv_out_u64(b, num_at(r, f));
	}
	tv_out_lit(b, CSV_EOL);
}

/* ---- the stream ---- */

struct tv_record_out {
	FILE *f;
	enum tv_out_format fmt;
	bool header_done;
	struct tv_out_buf buf;
	struct tv_otlp *otlp; /* TV_OUT_OTLP_JSON */
};

int tv_record_out_new(FILE *f, enum tv_out_format fmt, struct tv_record_out **out)
{
	struct tv_record_out *o = calloc(1, sizeof(*o));

	if (!o)
		return -ENOMEM;
	o->f = f;
	o->fmt = fmt;
	if (fmt == TV_OUT_OTLP_JSON && tv_otlp_new(&o->otlp)) {
		free(o);
		return -ENOMEM;
	}
	*out = o;
	return 0;
}

/* Hand the buffer to the stream. */
static int drain(struct tv_record_out *o)
{
	if (o->buf.failed)
		return -ENOMEM;
	errno = 0; /* a short fwrite sets it when write(2) failed; else EIO below */
	if (o->buf.len && fwrite(o->buf.p, 1, o->buf.len, o->f) != o->buf.len) {
		if (!errno)
			errno = EIO;
		return -EIO;
	}
	o->buf.len = 0;
	return 0;
}

static void header(struct tv_record_out *o)
{
	o->header_done = true;
	if (o->fmt == TV_OUT_TABLE)
		tv_record_table_header(&o->buf);
	else if (o->fmt == TV_OUT_CSV)
		tv_record_csv_header(&o->buf);
}

int tv_record_out_add(struct tv_record_out *o, const Tracevault__V1__TraceRecord *r)
{
	if (!o->header_done)
		header(o);
	switch (o->fmt) {
	case TV_OUT_JSONL:
		tv_record_jsonl(&o->buf, r);
		break;
	case TV_OUT_TABLE:
		tv_record_table_row(&o->buf, r);
		break;
	case TV_OUT_CSV:
		tv_record_csv_row(&o->buf, r);
		break;
	case TV_OUT_OTLP_JSON:
		tv_otlp_add(o->otlp, &o->buf, r);
		break;
	}
	if (o->buf.failed)
		return -ENOMEM;
	return o->buf.len >= TV_RECORD_OUT_FLUSH_BYTES ? drain(o) : 0;
}

int tv_record_out_finish(struct tv_record_out *o)
{
	int ret;

	if (!o->header_done)
		header(o);
	if (o->otlp)
		tv_otlp_finish(o->otlp, &o->buf);
	ret = drain(o);
	if (ret)
		return ret;
	return fflush(o->f) ? -EIO : 0;
}

int tv_record_out_flush(struct tv_record_out *o)
{
	int ret = drain(o);

	if (ret)
		return ret;
	return fflush(o->f) ? -EIO : 0;
}

void tv_record_out_free(struct tv_record_out *o)
{
	if (!o)
		return;
	tv_otlp_free(o->otlp);
	tv_out_free(&o->buf);
	free(o);
}
