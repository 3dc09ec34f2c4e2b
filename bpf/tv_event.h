/* The event record shared by bpf/capture.bpf.c (producer, kernel) and client/capture (consumer:
 * tracepoint.c reads the ring, conn_table.c pairs the events) through the BPF ring buffer: one
 * record per socket syscall of interest. The sockfilter mode (sockfilter.c) makes the same
 * records from packets. Fixed-width types only. */
#ifndef TV_BPF_TV_EVENT_H
#define TV_BPF_TV_EVENT_H

#ifndef __VMLINUX_H__ /* the kernel side gets these types from vmlinux.h */
#include <linux/types.h>
#endif

/* Upper bound of payload bytes copied per data syscall (--payload-bytes): the size of
 * tv_event.payload. Bytes beyond the copied prefix are counted (tv_event.bytes) but not copied.
 * Must be a power of two: the kernel side masks offsets with it to satisfy the verifier. */
#define TV_CAPTURE_PAYLOAD_BYTES 32768
/* Default per-event copy (--payload-bytes): covers the request/response head of typical HTTP. */
#define TV_CAPTURE_DEFAULT_PAYLOAD_BYTES 4096
/* Size of the kernel -> user ring buffer (--ring-bytes): a power of two, multiple of the page
 * size. */
#define TV_CAPTURE_RING_BYTES (16u << 20)
/* Queued ring bytes that wake the reader (at most a quarter of the ring, set by the loader);
 * below it the reader finds events at its next poll interval instead. */
#define TV_CAPTURE_WAKEUP_BYTES (256u << 10)
#define TV_CAPTURE_MIN_RING_BYTES (4u << 10)
#define TV_CAPTURE_MAX_RING_BYTES (1u << 30)
/* Sockets tracked at once (hash map entries). */
#define TV_CAPTURE_MAX_SOCKETS 65536
/* iovec entries walked per readv/writev/recvmsg/sendmsg before giving up on copying. Servers
 * write a chunked body as size line, data and CRLF iovecs: Node.js's res.write(a); res.end(b)
 * is one writev of 9, nginx writes up to 64 (NGX_IOVS_PREALLOCATE); with 8 the framing after
 * them went uncopied and every such response was PARTIAL. Only iovecs present are walked. */
#define TV_CAPTURE_MAX_IOV 64
/* mmsghdr entries whose msg_len is summed per recvmmsg/sendmmsg (more: event flagged). */
#define TV_CAPTURE_MAX_MMSG 64
/* mmsghdr entries whose payload is copied (back to back, up to --payload-bytes). */
#define TV_CAPTURE_MAX_MMSG_COPY 4
#define TV_CAPTURE_COMM_BYTES 16

/* Sizes the kernel side masks with (payload offsets) or the kernel requires (BPF ring sizes:
 * a power of two and a multiple of the page size), checked where both sides compile. */
#define TV_CAPTURE_IS_POW2(x) ((x) != 0 && ((x) & ((x) - 1)) == 0)
_Static_assert(TV_CAPTURE_IS_POW2(TV_CAPTURE_PAYLOAD_BYTES), "payload offsets are masked");
_Static_assert(TV_CAPTURE_IS_POW2(TV_CAPTURE_RING_BYTES), "a BPF ring buffer's size");
_Static_assert(TV_CAPTURE_IS_POW2(TV_CAPTURE_MIN_RING_BYTES) &&
		       TV_CAPTURE_MIN_RING_BYTES % 4096 == 0,
	       "the smallest --ring-bytes is itself a valid ring size");
_Static_assert(TV_CAPTURE_IS_POW2(TV_CAPTURE_MAX_RING_BYTES), "the largest --ring-bytes too");
_Static_assert(TV_CAPTURE_DEFAULT_PAYLOAD_BYTES <= TV_CAPTURE_PAYLOAD_BYTES,
	       "the default copy fits the event's payload");

enum tv_event_kind {
	TV_EV_ACCEPT = 1,   /* socket accepted: we are the server side */
	TV_EV_CONNECT = 2,  /* socket connected (or connect in progress): we are the client side */
	TV_EV_DATA_IN = 3,  /* bytes received (read, readv, recvfrom, recvmsg, recvmmsg) */
	TV_EV_DATA_OUT = 4, /* bytes sent (write, writev, sendto, sendmsg, sendmmsg, sendfile) */
	/* the connection is gone: tracepoint mode, its TCP socket reached TCP_CLOSE (after the
	 * last reference to it was closed, by close, exit, exec, dup2, ..., or on a reset);
	 * sockfilter: FIN both ways or RST */
	TV_EV_CLOSE = 5,
	/* our side sent its FIN (tracepoint: ESTABLISHED -> FIN_WAIT1 or CLOSE_WAIT -> LAST_ACK,
	 * from the last close of the socket, exit, shutdown(SHUT_WR), ...; sockfilter: the
	 * server's FIN, in order): no more outbound bytes, so a body delimited by the close ends
	 * here even while the socket stays open */
	TV_EV_FIN_OUT = 6,
	/* the peer's FIN, after every byte before it (sockfilter only: in tracepoint mode the FIN
	 * arrives before the application has read what precedes it) */
	TV_EV_FIN_IN = 7,
};

enum tv_event_role {
	TV_ROLE_SERVER = 1, /* from accept */
	TV_ROLE_CLIENT = 2, /* from connect */
};

#define TV_EV_FLAG_TRUNCATED 0x1 /* payload holds fewer bytes than the syscall moved */
/* Data of this connection was lost before this event: lost_{in,out}_{events,bytes} say how
 * much, by direction, so the parser skips exactly those bytes (or resyncs) instead of
 * mis-pairing what follows. Set by the kernel (events dropped, ring full) and by the
 * sockfilter mode's TCP reassembly (sequence gaps). */
#define TV_EV_FLAG_GAP 0x2
/* With TV_EV_FLAG_GAP (tracepoint mode): the lost bytes include bytes that moved on the socket
 * through no hooked syscall (io_uring, ...), found from the kernel's own TCP byte counters
 * (tcp_sock copied_seq / write_seq); how many messages began in them is not known. */
#define TV_EV_FLAG_UNSEEN 0x4
/* On TV_EV_CLOSE (tracepoint mode): the socket closed while a descriptor still held it (a
 * reset, a failed connect): a data syscall its holder made just before may still be on its
 * way, its program behind this one. So the kernel keeps the socket's entry (marked
 * TV_SOCK_CLOSED) and puts its `sockets` key in tv_event.bytes; the loader deletes it
 * TV_CONN_CLOSE_GRACE_NS later (tracepoint.c), and user space ends the connection then too. */
#define TV_EV_FLAG_HELD 0x8
/* A CLOSE or FIN_OUT/IN is never data; a held CLOSE's bytes carry a key, not a count. */

/* Indexes of the kernel's per-CPU loss counters (map `lost`), summed by the loader. */
enum tv_lost_reason {
	TV_LOST_RING_FULL = 0, /* event dropped: ring buffer full */
	/* event sent with fewer payload bytes than the syscall moved: cut at --payload-bytes,
	 * TV_CAPTURE_MAX_IOV iovecs or a failed user read (bytes exact; sendfile not counted) */
	TV_LOST_TRUNCATED = 1,
	TV_LOST_MAP_FULL = 2,  /* sockets insert failed: a connection unseen */
	/* Not a reason of its own: of the TV_LOST_RING_FULL data events, those that began an HTTP
	 * request (a method at their first byte), i.e. requests that will have no record. */
	TV_LOST_REQUESTS = 3,
	/* Not events but bytes: moved on tracked sockets by no hooked syscall, found from the TCP
	 * byte counters (TV_EV_FLAG_UNSEEN) */
	TV_LOST_UNSEEN_BYTES = 4,
	TV_LOST_NREASONS = 5,
};

/* Addresses in network byte order; IPv4 in the first 4 bytes of addr; ports in host order.
 * A v4-mapped IPv6 address (::ffff:a.b.c.d) is reported as AF_INET a.b.c.d. */
struct tv_event_addr {
	__u8 addr[16];
	__u16 port;
	__u16 family; /* AF_INET or AF_INET6 */
};

/* tv_sock_info.flags */
#define TV_SOCK_SEQ_VALID 0x1 /* seq_next holds the TCP counters as far as events told */
#define TV_SOCK_FIN_IN 0x2    /* the peer's FIN was read: copied_seq counts it (one more) */
#define TV_SOCK_FIN_OUT 0x4   /* our FIN is queued: write_seq counts it (one more) */
#define TV_SOCK_FIN_SENT 0x8  /* TV_EV_FIN_OUT was sent */
#define TV_SOCK_CLOSED 0x10   /* TCP_CLOSE seen while held: the loader deletes the entry */

/* The kernel's counting filter over `sockets` (capture.bpf.c sock_filter, in .bss): the slot of
 * a socket inode number. The loader lowers a slot when it deletes an entry itself. */
#define TV_SOCK_FILTER_BITS 14
static inline __u32 tv_sock_filter_slot(__u64 ino)
{
	return (__u32)((ino * 0x9e3779b97f4a7c15ull) >> (64 - TV_SOCK_FILTER_BITS));
}

/* What a tracked TCP socket is: the value of the kernel's `sockets` map, keyed by the address
 * of its struct sock, so that every process holding a descriptor of it (fork, dup, SCM_RIGHTS)
 * is followed. Filled at accept/connect exit, removed when the socket reaches TCP_CLOSE. The
 * loader puts the sockets already open at the start into the `seeds` map, keyed by socket
 * inode number (client/capture/preexisting.c), which the kernel moves here at their first
 * event; both sides share this layout. */
struct tv_sock_info {
	__u64 gen; /* CLOCK_MONOTONIC ns at accept/connect (or at seeding): tv_event.conn_gen */
	__u64 ino; /* the socket's inode number (socket:[INO] in /proc/PID/fd): tv_event.conn_id */
	struct tv_event_addr local, remote;
	__u8 role; /* enum tv_event_role */
	__u8 flags; /* TV_SOCK_*: the kernel's; the loader writes 0 */
	__u16 pad;
	/* Data events of this socket lost (ring full) since the last event delivered, by
	 * direction (0 = in, 1 = out): handed to user space with the next event that gets
	 * through (TV_EV_FLAG_GAP). Atomic: threads of the process may share the socket. */
	__u32 lost_events[2], lost_heads[2];
	__u64 lost_bytes[2];
	/* Bytes that moved by no hooked syscall (TV_EV_FLAG_UNSEEN), not yet reported. */
	__u64 unseen_bytes[2];
	/* TV_SOCK_SEQ_VALID: copied_seq (0) and write_seq (1) of the socket as far as the events
	 * sent (or lost) account for them; a counter ahead of it means unseen bytes. */
	__u32 seq_next[2];
};

struct tv_event {
	__u64 ts_ns;     /* bpf_ktime_get_ns (CLOCK_MONOTONIC) at the syscall's exit (close: its
			  * entry); sockfilter: the packet's time, converted to CLOCK_MONOTONIC */
	__u64 conn_id;   /* tracepoint: the socket's inode number (tv_sock_info.ino), the same
			  * whichever process uses it; sockfilter: a hash of the 4-tuple */
	__u64 conn_gen;  /* ts_ns of the accept/connect: with conn_id, unique for a reused id */
	__u64 bytes;     /* data: the syscall's return value (bytes moved), full count;
			  * recvmmsg/sendmmsg: the sum of the messages' msg_len */
	__u32 pid;       /* tgid of the task that made the syscall (CLOSE, FIN_OUT: the current
			  * task, which for a close in softirq context is unrelated) */
	__u32 tid;
	__s32 fd;        /* -1 for the socket state events (CLOSE, FIN_OUT) */
	__u32 payload_len; /* bytes of payload[] that are valid (<= --payload-bytes) */
	__u8 kind;       /* enum tv_event_kind */
	__u8 role;       /* enum tv_event_role */
	__u8 flags;      /* TV_EV_FLAG_* */
	__u8 pad;
	/* TV_EV_FLAG_GAP: data events of this connection lost since the previous event that
	 * reached user space, by direction (IN = received): how many, how many of them began an
	 * HTTP message (a request method or "HTTP/1." at their first byte), and their bytes. A
	 * loss noted on another CPU while this event was built may arrive split over two
	 * events (the flag is set when any count is non-zero, the event count perhaps 0). */
	__u32 lost_in_events, lost_out_events;
	__u32 lost_in_heads, lost_out_heads;
	__u32 pad2;
	__u64 lost_in_bytes, lost_out_bytes;
	char comm[TV_CAPTURE_COMM_BYTES];
	struct tv_event_addr local, remote;
	/* Variable part: only payload_len bytes are sent through the ring. */
	__u8 payload[TV_CAPTURE_PAYLOAD_BYTES];
};

#define TV_EVENT_HEADER_BYTES (sizeof(struct tv_event) - TV_CAPTURE_PAYLOAD_BYTES)
/* The ring carries the header and payload_len bytes back to back: every field is placed by
 * hand (pad, pad2) so the kernel's and user space's compilers agree with no implicit padding. */
_Static_assert(TV_EVENT_HEADER_BYTES == 144 && sizeof(struct tv_event_addr) == 20,
	       "struct tv_event changed: keep its padding explicit and update this size");

#endif
