/* cmocka tests for the Query filter (server/filter.c): the glob table (Python fnmatchcase
 * semantics: sets, '!' , ']' first, unclosed '[', '*' over '/', bytes >= 0x80), each field of
 * QueryFilter on packed records (AND across fields, OR within one), hosts without their port
 * and case, remotes against IPv4/IPv6/v4-mapped CIDRs, the path before '?', compile errors
 * naming the field, and malformed record bytes passing nothing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/filter.h"

static bool glob(const char *p, const char *s)
{
	return tv_glob_match(p, strlen(p), s, strlen(s));
}

static void test_glob(void **state)
{
	(void)state;
	assert_true(glob("", ""));
	assert_false(glob("", "a"));
	assert_true(glob("*", ""));
	assert_true(glob("/api/*", "/api/v1/users")); /* '*' crosses '/' */
	assert_false(glob("/api/*", "/ap"));
	assert_true(glob("/a?c", "/abc"));
	assert_false(glob("/a?c", "/ac"));
	assert_true(glob("*.png", "/x/y.png"));
	assert_false(glob("*.png", "/x/y.png?"));
	assert_true(glob("a*b*c", "aXbYbZc"));
	assert_false(glob("a*b*c", "aXbYbZ"));
	assert_true(glob("[abc]x", "bx"));
	assert_false(glob("[abc]x", "dx"));
	assert_true(glob("[a-c]", "b"));
	assert_false(glob("[a-c]", "d"));
	assert_true(glob("[!a-c]", "d"));
	assert_false(glob("[!a-c]", "a"));
	assert_true(glob("[]]", "]"));      /* ']' first is a member */
	assert_true(glob("[!]]", "a"));
	assert_false(glob("[!]]", "]"));
	assert_true(glob("[a", "[a"));      /* unclosed: literal */
	assert_false(glob("[a", "a"));
	assert_true(glob("[-a]", "-"));     /* '-' first is literal */
	assert_true(glob("[a-]", "-"));     /* '-' last is literal */
	assert_false(glob("[c-a]", "b"));   /* reversed range: nothing */
	assert_true(glob("[*]", "*"));
	assert_false(glob("[*]", "a"));
	assert_true(glob("\xe9*", "\xe9t\xe9"));
	assert_true(glob("[\x80-\xff]", "\xc3"));
	assert_false(glob("[\x80-\xff]", "a"));
	assert_true(glob("**a**", "bab"));
}

struct rec {
	uint8_t buf[1024];
	size_t len;
};

static void pack(struct rec *r, uint64_t latency, uint32_t pid, const char *comm,
		 const char *remote, const char *method, const char *path, uint32_t status,
		 const char *trace_id, uint32_t flags, const char *role, const char *host)
{
	Tracevault__V1__TraceRecord m = TRACEVAULT__V1__TRACE_RECORD__INIT;

	m.ts_ns = 1000;
	m.latency_ns = latency;
	m.pid = pid;
	m.comm = (char *)comm;
	m.remote = (char *)remote;
	m.method = (char *)method;
	m.path = (char *)path;
	m.status = status;
	m.trace_id = (char *)trace_id;
	m.flags = flags;
	m.role = (char *)role;
	m.host = (char *)host;
	assert_true(tracevault__v1__trace_record__get_packed_size(&m) <= sizeof(r->buf));
	r->len = tracevault__v1__trace_record__pack(&m, r->buf);
}

static bool run(const Tracevault__V1__QueryFilter *m, const struct rec *r)
{
	struct tv_filter *f;
	char err[TV_FILTER_ERR_LEN] = "";
	bool ok;

	assert_int_equal(tv_filter_compile(m, &f, err, sizeof(err)), 0);
	ok = tv_filter_match(f, r->buf, r->len);
	tv_filter_free(f);
	return ok;
}

#define TRACE "0af7651916cd43dd8448eb211c80319c"

static void test_fields(void **state)
{
	Tracevault__V1__QueryFilter m = TRACEVAULT__V1__QUERY_FILTER__INIT;
	Tracevault__V1__Range r5 = TRACEVAULT__V1__RANGE__INIT, r404 = TRACEVAULT__V1__RANGE__INIT,
			      lat = TRACEVAULT__V1__RANGE__INIT;
	Tracevault__V1__Range *st[] = { &r404, &r5 };
	Tracevault__V1__StringMatch sm = TRACEVAULT__V1__STRING_MATCH__INIT;
	Tracevault__V1__StringMatch *sms[] = { &sm };
	char *methods[] = { "PUT", "POST" };
	char *remotes[] = { "10.0.0.0/8", "2001:db8::/32" };
	char *traces[] = { "0AF7651916CD43DD8448EB211C80319C" };
	uint32_t pids[] = { 7, 42 };
	struct rec a, b;

	(void)state;
	pack(&a, 300000000, 42, "nginx", "10.1.2.3:5000", "POST", "/api/v1/x?id=3", 503, TRACE,
	     0, "server", "Shop.Example:8080");
	pack(&b, 1000, 9, "curl", "[2001:db8::5]:443", "GET", "/img/a.png", 0, "", 1 | 4,
	     "client", "cdn.example");
	assert_true(run(NULL, &a));
	assert_true(run(&m, &a)); /* all empty: every record */

	r5.lo = 500, r5.hi = 599, r404.lo = r404.hi = 404;
	m.n_status = 2, m.status = st;
	assert_true(run(&m, &a));
	assert_false(run(&m, &b));
	r404.lo = r404.hi = 0; /* no response */
	assert_true(run(&m, &b));
	m.n_status = 0;

	m.n_methods = 2, m.methods = methods;
	assert_true(run(&m, &a));
	assert_false(run(&m, &b));
	m.n_methods = 0;

	m.n_pids = 2, m.pids = pids;
	assert_true(run(&m, &a));
	assert_false(run(&m, &b));
	m.n_pids = 0;

	m.role = TRACEVAULT__V1__ROLE__ROLE_CLIENT;
	assert_false(run(&m, &a));
	assert_true(run(&m, &b));
	m.role = TRACEVAULT__V1__ROLE__ROLE_SERVER;
	assert_true(run(&m, &a));
	m.role = 0;

	m.n_remotes = 2, m.remotes = remotes;
	assert_true(run(&m, &a));
	assert_true(run(&m, &b));
	remotes[0] = "10.1.2.4", remotes[1] = "::ffff:10.1.2.0/120"; /* v4-mapped net */
	assert_true(run(&m, &a));
	assert_false(run(&m, &b));
	m.n_remotes = 1;
	assert_false(run(&m, &a));
	m.n_remotes = 0;

	m.n_trace_ids = 1, m.trace_ids = traces;
	assert_true(run(&m, &a));
	assert_false(run(&m, &b));
	m.n_trace_ids = 0;

	lat.lo = 250000000, lat.hi = UINT64_MAX;
	m.latency_ns = &lat;
	assert_true(run(&m, &a));
	assert_false(run(&m, &b));
	lat.lo = 0, lat.hi = 1000;
	assert_false(run(&m, &a));
	assert_true(run(&m, &b));
	m.latency_ns = NULL;

	m.flags_any = 4;
	assert_false(run(&m, &a));
	assert_true(run(&m, &b));
	m.flags_any = 0, m.flags_all = 5;
	assert_true(run(&m, &b));
	m.flags_all = 7;
	assert_false(run(&m, &b));
	m.flags_all = 0, m.flags_none = 0xffffffff;
	assert_true(run(&m, &a));
	assert_false(run(&m, &b));
	m.flags_none = 0;

	m.n_paths = 1, m.paths = sms;
	sm.kind = TRACEVAULT__V1__MATCH_KIND__MATCH_EXACT, sm.value = "/api/v1/x";
	assert_true(run(&m, &a)); /* the path before '?' */
	m.paths_with_query = true;
	assert_false(run(&m, &a));
	sm.value = "/api/v1/x?id=3";
	assert_true(run(&m, &a));
	m.paths_with_query = false;
	sm.kind = TRACEVAULT__V1__MATCH_KIND__MATCH_PREFIX, sm.value = "/api/";
	assert_true(run(&m, &a));
	assert_false(run(&m, &b));
	sm.kind = TRACEVAULT__V1__MATCH_KIND__MATCH_GLOB, sm.value = "*.png";
	assert_false(run(&m, &a));
	assert_true(run(&m, &b));
	m.n_paths = 0;

	m.n_hosts = 1, m.hosts = sms;
	sm.kind = TRACEVAULT__V1__MATCH_KIND__MATCH_EXACT, sm.value = "shop.example";
	assert_true(run(&m, &a)); /* case and port ignored */
	sm.value = "SHOP.example:8080";
	assert_true(run(&m, &a));
	sm.value = "shop.example:80";
	assert_false(run(&m, &a));
	m.n_hosts = 0;

	m.n_comms = 1, m.comms = sms;
	sm.kind = TRACEVAULT__V1__MATCH_KIND__MATCH_GLOB, sm.value = "ngin?";
	assert_true(run(&m, &a));
	assert_false(run(&m, &b));

	/* fields AND: comm passes a, the method does not */
	m.n_methods = 1, methods[0] = "GET";
	assert_false(run(&m, &a));
	assert_false(run(&m, &b));
}

static void test_errors(void **state)
{
	Tracevault__V1__QueryFilter m = TRACEVAULT__V1__QUERY_FILTER__INIT;
	Tracevault__V1__Range r = TRACEVAULT__V1__RANGE__INIT;
	Tracevault__V1__Range *rs[] = { &r };
	char *remotes[] = { "::1", "10.0.0.0/33" };
	char *traces[] = { "xyz" };
	char *many[TV_FILTER_MAX_ENTRIES + 1];
	char big[TV_FILTER_MAX_VALUE_BYTES + 2];
	char err[TV_FILTER_ERR_LEN];
	struct tv_filter *f;

	(void)state;
	m.n_remotes = 2, m.remotes = remotes;
	assert_int_equal(tv_filter_compile(&m, &f, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "filter.remotes[1]: '10.0.0.0/33' is not an address or CIDR");
	assert_null(f);
	m.n_remotes = 0;
	m.n_trace_ids = 1, m.trace_ids = traces;
	assert_int_equal(tv_filter_compile(&m, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "filter.trace_ids[0]"));
	m.n_trace_ids = 0;
	r.lo = 600, r.hi = 500;
	m.n_status = 1, m.status = rs;
	assert_int_equal(tv_filter_compile(&m, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "filter.status[0]"));
	m.n_status = 0;
	m.latency_ns = &r;
	assert_int_equal(tv_filter_compile(&m, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "filter.latency_ns"));
	m.latency_ns = NULL;
	for (size_t i = 0; i < TV_FILTER_MAX_ENTRIES + 1; i++)
		many[i] = "GET";
	m.n_methods = TV_FILTER_MAX_ENTRIES + 1, m.methods = many;
	assert_int_equal(tv_filter_compile(&m, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "filter.methods"));
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	many[3] = big;
	m.n_methods = 4;
	assert_int_equal(tv_filter_compile(&m, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "filter.methods[3]"));
}

static void test_malformed(void **state)
{
	Tracevault__V1__QueryFilter m = TRACEVAULT__V1__QUERY_FILTER__INIT;
	struct tv_filter *f;
	char err[TV_FILTER_ERR_LEN];
	struct rec a;
	uint8_t junk[] = { 0x4a, 0x7f, 'x' }; /* field 9, length past the end */

	(void)state;
	m.flags_none = 0xffffffff;
	assert_int_equal(tv_filter_compile(&m, &f, err, sizeof(err)), 0);
	pack(&a, 1, 1, "c", "1.2.3.4:1", "GET", "/", 200, "", 0, "server", "h");
	assert_true(tv_filter_match(f, a.buf, a.len));
	for (size_t n = 0; n < a.len; n++) /* every cut either fails or parses a prefix */
		(void)tv_filter_match(f, a.buf, n);
	assert_false(tv_filter_match(f, junk, sizeof(junk)));
	tv_filter_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
