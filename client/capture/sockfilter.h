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
	/* 0: every end of a connection this host has (loopback: both, so two records per
	 * exchange, as the tracepoint mode gives); else only this enum tv_event_role's end */
	int role;
};

struct tv_sockfilter;

/* Loads the filter, opens the socket on the interface and maps its ring: packets are captured from
 * return on, and handed to fn (one event at a time, valid during the call) only from the source
 * view's poll and finish (tv_sockfilter_source). 0, or a negative errno with a one-line reason in
 * err: -EINVAL for a port or payload_bytes out of range, -ENODEV for an unknown interface, -EPERM
 * without CAP_NET_RAW/CAP_BPF, -EOPNOTSUPP for a link type other than Ethernet, loopback or none,
 * -ENOMEM. fn/ctx must outlive *out; *out is freed with tv_sockfilter_free. */
int tv_sockfilter_open(struct tv_sockfilter **out, const struct tv_sockfilter_opts *o,
		       tv_capture_event_fn fn, void *ctx, char *err, size_t errlen);

/* The struct tv_capture_source view of an opened s (for capture.c's run loop): poll waits up
 * to its timeout for packets and hands out every event they complete; finish reads what the
 * ring holds, waits (at most 3 x 20 ms) for the kernel to hand over the partly filled block,
 * then ends every connection at now_ns (monotonic), its holes reported as gaps and a CLOSE
 * event each; lost maps this mode's counters onto enum tv_lost_reason (ring full = packets
 * the kernel dropped, map full = connections the reassembly table refused, truncated = cut
 * payloads); gaps are the holes the reassembler gave up on. */
void tv_sockfilter_source(struct tv_sockfilter *s, struct tv_capture_source *src);

/* Closes the socket and frees everything. Safe on NULL. */
void tv_sockfilter_free(struct tv_sockfilter *s);

#endif
