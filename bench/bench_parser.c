/* Parser replay benchmark: exchanges/s on one core of the HTTP parser + connection table
 * (client/capture/conn_table.c) fed pre-built kernel events of synthetic keep-alive exchanges. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/clock.h"
#include "bpf/tv_event.h"
#include "capture/conn_table.h"

/* Connections open at once (interleaved round-robin, as many clients on one server) and
 * keep-alive exchanges per connection in one replay round. */
#define CONNS 64
#define PER_CONN 100
#define SMALL_BODY_BYTES 612      /* nginx's index.html, written with its head */
#define FILE_BODY_BYTES (100 << 10) /* a static file: head by writev, body by sendfile */

struct ev_ref {
	const void *e; /* a ring record: header + payload_len bytes, not a whole struct */
	size_t len;
};

struct events {
	struct ev_ref *v;
	size_t n, cap;
};

struct counts {
	uint64_t exchanges, bad;
};

/* One ring record as the kernel sends it: the header and payload_len payload bytes. */
static int add_event(struct events *ev, int conn, uint8_t kind, const void *payload,
		     size_t payload_len, uint64_t bytes, uint8_t flags, uint64_t ts_ns)
{
	static struct tv_event hdr;
	struct tv_event *e;
	uint8_t *rec;
	size_t len = TV_EVENT_HEADER_BYTES + payload_len;

	if (ev->n == ev->cap) {
		size_t cap = ev->cap ? ev->cap * 2 : 1024;
		struct ev_ref *v = realloc(ev->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		ev->v = v;
		ev->cap = cap;
	}
	/* the header is built in a whole struct, then only len bytes are kept, as in the ring
	 * (writing through a short allocation typed as the whole struct is out of bounds) */
	e = &hdr;
	memset(e, 0, TV_EVENT_HEADER_BYTES);
	e->ts_ns = ts_ns;
	e->conn_id = (uint64_t)4242 << 32 | (uint64_t)(conn + 10);
	e->conn_gen = 1000 + (uint64_t)conn;
	e->bytes = bytes;
	e->pid = 4242;
	e->tid = 4242;
	e->fd = conn + 10;
	e->payload_len = (uint32_t)payload_len;
	e->kind = kind;
	e->role = TV_ROLE_SERVER;
	e->flags = flags;
	memcpy(e->comm, "nginx", 6);
	e->local.family = AF_INET;
	e->local.addr[0] = 127;
	e->local.addr[3] = 1;
	e->local.port = 8080;
	e->remote = e->local;
	e->remote.port = (uint16_t)(40000 + conn);
	rec = malloc(len);
	if (!rec)
		return -ENOMEM;
	memcpy(rec, e, TV_EVENT_HEADER_BYTES);
	if (payload_len)
		memcpy(rec + TV_EVENT_HEADER_BYTES, payload, payload_len);
	ev->v[ev->n].e = rec;
	ev->v[ev->n].len = len;
	ev->n++;
	return 0;
}

/* CONNS connections x PER_CONN exchanges, round-robin: accept, then per exchange a request
 * read and a response (small: head + body in one write; every 4th: a writev head and a
 * sendfile body counted but not copied, as nginx serves files), then close. */
static int build(struct events *ev)
{
	static const char req_fmt[] =
		"GET /api/v1/items/%d?page=2 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
		"User-Agent: curl/7.88.1\r\nAccept: */*\r\n"
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
	static const char head_fmt[] =
		"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 14:00:00 GMT\r\n"
		"Content-Type: text/html\r\nContent-Length: %d\r\n"
		"Last-Modified: Thu, 26 Nov 2026 13:00:00 GMT\r\nConnection: keep-alive\r\n"
		"ETag: \"6565a1b0-264\"\r\nAccept-Ranges: bytes\r\n\r\n";
	char buf[4096];
	uint64_t ts = 1;
	int c, k, n, rc;

	for (c = 0; c < CONNS; c++)
		if ((rc = add_event(ev, c, TV_EV_ACCEPT, NULL, 0, 0, 0, ts++)) < 0)
			return rc;
	for (k = 0; k < PER_CONN; k++) {
		for (c = 0; c < CONNS; c++) {
			int file = k % 4 == 3;

			n = snprintf(buf, sizeof(buf), req_fmt, k);
			if ((rc = add_event(ev, c, TV_EV_DATA_IN, buf, (size_t)n, (uint64_t)n, 0,
					    ts++)) < 0)
				return rc;
			n = snprintf(buf, sizeof(buf), head_fmt,
				     file ? FILE_BODY_BYTES : SMALL_BODY_BYTES);
			if (!file) {
				memset(buf + n, 'x', SMALL_BODY_BYTES);
				n += SMALL_BODY_BYTES;
			}
			if ((rc = add_event(ev, c, TV_EV_DATA_OUT, buf, (size_t)n, (uint64_t)n, 0,
					    ts++)) < 0)
				return rc;
			if (file && (rc = add_event(ev, c, TV_EV_DATA_OUT, NULL, 0, FILE_BODY_BYTES,
						    TV_EV_FLAG_TRUNCATED, ts++)) < 0)
				return rc;
		}
	}
	for (c = 0; c < CONNS; c++)
		if ((rc = add_event(ev, c, TV_EV_CLOSE, NULL, 0, 0, 0, ts++)) < 0)
			return rc;
	return 0;
}

/* Counts exchanges and checks each is whole, so a broken parser cannot look fast. */
static void on_exchange(void *ctx, const struct tv_exchange *x)
{
	struct counts *n = ctx;

	n->exchanges++;
	if (x->status != 200 || x->flags ||
	    (x->resp_body_bytes != SMALL_BODY_BYTES && x->resp_body_bytes != FILE_BODY_BYTES) ||
	    strncmp(x->path, "/api/v1/items/", 14) != 0)
		n->bad++;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	struct events ev = {0};
	struct counts n = {0};
	struct tv_conn_table *t = NULL;
	uint64_t t0, t1, rounds = 0, bytes = 0;
	size_t i;
	int rc = 1;

	if (argc > 2 || seconds <= 0) {
		fprintf(stderr, "usage: bench_parser [SECONDS]\n");
		return 2;
	}
	if (build(&ev) < 0 || !(t = tv_conn_table_new(on_exchange, &n))) {
		fprintf(stderr, "bench_parser: out of memory\n");
		goto out;
	}
	for (i = 0; i < ev.n; i++)
		bytes += ev.v[i].len;
	t0 = tv_monotonic_ns();
	do { /* each round closes every connection: the next one reopens them afresh */
		for (i = 0; i < ev.n; i++)
			tv_conn_table_event(t, ev.v[i].e, ev.v[i].len);
		rounds++;
		t1 = tv_monotonic_ns();
	} while ((double)(t1 - t0) < seconds * 1e9);
	if (n.exchanges != rounds * CONNS * PER_CONN || n.bad) {
		fprintf(stderr, "bench_parser: %" PRIu64 " exchanges (%" PRIu64 " wrong), want %"
			PRIu64 "\n", n.exchanges, n.bad, rounds * CONNS * PER_CONN);
		goto out;
	}
	printf("parser_exchanges %" PRIu64 "\n", n.exchanges);
	printf("parser_events_per_s %.0f\n", (double)(rounds * ev.n) * 1e9 / (double)(t1 - t0));
	printf("parser_MBps %.1f\n", (double)(rounds * bytes) * 1e3 / (double)(t1 - t0));
	printf("parser_exchanges_per_s %.0f\n", (double)n.exchanges * 1e9 / (double)(t1 - t0));
	rc = 0;
out:
	if (t)
		tv_conn_table_free(t);
	for (i = 0; i < ev.n; i++)
		free((void *)ev.v[i].e);
	free(ev.v);
	return rc;
}
