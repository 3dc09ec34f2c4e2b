/* Unit tests for the /proc/net/tcp{,6} line parser of client/capture/preexisting.c: addresses come
 * out as the kernel side stores them (network byte order, IPv4 in the first 4 bytes, ports in host
 * order, a v4-mapped pair as AF_INET), so seeded sockets look like accepted ones. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <sys/socket.h>

#include "capture/preexisting.h"

/* The kernel prints each 32-bit word of an address as %08X of its in-memory value: build the
 * text the same way, so the test holds on either byte order. */
static void hex_of(const char *ip, int v6, char *out)
{
	uint8_t a[16];
	size_t words = v6 ? 4 : 1;

	assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, ip, a), 1);
	for (size_t i = 0; i < words; i++) {
		uint32_t w;

		memcpy(&w, a + 4 * i, sizeof(w));
		sprintf(out + 8 * i, "%08X", w);
	}
}

static void line_of(char *buf, size_t len, const char *local, unsigned lport, const char *remote,
		    unsigned rport, unsigned state, unsigned long inode, int v6)
{
	char l[33], r[33];

	hex_of(local, v6, l);
	hex_of(remote, v6, r);
	snprintf(buf, len,
		 "   3: %s:%04X %s:%04X %02X 00000000:00000000 00:00000000 00000000     0        0 "
		 "%lu 1 0000000000000000 20 4 30 10 -1\n",
		 l, lport, r, rport, state, inode);
}

static void assert_addr(const struct tv_event_addr *a, int family, const char *ip, unsigned port)
{
	uint8_t want[16] = { 0 };

	assert_int_equal(inet_pton(family, ip, want), 1);
	assert_int_equal(a->family, family);
	assert_int_equal(a->port, port);
	assert_memory_equal(a->addr, want, 16);
}

static void test_ipv4_established_line(void **state)
{
	struct tv_proc_tcp_entry e;
	char line[256];

	(void)state;
	line_of(line, sizeof(line), "127.0.0.1", 8080, "10.1.2.3", 40000, TV_TCP_ESTABLISHED, 987654,
		0);
	assert_int_equal(tv_proc_tcp_parse_line(line, 0, &e), 0);
	assert_int_equal(e.state, TV_TCP_ESTABLISHED);
	assert_int_equal(e.inode, 987654);
	assert_addr(&e.local, AF_INET, "127.0.0.1", 8080);
	assert_addr(&e.remote, AF_INET, "10.1.2.3", 40000);
}

static void test_ipv6_listener_line(void **state)
{
	struct tv_proc_tcp_entry e;
	char line[256];

	(void)state;
	line_of(line, sizeof(line), "::", 443, "::", 0, TV_TCP_LISTEN, 42, 1);
	assert_int_equal(tv_proc_tcp_parse_line(line, 1, &e), 0);
	assert_int_equal(e.state, TV_TCP_LISTEN);
	assert_addr(&e.local, AF_INET6, "::", 443);
	line_of(line, sizeof(line), "2001:db8::1", 443, "fe80::2", 51000, TV_TCP_ESTABLISHED, 43, 1);
	assert_int_equal(tv_proc_tcp_parse_line(line, 1, &e), 0);
	assert_addr(&e.local, AF_INET6, "2001:db8::1", 443);
	assert_addr(&e.remote, AF_INET6, "fe80::2", 51000);
}

/* A dual-stack socket's IPv4 peer is reported as plain IPv4, as capture.bpf.c does. */
static void test_v4_mapped_pair_is_ipv4(void **state)
{
	struct tv_proc_tcp_entry e;
	char line[256];

	(void)state;
	line_of(line, sizeof(line), "::ffff:127.0.0.1", 8000, "::ffff:127.0.0.1", 50123,
		TV_TCP_ESTABLISHED, 7, 1);
	assert_int_equal(tv_proc_tcp_parse_line(line, 1, &e), 0);
	assert_addr(&e.local, AF_INET, "127.0.0.1", 8000);
	assert_addr(&e.remote, AF_INET, "127.0.0.1", 50123);
}

static void test_header_and_garbage_are_rejected(void **state)
{
	struct tv_proc_tcp_entry e;
	char line[256];

	(void)state;
	assert_int_equal(tv_proc_tcp_parse_line("  sl  local_address rem_address   st tx_queue "
						"rx_queue tr tm->when retrnsmt   uid  timeout "
						"inode\n", 0, &e), -EINVAL);
	assert_int_equal(tv_proc_tcp_parse_line("", 0, &e), -EINVAL);
	/* a tcp6 line read as tcp (address too long) and the reverse */
	line_of(line, sizeof(line), "::1", 80, "::1", 5000, TV_TCP_ESTABLISHED, 1, 1);
	assert_int_equal(tv_proc_tcp_parse_line(line, 0, &e), -EINVAL);
	line_of(line, sizeof(line), "127.0.0.1", 80, "127.0.0.1", 5000, TV_TCP_ESTABLISHED, 1, 0);
	assert_int_equal(tv_proc_tcp_parse_line(line, 1, &e), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv4_established_line),
		cmocka_unit_test(test_ipv6_listener_line),
		cmocka_unit_test(test_v4_mapped_pair_is_ipv4),
		cmocka_unit_test(test_header_and_garbage_are_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
