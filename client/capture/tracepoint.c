/* --mode tracepoint, the default event source of `tracevault capture`: loads
 * bpf/capture.bpf.c through its skeleton (after mounting tracefs if needed), sets its filters
 * (pid, port, comm, cgroup), seeds the connections open before the attach from /proc, and
 * drains its ring buffer into the caller's event handler. Loss is counted per CPU in the
 * kernel (map `lost`) and read here by reason. */
#include "capture/tracepoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/tv_event.h" /* the kernel event layout and limits */
#include "capture.skel.h"
#include "capture/conn_table.h" /* TV_CONN_CLOSE_GRACE_NS */
#include "capture/limits.h"
#include "capture/preexisting.h"
#include "common/clock.h"

#define TRACEFS_DIR "/sys/kernel/tracing"
/* Held closes (TV_EV_FLAG_HELD) whose kernel entry waits to be deleted; beyond it the oldest is
 * deleted at once. */
#define HELD_MAX 4096

/* A socket the kernel saw close while a process held it: its `sockets` entry, deleted by us
 * once TV_CONN_CLOSE_GRACE_NS have passed (late data events of the holder still find it). */
struct held {
	uint64_t key, gen, ts_ns;
};

struct tv_tracepoint {
	struct tv_tracepoint_opts o;
	tv_capture_event_fn fn;
	void *ctx;
	struct capture_bpf *skel;
	struct ring_buffer *rb;
	/* the ring's consumer and producer positions (its first two pages, mapped read-only
	 * beside libbpf's mapping; NULL when that failed): the ring fill without libbpf 1.3's
	 * ring__avail_data_size */
	const void *pos;
	size_t pos_len;
	uint32_t ring_bytes;
	uint64_t fill_peak; /* the most unread bytes found before a drain since the last ring() */
	int cg_fd; /* --cgroup directory, or -1 */
	int ncpu;  /* possible CPUs: the length of lost_percpu */
	uint64_t *lost_percpu; /* one lookup of the per-CPU `lost` map */
	struct held held[HELD_MAX]; /* FIFO: [held_head, held_tail) modulo HELD_MAX */
	uint64_t held_head, held_tail;
};

/* Delete the kernel's entry of a held close, if it is still that socket's (same gen), and give
 * its slot of the counting filter back as the kernel would. */
static void held_delete(struct tv_tracepoint *t, const struct held *h)
{
	int fd = bpf_map__fd(t->skel->maps.sockets);
	struct tv_sock_info si;

	/* Already another socket's (TCP's slab hands a freed struct sock straight to the next
	 * socket, whose entry takes the key): left alone. */
	if (bpf_map_lookup_elem(fd, &h->key, &si) || si.gen != h->gen ||
	    !(si.flags & TV_SOCK_CLOSED))
		return;
	/* Taken out in one step: a plain delete could remove the entry a new socket put there
	 * since the lookup, leaving that live connection untracked for good. */
	if (bpf_map_lookup_and_delete_elem(fd, &h->key, &si))
		return;
	if (si.gen != h->gen) {
		/* replaced in those microseconds: back in (NOEXIST: unless the kernel put a newer
		 * one there); an event of it in between found no entry, not the whole connection */
		(void)bpf_map_update_elem(fd, &h->key, &si, BPF_NOEXIST);
		return;
	}
	__atomic_fetch_sub(&t->skel->bss->sock_filter[tv_sock_filter_slot(si.ino)], 1,
			   __ATOMIC_SEQ_CST);
}

/* Delete the held entries older than the grace at now_ns (all of them when now_ns is
 * UINT64_MAX). */
static void held_reap(struct tv_tracepoint *t, uint64_t now_ns)
{
	while (t->held_head < t->held_tail) {
		struct held *h = &t->held[t->held_head % HELD_MAX];

		if (now_ns != UINT64_MAX && h->ts_ns + TV_CONN_CLOSE_GRACE_NS > now_ns)
			break;
		held_delete(t, h);
		t->held_head++;
	}
}

/* The ring's callback: notes held closes, then hands every event on. */
static int on_ring_event(void *ctx, void *data, size_t len)
{
	struct tv_tracepoint *t = ctx;
	const struct tv_event *e = data;

	if (len >= TV_EVENT_HEADER_BYTES && e->kind == TV_EV_CLOSE &&
	    (e->flags & TV_EV_FLAG_HELD)) {
		if (t->held_tail - t->held_head == HELD_MAX) {
			held_delete(t, &t->held[t->held_head % HELD_MAX]);
			t->held_head++;
		}
		t->held[t->held_tail++ % HELD_MAX] =
			(struct held){ .key = e->bytes, .gen = e->conn_gen, .ts_ns = e->ts_ns };
	}
	return t->fn(t->ctx, data, len);
}

/* Whether path exists as this process sees it: AT_EACCESS, because plain access() checks
 * with the real uid and, for a non-root uid, without capabilities, so a capture run by a
 * service user with CAP_DAC_READ_SEARCH would find tracefs (mode 0700) missing. */
static int visible(const char *path)
{
	return faccessat(AT_FDCWD, path, F_OK, AT_EACCESS) == 0;
}

/* libbpf attaches tracepoints through tracefs; some systems boot without it mounted. */
static int ensure_tracefs(char *err, size_t errlen)
{
	if (visible(TRACEFS_DIR "/events/syscalls") ||
	    visible("/sys/kernel/debug/tracing/events/syscalls"))
		return 0;
	if (mount("tracefs", TRACEFS_DIR, "tracefs", 0, NULL) == 0 &&
	    visible(TRACEFS_DIR "/events/syscalls"))
		return 0;
	snprintf(err, errlen,
		 "tracefs is not mounted and mounting it failed (mount -t tracefs tracefs %s): %s",
		 TRACEFS_DIR, strerror(errno));
	return -ENOENT;
}

/* source.h's lost: the sum over CPUs of the kernel's per-CPU counter of one enum
 * tv_lost_reason, read into the buffer sized at open (this runs three times a poll). */
static uint64_t tracepoint_lost(void *impl, uint32_t reason)
{
	struct tv_tracepoint *t = impl;
	uint64_t sum = 0;

	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.lost), &reason, t->lost_percpu) == 0)
		for (int i = 0; i < t->ncpu; i++)
			sum += t->lost_percpu[i];
	return sum;
}

/* source.h's probe: the loop's own kind of bpf() call, a lookup in the `lost` map by fd */
static int tracepoint_probe(void *impl)
{
	struct tv_tracepoint *t = impl;
	uint32_t reason = TV_LOST_RING_FULL;

	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.lost), &reason, t->lost_percpu))
		return -errno;
	return 0;
}

/* --cgroup: the kernel tests membership with bpf_current_task_under_cgroup, which needs an fd
 * of a cgroup v2 directory in cgroup_map. Checked before load for a clear error. */
int tv_tracepoint_open_cgroup(const char *path, char *err, size_t errlen)
{
	struct statfs sfs;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		int rc = -errno;

		snprintf(err, errlen, "opening --cgroup %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstatfs(fd, &sfs) || sfs.f_type != CGROUP2_SUPER_MAGIC) {
		snprintf(err, errlen, "--cgroup %s is not a cgroup v2 directory", path);
		close(fd);
		return -EINVAL;
	}
	return fd;
}

static int set_cgroup_filter(struct tv_tracepoint *t, int cg_fd, char *err, size_t errlen)
{
	uint32_t zero = 0;
	uint32_t v = (uint32_t)cg_fd;

	if (bpf_map_update_elem(bpf_map__fd(t->skel->maps.cgroup_map), &zero, &v, BPF_ANY)) {
		int rc = -errno;

		snprintf(err, errlen, "setting the --cgroup filter: %s", strerror(-rc));
		return rc;
	}
	return 0;
}


/* Map the ring's two position pages read-only (the kernel allows any read-only mapping of a
 * ring buffer map); a failure only leaves the fill metric at 0. */
static void map_positions(struct tv_tracepoint *t)
{
	long page = sysconf(_SC_PAGESIZE);
	void *p;

	t->pos_len = 2 * (size_t)page;
	p = mmap(NULL, t->pos_len, PROT_READ, MAP_SHARED, bpf_map__fd(t->skel->maps.events), 0);
	t->pos = p == MAP_FAILED ? NULL : p;
}

/* Connections open before the start have had their accept/connect already: put them in the
 * kernel's sockets map from /proc. Called once the tracepoints are attached (the order that
 * loses least: client/capture/preexisting.c). */
static int seed_open_sockets(struct tv_tracepoint *t, char *err, size_t errlen)
{
	struct tv_seed_filter f = {
		.tgid = (uint32_t)t->o.pid,
		.port = (uint16_t)t->o.port,
		.comm = t->o.comm,
		.cgroup = t->o.cgroup,
		.self_tgid = (uint32_t)getpid(),
		.role = (uint8_t)t->o.role,
	};
	struct tv_seed_stats st;
	char why[128] = "";
	uint64_t skipped;
	int rc;

	rc = tv_capture_seed_sockets(bpf_map__fd(t->skel->maps.seeds),
				     (uint64_t *)&t->skel->bss->seeds_left,
				     &f, tv_monotonic_ns(), &st, err, errlen);
	if (rc)
		return rc;
	skipped = st.not_established + st.map_full;
	if (!st.seeded && !skipped && !st.procs_unreadable)
		return 0;
	if (skipped)
		snprintf(why, sizeof(why), ": %" PRIu64 " not established, %" PRIu64 " map full",
			 st.not_established, st.map_full);
	if (st.procs_unreadable)
		snprintf(why + strlen(why), sizeof(why) - strlen(why),
			 "; %" PRIu64 " processes unreadable", st.procs_unreadable);
	fprintf(stderr, "tracevault: following %" PRIu64 " connections open before the capture (%"
		PRIu64 " skipped%s)\n", st.seeded, skipped, why);
	return 0;
}

static int load_bpf(struct tv_tracepoint *t, char *err, size_t errlen)
{
	uint32_t ring_bytes;
	int rc;

	rc = ensure_tracefs(err, errlen);
	if (rc)
		return rc;
	t->skel = capture_bpf__open();
	if (!t->skel) {
		rc = -errno;
		snprintf(err, errlen, "opening the eBPF object: %s", strerror(-rc));
		return rc;
	}
	t->skel->rodata->target_tgid = (uint32_t)t->o.pid;
	t->skel->rodata->target_port = (uint32_t)t->o.port;
	t->skel->rodata->self_tgid = (uint32_t)getpid();
	t->skel->rodata->target_role = (uint8_t)t->o.role;
	if (t->o.comm) {
		t->skel->rodata->filter_comm = 1;
		/* the task comm is at most 15 bytes + NUL; tv_tracepoint_open checked the length */
		strncpy((char *)t->skel->rodata->target_comm, t->o.comm,
			sizeof(t->skel->rodata->target_comm) - 1);
	}
	t->skel->rodata->filter_cgroup = t->cg_fd >= 0;
	t->skel->rodata->payload_bytes = t->o.payload_bytes ? t->o.payload_bytes
							     : TV_CAPTURE_DEFAULT_PAYLOAD_BYTES;
	ring_bytes = t->o.ring_bytes ? t->o.ring_bytes : TV_CAPTURE_RING_BYTES;
	t->ring_bytes = ring_bytes;
	/* a small ring (tests, --ring-bytes) must wake us well before it is full */
	t->skel->rodata->wakeup_bytes = ring_bytes / 4 < TV_CAPTURE_WAKEUP_BYTES
						? ring_bytes / 4
						: TV_CAPTURE_WAKEUP_BYTES;
	rc = bpf_map__set_max_entries(t->skel->maps.events, ring_bytes);
	if (!rc)
		rc = bpf_map__set_max_entries(t->skel->maps.scratch_buf,
					      (uint32_t)libbpf_num_possible_cpus());
	if (rc) {
		snprintf(err, errlen, "sizing the eBPF maps: %s", strerror(-rc));
		return rc;
	}
	rc = capture_bpf__load(t->skel);
	if (rc == -EPERM || rc == -EACCES) {
		if (rc == -EPERM)
			snprintf(err, errlen, "loading eBPF needs CAP_BPF and CAP_PERFMON (or "
					      "CAP_SYS_ADMIN): %s", strerror(-rc));
		else
			snprintf(err, errlen, "the kernel verifier rejected the eBPF program "
					      "(log above): %s", strerror(-rc));
		return rc;
	}
	if (rc) {
		snprintf(err, errlen, "loading the eBPF program: %s", strerror(-rc));
		return rc;
	}
	if (t->cg_fd >= 0) {
		rc = set_cgroup_filter(t, t->cg_fd, err, errlen);
		if (rc)
			return rc;
	}
	rc = capture_bpf__attach(t->skel);
	if (rc) {
		snprintf(err, errlen, "attaching the syscall tracepoints: %s%s", strerror(-rc),
			 rc == -EPERM ? " (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)" : "");
		return rc;
	}
	rc = seed_open_sockets(t, err, errlen);
	if (rc)
		return rc;
	t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), on_ring_event, t, NULL);
	if (!t->rb) {
		rc = -errno;
		snprintf(err, errlen, "opening the ring buffer: %s", strerror(-rc));
		return rc;
	}
	map_positions(t);
	return 0;
}

int tv_tracepoint_open(struct tv_tracepoint **out, const struct tv_tracepoint_opts *o,
		       tv_capture_event_fn fn, void *ctx, char *err, size_t errlen)
{
	struct tv_tracepoint *t;
	int rc;

	*out = NULL;
	/* the bounds the CLI checked, owned by capture/limits.h (0: the default) */
	if (o->pid < 0 || o->port < 0 || o->port > 65535 ||
	    (o->payload_bytes &&
	     tv_limit_check(&tv_capture_payload_bytes_limit, o->payload_bytes)) ||
	    (o->ring_bytes && tv_limit_check(&tv_capture_ring_bytes_limit, o->ring_bytes)) ||
	    (o->comm && tv_limit_check(&tv_capture_comm_bytes_limit, strlen(o->comm)))) {
		snprintf(err, errlen, "invalid tracepoint capture options");
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory setting up the tracepoint capture");
		return -ENOMEM;
	}
	t->cg_fd = -1; /* before the first goto fail: tv_tracepoint_free closes it */
	t->ncpu = libbpf_num_possible_cpus();
	t->lost_percpu = t->ncpu > 0 ? calloc((size_t)t->ncpu, sizeof(*t->lost_percpu)) : NULL;
	if (!t->lost_percpu) {
		snprintf(err, errlen, "sizing the per-CPU loss counters (%d CPUs): %s", t->ncpu,
			 t->ncpu > 0 ? strerror(ENOMEM) : strerror(-t->ncpu));
		rc = t->ncpu > 0 ? -ENOMEM : t->ncpu;
		goto fail;
	}
	t->o = *o;
	t->fn = fn;
	t->ctx = ctx;
	if (o->cgroup) {
		t->cg_fd = tv_tracepoint_open_cgroup(o->cgroup, err, errlen);
		if (t->cg_fd < 0) {
			rc = t->cg_fd;
			goto fail;
		}
	}
	rc = load_bpf(t, err, errlen);
	if (rc)
		goto fail;
	*out = t;
	return 0;
fail:
	tv_tracepoint_free(t);
	return rc;
}

/* The ring's unread bytes now: producer minus consumer position (the kernel's layout:
 * consumer_pos in the map's first page, producer_pos in the second); 0 without the mapping. */
static uint64_t ring_fill(const struct tv_tracepoint *t)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t cons, prod;

	if (!t->pos)
		return 0;
	cons = __atomic_load_n((const unsigned long *)t->pos, __ATOMIC_ACQUIRE);
	prod = __atomic_load_n((const unsigned long *)((const char *)t->pos + page),
			       __ATOMIC_ACQUIRE);
	return prod - cons <= t->ring_bytes ? prod - cons : t->ring_bytes;
}

/* source.h's poll: wait up to timeout_ms, then drain the ring (events queued below the
 * wake-up threshold raise no epoll event). The wait is libbpf's epoll descriptor polled here
 * rather than ring_buffer__poll, which drains as it wakes: the fill is read between the two,
 * when it is highest (after a drain the ring is nearly always empty, so a metric read there
 * showed 0 under loads that overflowed it). */
static int tracepoint_poll(void *impl, int timeout_ms, char *err, size_t errlen)
{
	struct tv_tracepoint *t = impl;
	struct pollfd pfd = { .fd = ring_buffer__epoll_fd(t->rb), .events = POLLIN };
	uint64_t fill;
	int rc = poll(&pfd, 1, timeout_ms);

	if (rc < 0) {
		rc = -errno;
	} else {
		fill = ring_fill(t);
		if (fill > t->fill_peak)
			t->fill_peak = fill;
		rc = ring_buffer__consume(t->rb);
	}
	if (rc < 0 && rc != -EINTR) {
		snprintf(err, errlen, "polling the ring buffer: %s", strerror(-rc));
		return rc;
	}
	held_reap(t, tv_monotonic_ns());
	return 0;
}

/* source.h's finish: detach, then hand out what the ring still holds. Connections still open
 * are ended by the connection table's flush, not here (now_ns unused). */
static void tracepoint_finish(void *impl, uint64_t now_ns)
{
	struct tv_tracepoint *t = impl;

	(void)now_ns;
	capture_bpf__detach(t->skel);
	if (ring_buffer__consume(t->rb) < 0)
		fprintf(stderr, "tracevault: draining the ring buffer failed\n");
}

/* source.h's ring: the BPF ring buffer's unread bytes, the most of now and of what each poll
 * found before its drain since the last call */
static void tracepoint_ring(void *impl, uint64_t *used_bytes, uint64_t *size_bytes)
{
	struct tv_tracepoint *t = impl;
	uint64_t now = ring_fill(t);

	*size_bytes = t->ring_bytes;
	*used_bytes = now > t->fill_peak ? now : t->fill_peak;
	t->fill_peak = 0;
}

/* source.h's gaps: syscalls deliver whole reads and writes, no stream holes to report */
static void tracepoint_gaps(void *impl, uint64_t *gaps, uint64_t *gap_bytes)
{
	(void)impl;
	*gaps = *gap_bytes = 0;
}

void tv_tracepoint_free(struct tv_tracepoint *t)
{
	if (!t)
		return;
	ring_buffer__free(t->rb);
	if (t->pos)
		munmap((void *)t->pos, t->pos_len);
	capture_bpf__destroy(t->skel);
	if (t->cg_fd >= 0)
		close(t->cg_fd);
	free(t->lost_percpu);
	free(t);
}

static void tracepoint_free(void *impl)
{
	tv_tracepoint_free(impl);
}

void tv_tracepoint_source(struct tv_tracepoint *t, struct tv_capture_source *src)
{
	*src = (struct tv_capture_source){
		.impl = t,
		.poll = tracepoint_poll,
		.finish = tracepoint_finish,
		.lost = tracepoint_lost,
		.gaps = tracepoint_gaps,
		.ring = tracepoint_ring,
		.probe = tracepoint_probe,
		.free = tracepoint_free,
	};
}
