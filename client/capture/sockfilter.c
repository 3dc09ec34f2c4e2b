/* `tracevault capture --mode sockfilter`: loads bpf/sockfilter.bpf.c, attaches it to a raw
 * AF_PACKET socket bound to one interface, reads the cut packets from a TPACKET_V3 ring, parses
 * IPv4/IPv6 TCP, reassembles the streams (tcp_reasm.c) and hands struct tv_event records to the
 * run loop's handler (capture.c, through capture/source.h). */
#include "capture/sockfilter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_ether.h>
#include <linux/if_packet.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/tv_event.h"    /* struct tv_event, payload limits, enum tv_lost_reason */
#include "bpf/sockfilter.h" /* header bytes the filter keeps */
#include "sockfilter.skel.h"
#include "capture/http_parse.h" /* tv_http_is_request_start: mid-stream pick-up */
#include "capture/limits.h"
#include "capture/tcp_reasm.h"
#include "common/clock.h"

#define IPPROTO_TCP_NUM 6
/* Ring geometry: the kernel fills one block at a time with packets back to back and hands it
 * over when full or RING_RETIRE_MS after its first packet. The size is capture/limits.h's, as
 * the sockfilter --ring-bytes bound is made of whole blocks. */
#define RING_BLOCK_BYTES TV_CAPTURE_SOCKFILTER_RING_BLOCK_BYTES
/* the kernel takes a TPACKET_V3 block size that is a multiple of the page size, and map_ring
 * doubles it until two worst-case packets fit (and the frame size, from TPACKET_ALIGNMENT,
 * until one does): powers of two keep frames dividing blocks evenly */
_Static_assert((RING_BLOCK_BYTES & (RING_BLOCK_BYTES - 1)) == 0 && RING_BLOCK_BYTES % 4096 == 0,
	       "TPACKET_V3 block size");
/* Matches the capture's poll interval: a packet waits at most this long in a partly filled
 * block, as an event waits in the tracepoint mode's ring. */
#define RING_RETIRE_MS 10

/*
 * Why a TPACKET_V3 mmap ring and not recvmsg(MSG_TRUNC): a packet queued on a socket is
 * charged its whole skb (truesize) against SO_RCVBUF even when the filter cut it, and loopback
 * GSO packets are up to 64 KiB: a 1 MiB response would fill a default receive buffer. The ring
 * holds only the bytes the filter kept, in a fixed memory bound, needs no syscall per packet,
 * and its packet header carries the kernel timestamp and the original length. V3 rather than
 * V2: V2 gives every packet a fixed frame sized for the largest (headers + --payload-bytes,
 * 8 KiB at the default), while most packets are a few hundred bytes; V3 packs them back to
 * back, so the same memory holds ~10-20x more packets. Under wrk (20k req/s) a 16 MiB V2 ring
 * dropped 44% of the packets in the ASan build. The price is the block retire timer
 * (RING_RETIRE_MS), no longer than the poll interval.
 */
/* This mode's counters (sockfilter_stats reads the kernel's drops fresh). */
struct tv_sockfilter_stats {
	uint64_t packets;        /* frames read from the ring */
	uint64_t drops;          /* packets the kernel dropped: ring full (tp_drops) */
	uint64_t bad_packets;    /* frames that did not parse as IPv4/IPv6 TCP */
	uint64_t truncated;      /* data events whose payload was cut (byte counts exact) */
	uint64_t gaps, gap_bytes;  /* holes in the streams given up by the reassembler */
	uint64_t conns_overflow; /* connections refused: reassembly table full */
	uint64_t midstream_ignored; /* segments of connections started before the capture */
};

struct tv_sockfilter {
	struct sockfilter_bpf *skel;
	int fd;
	uint8_t *ring;
	size_t ring_bytes;
	uint32_t block_bytes, block_nr, block_cur;
	int skip_outgoing; /* loopback: drop the PACKET_OUTGOING copy (the filter does too) */
	int role;          /* --role: 0 both ends, else only this enum tv_event_role */
	/* not loopback: this host's addresses (getifaddrs at open), which say which end of a
	 * connection is ours; loopback has both ends here */
	struct tv_tcp_endpoint *local_addrs;
	size_t n_local;
	int64_t mono_to_real_ns;
	uint64_t last_expire_ns;
	struct tv_tcp_reasm *reasm;
	tv_capture_event_fn fn;
	void *ctx;
	struct tv_sockfilter_stats st;
	struct tv_event *ev; /* one event at a time, built here and handed to fn */
};

static void to_event_addr(struct tv_event_addr *a, const struct tv_tcp_endpoint *e)
{
	memcpy(a->addr, e->addr, sizeof(a->addr));
	a->port = e->port;
	a->family = e->family;
}

/* Which ends of a connection are this host's: on loopback both; elsewhere an end whose address
 * is one of the host's (getifaddrs at open: an address added later is not known). When neither
 * is (traffic forwarded or bridged through this host, e.g. a container bridge), the server's
 * end is taken, the view a capture of a service wants. */
static int is_local_addr(const struct tv_sockfilter *s, const struct tv_tcp_endpoint *e)
{
	size_t len = e->family == AF_INET ? 4 : 16;

	for (size_t i = 0; i < s->n_local; i++)
		if (s->local_addrs[i].family == e->family &&
		    memcmp(s->local_addrs[i].addr, e->addr, len) == 0)
			return 1;
	return 0;
}

static void ends_seen(const struct tv_sockfilter *s, const struct tv_tcp_conn_info *c,
		      int *server, int *client)
{
	if (s->skip_outgoing) {
		*server = *client = 1;
		return;
	}
	*server = is_local_addr(s, &c->server);
	*client = is_local_addr(s, &c->client);
	if (!*server && !*client)
		*server = 1;
}

/* The client's view of a connection is a connection of its own in the connection table: its
 * id is the server view's with this bit flipped (ids are hashes: a clash is as unlikely as
 * between two connections). */
#define CLIENT_VIEW_ID_BIT (1ull << 63)

/* Reassembled stream -> the tracepoint mode's records, from one end's view (role): the server
 * end is "us" after an ACCEPT and receives client -> server bytes; the client end after a
 * CONNECT and sends them. pid 0 and no comm: a packet has no process. */
static void emit_view(struct tv_sockfilter *s, const struct tv_tcp_event *te, uint8_t role)
{
	struct tv_event *e = s->ev;
	int server = role == TV_ROLE_SERVER;
	enum tv_tcp_dir in = server ? TV_TCP_TO_SERVER : TV_TCP_TO_CLIENT;

	memset(e, 0, TV_EVENT_HEADER_BYTES);
	e->ts_ns = te->ts_ns;
	e->conn_id = server ? te->conn->id : te->conn->id ^ CLIENT_VIEW_ID_BIT;
	e->conn_gen = te->conn->gen;
	e->fd = -1;
	e->role = role;
	to_event_addr(&e->local, server ? &te->conn->server : &te->conn->client);
	to_event_addr(&e->remote, server ? &te->conn->client : &te->conn->server);
	switch (te->kind) {
	case TV_TCP_EV_OPEN:
		/* joined mid-stream (open before the capture): no ACCEPT, so the connection
		 * table opens it at its first data and waits for a message start there, as for
		 * any connection first seen in its middle */
		if (te->conn->midstream)
			return;
		e->kind = server ? TV_EV_ACCEPT : TV_EV_CONNECT;
		break;
	case TV_TCP_EV_DATA:
		e->kind = te->dir == in ? TV_EV_DATA_IN : TV_EV_DATA_OUT;
		e->bytes = te->len;
		e->payload_len = te->cap_len < TV_CAPTURE_PAYLOAD_BYTES ? te->cap_len
									: TV_CAPTURE_PAYLOAD_BYTES;
		if (e->payload_len)
			memcpy(e->payload, te->data, e->payload_len);
		if (e->payload_len < e->bytes) {
			e->flags |= TV_EV_FLAG_TRUNCATED;
			s->st.truncated++;
		}
		break;
	case TV_TCP_EV_CLOSE:
		e->kind = TV_EV_CLOSE;
		break;
	case TV_TCP_EV_FIN: /* a FIN ends what its sender sends: the other end's is FIN_IN */
		e->kind = te->dir == in ? TV_EV_FIN_IN : TV_EV_FIN_OUT;
		break;
	}
	if (te->gaps[TV_TCP_TO_SERVER] || te->gaps[TV_TCP_TO_CLIENT]) {
		e->flags |= TV_EV_FLAG_GAP;
		e->lost_in_events = te->gaps[in];
		e->lost_in_bytes = te->gap_bytes[in];
		e->lost_out_events = te->gaps[!in];
		e->lost_out_bytes = te->gap_bytes[!in];
	}
	s->fn(s->ctx, e, TV_EVENT_HEADER_BYTES + e->payload_len);
}

/* One reassembler event, handed out from each end of the connection that is this host's and
 * that --role asks for. The server end is the one that received the SYN (tcp_reasm.c; for a
 * connection joined mid-stream, the --port side). */
static void on_tcp_event(void *ctx, const struct tv_tcp_event *te)
{
	struct tv_sockfilter *s = ctx;
	int server, client;

	ends_seen(s, te->conn, &server, &client);
	if (server && s->role != TV_ROLE_CLIENT)
		emit_view(s, te, TV_ROLE_SERVER);
	if (client && s->role != TV_ROLE_SERVER)
		emit_view(s, te, TV_ROLE_CLIENT);
}

/* This host's addresses into s->local_addrs (not needed on loopback). 0 or a negative errno
 * with err set. */
static int load_local_addrs(struct tv_sockfilter *s, char *err, size_t errlen)
{
	struct ifaddrs *ifa, *i;
	size_t n = 0;
	int rc;

	if (getifaddrs(&ifa)) {
		rc = -errno;
		snprintf(err, errlen, "listing this host's addresses (getifaddrs): %s",
			 strerror(-rc));
		return rc;
	}
	for (i = ifa; i; i = i->ifa_next)
		n += i->ifa_addr && (i->ifa_addr->sa_family == AF_INET ||
				     i->ifa_addr->sa_family == AF_INET6);
	s->local_addrs = calloc(n ? n : 1, sizeof(*s->local_addrs));
	if (!s->local_addrs) {
		freeifaddrs(ifa);
		snprintf(err, errlen, "out of memory setting up the sockfilter capture");
		return -ENOMEM;
	}
	for (i = ifa; i; i = i->ifa_next) {
		struct tv_tcp_endpoint *e = &s->local_addrs[s->n_local];

		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET) {
			memcpy(e->addr, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
			e->family = AF_INET;
			s->n_local++;
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			memcpy(e->addr, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
			e->family = AF_INET6;
			s->n_local++;
		}
	}
	freeifaddrs(ifa);
	return 0;
}

/* One captured packet from its network header: net_cap bytes present, net_len on the wire. */
static int parse_packet(struct tv_sockfilter *s, const uint8_t *net, uint32_t net_cap,
			uint32_t net_len, uint64_t ts_ns)
{
	struct tv_tcp_seg seg;
	uint32_t ip_hlen, ip_len, tcp_hlen, hdrs;
	const uint8_t *tcp;

	memset(&seg, 0, sizeof(seg));
	if (net_cap >= 20 && net[0] >> 4 == 4) {
		ip_hlen = (net[0] & 0xf) * 4u;
		if (ip_hlen < 20 || net[9] != IPPROTO_TCP_NUM)
			return -EINVAL;
		ip_len = (uint32_t)net[2] << 8 | net[3];
		seg.src.family = seg.dst.family = AF_INET;
		memcpy(seg.src.addr, net + 12, 4);
		memcpy(seg.dst.addr, net + 16, 4);
	} else if (net_cap >= 40 && net[0] >> 4 == 6) {
		ip_hlen = 40;
		if (net[6] != IPPROTO_TCP_NUM)
			return -EINVAL;
		ip_len = (uint32_t)net[4] << 8 | net[5];
		if (ip_len)
			ip_len += 40;
		seg.src.family = seg.dst.family = AF_INET6;
		memcpy(seg.src.addr, net + 8, 16);
		memcpy(seg.dst.addr, net + 24, 16);
	} else {
		return -EINVAL;
	}
	if (ip_len == 0) /* a GSO packet above 64 KiB: the frame's original length says it */
		ip_len = net_len;
	if (net_cap < ip_hlen + 20)
		return -EINVAL;
	tcp = net + ip_hlen;
	tcp_hlen = (tcp[12] >> 4) * 4u;
	hdrs = ip_hlen + tcp_hlen;
	if (tcp_hlen < 20 || net_cap < hdrs || ip_len < hdrs)
		return -EINVAL;
	seg.src.port = (uint16_t)(tcp[0] << 8 | tcp[1]);
	seg.dst.port = (uint16_t)(tcp[2] << 8 | tcp[3]);
	seg.seq = (uint32_t)tcp[4] << 24 | (uint32_t)tcp[5] << 16 | (uint32_t)tcp[6] << 8 | tcp[7];
	seg.ack = (uint32_t)tcp[8] << 24 | (uint32_t)tcp[9] << 16 | (uint32_t)tcp[10] << 8 |
		  tcp[11];
	seg.flags = tcp[13];
	/* the payload length from the IP header, not from what the filter kept: exact */
	seg.len = ip_len - hdrs;
	seg.cap_len = net_cap - hdrs < seg.len ? net_cap - hdrs : seg.len;
	seg.data = net + hdrs;
	seg.ts_ns = ts_ns;
	tv_tcp_reasm_segment(s->reasm, &seg);
	return 0;
}

/* One packet of a block: its header, sockaddr_ll, then the bytes kept from tp_mac on. */
static void handle_packet(struct tv_sockfilter *s, const uint8_t *frame, size_t room)
{
	const struct tpacket3_hdr *h = (const void *)frame;
	const struct sockaddr_ll *sll = (const void *)(frame + TPACKET_ALIGN(sizeof(*h)));
	uint64_t real_ns = (uint64_t)h->tp_sec * 1000000000ull + h->tp_nsec;
	uint32_t l2 = h->tp_net >= h->tp_mac ? h->tp_net - h->tp_mac : 0;

	s->st.packets++;
	if (s->skip_outgoing && sll->sll_pkttype == PACKET_OUTGOING)
		return;
	if (h->tp_snaplen < l2 || h->tp_len < l2 ||
	    h->tp_net + (size_t)(h->tp_snaplen - l2) > room ||
	    parse_packet(s, frame + h->tp_net, h->tp_snaplen - l2, h->tp_len - l2,
			 (uint64_t)((int64_t)real_ns - s->mono_to_real_ns)))
		s->st.bad_packets++;
}

/* Every block the kernel has handed over, in ring order; each is given back right after use.
 * Returns the number of blocks read. */
static unsigned read_ring(struct tv_sockfilter *s)
{
	unsigned n;

	for (n = 0; n < s->block_nr; n++) {
		uint8_t *block = s->ring + (size_t)s->block_cur * s->block_bytes;
		struct tpacket_block_desc *bd = (void *)block;
		uint32_t i, num, off;

		if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
			break;
		num = bd->hdr.bh1.num_pkts;
		off = bd->hdr.bh1.offset_to_first_pkt;
		for (i = 0; i < num && off >= sizeof(*bd) && off < s->block_bytes; i++) {
			const struct tpacket3_hdr *h = (const void *)(block + off);

			handle_packet(s, block + off, s->block_bytes - off);
			if (!h->tp_next_offset)
				break;
			off += h->tp_next_offset;
		}
		__atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
		s->block_cur = (s->block_cur + 1) % s->block_nr;
	}
	return n;
}

/* source.h's poll: wait up to timeout_ms for packets, then hand out every event they
 * complete; expire holes and idle connections every TV_SOCKFILTER_EXPIRE_MS. */
static int sockfilter_poll(void *impl, int timeout_ms, char *err, size_t errlen)
{
	struct tv_sockfilter *s = impl;
	struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
	uint64_t now;

	if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR) {
		int rc = -errno;

		snprintf(err, errlen, "polling the packet socket: %s", strerror(-rc));
		return rc;
	}
	if (pfd.revents & POLLERR) {
		snprintf(err, errlen, "the packet socket failed (interface gone?)");
		return -EIO;
	}
	read_ring(s);
	now = tv_monotonic_ns();
	if (now - s->last_expire_ns >= TV_SOCKFILTER_EXPIRE_MS * 1000000ull) {
		tv_tcp_reasm_expire(s->reasm, now);
		s->last_expire_ns = now;
	}
	return 0;
}

/* source.h's finish: read what the ring still holds (waiting up to 3 retire periods for the
 * block being filled), then end every connection at now_ns, holes as gaps, a CLOSE each. */
static void sockfilter_finish(void *impl, uint64_t now_ns)
{
	struct tv_sockfilter *s = impl;
	struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
	int i;

	/* the block being filled is handed over by its retire timer: wait for it (bounded, as
	 * other traffic may keep filling blocks) */
	read_ring(s);
	for (i = 0; i < 3; i++) {
		if (poll(&pfd, 1, 2 * RING_RETIRE_MS) <= 0)
			break;
		read_ring(s);
	}
	tv_tcp_reasm_flush(s->reasm, now_ns);
}

/* PACKET_STATISTICS resets the kernel's counters on each read: accumulate them here. */
static void read_drops(struct tv_sockfilter *s)
{
	struct tpacket_stats ks;
	socklen_t len = sizeof(ks);

	if (getsockopt(s->fd, SOL_PACKET, PACKET_STATISTICS, &ks, &len) == 0)
		s->st.drops += ks.tp_drops;
}

/* The loss counters, the kernel's drops read fresh. */
static void sockfilter_stats(struct tv_sockfilter *s, struct tv_sockfilter_stats *st)
{
	const struct tv_tcp_reasm_stats *rs = tv_tcp_reasm_stats(s->reasm);

	read_drops(s);
	s->st.gaps = rs->gaps;
	s->st.gap_bytes = rs->gap_bytes;
	s->st.conns_overflow = rs->conns_overflow;
	s->st.midstream_ignored = rs->midstream_ignored;
	*st = s->st;
}

/* source.h's lost: the counters under the tracepoint mode's reasons that mean the same, so
 * the summary and the block loss counters need no second set: TV_LOST_RING_FULL = packets the
 * kernel dropped (ring full), TV_LOST_MAP_FULL = connections the reassembly table refused,
 * TV_LOST_TRUNCATED = data events with a cut payload; any other reason is 0. */
static uint64_t sockfilter_lost(void *impl, uint32_t reason)
{
	struct tv_sockfilter_stats st;

	sockfilter_stats(impl, &st);
	switch (reason) {
	case TV_LOST_RING_FULL:
		return st.drops;
	case TV_LOST_MAP_FULL:
		return st.conns_overflow;
	case TV_LOST_TRUNCATED:
		return st.truncated;
	default:
		return 0;
	}
}

/* The link-layer header the filter skips, from the device type; and whether it loops back. */
static int link_layer(const char *ifname, uint32_t *l2_bytes, int *loopback, char *err,
		      size_t errlen)
{
	struct ifreq ifr;
	int fd, rc = 0;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket for interface ioctls: %s", strerror(-rc));
		return rc;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
		rc = -errno;
		snprintf(err, errlen, "interface %s: %s", ifname, strerror(-rc));
		goto cleanup;
	}
	switch (ifr.ifr_hwaddr.sa_family) {
	case ARPHRD_ETHER:
	case ARPHRD_LOOPBACK:
		*l2_bytes = TV_SOCKFILTER_ETH_HLEN;
		break;
	case ARPHRD_NONE: /* tun, wireguard: packets start at the IP header */
		*l2_bytes = 0;
		break;
	default:
		rc = -EOPNOTSUPP;
		snprintf(err, errlen, "interface %s: link type %u is not supported (Ethernet, "
				      "loopback or none)", ifname, ifr.ifr_hwaddr.sa_family);
		goto cleanup;
	}
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		rc = -errno;
		snprintf(err, errlen, "interface %s flags: %s", ifname, strerror(-rc));
		goto cleanup;
	}
	*loopback = !!(ifr.ifr_flags & IFF_LOOPBACK);
cleanup:
	close(fd);
	return rc;
}

static int load_filter(struct tv_sockfilter *s, const struct tv_sockfilter_opts *o,
		       uint32_t l2_bytes, char *err, size_t errlen)
{
	int rc;

	s->skel = sockfilter_bpf__open();
	if (!s->skel) {
		rc = -errno;
		snprintf(err, errlen, "opening the socket filter object: %s", strerror(-rc));
		return rc;
	}
	s->skel->rodata->target_port = (uint32_t)o->port;
	s->skel->rodata->payload_bytes = o->payload_bytes ? o->payload_bytes
							  : TV_CAPTURE_DEFAULT_PAYLOAD_BYTES;
	s->skel->rodata->l2_bytes = l2_bytes;
	s->skel->rodata->skip_outgoing = (uint32_t)s->skip_outgoing;
	rc = sockfilter_bpf__load(s->skel);
	if (rc) {
		snprintf(err, errlen, "loading the socket filter: %s%s", strerror(-rc),
			 rc == -EPERM ? " (needs CAP_BPF or CAP_SYS_ADMIN)" : "");
		return rc;
	}
	return 0;
}

/* The ring: ring_bytes rounded down to whole blocks (at least one) of RING_BLOCK_BYTES, doubled
 * while smaller than two worst-case packets, each filled with packets back to back. */
static int map_ring(struct tv_sockfilter *s, uint32_t payload_bytes, uint32_t ring_bytes,
		    char *err, size_t errlen)
{
	struct tpacket_req3 req;
	uint32_t worst = TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) + 16 +
			 TV_SOCKFILTER_MAX_HEADER_BYTES + payload_bytes,
		 block = RING_BLOCK_BYTES, frame = TPACKET_ALIGNMENT;
	int version = TPACKET_V3, rc;

	while (block < 2 * worst)
		block <<= 1;
	while (frame < worst)
		frame <<= 1;
	memset(&req, 0, sizeof(req));
	req.tp_block_size = block;
	req.tp_block_nr = ring_bytes / block ? ring_bytes / block : 1;
	/* V3 has no fixed frames; the kernel still checks a frame geometry against the blocks */
	req.tp_frame_size = frame;
	req.tp_frame_nr = req.tp_block_nr * (block / frame);
	req.tp_retire_blk_tov = RING_RETIRE_MS;
	if (setsockopt(s->fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) ||
	    setsockopt(s->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req))) {
		rc = -errno;
		snprintf(err, errlen, "setting up the packet ring (%u blocks of %u bytes): %s",
			 req.tp_block_nr, block, strerror(-rc));
		return rc;
	}
	s->ring_bytes = (size_t)req.tp_block_size * req.tp_block_nr;
	s->ring = mmap(NULL, s->ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->ring == MAP_FAILED) {
		rc = -errno;
		s->ring = NULL;
		snprintf(err, errlen, "mapping the packet ring (%zu bytes): %s", s->ring_bytes,
			 strerror(-rc));
		return rc;
	}
	s->block_bytes = block;
	s->block_nr = req.tp_block_nr;
	return 0;
}

int tv_sockfilter_open(struct tv_sockfilter **out, const struct tv_sockfilter_opts *o,
		       tv_capture_event_fn fn, void *ctx, char *err, size_t errlen)
{
	const char *ifname = o->interface ? o->interface : TV_SOCKFILTER_DEFAULT_INTERFACE;
	uint32_t payload_bytes = o->payload_bytes ? o->payload_bytes
						  : TV_CAPTURE_DEFAULT_PAYLOAD_BYTES;
	struct sockaddr_ll sll;
	struct tv_sockfilter *s;
	uint32_t l2_bytes = 0;
	unsigned ifindex;
	int rc, prog_fd, one = 1;

	*out = NULL;
	if (o->port < 0 || o->port > 65535 || payload_bytes > TV_CAPTURE_PAYLOAD_BYTES ||
	    (o->role != 0 && o->role != TV_ROLE_SERVER && o->role != TV_ROLE_CLIENT)) {
		snprintf(err, errlen, "invalid sockfilter options");
		return -EINVAL;
	}
	ifindex = if_nametoindex(ifname);
	if (!ifindex) {
		snprintf(err, errlen, "unknown interface %s", ifname);
		return -ENODEV;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory setting up the sockfilter capture");
		return -ENOMEM;
	}
	s->fd = -1;
	s->fn = fn;
	s->ctx = ctx;
	s->mono_to_real_ns = o->mono_to_real_ns;
	s->role = o->role;
	s->last_expire_ns = tv_monotonic_ns();
	s->ev = malloc(sizeof(*s->ev));
	s->reasm = tv_tcp_reasm_new((uint16_t)o->port, 0, on_tcp_event, s);
	if (s->reasm) /* without --port, a connection open before the start is picked up at a
		       * request, its sender the client */
		tv_tcp_reasm_set_request_probe(s->reasm, tv_http_is_request_start);
	if (!s->ev || !s->reasm) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory setting up the sockfilter capture");
		goto err;
	}
	rc = link_layer(ifname, &l2_bytes, &s->skip_outgoing, err, errlen);
	if (!rc && !s->skip_outgoing)
		rc = load_local_addrs(s, err, errlen);
	if (rc)
		goto err;
	rc = load_filter(s, o, l2_bytes, err, errlen);
	if (rc)
		goto err;
	/* protocol 0: nothing is queued before the filter and the ring are in place; the bind
	 * below starts the capture */
	s->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "opening a raw packet socket: %s%s", strerror(-rc),
			 rc == -EPERM ? " (needs CAP_NET_RAW)" : "");
		goto err;
	}
	prog_fd = bpf_program__fd(s->skel->progs.tv_sockfilter);
	if (setsockopt(s->fd, SOL_SOCKET, SO_ATTACH_BPF, &prog_fd, sizeof(prog_fd))) {
		rc = -errno;
		snprintf(err, errlen, "attaching the socket filter (SO_ATTACH_BPF): %s",
			 strerror(-rc));
		goto err;
	}
	/* Loopback: each packet passes the tap twice. PACKET_IGNORE_OUTGOING (4.20) keeps the
	 * outgoing pass from reaching us at all: the kernel would clone the skb and run the filter
	 * in the sender's context only for the filter to drop it. */
	if (s->skip_outgoing &&
	    setsockopt(s->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one))) {
		rc = -errno;
		snprintf(err, errlen, "PACKET_IGNORE_OUTGOING on %s: %s", ifname, strerror(-rc));
		goto err;
	}
	rc = map_ring(s, payload_bytes, o->ring_bytes ? o->ring_bytes : TV_SOCKFILTER_RING_BYTES,
		      err, errlen);
	if (rc)
		goto err;
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)ifindex;
	if (bind(s->fd, (struct sockaddr *)&sll, sizeof(sll))) {
		rc = -errno;
		snprintf(err, errlen, "binding the packet socket to %s: %s", ifname, strerror(-rc));
		goto err;
	}
	read_drops(s); /* start from zero */
	s->st.drops = 0;
	*out = s;
	return 0;
err:
	tv_sockfilter_free(s);
	return rc;
}

void tv_sockfilter_free(struct tv_sockfilter *s)
{
	if (!s)
		return;
	if (s->ring)
		munmap(s->ring, s->ring_bytes);
	if (s->fd >= 0)
		close(s->fd);
	sockfilter_bpf__destroy(s->skel);
	tv_tcp_reasm_free(s->reasm);
	free(s->local_addrs);
	free(s->ev);
	free(s);
}

/* ---- the struct tv_capture_source view (capture/source.h) ---- */

/* source.h's gaps: holes in the streams the reassembler gave up on */
static void sockfilter_gaps(void *impl, uint64_t *gaps, uint64_t *gap_bytes)
{
	struct tv_sockfilter_stats st;

	sockfilter_stats(impl, &st);
	*gaps = st.gaps;
	*gap_bytes = st.gap_bytes;
}

static void sockfilter_free(void *impl)
{
	tv_sockfilter_free(impl);
}

/* source.h's ring: the packet ring's blocks the kernel has handed over and we have not read
 * (whole blocks: TPACKET_V3 gives a block to user space when it is full or times out) */
static void sockfilter_ring(void *impl, uint64_t *used_bytes, uint64_t *size_bytes)
{
	struct tv_sockfilter *s = impl;
	uint64_t used = 0;

	for (uint32_t n = 0; n < s->block_nr; n++) {
		const struct tpacket_block_desc *bd =
			(const void *)(s->ring + (size_t)n * s->block_bytes);

		if (__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)
			used += s->block_bytes;
	}
	*used_bytes = used;
	*size_bytes = s->ring_bytes;
}

void tv_sockfilter_source(struct tv_sockfilter *s, struct tv_capture_source *src)
{
	*src = (struct tv_capture_source){
		.impl = s,
		.poll = sockfilter_poll,
		.finish = sockfilter_finish,
		.lost = sockfilter_lost,
		.gaps = sockfilter_gaps,
		.ring = sockfilter_ring,
		.free = sockfilter_free,
	};
}
