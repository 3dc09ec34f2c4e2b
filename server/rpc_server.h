/* The TraceStore gRPC service on grpc C core: one completion queue, one thread, a small state
 * machine per call so many Write/Query/Delete calls progress concurrently. */
#ifndef TV_RPC_SERVER_H
#define TV_RPC_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/limit.h"
#include "common/tls.h"
#include "common/metrics.h"
#include "proto/otlp_span.h"
#include "server/catalog.h"
#include "server/retention.h"
#include "server/store_uring.h"

/* How often the loop wakes to look at the stop flag when no call is active. */
#define TV_RPC_POLL_MS 200
/* While disk I/O is in flight and gRPC is idle, how long to wait in io_uring before looking
 * at gRPC again (see tv_rpc_server_run). */
#define TV_RPC_IO_WAIT_US 50
/* While the only I/O in flight is the under-store's (an S3 upload on its worker thread), the
 * loop blocks in gRPC this long at a time, then reaps: a persist's result waits at most this
 * (its S3 calls take milliseconds), and the loop does not spin through the upload. */
#define TV_RPC_UNDER_WAIT_MS 1
/* The same when the only results awaited are async-through's uploads and no COMMIT waits for
 * room in their queue: nobody waits on them, so the loop wakes 20 times a second rather than
 * 1000 (measured idle with uploads retrying while S3 was down: see UNDERSTORE.md). */
#define TV_RPC_UNDER_ASYNC_WAIT_MS 50
/* Segments whose COMMIT is ready wait until no gRPC event is ready, then commit as one group
 * (tv_segment_commit_group); under a steady stream of events, after at most this many.
 * Measured (bench/commit.sh, 3 rounds A/B, 4 writers of 64 KiB segments): 8 gave 483
 * commits/s, p99 10.5 ms; 64 gave 360/s, p99 17 ms (commits waited behind other streams'
 * chunks); without group commit 347/s, p99 19 ms. */
#define TV_RPC_GROUP_MAX_EVENTS 8
/* After a Write stream's end, how long a client cancel may take to show up before the end is
 * taken as a half-close without COMMIT (see write_on_recv). */
#define TV_RPC_EOS_GRACE_MS 20

/* Limits on what clients can make the server hold (tracevaultd options; the descriptors they
 * cost are planned in server/fd_plan.h). A stream beyond its limit, or beyond its peer's
 * share of it (server/peers.h), ends RESOURCE_EXHAUSTED at once, its message naming the
 * option; Delete and Stats calls are answered at once and not counted. Bounds: 1 to 65536 streams (HTTP/2 allows more per connection, no server here
 * needs more), an idle timeout of 100 ms to 24 h. */
#define TV_RPC_DEFAULT_MAX_WRITE_STREAMS 256 /* Write streams in progress at once */
#define TV_RPC_DEFAULT_MAX_QUERY_STREAMS 64  /* Query streams in progress at once */
/* Concurrent streams of one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: the client
 * queues more rather than failing): the default, or half of the Write streams when that is
 * less, so that one connection can never take every Write stream. */
#define TV_RPC_DEFAULT_STREAMS_PER_CONNECTION 16
/* A call waiting on its client for this long is ended: a Write stream with no message while
 * the server waits for one (DEADLINE_EXCEEDED, its segment discarded), a call whose client
 * takes no reply (cancelled), a connection without calls (closed by gRPC). */
#define TV_RPC_DEFAULT_IDLE_TIMEOUT_MS 60000
#define TV_RPC_MAX_STREAMS 65536
#define TV_RPC_MIN_IDLE_TIMEOUT_MS 100
#define TV_RPC_MAX_IDLE_TIMEOUT_MS (24u * 3600 * 1000)
extern const struct tv_limit tv_rpc_streams_limit;      /* the three stream counts */
extern const struct tv_limit tv_rpc_idle_timeout_ms_limit;
/* How often the loop looks for idle calls: the timeout is enforced within this much. */
#define TV_RPC_IDLE_SCAN_MS 100

struct tv_rpc_server_opts {
	const char *listen_addr;  /* "HOST:PORT"; port 0 binds an ephemeral one */
	/* a second, plaintext port for this process's own HTTP API (server/local_rpc.h: a
	 * "unix:PATH" in a private directory), or NULL */
	const char *local_addr;
	size_t max_message_bytes; /* received; sent too, but Query batches may reach
				   * TV_QUERY_MAX_MESSAGE_BYTES (server/query.h) */
	/* the limits above; 0 takes the default */
	unsigned max_write_streams, max_query_streams, max_streams_per_connection;
	/* each peer's share of the Write and Query streams (server/peers.h,
	 * --max-write-streams-per-peer, --max-query-streams-per-peer): 0 takes the default (half
	 * of the server's limit, at least 1); more than the server's limit counts as that */
	unsigned max_write_streams_per_peer, max_query_streams_per_peer;
	unsigned idle_timeout_ms;
	/* query memory limits (server/query.h); 0 selects the defaults */
	size_t query_memory_bytes, query_total_memory_bytes;
	/* block files open in all queries at once; 0: TV_QUERY_MAX_OPEN_BLOCKS (server/query.h) */
	size_t query_open_blocks;
	/* --retain-time, --retain-bytes and their companions (server/retention.h) */
	struct tv_retention_opts retention;
	/* TLS (--tls-cert, --tls-key, --tls-ca): NULL or without cert serves plaintext; with
	 * cert and key, TLS with gRPC's own credentials. A ca asks every client for a certificate
	 * and verifies one that is given against it; require_client_cert (needs ca) refuses the
	 * handshake of a client without one. Only read during tv_rpc_server_start. */
	const struct tv_tls_pem *tls;
	bool require_client_cert;
	/* the under-store (--under with --write-type cache-through), or NULL: must-cache. Opened
	 * and closed by the caller; the server watches its results and waits for them to drain
	 * before tv_rpc_server_run returns. */
	struct tv_persist *under;
	/* its counters, exposed with or without it (the caller's, tv_persist_stats_init'd) */
	const struct tv_persist_stats *under_stats;
	/* eviction (--local-bytes) and read-back of evicted blocks (server/evict.h), the
	 * caller's, outlives the server; NULL: local files only. evict_stats are exposed with or
	 * without it (the caller's, zeroed). */
	struct tv_evict *evict;
	const struct tv_evict_stats *evict_stats;
	/* OTLP ingest (server/otlp_export.h, proto/otlp_span.h): the largest Export request
	 * (--otlp-max-message-bytes) and the request bytes in progress at once
	 * (--otlp-max-pending-bytes), 0 taking the defaults; the span limits, all-zero taking
	 * the defaults */
	size_t otlp_max_message_bytes, otlp_max_pending_bytes;
	struct tv_otlp_limits otlp_limits;
};

struct tv_rpc_server;

/* Create, bind and start the server (grpc_init is the caller's). On success *bound_port is the
 * listening port. c and s must outlive the server. Returns 0 or a negative errno with a reason
 * in err. */
int tv_rpc_server_start(struct tv_rpc_server **out, const struct tv_rpc_server_opts *o,
			struct tv_catalog *c, struct tv_store *s, int *bound_port, char *err,
			size_t errlen);
/* Serve until *stop becomes non-zero, then shut down: cancel every call (aborting in-flight
 * segments), drain the queue. Returns 0. */
int tv_rpc_server_run(struct tv_rpc_server *srv, volatile sig_atomic_t *stop);
/* The server's metrics (server/metrics.h) for the --metrics-addr endpoint: valid until
 * tv_rpc_server_free; the endpoint must be stopped before that. */
const struct tv_metrics *tv_rpc_server_metrics(const struct tv_rpc_server *srv);
/* Release a server that was started (after run returned, or instead of run). */
void tv_rpc_server_free(struct tv_rpc_server *srv);

#endif
