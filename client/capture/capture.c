/* `tracevault capture` loader: loads bpf/capture.bpf.c (skeleton), polls its ring buffer, feeds
 * the events to the connection table, and hands finished exchanges as TraceRecords to the write
 * pipeline, whose own thread seals, caches and sends them: the poll never waits on the network. */
#include "capture/capture.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/tv_event.h" /* the kernel event layout and limits */
#include "capture.skel.h"
#include "capture/conn_table.h"
#include "write/pipeline.h"
#include "capture/preexisting.h"
#include "capture/sampler.h"
#include "capture/sockfilter.h"

/* The kernel wakes us only when TV_CAPTURE_WAKEUP_BYTES are queued, so this interval is also
 * the longest an event waits in the ring, and how often loss totals reach the pipeline. */
#define POLL_TIMEOUT_MS 10
#define TRACEFS_DIR "/sys/kernel/tracing"

/* Everything one run owns; released in tv_capture_run's cleanup, in reverse order. */
struct capture {
	const struct tv_capture_opts *o;
	struct tv_capture_result *res;
	struct tv_pipeline *pipe;
	struct capture_bpf *skel;
	struct ring_buffer *rb;
	struct tv_sockfilter *sf; /* --mode sockfilter: the event source instead of skel + rb */
	struct tv_conn_table *conns;
	int64_t mono_to_real_ns; /* CLOCK_REALTIME - CLOCK_MONOTONIC, measured at start */
	struct tv_sampler sampler; /* --sample-ratio */
	int cg_fd;               /* --cgroup directory, or -1 */
};

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The kernel stamps events with CLOCK_MONOTONIC; records carry wall-clock ns. Bracketing the
 * realtime read between two monotonic reads bounds the error by their distance. */
static int64_t measure_mono_to_real(void)
{
	uint64_t m1 = clock_ns(CLOCK_MONOTONIC);
	uint64_t r = clock_ns(CLOCK_REALTIME);
	uint64_t m2 = clock_ns(CLOCK_MONOTONIC);

	return (int64_t)(r - (m1 + (m2 - m1) / 2));
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level != LIBBPF_WARN)
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* libbpf attaches tracepoints through tracefs; some systems boot without it mounted. */
static int ensure_tracefs(char *err, size_t errlen)
{
	if (access(TRACEFS_DIR "/events/syscalls", F_OK) == 0 ||
	    access("/sys/kernel/debug/tracing/events/syscalls", F_OK) == 0)
		return 0;
	if (mount("tracefs", TRACEFS_DIR, "tracefs", 0, NULL) == 0 &&
	    access(TRACEFS_DIR "/events/syscalls", F_OK) == 0)
		return 0;
	snprintf(err, errlen,
		 "tracefs is not mounted and mounting it failed (mount -t tracefs tracefs %s): %s",
		 TRACEFS_DIR, strerror(errno));
	return -ENOENT;
}

/* Header messages over a "name\0value\0" buffer: *out (malloc'd: the Header structs and the
 * pointer array in one block, caller frees) points into hdrs, which must outlive it. Returns
 * the count; 0 (and *out NULL) for none or out of memory (the record goes without them). */
static size_t headers_view(const char *hdrs, size_t len, Tracevault__V1__Header ***out)
{
	size_t n = hdrs ? tv_http_header_count(hdrs, len) : 0, pos = 0;
	Tracevault__V1__Header **v, *h;

	*out = NULL;
	if (n == 0)
		return 0;
	v = malloc(n * (sizeof(*v) + sizeof(*h)));
	if (!v)
		return 0;
	h = (Tracevault__V1__Header *)(v + n);
	for (size_t i = 0; i < n; i++) {
		tracevault__v1__header__init(&h[i]);
		h[i].name = (char *)hdrs + pos;
		pos += strlen(hdrs + pos) + 1;
		h[i].value = (char *)hdrs + pos;
		pos += strlen(hdrs + pos) + 1;
		v[i] = &h[i];
	}
	*out = v;
	return n;
}

static void on_exchange(void *ctx, const struct tv_exchange *x)
{
	struct capture *c = ctx;
	Tracevault__V1__TraceRecord r = TRACEVAULT__V1__TRACE_RECORD__INIT;

	/* sampled by trace id (OTel-consistent) or by connection; a choice, so not a loss */
	if (!tv_sampler_keep(&c->sampler, x->trace_id, x->conn_id, x->conn_gen)) {
		c->res->sampled_out++;
		return;
	}
	r.ts_ns = (uint64_t)((int64_t)x->ts_ns + c->mono_to_real_ns);
	r.end_ns = (uint64_t)((int64_t)x->end_ns + c->mono_to_real_ns);
	r.latency_ns = x->end_ns - x->ts_ns;
	r.pid = x->pid;
	/* protobuf-c takes non-const strings; it only reads them while packing */
	r.comm = (char *)x->comm;
	r.local = (char *)x->local;
	r.remote = (char *)x->remote;
	r.method = (char *)x->method;
	r.path = (char *)x->path;
	r.status = x->status;
	r.req_body_bytes = x->req_body_bytes;
	r.resp_body_bytes = x->resp_body_bytes;
	r.trace_id = (char *)x->trace_id;
	r.span_id = (char *)x->span_id;
	r.flags = x->flags;
	r.n_req_headers = headers_view(x->req_hdrs, x->req_hdrs_len, &r.req_headers);
	r.n_resp_headers = headers_view(x->resp_hdrs, x->resp_hdrs_len, &r.resp_headers);
	/* copied by the pipeline; a drop (cache full past back-pressure) is counted there */
	tv_pipeline_add(c->pipe, &r);
	free(r.req_headers);
	free(r.resp_headers);
}

static int on_event(void *ctx, void *data, size_t len)
{
	struct capture *c = ctx;

	c->res->events++;
	tv_conn_table_event(c->conns, data, len);
	return 0;
}

/* Sum over CPUs of the kernel's loss counter for one enum tv_lost_reason. */
static uint64_t kernel_lost(struct capture *c, uint32_t reason)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v, sum = 0;
	int i;

	if (c->sf) /* its counters under the reasons that mean the same (sockfilter.h) */
		return tv_sockfilter_lost(c->sf, reason);
	if (ncpu <= 0 || !(v = calloc((size_t)ncpu, sizeof(*v))))
		return 0;
	if (bpf_map_lookup_elem(bpf_map__fd(c->skel->maps.lost), &reason, v) == 0)
		for (i = 0; i < ncpu; i++)
			sum += v[i];
	free(v);
	return sum;
}

/* --cgroup: the kernel tests membership with bpf_current_task_under_cgroup, which needs an fd
 * of a cgroup v2 directory in cgroup_map. Checked before load for a clear error. */
int tv_capture_open_cgroup(const char *path, char *err, size_t errlen)
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

static int set_cgroup_filter(struct capture *c, int cg_fd, char *err, size_t errlen)
{
	uint32_t zero = 0;
	uint32_t v = (uint32_t)cg_fd;

	if (bpf_map_update_elem(bpf_map__fd(c->skel->maps.cgroup_map), &zero, &v, BPF_ANY)) {
		int rc = -errno;

		snprintf(err, errlen, "setting the --cgroup filter: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

/* Connections open before the start have had their accept/connect already: put them in the
 * kernel's sockets map from /proc. Called once the tracepoints are attached (the order that
 * loses least: client/capture/preexisting.c). */
static int seed_open_sockets(struct capture *c, char *err, size_t errlen)
{
	struct tv_seed_filter f = {
		.tgid = (uint32_t)c->o->pid,
		.port = (uint16_t)c->o->port,
		.comm = c->o->comm,
		.cgroup = c->o->cgroup,
		.self_tgid = (uint32_t)getpid(),
	};
	struct tv_seed_stats st;
	char why[128] = "";
	uint64_t skipped;
	int rc;

	rc = tv_capture_seed_sockets(bpf_map__fd(c->skel->maps.sockets), &f,
				     clock_ns(CLOCK_MONOTONIC), &st, err, errlen);
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

static int load_bpf(struct capture *c, char *err, size_t errlen)
{
	uint32_t ring_bytes;
	int rc;

	libbpf_set_print(libbpf_print);
	rc = ensure_tracefs(err, errlen);
	if (rc)
		return rc;
	c->skel = capture_bpf__open();
	if (!c->skel) {
		rc = -errno;
		snprintf(err, errlen, "opening the eBPF object: %s", strerror(-rc));
		return rc;
	}
	c->skel->rodata->target_tgid = (uint32_t)c->o->pid;
	c->skel->rodata->target_port = (uint32_t)c->o->port;
	c->skel->rodata->self_tgid = (uint32_t)getpid();
	if (c->o->comm) {
		c->skel->rodata->filter_comm = 1;
		/* the task comm is at most 15 bytes + NUL; main checks the length */
		strncpy((char *)c->skel->rodata->target_comm, c->o->comm,
			sizeof(c->skel->rodata->target_comm) - 1);
	}
	c->skel->rodata->filter_cgroup = c->cg_fd >= 0;
	c->skel->rodata->payload_bytes = c->o->payload_bytes ? c->o->payload_bytes
							     : TV_CAPTURE_DEFAULT_PAYLOAD_BYTES;
	ring_bytes = c->o->ring_bytes ? c->o->ring_bytes : TV_CAPTURE_RING_BYTES;
	/* a small ring (tests, --ring-bytes) must wake us well before it is full */
	c->skel->rodata->wakeup_bytes = ring_bytes / 4 < TV_CAPTURE_WAKEUP_BYTES
						? ring_bytes / 4
						: TV_CAPTURE_WAKEUP_BYTES;
	rc = bpf_map__set_max_entries(c->skel->maps.events, ring_bytes);
	if (!rc)
		rc = bpf_map__set_max_entries(c->skel->maps.scratch_buf,
					      (uint32_t)libbpf_num_possible_cpus());
	if (rc) {
		snprintf(err, errlen, "sizing the eBPF maps: %s", strerror(-rc));
		return rc;
	}
	rc = capture_bpf__load(c->skel);
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
	if (c->cg_fd >= 0) {
		rc = set_cgroup_filter(c, c->cg_fd, err, errlen);
		if (rc)
			return rc;
	}
	rc = capture_bpf__attach(c->skel);
	if (rc) {
		snprintf(err, errlen, "attaching the syscall tracepoints: %s%s", strerror(-rc),
			 rc == -EPERM ? " (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)" : "");
		return rc;
	}
	rc = seed_open_sockets(c, err, errlen);
	if (rc)
		return rc;
	c->rb = ring_buffer__new(bpf_map__fd(c->skel->maps.events), on_event, c, NULL);
	if (!c->rb) {
		rc = -errno;
		snprintf(err, errlen, "opening the ring buffer: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

/* --mode sockfilter: packets of --interface instead of syscalls (client/capture/sockfilter.c); its
 * events reach on_event like the ring's. */
static int open_sockfilter(struct capture *c, char *err, size_t errlen)
{
	struct tv_sockfilter_opts so = {
		.interface = c->o->interface,
		.port = c->o->port,
		.payload_bytes = c->o->payload_bytes,
		.ring_bytes = c->o->ring_bytes,
		.mono_to_real_ns = c->mono_to_real_ns,
	};

	libbpf_set_print(libbpf_print);
	return tv_sockfilter_open(&c->sf, &so, on_event, c, err, errlen);
}

/* Hand the kernel and parser loss totals to the pipeline, which stamps their increase into the
 * next block header (BLOCK.md v2), so the archive itself records the gaps. */
static void note_loss(struct capture *c)
{
	struct tv_block_loss total = {0};

	total.ring_full = kernel_lost(c, TV_LOST_RING_FULL);
	total.map_full = kernel_lost(c, TV_LOST_MAP_FULL);
	total.parser = tv_conn_table_stats(c->conns)->exchanges_dropped;
	total.requests = kernel_lost(c, TV_LOST_REQUESTS);
	tv_pipeline_note_loss(c->pipe, &total);
}

static void signal_ready(int fd)
{
	static const char msg[] = "ready\n";
	ssize_t n;

	if (fd < 0)
		return;
	do
		n = write(fd, msg, sizeof(msg) - 1);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(msg) - 1)
		fprintf(stderr, "tracevault: writing to --ready-fd %d: %s\n", fd,
			n < 0 ? strerror(errno) : "short write");
}

/* One wait for events from the mode's source, each handed to on_event. 0 or a negative
 * errno with the reason in err. */
static int poll_events(struct capture *c, char *err, size_t errlen)
{
	int rc;

	if (c->sf)
		return tv_sockfilter_poll(c->sf, POLL_TIMEOUT_MS, err, errlen);
	rc = ring_buffer__poll(c->rb, POLL_TIMEOUT_MS);
	/* events queued below the wake-up threshold raise no epoll event: drain them */
	if (rc >= 0)
		rc = ring_buffer__consume(c->rb);
	if (rc < 0 && rc != -EINTR) {
		snprintf(err, errlen, "polling the ring buffer: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

/* Poll until stopped or the duration ends. Sealing by size and age happens in the pipeline. */
static int poll_loop(struct capture *c, char *err, size_t errlen)
{
	const struct tv_capture_opts *o = c->o;
	uint64_t end_ms = 0, now_ms;
	int rc;

	if (o->duration_s > 0)
		end_ms = clock_ns(CLOCK_MONOTONIC) / 1000000 + (uint64_t)(o->duration_s * 1000.0);
	while (!(o->stop && *o->stop)) {
		rc = poll_events(c, err, errlen);
		if (rc)
			return rc;
		note_loss(c);
		now_ms = clock_ns(CLOCK_MONOTONIC) / 1000000;
		if (end_ms && now_ms >= end_ms)
			break;
	}
	return 0;
}

int tv_capture_run(const struct tv_capture_opts *o, struct tv_capture_result *res, char *err,
		   size_t errlen)
{
	struct capture c = { .o = o, .res = res, .cg_fd = -1 };
	struct tv_pipeline_stats ps;
	int rc;

	memset(res, 0, sizeof(*res));
	if (!o->pipeline.servers || o->pid < 0 || o->port < 0 || o->port > 65535 ||
	    o->payload_bytes > TV_CAPTURE_PAYLOAD_BYTES ||
	    (o->ring_bytes && (o->ring_bytes < TV_CAPTURE_MIN_RING_BYTES ||
			       (o->ring_bytes & (o->ring_bytes - 1)))) ||
	    (o->comm && (!o->comm[0] || strlen(o->comm) >= TV_CAPTURE_COMM_BYTES))) {
		snprintf(err, errlen, "invalid capture options");
		return -EINVAL;
	}
	/* sockfilter sees packets: no process to filter by */
	if (o->mode == TV_CAPTURE_MODE_SOCKFILTER
		    ? o->pid || o->comm || o->cgroup
		    : o->mode != TV_CAPTURE_MODE_TRACEPOINT || o->interface) {
		snprintf(err, errlen, "invalid capture options for capture mode %d", o->mode);
		return -EINVAL;
	}
	if (o->cgroup) {
		c.cg_fd = tv_capture_open_cgroup(o->cgroup, err, errlen);
		if (c.cg_fd < 0)
			return c.cg_fd;
	}
	c.mono_to_real_ns = measure_mono_to_real();
	c.conns = tv_conn_table_new(on_exchange, &c);
	if (!c.conns) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory setting up capture");
		goto cleanup;
	}
	tv_conn_table_set_keep_query(c.conns, !o->redact);
	tv_conn_table_set_headers(c.conns, o->headers, !o->redact);
	rc = tv_sampler_init(&c.sampler, o->sample_ratio > 0 ? o->sample_ratio : 1.0);
	if (rc) {
		snprintf(err, errlen, "invalid sample ratio %g: must be in (0, 1]", o->sample_ratio);
		goto cleanup;
	}
	/* validates the options and fails fast on an unreachable server, before any probe is
	 * attached */
	rc = tv_pipeline_new(&c.pipe, &o->pipeline, err, errlen);
	if (rc)
		goto cleanup;
	rc = o->mode == TV_CAPTURE_MODE_SOCKFILTER ? open_sockfilter(&c, err, errlen)
						   : load_bpf(&c, err, errlen);
	if (rc)
		goto cleanup;
	signal_ready(o->ready_fd);

	rc = poll_loop(&c, err, errlen);
	/* Stop the producers, then drain what they already queued so nothing seen is dropped. */
	if (c.sf) {
		tv_sockfilter_finish(c.sf, clock_ns(CLOCK_MONOTONIC));
	} else {
		capture_bpf__detach(c.skel);
		if (ring_buffer__consume(c.rb) < 0 && !rc)
			fprintf(stderr, "tracevault: draining the ring buffer failed\n");
	}
	tv_conn_table_flush(c.conns, clock_ns(CLOCK_MONOTONIC));
	note_loss(&c); /* the last counts go into the final flush's block */
	tv_pipeline_flush(c.pipe);
	tv_pipeline_stats(c.pipe, &ps);
	res->records_sent = ps.records_committed;
	res->lost_ring_full = kernel_lost(&c, TV_LOST_RING_FULL);
	res->lost_map_full = kernel_lost(&c, TV_LOST_MAP_FULL);
	res->events_truncated = kernel_lost(&c, TV_LOST_TRUNCATED);
	if (c.sf) {
		struct tv_sockfilter_stats st;

		tv_sockfilter_stats(c.sf, &st);
		res->gaps = st.gaps;
		res->gap_bytes = st.gap_bytes;
	}
	res->lost_requests = kernel_lost(&c, TV_LOST_REQUESTS);
	res->responses_lost = tv_conn_table_stats(c.conns)->responses_lost;
	res->parser_resyncs = tv_conn_table_stats(c.conns)->parse_errors; /* all closed now */
	res->lost_kernel = res->events_lost = res->lost_ring_full + res->lost_map_full;
	res->lost_parser = tv_conn_table_stats(c.conns)->exchanges_dropped;
	res->lost_cache = ps.records_dropped_cache;
	res->lost_failed = ps.records_dropped_failed;
	res->records_lost = res->lost_kernel + res->lost_parser + res->lost_cache +
			    res->lost_failed;
	res->segments_committed = ps.segments_committed;
	res->segments_failed = ps.segments_failed;
	res->payload_bytes_copied = ps.payload_bytes_copied;
	res->cache_bytes_peak = ps.cache_bytes_peak;
	if (!rc && ps.segments_failed && ps.segments_committed == 0) {
		/* nothing reached the server: that is a failed capture, not a quiet one */
		snprintf(err, errlen, "every segment write failed (%" PRIu64 " segments, see above)",
			 ps.segments_failed);
		rc = -EIO;
	}
cleanup:
	tv_sockfilter_free(c.sf);
	ring_buffer__free(c.rb);
	capture_bpf__destroy(c.skel);
	tv_pipeline_free(c.pipe);
	tv_conn_table_free(c.conns);
	if (c.cg_fd >= 0)
		close(c.cg_fd);
	return rc;
}
