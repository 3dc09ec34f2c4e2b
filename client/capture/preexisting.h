/* Connections already open when `tracevault capture` starts (tracepoint mode): the kernel side
 * learns a socket only at accept/connect, so the loader seeds its `sockets` map from /proc (a
 * process's fds, its network namespace's /proc/PID/net/tcp{,6}) right after attaching. */
#ifndef TV_PREEXISTING_H
#define TV_PREEXISTING_H

#include <stddef.h>
#include <stdint.h>

#include "bpf/tv_event.h" /* struct tv_sock_info, struct tv_event_addr */

/* The capture's filters, as the kernel side applies them at accept/connect. */
struct tv_seed_filter {
	uint32_t tgid;      /* --pid: 0 = every process */
	uint16_t port;      /* --port: 0 = any; else the local or the remote port */
	const char *comm;   /* --comm: NULL = any; else /proc/PID/comm equal */
	const char *cgroup; /* --cgroup: NULL = any; else a cgroup v2 directory (and below) */
	/* the capturing process: never seeded, nor the far end of its own connections (its
	 * gRPC stream to tracevaultd predates the attach, and must not trace itself) */
	uint32_t self_tgid;
	uint8_t role;       /* --role: 0 = both; else only sockets of this enum tv_event_role */
};

/* What one seeding walk did, in sockets unless named otherwise. */
struct tv_seed_stats {
	uint64_t seeded;           /* inserted: followed from their next syscall */
	uint64_t already_tracked;  /* another descriptor of a socket seeded already (dup, fork) */
	uint64_t closed;           /* closed while the walk ran: found, then gone */
	uint64_t not_established;  /* TCP, not listening, in another state than ESTABLISHED */
	uint64_t map_full;         /* no room left in `sockets` (TV_CAPTURE_MAX_SOCKETS) */
	uint64_t procs_unreadable; /* processes whose fds or tables could not be read */
};

/* One line of /proc/net/tcp or /proc/net/tcp6, addresses as the kernel side stores them
 * (network byte order, IPv4 in the first 4 bytes, a v4-mapped pair reported as AF_INET). */
struct tv_proc_tcp_entry {
	uint64_t inode; /* 0: no socket file (TIME_WAIT, orphans) */
	struct tv_event_addr local, remote;
	uint8_t state; /* TV_TCP_ESTABLISHED, TV_TCP_LISTEN, ... (include/net/tcp_states.h) */
};

#define TV_TCP_ESTABLISHED 1
#define TV_TCP_LISTEN 10

/* Parses one table line (v6: a tcp6 line). 0, or -EINVAL for the header or a malformed line. */
int tv_proc_tcp_parse_line(const char *line, int v6, struct tv_proc_tcp_entry *e);

/* Walks /proc and inserts into the kernel's `seeds` map (seeds_map_fd, keyed by socket inode
 * number, BPF_NOEXIST: one entry per socket however many descriptors name it) every
 * ESTABLISHED TCP socket of the processes that pass f, with generation gen_ns
 * (CLOCK_MONOTONIC) and the role SERVER when its local port is listened on in its network
 * namespace, else CLIENT; *seeds_left (the kernel's count of entries, in its mmapped .bss) is
 * raised for each, atomically. The kernel moves a seed to `sockets` at the socket's first
 * event; an accept/connect after the attach never looks at seeds. Must run after the
 * tracepoints are attached (why: preexisting.c). Stops inserting at TV_CAPTURE_MAX_SOCKETS.
 * Processes that exit meanwhile are skipped. Returns 0 with *st filled, or a negative errno
 * with a one-line reason in err (/proc or the cgroup tree unreadable, out of memory, a map
 * error). */
int tv_capture_seed_sockets(int seeds_map_fd, uint64_t *seeds_left,
			    const struct tv_seed_filter *f, uint64_t gen_ns, struct tv_seed_stats *st,
			    char *err, size_t errlen);

#endif
