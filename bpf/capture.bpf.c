/* Kernel side of `tracevault capture`: syscall tracepoints that follow TCP sockets from
 * accept/connect, in whichever process uses them, until the socket is gone (sock
 * inet_sock_set_state), and stream their payload prefixes to user space through a ring buffer
 * (struct tv_event in tv_event.h). kprobes/fentry are unavailable here: tracepoints
 * only. Data syscalls are seen at sys_exit only, their arguments read from the saved user
 * registers: each enabled syscall tracepoint costs every call of it, in every process, so we enable
 * as few as we can (perf, nginx under wrk: sys_enter+sys_exit programs plus an in-flight map took
 * ~12.5% of its CPU, exit-only ~11%; empty programs on the same tracepoints alone ~4-6%). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "tv_event.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define MSG_PEEK 2
#define EINPROGRESS 115
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define RCV_SHUTDOWN 1
#define SEND_SHUTDOWN 2

/* A cast the verifier turns into a type (no call at run time): lets a pointer we read be
 * dereferenced with plain loads (faults read as 0) instead of a bpf_probe_read_kernel each. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define KCAST(type, p) ((type *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(type)))

/* Filters set by the loader before load (rodata): 0 means "any". */
const volatile __u32 target_tgid = 0;
const volatile __u32 target_port = 0;
const volatile __u32 self_tgid = 0; /* the capturing process: never traced */
/* --role: 0 both ends; else only sockets of this enum tv_event_role enter `sockets`, so the
 * other end's syscalls cost one map miss */
const volatile __u8 target_role = 0;
const volatile __u8 filter_comm = 0;  /* 1: only tasks whose comm equals target_comm */
const volatile char target_comm[TV_CAPTURE_COMM_BYTES] = {};
const volatile __u8 filter_cgroup = 0; /* 1: only tasks under the cgroup in cgroup_map[0] */
/* bytes copied per data syscall (--payload-bytes, <= TV_CAPTURE_PAYLOAD_BYTES) */
const volatile __u32 payload_bytes = TV_CAPTURE_DEFAULT_PAYLOAD_BYTES;
/* queued bytes at which the reader is woken (the loader sets it from the ring size) */
const volatile __u64 wakeup_bytes = TV_CAPTURE_WAKEUP_BYTES;

/* How a syscall's buffer argument is laid out (known from which sys_exit tracepoint fired). */
enum arg_mode {
	MODE_BUF = 1,      /* read/write/recvfrom/sendto: one user buffer */
	MODE_IOV = 2,      /* readv/writev: iovec array */
	MODE_MSG = 3,      /* recvmsg/sendmsg: user_msghdr */
	MODE_COUNT = 4,    /* sendfile, splice: count bytes only, the payload is not in user memory */
	MODE_MMSG = 6,     /* recvmmsg/sendmmsg: mmsghdr array, ret = messages moved */
};

struct sys_args {
	__u64 buf;
	__u64 cnt;
	__s32 fd;
	__u8 mode;
	__u8 kind; /* TV_EV_DATA_IN / TV_EV_DATA_OUT */
};

/* Tracked sockets by the address of their struct sock: a descriptor of one in any process
 * (forked child, dup, passed over a unix socket) finds it through its file. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TV_CAPTURE_MAX_SOCKETS);
	__type(key, __u64); /* struct sock * */
	__type(value, struct tv_sock_info);
} sockets SEC(".maps");

/* Sockets open before the capture, by inode number: the loader only knows them from /proc
 * (preexisting.c). Moved to `sockets` at their first event (adopt_seed). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TV_CAPTURE_MAX_SOCKETS);
	__type(key, __u64); /* socket inode number */
	__type(value, struct tv_sock_info);
} seeds SEC(".maps");

/* Entries in `seeds` (the loader adds, adopt_seed/drop_seed take off, atomically): while 0, a
 * socket missing from `sockets` costs no second lookup. */
__u64 seeds_left = 0;

/* A counting filter over `sockets`: how many entries' socket inode numbers hash to each slot
 * (sock_slot). Every data syscall on a TCP socket of any process looks here first, a plain
 * load, and only a non-zero slot costs the hash lookup: most sockets of a host are not
 * tracked. Raised after an insert that added an entry, lowered (by the entry's own ino) after
 * a delete that removed one. By inode, not by struct sock address: the verifier allows no
 * arithmetic on a kernel pointer. */
__u32 sock_filter[1 << TV_SOCK_FILTER_BITS] = {};

static __always_inline __u32 *sock_slot(__u64 ino)
{
	return &sock_filter[tv_sock_filter_slot(ino)];
}

/* Is the socket of inode ino perhaps tracked (or seeded)? 0: certainly not. */
static __always_inline int maybe_tracked(__u64 ino)
{
	return *(volatile __u32 *)sock_slot(ino) || *(volatile __u64 *)&seeds_left;
}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TV_CAPTURE_RING_BYTES);
} events SEC(".maps");

/* Loss counters by enum tv_lost_reason: read (summed over CPUs) by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TV_LOST_NREASONS);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* --cgroup: the loader stores the cgroup v2 directory's fd at index 0. As in libbpf-tools,
 * bpf_current_task_under_cgroup matches the cgroup and all its descendants. */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cgroup_map SEC(".maps");

/* An event is assembled here and sent with bpf_ringbuf_output so that the ring carries only
 * payload_len payload bytes, not the fixed maximum. Offsets and lengths are masked (the verifier
 * cannot follow the min() arithmetic as clang emits it); spill[] makes every masked copy provably
 * in bounds. The logic itself never writes past payload[]. At 32 KiB of payload a slot exceeds
 * the per-CPU allocator's 32 KiB value limit, so this is a plain array with one slot per
 * possible CPU (the loader sets max_entries), indexed by the current CPU. */
#define PAYLOAD_MASK (2 * TV_CAPTURE_PAYLOAD_BYTES - 1)
struct scratch {
	__u32 busy; /* 1 while a program on this CPU assembles an event here (scratch_get) */
	struct tv_event ev;
	__u8 spill[2 * TV_CAPTURE_PAYLOAD_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* set to the number of possible CPUs by the loader */
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_buf SEC(".maps");

static __always_inline int tgid_wanted(__u32 tgid)
{
	if (tgid == self_tgid)
		return 0;
	return !target_tgid || tgid == target_tgid;
}

/* --comm and --cgroup: checked where a socket starts being tracked (accept/connect), so that
 * nothing of another task's connection is ever copied. */
static __always_inline int task_wanted(void)
{
	if (filter_comm) {
		char comm[TV_CAPTURE_COMM_BYTES];

		bpf_get_current_comm(comm, sizeof(comm));
		for (int i = 0; i < TV_CAPTURE_COMM_BYTES; i++) {
			if (comm[i] != target_comm[i])
				return 0;
			if (!comm[i])
				break;
		}
	}
	if (filter_cgroup && bpf_current_task_under_cgroup(&cgroup_map, 0) != 1)
		return 0;
	return 1;
}

static __always_inline void count_lost_n(__u32 reason, __u64 k)
{
	__u64 *n = bpf_map_lookup_elem(&lost, &reason);

	/* per-CPU slot, but a syscall tracepoint program may be preempted on a fully preemptible
	 * kernel (see scratch_get): atomic add */
	if (n)
		__sync_fetch_and_add(n, k);
}

static __always_inline void count_lost(__u32 reason)
{
	count_lost_n(reason, 1);
}

/* This CPU's slot. Syscall tracepoints are faultable since 6.14 and their programs run with
 * migration but not preemption disabled: on a kernel with full preemption a program holding
 * the slot can be preempted and the next one on this CPU would overwrite its half-built event.
 * The slot is claimed atomically instead; a program that finds it taken drops its event,
 * counted as ring full (this kernel runs preempt=none, where it never happens). Every
 * scratch_get that succeeds is paired with a scratch_put. */
static __always_inline struct scratch *scratch_get(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct scratch *s = bpf_map_lookup_elem(&scratch_buf, &cpu);

	if (!s)
		return NULL;
	if (__sync_val_compare_and_swap(&s->busy, 0, 1) != 0) {
		count_lost(TV_LOST_RING_FULL);
		return NULL;
	}
	return s;
}

static __always_inline void scratch_put(struct scratch *s)
{
	*(volatile __u32 *)&s->busy = 0;
}

static __always_inline void fill_header(struct tv_event *ev, const struct tv_sock_info *si,
					__u8 kind, int fd)
{
	__u64 id = bpf_get_current_pid_tgid();

	ev->ts_ns = bpf_ktime_get_ns();
	ev->conn_id = si->ino;
	ev->conn_gen = si->gen;
	ev->bytes = 0;
	ev->pid = id >> 32;
	ev->tid = (__u32)id;
	ev->fd = fd;
	ev->payload_len = 0;
	ev->kind = kind;
	ev->role = si->role;
	ev->flags = 0;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ev->local = si->local;
	ev->remote = si->remote;
}

#define WORD(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)
enum { NOT_A_HEAD = 0, REQUEST_HEAD = 1, RESPONSE_HEAD = 2 };

/* Does a copied payload begin an HTTP/1.x message (a request with one of RFC 9110's methods or
 * PATCH, or a final response)? Checked only for events about to be lost, so user space can
 * tell how many messages a gap swallowed (and we can count lost requests).
 * A second message later in the same lost event (pipelining) is not seen: a bounded scan of
 * the payload would cost the verifier and the hot path more than it is worth. */
static __always_inline int head_kind(const struct tv_event *ev, __u32 payload_len)
{
	__u32 w;

	if (payload_len < 5)
		return NOT_A_HEAD;
	__builtin_memcpy(&w, ev->payload, 4);
	if (w == WORD('H', 'T', 'T', 'P') && ev->payload[4] == '/') {
		/* "HTTP/1.1 100 Continue" is interim: the final response of that request follows
		 * (101 Switching Protocols is final). Too short to tell: counted as final. */
		if (payload_len >= 12 && ev->payload[9] == '1' &&
		    !(ev->payload[10] == '0' && ev->payload[11] == '1'))
			return NOT_A_HEAD;
		return RESPONSE_HEAD;
	}
	if (w == WORD('G', 'E', 'T', ' ') || w == WORD('P', 'O', 'S', 'T') ||
	    w == WORD('P', 'U', 'T', ' ') || w == WORD('H', 'E', 'A', 'D') ||
	    w == WORD('D', 'E', 'L', 'E') || w == WORD('P', 'A', 'T', 'C') ||
	    w == WORD('O', 'P', 'T', 'I') || w == WORD('C', 'O', 'N', 'N') ||
	    w == WORD('T', 'R', 'A', 'C'))
		return REQUEST_HEAD;
	return NOT_A_HEAD;
}

/* A data event did not fit in the ring: remember what the connection lost so the next event
 * that gets through tells user space exactly which bytes are missing. */
static __always_inline void note_lost_data(struct tv_sock_info *si, const struct tv_event *ev,
					   __u32 payload_len)
{
	__u32 d = ev->kind == TV_EV_DATA_OUT; /* 0: in, 1: out */
	int head = head_kind(ev, payload_len);

	__sync_fetch_and_add(&si->lost_events[d], 1);
	__sync_fetch_and_add(&si->lost_bytes[d], ev->bytes);
	if (head == NOT_A_HEAD)
		return;
	__sync_fetch_and_add(&si->lost_heads[d], 1);
	/* a server receives requests, a client sends them */
	if (head == REQUEST_HEAD && (d == 0) == (si->role == TV_ROLE_SERVER))
		count_lost(TV_LOST_REQUESTS);
}

/* Send the assembled event of size bytes (header + payload). si: the socket's map entry, whose
 * pending loss rides along in the event and is taken off once the event is in the ring.
 * is_data (a constant): a data event, whose loss is remembered for the next one. */
static __always_inline void send_event(struct tv_event *ev, __u64 size, __u32 payload_len,
				       struct tv_sock_info *si, int is_data)
{
	__u64 unseen_in = si->unseen_bytes[0], unseen_out = si->unseen_bytes[1];

	ev->lost_in_events = si->lost_events[0] + (unseen_in != 0);
	ev->lost_out_events = si->lost_events[1] + (unseen_out != 0);
	ev->lost_in_heads = si->lost_heads[0];
	ev->lost_out_heads = si->lost_heads[1];
	ev->lost_in_bytes = si->lost_bytes[0] + unseen_in;
	ev->lost_out_bytes = si->lost_bytes[1] + unseen_out;
	ev->pad2 = 0;
	/* Any of the counts, not only the events: note_lost_data on another CPU (a softirq
	 * CLOSE beside its holder's syscall) may add between these reads, so a loss can arrive
	 * split over two events, its bytes and head in the one that has no event count. Without
	 * the flag user space would drop them, and the lost request's place in the FIFO with
	 * them (every later response paired one request off). */
	if (ev->lost_in_events | ev->lost_out_events | ev->lost_in_heads | ev->lost_out_heads |
	    ev->lost_in_bytes | ev->lost_out_bytes)
		ev->flags |= TV_EV_FLAG_GAP;
	if (unseen_in | unseen_out)
		ev->flags |= TV_EV_FLAG_UNSEEN;
	/* Wake the reader only once wakeup_bytes are queued: a wake-up per event cost the reader
	 * a context switch per request (bench: nginx at 0.54-0.64x of its speed with capture on).
	 * The reader also drains the ring every poll interval, so nothing waits longer than that. */
	if (bpf_ringbuf_output(&events, ev, size,
			       bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes
				       ? BPF_RB_FORCE_WAKEUP
				       : BPF_RB_NO_WAKEUP)) {
		count_lost(TV_LOST_RING_FULL);
		if (is_data)
			note_lost_data(si, ev, payload_len);
		return;
	}
	/* Delivered: take off what it reported. Losses another thread added meanwhile stay. */
	if (ev->flags & TV_EV_FLAG_GAP) {
		__sync_fetch_and_add(&si->lost_events[0], -(ev->lost_in_events - (unseen_in != 0)));
		__sync_fetch_and_add(&si->lost_events[1], -(ev->lost_out_events - (unseen_out != 0)));
		__sync_fetch_and_add(&si->lost_heads[0], -ev->lost_in_heads);
		__sync_fetch_and_add(&si->lost_heads[1], -ev->lost_out_heads);
		__sync_fetch_and_add(&si->lost_bytes[0], -(ev->lost_in_bytes - unseen_in));
		__sync_fetch_and_add(&si->lost_bytes[1], -(ev->lost_out_bytes - unseen_out));
		__sync_fetch_and_add(&si->unseen_bytes[0], -unseen_in);
		__sync_fetch_and_add(&si->unseen_bytes[1], -unseen_out);
	}
}

/* Send a data event assembled in the scratch slot and give the slot back. */
static __always_inline void submit(struct scratch *s, __u32 payload_len, struct tv_sock_info *si)
{
	barrier_var(payload_len); /* <= PAYLOAD already: the mask is for the verifier */
	send_event(&s->ev, TV_EVENT_HEADER_BYTES + (payload_len & PAYLOAD_MASK), payload_len, si,
		   1);
	scratch_put(s);
}

/* An event without payload (accept, connect, FIN, close), built on the stack: it needs no
 * scratch slot, so one sent from softirq context (a close) never finds the slot taken. */
static __always_inline void send_ctl(struct tv_sock_info *si, __u8 kind, int fd, __u8 flags,
				    __u64 bytes)
{
	__u64 buf[TV_EVENT_HEADER_BYTES / 8] = {};
	struct tv_event *ev = (struct tv_event *)buf;

	fill_header(ev, si, kind, fd);
	ev->flags = flags;
	ev->bytes = bytes;
	send_event(ev, TV_EVENT_HEADER_BYTES, 0, si, 0);
}

/* ---- a descriptor's socket ---- */

/* The file open at fd in the current task, or NULL. */
static __always_inline struct file *fd_file(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file *f = NULL;

	if ((unsigned int)fd >= fdt->max_fds)
		return NULL;
	/* fdt->fd is a pointer array, which the verifier cannot index: one read */
	if (bpf_probe_read_kernel(&f, sizeof(f), &fdt->fd[fd]) || !f)
		return NULL;
	return KCAST(struct file, f);
}

/* The struct sock of a socket file, or NULL when f is not a socket (a file, a pipe, ...):
 * tested on the inode's mode, so a non-socket costs two loads and no map lookup. */
static __always_inline struct sock *file_sock(struct file *f)
{
	struct socket *so;

	if ((f->f_inode->i_mode & S_IFMT) != S_IFSOCK)
		return NULL;
	so = KCAST(struct socket, f->private_data);
	return so->sk;
}

/* Compare the socket's own TCP counters with what the events accounted for (the bytes in_n and
 * out_n of the event being sent included): bytes the counters are ahead by moved through no
 * hooked syscall, and are reported as unseen with the next event (TV_EV_FLAG_UNSEEN). The
 * peer's FIN (copied_seq) and ours (write_seq) take one sequence number each, not a byte. The
 * first call sets the base. Threads racing on one socket may make a counter look behind (then
 * our count stands) but not ahead. */
static __always_inline void seq_account(struct tv_sock_info *si, __u64 sk_addr, __u64 in_n,
					__u64 out_n)
{
	struct tcp_sock *tp = KCAST(struct tcp_sock, sk_addr);
	__u32 copied = tp->copied_seq, written = tp->write_seq;
	__s32 d;

	if (!(si->flags & TV_SOCK_SEQ_VALID)) {
		si->seq_next[0] = copied;
		si->seq_next[1] = written;
		si->flags |= TV_SOCK_SEQ_VALID;
		return;
	}
	d = (__s32)(copied - si->seq_next[0] - (__u32)in_n);
	if (d > 0 && !(si->flags & TV_SOCK_FIN_IN) &&
	    (tp->inet_conn.icsk_inet.sk.sk_shutdown & RCV_SHUTDOWN) && copied == tp->rcv_nxt) {
		d--; /* the FIN was read */
		si->flags |= TV_SOCK_FIN_IN;
	}
	if (d > 0) {
		__sync_fetch_and_add(&si->unseen_bytes[0], d);
		count_lost_n(TV_LOST_UNSEEN_BYTES, d);
	}
	si->seq_next[0] = d >= 0 ? copied : si->seq_next[0] + (__u32)in_n;
	d = (__s32)(written - si->seq_next[1] - (__u32)out_n);
	if (d > 0 && !(si->flags & TV_SOCK_FIN_OUT) &&
	    (tp->inet_conn.icsk_inet.sk.sk_shutdown & SEND_SHUTDOWN)) {
		d--; /* our FIN is queued */
		si->flags |= TV_SOCK_FIN_OUT;
	}
	if (d > 0) {
		__sync_fetch_and_add(&si->unseen_bytes[1], d);
		count_lost_n(TV_LOST_UNSEEN_BYTES, d);
	}
	si->seq_next[1] = d >= 0 ? written : si->seq_next[1] + (__u32)out_n;
}

/* A socket open before the capture, seeded by the loader under its inode number: move it to
 * `sockets` (its counters' base is taken at this first event). NULL when it is not one. */
static __always_inline struct tv_sock_info *adopt_seed(struct file *f, __u64 key)
{
	__u64 ino;
	struct tv_sock_info *seed;

	if (!*(volatile __u64 *)&seeds_left)
		return NULL;
	ino = f->f_inode->i_ino;
	seed = bpf_map_lookup_elem(&seeds, &ino);
	if (!seed)
		return NULL;
	/* NOEXIST: another CPU may have adopted it first; an accept of this sock can't race */
	if (!bpf_map_update_elem(&sockets, &key, seed, BPF_NOEXIST)) {
		__sync_fetch_and_add(sock_slot(ino), 1);
	} else if (!bpf_map_lookup_elem(&sockets, &key)) {
		count_lost(TV_LOST_MAP_FULL);
		return NULL;
	}
	if (!bpf_map_delete_elem(&seeds, &ino))
		__sync_fetch_and_add(&seeds_left, -1);
	return bpf_map_lookup_elem(&sockets, &key);
}

/* A socket ends before it was adopted (no event since the capture began): forget its seed.
 * Only from process context, while the sock still has its socket (close, exit, shutdown). */
static __always_inline void drop_seed(__u64 sk_addr)
{
	struct sock *sk = KCAST(struct sock, sk_addr);
	struct socket *so;
	__u64 ino;

	if (!*(volatile __u64 *)&seeds_left)
		return;
	so = sk->sk_socket;
	if (!so || !so->file)
		return;
	ino = so->file->f_inode->i_ino;
	if (!bpf_map_delete_elem(&seeds, &ino))
		__sync_fetch_and_add(&seeds_left, -1);
}

/* A data syscall found the entry at its struct sock's address holding another socket (another
 * inode): the entry's socket was freed while its entry stayed, and a new socket, of any
 * process, got its memory. That happens to a held CLOSE's entry (TV_SOCK_CLOSED), kept for the
 * loader to delete TV_CONN_CLOSE_GRACE_NS after its event arrives, or never when the ring had
 * no room for that event. Counting the new socket's syscalls in the old connection invented
 * exchanges there and, its TCP counters being unrelated, billions of unseen bytes (an unhooked
 * request counted for a request its own server logged). A closed entry is deleted here (with
 * its filter slot): its socket is gone, so no late data syscall of its holder can come. One
 * not closed is left alone, its event skipped all the same: a live socket's entry cannot be at
 * another live socket's address. */
static __always_inline void forget_reused(struct tv_sock_info *si, __u64 key)
{
	__u64 ino = si->ino;

	if (!(si->flags & TV_SOCK_CLOSED))
		return;
	if (!bpf_map_delete_elem(&sockets, &key))
		__sync_fetch_and_add(sock_slot(ino), -1);
}

/* ---- new sockets: accept / connect ---- */

static __always_inline int is_v4_mapped(const __u8 a[16])
{
	for (int i = 0; i < 10; i++)
		if (a[i])
			return 0;
	return a[10] == 0xff && a[11] == 0xff;
}

static __always_inline void v4_unmap(struct tv_event_addr *a)
{
	__builtin_memcpy(a->addr, a->addr + 12, 4);
	__builtin_memset(a->addr + 4, 0, 12);
	a->family = AF_INET;
}

static __always_inline int track_socket(int fd, __u8 role)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct tv_sock_info si = {};
	struct tv_sock_info *e;
	struct file *f;
	struct sock *sk;
	__u64 key, stale_ino;

	if (fd < 0 || (target_role && role != target_role) || !tgid_wanted(tgid) ||
	    !task_wanted())
		return 0;
	f = fd_file(fd);
	if (!f)
		return 0;
	sk = file_sock(f);
	if (!sk)
		return 0;
	si.local.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (si.local.family != AF_INET && si.local.family != AF_INET6)
		return 0;
	if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM)
		return 0;
	si.remote.family = si.local.family;
	si.local.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	si.remote.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (target_port && si.local.port != target_port && si.remote.port != target_port)
		return 0;
	if (si.local.family == AF_INET) {
		BPF_CORE_READ_INTO(&si.local.addr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO(&si.remote.addr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&si.local.addr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&si.remote.addr, sk, __sk_common.skc_v6_daddr);
		/* an IPv4 peer of a dual-stack socket: report plain IPv4 */
		if (is_v4_mapped(si.local.addr) && is_v4_mapped(si.remote.addr)) {
			v4_unmap(&si.local);
			v4_unmap(&si.remote);
		}
	}
	si.role = role;
	si.gen = bpf_ktime_get_ns();
	si.ino = f->f_inode->i_ino;
	key = (__u64)sk;
	/* the counters' base: now for an established socket, else (a connect in progress) at
	 * ESTABLISHED (sock_state) or, that missed, at the first event */
	if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_ESTABLISHED)
		seq_account(&si, key, 0, 0);
	/* BPF_ANY: a stale entry of a sock freed and reused (its TCP_CLOSE not seen, or a held
	 * one the loader has not deleted yet) is replaced, and its filter slot given back */
	e = bpf_map_lookup_elem(&sockets, &key);
	stale_ino = e ? e->ino : 0;
	if (bpf_map_update_elem(&sockets, &key, &si, BPF_ANY)) {
		count_lost(TV_LOST_MAP_FULL); /* table full: this connection will not be seen */
		return 0;
	}
	if (e)
		__sync_fetch_and_add(sock_slot(stale_ino), -1);
	__sync_fetch_and_add(sock_slot(si.ino), 1);
	e = bpf_map_lookup_elem(&sockets, &key);
	if (!e)
		return 0;
	send_ctl(e, role == TV_ROLE_SERVER ? TV_EV_ACCEPT : TV_EV_CONNECT, fd, 0, 0);
	/* The socket may have reached TCP_CLOSE before it was in the map (a peer's reset while
	 * it waited in the accept queue, a non-blocking connect refused on loopback before
	 * connect returned): sock_state then found nothing to end, and the entry would stay
	 * until the capture ends (with a filter slot raised, and a connection user space never
	 * closes). Read the state after the insert and end it as sock_state ends a held one;
	 * if sock_state ran in between, this second held CLOSE is harmless (user space and the
	 * loader's gen check take it as the same). */
	if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE) {
		e->flags |= TV_SOCK_CLOSED;
		send_ctl(e, TV_EV_CLOSE, -1, TV_EV_FLAG_HELD, key);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return track_socket(ctx->ret, TV_ROLE_SERVER);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return track_socket(ctx->ret, TV_ROLE_SERVER);
}

/* The user registers saved at syscall entry. The syscall ABI leaves the argument registers
 * intact, so at sys_exit they still hold the arguments (PT_REGS_PARMn_CORE_SYSCALL also covers
 * arm64, where x0 then holds the return value and the first argument is in orig_x0). This spares
 * a sys_enter program and a per-thread map of in-flight syscalls, which also leaked an entry for
 * every thread killed inside a traced syscall (no sys_exit then). */
static __always_inline struct pt_regs *user_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();

	if (!tgid_wanted(id >> 32))
		return 0;
	/* a non-blocking connect returns -EINPROGRESS; the addresses are already bound then */
	if (ctx->ret == 0 || ctx->ret == -EINPROGRESS)
		track_socket(PT_REGS_PARM1_CORE_SYSCALL(user_regs()), TV_ROLE_CLIENT);
	return 0;
}

/* ---- data syscalls ---- */

static __always_inline __u32 copy_buf(struct scratch *s, __u64 buf, __u64 ret)
{
	__u32 len = ret > payload_bytes ? payload_bytes : ret;

	barrier_var(len); /* clang would drop the mask, which only the verifier needs */
	len &= PAYLOAD_MASK;
	if (bpf_probe_read_user(s->ev.payload, len, (const void *)buf))
		return 0;
	return len;
}

/* Copy up to ret bytes (what the syscall moved for this message) from an iovec array into the
 * payload at off, stopping at the payload limit or after TV_CAPTURE_MAX_IOV entries. Returns
 * the payload offset reached. */
static __always_inline __u32 copy_iov(struct scratch *s, __u32 off, __u64 iovp, __u64 iovcnt,
				      __u64 ret)
{
	__u64 done = 0;

	for (int i = 0; i < TV_CAPTURE_MAX_IOV; i++) {
		struct iovec iov;
		__u64 len;
		__u32 o, l;

		if (i >= iovcnt || off >= payload_bytes || done >= ret)
			break;
		if (bpf_probe_read_user(&iov, sizeof(iov),
					(const void *)(iovp + i * sizeof(struct iovec))))
			break;
		len = iov.iov_len;
		if (len > ret - done)
			len = ret - done;
		if (len > payload_bytes - off)
			len = payload_bytes - off;
		o = off & (TV_CAPTURE_PAYLOAD_BYTES - 1);
		l = len;
		barrier_var(l); /* clang would drop the mask, which only the verifier needs */
		l &= PAYLOAD_MASK;
		if (bpf_probe_read_user(s->ev.payload + o, l, iov.iov_base))
			break;
		off += l;
		done += l;
	}
	return off;
}

/* recvmmsg/sendmmsg on a stream socket: the messages are consecutive bytes of the stream, so
 * they are copied back to back (a request in the second message is as much a part of the
 * payload as one in the first). Stops at the payload limit, after TV_CAPTURE_MAX_MMSG_COPY
 * messages, or at a message not copied whole: what follows would not be contiguous. */
static __always_inline __u32 copy_mmsg(struct scratch *s, __u64 vec, long nmsg)
{
	__u32 off = 0;

	for (int m = 0; m < TV_CAPTURE_MAX_MMSG_COPY; m++) {
		struct mmsghdr mh;
		__u32 start = off;

		if (m >= nmsg || off >= payload_bytes)
			break;
		if (bpf_probe_read_user(&mh, sizeof(mh),
					(const void *)(vec + m * sizeof(struct mmsghdr))))
			break;
		off = copy_iov(s, off, (__u64)mh.msg_hdr.msg_iov, mh.msg_hdr.msg_iovlen, mh.msg_len);
		if (off - start < mh.msg_len)
			break;
	}
	return off;
}

/* recvmmsg/sendmmsg return a message count: sum the kernel-filled msg_len of each message so the
 * byte count stays exact (more than TV_CAPTURE_MAX_MMSG messages: *complete = 0), and copy the
 * first message's payload. */
static __always_inline __u64 mmsg_bytes(__u64 vec, long nmsg, int *complete)
{
	__u64 sum = 0;

	*complete = nmsg <= TV_CAPTURE_MAX_MMSG;
	for (int i = 0; i < TV_CAPTURE_MAX_MMSG; i++) {
		unsigned int len;

		if (i >= nmsg)
			break;
		if (bpf_probe_read_user(&len, sizeof(len),
					(const void *)(vec + i * sizeof(struct mmsghdr) +
						       __builtin_offsetof(struct mmsghdr, msg_len)))) {
			*complete = 0;
			break;
		}
		sum += len;
	}
	return sum;
}

/* One data syscall that returned ret on descriptor fd, with its arguments in the saved user
 * registers. peek_arg: index of the flags argument whose MSG_PEEK bit makes us skip the call
 * (recv with MSG_PEEK leaves the bytes in the socket: they will be read again), or -1.
 * Returns 1 when fd is a tracked socket. */
static __always_inline int data_event(long ret, int fd, struct pt_regs *regs, __u8 mode,
				      __u8 kind, int peek_arg)
{
	struct sys_args a = { .mode = mode, .kind = kind, .fd = fd };
	struct tv_sock_info *si;
	struct scratch *s;
	struct file *f;
	struct sock *sk;
	__u64 key, ino, bytes = ret;
	__u32 n = 0;
	int complete = 1;

	f = fd_file(fd);
	if (!f)
		return 0;
	sk = file_sock(f);
	if (!sk)
		return 0; /* files, pipes: never a map lookup */
	/* unix, UDP, netlink sockets, and with --port the TCP sockets of other ports, cannot be
	 * tracked: two loads instead of a lookup */
	if (sk->sk_protocol != IPPROTO_TCP ||
	    (target_port && sk->__sk_common.skc_num != target_port &&
	     bpf_ntohs(sk->__sk_common.skc_dport) != target_port))
		return 0;
	ino = f->f_inode->i_ino;
	if (!maybe_tracked(ino))
		return 0;
	key = (__u64)sk;
	si = bpf_map_lookup_elem(&sockets, &key);
	if (!si && !(si = adopt_seed(f, key)))
		return 0; /* not a tracked socket: never copied */
	if (si->ino != ino) {
		/* the entry is a freed socket's whose struct sock this one reuses (TCP's slab
		 * hands it out again at once): its bytes are not that connection's */
		forget_reused(si, key);
		return 0;
	}
	if (peek_arg == 2 && (PT_REGS_PARM3_CORE_SYSCALL(regs) & MSG_PEEK))
		return 1;
	if (peek_arg == 3 && (PT_REGS_PARM4_CORE_SYSCALL(regs) & MSG_PEEK))
		return 1;
	a.buf = PT_REGS_PARM2_CORE_SYSCALL(regs);
	if (mode == MODE_IOV)
		a.cnt = PT_REGS_PARM3_CORE_SYSCALL(regs);
	if (a.mode == MODE_MMSG) {
		bytes = mmsg_bytes(a.buf, ret, &complete);
		if (!bytes) /* messages of 0 bytes: end of stream, not data */
			return 1;
	}
	/* before the slot: bytes this event accounts for are not unseen even if it is dropped */
	seq_account(si, key, kind == TV_EV_DATA_IN ? bytes : 0, kind == TV_EV_DATA_OUT ? bytes : 0);
	s = scratch_get();
	if (!s) {
		__u32 d = kind == TV_EV_DATA_OUT;

		__sync_fetch_and_add(&si->lost_events[d], 1);
		__sync_fetch_and_add(&si->lost_bytes[d], bytes);
		return 1;
	}
	fill_header(&s->ev, si, a.kind, a.fd);
	s->ev.bytes = bytes;
	if (a.mode == MODE_MMSG) {
		if (!complete)
			s->ev.flags |= TV_EV_FLAG_TRUNCATED;
		n = copy_mmsg(s, a.buf, ret);
	} else if (a.mode == MODE_BUF) {
		n = copy_buf(s, a.buf, ret);
	} else if (a.mode == MODE_IOV) {
		n = copy_iov(s, 0, a.buf, a.cnt, ret);
	} else if (a.mode == MODE_MSG) {
		struct user_msghdr msg;

		if (!bpf_probe_read_user(&msg, sizeof(msg), (const void *)a.buf))
			n = copy_iov(s, 0, (__u64)msg.msg_iov, msg.msg_iovlen, ret);
	}
	s->ev.payload_len = n;
	if (n < s->ev.bytes) {
		s->ev.flags |= TV_EV_FLAG_TRUNCATED;
		/* sendfile and splice copy nothing by design: not a truncation we meant */
		if (a.mode != MODE_COUNT)
			count_lost(TV_LOST_TRUNCATED);
	}
	submit(s, n, si);
	return 1;
}

/* A data syscall whose first argument is the descriptor. Every process is looked at, not only
 * the filtered ones: a tracked socket may be used by a process that did not open it. */
static __always_inline int exit_data(long ret, __u8 mode, __u8 kind, int peek_arg)
{
	struct pt_regs *regs;

	if (ret <= 0 || (__u32)(bpf_get_current_pid_tgid() >> 32) == self_tgid)
		return 0;
	regs = user_regs();
	data_event(ret, PT_REGS_PARM1_CORE_SYSCALL(regs), regs, mode, kind, peek_arg);
	return 0;
}

#define DATA_TP(name, mode, kind, peek_arg)                                 \
	SEC("tracepoint/syscalls/sys_exit_" #name)                          \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)               \
	{                                                                   \
		return exit_data(ctx->ret, mode, kind, peek_arg);           \
	}

DATA_TP(read, MODE_BUF, TV_EV_DATA_IN, -1)
DATA_TP(write, MODE_BUF, TV_EV_DATA_OUT, -1)
DATA_TP(readv, MODE_IOV, TV_EV_DATA_IN, -1)
DATA_TP(writev, MODE_IOV, TV_EV_DATA_OUT, -1)
DATA_TP(sendto, MODE_BUF, TV_EV_DATA_OUT, -1)
DATA_TP(sendmsg, MODE_MSG, TV_EV_DATA_OUT, -1)
/* sendfile64(out_fd, in_fd, offset, count): the body comes from a file; count it only */
DATA_TP(sendfile64, MODE_COUNT, TV_EV_DATA_OUT, -1)
DATA_TP(recvfrom, MODE_BUF, TV_EV_DATA_IN, 3)
DATA_TP(recvmsg, MODE_MSG, TV_EV_DATA_IN, 2)
DATA_TP(recvmmsg, MODE_MMSG, TV_EV_DATA_IN, 3)
DATA_TP(sendmmsg, MODE_MMSG, TV_EV_DATA_OUT, -1)

/* splice(fd_in, off_in, fd_out, off_out, len, flags): one end is a pipe, the other may be a
 * tracked socket. Counted, not copied (the bytes are in pipe pages), as sendfile. vmsplice
 * and tee only take pipes, copy_file_range only files: no socket bytes to see there. */
SEC("tracepoint/syscalls/sys_exit_splice")
int exit_splice(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs;

	if (ctx->ret <= 0 || (__u32)(bpf_get_current_pid_tgid() >> 32) == self_tgid)
		return 0;
	regs = user_regs();
	if (!data_event(ctx->ret, PT_REGS_PARM3_CORE_SYSCALL(regs), regs, MODE_COUNT,
			TV_EV_DATA_OUT, -1))
		data_event(ctx->ret, PT_REGS_PARM1_CORE_SYSCALL(regs), regs, MODE_COUNT,
			   TV_EV_DATA_IN, -1);
	return 0;
}

/* ---- the end of a connection: TCP state changes ---- */

/* Every TCP socket's state changes (process context for close, exit, shutdown and connect;
 * softirq for what the peer's segments cause). A connection ends when its socket does, not at
 * a close() of one of its descriptors: only the last reference going away (close, exit, exec
 * with O_CLOEXEC, close_range, dup2 over it, ...) makes TCP send our FIN.
 * ESTABLISHED (a connect completing): the counters' base. ESTABLISHED -> FIN_WAIT1 and
 * CLOSE_WAIT -> LAST_ACK: our FIN, which also ends a body delimited by the close
 * (TV_EV_FIN_OUT). TCP_CLOSE: the socket is gone (TV_EV_CLOSE); its entry is deleted. */
SEC("tracepoint/sock/inet_sock_set_state")
int sock_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	int state = ctx->newstate;
	struct tv_sock_info *si;
	__u64 key;

	if (ctx->protocol != IPPROTO_TCP ||
	    (state != TCP_ESTABLISHED && state != TCP_FIN_WAIT1 && state != TCP_LAST_ACK &&
	     state != TCP_CLOSE))
		return 0;
	key = (__u64)ctx->skaddr;
	si = bpf_map_lookup_elem(&sockets, &key);
	if (!si) {
		if (state != TCP_ESTABLISHED)
			drop_seed(key);
		return 0;
	}
	/* a closed socket's entry, kept for its holder's late data events (TV_SOCK_CLOSED): no
	 * state change after TCP_CLOSE is its own (a socket connecting again is tracked anew at
	 * its connect). Its memory may already be another socket's, whose FIN here would end the
	 * old connection again with that socket's TCP counters taken for unseen bytes. */
	if (si->flags & TV_SOCK_CLOSED)
		return 0;
	if (state == TCP_ESTABLISHED) {
		if (!(si->flags & TV_SOCK_SEQ_VALID))
			seq_account(si, key, 0, 0);
		return 0;
	}
	if (state == TCP_CLOSE) {
		/* no counter check here: TCP_CLOSE often comes in softirq (a reset, the last ACK)
		 * while the owner's last data syscall is still in its program on another CPU,
		 * which would make its bytes look unseen (seen under wrk: an RST at its end) */
		__u64 ino = si->ino;

		if (KCAST(struct sock, key)->sk_socket) {
			/* held: its holder's last data program may be behind us; the loader
			 * deletes the entry later (TV_EV_FLAG_HELD) */
			si->flags |= TV_SOCK_CLOSED;
			send_ctl(si, TV_EV_CLOSE, -1, TV_EV_FLAG_HELD, key);
			return 0;
		}
		send_ctl(si, TV_EV_CLOSE, -1, 0, 0);
		if (!bpf_map_delete_elem(&sockets, &key))
			__sync_fetch_and_add(sock_slot(ino), -1);
		return 0;
	}
	if (!(si->flags & TV_SOCK_FIN_SENT)) {
		si->flags |= TV_SOCK_FIN_SENT;
		/* our FIN comes from the process ending the socket, after its last data syscall:
		 * unseen bytes before it are reported with it */
		if (si->flags & TV_SOCK_SEQ_VALID)
			seq_account(si, key, 0, 0);
		send_ctl(si, TV_EV_FIN_OUT, -1, 0, 0);
	}
	return 0;
}
