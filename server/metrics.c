/* tracevaultd's metric table (server/metrics.h): names and help texts in one place, and the
 * scrape-time reading of the data dir's free space. */
#include "server/metrics.h"

#include "server/evict.h"

#include <string.h>
#include <sys/statvfs.h>

#include "common/clock.h"

/* On the endpoint's thread, before each exposition: fstatvfs is thread-safe and cheap. */
static void collect(void *arg)
{
	struct tv_server_metrics *m = arg;
	struct statvfs sv;

	uint64_t oldest_ns = m->under ? tv_metric_get(&m->under->oldest_unpersisted_ns) : 0;
	uint64_t now_ns = tv_realtime_ns();

	if (fstatvfs(m->data_fd, &sv) == 0)
		tv_metric_set(&m->disk_free_bytes, (uint64_t)sv.f_bavail * sv.f_frsize);
	/* async-through: the age of the oldest segment not yet in the bucket, now */
	tv_metric_set(&m->under_oldest_age_s, oldest_ns && now_ns > oldest_ns ?
						      (now_ns - oldest_ns) / 1000000000ull : 0);
}

#define C(name, help, ptr) { "tracevault_server_" name, help, TV_METRIC_COUNTER, NULL, ptr, NULL }
#define G(name, help, ptr) { "tracevault_server_" name, help, TV_METRIC_GAUGE, NULL, ptr, NULL }
#define R(method, reason, ptr)                                                                \
	{ "tracevault_server_streams_refused_total", "Write and Query streams refused "       \
	  "RESOURCE_EXHAUSTED at their start: reason per_peer when their peer held its share "   \
	  "(--max-write-streams-per-peer, --max-query-streams-per-peer), server_limit when the " \
	  "server's limit was reached (--max-write-streams, --max-query-streams).",               \
	  TV_METRIC_COUNTER, "method=\"" method "\",reason=\"" reason "\"", ptr, NULL }
#define UF(reason, ptr)                                                                       \
	{ "tracevault_server_under_persist_failures_total", "Segments whose copy to the "        \
	  "under-store failed (cache-through: the segment failed), by reason: auth (403), "    \
	  "unreachable, timeout, server (5xx), local (its block file), conflict (its segment " \
	  "id is another's in the bucket), other.", TV_METRIC_COUNTER,                          \
	  "reason=\"" reason "\"", ptr, NULL }
#define H(name, help, ptr) { "tracevault_server_" name, help, TV_METRIC_HISTOGRAM, NULL, NULL, ptr }

void tv_server_metrics_init(struct tv_server_metrics *m, int data_fd,
			    const struct tv_server_metrics_ext *ext)
{
	const struct tv_metric table[] = {
		TV_METRICS_BUILD_INFO,
		C("written_bytes_total", "Block bytes of committed segments (durable when counted).",
		  &m->written_bytes),
		C("written_records_total", "Records in the blocks of committed segments.",
		  &m->written_records),
		C("written_blocks_total", "Blocks of committed segments.", &m->written_blocks),
		C("segments_committed_total", "Write streams whose segment was committed.",
		  &m->segments_committed),
		C("segments_aborted_total", "Opened segments given up uncommitted (cancelled, "
		  "failed, deleted while open, stream ended without COMMIT).",
		  &m->segments_aborted),
		C("segments_deleted_total", "Delete calls that removed a segment: its committed "
		  "blocks, a Write stream of it in flight or that stream's temp files.",
		  &m->segments_deleted),
		C("segment_deletes_noop_total", "Delete calls naming a segment that found nothing "
		  "of it to remove (aborted, deleted or never written before).",
		  &m->segment_deletes_noop),
		C("deleted_blocks_total", "Committed blocks removed by Delete calls.",
		  &m->deleted_blocks),
		H("commit_duration_seconds", "From a COMMIT's arrival to its reply, for committed "
		  "segments (data already synced; the group's catalog transaction and fsyncs).",
		  &m->commit_seconds),
		H("query_duration_seconds", "Query calls, from the request to the status.",
		  &m->query_seconds),
		R("write", "per_peer", &m->streams_refused[0][TV_REFUSED_PER_PEER]),
		R("write", "server_limit", &m->streams_refused[0][TV_REFUSED_SERVER]),
		R("query", "per_peer", &m->streams_refused[1][TV_REFUSED_PER_PEER]),
		R("query", "server_limit", &m->streams_refused[1][TV_REFUSED_SERVER]),
		C("otlp_spans_accepted_total", "Spans of OTLP Export calls stored (durable when "
		  "counted, at the Export's reply).", &m->otlp_spans_accepted),
		C("otlp_spans_rejected_total", "Spans of OTLP Export calls refused one by one "
		  "(partial success: a bad id or time, too large).", &m->otlp_spans_rejected),
		C("otlp_exports_throttled_total", "OTLP Export calls refused RESOURCE_EXHAUSTED "
		  "with a retry hint (over --otlp-max-pending-bytes).", &m->otlp_exports_throttled),
		C("otlp_exports_invalid_total", "OTLP Export calls refused whole: not a valid "
		  "request, or over --otlp-max-message-bytes.", &m->otlp_exports_invalid),
		H("otlp_export_duration_seconds", "OTLP Export calls, from the request to the reply "
		  "(the spans durable).", &m->otlp_export_seconds),
		G("stored_blocks", "Committed blocks in the catalog.", &m->stored_blocks),
		G("stored_bytes", "Bytes of the committed blocks in the catalog.", &m->stored_bytes),
		C("quarantined_blocks_total", "Block files this process moved from blocks/ into "
		  "quarantine/ (failed checks at start-up, scrub, query or summary).",
		  ext->quarantined_blocks),
		C("retention_removed_segments_total", "Segments removed by retention passes "
		  "(--retain-time, --retain-bytes).", ext->retention_segments),
		C("retention_removed_blocks_total", "Blocks removed by retention passes.",
		  ext->retention_blocks),
		C("retention_removed_bytes_total", "Block bytes removed by retention passes.",
		  ext->retention_bytes),
		C("tls_handshake_failures_total", "TLS handshakes on the gRPC port that failed "
		  "(gRPC's 'Handshake failed' log line: not TLS, bad certificates); 0 without "
		  "--tls-cert.", ext->tls_handshake_failures),
		C("under_persisted_segments_total", "Segments whose blocks and manifest were "
		  "written to the under-store (--under).", &ext->under->segments),
		C("under_persisted_objects_total", "Objects written to the under-store (blocks and "
		  "manifests of persisted segments).", &ext->under->objects),
		C("under_persisted_bytes_total", "Bytes of the objects written to the under-store.",
		  &ext->under->bytes),
		UF("auth", &ext->under->failures[TV_PERSIST_FAIL_AUTH]),
		UF("unreachable", &ext->under->failures[TV_PERSIST_FAIL_UNREACHABLE]),
		UF("timeout", &ext->under->failures[TV_PERSIST_FAIL_TIMEOUT]),
		UF("server", &ext->under->failures[TV_PERSIST_FAIL_SERVER]),
		UF("local", &ext->under->failures[TV_PERSIST_FAIL_LOCAL]),
		UF("conflict", &ext->under->failures[TV_PERSIST_FAIL_CONFLICT]),
		UF("other", &ext->under->failures[TV_PERSIST_FAIL_OTHER]),
		C("under_deleted_segments_total", "Segments deleted from the under-store (failed, "
		  "given up, or deleted).", &ext->under->deleted_segments),
		C("under_delete_failures_total", "Attempts to delete a segment from the "
		  "under-store that failed (each is retried).", &ext->under->delete_failures),
		G("under_cleanup_pending", "Segments whose delete from the under-store waits for "
		  "a retry.", &ext->under->cleanup_pending),
		G("under_persist_queued", "Segments handed to the under-store and not yet done.",
		  &ext->under->queued),
		H("under_persist_duration_seconds", "A segment's copy to the under-store, from "
		  "COMMIT to its manifest written.", &ext->under->persist_seconds),
		C("under_evicted_segments_total", "Persisted segments whose local block files "
		  "were evicted (--local-bytes): their blocks are read from the under-store.",
		  &ext->evict->evicted_segments),
		C("under_evicted_bytes_total", "Block bytes evicted from the local disk "
		  "(--local-bytes).", &ext->evict->evicted_bytes),
		C("under_evict_missing_segments_total", "Segments eviction picked but found not "
		  "whole in the under-store (an object missing or short): kept local, never "
		  "evicted.", &ext->evict->missing_segments),
		C("under_recached_blocks_total", "Blocks read back from the under-store and "
		  "linked into blocks/ again (--recache).", &ext->evict->recached_blocks),
		C("under_recached_segments_total", "Evicted segments whose every block is local "
		  "again (--recache): no longer evicted.", &ext->evict->recached_segments),
		C("under_reads_total", "Blocks of evicted segments read back from the "
		  "under-store for a query or a summary.", &ext->evict->read.reads),
		C("under_read_bytes_total", "Bytes of the blocks read back from the under-store.",
		  &ext->evict->read.read_bytes),
		C("under_read_retries_total", "Range GETs of a read-back retried after a "
		  "transient failure (unreachable, timeout, 5xx).", &ext->evict->read.read_retries),
		C("under_read_failures_total", "Block read-backs that failed after their retries "
		  "(the query or summary ended UNAVAILABLE or INTERNAL).",
		  &ext->evict->read.read_failures),
		G("under_unpersisted_segments", "async-through: segments committed locally and "
		  "not yet in the under-store (queued or uploading).",
		  &ext->under->unpersisted_segments),
		G("under_unpersisted_bytes", "async-through: block bytes of those segments.",
		  &ext->under->unpersisted_bytes),
		C("under_persist_retries_total", "async-through: uploads tried again after a "
		  "failure on the S3 side (with backoff; the segment is durable locally).",
		  &ext->under->retries),
		G("under_oldest_unpersisted_age_seconds", "async-through: seconds since the "
		  "oldest segment not yet in the under-store was committed (0: none).",
		  &m->under_oldest_age_s),
		G("data_dir_free_bytes", "Bytes available to tracevaultd on the data dir's file "
		  "system (statvfs f_bavail * f_frsize, read at each scrape).", &m->disk_free_bytes),
	};
	_Static_assert(sizeof(table) / sizeof(table[0]) == TV_SERVER_METRICS_SERIES,
		       "TV_SERVER_METRICS_SERIES counts the table");

	memset(m, 0, sizeof(*m));
	m->data_fd = data_fd;
	m->under = ext->under;
	/* the one latency table of common/metrics.h: within TV_HISTOGRAM_MAX_BOUNDS, ascending */
	tv_histogram_init(&m->commit_seconds, tv_metrics_latency_bounds_ns,
			  TV_METRICS_LATENCY_BOUNDS);
	tv_histogram_init(&m->query_seconds, tv_metrics_latency_bounds_ns,
			  TV_METRICS_LATENCY_BOUNDS);
	tv_histogram_init(&m->otlp_export_seconds, tv_metrics_latency_bounds_ns,
			  TV_METRICS_LATENCY_BOUNDS);
	memcpy(m->table, table, sizeof(table));
	m->reg = (struct tv_metrics){ m->table, TV_SERVER_METRICS_SERIES, collect, m };
}
