/* TCP reassembly for the sockfilter capture: a hash table of connections keyed by the unordered
 * 4-tuple, each with two directions that deliver bytes in sequence order (32-bit wrap-around),
 * trim what was already delivered, queue what is early, and report what never came as gaps. */
#include "capture/tcp_reasm.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h> /* AF_INET */

#include "capture/mix64.h"

#define BUCKETS 16384
_Static_assert((BUCKETS & (BUCKETS - 1)) == 0, "bucket indexes are masked with BUCKETS - 1");

/* An early segment waiting for the hole before it; its captured bytes follow the struct. */
struct seg {
	struct seg *next; /* queue ordered by seq */
	uint32_t seq, len, cap_len;
	int fin;
	uint64_t ts_ns;
	uint8_t data[];
};

/* One direction of a connection. */
struct half {
	int known;        /* next is valid: the first sequence number was seen */
	uint32_t next;    /* sequence number of the next byte to deliver */
	int fin_done;     /* FIN delivered in order: nothing follows */
	struct seg *ooo;  /* out-of-order queue, ascending seq */
	unsigned n_ooo;
	uint64_t ooo_since_ns; /* arrival of the oldest segment waiting behind the first hole */
	/* holes given up since the previous event of the connection (reported with it) */
	uint64_t gap_bytes;
	uint32_t gaps;
};

struct conn {
	struct conn *next; /* hash chain */
	struct tv_tcp_conn_info info;
	uint32_t client_isn;
	int have_client_isn;
	uint64_t last_ns;
	struct half h[2]; /* by enum tv_tcp_dir */
};

struct tv_tcp_reasm {
	tv_tcp_event_fn fn;
	void *ctx;
	uint16_t server_port;
	tv_tcp_request_probe_fn probe; /* mid-stream pick-up without server_port, or NULL */
	uint32_t max_conns;
	size_t n_conns;
	uint64_t queued_bytes; /* captured bytes in all out-of-order queues */
	struct tv_tcp_reasm_stats stats;
	struct conn *buckets[BUCKETS];
};

/* Sequence comparisons modulo 2^32 (RFC 1982 style): negative when a is before b. */
static int32_t seq_diff(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b);
}

static uint64_t endpoint_hash(const struct tv_tcp_endpoint *e)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the address, then port and family */
	size_t i, n = e->family == AF_INET ? 4 : 16;

	for (i = 0; i < n; i++)
		h = (h ^ e->addr[i]) * 0x100000001b3ull;
	return tv_mix64(h ^ ((uint64_t)e->port << 16 | e->family));
}

/* Symmetric: both directions of a connection land in the same bucket. */
static uint64_t tuple_hash(const struct tv_tcp_endpoint *a, const struct tv_tcp_endpoint *b)
{
	return endpoint_hash(a) + endpoint_hash(b);
}

static int endpoint_eq(const struct tv_tcp_endpoint *a, const struct tv_tcp_endpoint *b)
{
	return a->port == b->port && a->family == b->family &&
	       memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

struct tv_tcp_reasm *tv_tcp_reasm_new(uint16_t server_port, uint32_t max_conns,
				      tv_tcp_event_fn fn, void *ctx)
{
	struct tv_tcp_reasm *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->fn = fn;
	t->ctx = ctx;
	t->server_port = server_port;
	t->max_conns = max_conns ? max_conns : TV_TCP_REASM_MAX_CONNS;
	return t;
}

void tv_tcp_reasm_set_request_probe(struct tv_tcp_reasm *t, tv_tcp_request_probe_fn probe)
{
	t->probe = probe;
}

static void half_clear(struct tv_tcp_reasm *t, struct half *h)
{
	while (h->ooo) {
		struct seg *s = h->ooo;

		h->ooo = s->next;
		t->queued_bytes -= s->cap_len;
		free(s);
	}
	h->n_ooo = 0;
}

static void conn_free(struct tv_tcp_reasm *t, struct conn *c)
{
	half_clear(t, &c->h[0]);
	half_clear(t, &c->h[1]);
	free(c);
}

void tv_tcp_reasm_free(struct tv_tcp_reasm *t)
{
	size_t b;

	if (!t)
		return;
	for (b = 0; b < BUCKETS; b++) {
		while (t->buckets[b]) {
			struct conn *c = t->buckets[b];

			t->buckets[b] = c->next;
			conn_free(t, c);
		}
	}
	free(t);
}

/* Hand an event out with the connection's pending gaps, which it then reports. */
static void emit(struct tv_tcp_reasm *t, struct conn *c, struct tv_tcp_event *ev)
{
	int d;

	ev->conn = &c->info;
	for (d = 0; d < 2; d++) {
		ev->gap_bytes[d] = c->h[d].gap_bytes;
		ev->gaps[d] = c->h[d].gaps;
		c->h[d].gap_bytes = 0;
		c->h[d].gaps = 0;
	}
	t->fn(t->ctx, ev);
}

/* A segment that starts at or before h->next: trims what was delivered already, delivers the
 * rest, and takes its FIN. */
static void take(struct tv_tcp_reasm *t, struct conn *c, int dir, uint32_t seq, uint32_t len,
		 uint32_t cap_len, const uint8_t *data, int fin, uint64_t ts_ns)
{
	struct half *h = &c->h[dir];
	uint32_t skip = h->next - seq; /* seq_diff(h->next, seq) >= 0 here */
	struct tv_tcp_event ev;

	if (skip > len) { /* entirely old (a FIN in it too: it sat at seq + len < next) */
		t->stats.retrans_bytes += len;
		return;
	}
	t->stats.retrans_bytes += skip;
	if (len > skip) {
		memset(&ev, 0, sizeof(ev));
		ev.kind = TV_TCP_EV_DATA;
		ev.ts_ns = ts_ns;
		ev.dir = (enum tv_tcp_dir)dir;
		ev.len = len - skip;
		ev.cap_len = cap_len > skip ? cap_len - skip : 0;
		ev.data = ev.cap_len ? data + skip : NULL;
		h->next += ev.len;
		emit(t, c, &ev);
	}
	if (fin) {
		h->fin_done = 1;
		h->next++; /* the FIN takes one sequence number */
		memset(&ev, 0, sizeof(ev));
		ev.kind = TV_TCP_EV_FIN;
		ev.ts_ns = ts_ns;
		ev.dir = (enum tv_tcp_dir)dir;
		emit(t, c, &ev);
	}
}

/* Deliver queued segments that the delivered bytes have reached. */
static void drain(struct tv_tcp_reasm *t, struct conn *c, int dir)
{
	struct half *h = &c->h[dir];

	while (h->ooo && !h->fin_done && seq_diff(h->ooo->seq, h->next) <= 0) {
		struct seg *s = h->ooo;

		h->ooo = s->next;
		h->n_ooo--;
		t->queued_bytes -= s->cap_len;
		take(t, c, dir, s->seq, s->len, s->cap_len, s->data, s->fin, s->ts_ns);
		free(s);
		if (h->ooo)
			h->ooo_since_ns = h->ooo->ts_ns;
	}
	if (h->fin_done)
		half_clear(t, h); /* nothing follows a FIN */
}

/* Give up the hole before the first queued segment: its bytes become a gap. */
static void force_hole(struct tv_tcp_reasm *t, struct conn *c, int dir)
{
	struct half *h = &c->h[dir];
	int32_t gap;

	if (!h->ooo)
		return;
	gap = seq_diff(h->ooo->seq, h->next);
	if (gap > 0) {
		h->gap_bytes += (uint32_t)gap;
		h->gaps++;
		t->stats.gaps++;
		t->stats.gap_bytes += (uint32_t)gap;
		h->next = h->ooo->seq;
	}
	drain(t, c, dir);
}

/* Queue an early segment (copying its captured bytes), ordered by seq. A copy that fails is
 * dropped: its bytes turn into a gap when the hole is forced. */
static void enqueue(struct tv_tcp_reasm *t, struct conn *c, int dir, const struct tv_tcp_seg *s,
		    uint32_t seq, int fin)
{
	struct half *h = &c->h[dir];
	struct seg *q, **pp;

	q = malloc(sizeof(*q) + s->cap_len);
	if (!q) {
		t->stats.oom++;
		return;
	}
	q->seq = seq;
	q->len = s->len;
	q->cap_len = s->cap_len;
	q->fin = fin;
	q->ts_ns = s->ts_ns;
	if (s->cap_len)
		memcpy(q->data, s->data, s->cap_len);
	for (pp = &h->ooo; *pp && seq_diff((*pp)->seq, seq) <= 0; pp = &(*pp)->next)
		;
	q->next = *pp;
	*pp = q;
	if (h->n_ooo++ == 0)
		h->ooo_since_ns = s->ts_ns;
	t->queued_bytes += s->cap_len;
	t->stats.ooo_segments++;
	while (h->ooo && (h->n_ooo > TV_TCP_REASM_MAX_OOO ||
			  t->queued_bytes > TV_TCP_REASM_MAX_QUEUED_BYTES))
		force_hole(t, c, dir);
}

static void half_input(struct tv_tcp_reasm *t, struct conn *c, int dir,
		       const struct tv_tcp_seg *s, uint32_t seq, int fin)
{
	struct half *h = &c->h[dir];

	if (!h->known) { /* handshake unseen for this direction: start at its first byte */
		h->known = 1;
		h->next = seq;
	}
	if (h->fin_done)
		return; /* a retransmission after the FIN: all of it was delivered */
	if (seq_diff(seq, h->next) > 0) {
		enqueue(t, c, dir, s, seq, fin);
		return;
	}
	take(t, c, dir, seq, s->len, s->cap_len, s->data, fin, s->ts_ns);
	drain(t, c, dir);
}

static struct conn **find_slot(struct tv_tcp_reasm *t, const struct tv_tcp_seg *s, int *dir)
{
	struct conn **pp = &t->buckets[tuple_hash(&s->src, &s->dst) & (BUCKETS - 1)];

	for (; *pp; pp = &(*pp)->next) {
		struct tv_tcp_conn_info *i = &(*pp)->info;

		if (endpoint_eq(&s->src, &i->client) && endpoint_eq(&s->dst, &i->server)) {
			*dir = TV_TCP_TO_SERVER;
			return pp;
		}
		if (endpoint_eq(&s->src, &i->server) && endpoint_eq(&s->dst, &i->client)) {
			*dir = TV_TCP_TO_CLIENT;
			return pp;
		}
	}
	return pp;
}

/* End a connection: force every remaining hole (each a gap), emit CLOSE, unlink and free. */
static void conn_end(struct tv_tcp_reasm *t, struct conn **slot, uint64_t ts_ns)
{
	struct conn *c = *slot;
	struct tv_tcp_event ev;
	int d;

	for (d = 0; d < 2; d++)
		while (c->h[d].ooo)
			force_hole(t, c, d);
	memset(&ev, 0, sizeof(ev));
	ev.kind = TV_TCP_EV_CLOSE;
	ev.ts_ns = ts_ns;
	emit(t, c, &ev);
	*slot = c->next;
	t->n_conns--;
	t->stats.conns_closed++;
	conn_free(t, c);
}

static struct conn *conn_open(struct tv_tcp_reasm *t, struct conn **slot,
			      const struct tv_tcp_endpoint *client,
			      const struct tv_tcp_endpoint *server, int midstream, uint64_t ts_ns)
{
	struct tv_tcp_event ev;
	struct conn *c;

	if (t->n_conns >= t->max_conns || !(c = calloc(1, sizeof(*c)))) {
		t->stats.conns_overflow++;
		return NULL;
	}
	c->info.client = *client;
	c->info.server = *server;
	c->info.gen = ts_ns;
	c->info.id = tv_mix64(tuple_hash(client, server) ^ tv_mix64(ts_ns));
	c->info.midstream = midstream;
	c->last_ns = ts_ns;
	c->next = NULL;
	*slot = c;
	t->n_conns++;
	t->stats.conns_opened++;
	memset(&ev, 0, sizeof(ev));
	ev.kind = TV_TCP_EV_OPEN;
	ev.ts_ns = ts_ns;
	emit(t, c, &ev);
	return c;
}

/* A segment of a connection not in the table: does it start one? */
static struct conn *conn_start(struct tv_tcp_reasm *t, struct conn **slot,
			       const struct tv_tcp_seg *s, int *dir)
{
	int syn = s->flags & TV_TCP_SYN, ack = s->flags & TV_TCP_ACK;

	if (s->flags & TV_TCP_RST)
		goto ignore;
	if (syn) { /* SYN: the sender is the client; SYN-ACK: the sender is the server */
		*dir = ack ? TV_TCP_TO_CLIENT : TV_TCP_TO_SERVER;
		return ack ? conn_open(t, slot, &s->dst, &s->src, 0, s->ts_ns)
			   : conn_open(t, slot, &s->src, &s->dst, 0, s->ts_ns);
	}
	/* mid-stream: only at a segment with payload (a bare ACK or the FIN of a connection
	 * that just ended must not start one), and only with a server port or at a segment
	 * that begins a request (the probe) */
	if (s->len == 0)
		goto ignore;
	if (!t->server_port) {
		if (!t->probe || s->cap_len == 0 || !t->probe(s->data, s->cap_len))
			goto ignore;
		*dir = TV_TCP_TO_SERVER;
		return conn_open(t, slot, &s->src, &s->dst, 1, s->ts_ns);
	}
	if (s->dst.port == t->server_port) {
		*dir = TV_TCP_TO_SERVER;
		return conn_open(t, slot, &s->src, &s->dst, 1, s->ts_ns);
	}
	if (s->src.port == t->server_port) {
		*dir = TV_TCP_TO_CLIENT;
		return conn_open(t, slot, &s->dst, &s->src, 1, s->ts_ns);
	}
ignore:
	t->stats.midstream_ignored++;
	return NULL;
}

void tv_tcp_reasm_segment(struct tv_tcp_reasm *t, const struct tv_tcp_seg *s)
{
	int syn = s->flags & TV_TCP_SYN, ack = s->flags & TV_TCP_ACK, fin = s->flags & TV_TCP_FIN;
	int dir = TV_TCP_TO_SERVER;
	struct conn **slot, *c;
	uint32_t seq;

	t->stats.segments++;
	slot = find_slot(t, s, &dir);
	c = *slot;
	/* a new SYN (another ISN) on a known 4-tuple: the port was reused, the old one ended
	 * without us seeing its end */
	if (c && syn && !ack && dir == TV_TCP_TO_SERVER && c->have_client_isn &&
	    c->client_isn != s->seq) {
		conn_end(t, slot, s->ts_ns);
		slot = find_slot(t, s, &dir);
		c = NULL;
	}
	if (!c && !(c = conn_start(t, slot, s, &dir)))
		return;
	c->last_ns = s->ts_ns;
	if (syn) {
		struct half *h = &c->h[dir];

		if (!h->known) { /* a retransmitted SYN changes nothing */
			h->known = 1;
			h->next = s->seq + 1;
		}
		if (!ack) {
			c->client_isn = s->seq;
			c->have_client_isn = 1;
		} else if (!c->h[TV_TCP_TO_SERVER].known) {
			/* SYN-ACK without the SYN: the ack says where the client's bytes start */
			c->h[TV_TCP_TO_SERVER].known = 1;
			c->h[TV_TCP_TO_SERVER].next = s->ack;
		}
	}
	if (s->flags & TV_TCP_RST) {
		conn_end(t, slot, s->ts_ns);
		return;
	}
	seq = s->seq + (syn ? 1 : 0); /* payload of a SYN (TCP Fast Open) follows the SYN */
	if (s->len || fin)
		half_input(t, c, dir, s, seq, fin);
	if (c->h[0].fin_done && c->h[1].fin_done)
		conn_end(t, slot, s->ts_ns);
}

void tv_tcp_reasm_expire(struct tv_tcp_reasm *t, uint64_t now_ns)
{
	size_t b;
	int d;

	for (b = 0; b < BUCKETS; b++) {
		struct conn **pp = &t->buckets[b];

		while (*pp) {
			struct conn *c = *pp;

			if (now_ns > c->last_ns && now_ns - c->last_ns > TV_TCP_REASM_IDLE_TIMEOUT_NS) {
				conn_end(t, pp, now_ns); /* *pp is now the next one */
				continue;
			}
			for (d = 0; d < 2; d++)
				while (c->h[d].ooo && now_ns > c->h[d].ooo_since_ns &&
				       now_ns - c->h[d].ooo_since_ns > TV_TCP_REASM_HOLE_TIMEOUT_NS)
					force_hole(t, c, d);
			if (c->h[0].fin_done && c->h[1].fin_done) {
				conn_end(t, pp, now_ns);
				continue;
			}
			pp = &c->next;
		}
	}
}

void tv_tcp_reasm_flush(struct tv_tcp_reasm *t, uint64_t now_ns)
{
	size_t b;

	for (b = 0; b < BUCKETS; b++)
		while (t->buckets[b])
			conn_end(t, &t->buckets[b], now_ns);
}

size_t tv_tcp_reasm_conns(const struct tv_tcp_reasm *t)
{
	return t->n_conns;
}

const struct tv_tcp_reasm_stats *tv_tcp_reasm_stats(const struct tv_tcp_reasm *t)
{
	return &t->stats;
}
