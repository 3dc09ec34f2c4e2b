/* Per-connection state of the capture: takes the source's events (struct tv_event,
 * bpf/tv_event.h) in delivery order from capture.c's run loop, runs an HTTP parser per
 * direction, and pairs requests with responses into finished exchanges for its callback. */
#ifndef TV_CONN_TABLE_H
#define TV_CONN_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "capture/http_parse.h"

/* Room for "[ipv6]:port". */
#define TV_ADDR_STR_BYTES 64
/* Requests in flight on one connection (HTTP pipelining) before the oldest is dropped. */
#define TV_CONN_MAX_PENDING 32
/* Connections tracked at once; events of further connections are counted and dropped. */
#define TV_CONN_MAX 65536
/* A CLOSE flagged TV_EV_FLAG_HELD (a reset while a process held the socket) ends its
 * connection this long after the event (tv_conn_table_reap), so a data event of the holder
 * that reached the ring behind it is still paired: two poll intervals of the capture. */
#define TV_CONN_CLOSE_GRACE_NS (20ull * 1000 * 1000)

/* TraceRecord.flags bits (proto/tracevault.proto documents them). */
#define TV_RECORD_FLAG_NO_RESPONSE 1u /* closed before a response: status 0 */
#define TV_RECORD_FLAG_PARTIAL 2u     /* sync lost or message cut: counts are lower bounds */
#define TV_RECORD_FLAG_LOST 4u        /* the response was lost in capture: status 0 */
#define TV_RECORD_FLAG_CUT 8u         /* a head was not seen whole (head limit or payload
				       * copy): fields after the cut are missing */
#define TV_RECORD_FLAG_UNSEEN 32u     /* bytes of this exchange moved through no hooked
				       * syscall (io_uring, ...; known from the TCP byte
				       * counters): body counts stay exact, the bytes were not
				       * seen; with LOST, the whole response was such bytes */

/* One request/response pair. Times are CLOCK_MONOTONIC ns, as the events carry them. */
struct tv_exchange {
	uint64_t ts_ns;  /* first request byte */
	uint64_t end_ns; /* last response byte (or the close, without a response) */
	uint32_t pid;    /* the process whose syscall carried the request's first byte (a
			  * server's forked child that reads it, not the parent that accepted) */
	unsigned status; /* 0: no response seen */
	uint32_t flags;  /* TV_RECORD_FLAG_* */
	uint64_t conn_id, conn_gen; /* the connection's identity (sampling keeps it together) */
	uint64_t req_body_bytes, resp_body_bytes;
	char comm[17];   /* of pid */
	char local[TV_ADDR_STR_BYTES], remote[TV_ADDR_STR_BYTES];
	char method[TV_HTTP_METHOD_BYTES];
	const char *path; /* never NULL; as long as the request head held it (tv_http_msg.path) */
	const char *host; /* never NULL; "" when the request named none (tv_http_msg.host) */
	char http_version[4]; /* "1.0", "1.1"; "" when the request line was cut */
	const char *role; /* "server" (accepted, or a listened port) or "client" (connected) */
	char trace_id[TV_HTTP_TRACE_ID_BYTES];
	char span_id[TV_HTTP_SPAN_ID_BYTES];
	/* --headers: "name\0value\0" pairs (tv_http_msg.hdrs), NULL/0 when none were kept */
	const char *req_hdrs, *resp_hdrs;
	size_t req_hdrs_len, resp_hdrs_len;
	/* --body-bytes: the first body bytes (tv_http_msg.body), NULL/0 when none were kept;
	 * Content-Type / Content-Encoding values, NULL when absent or not asked for */
	const uint8_t *req_body, *resp_body;
	size_t req_body_len, resp_body_len;
	const char *req_content_type, *resp_content_type;
	const char *req_content_encoding, *resp_content_encoding;
};

/* Called for each finished exchange; x is valid only during the call. */
typedef void (*tv_exchange_fn)(void *ctx, const struct tv_exchange *x);

struct tv_conn_stats {
	uint64_t conns_opened, conns_closed;
	uint64_t conns_dropped;     /* table full (TV_CONN_MAX) or out of memory, per event */
	uint64_t exchanges;         /* passed to the callback */
	uint64_t exchanges_dropped; /* pipelining deeper than TV_CONN_MAX_PENDING, or no memory */
	uint64_t parse_errors;      /* times a parser lost sync */
	uint64_t bad_events;        /* short records, or an unknown kind or role */
	uint64_t gaps;              /* events telling of lost data before them (TV_EV_FLAG_GAP) */
	uint64_t requests_unseen;   /* requests that began in lost data: no record (the kernel
				     * counts them as TV_LOST_REQUESTS); their responses are
				     * matched and skipped so later pairs stay aligned */
	uint64_t responses_lost;    /* records emitted with TV_RECORD_FLAG_LOST */
	uint64_t unseen_gaps;       /* events telling of unhooked bytes (TV_EV_FLAG_UNSEEN) */
	uint64_t requests_unhooked; /* requests taken to have begun in unhooked bytes: no record */
	uint64_t responses_unpaired; /* responses with no request waiting (dropped) */
	/* heads reported cut (records flagged TV_RECORD_FLAG_CUT), by reason, and heads the
	 * parsers could not read at all (no record for their message), by direction: summed
	 * from the parsers when a connection ends (tv_http_parser's counters) */
	uint64_t heads_cut_limit, heads_cut_copy;
	uint64_t requests_unparsed, responses_unparsed;
	/* connections that left HTTP/1.x (a 101, a 2xx answer to CONNECT, the HTTP/2 preface)
	 * and the bytes seen in them afterwards, both directions (tv_http_parser.tunnel_bytes):
	 * not HTTP/1.x, so neither records nor loss. The exchange that switched is a record;
	 * requests the client sent behind it before the switch are the new protocol's bytes
	 * (RFC 9110 §7.8) and give none. */
	uint64_t tunnels, tunnel_bytes;
};

struct tv_conn_table;

/* An empty table handing finished exchanges to fn(ctx, ...), from tv_conn_table_event and
 * _flush. NULL when out of memory. */
struct tv_conn_table *tv_conn_table_new(tv_exchange_fn fn, void *ctx);
/* Frees every connection without emitting anything: call tv_conn_table_flush first. */
void tv_conn_table_free(struct tv_conn_table *t);

/* What request paths keep of their query (capture/query_redact.h; capture's default,
 * --redact-query-params, --strip-query, --no-redact): rules must outlive t. Default NULL: the
 * query is dropped. */
void tv_conn_table_set_query_rules(struct tv_conn_table *t, const struct tv_query_rules *rules);

/* 1: keep request/response header lines in the exchanges (capture --headers); credential
 * header values are redacted unless keep_credentials (capture --no-redact). Default 0, 0. */
void tv_conn_table_set_headers(struct tv_conn_table *t, int keep_headers, int keep_credentials);

/* capture --body-bytes: keep the first body_bytes bytes of each request and response body
 * (de-chunked) and their Content-Type / Content-Encoding, for connections opened from now on.
 * 0 (the default): none. The capture bounds it by --payload-bytes. */
void tv_conn_table_set_body_bytes(struct tv_conn_table *t, size_t body_bytes);

/* The parsers' head limit (tv_http_parser.max_head_bytes) for connections opened from now on,
 * in bytes: the capture passes tv_http_head_limit(--payload-bytes). Default
 * TV_HTTP_DEFAULT_HEAD_BYTES. Each connection allocates head buffers only as heads grow. */
void tv_conn_table_set_head_limit(struct tv_conn_table *t, size_t max_head_bytes);

/* One ring buffer record (struct tv_event, len bytes of it). Malformed records are counted. */
void tv_conn_table_event(struct tv_conn_table *t, const void *data, size_t len);

/* Ends the connections whose held CLOSE (TV_EV_FLAG_HELD) is older than
 * TV_CONN_CLOSE_GRACE_NS at now_ns (monotonic), at the time of their CLOSE. The capture calls it
 * after each poll; cheap when none waits. */
void tv_conn_table_reap(struct tv_conn_table *t, uint64_t now_ns);

/* End of capture: every connection is treated as closed at now_ns (monotonic), so requests
 * still waiting for a response are emitted with what was seen (status 0 without a response). */
void tv_conn_table_flush(struct tv_conn_table *t, uint64_t now_ns);

const struct tv_conn_stats *tv_conn_table_stats(const struct tv_conn_table *t);

/* "127.0.0.1:8080" or "[::1]:8080" into buf (TV_ADDR_STR_BYTES). */
void tv_format_addr(char *buf, size_t len, uint16_t family, const uint8_t addr[16], uint16_t port);

#endif
