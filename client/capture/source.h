/* The shape both capture event sources share (--mode tracepoint: tracepoint.c, --mode
 * sockfilter: sockfilter.c): open with the handler below, then poll / finish / lost / free, so
 * capture.c's run loop drives either one without knowing which. */
#ifndef TV_CAPTURE_SOURCE_H
#define TV_CAPTURE_SOURCE_H

#include <stddef.h>
#include <stdint.h>

/* Receives one struct tv_event (bpf/tv_event.h; len bytes: header + payload_len), valid during
 * the call only. libbpf's ring_buffer_sample_fn shape, so the ring calls it directly. */
typedef int (*tv_capture_event_fn)(void *ctx, void *data, size_t len);

/* An opened source: impl is the module's own struct, the functions its own API. */
struct tv_capture_source {
	void *impl;
	/* Wait up to timeout_ms, hand every event out. 0 or a negative errno (reason in err). */
	int (*poll)(void *impl, int timeout_ms, char *err, size_t errlen);
	/* End of capture: hand out what is already queued (tracepoint: after detaching; sockfilter:
	 * after waiting briefly for its last ring block) and end what the source itself tracks at
	 * now_ns (monotonic: the sockfilter's reassembled streams; the tracepoint source has none
	 * and ignores it). The connection table's own connections are the caller's to end. */
	void (*finish)(void *impl, uint64_t now_ns);
	/* Running total of one enum tv_lost_reason (0 for a reason the source cannot have). */
	uint64_t (*lost)(void *impl, uint32_t reason);
	/* Holes in reassembled streams (0 for a source that sees whole syscalls). */
	void (*gaps)(void *impl, uint64_t *gaps, uint64_t *gap_bytes);
	/* The kernel ring's size and the bytes in it not yet read by us (the ring fill metric):
	 * tracepoint the BPF ring buffer, the most of now and of what its polls found before
	 * each drain since the last call; sockfilter the packet ring's blocks handed to us,
	 * now. */
	void (*ring)(void *impl, uint64_t *used_bytes, uint64_t *size_bytes);
	/* One of the calls the running loop makes that may need a privilege (tracepoint: a
	 * read of a BPF map; NULL: none), run by privs.c without capabilities to learn whether
	 * the loop still needs one: 0 or a negative errno (-EPERM: it does). */
	int (*probe)(void *impl);
	/* Release everything. Safe on NULL impl. */
	void (*free)(void *impl);
};

#endif
