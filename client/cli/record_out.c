/* query's output formats (record_out.h): jsonl, table and csv rendered here straight from the
 * records' wire bytes (proto/record_wire.h), otlp-json in record_otlp.c; and the stream that
 * batches the rendered records into few large write(2)s. The writers are hand-rolled so u64
 * values print exactly and every string comes out as valid UTF-8 whatever bytes the capture
 * saw; jsonl and csv reserve a record's worst case once and then write without checks. */
#define _GNU_SOURCE /* F_GETPIPE_SZ, F_SETPIPE_SZ */
#include "cli/record_out.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/record_json.h"
#include "cli/record_otlp.h"
#include "cli/timespec.h"

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

/* d[0, n) as a quoted base64 string: (n + 2) / 3 * 4 + 2 bytes. */
static char *put_base64(char *o, const uint8_t *d, size_t n)
{
	const char *B64 = tv_base64_alphabet;

	*o++ = '"';
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) |
			     (i + 2 < n ? d[i + 2] : 0);

		*o++ = B64[v >> 18 & 63];
		*o++ = B64[v >> 12 & 63];
		*o++ = i + 1 < n ? B64[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? B64[v & 63] : '=';
	}
	*o++ = '"';
	return o;
}

/* {"key": or ,"key": (the key is one of ours: plain ASCII) */
static char *put_key(char *o, const char *key, bool first)
{
	*o++ = first ? '{' : ',';
	*o++ = '"';
	while (*key)
		*o++ = *key++;
	*o++ = '"';
	*o++ = ':';
	return o;
}

/* A jsonl line's bytes past those of its strings, headers and bodies: the keys (the longest,
 * "resp_content_encoding", is 21 bytes), every number at its longest and the quotes. The
 * content is bounded by the record's own length: escaped at most 6 bytes a byte (base64 1.34),
 * and a header costs at least 2 wire bytes for JSONL_HEADER_BYTES of fixed text. */
#define JSONL_FIXED_BYTES                                                                     \
	((TV_RECORD_N_FIELDS + TV_RECORD_N_BODY_STR_FIELDS + 2 + 2) * (21 + 6) +             \
	 TV_RECORD_N_FIELDS * TV_U64_MAX_DIGITS + 8 + TV_RECORD_KEY_BYTES)
#define JSONL_HEADER_BYTES (sizeof("{\"name\":\"\",\"value\":\"\"},") - 1)

static size_t jsonl_bound(const struct tv_record_wire *r)
{
	return JSONL_FIXED_BYTES + 6 * r->len +
	       (r->n_headers[0] + r->n_headers[1]) * JSONL_HEADER_BYTES;
}

/* A double as JSON: shortest round-trip text; NaN and the infinities as the strings
 * protobuf's JSON mapping uses. */
void tv_out_json_double(struct tv_out_buf *b, double d)
{
	char num[40];

	if (d != d)
		tv_out_lit(b, "\"NaN\"");
	else if (d == 0 && signbit(d))
		tv_out_lit(b, "-0.0"); /* "%g"'s "-0" reads back as the integer 0, +0.0 */
	else if (d > 1.7976931348623157e308)
		tv_out_lit(b, "\"Infinity\"");
	else if (d < -1.7976931348623157e308)
		tv_out_lit(b, "\"-Infinity\"");
	else {
		/* the fewest digits that read back as d (17 always do) */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(num, sizeof(num), "%.*g", prec, d);
			if (strtod(num, NULL) == d)
				break;
		}
		tv_out_str(b, num);
	}
}

static void span_key_str(struct tv_out_buf *b, const char *key, struct tv_wire_str s)
{
	tv_out_str(b, key);
	tv_out_json_bytes(b, s.p, s.len);
}

/* The fields f[0, n) of sw as "key":value pairs, each after ',' but the first after first. */
static void span_fields_jsonl(struct tv_out_buf *b, const struct tv_span_wire *sw,
			      const struct tv_span_json_field *f, size_t n, const char *first)
{
	for (size_t i = 0; i < n; i++) {
		tv_out_str(b, i ? "," : first);
		tv_out_char(b, '"');
		tv_out_str(b, f[i].name);
		tv_out_lit(b, "\":");
		if (f[i].type == TV_FIELD_STR)
			tv_out_json_bytes(b, sw->str[f[i].number].p, sw->str[f[i].number].len);
		else
			tv_out_u64(b, sw->num[f[i].number]);
	}
}

/* A span record's span (BLOCK.md "Record kinds") as the jsonl line's "span" object: every
 * field, attributes as {"key":K,"string_value"|"bool_value"|"int_value"|"double_value":V}
 * (int_value a JSON number, exact up to 2^53 in readers that use doubles). */
static void span_jsonl(struct tv_out_buf *b, struct tv_wire_str bytes)
{
	struct tv_span_wire sw;
	struct tv_span_attr a;
	size_t pos = 0;
	bool first = true;

	if (tv_span_wire_parse((const uint8_t *)bytes.p, bytes.len, &sw)) {
		b->failed = true; /* the record parsed: cannot happen */
		return;
	}
	span_fields_jsonl(b, &sw, tv_span_fields, TV_SPAN_N_COLUMNS, ",\"" TV_RECORD_SPAN_KEY "\":{");
	tv_out_lit(b, ",\"attributes\":[");
	while (tv_span_wire_attribute(&sw, &pos, &a)) {
		double d;

		span_key_str(b, first ? "{\"key\":" : ",{\"key\":", a.key);
		first = false;
		switch (a.type) {
		case TV_SPAN_ATTR_STRING:
			span_key_str(b, ",\"string_value\":", a.s);
			break;
		case TV_SPAN_ATTR_BOOL:
			tv_out_str(b, a.u ? ",\"bool_value\":true" : ",\"bool_value\":false");
			break;
		case TV_SPAN_ATTR_INT: {
			char num[64];

			snprintf(num, sizeof(num), ",\"int_value\":%lld", (long long)a.u);
			tv_out_str(b, num);
			break;
		}
		case TV_SPAN_ATTR_DOUBLE:
			memcpy(&d, &a.u, sizeof(d));
			tv_out_lit(b, ",\"double_value\":");
			tv_out_json_double(b, d);
			break;
		default:
			break;
		}
		tv_out_char(b, '}');
	}
	tv_out_char(b, ']');
	span_fields_jsonl(b, &sw, tv_span_fields + TV_SPAN_N_COLUMNS,
			  TV_SPAN_N_FIELDS - TV_SPAN_N_COLUMNS, ",");
	tv_out_char(b, '}');
}

void tv_record_jsonl(struct tv_out_buf *b, const struct tv_record_wire *r)
{
	size_t bound = jsonl_bound(r);
	char *o, *start;

	/* room for the whole line at once, so no write below checks for it */
	if (r->len > (SIZE_MAX - JSONL_FIXED_BYTES) / 16 || tv_out_reserve(b, bound))
		return;
	o = start = b->p + b->len;
	for (size_t i = 0; i < TV_RECORD_N_FIELDS; i++) {
		const struct tv_record_field *f = &tv_record_fields[i];

		/* the key's whole padded text is stored (a fixed-size copy), the cursor moved by
		 * its length: JSONL_FIXED_BYTES holds TV_RECORD_KEY_BYTES for the last overrun */
		memcpy(o, f->key, TV_RECORD_KEY_BYTES);
		if (i == 0)
			*o = '{';
		o += f->key_len;
		if (f->type == TV_FIELD_STR)
			o = tv_put_json(o, r->str[f->number].p, r->str[f->number].len);
		else
			o = tv_put_u64(o, r->num[f->number]);
	}
	for (int a = 0; a < 2; a++) {
		struct tv_wire_str name, value;
		size_t pos = 0;

		if (r->n_headers[a] == 0)
			continue;
		o = put_key(o, tv_record_header_keys[a], false);
		*o++ = '[';
		for (size_t i = 0; tv_record_wire_header(r, a == 0, &pos, &name, &value); i++) {
			if (i)
				*o++ = ',';
			memcpy(o, "{\"name\":", 8);
			o = tv_put_json(o + 8, name.p, name.len);
			memcpy(o, ",\"value\":", 9);
			o = tv_put_json(o + 9, value.p, value.len);
			*o++ = '}';
		}
		*o++ = ']';
	}
	for (int k = 0; k < 2; k++) {
		const struct tv_wire_str *bd = &r->str[k ? TV_REC_RESP_BODY : TV_REC_REQ_BODY];

		if (bd->len == 0)
			continue;
		if (body_is_text((const uint8_t *)bd->p, bd->len)) {
			o = put_key(o, tv_record_body_keys[k], false);
			o = tv_put_json(o, bd->p, bd->len);
		} else {
			o = put_key(o, tv_record_body_b64_keys[k], false);
			o = put_base64(o, (const uint8_t *)bd->p, bd->len);
		}
	}
	for (size_t i = 0; i < TV_RECORD_N_BODY_STR_FIELDS; i++) {
		const struct tv_record_field *f = &tv_record_body_str_fields[i];

		if (r->str[f->number].len == 0)
			continue;
		o = put_key(o, f->name, false);
		o = tv_put_json(o, r->str[f->number].p, r->str[f->number].len);
	}
	if (r->str[TV_REC_SPAN].p) { /* a span record: its span last, through the growing writers */
		assert((size_t)(o - start) <= bound);
		b->len += (size_t)(o - start);
		span_jsonl(b, r->str[TV_REC_SPAN]);
		tv_out_lit(b, "}\n");
		return;
	}
	*o++ = '}';
	*o++ = '\n';
	assert((size_t)(o - start) <= bound);
	b->len += (size_t)(o - start);
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

/* s[0, n) as a terminal may show it (tv_term_char: printable UTF-8 kept, controls and
 * invalid bytes each one '?'), cut to width characters (ending in "...") and padded to width
 * and a space unless last. A width counts characters (a wide CJK one takes two columns:
 * such a row is that much wider). */
static void table_col(struct tv_out_buf *b, const char *s, size_t n, size_t width, bool last)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t total = 0, show, skip, i;
	bool cut;

	for (i = 0; i < n; i += skip, total++)
		tv_term_char(u + i, n - i, &skip);
	cut = width > 0 && total > width;
	show = cut ? width - strlen(TRUNC_MARK) : total;
	if (tv_out_reserve(b, n)) /* each character takes at most its own bytes */
		return;
	i = 0;
	for (size_t c = 0; c < show; c++, i += skip) {
		size_t len = tv_term_char(u + i, n - i, &skip);

		if (len) {
			memcpy(b->p + b->len, s + i, len);
			b->len += len;
		} else {
			b->p[b->len++] = '?';
		}
	}
	if (cut)
		tv_out_lit(b, TRUNC_MARK);
	if (last)
		return;
	tv_out_repeat(b, ' ', (cut ? width : show) < width ? width - show : 0);
	tv_out_char(b, ' ');
}

static void table_str(struct tv_out_buf *b, const struct tv_record_wire *r, unsigned field,
		      size_t width, bool last)
{
	table_col(b, r->str[field].p, r->str[field].len, width, last);
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

/* A span record's row after the time: ROLE "span", METHOD its kind, HOST its service, PATH
 * its name, STATUS its OTLP status code, the latency; no pid, comm or remote. false when the
 * span does not parse (cannot happen: the record did). */
static bool span_table_row(struct tv_out_buf *b, const struct tv_record_wire *r)
{
	/* within COL_METHOD (7) */
	static const char *const kinds[] = { "-", "intern", "server", "client", "prod", "cons" };
	struct tv_span_wire sw;
	const char *kind;
	char nums[NUM_TEXT_LEN];
	int n;

	if (tv_span_wire_parse((const uint8_t *)r->str[TV_REC_SPAN].p, r->str[TV_REC_SPAN].len,
			       &sw))
		return false;
	kind = sw.num[TV_SPAN_KIND] < 6 ? kinds[sw.num[TV_SPAN_KIND]] : "?";
	table_col(b, "span", 4, COL_ROLE, false);
	table_col(b, kind, strlen(kind), COL_METHOD, false);
	table_col(b, sw.str[TV_SPAN_SERVICE].p, sw.str[TV_SPAN_SERVICE].len, COL_HOST, false);
	table_col(b, sw.str[TV_SPAN_NAME].p, sw.str[TV_SPAN_NAME].len, COL_PATH, false);
	table_col(b, "", 0, COL_HTTP, false);
	n = snprintf(nums, sizeof(nums), "%*" PRIu32 " %*.3f %*s ", COL_STATUS,
		     (uint32_t)sw.num[TV_SPAN_STATUS_CODE], COL_LATENCY,
		     (double)r->num[TV_REC_LATENCY_NS] / 1e6, COL_PID, "");
	if (n > 0 && (size_t)n < sizeof(nums))
		tv_out_mem(b, nums, (size_t)n);
	table_col(b, "", 0, COL_COMM, false);
	table_col(b, "", 0, 0, true);
	tv_out_char(b, '\n');
	return true;
}

void tv_record_table_row(struct tv_out_buf *b, const struct tv_record_wire *r)
{
	char when[TV_RFC3339_MS_LEN], nums[NUM_TEXT_LEN];
	int n;

	tv_format_rfc3339(r->num[TV_REC_TS_NS], when, sizeof(when));
	table_col(b, when, strlen(when), COL_TIME, false);
	if (r->str[TV_REC_SPAN].p && span_table_row(b, r))
		return;
	table_str(b, r, TV_REC_ROLE, COL_ROLE, false);
	table_str(b, r, TV_REC_METHOD, COL_METHOD, false);
	table_str(b, r, TV_REC_HOST, COL_HOST, false);
	table_str(b, r, TV_REC_PATH, COL_PATH, false);
	table_str(b, r, TV_REC_HTTP_VERSION, COL_HTTP, false);
	/* one snprintf for the numbers: %.3f's rounding is the column's */
	n = snprintf(nums, sizeof(nums), "%*" PRIu32 " %*.3f %*" PRIu32 " ", COL_STATUS,
		     (uint32_t)r->num[TV_REC_STATUS], COL_LATENCY,
		     (double)r->num[TV_REC_LATENCY_NS] / 1e6, COL_PID, (uint32_t)r->num[TV_REC_PID]);
	if (n > 0 && (size_t)n < sizeof(nums))
		tv_out_mem(b, nums, (size_t)n);
	table_str(b, r, TV_REC_COMM, COL_COMM, false);
	table_str(b, r, TV_REC_REMOTE, 0, true);
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
	for (size_t i = 0; i < TV_SPAN_N_COLUMNS; i++) {
		tv_out_lit(b, ",span_");
		tv_out_str(b, tv_span_fields[i].name);
	}
	tv_out_lit(b, CSV_EOL);
}

/* A csv row's bytes past its strings' (3 bytes a byte at most): numbers, commas, quotes. */
#define CSV_FIXED_BYTES                                                                       \
	((TV_RECORD_N_FIELDS + TV_SPAN_N_COLUMNS) * (TV_U64_MAX_DIGITS + 3) + sizeof(CSV_EOL))

void tv_record_csv_row(struct tv_out_buf *b, const struct tv_record_wire *r)
{
	size_t bound = CSV_FIXED_BYTES + 3 * r->len;
	bool span = r->str[TV_REC_SPAN].p != NULL;
	struct tv_span_wire sw;
	char *o, *start;

	if (r->len > (SIZE_MAX - CSV_FIXED_BYTES) / 3 || tv_out_reserve(b, bound))
		return;
	o = start = b->p + b->len;
	for (size_t i = 0; i < TV_RECORD_N_FIELDS; i++) {
		const struct tv_record_field *f = &tv_record_fields[i];

		if (i)
			*o++ = ',';
		if (f->type == TV_FIELD_STR)
			o = tv_put_csv_str(o, r->str[f->number].p, r->str[f->number].len);
		else
			o = tv_put_u64(o, r->num[f->number]);
	}
	if (span && tv_span_wire_parse((const uint8_t *)r->str[TV_REC_SPAN].p,
				       r->str[TV_REC_SPAN].len, &sw)) {
		b->failed = true; /* the record parsed: cannot happen */
		return;
	}
	/* a span's strings are inside the record: within the bound */
	for (size_t i = 0; i < TV_SPAN_N_COLUMNS; i++) {
		const struct tv_span_json_field *f = &tv_span_fields[i];

		*o++ = ',';
		if (span && f->type == TV_FIELD_STR)
			o = tv_put_csv_str(o, sw.str[f->number].p, sw.str[f->number].len);
		else if (span)
			o = tv_put_u64(o, sw.num[f->number]);
	}
	memcpy(o, CSV_EOL, sizeof(CSV_EOL) - 1);
	o += sizeof(CSV_EOL) - 1;
	assert((size_t)(o - start) <= bound);
	b->len += (size_t)(o - start);
}

/* ---- the stream ---- */

struct tv_record_out {
	int fd;
	enum tv_out_format fmt;
	bool header_done;
	struct tv_out_buf buf;
	struct tv_otlp *otlp; /* TV_OUT_OTLP_JSON */
};

/* A pipe at fd grown to TV_RECORD_OUT_PIPE_BYTES when smaller: best effort, a refusal leaves
 * it as it was. */
static void grow_pipe(int fd)
{
	struct stat st;
	int size;

	if (fstat(fd, &st) || !S_ISFIFO(st.st_mode))
		return;
	size = fcntl(fd, F_GETPIPE_SZ);
	if (size >= 0 && size < TV_RECORD_OUT_PIPE_BYTES)
		(void)fcntl(fd, F_SETPIPE_SZ, TV_RECORD_OUT_PIPE_BYTES);
}

int tv_record_out_new(int fd, enum tv_out_format fmt, struct tv_record_out **out)
{
	struct tv_record_out *o = calloc(1, sizeof(*o));

	if (!o)
		return -ENOMEM;
	grow_pipe(fd);
	o->fd = fd;
	o->fmt = fmt;
	if (fmt == TV_OUT_OTLP_JSON && tv_otlp_new(&o->otlp)) {
		free(o);
		return -ENOMEM;
	}
	*out = o;
	return 0;
}

/* Write the buffer to the descriptor, all of it (a pipe may take it in parts). */
static int drain(struct tv_record_out *o)
{
	size_t off = 0;

	if (o->buf.failed)
		return -ENOMEM;
	while (off < o->buf.len) {
		ssize_t n = write(o->fd, o->buf.p + off, o->buf.len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO; /* cannot happen for len > 0; never loop on it */
			return -EIO;
		}
		off += (size_t)n;
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

/* otlp-json renders from the unpacked message (its writer reads many fields several times,
 * and the format is not the bulk one): r was accepted by tv_record_wire_parse, so it unpacks
 * (only memory can fail). */
static int add_otlp(struct tv_record_out *o, const struct tv_record_wire *r)
{
	Tracevault__V1__TraceRecord *m = tracevault__v1__trace_record__unpack(NULL, r->len, r->rec);

	if (!m)
		return -ENOMEM;
	tv_otlp_add(o->otlp, &o->buf, m);
	tracevault__v1__trace_record__free_unpacked(m, NULL);
	return 0;
}

int tv_record_out_add(struct tv_record_out *o, const struct tv_record_wire *r)
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
		if (add_otlp(o, r))
			return -ENOMEM;
		break;
	}
	if (o->buf.failed)
		return -ENOMEM;
	return o->buf.len >= TV_RECORD_OUT_FLUSH_BYTES ? drain(o) : 0;
}

int tv_record_out_finish(struct tv_record_out *o)
{
	if (!o->header_done)
		header(o);
	if (o->otlp)
		tv_otlp_finish(o->otlp, &o->buf);
	return drain(o);
}

int tv_record_out_flush(struct tv_record_out *o)
{
	return drain(o);
}

void tv_record_out_free(struct tv_record_out *o)
{
	if (!o)
		return;
	tv_otlp_free(o->otlp);
	tv_out_free(&o->buf);
	free(o);
}
