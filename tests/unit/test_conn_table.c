/* Unit tests for client/capture/conn_table.c: kernel events (as the ring delivers them) are paired
 * into request/response exchanges per connection, in order, for both roles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <sys/socket.h>

#include "bpf/tv_event.h"
#include "capture/conn_table.h"

#define MAX_X 16

struct got {
	int n;
	struct tv_exchange x[MAX_X];
};

/* Paths copied out of the exchanges (valid only during the callback), freed after the last
 * test. */
static char *kept[1024];
static size_t n_kept;

static int free_kept(void **state)
{
	(void)state;
	while (n_kept > 0)
		free(kept[--n_kept]);
	return 0;
}

/* A NUL-terminated copy of n bytes at b (kept until the last test), or NULL for NULL. */
static char *keep_bytes(const void *b, size_t n)
{
	char *d;

	if (!b)
		return NULL;
	d = malloc(n + 1);
	assert_non_null(d);
	memcpy(d, b, n);
	d[n] = 0;
	assert_true(n_kept < sizeof(kept) / sizeof(kept[0]));
	kept[n_kept++] = d;
	return d;
}

static void on_exchange(void *ctx, const struct tv_exchange *x)
{
	struct got *g = ctx;
	char *path = strdup(x->path);

	assert_true(g->n < MAX_X);
	assert_non_null(path);
	assert_true(n_kept < sizeof(kept) / sizeof(kept[0]));
	kept[n_kept++] = path;
	g->x[g->n] = *x;
	g->x[g->n].path = path;
	/* --body-bytes: bodies as strings (the tests' bodies hold no NUL), content headers */
	g->x[g->n].req_body = (const uint8_t *)keep_bytes(x->req_body, x->req_body_len);
	g->x[g->n].resp_body = (const uint8_t *)keep_bytes(x->resp_body, x->resp_body_len);
	g->x[g->n].req_content_type = keep_bytes(x->req_content_type,
						 x->req_content_type ? strlen(x->req_content_type) : 0);
	g->x[g->n].resp_content_type = keep_bytes(x->resp_content_type,
						  x->resp_content_type ? strlen(x->resp_content_type) : 0);
	g->x[g->n].resp_content_encoding = keep_bytes(
		x->resp_content_encoding,
		x->resp_content_encoding ? strlen(x->resp_content_encoding) : 0);
	g->n++;
}

static struct tv_event *ev(uint8_t kind, uint8_t role, int fd, uint64_t gen, uint64_t ts_ns)
{
	static struct tv_event e; /* test helper: one event at a time */

	memset(&e, 0, sizeof(e));
	e.kind = kind;
	e.role = role;
	e.fd = fd;
	e.pid = 77;
	e.conn_id = (uint64_t)77 << 32 | (uint32_t)fd;
	e.conn_gen = gen;
	e.ts_ns = ts_ns;
	memcpy(e.comm, "nginx", 6);
	e.local.family = e.remote.family = AF_INET;
	inet_pton(AF_INET, "127.0.0.1", e.local.addr);
	inet_pton(AF_INET, "127.0.0.2", e.remote.addr);
	e.local.port = 8080;
	e.remote.port = 40000;
	return &e;
}

static void send_ev(struct tv_conn_table *t, struct tv_event *e)
{
	tv_conn_table_event(t, e, TV_EVENT_HEADER_BYTES + e->payload_len);
}

static void data(struct tv_conn_table *t, uint8_t kind, uint8_t role, int fd, uint64_t gen,
		 uint64_t ts_ns, const char *s, uint64_t extra_bytes)
{
	struct tv_event *e = ev(kind, role, fd, gen, ts_ns);

	e->payload_len = (uint32_t)strlen(s);
	memcpy(e->payload, s, e->payload_len);
	e->bytes = e->payload_len + extra_bytes;
	send_ev(t, e);
}

static void test_server_pipelined_requests_pair_in_order(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20,
	     "GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", 0);
	assert_int_equal(g.n, 0);
	/* sendfile: counted only */
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 40, "", 100000);
	assert_int_equal(g.n, 1);
	/* the HEAD response announces a length but has no body */
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 50,
	     "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
	     "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!", 0);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.x[0].path, "/a");
	assert_int_equal(g.x[0].resp_body_bytes, 100000);
	assert_int_equal(g.x[0].ts_ns, 20);
	assert_int_equal(g.x[0].end_ns, 40);
	assert_string_equal(g.x[1].method, "HEAD");
	assert_int_equal(g.x[1].status, 200);
	assert_int_equal(g.x[1].resp_body_bytes, 0);
	assert_string_equal(g.x[2].path, "/c");
	assert_int_equal(g.x[2].status, 404);
	assert_string_equal(g.x[2].local, "127.0.0.1:8080");
	assert_string_equal(g.x[2].remote, "127.0.0.2:40000");
	assert_string_equal(g.x[2].comm, "nginx");
	assert_int_equal(g.x[2].pid, 77);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 60));
	assert_int_equal(g.n, 3);
	assert_int_equal(tv_conn_table_stats(t)->conns_closed, 1);
	tv_conn_table_free(t);
}

static void test_client_role_reverses_directions(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_CONNECT, TV_ROLE_CLIENT, 3, 1, 1));
	data(t, TV_EV_DATA_OUT, TV_ROLE_CLIENT, 3, 1, 2,
	     "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_CLIENT, 3, 1, 3,
	     "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].method, "POST");
	assert_int_equal(g.x[0].req_body_bytes, 5);
	assert_int_equal(g.x[0].status, 201);
	tv_conn_table_free(t);
}

static void test_close_without_response_gives_status_zero(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, "GET /slow HTTP/1.1\r\n\r\n", 0);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 90));
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].status, 0);
	assert_int_equal(g.x[0].end_ns, 90);
	assert_int_equal(g.x[0].flags, TV_RECORD_FLAG_NO_RESPONSE);
	/* the same at the end of capture */
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 6, 1, 100));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 6, 1, 110, "GET /pending HTTP/1.1\r\n\r\n", 0);
	tv_conn_table_flush(t, 200);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[1].path, "/pending");
	assert_int_equal(g.x[1].status, 0);
	assert_int_equal(g.x[1].flags, TV_RECORD_FLAG_NO_RESPONSE);
	tv_conn_table_free(t);
}

/* Expect: 100-continue end to end: the interim 100 does not complete the exchange, the final
 * response does, with the request body sent after the 100 counted. */
static void test_expect_continue_exchange_completes_on_final_response(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20,
	     "PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30, "HTTP/1.1 100 Continue\r\n\r\n", 0);
	assert_int_equal(g.n, 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40, "payload", 0);
	assert_int_equal(g.n, 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 50,
	     "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].method, "PUT");
	assert_int_equal(g.x[0].status, 201);
	assert_int_equal(g.x[0].req_body_bytes, 7);
	assert_int_equal(g.x[0].resp_body_bytes, 2);
	assert_int_equal(g.x[0].end_ns, 50);
	assert_int_equal(g.x[0].flags, 0);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 60));
	assert_int_equal(g.n, 1);
	tv_conn_table_free(t);
}

/* A response cut by the close keeps its status and is flagged PARTIAL (counts are lower
 * bounds); the clean exchange before it on the same connection is not flagged. */
static void test_cut_response_flagged_partial(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, "GET /ok HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40, "GET /cut HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 50,
	     "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 300);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 60));
	assert_int_equal(g.n, 2);
	assert_int_equal(g.x[0].flags, 0);
	assert_string_equal(g.x[1].path, "/cut");
	assert_int_equal(g.x[1].status, 200);
	assert_int_equal(g.x[1].resp_body_bytes, 300);
	assert_int_equal(g.x[1].flags, TV_RECORD_FLAG_PARTIAL);
	assert_int_equal(g.x[1].end_ns, 60);
	tv_conn_table_free(t);
}

/* HTTP/1.0 close-delimited response sent by sendfile (1 MiB, nothing copied): counted exactly,
 * completed by the close, not flagged; the exchange carries its connection's identity. */
static void test_close_delimited_sendfile_body(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	int i;

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 9, 4, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 9, 4, 20, "GET /file HTTP/1.0\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 9, 4, 30, "HTTP/1.0 200 OK\r\n\r\n", 0);
	for (i = 0; i < 16; i++)
		data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 9, 4, 40 + (uint64_t)i, "", 65536);
	assert_int_equal(g.n, 0);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 9, 4, 100));
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].status, 200);
	assert_int_equal(g.x[0].resp_body_bytes, 1 << 20);
	assert_int_equal(g.x[0].flags, 0);
	assert_int_equal(g.x[0].end_ns, 100);
	assert_true(g.x[0].conn_id == ((uint64_t)77 << 32 | 9));
	assert_int_equal(g.x[0].conn_gen, 4);
	tv_conn_table_free(t);
}

/* A request whose head was cut by the copy limit stays paired with its own response, so the
 * next exchange on the connection is not shifted onto the wrong response. */
static void test_cut_request_head_keeps_pairing(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	struct tv_event *e;
	size_t n;

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	e = ev(TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20);
	/* the default --payload-bytes (4 KiB) copied of a 7 KiB head */
	n = (size_t)snprintf((char *)e->payload, 4096, "GET /big HTTP/1.1\r\nCookie: ");
	memset(e->payload + n, 'c', 4096 - n);
	e->payload_len = 4096;
	e->bytes = 4096 + 3000; /* the rest of the cookie, then CRLFCRLF */
	send_ev(t, e);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 403 Forbidden\r\nContent-Length: 1\r\n\r\nx", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40, "GET /small HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 50,
	     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[0].path, "/big");
	assert_int_equal(g.x[0].status, 403);
	/* cut by the copy: its counts are lower bounds and a header may be missing */
	assert_int_equal(g.x[0].flags, TV_RECORD_FLAG_PARTIAL | TV_RECORD_FLAG_CUT);
	assert_int_equal(tv_conn_table_stats(t)->heads_cut_copy, 0); /* summed at the close */
	tv_conn_table_flush(t, 60);
	assert_int_equal(tv_conn_table_stats(t)->heads_cut_copy, 1);
	assert_int_equal(tv_conn_table_stats(t)->heads_cut_limit, 0);
	assert_string_equal(g.x[1].path, "/small");
	assert_int_equal(g.x[1].status, 200);
	assert_int_equal(g.x[1].flags, 0);
	tv_conn_table_free(t);
}

/* A 12 KiB request head (traceparent last) in one event: with the head limit of
 * --payload-bytes 32K it parses whole; at the default limit (8K) it is flagged PARTIAL | CUT
 * and counted as cut by the limit. The next exchange pairs either way. */
static void big_head_exchange(size_t head_limit, struct got *g, struct tv_conn_stats *st)
{
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, g);
	struct tv_event *e;
	size_t n;

	assert_non_null(t);
	if (head_limit)
		tv_conn_table_set_head_limit(t, head_limit);
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	e = ev(TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20);
	n = (size_t)snprintf((char *)e->payload, 64, "GET /big HTTP/1.1\r\n");
	for (int i = 0; i < 12; i++) {
		n += (size_t)snprintf((char *)e->payload + n, 64, "X-Big-%02d: ", i);
		memset(e->payload + n, 'c', 1000);
		n += 1000;
		memcpy(e->payload + n, "\r\n", 2);
		n += 2;
	}
	n += (size_t)snprintf((char *)e->payload + n, 128, "traceparent: 00-"
			      "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n");
	e->payload_len = (uint32_t)n;
	e->bytes = n;
	send_ev(t, e);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40, "GET /small HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 50,
	     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
	tv_conn_table_flush(t, 60);
	*st = *tv_conn_table_stats(t);
	tv_conn_table_free(t);
}

static void test_head_limit_set_from_payload_bytes(void **state)
{
	struct got g = { 0 };
	struct tv_conn_stats st;

	(void)state;
	big_head_exchange(tv_http_head_limit(32768), &g, &st);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[0].path, "/big");
	assert_string_equal(g.x[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_int_equal(g.x[0].flags, 0);
	assert_int_equal(g.x[0].resp_body_bytes, 1);
	assert_int_equal(st.heads_cut_limit + st.heads_cut_copy + st.requests_unparsed, 0);

	memset(&g, 0, sizeof(g));
	big_head_exchange(0, &g, &st); /* the default: 8K */
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[0].path, "/big");
	assert_string_equal(g.x[0].trace_id, "");
	assert_int_equal(g.x[0].flags, TV_RECORD_FLAG_PARTIAL | TV_RECORD_FLAG_CUT);
	assert_int_equal(g.x[0].status, 200);
	assert_string_equal(g.x[1].path, "/small");
	assert_int_equal(g.x[1].flags, 0);
	assert_int_equal(st.heads_cut_limit, 1);
	assert_int_equal(st.heads_cut_copy, 0);
}

/* A 2000-byte path is stored whole (it was 511 bytes, unflagged, before the path followed the
 * head); a request line longer than the head limit keeps its first bytes, flagged CUT. */
static void test_long_path_stored_whole(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	char line[TV_HTTP_DEFAULT_HEAD_BYTES + 64];
	size_t n;

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	n = (size_t)snprintf(line, sizeof(line), "GET /reports/");
	memset(line + n, 'a', 1991);
	n += 1991;
	n += (size_t)snprintf(line + n, sizeof(line) - n, " HTTP/1.1\r\nHost: t\r\n\r\n");
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, line, 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(strlen(g.x[0].path), 2000);
	assert_memory_equal(g.x[0].path, "/reports/aaa", 12);
	assert_int_equal(g.x[0].flags, 0);
	/* a target longer than the head limit: the request line itself is cut */
	memset(line, 'b', sizeof(line) - 1);
	memcpy(line, "GET /", 5);
	line[sizeof(line) - 1] = 0;
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40, line, 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 50,
	     "HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[1].method, "GET");
	assert_int_equal(strlen(g.x[1].path), TV_HTTP_DEFAULT_HEAD_BYTES - 4);
	assert_int_equal(g.x[1].status, 414);
	assert_int_equal(g.x[1].flags, TV_RECORD_FLAG_PARTIAL | TV_RECORD_FLAG_CUT);
	tv_conn_table_flush(t, 60);
	assert_int_equal(tv_conn_table_stats(t)->heads_cut_limit, 1);
	tv_conn_table_free(t);
}

/* A request the parser cannot read (a 16-byte method) is no record but a count; its response
 * then pairs with nothing (counted unpaired), and the next exchange still pairs. */
static void test_unparseable_request_counted(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, "ABCDEFGHIJKLMNOP /x HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40, "GET /ok HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 50,
	     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].path, "/ok");
	assert_int_equal(g.x[0].status, 200);
	tv_conn_table_flush(t, 60);
	assert_int_equal(tv_conn_table_stats(t)->requests_unparsed, 1);
	assert_int_equal(tv_conn_table_stats(t)->responses_unpaired, 1);
	tv_conn_table_free(t);
}

static void test_reused_fd_does_not_merge_connections(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, "GET /old HTTP/1.1\r\n\r\n", 0);
	/* the close of generation 1 was lost: generation 2 of fd 5 must start clean */
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 2, 30));
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].path, "/old");
	assert_int_equal(g.x[0].status, 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 2, 40, "GET /new HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 2, 50,
	     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[1].path, "/new");
	assert_int_equal(g.x[1].status, 200);
	tv_conn_table_free(t);
}

static void test_short_records_are_counted_not_parsed(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	struct tv_event *e = ev(TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 1);

	(void)state;
	e->payload_len = 100; /* claims more payload than the record holds */
	tv_conn_table_event(t, e, TV_EVENT_HEADER_BYTES + 10);
	tv_conn_table_event(t, e, 8);
	assert_int_equal(tv_conn_table_stats(t)->bad_events, 2);
	assert_int_equal(tv_conn_table_stats(t)->conns_opened, 0);
	tv_conn_table_free(t);
}

static void test_ipv6_address_format(void **state)
{
	char buf[TV_ADDR_STR_BYTES];
	uint8_t a[16] = { 0 };

	(void)state;
	a[15] = 1;
	tv_format_addr(buf, sizeof(buf), AF_INET6, a, 8080);
	assert_string_equal(buf, "[::1]:8080");
}

/* --headers: the exchange carries both heads' header lines (credentials redacted); requests
 * dropped (pipelining overflow) or still pending at close release theirs (ASan checks). */
static struct {
	int n;
	char req[256], resp[256];
	size_t req_len, resp_len;
} hx;

static void on_exchange_hdrs(void *ctx, const struct tv_exchange *x)
{
	(void)ctx;
	if (hx.n++ == 0) {
		assert_true(x->req_hdrs_len <= sizeof(hx.req) && x->resp_hdrs_len <= sizeof(hx.resp));
		memcpy(hx.req, x->req_hdrs, x->req_hdrs_len);
		memcpy(hx.resp, x->resp_hdrs, x->resp_hdrs_len);
		hx.req_len = x->req_hdrs_len;
		hx.resp_len = x->resp_hdrs_len;
	}
}

static void test_exchange_carries_headers_and_frees_them(void **state)
{
	static const char want_req[] = "Host\0h\0Cookie\0[redacted]\0";
	static const char want_resp[] = "Content-Length\0" "0\0Set-Cookie\0[redacted]\0";
	struct tv_conn_table *t = tv_conn_table_new(on_exchange_hdrs, NULL);
	char many[64 * 40];
	size_t off = 0;

	(void)state;
	memset(&hx, 0, sizeof(hx));
	tv_conn_table_set_headers(t, 1, 0);
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20,
	     "GET /a HTTP/1.1\r\nHost: h\r\nCookie: s=1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nSet-Cookie: s=2\r\n\r\n", 0);
	assert_int_equal(hx.n, 1);
	assert_int_equal(hx.req_len, sizeof(want_req) - 1);
	assert_memory_equal(hx.req, want_req, sizeof(want_req) - 1);
	assert_int_equal(hx.resp_len, sizeof(want_resp) - 1);
	assert_memory_equal(hx.resp, want_resp, sizeof(want_resp) - 1);
	/* more pipelined requests than TV_CONN_MAX_PENDING, then a close with them unanswered */
	for (int i = 0; i < TV_CONN_MAX_PENDING + 8; i++)
		off += (size_t)snprintf(many + off, sizeof(many) - off,
					"GET /p%d HTTP/1.1\r\nX-N: %d\r\n\r\n", i, i);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40, many, 0);
	assert_int_equal(tv_conn_table_stats(t)->exchanges_dropped, 8);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 50));
	assert_int_equal(hx.n, 1 + TV_CONN_MAX_PENDING);
	/* and a connection freed with requests pending (no flush) */
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 6, 1, 60));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 6, 1, 70, "GET /z HTTP/1.1\r\nA: b\r\n\r\n", 0);
	tv_conn_table_free(t);
}

/* An event with TV_EV_FLAG_GAP: what the kernel lost on this connection before it. */
static void gap_data(struct tv_conn_table *t, uint8_t kind, int fd, uint64_t ts_ns,
		     const char *s, uint64_t extra_bytes, uint32_t in_heads, uint64_t in_bytes,
		     uint32_t out_heads, uint64_t out_bytes)
{
	struct tv_event *e = ev(kind, TV_ROLE_SERVER, fd, 1, ts_ns);

	e->payload_len = (uint32_t)strlen(s);
	memcpy(e->payload, s, e->payload_len);
	e->bytes = e->payload_len + extra_bytes;
	e->flags = TV_EV_FLAG_GAP;
	e->lost_in_events = in_bytes ? 1 : 0;
	e->lost_in_heads = in_heads;
	e->lost_in_bytes = in_bytes;
	e->lost_out_events = out_bytes ? 1 : 0;
	e->lost_out_heads = out_heads;
	e->lost_out_bytes = out_bytes;
	send_ev(t, e);
}

static const char RESP_OK[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

static void test_gap_lost_response_flags_its_request_only(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 10, "GET /a HTTP/1.1\r\n\r\n", 0);
	/* the response to /a was lost; the next event (request /b) says so */
	gap_data(t, TV_EV_DATA_IN, 5, 30, "GET /b HTTP/1.1\r\n\r\n", 0, 0, 0, 1,
		 sizeof(RESP_OK) - 1);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].path, "/a");
	assert_int_equal(g.x[0].status, 0);
	assert_int_equal(g.x[0].flags, TV_RECORD_FLAG_LOST);
	assert_int_equal(g.x[0].end_ns, 30);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 40, RESP_OK, 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[1].path, "/b"); /* not shifted onto /a */
	assert_int_equal(g.x[1].status, 200);
	assert_int_equal(g.x[1].flags, 0);
	assert_int_equal(tv_conn_table_stats(t)->responses_lost, 1);
	tv_conn_table_free(t);
}

static void test_gap_lost_request_absorbs_its_response(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	/* request /a lost; its response arrives and says so: it must not be paired with /b */
	gap_data(t, TV_EV_DATA_OUT, 5, 20, RESP_OK, 0, 1, 18, 0, 0);
	assert_int_equal(g.n, 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 30, "GET /b HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 40,
	     "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].path, "/b");
	assert_int_equal(g.x[0].status, 404);
	assert_int_equal(tv_conn_table_stats(t)->requests_unseen, 1);
	/* the response of the lost request found its place: not an unpaired response */
	assert_int_equal(tv_conn_table_stats(t)->responses_unpaired, 0);
	assert_int_equal(tv_conn_table_stats(t)->gaps, 1);
	tv_conn_table_free(t);
}

static void test_gap_lost_request_and_response_leave_no_trace(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 10, "GET /a HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 20, RESP_OK, 0);
	/* /b and its response both lost, then /c */
	gap_data(t, TV_EV_DATA_IN, 5, 50, "GET /c HTTP/1.1\r\n\r\n", 0, 1, 18, 1,
		 sizeof(RESP_OK) - 1);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 60, RESP_OK, 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[0].path, "/a");
	assert_string_equal(g.x[1].path, "/c");
	assert_int_equal(g.x[1].status, 200);
	assert_int_equal(g.x[1].flags, 0);
	tv_conn_table_free(t);
}

static void test_gap_inside_body_keeps_exact_count(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 10, "GET /big HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 20,
	     "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", 0);
	/* the first sendfile (60000 bytes) was lost, the second arrives */
	gap_data(t, TV_EV_DATA_OUT, 5, 40, "", 40000, 0, 0, 0, 60000);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].resp_body_bytes, 100000);
	assert_int_equal(g.x[0].flags, 0);
	/* the connection stays in sync */
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 50, "GET /n HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 60, RESP_OK, 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[1].path, "/n");
	assert_int_equal(g.x[1].flags, 0);
	tv_conn_table_free(t);
}

static void test_gap_in_pipelined_responses(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 10,
	     "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 20, RESP_OK, 0);
	/* the response to /b was lost: reported with the response to /c */
	gap_data(t, TV_EV_DATA_OUT, 5, 40, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
		 0, 0, 0, 1, sizeof(RESP_OK) - 1);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.x[0].status, 200);
	assert_string_equal(g.x[1].path, "/b");
	assert_int_equal(g.x[1].flags, TV_RECORD_FLAG_LOST);
	assert_string_equal(g.x[2].path, "/c");
	assert_int_equal(g.x[2].status, 201);
	tv_conn_table_free(t);
}

static void test_gap_longer_than_the_pipeline_limit(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 10, "GET /a HTTP/1.1\r\n\r\n", 0);
	/* 81 requests and 82 responses lost (more than TV_CONN_MAX_PENDING): the responses
	 * answer /a and the 81 lost requests, nothing is dropped, /z pairs with its own */
	gap_data(t, TV_EV_DATA_IN, 5, 30, "GET /z HTTP/1.1\r\n\r\n", 0, 81, 81 * 18, 82,
		 82 * (sizeof(RESP_OK) - 1));
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 40,
	     "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[0].path, "/a");
	assert_int_equal(g.x[0].flags, TV_RECORD_FLAG_LOST);
	assert_string_equal(g.x[1].path, "/z");
	assert_int_equal(g.x[1].status, 404);
	assert_int_equal(tv_conn_table_stats(t)->exchanges_dropped, 0);
	tv_conn_table_free(t);
}

static void test_gap_reported_by_close(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	struct tv_event *e;

	(void)state;
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 10, "GET /a HTTP/1.1\r\n\r\n", 0);
	e = ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 30);
	e->flags = TV_EV_FLAG_GAP;
	e->lost_out_events = e->lost_out_heads = 1;
	e->lost_out_bytes = 100;
	send_ev(t, e);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].flags, TV_RECORD_FLAG_LOST); /* lost, not "no response" */
	tv_conn_table_free(t);
}

/* A connection open before the capture (seeded, or its accept lost) is first seen mid-
 * response: the tail of a body written with write(), no blank line in it. Nothing may be
 * recorded for the exchange under way, and the next exchange must be recorded whole. */
static void test_connection_first_seen_mid_response(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 10, "the end of a page</html>", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, "GET /next HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].path, "/next");
	assert_int_equal(g.x[0].status, 200);
	assert_int_equal(g.x[0].resp_body_bytes, 2);
	assert_int_equal(g.x[0].flags, 0);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 40));
	assert_int_equal(g.n, 1);
	tv_conn_table_free(t);
}

/* The same for the request side: first seen in the middle of an upload's body. */
static void test_connection_first_seen_mid_request_body(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 10, "name=value&more=1", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 20,
	     "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(g.n, 0); /* its request was not seen */
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 30, "GET /next HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 40,
	     "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!", 0);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 50));
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].path, "/next");
	assert_int_equal(g.x[0].status, 404);
	assert_int_equal(g.x[0].resp_body_bytes, 3);
	tv_conn_table_free(t);
}

/* ---- found by the issue 9 mutants ---- */

/* An event whose payload copy is exactly TV_CAPTURE_PAYLOAD_BYTES (the most the kernel copies)
 * is a good event, not a bad one. */
static void test_full_payload_event_is_parsed(void **state)
{
	static const char head[] = "POST /full HTTP/1.1\r\nContent-Length: 40000\r\n\r\n";
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	struct tv_event *e = ev(TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 10);

	(void)state;
	e->payload_len = TV_CAPTURE_PAYLOAD_BYTES;
	memset(e->payload, 'x', TV_CAPTURE_PAYLOAD_BYTES);
	memcpy(e->payload, head, sizeof(head) - 1);
	e->bytes = sizeof(head) - 1 + 40000; /* the rest of the body was not copied */
	send_ev(t, e);
	assert_int_equal(tv_conn_table_stats(t)->bad_events, 0);
	assert_int_equal(tv_conn_table_stats(t)->conns_opened, 1);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 20, RESP_OK, 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].path, "/full");
	assert_int_equal(g.x[0].req_body_bytes, 40000);
	assert_int_equal(g.x[0].status, 200);
	/* one byte more than the kernel can copy is a bad event */
	e = ev(TV_EV_DATA_IN, TV_ROLE_SERVER, 6, 1, 30);
	e->payload_len = TV_CAPTURE_PAYLOAD_BYTES + 1;
	tv_conn_table_event(t, e, sizeof(*e));
	assert_int_equal(tv_conn_table_stats(t)->bad_events, 1);
	tv_conn_table_free(t);
}

/* A gap with more lost requests than the FIFO holds fills it with unseen places; a request
 * seen next pushes the oldest of them out. That place was a request the kernel already counted
 * lost (requests_unseen), so it is not an exchange dropped as well. */
static void test_unseen_place_pushed_out_is_not_counted_dropped(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	gap_data(t, TV_EV_DATA_IN, 5, 10, "GET /seen HTTP/1.1\r\n\r\n", 0, 40, 40 * 18, 0, 0);
	assert_int_equal(tv_conn_table_stats(t)->requests_unseen, 40);
	assert_int_equal(tv_conn_table_stats(t)->exchanges_dropped, 0);
	assert_int_equal(g.n, 0);
	tv_conn_table_free(t);
}

/* ---- connections that leave HTTP/1.x ---- */

/* field-03's kind, server side: the exchange that switched is one record (status 101, no
 * response body, ended by the 101's head); bytes through the tunnel in either direction,
 * however much they look like HTTP, give no record, no error, and are counted. */
static void test_101_tunnel_gives_one_record(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	const struct tv_conn_stats *st = tv_conn_table_stats(t);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20,
	     "POST /session/attach HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
	     "Content-Length: 0\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", 0);
	assert_int_equal(g.n, 1);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40,
	     "GET /typed-in-the-tunnel HTTP/1.1\r\nHost: inner\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 50,
	     "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ninside", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 60, "\x81\x85garbage", 1000);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 90));
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].method, "POST");
	assert_string_equal(g.x[0].path, "/session/attach");
	assert_int_equal(g.x[0].status, 101);
	assert_int_equal(g.x[0].flags, 0);
	assert_int_equal(g.x[0].resp_body_bytes, 0);
	assert_int_equal(g.x[0].ts_ns, 20);
	assert_int_equal(g.x[0].end_ns, 30);
	assert_int_equal(st->parse_errors, 0);
	assert_int_equal(st->requests_unparsed + st->responses_unparsed, 0);
	assert_int_equal(st->tunnels, 1);
	assert_int_equal(st->tunnel_bytes, 50 + 44 + 9 + 1000);
	tv_conn_table_free(t);
}

/* The same from the client's end (directions reversed), with the server's first tunnel
 * bytes in the 101's own write. */
static void test_101_tunnel_client_role(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_CONNECT, TV_ROLE_CLIENT, 5, 1, 10));
	data(t, TV_EV_DATA_OUT, TV_ROLE_CLIENT, 5, 1, 20,
	     "GET /chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_CLIENT, 5, 1, 30,
	     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
	     "HTTP/1.1 500 Oops\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_CLIENT, 5, 1, 40, "DELETE /all HTTP/1.1\r\n\r\n", 0);
	tv_conn_table_flush(t, 100);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].status, 101);
	assert_int_equal(g.x[0].end_ns, 30);
	assert_int_equal(tv_conn_table_stats(t)->tunnels, 1);
	assert_int_equal(tv_conn_table_stats(t)->tunnel_bytes, 21 + 24);
	assert_int_equal(tv_conn_table_stats(t)->parse_errors, 0);
	tv_conn_table_free(t);
}

/* A failed upgrade (any answer but 101) keeps the connection HTTP/1.x: later requests are
 * records as usual. */
static void test_refused_upgrade_keeps_parsing(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20,
	     "GET /chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	     "GET /next HTTP/1.1\r\n\r\n", 0); /* pipelined behind: still HTTP when refused */
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 3\r\n\r\nno!"
	     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40, "GET /third HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 50, "HTTP/1.1 204 No Content\r\n\r\n", 0);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 90));
	assert_int_equal(g.n, 3);
	assert_int_equal(g.x[0].status, 426);
	assert_int_equal(g.x[0].resp_body_bytes, 3);
	assert_string_equal(g.x[1].path, "/next");
	assert_int_equal(g.x[1].status, 200);
	assert_string_equal(g.x[2].path, "/third");
	assert_int_equal(tv_conn_table_stats(t)->tunnels, 0);
	tv_conn_table_free(t);
}

/* CONNECT answered 2xx is a tunnel from the end of that head (a Content-Length there is
 * ignored: RFC 9110 §9.3.6); answered 4xx it is an ordinary exchange. */
static void test_connect_tunnel_and_refused_connect(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20,
	     "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\nauth", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40,
	     "CONNECT db.internal:5432 HTTP/1.1\r\nProxy-Authorization: Basic eDp5\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 50,
	     "HTTP/1.1 200 Connection Established\r\nContent-Length: 100\r\n\r\n", 0);
	assert_int_equal(g.n, 2);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 60, "GET / HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 70, "HTTP/1.1 200 OK\r\n\r\n", 0);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 90));
	assert_int_equal(g.n, 2);
	assert_int_equal(g.x[0].status, 407);
	assert_int_equal(g.x[0].resp_body_bytes, 4);
	assert_string_equal(g.x[1].method, "CONNECT");
	assert_string_equal(g.x[1].path, "db.internal:5432");
	assert_int_equal(g.x[1].status, 200);
	assert_int_equal(g.x[1].resp_body_bytes, 0);
	assert_int_equal(g.x[1].end_ns, 50);
	assert_int_equal(tv_conn_table_stats(t)->tunnels, 1);
	assert_int_equal(tv_conn_table_stats(t)->tunnel_bytes, 18 + 19);
	assert_int_equal(tv_conn_table_stats(t)->parse_errors, 0);
	tv_conn_table_free(t);
}

/* Prior-knowledge h2c: the server's SETTINGS may come first, then the client's preface; the
 * connection is counted as a tunnel, nothing else. */
static void test_h2_prior_knowledge_is_a_tunnel(void **state)
{
	static const char settings[] = "\0\0\x06\x04\0\0\0\0\0\0\x03\0\0\0\x64";
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	const struct tv_conn_stats *st = tv_conn_table_stats(t);
	struct tv_event *e;

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	e = ev(TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 15);
	memcpy(e->payload, settings, sizeof(settings) - 1);
	e->payload_len = e->bytes = sizeof(settings) - 1;
	send_ev(t, e);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, preface, 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30, "HTTP/1.1 200 OK\r\n\r\n", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40, "GET /x HTTP/1.1\r\n\r\n", 0);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 90));
	assert_int_equal(g.n, 0);
	assert_int_equal(st->parse_errors, 0);
	assert_int_equal(st->requests_unparsed + st->responses_unparsed, 0);
	assert_int_equal(st->responses_unpaired, 0);
	assert_int_equal(st->tunnels, 1);
	assert_int_equal(st->tunnel_bytes, 6 + 19 + 19);
	tv_conn_table_free(t);
}

/* Requests the client sent behind the Upgrade request before the 101 came were the new
 * protocol's bytes (RFC 9110 §7.8: the server switches right after the upgrading request):
 * no record, and what the parser counted of them (an unreadable head here) is taken back. */
static void test_requests_pipelined_behind_the_upgrade_are_tunnel_bytes(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	const struct tv_conn_stats *st = tv_conn_table_stats(t);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20,
	     "GET /first HTTP/1.1\r\n\r\n"
	     "GET /chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
	     "GET /behind HTTP/1.1\r\n\r\nBAD LINE\r\n\r\nPUT /half HTTP/1.1\r\nContent-Le", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp\r\n\r\n", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40, "ngth: 5\r\n\r\n", 0);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 90));
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[0].path, "/first");
	assert_string_equal(g.x[1].path, "/chat");
	assert_int_equal(g.x[1].status, 101);
	assert_int_equal(g.x[1].flags, 0);
	assert_int_equal(st->parse_errors, 0);
	assert_int_equal(st->requests_unparsed, 0);
	assert_int_equal(st->exchanges, 2);
	assert_int_equal(st->tunnels, 1);
	tv_conn_table_free(t);
}

/* A 101 may answer before the upgrading request's body has all arrived: the body is still
 * HTTP/1.x (a client cannot switch in the middle of a message) and is counted; the record is
 * emitted once it ends, its latency still ending at the 101's head. */
static void test_101_before_the_request_body_ends(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20,
	     "POST /attach HTTP/1.1\r\nUpgrade: tcp\r\nContent-Length: 10\r\n\r\n0123", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp\r\n\r\n", 0);
	assert_int_equal(g.n, 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40, "456789GET /in HTTP/1.1\r\n\r\n", 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].req_body_bytes, 10);
	assert_int_equal(g.x[0].status, 101);
	assert_int_equal(g.x[0].end_ns, 30);
	assert_int_equal(g.x[0].flags, 0);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 90));
	assert_int_equal(g.n, 1);
	assert_int_equal(tv_conn_table_stats(t)->tunnel_bytes, 20);
	assert_int_equal(tv_conn_table_stats(t)->parse_errors, 0);
	tv_conn_table_free(t);
}

/* Lost data inside a tunnel is not HTTP/1.x: its head counts do not become unseen requests. */
static void test_gap_inside_a_tunnel(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	struct tv_event *e;

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20,
	     "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", 0);
	e = ev(TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 40);
	e->flags = TV_EV_FLAG_GAP;
	e->lost_in_bytes = 500;
	e->lost_in_heads = 2;
	e->lost_out_bytes = 300;
	e->lost_out_heads = 1;
	memcpy(e->payload, "xyz", 3);
	e->payload_len = e->bytes = 3;
	send_ev(t, e);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 90));
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].flags, 0);
	assert_int_equal(tv_conn_table_stats(t)->requests_unseen, 0);
	assert_int_equal(tv_conn_table_stats(t)->responses_lost, 0);
	assert_int_equal(tv_conn_table_stats(t)->tunnel_bytes, 803);
	tv_conn_table_free(t);
}

/* --body-bytes through the table: a 500's JSON error body with its content headers, and a
 * chunked request body de-chunked; without the option nothing is kept. */
static void test_exchange_carries_bodies(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	tv_conn_table_set_body_bytes(t, 64);
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20,
	     "POST /api HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: text/csv\r\n\r\n"
	     "4\r\na,b,\r\n", 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 21, "2\r\nc\n\r\n0\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
	     "Content-Encoding: identity\r\nContent-Length: 28\r\n\r\n"
	     "{\"error\":\"database is down\"}", 0);
	assert_int_equal(g.n, 1);
	assert_string_equal((const char *)g.x[0].req_body, "a,b,c\n");
	assert_int_equal(g.x[0].req_body_len, 6);
	assert_string_equal(g.x[0].req_content_type, "text/csv");
	assert_string_equal((const char *)g.x[0].resp_body, "{\"error\":\"database is down\"}");
	assert_int_equal(g.x[0].resp_body_len, 28);
	assert_string_equal(g.x[0].resp_content_type, "application/json");
	assert_string_equal(g.x[0].resp_content_encoding, "identity");
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 90));
	tv_conn_table_free(t);

	memset(&g, 0, sizeof(g));
	t = tv_conn_table_new(on_exchange, &g);
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, "GET / HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi", 0);
	assert_int_equal(g.n, 1);
	assert_null(g.x[0].resp_body);
	assert_null(g.x[0].resp_content_type);
	tv_conn_table_free(t);
}

/* Our FIN (TV_EV_FIN_OUT: exit, shutdown(SHUT_WR), the last close) ends a body delimited by
 * the close at once, while the socket stays open: the record does not wait for TCP_CLOSE. */
static void test_fin_out_ends_close_delimited_body(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, "GET /r HTTP/1.0\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30, "HTTP/1.0 200 OK\r\n\r\nabc", 297);
	assert_int_equal(g.n, 0);
	send_ev(t, ev(TV_EV_FIN_OUT, TV_ROLE_SERVER, 5, 1, 40));
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].status, 200);
	assert_int_equal(g.x[0].resp_body_bytes, 300);
	assert_int_equal(g.x[0].end_ns, 40);
	assert_int_equal(g.x[0].flags, 0);
	send_ev(t, ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 5000));
	assert_int_equal(g.n, 1);
	assert_int_equal(tv_conn_table_stats(t)->conns_closed, 1);
	tv_conn_table_flush(t, 9000);
	tv_conn_table_free(t);
}

/* A socket used by another process than the one that accepted it (a forked child): the record
 * carries the process that read the request. */
static void test_record_carries_the_process_that_served_it(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	struct tv_event *e;

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10)); /* pid 77 accepts */
	e = ev(TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20);
	e->pid = 78;
	memcpy(e->comm, "child", 6);
	e->payload_len = (uint32_t)strlen("GET /c HTTP/1.1\r\n\r\n");
	memcpy(e->payload, "GET /c HTTP/1.1\r\n\r\n", e->payload_len);
	e->bytes = e->payload_len;
	send_ev(t, e);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30, "HTTP/1.1 204 No Content\r\n\r\n", 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].pid, 78);
	assert_string_equal(g.x[0].comm, "child");
	tv_conn_table_flush(t, 100);
	tv_conn_table_free(t);
}

static struct tv_event *unseen_gap(struct tv_event *e, uint64_t in_bytes, uint64_t out_bytes)
{
	e->flags |= TV_EV_FLAG_GAP | TV_EV_FLAG_UNSEEN;
	e->lost_in_events = in_bytes != 0;
	e->lost_out_events = out_bytes != 0;
	e->lost_in_bytes = in_bytes;
	e->lost_out_bytes = out_bytes;
	return e;
}

/* A whole response sent where no hook looks (io_uring), found from the TCP counters at the
 * next read: its request is recorded LOST|UNSEEN and the later pairs stay right. */
static void test_unseen_response_keeps_later_pairs(void **state)
{
	static const char req2[] = "GET /2 HTTP/1.1\r\n\r\n";
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	struct tv_event *e;

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, "GET /1 HTTP/1.1\r\n\r\n", 0);
	e = unseen_gap(ev(TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 30), 0, 77);
	e->payload_len = sizeof(req2) - 1;
	memcpy(e->payload, req2, e->payload_len);
	e->bytes = e->payload_len;
	send_ev(t, e);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].path, "/1");
	assert_int_equal(g.x[0].status, 0);
	assert_int_equal(g.x[0].flags, TV_RECORD_FLAG_LOST | TV_RECORD_FLAG_UNSEEN);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 40,
	     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.x[1].path, "/2");
	assert_int_equal(g.x[1].status, 200);
	assert_int_equal(g.x[1].flags, 0);
	assert_int_equal(tv_conn_table_stats(t)->unseen_gaps, 1);
	assert_int_equal(tv_conn_table_stats(t)->responses_lost, 1);
	tv_conn_table_flush(t, 100);
	tv_conn_table_free(t);
}

/* A request read where no hook looks, found when its response is written: no record, counted
 * as unhooked, and its response does not pair with the next request. */
static void test_unseen_request_counted_and_skipped(void **state)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	struct tv_event *e;

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	e = unseen_gap(ev(TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 20), 40, 0);
	e->payload_len = sizeof(resp) - 1;
	memcpy(e->payload, resp, e->payload_len);
	e->bytes = e->payload_len;
	send_ev(t, e);
	assert_int_equal(g.n, 0);
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 30, "GET /b HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 40,
	     "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.x[0].path, "/b");
	assert_int_equal(g.x[0].status, 404);
	assert_int_equal(tv_conn_table_stats(t)->requests_unhooked, 1);
	assert_int_equal(tv_conn_table_stats(t)->requests_unseen, 0);
	tv_conn_table_flush(t, 100);
	tv_conn_table_free(t);
}

/* Unhooked bytes inside a body of known length: skipped exactly, the record flagged UNSEEN. */
static void test_unseen_bytes_inside_body(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, "GET /1 HTTP/1.1\r\n\r\n", 0);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 0);
	send_ev(t, unseen_gap(ev(TV_EV_FIN_OUT, TV_ROLE_SERVER, 5, 1, 40), 0, 1000));
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].status, 200);
	assert_int_equal(g.x[0].resp_body_bytes, 1000);
	assert_int_equal(g.x[0].flags, TV_RECORD_FLAG_UNSEEN);
	assert_int_equal(tv_conn_table_stats(t)->requests_unhooked, 0);
	assert_int_equal(tv_conn_table_stats(t)->responses_lost, 0);
	tv_conn_table_flush(t, 100);
	tv_conn_table_free(t);
}

/* A CLOSE flagged HELD (a reset while the server still held the socket) may reach the ring
 * before the server's last write did: the connection ends only at tv_conn_table_reap, a grace
 * period later, so that write still pairs. */
static void test_held_close_waits_for_late_data(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	struct tv_event *e;

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, "GET /x HTTP/1.1\r\n\r\n", 0);
	e = ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 40);
	e->flags = TV_EV_FLAG_HELD;
	send_ev(t, e);
	data(t, TV_EV_DATA_OUT, TV_ROLE_SERVER, 5, 1, 30,
	     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz", 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].status, 200);
	assert_int_equal(g.x[0].flags, 0);
	assert_int_equal(tv_conn_table_stats(t)->conns_closed, 0);
	tv_conn_table_reap(t, 40 + TV_CONN_CLOSE_GRACE_NS - 1);
	assert_int_equal(tv_conn_table_stats(t)->conns_closed, 0);
	tv_conn_table_reap(t, 40 + TV_CONN_CLOSE_GRACE_NS);
	assert_int_equal(tv_conn_table_stats(t)->conns_closed, 1);
	tv_conn_table_flush(t, 100 * TV_CONN_CLOSE_GRACE_NS);
	tv_conn_table_free(t);
}

/* A held CLOSE ends a request still without a response at the CLOSE's time. */
static void test_held_close_ends_at_its_time(void **state)
{
	struct got g = { 0 };
	struct tv_conn_table *t = tv_conn_table_new(on_exchange, &g);
	struct tv_event *e;

	(void)state;
	send_ev(t, ev(TV_EV_ACCEPT, TV_ROLE_SERVER, 5, 1, 10));
	data(t, TV_EV_DATA_IN, TV_ROLE_SERVER, 5, 1, 20, "GET /y HTTP/1.1\r\n\r\n", 0);
	e = ev(TV_EV_CLOSE, TV_ROLE_SERVER, 5, 1, 40);
	e->flags = TV_EV_FLAG_HELD;
	send_ev(t, e);
	assert_int_equal(g.n, 0);
	tv_conn_table_reap(t, 1000 * TV_CONN_CLOSE_GRACE_NS);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.x[0].status, 0);
	assert_int_equal(g.x[0].flags, TV_RECORD_FLAG_NO_RESPONSE);
	assert_int_equal(g.x[0].end_ns, 40);
	tv_conn_table_flush(t, 2000 * TV_CONN_CLOSE_GRACE_NS);
	tv_conn_table_free(t);
}


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exchange_carries_headers_and_frees_them),
		cmocka_unit_test(test_server_pipelined_requests_pair_in_order),
		cmocka_unit_test(test_client_role_reverses_directions),
		cmocka_unit_test(test_close_without_response_gives_status_zero),
		cmocka_unit_test(test_reused_fd_does_not_merge_connections),
		cmocka_unit_test(test_short_records_are_counted_not_parsed),
		cmocka_unit_test(test_ipv6_address_format),
		cmocka_unit_test(test_expect_continue_exchange_completes_on_final_response),
		cmocka_unit_test(test_cut_response_flagged_partial),
		cmocka_unit_test(test_close_delimited_sendfile_body),
		cmocka_unit_test(test_cut_request_head_keeps_pairing),
		cmocka_unit_test(test_head_limit_set_from_payload_bytes),
		cmocka_unit_test(test_long_path_stored_whole),
		cmocka_unit_test(test_unparseable_request_counted),
		cmocka_unit_test(test_gap_lost_response_flags_its_request_only),
		cmocka_unit_test(test_gap_lost_request_absorbs_its_response),
		cmocka_unit_test(test_gap_lost_request_and_response_leave_no_trace),
		cmocka_unit_test(test_gap_inside_body_keeps_exact_count),
		cmocka_unit_test(test_gap_in_pipelined_responses),
		cmocka_unit_test(test_gap_longer_than_the_pipeline_limit),
		cmocka_unit_test(test_gap_reported_by_close),
		cmocka_unit_test(test_connection_first_seen_mid_response),
		cmocka_unit_test(test_connection_first_seen_mid_request_body),
		cmocka_unit_test(test_full_payload_event_is_parsed),
		cmocka_unit_test(test_unseen_place_pushed_out_is_not_counted_dropped),
		cmocka_unit_test(test_101_tunnel_gives_one_record),
		cmocka_unit_test(test_101_tunnel_client_role),
		cmocka_unit_test(test_refused_upgrade_keeps_parsing),
		cmocka_unit_test(test_connect_tunnel_and_refused_connect),
		cmocka_unit_test(test_h2_prior_knowledge_is_a_tunnel),
		cmocka_unit_test(test_requests_pipelined_behind_the_upgrade_are_tunnel_bytes),
		cmocka_unit_test(test_101_before_the_request_body_ends),
		cmocka_unit_test(test_gap_inside_a_tunnel),
		cmocka_unit_test(test_exchange_carries_bodies),
		cmocka_unit_test(test_fin_out_ends_close_delimited_body),
		cmocka_unit_test(test_record_carries_the_process_that_served_it),
		cmocka_unit_test(test_unseen_response_keeps_later_pairs),
		cmocka_unit_test(test_unseen_request_counted_and_skipped),
		cmocka_unit_test(test_unseen_bytes_inside_body),
		cmocka_unit_test(test_held_close_waits_for_late_data),
		cmocka_unit_test(test_held_close_ends_at_its_time),
	};

	return cmocka_run_group_tests(tests, NULL, free_kept);
}
