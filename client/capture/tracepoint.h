/* Event source of `tracevault capture --mode tracepoint` (the default): bpf/capture.bpf.c on
 * the syscall tracepoints, loaded through its libbpf skeleton, with its filters (pid, port,
 * comm, cgroup), the seeding of connections open before the start, and the kernel's per-CPU
 * loss counters. Events come out of its ring buffer as struct tv_event (bpf/tv_event.h). */
#ifndef TV_CAPTURE_TRACEPOINT_H
#define TV_CAPTURE_TRACEPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "capture/source.h"

struct tv_tracepoint_opts {
	int pid;                /* 0: every process */
	int port;               /* 0: every port; else the local or the remote port */
	const char *comm;       /* NULL: every task; else the exact comm, its length within
				 * tv_capture_comm_bytes_limit */
	const char *cgroup;     /* NULL: every cgroup; else a cgroup v2 directory (and below) */
	uint32_t payload_bytes; /* 0: TV_CAPTURE_DEFAULT_PAYLOAD_BYTES; else within
				 * tv_capture_payload_bytes_limit (capture/limits.h) */
	uint32_t ring_bytes;    /* 0: TV_CAPTURE_RING_BYTES; else within
				 * tv_capture_ring_bytes_limit (a power of two) */
	int role;               /* 0: both ends; else only sockets of this enum tv_event_role
				 * (filtered in the kernel at accept/connect and in seeding) */
};

struct tv_tracepoint;

/* Opens a cgroup v2 directory for --cgroup: the fd (caller closes it), or a negative errno with
 * a one-line reason in err (missing path, not a cgroup v2 directory). */
int tv_tracepoint_open_cgroup(const char *path, char *err, size_t errlen);

/* Mounts tracefs if needed, loads and attaches the program, seeds the open connections: events are
 * captured from return on and handed to fn (valid during the call only) from the source view's poll
 * and finish (tv_tracepoint_source). 0, or a negative errno with a one-line reason in err: -EINVAL
 * for options out of range or a --cgroup that is not cgroup v2, -EPERM without CAP_BPF+CAP_PERFMON
 * (or CAP_SYS_ADMIN), -EACCES when the verifier refuses, -ENOENT without tracefs, -ENOMEM. fn/ctx
 * must outlive *out; *out is freed with tv_tracepoint_free. */
int tv_tracepoint_open(struct tv_tracepoint **out, const struct tv_tracepoint_opts *o,
		       tv_capture_event_fn fn, void *ctx, char *err, size_t errlen);
/* The struct tv_capture_source view of an opened t (for capture.c's run loop): poll waits up
 * to its timeout, then drains the ring (events below the wake-up threshold raise no epoll
 * event); finish detaches the programs, then hands out what the ring still holds; lost sums
 * the kernel's per-CPU counter of one enum tv_lost_reason; gaps are always 0 (syscalls
 * deliver whole reads and writes). */
void tv_tracepoint_source(struct tv_tracepoint *t, struct tv_capture_source *src);
/* Detaches and frees everything. Safe on NULL. */
void tv_tracepoint_free(struct tv_tracepoint *t);

#endif
