/* `tracevault capture` loader: loads bpf/capture.bpf.c (skeleton), polls its ring buffer, feeds
 * the events to the connection table, turns finished exchanges into TraceRecords, and every
 * block_age_ms seals them into one block and writes it to tracevaultd as a segment. */
#include "capture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/capture.h" /* the kernel event layout and limits */
#include "block.h"
#include "capture.skel.h"
#include "conn_table.h"
#include "grpc_writer.h"

#define POLL_TIMEOUT_MS 100
#define PROBE_TIMEOUT_MS 5000
#define TRACEFS_DIR "/sys/kernel/tracing"

/* Everything one run owns; released in tv_capture_run's cleanup, in reverse order. */
struct capture {
	const struct tv_capture_opts *o;
	struct tv_capture_result *res;
	struct tv_writer *w;
	struct capture_bpf *skel;
	struct ring_buffer *rb;
	struct tv_conn_table *conns;
	struct tv_block_builder *bb;
	int64_t mono_to_real_ns; /* CLOCK_REALTIME - CLOCK_MONOTONIC, measured at start */
	uint64_t block_first_ms; /* monotonic ms of the first record in bb; 0 when bb is empty */
	uint64_t write_failures;
	char last_write_err[256];
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

/* Seal what the builder holds into one block and write it as one segment. A failed write is
 * not retried (the writer already cancelled and deleted the segment): its records are lost
 * and counted, and capture goes on. */
static void send_block(struct capture *c)
{
	uint32_t n = tv_block_builder_count(c->bb);
	struct tv_block_buf b = { 0 };
	void *buf = NULL;
	size_t len = 0;
	char err[256] = "";
	int rc;

	c->block_first_ms = 0;
	if (n == 0)
		return;
	b.block_id = tv_random_id();
	rc = tv_block_builder_seal(c->bb, b.block_id, TV_CODEC_ZSTD, TV_BLOCK_DEFAULT_ZSTD_LEVEL,
				   &buf, &len);
	if (rc) {
		snprintf(err, sizeof(err), "sealing a block of %u records: %s", n, strerror(-rc));
		goto fail;
	}
	b.data = buf;
	b.len = len;
	b.record_count = n;
	rc = tv_writer_write_segment(c->w, tv_random_id(), &b, 1, err, sizeof(err));
	free(buf);
	if (rc)
		goto fail;
	c->res->records_sent += n;
	return;
fail:
	c->res->records_lost += n;
	c->write_failures++;
	snprintf(c->last_write_err, sizeof(c->last_write_err), "%s", err);
	fprintf(stderr, "tracevault: %u records lost: %s\n", n, err);
}

static void on_exchange(void *ctx, const struct tv_exchange *x)
{
	struct capture *c = ctx;
	Tracevault__V1__TraceRecord r = TRACEVAULT__V1__TRACE_RECORD__INIT;

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
	if (tv_block_builder_add(c->bb, &r)) {
		c->res->records_lost++;
		return;
	}
	if (c->block_first_ms == 0)
		c->block_first_ms = clock_ns(CLOCK_MONOTONIC) / 1000000;
	if (tv_block_builder_count(c->bb) >= TV_DEFAULT_BLOCK_RECORDS)
		send_block(c);
}

static int on_event(void *ctx, void *data, size_t len)
{
	struct capture *c = ctx;

	c->res->events++;
	tv_conn_table_event(c->conns, data, len);
	return 0;
}

/* Sum of the kernel's per-CPU count of events that found the ring full. */
static uint64_t kernel_lost(struct capture *c)
{
	int ncpu = libbpf_num_possible_cpus();
	uint32_t zero = 0;
	uint64_t *v, sum = 0;
	int i;

	if (ncpu <= 0 || !(v = calloc((size_t)ncpu, sizeof(*v))))
		return 0;
	if (bpf_map_lookup_elem(bpf_map__fd(c->skel->maps.lost), &zero, v) == 0)
		for (i = 0; i < ncpu; i++)
			sum += v[i];
	free(v);
	return sum;
}

static int load_bpf(struct capture *c, char *err, size_t errlen)
{
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
	rc = capture_bpf__attach(c->skel);
	if (rc) {
		snprintf(err, errlen, "attaching the syscall tracepoints: %s%s", strerror(-rc),
			 rc == -EPERM ? " (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)" : "");
		return rc;
	}
	c->rb = ring_buffer__new(bpf_map__fd(c->skel->maps.events), on_event, c, NULL);
	if (!c->rb) {
		rc = -errno;
		snprintf(err, errlen, "opening the ring buffer: %s", strerror(-rc));
		return rc;
	}
	return 0;
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

/* Poll until stopped or the duration ends, sealing a block whenever the oldest record in the
 * builder is block_age_ms old. */
static int poll_loop(struct capture *c, char *err, size_t errlen)
{
	const struct tv_capture_opts *o = c->o;
	int age_ms = o->block_age_ms > 0 ? o->block_age_ms : TV_DEFAULT_BLOCK_AGE_MS;
	uint64_t end_ms = 0, now_ms;
	int rc;

	if (o->duration_s > 0)
		end_ms = clock_ns(CLOCK_MONOTONIC) / 1000000 + (uint64_t)(o->duration_s * 1000.0);
	while (!(o->stop && *o->stop)) {
		rc = ring_buffer__poll(c->rb, POLL_TIMEOUT_MS);
		if (rc < 0 && rc != -EINTR) {
			snprintf(err, errlen, "polling the ring buffer: %s", strerror(-rc));
			return rc;
		}
		now_ms = clock_ns(CLOCK_MONOTONIC) / 1000000;
		if (c->block_first_ms && now_ms - c->block_first_ms >= (uint64_t)age_ms)
			send_block(c);
		if (end_ms && now_ms >= end_ms)
			break;
	}
	return 0;
}

int tv_capture_run(const struct tv_capture_opts *o, struct tv_capture_result *res, char *err,
		   size_t errlen)
{
	struct tv_writer_opts wo = { 0 };
	struct capture c = { .o = o, .res = res };
	int rc;

	memset(res, 0, sizeof(*res));
	if (!o->server || o->pid < 0 || o->port < 0 || o->port > 65535) {
		snprintf(err, errlen, "invalid capture options");
		return -EINVAL;
	}
	c.mono_to_real_ns = measure_mono_to_real();
	wo.server = o->server;
	wo.max_message_bytes = o->max_message_bytes;
	c.w = tv_writer_new(&wo);
	c.conns = tv_conn_table_new(on_exchange, &c);
	c.bb = tv_block_builder_new();
	if (!c.w || !c.conns || !c.bb) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory setting up capture");
		goto cleanup;
	}
	tv_conn_table_set_keep_query(c.conns, !o->redact);
	/* fail fast on an unreachable server, before any probe is attached */
	rc = tv_writer_probe(c.w, PROBE_TIMEOUT_MS, err, errlen);
	if (rc)
		goto cleanup;
	rc = load_bpf(&c, err, errlen);
	if (rc)
		goto cleanup;
	signal_ready(o->ready_fd);

	rc = poll_loop(&c, err, errlen);
	/* Stop the producers, then drain what they already queued so nothing seen is dropped. */
	capture_bpf__detach(c.skel);
	if (ring_buffer__consume(c.rb) < 0 && !rc)
		fprintf(stderr, "tracevault: draining the ring buffer failed\n");
	tv_conn_table_flush(c.conns, clock_ns(CLOCK_MONOTONIC));
	send_block(&c);
	res->events_lost = kernel_lost(&c);
	res->records_lost += tv_conn_table_stats(c.conns)->exchanges_dropped;
	if (!rc && c.write_failures && res->records_sent == 0) {
		/* nothing reached the server: that is a failed capture, not a quiet one */
		snprintf(err, errlen, "every segment write failed; last: %s", c.last_write_err);
		rc = -EIO;
	}
cleanup:
	ring_buffer__free(c.rb);
	capture_bpf__destroy(c.skel);
	tv_block_builder_free(c.bb);
	tv_conn_table_free(c.conns);
	tv_writer_free(c.w);
	return rc;
}
