/* gRPC C core's own log lines in tracevaultd (gpr_log: its handshake failures, transport
 * errors), through a log function of ours: at most TV_GRPC_LOG_WINDOW_LINES ERROR lines (the
 * level gRPC prints by default; INFO and DEBUG, printed only when GRPC_VERBOSITY asks for them,
 * pass unlimited) per TV_GRPC_LOG_WINDOW_MS, then one line counting what was suppressed, so
 * that a peer sending garbage to the TLS port (one "Handshake failed" line per connection)
 * cannot fill the log; and the count of failed TLS handshakes for
 * tracevault_server_tls_handshake_failures_total.
 * main installs it after grpc_init; rpc_server.c's loop ticks it. */
#ifndef TV_SERVER_GRPC_LOG_H
#define TV_SERVER_GRPC_LOG_H

#include <stdint.h>

/* Lines of gRPC's log printed per window; the window begins at the first line after the last
 * one ended. One garbage connection is one line: an attacker gets 10 lines a minute, the
 * operator still sees the first failures of a burst and the count of the rest. */
#define TV_GRPC_LOG_WINDOW_LINES 10
#define TV_GRPC_LOG_WINDOW_MS 60000

/* The rate limit itself, pure (no clock, no lock: the caller holds both), for the log
 * function and its unit test, and for rpc_server.c's lines about calls to unknown methods.
 * Zero it to begin. */
struct tv_log_limit {
	uint64_t start_ns;      /* the window's first line (monotonic ns); 0: no window open */
	unsigned printed;       /* lines printed in it */
	uint64_t suppressed;    /* lines suppressed in it */
	uint64_t suppressed_tls; /* of those, TLS handshake failures */
};

/* A line at now_ns (monotonic, > 0): 1 to print it, 0 when it is suppressed (counted in l).
 * tls says whether it reports a failed TLS handshake. A window that ended before now_ns is
 * closed first: its suppressed counts go into *ended_suppressed and *ended_tls, as from
 * tv_log_limit_expire, to be reported before this line. */
int tv_log_limit_admit(struct tv_log_limit *l, uint64_t now_ns, int tls,
		       uint64_t *ended_suppressed, uint64_t *ended_tls);

/* Close the window when it ended by now_ns (or at once when force): *ended_suppressed and
 * *ended_tls get its suppressed lines (both 0 when it suppressed none, or none was open), to
 * be reported in one line; l is empty again. */
void tv_log_limit_expire(struct tv_log_limit *l, uint64_t now_ns, int force,
			 uint64_t *ended_suppressed, uint64_t *ended_tls);

/* Install the log function (gpr_set_log_function; after grpc_init, which reads
 * GRPC_VERBOSITY). Lines keep gRPC's own format (E1202 00:06:26.411164230 8962
 * file.cc:1501] message) on stderr. With GRPC_VERBOSITY=NONE nothing is printed, but gRPC is
 * set to pass its errors to us so that handshake failures are still counted. */
void tv_grpc_log_install(void);

/* Print the "suppressed" line of a window that has ended (the server loop calls it every
 * TV_RPC_IDLE_SCAN_MS; a burst followed by silence is reported within a window), or, with
 * force (at stop), of the window still open. Any thread. */
void tv_grpc_log_tick(int force);

/* Failed TLS handshakes gRPC has logged since the start (ssl_transport_security.cc's
 * "Handshake failed with fatal error": bytes that are not TLS, a refused or missing client
 * certificate, no shared protocol), suppressed lines included. Read with tv_metric_get; the
 * pointer is valid for the life of the process. A peer that closes or goes idle before its
 * first TLS byte is not counted: gRPC C core 1.51 has no public hook on its handshakes (its
 * handshaker API is C++ and internal, channelz counts no failed handshakes); its log line is
 * the one place a failure shows. */
const uint64_t *tv_grpc_log_tls_handshake_failures(void);

#endif
