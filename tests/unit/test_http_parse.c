/* Unit tests for client/capture/http_parse.c: requests and responses fed the way syscalls deliver
 * them (split anywhere, several per read, truncated copies) must give the same messages. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "capture/http_parse.h"
#include "capture/query_redact.h"

#define MAX_MSGS 16

struct seen {
	int heads;
	int n;
	struct tv_http_msg msgs[MAX_MSGS];
	int head_no_body; /* make on_head set no_body, as the capture does for HEAD requests */
};

static void on_head(void *ctx, struct tv_http_msg *m)
{
	struct seen *s = ctx;

	s->heads++;
	if (s->head_no_body)
		m->no_body = 1;
}

/* Paths copied out of the messages (the parser frees its own at the next message), freed
 * after the last test. */
static char *kept[1024];
static size_t n_kept;

static char *keep_str(const char *str)
{
	char *d = strdup(str ? str : "");

	assert_non_null(d);
	assert_true(n_kept < sizeof(kept) / sizeof(kept[0]));
	kept[n_kept++] = d;
	return d;
}

static int free_kept(void **state)
{
	(void)state;
	while (n_kept > 0)
		free(kept[--n_kept]);
	return 0;
}

static void on_done(void *ctx, const struct tv_http_msg *m)
{
	struct seen *s = ctx;

	assert_true(s->n < MAX_MSGS);
	s->msgs[s->n] = *m;
	s->msgs[s->n].host = m->host ? keep_str(m->host) : NULL;
	s->msgs[s->n++].path = keep_str(m->path);
}

/* What the parser allocated, then the parser itself. */
static void drop_parser(struct tv_http_parser *p)
{
	tv_http_parser_free(p);
	free(p);
}

/* Non-NULL when the head buffer (if any) still holds needle: it must be wiped after a head. */
static const void *head_holds(const struct tv_http_parser *p, const char *needle, size_t n)
{
	return p->head ? memmem(p->head, p->head_cap, needle, n) : NULL;
}

static const struct tv_http_callbacks cbs = { on_head, on_done };

static struct tv_http_parser *new_parser(enum tv_http_kind kind, struct seen *s)
{
	struct tv_http_parser *p = malloc(sizeof(*p));

	assert_non_null(p);
	memset(s, 0, sizeof(*s));
	tv_http_parser_init(p, kind, &cbs, s);
	return p;
}

static void feed_str(struct tv_http_parser *p, const char *str, uint64_t ts_ns)
{
	tv_http_parser_feed(p, str, strlen(str), strlen(str), ts_ns);
}

static const char POST_REQ[] = "POST /upload?token=secret HTTP/1.1\r\n"
			       "Host: example\r\n"
			       "Authorization: Bearer hunter2\r\n"
			       "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
			       "Content-Length: 11\r\n"
			       "\r\n"
			       "hello world";

static void test_request_split_byte_by_byte(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);
	size_t i, n = strlen(POST_REQ);

	(void)state;
	for (i = 0; i < n; i++)
		tv_http_parser_feed(p, POST_REQ + i, 1, 1, 1000 + i);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.msgs[0].method, "POST");
	assert_string_equal(s.msgs[0].path, "/upload"); /* the query (a token here) is not kept */
	assert_int_equal(s.msgs[0].body_bytes, 11);
	assert_string_equal(s.msgs[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_string_equal(s.msgs[0].span_id, "00f067aa0ba902b7");
	assert_int_equal(s.msgs[0].first_ts_ns, 1000);
	assert_int_equal(s.msgs[0].last_ts_ns, 1000 + n - 1);
	assert_int_equal(s.msgs[0].incomplete, 0);
	/* the head buffer is wiped: no credential survives in parser memory */
	assert_null(head_holds(p, "hunter2", 7));
	drop_parser(p);
}

static void test_several_requests_in_one_read(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);
	const char *reqs = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
			   "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
			   "HEAD /c HTTP/1.0\r\n\r\n"
			   "GET /d HTTP/1.1\r\nHost: x\r\n"; /* head continues in the next read */

	(void)state;
	feed_str(p, reqs, 5);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.msgs[0].method, "GET");
	assert_string_equal(s.msgs[0].path, "/a");
	assert_int_equal(s.msgs[0].body_bytes, 0);
	assert_string_equal(s.msgs[1].method, "POST");
	assert_string_equal(s.msgs[1].path, "/b");
	assert_int_equal(s.msgs[1].body_bytes, 3);
	assert_string_equal(s.msgs[2].method, "HEAD");
	assert_string_equal(s.msgs[2].path, "/c");
	assert_string_equal(s.msgs[2].trace_id, "");
	feed_str(p, "\r\n", 9);
	assert_int_equal(s.n, 4);
	assert_string_equal(s.msgs[3].path, "/d");
	assert_int_equal(s.msgs[3].first_ts_ns, 5);
	assert_int_equal(s.msgs[3].last_ts_ns, 9);
	drop_parser(p);
}

static void test_response_content_length_counts_uncopied_bytes(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);
	const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 102400\r\n\r\n";

	(void)state;
	feed_str(p, head, 1);
	assert_int_equal(s.heads, 1);
	assert_int_equal(s.n, 0);
	/* sendfile: bytes moved, none copied */
	tv_http_parser_feed(p, NULL, 0, 65536, 2);
	assert_int_equal(s.n, 0);
	tv_http_parser_feed(p, NULL, 0, 102400 - 65536, 3);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].status, 200);
	assert_int_equal(s.msgs[0].body_bytes, 102400);
	assert_int_equal(s.msgs[0].last_ts_ns, 3);
	/* keep-alive: the next response on the same connection parses normally */
	feed_str(p, "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!", 4);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.msgs[1].status, 404);
	assert_int_equal(s.msgs[1].body_bytes, 5);
	drop_parser(p);
}

static void test_truncated_copy_inside_body(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);
	const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\nxxxx";

	(void)state;
	/* one write of head + whole body, of which only the head and 4 body bytes were copied */
	tv_http_parser_feed(p, r, strlen(r), strlen(r) - 4 + 10000, 7);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].body_bytes, 10000);
	assert_int_equal(p->errors, 0);
	drop_parser(p);
}

static void test_chunked_response(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);

	(void)state;
	feed_str(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 1);
	feed_str(p, "lo\r\n1", 2);
	feed_str(p, "0;ext=1\r\n0123456789abcdef\r\n0\r\n", 3);
	assert_int_equal(s.n, 0);
	feed_str(p, "X-Trailer: 1\r\n\r\n", 4);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].body_bytes, 5 + 16);
	assert_int_equal(s.msgs[0].last_ts_ns, 4);
	assert_int_equal(p->errors, 0);
	drop_parser(p);
}

static void test_bodiless_responses(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);

	(void)state;
	/* 204 and 304 never have a body, whatever the headers say */
	feed_str(p, "HTTP/1.1 204 No Content\r\n\r\n", 1);
	feed_str(p, "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", 2);
	/* 100 Continue is interim: not reported, the final response follows */
	feed_str(p, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
		 3);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.msgs[0].status, 204);
	assert_int_equal(s.msgs[1].status, 304);
	assert_int_equal(s.msgs[1].body_bytes, 0);
	assert_int_equal(s.msgs[2].status, 201);
	/* a response to HEAD: the caller marks it bodiless in on_head */
	s.head_no_body = 1;
	feed_str(p, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", 4);
	assert_int_equal(s.n, 4);
	assert_int_equal(s.msgs[3].body_bytes, 0);
	s.head_no_body = 0;
	feed_str(p, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 5);
	assert_int_equal(s.n, 5);
	assert_int_equal(s.msgs[4].body_bytes, 2);
	drop_parser(p);
}

static void test_body_until_close(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);

	(void)state;
	feed_str(p, "HTTP/1.0 200 OK\r\n\r\nabc", 1);
	tv_http_parser_feed(p, "def", 3, 100, 2);
	assert_int_equal(s.n, 0);
	assert_int_equal(tv_http_parser_close(p, 3), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].body_bytes, 103);
	assert_int_equal(s.msgs[0].last_ts_ns, 3);
	drop_parser(p);
}

static void test_close_mid_body_reports_incomplete(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);

	(void)state;
	feed_str(p, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab", 1);
	assert_int_equal(tv_http_parser_close(p, 2), 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].incomplete, 1);
	assert_int_equal(s.msgs[0].body_bytes, 2);
	drop_parser(p);
}

static void test_malformed_input_resyncs(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);
	char junk[TV_HTTP_DEFAULT_HEAD_BYTES + 100];
	unsigned seed = 42;
	size_t i;
	int round;

	(void)state;
	feed_str(p, "\x01\x02garbage without structure\r\n\r\n", 1);
	assert_int_equal(s.n, 0);
	assert_true(p->errors >= 1);
	feed_str(p, "GET /ok HTTP/1.1\r\n\r\n", 2);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.msgs[0].path, "/ok");
	/* conflicting Content-Length values are rejected, not guessed */
	feed_str(p, "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 3);
	assert_int_equal(s.n, 1);
	/* neither is stored, both are counted */
	assert_int_equal(p->heads_unparsed, 2);
	/* a request line longer than the head limit: the method and the target's first bytes,
	 * marked cut */
	memset(junk, 'a', sizeof(junk));
	memcpy(junk, "GET /", 5);
	tv_http_parser_feed(p, junk, sizeof(junk), sizeof(junk), 4);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.msgs[1].method, "GET");
	assert_int_equal(strlen(s.msgs[1].path), TV_HTTP_DEFAULT_HEAD_BYTES - 4);
	assert_int_equal(s.msgs[1].cut, 1);
	assert_int_equal(s.msgs[1].incomplete, 1);
	assert_int_equal(p->heads_cut_limit, 1);
	s.n = 0; /* room for whatever the random bytes below make of themselves */
	/* random bytes, random split points: must not crash (ASan/UBSan build) */
	for (round = 0; round < 200; round++) {
		size_t n = (size_t)(rand_r(&seed) % sizeof(junk));

		for (i = 0; i < n; i++)
			junk[i] = (char)(rand_r(&seed) % 4 == 0 ? "\r\n: 0aGET/HTTP1."[rand_r(&seed) % 16]
								: rand_r(&seed));
		tv_http_parser_feed(p, junk, n, n + (uint64_t)(rand_r(&seed) % 3) * 1000, 5);
	}
	tv_http_parser_close(p, 6);
	/* still usable afterwards */
	s.n = 0;
	feed_str(p, "GET /again HTTP/1.1\r\n\r\n", 7);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.msgs[0].path, "/again");
	drop_parser(p);
}

static void test_invalid_traceparent_ignored(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);

	(void)state;
	feed_str(p, "GET / HTTP/1.1\r\ntraceparent: 00-00000000000000000000000000000000-"
		    "00f067aa0ba902b7-01\r\n\r\n", 1);
	feed_str(p, "GET / HTTP/1.1\r\nTraceParent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-"
		    "00f067aa0ba902b7-01\r\n\r\n", 2);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.msgs[0].trace_id, ""); /* all-zero trace id is invalid */
	assert_string_equal(s.msgs[1].trace_id, ""); /* upper-case hex is invalid */
	drop_parser(p);
}

/* Feed str in two reads split at k, timestamps 1 and 2. */
static void feed_split(struct tv_http_parser *p, const char *str, size_t k)
{
	size_t n = strlen(str);

	tv_http_parser_feed(p, str, k, k, 1);
	tv_http_parser_feed(p, str + k, n - k, n - k, 2);
}

/* A chunked response whose copy ended inside its last data chunk, written in one syscall with
 * its last-chunk (Node.js's res.end(data), nginx): the uncopied tail is exactly "\r\n0\r\n\r\n"
 * (or "0\r\n\r\n" after a copied CRLF, or 6 bytes once the CR was copied), so the message
 * ends there, complete and exact. Any other uncopied length after a chunk still loses sync. */
static void test_uncopied_last_chunk_ends_the_body(void **state)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				   "14\r\n0123456789";
	static const struct {
		const char *copied_tail; /* copied after head: the rest of the data and more */
		uint64_t uncopied;       /* bytes past the copy */
		int complete;
	} cases[] = {
		{ "", 10 + 7, 1 },           /* copy ends inside the data */
		{ "abcdefghij", 7, 1 },      /* at the data's end */
		{ "abcdefghij\r", 6, 1 },    /* after the CR */
		{ "abcdefghij\r\n", 5, 1 }, /* after the CRLF */
		{ "abcdefghij", 8, 0 },      /* not the last-chunk: a trailer or another chunk */
		{ "abcdefghij", 6, 0 },
		{ "abcdefghij\r\n", 7, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct seen s;
		struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);
		char buf[256];
		size_t n = (size_t)snprintf(buf, sizeof(buf), "%s%s", head, cases[i].copied_tail);

		tv_http_parser_feed(p, buf, n, n + cases[i].uncopied, 5);
		assert_int_equal(s.n, 1);
		assert_int_equal(s.msgs[0].incomplete, !cases[i].complete);
		assert_int_equal(p->errors, !cases[i].complete);
		if (cases[i].complete) {
			assert_int_equal(s.msgs[0].body_bytes, 20);
			feed_str(p, "HTTP/1.1 204 No Content\r\n\r\n", 6); /* still in step */
			assert_int_equal(s.n, 2);
			assert_int_equal(s.msgs[1].status, 204);
		}
		drop_parser(p);
	}
}

/* Chunked bodies in both directions, split at every byte (inside the size line, its extension,
 * the CRLFs after the size and after the data, the last chunk and the trailer), then followed
 * by a pipelined message that must still parse. */
static void test_chunked_split_anywhere_both_directions(void **state)
{
	static const char req[] = "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				  "5\r\nhello\r\n1a;name=val\r\nabcdefghijklmnopqrstuvwxyz\r\n"
				  "0\r\nX-Checksum: 1\r\n\r\n"
				  "GET /next HTTP/1.1\r\n\r\n";
	static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
				   "A\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n"
				   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	struct seen s;
	struct tv_http_parser *p;
	size_t k, i;

	(void)state;
	for (k = 0; k <= strlen(req); k++) {
		p = new_parser(TV_HTTP_REQUEST, &s);
		feed_split(p, req, k);
		assert_int_equal(s.n, 2);
		assert_string_equal(s.msgs[0].path, "/up");
		assert_int_equal(s.msgs[0].body_bytes, 5 + 26);
		assert_int_equal(s.msgs[0].incomplete, 0);
		assert_string_equal(s.msgs[1].path, "/next");
		assert_int_equal(p->errors, 0);
		drop_parser(p);
	}
	for (k = 0; k <= strlen(resp); k++) {
		p = new_parser(TV_HTTP_RESPONSE, &s);
		feed_split(p, resp, k);
		assert_int_equal(s.n, 2);
		assert_int_equal(s.msgs[0].body_bytes, 13);
		assert_int_equal(s.msgs[1].body_bytes, 2);
		assert_int_equal(p->errors, 0);
		drop_parser(p);
	}
	/* and one byte per read */
	p = new_parser(TV_HTTP_RESPONSE, &s);
	for (i = 0; i < strlen(resp); i++)
		tv_http_parser_feed(p, resp + i, 1, 1, i);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.msgs[0].body_bytes, 13);
	drop_parser(p);
}

/* Several responses in one read (answers to pipelined requests), mixed framings. */
static void test_pipelined_responses_in_one_read(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);

	(void)state;
	feed_str(p, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
		    "HTTP/1.1 204 No Content\r\n\r\n"
		    "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnope\r\n0\r\n\r\n"
		    "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"
		    "HTTP/1.1 500 Oops\r\nContent-Length: 6\r\n\r\nerr", 1);
	assert_int_equal(s.n, 4);
	assert_int_equal(s.msgs[0].status, 200);
	assert_int_equal(s.msgs[0].body_bytes, 3);
	assert_int_equal(s.msgs[1].status, 204);
	assert_int_equal(s.msgs[2].status, 404);
	assert_int_equal(s.msgs[2].body_bytes, 4);
	assert_int_equal(s.msgs[3].status, 304);
	assert_int_equal(s.msgs[3].body_bytes, 0);
	feed_str(p, "ors", 2);
	assert_int_equal(s.n, 5);
	assert_int_equal(s.msgs[4].status, 500);
	assert_int_equal(s.msgs[4].body_bytes, 6);
	assert_int_equal(s.msgs[4].first_ts_ns, 1);
	assert_int_equal(s.msgs[4].last_ts_ns, 2);
	drop_parser(p);
}

/* Interim 1xx responses (100 Continue, 102, 103 Early Hints with headers) neither report a
 * head nor complete anything: the final response does. */
static void test_interim_1xx_responses_do_not_complete(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);

	(void)state;
	feed_str(p, "HTTP/1.1 100 Continue\r\n\r\n", 1);
	assert_int_equal(s.heads, 0);
	assert_int_equal(s.n, 0);
	feed_str(p, "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
		    "Link: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-", 2);
	assert_int_equal(s.heads, 0);
	assert_int_equal(s.n, 0);
	feed_str(p, "Length: 4\r\n\r\ndone", 3);
	assert_int_equal(s.heads, 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].status, 200);
	assert_int_equal(s.msgs[0].body_bytes, 4);
	assert_int_equal(s.msgs[0].first_ts_ns, 2); /* the final response's first byte */
	drop_parser(p);
}

/* The request side of Expect: 100-continue: the head arrives alone, the body after the 100. */
static void test_expect_continue_request_body_follows_later(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);

	(void)state;
	feed_str(p, "PUT /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\n", 1);
	assert_int_equal(s.heads, 1);
	assert_int_equal(s.n, 0);
	feed_str(p, "abcdef", 5);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].body_bytes, 6);
	assert_int_equal(s.msgs[0].first_ts_ns, 1);
	assert_int_equal(s.msgs[0].last_ts_ns, 5);
	drop_parser(p);
}

/* HTTP/1.0: a request without framing headers has no body; a response without them is
 * delimited by the close, its uncopied bytes counted too. */
static void test_http10_request_and_close_delimited_response(void **state)
{
	struct seen rq, rs;
	struct tv_http_parser *req = new_parser(TV_HTTP_REQUEST, &rq);
	struct tv_http_parser *resp = new_parser(TV_HTTP_RESPONSE, &rs);

	(void)state;
	feed_str(req, "GET /old HTTP/1.0\r\nUser-Agent: x\r\n\r\n", 1);
	assert_int_equal(rq.n, 1);
	assert_int_equal(rq.msgs[0].body_bytes, 0);
	feed_str(resp, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nsome", 2);
	tv_http_parser_feed(resp, NULL, 0, 1 << 20, 3); /* sendfile of the rest */
	assert_int_equal(rs.n, 0);
	assert_int_equal(tv_http_parser_close(resp, 4), 0);
	assert_int_equal(rs.n, 1);
	assert_int_equal(rs.msgs[0].body_bytes, 4 + (1 << 20));
	assert_int_equal(rs.msgs[0].incomplete, 0);
	drop_parser(req);
	drop_parser(resp);
}

/* A truncated copy where the parser needs the bytes (a head) loses sync; the message whose
 * head was reported ends marked incomplete, and parsing resumes at the next message start. */
static void test_truncated_head_loses_sync_and_marks_incomplete(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);
	const char *r = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab";

	(void)state;
	/* the copy ends inside chunk data, the syscall carried 100 more bytes (the rest of the
	 * chunk, then framing the parser never sees) */
	tv_http_parser_feed(p, r, strlen(r), strlen(r) + 100, 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].incomplete, 1);
	assert_true(s.msgs[0].body_bytes >= 4);
	assert_true(p->errors >= 1);
	feed_str(p, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 2);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.msgs[1].status, 201);
	assert_int_equal(s.msgs[1].incomplete, 0);
	drop_parser(p);
}

/* A request head cut by the payload copy limit (a big Cookie) or longer than the head buffer
 * is still reported from its complete lines, marked incomplete, and the next message parses. */
/* ---- limits: the head limit follows --payload-bytes, paths are kept as long as the head ---- */

static const char TP_LINE[] =
	"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n";

/* A request head of exactly total bytes (blank line included): "GET /h HTTP/1.1", filler
 * header lines, traceparent last. Returns a malloc'd buffer of total bytes. */
static char *request_head_of(size_t total)
{
	static const char start[] = "GET /h HTTP/1.1\r\n";
	size_t fixed = strlen(start) + strlen(TP_LINE) + 2, n, pos = 0;
	char *h = malloc(total);

	assert_non_null(h);
	assert_true(total >= fixed + 8);
	memcpy(h, start, strlen(start));
	pos = strlen(start);
	/* one filler line "X: ccc...\r\n" taking up what is left */
	n = total - fixed;
	memcpy(h + pos, "X: ", 3);
	memset(h + pos + 3, 'c', n - 5);
	memcpy(h + pos + n - 2, "\r\n", 2);
	pos += n;
	memcpy(h + pos, TP_LINE, strlen(TP_LINE));
	pos += strlen(TP_LINE);
	memcpy(h + pos, "\r\n", 2);
	assert_int_equal(pos + 2, total);
	return h;
}

static void test_head_limit_follows_payload_bytes(void **state)
{
	(void)state;
	assert_int_equal(tv_http_head_limit(1), TV_HTTP_DEFAULT_HEAD_BYTES);
	assert_int_equal(tv_http_head_limit(4096), TV_HTTP_DEFAULT_HEAD_BYTES);
	assert_int_equal(tv_http_head_limit(TV_HTTP_DEFAULT_HEAD_BYTES), TV_HTTP_DEFAULT_HEAD_BYTES);
	assert_int_equal(tv_http_head_limit(TV_HTTP_DEFAULT_HEAD_BYTES + 1),
			 TV_HTTP_DEFAULT_HEAD_BYTES + 1);
	assert_int_equal(tv_http_head_limit(32768), 32768);
}

/* At the head limit a head parses whole (traceparent last found); one byte over it is cut:
 * reported from its complete lines with cut set, counted by reason. Both edges, at the
 * default limit and at the 32K one --payload-bytes 32K gives. */
static void test_head_at_and_over_the_limit(void **state)
{
	static const size_t limits[] = { TV_HTTP_DEFAULT_HEAD_BYTES, 32768 };

	(void)state;
	for (size_t k = 0; k < 2; k++) {
		struct seen s;
		struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);
		char *h = request_head_of(limits[k]);

		p->max_head_bytes = tv_http_head_limit(limits[k]);
		tv_http_parser_feed(p, h, limits[k], limits[k], 1);
		assert_int_equal(s.n, 1);
		assert_string_equal(s.msgs[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
		assert_int_equal(s.msgs[0].cut, 0);
		assert_int_equal(s.msgs[0].incomplete, 0);
		assert_int_equal(p->heads_cut_limit, 0);
		free(h);
		/* the buffer of a big head is given back, so an idle connection holds little */
		assert_true(p->head_cap <= TV_HTTP_HEAD_KEEP_BYTES);

		h = request_head_of(limits[k] + 1);
		tv_http_parser_feed(p, h, limits[k] + 1, limits[k] + 1, 2);
		assert_int_equal(s.n, 2);
		assert_string_equal(s.msgs[1].path, "/h");
		/* only the blank line's last byte was past the cut: every line is whole */
		assert_string_equal(s.msgs[1].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
		assert_int_equal(s.msgs[1].cut, 1);
		assert_int_equal(s.msgs[1].incomplete, 1);
		assert_int_equal(p->heads_cut_limit, 1);
		assert_int_equal(p->heads_cut_copy, 0);
		assert_null(head_holds(p, "cccc", 4)); /* wiped */
		free(h);
		/* the next message parses */
		feed_str(p, "GET /next HTTP/1.1\r\n\r\n", 3);
		assert_int_equal(s.n, 3);
		assert_int_equal(s.msgs[2].cut, 0);
		drop_parser(p);
	}
}

/* A 10 KiB response head copied whole at --payload-bytes 32K: its body is counted exactly. */
static void test_big_response_head_counts_its_body(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);
	char buf[16384];
	size_t n;

	(void)state;
	p->max_head_bytes = tv_http_head_limit(32768);
	n = (size_t)snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n");
	for (int i = 0; i < 10; i++) {
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-Policy-%d: ", i);
		memset(buf + n, 'p', 990);
		n += 990;
		memcpy(buf + n, "\r\n", 2);
		n += 2;
	}
	memcpy(buf + n, "\r\n", 2);
	n += 2;
	assert_true(n > 10000);
	tv_http_parser_feed(p, buf, n, n + 5000, 1); /* the body, uncopied */
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].status, 200);
	assert_int_equal(s.msgs[0].body_bytes, 5000);
	assert_int_equal(s.msgs[0].cut, 0);
	assert_int_equal(s.msgs[0].incomplete, 0);
	/* at the default limit the same head is cut: flagged, counted, the body a lower bound */
	drop_parser(p);
	p = new_parser(TV_HTTP_RESPONSE, &s);
	tv_http_parser_feed(p, buf, n, n + 5000, 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].status, 200);
	assert_int_equal(s.msgs[0].cut, 1);
	assert_int_equal(p->heads_cut_limit, 1);
	drop_parser(p);
}

/* Paths are kept whole as long as the request line fits the head; a request line longer than
 * the head keeps the target's first bytes, marked cut. */
static void test_long_path_kept_whole_up_to_the_head(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);
	size_t lim = TV_HTTP_DEFAULT_HEAD_BYTES;
	/* "GET " + path + " HTTP/1.1\r\n\r\n" = lim bytes */
	size_t plen = lim - 4 - 13;
	char *buf = malloc(lim + 2);
	char *path = malloc(lim + 1);

	(void)state;
	assert_non_null(buf);
	assert_non_null(path);
	path[0] = '/';
	memset(path + 1, 'a', lim - 1);
	path[plen] = 0;
	/* 2000 bytes, far past the old 511 */
	snprintf(buf, lim + 2, "GET %.2000s HTTP/1.1\r\n\r\n", path);
	feed_str(p, buf, 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(strlen(s.msgs[0].path), 2000);
	assert_int_equal(s.msgs[0].cut, 0);
	/* the head exactly at the limit: whole */
	snprintf(buf, lim + 2, "GET %s HTTP/1.1\r\n\r\n", path);
	assert_int_equal(strlen(buf), lim);
	feed_str(p, buf, 2);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.msgs[1].path, path);
	assert_int_equal(s.msgs[1].cut, 0);
	/* one byte more: the request line is still whole (the path too), the head is not */
	path[plen] = 'a';
	path[plen + 1] = 0;
	snprintf(buf, lim + 2, "GET %s HTTP/1.1\r\n\r\n", path);
	feed_str(p, buf, 3);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.msgs[2].path, path);
	assert_int_equal(s.msgs[2].cut, 1);
	/* the query is still dropped from a long target */
	path[plen] = 0;
	path[100] = '?';
	snprintf(buf, lim + 2, "GET %s HTTP/1.1\r\n\r\n", path);
	feed_str(p, buf, 4);
	assert_int_equal(s.n, 4);
	assert_int_equal(strlen(s.msgs[3].path), 100);
	assert_int_equal(s.msgs[3].cut, 0);
	free(buf);
	free(path);
	drop_parser(p);
}

/* A start line the parser cannot read (a method over 15 bytes, HTTP/2's preface) is not a
 * record: it is counted. A 15-byte method is fine. */
static void test_unparseable_start_lines_are_counted(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);

	(void)state;
	feed_str(p, "ABCDEFGHIJKLMNO /x HTTP/1.1\r\n\r\n", 1); /* 15 */
	assert_int_equal(s.n, 1);
	assert_string_equal(s.msgs[0].method, "ABCDEFGHIJKLMNO");
	assert_int_equal(p->heads_unparsed, 0);
	feed_str(p, "ABCDEFGHIJKLMNOP /x HTTP/1.1\r\n\r\n", 2); /* 16 */
	assert_int_equal(s.n, 1);
	assert_int_equal(p->heads_unparsed, 1);
	feed_str(p, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 3);
	assert_int_equal(s.n, 1);
	assert_int_equal(p->heads_unparsed, 2);
	feed_str(p, "GET /ok HTTP/1.1\r\n\r\n", 4);
	assert_int_equal(s.n, 2);
	drop_parser(p);
}

static void test_cut_or_oversized_head_still_reports_start_line(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);
	char big[TV_HTTP_DEFAULT_HEAD_BYTES + 2000];
	size_t n;

	(void)state;
	n = (size_t)snprintf(big, sizeof(big), "GET /cookie-heavy?q=1 HTTP/1.1\r\ntraceparent: "
			     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nCookie: ");
	memset(big + n, 'c', sizeof(big) - n);
	/* 4 KiB copied of a 6 KiB head + its blank line */
	tv_http_parser_feed(p, big, 4096, 6000, 1);
	assert_int_equal(s.heads, 1);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.msgs[0].method, "GET");
	assert_string_equal(s.msgs[0].path, "/cookie-heavy");
	assert_string_equal(s.msgs[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_int_equal(s.msgs[0].incomplete, 1);
	assert_null(head_holds(p, "cccc", 4)); /* wiped */
	feed_str(p, "GET /next HTTP/1.1\r\n\r\n", 2);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.msgs[1].path, "/next");
	assert_int_equal(s.msgs[1].incomplete, 0);
	/* all of it copied, but longer than the head buffer */
	tv_http_parser_feed(p, big, sizeof(big), sizeof(big), 3);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.msgs[2].path, "/cookie-heavy");
	assert_int_equal(s.msgs[2].incomplete, 1);
	/* a cut response head still gives its status */
	drop_parser(p);
	p = new_parser(TV_HTTP_RESPONSE, &s);
	tv_http_parser_feed(p, "HTTP/1.1 302 Found\r\nLocation: /x", 32, 5000, 4);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].status, 302);
	assert_int_equal(s.msgs[0].incomplete, 1);
	/* a cut interim response is not a message */
	tv_http_parser_feed(p, "HTTP/1.1 100 Continue\r\nX: y", 27, 500, 5);
	assert_int_equal(s.n, 1);
	drop_parser(p);
}

/* ---- --headers and redaction ---- */

struct hdr_seen {
	int heads;
	char buf[4][2048]; /* hdrs of each head, copied */
	size_t len[4];
	int had_null;      /* a head came with hdrs == NULL */
};

static void on_head_hdrs(void *ctx, struct tv_http_msg *m)
{
	struct hdr_seen *s = ctx;

	assert_true(s->heads < 4);
	if (!m->hdrs) {
		s->had_null = 1;
	} else {
		assert_true(m->hdrs_len <= sizeof(s->buf[0]));
		memcpy(s->buf[s->heads], m->hdrs, m->hdrs_len);
		s->len[s->heads] = m->hdrs_len;
	}
	s->heads++;
}

static void on_done_none(void *ctx, const struct tv_http_msg *m)
{
	(void)ctx;
	assert_null(m->hdrs); /* the head's buffer never outlives on_head */
}

static const struct tv_http_callbacks hdr_cbs = { on_head_hdrs, on_done_none };

/* The value of header name (exact case) in pairs, or NULL. */
static const char *hdr_value(const char *pairs, size_t len, const char *name)
{
	size_t pos = 0;

	while (pos < len) {
		const char *n = pairs + pos, *v = n + strlen(n) + 1;

		if (strcmp(n, name) == 0)
			return v;
		pos = (size_t)(v - pairs) + strlen(v) + 1;
	}
	return NULL;
}

static const char CRED_REQ[] = "GET /me?session=abc HTTP/1.1\r\n"
			       "Host: example\r\n"
			       "Authorization: Basic dXNlcjpwYXNz\r\n"
			       "COOKIE: sid=42; theme=dark\r\n"
			       "proxy-authorization: Bearer pxy\r\n"
			       "X-Odd: caf\xc3\xa9\x01!\r\n"
			       "Authorizations: not-a-credential\r\n"
			       "\r\n";
static const char CRED_RESP[] = "HTTP/1.1 200 OK\r\n"
				"Set-Cookie: sid=43; HttpOnly\r\n"
				"Content-Length: 2\r\n"
				"\r\nok";

static void parse_with_headers(int keep_credentials, struct hdr_seen *req,
			       struct hdr_seen *resp)
{
	struct tv_http_parser *p = malloc(sizeof(*p)), *q = malloc(sizeof(*q));

	assert_non_null(p);
	assert_non_null(q);
	memset(req, 0, sizeof(*req));
	memset(resp, 0, sizeof(*resp));
	tv_http_parser_init(p, TV_HTTP_REQUEST, &hdr_cbs, req);
	tv_http_parser_init(q, TV_HTTP_RESPONSE, &hdr_cbs, resp);
	p->keep_headers = q->keep_headers = 1;
	p->keep_credentials = q->keep_credentials = keep_credentials;
	feed_str(p, CRED_REQ, 1);
	feed_str(q, CRED_RESP, 2);
	drop_parser(p);
	drop_parser(q);
}

static void test_credential_headers_redacted_by_default(void **state)
{
	struct hdr_seen req, resp;

	(void)state;
	parse_with_headers(0, &req, &resp);
	assert_int_equal(req.heads, 1);
	assert_int_equal(tv_http_header_count(req.buf[0], req.len[0]), 6);
	assert_string_equal(hdr_value(req.buf[0], req.len[0], "Host"), "example");
	assert_string_equal(hdr_value(req.buf[0], req.len[0], "Authorization"), "[redacted]");
	/* names are matched case-insensitively and stored as sent */
	assert_string_equal(hdr_value(req.buf[0], req.len[0], "COOKIE"), "[redacted]");
	assert_string_equal(hdr_value(req.buf[0], req.len[0], "proxy-authorization"),
			    "[redacted]");
	/* only the exact names: a longer one is an ordinary header */
	assert_string_equal(hdr_value(req.buf[0], req.len[0], "Authorizations"),
			    "not-a-credential");
	/* bytes outside printable ASCII become '?' */
	assert_string_equal(hdr_value(req.buf[0], req.len[0], "X-Odd"), "caf??" "?!");
	assert_null(memmem(req.buf[0], req.len[0], "dXNlcjpwYXNz", 12));
	assert_null(memmem(req.buf[0], req.len[0], "sid=42", 6));
	assert_int_equal(resp.heads, 1);
	assert_string_equal(hdr_value(resp.buf[0], resp.len[0], "Set-Cookie"), "[redacted]");
	assert_string_equal(hdr_value(resp.buf[0], resp.len[0], "Content-Length"), "2");
}

static void test_credential_headers_kept_with_no_redact(void **state)
{
	struct hdr_seen req, resp;

	(void)state;
	parse_with_headers(1, &req, &resp);
	assert_string_equal(hdr_value(req.buf[0], req.len[0], "Authorization"),
			    "Basic dXNlcjpwYXNz");
	assert_string_equal(hdr_value(req.buf[0], req.len[0], "COOKIE"), "sid=42; theme=dark");
	assert_string_equal(hdr_value(req.buf[0], req.len[0], "proxy-authorization"),
			    "Bearer pxy");
	assert_string_equal(hdr_value(resp.buf[0], resp.len[0], "Set-Cookie"),
			    "sid=43; HttpOnly");
}

static void test_headers_not_kept_by_default(void **state)
{
	struct tv_http_parser *p = malloc(sizeof(*p));
	struct hdr_seen req;

	(void)state;
	assert_non_null(p);
	memset(&req, 0, sizeof(req));
	tv_http_parser_init(p, TV_HTTP_REQUEST, &hdr_cbs, &req);
	feed_str(p, CRED_REQ, 1);
	assert_int_equal(req.heads, 1);
	assert_true(req.had_null);
	drop_parser(p);
}

static void test_credential_header_names(void **state)
{
	(void)state;
	assert_true(tv_http_is_credential_header("set-COOKIE", 10));
	assert_true(tv_http_is_credential_header("Proxy-Authorization", 19));
	assert_false(tv_http_is_credential_header("Cookie2", 7));
	assert_false(tv_http_is_credential_header("Cook", 4));
	assert_false(tv_http_is_credential_header("X-Api-Key", 9));
}

/* A head whose copy was cut: only its complete lines are kept (no guessed-at value). */
static void test_cut_head_keeps_complete_header_lines(void **state)
{
	static const char head[] = "GET /x HTTP/1.1\r\nHost: h\r\nCookie: sid=1\r\nX-Long: abcdef";
	struct tv_http_parser *p = malloc(sizeof(*p));
	struct hdr_seen req;

	(void)state;
	assert_non_null(p);
	memset(&req, 0, sizeof(req));
	tv_http_parser_init(p, TV_HTTP_REQUEST, &hdr_cbs, &req);
	p->keep_headers = 1;
	/* the syscall moved 5000 bytes, only the first strlen(head) were copied */
	tv_http_parser_feed(p, head, strlen(head), 5000, 1);
	assert_int_equal(req.heads, 1);
	assert_int_equal(tv_http_header_count(req.buf[0], req.len[0]), 2);
	assert_string_equal(hdr_value(req.buf[0], req.len[0], "Cookie"), "[redacted]");
	assert_null(hdr_value(req.buf[0], req.len[0], "X-Long"));
	drop_parser(p);
}

/* ---- found by the issue 9 mutants ---- */

/* A status code starts with 1-9 (RFC 9110 §15): "099" is not a status line. */
static void test_status_below_100_is_malformed(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);

	(void)state;
	feed_str(p, "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", 1);
	assert_int_equal(s.heads, 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(p->errors, 1);
	/* the next real response resyncs */
	feed_str(p, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].status, 200);
	drop_parser(p);
}

/* W3C trace context: an all-zero parent id is invalid like an all-zero trace id; the pair is
 * dropped, not half kept. */
static void test_traceparent_with_zero_parent_id_ignored(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);

	(void)state;
	feed_str(p, "GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"
		    "0000000000000000-01\r\n\r\n", 1);
	feed_str(p, "GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"
		    "00f067aa0ba902b7-01\r\n\r\n", 2);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.msgs[0].trace_id, "");
	assert_string_equal(s.msgs[0].span_id, "");
	/* the control: the same trace id with a valid parent id is kept */
	assert_string_equal(s.msgs[1].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_string_equal(s.msgs[1].span_id, "00f067aa0ba902b7");
	drop_parser(p);
}

/* host: the Host header, unless the target names one (absolute-form wins, RFC 9112 §3.2.2;
 * CONNECT's authority-form is the host); http_version from the request line. */
static void test_host_and_http_version(void **state)
{
	static const struct {
		const char *req, *host, *path, *version;
	} cases[] = {
		{ "GET /a HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "example.com:8080", "/a",
		  "1.1" },
		{ "GET /a HTTP/1.0\r\n\r\n", NULL, "/a", "1.0" },
		{ "GET /a HTTP/1.0\r\nhOsT:   spaced.example   \r\n\r\n", "spaced.example", "/a",
		  "1.0" },
		{ "GET http://abs.example:81/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
		  "abs.example:81", "http://abs.example:81/p", "1.1" },
		{ "GET https://u:pw@abs.example HTTP/1.1\r\nHost: other\r\n\r\n", "abs.example",
		  "https://REDACTED:REDACTED@abs.example", "1.1" },
		{ "GET HTTP://[::1]:8080?x HTTP/1.1\r\n\r\n", "[::1]:8080", "HTTP://[::1]:8080",
		  "1.1" },
		{ "CONNECT tunnel.example:443 HTTP/1.1\r\nHost: tunnel.example:443\r\n\r\n",
		  "tunnel.example:443", "tunnel.example:443", "1.1" },
		{ "OPTIONS * HTTP/1.1\r\nHost: star.example\r\n\r\n", "star.example", "*", "1.1" },
		/* a second Host (invalid) does not replace the first */
		{ "GET / HTTP/1.1\r\nHost: first\r\nHost: second\r\n\r\n", "first", "/", "1.1" },
		/* not a scheme: an origin-form path that holds "://" later */
		{ "GET /x://y HTTP/1.1\r\nHost: h\r\n\r\n", "h", "/x://y", "1.1" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct seen s;
		struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);

		feed_str(p, cases[i].req, 1);
		assert_int_equal(s.n, 1);
		if (cases[i].host)
			assert_string_equal(s.msgs[0].host, cases[i].host);
		else
			assert_null(s.msgs[0].host);
		assert_string_equal(s.msgs[0].path, cases[i].path);
		assert_string_equal(s.msgs[0].http_version, cases[i].version);
		drop_parser(p);
	}
	/* a version that is not DIGIT "." DIGIT is not HTTP/1.x */
	{
		struct seen s;
		struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);

		feed_str(p, "GET / HTTP/1.x\r\n\r\n", 1);
		assert_int_equal(s.n, 0);
		assert_int_equal(p->heads_unparsed, 1);
		drop_parser(p);
	}
}

/* With query rules set (as the capture sets them), the path keeps its query, sensitive values
 * redacted, also when the request line is cut inside the query: the cut value of a listed
 * name is still hidden. */
static void test_query_rules_apply_to_path(void **state)
{
	struct tv_query_rules rules;
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);
	static const char cut[] = "GET /a?user=bob&token=0123456789abcdef HTTP/1.1\r\n\r\n";

	(void)state;
	tv_query_rules_default(&rules);
	p->query = &rules;
	feed_str(p, "GET /a?user=bob&token=s3cr3t HTTP/1.1\r\nHost: h\r\n\r\n", 1);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.msgs[0].path, "/a?user=bob&token=REDACTED");
	/* the copy ends inside the token's value: a cut head, its target's first bytes */
	tv_http_parser_feed(p, cut, 26, sizeof(cut) - 1, 2);
	assert_int_equal(s.n, 2);
	assert_true(s.msgs[1].cut);
	assert_string_equal(s.msgs[1].path, "/a?user=bob&token=REDACTED");
	assert_string_equal(s.msgs[1].http_version, "");
	drop_parser(p);
}

/* A request line cut inside an absolute-form target's authority: the part seen may be a
 * userinfo's user and password without the '@' that marks them, so it is not stored (it was:
 * "http://alice:hunte"); a cut after the authority keeps it, the userinfo redacted; with
 * --no-redact (TV_QUERY_KEEP) the bytes stay as seen. */
static void test_cut_inside_url_authority_hides_it(void **state)
{
	static const char line[] = "GET http://alice:hunter2@proxy.example/p?x=1 HTTP/1.1\r\n\r\n";
	struct tv_query_rules rules;
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);

	(void)state;
	tv_query_rules_default(&rules);
	p->query = &rules;
	tv_http_parser_feed(p, line, strlen("GET http://alice:hunte"), sizeof(line) - 1, 1);
	assert_int_equal(s.n, 1);
	assert_true(s.msgs[0].cut);
	assert_string_equal(s.msgs[0].path, "http://");
	tv_http_parser_feed(p, line, strlen("GET http://alice:hunter2@proxy.example/p"),
			    sizeof(line) - 1, 2);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.msgs[1].path, "http://REDACTED:REDACTED@proxy.example/p");
	rules.mode = TV_QUERY_KEEP;
	tv_http_parser_feed(p, line, strlen("GET http://alice:hunte"), sizeof(line) - 1, 3);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.msgs[2].path, "http://alice:hunte");
	drop_parser(p);
}

/* ---- connections that leave HTTP/1.x (RFC 9110 §7.8, §9.3.6; RFC 9113 §3.4) ---- */

/* A 101 is one message with no body, ended by its head; every byte after it, in the same
 * read or later, is tunnel traffic: counted, never a message, an error or a resync. */
static void test_101_ends_http_in_the_same_read(void **state)
{
	static const char tunnel[] = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ninside";
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);
	char buf[256];

	(void)state;
	snprintf(buf, sizeof(buf), "HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp\r\n"
		 "Content-Length: 40\r\n\r\n%s", tunnel);
	tv_http_parser_feed(p, buf, strlen(buf), strlen(buf) + 100, 7);
	assert_int_equal(s.heads, 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].status, 101);
	assert_int_equal(s.msgs[0].body_bytes, 0); /* no body follows a 101 */
	assert_int_equal(s.msgs[0].last_ts_ns, 7);
	assert_true(p->switched);
	assert_int_equal(p->tunnel_bytes, strlen(tunnel) + 100);
	feed_str(p, tunnel, 8);
	tv_http_parser_feed(p, "", 0, 5000, 9); /* uncopied or lost bytes: counted too */
	assert_int_equal(s.n, 1);
	assert_int_equal(p->errors, 0);
	assert_int_equal(p->heads_unparsed, 0);
	assert_int_equal(p->tunnel_bytes, 2 * strlen(tunnel) + 5100);
	assert_int_equal(tv_http_parser_close(p, 10), 0); /* nothing unfinished */
	assert_int_equal(s.n, 1);
	drop_parser(p);
}

/* A 101 whose head was cut by the copy still switches: what follows is not resynced to. */
static void test_cut_101_head_still_switches(void **state)
{
	static const char head[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-";
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);

	(void)state;
	tv_http_parser_feed(p, head, strlen(head), strlen(head) + 40, 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].status, 101);
	assert_true(s.msgs[0].cut);
	assert_true(p->switched);
	feed_str(p, "HTTP/1.1 200 OK\r\n\r\n", 2);
	assert_int_equal(s.n, 1);
	assert_int_equal(p->errors, 0);
	drop_parser(p);
}

/* on_head marks a response upgraded (the capture does for a 2xx to CONNECT): the message
 * ends at its head whatever framing it announces, and the rest is the tunnel's. */
static void on_head_upgrades(void *ctx, struct tv_http_msg *m)
{
	on_head(ctx, m);
	if (m->status / 100 == 2)
		m->upgraded = 1;
}

static void test_upgraded_response_ends_at_its_head(void **state)
{
	static const struct tv_http_callbacks up_cbs = { on_head_upgrades, on_done };
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_RESPONSE, &s);

	(void)state;
	tv_http_parser_init(p, TV_HTTP_RESPONSE, &up_cbs, &s);
	feed_str(p, "HTTP/1.1 200 Connection established\r\nContent-Length: 99\r\n\r\n"
		    "\x16\x03\x01\x02\x05\x01", 3);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].status, 200);
	assert_int_equal(s.msgs[0].body_bytes, 0);
	assert_true(p->switched);
	assert_int_equal(p->tunnel_bytes, 6);
	drop_parser(p);
	/* a refused CONNECT (407 with a body) is an ordinary exchange: parsing goes on */
	p = new_parser(TV_HTTP_RESPONSE, &s);
	tv_http_parser_init(p, TV_HTTP_RESPONSE, &up_cbs, &s);
	feed_str(p, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\n"
		    "nope" "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 3);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.msgs[0].body_bytes, 4);
	assert_false(p->switched);
	drop_parser(p);
}

/* Prior-knowledge h2c: the preface as the connection's first bytes makes the whole stream
 * HTTP/2's (RFC 9113 §3.4): no message, no unparsed head, no error. Anywhere else it is an
 * unreadable request line as before. */
static void test_h2_preface_switches_only_at_the_start(void **state)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	static const uint8_t frames[] = { 0, 0, 0, 4, 0, 0, 0, 0, 0, 'G', 'E', 'T', ' ', '/', 'x',
					  ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1', '\r', '\n',
					  '\r', '\n' };
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);
	size_t i, n = strlen(preface);

	(void)state;
	for (i = 0; i < n; i += 5) /* split anywhere */
		tv_http_parser_feed(p, preface + i, n - i < 5 ? n - i : 5, n - i < 5 ? n - i : 5, 1);
	tv_http_parser_feed(p, frames, sizeof(frames), sizeof(frames), 2);
	feed_str(p, "GET /inside-h2 HTTP/1.1\r\n\r\n", 3);
	assert_int_equal(s.heads, 0);
	assert_int_equal(s.n, 0);
	assert_true(p->switched);
	assert_int_equal(p->heads_unparsed, 0);
	assert_int_equal(p->errors, 0);
	assert_int_equal(p->tunnel_bytes, 6 + sizeof(frames) + 27);
	drop_parser(p);
	/* after a request: HTTP/2.0 is not a version this parser reads, counted as before */
	p = new_parser(TV_HTTP_REQUEST, &s);
	feed_str(p, "GET / HTTP/1.1\r\n\r\n" "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1);
	assert_int_equal(s.n, 1);
	assert_false(p->switched);
	assert_int_equal(p->heads_unparsed, 1);
	drop_parser(p);
}

/* tv_http_parser_switch on the request side: the upgrading request's body still in flight
 * completes first (RFC 9110 §7.8); without finish_current, a message under way is dropped. */
static void test_switch_finishes_the_body_in_flight(void **state)
{
	struct seen s;
	struct tv_http_parser *p = new_parser(TV_HTTP_REQUEST, &s);

	(void)state;
	feed_str(p, "POST /attach HTTP/1.1\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n"
		    "Content-Length: 10\r\n\r\n0123", 1);
	assert_int_equal(s.heads, 1);
	tv_http_parser_switch(p, 1); /* the 101 came while the body was under way */
	assert_false(p->switched);
	feed_str(p, "456789GET /tunnel HTTP/1.1\r\n\r\n", 2);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].body_bytes, 10);
	assert_int_equal(s.msgs[0].last_ts_ns, 2);
	assert_false(s.msgs[0].incomplete);
	assert_true(p->switched);
	assert_int_equal(p->tunnel_bytes, 24);
	drop_parser(p);

	p = new_parser(TV_HTTP_REQUEST, &s);
	feed_str(p, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET /behind HTTP/1.1\r\nX: y\r\n"
		    "Content-Length: 50\r\n\r\nabc", 1);
	assert_int_equal(s.heads, 2);
	assert_int_equal(s.n, 1);
	tv_http_parser_switch(p, 0); /* /behind was the new protocol's: abandoned, no on_done */
	feed_str(p, "more", 2);
	assert_int_equal(tv_http_parser_close(p, 3), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(p->errors, 0);
	assert_int_equal(p->tunnel_bytes, 4);
	drop_parser(p);
}

/* ---- --body-bytes: the first body bytes, de-chunked ---- */

static struct tv_http_parser *body_parser(enum tv_http_kind kind, struct seen *s, size_t max)
{
	struct tv_http_parser *p = new_parser(kind, s);

	p->body_max = max;
	return p;
}

/* The body prefix of the last message s saw, as a string (kept, freed after the tests). */
static char *last_body(const struct tv_http_parser *p)
{
	char *b = malloc(p->msg.body_len + 1);

	assert_non_null(b);
	memcpy(b, p->msg.body ? (const char *)p->msg.body : "", p->msg.body_len);
	b[p->msg.body_len] = 0;
	assert_true(n_kept < sizeof(kept) / sizeof(kept[0]));
	kept[n_kept++] = b;
	return b;
}

static void test_body_prefix_of_content_length_body(void **state)
{
	static const char resp[] = "HTTP/1.1 500 Internal Server Error\r\n"
				   "Content-Type: application/json\r\nContent-Encoding: identity\r\n"
				   "Content-Length: 31\r\n\r\n{\"error\":\"database is down\"}\r\n\r\n";
	struct seen s;
	struct tv_http_parser *p = body_parser(TV_HTTP_RESPONSE, &s, 16);

	(void)state;
	for (size_t i = 0; i < strlen(resp); i++) /* every split */
		tv_http_parser_feed(p, resp + i, 1, 1, i);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].body_bytes, 31);
	assert_int_equal(s.msgs[0].body_len, 16);
	assert_string_equal(last_body(p), "{\"error\":\"databa");
	assert_string_equal(p->msg.content_type, "application/json");
	assert_string_equal(p->msg.content_encoding, "identity");
	drop_parser(p);
	/* bodies off (the default): nothing kept, content headers not even looked at */
	p = new_parser(TV_HTTP_RESPONSE, &s);
	feed_str(p, resp, 1);
	assert_int_equal(s.n, 1);
	assert_null(p->msg.body);
	assert_null(p->msg.content_type);
	drop_parser(p);
}

/* Chunked: only chunk data is kept, across chunk boundaries and syscall splits; the prefix
 * ends at the first byte a copy did not carry. */
static void test_body_prefix_dechunked_across_splits(void **state)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
				   "Content-Type: text/plain; charset=utf-8\r\n\r\n"
				   "5;ext=1\r\nhello\r\n1\r\n \r\nA\r\nchunked wo\r\n3\r\nrld\r\n0\r\n"
				   "Trailer: x\r\n\r\n";
	struct seen s;
	struct tv_http_parser *p;
	size_t n = strlen(resp);

	(void)state;
	for (size_t cut = 1; cut < n; cut++) {
		p = body_parser(TV_HTTP_RESPONSE, &s, 64);
		tv_http_parser_feed(p, resp, cut, cut, 1);
		tv_http_parser_feed(p, resp + cut, n - cut, n - cut, 2);
		assert_int_equal(s.n, 1);
		assert_int_equal(s.msgs[0].body_bytes, 19);
		assert_string_equal(last_body(p), "hello chunked world");
		assert_string_equal(p->msg.content_type, "text/plain; charset=utf-8");
		drop_parser(p);
	}
	/* a bound inside a chunk */
	p = body_parser(TV_HTTP_RESPONSE, &s, 8);
	feed_str(p, resp, 1);
	assert_string_equal(last_body(p), "hello ch");
	drop_parser(p);
	/* the copy of the second read stops inside the third chunk: the prefix stops there
	 * too, even though later bytes were copied (they are not contiguous with it) */
	p = body_parser(TV_HTTP_RESPONSE, &s, 64);
	{
		const char *third = strstr(resp, "chunked wo");

		tv_http_parser_feed(p, resp, (size_t)(third + 3 - resp), (size_t)(third + 10 - resp),
				    1);
		tv_http_parser_feed(p, third + 10, strlen(third + 10), strlen(third + 10), 2);
	}
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].body_bytes, 19);
	assert_string_equal(last_body(p), "hello chu");
	drop_parser(p);
}

/* A request body, the next message's body is its own, and a close-delimited response body. */
static void test_body_prefix_per_message(void **state)
{
	struct seen s;
	struct tv_http_parser *p = body_parser(TV_HTTP_REQUEST, &s, 4);

	(void)state;
	feed_str(p, "POST /a HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nab"
		    "GET /b HTTP/1.1\r\n\r\n", 1);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.msgs[0].body_len, 2);
	assert_int_equal(s.msgs[1].body_len, 0); /* a bodiless request keeps nothing */
	assert_null(p->msg.content_type);
	drop_parser(p);
	p = body_parser(TV_HTTP_RESPONSE, &s, 4);
	feed_str(p, "HTTP/1.0 200 OK\r\n\r\nxy", 1);
	feed_str(p, "zzzz", 2);
	assert_int_equal(tv_http_parser_close(p, 3), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].body_bytes, 6);
	assert_string_equal(last_body(p), "xyzz");
	drop_parser(p);
}

/* ---- the same stream split anywhere gives the same messages ---- */

/* What one run reports, flattened for comparison. */
struct run_out {
	char text[4096];
	size_t len;
};

static void run_out_add(struct run_out *o, const struct seen *s, const struct tv_http_parser *p)
{
	for (int i = 0; i < s->n; i++)
		o->len += (size_t)snprintf(o->text + o->len, sizeof(o->text) - o->len,
					   "%s %s %u %llu %zu %d %d|", s->msgs[i].method,
					   s->msgs[i].path, s->msgs[i].status,
					   (unsigned long long)s->msgs[i].body_bytes, s->msgs[i].body_len,
					   s->msgs[i].incomplete, s->msgs[i].cut);
	o->len += (size_t)snprintf(o->text + o->len, sizeof(o->text) - o->len,
				   "e%llu u%llu t%llu s%d", (unsigned long long)p->errors,
				   (unsigned long long)p->heads_unparsed,
				   (unsigned long long)p->tunnel_bytes, p->switched);
}

/* Valid streams (no lost sync, whose resync point depends on where reads begin) made of
 * random messages, fed whole, byte by byte and in random pieces: the same messages, counts and
 * body prefix lengths. */
static void test_random_splits_agree(void **state)
{
	static const char *const reqs[] = {
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /b?q=1 HTTP/1.1\r\nContent-Length: 5\r\nContent-Type: t\r\n\r\nhello",
		"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n"
		"0123456789abcdef\r\n0\r\n\r\n",
		"DELETE /d HTTP/1.0\n\n",
		"\r\nGET /after-crlf HTTP/1.1\r\nX-Long: 0123456789012345678901234567890123456789"
		"0123456789012345678901234567890123456789\r\n\r\n",
	};
	static const char *const resps[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n1;x=y\r\nz\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
	};
	uint32_t rnd = 12345;

	(void)state;
	for (int iter = 0; iter < 300; iter++) {
		enum tv_http_kind kind = iter % 2 ? TV_HTTP_RESPONSE : TV_HTTP_REQUEST;
		const char *const *pool = kind == TV_HTTP_REQUEST ? reqs : resps;
		size_t npool = kind == TV_HTTP_REQUEST ? 5 : 4, n = 0;
		char in[2048];
		struct run_out out[3];

		memset(out, 0, sizeof(out));
		for (int m = 0; m < 6; m++) {
			const char *msg = pool[((rnd = rnd * 1103515245 + 12345) >> 16) % npool];

			memcpy(in + n, msg, strlen(msg));
			n += strlen(msg);
		}
		if (kind == TV_HTTP_RESPONSE && iter % 4 == 1) { /* a switch, then tunnel bytes */
			static const char sw[] = "HTTP/1.1 101 Switching\r\n\r\nGET / HTTP/1.1\r\n\r\n";

			memcpy(in + n, sw, strlen(sw));
			n += strlen(sw);
		}
		for (int way = 0; way < 3; way++) {
			struct seen s;
			struct tv_http_parser *p = body_parser(kind, &s, 8);
			size_t i = 0;

			while (i < n) {
				size_t k = n - i;

				if (way == 1)
					k = 1;
				else if (way == 2)
					k = 1 + ((rnd = rnd * 1103515245 + 12345) >> 16) % 23;

				if (k > n - i)
					k = n - i;
				tv_http_parser_feed(p, in + i, k, k, i);
				i += k;
			}
			run_out_add(&out[way], &s, p);
			drop_parser(p);
		}
		assert_string_equal(out[0].text, out[1].text);
		assert_string_equal(out[0].text, out[2].text);
		free_kept(NULL); /* the paths on_done kept */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_split_byte_by_byte),
		cmocka_unit_test(test_several_requests_in_one_read),
		cmocka_unit_test(test_response_content_length_counts_uncopied_bytes),
		cmocka_unit_test(test_truncated_copy_inside_body),
		cmocka_unit_test(test_chunked_response),
		cmocka_unit_test(test_bodiless_responses),
		cmocka_unit_test(test_body_until_close),
		cmocka_unit_test(test_close_mid_body_reports_incomplete),
		cmocka_unit_test(test_malformed_input_resyncs),
		cmocka_unit_test(test_invalid_traceparent_ignored),
		cmocka_unit_test(test_chunked_split_anywhere_both_directions),
		cmocka_unit_test(test_uncopied_last_chunk_ends_the_body),
		cmocka_unit_test(test_pipelined_responses_in_one_read),
		cmocka_unit_test(test_interim_1xx_responses_do_not_complete),
		cmocka_unit_test(test_expect_continue_request_body_follows_later),
		cmocka_unit_test(test_http10_request_and_close_delimited_response),
		cmocka_unit_test(test_truncated_head_loses_sync_and_marks_incomplete),
		cmocka_unit_test(test_cut_or_oversized_head_still_reports_start_line),
		cmocka_unit_test(test_head_limit_follows_payload_bytes),
		cmocka_unit_test(test_head_at_and_over_the_limit),
		cmocka_unit_test(test_big_response_head_counts_its_body),
		cmocka_unit_test(test_long_path_kept_whole_up_to_the_head),
		cmocka_unit_test(test_unparseable_start_lines_are_counted),
		cmocka_unit_test(test_credential_headers_redacted_by_default),
		cmocka_unit_test(test_credential_headers_kept_with_no_redact),
		cmocka_unit_test(test_headers_not_kept_by_default),
		cmocka_unit_test(test_credential_header_names),
		cmocka_unit_test(test_cut_head_keeps_complete_header_lines),
		cmocka_unit_test(test_status_below_100_is_malformed),
		cmocka_unit_test(test_traceparent_with_zero_parent_id_ignored),
		cmocka_unit_test(test_host_and_http_version),
		cmocka_unit_test(test_query_rules_apply_to_path),
		cmocka_unit_test(test_cut_inside_url_authority_hides_it),
		cmocka_unit_test(test_101_ends_http_in_the_same_read),
		cmocka_unit_test(test_cut_101_head_still_switches),
		cmocka_unit_test(test_upgraded_response_ends_at_its_head),
		cmocka_unit_test(test_h2_preface_switches_only_at_the_start),
		cmocka_unit_test(test_switch_finishes_the_body_in_flight),
		cmocka_unit_test(test_body_prefix_of_content_length_body),
		cmocka_unit_test(test_body_prefix_dechunked_across_splits),
		cmocka_unit_test(test_body_prefix_per_message),
		cmocka_unit_test(test_random_splits_agree),
	};

	return cmocka_run_group_tests(tests, NULL, free_kept);
}
