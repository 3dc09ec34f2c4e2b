/* `tracevault capture`: opens the event source of --mode (tracepoint.h, sockfilter.h) and
 * drops its capabilities while the process has one thread (tv_capture_open), then turns its
 * socket events into HTTP exchange records (conn_table.h) and hands them to a record sink
 * (write/sink.h: the write pipeline in the CLI) until Ctrl-C or --duration (tv_capture_run). */
#ifndef TV_CAPTURE_H
#define TV_CAPTURE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/query_redact.h"
#include "write/sink.h"

/* Where events come from (--mode). */
enum tv_capture_mode {
	TV_CAPTURE_MODE_TRACEPOINT = 0, /* syscall tracepoints (tracepoint.c), the default */
	TV_CAPTURE_MODE_SOCKFILTER = 1, /* packets of one interface (sockfilter.c) */
};

/* Which end of a connection is recorded (--role); SERVER and CLIENT have bpf/tv_event.h's
 * TV_ROLE_* values (capture.c checks). */
enum tv_capture_role {
	TV_CAPTURE_ROLE_BOTH = 0,   /* every end this host has (loopback: two records) */
	TV_CAPTURE_ROLE_SERVER = 1, /* accepted sockets, or sockets on a listened port */
	TV_CAPTURE_ROLE_CLIENT = 2, /* connected sockets */
};

/* A running capture's counts for the metrics endpoint (--metrics-addr), published by the run
 * loop every TV_CAPTURE_LIVE_PUBLISH_MS and once more at the end with tv_metric_set (common/
 * metrics.h): another thread reads them with tv_metric_get. The same counts as struct
 * tv_capture_result (the final summary line), so the two never disagree at the end. */
struct tv_capture_live {
	uint64_t events;          /* tv_capture_result.events */
	uint64_t lost_ring_full, lost_map_full, lost_parser, events_truncated;
	uint64_t lost_requests, responses_lost, parser_resyncs;
	/* the kernel ring: its size, and the most unread bytes the loop found in it (sampled
	 * before each drain) since the previous publish */
	uint64_t ring_used_bytes, ring_size_bytes;
};
#define TV_CAPTURE_LIVE_PUBLISH_MS 100

struct tv_capture_opts {
	int mode;                    /* enum tv_capture_mode */
	const char *interface;       /* sockfilter: NULL = "lo" (tracepoint: must be NULL) */
	int pid;                     /* 0: every process */
	int port;                    /* 0: every port; else local or remote port must match */
	const char *comm;            /* NULL: every task; else exact task comm (<= 15 bytes) */
	const char *cgroup;          /* NULL: every cgroup; else a cgroup v2 directory (subtree) */
	uint32_t payload_bytes;      /* 0: TV_CAPTURE_DEFAULT_PAYLOAD_BYTES; max 32 KiB */
	uint32_t body_bytes;         /* --body-bytes: first body bytes kept per message, at most
				      * the payload copy (tv_capture_check_body_bytes); 0: none */
	uint32_t ring_bytes;         /* 0: the mode's default. tracepoint: TV_CAPTURE_RING_BYTES,
				      * a power of two >= 4 KiB; sockfilter:
				      * TV_SOCKFILTER_RING_BYTES, whole 1 MiB blocks */
	uint64_t duration_ms;        /* 0: until stopped; else ms within
				      * tv_capture_duration_ms_limit (capture/limits.h) */
	int redact;                  /* redact credential headers and the ?query (default 1) */
	int strip_query;             /* drop the query from paths (--strip-query) */
	const char *redact_query_params; /* NULL: the default names; else as
					  * tv_query_rules_parse takes it */
	int role;                    /* enum tv_capture_role (--role) */
	int headers;                 /* store request/response headers in records (--headers) */
	double sample_ratio;         /* (0, 1]: keep this share of exchanges (0 means 1) */
	volatile sig_atomic_t *stop; /* the run ends once *stop is non-zero (the CLI's
				      * SIGINT/SIGTERM handler sets it); NULL: never */
	int drop_caps;               /* once the source is open, drop every capability the
				      * loop does not need (privs.h: tv_capture_drop_caps; the
				      * process must have one thread then) */
	int ready_fd;                /* >= 0: write "ready\n" here once the source is open
				      * (tracepoint: attached and seeded; sockfilter: bound) */
};

/* What the capture saw and lost before the sink; what the sink stored or dropped is the sink's
 * to report (tv_pipeline_stats). */
struct tv_capture_result {
	uint64_t records_lost;   /* lost_kernel + lost_parser */
	uint64_t lost_kernel;    /* lost_ring_full + lost_map_full */
	uint64_t lost_ring_full; /* kernel events dropped: ring buffer full (sockfilter: packets
				  * dropped, packet ring full) */
	uint64_t lost_map_full;  /* sockets map inserts that failed (map full; sockfilter:
				  * connections the reassembly table refused) */
	uint64_t lost_requests;  /* of the ring-full events, those that began a request: requests
				  * without a record (exact unless a lost read held several) */
	uint64_t responses_lost; /* records sent with TV_RECORD_FLAG_LOST (response lost) */
	uint64_t parser_resyncs; /* times a parser lost sync (malformed or cut input, or lost
				  * events): what it skipped until the next message start may
				  * have held requests no counter above has seen */
	uint64_t events_truncated; /* events whose payload copy was cut (byte counts exact) */
	uint64_t gaps, gap_bytes; /* sockfilter: stream holes given up by the TCP reassembly */
	uint64_t lost_parser;    /* exchanges the connection table dropped (pipelining deeper
				  * than TV_CONN_MAX_PENDING, no memory) + requests_unparsed +
				  * requests_unhooked */
	/* tracepoint: bytes that moved on tracked sockets through no hooked syscall (io_uring,
	 * ...), found from the kernel's TCP byte counters; the events that reported them; and
	 * the requests taken to have begun in them (no record) */
	uint64_t unseen_bytes, unseen_gaps, requests_unhooked;
	uint64_t heads_cut_limit; /* heads longer than the parser's head limit
				   * (tv_http_head_limit(--payload-bytes)): records flagged CUT */
	uint64_t heads_cut_copy;  /* heads cut by the payload copy (--payload-bytes): flagged CUT */
	uint64_t requests_unparsed;  /* request heads seen but unreadable (malformed or
				      * unsupported start line, e.g. a method over 15 bytes, or a
				      * malformed header line): no record, counted as parser loss */
	uint64_t responses_unparsed; /* the same for response heads: the exchange is stored
				      * without that response */
	uint64_t sampled_out;    /* not kept by --sample-ratio (by choice: not lost) */
	uint64_t tunnels;        /* connections that left HTTP/1.x (101, 2xx to CONNECT, the
				  * HTTP/2 preface): their later bytes are no records, not loss */
	uint64_t tunnel_bytes;   /* bytes seen in those tunnels after the switch (both ways) */
	uint64_t events;
	/* The sink's flush at the end: 0 when it stored everything handed to it, else its
	 * negative errno (what it dropped it counts and logs itself). Not the run's own result:
	 * whether a failed segment fails the command is the caller's call. */
	int flush_error;
};

/* The rules between --mode and the other options, owned here and checked by the CLI (as a usage
 * error) and by tv_capture_open: sockfilter sees packets, so --pid, --comm and --cgroup do not
 * apply and --ring-bytes must be whole packet-ring blocks (capture/limits.h); --interface
 * needs sockfilter. Returns 0, or -EINVAL with a one-line reason in err naming the option. */
int tv_capture_check_mode(const struct tv_capture_opts *o, char *err, size_t errlen);

/* The query rules of o's redact, strip_query and redact_query_params (query_redact.h) into
 * *out: the CLI checks them as usage errors, tv_capture_open uses them. --redact-query-params
 * with --strip-query or --no-redact has nothing to do: refused. Returns 0, or -EINVAL with a
 * one-line reason in err. */
int tv_capture_query_rules(const struct tv_capture_opts *o, struct tv_query_rules *out,
			   char *err, size_t errlen);

/* --body-bytes must not exceed what a syscall's copy holds (--payload-bytes, or its default):
 * bytes the copy does not carry cannot be stored. Returns 0, or -EINVAL with a one-line
 * reason in err naming both options. */
int tv_capture_check_body_bytes(const struct tv_capture_opts *o, char *err, size_t errlen);

struct tv_capture;

/* Checks o, opens the source of o->mode (loads and attaches the eBPF programs and seeds the
 * connections already open; sockfilter: binds the packet socket) and, with o->drop_caps,
 * drops the capabilities (privs.h: tv_capture_drop_caps), which needs the calling thread to
 * be the process's only one: start no thread before this returns. o is copied. Nothing is
 * read from the source until tv_capture_run; events wait in its ring. Returns 0 and *out (free
 * it with tv_capture_free), or a negative errno with a one-line reason in err: -EINVAL for
 * options the mode does not take, -EPERM when the source cannot be loaded for lack of
 * privileges, -EBUSY when another thread exists at the drop, the source's open error,
 * -ENOMEM. */
int tv_capture_open(struct tv_capture **out, const struct tv_capture_opts *o, char *err,
		    size_t errlen);

/* Once per capture: with o->drop_caps, first checks that every thread of the process (those
 * the caller started since tv_capture_open too) holds nothing the drop removed (privs.h:
 * tv_capture_check_threads: -EPERM otherwise, before any event is read); then writes "ready"
 * to o->ready_fd and runs until *stop or the duration ends, then ends every connection,
 * reports the final loss totals and flushes the sink. live (NULL: none) is kept up to date
 * for a metrics endpoint. *res is zeroed first and filled whenever the loop ran. Returns 0, or
 * a negative errno with a one-line reason in err: the check's, the source's poll error. The
 * sink's flush result is res->flush_error, not the return: what it stored or lost is the
 * sink's to report (tv_pipeline_stats). sink and live must stay valid until return. */
int tv_capture_run(struct tv_capture *c, const struct tv_record_sink *sink,
		   struct tv_capture_live *live, struct tv_capture_result *res, char *err,
		   size_t errlen);

/* Detaches and unloads the source and frees c. Safe on NULL. */
void tv_capture_free(struct tv_capture *c);

#endif
