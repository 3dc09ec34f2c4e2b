/* `tracevault capture`: loads the eBPF program, turns socket events into HTTP exchange records,
 * seals them into blocks and streams them to the server until Ctrl-C or --duration. */
#ifndef TV_CAPTURE_H
#define TV_CAPTURE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define TV_DEFAULT_BLOCK_AGE_MS 1000
#define TV_DEFAULT_BLOCK_RECORDS 65536

struct tv_capture_opts {
	const char *server;          /* "HOST:PORT" */
	int pid;                     /* 0: every process */
	int port;                    /* 0: every port; else local or remote port must match */
	double duration_s;           /* 0: until stopped */
	int block_age_ms;            /* seal and send at least this often */
	size_t max_message_bytes;    /* gRPC message limit (0: default) */
	int redact;                  /* redact credential headers (default 1) */
	volatile sig_atomic_t *stop; /* set by the SIGINT/SIGTERM handler in main */
	int ready_fd;                /* >= 0: write "ready\n" here once probes are attached */
};

struct tv_capture_result {
	uint64_t records_sent;
	uint64_t records_lost;  /* dropped anywhere: kernel ring, parser, failed segments */
	uint64_t events;
	uint64_t events_lost;   /* kernel side (ring buffer full) */
};

/* Runs until *stop or the duration ends, then flushes. Returns 0, -EPERM when eBPF cannot be
 * loaded (missing CAP_BPF/CAP_SYS_ADMIN), or another negative errno, with a reason in err. */
int tv_capture_run(const struct tv_capture_opts *o, struct tv_capture_result *res, char *err,
		   size_t errlen);

#endif
