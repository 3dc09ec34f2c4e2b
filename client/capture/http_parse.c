/* Incremental HTTP/1.x parser (one direction of one connection). Heads are buffered until the
 * blank line, reduced to the few fields a record needs, then wiped; bodies are only counted, so
 * a truncated payload copy costs nothing there. See http_parse.h for the contract. */
#define _GNU_SOURCE /* memrchr */
#include "capture/http_parse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "capture/query_redact.h"

enum {
	ST_IDLE = 0,   /* between messages */
	ST_HEAD,       /* buffering start line + headers */
	ST_BODY,       /* Content-Length body: remaining bytes */
	ST_CHUNK_SIZE, /* reading a chunk-size line */
	ST_CHUNK_DATA, /* inside a chunk: remaining bytes */
	ST_CHUNK_CRLF, /* CRLF after chunk data */
	ST_TRAILER,    /* trailer lines after the last chunk */
	ST_BODY_EOF,   /* response body delimited by the connection closing */
	ST_LOST,       /* out of sync: skip until a recognised message start */
	ST_UPGRADED,   /* the connection left HTTP/1.x (tv_http_parser_switch): bytes counted */
};

/* The HTTP/2 connection preface (RFC 9113 §3.4) up to its first blank line, where the head
 * parser stops: "PRI * HTTP/2.0" then "SM"; sent first on a prior-knowledge h2c connection. */
static const char H2_PREFACE_HEAD[] = "PRI * HTTP/2.0\r\n\r\n";
#define H2_PREFACE_HEAD_BYTES (sizeof(H2_PREFACE_HEAD) - 1)

void tv_http_parser_init(struct tv_http_parser *p, enum tv_http_kind kind,
			 const struct tv_http_callbacks *cb, void *ctx)
{
	memset(p, 0, sizeof(*p));
	p->max_head_bytes = TV_HTTP_DEFAULT_HEAD_BYTES;
	p->kind = kind;
	p->cb = cb;
	p->ctx = ctx;
	p->state = ST_IDLE;
}

size_t tv_http_head_limit(size_t payload_bytes)
{
	return payload_bytes > TV_HTTP_DEFAULT_HEAD_BYTES ? payload_bytes
							  : TV_HTTP_DEFAULT_HEAD_BYTES;
}

/* The head buffer is wiped whatever happens to it: header values may be credentials. */
static void head_release(struct tv_http_parser *p, int keep)
{
	if (p->head)
		explicit_bzero(p->head, p->head_len);
	p->head_len = 0;
	if (keep && p->head_cap <= TV_HTTP_HEAD_KEEP_BYTES)
		return;
	free(p->head);
	p->head = NULL;
	p->head_cap = 0;
}

static void drop_headers(struct tv_http_msg *m);

/* What a message owns besides its headers: the path, the body prefix and the content
 * header values (bodies may hold personal data: wiped before they are freed). */
static void drop_msg_buffers(struct tv_http_msg *m)
{
	free(m->path);
	free(m->host);
	m->path = m->host = NULL;
	if (m->body)
		explicit_bzero(m->body, m->body_len);
	free(m->body);
	m->body = NULL;
	m->body_len = 0;
	free(m->content_type);
	free(m->content_encoding);
	m->content_type = m->content_encoding = NULL;
}

void tv_http_parser_free(struct tv_http_parser *p)
{
	head_release(p, 0);
	drop_headers(&p->msg);
	drop_msg_buffers(&p->msg);
}

void tv_http_parser_join_midstream(struct tv_http_parser *p)
{
	p->state = ST_LOST;
}

/* ---- --headers: header lines kept in msg.hdrs ---- */

static const char *const CREDENTIAL_HEADERS[] = { "authorization", "proxy-authorization",
						   "cookie", "set-cookie" };

int tv_http_is_credential_header(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(CREDENTIAL_HEADERS) / sizeof(CREDENTIAL_HEADERS[0]); i++)
		if (strlen(CREDENTIAL_HEADERS[i]) == len &&
		    strncasecmp(name, CREDENTIAL_HEADERS[i], len) == 0)
			return 1;
	return 0;
}

size_t tv_http_header_count(const char *hdrs, size_t len)
{
	size_t nul = 0;

	for (size_t i = 0; i < len; i++)
		nul += hdrs[i] == '\0';
	return nul / 2;
}

/* Append n bytes of s and a NUL; bytes outside printable ASCII become '?' so the stored
 * strings are valid UTF-8 whatever the peer sent. The head is at most max_head_bytes, which
 * bounds the buffer. */
static void hdr_put(char *dst, size_t *len, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		dst[(*len)++] = (c >= 0x20 && c < 0x7f) || c == '\t' ? (char)c : '?';
	}
	dst[(*len)++] = '\0';
}

static void keep_header(struct tv_http_parser *p, const char *name, size_t name_len,
			const char *v, size_t vlen)
{
	struct tv_http_msg *m = &p->msg;
	int redact = !p->keep_credentials && tv_http_is_credential_header(name, name_len);

	if (redact) {
		v = TV_HTTP_REDACTED;
		vlen = strlen(TV_HTTP_REDACTED);
	}
	if (!m->hdrs) {
		/* every pair fits: name + value + 2 NULs <= its line + ":" + CRLF, and the
		 * redacted value adds at most its own length per line */
		m->hdrs = malloc(p->max_head_bytes * 2);
		if (!m->hdrs)
			return; /* headers are an extra: the record goes on without them */
		m->hdrs_len = 0;
	}
	if (m->hdrs_len + name_len + vlen + 2 > p->max_head_bytes * 2)
		return;
	hdr_put(m->hdrs, &m->hdrs_len, name, name_len);
	hdr_put(m->hdrs, &m->hdrs_len, v, vlen);
}

static void drop_headers(struct tv_http_msg *m)
{
	if (m->hdrs)
		explicit_bzero(m->hdrs, m->hdrs_len); /* values may be credentials (--no-redact) */
	free(m->hdrs);
	m->hdrs = NULL;
	m->hdrs_len = 0;
}

/* From now on every byte fed is tunnel traffic. */
static void enter_tunnel(struct tv_http_parser *p)
{
	p->switch_after_msg = 0;
	p->switched = 1;
	p->state = ST_UPGRADED;
}

void tv_http_parser_switch(struct tv_http_parser *p, int finish_current)
{
	if (p->switched)
		return;
	if (finish_current && p->head_reported) {
		p->switch_after_msg = 1; /* msg_done switches */
		return;
	}
	head_release(p, 1);
	drop_headers(&p->msg);
	p->head_reported = 0;
	enter_tunnel(p);
}

static void msg_done(struct tv_http_parser *p, uint64_t ts_ns)
{
	p->msg.last_ts_ns = ts_ns;
	p->head_reported = 0;
	if (p->switch_after_msg)
		enter_tunnel(p);
	else
		p->state = ST_IDLE;
	if (p->cb && p->cb->on_done)
		p->cb->on_done(p->ctx, &p->msg);
}

/* Lose sync. A message whose head was already reported still completes (marked incomplete) so
 * the exchange it belongs to is not left dangling; its body count is a lower bound. */
static void lose_sync(struct tv_http_parser *p, uint64_t ts_ns)
{
	p->errors++;
	if (p->head_reported) {
		p->msg.incomplete = 1;
		msg_done(p, ts_ns);
	}
	head_release(p, 1);
	if (p->state != ST_UPGRADED) /* the message that switched the connection ended */
		p->state = ST_LOST;
}

static int is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int tv_http_is_request_start(const void *data, size_t n)
{
	const uint8_t *d = data;
	size_t i;

	for (i = 0; i < n && i < TV_HTTP_METHOD_BYTES && d[i] >= 'A' && d[i] <= 'Z'; i++)
		;
	return i >= 3 && i < n && i < TV_HTTP_METHOD_BYTES && d[i] == ' ';
}

/* Does d look like the first bytes of a message of p's kind? Used to resync after ST_LOST. */
static int looks_like_start(const struct tv_http_parser *p, const uint8_t *d, size_t n)
{
	if (p->kind == TV_HTTP_RESPONSE)
		return n >= 7 && memcmp(d, "HTTP/1.", 7) == 0;
	return tv_http_is_request_start(d, n);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* W3C traceparent "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>"; ids of all zeros
 * are invalid by the spec. Leaves the ids empty when v does not match. */
static void parse_traceparent(struct tv_http_msg *m, const char *v, size_t n)
{
	static const char zeros[32] = "00000000000000000000000000000000";
	size_t i;

	if (n < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || (n > 55 && v[55] != '-'))
		return;
	for (i = 0; i < 55; i++) {
		if (i == 2 || i == 35 || i == 52)
			continue;
		if (hexval((unsigned char)v[i]) < 0 || (v[i] >= 'A' && v[i] <= 'F'))
			return;
	}
	if (v[0] == 'f' && v[1] == 'f')
		return; /* version ff is forbidden */
	if (memcmp(v + 3, zeros, 32) == 0 || memcmp(v + 36, zeros, 16) == 0)
		return;
	memcpy(m->trace_id, v + 3, 32);
	m->trace_id[32] = 0;
	memcpy(m->span_id, v + 36, 16);
	m->span_id[16] = 0;
}

/* Strict decimal; -1 on anything else or overflow. */
static int parse_u64(const char *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;
	size_t i;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9' || x > (UINT64_MAX - 9) / 10)
			return -1;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

/* The target t[0, n) as the record keeps it (tv_query_redact with the parser's query rules),
 * malloc'd into m->path (NULL when out of memory: the record then has an empty path, flagged
 * cut). */
static void set_path(struct tv_http_msg *m, const char *t, size_t n,
		     const struct tv_query_rules *query)
{
	size_t len = tv_query_redact(query, t, n, NULL, 0);

	free(m->path);
	m->path = malloc(len + 1);
	if (m->path)
		tv_query_redact(query, t, n, m->path, len + 1);
	else
		m->cut = 1;
}

/* A copy of s[0, n) into *dst unless *dst is set already (the first source wins: RFC 9112
 * §3.2.2 puts the target's authority before Host, and a second Host is invalid anyway). Out of
 * memory leaves it NULL: host is an extra, the record goes on without it. */
static void set_host(char **dst, const char *s, size_t n)
{
	if (*dst || n == 0)
		return;
	*dst = malloc(n + 1);
	if (*dst) {
		memcpy(*dst, s, n);
		(*dst)[n] = '\0';
	}
}

/* The host a request target names: the authority of absolute-form (RFC 9112 §3.2.2,
 * "scheme://[userinfo@]host[:port]..."; userinfo dropped) or, for CONNECT, the authority-form
 * target itself (§3.2.3). Origin-form and "*" name none. */
static void host_of_target(struct tv_http_msg *m, const char *t, size_t n)
{
	size_t a, e, host;

	if (strcmp(m->method, "CONNECT") == 0)
		set_host(&m->host, t, n);
	else if (tv_url_authority(t, n, &a, &e, &host))
		set_host(&m->host, t + host, e - host);
}

/* The method and the start of the target of a request line cut before its end (l[0, n), no
 * line end): "METHOD SP target-prefix". Returns 0, or -1 when not even that is there. */
static int parse_request_line_prefix(struct tv_http_msg *m, const char *l, size_t n,
				     const struct tv_query_rules *query)
{
	size_t i = 0, tn, a, e, host;
	const char *t;

	while (i < n && is_tchar((unsigned char)l[i]))
		i++;
	if (i == 0 || i >= TV_HTTP_METHOD_BYTES || i + 1 >= n || l[i] != ' ' || l[i + 1] == ' ')
		return -1;
	memcpy(m->method, l, i);
	m->method[i] = 0;
	t = l + i + 1;
	tn = n - i - 1;
	/* cut inside an absolute-form target's authority: its first bytes may be a userinfo
	 * ("user:password@", "token@") whose '@' the cut hid, which tv_query_redact cannot
	 * then tell from a host: the authority is left out unless nothing is redacted */
	if ((!query || (query->mode != TV_QUERY_KEEP && !query->keep_userinfo)) &&
	    tv_url_authority(t, tn, &a, &e, &host) &&
	    e == tn)
		tn = a;
	set_path(m, t, tn, query);
	return 0;
}

static int parse_request_line(struct tv_http_msg *m, const char *l, size_t n,
			      const struct tv_query_rules *query)
{
	size_t i = 0, t0;

	while (i < n && is_tchar((unsigned char)l[i]))
		i++;
	if (i == 0 || i >= TV_HTTP_METHOD_BYTES || i >= n || l[i] != ' ')
		return -1;
	memcpy(m->method, l, i);
	m->method[i] = 0;
	t0 = ++i;
	while (i < n && l[i] != ' ')
		i++;
	if (i == t0 || i >= n || n - i - 1 != 8 || memcmp(l + i + 1, "HTTP/1.", 7) != 0)
		return -1;
	/* HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3) */
	if (l[i + 8] < '0' || l[i + 8] > '9')
		return -1;
	memcpy(m->http_version, l + i + 6, 3);
	m->http_version[3] = '\0';
	/* the query may carry tokens: redacted (or dropped) as the capture was told */
	set_path(m, l + t0, i - t0, query);
	host_of_target(m, l + t0, i - t0);
	return 0;
}

static int parse_status_line(struct tv_http_msg *m, const char *l, size_t n)
{
	if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[8] != ' ' || (n > 12 && l[12] != ' '))
		return -1;
	if (l[9] < '1' || l[9] > '9' || l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9')
		return -1;
	m->status = (unsigned)((l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0'));
	return 0;
}

/* A malloc'd NUL-terminated copy of a header value, bytes outside printable ASCII (and tab)
 * as '?' like the kept headers; NULL when out of memory (the record goes without it). */
static char *value_dup(const char *v, size_t n)
{
	char *d = malloc(n + 1);
	size_t len = 0;

	if (!d)
		return NULL;
	hdr_put(d, &len, v, n);
	return d;
}

struct framing {
	int chunked;
	int has_length;
	uint64_t length;
};

/* Parse the buffered head into p->msg and fr. Returns 0 or -1 when malformed. */
static int parse_head(struct tv_http_parser *p, struct framing *fr)
{
	const char *h = p->head, *end = p->head + p->head_len;
	const char *eol;
	int first = 1;

	memset(fr, 0, sizeof(*fr));
	while (h < end && (eol = memchr(h, '\n', (size_t)(end - h))) != NULL) {
		size_t n = (size_t)(eol - h);
		const char *colon, *v;
		size_t name_len, vlen;

		if (n > 0 && h[n - 1] == '\r')
			n--;
		if (first) {
			int rc = p->kind == TV_HTTP_REQUEST ? parse_request_line(&p->msg, h, n, p->query)
							    : parse_status_line(&p->msg, h, n);
			if (rc)
				return -1;
			first = 0;
		} else if (n > 0) {
			colon = memchr(h, ':', n);
			if (!colon || colon == h)
				return -1;
			name_len = (size_t)(colon - h);
			v = colon + 1;
			vlen = n - name_len - 1;
			while (vlen > 0 && (*v == ' ' || *v == '\t'))
				v++, vlen--;
			while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
				vlen--;
			if (name_len == 14 && strncasecmp(h, "content-length", 14) == 0) {
				uint64_t len;

				if (parse_u64(v, vlen, &len) || (fr->has_length && len != fr->length))
					return -1; /* conflicting lengths: request smuggling territory */
				fr->has_length = 1;
				fr->length = len;
			} else if (name_len == 17 && strncasecmp(h, "transfer-encoding", 17) == 0) {
				/* chunked must be the final coding; checking its presence is enough here */
				if (vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0)
					fr->chunked = 1;
			} else if (name_len == 11 && strncasecmp(h, "traceparent", 11) == 0) {
				parse_traceparent(&p->msg, v, vlen);
			} else if (name_len == 4 && strncasecmp(h, "host", 4) == 0 &&
				   p->kind == TV_HTTP_REQUEST) {
				set_host(&p->msg.host, v, vlen);
			} else if (p->body_max && name_len == 12 && !p->msg.content_type &&
				   strncasecmp(h, "content-type", 12) == 0) {
				p->msg.content_type = value_dup(v, vlen);
			} else if (p->body_max && name_len == 16 && !p->msg.content_encoding &&
				   strncasecmp(h, "content-encoding", 16) == 0) {
				p->msg.content_encoding = value_dup(v, vlen);
			}
			if (p->keep_headers)
				keep_header(p, h, name_len, v, vlen);
		}
		h = eol + 1;
	}
	return first ? -1 : 0;
}

/* The blank line arrived: decide how the body is framed and report the head. */
static void head_complete(struct tv_http_parser *p, uint64_t ts_ns)
{
	struct framing fr;
	int rc;

	if (p->kind == TV_HTTP_REQUEST && p->head_len == H2_PREFACE_HEAD_BYTES &&
	    p->msgs_started == 1 && memcmp(p->head, H2_PREFACE_HEAD, H2_PREFACE_HEAD_BYTES) == 0) {
		/* prior-knowledge HTTP/2 (RFC 9113 §3.4): the whole connection is HTTP/2, which
		 * this parser does not read; not a message, not an error */
		head_release(p, 1);
		enter_tunnel(p);
		return;
	}
	rc = parse_head(p, &fr);
	head_release(p, 1); /* header values (cookies, tokens) are not kept */
	if (rc) {
		p->heads_unparsed++;
		drop_headers(&p->msg);
		lose_sync(p, ts_ns);
		return;
	}
	if (p->kind == TV_HTTP_RESPONSE && p->msg.status >= 100 && p->msg.status < 200 &&
	    p->msg.status != 101) {
		drop_headers(&p->msg);
		p->state = ST_IDLE; /* interim (100 Continue): the final response follows */
		return;
	}
	p->head_reported = 1;
	if (p->cb && p->cb->on_head)
		p->cb->on_head(p->ctx, &p->msg);
	drop_headers(&p->msg);
	if (p->kind == TV_HTTP_RESPONSE && (p->msg.status == 101 || p->msg.upgraded)) {
		/* the new protocol starts right after this head (RFC 9110 §7.8, §9.3.6): no
		 * body, whatever the head says of one */
		p->switch_after_msg = 1;
		msg_done(p, ts_ns);
		return;
	}
	if (p->msg.no_body ||
	    (p->kind == TV_HTTP_RESPONSE && (p->msg.status == 204 || p->msg.status == 304))) {
		msg_done(p, ts_ns);
	} else if (fr.chunked) {
		p->state = ST_CHUNK_SIZE;
		p->line_len = 0;
	} else if (fr.has_length) {
		p->remaining = fr.length;
		p->state = ST_BODY;
		if (fr.length == 0)
			msg_done(p, ts_ns);
	} else if (p->kind == TV_HTTP_REQUEST) {
		msg_done(p, ts_ns); /* a request without framing headers has no body */
	} else {
		p->state = ST_BODY_EOF;
	}
}

/* The head cannot be read whole: its copy was cut (the syscall moved more than was copied) or
 * it outgrew the buffer. Its complete lines usually hold the start line, so the message is
 * still reported, marked incomplete, instead of vanishing: that keeps a request paired with its
 * own response (a lost request would shift every later pairing on the connection). The rest of
 * the message is skipped until the next recognised start; its body count is a lower bound. */
enum head_cut_reason { CUT_LIMIT, CUT_COPY };

static void head_cut(struct tv_http_parser *p, enum head_cut_reason why, uint64_t ts_ns)
{
	struct framing fr;
	const char *last_nl = p->head ? memrchr(p->head, '\n', p->head_len) : NULL;
	const char *eol = p->head ? memchr(p->head, '\n', p->head_len) : NULL;
	size_t full_len = p->head_len; /* all of it is wiped, the cut line included */
	int rc = -1, switching = 0;

	if (!last_nl && p->kind == TV_HTTP_REQUEST && p->head_len > 0) {
		/* the request line itself is cut (a very long target): its first bytes */
		rc = parse_request_line_prefix(&p->msg, p->head, p->head_len, p->query);
	} else if (last_nl) {
		/* the complete lines only: a cut header line is not guessed at */
		p->head_len = (size_t)(last_nl - p->head) + 1;
		rc = parse_head(p, &fr);
		if (rc) { /* a malformed header line: the start line alone still says enough */
			size_t n = (size_t)(eol - p->head);

			if (n > 0 && p->head[n - 1] == '\r')
				n--;
			memset(&p->msg.trace_id, 0, sizeof(p->msg.trace_id));
			memset(&p->msg.span_id, 0, sizeof(p->msg.span_id));
			rc = p->kind == TV_HTTP_REQUEST
				     ? parse_request_line(&p->msg, p->head, n, p->query)
				     : parse_status_line(&p->msg, p->head, n);
		}
	}
	/* an interim 1xx is not a message of its own; a 101 switches the connection however
	 * much of its head was seen */
	if (rc == 0 && (p->kind == TV_HTTP_REQUEST || p->msg.status >= 200 ||
			p->msg.status == 101)) {
		if (why == CUT_LIMIT)
			p->heads_cut_limit++;
		else
			p->heads_cut_copy++;
		p->msg.cut = 1;
		p->head_reported = 1;
		if (p->cb && p->cb->on_head)
			p->cb->on_head(p->ctx, &p->msg);
		switching = p->kind == TV_HTTP_RESPONSE &&
			    (p->msg.status == 101 || p->msg.upgraded);
	} else if (rc != 0) {
		p->heads_unparsed++; /* not even a start line: counted, not reported */
	}
	drop_headers(&p->msg); /* the complete lines of a cut head, or nothing */
	p->head_len = full_len;
	head_release(p, 1);
	if (switching) { /* the rest is the new protocol's: nothing to resync to */
		p->switch_after_msg = 1;
		msg_done(p, ts_ns);
		return;
	}
	lose_sync(p, ts_ns); /* completes the reported message, marked incomplete */
}

static void start_message(struct tv_http_parser *p, uint64_t ts_ns)
{
	drop_headers(&p->msg); /* none is left here; kept as the rule that frees them */
	drop_msg_buffers(&p->msg);
	memset(&p->msg, 0, sizeof(p->msg));
	p->msg.first_ts_ns = ts_ns;
	p->head_len = 0;
	p->body_gap = 0;
	p->msgs_started++;
	p->state = ST_HEAD;
}

/* --body-bytes: keep n more body bytes d[0, n) (decoded: chunk data only) while the kept
 * prefix is contiguous from the body's start and shorter than body_max. */
static void keep_body(struct tv_http_parser *p, const uint8_t *d, size_t n)
{
	struct tv_http_msg *m = &p->msg;
	size_t k;

	if (p->body_gap || m->body_len >= p->body_max || n == 0)
		return;
	if (!m->body) {
		m->body = malloc(p->body_max);
		if (!m->body) {
			p->body_gap = 1; /* the body is an extra: the record goes on without it */
			return;
		}
	}
	k = n < p->body_max - m->body_len ? n : p->body_max - m->body_len;
	memcpy(m->body + m->body_len, d, k);
	m->body_len += k;
}

/* Count n body bytes (known or not) against remaining; completes the message or chunk. */
static void count_body(struct tv_http_parser *p, uint64_t n, uint64_t ts_ns)
{
	p->msg.body_bytes += n;
	p->remaining -= n;
	if (p->remaining > 0)
		return;
	if (p->state == ST_BODY) {
		msg_done(p, ts_ns);
	} else {
		p->state = ST_CHUNK_CRLF;
		p->line_len = 0; /* ST_CHUNK_CRLF: 1 once its CR went by (uncopied_last_chunk) */
	}
}

static void chunk_size_line(struct tv_http_parser *p, uint64_t ts_ns)
{
	uint64_t size = 0;
	size_t i;
	int v, digits = 0;

	for (i = 0; i < p->line_len && (v = hexval((unsigned char)p->line[i])) >= 0; i++) {
		if (size >> 60)
			break; /* overflow */
		size = size << 4 | (uint64_t)v;
		digits++;
	}
	if (digits == 0 || (i < p->line_len && p->line[i] != ';' && p->line[i] != ' ' &&
			    p->line[i] != '\t' && p->line[i] != '\r')) {
		lose_sync(p, ts_ns);
		return;
	}
	p->line_len = 0;
	if (size == 0) {
		p->state = ST_TRAILER;
	} else {
		p->remaining = size;
		p->state = ST_CHUNK_DATA;
	}
}

/* Room for one more head byte: grow the buffer (1K, doubling) up to the head limit. Returns
 * 0, or -1 at the limit or out of memory. */
static int head_grow(struct tv_http_parser *p)
{
	size_t max = p->max_head_bytes ? p->max_head_bytes : TV_HTTP_DEFAULT_HEAD_BYTES;
	size_t cap;
	char *h;

	if (p->head_len < p->head_cap)
		return 0;
	if (p->head_cap >= max)
		return -1;
	cap = p->head_cap ? p->head_cap * 2 : 1024;
	if (cap > max)
		cap = max;
	h = malloc(cap); /* not realloc: the old buffer is wiped before it is freed */
	if (!h)
		return -1;
	if (p->head) {
		memcpy(h, p->head, p->head_len);
		explicit_bzero(p->head, p->head_len);
		free(p->head);
	}
	p->head = h;
	p->head_cap = cap;
	return 0;
}

/* ST_HEAD: append bytes of d[0..len) to the head until the blank line that ends it
 * (head_complete) or the head limit (head_cut). A line at a time (memchr + memcpy): the
 * bytes between line ends need no look, and a byte loop here was the parser's hot spot.
 * Returns the bytes consumed. */
static size_t feed_head(struct tv_http_parser *p, const uint8_t *d, size_t len, uint64_t ts_ns)
{
	size_t i = 0, n, hl;
	const uint8_t *nl;

	while (i < len && p->state == ST_HEAD) {
		if (head_grow(p)) { /* full at the limit, with a byte still to add */
			head_cut(p, CUT_LIMIT, ts_ns);
			break;
		}
		n = len - i;
		if (n > p->head_cap - p->head_len)
			n = p->head_cap - p->head_len;
		nl = memchr(d + i, '\n', n);
		if (nl)
			n = (size_t)(nl - (d + i)) + 1;
		memcpy(p->head + p->head_len, d + i, n);
		p->head_len += n;
		i += n;
		hl = p->head_len;
		if (nl && ((hl >= 2 && p->head[hl - 2] == '\n') ||
			   (hl >= 3 && p->head[hl - 2] == '\r' && p->head[hl - 3] == '\n')))
			head_complete(p, ts_ns);
	}
	return i;
}

/* One byte of chunked framing outside chunk data (RFC 9112 §7.1): the size line
 * (ST_CHUNK_SIZE), the CRLF after a chunk's data (ST_CHUNK_CRLF), the trailer (ST_TRAILER,
 * ended by an empty line). */
static void feed_chunk_framing(struct tv_http_parser *p, uint8_t c, uint64_t ts_ns)
{
	switch (p->state) {
	case ST_CHUNK_SIZE:
		if (c == '\n')
			chunk_size_line(p, ts_ns);
		else if (p->line_len < sizeof(p->line))
			p->line[p->line_len++] = (char)c;
		/* longer lines are chunk extensions: ignored */
		break;
	case ST_CHUNK_CRLF:
		if (c == '\n') {
			p->state = ST_CHUNK_SIZE;
			p->line_len = 0;
		} else if (c == '\r') {
			p->line_len = 1;
		} else {
			lose_sync(p, ts_ns);
		}
		break;
	default: /* ST_TRAILER */
		if (c == '\n') {
			if (p->line_len == 0)
				msg_done(p, ts_ns);
			p->line_len = 0;
		} else if (c != '\r') {
			p->line_len++;
		}
		break;
	}
}

/* Bytes of a chunked body nobody saw (past the copy, or lost) that are exactly what is left of
 * the message when its last chunk follows the data just counted: "\r\n0\r\n\r\n" after a
 * chunk's data (7 bytes, 6 once its CR was seen) or "0\r\n\r\n" where a size line begins (5),
 * with no trailer (RFC 9112 §7.1). A server ends a chunked response that way in the same
 * writev as its last data (Node.js's res.end(data), nginx), so a body longer than the copy
 * ends there; taking those bytes as the end keeps the record complete and its count exact
 * instead of losing sync on them. Any other length (a trailer, or more chunks) still loses
 * sync: the parser never guesses the size of a chunk it did not see. */
static int uncopied_last_chunk(const struct tv_http_parser *p, uint64_t n)
{
	if (p->state == ST_CHUNK_CRLF)
		return n == 7 - p->line_len;
	return p->state == ST_CHUNK_SIZE && p->line_len == 0 && n == 5;
}

/* n bytes the syscall moved past the copied prefix: countable only inside a body (and the end
 * of a chunked one, uncopied_last_chunk); anywhere else (a head, framing, the start of the next
 * message) the parser has lost its place. */
static void skip_uncopied(struct tv_http_parser *p, uint64_t n, uint64_t ts_ns)
{
	while (n > 0) {
		uint64_t k;

		if (p->state == ST_BODY || p->state == ST_CHUNK_DATA) {
			k = n < p->remaining ? n : p->remaining;
			n -= k;
			p->body_gap = 1; /* a kept body prefix stops where the copy did */
			count_body(p, k, ts_ns);
		} else if (p->state == ST_BODY_EOF) {
			p->msg.body_bytes += n;
			p->body_gap = 1;
			n = 0;
		} else if (p->state == ST_UPGRADED) {
			p->tunnel_bytes += n;
			n = 0;
		} else if (p->state == ST_LOST) {
			n = 0;
		} else if (p->state == ST_HEAD) {
			head_cut(p, CUT_COPY, ts_ns);
			n = 0;
		} else if (uncopied_last_chunk(p, n)) {
			msg_done(p, ts_ns);
			n = 0;
		} else {
			lose_sync(p, ts_ns);
			n = 0;
		}
	}
}

void tv_http_parser_feed(struct tv_http_parser *p, const void *data, size_t copied,
			 uint64_t total, uint64_t ts_ns)
{
	const uint8_t *d = data;
	size_t i = 0;
	uint64_t n;

	if (p->state == ST_UPGRADED) { /* the usual case of a tunnel: counted at once */
		p->tunnel_bytes += total;
		return;
	}
	if (p->state == ST_LOST && looks_like_start(p, d, copied))
		p->state = ST_IDLE;
	while (i < copied) {
		switch (p->state) {
		case ST_IDLE:
			if (d[i] == '\r' || d[i] == '\n') { /* stray CRLF between messages */
				i++;
				break;
			}
			start_message(p, ts_ns);
			/* fall through */
		case ST_HEAD:
			i += feed_head(p, d + i, copied - i, ts_ns);
			break;
		case ST_BODY:
		case ST_CHUNK_DATA:
			n = copied - i < p->remaining ? copied - i : p->remaining;
			if (p->body_max)
				keep_body(p, d + i, (size_t)n);
			i += n;
			count_body(p, n, ts_ns);
			break;
		case ST_CHUNK_SIZE:
		case ST_CHUNK_CRLF:
		case ST_TRAILER:
			feed_chunk_framing(p, d[i++], ts_ns);
			break;
		case ST_BODY_EOF:
			if (p->body_max)
				keep_body(p, d + i, copied - i);
			p->msg.body_bytes += copied - i;
			i = copied;
			break;
		case ST_UPGRADED: /* switched inside this feed: the rest is tunnel traffic */
			p->tunnel_bytes += copied - i;
			i = copied;
			break;
		default: /* ST_LOST */
			i = copied;
			break;
		}
	}
	if (total > copied)
		skip_uncopied(p, total - copied, ts_ns);
}

int tv_http_parser_close(struct tv_http_parser *p, uint64_t ts_ns)
{
	int unfinished;

	if (p->state == ST_BODY_EOF) {
		msg_done(p, ts_ns);
		return 0;
	}
	unfinished = p->state != ST_IDLE && p->state != ST_LOST && p->state != ST_UPGRADED;
	if (p->head_reported) {
		p->msg.incomplete = 1;
		msg_done(p, ts_ns);
	}
	head_release(p, 1);
	p->state = ST_IDLE;
	return unfinished;
}
