/* tracevaultd's metrics (--metrics-addr): the counters the server's modules bump where things
 * happen (segment.c: writes, commits, aborts; delete_rpc.c: deletions; rpc_server.c: query
 * latency, the stored totals and refused streams), the counters other modules already keep
 * (retention's removals, the store's quarantined blocks, grpc_log.c's TLS handshake failures),
 * and their exposition table (common/metrics.h). Written on the
 * server's one thread with relaxed atomics, read by the metrics endpoint's thread. */
#ifndef TV_SERVER_METRICS_H
#define TV_SERVER_METRICS_H

#include <stdint.h>

#include "common/metrics.h"
#include "under/persist.h"

/* Series in the table (tv_server_metrics_init fills it). */
#define TV_SERVER_METRICS_SERIES 56

/* Why a Write or Query stream was refused RESOURCE_EXHAUSTED at its start (rpc_server.c). */
enum tv_refused_reason {
	TV_REFUSED_PER_PEER, /* its peer held its share (--max-*-streams-per-peer) */
	TV_REFUSED_SERVER,   /* the server's limit was reached (--max-*-streams) */
	TV_REFUSED_REASONS,
};

struct tv_evict_stats;

struct tv_server_metrics {
	/* segment.c, at the commit reply: what became durable */
	uint64_t written_bytes, written_records, written_blocks;
	uint64_t segments_committed;
	uint64_t segments_aborted;   /* opened segments given up: cancel, failure, Delete, end */
	struct tv_histogram commit_seconds; /* COMMIT received to its reply (with its group) */
	/* delete_rpc.c: Delete calls that removed a segment (committed blocks, a stream in
	 * flight or its temp files), those that named a segment and found nothing of it, and
	 * the blocks Delete removed */
	uint64_t segments_deleted, segment_deletes_noop, deleted_blocks;
	struct tv_histogram query_seconds; /* a Query call from its request to its status */
	/* rpc_server.c: streams refused at their start, [Write 0, Query 1][reason] (the
	 * classes of server/peers.h) */
	uint64_t streams_refused[2][TV_REFUSED_REASONS];
	/* rpc_server.c, OTLP Export calls (PROTOCOL.md "OTLP ingest"): spans stored (counted
	 * when their Export is answered, durable), spans refused one by one (partial success),
	 * Export calls refused whole: over --otlp-max-pending-bytes (RESOURCE_EXHAUSTED with a
	 * retry hint) or not a valid request (INVALID_ARGUMENT, too large) */
	uint64_t otlp_spans_accepted, otlp_spans_rejected;
	uint64_t otlp_exports_throttled, otlp_exports_invalid;
	struct tv_histogram otlp_export_seconds; /* an Export from its request to its reply */
	/* gauges: the catalog's totals (rpc_server.c refreshes them after each commit group and
	 * every TV_RPC_IDLE_SCAN_MS), and the data dir's free bytes (at each scrape) */
	uint64_t stored_blocks, stored_bytes;
	uint64_t disk_free_bytes;
	int data_fd; /* fstatvfs'd at scrape */
	/* the under-store's counters (ext->under), and the age of its oldest unpersisted
	 * segment in seconds, computed at scrape */
	const struct tv_persist_stats *under;
	uint64_t under_oldest_age_s;
	struct tv_metric table[TV_SERVER_METRICS_SERIES];
	struct tv_metrics reg;
};

/* The counters other modules own, exposed as they are (each read with tv_metric_get). */
struct tv_server_metrics_ext {
	const uint64_t *quarantined_blocks;  /* tv_store_quarantined_blocks */
	const uint64_t *retention_segments, *retention_blocks, *retention_bytes; /* retention */
	const uint64_t *tls_handshake_failures; /* tv_grpc_log_tls_handshake_failures */
	/* the under-store's counters (server/under/persist.h): main's, zero without --under */
	const struct tv_persist_stats *under;
	/* eviction and read-back (server/evict.h): main's, zero without --under */
	const struct tv_evict_stats *evict;
};

/* Zero m and build its table over m's own fields and ext's. data_fd (the data dir, kept open
 * by the caller while m is exposed) is what disk free is read from. */
void tv_server_metrics_init(struct tv_server_metrics *m, int data_fd,
			    const struct tv_server_metrics_ext *ext);

#endif
