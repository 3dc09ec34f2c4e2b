/* The output buffer of the query formats (out_buf.h): growth, decimal numbers, and JSON string
 * escaping that copies runs of plain bytes at once. */
#include "cli/out_buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

/* "00" .. "99": two digits per division */
static const char DIGIT_PAIRS[201] =
	"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	"8081828384858687888990919293949596979899";

/* The 4 digits of v < 10000, leading zeros included. */
static inline void put4(char *o, uint32_t v)
{
	memcpy(o, DIGIT_PAIRS + 2 * (v / 100), 2);
	memcpy(o + 2, DIGIT_PAIRS + 2 * (v % 100), 2);
}

/* The 8 digits of v < 10^8, leading zeros included: two independent 32-bit halves. */
static inline void put8(char *o, uint32_t v)
{
	put4(o, v / 10000);
	put4(o + 4, v % 10000);
}

/* v < 10^8 without leading zeros; returns the end. */
static inline char *put_upto8(char *o, uint32_t v)
{
	size_t n = v < 10000 ? (v < 100 ? (v < 10 ? 1 : 2) : (v < 1000 ? 3 : 4)) :
			       (v < 1000000 ? (v < 100000 ? 5 : 6) : (v < 10000000 ? 7 : 8));
	char *e = o + n;

	while (v >= 100) {
		unsigned r = v % 100;

		v /= 100;
		e -= 2;
		memcpy(e, DIGIT_PAIRS + 2 * r, 2);
	}
	if (v >= 10)
		memcpy(e - 2, DIGIT_PAIRS + 2 * v, 2);
	else
		e[-1] = (char)('0' + v);
	return o + n;
}

/* 64-bit divisions only to split v into 8-digit pieces (a ts_ns has 19 digits: two), the
 * digits then by 32-bit ones. */
char *tv_put_u64(char *o, uint64_t v)
{
	uint64_t hi;
	uint32_t lo;

	if (v < 100000000u)
		return put_upto8(o, (uint32_t)v);
	hi = v / 100000000u;
	lo = (uint32_t)(v % 100000000u);
	if (hi < 100000000u) {
		o = put_upto8(o, (uint32_t)hi);
	} else {
		o = put_upto8(o, (uint32_t)(hi / 100000000u));
		put8(o, (uint32_t)(hi % 100000000u));
		o += 8;
	}
	put8(o, lo);
	return o + 8;
}

void tv_out_u64(struct tv_out_buf *b, uint64_t v)
{
	if (b->cap - b->len < TV_U64_MAX_DIGITS && tv_out_reserve(b, TV_U64_MAX_DIGITS))
		return;
	b->len = (size_t)(tv_put_u64(b->p + b->len, v) - b->p);
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

size_t tv_term_char(const unsigned char *s, size_t n, size_t *skip)
{
	size_t len = tv_utf8_seq(s, n);

	*skip = len ? len : 1;
	if (len == 1)
		return s[0] >= 0x20 && s[0] < 0x7f;
	if (len == 2 && s[0] == 0xc2 && s[1] < 0xa0) /* C1 controls, U+0080-U+009F */
		return 0;
	if (len == 3 && s[0] == 0xe2 &&
	    ((s[1] == 0x80 && s[2] >= 0xa8 && s[2] <= 0xae) ||  /* U+2028-U+202E */
	     (s[1] == 0x81 && s[2] >= 0xa6 && s[2] <= 0xa9)))   /* U+2066-U+2069 */
		return 0;
	return len;
}

/* Bytes a JSON string can hold as they are: printable ASCII but '"' and '\\'. */
static inline bool json_plain(unsigned char c)
{
	return (unsigned char)(c - 0x20) < 0x5f && c != '"' && c != '\\';
}

#define REPLACEMENT_JSON "\\ufffd"
#define REPLACEMENT_UTF8 "\xef\xbf\xbd" /* U+FFFD */

/* Byte-parallel tests on 8 bytes at once (the "determine if a word has a byte ..." bit hacks):
 * whether any byte of x is zero, is below n (n <= 128), or is above n (n < 128); the first
 * is exact, the others may say yes for a byte after a match, never no for a word with one. */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
#define HAS_ZERO(x) (((x) - ONES) & ~(x) & HIGHS)
#define HAS_LESS(x, n) (((x) - ONES * (n)) & ~(x) & HIGHS)
#define HAS_MORE(x, n) ((((x) + ONES * (127 - (n))) | (x)) & HIGHS)

/* Whether the 8 bytes at s all pass json_plain: then they are copied as they are. */
static inline bool json_plain8(const unsigned char *s)
{
	uint64_t x;

	memcpy(&x, s, sizeof(x));
	return !(HAS_LESS(x, 0x20) | HAS_MORE(x, 0x7e) | HAS_ZERO(x ^ (ONES * '"')) |
		 HAS_ZERO(x ^ (ONES * '\\')));
}

#ifdef __SSE2__
/* Bit k set for each byte s[k] of the 16 at s that json_plain refuses (or DEL): one signed
 * compare finds the control bytes and every byte from 0x80 (negative as int8), two more the
 * quote and the backslash. */
static inline unsigned json_special16(const unsigned char *s)
{
	__m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
	__m128i low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
	__m128i quote = _mm_cmpeq_epi8(v, _mm_set1_epi8('"'));
	__m128i bslash = _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'));
	__m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));

	return (unsigned)_mm_movemask_epi8(
		_mm_or_si128(_mm_or_si128(low, quote), _mm_or_si128(bslash, del)));
}
#endif

char *tv_put_json(char *o, const void *v, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = v;
	size_t i = 0;

	*o++ = '"';
	while (i < n) {
		size_t len;

#ifdef __SSE2__
		if (n - i >= 16) { /* the usual case: 16 bytes tested at once */
			unsigned special = json_special16(s + i);

			/* 16 bytes stored whatever the test says, the plain ones before the first
			 * other byte kept: o is at most 1 + 6 * i bytes in, so the store stays
			 * inside the 6 * n + 2 the caller reserved (n - i >= 16) */
			memcpy(o, s + i, 16);
			if (!special) {
				o += 16;
				i += 16;
				continue;
			}
			o += (size_t)__builtin_ctz(special);
			i += (size_t)__builtin_ctz(special);
			/* s[i] is not plain: the tests below take it */
		}
#endif
		if (n - i >= 8 && json_plain8(s + i)) { /* the usual case: 8 plain bytes */
			memcpy(o, s + i, 8);
			o += 8;
			i += 8;
			continue;
		}
		if (json_plain(s[i])) {
			*o++ = (char)s[i++];
			continue;
		}
		len = tv_utf8_seq(s + i, n - i);
		if (len == 0) {
			memcpy(o, REPLACEMENT_JSON, 6);
			o += 6;
			i++;
			continue;
		}
		if (len > 1) {
			memcpy(o, s + i, len);
			o += len;
		} else if (s[i] == '"' || s[i] == '\\') {
			*o++ = '\\';
			*o++ = (char)s[i];
		} else if (s[i] == '\n' || s[i] == '\r' || s[i] == '\t') {
			*o++ = '\\';
			*o++ = s[i] == '\n' ? 'n' : s[i] == '\r' ? 'r' : 't';
		} else if (s[i] == 0x7f) { /* DEL passes as itself */
			*o++ = 0x7f;
		} else { /* other control bytes */
			memcpy(o, "\\u00", 4);
			o[4] = hex[s[i] >> 4];
			o[5] = hex[s[i] & 15];
			o += 6;
		}
		i += len;
	}
	*o++ = '"';
	return o;
}

void tv_out_json_bytes(struct tv_out_buf *b, const void *v, size_t n)
{
	/* the worst case (every byte \u00XX) reserved once: the writer cannot fail midway */
	if (n > (SIZE_MAX - 2) / 6 || tv_out_reserve(b, 6 * n + 2))
		return;
	b->len = (size_t)(tv_put_json(b->p + b->len, v, n) - b->p);
}

void tv_out_json_str(struct tv_out_buf *b, const char *s)
{
	s = s ? s : "";
	tv_out_json_bytes(b, s, strlen(s));
}

char *tv_put_utf8_clean(char *o, const void *v, size_t n)
{
	const unsigned char *s = v;
	size_t i = 0;

	while (i < n) {
		size_t len;

		if (s[i] < 0x80) {
			*o++ = (char)s[i++];
			continue;
		}
		len = tv_utf8_seq(s + i, n - i);
		if (len == 0) {
			memcpy(o, REPLACEMENT_UTF8, 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(o, s + i, len);
		o += len;
		i += len;
	}
	return o;
}

void tv_out_utf8_clean(struct tv_out_buf *b, const void *v, size_t n)
{
	if (n > SIZE_MAX / 3 || tv_out_reserve(b, 3 * n))
		return;
	b->len = (size_t)(tv_put_utf8_clean(b->p + b->len, v, n) - b->p);
}

char *tv_put_csv_str(char *o, const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && s[i] != ',' && s[i] != '"' && s[i] != '\r' && s[i] != '\n')
		i++;
	if (i == n)
		return tv_put_utf8_clean(o, s, n);
	*o++ = '"';
	/* cleaning replaces only bytes >= 0x80, so the quotes are the input's ASCII ones */
	for (i = 0; i < n;) {
		size_t run = i;

		while (run < n && s[run] != '"')
			run++;
		o = tv_put_utf8_clean(o, s + i, run - i);
		if (run == n)
			break;
		*o++ = '"';
		*o++ = '"';
		i = run + 1;
	}
	*o++ = '"';
	return o;
}

void tv_out_csv_str(struct tv_out_buf *b, const char *s)
{
	size_t n = strlen(s);

	if (n > (SIZE_MAX - 2) / 3 || tv_out_reserve(b, 3 * n + 2))
		return;
	b->len = (size_t)(tv_put_csv_str(b->p + b->len, s, n) - b->p);
}
