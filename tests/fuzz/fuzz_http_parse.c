/* libFuzzer harness: the capture's HTTP/1.x parser (client/capture/http_parse.c) fed one
 * direction of a connection split into syscalls anywhere, as the capture delivers it.
 * Input:
 *   byte 0   options: bit 0 response parser, bit 1 keep_headers, bit 2 keep_credentials,
 *            bit 3 join mid-stream, bits 4-5 query mode, bit 6 small head limit (64 bytes),
 *            bit 7 a HEAD-like on_head (no_body on every response)
 *   byte 1   body_max (0..255)
 *   byte 2   k, the number of split records (k % 33), then k records of 4 bytes:
 *            u16 len (bytes of this syscall, mod what is left + 1), u8 cut (bytes at its end
 *            moved but not copied, as a copy cut at --payload-bytes), u8 op (bit 0: the
 *            connection switches protocol after this call, bit 1: with finish_current)
 *   rest     the stream's bytes; whatever the records leave is fed in one last call, then
 *            the connection closes.
 * Properties beyond "no crash" (ASan: no leak or overflow): every message ends at most once
 * after its head, and when neither feeding lost sync nor cut a copy, the messages (method,
 * path, host, status, body bytes, ids) are the same as when the whole stream comes in one
 * call: a split never changes what is parsed. (Joining mid-stream and resyncing after lost
 * sync wait for a feed that begins a message: there the splits may matter, by design.) */
#include <stdint.h>
#include <string.h>

#include "capture/http_parse.h"
#include "capture/query_redact.h"

#include "fuzz_check.h"

#define MAX_SPLITS 32
#define MAX_KEPT 64

/* What the comparison keeps of a message (the parser's strings are its own until the next) */
struct kept {
	uint64_t sum; /* FNV-1a of the compared fields */
	int incomplete, cut;
};

struct seen {
	int head_open; /* on_head ran, on_done not yet */
	int no_body;
	size_t n;
	struct kept msgs[MAX_KEPT];
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
	return s ? fnv(h, s, strlen(s) + 1) : fnv(h, "\xff", 1);
}

static void on_head(void *ctx, struct tv_http_msg *m)
{
	struct seen *s = ctx;

	s->head_open = 1;
	if (s->no_body)
		m->no_body = 1;
	/* headers: every "name\0value\0" pair lies inside the buffer */
	if (m->hdrs)
		FUZZ_CHECK(m->hdrs_len > 0 && m->hdrs[m->hdrs_len - 1] == '\0');
}

static void on_done(void *ctx, const struct tv_http_msg *m)
{
	struct seen *s = ctx;
	uint64_t h = 0xcbf29ce484222325ull;

	s->head_open = 0;
	FUZZ_CHECK(memchr(m->method, '\0', sizeof(m->method)));
	FUZZ_CHECK(memchr(m->trace_id, '\0', sizeof(m->trace_id)));
	FUZZ_CHECK(memchr(m->span_id, '\0', sizeof(m->span_id)));
	FUZZ_CHECK(memchr(m->http_version, '\0', sizeof(m->http_version)));
	FUZZ_CHECK(m->body_len <= m->body_bytes || m->body_len == 0);
	if (s->n == MAX_KEPT)
		return;
	h = fnv(h, m->method, strlen(m->method));
	h = fnv_str(h, m->path);
	h = fnv_str(h, m->host);
	h = fnv(h, &m->status, sizeof(m->status));
	h = fnv(h, &m->body_bytes, sizeof(m->body_bytes));
	h = fnv(h, m->trace_id, strlen(m->trace_id));
	h = fnv(h, m->span_id, strlen(m->span_id));
	h = fnv(h, m->http_version, strlen(m->http_version));
	if (m->body)
		h = fnv(h, m->body, m->body_len);
	s->msgs[s->n++] = (struct kept){ h, m->incomplete, m->cut };
}

static const struct tv_http_callbacks CB = { on_head, on_done };

struct split {
	size_t len, cut;
	uint8_t op;
};

struct run_opts {
	uint8_t flags, body_max;
	const struct tv_query_rules *rules;
};

/* Feed data[0, n) by the splits (k of them; the rest in one call) and close. Returns whether
 * the parser stayed in sync with every byte copied. */
static int run(const struct run_opts *o, const struct split *sp, size_t k, const uint8_t *data,
	       size_t n, struct seen *s)
{
	struct tv_http_parser p;
	uint64_t ts = 1000;
	size_t off = 0;
	int clean = 1;

	memset(s, 0, sizeof(*s));
	s->no_body = !!(o->flags & 0x80);
	tv_http_parser_init(&p, o->flags & 1 ? TV_HTTP_RESPONSE : TV_HTTP_REQUEST, &CB, s);
	p.keep_headers = !!(o->flags & 2);
	p.keep_credentials = !!(o->flags & 4);
	p.query = o->rules;
	p.body_max = o->body_max;
	if (o->flags & 0x40)
		p.max_head_bytes = 64;
	if (o->flags & 8) {
		/* it waits for a feed that begins a message: where feeds begin matters */
		tv_http_parser_join_midstream(&p);
		clean = 0;
	}
	for (size_t i = 0; i <= k; i++) {
		size_t len = i < k ? sp[i].len % (n - off + 1) : n - off;
		size_t cut = i < k && sp[i].cut <= len ? sp[i].cut : 0;

		tv_http_parser_feed(&p, data + off, len - cut, len, ts++);
		off += len;
		if (cut)
			clean = 0;
		if (i < k && (sp[i].op & 1)) {
			tv_http_parser_switch(&p, !!(sp[i].op & 2));
			clean = 0;
		}
	}
	tv_http_parser_close(&p, ts);
	if (p.errors || p.heads_cut_copy)
		clean = 0;
	tv_http_parser_free(&p);
	return clean;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seen a, b;
	struct fuzz_in in = { data, size };
	struct split sp[MAX_SPLITS];
	struct tv_query_rules rules;
	struct run_opts o;
	size_t k;
	int clean;

	o.flags = fuzz_u8(&in);
	o.body_max = fuzz_u8(&in);
	k = fuzz_u8(&in) % (MAX_SPLITS + 1);
	for (size_t i = 0; i < k; i++) {
		sp[i].len = (size_t)fuzz_uint(&in, 2);
		sp[i].cut = fuzz_u8(&in);
		sp[i].op = fuzz_u8(&in);
	}
	tv_query_rules_default(&rules);
	rules.mode = (enum tv_query_mode)((o.flags >> 4) & 3) % 3;
	o.rules = &rules;

	clean = run(&o, sp, k, in.p, in.n, &a);
	/* the same bytes in one call */
	if (clean && k > 0 && run(&o, NULL, 0, in.p, in.n, &b)) {
		FUZZ_CHECK(a.n == b.n);
		for (size_t i = 0; i < a.n; i++) {
			FUZZ_CHECK(a.msgs[i].sum == b.msgs[i].sum);
			FUZZ_CHECK(a.msgs[i].incomplete == b.msgs[i].incomplete);
			FUZZ_CHECK(a.msgs[i].cut == b.msgs[i].cut);
		}
	}
	return 0;
}
