/* The capture's metric table (cli/capture_metrics.h): names and help texts in one place. Losses
 * carry the reasons of capture's summary line (cmd_capture.c): ring_full and map_full (kernel),
 * parser, cache_full and failed_segment (the pipeline's). */
#include "cli/capture_metrics.h"

#include <string.h>

/* On the endpoint's thread, before each exposition. */
static void collect(void *arg)
{
	struct tv_capture_metrics *m = arg;
	struct tv_pipeline_stats ps;

	tv_pipeline_stats(m->pipe, &ps);
	tv_metric_set(&m->records_sent, ps.records_committed);
	tv_metric_set(&m->dropped_cache, ps.records_dropped_cache);
	tv_metric_set(&m->dropped_failed, ps.records_dropped_failed);
	tv_metric_set(&m->segments_committed, ps.segments_committed);
	tv_metric_set(&m->segments_failed, ps.segments_failed);
	tv_metric_set(&m->cache_bytes, ps.cache_bytes_used);
}

#define P "tracevault_capture_"
#define LOST_HELP "Losses by reason, as the capture's summary line counts them: kernel " \
	"events dropped with the ring full (sockfilter: packets), sockets the kernel map could " \
	"not hold, exchanges the parser dropped, records dropped with the block cache full or " \
	"in a failed segment."

void tv_capture_metrics_init(struct tv_capture_metrics *m, struct tv_pipeline *pipe)
{
	const struct tv_metric table[] = {
		TV_METRICS_BUILD_INFO,
		{ P "kernel_events_total", "Events read from the kernel ring.", TV_METRIC_COUNTER,
		  NULL, &m->live.events, NULL },
		{ P "lost_total", LOST_HELP, TV_METRIC_COUNTER, "reason=\"ring_full\"",
		  &m->live.lost_ring_full, NULL },
		{ P "lost_total", LOST_HELP, TV_METRIC_COUNTER, "reason=\"map_full\"",
		  &m->live.lost_map_full, NULL },
		{ P "lost_total", LOST_HELP, TV_METRIC_COUNTER, "reason=\"parser\"",
		  &m->live.lost_parser, NULL },
		{ P "lost_total", LOST_HELP, TV_METRIC_COUNTER, "reason=\"cache_full\"",
		  &m->dropped_cache, NULL },
		{ P "lost_total", LOST_HELP, TV_METRIC_COUNTER, "reason=\"failed_segment\"",
		  &m->dropped_failed, NULL },
		{ P "events_truncated_total", "Events whose payload copy was cut (--payload-bytes; "
		  "byte counts stay exact).", TV_METRIC_COUNTER, NULL, &m->live.events_truncated,
		  NULL },
		{ P "lost_requests_total", "Of the ring-full events, those that began a request.",
		  TV_METRIC_COUNTER, NULL, &m->live.lost_requests, NULL },
		{ P "parser_resyncs_total", "Times a parser lost sync with its stream.",
		  TV_METRIC_COUNTER, NULL, &m->live.parser_resyncs, NULL },
		{ P "ring_used_bytes", "The most unread bytes found in the kernel ring before a "
		  "drain, over the last 100 ms.", TV_METRIC_GAUGE, NULL, &m->live.ring_used_bytes,
		  NULL },
		{ P "ring_size_bytes", "The kernel ring's size (--ring-bytes).", TV_METRIC_GAUGE,
		  NULL, &m->live.ring_size_bytes, NULL },
		{ P "records_sent_total", "Records the servers confirmed stored (committed "
		  "segments).", TV_METRIC_COUNTER, NULL, &m->records_sent, NULL },
		{ P "block_cache_bytes", "Sealed blocks held in the block cache, not yet committed "
		  "(bounded by --cache-bytes).", TV_METRIC_GAUGE, NULL, &m->cache_bytes, NULL },
		{ P "segments_committed_total", "Segments the servers committed.",
		  TV_METRIC_COUNTER, NULL, &m->segments_committed, NULL },
		{ P "segments_failed_total", "Segments whose write failed (their records counted "
		  "lost, reason failed_segment).", TV_METRIC_COUNTER, NULL, &m->segments_failed,
		  NULL },
	};
	_Static_assert(sizeof(table) / sizeof(table[0]) == TV_CAPTURE_METRICS_SERIES,
		       "TV_CAPTURE_METRICS_SERIES counts the table");

	memset(m, 0, sizeof(*m));
	m->pipe = pipe;
	memcpy(m->table, table, sizeof(table));
	m->reg = (struct tv_metrics){ m->table, TV_CAPTURE_METRICS_SERIES, collect, m };
}
