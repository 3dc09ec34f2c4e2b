/* Incremental HTTP/1.x parser for one direction of a captured connection: fed the bytes of each
 * syscall (a copied prefix plus the full byte count), it reports message heads and completions. */
#ifndef TV_HTTP_PARSE_H
#define TV_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* The head limit: a message head (start line + headers, up to its blank line) is buffered and
 * parsed whole up to this many bytes. The capture sets it to tv_http_head_limit(--payload-bytes)
 * so that a head one syscall carried and the capture copied whole is never cut by the parser;
 * TV_HTTP_DEFAULT_HEAD_BYTES (8K) is the floor (and the default after init), so that a head
 * spread over several small copies still fits as before. A longer head, like one whose copy
 * was cut, is reported from its complete lines (the start line at least; a request line cut
 * inside its target gives the target's first bytes), marked cut and incomplete, and the parser
 * skips to the next message start it recognises. The buffer is allocated as a head grows (1K,
 * doubling) and given back after a head above TV_HTTP_HEAD_KEEP_BYTES, so an idle connection
 * holds at most that much per direction. */
#define TV_HTTP_DEFAULT_HEAD_BYTES 8192
#define TV_HTTP_HEAD_KEEP_BYTES 4096
/* A method longer than 15 bytes (RFC 9110 sets no bound; every registered method is shorter)
 * makes the request line unparseable: the request is counted (heads_unparsed), not stored. */
#define TV_HTTP_METHOD_BYTES 16
#define TV_HTTP_TRACE_ID_BYTES 33 /* 32 hex + NUL */
#define TV_HTTP_SPAN_ID_BYTES 17  /* 16 hex + NUL */

enum tv_http_kind {
	TV_HTTP_REQUEST = 1,
	TV_HTTP_RESPONSE = 2,
};

/* Value stored instead of a credential header's (Authorization, Proxy-Authorization, Cookie,
 * Set-Cookie) unless the parser keeps credentials. */
#define TV_HTTP_REDACTED "[redacted]"

/* What a message is reduced to. Header values other than the framing ones and traceparent are
 * not stored unless keep_headers is set: the head buffer is wiped after parsing. */
struct tv_http_msg {
	char method[TV_HTTP_METHOD_BYTES]; /* requests */
	/* requests: the target as tv_query_redact(query) rewrites it (query values redacted,
	 * or no query), NUL-terminated, malloc'd, whole as far as the head was (bounded by the
	 * head limit only); NULL when out of memory (then cut is set). on_head may take it (set
	 * path to NULL, then free it); else the parser frees it at the next message or
	 * tv_http_parser_free, so it stays valid during on_done. */
	char *path;
	/* requests: the authority of an absolute-form target (userinfo dropped) or of CONNECT's
	 * authority-form, else the first Host header's value (RFC 9112 §3.2.2: the target
	 * wins); malloc'd and owned like path; NULL when neither was seen. */
	char *host;
	char http_version[4]; /* requests: "1.0", "1.1" from the request line; "" if cut */
	unsigned status;                   /* responses */
	char trace_id[TV_HTTP_TRACE_ID_BYTES];
	char span_id[TV_HTTP_SPAN_ID_BYTES];
	uint64_t body_bytes;    /* body bytes seen so far (decoded, for chunked) */
	uint64_t first_ts_ns;   /* time of the syscall that carried the first byte */
	uint64_t last_ts_ns;    /* time of the syscall that carried the last byte */
	int no_body;            /* on_head may set it: a response to HEAD has no body */
	/* on_head may set it on a response: the connection leaves HTTP/1.x after this head (a
	 * 2xx answer to CONNECT, RFC 9110 §9.3.6), as the parser decides itself after a 101
	 * (RFC 9110 §15.2.2); the message has no body and completes at its head's end */
	int upgraded;
	/* body_max > 0 (capture --body-bytes): the first body bytes, de-chunked but otherwise as
	 * on the wire (not decompressed), contiguous from the body's start: body_len <=
	 * body_max, less than min(body_max, body_bytes) when a syscall moved more than its copy
	 * held (the rest is not invented). malloc'd; on_done may take it (set body to NULL,
	 * then free it), else the parser frees it at the next message. */
	uint8_t *body;
	size_t body_len;
	/* body_max > 0: the Content-Type and Content-Encoding header values (NULL: absent),
	 * NUL-terminated, bytes outside printable ASCII shown as '?'; malloc'd, owned like path */
	char *content_type, *content_encoding;
	/* keep_headers: the head's header lines as "name\0value\0" pairs back to back (hdrs_len
	 * bytes, malloc'd; credential values redacted unless keep_credentials; bytes outside
	 * printable ASCII shown as '?'). Valid during on_head only: on_head may take the buffer
	 * (set hdrs to NULL, then it frees it), else the parser frees it after on_head. */
	char *hdrs;
	size_t hdrs_len;
	int incomplete;         /* on_done after sync was lost or the connection closed early */
	int cut;                /* the head was not seen whole (head limit or payload copy): a
				 * field after the cut (a header, traceparent, the rest of a path)
				 * is missing; the record gets TV_RECORD_FLAG_CUT */
};

struct tv_query_rules;

struct tv_http_callbacks {
	/* The head of m is parsed; the body (if any) follows. May set m->no_body. */
	void (*on_head)(void *ctx, struct tv_http_msg *m);
	/* m is complete (or, from tv_http_parser_close, ended by the connection closing). */
	void (*on_done)(void *ctx, const struct tv_http_msg *m);
};

struct tv_http_parser {
	enum tv_http_kind kind;
	int state;
	const struct tv_http_callbacks *cb;
	void *ctx;
	uint64_t remaining;   /* body or chunk bytes still expected */
	size_t head_len;
	size_t line_len;      /* chunk-size / trailer line length so far */
	uint64_t errors;      /* times sync was lost (malformed or unparseable input) */
	/* heads cut (reported with msg.cut) by reason, and heads whose start the parser saw but
	 * could not read (malformed or unsupported start or header line, or no complete start
	 * line before the cut): those messages are not reported, only counted here */
	uint64_t heads_cut_limit; /* longer than max_head_bytes (or no memory to buffer them) */
	uint64_t heads_cut_copy;  /* the syscall moved more than was copied, inside the head */
	uint64_t heads_unparsed;
	/* bytes fed after the connection left HTTP/1.x (ST_UPGRADED, tv_http_parser_switch):
	 * counted, never parsed */
	uint64_t tunnel_bytes;
	/* 1 once this direction left HTTP/1.x: after a 101 or a response on_head marked
	 * upgraded, the HTTP/2 connection preface (a request parser; RFC 9113 §3.4), or
	 * tv_http_parser_switch */
	int switched;
	int switch_after_msg; /* the message under way completes first (tv_http_parser_switch) */
	uint64_t msgs_started; /* message starts seen (the preface counts only as the first) */
	size_t max_head_bytes;    /* the head limit (see above); set before the first feed */
	int head_reported;    /* on_head ran for msg and on_done has not yet */
	/* what the path keeps of the query (capture/query_redact.h); NULL (the default): the
	 * query is dropped. Must outlive the parser. */
	const struct tv_query_rules *query;
	int keep_headers;     /* 1: report header lines in msg.hdrs (default 0) */
	int keep_credentials; /* 1: credential header values are not redacted (default 0) */
	size_t body_max;      /* capture --body-bytes: body bytes kept in msg.body (default 0) */
	int body_gap;         /* bytes of this body were not copied: the kept prefix ends */
	struct tv_http_msg msg;
	char line[32];        /* chunk-size line */
	char *head;           /* head_cap bytes, malloc'd as the head grows (NULL: none yet) */
	size_t head_cap;
};

/* p is the caller's storage; cb and ctx must outlive it. query is NULL, the keep_* options 0 and
 * max_head_bytes TV_HTTP_DEFAULT_HEAD_BYTES after init: set them before the first feed.
 * Release with tv_http_parser_free. */
void tv_http_parser_init(struct tv_http_parser *p, enum tv_http_kind kind,
			 const struct tv_http_callbacks *cb, void *ctx);

/* Frees what the parser allocated (head buffer, the last message's path and headers), wiping
 * the head first; p may then be initialised again. */
void tv_http_parser_free(struct tv_http_parser *p);

/* The head limit for a capture copying payload_bytes per syscall: the larger of
 * TV_HTTP_DEFAULT_HEAD_BYTES and payload_bytes, in bytes. */
size_t tv_http_head_limit(size_t payload_bytes);

/* The connection leaves HTTP/1.x (the other direction saw a 101, a 2xx answer to CONNECT or
 * the HTTP/2 preface): nothing fed from now on is parsed, its bytes are counted in
 * tunnel_bytes, and no error or resync comes of them. finish_current: a message whose head
 * was reported completes first (RFC 9110 §7.8: a client cannot change the protocol it sends
 * in the middle of a message, so the body of the upgrading request is still HTTP/1.x), then
 * the switch takes effect. Otherwise a message under way is abandoned without on_done: its
 * bytes were not HTTP/1.x after all, and what the caller kept of it is the caller's to drop. */
void tv_http_parser_switch(struct tv_http_parser *p, int finish_current);

/* The stream is joined somewhere in its middle (a connection first seen after it started):
 * skip to the first event that begins a recognised message, as after lost sync, but without
 * counting an error: nothing the capture saw was lost. Call right after init. */
void tv_http_parser_join_midstream(struct tv_http_parser *p);

/* 1 when data[0, n) begins like a request the parser resyncs at: an upper-case method of 3 to
 * 15 letters, then a space. (sockfilter.c picks up a connection open before the capture at
 * such a segment, its sender taken as the client.) */
int tv_http_is_request_start(const void *data, size_t n);

/* 1 when a header of this name (case-insensitive) carries credentials and is redacted. */
int tv_http_is_credential_header(const char *name, size_t len);

/* Number of "name\0value\0" pairs in a msg.hdrs buffer. */
size_t tv_http_header_count(const char *hdrs, size_t len);

/* Feed one syscall's worth of bytes: data[0, copied) are the bytes seen, total (>= copied) is
 * how many the syscall moved. Bytes past the copy are counted where the parser is inside a body;
 * inside a head the message is reported from its complete lines, marked cut and incomplete
 * (counted in heads_cut_copy); anywhere
 * else the parser loses sync. Either way it resyncs at the next feed that begins a recognised
 * message. copied 0 with total > 0 skips lost bytes the same way. */
void tv_http_parser_feed(struct tv_http_parser *p, const void *data, size_t copied,
			 uint64_t total, uint64_t ts_ns);

/* The connection closed. A body delimited by the close (no length, not chunked) completes here
 * and is reported through on_done. Returns 1 when a message was left unfinished, else 0. */
int tv_http_parser_close(struct tv_http_parser *p, uint64_t ts_ns);

#endif
