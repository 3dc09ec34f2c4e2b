/* Event source of `tracevault capture --mode sockfilter`: packets of one interface from a raw
 * AF_PACKET socket filtered by bpf/sockfilter.bpf.c, reassembled per TCP connection
 * (tcp_reasm.c) and handed out as the same struct tv_event records the tracepoint mode makes. */
#ifndef TV_SOCKFILTER_H
#define TV_SOCKFILTER_H

#include <stddef.h>
#include <stdint.h>

#include "capture/source.h"

/* Interface read when --interface is not given. */
#define TV_SOCKFILTER_DEFAULT_INTERFACE "lo"
/* Default bytes of the TPACKET_V3 receive ring shared with the kernel (--ring-bytes): blocks
 * of packets cut to headers + --payload-bytes, packed back to back. Packets arriving while it
 * is full are dropped by the kernel and counted (tp_drops). */
#define TV_SOCKFILTER_RING_BYTES (64u << 20)
/* How often holes and idle connections are expired (tv_tcp_reasm_expire). */
#define TV_SOCKFILTER_EXPIRE_MS 200

struct tv_sockfilter_opts {
	const char *interface;   /* NULL: TV_SOCKFILTER_DEFAULT_INTERFACE */
	int port;                /* 0: every TCP port; else source or destination port */
	uint32_t payload_bytes;  /* 0: TV_CAPTURE_DEFAULT_PAYLOAD_BYTES; max TV_CAPTURE_PAYLOAD_BYTES */
	uint32_t ring_bytes;     /* 0: TV_SOCKFILTER_RING_BYTES; rounded down to whole blocks
				  * (1 MiB), at least one */
	int64_t mono_to_real_ns; /* CLOCK_REALTIME - CLOCK_MONOTONIC: packets carry realtime */
};

struct tv_sockfilter_stats {
	uint64_t packets;        /* frames read from the ring */
	uint64_t drops;          /* packets the kernel dropped: ring full (tp_drops) */
	uint64_t bad_packets;    /* frames that did not parse as IPv4/IPv6 TCP */
	uint64_t truncated;      /* data events whose payload was cut (byte counts exact) */
	uint64_t gaps, gap_bytes;  /* holes in the streams given up by the reassembler */
	uint64_t conns_overflow; /* connections refused: reassembly table full */
	uint64_t midstream_ignored; /* segments of connections started before the capture */
};

struct tv_sockfilter;

/* Loads the filter, opens the socket on the interface and maps its ring: packets are captured
 * from return on, and handed to fn (one event at a time, valid during the call) only from
 * tv_sockfilter_poll and _finish. 0, or a negative errno with a one-line reason in err:
 * -EINVAL for a port or payload_bytes out of range, -ENODEV for an unknown interface, -EPERM
 * without CAP_NET_RAW/CAP_BPF, -EOPNOTSUPP for a link type other than Ethernet, loopback or
 * none, -ENOMEM. fn/ctx must outlive *out; *out is freed with tv_sockfilter_free. */
int tv_sockfilter_open(struct tv_sockfilter **out, const struct tv_sockfilter_opts *o,
		       tv_capture_event_fn fn, void *ctx, char *err, size_t errlen);

/* Waits up to timeout_ms for packets, then hands out every event they complete. 0 or a
 * negative errno (err says why). */
int tv_sockfilter_poll(struct tv_sockfilter *s, int timeout_ms, char *err, size_t errlen);

/* End of capture: reads what the ring holds, waits (at most 3 x 20 ms) for the kernel to hand
 * over the partly filled block, then ends every connection at now_ns (monotonic), its holes
 * reported as gaps and a CLOSE event each. The socket stays open until tv_sockfilter_free. */
void tv_sockfilter_finish(struct tv_sockfilter *s, uint64_t now_ns);

/* The loss counters, read fresh from the kernel (drops). */
void tv_sockfilter_stats(struct tv_sockfilter *s, struct tv_sockfilter_stats *st);

/* The counters under the tracepoint mode's loss reasons (enum tv_lost_reason) that mean the
 * same, so the summary and the block loss counters need no second set: TV_LOST_RING_FULL =
 * packets the kernel dropped (ring full), TV_LOST_MAP_FULL = connections the reassembly table
 * refused, TV_LOST_TRUNCATED = data events with a cut payload; any other reason is 0. */
uint64_t tv_sockfilter_lost(struct tv_sockfilter *s, uint32_t reason);

/* The struct tv_capture_source view of an opened s (for capture.c's run loop). */
void tv_sockfilter_source(struct tv_sockfilter *s, struct tv_capture_source *src);

/* Closes the socket and frees everything. Safe on NULL. */
void tv_sockfilter_free(struct tv_sockfilter *s);

#endif
