/* The limits of `tracevault capture`'s own options (what the eBPF side copies and buffers, the
 * comm and interface filters, how long a run lasts), exported without the kernel headers: the
 * kernel side defines its sizes in bpf/tv_event.h, limits.c turns them into struct tv_limit,
 * and the CLI checks and prints those, so it needs no bpf/ header (scripts/check_includes.py
 * refuses one in client/cli). */
#ifndef TV_CAPTURE_LIMITS_H
#define TV_CAPTURE_LIMITS_H

#include "common/limit.h"

/* --payload-bytes: bytes copied per socket syscall, 1 to the size of the event's payload
 * buffer (32K); default 4K. */
extern const struct tv_limit tv_capture_payload_bytes_limit;
/* --body-bytes: body bytes stored per request and per response, 0 (the default: none) to the
 * payload buffer (32K); also at most --payload-bytes (tv_capture_check_body_bytes), since only
 * bytes the copy carried can be stored. */
extern const struct tv_limit tv_capture_body_bytes_limit;
/* --ring-bytes: the kernel ring buffer (tracepoint mode) or the packet ring (sockfilter), a
 * power of two from 4K (a page) to 1G; defaults 16M and 64M. */
extern const struct tv_limit tv_capture_ring_bytes_limit;
/* --ring-bytes with --mode sockfilter, also within the limit above: the packet ring is made
 * of whole 1M blocks (sockfilter.c's RING_BLOCK_BYTES is this constant), so
 * below 1M a smaller ring would silently become 1M; a power of two from 1M to 1G. */
#define TV_CAPTURE_SOCKFILTER_RING_BLOCK_BYTES (1u << 20)
extern const struct tv_limit tv_capture_sockfilter_ring_bytes_limit;
/* --comm: a task command name, 1 to 15 bytes (the kernel's comm holds 16 with the NUL). */
extern const struct tv_limit tv_capture_comm_bytes_limit;
/* --interface (sockfilter): an interface name, 1 to 15 bytes (IFNAMSIZ with the NUL). */
extern const struct tv_limit tv_capture_interface_bytes_limit;
/* --duration, in ms (struct tv_capture_opts.duration_ms): 1 ms to 365 days. The run stops at
 * the first poll round (10 ms) past it, so 1 ms is the shortest that means anything; a year
 * is far past any bounded run one means to start (without --duration the run has no end)
 * while its deadline in ns, now + 3.2e16, cannot overflow 64 bits. */
#define TV_CAPTURE_MAX_DURATION_MS (365ull * 24 * 3600 * 1000)
extern const struct tv_limit tv_capture_duration_ms_limit;

#endif
