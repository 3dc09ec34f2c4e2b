/* TCP stream reassembly for `tracevault capture --mode sockfilter`: turns captured TCP segments
 * (both directions, any order) into in-order byte runs per connection and direction, with holes
 * reported as exact gap byte counts. Pure logic, no sockets: client/capture/sockfilter.c feeds
 * it. */
#ifndef TV_TCP_REASM_H
#define TV_TCP_REASM_H

#include <stddef.h>
#include <stdint.h>

/* Connections tracked at once (the same bound as the connection table, TV_CONN_MAX); a start
 * beyond it is refused and counted in conns_overflow. */
#define TV_TCP_REASM_MAX_CONNS 65536
/* Out-of-order segments queued per direction waiting for a hole to fill. One more forces the
 * hole: its bytes are reported as a gap and the queue is delivered up to the next hole. A
 * retransmission arrives within a few RTTs, so a deep queue only delays the inevitable. */
#define TV_TCP_REASM_MAX_OOO 64
/* Captured bytes held in all out-of-order queues together (memory bound): over it, the
 * direction that queues forces its holes as above. */
#define TV_TCP_REASM_MAX_QUEUED_BYTES (64u << 20)
/* A hole older than this (since the first segment queued behind it) is given up as a gap by
 * tv_tcp_reasm_expire: when the capture itself dropped the packet, no retransmission comes. */
#define TV_TCP_REASM_HOLE_TIMEOUT_NS (1000ull * 1000 * 1000)
/* A connection without any segment for this long is ended by tv_tcp_reasm_expire (its FIN or
 * RST was missed), so the table cannot fill with dead connections. */
#define TV_TCP_REASM_IDLE_TIMEOUT_NS (300ull * 1000 * 1000 * 1000)

/* TCP header flag bits, as on the wire. */
#define TV_TCP_FIN 0x01
#define TV_TCP_SYN 0x02
#define TV_TCP_RST 0x04
#define TV_TCP_ACK 0x10

enum tv_tcp_dir {
	TV_TCP_TO_SERVER = 0, /* client -> server: requests */
	TV_TCP_TO_CLIENT = 1, /* server -> client: responses */
};

/* Address in network byte order (IPv4 in the first 4 bytes), port in host order. */
struct tv_tcp_endpoint {
	uint8_t addr[16];
	uint16_t port;
	uint16_t family; /* AF_INET or AF_INET6 */
};

/* One captured segment. data may point into a capture buffer: it is read during the call only
 * (out-of-order segments are copied). */
struct tv_tcp_seg {
	struct tv_tcp_endpoint src, dst;
	uint32_t seq, ack;
	uint8_t flags;    /* TV_TCP_* */
	uint32_t len;     /* TCP payload bytes the segment carried (from the IP lengths: exact) */
	uint32_t cap_len; /* bytes of data[] present, a prefix of the payload (<= len) */
	const uint8_t *data;
	uint64_t ts_ns;
};

struct tv_tcp_conn_info {
	uint64_t id;  /* hash of the 4-tuple and gen */
	uint64_t gen; /* ts_ns of the first segment seen */
	struct tv_tcp_endpoint client, server;
	int midstream; /* first seen without its handshake (see tv_tcp_reasm_new) */
};

enum tv_tcp_ev_kind {
	TV_TCP_EV_OPEN = 1,  /* a connection starts being tracked */
	TV_TCP_EV_DATA = 2,  /* in-order bytes of one direction */
	TV_TCP_EV_CLOSE = 3, /* FIN both ways, RST, idle, or tv_tcp_reasm_flush */
	/* the FIN of direction dir, after every byte before it: that direction ended (a body
	 * delimited by the close is complete) while the other may go on */
	TV_TCP_EV_FIN = 4,
};

/* What the reassembler hands out. gap_*: bytes of holes given up in each direction since the
 * previous event of this connection (a hole is never silent: it rides on the next event). */
struct tv_tcp_event {
	enum tv_tcp_ev_kind kind;
	const struct tv_tcp_conn_info *conn;
	uint64_t ts_ns;
	enum tv_tcp_dir dir;  /* DATA, FIN */
	const uint8_t *data;  /* DATA: cap_len bytes, the prefix of the len bytes delivered */
	uint32_t cap_len, len;
	uint64_t gap_bytes[2]; /* by enum tv_tcp_dir */
	uint32_t gaps[2];
};

typedef void (*tv_tcp_event_fn)(void *ctx, const struct tv_tcp_event *ev);

struct tv_tcp_reasm_stats {
	uint64_t segments;
	uint64_t conns_opened, conns_closed;
	uint64_t conns_overflow;    /* starts refused: TV_TCP_REASM_MAX_CONNS (or max_conns) */
	uint64_t midstream_ignored; /* segments of unknown connections that could not start one */
	uint64_t gaps, gap_bytes;   /* holes given up, and their bytes */
	uint64_t retrans_bytes;     /* bytes seen again (retransmits, overlaps), trimmed */
	uint64_t ooo_segments;      /* segments that waited in an out-of-order queue */
	uint64_t oom;               /* out-of-order copies that failed (become gaps) */
};

struct tv_tcp_reasm;

/* server_port: 0, or the port of the server side (capture --port). A connection is normally
 * started by its SYN (the sender is the client) or SYN-ACK (the sender is the server). One
 * first seen without them (it started before the capture) is picked up at its first segment
 * with payload only when server_port is set and one of its ports is server_port: that side is
 * the server, and each direction starts at the first byte seen; without server_port, at a
 * segment that begins a request when a probe is set (tv_tcp_reasm_set_request_probe).
 * Otherwise its segments are ignored (midstream_ignored): nothing says which side is the
 * server.
 * max_conns: 0 for TV_TCP_REASM_MAX_CONNS. NULL when out of memory. */
struct tv_tcp_reasm *tv_tcp_reasm_new(uint16_t server_port, uint32_t max_conns,
				      tv_tcp_event_fn fn, void *ctx);

/* Says whether a segment's captured bytes (data[0, len), len > 0) begin a request. */
typedef int (*tv_tcp_request_probe_fn)(const void *data, size_t len);
/* Without server_port, a connection first seen mid-stream is picked up at its first segment
 * whose captured bytes probe(...) says begin a request: the sender is the client, each
 * direction starts at the first byte seen. (A segment in the middle of a body that happens to
 * begin like a request would mislead it; the parser then resyncs.) NULL (the default): such
 * connections are ignored, as said at tv_tcp_reasm_new. */
void tv_tcp_reasm_set_request_probe(struct tv_tcp_reasm *t, tv_tcp_request_probe_fn probe);
/* Frees everything without emitting: call tv_tcp_reasm_flush first. Safe on NULL. */
void tv_tcp_reasm_free(struct tv_tcp_reasm *t);

/* One captured segment: every event it completes is handed to fn during the call. */
void tv_tcp_reasm_segment(struct tv_tcp_reasm *t, const struct tv_tcp_seg *s);

/* Gives up holes older than TV_TCP_REASM_HOLE_TIMEOUT_NS and ends connections idle longer than
 * TV_TCP_REASM_IDLE_TIMEOUT_NS, at now_ns (the segments' clock). Walks every connection: call
 * it every few hundred ms, not per segment. */
void tv_tcp_reasm_expire(struct tv_tcp_reasm *t, uint64_t now_ns);

/* End of capture: every connection is ended at now_ns (holes become gaps, then CLOSE). */
void tv_tcp_reasm_flush(struct tv_tcp_reasm *t, uint64_t now_ns);

size_t tv_tcp_reasm_conns(const struct tv_tcp_reasm *t);
const struct tv_tcp_reasm_stats *tv_tcp_reasm_stats(const struct tv_tcp_reasm *t);

#endif
