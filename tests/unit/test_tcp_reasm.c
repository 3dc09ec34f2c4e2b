/* Unit tests for client/capture/tcp_reasm.c: captured TCP segments in any order become in-order
 * byte runs per direction, with exact gap counts for holes, bounded queues and connection table. */
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

#include "capture/http_parse.h" /* tv_http_is_request_start, the probe sockfilter.c sets */
#include "capture/tcp_reasm.h"

#define MAX_EV 256
#define STREAM_BYTES 70000
#define SERVER_PORT 8080

struct rec {
	int n;
	struct tv_tcp_event ev[MAX_EV];
	struct tv_tcp_conn_info conn[MAX_EV];
	/* bytes delivered per direction, the captured ones as they came (uncaptured as '?') */
	char stream[2][STREAM_BYTES];
	size_t stream_len[2];
	uint64_t gap_bytes[2];
	uint32_t gaps[2];
	int opens, closes;
	int fins[2]; /* TV_TCP_EV_FIN by direction: counted, not kept in ev[] */
};

static void on_event(void *ctx, const struct tv_tcp_event *ev)
{
	struct rec *r = ctx;
	uint32_t i;

	if (ev->kind == TV_TCP_EV_FIN) {
		for (i = 0; i < 2; i++) {
			r->gap_bytes[i] += ev->gap_bytes[i];
			r->gaps[i] += ev->gaps[i];
		}
		r->fins[ev->dir]++;
		return;
	}
	assert_true(r->n < MAX_EV);
	r->ev[r->n] = *ev;
	r->conn[r->n] = *ev->conn;
	r->ev[r->n].data = NULL; /* not valid after the call */
	r->n++;
	for (i = 0; i < 2; i++) {
		r->gap_bytes[i] += ev->gap_bytes[i];
		r->gaps[i] += ev->gaps[i];
	}
	if (ev->kind == TV_TCP_EV_OPEN)
		r->opens++;
	if (ev->kind == TV_TCP_EV_CLOSE)
		r->closes++;
	if (ev->kind != TV_TCP_EV_DATA)
		return;
	assert_true(ev->cap_len <= ev->len);
	assert_true(r->stream_len[ev->dir] + ev->len <= STREAM_BYTES);
	for (i = 0; i < ev->len; i++)
		r->stream[ev->dir][r->stream_len[ev->dir]++] = i < ev->cap_len ? (char)ev->data[i]
									  : '?';
}

static struct tv_tcp_endpoint ep(const char *ip, uint16_t port)
{
	struct tv_tcp_endpoint e;

	memset(&e, 0, sizeof(e));
	if (strchr(ip, ':')) {
		e.family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, e.addr), 1);
	} else {
		e.family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, e.addr), 1);
	}
	e.port = port;
	return e;
}

/* The two ends used by most cases: client 127.0.0.1:40000, server 127.0.0.1:8080. */
static struct tv_tcp_endpoint cli(void) { return ep("127.0.0.1", 40000); }
static struct tv_tcp_endpoint srv(void) { return ep("127.0.0.1", SERVER_PORT); }

static uint64_t now_ns = 1000;

static void seg(struct tv_tcp_reasm *t, struct tv_tcp_endpoint src, struct tv_tcp_endpoint dst,
		uint32_t seq, uint8_t flags, const char *data)
{
	struct tv_tcp_seg s;

	memset(&s, 0, sizeof(s));
	s.src = src;
	s.dst = dst;
	s.seq = seq;
	s.flags = flags;
	s.len = s.cap_len = data ? (uint32_t)strlen(data) : 0;
	s.data = (const uint8_t *)data;
	s.ts_ns = now_ns++;
	tv_tcp_reasm_segment(t, &s);
}

/* Client -> server bytes at sequence offset off from an ISN. */
static void c2s(struct tv_tcp_reasm *t, uint32_t isn, uint32_t off, const char *data)
{
	seg(t, cli(), srv(), isn + 1 + off, TV_TCP_ACK, data);
}

static void s2c(struct tv_tcp_reasm *t, uint32_t isn, uint32_t off, const char *data)
{
	seg(t, srv(), cli(), isn + 1 + off, TV_TCP_ACK, data);
}

static void handshake(struct tv_tcp_reasm *t, uint32_t cisn, uint32_t sisn)
{
	struct tv_tcp_seg s;

	seg(t, cli(), srv(), cisn, TV_TCP_SYN, NULL);
	memset(&s, 0, sizeof(s));
	s.src = srv();
	s.dst = cli();
	s.seq = sisn;
	s.ack = cisn + 1;
	s.flags = TV_TCP_SYN | TV_TCP_ACK;
	s.ts_ns = now_ns++;
	tv_tcp_reasm_segment(t, &s);
}

static struct tv_tcp_reasm *new_reasm(struct rec *r, uint16_t server_port, uint32_t max_conns)
{
	struct tv_tcp_reasm *t;

	memset(r, 0, sizeof(*r));
	t = tv_tcp_reasm_new(server_port, max_conns, on_event, r);
	assert_non_null(t);
	return t;
}

static void assert_stream(const struct rec *r, int dir, const char *want)
{
	assert_int_equal(r->stream_len[dir], strlen(want));
	assert_memory_equal(r->stream[dir], want, strlen(want));
}

static void test_in_order_handshake_data_fin_close(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);
	struct tv_tcp_endpoint c = cli(), s = srv();

	(void)state;
	handshake(t, 100, 5000);
	c2s(t, 100, 0, "GET / HTTP/1.1\r\n\r\n");
	s2c(t, 5000, 0, "HTTP/1.1 200 OK\r\n");
	seg(t, c, s, 101 + 18, TV_TCP_FIN | TV_TCP_ACK, NULL);
	assert_int_equal(r.closes, 0); /* one FIN is half a close */
	assert_int_equal(r.fins[TV_TCP_TO_SERVER], 1); /* but ends the client's direction */
	assert_int_equal(r.fins[TV_TCP_TO_CLIENT], 0);
	seg(t, s, c, 5001 + 17, TV_TCP_FIN | TV_TCP_ACK, NULL);
	assert_int_equal(r.fins[TV_TCP_TO_CLIENT], 1);
	assert_int_equal(r.n, 4);
	assert_int_equal(r.ev[0].kind, TV_TCP_EV_OPEN);
	assert_memory_equal(&r.conn[0].client, &c, sizeof(c));
	assert_memory_equal(&r.conn[0].server, &s, sizeof(s));
	assert_int_equal(r.conn[0].midstream, 0);
	assert_int_equal(r.ev[1].kind, TV_TCP_EV_DATA);
	assert_int_equal(r.ev[1].dir, TV_TCP_TO_SERVER);
	assert_int_equal(r.ev[2].dir, TV_TCP_TO_CLIENT);
	assert_int_equal(r.ev[3].kind, TV_TCP_EV_CLOSE);
	assert_int_equal(r.conn[3].id, r.conn[0].id);
	assert_stream(&r, TV_TCP_TO_SERVER, "GET / HTTP/1.1\r\n\r\n");
	assert_stream(&r, TV_TCP_TO_CLIENT, "HTTP/1.1 200 OK\r\n");
	assert_int_equal(tv_tcp_reasm_conns(t), 0);
	assert_int_equal(tv_tcp_reasm_stats(t)->gaps, 0);
	tv_tcp_reasm_free(t);
}

static void test_out_of_order_is_delivered_in_sequence(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);

	(void)state;
	handshake(t, 7, 9);
	c2s(t, 7, 10, "KLMNO");
	c2s(t, 7, 5, "FGHIJ");
	assert_int_equal(r.stream_len[TV_TCP_TO_SERVER], 0); /* waits for bytes 0..4 */
	c2s(t, 7, 0, "ABCDE");
	assert_stream(&r, TV_TCP_TO_SERVER, "ABCDEFGHIJKLMNO");
	assert_int_equal(tv_tcp_reasm_stats(t)->ooo_segments, 2);
	assert_int_equal(r.gaps[0] + r.gaps[1], 0);
	tv_tcp_reasm_flush(t, now_ns);
	assert_int_equal(r.closes, 1);
	tv_tcp_reasm_free(t);
}

static void test_retransmit_and_overlap_are_trimmed(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);

	(void)state;
	handshake(t, 1000, 2000);
	c2s(t, 1000, 0, "0123456789");
	c2s(t, 1000, 0, "0123456789");  /* retransmitted whole */
	c2s(t, 1000, 5, "56789abcde");  /* overlaps 5 delivered bytes */
	c2s(t, 1000, 20, "klmno");      /* early */
	c2s(t, 1000, 18, "ijklm");      /* overlaps the queued one */
	c2s(t, 1000, 15, "fgh");        /* fills up to 18 */
	assert_stream(&r, TV_TCP_TO_SERVER, "0123456789abcdefghijklmno");
	assert_int_equal(tv_tcp_reasm_stats(t)->retrans_bytes, 10 + 5 + 3);
	assert_int_equal(tv_tcp_reasm_stats(t)->gaps, 0);
	tv_tcp_reasm_free(t);
}

static void test_sequence_wraps_around(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);
	uint32_t isn = 0xFFFFFFF5u; /* first data byte at ...F6: the 10th byte crosses 2^32 */

	(void)state;
	handshake(t, isn, 0xFFFFFFFFu);
	c2s(t, isn, 16, "QRSTUVWX");         /* after the wrap, early */
	c2s(t, isn, 0, "ABCDEFGHIJKLMNOP");  /* spans the wrap */
	s2c(t, 0xFFFFFFFFu, 0, "server");    /* server data starts at seq 0 */
	c2s(t, isn, 3, "DEF");               /* old, before the wrap */
	assert_stream(&r, TV_TCP_TO_SERVER, "ABCDEFGHIJKLMNOPQRSTUVWX");
	assert_stream(&r, TV_TCP_TO_CLIENT, "server");
	assert_int_equal(tv_tcp_reasm_stats(t)->retrans_bytes, 3);
	assert_int_equal(tv_tcp_reasm_stats(t)->gaps, 0);
	tv_tcp_reasm_free(t);
}

static void test_hole_becomes_gap_of_exact_bytes_at_close(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);
	int i;

	(void)state;
	handshake(t, 50, 60);
	c2s(t, 50, 0, "AAAAAAAAAA");
	c2s(t, 50, 23, "DDDDD");  /* 13 bytes missing before it */
	s2c(t, 60, 0, "resp");
	assert_int_equal(r.gaps[0], 0);
	tv_tcp_reasm_flush(t, now_ns);
	assert_int_equal(r.gaps[TV_TCP_TO_SERVER], 1);
	assert_int_equal(r.gap_bytes[TV_TCP_TO_SERVER], 13);
	assert_int_equal(r.gap_bytes[TV_TCP_TO_CLIENT], 0);
	assert_stream(&r, TV_TCP_TO_SERVER, "AAAAAAAAAADDDDD");
	/* the gap rides on the first event after the hole: the data right behind it */
	for (i = 0; i < r.n; i++)
		if (r.ev[i].gaps[TV_TCP_TO_SERVER])
			break;
	assert_true(i < r.n);
	assert_int_equal(r.ev[i].kind, TV_TCP_EV_DATA);
	assert_int_equal(r.ev[i].len, 5);
	assert_int_equal(r.ev[i].gap_bytes[TV_TCP_TO_SERVER], 13);
	assert_int_equal(tv_tcp_reasm_stats(t)->gap_bytes, 13);
	assert_int_equal(r.closes, 1);
	tv_tcp_reasm_free(t);
}

static void test_hole_times_out_by_expire(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);
	uint64_t queued_at;

	(void)state;
	handshake(t, 0, 0);
	c2s(t, 0, 0, "ab");
	queued_at = now_ns;
	c2s(t, 0, 7, "hij");  /* 5 bytes missing */
	tv_tcp_reasm_expire(t, queued_at + TV_TCP_REASM_HOLE_TIMEOUT_NS / 2);
	assert_int_equal(r.gaps[0], 0);
	tv_tcp_reasm_expire(t, queued_at + TV_TCP_REASM_HOLE_TIMEOUT_NS + 1);
	assert_int_equal(r.gaps[TV_TCP_TO_SERVER], 1);
	assert_int_equal(r.gap_bytes[TV_TCP_TO_SERVER], 5);
	assert_stream(&r, TV_TCP_TO_SERVER, "abhij");
	assert_int_equal(r.closes, 0); /* still open */
	/* the late retransmission of the hole is old now: trimmed, not delivered */
	c2s(t, 0, 2, "cdefg");
	assert_stream(&r, TV_TCP_TO_SERVER, "abhij");
	tv_tcp_reasm_free(t);
}

static void test_out_of_order_queue_is_bounded(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);
	char one[2] = "x";
	uint32_t i;

	(void)state;
	handshake(t, 0, 0);
	c2s(t, 0, 0, "0");
	/* byte 1 is never seen; bytes 2 .. 2+MAX_OOO arrive, one per segment */
	for (i = 0; i < TV_TCP_REASM_MAX_OOO; i++) {
		c2s(t, 0, 2 + i, one);
		assert_int_equal(r.gaps[0], 0);
	}
	assert_int_equal(r.stream_len[TV_TCP_TO_SERVER], 1);
	c2s(t, 0, 2 + TV_TCP_REASM_MAX_OOO, one); /* one more than the queue holds */
	assert_int_equal(r.gaps[TV_TCP_TO_SERVER], 1);
	assert_int_equal(r.gap_bytes[TV_TCP_TO_SERVER], 1);
	assert_int_equal(r.stream_len[TV_TCP_TO_SERVER], 1 + TV_TCP_REASM_MAX_OOO + 1);
	tv_tcp_reasm_free(t);
}

static void test_rst_ends_connection_with_queued_data_and_gap(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);

	(void)state;
	handshake(t, 10, 20);
	c2s(t, 10, 0, "abc");
	c2s(t, 10, 5, "fg");
	seg(t, srv(), cli(), 21, TV_TCP_RST, NULL);
	assert_int_equal(r.closes, 1);
	assert_int_equal(r.gap_bytes[TV_TCP_TO_SERVER], 2);
	assert_stream(&r, TV_TCP_TO_SERVER, "abcfg");
	assert_int_equal(tv_tcp_reasm_conns(t), 0);
	/* a segment after the end starts nothing (no SYN, no server port) */
	c2s(t, 10, 7, "late");
	assert_int_equal(r.opens, 1);
	assert_int_equal(tv_tcp_reasm_stats(t)->midstream_ignored, 1);
	tv_tcp_reasm_free(t);
}

static void test_fin_waits_for_the_bytes_before_it(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);

	(void)state;
	handshake(t, 0, 0);
	seg(t, srv(), cli(), 1 + 4, TV_TCP_FIN | TV_TCP_ACK, NULL); /* FIN before its data */
	seg(t, cli(), srv(), 1, TV_TCP_FIN | TV_TCP_ACK, NULL);
	assert_int_equal(r.closes, 0);
	s2c(t, 0, 0, "data");
	assert_int_equal(r.closes, 1);
	assert_stream(&r, TV_TCP_TO_CLIENT, "data");
	assert_int_equal(r.gaps[0] + r.gaps[1], 0);
	tv_tcp_reasm_free(t);
}

static void test_midstream_with_server_port_starts_at_first_payload(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, SERVER_PORT, 0);
	struct tv_tcp_endpoint c = ep("::1", 41000), s = ep("::1", SERVER_PORT);

	(void)state;
	seg(t, s, c, 777, TV_TCP_ACK, NULL); /* a bare ACK starts nothing */
	assert_int_equal(r.opens, 0);
	/* the server speaks first: it is still the server (its port), the client the other */
	seg(t, s, c, 900000, TV_TCP_ACK, "tail of an old response");
	assert_int_equal(r.opens, 1);
	assert_int_equal(r.conn[0].midstream, 1);
	assert_memory_equal(&r.conn[0].server, &s, sizeof(s));
	assert_memory_equal(&r.conn[0].client, &c, sizeof(c));
	seg(t, c, s, 0xFFFFFFFEu, TV_TCP_ACK, "GET /x HTTP/1.1\r\n\r\n");
	seg(t, s, c, 900000 + 23, TV_TCP_ACK, "HTTP/1.1 200 OK\r\n");
	assert_stream(&r, TV_TCP_TO_SERVER, "GET /x HTTP/1.1\r\n\r\n");
	assert_stream(&r, TV_TCP_TO_CLIENT, "tail of an old responseHTTP/1.1 200 OK\r\n");
	tv_tcp_reasm_free(t);
}

/* Without a server port, a probe that recognises a request's first bytes decides: the
 * connection starts at the first segment that begins a request, its sender the client,
 * whichever port is higher; what comes before it (a response's tail) is ignored. */
static void test_midstream_without_server_port_starts_at_a_request(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);
	struct tv_tcp_endpoint c = ep("127.0.0.1", 80), s = ep("127.0.0.1", 45000);

	(void)state;
	tv_tcp_reasm_set_request_probe(t, tv_http_is_request_start);
	seg(t, s, c, 5000, TV_TCP_ACK, "HTTP/1.1 200 OK\r\n\r\n"); /* not a request */
	seg(t, c, s, 100, TV_TCP_ACK, "tail of a body");
	assert_int_equal(r.opens, 0);
	assert_int_equal(tv_tcp_reasm_stats(t)->midstream_ignored, 2);
	seg(t, c, s, 114, TV_TCP_ACK, "GET /next HTTP/1.1\r\n\r\n");
	assert_int_equal(r.opens, 1);
	assert_int_equal(r.conn[0].midstream, 1);
	assert_memory_equal(&r.conn[0].client, &c, sizeof(c));
	assert_memory_equal(&r.conn[0].server, &s, sizeof(s));
	seg(t, s, c, 5019, TV_TCP_ACK, "HTTP/1.1 404 Not Found\r\n");
	assert_stream(&r, TV_TCP_TO_SERVER, "GET /next HTTP/1.1\r\n\r\n");
	assert_stream(&r, TV_TCP_TO_CLIENT, "HTTP/1.1 404 Not Found\r\n");
	tv_tcp_reasm_free(t);
}

static void test_midstream_without_server_port_is_ignored(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);

	(void)state;
	c2s(t, 0, 0, "GET / HTTP/1.1\r\n\r\n");
	s2c(t, 0, 0, "HTTP/1.1 200 OK\r\n");
	assert_int_equal(r.n, 0);
	assert_int_equal(tv_tcp_reasm_stats(t)->midstream_ignored, 2);
	/* a SYN-ACK alone is enough: its sender is the server */
	{
		struct tv_tcp_seg s;

		memset(&s, 0, sizeof(s));
		s.src = srv();
		s.dst = cli();
		s.seq = 41;
		s.ack = 301;
		s.flags = TV_TCP_SYN | TV_TCP_ACK;
		s.ts_ns = now_ns++;
		tv_tcp_reasm_segment(t, &s);
	}
	c2s(t, 300, 0, "GET");
	assert_int_equal(r.opens, 1);
	assert_stream(&r, TV_TCP_TO_SERVER, "GET");
	tv_tcp_reasm_free(t);
}

static void test_connection_table_overflow_is_counted(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 2);
	uint16_t port;

	(void)state;
	for (port = 50000; port < 50003; port++)
		seg(t, ep("10.0.0.1", port), srv(), 1, TV_TCP_SYN, NULL);
	assert_int_equal(r.opens, 2);
	assert_int_equal(tv_tcp_reasm_conns(t), 2);
	assert_int_equal(tv_tcp_reasm_stats(t)->conns_overflow, 1);
	/* room again once one ends */
	seg(t, ep("10.0.0.1", 50000), srv(), 2, TV_TCP_RST, NULL);
	seg(t, ep("10.0.0.1", 50002), srv(), 1, TV_TCP_SYN, NULL);
	assert_int_equal(r.opens, 3);
	tv_tcp_reasm_flush(t, now_ns);
	assert_int_equal(r.closes, 3);
	tv_tcp_reasm_free(t);
}

static void test_new_syn_on_same_tuple_ends_old_connection(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);

	(void)state;
	handshake(t, 100, 200);
	c2s(t, 100, 0, "one");
	handshake(t, 90000, 300); /* port reused; the old end was not seen */
	c2s(t, 90000, 0, "two");
	assert_int_equal(r.opens, 2);
	assert_int_equal(r.closes, 1);
	assert_stream(&r, TV_TCP_TO_SERVER, "onetwo");
	assert_true(r.conn[0].id != r.conn[r.n - 1].id);
	tv_tcp_reasm_free(t);
}

static void test_uncaptured_bytes_are_counted_exactly(void **state)
{
	struct rec r;
	struct tv_tcp_reasm *t = new_reasm(&r, 0, 0);
	struct tv_tcp_seg s;

	(void)state;
	handshake(t, 0, 0);
	memset(&s, 0, sizeof(s));
	s.src = srv();
	s.dst = cli();
	s.seq = 1;
	s.flags = TV_TCP_ACK;
	s.len = 65000; /* a GSO packet cut to its first 4 bytes by the filter */
	s.cap_len = 4;
	s.data = (const uint8_t *)"HTTP";
	s.ts_ns = now_ns++;
	tv_tcp_reasm_segment(t, &s);
	/* a retransmission overlapping all but the last 10 bytes */
	s.seq = 1 + 64990;
	s.len = 20;
	s.cap_len = 20;
	s.data = (const uint8_t *)"0123456789abcdefghij";
	tv_tcp_reasm_segment(t, &s);
	assert_int_equal(r.stream_len[TV_TCP_TO_CLIENT], 65010);
	assert_memory_equal(r.stream[TV_TCP_TO_CLIENT], "HTTP?", 5);
	assert_int_equal(r.ev[r.n - 1].len, 10);
	assert_int_equal(r.ev[r.n - 1].cap_len, 10);
	tv_tcp_reasm_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order_handshake_data_fin_close),
		cmocka_unit_test(test_out_of_order_is_delivered_in_sequence),
		cmocka_unit_test(test_retransmit_and_overlap_are_trimmed),
		cmocka_unit_test(test_sequence_wraps_around),
		cmocka_unit_test(test_hole_becomes_gap_of_exact_bytes_at_close),
		cmocka_unit_test(test_hole_times_out_by_expire),
		cmocka_unit_test(test_out_of_order_queue_is_bounded),
		cmocka_unit_test(test_rst_ends_connection_with_queued_data_and_gap),
		cmocka_unit_test(test_fin_waits_for_the_bytes_before_it),
		cmocka_unit_test(test_midstream_with_server_port_starts_at_first_payload),
		cmocka_unit_test(test_midstream_without_server_port_is_ignored),
		cmocka_unit_test(test_midstream_without_server_port_starts_at_a_request),
		cmocka_unit_test(test_connection_table_overflow_is_counted),
		cmocka_unit_test(test_new_syn_on_same_tuple_ends_old_connection),
		cmocka_unit_test(test_uncaptured_bytes_are_counted_exactly),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
