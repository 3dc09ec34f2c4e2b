/* The output buffer of the query formats (out_buf.h): growth, decimal numbers, and JSON string
 * escaping that copies runs of plain bytes at once. */
#include "cli/out_buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define OUT_BUF_MIN_BYTES 4096 /* first allocation; doubles from there */

int tv_out_reserve(struct tv_out_buf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : OUT_BUF_MIN_BYTES;
	char *p;

	if (b->failed)
		return -ENOMEM;
	if (b->cap - b->len >= n)
		return 0;
	while (cap - b->len < n) {
		if (cap > SIZE_MAX / 2)
			goto fail;
		cap *= 2;
	}
	p = realloc(b->p, cap);
	if (!p)
		goto fail;
	b->p = p;
	b->cap = cap;
	return 0;
fail:
	b->failed = true;
	return -ENOMEM;
}

void tv_out_free(struct tv_out_buf *b)
{
	free(b->p);
	*b = (struct tv_out_buf){ 0 };
}

void tv_out_mem(struct tv_out_buf *b, const void *s, size_t n)
{
	if (n == 0 || (b->cap - b->len < n && tv_out_reserve(b, n)))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

void tv_out_str(struct tv_out_buf *b, const char *s)
{
	if (s)
		tv_out_mem(b, s, strlen(s));
}

void tv_out_u64(struct tv_out_buf *b, uint64_t v)
{
	char tmp[20]; /* UINT64_MAX has 20 digits */
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	tv_out_bytes(b, tmp + i, sizeof(tmp) - i);
}

void tv_out_repeat(struct tv_out_buf *b, char c, size_t n)
{
	if (n == 0 || (b->cap - b->len < n && tv_out_reserve(b, n)))
		return;
	memset(b->p + b->len, c, n);
	b->len += n;
}

size_t tv_utf8_seq(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Bytes a JSON string can hold as they are: printable ASCII but '"' and '\\'. */
static inline bool json_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

#define REPLACEMENT_JSON "\\ufffd"
#define REPLACEMENT_UTF8 "\xef\xbf\xbd" /* U+FFFD */

void tv_out_json_bytes(struct tv_out_buf *b, const void *v, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = v;
	size_t i = 0;

	/* the worst case (every byte \u00XX) reserved once: the loop below cannot fail midway */
	if (n > (SIZE_MAX - 2) / 6 || tv_out_reserve(b, 6 * n + 2))
		return;
	b->p[b->len++] = '"';
	while (i < n) {
		size_t run = i, len;

		while (run < n && json_plain(s[run]))
			run++;
		if (run > i) {
			memcpy(b->p + b->len, s + i, run - i);
			b->len += run - i;
			i = run;
			continue;
		}
		len = tv_utf8_seq(s + i, n - i);
		if (len == 0) {
			memcpy(b->p + b->len, REPLACEMENT_JSON, 6);
			b->len += 6;
			i++;
			continue;
		}
		if (len > 1) {
			memcpy(b->p + b->len, s + i, len);
			b->len += len;
		} else if (s[i] == '"' || s[i] == '\\') {
			b->p[b->len++] = '\\';
			b->p[b->len++] = (char)s[i];
		} else if (s[i] == '\n' || s[i] == '\r' || s[i] == '\t') {
			b->p[b->len++] = '\\';
			b->p[b->len++] = s[i] == '\n' ? 'n' : s[i] == '\r' ? 'r' : 't';
		} else { /* other control bytes, and DEL passes as itself */
			if (s[i] == 0x7f) {
				b->p[b->len++] = 0x7f;
			} else {
				memcpy(b->p + b->len, "\\u00", 4);
				b->p[b->len + 4] = hex[s[i] >> 4];
				b->p[b->len + 5] = hex[s[i] & 15];
				b->len += 6;
			}
		}
		i += len;
	}
	b->p[b->len++] = '"';
}

void tv_out_json_str(struct tv_out_buf *b, const char *s)
{
	s = s ? s : "";
	tv_out_json_bytes(b, s, strlen(s));
}

void tv_out_utf8_clean(struct tv_out_buf *b, const void *v, size_t n)
{
	const unsigned char *s = v;
	size_t i = 0;

	if (n > SIZE_MAX / 3 || tv_out_reserve(b, 3 * n))
		return;
	while (i < n) {
		size_t run = i, len;

		while (run < n && s[run] < 0x80)
			run++;
		if (run > i) {
			memcpy(b->p + b->len, s + i, run - i);
			b->len += run - i;
			i = run;
			continue;
		}
		len = tv_utf8_seq(s + i, n - i);
		if (len == 0) {
			memcpy(b->p + b->len, REPLACEMENT_UTF8, 3);
			b->len += 3;
			i++;
			continue;
		}
		memcpy(b->p + b->len, s + i, len);
		b->len += len;
		i += len;
	}
}
