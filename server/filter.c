/* QueryFilter compiled into flat arrays, and the per-record predicate over raw record bytes.
 * Evaluation goes cheapest first (integers, then strings, then address parsing, then globs)
 * so a record that fails early costs one tag walk and a few compares. */
#include "server/filter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/varint.h"

struct match {
	int kind; /* TRACEVAULT__V1__MATCH_KIND__* */
	char *value;
	size_t len;
};

struct cidr {
	uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
	unsigned bits;    /* prefix length over the 128 bits */
};

struct range {
	uint64_t lo, hi;
};

struct tv_filter {
	char **methods;
	size_t nmethods;
	struct range *status;
	size_t nstatus;
	struct match *paths, *hosts, *comms;
	size_t npaths, nhosts, ncomms;
	int role; /* TRACEVAULT__V1__ROLE__* */
	uint32_t *pids;
	size_t npids;
	struct cidr *remotes;
	size_t nremotes;
	char (*trace_ids)[33];
	size_t ntrace_ids;
	bool has_latency;
	struct range latency;
	uint32_t flags_any, flags_all, flags_none;
	bool paths_with_query;
	int kind;          /* TRACEVAULT__V1__RECORD_KIND__* */
	char **services;   /* span records of these services (exact) */
	size_t nservices;
};

/* ---- glob ---- */

/* The set starting at pat[i] == '[': whether c is in it; *end is the index past its ']'.
 * Returns -1 when the '[' is unclosed (then it is a literal '['). */
static int set_match(const char *pat, size_t plen, size_t i, unsigned char c, size_t *end)
{
	size_t j = i + 1;
	bool neg = false, in = false;

	if (j < plen && pat[j] == '!') {
		neg = true;
		j++;
	}
	if (j < plen && pat[j] == ']') { /* first: a member */
		in |= c == ']';
		j++;
	}
	while (j < plen && pat[j] != ']') {
		unsigned char lo = (unsigned char)pat[j];

		if (j + 2 < plen && pat[j + 1] == '-' && pat[j + 2] != ']') {
			unsigned char hi = (unsigned char)pat[j + 2];

			in |= lo <= c && c <= hi; /* reversed: matches nothing */
			j += 3;
		} else {
			in |= c == lo;
			j++;
		}
	}
	if (j >= plen)
		return -1;
	*end = j + 1;
	return in != neg;
}

bool tv_glob_match(const char *pat, size_t plen, const char *s, size_t slen)
{
	/* one backtrack point (the last '*') suffices: every other item matches one byte */
	size_t p = 0, i = 0, star_p = (size_t)-1, star_i = 0;

	while (i < slen) {
		if (p < plen && pat[p] == '*') {
			star_p = ++p;
			star_i = i;
			continue;
		}
		if (p < plen) {
			size_t end = p + 1;
			int ok;

			if (pat[p] == '?')
				ok = 1;
			else if (pat[p] == '[' && (ok = set_match(pat, plen, p, (unsigned char)s[i],
								  &end)) >= 0)
				;
			else
				ok = pat[p] == s[i];
			if (ok) {
				p = end;
				i++;
				continue;
			}
		}
		if (star_p == (size_t)-1)
			return false;
		p = star_p;
		i = ++star_i;
	}
	while (p < plen && pat[p] == '*')
		p++;
	return p == plen;
}

/* ---- compile ---- */

/* Parse an address or CIDR ("10.0.0.0/8", "::1", "2001:db8::/32") into c. */
static int parse_cidr(const char *s, struct cidr *c)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long bits;
	char *endp;
	bool v4;

	if (alen == 0 || alen >= INET6_ADDRSTRLEN)
		return -EINVAL;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	memset(c->addr, 0, sizeof(c->addr));
	if (inet_pton(AF_INET, buf, c->addr + 12) == 1) {
		v4 = true;
		c->addr[10] = c->addr[11] = 0xff;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		v4 = false;
	} else {
		return -EINVAL;
	}
	bits = v4 ? 32 : 128;
	if (slash) {
		if (slash[1] < '0' || slash[1] > '9' || strlen(slash + 1) > 3)
			return -EINVAL;
		bits = strtoul(slash + 1, &endp, 10);
		if (*endp || bits > (v4 ? 32u : 128u))
			return -EINVAL;
	}
	c->bits = (unsigned)bits + (v4 ? 96 : 0);
	/* host bits set ("10.0.0.1/8") are allowed and ignored, as ipaddress strict=False */
	return 0;
}

static bool cidr_contains(const struct cidr *c, const uint8_t a[16])
{
	unsigned full = c->bits / 8, rest = c->bits % 8;

	if (memcmp(c->addr, a, full))
		return false;
	if (rest == 0)
		return true;
	return ((c->addr[full] ^ a[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static bool is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return true;
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int check_count(const char *field, size_t n, char *err, size_t errlen)
{
	if (n <= TV_FILTER_MAX_ENTRIES)
		return 0;
	snprintf(err, errlen, "filter.%s: %zu entries, at most %d", field, n,
		 TV_FILTER_MAX_ENTRIES);
	return -EINVAL;
}

static int check_value(const char *field, size_t i, const char *v, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (n <= TV_FILTER_MAX_VALUE_BYTES)
		return 0;
	snprintf(err, errlen, "filter.%s[%zu]: %zu bytes, at most %d", field, i, n,
		 TV_FILTER_MAX_VALUE_BYTES);
	return -EINVAL;
}

static int compile_matches(const char *field, Tracevault__V1__StringMatch **in, size_t n,
			   bool fold, struct match **out, size_t *nout, char *err, size_t errlen)
{
	int ret = check_count(field, n, err, errlen);

	if (ret || n == 0)
		return ret;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	*nout = n;
	for (size_t i = 0; i < n; i++) {
		const char *v = in[i]->value ? in[i]->value : "";

		ret = check_value(field, i, v, err, errlen);
		if (ret)
			return ret;
		if (in[i]->kind != TRACEVAULT__V1__MATCH_KIND__MATCH_EXACT &&
		    in[i]->kind != TRACEVAULT__V1__MATCH_KIND__MATCH_PREFIX &&
		    in[i]->kind != TRACEVAULT__V1__MATCH_KIND__MATCH_GLOB) {
			snprintf(err, errlen, "filter.%s[%zu]: unknown kind %d", field, i,
				 (int)in[i]->kind);
			return -EINVAL;
		}
		(*out)[i].kind = in[i]->kind;
		(*out)[i].len = strlen(v);
		(*out)[i].value = strdup(v);
		if (!(*out)[i].value)
			return -ENOMEM;
		if (fold)
			for (size_t k = 0; k < (*out)[i].len; k++)
				(*out)[i].value[k] = lower((*out)[i].value[k]);
	}
	return 0;
}

static int compile_range(const char *field, size_t i, const Tracevault__V1__Range *r,
			 struct range *out, char *err, size_t errlen)
{
	if (r->lo > r->hi) {
		snprintf(err, errlen, "filter.%s[%zu]: lo %llu is above hi %llu", field, i,
			 (unsigned long long)r->lo, (unsigned long long)r->hi);
		return -EINVAL;
	}
	*out = (struct range){ r->lo, r->hi };
	return 0;
}

static int compile(const Tracevault__V1__QueryFilter *m, struct tv_filter *f, char *err,
		   size_t errlen)
{
	int ret;

	if ((ret = check_count("methods", m->n_methods, err, errlen)) ||
	    (ret = check_count("status", m->n_status, err, errlen)) ||
	    (ret = check_count("pids", m->n_pids, err, errlen)) ||
	    (ret = check_count("remotes", m->n_remotes, err, errlen)) ||
	    (ret = check_count("trace_ids", m->n_trace_ids, err, errlen)) ||
	    (ret = check_count("services", m->n_services, err, errlen)))
		return ret;
	if (m->kind != TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_ANY &&
	    m->kind != TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_EXCHANGE &&
	    m->kind != TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_SPAN) {
		snprintf(err, errlen, "filter.kind: unknown record kind %d", (int)m->kind);
		return -EINVAL;
	}
	f->kind = m->kind;
	if (m->n_services) {
		f->services = calloc(m->n_services, sizeof(*f->services));
		if (!f->services)
			return -ENOMEM;
		f->nservices = m->n_services;
		for (size_t i = 0; i < m->n_services; i++) {
			if ((ret = check_value("services", i, m->services[i], err, errlen)))
				return ret;
			if (!(f->services[i] = strdup(m->services[i])))
				return -ENOMEM;
		}
	}
	if (m->n_methods) {
		f->methods = calloc(m->n_methods, sizeof(*f->methods));
		if (!f->methods)
			return -ENOMEM;
		f->nmethods = m->n_methods;
		for (size_t i = 0; i < m->n_methods; i++) {
			if ((ret = check_value("methods", i, m->methods[i], err, errlen)))
				return ret;
			if (!(f->methods[i] = strdup(m->methods[i])))
				return -ENOMEM;
		}
	}
	if (m->n_status) {
		f->status = calloc(m->n_status, sizeof(*f->status));
		if (!f->status)
			return -ENOMEM;
		f->nstatus = m->n_status;
		for (size_t i = 0; i < m->n_status; i++)
			if ((ret = compile_range("status", i, m->status[i], &f->status[i], err,
						 errlen)))
				return ret;
	}
	if ((ret = compile_matches("paths", m->paths, m->n_paths, false, &f->paths, &f->npaths,
				   err, errlen)) ||
	    (ret = compile_matches("hosts", m->hosts, m->n_hosts, true, &f->hosts, &f->nhosts,
				   err, errlen)) ||
	    (ret = compile_matches("comms", m->comms, m->n_comms, false, &f->comms, &f->ncomms,
				   err, errlen)))
		return ret;
	if (m->role != TRACEVAULT__V1__ROLE__ROLE_ANY && m->role != TRACEVAULT__V1__ROLE__ROLE_SERVER &&
	    m->role != TRACEVAULT__V1__ROLE__ROLE_CLIENT &&
	    m->role != TRACEVAULT__V1__ROLE__ROLE_SERVER_OR_CLIENT) {
		snprintf(err, errlen, "filter.role: unknown role %d", (int)m->role);
		return -EINVAL;
	}
	f->role = m->role;
	if (m->n_pids) {
		f->pids = malloc(m->n_pids * sizeof(*f->pids));
		if (!f->pids)
			return -ENOMEM;
		memcpy(f->pids, m->pids, m->n_pids * sizeof(*f->pids));
		f->npids = m->n_pids;
	}
	if (m->n_remotes) {
		f->remotes = calloc(m->n_remotes, sizeof(*f->remotes));
		if (!f->remotes)
			return -ENOMEM;
		f->nremotes = m->n_remotes;
		for (size_t i = 0; i < m->n_remotes; i++) {
			if ((ret = check_value("remotes", i, m->remotes[i], err, errlen)))
				return ret;
			if (parse_cidr(m->remotes[i], &f->remotes[i])) {
				snprintf(err, errlen, "filter.remotes[%zu]: '%.64s' is not an "
					 "address or CIDR", i, m->remotes[i]);
				return -EINVAL;
			}
		}
	}
	if (m->n_trace_ids) {
		f->trace_ids = calloc(m->n_trace_ids, sizeof(*f->trace_ids));
		if (!f->trace_ids)
			return -ENOMEM;
		f->ntrace_ids = m->n_trace_ids;
		for (size_t i = 0; i < m->n_trace_ids; i++) {
			const char *t = m->trace_ids[i];

			if (strlen(t) != 32 || !is_hex(t, 32)) {
				snprintf(err, errlen, "filter.trace_ids[%zu]: '%.64s' is not 32 "
					 "hex digits", i, t);
				return -EINVAL;
			}
			for (size_t k = 0; k < 32; k++)
				f->trace_ids[i][k] = lower(t[k]);
		}
	}
	if (m->latency_ns) {
		if (m->latency_ns->lo > m->latency_ns->hi) {
			snprintf(err, errlen, "filter.latency_ns: lo %llu is above hi %llu",
				 (unsigned long long)m->latency_ns->lo,
				 (unsigned long long)m->latency_ns->hi);
			return -EINVAL;
		}
		f->has_latency = true;
		f->latency = (struct range){ m->latency_ns->lo, m->latency_ns->hi };
	}
	f->flags_any = m->flags_any;
	f->flags_all = m->flags_all;
	f->flags_none = m->flags_none;
	f->paths_with_query = m->paths_with_query;
	return 0;
}

static bool constrains(const struct tv_filter *f)
{
	return f->nmethods || f->nstatus || f->npaths || f->nhosts || f->ncomms || f->role ||
	       f->npids || f->nremotes || f->ntrace_ids || f->has_latency || f->flags_any ||
	       f->flags_all || f->flags_none || f->kind || f->nservices;
}

int tv_filter_compile(const Tracevault__V1__QueryFilter *m, struct tv_filter **out, char *err,
		      size_t errlen)
{
	struct tv_filter *f;
	int ret;

	*out = NULL;
	if (!m)
		return 0;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	ret = compile(m, f, err, errlen);
	if (ret == -ENOMEM)
		snprintf(err, errlen, "out of memory compiling the filter");
	if (ret || !constrains(f)) {
		tv_filter_free(f);
		return ret;
	}
	*out = f;
	return 0;
}

static void free_matches(struct match *m, size_t n)
{
	for (size_t i = 0; m && i < n; i++)
		free(m[i].value);
	free(m);
}

void tv_filter_free(struct tv_filter *f)
{
	if (!f)
		return;
	for (size_t i = 0; f->methods && i < f->nmethods; i++)
		free(f->methods[i]);
	free(f->methods);
	free(f->status);
	free_matches(f->paths, f->npaths);
	free_matches(f->hosts, f->nhosts);
	free_matches(f->comms, f->ncomms);
	free(f->pids);
	free(f->remotes);
	free(f->trace_ids);
	for (size_t i = 0; f->services && i < f->nservices; i++)
		free(f->services[i]);
	free(f->services);
	free(f);
}

/* ---- evaluate ---- */

/* The service (field 6, the last one) of the Span message p[0, len); "" when absent or when
 * the bytes do not parse (the Write checks refuse such records). */
static const char *span_service(const uint8_t *p, size_t len, size_t *out_len)
{
	const char *svc = "";
	size_t i = 0, used;
	uint64_t key, x;

	*out_len = 0;
	while (i < len) {
		if (tv_varint_get(p + i, len - i, &key, &used))
			return "";
		i += used;
		switch (key & 7) {
		case 0:
			if (tv_varint_get(p + i, len - i, &x, &used))
				return "";
			i += used;
			break;
		case 1:
		case 5:
			if (len - i < ((key & 7) == 1 ? 8u : 4u))
				return "";
			i += (key & 7) == 1 ? 8 : 4;
			break;
		case 2:
			if (tv_varint_get(p + i, len - i, &x, &used))
				return "";
			i += used;
			if (x > len - i)
				return "";
			if (key >> 3 == 6) {
				svc = (const char *)p + i;
				*out_len = (size_t)x;
			}
			i += x;
			break;
		default:
			return "";
		}
	}
	return svc;
}

/* One pass over the record's tags; the last occurrence of a field wins, as in protobuf. */
bool tv_record_view_parse(const uint8_t *p, size_t len, struct tv_record_view *v)
{
	size_t i = 0, used;
	uint64_t key, x;

	*v = (struct tv_record_view){ .comm = "", .remote = "", .method = "", .path = "",
				      .trace_id = "", .role = "", .host = "", .service = "" };
	while (i < len) {
		if (tv_varint_get(p + i, len - i, &key, &used))
			return false;
		i += used;
		switch (key & 7) {
		case 0:
			if (tv_varint_get(p + i, len - i, &x, &used))
				return false;
			i += used;
			switch (key >> 3) {
			case 3: v->latency_ns = x; break;
			case 4: v->pid = x; break;
			case 10: v->status = x; break;
			case 15: v->flags = x; break;
			}
			break;
		case 1:
			if (len - i < 8)
				return false;
			i += 8;
			break;
		case 5:
			if (len - i < 4)
				return false;
			i += 4;
			break;
		case 2: {
			const char *s;

			if (tv_varint_get(p + i, len - i, &x, &used))
				return false;
			i += used;
			if (x > len - i)
				return false;
			s = (const char *)p + i;
			switch (key >> 3) {
			case 5: v->comm = s; v->comm_len = x; break;
			case 7: v->remote = s; v->remote_len = x; break;
			case 8: v->method = s; v->method_len = x; break;
			case 9: v->path = s; v->path_len = x; break;
			case 13: v->trace_id = s; v->trace_id_len = x; break;
			case 18: v->role = s; v->role_len = x; break;
			case 19: v->host = s; v->host_len = x; break;
			case 27:
				v->is_span = true;
				v->service = span_service((const uint8_t *)s, x, &v->service_len);
				break;
			}
			i += x;
			break;
		}
		default:
			return false;
		}
	}
	return true;
}

static bool str_match(const struct match *m, const char *s, size_t n)
{
	switch (m->kind) {
	case TRACEVAULT__V1__MATCH_KIND__MATCH_EXACT:
		return n == m->len && memcmp(s, m->value, n) == 0;
	case TRACEVAULT__V1__MATCH_KIND__MATCH_PREFIX:
		return n >= m->len && memcmp(s, m->value, m->len) == 0;
	default:
		return tv_glob_match(m->value, m->len, s, n);
	}
}

static bool any_match(const struct match *m, size_t nm, const char *s, size_t n)
{
	for (size_t i = 0; i < nm; i++)
		if (str_match(&m[i], s, n))
			return true;
	return false;
}

/* The host without its port: "a.com:8080" -> "a.com", "[::1]:80" -> "[::1]"; else n. */
static size_t host_without_port(const char *h, size_t n)
{
	size_t i = n;

	while (i > 0 && h[i - 1] >= '0' && h[i - 1] <= '9')
		i--;
	if (i == n || i == 0 || h[i - 1] != ':')
		return n;
	i--; /* the ':' */
	if (h[0] == '[')
		return i > 0 && h[i - 1] == ']' ? i : n;
	return memchr(h, ':', i) ? n : i; /* a bare IPv6 address has no port */
}

static bool host_match(const struct tv_filter *f, const struct tv_record_view *v)
{
	char stack[2048], *buf = stack;
	size_t n = v->host_len, bare;
	bool ok;

	if (n > sizeof(stack) && !(buf = malloc(n)))
		return false; /* cannot happen in practice: hosts come from a bounded head */
	for (size_t i = 0; i < n; i++)
		buf[i] = lower(v->host[i]);
	bare = host_without_port(buf, n);
	ok = any_match(f->hosts, f->nhosts, buf, n) ||
	     (bare != n && any_match(f->hosts, f->nhosts, buf, bare));
	if (buf != stack)
		free(buf);
	return ok;
}

/* The address of a record's remote ("1.2.3.4:80", "[::1]:80") as 16 bytes. */
static bool remote_addr(const char *r, size_t n, uint8_t a[16])
{
	char buf[INET6_ADDRSTRLEN + 2];
	size_t end = n;

	while (end > 0 && r[end - 1] != ':')
		end--;
	if (end == 0)
		return false;
	end--; /* the ':' before the port */
	if (n && r[0] == '[') {
		if (end < 2 || r[end - 1] != ']' || end - 2 >= sizeof(buf))
			return false;
		memcpy(buf, r + 1, end - 2);
		buf[end - 2] = '\0';
		return inet_pton(AF_INET6, buf, a) == 1;
	}
	if (end >= sizeof(buf))
		return false;
	memcpy(buf, r, end);
	buf[end] = '\0';
	memset(a, 0, 16);
	a[10] = a[11] = 0xff;
	return inet_pton(AF_INET, buf, a + 12) == 1;
}

_Static_assert(sizeof(((struct tv_filter *)0)->trace_ids[0]) == TV_FILTER_TRACE_ID_STRIDE,
	       "filter.h says how far apart the trace ids are");

size_t tv_filter_trace_ids(const struct tv_filter *f, const char **ids)
{
	if (!f || !f->ntrace_ids)
		return 0;
	*ids = f->trace_ids[0];
	return f->ntrace_ids;
}

_Static_assert((TV_FILTER_STRING_FIELDS & (1u << 3 | 1u << 4 | 1u << 10 | 1u << 15)) == 0,
	       "the numbers are not strings");

uint32_t tv_filter_fields(const struct tv_filter *f)
{
	if (!f)
		return 0;
	return (f->has_latency ? 1u << 3 : 0) | (f->npids ? 1u << 4 : 0) |
	       (f->ncomms ? 1u << 5 : 0) | (f->nremotes ? 1u << 7 : 0) |
	       (f->nmethods ? 1u << 8 : 0) | (f->npaths ? 1u << 9 : 0) |
	       (f->nstatus ? 1u << 10 : 0) | (f->ntrace_ids ? 1u << 13 : 0) |
	       (f->flags_any || f->flags_all || f->flags_none ? 1u << 15 : 0) |
	       (f->role ? 1u << 18 : 0) | (f->nhosts ? 1u << 19 : 0) |
	       (f->kind || f->nservices ? 1u << 27 : 0);
}

bool tv_filter_match(const struct tv_filter *f, const uint8_t *rec, size_t len)
{
	struct tv_record_view v;

	if (!f)
		return true;
	if (!tv_record_view_parse(rec, len, &v))
		return false;
	return tv_filter_match_view(f, &v);
}

bool tv_filter_match_view(const struct tv_filter *f, const struct tv_record_view *v)
{
	return tv_filter_match_numbers(f, v) && tv_filter_match_strings(f, v);
}

bool tv_filter_match_numbers(const struct tv_filter *f, const struct tv_record_view *v)
{
	bool ok;

	if (!f)
		return true;
	if ((f->flags_any && !(v->flags & f->flags_any)) ||
	    (v->flags & f->flags_all) != f->flags_all || (v->flags & f->flags_none))
		return false;
	if (f->nstatus) {
		ok = false;
		for (size_t i = 0; i < f->nstatus && !ok; i++)
			ok = f->status[i].lo <= v->status && v->status <= f->status[i].hi;
		if (!ok)
			return false;
	}
	if (f->has_latency && (v->latency_ns < f->latency.lo || v->latency_ns > f->latency.hi))
		return false;
	/* the record kind and service are per record (field 27), never shared through a page
	 * dictionary id: here, not with the strings whose answer a reader may reuse */
	if (f->kind == TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_SPAN ? !v->is_span :
	    f->kind == TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_EXCHANGE ? v->is_span : false)
		return false;
	if (f->nservices) {
		ok = false;
		for (size_t i = 0; i < f->nservices && !ok && v->is_span; i++)
			ok = strlen(f->services[i]) == v->service_len &&
			     memcmp(f->services[i], v->service, v->service_len) == 0;
		if (!ok)
			return false;
	}
	if (f->npids) {
		ok = false;
		for (size_t i = 0; i < f->npids && !ok; i++)
			ok = f->pids[i] == v->pid;
		if (!ok)
			return false;
	}
	return true;
}

bool tv_filter_match_strings(const struct tv_filter *f, const struct tv_record_view *v)
{
	bool ok;

	if (!f)
		return true;
	if (f->role) {
		bool server = v->role_len == 6 && memcmp(v->role, "server", 6) == 0;
		bool client = v->role_len == 6 && memcmp(v->role, "client", 6) == 0;

		if (f->role == TRACEVAULT__V1__ROLE__ROLE_SERVER ? !server :
		    f->role == TRACEVAULT__V1__ROLE__ROLE_CLIENT ? !client : !(server || client))
			return false;
	}
	if (f->nmethods) {
		ok = false;
		for (size_t i = 0; i < f->nmethods && !ok; i++)
			ok = strlen(f->methods[i]) == v->method_len &&
			     memcmp(f->methods[i], v->method, v->method_len) == 0;
		if (!ok)
			return false;
	}
	if (f->ntrace_ids) {
		ok = false;
		for (size_t i = 0; i < f->ntrace_ids && !ok; i++) {
			ok = v->trace_id_len == 32;
			for (size_t k = 0; k < 32 && ok; k++)
				ok = lower(v->trace_id[k]) == f->trace_ids[i][k];
		}
		if (!ok)
			return false;
	}
	if (f->ncomms && !any_match(f->comms, f->ncomms, v->comm, v->comm_len))
		return false;
	if (f->nhosts && !host_match(f, v))
		return false;
	if (f->nremotes) {
		uint8_t a[16];

		ok = false;
		if (remote_addr(v->remote, v->remote_len, a))
			for (size_t i = 0; i < f->nremotes && !ok; i++)
				ok = cidr_contains(&f->remotes[i], a);
		if (!ok)
			return false;
	}
	if (f->npaths) {
		size_t n = v->path_len;
		const char *q;

		if (!f->paths_with_query && (q = memchr(v->path, '?', n)))
			n = (size_t)(q - v->path);
		if (!any_match(f->paths, f->npaths, v->path, n))
			return false;
	}
	return true;
}
