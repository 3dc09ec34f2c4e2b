/* Per-connection capture state: a hash table of live connections, keyed by the event's conn_id
 * (tracepoint: the kernel's tgid<<32|fd; sockfilter: a hash of the 4-tuple and its first-seen
 * time; a new generation replaces a stale entry), each with a request and a response parser and
 * a FIFO of requests waiting for their response. */
#include "capture/conn_table.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bpf/tv_event.h" /* the event record both sources make (tracepoint.h, sockfilter.h) */

/* buckets of the connection hash: the top BUCKET_BITS bits of a Fibonacci hash of the id */
#define BUCKET_BITS 12
#define BUCKETS (1u << BUCKET_BITS)
#define PENDING_INITIAL 4

/* A request seen on the connection, waiting for (or holding) its response. */
struct pending {
	uint64_t ts_ns, end_ns;
	uint64_t req_body_bytes, resp_body_bytes;
	unsigned status;
	uint32_t flags; /* TV_RECORD_FLAG_* */
	int req_done, resp_done, is_head;
	int is_connect; /* a 2xx answer makes the connection a tunnel (RFC 9110 §9.3.6) */
	/* a request that began in data the capture lost: holds its place in the FIFO so that
	 * its response, if seen, pairs with it and not with the next request; never emitted */
	int unseen;
	uint32_t pid;  /* the process whose event completed the request head, and its comm */
	char comm[17];
	char method[TV_HTTP_METHOD_BYTES];
	char *path; /* taken from the request parser (tv_http_msg.path), freed on release */
	char *host; /* the same (tv_http_msg.host), NULL when none */
	char http_version[4];
	char trace_id[TV_HTTP_TRACE_ID_BYTES];
	char span_id[TV_HTTP_SPAN_ID_BYTES];
	/* --headers: taken from the parsers' heads (see tv_http_msg.hdrs), owned here until the
	 * exchange is emitted or dropped */
	char *req_hdrs, *resp_hdrs;
	size_t req_hdrs_len, resp_hdrs_len;
	/* --body-bytes: copies of the parsers' body prefixes and content header values (taken
	 * from them), owned here like the headers */
	uint8_t *req_body, *resp_body;
	size_t req_body_len, resp_body_len;
	char *req_ctype, *resp_ctype, *req_cenc, *resp_cenc;
	/* the request parser's error counters when this request ended: if the connection
	 * switches with requests parsed behind this one, those were tunnel bytes, and what the
	 * parser counted of them is taken back */
	uint64_t req_errors, req_cut_limit, req_cut_copy, req_unparsed;
};

#define NO_SEQ UINT64_MAX

struct conn {
	struct conn *next; /* hash chain */
	struct tv_conn_table *t;
	uint64_t conn_id, gen;
	uint32_t pid; /* of the latest data event: a socket may move between processes */
	uint8_t role;
	char comm[17];
	char local[TV_ADDR_STR_BYTES], remote[TV_ADDR_STR_BYTES];
	/* FIFO of requests by sequence number: entries [q_head, q_tail) live at q[seq % q_cap] */
	struct pending *q;
	unsigned q_cap;
	uint64_t q_head, q_tail;
	uint64_t req_seq;       /* request being parsed, or NO_SEQ */
	uint64_t next_resp_seq; /* first request without a response head */
	uint64_t resp_seq;      /* request the response being parsed answers, or NO_SEQ */
	uint64_t close_ts;      /* a held CLOSE's time (ends at tv_conn_table_reap), or 0 */
	struct tv_http_parser req, resp;
	int tunnel; /* left HTTP/1.x: both parsers switched (counted in stats.tunnels) */
};

struct tv_conn_table {
	tv_exchange_fn fn;
	void *ctx;
	size_t n_conns;
	const struct tv_query_rules *query;
	size_t max_head_bytes;
	int keep_headers, keep_credentials;
	size_t body_bytes;
	size_t n_closing; /* connections with close_ts set */
	struct tv_conn_stats stats;
	struct conn *buckets[BUCKETS];
};

void tv_format_addr(char *buf, size_t len, uint16_t family, const uint8_t addr[16], uint16_t port)
{
	char ip[INET6_ADDRSTRLEN];

	if (family == AF_INET && inet_ntop(AF_INET, addr, ip, sizeof(ip)))
		snprintf(buf, len, "%s:%u", ip, port);
	else if (family == AF_INET6 && inet_ntop(AF_INET6, addr, ip, sizeof(ip)))
		snprintf(buf, len, "[%s]:%u", ip, port);
	else
		snprintf(buf, len, "?:%u", port);
}

static size_t bucket_of(uint64_t conn_id)
{
	return (size_t)((conn_id * 0x9e3779b97f4a7c15ull) >> (64 - BUCKET_BITS));
}

static struct pending *pending_at(struct conn *c, uint64_t seq)
{
	if (seq == NO_SEQ || seq < c->q_head || seq >= c->q_tail)
		return NULL; /* already emitted or dropped */
	return &c->q[seq % c->q_cap];
}

static void pending_release(struct pending *p)
{
	free(p->path);
	free(p->host);
	p->path = p->host = NULL;
	free(p->req_hdrs);
	free(p->resp_hdrs);
	p->req_hdrs = p->resp_hdrs = NULL;
	p->req_hdrs_len = p->resp_hdrs_len = 0;
	if (p->req_body)
		explicit_bzero(p->req_body, p->req_body_len);
	if (p->resp_body)
		explicit_bzero(p->resp_body, p->resp_body_len);
	free(p->req_body);
	free(p->resp_body);
	p->req_body = p->resp_body = NULL;
	p->req_body_len = p->resp_body_len = 0;
	free(p->req_ctype);
	free(p->resp_ctype);
	free(p->req_cenc);
	free(p->resp_cenc);
	p->req_ctype = p->resp_ctype = p->req_cenc = p->resp_cenc = NULL;
}

/* Take the message's content header values (set them NULL in m: the parser frees them no
 * more). */
static void take_content_headers(struct tv_http_msg *m, char **ctype, char **cenc)
{
	free(*ctype);
	free(*cenc);
	*ctype = m->content_type;
	*cenc = m->content_encoding;
	m->content_type = m->content_encoding = NULL;
}

/* A copy of the message's body prefix (on_done's message is the parser's to free); none when
 * out of memory: the body is an extra, the record goes on without it. */
static void copy_body(const struct tv_http_msg *m, uint8_t **dst, size_t *dst_len)
{
	if (!m->body || m->body_len == 0)
		return;
	free(*dst);
	*dst_len = 0;
	*dst = malloc(m->body_len);
	if (!*dst)
		return;
	memcpy(*dst, m->body, m->body_len);
	*dst_len = m->body_len;
}

/* Take the parser's header buffer (shrunk to its size) into *dst. */
static void take_headers(struct tv_http_msg *m, char **dst, size_t *dst_len)
{
	char *h;

	if (!m->hdrs)
		return;
	h = realloc(m->hdrs, m->hdrs_len ? m->hdrs_len : 1);
	if (!h)
		return; /* the parser still owns m->hdrs and frees it */
	free(*dst);
	*dst = h;
	*dst_len = m->hdrs_len;
	m->hdrs = NULL;
	m->hdrs_len = 0;
}

/* Hand p to the callback, then release what it owns. */
static void emit(struct conn *c, struct pending *p)
{
	struct tv_exchange x;

	memset(&x, 0, sizeof(x));
	x.ts_ns = p->ts_ns;
	x.end_ns = p->end_ns > p->ts_ns ? p->end_ns : p->ts_ns;
	x.pid = p->pid;
	x.status = p->status;
	x.flags = p->flags;
	x.conn_id = c->conn_id;
	x.conn_gen = c->gen;
	x.req_body_bytes = p->req_body_bytes;
	x.resp_body_bytes = p->resp_body_bytes;
	memcpy(x.comm, p->comm, sizeof(x.comm));
	memcpy(x.local, c->local, sizeof(x.local));
	memcpy(x.remote, c->remote, sizeof(x.remote));
	memcpy(x.method, p->method, sizeof(x.method));
	x.path = p->path ? p->path : "";
	x.host = p->host ? p->host : "";
	memcpy(x.http_version, p->http_version, sizeof(x.http_version));
	x.role = c->role == TV_ROLE_SERVER ? "server" : "client";
	memcpy(x.trace_id, p->trace_id, sizeof(x.trace_id));
	memcpy(x.span_id, p->span_id, sizeof(x.span_id));
	x.req_hdrs = p->req_hdrs;
	x.req_hdrs_len = p->req_hdrs_len;
	x.resp_hdrs = p->resp_hdrs;
	x.resp_hdrs_len = p->resp_hdrs_len;
	x.req_body = p->req_body;
	x.req_body_len = p->req_body_len;
	x.resp_body = p->resp_body;
	x.resp_body_len = p->resp_body_len;
	x.req_content_type = p->req_ctype;
	x.resp_content_type = p->resp_ctype;
	x.req_content_encoding = p->req_cenc;
	x.resp_content_encoding = p->resp_cenc;
	c->t->stats.exchanges++;
	c->t->fn(c->t->ctx, &x);
	pending_release(p);
}

/* Emit finished exchanges from the front, in request order. */
static void emit_ready(struct conn *c)
{
	struct pending *p;

	while ((p = pending_at(c, c->q_head)) != NULL && p->req_done && p->resp_done) {
		if (p->unseen)
			pending_release(p);
		else
			emit(c, p);
		c->q_head++;
	}
}

/* Make room for one more pending request: grow up to TV_CONN_MAX_PENDING, then drop the oldest. */
static int pending_reserve(struct conn *c)
{
	uint64_t n = c->q_tail - c->q_head;

	if (n < c->q_cap)
		return 0;
	if (c->q_cap < TV_CONN_MAX_PENDING) {
		unsigned cap = c->q_cap ? c->q_cap * 2 : PENDING_INITIAL;
		struct pending *q = calloc(cap, sizeof(*q));
		uint64_t s;

		if (!q)
			return -ENOMEM;
		for (s = c->q_head; s < c->q_tail; s++)
			q[s % cap] = c->q[s % c->q_cap];
		free(c->q);
		c->q = q;
		c->q_cap = cap;
		return 0;
	}
	/* an unseen request is already counted lost by the kernel */
	if (!c->q[c->q_head % c->q_cap].unseen)
		c->t->stats.exchanges_dropped++;
	pending_release(&c->q[c->q_head % c->q_cap]);
	c->q_head++;
	return 0;
}

static void on_req_head(void *ctx, struct tv_http_msg *m)
{
	struct conn *c = ctx;
	struct pending *p;

	c->req_seq = NO_SEQ;
	if (pending_reserve(c)) {
		c->t->stats.exchanges_dropped++;
		return;
	}
	p = &c->q[c->q_tail % c->q_cap];
	memset(p, 0, sizeof(*p));
	p->ts_ns = m->first_ts_ns;
	p->pid = c->pid;
	memcpy(p->comm, c->comm, sizeof(p->comm));
	memcpy(p->method, m->method, sizeof(p->method));
	p->path = m->path; /* taken: the parser frees them no more */
	p->host = m->host;
	m->path = m->host = NULL;
	memcpy(p->http_version, m->http_version, sizeof(p->http_version));
	memcpy(p->trace_id, m->trace_id, sizeof(p->trace_id));
	memcpy(p->span_id, m->span_id, sizeof(p->span_id));
	p->is_head = strcmp(m->method, "HEAD") == 0;
	p->is_connect = strcmp(m->method, "CONNECT") == 0;
	take_headers(m, &p->req_hdrs, &p->req_hdrs_len);
	if (c->t->body_bytes)
		take_content_headers(m, &p->req_ctype, &p->req_cenc);
	c->req_seq = c->q_tail++;
}

static void on_req_done(void *ctx, const struct tv_http_msg *m)
{
	struct conn *c = ctx;
	struct pending *p = pending_at(c, c->req_seq);

	c->req_seq = NO_SEQ;
	if (!p)
		return;
	p->req_done = 1;
	p->req_body_bytes = m->body_bytes;
	p->req_errors = c->req.errors;
	p->req_cut_limit = c->req.heads_cut_limit;
	p->req_cut_copy = c->req.heads_cut_copy;
	p->req_unparsed = c->req.heads_unparsed;
	if (c->t->body_bytes)
		copy_body(m, &p->req_body, &p->req_body_len);
	if (m->incomplete)
		p->flags |= TV_RECORD_FLAG_PARTIAL;
	if (m->cut)
		p->flags |= TV_RECORD_FLAG_CUT;
	emit_ready(c);
}

/* The connection leaves HTTP/1.x: the response to request seq (or, NO_SEQ, to one not seen)
 * switched it, or the HTTP/2 preface did. The response parser has switched itself (or is
 * told here); the request parser finishes the upgrading request if its body is still under
 * way (RFC 9110 §7.8), and whatever it parsed behind that request was the new protocol's
 * bytes: those requests are dropped without a record and its error counts of them taken
 * back. A failed upgrade (any other answer) never comes here: parsing goes on. */
static void conn_switch(struct conn *c, uint64_t seq)
{
	struct pending *up = pending_at(c, seq), *p;

	if (c->tunnel)
		return;
	c->tunnel = 1;
	c->t->stats.tunnels++;
	/* called from the response parser's on_head when a response switched: it switches
	 * itself at the end of that head (finish_current leaves it to do so) */
	tv_http_parser_switch(&c->resp, 1);
	if (up && c->req_seq == seq) {
		tv_http_parser_switch(&c->req, 1);
		return;
	}
	if (up && up->req_done) {
		c->req.errors = up->req_errors;
		c->req.heads_cut_limit = up->req_cut_limit;
		c->req.heads_cut_copy = up->req_cut_copy;
		c->req.heads_unparsed = up->req_unparsed;
	}
	tv_http_parser_switch(&c->req, 0);
	c->req_seq = NO_SEQ;
	if (!up)
		return;
	while (c->q_tail > seq + 1) {
		p = pending_at(c, c->q_tail - 1);
		if (p)
			pending_release(p);
		c->q_tail--;
	}
}

static void on_resp_head(void *ctx, struct tv_http_msg *m)
{
	struct conn *c = ctx;
	struct pending *p;

	if (c->next_resp_seq < c->q_head)
		c->next_resp_seq = c->q_head;
	p = pending_at(c, c->next_resp_seq);
	if (!p) { /* a response to a request we did not see (capture started mid-connection) */
		c->t->stats.responses_unpaired++;
		c->resp_seq = NO_SEQ;
		if (m->status == 101) /* switched whatever it answered */
			conn_switch(c, NO_SEQ);
		return;
	}
	c->resp_seq = c->next_resp_seq++;
	p->status = m->status;
	take_headers(m, &p->resp_hdrs, &p->resp_hdrs_len);
	if (c->t->body_bytes)
		take_content_headers(m, &p->resp_ctype, &p->resp_cenc);
	if (p->is_head)
		m->no_body = 1;
	/* a 2xx to CONNECT: the tunnel starts after this head, which has no body whatever it
	 * says (RFC 9110 §9.3.6); a 101 the parser knows itself */
	if (p->is_connect && m->status >= 200 && m->status < 300)
		m->upgraded = 1;
	if (m->status == 101 || m->upgraded)
		conn_switch(c, c->resp_seq);
}

static void on_resp_done(void *ctx, const struct tv_http_msg *m)
{
	struct conn *c = ctx;
	struct pending *p = pending_at(c, c->resp_seq);

	c->resp_seq = NO_SEQ;
	if (!p)
		return;
	p->resp_done = 1;
	p->resp_body_bytes = m->body_bytes;
	if (c->t->body_bytes)
		copy_body(m, &p->resp_body, &p->resp_body_len);
	if (m->incomplete)
		p->flags |= TV_RECORD_FLAG_PARTIAL;
	if (m->cut)
		p->flags |= TV_RECORD_FLAG_CUT;
	p->end_ns = m->last_ts_ns;
	emit_ready(c);
}

static const struct tv_http_callbacks req_cbs = { on_req_head, on_req_done };
static const struct tv_http_callbacks resp_cbs = { on_resp_head, on_resp_done };

struct tv_conn_table *tv_conn_table_new(tv_exchange_fn fn, void *ctx)
{
	struct tv_conn_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->fn = fn;
	t->ctx = ctx;
	t->max_head_bytes = TV_HTTP_DEFAULT_HEAD_BYTES;
	return t;
}

void tv_conn_table_set_head_limit(struct tv_conn_table *t, size_t max_head_bytes)
{
	t->max_head_bytes = max_head_bytes;
}

void tv_conn_table_set_body_bytes(struct tv_conn_table *t, size_t body_bytes)
{
	t->body_bytes = body_bytes;
}

void tv_conn_table_set_query_rules(struct tv_conn_table *t, const struct tv_query_rules *rules)
{
	t->query = rules;
}

void tv_conn_table_set_headers(struct tv_conn_table *t, int keep_headers, int keep_credentials)
{
	t->keep_headers = keep_headers;
	t->keep_credentials = keep_credentials;
}

static void conn_free(struct conn *c)
{
	struct pending *p;

	while ((p = pending_at(c, c->q_head)) != NULL) {
		pending_release(p);
		c->q_head++;
	}
	free(c->q);
	tv_http_parser_free(&c->req);
	tv_http_parser_free(&c->resp);
	free(c);
}

void tv_conn_table_free(struct tv_conn_table *t)
{
	size_t b;

	if (!t)
		return;
	for (b = 0; b < BUCKETS; b++) {
		while (t->buckets[b]) {
			struct conn *c = t->buckets[b];

			t->buckets[b] = c->next;
			conn_free(c);
		}
	}
	free(t);
}

static struct conn **find_slot(struct tv_conn_table *t, uint64_t conn_id)
{
	struct conn **pp = &t->buckets[bucket_of(conn_id)];

	while (*pp && (*pp)->conn_id != conn_id)
		pp = &(*pp)->next;
	return pp;
}

/* The connection ends: finish both parsers, then emit every request still pending with what
 * was seen of its response (status 0 when none). Unlinks and frees c. */
static void conn_close(struct tv_conn_table *t, struct conn **slot, uint64_t ts_ns)
{
	struct conn *c = *slot;
	struct pending *p;

	if (c->close_ts) /* a held CLOSE (see tv_conn_table_reap): the end is its time */
		ts_ns = c->close_ts;
	/* a message cut by the close still reaches on_done (marked incomplete): its request is
	 * emitted below with what was seen, so the return value adds nothing here */
	(void)tv_http_parser_close(&c->req, ts_ns);
	(void)tv_http_parser_close(&c->resp, ts_ns);
	while ((p = pending_at(c, c->q_head)) != NULL) {
		if (p->unseen) {
			pending_release(p);
			c->q_head++;
			continue;
		}
		if (!p->resp_done) {
			p->end_ns = ts_ns;
			/* a response head without its end was flagged PARTIAL by its parser */
			if (p->status == 0)
				p->flags |= TV_RECORD_FLAG_NO_RESPONSE;
		}
		emit(c, p);
		c->q_head++;
	}
	t->stats.parse_errors += c->req.errors + c->resp.errors;
	t->stats.heads_cut_limit += c->req.heads_cut_limit + c->resp.heads_cut_limit;
	t->stats.heads_cut_copy += c->req.heads_cut_copy + c->resp.heads_cut_copy;
	t->stats.requests_unparsed += c->req.heads_unparsed;
	t->stats.responses_unparsed += c->resp.heads_unparsed;
	t->stats.tunnel_bytes += c->req.tunnel_bytes + c->resp.tunnel_bytes;
	t->stats.conns_closed++;
	if (c->close_ts)
		t->n_closing--;
	*slot = c->next;
	t->n_conns--;
	conn_free(c);
}

static struct conn *conn_open(struct tv_conn_table *t, struct conn **slot,
			      const struct tv_event *e)
{
	struct conn *c;

	if (t->n_conns >= TV_CONN_MAX) {
		t->stats.conns_dropped++;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		t->stats.conns_dropped++;
		return NULL;
	}
	c->t = t;
	c->conn_id = e->conn_id;
	c->gen = e->conn_gen;
	c->pid = e->pid;
	c->role = e->role;
	memcpy(c->comm, e->comm, sizeof(e->comm));
	c->comm[sizeof(c->comm) - 1] = 0;
	tv_format_addr(c->local, sizeof(c->local), e->local.family, e->local.addr, e->local.port);
	tv_format_addr(c->remote, sizeof(c->remote), e->remote.family, e->remote.addr,
		       e->remote.port);
	c->req_seq = c->resp_seq = NO_SEQ;
	tv_http_parser_init(&c->req, TV_HTTP_REQUEST, &req_cbs, c);
	tv_http_parser_init(&c->resp, TV_HTTP_RESPONSE, &resp_cbs, c);
	c->req.query = t->query;
	c->req.max_head_bytes = c->resp.max_head_bytes = t->max_head_bytes;
	c->req.keep_headers = c->resp.keep_headers = t->keep_headers;
	c->req.keep_credentials = c->resp.keep_credentials = t->keep_credentials;
	c->req.body_max = c->resp.body_max = t->body_bytes;
	c->next = NULL;
	*slot = c;
	t->n_conns++;
	t->stats.conns_opened++;
	return c;
}

/* Skip a gap of bytes in one direction. unseen (TV_EV_FLAG_UNSEEN): the bytes include some
 * that no hooked syscall moved, so whether a message began in them is not known from the
 * kernel: it is taken that one did when the parser was between messages, or when the message
 * it was in ended inside the gap with bytes to spare (returns 1); the message the gap fell in
 * (pending at seq) is flagged TV_RECORD_FLAG_UNSEEN. */
static int skip_gap(struct conn *c, struct tv_http_parser *p, uint64_t seq, uint64_t bytes,
		    int unseen, uint64_t ts_ns)
{
	int inside = p->head_reported || p->head_len > 0;
	uint64_t rest = p->remaining;
	struct pending *q = pending_at(c, seq);

	if (unseen && inside && q)
		q->flags |= TV_RECORD_FLAG_UNSEEN;
	tv_http_parser_feed(p, "", 0, bytes, ts_ns);
	return unseen && (!inside || (!p->head_reported && bytes > rest));
}

/* Data of c was lost before event e (TV_EV_FLAG_GAP). The event says, per direction, how many
 * bytes and (tracepoint mode only: a sockfilter gap carries no head counts) how many messages
 * began in it. Each parser skips exactly those bytes (a body of
 * known length keeps its exact count; anywhere else it resyncs at the next message start).
 * Responses that began in the gap answered the oldest requests still waiting for one: first
 * those already pending, which are emitted with TV_RECORD_FLAG_LOST, then requests that began
 * in the gap too (both lost: nothing to emit, the kernel counted the request). Requests of the
 * gap left without a response there get an unseen place in the FIFO, so the response that
 * comes later pairs with it, not with the next request. (Requests come before their
 * responses, so this holds whatever the order inside the gap.) A message that began inside a
 * lost event (after another one: pipelining) is not counted by the kernel; pairs may then
 * shift until the connection ends. Unhooked bytes (TV_EV_FLAG_UNSEEN) count one message per
 * direction where skip_gap says one began (one request, counted in requests_unhooked, and one
 * response); a pipelined burst of several moved that way shifts pairs as above. */
static void apply_gap(struct conn *c, const struct tv_event *e)
{
	int server = c->role == TV_ROLE_SERVER;
	int unseen = (e->flags & TV_EV_FLAG_UNSEEN) != 0;
	uint64_t req_bytes = server ? e->lost_in_bytes : e->lost_out_bytes;
	uint64_t resp_bytes = server ? e->lost_out_bytes : e->lost_in_bytes;
	uint32_t req_heads = server ? e->lost_in_heads : e->lost_out_heads;
	uint32_t resp_heads = server ? e->lost_out_heads : e->lost_in_heads;
	uint32_t req_unhooked = 0;
	int began;
	struct pending *p;

	c->t->stats.gaps++;
	if (unseen)
		c->t->stats.unseen_gaps++;
	if (c->tunnel) {
		/* what the gap held was the tunnel's, not HTTP/1.x messages: counted as its bytes */
		if (req_bytes)
			tv_http_parser_feed(&c->req, "", 0, req_bytes, e->ts_ns);
		if (resp_bytes)
			tv_http_parser_feed(&c->resp, "", 0, resp_bytes, e->ts_ns);
		return;
	}
	if (req_bytes) {
		began = skip_gap(c, &c->req, c->req_seq, req_bytes, unseen, e->ts_ns);
		if (began && !req_heads) {
			req_heads = req_unhooked = 1;
			c->t->stats.requests_unhooked++;
		}
	}
	if (resp_bytes) {
		began = skip_gap(c, &c->resp, c->resp_seq, resp_bytes, unseen, e->ts_ns);
		if (began && !resp_heads)
			resp_heads = 1;
	}
	if (c->next_resp_seq < c->q_head)
		c->next_resp_seq = c->q_head;
	for (; resp_heads > 0 && (p = pending_at(c, c->next_resp_seq)) != NULL; resp_heads--) {
		c->next_resp_seq++;
		p->resp_done = 1;
		p->end_ns = e->ts_ns;
		if (!p->unseen) {
			p->flags |= TV_RECORD_FLAG_LOST | (unseen ? TV_RECORD_FLAG_UNSEEN : 0);
			c->t->stats.responses_lost++;
		}
	}
	/* the remaining lost responses answered the first requests of the gap */
	req_heads = req_heads > resp_heads ? req_heads - resp_heads : 0;
	/* the kernel counted the ring-lost ones; requests_unhooked the other */
	c->t->stats.requests_unseen += req_heads > req_unhooked ? req_heads - req_unhooked : 0;
	emit_ready(c);
	/* places for the rest, as far as the FIFO has room: an unseen request never pushes out
	 * a request that will be emitted (a response beyond them then goes unpaired, counted) */
	for (; req_heads > 0 && c->q_tail - c->q_head < TV_CONN_MAX_PENDING; req_heads--) {
		if (pending_reserve(c))
			break;
		p = &c->q[c->q_tail % c->q_cap];
		memset(p, 0, sizeof(*p));
		p->unseen = p->req_done = 1;
		p->ts_ns = e->ts_ns;
		c->q_tail++;
	}
}

void tv_conn_table_event(struct tv_conn_table *t, const void *data, size_t len)
{
	const struct tv_event *e = data;
	struct conn **slot;
	struct conn *c;
	struct tv_http_parser *p;

	if (len < TV_EVENT_HEADER_BYTES || e->payload_len > TV_CAPTURE_PAYLOAD_BYTES ||
	    len < TV_EVENT_HEADER_BYTES + e->payload_len ||
	    (e->role != TV_ROLE_SERVER && e->role != TV_ROLE_CLIENT)) {
		t->stats.bad_events++;
		return;
	}
	slot = find_slot(t, e->conn_id);
	if (*slot && (*slot)->gen != e->conn_gen) {
		/* the fd was reused and we missed the close (ring overflow): end the old one */
		conn_close(t, slot, e->ts_ns);
		slot = find_slot(t, e->conn_id);
	}
	c = *slot;
	switch (e->kind) {
	case TV_EV_ACCEPT:
	case TV_EV_CONNECT:
		if (!c)
			conn_open(t, slot, e);
		return;
	case TV_EV_DATA_IN:
	case TV_EV_DATA_OUT:
		/* the accept may have been lost: the event carries all a connection needs */
		if (!c) {
			if (!(c = conn_open(t, slot, e)))
				return;
			/* open before the capture (or its accept lost): a message may be under
			 * way, whose tail must not be taken for the start of the next one */
			tv_http_parser_join_midstream(&c->req);
			tv_http_parser_join_midstream(&c->resp);
		}
		/* a socket may move between processes (fork, SCM_RIGHTS): records carry the
		 * process that did the syscall */
		c->pid = e->pid;
		memcpy(c->comm, e->comm, sizeof(e->comm));
		if (e->flags & TV_EV_FLAG_GAP)
			apply_gap(c, e);
		/* server: inbound is the request; client: outbound is the request */
		if ((e->kind == TV_EV_DATA_IN) == (c->role == TV_ROLE_SERVER))
			p = &c->req;
		else
			p = &c->resp;
		tv_http_parser_feed(p, e->payload, e->payload_len, e->bytes, e->ts_ns);
		if (c->req.switched && !c->tunnel) /* the HTTP/2 preface: no exchange switched */
			conn_switch(c, NO_SEQ);
		return;
	case TV_EV_FIN_OUT:
	case TV_EV_FIN_IN:
		/* one direction ended while the socket may stay open (shutdown(SHUT_WR), or a
		 * close the peer has not answered yet): a body delimited by the close ends now */
		if (!c)
			return;
		if (e->flags & TV_EV_FLAG_GAP)
			apply_gap(c, e);
		if ((e->kind == TV_EV_FIN_IN) == (c->role == TV_ROLE_SERVER))
			p = &c->req;
		else
			p = &c->resp;
		/* what it left unfinished stays pending: the CLOSE emits it */
		(void)tv_http_parser_close(p, e->ts_ns);
		return;
	case TV_EV_CLOSE:
		if (!c)
			return;
		if (e->flags & TV_EV_FLAG_GAP)
			apply_gap(c, e);
		if (e->flags & TV_EV_FLAG_HELD) {
			if (!c->close_ts)
				t->n_closing++;
			c->close_ts = e->ts_ns ? e->ts_ns : 1;
			return;
		}
		conn_close(t, slot, e->ts_ns);
		return;
	default:
		t->stats.bad_events++;
		return;
	}
}

void tv_conn_table_reap(struct tv_conn_table *t, uint64_t now_ns)
{
	size_t b;

	for (b = 0; b < BUCKETS && t->n_closing; b++) {
		struct conn **pp = &t->buckets[b];

		while (*pp) {
			uint64_t ts = (*pp)->close_ts;

			if (ts && ts + TV_CONN_CLOSE_GRACE_NS <= now_ns)
				conn_close(t, pp, now_ns);
			else
				pp = &(*pp)->next;
		}
	}
}

void tv_conn_table_flush(struct tv_conn_table *t, uint64_t now_ns)
{
	size_t b;

	for (b = 0; b < BUCKETS; b++)
		while (t->buckets[b])
			conn_close(t, &t->buckets[b], now_ns);
}

const struct tv_conn_stats *tv_conn_table_stats(const struct tv_conn_table *t)
{
	return &t->stats;
}
