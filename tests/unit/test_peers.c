/* The per-peer stream table (server/peers.h): gRPC's peer strings parsed into peers (IPv4,
 * IPv6 grouped by /64, v4-mapped as IPv4, unix sockets as one peer, garbage refused and
 * grouped as one unknown peer), the default and clamped shares, and the counts: a peer is
 * refused at its share while others are served, entries go with their last stream, and the
 * table against a model under random churn (backward-shift deletion keeps every entry
 * reachable). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "server/peers.h"

static struct tv_peer parsed(const char *s)
{
	struct tv_peer p;

	assert_int_equal(tv_peer_parse(s, &p), 0);
	return p;
}

static const char *text(const char *s)
{
	static char buf[TV_PEER_TEXT_LEN];
	struct tv_peer p = parsed(s);

	return tv_peer_format(&p, buf, sizeof(buf));
}

static bool same_peer(const char *a, const char *b)
{
	struct tv_peer x = parsed(a), y = parsed(b);

	return x.kind == y.kind && x.addr == y.addr;
}

static void test_ipv4_peers_are_their_address(void **state)
{
	struct tv_peer p = parsed("ipv4:127.0.0.2:5555");

	(void)state;
	assert_int_equal(p.kind, TV_PEER_IPV4);
	assert_int_equal(p.addr, 0x7f000002u);
	assert_string_equal(text("ipv4:127.0.0.2:5555"), "127.0.0.2");
	assert_string_equal(text("ipv4:255.255.255.255:65535"), "255.255.255.255");
	/* the port does not matter, the address does */
	assert_true(same_peer("ipv4:10.1.2.3:1", "ipv4:10.1.2.3:60000"));
	assert_false(same_peer("ipv4:10.1.2.3:1", "ipv4:10.1.2.4:1"));
}

static void test_ipv6_peers_are_grouped_by_64(void **state)
{
	(void)state;
	assert_string_equal(text("ipv6:[::1]:5555"), "::/64");
	/* gRPC 1.51 escapes the brackets (seen from a real client of [::1]) */
	assert_string_equal(text("ipv6:%5B::1%5D:55348"), "::/64");
	assert_true(same_peer("ipv6:%5b2001:db8:1:2::1%5d:1", "ipv6:[2001:db8:1:2::7]:2"));
	assert_true(same_peer("ipv6:%5Bfe80::1%252%5D:7070", "ipv6:[fe80::9]:7070"));
	assert_string_equal(text("ipv6:[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443"), "2001:db8:1:2::/64");
	/* one /64, any interface id, any port: one peer */
	assert_true(same_peer("ipv6:[2001:db8:1:2::1]:1", "ipv6:[2001:db8:1:2:ffff:ffff:ffff:ffff]:2"));
	/* the next /64 is another */
	assert_false(same_peer("ipv6:[2001:db8:1:2::1]:1", "ipv6:[2001:db8:1:3::1]:1"));
	assert_int_equal(parsed("ipv6:[2001:db8:1:2::1]:1").addr, 0x20010db800010002ull);
	assert_int_equal(parsed("ipv6:[2001:db8:1:2::1]:1").kind, TV_PEER_IPV6_64);
	/* a scope id (RFC 6874 "%25", or gRPC's older "%") names the interface: dropped */
	assert_true(same_peer("ipv6:[fe80::1%252]:7070", "ipv6:[fe80::9]:7070"));
	assert_true(same_peer("ipv6:[fe80::1%2]:7070", "ipv6:[fe80::9]:7070"));
	assert_string_equal(text("ipv6:[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1"),
			    "ffff:ffff:ffff:ffff::/64");
}

static void test_v4_mapped_ipv6_is_its_ipv4_address(void **state)
{
	struct tv_peer p = parsed("ipv6:[::ffff:127.0.0.2]:5555");

	(void)state;
	assert_int_equal(p.kind, TV_PEER_IPV4);
	assert_true(same_peer("ipv6:[::ffff:127.0.0.2]:5555", "ipv4:127.0.0.2:1"));
	assert_false(same_peer("ipv6:[::ffff:127.0.0.2]:5555", "ipv6:[::127.0.0.2]:1"));
	assert_string_equal(text("ipv6:[::ffff:7f00:2]:9"), "127.0.0.2");
}

static void test_unix_sockets_are_one_peer(void **state)
{
	(void)state;
	assert_int_equal(parsed("unix:/run/tv.sock").kind, TV_PEER_LOCAL);
	assert_true(same_peer("unix:/run/tv.sock", "unix-abstract:tv"));
	assert_true(same_peer("unix:", "unix:/other"));
	assert_string_equal(text("unix:/x"), "local (unix socket)");
}

static void test_garbage_is_refused_as_one_unknown_peer(void **state)
{
	static const char *const bad[] = {
		"", "ipv4:", "ipv4:127.0.0.1", "ipv4:127.0.0.1:", "ipv4:127.0.0.1:65536",
		"ipv4:127.0.0.1:80x", "ipv4:127.0.0.256:1", "ipv4:1.2.3:1", "ipv4::1",
		"ipv4:[127.0.0.1]:1", "ipv6:::1:1", "ipv6:[::1]", "ipv6:[::1]:", "ipv6:[::1:1",
		"ipv6:[]:1", "ipv6:[%25]:1", "ipv6:[::g]:1", "ipv6:[127.0.0.1]:1",
		"ipv6:[1:2:3:4:5:6:7:8:9]:1", "IPV4:127.0.0.1:1", "vsock:3:1024", "fd:7",
		"127.0.0.1:5555", "ipv4:127.0.0.1:5555 ", "ipv4: 127.0.0.1:5555",
		"ipv6:[aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa]:1",
		"ipv6:%5B::1:1", "ipv6:%5B::1%5D", "ipv6:%5::1%5D:1",
		"ipv6:[::1]:1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	struct tv_peer p = { TV_PEER_IPV4, 42 };
	char buf[TV_PEER_TEXT_LEN];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = (struct tv_peer){ TV_PEER_IPV4, 42 };
		if (tv_peer_parse(bad[i], &p) != -EINVAL)
			fail_msg("'%s' parsed", bad[i]);
		assert_int_equal(p.kind, TV_PEER_UNKNOWN);
		assert_int_equal(p.addr, 0);
	}
	assert_int_equal(tv_peer_parse(NULL, &p), -EINVAL);
	assert_int_equal(p.kind, TV_PEER_UNKNOWN);
	assert_string_equal(tv_peer_format(&p, buf, sizeof(buf)), "unknown address");
	/* a short buffer is cut, never overrun */
	p = parsed("ipv4:192.168.100.200:1");
	memset(buf, 'x', sizeof(buf));
	tv_peer_format(&p, buf, 5);
	assert_string_equal(buf, "192.");
	assert_int_equal(buf[5], 'x');
}

static void test_share_defaults_to_half_and_never_passes_the_server_limit(void **state)
{
	(void)state;
	assert_int_equal(tv_peers_limit(0, 256), 128);
	assert_int_equal(tv_peers_limit(0, 64), 32);
	assert_int_equal(tv_peers_limit(0, 33), 16);
	assert_int_equal(tv_peers_limit(0, 2), 1);
	assert_int_equal(tv_peers_limit(0, 1), 1);
	assert_int_equal(tv_peers_limit(5, 32), 5);
	assert_int_equal(tv_peers_limit(32, 32), 32);
	assert_int_equal(tv_peers_limit(100, 32), 32);
	assert_int_equal(tv_peers_limit(1, 1), 1);
}

static void test_new_refuses_limits_out_of_range(void **state)
{
	struct tv_peers *t = (struct tv_peers *)1;

	(void)state;
	assert_int_equal(tv_peers_new(&t, (unsigned[]){ 0, 4 }, (unsigned[]){ 1, 1 }), -EINVAL);
	assert_null(t);
	assert_int_equal(tv_peers_new(&t, (unsigned[]){ 4, 4 }, (unsigned[]){ 0, 1 }), -EINVAL);
	assert_int_equal(tv_peers_new(&t, (unsigned[]){ 4, 4 }, (unsigned[]){ 5, 1 }), -EINVAL);
	assert_int_equal(tv_peers_new(&t, (unsigned[]){ 65537, 4 }, (unsigned[]){ 1, 1 }),
			 -EINVAL);
	assert_int_equal(tv_peers_new(&t, (unsigned[]){ 65536, 65536 },
				      (unsigned[]){ 65536, 1 }), 0);
	assert_non_null(t);
	tv_peers_free(t);
	tv_peers_free(NULL);
}

static void test_a_peer_at_its_share_is_refused_while_others_are_served(void **state)
{
	struct tv_peers *t;
	struct tv_peer flood = parsed("ipv4:127.0.0.2:1"), valid = parsed("ipv4:127.0.0.1:2");
	unsigned held = 0;

	(void)state;
	assert_int_equal(tv_peers_new(&t, (unsigned[]){ 32, 8 }, (unsigned[]){ 16, 4 }), 0);
	assert_int_equal(tv_peers_per_peer(t, TV_PEER_WRITE), 16);
	assert_int_equal(tv_peers_per_peer(t, TV_PEER_QUERY), 4);
	for (int i = 0; i < 16; i++)
		assert_int_equal(tv_peers_acquire(t, &flood, TV_PEER_WRITE, NULL), 0);
	assert_int_equal(tv_peers_acquire(t, &flood, TV_PEER_WRITE, &held), -EBUSY);
	assert_int_equal(held, 16);
	assert_int_equal(tv_peers_held(t, &flood, TV_PEER_WRITE), 16);
	/* its Query share is its own */
	for (int i = 0; i < 4; i++)
		assert_int_equal(tv_peers_acquire(t, &flood, TV_PEER_QUERY, NULL), 0);
	assert_int_equal(tv_peers_acquire(t, &flood, TV_PEER_QUERY, &held), -EBUSY);
	assert_int_equal(held, 4);
	/* another address is served */
	assert_int_equal(tv_peers_acquire(t, &valid, TV_PEER_WRITE, NULL), 0);
	assert_int_equal(tv_peers_acquire(t, &valid, TV_PEER_QUERY, NULL), 0);
	assert_int_equal(tv_peers_count(t), 2);
	/* one stream given back: one more is counted, then refused again */
	tv_peers_release(t, &flood, TV_PEER_WRITE);
	assert_int_equal(tv_peers_held(t, &flood, TV_PEER_WRITE), 15);
	assert_int_equal(tv_peers_acquire(t, &flood, TV_PEER_WRITE, NULL), 0);
	assert_int_equal(tv_peers_acquire(t, &flood, TV_PEER_WRITE, NULL), -EBUSY);
	/* the entry goes with the last stream of both classes */
	for (int i = 0; i < 16; i++)
		tv_peers_release(t, &flood, TV_PEER_WRITE);
	assert_int_equal(tv_peers_count(t), 2);
	assert_int_equal(tv_peers_held(t, &flood, TV_PEER_QUERY), 4);
	for (int i = 0; i < 4; i++)
		tv_peers_release(t, &flood, TV_PEER_QUERY);
	assert_int_equal(tv_peers_count(t), 1);
	assert_int_equal(tv_peers_held(t, &flood, TV_PEER_WRITE), 0);
	/* releasing what was not acquired changes nothing */
	tv_peers_release(t, &flood, TV_PEER_WRITE);
	tv_peers_release(t, &valid, TV_PEER_WRITE);
	tv_peers_release(t, &valid, TV_PEER_WRITE);
	assert_int_equal(tv_peers_held(t, &valid, TV_PEER_QUERY), 1);
	assert_int_equal(tv_peers_count(t), 1);
	tv_peers_release(t, &valid, TV_PEER_QUERY);
	assert_int_equal(tv_peers_count(t), 0);
	tv_peers_free(t);
}

static void test_kinds_with_the_same_number_are_different_peers(void **state)
{
	struct tv_peers *t;
	struct tv_peer a = { TV_PEER_IPV4, 0 }, b = { TV_PEER_IPV6_64, 0 },
		       l = { TV_PEER_LOCAL, 0 }, u = { TV_PEER_UNKNOWN, 0 };

	(void)state;
	assert_int_equal(tv_peers_new(&t, (unsigned[]){ 4, 4 }, (unsigned[]){ 1, 1 }), 0);
	assert_int_equal(tv_peers_acquire(t, &a, TV_PEER_WRITE, NULL), 0);
	assert_int_equal(tv_peers_acquire(t, &b, TV_PEER_WRITE, NULL), 0);
	assert_int_equal(tv_peers_acquire(t, &l, TV_PEER_WRITE, NULL), 0);
	assert_int_equal(tv_peers_acquire(t, &u, TV_PEER_WRITE, NULL), 0);
	assert_int_equal(tv_peers_acquire(t, &u, TV_PEER_WRITE, NULL), -EBUSY);
	assert_int_equal(tv_peers_count(t), 4);
	tv_peers_free(t);
}

static void test_the_table_never_grows_past_the_server_limits(void **state)
{
	struct tv_peers *t;

	(void)state;
	/* sized for 1 + 1 streams: a caller that counts a third (past the server's limits, a
	 * bug) is refused, the table is not grown */
	assert_int_equal(tv_peers_new(&t, (unsigned[]){ 1, 1 }, (unsigned[]){ 1, 1 }), 0);
	assert_int_equal(tv_peers_acquire(t, &(struct tv_peer){ TV_PEER_IPV4, 1 }, TV_PEER_WRITE,
					  NULL), 0);
	assert_int_equal(tv_peers_acquire(t, &(struct tv_peer){ TV_PEER_IPV4, 2 }, TV_PEER_QUERY,
					  NULL), 0);
	assert_int_equal(tv_peers_acquire(t, &(struct tv_peer){ TV_PEER_IPV4, 3 }, TV_PEER_QUERY,
					  NULL), -ENOSPC);
	assert_int_equal(tv_peers_count(t), 2);
	tv_peers_release(t, &(struct tv_peer){ TV_PEER_IPV4, 1 }, TV_PEER_WRITE);
	assert_int_equal(tv_peers_acquire(t, &(struct tv_peer){ TV_PEER_IPV4, 3 }, TV_PEER_QUERY,
					  NULL), 0);
	tv_peers_free(t);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

#define MODEL_PEERS 300
#define MODEL_STEPS 100000

/* Random acquires and releases over many peers (some with neighbouring addresses, some of
 * another kind) against a model of the counts: every answer agrees, entries and counts too.
 * A quarter of the steps go to 8 busy peers, which meet their shares. */
static void churn(int npeers, unsigned maxw, unsigned maxq, unsigned sharew, unsigned shareq,
		  unsigned min_refused)
{
	struct tv_peers *t;
	struct tv_peer peer[MODEL_PEERS];
	unsigned held[MODEL_PEERS][TV_PEER_CLASSES] = { { 0 } };
	unsigned total[TV_PEER_CLASSES] = { 0 };
	const unsigned max[TV_PEER_CLASSES] = { maxw, maxq }, share[] = { sharew, shareq };
	unsigned refused = 0;

	for (int i = 0; i < MODEL_PEERS; i++)
		peer[i] = (struct tv_peer){ i % 3 ? TV_PEER_IPV4 : TV_PEER_IPV6_64,
					    i % 5 ? 0x0a000000u + (uint64_t)i : rnd() };
	assert_int_equal(tv_peers_new(&t, max, share), 0);
	for (int step = 0; step < MODEL_STEPS; step++) {
		int i = (int)(rnd() % 4 ? rnd() % (uint64_t)npeers : rnd() % 8);
		enum tv_peer_class c = (enum tv_peer_class)(rnd() % 2);
		size_t entries = 0;

		if (rnd() % 2 && total[c] < max[c]) {
			unsigned h = 0;
			int ret = tv_peers_acquire(t, &peer[i], c, &h);

			if (held[i][c] >= share[c]) {
				assert_int_equal(ret, -EBUSY);
				assert_int_equal(h, held[i][c]);
				refused++;
			} else {
				assert_int_equal(ret, 0);
				held[i][c]++;
				total[c]++;
			}
		} else if (held[i][c]) {
			tv_peers_release(t, &peer[i], c);
			held[i][c]--;
			total[c]--;
		}
		if (step % 97)
			continue;
		for (int k = 0; k < npeers; k++) {
			for (int cc = 0; cc < TV_PEER_CLASSES; cc++)
				assert_int_equal(tv_peers_held(t, &peer[k], (enum tv_peer_class)cc),
						 held[k][cc]);
			entries += held[k][0] || held[k][1];
		}
		assert_int_equal(tv_peers_count(t), entries);
	}
	assert_true(refused >= min_refused); /* the shares were met, not only the limits */
	tv_peers_free(t);
}

static void test_table_matches_a_model_under_churn(void **state)
{
	(void)state;
	churn(MODEL_PEERS, 256, 64, 5, 2, 200);
	/* 16 slots for at most 8 entries of 12 peers: long probe runs, deletions shift */
	churn(12, 4, 4, 2, 1, 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv4_peers_are_their_address),
		cmocka_unit_test(test_ipv6_peers_are_grouped_by_64),
		cmocka_unit_test(test_v4_mapped_ipv6_is_its_ipv4_address),
		cmocka_unit_test(test_unix_sockets_are_one_peer),
		cmocka_unit_test(test_garbage_is_refused_as_one_unknown_peer),
		cmocka_unit_test(test_share_defaults_to_half_and_never_passes_the_server_limit),
		cmocka_unit_test(test_new_refuses_limits_out_of_range),
		cmocka_unit_test(test_a_peer_at_its_share_is_refused_while_others_are_served),
		cmocka_unit_test(test_kinds_with_the_same_number_are_different_peers),
		cmocka_unit_test(test_the_table_never_grows_past_the_server_limits),
		cmocka_unit_test(test_table_matches_a_model_under_churn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
