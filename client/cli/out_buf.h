/* A growable byte buffer the query output formats render into, so a record costs one append
 * run and one write(2) per batch of records instead of a stdio call per field and character
 * (issue 12: that was a third of the client's CPU). Also the JSON and number appenders the
 * formats share. */
#ifndef TV_OUT_BUF_H
#define TV_OUT_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* p[0, len) is the text; cap its allocation. failed: an allocation failed, every later append
 * is dropped (the owner checks it once per record instead of at every append). */
struct tv_out_buf {
	char *p;
	size_t len, cap;
	bool failed;
};

/* Make room for n more bytes: 0, or -ENOMEM (then failed is set). */
int tv_out_reserve(struct tv_out_buf *b, size_t n);
void tv_out_free(struct tv_out_buf *b);

static inline void tv_out_bytes(struct tv_out_buf *b, const void *s, size_t n)
{
	if (b->cap - b->len < n && tv_out_reserve(b, n))
		return;
	for (size_t i = 0; i < n; i++) /* short literals: cheaper inline than a memcpy call */
		b->p[b->len + i] = ((const char *)s)[i];
	b->len += n;
}

static inline void tv_out_char(struct tv_out_buf *b, char c)
{
	if (b->cap == b->len && tv_out_reserve(b, 1))
		return;
	b->p[b->len++] = c;
}

/* A string literal without its NUL. */
#define tv_out_lit(b, s) tv_out_bytes((b), (s), sizeof(s) - 1)

/* ---- writers at a cursor, for a caller that reserved room once (tv_out_reserve) for a
 * whole record: each writes at o and returns the end of what it wrote ---- */

#define TV_U64_MAX_DIGITS 20 /* UINT64_MAX */
/* v in decimal: at most TV_U64_MAX_DIGITS bytes. */
char *tv_put_u64(char *o, uint64_t v);
/* s[0, n) as a JSON string literal (tv_out_json_bytes): at most 6 * n + 2 bytes. */
char *tv_put_json(char *o, const void *s, size_t n);
/* s[0, n) UTF-8-cleaned (tv_out_utf8_clean): at most 3 * n bytes. */
char *tv_put_utf8_clean(char *o, const void *s, size_t n);

void tv_out_str(struct tv_out_buf *b, const char *s); /* s may be NULL: nothing */
void tv_out_mem(struct tv_out_buf *b, const void *s, size_t n); /* memcpy-sized copies */
void tv_out_u64(struct tv_out_buf *b, uint64_t v);      /* decimal */
void tv_out_repeat(struct tv_out_buf *b, char c, size_t n);

/* Length of the valid UTF-8 sequence at s (n > 0 bytes left), or 0 if it is not valid
 * (overlong, surrogate, past U+10FFFF, truncated): RFC 3629. */
size_t tv_utf8_seq(const unsigned char *s, size_t n);

/* The character at s (n > 0 bytes left) as a terminal is to show it: returns its length when
 * it may be written as is (valid UTF-8, not a control: C0, DEL, C1, nor a line or paragraph
 * separator or bidirectional override/isolate, U+2028-U+202E and U+2066-U+2069, which break
 * or reorder what follows), 0 when it is to be shown as one '?'. *skip gets the bytes it
 * stands for: 1 for a byte that is not valid UTF-8, else the sequence's length. query's
 * table and `tracevault trace` write strings from the archive through it. */
size_t tv_term_char(const unsigned char *s, size_t n, size_t *skip);

/* s[0, n) as a JSON string literal, quotes included (RFC 8259): '"', '\\' and control bytes
 * escaped, bytes that are not valid UTF-8 each become \ufffd, so the text is valid JSON
 * whatever bytes the capture saw. */
void tv_out_json_bytes(struct tv_out_buf *b, const void *s, size_t n);
void tv_out_json_str(struct tv_out_buf *b, const char *s); /* NULL: "" */

/* s[0, n) with the bytes tv_out_json_bytes replaces replaced by U+FFFD (EF BF BD) and nothing
 * escaped: the same text as the JSON string's value, raw (csv). */
void tv_out_utf8_clean(struct tv_out_buf *b, const void *s, size_t n);

/* s[0, n) as one CSV field (RFC 4180 §2.6, §2.7) at o: its UTF-8-cleaned text
 * (tv_put_utf8_clean), in quotes with each quote doubled when it holds a comma, a quote, a CR
 * or an LF. At most 3 * n + 2 bytes; returns the end. query's and summary's csv both write
 * their text fields with it. */
char *tv_put_csv_str(char *o, const char *s, size_t n);
/* The same appended to b for a NUL-terminated s (room made first; nothing on -ENOMEM). */
void tv_out_csv_str(struct tv_out_buf *b, const char *s);

#endif
