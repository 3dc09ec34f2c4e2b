/* `tracevault query` against the server: one Query rpc for [from_ns, to_ns), records handed
 * to a callback in ts_ns order (or newest first) as the response batches arrive. */
#ifndef TV_QUERY_CLIENT_H
#define TV_QUERY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/record_wire.h"
#include "rpc/rpc.h"
#include "tracevault.pb-c.h"

/* Deadline of a whole query stream and of the reachability check before it. */
#define TV_QUERY_TIMEOUT_MS (10 * 60 * 1000)
#define TV_QUERY_CONNECT_TIMEOUT_MS 10000

/* Called once per record, in order, with the record read in place from the server's message
 * (proto/record_wire.h; its bytes were checked as a TraceRecord protobuf-c would accept); r
 * and the bytes it points into are valid only during the call. A non-zero return stops the
 * query (the rpc is cancelled) and tv_query returns that value. */
typedef int (*tv_query_cb)(const struct tv_record_wire *r, void *arg);

/* Called once per block a server skipped (PROTOCOL.md, Query): it failed its checks or could
 * not be read, so its records (after b->records_served of them) are missing from the answer,
 * while every other record is delivered. It comes before any record the block would have
 * preceded. server names the server; b is valid only during the call. */
typedef void (*tv_query_skip_cb)(const char *server, const Tracevault__V1__SkippedBlock *b,
				 void *arg);

/* Called when the merge has handed out every record it can and is about to wait for a server:
 * a caller that buffers its output flushes it here, so records appear as the servers stream
 * them (the first match of a long selective scan at once, not at the end). */
typedef void (*tv_query_idle_cb)(void *arg);

/* Query server (over tls: rpc/rpc.h) for records with from_ns <= ts_ns < to_ns that pass filter (NULL: all; each
 * server applies it, PROTOCOL.md "Filters"), at most limit (0: all), oldest first, or newest
 * first with reverse (the exact mirror: with limit N, the last N). A server that does not
 * announce filter or reverse when asked for them (an older tracevaultd ignores them) fails
 * the query before any of its records is taken: "server H:P does not evaluate filters:
 * upgrade tracevaultd".
 * max_message_bytes 0 means TV_DEFAULT_MAX_MESSAGE_BYTES. A server that skipped blocks
 * (skip_cb is told of each, and its stream ends DATA_LOSS) does not fail the query: the
 * records of every other block still arrive. Returns 0, the callback's non-zero value, or a
 * negative errno with a one-line reason in err: "cannot reach server H:P: connection
 * refused", "query failed: CODE: message", or a reply that breaks the contract (out of order,
 * outside the window). */
int tv_query(const char *server, const struct tv_rpc_tls *tls, uint64_t from_ns, uint64_t to_ns, uint64_t limit, bool reverse,
	     const Tracevault__V1__QueryFilter *filter, size_t max_message_bytes, tv_query_cb cb,
	     tv_query_skip_cb skip_cb, tv_query_idle_cb idle_cb, void *arg, char *err,
	     size_t errlen);

/* The Stats rpc on every server of the comma-separated list, summed: blocks, records, bytes
 * and loss counters of the blocks overlapping [from_ns, to_ns). *out is filled on success
 * (a malloc'd message of scalars: free it with free()). Returns 0 or a negative errno with
 * a one-line reason in err ("cannot reach server H:P: ...", "stats failed on H:P: CODE: ..."). */
int tv_query_stats(const char *server, const struct tv_rpc_tls *tls, uint64_t from_ns,
		   uint64_t to_ns,
		   size_t max_message_bytes, Tracevault__V1__StatsResponse **out, char *err,
		   size_t errlen);

#endif
