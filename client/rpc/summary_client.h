/* `tracevault summary` against the servers: one Summary rpc per server (PROTOCOL.md
 * "Summary"), and their answers merged into one: counts and sums added, min/max taken,
 * latency sketches added bucket for bucket (exact: the merge of several servers equals the
 * summary of their union), then the groups sorted and cut to the requested number. */
#ifndef TV_SUMMARY_CLIENT_H
#define TV_SUMMARY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/latency_sketch.h"
#include "rpc/query_client.h"
#include "tracevault.pb-c.h"

/* One group of the merged answer. */
struct tv_summary_group {
	char *key; /* owned; "" for other */
	uint64_t count, count_4xx, count_5xx, count_no_response, count_flagged;
	uint64_t latency_count, latency_min_ns, latency_max_ns, latency_sum_ns;
	struct tv_sketch latency;
};

struct tv_summary_result {
	struct tv_summary_group *groups; /* count descending, then key bytes ascending */
	size_t ngroups;
	struct tv_summary_group other;   /* the records of every group not in groups */
	uint64_t records;                /* summed over the servers */
	uint64_t skipped;                /* blocks the servers skipped */
	/* servers whose answer held fewer groups than they found, the rest in their other (the
	 * message limit; with several servers those keys cannot be merged by key) */
	size_t servers_cut;
	bool overflowed;                 /* a server's group table met its memory limit */
};

/* Summary of req (its max_groups is the number of groups wanted, 0: the default) on every
 * server of the comma-separated list; skip_cb is told of each skipped block. With one
 * server the groups are cut by it; with several each is asked for every group
 * (TV_SUMMARY_MAX_GROUPS) and the merge is cut here. *out is filled on success (free with
 * tv_summary_result_free). Returns 0 or a negative errno with a one-line reason in err
 * ("cannot reach server H:P: ...", "summary failed on H:P: CODE: message", a sketch that
 * breaks the contract). */
int tv_summary_fetch(const char *server, const struct tv_rpc_tls *tls,
		     const Tracevault__V1__SummaryRequest *req,
		     size_t max_message_bytes, tv_query_skip_cb skip_cb, void *arg,
		     struct tv_summary_result *out, char *err, size_t errlen);
void tv_summary_result_free(struct tv_summary_result *r);

#endif
