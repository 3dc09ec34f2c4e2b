/* Parsers of tracevault query's filter options into a QueryFilter (PROTOCOL.md "Filters").
 * Everything the server would refuse is refused here first, as a usage error. */
#include "cli/filter_args.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status_range.h"

/* Split arg at ',' calling one(item, len) for each; an empty item is an error. */
static int each_item(const char *arg, int (*one)(struct tv_filter_args *, const char *, size_t,
						 char *, size_t),
		     struct tv_filter_args *f, char *why, size_t whylen)
{
	const char *p = arg;
	int ret;

	for (;;) {
		const char *c = strchr(p, ',');
		size_t n = c ? (size_t)(c - p) : strlen(p);

		if (n == 0) {
			snprintf(why, whylen, "empty item in '%s'", arg);
			return -EINVAL;
		}
		ret = one(f, p, n, why, whylen);
		if (ret)
			return ret;
		if (!c)
			return 0;
		p = c + 1;
	}
}

static int room(size_t n, char *why, size_t whylen)
{
	if (n < TV_FILTER_MAX_ENTRIES)
		return 0;
	snprintf(why, whylen, "more than %d values", TV_FILTER_MAX_ENTRIES);
	return -EINVAL;
}

static char *dup_item(const char *s, size_t n, char *why, size_t whylen)
{
	char *d;

	if (n > TV_FILTER_MAX_VALUE_BYTES) {
		snprintf(why, whylen, "longer than %d bytes", TV_FILTER_MAX_VALUE_BYTES);
		return NULL;
	}
	d = strndup(s, n);
	if (!d)
		snprintf(why, whylen, "out of memory");
	return d; /* freed at exit: the filter lives as long as the command */
}

static int one_method(struct tv_filter_args *f, const char *s, size_t n, char *why,
		      size_t whylen)
{
	char *d;

	if (room(f->m.n_methods, why, whylen))
		return -EINVAL;
	if (!(d = dup_item(s, n, why, whylen)))
		return -EINVAL;
	f->methods[f->m.n_methods++] = d;
	return 0;
}

static int arg_method(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	f->m.methods = f->methods;
	return each_item(arg, one_method, f, why, whylen);
}

static int one_status(struct tv_filter_args *f, const char *s, size_t n, char *why,
		      size_t whylen)
{
	unsigned lo, hi;

	if (room(f->m.n_status, why, whylen))
		return -EINVAL;
	if (tv_status_range_parse(s, n, &lo, &hi)) {
		snprintf(why, whylen, "'%.*s' is not " TV_STATUS_RANGE_FORMS, (int)n, s);
		return -EINVAL;
	}
	f->status[f->m.n_status] = (Tracevault__V1__Range)TRACEVAULT__V1__RANGE__INIT;
	f->status[f->m.n_status].lo = lo;
	f->status[f->m.n_status].hi = hi;
	f->status_p[f->m.n_status] = &f->status[f->m.n_status];
	f->m.n_status++;
	return 0;
}

static int arg_status(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	f->m.status = f->status_p;
	return each_item(arg, one_status, f, why, whylen);
}

/* Length of a leading bracketed IPv6 literal ("[::1]" in "[::1]:8080"), else 0: in a --host
 * value those brackets are the URL's (RFC 3986 §3.2.2), not a glob set, which could never
 * match a host there anyway. */
static size_t v6_literal_len(const char *arg)
{
	const char *close;
	char inner[INET6_ADDRSTRLEN + 16];
	struct in6_addr a;
	size_t n;

	if (arg[0] != '[' || !(close = strchr(arg, ']')))
		return 0;
	n = (size_t)(close - arg - 1);
	if (n == 0 || n >= sizeof(inner))
		return 0;
	memcpy(inner, arg + 1, n);
	inner[n] = '\0';
	return inet_pton(AF_INET6, inner, &a) == 1 ? n + 2 : 0;
}

/* A pattern with '*', '?' or '[' is a glob, one whose only one is a trailing '*' a prefix,
 * else an exact value. With host set, a leading "[v6]" is literal (v6_literal_len): a glob
 * then writes its '[' as "[[]", the glob's own way to match a '['. */
static int add_match(Tracevault__V1__StringMatch *arr, Tracevault__V1__StringMatch **ptrs,
		     size_t *n, const char *arg, bool host, char *why, size_t whylen)
{
	Tracevault__V1__StringMatch *m = &arr[*n];
	size_t len = strlen(arg), lit = host ? v6_literal_len(arg) : 0;
	size_t meta = lit + strcspn(arg + lit, "*?[");
	bool glob = meta < len && !(meta == len - 1 && arg[meta] == '*');

	if (room(*n, why, whylen))
		return -EINVAL;
	if (glob && lit && len <= TV_FILTER_MAX_VALUE_BYTES) {
		char esc[TV_FILTER_MAX_VALUE_BYTES + 3];

		snprintf(esc, sizeof(esc), "[[]%s", arg + 1);
		m->value = dup_item(esc, len + 2, why, whylen);
	} else {
		m->value = dup_item(arg, len, why, whylen);
	}
	if (!m->value)
		return -EINVAL;
	*m = (Tracevault__V1__StringMatch){ .base = m->base, .value = m->value };
	m->base = ((Tracevault__V1__StringMatch)TRACEVAULT__V1__STRING_MATCH__INIT).base;
	if (meta == len) {
		m->kind = TRACEVAULT__V1__MATCH_KIND__MATCH_EXACT;
	} else if (!glob) {
		m->kind = TRACEVAULT__V1__MATCH_KIND__MATCH_PREFIX;
		m->value[meta] = '\0';
	} else {
		m->kind = TRACEVAULT__V1__MATCH_KIND__MATCH_GLOB;
	}
	ptrs[*n] = m;
	(*n)++;
	return 0;
}

/* One item of a --host or --comm list: add_match wants it NUL-terminated. */
static int one_match(Tracevault__V1__StringMatch *arr, Tracevault__V1__StringMatch **ptrs,
		     size_t *n, const char *s, size_t len, bool host, char *why, size_t whylen)
{
	char *item;
	int ret;

	if (!(item = dup_item(s, len, why, whylen)))
		return -EINVAL;
	ret = add_match(arr, ptrs, n, item, host, why, whylen);
	free(item);
	return ret;
}

static int one_host(struct tv_filter_args *f, const char *s, size_t n, char *why,
		    size_t whylen)
{
	return one_match(f->hosts, f->hosts_p, &f->m.n_hosts, s, n, true, why, whylen);
}

static int one_comm(struct tv_filter_args *f, const char *s, size_t n, char *why,
		    size_t whylen)
{
	return one_match(f->comms, f->comms_p, &f->m.n_comms, s, n, false, why, whylen);
}

/* A path is taken whole: RFC 3986 §3.3 allows ',' in a path segment, so several paths are
 * several --path options. */
static int arg_path(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	f->m.paths = f->paths_p;
	return add_match(f->paths, f->paths_p, &f->m.n_paths, arg, false, why, whylen);
}

static int arg_host(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	f->m.hosts = f->hosts_p;
	/* a host name holds no ',' (RFC 1123 §2.1: letters, digits, '-', '.'), so it splits */
	return each_item(arg, one_host, f, why, whylen);
}

static int arg_comm(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	f->m.comms = f->comms_p;
	/* a comm could hold a ',' (any byte but NUL, 15 at most), but no program worth a
	 * filter names itself so: a list is the useful reading */
	return each_item(arg, one_comm, f, why, whylen);
}

static int one_role(struct tv_filter_args *f, const char *s, size_t n, char *why,
		    size_t whylen)
{
	if (n == 6 && strncmp(s, "server", 6) == 0)
		f->roles |= 1u << TRACEVAULT__V1__ROLE__ROLE_SERVER;
	else if (n == 6 && strncmp(s, "client", 6) == 0)
		f->roles |= 1u << TRACEVAULT__V1__ROLE__ROLE_CLIENT;
	else {
		snprintf(why, whylen, "'%.*s' is not server or client", (int)n, s);
		return -EINVAL;
	}
	return 0;
}

/* QueryFilter.role holds one value; tv_filter_args_finish turns both roles into
 * ROLE_SERVER_OR_CLIENT (a record without a role passes neither). */
static int arg_role(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	return each_item(arg, one_role, f, why, whylen);
}

static int one_pid(struct tv_filter_args *f, const char *s, size_t n, char *why, size_t whylen)
{
	uint64_t v = 0;

	if (room(f->m.n_pids, why, whylen))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 10) {
			snprintf(why, whylen, "'%.*s' is not a pid (0 to 4294967295)", (int)n, s);
			return -EINVAL;
		}
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > TV_FILTER_PID_MAX) {
		snprintf(why, whylen, "'%.*s' is not a pid (0 to 4294967295)", (int)n, s);
		return -EINVAL;
	}
	f->pids[f->m.n_pids++] = (uint32_t)v;
	return 0;
}

static int arg_pid(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	f->m.pids = f->pids;
	return each_item(arg, one_pid, f, why, whylen);
}

/* The server's rule (server/filter.c parse_cidr): an IPv4 or IPv6 address, optionally /N
 * with N at most 32 or 128. */
static bool cidr_ok(const char *s)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char a[16];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long bits;
	char *end;
	bool v4;

	if (alen == 0 || alen >= sizeof(buf))
		return false;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	v4 = inet_pton(AF_INET, buf, a) == 1;
	if (!v4 && inet_pton(AF_INET6, buf, a) != 1)
		return false;
	if (!slash)
		return true;
	if (slash[1] < '0' || slash[1] > '9' || strlen(slash + 1) > 3)
		return false;
	bits = strtoul(slash + 1, &end, 10);
	return !*end && bits <= (v4 ? 32u : 128u);
}

static int one_remote(struct tv_filter_args *f, const char *s, size_t n, char *why,
		      size_t whylen)
{
	char *d;

	if (room(f->m.n_remotes, why, whylen))
		return -EINVAL;
	if (!(d = dup_item(s, n, why, whylen)))
		return -EINVAL;
	if (!cidr_ok(d)) {
		snprintf(why, whylen, "'%s' is not an address or CIDR (10.0.0.0/8, ::1, "
			 "2001:db8::/32)", d);
		free(d);
		return -EINVAL;
	}
	f->remotes[f->m.n_remotes++] = d;
	return 0;
}

static int arg_remote(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	f->m.remotes = f->remotes;
	return each_item(arg, one_remote, f, why, whylen);
}

static int one_trace_id(struct tv_filter_args *f, const char *s, size_t n, char *why,
			size_t whylen)
{
	char *d;

	if (room(f->m.n_trace_ids, why, whylen))
		return -EINVAL;
	if (n != 32 || strspn(s, "0123456789abcdefABCDEF") < 32) {
		snprintf(why, whylen, "'%.*s' is not 32 hex digits", (int)n, s);
		return -EINVAL;
	}
	if (!(d = dup_item(s, n, why, whylen)))
		return -EINVAL;
	f->trace_ids[f->m.n_trace_ids++] = d;
	return 0;
}

static int arg_trace_id(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	f->m.trace_ids = f->trace_ids;
	return each_item(arg, one_trace_id, f, why, whylen);
}

static int one_kind(struct tv_filter_args *f, const char *s, size_t n, char *why,
		    size_t whylen)
{
	if (n == 4 && memcmp(s, "span", 4) == 0)
		f->kinds |= 1u << TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_SPAN;
	else if (n == 8 && memcmp(s, "exchange", 8) == 0)
		f->kinds |= 1u << TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_EXCHANGE;
	else {
		snprintf(why, whylen, "'%.*s' is not span or exchange", (int)n, s);
		return -EINVAL;
	}
	return 0;
}

/* QueryFilter.kind holds one value; both kinds given is no constraint (tv_filter_args_finish) */
static int arg_kind(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	return each_item(arg, one_kind, f, why, whylen);
}

static int one_service(struct tv_filter_args *f, const char *s, size_t n, char *why,
		       size_t whylen)
{
	char *d;

	if (room(f->m.n_services, why, whylen))
		return -EINVAL;
	if (!(d = dup_item(s, n, why, whylen)))
		return -EINVAL;
	f->services[f->m.n_services++] = d;
	return 0;
}

static int arg_service(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	f->m.services = f->services;
	return each_item(arg, one_service, f, why, whylen);
}

int tv_parse_latency_ns(const char *s, uint64_t *ns, char *why, size_t whylen)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {
		{"ns", 1}, {"us", 1000}, {"\xc2\xb5s", 1000}, {"ms", 1000000},
		{"s", 1000000000}, {"m", 60000000000ull}, {"h", 3600000000000ull},
	};
	const char *p = s, *unit;
	uint64_t whole = 0, frac = 0, scale = 1, mult = 0, v;
	size_t digits = 0;

	while (*p >= '0' && *p <= '9') {
		if (__builtin_mul_overflow(whole, 10, &whole) ||
		    __builtin_add_overflow(whole, (uint64_t)(*p - '0'), &whole))
			goto overflow;
		p++, digits++;
	}
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9') {
			if (scale < 1000000000000000000ull) { /* finer digits cannot matter */
				frac = frac * 10 + (uint64_t)(*p - '0');
				scale *= 10;
			}
			p++, digits++;
		}
	}
	unit = p;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(unit, units[i].name) == 0)
			mult = units[i].ns;
	if (digits == 0 || mult == 0) {
		snprintf(why, whylen, "'%s' is not N[.N] followed by ns, us, ms, s, m or h", s);
		return -EINVAL;
	}
	if (__builtin_mul_overflow(whole, mult, &v))
		goto overflow;
	/* the fraction in long double (64-bit mantissa): below 1 ns of error, truncated */
	if (__builtin_add_overflow(v, (uint64_t)((long double)frac * (long double)mult /
						 (long double)scale), &v))
		goto overflow;
	*ns = v;
	return 0;
overflow:
	snprintf(why, whylen, "'%s' is above 2^64-1 ns", s);
	return -EINVAL;
}

static int arg_min_latency(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	f->min_latency = true;
	return tv_parse_latency_ns(arg, &f->latency.lo, why, whylen);
}

static int arg_max_latency(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;

	f->used = true;
	f->max_latency = true;
	return tv_parse_latency_ns(arg, &f->latency.hi, why, whylen);
}

/* Record flag bits by name (proto/tracevault.proto TraceRecord.flags). */
static uint32_t flag_bit(const char *s, size_t n)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} names[] = {
		{"no_response", 1}, {"partial", 2}, {"lost", 4}, {"cut", 8}, {"unseen", 32},
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == n && strncmp(s, names[i].name, n) == 0)
			return names[i].bit;
	return 0;
}

static int arg_flags(const char *arg, void *field, char *why, size_t whylen)
{
	struct tv_filter_args *f = field;
	bool all = strncmp(arg, "all:", 4) == 0;
	const char *p = all ? arg + 4 : arg;

	f->used = true;
	if (strcmp(arg, "clean") == 0) {
		f->m.flags_none = UINT32_MAX;
		return 0;
	}
	for (;;) {
		const char *c = strchr(p, ',');
		size_t n = c ? (size_t)(c - p) : strlen(p);
		uint32_t bit = flag_bit(p, n);

		if (!bit) {
			snprintf(why, whylen, "'%.*s' is not no_response, partial, lost, cut, "
				 "unseen (any of a list), all:LIST or clean", (int)n, p);
			return -EINVAL;
		}
		if (all)
			f->m.flags_all |= bit;
		else
			f->m.flags_any |= bit;
		if (!c)
			return 0;
		p = c + 1;
	}
}

/* ---- the options: a refused value names its option ---- */

static int named(int ret, const char *opt, char *why, size_t whylen)
{
	char inner[512];

	if (ret == 0)
		return 0;
	snprintf(inner, sizeof(inner), "%s", why);
	snprintf(why, whylen, "invalid --%s: %s", opt, inner);
	return ret;
}

int tv_filter_arg_method(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_method(arg, field, why, whylen), "method", why, whylen);
}

int tv_filter_arg_status(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_status(arg, field, why, whylen), "status", why, whylen);
}

int tv_filter_arg_path(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_path(arg, field, why, whylen), "path", why, whylen);
}

int tv_filter_arg_host(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_host(arg, field, why, whylen), "host", why, whylen);
}

int tv_filter_arg_comm(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_comm(arg, field, why, whylen), "comm", why, whylen);
}

int tv_filter_arg_role(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_role(arg, field, why, whylen), "role", why, whylen);
}

int tv_filter_arg_pid(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_pid(arg, field, why, whylen), "pid", why, whylen);
}

int tv_filter_arg_remote(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_remote(arg, field, why, whylen), "remote", why, whylen);
}

int tv_filter_arg_trace_id(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_trace_id(arg, field, why, whylen), "trace-id", why, whylen);
}

int tv_filter_arg_min_latency(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_min_latency(arg, field, why, whylen), "min-latency", why, whylen);
}

int tv_filter_arg_max_latency(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_max_latency(arg, field, why, whylen), "max-latency", why, whylen);
}

int tv_filter_arg_flags(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_flags(arg, field, why, whylen), "flags", why, whylen);
}

int tv_filter_arg_kind(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_kind(arg, field, why, whylen), "kind", why, whylen);
}

int tv_filter_arg_service(const char *arg, void *field, char *why, size_t whylen)
{
	return named(arg_service(arg, field, why, whylen), "service", why, whylen);
}

int tv_filter_args_finish(struct tv_filter_args *f, const Tracevault__V1__QueryFilter **out,
			  char *why, size_t whylen)
{
	static const Tracevault__V1__QueryFilter init = TRACEVAULT__V1__QUERY_FILTER__INIT;
	static const Tracevault__V1__Range rinit = TRACEVAULT__V1__RANGE__INIT;

	*out = NULL;
	f->m.base = init.base;
	if (f->path_with_query) {
		f->used = true;
		f->m.paths_with_query = 1;
	}
	if (!f->used)
		return 0;
	/* the values of one option OR: server or client is either, not a record without one */
	if (f->roles == 1u << TRACEVAULT__V1__ROLE__ROLE_SERVER)
		f->m.role = TRACEVAULT__V1__ROLE__ROLE_SERVER;
	else if (f->roles == 1u << TRACEVAULT__V1__ROLE__ROLE_CLIENT)
		f->m.role = TRACEVAULT__V1__ROLE__ROLE_CLIENT;
	else if (f->roles)
		f->m.role = TRACEVAULT__V1__ROLE__ROLE_SERVER_OR_CLIENT;
	else
		f->m.role = TRACEVAULT__V1__ROLE__ROLE_ANY;
	if (f->kinds == 1u << TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_SPAN)
		f->m.kind = TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_SPAN;
	else if (f->kinds == 1u << TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_EXCHANGE)
		f->m.kind = TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_EXCHANGE;
	else
		f->m.kind = TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_ANY;
	/* --service is a span's service.name (the server's filter, PROTOCOL.md "Filters"): an
	 * exchange has none, so with exchanges alone nothing could ever match */
	if (f->m.n_services && f->m.kind == TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_EXCHANGE) {
		snprintf(why, whylen, "--service matches spans only: with --kind exchange "
			 "nothing can match (exchanges: --comm)");
		return -EINVAL;
	}
	if (f->min_latency || f->max_latency) {
		f->latency.base = rinit.base;
		if (!f->max_latency)
			f->latency.hi = UINT64_MAX;
		if (f->latency.lo > f->latency.hi) {
			snprintf(why, whylen, "--min-latency is above --max-latency");
			return -EINVAL;
		}
		f->m.latency_ns = &f->latency;
	}
	*out = &f->m;
	return 0;
}
