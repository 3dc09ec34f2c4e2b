/* The TraceStore gRPC service on grpc C core: one completion queue, one thread, a small state
 * machine per call so many Write/Query/Delete calls progress concurrently. */
#ifndef TV_RPC_SERVER_H
#define TV_RPC_SERVER_H

#include <signal.h>
#include <stddef.h>

#include "server/catalog.h"
#include "server/store_uring.h"

/* How often the loop wakes to look at the stop flag when no call is active. */
#define TV_RPC_POLL_MS 200
/* While disk I/O is in flight and gRPC is idle, how long to wait in io_uring before looking
 * at gRPC again (see tv_rpc_server_run). */
#define TV_RPC_IO_WAIT_US 50
/* After a Write stream's end, how long a client cancel may take to show up before the end is
 * taken as a half-close without COMMIT (see write_on_recv). */
#define TV_RPC_EOS_GRACE_MS 20

struct tv_rpc_server_opts {
	const char *listen_addr;  /* "HOST:PORT"; port 0 binds an ephemeral one */
	size_t max_message_bytes; /* both directions */
	/* query memory limits (server/query.h); 0 selects the defaults */
	size_t query_memory_bytes, query_total_memory_bytes;
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
/* Release a server that was started (after run returned, or instead of run). */
void tv_rpc_server_free(struct tv_rpc_server *srv);

#endif
