/* What a producer of records (capture) needs of the write path, and nothing more: add a
 * record, report loss totals, flush. The pipeline implements it (tv_pipeline_sink); a test can
 * implement it with three functions and no gRPC. The model is the server's tv_segment_sink. */
#ifndef TV_WRITE_SINK_H
#define TV_WRITE_SINK_H

#include "proto/block.h"
#include "tracevault.pb-c.h"

struct tv_record_sink {
	void *ctx; /* passed to every function below */
	/* Store one record; r and everything it points to stay the caller's (copied). May block
	 * (back-pressure). 0, or -ENOBUFS when it was dropped (counted by the sink). */
	int (*add)(void *ctx, const Tracevault__V1__TraceRecord *r);
	/* The producer's loss counters as running totals (ring_full, map_full, parser, requests;
	 * cache and failed are the sink's own): their increase is stored with the next block. */
	void (*note_loss)(void *ctx, const struct tv_block_loss *total);
	/* End the current segment and wait for everything added so far: 0 when all of it was
	 * stored, else a negative errno (the loss is counted and logged by the sink). */
	int (*flush)(void *ctx);
};

#endif
