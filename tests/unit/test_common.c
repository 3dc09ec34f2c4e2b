/* cmocka tests of common/ (the code both binaries share): sizes and limits, HOST:PORT and
 * server lists, gRPC status names and queue shutdown, clocks. Edges included: the largest
 * size that fits in 64 bits, port 65535, every kind of empty list entry; the metrics text
 * exposition, byte for byte. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/addr.h"
#include "common/clock.h"
#include "common/grpc_util.h"
#include "common/limit.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/size.h"
#include "common/status_range.h"
#include "common/usage.h"

static uint64_t size_of(const char *s)
{
	uint64_t v = 0xdeadbeef;

	assert_int_equal(tv_size_parse(s, &v), 0);
	return v;
}

static void test_size_parse_accepts_digits_and_binary_suffixes(void **state)
{
	(void)state;
	assert_int_equal(size_of("0"), 0);
	assert_int_equal(size_of("4096"), 4096);
	assert_int_equal(size_of("1K"), 1024);
	assert_int_equal(size_of("64K"), 64 << 10);
	assert_int_equal(size_of("16M"), 16 << 20);
	assert_int_equal(size_of("1G"), 1 << 30);
	assert_int_equal(size_of("2KiB"), 2048);
	assert_int_equal(size_of("3MiB"), 3 << 20);
	assert_true(size_of("18446744073709551615") == UINT64_MAX);
	assert_true(size_of("17179869183G") == 17179869183ull << 30);
}

static void test_size_parse_rejects_what_is_not_a_size(void **state)
{
	const char *bad[] = {"", "K", "-1", "+1", " 1", "1 ", "1k", "1KB", "1iB", "1Ki", "1.5M",
			     "1T", "0x10", "12x", "1MiBB"};
	uint64_t v = 7;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(tv_size_parse(bad[i], &v), -EINVAL);
		assert_int_equal(v, 7); /* untouched on error */
	}
}

static void test_size_parse_reports_overflow(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(tv_size_parse("18446744073709551616", &v), -ERANGE);
	assert_int_equal(tv_size_parse("17179869184G", &v), -ERANGE); /* 2^34 GiB = 2^64 */
	assert_int_equal(tv_size_parse("99999999999999999999999", &v), -ERANGE);
}

static void test_size_format_uses_the_largest_exact_suffix(void **state)
{
	char buf[32];

	(void)state;
	assert_int_equal(tv_size_format(0, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "0");
	tv_size_format(1000, buf, sizeof(buf));
	assert_string_equal(buf, "1000");
	tv_size_format(1024, buf, sizeof(buf));
	assert_string_equal(buf, "1K");
	tv_size_format(1536, buf, sizeof(buf));
	assert_string_equal(buf, "1536");
	tv_size_format(32u << 20, buf, sizeof(buf));
	assert_string_equal(buf, "32M");
	tv_size_format(1ull << 40, buf, sizeof(buf));
	assert_string_equal(buf, "1024G");
	tv_size_format((1u << 30) - 64, buf, sizeof(buf));
	assert_string_equal(buf, "1073741760");
	/* what it prints, it parses back to the same value */
	assert_int_equal(size_of("1024G"), 1ull << 40);
	assert_int_equal(tv_size_format(1ull << 30, buf, 2), -ENOSPC);
	assert_string_equal(buf, "");
	assert_int_equal(tv_size_format(1ull << 30, buf, 3), 2);
}

static void test_limit_check_edges(void **state)
{
	const struct tv_limit l = {.min = 1024, .max = 32u << 20};
	const struct tv_limit p = {.min = 4096, .max = 1u << 30, .pow2 = true};
	const struct tv_limit s = {.min = 1000, .max = 3600000, .step = 1000};

	(void)state;
	assert_int_equal(tv_limit_check(&l, 1023), -ERANGE);
	assert_int_equal(tv_limit_check(&l, 1024), 0);
	assert_int_equal(tv_limit_check(&l, 32u << 20), 0);
	assert_int_equal(tv_limit_check(&l, (32u << 20) + 1), -ERANGE);
	assert_int_equal(tv_limit_check(&l, UINT64_MAX), -ERANGE);
	assert_int_equal(tv_limit_check(&p, 2048), -ERANGE);
	assert_int_equal(tv_limit_check(&p, 4096), 0);
	assert_int_equal(tv_limit_check(&p, 4096 + 4096), 0);
	assert_int_equal(tv_limit_check(&p, 3 * 4096), -ERANGE);
	assert_int_equal(tv_limit_check(&p, 1u << 30), 0);
	assert_int_equal(tv_limit_check(&p, 2u << 30), -ERANGE);
	/* a step: whole seconds of a bound in ms (the HTTP port's idle timeout) */
	assert_int_equal(tv_limit_check(&s, 0), -ERANGE);
	assert_int_equal(tv_limit_check(&s, 999), -ERANGE);
	assert_int_equal(tv_limit_check(&s, 1000), 0);
	assert_int_equal(tv_limit_check(&s, 1500), -ERANGE);
	assert_int_equal(tv_limit_check(&s, 2000), 0);
	assert_int_equal(tv_limit_check(&s, 3600000), 0);
	assert_int_equal(tv_limit_check(&s, 3601000), -ERANGE);
}

static void test_limit_format_in_sizes_or_numbers(void **state)
{
	const struct tv_limit l = {.min = 1024, .max = 32u << 20};
	const struct tv_limit p = {.min = 4096, .max = 1u << 30, .pow2 = true};
	const struct tv_limit ms = {.min = 1, .max = 86400000};
	const struct tv_limit st = {.min = 1000, .max = 3600000, .step = 1000};
	const struct tv_limit sb = {.min = 4096, .max = 1u << 30, .step = 4096};
	char buf[64];

	(void)state;
	assert_int_equal(tv_limit_format(&l, true, buf, sizeof(buf)), 9);
	assert_string_equal(buf, "1K to 32M");
	tv_limit_format(&p, true, buf, sizeof(buf));
	assert_string_equal(buf, "a power of two, 4K to 1G");
	tv_limit_format(&ms, false, buf, sizeof(buf));
	assert_string_equal(buf, "1 to 86400000");
	tv_limit_format(&st, false, buf, sizeof(buf));
	assert_string_equal(buf, "1000 to 3600000, a multiple of 1000");
	tv_limit_format(&sb, true, buf, sizeof(buf));
	assert_string_equal(buf, "4K to 1G, a multiple of 4K");
	assert_int_equal(tv_limit_format(&l, true, buf, 5), -ENOSPC);
	assert_string_equal(buf, "");
}

/* The digit run every number parser starts with: stops at the first non-digit, refuses what
 * strtoull would take (sign, space), and 2^64 - 1 fits where 2^64 does not. */
static void test_parse_digits(void **state)
{
	const char *p = "7070x", *q;
	uint64_t v = 9;

	(void)state;
	assert_int_equal(tv_parse_digits(&p, &v), 0);
	assert_int_equal(v, 7070);
	assert_string_equal(p, "x");
	q = "18446744073709551615";
	assert_int_equal(tv_parse_digits(&q, &v), 0);
	assert_true(v == UINT64_MAX && *q == '\0');
	v = 9;
	for (const char *const *bad = (const char *const[]){ "", "x1", "+1", " 1", "-1", NULL };
	     *bad; bad++) {
		q = *bad;
		assert_int_equal(tv_parse_digits(&q, &v), -EINVAL);
		assert_ptr_equal(q, *bad);
	}
	q = "18446744073709551616";
	assert_int_equal(tv_parse_digits(&q, &v), -ERANGE);
	assert_int_equal(v, 9);
}

static void test_hostport_parse(void **state)
{
	char host[16];
	unsigned port = 9;

	(void)state;
	assert_int_equal(tv_hostport_parse("127.0.0.1:7070", host, sizeof(host), &port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 7070);
	assert_int_equal(tv_hostport_parse("h:0", host, sizeof(host), &port), 0);
	assert_int_equal(port, 0);
	assert_int_equal(tv_hostport_parse("h:65535", host, sizeof(host), &port), 0);
	assert_int_equal(port, 65535);
	assert_int_equal(tv_hostport_parse("[::1]:80", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 80);
	port = 9;
	/* an IPv6 address without brackets: which colon ends it cannot be told ("::1:80" is
	 * also the address ::1:80), so it is refused rather than split at the last colon */
	const char *bad[] = {"", "host", "host:", ":80", "[]:80", "h:65536", "h:-1", "h:+1",
			     "h: 1", "h:1x", "h:99999999999", "unix:/tmp/sock", "::1:80", "::1:0",
			     "fe80::1:7070"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tv_hostport_parse(bad[i], host, sizeof(host), &port), -EINVAL);
	assert_int_equal(port, 9);
	/* 15 bytes of host fit in 16 with the NUL, 16 do not */
	assert_int_equal(tv_hostport_parse("abcdefghijklmno:1", host, sizeof(host), &port), 0);
	assert_int_equal(tv_hostport_parse("abcdefghijklmnop:1", host, sizeof(host), &port),
			 -ENAMETOOLONG);
}

/* tracevaultd's plaintext rule hangs on it: only these hosts may serve without TLS */
static void test_host_is_loopback(void **state)
{
	static const char *const yes[] = { "127.0.0.1", "127.255.255.254", "127.0.0.0", "::1",
					   "::ffff:127.0.0.1", "localhost" };
	static const char *const no[] = { "0.0.0.0", "::", "128.0.0.1", "126.255.255.255",
					  "10.0.0.1", "::ffff:10.0.0.1", "::2", "localhost.",
					  "LOCALHOST.example", "myhost", "", "127.0.0.1 " };

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		assert_true(tv_host_is_loopback(yes[i]));
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_false(tv_host_is_loopback(no[i]));
}

static void test_server_list_rejects_every_empty_entry(void **state)
{
	const char *bad[] = {"", ",", "a,", ",a", "a,,b", ",,", "a,b,"};
	struct tv_server_list l = {.n = 5};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(tv_server_list_check(bad[i]), -EINVAL);
		assert_int_equal(tv_server_list_parse(bad[i], 0, &l), -EINVAL);
		assert_null(l.v);
		assert_int_equal(l.n, 0);
	}
	assert_int_equal(tv_server_list_check("a"), 0);
	assert_int_equal(tv_server_list_check("a:1,b:2"), 0);
}

static void test_server_list_splits_in_order(void **state)
{
	struct tv_server_list l;

	(void)state;
	assert_int_equal(tv_server_list_parse("127.0.0.1:1", 0, &l), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0], "127.0.0.1:1");
	tv_server_list_free(&l);
	assert_int_equal(tv_server_list_parse("a:1,b:2,c:3", 3, &l), 0);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0], "a:1");
	assert_string_equal(l.v[1], "b:2");
	assert_string_equal(l.v[2], "c:3");
	tv_server_list_free(&l);
	assert_null(l.v);
	tv_server_list_free(&l); /* an emptied list frees again safely */
	/* max_entries: at the bound accepted, one more refused */
	assert_int_equal(tv_server_list_parse("a,b,c,d", 3, &l), -E2BIG);
	assert_int_equal(l.n, 0);
}

static void test_every_grpc_status_has_its_name(void **state)
{
	(void)state;
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_OK), "OK");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_CANCELLED), "CANCELLED");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_UNKNOWN), "UNKNOWN");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_INVALID_ARGUMENT), "INVALID_ARGUMENT");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_DEADLINE_EXCEEDED),
			    "DEADLINE_EXCEEDED");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_NOT_FOUND), "NOT_FOUND");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_ALREADY_EXISTS), "ALREADY_EXISTS");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_PERMISSION_DENIED),
			    "PERMISSION_DENIED");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_RESOURCE_EXHAUSTED),
			    "RESOURCE_EXHAUSTED");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_FAILED_PRECONDITION),
			    "FAILED_PRECONDITION");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_ABORTED), "ABORTED");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_OUT_OF_RANGE), "OUT_OF_RANGE");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_UNIMPLEMENTED), "UNIMPLEMENTED");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_INTERNAL), "INTERNAL");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_UNAVAILABLE), "UNAVAILABLE");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_DATA_LOSS), "DATA_LOSS");
	assert_string_equal(tv_grpc_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
	assert_string_equal(tv_grpc_status_name((grpc_status_code)17), "UNKNOWN_STATUS");
	assert_string_equal(tv_grpc_status_name((grpc_status_code)-1), "UNKNOWN_STATUS");
}

static void test_cq_destroy_drains_an_idle_queue(void **state)
{
	(void)state;
	grpc_init();
	tv_grpc_cq_destroy(grpc_completion_queue_create_for_next(NULL));
	tv_grpc_cq_destroy(NULL);
	grpc_shutdown();
}

static void test_int_arg(void **state)
{
	grpc_arg a = tv_grpc_int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 16 << 20);

	(void)state;
	assert_int_equal(a.type, GRPC_ARG_INTEGER);
	assert_string_equal(a.key, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH);
	assert_int_equal(a.value.integer, 16 << 20);
}

/* getopt_long's results as both binaries word them (arg is argv[optind - 1]) */
static void test_getopt_reasons_one_wording(void **state)
{
	static const struct {
		int c;
		const char *arg;
		int optopt;
		const char *want;
	} cases[] = {
		{':', "--server", 256, "option '--server' needs a value"},
		{':', "-s", 's', "option '-s' needs a value"},
		{'?', "--headers=1", 300, "option '--headers' takes no value"},
		{'?', "--help=x", 'h', "option '--help' takes no value"},
		{'?', "--bogus=1", 0, "unknown option '--bogus=1'"},
		{'?', "--bogus", 0, "unknown option '--bogus'"},
		{'?', "-x", 'x', "unknown option '-x'"},
	};
	char buf[128];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tv_usage_getopt_reason(cases[i].c, cases[i].arg, cases[i].optopt, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].want);
	}
}

/* The argument getopt was reading: inside a group of short options optind has not moved yet,
 * and the one before it (here a long option) must not be named instead. */
static void test_getopt_arg_inside_a_short_group(void **state)
{
	char *argv[] = { "query", "--stats", "-zF", "table", NULL };

	(void)state;
	assert_string_equal(tv_usage_getopt_arg(argv, 2, 2), "-zF"); /* 'z' unknown, optind 2 */
	assert_string_equal(tv_usage_getopt_arg(argv, 1, 2), "--stats"); /* moved past it */
	assert_string_equal(tv_usage_getopt_arg(argv, 2, 3), "-zF"); /* the group's last letter */
}

static void test_clocks(void **state)
{
	uint64_t m0 = tv_monotonic_ns(), m1 = tv_monotonic_ns();
	struct timespec ts = tv_timespec_from_ns(5 * TV_NS_PER_S + 7);

	(void)state;
	assert_true(m1 >= m0);
	/* The default --to, every relative time and the catalog's stamps count from it: after
	 * 2026-01-01 (when this was written) and before 2100, a unix wall clock in ns, not s or
	 * ms, nor a monotonic or boot clock (far smaller) */
	assert_true(tv_realtime_ns() > 1767225600ull * TV_NS_PER_S);
	assert_true(tv_realtime_ns() < 4102444800ull * TV_NS_PER_S);
	assert_int_equal(ts.tv_sec, 5);
	assert_int_equal(ts.tv_nsec, 7);
	ts = tv_timespec_from_ns(TV_NS_PER_S - 1);
	assert_int_equal(ts.tv_sec, 0);
	assert_int_equal(ts.tv_nsec, 999999999);
}

static void collect_twice(void *arg)
{
	tv_metric_set(arg, 2 * tv_metric_get(arg));
}

/* The exposition format byte for byte: one HELP/TYPE per name (labelled series share it), the
 * help escaped, cumulative buckets in exact seconds ending with +Inf == _count, the collect
 * hook run first. */
static void test_metrics_render_text_format(void **state)
{
	static const uint64_t bounds[] = { 500000, 1000000000, 2500000000ull };
	uint64_t ring = 3, map = 0, fill = 21;
	struct tv_histogram h;
	struct tv_metric table[] = {
		{ "tv_lost_total", "Lost \\ events\nby reason", TV_METRIC_COUNTER,
		  "reason=\"ring_full\"", &ring, NULL },
		{ "tv_lost_total", "unused", TV_METRIC_COUNTER, "reason=\"map_full\"", &map, NULL },
		{ "tv_fill_bytes", "Fill.", TV_METRIC_GAUGE, NULL, &fill, NULL },
		{ "tv_commit_seconds", "Commits.", TV_METRIC_HISTOGRAM, NULL, NULL, &h },
	};
	struct tv_metrics m = { table, 4, collect_twice, &fill };
	char *out;
	size_t len;

	(void)state;
	assert_int_equal(tv_histogram_init(&h, bounds, 3), 0);
	tv_histogram_observe_ns(&h, 500000);      /* on a bound: in it */
	tv_histogram_observe_ns(&h, 500001);
	tv_histogram_observe_ns(&h, 3000000000ull); /* above all */
	tv_metric_add(&ring, 4);
	assert_int_equal(tv_metrics_render(&m, &out, &len), 0);
	assert_string_equal(out,
		"# HELP tv_lost_total Lost \\\\ events\\nby reason\n"
		"# TYPE tv_lost_total counter\n"
		"tv_lost_total{reason=\"ring_full\"} 7\n"
		"tv_lost_total{reason=\"map_full\"} 0\n"
		"# HELP tv_fill_bytes Fill.\n"
		"# TYPE tv_fill_bytes gauge\n"
		"tv_fill_bytes 42\n"
		"# HELP tv_commit_seconds Commits.\n"
		"# TYPE tv_commit_seconds histogram\n"
		"tv_commit_seconds_bucket{le=\"0.0005\"} 1\n"
		"tv_commit_seconds_bucket{le=\"1\"} 2\n"
		"tv_commit_seconds_bucket{le=\"2.5\"} 2\n"
		"tv_commit_seconds_bucket{le=\"+Inf\"} 3\n"
		"tv_commit_seconds_sum 3.001000001\n"
		"tv_commit_seconds_count 3\n");
	assert_int_equal(len, strlen(out));
	free(out);
	/* a histogram entry without its histogram is refused, not dereferenced */
	m.v = &table[3];
	m.n = 1;
	table[3].hist = NULL;
	assert_int_equal(tv_metrics_render(&m, &out, &len), -EINVAL);
	assert_int_equal(tv_histogram_init(&h, (const uint64_t[]){ 2, 1 }, 2), -EINVAL);
	assert_int_equal(tv_histogram_init(&h, bounds, TV_HISTOGRAM_MAX_BOUNDS + 1), -EINVAL);
}

/* The status selector of --status and the HTTP API's status= (one parser for both). */
static void test_status_range_parse(void **state)
{
	static const struct { const char *s; unsigned lo, hi; } OK[] = {
		{ "none", 0, 0 }, { "1xx", 100, 199 }, { "5xx", 500, 599 }, { "100", 100, 100 },
		{ "599", 599, 599 }, { "404", 404, 404 }, { "400-499", 400, 499 },
		{ "200-200", 200, 200 }, { "100-599", 100, 599 },
		/* past the registered classes: a status line may carry them, records hold them */
		{ "600", 600, 600 }, { "999", 999, 999 }, { "6xx", 600, 699 }, { "9xx", 900, 999 },
		{ "100-999", 100, 999 }, { "599-600", 599, 600 },
	};
	static const char *const BAD[] = {
		"", "1000", "099", "000", "-1", " 404", "404 ", "+404", "4044", "40", "40x",
		"4x", "0xx", "xxx", "10xx", "599-100", "99-100", "100-1000", "400-4999", "4xx-5xx",
		"None", "nonE", "none ", "4294967700", "404,500",
	};
	unsigned lo, hi;

	(void)state;
	for (size_t i = 0; i < sizeof(OK) / sizeof(OK[0]); i++) {
		lo = hi = 12345;
		assert_int_equal(tv_status_range_parse(OK[i].s, strlen(OK[i].s), &lo, &hi), 0);
		assert_int_equal(lo, OK[i].lo);
		assert_int_equal(hi, OK[i].hi);
	}
	for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
		lo = hi = 12345;
		assert_int_equal(tv_status_range_parse(BAD[i], strlen(BAD[i]), &lo, &hi), -EINVAL);
		assert_int_equal(lo, 12345);
		assert_int_equal(hi, 12345);
	}
	/* the length bounds the item: "404" out of "404,5xx" */
	assert_int_equal(tv_status_range_parse("404,5xx", 3, &lo, &hi), 0);
	assert_int_equal(lo, 404);
}

static int failing_handler(void *arg, const char *url, const struct tv_http_req *rq,
			   struct tv_http_reply *out)
{
	(void)arg, (void)url, (void)rq, (void)out;
	return -ENOMEM;
}

/* A handler's failure is answered 500 and leaves one line in the log (stderr) naming the
 * request and the error, with the client's control bytes shown as '?'. */
static void test_http_500_is_logged(void **state)
{
	static const struct tv_metrics m = { 0 };
	static const char req[] = "GET /api/x%1b%5b31m HTTP/1.0\r\n\r\n";
	struct tv_metrics_http *h = NULL;
	char bound[64], err[256], resp[512] = { 0 }, log[1024] = { 0 };
	FILE *tmp = tmpfile();
	int saved = dup(2), fd, port;
	size_t n = 0;
	ssize_t k;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	(void)state;
	assert_non_null(tmp);
	assert_true(saved >= 0);
	assert_int_equal(tv_metrics_http_bind(&h, "127.0.0.1:0", NULL, bound, sizeof(bound), err,
					      sizeof(err)), 0);
	tv_metrics_http_set_handler(h, failing_handler, NULL);
	assert_int_equal(tv_metrics_http_serve(h, &m, err, sizeof(err)), 0);
	port = atoi(strrchr(bound, ':') + 1);
	a.sin_port = htons((uint16_t)port);
	fflush(stderr);
	assert_true(dup2(fileno(tmp), 2) == 2);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
	while (n < sizeof(resp) - 1 && (k = read(fd, resp + n, sizeof(resp) - 1 - n)) > 0)
		n += (size_t)k;
	close(fd);
	tv_metrics_http_stop(h);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(log, 1, sizeof(log) - 1, tmp);
	fclose(tmp);
	assert_non_null(strstr(resp, " 500 "));
	assert_non_null(strstr(log, ": HTTP GET /api/x?[31m: answered 500: "));
	assert_non_null(strstr(log, strerror(ENOMEM)));
	assert_ptr_equal(strchr(log, '\n'), log + n - 1); /* one line */
}

/* The HTTP port's bounds: the defaults pass their own check, each field is checked at both
 * edges (connections at least one per thread of the pool, the idle timeout in whole seconds),
 * and bind refuses limits out of bound before it touches a socket. */
static void test_http_limits_checked_at_both_edges(void **state)
{
	struct tv_metrics_http_limits l = tv_metrics_http_limits_default();
	struct tv_metrics_http *h = NULL;
	char why[128], bound[64];

	(void)state;
	assert_int_equal(l.max_connections, TV_METRICS_DEFAULT_MAX_CONNECTIONS);
	assert_int_equal(tv_metrics_http_limits_check(&l, why, sizeof(why)), 0);
	l.max_connections = TV_HTTP_THREADS;
	l.max_connections_per_ip = 0;
	l.request_timeout_ms = 1000;
	l.idle_timeout_ms = 3600000;
	assert_int_equal(tv_metrics_http_limits_check(&l, why, sizeof(why)), 0);
	l.max_connections = TV_HTTP_THREADS - 1;
	assert_int_equal(tv_metrics_http_limits_check(&l, why, sizeof(why)), -ERANGE);
	assert_string_equal(why, "max_connections 3: want 4 to 1024");
	l.max_connections = TV_METRICS_MAX_CONNECTIONS_MAX;
	l.max_connections_per_ip = -1;
	assert_int_equal(tv_metrics_http_limits_check(&l, why, sizeof(why)), -ERANGE);
	l.max_connections_per_ip = TV_METRICS_MAX_CONNECTIONS_MAX + 1;
	assert_int_equal(tv_metrics_http_limits_check(&l, why, sizeof(why)), -ERANGE);
	l.max_connections_per_ip = TV_METRICS_MAX_CONNECTIONS_MAX;
	l.request_timeout_ms = 999;
	assert_int_equal(tv_metrics_http_limits_check(&l, why, sizeof(why)), -ERANGE);
	l.request_timeout_ms = 3600001;
	assert_int_equal(tv_metrics_http_limits_check(&l, why, sizeof(why)), -ERANGE);
	l.request_timeout_ms = 1500; /* the watchdog counts ms */
	assert_int_equal(tv_metrics_http_limits_check(&l, why, sizeof(why)), 0);
	l.idle_timeout_ms = 1500; /* libmicrohttpd counts whole seconds */
	assert_int_equal(tv_metrics_http_limits_check(&l, why, sizeof(why)), -ERANGE);
	assert_string_equal(why, "idle_timeout_ms 1500: want 1000 to 3600000, a multiple of 1000");
	assert_int_equal(tv_metrics_http_bind(&h, "127.0.0.1:0", &l, bound, sizeof(bound), why,
					      sizeof(why)), -ERANGE);
	assert_null(h);
	/* the descriptors the server's plan reserves follow the connections */
	assert_int_equal(TV_METRICS_MAX_FDS(8) - TV_METRICS_MAX_FDS(0), 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_parse_accepts_digits_and_binary_suffixes),
		cmocka_unit_test(test_http_limits_checked_at_both_edges),
		cmocka_unit_test(test_size_parse_rejects_what_is_not_a_size),
		cmocka_unit_test(test_size_parse_reports_overflow),
		cmocka_unit_test(test_size_format_uses_the_largest_exact_suffix),
		cmocka_unit_test(test_limit_check_edges),
		cmocka_unit_test(test_limit_format_in_sizes_or_numbers),
		cmocka_unit_test(test_parse_digits),
		cmocka_unit_test(test_hostport_parse),
		cmocka_unit_test(test_host_is_loopback),
		cmocka_unit_test(test_server_list_rejects_every_empty_entry),
		cmocka_unit_test(test_server_list_splits_in_order),
		cmocka_unit_test(test_every_grpc_status_has_its_name),
		cmocka_unit_test(test_cq_destroy_drains_an_idle_queue),
		cmocka_unit_test(test_int_arg),
		cmocka_unit_test(test_getopt_reasons_one_wording),
		cmocka_unit_test(test_getopt_arg_inside_a_short_group),
		cmocka_unit_test(test_clocks),
		cmocka_unit_test(test_metrics_render_text_format),
		cmocka_unit_test(test_status_range_parse),
		cmocka_unit_test(test_http_500_is_logged),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
