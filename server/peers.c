/* Per-peer stream counts (server/peers.h): the peer strings of gRPC C core parsed into a key
 * (IPv4 address, IPv6 /64, local, unknown), and an open-addressing table (linear probing,
 * deletion by backward shift, so no tombstones pile up under churn) of the keys holding
 * streams, allocated once at its largest size. */
#include "server/peers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct tv_limit tv_peers_streams_limit = { .min = 1, .max = TV_PEERS_MAX_STREAMS };

/* ---- peer strings ---- */

/* ":PORT" ending the string: decimal digits, at most 65535. */
static bool port_tail(const char *p)
{
	unsigned long v = 0;

	if (*p++ != ':' || !*p)
		return false;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > 65535)
			return false;
	}
	return true;
}

static int parse_ipv4(const char *s, struct tv_peer *out)
{
	const char *colon = strrchr(s, ':');
	char host[INET_ADDRSTRLEN];
	struct in_addr a;
	size_t n;

	if (!colon || !port_tail(colon))
		return -EINVAL;
	n = (size_t)(colon - s);
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, &a) != 1)
		return -EINVAL;
	*out = (struct tv_peer){ TV_PEER_IPV4, ntohl(a.s_addr) };
	return 0;
}

/* "[ADDR]:PORT" or "[ADDR%SCOPE]:PORT" (unescaped): the scope names the interface, not the
 * peer, and is dropped. */
static int parse_ipv6(const char *s, struct tv_peer *out)
{
	const char *close = strchr(s, ']'), *pct;
	char host[INET6_ADDRSTRLEN];
	struct in6_addr a;
	uint64_t hi = 0;
	size_t n;

	if (*s++ != '[' || !close || !port_tail(close + 1))
		return -EINVAL;
	pct = memchr(s, '%', (size_t)(close - s));
	n = (size_t)((pct ? pct : close) - s);
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	if (inet_pton(AF_INET6, host, &a) != 1)
		return -EINVAL;
	if (IN6_IS_ADDR_V4MAPPED(&a)) {
		uint32_t v4;

		memcpy(&v4, &a.s6_addr[12], sizeof(v4));
		*out = (struct tv_peer){ TV_PEER_IPV4, ntohl(v4) };
		return 0;
	}
	for (int i = 0; i < 8; i++)
		hi = hi << 8 | a.s6_addr[i];
	*out = (struct tv_peer){ TV_PEER_IPV6_64, hi };
	return 0;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The URI's percent-escapes decoded into buf (len bytes with the NUL): gRPC 1.51 writes
 * "ipv6:%5B::1%5D:5555", newer versions "ipv6:[::1]:5555"; a '%' not followed by two hex
 * digits stays as it is (an older scope, "%2"). -EINVAL when it does not fit. */
static int unescape(const char *s, char *buf, size_t len)
{
	size_t n = 0;

	for (; *s; n++) {
		if (n + 1 >= len)
			return -EINVAL;
		if (s[0] == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
			buf[n] = (char)(hexval(s[1]) << 4 | hexval(s[2]));
			s += 3;
		} else {
			buf[n] = *s++;
		}
	}
	buf[n] = '\0';
	return 0;
}

int tv_peer_parse(const char *s, struct tv_peer *out)
{
	char buf[TV_PEER_MAX_STRING];
	int ret = -EINVAL;

	if (s && !strncmp(s, "ipv4:", 5) && !unescape(s + 5, buf, sizeof(buf)))
		ret = parse_ipv4(buf, out);
	else if (s && !strncmp(s, "ipv6:", 5) && !unescape(s + 5, buf, sizeof(buf)))
		ret = parse_ipv6(buf, out);
	else if (s && (!strncmp(s, "unix:", 5) || !strncmp(s, "unix-abstract:", 14))) {
		*out = (struct tv_peer){ TV_PEER_LOCAL, 0 };
		ret = 0;
	}
	if (ret)
		*out = (struct tv_peer){ TV_PEER_UNKNOWN, 0 };
	return ret;
}

const char *tv_peer_format(const struct tv_peer *p, char *buf, size_t len)
{
	char text[INET6_ADDRSTRLEN];

	if (!len)
		return buf;
	switch (p->kind) {
	case TV_PEER_IPV4: {
		struct in_addr a = { htonl((uint32_t)p->addr) };

		inet_ntop(AF_INET, &a, text, sizeof(text));
		snprintf(buf, len, "%s", text);
		break;
	}
	case TV_PEER_IPV6_64: {
		struct in6_addr a;

		memset(&a, 0, sizeof(a));
		for (int i = 0; i < 8; i++)
			a.s6_addr[i] = (uint8_t)(p->addr >> (56 - 8 * i));
		inet_ntop(AF_INET6, &a, text, sizeof(text));
		snprintf(buf, len, "%s/64", text);
		break;
	}
	case TV_PEER_LOCAL:
		snprintf(buf, len, "local (unix socket)");
		break;
	default:
		snprintf(buf, len, "unknown address");
		break;
	}
	return buf;
}

unsigned tv_peers_limit(unsigned given, unsigned global)
{
	unsigned half = global / 2 ? global / 2 : 1;

	if (!given)
		return half;
	return given < global ? given : global;
}

/* ---- the table ---- */

struct entry {
	uint64_t addr;
	uint32_t held[TV_PEER_CLASSES];
	uint8_t kind; /* enum tv_peer_kind + 1; 0: a free slot */
};

struct tv_peers {
	struct entry *slot;
	size_t mask;  /* slots - 1 (a power of two) */
	size_t count; /* entries in use */
	size_t max_entries;
	unsigned per_peer[TV_PEER_CLASSES];
};

/* splitmix64's finalizer: addresses of one /24 or one /64 spread over the table. */
static size_t hash(const struct tv_peer *p)
{
	uint64_t x = p->addr + (uint64_t)p->kind * 0x9e3779b97f4a7c15ull;

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return (size_t)x;
}

static bool same(const struct entry *e, const struct tv_peer *p)
{
	return e->kind == (uint8_t)(p->kind + 1) && e->addr == p->addr;
}

/* The slot holding p, or the free slot where it would go (the table is never full). */
static size_t find(const struct tv_peers *t, const struct tv_peer *p)
{
	size_t i = hash(p) & t->mask;

	while (t->slot[i].kind && !same(&t->slot[i], p))
		i = (i + 1) & t->mask;
	return i;
}

int tv_peers_new(struct tv_peers **out, const unsigned max_streams[TV_PEER_CLASSES],
		 const unsigned per_peer[TV_PEER_CLASSES])
{
	struct tv_peers *t;
	size_t entries = 0, slots = 1;

	*out = NULL;
	for (int c = 0; c < TV_PEER_CLASSES; c++) {
		if (tv_limit_check(&tv_peers_streams_limit, max_streams[c]) ||
		    tv_limit_check(&tv_peers_streams_limit, per_peer[c]) ||
		    per_peer[c] > max_streams[c])
			return -EINVAL;
		entries += max_streams[c];
	}
	/* at most half full: probes stay short */
	while (slots < 2 * entries)
		slots <<= 1;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->slot = calloc(slots, sizeof(*t->slot));
	if (!t->slot) {
		free(t);
		return -ENOMEM;
	}
	t->mask = slots - 1;
	t->max_entries = entries;
	memcpy(t->per_peer, per_peer, sizeof(t->per_peer));
	*out = t;
	return 0;
}

int tv_peers_acquire(struct tv_peers *t, const struct tv_peer *p, enum tv_peer_class c,
		     unsigned *held)
{
	size_t i = find(t, p);
	struct entry *e = &t->slot[i];

	if (e->kind) {
		if (e->held[c] >= t->per_peer[c]) {
			if (held)
				*held = e->held[c];
			return -EBUSY;
		}
		e->held[c]++;
		return 0;
	}
	if (t->count >= t->max_entries)
		return -ENOSPC;
	*e = (struct entry){ .addr = p->addr, .kind = (uint8_t)(p->kind + 1) };
	e->held[c] = 1;
	t->count++;
	return 0;
}

/* Free slot i and shift back the entries after it that probed past it, so that every entry
 * stays reachable from its home slot without tombstones. */
static void remove_at(struct tv_peers *t, size_t i)
{
	size_t j = i;

	for (;;) {
		size_t home;

		j = (j + 1) & t->mask;
		if (!t->slot[j].kind)
			break;
		home = hash(&(struct tv_peer){ (enum tv_peer_kind)(t->slot[j].kind - 1),
					       t->slot[j].addr }) & t->mask;
		/* j's entry may move to i only if its home is not cyclically in (i, j] */
		if (((j - home) & t->mask) < ((j - i) & t->mask))
			continue;
		t->slot[i] = t->slot[j];
		i = j;
	}
	t->slot[i] = (struct entry){ 0 };
	t->count--;
}

void tv_peers_release(struct tv_peers *t, const struct tv_peer *p, enum tv_peer_class c)
{
	size_t i = find(t, p);
	struct entry *e = &t->slot[i];

	if (!e->kind || !e->held[c])
		return;
	e->held[c]--;
	for (int k = 0; k < TV_PEER_CLASSES; k++)
		if (e->held[k])
			return;
	remove_at(t, i);
}

unsigned tv_peers_held(const struct tv_peers *t, const struct tv_peer *p, enum tv_peer_class c)
{
	const struct entry *e = &t->slot[find(t, p)];

	return e->kind ? e->held[c] : 0;
}

unsigned tv_peers_per_peer(const struct tv_peers *t, enum tv_peer_class c)
{
	return t->per_peer[c];
}

size_t tv_peers_count(const struct tv_peers *t)
{
	return t->count;
}

void tv_peers_free(struct tv_peers *t)
{
	if (!t)
		return;
	free(t->slot);
	free(t);
}
