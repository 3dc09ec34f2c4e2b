/* `tracevault capture --metrics-addr`: the capture's metrics (common/metrics.h) — the run
 * loop's counts (struct tv_capture_live, capture/capture.h) and the write pipeline's
 * (tv_pipeline_stats, read at each scrape) — and their exposition table. */
#ifndef TV_CLI_CAPTURE_METRICS_H
#define TV_CLI_CAPTURE_METRICS_H

#include <stdint.h>

#include "capture/capture.h"
#include "common/metrics.h"
#include "write/pipeline.h"

/* Series in the table (tv_capture_metrics_init fills it). */
#define TV_CAPTURE_METRICS_SERIES 16

struct tv_capture_metrics {
	struct tv_capture_live live; /* tv_capture_opts.live points here */
	struct tv_pipeline *pipe;    /* read at each scrape (its stats take its lock) */
	/* tv_pipeline_stats, copied at each scrape */
	uint64_t records_sent, dropped_cache, dropped_failed;
	uint64_t segments_committed, segments_failed, cache_bytes;
	struct tv_metric table[TV_CAPTURE_METRICS_SERIES];
	struct tv_metrics reg;
};

/* Zero m and build its table; pipe must outlive the endpoint serving m->reg. */
void tv_capture_metrics_init(struct tv_capture_metrics *m, struct tv_pipeline *pipe);

#endif
