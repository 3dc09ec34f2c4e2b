/* tracevaultd's descriptor plan: RLIMIT_NOFILE raised at start, then divided between what
 * clients can make the server hold, so that descriptors never run out. They must not: gRPC
 * 1.51's listener stops accepting for good once an accept fails with EMFILE (its accept loop
 * gives up instead of retrying: grpc/grpc#16058, #20418, #31080), and the server then stays up
 * and unreachable until restarted.
 *
 *   descriptors open when the plan is made (stdio, data dir, catalog, ring)
 * + TV_FD_PLAN_RESERVE   gRPC's own (listener, epoll, eventfds), a Query's block read,
 *                        SQLite's transient files, connections before their first call
 * + the HTTP port's      --http-max-connections and its pool's epoll and eventfds
 *                        (TV_METRICS_MAX_FDS, common/metrics_http.h), with --http-addr
 * + Write + Query stream limits   one connection each at worst (rpc_server.h)
 * + the block-file budget          --max-open-files (store_uring.h; a Write stream holds
 *                                  up to TV_SEGMENT_MAX_OPEN_FILES, segment.h)
 * + the block files of queries     TV_QUERY_MAX_OPEN_BLOCKS (query.h), all queries together
 * must not exceed RLIMIT_NOFILE. */
#ifndef TV_FD_PLAN_H
#define TV_FD_PLAN_H

#include <stddef.h>
#include <stdint.h>

#define TV_FD_PLAN_RESERVE 32

struct tv_fd_plan {
	uint64_t nofile;        /* RLIMIT_NOFILE soft limit the server runs with */
	uint64_t nofile_before; /* the soft limit it was started with */
	uint64_t nofile_hard;
	uint64_t in_use;        /* descriptors open when tv_fd_plan_make ran */
	/* In: what the operator set, 0 for "derive". Out: the limits to run with. */
	uint64_t write_streams, query_streams, open_files;
	uint64_t query_files; /* block files open in queries: always derived (0 in) */
	/* In: --http-max-connections (0: no --http-addr); the plan reserves
	 * TV_METRICS_MAX_FDS of it */
	uint64_t http_connections;
	int scaled; /* defaults were lowered to fit RLIMIT_NOFILE */
};

/* Raise the soft RLIMIT_NOFILE to the hard one (capped by fs.nr_open when the hard limit is
 * unlimited) and record both in p. Call first thing: recovery benefits too. A refusal of the
 * kernel leaves the soft limit as it was (the plan then fits in it). Never fails. */
void tv_fd_plan_raise(struct tv_fd_plan *p);

/* The descriptors p reserves beside the limits: TV_FD_PLAN_RESERVE and the HTTP port's. */
uint64_t tv_fd_plan_reserved(const struct tv_fd_plan *p);

/* Count the descriptors open now and settle the limits in p. Values the operator gave are
 * kept; the others default (rpc_server.h; block files TV_SEGMENT_MAX_OPEN_FILES per Write
 * stream; query_files, never given, TV_QUERY_MAX_OPEN_BLOCKS) and, when the defaults do not fit, are lowered in proportion (each at least 1, p->scaled
 * set). Returns 0, or -EMFILE with err naming the limit and the figures when even that does not
 * fit (an operator's values too large for RLIMIT_NOFILE, or a limit too small to serve). */
int tv_fd_plan_make(struct tv_fd_plan *p, char *err, size_t errlen);

/* The plan in one log line (no newline): limit, raise, in use, each limit. */
void tv_fd_plan_describe(const struct tv_fd_plan *p, char *buf, size_t len);

#endif
