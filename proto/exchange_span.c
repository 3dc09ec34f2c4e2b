/* The exchange -> span mapping (proto/exchange_span.h): ids, name, kind, error and the HTTP
 * semantic-convention attributes of one captured exchange, computed once here and written
 * out by each encoder (OTLP JSON in the CLI, Jaeger JSON in the server). SHA-256 (derived
 * ids) is OpenSSL's libcrypto, which gRPC already loads into both binaries. */
#include "proto/exchange_span.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#define ID_DOMAIN "tv1" /* versions the derivation: a new rule gets a new prefix */

/* The HTTP methods semconv knows (RFC 9110 and PATCH); others are "_OTHER". */
static const char *const KNOWN_METHODS[] = {
	"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* s is exactly 2n hex digits, not all zero (W3C trace-context: an all-zero id is invalid):
 * true with the bytes in out. */
static bool parse_id(const char *s, uint8_t *out, size_t n)
{
	bool nonzero = false;

	if (!s || strlen(s) != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
		nonzero |= out[i] != 0;
	}
	return nonzero;
}

static void nonzero_id(uint8_t *id, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (id[i])
			return;
	id[n - 1] = 1;
}

static const char *nz(const char *s)
{
	return s ? s : "";
}

/* The exchange identity's digest: "tv1\0" ts_ns "\0" pid "\0" role "\0" local "\0" remote. */
static int identity_digest(const Tracevault__V1__TraceRecord *r, uint8_t md[SHA256_DIGEST_LENGTH])
{
	const char *role = nz(r->role), *local = nz(r->local), *remote = nz(r->remote);
	size_t cap = sizeof(ID_DOMAIN) + 2 * 24 + strlen(role) + strlen(local) + strlen(remote) + 8;
	char *buf = malloc(cap), *p;
	int ret = 0, n;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, ID_DOMAIN, sizeof(ID_DOMAIN)); /* with its NUL */
	p = buf + sizeof(ID_DOMAIN);
	n = snprintf(p, cap - (size_t)(p - buf), "%" PRIu64, r->ts_ns);
	p += n + 1; /* past the NUL snprintf wrote: the separator */
	n = snprintf(p, cap - (size_t)(p - buf), "%" PRIu32, r->pid);
	p += n + 1;
	p = stpcpy(p, role) + 1;
	p = stpcpy(p, local) + 1;
	p = stpcpy(p, remote);
	if (!SHA256((const unsigned char *)buf, (size_t)(p - buf), md))
		ret = -EIO;
	free(buf);
	return ret;
}

int tv_otlp_span_ids(const Tracevault__V1__TraceRecord *r, struct tv_otlp_ids *ids)
{
	uint8_t md[SHA256_DIGEST_LENGTH], sent[8];
	bool client = r->role && strcmp(r->role, "client") == 0;
	bool has_span = parse_id(r->span_id, sent, sizeof(sent));
	int ret;

	memset(ids, 0, sizeof(*ids));
	if (!parse_id(r->trace_id, ids->trace_id, sizeof(ids->trace_id)))
		ids->derived_trace_id = true;
	/* a traceparent without a valid trace id is not one: its span id means nothing */
	if (ids->derived_trace_id)
		has_span = false;
	if (client && has_span) {
		memcpy(ids->span_id, sent, sizeof(sent));
		return 0;
	}
	ret = identity_digest(r, md);
	if (ret)
		return ret;
	if (ids->derived_trace_id) {
		memcpy(ids->trace_id, md, sizeof(ids->trace_id));
		nonzero_id(ids->trace_id, sizeof(ids->trace_id));
	}
	memcpy(ids->span_id, md + 16, sizeof(ids->span_id));
	nonzero_id(ids->span_id, sizeof(ids->span_id));
	if (!client && has_span) {
		memcpy(ids->parent_span_id, sent, sizeof(sent));
		ids->has_parent = true;
	}
	return 0;
}

/* "host:port", "[v6]:port", "host", "v6" (several colons, no brackets): the address (brackets
 * dropped) and the port, -1 when none or not a valid one. */
struct hostport {
	const char *addr;
	size_t addr_len;
	int port;
};

static struct hostport split_hostport(const char *s)
{
	struct hostport hp = { s, strlen(s), -1 };
	const char *colon, *p;
	long port = 0;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close)
			return hp;
		hp.addr = s + 1;
		hp.addr_len = (size_t)(close - s - 1);
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = strrchr(s, ':');
		if (colon && memchr(s, ':', (size_t)(colon - s)))
			return hp; /* a bare IPv6 address */
		if (colon)
			hp.addr_len = (size_t)(colon - s);
	}
	if (!colon || !colon[1])
		return hp;
	for (p = colon + 1; *p; p++) {
		if (*p < '0' || *p > '9' || port > 65535)
			return hp;
		port = port * 10 + (*p - '0');
	}
	if (port <= 65535)
		hp.port = (int)port;
	return hp;
}

static bool known_method(const char *m)
{
	for (size_t i = 0; i < sizeof(KNOWN_METHODS) / sizeof(KNOWN_METHODS[0]); i++)
		if (strcmp(m, KNOWN_METHODS[i]) == 0)
			return true;
	return false;
}

uint64_t tv_xspan_end_ns(uint64_t ts_ns, uint64_t end_ns, uint64_t latency_ns)
{
	if (end_ns > ts_ns)
		return end_ns;
	return latency_ns > UINT64_MAX - ts_ns ? UINT64_MAX : ts_ns + latency_ns;
}

size_t tv_xspan_path_len(const char *path)
{
	const char *q = strchr(nz(path), '?');

	return q ? (size_t)(q - path) : strlen(nz(path));
}

static void add_strn(struct tv_xspan *x, const char *key, const char *s, size_t n)
{
	x->attrs[x->n_attrs++] = (struct tv_xattr){ .key = key, .type = TV_XATTR_STRING,
						    .s = s, .n = n };
}

static void add_str(struct tv_xspan *x, const char *key, const char *s)
{
	add_strn(x, key, s, strlen(s));
}

/* int64 attributes: values above INT64_MAX (a u64 count could be) are clamped to it. */
static void add_int(struct tv_xspan *x, const char *key, uint64_t v)
{
	x->attrs[x->n_attrs++] = (struct tv_xattr){ .key = key, .type = TV_XATTR_INT,
						    .i = v > INT64_MAX ? INT64_MAX : v };
}

static void add_addr(struct tv_xspan *x, const char *addr_key, const char *port_key,
		     struct hostport hp)
{
	if (hp.addr_len)
		add_strn(x, addr_key, hp.addr, hp.addr_len);
	if (hp.port >= 0)
		add_int(x, port_key, (uint64_t)hp.port);
}

int tv_xspan_of(const Tracevault__V1__TraceRecord *r, struct tv_xspan *x)
{
	const char *role = nz(r->role), *method = nz(r->method), *path = nz(r->path);
	const char *host = nz(r->host), *q = strchr(path, '?');
	bool server = strcmp(role, "server") == 0, client = strcmp(role, "client") == 0;
	bool known = known_method(method);
	struct hostport local = split_hostport(nz(r->local));
	struct hostport remote = split_hostport(nz(r->remote));
	struct hostport authority = host[0] ? split_hostport(host) : (client ? remote : local);
	int ret;

	memset(x, 0, sizeof(*x));
	ret = tv_otlp_span_ids(r, &x->ids);
	if (ret)
		return ret;
	if (r->status >= 500 || (client && r->status >= 400)) {
		snprintf(x->code, sizeof(x->code), "%u", (unsigned)r->status);
		x->error = x->code;
	} else if (r->status == 0 && (r->flags & TV_XSPAN_FLAG_NO_RESPONSE)) {
		x->error = "tracevault.no_response";
	}
	x->name = known ? method : "HTTP";
	x->kind = server ? TV_SPAN_KIND_SERVER : client ? TV_SPAN_KIND_CLIENT :
							 TV_SPAN_KIND_UNSPECIFIED;
	if (method[0]) {
		add_str(x, "http.request.method", known ? method : "_OTHER");
		if (!known)
			add_str(x, "http.request.method_original", method);
	}
	if (path[0] == '/') {
		add_strn(x, "url.path", path, q ? (size_t)(q - path) : strlen(path));
		if (q)
			add_str(x, "url.query", q + 1);
	}
	add_str(x, "url.scheme", "http");
	if (client && authority.addr_len) {
		const char *auth = host[0] ? host : nz(r->remote);
		size_t n = strlen("http://") + strlen(auth) + (path[0] == '/' ? strlen(path) : 0) + 1;

		x->url_full = malloc(n);
		if (!x->url_full)
			return -ENOMEM;
		snprintf(x->url_full, n, "http://%s%s", auth, path[0] == '/' ? path : "");
		add_str(x, "url.full", x->url_full);
	}
	if (r->status)
		add_int(x, "http.response.status_code", r->status);
	add_addr(x, "server.address", "server.port", authority);
	if (server)
		add_addr(x, "client.address", "client.port", remote);
	add_addr(x, "network.peer.address", "network.peer.port", remote);
	add_addr(x, "network.local.address", "network.local.port", local);
	add_str(x, "network.protocol.name", "http");
	if (r->http_version && r->http_version[0])
		add_str(x, "network.protocol.version", r->http_version);
	add_int(x, "http.request.body.size", r->req_body_bytes);
	if (r->status)
		add_int(x, "http.response.body.size", r->resp_body_bytes);
	if (x->error)
		add_str(x, "error.type", x->error);
	if (r->flags)
		add_int(x, "tracevault.flags", r->flags);
	if (x->ids.derived_trace_id)
		x->attrs[x->n_attrs++] = (struct tv_xattr){ .key = "tracevault.trace_id_derived",
							    .type = TV_XATTR_BOOL, .b = true };
	return 0;
}

void tv_xspan_free(struct tv_xspan *x)
{
	free(x->url_full);
	x->url_full = NULL;
}
