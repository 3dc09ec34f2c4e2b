/* The limits of `tracevault capture`'s own options (what the eBPF side copies and buffers, and
 * the comm filter), exported without the kernel headers: the kernel side defines them in
 * bpf/tv_event.h, limits.c turns them into struct tv_limit, and the CLI checks and prints
 * those, so it needs no bpf/ header (scripts/check_includes.py refuses one in client/cli). */
#ifndef TV_CAPTURE_LIMITS_H
#define TV_CAPTURE_LIMITS_H

#include "common/limit.h"

/* --payload-bytes: bytes copied per socket syscall, 1 to the size of the event's payload
 * buffer (32K); default 4K. */
extern const struct tv_limit tv_capture_payload_bytes_limit;
/* --ring-bytes: the kernel ring buffer (tracepoint mode) or the packet ring (sockfilter), a
 * power of two from 4K (a page) to 1G; defaults 16M and 64M. */
extern const struct tv_limit tv_capture_ring_bytes_limit;
/* --comm: a task command name, 1 to 15 bytes (the kernel's comm holds 16 with the NUL). */
extern const struct tv_limit tv_capture_comm_bytes_limit;

#endif
