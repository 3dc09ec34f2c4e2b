/* `tracevault capture`: loads the eBPF program, turns socket events into HTTP exchange records,
 * and hands them to the write pipeline (block cache + segment writer) until Ctrl-C/--duration. */
#ifndef TV_CAPTURE_H
#define TV_CAPTURE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline.h"

struct tv_capture_opts {
	struct tv_pipeline_opts pipeline; /* servers, cache, block, chunk, window ... */
	int pid;                     /* 0: every process */
	int port;                    /* 0: every port; else local or remote port must match */
	double duration_s;           /* 0: until stopped */
	int redact;                  /* redact credential headers (default 1) */
	volatile sig_atomic_t *stop; /* set by the SIGINT/SIGTERM handler in main */
	int ready_fd;                /* >= 0: write "ready\n" here once probes are attached */
};

struct tv_capture_result {
	uint64_t records_sent;   /* committed on the server(s) */
	uint64_t records_lost;   /* the sum of the lost_* below */
	uint64_t lost_kernel;    /* events the kernel could not queue (ring buffer full) */
	uint64_t lost_parser;    /* exchanges the connection table dropped */
	uint64_t lost_cache;     /* block cache full past the back-pressure time */
	uint64_t lost_failed;    /* in segments whose write failed */
	uint64_t events;
	uint64_t events_lost;    /* = lost_kernel */
	uint64_t segments_committed, segments_failed;
	uint64_t payload_bytes_copied;
	uint64_t cache_bytes_peak;
};

/* Runs until *stop or the duration ends, then flushes. Returns 0, -EPERM when eBPF cannot be
 * loaded (missing CAP_BPF/CAP_SYS_ADMIN), or another negative errno, with a reason in err. */
int tv_capture_run(const struct tv_capture_opts *o, struct tv_capture_result *res, char *err,
		   size_t errlen);

#endif
